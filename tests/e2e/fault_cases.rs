//! Fault runs (issue 13): many objects at once, a fault the operator cannot see coming, and a
//! count of what went wrong: fields of a status erased by partial answers, and transition events
//! published more than once when status writes fail or the API server stalls. Each case prints
//! its counts (`e2e-count ...` lines) so before/after figures come from the same code.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::runtime::watcher;
use serde_json::{Value, json};
use sparkjobrun_operator::crd::SparkJobRunRefStatus;
use sparkjobrun_operator::kit::simulator::{Fault, FaultKind, Phase, RunScript};

use crate::support::{Env, WS, ensure, phase, spec_with, unique, wait_for};

const T: Duration = Duration::from_secs(60);

/// Every leaf of a status except its conditions (whose messages and times change by design), as
/// `path → value`; a non-empty list counts as one leaf.
fn leaves(status: &SparkJobRunRefStatus) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    walk(&format!("{prefix}.{k}"), v, out);
                }
            }
            Value::Null => {}
            Value::Array(items) if items.is_empty() => {}
            other => {
                out.insert(prefix.to_owned(), other.clone());
            }
        }
    }
    let mut value = serde_json::to_value(status).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.remove("conditions");
    }
    let mut out = BTreeMap::new();
    walk("status", &value, &mut out);
    out
}

/// Fields present in `before` and absent from `after`.
fn erased(before: &SparkJobRunRefStatus, after: &SparkJobRunRefStatus) -> Vec<String> {
    let after = leaves(after);
    leaves(before)
        .into_keys()
        .filter(|k| !after.contains_key(k))
        .collect()
}

/// Every status version of the namespace's objects the API server stores, in order, from a
/// watch; counts the fields one version erased from the previous one.
struct History {
    erasures: Arc<Mutex<Vec<(String, String)>>>,
    versions: Arc<Mutex<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl History {
    fn watch(env: &Env, ns: &str) -> Self {
        let erasures = Arc::new(Mutex::new(Vec::new()));
        let versions = Arc::new(Mutex::new(0));
        let stream = watcher(env.runs(ns), watcher::Config::default());
        let (e, n) = (erasures.clone(), versions.clone());
        let task = tokio::spawn(async move {
            let mut last: BTreeMap<String, SparkJobRunRefStatus> = BTreeMap::new();
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) = event else {
                    continue;
                };
                let name = obj.metadata.name.clone().unwrap_or_default();
                let status = obj.status.clone().unwrap_or_default();
                if let Some(prev) = last.get(&name)
                    && prev != &status
                {
                    if let Ok(mut n) = n.lock() {
                        *n += 1;
                    }
                    for field in erased(prev, &status) {
                        if let Ok(mut e) = e.lock() {
                            e.push((name.clone(), field));
                        }
                    }
                }
                last.insert(name, status);
            }
        });
        Self {
            erasures,
            versions,
            task,
        }
    }

    fn stop(self) -> (Vec<(String, String)>, u64) {
        self.task.abort();
        let erasures = self.erasures.lock().map(|e| e.clone()).unwrap_or_default();
        let versions = self.versions.lock().map(|n| *n).unwrap_or_default();
        (erasures, versions)
    }
}

/// The answers a degraded service gives for a run it knows: fields left out, `null`, or of a
/// type that cannot be decoded (the service sends times as epoch milliseconds and tags as a
/// list of key/value objects).
fn degraded_answers() -> Vec<FaultKind> {
    let omit = |keys: &[&str]| FaultKind::Partial {
        omit: keys.iter().map(|k| (*k).to_owned()).collect(),
        set: serde_json::Map::new(),
    };
    let set = |pairs: Value| FaultKind::Partial {
        omit: Vec::new(),
        set: pairs.as_object().cloned().unwrap_or_default(),
    };
    vec![
        omit(&["log"]),
        set(json!({"submitTime": "2026-12-03T10:00:00Z"})),
        set(json!({"tags": {"team": "data"}})),
        omit(&[
            "webUI",
            "name",
            "releaseVersion",
            "priority",
            "tags",
            "submitTime",
        ]),
        set(json!({"log": null, "name": null, "webUI": null, "endTime": null})),
        set(json!({
            "name": 42, "releaseVersion": [], "webUI": {}, "log": "gone",
            "submitTime": "soon", "endTime": "later", "tags": 7, "priority": {},
            "jobDriver": "none", "configurationOverrides": [1],
        })),
        omit(&[
            "log",
            "name",
            "webUI",
            "submitTime",
            "endTime",
            "releaseVersion",
            "displayReleaseVersion",
            "resourceQueueId",
            "tags",
            "priority",
            "codeType",
            "executionTimeoutSeconds",
            "jobDriver",
            "configurationOverrides",
            "stateChangeReason",
        ]),
    ]
}

/// Ends of the runs in the fault cases: Running for `running` seconds, then this outcome.
fn ending(job_run_id: &str, running: f64, k: usize) -> RunScript {
    let last: Phase = match k % 3 {
        0 => phase("Running", None, None),
        1 => phase("Success", None, None),
        _ => phase(
            "Failed",
            None,
            Some(("Spark.ApplicationFailed", "driver exited with code 1")),
        ),
    };
    RunScript::new(WS, job_run_id).with_phases(vec![phase("Running", Some(running), None), last])
}

/// Creates `n` objects for runs made by `script(i)` and waits until each shows its run Running
/// with its driver logs, i.e. the first complete observation is stored.
async fn start_runs(
    env: &Env,
    ns: &str,
    n: usize,
    script: impl Fn(usize, &str) -> RunScript,
) -> Result<Vec<(String, String)>, String> {
    let mut made = Vec::new();
    for i in 0..n {
        let (name, jr) = (format!("r{i:02}"), unique("jr-fault"));
        env.sim.add_run(script(i, &jr)).map_err(|e| e.to_string())?;
        env.create(ns, &name, spec_with(&jr, None)).await?;
        made.push((name, jr));
    }
    for (name, _) in &made {
        wait_for(&format!("{ns}/{name} observed"), T, || async {
            let s = env.status(ns, name).await?;
            Ok((s.state.as_deref() == Some("Running") && s.log.is_some()).then_some(()))
        })
        .await?;
    }
    Ok(made)
}

/// Waits until every object shows a terminal state (or, for runs that never end, that its run
/// was polled at least `polls` more times).
async fn wait_ended(env: &Env, ns: &str, made: &[(String, String)]) -> Result<(), String> {
    for (i, (name, _)) in made.iter().enumerate() {
        if i % 3 == 0 {
            continue;
        }
        wait_for(&format!("{ns}/{name} ended"), T, || async {
            let s = env.status(ns, name).await?;
            Ok((s.terminal == Some(true)).then_some(()))
        })
        .await?;
    }
    Ok(())
}

/// Transition events of one object by reason, each counted with its series (the recorder folds
/// repeats of one event into a series instead of new objects).
async fn announced(env: &Env, ns: &str, name: &str) -> Result<BTreeMap<String, i32>, String> {
    let mut out = BTreeMap::new();
    for e in env.events(ns, name).await? {
        let n = e
            .series
            .as_ref()
            .map(|s| s.count)
            .or(e.deprecated_count)
            .unwrap_or(1)
            .max(1);
        *out.entry(e.reason.unwrap_or_default()).or_default() += n;
    }
    Ok(out)
}

/// The state reasons an object's events must show exactly once each.
fn transitions_of(k: usize) -> Vec<String> {
    // The reasons of the README's table, written out (not derived from the code under test).
    let end = match k % 3 {
        0 => None,
        1 => Some("Succeeded"),
        _ => Some("Failed"),
    };
    std::iter::once("Running")
        .chain(end)
        .map(str::to_owned)
        .collect()
}

/// Waits until every transition of every object was announced, then counts the extra copies.
/// Returns (transitions, duplicate copies, objects with a duplicate).
async fn count_announcements(
    env: &Env,
    ns: &str,
    made: &[(String, String)],
) -> Result<(usize, i32, usize), String> {
    let (mut transitions, mut duplicates, mut objects) = (0, 0, 0);
    for (k, (name, _)) in made.iter().enumerate() {
        let wanted = transitions_of(k);
        let got = wait_for(&format!("events of {ns}/{name}"), T, || async {
            let got = announced(env, ns, name).await?;
            let all = wanted.iter().all(|r| got.contains_key(r));
            Ok(all.then_some(got))
        })
        .await?;
        transitions += wanted.len();
        let extra: i32 = wanted
            .iter()
            .map(|r| got.get(r).copied().unwrap_or(0) - 1)
            .sum();
        duplicates += extra;
        objects += usize::from(extra > 0);
    }
    Ok((transitions, duplicates, objects))
}

/// 13.1: partial answers for 21 runs (7 kinds of degradation, each on a run that keeps running,
/// one that succeeds and one that fails during the fault) erase no field of any status.
pub async fn partial_answers_erase_nothing(env: &'static Env) -> Result<(), String> {
    let ns = env.namespace("partial").await?;
    let answers = degraded_answers();
    let n = answers.len() * 3;
    // Long enough to observe each run completely first, short enough to end during the fault.
    let made = start_runs(env, &ns, n, |i, jr| ending(jr, 8.0 + (i % 3) as f64, i)).await?;
    let complete: Vec<SparkJobRunRefStatus> = {
        let mut out = Vec::new();
        for (name, _) in &made {
            out.push(env.status(&ns, name).await?);
        }
        out
    };
    let history = History::watch(env, &ns);
    let undecodable_before = env.ctx.metrics.undecodable_fields.get();
    let partial_before = partial_calls(env);
    let mut ids = Vec::new();
    for (i, (_, jr)) in made.iter().enumerate() {
        let kind = answers[i / 3].clone();
        ids.push(
            env.sim
                .inject(Fault::new(kind).for_run(jr.clone()))
                .map_err(|e| e.to_string())?,
        );
    }
    wait_ended(env, &ns, &made).await?;
    // A few more partial answers for every run, ended or not, before the fault is lifted.
    let floor = partial_calls(env) + 2 * n as u64;
    wait_for("more partial answers", T, || async {
        Ok((partial_calls(env) >= floor).then_some(()))
    })
    .await?;
    for id in ids {
        env.sim.remove_fault(id);
    }
    let partial = partial_calls(env) - partial_before;
    let mut lost = Vec::new();
    for ((name, _), first) in made.iter().zip(&complete) {
        let now = env.status(&ns, name).await?;
        for field in erased(first, &now) {
            lost.push(format!("{name}: {field}"));
        }
    }
    let (erasures, versions) = history.stop();
    let undecodable = env.ctx.metrics.undecodable_fields.get() - undecodable_before;
    println!(
        "e2e-count partial_answers: objects={n} partial_answers={partial} status_versions={versions} \
         erasures={} fields_lost_at_end={} undecodable_counted={undecodable}",
        erasures.len(),
        lost.len()
    );
    ensure(partial >= 3 * n as u64, || {
        format!("only {partial} partial answers were served")
    })?;
    ensure(erasures.is_empty(), || {
        let some: Vec<_> = erasures.iter().take(8).collect();
        format!(
            "status writes erased {} fields, e.g. {some:?}",
            erasures.len()
        )
    })?;
    ensure(lost.is_empty(), || {
        let some: Vec<_> = lost.iter().take(8).collect();
        format!("{} fields lost by the end, e.g. {some:?}", lost.len())
    })?;
    ensure(undecodable > 0, || {
        "the undecodable-fields counter did not move".into()
    })
}

fn partial_calls(env: &Env) -> u64 {
    env.sim
        .calls()
        .by_outcome
        .get(sparkjobrun_operator::kit::simulator::counts::PARTIAL)
        .copied()
        .unwrap_or(0)
}

/// Refuses every status write in `ns` (a ValidatingAdmissionPolicy bound to that namespace
/// only) until the returned guard is lifted.
async fn refuse_status_writes(env: &Env, ns: &str) -> Result<StatusRefusal, String> {
    let rule = json!({
        "apiGroups": ["emrspark.io"], "apiVersions": ["*"],
        "operations": ["UPDATE", "CREATE"], "resources": ["sparkjobruns/status"],
    });
    let validation = json!({"expression": "false", "message": "status writes refused (e2e)"});
    install_policy(env, format!("e2e-refuse-status-{ns}"), rule, validation, ns).await
}

/// Stores a ValidatingAdmissionPolicy that denies requests matching `rule` unless `validation`
/// holds, bound to the namespace `namespace` only; the guard lifts both.
async fn install_policy(
    env: &Env,
    name: String,
    rule: Value,
    validation: Value,
    namespace: &str,
) -> Result<StatusRefusal, String> {
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [rule]},
            "validations": [validation],
        },
    });
    let binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": namespace},
            }},
        },
    });
    let (policies, bindings) = vap_apis(env);
    let pp = PatchParams::apply("e2e").force();
    policies
        .patch(&name, &pp, &Patch::Apply(&policy))
        .await
        .map_err(|e| format!("creating the policy: {e}"))?;
    bindings
        .patch(&name, &pp, &Patch::Apply(&binding))
        .await
        .map_err(|e| format!("binding the policy: {e}"))?;
    Ok(StatusRefusal { name })
}

struct StatusRefusal {
    name: String,
}

impl StatusRefusal {
    /// Waits until a (dry-run) status write in `ns` is refused: policies take effect a moment
    /// after they are stored.
    async fn wait_active(&self, env: &Env, ns: &str, name: &str) -> Result<(), String> {
        let pp = PatchParams {
            dry_run: true,
            ..PatchParams::default()
        };
        let probe = json!({"status": {"name": "probe"}});
        wait_for("status writes to be refused", T, || async {
            match env
                .runs(ns)
                .patch_status(name, &pp, &Patch::Merge(&probe))
                .await
            {
                Err(kube::Error::Api(e)) if e.message.contains("status writes refused") => {
                    Ok(Some(()))
                }
                other => Err(format!("probe: {:?}", other.map(|_| "accepted"))),
            }
        })
        .await
    }

    async fn lift(self, env: &Env) -> Result<(), String> {
        let (policies, bindings) = vap_apis(env);
        let dp = kube::api::DeleteParams::default();
        bindings
            .delete(&self.name, &dp)
            .await
            .map_err(|e| format!("unbinding: {e}"))?;
        policies
            .delete(&self.name, &dp)
            .await
            .map_err(|e| format!("deleting the policy: {e}"))?;
        Ok(())
    }
}

fn vap_apis(env: &Env) -> (Api<DynamicObject>, Api<DynamicObject>) {
    let resource = |kind: &str, plural: &str| ApiResource {
        group: "admissionregistration.k8s.io".into(),
        version: "v1".into(),
        api_version: "admissionregistration.k8s.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    (
        Api::all_with(
            env.admin.clone(),
            &resource("ValidatingAdmissionPolicy", "validatingadmissionpolicies"),
        ),
        Api::all_with(
            env.admin.clone(),
            &resource(
                "ValidatingAdmissionPolicyBinding",
                "validatingadmissionpolicybindings",
            ),
        ),
    )
}

/// 13.2: while the API server refuses every status write, 12 runs end; each refused write is
/// retried with a fresh observation. Once writes are allowed again, every transition has been
/// announced exactly once, and none before the status recording it was stored.
pub async fn refused_status_writes_announce_once(env: &'static Env) -> Result<(), String> {
    let ns = env.namespace("refused").await?;
    let n = 12;
    let ends = tokio::time::Instant::now() + Duration::from_secs(12);
    let made = start_runs(env, &ns, n, |i, jr| ending(jr, 12.0, i)).await?;
    let refusal = refuse_status_writes(env, &ns).await?;
    let outcome = async {
        refusal.wait_active(env, &ns, &made[0].0).await?;
        for (name, _) in &made {
            let s = env.status(&ns, name).await?;
            ensure(s.terminal != Some(true), || {
                format!("{name} ended before status writes were refused; the case proves nothing")
            })?;
        }
        // The simulator's runs end on their own clock; wait for that, then for three more
        // observations of each run, whose status writes are all refused.
        tokio::time::sleep_until(ends + Duration::from_secs(1)).await;
        let floors: Vec<u64> = made
            .iter()
            .map(|(_, jr)| env.sim.calls_for(jr) + 3)
            .collect();
        for ((_, jr), floor) in made.iter().zip(&floors) {
            wait_for(&format!("retries for {jr}"), T, || async {
                Ok((env.sim.calls_for(jr) >= *floor).then_some(()))
            })
            .await?;
        }
        let mut early = 0;
        for (k, (name, _)) in made.iter().enumerate() {
            let got = announced(env, &ns, name).await?;
            early += transitions_of(k)
                .iter()
                .skip(1)
                .filter(|r| got.contains_key(*r))
                .count();
        }
        Ok::<_, String>(early)
    }
    .await;
    refusal.lift(env).await?;
    let early = outcome?;
    wait_ended(env, &ns, &made).await?;
    let (transitions, duplicates, objects) = count_announcements(env, &ns, &made).await?;
    println!(
        "e2e-count refused_writes: objects={n} transitions={transitions} \
         announced_before_stored={early} duplicate_events={duplicates} objects_with_duplicates={objects}"
    );
    ensure(early == 0, || {
        format!("{early} transitions were announced while their status could not be stored")
    })?;
    ensure(duplicates == 0, || {
        format!("{duplicates} duplicate transition events on {objects} objects")
    })
}

/// Resumes the API server when dropped, so a failing case never leaves it stopped.
struct Stalled(i32);

impl Stalled {
    fn start(pid: i32) -> Result<Self, String> {
        // SAFETY: kill(2) with a pid of a child this process started; no memory is touched.
        if unsafe { libc::kill(pid, libc::SIGSTOP) } != 0 {
            return Err(format!(
                "SIGSTOP {pid}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Self(pid))
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe {
            libc::kill(self.0, libc::SIGCONT);
        }
    }
}

/// Two operator replicas with leader election, as the chart runs them, on objects only they
/// handle; waits until one of them leads.
async fn two_replicas(
    env: &Env,
    ns: &str,
    label: &str,
    extra: &[&str],
) -> Result<[crate::support::OperatorProcess; 2], String> {
    let args = |id: &str| {
        let mut a = crate::support::elected_replica_args(label, ns, "6s", "2s", id);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let creds = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", crate::support::ACCESS_KEY_ID),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", env.secret.as_str()),
        ("RUST_LOG", "info"),
    ];
    let spawn = |id: &str| {
        let a = args(id);
        env.spawn_operator(
            &format!("{label}-{id}"),
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
            &creds,
        )
    };
    let replicas = [spawn("a")?, spawn("b")?];
    wait_for("one replica to lead", T, || async {
        let mut leading = 0;
        for r in &replicas {
            leading += usize::from(r.http_get("/leaderz").await.map(|r| r.0).unwrap_or(0) == 200);
        }
        Ok((leading == 1).then_some(()))
    })
    .await?;
    Ok(replicas)
}

/// 13.2: kube-apiserver stopped (SIGSTOP) for 30 s, longer than the lease, while two replicas
/// follow 30 runs that change state before, during and after the stall; then resumed. Every
/// transition is announced exactly once. Runs alone, because every other case stalls with it.
pub async fn api_server_stall_announces_once(env: &'static Env) -> Result<(), String> {
    let ns = env.namespace("stall").await?;
    let replicas = two_replicas(env, &ns, "stall", &[]).await?;
    let n = 30;
    // Ends spread from 4 s to 37 s after the runs start: some before the stall, most during it.
    let mut made = Vec::new();
    for i in 0..n {
        let (name, jr) = (format!("r{i:02}"), unique("jr-stall"));
        env.sim
            .add_run(ending(&jr, 4.0 + (i as f64) * 1.1, i))
            .map_err(|e| e.to_string())?;
        env.create_labeled(
            &ns,
            &name,
            spec_with(&jr, None),
            &[("e2e-process", "stall")],
        )
        .await?;
        made.push((name, jr));
    }
    for (name, _) in &made {
        wait_for(&format!("{ns}/{name} observed"), T, || async {
            let s = env.status(&ns, name).await?;
            Ok(s.state.is_some().then_some(()))
        })
        .await?;
    }
    let pid = env.apiserver_pid()?;
    let calls_before = env.sim.calls().total;
    let stall = Stalled::start(pid)?;
    tokio::time::sleep(Duration::from_secs(30)).await;
    drop(stall);
    let calls_during = env.sim.calls().total - calls_before;
    wait_ended(env, &ns, &made).await?;
    let (transitions, duplicates, objects) = count_announcements(env, &ns, &made).await?;
    println!(
        "e2e-count api_server_stall: objects={n} replicas=2 stall_s=30 \
         service_calls_during_stall={calls_during} transitions={transitions} \
         duplicate_events={duplicates} objects_with_duplicates={objects}"
    );
    drop(replicas);
    ensure(duplicates == 0, || {
        format!("{duplicates} duplicate transition events on {objects} objects")
    })
}

/// A network partition between one operator process and the API server: its watch fails on every
/// retry, so after `--watch-outage-grace` `/readyz` answers 503 naming the failing watch, the
/// errors are logged at warn and counted; once the partition heals it is ready again and follows
/// the run to its end.
pub async fn watch_outage_drops_readiness(env: &'static Env) -> Result<(), String> {
    use crate::support::ACCESS_KEY_ID;
    let ns = env.namespace("watchout").await?;
    let jr = unique("jr-watchout");
    env.sim
        .add_run(RunScript::new(WS, &jr).holding("Running"))
        .map_err(|e| e.to_string())?;
    let partition = env.api_partition("watchout").await?;
    let kubeconfig = partition.kubeconfig.to_string_lossy().into_owned();
    let op = env.spawn_operator(
        "watchout",
        &[
            "--label-selector",
            "e2e-process=watchout",
            "--watch-outage-grace",
            "5s",
        ],
        &[
            ("KUBECONFIG", kubeconfig.as_str()),
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", env.secret.as_str()),
        ],
    )?;
    env.create_labeled(
        &ns,
        "watched",
        spec_with(&jr, None),
        &[("e2e-process", "watchout")],
    )
    .await?;
    let ready = |want: u16| {
        let op = &op;
        move || async move {
            let (code, body) = op.http_get("/readyz").await?;
            if code == want {
                Ok(Some(body))
            } else {
                Err(format!("{code} {body}"))
            }
        }
    };
    wait_for("the run to be Running", T, || async {
        let s = env.status(&ns, "watched").await?;
        match s.state.as_deref() {
            Some("Running") => Ok(Some(())),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    wait_for("/readyz 200 before the partition", T, ready(200)).await?;

    partition.cut();
    let cut_at = std::time::Instant::now();
    let body = wait_for("/readyz 503 during the partition", T, ready(503)).await?;
    let unready_after = cut_at.elapsed();
    ensure(
        body.contains("watching SparkJobRunRef objects has failed"),
        || format!("/readyz body {body:?}"),
    )?;
    ensure(unready_after >= Duration::from_secs(5), || {
        format!("unready {unready_after:?} after the cut, before the 5 s grace")
    })?;
    let (_, metrics) = op.http_get("/metrics").await?;
    let errors = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sparkjobrun_watch_errors_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    ensure(errors >= 2.0, || format!("{errors} watch errors counted"))?;

    partition.heal();
    let healed_at = std::time::Instant::now();
    wait_for("/readyz 200 after the partition", T, ready(200)).await?;
    let ready_after = healed_at.elapsed();
    // The watcher says nothing when a retry works; readiness returns once the next error is
    // overdue, which early in an outage is seconds, not the 45 s that ends an error streak.
    ensure(ready_after < Duration::from_secs(30), || {
        format!("ready again only {ready_after:?} after the partition healed")
    })?;
    env.sim
        .add_run(RunScript::new(WS, &jr).holding("Success"))
        .map_err(|e| e.to_string())?;
    wait_for(
        "the run's end to be seen after the partition",
        T,
        || async {
            let s = env.status(&ns, "watched").await?;
            match s.state.as_deref() {
                Some("Success") => Ok(Some(())),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await?;
    let log = op.log_text();
    let warned = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("watching SparkJobRunRef objects failed"))
        .count();
    println!(
        "e2e-count watch-outage unready_after_s={:.1} ready_after_heal_s={:.1} watch_errors={errors} warn_lines={warned}",
        unready_after.as_secs_f64(),
        ready_after.as_secs_f64()
    );
    ensure(warned >= 2, || {
        format!("{warned} warn lines about the watch in the log:\n{log}")
    })?;
    op.signal(libc::SIGTERM);
    Ok(())
}

/// How a case takes the lease away from a leader that does not know it yet.
#[derive(Debug, Clone, Copy)]
enum Deposition {
    /// SIGSTOP past the lease, SIGCONT once the other replica leads.
    Paused,
    /// A ValidatingAdmissionPolicy refuses the leader's renewals of its Lease (403).
    RenewalsRefused,
}

/// 9.3(b) and 9.2: a leader paused past its lease resumes without a single status write or event
/// after the other replica took over, and ends (non-zero) instead of lingering as a zombie.
pub async fn paused_leader_stays_silent(env: &'static Env) -> Result<(), String> {
    deposed_leader_stays_silent(env, "paused", Deposition::Paused).await
}

/// 9.3(a): a leader whose lease renewals are refused stops acting before the lease could pass to
/// the other replica, and ends.
pub async fn refused_renewals_stop_the_leader(env: &'static Env) -> Result<(), String> {
    deposed_leader_stays_silent(env, "refused", Deposition::RenewalsRefused).await
}

async fn deposed_leader_stays_silent(
    env: &'static Env,
    label: &str,
    how: Deposition,
) -> Result<(), String> {
    let ns = env.namespace(label).await?;
    let mut replicas = two_replicas(env, &ns, label, &["--log-format", "json"]).await?;
    let ids = ["a", "b"];
    let mut leader = 0;
    for (i, r) in replicas.iter().enumerate() {
        if r.http_get("/leaderz").await.map(|r| r.0).unwrap_or(0) == 200 {
            leader = i;
        }
    }
    let follower = 1 - leader;
    // Ends from 4 s to 31 s after the start: transitions before, during and after the takeover.
    let n = 18;
    let mut made = Vec::new();
    for i in 0..n {
        let (name, jr) = (format!("r{i:02}"), unique("jr-deposed"));
        env.sim
            .add_run(ending(&jr, 4.0 + (i as f64) * 1.5, i))
            .map_err(|e| e.to_string())?;
        env.create_labeled(&ns, &name, spec_with(&jr, None), &[("e2e-process", label)])
            .await?;
        made.push((name, jr));
    }
    for (name, _) in &made {
        wait_for(&format!("{ns}/{name} observed"), T, || async {
            let s = env.status(&ns, name).await?;
            Ok(s.state.is_some().then_some(()))
        })
        .await?;
    }
    let lease = format!("e2e-{ns}");
    let refusal = match how {
        Deposition::Paused => {
            replicas[leader].signal(libc::SIGSTOP);
            None
        }
        Deposition::RenewalsRefused => Some(refuse_renewals(env, &lease, ids[leader]).await?),
    };
    let takeover = wait_for("the other replica to take the lease", T, || async {
        let lease = lease_holder(env, &lease).await?;
        Ok(lease
            .filter(|(holder, _)| holder == ids[follower])
            .map(|(_, at)| at))
    })
    .await;
    if matches!(how, Deposition::Paused) {
        replicas[leader].signal(libc::SIGCONT);
    }
    let takeover = takeover?;
    let exit = tokio::time::timeout(Duration::from_secs(30), replicas[leader].child.wait()).await;
    if let Some(r) = refusal {
        r.lift(env).await?;
    }
    let exit = match exit {
        Ok(Ok(status)) => status.code(),
        Ok(Err(e)) => return Err(format!("waiting for the deposed leader: {e}")),
        Err(_) => return Err("the deposed leader did not end within 30 s of the takeover".into()),
    };
    wait_ended(env, &ns, &made).await?;
    let log = replicas[leader].log_text();
    let writes_after = log_lines_after(&log, "status written", takeover);
    let writes_all = log_lines_after(&log, "status written", jiff::Timestamp::MIN);
    let mut events_after = 0;
    for (name, _) in &made {
        events_after += env
            .events(&ns, name)
            .await?
            .iter()
            .filter(|e| e.reporting_instance.as_deref() == Some(ids[leader]))
            .filter(|e| e.event_time.as_ref().is_some_and(|t| t.0 >= takeover))
            .count();
    }
    let (transitions, duplicates, objects) = count_announcements(env, &ns, &made).await?;
    println!(
        "e2e-count deposed_leader how={how:?} objects={n} writes_by_it={writes_all} writes_after_takeover={writes_after} \
         events_after_takeover={events_after} transitions={transitions} \
         duplicate_events={duplicates} objects_with_duplicates={objects} exit_code={exit:?}"
    );
    drop(replicas);
    ensure(writes_all >= n, || {
        format!("only {writes_all} status writes found in the deposed leader's log")
    })?;
    ensure(writes_after == 0 && events_after == 0, || {
        format!(
            "the deposed leader wrote {writes_after} statuses and {events_after} events after the takeover"
        )
    })?;
    ensure(duplicates == 0, || {
        format!("{duplicates} duplicate transition events on {objects} objects")
    })?;
    ensure(exit.is_some_and(|c| c != 0), || {
        format!("the deposed leader ended with {exit:?}, not a failure code")
    })
}

/// The holder of the Lease `name` and when it acquired it (server time).
async fn lease_holder(env: &Env, name: &str) -> Result<Option<(String, jiff::Timestamp)>, String> {
    let api: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(env.admin.clone(), crate::support::RELEASE_NAMESPACE);
    let lease = api.get_opt(name).await.map_err(|e| e.to_string())?;
    Ok(lease
        .and_then(|l| l.spec)
        .and_then(|s| Some((s.holder_identity?, s.acquire_time?.0))))
}

/// JSON log lines with `message` whose timestamp is at or after `since`.
fn log_lines_after(log: &str, message: &str, since: jiff::Timestamp) -> usize {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == message)
        .filter(|v| {
            v["timestamp"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .is_some_and(|t| t >= since)
        })
        .count()
}

/// Refuses every update of the Lease `lease` that keeps `holder` as its holder: the holder's
/// renewals fail with 403 while another replica may still take the lease.
async fn refuse_renewals(env: &Env, lease: &str, holder: &str) -> Result<StatusRefusal, String> {
    let rule = json!({
        "apiGroups": ["coordination.k8s.io"], "apiVersions": ["*"],
        "operations": ["UPDATE"], "resources": ["leases"],
    });
    let validation = json!({
        "expression": format!(
            "object.metadata.name != '{lease}' || !has(object.spec.holderIdentity) || object.spec.holderIdentity != '{holder}'"
        ),
        "message": "lease renewals refused (e2e)",
    });
    let name = format!("e2e-refuse-renewals-{lease}");
    install_policy(
        env,
        name,
        rule,
        validation,
        crate::support::RELEASE_NAMESPACE,
    )
    .await
}

/// 9.4: overload. 120 objects in one namespace and one in another, all polled every 5 s, with a
/// budget of 4 calls/s (24/s are asked for). Every object gets polled, the big namespace's objects
/// in turn, and the small namespace keeps its cadence within twice its interval.
pub async fn overload_is_shared_fairly(env: &'static Env) -> Result<(), String> {
    use crate::support::ACCESS_KEY_ID;
    let big = env.namespace("crowd").await?;
    let small = env.namespace("lonely").await?;
    let op = env.spawn_operator(
        "overload",
        &[
            "--label-selector",
            "e2e-process=overload",
            "--rate-limit",
            "4",
            "--rate-burst",
            "4",
        ],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", env.secret.as_str()),
        ],
    )?;
    let every_5s = |jr: &str| {
        let mut s = spec_with(jr, None);
        s.poll_interval = Some("5s".into());
        s
    };
    let label = [("e2e-process", "overload")];
    let mut crowd = Vec::new();
    for i in 0..120 {
        let jr = unique("jr-crowd");
        env.sim
            .add_run(RunScript::new(WS, &jr).holding("Running"))
            .map_err(|e| e.to_string())?;
        env.create_labeled(&big, &format!("c{i:03}"), every_5s(&jr), &label)
            .await?;
        crowd.push(jr);
    }
    let lonely = unique("jr-lonely");
    env.sim
        .add_run(RunScript::new(WS, &lonely).holding("Running"))
        .map_err(|e| e.to_string())?;
    env.create_labeled(&small, "alone", every_5s(&lonely), &label)
        .await?;
    // Watch the small namespace's calls for 80 s, sampling the simulator's count.
    let started = tokio::time::Instant::now();
    let mut last_change = started;
    let mut last_count = env.sim.calls_for(&lonely);
    let mut longest_gap = Duration::ZERO;
    let mut first_seen = None;
    while started.elapsed() < Duration::from_secs(80) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let count = env.sim.calls_for(&lonely);
        if count != last_count {
            let now = tokio::time::Instant::now();
            if first_seen.is_some() {
                longest_gap = longest_gap.max(now - last_change);
            }
            first_seen.get_or_insert(now - started);
            last_change = now;
            last_count = count;
        }
    }
    longest_gap = longest_gap.max(last_change.elapsed());
    let polls: Vec<u64> = crowd.iter().map(|jr| env.sim.calls_for(jr)).collect();
    let never = polls.iter().filter(|c| **c == 0).count();
    let once = polls.iter().filter(|c| **c == 1).count();
    let total: u64 = polls.iter().sum();
    let (_, metrics) = op.http_get("/metrics").await?;
    let gauge = |name: &str| {
        metrics.lines().find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    println!(
        "e2e-count overload objects=121 rate=4/s asked=24.2/s crowd_calls={total} crowd_never_polled={never} \
         crowd_polled_once={once} lonely_calls={last_count} lonely_first_s={:.1} lonely_longest_gap_s={:.1} \
         overdue_objects={:?} oldest_overdue_s={:?}",
        first_seen.map_or(f64::NAN, |d| d.as_secs_f64()),
        longest_gap.as_secs_f64(),
        gauge("sparkjobrun_poll_overdue_objects"),
        gauge("sparkjobrun_poll_oldest_overdue_seconds"),
    );
    ensure(never == 0 && once == 0, || {
        format!("{never} crowd objects never polled and {once} only once in 80 s")
    })?;
    ensure(longest_gap <= Duration::from_secs(10), || {
        format!("the small namespace waited {longest_gap:?} between polls (interval 5 s)")
    })?;
    ensure(
        gauge("sparkjobrun_poll_overdue_objects").is_some_and(|v| v > 0.0),
        || "the overload shows no overdue objects".into(),
    )
}
