//! The leadership fence: a replica acts (status writes, events) only while its hold on the lease
//! was confirmed recently, on the monotonic clock, whatever the lease library believes. A leader
//! whose renewals fail, or that was paused past its lease, stops acting before another replica
//! can have taken over.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::Error;

#[derive(Debug)]
pub struct Fence {
    /// `None`: no election, this replica always acts.
    validity: Option<Duration>,
    confirmed: Mutex<Option<Instant>>,
    /// Set by [`Fence::close`]; only a later confirmation opens the fence again.
    closed: AtomicBool,
}

impl Fence {
    /// A fence that never closes (single replica, no election).
    pub fn open() -> Self {
        Self {
            validity: None,
            confirmed: Mutex::new(None),
            closed: AtomicBool::new(false),
        }
    }

    /// A fence that stays open `validity` after each confirmation of the lease.
    pub fn leased(validity: Duration) -> Self {
        Self {
            validity: Some(validity),
            confirmed: Mutex::new(None),
            closed: AtomicBool::new(false),
        }
    }

    /// Records that the lease was ours at `at` (an instant taken *before* the confirming read
    /// was sent, so the fence never outlives the lease).
    pub fn confirm(&self, at: Instant) {
        if let Ok(mut c) = self.confirmed.lock() {
            *c = Some(c.map_or(at, |old| old.max(at)));
        }
        self.closed.store(false, Ordering::SeqCst);
    }

    /// Closes the fence at once (the lease was lost or released, or the process is stopping),
    /// also a fence without an election.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Ok(mut c) = self.confirmed.lock() {
            *c = None;
        }
    }

    pub fn is_open(&self, now: Instant) -> bool {
        if self.closed.load(Ordering::SeqCst) {
            return false;
        }
        let Some(validity) = self.validity else {
            return true;
        };
        self.confirmed
            .lock()
            .ok()
            .and_then(|c| *c)
            .is_some_and(|at| now.saturating_duration_since(at) < validity)
    }

    pub fn check(&self, object: &str) -> Result<(), Error> {
        if self.is_open(Instant::now()) {
            Ok(())
        } else {
            Err(Error::Fenced {
                object: object.to_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn closes_when_confirmations_stop() {
        let fence = Fence::leased(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(!fence.is_open(t0), "closed before the first confirmation");
        fence.confirm(t0);
        assert!(fence.is_open(t0 + Duration::from_secs(9)));
        assert!(!fence.is_open(t0 + Duration::from_secs(10)));
        fence.confirm(t0 + Duration::from_secs(5));
        fence.confirm(t0 + Duration::from_secs(1));
        assert!(
            fence.is_open(t0 + Duration::from_secs(14)),
            "latest confirmation wins"
        );
        fence.close();
        assert!(!fence.is_open(t0 + Duration::from_secs(6)));
        assert!(Fence::open().is_open(t0 + Duration::from_secs(1_000_000)));
    }
}
