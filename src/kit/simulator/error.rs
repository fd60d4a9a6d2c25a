//! The service's error answers: code, HTTP status and message, and the JSON body around them.
//!
//! Codes, statuses and messages follow Alibaba Cloud's published list of common OpenAPI gateway
//! errors where one exists. Where the real code is unknown the constructor says so: those are the
//! simulator's choices, picked to be recognisable by the same classification rules (code family
//! first, status second) that the operator applies to the real service.

use serde_json::{Value, json};

/// Product code used in `Recommend` links and in `Forbidden.RAM`'s `AuthAction`.
pub const PRODUCT: &str = "emr-serverless-spark";

/// One error answer of the service.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} (HTTP {status}): {message}")]
pub struct ServiceError {
    pub code: String,
    pub status: u16,
    pub message: String,
    /// Only `Forbidden.RAM` carries this: which action and principal were denied.
    pub access_denied_detail: Option<Value>,
    /// Sent as `x-acs-retry-after` (milliseconds) by throttling answers.
    pub retry_after_ms: Option<u64>,
}

impl ServiceError {
    pub fn new(code: impl Into<String>, status: u16, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            status,
            message: message.into(),
            access_denied_detail: None,
            retry_after_ms: None,
        }
    }

    /// No `Authorization` header. Documented pattern `Missing{ParameterName}`; the exact code the
    /// gateway uses for a V3 request without the header is a guess.
    pub fn missing_authorization() -> Self {
        Self::new(
            "MissingAuthorization",
            400,
            "Authorization is mandatory for this action.",
        )
    }

    /// An `Authorization` header that cannot be read, or headers that should be signed and are not.
    pub fn incomplete_signature(detail: &str) -> Self {
        Self::new(
            "IncompleteSignature",
            400,
            format!("The request signature does not conform to Aliyun standards. {detail}"),
        )
    }

    /// A required `x-acs-*` (or `host`) header is absent. The code is the simulator's choice,
    /// modelled on the documented `MissingParameter.regionId`.
    pub fn missing_header(name: &str) -> Self {
        Self::missing_parameter(name)
    }

    /// A required query parameter (or header) is absent: `MissingParameter.{name}`.
    pub fn missing_parameter(name: &str) -> Self {
        Self::new(
            format!("MissingParameter.{name}"),
            400,
            format!(
                "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
            ),
        )
    }

    /// `x-acs-content-sha256` differs from the body's hash. The real code is unknown; this name is
    /// the simulator's choice (after the documented `ContentMD5NotMatched`).
    pub fn content_sha256_mismatch() -> Self {
        Self::new(
            "ContentSHA256NotMatch",
            400,
            "The x-acs-content-sha256 header does not match the SHA-256 of the request body.",
        )
    }

    pub fn timestamp_format() -> Self {
        Self::new(
            "InvalidTimeStamp.Format",
            400,
            "Specified time stamp or date value is not well formatted.",
        )
    }

    pub fn timestamp_expired() -> Self {
        Self::new(
            "InvalidTimeStamp.Expired",
            400,
            "Specified time stamp or date value is expired.",
        )
    }

    /// Documented with both 400 and 404; the simulator answers 404.
    pub fn access_key_not_found() -> Self {
        Self::new(
            "InvalidAccessKeyId.NotFound",
            404,
            "Specified access key is not found.",
        )
    }

    pub fn access_key_inactive() -> Self {
        Self::new(
            "InvalidAccessKeyId.Inactive",
            400,
            "Specified access key is disabled.",
        )
    }

    /// STS credentials sent without their token. The code is documented; status and message are
    /// guesses.
    pub fn missing_security_token() -> Self {
        Self::new(
            "MissingSecurityToken",
            400,
            "SecurityToken is mandatory for this action.",
        )
    }

    /// Status and message are guesses; the code is documented.
    pub fn security_token_malformed() -> Self {
        Self::new(
            "InvalidSecurityToken.Malformed",
            400,
            "Specified SecurityToken is malformed.",
        )
    }

    /// Status and message are guesses; the code is documented.
    pub fn security_token_mismatch() -> Self {
        Self::new(
            "InvalidSecurityToken.MismatchWithAccessKey",
            400,
            "Specified SecurityToken mismatch with the AccessKey.",
        )
    }

    /// Status and message are guesses; the code is documented.
    pub fn security_token_expired() -> Self {
        Self::new(
            "InvalidSecurityToken.Expired",
            400,
            "Specified SecurityToken is expired.",
        )
    }

    /// The real service puts its string-to-sign in the message so a client can diff it against
    /// its own; it is a hash of the canonical request and reveals no secret.
    pub fn signature_mismatch(server_string_to_sign: &str) -> Self {
        Self::new(
            "SignatureDoesNotMatch",
            400,
            format!(
                "Specified signature is not matched with our calculation. server string to sign is:{server_string_to_sign}"
            ),
        )
    }

    pub fn nonce_used() -> Self {
        Self::new(
            "SignatureNonceUsed",
            400,
            "Specified signature nonce was used already.",
        )
    }

    /// Unknown action, or a path/method that is no API. Documented code (the gateway's
    /// `InvalidApi.NotFound`, not `InvalidAction.NotFound`).
    pub fn api_not_found() -> Self {
        Self::new(
            "InvalidApi.NotFound",
            404,
            "Specified api is not found, please check your url and method.",
        )
    }

    /// Documented pattern `Invalid{ParameterName}`.
    pub fn invalid_version() -> Self {
        Self::new(
            "InvalidVersion",
            400,
            "Specified parameter Version is not valid.",
        )
    }

    /// A query string that is not valid percent-encoded UTF-8 (the simulator's choice).
    pub fn invalid_query() -> Self {
        Self::new(
            "InvalidParameter",
            400,
            "The query string is not valid percent-encoded UTF-8.",
        )
    }

    /// A query parameter with a value the service cannot use: `InvalidParameter.{name}` (the
    /// simulator's choice of code, after the documented `InvalidParameter`).
    pub fn invalid_parameter(name: &str, detail: &str) -> Self {
        Self::new(
            format!("InvalidParameter.{name}"),
            400,
            format!("The parameter {name} is invalid: {detail}"),
        )
    }

    /// CancelJobRun of a run that has already ended. The real code is undocumented;
    /// `JobRun.AlreadyFinished` is the simulator's choice.
    pub fn already_finished(job_run_id: &str, state: &str) -> Self {
        Self::new(
            "JobRun.AlreadyFinished",
            400,
            format!(
                "The job run {job_run_id} has already finished ({state}) and cannot be cancelled."
            ),
        )
    }

    /// Unknown job run (or one living in another region or workspace). The real not-found code of
    /// GetJobRun is undocumented; `JobRunNotFound` is the simulator's choice.
    pub fn job_run_not_found(job_run_id: &str) -> Self {
        Self::new(
            "JobRunNotFound",
            404,
            format!("The specified job run {job_run_id} does not exist."),
        )
    }

    pub fn internal_error() -> Self {
        Self::new(
            "InternalError",
            500,
            "The request processing has failed due to some unknown error, exception or failure.",
        )
    }

    pub fn service_unavailable() -> Self {
        Self::new(
            "ServiceUnavailable",
            503,
            "The request has failed due to a temporary failure of the server.",
        )
    }

    pub fn throttling(code: &str, status: u16, retry_after_ms: Option<u64>) -> Self {
        Self {
            retry_after_ms,
            ..Self::new(code, status, "Request was denied due to user flow control.")
        }
    }

    /// Missing RAM permission. `AccessDeniedDetail` keys follow the documented shape; the values
    /// are made up except `AuthAction`, which names the action the operator needs.
    pub fn forbidden_ram(access_key_id: &str, action: &str) -> Self {
        Self {
            access_denied_detail: Some(json!({
                "PolicyType": "AccountLevelIdentityBasedPolicy",
                "AuthPrincipalOwnerId": "1509789347010000",
                "EncodedDiagnosticMessage": "c2ltdWxhdGVkIGRlbmlhbA==",
                "AuthPrincipalType": "SubUser",
                "AuthPrincipalDisplayName": access_key_id,
                "NoPermissionType": "ImplicitDeny",
                "AuthAction": format!("{PRODUCT}:{action}"),
            })),
            ..Self::new(
                "Forbidden.RAM",
                403,
                "User not authorized to operate on the specified resource, or this API doesn't support RAM.",
            )
        }
    }

    /// The JSON body the service sends with this error.
    pub fn body(&self, request_id: &str, host_id: &str) -> Value {
        let mut body = json!({
            "RequestId": request_id,
            "HostId": host_id,
            "Code": self.code,
            "Message": self.message,
            "Recommend": recommend_url(&self.code, request_id),
        });
        if let (Some(detail), Some(map)) = (&self.access_denied_detail, body.as_object_mut()) {
            map.insert("AccessDeniedDetail".into(), detail.clone());
        }
        body
    }
}

/// The troubleshooting link of an error, as the real gateway builds it (it appends the request id).
pub fn recommend_url(code: &str, request_id: &str) -> String {
    format!(
        "https://api.aliyun.com/troubleshoot?q={}&product={PRODUCT}&requestId={}",
        crate::signer::percent_encode(code),
        crate::signer::percent_encode(request_id)
    )
}

/// A request id shaped like the service's: a UUID in upper-case hex.
pub fn new_request_id() -> String {
    format_request_id(rand::random::<u128>())
}

fn format_request_id(bits: u128) -> String {
    let hex = format!("{bits:032X}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_service_shape() {
        let err = ServiceError::nonce_used();
        let body = err.body("RID-1", "127.0.0.1:8080");
        assert_eq!(body["RequestId"], "RID-1");
        assert_eq!(body["HostId"], "127.0.0.1:8080");
        assert_eq!(body["Code"], "SignatureNonceUsed");
        assert_eq!(
            body["Message"],
            "Specified signature nonce was used already."
        );
        assert_eq!(
            body["Recommend"],
            "https://api.aliyun.com/troubleshoot?q=SignatureNonceUsed&product=emr-serverless-spark&requestId=RID-1"
        );
        assert!(body.get("AccessDeniedDetail").is_none());
        let decoded: crate::wire::ErrorBody =
            serde_json::from_value(body).expect("the operator's decoder reads it");
        assert_eq!(decoded.code.as_deref(), Some("SignatureNonceUsed"));
    }

    #[test]
    fn forbidden_ram_names_the_action() {
        let body = ServiceError::forbidden_ram("AKID", "GetJobRun").body("r", "h");
        assert_eq!(body["Code"], "Forbidden.RAM");
        assert_eq!(
            body["AccessDeniedDetail"]["AuthAction"],
            "emr-serverless-spark:GetJobRun"
        );
    }

    #[test]
    fn request_ids_look_like_the_service_s() {
        assert_eq!(
            format_request_id(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            "01234567-89AB-CDEF-0123-456789ABCDEF"
        );
        let id = new_request_id();
        assert_eq!(id.len(), 36);
        assert!(
            id.chars()
                .all(|c| c == '-' || c.is_ascii_digit() || c.is_ascii_uppercase())
        );
        assert_ne!(id, new_request_id());
    }

    #[test]
    fn display_says_what_failed() {
        assert_eq!(
            ServiceError::timestamp_expired().to_string(),
            "InvalidTimeStamp.Expired (HTTP 400): Specified time stamp or date value is expired."
        );
    }
}
