//! Injectable failures, so the operator's retry, backoff and error reporting can be tested against
//! every way the service (or the load balancer in front of it) is known to fail. Faults apply only
//! to correctly signed requests: a badly signed request is always rejected first, as the gateway
//! would.

use serde::{Deserialize, Serialize};

use super::error::ServiceError;

/// What a fault does to a GetJobRun answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum FaultKind {
    /// 500 `InternalError`.
    InternalError,
    /// 503 `ServiceUnavailable`.
    ServiceUnavailable,
    /// Flow control: `Throttling.User` (or another `Throttling*` code), 400 or 429, optionally
    /// with `x-acs-retry-after` in milliseconds.
    Throttling {
        #[serde(default = "default_throttling_status")]
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
        #[serde(default = "default_throttling_code")]
        code: String,
    },
    /// Waits this long, then answers normally (or with another fault that also applies).
    Slow { delay_ms: u64 },
    /// 502 with an HTML page, as a load balancer in front of the service sends.
    HtmlErrorPage,
    /// 200 with a truncated JSON body.
    MalformedJson,
    /// 404 `JobRunNotFound`, even for a run that exists.
    NotFound,
    /// 403 `Forbidden.RAM` with `AccessDeniedDetail` naming `emr-serverless-spark:GetJobRun`.
    ForbiddenRam,
    /// 200 with the run's normal answer, minus the `jobRun` fields in `omit` and with those in
    /// `set` replaced (any JSON, so also `null` or a value of the wrong type): the answers a
    /// degraded backend or an older API version gives.
    Partial {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        omit: Vec<String>,
        #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
        set: serde_json::Map<String, serde_json::Value>,
    },
}

fn default_throttling_status() -> u16 {
    400
}

fn default_throttling_code() -> String {
    "Throttling.User".to_owned()
}

/// A fault and where it applies: one run (`jobRunId`) or every call, one API (`action`:
/// `GetJobRun`, `ListJobRuns`, `CancelJobRun`) or all, for the next `times` matching calls or
/// until cleared. A run-scoped fault never applies to ListJobRuns, whose path names no run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    #[serde(flatten)]
    pub kind: FaultKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
}

/// The APIs a fault can be limited to.
pub const FAULT_ACTIONS: [&str; 3] = ["GetJobRun", "ListJobRuns", "CancelJobRun"];

/// What is wrong with a fault specification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    #[error("times must be at least 1 (leave it out for a fault that lasts until cleared)")]
    ZeroTimes,
    #[error("throttling status {0} is neither 400 nor 429")]
    ThrottlingStatus(u16),
    #[error("throttling code {0:?} does not start with \"Throttling\"")]
    ThrottlingCode(String),
    #[error("delayMs {0} is more than {MAX_DELAY_MS} ms")]
    DelayTooLong(u64),
    #[error("jobRunId must not be empty (leave it out for a fault on every run)")]
    EmptyJobRunId,
    #[error("action {0:?} is none of GetJobRun, ListJobRuns, CancelJobRun")]
    UnknownAction(String),
    #[error("a partial answer needs at least one field in omit or set")]
    EmptyPartial,
    #[error("a partial answer cannot omit or set {0:?}, which identifies the run")]
    PartialIdentity(String),
}

/// Longest injectable delay: long enough for any client timeout, short enough not to wedge CI.
pub const MAX_DELAY_MS: u64 = 10 * 60 * 1000;

impl Fault {
    /// A fault on every run until cleared.
    pub fn new(kind: FaultKind) -> Self {
        Self {
            kind,
            job_run_id: None,
            action: None,
            times: None,
        }
    }

    /// Only for calls of `action`.
    pub fn for_action(mut self, action: impl Into<String>) -> Self {
        self.action = Some(action.into());
        self
    }

    pub fn for_run(mut self, job_run_id: impl Into<String>) -> Self {
        self.job_run_id = Some(job_run_id.into());
        self
    }

    pub fn times(mut self, times: u64) -> Self {
        self.times = Some(times);
        self
    }

    pub fn validate(&self) -> Result<(), FaultError> {
        if self.times == Some(0) {
            return Err(FaultError::ZeroTimes);
        }
        if self.job_run_id.as_deref() == Some("") {
            return Err(FaultError::EmptyJobRunId);
        }
        if let Some(action) = self
            .action
            .as_ref()
            .filter(|a| !FAULT_ACTIONS.contains(&a.as_str()))
        {
            return Err(FaultError::UnknownAction(action.clone()));
        }
        match &self.kind {
            FaultKind::Throttling { status, code, .. } => {
                if !matches!(status, 400 | 429) {
                    return Err(FaultError::ThrottlingStatus(*status));
                }
                if !code.starts_with("Throttling") {
                    return Err(FaultError::ThrottlingCode(code.clone()));
                }
            }
            FaultKind::Slow { delay_ms } if *delay_ms > MAX_DELAY_MS => {
                return Err(FaultError::DelayTooLong(*delay_ms));
            }
            FaultKind::Partial { omit, set } => {
                if omit.is_empty() && set.is_empty() {
                    return Err(FaultError::EmptyPartial);
                }
                // Without these the answer is about no run at all, which is another fault.
                if let Some(key) = omit
                    .iter()
                    .chain(set.keys())
                    .find(|k| matches!(k.as_str(), "jobRunId" | "workspaceId" | "state"))
                {
                    return Err(FaultError::PartialIdentity(key.clone()));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn applies_to(&self, call: Target<'_>) -> bool {
        self.job_run_id
            .as_deref()
            .is_none_or(|id| Some(id) == call.job_run_id)
            && self.action.as_deref().is_none_or(|a| a == call.action)
    }
}

/// How a fault replaces the normal answer.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAnswer {
    Error(ServiceError),
    HtmlErrorPage,
    MalformedJson,
    /// The normal answer with these `jobRun` fields removed and these set.
    Partial {
        omit: Vec<String>,
        set: serde_json::Map<String, serde_json::Value>,
    },
}

impl FaultAnswer {
    /// Applies a partial answer to a normal success body; other answers replace it whole.
    pub fn degrade(
        omit: &[String],
        set: &serde_json::Map<String, serde_json::Value>,
        body: &mut serde_json::Value,
    ) {
        if let Some(run) = body.get_mut("jobRun").and_then(|r| r.as_object_mut()) {
            for key in omit {
                run.remove(key);
            }
            for (key, value) in set {
                run.insert(key.clone(), value.clone());
            }
        }
    }
}

impl FaultKind {
    /// The answer this fault gives to a call of `action`, `None` for a delay only.
    pub fn answer(
        &self,
        access_key_id: &str,
        job_run_id: &str,
        action: &str,
    ) -> Option<FaultAnswer> {
        Some(match self {
            Self::InternalError => FaultAnswer::Error(ServiceError::internal_error()),
            Self::ServiceUnavailable => FaultAnswer::Error(ServiceError::service_unavailable()),
            Self::Throttling {
                status,
                retry_after_ms,
                code,
            } => FaultAnswer::Error(ServiceError::throttling(code, *status, *retry_after_ms)),
            Self::Slow { .. } => return None,
            Self::HtmlErrorPage => FaultAnswer::HtmlErrorPage,
            Self::MalformedJson => FaultAnswer::MalformedJson,
            Self::NotFound => FaultAnswer::Error(ServiceError::job_run_not_found(job_run_id)),
            Self::ForbiddenRam => {
                FaultAnswer::Error(ServiceError::forbidden_ram(access_key_id, action))
            }
            Self::Partial { omit, set } => FaultAnswer::Partial {
                omit: omit.clone(),
                set: set.clone(),
            },
        })
    }
}

/// An injected fault and how many more calls it applies to (`None`: until cleared).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveFault {
    pub id: u64,
    #[serde(flatten)]
    pub fault: Fault,
    pub remaining: Option<u64>,
}

/// The faults that fired for one call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Triggered {
    /// Sum of the delays of every `slow` fault that applies.
    pub delay_ms: u64,
    /// The fault that replaces the answer, if any.
    pub answer: Option<FaultKind>,
}

/// The call a fault may apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub action: &'a str,
    /// `None` for ListJobRuns.
    pub job_run_id: Option<&'a str>,
}

impl<'a> Target<'a> {
    pub fn get(job_run_id: &'a str) -> Self {
        Self {
            action: "GetJobRun",
            job_run_id: Some(job_run_id),
        }
    }
}

/// The injected faults, in injection order.
#[derive(Debug, Default)]
pub struct FaultTable {
    next_id: u64,
    entries: Vec<ActiveFault>,
}

impl FaultTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a fault and returns its id.
    pub fn inject(&mut self, fault: Fault) -> u64 {
        self.next_id += 1;
        let remaining = fault.times;
        self.entries.push(ActiveFault {
            id: self.next_id,
            fault,
            remaining,
        });
        self.next_id
    }

    pub fn remove(&mut self, id: u64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.id != id);
        self.entries.len() != before
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn list(&self) -> Vec<ActiveFault> {
        self.entries.clone()
    }

    /// The faults that apply to `call`, spending one of their `times`. Every
    /// applicable `slow` fault adds its delay; of the answering faults the first one injected for
    /// this very run wins, else the first global one, so a run-specific fault can override a
    /// global one.
    pub fn take(&mut self, call: Target<'_>) -> Triggered {
        let mut fired: Vec<u64> = Vec::new();
        let mut delay_ms: u64 = 0;
        for e in &self.entries {
            if let FaultKind::Slow { delay_ms: d } = e.fault.kind
                && e.fault.applies_to(call)
            {
                delay_ms = delay_ms.saturating_add(d);
                fired.push(e.id);
            }
        }
        let answering = |run_scoped: bool| {
            self.entries.iter().find(|e| {
                !matches!(e.fault.kind, FaultKind::Slow { .. })
                    && e.fault.job_run_id.is_some() == run_scoped
                    && e.fault.applies_to(call)
            })
        };
        let answer = answering(true).or_else(|| answering(false)).map(|e| {
            fired.push(e.id);
            e.fault.kind.clone()
        });
        for e in &mut self.entries {
            if fired.contains(&e.id)
                && let Some(left) = &mut e.remaining
            {
                *left = left.saturating_sub(1);
            }
        }
        self.entries.retain(|e| e.remaining != Some(0));
        Triggered { delay_ms, answer }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttling(status: u16, retry_after_ms: Option<u64>) -> FaultKind {
        FaultKind::Throttling {
            status,
            retry_after_ms,
            code: "Throttling.User".into(),
        }
    }

    #[test]
    fn faults_decode_from_json_and_yaml() {
        let cases: [(&str, Fault); 5] = [
            (
                r#"{"kind":"internalError"}"#,
                Fault::new(FaultKind::InternalError),
            ),
            (
                r#"{"kind":"throttling","status":429,"retryAfterMs":1500,"jobRunId":"jr-1","times":2}"#,
                Fault::new(throttling(429, Some(1500)))
                    .for_run("jr-1")
                    .times(2),
            ),
            (
                r#"{"kind":"throttling"}"#,
                Fault::new(throttling(400, None)),
            ),
            (
                r#"{"kind":"slow","delayMs":250}"#,
                Fault::new(FaultKind::Slow { delay_ms: 250 }),
            ),
            (
                r#"{"kind":"forbiddenRam","times":1}"#,
                Fault::new(FaultKind::ForbiddenRam).times(1),
            ),
        ];
        for (json, want) in cases {
            let got: Fault = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(got, want, "{json}");
            let back: Fault = serde_json::from_value(serde_json::to_value(&got).expect("encodes"))
                .expect("decodes");
            assert_eq!(back, want, "round trip {json}");
        }
        let partial: Fault = serde_json::from_str(
            r#"{"kind":"partial","omit":["log"],"set":{"submitTime":"yesterday","tags":{}}}"#,
        )
        .expect("partial");
        let FaultKind::Partial { omit, set } = &partial.kind else {
            panic!("{partial:?}");
        };
        assert_eq!(omit, &["log".to_owned()]);
        assert_eq!(set["submitTime"], "yesterday");
        assert!(set["tags"].is_object());
        let yaml: Fault =
            serde_yaml::from_str("kind: htmlErrorPage\njobRunId: jr-2\n").expect("yaml");
        assert_eq!(yaml, Fault::new(FaultKind::HtmlErrorPage).for_run("jr-2"));
        assert!(serde_json::from_str::<Fault>(r#"{"kind":"meteorStrike"}"#).is_err());
        assert!(
            serde_json::from_str::<Fault>(r#"{"kind":"slow"}"#).is_err(),
            "delayMs needed"
        );
    }

    #[test]
    fn validation_table() {
        let cases = [
            (Fault::new(FaultKind::NotFound), None),
            (
                Fault::new(FaultKind::NotFound).times(0),
                Some(FaultError::ZeroTimes),
            ),
            (
                Fault::new(FaultKind::NotFound).for_run(""),
                Some(FaultError::EmptyJobRunId),
            ),
            (
                Fault::new(throttling(503, None)),
                Some(FaultError::ThrottlingStatus(503)),
            ),
            (
                Fault::new(FaultKind::Throttling {
                    status: 400,
                    retry_after_ms: None,
                    code: "Busy".into(),
                }),
                Some(FaultError::ThrottlingCode("Busy".into())),
            ),
            (
                Fault::new(FaultKind::Slow {
                    delay_ms: MAX_DELAY_MS + 1,
                }),
                Some(FaultError::DelayTooLong(MAX_DELAY_MS + 1)),
            ),
        ];
        for (fault, want) in cases {
            assert_eq!(fault.validate().err(), want, "{fault:?}");
        }
        let partial = |omit: &[&str], set: &[&str]| {
            Fault::new(FaultKind::Partial {
                omit: omit.iter().map(|s| (*s).to_owned()).collect(),
                set: set
                    .iter()
                    .map(|k| ((*k).to_owned(), serde_json::Value::Null))
                    .collect(),
            })
            .validate()
            .err()
        };
        assert_eq!(partial(&["log"], &["name"]), None);
        assert_eq!(partial(&[], &[]), Some(FaultError::EmptyPartial));
        assert_eq!(
            partial(&["log"], &["jobRunId"]),
            Some(FaultError::PartialIdentity("jobRunId".into()))
        );
        assert_eq!(
            partial(&["state"], &[]),
            Some(FaultError::PartialIdentity("state".into()))
        );
    }

    #[test]
    fn answers_table() {
        let err = |k: FaultKind| match k.answer("AKID", "jr-1", "GetJobRun") {
            Some(FaultAnswer::Error(e)) => (e.code, e.status, e.retry_after_ms),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            err(FaultKind::InternalError),
            ("InternalError".into(), 500, None)
        );
        assert_eq!(
            err(FaultKind::ServiceUnavailable),
            ("ServiceUnavailable".into(), 503, None)
        );
        assert_eq!(
            err(throttling(429, Some(7))),
            ("Throttling.User".into(), 429, Some(7))
        );
        assert_eq!(
            err(FaultKind::NotFound),
            ("JobRunNotFound".into(), 404, None)
        );
        assert_eq!(
            err(FaultKind::ForbiddenRam),
            ("Forbidden.RAM".into(), 403, None)
        );
        assert_eq!(
            FaultKind::Slow { delay_ms: 1 }.answer("a", "b", "GetJobRun"),
            None
        );
        assert_eq!(
            FaultKind::HtmlErrorPage.answer("a", "b", "GetJobRun"),
            Some(FaultAnswer::HtmlErrorPage)
        );
        assert_eq!(
            FaultKind::MalformedJson.answer("a", "b", "GetJobRun"),
            Some(FaultAnswer::MalformedJson)
        );
    }

    #[test]
    fn partial_answer_removes_and_replaces_run_fields_only() {
        let mut body = serde_json::json!({
            "requestId": "r",
            "jobRun": {"jobRunId": "jr-1", "state": "Running", "log": {"driverStdOut": "x"},
                       "name": "n", "tags": [{"key": "k", "value": "v"}]},
        });
        let set: serde_json::Map<_, _> = [
            ("tags".to_owned(), serde_json::json!({"k": "v"})),
            ("name".to_owned(), serde_json::Value::Null),
        ]
        .into_iter()
        .collect();
        FaultAnswer::degrade(&["log".to_owned()], &set, &mut body);
        assert_eq!(
            body,
            serde_json::json!({
                "requestId": "r",
                "jobRun": {"jobRunId": "jr-1", "state": "Running", "name": null,
                           "tags": {"k": "v"}},
            })
        );
    }

    #[test]
    fn take_counts_down_scopes_and_prefers_run_faults() {
        let mut table = FaultTable::new();
        let global = table.inject(Fault::new(FaultKind::ServiceUnavailable).times(3));
        table.inject(Fault::new(FaultKind::NotFound).for_run("jr-1").times(1));
        table.inject(Fault::new(FaultKind::Slow { delay_ms: 100 }).for_run("jr-1"));

        let first = table.take(Target::get("jr-1"));
        assert_eq!(
            first,
            Triggered {
                delay_ms: 100,
                answer: Some(FaultKind::NotFound)
            }
        );
        let second = table.take(Target::get("jr-1"));
        assert_eq!(second.answer, Some(FaultKind::ServiceUnavailable));
        assert_eq!(second.delay_ms, 100, "the slow fault lasts until cleared");
        let other = table.take(Target::get("jr-2"));
        assert_eq!(
            other,
            Triggered {
                delay_ms: 0,
                answer: Some(FaultKind::ServiceUnavailable)
            }
        );
        assert_eq!(
            table.take(Target::get("jr-2")).answer,
            Some(FaultKind::ServiceUnavailable),
            "third and last time"
        );
        assert_eq!(
            table.take(Target::get("jr-2")),
            Triggered::default(),
            "three times used up"
        );
        assert!(!table.remove(global), "already gone");
        assert_eq!(table.list().len(), 1);
        table.clear();
        assert_eq!(table.take(Target::get("jr-1")), Triggered::default());
    }

    #[test]
    fn action_scoped_faults_and_lists() {
        let mut table = FaultTable::new();
        table.inject(Fault::new(FaultKind::ForbiddenRam).for_action("CancelJobRun"));
        table.inject(Fault::new(FaultKind::NotFound).for_run("jr-1"));
        let cancel = Target {
            action: "CancelJobRun",
            job_run_id: Some("jr-2"),
        };
        assert_eq!(table.take(cancel).answer, Some(FaultKind::ForbiddenRam));
        assert_eq!(table.take(Target::get("jr-2")).answer, None);
        let list = Target {
            action: "ListJobRuns",
            job_run_id: None,
        };
        assert_eq!(table.take(list).answer, None, "run faults skip lists");
        table.inject(Fault::new(FaultKind::InternalError).for_action("ListJobRuns"));
        assert_eq!(table.take(list).answer, Some(FaultKind::InternalError));
        let bad = Fault::new(FaultKind::InternalError).for_action("StartJobRun");
        assert_eq!(
            bad.validate(),
            Err(FaultError::UnknownAction("StartJobRun".into()))
        );
        let parsed: Fault =
            serde_json::from_str(r#"{"kind":"forbiddenRam","action":"CancelJobRun"}"#)
                .expect("decodes");
        assert_eq!(parsed.action.as_deref(), Some("CancelJobRun"));
    }

    #[test]
    fn active_fault_json_shows_remaining() {
        let mut table = FaultTable::new();
        let id = table.inject(Fault::new(throttling(429, Some(10))).times(2));
        table.take(Target::get("x"));
        let json = serde_json::to_value(table.list()).expect("encodes");
        assert_eq!(json[0]["id"], id);
        assert_eq!(json[0]["kind"], "throttling");
        assert_eq!(json[0]["retryAfterMs"], 10);
        assert_eq!(json[0]["times"], 2);
        assert_eq!(json[0]["remaining"], 1);
    }
}
