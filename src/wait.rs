//! `sparkjobrun-operator wait`: wait for refs the way a pipeline step needs, with an exit code
//! that says how they ended (`kubectl wait` can wait for one condition only, so a failed run
//! looks like a timeout). It watches the refs through the API server and never calls the service.
//!
//! [`verdict`] is pure; [`wait`] is the watch around it.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::watcher;

use crate::crd::{SparkJobRunRef, SparkJobRunRefStatus};
use crate::reconcile::decide::status_of_run;

/// Exit codes, for scripts.
pub const SUCCEEDED: u8 = 0;
pub const FAILED: u8 = 1;
pub const TIMED_OUT: u8 = 2;
pub const UNREADABLE: u8 = 3;

/// What to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum WaitFor {
    /// Until every ref succeeded; ends at once (exit 1) when one fails.
    #[default]
    Succeeded,
    /// Until every ref finished, either way; exit 1 if any failed.
    Finished,
}

/// How one ref stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Not seen yet, or seen without a status of its run.
    Pending,
    Running(String),
    Succeeded,
    /// Failed or Cancelled: the state, the reason and the driver's stderr log.
    Failed {
        state: String,
        reason: Option<String>,
        stderr_log: Option<String>,
    },
    /// Not found, deleted, or not readable.
    Missing(String),
}

impl Standing {
    /// From a ref as stored: only a status of the run its spec names counts.
    pub fn of(obj: &SparkJobRunRef) -> Self {
        let status = status_of_run(
            obj.status.as_ref(),
            &obj.spec.workspace_id,
            &obj.spec.job_run_id,
        );
        match status {
            None => Self::Pending,
            Some(s) => Self::of_status(s),
        }
    }

    fn of_status(s: &SparkJobRunRefStatus) -> Self {
        let state = s.state.clone().unwrap_or_default();
        match state.as_str() {
            "" => Self::Pending,
            "Success" => Self::Succeeded,
            "Failed" | "Cancelled" => Self::Failed {
                state,
                reason: s.state_change_reason.as_ref().map(|r| {
                    [r.code.as_deref(), r.message.as_deref()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(": ")
                }),
                stderr_log: s.log.as_ref().and_then(|l| l.driver_std_error.clone()),
            },
            _ => Self::Running(state),
        }
    }

    fn line(&self, name: &str) -> String {
        match self {
            Self::Pending => format!("{name}: no state yet"),
            Self::Running(state) => format!("{name}: {state}"),
            Self::Succeeded => format!("{name}: Success"),
            Self::Failed {
                state,
                reason,
                stderr_log,
            } => {
                let mut line = format!("{name}: {state}");
                if let Some(r) = reason.as_deref().filter(|r| !r.is_empty()) {
                    line.push_str(&format!(" ({r})"));
                }
                if let Some(log) = stderr_log {
                    line.push_str(&format!("; driver stderr: {log}"));
                }
                line
            }
            Self::Missing(why) => format!("{name}: {why}"),
        }
    }
}

/// The exit code once the wait is over, `None` while it goes on. A missing ref ends it at once
/// (3); with `Succeeded` so does a failed one (1).
pub fn verdict(refs: &BTreeMap<String, Standing>, wait_for: WaitFor) -> Option<u8> {
    if refs.values().any(|s| matches!(s, Standing::Missing(_))) {
        return Some(UNREADABLE);
    }
    let failed = refs.values().any(|s| matches!(s, Standing::Failed { .. }));
    if failed && wait_for == WaitFor::Succeeded {
        return Some(FAILED);
    }
    let finished = refs
        .values()
        .all(|s| matches!(s, Standing::Succeeded | Standing::Failed { .. }));
    match (finished, failed) {
        (false, _) => None,
        (true, true) => Some(FAILED),
        (true, false) => Some(SUCCEEDED),
    }
}

/// One line per ref, in name order.
pub fn report(refs: &BTreeMap<String, Standing>) -> String {
    refs.iter()
        .map(|(name, s)| s.line(name))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Watches `names` in `api` until [`verdict`] says the wait is over or `timeout` passes; returns
/// the exit code and the report.
pub async fn wait(
    api: Api<SparkJobRunRef>,
    names: &[String],
    wait_for: WaitFor,
    timeout: Duration,
) -> (u8, String) {
    let mut refs: BTreeMap<String, Standing> = names
        .iter()
        .map(|n| (n.clone(), Standing::Pending))
        .collect();
    for name in names {
        let standing = match api.get_opt(name).await {
            Ok(Some(obj)) => Standing::of(&obj),
            Ok(None) => Standing::Missing("not found".into()),
            Err(e) => Standing::Missing(format!("cannot be read: {e}")),
        };
        refs.insert(name.clone(), standing);
    }
    if let Some(code) = verdict(&refs, wait_for) {
        return (code, report(&refs));
    }
    let streams = names.iter().map(|name| {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        watcher(api.clone(), config)
            .map(move |e| (name.clone(), e))
            .boxed()
    });
    let mut events = futures::stream::select_all(streams);
    // Per ref: whether the (re)list in progress has shown it.
    let mut listed: BTreeMap<String, bool> = BTreeMap::new();
    let watched = async {
        while let Some((name, event)) = events.next().await {
            let ended = refs
                .get(&name)
                .is_some_and(|s| matches!(s, Standing::Succeeded | Standing::Failed { .. }));
            let standing = match event {
                Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                    listed.insert(name.clone(), true);
                    Standing::of(&obj)
                }
                Ok(watcher::Event::Init) => {
                    listed.insert(name.clone(), false);
                    continue;
                }
                // A (re)list without the ref: it was deleted while the watch was away.
                Ok(watcher::Event::InitDone) if listed.get(&name) == Some(&false) && !ended => {
                    Standing::Missing("was deleted".into())
                }
                // Deleting a ref whose run ended (by its TTL, say) does not change how it ended.
                Ok(watcher::Event::Delete(_)) if ended => continue,
                Ok(watcher::Event::Delete(_)) => Standing::Missing("was deleted".into()),
                Ok(watcher::Event::InitDone) => continue,
                Err(watcher::Error::InitialListFailed(kube::Error::Api(e)))
                | Err(watcher::Error::WatchStartFailed(kube::Error::Api(e)))
                    if e.code == 403 =>
                {
                    Standing::Missing(format!("cannot be watched: {}", e.message))
                }
                // Other watch errors are retried by the watcher; the timeout bounds the wait.
                Err(_) => continue,
            };
            refs.insert(name, standing);
            if let Some(code) = verdict(&refs, wait_for) {
                return code;
            }
        }
        UNREADABLE
    };
    let code = tokio::time::timeout(timeout, watched)
        .await
        .unwrap_or(TIMED_OUT);
    let mut text = report(&refs);
    if code == TIMED_OUT {
        text.push_str(&format!(
            "\ntimed out after {}s",
            timeout.as_secs_f64().round()
        ));
    }
    (code, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(entries: &[(&str, Standing)]) -> BTreeMap<String, Standing> {
        entries
            .iter()
            .map(|(n, s)| ((*n).to_owned(), s.clone()))
            .collect()
    }

    fn failed() -> Standing {
        Standing::Failed {
            state: "Failed".into(),
            reason: Some("ERR-100000: connection refused".into()),
            stderr_log: Some("oss://logs/stderr".into()),
        }
    }

    #[test]
    fn verdict_table() {
        use Standing::*;
        let running = || Running("Running".into());
        let cases = [
            (
                vec![("a", Succeeded), ("b", Succeeded)],
                WaitFor::Succeeded,
                Some(0),
            ),
            (
                vec![("a", Succeeded), ("b", running())],
                WaitFor::Succeeded,
                None,
            ),
            (
                vec![("a", failed()), ("b", running())],
                WaitFor::Succeeded,
                Some(1),
            ),
            (
                vec![("a", failed()), ("b", running())],
                WaitFor::Finished,
                None,
            ),
            (
                vec![("a", failed()), ("b", Succeeded)],
                WaitFor::Finished,
                Some(1),
            ),
            (
                vec![("a", Succeeded), ("b", Succeeded)],
                WaitFor::Finished,
                Some(0),
            ),
            (vec![("a", Pending)], WaitFor::Finished, None),
            (
                vec![("a", Missing("not found".into())), ("b", Succeeded)],
                WaitFor::Finished,
                Some(3),
            ),
            (
                vec![("a", failed()), ("b", Missing("was deleted".into()))],
                WaitFor::Succeeded,
                Some(3),
            ),
        ];
        for (entries, wait_for, want) in cases {
            assert_eq!(
                verdict(&refs(&entries), wait_for),
                want,
                "{entries:?} {wait_for:?}"
            );
        }
    }

    #[test]
    fn the_report_names_the_reason_and_the_driver_log_of_a_failure() {
        let text = report(&refs(&[
            ("nightly", failed()),
            ("a-ok", Standing::Succeeded),
        ]));
        assert_eq!(
            text,
            "a-ok: Success\nnightly: Failed (ERR-100000: connection refused); driver stderr: oss://logs/stderr"
        );
    }

    #[test]
    fn a_status_of_another_run_is_pending() {
        let mut obj = SparkJobRunRef::new(
            "r",
            crate::crd::SparkJobRunRefSpec {
                workspace_id: "w-1".into(),
                job_run_id: "jr-new".into(),
                ..Default::default()
            },
        );
        obj.status = Some(SparkJobRunRefStatus {
            state: Some("Success".into()),
            job_run_id: Some("jr-old".into()),
            ..Default::default()
        });
        assert_eq!(Standing::of(&obj), Standing::Pending);
        if let Some(s) = obj.status.as_mut() {
            s.job_run_id = Some("jr-new".into());
        }
        assert_eq!(Standing::of(&obj), Standing::Succeeded);
    }
}
