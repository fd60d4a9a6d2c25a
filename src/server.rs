//! The operator's one HTTP port: `/metrics` (Prometheus text), `/livez`, `/readyz`, `/leaderz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// Readiness inputs. A leader (or a single replica) is ready once the CRD answered a list and every
/// watch delivered its first list. A standby is ready once the CRD answered: it must count as
/// available, or a rolling update (the new pod waits for the old leader's lease while the old
/// leader waits for the new pod to be ready) and a PodDisruptionBudget would deadlock. Which
/// replica leads is said in the `/readyz` body, by `/leaderz` (200 only on the leader) and by the
/// `sparkjobrun_leader` metric.
///
/// One handle set for the whole process: the reconciler marks `synced`, the election marks
/// `leading`, and `election_ended` makes `/livez` fail so that a replica whose election task
/// died is restarted instead of idling as a healthy-looking standby.
#[derive(Debug, Default)]
pub struct Readiness {
    pub crd_found: AtomicBool,
    pub synced: AtomicBool,
    pub leader_election: AtomicBool,
    pub leading: AtomicBool,
    pub election_ended: AtomicBool,
}

/// Renders `/metrics`.
pub type MetricsRenderer = Arc<dyn Fn() -> Result<String, std::fmt::Error> + Send + Sync>;

#[derive(Clone)]
struct AppState {
    readiness: Arc<Readiness>,
    metrics: MetricsRenderer,
}

/// Whether the replica is ready, with the sentence `/readyz` answers. Pure, so each case is tested.
pub fn readiness(
    crd_found: bool,
    synced: bool,
    election: bool,
    leading: bool,
) -> (bool, &'static str) {
    if !crd_found {
        (
            false,
            "not ready: the SparkJobRunRef CRD was not found or cannot be listed",
        )
    } else if election && !leading {
        (
            true,
            "ok: standby, waiting for the leader lease (another replica leads)",
        )
    } else if !synced {
        (
            false,
            "not ready: the first list of SparkJobRunRef objects has not arrived yet",
        )
    } else if election {
        (true, "ok: leader")
    } else {
        (true, "ok")
    }
}

async fn livez(State(state): State<AppState>) -> impl IntoResponse {
    if state.readiness.election_ended.load(Ordering::Relaxed) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not live: the leader election task ended\n",
        )
    } else {
        (StatusCode::OK, "ok\n")
    }
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let r = &state.readiness;
    let (ready, text) = readiness(
        r.crd_found.load(Ordering::Relaxed),
        r.synced.load(Ordering::Relaxed),
        r.leader_election.load(Ordering::Relaxed),
        r.leading.load(Ordering::Relaxed),
    );
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{text}\n"))
}

/// 200 on the replica that reconciles (the lease holder, or the only replica without election).
async fn leaderz(State(state): State<AppState>) -> impl IntoResponse {
    let r = &state.readiness;
    if !r.leader_election.load(Ordering::Relaxed) {
        (
            StatusCode::OK,
            "leader election is off; this replica reconciles\n",
        )
    } else if r.leading.load(Ordering::Relaxed) {
        (StatusCode::OK, "leader\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "standby\n")
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    match (state.metrics)() {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "encoding metrics failed\n".to_string(),
        ),
    }
}

/// Binds `addr` and serves until `shutdown` resolves. Returns the bound address (port 0 picks one).
pub async fn serve(
    addr: SocketAddr,
    readiness: Arc<Readiness>,
    metrics_renderer: MetricsRenderer,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/leaderz", get(leaderz))
        .route("/metrics", get(metrics))
        .with_state(AppState {
            readiness,
            metrics: metrics_renderer,
        });
    let handle = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok((bound, handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_table() {
        let table = [
            // crd, synced, election, leading -> ready, words in the answer
            ((false, true, false, false), false, "CRD"),
            ((false, true, true, true), false, "CRD"),
            ((true, false, false, false), false, "first list"),
            ((true, false, true, true), false, "first list"),
            ((true, false, true, false), true, "standby"),
            ((true, true, true, true), true, "leader"),
            ((true, true, false, false), true, "ok"),
        ];
        for ((crd, synced, election, leading), ready, words) in table {
            let (got, text) = readiness(crd, synced, election, leading);
            assert_eq!(got, ready, "{crd} {synced} {election} {leading}");
            assert!(text.contains(words), "{text}");
        }
    }
}
