//! Who makes the next service call. One token bucket bounds the whole process (`--rate-limit`,
//! `--rate-burst`). While tokens are plentiful an object takes one and calls. Once they run out,
//! objects queue instead of racing for the next free token (the winners of such a race are
//! whoever happens to retry at the right moment, so a namespace with many objects starves one
//! with few, and unlucky objects are never polled): namespaces take turns, and within a namespace
//! the object whose poll has been due longest goes first. A dispatcher hands each new token to
//! the next object in line and wakes its reconcile; no worker ever waits for a token.
//!
//! [`TokenBucket`] and [`FairQueue`] are pure and run on tokio's clock, so tests drive them by
//! advancing time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::RateLimit;

/// `rate` tokens per second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket. Odd settings are made safe: a rate that is not a positive number is 1/s, a
    /// burst of 0 is 1.
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        let rate = if limit.per_second.is_finite() && limit.per_second > 0.0 {
            limit.per_second.max(0.001)
        } else {
            1.0
        };
        let burst = f64::from(limit.burst.max(1));
        Self {
            rate,
            burst,
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        if now > self.at {
            let earned = now.duration_since(self.at).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + earned).min(self.burst);
            self.at = now;
        }
    }

    /// Takes a token, or says how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    /// Returns a token taken for nobody.
    pub fn give_back(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.burst);
    }

    /// Time between two tokens.
    pub fn period(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate)
    }
}

/// Objects waiting for a token, by namespace, each namespace ordered by when the object's poll
/// became due. [`Self::pop`] serves the namespaces round-robin.
#[derive(Debug, Default)]
pub struct FairQueue {
    by_namespace: BTreeMap<String, BTreeSet<(Instant, String)>>,
    /// key → (namespace, due, queued at)
    entries: HashMap<String, (String, Instant, Instant)>,
    /// The namespace served last; the next turn goes to the one after it.
    last_served: Option<String>,
}

impl FairQueue {
    /// Queues `key` (once: queuing it again keeps its place).
    pub fn push(&mut self, namespace: &str, key: &str, due: Instant, now: Instant) {
        if self.entries.contains_key(key) {
            return;
        }
        self.entries
            .insert(key.to_owned(), (namespace.to_owned(), due, now));
        self.by_namespace
            .entry(namespace.to_owned())
            .or_default()
            .insert((due, key.to_owned()));
    }

    /// The next object in line, with when it was queued: the most overdue of the namespace after
    /// the one served last.
    pub fn pop(&mut self) -> Option<(String, Instant)> {
        let after = self.last_served.clone().unwrap_or_default();
        let namespace = self
            .by_namespace
            .range::<String, _>((
                std::ops::Bound::Excluded(&after),
                std::ops::Bound::Unbounded,
            ))
            .next()
            .or_else(|| self.by_namespace.iter().next())
            .map(|(ns, _)| ns.clone())?;
        let waiting = self.by_namespace.get_mut(&namespace)?;
        let (_, key) = waiting.pop_first()?;
        if waiting.is_empty() {
            self.by_namespace.remove(&namespace);
        }
        self.last_served = Some(namespace);
        let (_, _, queued) = self.entries.remove(&key)?;
        Some((key, queued))
    }

    /// Takes `key` out of the line (it was deleted, or got its call another way).
    pub fn remove(&mut self, key: &str) {
        if let Some((ns, due, _)) = self.entries.remove(key)
            && let Some(waiting) = self.by_namespace.get_mut(&ns)
        {
            waiting.remove(&(due, key.to_owned()));
            if waiting.is_empty() {
                self.by_namespace.remove(&ns);
            }
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A token handed to an object that has not come for it yet is kept this long.
const GRANT_TTL: Duration = Duration::from_secs(30);

/// What [`Admission::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admit {
    /// Call now. `waited` is how long the object stood in line (zero when it did not queue).
    Go { waited: Duration },
    /// In line; the dispatcher wakes the object when its turn comes. `ahead` objects are ahead.
    Queued { ahead: usize, period: Duration },
}

#[derive(Debug)]
struct State {
    bucket: TokenBucket,
    queue: FairQueue,
    /// Tokens taken for objects whose reconcile is on its way: key → (granted at, waited).
    granted: HashMap<String, (Instant, Duration)>,
}

/// The bucket, the line and the tokens handed out, under one lock.
#[derive(Debug)]
pub struct Admission {
    state: Mutex<State>,
    queued: Notify,
}

impl Admission {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            state: Mutex::new(State {
                bucket: TokenBucket::new(limit, Instant::now()),
                queue: FairQueue::default(),
                granted: HashMap::new(),
            }),
            queued: Notify::new(),
        }
    }

    /// Whether `key` (in `namespace`, due since `due`) may call now. Nobody jumps the line: a
    /// free token goes to a newcomer only while nobody is waiting.
    pub fn admit(&self, namespace: &str, key: &str, due: Instant, now: Instant) -> Admit {
        let Ok(mut s) = self.state.lock() else {
            return Admit::Go {
                waited: Duration::ZERO,
            };
        };
        if let Some((_, waited)) = s.granted.remove(key) {
            return Admit::Go { waited };
        }
        if s.queue.is_empty() && s.bucket.take(now).is_ok() {
            return Admit::Go {
                waited: Duration::ZERO,
            };
        }
        s.queue.push(namespace, key, due, now);
        let ahead = s.queue.len().saturating_sub(1) + s.granted.len();
        let period = s.bucket.period();
        drop(s);
        self.queued.notify_one();
        Admit::Queued { ahead, period }
    }

    /// Forgets `key` (its object is gone).
    pub fn forget(&self, key: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.queue.remove(key);
            if s.granted.remove(key).is_some() {
                s.bucket.give_back();
            }
        }
    }

    /// Gives back a token handed to `key` before `since` (when its reconcile began) that the
    /// reconcile did not spend: it found what it needed without a call (another ref's list had
    /// come in while it stood in line). Kept, such a token would be lost to everyone for
    /// [`GRANT_TTL`]; with many refs in line that starved the calls that were needed.
    pub fn release_unused(&self, key: &str, since: Instant) {
        if let Ok(mut s) = self.state.lock()
            && s.granted.get(key).is_some_and(|(at, _)| *at <= since)
        {
            s.granted.remove(key);
            s.bucket.give_back();
        }
    }

    /// Forgets every key not in `live` (objects deleted or out of scope).
    pub fn retain(&self, live: &std::collections::HashSet<String>) {
        if let Ok(mut s) = self.state.lock() {
            let gone: Vec<String> = s
                .queue
                .entries
                .keys()
                .filter(|k| !live.contains(*k))
                .cloned()
                .collect();
            for key in gone {
                s.queue.remove(&key);
            }
            let before = s.granted.len();
            s.granted.retain(|k, _| live.contains(k));
            for _ in s.granted.len()..before {
                s.bucket.give_back();
            }
        }
    }

    /// Objects in line.
    pub fn waiting(&self) -> usize {
        self.state.lock().map_or(0, |s| s.queue.len())
    }

    /// One step of the dispatcher: with a token and someone in line, hands the token to the next
    /// object and returns its key; else says how long to wait (`None`: until someone queues).
    pub fn hand_out(&self, now: Instant) -> Result<String, Option<Duration>> {
        let Ok(mut s) = self.state.lock() else {
            return Err(Some(Duration::from_secs(1)));
        };
        let State {
            bucket,
            queue,
            granted,
        } = &mut *s;
        // A token handed to an object that never came (its reconcile failed before the call,
        // or the object is gone) goes back, so none is lost for good.
        let before = granted.len();
        granted.retain(|_, (at, _)| now.saturating_duration_since(*at) < GRANT_TTL);
        for _ in granted.len()..before {
            bucket.give_back();
        }
        if queue.is_empty() {
            return Err(None);
        }
        bucket.take(now).map_err(Some)?;
        match queue.pop() {
            Some((key, queued)) => {
                granted.insert(key.clone(), (now, now.saturating_duration_since(queued)));
                Ok(key)
            }
            None => {
                bucket.give_back();
                Err(None)
            }
        }
    }

    /// Waits for a token of the bucket itself: the further pages of a list that was admitted,
    /// which belong to that one observation.
    pub async fn acquire(&self) {
        loop {
            let wait = match self.state.lock() {
                Ok(mut s) => match s.bucket.take(Instant::now()) {
                    Ok(()) => return,
                    Err(wait) => wait,
                },
                Err(_) => return,
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Runs the dispatcher: each token goes to the next object in line, whose reconcile `wake`
    /// triggers (with its `namespace/name` key).
    pub async fn dispatch(&self, wake: impl Fn(&str)) {
        loop {
            match self.hand_out(Instant::now()) {
                Ok(key) => wake(&key),
                Err(Some(wait)) => tokio::time::sleep(wait).await,
                Err(None) => {
                    // A queue that fills between the check and here has notified already: a
                    // `Notify` keeps one permit.
                    self.queued.notified().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_second: f64, burst: u32) -> RateLimit {
        RateLimit { per_second, burst }
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_gives_burst_then_rate() {
        let start = Instant::now();
        let mut b = TokenBucket::new(limit(2.0, 3), start);
        assert!((0..3).all(|_| b.take(start).is_ok()));
        assert_eq!(b.take(start), Err(Duration::from_millis(500)));
        assert!(b.take(start + Duration::from_millis(500)).is_ok());
        assert!(b.take(start + Duration::from_millis(600)).is_err());
        // Saved up to the burst only.
        let later = start + Duration::from_secs(100);
        assert_eq!((0..10).filter(|_| b.take(later).is_ok()).count(), 3);
        for (rate, burst) in [(0.0, 0), (f64::NAN, 1), (-3.0, 2), (1e9, 5)] {
            assert!(
                TokenBucket::new(limit(rate, burst), start)
                    .take(start)
                    .is_ok()
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn namespaces_take_turns_and_the_most_overdue_goes_first() {
        let t = Instant::now();
        let s = |n: u64| t + Duration::from_secs(n);
        let mut q = FairQueue::default();
        for i in 0..5 {
            q.push("big", &format!("big/o{i}"), s(10 - i), t);
        }
        q.push("small", "small/x", s(20), t);
        q.push("mid", "mid/y", s(0), t);
        q.push("big", "big/o0", s(0), t);
        assert_eq!(q.len(), 7, "queuing again keeps the place");
        let order: Vec<String> = std::iter::from_fn(|| q.pop().map(|(k, _)| k)).collect();
        assert_eq!(
            order,
            [
                "big/o4", "mid/y", "small/x", "big/o3", "big/o2", "big/o1", "big/o0"
            ]
        );
        assert!(q.is_empty());
        q.push("a", "a/1", s(1), t);
        q.push("a", "a/2", s(2), t);
        q.remove("a/1");
        assert_eq!(q.pop().map(|(k, _)| k).as_deref(), Some("a/2"));
        assert_eq!(q.pop(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_crowd_does_not_starve_a_small_namespace() {
        // 2 calls/s; 100 objects of one namespace want a call every second, one object of
        // another namespace every 2 s. Drive admission and the dispatcher by hand for 200 s.
        let adm = Admission::new(limit(2.0, 2));
        let start = Instant::now();
        let mut due: HashMap<String, Instant> = (0..100)
            .map(|i| (format!("crowd/o{i:02}"), start))
            .chain([("small/x".to_owned(), start)])
            .collect();
        let mut calls: HashMap<String, Vec<Instant>> = HashMap::new();
        let step = Duration::from_millis(50);
        let mut now = start;
        while now < start + Duration::from_secs(200) {
            now += step;
            let mut woken = Vec::new();
            while let Ok(key) = adm.hand_out(now) {
                woken.push(key);
            }
            let ready: Vec<String> = due
                .iter()
                .filter(|(_, d)| **d <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for key in woken.into_iter().chain(ready) {
                let Some(d) = due.get(&key).copied() else {
                    continue;
                };
                let ns = key.split('/').next().unwrap_or_default().to_owned();
                if let Admit::Go { .. } = adm.admit(&ns, &key, d, now) {
                    calls.entry(key.clone()).or_default().push(now);
                    let interval = if ns == "small" { 2 } else { 1 };
                    due.insert(key, now + Duration::from_secs(interval));
                } else {
                    // Retried only when woken: park it far away, as the fallback requeue does.
                    due.insert(key, d.max(now) + Duration::from_secs(3600));
                }
            }
        }
        let total: usize = calls.values().map(Vec::len).sum();
        assert!(
            (398..=404).contains(&total),
            "{total} calls in 200 s at 2/s"
        );
        let small = &calls["small/x"];
        let gaps: Vec<Duration> = small.windows(2).map(|w| w[1] - w[0]).collect();
        let longest = gaps.iter().max().copied().unwrap_or_default();
        assert!(
            longest <= Duration::from_secs(4),
            "small waited {longest:?}"
        );
        let crowd: Vec<usize> = (0..100)
            .map(|i| calls.get(&format!("crowd/o{i:02}")).map_or(0, Vec::len))
            .collect();
        let (min, max) = (crowd.iter().min(), crowd.iter().max());
        assert!(
            min >= Some(&3) && max <= Some(&5),
            "crowd calls {min:?}..{max:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_for_objects_that_never_come_are_not_lost_for_long() {
        let adm = Admission::new(limit(10.0, 1));
        let t = Instant::now();
        assert!(matches!(adm.admit("a", "a/1", t, t), Admit::Go { .. }));
        assert!(matches!(
            adm.admit("a", "a/2", t, t),
            Admit::Queued { ahead: 0, .. }
        ));
        assert_eq!(adm.hand_out(t), Err(Some(Duration::from_millis(100))));
        let t1 = t + Duration::from_millis(100);
        assert_eq!(adm.hand_out(t1).as_deref(), Ok("a/2"));
        // a/2 was deleted before it came: its token goes back.
        adm.forget("a/2");
        assert!(matches!(adm.admit("b", "b/1", t1, t1), Admit::Go { .. }));
        assert_eq!(adm.waiting(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_not_spent_goes_back_at_once() {
        let adm = Admission::new(limit(1.0, 1));
        let t = Instant::now();
        assert_eq!(
            adm.admit("ns", "ns/a", t, t),
            Admit::Go {
                waited: Duration::ZERO
            }
        );
        assert!(matches!(
            adm.admit("ns", "ns/b", t, t),
            Admit::Queued { .. }
        ));
        assert!(matches!(
            adm.admit("ns", "ns/c", t, t),
            Admit::Queued { .. }
        ));
        let one = t + Duration::from_secs(1);
        assert_eq!(adm.hand_out(one).as_deref(), Ok("ns/b"));
        // b's reconcile begins after the grant and needs no call: the token is c's now.
        adm.release_unused("ns/b", one);
        assert_eq!(adm.hand_out(one).as_deref(), Ok("ns/c"));
        // A grant made after the reconcile began is for the next one: kept.
        adm.release_unused("ns/c", t);
        assert!(matches!(
            adm.admit("ns", "ns/c", one, one),
            Admit::Go { .. }
        ));
    }
}
