//! The simulator over real HTTP: started in-process, called with `reqwest`, every request signed
//! with the operator's own signer.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sparkjobrun_operator::kit::simulator::{
    Account, Fault, FaultKind, Phase, RunScript, Simulator, SimulatorConfig, SimulatorHandle,
};
use sparkjobrun_operator::signer::{self, Credentials, RequestToSign, sign_request};
use sparkjobrun_operator::wire::GetJobRunResponse;

const WS: &str = "w-d2d82aa09155sim0";
const REGION: &str = "cn-hangzhou";

fn creds() -> Credentials {
    Credentials::new("LTAI5tTestKey", "test-secret")
}

fn sts_creds(token: &str) -> Credentials {
    Credentials::new("STS.TestKey", "sts-secret").with_security_token(token)
}

/// A client that talks to the simulator directly, whatever proxy the environment names.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

struct Sim {
    handle: SimulatorHandle,
    client: reqwest::Client,
}

/// A request as signed, which a test may still alter before sending.
#[derive(Clone)]
struct Call {
    method: reqwest::Method,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Call {
    fn set(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(n, _)| n != name);
        self.headers.push((name.into(), value.into()));
        self
    }

    fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| n != name);
        self
    }

    fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

/// What to sign; `Default` is a correct GetJobRun for `jr-1` in `WS`, `REGION`, now.
struct Spec<'a> {
    creds: Credentials,
    method: &'a str,
    path: String,
    query: Vec<(String, String)>,
    action: &'a str,
    version: &'a str,
    date: String,
    body: &'a [u8],
}

impl Default for Spec<'_> {
    fn default() -> Self {
        Self {
            creds: creds(),
            method: "GET",
            path: job_run_path(WS, "jr-1"),
            query: vec![("regionId".into(), REGION.into())],
            action: "GetJobRun",
            version: "2023-08-08",
            date: signer::format_acs_date(jiff::Timestamp::now()),
            body: b"",
        }
    }
}

fn job_run_path(workspace_id: &str, job_run_id: &str) -> String {
    format!(
        "/api/v1/workspaces/{}/jobRuns/{}",
        signer::percent_encode(workspace_id),
        signer::percent_encode(job_run_id)
    )
}

fn for_run(job_run_id: &str) -> Spec<'static> {
    Spec {
        path: job_run_path(WS, job_run_id),
        ..Spec::default()
    }
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
    elapsed: Duration,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    fn code(&self) -> String {
        self.json()["Code"].as_str().unwrap_or_default().to_owned()
    }

    fn state(&self) -> String {
        let resp: GetJobRunResponse = serde_json::from_str(&self.text).expect("GetJobRun answer");
        resp.job_run.and_then(|r| r.state).unwrap_or_default()
    }
}

impl Sim {
    async fn start() -> Self {
        let config = SimulatorConfig::default()
            .with_account(Account::new("LTAI5tTestKey", "test-secret"))
            .with_account(Account::new("LTAI5tOffKey", "off-secret").inactive())
            .with_account(
                Account::new("STS.TestKey", "sts-secret").with_security_token("token-ok", None),
            )
            .with_account(
                Account::new("STS.OldKey", "old-secret").with_security_token(
                    "token-old",
                    Some(jiff::Timestamp::now() - jiff::SignedDuration::from_mins(1)),
                ),
            )
            .with_run(
                RunScript::new(WS, "jr-1")
                    .holding("Running")
                    .in_region(REGION),
            );
        let handle = Simulator::start(config).await.expect("simulator starts");
        Self {
            handle,
            client: client(),
        }
    }

    fn host(&self) -> String {
        self.handle
            .endpoint()
            .trim_start_matches("http://")
            .to_owned()
    }

    fn sign(&self, spec: Spec<'_>) -> Call {
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let host = self.host();
        let signed = sign_request(
            &RequestToSign {
                method: spec.method,
                host: &host,
                path: &spec.path,
                query: &spec.query,
                action: spec.action,
                version: spec.version,
                body: spec.body,
                content_type: None,
            },
            &spec.creds,
            &spec.date,
            &nonce,
        );
        Call {
            method: spec.method.parse().expect("method"),
            path: spec.path,
            query: signed.query,
            headers: signed.headers,
            body: spec.body.to_vec(),
        }
    }

    async fn send(&self, call: Call) -> Answer {
        let mut url = format!("{}{}", self.handle.endpoint(), call.path);
        if !call.query.is_empty() {
            url.push('?');
            url.push_str(&call.query);
        }
        let mut req = self.client.request(call.method, &url).body(call.body);
        for (name, value) in &call.headers {
            // reqwest sends the same host itself.
            if name != "host" {
                req = req.header(name, value);
            }
        }
        let started = Instant::now();
        let resp = req.send().await.expect("request reaches the simulator");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        Answer {
            status,
            headers,
            text,
            elapsed: started.elapsed(),
        }
    }

    async fn get(&self, spec: Spec<'_>) -> Answer {
        let call = self.sign(spec);
        self.send(call).await
    }

    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.handle.endpoint()));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("admin request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("admin body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

fn assert_error(answer: &Answer, status: u16, code: &str, host: &str, what: &str) {
    assert_eq!(answer.status, status, "{what}: {}", answer.text);
    let body = answer.json();
    assert_eq!(body["Code"], code, "{what}: {}", answer.text);
    let request_id = body["RequestId"].as_str().expect("RequestId");
    assert_eq!(request_id.len(), 36, "{what}");
    assert!(
        request_id
            .chars()
            .all(|c| c == '-' || c.is_ascii_digit() || c.is_ascii_uppercase()),
        "{what}: {request_id}"
    );
    assert_eq!(
        answer.header("x-acs-request-id").as_deref(),
        Some(request_id),
        "{what}"
    );
    assert_eq!(body["HostId"], host, "{what}");
    assert!(
        !body["Message"].as_str().unwrap_or_default().is_empty(),
        "{what}"
    );
    let recommend = body["Recommend"].as_str().unwrap_or_default();
    assert!(
        recommend.starts_with(&format!(
            "https://api.aliyun.com/troubleshoot?q={}&product=emr-serverless-spark",
            signer::percent_encode(code)
        )),
        "{what}: {recommend}"
    );
    assert!(
        answer
            .header("content-type")
            .unwrap_or_default()
            .starts_with("application/json"),
        "{what}"
    );
}

#[tokio::test]
async fn a_run_goes_submitted_running_success() {
    let sim = Sim::start().await;
    sim.handle
        .add_run(RunScript::new(WS, "jr-flow").with_phases(vec![
            Phase::new("Submitted").for_secs(0.5),
            Phase::new("Running").for_secs(1.0),
            Phase::new("Success"),
        ]))
        .expect("valid script");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen: Vec<String> = Vec::new();
    let last = loop {
        let answer = sim.get(for_run("jr-flow")).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        let state = answer.state();
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        if state == "Success" || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(seen, ["Submitted", "Running", "Success"]);
    let body = last.json();
    assert_eq!(
        last.header("x-acs-request-id").as_deref(),
        body["requestId"].as_str()
    );
    let run = &body["jobRun"];
    let submit = run["submitTime"].as_i64().expect("submitTime ms");
    let end = run["endTime"].as_i64().expect("endTime once ended");
    assert_eq!(end - submit, 1500, "ends when the Success phase begins");
    assert!(
        run["log"]["driverStdOut"]
            .as_str()
            .unwrap_or_default()
            .starts_with("oss://")
    );
    assert_eq!(run["jobRunId"], "jr-flow");
    assert_eq!(run["workspaceId"], WS);
}

#[tokio::test]
async fn the_answer_has_the_reference_shape_and_encoded_ids_work() {
    let sim = Sim::start().await;
    let seed: Value =
        serde_json::from_str(include_str!("fixtures/get-job-run-seed.json")).expect("seed");
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k
    };
    let answer = sim.get(Spec::default()).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(
        answer
            .header("content-type")
            .unwrap_or_default()
            .starts_with("application/json")
    );
    let body = answer.json();
    assert_eq!(keys(&body), keys(&seed));
    let mut want = keys(&seed["jobRun"]);
    want.retain(|k| k != "endTime" && k != "stateChangeReason");
    assert_eq!(
        keys(&body["jobRun"]),
        want,
        "a live run has no endTime and no reason"
    );
    assert_eq!(body["jobRun"]["state"], "Running");
    assert!(body["jobRun"]["priority"].is_string());

    // Ids that need encoding: `/` inside an id, a space, non-ASCII; the path stays encoded.
    let (ws, jr) = ("w a/b", "jr-ü+*~");
    sim.handle
        .add_run(RunScript::new(ws, jr).holding("Pending"))
        .expect("valid");
    let answer = sim
        .get(Spec {
            path: job_run_path(ws, jr),
            ..Spec::default()
        })
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json()["jobRun"]["jobRunId"], jr);
    assert_eq!(answer.state(), "Pending");
    assert_eq!(sim.handle.calls_for(jr), 1);
}

#[tokio::test]
async fn every_rejection_over_the_wire() {
    let sim = Sim::start().await;
    let host = sim.host();
    let ok = || sim.sign(Spec::default());
    let now = jiff::Timestamp::now();
    let minutes = |m: i64| signer::format_acs_date(now + jiff::SignedDuration::from_mins(m));
    sim.handle
        .add_run(RunScript::new("w-other", "jr-elsewhere"))
        .expect("valid");
    sim.handle
        .add_run(RunScript::new(WS, "jr-beijing").in_region("cn-beijing"))
        .expect("valid");

    let content_mismatch = {
        let mut call = sim.sign(Spec {
            body: b"x",
            ..Spec::default()
        });
        call.body = Vec::new();
        call
    };
    let garbled = {
        let call = ok();
        let auth = call
            .header("authorization")
            .replace("SignedHeaders=", "Headers=");
        call.set("authorization", &auth)
    };
    let with_token_header = |token: Option<&str>, id: &str, secret: &str| {
        let creds = Credentials::new(id, secret);
        let creds = match token {
            Some(t) => creds.with_security_token(t),
            None => creds,
        };
        sim.sign(Spec {
            creds,
            ..Spec::default()
        })
    };

    let cases: Vec<(&str, Call, u16, &str)> = vec![
        (
            "no Authorization",
            ok().without("authorization"),
            400,
            "MissingAuthorization",
        ),
        ("garbled Authorization", garbled, 400, "IncompleteSignature"),
        (
            "no x-acs-date",
            ok().without("x-acs-date"),
            400,
            "MissingParameter.x-acs-date",
        ),
        (
            "no x-acs-action",
            ok().without("x-acs-action"),
            400,
            "MissingParameter.x-acs-action",
        ),
        (
            "no x-acs-version",
            ok().without("x-acs-version"),
            400,
            "MissingParameter.x-acs-version",
        ),
        (
            "no x-acs-signature-nonce",
            ok().without("x-acs-signature-nonce"),
            400,
            "MissingParameter.x-acs-signature-nonce",
        ),
        (
            "no x-acs-content-sha256",
            ok().without("x-acs-content-sha256"),
            400,
            "MissingParameter.x-acs-content-sha256",
        ),
        (
            "action of another API",
            sim.sign(Spec {
                action: "ListJobRuns",
                ..Spec::default()
            }),
            404,
            "InvalidApi.NotFound",
        ),
        (
            "other version",
            sim.sign(Spec {
                version: "2020-01-01",
                ..Spec::default()
            }),
            400,
            "InvalidVersion",
        ),
        (
            "unsigned x-acs header",
            ok().set("x-acs-extra", "1"),
            400,
            "IncompleteSignature",
        ),
        (
            "body hash mismatch",
            content_mismatch,
            400,
            "ContentSHA256NotMatch",
        ),
        (
            "malformed date",
            sim.sign(Spec {
                date: now.to_string(),
                ..Spec::default()
            }),
            400,
            "InvalidTimeStamp.Format",
        ),
        (
            "date 20 minutes old",
            sim.sign(Spec {
                date: minutes(-20),
                ..Spec::default()
            }),
            400,
            "InvalidTimeStamp.Expired",
        ),
        (
            "date 20 minutes ahead",
            sim.sign(Spec {
                date: minutes(20),
                ..Spec::default()
            }),
            400,
            "InvalidTimeStamp.Expired",
        ),
        (
            "unknown AccessKey",
            with_token_header(None, "LTAI5tNobody", "x"),
            404,
            "InvalidAccessKeyId.NotFound",
        ),
        (
            "disabled AccessKey",
            with_token_header(None, "LTAI5tOffKey", "off-secret"),
            400,
            "InvalidAccessKeyId.Inactive",
        ),
        (
            "wrong secret",
            with_token_header(None, "LTAI5tTestKey", "not-the-secret"),
            400,
            "SignatureDoesNotMatch",
        ),
        (
            "tampered query",
            {
                let mut call = ok();
                call.query = "regionId=cn-beijing".into();
                call
            },
            400,
            "SignatureDoesNotMatch",
        ),
        (
            "STS key without token",
            with_token_header(None, "STS.TestKey", "sts-secret"),
            400,
            "MissingSecurityToken",
        ),
        (
            "STS key with another token",
            with_token_header(Some("token-bad"), "STS.TestKey", "sts-secret"),
            400,
            "InvalidSecurityToken.MismatchWithAccessKey",
        ),
        (
            "expired STS token",
            with_token_header(Some("token-old"), "STS.OldKey", "old-secret"),
            400,
            "InvalidSecurityToken.Expired",
        ),
        (
            "no regionId",
            sim.sign(Spec {
                query: Vec::new(),
                ..Spec::default()
            }),
            400,
            "MissingParameter.regionId",
        ),
        (
            "unknown run",
            sim.sign(for_run("jr-nope")),
            404,
            "JobRunNotFound",
        ),
        (
            "run of another workspace",
            sim.sign(for_run("jr-elsewhere")),
            404,
            "JobRunNotFound",
        ),
        (
            "run of another region",
            sim.sign(for_run("jr-beijing")),
            404,
            "JobRunNotFound",
        ),
        (
            "a path that is no API",
            sim.sign(Spec {
                path: "/api/v1/nothing".into(),
                ..Spec::default()
            }),
            404,
            "InvalidApi.NotFound",
        ),
        (
            "an API the simulator does not serve, correctly signed",
            sim.sign(Spec {
                method: "POST",
                path: format!("/api/v1/workspaces/{WS}/jobRuns"),
                action: "StartJobRun",
                ..Spec::default()
            }),
            404,
            "InvalidApi.NotFound",
        ),
    ];
    for (what, call, status, code) in cases {
        let answer = sim.send(call).await;
        assert_error(&answer, status, code, &host, what);
    }

    // The signature error shows the server's string to sign, and never a secret.
    let answer = sim
        .send(with_token_header(None, "LTAI5tTestKey", "not-the-secret"))
        .await;
    let message = answer.json()["Message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("server string to sign is:ACS3-HMAC-SHA256\n"),
        "{message}"
    );
    assert!(!message.contains("test-secret"), "{message}");

    // A replayed request: the first is served, the copy is refused.
    let call = ok();
    assert_eq!(sim.send(call.clone()).await.status, 200);
    assert_error(
        &sim.send(call).await,
        400,
        "SignatureNonceUsed",
        &host,
        "replay",
    );

    // STS credentials with their token work.
    let answer = sim
        .get(Spec {
            creds: sts_creds("token-ok"),
            ..Spec::default()
        })
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

#[tokio::test]
async fn every_fault_over_the_wire() {
    let sim = Sim::start().await;
    let host = sim.host();
    let once = |kind: FaultKind| Fault::new(kind).times(1);
    let throttling = |status: u16, retry_after_ms: Option<u64>| FaultKind::Throttling {
        status,
        retry_after_ms,
        code: "Throttling.User".into(),
    };

    let error_faults: Vec<(FaultKind, u16, &str)> = vec![
        (FaultKind::InternalError, 500, "InternalError"),
        (FaultKind::ServiceUnavailable, 503, "ServiceUnavailable"),
        (throttling(400, None), 400, "Throttling.User"),
        (throttling(429, Some(1500)), 429, "Throttling.User"),
        (FaultKind::NotFound, 404, "JobRunNotFound"),
        (FaultKind::ForbiddenRam, 403, "Forbidden.RAM"),
    ];
    for (kind, status, code) in error_faults {
        let what = format!("{kind:?}");
        sim.handle.inject(once(kind.clone())).expect("valid fault");
        let answer = sim.get(Spec::default()).await;
        assert_error(&answer, status, code, &host, &what);
        let retry_after = answer.header("x-acs-retry-after");
        match kind {
            FaultKind::Throttling {
                retry_after_ms: Some(ms),
                ..
            } => {
                assert_eq!(retry_after, Some(ms.to_string()), "{what}");
            }
            _ => assert_eq!(retry_after, None, "{what}"),
        }
        if code == "Forbidden.RAM" {
            let detail = &answer.json()["AccessDeniedDetail"];
            assert_eq!(detail["AuthAction"], "emr-serverless-spark:GetJobRun");
        }
        assert_eq!(
            sim.get(Spec::default()).await.status,
            200,
            "{what} was for one call only"
        );
    }

    sim.handle
        .inject(once(FaultKind::HtmlErrorPage))
        .expect("valid");
    let answer = sim.get(Spec::default()).await;
    assert_eq!(answer.status, 502);
    assert!(
        answer
            .header("content-type")
            .unwrap_or_default()
            .starts_with("text/html")
    );
    assert!(answer.text.contains("<html>"), "{}", answer.text);

    sim.handle
        .inject(once(FaultKind::MalformedJson))
        .expect("valid");
    let answer = sim.get(Spec::default()).await;
    assert_eq!(answer.status, 200);
    assert!(answer.text.starts_with("{\""), "{}", answer.text);
    assert!(
        serde_json::from_str::<Value>(&answer.text).is_err(),
        "{}",
        answer.text
    );

    sim.handle
        .inject(once(FaultKind::Slow { delay_ms: 300 }))
        .expect("valid");
    let answer = sim.get(Spec::default()).await;
    assert_eq!(answer.status, 200);
    assert!(
        answer.elapsed >= Duration::from_millis(300),
        "{:?}",
        answer.elapsed
    );

    let counts = sim.handle.calls();
    assert_eq!(counts.for_outcome("HtmlErrorPage"), 1);
    assert_eq!(counts.for_outcome("MalformedJson"), 1);
    assert_eq!(counts.for_outcome("Throttling.User"), 2);
}

#[tokio::test]
async fn faults_are_scoped_and_come_after_the_signature() {
    let sim = Sim::start().await;
    let host = sim.host();
    sim.handle
        .add_run(RunScript::new(WS, "jr-2").holding("Running"))
        .expect("valid");
    sim.handle
        .inject(
            Fault::new(FaultKind::ServiceUnavailable)
                .for_run("jr-2")
                .times(2),
        )
        .expect("valid");

    // A badly signed request is rejected for its signature and does not spend the fault.
    let bad = sim.sign(Spec {
        creds: Credentials::new("LTAI5tTestKey", "wrong"),
        ..for_run("jr-2")
    });
    assert_error(
        &sim.send(bad).await,
        400,
        "SignatureDoesNotMatch",
        &host,
        "bad signature",
    );
    assert_eq!(
        sim.get(Spec::default()).await.status,
        200,
        "jr-1 is unaffected"
    );
    assert_eq!(sim.get(for_run("jr-2")).await.status, 503);
    assert_eq!(sim.get(for_run("jr-2")).await.status, 503);
    assert_eq!(
        sim.get(for_run("jr-2")).await.status,
        200,
        "used up after two calls"
    );

    // A fault until cleared.
    sim.handle
        .inject(Fault::new(FaultKind::InternalError))
        .expect("valid");
    for _ in 0..3 {
        assert_eq!(sim.get(Spec::default()).await.status, 500);
    }
    sim.handle.clear_faults();
    assert_eq!(sim.get(Spec::default()).await.status, 200);
    assert!(sim.handle.faults().is_empty());
    assert!(
        sim.handle
            .inject(Fault::new(FaultKind::NotFound).times(0))
            .is_err()
    );
}

#[tokio::test]
async fn calls_are_counted() {
    let sim = Sim::start().await;
    sim.get(Spec::default()).await;
    sim.get(Spec::default()).await;
    sim.get(for_run("jr-missing")).await;
    sim.send(sim.sign(Spec::default()).without("authorization"))
        .await;
    let counts = sim.handle.calls();
    assert_eq!(counts.total, 4);
    assert_eq!(counts.accepted, 2);
    assert_eq!(counts.rejected, 2);
    assert_eq!(sim.handle.calls_for("jr-1"), 3);
    assert_eq!(sim.handle.calls_for("jr-missing"), 1);
    assert_eq!(counts.for_outcome("Accepted"), 2);
    assert_eq!(counts.for_outcome("JobRunNotFound"), 1);
    assert_eq!(counts.for_outcome("MissingAuthorization"), 1);
    sim.handle.reset_counts();
    assert_eq!(sim.handle.calls().total, 0);
}

#[tokio::test]
async fn the_admin_api() {
    use reqwest::Method;
    let sim = Sim::start().await;

    let (status, body) = sim.admin(Method::GET, "/_sim/healthz", None).await;
    assert_eq!((status, body), (200, Value::String("ok".into())));

    // A new AccessKey; the answer never echoes the secret.
    let (status, body) = sim
        .admin(
            Method::POST,
            "/_sim/accounts",
            Some(json!({"accessKeyId": "LTAI5tAdminKey", "accessKeySecret": "admin-secret"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["accessKeyId"], "LTAI5tAdminKey");
    assert!(!body.to_string().contains("admin-secret"), "{body}");

    // A new run, scripted in JSON.
    let script = json!({
        "workspaceId": WS,
        "jobRunId": "jr-admin",
        "regionId": REGION,
        "name": "from-admin",
        "phases": [
            {"state": "Running", "forSeconds": 60.0},
            {"state": "Failed", "stateChangeReason": {"code": "ERR-1", "message": "boom"}}
        ]
    });
    let (status, body) = sim
        .admin(Method::POST, "/_sim/runs", Some(script.clone()))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["run"], script);
    assert!(
        body["startedAt"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{body}"
    );
    let answer = sim
        .get(Spec {
            creds: Credentials::new("LTAI5tAdminKey", "admin-secret"),
            ..for_run("jr-admin")
        })
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json()["jobRun"]["name"], "from-admin");
    let (status, body) = sim.admin(Method::GET, "/_sim/runs", None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = body
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r["run"]["jobRunId"].as_str())
        .collect();
    assert_eq!(ids, ["jr-1", "jr-admin"]);

    // Bad scripts and bad JSON are refused with a reason.
    let (status, body) = sim
        .admin(
            Method::POST,
            "/_sim/runs",
            Some(json!({"workspaceId": WS, "jobRunId": "x", "phases": [{"state": "Running"}, {"state": "Success"}]})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("phase 1"),
        "{body}"
    );
    let (status, body) = sim
        .admin(
            Method::POST,
            "/_sim/runs",
            Some(json!({"workspaceId": WS, "jobRunId": "x", "phasez": []})),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // Faults: add, list, clear.
    let (status, body) = sim
        .admin(
            Method::POST,
            "/_sim/faults",
            Some(json!({"kind": "throttling", "status": 429, "retryAfterMs": 250, "jobRunId": "jr-admin", "times": 1})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["remaining"], 1);
    let answer = sim
        .get(Spec {
            creds: Credentials::new("LTAI5tAdminKey", "admin-secret"),
            ..for_run("jr-admin")
        })
        .await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.header("x-acs-retry-after").as_deref(), Some("250"));
    sim.admin(
        Method::POST,
        "/_sim/faults",
        Some(json!({"kind": "internalError"})),
    )
    .await;
    let (_, body) = sim.admin(Method::GET, "/_sim/faults", None).await;
    assert_eq!(body.as_array().map(Vec::len), Some(1), "{body}");
    let (status, _) = sim.admin(Method::DELETE, "/_sim/faults", None).await;
    assert_eq!(status, 204);
    let (status, body) = sim
        .admin(
            Method::POST,
            "/_sim/faults",
            Some(json!({"kind": "throttling", "status": 418})),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // Counts: admin calls are not counted.
    let (status, body) = sim.admin(Method::GET, "/_sim/calls", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["total"], 2, "{body}");
    assert_eq!(body["byJobRun"]["jr-admin"], 2);
    assert_eq!(body["byOutcome"]["Throttling.User"], 1);
    let (status, _) = sim.admin(Method::POST, "/_sim/reset-counts", None).await;
    assert_eq!(status, 204);
    assert_eq!(
        sim.admin(Method::GET, "/_sim/calls", None).await.1["total"],
        0
    );

    // Removing a run.
    let (status, _) = sim.admin(Method::DELETE, "/_sim/runs/jr-admin", None).await;
    assert_eq!(status, 204);
    let (status, _) = sim.admin(Method::DELETE, "/_sim/runs/jr-admin", None).await;
    assert_eq!(status, 404);
    let answer = sim
        .get(Spec {
            creds: Credentials::new("LTAI5tAdminKey", "admin-secret"),
            ..for_run("jr-admin")
        })
        .await;
    assert_eq!(answer.code(), "JobRunNotFound");
}

#[tokio::test]
async fn the_example_config_serves_its_runs_and_shutdown_stops_the_server() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/simulator-example.yaml");
    let config = SimulatorConfig::load(std::path::Path::new(path)).expect("example loads");
    let handle = Simulator::start(config).await.expect("starts");
    let sim = Sim {
        handle,
        client: client(),
    };
    let demo = |id: &'static str| Spec {
        creds: Credentials::new(
            "LTAI5tSimulatorDemoKey",
            "simulator-demo-secret-not-for-production",
        ),
        path: job_run_path("w-demo0000000001", id),
        ..Spec::default()
    };
    for id in ["jr-demo-success", "jr-demo-failure", "jr-demo-streaming"] {
        let answer = sim.get(demo(id)).await;
        assert_eq!(answer.status, 200, "{id}: {}", answer.text);
        assert!(
            ["Submitted", "Running"].contains(&answer.state().as_str()),
            "{id}"
        );
    }
    let endpoint = sim.handle.endpoint();
    sim.handle.shutdown().await.expect("clean shutdown");
    let after = client()
        .get(format!("{endpoint}/_sim/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(after.is_err(), "still serving after shutdown");
}

/// This machine's address on a non-loopback interface, if it has one (no packet is sent).
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("10.255.255.255:1").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn the_admin_api_refuses_other_machines() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("skipping: no non-loopback interface");
        return;
    };
    let config = SimulatorConfig {
        listen: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
        ..SimulatorConfig::default()
    };
    let handle = Simulator::start(config).await.expect("starts");
    assert!(
        handle.endpoint().starts_with("http://127.0.0.1:"),
        "wildcard shown as loopback"
    );
    let port = handle.addr().port();
    let client = client();
    let remote = client
        .get(format!(
            "http://{}/_sim/calls",
            std::net::SocketAddr::new(ip, port)
        ))
        .send()
        .await
        .expect("reaches the simulator");
    assert_eq!(remote.status().as_u16(), 403);
    let local = client
        .get(format!("{}/_sim/calls", handle.endpoint()))
        .send()
        .await
        .expect("reaches the simulator");
    assert_eq!(local.status().as_u16(), 200);
    handle.shutdown().await.expect("stops");
}
