//! The STS exchanges over HTTP, and the providers built on them: RRSA/OIDC
//! ([`OidcProvider`]) and a role assumed with a fixed AccessKey ([`AssumeRoleProvider`], the
//! `ram_role_arn` profile). Request building and answer parsing are in [`super::sts`].

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use jiff::Timestamp;
use tracing::{debug, info};

use super::refresh::Refresher;
use super::sts::{
    self, ASSUME_ROLE, ASSUME_ROLE_WITH_OIDC, AssumeRoleExchange, OidcExchange, PreparedRequest,
    StsFailure, StsFailureKind, TemporaryCredentials,
};
use super::{CredentialProvider, CredentialsError};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::client::Timeouts;
use crate::endpoint::Endpoint;
use crate::metrics::{Metrics, StsLabel};
use crate::secret::Secret;
use crate::signer::Credentials;
use crate::transport::{self, AcsTransport, Failure, Outgoing};

/// STS over HTTPS (or plain HTTP for an explicitly configured endpoint such as a simulator).
#[derive(Debug, Clone)]
pub struct StsClient {
    transport: AcsTransport,
    exchanges: Family<StsLabel, Counter>,
}

impl StsClient {
    pub fn new(timeouts: Timeouts) -> Result<Self, reqwest::Error> {
        Ok(Self {
            transport: AcsTransport::new(timeouts, Some("sts"))?,
            exchanges: Family::default(),
        })
    }

    /// Counts the exchanges in `metrics` (`sparkjobrun_sts_exchanges_total`).
    pub fn with_metrics(mut self, metrics: &Metrics) -> Self {
        self.exchanges = metrics.sts_exchanges.clone();
        self
    }

    /// `AssumeRoleWithOIDC` (anonymous).
    pub async fn assume_role_with_oidc(
        &self,
        endpoint: &Endpoint,
        ex: &OidcExchange<'_>,
    ) -> Result<TemporaryCredentials, StsFailure> {
        let timestamp = sts::format_timestamp(Timestamp::now());
        let req = sts::oidc_request(&endpoint.host, ex, &timestamp);
        self.send(endpoint, req, ASSUME_ROLE_WITH_OIDC, ex.role_arn)
            .await
    }

    /// `AssumeRole`, signed with `caller`.
    pub async fn assume_role(
        &self,
        endpoint: &Endpoint,
        caller: &Credentials,
        ex: &AssumeRoleExchange<'_>,
    ) -> Result<TemporaryCredentials, StsFailure> {
        let date = crate::signer::format_acs_date(Timestamp::now());
        let nonce = transport::nonce();
        let req = sts::assume_role_request(&endpoint.host, ex, caller, &date, &nonce);
        self.send(endpoint, req, ASSUME_ROLE, ex.role_arn).await
    }

    /// Sends one exchange and counts it (transport failures included) in `/metrics`.
    async fn send(
        &self,
        endpoint: &Endpoint,
        req: PreparedRequest,
        action: &'static str,
        role_arn: &str,
    ) -> Result<TemporaryCredentials, StsFailure> {
        let result = self.send_once(endpoint, req, action, role_arn).await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.exchanges
            .get_or_create(&StsLabel { action, outcome })
            .inc();
        result
    }

    async fn send_once(
        &self,
        endpoint: &Endpoint,
        req: PreparedRequest,
        action: &'static str,
        role_arn: &str,
    ) -> Result<TemporaryCredentials, StsFailure> {
        let outgoing = Outgoing {
            method: req.method,
            path: req.path,
            query: &req.query,
            headers: &req.headers,
            body: &req.body,
        };
        let answer = self
            .transport
            .send(endpoint, outgoing, crate::body::STS_LIMIT)
            .await
            .map_err(|failure| match failure {
                Failure::Unreachable(message) => {
                    StsFailure::local(action, role_arn, StsFailureKind::Unreachable, message)
                }
                Failure::TooLarge {
                    status,
                    request_id,
                    message,
                } => StsFailure {
                    http_status: Some(status),
                    request_id,
                    ..StsFailure::local(action, role_arn, StsFailureKind::InvalidResponse, message)
                },
            })?;
        let (status, request_id, body) = (answer.status, answer.request_id, answer.body);
        let result = sts::parse_response(action, role_arn, status, request_id.as_deref(), &body);
        match &result {
            Ok(t) => {
                debug!(action, role_arn, %endpoint, status, expiration = %t.expiration, "STS exchange succeeded")
            }
            Err(f) => {
                debug!(action, role_arn, %endpoint, status, code = f.code.as_deref().unwrap_or("-"), request_id = f.request_id.as_deref().unwrap_or("-"), "STS exchange failed")
            }
        }
        result
    }
}

/// Where an RRSA/OIDC identity comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSource {
    pub role_arn: String,
    pub oidc_provider_arn: String,
    /// Re-read on every exchange: the kubelet rotates it.
    pub token_file: PathBuf,
    pub role_session_name: String,
    pub duration_seconds: u64,
}

/// RRSA: exchanges the projected service-account token for temporary credentials, cached and
/// refreshed before they expire.
#[derive(Debug)]
pub struct OidcProvider {
    source: OidcSource,
    endpoint: Endpoint,
    sts: StsClient,
    refresher: Refresher,
}

impl OidcProvider {
    pub fn new(
        source: OidcSource,
        endpoint: Endpoint,
        sts: StsClient,
        refresher: Refresher,
    ) -> Self {
        Self {
            source,
            endpoint,
            sts,
            refresher,
        }
    }

    async fn exchange(&self) -> Result<TemporaryCredentials, CredentialsError> {
        let path = self.source.token_file.display().to_string();
        let text = tokio::fs::read_to_string(&self.source.token_file)
            .await
            .map_err(|e| CredentialsError::TokenFile {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let token = Secret::new(text.trim());
        if token.is_empty() {
            return Err(CredentialsError::TokenFile {
                path,
                message: "the file is empty".into(),
            });
        }
        let temporary = self
            .sts
            .assume_role_with_oidc(
                &self.endpoint,
                &OidcExchange {
                    role_arn: &self.source.role_arn,
                    oidc_provider_arn: &self.source.oidc_provider_arn,
                    oidc_token: &token,
                    role_session_name: &self.source.role_session_name,
                    duration_seconds: self.source.duration_seconds,
                },
            )
            .await
            .map_err(CredentialsError::Sts)?;
        info!(
            role_arn = %self.source.role_arn,
            access_key_id = %temporary.credentials.access_key_id,
            expiration = %temporary.expiration,
            "exchanged the OIDC token for temporary credentials"
        );
        Ok(temporary)
    }
}

impl CredentialProvider for OidcProvider {
    fn credentials(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Credentials, CredentialsError>> + Send + '_>> {
        Box::pin(self.refresher.get(|| self.exchange()))
    }

    fn source(&self) -> &'static str {
        "oidc"
    }

    fn invalidate(&self) {
        self.refresher.invalidate();
    }
}

/// A role assumed with fixed base credentials (the `ram_role_arn` profile type).
#[derive(Debug)]
pub struct AssumeRoleProvider {
    base: Credentials,
    role_arn: String,
    role_session_name: String,
    duration_seconds: u64,
    endpoint: Endpoint,
    sts: StsClient,
    refresher: Refresher,
    source: &'static str,
}

impl AssumeRoleProvider {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        base: Credentials,
        role_arn: String,
        role_session_name: String,
        duration_seconds: u64,
        endpoint: Endpoint,
        sts: StsClient,
        refresher: Refresher,
        source: &'static str,
    ) -> Self {
        Self {
            base,
            role_arn,
            role_session_name,
            duration_seconds,
            endpoint,
            sts,
            refresher,
            source,
        }
    }

    async fn exchange(&self) -> Result<TemporaryCredentials, CredentialsError> {
        let t = self
            .sts
            .assume_role(
                &self.endpoint,
                &self.base,
                &AssumeRoleExchange {
                    role_arn: &self.role_arn,
                    role_session_name: &self.role_session_name,
                    duration_seconds: self.duration_seconds,
                },
            )
            .await
            .map_err(CredentialsError::Sts)?;
        info!(role_arn = %self.role_arn, expiration = %t.expiration, "assumed the profile's role");
        Ok(t)
    }
}

impl CredentialProvider for AssumeRoleProvider {
    fn credentials(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Credentials, CredentialsError>> + Send + '_>> {
        Box::pin(self.refresher.get(|| self.exchange()))
    }

    fn source(&self) -> &'static str {
        self.source
    }

    fn invalidate(&self) {
        self.refresher.invalidate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn oversized_sts_answers_are_invalid_and_not_read_whole() {
        const TOTAL: u64 = 96 * 1024 * 1024;
        let sts = StsClient::new(Timeouts::default()).expect("client");
        let caller = Credentials::new("AKID", Secret::new("s3cr3t"));
        for (status, declare) in [(200, true), (200, false), (400, false)] {
            let server = crate::body::testing::serve(status, TOTAL, declare).await;
            let endpoint =
                crate::endpoint::parse(&format!("http://{}", server.addr)).expect("endpoint");
            let ex = AssumeRoleExchange {
                role_arn: "acs:ram::1:role/r",
                role_session_name: "s",
                duration_seconds: 900,
            };
            let err = sts
                .assume_role(&endpoint, &caller, &ex)
                .await
                .expect_err("too large");
            assert_eq!(err.kind, StsFailureKind::InvalidResponse, "{err}");
            assert!(err.message.contains("limit"), "{}", err.message);
            assert!(
                server.written() < TOTAL / 2,
                "{} bytes sent",
                server.written()
            );
        }
    }
}
