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
    /// The refresh requested by annotation ([`refresh_request`]), if any.
    pub refresh: Option<&'a str>,
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

/// The annotation that asks for one observation now, whatever the schedule (the convention of
/// Flux's `reconcile.fluxcd.io/requestedAt`): any value other than the last one handled.
pub const REFRESH_ANNOTATION: &str = "emrspark.io/refresh-requested-at";

/// Longest annotation value kept in `status.lastHandledRefreshAt`; compared after the same cut,
/// so a longer value is handled once, not forever.
pub const MAX_REFRESH_VALUE: usize = 256;

/// The refresh value an annotation asks for, cut to what the status keeps; blank is none.
pub fn refresh_request(annotation: Option<&str>) -> Option<&str> {
    annotation
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| crate::text::prefix(v, MAX_REFRESH_VALUE))
}

/// Whether a refresh is asked for that was not handled yet: then the run is observed now, even
/// when it ended or its poll is not due.
pub fn refresh_pending(old: Option<&SparkJobRunRefStatus>, refresh: Option<&str>) -> bool {
    refresh.is_some_and(|r| old.and_then(|s| s.last_handled_refresh_at.as_deref()) != Some(r))
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
    let mut status = mapping::next_status(input.old, outcome, ctx, &whole_seconds(input.now));
    // Handled once observed, whatever the observation found (as Flux records its requests).
    if !matches!(input.observed, Observed::Skipped) && refresh_pending(input.old, input.refresh) {
        status.last_handled_refresh_at = input.refresh.map(str::to_owned);
    }
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
    let retry = |class: RetryClass, retry_after: Option<Duration>| {
        let delay = input.backoff.delay(class, failures, retry_after);
        let spread = if retry_after.is_some() {
            policy::jittered_up
        } else {
            policy::jittered
        };
        Next::Retry {
            after: spread(delay, input.backoff.jitter, input.jitter),
            failures,
        }
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

/// How long until an ended ref is to be deleted (zero: now), `None` when it is kept: TTL off,
/// none set, or the run not ended. Counted from the run's end time, or, without one, from when
/// the `Finished` condition turned true.
pub fn ttl_remaining(
    status: &SparkJobRunRefStatus,
    spec_ttl: Option<i64>,
    policy: &crate::config::TtlPolicy,
    now: jiff::Timestamp,
) -> Option<Duration> {
    if !policy.enabled || status.terminal != Some(true) {
        return None;
    }
    let ttl = match spec_ttl {
        Some(secs) => Duration::from_secs(u64::try_from(secs).unwrap_or(0)),
        None => policy.default?,
    };
    let ended: jiff::Timestamp = status
        .end_time
        .as_deref()
        .and_then(|t| t.parse().ok())
        .or_else(|| {
            status
                .conditions
                .iter()
                .find(|c| {
                    c.type_ == crate::conditions::ConditionType::Finished.as_str()
                        && c.status == "True"
                })
                .map(|c| c.last_transition_time.0)
        })?;
    let since = Duration::try_from(now.duration_since(ended)).unwrap_or(Duration::ZERO);
    Some(ttl.saturating_sub(since))
}

/// Whole seconds: what the API server stores, so comparisons with the stored status stay exact.
pub fn whole_seconds(now: jiff::Timestamp) -> Time {
    Time(jiff::Timestamp::from_second(now.as_second()).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::{self, ConditionType, STALLED, SYNCED, Status};

    const WS: &str = "w-1";
    const JR: &str = "jr-1";
    /// 2024-05-01T00:00:00Z, in epoch milliseconds.
    const NOW_MS: i64 = 1_714_521_600_000;
    /// A jitter sample that leaves durations unchanged.
    const NEUTRAL: f64 = 0.5;

    fn now() -> jiff::Timestamp {
        jiff::Timestamp::from_millisecond(NOW_MS).expect("ts")
    }

    fn run(state: &str) -> JobRun {
        JobRun {
            state: Some(state.into()),
            submit_time: Some(NOW_MS - 60_000),
            ..JobRun::default()
        }
    }

    struct Case<'a> {
        old: Option<&'a SparkJobRunRefStatus>,
        observed: Observed<'a>,
        generation: i64,
        previous: Option<Previous>,
        poll_interval: Option<Duration>,
        jitter: f64,
        refresh: Option<&'a str>,
    }

    impl<'a> Case<'a> {
        fn new(old: Option<&'a SparkJobRunRefStatus>, observed: Observed<'a>) -> Self {
            Self {
                old,
                observed,
                generation: 1,
                previous: None,
                poll_interval: None,
                jitter: NEUTRAL,
                refresh: None,
            }
        }

        fn decide(&self) -> Decision {
            decide(&Input {
                old: self.old,
                refresh: self.refresh,
                observed: self.observed,
                generation: Some(self.generation),
                identity: Identity {
                    workspace_id: WS,
                    job_run_id: JR,
                    region_id: Some("cn-hangzhou"),
                },
                previous: self.previous,
                poll_interval: self.poll_interval,
                now: now(),
                jitter: self.jitter,
                poll: &PollPolicy::default(),
                backoff: &BackoffPolicy::default(),
            })
        }
    }

    /// The status after observing `state` once, from nothing.
    fn stored(state: &str) -> SparkJobRunRefStatus {
        Case::new(None, Observed::Run(&run(state))).decide().status
    }

    fn failed(
        reason: Reason,
        retry: RetryClass,
        retry_after: Option<Duration>,
    ) -> Observed<'static> {
        Observed::Failed {
            reason,
            message: "m",
            retry,
            retry_after,
        }
    }

    fn condition(s: &SparkJobRunRefStatus, t: ConditionType) -> Option<(Status, Reason)> {
        conditions::find(&s.conditions, t)
            .and_then(conditions::Desired::parse)
            .map(|d| (d.status, d.reason))
    }

    fn reasons(d: &Decision) -> Vec<(bool, Reason)> {
        d.events.iter().map(|e| (e.warning, e.reason)).collect()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn first_observation_writes_and_announces_the_state() {
        let d = Case::new(None, Observed::Run(&run("Running"))).decide();
        assert!(d.write);
        assert_eq!(d.status.state.as_deref(), Some("Running"));
        assert_eq!(d.status.job_run_id.as_deref(), Some(JR));
        assert_eq!(d.status.workspace_id.as_deref(), Some(WS));
        assert_eq!(reasons(&d), vec![(false, Reason::Running)]);
        assert_eq!(d.next, Next::Poll(PollPolicy::default().running));
    }

    #[test]
    fn quiet_poll_writes_nothing_and_announces_nothing() {
        let old = stored("Running");
        let d = Case::new(Some(&old), Observed::Run(&run("Running"))).decide();
        assert!(!d.write);
        assert!(d.events.is_empty());
        assert_eq!(d.status, old);
    }

    #[test]
    fn terminal_run_costs_no_call_and_awaits_change() {
        let old = stored("Success");
        assert_eq!(old.terminal, Some(true));
        let previous = Some(Previous {
            generation: Some(1),
            remaining: secs(30),
            failures: 0,
        });
        assert_eq!(plan(Some(&old), Some(1), previous), Plan::Skip);
        assert_eq!(plan(Some(&old), Some(1), None), Plan::Skip);
        let d = Case::new(Some(&old), Observed::Skipped).decide();
        assert_eq!(
            (d.write, d.events.len(), d.next),
            (false, 0, Next::AwaitChange)
        );
    }

    #[test]
    fn terminal_run_with_new_generation_only_refreshes_generation() {
        let old = stored("Failed");
        let mut case = Case::new(Some(&old), Observed::Skipped);
        case.generation = 2;
        let d = case.decide();
        assert!(d.write, "observedGeneration moves");
        assert!(d.events.is_empty());
        assert_eq!(d.next, Next::AwaitChange);
        assert_eq!(d.status.observed_generation, Some(2));
        assert_eq!(
            condition(&d.status, ConditionType::Failed),
            Some((Status::True, Reason::Failed))
        );
    }

    /// Issue 11.4: an ended ref is deleted its TTL after the run's end time (or after Finished
    /// turned true), only with the feature on; the spec's TTL wins over the default.
    #[test]
    fn ttl_counts_from_the_end_of_the_run() {
        use crate::config::TtlPolicy;
        let mut done = stored("Success");
        done.end_time = Some("2024-04-30T23:59:00Z".into()); // 60 s before now()
        let on = TtlPolicy {
            enabled: true,
            default: None,
        };
        let with_default = TtlPolicy {
            default: Some(secs(3600)),
            ..on
        };
        let table = [
            (&done, Some(100), on, Some(secs(40))),
            (&done, Some(60), on, Some(Duration::ZERO)),
            (&done, Some(0), on, Some(Duration::ZERO)),
            (&done, None, on, None),
            (&done, None, with_default, Some(secs(3540))),
            (&done, Some(30), with_default, Some(Duration::ZERO)),
            (&done, Some(100), TtlPolicy::default(), None),
        ];
        for (status, ttl, policy, want) in table {
            assert_eq!(
                ttl_remaining(status, ttl, &policy, now()),
                want,
                "{ttl:?} {policy:?}"
            );
        }
        let running = stored("Running");
        assert_eq!(
            ttl_remaining(&running, Some(0), &on, now()),
            None,
            "not ended"
        );
        // Without an end time, from when Finished turned true (here: now).
        let mut no_end = done.clone();
        no_end.end_time = None;
        assert_eq!(
            ttl_remaining(&no_end, Some(100), &on, now()),
            Some(secs(100))
        );
    }

    /// Issue 11.1: a new annotation value is observed once, also for an ended run, and recorded
    /// whatever the observation found; the same value again is no request.
    #[test]
    fn a_refresh_request_is_observed_once_and_recorded() {
        let done = stored("Success");
        let success = run("Success");
        assert_eq!(refresh_request(Some("  ")), None);
        let long = "x".repeat(400);
        assert_eq!(
            refresh_request(Some(&long)).map(str::len),
            Some(MAX_REFRESH_VALUE)
        );
        assert!(!refresh_pending(Some(&done), None));
        assert!(refresh_pending(Some(&done), Some("2026-12-03T10:00:00Z")));
        let mut refreshed = Case::new(Some(&done), Observed::Run(&success));
        refreshed.refresh = Some("2026-12-03T10:00:00Z");
        let d = refreshed.decide();
        assert!(d.write, "the handled value is recorded");
        assert_eq!(
            d.status.last_handled_refresh_at.as_deref(),
            Some("2026-12-03T10:00:00Z")
        );
        assert_eq!(
            d.next,
            Next::AwaitChange,
            "ended: back to waiting for a change"
        );
        assert!(d.events.is_empty(), "nothing new to announce");
        assert!(!refresh_pending(
            Some(&d.status),
            Some("2026-12-03T10:00:00Z")
        ));
        assert!(refresh_pending(Some(&d.status), Some("again")));
        // Recorded also when the call failed; not when nothing was observed.
        let mut failing = Case::new(
            Some(&done),
            failed(Reason::Throttled, RetryClass::Throttled, None),
        );
        failing.refresh = Some("r2");
        assert_eq!(
            failing.decide().status.last_handled_refresh_at.as_deref(),
            Some("r2")
        );
        let mut skipped = Case::new(Some(&done), Observed::Skipped);
        skipped.refresh = Some("r3");
        assert_eq!(skipped.decide().status.last_handled_refresh_at, None);
        // Once handled, a quiet poll keeps the value and writes nothing.
        let mut quiet = Case::new(Some(&d.status), Observed::Run(&success));
        quiet.refresh = Some("2026-12-03T10:00:00Z");
        assert!(!quiet.decide().write);
    }

    #[test]
    fn plan_waits_for_the_schedule_unless_the_generation_changed() {
        let old = stored("Running");
        let waiting = Previous {
            generation: Some(1),
            remaining: secs(12),
            failures: 0,
        };
        assert_eq!(
            plan(Some(&old), Some(1), Some(waiting)),
            Plan::Wait(secs(12))
        );
        assert_eq!(
            plan(Some(&old), Some(2), Some(waiting)),
            Plan::Observe,
            "spec changed"
        );
        let due = Previous {
            remaining: Duration::ZERO,
            ..waiting
        };
        assert_eq!(plan(Some(&old), Some(1), Some(due)), Plan::Observe);
        assert_eq!(
            plan(Some(&old), Some(1), None),
            Plan::Observe,
            "after a restart"
        );
        assert_eq!(
            plan(None, Some(1), Some(waiting)),
            Plan::Observe,
            "nothing stored yet"
        );
    }

    #[test]
    fn not_found_stalls_and_rechecks_at_the_permanent_interval() {
        let old = stored("Running");
        let d = Case::new(Some(&old), Observed::NotFound { message: "gone" }).decide();
        assert!(d.write);
        assert_eq!(
            condition(&d.status, STALLED),
            Some((Status::True, Reason::JobRunNotFound))
        );
        assert_eq!(
            d.status.state.as_deref(),
            Some("Running"),
            "what was known stays"
        );
        assert_eq!(reasons(&d), vec![(true, Reason::JobRunNotFound)]);
        assert_eq!(
            d.next,
            Next::Retry {
                after: BackoffPolicy::default().permanent,
                failures: 1
            }
        );
    }

    #[test]
    fn retry_after_from_the_service_is_honoured() {
        let old = stored("Running");
        let observed = failed(Reason::Throttled, RetryClass::Throttled, Some(secs(7)));
        // Jitter only lengthens a wait the service named.
        for (jitter, want) in [(0.0, 7_000), (NEUTRAL, 7_700), (1.0, 8_400)] {
            let mut case = Case::new(Some(&old), observed);
            case.jitter = jitter;
            let after = Duration::from_millis(want);
            assert_eq!(
                case.decide().next,
                Next::Retry { after, failures: 1 },
                "{jitter}"
            );
        }
        // Without one, throttling backs off from twice the base.
        let plain = failed(Reason::Throttled, RetryClass::Throttled, None);
        let d = Case::new(Some(&old), plain).decide();
        assert_eq!(
            d.next,
            Next::Retry {
                after: secs(10),
                failures: 1
            }
        );
        // A retry-after beyond the cap is capped.
        let huge = failed(Reason::Throttled, RetryClass::Throttled, Some(secs(86_400)));
        let mut case = Case::new(Some(&old), huge);
        case.jitter = 0.0;
        let max = BackoffPolicy::default().max;
        assert_eq!(
            case.decide().next,
            Next::Retry {
                after: max,
                failures: 1
            }
        );
    }

    #[test]
    fn failures_accumulate_and_reset_on_success() {
        let old = stored("Running");
        let mut case = Case::new(
            Some(&old),
            failed(Reason::EndpointUnreachable, RetryClass::Transient, None),
        );
        let mut seen = Vec::new();
        for failures in 0..4 {
            case.previous = Some(Previous {
                generation: Some(1),
                remaining: Duration::ZERO,
                failures,
            });
            seen.push(case.decide().next);
        }
        assert_eq!(
            seen,
            [5, 10, 20, 40]
                .iter()
                .zip(1..)
                .map(|(s, f)| Next::Retry {
                    after: secs(*s),
                    failures: f
                })
                .collect::<Vec<_>>()
        );
        let running = run("Running");
        case.observed = Observed::Run(&running);
        assert_eq!(
            case.decide().next,
            Next::Poll(secs(30)),
            "success: plain cadence again"
        );
    }

    #[test]
    fn failed_call_keeps_status_and_announces_a_problem_once() {
        let old = stored("Running");
        let throttled = failed(Reason::Throttled, RetryClass::Throttled, None);
        let first = Case::new(Some(&old), throttled).decide();
        assert!(first.write);
        assert_eq!(first.status.state.as_deref(), Some("Running"));
        assert_eq!(
            condition(&first.status, SYNCED),
            Some((Status::False, Reason::Throttled))
        );
        assert_eq!(reasons(&first), vec![(true, Reason::Throttled)]);
        let again = Case::new(Some(&first.status), throttled).decide();
        assert!(
            !again.write && again.events.is_empty(),
            "same problem: no write, no event"
        );
        let running = run("Running");
        let healed = Case::new(Some(&again.status), Observed::Run(&running)).decide();
        assert_eq!(reasons(&healed), vec![(false, Reason::Recovered)]);
    }

    #[test]
    fn poll_jitter_and_backoff_jitter_use_their_own_fractions() {
        let old = stored("Running");
        let running = run("Running");
        let transient = failed(Reason::EndpointUnreachable, RetryClass::Transient, None);
        let table = [
            (0.0, Observed::Run(&running), secs(27)),
            (1.0, Observed::Run(&running), secs(33)),
            (0.0, transient, secs(4)),
            (1.0, transient, secs(6)),
        ];
        for (jitter, observed, want) in table {
            let mut case = Case::new(Some(&old), observed);
            case.jitter = jitter;
            let got = match case.decide().next {
                Next::Poll(d) | Next::Retry { after: d, .. } => d,
                Next::AwaitChange => Duration::ZERO,
            };
            assert_eq!(got, want, "jitter {jitter}");
        }
    }

    #[test]
    fn long_running_runs_are_polled_less_often() {
        let policy = PollPolicy::default();
        let table = [
            (Duration::from_secs(60), policy.running),
            (policy.long_running_after - secs(1), policy.running),
            (policy.long_running_after + secs(1), policy.long_running),
        ];
        for (age, want) in table {
            let r = JobRun {
                submit_time: Some(NOW_MS - age.as_millis() as i64),
                ..run("Running")
            };
            let d = Case::new(None, Observed::Run(&r)).decide();
            assert_eq!(d.next, Next::Poll(want), "running for {age:?}");
        }
    }

    #[test]
    fn spec_poll_interval_is_clamped_to_the_operator_bounds() {
        let policy = PollPolicy::default();
        let r = run("Running");
        for (asked, want) in [
            (secs(1), policy.min_interval),
            (secs(45), secs(45)),
            (secs(86_400), policy.max_interval),
        ] {
            let mut case = Case::new(None, Observed::Run(&r));
            case.poll_interval = Some(asked);
            assert_eq!(case.decide().next, Next::Poll(want), "asked {asked:?}");
        }
        // A terminal run is not polled whatever the spec asks.
        let cancelled = run("Cancelled");
        let mut case = Case::new(None, Observed::Run(&cancelled));
        case.poll_interval = Some(secs(5));
        assert_eq!(case.decide().next, Next::AwaitChange);
    }

    #[test]
    fn unknown_and_cancel_failed_states_keep_polling_slowly_with_a_warning() {
        for (state, reason) in [
            ("Hibernating", Reason::UnknownState),
            ("CancelFailed", Reason::CancelFailed),
        ] {
            let old = stored("Running");
            let d = Case::new(Some(&old), Observed::Run(&run(state))).decide();
            assert_eq!(d.status.terminal, Some(false), "{state}");
            assert_eq!(d.next, Next::Poll(PollPolicy::default().slow), "{state}");
            assert_eq!(reasons(&d), vec![(true, reason)], "{state}");
            assert_eq!(
                condition(&d.status, ConditionType::Reconciling),
                Some((Status::True, reason))
            );
        }
    }

    #[test]
    fn a_status_of_another_run_counts_as_absent() {
        let old = stored("Success");
        assert!(status_of_run(Some(&old), WS, JR).is_some());
        assert!(status_of_run(Some(&old), WS, "jr-other").is_none());
        assert!(status_of_run(Some(&old), "w-other", JR).is_none());
        let legacy = SparkJobRunRefStatus {
            job_run_id: None,
            workspace_id: None,
            ..old.clone()
        };
        assert!(
            status_of_run(Some(&legacy), WS, JR).is_some(),
            "written before the field existed"
        );
        // With the old run's status set aside, the new run is observed, not skipped.
        let seen = status_of_run(Some(&old), WS, "jr-other");
        assert_eq!(plan(seen, Some(1), None), Plan::Observe);
    }

    #[test]
    fn timestamps_are_whole_seconds() {
        let t = jiff::Timestamp::from_millisecond(NOW_MS + 999).expect("ts");
        assert_eq!(whole_seconds(t).0, now());
    }
}
