//! The operator's one HTTP port: `/metrics` (Prometheus text), `/livez` and `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// Readiness inputs. Ready means: the CRD answered a list, every watch delivered its first list,
/// and (with leader election) this replica holds the lease — so a Service or a human can tell
/// which replica is doing the work.
#[derive(Debug, Default)]
pub struct Readiness {
    pub crd_found: AtomicBool,
    pub leader_election: AtomicBool,
    pub leading: AtomicBool,
}

/// Renders `/metrics`.
pub type MetricsRenderer = Arc<dyn Fn() -> Result<String, std::fmt::Error> + Send + Sync>;

#[derive(Clone)]
struct AppState {
    readiness: Arc<Readiness>,
    synced: Arc<dyn Fn() -> bool + Send + Sync>,
    metrics: MetricsRenderer,
}

/// Why the replica is not ready, or `None` when it is. Pure, so each case is tested.
pub fn not_ready_reason(
    crd_found: bool,
    synced: bool,
    election: bool,
    leading: bool,
) -> Option<&'static str> {
    if !crd_found {
        Some("the SparkJobRunRef CRD was not found or cannot be listed")
    } else if election && !leading {
        Some("waiting for the leader lease (another replica leads)")
    } else if !synced {
        Some("the first list of SparkJobRunRef objects has not arrived yet")
    } else {
        None
    }
}

async fn livez() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let r = &state.readiness;
    match not_ready_reason(
        r.crd_found.load(Ordering::Relaxed),
        (state.synced)(),
        r.leader_election.load(Ordering::Relaxed),
        r.leading.load(Ordering::Relaxed),
    ) {
        None => (StatusCode::OK, "ok\n".to_string()),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
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
    synced: Arc<dyn Fn() -> bool + Send + Sync>,
    metrics_renderer: MetricsRenderer,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AppState {
            readiness,
            synced,
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
        assert!(not_ready_reason(false, true, false, false).is_some_and(|r| r.contains("CRD")));
        assert!(
            not_ready_reason(true, false, false, false).is_some_and(|r| r.contains("first list"))
        );
        assert!(not_ready_reason(true, true, true, false).is_some_and(|r| r.contains("leader")));
        assert_eq!(not_ready_reason(true, true, true, true), None);
        assert_eq!(not_ready_reason(true, true, false, false), None);
    }
}
