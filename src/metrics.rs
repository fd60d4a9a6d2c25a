//! Prometheus metrics. Every label takes its value from a closed set (error categories, call
//! outcomes, state classes), never from object names, namespaces or error texts, so the number of
//! series stays bounded however many objects exist.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::state::StateClass;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabel {
    pub category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StsLabel {
    pub action: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    pub event_type: &'static str,
}

pub struct Metrics {
    registry: Registry,
    /// STS exchanges by action and ok/error, counted by every `StsClient` built with these
    /// metrics (the operator's own credential chain as well as cross-account roles).
    pub sts_exchanges: Family<StsLabel, Counter>,
    pub reconciles: Family<ResultLabel, Counter>,
    pub reconcile_duration: Histogram,
    pub errors: Family<CategoryLabel, Counter>,
    pub calls: Family<OutcomeLabel, Counter>,
    pub call_duration: Histogram,
    pub rate_limiter_waits: Counter,
    pub rate_limiter_wait_seconds: Counter<f64, AtomicU64>,
    pub status_writes: Counter,
    pub events: Family<EventLabel, Counter>,
    /// Runs seen ending, by outcome (Succeeded, Failed, Cancelled): the alertable business signal.
    pub run_endings: Family<OutcomeLabel, Counter>,
    /// CancelJobRun calls for deleted refs (`cancelOnDelete`), by ok or the error class.
    pub cancel_calls: Family<OutcomeLabel, Counter>,
    /// ListJobRuns pages asked for by batched observation, by ok or the error class.
    pub list_calls: Family<OutcomeLabel, Counter>,
    pub list_duration: Histogram,
    /// Observations served by what another call learnt: no call of their own.
    pub shared_observations: Counter,
    pub objects: Family<StateLabel, Gauge>,
    pub leader: Gauge<i64, AtomicI64>,
    pub undecodable_fields: Counter,
    pub watch_errors: Counter,
    pub overdue_objects: Gauge<i64, AtomicI64>,
    pub oldest_overdue_seconds: Gauge<f64, AtomicU64>,
}

const ALL_STATE_LABELS: [&str; 8] = [
    "NotObserved",
    "Queued",
    "Active",
    "CancelFailed",
    "Unknown",
    "Succeeded",
    "Failed",
    "Cancelled",
];

/// Label value of a state class (bounded: never the raw, possibly unknown, state string).
pub fn state_label(class: Option<StateClass>) -> &'static str {
    match class {
        None => "NotObserved",
        Some(StateClass::Queued) => "Queued",
        Some(StateClass::Active) => "Active",
        Some(StateClass::CancelFailed) => "CancelFailed",
        Some(StateClass::Unknown) => "Unknown",
        Some(StateClass::Succeeded) => "Succeeded",
        Some(StateClass::Failed) => "Failed",
        Some(StateClass::Cancelled) => "Cancelled",
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sparkjobrun");
        let m = Self {
            reconciles: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            errors: Family::default(),
            calls: Family::default(),
            call_duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            rate_limiter_waits: Counter::default(),
            sts_exchanges: Family::default(),
            run_endings: Family::default(),
            cancel_calls: Family::default(),
            list_calls: Family::default(),
            list_duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            shared_observations: Counter::default(),
            rate_limiter_wait_seconds: Counter::default(),
            status_writes: Counter::default(),
            events: Family::default(),
            objects: Family::default(),
            leader: Gauge::default(),
            undecodable_fields: Counter::default(),
            watch_errors: Counter::default(),
            overdue_objects: Gauge::default(),
            oldest_overdue_seconds: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "reconciles",
            "Reconciles by result (ok or error)",
            m.reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "errors",
            "Reconcile problems by bounded category (the Synced reason)",
            m.errors.clone(),
        );
        registry.register(
            "getjobrun_calls",
            "GetJobRun calls by outcome (ok, or the error class)",
            m.calls.clone(),
        );
        registry.register(
            "getjobrun_duration_seconds",
            "GetJobRun latency, including failed calls",
            m.call_duration.clone(),
        );
        registry.register(
            "rate_limiter_waits",
            "Calls that had to wait for the process-wide rate limit",
            m.rate_limiter_waits.clone(),
        );
        registry.register(
            "rate_limiter_wait_seconds",
            "Total time calls waited for the rate limit",
            m.rate_limiter_wait_seconds.clone(),
        );
        registry.register(
            "status_writes",
            "Status patches sent to the API server",
            m.status_writes.clone(),
        );
        registry.register(
            "events",
            "Kubernetes events published, by type",
            m.events.clone(),
        );
        registry.register(
            "objects",
            "SparkJobRunRef objects by state class, as last seen by this replica",
            m.objects.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            m.leader.clone(),
        );
        registry.register(
            "undecodable_fields",
            "Answer fields that could not be decoded and kept their last known value",
            m.undecodable_fields.clone(),
        );
        registry.register(
            "watch_errors",
            "Errors of the SparkJobRunRef watches (RBAC revoked, CRD removed, API server down)",
            m.watch_errors.clone(),
        );
        registry.register(
            "poll_overdue_objects",
            "Objects more than a second past their scheduled poll",
            m.overdue_objects.clone(),
        );
        registry.register(
            "poll_oldest_overdue_seconds",
            "How far past its scheduled poll the most overdue object is",
            m.oldest_overdue_seconds.clone(),
        );
        registry.register(
            "run_endings",
            "Job runs seen ending, by outcome (Succeeded, Failed, Cancelled), once per run",
            m.run_endings.clone(),
        );
        registry.register(
            "canceljobrun_calls",
            "CancelJobRun calls for refs deleted with cancelOnDelete, by outcome (ok, or the error class)",
            m.cancel_calls.clone(),
        );
        registry.register(
            "listjobruns_calls",
            "ListJobRuns pages of batched observation, by outcome (ok, or the error class)",
            m.list_calls.clone(),
        );
        registry.register(
            "listjobruns_duration_seconds",
            "ListJobRuns latency per page, including failed calls",
            m.list_duration.clone(),
        );
        registry.register(
            "shared_observations",
            "Observations served without a call, by what a list or another ref's call learnt",
            m.shared_observations.clone(),
        );
        registry.register(
            "sts_exchanges",
            "STS AssumeRoleWithOIDC / AssumeRole exchanges by outcome (ok or error)",
            m.sts_exchanges.clone(),
        );
        let m = Self { registry, ..m };
        m.initialize();
        m
    }

    /// Creates every series of the bounded label sets at zero, so a fresh process exports each
    /// family and `rate()`, ratios and alerts over them are defined before the first event.
    fn initialize(&self) {
        let outcomes = std::iter::once("ok")
            .chain(crate::client::ApiErrorKind::ALL.iter().map(|k| k.reason()));
        for outcome in outcomes {
            let _ = self.calls.get_or_create(&OutcomeLabel { outcome });
            let _ = self.cancel_calls.get_or_create(&OutcomeLabel { outcome });
            let _ = self.list_calls.get_or_create(&OutcomeLabel { outcome });
        }
        for kind in crate::client::ApiErrorKind::ALL {
            let _ = self.errors.get_or_create(&CategoryLabel {
                category: kind.reason(),
            });
        }
        for result in ["ok", "error"] {
            let _ = self.reconciles.get_or_create(&ResultLabel { result });
        }
        for event_type in ["Normal", "Warning"] {
            let _ = self.events.get_or_create(&EventLabel { event_type });
        }
        for outcome in ["Succeeded", "Failed", "Cancelled"] {
            let _ = self.run_endings.get_or_create(&OutcomeLabel { outcome });
        }
        for action in [
            crate::credentials::sts::ASSUME_ROLE,
            crate::credentials::sts::ASSUME_ROLE_WITH_OIDC,
        ] {
            for outcome in ["ok", "error"] {
                let _ = self
                    .sts_exchanges
                    .get_or_create(&StsLabel { action, outcome });
            }
        }
    }

    pub fn observe_call(&self, outcome: &'static str, took: Duration) {
        self.calls.get_or_create(&OutcomeLabel { outcome }).inc();
        self.call_duration.observe(took.as_secs_f64());
    }

    pub fn observe_list(&self, outcome: &'static str, took: Duration) {
        self.list_calls
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        self.list_duration.observe(took.as_secs_f64());
    }

    pub fn observe_reconcile(&self, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "error" };
        self.reconciles.get_or_create(&ResultLabel { result }).inc();
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    /// Counts an ending announced by a transition event with this reason.
    pub fn observe_transition(&self, reason: &str) {
        let outcome = match reason {
            "Succeeded" => "Succeeded",
            "Failed" => "Failed",
            "Cancelled" => "Cancelled",
            _ => return,
        };
        self.run_endings
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    pub fn observe_event(&self, warning: bool) {
        let event_type = if warning { "Warning" } else { "Normal" };
        self.events.get_or_create(&EventLabel { event_type }).inc();
    }

    /// Replaces the per-class object counts (computed from the watch caches at scrape time, so
    /// deleted objects drop out without any bookkeeping).
    pub fn set_objects(&self, counts: &HashMap<&'static str, i64>) {
        for class in ALL_STATE_LABELS {
            let n = counts.get(class).copied().unwrap_or(0);
            self.objects
                .get_or_create(&StateLabel { state: class })
                .set(n);
        }
    }

    pub fn set_overdue(&self, objects: usize, oldest: Duration) {
        self.overdue_objects
            .set(i64::try_from(objects).unwrap_or(i64::MAX));
        self.oldest_overdue_seconds.set(oldest.as_secs_f64());
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    pub fn calls_total(&self, outcome: &'static str) -> u64 {
        self.calls.get_or_create(&OutcomeLabel { outcome }).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_bounded_labels() {
        let m = Metrics::new();
        m.observe_call("ok", Duration::from_millis(20));
        m.observe_call("Throttled", Duration::from_millis(5));
        m.observe_reconcile(true, Duration::from_millis(3));
        m.errors
            .get_or_create(&CategoryLabel {
                category: "Unauthorized",
            })
            .inc();
        let counts: HashMap<&'static str, i64> = [
            (state_label(Some(StateClass::Active)), 1),
            (state_label(Some(StateClass::Succeeded)), 1),
        ]
        .into();
        m.set_objects(&counts);
        m.observe_event(true);
        let text = m.encode().expect("encodes");
        for needle in [
            "sparkjobrun_getjobrun_calls_total{outcome=\"ok\"} 1",
            "sparkjobrun_getjobrun_calls_total{outcome=\"Throttled\"} 1",
            "sparkjobrun_objects{state=\"Active\"} 1",
            "sparkjobrun_objects{state=\"Succeeded\"} 1",
            "sparkjobrun_errors_total{category=\"Unauthorized\"} 1",
            "sparkjobrun_events_total{event_type=\"Warning\"} 1",
            "sparkjobrun_getjobrun_duration_seconds_bucket",
            "sparkjobrun_leader 0",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        m.set_objects(&HashMap::new());
        let text = m.encode().expect("encodes");
        assert!(
            text.contains("sparkjobrun_objects{state=\"Active\"} 0"),
            "{text}"
        );
    }
}
