//! Simulator of the EMR Serverless Spark service (GetJobRun, ListJobRuns, CancelJobRun, plus the STS calls RRSA and
//! cross-account roles need, see [`sts`]), for the operator's tests, the
//! local demo, benchmarks and users' own CI. No machine of this project can reach the real
//! service, so the simulator is as strict as the real one where it matters: ACS3-HMAC-SHA256
//! signatures, clock skew, nonces and STS tokens are checked the way the gateway checks them, and
//! its error answers have the service's shape. Job runs follow scripts of states over time, and
//! faults (throttling, 5xx, HTML pages, truncated JSON, slow answers, missing permissions) can be
//! injected to exercise the client's retry and reporting paths.
//!
//! Pure parts ([`verify`], [`script`], [`faults`], [`counts`]) take the clock as an argument; only
//! [`server`] reads the real one.

pub mod cli;
pub mod counts;
pub mod error;
pub mod faults;
pub mod list;
pub mod quota;
pub mod script;
pub mod server;
pub mod sts;
pub mod verify;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use cli::{AccessKeyArg, SimulatorArgs, SimulatorConfig, run_cli};
pub use counts::CallCounts;
pub use error::ServiceError;
pub use faults::{Fault, FaultError, FaultKind};
pub use script::{Phase, Reason, RunScript, ScriptError, job_run_at};
pub use server::{Simulator, SimulatorHandle};
pub use sts::{Issued, OidcRole, RoleTrust, StsConfig, StsCounts};
pub use verify::{Account, Accounts, Caller, NonceCache, ReceivedRequest, verify};

/// Why the simulator could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    #[error("simulator cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read simulator config {}: {source}", path.display())]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("simulator config {origin} is invalid: {source}")]
    ParseConfig {
        origin: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("--access-key #{position} is not ID:SECRET with both parts non-empty")]
    InvalidAccessKeyArg { position: usize },
    #[error("run script {job_run_id:?} is invalid: {source}")]
    InvalidRun {
        job_run_id: String,
        #[source]
        source: ScriptError,
    },
    #[error("fault is invalid: {0}")]
    InvalidFault(#[from] FaultError),
    #[error("simulator server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("cannot write the LISTENING line to stdout: {0}")]
    Stdout(#[source] std::io::Error),
    #[error("cannot listen for SIGINT/SIGTERM: {0}")]
    Signal(#[source] std::io::Error),
}
