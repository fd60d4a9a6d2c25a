//! Observation, the IO before the decision: which endpoint and credentials the object needs,
//! and one GetJobRun (plus one retry when temporary credentials turn out to have expired).

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::ResourceExt;
use kube::api::Api;
use tracing::warn;

use super::shared::{self, GroupKey, Strategy};
use super::{Context, object_key};
use crate::client::{
    ApiError, ApiErrorKind, GetJobRunRequest, JobRunService, ListFilter, ListJobRunsRequest,
};
use crate::config::Settings;
use crate::crd::SparkJobRunRef;
use crate::credentials::roles;
use crate::credentials::{self, sts};
use crate::endpoint;
use crate::error::Error;
use crate::policy;
use crate::signer::Credentials;
use crate::wire::JobRun;

/// Where an object's credentials came from, so that temporary ones can be forgotten when the
/// service says they expired.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Secret,
    Operator,
    /// A role assumed through the cache entry with this key.
    Role(String),
}

/// `spec.pollInterval`, parsed.
pub fn poll_interval(obj: &SparkJobRunRef) -> Result<Option<Duration>, Error> {
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

/// What one observation found, and the resourceVersion of the Secret it read (if it read one),
/// so that a failure can be retried as soon as the Secret changes.
#[derive(Debug)]
pub struct Observation {
    pub result: Result<JobRun, Error>,
    pub secret_version: Option<String>,
}

impl Observation {
    /// The Secret version a failed observation used: the one a recheck compares with.
    pub fn failed_secret(&self) -> Option<String> {
        self.result.as_ref().err().and(self.secret_version.clone())
    }
}

/// Reads the run: spec checks, endpoint, credentials, then the call. Fails only when no token
/// of the rate limit was free (the object is in line and comes back); every other failure is an
/// observation the decision records.
pub async fn observe<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
    fresh: Fresh,
) -> Result<Observation, Error> {
    let mut secret_version = None;
    match read_run(obj, ctx, fresh, &mut secret_version).await {
        Err(e @ Error::RateLimited { .. }) => Err(e),
        result => {
            ctx.observations.clear_news(&object_key(obj));
            Ok(Observation {
                result,
                secret_version,
            })
        }
    }
}

/// The resourceVersion of the object's Secret now (`None` when it has no Secret or it cannot be
/// read): one GET, the cheap check that tells whether a failure is worth a service call again.
pub async fn current_secret_version<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
) -> Option<Option<String>> {
    let name = obj
        .spec
        .credentials
        .as_ref()
        .and_then(|c| c.secret_ref.as_ref())?
        .name
        .as_str();
    let api: Api<KubeSecret> = Api::namespaced(ctx.client.clone(), &obj.namespace()?);
    let secret = api.get_metadata_opt(name).await.ok()?;
    Some(secret.and_then(|s| s.metadata.resource_version))
}

/// How often this ref looks at its run, by what its status says: how old a shared observation
/// may be to serve it.
fn interval_of(obj: &SparkJobRunRef, settings: &Settings) -> Duration {
    let status = super::decide::status_of_run(
        obj.status.as_ref(),
        &obj.spec.workspace_id,
        &obj.spec.job_run_id,
    );
    let class = status.and_then(|s| s.state.as_deref()).map_or(
        crate::state::StateClass::Queued,
        crate::state::StateClass::of,
    );
    let running_for = status
        .and_then(|s| s.submit_time.as_deref())
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .and_then(|t| Duration::try_from(jiff::Timestamp::now().duration_since(t)).ok());
    let spec = poll_interval(obj).ok().flatten();
    settings
        .poll
        .interval(class, running_for, spec)
        .unwrap_or(settings.poll.min_interval)
}

/// Whether an observation may come from what other calls learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fresh {
    /// A shared observation within the ref's interval will do.
    Shared,
    /// Its own GetJobRun now: a refresh the user asked for, or the look before a cancel.
    Own,
}

/// The run from what another call learnt, from the group's list, or from its own GetJobRun.
async fn read_run<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
    fresh: Fresh,
    secret_version: &mut Option<String>,
) -> Result<JobRun, Error> {
    poll_interval(obj)?;
    let request = resolve_request(obj, &ctx.settings)?;
    let key = object_key(obj);
    let group = GroupKey::of(obj, &request);
    ctx.observations.join(&key, &group, &request.job_run_id);
    let first = super::decide::status_of_run(
        obj.status.as_ref(),
        &obj.spec.workspace_id,
        &obj.spec.job_run_id,
    )
    .and_then(|s| s.state.as_ref())
    .is_none();
    let now = tokio::time::Instant::now();
    let (entry, situation) = ctx.observations.situation(
        &key,
        &group,
        &request.job_run_id,
        ctx.settings.observe,
        first,
        now,
    );
    let interval = interval_of(obj, &ctx.settings);
    let strategy = match fresh {
        Fresh::Own => Strategy::Get,
        Fresh::Shared => shared::strategy(entry.as_ref(), &situation, interval, now),
    };
    // The final answer of a run a list just found gone (the ref was woken by it) completes that
    // list's observation: it takes its token as the list's further pages do, not at the back of
    // the line. A run still missing later (unknown to the service) polls in its turn.
    let mut turn = if situation.missing && ctx.observations.has_news(&key) {
        Turn::Admitted
    } else {
        Turn::Line
    };
    match strategy {
        Strategy::Use(run) => {
            if let Some(e) = &entry {
                ctx.observations.took(&key, e.at);
            }
            ctx.metrics.shared_observations.inc();
            return Ok(*run);
        }
        Strategy::Wait(wait) => return Err(Error::RateLimited { object: key, wait }),
        Strategy::List => {
            if let Some(run) = list_group(obj, ctx, &request, &group, secret_version).await? {
                return Ok(run);
            }
            turn = Turn::Admitted;
        }
        Strategy::Get => {}
    }
    let mut run = get_run(obj, ctx, &request, secret_version, turn).await?;
    let ended = run
        .state
        .as_deref()
        .is_some_and(|s| crate::state::StateClass::of(s).is_terminal());
    let recorded = super::decide::status_of_run(
        obj.status.as_ref(),
        &obj.spec.workspace_id,
        &obj.spec.job_run_id,
    )
    .is_some_and(|s| s.usage.is_some());
    if ended && !recorded {
        run.usage = usage_of(obj, ctx, &request, secret_version).await;
    }
    let at = tokio::time::Instant::now();
    let others = ctx
        .observations
        .followers(&group, &request.job_run_id, &key);
    ctx.observations.took(&key, at);
    super::share(ctx, &group, &request.job_run_id, &run, others, at);
    Ok(run)
}

/// One ListJobRuns of the group's active runs (all pages, each inside the rate limit); every
/// ref it changes is woken. `None` when this ref's run was not among them: it ended or is gone,
/// and its own GetJobRun fetches the final answer.
async fn list_group<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
    request: &GetJobRunRequest,
    group: &GroupKey,
    secret_version: &mut Option<String>,
) -> Result<Option<JobRun>, Error> {
    let key = object_key(obj);
    if !ctx.observations.start_list(group) {
        return Err(Error::RateLimited {
            object: key,
            wait: Duration::from_secs(1),
        });
    }
    // Each page is handed on as it comes: the refs it serves are scheduled, those it changes
    // woken, and this ref's own run kept.
    let mut mine = None;
    let pages = list_pages(obj, ctx, request, secret_version, |items| {
        let at = tokio::time::Instant::now();
        for (run, keys) in ctx.observations.deliver(group, items) {
            let Some(jr) = run.job_run_id.clone() else {
                continue;
            };
            let others: Vec<String> = keys.into_iter().filter(|k| *k != key).collect();
            super::share(ctx, group, &jr, &run, others, at);
            if jr == request.job_run_id {
                mine = Some(run);
            }
        }
    })
    .await;
    let now = tokio::time::Instant::now();
    let complete = match pages {
        Ok(complete) => complete,
        Err(e) => {
            let backoff = &ctx.settings.backoff;
            let class = e.retry_class();
            match &e {
                // In the rate limit's line: the others of the group wait for this list.
                Error::RateLimited { wait, .. } => {
                    ctx.observations.queue_list(group, &key, now + *wait);
                }
                // Not a failure of the list: nobody called.
                Error::Fenced { .. } => {
                    ctx.observations
                        .fail_list(group, false, |_| Duration::ZERO, now);
                }
                _ => {
                    let refused = class == crate::policy::RetryClass::Permanent;
                    ctx.observations.fail_list(
                        group,
                        refused,
                        |n| backoff.delay(class, n, None),
                        now,
                    );
                    if refused {
                        // No ListJobRuns permission, say: this ref (and the group) reads per run.
                        warn!(error = %e, "ListJobRuns refused; observing this group per run for a while");
                        return Ok(None);
                    }
                }
            }
            return Err(e);
        }
    };
    let gone = ctx.observations.finish_list(group, complete, now);
    ctx.observations.took(&key, now);
    for k in gone.iter().filter(|k| **k != key) {
        ctx.wake(k);
    }
    Ok(mine)
}

/// What an ended run used: one ListJobRuns filtered by its id (GetJobRun does not say). A
/// failure only means the status goes without it.
async fn usage_of<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
    request: &GetJobRunRequest,
    secret_version: &mut Option<String>,
) -> Option<crate::crd::RunUsage> {
    let (creds, _) = resolve_credentials(obj, ctx, secret_version).await.ok()?;
    let list = ListJobRunsRequest {
        workspace_id: request.workspace_id.clone(),
        region_id: request.region_id.clone(),
        endpoint: request.endpoint.clone(),
        filter: ListFilter {
            job_run_id: Some(request.job_run_id.clone()),
            ..ListFilter::default()
        },
        max_results: 1,
        next_token: None,
    };
    ctx.admission.acquire().await;
    ctx.fence.check(&object_key(obj)).ok()?;
    let started = tokio::time::Instant::now();
    let result = ctx.service.list_job_runs(&list, &creds).await;
    let outcome = result.as_ref().map_or_else(|e| e.kind.reason(), |_| "ok");
    ctx.metrics.observe_list(outcome, started.elapsed());
    match result {
        Ok(page) => page
            .job_runs
            .iter()
            .find(|i| i.run.job_run_id.as_deref() == Some(request.job_run_id.as_str()))
            .and_then(|i| i.usage()),
        Err(e) => {
            warn!(error = %e, "reading the usage of the ended run failed; the status goes without it");
            None
        }
    }
}

/// Times a throttled page of a list is asked again before the list fails.
pub const PAGE_RETRIES: u32 = 2;
/// The shortest wait before asking a throttled page again.
const PAGE_RETRY_WAIT: Duration = Duration::from_secs(1);

/// Every page of the workspace's active runs, at most [`shared::MAX_PAGES`], each handed to
/// `on_page` as it comes; `false` when more were left.
async fn list_pages<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
    request: &GetJobRunRequest,
    secret_version: &mut Option<String>,
    mut on_page: impl FnMut(Vec<JobRun>),
) -> Result<bool, Error> {
    let (creds, origin) = resolve_credentials(obj, ctx, secret_version).await?;
    let mut page_request = ListJobRunsRequest {
        workspace_id: request.workspace_id.clone(),
        region_id: request.region_id.clone(),
        endpoint: request.endpoint.clone(),
        filter: ListFilter {
            states: shared::ACTIVE_STATES.map(str::to_owned).to_vec(),
            ..ListFilter::default()
        },
        max_results: crate::client::MAX_PAGE,
        next_token: None,
    };
    for page in 0..shared::MAX_PAGES {
        if page == 0 {
            ctx.admit(obj)?;
        } else {
            ctx.admission.acquire().await;
        }
        let mut retries = 0;
        let result = loop {
            ctx.fence.check(&object_key(obj))?;
            let started = tokio::time::Instant::now();
            let result = ctx.service.list_job_runs(&page_request, &creds).await;
            let outcome = result.as_ref().map_or_else(|e| e.kind.reason(), |_| "ok");
            ctx.metrics.observe_list(outcome, started.elapsed());
            match result {
                // A throttled page is asked again, shortly and a bounded number of times,
                // rather than losing the pages already read and the group's whole round (the
                // account's quota is shared with other clients, so this happens).
                Err(e) if e.kind == ApiErrorKind::Throttled && retries < PAGE_RETRIES => {
                    retries += 1;
                    let wait = e
                        .retry_after
                        .unwrap_or(PAGE_RETRY_WAIT)
                        .clamp(PAGE_RETRY_WAIT, PAGE_RETRY_WAIT * 5);
                    tokio::time::sleep(wait).await;
                    ctx.admission.acquire().await;
                }
                result => break result,
            }
        };
        let answer = result.map_err(|source| {
            if is_expired_token(&source) {
                forget(ctx, &origin);
            }
            Error::ListJobRuns {
                object: object_key(obj),
                workspace_id: request.workspace_id.clone(),
                source,
            }
        })?;
        let received = answer.job_runs.len();
        on_page(answer.job_runs.into_iter().map(|item| item.run).collect());
        match answer.next_token.filter(|t| !t.is_empty()) {
            Some(token) if received > 0 && Some(&token) != page_request.next_token.as_ref() => {
                page_request.next_token = Some(token);
            }
            _ => return Ok(true),
        }
    }
    Ok(false)
}

/// Where a call takes its token of the rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// From the fair line: without a free token the object is requeued and woken in its turn.
    Line,
    /// Straight from the bucket, waiting for it: a call that completes an observation the line
    /// already admitted.
    Admitted,
}

/// The ref's own GetJobRun (plus one retry when temporary credentials turn out expired).
async fn get_run<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
    request: &GetJobRunRequest,
    secret_version: &mut Option<String>,
    turn: Turn,
) -> Result<JobRun, Error> {
    let request = request.clone();
    let (creds, origin) = resolve_credentials(obj, ctx, secret_version).await?;
    let mut result = call(obj, ctx, &request, &creds, turn).await?;
    // Temporary credentials expired early (clock skew, a revoked session): exchange once more
    // and retry once, as the API doc asks, before reporting a problem.
    if let Err(e) = &result
        && is_expired_token(e)
        && origin != Origin::Secret
    {
        warn!(
            code = e.code.as_deref().unwrap_or(""),
            "temporary credentials were refused; refreshing them and retrying once"
        );
        forget(ctx, &origin);
        let (creds, _) = resolve_credentials(obj, ctx, secret_version).await?;
        result = call(obj, ctx, &request, &creds, turn).await?;
    }
    result.map_err(|source| Error::GetJobRun {
        object: object_key(obj),
        job_run_id: request.job_run_id.clone(),
        source,
    })
}

/// One call inside the rate limit. In its turn of the line the limiter is never waited on here:
/// without a free slot the object is requeued for when one frees up, so no worker is held and
/// others get theirs.
async fn call<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
    request: &GetJobRunRequest,
    creds: &Credentials,
    turn: Turn,
) -> Result<Result<JobRun, ApiError>, Error> {
    match turn {
        Turn::Line => ctx.admit(obj)?,
        Turn::Admitted => {
            ctx.admission.acquire().await;
            // Leadership may have ended while this waited.
            ctx.fence.check(&object_key(obj))?;
        }
    }
    let started = tokio::time::Instant::now();
    let result = ctx.service.get_job_run(request, creds).await;
    let outcome = result.as_ref().map_or_else(|e| e.kind.reason(), |_| "ok");
    ctx.metrics.observe_call(outcome, started.elapsed());
    if let Ok(run) = &result
        && !run.undecodable.is_empty()
    {
        tracing::debug!(fields = ?run.undecodable, "answer fields that could not be decoded kept their last known values");
        ctx.metrics
            .undecodable_fields
            .inc_by(run.undecodable.len() as u64);
    }
    Ok(result)
}

/// Asks the service to cancel the object's run: same endpoint, credentials and rate limit as a
/// read. Temporary credentials the service refused are forgotten, so the retry gets fresh ones.
pub async fn cancel_run<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
) -> Result<(), Error> {
    let request = resolve_request(obj, &ctx.settings)?;
    let (creds, origin) = resolve_credentials(obj, ctx, &mut None).await?;
    ctx.admit(obj)?;
    // The last moment a deposed leader could still be the one calling.
    ctx.fence.check(&object_key(obj))?;
    let result = ctx.service.cancel_job_run(&request, &creds).await;
    let outcome = result.as_ref().map_or_else(|e| e.kind.reason(), |_| "ok");
    ctx.metrics
        .cancel_calls
        .get_or_create(&crate::metrics::OutcomeLabel { outcome })
        .inc();
    result.map_err(|source| {
        if is_expired_token(&source) {
            match &origin {
                Origin::Role(key) => ctx.roles.invalidate(key),
                Origin::Operator => ctx.credentials.invalidate(),
                Origin::Secret => {}
            }
        }
        Error::CancelJobRun {
            object: object_key(obj),
            job_run_id: request.job_run_id.clone(),
            source,
        }
    })
}

/// Drops temporary credentials the service refused, so the next call exchanges fresh ones.
fn forget<S: JobRunService>(ctx: &Context<S>, origin: &Origin) {
    match origin {
        Origin::Role(key) => ctx.roles.invalidate(key),
        Origin::Operator => ctx.credentials.invalidate(),
        Origin::Secret => {}
    }
}

/// The service said the temporary credentials are no longer good.
fn is_expired_token(e: &ApiError) -> bool {
    e.kind == ApiErrorKind::Unauthorized
        && e.code
            .as_deref()
            .is_some_and(|c| c.starts_with("InvalidSecurityToken"))
}

/// The credentials in the object's Secret `name`: one `get`, same namespace, no list or watch;
/// used only when the Secret opted in (nothing of its data is looked at otherwise).
async fn secret_credentials<S: JobRunService>(
    obj: &SparkJobRunRef,
    ctx: &Context<S>,
    name: &str,
    version: &mut Option<String>,
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
    version.clone_from(&secret.metadata.resource_version);
    if !credentials::secret_opted_in(
        secret.metadata.labels.as_ref(),
        secret.metadata.annotations.as_ref(),
    ) {
        return Err(Error::SecretNotOptedIn {
            object,
            namespace,
            name: name.to_owned(),
        });
    }
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
    secret_version: &mut Option<String>,
) -> Result<(Credentials, Origin), Error> {
    let object = object_key(obj);
    let spec = obj.spec.credentials.as_ref();
    let role_arn = spec.and_then(|c| c.role_arn.as_deref());
    if let Some(role) = role_arn
        && !ctx.roles.allows(&obj.namespace().unwrap_or_default(), role)
    {
        return Err(Error::RoleNotAllowed {
            object,
            role_arn: role.to_owned(),
            none_allowed: ctx.roles.allow_list().is_empty(),
        });
    }
    let base = match spec.and_then(|c| c.secret_ref.as_ref()) {
        Some(r) => Some((
            secret_credentials(obj, ctx, &r.name, secret_version).await?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::Reason;
    use crate::crd::SparkJobRunRefSpec;

    fn object(spec: SparkJobRunRefSpec) -> SparkJobRunRef {
        let mut o = SparkJobRunRef::new("run", spec);
        o.metadata.namespace = Some("data".into());
        o
    }

    fn spec() -> SparkJobRunRefSpec {
        SparkJobRunRefSpec {
            workspace_id: "w-1".into(),
            job_run_id: "jr-1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn region_comes_from_the_spec_or_the_operator_default() {
        let err = resolve_request(&object(spec()), &Settings::default())
            .map(|_| ())
            .expect_err("no region");
        assert_eq!(err.reason(), Reason::RegionMissing);
        assert!(err.to_string().contains("--default-region"), "{err}");
        assert!(
            err.to_string().contains("data/run"),
            "names the object: {err}"
        );
        let with_default = Settings {
            default_region: Some("cn-shanghai".into()),
            ..Settings::default()
        };
        let req = resolve_request(&object(spec()), &with_default).expect("resolves");
        assert_eq!(
            req.endpoint.host,
            "emr-serverless-spark.cn-shanghai.aliyuncs.com"
        );
        assert_eq!(req.region_id, "cn-shanghai");
        let own = SparkJobRunRefSpec {
            region_id: Some("cn-beijing".into()),
            ..spec()
        };
        let req = resolve_request(&object(own), &with_default).expect("resolves");
        assert_eq!(req.region_id, "cn-beijing", "the spec wins");
    }

    #[test]
    fn an_endpoint_outside_the_allow_list_is_refused() {
        let bad = SparkJobRunRefSpec {
            endpoint: Some("https://attacker.example".into()),
            region_id: Some("cn-hangzhou".into()),
            ..spec()
        };
        let err = resolve_request(&object(bad), &Settings::default())
            .map(|_| ())
            .expect_err("not allowed");
        assert_eq!(err.reason(), Reason::EndpointNotAllowed);
    }

    #[test]
    fn poll_interval_errors_name_the_object() {
        let bad = SparkJobRunRefSpec {
            poll_interval: Some("soon".into()),
            ..spec()
        };
        let err = poll_interval(&object(bad)).expect_err("bad duration");
        assert!(err.to_string().contains("data/run"), "{err}");
        let good = SparkJobRunRefSpec {
            poll_interval: Some("45s".into()),
            ..spec()
        };
        assert_eq!(
            poll_interval(&object(good)).ok().flatten(),
            Some(Duration::from_secs(45))
        );
    }

    #[test]
    fn only_invalid_security_tokens_count_as_expired() {
        let err = |kind, code: Option<&str>| ApiError {
            kind,
            http_status: Some(401),
            code: code.map(str::to_owned),
            message: "m".into(),
            request_id: None,
            retry_after: None,
        };
        assert!(is_expired_token(&err(
            ApiErrorKind::Unauthorized,
            Some("InvalidSecurityToken.Expired")
        )));
        assert!(!is_expired_token(&err(
            ApiErrorKind::Unauthorized,
            Some("InvalidAccessKeyId.NotFound")
        )));
        assert!(!is_expired_token(&err(
            ApiErrorKind::Forbidden,
            Some("InvalidSecurityToken.Expired")
        )));
        assert!(!is_expired_token(&err(ApiErrorKind::Unauthorized, None)));
    }
}
