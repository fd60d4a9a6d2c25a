//! Shared observation: refs that read runs with the same identity, region, endpoint and
//! workspace form a group. What one call learns about a run serves every ref of that run (in
//! either mode), and in batched mode one ListJobRuns of the group's active runs (pages of 100)
//! replaces a GetJobRun per ref. After a call, refs whose status the answer changes are woken at
//! once and take it from here; for the others it counts as their poll (their next one is
//! scheduled), so nothing is kept for them.
//!
//! A ref still gets its own GetJobRun when it is seen for the first time (list items carry no
//! `jobDriver` or `configurationOverrides`) and when its run no longer shows among the active
//! runs (its final, complete answer). Group membership only ever pools refs that would have
//! used the very same credentials, so no ref learns anything its own identity could not read.
//!
//! The choice of call and the freshness rule are pure ([`strategy`], [`Entry::fresh_for`]); the
//! lock is never held across a call.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::client::GetJobRunRequest;
use crate::crd::SparkJobRunRef;
use crate::wire::JobRun;

/// The states ListJobRuns is asked for: every state after which a run can still change.
pub const ACTIVE_STATES: [&str; 5] = [
    "Submitted",
    "Pending",
    "Running",
    "Cancelling",
    "CancelFailed",
];
/// Groups smaller than this keep per-run calls in `auto` mode: a list costs at least a call.
pub const MIN_BATCH: usize = 3;
/// Pages one list may take; a workspace with more active runs than this covers is observed per
/// run (its list would cost more than it saves).
pub const MAX_PAGES: usize = 50;

/// How long a group whose list did not pay off, or was refused, is observed per run before
/// a list is tried again.
pub const PER_RUN_FOR: Duration = Duration::from_secs(600);

/// `--observe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// ListJobRuns per group once it has at least three active refs (and it pays off).
    #[default]
    Auto,
    /// ListJobRuns per group whatever its size.
    Batched,
    /// GetJobRun per run (refs of one run still share it).
    PerRun,
}

/// Refs with equal keys could have read each other's runs: same credentials, same place.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupKey {
    /// `operator`, or the namespace with the Secret and role the spec names.
    pub identity: String,
    pub region: String,
    pub endpoint: String,
    pub workspace: String,
}

impl GroupKey {
    pub fn of(obj: &SparkJobRunRef, request: &GetJobRunRequest) -> Self {
        let identity = match &obj.spec.credentials {
            None => "operator".to_owned(),
            Some(c) => format!(
                "{}\u{0}{}\u{0}{}",
                obj.metadata.namespace.as_deref().unwrap_or_default(),
                c.secret_ref.as_ref().map_or("", |s| s.name.as_str()),
                c.role_arn.as_deref().unwrap_or_default()
            ),
        };
        Self {
            identity,
            region: request.region_id.clone(),
            endpoint: request.endpoint.to_string(),
            workspace: request.workspace_id.clone(),
        }
    }
}

/// What is known about one run. Boxed: a group's table of entries keeps its capacity after
/// the entries are taken, so it should hold pointers, not whole answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub run: Box<JobRun>,
    pub at: Instant,
}

impl Entry {
    /// Good enough instead of a call for a ref that polls every `interval`.
    pub fn fresh_for(&self, interval: Duration, now: Instant) -> bool {
        now.saturating_duration_since(self.at) < interval
    }
}

/// How a due ref is observed.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// A fresh observation of its run exists: no call.
    Use(Box<JobRun>),
    /// Its own GetJobRun.
    Get,
    /// One ListJobRuns of the group, then its item (or a GetJobRun if it is not among them).
    List,
    /// Another ref of the group is listing right now: look again shortly.
    Wait(Duration),
}

/// What the group state says about one due ref.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Situation {
    pub mode: Mode,
    /// Distinct active runs in the group.
    pub runs: usize,
    /// The ref has never been observed (its status shows no state).
    pub first: bool,
    /// Its run was missing from the last complete list: ended or gone.
    pub missing: bool,
    pub listing: bool,
    /// Lists do not pay off or are refused for now: the last one needed more than
    /// [`MAX_PAGES`] pages, or the identity may not call ListJobRuns.
    pub per_run: bool,
    /// A failed list keeps the group from listing again until then.
    pub retry_in: Option<Duration>,
}

pub fn strategy(
    entry: Option<&Entry>,
    s: &Situation,
    interval: Duration,
    now: Instant,
) -> Strategy {
    if let Some(e) = entry.filter(|e| e.fresh_for(interval, now))
        && !s.missing
    {
        return Strategy::Use(e.run.clone());
    }
    let batch = match s.mode {
        Mode::PerRun => false,
        Mode::Batched => true,
        Mode::Auto => s.runs >= MIN_BATCH,
    };
    if !batch || s.first || s.missing || s.per_run {
        return Strategy::Get;
    }
    if s.listing {
        return Strategy::Wait(Duration::from_secs(1));
    }
    match s.retry_in {
        Some(wait) if !wait.is_zero() => Strategy::Wait(wait),
        _ => Strategy::List,
    }
}

/// Shared by the tables below: one allocation per ref and per group, however often named.
type Key = Arc<str>;

#[derive(Debug, Default)]
struct Group {
    /// Active runs and the refs that follow each (nearly always one).
    members: HashMap<Key, Vec<Key>>,
    entries: HashMap<Key, Entry>,
    /// Runs the last complete list did not show.
    missing: HashSet<Key>,
    /// Runs the list under way has shown so far.
    shown: HashSet<Key>,
    listing: bool,
    /// Until when the group is observed per run (see [`Situation::per_run`]).
    per_run_until: Option<Instant>,
    failures: u32,
    retry_at: Option<Instant>,
    /// A ref whose list stands in the rate limit's line, and until when: the others of the
    /// group wait for its answer instead of joining the line themselves.
    list_queued: Option<(Key, Instant)>,
}

/// What the process remembers of one ref that follows an active run.
#[derive(Debug)]
struct Member {
    group: Arc<GroupKey>,
    run: Key,
    /// When what it last took was observed: an entry serves it only if it is newer, so a ref
    /// never takes its own last answer for a fresh one.
    taken: Option<Instant>,
    /// Woken because an observation changes it.
    news: bool,
}

#[derive(Debug, Default)]
struct Inner {
    groups: HashMap<Arc<GroupKey>, Group>,
    refs: HashMap<Key, Member>,
}

/// The shared observations of one process.
#[derive(Debug, Default)]
pub struct Observations {
    inner: Mutex<Inner>,
}

/// Runs a page of a list showed that some ref follows, with those refs.
pub type Followed = Vec<(JobRun, Vec<String>)>;

fn owned(keys: &[Key]) -> impl Iterator<Item = String> + '_ {
    keys.iter().map(|k| k.to_string())
}

impl Observations {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `key` follows `job_run_id` in `group` (moving it from any earlier run).
    pub fn join(&self, key: &str, group: &GroupKey, job_run_id: &str) {
        let mut inner = self.lock();
        if inner
            .refs
            .get(key)
            .is_some_and(|m| *m.group == *group && &*m.run == job_run_id)
        {
            return;
        }
        if let Some((k, m)) = inner.refs.remove_entry(key) {
            remove_member(&mut inner, &k, &m);
        }
        let Inner { groups, refs } = &mut *inner;
        let group = match groups.get_key_value(group) {
            Some((g, _)) => g.clone(),
            None => Arc::new(group.clone()),
        };
        let g = groups.entry(group.clone()).or_default();
        let run: Key = match g.members.get_key_value(job_run_id) {
            Some((jr, _)) => jr.clone(),
            None => Arc::from(job_run_id),
        };
        let key: Key = Arc::from(key);
        g.members.entry(run.clone()).or_default().push(key.clone());
        refs.insert(
            key,
            Member {
                group,
                run,
                taken: None,
                news: false,
            },
        );
    }

    /// `key` no longer follows an active run (it ended, or the ref is gone).
    pub fn leave(&self, key: &str) {
        let mut inner = self.lock();
        if let Some((k, m)) = inner.refs.remove_entry(key) {
            remove_member(&mut inner, &k, &m);
        }
    }

    /// Forgets refs not in `live`.
    pub fn retain(&self, live: &HashSet<String>) {
        let gone: Vec<Key> = self
            .lock()
            .refs
            .keys()
            .filter(|k| !live.contains(&***k))
            .cloned()
            .collect();
        for key in gone {
            self.leave(&key);
        }
    }

    /// The situation of due ref `key`, with the entry of its run if it has not taken it yet.
    pub fn situation(
        &self,
        key: &str,
        group: &GroupKey,
        job_run_id: &str,
        mode: Mode,
        first: bool,
        now: Instant,
    ) -> (Option<Entry>, Situation) {
        let inner = self.lock();
        let taken = inner.refs.get(key).and_then(|m| m.taken);
        let g = inner.groups.get(group);
        let situation = Situation {
            mode,
            runs: g.map_or(0, |g| g.members.len()),
            first,
            missing: g.is_some_and(|g| g.missing.contains(job_run_id)),
            listing: g.is_some_and(|g| g.listing),
            per_run: g.is_some_and(|g| g.per_run_until.is_some_and(|t| t > now)),
            retry_in: g
                .and_then(|g| {
                    let queued = g
                        .list_queued
                        .as_ref()
                        .filter(|(by, until)| &**by != key && *until > now)
                        .map(|(_, until)| *until);
                    g.retry_at.max(queued)
                })
                .map(|at| at.saturating_duration_since(now)),
        };
        let entry = g
            .and_then(|g| g.entries.get(job_run_id))
            .filter(|e| taken.is_none_or(|t| e.at > t))
            .cloned();
        (entry, situation)
    }

    /// Claims the group's list; `false` when another ref holds it.
    pub fn start_list(&self, group: &GroupKey) -> bool {
        let mut inner = self.lock();
        let Inner { groups, .. } = &mut *inner;
        let g = match groups.get_mut(group) {
            Some(g) => g,
            None => groups.entry(Arc::new(group.clone())).or_default(),
        };
        !std::mem::replace(&mut g.listing, true)
    }

    /// The list `key` claimed found no free token: it stands in line (woken in turn, by `until`
    /// at the latest) and the group's other refs wait for it rather than queue as well.
    pub fn queue_list(&self, group: &GroupKey, key: &str, until: Instant) {
        let mut inner = self.lock();
        if let Some(g) = inner.groups.get_mut(group) {
            g.listing = false;
            g.list_queued = Some((Arc::from(key), until));
        }
    }

    /// One page of the group's list: the runs on it that some ref follows, with those refs.
    /// Handed on page by page, so a list of many pages is never held whole.
    pub fn deliver(&self, group: &GroupKey, items: Vec<JobRun>) -> Followed {
        let mut inner = self.lock();
        let Some(g) = inner.groups.get_mut(group) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for run in items {
            // Only runs some ref follows are handed on: the list may show many others.
            let Some((jr, keys)) = run
                .job_run_id
                .as_deref()
                .and_then(|jr| g.members.get_key_value(jr))
            else {
                continue;
            };
            g.shown.insert(jr.clone());
            out.push((run, owned(keys).collect()));
        }
        out
    }

    /// Ends a list whose pages were all delivered (every page, when `complete`): returns the
    /// refs whose run it did not show, which are no longer active and fetch their final answer.
    pub fn finish_list(&self, group: &GroupKey, complete: bool, now: Instant) -> Vec<String> {
        let mut inner = self.lock();
        let Inner { groups, refs } = &mut *inner;
        let Some(g) = groups.get_mut(group) else {
            return Vec::new();
        };
        g.listing = false;
        g.list_queued = None;
        g.failures = 0;
        g.retry_at = None;
        g.per_run_until = (!complete).then_some(now + PER_RUN_FOR);
        let shown = std::mem::take(&mut g.shown);
        let mut gone = Vec::new();
        if complete {
            let before = std::mem::take(&mut g.missing);
            g.missing = g
                .members
                .keys()
                .filter(|jr| !shown.contains(*jr))
                .cloned()
                .collect();
            // Only runs this list is the first to miss: one still missing (a run the service
            // does not know) is left to its ref's own schedule, not woken every round.
            for jr in g.missing.difference(&before) {
                g.entries.remove(jr);
                if let Some(keys) = g.members.get(jr) {
                    for key in keys {
                        if let Some(m) = refs.get_mut(key) {
                            m.news = true;
                        }
                        gone.push(key.to_string());
                    }
                }
            }
        }
        gone
    }

    /// A failed list: the group waits `backoff(failures)` before the next one. A `refused`
    /// list (no permission for ListJobRuns, a request the service rejects) turns the group to
    /// per-run calls for [`PER_RUN_FOR`] instead, so refs are never left waiting on it.
    pub fn fail_list(
        &self,
        group: &GroupKey,
        refused: bool,
        backoff: impl Fn(u32) -> Duration,
        now: Instant,
    ) {
        let mut inner = self.lock();
        if let Some(g) = inner.groups.get_mut(group) {
            g.listing = false;
            g.list_queued = None;
            g.shown.clear();
            if refused {
                g.per_run_until = Some(now + PER_RUN_FOR);
                return;
            }
            g.failures = g.failures.saturating_add(1);
            g.retry_at = Some(now + backoff(g.failures));
        }
    }

    /// A GetJobRun of `jr` answered (so it is not missing any more): the other refs of that run,
    /// to hand the answer to.
    pub fn followers(&self, group: &GroupKey, jr: &str, by: &str) -> Vec<String> {
        let mut inner = self.lock();
        let Some(g) = inner.groups.get_mut(group) else {
            return Vec::new();
        };
        g.missing.remove(jr);
        g.members
            .get(jr)
            .map(|keys| owned(keys).filter(|k| k != by).collect())
            .unwrap_or_default()
    }

    /// Keeps what was observed of `jr` at `at` for the refs it changes, until each took it.
    pub fn offer(&self, group: &GroupKey, jr: &str, run: JobRun, at: Instant) {
        let mut inner = self.lock();
        if let Some(g) = inner.groups.get_mut(group)
            && let Some((jr, _)) = g.members.get_key_value(jr)
        {
            let jr = jr.clone();
            g.entries.insert(
                jr,
                Entry {
                    run: Box::new(run),
                    at,
                },
            );
        }
    }

    /// Records that `key` took what was observed at `at`: its news, if any, is handled. Once
    /// every ref of the run took the entry, it is dropped: nobody would take it again, so memory
    /// holds only observations still to be handed out.
    pub fn took(&self, key: &str, at: Instant) {
        let mut inner = self.lock();
        let Inner { groups, refs } = &mut *inner;
        let Some(m) = refs.get_mut(key) else {
            return;
        };
        m.taken = Some(at);
        m.news = false;
        let (group, jr) = (m.group.clone(), m.run.clone());
        if let Some(g) = groups.get_mut(&*group)
            && let Some(entry) = g.entries.get(&jr)
            && g.members.get(&jr).is_none_or(|keys| {
                keys.iter().all(|k| {
                    refs.get(k)
                        .and_then(|m| m.taken)
                        .is_some_and(|t| t >= entry.at)
                })
            })
        {
            g.entries.remove(&jr);
            // After a round is handed out the table is mostly empty: give the room back.
            if g.entries.capacity() > 64 && g.entries.len() * 4 < g.entries.capacity() {
                g.entries.shrink_to_fit();
            }
        }
    }

    /// Marks `key` as having news (an observation that changes it): its next reconcile looks.
    pub fn mark(&self, key: &str) {
        if let Some(m) = self.lock().refs.get_mut(key) {
            m.news = true;
        }
    }

    /// Forgets `key`'s news: an observation was attempted and its outcome recorded.
    pub fn clear_news(&self, key: &str) {
        if let Some(m) = self.lock().refs.get_mut(key) {
            m.news = false;
        }
    }

    /// Whether `key` has news. Kept until an observation succeeds ([`Observations::took`]): a
    /// reconcile that found no free token must not lose it for the one the token brings.
    pub fn has_news(&self, key: &str) -> bool {
        self.lock().refs.get(key).is_some_and(|m| m.news)
    }

    /// Observations kept for `group`'s refs to take.
    pub fn entries(&self, group: &GroupKey) -> usize {
        self.lock().groups.get(group).map_or(0, |g| g.entries.len())
    }

    /// Refs followed and groups, for metrics and tests.
    pub fn sizes(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.refs.len(), inner.groups.len())
    }
}

fn remove_member(inner: &mut Inner, key: &str, m: &Member) {
    let Some(g) = inner.groups.get_mut(&*m.group) else {
        return;
    };
    if let Some(keys) = g.members.get_mut(&m.run) {
        keys.retain(|k| &**k != key);
        if keys.is_empty() {
            g.members.remove(&m.run);
            g.entries.remove(&m.run);
            g.missing.remove(&m.run);
        }
    }
    if g.members.is_empty() && !g.listing {
        inner.groups.remove(&*m.group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(jr: &str, state: &str) -> JobRun {
        JobRun {
            job_run_id: Some(jr.into()),
            state: Some(state.into()),
            ..JobRun::default()
        }
    }

    fn situation(mode: Mode, runs: usize) -> Situation {
        Situation {
            mode,
            runs,
            first: false,
            missing: false,
            listing: false,
            per_run: false,
            retry_in: None,
        }
    }

    #[test]
    fn strategy_table() {
        let now = Instant::now();
        let i = Duration::from_secs(30);
        let fresh = Entry {
            run: Box::new(run("jr-1", "Running")),
            at: now,
        };
        let s = situation(Mode::Auto, 10);
        assert_eq!(
            strategy(Some(&fresh), &s, i, now),
            Strategy::Use(Box::new(run("jr-1", "Running")))
        );
        let later = now + i;
        assert_eq!(
            strategy(Some(&fresh), &s, i, later),
            Strategy::List,
            "stale"
        );
        assert_eq!(
            strategy(None, &situation(Mode::Auto, 2), i, now),
            Strategy::Get
        );
        assert_eq!(
            strategy(None, &situation(Mode::Batched, 1), i, now),
            Strategy::List
        );
        assert_eq!(
            strategy(None, &situation(Mode::PerRun, 100), i, now),
            Strategy::Get
        );
        assert_eq!(
            strategy(None, &Situation { first: true, ..s }, i, now),
            Strategy::Get,
            "first sight needs the full answer"
        );
        assert_eq!(
            strategy(Some(&fresh), &Situation { missing: true, ..s }, i, now),
            Strategy::Get,
            "ended: the final answer"
        );
        assert_eq!(
            strategy(None, &Situation { per_run: true, ..s }, i, now),
            Strategy::Get
        );
        assert_eq!(
            strategy(None, &Situation { listing: true, ..s }, i, now),
            Strategy::Wait(Duration::from_secs(1))
        );
        let wait = Duration::from_secs(7);
        assert_eq!(
            strategy(
                None,
                &Situation {
                    retry_in: Some(wait),
                    ..s
                },
                i,
                now
            ),
            Strategy::Wait(wait)
        );
    }

    fn group() -> GroupKey {
        GroupKey {
            identity: "operator".into(),
            region: "cn-hangzhou".into(),
            endpoint: "https://x".into(),
            workspace: "w-1".into(),
        }
    }

    #[test]
    fn a_list_serves_followers_and_finds_the_ended() {
        let obs = Observations::default();
        let g = group();
        for (key, jr) in [
            ("ns/a", "jr-1"),
            ("ns/b", "jr-1"),
            ("ns/c", "jr-2"),
            ("ns/d", "jr-3"),
        ] {
            obs.join(key, &g, jr);
        }
        let now = Instant::now();
        let (_, s) = obs.situation("ns/x", &g, "jr-1", Mode::Auto, false, now);
        assert_eq!(s.runs, 3);
        assert!(obs.start_list(&g));
        assert!(!obs.start_list(&g), "one list at a time");
        let mut followers: Vec<(String, String)> = [
            vec![run("jr-1", "Running"), run("jr-other", "Running")],
            vec![run("jr-2", "Pending")],
        ]
        .into_iter()
        .flat_map(|page| obs.deliver(&g, page))
        .flat_map(|(run, keys)| {
            let jr = run.job_run_id.clone().unwrap_or_default();
            keys.into_iter().map(move |k| (k, jr.clone()))
        })
        .collect();
        followers.sort();
        let pairs: Vec<(&str, &str)> = followers
            .iter()
            .map(|(k, jr)| (k.as_str(), jr.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [("ns/a", "jr-1"), ("ns/b", "jr-1"), ("ns/c", "jr-2")],
            "untracked runs are not handed on"
        );
        assert_eq!(obs.finish_list(&g, true, now), ["ns/d"]);
        assert!(
            obs.has_news("ns/d") && obs.has_news("ns/d"),
            "kept until handled"
        );
        obs.took("ns/d", now);
        assert!(!obs.has_news("ns/d"));
        let (entry, s) = obs.situation("ns/x", &g, "jr-3", Mode::Auto, false, now);
        assert!(entry.is_none() && s.missing);
        // The final answer of jr-3 clears it; the ref then leaves.
        assert!(obs.followers(&g, "jr-3", "ns/d").is_empty());
        assert!(
            !obs.situation("ns/x", &g, "jr-3", Mode::Auto, false, now)
                .1
                .missing
        );
        obs.leave("ns/d");
        assert_eq!(
            obs.situation("ns/x", &g, "jr-1", Mode::Auto, false, now)
                .1
                .runs,
            2
        );
        // Nothing is kept unless offered: a list keeps no answers by itself.
        assert!(
            obs.situation("ns/a", &g, "jr-1", Mode::Auto, false, now)
                .0
                .is_none()
        );
        // An entry offered for the refs it changes serves each once, and goes once all took it.
        obs.offer(&g, "jr-1", run("jr-1", "Running"), now);
        obs.offer(&g, "jr-other", run("jr-other", "Running"), now);
        assert!(
            obs.situation("ns/x", &g, "jr-other", Mode::Auto, false, now)
                .0
                .is_none(),
            "runs nobody follows are not kept"
        );
        let (entry, _) = obs.situation("ns/a", &g, "jr-1", Mode::Auto, false, now);
        let at = entry.expect("offered").at;
        obs.took("ns/a", at);
        assert!(
            obs.situation("ns/a", &g, "jr-1", Mode::Auto, false, now)
                .0
                .is_none()
        );
        assert!(
            obs.situation("ns/b", &g, "jr-1", Mode::Auto, false, now)
                .0
                .is_some()
        );
        obs.took("ns/b", at);
        assert_eq!(obs.entries(&g), 0, "taken by every ref of the run");
        // A GetJobRun of a shared run names the other refs of that run.
        assert_eq!(obs.followers(&g, "jr-1", "ns/a"), ["ns/b"]);
        obs.retain(&HashSet::new());
        assert_eq!(obs.sizes(), (0, 0));
    }

    /// A run the service does not know (a mistyped id, a run deleted long ago) stays missing
    /// from every list. Its ref is woken once, by the list that first misses it; after that its
    /// own schedule (a slow recheck) decides, not every round of the group's list.
    #[test]
    fn a_run_still_missing_is_not_woken_again_by_each_list() {
        let obs = Observations::default();
        let g = group();
        obs.join("ns/a", &g, "jr-1");
        obs.join("ns/ghost", &g, "jr-unknown");
        let now = Instant::now();
        let round = |shown: &[&str]| {
            assert!(obs.start_list(&g));
            let page = shown.iter().map(|jr| run(jr, "Running")).collect();
            let _ = obs.deliver(&g, page);
            obs.finish_list(&g, true, now)
        };
        assert_eq!(round(&["jr-1"]), ["ns/ghost"], "first missed: woken");
        obs.clear_news("ns/ghost");
        assert!(round(&["jr-1"]).is_empty(), "still missing: not again");
        assert!(!obs.has_news("ns/ghost"));
        let (_, s) = obs.situation("ns/ghost", &g, "jr-unknown", Mode::Auto, false, now);
        assert!(s.missing, "its own polls still ask for it by GetJobRun");
        // Shown again, then missing again: that is news once more.
        assert!(round(&["jr-1", "jr-unknown"]).is_empty());
        assert_eq!(round(&["jr-1"]), ["ns/ghost"]);
    }

    #[test]
    fn a_list_in_line_holds_the_others_back() {
        let obs = Observations::default();
        let g = group();
        for (key, jr) in [("ns/a", "jr-1"), ("ns/b", "jr-2"), ("ns/c", "jr-3")] {
            obs.join(key, &g, jr);
        }
        let now = Instant::now();
        let i = Duration::from_secs(30);
        assert!(obs.start_list(&g));
        obs.queue_list(&g, "ns/a", now + Duration::from_secs(6));
        let (_, b) = obs.situation("ns/b", &g, "jr-2", Mode::Batched, false, now);
        assert_eq!(
            strategy(None, &b, i, now),
            Strategy::Wait(Duration::from_secs(6)),
            "b waits for a's list instead of queuing"
        );
        let (_, a) = obs.situation("ns/a", &g, "jr-1", Mode::Batched, false, now);
        assert_eq!(
            strategy(None, &a, i, now),
            Strategy::List,
            "a lists in its turn"
        );
        let (_, missing) = obs.situation("ns/c", &g, "jr-3", Mode::Batched, true, now);
        assert_eq!(
            strategy(None, &missing, i, now),
            Strategy::Get,
            "a first look does not wait for lists"
        );
        let late = now + Duration::from_secs(7);
        let (_, b) = obs.situation("ns/b", &g, "jr-2", Mode::Batched, false, late);
        assert_eq!(strategy(None, &b, i, late), Strategy::List, "a never came");
        assert!(obs.start_list(&g));
        obs.deliver(&g, vec![run("jr-1", "Running")]);
        assert!(
            obs.finish_list(&g, false, now).is_empty(),
            "incomplete: nobody is gone"
        );
        let (_, b) = obs.situation("ns/b", &g, "jr-2", Mode::Batched, false, now);
        assert_eq!(b.retry_in, None, "a finished list frees the group");
    }

    #[test]
    fn a_failed_list_backs_the_group_off() {
        let obs = Observations::default();
        let g = group();
        obs.join("ns/a", &g, "jr-1");
        let now = Instant::now();
        assert!(obs.start_list(&g));
        obs.fail_list(&g, false, |n| Duration::from_secs(5 * u64::from(n)), now);
        let (_, s) = obs.situation("ns/x", &g, "jr-1", Mode::Batched, false, now);
        assert_eq!(s.retry_in, Some(Duration::from_secs(5)));
        assert!(!s.listing);
        assert!(obs.start_list(&g));
        obs.fail_list(&g, false, |n| Duration::from_secs(5 * u64::from(n)), now);
        let (_, s) = obs.situation("ns/x", &g, "jr-1", Mode::Batched, false, now);
        assert_eq!(s.retry_in, Some(Duration::from_secs(10)));
        // Refused (e.g. Forbidden.RAM for ListJobRuns): per-run calls, nobody waits.
        assert!(obs.start_list(&g));
        obs.fail_list(&g, true, |_| Duration::from_secs(600), now);
        let (_, s) = obs.situation("ns/x", &g, "jr-1", Mode::Batched, false, now);
        assert!(s.per_run);
        assert_eq!(
            strategy(None, &s, Duration::from_secs(30), now),
            Strategy::Get
        );
        let later = now + PER_RUN_FOR;
        assert!(
            !obs.situation("ns/x", &g, "jr-1", Mode::Batched, false, later)
                .1
                .per_run
        );
    }
}
