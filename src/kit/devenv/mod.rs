//! Local control plane (etcd + kube-apiserver) for tests and the demo.
//!
//! A real API server on 127.0.0.1, the same idea as controller-runtime's
//! envtest: no kubelet, scheduler or controllers, so no garbage collection,
//! namespaces never finish terminating and Deployments never get Pods. Start
//! one per test run and give each test its own namespace
//! ([`ControlPlane::create_namespace`]).
//!
//! The binaries come from `tools/ensure-tools.sh` (see [`Binaries`]). Both
//! daemons are stopped by their own pids on [`ControlPlane::stop`] or drop,
//! and get SIGKILL from the kernel if this process dies first.

mod apply;
mod auth;
mod binaries;
mod error;
mod pki;
mod process;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, DynamicObject, ObjectMeta, PostParams};
use rand::Rng;

pub use apply::{FIELD_MANAGER, parse_documents};
pub use auth::{
    ADMIN_USER, MASTERS_GROUP, OPERATOR_GROUP, OPERATOR_USER, StaticUser, random_token,
    render_kubeconfig, render_token_csv,
};
pub use binaries::{Binaries, CACHE_ENV, cache_dir, tool, tools_env_path};
pub use error::{DevEnvError, LogExcerpt};

use auth::{config_from_kubeconfig, write_private};
use pki::Pki;
use process::{Daemon, free_ports, log_tail};

/// Grace period between SIGTERM and SIGKILL when stopping a daemon.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Attempts when a freshly picked port was taken by someone else meanwhile.
const PORT_ATTEMPTS: usize = 3;
const POLL: Duration = Duration::from_millis(100);

/// How to start a [`ControlPlane`].
#[derive(Debug, Clone)]
pub struct ControlPlaneOptions {
    /// Directory for data, certificates, kubeconfigs and logs. `None` makes a
    /// fresh private directory under the system temp dir. A directory that
    /// did not exist yet is created and, like the temp dir, removed on stop
    /// unless `keep_work_dir` is set; a directory that already existed is
    /// never removed.
    pub work_dir: Option<PathBuf>,
    /// Keep the work directory (and its logs) after stop.
    pub keep_work_dir: bool,
    /// Use these binaries instead of locating them with [`Binaries::locate`].
    pub binaries: Option<Binaries>,
    /// Users added to the static token file next to the admin and the operator.
    pub extra_users: Vec<StaticUser>,
    /// How long etcd and kube-apiserver each get to become ready.
    pub startup_timeout: Duration,
    /// Extra kube-apiserver flags, appended last so they override ours.
    pub extra_apiserver_args: Vec<String>,
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        Self {
            work_dir: None,
            keep_work_dir: false,
            binaries: None,
            extra_users: Vec::new(),
            startup_timeout: Duration::from_secs(90),
            extra_apiserver_args: Vec::new(),
        }
    }
}

/// Log files of the two daemons (stdout and stderr of each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPaths {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
}

/// Process ids of the two daemons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pids {
    pub etcd: u32,
    pub kube_apiserver: u32,
}

/// A running etcd + kube-apiserver pair on loopback ports.
pub struct ControlPlane {
    binaries: Binaries,
    work_dir: PathBuf,
    remove_work_dir: bool,
    keep_work_dir: bool,
    etcd: Option<Daemon>,
    apiserver: Option<Daemon>,
    pids: Pids,
    logs: LogPaths,
    server_url: String,
    etcd_url: String,
    ca_cert_pem: String,
    admin: StaticUser,
    operator: StaticUser,
    admin_config: kube::Config,
    operator_config: kube::Config,
    kubeconfig_admin: PathBuf,
    kubeconfig_operator: PathBuf,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("server_url", &self.server_url)
            .field("etcd_url", &self.etcd_url)
            .field("work_dir", &self.work_dir)
            .field("pids", &self.pids)
            .finish_non_exhaustive()
    }
}

/// Files written into the work directory before the daemons start.
struct Layout {
    certs: PathBuf,
    ca_cert: PathBuf,
    serving_cert: PathBuf,
    serving_key: PathBuf,
    sa_key: PathBuf,
    sa_pub: PathBuf,
    tokens: PathBuf,
    etcd_data: PathBuf,
    logs: LogPaths,
}

impl Layout {
    fn new(work_dir: &Path) -> Self {
        let certs = work_dir.join("certs");
        Self {
            ca_cert: certs.join("ca.crt"),
            serving_cert: certs.join("apiserver.crt"),
            serving_key: certs.join("apiserver.key"),
            sa_key: certs.join("service-account.key"),
            sa_pub: certs.join("service-account.pub"),
            certs,
            tokens: work_dir.join("tokens.csv"),
            etcd_data: work_dir.join("etcd-data"),
            logs: LogPaths {
                etcd: work_dir.join("etcd.log"),
                kube_apiserver: work_dir.join("kube-apiserver.log"),
            },
        }
    }
}

fn create_private_dir(path: &Path) -> Result<(), DevEnvError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|e| DevEnvError::io("creating directory", path, e))
}

fn write_public(path: &Path, contents: &str) -> Result<(), DevEnvError> {
    std::fs::write(path, contents).map_err(|e| DevEnvError::io("writing", path, e))
}

/// Returns the work directory and whether we created it (and so may remove it).
fn prepare_work_dir(requested: Option<&Path>) -> Result<(PathBuf, bool), DevEnvError> {
    match requested {
        Some(dir) => {
            let existed = dir.exists();
            std::fs::create_dir_all(dir)
                .map_err(|e| DevEnvError::io("creating work directory", dir, e))?;
            let abs = std::fs::canonicalize(dir)
                .map_err(|e| DevEnvError::io("resolving work directory", dir, e))?;
            Ok((abs, !existed))
        }
        None => {
            let suffix: u32 = rand::rng().random();
            let dir = std::env::temp_dir().join(format!(
                "sparkjobrun-devenv-{}-{suffix:08x}",
                std::process::id()
            ));
            create_private_dir(&dir)?;
            Ok((dir, true))
        }
    }
}

/// Polls `probe` until it succeeds, the daemon exits, or `timeout` passes.
async fn wait_ready(
    daemon: &mut Daemon,
    url: &str,
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> Result<(), String>,
) -> Result<(), DevEnvError> {
    let started = Instant::now();
    loop {
        if let Some(status) = daemon.exited() {
            return Err(daemon.exited_error(status));
        }
        let last = match probe().await {
            Ok(()) => return Ok(()),
            Err(answer) => answer,
        };
        if started.elapsed() >= timeout {
            return Err(DevEnvError::NotReady {
                binary: daemon.binary,
                url: url.to_owned(),
                waited: started.elapsed(),
                last,
                log: Box::new(LogExcerpt {
                    path: daemon.log.clone(),
                    tail: log_tail(&daemon.log),
                }),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// True for a start failure caused by a port taken between picking and binding.
fn port_race(err: &DevEnvError) -> bool {
    matches!(err, DevEnvError::Exited { log, .. } if log.tail.contains("address already in use"))
}

struct Running {
    etcd: Daemon,
    apiserver: Daemon,
    etcd_url: String,
    server_url: String,
}

fn etcd_args(layout: &Layout, client_port: u16, peer_port: u16) -> Vec<String> {
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    vec![
        "--name=devenv".into(),
        format!("--data-dir={}", layout.etcd_data.display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=devenv={peer}"),
        "--unsafe-no-fsync=true".into(),
    ]
}

fn apiserver_args(
    layout: &Layout,
    etcd_url: &str,
    secure_port: u16,
    extra: &[String],
) -> Vec<String> {
    let mut args = vec![
        format!("--etcd-servers={etcd_url}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={secure_port}"),
        // Without it the server refuses to start on a machine with no default route.
        "--advertise-address=127.0.0.1".into(),
        format!("--cert-dir={}", layout.certs.display()),
        format!("--tls-cert-file={}", layout.serving_cert.display()),
        format!("--tls-private-key-file={}", layout.serving_key.display()),
        format!("--client-ca-file={}", layout.ca_cert.display()),
        format!("--token-auth-file={}", layout.tokens.display()),
        "--authorization-mode=RBAC".into(),
        format!("--service-account-issuer=https://127.0.0.1:{secure_port}"),
        format!("--service-account-key-file={}", layout.sa_pub.display()),
        format!(
            "--service-account-signing-key-file={}",
            layout.sa_key.display()
        ),
        "--service-cluster-ip-range=10.0.0.0/24".into(),
        "--allow-privileged=true".into(),
        // No controller manager creates default service accounts.
        "--disable-admission-plugins=ServiceAccount".into(),
        // The reconciler would publish 127.0.0.1 as the `kubernetes` Service's
        // endpoint, which validation rejects (loopback), logging an error every 10 s.
        "--endpoint-reconciler-type=none".into(),
    ];
    args.extend(extra.iter().cloned());
    args
}

/// One attempt at starting etcd and kube-apiserver on fresh ports.
async fn start_daemons(
    binaries: &Binaries,
    layout: &Layout,
    pki: &Pki,
    admin: &StaticUser,
    opts: &ControlPlaneOptions,
) -> Result<Running, DevEnvError> {
    let ports = free_ports(3)?;
    let (etcd_port, peer_port, secure_port) = (ports[0], ports[1], ports[2]);

    if layout.etcd_data.exists() {
        std::fs::remove_dir_all(&layout.etcd_data)
            .map_err(|e| DevEnvError::io("clearing etcd data directory", &layout.etcd_data, e))?;
    }
    create_private_dir(&layout.etcd_data)?;

    let mut etcd = Daemon::start(
        "etcd",
        &binaries.etcd,
        &etcd_args(layout, etcd_port, peer_port),
        layout.logs.etcd.clone(),
        etcd_port,
        Some("ETCD_"),
    )?;
    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|source| DevEnvError::Http {
            what: "etcd",
            source,
        })?;
    let health_url = format!("{etcd_url}/health");
    wait_ready(&mut etcd, &health_url, opts.startup_timeout, async || {
        let resp = http
            .get(&health_url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body = resp.text().await.map_err(|e| e.to_string())?;
        let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.contains(r#""health":"true""#) {
            Ok(())
        } else {
            Err(body)
        }
    })
    .await?;

    let mut apiserver = Daemon::start(
        "kube-apiserver",
        &binaries.kube_apiserver,
        &apiserver_args(layout, &etcd_url, secure_port, &opts.extra_apiserver_args),
        layout.logs.kube_apiserver.clone(),
        secure_port,
        None,
    )?;
    let server_url = format!("https://127.0.0.1:{secure_port}");
    let ca = reqwest::Certificate::from_pem(pki.ca_cert_pem.as_bytes()).map_err(|source| {
        DevEnvError::Http {
            what: "kube-apiserver CA",
            source,
        }
    })?;
    let https = reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|source| DevEnvError::Http {
            what: "kube-apiserver",
            source,
        })?;
    let readyz_url = format!("{server_url}/readyz");
    wait_ready(
        &mut apiserver,
        &readyz_url,
        opts.startup_timeout,
        async || {
            let resp = https
                .get(&readyz_url)
                .bearer_auth(&admin.token)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = resp.status();
            let body = resp.text().await.map_err(|e| e.to_string())?;
            if status.is_success() && body.trim() == "ok" {
                Ok(())
            } else {
                Err(format!(
                    "{status}: {}",
                    body.lines().last().unwrap_or_default()
                ))
            }
        },
    )
    .await?;

    Ok(Running {
        etcd,
        apiserver,
        etcd_url,
        server_url,
    })
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver and waits until the `default` namespace exists.
    pub async fn start(opts: ControlPlaneOptions) -> Result<Self, DevEnvError> {
        let binaries = match &opts.binaries {
            Some(b) => b.clone(),
            None => Binaries::locate()?,
        };
        let (work_dir, created) = prepare_work_dir(opts.work_dir.as_deref())?;
        // A failed start keeps the work dir: the error names its log files.
        Self::start_in(binaries, work_dir, created, &opts).await
    }

    async fn start_in(
        binaries: Binaries,
        work_dir: PathBuf,
        created: bool,
        opts: &ControlPlaneOptions,
    ) -> Result<Self, DevEnvError> {
        let layout = Layout::new(&work_dir);
        if !layout.certs.exists() {
            create_private_dir(&layout.certs)?;
        }
        let pki = Pki::generate()?;
        write_public(&layout.ca_cert, &pki.ca_cert_pem)?;
        write_public(&layout.serving_cert, &pki.serving_cert_pem)?;
        write_private(&layout.serving_key, pki.serving_key_pem.as_bytes())?;
        write_private(&layout.sa_key, pki.service_account_key_pem.as_bytes())?;
        write_public(&layout.sa_pub, &pki.service_account_pub_pem)?;

        let admin = StaticUser::admin();
        let operator = StaticUser::operator();
        let mut users = vec![admin.clone(), operator.clone()];
        users.extend(opts.extra_users.iter().cloned());
        write_private(&layout.tokens, render_token_csv(&users)?.as_bytes())?;

        let mut attempt = 1;
        let running = loop {
            match start_daemons(&binaries, &layout, &pki, &admin, opts).await {
                Ok(running) => break running,
                Err(e) if attempt < PORT_ATTEMPTS && port_race(&e) => {
                    tracing::warn!(error = %e, attempt, "port taken while starting, retrying on new ports");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };

        let kubeconfig_admin = work_dir.join("kubeconfig-admin.yaml");
        let kubeconfig_operator = work_dir.join("kubeconfig-operator.yaml");
        let admin_yaml = render_kubeconfig(&running.server_url, &pki.ca_cert_pem, &admin)?;
        let operator_yaml = render_kubeconfig(&running.server_url, &pki.ca_cert_pem, &operator)?;
        write_private(&kubeconfig_admin, admin_yaml.as_bytes())?;
        write_private(&kubeconfig_operator, operator_yaml.as_bytes())?;
        let admin_config = config_from_kubeconfig(&admin_yaml, &admin.name).await?;
        let operator_config = config_from_kubeconfig(&operator_yaml, &operator.name).await?;

        let mut plane = Self {
            binaries,
            remove_work_dir: created,
            keep_work_dir: opts.keep_work_dir,
            pids: Pids {
                etcd: running.etcd.pid(),
                kube_apiserver: running.apiserver.pid(),
            },
            logs: layout.logs.clone(),
            etcd: Some(running.etcd),
            apiserver: Some(running.apiserver),
            server_url: running.server_url,
            etcd_url: running.etcd_url,
            ca_cert_pem: pki.ca_cert_pem,
            admin,
            operator,
            admin_config,
            operator_config,
            kubeconfig_admin,
            kubeconfig_operator,
            work_dir,
        };
        if let Err(e) = plane.wait_default_namespace(opts.startup_timeout).await {
            // Dropping `plane` stops both daemons; keep the logs the error points at.
            plane.keep_work_dir = true;
            return Err(e);
        }
        Ok(plane)
    }

    /// `/readyz` turns ok slightly before the bootstrap controller creates `default`.
    async fn wait_default_namespace(&self, timeout: Duration) -> Result<(), DevEnvError> {
        let api: Api<Namespace> = Api::all(self.admin_client()?);
        let started = Instant::now();
        loop {
            match api.get_opt("default").await {
                Ok(Some(_)) => return Ok(()),
                Ok(None) | Err(_) if started.elapsed() < timeout => tokio::time::sleep(POLL).await,
                Ok(None) => {
                    return Err(DevEnvError::Timeout {
                        what: "namespace default to be created".into(),
                        waited: started.elapsed(),
                    });
                }
                Err(e) => return Err(DevEnvError::kube("reading namespace default", e)),
            }
        }
    }

    fn client_from(config: &kube::Config, user: &str) -> Result<Client, DevEnvError> {
        Client::try_from(config.clone())
            .map_err(|e| DevEnvError::kube(format!("building a client for {user}"), e))
    }

    /// A client acting as the admin (member of `system:masters`).
    /// Needs a tokio runtime, like every kube client.
    pub fn admin_client(&self) -> Result<Client, DevEnvError> {
        Self::client_from(&self.admin_config, &self.admin.name)
    }

    /// A client acting as the `sparkjobrun-operator` user, which has no
    /// rights until a test binds a role to it or to `sparkjobrun:operators`.
    pub fn operator_client(&self) -> Result<Client, DevEnvError> {
        Self::client_from(&self.operator_config, &self.operator.name)
    }

    /// A client authenticating with `user`'s token (one of
    /// [`ControlPlaneOptions::extra_users`], or any token the server knows).
    pub async fn client_for_user(&self, user: &StaticUser) -> Result<Client, DevEnvError> {
        let yaml = render_kubeconfig(&self.server_url, &self.ca_cert_pem, user)?;
        let config = config_from_kubeconfig(&yaml, &user.name).await?;
        Self::client_from(&config, &user.name)
    }

    /// The admin user, including its token.
    pub fn admin_user(&self) -> &StaticUser {
        &self.admin
    }

    /// The operator user, including its token.
    pub fn operator_user(&self) -> &StaticUser {
        &self.operator
    }

    pub fn kubeconfig_admin_path(&self) -> &Path {
        &self.kubeconfig_admin
    }

    pub fn kubeconfig_operator_path(&self) -> &Path {
        &self.kubeconfig_operator
    }

    /// The kubectl built from the same Kubernetes version as the server.
    pub fn kubectl_path(&self) -> &Path {
        &self.binaries.kubectl
    }

    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// `http://127.0.0.1:<port>` of etcd.
    pub fn etcd_url(&self) -> &str {
        &self.etcd_url
    }

    /// PEM of the CA that signed the serving certificate.
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    pub fn log_paths(&self) -> &LogPaths {
        &self.logs
    }

    /// Process ids of the daemons, also valid after [`ControlPlane::stop`].
    pub fn pids(&self) -> Pids {
        self.pids
    }

    /// Keeps the work directory after stop (for a failed test's logs) and
    /// returns the log paths to print.
    pub fn keep_logs(&mut self) -> LogPaths {
        self.keep_work_dir = true;
        self.logs.clone()
    }

    fn run_kubectl(&self, kubeconfig: &Path, args: &[&str]) -> Result<Output, DevEnvError> {
        Command::new(&self.binaries.kubectl)
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            // Keep kubectl's discovery cache out of $HOME.
            .arg(format!(
                "--cache-dir={}",
                self.work_dir.join("kubectl-cache").display()
            ))
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .output()
            .map_err(|source| DevEnvError::Spawn {
                binary: "kubectl",
                path: self.binaries.kubectl.clone(),
                source,
            })
    }

    /// Runs kubectl as the admin and returns its output (it blocks the thread).
    pub fn kubectl(&self, args: &[&str]) -> Result<Output, DevEnvError> {
        self.run_kubectl(&self.kubeconfig_admin, args)
    }

    /// Runs kubectl as the operator user.
    pub fn kubectl_as_operator(&self, args: &[&str]) -> Result<Output, DevEnvError> {
        self.run_kubectl(&self.kubeconfig_operator, args)
    }

    /// Creates a namespace `<prefix>-<random>` and returns its name, so that
    /// tests sharing one control plane never see each other's objects.
    pub async fn create_namespace(&self, prefix: &str) -> Result<String, DevEnvError> {
        let name = unique_name(prefix)?;
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.admin_client()?)
            .create(&PostParams::default(), &ns)
            .await
            .map_err(|e| DevEnvError::kube(format!("creating namespace {name}"), e))?;
        Ok(name)
    }

    /// Server-side applies every document of `yaml` as the admin (field
    /// manager `devenv`); namespaced objects without a namespace go to `default`.
    pub async fn apply_yaml(&self, yaml: &str) -> Result<Vec<DynamicObject>, DevEnvError> {
        apply::apply_yaml(&self.admin_client()?, yaml, "default").await
    }

    /// Like [`ControlPlane::apply_yaml`], with `namespace` for namespaced
    /// objects that name none.
    pub async fn apply_yaml_in(
        &self,
        yaml: &str,
        namespace: &str,
    ) -> Result<Vec<DynamicObject>, DevEnvError> {
        apply::apply_yaml(&self.admin_client()?, yaml, namespace).await
    }

    /// Reads `path` and applies it like [`ControlPlane::apply_yaml`].
    pub async fn apply_yaml_file(
        &self,
        path: impl AsRef<Path>,
    ) -> Result<Vec<DynamicObject>, DevEnvError> {
        let path = path.as_ref();
        let yaml =
            std::fs::read_to_string(path).map_err(|e| DevEnvError::io("reading", path, e))?;
        self.apply_yaml(&yaml).await
    }

    /// Waits up to 30 s for CRD `name` to be established.
    pub async fn wait_crd_established(&self, name: &str) -> Result<(), DevEnvError> {
        apply::wait_crd_established(&self.admin_client()?, name, Duration::from_secs(30)).await
    }

    /// Stops kube-apiserver, then etcd (SIGTERM, 5 s grace, SIGKILL), and
    /// removes the work directory unless it is kept. Safe to call twice.
    pub fn stop(&mut self) {
        if let Some(mut apiserver) = self.apiserver.take() {
            apiserver.stop(STOP_GRACE);
        }
        if let Some(mut etcd) = self.etcd.take() {
            etcd.stop(STOP_GRACE);
        }
        if self.remove_work_dir && !self.keep_work_dir {
            self.remove_work_dir = false;
            if let Err(e) = std::fs::remove_dir_all(&self.work_dir) {
                tracing::warn!(dir = %self.work_dir.display(), error = %e, "could not remove devenv work dir");
            }
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `<prefix>-<6 random chars>`, checked against the DNS label rules namespaces follow.
fn unique_name(prefix: &str) -> Result<String, DevEnvError> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let valid = !prefix.is_empty()
        && prefix.len() <= 55
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && prefix.as_bytes()[0].is_ascii_alphanumeric();
    if !valid {
        return Err(DevEnvError::InvalidInput {
            what: "namespace prefix",
            value: prefix.to_owned(),
            reason: "must be 1-55 lowercase letters, digits or '-', starting with a letter or digit",
        });
    }
    let mut rng = rand::rng();
    let suffix: String = (0..6)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    Ok(format!("{prefix}-{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_follow_dns_label_rules() {
        let a = unique_name("smoke").expect("valid");
        let b = unique_name("smoke").expect("valid");
        assert!(a.starts_with("smoke-") && a.len() == "smoke-".len() + 6);
        assert_ne!(a, b);
        for bad in ["", "Upper", "-lead", "under_score", &"x".repeat(56)] {
            assert!(unique_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn apiserver_flags_follow_the_recipe() {
        let layout = Layout::new(Path::new("/w"));
        let args = apiserver_args(&layout, "http://127.0.0.1:1", 2, &["--v=2".into()]);
        for expected in [
            "--etcd-servers=http://127.0.0.1:1",
            "--secure-port=2",
            "--advertise-address=127.0.0.1",
            "--token-auth-file=/w/tokens.csv",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://127.0.0.1:2",
            "--disable-admission-plugins=ServiceAccount",
        ] {
            assert!(args.iter().any(|a| a == expected), "missing {expected}");
        }
        assert_eq!(args.last().map(String::as_str), Some("--v=2"));
        let etcd = etcd_args(&layout, 3, 4);
        assert!(etcd.contains(&"--initial-cluster=devenv=http://127.0.0.1:4".to_owned()));
        assert!(etcd.contains(&"--unsafe-no-fsync=true".to_owned()));
    }

    #[test]
    fn port_race_is_detected_from_the_log_tail() {
        use std::os::unix::process::ExitStatusExt;
        let exited = |tail: &str| DevEnvError::Exited {
            binary: "etcd",
            port: 1,
            status: std::process::ExitStatus::from_raw(256),
            log: Box::new(LogExcerpt {
                path: PathBuf::from("/x"),
                tail: tail.into(),
            }),
        };
        assert!(port_race(&exited(
            "listen tcp 127.0.0.1:1: bind: address already in use"
        )));
        assert!(!port_race(&exited("some other failure")));
    }

    #[test]
    fn missing_binaries_name_the_script() {
        let err = DevEnvError::BinaryNotFound {
            binary: "kube-apiserver",
            env_var: "KUBE_APISERVER",
            tools_env: PathBuf::from("/c/tools.env"),
            detail: "x".into(),
        };
        assert!(err.to_string().contains("tools/ensure-tools.sh"));
    }
}
