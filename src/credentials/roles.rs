//! Cross-account access: `spec.credentials.roleArn` assumed with STS `AssumeRole` on top of a
//! base identity (the object's Secret or the operator's own chain), gated by the operator's
//! allow-list and cached per (base identity, role, session) so that many objects share one
//! exchange per refresh period.

use std::future::Future;
use std::time::Duration;

use super::CredentialsError;
use super::allow::RoleAllowList;
use super::http::StsClient;
use super::refresh::CredentialsCache;
use super::sts::{self, AssumeRoleExchange, TemporaryCredentials};
use crate::client::Timeouts;
use crate::endpoint::Endpoint;
use crate::signer::{self, Credentials};

/// How the operator talks to STS and caches what it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsSettings {
    /// Where STS calls go (explicit endpoint, region/VPC endpoint, or the global one).
    pub endpoint: Endpoint,
    /// `DurationSeconds` asked for (OIDC and AssumeRole).
    pub session_duration: Duration,
    /// Exchange again this long before `Expiration`.
    pub refresh_margin: Duration,
    /// Most cached (identity, role) entries.
    pub cache_size: usize,
    /// Roles objects may assume.
    pub allow: RoleAllowList,
    pub timeouts: Timeouts,
}

pub const DEFAULT_SESSION_DURATION: Duration = Duration::from_secs(3600);
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(180);
pub const DEFAULT_CACHE_SIZE: usize = 256;

impl Default for StsSettings {
    fn default() -> Self {
        Self {
            endpoint: Endpoint {
                https: true,
                host: sts::GLOBAL_STS_HOST.into(),
            },
            session_duration: DEFAULT_SESSION_DURATION,
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            cache_size: DEFAULT_CACHE_SIZE,
            allow: RoleAllowList::default(),
            timeouts: Timeouts::default(),
        }
    }
}

/// A fingerprint of base credentials for cache keys: a rotated Secret gets a new entry, and the
/// key holds no secret material.
pub fn fingerprint(c: &Credentials) -> String {
    let token = c
        .security_token
        .as_ref()
        .map(|t| t.expose())
        .unwrap_or_default();
    let digest = signer::hex_sha256(
        format!(
            "{}\n{}\n{token}",
            c.access_key_id,
            c.access_key_secret.expose()
        )
        .as_bytes(),
    );
    digest[..16].to_owned()
}

/// The cache key of a role assumed by a base identity for a session.
pub fn cache_key(base_identity: &str, role_arn: &str, session_name: &str) -> String {
    format!("{base_identity}|{role_arn}|{session_name}")
}

/// Assumes roles for objects, through the allow-list and the cache.
#[derive(Debug)]
pub struct RoleAssumer {
    sts: Result<StsClient, String>,
    settings: StsSettings,
    cache: CredentialsCache,
}

impl RoleAssumer {
    /// `sts` is the HTTP client, or why it could not be built (reported when a role is used).
    pub fn new(sts: Result<StsClient, String>, settings: StsSettings) -> Self {
        Self {
            cache: CredentialsCache::new(settings.cache_size, settings.refresh_margin),
            sts,
            settings,
        }
    }

    /// Builds its own STS client from the settings' timeouts, counting in `metrics`.
    pub fn from_settings(settings: StsSettings, metrics: &crate::metrics::Metrics) -> Self {
        let sts = StsClient::new(settings.timeouts)
            .map(|c| c.with_metrics(metrics))
            .map_err(|e| e.to_string());
        Self::new(sts, settings)
    }

    pub fn allow_list(&self) -> &RoleAllowList {
        &self.settings.allow
    }

    pub fn allows(&self, namespace: &str, role_arn: &str) -> bool {
        self.settings.allow.allows(namespace, role_arn)
    }

    /// Cached entries (for tests and metrics).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    pub fn invalidate(&self, key: &str) {
        self.cache.invalidate(key);
    }

    /// Credentials of `role_arn` for `session_name`, assumed with the base identity that `base`
    /// yields (asked only when an exchange is due). Returns them and their cache key.
    pub async fn assume<F, Fut>(
        &self,
        base_identity: &str,
        role_arn: &str,
        session_name: &str,
        base: F,
    ) -> Result<(Credentials, String), CredentialsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Credentials, CredentialsError>>,
    {
        let key = cache_key(base_identity, role_arn, session_name);
        let refresher = self.cache.entry(&key);
        let creds = refresher
            .get(|| async {
                let sts = self
                    .sts
                    .as_ref()
                    .map_err(|message| CredentialsError::Unavailable {
                        source_name: "STS",
                        message: format!("no HTTP client: {message}"),
                    })?;
                let caller = base().await?;
                let t: TemporaryCredentials = sts
                    .assume_role(
                        &self.settings.endpoint,
                        &caller,
                        &AssumeRoleExchange {
                            role_arn,
                            role_session_name: session_name,
                            duration_seconds: sts::duration_seconds(self.settings.session_duration),
                        },
                    )
                    .await
                    .map_err(CredentialsError::Sts)?;
                tracing::info!(
                    role_arn,
                    session_name,
                    expiration = %t.expiration,
                    "assumed a cross-account role"
                );
                Ok(t)
            })
            .await?;
        Ok((creds, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hold_no_secret_and_follow_rotation() {
        let a = Credentials::new("AK", "secret-one");
        let b = Credentials::new("AK", "secret-two");
        let fa = fingerprint(&a);
        assert_eq!(fa.len(), 16);
        assert_ne!(fa, fingerprint(&b), "rotated secret, new entry");
        assert_eq!(fa, fingerprint(&a.clone()));
        assert_ne!(fa, fingerprint(&a.clone().with_security_token("t")));
        let key = cache_key(
            &format!("secret:ns/s:{fa}"),
            "acs:ram::1:role/r",
            "sparkjobrun.ns",
        );
        assert!(!key.contains("secret-one"));
        assert_eq!(
            key,
            format!("secret:ns/s:{fa}|acs:ram::1:role/r|sparkjobrun.ns")
        );
    }

    #[tokio::test]
    async fn unreachable_sts_is_reported_and_base_asked_once_per_attempt() {
        let settings = StsSettings {
            endpoint: crate::endpoint::parse("http://127.0.0.1:9").expect("endpoint"),
            timeouts: Timeouts {
                connect: Duration::from_millis(300),
                read: Duration::from_millis(300),
            },
            allow: RoleAllowList::new(["*=acs:ram::1:role/*"]).expect("valid"),
            ..StsSettings::default()
        };
        let assumer = RoleAssumer::from_settings(settings, &crate::metrics::Metrics::new());
        assert!(assumer.allows("ns", "acs:ram::1:role/r"));
        assert!(!assumer.allows("ns", "acs:ram::2:role/r"));
        let err = assumer
            .assume("operator", "acs:ram::1:role/r", "s1", || async {
                Ok(Credentials::new("AK", "S"))
            })
            .await
            .expect_err("nothing listens on port 9");
        let CredentialsError::Sts(f) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(f.kind, sts::StsFailureKind::Unreachable);
        assert!(err.to_string().contains("acs:ram::1:role/r"), "{err}");
        assert_eq!(assumer.cached(), 1);
        let base_err = assumer
            .assume("other", "acs:ram::1:role/r", "s1", || async {
                Err(CredentialsError::NoneConfigured)
            })
            .await
            .expect_err("no base identity");
        assert_eq!(base_err, CredentialsError::NoneConfigured);
    }
}
