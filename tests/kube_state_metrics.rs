//! docs/kube-state-metrics.yaml against a real kube-state-metrics (built from Go modules by
//! tools/ensure-tools.sh) and a real kube-apiserver: two refs with the statuses the operator
//! writes become per-object series of state, terminal and conditions. Every field path the
//! configuration reads is also checked against the CRD's schema, so a renamed field fails here.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_yaml::Value;
use sparkjobrun_operator::kit::devenv::{self, ControlPlane, ControlPlaneOptions};

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/kube-state-metrics.yaml");
const CRD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crds/sparkjobruns.emrspark.io.yaml"
);

fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).expect("read")).expect("YAML")
}

/// Every `[a, b, ...]` path of the configuration, rooted at the object.
fn paths(config: &Value) -> Vec<Vec<String>> {
    fn strings(v: &Value) -> Option<Vec<String>> {
        v.as_sequence()?
            .iter()
            .map(|s| s.as_str().map(str::to_owned))
            .collect()
    }
    let mut out = Vec::new();
    for resource in config["spec"]["resources"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        for (_, p) in resource["labelsFromPath"]
            .as_mapping()
            .into_iter()
            .flatten()
        {
            out.extend(strings(p));
        }
        for metric in resource["metrics"].as_sequence().into_iter().flatten() {
            let each = &metric["each"];
            for body in [&each["info"], &each["stateSet"], &each["gauge"]] {
                let base = strings(&body["path"]).unwrap_or_default();
                if !base.is_empty() {
                    out.push(base.clone());
                }
                for (_, p) in body["labelsFromPath"].as_mapping().into_iter().flatten() {
                    if let Some(rel) = strings(p) {
                        out.push(base.iter().cloned().chain(rel).collect());
                    }
                }
                if let Some(rel) = strings(&body["valueFrom"]) {
                    out.push(base.iter().cloned().chain(rel).collect());
                }
            }
        }
    }
    out
}

#[test]
fn every_path_of_the_configuration_is_in_the_crd_schema() {
    let crd = yaml(CRD);
    let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let config = yaml(CONFIG);
    let all = paths(&config);
    assert!(all.len() >= 9, "{all:?}");
    for path in all {
        if path.first().map(String::as_str) == Some("metadata") {
            continue;
        }
        let mut node = root;
        for part in &path {
            node = if node["type"] == "array" {
                &node["items"]["properties"][part.as_str()]
            } else {
                &node["properties"][part.as_str()]
            };
            assert!(!node.is_null(), "{path:?}: {part} is not in the CRD schema");
        }
    }
}

/// A sample line of `metrics` for `name` with all of `labels`.
fn sample<'a>(metrics: &'a str, name: &str, labels: &[(&str, &str)]) -> Option<&'a str> {
    metrics.lines().find(|line| {
        line.starts_with(&format!("{name}{{"))
            && labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
    })
}

fn value(line: Option<&str>) -> Option<f64> {
    line?.rsplit_once(' ')?.1.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_state_metrics_turns_refs_into_series() {
    let ksm = devenv::tool("KUBE_STATE_METRICS", "kube-state-metrics")
        .unwrap_or_else(|e| panic!("{e}: run tools/ensure-tools.sh"));
    let mut plane = ControlPlane::start(ControlPlaneOptions::default())
        .await
        .unwrap_or_else(|e| panic!("control plane did not start: {e}"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let telemetry = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = None;
    let checks = async {
        plane
            .apply_yaml_file(CRD)
            .await
            .map_err(|e| e.to_string())?;
        plane
            .wait_crd_established("sparkjobruns.emrspark.io")
            .await
            .map_err(|e| e.to_string())?;
        let refs = r#"
apiVersion: v1
kind: Namespace
metadata: {name: data}
---
apiVersion: emrspark.io/v1alpha1
kind: SparkJobRunRef
metadata: {name: running, namespace: data}
spec: {workspaceId: w-abc, jobRunId: jr-running, regionId: cn-hangzhou}
---
apiVersion: emrspark.io/v1alpha1
kind: SparkJobRunRef
metadata: {name: failed, namespace: data}
spec: {workspaceId: w-abc, jobRunId: jr-failed, regionId: cn-hangzhou}
"#;
        plane.apply_yaml(refs).await.map_err(|e| e.to_string())?;
        let now = "2026-12-03T10:00:00Z";
        let condition = |t: &str, s: &str, r: &str| {
            serde_json::json!({"type": t, "status": s, "reason": r, "message": "m",
                               "lastTransitionTime": now, "observedGeneration": 1})
        };
        let statuses = [
            (
                "running",
                serde_json::json!({"state": "Running", "terminal": false, "regionId": "cn-hangzhou",
                "conditions": [condition("Ready", "False", "Running"), condition("Reconciling", "True", "Running"),
                               condition("Finished", "False", "Running"), condition("Synced", "True", "Polled")]}),
            ),
            (
                "failed",
                serde_json::json!({"state": "Failed", "terminal": true, "regionId": "cn-hangzhou",
                "conditions": [condition("Ready", "False", "Failed"), condition("Failed", "True", "Failed"),
                               condition("Finished", "True", "Failed"), condition("Synced", "True", "Polled")]}),
            ),
        ];
        for (name, status) in statuses {
            let patch = serde_json::json!({ "status": status }).to_string();
            let out = plane
                .kubectl(&[
                    "patch",
                    "sparkjobrun",
                    name,
                    "-n",
                    "data",
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    &patch,
                ])
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "patching {name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        child = Some(
            Command::new(&ksm)
                .arg("--kubeconfig")
                .arg(plane.kubeconfig_admin_path())
                .args([
                    "--custom-resource-state-only",
                    "--custom-resource-state-config-file",
                    CONFIG,
                ])
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args([
                    "--telemetry-host",
                    "127.0.0.1",
                    "--telemetry-port",
                    &telemetry.to_string(),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("starting kube-state-metrics: {e}"))?,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        let metrics = loop {
            let got = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
                .await
                .ok()
                .map(|r| r.text());
            if let Some(body) = got
                && let Ok(body) = body.await
                && body.contains("sparkjobrun_ref_state{")
                && body.contains("name=\"failed\"")
                && body.contains("name=\"running\"")
            {
                break body;
            }
            if Instant::now() > deadline {
                return Err("kube-state-metrics exported no sparkjobrun_ref series in 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let expect = [
            (
                "sparkjobrun_ref_state",
                vec![("name", "running"), ("state", "Running")],
                1.0,
            ),
            (
                "sparkjobrun_ref_state",
                vec![("name", "running"), ("state", "Failed")],
                0.0,
            ),
            (
                "sparkjobrun_ref_state",
                vec![("name", "failed"), ("state", "Failed")],
                1.0,
            ),
            ("sparkjobrun_ref_terminal", vec![("name", "running")], 0.0),
            ("sparkjobrun_ref_terminal", vec![("name", "failed")], 1.0),
            (
                "sparkjobrun_ref_condition",
                vec![("name", "failed"), ("type", "Failed"), ("reason", "Failed")],
                1.0,
            ),
            (
                "sparkjobrun_ref_condition",
                vec![("name", "running"), ("type", "Finished")],
                0.0,
            ),
            (
                "sparkjobrun_ref_info",
                vec![
                    ("name", "failed"),
                    ("namespace", "data"),
                    ("job_run_id", "jr-failed"),
                    ("region_id", "cn-hangzhou"),
                ],
                1.0,
            ),
        ];
        let mut failures = Vec::new();
        for (name, labels, want) in &expect {
            let line = sample(&metrics, name, labels);
            if value(line) != Some(*want) {
                failures.push(format!("{name} {labels:?}: {line:?}, want {want}"));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(format!("{}\n--- metrics:\n{metrics}", failures.join("\n")))
        }
    };
    let result = checks.await;
    if let Some(mut c) = child {
        let _ = c.kill();
        let _ = c.wait();
    }
    if let Err(e) = result {
        let logs = plane.keep_logs();
        panic!("{e}\nlogs kept: {}", logs.kube_apiserver.display());
    }
    plane.stop();
}
