//! The operator's one HTTP port: `/metrics` (Prometheus text), `/livez`, `/readyz`, `/leaderz`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::time::Instant;

/// Readiness inputs. A leader (or a single replica) is ready once the CRD answered a list and every
/// watch delivered its first list. A standby is ready once the CRD answered: it must count as
/// available, or a rolling update (the new pod waits for the old leader's lease while the old
/// leader waits for the new pod to be ready) and a PodDisruptionBudget would deadlock. Which
/// replica leads is said in the `/readyz` body, by `/leaderz` (200 only on the leader) and by the
/// `sparkjobrun_leader` metric.
///
/// One handle set for the whole process: the reconciler marks `synced`, the election marks
/// `leading`, and `election_ended` makes `/livez` fail so that a replica whose election task
/// died is restarted instead of idling as a healthy-looking standby. Each watch records its
/// errors, so that a watch failing for longer than `watch_outage_grace` (RBAC revoked, CRD
/// removed) makes the replica unready instead of serving a cache that no longer changes.
#[derive(Debug)]
pub struct Readiness {
    pub crd_found: AtomicBool,
    pub synced: AtomicBool,
    pub leader_election: AtomicBool,
    pub leading: AtomicBool,
    pub election_ended: AtomicBool,
    pub watch_outage_grace: Duration,
    watches: Mutex<Vec<WatchHealth>>,
}

/// Default of `--watch-outage-grace`: two of the watcher's longest backoff steps.
pub const DEFAULT_WATCH_OUTAGE_GRACE: Duration = Duration::from_secs(60);

impl Default for Readiness {
    fn default() -> Self {
        Self::new(DEFAULT_WATCH_OUTAGE_GRACE)
    }
}

impl Readiness {
    pub fn new(watch_outage_grace: Duration) -> Self {
        Self {
            crd_found: AtomicBool::new(false),
            synced: AtomicBool::new(false),
            leader_election: AtomicBool::new(false),
            leading: AtomicBool::new(false),
            election_ended: AtomicBool::new(false),
            watch_outage_grace,
            watches: Mutex::new(Vec::new()),
        }
    }

    /// Registers a watch; its errors are recorded under the returned index.
    pub fn add_watch(&self) -> usize {
        self.watches.lock().map_or(0, |mut w| {
            w.push(WatchHealth::default());
            w.len() - 1
        })
    }

    pub fn watch_error(&self, watch: usize, now: Instant, error: &str) {
        if let Ok(mut w) = self.watches.lock()
            && let Some(h) = w.get_mut(watch)
        {
            h.streak.error(now);
            h.last_error = crate::text::prefix(error, 300).to_owned();
        }
    }

    pub fn watch_ok(&self, watch: usize) {
        if let Ok(mut w) = self.watches.lock()
            && let Some(h) = w.get_mut(watch)
        {
            h.streak.ok();
        }
    }

    /// The longest ongoing watch outage and its last error, if one is past the grace.
    pub fn watch_outage(&self, now: Instant) -> Option<(Duration, String)> {
        let w = self.watches.lock().ok()?;
        w.iter()
            .filter_map(|h| h.streak.outage(now).map(|d| (d, &h.last_error)))
            .filter(|(d, _)| *d >= self.watch_outage_grace)
            .max_by_key(|(d, _)| *d)
            .map(|(d, e)| (d, e.clone()))
    }
}

#[derive(Debug, Default)]
struct WatchHealth {
    streak: ErrorStreak,
    last_error: String,
}

/// A run of watch errors. The watcher retries with a backoff that doubles (0.8 s up to 30 s) and
/// says nothing when a retried watch works until an object changes. So an outage is ongoing while
/// the next error is still due (twice the last gap, within the backoff's bounds, plus time for the
/// request), and over once it is overdue; an error within [`Self::GAP`] of the last one continues
/// the same outage, so a retry that hangs until its timeout does not restart the count.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ErrorStreak {
    first: Option<Instant>,
    last: Option<Instant>,
    gap: Duration,
}

impl ErrorStreak {
    /// kube-runtime's backoff doubles up to 30 s and adds up to as much again in jitter, and a
    /// retry may first spend the client's connect timeout: gaps reach 60 s and more.
    pub const GAP: Duration = Duration::from_secs(120);
    const REQUEST_TIME: Duration = Duration::from_secs(10);
    const MAX_DUE: Duration = Duration::from_secs(90);

    pub fn error(&mut self, now: Instant) {
        match self.last {
            Some(l) if now.saturating_duration_since(l) <= Self::GAP => {
                self.gap = now.saturating_duration_since(l);
            }
            _ => {
                self.first = Some(now);
                self.gap = Duration::ZERO;
            }
        }
        self.last = Some(now);
    }

    /// An event arrived: the watch works.
    pub fn ok(&mut self) {
        *self = Self::default();
    }

    /// How long the ongoing outage has lasted, if one is ongoing.
    pub fn outage(&self, now: Instant) -> Option<Duration> {
        let (first, last) = (self.first?, self.last?);
        let next_due =
            (self.gap * 2).clamp(Duration::from_secs(1), Self::MAX_DUE) + Self::REQUEST_TIME;
        (now.saturating_duration_since(last) <= next_due)
            .then(|| now.saturating_duration_since(first))
    }
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
    watch_outage: Option<(Duration, &str)>,
) -> (bool, String) {
    let say = |ready: bool, text: &str| (ready, text.to_owned());
    if !crd_found {
        say(
            false,
            "not ready: the SparkJobRunRef CRD was not found or cannot be listed",
        )
    } else if election && !leading {
        say(
            true,
            "ok: standby, waiting for the leader lease (another replica leads)",
        )
    } else if let Some((lasted, error)) = watch_outage {
        (
            false,
            format!(
                "not ready: watching SparkJobRunRef objects has failed for {}s (last error: {error})",
                lasted.as_secs()
            ),
        )
    } else if !synced {
        say(
            false,
            "not ready: the first list of SparkJobRunRef objects has not arrived yet",
        )
    } else if election {
        say(true, "ok: leader")
    } else {
        say(true, "ok")
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
    let outage = r.watch_outage(Instant::now());
    let (ready, text) = readiness(
        r.crd_found.load(Ordering::Relaxed),
        r.synced.load(Ordering::Relaxed),
        r.leader_election.load(Ordering::Relaxed),
        r.leading.load(Ordering::Relaxed),
        outage.as_ref().map(|(d, e)| (*d, e.as_str())),
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
            let (got, text) = readiness(crd, synced, election, leading, None);
            assert_eq!(got, ready, "{crd} {synced} {election} {leading}");
            assert!(text.contains(words), "{text}");
        }
        let outage = Some((Duration::from_secs(75), "403 Forbidden"));
        let (ready, text) = readiness(true, true, false, false, outage);
        assert!(!ready);
        assert!(
            text.contains("failed for 75s") && text.contains("403"),
            "{text}"
        );
        assert!(!readiness(true, true, true, true, outage).0, "a leader too");
        // A standby watches nothing; its readiness is the lease's.
        assert!(readiness(true, false, true, false, outage).0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sustained_watch_outage_drops_readiness_and_recovery_restores_it() {
        let r = Readiness::new(Duration::from_secs(60));
        let (a, b) = (r.add_watch(), r.add_watch());
        let start = Instant::now();
        // The watcher's backoff: 0.8 s doubling up to 30 s.
        let mut at = Duration::ZERO;
        let mut step = Duration::from_millis(800);
        while at <= Duration::from_secs(100) {
            r.watch_error(a, start + at, "forbidden");
            let outage = r.watch_outage(start + at);
            assert_eq!(outage.is_some(), at >= Duration::from_secs(60), "at {at:?}");
            at += step;
            step = (step * 2).min(Duration::from_secs(30));
        }
        let now = start + at;
        assert!(r.watch_outage(now).is_some_and(|(_, e)| e == "forbidden"));
        r.watch_ok(a);
        assert_eq!(r.watch_outage(now), None, "an event ends the outage");
        // One error now and then is no outage.
        r.watch_error(b, now, "reset");
        assert_eq!(r.watch_outage(now + Duration::from_secs(61)), None);
        // Errors up to 60 s apart (the longest backoff with its jitter, or a retry that waited
        // for its connect timeout) keep one outage going, without gaps in it; once the next is
        // overdue (at most 90 s + 10 s for the request) the retried watch worked.
        let mut at = now + Duration::from_secs(300);
        r.watch_error(b, at, "refused");
        for (i, gap) in [45, 60, 30, 60].into_iter().enumerate() {
            at += Duration::from_secs(gap);
            r.watch_error(b, at, "refused");
            // Past the 60 s grace from the second gap on, and never a gap in the outage.
            for probe in [1, 30, 59].into_iter().filter(|_| i >= 1) {
                let after = at + Duration::from_secs(probe);
                assert!(r.watch_outage(after).is_some(), "{probe}s after error {i}");
            }
        }
        assert_eq!(
            r.watch_outage(at).map(|(d, _)| d),
            Some(Duration::from_secs(195))
        );
        assert!(r.watch_outage(at + Duration::from_secs(100)).is_some());
        assert_eq!(r.watch_outage(at + Duration::from_secs(101)), None);
        // Early in an outage (gaps of 0.8 and 1.6 s) recovery shows within seconds.
        let c = r.add_watch();
        let t = now + Duration::from_secs(1000);
        for ms in [0, 800, 2400] {
            r.watch_error(c, t + Duration::from_millis(ms), "refused");
        }
        let c_outage = |after: Duration| {
            let w = r.watches.lock().expect("lock");
            w[c].streak.outage(t + after)
        };
        assert!(c_outage(Duration::from_millis(15_500)).is_some());
        assert_eq!(c_outage(Duration::from_millis(15_700)), None);
    }
}
