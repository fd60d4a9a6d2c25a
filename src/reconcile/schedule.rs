//! Per-object memory that must not go into status (it would cause writes): when the next poll is
//! due and how many calls failed in a row. On tokio's clock, so tests drive it by advancing time.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::decide::Previous;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub generation: Option<i64>,
    pub due: Instant,
    pub failures: u32,
    /// After a failure with the object's Secret: that Secret's resourceVersion.
    pub secret_version: Option<String>,
}

impl Schedule {
    pub fn previous(&self, now: Instant) -> Previous {
        Previous {
            generation: self.generation,
            remaining: self.due.saturating_duration_since(now),
            failures: self.failures,
        }
    }
}

/// Schedules by `namespace/name`.
#[derive(Debug, Default)]
pub struct Schedules(Mutex<HashMap<String, Schedule>>);

/// How many objects are past their due time, and by how much the oldest is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Overdue {
    pub objects: usize,
    pub oldest: Duration,
}

impl Schedules {
    pub fn get(&self, key: &str) -> Option<Schedule> {
        self.0.lock().ok().and_then(|m| m.get(key).cloned())
    }

    pub fn set(&self, key: &str, schedule: Option<Schedule>) {
        if let Ok(mut m) = self.0.lock() {
            match schedule {
                Some(s) => {
                    m.insert(key.to_owned(), s);
                }
                None => {
                    m.remove(key);
                }
            }
        }
    }

    /// Forgets objects not in `live` (deleted, or out of the label selector); returns how many.
    pub fn retain(&self, live: &HashSet<String>) -> usize {
        self.0.lock().map_or(0, |mut m| {
            let before = m.len();
            m.retain(|k, _| live.contains(k));
            before - m.len()
        })
    }

    /// Objects whose poll is more than `grace` late.
    pub fn overdue(&self, now: Instant, grace: Duration) -> Overdue {
        let Ok(m) = self.0.lock() else {
            return Overdue::default();
        };
        m.values()
            .filter_map(|s| {
                now.checked_duration_since(s.due)
                    .filter(|late| *late > grace)
            })
            .fold(Overdue::default(), |acc, late| Overdue {
                objects: acc.objects + 1,
                oldest: acc.oldest.max(late),
            })
    }
}
