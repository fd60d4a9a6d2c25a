//! The Flux and Argo Workflows examples under docs/gitops: they must name the CRD's real group,
//! version and kind, use spec fields the CRD has, and wait on the exact terminal states the
//! operator mirrors.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use sparkjobrun_operator::state::StateClass;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| serde_yaml::Value::deserialize(doc).expect("YAML parses"))
        .filter(|v| !v.is_null())
        .map(|v| serde_json::to_value(v).expect("YAML converts to JSON"))
        .collect()
}

fn read_documents(relative: &str) -> Vec<Value> {
    let path = repo().join(relative);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    documents(&text)
}

/// apiVersion and kind of SparkJobRunRef, and its spec properties and required fields, from the
/// committed CRD.
struct CrdFacts {
    api_version: String,
    kind: String,
    spec_properties: BTreeSet<String>,
    spec_required: BTreeSet<String>,
}

fn crd_facts() -> CrdFacts {
    let docs = read_documents("crds/sparkjobruns.emrspark.io.yaml");
    let crd = &docs[0];
    let group = crd["spec"]["group"].as_str().expect("group");
    let version = &crd["spec"]["versions"][0];
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    CrdFacts {
        api_version: format!("{group}/{}", version["name"].as_str().expect("version")),
        kind: crd["spec"]["names"]["kind"]
            .as_str()
            .expect("kind")
            .to_owned(),
        spec_properties: keys(&spec["properties"]),
        spec_required: spec["required"]
            .as_array()
            .expect("required")
            .iter()
            .map(|r| r.as_str().expect("string").to_owned())
            .collect(),
    }
}

fn by_name<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn flux_kustomizations_gate_on_the_run() {
    let crd = crd_facts();
    let docs = read_documents("docs/gitops/flux-kustomization.yaml");
    assert_eq!(docs.len(), 2, "two Kustomizations");
    for d in &docs {
        assert_eq!(d["apiVersion"], "kustomize.toolkit.fluxcd.io/v1");
        assert_eq!(d["kind"], "Kustomization");
        // Without a timeout Flux gives up after `interval`, often shorter than a Spark run.
        assert!(
            d["spec"]["timeout"].is_string(),
            "{} has no timeout",
            d["metadata"]["name"]
        );
    }

    let run = by_name(&docs, "Kustomization", "nightly-etl-run");
    // Flux ignores healthChecks when wait is true, so the explicit check needs wait off.
    assert_eq!(run["spec"]["wait"], false);
    let checks = run["spec"]["healthChecks"]
        .as_array()
        .expect("healthChecks");
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0]["apiVersion"], crd.api_version.as_str());
    assert_eq!(checks[0]["kind"], crd.kind.as_str());
    assert_eq!(checks[0]["name"], "nightly-etl");
    assert_eq!(checks[0]["namespace"], run["spec"]["targetNamespace"]);

    let report = by_name(&docs, "Kustomization", "nightly-etl-report");
    assert_eq!(report["spec"]["wait"], true);
    assert_eq!(
        report["spec"]["dependsOn"],
        serde_json::json!([{"name": "nightly-etl-run"}])
    );
}

/// `status.state == X` -> X; `status.state in (X, Y)` -> {X, Y}.
fn condition_states(condition: &str) -> BTreeSet<String> {
    if let Some(value) = condition.strip_prefix("status.state == ") {
        return BTreeSet::from([value.trim().to_owned()]);
    }
    let list = condition
        .strip_prefix("status.state in (")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not a status.state condition: {condition}"));
    list.split(',').map(|s| s.trim().to_owned()).collect()
}

#[test]
fn argo_workflow_waits_on_the_terminal_states() {
    let crd = crd_facts();
    let docs = read_documents("docs/gitops/argo-workflows-wait.yaml");
    let template = by_name(&docs, "WorkflowTemplate", "wait-for-spark-job-run");
    assert_eq!(template["apiVersion"], "argoproj.io/v1alpha1");
    let entry = template["spec"]["entrypoint"].as_str().expect("entrypoint");
    let follow = template["spec"]["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .find(|t| t["name"] == entry)
        .expect("the entrypoint template");
    assert!(
        follow["activeDeadlineSeconds"]
            .as_u64()
            .is_some_and(|s| s > 0),
        "a run that is never found must not block the workflow forever"
    );
    let resource = &follow["resource"];
    assert_eq!(resource["action"], "create");

    let success = resource["successCondition"]
        .as_str()
        .expect("successCondition");
    let failure = resource["failureCondition"]
        .as_str()
        .expect("failureCondition");
    assert_eq!(success, "status.state == Success");
    assert_eq!(failure, "status.state in (Failed, Cancelled)");
    // The strings are exactly the operator's terminal states, split by outcome.
    let success_states = condition_states(success);
    let failure_states = condition_states(failure);
    for s in &success_states {
        assert_eq!(StateClass::of(s), StateClass::Succeeded, "{s}");
    }
    for s in &failure_states {
        assert!(
            matches!(
                StateClass::of(s),
                StateClass::Failed | StateClass::Cancelled
            ),
            "{s} is not a failed state"
        );
    }
    let terminal: BTreeSet<String> = success_states.union(&failure_states).cloned().collect();
    let expected: BTreeSet<String> = [
        "Submitted",
        "Pending",
        "Running",
        "Cancelling",
        "CancelFailed",
        "Success",
        "Failed",
        "Cancelled",
    ]
    .into_iter()
    .filter(|s| StateClass::of(s).is_terminal())
    .map(str::to_owned)
    .collect();
    assert_eq!(terminal, expected, "every terminal state ends the step");

    // The manifest the step creates is a valid-looking SparkJobRunRef.
    let manifest = resource["manifest"].as_str().expect("manifest");
    let object = &documents(manifest)[0];
    assert_eq!(object["apiVersion"], crd.api_version.as_str());
    assert_eq!(object["kind"], crd.kind.as_str());
    let spec_keys: BTreeSet<String> = object["spec"]
        .as_object()
        .expect("spec")
        .keys()
        .cloned()
        .collect();
    assert!(
        spec_keys.is_subset(&crd.spec_properties),
        "spec fields {spec_keys:?} not all in the CRD {:?}",
        crd.spec_properties
    );
    assert!(
        crd.spec_required.is_subset(&spec_keys),
        "manifest misses required {:?}",
        crd.spec_required
    );

    // The step's ServiceAccount can create and read the references.
    let sa = template["spec"]["serviceAccountName"].as_str().expect("SA");
    by_name(&docs, "ServiceAccount", sa);
    let role = by_name(&docs, "Role", sa);
    let group = crd.api_version.split('/').next().expect("group");
    let rule = role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["apiGroups"] == serde_json::json!([group]))
        .expect("a rule for the CRD's group");
    for verb in ["create", "get"] {
        assert!(
            rule["verbs"]
                .as_array()
                .expect("verbs")
                .iter()
                .any(|v| v == verb),
            "the Role cannot {verb} sparkjobruns"
        );
    }
    let binding = by_name(&docs, "RoleBinding", sa);
    assert_eq!(binding["roleRef"]["name"], sa);
    assert_eq!(binding["subjects"][0]["name"], sa);
}

#[test]
fn readme_names_every_example() {
    let readme = std::fs::read_to_string(repo().join("docs/gitops/README.md")).expect("README");
    for file in [
        "flux-kustomization.yaml",
        "argo-workflows-wait.yaml",
        "health.lua",
        "status.state == Success",
        "status.state in (Failed, Cancelled)",
    ] {
        assert!(
            readme.contains(file),
            "docs/gitops/README.md does not mention {file}"
        );
    }
}

#[test]
fn readme_lists_every_reason() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let start = readme.find("<!-- reasons -->").expect("reasons marker");
    let end = readme.find("<!-- /reasons -->").expect("end marker");
    let listed: BTreeSet<&str> = readme[start..end]
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| !w.contains(' ') && !w.contains('.'))
        .collect();
    let code: BTreeSet<&str> = sparkjobrun_operator::conditions::Reason::ALL
        .iter()
        .map(|r| r.as_str())
        .collect();
    let listed: BTreeSet<&str> = listed
        .into_iter()
        .filter(|w| *w != "pollInterval")
        .collect();
    assert_eq!(
        listed, code,
        "README reason list and conditions::Reason differ"
    );
}
