//! Cases that run the operator binary as a separate process: logs, metrics, health, scoping by
//! label selector, graceful shutdown and leader election.

use std::time::{Duration, Instant};

use sparkjobrun_operator::crd::SparkJobRunRefSpec;
use sparkjobrun_operator::kit::simulator::{Account, RunScript};

use crate::support::{
    ACCESS_KEY_ID, Env, OperatorProcess, WS, condition, ensure, phase, secret_ref, spec_with,
    unique, wait_for,
};

fn spec(job_run_id: &str, secret: Option<&str>) -> SparkJobRunRefSpec {
    spec_with(job_run_id, secret.map(secret_ref))
}

async fn wait_exit(
    p: &mut OperatorProcess,
    within: Duration,
) -> Result<std::process::ExitStatus, String> {
    match tokio::time::timeout(within, p.child.wait()).await {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(e)) => Err(format!("waiting for the operator: {e}")),
        Err(_) => Err(format!("operator did not exit within {within:?}")),
    }
}

/// A trace-level run with Secret (STS) credentials: no secret value in the log, every line about
/// the object names it, /metrics and /readyz answer, objects outside the selector are left
/// alone, and SIGTERM ends the process cleanly.
pub async fn process_logs_metrics_and_scope(env: &'static Env) -> Result<(), String> {
    let ns = env.namespace("process").await?;
    let key_id = unique("STS.e2eKey");
    let key_secret = unique("sts-secret-value-");
    let token = unique("sts-token-value-");
    let mut account = Account::new(key_id.as_str(), key_secret.as_str());
    account.security_token = Some(token.as_str().into());
    env.sim.add_account(account);
    env.put_secret(
        &ns,
        "sts",
        &[
            ("accessKeyId", &key_id),
            ("accessKeySecret", &key_secret),
            ("securityToken", &token),
        ],
    )
    .await?;
    let jr = unique("jr-proc");
    env.sim
        .add_run(RunScript::new(WS, &jr).holding("Running"))
        .map_err(|e| e.to_string())?;

    let mut op = env.spawn_operator(
        "logs",
        &["--label-selector", "e2e-process=logs"],
        &[("RUST_LOG", "trace")],
    )?;
    env.create_labeled(
        &ns,
        "traced",
        spec(&jr, Some("sts")),
        &[("e2e-process", "logs")],
    )
    .await?;
    // Nobody's object: neither the in-process operator nor this one may touch it.
    env.create_labeled(
        &ns,
        "orphan",
        spec(&jr, Some("sts")),
        &[("e2e-process", "nobody")],
    )
    .await?;

    wait_for(
        "the process operator to report Running",
        Duration::from_secs(40),
        || async {
            let s = env.status(&ns, "traced").await?;
            if s.state.as_deref() == Some("Running") {
                Ok(Some(()))
            } else {
                Err(format!("{s:?}"))
            }
        },
    )
    .await?;
    let (code, body) = wait_for("/readyz to answer 200", Duration::from_secs(20), || async {
        let (code, body) = op.http_get("/readyz").await?;
        if code == 200 {
            Ok(Some((code, body)))
        } else {
            Err(format!("{code} {body}"))
        }
    })
    .await?;
    ensure(code == 200 && body.contains("ok"), || {
        format!("/readyz {code} {body}")
    })?;
    let (code, _) = op.http_get("/livez").await?;
    ensure(code == 200, || format!("/livez {code}"))?;
    // The objects gauge reads the watch cache, which may trail the status write by a moment.
    let metrics = wait_for(
        "/metrics to count the object",
        Duration::from_secs(10),
        || async {
            let (code, metrics) = op.http_get("/metrics").await?;
            if code == 200 && metrics.contains("sparkjobrun_objects{state=\"Active\"} 1") {
                Ok(Some(metrics))
            } else {
                Err(format!("/metrics {code}"))
            }
        },
    )
    .await?;
    for needle in [
        "sparkjobrun_getjobrun_calls_total{outcome=\"ok\"}",
        "sparkjobrun_objects{state=\"Active\"} 1",
        "sparkjobrun_reconcile_duration_seconds_bucket",
        "sparkjobrun_status_writes_total",
        "sparkjobrun_leader 0",
    ] {
        ensure(metrics.contains(needle), || {
            format!("/metrics lacks {needle}:\n{metrics}")
        })?;
    }
    ensure(
        !metrics.contains("traced") && !metrics.contains(&ns),
        || "an object name became a metric label".into(),
    )?;
    let orphan = env.status(&ns, "orphan").await?;
    ensure(
        orphan.state.is_none() && orphan.conditions.is_empty(),
        || format!("object outside every selector was reconciled: {orphan:?}"),
    )?;

    op.signal(libc::SIGTERM);
    let status = wait_exit(&mut op, Duration::from_secs(15)).await?;
    ensure(status.success(), || {
        format!(
            "operator exited with {status} after SIGTERM\n{}",
            op.log_text()
        )
    })?;

    let log = op.log_text();
    ensure(log.lines().count() > 50, || {
        format!("trace log is suspiciously short:\n{log}")
    })?;
    for (what, value) in [
        ("AccessKey secret", key_secret.as_str()),
        ("STS token", token.as_str()),
        ("operator secret", env.secret.as_str()),
    ] {
        ensure(!log.contains(value), || {
            format!("the {what} appears in the trace log {}", op.log.display())
        })?;
    }
    let written: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("status written"))
        .collect();
    ensure(!written.is_empty(), || {
        "no 'status written' line in the log".into()
    })?;
    ensure(
        written
            .iter()
            .all(|l| l.contains(&ns) && l.contains("traced")),
        || format!("log lines without namespace/name: {written:?}"),
    )?;
    let _ = ACCESS_KEY_ID;
    Ok(())
}

/// Two replicas with leader election: one leads (and alone is ready), the leader is killed with
/// SIGKILL, the other takes over within the lease duration and finishes the job; every
/// transition is recorded once.
pub async fn leader_failover(env: &'static Env) -> Result<(), String> {
    let ns = env.namespace("leader").await?;
    let args = |id: &str| crate::support::elected_replica_args("leader", &ns, "4s", "1s", id);
    let creds = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", crate::support::ACCESS_KEY_ID),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", env.secret.as_str()),
        ("RUST_LOG", "info"),
    ];
    let a_args = args("replica-a");
    let b_args = args("replica-b");
    let a = env.spawn_operator(
        "leader-a",
        &a_args.iter().map(String::as_str).collect::<Vec<_>>(),
        &creds,
    )?;
    let b = env.spawn_operator(
        "leader-b",
        &b_args.iter().map(String::as_str).collect::<Vec<_>>(),
        &creds,
    )?;
    let mut replicas = [a, b];

    let leader = wait_for("one replica to lead", Duration::from_secs(30), || async {
        let ra = replicas[0]
            .http_get("/leaderz")
            .await
            .map(|r| r.0)
            .unwrap_or(0);
        let rb = replicas[1]
            .http_get("/leaderz")
            .await
            .map(|r| r.0)
            .unwrap_or(0);
        match (ra, rb) {
            (200, 200) => Err("both replicas claim to lead".into()),
            (200, _) => Ok(Some(0usize)),
            (_, 200) => Ok(Some(1usize)),
            other => Err(format!("readyz {other:?}")),
        }
    })
    .await?;
    let follower = 1 - leader;
    let (code, body) = replicas[follower].http_get("/leaderz").await?;
    ensure(code == 503 && body.contains("standby"), || {
        format!("follower /leaderz {code} {body}")
    })?;
    // A standby counts as available (rollouts and disruption budgets need it) and says so.
    let (code, body) = replicas[follower].http_get("/readyz").await?;
    ensure(code == 200 && body.contains("standby"), || {
        format!("follower /readyz {code} {body}")
    })?;
    wait_for(
        "the leader to be ready",
        Duration::from_secs(15),
        || async {
            let (code, body) = replicas[leader].http_get("/readyz").await?;
            if code == 200 && body.contains("leader") {
                Ok(Some(()))
            } else {
                Err(format!("leader /readyz {code} {body}"))
            }
        },
    )
    .await?;

    let jr = unique("jr-lead");
    let phases = vec![
        phase("Submitted", Some(5.0), None),
        phase("Running", Some(10.0), None),
        phase("Success", None, None),
    ];
    env.sim
        .add_run(RunScript::new(WS, &jr).with_phases(phases))
        .map_err(|e| e.to_string())?;
    env.create_labeled(&ns, "ha", spec(&jr, None), &[("e2e-process", "leader")])
        .await?;
    wait_for(
        "Running under the first leader",
        Duration::from_secs(30),
        || async {
            let s = env.status(&ns, "ha").await?;
            if s.state.as_deref() == Some("Running") {
                Ok(Some(()))
            } else {
                Err(format!("{:?}", s.state))
            }
        },
    )
    .await?;

    replicas[leader].signal(libc::SIGKILL);
    let killed = Instant::now();
    let _ = wait_exit(&mut replicas[leader], Duration::from_secs(5)).await;
    wait_for(
        "the follower to take over",
        Duration::from_secs(20),
        || async {
            let (code, _) = replicas[follower].http_get("/leaderz").await?;
            if code == 200 {
                Ok(Some(()))
            } else {
                Err(format!("follower readyz {code}"))
            }
        },
    )
    .await?;
    let takeover = killed.elapsed();
    println!(
        "    leader failover took {:.1}s (lease duration 4s)",
        takeover.as_secs_f64()
    );
    // Lease duration plus one retry period of the lease manager and the readiness poll.
    ensure(takeover <= Duration::from_secs(8), || {
        format!("takeover took {takeover:?}")
    })?;

    let s = wait_for(
        "Success under the new leader",
        Duration::from_secs(40),
        || async {
            let s = env.status(&ns, "ha").await?;
            if s.state.as_deref() == Some("Success") {
                Ok(Some(s))
            } else {
                Err(format!("{:?}", s.state))
            }
        },
    )
    .await?;
    ensure(
        condition(&s, "Succeeded").map(|c| c.0) == Some("True"),
        || format!("{:?}", s.conditions),
    )?;
    let events = env.events_once(&ns, "ha", "Succeeded").await?;
    let reasons: Vec<String> = events.iter().filter_map(|e| e.reason.clone()).collect();
    ensure(reasons == ["Submitted", "Running", "Succeeded"], || {
        format!("events after failover: {reasons:?}")
    })?;
    ensure(events.iter().all(|e| e.series.is_none()), || {
        "an event was repeated".into()
    })?;

    replicas[follower].signal(libc::SIGTERM);
    let status = wait_exit(&mut replicas[follower], Duration::from_secs(15)).await?;
    ensure(status.success(), || {
        format!(
            "new leader exited with {status} after SIGTERM:\n{}",
            replicas[follower].log_text()
        )
    })
}

/// One process-wide rate limit bounds calls to the service however many objects exist.
pub async fn rate_limit_bounds_calls(env: &'static Env) -> Result<(), String> {
    let ns = env.namespace("ratelimit").await?;
    let creds = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", crate::support::ACCESS_KEY_ID),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", env.secret.as_str()),
    ];
    let mut op = env.spawn_operator(
        "ratelimit",
        &[
            "--label-selector",
            "e2e-process=ratelimit",
            "--rate-limit",
            "2",
            "--rate-burst",
            "2",
            "--log-format",
            "json",
        ],
        &creds,
    )?;
    let runs: Vec<String> = (0..12).map(|_| unique("jr-rate")).collect();
    for (i, jr) in runs.iter().enumerate() {
        env.sim
            .add_run(RunScript::new(WS, jr).holding("Running"))
            .map_err(|e| e.to_string())?;
        env.create_labeled(
            &ns,
            &format!("r{i}"),
            spec(jr, None),
            &[("e2e-process", "ratelimit")],
        )
        .await?;
    }
    // Let the start-up burst pass, then measure a window.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let count = || runs.iter().map(|jr| env.sim.calls_for(jr)).sum::<u64>();
    let before = count();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let calls = count() - before;
    let window = started.elapsed().as_secs_f64();
    println!("    rate limit 2/s: {calls} calls in {window:.1}s for 12 objects polled every 1s");
    // 12 objects at a 1 s poll interval would make ~72 calls unthrottled.
    let bound = (2.0 * window).ceil() as u64 + 2 + 1;
    ensure(calls <= bound, || {
        format!("{calls} calls in {window:.1}s exceeds the 2/s limit (bound {bound})")
    })?;
    ensure(calls >= 6, || {
        format!("only {calls} calls: the operator is not polling")
    })?;
    let (_, metrics) = op.http_get("/metrics").await?;
    let waits = metrics
        .lines()
        .find(|l| l.starts_with("sparkjobrun_rate_limiter_waits_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    ensure(waits > 0.0, || {
        format!("rate limiter waits not counted:\n{metrics}")
    })?;
    op.signal(libc::SIGTERM);
    let status = wait_exit(&mut op, Duration::from_secs(15)).await?;
    ensure(status.success(), || format!("exit {status}"))?;
    // JSON logs: one object per line, and lines about an object carry its namespace and name.
    let log = op.log_text();
    let written: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.contains("status written"))
        .map(|l| serde_json::from_str(l).map_err(|e| format!("not JSON ({e}): {l}")))
        .collect::<Result<_, _>>()?;
    ensure(!written.is_empty(), || "no 'status written' line".into())?;
    ensure(
        written.iter().all(|v| {
            v["span"]["namespace"] == serde_json::Value::String(ns.clone())
                && v["span"]["name"].is_string()
        }),
        || format!("JSON lines lack span namespace/name: {:?}", written.first()),
    )
}

/// `--namespace a,b` watches exactly those namespaces (one watch each, one shared rate limit).
pub async fn namespace_scoping(env: &'static Env) -> Result<(), String> {
    let watched = [
        env.namespace("scope-a").await?,
        env.namespace("scope-b").await?,
    ];
    let ignored = env.namespace("scope-c").await?;
    let creds = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", crate::support::ACCESS_KEY_ID),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", env.secret.as_str()),
    ];
    let namespaces = format!("--namespace={},{}", watched[0], watched[1]);
    let mut op = env.spawn_operator(
        "nsscope",
        &["--label-selector", "e2e-process=nsscope", &namespaces],
        &creds,
    )?;
    for ns in watched.iter().chain(std::iter::once(&ignored)) {
        let jr = unique("jr-scope");
        env.sim
            .add_run(RunScript::new(WS, &jr).holding("Running"))
            .map_err(|e| e.to_string())?;
        env.create_labeled(ns, "scoped", spec(&jr, None), &[("e2e-process", "nsscope")])
            .await?;
    }
    for ns in &watched {
        wait_for(
            &format!("{ns}/scoped to be reconciled"),
            Duration::from_secs(30),
            || async {
                let s = env.status(ns, "scoped").await?;
                if s.state.as_deref() == Some("Running") {
                    Ok(Some(()))
                } else {
                    Err(format!("{:?}", s.state))
                }
            },
        )
        .await?;
    }
    // The in-scope objects were reconciled; a moment more for the ignored one to show it was not.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = env.status(&ignored, "scoped").await?;
    ensure(s.state.is_none() && s.conditions.is_empty(), || {
        format!("an object outside --namespace was reconciled: {s:?}")
    })?;
    op.signal(libc::SIGTERM);
    let status = wait_exit(&mut op, Duration::from_secs(15)).await?;
    ensure(status.success(), || format!("exit {status}"))
}

/// The metric names a Prometheus exposition offers, from its `# TYPE` lines (counters as
/// `name_total`, histograms as `_bucket`, `_sum` and `_count`), so families without samples yet
/// count too.
fn exported_names(metrics: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                names.insert(format!("{}_total", name.trim_end_matches("_total")));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// Every `sparkjobrun_*` name in `text`.
fn queried_names(text: &str) -> std::collections::BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut out = std::collections::BTreeSet::new();
    let mut i = 0;
    while let Some(pos) = text[i..].find("sparkjobrun_") {
        let start = i + pos;
        let end = bytes[start..]
            .iter()
            .position(|b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_'))
            .map_or(bytes.len(), |n| start + n);
        out.insert(text[start..end].to_owned());
        i = end;
    }
    out
}

/// Issue 12.2 and 12.3: every metric the chart's dashboard and alert rules query is one a real
/// operator process exports on /metrics.
pub async fn dashboard_and_alerts_query_exported_metrics(env: &'static Env) -> Result<(), String> {
    let op = env.spawn_operator("scrape", &["--label-selector", "e2e-process=scrape"], &[])?;
    let metrics = wait_for("/metrics to answer", Duration::from_secs(30), || async {
        match op.http_get("/metrics").await {
            Ok((200, body)) => Ok(Some(body)),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    let exported = exported_names(&metrics);
    let chart =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/sparkjobrun-operator");
    let mut failures = Vec::new();
    for (file, at_least) in [
        ("files/dashboard.json", 12),
        ("templates/prometheusrule.yaml", 4),
    ] {
        let text = std::fs::read_to_string(chart.join(file)).map_err(|e| e.to_string())?;
        let queried = queried_names(&text);
        ensure(queried.len() >= at_least, || {
            format!("{file}: only {queried:?}")
        })?;
        for name in queried.difference(&exported) {
            failures.push(format!(
                "{file} queries {name}, which /metrics does not export"
            ));
        }
    }
    ensure(failures.is_empty(), || {
        format!("{}\nexported: {exported:?}", failures.join("\n"))
    })
}
