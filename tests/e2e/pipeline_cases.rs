//! Cases for pipelines and GitOps (issue 11): refresh on request, the `wait` command, import,
//! TTL and cancel on delete.

use std::time::Duration;

use sparkjobrun_operator::kit::simulator::RunScript;

use kube::ResourceExt;
use sparkjobrun_operator::crd::{SparkJobRunRef, SparkJobRunRefSpec};

use crate::cases::wait_state;
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

/// Runs `sparkjobrun-operator wait ARGS` (or, with `as_plugin`, `kubectl sparkjobrun wait ARGS`
/// through a kubectl-sparkjobrun link on PATH) as a user with the admin kubeconfig.
async fn run_wait(env: &Env, args: &[&str], as_plugin: bool) -> Result<(i32, String), String> {
    let (code, out, errs) = run_cli(env, "wait", args, as_plugin, &[]).await?;
    Ok((code, format!("{out}{errs}")))
}

/// Runs the binary's `sub ARGS` (as `kubectl sparkjobrun sub` with `as_plugin`) with the admin
/// kubeconfig, a cleared environment plus `vars`: exit code, stdout and stderr.
async fn run_cli(
    env: &Env,
    sub: &str,
    args: &[&str],
    as_plugin: bool,
    vars: &[(&str, &str)],
) -> Result<(i32, String, String), String> {
    let bin = env!("CARGO_BIN_EXE_sparkjobrun-operator");
    let plugin_dir =
        std::env::temp_dir().join(format!("sparkjobrun-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&plugin_dir).map_err(|e| e.to_string())?;
    let link = plugin_dir.join("kubectl-sparkjobrun");
    if !link.exists() {
        std::os::unix::fs::symlink(bin, &link).map_err(|e| e.to_string())?;
    }
    let path = format!(
        "{}:{}",
        plugin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = if as_plugin {
        let mut c = tokio::process::Command::new(&env.kubectl);
        c.args(["sparkjobrun", sub]);
        c
    } else {
        let mut c = tokio::process::Command::new(bin);
        c.arg(sub);
        c
    };
    let out = cmd
        .args(args)
        .env_clear()
        .env("PATH", path)
        .env("HOME", &plugin_dir)
        .env("KUBECONFIG", &env.admin_kubeconfig)
        .envs(vars.iter().copied())
        .output()
        .await
        .map_err(|e| format!("running {sub}: {e}"))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// 11.3: `import --apply` creates one ref per run of a workspace (through the kubectl plugin
/// too), the refs reach their runs' states, and importing again changes no object.
pub async fn import_then_apply(env: &'static Env) -> Result<(), String> {
    let ns = env.namespace("import").await?;
    let ws = format!("w-imp{}", hex::encode(rand::random::<[u8; 5]>()));
    let runs = [("Running", 3), ("Success", 2), ("Failed", 1)];
    let mut expected = Vec::new();
    for (state, count) in runs {
        for i in 0..count {
            let jr = format!(
                "jr-{}{i}{}",
                state.to_ascii_lowercase(),
                hex::encode(rand::random::<[u8; 3]>())
            );
            env.sim
                .add_run(RunScript::new(&ws, &jr).holding(state))
                .map_err(|e| e.to_string())?;
            expected.push((format!("imp-{jr}"), state));
        }
    }
    let endpoint = env.sim.endpoint();
    let args = [
        "--workspace-id",
        ws.as_str(),
        "--region-id",
        crate::support::REGION,
        "--endpoint",
        endpoint.as_str(),
        "--name-prefix",
        "imp-",
        "-n",
        ns.as_str(),
        "--apply",
    ];
    let keys = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", crate::support::ACCESS_KEY_ID),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", env.secret.as_str()),
    ];
    let (code, out, errs) = run_cli(env, "import", &args, true, &keys).await?;
    ensure(code == 0, || {
        format!("import --apply exited {code}: {out}{errs}")
    })?;
    ensure(out.matches(" applied").count() == expected.len(), || {
        format!("import printed: {out}")
    })?;
    for (name, state) in &expected {
        wait_state(env, &ns, name, state).await?;
    }
    let versions = |list: Vec<SparkJobRunRef>| {
        let mut v: Vec<(String, String)> = list
            .into_iter()
            .map(|o| (o.name_any(), o.resource_version().unwrap_or_default()))
            .collect();
        v.sort();
        v
    };
    let lp = kube::api::ListParams::default().labels("emrspark.io/imported=true");
    let before = versions(
        env.runs(&ns)
            .list(&lp)
            .await
            .map_err(|e| e.to_string())?
            .items,
    );
    ensure(before.len() == expected.len(), || {
        format!("labelled refs: {before:?}")
    })?;
    let (code, out, errs) = run_cli(env, "import", &args, false, &keys).await?;
    ensure(code == 0, || {
        format!("second import exited {code}: {out}{errs}")
    })?;
    let after = versions(
        env.runs(&ns)
            .list(&lp)
            .await
            .map_err(|e| e.to_string())?
            .items,
    );
    println!(
        "e2e-count import refs={} list_calls={} unchanged_on_reimport={}",
        expected.len(),
        env.sim.calls().for_action("ListJobRuns"),
        before == after
    );
    ensure(before == after, || {
        format!("importing again changed objects: {before:?} -> {after:?}")
    })
}

/// 11.2: `wait` exits 0 when all succeeded, 1 when one failed (naming its reason and driver
/// log), 2 on timeout and 3 when a ref does not exist; also as `kubectl sparkjobrun wait`.
pub async fn wait_exit_codes(env: &'static Env) -> Result<(), String> {
    use sparkjobrun_operator::kit::simulator::{Phase, Reason};
    let ns = env.namespace("wait").await?;
    let phase = |state: &str, secs: Option<f64>, reason: Option<(&str, &str)>| Phase {
        state: state.into(),
        after_seconds: None,
        for_seconds: secs,
        state_change_reason: reason.map(|(code, message)| Reason {
            code: code.into(),
            message: message.into(),
        }),
    };
    let (ok, bad, slow) = (
        unique("jr-waitok"),
        unique("jr-waitbad"),
        unique("jr-waitslow"),
    );
    env.sim
        .add_run(RunScript::new(WS, &ok).with_phases(vec![
            phase("Running", Some(2.0), None),
            phase("Success", None, None),
        ]))
        .map_err(|e| e.to_string())?;
    env.sim
        .add_run(RunScript::new(WS, &bad).with_phases(vec![
            phase("Running", Some(2.0), None),
            phase(
                "Failed",
                None,
                Some(("ERR-100000", "driver exited with code 1")),
            ),
        ]))
        .map_err(|e| e.to_string())?;
    env.sim
        .add_run(RunScript::new(WS, &slow).holding("Running"))
        .map_err(|e| e.to_string())?;
    for (name, jr) in [("ok", &ok), ("bad", &bad), ("slow", &slow)] {
        env.create(&ns, name, spec_with(jr, None)).await?;
    }
    let cases: [(&[&str], bool, i32, &[&str]); 6] = [
        (&["ok", "--timeout", "60s"], false, 0, &["ok: Success"]),
        (
            &["ok", "bad", "--timeout", "60s"],
            false,
            1,
            &["bad: Failed (ERR-100000: driver exited with code 1); driver stderr: "],
        ),
        (
            &["ok", "bad", "--for", "finished", "--timeout", "60s"],
            false,
            1,
            &["ok: Success", "bad: Failed"],
        ),
        (
            &["slow", "--timeout", "3s"],
            false,
            2,
            &["slow: Running", "timed out"],
        ),
        (
            &["ok", "no-such-ref", "--timeout", "60s"],
            false,
            3,
            &["no-such-ref: not found"],
        ),
        (&["ok", "--timeout", "60s"], true, 0, &["ok: Success"]),
    ];
    let mut failures = Vec::new();
    for (args, as_plugin, want, needles) in cases {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["-n", ns.as_str()]);
        let (code, text) = run_wait(env, &full, as_plugin).await?;
        let missing: Vec<&&str> = needles.iter().filter(|n| !text.contains(**n)).collect();
        if code != want || !missing.is_empty() {
            failures.push(format!("wait {args:?} (plugin: {as_plugin}): exit {code}, want {want}; missing {missing:?} in:\n{text}"));
        }
    }
    ensure(failures.is_empty(), || failures.join("\n"))
}

/// 11.4: with --ttl-after-finished, a ref is deleted its TTL after the run's end time and not
/// before (a TtlExpired event says why); a ref without a TTL, and one whose run still runs, stay.
pub async fn ttl_deletes_after_the_delay(env: &'static Env) -> Result<(), String> {
    use crate::support::ACCESS_KEY_ID;
    use sparkjobrun_operator::kit::simulator::Phase;
    let ns = env.namespace("ttl").await?;
    let op = env.spawn_operator(
        "ttl",
        &[
            "--label-selector",
            "e2e-process=ttl",
            "--ttl-after-finished=true",
        ],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", env.secret.as_str()),
        ],
    )?;
    let (ends, kept, running) = (unique("jr-ttl"), unique("jr-ttlkept"), unique("jr-ttlrun"));
    let success_after = |jr: &str| {
        RunScript::new(WS, jr).with_phases(vec![
            Phase {
                state: "Running".into(),
                after_seconds: None,
                for_seconds: Some(1.0),
                state_change_reason: None,
            },
            Phase {
                state: "Success".into(),
                after_seconds: None,
                for_seconds: None,
                state_change_reason: None,
            },
        ])
    };
    for script in [
        success_after(&ends),
        success_after(&kept),
        RunScript::new(WS, &running).holding("Running"),
    ] {
        env.sim.add_run(script).map_err(|e| e.to_string())?;
    }
    let label = [("e2e-process", "ttl")];
    let with_ttl = |jr: &str| {
        let mut s = spec_with(jr, None);
        s.ttl_seconds_after_finished = Some(4);
        s
    };
    env.create_labeled(&ns, "expires", with_ttl(&ends), &label)
        .await?;
    env.create_labeled(&ns, "kept", spec_with(&kept, None), &label)
        .await?;
    env.create_labeled(&ns, "running", with_ttl(&running), &label)
        .await?;
    let end_time = wait_for("the run to end", T, || async {
        let s = env.status(&ns, "expires").await?;
        Ok(s.end_time.filter(|_| s.terminal == Some(true)))
    })
    .await?;
    let ended: jiff::Timestamp = end_time.parse().map_err(|e| format!("{end_time}: {e}"))?;
    let seen_ended = jiff::Timestamp::now();
    ensure(env.get_opt(&ns, "expires").await?.is_some(), || {
        "deleted before its TTL".into()
    })?;
    let gone = wait_for("the ref to be deleted", T, || async {
        Ok(env
            .get_opt(&ns, "expires")
            .await?
            .is_none()
            .then(jiff::Timestamp::now))
    })
    .await?;
    let after_end = gone.duration_since(ended).as_secs_f64();
    println!(
        "e2e-count ttl ttl_s=4 ended_seen_after_s={:.1} deleted_after_end_s={after_end:.1}",
        seen_ended.duration_since(ended).as_secs_f64()
    );
    // End times are whole seconds; the deletion must not come before the TTL passed.
    ensure((3.0..=15.0).contains(&after_end), || {
        format!("deleted {after_end:.1}s after the run ended (TTL 4s)")
    })?;
    let reasons: Vec<String> = env
        .events(&ns, "expires")
        .await?
        .iter()
        .filter_map(|e| e.reason.clone())
        .collect();
    ensure(reasons.iter().any(|r| r == "TtlExpired"), || {
        format!("no TtlExpired event: {reasons:?}")
    })?;
    for name in ["kept", "running"] {
        ensure(env.get_opt(&ns, name).await?.is_some(), || {
            format!("{name} was deleted")
        })?;
    }
    op.signal(libc::SIGTERM);
    Ok(())
}

async fn finalizers(env: &Env, ns: &str, name: &str) -> Result<Option<Vec<String>>, String> {
    Ok(env
        .get_opt(ns, name)
        .await?
        .map(|o| o.finalizers().to_vec()))
}

async fn wait_finalizer(env: &Env, ns: &str, name: &str, present: bool) -> Result<(), String> {
    let what = format!("{ns}/{name} finalizer present={present}");
    wait_for(&what, T, || async {
        let has = finalizers(env, ns, name)
            .await?
            .is_some_and(|f| f.iter().any(|f| f == "emrspark.io/cancel-on-delete"));
        Ok((has == present).then_some(()))
    })
    .await
}

async fn wait_gone(env: &Env, ns: &str, name: &str) -> Result<(), String> {
    wait_for(&format!("{ns}/{name} to be gone"), T, || async {
        Ok(env.get_opt(ns, name).await?.is_none().then_some(()))
    })
    .await
}

async fn delete_ref(env: &Env, ns: &str, name: &str) -> Result<(), String> {
    env.runs(ns)
        .delete(name, &kube::api::DeleteParams::default())
        .await
        .map(|_| ())
        .map_err(|e| format!("deleting {ns}/{name}: {e}"))
}

/// 11.5: with `--allow-cancel`, deleting a ref whose run is active cancels the run once and the
/// ref goes once the run is cancelling; an ended run gets no finalizer and no call; a failing
/// cancel keeps the ref (with an event) until `emrspark.io/abandon` releases it. Without the
/// flag (the in-process operator), the field is refused with an event and nothing is cancelled.
pub async fn cancel_on_delete(env: &'static Env) -> Result<(), String> {
    use sparkjobrun_operator::kit::simulator::{Fault, FaultKind};
    let ns = env.namespace("cancel").await?;
    let op = env.spawn_operator(
        "cancel",
        &[
            "--label-selector",
            "e2e-process=cancel",
            "--allow-cancel=true",
        ],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", crate::support::ACCESS_KEY_ID),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", env.secret.as_str()),
        ],
    )?;
    let label = [("e2e-process", "cancel")];
    let (active, ended, stuck, refused) = (
        unique("jr-cancel"),
        unique("jr-ended"),
        unique("jr-stuck"),
        unique("jr-refused"),
    );
    for (jr, state) in [
        (&active, "Running"),
        (&ended, "Success"),
        (&stuck, "Running"),
        (&refused, "Running"),
    ] {
        let mut script = RunScript::new(WS, jr).holding(state);
        script.cancel_seconds = Some(1.0);
        env.sim.add_run(script).map_err(|e| e.to_string())?;
    }
    let cancelling = |jr: &str| SparkJobRunRefSpec {
        cancel_on_delete: Some(true),
        ..spec_with(jr, None)
    };
    let fault = env
        .sim
        .inject(
            Fault::new(FaultKind::ForbiddenRam)
                .for_run(stuck.clone())
                .for_action("CancelJobRun"),
        )
        .map_err(|e| e.to_string())?;
    for (name, jr) in [("active", &active), ("ended", &ended), ("stuck", &stuck)] {
        env.create_labeled(&ns, name, cancelling(jr), &label)
            .await?;
    }
    env.create(&ns, "refused", cancelling(&refused)).await?;

    // An active run: the finalizer arrives, the delete cancels once, the ref goes.
    wait_state(env, &ns, "active", "Running").await?;
    wait_finalizer(env, &ns, "active", true).await?;
    delete_ref(env, &ns, "active").await?;
    wait_gone(env, &ns, "active").await?;
    let active_cancels = env.sim.cancels_of(&active);

    // An ended run: no finalizer once the end is known, deleted at once, no call.
    wait_state(env, &ns, "ended", "Success").await?;
    wait_finalizer(env, &ns, "ended", false).await?;
    delete_ref(env, &ns, "ended").await?;
    wait_gone(env, &ns, "ended").await?;

    // A cancel the service refuses: the ref stays, with an event, until abandoned.
    wait_state(env, &ns, "stuck", "Running").await?;
    wait_finalizer(env, &ns, "stuck", true).await?;
    delete_ref(env, &ns, "stuck").await?;
    let events = env.events_once(&ns, "stuck", "CancelRequestFailed").await?;
    let note = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("CancelRequestFailed"))
        .and_then(|e| e.note.clone())
        .unwrap_or_default();
    ensure(
        note.contains("Forbidden.RAM") && note.contains("emrspark.io/abandon"),
        || format!("event note: {note}"),
    )?;
    let held = env.get_opt(&ns, "stuck").await?;
    ensure(
        held.as_ref()
            .is_some_and(|o| o.metadata.deletion_timestamp.is_some()),
        || "the ref with a failing cancel is gone".into(),
    )?;
    let (ok, _, errs) = env
        .kubectl(
            &[
                "annotate",
                "-n",
                &ns,
                "sparkjobrun",
                "stuck",
                "emrspark.io/abandon=true",
            ],
            None,
            false,
        )
        .await?;
    ensure(ok, || format!("kubectl annotate: {errs}"))?;
    wait_gone(env, &ns, "stuck").await?;
    env.sim.remove_fault(fault);

    // Without --allow-cancel: refused with an event, no finalizer, no call.
    env.events_once(&ns, "refused", "CancelNotAllowed").await?;
    wait_state(env, &ns, "refused", "Running").await?;
    let refused_finalizers = finalizers(env, &ns, "refused").await?.unwrap_or_default();
    delete_ref(env, &ns, "refused").await?;
    wait_gone(env, &ns, "refused").await?;
    let counts = [
        active_cancels,
        env.sim.cancels_of(&ended),
        env.sim.cancels_of(&stuck),
        env.sim.cancels_of(&refused),
    ];
    println!(
        "e2e-count cancel active={} ended={} refused_by_service_then_abandoned={} without_allow_cancel={} refused_finalizers={}",
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        refused_finalizers.len()
    );
    drop(op);
    ensure(
        counts == [1, 0, 0, 0] && refused_finalizers.is_empty(),
        || {
            format!(
                "accepted cancels {counts:?}, finalizers without the flag {refused_finalizers:?}"
            )
        },
    )
}
