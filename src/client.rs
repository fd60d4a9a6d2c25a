//! The service client (GetJobRun, ListJobRuns, CancelJobRun): signing, sending, decoding and classifying errors by the service's code.
//! [`JobRunService`] is the seam the reconciler is written against.

use std::future::Future;
use std::time::Duration;

use crate::endpoint::Endpoint;
use crate::policy::RetryClass;
use crate::signer::{self, Credentials, RequestToSign};
use crate::transport::{self, AcsTransport, Failure, Outgoing};
use crate::wire::{ErrorBody, GetJobRunResponse, JobRun, ListJobRunsResponse};

pub const API_VERSION: &str = "2023-08-08";
pub const ACTION_GET_JOB_RUN: &str = "GetJobRun";
pub const ACTION_LIST_JOB_RUNS: &str = "ListJobRuns";
pub const ACTION_CANCEL_JOB_RUN: &str = "CancelJobRun";

/// What went wrong with a call, by the table in the API doc (code first, HTTP status second).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiErrorKind {
    Throttled,
    /// 5xx and `SignatureNonceUsed` (a fresh nonce fixes it).
    Transient,
    /// Connection refused, DNS, TLS, timeouts.
    Unreachable,
    /// The answer could not be understood (HTML page, malformed JSON, no state).
    InvalidResponse,
    /// Bad or unknown AccessKey, bad signature, bad or expired STS token.
    Unauthorized,
    /// `InvalidTimeStamp.Expired`: the node's clock is off by more than 15 minutes.
    ClockSkew,
    /// Missing RAM permission.
    Forbidden,
    NotFound,
    BadRequest,
}

impl ApiErrorKind {
    pub const ALL: [Self; 9] = [
        Self::Throttled,
        Self::Transient,
        Self::Unreachable,
        Self::InvalidResponse,
        Self::Unauthorized,
        Self::ClockSkew,
        Self::Forbidden,
        Self::NotFound,
        Self::BadRequest,
    ];

    /// The `Synced` condition reason (PascalCase) and metrics category.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Throttled => "Throttled",
            Self::Transient => "ServiceUnavailable",
            Self::Unreachable => "EndpointUnreachable",
            Self::InvalidResponse => "InvalidResponse",
            Self::Unauthorized => "Unauthorized",
            Self::ClockSkew => "ClockSkew",
            Self::Forbidden => "Forbidden",
            Self::NotFound => "JobRunNotFound",
            Self::BadRequest => "BadRequest",
        }
    }

    pub fn retry_class(self) -> RetryClass {
        match self {
            Self::Throttled => RetryClass::Throttled,
            Self::Transient | Self::Unreachable | Self::InvalidResponse => RetryClass::Transient,
            Self::Unauthorized
            | Self::ClockSkew
            | Self::Forbidden
            | Self::NotFound
            | Self::BadRequest => RetryClass::Permanent,
        }
    }
}

/// Classifies an error answer. Pure.
pub fn classify(http_status: u16, code: Option<&str>) -> ApiErrorKind {
    let code = code.unwrap_or_default();
    let starts = |p: &str| code == p || code.starts_with(&format!("{p}."));
    if starts("Throttling") || code == "Throttled" {
        ApiErrorKind::Throttled
    } else if code == "SignatureNonceUsed"
        || code == "InternalError"
        || code == "ServiceUnavailable"
    {
        ApiErrorKind::Transient
    } else if code == "InvalidTimeStamp.Expired" {
        ApiErrorKind::ClockSkew
    } else if starts("InvalidAccessKeyId")
        || starts("InvalidSecurityToken")
        || code == "SignatureDoesNotMatch"
        || code == "IncompleteSignature"
        || code == "InvalidAuthorization"
    {
        ApiErrorKind::Unauthorized
    } else if starts("Forbidden") || code == "NoPermission" || starts("NoPermission") {
        ApiErrorKind::Forbidden
    } else if starts("MissingParameter")
        || starts("InvalidParameter")
        || starts("InvalidTimeStamp")
        || gateway_unknown(code)
    {
        ApiErrorKind::BadRequest
    } else if code.contains("NotFound") || code.contains("NotExist") {
        ApiErrorKind::NotFound
    } else {
        match http_status {
            429 => ApiErrorKind::Throttled,
            401 => ApiErrorKind::Unauthorized,
            403 => ApiErrorKind::Forbidden,
            404 => ApiErrorKind::NotFound,
            500..=599 => ApiErrorKind::Transient,
            _ => ApiErrorKind::BadRequest,
        }
    }
}

/// The gateway's "no such API/action/product/version" codes. They carry `NotFound` but say the
/// request went to the wrong endpoint or API version; reading them as "job run not found" would
/// mark a run that exists as gone.
fn gateway_unknown(code: &str) -> bool {
    [
        "InvalidApi",
        "InvalidAction",
        "InvalidProduct",
        "InvalidVersion",
    ]
    .iter()
    .any(|p| code == *p || code.starts_with(&format!("{p}.")))
}

/// A failed GetJobRun, carrying what the service said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct ApiError {
    pub kind: ApiErrorKind,
    pub http_status: Option<u16>,
    pub code: Option<String>,
    pub message: String,
    pub request_id: Option<String>,
    /// From `x-acs-retry-after` (milliseconds on the wire).
    pub retry_after: Option<Duration>,
}

impl ApiError {
    fn describe(&self) -> String {
        let mut s = String::new();
        if let Some(status) = self.http_status {
            s.push_str(&format!("HTTP {status}: "));
        }
        if let Some(code) = &self.code {
            s.push_str(code);
            s.push_str(": ");
        }
        s.push_str(&self.message);
        if let Some(id) = &self.request_id {
            s.push_str(&format!(" (request id {id})"));
        }
        s
    }

    /// A message for the status condition: code and message, no request id (which changes on
    /// every call and would cause a write per poll).
    pub fn condition_message(&self) -> String {
        use crate::conditions::SERVICE_FAILURE;
        let mut msg = match &self.code {
            Some(code) => format!("{SERVICE_FAILURE}{code}: {}", self.message),
            None => format!("{SERVICE_FAILURE}{}", self.message),
        };
        if self.kind == ApiErrorKind::ClockSkew {
            msg.push_str(
                " (check the node clock: requests must be within 15 minutes of the service)",
            );
        }
        crate::text::truncate(&mut msg, 1024);
        msg
    }

    fn local(kind: ApiErrorKind, message: String) -> Self {
        Self {
            kind,
            http_status: None,
            code: None,
            message,
            request_id: None,
            retry_after: None,
        }
    }
}

/// Builds an [`ApiError`] from an error answer. Pure, so every odd body is table-tested.
pub fn error_from_response(
    http_status: u16,
    retry_after: Option<&str>,
    request_id: Option<&str>,
    body: &[u8],
) -> ApiError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let retry_after = retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        // The official SDKs ignore a non-positive value; so do we.
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis);
    match parsed.filter(|b| b.code.is_some() || b.message.is_some()) {
        Some(b) => {
            let mut message = b.message.clone().unwrap_or_default();
            if let Some(detail) = &b.access_denied_detail {
                let action = detail.get("AuthAction").and_then(|a| a.as_str());
                if let Some(action) = action {
                    message.push_str(&format!(" (missing permission: {action})"));
                }
            }
            ApiError {
                kind: classify(http_status, b.code.as_deref()),
                http_status: Some(http_status),
                code: b.code,
                message,
                request_id: b.request_id.or_else(|| request_id.map(str::to_owned)),
                retry_after,
            }
        }
        None => {
            // Not the service's JSON: a load balancer page, a proxy, or garbage.
            let text = String::from_utf8_lossy(body);
            let looks_html = text.trim_start().starts_with('<');
            let mut snippet: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
            crate::text::truncate(&mut snippet, 200);
            let kind = match http_status {
                500..=599 => ApiErrorKind::Transient,
                429 => ApiErrorKind::Throttled,
                _ => ApiErrorKind::InvalidResponse,
            };
            ApiError {
                kind,
                http_status: Some(http_status),
                code: None,
                message: if looks_html {
                    format!("non-JSON (HTML) error page: {snippet}")
                } else {
                    format!("unreadable error body: {snippet}")
                },
                request_id: request_id.map(str::to_owned),
                retry_after,
            }
        }
    }
}

/// Decodes a 200 answer: the run must be there and carry a state, everything else is lenient.
pub fn decode_success(body: &[u8], request_id: Option<&str>) -> Result<JobRun, ApiError> {
    let invalid = |message: String| ApiError {
        request_id: request_id.map(str::to_owned),
        http_status: Some(200),
        ..ApiError::local(ApiErrorKind::InvalidResponse, message)
    };
    let resp: GetJobRunResponse = crate::wire::decode_get_job_run(body)
        .map_err(|e| invalid(format!("GetJobRun answer is not valid JSON: {e}")))?;
    let run = resp
        .job_run
        .ok_or_else(|| invalid("GetJobRun answer has no jobRun".into()))?;
    if run.state.as_deref().is_none_or(str::is_empty) {
        return Err(invalid("GetJobRun answer has no jobRun.state".into()));
    }
    Ok(run)
}

/// One GetJobRun call's inputs (CancelJobRun names a run the same way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetJobRunRequest {
    pub workspace_id: String,
    pub job_run_id: String,
    pub region_id: String,
    pub endpoint: Endpoint,
}

/// The largest page the service serves.
pub const MAX_PAGE: u32 = 100;

/// One ListJobRuns page request: which workspace, which runs, where to continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListJobRunsRequest {
    pub workspace_id: String,
    pub region_id: String,
    pub endpoint: Endpoint,
    pub filter: ListFilter,
    /// 1..=[`MAX_PAGE`].
    pub max_results: u32,
    pub next_token: Option<String>,
}

/// ListJobRuns filters; empty ones are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub states: Vec<String>,
    pub tags: Vec<(String, String)>,
    pub job_run_id: Option<String>,
    /// Submitted within `[start, end]`, Unix epoch milliseconds.
    pub submitted: Option<(i64, i64)>,
}

/// The query of a ListJobRuns page, JSON-valued parameters encoded compactly as the official SDKs
/// send them (`states=["Running","Submitted"]`, `tags=[{"key":..,"value":..}]`).
pub fn list_job_runs_query(req: &ListJobRunsRequest) -> Vec<(String, String)> {
    let mut query = vec![
        ("regionId".to_owned(), req.region_id.clone()),
        (
            "maxResults".to_owned(),
            req.max_results.clamp(1, MAX_PAGE).to_string(),
        ),
    ];
    let f = &req.filter;
    if let Some(token) = req.next_token.as_ref().filter(|t| !t.is_empty()) {
        query.push(("nextToken".to_owned(), token.clone()));
    }
    if let Some(id) = &f.job_run_id {
        query.push(("jobRunId".to_owned(), id.clone()));
    }
    if !f.states.is_empty() {
        query.push(("states".to_owned(), serde_json::json!(f.states).to_string()));
    }
    if !f.tags.is_empty() {
        let tags: Vec<_> = f
            .tags
            .iter()
            .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
            .collect();
        query.push(("tags".to_owned(), serde_json::Value::from(tags).to_string()));
    }
    if let Some((start, end)) = f.submitted {
        // The SDK's key order (its to_map), which is also serde_json's sorted one.
        let range = serde_json::json!({"endTime": end, "startTime": start});
        query.push(("startTime".to_owned(), range.to_string()));
    }
    query
}

/// The job-run service as the reconciler sees it.
pub trait JobRunService: Send + Sync + 'static {
    fn get_job_run(
        &self,
        req: &GetJobRunRequest,
        creds: &Credentials,
    ) -> impl Future<Output = Result<JobRun, ApiError>> + Send;

    fn list_job_runs(
        &self,
        req: &ListJobRunsRequest,
        creds: &Credentials,
    ) -> impl Future<Output = Result<ListJobRunsResponse, ApiError>> + Send;

    /// Asks the service to cancel the run; `Ok` means the request was accepted, not that the
    /// run has ended.
    fn cancel_job_run(
        &self,
        req: &GetJobRunRequest,
        creds: &Credentials,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
}

/// Timeouts of the HTTP client (the official SDK's defaults: 5 s connect, 10 s read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(10),
        }
    }
}

/// The service's calls over HTTPS with reqwest (rustls, bundled web PKI roots).
#[derive(Debug, Clone)]
pub struct HttpJobRunService {
    transport: AcsTransport,
}

impl HttpJobRunService {
    pub fn new(timeouts: Timeouts) -> Result<Self, reqwest::Error> {
        Ok(Self {
            transport: AcsTransport::new(timeouts, None)?,
        })
    }

    /// Signs and sends one call; a non-2xx answer becomes the service's error.
    async fn call(
        &self,
        endpoint: &Endpoint,
        call: Call<'_>,
        creds: &Credentials,
    ) -> Result<crate::transport::Answer, ApiError> {
        let date = signer::format_acs_date(jiff::Timestamp::now());
        let signed = signer::sign_request(
            &RequestToSign {
                method: call.method,
                host: &endpoint.host,
                path: call.path,
                query: call.query,
                action: call.action,
                version: API_VERSION,
                body: b"",
                content_type: None,
            },
            creds,
            &date,
            &transport::nonce(),
        );
        let outgoing = Outgoing {
            method: call.method,
            path: call.path,
            query: &signed.query,
            headers: &signed.headers,
            body: b"",
        };
        let answer = self
            .transport
            .send(endpoint, outgoing, crate::body::SERVICE_LIMIT)
            .await
            .map_err(|failure| match failure {
                Failure::Unreachable(message) => {
                    ApiError::local(ApiErrorKind::Unreachable, message)
                }
                Failure::TooLarge {
                    status,
                    request_id,
                    message,
                } => ApiError {
                    http_status: Some(status),
                    request_id,
                    ..ApiError::local(
                        ApiErrorKind::InvalidResponse,
                        format!("{} {message}", call.action),
                    )
                },
            })?;
        if (200..300).contains(&answer.status) {
            Ok(answer)
        } else {
            Err(error_from_response(
                answer.status,
                answer.retry_after.as_deref(),
                answer.request_id.as_deref(),
                &answer.body,
            ))
        }
    }
}

/// What [`HttpJobRunService::call`] signs: every operation here has an empty body.
struct Call<'a> {
    method: &'static str,
    action: &'static str,
    path: &'a str,
    query: &'a [(String, String)],
}

/// The encoded path of a GetJobRun: each id is one percent-encoded segment.
pub fn get_job_run_path(workspace_id: &str, job_run_id: &str) -> String {
    format!(
        "{}/{}",
        job_runs_path(workspace_id),
        signer::percent_encode(job_run_id)
    )
}

/// The encoded path of a workspace's job runs (ListJobRuns).
pub fn job_runs_path(workspace_id: &str) -> String {
    format!(
        "/api/v1/workspaces/{}/jobRuns",
        signer::percent_encode(workspace_id)
    )
}

/// Decodes a ListJobRuns page; items are lenient, the page itself must be JSON.
pub fn decode_list(body: &[u8], request_id: Option<&str>) -> Result<ListJobRunsResponse, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError {
        request_id: request_id.map(str::to_owned),
        http_status: Some(200),
        ..ApiError::local(
            ApiErrorKind::InvalidResponse,
            format!("ListJobRuns answer is not valid JSON: {e}"),
        )
    })
}

impl JobRunService for HttpJobRunService {
    async fn get_job_run(
        &self,
        req: &GetJobRunRequest,
        creds: &Credentials,
    ) -> Result<JobRun, ApiError> {
        let path = get_job_run_path(&req.workspace_id, &req.job_run_id);
        let query = [("regionId".to_owned(), req.region_id.clone())];
        let call = Call {
            method: "GET",
            action: ACTION_GET_JOB_RUN,
            path: &path,
            query: &query,
        };
        let answer = self.call(&req.endpoint, call, creds).await?;
        decode_success(&answer.body, answer.request_id.as_deref())
    }

    async fn list_job_runs(
        &self,
        req: &ListJobRunsRequest,
        creds: &Credentials,
    ) -> Result<ListJobRunsResponse, ApiError> {
        let path = job_runs_path(&req.workspace_id);
        let query = list_job_runs_query(req);
        let call = Call {
            method: "GET",
            action: ACTION_LIST_JOB_RUNS,
            path: &path,
            query: &query,
        };
        let answer = self.call(&req.endpoint, call, creds).await?;
        decode_list(&answer.body, answer.request_id.as_deref())
    }

    async fn cancel_job_run(
        &self,
        req: &GetJobRunRequest,
        creds: &Credentials,
    ) -> Result<(), ApiError> {
        let path = get_job_run_path(&req.workspace_id, &req.job_run_id);
        let query = [("regionId".to_owned(), req.region_id.clone())];
        let call = Call {
            method: "DELETE",
            action: ACTION_CANCEL_JOB_RUN,
            path: &path,
            query: &query,
        };
        self.call(&req.endpoint, call, creds).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operator's ListJobRuns query for the inputs of the SDK capture canonicalises to the
    /// SDK's signed query, JSON-valued filters included.
    #[test]
    fn list_query_is_the_official_sdks() {
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/acs3-known-answers.json"))
                .expect("fixture");
        let case = fixture["cases"]
            .as_array()
            .and_then(|cases| {
                cases
                    .iter()
                    .find(|c| c["name"] == "list-job-runs-json-filters")
            })
            .expect("list-job-runs-json-filters case");
        let req = ListJobRunsRequest {
            workspace_id: "w-d2d82aa09151abcd".into(),
            region_id: "cn-hangzhou".into(),
            endpoint: crate::endpoint::for_region("cn-hangzhou", crate::endpoint::Network::Public)
                .expect("endpoint"),
            filter: ListFilter {
                states: [
                    "Submitted",
                    "Pending",
                    "Running",
                    "Cancelling",
                    "CancelFailed",
                ]
                .map(String::from)
                .to_vec(),
                tags: vec![("team".into(), "data ü".into())],
                job_run_id: Some("jr-93d98d2f7061abcd".into()),
                submitted: Some((1714550400000, 1714636800000)),
            },
            max_results: 100,
            next_token: Some("sim-100".into()),
        };
        assert_eq!(
            signer::canonical_query(&list_job_runs_query(&req)),
            case["canonicalQuery"].as_str().expect("canonicalQuery")
        );
        assert_eq!(
            job_runs_path(&req.workspace_id),
            case["path"].as_str().expect("path")
        );
        let bare = ListJobRunsRequest {
            filter: ListFilter::default(),
            max_results: 500,
            next_token: Some(String::new()),
            ..req
        };
        assert_eq!(
            signer::canonical_query(&list_job_runs_query(&bare)),
            "maxResults=100&regionId=cn-hangzhou"
        );
    }

    /// An answer far over the limit, declared or streamed, is refused as InvalidResponse and read
    /// no further than the limit (whatever its status: error pages are bounded too).
    #[tokio::test]
    async fn oversized_answers_are_invalid_and_not_read_whole() {
        const TOTAL: u64 = 96 * 1024 * 1024;
        let service = HttpJobRunService::new(Timeouts::default()).expect("client");
        let creds = Credentials::new("AKID", crate::secret::Secret::new("s3cr3t"));
        for (status, declare) in [(200, true), (200, false), (500, false)] {
            let server = crate::body::testing::serve(status, TOTAL, declare).await;
            let req = GetJobRunRequest {
                workspace_id: "w-1".into(),
                job_run_id: "jr-1".into(),
                region_id: "cn-hangzhou".into(),
                endpoint: crate::endpoint::parse(&format!("http://{}", server.addr)).expect("ep"),
            };
            let err = service
                .get_job_run(&req, &creds)
                .await
                .expect_err("too large");
            assert_eq!(
                err.kind,
                ApiErrorKind::InvalidResponse,
                "{status} {declare}: {err:?}"
            );
            assert!(err.message.contains("limit"), "{}", err.message);
            assert!(
                server.written() < TOTAL / 2,
                "{} bytes sent",
                server.written()
            );
        }
    }

    #[test]
    fn classification_table() {
        use ApiErrorKind::*;
        let table = [
            (400, Some("Throttling"), Throttled),
            (400, Some("Throttling.User"), Throttled),
            (429, Some("Throttling.Api"), Throttled),
            (429, None, Throttled),
            (500, Some("InternalError"), Transient),
            (503, Some("ServiceUnavailable"), Transient),
            (502, None, Transient),
            (400, Some("SignatureNonceUsed"), Transient),
            (400, Some("InvalidTimeStamp.Expired"), ClockSkew),
            (404, Some("InvalidAccessKeyId.NotFound"), Unauthorized),
            (400, Some("InvalidAccessKeyId.Inactive"), Unauthorized),
            (400, Some("SignatureDoesNotMatch"), Unauthorized),
            (403, Some("SignatureDoesNotMatch"), Unauthorized),
            (400, Some("IncompleteSignature"), Unauthorized),
            (400, Some("InvalidSecurityToken.Expired"), Unauthorized),
            (403, Some("Forbidden.RAM"), Forbidden),
            (403, Some("Forbidden"), Forbidden),
            (403, Some("NoPermission"), Forbidden),
            (400, Some("MissingParameter.regionId"), BadRequest),
            (400, Some("InvalidParameter.JobRunId"), BadRequest),
            (404, Some("JobRunNotFound"), NotFound),
            (404, Some("Workspace.NotExist"), NotFound),
            (404, None, NotFound),
            // The gateway does not know the API, action, product or version asked for: the
            // endpoint or operator is wrong, not the run missing (hardening 9.9).
            (404, Some("InvalidApi.NotFound"), BadRequest),
            (404, Some("InvalidAction.NotFound"), BadRequest),
            (404, Some("InvalidProduct.NotFound"), BadRequest),
            (400, Some("InvalidVersion.NotFound"), BadRequest),
            (404, Some("InvalidVersion"), BadRequest),
            (418, Some("Teapot"), BadRequest),
        ];
        for (status, code, want) in table {
            assert_eq!(classify(status, code), want, "{status} {code:?}");
        }
        assert_eq!(ApiErrorKind::NotFound.retry_class(), RetryClass::Permanent);
        assert_eq!(
            ApiErrorKind::Unreachable.retry_class(),
            RetryClass::Transient
        );
    }

    #[test]
    fn retry_after_of_zero_or_garbage_is_absent() {
        let body = br#"{"Code":"Throttling.User","Message":"slow down"}"#;
        for header in ["0", "-1", "soon", ""] {
            let e = error_from_response(400, Some(header), None, body);
            assert_eq!(e.retry_after, None, "{header:?}");
        }
    }

    #[test]
    fn error_bodies() {
        let e = error_from_response(
            400,
            Some("1500"),
            Some("hdr-id"),
            br#"{"Code":"Throttling.User","Message":"Request was denied due to user flow control.","RequestId":"R1"}"#,
        );
        assert_eq!(e.kind, ApiErrorKind::Throttled);
        assert_eq!(e.retry_after, Some(Duration::from_millis(1500)));
        assert_eq!(e.request_id.as_deref(), Some("R1"));
        assert!(e.to_string().contains("Throttling.User"), "{e}");
        assert!(
            !e.condition_message().contains("R1"),
            "request id kept out of status"
        );

        let forbidden = error_from_response(
            403,
            None,
            None,
            br#"{"code":"Forbidden.RAM","message":"denied","AccessDeniedDetail":{"AuthAction":"emr-serverless-spark:GetJobRun"}}"#,
        );
        assert_eq!(forbidden.kind, ApiErrorKind::Forbidden);
        assert!(forbidden.message.contains("emr-serverless-spark:GetJobRun"));

        let html = error_from_response(
            502,
            None,
            Some("x"),
            b"<html><body>Bad Gateway</body></html>",
        );
        assert_eq!(html.kind, ApiErrorKind::Transient);
        assert!(html.message.contains("HTML"), "{}", html.message);
        assert_eq!(html.request_id.as_deref(), Some("x"));

        let junk = error_from_response(400, Some("soon"), None, b"\x00\x01not json");
        assert_eq!(junk.kind, ApiErrorKind::InvalidResponse);
        assert_eq!(junk.retry_after, None);

        let skew = error_from_response(
            400,
            None,
            None,
            br#"{"Code":"InvalidTimeStamp.Expired","Message":"old"}"#,
        );
        assert!(skew.condition_message().contains("node clock"));
    }

    #[test]
    fn success_bodies() {
        let seed = include_bytes!("../tests/fixtures/get-job-run-seed.json");
        assert_eq!(
            decode_success(seed, None).map(|r| r.state),
            Ok(Some("Running".into()))
        );
        let truncated = &seed[..seed.len() / 2];
        assert_eq!(
            decode_success(truncated, None).map_err(|e| e.kind),
            Err(ApiErrorKind::InvalidResponse)
        );
        assert_eq!(
            decode_success(b"{}", None).map_err(|e| e.kind),
            Err(ApiErrorKind::InvalidResponse)
        );
        assert_eq!(
            decode_success(br#"{"jobRun":{"state":""}}"#, None).map_err(|e| e.kind),
            Err(ApiErrorKind::InvalidResponse)
        );
        assert_eq!(
            decode_success(br#"{"jobRun":{"state":"Warping"}}"#, None).map(|r| r.state),
            Ok(Some("Warping".into()))
        );
    }

    #[test]
    fn path_encoding() {
        assert_eq!(
            get_job_run_path("w-1", "jr-2"),
            "/api/v1/workspaces/w-1/jobRuns/jr-2"
        );
        assert_eq!(
            get_job_run_path("w-a b/c", "jr-ü"),
            "/api/v1/workspaces/w-a%20b%2Fc/jobRuns/jr-%C3%BC"
        );
    }
}
