//! Wiring for each subcommand: build the real clients from the parsed flags and run.

use std::sync::Arc;

use kube::Client;
use tracing::info;

use crate::cli::{GetJobRunArgs, LogFormat, OutputFormat, RunArgs};
use crate::client::{GetJobRunRequest, HttpJobRunService, JobRunService};
use crate::controller::{self, Context};
use crate::credentials::{self, CredentialProvider, CredentialsError};
use crate::endpoint;
use crate::mapping::{self, PollOutcome, StatusContext};

/// Failures that end the process, each with the message the user sees.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("connecting to Kubernetes: {0}")]
    Kube(#[source] kube::Error),
    #[error("building the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
    #[error("{0}")]
    Credentials(#[source] CredentialsError),
    #[error("GetJobRun failed: {0}")]
    GetJobRun(#[source] crate::client::ApiError),
    #[error("printing the status: {0}")]
    Output(String),
    #[error("simulator: {0}")]
    Simulator(String),
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

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

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

/// `sparkjobrun-operator run`.
pub async fn run(args: RunArgs) -> Result<(), AppError> {
    let settings = args
        .settings()
        .map_err(|e| AppError::Config(e.to_string()))?;
    let provider = credentials::StaticProvider::from_env(env_lookup);
    match provider.credentials().await {
        Ok(c) => info!(
            source = provider.source(),
            sts = c.security_token.is_some(),
            "operator credentials found"
        ),
        Err(CredentialsError::NoneConfigured) => info!(
            "no operator credentials in the environment; only objects with spec.credentials.secretRef can be read"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "operator credentials in the environment are incomplete")
        }
    }
    let client = Client::try_default().await.map_err(AppError::Kube)?;
    let service = HttpJobRunService::new(args.service.timeouts()).map_err(AppError::Http)?;
    info!(
        namespaces = ?settings.scope.namespaces,
        label_selector = ?settings.scope.label_selector,
        rate_limit = settings.rate.per_second,
        "starting controller"
    );
    let ctx = Arc::new(Context::new(client, service, settings, Arc::new(provider)));
    controller::run(ctx, shutdown_signal()).await;
    info!("controller stopped");
    Ok(())
}

/// `sparkjobrun-operator get-job-run`: one call with the operator's credentials, printing the
/// status exactly as the controller would write it.
pub async fn get_job_run(args: GetJobRunArgs) -> Result<String, AppError> {
    let creds = credentials::StaticProvider::from_env(env_lookup)
        .credentials()
        .await
        .map_err(AppError::Credentials)?;
    let endpoint = match &args.service.endpoint {
        Some(e) => endpoint::parse(e),
        None => endpoint::for_region(&args.region_id, args.service.network),
    }
    .map_err(|e| AppError::Config(e.to_string()))?;
    let service = HttpJobRunService::new(args.service.timeouts()).map_err(AppError::Http)?;
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
            job_run_id: &args.job_run_id,
            region_id: Some(&args.region_id),
        },
        &now,
    );
    match args.output {
        OutputFormat::Json => {
            serde_json::to_string_pretty(&status).map_err(|e| AppError::Output(e.to_string()))
        }
        OutputFormat::Yaml => {
            serde_yaml::to_string(&status).map_err(|e| AppError::Output(e.to_string()))
        }
    }
}
