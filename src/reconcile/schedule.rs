//! Per-object memory that must not go into status (it would cause writes): when the next poll is
//! due and how many calls failed in a row. On tokio's clock, so tests drive it by advancing time.
//!
//! It is also the operator's timer for polls: every schedule due in the future stands in a
//! timeline, and [`Schedules::wait_due`] hands out the objects whose time came, for the caller to
//! wake. kube-runtime's own requeue queue holds a clone of the object's reference (name,
//! namespace, uid, resourceVersion) twice per object, about 0.6 KB; the timeline holds one
//! shared key.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
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

#[derive(Debug, Default)]
struct Table {
    by_key: HashMap<Arc<str>, Schedule>,
    /// Schedules due in the future, by due time.
    timeline: BTreeSet<(Instant, Arc<str>)>,
}

impl Table {
    fn remove(&mut self, key: &str) {
        if let Some((k, old)) = self.by_key.remove_entry(key) {
            self.timeline.remove(&(old.due, k));
        }
    }
}

/// Schedules by `namespace/name`.
#[derive(Debug, Default)]
pub struct Schedules {
    table: Mutex<Table>,
    /// Told when a schedule comes before every other in the timeline.
    sooner: Notify,
}

/// How many objects are past their due time, and by how much the oldest is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Overdue {
    pub objects: usize,
    pub oldest: Duration,
}

impl Schedules {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<Schedule> {
        self.lock().by_key.get(key).cloned()
    }

    /// Records (or, with `None`, forgets) `key`'s schedule. One due in the future also puts the
    /// object in the timeline; a due time already passed is for the caller to act on (it is
    /// reconciling the object, or has it requeued with a backoff).
    pub fn set(&self, key: &str, schedule: Option<Schedule>) {
        let mut table = self.lock();
        table.remove(key);
        let Some(s) = schedule else {
            return;
        };
        let key: Arc<str> = Arc::from(key);
        if s.due > Instant::now() {
            let first = table.timeline.first().is_none_or(|(at, _)| s.due < *at);
            table.timeline.insert((s.due, key.clone()));
            if first {
                self.sooner.notify_one();
            }
        }
        table.by_key.insert(key, s);
    }

    /// Forgets objects not in `live` (deleted, or out of the label selector); returns how many.
    pub fn retain(&self, live: &HashSet<String>) -> usize {
        let mut table = self.lock();
        let gone: Vec<Arc<str>> = table
            .by_key
            .keys()
            .filter(|k| !live.contains(&***k))
            .cloned()
            .collect();
        for key in &gone {
            table.remove(key);
        }
        gone.len()
    }

    /// Objects whose poll is more than `grace` late.
    pub fn overdue(&self, now: Instant, grace: Duration) -> Overdue {
        self.lock()
            .by_key
            .values()
            .filter_map(|s| {
                now.checked_duration_since(s.due)
                    .filter(|late| *late > grace)
            })
            .fold(Overdue::default(), |acc, late| Overdue {
                objects: acc.objects + 1,
                oldest: acc.oldest.max(late),
            })
    }

    /// Takes the objects due by `now` out of the timeline, and the next due time after them.
    pub fn take_due(&self, now: Instant) -> (Vec<Arc<str>>, Option<Instant>) {
        let mut table = self.lock();
        let mut due = Vec::new();
        while let Some((at, _)) = table.timeline.first() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = table.timeline.pop_first() {
                due.push(key);
            }
        }
        (due, table.timeline.first().map(|(at, _)| *at))
    }

    /// Waits until some object is due and returns those that are (each once).
    pub async fn wait_due(&self) -> Vec<Arc<str>> {
        loop {
            // Registered before looking, so a sooner schedule set meanwhile is not missed.
            let sooner = self.sooner.notified();
            let (due, next) = self.take_due(Instant::now());
            if !due.is_empty() {
                return due;
            }
            match next {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = sooner => {}
                    }
                }
                None => sooner.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(due: Instant) -> Option<Schedule> {
        Some(Schedule {
            generation: Some(1),
            due,
            failures: 0,
            secret_version: None,
        })
    }

    fn names(keys: Vec<Arc<str>>) -> Vec<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn objects_are_handed_out_when_due_once_in_due_order() {
        let s = Schedules::default();
        let now = Instant::now();
        s.set("ns/b", at(now + Duration::from_secs(20)));
        s.set("ns/a", at(now + Duration::from_secs(10)));
        s.set("ns/c", at(now + Duration::from_secs(30)));
        // Moved: only the new due time counts.
        s.set("ns/c", at(now + Duration::from_secs(15)));
        assert_eq!(names(s.wait_due().await), ["ns/a"]);
        assert_eq!(Instant::now() - now, Duration::from_secs(10));
        assert_eq!(names(s.wait_due().await), ["ns/c"]);
        assert_eq!(names(s.wait_due().await), ["ns/b"]);
        assert_eq!(Instant::now() - now, Duration::from_secs(20));
        assert_eq!(s.take_due(now + Duration::from_secs(3600)), (vec![], None));
        assert!(s.get("ns/a").is_some(), "the schedule itself stays");
    }

    #[tokio::test(start_paused = true)]
    async fn a_sooner_schedule_wakes_the_waiter_and_forgotten_ones_never_come() {
        let s = Arc::new(Schedules::default());
        let now = Instant::now();
        s.set("ns/late", at(now + Duration::from_secs(60)));
        s.set("ns/gone", at(now + Duration::from_secs(5)));
        s.set("ns/gone", None);
        s.set("ns/pruned", at(now + Duration::from_secs(6)));
        assert_eq!(s.retain(&HashSet::from(["ns/late".to_owned()])), 1);
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.wait_due().await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        s.set("ns/soon", at(Instant::now() + Duration::from_secs(2)));
        let due = waiter.await.expect("waiter");
        assert_eq!(names(due), ["ns/soon"]);
        assert_eq!(Instant::now() - now, Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_due_time_already_passed_is_not_timed() {
        let s = Schedules::default();
        s.set("ns/failed", at(Instant::now()));
        assert_eq!(
            s.take_due(Instant::now() + Duration::from_secs(1)).0.len(),
            0
        );
        assert_eq!(
            s.overdue(
                Instant::now() + Duration::from_secs(5),
                Duration::from_secs(1)
            )
            .objects,
            1
        );
    }
}
