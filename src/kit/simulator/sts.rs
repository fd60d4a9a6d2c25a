//! A simulated STS (`2015-04-01`, RPC style) on the simulator's port: `AssumeRoleWithOIDC`
//! (anonymous; the OIDC token must equal the one registered for the role and provider, so tests
//! rotate the token file and re-register the new value to mimic the kubelet) and `AssumeRole`
//! (ACS3-HMAC-SHA256 verified with the same machinery as GetJobRun; the caller must be trusted
//! by the role). Both issue a fresh AccessKey, secret and SecurityToken registered as an
//! [`Account`](super::verify::Account) that expires, so GetJobRun refuses it afterwards with
//! `InvalidSecurityToken.Expired`.
//!
//! Codes: `NoPermission`, `EntityNotExist.Role`, `InvalidParameter.RoleSessionName` and
//! `MissingParameter.*` follow STS's published errors; `EntityNotExist.OIDCProvider`,
//! `AuthenticationFail.OIDCToken.Invalid` and `InvalidParameter.DurationSeconds` are the
//! simulator's choices in the documented code families. The decisions are pure (clock and
//! randomness come in as arguments); the server does the IO.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use super::error::ServiceError;
use crate::credentials::sts::{self as wire, ASSUME_ROLE, ASSUME_ROLE_WITH_OIDC, STS_VERSION};
use crate::secret::Secret;

/// The shortest `DurationSeconds` real STS accepts; tests lower it through the config.
pub const DEFAULT_MIN_DURATION_SECONDS: u64 = 900;
pub const DEFAULT_MAX_DURATION_SECONDS: u64 = 43200;
pub const DEFAULT_DURATION_SECONDS: u64 = 3600;
/// Issued credentials are remembered this long after they expired (for tests), then dropped.
pub const FORGET_AFTER_SECONDS: i64 = 15 * 60;

fn de_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    String::deserialize(d).map(Secret::new)
}

/// A role that can be assumed with an OIDC token: what the token file must contain now.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcRole {
    pub role_arn: String,
    pub oidc_provider_arn: String,
    #[serde(deserialize_with = "de_secret")]
    pub token: Secret,
}

/// Who may `AssumeRole` a role: AccessKey ids, or role ARNs (meaning credentials issued for
/// that role, as RRSA hands out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleTrust {
    pub role_arn: String,
    #[serde(default)]
    pub callers: Vec<String>,
}

fn default_min() -> u64 {
    DEFAULT_MIN_DURATION_SECONDS
}

fn default_max() -> u64 {
    DEFAULT_MAX_DURATION_SECONDS
}

/// The `sts:` section of the simulator config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StsConfig {
    #[serde(default)]
    pub oidc: Vec<OidcRole>,
    #[serde(default)]
    pub trusts: Vec<RoleTrust>,
    /// Shortest `DurationSeconds` accepted (900 like STS; tests use 1).
    #[serde(default = "default_min")]
    pub min_duration_seconds: u64,
    #[serde(default = "default_max")]
    pub max_duration_seconds: u64,
    /// When set, every credential lives this long whatever was asked.
    #[serde(default)]
    pub lifetime_seconds: Option<u64>,
}

impl Default for StsConfig {
    fn default() -> Self {
        Self {
            oidc: Vec::new(),
            trusts: Vec::new(),
            min_duration_seconds: DEFAULT_MIN_DURATION_SECONDS,
            max_duration_seconds: DEFAULT_MAX_DURATION_SECONDS,
            lifetime_seconds: None,
        }
    }
}

impl StsConfig {
    /// Adds an OIDC role, replacing the entry of the same role and provider (a rotated token).
    pub fn upsert_oidc(&mut self, role: OidcRole) {
        self.oidc.retain(|o| {
            !(o.role_arn == role.role_arn && o.oidc_provider_arn == role.oidc_provider_arn)
        });
        self.oidc.push(role);
    }

    /// Adds a trust, replacing the one of the same role.
    pub fn upsert_trust(&mut self, trust: RoleTrust) {
        self.trusts.retain(|t| t.role_arn != trust.role_arn);
        self.trusts.push(trust);
    }
}

/// Credentials the simulator handed out. Test code reads the secret values to prove they never
/// leak into logs, events or status; the admin API never shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub action: &'static str,
    pub role_arn: String,
    pub role_session_name: String,
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub security_token: Secret,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

/// STS calls by action, outcome and role (`Action:Outcome` per role).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StsCounts {
    pub total: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub by_action: BTreeMap<String, u64>,
    pub by_outcome: BTreeMap<String, u64>,
    pub by_role: BTreeMap<String, BTreeMap<String, u64>>,
}

impl StsCounts {
    pub fn record(&mut self, action: &str, role_arn: &str, outcome: &str) {
        self.total += 1;
        if outcome == super::counts::ACCEPTED {
            self.accepted += 1;
        } else {
            self.rejected += 1;
        }
        *self.by_action.entry(action.to_owned()).or_default() += 1;
        *self.by_outcome.entry(outcome.to_owned()).or_default() += 1;
        *self
            .by_role
            .entry(role_arn.to_owned())
            .or_default()
            .entry(format!("{action}:{outcome}"))
            .or_default() += 1;
    }

    /// Calls for `role_arn` of `action` answered with `outcome`.
    pub fn for_role(&self, role_arn: &str, action: &str, outcome: &str) -> u64 {
        self.by_role
            .get(role_arn)
            .and_then(|m| m.get(&format!("{action}:{outcome}")))
            .copied()
            .unwrap_or(0)
    }

    /// Every call for `role_arn`, whatever the action and outcome.
    pub fn all_for_role(&self, role_arn: &str) -> u64 {
        self.by_role
            .get(role_arn)
            .map(|m| m.values().sum())
            .unwrap_or(0)
    }
}

/// The simulated STS's state.
#[derive(Debug, Default)]
pub struct StsState {
    pub config: StsConfig,
    /// By AccessKey id.
    pub issued: HashMap<String, Issued>,
}

impl StsState {
    pub fn new(config: StsConfig) -> Self {
        Self {
            config,
            issued: HashMap::new(),
        }
    }

    /// Issued credentials expired for longer than [`FORGET_AFTER_SECONDS`]: forget them.
    /// Returns their key ids so the caller can drop the accounts too.
    pub fn forget_expired(&mut self, now: Timestamp) -> Vec<String> {
        let cutoff = now.as_second() - FORGET_AFTER_SECONDS;
        let old: Vec<String> = self
            .issued
            .iter()
            .filter(|(_, i)| i.expires_at.as_second() < cutoff)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &old {
            self.issued.remove(k);
        }
        old
    }

    /// The principals a caller acts as: its AccessKey id, and the role its temporary
    /// credentials were issued for.
    pub fn principals(&self, access_key_id: &str) -> Vec<String> {
        let mut out = vec![access_key_id.to_owned()];
        if let Some(i) = self.issued.get(access_key_id) {
            out.push(i.role_arn.clone());
        }
        out
    }
}

/// Request parameters of an RPC call: the query and, for a form body, the body's fields.
pub fn rpc_params(
    query: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<BTreeMap<String, String>, ServiceError> {
    let mut out: BTreeMap<String, String> = wire::form_decode(query)
        .ok_or_else(ServiceError::invalid_query)?
        .into_iter()
        .collect();
    let is_form = content_type.is_some_and(|c| {
        c.trim()
            .to_ascii_lowercase()
            .starts_with(wire::FORM_CONTENT_TYPE)
    });
    if is_form && !body.is_empty() {
        let text = std::str::from_utf8(body).map_err(|_| ServiceError::invalid_query())?;
        out.extend(wire::form_decode(text).ok_or_else(ServiceError::invalid_query)?);
    }
    Ok(out)
}

/// What the caller may have: the role, session and lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub action: &'static str,
    pub role_arn: String,
    pub role_session_name: String,
    pub lifetime_seconds: u64,
}

fn required<'a>(params: &'a BTreeMap<String, String>, name: &str) -> Result<&'a str, ServiceError> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ServiceError::missing_parameter(name))
}

fn session_and_lifetime(
    params: &BTreeMap<String, String>,
    config: &StsConfig,
) -> Result<(String, u64), ServiceError> {
    let session = required(params, "RoleSessionName")?;
    if !wire::is_valid_session_name(session) {
        return Err(ServiceError::new(
            "InvalidParameter.RoleSessionName",
            400,
            "The parameter RoleSessionName is wrongly formed.",
        ));
    }
    let duration = match params.get("DurationSeconds").filter(|v| !v.is_empty()) {
        None => DEFAULT_DURATION_SECONDS,
        Some(v) => v.parse::<u64>().map_err(|_| duration_error(config))?,
    };
    if duration < config.min_duration_seconds || duration > config.max_duration_seconds {
        return Err(duration_error(config));
    }
    Ok((
        session.to_owned(),
        config.lifetime_seconds.unwrap_or(duration),
    ))
}

fn duration_error(config: &StsConfig) -> ServiceError {
    ServiceError::new(
        "InvalidParameter.DurationSeconds",
        400,
        format!(
            "The parameter DurationSeconds must be between {} and {}.",
            config.min_duration_seconds, config.max_duration_seconds
        ),
    )
}

fn role_not_found(role_arn: &str) -> ServiceError {
    ServiceError::new(
        "EntityNotExist.Role",
        404,
        format!("The specified Role not exists: {role_arn}."),
    )
}

/// Checks an `AssumeRoleWithOIDC` call against the registered OIDC roles.
pub fn check_oidc(
    params: &BTreeMap<String, String>,
    config: &StsConfig,
) -> Result<Grant, ServiceError> {
    let role_arn = required(params, "RoleArn")?;
    let provider = required(params, "OIDCProviderArn")?;
    let token = required(params, "OIDCToken")?;
    let (role_session_name, lifetime_seconds) = session_and_lifetime(params, config)?;
    let for_role: Vec<&OidcRole> = config
        .oidc
        .iter()
        .filter(|o| o.role_arn == role_arn)
        .collect();
    if for_role.is_empty() {
        return Err(role_not_found(role_arn));
    }
    let Some(entry) = for_role.iter().find(|o| o.oidc_provider_arn == provider) else {
        return Err(ServiceError::new(
            "EntityNotExist.OIDCProvider",
            404,
            format!("The OIDC provider {provider} does not exist or is not trusted by the role."),
        ));
    };
    if !crate::secret::constant_time_eq(entry.token.expose().as_bytes(), token.as_bytes()) {
        return Err(ServiceError::new(
            "AuthenticationFail.OIDCToken.Invalid",
            400,
            "The OIDC token is invalid or has been rotated; read the token file again.",
        ));
    }
    Ok(Grant {
        action: ASSUME_ROLE_WITH_OIDC,
        role_arn: role_arn.to_owned(),
        role_session_name,
        lifetime_seconds,
    })
}

/// Checks an `AssumeRole` call (already signature-verified) against the role's trust.
pub fn check_assume_role(
    params: &BTreeMap<String, String>,
    principals: &[String],
    config: &StsConfig,
) -> Result<Grant, ServiceError> {
    let role_arn = required(params, "RoleArn")?;
    let (role_session_name, lifetime_seconds) = session_and_lifetime(params, config)?;
    let trust = config
        .trusts
        .iter()
        .find(|t| t.role_arn == role_arn)
        .ok_or_else(|| role_not_found(role_arn))?;
    if !trust.callers.iter().any(|c| principals.contains(c)) {
        return Err(ServiceError::new(
            "NoPermission",
            403,
            "You are not authorized to do this action. You should be authorized by RAM.",
        ));
    }
    Ok(Grant {
        action: ASSUME_ROLE,
        role_arn: role_arn.to_owned(),
        role_session_name,
        lifetime_seconds,
    })
}

/// Random material for new credentials, from the caller.
#[derive(Clone)]
pub struct Minted {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub security_token: String,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Even the simulator's issued secrets stay out of Debug output (and so out of logs).
        f.debug_struct("Minted")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"***")
            .field("security_token", &"***")
            .finish()
    }
}

/// Fresh random credentials (key ids shaped like STS's `STS.` ones).
pub fn mint() -> Minted {
    use rand::Rng;
    let mut rng = rand::rng();
    let mut text = |n: usize| -> String {
        (&mut rng)
            .sample_iter(rand::distr::Alphanumeric)
            .take(n)
            .map(char::from)
            .collect()
    };
    Minted {
        access_key_id: format!("STS.NT{}", text(24)),
        access_key_secret: text(44),
        security_token: format!("CAIS{}", text(160)),
    }
}

/// The issued credentials and STS's answer for a grant. `Expiration` has whole seconds, so the
/// account expires exactly when the answer says.
pub fn issue(grant: &Grant, minted: Minted, now: Timestamp, request_id: &str) -> (Issued, Value) {
    let issued_at = Timestamp::from_second(now.as_second()).unwrap_or(now);
    let lifetime = i64::try_from(grant.lifetime_seconds).unwrap_or(i64::MAX / 2);
    let expires_at = Timestamp::from_second(issued_at.as_second().saturating_add(lifetime))
        .unwrap_or(Timestamp::MAX);
    let account_id = grant
        .role_arn
        .strip_prefix("acs:ram::")
        .and_then(|r| r.split(':').next())
        .unwrap_or("0");
    let role_name = grant.role_arn.rsplit('/').next().unwrap_or_default();
    let mut body = json!({
        "RequestId": request_id,
        "AssumedRoleUser": {
            "Arn": format!("acs:ram::{account_id}:role/{role_name}/{}", grant.role_session_name),
            "AssumedRoleId": format!(
                "3{}:{}",
                minted.access_key_id.chars().skip(6).take(8).collect::<String>(),
                grant.role_session_name
            ),
        },
        "Credentials": {
            "SecurityToken": minted.security_token,
            "AccessKeyId": minted.access_key_id,
            "AccessKeySecret": minted.access_key_secret,
            "Expiration": wire::format_timestamp(expires_at),
        },
    });
    if grant.action == ASSUME_ROLE_WITH_OIDC
        && let Some(map) = body.as_object_mut()
    {
        map.insert(
            "OIDCTokenInfo".into(),
            json!({"Issuer": "simulator", "Subject": "system:serviceaccount:simulated", "ClientIds": "sts.aliyuncs.com"}),
        );
    }
    let issued = Issued {
        action: grant.action,
        role_arn: grant.role_arn.clone(),
        role_session_name: grant.role_session_name.clone(),
        access_key_id: minted.access_key_id,
        access_key_secret: Secret::new(minted.access_key_secret),
        security_token: Secret::new(minted.security_token),
        issued_at,
        expires_at,
    };
    (issued, body)
}

/// Which STS action a `POST /` names: `x-acs-action` (signed calls) or `Action` (anonymous
/// ones), with the version to match.
pub fn action_and_version<'a>(
    header_action: Option<&'a str>,
    header_version: Option<&'a str>,
    params: &'a BTreeMap<String, String>,
) -> (Option<&'a str>, bool) {
    let action = header_action
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .or_else(|| params.get("Action").map(String::as_str));
    let version = header_version
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .or_else(|| params.get("Version").map(String::as_str));
    (action, version == Some(STS_VERSION))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn config() -> StsConfig {
        let mut c = StsConfig {
            min_duration_seconds: 1,
            ..StsConfig::default()
        };
        c.upsert_oidc(OidcRole {
            role_arn: "acs:ram::1:role/rrsa".into(),
            oidc_provider_arn: "acs:ram::1:oidc-provider/ack".into(),
            token: Secret::new("token-v1"),
        });
        c.upsert_trust(RoleTrust {
            role_arn: "acs:ram::2:role/reader".into(),
            callers: vec!["AK-operator".into(), "acs:ram::1:role/rrsa".into()],
        });
        c
    }

    const OIDC_OK: [(&str, &str); 5] = [
        ("RoleArn", "acs:ram::1:role/rrsa"),
        ("OIDCProviderArn", "acs:ram::1:oidc-provider/ack"),
        ("OIDCToken", "token-v1"),
        ("RoleSessionName", "sparkjobrun-operator"),
        ("DurationSeconds", "10"),
    ];

    fn code(r: Result<Grant, ServiceError>) -> String {
        r.map(|_| "ok".to_string()).unwrap_or_else(|e| e.code)
    }

    #[test]
    fn oidc_checks() {
        let mut c = config();
        let g = check_oidc(&params(&OIDC_OK), &c).expect("granted");
        assert_eq!(g.lifetime_seconds, 10);
        let with = |k: &str, v: &str| {
            let mut p = params(&OIDC_OK);
            p.insert(k.into(), v.into());
            p
        };
        let table = [
            (
                with("OIDCToken", "token-v0"),
                "AuthenticationFail.OIDCToken.Invalid",
            ),
            (
                with("RoleArn", "acs:ram::1:role/other"),
                "EntityNotExist.Role",
            ),
            (
                with("OIDCProviderArn", "acs:ram::1:oidc-provider/x"),
                "EntityNotExist.OIDCProvider",
            ),
            (
                with("RoleSessionName", "a"),
                "InvalidParameter.RoleSessionName",
            ),
            (
                with("DurationSeconds", "ten"),
                "InvalidParameter.DurationSeconds",
            ),
            (
                with("DurationSeconds", "99999"),
                "InvalidParameter.DurationSeconds",
            ),
            (with("OIDCToken", ""), "MissingParameter.OIDCToken"),
        ];
        for (p, want) in table {
            assert_eq!(code(check_oidc(&p, &c)), want, "{p:?}");
        }
        // Rotation: the new token replaces the old one.
        c.upsert_oidc(OidcRole {
            role_arn: "acs:ram::1:role/rrsa".into(),
            oidc_provider_arn: "acs:ram::1:oidc-provider/ack".into(),
            token: Secret::new("token-v2"),
        });
        assert_eq!(c.oidc.len(), 1);
        assert_eq!(
            code(check_oidc(&params(&OIDC_OK), &c)),
            "AuthenticationFail.OIDCToken.Invalid"
        );
        assert_eq!(code(check_oidc(&with("OIDCToken", "token-v2"), &c)), "ok");
        // The real minimum applies by default.
        assert_eq!(
            code(check_oidc(
                &with("OIDCToken", "token-v2"),
                &StsConfig {
                    oidc: c.oidc.clone(),
                    ..StsConfig::default()
                }
            )),
            "InvalidParameter.DurationSeconds"
        );
        let fixed = StsConfig {
            lifetime_seconds: Some(7),
            ..c
        };
        assert_eq!(
            check_oidc(&with("OIDCToken", "token-v2"), &fixed).map(|g| g.lifetime_seconds),
            Ok(7)
        );
    }

    #[test]
    fn assume_role_trust() {
        let c = config();
        let p = params(&[
            ("RoleArn", "acs:ram::2:role/reader"),
            ("RoleSessionName", "sparkjobrun.team-a"),
        ]);
        let g = check_assume_role(&p, &["AK-operator".into()], &c).expect("trusted key");
        assert_eq!(g.lifetime_seconds, DEFAULT_DURATION_SECONDS);
        assert_eq!(
            code(check_assume_role(
                &p,
                &["STS.x".into(), "acs:ram::1:role/rrsa".into()],
                &c
            )),
            "ok",
            "trusted through the caller's role"
        );
        assert_eq!(
            code(check_assume_role(&p, &["AK-other".into()], &c)),
            "NoPermission"
        );
        let unknown = params(&[
            ("RoleArn", "acs:ram::2:role/none"),
            ("RoleSessionName", "ss"),
        ]);
        assert_eq!(
            code(check_assume_role(&unknown, &["AK-operator".into()], &c)),
            "EntityNotExist.Role"
        );
    }

    #[test]
    fn issuing() {
        let now: Timestamp = "2024-05-01T08:00:00.700Z".parse().expect("ts");
        let grant = Grant {
            action: ASSUME_ROLE_WITH_OIDC,
            role_arn: "acs:ram::1:role/rrsa".into(),
            role_session_name: "s1".into(),
            lifetime_seconds: 10,
        };
        let minted = mint();
        assert!(minted.access_key_id.starts_with("STS."));
        let (issued, body) = issue(&grant, minted.clone(), now, "REQ");
        assert_eq!(issued.expires_at.to_string(), "2024-05-01T08:00:10Z");
        assert_eq!(body["Credentials"]["Expiration"], "2024-05-01T08:00:10Z");
        assert_eq!(
            body["Credentials"]["AccessKeyId"],
            minted.access_key_id.as_str()
        );
        assert_eq!(body["AssumedRoleUser"]["Arn"], "acs:ram::1:role/rrsa/s1");
        // What the operator parses is what was issued.
        let parsed = wire::parse_response(
            ASSUME_ROLE_WITH_OIDC,
            "acs:ram::1:role/rrsa",
            200,
            None,
            body.to_string().as_bytes(),
        )
        .expect("operator reads it");
        assert_eq!(parsed.expiration, issued.expires_at);
        assert_eq!(
            parsed.credentials.security_token,
            Some(issued.security_token.clone())
        );
        assert!(!format!("{issued:?}").contains(issued.security_token.expose()));

        let mut state = StsState::new(StsConfig::default());
        state
            .issued
            .insert(issued.access_key_id.clone(), issued.clone());
        assert_eq!(
            state.principals(&issued.access_key_id)[1],
            "acs:ram::1:role/rrsa"
        );
        assert!(state.forget_expired(now).is_empty());
        let later: Timestamp = "2024-05-01T09:00:00Z".parse().expect("ts");
        assert_eq!(
            state.forget_expired(later),
            vec![issued.access_key_id.clone()]
        );
    }

    #[test]
    fn params_and_actions() {
        let p = rpc_params(
            "Action=AssumeRoleWithOIDC&Version=2015-04-01",
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            b"OIDCToken=a%2Bb&RoleArn=r",
        )
        .expect("parses");
        assert_eq!(p["OIDCToken"], "a+b");
        let (action, version_ok) = action_and_version(None, None, &p);
        assert_eq!((action, version_ok), (Some("AssumeRoleWithOIDC"), true));
        let (action, version_ok) = action_and_version(Some("AssumeRole"), Some("2015-04-01"), &p);
        assert_eq!((action, version_ok), (Some("AssumeRole"), true));
        let none = rpc_params("", Some("application/json"), b"{\"a\":1}").expect("ignored body");
        assert!(none.is_empty());
        assert!(action_and_version(None, None, &none).0.is_none());
        assert!(rpc_params("a=%ZZ", None, b"").is_err());

        let mut counts = StsCounts::default();
        counts.record("AssumeRole", "r", "Accepted");
        counts.record("AssumeRole", "r", "NoPermission");
        assert_eq!(counts.for_role("r", "AssumeRole", "Accepted"), 1);
        assert_eq!(counts.all_for_role("r"), 2);
        assert_eq!((counts.accepted, counts.rejected), (1, 1));
    }
}
