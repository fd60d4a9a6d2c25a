//! The simulator as an HTTP server (axum on tokio): GetJobRun, ListJobRuns and CancelJobRun,
//! signed and checked like the real service, plus an unsigned admin API under `/_sim/` for tests and demos. The clock is
//! the real one; everything it feeds (verification, scripts, faults) is pure and tested apart.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::SimulatorError;
use super::cli::SimulatorConfig;
use super::counts::{self, Call, CallCounts, Journal};
use super::error::{ServiceError, new_request_id};
use super::faults::{ActiveFault, Fault, FaultAnswer, FaultError, FaultTable, Target};
use super::list::{self, ListQuery};
use super::quota::Quota;
use super::script::{RunScript, ScriptError, answer_body};
use super::sts::{self, Issued, OidcRole, RoleTrust, StsCounts, StsState};
use super::verify::{Account, Accounts, Api, NonceCache, ReceivedRequest, verify, verify_rpc};
use crate::signer::{parse_authorization, percent_decode};

/// Largest request body read; GetJobRun has none, so anything big is a client bug.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long `shutdown` waits for open connections before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
const JSON: &str = "application/json;charset=utf-8";
const HTML_ERROR_PAGE: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>Tengine</center>\r\n</body>\r\n</html>\r\n";

/// Starts simulators.
pub struct Simulator;

impl Simulator {
    /// Binds `config.listen` (default `127.0.0.1:0`, a free loopback port) and serves until the
    /// handle is shut down or dropped.
    pub async fn start(config: SimulatorConfig) -> Result<SimulatorHandle, SimulatorError> {
        let now = Timestamp::now();
        let mut state = SimState {
            sts: StsState::new(config.sts),
            ..SimState::default()
        };
        for account in config.accounts {
            state.accounts.insert(account);
        }
        for run in config.runs {
            run.validate()
                .map_err(|source| SimulatorError::InvalidRun {
                    job_run_id: run.job_run_id.clone(),
                    source,
                })?;
            state.runs.insert(
                run.job_run_id.clone(),
                StoredRun {
                    run,
                    started_at: now,
                    cancels: 0,
                },
            );
        }
        state.quota = config.quota_per_second.and_then(Quota::new);
        for fault in config.faults {
            fault.validate()?;
            state.faults.inject(fault);
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
        });
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| SimulatorError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SimulatorError::Bind {
                addr: config.listen,
                source,
            })?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let app = router(shared.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    // A dropped handle stops the server as well as an explicit shutdown.
                    let _ = stop_rx.await;
                })
                .await
        });
        tracing::debug!(%addr, "simulator listening");
        Ok(SimulatorHandle {
            addr,
            shared,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }
}

/// A running simulator. Dropping it stops the server; [`SimulatorHandle::shutdown`] also waits
/// until it has stopped.
pub struct SimulatorHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl std::fmt::Debug for SimulatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatorHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl SimulatorHandle {
    /// The address the server is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT` to configure as the operator's endpoint. A wildcard bind (0.0.0.0, ::) is
    /// shown as loopback, which reaches it from this machine.
    pub fn endpoint(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// Adds (or replaces) a run; it starts now.
    pub fn add_run(&self, run: RunScript) -> Result<(), ScriptError> {
        run.validate()?;
        self.shared.lock().runs.insert(
            run.job_run_id.clone(),
            StoredRun {
                run,
                started_at: Timestamp::now(),
                cancels: 0,
            },
        );
        Ok(())
    }

    /// Injects a fault and returns its id.
    pub fn inject(&self, fault: Fault) -> Result<u64, FaultError> {
        fault.validate()?;
        Ok(self.shared.lock().faults.inject(fault))
    }

    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Removes one fault, leaving the others (e.g. those of concurrent tests) in place.
    pub fn remove_fault(&self, id: u64) -> bool {
        self.shared.lock().faults.remove(id)
    }

    pub fn faults(&self) -> Vec<ActiveFault> {
        self.shared.lock().faults.list()
    }

    pub fn calls(&self) -> CallCounts {
        self.shared.lock().counts.clone()
    }

    /// Service calls that arrived at or after `since` (the latest [`counts::JOURNAL_CAP`]).
    pub fn journal_since(&self, since: std::time::Instant) -> Vec<Call> {
        self.shared.lock().journal.since(since)
    }

    /// Sets (or, with `None`, lifts) the account's quota of service calls per second.
    pub fn set_quota(&self, per_second: Option<f64>) {
        self.shared.lock().quota = per_second.and_then(Quota::new);
    }

    /// CancelJobRun calls the run accepted (0 for an unknown run).
    pub fn cancels_of(&self, job_run_id: &str) -> u64 {
        self.shared
            .lock()
            .runs
            .get(job_run_id)
            .map_or(0, |r| r.cancels)
    }

    pub fn calls_for(&self, job_run_id: &str) -> u64 {
        self.shared.lock().counts.for_job_run(job_run_id)
    }

    pub fn reset_counts(&self) {
        self.shared.lock().counts = CallCounts::default();
    }

    /// Adds (or replaces) an AccessKey.
    pub fn add_account(&self, account: Account) {
        self.shared.lock().accounts.insert(account);
    }

    /// Registers the OIDC token a role accepts now, replacing the previous one for the same
    /// role and provider (what the kubelet's rotation of the token file looks like to STS).
    pub fn add_oidc_role(&self, role: OidcRole) {
        self.shared.lock().sts.config.upsert_oidc(role);
    }

    /// Sets who may `AssumeRole` a role (AccessKey ids or role ARNs), replacing its trust.
    pub fn add_role_trust(&self, trust: RoleTrust) {
        self.shared.lock().sts.config.upsert_trust(trust);
    }

    /// The shortest `DurationSeconds` STS accepts (900 like the real one; tests lower it), and
    /// an optional fixed lifetime for every credential issued.
    pub fn set_sts_durations(&self, min_duration_seconds: u64, lifetime_seconds: Option<u64>) {
        let mut state = self.shared.lock();
        state.sts.config.min_duration_seconds = min_duration_seconds;
        state.sts.config.lifetime_seconds = lifetime_seconds;
    }

    /// STS calls by action, outcome and role.
    pub fn sts_calls(&self) -> StsCounts {
        self.shared.lock().counts.sts.clone()
    }

    /// Every credential issued for `role_arn` (secret values included, for leak checks in
    /// tests; the admin API never shows them), oldest first.
    pub fn issued_for(&self, role_arn: &str) -> Vec<Issued> {
        let mut out: Vec<Issued> = self
            .shared
            .lock()
            .sts
            .issued
            .values()
            .filter(|i| i.role_arn == role_arn)
            .cloned()
            .collect();
        out.sort_by_key(|i| i.issued_at);
        out
    }

    /// Stops accepting calls and waits (a few seconds at most) for open ones to finish.
    pub async fn shutdown(mut self) -> Result<(), SimulatorError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(Ok(result)) => result.map_err(SimulatorError::Serve),
            Ok(Err(join)) => Err(SimulatorError::Serve(std::io::Error::other(join))),
            Err(_) => {
                task.abort();
                Ok(())
            }
        }
    }
}

struct Shared {
    state: Mutex<SimState>,
}

impl Shared {
    /// The state stays consistent even if a holder panicked (every update is a single step).
    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct SimState {
    accounts: Accounts,
    runs: HashMap<String, StoredRun>,
    faults: FaultTable,
    counts: CallCounts,
    journal: Journal,
    nonces: NonceCache,
    sts: StsState,
    quota: Option<Quota>,
}

struct StoredRun {
    run: RunScript,
    started_at: Timestamp,
    /// CancelJobRun calls accepted for this run (also those that found it cancelling).
    cancels: u64,
}

/// A run as the admin API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RunInfo<'a> {
    run: &'a RunScript,
    started_at: String,
    cancels: u64,
}

impl StoredRun {
    fn info(&self) -> RunInfo<'_> {
        RunInfo {
            run: &self.run,
            started_at: self.started_at.to_string(),
            cancels: self.cancels,
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_sim/runs", post(admin_add_run).get(admin_list_runs))
        .route("/_sim/runs/{job_run_id}", delete(admin_remove_run))
        .route(
            "/_sim/faults",
            post(admin_add_fault)
                .get(admin_list_faults)
                .delete(admin_clear_faults),
        )
        .route("/_sim/faults/{id}", delete(admin_remove_fault))
        .route("/_sim/calls", get(admin_calls))
        .route("/_sim/reset-counts", post(admin_reset_counts))
        .route("/_sim/accounts", post(admin_add_account))
        .route("/_sim/sts/oidc", post(admin_add_oidc_role))
        .route("/_sim/sts/trusts", post(admin_add_trust))
        .route("/_sim/healthz", get(|| async { "ok" }))
        .route_layer(middleware::from_fn(loopback_only))
        .fallback(service)
        .with_state(shared)
}

/// The admin API is unsigned, so only this machine may use it.
async fn loopback_only(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    if peer.ip().is_loopback() {
        next.run(req).await
    } else {
        admin_error(
            StatusCode::FORBIDDEN,
            "the /_sim/ admin API answers loopback clients only",
        )
    }
}

/// The decoded value of query parameter `name` (`+` read as a space, as the verifier does).
fn query_param(raw_query: &str, name: &str) -> Option<String> {
    raw_query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(&k.replace('+', " "))? == name)
            .then(|| percent_decode(&v.replace('+', " ")))
            .flatten()
    })
}

/// What the service answers to one call.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
    retry_after_ms: Option<u64>,
    /// Counting and logging key: [`counts::ACCEPTED`] or what was answered instead.
    outcome: String,
    delay_ms: u64,
}

impl Reply {
    fn error(err: &ServiceError, request_id: &str, host: &str) -> Self {
        Self {
            status: err.status,
            content_type: JSON,
            body: err.body(request_id, host).to_string(),
            retry_after_ms: err.retry_after_ms,
            outcome: err.code.clone(),
            delay_ms: 0,
        }
    }
}

async fn service(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    // The quota counts arrivals: a request that waited for the state lock behind a slow page
    // arrived when it arrived, not when it got its turn.
    let arrived = Timestamp::now();
    let request_id = new_request_id();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_ascii_lowercase(), value)
        })
        .collect();
    let received = ReceivedRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers,
        body: Vec::new(),
    };
    let host = received.header("host").unwrap_or_default().to_owned();
    let api = Api::resolve(&received.method, &received.path);
    let job_run_id = api
        .as_ref()
        .and_then(|api| api.job_run_id().map(str::to_owned));
    let action = api.as_ref().map(|api| api.action().to_owned());
    let workspace_id = api.as_ref().map(|api| api.workspace_id().to_owned());
    let (filtered_run, first_page) = match &api {
        Some(Api::ListJobRuns { .. }) => counts::list_query_facts(parts.uri.query().unwrap_or("")),
        _ => (None, false),
    };
    let journal_entry = |outcome: &str| Call {
        at: std::time::Instant::now(),
        action: action.clone(),
        workspace_id: workspace_id.clone(),
        job_run_id: job_run_id.clone().or_else(|| filtered_run.clone()),
        first_page,
        outcome: outcome.to_owned(),
    };
    // Only the key id of the credential is logged, never the signature or any secret.
    let credential = received
        .header("authorization")
        .and_then(|a| parse_authorization(a.trim()).ok())
        .map(|a| a.access_key_id);

    let reply = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => {
            let received = ReceivedRequest {
                body: bytes.to_vec(),
                ..received
            };
            let mut state = shared.lock();
            if received.path == "/" {
                let (reply, action, role) = sts_answer(&mut state, &received, &request_id, &host);
                state.counts.sts.record(&action, &role, &reply.outcome);
                tracing::info!(
                    request_id = %request_id,
                    action = %action,
                    role_arn = %role,
                    access_key_id = credential.as_deref().unwrap_or("-"),
                    status = reply.status,
                    outcome = %reply.outcome,
                    "simulated STS call"
                );
                reply
            } else {
                let reply = answer(&mut state, &received, &request_id, &host, arrived);
                state
                    .counts
                    .record(action.as_deref(), job_run_id.as_deref(), &reply.outcome);
                state.journal.push(journal_entry(&reply.outcome));
                reply
            }
        }
        Err(_) => {
            let err = ServiceError::new(
                "InvalidParameter",
                400,
                "The request body is too large or could not be read.",
            );
            let reply = Reply::error(&err, &request_id, &host);
            let mut state = shared.lock();
            state
                .counts
                .record(action.as_deref(), job_run_id.as_deref(), &reply.outcome);
            state.journal.push(journal_entry(&reply.outcome));
            reply
        }
    };

    tracing::info!(
        request_id = %request_id,
        method = %parts.method,
        path = %parts.uri.path(),
        job_run_id = job_run_id.as_deref().unwrap_or("-"),
        access_key_id = credential.as_deref().unwrap_or("-"),
        status = reply.status,
        outcome = %reply.outcome,
        delay_ms = reply.delay_ms,
        "simulated service call"
    );
    if reply.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(reply.delay_ms)).await;
    }
    let mut builder = Response::builder()
        .status(reply.status)
        .header(header::CONTENT_TYPE, reply.content_type)
        .header("x-acs-request-id", &request_id);
    if let Some(ms) = reply.retry_after_ms {
        builder = builder.header("x-acs-retry-after", ms);
    }
    builder
        .body(Body::from(reply.body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The parameters of a call, checked before faults and effects, as the service does.
enum Params {
    Region(String),
    List(ListQuery),
}

impl Params {
    fn of(api: &Api, raw_query: &str) -> Result<Self, ServiceError> {
        match api {
            Api::ListJobRuns { .. } => ListQuery::parse(raw_query).map(Self::List),
            _ => query_param(raw_query, "regionId")
                .filter(|r| !r.is_empty())
                .map(Self::Region)
                .ok_or_else(|| ServiceError::missing_parameter("regionId")),
        }
    }

    fn region(&self) -> &str {
        match self {
            Self::Region(region) => region,
            Self::List(q) => &q.region_id,
        }
    }
}

/// Decides the answer to one call: signature (which also resolves the API), parameters, faults,
/// then the call's effect and answer.
fn answer(
    state: &mut SimState,
    req: &ReceivedRequest,
    request_id: &str,
    host: &str,
    arrived: Timestamp,
) -> Reply {
    let fail = |err: ServiceError| Reply::error(&err, request_id, host);
    let caller = match verify(req, &state.accounts, Timestamp::now(), &mut state.nonces) {
        Ok(caller) => caller,
        Err(err) => return fail(err),
    };
    if let Some(quota) = state.quota.as_mut()
        && !quota.take(arrived)
    {
        return fail(ServiceError::throttling("Throttling.User", 400, None));
    }
    if let Api::StartJobRun { .. } = caller.api {
        // Correctly signed for another API of the product, which the simulator does not serve.
        let mut err = ServiceError::api_not_found();
        err.message
            .push_str(" (the simulator serves GetJobRun, ListJobRuns and CancelJobRun)");
        return fail(err);
    }
    let params = match Params::of(&caller.api, &req.query) {
        Ok(p) => p,
        Err(err) => return fail(err),
    };
    let action = caller.api.action();
    let job_run_id = caller.api.job_run_id().unwrap_or_default().to_owned();
    let triggered = state.faults.take(Target {
        action,
        job_run_id: caller.api.job_run_id(),
    });
    let fault = triggered
        .answer
        .and_then(|kind| kind.answer(&caller.access_key_id, &job_run_id, action));
    let ok = |body: String, outcome: &str| Reply {
        status: 200,
        content_type: JSON,
        body,
        retry_after_ms: None,
        outcome: outcome.to_owned(),
        delay_ms: 0,
    };
    let mut reply = match fault {
        Some(FaultAnswer::Error(err)) => fail(err),
        Some(FaultAnswer::HtmlErrorPage) => Reply {
            status: 502,
            content_type: "text/html",
            body: HTML_ERROR_PAGE.to_owned(),
            ..ok(String::new(), counts::HTML_ERROR_PAGE)
        },
        fault => match (fault, effect(state, &caller.api, &params, request_id)) {
            (Some(FaultAnswer::MalformedJson), body) => {
                let full = body
                    .unwrap_or_else(|_| json!({"requestId": request_id, "jobRun": {}}))
                    .to_string();
                ok(truncate_half(&full).to_owned(), counts::MALFORMED_JSON)
            }
            (_, Err(err)) => fail(err),
            (Some(FaultAnswer::Partial { omit, set }), Ok(mut body)) => {
                FaultAnswer::degrade(&omit, &set, &mut body);
                ok(body.to_string(), counts::PARTIAL)
            }
            (_, Ok(body)) => ok(body.to_string(), counts::ACCEPTED),
        },
    };
    reply.delay_ms = triggered.delay_ms;
    reply
}

/// What a call does and answers, faults aside: GetJobRun shows the run, ListJobRuns a page,
/// CancelJobRun starts the run's `Cancelling → Cancelled` (once; an ended run is refused).
fn effect(
    state: &mut SimState,
    api: &Api,
    params: &Params,
    request_id: &str,
) -> Result<Value, ServiceError> {
    let now = Timestamp::now();
    let region = params.region();
    match (api, params) {
        (Api::ListJobRuns { workspace_id }, Params::List(q)) => {
            let runs = state
                .runs
                .values()
                .filter(|s| s.run.is_visible_from(workspace_id, region))
                .map(|s| (&s.run, s.started_at));
            Ok(list::page(runs, q, now, request_id))
        }
        (
            Api::GetJobRun {
                workspace_id,
                job_run_id,
            }
            | Api::CancelJobRun {
                workspace_id,
                job_run_id,
            },
            _,
        ) => {
            let stored = state
                .runs
                .get_mut(job_run_id)
                .filter(|stored| stored.run.is_visible_from(workspace_id, region))
                .ok_or_else(|| ServiceError::job_run_not_found(job_run_id))?;
            if let Api::GetJobRun { .. } = api {
                return Ok(answer_body(&stored.run, stored.started_at, now, request_id));
            }
            let elapsed = (now.as_millisecond() - stored.started_at.as_millisecond()).max(0);
            match stored.run.cancelled(elapsed) {
                Ok(Some(run)) => {
                    stored.run = run;
                    stored.cancels += 1;
                }
                Ok(None) => stored.cancels += 1,
                Err(state) => return Err(ServiceError::already_finished(job_run_id, &state)),
            }
            Ok(json!({"requestId": request_id, "jobRunId": job_run_id}))
        }
        _ => Err(ServiceError::api_not_found()),
    }
}

/// Answers a `POST /` STS call: `AssumeRoleWithOIDC` (anonymous) or `AssumeRole` (signed).
/// Returns the reply with the action and role it concerned, for counting.
fn sts_answer(
    state: &mut SimState,
    req: &ReceivedRequest,
    request_id: &str,
    host: &str,
) -> (Reply, String, String) {
    let params = match sts::rpc_params(&req.query, req.header("content-type"), &req.body) {
        Ok(p) => p,
        Err(err) => return (Reply::error(&err, request_id, host), "-".into(), "-".into()),
    };
    let role = params.get("RoleArn").cloned().unwrap_or_else(|| "-".into());
    let (action, version_ok) = sts::action_and_version(
        req.header("x-acs-action"),
        req.header("x-acs-version"),
        &params,
    );
    let action_name = action.unwrap_or("-").to_owned();
    let fail = |err: ServiceError| Reply::error(&err, request_id, host);
    if req.method != "POST" && req.method != "GET" {
        return (fail(ServiceError::api_not_found()), action_name, role);
    }
    let now = Timestamp::now();
    let grant = match action {
        Some(a) if a == crate::credentials::sts::ASSUME_ROLE_WITH_OIDC => {
            if !version_ok {
                return (fail(ServiceError::invalid_version()), action_name, role);
            }
            sts::check_oidc(&params, &state.sts.config)
        }
        Some(a) if a == crate::credentials::sts::ASSUME_ROLE => {
            let caller = verify_rpc(
                req,
                &state.accounts,
                now,
                &mut state.nonces,
                crate::credentials::sts::STS_VERSION,
                &[crate::credentials::sts::ASSUME_ROLE],
            );
            match caller {
                Ok(caller) => {
                    let principals = state.sts.principals(&caller.access_key_id);
                    sts::check_assume_role(&params, &principals, &state.sts.config)
                }
                Err(err) => Err(err),
            }
        }
        _ => Err(ServiceError::api_not_found()),
    };
    let grant = match grant {
        Ok(g) => g,
        Err(err) => return (fail(err), action_name, role),
    };
    for id in state.sts.forget_expired(now) {
        state.accounts.remove(&id);
    }
    let (issued, body) = sts::issue(&grant, sts::mint(), now, request_id);
    state.accounts.insert(
        Account::new(
            issued.access_key_id.as_str(),
            issued.access_key_secret.clone(),
        )
        .with_security_token(issued.security_token.clone(), Some(issued.expires_at)),
    );
    tracing::debug!(access_key_id = %issued.access_key_id, expires_at = %issued.expires_at, "simulated STS issued credentials");
    state
        .sts
        .issued
        .insert(issued.access_key_id.clone(), issued);
    let reply = Reply {
        status: 200,
        content_type: JSON,
        body: body.to_string(),
        retry_after_ms: None,
        outcome: counts::ACCEPTED.to_owned(),
        delay_ms: 0,
    };
    (reply, action_name, role)
}

fn truncate_half(text: &str) -> &str {
    crate::text::prefix(text, text.len() / 2)
}

fn admin_error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": message.to_string() }))).into_response()
}

fn admin_json(status: StatusCode, value: impl Serialize) -> Response {
    (status, axum::Json(value)).into_response()
}

/// Admin bodies are read by hand so a missing `content-type` is no error and every problem is
/// reported as JSON.
fn parse_admin<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(body)
        .map_err(|e| admin_error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

async fn admin_add_run(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let run: RunScript = match parse_admin(&body) {
        Ok(run) => run,
        Err(resp) => return resp,
    };
    if let Err(e) = run.validate() {
        return admin_error(StatusCode::BAD_REQUEST, format!("invalid run script: {e}"));
    }
    let stored = StoredRun {
        run,
        started_at: Timestamp::now(),
        cancels: 0,
    };
    let shown = serde_json::to_value(stored.info()).unwrap_or(Value::Null);
    shared
        .lock()
        .runs
        .insert(stored.run.job_run_id.clone(), stored);
    admin_json(StatusCode::CREATED, shown)
}

async fn admin_list_runs(State(shared): State<Arc<Shared>>) -> Response {
    let state = shared.lock();
    let mut runs: Vec<RunInfo<'_>> = state.runs.values().map(StoredRun::info).collect();
    runs.sort_by(|a, b| a.run.job_run_id.cmp(&b.run.job_run_id));
    admin_json(StatusCode::OK, runs)
}

async fn admin_remove_run(
    State(shared): State<Arc<Shared>>,
    Path(job_run_id): Path<String>,
) -> Response {
    if shared.lock().runs.remove(&job_run_id).is_some() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        admin_error(StatusCode::NOT_FOUND, format!("no run {job_run_id:?}"))
    }
}

async fn admin_add_fault(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let fault: Fault = match parse_admin(&body) {
        Ok(fault) => fault,
        Err(resp) => return resp,
    };
    if let Err(e) = fault.validate() {
        return admin_error(StatusCode::BAD_REQUEST, format!("invalid fault: {e}"));
    }
    let mut state = shared.lock();
    let id = state.faults.inject(fault);
    let active = state.faults.list().into_iter().find(|f| f.id == id);
    admin_json(StatusCode::CREATED, active)
}

async fn admin_list_faults(State(shared): State<Arc<Shared>>) -> Response {
    admin_json(StatusCode::OK, shared.lock().faults.list())
}

async fn admin_clear_faults(State(shared): State<Arc<Shared>>) -> Response {
    shared.lock().faults.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_remove_fault(State(shared): State<Arc<Shared>>, Path(id): Path<u64>) -> Response {
    if shared.lock().faults.remove(id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        admin_error(StatusCode::NOT_FOUND, format!("no fault {id}"))
    }
}

async fn admin_calls(State(shared): State<Arc<Shared>>) -> Response {
    admin_json(StatusCode::OK, shared.lock().counts.clone())
}

async fn admin_reset_counts(State(shared): State<Arc<Shared>>) -> Response {
    shared.lock().counts = CallCounts::default();
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_add_oidc_role(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let role: OidcRole = match parse_admin(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    // Echo without the token.
    let shown = json!({"roleArn": role.role_arn, "oidcProviderArn": role.oidc_provider_arn});
    shared.lock().sts.config.upsert_oidc(role);
    admin_json(StatusCode::CREATED, shown)
}

async fn admin_add_trust(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let trust: RoleTrust = match parse_admin(&body) {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    let shown = serde_json::to_value(&trust).unwrap_or(Value::Null);
    shared.lock().sts.config.upsert_trust(trust);
    admin_json(StatusCode::CREATED, shown)
}

async fn admin_add_account(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let account: Account = match parse_admin(&body) {
        Ok(account) => account,
        Err(resp) => return resp,
    };
    if account.access_key_id.is_empty() {
        return admin_error(StatusCode::BAD_REQUEST, "accessKeyId must not be empty");
    }
    // Echo what was stored, never the secret or the token.
    let shown = json!({
        "accessKeyId": account.access_key_id,
        "securityToken": account.security_token.is_some(),
        "expiresAt": account.expires_at.map(|t| t.to_string()),
        "active": account.active,
    });
    shared.lock().accounts.insert(account);
    admin_json(StatusCode::CREATED, shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params() {
        assert_eq!(
            query_param("regionId=cn-hangzhou", "regionId").as_deref(),
            Some("cn-hangzhou")
        );
        assert_eq!(
            query_param("a=1&regionId=x%20y", "regionId").as_deref(),
            Some("x y")
        );
        assert_eq!(query_param("regionId", "regionId").as_deref(), Some(""));
        assert_eq!(query_param("region=x", "regionId"), None);
        assert_eq!(query_param("", "regionId"), None);
    }

    #[test]
    fn truncation_keeps_utf8_valid() {
        assert_eq!(truncate_half("{\"a\":1}"), "{\"a");
        assert_eq!(truncate_half("üü"), "ü");
        assert_eq!(truncate_half("aü"), "a");
        assert_eq!(truncate_half(""), "");
    }
}
