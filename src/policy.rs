//! When to poll next and how long to back off. Pure: randomness comes in as a number in [0, 1).

use std::time::Duration;

use crate::state::StateClass;

/// Poll intervals by state; all configurable from the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct PollPolicy {
    /// Lower bound for any interval, `spec.pollInterval` included.
    pub min_interval: Duration,
    /// Upper bound for any interval, `spec.pollInterval` included.
    pub max_interval: Duration,
    /// Submitted / Pending: the run is about to start, so look often.
    pub queued: Duration,
    /// Running / Cancelling.
    pub running: Duration,
    /// Running for longer than `long_running_after`: the end is rarely imminent.
    pub long_running: Duration,
    pub long_running_after: Duration,
    /// CancelFailed, unknown states and runs that were not found.
    pub slow: Duration,
    /// Relative jitter, e.g. 0.1 for ±10 %, so objects created together spread out.
    pub jitter: f64,
}

impl Default for PollPolicy {
    fn default() -> Self {
        Self {
            min_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(600),
            queued: Duration::from_secs(10),
            running: Duration::from_secs(30),
            long_running: Duration::from_secs(120),
            long_running_after: Duration::from_secs(1800),
            slow: Duration::from_secs(300),
            jitter: 0.1,
        }
    }
}

/// Backoff after a failed call, by error class.
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffPolicy {
    /// First retry delay for transient errors; doubles with each consecutive failure.
    pub base: Duration,
    /// Cap for transient and throttling backoff.
    pub max: Duration,
    /// Recheck interval for errors that need a human (credentials, permissions, bad input):
    /// RAM policy changes cannot be watched, so they are rechecked slowly.
    pub permanent: Duration,
    pub jitter: f64,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(5),
            max: Duration::from_secs(300),
            permanent: Duration::from_secs(600),
            jitter: 0.2,
        }
    }
}

/// How an error should be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryClass {
    /// Flow control: back off, honouring the service's retry-after.
    Throttled,
    /// 5xx, timeouts, transport errors: exponential backoff.
    Transient,
    /// Needs a change by a human (credentials, permissions, spec, Secret): slow recheck.
    Permanent,
    /// Waiting for something that may appear on its own soon (a Secret): brisk then slower.
    Missing,
}

impl PollPolicy {
    pub fn clamp(&self, d: Duration) -> Duration {
        d.clamp(self.min_interval, self.max_interval.max(self.min_interval))
    }

    /// The next poll delay before jitter, or `None` for a terminal run (no more polling).
    pub fn interval(
        &self,
        class: StateClass,
        running_for: Option<Duration>,
        spec_override: Option<Duration>,
    ) -> Option<Duration> {
        if class.is_terminal() {
            return None;
        }
        if let Some(d) = spec_override {
            return Some(self.clamp(d));
        }
        let base = match class {
            StateClass::Queued => self.queued,
            StateClass::Active if running_for.is_some_and(|r| r >= self.long_running_after) => {
                self.long_running
            }
            StateClass::Active => self.running,
            _ => self.slow,
        };
        Some(self.clamp(base))
    }
}

impl BackoffPolicy {
    /// Delay before the next attempt after `attempt` consecutive failures (1 = first failure).
    pub fn delay(
        &self,
        class: RetryClass,
        attempt: u32,
        retry_after: Option<Duration>,
    ) -> Duration {
        let exp = |base: Duration| {
            let shift = attempt.saturating_sub(1).min(16);
            base.saturating_mul(1u32 << shift).min(self.max)
        };
        match class {
            RetryClass::Transient => exp(self.base),
            // Never sooner than the service asks, never sooner than the exponential floor: a
            // short or zero retry-after must not let one object spend the call budget.
            RetryClass::Throttled => retry_after.filter(|r| !r.is_zero()).map_or_else(
                || exp(self.base * 2),
                |r| r.max(exp(self.base)).min(self.max),
            ),
            RetryClass::Missing => exp(self.base * 3).min(self.permanent),
            RetryClass::Permanent => self.permanent,
        }
    }
}

/// Spreads `d` by ±`fraction` using `unit` in [0, 1). Never returns zero for a non-zero input.
/// Spreads `d` upwards only, by up to `fraction`: for waits the service named, which must not
/// be cut short.
pub fn jittered_up(d: Duration, fraction: f64, unit: f64) -> Duration {
    jittered(d, fraction, 0.5 + unit.clamp(0.0, 1.0) / 2.0)
}

pub fn jittered(d: Duration, fraction: f64, unit: f64) -> Duration {
    let fraction = fraction.clamp(0.0, 1.0);
    let factor = 1.0 + fraction * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
    let out = d.mul_f64(factor.max(0.0));
    if out.is_zero() && !d.is_zero() {
        Duration::from_millis(1)
    } else {
        out
    }
}

/// Parses Go-style durations as used in `spec.pollInterval` and flags: `90s`, `1m30s`, `500ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("{text:?} is not a duration like 30s, 5m or 1h30m"));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{text:?} has a number that is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.saturating_mul(60)),
            "h" => Duration::from_secs(value.saturating_mul(3600)),
            other => {
                return Err(format!(
                    "{text:?} has unit {other:?}; use ms, s, m or h (e.g. 30s, 5m, 1h30m)"
                ));
            }
        };
        total = total.saturating_add(unit);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn interval_by_state() {
        let p = PollPolicy::default();
        let table = [
            (StateClass::Queued, None, None, Some(S(10))),
            (StateClass::Active, Some(S(60)), None, Some(S(30))),
            (StateClass::Active, Some(S(3600)), None, Some(S(120))),
            (StateClass::CancelFailed, None, None, Some(S(300))),
            (StateClass::Unknown, None, None, Some(S(300))),
            (StateClass::Succeeded, None, None, None),
            (StateClass::Failed, None, Some(S(5)), None),
            (StateClass::Cancelled, None, None, None),
            (StateClass::Active, None, Some(S(1)), Some(S(5))),
            (StateClass::Active, None, Some(S(7200)), Some(S(600))),
            (StateClass::Queued, None, Some(S(45)), Some(S(45))),
        ];
        for (class, running, over, want) in table {
            assert_eq!(
                p.interval(class, running, over),
                want,
                "{class:?} {running:?} {over:?}"
            );
        }
    }

    #[test]
    fn backoff_by_class() {
        let b = BackoffPolicy::default();
        assert_eq!(b.delay(RetryClass::Transient, 1, None), S(5));
        assert_eq!(b.delay(RetryClass::Transient, 2, None), S(10));
        assert_eq!(b.delay(RetryClass::Transient, 4, None), S(40));
        assert_eq!(b.delay(RetryClass::Transient, 40, None), S(300), "capped");
        assert_eq!(b.delay(RetryClass::Throttled, 1, Some(S(7))), S(7));
        assert_eq!(
            b.delay(RetryClass::Throttled, 1, Some(S(9999))),
            S(300),
            "retry-after capped"
        );
        assert_eq!(b.delay(RetryClass::Throttled, 1, None), S(10));
        assert_eq!(b.delay(RetryClass::Permanent, 1, None), S(600));
        assert_eq!(b.delay(RetryClass::Missing, 1, None), S(15));
        assert_eq!(b.delay(RetryClass::Missing, 10, None), S(300));
    }

    #[test]
    fn throttling_is_floored_at_the_base_and_keeps_growing() {
        let b = BackoffPolicy::default();
        // A zero retry-after counts as none; a tiny one must not let one object spend the
        // whole call budget.
        assert_eq!(
            b.delay(RetryClass::Throttled, 1, Some(Duration::ZERO)),
            S(10)
        );
        assert_eq!(
            b.delay(RetryClass::Throttled, 1, Some(Duration::from_millis(1))),
            S(5)
        );
        // Consecutive throttles grow even when the service keeps naming a short wait.
        let grown: Vec<Duration> = (1..=4)
            .map(|n| b.delay(RetryClass::Throttled, n, Some(S(1))))
            .collect();
        assert_eq!(grown, vec![S(5), S(10), S(20), S(40)]);
        // A long retry-after wins over the exponential floor.
        assert_eq!(b.delay(RetryClass::Throttled, 2, Some(S(60))), S(60));
    }

    #[test]
    fn upward_jitter_never_goes_below_the_input() {
        for unit in [0.0, 0.5, 0.999_999] {
            let d = jittered_up(S(100), 0.2, unit);
            assert!(d >= S(100) && d <= S(120), "{d:?} for {unit}");
        }
        assert_eq!(jittered_up(S(100), 0.2, 0.0), S(100));
    }

    #[test]
    fn jitter_stays_in_bounds() {
        for unit in [0.0, 0.25, 0.5, 0.999_999] {
            let d = jittered(S(100), 0.1, unit);
            assert!(d >= S(90) && d <= S(110), "{d:?} for {unit}");
        }
        assert_eq!(jittered(S(100), 0.1, 0.5), S(100));
        assert_eq!(jittered(S(100), 0.0, 0.9), S(100));
        assert!(!jittered(Duration::from_nanos(1), 1.0, 0.0).is_zero());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(S(30)));
        assert_eq!(parse_duration("1m30s"), Ok(S(90)));
        assert_eq!(parse_duration("1h"), Ok(S(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "30", "s", "5d", "1.5s", "-3s", "30 s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }
}
