//! `sparkjobrun-devenv up`: runs the local control plane until SIGINT/SIGTERM,
//! for the demo and for poking at the operator by hand.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sparkjobrun_operator::kit::devenv::{ControlPlane, ControlPlaneOptions};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(about = "Local etcd + kube-apiserver for sparkjobrun-operator")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the control plane, print KUBECONFIG=... lines and READY, run until signalled.
    Up {
        /// Work directory (data, certificates, kubeconfigs, logs); a temp dir if omitted.
        #[arg(long, env = "SPARKJOBRUN_DEVENV_DIR")]
        work_dir: Option<PathBuf>,
        /// Keep the work directory after shutdown.
        #[arg(long)]
        keep: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let Cmd::Up { work_dir, keep } = Cli::parse().command;
    match up(work_dir, keep).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sparkjobrun-devenv: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn up(work_dir: Option<PathBuf>, keep: bool) -> Result<(), Box<dyn std::error::Error>> {
    // Install the handlers first so a signal during startup is not fatal.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let opts = ControlPlaneOptions {
        work_dir,
        keep_work_dir: keep,
        ..ControlPlaneOptions::default()
    };
    let mut plane = tokio::select! {
        plane = ControlPlane::start(opts) => plane?,
        _ = sigint.recv() => return Err("interrupted during startup".into()),
        _ = sigterm.recv() => return Err("terminated during startup".into()),
    };
    let logs = plane.log_paths().clone();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "KUBECONFIG={}",
        plane.kubeconfig_admin_path().display()
    )?;
    writeln!(
        out,
        "KUBECONFIG_OPERATOR={}",
        plane.kubeconfig_operator_path().display()
    )?;
    writeln!(out, "SERVER={}", plane.server_url())?;
    writeln!(out, "KUBECTL={}", plane.kubectl_path().display())?;
    writeln!(out, "WORK_DIR={}", plane.work_dir().display())?;
    writeln!(out, "ETCD_LOG={}", logs.etcd.display())?;
    writeln!(out, "KUBE_APISERVER_LOG={}", logs.kube_apiserver.display())?;
    writeln!(out, "READY")?;
    out.flush()?;
    drop(out);

    tokio::select! {
        _ = sigint.recv() => {},
        _ = sigterm.recv() => {},
    }
    eprintln!("sparkjobrun-devenv: stopping");
    plane.stop();
    Ok(())
}
