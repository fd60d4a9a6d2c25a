//! Cases for pipelines and GitOps (issue 11): refresh on request and the `wait` command.

use std::time::Duration;

use sparkjobrun_operator::kit::simulator::RunScript;

use crate::support::{Env, WS, ensure, spec_with, unique, wait_for};

const T: Duration = Duration::from_secs(60);

/// `kubectl annotate --overwrite ... emrspark.io/refresh-requested-at=V`, the documented way.
async fn request_refresh(env: &Env, ns: &str, name: &str, value: &str) -> Result<(), String> {
    let annotation = format!("emrspark.io/refresh-requested-at={value}");
    let args = [
        "annotate",
        "--overwrite",
        "-n",
        ns,
        "sparkjobrun",
        name,
        annotation.as_str(),
    ];
    let (ok, _, errs) = env.kubectl(&args, None, false).await?;
    ensure(ok, || format!("kubectl annotate: {errs}"))
}

async fn wait_handled(env: &Env, ns: &str, name: &str, value: &str) -> Result<(), String> {
    wait_for(
        &format!("{ns}/{name} to handle refresh {value}"),
        T,
        || async {
            let s = env.status(ns, name).await?;
            match s.last_handled_refresh_at.as_deref() {
                Some(v) if v == value => Ok(Some(())),
                other => Err(format!("lastHandledRefreshAt {other:?}")),
            }
        },
    )
    .await
}

/// 11.1: an ended run is looked at again exactly once per new annotation value, and the value is
/// recorded in status.lastHandledRefreshAt; the same value again costs nothing.
pub async fn refresh_on_request(env: &'static Env) -> Result<(), String> {
    let ns = env.namespace("refresh").await?;
    let jr = unique("jr-refresh");
    env.sim
        .add_run(RunScript::new(WS, &jr).holding("Success"))
        .map_err(|e| e.to_string())?;
    env.create(&ns, "done", spec_with(&jr, None)).await?;
    wait_for("the run to end", T, || async {
        let s = env.status(&ns, "done").await?;
        Ok((s.terminal == Some(true)).then_some(()))
    })
    .await?;
    let ended = env.sim.calls_for(&jr);
    request_refresh(env, &ns, "done", "2026-12-03T10:00:00Z").await?;
    wait_handled(env, &ns, "done", "2026-12-03T10:00:00Z").await?;
    let after_first = env.sim.calls_for(&jr);
    // The same value again changes nothing on the object, so nothing happens.
    request_refresh(env, &ns, "done", "2026-12-03T10:00:00Z").await?;
    request_refresh(env, &ns, "done", "second").await?;
    wait_handled(env, &ns, "done", "second").await?;
    let after_second = env.sim.calls_for(&jr);
    println!(
        "e2e-count refresh calls_when_ended={ended} after_first={after_first} after_second={after_second}"
    );
    ensure(
        after_first == ended + 1 && after_second == ended + 2,
        || {
            format!(
                "calls: ended {ended}, after the first refresh {after_first}, after the second {after_second}"
            )
        },
    )
}
