//! The operator's error type: each variant says which operation failed on which object, and
//! knows its bounded category (for metrics and condition reasons) and how it is retried.

use crate::client::ApiError;
use crate::credentials::CredentialsError;
use crate::endpoint::EndpointError;
use crate::policy::RetryClass;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("GetJobRun for {object} (job run {job_run_id}) failed: {source}")]
    GetJobRun {
        object: String,
        job_run_id: String,
        #[source]
        source: ApiError,
    },
    #[error("Secret {namespace}/{name} referenced by {object} was not found")]
    SecretNotFound {
        object: String,
        namespace: String,
        name: String,
    },
    #[error("reading Secret {namespace}/{name} for {object}: {source}")]
    SecretRead {
        object: String,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("credentials for {object}: {source}")]
    Credentials {
        object: String,
        #[source]
        source: CredentialsError,
    },
    #[error(
        "{object} has no spec.regionId and the operator has no default region (--default-region)"
    )]
    MissingRegion { object: String },
    #[error("endpoint for {object}: {source}")]
    Endpoint {
        object: String,
        #[source]
        source: EndpointError,
    },
    #[error("spec.pollInterval of {object}: {message}")]
    PollInterval { object: String, message: String },
    #[error("writing status of {object}: {source}")]
    StatusPatch {
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("{object} has no {what}")]
    MissingMetadata { object: String, what: &'static str },
}

impl Error {
    /// PascalCase, bounded: used as the `Synced` reason, the event reason and a metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::GetJobRun { source, .. } => source.kind.reason(),
            Self::SecretNotFound { .. } => "SecretNotFound",
            Self::SecretRead { .. } => "SecretUnreadable",
            Self::Credentials { source, .. } => match source {
                CredentialsError::SecretKeyMissing { .. }
                | CredentialsError::SecretKeyNotText { .. } => "SecretKeyMissing",
                _ => "CredentialsMissing",
            },
            Self::MissingRegion { .. } => "RegionMissing",
            Self::Endpoint { .. } => "EndpointNotAllowed",
            Self::PollInterval { .. } => "InvalidSpec",
            Self::StatusPatch { .. } => "StatusWriteFailed",
            Self::MissingMetadata { .. } => "InvalidObject",
        }
    }

    pub fn retry_class(&self) -> RetryClass {
        match self {
            Self::GetJobRun { source, .. } => source.kind.retry_class(),
            Self::SecretNotFound { .. } | Self::Credentials { .. } => RetryClass::Missing,
            Self::SecretRead { .. } | Self::StatusPatch { .. } => RetryClass::Transient,
            Self::MissingRegion { .. }
            | Self::Endpoint { .. }
            | Self::PollInterval { .. }
            | Self::MissingMetadata { .. } => RetryClass::Permanent,
        }
    }

    /// The message for the `Synced` condition and events: no request ids, no secrets.
    pub fn condition_message(&self) -> String {
        match self {
            Self::GetJobRun { source, .. } => source.condition_message(),
            other => other.to_string(),
        }
    }
}
