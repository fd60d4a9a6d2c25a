//! Pure ACS3-HMAC-SHA256 verification, as strict as the service: a client that passes here signs
//! the way the real gateway expects. Clock and nonce memory come from the caller, so every branch
//! is table-testable.
//!
//! Order of the checks (the simulator's reading of the gateway: readable credentials first, then
//! which API is called, then request hygiene, time, key, token, signature and last the nonce):
//! 1. `Authorization` present and parseable;
//! 2. required headers present;
//! 3. method and path name an API of the product, `x-acs-action` names the same one, and
//!    `x-acs-version` is the product's;
//! 4. every `x-acs-*` header and `host` is signed;
//! 5. `x-acs-content-sha256` matches the body;
//! 6. `x-acs-date` well formed, then within 15 minutes of `now`;
//! 7. AccessKey known, active, and `x-acs-accesskey-id` (if sent) names the same key;
//! 8. security token present, equal and unexpired for STS keys, absent otherwise;
//! 9. signature;
//! 10. nonce unused (only a correctly signed request spends its nonce).

use std::collections::{BTreeSet, HashMap};

use jiff::Timestamp;
use serde::{Deserialize, Deserializer};

use super::error::ServiceError;
use crate::secret::Secret;
use crate::signer;

/// The only API version of the product.
pub const API_VERSION: &str = "2023-08-08";
/// The only action the simulator serves.
pub const GET_JOB_RUN: &str = "GetJobRun";
/// How far `x-acs-date` may be from the server clock, either way.
pub const MAX_CLOCK_SKEW_MS: i64 = 15 * 60 * 1000;

const REQUIRED_HEADERS: [&str; 6] = [
    "host",
    "x-acs-action",
    "x-acs-version",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
];

/// A request as it arrived: method, path and query exactly as sent, header names lower-cased.
#[derive(Clone, PartialEq, Eq)]
pub struct ReceivedRequest {
    pub method: String,
    /// The encoded path as sent; it is signed unchanged.
    pub path: String,
    /// The query string as sent, without the `?`.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ReceivedRequest {
    /// The first value of a header (names are lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl std::fmt::Debug for ReceivedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (query, headers, body) = (&self.query, &self.headers, &self.body);
        crate::secret::debug_request(
            f,
            "ReceivedRequest",
            &self.method,
            &self.path,
            query,
            headers,
            body,
        )
    }
}

/// One AccessKey the simulated service knows. With `security_token` it stands for STS
/// credentials, which are only valid together with that token and until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Account {
    pub access_key_id: String,
    #[serde(deserialize_with = "de_secret")]
    pub access_key_secret: Secret,
    #[serde(default, deserialize_with = "de_opt_secret")]
    pub security_token: Option<Secret>,
    /// When the STS token stops being accepted (RFC 3339, e.g. `2030-01-01T00:00:00Z`).
    #[serde(default, deserialize_with = "de_opt_timestamp")]
    pub expires_at: Option<Timestamp>,
    /// A disabled key is known but refused (`InvalidAccessKeyId.Inactive`).
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

fn de_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    String::deserialize(d).map(Secret::new)
}

fn de_opt_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Secret::new))
}

fn de_opt_timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| s.parse::<Timestamp>().map_err(serde::de::Error::custom))
        .transpose()
}

impl Account {
    pub fn new(access_key_id: impl Into<String>, secret: impl Into<Secret>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            access_key_secret: secret.into(),
            security_token: None,
            expires_at: None,
            active: true,
        }
    }

    /// Turns the key into STS credentials that need `token` and expire at `expires_at`.
    pub fn with_security_token(
        mut self,
        token: impl Into<Secret>,
        expires_at: Option<Timestamp>,
    ) -> Self {
        self.security_token = Some(token.into());
        self.expires_at = expires_at;
        self
    }

    pub fn inactive(mut self) -> Self {
        self.active = false;
        self
    }
}

/// The AccessKeys the simulated service knows, by id.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    by_id: HashMap<String, Account>,
}

impl Accounts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key, replacing one with the same id.
    pub fn insert(&mut self, account: Account) {
        self.by_id.insert(account.access_key_id.clone(), account);
    }

    pub fn get(&self, access_key_id: &str) -> Option<&Account> {
        self.by_id.get(access_key_id)
    }

    pub fn remove(&mut self, access_key_id: &str) -> bool {
        self.by_id.remove(access_key_id).is_some()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

impl FromIterator<Account> for Accounts {
    fn from_iter<I: IntoIterator<Item = Account>>(iter: I) -> Self {
        let mut accounts = Self::new();
        for account in iter {
            accounts.insert(account);
        }
        accounts
    }
}

/// Who made a verified request, and which API it calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub access_key_id: String,
    /// The request carried (and needed) an STS token.
    pub with_security_token: bool,
    pub api: Api,
}

/// The product's job-run APIs, recognised by method and path so requests the official SDK signs
/// for any of them verify; the server then answers only [`Api::GetJobRun`]. Ids are decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Api {
    GetJobRun {
        workspace_id: String,
        job_run_id: String,
    },
    CancelJobRun {
        workspace_id: String,
        job_run_id: String,
    },
    ListJobRuns {
        workspace_id: String,
    },
    StartJobRun {
        workspace_id: String,
    },
}

impl Api {
    /// `{GET,DELETE} /api/v1/workspaces/{workspaceId}/jobRuns/{jobRunId}` and
    /// `{GET,POST} /api/v1/workspaces/{workspaceId}/jobRuns`, each id one percent-encoded
    /// segment; `None` for anything else.
    pub fn resolve(method: &str, raw_path: &str) -> Option<Self> {
        let rest = raw_path.strip_prefix("/api/v1/workspaces/")?;
        let segments: Vec<&str> = rest.split('/').collect();
        if segments.iter().any(|s| s.is_empty()) || segments.get(1) != Some(&"jobRuns") {
            return None;
        }
        let workspace_id = signer::percent_decode(segments[0])?;
        match (method, &segments[2..]) {
            ("GET", []) => Some(Self::ListJobRuns { workspace_id }),
            ("POST", []) => Some(Self::StartJobRun { workspace_id }),
            ("GET", [id]) => Some(Self::GetJobRun {
                workspace_id,
                job_run_id: signer::percent_decode(id)?,
            }),
            ("DELETE", [id]) => Some(Self::CancelJobRun {
                workspace_id,
                job_run_id: signer::percent_decode(id)?,
            }),
            _ => None,
        }
    }

    /// The `x-acs-action` this API is signed with.
    pub fn action(&self) -> &'static str {
        match self {
            Self::GetJobRun { .. } => GET_JOB_RUN,
            Self::CancelJobRun { .. } => "CancelJobRun",
            Self::ListJobRuns { .. } => "ListJobRuns",
            Self::StartJobRun { .. } => "StartJobRun",
        }
    }

    pub fn workspace_id(&self) -> &str {
        match self {
            Self::GetJobRun { workspace_id, .. }
            | Self::CancelJobRun { workspace_id, .. }
            | Self::ListJobRuns { workspace_id }
            | Self::StartJobRun { workspace_id } => workspace_id,
        }
    }

    /// The job run the path names, if it names one.
    pub fn job_run_id(&self) -> Option<&str> {
        match self {
            Self::GetJobRun { job_run_id, .. } | Self::CancelJobRun { job_run_id, .. } => {
                Some(job_run_id)
            }
            Self::ListJobRuns { .. } | Self::StartJobRun { .. } => None,
        }
    }
}

/// Nonces already spent, per AccessKey. An entry is kept until its request's `x-acs-date` is more
/// than 15 minutes old: from then on the date check rejects a replay anyway, so memory stays
/// bounded by the request rate over that window.
#[derive(Debug, Default)]
pub struct NonceCache {
    seen: HashMap<(String, String), i64>,
    by_expiry: BTreeSet<(i64, String, String)>,
}

impl NonceCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `nonce` was spent by `access_key_id` and is still remembered at `now`.
    pub fn is_used(&mut self, access_key_id: &str, nonce: &str, now: Timestamp) -> bool {
        self.forget_expired(now);
        self.seen
            .contains_key(&(access_key_id.to_owned(), nonce.to_owned()))
    }

    /// Remembers a spent nonce until `forget_after`.
    pub fn remember(
        &mut self,
        access_key_id: &str,
        nonce: &str,
        forget_after: Timestamp,
        now: Timestamp,
    ) {
        self.forget_expired(now);
        let key = (access_key_id.to_owned(), nonce.to_owned());
        let expiry = forget_after.as_millisecond();
        if let Some(old) = self.seen.insert(key.clone(), expiry) {
            self.by_expiry.remove(&(old, key.0.clone(), key.1.clone()));
        }
        self.by_expiry.insert((expiry, key.0, key.1));
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn forget_expired(&mut self, now: Timestamp) {
        let now_ms = now.as_millisecond();
        while let Some(first) = self.by_expiry.first() {
            if first.0 >= now_ms {
                break;
            }
            if let Some((_, key_id, nonce)) = self.by_expiry.pop_first() {
                self.seen.remove(&(key_id, nonce));
            }
        }
    }
}

/// Parses `x-acs-date`: exactly `YYYY-MM-DDTHH:MM:SSZ`, as the SDKs send it.
pub fn parse_acs_date(value: &str) -> Option<Timestamp> {
    let bytes = value.as_bytes();
    let shape_ok = bytes.len() == 20
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b'T',
            13 | 16 => *b == b':',
            19 => *b == b'Z',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    value.parse::<Timestamp>().ok()
}

/// Verifies a GetJobRun request. See the module documentation for the order of the checks; on
/// success the nonce is spent.
pub fn verify(
    req: &ReceivedRequest,
    accounts: &Accounts,
    now: Timestamp,
    nonces: &mut NonceCache,
) -> Result<Caller, ServiceError> {
    let (access_key_id, with_security_token, api) =
        verify_signed(req, accounts, now, nonces, |req, action, version| {
            let api = Api::resolve(&req.method, &req.path)
                .filter(|api| api.action() == action)
                .ok_or_else(ServiceError::api_not_found)?;
            if version != API_VERSION {
                return Err(ServiceError::invalid_version());
            }
            Ok(api)
        })?;
    Ok(Caller {
        access_key_id,
        with_security_token,
        api,
    })
}

/// Who made a verified RPC-style request (`POST /`, STS), and which action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcCaller {
    pub access_key_id: String,
    pub with_security_token: bool,
    pub action: String,
}

/// Verifies an RPC-style request signed with ACS3-HMAC-SHA256: `POST /` (or `GET /`), an
/// `x-acs-action` among `actions` and `x-acs-version` equal to `version`; every other check as
/// for GetJobRun.
pub fn verify_rpc(
    req: &ReceivedRequest,
    accounts: &Accounts,
    now: Timestamp,
    nonces: &mut NonceCache,
    version: &str,
    actions: &[&str],
) -> Result<RpcCaller, ServiceError> {
    let (access_key_id, with_security_token, action) =
        verify_signed(req, accounts, now, nonces, |req, action, sent_version| {
            let rpc = req.path == "/" && matches!(req.method.as_str(), "POST" | "GET");
            if !rpc || !actions.contains(&action) {
                return Err(ServiceError::api_not_found());
            }
            if sent_version != version {
                return Err(ServiceError::invalid_version());
            }
            Ok(action.to_owned())
        })?;
    Ok(RpcCaller {
        access_key_id,
        with_security_token,
        action,
    })
}

/// The checks shared by every signed API; `target` is step 3 (which API, which version), given
/// the request, its `x-acs-action` and its `x-acs-version`.
fn verify_signed<T>(
    req: &ReceivedRequest,
    accounts: &Accounts,
    now: Timestamp,
    nonces: &mut NonceCache,
    target: impl FnOnce(&ReceivedRequest, &str, &str) -> Result<T, ServiceError>,
) -> Result<(String, bool, T), ServiceError> {
    let authorization = req
        .header("authorization")
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(ServiceError::missing_authorization)?;
    let auth = signer::parse_authorization(authorization.trim())
        .map_err(|e| ServiceError::incomplete_signature(&format!("The {e}.")))?;

    for name in REQUIRED_HEADERS {
        if req.header(name).is_none_or(|v| v.trim().is_empty()) {
            return Err(ServiceError::missing_header(name));
        }
    }
    let required = |name: &str| req.header(name).map(str::trim).unwrap_or_default();

    let api = target(req, required("x-acs-action"), required("x-acs-version"))?;

    for (name, _) in &req.headers {
        let must_sign = name == "host" || name.starts_with("x-acs-");
        if must_sign && !auth.signed_headers.iter().any(|s| s == name) {
            return Err(ServiceError::incomplete_signature(&format!(
                "Header {name} is not in SignedHeaders."
            )));
        }
    }

    let claimed_sha = required("x-acs-content-sha256");
    if claimed_sha != signer::hex_sha256(&req.body) {
        return Err(ServiceError::content_sha256_mismatch());
    }

    let date = parse_acs_date(required("x-acs-date")).ok_or_else(ServiceError::timestamp_format)?;
    let skew = now.as_millisecond() - date.as_millisecond();
    if skew.abs() > MAX_CLOCK_SKEW_MS {
        return Err(ServiceError::timestamp_expired());
    }

    let account = accounts
        .get(&auth.access_key_id)
        .ok_or_else(ServiceError::access_key_not_found)?;
    if !account.active {
        return Err(ServiceError::access_key_inactive());
    }
    // The SDKs repeat the key id in a header; a different one there is a client bug (the
    // simulator's choice of code).
    if let Some(id) = req.header("x-acs-accesskey-id")
        && id.trim() != auth.access_key_id
    {
        return Err(ServiceError::incomplete_signature(
            "Header x-acs-accesskey-id differs from the Credential of the Authorization header.",
        ));
    }

    check_security_token(account, req.header("x-acs-security-token"), now)?;

    let canonical_query =
        signer::canonicalize_raw_query(&req.query).ok_or_else(ServiceError::invalid_query)?;
    let canonical = signer::canonical_request(&signer::CanonicalInput {
        method: &req.method,
        canonical_uri: &req.path,
        canonical_query: &canonical_query,
        headers: &req.headers,
        signed_headers: &auth.signed_headers,
        hashed_payload: claimed_sha,
    });
    let string_to_sign = signer::string_to_sign(&canonical);
    let expected = signer::signature(&account.access_key_secret, &string_to_sign);
    if !crate::secret::constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        return Err(ServiceError::signature_mismatch(&string_to_sign));
    }

    let nonce = required("x-acs-signature-nonce");
    if nonces.is_used(&auth.access_key_id, nonce, now) {
        return Err(ServiceError::nonce_used());
    }
    let forget_after = Timestamp::from_millisecond(date.as_millisecond() + MAX_CLOCK_SKEW_MS)
        .unwrap_or(Timestamp::MAX);
    nonces.remember(&auth.access_key_id, nonce, forget_after, now);

    Ok((auth.access_key_id, account.security_token.is_some(), api))
}

fn check_security_token(
    account: &Account,
    sent: Option<&str>,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let sent = sent.map(str::trim);
    match (&account.security_token, sent) {
        (None, None) => Ok(()),
        // A token with a permanent key: the token belongs to some other key.
        (None, Some(_)) => Err(ServiceError::security_token_mismatch()),
        (Some(_), None) => Err(ServiceError::missing_security_token()),
        (Some(_), Some("")) => Err(ServiceError::security_token_malformed()),
        (Some(expected), Some(got)) => {
            if !crate::secret::constant_time_eq(expected.expose().as_bytes(), got.as_bytes()) {
                Err(ServiceError::security_token_mismatch())
            } else if account.expires_at.is_some_and(|at| at <= now) {
                Err(ServiceError::security_token_expired())
            } else {
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::{Credentials, RequestToSign, sign_request};

    const DATE: &str = "2024-05-15T03:35:14Z";
    const PATH: &str = "/api/v1/workspaces/w-1/jobRuns/jr%2F1";

    fn now() -> Timestamp {
        DATE.parse().expect("valid")
    }

    fn accounts() -> Accounts {
        [
            Account::new("AKID", "secret"),
            Account::new("OFF", "secret").inactive(),
            Account::new("STS.ID", "sts-secret")
                .with_security_token("token-1", Some("2024-05-15T04:00:00Z".parse().expect("ts"))),
            Account::new("STS.OLD", "sts-secret")
                .with_security_token("token-2", Some("2024-05-15T03:00:00Z".parse().expect("ts"))),
        ]
        .into_iter()
        .collect()
    }

    struct Build<'a> {
        creds: Credentials,
        action: &'a str,
        version: &'a str,
        date: &'a str,
        nonce: &'a str,
        body: &'a [u8],
    }

    impl Default for Build<'_> {
        fn default() -> Self {
            Self {
                creds: Credentials::new("AKID", "secret"),
                action: GET_JOB_RUN,
                version: API_VERSION,
                date: DATE,
                nonce: "0123456789abcdef0123456789abcdef",
                body: b"",
            }
        }
    }

    fn build(b: Build<'_>) -> ReceivedRequest {
        let query = vec![("regionId".to_string(), "cn-hangzhou".to_string())];
        let signed = sign_request(
            &RequestToSign {
                method: "GET",
                host: "127.0.0.1:1234",
                path: PATH,
                query: &query,
                action: b.action,
                version: b.version,
                body: b.body,
                content_type: None,
            },
            &b.creds,
            b.date,
            b.nonce,
        );
        ReceivedRequest {
            method: "GET".into(),
            path: PATH.into(),
            query: signed.query,
            headers: signed.headers,
            body: b.body.to_vec(),
        }
    }

    fn ok() -> ReceivedRequest {
        build(Build::default())
    }

    fn set(mut req: ReceivedRequest, name: &str, value: &str) -> ReceivedRequest {
        req.headers.retain(|(n, _)| n != name);
        req.headers.push((name.into(), value.into()));
        req
    }

    fn drop_header(mut req: ReceivedRequest, name: &str) -> ReceivedRequest {
        req.headers.retain(|(n, _)| n != name);
        req
    }

    fn auth_of(req: &ReceivedRequest) -> String {
        req.header("authorization").unwrap_or_default().to_owned()
    }

    fn code(req: &ReceivedRequest) -> Result<Caller, (String, u16)> {
        verify(req, &accounts(), now(), &mut NonceCache::new()).map_err(|e| (e.code, e.status))
    }

    #[test]
    fn a_correct_request_verifies() {
        let caller = code(&ok()).expect("verifies");
        assert_eq!(caller.access_key_id, "AKID");
        assert!(!caller.with_security_token);
        assert_eq!(
            caller.api,
            Api::GetJobRun {
                workspace_id: "w-1".into(),
                job_run_id: "jr/1".into()
            }
        );
    }

    #[test]
    fn apis_resolve_by_method_and_path() {
        let get = |ws: &str, jr: &str| Api::GetJobRun {
            workspace_id: ws.into(),
            job_run_id: jr.into(),
        };
        let cases: Vec<(&str, &str, Option<Api>)> = vec![
            (
                "GET",
                "/api/v1/workspaces/w-1/jobRuns/jr-1",
                Some(get("w-1", "jr-1")),
            ),
            (
                "GET",
                "/api/v1/workspaces/w%201/jobRuns/jr%2F1",
                Some(get("w 1", "jr/1")),
            ),
            (
                "GET",
                "/api/v1/workspaces/w/jobRuns/%C3%BC%2B",
                Some(get("w", "ü+")),
            ),
            (
                "DELETE",
                "/api/v1/workspaces/w/jobRuns/jr",
                Some(Api::CancelJobRun {
                    workspace_id: "w".into(),
                    job_run_id: "jr".into(),
                }),
            ),
            (
                "GET",
                "/api/v1/workspaces/w/jobRuns",
                Some(Api::ListJobRuns {
                    workspace_id: "w".into(),
                }),
            ),
            (
                "POST",
                "/api/v1/workspaces/w/jobRuns",
                Some(Api::StartJobRun {
                    workspace_id: "w".into(),
                }),
            ),
            ("POST", "/api/v1/workspaces/w/jobRuns/jr", None),
            ("GET", "/api/v1/workspaces/w/jobRuns/", None),
            ("GET", "/api/v1/workspaces//jobRuns/jr", None),
            ("GET", "/api/v1/workspaces/w/jobRuns/jr/extra", None),
            ("GET", "/api/v1/workspaces/w/jobs/jr", None),
            ("GET", "/api/v1/workspaces/w/jobRuns/%ZZ", None),
            ("GET", "/", None),
        ];
        for (method, path, want) in cases {
            assert_eq!(Api::resolve(method, path), want, "{method} {path}");
        }
        assert_eq!(get("w", "jr").action(), "GetJobRun");
        assert_eq!(get("w", "jr").job_run_id(), Some("jr"));
        assert_eq!(
            Api::ListJobRuns {
                workspace_id: "w".into()
            }
            .job_run_id(),
            None
        );
    }

    #[test]
    fn every_rejection_branch() {
        let sts = |token: &str, id: &str| {
            build(Build {
                creds: Credentials::new(id, "sts-secret").with_security_token(token),
                ..Build::default()
            })
        };
        let skewed = |minutes: i64| {
            let ts = now() + jiff::SignedDuration::from_mins(minutes);
            signer::format_acs_date(ts)
        };
        let late = skewed(16);
        let early = skewed(-16);
        let garbled = {
            let r = ok();
            let a = auth_of(&r).replace("Signature=", "Sig=");
            set(r, "authorization", &a)
        };
        let unsigned_extra = set(ok(), "x-acs-extra", "1");
        let host_unsigned = {
            let r = ok();
            let a = auth_of(&r).replace("host;", "");
            set(r, "authorization", &a)
        };
        let wrong_sha = {
            let mut r = build(Build {
                body: b"x",
                ..Build::default()
            });
            r.body = Vec::new();
            r
        };
        let wrong_secret = build(Build {
            creds: Credentials::new("AKID", "not-the-secret"),
            ..Build::default()
        });
        let tampered_query = {
            let mut r = ok();
            r.query = "regionId=cn-shanghai".into();
            r
        };
        let tampered_path = {
            let mut r = ok();
            r.path = "/api/v1/workspaces/w-1/jobRuns/jr%2f1".into();
            r
        };
        let bad_query = {
            let mut r = ok();
            r.query = "regionId=%ZZ".into();
            r
        };
        let other_key_header = set(ok(), "x-acs-accesskey-id", "OTHER");
        let permanent_with_token = {
            let r = ok();
            let a = auth_of(&r).replace("host;", "host;x-acs-security-token;");
            let r = set(r, "x-acs-security-token", "token-1");
            set(r, "authorization", &a)
        };
        let sts_without_token = build(Build {
            creds: Credentials::new("STS.ID", "sts-secret"),
            ..Build::default()
        });

        let cases: Vec<(&str, ReceivedRequest, &str, u16)> = vec![
            (
                "no authorization",
                drop_header(ok(), "authorization"),
                "MissingAuthorization",
                400,
            ),
            (
                "wrong algorithm",
                set(ok(), "authorization", "HMAC-SHA1 x"),
                "IncompleteSignature",
                400,
            ),
            ("garbled authorization", garbled, "IncompleteSignature", 400),
            (
                "no host",
                drop_header(ok(), "host"),
                "MissingParameter.host",
                400,
            ),
            (
                "no action",
                drop_header(ok(), "x-acs-action"),
                "MissingParameter.x-acs-action",
                400,
            ),
            (
                "no version",
                drop_header(ok(), "x-acs-version"),
                "MissingParameter.x-acs-version",
                400,
            ),
            (
                "no date",
                drop_header(ok(), "x-acs-date"),
                "MissingParameter.x-acs-date",
                400,
            ),
            (
                "no nonce",
                drop_header(ok(), "x-acs-signature-nonce"),
                "MissingParameter.x-acs-signature-nonce",
                400,
            ),
            (
                "no content hash",
                drop_header(ok(), "x-acs-content-sha256"),
                "MissingParameter.x-acs-content-sha256",
                400,
            ),
            (
                "other action",
                build(Build {
                    action: "ListJobRuns",
                    ..Build::default()
                }),
                "InvalidApi.NotFound",
                404,
            ),
            (
                "other version",
                build(Build {
                    version: "2021-01-01",
                    ..Build::default()
                }),
                "InvalidVersion",
                400,
            ),
            (
                "unsigned x-acs header",
                unsigned_extra,
                "IncompleteSignature",
                400,
            ),
            ("unsigned host", host_unsigned, "IncompleteSignature", 400),
            (
                "body hash mismatch",
                wrong_sha,
                "ContentSHA256NotMatch",
                400,
            ),
            (
                "date not UTC Z",
                build(Build {
                    date: "2024-05-15T03:35:14+00:00",
                    ..Build::default()
                }),
                "InvalidTimeStamp.Format",
                400,
            ),
            (
                "date with millis",
                build(Build {
                    date: "2024-05-15T03:35:14.000Z",
                    ..Build::default()
                }),
                "InvalidTimeStamp.Format",
                400,
            ),
            (
                "date impossible",
                build(Build {
                    date: "2024-13-15T03:35:14Z",
                    ..Build::default()
                }),
                "InvalidTimeStamp.Format",
                400,
            ),
            (
                "date 16 min late",
                build(Build {
                    date: &late,
                    ..Build::default()
                }),
                "InvalidTimeStamp.Expired",
                400,
            ),
            (
                "date 16 min early",
                build(Build {
                    date: &early,
                    ..Build::default()
                }),
                "InvalidTimeStamp.Expired",
                400,
            ),
            (
                "unknown key",
                build(Build {
                    creds: Credentials::new("NOPE", "secret"),
                    ..Build::default()
                }),
                "InvalidAccessKeyId.NotFound",
                404,
            ),
            (
                "inactive key",
                build(Build {
                    creds: Credentials::new("OFF", "secret"),
                    ..Build::default()
                }),
                "InvalidAccessKeyId.Inactive",
                400,
            ),
            (
                "other key id header",
                other_key_header,
                "IncompleteSignature",
                400,
            ),
            (
                "sts without token",
                sts_without_token,
                "MissingSecurityToken",
                400,
            ),
            (
                "sts empty token",
                set(sts("x", "STS.ID"), "x-acs-security-token", " "),
                "InvalidSecurityToken.Malformed",
                400,
            ),
            (
                "sts other token",
                sts("token-9", "STS.ID"),
                "InvalidSecurityToken.MismatchWithAccessKey",
                400,
            ),
            (
                "token on permanent key",
                permanent_with_token,
                "InvalidSecurityToken.MismatchWithAccessKey",
                400,
            ),
            (
                "sts expired",
                sts("token-2", "STS.OLD"),
                "InvalidSecurityToken.Expired",
                400,
            ),
            ("wrong secret", wrong_secret, "SignatureDoesNotMatch", 400),
            (
                "tampered query",
                tampered_query,
                "SignatureDoesNotMatch",
                400,
            ),
            ("tampered path", tampered_path, "SignatureDoesNotMatch", 400),
            (
                "tampered nonce",
                set(ok(), "x-acs-signature-nonce", "other"),
                "SignatureDoesNotMatch",
                400,
            ),
            (
                "method changed",
                ReceivedRequest {
                    method: "DELETE".into(),
                    ..ok()
                },
                "InvalidApi.NotFound",
                404,
            ),
            (
                "unknown path",
                ReceivedRequest {
                    path: "/api/v1/workspaces/w-1".into(),
                    ..ok()
                },
                "InvalidApi.NotFound",
                404,
            ),
            ("undecodable query", bad_query, "InvalidParameter", 400),
        ];
        for (name, req, want_code, want_status) in cases {
            match code(&req) {
                Ok(_) => panic!("{name}: verified, want {want_code}"),
                Err((got, status)) => {
                    assert_eq!(got, want_code, "{name}");
                    assert_eq!(status, want_status, "{name}");
                }
            }
        }
    }

    #[test]
    fn accepted_variants() {
        let sts = build(Build {
            creds: Credentials::new("STS.ID", "sts-secret").with_security_token("token-1"),
            ..Build::default()
        });
        let caller = code(&sts).expect("sts verifies");
        assert!(caller.with_security_token);
        // Exactly 15 minutes of skew is still accepted, both ways.
        for minutes in [15, -15] {
            let date = signer::format_acs_date(now() + jiff::SignedDuration::from_mins(minutes));
            code(&build(Build {
                date: &date,
                ..Build::default()
            }))
            .unwrap_or_else(|e| panic!("{minutes} min: {e:?}"));
        }
        // A body is fine when its hash is right; the query may arrive in any order and with `+`.
        code(&build(Build {
            body: b"{}",
            ..Build::default()
        }))
        .expect("body");
        let mut reordered = ok();
        reordered.query = "regionId=cn-hangzhou&".into();
        code(&reordered).expect("same canonical query");
        // Unsigned headers outside x-acs-* (user-agent, accept) are ignored.
        code(&set(ok(), "user-agent", "test")).expect("unsigned user-agent");
    }

    #[test]
    fn signature_mismatch_shows_the_server_string_to_sign() {
        let req = build(Build {
            creds: Credentials::new("AKID", "wrong"),
            ..Build::default()
        });
        let err = verify(&req, &accounts(), now(), &mut NonceCache::new()).expect_err("rejected");
        assert!(
            err.message
                .contains("server string to sign is:ACS3-HMAC-SHA256\n"),
            "{}",
            err.message
        );
        assert!(!err.message.contains("secret"), "{}", err.message);
    }

    #[test]
    fn nonce_is_spent_only_by_a_valid_request() {
        let mut nonces = NonceCache::new();
        let accounts = accounts();
        let bad = build(Build {
            creds: Credentials::new("AKID", "wrong"),
            ..Build::default()
        });
        let err = verify(&bad, &accounts, now(), &mut nonces).expect_err("bad signature");
        assert_eq!(err.code, "SignatureDoesNotMatch");
        assert!(
            nonces.is_empty(),
            "a rejected request must not spend the nonce"
        );
        verify(&ok(), &accounts, now(), &mut nonces).expect("first use");
        let err = verify(&ok(), &accounts, now(), &mut nonces).expect_err("replay");
        assert_eq!((err.code.as_str(), err.status), ("SignatureNonceUsed", 400));
        // The same nonce under another key is a different nonce.
        let sts = build(Build {
            creds: Credentials::new("STS.ID", "sts-secret").with_security_token("token-1"),
            ..Build::default()
        });
        verify(&sts, &accounts, now(), &mut nonces).expect("other key");
        // A bad signature with a spent nonce still reports the signature first.
        let err = verify(&bad, &accounts, now(), &mut nonces).expect_err("bad signature");
        assert_eq!(err.code, "SignatureDoesNotMatch");
    }

    #[test]
    fn nonce_cache_forgets_after_the_window() {
        let mut cache = NonceCache::new();
        let t0 = now();
        let later = |mins: i64| t0 + jiff::SignedDuration::from_mins(mins);
        cache.remember("k", "n1", later(15), t0);
        cache.remember("k", "n2", later(20), t0);
        assert!(cache.is_used("k", "n1", later(15)));
        assert!(!cache.is_used("k", "n1", later(16)));
        assert!(cache.is_used("k", "n2", later(16)));
        assert_eq!(cache.len(), 1);
        assert!(!cache.is_used("k", "n2", later(21)));
        assert!(cache.is_empty());
        // Re-remembering moves the expiry instead of duplicating the entry.
        cache.remember("k", "n3", later(5), t0);
        cache.remember("k", "n3", later(10), t0);
        assert!(cache.is_used("k", "n3", later(7)));
        assert_eq!(cache.by_expiry.len(), 1);
    }

    #[test]
    fn acs_date_parsing() {
        assert_eq!(parse_acs_date(DATE), Some(now()));
        for bad in [
            "",
            "2024-05-15 03:35:14Z",
            "2024-05-15T03:35:14z",
            "2024-05-15T03:35Z",
            "2024-02-30T03:35:14Z",
            "Wed, 15 May 2024 03:35:14 GMT",
            "1715744114",
        ] {
            assert_eq!(parse_acs_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn accounts_decode_from_yaml_and_hide_secrets() {
        let yaml = "accessKeyId: STS.X\naccessKeySecret: s3cr3t\nsecurityToken: t0k3n\nexpiresAt: 2030-01-01T00:00:00Z\n";
        let account: Account = serde_yaml::from_str(yaml).expect("decodes");
        assert!(account.active);
        assert_eq!(
            account.expires_at,
            Some("2030-01-01T00:00:00Z".parse().expect("ts"))
        );
        let shown = format!("{account:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("t0k3n"),
            "{shown}"
        );
        let shown = format!("{:?}", ok());
        assert!(!shown.contains("Signature="), "{shown}");
        assert!(
            serde_yaml::from_str::<Account>(
                "accessKeyId: a\naccessKeySecret: b\nexpiresAt: soon\n"
            )
            .is_err()
        );
    }

    /// Requests captured from the official Python SDK verify, and any tampering is rejected.
    #[test]
    fn python_sdk_known_answers() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/acs3-known-answers.json"
        );
        let Ok(text) = std::fs::read_to_string(path) else {
            eprintln!("skipping: {path} does not exist yet");
            return;
        };
        let fixture: serde_json::Value = serde_json::from_str(&text).expect("fixture is JSON");
        let cases = fixture["cases"].as_array().expect("cases array");
        let mut checked = 0;
        for case in cases.iter().filter(|c| c["source"] == "python-sdk") {
            let name = case["name"].as_str().unwrap_or("?");
            let s = |k: &str| case[k].as_str().unwrap_or_default().to_owned();
            let mut account = Account::new(s("accessKeyId"), s("accessKeySecret"));
            if let Some(token) = case["securityToken"].as_str().filter(|t| !t.is_empty()) {
                account = account.with_security_token(token, None);
            }
            let accounts: Accounts = [account].into_iter().collect();
            let mut headers: Vec<(String, String)> = case["headers"]
                .as_object()
                .expect("headers object")
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_ascii_lowercase(),
                        v.as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            headers.push(("authorization".into(), s("authorization")));
            let req = ReceivedRequest {
                method: s("method"),
                path: s("path"),
                query: s("query").trim_start_matches('?').to_owned(),
                headers,
                body: s("body").into_bytes(),
            };
            let date = parse_acs_date(req.header("x-acs-date").unwrap_or_default())
                .unwrap_or_else(|| panic!("{name}: x-acs-date"));
            let run = |r: &ReceivedRequest| verify(r, &accounts, date, &mut NonceCache::new());
            run(&req).unwrap_or_else(|e| panic!("{name}: {e}"));

            let sig = s("signature");
            let flipped = format!(
                "{}{}",
                if sig.starts_with('0') { '1' } else { '0' },
                &sig[1..]
            );
            let tampered_sig = set(
                req.clone(),
                "authorization",
                &s("authorization").replace(&sig, &flipped),
            );
            let next_second = signer::format_acs_date(date + jiff::SignedDuration::from_secs(1));
            let tampered_date = set(req.clone(), "x-acs-date", &next_second);
            let tampered_nonce = {
                let n = req
                    .header("x-acs-signature-nonce")
                    .unwrap_or_default()
                    .to_owned();
                set(req.clone(), "x-acs-signature-nonce", &format!("{n}0"))
            };
            let tampered_query = ReceivedRequest {
                query: format!("{}x", req.query),
                ..req.clone()
            };
            for (what, bad) in [
                ("signature", tampered_sig),
                ("date", tampered_date),
                ("nonce header", tampered_nonce),
                ("query", tampered_query),
            ] {
                let err = run(&bad)
                    .err()
                    .unwrap_or_else(|| panic!("{name}: tampered {what} verified"));
                assert_eq!(err.code, "SignatureDoesNotMatch", "{name}: tampered {what}");
            }
            checked += 1;
        }
        assert!(checked > 0, "the fixture has no python-sdk case");
    }
}
