//! Errors of the local control plane. Each variant names the binary, port or
//! path involved so a failing test says what to look at without a debugger.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while starting, using or stopping the local
/// control plane.
#[derive(Debug, thiserror::Error)]
pub enum DevEnvError {
    /// A binary could not be located; the message says how to build it.
    #[error(
        "{binary} not found: {detail}. Build the control-plane binaries with `tools/ensure-tools.sh` \
         (it writes {}), or point the {env_var} environment variable at the binary",
        tools_env.display()
    )]
    BinaryNotFound {
        binary: &'static str,
        env_var: &'static str,
        tools_env: PathBuf,
        detail: String,
    },

    /// A filesystem operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// No free loopback port could be reserved.
    #[error("could not reserve a free port on 127.0.0.1: {0}")]
    Port(#[source] std::io::Error),

    /// Certificate or key generation failed.
    #[error("generating the {what}: {source}")]
    Pki {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },

    /// A value cannot be written into the static token file or a kubeconfig.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidInput {
        what: &'static str,
        value: String,
        reason: &'static str,
    },

    /// A daemon or kubectl could not be started at all.
    #[error("starting {binary} ({}): {source}", path.display())]
    Spawn {
        binary: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A daemon exited while we waited for it to become ready.
    #[error("{binary} exited with {status} before becoming ready (port {port}); {log}")]
    Exited {
        binary: &'static str,
        port: u16,
        status: std::process::ExitStatus,
        log: Box<LogExcerpt>,
    },

    /// A daemon kept running but never reported ready in time.
    #[error("{binary} not ready at {url} after {waited:?} (last answer: {last}); {log}")]
    NotReady {
        binary: &'static str,
        url: String,
        waited: Duration,
        last: String,
        log: Box<LogExcerpt>,
    },

    /// An HTTP client for a readiness probe could not be built.
    #[error("building the HTTP client for {what}: {source}")]
    Http {
        what: &'static str,
        #[source]
        source: reqwest::Error,
    },

    /// A kubeconfig could not be turned into a client configuration.
    #[error("loading kubeconfig for {user}: {source}")]
    Kubeconfig {
        user: String,
        #[source]
        source: kube::config::KubeconfigError,
    },

    /// YAML or JSON could not be produced or parsed.
    #[error("{what}: {message}")]
    Serde { what: String, message: String },

    /// A request to the API server failed.
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },

    /// Something observable through the API did not happen in time.
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout { what: String, waited: Duration },
}

/// The end of a daemon's log, carried in start-up errors (boxed to keep
/// `Result<_, DevEnvError>` small).
#[derive(Debug, Clone)]
pub struct LogExcerpt {
    pub path: PathBuf,
    pub tail: String,
}

impl std::fmt::Display for LogExcerpt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "last lines of {}:\n{}", self.path.display(), self.tail)
    }
}

impl DevEnvError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            action: action.into(),
            source,
        }
    }

    pub(crate) fn serde(what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self::Serde {
            what: what.into(),
            message: message.to_string(),
        }
    }
}
