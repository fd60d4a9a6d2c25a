//! What the operator is configured with: built once from the command line (or by tests) and
//! handed to the reconciler, so that `cli.rs` depends on configuration, never on the reconciler.

use std::time::Duration;

use crate::credentials::roles::StsSettings;
use crate::endpoint::{AllowList, Endpoint, Network};
use crate::policy::{BackoffPolicy, PollPolicy};

/// The field manager of every status write, and the controller name in events.
pub const FIELD_MANAGER: &str = "sparkjobrun-operator";

/// Client-side bound on calls to the service, shared by every object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 10.0,
            burst: 20,
        }
    }
}

/// Which objects this operator instance handles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Empty means every namespace.
    pub namespaces: Vec<String>,
    pub label_selector: Option<String>,
}

/// Everything the reconciler is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub poll: PollPolicy,
    pub backoff: BackoffPolicy,
    pub default_region: Option<String>,
    pub endpoint: Option<Endpoint>,
    pub network: Network,
    pub allow: AllowList,
    pub rate: RateLimit,
    pub scope: Scope,
    /// Objects reconciled at once.
    pub concurrency: u16,
    /// Reported in events (`reportingInstance`), e.g. the pod name.
    pub instance: Option<String>,
    /// STS endpoint, session duration, refresh margin, cache size and the role allow-list for
    /// `spec.credentials.roleArn`.
    pub sts: StsSettings,
    /// How long every retry of a watch may fail before the replica reports itself unready.
    pub watch_outage_grace: Duration,
    pub ttl: TtlPolicy,
    /// Whether `spec.cancelOnDelete` is honoured (`--allow-cancel`): the one thing that makes the
    /// operator change a remote run, so it is off unless the administrators turn it on.
    pub allow_cancel: bool,
    /// How due refs are observed: batched ListJobRuns per group, GetJobRun per run, or chosen
    /// per group by its size.
    pub observe: crate::reconcile::shared::Mode,
}

/// Deleting refs after their run ended (`spec.ttlSecondsAfterFinished`): off unless enabled,
/// because it needs `delete` on sparkjobruns and is wrong for refs kept in Git.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TtlPolicy {
    pub enabled: bool,
    /// For refs without `spec.ttlSecondsAfterFinished`; `None`: those are kept.
    pub default: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            poll: PollPolicy::default(),
            backoff: BackoffPolicy::default(),
            default_region: None,
            endpoint: None,
            network: Network::Public,
            allow: AllowList::default(),
            rate: RateLimit::default(),
            scope: Scope::default(),
            concurrency: 16,
            instance: None,
            sts: StsSettings::default(),
            watch_outage_grace: crate::server::DEFAULT_WATCH_OUTAGE_GRACE,
            ttl: TtlPolicy::default(),
            allow_cancel: false,
            observe: crate::reconcile::shared::Mode::Auto,
        }
    }
}
