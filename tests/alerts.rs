//! The chart's alert rules (metrics.prometheusRule), rendered by helm and unit-tested with
//! promtool (Debian's `prometheus` package, listed in tools/apt-packages.txt; a missing promtool is
//! a failure, never a skip): every alert fires on the synthetic series of
//! tests/fixtures/alerts_test.yaml and stays quiet on others, links its runbook section in
//! docs/runbooks.md, and the leader alert exists only where leader election does.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;
use sparkjobrun_operator::kit::devenv;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn promtool() -> PathBuf {
    let path = std::env::var_os("PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("promtool"));
    let ok = Command::new(&path)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "promtool not found ({}): install the Debian packages in tools/apt-packages.txt",
        path.display()
    );
    path
}

/// The rule groups the chart renders with `extra` values, as a Prometheus rule file.
fn rendered_rules(extra: &[&str]) -> Option<Value> {
    let helm = devenv::tool("HELM", "helm").unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(helm)
        .args(["template", "t"])
        .arg(repo().join("charts/sparkjobrun-operator"))
        .args(["--set", "metrics.prometheusRule.enabled=true"])
        .args(extra)
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|doc| Value::deserialize(doc).ok())
        .find(|doc| doc["kind"].as_str() == Some("PrometheusRule"))
        .map(|rule| {
            let mut file = serde_yaml::Mapping::new();
            file.insert("groups".into(), rule["spec"]["groups"].clone());
            Value::Mapping(file)
        })
}

use serde::Deserialize;

fn alerts(rules: &Value) -> Vec<&Value> {
    rules["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_sequence().into_iter().flatten())
        .collect()
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn every_alert_fires_and_stays_quiet_as_its_unit_tests_say() {
    let promtool = promtool();
    let rules = rendered_rules(&["--set", "replicaCount=2"]).expect("a PrometheusRule");
    let dir = tempfile::tempdir().expect("temp dir");
    let rule_file = dir.path().join("rules.yaml");
    std::fs::write(&rule_file, serde_yaml::to_string(&rules).expect("yaml")).expect("write");
    let (ok, text) = run(Command::new(&promtool)
        .arg("check")
        .arg("rules")
        .arg(&rule_file));
    assert!(ok, "promtool check rules:\n{text}");

    let fixture = repo().join("tests/fixtures/alerts_test.yaml");
    let mut tests: Value =
        serde_yaml::from_str(&std::fs::read_to_string(&fixture).expect("fixture")).expect("yaml");
    tests["rule_files"] = Value::Sequence(vec![rule_file.to_string_lossy().into_owned().into()]);
    let test_file = dir.path().join("alerts_test.yaml");
    std::fs::write(&test_file, serde_yaml::to_string(&tests).expect("yaml")).expect("write");
    let (ok, text) = run(Command::new(&promtool)
        .arg("test")
        .arg("rules")
        .arg(&test_file));
    assert!(ok, "promtool test rules:\n{text}");

    // Every alert is tested both firing and not firing.
    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for case in tests["tests"].as_sequence().into_iter().flatten() {
        for check in case["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = check["alertname"].as_str().unwrap_or_default().to_owned();
            match check["exp_alerts"].as_sequence() {
                Some(list) if !list.is_empty() => firing.insert(name),
                _ => quiet.insert(name),
            };
        }
    }
    let names: BTreeSet<String> = alerts(&rules)
        .iter()
        .filter_map(|r| r["alert"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(names.len(), 7, "{names:?}");
    assert_eq!(firing, names, "alerts without a firing case");
    assert_eq!(quiet, names, "alerts without a quiet case");
}

#[test]
fn every_alert_links_its_runbook_section() {
    let rules = rendered_rules(&["--set", "replicaCount=2"]).expect("a PrometheusRule");
    let runbooks = std::fs::read_to_string(repo().join("docs/runbooks.md")).expect("runbooks");
    let anchors: BTreeSet<String> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    for alert in alerts(&rules) {
        let name = alert["alert"].as_str().expect("alert name");
        let url = alert["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_default();
        let anchor = url.rsplit_once('#').map(|(_, a)| a).unwrap_or_default();
        assert_eq!(anchor, name.to_lowercase(), "{name}: {url}");
        assert!(
            anchors.contains(anchor),
            "docs/runbooks.md has no section for {name}"
        );
        for key in ["summary", "description"] {
            assert!(
                alert["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{name} lacks {key}"
            );
        }
    }
}

#[test]
fn alerts_are_off_by_default_and_the_leader_alert_needs_election() {
    let helm = devenv::tool("HELM", "helm").unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(helm)
        .args(["template", "t"])
        .arg(repo().join("charts/sparkjobrun-operator"))
        .output()
        .expect("helm runs");
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("kind: PrometheusRule"));
    let single = rendered_rules(&[]).expect("a PrometheusRule");
    let names: Vec<&str> = alerts(&single)
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    assert!(!names.contains(&"SparkJobRunOperatorNoLeader"), "{names:?}");
    assert_eq!(names.len(), 6);
}
