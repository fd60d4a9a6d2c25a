//! The operator's error type: each variant says which operation failed on which object, and
//! knows its bounded category (for metrics and condition reasons) and how it is retried.

use crate::client::{ApiError, ApiErrorKind};
use crate::conditions::Reason;
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
    #[error(
        "Secret {namespace}/{name} referenced by {object} is not marked for the operator: its owner opts in with the label or annotation {opt_in}=\"true\"",
        opt_in = crate::credentials::SECRET_OPT_IN
    )]
    SecretNotOptedIn {
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
    /// The allowed patterns are not quoted: tenants read this message, and other tenants'
    /// roles are none of their business.
    #[error(
        "{object}: spec.credentials.roleArn {role_arn} is not allowed for this namespace by the operator's --assume-role-allow (SPARKJOBRUN_ASSUME_ROLE_ALLOW){}; ask the operator's administrators to allow it",
        if *none_allowed { ", which allows no role" } else { "" }
    )]
    RoleNotAllowed {
        object: String,
        role_arn: String,
        none_allowed: bool,
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
    #[error("deleting {object} after its TTL: {source}")]
    Delete {
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("CancelJobRun for {object} (job run {job_run_id}) failed: {source}")]
    CancelJobRun {
        object: String,
        job_run_id: String,
        #[source]
        source: ApiError,
    },
    #[error("ListJobRuns of workspace {workspace_id} for {object} failed: {source}")]
    ListJobRuns {
        object: String,
        workspace_id: String,
        #[source]
        source: ApiError,
    },
    #[error("updating the finalizers of {object}: {source}")]
    Finalizer {
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("{object} has no {what}")]
    MissingMetadata { object: String, what: &'static str },
    /// The status write was computed from an older version of the object (it was written, or
    /// deleted and recreated, since): reconcile again from fresh state.
    #[error("writing status of {object}: the object changed since it was read")]
    Conflict { object: String },
    /// No rate-limit slot is free: not a failure, the object waits its turn.
    #[error("{object}: waiting {wait:?} for a slot of the rate limit")]
    RateLimited {
        object: String,
        wait: std::time::Duration,
    },
    /// The leader lease is not confirmed: this replica must not write.
    #[error("{object}: not writing, this replica's leader lease is not confirmed")]
    Fenced { object: String },
}

impl Error {
    /// Bounded: used as the `Synced` reason, the event reason and a metrics label.
    pub fn reason(&self) -> Reason {
        match self {
            Self::GetJobRun { source, .. }
            | Self::CancelJobRun { source, .. }
            | Self::ListJobRuns { source, .. } => api_reason(source.kind),
            Self::Finalizer { .. } => Reason::StatusWriteFailed,
            Self::SecretNotFound { .. } => Reason::SecretNotFound,
            Self::SecretNotOptedIn { .. } => Reason::SecretNotOptedIn,
            Self::SecretRead { .. } => Reason::SecretUnreadable,
            Self::Credentials { source, .. } => source.reason(),
            Self::RoleNotAllowed { .. } => Reason::RoleNotAllowed,
            Self::MissingRegion { .. } => Reason::RegionMissing,
            Self::Endpoint { .. } => Reason::EndpointNotAllowed,
            Self::PollInterval { .. } => Reason::InvalidSpec,
            Self::StatusPatch { .. } => Reason::StatusWriteFailed,
            Self::Delete { .. } => Reason::DeleteFailed,
            Self::MissingMetadata { .. } => Reason::InvalidObject,
            Self::Conflict { .. } | Self::Fenced { .. } => Reason::StatusWriteFailed,
            Self::RateLimited { .. } => Reason::Throttled,
        }
    }

    pub fn retry_class(&self) -> RetryClass {
        match self {
            Self::GetJobRun { source, .. }
            | Self::CancelJobRun { source, .. }
            | Self::ListJobRuns { source, .. } => source.kind.retry_class(),
            Self::Credentials { source, .. } => source.retry_class(),
            // Labelling the Secret fixes it: noticed soon, like a Secret created late.
            Self::SecretNotFound { .. } | Self::SecretNotOptedIn { .. } => RetryClass::Missing,
            Self::RoleNotAllowed { .. } => RetryClass::Permanent,
            Self::SecretRead { .. }
            | Self::StatusPatch { .. }
            | Self::Delete { .. }
            | Self::Finalizer { .. }
            | Self::Conflict { .. }
            | Self::Fenced { .. } => RetryClass::Transient,
            Self::RateLimited { .. } => RetryClass::Throttled,
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
            Self::ListJobRuns { source, .. } => source.condition_message().replacen(
                crate::conditions::SERVICE_FAILURE,
                "ListJobRuns failed: ",
                1,
            ),
            other => other.to_string(),
        }
    }
}

/// The condition reason of a service error class.
pub fn api_reason(kind: ApiErrorKind) -> Reason {
    match kind {
        ApiErrorKind::Throttled => Reason::Throttled,
        ApiErrorKind::Transient => Reason::ServiceUnavailable,
        ApiErrorKind::Unreachable => Reason::EndpointUnreachable,
        ApiErrorKind::InvalidResponse => Reason::InvalidResponse,
        ApiErrorKind::Unauthorized => Reason::Unauthorized,
        ApiErrorKind::ClockSkew => Reason::ClockSkew,
        ApiErrorKind::Forbidden => Reason::Forbidden,
        ApiErrorKind::NotFound => Reason::JobRunNotFound,
        ApiErrorKind::BadRequest => Reason::BadRequest,
    }
}

impl CredentialsError {
    /// The condition reason for credentials that could not be had.
    pub fn reason(&self) -> Reason {
        match self {
            Self::SecretKeyMissing { .. } | Self::SecretKeyNotText { .. } => {
                Reason::SecretKeyMissing
            }
            Self::Sts(_) => Reason::StsError,
            Self::TokenFile { .. } => Reason::OidcTokenUnreadable,
            Self::Imds { .. } | Self::Unavailable { .. } => Reason::CredentialsUnavailable,
            Self::NoneConfigured | Self::IncompleteEnvironment { .. } => Reason::CredentialsMissing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::sts::{StsFailure, StsFailureKind};

    #[test]
    fn credential_reasons_and_messages() {
        let sts = Error::Credentials {
            object: "ns/run".into(),
            source: CredentialsError::Sts(StsFailure {
                action: "AssumeRole",
                role_arn: "acs:ram::2:role/x".into(),
                kind: StsFailureKind::Rejected,
                http_status: Some(403),
                code: Some("NoPermission".into()),
                message: "You are not authorized to do this action.".into(),
                request_id: Some("REQ-123".into()),
            }),
        };
        assert_eq!(sts.reason(), Reason::StsError);
        assert_eq!(sts.retry_class(), RetryClass::Permanent);
        let msg = sts.condition_message();
        assert!(
            msg.contains("NoPermission") && msg.contains("acs:ram::2:role/x"),
            "{msg}"
        );
        assert!(
            !msg.contains("REQ-123"),
            "request ids stay out of status: {msg}"
        );

        let refused = Error::RoleNotAllowed {
            object: "ns/run".into(),
            role_arn: "acs:ram::3:role/y".into(),
            none_allowed: false,
        };
        assert_eq!(refused.reason(), Reason::RoleNotAllowed);
        assert_eq!(refused.retry_class(), RetryClass::Permanent);
        let msg = refused.condition_message();
        assert!(
            msg.contains("acs:ram::3:role/y") && msg.contains("--assume-role-allow"),
            "{msg}"
        );
        assert!(!msg.contains("allows no role"), "{msg}");
        let none = Error::RoleNotAllowed {
            object: "ns/run".into(),
            role_arn: "acs:ram::3:role/y".into(),
            none_allowed: true,
        };
        assert!(none.condition_message().contains("allows no role"));

        let token = Error::Credentials {
            object: "o".into(),
            source: CredentialsError::TokenFile {
                path: "/t".into(),
                message: "gone".into(),
            },
        };
        assert_eq!(
            (token.reason(), token.retry_class()),
            (Reason::OidcTokenUnreadable, RetryClass::Transient)
        );
        let none = Error::Credentials {
            object: "o".into(),
            source: CredentialsError::NoneConfigured,
        };
        assert_eq!(
            (none.reason(), none.retry_class()),
            (Reason::CredentialsMissing, RetryClass::Missing)
        );
    }
}
