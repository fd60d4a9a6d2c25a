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

/// How many calls [`Journal`] keeps: enough for a benchmark's whole run at 10 000 refs, bounded
/// so a long-running demo simulator does not grow without end.
pub const JOURNAL_CAP: usize = 100_000;

/// One service call, when it arrived and what it was about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub at: std::time::Instant,
    pub action: Option<String>,
    pub workspace_id: Option<String>,
    /// The run the path names, or the `jobRunId` filter of a ListJobRuns.
    pub job_run_id: Option<String>,
    /// A ListJobRuns without `nextToken`: the first page of a list.
    pub first_page: bool,
    pub outcome: String,
}

/// The latest [`JOURNAL_CAP`] calls, oldest first, so a benchmark can tell where time went
/// (when a run's change was first asked about, how far apart a workspace's lists were).
#[derive(Debug, Clone, Default)]
pub struct Journal {
    calls: std::collections::VecDeque<Call>,
}

impl Journal {
    pub fn push(&mut self, call: Call) {
        if self.calls.len() == JOURNAL_CAP {
            self.calls.pop_front();
        }
        self.calls.push_back(call);
    }

    /// Calls that arrived at or after `since`.
    pub fn since(&self, since: std::time::Instant) -> Vec<Call> {
        let start = self.calls.partition_point(|c| c.at < since);
        self.calls.range(start..).cloned().collect()
    }
}

/// `(jobRunId filter, whether nextToken is absent)` of a ListJobRuns query string.
pub fn list_query_facts(query: &str) -> (Option<String>, bool) {
    let mut job_run_id = None;
    let mut first_page = true;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "jobRunId" => job_run_id = crate::signer::percent_decode(value),
            "nextToken" if !value.is_empty() => first_page = false,
            _ => {}
        }
    }
    (job_run_id, first_page)
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

    #[test]
    fn journal_is_bounded_and_reads_from_a_moment() {
        let mut journal = Journal::default();
        let start = std::time::Instant::now();
        let call = |i: usize| Call {
            at: start + std::time::Duration::from_millis(i as u64),
            action: Some("GetJobRun".into()),
            workspace_id: Some("w-1".into()),
            job_run_id: Some(format!("jr-{i}")),
            first_page: false,
            outcome: ACCEPTED.into(),
        };
        for i in 0..JOURNAL_CAP + 5 {
            journal.push(call(i));
        }
        assert_eq!(journal.since(start).len(), JOURNAL_CAP, "oldest dropped");
        let late = journal.since(start + std::time::Duration::from_millis(JOURNAL_CAP as u64));
        assert_eq!(late.len(), 5);
        assert_eq!(late[0].job_run_id.as_deref(), Some("jr-100000"));
    }

    #[test]
    fn list_queries_name_their_run_and_page() {
        assert_eq!(
            list_query_facts("jobRunId=jr-1&maxResults=1&regionId=cn"),
            (Some("jr-1".into()), true)
        );
        assert_eq!(
            list_query_facts("maxResults=100&nextToken=sim-100&states=%5B%22Running%22%5D"),
            (None, false)
        );
        assert_eq!(list_query_facts(""), (None, true));
    }
}
