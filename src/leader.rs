//! Leader election on a Lease, with a fence that does not trust the lease library alone: the
//! Lease object itself is read on a short period, and the fence stays open only while a renewal
//! by this replica was seen recently on the monotonic clock. Losing the lease ends the process
//! (non-zero), so the pod restarts and competes again instead of idling as a zombie.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cli::LeaderElection;
use crate::client::JobRunService;
use crate::reconcile::fence::Fence;
use crate::reconcile::{self, Context};

/// How long after an observed renewal this replica keeps acting: past the next renewal (due
/// `duration - grace` after this one, plus one read period) and before the lease could expire.
pub fn fence_validity(duration: Duration, grace: Duration) -> Duration {
    duration.saturating_sub(grace / 2)
}

/// How often the Lease is read to confirm renewals.
pub fn confirm_period(grace: Duration) -> Duration {
    (grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(2))
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("building the lease manager: {0}")]
    Build(String),
    #[error("the lease manager stopped")]
    Stopped,
    #[error("lost the leader lease")]
    Lost,
}

/// Waits for the lease, reconciles while holding it, and gives it back on shutdown.
pub async fn lead<S: JobRunService>(
    client: Client,
    le: LeaderElection,
    ctx: Arc<Context<S>>,
    fence: Arc<Fence>,
    shutdown: CancellationToken,
) -> Result<(), LeaderError> {
    let manager = LeaseManagerBuilder::new(client.clone(), &le.lease_name)
        .with_namespace(&le.namespace)
        .with_identity(&le.identity)
        .with_duration(le.duration_secs)
        .with_grace(le.grace_secs)
        // The field manager must differ per replica (the library's default derives it from the
        // identity): server-side apply's ownership conflict stops two replicas taking a free
        // lease at the same moment.
        .build()
        .await
        .map_err(|e| LeaderError::Build(e.to_string()))?;
    let (mut leading, task) = manager.watch().await;
    let grace = Duration::from_secs(le.grace_secs);
    let confirmer = tokio::spawn(confirm_renewals(
        Api::namespaced(client, &le.namespace),
        le.lease_name.clone(),
        le.identity.clone(),
        fence.clone(),
        confirm_period(grace),
    ));
    info!(lease = %le.lease_name, namespace = %le.namespace, identity = %le.identity, "waiting for the leader lease");
    let result = async {
        while !*leading.borrow_and_update() {
            tokio::select! {
                changed = leading.changed() => if changed.is_err() {
                    return Err(LeaderError::Stopped);
                },
                () = shutdown.cancelled() => return Ok(()),
            }
        }
        info!(identity = %le.identity, "acquired the leader lease; reconciling");
        ctx.readiness.leading.store(true, Ordering::Relaxed);
        ctx.metrics.leader.set(1);
        let work = shutdown.child_token();
        let lost = CancellationToken::new();
        let watcher = tokio::spawn(watch_loss(
            leading.clone(),
            work.clone(),
            lost.clone(),
            fence.clone(),
        ));
        reconcile::run::run(ctx.clone(), work).await;
        watcher.abort();
        ctx.readiness.leading.store(false, Ordering::Relaxed);
        ctx.metrics.leader.set(0);
        if lost.is_cancelled() {
            Err(LeaderError::Lost)
        } else {
            Ok(())
        }
    }
    .await;
    fence.close();
    confirmer.abort();
    // Dropping the receiver makes the manager release the lease, so a successor need not wait.
    drop(leading);
    let _ = task.await;
    if result.is_ok() {
        info!("released the leader lease");
    }
    ctx.readiness.election_ended.store(true, Ordering::Relaxed);
    result
}

/// Stops the work when the library reports the lease lost (or stops reporting at all).
async fn watch_loss(
    mut leading: tokio::sync::watch::Receiver<bool>,
    work: CancellationToken,
    lost: CancellationToken,
    fence: Arc<Fence>,
) {
    loop {
        if leading.changed().await.is_err() || !*leading.borrow_and_update() {
            warn!("the leader lease was lost; stopping");
            fence.close();
            lost.cancel();
            work.cancel();
            return;
        }
    }
}

/// Reads the Lease every `period` and confirms the fence through [`Renewals`].
async fn confirm_renewals(
    api: Api<Lease>,
    name: String,
    identity: String,
    fence: Arc<Fence>,
    period: Duration,
) {
    // The lease cannot have been renewed by this process before it started.
    let mut renewals = Renewals::new(Instant::now());
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let sent = Instant::now();
        let read = match api.get_opt(&name).await {
            Ok(lease) => Some(lease.and_then(|l| l.spec).and_then(|s| {
                let holder = s.holder_identity?;
                let renewed = s.renew_time?;
                (holder == identity).then(|| renewed.0.to_string())
            })),
            Err(e) => {
                warn!(error = %e, "reading the leader lease failed; the fence closes unless a renewal is seen in time");
                None
            }
        };
        if let Some(at) = renewals.observe(sent, read) {
            fence.confirm(at);
        }
    }
}

/// What the Lease reads have shown, pure. A renewal by this replica not seen before happened
/// after the send time of the last read that *answered* without it; a failed read proves
/// nothing, so it never moves that time (else a renewal older than the failed read could be
/// dated after it and keep the fence open past the lease).
#[derive(Debug)]
struct Renewals {
    seen: Option<String>,
    last_answered: Instant,
}

impl Renewals {
    fn new(start: Instant) -> Self {
        Self {
            seen: None,
            last_answered: start,
        }
    }

    /// `read`: `None` when the read failed, else this replica's renewTime if it holds the lease.
    /// Returns the instant to confirm the fence at, if the read shows a new renewal.
    fn observe(&mut self, sent: Instant, read: Option<Option<String>>) -> Option<Instant> {
        let renewal = read?;
        let confirm = renewal
            .as_ref()
            .filter(|r| self.seen.as_ref() != Some(*r))
            .map(|_| self.last_answered);
        if renewal.is_some() {
            self.seen = renewal;
        }
        self.last_answered = sent;
        confirm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_is_dated_after_the_last_answered_read_only() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut r = Renewals::new(t0);
        assert_eq!(r.observe(at(1), Some(None)), None, "not holding");
        assert_eq!(r.observe(at(2), None), None, "failed read");
        // Seen at the read sent at 3: renewed after 1 (the last read that answered), not 2.
        assert_eq!(r.observe(at(3), Some(Some("r1".into()))), Some(at(1)));
        assert_eq!(
            r.observe(at(4), Some(Some("r1".into()))),
            None,
            "same renewal"
        );
        assert_eq!(r.observe(at(5), Some(Some("r2".into()))), Some(at(4)));
        assert_eq!(r.observe(at(6), Some(None)), None, "lease taken over");
    }

    /// The fence must outlast the renewal period plus one read, and end before the lease does.
    #[test]
    fn validity_between_renewal_and_expiry() {
        for (duration, grace) in [(15, 5), (4, 1), (60, 20), (10, 9)] {
            let (d, g) = (Duration::from_secs(duration), Duration::from_secs(grace));
            let v = fence_validity(d, g);
            let renew_every = d - g;
            assert!(v < d, "{duration}/{grace}: {v:?}");
            assert!(
                v > renew_every + confirm_period(g),
                "{duration}/{grace}: {v:?}"
            );
        }
    }
}
