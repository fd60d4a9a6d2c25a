//! The reconciler, as a pipeline: observe (IO) → [`decide`] (pure) → apply (IO) → schedule.
//!
//! * [`observe`]: endpoint, credentials and one GetJobRun, inside the rate limit.
//! * [`decide`]: the next status, whether to write it, events, when to look again.
//! * [`apply`]: the status write guarded by resourceVersion, then the events.
//! * [`schedule`]: per-object due times and failure counts, in memory.
//! * [`run`]: watches, the controller loop, readiness and the schedule pruner.

pub mod admission;
pub mod apply;
pub mod cache;
pub mod decide;
pub mod events;
pub mod fence;
pub mod lifecycle;
pub mod observe;
pub mod run;
pub mod schedule;
pub mod shared;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use tokio::time::Instant;
use tracing::{Instrument, info_span, warn};

use crate::client::JobRunService;
use crate::conditions::{self, Reason, Sync};
use crate::config::Settings;
use crate::crd::{SparkJobRunRef, SparkJobRunRefStatus};
use crate::credentials::CredentialProvider;
use crate::credentials::roles::RoleAssumer;
use crate::error::Error;
use crate::metrics::{CategoryLabel, Metrics};
use crate::policy;
use crate::server::Readiness;
use crate::wire::JobRun;
use admission::{Admission, Admit};
use decide::{Decision, Identity, Input, Next, Observed, Plan};
use fence::Fence;
use observe::Observation;
use schedule::{Schedule, Schedules};

/// Handles the reconciler works with; configuration is in `settings`.
pub struct Context<S> {
    pub client: kube::Client,
    pub service: S,
    pub settings: Settings,
    pub credentials: Arc<dyn CredentialProvider>,
    /// Cross-account roles (`spec.credentials.roleArn`), cached per identity and role.
    pub roles: Arc<RoleAssumer>,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub fence: Arc<Fence>,
    pub schedules: Schedules,
    stores: Mutex<Vec<Store<cache::CachedRef>>>,
    /// Per object: the uid told that `cancelOnDelete` is refused, and when a cancel was last
    /// accepted (pruned with the schedules).
    cancels: Mutex<CancelMemory>,
    /// What calls learnt about runs, shared by the refs of one group.
    pub observations: shared::Observations,
    /// Triggers the reconcile of `namespace/name` (set once the controllers run).
    waker: std::sync::OnceLock<Waker>,
    /// The process-wide rate limit with its fair line.
    pub admission: Arc<Admission>,
}

impl<S: JobRunService> Context<S> {
    pub fn new(
        client: kube::Client,
        service: S,
        settings: Settings,
        credentials: Arc<dyn CredentialProvider>,
    ) -> Self {
        let metrics = Arc::new(Metrics::new());
        Self {
            admission: Arc::new(Admission::new(settings.rate)),
            roles: Arc::new(RoleAssumer::from_settings(settings.sts.clone(), &metrics)),
            readiness: Arc::new(Readiness::new(settings.watch_outage_grace)),
            client,
            service,
            settings,
            credentials,
            metrics,
            fence: Arc::new(Fence::open()),
            schedules: Schedules::default(),
            stores: Mutex::new(Vec::new()),
            cancels: Mutex::new(CancelMemory::default()),
            observations: shared::Observations::default(),
            waker: std::sync::OnceLock::new(),
        }
    }

    /// Sets how [`Context::wake`] reaches the controllers (once).
    pub fn set_waker(&self, wake: Waker) {
        let _ = self.waker.set(wake);
    }

    /// Reconciles `key` soon (no-op before the controllers run).
    pub fn wake(&self, key: &str) {
        if let Some(wake) = self.waker.get() {
            wake(key);
        }
    }

    /// Reads objects from these watch caches (the controllers' own).
    pub fn set_stores(&self, stores: Vec<Store<cache::CachedRef>>) {
        if let Ok(mut shared) = self.stores.lock() {
            *shared = stores;
        }
    }

    /// The cached object `namespace/name`.
    fn cached(&self, key: &str) -> Option<Arc<cache::CachedRef>> {
        let (namespace, name) = key.split_once('/')?;
        let target = kube::runtime::reflector::ObjectRef::new(name).within(namespace);
        let stores = self.stores.lock().ok()?;
        stores.iter().find_map(|s| s.get(&target))
    }

    /// Whether `key`'s incarnation `uid` is to be told (once) that its cancel is refused.
    fn note_refusal(&self, key: &str, uid: &str) -> bool {
        let mut memory = self.cancels.lock().unwrap_or_else(|e| e.into_inner());
        memory
            .refused
            .insert(key.to_owned(), uid.to_owned())
            .as_deref()
            != Some(uid)
    }

    fn note_cancel(&self, key: &str) {
        let mut memory = self.cancels.lock().unwrap_or_else(|e| e.into_inner());
        memory.accepted.insert(key.to_owned(), Instant::now());
    }

    /// A cancel of `key` was accepted less than [`lifecycle::CANCEL_SETTLE`] ago.
    fn cancel_pending(&self, key: &str) -> bool {
        let memory = self.cancels.lock().unwrap_or_else(|e| e.into_inner());
        memory
            .accepted
            .get(key)
            .is_some_and(|at| at.elapsed() < lifecycle::CANCEL_SETTLE)
    }

    fn forget_cancel(&self, key: &str) {
        let mut memory = self.cancels.lock().unwrap_or_else(|e| e.into_inner());
        memory.accepted.remove(key);
    }

    /// Uses `roles` (built by the caller, e.g. with a shared STS client).
    pub fn with_role_assumer(mut self, roles: Arc<RoleAssumer>) -> Self {
        self.roles = roles;
        self
    }

    /// Reports into `metrics` (shared with clients built before the context, such as STS's).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Acts only while `fence` is open (leader election).
    pub fn with_fence(mut self, fence: Arc<Fence>) -> Self {
        self.fence = fence;
        self
    }

    /// Whether the operator holds per-object memory for `namespace/name`.
    pub fn has_schedule(&self, key: &str) -> bool {
        self.schedules.get(key).is_some()
    }

    /// Forgets per-object memory of objects no longer in any watch cache.
    pub fn prune_schedules(&self) -> usize {
        let live: std::collections::HashSet<String> = self
            .stores
            .lock()
            .map(|stores| {
                stores
                    .iter()
                    .flat_map(|s| s.state())
                    .map(|o| object_key(o.as_ref()))
                    .collect()
            })
            .unwrap_or_default();
        self.admission.retain(&live);
        self.observations.retain(&live);
        if let Ok(mut memory) = self.cancels.lock() {
            memory.refused.retain(|k, _| live.contains(k));
            memory.accepted.retain(|k, _| live.contains(k));
        }
        self.schedules.retain(&live)
    }

    /// Takes a token of the process-wide rate limit, or puts the object in line: the dispatcher
    /// wakes it when its turn comes, and the error's `wait` is only a fallback requeue.
    fn admit(&self, obj: &SparkJobRunRef) -> Result<(), Error> {
        let key = object_key(obj);
        let now = Instant::now();
        let due = self.schedules.get(&key).map_or(now, |s| s.due.min(now));
        let namespace = obj.namespace().unwrap_or_default();
        match self.admission.admit(&namespace, &key, due, now) {
            Admit::Go { waited } => {
                self.metrics
                    .rate_limiter_wait_seconds
                    .inc_by(waited.as_secs_f64());
                Ok(())
            }
            Admit::Queued { ahead, period } => {
                self.metrics.rate_limiter_waits.inc();
                let turn = period.saturating_mul(u32::try_from(ahead + 1).unwrap_or(u32::MAX));
                Err(Error::RateLimited {
                    object: key,
                    wait: turn.saturating_mul(2).max(Duration::from_secs(5)),
                })
            }
        }
    }

    /// Refreshes the gauges computed from the watch caches and schedules, and renders `/metrics`.
    pub fn render_metrics(&self) -> Result<String, std::fmt::Error> {
        let mut counts = std::collections::HashMap::new();
        if let Ok(stores) = self.stores.lock() {
            for obj in stores.iter().flat_map(|s| s.state()) {
                let class = obj.state_class();
                *counts
                    .entry(crate::metrics::state_label(class))
                    .or_default() += 1;
            }
        }
        self.metrics.set_objects(&counts);
        let overdue = self
            .schedules
            .overdue(Instant::now(), Duration::from_secs(1));
        self.metrics.set_overdue(overdue.objects, overdue.oldest);
        self.metrics.encode()
    }
}

/// Triggers the reconcile of a `namespace/name`.
pub type Waker = Box<dyn Fn(&str) + Send + std::marker::Sync>;

#[derive(Default)]
struct CancelMemory {
    refused: std::collections::HashMap<String, String>,
    accepted: std::collections::HashMap<String, Instant>,
}

/// How much later than its own poll a ref served by another ref's call comes due, as a share
/// of its interval. The caller polls again first (jittered by at most a tenth) and so serves it
/// again; the others are only woken if that did not happen (the caller was deleted or ended),
/// so a group's refs do not all come due while its list is under way.
pub const FOLLOWER_SLACK: f64 = 0.25;

/// Hands what one call learnt about run `jr` to the other refs that follow it, by the same pure
/// decision their reconcile would make. A ref whose status it changes (or that has more to do)
/// is woken with news and takes it from the group's entry. For the others it was their poll:
/// their next one is scheduled, they leave the rate limit's line, and nothing is kept for them.
fn share<S: JobRunService>(
    ctx: &Context<S>,
    group: &shared::GroupKey,
    jr: &str,
    run: &JobRun,
    keys: Vec<String>,
    at: Instant,
) {
    let mut woken = Vec::new();
    for key in keys {
        // Not in the cache (yet): it judges for itself.
        let Some(obj) = ctx.cached(&key).and_then(|c| c.to_object()) else {
            woken.push(key);
            continue;
        };
        let old = decide::status_of_run(
            obj.status.as_ref(),
            &obj.spec.workspace_id,
            &obj.spec.job_run_id,
        );
        let previous = ctx.schedules.get(&key).map(|s| s.previous(Instant::now()));
        let decision = decide_for(&obj, ctx, old, previous, Some(Ok(run)));
        match decision.next {
            Next::Poll(after) if !decision.write && decision.events.is_empty() => {
                ctx.observations.took(&key, at);
                ctx.admission.forget(&key);
                ctx.schedules.set(
                    &key,
                    Some(Schedule {
                        generation: obj.meta().generation,
                        due: Instant::now() + after + after.mul_f64(FOLLOWER_SLACK),
                        failures: 0,
                        secret_version: None,
                    }),
                );
                ctx.metrics.shared_observations.inc();
            }
            _ => woken.push(key),
        }
    }
    if woken.is_empty() {
        return;
    }
    ctx.observations.offer(group, jr, run.clone(), at);
    for key in woken {
        ctx.observations.mark(&key);
        ctx.wake(&key);
    }
}

pub fn object_key(obj: &impl Resource) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// The reconcile the controller runs: on the object unpacked from the cache.
pub async fn reconcile_cached<S: JobRunService>(
    obj: Arc<cache::CachedRef>,
    ctx: Arc<Context<S>>,
) -> Result<Action, Error> {
    match obj.to_object() {
        Some(obj) => reconcile(Arc::new(obj), ctx).await,
        None => {
            // Cannot happen: the cache packs only what it has seen unpack.
            warn!(object = %object_key(obj.as_ref()), "the cached copy could not be unpacked");
            Ok(Action::await_change())
        }
    }
}

/// The reconcile function handed to kube-runtime.
pub async fn reconcile<S: JobRunService>(
    obj: Arc<SparkJobRunRef>,
    ctx: Arc<Context<S>>,
) -> Result<Action, Error> {
    let span = info_span!("reconcile", namespace = %obj.namespace().unwrap_or_default(), name = %obj.name_any());
    let started = Instant::now();
    let result = pipeline(&obj, &ctx).instrument(span).await;
    // A token handed out for this reconcile and not spent goes back to the line.
    ctx.admission
        .release_unused(&object_key(obj.as_ref()), started);
    ctx.metrics
        .observe_reconcile(result.is_ok(), started.elapsed());
    result
}

/// observe → decide → apply → schedule, for one object.
async fn pipeline<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
) -> Result<Action, Error> {
    let key = object_key(obj);
    // A replica that is not (or no longer surely) the leader spends no call either.
    ctx.fence.check(&key)?;
    if let Some(action) = lifecycle::handle(obj, ctx).await? {
        return Ok(action);
    }
    let (ws, jr) = (&obj.spec.workspace_id, &obj.spec.job_run_id);
    let old = decide::status_of_run(obj.status.as_ref(), ws, jr);
    let schedule = ctx.schedules.get(&key);
    let previous = schedule.as_ref().map(|s| s.previous(Instant::now()));
    let observation = match gate(obj, ctx, old, schedule).await {
        Gate::Wait => return Ok(Action::await_change()),
        Gate::Recheck(d) => return Ok(Action::requeue(d)),
        Gate::Skip => None,
        Gate::Observe => {
            let fresh = if decide::refresh_pending(old, refresh_of(obj)) {
                observe::Fresh::Own
            } else {
                observe::Fresh::Shared
            };
            Some(observe::observe(obj, ctx, fresh).await?)
        }
    };
    let secret_version = observation.as_ref().and_then(Observation::failed_secret);
    let result = observation.as_ref().map(|o| o.result.as_ref());
    let decision = decide_for(obj, ctx, old, previous, result);
    apply_decision(obj, ctx, decision, secret_version).await
}

fn refresh_of(obj: &SparkJobRunRef) -> Option<&str> {
    decide::refresh_request(
        obj.annotations()
            .get(decide::REFRESH_ANNOTATION)
            .map(String::as_str),
    )
}

/// Whether this reconcile calls the service.
enum Gate {
    Observe,
    Skip,
    /// Not due yet: the schedules' timeline wakes it when it is.
    Wait,
    /// Not due yet, but look at the Secret again after this long.
    Recheck(Duration),
}

/// How often a failure that read a Secret checks whether the Secret changed: one GET of its
/// metadata, so a fixed key is noticed within this long instead of at the permanent recheck.
pub const SECRET_RECHECK: Duration = Duration::from_secs(20);

/// The pure plan, plus one IO step: an object waiting after a failure with its Secret's key
/// observes again as soon as the Secret's resourceVersion is no longer the one that failed.
async fn gate<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
    old: Option<&SparkJobRunRefStatus>,
    schedule: Option<Schedule>,
) -> Gate {
    let previous = schedule.as_ref().map(|s| s.previous(Instant::now()));
    if decide::refresh_pending(old, refresh_of(obj)) {
        return Gate::Observe;
    }
    // Another ref's call brought something that changes this one: take it now (no call).
    if ctx.observations.has_news(&object_key(obj)) {
        return Gate::Observe;
    }
    match decide::plan(old, obj.meta().generation, previous) {
        Plan::Observe => Gate::Observe,
        Plan::Skip => Gate::Skip,
        Plan::Wait(d) => match schedule.and_then(|s| s.secret_version) {
            None => Gate::Wait,
            Some(failed) => match observe::current_secret_version(obj, ctx).await {
                Some(now) if now.as_deref() != Some(failed.as_str()) => Gate::Observe,
                _ => Gate::Recheck(d.min(SECRET_RECHECK)),
            },
        },
    }
}

fn decide_for<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
    old: Option<&SparkJobRunRefStatus>,
    previous: Option<decide::Previous>,
    observation: Option<Result<&JobRun, &Error>>,
) -> Decision {
    let messages;
    let observed = match observation {
        None => Observed::Skipped,
        Some(Ok(run)) => Observed::Run(run),
        Some(Err(e)) => {
            warn!(error = %e, reason = %e.reason(), "reading the job run failed");
            ctx.metrics
                .errors
                .get_or_create(&CategoryLabel {
                    category: e.reason().as_str(),
                })
                .inc();
            messages = e.condition_message();
            observed_failure(e, &messages)
        }
    };
    let region = obj
        .spec
        .region_id
        .as_deref()
        .or(ctx.settings.default_region.as_deref());
    decide::decide(&Input {
        old,
        refresh: refresh_of(obj),
        observed,
        generation: obj.meta().generation,
        identity: Identity {
            workspace_id: &obj.spec.workspace_id,
            job_run_id: &obj.spec.job_run_id,
            region_id: region,
        },
        previous,
        poll_interval: observe::poll_interval(obj).ok().flatten(),
        now: jiff::Timestamp::now(),
        jitter: rand::random::<f64>(),
        poll: &ctx.settings.poll,
        backoff: &ctx.settings.backoff,
    })
}

fn observed_failure<'a>(e: &Error, message: &'a str) -> Observed<'a> {
    match e {
        Error::GetJobRun { source, .. } if source.kind == crate::client::ApiErrorKind::NotFound => {
            Observed::NotFound { message }
        }
        _ => Observed::Failed {
            reason: e.reason(),
            message,
            retry: e.retry_class(),
            retry_after: match e {
                Error::GetJobRun { source, .. } => source.retry_after,
                _ => None,
            },
        },
    }
}

async fn apply_decision<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
    decision: Decision,
    secret_version: Option<String>,
) -> Result<Action, Error> {
    if decision.write {
        apply::write_status(obj, ctx, &decision.status).await?;
    }
    apply::publish(obj, ctx, decision.events).await;
    let key = object_key(obj);
    if decision.status.terminal == Some(true) {
        // Ended: nothing more to learn with the group.
        ctx.observations.leave(&key);
    }
    if decision.next == Next::AwaitChange
        && let Some(left) = decide::ttl_remaining(
            &decision.status,
            obj.spec.ttl_seconds_after_finished,
            &ctx.settings.ttl,
            jiff::Timestamp::now(),
        )
    {
        ctx.schedules.set(&key, None);
        if !left.is_zero() {
            return Ok(Action::requeue(left));
        }
        apply::delete_expired(obj, ctx).await?;
        return Ok(Action::await_change());
    }
    let generation = obj.meta().generation;
    let (schedule, action) = match decision.next {
        Next::AwaitChange => (None, Action::await_change()),
        // The schedules' timeline wakes it (see `run::wake_when_due`).
        Next::Poll(after) => (Some((after, 0)), Action::await_change()),
        Next::Retry { after, failures } => {
            let wake = match secret_version {
                Some(_) => after.min(SECRET_RECHECK),
                None => after,
            };
            (Some((after, failures)), Action::requeue(wake))
        }
    };
    ctx.schedules.set(
        &key,
        schedule.map(|(after, failures)| Schedule {
            generation,
            due: Instant::now() + after,
            failures,
            secret_version,
        }),
    );
    Ok(action)
}

/// Marks a minimal status as such: `Synced=False StatusTooLarge`.
fn too_large_condition(status: &mut SparkJobRunRefStatus) {
    let now = decide::whole_seconds(jiff::Timestamp::now());
    let mut desired: Vec<conditions::Desired> = status
        .conditions
        .iter()
        .filter_map(conditions::Desired::parse)
        .filter(|d| d.type_ != conditions::SYNCED)
        .collect();
    desired.push(conditions::synced(&Sync::Failed {
        reason: Reason::StatusTooLarge,
        message: "the API server refused the full status as too large; only state and conditions are shown",
    }));
    status.conditions = conditions::materialize(
        &status.conditions,
        desired,
        status.observed_generation,
        &now,
    );
}

/// Kubernetes trouble and flow control after a failed reconcile.
pub fn error_policy<S: JobRunService, K: Resource>(
    obj: Arc<K>,
    error: &Error,
    ctx: Arc<Context<S>>,
) -> Action {
    let key = object_key(obj.as_ref());
    let jitter = rand::random::<f64>();
    match error {
        // Stale cache or a recreated object: look again once the watch caught up.
        Error::Conflict { .. } => return Action::requeue(Duration::from_millis(200)),
        // Spread the retries over the time a slot needs, so the waiting objects do not stampede.
        Error::RateLimited { wait, .. } => {
            return Action::requeue(policy::jittered(
                *wait + Duration::from_millis(100),
                0.5,
                jitter,
            ));
        }
        Error::Fenced { .. } => return Action::requeue(Duration::from_secs(1)),
        _ => {}
    }
    ctx.metrics
        .errors
        .get_or_create(&CategoryLabel {
            category: error.reason().as_str(),
        })
        .inc();
    let failures = ctx
        .schedules
        .get(&key)
        .map_or(0, |s| s.failures)
        .saturating_add(1);
    let class = error.retry_class();
    let delay = policy::jittered(
        ctx.settings.backoff.delay(class, failures, None),
        ctx.settings.backoff.jitter,
        jitter,
    );
    ctx.schedules.set(
        &key,
        Some(Schedule {
            generation: None,
            due: Instant::now(),
            failures,
            secret_version: None,
        }),
    );
    warn!(namespace = %obj.namespace().unwrap_or_default(), name = %obj.name_any(), error = %error, retry_in_ms = delay.as_millis() as u64, "reconcile failed");
    Action::requeue(delay)
}
