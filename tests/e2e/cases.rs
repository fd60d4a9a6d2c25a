//! The end-to-end cases. Each creates its own namespace and job run ids.

use std::collections::BTreeMap;
use std::time::Duration;

use sparkjobrun_operator::crd::{SparkJobRunRefSpec, SparkJobRunRefStatus};
use sparkjobrun_operator::kit::simulator::{Fault, FaultKind, Phase, RunScript};

use crate::support::{
    ACCESS_KEY_ID, Env, WS, condition, ensure, phase, secret_ref, spec_with, unique, wait_for,
};

fn spec(job_run_id: &str) -> SparkJobRunRefSpec {
    spec_with(job_run_id, None)
}

fn run_script(job_run_id: &str, phases: Vec<Phase>) -> RunScript {
    RunScript::new(WS, job_run_id).with_phases(phases)
}

fn held(job_run_id: &str, state: &str) -> RunScript {
    RunScript::new(WS, job_run_id).holding(state)
}

const T: Duration = Duration::from_secs(30);

/// The outcome conditions for what is known, written out by hand from the README's conditions
/// table (not computed by the code under test). `None` = job run not found.
fn expected(state: Option<&str>) -> BTreeMap<String, String> {
    let row: &[(&str, &str)] = match state {
        None => &[
            ("Ready", "False"),
            ("Stalled", "True"),
            ("Succeeded", "Unknown"),
        ],
        Some("Success") => &[
            ("Ready", "True"),
            ("Succeeded", "True"),
            ("Failed", "False"),
            ("Finished", "True"),
        ],
        Some("Failed" | "Cancelled") => &[
            ("Ready", "False"),
            ("Stalled", "True"),
            ("Succeeded", "False"),
            ("Failed", "True"),
            ("Finished", "True"),
        ],
        Some(_) => &[
            ("Ready", "False"),
            ("Reconciling", "True"),
            ("Succeeded", "Unknown"),
            ("Failed", "False"),
            ("Finished", "False"),
        ],
    };
    row.iter()
        .map(|(t, s)| ((*t).to_owned(), (*s).to_owned()))
        .collect()
}

fn outcome_of(s: &SparkJobRunRefStatus) -> BTreeMap<String, String> {
    s.conditions
        .iter()
        .filter(|c| c.type_ != "Synced")
        .map(|c| (c.type_.clone(), c.status.clone()))
        .collect()
}

pub(crate) async fn wait_state(
    env: &Env,
    ns: &str,
    name: &str,
    state: &str,
) -> Result<SparkJobRunRefStatus, String> {
    wait_for(&format!("{ns}/{name} to reach {state}"), T, || async {
        let s = env.status(ns, name).await?;
        if s.state.as_deref() == Some(state) {
            Ok(Some(s))
        } else {
            Err(format!(
                "state {:?}, conditions {:?}",
                s.state, s.conditions
            ))
        }
    })
    .await
}

async fn wait_synced(
    env: &Env,
    ns: &str,
    name: &str,
    status: &str,
    reason: &str,
) -> Result<SparkJobRunRefStatus, String> {
    wait_for(
        &format!("{ns}/{name} Synced={status}/{reason}"),
        T,
        || async {
            let s = env.status(ns, name).await?;
            match condition(&s, "Synced") {
                Some((st, r, _)) if st == status && r == reason => Ok(Some(s)),
                other => Err(format!("Synced is {other:?}")),
            }
        },
    )
    .await
}

pub async fn crd_columns_and_names(env: &'static Env) -> Result<(), String> {
    let ns = env.namespace("columns").await?;
    let jr = unique("jr-cols");
    env.sim
        .add_run(held(&jr, "Running"))
        .map_err(|e| e.to_string())?;
    env.create(&ns, "cols", spec(&jr)).await?;
    wait_state(env, &ns, "cols", "Running").await?;

    let (ok, out, errs) = env
        .kubectl(&["get", "sparkjobruns", "-n", &ns], None, false)
        .await?;
    ensure(ok, || format!("kubectl get failed: {errs}"))?;
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    ensure(
        header
            == [
                "NAME",
                "STATE",
                "REASON",
                "JOBRUN",
                "SUBMITTED",
                "ENDED",
                "AGE",
            ],
        || format!("columns: {header:?}\n{out}"),
    )?;
    let row: Vec<&str> = out
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    ensure(
        row.first() == Some(&"cols")
            && row.get(1) == Some(&"Running")
            && row.contains(&jr.as_str()),
        || format!("row: {row:?}"),
    )?;

    let (ok, out, errs) = env
        .kubectl(
            &["get", "sparkjobruns", "-n", &ns, "-o", "wide"],
            None,
            false,
        )
        .await?;
    ensure(ok, || format!("kubectl get -o wide failed: {errs}"))?;
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    ensure(
        header.ends_with(&["WORKSPACE", "REGION", "CUHOURS", "WEBUI"]),
        || format!("wide columns: {header:?}"),
    )?;
    ensure(
        out.contains("w-e2e0000000001") && out.contains("cn-hangzhou"),
        || format!("wide row: {out}"),
    )?;

    for alias in ["sjr", "sparkjobrun", "spark"] {
        let (ok, out, errs) = env
            .kubectl(&["get", alias, "-n", &ns, "-o", "name"], None, false)
            .await?;
        ensure(
            ok && out.contains("sparkjobrunref.emrspark.io/cols"),
            || format!("kubectl get {alias}: {out} {errs}"),
        )?;
    }
    Ok(())
}

pub async fn invalid_specs_are_refused(env: &'static Env) -> Result<(), String> {
    let ns = env.namespace("invalid").await?;
    let doc = |name: &str, spec: &str| {
        format!(
            "apiVersion: emrspark.io/v1alpha1\nkind: SparkJobRunRef\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{spec}"
        )
    };
    let ok_ids = "  workspaceId: w-abc\n  jobRunId: jr-abc\n";
    let too_long = format!("w-{}", "a".repeat(70));
    let cases: Vec<(String, &str)> = vec![
        (
            doc(
                "bad-a",
                "  workspaceId: x-123\n  jobRunId: jr-abc\n  regionId: cn-hangzhou\n",
            ),
            "spec.workspaceId",
        ),
        (
            doc(
                "bad-b",
                "  workspaceId: w-abc\n  jobRunId: jr_bad!\n  regionId: cn-hangzhou\n",
            ),
            "spec.jobRunId",
        ),
        (
            doc("bad-c", "  jobRunId: jr-abc\n"),
            "spec.workspaceId: Required value",
        ),
        (
            doc("bad-d", "  workspaceId: w-abc\n"),
            "spec.jobRunId: Required value",
        ),
        (
            doc(
                "bad-e",
                &format!("  workspaceId: {too_long}\n  jobRunId: jr-abc\n"),
            ),
            "spec.workspaceId: Too long",
        ),
        (
            doc("bad-f", &format!("{ok_ids}  regionId: CN_HANGZHOU\n")),
            "spec.regionId",
        ),
        (
            doc(
                "bad-g",
                &format!(
                    "{ok_ids}  endpoint: http://emr-serverless-spark.cn-hangzhou.aliyuncs.com\n"
                ),
            ),
            "spec.endpoint",
        ),
        (
            doc(
                "bad-h",
                &format!("{ok_ids}  endpoint: https://collector.example.com\n"),
            ),
            "spec.endpoint",
        ),
        (
            doc("bad-i", &format!("{ok_ids}  pollInterval: soon\n")),
            "spec.pollInterval",
        ),
        (
            doc("bad-j", &format!("{ok_ids}  pollInterval: 0s\n")),
            "pollInterval must be between 1s and 24h",
        ),
        (
            doc("bad-k", &format!("{ok_ids}  pollInterval: 48h\n")),
            "pollInterval must be between 1s and 24h",
        ),
        (
            doc(
                "bad-l",
                &format!("{ok_ids}  credentials:\n    secretRef:\n      name: Bad_Name\n"),
            ),
            "spec.credentials.secretRef.name",
        ),
        (
            doc(
                "bad-m",
                &format!("{ok_ids}  credentials:\n    secretRef: {{}}\n"),
            ),
            "spec.credentials.secretRef.name: Required value",
        ),
        (
            doc("bad-n", &format!("{ok_ids}  color: blue\n")),
            "unknown field \"spec.color\"",
        ),
        (
            doc("bad-o", &format!("{ok_ids}  credentials: {{}}\n")),
            "credentials needs secretRef or roleArn",
        ),
    ];
    let mut cases = cases;
    let host = "https://emr-serverless-spark.cn-hangzhou.aliyuncs.com";
    for (i, port) in [":0", ":065", ":65536", ":99999"].iter().enumerate() {
        cases.push((
            doc(
                &format!("bad-port-{i}"),
                &format!("{ok_ids}  endpoint: {host}{port}\n"),
            ),
            "spec.endpoint",
        ));
    }
    // Hosts under aliyuncs.com that are not the service (another product, a bucket), and a
    // service host of a region other than the object's.
    for (i, host) in [
        "https://sts.cn-hangzhou.aliyuncs.com",
        "https://my-bucket.oss-cn-hangzhou.aliyuncs.com",
        "https://emr-serverless-spark.cn-hangzhou.aliyuncs.com.evil.io",
    ]
    .iter()
    .enumerate()
    {
        cases.push((
            doc(
                &format!("bad-host-{i}"),
                &format!("{ok_ids}  endpoint: {host}\n"),
            ),
            "spec.endpoint",
        ));
    }
    cases.push((
        doc(
            "bad-host-region",
            &format!("{ok_ids}  regionId: cn-hangzhou\n  endpoint: https://emr-serverless-spark.cn-shanghai.aliyuncs.com\n"),
        ),
        "endpoint must be a service host of regionId",
    ));
    let long_role = format!("acs:ram::1234567890123456:role/{}", "r".repeat(65));
    cases.push((
        doc(
            "bad-role",
            &format!("{ok_ids}  credentials:\n    roleArn: {long_role}\n"),
        ),
        "spec.credentials.roleArn",
    ));
    let mut failures = Vec::new();
    for (yaml, needle) in &cases {
        let (ok, out, errs) = env
            .kubectl(&["apply", "-f", "-"], Some(yaml), false)
            .await?;
        if ok || !errs.contains(needle) {
            failures.push(format!(
                "expected refusal naming {needle:?}; ok={ok} out={out} err={errs}"
            ));
        }
    }
    // The service's own hosts are admitted, with and without a region (a server-side dry run, so
    // no object is stored for the operator to dial).
    for (i, extra) in [
        "  regionId: cn-hangzhou\n  endpoint: https://emr-serverless-spark-vpc.cn-hangzhou.aliyuncs.com:443/\n",
        "  endpoint: https://emr-serverless-spark.ap-southeast-1.aliyuncs.com\n",
    ]
    .iter()
    .enumerate()
    {
        let (ok, _, errs) = env
            .kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&doc(&format!("good-host-{i}"), &format!("{ok_ids}{extra}"))), false)
            .await?;
        if !ok {
            failures.push(format!("service host refused: {extra:?}: {errs}"));
        }
    }
    // Immutable identity.
    let valid = doc(
        "immutable",
        "  workspaceId: w-abc\n  jobRunId: jr-abc\n  regionId: cn-hangzhou\n",
    );
    let (ok, _, errs) = env
        .kubectl(&["apply", "-f", "-"], Some(&valid), false)
        .await?;
    ensure(ok, || format!("valid object refused: {errs}"))?;
    let changes = [
        (
            "  workspaceId: w-other\n  jobRunId: jr-abc\n  regionId: cn-hangzhou\n",
            "workspaceId is immutable",
        ),
        (
            "  workspaceId: w-abc\n  jobRunId: jr-other\n  regionId: cn-hangzhou\n",
            "jobRunId is immutable",
        ),
        (
            "  workspaceId: w-abc\n  jobRunId: jr-abc\n  regionId: cn-beijing\n",
            "regionId is immutable",
        ),
        (
            "  workspaceId: w-abc\n  jobRunId: jr-abc\n",
            "regionId is immutable",
        ),
    ];
    for (s, needle) in changes {
        let (ok, out, errs) = env
            .kubectl(&["apply", "-f", "-"], Some(&doc("immutable", s)), false)
            .await?;
        if ok || !errs.contains(needle) {
            failures.push(format!("expected {needle:?}; ok={ok} out={out} err={errs}"));
        }
    }
    // A mutable field may change.
    let (ok, _, errs) = env
        .kubectl(&["apply", "-f", "-"], Some(&doc("immutable", "  workspaceId: w-abc\n  jobRunId: jr-abc\n  regionId: cn-hangzhou\n  pollInterval: 45s\n")), false)
        .await?;
    if !ok {
        failures.push(format!("changing pollInterval was refused: {errs}"));
    }
    ensure(failures.is_empty(), || failures.join("\n"))
}

pub async fn run_that_succeeds(env: &'static Env) -> Result<(), String> {
    let ns = env.namespace("success").await?;
    let jr = unique("jr-ok");
    env.sim
        .add_run(run_script(
            &jr,
            vec![
                phase("Submitted", Some(5.0), None),
                phase("Running", Some(4.0), None),
                phase("Success", None, None),
            ],
        ))
        .map_err(|e| e.to_string())?;
    env.create(&ns, "ok", spec(&jr)).await?;

    // Watch the states go by and check the conditions of each against the table.
    let mut seen: Vec<String> = Vec::new();
    let mut mismatches = Vec::new();
    let deadline = tokio::time::Instant::now() + T;
    let final_status = loop {
        let s = env.status(&ns, "ok").await?;
        if let Some(state) = s.state.clone() {
            let want = expected(Some(&state));
            if outcome_of(&s) != want {
                mismatches.push(format!("{state}: {:?} != {want:?}", outcome_of(&s)));
            }
            if seen.last() != Some(&state) {
                seen.push(state.clone());
            }
            if state == "Success" {
                break s;
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("timed out waiting for Success; seen {seen:?}"));
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    };
    ensure(mismatches.is_empty(), || mismatches.join("\n"))?;
    ensure(seen == ["Submitted", "Running", "Success"], || {
        format!("states seen: {seen:?}")
    })?;

    for cond in [
        "condition=Finished",
        "condition=Succeeded",
        "jsonpath={.status.state}=Success",
    ] {
        let arg = format!("--for={cond}");
        let (ok, _, errs) = env
            .kubectl(
                &["wait", &arg, "--timeout=20s", "-n", &ns, "sparkjobrun/ok"],
                None,
                false,
            )
            .await?;
        ensure(ok, || format!("kubectl wait {arg}: {errs}"))?;
    }

    let s = final_status;
    let log = s.log.clone().unwrap_or_default();
    ensure(
        log.driver_std_out.is_some()
            && log.driver_std_error.is_some()
            && log.driver_syslog.is_some()
            && log.driver_startup.is_some(),
        || format!("log paths missing: {log:?}"),
    )?;
    ensure(
        s.submit_time.is_some() && s.end_time.is_some() && s.web_ui.is_some() && s.name.is_some(),
        || format!("fields missing: {s:?}"),
    )?;
    ensure(
        s.terminal == Some(true) && s.observed_generation == Some(1),
        || format!("terminal/generation: {s:?}"),
    )?;
    ensure(condition(&s, "Synced").map(|c| c.0) == Some("True"), || {
        format!("Synced: {:?}", condition(&s, "Synced"))
    })?;

    // One event per transition, no more.
    let events = env.events_once(&ns, "ok", "Succeeded").await?;
    let reasons: Vec<String> = events
        .iter()
        .map(|e| e.reason.clone().unwrap_or_default())
        .collect();
    ensure(reasons == ["Submitted", "Running", "Succeeded"], || {
        format!("event reasons: {reasons:?}")
    })?;
    ensure(events.iter().all(|e| e.series.is_none()), || {
        "an event was repeated".to_string()
    })?;

    // A finished run costs nothing (proven on a paused clock in tests/reconcile_scenarios.rs;
    // here one short confirmation against the real API server).
    let calls = env.sim.calls_for(&jr);
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure(env.sim.calls_for(&jr) == calls, || {
        format!(
            "calls after Success: {} -> {}",
            calls,
            env.sim.calls_for(&jr)
        )
    })
}

pub async fn run_that_fails(env: &'static Env) -> Result<(), String> {
    let ns = env.namespace("failure").await?;
    let jr = unique("jr-fail");
    env.sim
        .add_run(run_script(
            &jr,
            vec![
                phase("Submitted", Some(1.0), None),
                phase("Running", Some(1.0), None),
                phase("Failed", None, Some(("ERR-200001", "executor lost"))),
            ],
        ))
        .map_err(|e| e.to_string())?;
    env.create(&ns, "bad", spec(&jr)).await?;
    let (ok, _, errs) = env
        .kubectl(
            &[
                "wait",
                "--for=condition=Finished",
                "--timeout=30s",
                "-n",
                &ns,
                "sjr/bad",
            ],
            None,
            false,
        )
        .await?;
    ensure(ok, || format!("kubectl wait Finished: {errs}"))?;
    let s = env.status(&ns, "bad").await?;
    ensure(s.state.as_deref() == Some("Failed"), || {
        format!("state {:?}", s.state)
    })?;
    let want = [
        ("Finished", "True"),
        ("Failed", "True"),
        ("Stalled", "True"),
        ("Succeeded", "False"),
        ("Ready", "False"),
    ];
    for (t, st) in want {
        ensure(condition(&s, t).map(|c| c.0) == Some(st), || {
            format!("{t}: {:?}", condition(&s, t))
        })?;
    }
    let stalled = condition(&s, "Stalled").map(|c| c.2).unwrap_or_default();
    ensure(
        stalled.contains("ERR-200001") && stalled.contains("executor lost"),
        || format!("Stalled message: {stalled}"),
    )?;
    ensure(condition(&s, "Reconciling").is_none(), || {
        "Reconciling still set".into()
    })?;
    let reason = s.state_change_reason.clone().unwrap_or_default();
    ensure(reason.code.as_deref() == Some("ERR-200001"), || {
        format!("stateChangeReason {reason:?}")
    })?;
    let events = env.events_once(&ns, "bad", "Failed").await?;
    let failed_event = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("Failed"));
    ensure(
        failed_event.is_some_and(|e| e.type_.as_deref() == Some("Warning")),
        || format!("events: {events:?}"),
    )
}

pub async fn job_run_not_found(env: &'static Env) -> Result<(), String> {
    let ns = env.namespace("notfound").await?;
    let jr = unique("jr-missing");
    env.create(&ns, "ghost", spec(&jr)).await?;
    let s = wait_for("Stalled=JobRunNotFound", T, || async {
        let s = env.status(&ns, "ghost").await?;
        match condition(&s, "Stalled") {
            Some(("True", "JobRunNotFound", _)) => Ok(Some(s)),
            other => Err(format!("Stalled {other:?}")),
        }
    })
    .await?;
    ensure(outcome_of(&s) == expected(None), || {
        format!("conditions {:?}", s.conditions)
    })?;
    ensure(
        condition(&s, "Synced").map(|c| (c.0, c.1)) == Some(("False", "JobRunNotFound")),
        || format!("{:?}", condition(&s, "Synced")),
    )?;
    let events = env.events_once(&ns, "ghost", "JobRunNotFound").await?;
    ensure(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("JobRunNotFound")),
        || format!("events {events:?}"),
    )?;
    // The run appears (for example it was created late): the operator notices on its slow recheck.
    env.sim
        .add_run(held(&jr, "Running"))
        .map_err(|e| e.to_string())?;
    let s = wait_state(env, &ns, "ghost", "Running").await?;
    ensure(
        condition(&s, "Stalled").is_none() && condition(&s, "Synced").map(|c| c.0) == Some("True"),
        || format!("{:?}", s.conditions),
    )
}

fn with_secret(job_run_id: &str, secret: &str) -> SparkJobRunRefSpec {
    spec_with(job_run_id, Some(secret_ref(secret)))
}

pub async fn wrong_credentials_then_fixed(env: &'static Env) -> Result<(), String> {
    let ns = env.namespace("wrongkey").await?;
    let jr = unique("jr-creds");
    env.sim
        .add_run(held(&jr, "Running"))
        .map_err(|e| e.to_string())?;
    let wrong_secret = "not-the-right-secret-value-0123";
    env.put_secret(
        &ns,
        "emr-ak",
        &[
            ("accessKeyId", ACCESS_KEY_ID),
            ("accessKeySecret", wrong_secret),
        ],
    )
    .await?;
    env.create(&ns, "creds", with_secret(&jr, "emr-ak")).await?;
    let s = wait_synced(env, &ns, "creds", "False", "Unauthorized").await?;
    let msg = condition(&s, "Synced")
        .map(|c| c.2)
        .unwrap_or_default()
        .to_owned();
    ensure(msg.contains("SignatureDoesNotMatch"), || {
        format!("Synced message: {msg}")
    })?;
    ensure(s.state.is_none(), || {
        format!("state appeared: {:?}", s.state)
    })?;
    // Right key: the operator recovers on its recheck.
    env.put_secret(
        &ns,
        "emr-ak",
        &[
            ("accessKeyId", ACCESS_KEY_ID),
            ("accessKeySecret", &env.secret),
        ],
    )
    .await?;
    wait_synced(env, &ns, "creds", "True", "Polled").await?;
    let s = wait_state(env, &ns, "creds", "Running").await?;
    // Events follow the status write that records them: wait for the recovery's.
    let events = wait_for("the Recovered event", T, || async {
        let events = env.events(&ns, "creds").await?;
        let recovered = events
            .iter()
            .any(|e| e.reason.as_deref() == Some("Recovered"));
        Ok(recovered.then_some(events))
    })
    .await?;
    // No secret value in status or events.
    let dump = format!(
        "{}{}",
        serde_json::to_string(&s).unwrap_or_default(),
        serde_json::to_string(&events).unwrap_or_default()
    );
    ensure(
        !dump.contains(wrong_secret) && !dump.contains(&env.secret),
        || "a secret value leaked into status or events".into(),
    )?;
    let reasons: Vec<_> = events.iter().filter_map(|e| e.reason.clone()).collect();
    ensure(
        reasons.contains(&"Unauthorized".to_string()) && reasons.contains(&"Recovered".to_string()),
        || format!("events {reasons:?}"),
    )
}

pub async fn missing_secret_then_created(env: &'static Env) -> Result<(), String> {
    let ns = env.namespace("nosecret").await?;
    let jr = unique("jr-nosecret");
    env.sim
        .add_run(held(&jr, "Pending"))
        .map_err(|e| e.to_string())?;
    env.create(&ns, "waiting", with_secret(&jr, "later"))
        .await?;
    let s = wait_synced(env, &ns, "waiting", "False", "SecretNotFound").await?;
    let msg = condition(&s, "Synced").map(|c| c.2).unwrap_or_default();
    ensure(msg.contains(&format!("{ns}/later")), || {
        format!("message does not name the Secret: {msg}")
    })?;
    ensure(
        condition(&s, "Ready").map(|c| c.1) == Some("Initializing"),
        || format!("{:?}", s.conditions),
    )?;
    // The Secret appears without the secret key: the condition names the key.
    env.put_secret(&ns, "later", &[("accessKeyId", ACCESS_KEY_ID)])
        .await?;
    let s = wait_synced(env, &ns, "waiting", "False", "SecretKeyMissing").await?;
    let msg = condition(&s, "Synced").map(|c| c.2).unwrap_or_default();
    ensure(msg.contains("accessKeySecret"), || {
        format!("message does not name the key: {msg}")
    })?;
    env.put_secret(
        &ns,
        "later",
        &[
            ("accessKeyId", ACCESS_KEY_ID),
            ("accessKeySecret", &env.secret),
        ],
    )
    .await?;
    wait_state(env, &ns, "waiting", "Pending").await?;
    Ok(())
}

pub async fn quiet_run_writes_nothing(env: &'static Env) -> Result<(), String> {
    let ns = env.namespace("quiet").await?;
    let jr = unique("jr-quiet");
    env.sim
        .add_run(held(&jr, "Running"))
        .map_err(|e| e.to_string())?;
    env.create(&ns, "quiet", spec(&jr)).await?;
    wait_state(env, &ns, "quiet", "Running").await?;
    // Let the transition's own write settle, then watch. "A quiet poll writes nothing" is
    // proven on a paused clock in tests/reconcile_scenarios.rs; this is a short confirmation.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = env.get(&ns, "quiet").await?.metadata.resource_version;
    let calls_before = env.sim.calls_for(&jr);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = env.get(&ns, "quiet").await?.metadata.resource_version;
    let calls = env.sim.calls_for(&jr) - calls_before;
    ensure(calls >= 2, || {
        format!("only {calls} polls in 3s: the run is not being polled")
    })?;
    ensure(before == after, || {
        format!("resourceVersion moved {before:?} -> {after:?} over {calls} unchanged polls")
    })?;
    // Deleting the object: the operator forgets its per-object memory (no unbounded growth).
    let key = format!("{ns}/quiet");
    ensure(env.ctx.has_schedule(&key), || {
        "no schedule kept for a polled object".into()
    })?;
    env.runs(&ns)
        .delete("quiet", &Default::default())
        .await
        .map_err(|e| e.to_string())?;
    wait_for(
        "the schedule of a deleted object to be pruned",
        T,
        || async {
            env.ctx.prune_schedules();
            if env.ctx.has_schedule(&key) {
                Err("still scheduled".into())
            } else {
                Ok(Some(()))
            }
        },
    )
    .await
}

pub async fn api_trouble_keeps_outcome(env: &'static Env) -> Result<(), String> {
    let ns = env.namespace("trouble").await?;
    let jr = unique("jr-trouble");
    env.sim
        .add_run(held(&jr, "Running"))
        .map_err(|e| e.to_string())?;
    env.create(&ns, "flaky", spec(&jr)).await?;
    let good = wait_state(env, &ns, "flaky", "Running").await?;
    let faults = [
        (FaultKind::ServiceUnavailable, "ServiceUnavailable"),
        (FaultKind::MalformedJson, "InvalidResponse"),
        (FaultKind::HtmlErrorPage, "ServiceUnavailable"),
        (
            FaultKind::Throttling {
                status: 400,
                retry_after_ms: Some(700),
                code: "Throttling.User".into(),
            },
            "Throttled",
        ),
        (FaultKind::ForbiddenRam, "Forbidden"),
    ];
    for (kind, reason) in faults {
        let id = env
            .sim
            .inject(Fault::new(kind).for_run(jr.clone()))
            .map_err(|e| e.to_string())?;
        let s = wait_synced(env, &ns, "flaky", "False", reason).await?;
        ensure(
            s.state == good.state && outcome_of(&s) == outcome_of(&good),
            || {
                format!(
                    "{reason}: outcome changed: {:?} vs {:?}",
                    s.conditions, good.conditions
                )
            },
        )?;
        ensure(
            s.log == good.log && s.submit_time == good.submit_time,
            || format!("{reason}: fields lost"),
        )?;
        // Only this case's fault: clearing all would lift those of concurrent cases.
        env.sim.remove_fault(id);
        wait_synced(env, &ns, "flaky", "True", "Polled").await?;
    }
    Ok(())
}

pub async fn operator_rights_are_minimal(env: &'static Env) -> Result<(), String> {
    let ns = env.namespace("rbac").await?;
    let (ok, _, errs) = env
        .kubectl(&["get", "secrets", "-n", &ns], None, true)
        .await?;
    ensure(!ok && errs.contains("forbidden"), || {
        format!("operator could list secrets: {errs}")
    })?;
    let (ok, _, errs) = env
        .kubectl(&["create", "configmap", "x", "-n", &ns], None, true)
        .await?;
    ensure(!ok && errs.contains("forbidden"), || {
        format!("operator could create a configmap: {errs}")
    })?;
    let (ok, _, _) = env
        .kubectl(&["get", "sparkjobruns", "-A"], None, true)
        .await?;
    ensure(ok, || "operator cannot list sparkjobruns".into())?;
    let (ok, out, _) = env
        .kubectl(&["auth", "can-i", "update", "sparkjobruns"], None, true)
        .await?;
    // `can-i` answers "no" (and exits 1); any other failure proves nothing.
    ensure(!ok && out.trim() == "no", || {
        format!("operator may update specs, or can-i failed otherwise: ok={ok} out={out:?}")
    })
}

pub async fn cancel_failed_and_unknown_states(env: &'static Env) -> Result<(), String> {
    let ns = env.namespace("oddstates").await?;
    for (name, state, reason) in [
        ("cf", "CancelFailed", "CancelFailed"),
        ("odd", "Hibernating", "UnknownState"),
    ] {
        let jr = unique("jr-odd");
        env.sim
            .add_run(held(&jr, state))
            .map_err(|e| e.to_string())?;
        env.create(&ns, name, spec(&jr)).await?;
        let s = wait_state(env, &ns, name, state).await?;
        let want = expected(Some(state));
        ensure(outcome_of(&s) == want, || {
            format!("{state}: {:?}", s.conditions)
        })?;
        ensure(s.terminal == Some(false), || {
            format!("{state} reported terminal")
        })?;
        ensure(
            condition(&s, "Reconciling").map(|c| c.1) == Some(reason),
            || format!("{:?}", s.conditions),
        )?;
        let events = wait_for(&format!("a Warning event {reason}"), T, || async {
            let events = env.events(&ns, name).await?;
            if events.iter().any(|e| {
                e.reason.as_deref() == Some(reason) && e.type_.as_deref() == Some("Warning")
            }) {
                Ok(Some(events))
            } else {
                Err(format!(
                    "{:?}",
                    events
                        .iter()
                        .map(|e| (&e.reason, &e.type_))
                        .collect::<Vec<_>>()
                ))
            }
        })
        .await?;
        ensure(events.len() == 1, || {
            format!("{state}: {} events", events.len())
        })?;
        // Still polled (slowly), never reported finished.
        let (ok, _, _) = env
            .kubectl(
                &[
                    "wait",
                    "--for=condition=Finished",
                    "--timeout=2s",
                    "-n",
                    &ns,
                    &format!("sjr/{name}"),
                ],
                None,
                false,
            )
            .await?;
        ensure(!ok, || format!("{state}: kubectl wait Finished returned"))?;
    }
    Ok(())
}

/// Hardening 9.1: a reconcile still waiting for a slow answer about the old run must not write
/// that run's result onto an object deleted and recreated under the same name for another run.
pub async fn recreated_object_never_shows_the_old_run(env: &'static Env) -> Result<(), String> {
    let ns = env.namespace("recreate").await?;
    let old = unique("jr-old");
    let new = unique("jr-new");
    env.sim
        .add_run(held(&old, "Success"))
        .map_err(|e| e.to_string())?;
    env.sim
        .add_run(held(&new, "Running"))
        .map_err(|e| e.to_string())?;
    // Slower than the delete and create below, faster than the operator's read timeout.
    env.sim
        .inject(
            Fault::new(FaultKind::Slow { delay_ms: 2_500 })
                .for_run(old.clone())
                .times(1),
        )
        .map_err(|e| e.to_string())?;
    // Every version of the object the API server stores, from a watch: a wrong status that
    // is corrected a moment later must still count.
    let versions = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let watch = {
        let versions = versions.clone();
        let config = kube::runtime::watcher::Config::default().fields("metadata.name=same");
        let stream = kube::runtime::watcher(env.runs(&ns), config);
        tokio::spawn(async move {
            use futures::StreamExt;
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                if let Ok(
                    kube::runtime::watcher::Event::Apply(o)
                    | kube::runtime::watcher::Event::InitApply(o),
                ) = event
                {
                    let status = o.status.unwrap_or_default();
                    if let Ok(mut v) = versions.lock() {
                        v.push((o.metadata.uid, status.job_run_id, status.state));
                    }
                }
            }
        })
    };
    env.create(&ns, "same", spec(&old)).await?;
    wait_for("the slow call for the old run", T, || async {
        Ok((env.sim.calls_for(&old) >= 1).then_some(()))
    })
    .await?;
    env.runs(&ns)
        .delete("same", &kube::api::DeleteParams::default())
        .await
        .map_err(|e| e.to_string())?;
    env.create(&ns, "same", spec(&new)).await?;
    let new_uid = env.get(&ns, "same").await?.metadata.uid;
    wait_state(env, &ns, "same", "Running").await?;
    // Well past the moment the slow answer came back.
    tokio::time::sleep(Duration::from_secs(4)).await;
    watch.abort();
    let seen = versions.lock().map(|v| v.clone()).unwrap_or_default();
    let wrong: Vec<_> = seen
        .iter()
        .filter(|(uid, jr, state)| {
            *uid == new_uid
                && (state.as_deref() == Some("Success") || jr.as_deref() == Some(old.as_str()))
        })
        .collect();
    ensure(wrong.is_empty(), || {
        format!("the recreated object showed the old run: {wrong:?} (all versions: {seen:?})")
    })?;
    let s = env.status(&ns, "same").await?;
    ensure(
        condition(&s, "Succeeded").map(|c| c.0) == Some("Unknown"),
        || format!("{:?}", s.conditions),
    )?;
    ensure(env.sim.calls_for(&old) == 1, || {
        format!("old run called {} times", env.sim.calls_for(&old))
    })?;
    Ok(())
}
