//! Job runs that follow a script of states over time. Pure: the answer at a moment is a function
//! of the script, the moment the run started and that moment, so tests pin both clocks.

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::signer::percent_encode;
use crate::wire;

/// States after which a run never changes. `CancelFailed` is deliberately not one: the run may
/// still be alive after a failed cancel.
pub const TERMINAL_STATES: [&str; 3] = ["Success", "Failed", "Cancelled"];

pub fn is_terminal(state: &str) -> bool {
    TERMINAL_STATES.contains(&state)
}

/// Upper bound for any scripted duration (ten years), so millisecond arithmetic cannot overflow.
const MAX_SECONDS: f64 = 10.0 * 365.0 * 24.0 * 3600.0;

/// A scripted job run: who it is, what GetJobRun shows about it besides the state, and how the
/// state changes. Every descriptive field is optional; absent ones get defaults modelled on the
/// reference example answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RunScript {
    pub workspace_id: String,
    pub job_run_id: String,
    /// The region the run lives in; asked for from another region it is not found. Absent: every
    /// region finds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region_id: Option<String>,
    /// The states the run goes through. Empty (and no `holdState`): Submitted 1 s, Running 5 s,
    /// Success.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<Phase>,
    /// A state the run shows forever; replaces `phases`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_state: Option<String>,

    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_type: Option<String>,
    #[serde(rename = "webUI", skip_serializing_if = "Option::is_none")]
    pub web_ui: Option<String>,
    /// Fixed log paths. Absent: HTTPS links while the run is live, `oss://` paths once it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<wire::RunLog>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_release_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_queue_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<wire::Tag>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_timeout_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_owner_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_driver: Option<wire::JobDriver>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configuration_overrides: Option<wire::ConfigurationOverrides>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fusion: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notebook_access_url: Option<String>,
    /// A string on the wire ("5"); a number in the script is accepted too.
    #[serde(
        deserialize_with = "string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub priority: Option<String>,

    /// How long CancelJobRun leaves the run `Cancelling` before it is `Cancelled`. Absent: 2 s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_seconds: Option<f64>,

    /// `jobRun` keys to leave out of the answer, to exercise a client's tolerance of missing
    /// fields.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub omit_fields: Vec<String>,
    /// Keys added to `jobRun` verbatim (newer service versions add fields such as `totalTokens`).
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub extra_fields: Map<String, Value>,
}

/// One state of a run and when it begins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Phase {
    /// Any string: the PascalCase states of the service, `CancelFailed`, or one it never sent.
    pub state: String,
    /// Seconds after the run started at which this phase begins. Absent: when the previous phase
    /// has lasted its `forSeconds` (the first phase begins at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_seconds: Option<f64>,
    /// How long this phase lasts. Absent on the last phase: forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_change_reason: Option<Reason>,
}

/// Why a run changed state, e.g. why it failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Reason {
    pub code: String,
    pub message: String,
}

/// How long a cancel takes when the script does not say.
pub const DEFAULT_CANCEL_SECONDS: f64 = 2.0;

/// What is wrong with a run script.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScriptError {
    #[error("{0} must not be empty")]
    EmptyField(&'static str),
    #[error("holdState and phases are exclusive: a held run never goes through phases")]
    HoldWithPhases,
    #[error("phase {index} has an empty state")]
    EmptyState { index: usize },
    #[error("phase {index}: {field} = {value} is not a number of seconds between 0 and ten years")]
    InvalidDuration {
        index: usize,
        field: &'static str,
        value: f64,
    },
    #[error(
        "phase {index} can never begin: the phase before it lasts forever (give it forSeconds, or give phase {index} afterSeconds)"
    )]
    Unreachable { index: usize },
    #[error("phase {index} begins before the phase before it")]
    OutOfOrder { index: usize },
}

impl RunScript {
    /// A run with default phases (Submitted 1 s, Running 5 s, Success) and default fields.
    pub fn new(workspace_id: impl Into<String>, job_run_id: impl Into<String>) -> Self {
        Self {
            workspace_id: workspace_id.into(),
            job_run_id: job_run_id.into(),
            ..Self::default()
        }
    }

    pub fn with_phases(mut self, phases: Vec<Phase>) -> Self {
        self.phases = phases;
        self
    }

    /// A run that shows `state` forever.
    pub fn holding(mut self, state: impl Into<String>) -> Self {
        self.hold_state = Some(state.into());
        self
    }

    pub fn in_region(mut self, region_id: impl Into<String>) -> Self {
        self.region_id = Some(region_id.into());
        self
    }

    /// Whether a GetJobRun for this workspace and region finds the run.
    pub fn is_visible_from(&self, workspace_id: &str, region_id: &str) -> bool {
        self.workspace_id == workspace_id
            && self.region_id.as_deref().is_none_or(|r| r == region_id)
    }

    pub fn validate(&self) -> Result<(), ScriptError> {
        if self.workspace_id.is_empty() {
            return Err(ScriptError::EmptyField("workspaceId"));
        }
        if self.job_run_id.is_empty() {
            return Err(ScriptError::EmptyField("jobRunId"));
        }
        if self.region_id.as_deref() == Some("") {
            return Err(ScriptError::EmptyField("regionId"));
        }
        if self.hold_state.is_some() && !self.phases.is_empty() {
            return Err(ScriptError::HoldWithPhases);
        }
        if self.hold_state.as_deref() == Some("") {
            return Err(ScriptError::EmptyField("holdState"));
        }
        let starts = phase_starts(&self.phases);
        let mut previous: Option<i64> = None;
        let mut previous_open = false;
        for (index, (phase, start)) in self.phases.iter().zip(starts).enumerate() {
            if phase.state.is_empty() {
                return Err(ScriptError::EmptyState { index });
            }
            for (field, value) in [
                ("afterSeconds", phase.after_seconds),
                ("forSeconds", phase.for_seconds),
            ] {
                if let Some(value) = value
                    && seconds_to_ms(value).is_none()
                {
                    return Err(ScriptError::InvalidDuration {
                        index,
                        field,
                        value,
                    });
                }
            }
            if index > 0 && previous_open && phase.after_seconds.is_none() {
                return Err(ScriptError::Unreachable { index });
            }
            previous_open = phase.for_seconds.is_none();
            if let (Some(prev), Some(start)) = (previous, start)
                && start < prev
            {
                return Err(ScriptError::OutOfOrder { index });
            }
            previous = start;
        }
        Ok(())
    }

    /// The script after a CancelJobRun `elapsed_ms` after the start: what was shown so far, then
    /// `Cancelling`, then `Cancelled`. `Err` with the current state when the run has ended; a run
    /// already cancelling is left as it is.
    pub fn cancelled(&self, elapsed_ms: i64) -> Result<Option<RunScript>, String> {
        let phases = self.effective_phases();
        let current = current_phase(&phases, elapsed_ms).map(|(p, _)| p.state.clone());
        let state = current.unwrap_or_else(|| "Submitted".to_owned());
        if is_terminal(&state) {
            return Err(state);
        }
        if state == "Cancelling" {
            return Ok(None);
        }
        let starts = phase_starts(&phases);
        let secs = |ms: i64| ms as f64 / 1000.0;
        let mut shown: Vec<Phase> = phases
            .into_iter()
            .zip(starts)
            .filter_map(|(phase, start)| {
                let start = start.filter(|s| *s <= elapsed_ms)?;
                Some(Phase {
                    after_seconds: Some(secs(start)),
                    for_seconds: None,
                    ..phase
                })
            })
            .collect();
        let cancel = self
            .cancel_seconds
            .filter(|s| s.is_finite())
            .unwrap_or(DEFAULT_CANCEL_SECONDS)
            .clamp(0.0, 3600.0);
        shown.push(Phase::new("Cancelling").after_secs(secs(elapsed_ms)));
        shown.push(
            Phase::new("Cancelled")
                .after_secs(secs(elapsed_ms) + cancel)
                .reason(
                    "JobRunCancelled",
                    "The job run was cancelled by CancelJobRun.",
                ),
        );
        Ok(Some(RunScript {
            phases: shown,
            hold_state: None,
            ..self.clone()
        }))
    }

    /// The phases the run actually goes through (`holdState` and the default included).
    pub fn effective_phases(&self) -> Vec<Phase> {
        if let Some(state) = &self.hold_state {
            return vec![Phase::new(state.clone())];
        }
        if self.phases.is_empty() {
            return vec![
                Phase::new("Submitted").for_secs(1.0),
                Phase::new("Running").for_secs(5.0),
                Phase::new("Success"),
            ];
        }
        self.phases.clone()
    }
}

impl Phase {
    pub fn new(state: impl Into<String>) -> Self {
        Self {
            state: state.into(),
            after_seconds: None,
            for_seconds: None,
            state_change_reason: None,
        }
    }

    pub fn for_secs(mut self, seconds: f64) -> Self {
        self.for_seconds = Some(seconds);
        self
    }

    pub fn after_secs(mut self, seconds: f64) -> Self {
        self.after_seconds = Some(seconds);
        self
    }

    pub fn reason(mut self, code: impl Into<String>, message: impl Into<String>) -> Self {
        self.state_change_reason = Some(Reason {
            code: code.into(),
            message: message.into(),
        });
        self
    }
}

fn seconds_to_ms(seconds: f64) -> Option<i64> {
    (seconds.is_finite() && (0.0..=MAX_SECONDS).contains(&seconds))
        .then(|| (seconds * 1000.0).round() as i64)
}

/// When each phase begins, in milliseconds after the start; `None` for a phase that can never
/// begin. The first phase is shown from the start even if it names a later `afterSeconds`.
fn phase_starts(phases: &[Phase]) -> Vec<Option<i64>> {
    let mut starts: Vec<Option<i64>> = Vec::with_capacity(phases.len());
    for (index, phase) in phases.iter().enumerate() {
        let start = match (index, phase.after_seconds) {
            (0, _) => Some(0),
            (_, Some(after)) => seconds_to_ms(after),
            (_, None) => {
                let prev = &phases[index - 1];
                let prev_start = starts.last().copied().flatten();
                match (prev_start, prev.for_seconds.and_then(seconds_to_ms)) {
                    (Some(s), Some(d)) => Some(s + d),
                    _ => None,
                }
            }
        };
        starts.push(start);
    }
    starts
}

/// The phase shown `elapsed_ms` after the start and when it began.
fn current_phase(phases: &[Phase], elapsed_ms: i64) -> Option<(&Phase, i64)> {
    let starts = phase_starts(phases);
    let mut current: Option<(&Phase, i64)> = None;
    for (phase, start) in phases.iter().zip(starts) {
        if let Some(start) = start
            && start <= elapsed_ms
            && current.is_none_or(|(_, s)| start >= s)
        {
            current = Some((phase, start));
        }
    }
    current
}

/// The `jobRun` GetJobRun shows for `script` at `now`, the run having been submitted at
/// `started_at`.
pub fn job_run_at(script: &RunScript, started_at: Timestamp, now: Timestamp) -> wire::JobRun {
    let submit_ms = started_at.as_millisecond();
    let elapsed_ms = (now.as_millisecond() - submit_ms).max(0);
    let phases = script.effective_phases();
    let (state, began_ms, reason) = match current_phase(&phases, elapsed_ms) {
        Some((phase, start)) => (
            phase.state.clone(),
            start,
            phase.state_change_reason.clone(),
        ),
        None => ("Submitted".to_owned(), 0, None),
    };
    let ended = is_terminal(&state);
    let ws = &script.workspace_id;
    let jr = &script.job_run_id;
    let or = |value: &Option<String>, default: &str| {
        Some(value.clone().unwrap_or_else(|| default.to_owned()))
    };
    wire::JobRun {
        workspace_id: Some(ws.clone()),
        job_run_id: Some(jr.clone()),
        name: or(&script.name, jr),
        state: Some(state),
        state_change_reason: reason.map(|r| wire::StateChangeReason {
            code: Some(r.code),
            message: Some(r.message),
        }),
        submit_time: Some(submit_ms),
        end_time: ended.then_some(submit_ms + began_ms),
        code_type: or(&script.code_type, "JAR"),
        web_ui: Some(script.web_ui.clone().unwrap_or_else(|| {
            format!(
                "{LIVE_BASE}/workspaces/{}/jobRuns/{}/sparkui",
                percent_encode(ws),
                percent_encode(jr)
            )
        })),
        execution_timeout_seconds: Some(script.execution_timeout_seconds.unwrap_or(3600)),
        resource_owner_id: or(&script.resource_owner_id, "1509789347010000"),
        tags: Some(script.tags.clone().unwrap_or_else(|| {
            vec![wire::Tag {
                key: Some("workflowId".into()),
                value: Some("wf-123test".into()),
            }]
        })),
        log: Some(
            script
                .log
                .clone()
                .unwrap_or_else(|| default_log(ws, jr, ended)),
        ),
        release_version: or(&script.release_version, RELEASE),
        display_release_version: or(&script.display_release_version, RELEASE),
        resource_queue_id: or(&script.resource_queue_id, "root_queue"),
        job_driver: Some(script.job_driver.clone().unwrap_or_else(default_job_driver)),
        configuration_overrides: Some(
            script
                .configuration_overrides
                .clone()
                .unwrap_or_else(default_configuration_overrides),
        ),
        fusion: Some(script.fusion.unwrap_or(false)),
        environment_id: or(&script.environment_id, "env-cpv569tlhtgndjl8sim0"),
        notebook_access_url: Some(script.notebook_access_url.clone().unwrap_or_else(|| {
            format!(
                "{LIVE_BASE}/spark-notebook-output/{}/{}",
                percent_encode(ws),
                percent_encode(jr)
            )
        })),
        priority: or(&script.priority, "5"),
        usage: None,
        undecodable: Vec::new(),
    }
}

/// The whole success body, `{"requestId", "jobRun"}`, as the service sends it: absent fields are
/// left out rather than `null`, `omitFields` removed and `extraFields` added.
pub fn answer_body(
    script: &RunScript,
    started_at: Timestamp,
    now: Timestamp,
    request_id: &str,
) -> Value {
    let mut job_run = serde_json::to_value(job_run_at(script, started_at, now)).unwrap_or_default();
    strip_nulls(&mut job_run);
    if let Some(map) = job_run.as_object_mut() {
        for key in &script.omit_fields {
            map.remove(key);
        }
        for (key, value) in &script.extra_fields {
            map.insert(key.clone(), value.clone());
        }
    }
    serde_json::json!({ "requestId": request_id, "jobRun": job_run })
}

fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Links of a live run point here; `.invalid` never resolves, so nothing leaves the machine.
const LIVE_BASE: &str = "https://emr-serverless-spark.simulator.invalid";
const RELEASE: &str = "esr-4.0.0 (Spark 3.5.2, Scala 2.12)";

fn default_log(workspace_id: &str, job_run_id: &str, ended: bool) -> wire::RunLog {
    let (ws, jr) = (percent_encode(workspace_id), percent_encode(job_run_id));
    let path = |file: &str| {
        if ended {
            format!("oss://emr-serverless-spark-sim/{ws}/{jr}/driver/{file}.log")
        } else {
            format!("{LIVE_BASE}/workspaces/{ws}/jobRuns/{jr}/logs/driver/{file}")
        }
    };
    wire::RunLog {
        driver_std_out: Some(path("stdout")),
        driver_std_error: Some(path("stderr")),
        driver_syslog: Some(path("syslog")),
        driver_startup: Some(path("startup")),
    }
}

fn default_job_driver() -> wire::JobDriver {
    wire::JobDriver {
        spark_submit: Some(wire::SparkSubmit {
            entry_point: Some("oss://bucket/path/to/entrypoint.jar".into()),
            entry_point_arguments: Some(vec!["arg1".into()]),
            spark_submit_parameters: Some("--conf spark.app.name=test".into()),
        }),
    }
}

fn default_configuration_overrides() -> wire::ConfigurationOverrides {
    wire::ConfigurationOverrides {
        configurations: Some(vec![wire::Configuration {
            config_file_name: Some("common.conf".into()),
            config_item_key: Some("hive.metastore.type".into()),
            config_item_value: Some("USER_RDS".into()),
        }]),
    }
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        S(String),
        I(i64),
    }
    Ok(Option::<Raw>::deserialize(d)?.map(|raw| match raw {
        Raw::S(s) => s,
        Raw::I(i) => i.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("valid timestamp")
    }

    const START: &str = "2024-05-15T03:35:14Z";

    fn at(script: &RunScript, seconds: f64) -> wire::JobRun {
        let start = t(START);
        let now = Timestamp::from_millisecond(start.as_millisecond() + (seconds * 1000.0) as i64)
            .expect("in range");
        job_run_at(script, start, now)
    }

    #[test]
    fn states_follow_the_phases() {
        let failing = RunScript::new("w-1", "jr-1").with_phases(vec![
            Phase::new("Submitted").for_secs(2.0),
            Phase::new("Running").for_secs(5.0),
            Phase::new("Failed").reason("ERR-100000", "connection refused"),
        ]);
        let start_ms = t(START).as_millisecond();
        let cases: [(f64, &str, Option<i64>); 6] = [
            (0.0, "Submitted", None),
            (1.999, "Submitted", None),
            (2.0, "Running", None),
            (6.9, "Running", None),
            (7.0, "Failed", Some(start_ms + 7000)),
            (3600.0, "Failed", Some(start_ms + 7000)),
        ];
        for (seconds, state, end) in cases {
            let run = at(&failing, seconds);
            assert_eq!(run.state.as_deref(), Some(state), "at {seconds}s");
            assert_eq!(run.end_time, end, "at {seconds}s");
            assert_eq!(run.submit_time, Some(start_ms));
        }
        let reason = at(&failing, 8.0).state_change_reason.expect("reason");
        assert_eq!(reason.code.as_deref(), Some("ERR-100000"));
        assert_eq!(reason.message.as_deref(), Some("connection refused"));
        assert_eq!(at(&failing, 3.0).state_change_reason, None);
    }

    #[test]
    fn cancel_goes_through_cancelling_and_keeps_the_past() {
        let mut script = RunScript::new("w", "jr").with_phases(vec![
            Phase::new("Submitted").for_secs(1.0),
            Phase::new("Running").for_secs(100.0),
            Phase::new("Success"),
        ]);
        script.cancel_seconds = Some(3.0);
        let cancelled = script.cancelled(10_000).expect("active").expect("changed");
        assert_eq!(cancelled.validate(), Ok(()));
        for (s, state) in [
            (0.5, "Submitted"),
            (5.0, "Running"),
            (10.0, "Cancelling"),
            (12.9, "Cancelling"),
            (13.0, "Cancelled"),
            (500.0, "Cancelled"),
        ] {
            assert_eq!(at(&cancelled, s).state.as_deref(), Some(state), "at {s}");
        }
        let end = at(&cancelled, 20.0);
        assert_eq!(end.end_time, Some(t(START).as_millisecond() + 13_000));
        assert_eq!(
            end.state_change_reason.and_then(|r| r.code).as_deref(),
            Some("JobRunCancelled")
        );
        assert_eq!(cancelled.cancelled(11_000), Ok(None), "already cancelling");
        assert_eq!(cancelled.cancelled(14_000), Err("Cancelled".to_owned()));
        assert_eq!(script.cancelled(200_000), Err("Success".to_owned()));
        let held = RunScript::new("w", "jr").holding("Running");
        let stopped = held.cancelled(0).expect("active").expect("changed");
        assert_eq!(at(&stopped, 0.0).state.as_deref(), Some("Cancelling"));
        assert_eq!(at(&stopped, 2.0).state.as_deref(), Some("Cancelled"));
    }

    #[test]
    fn default_hold_unknown_and_cancel_failed() {
        let default = RunScript::new("w", "jr");
        let table = [
            (0.5, "Submitted"),
            (1.0, "Running"),
            (5.9, "Running"),
            (6.0, "Success"),
        ];
        for (s, state) in table {
            assert_eq!(
                at(&default, s).state.as_deref(),
                Some(state),
                "default at {s}"
            );
        }
        let held = RunScript::new("w", "jr").holding("Running");
        assert_eq!(at(&held, 1e6).state.as_deref(), Some("Running"));
        assert_eq!(at(&held, 1e6).end_time, None);

        let odd = RunScript::new("w", "jr").with_phases(vec![
            Phase::new("Running").for_secs(1.0),
            Phase::new("Cancelling").for_secs(1.0),
            Phase::new("CancelFailed").for_secs(1.0),
            Phase::new("Exploding"),
        ]);
        let table = [
            (1.5, "Cancelling"),
            (2.5, "CancelFailed"),
            (9.0, "Exploding"),
        ];
        for (s, state) in table {
            let run = at(&odd, s);
            assert_eq!(run.state.as_deref(), Some(state), "at {s}");
            assert_eq!(run.end_time, None, "{state} is not terminal");
        }
    }

    #[test]
    fn after_seconds_and_for_seconds_mix() {
        let script = RunScript::new("w", "jr").with_phases(vec![
            Phase::new("Pending"),
            Phase::new("Running").after_secs(3.0).for_secs(1.5),
            Phase::new("Cancelled"),
        ]);
        script.validate().expect("valid");
        let table = [
            (2.9, "Pending"),
            (3.0, "Running"),
            (4.49, "Running"),
            (4.5, "Cancelled"),
        ];
        for (s, state) in table {
            assert_eq!(at(&script, s).state.as_deref(), Some(state), "at {s}");
        }
    }

    #[test]
    fn clock_before_the_start_shows_the_first_phase() {
        let run = job_run_at(
            &RunScript::new("w", "jr"),
            t(START),
            t("2024-05-15T03:00:00Z"),
        );
        assert_eq!(run.state.as_deref(), Some("Submitted"));
    }

    #[test]
    fn validation_table() {
        let base = || RunScript::new("w", "jr");
        let cases: Vec<(RunScript, Option<ScriptError>)> = vec![
            (base(), None),
            (base().holding("Running"), None),
            (
                RunScript::new("", "jr"),
                Some(ScriptError::EmptyField("workspaceId")),
            ),
            (
                RunScript::new("w", ""),
                Some(ScriptError::EmptyField("jobRunId")),
            ),
            (
                base().in_region(""),
                Some(ScriptError::EmptyField("regionId")),
            ),
            (
                base().holding(""),
                Some(ScriptError::EmptyField("holdState")),
            ),
            (
                base()
                    .holding("Running")
                    .with_phases(vec![Phase::new("Success")]),
                Some(ScriptError::HoldWithPhases),
            ),
            (
                base().with_phases(vec![Phase::new("")]),
                Some(ScriptError::EmptyState { index: 0 }),
            ),
            (
                base().with_phases(vec![Phase::new("Running").for_secs(-1.0)]),
                Some(ScriptError::InvalidDuration {
                    index: 0,
                    field: "forSeconds",
                    value: -1.0,
                }),
            ),
            (
                base().with_phases(vec![Phase::new("Running"), Phase::new("Success")]),
                Some(ScriptError::Unreachable { index: 1 }),
            ),
            (
                base().with_phases(vec![
                    Phase::new("Running").after_secs(0.0),
                    Phase::new("Pending").after_secs(5.0),
                    Phase::new("Success").after_secs(2.0),
                ]),
                Some(ScriptError::OutOfOrder { index: 2 }),
            ),
        ];
        for (script, want) in cases {
            assert_eq!(script.validate().err(), want, "{script:?}");
        }
        assert!(
            matches!(
                base()
                    .with_phases(vec![Phase::new("x").after_secs(f64::NAN)])
                    .validate(),
                Err(ScriptError::InvalidDuration { .. })
            ),
            "NaN"
        );
    }

    #[test]
    fn logs_are_links_while_live_and_oss_paths_once_ended() {
        let script = RunScript::new("w 1", "jr/1");
        let live = at(&script, 0.0).log.expect("log");
        let stdout = live.driver_std_out.expect("stdout");
        assert!(stdout.starts_with("https://"), "{stdout}");
        assert!(stdout.contains("/w%201/jobRuns/jr%2F1/"), "{stdout}");
        let ended = at(&script, 10.0).log.expect("log");
        assert_eq!(
            ended.driver_std_error.as_deref(),
            Some("oss://emr-serverless-spark-sim/w%201/jr%2F1/driver/stderr.log")
        );
        let fixed = wire::RunLog {
            driver_std_out: Some("oss://b/x".into()),
            ..wire::RunLog::default()
        };
        let script = RunScript {
            log: Some(fixed.clone()),
            ..RunScript::new("w", "jr")
        };
        assert_eq!(at(&script, 0.0).log, Some(fixed));
    }

    #[test]
    fn answer_has_the_reference_shape() {
        let seed: Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/get-job-run-seed.json"
        ))
        .expect("seed");
        let body = answer_body(
            &RunScript::new("w", "jr").holding("Running"),
            t(START),
            t(START),
            "RID",
        );
        assert_eq!(body["requestId"], "RID");
        let keys = |v: &Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
            k.sort();
            k
        };
        // A held run has no end time and no reason; every other key of the example is there.
        let mut want = keys(&seed["jobRun"]);
        want.retain(|k| k != "endTime" && k != "stateChangeReason");
        assert_eq!(keys(&body["jobRun"]), want);
        assert_eq!(keys(&body), keys(&seed));
        assert_eq!(body["jobRun"]["priority"], "5");
        assert_eq!(body["jobRun"]["submitTime"], t(START).as_millisecond());
        let decoded: wire::GetJobRunResponse = serde_json::from_value(body).expect("decodes");
        assert_eq!(
            decoded.job_run.and_then(|r| r.state).as_deref(),
            Some("Running")
        );
    }

    #[test]
    fn omit_and_extra_fields() {
        let mut script = RunScript::new("w", "jr");
        script.omit_fields = vec!["log".into(), "priority".into()];
        script
            .extra_fields
            .insert("totalTokens".into(), Value::from(42));
        let body = answer_body(&script, t(START), t(START), "RID");
        let run = body["jobRun"].as_object().expect("object");
        assert!(!run.contains_key("log") && !run.contains_key("priority"));
        assert_eq!(run["totalTokens"], 42);
    }

    #[test]
    fn scripts_decode_from_yaml() {
        let yaml = r#"
workspaceId: w-1
jobRunId: jr-1
regionId: cn-hangzhou
priority: 7
tags: [{key: team, value: data}]
phases:
  - {state: Submitted, forSeconds: 0.5}
  - {state: Failed, stateChangeReason: {code: ERR-1, message: boom}}
"#;
        let script: RunScript = serde_yaml::from_str(yaml).expect("decodes");
        script.validate().expect("valid");
        assert_eq!(script.priority.as_deref(), Some("7"));
        assert!(script.is_visible_from("w-1", "cn-hangzhou"));
        assert!(!script.is_visible_from("w-1", "cn-beijing"));
        assert!(!script.is_visible_from("w-2", "cn-hangzhou"));
        assert!(RunScript::new("w-1", "x").is_visible_from("w-1", "anywhere"));
        let typo = "workspaceId: w\njobRunId: j\nphases: [{state: Running, forSecond: 1}]\n";
        assert!(
            serde_yaml::from_str::<RunScript>(typo).is_err(),
            "typos are reported"
        );
        // Round trip through JSON (the admin API echoes scripts).
        let json = serde_json::to_string(&script).expect("encodes");
        assert_eq!(
            serde_json::from_str::<RunScript>(&json).expect("decodes"),
            script
        );
    }
}
