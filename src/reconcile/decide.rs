//! The reconciler's one decision, pure: from the stored status and what was observed to the next
//! status, whether to write it, the events to publish once it is written, and when to look again.
//! No Kubernetes client, HTTP client or clock: time and randomness come in as values.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::events::{self, PlannedEvent};
use crate::conditions::Reason;
use crate::crd::SparkJobRunRefStatus;
use crate::mapping::{self, PollOutcome, StatusContext};
use crate::policy::{self, BackoffPolicy, PollPolicy, RetryClass};
use crate::state::StateClass;
use crate::wire::JobRun;

/// What the previous reconcile of this object scheduled, seen from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Previous {
    pub generation: Option<i64>,
    /// Time left until the scheduled poll (zero when due).
    pub remaining: Duration,
    pub failures: u32,
}

/// Before any IO: whether this reconcile calls the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Call the service now.
    Observe,
    /// The run ended: no call, only bookkeeping (a changed generation).
    Skip,
    /// Triggered early (our own write, a watch restart): come back when due.
    Wait(Duration),
}

/// The run this object names.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub workspace_id: &'a str,
    pub job_run_id: &'a str,
    pub region_id: Option<&'a str>,
}

/// What the observation found.
#[derive(Debug, Clone, Copy)]
pub enum Observed<'a> {
    Skipped,
    Run(&'a JobRun),
    NotFound {
        message: &'a str,
    },
    Failed {
        reason: Reason,
        message: &'a str,
        retry: RetryClass,
        retry_after: Option<Duration>,
    },
}

pub struct Input<'a> {
    /// The stored status, already passed through [`status_of_run`].
    pub old: Option<&'a SparkJobRunRefStatus>,
    pub observed: Observed<'a>,
    pub generation: Option<i64>,
    pub identity: Identity<'a>,
    pub previous: Option<Previous>,
    /// `spec.pollInterval`, parsed.
    pub poll_interval: Option<Duration>,
    pub now: jiff::Timestamp,
    /// A sample in [0, 1) for jitter.
    pub jitter: f64,
    pub poll: &'a PollPolicy,
    pub backoff: &'a BackoffPolicy,
}

/// When to look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Terminal: only a change of the object brings it back.
    AwaitChange,
    Poll(Duration),
    Retry {
        after: Duration,
        failures: u32,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub status: SparkJobRunRefStatus,
    pub write: bool,
    /// Published only after `status` was written (or when nothing needed writing).
    pub events: Vec<PlannedEvent>,
    pub next: Next,
}

/// The stored status, unless it describes another run (a status written for an earlier object
/// of the same name, or before the spec named this run): such a status is treated as absent.
pub fn status_of_run<'a>(
    status: Option<&'a SparkJobRunRefStatus>,
    workspace_id: &str,
    job_run_id: &str,
) -> Option<&'a SparkJobRunRefStatus> {
    status.filter(|s| {
        s.job_run_id.as_deref().is_none_or(|j| j == job_run_id)
            && s.workspace_id.as_deref().is_none_or(|w| w == workspace_id)
    })
}

pub fn plan(
    old: Option<&SparkJobRunRefStatus>,
    generation: Option<i64>,
    previous: Option<Previous>,
) -> Plan {
    if old.and_then(|s| s.terminal).unwrap_or(false) {
        return Plan::Skip;
    }
    match previous {
        Some(p)
            if p.generation == generation
                && old.and_then(|s| s.observed_generation) == generation
                && !p.remaining.is_zero() =>
        {
            Plan::Wait(p.remaining)
        }
        _ => Plan::Observe,
    }
}

pub fn decide(input: &Input<'_>) -> Decision {
    let ctx = StatusContext {
        generation: input.generation,
        workspace_id: input.identity.workspace_id,
        job_run_id: input.identity.job_run_id,
        region_id: input.identity.region_id,
    };
    let outcome = match input.observed {
        Observed::Skipped => PollOutcome::Skipped,
        Observed::Run(run) => PollOutcome::Run(run),
        Observed::NotFound { message } => PollOutcome::NotFound { message },
        Observed::Failed {
            reason, message, ..
        } => PollOutcome::Failed { reason, message },
    };
    let status = mapping::next_status(input.old, outcome, ctx, &whole_seconds(input.now));
    let write = input.old != Some(&status);
    let events = events::plan(input.identity.job_run_id, input.old, &status);
    let next = next_action(input, &status);
    Decision {
        status,
        write,
        events,
        next,
    }
}

fn next_action(input: &Input<'_>, status: &SparkJobRunRefStatus) -> Next {
    let failures = input.previous.map_or(0, |p| p.failures).saturating_add(1);
    let retry = |class: RetryClass, retry_after: Option<Duration>| Next::Retry {
        after: policy::jittered(
            input.backoff.delay(class, failures, retry_after),
            input.backoff.jitter,
            input.jitter,
        ),
        failures,
    };
    match input.observed {
        Observed::Skipped => Next::AwaitChange,
        Observed::NotFound { .. } => retry(RetryClass::Permanent, None),
        Observed::Failed {
            retry: class,
            retry_after,
            ..
        } => retry(class, retry_after),
        Observed::Run(_) => {
            let class = status
                .state
                .as_deref()
                .map_or(StateClass::Queued, StateClass::of);
            let running_for = running_for(status, input.now);
            match input.poll.interval(class, running_for, input.poll_interval) {
                None => Next::AwaitChange,
                Some(d) => Next::Poll(policy::jittered(d, input.poll.jitter, input.jitter)),
            }
        }
    }
}

/// How long the run has been submitted, from the status' submitTime.
fn running_for(status: &SparkJobRunRefStatus, now: jiff::Timestamp) -> Option<Duration> {
    let submitted: jiff::Timestamp = status.submit_time.as_deref()?.parse().ok()?;
    Duration::try_from(now.duration_since(submitted)).ok()
}

/// Whole seconds: what the API server stores, so comparisons with the stored status stay exact.
pub fn whole_seconds(now: jiff::Timestamp) -> Time {
    Time(jiff::Timestamp::from_second(now.as_second()).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}
