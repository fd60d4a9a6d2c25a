//! The reconciler: reads the run through [`JobRunService`], computes the next status purely
//! ([`crate::mapping::next_status`]), writes it with server-side apply only when it changed, emits
//! events on transitions and new problems, and decides when to look again.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::client::{ApiErrorKind, GetJobRunRequest, JobRunService};
use crate::conditions::{self, SYNCED};
use crate::crd::{SparkJobRunRef, SparkJobRunRefStatus};
use crate::credentials::roles::{self, RoleAssumer, StsSettings};
use crate::credentials::{self, CredentialProvider, sts};
use crate::endpoint::{self, AllowList, Endpoint, Network};
use crate::error::Error;
use crate::mapping::{self, PollOutcome, StatusContext};
use crate::metrics::{self, CategoryLabel, Metrics};
use crate::policy::{self, BackoffPolicy, PollPolicy, RetryClass};
use crate::signer::Credentials;
use crate::state::StateClass;

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

impl RateLimit {
    fn limiter(&self) -> DefaultDirectRateLimiter {
        let per_second = if self.per_second.is_finite() && self.per_second > 0.0 {
            self.per_second
        } else {
            1.0
        };
        let period = Duration::from_secs_f64(1.0 / per_second).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        RateLimiter::direct(quota)
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
        }
    }
}

/// What `/readyz` reports: the first list of every watch has arrived.
#[derive(Debug, Default)]
pub struct Health {
    pub synced: AtomicBool,
}

/// Per-object memory that must not go into status (it would cause writes): when the next poll is
/// due and how many calls failed in a row.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    generation: Option<i64>,
    due: Instant,
    failures: u32,
}

pub struct Context<S> {
    pub client: kube::Client,
    pub service: S,
    pub settings: Settings,
    pub credentials: Arc<dyn CredentialProvider>,
    /// Cross-account roles (`spec.credentials.roleArn`), cached per identity and role.
    pub roles: Arc<RoleAssumer>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    stores: Mutex<Vec<Store<SparkJobRunRef>>>,
    limiter: DefaultDirectRateLimiter,
    recorder: Recorder,
    schedules: Mutex<HashMap<String, Schedule>>,
}

impl<S: JobRunService> Context<S> {
    pub fn new(
        client: kube::Client,
        service: S,
        settings: Settings,
        credentials: Arc<dyn CredentialProvider>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: settings.instance.clone(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            limiter: settings.rate.limiter(),
            roles: Arc::new(RoleAssumer::from_settings(settings.sts.clone())),
            client,
            service,
            settings,
            credentials,
            metrics: Arc::new(Metrics::new()),
            health: Arc::new(Health::default()),
            stores: Mutex::new(Vec::new()),
            schedules: Mutex::new(HashMap::new()),
        }
    }

    /// Uses `roles` (built by the caller, e.g. with a shared STS client) instead of the one
    /// `new` made from the settings.
    pub fn with_role_assumer(mut self, roles: Arc<RoleAssumer>) -> Self {
        self.roles = roles;
        self
    }

    /// Whether the operator holds per-object memory for `namespace/name`.
    pub fn has_schedule(&self, key: &str) -> bool {
        self.schedule(key).is_some()
    }

    fn schedule(&self, key: &str) -> Option<Schedule> {
        self.schedules.lock().ok().and_then(|m| m.get(key).copied())
    }

    /// Forgets per-object memory of objects no longer in any watch cache (deleted, or moved out
    /// of the label selector), so a long-running operator does not grow without bound.
    pub fn prune_schedules(&self) -> usize {
        let live: std::collections::HashSet<String> = match self.stores.lock() {
            Ok(stores) => stores
                .iter()
                .flat_map(|s| s.state())
                .map(|o| object_key(&o))
                .collect(),
            Err(_) => return 0,
        };
        match self.schedules.lock() {
            Ok(mut m) => {
                let before = m.len();
                m.retain(|k, _| live.contains(k));
                before - m.len()
            }
            Err(_) => 0,
        }
    }

    fn set_schedule(&self, key: &str, s: Option<Schedule>) {
        if let Ok(mut m) = self.schedules.lock() {
            match s {
                Some(s) => {
                    m.insert(key.to_owned(), s);
                }
                None => {
                    m.remove(key);
                }
            }
        }
    }

    /// Waits for a slot of the process-wide rate limit.
    pub async fn acquire_call_slot(&self) {
        if self.limiter.check().is_err() {
            let started = Instant::now();
            self.limiter.until_ready().await;
            self.metrics.rate_limiter_waits.inc();
            self.metrics
                .rate_limiter_wait_seconds
                .inc_by(started.elapsed().as_secs_f64());
        }
    }

    /// Refreshes the objects-by-state gauge from the watch caches and renders `/metrics`.
    pub fn render_metrics(&self) -> Result<String, std::fmt::Error> {
        let mut counts: HashMap<&'static str, i64> = HashMap::new();
        if let Ok(stores) = self.stores.lock() {
            for store in stores.iter() {
                for obj in store.state() {
                    let class = obj
                        .status
                        .as_ref()
                        .and_then(|s| s.state.as_deref())
                        .map(StateClass::of);
                    *counts.entry(metrics::state_label(class)).or_default() += 1;
                }
            }
        }
        self.metrics.set_objects(&counts);
        self.metrics.encode()
    }
}

fn object_key(obj: &SparkJobRunRef) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

fn now_time() -> Time {
    // Whole seconds: that is what the API server stores, so comparisons stay exact.
    let secs = jiff::Timestamp::now().as_second();
    Time(jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}

fn unit_random() -> f64 {
    rand::random::<f64>()
}

/// What a reconcile needs to call the service for one object.
pub struct Target {
    pub request: GetJobRunRequest,
    pub credentials: Credentials,
}

/// Resolves region and endpoint (pure).
pub fn resolve_request(
    obj: &SparkJobRunRef,
    settings: &Settings,
) -> Result<GetJobRunRequest, Error> {
    let object = object_key(obj);
    let region = obj
        .spec
        .region_id
        .clone()
        .or_else(|| settings.default_region.clone())
        .ok_or_else(|| Error::MissingRegion {
            object: object.clone(),
        })?;
    let endpoint = endpoint::resolve(
        obj.spec.endpoint.as_deref(),
        settings.endpoint.as_ref(),
        &region,
        settings.network,
        &settings.allow,
    )
    .map_err(|source| Error::Endpoint { object, source })?;
    Ok(GetJobRunRequest {
        workspace_id: obj.spec.workspace_id.clone(),
        job_run_id: obj.spec.job_run_id.clone(),
        region_id: region,
        endpoint,
    })
}

/// Where an object's credentials came from, so that temporary ones can be forgotten when the
/// service says they expired.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Secret,
    Operator,
    /// A role assumed through the cache entry with this key.
    Role(String),
}

/// The credentials in the object's Secret `name`: one `get`, same namespace, no list or watch.
async fn secret_credentials<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
    name: &str,
) -> Result<Credentials, Error> {
    let object = object_key(obj);
    let namespace = obj.namespace().unwrap_or_default();
    let api: Api<KubeSecret> = Api::namespaced(ctx.client.clone(), &namespace);
    let secret = api
        .get_opt(name)
        .await
        .map_err(|source| Error::SecretRead {
            object: object.clone(),
            namespace: namespace.clone(),
            name: name.to_owned(),
            source,
        })?;
    let secret = secret.ok_or_else(|| Error::SecretNotFound {
        object: object.clone(),
        namespace: namespace.clone(),
        name: name.to_owned(),
    })?;
    let data = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    credentials::from_secret_data(&namespace, name, &data)
        .map_err(|source| Error::Credentials { object, source })
}

/// The object's credentials: its Secret or the operator's chain, and on top of either the
/// cross-account role of `spec.credentials.roleArn` when the operator's allow-list permits it
/// (checked first, so a refused role costs no Secret read and no STS call).
async fn resolve_credentials<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
) -> Result<(Credentials, Origin), Error> {
    let object = object_key(obj);
    let spec = obj.spec.credentials.as_ref();
    let secret_ref = spec.and_then(|c| c.secret_ref.as_ref());
    let role_arn = spec.and_then(|c| c.role_arn.as_deref());
    if let Some(role) = role_arn
        && !ctx.roles.allows(role)
    {
        return Err(Error::RoleNotAllowed {
            object,
            role_arn: role.to_owned(),
            none_allowed: ctx.roles.allow_list().is_empty(),
        });
    }
    let base = match secret_ref {
        Some(r) => Some((
            secret_credentials(obj, ctx, &r.name).await?,
            r.name.as_str(),
        )),
        None => None,
    };
    let Some(role) = role_arn else {
        return match base {
            Some((c, _)) => Ok((c, Origin::Secret)),
            None => ctx
                .credentials
                .credentials()
                .await
                .map(|c| (c, Origin::Operator))
                .map_err(|source| Error::Credentials { object, source }),
        };
    };
    let namespace = obj.namespace().unwrap_or_default();
    let session = sts::namespace_session_name(&namespace);
    let result = match base {
        Some((c, name)) => {
            let identity = format!("secret:{namespace}/{name}:{}", roles::fingerprint(&c));
            ctx.roles
                .assume(&identity, role, &session, || async move { Ok(c) })
                .await
        }
        None => {
            let identity = format!("operator:{}", ctx.credentials.source());
            ctx.roles
                .assume(&identity, role, &session, || ctx.credentials.credentials())
                .await
        }
    };
    result
        .map(|(c, key)| (c, Origin::Role(key)))
        .map_err(|source| Error::Credentials { object, source })
}

/// The service said the temporary credentials are no longer good.
fn is_expired_token(e: &crate::client::ApiError) -> bool {
    e.kind == ApiErrorKind::Unauthorized
        && e.code
            .as_deref()
            .is_some_and(|c| c.starts_with("InvalidSecurityToken"))
}

fn spec_poll_interval(obj: &SparkJobRunRef) -> Result<Option<Duration>, Error> {
    obj.spec
        .poll_interval
        .as_deref()
        .map(policy::parse_duration)
        .transpose()
        .map_err(|message| Error::PollInterval {
            object: object_key(obj),
            message,
        })
}

/// The reconcile function handed to kube-runtime.
pub async fn reconcile<S: JobRunService>(
    obj: Arc<SparkJobRunRef>,
    ctx: Arc<Context<S>>,
) -> Result<Action, Error> {
    let span = info_span!("reconcile", namespace = %obj.namespace().unwrap_or_default(), name = %obj.name_any());
    let started = Instant::now();
    let result = reconcile_inner(&obj, &ctx).instrument(span).await;
    ctx.metrics
        .observe_reconcile(result.is_ok(), started.elapsed());
    result
}

async fn reconcile_inner<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
) -> Result<Action, Error> {
    let key = object_key(obj);
    let generation = obj.meta().generation;
    let old = obj.status.as_ref();
    let terminal = old.and_then(|s| s.terminal).unwrap_or(false);
    let sched = ctx.schedule(&key);

    // Our own status write (and watch restarts) trigger reconciles; poll only when due.
    if !terminal && let Some(s) = sched {
        let now = Instant::now();
        let synced_generation = old.and_then(|s| s.observed_generation) == generation;
        if s.generation == generation && synced_generation && s.due > now {
            return Ok(Action::requeue(s.due - now));
        }
    }

    let region = obj
        .spec
        .region_id
        .clone()
        .or_else(|| ctx.settings.default_region.clone());
    let ctx_status = StatusContext {
        generation,
        job_run_id: &obj.spec.job_run_id,
        region_id: region.as_deref(),
    };

    if terminal {
        // A finished run costs nothing: no call, only bookkeeping when the spec changed.
        let next = mapping::next_status(old, PollOutcome::Skipped, ctx_status, &now_time());
        write_status_if_changed(obj, ctx, old, &next).await?;
        ctx.set_schedule(&key, None);
        return Ok(Action::await_change());
    }

    let result = fetch(obj, ctx).await;
    let now = now_time();
    let (next, retry) = match &result {
        Ok(run) => (
            mapping::next_status(old, PollOutcome::Run(run), ctx_status, &now),
            None,
        ),
        Err(Error::GetJobRun { source, .. }) if source.kind == ApiErrorKind::NotFound => {
            let message = source.condition_message();
            (
                mapping::next_status(
                    old,
                    PollOutcome::NotFound { message: &message },
                    ctx_status,
                    &now,
                ),
                Some((RetryClass::Permanent, None)),
            )
        }
        Err(e) => {
            let message = e.condition_message();
            let next = mapping::next_status(
                old,
                PollOutcome::Failed {
                    reason: e.reason(),
                    message: &message,
                },
                ctx_status,
                &now,
            );
            let retry_after = match e {
                Error::GetJobRun { source, .. } => source.retry_after,
                _ => None,
            };
            (next, Some((e.retry_class(), retry_after)))
        }
    };
    if let Err(e) = &result {
        warn!(error = %e, reason = e.reason(), "reading the job run failed");
        ctx.metrics
            .errors
            .get_or_create(&CategoryLabel {
                category: e.reason(),
            })
            .inc();
    }

    publish_events(obj, ctx, old, &next).await;
    write_status_if_changed(obj, ctx, old, &next).await?;

    let class = next
        .state
        .as_deref()
        .map(StateClass::of)
        .unwrap_or(StateClass::Queued);
    let delay = match retry {
        None => {
            let running_for = submitted_for(&next);
            match ctx.settings.poll.interval(
                class,
                running_for,
                spec_poll_interval(obj).ok().flatten(),
            ) {
                None => {
                    ctx.set_schedule(&key, None);
                    return Ok(Action::await_change());
                }
                Some(d) => (d, 0),
            }
        }
        Some((retry_class, retry_after)) => {
            let failures = sched.map_or(0, |s| s.failures).saturating_add(1);
            (
                ctx.settings
                    .backoff
                    .delay(retry_class, failures, retry_after),
                failures,
            )
        }
    };
    let jitter = if retry.is_some() {
        ctx.settings.backoff.jitter
    } else {
        ctx.settings.poll.jitter
    };
    let wait = policy::jittered(delay.0, jitter, unit_random());
    ctx.set_schedule(
        &key,
        Some(Schedule {
            generation,
            due: Instant::now() + wait,
            failures: delay.1,
        }),
    );
    debug!(wait_ms = wait.as_millis() as u64, "next poll scheduled");
    Ok(Action::requeue(wait))
}

/// How long the run has been submitted, from the status' submitTime.
fn submitted_for(status: &SparkJobRunRefStatus) -> Option<Duration> {
    let submitted: jiff::Timestamp = status.submit_time.as_deref()?.parse().ok()?;
    let span = jiff::Timestamp::now().duration_since(submitted);
    Duration::try_from(span).ok()
}

async fn fetch<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
) -> Result<crate::wire::JobRun, Error> {
    spec_poll_interval(obj)?;
    let request = resolve_request(obj, &ctx.settings)?;
    let (creds, origin) = resolve_credentials(obj, ctx).await?;
    ctx.acquire_call_slot().await;
    let started = Instant::now();
    let mut result = ctx.service.get_job_run(&request, &creds).await;
    let outcome = result.as_ref().map_or_else(|e| e.kind.reason(), |_| "ok");
    ctx.metrics.observe_call(outcome, started.elapsed());
    // Temporary credentials the service calls expired (clock skew, a revoked session): exchange
    // once more and retry once, as the API doc asks, before reporting a problem.
    if let Err(e) = &result
        && is_expired_token(e)
        && origin != Origin::Secret
    {
        warn!(
            code = e.code.as_deref().unwrap_or(""),
            "temporary credentials were refused; refreshing them and retrying once"
        );
        match &origin {
            Origin::Role(key) => ctx.roles.invalidate(key),
            Origin::Operator => ctx.credentials.invalidate(),
            Origin::Secret => {}
        }
        let (creds, _) = resolve_credentials(obj, ctx).await?;
        ctx.acquire_call_slot().await;
        let started = Instant::now();
        result = ctx.service.get_job_run(&request, &creds).await;
        let outcome = result.as_ref().map_or_else(|e| e.kind.reason(), |_| "ok");
        ctx.metrics.observe_call(outcome, started.elapsed());
    }
    let run = result.map_err(|source| Error::GetJobRun {
        object: object_key(obj),
        job_run_id: request.job_run_id.clone(),
        source,
    })?;
    if let Some(state) = run.state.as_deref()
        && StateClass::of(state) == StateClass::Unknown
        && obj.status.as_ref().and_then(|s| s.state.as_deref()) != Some(state)
    {
        warn!(
            state,
            "job run is in a state this operator does not know; treating it as not finished"
        );
    }
    Ok(run)
}

async fn write_status_if_changed<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
    old: Option<&SparkJobRunRefStatus>,
    next: &SparkJobRunRefStatus,
) -> Result<(), Error> {
    if old == Some(next) {
        return Ok(());
    }
    let object = object_key(obj);
    let namespace = obj.namespace().ok_or_else(|| Error::MissingMetadata {
        object: object.clone(),
        what: "namespace",
    })?;
    let api: Api<SparkJobRunRef> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = serde_json::json!({
        "apiVersion": "emrspark.io/v1alpha1",
        "kind": "SparkJobRunRef",
        "status": next,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::StatusPatch { object, source })?;
    ctx.metrics.status_writes.inc();
    info!(
        state = next.state.as_deref().unwrap_or(""),
        "status written"
    );
    Ok(())
}

/// An event to publish, decided purely from the old and new status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

/// Events for a status change: one per state transition, one per new kind of problem, one when
/// the problem clears. Pure, so a restart (old status already holds the state) emits nothing twice.
pub fn plan_events(
    job_run_id: &str,
    old: Option<&SparkJobRunRefStatus>,
    next: &SparkJobRunRefStatus,
) -> Vec<PlannedEvent> {
    let mut out = Vec::new();
    let old_state = old.and_then(|s| s.state.as_deref());
    if let Some(state) = next.state.as_deref()
        && old_state != Some(state)
    {
        {
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
                note.push_str(
                    "; this state is unknown to the operator, which keeps polling slowly",
                );
            } else if class == StateClass::CancelFailed {
                note.push_str("; the run may still be alive, polling continues");
            }
            out.push(PlannedEvent {
                warning: class.is_suspicious()
                    || matches!(class, StateClass::Failed | StateClass::Cancelled),
                reason: crate::state::state_reason(state).to_owned(),
                note: note.trim_end().to_owned(),
            });
        }
    }
    let old_sync = old.and_then(|s| conditions::find(&s.conditions, SYNCED));
    let new_sync = conditions::find(&next.conditions, SYNCED);
    if let Some(n) = new_sync {
        let old_reason = old_sync
            .filter(|o| o.status == "False")
            .map(|o| o.reason.as_str());
        if n.status == "False" && old_reason != Some(n.reason.as_str()) {
            out.push(PlannedEvent {
                warning: true,
                reason: n.reason.clone(),
                note: n.message.clone(),
            });
        } else if n.status == "True" && old_reason.is_some() {
            out.push(PlannedEvent {
                warning: false,
                reason: "Recovered".into(),
                note: format!("GetJobRun works again for job run {job_run_id}"),
            });
        }
    }
    out
}

async fn publish_events<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
    old: Option<&SparkJobRunRefStatus>,
    next: &SparkJobRunRefStatus,
) {
    let reference = obj.object_ref(&());
    for planned in plan_events(&obj.spec.job_run_id, old, next) {
        let mut note = planned.note;
        crate::text::truncate(&mut note, 1000);
        let event = Event {
            type_: if planned.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: planned.reason,
            note: Some(note),
            action: "GetJobRun".into(),
            secondary: None,
        };
        match ctx.recorder.publish(&event, &reference).await {
            Ok(()) => ctx.metrics.observe_event(planned.warning),
            Err(e) => warn!(error = %e, reason = %event.reason, "publishing an event failed"),
        }
    }
}

/// Kubernetes trouble (status writes, Secret reads that failed for other reasons than absence):
/// back off exponentially, per object.
pub fn error_policy<S: JobRunService>(
    obj: Arc<SparkJobRunRef>,
    error: &Error,
    ctx: Arc<Context<S>>,
) -> Action {
    let key = object_key(&obj);
    ctx.metrics
        .errors
        .get_or_create(&CategoryLabel {
            category: error.reason(),
        })
        .inc();
    let failures = ctx
        .schedule(&key)
        .map_or(0, |s| s.failures)
        .saturating_add(1);
    let delay = policy::jittered(
        ctx.settings
            .backoff
            .delay(error.retry_class(), failures, None),
        ctx.settings.backoff.jitter,
        unit_random(),
    );
    ctx.set_schedule(
        &key,
        Some(Schedule {
            generation: None,
            due: Instant::now(),
            failures,
        }),
    );
    warn!(namespace = %obj.namespace().unwrap_or_default(), name = %obj.name_any(), error = %error, retry_in_ms = delay.as_millis() as u64, "reconcile failed");
    Action::requeue(delay)
}

/// Runs the controller until `shutdown` resolves, one watch per configured namespace (or one for
/// all namespaces), all sharing the context and so the rate limit.
pub async fn run<S: JobRunService>(
    ctx: Arc<Context<S>>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let mut wc = watcher::Config::default();
    if let Some(sel) = &ctx.settings.scope.label_selector {
        wc = wc.labels(sel);
    }
    let apis: Vec<Api<SparkJobRunRef>> = if ctx.settings.scope.namespaces.is_empty() {
        vec![Api::all(ctx.client.clone())]
    } else {
        ctx.settings
            .scope
            .namespaces
            .iter()
            .map(|ns| Api::namespaced(ctx.client.clone(), ns))
            .collect()
    };
    let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let shutdown_tx = tx.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = shutdown_tx.send(());
    });
    let concurrency = ctx.settings.concurrency;
    let controllers: Vec<_> = apis
        .into_iter()
        .map(|api| Controller::new(api, wc.clone()))
        .collect();
    let stores: Vec<Store<SparkJobRunRef>> = controllers.iter().map(Controller::store).collect();
    if let Ok(mut shared) = ctx.stores.lock() {
        *shared = stores.clone();
    }
    let pruner_ctx = ctx.clone();
    let pruner = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let pruned = pruner_ctx.prune_schedules();
            if pruned > 0 {
                debug!(pruned, "forgot schedules of objects that are gone");
            }
        }
    });
    let health = ctx.health.clone();
    tokio::spawn(async move {
        for store in &stores {
            // The store's readiness future keeps one waker only, and the controller's own
            // applier waits on it too; re-poll on a short timer so this waiter is not starved.
            loop {
                match tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready())
                    .await
                {
                    Ok(Ok(())) => break,
                    Ok(Err(_)) => return,
                    Err(_) => continue,
                }
            }
        }
        health.synced.store(true, Ordering::Relaxed);
        info!("initial list of SparkJobRunRef objects synced");
    });
    let controllers = controllers.into_iter().map(|controller| {
        let mut rx = tx.subscribe();
        let ctx = ctx.clone();
        controller
            .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
            .graceful_shutdown_on(async move {
                let _ = rx.recv().await;
            })
            .run(reconcile, error_policy, ctx)
            .for_each(|res| async move {
                match res {
                    Ok((obj, _)) => debug!(object = %obj.name, "reconciled"),
                    Err(e) => debug!(error = %e, "controller event"),
                }
            })
    });
    futures::future::join_all(controllers).await;
    pruner.abort();
    ctx.health.synced.store(false, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::SparkJobRunRefSpec;
    use crate::mapping::next_status;
    use crate::wire::JobRun;

    fn status_for(state: &str) -> SparkJobRunRefStatus {
        let run = JobRun {
            state: Some(state.into()),
            ..JobRun::default()
        };
        let ctx = StatusContext {
            generation: Some(1),
            job_run_id: "jr-1",
            region_id: None,
        };
        next_status(
            None,
            PollOutcome::Run(&run),
            ctx,
            &Time(jiff::Timestamp::UNIX_EPOCH),
        )
    }

    #[test]
    fn events_on_transitions_only() {
        let running = status_for("Running");
        let first = plan_events("jr-1", None, &running);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].reason, "Running");
        assert!(!first[0].warning);
        assert!(
            plan_events("jr-1", Some(&running), &running).is_empty(),
            "no change, no event"
        );
        let failed = status_for("Failed");
        let ev = plan_events("jr-1", Some(&running), &failed);
        assert_eq!(ev.len(), 1);
        assert!(ev[0].warning);
        assert!(ev[0].note.contains("was Running"), "{}", ev[0].note);
        let cf = plan_events("jr-1", Some(&running), &status_for("CancelFailed"));
        assert!(cf[0].warning && cf[0].reason == "CancelFailed");
        let unknown = plan_events("jr-1", Some(&running), &status_for("Hibernating"));
        assert_eq!(
            (unknown[0].warning, unknown[0].reason.as_str()),
            (true, "UnknownState")
        );
    }

    #[test]
    fn events_on_new_problems_and_recovery() {
        let running = status_for("Running");
        let ctx = StatusContext {
            generation: Some(1),
            job_run_id: "jr-1",
            region_id: None,
        };
        let t = Time(jiff::Timestamp::UNIX_EPOCH);
        let fail = |old: &SparkJobRunRefStatus, reason: &str| {
            next_status(
                Some(old),
                PollOutcome::Failed {
                    reason,
                    message: "m",
                },
                ctx,
                &t,
            )
        };
        let throttled = fail(&running, "Throttled");
        let ev = plan_events("jr-1", Some(&running), &throttled);
        assert_eq!(ev.len(), 1);
        assert_eq!((ev[0].warning, ev[0].reason.as_str()), (true, "Throttled"));
        let again = fail(&throttled, "Throttled");
        assert!(
            plan_events("jr-1", Some(&throttled), &again).is_empty(),
            "same problem: quiet"
        );
        let other = fail(&throttled, "Unauthorized");
        assert_eq!(
            plan_events("jr-1", Some(&throttled), &other)[0].reason,
            "Unauthorized"
        );
        let run = JobRun {
            state: Some("Running".into()),
            ..JobRun::default()
        };
        let ok = next_status(Some(&other), PollOutcome::Run(&run), ctx, &t);
        let ev = plan_events("jr-1", Some(&other), &ok);
        assert_eq!(ev.len(), 1);
        assert_eq!((ev[0].warning, ev[0].reason.as_str()), (false, "Recovered"));
    }

    fn object(spec: SparkJobRunRefSpec) -> SparkJobRunRef {
        let mut o = SparkJobRunRef::new("run", spec);
        o.metadata.namespace = Some("data".into());
        o
    }

    #[test]
    fn request_resolution() {
        let spec = SparkJobRunRefSpec {
            workspace_id: "w-1".into(),
            job_run_id: "jr-1".into(),
            ..Default::default()
        };
        let settings = Settings::default();
        let err = resolve_request(&object(spec.clone()), &settings)
            .map(|_| ())
            .expect_err("no region");
        assert_eq!(err.reason(), "RegionMissing");
        assert!(err.to_string().contains("--default-region"), "{err}");
        let with_default = Settings {
            default_region: Some("cn-shanghai".into()),
            ..Settings::default()
        };
        let req = resolve_request(&object(spec.clone()), &with_default).expect("resolves");
        assert_eq!(
            req.endpoint.host,
            "emr-serverless-spark.cn-shanghai.aliyuncs.com"
        );
        assert_eq!(req.region_id, "cn-shanghai");
        let bad = SparkJobRunRefSpec {
            endpoint: Some("https://attacker.example".into()),
            region_id: Some("cn-hangzhou".into()),
            ..spec
        };
        let err = resolve_request(&object(bad), &settings)
            .map(|_| ())
            .expect_err("not allowed");
        assert_eq!(err.reason(), "EndpointNotAllowed");
    }

    #[test]
    fn rate_limit_quota_handles_odd_values() {
        for rate in [
            RateLimit {
                per_second: 0.0,
                burst: 0,
            },
            RateLimit {
                per_second: f64::NAN,
                burst: 1,
            },
            RateLimit {
                per_second: 1e9,
                burst: 5,
            },
        ] {
            let limiter = rate.limiter();
            assert!(limiter.check().is_ok(), "{rate:?}");
        }
    }
}
