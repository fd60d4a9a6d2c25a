//! Events, planned purely from the stored status and the next one: one per state transition,
//! one per new kind of problem, one on recovery. Because the stored status is the memory, a
//! transition it already shows is never announced again, whatever the process went through.

use crate::conditions::{self, Reason, SYNCED, Status};
use crate::crd::SparkJobRunRefStatus;
use crate::state::StateClass;

/// Longest event note, in bytes (the API allows 1 kB).
pub const NOTE_MAX: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    pub warning: bool,
    pub reason: Reason,
    /// Already bounded to [`NOTE_MAX`].
    pub note: String,
}

pub fn plan(
    job_run_id: &str,
    old: Option<&SparkJobRunRefStatus>,
    next: &SparkJobRunRefStatus,
) -> Vec<PlannedEvent> {
    let mut out: Vec<PlannedEvent> = transition(job_run_id, old, next)
        .into_iter()
        .chain(sync_change(job_run_id, old, next))
        .collect();
    for e in &mut out {
        crate::text::truncate(&mut e.note, NOTE_MAX);
    }
    out
}

fn transition(
    job_run_id: &str,
    old: Option<&SparkJobRunRefStatus>,
    next: &SparkJobRunRefStatus,
) -> Option<PlannedEvent> {
    let old_state = old.and_then(|s| s.state.as_deref());
    let state = next.state.as_deref().filter(|s| old_state != Some(*s))?;
    let class = StateClass::of(state);
    let from = old_state.map(|s| format!(" (was {s})")).unwrap_or_default();
    let mut note = format!("job run {job_run_id} is now {state}{from}");
    if let Some(r) = &next.state_change_reason
        && class.is_terminal()
        && class != StateClass::Succeeded
    {
        note.push_str(&format!(
            ": {} {}",
            r.code.as_deref().unwrap_or(""),
            r.message.as_deref().unwrap_or("")
        ));
    }
    if class == StateClass::Unknown {
        note.push_str("; this state is unknown to the operator, which keeps polling slowly");
    } else if class == StateClass::CancelFailed {
        note.push_str("; the run may still be alive, polling continues");
    }
    Some(PlannedEvent {
        warning: class.is_suspicious()
            || matches!(class, StateClass::Failed | StateClass::Cancelled),
        reason: Reason::of_state(state),
        note: note.trim_end().to_owned(),
    })
}

fn sync_change(
    job_run_id: &str,
    old: Option<&SparkJobRunRefStatus>,
    next: &SparkJobRunRefStatus,
) -> Option<PlannedEvent> {
    let new = conditions::Desired::parse(conditions::find(&next.conditions, SYNCED)?)?;
    let old_problem = old
        .and_then(|s| conditions::find(&s.conditions, SYNCED))
        .and_then(conditions::Desired::parse)
        .filter(|o| o.status == Status::False)
        .map(|o| o.reason);
    match new.status {
        Status::False if old_problem != Some(new.reason) => Some(PlannedEvent {
            warning: true,
            reason: new.reason,
            note: new.message,
        }),
        Status::True if old_problem.is_some() => Some(PlannedEvent {
            warning: false,
            reason: Reason::Recovered,
            note: format!("GetJobRun works again for job run {job_run_id}"),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::mapping::{PollOutcome, StatusContext, next_status};
    use crate::wire::JobRun;

    const CTX: StatusContext<'static> = StatusContext {
        generation: Some(1),
        workspace_id: "w-1",
        job_run_id: "jr-1",
        region_id: None,
    };

    fn epoch() -> Time {
        Time(jiff::Timestamp::UNIX_EPOCH)
    }

    fn status_for(state: &str) -> SparkJobRunRefStatus {
        let run = JobRun {
            state: Some(state.into()),
            ..JobRun::default()
        };
        next_status(None, PollOutcome::Run(&run), CTX, &epoch())
    }

    fn fail(old: &SparkJobRunRefStatus, reason: Reason) -> SparkJobRunRefStatus {
        let outcome = PollOutcome::Failed {
            reason,
            message: "m",
        };
        next_status(Some(old), outcome, CTX, &epoch())
    }

    fn one(events: &[PlannedEvent]) -> (bool, Reason) {
        assert_eq!(events.len(), 1, "{events:?}");
        (events[0].warning, events[0].reason)
    }

    #[test]
    fn events_on_transitions_only() {
        let running = status_for("Running");
        assert_eq!(one(&plan("jr-1", None, &running)), (false, Reason::Running));
        assert!(
            plan("jr-1", Some(&running), &running).is_empty(),
            "no change, no event"
        );
        let failed = plan("jr-1", Some(&running), &status_for("Failed"));
        assert_eq!(one(&failed), (true, Reason::Failed));
        assert!(failed[0].note.contains("was Running"), "{}", failed[0].note);
        let cf = plan("jr-1", Some(&running), &status_for("CancelFailed"));
        assert_eq!(one(&cf), (true, Reason::CancelFailed));
        let unknown = plan("jr-1", Some(&running), &status_for("Hibernating"));
        assert_eq!(one(&unknown), (true, Reason::UnknownState));
    }

    #[test]
    fn events_on_new_problems_and_recovery() {
        let running = status_for("Running");
        let throttled = fail(&running, Reason::Throttled);
        assert_eq!(
            one(&plan("jr-1", Some(&running), &throttled)),
            (true, Reason::Throttled)
        );
        let again = fail(&throttled, Reason::Throttled);
        assert!(
            plan("jr-1", Some(&throttled), &again).is_empty(),
            "same problem: quiet"
        );
        let other = fail(&throttled, Reason::Unauthorized);
        assert_eq!(
            one(&plan("jr-1", Some(&throttled), &other)),
            (true, Reason::Unauthorized)
        );
        let run = JobRun {
            state: Some("Running".into()),
            ..JobRun::default()
        };
        let ok = next_status(Some(&other), PollOutcome::Run(&run), CTX, &epoch());
        assert_eq!(
            one(&plan("jr-1", Some(&other), &ok)),
            (false, Reason::Recovered)
        );
    }

    #[test]
    fn a_transition_the_stored_status_shows_is_never_announced_again() {
        // The process restarted (or the write's answer was lost) after the status was stored:
        // the next reconcile compares with the stored status and stays quiet.
        let stored = status_for("Success");
        let again = status_for("Success");
        assert!(plan("jr-1", Some(&stored), &again).is_empty());
    }

    #[test]
    fn notes_are_bounded() {
        let running = status_for("Running");
        let long = "x".repeat(5000);
        let outcome = PollOutcome::Failed {
            reason: Reason::BadRequest,
            message: &long,
        };
        let next = next_status(Some(&running), outcome, CTX, &epoch());
        let events = plan("jr-1", Some(&running), &next);
        assert!(events[0].note.len() <= NOTE_MAX, "{}", events[0].note.len());
    }
}
