//! The Argo CD health script docs/gitops/argocd/emrspark.io/SparkJobRunRef/health.lua, run by a
//! real Lua interpreter: every case of its health_test.yaml (Argo CD's own test layout), and the
//! verdicts for statuses built by the operator's condition code, so the script cannot drift
//! from the vocabulary the operator writes.
//!
//! Lua comes from the packages in tools/apt-packages.txt. A missing interpreter is a failure,
//! never a skip.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Deserialize;
use serde_json::{Value, json};
use sparkjobrun_operator::conditions::{self, Knowledge, Reason, Sync};

const SCRIPT_DIR: &str = "docs/gitops/argocd/emrspark.io/SparkJobRunRef";
const RUNNER: &str = "docs/gitops/argocd/run_health_tests.lua";

#[derive(Debug, Deserialize)]
struct HealthTests {
    tests: Vec<HealthCase>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HealthCase {
    health_status: Verdict,
    input_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Verdict {
    status: String,
    message: String,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn script_dir() -> PathBuf {
    repo().join(SCRIPT_DIR)
}

/// The first Lua interpreter that answers `-v`.
fn lua() -> &'static str {
    ["lua5.4", "lua5.3", "lua"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("-v")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .unwrap_or_else(|| {
            panic!(
                "no Lua interpreter (lua5.4, lua5.3 or lua) on PATH: install the Debian packages \
                 listed in tools/apt-packages.txt (apt-get install $(cat tools/apt-packages.txt))"
            )
        })
}

/// Runs `script` on each object; per object the verdict or the script's error.
fn run_script(script: &Path, objects: &[Value]) -> Vec<Result<Verdict, String>> {
    run_lua(script, objects, "health")
        .into_iter()
        .map(|r| r.and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string())))
        .collect()
}

/// Runs `script` in `mode` (health, action, discovery) on each object; per object the fields
/// the runner reports, or the script's error.
fn run_lua(script: &Path, objects: &[Value], mode: &str) -> Vec<Result<Value, String>> {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = dir.path().join("cases.json");
    std::fs::write(
        &cases,
        serde_json::to_vec(objects).expect("objects serialize"),
    )
    .expect("write cases.json");
    let out = Command::new(lua())
        .arg(repo().join(RUNNER))
        .arg(script)
        .arg(&cases)
        .arg(mode)
        .output()
        .expect("lua runs");
    assert!(
        out.status.success(),
        "{RUNNER} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{RUNNER} printed no JSON array ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(results.len(), objects.len(), "one result per object");
    results
        .into_iter()
        .map(|r| match r["error"].as_str() {
            Some(e) => Err(e.to_owned()),
            None => Ok(r),
        })
        .collect()
}

fn run_health(objects: &[Value]) -> Vec<Result<Verdict, String>> {
    run_script(&script_dir().join("health.lua"), objects)
}

fn yaml_file_as_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    serde_json::to_value(yaml).expect("YAML converts to JSON")
}

fn verdict(status: &str, message: &str) -> Verdict {
    Verdict {
        status: status.to_owned(),
        message: message.to_owned(),
    }
}

#[test]
fn every_case_of_health_test_yaml_passes() {
    let dir = script_dir();
    let text = std::fs::read_to_string(dir.join("health_test.yaml")).expect("read health_test");
    let suite: HealthTests = serde_yaml::from_str(&text).expect("health_test.yaml parses");
    let objects: Vec<Value> = suite
        .tests
        .iter()
        .map(|case| yaml_file_as_json(&dir.join(&case.input_path)))
        .collect();
    for (case, object) in suite.tests.iter().zip(&objects) {
        assert_eq!(
            object["kind"], "SparkJobRunRef",
            "{}: not a SparkJobRunRef",
            case.input_path
        );
    }

    let results = run_health(&objects);
    let mismatches: Vec<String> = suite
        .tests
        .iter()
        .zip(results)
        .filter_map(|(case, got)| match got {
            Ok(v) if v == case.health_status => None,
            other => Some(format!(
                "{}:\n  expected {:?}\n  got      {other:?}",
                case.input_path, case.health_status
            )),
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} cases failed:\n{}",
        mismatches.len(),
        suite.tests.len(),
        mismatches.join("\n")
    );

    // Every verdict is exercised, and every sample is used by a case.
    let statuses: BTreeSet<&str> = suite
        .tests
        .iter()
        .map(|c| c.health_status.status.as_str())
        .collect();
    assert_eq!(
        statuses,
        BTreeSet::from(["Degraded", "Healthy", "Progressing"])
    );
    let used: BTreeSet<String> = suite.tests.iter().map(|c| c.input_path.clone()).collect();
    let present: BTreeSet<String> = std::fs::read_dir(dir.join("testdata"))
        .expect("read testdata")
        .map(|e| {
            format!(
                "testdata/{}",
                e.expect("dir entry").file_name().to_string_lossy()
            )
        })
        .collect();
    assert_eq!(
        used, present,
        "testdata files and health_test.yaml cases differ"
    );
}

/// An object whose status is what the operator's condition code writes for `knowledge`.
fn operator_object(knowledge: &Knowledge<'_>, sync: &Sync<'_>) -> Value {
    let now = Time("2025-05-15T02:55:14Z".parse().expect("timestamp"));
    let mut desired = conditions::outcome(knowledge, "jr-1");
    desired.push(conditions::synced(sync));
    let conds = conditions::materialize(&[], desired, Some(3), &now);
    let mut status = json!({"observedGeneration": 3, "conditions": conds});
    if let Knowledge::State { state, .. } = knowledge {
        status["state"] = json!(state);
    }
    json!({
        "apiVersion": "emrspark.io/v1alpha1",
        "kind": "SparkJobRunRef",
        "metadata": {"name": "r", "namespace": "data", "generation": 3},
        "spec": {"workspaceId": "w-1", "jobRunId": "jr-1", "regionId": "cn-hangzhou"},
        "status": status,
    })
}

fn state(s: &str) -> Knowledge<'_> {
    Knowledge::State {
        state: s,
        reason_code: None,
        reason_message: None,
    }
}

#[test]
fn verdicts_follow_the_operators_own_conditions() {
    let unauthorized = Sync::Failed {
        reason: Reason::Unauthorized,
        message: "the AccessKey was rejected",
    };
    let failed_with_reason = Knowledge::State {
        state: "Failed",
        reason_code: Some("ERR-1"),
        reason_message: Some("out of memory"),
    };
    let cases: Vec<(Knowledge<'_>, Sync<'_>, Verdict)> = vec![
        (
            Knowledge::Nothing,
            Sync::Ok,
            verdict(
                "Progressing",
                "waiting for the first GetJobRun answer for jr-1",
            ),
        ),
        (
            state("Submitted"),
            Sync::Ok,
            verdict("Progressing", "job run jr-1 is Submitted"),
        ),
        (
            state("Pending"),
            Sync::Ok,
            verdict("Progressing", "job run jr-1 is Pending"),
        ),
        (
            state("Running"),
            Sync::Ok,
            verdict("Progressing", "job run jr-1 is Running"),
        ),
        (
            state("Cancelling"),
            Sync::Ok,
            verdict("Progressing", "job run jr-1 is Cancelling"),
        ),
        (
            state("CancelFailed"),
            Sync::Ok,
            verdict(
                "Progressing",
                "CancelFailed: a cancel request for job run jr-1 failed; the run may still be alive",
            ),
        ),
        (
            state("Success"),
            Sync::Ok,
            verdict("Healthy", "job run jr-1 succeeded"),
        ),
        (
            failed_with_reason.clone(),
            Sync::Ok,
            verdict(
                "Degraded",
                "job run jr-1 ended Failed: ERR-1: out of memory",
            ),
        ),
        (
            state("Cancelled"),
            Sync::Ok,
            verdict("Degraded", "job run jr-1 ended Cancelled"),
        ),
        (
            Knowledge::NotFound {
                message: "no such run",
            },
            Sync::Ok,
            verdict("Degraded", "job run jr-1 was not found: no such run"),
        ),
        (
            state("Running"),
            unauthorized.clone(),
            verdict(
                "Progressing",
                "GetJobRun is failing (Unauthorized): the AccessKey was rejected",
            ),
        ),
        // API trouble never changes an outcome.
        (
            state("Success"),
            unauthorized.clone(),
            verdict("Healthy", "job run jr-1 succeeded"),
        ),
        (
            failed_with_reason,
            unauthorized,
            verdict(
                "Degraded",
                "job run jr-1 ended Failed: ERR-1: out of memory",
            ),
        ),
    ];
    let objects: Vec<Value> = cases
        .iter()
        .map(|(k, s, _)| operator_object(k, s))
        .collect();
    let results = run_health(&objects);
    for ((knowledge, sync, expected), got) in cases.iter().zip(results) {
        assert_eq!(got.as_ref(), Ok(expected), "{knowledge:?} with {sync:?}");
    }

    // The same Success status, read before the operator saw a newer spec, is not Healthy yet.
    let mut stale = operator_object(&state("Success"), &Sync::Ok);
    stale["metadata"]["generation"] = json!(4);
    assert_eq!(
        run_health(&[stale]).remove(0),
        Ok(verdict(
            "Progressing",
            "Waiting for the operator to observe generation 4"
        ))
    );
}

/// The runner can fail: errors and sandbox escapes come back as errors, not verdicts.
#[test]
fn the_runner_reports_script_errors_and_keeps_the_sandbox() {
    let dir = tempfile::tempdir().expect("temp dir");
    let object = json!({"kind": "SparkJobRunRef", "metadata": {"name": "r"}});
    for (name, source, expected) in [
        ("os.lua", "return {status = os.getenv('HOME')}", "os"),
        ("io.lua", "io.write('x') return {}", "io"),
        ("broken.lua", "return {status = ", "does not compile"),
        ("nil.lua", "return nil", "not a table"),
    ] {
        let script = dir.path().join(name);
        std::fs::write(&script, source).expect("write script");
        let got = run_script(&script, std::slice::from_ref(&object)).remove(0);
        match got {
            Err(e) if e.contains(expected) => {}
            other => panic!("{name}: expected an error naming {expected:?}, got {other:?}"),
        }
    }
}

/// Issue 11.1: the "refresh" resource action is offered, and running it sets the refresh
/// annotation to the current UTC time, keeping every other annotation and the rest of the object.
#[test]
fn the_refresh_action_sets_the_refresh_annotation_to_now() {
    let actions = script_dir().join("actions");
    let object = |annotations: Value| {
        json!({"apiVersion": "emrspark.io/v1alpha1", "kind": "SparkJobRunRef",
               "metadata": {"name": "nightly", "namespace": "data", "annotations": annotations},
               "spec": {"workspaceId": "w-1", "jobRunId": "jr-1"}})
    };
    let mut bare = object(Value::Null);
    bare["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("annotations");
    let objects = [
        bare,
        object(json!({"team": "data"})),
        object(json!({"emrspark.io/refresh-requested-at": "2020-01-01T00:00:00Z", "team": "data"})),
    ];
    let discovered = run_lua(&actions.join("discovery.lua"), &objects[..1], "discovery");
    assert_eq!(discovered, vec![Ok(json!({"refresh": "enabled"}))]);

    let before = jiff::Timestamp::now();
    let results = run_lua(&actions.join("refresh/action.lua"), &objects, "action");
    let after = jiff::Timestamp::now();
    for (result, annotations) in results.iter().zip(["1", "2", "2"]) {
        let fields = result.as_ref().expect("the action runs");
        assert_eq!(fields["name"], "nightly");
        assert_eq!(fields["jobRunId"], "jr-1");
        assert_eq!(fields["annotations"], annotations, "{fields}");
        let at: jiff::Timestamp = fields["refresh"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("not a UTC timestamp: {fields}"));
        // Whole seconds, so allow the second the run started in.
        assert!(
            at >= before - jiff::SignedDuration::from_secs(1) && at <= after,
            "{at}"
        );
    }
}
