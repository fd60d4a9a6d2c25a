//! Where AccessKeys come from: the operator's own default chain (environment, RRSA/OIDC,
//! credentials file or CLI profile, instance metadata), a Secret named by the object, and on top
//! of either a cross-account role assumed through STS.
//!
//! Pure parts (parsing, request building, refresh decisions, chain order, allow-list matching)
//! live in [`sts`], [`refresh`], [`allow`], [`profile`], [`chain`] and [`imds`] and are
//! table-tested; the HTTP exchanges are in [`http`] and [`roles`]. Reading the Secret is the
//! controller's job, on demand, with `get` only.

pub mod allow;
pub mod chain;
pub mod http;
pub mod imds;
pub mod profile;
pub mod refresh;
pub mod roles;
pub mod sts;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use crate::policy::RetryClass;
use crate::secret::Secret;
use crate::signer::Credentials;

pub use allow::RoleAllowList;
pub use chain::{ChainSettings, ImdsMode, OperatorChain};
pub use refresh::{CredentialsCache, Refresher, needs_refresh};
pub use roles::{RoleAssumer, StsSettings};
pub use sts::{StsFailure, TemporaryCredentials};

pub const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
pub const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";

pub const KEY_ACCESS_KEY_ID: &str = "accessKeyId";
pub const KEY_ACCESS_KEY_SECRET: &str = "accessKeySecret";
pub const KEY_SECURITY_TOKEN: &str = "securityToken";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "no credentials: set {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET} (optionally {ENV_SECURITY_TOKEN}) for the operator, use RRSA ({}, {}, {}), a credentials file or CLI profile, or the instance metadata service (--imds), or set spec.credentials.secretRef on the object",
        chain::ENV_ROLE_ARN,
        chain::ENV_OIDC_PROVIDER_ARN,
        chain::ENV_OIDC_TOKEN_FILE
    )]
    NoneConfigured,
    #[error("{present} is set but {missing} is not")]
    IncompleteEnvironment {
        present: &'static str,
        missing: &'static str,
    },
    #[error(
        "Secret {namespace}/{name} has no key {key:?} (expected keys: accessKeyId, accessKeySecret, optional securityToken)"
    )]
    SecretKeyMissing {
        namespace: String,
        name: String,
        key: &'static str,
    },
    #[error("Secret {namespace}/{name} key {key:?} is not valid UTF-8 text")]
    SecretKeyNotText {
        namespace: String,
        name: String,
        key: &'static str,
    },
    /// STS refused or could not be reached: the code and message of its answer, no request id.
    #[error("{0}")]
    Sts(StsFailure),
    /// The projected service-account token of RRSA could not be read.
    #[error("reading the OIDC token file {path}: {message}")]
    TokenFile { path: String, message: String },
    /// The ECS instance metadata service gave no credentials.
    #[error("instance metadata service {endpoint}: {message}")]
    Imds { endpoint: String, message: String },
    /// A source that was configured cannot be used (e.g. no HTTP client for STS).
    #[error("{source_name} credentials: {message}")]
    Unavailable {
        source_name: &'static str,
        message: String,
    },
}

impl CredentialsError {
    /// How the reconciler retries: STS outages and throttling are transient, a refusal needs a
    /// human (trust policy, permissions), a missing key may appear on its own.
    pub fn retry_class(&self) -> RetryClass {
        match self {
            Self::Sts(f) => f.retry_class(),
            Self::TokenFile { .. } | Self::Imds { .. } => RetryClass::Transient,
            Self::Unavailable { .. } => RetryClass::Permanent,
            _ => RetryClass::Missing,
        }
    }
}

/// The operator's own identity, asked for on every call so that temporary credentials can be
/// refreshed behind it. Implementations never log or display secret values.
pub trait CredentialProvider: Send + Sync + 'static {
    fn credentials(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Credentials, CredentialsError>> + Send + '_>>;
    /// Which source this is ("environment", ...), for logs.
    fn source(&self) -> &'static str;
    /// Forgets cached temporary credentials (the service said they expired), so the next call
    /// exchanges again. Fixed credentials have nothing to forget.
    fn invalidate(&self) {}
}

/// Fixed credentials (environment variables), or the reason there are none.
#[derive(Debug, Clone)]
pub struct StaticProvider {
    credentials: Result<Credentials, CredentialsError>,
    source: &'static str,
}

impl StaticProvider {
    pub fn new(credentials: Result<Credentials, CredentialsError>, source: &'static str) -> Self {
        Self {
            credentials,
            source,
        }
    }

    /// The environment source: `ALIBABA_CLOUD_ACCESS_KEY_ID` and friends, read once.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let credentials = from_env(lookup).and_then(|c| c.ok_or(CredentialsError::NoneConfigured));
        Self::new(credentials, "environment")
    }
}

impl CredentialProvider for StaticProvider {
    fn credentials(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Credentials, CredentialsError>> + Send + '_>> {
        let result = self.credentials.clone();
        Box::pin(async move { result })
    }

    fn source(&self) -> &'static str {
        self.source
    }
}

/// Reads the environment credentials through `lookup` (std::env::var in production).
/// `Ok(None)` when neither variable is set.
pub fn from_env(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<Credentials>, CredentialsError> {
    let get = |k: &str| {
        lookup(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    match (get(ENV_ACCESS_KEY_ID), get(ENV_ACCESS_KEY_SECRET)) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(CredentialsError::IncompleteEnvironment {
            present: ENV_ACCESS_KEY_ID,
            missing: ENV_ACCESS_KEY_SECRET,
        }),
        (None, Some(_)) => Err(CredentialsError::IncompleteEnvironment {
            present: ENV_ACCESS_KEY_SECRET,
            missing: ENV_ACCESS_KEY_ID,
        }),
        (Some(id), Some(secret)) => {
            let mut creds = Credentials::new(id, Secret::new(secret));
            creds.security_token = get(ENV_SECURITY_TOKEN).map(Secret::new);
            Ok(Some(creds))
        }
    }
}

/// The label (or annotation) by which a Secret's owner lets the operator use it. Without it,
/// naming a Secret in `secretRef` gets nothing from it: someone allowed to create
/// SparkJobRunRefs but not to read Secrets cannot borrow another workload's keys.
pub const SECRET_OPT_IN: &str = "emrspark.io/credentials";

/// Whether a Secret with these labels and annotations opted in (value `"true"`).
pub fn secret_opted_in(
    labels: Option<&std::collections::BTreeMap<String, String>>,
    annotations: Option<&std::collections::BTreeMap<String, String>>,
) -> bool {
    [labels, annotations]
        .into_iter()
        .flatten()
        .any(|m| m.get(SECRET_OPT_IN).is_some_and(|v| v == "true"))
}

/// Reads credentials from a Secret's decoded `data`.
pub fn from_secret_data(
    namespace: &str,
    name: &str,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<Credentials, CredentialsError> {
    let text = |key: &'static str| -> Result<Option<String>, CredentialsError> {
        match data.get(key) {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes.clone())
                .map(|s| Some(s.trim().to_owned()).filter(|s| !s.is_empty()))
                .map_err(|_| CredentialsError::SecretKeyNotText {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    key,
                }),
        }
    };
    let required = |key: &'static str| -> Result<String, CredentialsError> {
        text(key)?.ok_or_else(|| CredentialsError::SecretKeyMissing {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            key,
        })
    };
    let mut creds = Credentials::new(
        required(KEY_ACCESS_KEY_ID)?,
        Secret::new(required(KEY_ACCESS_KEY_SECRET)?),
    );
    creds.security_token = text(KEY_SECURITY_TOKEN)?.map(Secret::new);
    Ok(creds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn environment() {
        assert_eq!(from_env(env(&[])), Ok(None));
        let c = from_env(env(&[
            (ENV_ACCESS_KEY_ID, "AK"),
            (ENV_ACCESS_KEY_SECRET, "SK"),
        ]))
        .expect("ok")
        .expect("some");
        assert_eq!(c.access_key_id, "AK");
        assert_eq!(c.security_token, None);
        let sts = from_env(env(&[
            (ENV_ACCESS_KEY_ID, "AK"),
            (ENV_ACCESS_KEY_SECRET, "SK"),
            (ENV_SECURITY_TOKEN, "TOK"),
        ]))
        .expect("ok")
        .expect("some");
        assert_eq!(sts.security_token.as_ref().map(Secret::expose), Some("TOK"));
        let err = from_env(env(&[(ENV_ACCESS_KEY_ID, "AK")])).expect_err("incomplete");
        assert!(err.to_string().contains(ENV_ACCESS_KEY_SECRET), "{err}");
        assert_eq!(
            from_env(env(&[
                (ENV_ACCESS_KEY_ID, " "),
                (ENV_ACCESS_KEY_SECRET, "")
            ])),
            Ok(None)
        );
    }

    #[test]
    fn secret_data() {
        let mut data = BTreeMap::new();
        data.insert("accessKeyId".to_string(), b"AK".to_vec());
        let err = from_secret_data("ns", "emr-ak", &data).expect_err("secret key missing");
        assert!(
            err.to_string()
                .contains("ns/emr-ak has no key \"accessKeySecret\""),
            "{err}"
        );
        data.insert(
            "accessKeySecret".to_string(),
            b"super-secret-value".to_vec(),
        );
        let creds = from_secret_data("ns", "emr-ak", &data).expect("complete");
        assert_eq!(creds.access_key_secret.expose(), "super-secret-value");
        assert!(!format!("{creds:?}").contains("super-secret-value"));
        data.insert("securityToken".to_string(), vec![0xff, 0xfe]);
        let err = from_secret_data("ns", "emr-ak", &data).expect_err("binary token");
        assert!(matches!(
            err,
            CredentialsError::SecretKeyNotText {
                key: "securityToken",
                ..
            }
        ));
    }
}

#[cfg(test)]
mod opt_in_tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn only_a_true_label_or_annotation_opts_in() {
        let map = |v: &str| BTreeMap::from([(SECRET_OPT_IN.to_owned(), v.to_owned())]);
        assert!(secret_opted_in(Some(&map("true")), None));
        assert!(secret_opted_in(None, Some(&map("true"))));
        assert!(!secret_opted_in(None, None));
        assert!(!secret_opted_in(Some(&map("yes")), Some(&map("TRUE"))));
        let other = BTreeMap::from([("app".to_owned(), "true".to_owned())]);
        assert!(!secret_opted_in(Some(&other), Some(&other)));
    }
}
