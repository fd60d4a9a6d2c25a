//! The reconciler against a recording stand-in for the Kubernetes API (tower-test) and a scripted
//! `JobRunService`, on tokio's paused clock: every request it sends is asserted, in order, so
//! "no call", "no write" and "no event" are proven by what was recorded, not by sleeping.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use sparkjobrun_operator::client::{
    ApiError, ApiErrorKind, GetJobRunRequest, JobRunService, ListJobRunsRequest,
};
use sparkjobrun_operator::config::Settings;
use sparkjobrun_operator::crd::{
    CredentialsSource, SecretReference, SparkJobRunRef, SparkJobRunRefSpec, SparkJobRunRefStatus,
};
use sparkjobrun_operator::credentials::{CredentialProvider, CredentialsError};
use sparkjobrun_operator::error::Error;
use sparkjobrun_operator::reconcile::fence::Fence;
use sparkjobrun_operator::reconcile::{self, Context};
use sparkjobrun_operator::signer::Credentials;
use sparkjobrun_operator::wire::{JobRun, ListJobRunsResponse, RunLog};

const STATUS_PATH: &str = "/apis/emrspark.io/v1alpha1/namespaces/data/sparkjobruns/run/status";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/data/events";
const RESOURCE_VERSION: &str = "41";

/// One request the reconciler sent to the API server.
#[derive(Debug, Clone)]
struct Sent {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    body: Value,
}

impl Sent {
    fn is_status_apply(&self) -> bool {
        self.method == "PATCH" && self.path == STATUS_PATH
    }

    fn is_event(&self) -> bool {
        self.method == "POST" && self.path == EVENTS_PATH
    }
}

type Answer = Box<dyn Fn(&Sent) -> (u16, Value) + Send + Sync>;

/// A kube client whose every request is recorded and answered by `answer`.
fn api_server(answer: Answer) -> (kube::Client, Arc<Mutex<Vec<Sent>>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let log = sent.clone();
    tokio::spawn(async move {
        while let Some((request, respond)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let query = parts
                .uri
                .query()
                .unwrap_or_default()
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let request = Sent {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query,
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (code, reply) = answer(&request);
            log.lock().expect("log").push(request);
            let response = Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&reply).unwrap_or_default()))
                .expect("response");
            respond.send_response(response);
        }
    });
    (kube::Client::new(service, "default"), sent)
}

/// What a real API server answers: the stored object with the applied status, events echoed.
fn accepting(object: SparkJobRunRef) -> Answer {
    Box::new(move |sent| {
        if sent.is_status_apply() {
            let mut stored = serde_json::to_value(&object).unwrap_or_default();
            stored["status"] = sent.body["status"].clone();
            (200, stored)
        } else if sent.is_event() {
            (201, sent.body.clone())
        } else {
            (404, status_body(404, "NotFound", "not served by this test"))
        }
    })
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
           "reason": reason, "message": message})
}

/// A `JobRunService` that answers from a script and records which run was asked for with
/// which access key. An unscripted call is an error answer the test will see.
#[derive(Default, Clone)]
struct Service {
    answers: Arc<Mutex<VecDeque<Result<JobRun, ApiError>>>>,
    /// Answers to CancelJobRun, in order.
    cancels: Arc<Mutex<VecDeque<Result<(), ApiError>>>>,
    /// Answers to ListJobRuns, in order.
    lists: Arc<Mutex<VecDeque<Result<ListJobRunsResponse, ApiError>>>>,
    calls: Arc<Mutex<Vec<(String, String)>>>,
}

impl Service {
    fn answering(answers: Vec<Result<JobRun, ApiError>>) -> Self {
        Self {
            answers: Arc::new(Mutex::new(answers.into())),
            cancels: Arc::default(),
            lists: Arc::default(),
            calls: Arc::default(),
        }
    }

    fn calls(&self) -> usize {
        self.calls.lock().expect("calls").len()
    }
}

impl JobRunService for Service {
    async fn get_job_run(
        &self,
        req: &GetJobRunRequest,
        creds: &Credentials,
    ) -> Result<JobRun, ApiError> {
        self.calls
            .lock()
            .expect("calls")
            .push((req.job_run_id.clone(), creds.access_key_id.clone()));
        let next = self.answers.lock().expect("answers").pop_front();
        next.unwrap_or_else(|| Err(api_error(ApiErrorKind::InvalidResponse, None, "unscripted")))
    }

    async fn list_job_runs(
        &self,
        req: &ListJobRunsRequest,
        _creds: &Credentials,
    ) -> Result<ListJobRunsResponse, ApiError> {
        self.calls
            .lock()
            .expect("calls")
            .push((format!("list {}", req.workspace_id), String::new()));
        let next = self.lists.lock().expect("lists").pop_front();
        next.unwrap_or_else(|| Err(api_error(ApiErrorKind::InvalidResponse, None, "unscripted")))
    }

    async fn cancel_job_run(
        &self,
        req: &GetJobRunRequest,
        creds: &Credentials,
    ) -> Result<(), ApiError> {
        self.calls.lock().expect("calls").push((
            format!("cancel {}", req.job_run_id),
            creds.access_key_id.clone(),
        ));
        let next = self.cancels.lock().expect("cancels").pop_front();
        next.unwrap_or_else(|| Err(api_error(ApiErrorKind::InvalidResponse, None, "unscripted")))
    }
}

/// Operator credentials that count how often they were told they expired.
#[derive(Default)]
struct Provider {
    invalidated: AtomicUsize,
}

impl CredentialProvider for Provider {
    fn credentials(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Credentials, CredentialsError>> + Send + '_>> {
        let generation = self.invalidated.load(Ordering::SeqCst);
        Box::pin(async move {
            Ok(Credentials::new(
                format!("STS.key{generation}"),
                "secret-value",
            ))
        })
    }

    fn source(&self) -> &'static str {
        "test"
    }

    fn invalidate(&self) {
        self.invalidated.fetch_add(1, Ordering::SeqCst);
    }
}

fn api_error(kind: ApiErrorKind, code: Option<&str>, message: &str) -> ApiError {
    ApiError {
        kind,
        http_status: Some(400),
        code: code.map(str::to_owned),
        message: message.to_owned(),
        request_id: Some("req-1".into()),
        retry_after: None,
    }
}

fn running() -> JobRun {
    JobRun {
        state: Some("Running".into()),
        name: Some("nightly".into()),
        log: Some(RunLog {
            driver_std_error: Some("oss://logs/stderr".into()),
            ..RunLog::default()
        }),
        ..JobRun::default()
    }
}

fn object(status: Option<SparkJobRunRefStatus>) -> SparkJobRunRef {
    let mut o = SparkJobRunRef::new(
        "run",
        SparkJobRunRefSpec {
            workspace_id: "w-1".into(),
            job_run_id: "jr-1".into(),
            region_id: Some("cn-hangzhou".into()),
            ..SparkJobRunRefSpec::default()
        },
    );
    o.metadata.namespace = Some("data".into());
    o.metadata.uid = Some("uid-1".into());
    o.metadata.generation = Some(1);
    o.metadata.resource_version = Some(RESOURCE_VERSION.into());
    o.status = status;
    o
}

trait WithCredentials {
    fn with_credentials_of(self, other: &SparkJobRunRef) -> Self;
}

impl WithCredentials for SparkJobRunRef {
    fn with_credentials_of(mut self, other: &SparkJobRunRef) -> Self {
        self.spec.credentials = other.spec.credentials.clone();
        self
    }
}

struct Harness {
    ctx: Arc<Context<Service>>,
    service: Service,
    provider: Arc<Provider>,
    sent: Arc<Mutex<Vec<Sent>>>,
}

impl Harness {
    fn new(obj: &SparkJobRunRef, answers: Vec<Result<JobRun, ApiError>>) -> Self {
        Self::with_api(accepting(obj.clone()), answers)
    }

    fn with_api(answer: Answer, answers: Vec<Result<JobRun, ApiError>>) -> Self {
        let (client, sent) = api_server(answer);
        let service = Service::answering(answers);
        let provider = Arc::new(Provider::default());
        let ctx = Context::new(
            client,
            service.clone(),
            Settings::default(),
            provider.clone(),
        );
        Self {
            ctx: Arc::new(ctx),
            service,
            provider,
            sent,
        }
    }

    /// The same API and service, with these settings.
    fn with_settings(self, settings: Settings) -> Self {
        let ctx = Arc::into_inner(self.ctx).expect("not shared yet");
        let ctx = Context::new(
            ctx.client.clone(),
            self.service.clone(),
            settings,
            self.provider.clone(),
        );
        Self {
            ctx: Arc::new(ctx),
            ..self
        }
    }

    fn fenced(self, fence: Arc<Fence>) -> Self {
        let ctx = Arc::into_inner(self.ctx).expect("not shared yet");
        Self {
            ctx: Arc::new(ctx.with_fence(fence)),
            ..self
        }
    }

    /// Puts `objs` into the watch cache the reconciler reads other refs from.
    fn cache(&self, objs: &[SparkJobRunRef]) {
        let (reader, mut writer) = kube::runtime::reflector::store();
        for obj in objs {
            writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(
                sparkjobrun_operator::reconcile::cache::CachedRef::new(obj.clone()),
            ));
        }
        self.ctx.set_stores(vec![reader]);
    }

    async fn reconcile(&self, obj: &SparkJobRunRef) -> Result<Action, Error> {
        reconcile::reconcile(Arc::new(obj.clone()), self.ctx.clone()).await
    }

    /// Every request sent so far, and forgets them.
    fn take(&self) -> Vec<Sent> {
        std::mem::take(&mut *self.sent.lock().expect("sent"))
    }

    fn due_in(&self) -> Option<Duration> {
        self.ctx
            .schedules
            .get("data/run")
            .map(|s| s.due.saturating_duration_since(tokio::time::Instant::now()))
    }
}

fn condition<'a>(status: &'a Value, type_: &str) -> (&'a str, &'a str) {
    let found = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_));
    match found {
        Some(c) => (
            c["status"].as_str().unwrap_or(""),
            c["reason"].as_str().unwrap_or(""),
        ),
        None => ("", ""),
    }
}

/// The one status apply: path, field manager, force, and the resourceVersion precondition.
fn assert_status_apply(sent: &Sent) -> SparkJobRunRefStatus {
    assert!(sent.is_status_apply(), "{} {}", sent.method, sent.path);
    assert_eq!(
        sent.query.get("fieldManager").map(String::as_str),
        Some("sparkjobrun-operator")
    );
    assert_eq!(sent.query.get("force").map(String::as_str), Some("true"));
    assert_eq!(sent.body["apiVersion"], "emrspark.io/v1alpha1");
    assert_eq!(sent.body["kind"], "SparkJobRunRef");
    assert_eq!(sent.body["metadata"]["name"], "run");
    assert_eq!(sent.body["metadata"]["resourceVersion"], RESOURCE_VERSION);
    assert!(
        sent.body.get("spec").is_none(),
        "status only: {}",
        sent.body
    );
    serde_json::from_value(sent.body["status"].clone()).expect("status decodes")
}

fn assert_event(sent: &Sent, type_: &str, reason: &str) {
    assert!(sent.is_event(), "{} {}", sent.method, sent.path);
    assert_eq!(
        (sent.body["type"].as_str(), sent.body["reason"].as_str()),
        (Some(type_), Some(reason)),
        "{}",
        sent.body
    );
    assert_eq!(sent.body["regarding"]["name"], "run");
    assert_eq!(sent.body["regarding"]["uid"], "uid-1");
    assert_eq!(sent.body["reportingController"], "sparkjobrun-operator");
}

#[tokio::test(start_paused = true)]
async fn first_observation_writes_status_then_announces_the_state() {
    let obj = object(None);
    let h = Harness::new(&obj, vec![Ok(running())]);
    h.reconcile(&obj).await.expect("reconciles");

    assert_eq!(
        *h.service.calls.lock().expect("calls"),
        vec![("jr-1".to_owned(), "STS.key0".to_owned())]
    );
    let sent = h.take();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    let status = assert_status_apply(&sent[0]);
    assert_eq!(status.state.as_deref(), Some("Running"));
    assert_eq!(status.job_run_id.as_deref(), Some("jr-1"));
    assert_eq!(status.workspace_id.as_deref(), Some("w-1"));
    assert_eq!(
        status.log.and_then(|l| l.driver_std_error).as_deref(),
        Some("oss://logs/stderr")
    );
    assert_eq!(
        condition(&sent[0].body["status"], "Synced"),
        ("True", "Polled")
    );
    assert_event(&sent[1], "Normal", "Running");
    let due = h.due_in().expect("scheduled");
    assert!(
        due >= Duration::from_secs(27) && due <= Duration::from_secs(33),
        "{due:?}"
    );
    // Per-object identities never become metric labels (cardinality, and tenants' names).
    let metrics = h.ctx.render_metrics().expect("renders");
    assert!(
        metrics.contains("sparkjobrun_status_writes_total 1"),
        "{metrics}"
    );
    for name in ["jr-1", "w-1", "\"data\"", "\"run\"", "nightly"] {
        assert!(!metrics.contains(name), "{name} in\n{metrics}");
    }
}

#[tokio::test(start_paused = true)]
async fn quiet_poll_calls_once_and_writes_nothing() {
    let first = Harness::new(&object(None), vec![Ok(running())]);
    first.reconcile(&object(None)).await.expect("first");
    let stored = assert_status_apply(&first.take()[0]);

    let obj = object(Some(stored));
    let h = Harness::new(&obj, vec![Ok(running()), Ok(running())]);
    let action = h.reconcile(&obj).await.expect("quiet poll");
    assert_eq!(h.service.calls(), 1);
    assert!(h.take().is_empty(), "no write, no event");
    // The next poll stands in the schedules' timeline, not in kube-runtime's requeue queue.
    assert_eq!(action, Action::await_change());

    // Woken early (a watch event): not due, so no call.
    let action = h.reconcile(&obj).await.expect("early");
    assert_eq!(h.service.calls(), 1, "not due yet");
    assert_eq!(action, Action::await_change());
    // Due: the timeline hands it out once the clock moved past the schedule (30 s ± 10 %).
    let started = tokio::time::Instant::now();
    let due = h.ctx.schedules.wait_due().await;
    assert_eq!(due.len(), 1);
    assert_eq!(&*due[0], "data/run");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(27) && waited <= Duration::from_secs(33),
        "{waited:?}"
    );
    h.reconcile(&obj).await.expect("due");
    assert_eq!(h.service.calls(), 2);
    assert!(h.take().is_empty());
}

#[tokio::test(start_paused = true)]
async fn terminal_object_costs_no_call_and_no_write() {
    let done = JobRun {
        state: Some("Success".into()),
        ..running()
    };
    let first = Harness::new(&object(None), vec![Ok(done)]);
    first.reconcile(&object(None)).await.expect("first");
    let stored = assert_status_apply(&first.take()[0]);
    assert_eq!(stored.terminal, Some(true));
    let metrics = first.ctx.render_metrics().expect("renders");
    assert!(
        metrics.contains("sparkjobrun_run_endings_total{outcome=\"Succeeded\"} 1"),
        "{metrics}"
    );

    let obj = object(Some(stored));
    let h = Harness::new(&obj, Vec::new());
    let action = h.reconcile(&obj).await.expect("reconciles");
    assert_eq!(action, Action::await_change());
    assert_eq!(h.service.calls(), 0);
    assert!(h.take().is_empty());
    assert_eq!(h.due_in(), None, "nothing scheduled");
}

#[tokio::test(start_paused = true)]
async fn expired_security_token_is_invalidated_and_retried_exactly_once() {
    let expired = || {
        Err(api_error(
            ApiErrorKind::Unauthorized,
            Some("InvalidSecurityToken.Expired"),
            "the token expired",
        ))
    };
    let obj = object(None);
    let h = Harness::new(&obj, vec![expired(), Ok(running())]);
    h.reconcile(&obj).await.expect("reconciles");
    assert_eq!(h.provider.invalidated.load(Ordering::SeqCst), 1);
    let keys: Vec<String> = h
        .service
        .calls
        .lock()
        .expect("calls")
        .iter()
        .map(|c| c.1.clone())
        .collect();
    assert_eq!(
        keys,
        vec!["STS.key0", "STS.key1"],
        "fresh credentials on the retry"
    );
    let sent = h.take();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        assert_status_apply(&sent[0]).state.as_deref(),
        Some("Running")
    );
    assert_event(&sent[1], "Normal", "Running");

    // Refused again after the refresh: reported, not retried a second time.
    let h = Harness::new(&obj, vec![expired(), expired(), Ok(running())]);
    h.reconcile(&obj).await.expect("reconciles");
    assert_eq!(h.service.calls(), 2);
    assert_eq!(h.provider.invalidated.load(Ordering::SeqCst), 1);
    let sent = h.take();
    assert_eq!(sent.len(), 2);
    assert_status_apply(&sent[0]);
    assert_eq!(
        condition(&sent[0].body["status"], "Synced"),
        ("False", "Unauthorized")
    );
    assert_event(&sent[1], "Warning", "Unauthorized");
}

#[tokio::test(start_paused = true)]
async fn not_found_stalls_and_rechecks_slowly() {
    let obj = object(None);
    let gone = api_error(
        ApiErrorKind::NotFound,
        Some("JobRunNotFound"),
        "no such run",
    );
    let h = Harness::new(&obj, vec![Err(gone)]);
    h.reconcile(&obj).await.expect("reconciles");
    let sent = h.take();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert_status_apply(&sent[0]);
    let status = &sent[0].body["status"];
    assert_eq!(condition(status, "Stalled"), ("True", "JobRunNotFound"));
    assert_eq!(condition(status, "Synced"), ("False", "JobRunNotFound"));
    assert_eq!(condition(status, "Ready"), ("False", "JobRunNotFound"));
    assert_event(&sent[1], "Warning", "JobRunNotFound");
    let due = h.due_in().expect("scheduled");
    assert!(
        due >= Duration::from_secs(480) && due <= Duration::from_secs(720),
        "permanent recheck, {due:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn throttled_with_retry_after_waits_at_least_that_long() {
    let obj = object(None);
    let throttled = ApiError {
        retry_after: Some(Duration::from_secs(7)),
        ..api_error(
            ApiErrorKind::Throttled,
            Some("Throttling.User"),
            "slow down",
        )
    };
    let h = Harness::new(&obj, vec![Err(throttled), Ok(running())]);
    h.reconcile(&obj).await.expect("reconciles");
    let sent = h.take();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert_status_apply(&sent[0]);
    assert_eq!(
        condition(&sent[0].body["status"], "Synced"),
        ("False", "Throttled")
    );
    assert!(
        !sent[0].body.to_string().contains("req-1"),
        "request ids stay out of status"
    );
    assert_event(&sent[1], "Warning", "Throttled");
    let due = h.due_in().expect("scheduled");
    assert!(
        due >= Duration::from_secs(7) && due <= Duration::from_millis(8_400),
        "{due:?}"
    );

    // The status write wakes the object: still inside the retry-after, so no call.
    let written = object(Some(assert_status_apply(&sent[0])));
    h.reconcile(&written).await.expect("early");
    assert_eq!(h.service.calls(), 1);
    tokio::time::advance(due).await;
    h.reconcile(&written).await.expect("due");
    assert_eq!(h.service.calls(), 2);
    let sent = h.take();
    assert_eq!(
        sent.len(),
        3,
        "recovered: one write, then its events: {sent:#?}"
    );
    assert_eq!(
        assert_status_apply(&sent[0]).state.as_deref(),
        Some("Running")
    );
    assert_event(&sent[1], "Normal", "Running");
    assert_event(&sent[2], "Normal", "Recovered");
}

#[tokio::test(start_paused = true)]
async fn stale_resource_version_is_a_conflict_and_announces_nothing() {
    let obj = object(None);
    let refuse: Answer = Box::new(|sent| {
        if sent.is_status_apply() {
            (
                409,
                status_body(409, "Conflict", "the object has been modified"),
            )
        } else {
            (201, sent.body.clone())
        }
    });
    let h = Harness::with_api(refuse, vec![Ok(running())]);
    let err = h.reconcile(&obj).await.expect_err("conflict");
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    let sent = h.take();
    assert_eq!(sent.len(), 1, "the refused apply and no event: {sent:#?}");
    assert_status_apply(&sent[0]);
}

#[tokio::test(start_paused = true)]
async fn a_closed_fence_sends_nothing() {
    let obj = object(None);
    let h = Harness::new(&obj, vec![Ok(running())]);
    h.ctx.fence.close();
    let err = h.reconcile(&obj).await.expect_err("fenced");
    assert!(matches!(err, Error::Fenced { .. }), "{err}");
    assert_eq!(h.service.calls(), 0, "no call without the lease");
    assert!(
        h.take().is_empty(),
        "no write and no event without the lease"
    );
}

#[tokio::test(start_paused = true)]
async fn a_leader_past_its_unconfirmed_lease_stops_acting() {
    let obj = object(None);
    let fence = Arc::new(Fence::leased(Duration::from_secs(10)));
    fence.confirm(tokio::time::Instant::now());
    let h = Harness::new(&obj, vec![Ok(running()), Ok(running())]).fenced(fence);
    h.reconcile(&obj).await.expect("leading");
    assert_eq!(
        h.take().len(),
        2,
        "write and event while the lease is confirmed"
    );

    // Paused (or renewals refused) past the validity: nothing more goes out.
    tokio::time::advance(Duration::from_secs(60)).await;
    let err = h.reconcile(&obj).await.expect_err("fenced");
    assert!(matches!(err, Error::Fenced { .. }), "{err}");
    assert_eq!(h.service.calls(), 1);
    assert!(h.take().is_empty());
}

/// Issue 13.2: the lease lapses while the status write is in flight (an API-server stall holds
/// it). The write landed, guarded by the resourceVersion, so no other replica can have recorded
/// this transition: its event still goes out, once, and nothing after it.
#[tokio::test(start_paused = true)]
async fn a_write_that_lands_as_the_lease_lapses_is_still_announced() {
    let obj = object(None);
    let fence = Arc::new(Fence::open());
    let lapse = fence.clone();
    let inner = accepting(obj.clone());
    let answer: Answer = Box::new(move |sent| {
        if sent.is_status_apply() {
            lapse.close();
        }
        inner(sent)
    });
    let h = Harness::with_api(answer, vec![Ok(running()), Ok(running())]).fenced(fence);
    h.reconcile(&obj).await.expect("the write landed");
    let sent = h.take();
    assert_eq!(sent.len(), 2, "the apply and its event: {sent:#?}");
    assert_status_apply(&sent[0]);
    assert_event(&sent[1], "Normal", "Running");

    let err = h.reconcile(&obj).await.expect_err("fenced");
    assert!(matches!(err, Error::Fenced { .. }), "{err}");
    assert_eq!(h.service.calls(), 1, "no call once fenced");
    assert!(h.take().is_empty());
}

/// Hardening 9.9: a Secret fixed after its key was refused is noticed within 30 s, not at the
/// 10-minute recheck of a permanent failure, and each check until then is one GET of the Secret:
/// no service call and no write until its resourceVersion changed.
#[tokio::test(start_paused = true)]
async fn a_fixed_secret_is_noticed_within_30_seconds_for_one_secret_get_per_check() {
    let version = Arc::new(Mutex::new("1".to_owned()));
    let v = version.clone();
    let mut obj = object(None);
    obj.spec.credentials = Some(CredentialsSource {
        secret_ref: Some(SecretReference { name: "ak".into() }),
        ..CredentialsSource::default()
    });
    let accept = accepting(obj.clone());
    let answer: Answer = Box::new(move |sent| {
        if sent.method == "GET" && sent.path == "/api/v1/namespaces/data/secrets/ak" {
            let rv = v.lock().expect("version").clone();
            (
                200,
                json!({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"name": "ak", "namespace": "data", "resourceVersion": rv,
                                    "labels": {"emrspark.io/credentials": "true"}},
                       "data": {"accessKeyId": "QUtJRA==", "accessKeySecret": "c2VjcmV0"}}),
            )
        } else {
            accept(sent)
        }
    });
    let refused = api_error(
        ApiErrorKind::Unauthorized,
        Some("InvalidAccessKeyId.NotFound"),
        "no such key",
    );
    let h = Harness::with_api(answer, vec![Err(refused), Ok(running())]);
    let action = h.reconcile(&obj).await.expect("reconciles");
    let sent = h.take();
    assert_eq!(sent.len(), 3, "{sent:#?}");
    let stored = assert_status_apply(&sent[1]);
    assert_eq!(
        condition(&sent[1].body["status"], "Synced"),
        ("False", "Unauthorized")
    );
    assert_eq!(action, Action::requeue(Duration::from_secs(20)));
    assert!(
        h.due_in().expect("scheduled") >= Duration::from_secs(480),
        "the service is still asked again only at the permanent recheck"
    );

    let obj = object(Some(stored)).with_credentials_of(&obj);
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(20)).await;
        let action = h.reconcile(&obj).await.expect("recheck");
        assert_eq!(action, Action::requeue(Duration::from_secs(20)));
        let sent = h.take();
        assert_eq!(sent.len(), 1, "{sent:#?}");
        assert_eq!(
            (sent[0].method.as_str(), sent[0].path.as_str()),
            ("GET", "/api/v1/namespaces/data/secrets/ak")
        );
        assert_eq!(
            h.service.calls(),
            1,
            "no service call while the Secret is unchanged"
        );
    }

    *version.lock().expect("version") = "2".into();
    tokio::time::advance(Duration::from_secs(20)).await;
    h.reconcile(&obj).await.expect("after the fix");
    assert_eq!(h.service.calls(), 2, "asked again once the Secret changed");
    let sent = h.take();
    assert_eq!(
        sent.len(),
        5,
        "two GETs (check, credentials), apply, two events: {sent:#?}"
    );
    assert_eq!(
        assert_status_apply(&sent[2]).state.as_deref(),
        Some("Running")
    );
    assert_event(&sent[3], "Normal", "Running");
    assert_event(&sent[4], "Normal", "Recovered");
    assert!(
        h.due_in().is_some_and(|d| d <= Duration::from_secs(33)),
        "polled as running"
    );
    let action = h.reconcile(&obj).await.expect("woken by its own write");
    assert!(
        h.take().is_empty(),
        "no Secret check once the failure is over: {action:?}"
    );
}

/// Hardening 9.8(b): naming a Secret is not enough. A tenant who cannot read Secrets must not
/// get the operator to use one its owner did not mark for it (a confused deputy).
#[tokio::test(start_paused = true)]
async fn a_secret_is_used_only_when_it_opts_in() {
    let secret = |opted_in: bool| {
        let mut meta = json!({"name": "ak", "namespace": "data"});
        if opted_in {
            meta["labels"] = json!({"emrspark.io/credentials": "true"});
        }
        // "QUtJRA==" is base64 of "AKID", "c2VjcmV0" of "secret".
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta,
               "data": {"accessKeyId": "QUtJRA==", "accessKeySecret": "c2VjcmV0"}})
    };
    for opted_in in [false, true] {
        let mut obj = object(None);
        obj.spec.credentials = Some(CredentialsSource {
            secret_ref: Some(SecretReference { name: "ak".into() }),
            ..CredentialsSource::default()
        });
        let accept = accepting(obj.clone());
        let answer: Answer = Box::new(move |sent| {
            if sent.method == "GET" && sent.path == "/api/v1/namespaces/data/secrets/ak" {
                (200, secret(opted_in))
            } else {
                accept(sent)
            }
        });
        let h = Harness::with_api(answer, vec![Ok(running())]);
        h.reconcile(&obj).await.expect("reconciles");
        let sent = h.take();
        assert_eq!(sent[0].method, "GET", "{sent:#?}");
        let status = &sent[1].body["status"];
        if opted_in {
            assert_eq!(h.service.calls.lock().expect("calls")[0].1, "AKID");
            assert_eq!(condition(status, "Synced"), ("True", "Polled"));
        } else {
            assert_eq!(h.service.calls(), 0, "the Secret's key was not used");
            assert_eq!(condition(status, "Synced"), ("False", "SecretNotOptedIn"));
            let message = status["conditions"].to_string();
            assert!(message.contains("emrspark.io/credentials"), "{message}");
            assert!(
                !message.contains("accessKeyId"),
                "no word on what the Secret holds: {message}"
            );
        }
    }
}

const OBJECT_PATH: &str = "/apis/emrspark.io/v1alpha1/namespaces/data/sparkjobruns/run";
const FINALIZER: &str = "emrspark.io/cancel-on-delete";

/// What a real API server answers, also to a finalizer patch of the object itself.
fn accepting_finalizers(object: SparkJobRunRef) -> Answer {
    let status = accepting(object.clone());
    Box::new(move |sent| {
        if sent.method == "PATCH" && sent.path == OBJECT_PATH {
            let mut stored = serde_json::to_value(&object).unwrap_or_default();
            stored["metadata"]["finalizers"] = sent.body["metadata"]["finalizers"].clone();
            (200, stored)
        } else {
            status(sent)
        }
    })
}

fn cancelling(allow: bool) -> Settings {
    Settings {
        allow_cancel: allow,
        ..Settings::default()
    }
}

fn harness_with(
    obj: &SparkJobRunRef,
    settings: Settings,
    answers: Vec<Result<JobRun, ApiError>>,
) -> Harness {
    Harness::with_api(accepting_finalizers(obj.clone()), answers).with_settings(settings)
}

fn deleted_with_finalizer(state: &str) -> SparkJobRunRef {
    let mut status = SparkJobRunRefStatus {
        state: Some(state.into()),
        job_run_id: Some("jr-1".into()),
        workspace_id: Some("w-1".into()),
        ..SparkJobRunRefStatus::default()
    };
    status.terminal = Some(matches!(state, "Success" | "Failed" | "Cancelled"));
    let mut obj = object(Some(status));
    obj.spec.cancel_on_delete = Some(true);
    obj.metadata.finalizers = Some(vec!["other.io/keep".into(), FINALIZER.into()]);
    obj.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::UNIX_EPOCH,
    ));
    obj
}

/// The finalizer patch: only ours removed, guarded by the resourceVersion it was computed from.
fn assert_finalizers_patch(sent: &Sent, want: &[&str]) {
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("PATCH", OBJECT_PATH)
    );
    assert_eq!(sent.body["metadata"]["resourceVersion"], RESOURCE_VERSION);
    assert_eq!(sent.body["metadata"]["finalizers"], json!(want));
}

/// 11.5: a deleted ref whose run is known to have ended is released with one patch: no
/// service call, no event.
#[tokio::test(start_paused = true)]
async fn deleted_ref_of_an_ended_run_is_released_without_a_call() {
    let obj = deleted_with_finalizer("Success");
    let h = harness_with(&obj, cancelling(true), vec![]);
    h.reconcile(&obj).await.expect("released");
    let sent = h.take();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_finalizers_patch(&sent[0], &["other.io/keep"]);
    assert_eq!(h.service.calls(), 0);
}

/// 11.5: a deleted ref whose run is active: one GetJobRun, one CancelJobRun; while the run still
/// shows Running the cancel is not repeated; once it shows Cancelling the finalizer goes.
#[tokio::test(start_paused = true)]
async fn an_active_run_is_cancelled_once_then_released() {
    let obj = deleted_with_finalizer("Running");
    let cancelling_run = JobRun {
        state: Some("Cancelling".into()),
        ..running()
    };
    let h = harness_with(
        &obj,
        cancelling(true),
        vec![Ok(running()), Ok(running()), Ok(cancelling_run)],
    );
    h.service.cancels.lock().expect("cancels").push_back(Ok(()));
    h.reconcile(&obj).await.expect("cancel");
    let first = h.take();
    assert!(
        first.iter().all(Sent::is_event),
        "only the CancelRequested event: {first:?}"
    );
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].body["reason"], "CancelRequested");
    tokio::time::advance(Duration::from_secs(1)).await;
    h.reconcile(&obj).await.expect("still running");
    assert!(h.take().is_empty(), "no second cancel, no write");
    tokio::time::advance(Duration::from_secs(1)).await;
    h.reconcile(&obj).await.expect("cancelling");
    let last = h.take();
    assert_eq!(last.len(), 1, "{last:?}");
    assert_finalizers_patch(&last[0], &["other.io/keep"]);
    let calls: Vec<String> = h
        .service
        .calls
        .lock()
        .expect("calls")
        .iter()
        .map(|(what, _)| what.clone())
        .collect();
    assert_eq!(calls, ["jr-1", "cancel jr-1", "jr-1", "jr-1"]);
}

/// 11.5: without --allow-cancel the field is refused with one Warning event per ref, however
/// often the ref is reconciled; no finalizer is added.
#[tokio::test(start_paused = true)]
async fn refused_cancel_on_delete_is_told_once() {
    let mut obj = object(None);
    obj.spec.cancel_on_delete = Some(true);
    let h = harness_with(&obj, cancelling(false), vec![Ok(running()), Ok(running())]);
    h.reconcile(&obj).await.expect("first");
    tokio::time::advance(Duration::from_secs(60)).await;
    h.reconcile(&obj).await.expect("second");
    let sent = h.take();
    let refusals = sent
        .iter()
        .filter(|s| s.is_event() && s.body["reason"] == "CancelNotAllowed")
        .count();
    assert_eq!(refusals, 1, "{sent:?}");
    assert!(
        !sent.iter().any(|s| s.path == OBJECT_PATH),
        "no finalizer patch"
    );
    assert_eq!(h.service.calls(), 2, "the run is still mirrored");
}

/// A ref whose stored status is what the operator wrote for `running()` in `state`.
fn named(name: &str, jr: &str, state: &str) -> SparkJobRunRef {
    use sparkjobrun_operator::mapping::{PollOutcome, StatusContext, next_status};
    let answer = running().with_state(state);
    let status = next_status(
        None,
        PollOutcome::Run(&answer),
        StatusContext {
            generation: Some(1),
            workspace_id: "w-1",
            job_run_id: jr,
            region_id: Some("cn-hangzhou"),
        },
        &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::from_second(1_700_000_000).expect("ts"),
        ),
    );
    let mut o = object(Some(status));
    o.metadata.name = Some(name.into());
    o.spec.job_run_id = jr.into();
    o
}

/// Accepts every status apply of namespace `data`, echoing it.
fn accepting_any() -> Answer {
    Box::new(|sent| {
        if sent.method == "PATCH" && sent.path.ends_with("/status") {
            (
                200,
                json!({"apiVersion": "emrspark.io/v1alpha1", "kind": "SparkJobRunRef",
                         "metadata": {"name": "x", "namespace": "data"},
                         "spec": {"workspaceId": "w-1", "jobRunId": "jr-1"},
                         "status": sent.body["status"]}),
            )
        } else if sent.is_event() {
            (201, sent.body.clone())
        } else {
            (404, status_body(404, "NotFound", "not served by this test"))
        }
    })
}

fn listed(jr: &str, state: &str) -> sparkjobrun_operator::wire::ListedRun {
    sparkjobrun_operator::wire::ListedRun {
        run: JobRun {
            job_run_id: Some(jr.into()),
            workspace_id: Some("w-1".into()),
            ..running()
        }
        .with_state(state),
        cu_hours: Some(0.5),
        ..Default::default()
    }
}

trait WithState {
    fn with_state(self, state: &str) -> Self;
}

impl WithState for JobRun {
    fn with_state(mut self, state: &str) -> Self {
        self.state = Some(state.into());
        self
    }
}

fn batched_harness(
    mode: sparkjobrun_operator::reconcile::shared::Mode,
    answers: Vec<Result<JobRun, ApiError>>,
) -> Harness {
    Harness::with_api(accepting_any(), answers).with_settings(Settings {
        observe: mode,
        ..Settings::default()
    })
}

fn calls_of(h: &Harness) -> Vec<String> {
    h.service
        .calls
        .lock()
        .expect("calls")
        .iter()
        .map(|(what, _)| what.clone())
        .collect()
}

/// Issue 10.1: in batched mode one ListJobRuns serves five due refs of one workspace: for the
/// unchanged it is their poll (scheduled, nothing kept, no write), the one it changes takes it
/// without a call and writes once; a run missing from the list costs one GetJobRun for its final
/// answer. Per-run mode makes one GetJobRun per ref.
#[tokio::test(start_paused = true)]
async fn one_list_serves_a_group_and_a_missing_run_gets_its_final_answer() {
    use sparkjobrun_operator::reconcile::shared::Mode;
    // r3's status still says Pending: the list's Running changes it.
    let refs: Vec<SparkJobRunRef> = (1..=5)
        .map(|i| {
            let state = if i == 3 { "Pending" } else { "Running" };
            named(&format!("r{i}"), &format!("jr-{i}"), state)
        })
        .collect();
    let h = batched_harness(Mode::Batched, vec![Ok(running().with_state("Success"))]);
    *h.service.lists.lock().expect("lists") = VecDeque::from([
        Ok(sparkjobrun_operator::wire::ListJobRunsResponse {
            job_runs: (1..=4)
                .map(|i| listed(&format!("jr-{i}"), "Running"))
                .collect(),
            next_token: Some(String::new()),
            ..Default::default()
        }),
        Ok(sparkjobrun_operator::wire::ListJobRunsResponse {
            job_runs: vec![listed("jr-5", "Success")],
            ..Default::default()
        }),
    ]);
    for obj in &refs {
        h.ctx.observations.join(
            &format!("data/{}", obj.metadata.name.as_deref().unwrap_or_default()),
            &sparkjobrun_operator::reconcile::shared::GroupKey::of(
                obj,
                &sparkjobrun_operator::reconcile::observe::resolve_request(obj, &h.ctx.settings)
                    .expect("request"),
            ),
            &obj.spec.job_run_id,
        );
    }
    h.cache(&refs);
    h.reconcile(&refs[0]).await.expect("lists");
    let group = sparkjobrun_operator::reconcile::shared::GroupKey::of(
        &refs[0],
        &sparkjobrun_operator::reconcile::observe::resolve_request(&refs[0], &h.ctx.settings)
            .expect("request"),
    );
    assert_eq!(
        h.ctx.observations.entries(&group),
        1,
        "kept only for the ref it changes; for the unchanged the list was their poll"
    );
    assert!(h.ctx.has_schedule("data/r2") && h.ctx.has_schedule("data/r4"));
    assert!(h.ctx.observations.has_news("data/r3"));
    assert!(!h.ctx.observations.has_news("data/r2"));
    for obj in &refs[1..4] {
        h.reconcile(obj).await.expect("reconciles");
    }
    assert_eq!(calls_of(&h), ["list w-1"], "one list for four refs");
    assert_eq!(h.ctx.observations.entries(&group), 0, "r3 took it");
    // Someone else stands in the rate limit's line: the final answer of a run the list found
    // gone completes that list's observation and does not queue behind them.
    let now = tokio::time::Instant::now();
    while matches!(
        h.ctx.admission.admit("other", "other/x", now, now),
        sparkjobrun_operator::reconcile::admission::Admit::Go { .. }
    ) {}
    h.reconcile(&refs[4]).await.expect("missing one");
    assert_eq!(
        calls_of(&h),
        ["list w-1", "jr-5", "list w-1"],
        "the run missing from the list: its final answer, then its usage"
    );
    let sent = h.take();
    let writes: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.path.ends_with("/status"))
        .collect();
    assert_eq!(
        writes.len(),
        2,
        "only r3 and the ended run changed: {sent:?}"
    );
    assert_eq!(writes[0].body["status"]["state"], "Running");
    assert_eq!(writes[1].body["status"]["state"], "Success");
    assert_eq!(writes[1].body["status"]["usage"]["cuHours"], 0.5);

    let per_run = batched_harness(Mode::PerRun, (0..5).map(|_| Ok(running())).collect());
    for obj in &refs {
        per_run.reconcile(obj).await.expect("reconciles");
    }
    assert_eq!(calls_of(&per_run), ["jr-1", "jr-2", "jr-3", "jr-4", "jr-5"]);
}

/// Issue 10 (found by the 10 000-ref benchmark): a throttled page of a list is asked again
/// after a short wait instead of failing the group's whole round (which cost the pages read,
/// a backoff of the group and, for every ref waiting on it, a late look).
#[tokio::test(start_paused = true)]
async fn a_throttled_page_is_asked_again_and_the_round_completes() {
    use sparkjobrun_operator::reconcile::shared::{GroupKey, Mode};
    let refs: Vec<SparkJobRunRef> = (1..=4)
        .map(|i| named(&format!("r{i}"), &format!("jr-{i}"), "Running"))
        .collect();
    let h = batched_harness(Mode::Batched, Vec::new());
    let page = |ids: std::ops::RangeInclusive<i32>, token: Option<&str>| {
        Ok(sparkjobrun_operator::wire::ListJobRunsResponse {
            job_runs: ids.map(|i| listed(&format!("jr-{i}"), "Running")).collect(),
            next_token: token.map(str::to_owned),
            ..Default::default()
        })
    };
    *h.service.lists.lock().expect("lists") = VecDeque::from([
        page(1..=2, Some("sim-2")),
        Err(api_error(
            ApiErrorKind::Throttled,
            Some("Throttling.User"),
            "Request was denied due to user flow control.",
        )),
        page(3..=4, None),
    ]);
    for obj in &refs {
        let request =
            sparkjobrun_operator::reconcile::observe::resolve_request(obj, &h.ctx.settings)
                .expect("request");
        h.ctx.observations.join(
            &format!("data/{}", obj.metadata.name.as_deref().unwrap_or_default()),
            &GroupKey::of(obj, &request),
            &obj.spec.job_run_id,
        );
    }
    h.cache(&refs);
    for obj in &refs {
        h.reconcile(obj).await.expect("reconciles");
    }
    assert_eq!(
        calls_of(&h),
        ["list w-1", "list w-1", "list w-1"],
        "page 1, page 2 throttled, page 2 again; the other refs take the list's answer"
    );
    assert!(h.take().is_empty(), "nothing changed: no write, no event");
}

/// Issue 10.2: two refs of the same run share its observation: once both follow the run (after
/// their first look), one call per round serves both; a ref whose caller stopped calling calls
/// itself.
#[tokio::test(start_paused = true)]
async fn refs_of_one_run_share_one_call() {
    use sparkjobrun_operator::reconcile::shared::Mode;
    let a = named("a", "jr-1", "Running");
    let b = named("b", "jr-1", "Running");
    let h = batched_harness(Mode::PerRun, (0..6).map(|_| Ok(running())).collect());
    h.cache(&[a.clone(), b.clone()]);
    h.reconcile(&a).await.expect("a");
    h.reconcile(&b).await.expect("b");
    let first_round = calls_of(&h).len();
    assert!(first_round <= 2, "{first_round}");
    tokio::time::advance(Duration::from_secs(40)).await;
    h.reconcile(&a).await.expect("a again");
    h.reconcile(&b).await.expect("b again");
    assert_eq!(calls_of(&h).len(), first_round + 1, "one call for both");
    assert!(h.take().is_empty(), "nothing changed: no write, no event");
    // Whichever called polls first (30 s ± 10 %) and serves the other, which is due a quarter
    // interval later (FOLLOWER_SLACK): 33.5 s on, the caller is due and the other is not yet.
    tokio::time::advance(Duration::from_millis(33_500)).await;
    h.reconcile(&a).await.expect("a, next round");
    h.reconcile(&b).await.expect("b, next round");
    assert_eq!(
        calls_of(&h).len(),
        first_round + 2,
        "one call for both again"
    );
    // Without its caller, a ref is due at the latest 41.25 s after the last call.
    tokio::time::advance(Duration::from_millis(41_500)).await;
    h.reconcile(&b).await.expect("b, stale");
    assert_eq!(
        calls_of(&h).len(),
        first_round + 3,
        "stale after the interval: a call"
    );
}
