//! Wiring for each subcommand: build the real clients from the parsed flags and run.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kube::api::{Api, ListParams};
use tokio_util::sync::CancellationToken;

use kube::Client;
use tracing::info;

use crate::cli::{GetJobRunArgs, LogFormat, OutputFormat, RunArgs};
use crate::client::{GetJobRunRequest, HttpJobRunService, JobRunService};
use crate::config::Scope;
use crate::crd::SparkJobRunRef;
use crate::credentials::http::StsClient;
use crate::credentials::{ChainSettings, CredentialsError, OperatorChain, RoleAssumer};
use crate::endpoint;
use crate::leader;
use crate::mapping::{self, PollOutcome, StatusContext};
use crate::metrics::Metrics;
use crate::reconcile::fence::Fence;
use crate::reconcile::{self, Context};
use crate::server::{self, Readiness};

/// Failures that end the process, each with the message the user sees.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::cli::ConfigError),
    #[error("invalid configuration: {0}")]
    Endpoint(#[from] crate::endpoint::EndpointError),
    #[error("serving --metrics-addr {addr}: {source}")]
    Serve {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to Kubernetes: {0}")]
    Kube(#[source] kube::Error),
    #[error("building the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
    #[error("{0}")]
    Credentials(#[source] CredentialsError),
    #[error("GetJobRun failed: {0}")]
    GetJobRun(#[source] crate::client::ApiError),
    #[error("ListJobRuns failed: {0}")]
    ListJobRuns(#[source] crate::client::ApiError),
    #[error("{failed} of {total} refs could not be applied")]
    Import { failed: usize, total: usize },
    #[error("printing as JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("printing as YAML: {0}")]
    Yaml(#[source] serde_yaml::Error),
    #[error("simulator: {0}")]
    Simulator(#[source] crate::kit::simulator::SimulatorError),
    #[error("leader election: {0}")]
    Leader(#[source] leader::LeaderError),
}

pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Builds the operator's default credential chain and logs which source it uses (names, ARNs
/// and paths only) and why earlier sources were passed over.
fn operator_chain(settings: &ChainSettings, sts: &StsClient) -> Result<OperatorChain, AppError> {
    let chain = OperatorChain::from_process(settings, sts).map_err(AppError::Http)?;
    for note in &chain.plan.skipped {
        tracing::warn!(note = %note, "credential source passed over");
    }
    match &chain.plan.source {
        crate::credentials::chain::Source::None => info!(
            source = chain.provider.source(),
            "no operator credentials (environment, RRSA, credentials file, CLI profile, instance metadata); only objects with spec.credentials.secretRef can be read"
        ),
        crate::credentials::chain::Source::Environment(Err(e)) => {
            tracing::warn!(error = %e, "operator credentials in the environment are incomplete")
        }
        _ => info!(
            source = chain.provider.source(),
            detail = %chain.description,
            "operator credentials source"
        ),
    }
    Ok(chain)
}

/// The STS client (counting in `metrics`) and the operator's own credential chain built on it.
fn operator_identity(
    settings: &ChainSettings,
    timeouts: crate::client::Timeouts,
    metrics: &Metrics,
) -> Result<(StsClient, OperatorChain), AppError> {
    let sts = StsClient::new(timeouts)
        .map_err(AppError::Http)?
        .with_metrics(metrics);
    let chain = operator_chain(settings, &sts)?;
    Ok((sts, chain))
}

/// Resolves once SIGINT or SIGTERM arrives.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    info!("shutdown requested; finishing in-flight reconciles");
}

/// Lists the CRD until it answers (the operator is useless without it), marking readiness.
async fn wait_for_crd(
    client: &Client,
    scope: &Scope,
    readiness: &Readiness,
    stop: &CancellationToken,
) {
    let api: Api<SparkJobRunRef> = match scope.namespaces.first() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    loop {
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => {
                readiness.crd_found.store(true, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot list SparkJobRunRef objects; is the CRD installed and are the RBAC rights granted? retrying in 5s")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// `sparkjobrun-operator run`.
pub async fn run(args: RunArgs) -> Result<(), AppError> {
    let (settings, chain_settings) = args.configure()?;
    let election = args.leader_election()?;
    let metrics = Arc::new(Metrics::new());
    let (sts, chain) = operator_identity(&chain_settings, args.service.timeouts(), &metrics)?;
    if !settings.sts.allow.is_empty() {
        info!(allowed = %settings.sts.allow, sts = %settings.sts.endpoint, "objects may assume roles matching --assume-role-allow");
    }
    let roles = Arc::new(RoleAssumer::new(Ok(sts), settings.sts.clone()));
    let client = Client::try_default().await.map_err(AppError::Kube)?;
    let service = HttpJobRunService::new(args.service.timeouts()).map_err(AppError::Http)?;
    let scope = settings.scope.clone();
    let fence = Arc::new(match &election {
        None => Fence::open(),
        Some(le) => Fence::leased(leader::fence_validity(
            Duration::from_secs(le.duration_secs),
            Duration::from_secs(le.grace_secs),
        )),
    });
    let ctx = Arc::new(
        Context::new(client.clone(), service, settings, chain.provider)
            .with_metrics(metrics)
            .with_role_assumer(roles)
            .with_fence(fence.clone()),
    );
    let readiness = ctx.readiness.clone();
    readiness
        .leader_election
        .store(election.is_some(), Ordering::Relaxed);

    // One token for every way the process ends: a signal, or the end of leadership.
    let stop = CancellationToken::new();
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        signal_stop.cancel();
    });
    let renderer_ctx = ctx.clone();
    let server_stop = stop.clone();
    let (addr, server) = server::serve(
        args.metrics_addr,
        readiness.clone(),
        Arc::new(move || renderer_ctx.render_metrics()),
        async move { server_stop.cancelled().await },
    )
    .await
    .map_err(|source| AppError::Serve {
        addr: args.metrics_addr,
        source,
    })?;
    info!(%addr, "serving /metrics, /livez and /readyz");

    wait_for_crd(&client, &scope, &readiness, &stop).await;
    info!(namespaces = ?scope.namespaces, label_selector = ?scope.label_selector, "starting controller");
    let result = match election {
        None => {
            reconcile::run::run(ctx.clone(), stop.clone()).await;
            Ok(())
        }
        Some(le) => leader::lead(client, le, ctx.clone(), fence, stop.clone())
            .await
            .map_err(AppError::Leader),
    };
    stop.cancel();
    let _ = server.await;
    info!("operator stopped");
    result
}

/// `sparkjobrun-operator wait`: the exit code and one line per ref.
pub async fn wait(args: crate::cli::WaitArgs) -> Result<(u8, String), AppError> {
    let client = Client::try_default().await.map_err(AppError::Kube)?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let api: Api<SparkJobRunRef> = Api::namespaced(client, &namespace);
    Ok(crate::wait::wait(api, &args.names, args.wait_for, args.timeout).await)
}

/// What a one-shot command needs to call the service: the client, the operator's credentials
/// and the endpoint for `region_id` (or `--endpoint`).
async fn one_shot(
    service: &crate::cli::ServiceArgs,
    credentials: &crate::cli::CredentialArgs,
    region_id: &str,
) -> Result<
    (
        HttpJobRunService,
        crate::signer::Credentials,
        endpoint::Endpoint,
    ),
    AppError,
> {
    let chain_settings = credentials.chain_settings(service.timeouts())?;
    let (_, chain) = operator_identity(&chain_settings, service.timeouts(), &Metrics::new())?;
    let creds = chain
        .provider
        .credentials()
        .await
        .map_err(AppError::Credentials)?;
    let endpoint = match &service.endpoint {
        Some(e) => endpoint::parse(e),
        None => endpoint::for_region(region_id, service.network),
    }?;
    let client = HttpJobRunService::new(service.timeouts()).map_err(AppError::Http)?;
    Ok((client, creds, endpoint))
}

/// `sparkjobrun-operator get-job-run`: one call with the operator's credentials, printing the
/// status exactly as the controller would write it.
pub async fn get_job_run(args: GetJobRunArgs) -> Result<String, AppError> {
    let (service, creds, endpoint) =
        one_shot(&args.service, &args.credentials, &args.region_id).await?;
    let request = GetJobRunRequest {
        workspace_id: args.workspace_id.clone(),
        job_run_id: args.job_run_id.clone(),
        region_id: args.region_id.clone(),
        endpoint,
    };
    let run = service
        .get_job_run(&request, &creds)
        .await
        .map_err(AppError::GetJobRun)?;
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
    let status = mapping::next_status(
        None,
        PollOutcome::Run(&run),
        StatusContext {
            generation: None,
            workspace_id: &args.workspace_id,
            job_run_id: &args.job_run_id,
            region_id: Some(&args.region_id),
        },
        &now,
    );
    match args.output {
        OutputFormat::Json => serde_json::to_string_pretty(&status).map_err(AppError::Json),
        OutputFormat::Yaml => serde_yaml::to_string(&status).map_err(AppError::Yaml),
    }
}

/// `sparkjobrun-operator import`: the refs as YAML (stdout), or applied (one line each). Notes
/// about skipped runs and tags go to stderr; any failed apply makes the command fail.
pub async fn import(args: crate::cli::ImportArgs) -> Result<String, AppError> {
    use crate::import::{self, Imported};
    args.validate()?;
    let (service, creds, endpoint) =
        one_shot(&args.service, &args.credentials, &args.region_id).await?;
    let now = jiff::Timestamp::now().as_millisecond();
    let since = args.since.map(|d| {
        let back = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        (now.saturating_sub(back), now)
    });
    let request = crate::client::ListJobRunsRequest {
        workspace_id: args.workspace_id.clone(),
        region_id: args.region_id.clone(),
        endpoint,
        filter: crate::client::ListFilter {
            states: args.states.clone(),
            tags: args.tags.clone(),
            job_run_id: None,
            submitted: since,
        },
        max_results: crate::client::MAX_PAGE,
        next_token: None,
    };
    let limit = usize::try_from(args.limit).unwrap_or(usize::MAX);
    let (runs, more) = import::list_all(&service, &creds, request, limit)
        .await
        .map_err(AppError::ListJobRuns)?;
    if more {
        eprintln!(
            "warning: more than {limit} runs match; imported the newest {limit} (raise --limit or narrow the filter)"
        );
    }
    let client = if args.apply {
        Some(Client::try_default().await.map_err(AppError::Kube)?)
    } else {
        None
    };
    let template = import::Template {
        region_id: args.region_id.clone(),
        namespace: args
            .namespace
            .clone()
            .or_else(|| client.as_ref().map(|c| c.default_namespace().to_owned())),
        name_prefix: args.name_prefix.clone(),
        secret_ref: args.secret_ref.clone(),
        role_arn: args.role_arn.clone(),
    };
    let mut objects = Vec::new();
    for run in &runs {
        match import::import_run(&args.workspace_id, run, &template) {
            Imported::Ref { object, notes } => {
                let name = object.metadata.name.clone().unwrap_or_default();
                for note in notes {
                    eprintln!("note: {name}: {note}");
                }
                objects.push(*object);
            }
            Imported::Skipped { job_run_id, reason } => {
                eprintln!("note: skipped run {job_run_id:?}: {reason}");
            }
        }
    }
    let Some(client) = client else {
        return import::to_yaml(&objects).map_err(AppError::Yaml);
    };
    let namespace = template.namespace.unwrap_or_default();
    let api: Api<SparkJobRunRef> = Api::namespaced(client, &namespace);
    let params = kube::api::PatchParams::apply(import::FIELD_MANAGER);
    let mut out = String::new();
    let mut failed = 0usize;
    for object in &objects {
        let name = object.metadata.name.clone().unwrap_or_default();
        match api
            .patch(&name, &params, &kube::api::Patch::Apply(object))
            .await
        {
            Ok(_) => out.push_str(&format!("sparkjobrun.emrspark.io/{name} applied\n")),
            Err(e) => {
                failed += 1;
                eprintln!("error: applying {namespace}/{name}: {e}");
            }
        }
    }
    if failed > 0 {
        print!("{out}");
        return Err(AppError::Import {
            failed,
            total: objects.len(),
        });
    }
    Ok(out)
}
