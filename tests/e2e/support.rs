//! The shared environment: control plane, simulator and an in-process operator authenticated as
//! the least-privilege user, plus small helpers the cases use.

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use sparkjobrun_operator::client::{HttpJobRunService, Timeouts};
use sparkjobrun_operator::config::{RateLimit, Scope, Settings};
use sparkjobrun_operator::crd::{
    CredentialsSource, SecretReference, SparkJobRunRef, SparkJobRunRefSpec, SparkJobRunRefStatus,
};
use sparkjobrun_operator::credentials::StaticProvider;
use sparkjobrun_operator::endpoint;
use sparkjobrun_operator::kit::devenv::{ControlPlane, ControlPlaneOptions};
use sparkjobrun_operator::kit::simulator::{
    Account, Phase, Reason, Simulator, SimulatorConfig, SimulatorHandle,
};
use sparkjobrun_operator::policy::{BackoffPolicy, PollPolicy};
use sparkjobrun_operator::reconcile::{self, Context};
use sparkjobrun_operator::signer::Credentials;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

pub const ACCESS_KEY_ID: &str = "LTAI5tE2eOperatorKey0001";
pub const REGION: &str = "cn-hangzhou";

pub type Ctx = Context<HttpJobRunService>;

pub struct Env {
    plane: Mutex<Option<ControlPlane>>,
    pub kubectl: PathBuf,
    pub admin_kubeconfig: PathBuf,
    pub operator_kubeconfig: PathBuf,
    pub admin: Client,
    pub sim: SimulatorHandle,
    pub secret: String,
    pub ctx: Arc<Ctx>,
    stop_operator: CancellationToken,
    operator: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Env {
    pub async fn start() -> Result<Self, String> {
        let plane = ControlPlane::start(ControlPlaneOptions::default())
            .await
            .map_err(err)?;
        let admin = plane.admin_client().map_err(err)?;
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        plane
            .apply_yaml_file(repo.join("crds/sparkjobruns.emrspark.io.yaml"))
            .await
            .map_err(err)?;
        plane
            .wait_crd_established("sparkjobruns.emrspark.io")
            .await
            .map_err(err)?;
        // The operator runs with exactly the rights the Helm chart grants its ServiceAccount.
        let (operator_kubeconfig, operator_client) = chart_identity(&plane, &repo).await?;

        let secret = format!("e2e-secret-{}", hex::encode(rand::random::<[u8; 12]>()));
        let sim = Simulator::start(SimulatorConfig {
            accounts: vec![Account::new(ACCESS_KEY_ID, secret.as_str())],
            ..SimulatorConfig::default()
        })
        .await
        .map_err(err)?;

        let settings = Settings {
            poll: PollPolicy {
                min_interval: Duration::from_millis(500),
                max_interval: Duration::from_secs(30),
                queued: Duration::from_secs(1),
                running: Duration::from_secs(1),
                long_running: Duration::from_secs(2),
                long_running_after: Duration::from_secs(600),
                slow: Duration::from_secs(2),
                jitter: 0.1,
            },
            backoff: BackoffPolicy {
                base: Duration::from_millis(500),
                max: Duration::from_secs(3),
                permanent: Duration::from_secs(2),
                jitter: 0.1,
            },
            default_region: Some(REGION.into()),
            endpoint: Some(endpoint::parse(&sim.endpoint()).map_err(err)?),
            rate: RateLimit {
                per_second: 100.0,
                burst: 100,
            },
            instance: Some("e2e".into()),
            // The cases count GetJobRun calls per run; batched observation has its own.
            observe: sparkjobrun_operator::reconcile::shared::Mode::PerRun,
            // Objects labelled e2e-process belong to operator processes started by some cases.
            scope: Scope {
                namespaces: Vec::new(),
                label_selector: Some("!e2e-process".into()),
            },
            ..Settings::default()
        };
        let service = HttpJobRunService::new(Timeouts {
            connect: Duration::from_secs(2),
            read: Duration::from_secs(3),
        })
        .map_err(err)?;
        let creds = Credentials::new(ACCESS_KEY_ID, secret.as_str());
        let ctx = Arc::new(Context::new(
            operator_client,
            service,
            settings,
            Arc::new(StaticProvider::new(Ok(creds), "test")),
        ));
        let stop_operator = CancellationToken::new();
        let operator = tokio::spawn(reconcile::run::run(ctx.clone(), stop_operator.clone()));

        Ok(Self {
            kubectl: plane.kubectl_path().to_owned(),
            admin_kubeconfig: plane.kubeconfig_admin_path().to_owned(),
            operator_kubeconfig,
            plane: Mutex::new(Some(plane)),
            admin,
            sim,
            secret,
            ctx,
            stop_operator,
            operator: Mutex::new(Some(operator)),
        })
    }

    /// Stops the operator and the control plane; keeps the logs when something failed.
    pub async fn finish(&self, keep: bool) -> Option<PathBuf> {
        self.stop_operator.cancel();
        let handle = self.operator.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
        let mut plane = self.plane.lock().ok().and_then(|mut p| p.take())?;
        let kept = keep.then(|| {
            plane.keep_logs();
            plane.work_dir().to_owned()
        });
        plane.stop();
        kept
    }

    /// The kube-apiserver's pid, for cases that stall it.
    pub fn apiserver_pid(&self) -> Result<i32, String> {
        let plane = self.plane.lock().map_err(err)?;
        let pid = plane
            .as_ref()
            .ok_or("control plane stopped")?
            .pids()
            .kube_apiserver;
        i32::try_from(pid).map_err(err)
    }

    pub async fn namespace(&self, prefix: &str) -> Result<String, String> {
        let name = format!("{prefix}-{}", hex::encode(rand::random::<[u8; 3]>()));
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).map_err(err)?;
        Api::<Namespace>::all(self.admin.clone())
            .create(&PostParams::default(), &ns)
            .await
            .map_err(err)?;
        Ok(name)
    }

    pub fn runs(&self, ns: &str) -> Api<SparkJobRunRef> {
        Api::namespaced(self.admin.clone(), ns)
    }

    pub async fn create(
        &self,
        ns: &str,
        name: &str,
        spec: SparkJobRunRefSpec,
    ) -> Result<(), String> {
        self.create_labeled(ns, name, spec, &[]).await
    }

    pub async fn create_labeled(
        &self,
        ns: &str,
        name: &str,
        spec: SparkJobRunRefSpec,
        labels: &[(&str, &str)],
    ) -> Result<(), String> {
        let mut obj = SparkJobRunRef::new(name, spec);
        if !labels.is_empty() {
            obj.metadata.labels = Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
            );
        }
        self.runs(ns)
            .create(&PostParams::default(), &obj)
            .await
            .map_err(err)?;
        Ok(())
    }

    pub async fn get(&self, ns: &str, name: &str) -> Result<SparkJobRunRef, String> {
        self.runs(ns).get(name).await.map_err(err)
    }

    pub async fn get_opt(&self, ns: &str, name: &str) -> Result<Option<SparkJobRunRef>, String> {
        self.runs(ns).get_opt(name).await.map_err(err)
    }

    pub async fn status(&self, ns: &str, name: &str) -> Result<SparkJobRunRefStatus, String> {
        Ok(self.get(ns, name).await?.status.unwrap_or_default())
    }

    pub async fn put_secret(
        &self,
        ns: &str,
        name: &str,
        data: &[(&str, &str)],
    ) -> Result<(), String> {
        let mut string_data = serde_json::Map::new();
        for (k, v) in data {
            string_data.insert((*k).into(), serde_json::Value::String((*v).into()));
        }
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"emrspark.io/credentials": "true"}},
            "stringData": string_data,
        }))
        .map_err(err)?;
        let api: Api<Secret> = Api::namespaced(self.admin.clone(), ns);
        api.patch(
            name,
            &kube::api::PatchParams::apply("e2e").force(),
            &kube::api::Patch::Apply(&secret),
        )
        .await
        .map_err(err)?;
        Ok(())
    }

    /// Events about one object, oldest first.
    /// The object's events once one with `reason` is there: events are published after the
    /// status write that records them, so a status seen does not mean its events are.
    pub async fn events_once(
        &self,
        ns: &str,
        name: &str,
        reason: &str,
    ) -> Result<Vec<KubeEvent>, String> {
        wait_for(
            &format!("an event {reason}"),
            Duration::from_secs(30),
            || async {
                let events = self.events(ns, name).await?;
                let there = events.iter().any(|e| e.reason.as_deref() == Some(reason));
                Ok(there.then_some(events))
            },
        )
        .await
    }

    pub async fn events(&self, ns: &str, name: &str) -> Result<Vec<KubeEvent>, String> {
        let api: Api<KubeEvent> = Api::namespaced(self.admin.clone(), ns);
        let mut list: Vec<KubeEvent> = api
            .list(&ListParams::default())
            .await
            .map_err(err)?
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect();
        list.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
        Ok(list)
    }

    /// Runs the built kubectl; `stdin` is piped in when given.
    pub async fn kubectl(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        as_operator: bool,
    ) -> Result<(bool, String, String), String> {
        let kubeconfig = if as_operator {
            &self.operator_kubeconfig
        } else {
            &self.admin_kubeconfig
        };
        let mut cmd = tokio::process::Command::new(&self.kubectl);
        cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("spawning kubectl: {e}"))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes()).await.map_err(err)?;
            drop(pipe);
        }
        let out = child.wait_with_output().await.map_err(err)?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

/// Polls `check` until it returns `Ok(Some(v))`, failing with the last observation on timeout.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::from("nothing observed");
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = e,
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "timed out after {timeout:?} waiting for {what}; last: {last}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn condition<'a>(
    s: &'a SparkJobRunRefStatus,
    type_: &str,
) -> Option<(&'a str, &'a str, &'a str)> {
    s.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
}

pub fn ensure(ok: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(msg()) }
}

/// An operator binary started by a test; killed when dropped.
pub struct OperatorProcess {
    pub child: tokio::process::Child,
    pub log: PathBuf,
    pub metrics: std::net::SocketAddr,
}

impl OperatorProcess {
    pub fn pid(&self) -> i32 {
        self.child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or(0)
    }

    pub fn signal(&self, sig: i32) {
        let pid = self.pid();
        if pid > 0 {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET a path of the operator's HTTP port: (status, body).
    pub async fn http_get(&self, path: &str) -> Result<(u16, String), String> {
        let url = format!("http://{}{path}", self.metrics);
        let resp = reqwest::get(&url)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await.map_err(err)?))
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(err)?;
    Ok(l.local_addr().map_err(err)?.port())
}

/// Arguments of one leader-elected replica that handles only objects labelled
/// `e2e-process=<label>` and competes for the Lease `e2e-<lease>` in the release namespace.
pub fn elected_replica_args(
    label: &str,
    lease: &str,
    duration: &str,
    grace: &str,
    id: &str,
) -> Vec<String> {
    vec![
        "--label-selector".to_string(),
        format!("e2e-process={label}"),
        "--leader-election=true".to_string(),
        format!("--leader-election-namespace={RELEASE_NAMESPACE}"),
        format!("--leader-election-lease-name=e2e-{lease}"),
        format!("--leader-election-lease-duration={duration}"),
        format!("--leader-election-renew-grace={grace}"),
        format!("--instance-name={id}"),
    ]
}

impl Env {
    /// Starts `sparkjobrun-operator run` as the least-privilege user against the simulator.
    pub fn spawn_operator(
        &self,
        name: &str,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<OperatorProcess, String> {
        let port = free_port()?;
        let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let dir = std::env::temp_dir().join(format!("sparkjobrun-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(err)?;
        let log = dir.join(format!("operator-{name}.log"));
        let home = dir.join(format!("home-{name}"));
        std::fs::create_dir_all(&home).map_err(err)?;
        let file = std::fs::File::create(&log).map_err(err)?;
        let file2 = file.try_clone().map_err(err)?;
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sparkjobrun-operator"));
        cmd.arg("run")
            .arg("--endpoint")
            .arg(self.sim.endpoint())
            .arg("--default-region")
            .arg(REGION)
            .arg("--metrics-addr")
            .arg(metrics.to_string())
            .args(
                [
                    ("--min-poll-interval", "1s"),
                    ("--poll-queued", "1s"),
                    ("--poll-running", "1s"),
                    ("--backoff-base", "1s"),
                    ("--recheck-permanent", "2s"),
                    // The cases count GetJobRun calls per run; batched observation has its own.
                    ("--observe", "per-run"),
                ]
                .into_iter()
                // A case may set one of these itself.
                .filter(|(flag, _)| !args.contains(flag))
                .flat_map(|(flag, value)| [flag, value]),
            )
            .args(args)
            // Nothing of the developer's environment (an Aliyun profile in ~, ALIBABA_CLOUD_*
            // variables) may change a case's outcome: only what the case passes.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("KUBECONFIG", &self.operator_kubeconfig)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(file2)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting the operator binary: {e}"))?;
        Ok(OperatorProcess {
            child,
            log,
            metrics,
        })
    }
}

/// Namespace the chart is "installed" into (its ServiceAccount and Lease Role live here).
pub const RELEASE_NAMESPACE: &str = "sparkjobrun-system";

/// Renders the Helm chart, applies its ServiceAccount and RBAC objects, and returns a kubeconfig
/// and client authenticated as that ServiceAccount (a TokenRequest token), so every case runs
/// with the chart's rights and nothing more.
async fn chart_identity(
    plane: &ControlPlane,
    repo: &std::path::Path,
) -> Result<(PathBuf, Client), String> {
    let helm = sparkjobrun_operator::kit::devenv::tool("HELM", "helm")
        .map_err(|e| format!("{e}: run tools/ensure-tools.sh"))?;
    let out = tokio::process::Command::new(&helm)
        .args(["template", "sparkjobrun-operator"])
        .arg(repo.join("charts/sparkjobrun-operator"))
        .args([
            "--namespace",
            RELEASE_NAMESPACE,
            "--set",
            "rbac.mode=cluster",
            "--set",
            "leaderElection.enabled=true",
            // The rights of every optional feature a case exercises.
            "--set",
            "ttlAfterFinished.enabled=true",
            "--set",
            "cancelOnDelete.enabled=true",
        ])
        .output()
        .await
        .map_err(|e| format!("running helm: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "helm template failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let rendered = String::from_utf8_lossy(&out.stdout).into_owned();
    let wanted = [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ];
    let mut docs = Vec::new();
    let mut service_account = None;
    for doc in rendered.split("\n---") {
        let value: serde_yaml::Value = serde_yaml::from_str(doc).map_err(err)?;
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        if wanted.contains(&kind) {
            if kind == "ServiceAccount" {
                service_account = value
                    .get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(|n| n.as_str())
                    .map(str::to_owned);
            }
            docs.push(doc.trim().trim_start_matches("---").to_owned());
        }
    }
    let service_account = service_account.ok_or("the chart rendered no ServiceAccount")?;
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": RELEASE_NAMESPACE}}))
            .map_err(err)?;
    Api::<Namespace>::all(plane.admin_client().map_err(err)?)
        .create(&PostParams::default(), &ns)
        .await
        .map_err(err)?;
    plane
        .apply_yaml_in(&docs.join("\n---\n"), RELEASE_NAMESPACE)
        .await
        .map_err(err)?;

    let token = plane
        .kubectl(&[
            "create",
            "token",
            &service_account,
            "-n",
            RELEASE_NAMESPACE,
            "--duration",
            "24h",
        ])
        .map_err(err)?;
    if !token.status.success() {
        return Err(format!(
            "kubectl create token: {}",
            String::from_utf8_lossy(&token.stderr)
        ));
    }
    let user = sparkjobrun_operator::kit::devenv::StaticUser {
        name: format!("system:serviceaccount:{RELEASE_NAMESPACE}:{service_account}"),
        uid: String::new(),
        groups: Vec::new(),
        token: String::from_utf8_lossy(&token.stdout).trim().to_owned(),
    };
    let kubeconfig = sparkjobrun_operator::kit::devenv::render_kubeconfig(
        plane.server_url(),
        plane.ca_cert_pem(),
        &user,
    )
    .map_err(err)?;
    let path = plane
        .work_dir()
        .join("kubeconfig-chart-serviceaccount.yaml");
    std::fs::write(&path, &kubeconfig).map_err(err)?;
    let parsed = kube::config::Kubeconfig::read_from(&path).map_err(err)?;
    let config =
        kube::Config::from_custom_kubeconfig(parsed, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(err)?;
    Ok((path, Client::try_from(config).map_err(err)?))
}

/// The workspace every simulated run of the suite belongs to.
pub const WS: &str = "w-e2e0000000001";

/// A name no other case (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(rand::random::<[u8; 6]>()))
}

/// A spec for a run of [`WS`] in [`REGION`].
pub fn spec_with(job_run_id: &str, credentials: Option<CredentialsSource>) -> SparkJobRunRefSpec {
    SparkJobRunRefSpec {
        workspace_id: WS.into(),
        job_run_id: job_run_id.into(),
        region_id: Some(REGION.into()),
        credentials,
        ..SparkJobRunRefSpec::default()
    }
}

/// Credentials from the Secret `name` in the object's namespace.
pub fn secret_ref(name: &str) -> CredentialsSource {
    CredentialsSource {
        secret_ref: Some(SecretReference { name: name.into() }),
        ..CredentialsSource::default()
    }
}

/// One scripted phase: `state` for `seconds` (or for good), with an optional (code, message).
pub fn phase(state: &str, seconds: Option<f64>, reason: Option<(&str, &str)>) -> Phase {
    Phase {
        state: state.into(),
        after_seconds: None,
        for_seconds: seconds,
        state_change_reason: reason.map(|(code, message)| Reason {
            code: code.into(),
            message: message.into(),
        }),
    }
}

/// A TCP relay in front of kube-apiserver that a case can cut (every open connection dropped,
/// new ones closed at once) and restore: a network partition between one operator process and
/// the API server, leaving the rest of the suite alone.
pub struct ApiPartition {
    pub kubeconfig: PathBuf,
    cut: Arc<std::sync::atomic::AtomicBool>,
    open: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for ApiPartition {
    fn drop(&mut self) {
        self.accept.abort();
        self.drop_connections();
    }
}

impl ApiPartition {
    /// Drops every relayed connection and refuses new ones until [`Self::heal`].
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        self.drop_connections();
    }

    pub fn heal(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    fn drop_connections(&self) {
        if let Ok(mut open) = self.open.lock() {
            for task in open.drain(..) {
                task.abort();
            }
        }
    }
}

impl Env {
    /// A relay to the API server and a copy of the operator's kubeconfig that goes through it.
    pub async fn api_partition(&self, name: &str) -> Result<ApiPartition, String> {
        let text = std::fs::read_to_string(&self.operator_kubeconfig).map_err(err)?;
        let server = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .map(|s| s.trim_matches('"').to_owned())
            .ok_or("the operator kubeconfig names no server")?;
        let upstream = server
            .strip_prefix("https://")
            .ok_or_else(|| format!("server {server} is not https"))?
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(err)?;
        let relay = listener.local_addr().map_err(err)?;
        let kubeconfig = self
            .operator_kubeconfig
            .with_file_name(format!("kubeconfig-partition-{name}.yaml"));
        std::fs::write(
            &kubeconfig,
            text.replace(&server, &format!("https://{relay}")),
        )
        .map_err(err)?;
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::<tokio::task::JoinHandle<()>>::new()));
        let (cut2, open2) = (cut.clone(), open.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if cut2.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                if let Ok(mut open) = open2.lock() {
                    open.retain(|t| !t.is_finished());
                    open.push(task);
                }
            }
        });
        Ok(ApiPartition {
            kubeconfig,
            cut,
            open,
            accept,
        })
    }
}
