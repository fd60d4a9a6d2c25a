//! Caching temporary credentials and refreshing them before they expire.
//!
//! [`Refresher`] holds one identity's credentials: callers get the cached value while it is
//! fresh; once it is within the refresh margin of `Expiration`, one caller exchanges again while
//! the others keep using the still-valid value (no gap, one exchange); once it is unusable, every
//! caller waits for that single exchange. [`CredentialsCache`] keeps one refresher per identity
//! and role, bounded in size, so thousands of objects sharing an identity make one exchange per
//! refresh period. The decisions ([`needs_refresh`], [`freshness`]) are pure.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::CredentialsError;
use super::sts::TemporaryCredentials;
use crate::signer::Credentials;

/// Credentials this close to `Expiration` are no longer sent: the request must still arrive in
/// time, and clocks differ a little.
pub const EXPIRY_SAFETY: Duration = Duration::from_secs(1);
/// After a failed exchange, callers get that failure (or the still-valid old credentials) for
/// this long instead of asking STS again at once: a thousand objects do not become a thousand
/// calls to a failing STS.
pub const FAILURE_COOLDOWN: Duration = Duration::from_secs(1);

/// Whether credentials expiring at `expiration` should be exchanged again at `now`.
pub fn needs_refresh(expiration: Timestamp, now: Timestamp, margin: Duration) -> bool {
    let margin_ms = i64::try_from(margin.as_millis()).unwrap_or(i64::MAX);
    now.as_millisecond().saturating_add(margin_ms) >= expiration.as_millisecond()
}

/// Where cached credentials stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Use them.
    Fresh,
    /// Still usable, but exchange now (one caller does, the others use them meanwhile).
    RefreshDue,
    /// Too close to expiry to send: everyone waits for the exchange.
    Unusable,
}

/// The refresh decision. The margin is capped at half the credentials' lifetime, so STS handing
/// out shorter lifetimes than the margin does not make every call an exchange.
pub fn freshness(
    expiration: Timestamp,
    obtained_at: Timestamp,
    now: Timestamp,
    margin: Duration,
) -> Freshness {
    let lifetime_ms = (expiration.as_millisecond() - obtained_at.as_millisecond()).max(0);
    let lifetime = Duration::from_millis(u64::try_from(lifetime_ms).unwrap_or(0));
    let margin = margin.min(lifetime / 2);
    let safety = EXPIRY_SAFETY.min(margin / 2);
    if needs_refresh(expiration, now, safety) {
        Freshness::Unusable
    } else if needs_refresh(expiration, now, margin) {
        Freshness::RefreshDue
    } else {
        Freshness::Fresh
    }
}

#[derive(Debug, Clone)]
struct Cached {
    temporary: TemporaryCredentials,
    obtained_at: Timestamp,
}

/// The result of the last failed exchange, remembered for [`FAILURE_COOLDOWN`].
#[derive(Debug, Default)]
struct ExchangeState {
    last_failure: Option<(Instant, CredentialsError)>,
}

/// One identity's temporary credentials, refreshed before they expire with at most one exchange
/// in flight.
#[derive(Debug)]
pub struct Refresher {
    margin: Duration,
    current: Mutex<Option<Cached>>,
    exchange: tokio::sync::Mutex<ExchangeState>,
}

impl Refresher {
    pub fn new(margin: Duration) -> Self {
        Self {
            margin,
            current: Mutex::new(None),
            exchange: tokio::sync::Mutex::new(ExchangeState::default()),
        }
    }

    fn snapshot(&self) -> Option<Cached> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn state(&self, now: Timestamp) -> Option<(Credentials, Freshness)> {
        self.snapshot().map(|c| {
            let f = freshness(c.temporary.expiration, c.obtained_at, now, self.margin);
            (c.temporary.credentials, f)
        })
    }

    /// Forgets the cached credentials, e.g. after the service answered that the token expired.
    pub fn invalidate(&self) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The credentials, exchanging with `fetch` when they are due. `fetch` runs at most once at a
    /// time per refresher, however many callers ask.
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<Credentials, CredentialsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<TemporaryCredentials, CredentialsError>>,
    {
        match self.state(Timestamp::now()) {
            Some((creds, Freshness::Fresh)) => Ok(creds),
            Some((creds, Freshness::RefreshDue)) => {
                // Someone is already exchanging: the old credentials are still good.
                let Ok(mut guard) = self.exchange.try_lock() else {
                    return Ok(creds);
                };
                self.exchange_locked(&mut guard, fetch).await
            }
            Some((_, Freshness::Unusable)) | None => {
                let mut guard = self.exchange.lock().await;
                self.exchange_locked(&mut guard, fetch).await
            }
        }
    }

    async fn exchange_locked<F, Fut>(
        &self,
        state: &mut ExchangeState,
        fetch: F,
    ) -> Result<Credentials, CredentialsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<TemporaryCredentials, CredentialsError>>,
    {
        // Another caller may have exchanged while this one waited for the lock.
        let before = self.state(Timestamp::now());
        if let Some((creds, Freshness::Fresh)) = &before {
            return Ok(creds.clone());
        }
        let usable = before.and_then(|(c, f)| (f == Freshness::RefreshDue).then_some(c));
        if let Some((at, err)) = &state.last_failure
            && at.elapsed() < FAILURE_COOLDOWN
        {
            return usable.ok_or_else(|| err.clone());
        }
        let obtained_at = Timestamp::now();
        match fetch().await {
            Ok(temporary) => {
                let creds = temporary.credentials.clone();
                *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(Cached {
                    temporary,
                    obtained_at,
                });
                state.last_failure = None;
                Ok(creds)
            }
            Err(err) => {
                state.last_failure = Some((Instant::now(), err.clone()));
                match usable {
                    Some(creds) => {
                        tracing::warn!(error = %err, "refreshing temporary credentials failed; using the current ones until they expire");
                        Ok(creds)
                    }
                    None => Err(err),
                }
            }
        }
    }
}

/// One [`Refresher`] per key (identity, role, session), least recently used evicted beyond
/// `max_entries`. A refresher still held by a caller keeps working after eviction.
#[derive(Debug)]
pub struct CredentialsCache {
    max_entries: usize,
    margin: Duration,
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    tick: u64,
    entries: HashMap<String, (Arc<Refresher>, u64)>,
}

impl CredentialsCache {
    pub fn new(max_entries: usize, margin: Duration) -> Self {
        Self {
            max_entries: max_entries.max(1),
            margin,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    /// The refresher of `key`, created (and the least recently used one evicted) if needed.
    pub fn entry(&self, key: &str) -> Arc<Refresher> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((refresher, used)) = inner.entries.get_mut(key) {
            *used = tick;
            return refresher.clone();
        }
        while inner.entries.len() >= self.max_entries {
            let oldest = inner
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    inner.entries.remove(&k);
                }
                None => break,
            }
        }
        let refresher = Arc::new(Refresher::new(self.margin));
        inner
            .entries
            .insert(key.to_owned(), (refresher.clone(), tick));
        refresher
    }

    pub fn invalidate(&self, key: &str) {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((refresher, _)) = inner.entries.get(key) {
            refresher.invalidate();
        }
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, key: &str) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn refresh_decision_table() {
        let exp = ts("2024-05-01T09:00:00Z");
        let m = Duration::from_secs(180);
        let cases = [
            ("2024-05-01T08:00:00Z", false),
            ("2024-05-01T08:56:59Z", false),
            ("2024-05-01T08:57:00Z", true),
            ("2024-05-01T08:59:59Z", true),
            ("2024-05-01T09:00:00Z", true),
            ("2024-05-01T10:00:00Z", true),
        ];
        for (now, want) in cases {
            assert_eq!(needs_refresh(exp, ts(now), m), want, "{now}");
        }
        assert!(!needs_refresh(
            exp,
            ts("2024-05-01T08:59:59Z"),
            Duration::ZERO
        ));
        assert!(needs_refresh(
            exp,
            ts("2024-05-01T08:00:00Z"),
            Duration::MAX
        ));
    }

    #[test]
    fn freshness_table() {
        let obtained = ts("2024-05-01T08:00:00Z");
        let exp = ts("2024-05-01T09:00:00Z");
        let m = Duration::from_secs(180);
        let cases = [
            ("2024-05-01T08:30:00Z", Freshness::Fresh),
            ("2024-05-01T08:57:00Z", Freshness::RefreshDue),
            ("2024-05-01T08:59:58Z", Freshness::RefreshDue),
            ("2024-05-01T08:59:59Z", Freshness::Unusable),
            ("2024-05-01T09:30:00Z", Freshness::Unusable),
        ];
        for (now, want) in cases {
            assert_eq!(freshness(exp, obtained, ts(now), m), want, "{now}");
        }
        // A 10 s credential with a 4 s margin: refresh from second 6.
        let short_exp = ts("2024-05-01T08:00:10Z");
        let m4 = Duration::from_secs(4);
        assert_eq!(
            freshness(short_exp, obtained, ts("2024-05-01T08:00:05Z"), m4),
            Freshness::Fresh
        );
        assert_eq!(
            freshness(short_exp, obtained, ts("2024-05-01T08:00:06Z"), m4),
            Freshness::RefreshDue
        );
        // A margin longer than the lifetime is capped at half of it.
        assert_eq!(
            freshness(short_exp, obtained, ts("2024-05-01T08:00:04Z"), m),
            Freshness::Fresh
        );
        assert_eq!(
            freshness(short_exp, obtained, ts("2024-05-01T08:00:05Z"), m),
            Freshness::RefreshDue
        );
        // Already expired when obtained.
        assert_eq!(
            freshness(obtained, exp, ts("2024-05-01T09:00:00Z"), m),
            Freshness::Unusable
        );
    }

    fn temp(id: &str, lifetime: Duration) -> TemporaryCredentials {
        let expiration = Timestamp::now() + jiff::SignedDuration::try_from(lifetime).expect("fits");
        TemporaryCredentials {
            credentials: Credentials::new(id, "s").with_security_token("t"),
            expiration,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_exchange() {
        let refresher = Arc::new(Refresher::new(Duration::from_secs(180)));
        let calls = Arc::new(AtomicU32::new(0));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let r = refresher.clone();
                let calls = calls.clone();
                tokio::spawn(async move {
                    r.get(|| async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(temp("STS.one", Duration::from_secs(3600)))
                    })
                    .await
                })
            })
            .collect();
        for t in tasks {
            let creds = t.await.expect("joins").expect("credentials");
            assert_eq!(creds.access_key_id, "STS.one");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Fresh: no exchange at all.
        let again = refresher
            .get(|| async { Err(CredentialsError::NoneConfigured) })
            .await
            .expect("cached");
        assert_eq!(again.access_key_id, "STS.one");
        refresher.invalidate();
        let next = refresher
            .get(|| async { Ok(temp("STS.two", Duration::from_secs(3600))) })
            .await
            .expect("exchanged again");
        assert_eq!(next.access_key_id, "STS.two");
    }

    #[tokio::test]
    async fn refresh_due_keeps_old_credentials_while_one_caller_exchanges() {
        // Lifetime 2 s, margin 8 s (capped to 1 s): due after 1 s, usable until 1.5 s.
        let refresher = Refresher::new(Duration::from_secs(8));
        let calls = AtomicU32::new(0);
        let first = refresher
            .get(|| async { Ok(temp("STS.old", Duration::from_secs(2))) })
            .await
            .expect("first");
        assert_eq!(first.access_key_id, "STS.old");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // The exchange fails: the old credentials are still valid and are used.
        let failing = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(CredentialsError::NoneConfigured)
        };
        let kept = refresher.get(failing).await.expect("old still usable");
        assert_eq!(kept.access_key_id, "STS.old");
        // Within the cooldown nothing is asked.
        let cooled = refresher.get(failing).await.expect("old still usable");
        assert_eq!(cooled.access_key_id, "STS.old");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "no exchange during the cooldown"
        );
        tokio::time::sleep(FAILURE_COOLDOWN).await;
        let fresh = refresher
            .get(|| async { Ok(temp("STS.new", Duration::from_secs(2))) })
            .await
            .expect("refreshed");
        assert_eq!(fresh.access_key_id, "STS.new");
    }

    #[tokio::test]
    async fn failures_without_credentials_are_returned_and_cooled_down() {
        let refresher = Refresher::new(Duration::from_secs(180));
        let calls = AtomicU32::new(0);
        let fail = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(CredentialsError::Imds {
                endpoint: "x".into(),
                message: "down".into(),
            })
        };
        assert!(refresher.get(fail).await.is_err());
        assert!(refresher.get(fail).await.is_err());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "second caller got the remembered failure"
        );
    }

    #[test]
    fn cache_is_bounded_lru() {
        let cache = CredentialsCache::new(2, Duration::from_secs(60));
        let a = cache.entry("a");
        let _b = cache.entry("b");
        assert!(
            Arc::ptr_eq(&a, &cache.entry("a")),
            "same refresher for the same key"
        );
        let _c = cache.entry("c");
        assert_eq!(cache.len(), 2);
        assert!(cache.contains("a"), "recently used kept");
        assert!(!cache.contains("b"), "least recently used evicted");
        assert!(cache.contains("c"));
        let zero = CredentialsCache::new(0, Duration::from_secs(60));
        let _ = zero.entry("x");
        assert_eq!(zero.len(), 1, "at least one entry");
    }
}
