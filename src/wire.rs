//! The service's JSON, decoded leniently: unknown fields are ignored, every field is optional and
//! a value of an unexpected type degrades to "absent" instead of failing the whole answer, because a
//! newer or older service version must never stop the operator from reporting a run's state.

use serde::{Deserialize, Deserializer, Serialize};

/// Body of a successful `GetJobRun` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GetJobRunResponse {
    #[serde(deserialize_with = "lenient")]
    pub request_id: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub job_run: Option<JobRun>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JobRun {
    #[serde(deserialize_with = "lenient")]
    pub workspace_id: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub job_run_id: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub state: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub state_change_reason: Option<StateChangeReason>,
    /// Unix epoch milliseconds.
    #[serde(deserialize_with = "lenient_i64")]
    pub submit_time: Option<i64>,
    /// Unix epoch milliseconds.
    #[serde(deserialize_with = "lenient_i64")]
    pub end_time: Option<i64>,
    #[serde(deserialize_with = "lenient")]
    pub code_type: Option<String>,
    #[serde(rename = "webUI", deserialize_with = "lenient")]
    pub web_ui: Option<String>,
    #[serde(deserialize_with = "lenient_i64")]
    pub execution_timeout_seconds: Option<i64>,
    #[serde(deserialize_with = "lenient_string")]
    pub resource_owner_id: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub tags: Option<Vec<Tag>>,
    #[serde(deserialize_with = "lenient")]
    pub log: Option<RunLog>,
    #[serde(deserialize_with = "lenient")]
    pub release_version: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub display_release_version: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub resource_queue_id: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub job_driver: Option<JobDriver>,
    #[serde(deserialize_with = "lenient")]
    pub configuration_overrides: Option<ConfigurationOverrides>,
    #[serde(deserialize_with = "lenient")]
    pub fusion: Option<bool>,
    #[serde(deserialize_with = "lenient")]
    pub environment_id: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub notebook_access_url: Option<String>,
    /// Documented as a string ("5"); some answers carry a number, so both are accepted.
    #[serde(deserialize_with = "lenient_string")]
    pub priority: Option<String>,
    /// What the run used, from its ListJobRuns item; filled by the operator only once the run
    /// ended (a running run's growing usage would cause a write per poll), never sent.
    #[serde(skip)]
    pub usage: Option<crate::crd::RunUsage>,
    /// Paths (e.g. `log.driverStdOut`) of fields the answer carried with a value that could
    /// not be decoded; filled by [`decode_get_job_run`], never sent or received.
    #[serde(skip)]
    pub undecodable: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StateChangeReason {
    #[serde(deserialize_with = "lenient")]
    pub code: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Tag {
    #[serde(deserialize_with = "lenient")]
    pub key: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RunLog {
    #[serde(deserialize_with = "lenient")]
    pub driver_std_out: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub driver_std_error: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub driver_syslog: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub driver_startup: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JobDriver {
    #[serde(deserialize_with = "lenient")]
    pub spark_submit: Option<SparkSubmit>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SparkSubmit {
    #[serde(deserialize_with = "lenient")]
    pub entry_point: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub entry_point_arguments: Option<Vec<String>>,
    #[serde(deserialize_with = "lenient")]
    pub spark_submit_parameters: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConfigurationOverrides {
    #[serde(deserialize_with = "lenient")]
    pub configurations: Option<Vec<Configuration>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Configuration {
    #[serde(deserialize_with = "lenient")]
    pub config_file_name: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub config_item_key: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub config_item_value: Option<String>,
}

impl ListedRun {
    /// The usage the item reports, if it reports any.
    pub fn usage(&self) -> Option<crate::crd::RunUsage> {
        let any =
            self.cu_hours.is_some() || self.vcore_seconds.is_some() || self.mb_seconds.is_some();
        any.then_some(crate::crd::RunUsage {
            cu_hours: self.cu_hours,
            vcore_seconds: self.vcore_seconds,
            mb_seconds: self.mb_seconds,
        })
    }
}

/// Body of a successful `ListJobRuns` answer: one page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ListJobRunsResponse {
    #[serde(deserialize_with = "lenient")]
    pub request_id: Option<String>,
    /// Items that do not decode are dropped one by one, never the whole page.
    #[serde(deserialize_with = "lenient_items")]
    pub job_runs: Vec<ListedRun>,
    #[serde(deserialize_with = "lenient")]
    pub next_token: Option<String>,
    #[serde(deserialize_with = "lenient_i64")]
    pub total_count: Option<i64>,
    #[serde(deserialize_with = "lenient_i64")]
    pub max_results: Option<i64>,
}

/// One item of a ListJobRuns page: GetJobRun's `jobRun` without `jobDriver` and
/// `configurationOverrides`, plus who submitted it and what it has used so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ListedRun {
    #[serde(flatten)]
    pub run: JobRun,
    #[serde(deserialize_with = "lenient_string")]
    pub creator: Option<String>,
    #[serde(deserialize_with = "lenient_f64")]
    pub cu_hours: Option<f64>,
    #[serde(deserialize_with = "lenient_i64")]
    pub mb_seconds: Option<i64>,
    #[serde(deserialize_with = "lenient_i64")]
    pub vcore_seconds: Option<i64>,
}

/// An error answer. The service spells the keys both PascalCase and lowerCamel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorBody {
    #[serde(alias = "code", rename = "Code", deserialize_with = "lenient")]
    pub code: Option<String>,
    #[serde(alias = "message", rename = "Message", deserialize_with = "lenient")]
    pub message: Option<String>,
    #[serde(
        alias = "requestId",
        rename = "RequestId",
        deserialize_with = "lenient"
    )]
    pub request_id: Option<String>,
    #[serde(alias = "hostId", rename = "HostId", deserialize_with = "lenient")]
    pub host_id: Option<String>,
    #[serde(
        alias = "recommend",
        rename = "Recommend",
        deserialize_with = "lenient"
    )]
    pub recommend: Option<String>,
    #[serde(
        alias = "accessDeniedDetail",
        rename = "AccessDeniedDetail",
        deserialize_with = "lenient_any"
    )]
    pub access_denied_detail: Option<serde_json::Value>,
}

/// Decodes a GetJobRun answer and records which fields of `jobRun` carried a value the lenient
/// model had to drop, so the operator can report them instead of silently keeping old values.
pub fn decode_get_job_run(body: &[u8]) -> Result<GetJobRunResponse, serde_json::Error> {
    let raw: serde_json::Value = serde_json::from_slice(body)?;
    let mut resp: GetJobRunResponse = serde_json::from_value(raw.clone())?;
    if let (Some(run), Some(raw_run)) = (resp.job_run.as_mut(), raw.get("jobRun")) {
        let decoded = serde_json::to_value(&*run)?;
        let mut found = Vec::new();
        dropped_fields(raw_run, &decoded, "", &mut found);
        run.undecodable = found;
    }
    Ok(resp)
}

/// Paths where `raw` has a non-null value that `decoded` (the lenient model re-encoded) lacks.
/// Keys the model does not know are ignored: they are not dropped, just not mirrored.
fn dropped_fields(
    raw: &serde_json::Value,
    decoded: &serde_json::Value,
    prefix: &str,
    out: &mut Vec<String>,
) {
    const MAX_REPORTED: usize = 32;
    let (Some(raw), Some(decoded)) = (raw.as_object(), decoded.as_object()) else {
        return;
    };
    for (key, value) in raw {
        if value.is_null() || out.len() >= MAX_REPORTED {
            continue;
        }
        let Some(model) = decoded.get(key) else {
            continue;
        };
        let path = if prefix.is_empty() {
            crate::text::prefix(key, 64).to_owned()
        } else {
            format!("{prefix}.{}", crate::text::prefix(key, 64))
        };
        if model.is_null() {
            out.push(path);
        } else if value.is_object() {
            dropped_fields(value, model, &path, out);
        }
    }
}

/// Any value that does not decode as `T` (wrong type, null) becomes `None`.
fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

fn lenient_any<'de, D>(d: D) -> Result<Option<serde_json::Value>, D::Error>
where
    D: Deserializer<'de>,
{
    let value = serde_json::Value::deserialize(d)?;
    Ok((!value.is_null()).then_some(value))
}

/// Integers that may arrive as numbers or numeric strings.
fn lenient_i64<'de, D>(d: D) -> Result<Option<i64>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// Numbers that may arrive as numeric strings; non-finite values are dropped.
fn lenient_f64<'de, D>(d: D) -> Result<Option<f64>, D::Error>
where
    D: Deserializer<'de>,
{
    let value = match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    Ok(value.filter(|f| f.is_finite()))
}

/// A list whose items decode one by one; a non-list is empty.
fn lenient_items<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Array(items) => items
            .into_iter()
            .filter_map(|item| serde_json::from_value(item).ok())
            .collect(),
        _ => Vec::new(),
    })
}

/// Strings that may arrive as numbers.
fn lenient_string<'de, D>(d: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example answer of the GetJobRun reference page (the seed document).
    pub(crate) const SEED_EXAMPLE: &str = include_str!("../tests/fixtures/get-job-run-seed.json");

    #[test]
    fn decodes_the_reference_example() {
        let resp: GetJobRunResponse = serde_json::from_str(SEED_EXAMPLE).expect("seed decodes");
        assert_eq!(
            resp.request_id.as_deref(),
            Some("DD6B1B2A-5837-5237-ABE4-FF0C8944****")
        );
        let run = resp.job_run.expect("jobRun present");
        assert_eq!(run.state.as_deref(), Some("Running"));
        assert_eq!(run.submit_time, Some(1684119314000));
        assert_eq!(run.priority.as_deref(), Some("5"));
        let log = run.log.expect("log");
        assert_eq!(
            log.driver_std_out.as_deref(),
            Some("oss://bucket/path/to/stdout")
        );
        let reason = run.state_change_reason.expect("reason");
        assert_eq!(reason.code.as_deref(), Some("ERR-100000"));
    }

    #[test]
    fn tolerates_unknown_missing_and_mistyped_fields() {
        let body = r#"{"requestId": 7, "jobRun": {"state": "Exploding", "newField": {"x": 1},
            "submitTime": "1684119314000", "endTime": null, "priority": 3, "tags": "oops",
            "fusion": "yes", "webUI": 12}}"#;
        let resp: GetJobRunResponse = serde_json::from_str(body).expect("decodes");
        assert_eq!(resp.request_id, None);
        let run = resp.job_run.expect("jobRun");
        assert_eq!(run.state.as_deref(), Some("Exploding"));
        assert_eq!(run.submit_time, Some(1684119314000));
        assert_eq!(run.end_time, None);
        assert_eq!(run.priority.as_deref(), Some("3"));
        assert_eq!(run.tags, None);
        assert_eq!(run.fusion, None);
        assert_eq!(run.web_ui, None);
    }

    #[test]
    fn reports_fields_it_had_to_drop() {
        let body = br#"{"jobRun": {"state": "Running", "submitTime": "soon", "tags": "oops",
            "log": {"driverStdOut": 5, "driverStdError": "oss://e"}, "name": null,
            "brandNew": [1], "webUI": "http://ui"}}"#;
        let run = decode_get_job_run(body)
            .expect("decodes")
            .job_run
            .expect("jobRun");
        let mut got = run.undecodable.clone();
        got.sort();
        assert_eq!(got, ["log.driverStdOut", "submitTime", "tags"]);
        assert_eq!(run.web_ui.as_deref(), Some("http://ui"));
        let clean = decode_get_job_run(SEED_EXAMPLE.as_bytes()).expect("seed");
        assert!(clean.job_run.expect("run").undecodable.is_empty());
    }

    #[test]
    fn list_pages_decode_item_by_item() {
        let body = r#"{"requestId": "r", "totalCount": "3", "maxResults": 100, "nextToken": "t2",
            "jobRuns": [
              {"jobRunId": "jr-1", "state": "Running", "creator": 150978934701, "cuHours": "1.5",
               "mbSeconds": 4096, "vcoreSeconds": 12, "log": {"driverStdOut": "https://x"}},
              "not an object",
              {"jobRunId": "jr-2", "state": "Success", "cuHours": "lots", "vcoreSeconds": null}
            ]}"#;
        let page: ListJobRunsResponse = serde_json::from_str(body).expect("decodes");
        assert_eq!(page.total_count, Some(3));
        assert_eq!(page.next_token.as_deref(), Some("t2"));
        assert_eq!(page.job_runs.len(), 2);
        let first = &page.job_runs[0];
        assert_eq!(first.run.job_run_id.as_deref(), Some("jr-1"));
        assert_eq!(first.run.state.as_deref(), Some("Running"));
        assert_eq!(first.creator.as_deref(), Some("150978934701"));
        assert_eq!(first.cu_hours, Some(1.5));
        assert_eq!(
            (first.mb_seconds, first.vcore_seconds),
            (Some(4096), Some(12))
        );
        assert_eq!(
            first
                .run
                .log
                .as_ref()
                .and_then(|l| l.driver_std_out.as_deref()),
            Some("https://x")
        );
        assert_eq!(page.job_runs[1].cu_hours, None);
        let odd: ListJobRunsResponse =
            serde_json::from_str(r#"{"jobRuns": {"a": 1}}"#).expect("decodes");
        assert!(odd.job_runs.is_empty());
    }

    #[test]
    fn error_body_in_both_spellings() {
        let pascal: ErrorBody = serde_json::from_str(
            r#"{"Code":"Forbidden.RAM","Message":"no","RequestId":"r1","AccessDeniedDetail":{"AuthAction":"emr-serverless-spark:GetJobRun"}}"#,
        )
        .expect("decodes");
        assert_eq!(pascal.code.as_deref(), Some("Forbidden.RAM"));
        assert!(pascal.access_denied_detail.is_some());
        let camel: ErrorBody =
            serde_json::from_str(r#"{"code":"Throttling","message":"slow down","requestId":"r2"}"#)
                .expect("decodes");
        assert_eq!(camel.code.as_deref(), Some("Throttling"));
        assert_eq!(camel.request_id.as_deref(), Some("r2"));
    }
}
