//! The operator's own identity: the default credential chain of the official libraries, in
//! their order — environment variables, OIDC (RRSA), the CLI profile (`~/.aliyun/config.json`),
//! the credentials file (`~/.alibabacloud/credentials`), the instance metadata service. The
//! first source that is configured is chosen once, at start-up, and logged (never its values).
//!
//! [`gather`] does the IO (environment, files, DMI); [`plan`] decides from those facts alone and
//! is table-tested; [`build`] turns the decision into a [`CredentialProvider`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::ValueEnum;

use super::http::{AssumeRoleProvider, OidcProvider, OidcSource, StsClient};
use super::imds::{self, ImdsProvider};
use super::profile::{self, ProfileSpec};
use super::refresh::Refresher;
use super::roles::StsSettings;
use super::sts;
use super::{
    CredentialProvider, CredentialsError, ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET,
    ENV_SECURITY_TOKEN, StaticProvider,
};
use crate::endpoint::Endpoint;

pub const ENV_ROLE_ARN: &str = "ALIBABA_CLOUD_ROLE_ARN";
pub const ENV_OIDC_PROVIDER_ARN: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
pub const ENV_OIDC_TOKEN_FILE: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";
pub const ENV_ROLE_SESSION_NAME: &str = "ALIBABA_CLOUD_ROLE_SESSION_NAME";
pub const ENV_CREDENTIALS_FILE: &str = "ALIBABA_CLOUD_CREDENTIALS_FILE";
pub const ENV_PROFILE: &str = "ALIBABA_CLOUD_PROFILE";
pub const ENV_CLI_PROFILE_DISABLED: &str = "ALIBABA_CLOUD_CLI_PROFILE_DISABLED";
pub const ENV_ECS_METADATA: &str = "ALIBABA_CLOUD_ECS_METADATA";
pub const ENV_ECS_METADATA_DISABLED: &str = "ALIBABA_CLOUD_ECS_METADATA_DISABLED";
pub const ENV_IMDSV1_DISABLED: &str = "ALIBABA_CLOUD_IMDSV1_DISABLED";

/// Every variable the chain reads, so [`gather`] can snapshot them.
pub const CHAIN_ENV: [&str; 13] = [
    ENV_ACCESS_KEY_ID,
    ENV_ACCESS_KEY_SECRET,
    ENV_SECURITY_TOKEN,
    ENV_ROLE_ARN,
    ENV_OIDC_PROVIDER_ARN,
    ENV_OIDC_TOKEN_FILE,
    ENV_ROLE_SESSION_NAME,
    ENV_CREDENTIALS_FILE,
    ENV_PROFILE,
    ENV_CLI_PROFILE_DISABLED,
    ENV_ECS_METADATA,
    ENV_ECS_METADATA_DISABLED,
    ENV_IMDSV1_DISABLED,
];

/// `RoleSessionName` of the operator's own OIDC session unless `ALIBABA_CLOUD_ROLE_SESSION_NAME`
/// says otherwise: stable, so STS audit logs name the operator.
pub const DEFAULT_SESSION_NAME: &str = "sparkjobrun-operator";

/// Whether the instance metadata service is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ImdsMode {
    /// Only on Alibaba Cloud (DMI says so) and unless ALIBABA_CLOUD_ECS_METADATA_DISABLED=true.
    #[default]
    Auto,
    /// Always, as the last source of the chain.
    On,
    /// Never.
    Off,
}

/// What the chain is built with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSettings {
    pub sts: StsSettings,
    pub imds: ImdsMode,
    pub imds_endpoint: Endpoint,
}

impl Default for ChainSettings {
    fn default() -> Self {
        Self {
            sts: StsSettings::default(),
            imds: ImdsMode::Auto,
            imds_endpoint: Endpoint {
                https: false,
                host: "100.100.100.200".into(),
            },
        }
    }
}

/// A file the chain may read: where, whether the user named it, and its text or why not.
#[derive(Clone, PartialEq, Eq)]
pub struct FileFact {
    pub path: PathBuf,
    pub explicit: bool,
    /// `Ok(None)`: the file does not exist.
    pub text: Result<Option<String>, String>,
}

/// Everything the decision depends on.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ChainFacts {
    pub env: BTreeMap<String, String>,
    pub cli_config: Option<FileFact>,
    pub credentials_files: Vec<FileFact>,
    pub on_alibaba_cloud: bool,
}

// Both hold secrets (the AccessKey variables, the files' keys): `Debug` shows names only.
impl std::fmt::Debug for FileFact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match &self.text {
            Ok(None) => "absent".to_string(),
            Ok(Some(t)) => format!("{} bytes", t.len()),
            Err(e) => format!("unreadable: {e}"),
        };
        f.debug_struct("FileFact")
            .field("path", &self.path)
            .field("explicit", &self.explicit)
            .field("text", &text)
            .finish()
    }
}

impl std::fmt::Debug for ChainFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.keys().map(String::as_str).collect();
        f.debug_struct("ChainFacts")
            .field("env", &names)
            .field("cli_config", &self.cli_config)
            .field("credentials_files", &self.credentials_files)
            .field("on_alibaba_cloud", &self.on_alibaba_cloud)
            .finish()
    }
}

impl ChainFacts {
    fn var(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn flag(&self, name: &str) -> bool {
        self.var(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// The chosen source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `ALIBABA_CLOUD_ACCESS_KEY_*`; an error when only half of it is set and nothing else is.
    Environment(Result<crate::signer::Credentials, CredentialsError>),
    Oidc(OidcSource),
    Profile {
        /// "cli-profile" or "credentials-file".
        origin: &'static str,
        path: PathBuf,
        name: String,
        spec: ProfileSpec,
    },
    Imds {
        role_name: Option<String>,
        disable_v1: bool,
    },
    None,
}

impl Source {
    /// The source's name in logs and `CredentialProvider::source`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Environment(_) => "environment",
            Self::Oidc(_) => "oidc",
            Self::Profile { origin, .. } => origin,
            Self::Imds { .. } => "ecs-ram-role",
            Self::None => "none",
        }
    }
}

/// The decision and why earlier sources were passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub source: Source,
    /// Earlier sources that were partly configured or unreadable (for a warning each).
    pub skipped: Vec<String>,
}

/// Decides the source. `duration_seconds` is the OIDC session duration asked for.
pub fn plan(facts: &ChainFacts, imds_mode: ImdsMode, duration_seconds: u64) -> Plan {
    let mut skipped = Vec::new();

    // 1. Environment.
    let env_lookup = |k: &str| facts.var(k).map(str::to_owned);
    let mut broken_env = None;
    match super::from_env(env_lookup) {
        Ok(Some(c)) => {
            return Plan {
                source: Source::Environment(Ok(c)),
                skipped,
            };
        }
        Ok(None) => {}
        Err(e) => {
            skipped.push(format!("environment: {e}"));
            broken_env = Some(e);
        }
    }

    // 2. OIDC (RRSA): all three variables, as the official libraries require.
    let oidc = [ENV_ROLE_ARN, ENV_OIDC_PROVIDER_ARN, ENV_OIDC_TOKEN_FILE].map(|k| facts.var(k));
    match oidc {
        [Some(role), Some(provider), Some(file)] => {
            let session = facts
                .var(ENV_ROLE_SESSION_NAME)
                .unwrap_or(DEFAULT_SESSION_NAME);
            return Plan {
                source: Source::Oidc(OidcSource {
                    role_arn: role.to_owned(),
                    oidc_provider_arn: provider.to_owned(),
                    token_file: PathBuf::from(file),
                    role_session_name: sts::session_name(session),
                    duration_seconds,
                }),
                skipped,
            };
        }
        [None, None, None] => {}
        _ => {
            let missing: Vec<&str> = [ENV_ROLE_ARN, ENV_OIDC_PROVIDER_ARN, ENV_OIDC_TOKEN_FILE]
                .into_iter()
                .zip(oidc)
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| k)
                .collect();
            skipped.push(format!("oidc: {} not set", missing.join(" and ")));
        }
    }

    // 3. CLI profile.
    let profile_name = facts.var(ENV_PROFILE);
    if facts.flag(ENV_CLI_PROFILE_DISABLED) {
        skipped.push(format!(
            "cli-profile: disabled by {ENV_CLI_PROFILE_DISABLED}"
        ));
    } else if let Some(f) = &facts.cli_config {
        match &f.text {
            Ok(None) => {}
            Err(e) => skipped.push(format!("cli-profile {}: {e}", f.path.display())),
            Ok(Some(text)) => match profile::from_cli_config(text, profile_name) {
                Ok(spec) => {
                    return Plan {
                        source: Source::Profile {
                            origin: "cli-profile",
                            path: f.path.clone(),
                            name: profile_name.unwrap_or("(current)").to_owned(),
                            spec,
                        },
                        skipped,
                    };
                }
                Err(e) => skipped.push(format!("cli-profile {}: {e}", f.path.display())),
            },
        }
    }

    // 4. Credentials file: the named one, or the first default location that exists.
    let name = profile_name.unwrap_or("default");
    for f in &facts.credentials_files {
        match &f.text {
            Ok(None) if f.explicit => {
                skipped.push(format!(
                    "credentials-file {} ({ENV_CREDENTIALS_FILE}): no such file",
                    f.path.display()
                ));
                break;
            }
            Ok(None) => continue,
            Err(e) => {
                skipped.push(format!("credentials-file {}: {e}", f.path.display()));
                break;
            }
            Ok(Some(text)) => {
                match profile::from_credentials_file(text, name) {
                    Ok(spec) => {
                        return Plan {
                            source: Source::Profile {
                                origin: "credentials-file",
                                path: f.path.clone(),
                                name: name.to_owned(),
                                spec,
                            },
                            skipped,
                        };
                    }
                    Err(e) => skipped.push(format!("credentials-file {}: {e}", f.path.display())),
                }
                break;
            }
        }
    }

    // 5. Instance metadata.
    let imds_on = match imds_mode {
        ImdsMode::On => true,
        ImdsMode::Off => false,
        ImdsMode::Auto if facts.flag(ENV_ECS_METADATA_DISABLED) => {
            skipped.push(format!(
                "ecs-ram-role: disabled by {ENV_ECS_METADATA_DISABLED}"
            ));
            false
        }
        ImdsMode::Auto => facts.on_alibaba_cloud,
    };
    if imds_on {
        return Plan {
            source: Source::Imds {
                role_name: facts.var(ENV_ECS_METADATA).map(str::to_owned),
                disable_v1: facts.flag(ENV_IMDSV1_DISABLED),
            },
            skipped,
        };
    }

    Plan {
        source: match broken_env {
            Some(e) => Source::Environment(Err(e)),
            None => Source::None,
        },
        skipped,
    }
}

/// Snapshots the chain's environment variables and reads its files. `home` is `$HOME`.
pub fn gather(lookup: impl Fn(&str) -> Option<String>, home: Option<&Path>) -> ChainFacts {
    let env: BTreeMap<String, String> = CHAIN_ENV
        .iter()
        .filter_map(|k| lookup(k).map(|v| ((*k).to_owned(), v)))
        .collect();
    let read = |path: PathBuf, explicit: bool| {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        };
        FileFact {
            path,
            explicit,
            text,
        }
    };
    let cli_config = home.map(|h| read(h.join(".aliyun").join("config.json"), false));
    let explicit_file = env
        .get(ENV_CREDENTIALS_FILE)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty());
    let credentials_files = match (explicit_file, home) {
        (Some(p), _) => vec![read(PathBuf::from(p), true)],
        // The Go and Java libraries read `credentials`, the Python one `credentials.ini`.
        (None, Some(h)) => vec![
            read(h.join(".alibabacloud").join("credentials"), false),
            read(h.join(".alibabacloud").join("credentials.ini"), false),
        ],
        (None, None) => Vec::new(),
    };
    ChainFacts {
        env,
        cli_config,
        credentials_files,
        on_alibaba_cloud: imds::detect_alibaba_cloud(),
    }
}

/// A one-line description of the chosen source for the start-up log: names, ARNs and paths,
/// never a key, secret or token.
pub fn describe(plan: &Plan, settings: &ChainSettings) -> String {
    match &plan.source {
        Source::Environment(Ok(c)) => format!(
            "environment ({ENV_ACCESS_KEY_ID}{})",
            if c.security_token.is_some() {
                format!(" with {ENV_SECURITY_TOKEN}")
            } else {
                String::new()
            }
        ),
        Source::Environment(Err(e)) => format!("environment (unusable: {e})"),
        Source::Oidc(o) => format!(
            "oidc: role {} via provider {}, token file {}, STS {}",
            o.role_arn,
            o.oidc_provider_arn,
            o.token_file.display(),
            settings.sts.endpoint
        ),
        Source::Profile {
            origin,
            path,
            name,
            spec,
        } => format!(
            "{origin} {} profile {name} ({})",
            path.display(),
            spec.kind()
        ),
        Source::Imds { role_name, .. } => format!(
            "ecs-ram-role from {} (role {})",
            settings.imds_endpoint,
            role_name.as_deref().unwrap_or("asked from the service")
        ),
        Source::None => "none".into(),
    }
}

/// The provider for a plan. Fails only when an HTTP client cannot be built.
pub fn build(
    plan: &Plan,
    settings: &ChainSettings,
    sts_client: &StsClient,
) -> Result<Arc<dyn CredentialProvider>, reqwest::Error> {
    let refresher = || Refresher::new(settings.sts.refresh_margin);
    let duration = sts::duration_seconds(settings.sts.session_duration);
    Ok(match &plan.source {
        Source::Environment(c) => Arc::new(StaticProvider::new(c.clone(), "environment")),
        Source::Oidc(o) => Arc::new(OidcProvider::new(
            o.clone(),
            settings.sts.endpoint.clone(),
            sts_client.clone(),
            refresher(),
        )),
        Source::Profile { origin, spec, .. } => match spec {
            ProfileSpec::Static(c) => Arc::new(StaticProvider::new(Ok(c.clone()), origin)),
            ProfileSpec::RamRoleArn {
                base,
                role_arn,
                role_session_name,
                duration_seconds,
            } => Arc::new(AssumeRoleProvider::new(
                base.clone(),
                role_arn.clone(),
                sts::session_name(role_session_name.as_deref().unwrap_or(DEFAULT_SESSION_NAME)),
                duration_seconds.unwrap_or(duration),
                settings.sts.endpoint.clone(),
                sts_client.clone(),
                refresher(),
                origin,
            )),
            ProfileSpec::EcsRamRole { role_name } => Arc::new(ImdsProvider::new(
                settings.imds_endpoint.clone(),
                role_name.clone(),
                false,
                refresher(),
            )?),
            ProfileSpec::Oidc {
                role_arn,
                oidc_provider_arn,
                oidc_token_file,
                role_session_name,
                duration_seconds,
            } => Arc::new(OidcProvider::new(
                OidcSource {
                    role_arn: role_arn.clone(),
                    oidc_provider_arn: oidc_provider_arn.clone(),
                    token_file: PathBuf::from(oidc_token_file),
                    role_session_name: sts::session_name(
                        role_session_name.as_deref().unwrap_or(DEFAULT_SESSION_NAME),
                    ),
                    duration_seconds: duration_seconds.unwrap_or(duration),
                },
                settings.sts.endpoint.clone(),
                sts_client.clone(),
                refresher(),
            )),
        },
        Source::Imds {
            role_name,
            disable_v1,
        } => Arc::new(ImdsProvider::new(
            settings.imds_endpoint.clone(),
            role_name.clone(),
            *disable_v1,
            refresher(),
        )?),
        Source::None => Arc::new(StaticProvider::new(
            Err(CredentialsError::NoneConfigured),
            "none",
        )),
    })
}

/// The operator's chain, built and described.
pub struct OperatorChain {
    pub provider: Arc<dyn CredentialProvider>,
    pub plan: Plan,
    pub description: String,
}

impl OperatorChain {
    /// Gathers the facts from the process environment and `$HOME`, decides and builds.
    pub fn from_process(
        settings: &ChainSettings,
        sts_client: &StsClient,
    ) -> Result<Self, reqwest::Error> {
        let lookup = |k: &str| std::env::var(k).ok();
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let facts = gather(lookup, home.as_deref());
        Self::from_facts(&facts, settings, sts_client)
    }

    pub fn from_facts(
        facts: &ChainFacts,
        settings: &ChainSettings,
        sts_client: &StsClient,
    ) -> Result<Self, reqwest::Error> {
        let plan = plan(
            facts,
            settings.imds,
            sts::duration_seconds(settings.sts.session_duration),
        );
        let provider = build(&plan, settings, sts_client)?;
        let description = describe(&plan, settings);
        Ok(Self {
            provider,
            plan,
            description,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(env: &[(&str, &str)]) -> ChainFacts {
        ChainFacts {
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..ChainFacts::default()
        }
    }

    fn file(path: &str, text: Option<&str>, explicit: bool) -> FileFact {
        FileFact {
            path: PathBuf::from(path),
            explicit,
            text: Ok(text.map(str::to_owned)),
        }
    }

    const AK: [(&str, &str); 2] = [(ENV_ACCESS_KEY_ID, "AK"), (ENV_ACCESS_KEY_SECRET, "SK")];
    const OIDC: [(&str, &str); 3] = [
        (ENV_ROLE_ARN, "acs:ram::1:role/r"),
        (ENV_OIDC_PROVIDER_ARN, "acs:ram::1:oidc-provider/p"),
        (ENV_OIDC_TOKEN_FILE, "/var/run/secrets/token"),
    ];
    const CLI: &str = r#"{"current":"p","profiles":[{"name":"p","mode":"AK","access_key_id":"CLI","access_key_secret":"s"}]}"#;
    const INI: &str = "[default]\ntype = access_key\naccess_key_id = INI\naccess_key_secret = s\n";

    fn everything() -> ChainFacts {
        let mut f = facts(&[AK[0], AK[1], OIDC[0], OIDC[1], OIDC[2]]);
        f.cli_config = Some(file("/h/.aliyun/config.json", Some(CLI), false));
        f.credentials_files = vec![file("/h/.alibabacloud/credentials", Some(INI), false)];
        f.on_alibaba_cloud = true;
        f
    }

    /// Removing each source in turn exposes the next one: the official order.
    #[test]
    fn chain_order() {
        let mut f = everything();
        assert_eq!(plan(&f, ImdsMode::Auto, 3600).source.name(), "environment");
        f.env.remove(ENV_ACCESS_KEY_ID);
        f.env.remove(ENV_ACCESS_KEY_SECRET);
        let p = plan(&f, ImdsMode::Auto, 3600);
        let Source::Oidc(o) = &p.source else {
            panic!("{p:?}")
        };
        assert_eq!(o.role_session_name, DEFAULT_SESSION_NAME);
        assert_eq!(o.duration_seconds, 3600);
        f.env.remove(ENV_ROLE_ARN);
        let p = plan(&f, ImdsMode::Auto, 3600);
        assert_eq!(p.source.name(), "cli-profile");
        assert!(p.skipped[0].contains(ENV_ROLE_ARN), "{:?}", p.skipped);
        f.cli_config = None;
        let p = plan(&f, ImdsMode::Auto, 3600);
        assert!(
            matches!(&p.source, Source::Profile { origin: "credentials-file", name, .. } if name == "default")
        );
        f.credentials_files.clear();
        assert_eq!(plan(&f, ImdsMode::Auto, 3600).source.name(), "ecs-ram-role");
        f.on_alibaba_cloud = false;
        assert_eq!(plan(&f, ImdsMode::Auto, 3600).source, Source::None);
        assert_eq!(plan(&f, ImdsMode::On, 3600).source.name(), "ecs-ram-role");
        f.on_alibaba_cloud = true;
        assert_eq!(plan(&f, ImdsMode::Off, 3600).source, Source::None);
    }

    #[test]
    fn partial_and_disabled_sources() {
        // Half an AccessKey with nothing else: the environment's error is the answer.
        let p = plan(&facts(&[AK[0]]), ImdsMode::Off, 3600);
        assert!(matches!(
            p.source,
            Source::Environment(Err(CredentialsError::IncompleteEnvironment { .. }))
        ));
        // Half an AccessKey with RRSA configured: RRSA, and a note.
        let p = plan(
            &facts(&[AK[0], OIDC[0], OIDC[1], OIDC[2]]),
            ImdsMode::Off,
            3600,
        );
        assert_eq!(p.source.name(), "oidc");
        assert_eq!(p.skipped.len(), 1);
        // Session name from the environment, sanitised.
        let p = plan(
            &facts(&[
                OIDC[0],
                OIDC[1],
                OIDC[2],
                (ENV_ROLE_SESSION_NAME, "my session"),
            ]),
            ImdsMode::Off,
            900,
        );
        assert!(matches!(&p.source, Source::Oidc(o) if o.role_session_name == "my-session"));
        // The CLI profile can be disabled; a broken one is passed over with a note.
        let mut f = everything();
        for k in [ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_ROLE_ARN] {
            f.env.remove(k);
        }
        f.env.insert(ENV_CLI_PROFILE_DISABLED.into(), "TRUE".into());
        assert_eq!(
            plan(&f, ImdsMode::Off, 3600).source.name(),
            "credentials-file"
        );
        f.env.remove(ENV_CLI_PROFILE_DISABLED);
        f.cli_config = Some(file("/h/.aliyun/config.json", Some("{broken"), false));
        let p = plan(&f, ImdsMode::Off, 3600);
        assert_eq!(p.source.name(), "credentials-file");
        assert!(
            p.skipped.iter().any(|s| s.contains("config.json")),
            "{:?}",
            p.skipped
        );
        // ALIBABA_CLOUD_PROFILE picks the section; a missing one is a note.
        f.env.insert(ENV_PROFILE.into(), "prod".into());
        let p = plan(&f, ImdsMode::Off, 3600);
        assert_eq!(p.source, Source::None);
        assert!(
            p.skipped.iter().any(|s| s.contains("[prod]")),
            "{:?}",
            p.skipped
        );
        // An explicit credentials file that does not exist is reported, defaults are not.
        let mut g = facts(&[]);
        g.credentials_files = vec![file("/etc/creds", None, true)];
        let p = plan(&g, ImdsMode::Off, 3600);
        assert!(
            p.skipped[0].contains(ENV_CREDENTIALS_FILE),
            "{:?}",
            p.skipped
        );
        g.credentials_files = vec![
            file("/h/.alibabacloud/credentials", None, false),
            file("/h/.alibabacloud/credentials.ini", Some(INI), false),
        ];
        assert_eq!(
            plan(&g, ImdsMode::Off, 3600).source.name(),
            "credentials-file"
        );
        // IMDS: the disabling variable wins in auto mode only.
        let mut h = facts(&[
            (ENV_ECS_METADATA_DISABLED, "true"),
            (ENV_ECS_METADATA, "EcsRole"),
        ]);
        h.on_alibaba_cloud = true;
        assert_eq!(plan(&h, ImdsMode::Auto, 3600).source, Source::None);
        assert_eq!(
            plan(&h, ImdsMode::On, 3600).source,
            Source::Imds {
                role_name: Some("EcsRole".into()),
                disable_v1: false
            }
        );
    }

    #[test]
    fn descriptions_hold_no_secret() {
        let settings = ChainSettings::default();
        let f = everything();
        let d = describe(&plan(&f, ImdsMode::Off, 3600), &settings);
        assert!(d.starts_with("environment"), "{d}");
        assert!(!d.contains("SK"), "{d}");
        let mut g = facts(&[OIDC[0], OIDC[1], OIDC[2]]);
        g.on_alibaba_cloud = false;
        let d = describe(&plan(&g, ImdsMode::Auto, 3600), &settings);
        assert!(
            d.contains("acs:ram::1:role/r") && d.contains("/var/run/secrets/token"),
            "{d}"
        );
    }

    #[test]
    fn gather_reads_files_and_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join(".alibabacloud")).expect("mkdir");
        std::fs::write(dir.path().join(".alibabacloud/credentials"), INI).expect("write");
        let env: BTreeMap<&str, &str> = [(ENV_PROFILE, "default"), ("UNRELATED", "x")].into();
        let f = gather(|k| env.get(k).map(|v| (*v).to_owned()), Some(dir.path()));
        assert_eq!(f.env.len(), 1, "only the chain's variables");
        let mut secret = f.clone();
        secret
            .env
            .insert(ENV_ACCESS_KEY_SECRET.into(), "env-secret-value".into());
        let shown = format!("{secret:?}");
        assert!(
            !shown.contains("env-secret-value") && !shown.contains("access_key_secret = s"),
            "{shown}"
        );
        assert_eq!(
            f.cli_config.as_ref().map(|c| c.text.clone()),
            Some(Ok(None))
        );
        assert_eq!(
            plan(&f, ImdsMode::Off, 3600).source.name(),
            "credentials-file"
        );
    }
}
