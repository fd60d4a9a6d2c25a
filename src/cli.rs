//! Command line: flags (with environment fallbacks) and their translation into [`Settings`],
//! which is pure and unit-tested so a bad flag fails at start-up with a message naming it.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::client::Timeouts;
use crate::config::{RateLimit, Scope, Settings};
use crate::credentials::roles::{DEFAULT_CACHE_SIZE, StsSettings};
use crate::credentials::sts;
use crate::credentials::{ChainSettings, ImdsMode, RoleAllowList};
use crate::endpoint::{self, AllowList, Network};
use crate::policy::{self, BackoffPolicy, PollPolicy};

#[derive(Debug, Parser)]
#[command(
    name = "sparkjobrun-operator",
    version,
    about = "Mirrors Alibaba Cloud EMR Serverless Spark job runs into SparkJobRunRef objects"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start-up; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller (kubeconfig or in-cluster configuration).
    Run(RunArgs),
    /// Print the CustomResourceDefinition YAML.
    Crd,
    /// Call GetJobRun once with the operator's credentials and print the status the controller
    /// would write.
    GetJobRun(GetJobRunArgs),
    /// Serve a simulator of the EMR Serverless Spark GetJobRun API on loopback (tests, demos, CI).
    Simulator(crate::kit::simulator::SimulatorArgs),
    /// Wait until SparkJobRunRefs finished and say how: exit 0 when all succeeded, 1 when one
    /// failed or was cancelled, 2 on timeout, 3 when one is not found or cannot be read. Watches
    /// the refs (kubeconfig or in-cluster), never calls the service. Also works as the kubectl
    /// plugin `kubectl sparkjobrun wait` when installed as kubectl-sparkjobrun.
    Wait(WaitArgs),
    /// Print SparkJobRunRef YAML for a workspace's existing runs (ListJobRuns with the
    /// operator's credentials), or create them with server-side apply (--apply). Names are
    /// derived from the run ids, labels from the runs' tags, so importing again changes nothing.
    Import(ImportArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    #[arg(long)]
    pub workspace_id: String,
    #[arg(long, env = "SPARKJOBRUN_DEFAULT_REGION")]
    pub region_id: String,
    /// Only runs in these states (comma-separated, e.g. Running,Submitted). Default: any.
    #[arg(long, value_delimiter = ',')]
    pub states: Vec<String>,
    /// Only runs carrying this tag, KEY=VALUE (repeatable; all must match).
    #[arg(long = "tag", value_parser = key_value)]
    pub tags: Vec<(String, String)>,
    /// Prefix of every ref's name (lower-case letters, digits, '-', '.').
    #[arg(long, default_value = "")]
    pub name_prefix: String,
    /// Only runs submitted within this long before now, e.g. 24h.
    #[arg(long, value_parser = duration)]
    pub since: Option<Duration>,
    /// Import at most this many runs (newest first); a warning says when more matched.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
    /// Namespace of the refs: written into the YAML, and where --apply creates them (default
    /// for --apply: the kubeconfig context's).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// spec.credentials.secretRef.name of every ref (a Secret in the refs' namespace).
    #[arg(long)]
    pub secret_ref: Option<String>,
    /// spec.credentials.roleArn of every ref.
    #[arg(long)]
    pub role_arn: Option<String>,
    /// Create or update the refs with server-side apply instead of printing them.
    #[arg(long)]
    pub apply: bool,
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

impl ImportArgs {
    /// Checks what the service or the API server would refuse later, naming the flag.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::import::check_workspace(&self.workspace_id)
            .map_err(|m| invalid("workspace-id", m))?;
        crate::import::check_prefix(&self.name_prefix).map_err(|m| invalid("name-prefix", m))?;
        if let Some(bad) = self
            .states
            .iter()
            .find(|s| !crate::import::STATES.contains(&s.as_str()))
        {
            return Err(invalid(
                "states",
                format!(
                    "{bad:?} is not a job run state ({})",
                    crate::import::STATES.join(", ")
                ),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// Names of the SparkJobRunRefs.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Namespace of the refs (default: the kubeconfig context's).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Give up after this long (exit 2), e.g. 30m or 2h.
    #[arg(long, default_value = "1h", value_parser = duration)]
    pub timeout: Duration,
    /// `succeeded`: until all succeeded, failing fast; `finished`: until all ended, either way.
    #[arg(long = "for", value_enum, default_value_t = crate::wait::WaitFor::Succeeded)]
    pub wait_for: crate::wait::WaitFor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    #[default]
    Yaml,
    Json,
}

/// Flags shared by `run` and `get-job-run`: where calls go and how long they may take.
#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// Service endpoint for every object without spec.endpoint (any URL, e.g. http://127.0.0.1:8080
    /// for a simulator). Default: derived from the region and --network.
    #[arg(long, env = "SPARKJOBRUN_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Public or VPC endpoints.
    #[arg(long, env = "SPARKJOBRUN_NETWORK", value_enum, default_value_t = Network::Public)]
    pub network: Network,
    /// Connect timeout, e.g. 5s.
    #[arg(long, env = "SPARKJOBRUN_CONNECT_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub connect_timeout: Duration,
    /// Read timeout, e.g. 10s.
    #[arg(long, env = "SPARKJOBRUN_READ_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub read_timeout: Duration,
}

impl ServiceArgs {
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: self.connect_timeout,
            read: self.read_timeout,
        }
    }
}

/// Where the operator's own temporary credentials come from and how they are kept fresh; shared
/// by `run` and `get-job-run`. The STS variables are the ones the official libraries (and the
/// ACK pod identity webhook) use.
#[derive(Debug, Clone, Args)]
pub struct CredentialArgs {
    /// STS endpoint for RRSA (AssumeRoleWithOIDC) and cross-account roles (AssumeRole): a host
    /// (https) or any URL, e.g. http://127.0.0.1:8080 for a simulator. Default: from --sts-region
    /// and --sts-vpc, else the global STS endpoint.
    #[arg(long, env = "ALIBABA_CLOUD_STS_ENDPOINT")]
    pub sts_endpoint: Option<String>,
    /// Region of the STS endpoint, e.g. cn-hangzhou (sts.cn-hangzhou.aliyuncs.com).
    #[arg(long, env = "ALIBABA_CLOUD_STS_REGION")]
    pub sts_region: Option<String>,
    /// Use the VPC STS endpoint of --sts-region (sts-vpc.REGION.aliyuncs.com): true or false.
    #[arg(long, env = "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", default_value = "false", value_parser = lenient_bool, action = clap::ArgAction::Set)]
    pub sts_vpc: bool,
    /// DurationSeconds asked of STS for temporary credentials (RRSA and roles). STS accepts
    /// 15m to the role's maximum (1h by default, up to 12h).
    #[arg(long, env = "SPARKJOBRUN_ROLE_SESSION_DURATION", default_value = "1h", value_parser = duration)]
    pub role_session_duration: Duration,
    /// Exchange temporary credentials again this long before they expire (less than
    /// --role-session-duration).
    #[arg(long, env = "SPARKJOBRUN_CREDENTIALS_REFRESH_MARGIN", default_value = "3m", value_parser = duration)]
    pub credentials_refresh_margin: Duration,
    /// Instance metadata service as the last source of the operator's credential chain: auto
    /// (only when the machine is an Alibaba Cloud ECS instance and
    /// ALIBABA_CLOUD_ECS_METADATA_DISABLED is not true), on or off.
    #[arg(long, env = "SPARKJOBRUN_IMDS", value_enum, default_value_t = ImdsMode::Auto)]
    pub imds: ImdsMode,
    /// Address of the instance metadata service.
    #[arg(
        long,
        env = "SPARKJOBRUN_IMDS_ENDPOINT",
        default_value = crate::credentials::imds::DEFAULT_IMDS_ENDPOINT
    )]
    pub imds_endpoint: String,
}

/// `true`/`false` in any case, empty for false: how the official libraries read their flags,
/// but a typo is an error rather than a silent false.
fn lenient_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" | "" => Ok(false),
        other => Err(format!("expected true or false, got {other:?}")),
    }
}

/// The shortest session STS grants; shorter only for an explicit endpoint (a simulator).
const STS_MIN_SESSION: Duration = Duration::from_secs(900);
const STS_MAX_SESSION: Duration = Duration::from_secs(43200);

impl CredentialArgs {
    /// Validates the credential flags (pure); `timeouts` are the service's, reused for STS.
    pub fn chain_settings(&self, timeouts: Timeouts) -> Result<ChainSettings, ConfigError> {
        let explicit = self
            .sts_endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty());
        let endpoint = sts::sts_endpoint(explicit, self.sts_region.as_deref(), self.sts_vpc)
            .map_err(|e| {
                invalid(
                    if explicit.is_some() {
                        "sts-endpoint"
                    } else {
                        "sts-region"
                    },
                    e.to_string(),
                )
            })?;
        let duration = self.role_session_duration;
        if duration < Duration::from_secs(1) || duration > STS_MAX_SESSION {
            return Err(invalid(
                "role-session-duration",
                "must be between 1s and 12h",
            ));
        }
        if duration < STS_MIN_SESSION && explicit.is_none() {
            return Err(invalid(
                "role-session-duration",
                "must be at least 15m (STS refuses shorter sessions); shorter ones are accepted only with an explicit --sts-endpoint, for a simulator",
            ));
        }
        let margin = self.credentials_refresh_margin;
        if margin.is_zero() || margin >= duration {
            return Err(invalid(
                "credentials-refresh-margin",
                "must be above zero and shorter than --role-session-duration",
            ));
        }
        let imds_endpoint = crate::endpoint::parse(self.imds_endpoint.trim())
            .map_err(|e| invalid("imds-endpoint", e.to_string()))?;
        Ok(ChainSettings {
            sts: StsSettings {
                endpoint,
                session_duration: duration,
                refresh_margin: margin,
                timeouts,
                ..StsSettings::default()
            },
            imds: self.imds,
            imds_endpoint,
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Namespaces to watch (repeat or comma-separate). Default: all namespaces.
    #[arg(
        long = "namespace",
        env = "SPARKJOBRUN_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// Only handle objects matching this label selector (lets several instances split the work).
    #[arg(long, env = "SPARKJOBRUN_LABEL_SELECTOR")]
    pub label_selector: Option<String>,
    /// Region for objects without spec.regionId.
    #[arg(long, env = "SPARKJOBRUN_DEFAULT_REGION")]
    pub default_region: Option<String>,
    /// Extra host suffixes a spec.endpoint may use (https only), comma-separated. Without any,
    /// only the service's own public and VPC hosts of the object's region are accepted; a wide
    /// suffix such as aliyuncs.com also admits other products and anyone's bucket host.
    #[arg(long, env = "SPARKJOBRUN_ENDPOINT_ALLOW", value_delimiter = ',')]
    pub endpoint_allow: Vec<String>,
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub credentials: CredentialArgs,
    /// Roles objects may assume with spec.credentials.roleArn, as NAMESPACES=ROLE entries
    /// (comma-separated): a namespace glob (`*` for all, written out) and a role ARN pattern
    /// where `*` matches within one ARN field and `{namespace}` is the object's namespace, e.g.
    /// team-a=acs:ram::123456789012:role/emr-*. Empty: every roleArn is refused, so one tenant
    /// cannot borrow another's role.
    #[arg(long, env = "SPARKJOBRUN_ASSUME_ROLE_ALLOW", value_delimiter = ',')]
    pub assume_role_allow: Vec<String>,
    /// Most (identity, role) entries kept in the temporary-credentials cache.
    #[arg(long, env = "SPARKJOBRUN_CREDENTIALS_CACHE_SIZE", default_value_t = DEFAULT_CACHE_SIZE)]
    pub credentials_cache_size: usize,
    /// Lower bound for every poll interval (spec.pollInterval is clamped to it).
    #[arg(long, env = "SPARKJOBRUN_MIN_POLL_INTERVAL", default_value = "5s", value_parser = duration)]
    pub min_poll_interval: Duration,
    /// Upper bound for every poll interval.
    #[arg(long, env = "SPARKJOBRUN_MAX_POLL_INTERVAL", default_value = "10m", value_parser = duration)]
    pub max_poll_interval: Duration,
    /// Poll interval for Submitted and Pending runs.
    #[arg(long, env = "SPARKJOBRUN_POLL_QUEUED", default_value = "10s", value_parser = duration)]
    pub poll_queued: Duration,
    /// Poll interval for Running and Cancelling runs.
    #[arg(long, env = "SPARKJOBRUN_POLL_RUNNING", default_value = "30s", value_parser = duration)]
    pub poll_running: Duration,
    /// Poll interval for runs running longer than --long-running-after.
    #[arg(long, env = "SPARKJOBRUN_POLL_LONG_RUNNING", default_value = "2m", value_parser = duration)]
    pub poll_long_running: Duration,
    #[arg(long, env = "SPARKJOBRUN_LONG_RUNNING_AFTER", default_value = "30m", value_parser = duration)]
    pub long_running_after: Duration,
    /// Poll interval for CancelFailed, unknown states and runs not found.
    #[arg(long, env = "SPARKJOBRUN_POLL_SLOW", default_value = "5m", value_parser = duration)]
    pub poll_slow: Duration,
    /// Relative jitter of poll intervals (0 to 1).
    #[arg(long, env = "SPARKJOBRUN_POLL_JITTER", default_value_t = 0.1)]
    pub poll_jitter: f64,
    /// First retry delay after a transient error; doubles per failure.
    #[arg(long, env = "SPARKJOBRUN_BACKOFF_BASE", default_value = "5s", value_parser = duration)]
    pub backoff_base: Duration,
    /// Cap of the transient/throttling backoff.
    #[arg(long, env = "SPARKJOBRUN_BACKOFF_MAX", default_value = "5m", value_parser = duration)]
    pub backoff_max: Duration,
    /// Recheck interval after errors that need a human (credentials, permissions).
    #[arg(long, env = "SPARKJOBRUN_RECHECK_PERMANENT", default_value = "10m", value_parser = duration)]
    pub recheck_permanent: Duration,
    /// GetJobRun calls per second, process-wide.
    #[arg(long, env = "SPARKJOBRUN_RATE_LIMIT", default_value_t = 10.0)]
    pub rate_limit: f64,
    /// Calls allowed in a burst above the rate.
    #[arg(long, env = "SPARKJOBRUN_RATE_BURST", default_value_t = 20)]
    pub rate_burst: u32,
    /// Objects reconciled concurrently.
    #[arg(long, env = "SPARKJOBRUN_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
    /// How long every retry of a watch may fail (RBAC revoked, CRD removed) before /readyz
    /// answers 503.
    #[arg(long, env = "SPARKJOBRUN_WATCH_OUTAGE_GRACE", default_value = "60s", value_parser = duration)]
    pub watch_outage_grace: Duration,
    /// Delete refs `spec.ttlSecondsAfterFinished` after their run ended (needs `delete` on
    /// sparkjobruns). Off: the field is ignored.
    #[arg(long, env = "SPARKJOBRUN_TTL_AFTER_FINISHED", default_value_t = false, action = clap::ArgAction::Set)]
    pub ttl_after_finished: bool,
    /// With --ttl-after-finished: the TTL of refs that set none (default: those are kept).
    #[arg(long, env = "SPARKJOBRUN_TTL_AFTER_FINISHED_DEFAULT", value_parser = duration)]
    pub ttl_after_finished_default: Option<Duration>,
    /// Honour spec.cancelOnDelete: deleting such a ref while its run is active calls
    /// CancelJobRun, through a finalizer (needs `patch` on sparkjobruns and the RAM action
    /// emr-serverless-spark:CancelJobRun). Off: the field is refused with a Warning event.
    #[arg(long, env = "SPARKJOBRUN_ALLOW_CANCEL", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_cancel: bool,
    /// How active refs are observed: `auto` lists a group (same credentials, region, endpoint
    /// and workspace) with one ListJobRuns once it has three active runs, `batched` always,
    /// `per-run` calls GetJobRun for each run. Refs of one run share its observation in every mode.
    #[arg(long, env = "SPARKJOBRUN_OBSERVE", value_enum, default_value_t = crate::reconcile::shared::Mode::Auto)]
    pub observe: crate::reconcile::shared::Mode,
    /// Log format.
    #[arg(long, env = "SPARKJOBRUN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Name reported in events and used as the leader-election identity (the pod name).
    #[arg(long, env = "POD_NAME")]
    pub instance_name: Option<String>,
    /// Address of the HTTP server for /metrics, /livez and /readyz.
    #[arg(long, env = "SPARKJOBRUN_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,
    /// Only the replica holding a coordination.k8s.io Lease reconciles. Turn on when running more
    /// than one replica; needs get/create/patch on leases.
    #[arg(long, env = "SPARKJOBRUN_LEADER_ELECTION", default_value_t = false, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Namespace of the Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub leader_election_namespace: String,
    #[arg(
        long,
        env = "SPARKJOBRUN_LEADER_ELECTION_LEASE_NAME",
        default_value = "sparkjobrun-operator"
    )]
    pub leader_election_lease_name: String,
    /// How long a lease stays valid without renewal: the longest a failover takes.
    #[arg(long, env = "SPARKJOBRUN_LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = duration)]
    pub leader_election_lease_duration: Duration,
    /// How long before expiry the leader renews (also the clock skew tolerated between nodes).
    #[arg(long, env = "SPARKJOBRUN_LEADER_ELECTION_RENEW_GRACE", default_value = "5s", value_parser = duration)]
    pub leader_election_renew_grace: Duration,
}

/// Leader-election settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElection {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub duration_secs: u64,
    pub grace_secs: u64,
}

#[derive(Debug, Clone, Args)]
pub struct GetJobRunArgs {
    #[arg(long)]
    pub workspace_id: String,
    #[arg(long)]
    pub job_run_id: String,
    #[arg(long, env = "SPARKJOBRUN_DEFAULT_REGION")]
    pub region_id: String,
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub credentials: CredentialArgs,
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Yaml)]
    pub output: OutputFormat,
}

fn duration(text: &str) -> Result<Duration, String> {
    policy::parse_duration(text)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("--{flag}: {message}")]
    Invalid { flag: &'static str, message: String },
}

fn invalid(flag: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        message: message.into(),
    }
}

impl RunArgs {
    /// The leader-election settings, or `None` when it is off.
    pub fn leader_election(&self) -> Result<Option<LeaderElection>, ConfigError> {
        if !self.leader_election {
            return Ok(None);
        }
        let duration_secs = self.leader_election_lease_duration.as_secs();
        let grace_secs = self.leader_election_renew_grace.as_secs();
        if duration_secs < 2 {
            return Err(invalid(
                "leader-election-lease-duration",
                "must be at least 2s",
            ));
        }
        if grace_secs == 0 || grace_secs >= duration_secs {
            return Err(invalid(
                "leader-election-renew-grace",
                "must be at least 1s and shorter than --leader-election-lease-duration",
            ));
        }
        let identity = self
            .instance_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("sparkjobrun-operator-{}", std::process::id()));
        Ok(Some(LeaderElection {
            namespace: self.leader_election_namespace.clone(),
            lease_name: self.leader_election_lease_name.clone(),
            identity,
            duration_secs,
            grace_secs,
        }))
    }

    /// Validates the flags and builds the controller settings.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        self.configure().map(|(settings, _)| settings)
    }

    /// The reconciler's settings and the operator's credential chain, each built once (the STS
    /// part of the chain settings feeds both).
    pub fn configure(&self) -> Result<(Settings, ChainSettings), ConfigError> {
        if self.min_poll_interval.is_zero() {
            return Err(invalid("min-poll-interval", "must be above zero"));
        }
        if self.min_poll_interval > self.max_poll_interval {
            return Err(invalid(
                "max-poll-interval",
                "must not be below --min-poll-interval",
            ));
        }
        if !(0.0..=1.0).contains(&self.poll_jitter) {
            return Err(invalid("poll-jitter", "must be between 0 and 1"));
        }
        // Below one call in 1000 s a token's wait overflows nothing but helps nobody either.
        if !(self.rate_limit.is_finite() && self.rate_limit >= 0.001) {
            return Err(invalid(
                "rate-limit",
                "must be at least 0.001 calls per second",
            ));
        }
        if self.rate_burst == 0 {
            return Err(invalid("rate-burst", "must be at least 1"));
        }
        if self.concurrency == 0 {
            return Err(invalid("concurrency", "must be at least 1"));
        }
        let endpoint = self
            .service
            .endpoint
            .as_deref()
            .map(endpoint::parse)
            .transpose()
            .map_err(|e| invalid("endpoint", e.to_string()))?;
        if let Some(region) = &self.default_region {
            endpoint::for_region(region, Network::Public)
                .map_err(|e| invalid("default-region", e.to_string()))?;
        }
        if self.ttl_after_finished_default.is_some() && !self.ttl_after_finished {
            return Err(invalid(
                "ttl-after-finished-default",
                "needs --ttl-after-finished=true",
            ));
        }
        if self.credentials_cache_size == 0 {
            return Err(invalid("credentials-cache-size", "must be at least 1"));
        }
        let allow = RoleAllowList::new(&self.assume_role_allow)
            .map_err(|e| invalid("assume-role-allow", e.to_string()))?;
        let chain = self.credentials.chain_settings(self.service.timeouts())?;
        let namespaces: Vec<String> = self
            .namespaces
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        let settings = Settings {
            poll: PollPolicy {
                min_interval: self.min_poll_interval,
                max_interval: self.max_poll_interval,
                queued: self.poll_queued,
                running: self.poll_running,
                long_running: self.poll_long_running,
                long_running_after: self.long_running_after,
                slow: self.poll_slow,
                jitter: self.poll_jitter,
            },
            backoff: BackoffPolicy {
                base: self.backoff_base,
                max: self.backoff_max,
                permanent: self.recheck_permanent,
                ..BackoffPolicy::default()
            },
            default_region: self.default_region.clone().filter(|r| !r.is_empty()),
            endpoint,
            network: self.service.network,
            allow: AllowList::new(self.endpoint_allow.clone()),
            rate: RateLimit {
                per_second: self.rate_limit,
                burst: self.rate_burst,
            },
            scope: Scope {
                namespaces,
                label_selector: self.label_selector.clone().filter(|s| !s.is_empty()),
            },
            concurrency: self.concurrency,
            watch_outage_grace: self.watch_outage_grace,
            ttl: crate::config::TtlPolicy {
                enabled: self.ttl_after_finished,
                default: self.ttl_after_finished_default,
            },
            allow_cancel: self.allow_cancel,
            observe: self.observe,
            instance: self.instance_name.clone(),
            sts: StsSettings {
                allow,
                cache_size: self.credentials_cache_size,
                ..chain.sts.clone()
            },
        };
        Ok((settings, chain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn run_args(extra: &[&str]) -> Result<RunArgs, clap::Error> {
        let mut argv = vec!["sparkjobrun-operator", "run"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv)?.command {
            Command::Run(a) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_give_default_settings() {
        let s = run_args(&[]).expect("parses").settings().expect("valid");
        assert_eq!(s.poll, PollPolicy::default());
        assert_eq!(s.backoff, BackoffPolicy::default());
        assert_eq!(s.scope, Scope::default());
        assert_eq!(s.allow, AllowList::default());
        assert_eq!(s.endpoint, None);
    }

    #[test]
    fn flags_reach_settings() {
        let s = run_args(&[
            "--namespace=a,b",
            "--namespace",
            "c",
            "--label-selector=team=data",
            "--default-region=cn-beijing",
            "--endpoint=http://127.0.0.1:9999",
            "--network=vpc",
            "--rate-limit=2.5",
            "--rate-burst=3",
            "--poll-running=45s",
        ])
        .expect("parses")
        .settings()
        .expect("valid");
        assert_eq!(s.scope.namespaces, ["a", "b", "c"]);
        assert_eq!(s.scope.label_selector.as_deref(), Some("team=data"));
        assert_eq!(s.default_region.as_deref(), Some("cn-beijing"));
        assert_eq!(
            s.endpoint.map(|e| e.base_url()).as_deref(),
            Some("http://127.0.0.1:9999")
        );
        assert_eq!(s.network, Network::Vpc);
        assert_eq!(
            s.rate,
            RateLimit {
                per_second: 2.5,
                burst: 3
            }
        );
        assert_eq!(s.poll.running, Duration::from_secs(45));
    }

    #[test]
    fn bad_flags_name_themselves() {
        let cases: [(&[&str], &str); 7] = [
            (
                &["--min-poll-interval=1m", "--max-poll-interval=30s"],
                "--max-poll-interval",
            ),
            (&["--rate-limit=0"], "--rate-limit"),
            (&["--rate-limit=1e-20"], "--rate-limit"),
            (&["--rate-burst=0"], "--rate-burst"),
            (&["--poll-jitter=2"], "--poll-jitter"),
            (&["--endpoint=ftp://x"], "--endpoint"),
            (&["--default-region=CN_HANGZHOU"], "--default-region"),
        ];
        for (args, flag) in cases {
            let err = run_args(args)
                .expect("parses")
                .settings()
                .expect_err("invalid");
            assert!(err.to_string().starts_with(flag), "{args:?}: {err}");
        }
        assert!(run_args(&["--poll-running=soon"]).is_err());
    }

    #[test]
    fn credential_flags() {
        let s = run_args(&[]).expect("parses").settings().expect("valid");
        assert_eq!(s.sts.endpoint.base_url(), "https://sts.aliyuncs.com");
        assert_eq!(s.sts.session_duration, Duration::from_secs(3600));
        assert_eq!(s.sts.refresh_margin, Duration::from_secs(180));
        assert!(s.sts.allow.is_empty(), "no role allowed by default");
        let s = run_args(&[
            "--sts-endpoint=http://127.0.0.1:9000",
            "--role-session-duration=10s",
            "--credentials-refresh-margin=4s",
            "--credentials-cache-size=3",
            "--assume-role-allow=team-a=acs:ram::1:role/emr-*,*=acs:ram::2:role/x",
        ])
        .expect("parses")
        .settings()
        .expect("valid");
        assert_eq!(s.sts.endpoint.base_url(), "http://127.0.0.1:9000");
        assert_eq!(s.sts.cache_size, 3);
        assert!(s.sts.allow.allows("team-a", "acs:ram::1:role/emr-a"));
        assert!(!s.sts.allow.allows("team-b", "acs:ram::1:role/emr-a"));
        assert!(s.sts.allow.allows("team-b", "acs:ram::2:role/x"));
        let vpc = run_args(&["--sts-region=cn-beijing", "--sts-vpc=TRUE"])
            .expect("parses")
            .settings()
            .expect("valid");
        assert_eq!(
            vpc.sts.endpoint.base_url(),
            "https://sts-vpc.cn-beijing.aliyuncs.com"
        );
        let chain = run_args(&["--imds=on", "--imds-endpoint=http://127.0.0.1:1"])
            .expect("parses")
            .credentials
            .chain_settings(Timeouts::default())
            .expect("valid");
        assert_eq!(chain.imds, ImdsMode::On);
        let cases: [(&[&str], &str); 7] = [
            (&["--role-session-duration=10s"], "--role-session-duration"),
            (&["--role-session-duration=13h"], "--role-session-duration"),
            (
                &["--credentials-refresh-margin=2h"],
                "--credentials-refresh-margin",
            ),
            (&["--credentials-cache-size=0"], "--credentials-cache-size"),
            (&["--assume-role-allow=*"], "--assume-role-allow"),
            (&["--sts-region=CN_X"], "--sts-region"),
            (&["--sts-endpoint=ftp://x"], "--sts-endpoint"),
        ];
        for (args, flag) in cases {
            let err = run_args(args)
                .expect("parses")
                .settings()
                .expect_err("invalid");
            assert!(err.to_string().starts_with(flag), "{args:?}: {err}");
        }
        assert!(run_args(&["--sts-vpc=maybe"]).is_err());
    }

    #[test]
    fn leader_election_flags() {
        assert_eq!(run_args(&[]).expect("parses").leader_election(), Ok(None));
        let le = run_args(&[
            "--leader-election=true",
            "--leader-election-namespace=ops",
            "--instance-name=pod-a",
            "--leader-election-lease-duration=20s",
            "--leader-election-renew-grace=4s",
        ])
        .expect("parses")
        .leader_election()
        .expect("valid")
        .expect("on");
        assert_eq!(
            (le.namespace.as_str(), le.identity.as_str()),
            ("ops", "pod-a")
        );
        assert_eq!((le.duration_secs, le.grace_secs), (20, 4));
        let err = run_args(&[
            "--leader-election=true",
            "--leader-election-renew-grace=15s",
        ])
        .expect("parses")
        .leader_election()
        .expect_err("grace >= duration");
        assert!(
            err.to_string().starts_with("--leader-election-renew-grace"),
            "{err}"
        );
    }
}
