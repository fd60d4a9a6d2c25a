//! The ECS instance RAM role from the instance metadata service (IMDS), as the official
//! libraries read it: a session token (`PUT /latest/api/token`, IMDSv2), the role name
//! (`GET /latest/meta-data/ram/security-credentials/`) unless configured, then the role's
//! credentials. Falls back to requests without the token (IMDSv1) unless that is disabled.
//! Parsing and the "are we on Alibaba Cloud" decision are pure.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;
use tracing::info;

use super::refresh::Refresher;
use super::sts::TemporaryCredentials;
use super::{CredentialProvider, CredentialsError};
use crate::endpoint::Endpoint;
use crate::secret::Secret;
use crate::signer::Credentials;

/// The link-local address of the metadata service on every ECS instance.
pub const DEFAULT_IMDS_ENDPOINT: &str = "http://100.100.100.200";
pub const TOKEN_PATH: &str = "/latest/api/token";
pub const CREDENTIALS_PATH: &str = "/latest/meta-data/ram/security-credentials/";
pub const TOKEN_TTL_HEADER: &str = "x-aliyun-ecs-metadata-token-ttl-seconds";
pub const TOKEN_HEADER: &str = "x-aliyun-ecs-metadata-token";
/// The session token lifetime the official libraries ask for.
pub const TOKEN_TTL_SECONDS: u64 = 21600;

/// Whether the machine's DMI data says it is an Alibaba Cloud ECS instance (`sys_vendor` or
/// `product_name` naming Alibaba Cloud). Off Alibaba Cloud the metadata address belongs to
/// nobody, so asking it only adds timeouts.
pub fn on_alibaba_cloud(sys_vendor: Option<&str>, product_name: Option<&str>) -> bool {
    [sys_vendor, product_name]
        .into_iter()
        .flatten()
        .any(|v| v.to_ascii_lowercase().contains("alibaba cloud"))
}

/// Reads the DMI files (absent in most containers without host access: then `false`).
pub fn detect_alibaba_cloud() -> bool {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    on_alibaba_cloud(
        read("/sys/class/dmi/id/sys_vendor").as_deref(),
        read("/sys/class/dmi/id/product_name").as_deref(),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    code: Option<String>,
    access_key_id: Option<String>,
    access_key_secret: Option<String>,
    security_token: Option<String>,
    expiration: Option<String>,
}

/// Parses the role credentials document (`Code: Success`, the key, token and `Expiration`).
pub fn parse_credentials(body: &[u8]) -> Result<TemporaryCredentials, String> {
    let a: Answer = serde_json::from_slice(body).map_err(|e| format!("answer is not JSON: {e}"))?;
    if a.code.as_deref() != Some("Success") {
        return Err(format!(
            "answer Code is {:?}, not \"Success\"",
            a.code.unwrap_or_default()
        ));
    }
    let need = |v: Option<String>, what: &str| {
        v.filter(|s| !s.is_empty())
            .ok_or_else(|| format!("answer lacks {what}"))
    };
    let id = need(a.access_key_id, "AccessKeyId")?;
    let secret = need(a.access_key_secret, "AccessKeySecret")?;
    let token = need(a.security_token, "SecurityToken")?;
    let expiration = need(a.expiration, "Expiration")?
        .parse::<Timestamp>()
        .map_err(|e| format!("Expiration is not ISO 8601: {e}"))?;
    Ok(TemporaryCredentials {
        credentials: Credentials::new(id, Secret::new(secret)).with_security_token(token),
        expiration,
    })
}

/// The instance RAM role's credentials, cached and refreshed before they expire.
#[derive(Debug)]
pub struct ImdsProvider {
    endpoint: Endpoint,
    role_name: Option<String>,
    disable_v1: bool,
    http: reqwest::Client,
    refresher: Refresher,
}

impl ImdsProvider {
    /// `role_name` as `ALIBABA_CLOUD_ECS_METADATA` gives it (else asked from the service);
    /// `disable_v1` as `ALIBABA_CLOUD_IMDSV1_DISABLED`.
    pub fn new(
        endpoint: Endpoint,
        role_name: Option<String>,
        disable_v1: bool,
        refresher: Refresher,
    ) -> Result<Self, reqwest::Error> {
        // The official libraries give the metadata service one second each way; no proxy may
        // stand between a pod and a link-local address.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .read_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(2))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            endpoint,
            role_name,
            disable_v1,
            http,
            refresher,
        })
    }

    fn error(&self, message: String) -> CredentialsError {
        CredentialsError::Imds {
            endpoint: self.endpoint.to_string(),
            message,
        }
    }

    async fn session_token(&self) -> Result<Option<String>, CredentialsError> {
        let url = format!("{}{TOKEN_PATH}", self.endpoint.base_url());
        let answer = self
            .http
            .put(&url)
            .header(TOKEN_TTL_HEADER, TOKEN_TTL_SECONDS.to_string())
            .send()
            .await;
        let failure = match answer {
            Ok(r) if r.status().is_success() => {
                match crate::body::read_bounded(r, crate::body::IMDS_LIMIT).await {
                    Ok(t) => match String::from_utf8(t) {
                        Ok(t) if !t.trim().is_empty() => return Ok(Some(t.trim().to_owned())),
                        Ok(_) => "empty session token".to_string(),
                        Err(_) => "session token is not UTF-8".to_string(),
                    },
                    Err(e) => e.to_string(),
                }
            }
            Ok(r) => format!("HTTP {}", r.status().as_u16()),
            Err(e) => e.to_string(),
        };
        if self.disable_v1 {
            Err(self.error(format!(
                "getting a metadata session token failed ({failure}) and IMDSv1 is disabled"
            )))
        } else {
            Ok(None)
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Result<Vec<u8>, CredentialsError> {
        let url = format!("{}{path}", self.endpoint.base_url());
        let mut req = self.http.get(&url);
        if let Some(t) = token {
            req = req.header(TOKEN_HEADER, t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.error(format!("GET {path}: {e}")))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(self.error(format!("GET {path}: HTTP {status}")));
        }
        crate::body::read_bounded(resp, crate::body::IMDS_LIMIT)
            .await
            .map_err(|e| self.error(format!("GET {path}: {e}")))
    }

    /// A GET with the session token, once more without it when that failed and IMDSv1 is allowed.
    async fn get_with_fallback(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> Result<Vec<u8>, CredentialsError> {
        match self.get(path, token).await {
            Err(_) if token.is_some() && !self.disable_v1 => self.get(path, None).await,
            other => other,
        }
    }

    async fn exchange(&self) -> Result<TemporaryCredentials, CredentialsError> {
        let token = self.session_token().await?;
        let role = match &self.role_name {
            Some(r) => r.clone(),
            None => {
                let body = self
                    .get_with_fallback(CREDENTIALS_PATH, token.as_deref())
                    .await?;
                let name = String::from_utf8_lossy(&body).trim().to_owned();
                if name.is_empty() {
                    return Err(self.error("the instance has no RAM role attached".into()));
                }
                name
            }
        };
        let body = self
            .get_with_fallback(&format!("{CREDENTIALS_PATH}{role}"), token.as_deref())
            .await?;
        let t = parse_credentials(&body).map_err(|m| self.error(format!("role {role}: {m}")))?;
        info!(role, expiration = %t.expiration, "got instance RAM role credentials");
        Ok(t)
    }
}

impl CredentialProvider for ImdsProvider {
    fn credentials(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Credentials, CredentialsError>> + Send + '_>> {
        Box::pin(self.refresher.get(|| self.exchange()))
    }

    fn source(&self) -> &'static str {
        "ecs-ram-role"
    }

    fn invalidate(&self) {
        self.refresher.invalidate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn oversized_metadata_answers_are_refused() {
        const TOTAL: u64 = 96 * 1024 * 1024;
        for declare in [true, false] {
            let server = crate::body::testing::serve(200, TOTAL, declare).await;
            let provider = ImdsProvider::new(
                crate::endpoint::parse(&format!("http://{}", server.addr)).expect("endpoint"),
                Some("EcsRole".into()),
                true,
                Refresher::new(Duration::from_secs(180)),
            )
            .expect("client");
            let err = provider.credentials().await.expect_err("too large");
            assert!(err.to_string().contains("limit"), "{declare}: {err}");
            assert!(
                server.written() < TOTAL / 2,
                "{} bytes sent",
                server.written()
            );
        }
    }
    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, put};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn dmi_detection() {
        assert!(on_alibaba_cloud(Some("Alibaba Cloud\n"), None));
        assert!(on_alibaba_cloud(None, Some("Alibaba Cloud ECS")));
        assert!(!on_alibaba_cloud(Some("QEMU"), Some("Standard PC")));
        assert!(!on_alibaba_cloud(None, None));
    }

    #[test]
    fn credential_documents() {
        let ok = br#"{"AccessKeyId":"STS.x","AccessKeySecret":"s","Expiration":"2024-05-01T09:00:00Z","SecurityToken":"t","LastUpdated":"2024-05-01T03:00:00Z","Code":"Success"}"#;
        let t = parse_credentials(ok).expect("parses");
        assert_eq!(t.credentials.access_key_id, "STS.x");
        assert_eq!(t.expiration.to_string(), "2024-05-01T09:00:00Z");
        assert!(parse_credentials(br#"{"Code":"Failed"}"#).is_err());
        assert!(parse_credentials(b"<html>").is_err());
        let no_token = br#"{"AccessKeyId":"a","AccessKeySecret":"s","Expiration":"2024-05-01T09:00:00Z","Code":"Success"}"#;
        assert!(
            parse_credentials(no_token)
                .expect_err("token")
                .contains("SecurityToken")
        );
    }

    /// A loopback metadata service: IMDSv2 token required, one role.
    #[tokio::test]
    async fn provider_uses_the_session_token_and_caches() {
        let hits = Arc::new(AtomicU32::new(0));
        let expiration = (Timestamp::now() + jiff::SignedDuration::from_secs(3600)).to_string();
        let h = hits.clone();
        let app = Router::new()
            .route(
                TOKEN_PATH,
                put(|headers: HeaderMap| async move {
                    if headers.contains_key(TOKEN_TTL_HEADER) {
                        (StatusCode::OK, "session-token".to_string())
                    } else {
                        (StatusCode::BAD_REQUEST, String::new())
                    }
                }),
            )
            .route(
                CREDENTIALS_PATH,
                get(|headers: HeaderMap| async move {
                    if headers.get(TOKEN_HEADER).is_some() {
                        (StatusCode::OK, "EcsRole".to_string())
                    } else {
                        (StatusCode::UNAUTHORIZED, String::new())
                    }
                }),
            )
            .route(
                "/latest/meta-data/ram/security-credentials/EcsRole",
                get(move |headers: HeaderMap| {
                    let h = h.clone();
                    let expiration = expiration.clone();
                    async move {
                        h.fetch_add(1, Ordering::SeqCst);
                        if headers.get(TOKEN_HEADER).map(|v| v.as_bytes()) != Some(b"session-token") {
                            return (StatusCode::UNAUTHORIZED, String::new());
                        }
                        (
                            StatusCode::OK,
                            format!(
                                r#"{{"Code":"Success","AccessKeyId":"STS.ecs","AccessKeySecret":"ecs-secret","SecurityToken":"ecs-token","Expiration":"{expiration}"}}"#
                            ),
                        )
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let endpoint = crate::endpoint::parse(&format!("http://{addr}")).expect("endpoint");
        let provider = ImdsProvider::new(
            endpoint,
            None,
            true,
            Refresher::new(Duration::from_secs(180)),
        )
        .expect("client");
        let c = provider.credentials().await.expect("credentials");
        assert_eq!(c.access_key_id, "STS.ecs");
        assert_eq!(
            c.security_token.as_ref().map(Secret::expose),
            Some("ecs-token")
        );
        let _ = provider.credentials().await.expect("cached");
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "cached until the refresh margin"
        );
        assert_eq!(provider.source(), "ecs-ram-role");

        let missing = ImdsProvider::new(
            crate::endpoint::parse(&format!("http://{addr}")).expect("endpoint"),
            Some("NoSuchRole".into()),
            false,
            Refresher::new(Duration::from_secs(180)),
        )
        .expect("client");
        let err = missing.credentials().await.expect_err("no such role");
        assert!(err.to_string().contains("HTTP 404"), "{err}");
        server.abort();
    }
}
