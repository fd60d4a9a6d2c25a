//! GetJobRun answer → `status`, and the whole next status from the last one and what a poll found.
//! Pure: the clock is passed in, so a run that does not change yields an identical status and the
//! controller can skip the write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::conditions::{self, Desired, Knowledge, Reason, SYNCED, Sync};
use crate::crd::{
    ConfigurationItem, ConfigurationOverrides, DriverLogs, JobDriver, RunTag, SparkJobRunRefStatus,
    SparkSubmit, StateChangeReason,
};
use crate::state::StateClass;
use crate::wire;

/// Epoch milliseconds → RFC 3339 (UTC, whole seconds when the input has no fraction).
pub fn epoch_ms_to_rfc3339(ms: i64) -> Option<String> {
    if ms <= 0 {
        return None;
    }
    let ts = jiff::Timestamp::from_millisecond(ms).ok()?;
    Some(if ms % 1000 == 0 {
        ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    })
}

/// Limits on what is copied from an answer into status (bytes, lists in entries). The API server
/// refuses objects over about 1.5 MB, and a status that cannot be written shows nothing at all.
pub mod limits {
    /// Identifiers, names, versions, links.
    pub const TEXT: usize = 1024;
    /// Log paths and the entry point.
    pub const PATH: usize = 2048;
    /// stateChangeReason.message and sparkSubmitParameters.
    pub const LONG_TEXT: usize = 4096;
    pub const TAGS: usize = 50;
    pub const TAG_KEY: usize = 128;
    pub const TAG_VALUE: usize = 256;
    pub const ARGUMENTS: usize = 64;
    pub const CONFIGURATIONS: usize = 100;
    /// The whole status as JSON; beyond it the bulky descriptive fields are dropped.
    pub const STATUS_BYTES: usize = 64 * 1024;
}

/// Copies the answer into `status` under the merge rule and the size limits: a field the answer
/// omits, sends as `null` or in a type that cannot be decoded keeps its last known value; only a
/// decodable value replaces it. So a partial answer (or a list item) never erases what is known.
pub fn apply_job_run(status: &mut SparkJobRunRefStatus, run: &wire::JobRun) {
    let mut cut = Cuts::from(std::mem::take(&mut status.truncated));
    merge_text(
        &mut status.state,
        &run.state,
        "state",
        limits::TEXT,
        &mut cut,
    );
    if let Some(r) = &run.state_change_reason {
        merge_reason(&mut status.state_change_reason, r, &mut cut);
    }
    if let Some(l) = &run.log {
        let log = status.log.get_or_insert_with(DriverLogs::default);
        merge_text(
            &mut log.driver_std_out,
            &l.driver_std_out,
            "log.driverStdOut",
            limits::PATH,
            &mut cut,
        );
        merge_text(
            &mut log.driver_std_error,
            &l.driver_std_error,
            "log.driverStdError",
            limits::PATH,
            &mut cut,
        );
        merge_text(
            &mut log.driver_syslog,
            &l.driver_syslog,
            "log.driverSyslog",
            limits::PATH,
            &mut cut,
        );
        merge_text(
            &mut log.driver_startup,
            &l.driver_startup,
            "log.driverStartup",
            limits::PATH,
            &mut cut,
        );
        if status.log.as_ref() == Some(&DriverLogs::default()) {
            status.log = None;
        }
    }
    merge_text(&mut status.name, &run.name, "name", limits::TEXT, &mut cut);
    merge_text(
        &mut status.code_type,
        &run.code_type,
        "codeType",
        limits::TEXT,
        &mut cut,
    );
    merge_text(
        &mut status.web_ui,
        &run.web_ui,
        "webUI",
        limits::PATH,
        &mut cut,
    );
    merge(
        &mut status.submit_time,
        run.submit_time.and_then(epoch_ms_to_rfc3339),
    );
    merge(
        &mut status.end_time,
        run.end_time.and_then(epoch_ms_to_rfc3339),
    );
    merge_text(
        &mut status.release_version,
        &run.release_version,
        "releaseVersion",
        limits::TEXT,
        &mut cut,
    );
    merge_text(
        &mut status.display_release_version,
        &run.display_release_version,
        "displayReleaseVersion",
        limits::TEXT,
        &mut cut,
    );
    merge_text(
        &mut status.resource_queue_id,
        &run.resource_queue_id,
        "resourceQueueId",
        limits::TEXT,
        &mut cut,
    );
    if let Some(tags) = &run.tags {
        status.tags = tags_of(tags, &mut cut);
    }
    merge(
        &mut status.execution_timeout_seconds,
        run.execution_timeout_seconds,
    );
    merge_text(
        &mut status.priority,
        &run.priority,
        "priority",
        limits::TEXT,
        &mut cut,
    );
    merge(&mut status.fusion, run.fusion);
    merge_text(
        &mut status.environment_id,
        &run.environment_id,
        "environmentId",
        limits::TEXT,
        &mut cut,
    );
    merge_text(
        &mut status.notebook_access_url,
        &run.notebook_access_url,
        "notebookAccessUrl",
        limits::PATH,
        &mut cut,
    );
    merge_text(
        &mut status.resource_owner_id,
        &run.resource_owner_id,
        "resourceOwnerId",
        limits::TEXT,
        &mut cut,
    );
    if let Some(submit) = run
        .job_driver
        .as_ref()
        .and_then(|d| d.spark_submit.as_ref())
    {
        let driver = status.job_driver.get_or_insert_with(JobDriver::default);
        merge_spark_submit(
            driver.spark_submit.get_or_insert_with(SparkSubmit::default),
            submit,
            &mut cut,
        );
    }
    if let Some(c) = &run.configuration_overrides
        && let Some(items) = &c.configurations
    {
        status.configuration_overrides = Some(configurations_of(items, &mut cut));
    }
    status.truncated = cut.into_list();
    if let Some(usage) = &run.usage {
        status.usage = Some(usage.clone());
    }
    bound_total(status);
}

/// Code and message describe one change. A half the answer lacks keeps its last value only
/// when the other half repeats what is known (a partial answer about the same reason); a new
/// reason replaces both, so halves of two reasons are never mixed.
fn merge_reason(into: &mut Option<StateChangeReason>, r: &wire::StateChangeReason, cut: &mut Cuts) {
    const CODE: &str = "stateChangeReason.code";
    const MESSAGE: &str = "stateChangeReason.message";
    let code = non_empty(&r.code).map(|c| cut.text(CODE, c, limits::TEXT));
    let message = non_empty(&r.message).map(|m| cut.text(MESSAGE, m, limits::LONG_TEXT));
    if code.is_none() && message.is_none() {
        return;
    }
    let old = into.take().unwrap_or(StateChangeReason {
        code: None,
        message: None,
    });
    let same_code = code.is_some() && code == old.code;
    let same_message = message.is_some() && message == old.message;
    let keep =
        |new: Option<String>, same_other: bool, old: Option<String>, field, cut: &mut Cuts| {
            new.or_else(|| {
                if !same_other {
                    cut.clear(field);
                }
                old.filter(|_| same_other)
            })
        };
    *into = Some(StateChangeReason {
        code: keep(code, same_message, old.code, CODE, cut),
        message: keep(message, same_code, old.message, MESSAGE, cut),
    });
}

/// Which fields were shortened, kept across merges: an entry goes only when its field is
/// replaced by a value that fits.
#[derive(Debug, Default)]
struct Cuts(std::collections::BTreeSet<String>);

impl From<Vec<String>> for Cuts {
    fn from(v: Vec<String>) -> Self {
        Self(v.into_iter().collect())
    }
}

impl Cuts {
    fn text(&mut self, field: &str, mut value: String, max: usize) -> String {
        self.clear(field);
        if value.len() > max {
            crate::text::truncate(&mut value, max);
            self.0.insert(field.to_owned());
        }
        value
    }

    fn list<T>(&mut self, field: &str, mut items: Vec<T>, max: usize) -> Vec<T> {
        self.clear(field);
        if items.len() > max {
            items.truncate(max);
            self.0.insert(field.to_owned());
        }
        items
    }

    fn clear(&mut self, field: &str) {
        self.0.remove(field);
    }

    fn into_list(self) -> Vec<String> {
        self.0.into_iter().collect()
    }
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_ref().filter(|s| !s.is_empty()).cloned()
}

fn merge<T>(field: &mut Option<T>, value: Option<T>) {
    if let Some(v) = value {
        *field = Some(v);
    }
}

fn merge_text(
    field: &mut Option<String>,
    value: &Option<String>,
    name: &str,
    max: usize,
    cut: &mut Cuts,
) {
    if let Some(v) = non_empty(value) {
        *field = Some(cut.text(name, v, max));
    }
}

fn tags_of(tags: &[wire::Tag], cut: &mut Cuts) -> Vec<RunTag> {
    let tags: Vec<RunTag> = tags
        .iter()
        .filter_map(|t| {
            let key = non_empty(&t.key)?;
            Some(RunTag {
                key: cut.text("tags.key", key, limits::TAG_KEY),
                value: cut.text(
                    "tags.value",
                    t.value.clone().unwrap_or_default(),
                    limits::TAG_VALUE,
                ),
            })
        })
        .collect();
    cut.list("tags", tags, limits::TAGS)
}

/// Field by field, like the top level: a part the answer lacks keeps its last value.
fn merge_spark_submit(into: &mut SparkSubmit, s: &wire::SparkSubmit, cut: &mut Cuts) {
    let prefix = "jobDriver.sparkSubmit";
    merge_text(
        &mut into.entry_point,
        &s.entry_point,
        "jobDriver.sparkSubmit.entryPoint",
        limits::PATH,
        cut,
    );
    if let Some(args) = s.entry_point_arguments.clone() {
        into.entry_point_arguments = cut
            .list(
                &format!("{prefix}.entryPointArguments"),
                args,
                limits::ARGUMENTS,
            )
            .into_iter()
            .map(|a| {
                cut.text(
                    "jobDriver.sparkSubmit.entryPointArguments[]",
                    a,
                    limits::TEXT,
                )
            })
            .collect();
    }
    merge_text(
        &mut into.spark_submit_parameters,
        &s.spark_submit_parameters,
        "jobDriver.sparkSubmit.sparkSubmitParameters",
        limits::LONG_TEXT,
        cut,
    );
}

fn configurations_of(items: &[wire::Configuration], cut: &mut Cuts) -> ConfigurationOverrides {
    let field = "configurationOverrides.configurations";
    let items = cut.list(field, items.to_vec(), limits::CONFIGURATIONS);
    let mut text = |v: &Option<String>| {
        v.clone()
            .map(|v| cut.text("configurationOverrides.configurations[]", v, limits::TEXT))
    };
    ConfigurationOverrides {
        configurations: items
            .iter()
            .map(|i| ConfigurationItem {
                config_file_name: text(&i.config_file_name),
                config_item_key: text(&i.config_item_key),
                config_item_value: text(&i.config_item_value),
            })
            .collect(),
    }
}

/// Keeps the whole status under [`limits::STATUS_BYTES`] by dropping the bulkiest descriptive
/// fields, in order, and naming them in `truncated`.
fn bound_total(status: &mut SparkJobRunRefStatus) {
    let size = |s: &SparkJobRunRefStatus| serde_json::to_vec(s).map_or(usize::MAX, |v| v.len());
    for field in ["configurationOverrides", "jobDriver", "tags"] {
        if size(status) <= limits::STATUS_BYTES {
            return;
        }
        match field {
            "configurationOverrides" => status.configuration_overrides = None,
            "jobDriver" => status.job_driver = None,
            _ => status.tags.clear(),
        }
        if !status.truncated.iter().any(|t| t == field) {
            status.truncated.push(field.to_owned());
        }
    }
}

/// The smallest status that still answers "is it done, did it work": written when the API
/// server refused the full one as too large.
pub fn minimal_status(full: &SparkJobRunRefStatus) -> SparkJobRunRefStatus {
    SparkJobRunRefStatus {
        observed_generation: full.observed_generation,
        state: full.state.clone(),
        terminal: full.terminal,
        region_id: full.region_id.clone(),
        workspace_id: full.workspace_id.clone(),
        job_run_id: full.job_run_id.clone(),
        // Small, and needed: without it a handled refresh would look pending forever, and the
        // TTL would count from the Finished condition instead of the run's end.
        last_handled_refresh_at: full.last_handled_refresh_at.clone(),
        end_time: full.end_time.clone(),
        truncated: vec!["*".to_owned()],
        conditions: full.conditions.clone(),
        ..SparkJobRunRefStatus::default()
    }
}

/// What one reconcile learned.
#[derive(Debug, Clone, Copy)]
pub enum PollOutcome<'a> {
    /// The service answered with the run (its `state` is present).
    Run(&'a wire::JobRun),
    /// The service says the run does not exist.
    NotFound { message: &'a str },
    /// The run could not be read (credentials, network, throttling, ...).
    Failed { reason: Reason, message: &'a str },
    /// No call was made (the run is already terminal): only bookkeeping is refreshed.
    Skipped,
}

/// Identity of the object the status belongs to.
#[derive(Debug, Clone, Copy)]
pub struct StatusContext<'a> {
    pub generation: Option<i64>,
    pub workspace_id: &'a str,
    pub job_run_id: &'a str,
    pub region_id: Option<&'a str>,
}

/// The status to write after a reconcile. A failed call keeps every field and the job-outcome
/// conditions of `old`: nothing learned earlier is ever lost to an error.
pub fn next_status(
    old: Option<&SparkJobRunRefStatus>,
    outcome: PollOutcome<'_>,
    ctx: StatusContext<'_>,
    now: &Time,
) -> SparkJobRunRefStatus {
    let mut status = old.cloned().unwrap_or_default();
    let old_conditions = old.map(|o| o.conditions.as_slice()).unwrap_or_default();
    let old_outcome: Vec<Desired> = old_conditions
        .iter()
        .filter_map(Desired::parse)
        .filter(|d| d.type_ != SYNCED)
        .collect();
    let old_synced = old_conditions
        .iter()
        .filter_map(Desired::parse)
        .find(|d| d.type_ == SYNCED);

    let (mut desired, sync) = match outcome {
        PollOutcome::Run(run) => {
            apply_job_run(&mut status, run);
            let state = status.state.as_deref().unwrap_or_default();
            let reason = status.state_change_reason.as_ref();
            let knowledge = Knowledge::State {
                state,
                reason_code: reason.and_then(|r| r.code.as_deref()),
                reason_message: reason.and_then(|r| r.message.as_deref()),
            };
            (
                conditions::outcome(&knowledge, ctx.job_run_id),
                Some(Sync::Ok),
            )
        }
        PollOutcome::NotFound { message } => (
            conditions::outcome(&Knowledge::NotFound { message }, ctx.job_run_id),
            Some(Sync::Failed {
                reason: Reason::JobRunNotFound,
                message,
            }),
        ),
        PollOutcome::Failed { reason, message } => {
            let kept = if old_outcome.is_empty() {
                conditions::outcome(&Knowledge::Nothing, ctx.job_run_id)
            } else {
                old_outcome
            };
            (kept, Some(Sync::Failed { reason, message }))
        }
        PollOutcome::Skipped => {
            let kept = if old_outcome.is_empty() {
                conditions::outcome(&Knowledge::Nothing, ctx.job_run_id)
            } else {
                old_outcome
            };
            (kept, None)
        }
    };
    desired.push(match sync {
        Some(s) => conditions::synced(&s),
        None => old_synced.unwrap_or_else(|| conditions::synced(&Sync::Ok)),
    });

    status.terminal = status
        .state
        .as_deref()
        .map(|s| StateClass::of(s).is_terminal());
    if let Some(region) = ctx.region_id {
        status.region_id = Some(region.to_owned());
    }
    status.workspace_id = Some(ctx.workspace_id.to_owned());
    status.job_run_id = Some(ctx.job_run_id.to_owned());
    status.observed_generation = ctx.generation;
    status.conditions = conditions::materialize(old_conditions, desired, ctx.generation, now);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::{FAILED, READY, RECONCILING, STALLED, SUCCEEDED, find};

    fn seed_run() -> wire::JobRun {
        let resp: wire::GetJobRunResponse =
            serde_json::from_str(include_str!("../tests/fixtures/get-job-run-seed.json"))
                .expect("seed decodes");
        resp.job_run.expect("jobRun")
    }

    fn ctx() -> StatusContext<'static> {
        StatusContext {
            generation: Some(1),
            workspace_id: "w-975bcfda9625****",
            job_run_id: "jr-93d98d2f7061abcd",
            region_id: Some("cn-hangzhou"),
        }
    }

    fn now() -> Time {
        Time("2024-05-01T00:00:00Z".parse().expect("ts"))
    }

    #[test]
    fn epoch_conversion() {
        assert_eq!(
            epoch_ms_to_rfc3339(1684119314000).as_deref(),
            Some("2023-05-15T02:55:14Z")
        );
        assert_eq!(
            epoch_ms_to_rfc3339(1684119314123).as_deref(),
            Some("2023-05-15T02:55:14.123Z")
        );
        assert_eq!(epoch_ms_to_rfc3339(0), None);
        assert_eq!(epoch_ms_to_rfc3339(i64::MAX), None);
    }

    #[test]
    fn seed_example_maps_every_field() {
        let status = next_status(None, PollOutcome::Run(&seed_run()), ctx(), &now());
        let got = serde_json::to_value(&status).expect("serialises");
        let want = serde_json::json!({
            "observedGeneration": 1,
            "state": "Running",
            "terminal": false,
            "regionId": "cn-hangzhou",
            "workspaceId": "w-975bcfda9625****",
            "jobRunId": "jr-93d98d2f7061abcd",
            "stateChangeReason": {"code": "ERR-100000", "message": "connection refused"},
            "log": {
                "driverStdOut": "oss://bucket/path/to/stdout",
                "driverStdError": "oss://bucket/path/to/stderr",
                "driverSyslog": "oss://bucket/path/to/syslog",
                "driverStartup": "oss://bucket/path/to/startup"
            },
            "name": "jobName",
            "codeType": "SQL",
            "webUI": "http://spark-ui",
            "submitTime": "2023-05-15T02:55:14Z",
            "endTime": "2023-05-15T03:55:14Z",
            "releaseVersion": "esr-3.3.1",
            "displayReleaseVersion": "esr-4.0.0 (Spark 3.5.2, Scala 2.12)",
            "resourceQueueId": "root_queue",
            "tags": [{"key": "workflowId", "value": "wf-123test"}],
            "executionTimeoutSeconds": 3600,
            "priority": "5",
            "fusion": false,
            "environmentId": "env-cpv569tlhtgndjl8****",
            "notebookAccessUrl": "http://workflow-ide-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com/spark-notebook-output/w-xxxxxxxxx/xxxxxxx",
            "resourceOwnerId": "150978934701****",
            "jobDriver": {"sparkSubmit": {
                "entryPoint": "oss://bucket/path/to/entrypoint.jar",
                "entryPointArguments": ["arg1"],
                "sparkSubmitParameters": "--conf spark.app.name=test"
            }},
            "configurationOverrides": {"configurations": [{
                "configFileName": "common.conf",
                "configItemKey": "hive.metastore.type",
                "configItemValue": "USER_RDS"
            }]},
        });
        let mut got_without_conditions = got.clone();
        if let Some(obj) = got_without_conditions.as_object_mut() {
            obj.remove("conditions");
        }
        assert_eq!(got_without_conditions, want);
        assert_eq!(
            find(&status.conditions, SYNCED).map(|c| c.status.as_str()),
            Some("True")
        );
        assert_eq!(
            find(&status.conditions, RECONCILING).map(|c| c.reason.as_str()),
            Some("Running")
        );
    }

    #[test]
    fn unchanged_run_gives_identical_status() {
        let run = seed_run();
        let first = next_status(None, PollOutcome::Run(&run), ctx(), &now());
        let later = Time("2024-05-01T01:00:00Z".parse().expect("ts"));
        let second = next_status(Some(&first), PollOutcome::Run(&run), ctx(), &later);
        assert_eq!(first, second);
    }

    #[test]
    fn failed_call_keeps_last_good_status() {
        let mut run = seed_run();
        run.state = Some("Success".into());
        let good = next_status(None, PollOutcome::Run(&run), ctx(), &now());
        let after = next_status(
            Some(&good),
            PollOutcome::Failed {
                reason: Reason::Throttled,
                message: "Throttling.User: slow down",
            },
            ctx(),
            &now(),
        );
        let strip = |s: &SparkJobRunRefStatus| {
            let mut s = s.clone();
            s.conditions.retain(|c| c.type_ != SYNCED.as_str());
            s
        };
        assert_eq!(
            strip(&good),
            strip(&after),
            "fields and outcome conditions untouched"
        );
        let synced = find(&after.conditions, SYNCED).expect("synced");
        assert_eq!(
            (synced.status.as_str(), synced.reason.as_str()),
            ("False", "Throttled")
        );
        assert_eq!(
            find(&after.conditions, SUCCEEDED).map(|c| c.status.as_str()),
            Some("True")
        );
    }

    #[test]
    fn first_call_failing_reports_initializing() {
        let s = next_status(
            None,
            PollOutcome::Failed {
                reason: Reason::SecretNotFound,
                message: "Secret data/emr-ak not found",
            },
            ctx(),
            &now(),
        );
        assert_eq!(s.state, None);
        assert_eq!(
            find(&s.conditions, READY).map(|c| c.reason.as_str()),
            Some("Initializing")
        );
        assert_eq!(
            find(&s.conditions, SYNCED).map(|c| c.reason.as_str()),
            Some("SecretNotFound")
        );
    }

    #[test]
    fn not_found_keeps_fields_and_stalls() {
        let good = next_status(None, PollOutcome::Run(&seed_run()), ctx(), &now());
        let nf = next_status(
            Some(&good),
            PollOutcome::NotFound {
                message: "no such run",
            },
            ctx(),
            &now(),
        );
        assert_eq!(nf.state.as_deref(), Some("Running"));
        let stalled = find(&nf.conditions, STALLED).expect("stalled");
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", "JobRunNotFound")
        );
        assert!(find(&nf.conditions, RECONCILING).is_none());
        // An API error afterwards keeps the not-found verdict.
        let err = next_status(
            Some(&nf),
            PollOutcome::Failed {
                reason: Reason::EndpointUnreachable,
                message: "timeout",
            },
            ctx(),
            &now(),
        );
        assert_eq!(
            find(&err.conditions, STALLED).map(|c| c.reason.as_str()),
            Some("JobRunNotFound")
        );
    }

    #[test]
    fn skipped_only_refreshes_generation() {
        let mut run = seed_run();
        run.state = Some("Failed".into());
        let done = next_status(None, PollOutcome::Run(&run), ctx(), &now());
        let ctx2 = StatusContext {
            generation: Some(2),
            ..ctx()
        };
        let again = next_status(Some(&done), PollOutcome::Skipped, ctx2, &now());
        assert_eq!(again.observed_generation, Some(2));
        assert!(
            again
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(2))
        );
        assert_eq!(
            find(&again.conditions, FAILED).map(|c| c.status.as_str()),
            Some("True")
        );
        assert_eq!(again.terminal, Some(true));
    }

    type Edit<'a> = Box<dyn Fn(&mut serde_json::Map<String, serde_json::Value>, &str) + 'a>;

    /// Every field path of the seed answer that is a leaf or a list (lists are replaced whole).
    fn field_paths(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        if let Some(obj) = v.as_object() {
            for (k, child) in obj {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.push(path.clone());
                field_paths(child, &path, out);
            }
        }
    }

    fn edit(
        v: &mut serde_json::Value,
        path: &str,
        change: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>, &str),
    ) {
        let (parent, key) = match path.rsplit_once('.') {
            Some((p, k)) => (Some(p), k),
            None => (None, path),
        };
        let mut target = v;
        for part in parent.into_iter().flat_map(|p| p.split('.')) {
            target = &mut target[part];
        }
        if let Some(obj) = target.as_object_mut() {
            change(obj, key);
        }
    }

    /// A value of another JSON type than `v`'s.
    fn odd(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::String(_) => serde_json::json!(["not", "a", "string"]),
            serde_json::Value::Number(_) => serde_json::json!("not a number"),
            serde_json::Value::Bool(_) => serde_json::json!("yes"),
            serde_json::Value::Array(_) => serde_json::json!({"not": "a list"}),
            _ => serde_json::json!("not an object"),
        }
    }

    /// Issue 13: an answer that omits a field, sends it as `null` or in an odd type never
    /// erases what is known, for every field of the answer; odd types are reported.
    #[test]
    fn partial_answers_never_erase_a_field() {
        let raw: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/get-job-run-seed.json"))
                .expect("seed");
        let known = next_status(None, PollOutcome::Run(&seed_run()), ctx(), &now());
        let mut paths = Vec::new();
        field_paths(&raw["jobRun"], "", &mut paths);
        assert!(paths.len() > 25, "{paths:?}");
        let mut checked = 0;
        for path in &paths {
            let original = path.split('.').fold(&raw["jobRun"], |v, k| &v[k]).clone();
            let variants: [(&str, Edit<'_>); 3] = [
                (
                    "omitted",
                    Box::new(|o, k| {
                        o.remove(k);
                    }),
                ),
                (
                    "null",
                    Box::new(|o, k| {
                        o.insert(k.to_owned(), serde_json::Value::Null);
                    }),
                ),
                (
                    "odd",
                    Box::new(|o, k| {
                        o.insert(k.to_owned(), odd(&original));
                    }),
                ),
            ];
            for (variant, change) in &variants {
                let mut answer = raw.clone();
                edit(&mut answer["jobRun"], path, change.as_ref());
                let body = serde_json::to_vec(&answer).expect("encodes");
                let resp = wire::decode_get_job_run(&body).expect("decodes");
                let run = resp.job_run.expect("jobRun");
                let after = next_status(Some(&known), PollOutcome::Run(&run), ctx(), &now());
                assert_eq!(after, known, "{path} {variant} changed the status");
                if *variant == "odd" && !original.is_object() {
                    assert!(
                        run.undecodable.contains(path),
                        "{path}: {:?}",
                        run.undecodable
                    );
                } else if *variant != "odd" {
                    assert!(
                        run.undecodable.is_empty(),
                        "{path} {variant}: {:?}",
                        run.undecodable
                    );
                }
                checked += 1;
            }
        }
        assert_eq!(checked, paths.len() * 3);
    }

    #[test]
    fn a_decodable_value_replaces_and_an_ended_run_keeps_its_description() {
        let known = next_status(None, PollOutcome::Run(&seed_run()), ctx(), &now());
        let ended = wire::JobRun {
            state: Some("Success".into()),
            web_ui: Some("http://history-server".into()),
            ..wire::JobRun::default()
        };
        let after = next_status(Some(&known), PollOutcome::Run(&ended), ctx(), &now());
        assert_eq!(after.state.as_deref(), Some("Success"));
        assert_eq!(after.web_ui.as_deref(), Some("http://history-server"));
        assert_eq!(after.log, known.log, "log paths of the ended run stay");
        assert_eq!(after.name, known.name);
        assert_eq!(after.tags, known.tags);
        assert_eq!(after.submit_time, known.submit_time);
        // An empty list is a decodable value: the service says there are no tags now.
        let untagged = wire::JobRun {
            tags: Some(Vec::new()),
            ..ended
        };
        let after = next_status(Some(&known), PollOutcome::Run(&untagged), ctx(), &now());
        assert!(after.tags.is_empty());
    }

    #[test]
    fn reason_halves_are_kept_only_for_the_same_reason() {
        let reason = |code: Option<&str>, message: Option<&str>| wire::JobRun {
            state: Some("Failed".into()),
            state_change_reason: Some(wire::StateChangeReason {
                code: code.map(str::to_owned),
                message: message.map(str::to_owned),
            }),
            ..wire::JobRun::default()
        };
        let known = next_status(
            None,
            PollOutcome::Run(&reason(Some("ERR-1"), Some("oom"))),
            ctx(),
            &now(),
        );
        let pair = |s: &SparkJobRunRefStatus| {
            let r = s.state_change_reason.clone().expect("reason");
            (r.code, r.message)
        };
        let some = |v: &str| Some(v.to_owned());
        for (code, message, want) in [
            (None, Some("oom"), (some("ERR-1"), some("oom"))),
            (Some("ERR-1"), None, (some("ERR-1"), some("oom"))),
            (Some("ERR-2"), None, (some("ERR-2"), None)),
            (None, Some("disk full"), (None, some("disk full"))),
            (None, None, (some("ERR-1"), some("oom"))),
        ] {
            let after = next_status(
                Some(&known),
                PollOutcome::Run(&reason(code, message)),
                ctx(),
                &now(),
            );
            assert_eq!(pair(&after), want, "{code:?} {message:?}");
        }
    }
}
