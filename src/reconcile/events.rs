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
