//! The credentials file (`~/.alibabacloud/credentials`, INI) and the CLI profile
//! (`~/.aliyun/config.json`), parsed the way the official credential libraries read them. Pure:
//! the caller reads the files; this turns their text into a [`ProfileSpec`].

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::secret::Secret;
use crate::signer::Credentials;

/// What a profile says to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileSpec {
    /// A long-lived AccessKey (or STS credentials someone else refreshes).
    Static(Credentials),
    /// Assume `role_arn` with STS `AssumeRole`, signed with `base`.
    RamRoleArn {
        base: Credentials,
        role_arn: String,
        role_session_name: Option<String>,
        duration_seconds: Option<u64>,
    },
    /// The ECS instance RAM role from the metadata service.
    EcsRamRole { role_name: Option<String> },
    /// RRSA-style OIDC exchange.
    Oidc {
        role_arn: String,
        oidc_provider_arn: String,
        oidc_token_file: String,
        role_session_name: Option<String>,
        duration_seconds: Option<u64>,
    },
}

impl ProfileSpec {
    /// The kind, for logs (no values).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Static(c) if c.security_token.is_some() => "sts",
            Self::Static(_) => "access_key",
            Self::RamRoleArn { .. } => "ram_role_arn",
            Self::EcsRamRole { .. } => "ecs_ram_role",
            Self::Oidc { .. } => "oidc_role_arn",
        }
    }
}

/// Sections of an INI file: `[name]` headers, `key = value` lines, `#`/`;` comment lines, and a
/// `#` in a value ends it (as the Python library reads it).
pub fn parse_ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim().to_owned();
            out.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        let (Some(section), Some((key, value))) = (&current, line.split_once('=')) else {
            continue;
        };
        let value = value.split('#').next().unwrap_or_default().trim();
        out.entry(section.clone())
            .or_default()
            .insert(key.trim().to_ascii_lowercase(), value.to_owned());
    }
    out
}

fn required<'a>(section: &'a BTreeMap<String, String>, key: &str) -> Result<&'a str, String> {
    section
        .get(key)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("lacks {key}"))
}

fn optional(section: &BTreeMap<String, String>, key: &str) -> Option<String> {
    section.get(key).filter(|v| !v.is_empty()).cloned()
}

/// The profile `name` of a credentials file (`type = access_key | ram_role_arn | ecs_ram_role |
/// oidc_role_arn`).
pub fn from_credentials_file(text: &str, name: &str) -> Result<ProfileSpec, String> {
    let sections = parse_ini(text);
    let section = sections
        .get(name)
        .ok_or_else(|| format!("has no profile [{name}]"))?;
    let kind = required(section, "type")?;
    let ak = |section: &BTreeMap<String, String>| -> Result<Credentials, String> {
        Ok(Credentials::new(
            required(section, "access_key_id")?,
            Secret::new(required(section, "access_key_secret")?),
        ))
    };
    match kind {
        "access_key" => Ok(ProfileSpec::Static(ak(section)?)),
        "ram_role_arn" => Ok(ProfileSpec::RamRoleArn {
            base: ak(section)?,
            role_arn: required(section, "role_arn")?.to_owned(),
            role_session_name: optional(section, "role_session_name"),
            duration_seconds: None,
        }),
        "ecs_ram_role" => Ok(ProfileSpec::EcsRamRole {
            role_name: optional(section, "role_name"),
        }),
        "oidc_role_arn" => Ok(ProfileSpec::Oidc {
            role_arn: required(section, "role_arn")?.to_owned(),
            oidc_provider_arn: required(section, "oidc_provider_arn")?.to_owned(),
            oidc_token_file: required(section, "oidc_token_file_path")?.to_owned(),
            role_session_name: optional(section, "role_session_name"),
            duration_seconds: None,
        }),
        other => Err(format!(
            "profile [{name}] has type {other:?}, which the operator does not support (access_key, ram_role_arn, ecs_ram_role, oidc_role_arn)"
        )),
    }
}

#[derive(Deserialize)]
struct CliConfig {
    #[serde(default)]
    current: Option<String>,
    #[serde(default)]
    profiles: Vec<CliProfile>,
}

#[derive(Deserialize)]
struct CliProfile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    access_key_id: Option<String>,
    #[serde(default)]
    access_key_secret: Option<String>,
    #[serde(default)]
    sts_token: Option<String>,
    #[serde(default)]
    ram_role_arn: Option<String>,
    #[serde(default)]
    ram_session_name: Option<String>,
    #[serde(default)]
    role_session_name: Option<String>,
    #[serde(default)]
    expired_seconds: Option<u64>,
    #[serde(default)]
    ram_role_name: Option<String>,
    #[serde(default)]
    oidc_provider_arn: Option<String>,
    #[serde(default)]
    oidc_token_file: Option<String>,
}

fn need(value: &Option<String>, key: &str) -> Result<String, String> {
    value
        .clone()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("lacks {key}"))
}

/// The profile `name` (or the file's `current` one) of the Alibaba Cloud CLI configuration
/// (modes `AK`, `StsToken`, `RamRoleArn`, `EcsRamRole`, `OIDC`).
pub fn from_cli_config(text: &str, name: Option<&str>) -> Result<ProfileSpec, String> {
    let config: CliConfig =
        serde_json::from_str(text).map_err(|e| format!("is not valid JSON: {e}"))?;
    let name = name
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .or(config.current.clone())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| "names no current profile".to_string())?;
    let p = config
        .profiles
        .iter()
        .find(|p| p.name.as_deref() == Some(name.as_str()))
        .ok_or_else(|| format!("has no profile {name:?}"))?;
    let ak = || -> Result<Credentials, String> {
        Ok(Credentials::new(
            need(&p.access_key_id, "access_key_id")?,
            Secret::new(need(&p.access_key_secret, "access_key_secret")?),
        ))
    };
    match p.mode.as_deref().unwrap_or_default() {
        "AK" => Ok(ProfileSpec::Static(ak()?)),
        "StsToken" => Ok(ProfileSpec::Static(
            ak()?.with_security_token(need(&p.sts_token, "sts_token")?),
        )),
        "RamRoleArn" => Ok(ProfileSpec::RamRoleArn {
            base: ak()?,
            role_arn: need(&p.ram_role_arn, "ram_role_arn")?,
            role_session_name: p.ram_session_name.clone().filter(|v| !v.is_empty()),
            duration_seconds: p.expired_seconds.filter(|s| *s > 0),
        }),
        "EcsRamRole" => Ok(ProfileSpec::EcsRamRole {
            role_name: p.ram_role_name.clone().filter(|v| !v.is_empty()),
        }),
        "OIDC" => Ok(ProfileSpec::Oidc {
            role_arn: need(&p.ram_role_arn, "ram_role_arn")?,
            oidc_provider_arn: need(&p.oidc_provider_arn, "oidc_provider_arn")?,
            oidc_token_file: need(&p.oidc_token_file, "oidc_token_file")?,
            role_session_name: p.role_session_name.clone().filter(|v| !v.is_empty()),
            duration_seconds: p.expired_seconds.filter(|s| *s > 0),
        }),
        other => Err(format!(
            "profile {name:?} has mode {other:?}, which the operator does not support (AK, StsToken, RamRoleArn, EcsRamRole, OIDC)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INI: &str = "\
# comment
[default]
type = access_key
access_key_id = AKID-file   # trailing comment
access_key_secret = file-secret

[role]
type = ram_role_arn
access_key_id = AK2
access_key_secret = S2
role_arn = acs:ram::1:role/r
role_session_name = s

[ecs]
type = ecs_ram_role
role_name = EcsRole

[rrsa]
type = oidc_role_arn
role_arn = acs:ram::1:role/o
oidc_provider_arn = acs:ram::1:oidc-provider/p
oidc_token_file_path = /var/run/token

[weird]
type = rsa_key_pair
";

    #[test]
    fn credentials_file_profiles() {
        let spec = from_credentials_file(INI, "default").expect("default");
        let ProfileSpec::Static(c) = &spec else {
            panic!("{spec:?}")
        };
        assert_eq!(c.access_key_id, "AKID-file");
        assert_eq!(c.access_key_secret.expose(), "file-secret");
        assert_eq!(spec.kind(), "access_key");
        assert!(!format!("{spec:?}").contains("file-secret"));
        assert!(matches!(
            from_credentials_file(INI, "role"),
            Ok(ProfileSpec::RamRoleArn { ref role_arn, .. }) if role_arn == "acs:ram::1:role/r"
        ));
        assert_eq!(
            from_credentials_file(INI, "ecs"),
            Ok(ProfileSpec::EcsRamRole {
                role_name: Some("EcsRole".into())
            })
        );
        assert_eq!(
            from_credentials_file(INI, "rrsa").map(|s| s.kind()),
            Ok("oidc_role_arn")
        );
        let err = from_credentials_file(INI, "weird").expect_err("unsupported");
        assert!(err.contains("rsa_key_pair"), "{err}");
        let err = from_credentials_file(INI, "absent").expect_err("absent");
        assert!(err.contains("[absent]"), "{err}");
        let err = from_credentials_file(
            "[default]\ntype = access_key\naccess_key_id = A\n",
            "default",
        )
        .expect_err("incomplete");
        assert!(err.contains("access_key_secret"), "{err}");
    }

    const CLI: &str = r#"{
        "current": "prod",
        "profiles": [
            {"name": "prod", "mode": "AK", "access_key_id": "AK-cli", "access_key_secret": "cli-secret", "region_id": "cn-hangzhou"},
            {"name": "sts", "mode": "StsToken", "access_key_id": "STS.x", "access_key_secret": "s", "sts_token": "t"},
            {"name": "role", "mode": "RamRoleArn", "access_key_id": "A", "access_key_secret": "S", "ram_role_arn": "acs:ram::1:role/r", "ram_session_name": "n", "expired_seconds": 900},
            {"name": "ecs", "mode": "EcsRamRole", "ram_role_name": "R"},
            {"name": "oidc", "mode": "OIDC", "ram_role_arn": "acs:ram::1:role/o", "oidc_provider_arn": "p", "oidc_token_file": "/t"},
            {"name": "sso", "mode": "CloudSSO"}
        ]
    }"#;

    #[test]
    fn cli_profiles() {
        let current = from_cli_config(CLI, None).expect("current");
        assert!(
            matches!(&current, ProfileSpec::Static(c) if c.access_key_id == "AK-cli" && c.security_token.is_none())
        );
        assert_eq!(
            from_cli_config(CLI, Some("sts")).map(|s| s.kind()),
            Ok("sts")
        );
        assert!(matches!(
            from_cli_config(CLI, Some("role")),
            Ok(ProfileSpec::RamRoleArn {
                duration_seconds: Some(900),
                ..
            })
        ));
        assert_eq!(
            from_cli_config(CLI, Some("ecs")),
            Ok(ProfileSpec::EcsRamRole {
                role_name: Some("R".into())
            })
        );
        assert_eq!(
            from_cli_config(CLI, Some("oidc")).map(|s| s.kind()),
            Ok("oidc_role_arn")
        );
        assert!(
            from_cli_config(CLI, Some("sso"))
                .expect_err("unsupported")
                .contains("CloudSSO")
        );
        assert!(from_cli_config(CLI, Some("nope")).is_err());
        assert!(
            from_cli_config("{", None)
                .expect_err("json")
                .contains("JSON")
        );
        assert!(from_cli_config(r#"{"profiles":[]}"#, None).is_err());
    }
}
