//! Conditions, computed purely from what is known about the run (the design doc's table) and from
//! how the last call went. The job-outcome conditions depend only on the last *known* state, so API
//! trouble can never flip them; only `Synced` reflects the call.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::state::{StateClass, state_reason};

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
pub const SUCCEEDED: &str = "Succeeded";
pub const FAILED: &str = "Failed";
pub const FINISHED: &str = "Finished";
pub const SYNCED: &str = "Synced";

/// The order conditions are written in, so that status comparisons are stable.
const ORDER: [&str; 7] = [
    READY,
    RECONCILING,
    STALLED,
    SUCCEEDED,
    FAILED,
    FINISHED,
    SYNCED,
];

/// What the operator knows about the remote run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Knowledge<'a> {
    /// No GetJobRun has answered yet.
    Nothing,
    /// The service reported this state (possibly on an earlier poll).
    State {
        state: &'a str,
        reason_code: Option<&'a str>,
        reason_message: Option<&'a str>,
    },
    /// The service says the run (or its workspace) does not exist.
    NotFound { message: &'a str },
}

/// How the last attempt to read the run went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sync<'a> {
    Ok,
    Failed { reason: &'a str, message: &'a str },
}

/// A condition without its timestamp: what the operator wants to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: &'static str,
    pub reason: String,
    pub message: String,
}

fn cond(type_: &'static str, status: &'static str, reason: &str, message: &str) -> Desired {
    Desired {
        type_,
        status,
        reason: reason.to_owned(),
        message: message.to_owned(),
    }
}

/// The job-outcome conditions for what is known (the design doc's table).
pub fn outcome(knowledge: &Knowledge<'_>, job_run_id: &str) -> Vec<Desired> {
    match knowledge {
        Knowledge::Nothing => {
            let msg = format!("waiting for the first GetJobRun answer for {job_run_id}");
            vec![
                cond(READY, "False", "Initializing", &msg),
                cond(RECONCILING, "True", "Initializing", &msg),
                cond(SUCCEEDED, "Unknown", "Initializing", &msg),
                cond(FAILED, "False", "Initializing", &msg),
                cond(FINISHED, "False", "Initializing", &msg),
            ]
        }
        Knowledge::NotFound { message } => {
            let msg = format!("job run {job_run_id} was not found: {message}");
            vec![
                cond(READY, "False", "JobRunNotFound", &msg),
                cond(STALLED, "True", "JobRunNotFound", &msg),
                cond(SUCCEEDED, "Unknown", "JobRunNotFound", &msg),
            ]
        }
        Knowledge::State {
            state,
            reason_code,
            reason_message,
        } => {
            let reason = state_reason(state);
            match StateClass::of(state) {
                StateClass::Succeeded => {
                    let msg = format!("job run {job_run_id} succeeded");
                    vec![
                        cond(READY, "True", reason, &msg),
                        cond(SUCCEEDED, "True", reason, &msg),
                        cond(FAILED, "False", reason, &msg),
                        cond(FINISHED, "True", reason, &msg),
                    ]
                }
                StateClass::Failed | StateClass::Cancelled => {
                    let mut msg = format!("job run {job_run_id} ended {state}");
                    match (reason_code, reason_message) {
                        (Some(c), Some(m)) => msg.push_str(&format!(": {c}: {m}")),
                        (Some(c), None) => msg.push_str(&format!(": {c}")),
                        (None, Some(m)) => msg.push_str(&format!(": {m}")),
                        (None, None) => {}
                    }
                    vec![
                        cond(READY, "False", reason, &msg),
                        cond(STALLED, "True", reason, &msg),
                        cond(SUCCEEDED, "False", reason, &msg),
                        cond(FAILED, "True", reason, &msg),
                        cond(FINISHED, "True", reason, &msg),
                    ]
                }
                class => {
                    let msg = match class {
                        StateClass::CancelFailed => format!(
                            "a cancel request for job run {job_run_id} failed; the run may still be alive"
                        ),
                        StateClass::Unknown => format!(
                            "job run {job_run_id} is in state {state:?}, which this operator does not know; treating it as not finished"
                        ),
                        _ => format!("job run {job_run_id} is {state}"),
                    };
                    vec![
                        cond(READY, "False", reason, &msg),
                        cond(RECONCILING, "True", reason, &msg),
                        cond(SUCCEEDED, "Unknown", reason, &msg),
                        cond(FAILED, "False", reason, &msg),
                        cond(FINISHED, "False", reason, &msg),
                    ]
                }
            }
        }
    }
}

pub fn synced(sync: &Sync<'_>) -> Desired {
    match sync {
        Sync::Ok => cond(
            SYNCED,
            "True",
            "Polled",
            "the last GetJobRun call succeeded",
        ),
        Sync::Failed { reason, message } => cond(SYNCED, "False", reason, message),
    }
}

/// Turns desired conditions into API conditions. `lastTransitionTime` is kept from `existing`
/// when the status did not change; for `Synced` the old message is kept as long as the reason is
/// the same, so a failing call whose message differs each time (request ids, server strings to
/// sign) does not cause a status write on every poll.
pub fn materialize(
    existing: &[Condition],
    desired: Vec<Desired>,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = desired
        .into_iter()
        .map(|d| {
            let old = existing.iter().find(|c| c.type_ == d.type_);
            let same_status = old.is_some_and(|o| o.status == d.status);
            let keep_message = d.type_ == SYNCED
                && old.is_some_and(|o| o.status == d.status && o.reason == d.reason);
            Condition {
                type_: d.type_.to_owned(),
                status: d.status.to_owned(),
                last_transition_time: match old {
                    Some(o) if same_status => o.last_transition_time.clone(),
                    _ => now.clone(),
                },
                message: match old {
                    Some(o) if keep_message => o.message.clone(),
                    _ => d.message,
                },
                reason: d.reason,
                observed_generation: generation,
            }
        })
        .collect();
    out.sort_by_key(|c| {
        ORDER
            .iter()
            .position(|t| *t == c.type_)
            .unwrap_or(ORDER.len())
    });
    out
}

pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses(d: &[Desired]) -> Vec<(&str, &str)> {
        d.iter().map(|c| (c.type_, c.status)).collect()
    }

    fn state(s: &str) -> Knowledge<'_> {
        Knowledge::State {
            state: s,
            reason_code: None,
            reason_message: None,
        }
    }

    /// The design doc's table, row by row.
    #[test]
    fn outcome_table() {
        let in_progress = vec![
            (READY, "False"),
            (RECONCILING, "True"),
            (SUCCEEDED, "Unknown"),
            (FAILED, "False"),
            (FINISHED, "False"),
        ];
        for s in [
            "Submitted",
            "Pending",
            "Running",
            "Cancelling",
            "CancelFailed",
            "Weird",
        ] {
            assert_eq!(statuses(&outcome(&state(s), "jr-1")), in_progress, "{s}");
        }
        assert_eq!(
            statuses(&outcome(&state("Success"), "jr-1")),
            vec![
                (READY, "True"),
                (SUCCEEDED, "True"),
                (FAILED, "False"),
                (FINISHED, "True")
            ]
        );
        for s in ["Failed", "Cancelled"] {
            assert_eq!(
                statuses(&outcome(&state(s), "jr-1")),
                vec![
                    (READY, "False"),
                    (STALLED, "True"),
                    (SUCCEEDED, "False"),
                    (FAILED, "True"),
                    (FINISHED, "True")
                ],
                "{s}"
            );
        }
        let nf = outcome(&Knowledge::NotFound { message: "gone" }, "jr-1");
        assert_eq!(
            statuses(&nf),
            vec![(READY, "False"), (STALLED, "True"), (SUCCEEDED, "Unknown")]
        );
        assert!(nf.iter().all(|c| c.reason == "JobRunNotFound"));
    }

    #[test]
    fn failure_reason_reaches_the_stalled_message() {
        let k = Knowledge::State {
            state: "Failed",
            reason_code: Some("ERR-100000"),
            reason_message: Some("connection refused"),
        };
        let d = outcome(&k, "jr-9");
        let stalled = d.iter().find(|c| c.type_ == STALLED).expect("stalled");
        assert_eq!(stalled.reason, "Failed");
        assert!(
            stalled.message.contains("ERR-100000: connection refused"),
            "{}",
            stalled.message
        );
    }

    #[test]
    fn unknown_state_has_a_valid_reason() {
        let d = outcome(&state("some weird state!"), "jr-1");
        assert!(d.iter().all(|c| c.reason == "UnknownState"));
    }

    fn t(s: &str) -> Time {
        Time(s.parse().expect("timestamp"))
    }

    #[test]
    fn transition_time_moves_only_with_status() {
        let t0 = t("2024-01-01T00:00:00Z");
        let t1 = t("2024-01-01T00:05:00Z");
        let first = materialize(&[], outcome(&state("Submitted"), "jr"), Some(1), &t0);
        let second = materialize(&first, outcome(&state("Running"), "jr"), Some(1), &t1);
        let ready = find(&second, READY).expect("ready");
        assert_eq!(ready.last_transition_time, t0, "Ready stayed False");
        assert_eq!(ready.reason, "Running");
        let third = materialize(&second, outcome(&state("Success"), "jr"), Some(2), &t1);
        let ready = find(&third, READY).expect("ready");
        assert_eq!(ready.last_transition_time, t1);
        assert_eq!(ready.observed_generation, Some(2));
        assert!(
            find(&third, RECONCILING).is_none(),
            "Reconciling dropped on success"
        );
    }

    #[test]
    fn synced_keeps_message_while_reason_is_unchanged() {
        let t0 = t("2024-01-01T00:00:00Z");
        let first = materialize(
            &[],
            vec![synced(&Sync::Failed {
                reason: "Unauthorized",
                message: "req 1",
            })],
            None,
            &t0,
        );
        let same = materialize(
            &first,
            vec![synced(&Sync::Failed {
                reason: "Unauthorized",
                message: "req 2",
            })],
            None,
            &t0,
        );
        assert_eq!(first, same);
        let other = materialize(
            &first,
            vec![synced(&Sync::Failed {
                reason: "Throttled",
                message: "slow",
            })],
            None,
            &t0,
        );
        assert_eq!(other[0].message, "slow");
    }

    #[test]
    fn conditions_come_out_in_a_stable_order() {
        let t0 = t("2024-01-01T00:00:00Z");
        let mut desired = outcome(&state("Running"), "jr");
        desired.insert(0, synced(&Sync::Ok));
        let types: Vec<String> = materialize(&[], desired, None, &t0)
            .into_iter()
            .map(|c| c.type_)
            .collect();
        assert_eq!(
            types,
            [READY, RECONCILING, SUCCEEDED, FAILED, FINISHED, SYNCED]
        );
    }
}
