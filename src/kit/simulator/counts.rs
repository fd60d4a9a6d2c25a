//! Call counters, so tests and benchmarks can assert how often the operator called the service
//! and what it was answered (e.g. "backed off after throttling", "one call per run per period").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Outcome key of a call answered normally.
pub const ACCEPTED: &str = "Accepted";
/// Outcome key of the HTML error page fault (it has no error code).
pub const HTML_ERROR_PAGE: &str = "HtmlErrorPage";
/// Outcome key of the truncated JSON fault (answered 200, but unusable).
pub const MALFORMED_JSON: &str = "MalformedJson";
/// Outcome key of the partial answer fault (answered 200 with fields left out or mistyped).
pub const PARTIAL: &str = "Partial";

/// Counts of service calls (the `/_sim/` admin API is not counted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallCounts {
    /// Every request to the service, whatever its path.
    pub total: u64,
    /// Calls answered with a job run.
    pub accepted: u64,
    /// Calls answered with anything else (rejections and faults).
    pub rejected: u64,
    /// Calls per job run id named in the path, whatever their outcome.
    pub by_job_run: BTreeMap<String, u64>,
    /// Calls per API (`GetJobRun`, `ListJobRuns`, `CancelJobRun`, ...) the path and method name,
    /// whatever their outcome; requests that name no API are not in it.
    #[serde(default)]
    pub by_action: BTreeMap<String, u64>,
    /// Calls per outcome: `Accepted`, an error code, `HtmlErrorPage` or `MalformedJson`.
    pub by_outcome: BTreeMap<String, u64>,
    /// Calls per job run id that were not answered with the run.
    #[serde(default)]
    pub rejected_by_job_run: BTreeMap<String, u64>,
    /// STS calls (`AssumeRoleWithOIDC`, `AssumeRole`), counted apart from the service's.
    #[serde(default)]
    pub sts: super::sts::StsCounts,
}

impl CallCounts {
    /// Records one call. `outcome` is [`ACCEPTED`] or what the call was answered instead.
    pub fn record(&mut self, action: Option<&str>, job_run_id: Option<&str>, outcome: &str) {
        self.total += 1;
        if let Some(action) = action {
            *self.by_action.entry(action.to_owned()).or_default() += 1;
        }
        if outcome == ACCEPTED {
            self.accepted += 1;
        } else {
            self.rejected += 1;
            if let Some(id) = job_run_id {
                *self.rejected_by_job_run.entry(id.to_owned()).or_default() += 1;
            }
        }
        if let Some(id) = job_run_id {
            *self.by_job_run.entry(id.to_owned()).or_default() += 1;
        }
        *self.by_outcome.entry(outcome.to_owned()).or_default() += 1;
    }

    pub fn for_job_run(&self, job_run_id: &str) -> u64 {
        self.by_job_run.get(job_run_id).copied().unwrap_or(0)
    }

    /// Calls for `job_run_id` answered with anything but the run.
    pub fn rejected_for_job_run(&self, job_run_id: &str) -> u64 {
        self.rejected_by_job_run
            .get(job_run_id)
            .copied()
            .unwrap_or(0)
    }

    pub fn for_action(&self, action: &str) -> u64 {
        self.by_action.get(action).copied().unwrap_or(0)
    }

    pub fn for_outcome(&self, outcome: &str) -> u64 {
        self.by_outcome.get(outcome).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_by_run_and_outcome() {
        let mut counts = CallCounts::default();
        counts.record(Some("GetJobRun"), Some("jr-1"), ACCEPTED);
        counts.record(Some("GetJobRun"), Some("jr-1"), "Throttling.User");
        counts.record(Some("CancelJobRun"), Some("jr-2"), ACCEPTED);
        counts.record(Some("ListJobRuns"), None, ACCEPTED);
        counts.record(None, None, "InvalidApi.NotFound");
        assert_eq!((counts.total, counts.accepted, counts.rejected), (5, 3, 2));
        assert_eq!(counts.for_action("GetJobRun"), 2);
        assert_eq!(counts.for_action("ListJobRuns"), 1);
        assert_eq!(counts.for_action("StartJobRun"), 0);
        assert_eq!(counts.for_job_run("jr-1"), 2);
        assert_eq!(counts.for_job_run("jr-3"), 0);
        assert_eq!(counts.rejected_for_job_run("jr-1"), 1);
        assert_eq!(counts.rejected_for_job_run("jr-2"), 0);
        assert_eq!(counts.for_outcome(ACCEPTED), 3);
        assert_eq!(counts.for_outcome("Throttling.User"), 1);
        let json = serde_json::to_value(&counts).expect("encodes");
        assert_eq!(json["byJobRun"]["jr-1"], 2);
        assert_eq!(json["byOutcome"]["InvalidApi.NotFound"], 1);
    }
}
