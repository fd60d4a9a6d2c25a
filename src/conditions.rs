//! Conditions, computed purely from what is known about the run (the condition table in the
//! README) and from how the last call went. The job-outcome conditions depend only on the last
//! *known* state, so API trouble can never flip them; only `Synced` reflects the call.
//!
//! Every condition type, status and reason the operator can write is an enum variant here: one
//! vocabulary for the code, the README (a test ties them together) and the consumers.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::state::StateClass;

/// Defines a closed set of PascalCase words with `as_str`, `parse` and `ALL`.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant)),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == text)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// Condition types, in the order they are written (so status comparisons are stable).
    ConditionType { Ready, Reconciling, Stalled, Succeeded, Failed, Finished, Synced }
}

vocabulary! {
    /// A condition's status.
    Status { True, False, Unknown }
}

vocabulary! {
    /// Every reason the operator writes into a condition or an event.
    Reason {
        /// No GetJobRun has answered yet.
        Initializing,
        Submitted, Pending, Running, Cancelling, CancelFailed, Succeeded, Failed, Cancelled,
        /// A state string the operator does not know.
        UnknownState,
        JobRunNotFound,
        /// `Synced=True`: the last call worked.
        Polled,
        Throttled, ServiceUnavailable, EndpointUnreachable, InvalidResponse, Unauthorized,
        ClockSkew, Forbidden, BadRequest,
        SecretNotFound, SecretNotOptedIn, SecretUnreadable, SecretKeyMissing, CredentialsMissing,
        CredentialsUnavailable, OidcTokenUnreadable, StsError, RoleNotAllowed,
        RegionMissing, EndpointNotAllowed, InvalidSpec, InvalidObject,
        /// Writing the status to the API server failed (events only: nothing was written).
        StatusWriteFailed,
        /// The API server refused the full status as too large; a minimal one was written.
        StatusTooLarge,
        /// Event: calls work again after a problem.
        Recovered,
        /// Event: the ref is deleted, `ttlSecondsAfterFinished` after its run ended.
        TtlExpired,
        /// Deleting an expired ref failed (logged and counted; retried with backoff).
        DeleteFailed,
        /// Event: the ref was deleted while its run was active, and CancelJobRun was accepted.
        CancelRequested,
        /// Event: reading or cancelling the run of a deleted ref failed; the finalizer stays and
        /// the attempt is retried with backoff (or released by `emrspark.io/abandon`).
        CancelRequestFailed,
        /// Event: `cancelOnDelete` is set but the operator runs without `--allow-cancel`.
        CancelNotAllowed,
        /// Event: the finalizer was released without cancelling (`emrspark.io/abandon`).
        Abandoned,
    }
}

impl Reason {
    /// The reason for a state string: the state itself when it is documented, `UnknownState`
    /// otherwise (an arbitrary string is not a valid reason).
    pub fn of_state(state: &str) -> Self {
        match state {
            "Submitted" => Self::Submitted,
            "Pending" => Self::Pending,
            "Running" => Self::Running,
            "Cancelling" => Self::Cancelling,
            "CancelFailed" => Self::CancelFailed,
            "Success" => Self::Succeeded,
            "Failed" => Self::Failed,
            "Cancelled" => Self::Cancelled,
            _ => Self::UnknownState,
        }
    }
}

pub const READY: ConditionType = ConditionType::Ready;
pub const RECONCILING: ConditionType = ConditionType::Reconciling;
pub const STALLED: ConditionType = ConditionType::Stalled;
pub const SUCCEEDED: ConditionType = ConditionType::Succeeded;
pub const FAILED: ConditionType = ConditionType::Failed;
pub const FINISHED: ConditionType = ConditionType::Finished;
pub const SYNCED: ConditionType = ConditionType::Synced;

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
    Failed { reason: Reason, message: &'a str },
}

/// A condition without its timestamp: what the operator wants to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub type_: ConditionType,
    pub status: Status,
    pub reason: Reason,
    pub message: String,
}

impl Desired {
    /// Reads back a condition the operator wrote earlier; `None` for anything outside the
    /// vocabulary (written by someone else), which is then recomputed rather than trusted.
    pub fn parse(c: &Condition) -> Option<Self> {
        Some(Self {
            type_: ConditionType::parse(&c.type_)?,
            status: Status::parse(&c.status)?,
            reason: Reason::parse(&c.reason)?,
            message: c.message.clone(),
        })
    }
}

fn cond(type_: ConditionType, status: Status, reason: Reason, message: &str) -> Desired {
    Desired {
        type_,
        status,
        reason,
        message: message.to_owned(),
    }
}
/// The job-outcome conditions for what is known (the table in the README's Conditions section).
pub fn outcome(knowledge: &Knowledge<'_>, job_run_id: &str) -> Vec<Desired> {
    match knowledge {
        Knowledge::Nothing => {
            let msg = format!("waiting for the first GetJobRun answer for {job_run_id}");
            vec![
                cond(READY, Status::False, Reason::Initializing, &msg),
                cond(RECONCILING, Status::True, Reason::Initializing, &msg),
                cond(SUCCEEDED, Status::Unknown, Reason::Initializing, &msg),
                cond(FAILED, Status::False, Reason::Initializing, &msg),
                cond(FINISHED, Status::False, Reason::Initializing, &msg),
            ]
        }
        Knowledge::NotFound { message } => {
            let msg = format!("job run {job_run_id} was not found: {message}");
            vec![
                cond(READY, Status::False, Reason::JobRunNotFound, &msg),
                cond(STALLED, Status::True, Reason::JobRunNotFound, &msg),
                cond(SUCCEEDED, Status::Unknown, Reason::JobRunNotFound, &msg),
            ]
        }
        Knowledge::State {
            state,
            reason_code,
            reason_message,
        } => {
            let reason = Reason::of_state(state);
            match StateClass::of(state) {
                StateClass::Succeeded => {
                    let msg = format!("job run {job_run_id} succeeded");
                    vec![
                        cond(READY, Status::True, reason, &msg),
                        cond(SUCCEEDED, Status::True, reason, &msg),
                        cond(FAILED, Status::False, reason, &msg),
                        cond(FINISHED, Status::True, reason, &msg),
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
                        cond(READY, Status::False, reason, &msg),
                        cond(STALLED, Status::True, reason, &msg),
                        cond(SUCCEEDED, Status::False, reason, &msg),
                        cond(FAILED, Status::True, reason, &msg),
                        cond(FINISHED, Status::True, reason, &msg),
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
                        cond(READY, Status::False, reason, &msg),
                        cond(RECONCILING, Status::True, reason, &msg),
                        cond(SUCCEEDED, Status::Unknown, reason, &msg),
                        cond(FAILED, Status::False, reason, &msg),
                        cond(FINISHED, Status::False, reason, &msg),
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
            Status::True,
            Reason::Polled,
            "the last GetJobRun call succeeded",
        ),
        Sync::Failed { reason, message } => cond(SYNCED, Status::False, *reason, message),
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
            let old = existing.iter().find(|c| c.type_ == d.type_.as_str());
            let same_status = old.is_some_and(|o| o.status == d.status.as_str());
            // A repeated problem keeps its first wording (no write per poll for a message that
            // varies), but only while the service's code is the same.
            let keep_message = d.type_ == SYNCED
                && old.is_some_and(|o| {
                    o.status == d.status.as_str()
                        && o.reason == d.reason.as_str()
                        && service_code(&o.message) == service_code(&d.message)
                });
            Condition {
                type_: d.type_.as_str().to_owned(),
                status: d.status.as_str().to_owned(),
                last_transition_time: match old {
                    Some(o) if same_status => o.last_transition_time.clone(),
                    _ => now.clone(),
                },
                message: match old {
                    Some(o) if keep_message => o.message.clone(),
                    _ => d.message,
                },
                reason: d.reason.as_str().to_owned(),
                observed_generation: generation,
            }
        })
        .collect();
    out.sort_by_key(|c| {
        ConditionType::ALL
            .iter()
            .position(|t| t.as_str() == c.type_)
            .unwrap_or(ConditionType::ALL.len())
    });
    out
}

/// How a `Synced` message about a service error starts; the service's code follows it.
pub const SERVICE_FAILURE: &str = "GetJobRun failed: ";

/// The service's error code in a `Synced` message ("GetJobRun failed: CODE: ..."), if any.
fn service_code(message: &str) -> Option<&str> {
    let rest = message.strip_prefix(SERVICE_FAILURE)?;
    rest.split_once(": ").map(|(code, _)| code)
}

pub fn find(conditions: &[Condition], type_: ConditionType) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == type_.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hardening 9.9: a Synced message must not stay at an old service code.
    #[test]
    fn synced_message_follows_the_service_code() {
        let t0 = Time(jiff::Timestamp::UNIX_EPOCH);
        let failed = |message: &str| {
            vec![synced(&Sync::Failed {
                reason: Reason::Unauthorized,
                message,
            })]
        };
        let first = materialize(
            &[],
            failed("GetJobRun failed: InvalidAccessKeyId.NotFound: no such key"),
            Some(1),
            &t0,
        );
        let same_code = materialize(
            &first,
            failed("GetJobRun failed: InvalidAccessKeyId.NotFound: no such key (again)"),
            Some(1),
            &t0,
        );
        assert_eq!(same_code, first, "same code: the message stays, no write");
        let other = materialize(
            &first,
            failed("GetJobRun failed: SignatureDoesNotMatch: bad signature"),
            Some(1),
            &t0,
        );
        assert_eq!(
            other[0].message,
            "GetJobRun failed: SignatureDoesNotMatch: bad signature"
        );
    }

    fn statuses(d: &[Desired]) -> Vec<(ConditionType, Status)> {
        d.iter().map(|c| (c.type_, c.status)).collect()
    }

    fn state(s: &str) -> Knowledge<'_> {
        Knowledge::State {
            state: s,
            reason_code: None,
            reason_message: None,
        }
    }

    /// The README's conditions table, row by row.
    #[test]
    fn outcome_table() {
        let in_progress = vec![
            (READY, Status::False),
            (RECONCILING, Status::True),
            (SUCCEEDED, Status::Unknown),
            (FAILED, Status::False),
            (FINISHED, Status::False),
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
                (READY, Status::True),
                (SUCCEEDED, Status::True),
                (FAILED, Status::False),
                (FINISHED, Status::True)
            ]
        );
        for s in ["Failed", "Cancelled"] {
            assert_eq!(
                statuses(&outcome(&state(s), "jr-1")),
                vec![
                    (READY, Status::False),
                    (STALLED, Status::True),
                    (SUCCEEDED, Status::False),
                    (FAILED, Status::True),
                    (FINISHED, Status::True)
                ],
                "{s}"
            );
        }
        let nf = outcome(&Knowledge::NotFound { message: "gone" }, "jr-1");
        assert_eq!(
            statuses(&nf),
            vec![
                (READY, Status::False),
                (STALLED, Status::True),
                (SUCCEEDED, Status::Unknown)
            ]
        );
        assert!(nf.iter().all(|c| c.reason == Reason::JobRunNotFound));
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
        assert_eq!(stalled.reason, Reason::Failed);
        assert!(
            stalled.message.contains("ERR-100000: connection refused"),
            "{}",
            stalled.message
        );
    }

    #[test]
    fn unknown_state_has_a_valid_reason() {
        let d = outcome(&state("some weird state!"), "jr-1");
        assert!(d.iter().all(|c| c.reason == Reason::UnknownState));
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
                reason: Reason::Unauthorized,
                message: "req 1",
            })],
            None,
            &t0,
        );
        let same = materialize(
            &first,
            vec![synced(&Sync::Failed {
                reason: Reason::Unauthorized,
                message: "req 2",
            })],
            None,
            &t0,
        );
        assert_eq!(first, same);
        let other = materialize(
            &first,
            vec![synced(&Sync::Failed {
                reason: Reason::Throttled,
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
            [READY, RECONCILING, SUCCEEDED, FAILED, FINISHED, SYNCED].map(|t| t.as_str())
        );
    }
}
