//! `import`: SparkJobRunRefs for a workspace's existing runs, from ListJobRuns. The mapping from
//! a listed run to a ref is pure and stable (the same run always gives the same object), so
//! importing twice changes nothing and the output can be kept in Git.

use std::collections::BTreeMap;

use kube::api::ObjectMeta;
use sha2::{Digest, Sha256};

use crate::client::{ApiError, JobRunService, ListJobRunsRequest, MAX_PAGE};
use crate::crd::{CredentialsSource, SecretReference, SparkJobRunRef, SparkJobRunRefSpec};
use crate::signer::Credentials;
use crate::wire::ListedRun;

/// The states ListJobRuns can filter on.
pub const STATES: [&str; 8] = [
    "Submitted",
    "Pending",
    "Running",
    "Success",
    "Failed",
    "Cancelling",
    "Cancelled",
    "CancelFailed",
];
/// Set on every imported ref, so a team can select (or delete) what an import made.
pub const IMPORTED_LABEL: &str = "emrspark.io/imported";
/// The run's display name (any text, so not a label).
pub const RUN_NAME_ANNOTATION: &str = "emrspark.io/job-run-name";
/// Field manager of `--apply`.
pub const FIELD_MANAGER: &str = "sparkjobrun-operator-import";
/// Longest `--name-prefix`: with a 64-character id and a hash suffix, names stay far below 253.
pub const MAX_PREFIX: usize = 63;
/// Tags copied per run; the service allows 20 per run, anything beyond is not a tag it made.
pub const MAX_LABELS: usize = 32;
const MAX_RUN_NAME: usize = 1024;

/// What every imported ref gets besides the run's own fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    pub region_id: String,
    pub namespace: Option<String>,
    pub name_prefix: String,
    pub secret_ref: Option<String>,
    pub role_arn: Option<String>,
}

/// A listed run and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub enum Imported {
    Ref {
        object: Box<SparkJobRunRef>,
        /// Tags that could not become labels, with why.
        notes: Vec<String>,
    },
    /// A run no valid ref can name (the API server would refuse it), with why.
    Skipped { job_run_id: String, reason: String },
}

/// Checks `--name-prefix`: lower-case letters, digits, `-` and `.`, starting with a letter or
/// digit, so every name it starts is a valid object name.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.len() > MAX_PREFIX {
        return Err(format!("is longer than {MAX_PREFIX} characters"));
    }
    let valid = prefix
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    let starts = prefix
        .bytes()
        .next()
        .is_none_or(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if valid && starts {
        Ok(())
    } else {
        Err(format!(
            "{prefix:?} may hold only lower-case letters, digits, '-' and '.', and must start with a letter or digit"
        ))
    }
}

/// The ref's name: prefix and the run id, lower-cased. An id that had upper-case letters gets
/// a short hash of the original, so `jr-Ab` and `jr-aB` never share a name.
pub fn ref_name(prefix: &str, job_run_id: &str) -> String {
    let lower = job_run_id.to_ascii_lowercase();
    if lower == job_run_id {
        format!("{prefix}{lower}")
    } else {
        let digest = hex::encode(Sha256::digest(job_run_id.as_bytes()));
        format!("{prefix}{lower}-{}", &digest[..8])
    }
}

/// Whether the id fits the CRD's pattern for `field` (`w-` or `jr-` and letters or digits).
fn id_ok(id: &str, head: &str, max: usize) -> bool {
    id.len() <= max
        && id
            .strip_prefix(head)
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A label name or value part: at most 63 characters of letters, digits, `-`, `_`, `.`, with a
/// letter or digit at both ends (a value may be empty).
fn label_part_ok(text: &str, may_be_empty: bool) -> bool {
    if text.is_empty() {
        return may_be_empty;
    }
    let b = text.as_bytes();
    text.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Why a tag cannot be a label, or `None` when it can.
fn label_problem(key: &str, value: &str) -> Option<&'static str> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let dns = p.len() <= 253
            && p.split('.').all(|seg| {
                !seg.is_empty()
                    && seg.len() <= 63
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !seg.starts_with('-')
                    && !seg.ends_with('-')
            });
        if !dns {
            return Some("its prefix is not a DNS subdomain");
        }
        let reserved = ["kubernetes.io", "k8s.io", "emrspark.io"];
        if reserved
            .iter()
            .any(|r| p == *r || p.ends_with(&format!(".{r}")))
        {
            return Some("its prefix is reserved");
        }
    }
    if !label_part_ok(name, false) {
        return Some("the key is not a label name (63 letters, digits, '-', '_', '.')");
    }
    if !label_part_ok(value, true) {
        return Some("the value is not a label value (63 letters, digits, '-', '_', '.')");
    }
    None
}

/// Labels from the run's tags (those that are valid labels), plus the import marker; notes
/// name the tags left out.
pub fn labels_for(tags: &[crate::wire::Tag]) -> (BTreeMap<String, String>, Vec<String>) {
    let mut labels = BTreeMap::new();
    let mut notes = Vec::new();
    for tag in tags {
        let key = tag.key.as_deref().unwrap_or_default();
        let value = tag.value.as_deref().unwrap_or_default();
        let shown = crate::text::prefix(key, 64);
        if labels.len() >= MAX_LABELS {
            notes.push(format!(
                "tag {shown:?} left out: more than {MAX_LABELS} tags"
            ));
        } else if let Some(problem) = label_problem(key, value) {
            notes.push(format!("tag {shown:?} left out: {problem}"));
        } else {
            labels.insert(key.to_owned(), value.to_owned());
        }
    }
    labels.insert(IMPORTED_LABEL.to_owned(), "true".to_owned());
    (labels, notes)
}

/// The ref for one listed run of `workspace_id`.
pub fn import_run(workspace_id: &str, item: &ListedRun, template: &Template) -> Imported {
    let job_run_id = item.run.job_run_id.clone().unwrap_or_default();
    let skipped = |reason: String| Imported::Skipped {
        job_run_id: crate::text::prefix(&job_run_id, 80).to_owned(),
        reason,
    };
    if !id_ok(&job_run_id, "jr-", 64) {
        return skipped("the job run id is not jr- followed by letters and digits".into());
    }
    if item
        .run
        .workspace_id
        .as_deref()
        .is_some_and(|w| w != workspace_id)
    {
        return skipped(format!(
            "it belongs to another workspace than {workspace_id}"
        ));
    }
    let (labels, notes) = labels_for(item.run.tags.as_deref().unwrap_or_default());
    let annotations = item.run.name.as_deref().filter(|n| !n.is_empty()).map(|n| {
        let shown = crate::text::prefix(n, MAX_RUN_NAME).to_owned();
        BTreeMap::from([(RUN_NAME_ANNOTATION.to_owned(), shown)])
    });
    let credentials =
        (template.secret_ref.is_some() || template.role_arn.is_some()).then(|| CredentialsSource {
            secret_ref: template
                .secret_ref
                .clone()
                .map(|name| SecretReference { name }),
            role_arn: template.role_arn.clone(),
        });
    let mut object = SparkJobRunRef::new(
        &ref_name(&template.name_prefix, &job_run_id),
        SparkJobRunRefSpec {
            workspace_id: workspace_id.to_owned(),
            job_run_id,
            region_id: Some(template.region_id.clone()),
            credentials,
            ..SparkJobRunRefSpec::default()
        },
    );
    object.metadata = ObjectMeta {
        namespace: template.namespace.clone(),
        labels: Some(labels),
        annotations,
        ..object.metadata
    };
    Imported::Ref {
        object: Box::new(object),
        notes,
    }
}

/// Checks a workspace id as the CRD does.
pub fn check_workspace(workspace_id: &str) -> Result<(), String> {
    if id_ok(workspace_id, "w-", 64) {
        Ok(())
    } else {
        Err(format!(
            "{workspace_id:?} is not w- followed by letters and digits"
        ))
    }
}

/// Every run the filter matches, page by page, at most `limit`; `true` when more were left.
pub async fn list_all<S: JobRunService>(
    service: &S,
    creds: &Credentials,
    mut request: ListJobRunsRequest,
    limit: usize,
) -> Result<(Vec<ListedRun>, bool), ApiError> {
    let mut runs = Vec::new();
    request.max_results = MAX_PAGE;
    loop {
        let page = service.list_job_runs(&request, creds).await?;
        let received = page.job_runs.len();
        runs.extend(page.job_runs);
        if runs.len() >= limit {
            let more =
                runs.len() > limit || page.next_token.as_deref().is_some_and(|t| !t.is_empty());
            runs.truncate(limit);
            return Ok((runs, more));
        }
        match page.next_token.filter(|t| !t.is_empty()) {
            // A page that brought nothing but a token would loop forever.
            Some(token) if received > 0 && Some(&token) != request.next_token.as_ref() => {
                request.next_token = Some(token)
            }
            _ => return Ok((runs, false)),
        }
    }
}

/// The refs as one multi-document YAML stream.
pub fn to_yaml(objects: &[SparkJobRunRef]) -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(object)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{JobRun, Tag};

    fn tag(k: &str, v: &str) -> Tag {
        Tag {
            key: Some(k.into()),
            value: Some(v.into()),
        }
    }

    fn listed(id: &str, tags: Vec<Tag>) -> ListedRun {
        ListedRun {
            run: JobRun {
                workspace_id: Some("w-1".into()),
                job_run_id: Some(id.into()),
                name: Some("nightly etl ü".into()),
                state: Some("Running".into()),
                tags: Some(tags),
                ..JobRun::default()
            },
            ..ListedRun::default()
        }
    }

    fn template() -> Template {
        Template {
            region_id: "cn-hangzhou".into(),
            namespace: Some("data".into()),
            name_prefix: "etl-".into(),
            secret_ref: Some("emr-keys".into()),
            role_arn: None,
        }
    }

    #[test]
    fn names_are_stable_valid_and_distinct() {
        assert_eq!(ref_name("", "jr-93d98d2f7061abcd"), "jr-93d98d2f7061abcd");
        assert_eq!(ref_name("etl-", "jr-abc"), "etl-jr-abc");
        let (a, b) = (ref_name("", "jr-Ab"), ref_name("", "jr-aB"));
        assert_ne!(a, b);
        assert!(
            a.starts_with("jr-ab-") && a.len() == "jr-ab-".len() + 8,
            "{a}"
        );
        assert_eq!(a, ref_name("", "jr-Ab"), "stable");
        for ok in ["", "team-a.", "a"] {
            assert_eq!(check_prefix(ok), Ok(()), "{ok:?}");
        }
        for bad in ["-x", "Team", "a_b", "a/b", &"a".repeat(64)] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_run_becomes_a_ref_with_labels_from_valid_tags() {
        let item = listed(
            "jr-93d98d2f7061abcd",
            vec![
                tag("team", "data"),
                tag("example.com/owner", "ana"),
                tag("cost center", "42"),
                tag("kubernetes.io/name", "x"),
                tag("emrspark.io/imported", "false"),
                tag("flow", "daily etl"),
                tag("empty", ""),
            ],
        );
        let Imported::Ref { object, notes } = import_run("w-1", &item, &template()) else {
            panic!("imported");
        };
        assert_eq!(
            object.metadata.name.as_deref(),
            Some("etl-jr-93d98d2f7061abcd")
        );
        assert_eq!(object.metadata.namespace.as_deref(), Some("data"));
        let labels = object.metadata.labels.clone().unwrap_or_default();
        let keys: Vec<&str> = labels.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["empty", "emrspark.io/imported", "example.com/owner", "team"]
        );
        assert_eq!(labels["emrspark.io/imported"], "true");
        assert_eq!(notes.len(), 4, "{notes:?}");
        assert!(
            notes.iter().any(|n| n.contains("\"cost center\"")),
            "{notes:?}"
        );
        assert!(notes.iter().any(|n| n.contains("reserved")), "{notes:?}");
        assert_eq!(
            object
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(RUN_NAME_ANNOTATION))
                .map(String::as_str),
            Some("nightly etl ü")
        );
        assert_eq!(object.spec.workspace_id, "w-1");
        assert_eq!(object.spec.region_id.as_deref(), Some("cn-hangzhou"));
        assert_eq!(
            object
                .spec
                .credentials
                .as_ref()
                .and_then(|c| c.secret_ref.as_ref())
                .map(|s| s.name.as_str()),
            Some("emr-keys")
        );
        assert_eq!(object.spec.endpoint, None, "endpoints are not copied");
        let yaml = to_yaml(&[*object.clone(), *object]).expect("yaml");
        assert_eq!(yaml.matches("---\n").count(), 2);
        assert!(
            yaml.contains("kind: SparkJobRunRef") && !yaml.contains("status"),
            "{yaml}"
        );
    }

    #[test]
    fn runs_no_ref_can_name_are_skipped_with_why() {
        for (id, ws, why) in [
            ("jr-a/b", "w-1", "not jr-"),
            ("", "w-1", "not jr-"),
            ("jr-ok", "w-2", "another workspace"),
        ] {
            let mut item = listed(id, Vec::new());
            item.run.workspace_id = Some(ws.into());
            match import_run("w-1", &item, &template()) {
                Imported::Skipped { reason, .. } => assert!(reason.contains(why), "{reason}"),
                other => panic!("{id}: {other:?}"),
            }
        }
        let many: Vec<Tag> = (0..40).map(|i| tag(&format!("k{i}"), "v")).collect();
        let (labels, notes) = labels_for(&many);
        assert_eq!(labels.len(), MAX_LABELS + 1);
        assert_eq!(notes.len(), 40 - MAX_LABELS);
        assert!(check_workspace("w-d2d82aa09151abcd").is_ok());
        assert!(check_workspace("d2d82aa09151abcd").is_err());
    }

    /// Each page as (item count, next token), then the tokens asked for.
    type Script = (Vec<(usize, &'static str)>, Vec<Option<String>>);

    /// Answers pages from a script and records the tokens asked for.
    struct Pages(std::sync::Mutex<Script>);

    impl JobRunService for Pages {
        async fn get_job_run(
            &self,
            _: &crate::client::GetJobRunRequest,
            _: &Credentials,
        ) -> Result<JobRun, ApiError> {
            unreachable!("import only lists")
        }

        async fn list_job_runs(
            &self,
            req: &ListJobRunsRequest,
            _: &Credentials,
        ) -> Result<crate::wire::ListJobRunsResponse, ApiError> {
            let mut state = self.0.lock().expect("lock");
            state.1.push(req.next_token.clone());
            let (count, token) = state.0.remove(0);
            Ok(crate::wire::ListJobRunsResponse {
                job_runs: (0..count)
                    .map(|i| listed(&format!("jr-{i}"), Vec::new()))
                    .collect(),
                next_token: Some(token.to_owned()),
                ..Default::default()
            })
        }

        async fn cancel_job_run(
            &self,
            _: &crate::client::GetJobRunRequest,
            _: &Credentials,
        ) -> Result<(), ApiError> {
            unreachable!("import only lists")
        }
    }

    #[tokio::test]
    async fn listing_follows_tokens_and_stops() {
        let request = ListJobRunsRequest {
            workspace_id: "w-1".into(),
            region_id: "cn-hangzhou".into(),
            endpoint: crate::endpoint::parse("http://127.0.0.1:1").expect("endpoint"),
            filter: Default::default(),
            max_results: 5,
            next_token: None,
        };
        let creds = Credentials::new("AK", "SK");
        let run = |pages: Vec<(usize, &'static str)>, limit: usize| {
            let svc = Pages(std::sync::Mutex::new((pages, Vec::new())));
            let request = request.clone();
            let creds = creds.clone();
            async move {
                let (runs, more) = list_all(&svc, &creds, request, limit).await.expect("lists");
                let asked = svc.0.lock().expect("lock").1.clone();
                (runs.len(), more, asked)
            }
        };
        let (n, more, asked) = run(vec![(100, "t1"), (100, "t2"), (30, "")], 1000).await;
        assert_eq!((n, more), (230, false));
        assert_eq!(asked, [None, Some("t1".into()), Some("t2".into())]);
        let (n, more, asked) = run(vec![(100, "t1"), (100, "t2")], 150).await;
        assert_eq!((n, more, asked.len()), (150, true, 2));
        let (n, more, asked) = run(vec![(100, "t1"), (0, "t2")], 1000).await;
        assert_eq!(
            (n, more, asked.len()),
            (100, false, 2),
            "an empty page ends it"
        );
        let (n, _, asked) = run(vec![(100, "t1"), (100, "t1")], 1000).await;
        assert_eq!((n, asked.len()), (200, 2), "a repeated token ends it");
    }
}
