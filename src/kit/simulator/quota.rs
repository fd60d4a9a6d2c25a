//! The account's API quota: calls per second the service answers before `Throttling.User`. Pure:
//! the clock is an argument.

use jiff::Timestamp;

/// A token bucket holding one second of calls.
#[derive(Debug, Clone, PartialEq)]
pub struct Quota {
    per_second: f64,
    tokens: f64,
    last: Option<Timestamp>,
}

impl Quota {
    /// `None` for a rate that is not a positive number.
    pub fn new(per_second: f64) -> Option<Self> {
        (per_second.is_finite() && per_second > 0.0).then_some(Self {
            per_second,
            tokens: per_second.max(1.0),
            last: None,
        })
    }

    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// Whether a call at `now` is within the quota (spending it if so).
    pub fn take(&mut self, now: Timestamp) -> bool {
        let capacity = self.per_second.max(1.0);
        // Arrivals handled out of order (a later one got the lock first) refill nothing.
        if let Some(last) = self.last {
            let elapsed = now.duration_since(last).as_secs_f64().max(0.0);
            self.tokens = (self.tokens + elapsed * self.per_second).min(capacity);
        }
        self.last = Some(self.last.map_or(now, |last| last.max(now)));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_the_rate_and_throttles_beyond() {
        let t = |ms: i64| Timestamp::from_millisecond(1_700_000_000_000 + ms).expect("ts");
        let mut q = Quota::new(20.0).expect("valid");
        let burst = (0..30).filter(|_| q.take(t(0))).count();
        assert_eq!(burst, 20, "one second's worth at once");
        // Over the next 10 s at 100 attempts/s, 20/s get through.
        let through = (1..=1000).filter(|i| q.take(t(i * 10))).count();
        assert_eq!(through, 200);
        assert!(Quota::new(0.0).is_none() && Quota::new(f64::NAN).is_none());
    }
}
