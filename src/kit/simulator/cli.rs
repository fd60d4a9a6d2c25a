//! Configuration file and command line of the simulator, for the local demo, benchmarks and
//! users' CI, where it runs as a process and scripts read its port from stdout.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::SimulatorError;
use super::faults::Fault;
use super::script::RunScript;
use super::server::Simulator;
use super::verify::Account;
use crate::secret::Secret;

/// Everything a simulator starts with. YAML (or JSON) keys are lowerCamel:
/// `listen`, `accounts: [{accessKeyId, accessKeySecret, securityToken?, expiresAt?, active?}]`,
/// `runs: [RunScript...]`, `faults: [Fault...]`, `sts: {oidc: [{roleArn, oidcProviderArn,
/// token}], trusts: [{roleArn, callers}], minDurationSeconds?, maxDurationSeconds?,
/// lifetimeSeconds?}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SimulatorConfig {
    /// Default `127.0.0.1:0`: loopback, any free port.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default)]
    pub accounts: Vec<Account>,
    /// Runs present from the start; they start when the simulator does.
    #[serde(default)]
    pub runs: Vec<RunScript>,
    /// Faults active from the start.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// The simulated STS: OIDC roles, role trusts, durations.
    #[serde(default)]
    pub sts: super::sts::StsConfig,
    /// The account's API quota: service calls per second answered before `Throttling.User`
    /// (STS calls are not counted). Absent: no quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_per_second: Option<f64>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            accounts: Vec::new(),
            runs: Vec::new(),
            faults: Vec::new(),
            sts: super::sts::StsConfig::default(),
            quota_per_second: None,
        }
    }
}

impl SimulatorConfig {
    /// Parses a configuration; `origin` names it in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, SimulatorError> {
        serde_yaml::from_str(text).map_err(|source| SimulatorError::ParseConfig {
            origin: origin.to_owned(),
            source,
        })
    }

    pub fn load(path: &Path) -> Result<Self, SimulatorError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimulatorError::ReadConfig {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    pub fn with_account(mut self, account: Account) -> Self {
        self.accounts.push(account);
        self
    }

    pub fn with_run(mut self, run: RunScript) -> Self {
        self.runs.push(run);
        self
    }
}

/// Command line of `simulator`. Flags override the config file; `--access-key` adds to its
/// accounts.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SimulatorArgs {
    /// Address to listen on [default: 127.0.0.1:0, a free loopback port].
    #[arg(long, env = "SIMULATOR_LISTEN", value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// YAML file with accounts, runs and faults (see docs/simulator-example.yaml).
    #[arg(long, env = "SIMULATOR_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// An AccessKey the simulator accepts, as ID:SECRET. Repeatable; the environment variable
    /// takes a comma-separated list.
    #[arg(
        long = "access-key",
        value_name = "ID:SECRET",
        env = "SIMULATOR_ACCESS_KEYS",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = |v: &str| Ok::<_, std::convert::Infallible>(AccessKeyArg(Secret::new(v)))
    )]
    pub access_keys: Vec<AccessKeyArg>,
    /// Service calls per second answered before `Throttling.User` (the account's API quota).
    #[arg(long, env = "SIMULATOR_QUOTA", value_name = "CALLS_PER_SECOND")]
    pub quota: Option<f64>,
}

/// One `--access-key` value, kept whole and redacted until [`SimulatorArgs::to_config`] splits
/// it: clap's own parse errors quote the rejected value, which would print the secret.
#[derive(Debug, Clone)]
pub struct AccessKeyArg(pub Secret);

/// Reads `ID:SECRET`; the secret may itself contain `:`.
fn parse_access_key(value: &str) -> Option<Account> {
    match value.trim().split_once(':') {
        Some((id, secret)) if !id.is_empty() && !secret.is_empty() => {
            Some(Account::new(id, secret))
        }
        _ => None,
    }
}

impl SimulatorArgs {
    /// The configuration these arguments describe: the file (if any), then the flags.
    pub fn to_config(&self) -> Result<SimulatorConfig, SimulatorError> {
        let mut config = match &self.config {
            Some(path) => SimulatorConfig::load(path)?,
            None => SimulatorConfig::default(),
        };
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if self.quota.is_some() {
            config.quota_per_second = self.quota;
        }
        for (index, arg) in self.access_keys.iter().enumerate() {
            let account =
                parse_access_key(arg.0.expose()).ok_or(SimulatorError::InvalidAccessKeyArg {
                    position: index + 1,
                })?;
            config.accounts.push(account);
        }
        Ok(config)
    }
}

/// Runs the simulator as a process: prints exactly one line `LISTENING http://IP:PORT` to stdout
/// once bound (scripts read the port from it), logs each call through `tracing` and serves until
/// SIGINT or SIGTERM.
pub async fn run_cli(args: SimulatorArgs) -> Result<(), SimulatorError> {
    // Installed before the LISTENING line: a script that stops the simulator as soon as it has
    // read the line must reach the handler, not the default action.
    let signals = Signals::install()?;
    run_until(&args, &mut std::io::stdout(), signals.wait()).await
}

/// [`run_cli`] with the announcement written to `out` and `stop` instead of the signals.
async fn run_until<W: Write>(
    args: &SimulatorArgs,
    out: &mut W,
    stop: impl Future<Output = ()>,
) -> Result<(), SimulatorError> {
    let config = args.to_config()?;
    if config.accounts.is_empty() {
        tracing::warn!(
            "no AccessKey configured: every call will be rejected with InvalidAccessKeyId.NotFound \
             (add --access-key ID:SECRET or POST /_sim/accounts)"
        );
    }
    let (accounts, runs) = (config.accounts.len(), config.runs.len());
    let handle = Simulator::start(config).await?;
    writeln!(out, "LISTENING {}", handle.endpoint())
        .and_then(|()| out.flush())
        .map_err(SimulatorError::Stdout)?;
    tracing::info!(endpoint = %handle.endpoint(), accounts, runs, "simulator serving");
    stop.await;
    tracing::info!("simulator stopping");
    handle.shutdown().await
}

#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> Result<Self, SimulatorError> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).map_err(SimulatorError::Signal)?,
            int: signal(SignalKind::interrupt()).map_err(SimulatorError::Signal)?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> Result<Self, SimulatorError> {
        Ok(Self)
    }

    async fn wait(self) {
        // Without a handler there is nothing to wait for: stop rather than serve forever.
        if tokio::signal::ctrl_c().await.is_err() {
            tracing::warn!("cannot listen for Ctrl-C; stopping");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulatorArgs,
    }

    #[test]
    fn the_example_config_loads_and_is_valid() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/simulator-example.yaml"
        ));
        let config = SimulatorConfig::load(path).expect("example loads");
        assert_eq!(config.listen, default_listen());
        assert!(!config.accounts.is_empty());
        assert_eq!(config.runs.len(), 3);
        assert_eq!(config.sts.oidc.len(), 1);
        assert_eq!(config.sts.trusts.len(), 1);
        for run in &config.runs {
            run.validate()
                .unwrap_or_else(|e| panic!("{}: {e}", run.job_run_id));
        }
    }

    #[test]
    fn config_errors_name_the_source() {
        let err = SimulatorConfig::from_yaml("listen: 1\nrunz: []\n", "inline").expect_err("typo");
        assert!(
            err.to_string()
                .starts_with("simulator config inline is invalid"),
            "{err}"
        );
        let err = SimulatorConfig::load(Path::new("/nonexistent/sim.yaml")).expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/sim.yaml"), "{err}");
        let empty = SimulatorConfig::from_yaml("{}", "empty").expect("defaults");
        assert_eq!(empty.listen, default_listen());
    }

    #[test]
    fn command_line() {
        let cli = Cli::try_parse_from([
            "sim",
            "--listen",
            "127.0.0.1:9000",
            "--access-key",
            "AK1:s1",
            "--access-key",
            "AK2:s:2",
        ])
        .expect("parses");
        let config = cli.args.to_config().expect("config");
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 9000)));
        let ids: Vec<&str> = config
            .accounts
            .iter()
            .map(|a| a.access_key_id.as_str())
            .collect();
        assert_eq!(ids, ["AK1", "AK2"]);
        assert_eq!(config.accounts[1].access_key_secret.expose(), "s:2");
        let shown = format!("{:?}", cli.args);
        assert!(!shown.contains("s1"), "{shown}");

        let bad = Cli::try_parse_from(["sim", "--access-key", "A:x", "--access-key", "topsecret"])
            .expect("clap accepts any string");
        let msg = bad.args.to_config().expect_err("no colon").to_string();
        assert!(msg.contains("ID:SECRET") && msg.contains("#2"), "{msg}");
        assert!(!msg.contains("topsecret"), "{msg}");
    }

    #[tokio::test]
    async fn run_until_announces_the_endpoint_serves_and_stops() {
        let args = SimulatorArgs {
            access_keys: vec![AccessKeyArg(Secret::new("AK:secret"))],
            ..SimulatorArgs::default()
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (line_tx, line_rx) = tokio::sync::oneshot::channel::<String>();
        let server = tokio::spawn(async move {
            let mut out = Vec::new();
            let stop = async move {
                let _ = stop_rx.await;
            };
            // Report the line as soon as it is written, while the server keeps serving.
            let mut out_and_report = Announce {
                out: &mut out,
                report: Some(line_tx),
            };
            let result = run_until(&args, &mut out_and_report, stop).await;
            (
                result.map_err(|e| e.to_string()),
                String::from_utf8_lossy(&out).into_owned(),
            )
        });
        let line = line_rx.await.expect("announced");
        let endpoint = line
            .strip_prefix("LISTENING ")
            .and_then(|rest| rest.strip_suffix('\n'))
            .expect("one LISTENING line")
            .to_owned();
        assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
        let health = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
            .get(format!("{endpoint}/_sim/healthz"))
            .send()
            .await
            .expect("serving");
        assert_eq!(health.status().as_u16(), 200);
        stop_tx.send(()).expect("still running");
        let (result, out) = server.await.expect("joins");
        assert_eq!(result, Ok(()));
        assert_eq!(out.lines().count(), 1, "{out}");
    }

    /// A writer that hands its first flushed text to the test.
    struct Announce<'a> {
        out: &'a mut Vec<u8>,
        report: Option<tokio::sync::oneshot::Sender<String>>,
    }

    impl Write for Announce<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.out.write(buf)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            if let Some(report) = self.report.take() {
                let _ = report.send(String::from_utf8_lossy(self.out).into_owned());
            }
            Ok(())
        }
    }

    #[test]
    fn access_key_parser() {
        assert!(parse_access_key("a:b").is_some());
        assert!(parse_access_key(":b").is_none());
        assert!(parse_access_key("a:").is_none());
        assert!(parse_access_key("ab").is_none());
    }
}
