//! STS (`2015-04-01`, RPC style) requests and answers, pure: which endpoint, how
//! `AssumeRoleWithOIDC` (anonymous, form-encoded POST) and `AssumeRole` (ACS3-HMAC-SHA256 signed
//! POST to `/` with the parameters in the query, as the official `alibabacloud_sts20150401` SDK
//! sends it) look on the wire, how answers and errors are read, and the session names the
//! operator uses. The clock, nonce and token come from the caller, so everything is reproducible.

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;

use crate::endpoint::{self, Endpoint, EndpointError};
use crate::policy::RetryClass;
use crate::secret::Secret;
use crate::signer::{self, Credentials, RequestToSign};

pub const STS_VERSION: &str = "2015-04-01";
pub const ASSUME_ROLE: &str = "AssumeRole";
pub const ASSUME_ROLE_WITH_OIDC: &str = "AssumeRoleWithOIDC";
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
/// The global STS endpoint, used when neither an endpoint nor a region is configured.
pub const GLOBAL_STS_HOST: &str = "sts.aliyuncs.com";
/// `RoleSessionName` limits documented for STS.
pub const SESSION_NAME_MIN: usize = 2;
pub const SESSION_NAME_MAX: usize = 64;

/// Temporary credentials and when they stop working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemporaryCredentials {
    pub credentials: Credentials,
    pub expiration: Timestamp,
}

/// The STS endpoint: an explicit one wins (http allowed, for a simulator), then
/// `sts[-vpc].{region}.aliyuncs.com`, then the global endpoint (also when the VPC endpoint is
/// asked for without a region); the same order as the official credential libraries.
pub fn sts_endpoint(
    explicit: Option<&str>,
    region: Option<&str>,
    vpc: bool,
) -> Result<Endpoint, EndpointError> {
    if let Some(text) = explicit.map(str::trim).filter(|t| !t.is_empty()) {
        return endpoint::parse(text);
    }
    let prefix = if vpc { "sts-vpc" } else { "sts" };
    match region.map(str::trim).filter(|r| !r.is_empty()) {
        Some(region) => {
            let ok = region.len() <= 32
                && region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                return Err(EndpointError::BadRegion(region.to_owned()));
            }
            Ok(Endpoint {
                https: true,
                host: format!("{prefix}.{region}.aliyuncs.com"),
            })
        }
        None => Ok(Endpoint {
            https: true,
            host: GLOBAL_STS_HOST.into(),
        }),
    }
}

/// `application/x-www-form-urlencoded` in the given order, RFC 3986-encoded (a form decoder reads
/// `%20` as a space, so one encoder serves the query and the body).
pub fn form_encode<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                signer::percent_encode(k.as_ref()),
                signer::percent_encode(v.as_ref())
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Decodes a query string or form body (`+` is a space); `None` on a malformed escape.
pub fn form_decode(text: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for part in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.push((
            signer::percent_decode(&k.replace('+', " "))?,
            signer::percent_decode(&v.replace('+', " "))?,
        ));
    }
    Some(out)
}

/// An HTTP request ready to send. The body can hold the OIDC token and the headers a signature
/// and a security token, so `Debug` shows names and sizes only.
#[derive(Clone, PartialEq, Eq)]
pub struct PreparedRequest {
    pub method: &'static str,
    pub path: &'static str,
    /// The query string as sent (no `?`).
    pub query: String,
    /// Lower-case names; `host` included (the HTTP client sets it from the URL).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl fmt::Debug for PreparedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (query, headers, body) = (&self.query, &self.headers, &self.body);
        crate::secret::debug_request(
            f,
            "PreparedRequest",
            self.method,
            self.path,
            query,
            headers,
            body,
        )
    }
}

impl PreparedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Inputs of an `AssumeRoleWithOIDC` exchange.
#[derive(Debug, Clone)]
pub struct OidcExchange<'a> {
    pub role_arn: &'a str,
    pub oidc_provider_arn: &'a str,
    pub oidc_token: &'a Secret,
    pub role_session_name: &'a str,
    pub duration_seconds: u64,
}

/// `AssumeRoleWithOIDC`: anonymous (the token is the proof), POST `/` with the protocol
/// parameters in the query and the request parameters, token included, in a form body, so the
/// token never appears in a URL that a proxy might log. `timestamp` is ISO 8601 UTC.
pub fn oidc_request(host: &str, ex: &OidcExchange<'_>, timestamp: &str) -> PreparedRequest {
    let query = form_encode(&[
        ("Action", ASSUME_ROLE_WITH_OIDC),
        ("Format", "JSON"),
        ("Version", STS_VERSION),
        ("Timestamp", timestamp),
    ]);
    let duration = ex.duration_seconds.to_string();
    let body = form_encode(&[
        ("RoleArn", ex.role_arn),
        ("OIDCProviderArn", ex.oidc_provider_arn),
        ("OIDCToken", ex.oidc_token.expose()),
        ("RoleSessionName", ex.role_session_name),
        ("DurationSeconds", duration.as_str()),
    ]);
    PreparedRequest {
        method: "POST",
        path: "/",
        query,
        headers: vec![
            ("host".into(), host.into()),
            ("content-type".into(), FORM_CONTENT_TYPE.into()),
            ("accept".into(), "application/json".into()),
        ],
        body: body.into_bytes(),
    }
}

/// Inputs of an `AssumeRole` exchange.
#[derive(Debug, Clone)]
pub struct AssumeRoleExchange<'a> {
    pub role_arn: &'a str,
    pub role_session_name: &'a str,
    pub duration_seconds: u64,
}

/// `AssumeRole`, signed with the caller's credentials (ACS3-HMAC-SHA256, RPC style): POST `/`,
/// the parameters in the canonical query, an empty body, `x-acs-action: AssumeRole` and
/// `x-acs-version: 2015-04-01`, as the official STS SDK does with signature V3.
pub fn assume_role_request(
    host: &str,
    ex: &AssumeRoleExchange<'_>,
    caller: &Credentials,
    date: &str,
    nonce: &str,
) -> PreparedRequest {
    let query = vec![
        (
            "DurationSeconds".to_string(),
            ex.duration_seconds.to_string(),
        ),
        ("RoleArn".to_string(), ex.role_arn.to_string()),
        (
            "RoleSessionName".to_string(),
            ex.role_session_name.to_string(),
        ),
    ];
    let signed = signer::sign_request(
        &RequestToSign {
            method: "POST",
            host,
            path: "/",
            query: &query,
            action: ASSUME_ROLE,
            version: STS_VERSION,
            body: b"",
            content_type: None,
        },
        caller,
        date,
        nonce,
    );
    let mut headers = signed.headers;
    headers.push(("accept".into(), "application/json".into()));
    PreparedRequest {
        method: "POST",
        path: "/",
        query: signed.query,
        headers,
        body: Vec::new(),
    }
}

/// ISO 8601 UTC with seconds, the `Timestamp` parameter and `Expiration` format of STS.
pub fn format_timestamp(ts: Timestamp) -> String {
    signer::format_acs_date(ts)
}

/// Why an STS exchange gave no credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StsFailureKind {
    /// STS answered with an error code.
    Rejected,
    /// Connection, DNS, TLS or timeout.
    Unreachable,
    /// An answer that is not STS's JSON, or lacks the credentials.
    InvalidResponse,
}

/// A failed STS exchange: what was asked, and what STS said. `Display` leaves out the request id
/// (it changes on every call and would churn the status) and never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsFailure {
    pub action: &'static str,
    pub role_arn: String,
    pub kind: StsFailureKind,
    pub http_status: Option<u16>,
    pub code: Option<String>,
    pub message: String,
    /// For logs only.
    pub request_id: Option<String>,
}

impl fmt::Display for StsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "STS {} for role {} failed: ", self.action, self.role_arn)?;
        if let Some(status) = self.http_status {
            write!(f, "HTTP {status} ")?;
        }
        if let Some(code) = &self.code {
            write!(f, "{code}: ")?;
        }
        // A signature mismatch quotes the server's string to sign, which differs on every call
        // (date, nonce): keep it out so the condition does not change with each retry.
        let mut message = match self.message.split_once("server string to sign is:") {
            Some((head, _)) => head.trim_end().to_owned(),
            None => self.message.clone(),
        };
        crate::text::truncate(&mut message, 512);
        f.write_str(&message)
    }
}

impl StsFailure {
    pub fn retry_class(&self) -> RetryClass {
        let code = self.code.as_deref().unwrap_or_default();
        if code.starts_with("Throttling") {
            return RetryClass::Throttled;
        }
        match (self.kind, self.http_status) {
            (StsFailureKind::Unreachable | StsFailureKind::InvalidResponse, _) => {
                RetryClass::Transient
            }
            (_, Some(500..=599)) => RetryClass::Transient,
            _ if code == "InternalError" || code == "ServiceUnavailable" => RetryClass::Transient,
            _ => RetryClass::Permanent,
        }
    }

    pub fn local(
        action: &'static str,
        role_arn: &str,
        kind: StsFailureKind,
        message: String,
    ) -> Self {
        Self {
            action,
            role_arn: role_arn.to_owned(),
            kind,
            http_status: None,
            code: None,
            message,
            request_id: None,
        }
    }
}

#[derive(Deserialize)]
struct WireAnswer {
    #[serde(alias = "requestId")]
    #[serde(rename = "RequestId", default)]
    request_id: Option<String>,
    #[serde(rename = "Code", alias = "code", default)]
    code: Option<String>,
    #[serde(rename = "Message", alias = "message", default)]
    message: Option<String>,
    #[serde(rename = "Credentials", default)]
    credentials: Option<WireCredentials>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireCredentials {
    access_key_id: Option<String>,
    access_key_secret: Option<String>,
    security_token: Option<String>,
    expiration: Option<String>,
}

/// Reads an STS answer: 2xx with `Credentials {AccessKeyId, AccessKeySecret, SecurityToken,
/// Expiration}`, or an error body with `Code`/`Message`. Pure.
pub fn parse_response(
    action: &'static str,
    role_arn: &str,
    http_status: u16,
    header_request_id: Option<&str>,
    body: &[u8],
) -> Result<TemporaryCredentials, StsFailure> {
    let parsed: Option<WireAnswer> = serde_json::from_slice(body).ok();
    let failure =
        |kind, code: Option<String>, message: String, request_id: Option<String>| StsFailure {
            action,
            role_arn: role_arn.to_owned(),
            kind,
            http_status: Some(http_status),
            code,
            message,
            request_id: request_id.or_else(|| header_request_id.map(str::to_owned)),
        };
    let Some(answer) = parsed else {
        // A 2xx answer in another format (XML, say) may hold the very credentials asked for, so
        // only its size is told; an error page is shown in part, as it helps and holds none.
        let (kind, message) = if (200..300).contains(&http_status) {
            (
                StsFailureKind::InvalidResponse,
                format!(
                    "answer is not STS JSON ({} bytes, not shown: a successful answer may carry credentials)",
                    body.len()
                ),
            )
        } else {
            let text = String::from_utf8_lossy(body);
            let snippet: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
            (
                StsFailureKind::Rejected,
                format!("answer is not STS JSON: {snippet}"),
            )
        };
        return Err(failure(kind, None, message, None));
    };
    if !(200..300).contains(&http_status) || answer.code.is_some() && answer.credentials.is_none() {
        let message = answer
            .message
            .unwrap_or_else(|| "no message in the answer".into());
        return Err(failure(
            StsFailureKind::Rejected,
            answer.code,
            message,
            answer.request_id,
        ));
    }
    let missing = |what: &str| {
        failure(
            StsFailureKind::InvalidResponse,
            None,
            format!("answer lacks Credentials.{what}"),
            None,
        )
    };
    let c = answer.credentials.ok_or_else(|| {
        failure(
            StsFailureKind::InvalidResponse,
            None,
            "answer has no Credentials".into(),
            None,
        )
    })?;
    let id = c
        .access_key_id
        .filter(|v| !v.is_empty())
        .ok_or_else(|| missing("AccessKeyId"))?;
    let secret = c
        .access_key_secret
        .filter(|v| !v.is_empty())
        .ok_or_else(|| missing("AccessKeySecret"))?;
    let token = c
        .security_token
        .filter(|v| !v.is_empty())
        .ok_or_else(|| missing("SecurityToken"))?;
    let expiration = c
        .expiration
        .as_deref()
        .and_then(|e| e.parse::<Timestamp>().ok())
        .ok_or_else(|| missing("Expiration (ISO 8601 UTC)"))?;
    Ok(TemporaryCredentials {
        credentials: Credentials::new(id, Secret::new(secret)).with_security_token(token),
        expiration,
    })
}

/// A valid `RoleSessionName` from free text: characters outside `[A-Za-z0-9.@_-]` become `-`,
/// cut to 64, padded to 2. Deterministic, so every object of one namespace shares a session
/// (and a cached exchange) while the role's audit log still names the namespace.
pub fn session_name(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(SESSION_NAME_MAX)
        .collect();
    while out.len() < SESSION_NAME_MIN {
        out.push('-');
    }
    out
}

/// The session name of a cross-account role assumed for objects of `namespace`.
pub fn namespace_session_name(namespace: &str) -> String {
    session_name(&format!("sparkjobrun.{namespace}"))
}

/// Whether `name` is a valid `RoleSessionName`.
pub fn is_valid_session_name(name: &str) -> bool {
    (SESSION_NAME_MIN..=SESSION_NAME_MAX).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '_' | '-'))
}

/// Seconds for `DurationSeconds` (at least 1).
pub fn duration_seconds(d: Duration) -> u64 {
    d.as_secs().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::{CanonicalInput, canonical_request, hex_sha256, signature, string_to_sign};

    #[test]
    fn endpoint_order() {
        type Case<'a> = (Option<&'a str>, Option<&'a str>, bool, Result<&'a str, ()>);
        let cases: [Case<'_>; 8] = [
            (None, None, false, Ok("https://sts.aliyuncs.com")),
            (
                None,
                Some("cn-hangzhou"),
                false,
                Ok("https://sts.cn-hangzhou.aliyuncs.com"),
            ),
            (
                None,
                Some("cn-hangzhou"),
                true,
                Ok("https://sts-vpc.cn-hangzhou.aliyuncs.com"),
            ),
            (
                Some("sts-vpc.cn-beijing.aliyuncs.com"),
                Some("cn-hangzhou"),
                false,
                Ok("https://sts-vpc.cn-beijing.aliyuncs.com"),
            ),
            (
                Some("http://127.0.0.1:8080"),
                None,
                false,
                Ok("http://127.0.0.1:8080"),
            ),
            (Some("  "), None, false, Ok("https://sts.aliyuncs.com")),
            (None, None, true, Ok("https://sts.aliyuncs.com")),
            (None, Some("CN_X"), false, Err(())),
        ];
        for (explicit, region, vpc, want) in cases {
            let got = sts_endpoint(explicit, region, vpc).map(|e| e.base_url());
            match want {
                Ok(url) => assert_eq!(got.as_deref(), Ok(url), "{explicit:?} {region:?} {vpc}"),
                Err(()) => assert!(got.is_err(), "{explicit:?} {region:?} {vpc}: {got:?}"),
            }
        }
    }

    #[test]
    fn form_encoding_round_trips() {
        let pairs = [
            ("OIDCToken", "a.b+c/d=="),
            ("RoleSessionName", "x y"),
            ("E", ""),
        ];
        let text = form_encode(&pairs);
        assert_eq!(text, "OIDCToken=a.b%2Bc%2Fd%3D%3D&RoleSessionName=x%20y&E=");
        let back = form_decode(&text).expect("decodes");
        let want: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        assert_eq!(back, want);
        assert_eq!(
            form_decode("a=x+y&b").expect("decodes"),
            vec![("a".into(), "x y".into()), ("b".into(), String::new())]
        );
        assert_eq!(form_decode("a=%G0"), None);
    }

    #[test]
    fn oidc_request_shape() {
        let token = Secret::new("eyJhbGciOi.payload.sig");
        let req = oidc_request(
            "sts.cn-hangzhou.aliyuncs.com",
            &OidcExchange {
                role_arn: "acs:ram::1:role/r",
                oidc_provider_arn: "acs:ram::1:oidc-provider/p",
                oidc_token: &token,
                role_session_name: "sparkjobrun-operator",
                duration_seconds: 3600,
            },
            "2024-05-01T08:00:00Z",
        );
        assert_eq!((req.method, req.path), ("POST", "/"));
        assert_eq!(
            req.query,
            "Action=AssumeRoleWithOIDC&Format=JSON&Version=2015-04-01&Timestamp=2024-05-01T08%3A00%3A00Z"
        );
        assert!(!req.query.contains("eyJ"), "token kept out of the URL");
        assert_eq!(req.header("content-type"), Some(FORM_CONTENT_TYPE));
        assert!(req.header("authorization").is_none(), "anonymous");
        let body = String::from_utf8(req.body.clone()).expect("utf8");
        let params: std::collections::BTreeMap<String, String> =
            form_decode(&body).expect("form").into_iter().collect();
        assert_eq!(params["OIDCToken"], "eyJhbGciOi.payload.sig");
        assert_eq!(params["RoleArn"], "acs:ram::1:role/r");
        assert_eq!(params["OIDCProviderArn"], "acs:ram::1:oidc-provider/p");
        assert_eq!(params["RoleSessionName"], "sparkjobrun-operator");
        assert_eq!(params["DurationSeconds"], "3600");
        let shown = format!("{req:?}");
        assert!(!shown.contains("eyJ"), "{shown}");
    }

    #[test]
    fn assume_role_request_is_signed_rpc() {
        let caller = Credentials::new("AKID", "caller-secret").with_security_token("tok");
        let req = assume_role_request(
            "sts.aliyuncs.com",
            &AssumeRoleExchange {
                role_arn: "acs:ram::222:role/emr-reader",
                role_session_name: "sparkjobrun.team-a",
                duration_seconds: 900,
            },
            &caller,
            "2024-05-01T08:00:00Z",
            "0123456789abcdef0123456789abcdef",
        );
        assert_eq!((req.method, req.path), ("POST", "/"));
        assert_eq!(
            req.query,
            "DurationSeconds=900&RoleArn=acs%3Aram%3A%3A222%3Arole%2Femr-reader&RoleSessionName=sparkjobrun.team-a"
        );
        assert_eq!(req.header("x-acs-action"), Some("AssumeRole"));
        assert_eq!(req.header("x-acs-version"), Some("2015-04-01"));
        assert_eq!(req.header("x-acs-security-token"), Some("tok"));
        assert_eq!(
            req.header("x-acs-content-sha256"),
            Some(signer::EMPTY_PAYLOAD_SHA256)
        );
        let auth = signer::parse_authorization(req.header("authorization").expect("signed"))
            .expect("parses");
        let canonical = canonical_request(&CanonicalInput {
            method: "POST",
            canonical_uri: "/",
            canonical_query: &req.query,
            headers: &req.headers,
            signed_headers: &auth.signed_headers,
            hashed_payload: &hex_sha256(b""),
        });
        assert_eq!(
            signature(&Secret::new("caller-secret"), &string_to_sign(&canonical)),
            auth.signature
        );
        assert!(!format!("{req:?}").contains("tok\""));
    }

    #[test]
    fn answers() {
        let ok = br#"{"RequestId":"R","AssumedRoleUser":{"Arn":"acs:ram::1:role/r/s","AssumedRoleId":"3:s"},"Credentials":{"SecurityToken":"CAIS-token","AccessKeyId":"STS.NUx","AccessKeySecret":"sk","Expiration":"2024-05-01T09:00:00Z"}}"#;
        let t = parse_response(ASSUME_ROLE, "r", 200, None, ok).expect("credentials");
        assert_eq!(t.credentials.access_key_id, "STS.NUx");
        assert_eq!(t.credentials.access_key_secret.expose(), "sk");
        assert_eq!(
            t.credentials.security_token.as_ref().map(Secret::expose),
            Some("CAIS-token")
        );
        assert_eq!(t.expiration.to_string(), "2024-05-01T09:00:00Z");

        let denied = br#"{"RequestId":"6894B13B","HostId":"sts.aliyuncs.com","Code":"NoPermission","Message":"You are not authorized to do this action. You should be authorized by RAM.","Recommend":"https://x"}"#;
        let e = parse_response(ASSUME_ROLE, "acs:ram::2:role/x", 403, None, denied)
            .expect_err("denied");
        assert_eq!(e.code.as_deref(), Some("NoPermission"));
        assert_eq!(e.request_id.as_deref(), Some("6894B13B"));
        assert_eq!(e.retry_class(), RetryClass::Permanent);
        let shown = e.to_string();
        assert_eq!(
            shown,
            "STS AssumeRole for role acs:ram::2:role/x failed: HTTP 403 NoPermission: You are not authorized to do this action. You should be authorized by RAM."
        );
        assert!(!shown.contains("6894B13B"), "no request id");

        let mismatch = parse_response(
            ASSUME_ROLE,
            "r",
            400,
            None,
            br#"{"Code":"SignatureDoesNotMatch","Message":"Specified signature is not matched with our calculation. server string to sign is:ACS3-HMAC-SHA256\nabc"}"#,
        )
        .expect_err("mismatch");
        assert!(
            mismatch.to_string().ends_with("with our calculation."),
            "{mismatch}"
        );

        let throttled = parse_response(
            ASSUME_ROLE,
            "r",
            400,
            None,
            br#"{"Code":"Throttling.User","Message":"m"}"#,
        )
        .expect_err("throttled");
        assert_eq!(throttled.retry_class(), RetryClass::Throttled);
        let html = parse_response(
            ASSUME_ROLE,
            "r",
            502,
            Some("H"),
            b"<html>bad gateway</html>",
        )
        .expect_err("html");
        assert_eq!(html.retry_class(), RetryClass::Transient);
        assert_eq!(html.request_id.as_deref(), Some("H"));
        assert!(html.message.contains("bad gateway"), "{}", html.message);
        // A 2xx that is not JSON (e.g. the XML format) may be credentials: never echoed
        // (hardening 9.9), only its size.
        let xml =
            b"<AssumeRoleResponse><Credentials><AccessKeySecret>s3cr3t-VALUE</AccessKeySecret>\
            <SecurityToken>tok-VALUE</SecurityToken></Credentials></AssumeRoleResponse>";
        let e = parse_response(ASSUME_ROLE, "r", 200, None, xml).expect_err("xml");
        assert_eq!(e.kind, StsFailureKind::InvalidResponse);
        for secret in ["s3cr3t", "tok-VALUE", "Credentials"] {
            assert!(!e.message.contains(secret), "{}", e.message);
            assert!(!format!("{e:?}").contains(secret), "{e:?}");
        }
        assert!(
            e.message.contains(&format!("{} bytes", xml.len())),
            "{}",
            e.message
        );
        for (body, what) in [
            (&br#"{"Credentials":{"AccessKeyId":"a","AccessKeySecret":"b","Expiration":"2024-05-01T09:00:00Z"}}"#[..], "SecurityToken"),
            (br#"{"Credentials":{"AccessKeyId":"a","AccessKeySecret":"b","SecurityToken":"t","Expiration":"soon"}}"#, "Expiration"),
            (br#"{"RequestId":"x"}"#, "no Credentials"),
        ] {
            let e = parse_response(ASSUME_ROLE_WITH_OIDC, "r", 200, None, body).expect_err(what);
            assert_eq!(e.kind, StsFailureKind::InvalidResponse);
            assert!(e.message.contains(what), "{}", e.message);
        }
    }

    #[test]
    fn session_names() {
        let cases = [
            ("team-a", "team-a"),
            ("a", "a-"),
            ("", "--"),
            ("ns/name with space", "ns-name-with-space"),
            ("user@corp.example_x", "user@corp.example_x"),
        ];
        for (input, want) in cases {
            assert_eq!(session_name(input), want, "{input:?}");
            assert!(is_valid_session_name(&session_name(input)));
        }
        let long = "n".repeat(100);
        assert_eq!(session_name(&long).len(), SESSION_NAME_MAX);
        assert_eq!(namespace_session_name("team-a"), "sparkjobrun.team-a");
        let ns63 = "x".repeat(63);
        assert!(is_valid_session_name(&namespace_session_name(&ns63)));
        assert!(!is_valid_session_name("a"));
        assert!(!is_valid_session_name("a b"));
        assert_eq!(duration_seconds(Duration::from_millis(10)), 1);
    }

    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct StsKnownAnswer {
        name: String,
        action: String,
        #[serde(default)]
        access_key_id: String,
        #[serde(default)]
        access_key_secret: String,
        #[serde(default)]
        security_token: Option<String>,
        #[serde(default)]
        role_arn: String,
        #[serde(default)]
        role_session_name: String,
        #[serde(default)]
        duration_seconds: u64,
        method: String,
        path: String,
        query: String,
        headers: std::collections::BTreeMap<String, String>,
        #[serde(default)]
        signed_headers: Vec<String>,
        #[serde(default)]
        signature: String,
        #[serde(default)]
        params: std::collections::BTreeMap<String, String>,
    }

    fn sts_known_answers() -> Vec<StsKnownAnswer> {
        #[derive(serde::Deserialize)]
        struct File {
            cases: Vec<StsKnownAnswer>,
        }
        let file: File =
            serde_json::from_str(include_str!("../../tests/fixtures/sts-known-answers.json"))
                .expect("fixture parses");
        file.cases
    }

    /// AssumeRole captured from the official STS SDK (tools/signer-capture/capture_sts.py): our
    /// canonicalisation reproduces its signature over its signed headers, and our own request
    /// for the same inputs has its method, path, query and protocol headers.
    #[test]
    fn assume_role_matches_the_official_sdk() {
        let cases: Vec<StsKnownAnswer> = sts_known_answers()
            .into_iter()
            .filter(|c| c.action == ASSUME_ROLE)
            .collect();
        assert_eq!(cases.len(), 2);
        for case in cases {
            let headers: Vec<(String, String)> = case.headers.clone().into_iter().collect();
            let query = signer::canonicalize_raw_query(&case.query).expect("query decodes");
            let canonical = canonical_request(&CanonicalInput {
                method: &case.method,
                canonical_uri: &case.path,
                canonical_query: &query,
                headers: &headers,
                signed_headers: &case.signed_headers,
                hashed_payload: &hex_sha256(b""),
            });
            let secret = Secret::new(case.access_key_secret.clone());
            assert_eq!(
                signature(&secret, &string_to_sign(&canonical)),
                case.signature,
                "{}",
                case.name
            );

            let mut caller = Credentials::new(case.access_key_id.clone(), secret.clone());
            caller.security_token = case.security_token.clone().map(Secret::new);
            let ours = assume_role_request(
                &case.headers["host"],
                &AssumeRoleExchange {
                    role_arn: &case.role_arn,
                    role_session_name: &case.role_session_name,
                    duration_seconds: case.duration_seconds,
                },
                &caller,
                &case.headers["x-acs-date"],
                &case.headers["x-acs-signature-nonce"],
            );
            assert_eq!(
                (ours.method, ours.path),
                (case.method.as_str(), case.path.as_str())
            );
            assert_eq!(
                ours.query, query,
                "{}: canonical query sent as is",
                case.name
            );
            for name in [
                "host",
                "x-acs-action",
                "x-acs-version",
                "x-acs-date",
                "x-acs-signature-nonce",
                "x-acs-content-sha256",
                "x-acs-security-token",
            ] {
                assert_eq!(
                    ours.header(name),
                    case.headers.get(name).map(String::as_str),
                    "{} header {name}",
                    case.name
                );
            }
            // Our signer always repeats the key id in a header; the SDK does so with a token.
            if case.security_token.is_some() {
                assert_eq!(
                    ours.header("x-acs-accesskey-id"),
                    case.headers.get("x-acs-accesskey-id").map(String::as_str)
                );
            }
            // Signing the SDK's header set with our request's values gives the SDK's answer too.
            let mut merged = ours.headers.clone();
            for (n, v) in &headers {
                if !merged.iter().any(|(m, _)| m == n) {
                    merged.push((n.clone(), v.clone()));
                }
            }
            let ours_canonical = canonical_request(&CanonicalInput {
                method: ours.method,
                canonical_uri: ours.path,
                canonical_query: &ours.query,
                headers: &merged,
                signed_headers: &case.signed_headers,
                hashed_payload: &hex_sha256(&ours.body),
            });
            assert_eq!(
                signature(&secret, &string_to_sign(&ours_canonical)),
                case.signature,
                "{}",
                case.name
            );
        }
    }

    /// AssumeRoleWithOIDC through the SDK: our request carries the same request parameters
    /// (the SDK puts them in the query, we in a form body) and is anonymous too.
    #[test]
    fn assume_role_with_oidc_matches_the_official_sdk() {
        let case = sts_known_answers()
            .into_iter()
            .find(|c| c.action == ASSUME_ROLE_WITH_OIDC)
            .expect("oidc case");
        assert!(!case.headers.contains_key("authorization"));
        let p = &case.params;
        let token = Secret::new(p["OIDCToken"].clone());
        let ours = oidc_request(
            &case.headers["host"],
            &OidcExchange {
                role_arn: &p["RoleArn"],
                oidc_provider_arn: &p["OIDCProviderArn"],
                oidc_token: &token,
                role_session_name: &p["RoleSessionName"],
                duration_seconds: p["DurationSeconds"].parse().expect("number"),
            },
            &p["Timestamp"],
        );
        assert_eq!(
            (ours.method, ours.path),
            (case.method.as_str(), case.path.as_str())
        );
        let mut sent: std::collections::BTreeMap<String, String> = form_decode(&ours.query)
            .expect("query")
            .into_iter()
            .collect();
        sent.extend(form_decode(std::str::from_utf8(&ours.body).expect("utf8")).expect("body"));
        for (k, v) in p {
            match k.as_str() {
                // Per-request, or spelled differently (the STS gateway reads Format
                // case-insensitively; the credential libraries send JSON).
                "SignatureNonce" => assert!(!sent.contains_key(k)),
                "Format" => assert!(sent[k].eq_ignore_ascii_case(v)),
                _ => assert_eq!(sent.get(k), Some(v), "parameter {k}"),
            }
        }
        assert!(ours.header("authorization").is_none());
        assert!(!case.query.is_empty());
    }
}
