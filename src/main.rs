//! Entry point: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use sparkjobrun_operator::app;
use sparkjobrun_operator::cli::{Cli, Command, LogFormat};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd => sparkjobrun_operator::crd::crd_yaml()
            .map(|yaml| print!("{yaml}"))
            .map_err(app::AppError::Yaml),
        Command::Run(args) => {
            app::init_tracing(args.log_format);
            app::run(args).await
        }
        Command::GetJobRun(args) => {
            app::init_tracing(LogFormat::Text);
            app::get_job_run(args).await.map(|out| print!("{out}"))
        }
        Command::Import(args) => {
            app::init_tracing(LogFormat::Text);
            app::import(args).await.map(|out| print!("{out}"))
        }
        Command::Wait(args) => {
            app::init_tracing(LogFormat::Text);
            return match app::wait(args).await {
                Ok((code, report)) => {
                    println!("{report}");
                    ExitCode::from(code)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(sparkjobrun_operator::wait::UNREADABLE)
                }
            };
        }
        Command::Simulator(args) => {
            app::init_tracing(LogFormat::Text);
            sparkjobrun_operator::kit::simulator::run_cli(args)
                .await
                .map_err(app::AppError::Simulator)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
