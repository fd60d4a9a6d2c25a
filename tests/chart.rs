//! The Helm chart under charts/sparkjobrun-operator: lint, rendering with default and non-default
//! values, schema failures, the exact RBAC it grants, the hardening of the Deployment, and a
//! server-side dry run of everything it renders against the real kube-apiserver.
//!
//! helm comes from `$HELM` or the `tools.env` written by tools/ensure-tools.sh. A missing helm is
//! a failure, never a skip.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::{Value, json};
use sparkjobrun_operator::kit::devenv::{self, ControlPlane, ControlPlaneOptions};

const RELEASE: &str = "sjr";
const FULLNAME: &str = "sjr-sparkjobrun-operator";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    repo().join("charts/sparkjobrun-operator")
}

fn helm() -> PathBuf {
    devenv::tool("HELM", "helm").unwrap_or_else(|e| panic!("{e}: run tools/ensure-tools.sh"))
}

/// Runs helm; Ok(stdout) on success, Err(stdout + stderr) otherwise.
fn run_helm(args: &[&str]) -> Result<String, String> {
    let out = Command::new(helm())
        .args(args)
        // Keep helm's caches and config out of $HOME and away from other tests.
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("sjr-chart-helm-cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("sjr-chart-helm-config"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("sjr-chart-helm-data"),
        )
        .output()
        .expect("helm runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr).into_owned()
        ))
    }
}

/// Writes a values file into `dir` and returns its path.
fn values_file(dir: &Path, name: &str, yaml: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, yaml).expect("write values file");
    path.to_string_lossy().into_owned()
}

/// The non-default values: namespaced RBAC over two namespaces, two replicas (so leader election
/// and the PodDisruptionBudget come on), ServiceMonitor, NetworkPolicy, JSON logs, an existing
/// credentials Secret and every optional flag.
fn custom_values(watch: [&str; 2]) -> String {
    format!(
        r#"replicaCount: 2
rbac:
  mode: namespaced
watchNamespaces: [{a}, {b}]
logFormat: json
network: vpc
defaultRegion: cn-hangzhou
endpoint: https://emr-serverless-spark-vpc.cn-hangzhou.aliyuncs.com
labelSelector: "team in (data,ml)"
assumeRoleAllow: ["team-a=acs:ram::123456789012:role/emr-*", "*=acs:ram::210987654321:role/{{namespace}}-reader"]
rateLimit: 2.5
rateBurst: 5
minPollInterval: 10s
maxPollInterval: 5m
credentials:
  existingSecret: emr-ak
serviceAccount:
  annotations:
    pod-identity.alibabacloud.com/role-name: emr-reader
podLabels:
  team: data
podAnnotations:
  note: chart-test
metrics:
  port: 9090
  serviceMonitor:
    enabled: true
    labels:
      release: prometheus
networkPolicy:
  enabled: true
  apiServer:
    cidrs: [10.0.0.1/32]
"#,
        a = watch[0],
        b = watch[1]
    )
}

fn template(namespace: &str, extra: &[&str]) -> Result<String, String> {
    let chart = chart_dir();
    let mut args = vec![
        "template",
        RELEASE,
        chart.to_str().expect("utf-8 path"),
        "--namespace",
        namespace,
    ];
    args.extend_from_slice(extra);
    run_helm(&args)
}

fn render_default(namespace: &str) -> String {
    template(namespace, &[]).unwrap_or_else(|e| panic!("helm template (defaults): {e}"))
}

fn render_custom(namespace: &str, watch: [&str; 2]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = values_file(dir.path(), "custom.yaml", &custom_values(watch));
    template(namespace, &["--values", &file])
        .unwrap_or_else(|e| panic!("helm template (custom values): {e}"))
}

/// Every non-empty YAML document, as JSON for easy pointer access.
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| serde_yaml::Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .map(|v| serde_json::to_value(v).expect("YAML document converts to JSON"))
        .collect()
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

fn name_of(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or_default()
}

fn namespace_of(doc: &Value) -> Option<&str> {
    doc["metadata"]["namespace"].as_str()
}

fn only<'a>(docs: &'a [Value], wanted: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| kind(d) == wanted).collect();
    assert_eq!(found.len(), 1, "expected exactly one {wanted}");
    found[0]
}

/// Kind -> how many objects of it.
fn kinds(docs: &[Value]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for d in docs {
        *out.entry(kind(d).to_owned()).or_insert(0) += 1;
    }
    out
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("string item").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// One RBAC rule with its lists sorted, so two rules granting the same thing compare equal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rule {
    api_groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    resource_names: Vec<String>,
}

fn rules(role: &Value) -> BTreeSet<Rule> {
    let list = role["rules"].as_array().expect("role has rules");
    list.iter()
        .map(|r| {
            let sorted = |key: &str| {
                let mut v = strings(&r[key]);
                v.sort();
                v
            };
            Rule {
                api_groups: sorted("apiGroups"),
                resources: sorted("resources"),
                verbs: sorted("verbs"),
                resource_names: sorted("resourceNames"),
            }
        })
        .collect()
}

/// (apiGroup, resource, verb) triples a set of rules grants.
fn grants(rules: &BTreeSet<Rule>) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for r in rules {
        for g in &r.api_groups {
            for res in &r.resources {
                for v in &r.verbs {
                    out.insert((g.clone(), res.clone(), v.clone()));
                }
            }
        }
    }
    out
}

/// The rights the end-to-end suite runs the operator with, split into the leader-election rules
/// (ClusterRoles about `coordination.k8s.io` leases only) and everything else.
struct E2eRbac {
    base: BTreeSet<Rule>,
    leases: BTreeSet<Rule>,
}

fn e2e_rbac() -> E2eRbac {
    let text = std::fs::read_to_string(repo().join("tests/e2e/operator-rbac.yaml"))
        .expect("read tests/e2e/operator-rbac.yaml");
    let mut base = BTreeSet::new();
    let mut leases = BTreeSet::new();
    for role in documents(&text).iter().filter(|d| kind(d) == "ClusterRole") {
        let role_rules = rules(role);
        let about_leases = role_rules
            .iter()
            .all(|r| r.api_groups == ["coordination.k8s.io"] && r.resources == ["leases"]);
        if about_leases {
            leases.extend(role_rules);
        } else {
            base.extend(role_rules);
        }
    }
    assert!(
        !base.is_empty(),
        "tests/e2e/operator-rbac.yaml grants nothing"
    );
    assert!(
        !leases.is_empty(),
        "tests/e2e/operator-rbac.yaml has no leader-election (leases) ClusterRole"
    );
    E2eRbac { base, leases }
}

fn container(docs: &[Value]) -> &Value {
    let deployment = only(docs, "Deployment");
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

fn args(docs: &[Value]) -> Vec<String> {
    strings(&container(docs)["args"])
}

fn env_names(docs: &[Value]) -> Vec<String> {
    container(docs)["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| e["name"].as_str().expect("env name").to_owned())
        .collect()
}

fn env_var<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    container(docs)["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no env var {name}"))
}

#[test]
fn lint_is_clean_with_default_and_custom_values() {
    let chart = chart_dir();
    let chart = chart.to_str().expect("utf-8 path");
    let dir = tempfile::tempdir().expect("temp dir");
    let custom = values_file(dir.path(), "custom.yaml", &custom_values(["a", "b"]));
    for extra in [vec![], vec!["--values", custom.as_str()]] {
        for strict in [false, true] {
            let mut cmd = vec!["lint", chart];
            if strict {
                cmd.push("--strict");
            }
            cmd.extend(extra.iter().copied());
            let out = run_helm(&cmd).unwrap_or_else(|e| panic!("helm {cmd:?} failed:\n{e}"));
            assert!(
                !out.contains("[WARNING]") && !out.contains("[ERROR]"),
                "helm {cmd:?} reported problems:\n{out}"
            );
            assert!(
                out.contains("1 chart(s) linted, 0 chart(s) failed"),
                "{out}"
            );
        }
    }
}

#[test]
fn default_values_render_a_cluster_wide_single_replica() {
    let docs = documents(&render_default("ops"));
    let expected: BTreeMap<String, usize> = [
        ("ClusterRole", 1),
        ("ClusterRoleBinding", 1),
        ("CustomResourceDefinition", 1),
        ("Deployment", 1),
        ("Service", 1),
        ("ServiceAccount", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n))
    .collect();
    assert_eq!(kinds(&docs), expected);
    for d in &docs {
        if !matches!(
            kind(d),
            "ClusterRole" | "ClusterRoleBinding" | "CustomResourceDefinition"
        ) {
            assert_eq!(namespace_of(d), Some("ops"), "{} {}", kind(d), name_of(d));
        }
    }
    assert_eq!(
        args(&docs),
        [
            "run",
            "--metrics-addr=0.0.0.0:8080",
            "--log-format=text",
            "--network=public",
            "--observe=auto",
            "--rate-limit=10",
            "--rate-burst=20",
            "--min-poll-interval=5s",
            "--max-poll-interval=10m",
            "--leader-election=false",
        ]
    );
    // No credentials of its own unless a Secret is named.
    assert_eq!(env_names(&docs), ["POD_NAME", "RUST_LOG"]);
    assert_eq!(
        env_var(&docs, "POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    let deployment = only(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(container(&docs)["image"], "sparkjobrun-operator:0.1.0");
    let sa = only(&docs, "ServiceAccount");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        sa["metadata"]["name"]
    );
    let binding = only(&docs, "ClusterRoleBinding");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": FULLNAME, "namespace": "ops"}])
    );
    assert_eq!(binding["roleRef"]["name"], FULLNAME);
    let service = only(&docs, "Service");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "http-metrics", "port": 8080, "targetPort": "http-metrics", "protocol": "TCP"}])
    );
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn custom_values_render_namespaced_rbac_ha_and_extras() {
    let docs = documents(&render_custom("ops", ["team-a", "team-b"]));
    let expected: BTreeMap<String, usize> = [
        ("CustomResourceDefinition", 1),
        ("Deployment", 1),
        ("NetworkPolicy", 1),
        ("PodDisruptionBudget", 1),
        // One per watched namespace plus the leader-election one.
        ("Role", 3),
        ("RoleBinding", 3),
        ("Service", 1),
        ("ServiceAccount", 1),
        ("ServiceMonitor", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n))
    .collect();
    assert_eq!(kinds(&docs), expected);
    assert_eq!(
        args(&docs),
        [
            "run",
            "--metrics-addr=0.0.0.0:9090",
            "--log-format=json",
            "--network=vpc",
            "--default-region=cn-hangzhou",
            "--endpoint=https://emr-serverless-spark-vpc.cn-hangzhou.aliyuncs.com",
            "--namespace=team-a",
            "--namespace=team-b",
            "--label-selector=team in (data,ml)",
            "--assume-role-allow=team-a=acs:ram::123456789012:role/emr-*",
            "--assume-role-allow=*=acs:ram::210987654321:role/{namespace}-reader",
            "--observe=auto",
            "--rate-limit=2.5",
            "--rate-burst=5",
            "--min-poll-interval=10s",
            "--max-poll-interval=5m",
            "--leader-election=true",
            "--leader-election-namespace=ops",
            "--leader-election-lease-name=sjr-sparkjobrun-operator",
        ]
    );
    assert_eq!(
        env_names(&docs),
        [
            "POD_NAME",
            "RUST_LOG",
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            "ALIBABA_CLOUD_SECURITY_TOKEN",
        ]
    );
    assert_eq!(
        env_var(&docs, "ALIBABA_CLOUD_ACCESS_KEY_ID")["valueFrom"]["secretKeyRef"],
        json!({"name": "emr-ak", "key": "accessKeyId"})
    );
    assert_eq!(
        env_var(&docs, "ALIBABA_CLOUD_ACCESS_KEY_SECRET")["valueFrom"]["secretKeyRef"],
        json!({"name": "emr-ak", "key": "accessKeySecret"})
    );
    assert_eq!(
        env_var(&docs, "ALIBABA_CLOUD_SECURITY_TOKEN")["valueFrom"]["secretKeyRef"],
        json!({"name": "emr-ak", "key": "securityToken", "optional": true})
    );

    let deployment = only(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod_meta = &deployment["spec"]["template"]["metadata"];
    assert_eq!(pod_meta["labels"]["team"], "data");
    assert_eq!(pod_meta["annotations"], json!({"note": "chart-test"}));
    assert_eq!(
        only(&docs, "ServiceAccount")["metadata"]["annotations"],
        json!({"pod-identity.alibabacloud.com/role-name": "emr-reader"})
    );
    assert_eq!(container(&docs)["ports"][0]["containerPort"], 9090);

    let selector = &deployment["spec"]["selector"]["matchLabels"];
    let monitor = only(&docs, "ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(&monitor["spec"]["selector"]["matchLabels"], selector);
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http-metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");

    let pdb = only(&docs, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);

    let policy = only(&docs, "NetworkPolicy");
    assert_eq!(&policy["spec"]["podSelector"]["matchLabels"], selector);
    assert_eq!(
        policy["spec"]["ingress"],
        json!([{"ports": [{"port": "http-metrics", "protocol": "TCP"}]}])
    );
    assert_eq!(
        policy["spec"]["egress"],
        json!([
            {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
            {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}],
             "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}]},
            {"ports": [{"port": 443, "protocol": "TCP"}]},
            // credentials.imds is auto: on an ECS node the chain may ask instance metadata.
            {"ports": [{"port": 80, "protocol": "TCP"}],
             "to": [{"ipBlock": {"cidr": "100.100.100.200/32"}}]},
        ])
    );
    // imds off: the operator is told so and the NetworkPolicy opens nothing for it.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = values_file(
        dir.path(),
        "custom.yaml",
        &custom_values(["team-a", "team-b"]),
    );
    let off = documents(
        &template("ops", &["--values", &file, "--set", "credentials.imds=off"])
            .unwrap_or_else(|e| panic!("helm template (imds off): {e}")),
    );
    assert!(
        args(&off).contains(&"--imds=off".to_owned()),
        "{:?}",
        args(&off)
    );
    let egress = only(&off, "NetworkPolicy")["spec"]["egress"].to_string();
    assert!(!egress.contains("100.100.100.200"), "{egress}");
    // No cluster-wide rights in namespaced mode; the CRD (cluster-scoped by nature) is the only
    // object without a namespace, and crds.install=false leaves it to whoever manages CRDs.
    assert!(
        docs.iter()
            .filter(|d| kind(d) != "CustomResourceDefinition")
            .all(|d| !kind(d).starts_with("Cluster") && namespace_of(d).is_some()),
        "namespaced mode rendered a cluster-scoped object"
    );
}

#[test]
fn leader_election_and_pdb_follow_replicas_unless_forced() {
    let has = |docs: &[Value], k: &str| docs.iter().any(|d| kind(d) == k);
    let docs =
        documents(&template("ops", &["--set", "leaderElection.enabled=true"]).expect("renders"));
    assert!(args(&docs).contains(&"--leader-election=true".to_owned()));
    assert!(
        docs.iter()
            .any(|d| kind(d) == "Role" && name_of(d).ends_with("-leader-election"))
    );
    assert!(!has(&docs, "PodDisruptionBudget"));

    let docs = documents(
        &template(
            "ops",
            &[
                "--set",
                "replicaCount=3",
                "--set",
                "podDisruptionBudget.enabled=false",
            ],
        )
        .expect("renders"),
    );
    assert!(args(&docs).contains(&"--leader-election=true".to_owned()));
    assert!(!has(&docs, "PodDisruptionBudget"));

    // Two replicas that would both poll and write status are refused.
    let err = template(
        "ops",
        &[
            "--set",
            "replicaCount=2",
            "--set",
            "leaderElection.enabled=false",
        ],
    )
    .expect_err("must fail");
    assert!(err.contains("leaderElection.enabled=false"), "{err}");
}

#[test]
fn bad_values_fail_naming_the_value() {
    let cases: &[(&[&str], &str)] = &[
        (&["--set", "replicaCount=-1"], "/replicaCount"),
        (&["--set", "replicaCount=0"], "/replicaCount"),
        (&["--set-string", "replicaCount=two"], "/replicaCount"),
        (&["--set", "logFormat=xml"], "/logFormat"),
        (&["--set", "network=intranet"], "/network"),
        (&["--set", "rbac.mode=everything"], "/rbac/mode"),
        (&["--set", "assumeRoleAllow={*}"], "/assumeRoleAllow/0"),
        (
            &["--set", "metrics.prometheusRule.throttledRatio=2"],
            "/metrics/prometheusRule/throttledRatio",
        ),
        // An entry must name the namespaces it is for.
        (
            &["--set", "assumeRoleAllow={acs:ram::1:role/x}"],
            "/assumeRoleAllow/0",
        ),
        // Namespaced RBAC without namespaces would grant nothing anywhere.
        (&["--set", "rbac.mode=namespaced"], "/watchNamespaces"),
        (&["--set", "rateLimit=0"], "/rateLimit"),
        (&["--set", "rateBurst=0"], "/rateBurst"),
        (&["--set", "minPollInterval=soon"], "/minPollInterval"),
        (&["--set", "metrics.port=80"], "/metrics/port"),
        (
            &["--set", "resources.requests.cpu=lots"],
            "/resources/requests/cpu",
        ),
        (&["--set", "resources.cpu=1"], "resources"),
        (&["--set", "defaultRegion=CN_HANGZHOU"], "/defaultRegion"),
        (
            &["--set", "watchNamespaces[0]=Not_A_Namespace"],
            "/watchNamespaces/0",
        ),
        (
            &["--set", "image.pullPolicy=Sometimes"],
            "/image/pullPolicy",
        ),
        (
            &["--set", "leaderElection.enabled=maybe"],
            "/leaderElection/enabled",
        ),
        (&["--set", "strategy.type=Sometimes"], "/strategy/type"),
        (&["--set", "replicasCount=2"], "replicasCount"),
    ];
    for (args, named) in cases {
        let err = template("ops", args).expect_err(&format!("{args:?} must fail"));
        assert!(
            err.contains(named),
            "{args:?}: the error does not name {named}:\n{err}"
        );
    }
}

/// The chart's CRD (files/, rendered by templates/crd.yaml) is the generated one byte for byte,
/// and the rendered object is that CRD plus only the keep policy and the chart's labels.
#[test]
fn chart_crd_is_the_repository_crd() {
    let repo_crd = std::fs::read(repo().join("crds/sparkjobruns.emrspark.io.yaml")).expect("crds/");
    let chart_crd = std::fs::read(chart_dir().join("files/sparkjobruns.emrspark.io.yaml"))
        .expect("chart files/");
    assert!(
        repo_crd == chart_crd,
        "charts/sparkjobrun-operator/files/sparkjobruns.emrspark.io.yaml differs from crds/: copy it again"
    );
    assert!(
        !chart_dir().join("crds").exists(),
        "a chart crds/ folder would be installed once and never upgraded"
    );
    let docs = documents(&render_default("ops"));
    let rendered = docs
        .iter()
        .find(|d| kind(d) == "CustomResourceDefinition")
        .expect("the CRD is rendered");
    let mut expected: Value = serde_json::to_value(
        serde_yaml::from_slice::<serde_yaml::Value>(&repo_crd).expect("CRD YAML"),
    )
    .expect("JSON");
    let mut got = rendered.clone();
    assert_eq!(
        got["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
        "uninstalling must not delete the CRD and with it every object"
    );
    for doc in [&mut got, &mut expected] {
        let meta = doc["metadata"].as_object_mut().expect("metadata");
        meta.remove("annotations");
        meta.remove("labels");
    }
    assert_eq!(got, expected, "the rendered CRD is the generated one");
    let without = documents(&template("ops", &["--set", "crds.install=false"]).expect("renders"));
    assert!(
        !without
            .iter()
            .any(|d| kind(d) == "CustomResourceDefinition")
    );
}

#[test]
fn rbac_grants_exactly_what_the_e2e_suite_grants_plus_leases() {
    let E2eRbac { base, leases } = e2e_rbac();
    let base_grants = grants(&base);
    // The e2e file itself keeps Secrets at get-only, and leases to a lease manager's needs.
    assert!(base_grants.contains(&("".into(), "secrets".into(), "get".into())));
    for (_, _, verb) in grants(&leases) {
        assert!(
            matches!(verb.as_str(), "get" | "create" | "update" | "patch"),
            "the e2e grant allows {verb} on leases"
        );
    }

    // Cluster mode, one replica: the e2e rules, rule for rule, and no lease rights.
    let docs = documents(&render_default("ops"));
    assert_eq!(rules(only(&docs, "ClusterRole")), base);
    assert!(
        !docs.iter().any(|d| kind(d) == "Role"),
        "leader election is off, yet a Role was rendered"
    );

    // Namespaced mode, two replicas: the e2e rules in each watched namespace, leases at home.
    let docs = documents(&render_custom("ops", ["team-a", "team-b"]));
    let mut seen = BTreeMap::new();
    for role in docs.iter().filter(|d| kind(d) == "Role") {
        let ns = namespace_of(role).expect("Role namespace").to_owned();
        seen.insert((ns, name_of(role).to_owned()), rules(role));
    }
    let lease_role = format!("{FULLNAME}-leader-election");
    let expected: BTreeMap<(String, String), BTreeSet<Rule>> = [
        (("team-a".to_owned(), FULLNAME.to_owned()), base.clone()),
        (("team-b".to_owned(), FULLNAME.to_owned()), base.clone()),
        (("ops".to_owned(), lease_role.clone()), leases.clone()),
    ]
    .into_iter()
    .collect();
    assert_eq!(seen, expected);

    // Each Role is bound, in its own namespace, to the release's ServiceAccount only.
    for binding in docs.iter().filter(|d| kind(d) == "RoleBinding") {
        let ns = namespace_of(binding).expect("RoleBinding namespace");
        let role = binding["roleRef"]["name"].as_str().expect("roleRef name");
        assert!(
            seen.contains_key(&(ns.to_owned(), role.to_owned())),
            "RoleBinding {ns}/{} points at a missing Role {role}",
            name_of(binding)
        );
        assert_eq!(binding["roleRef"]["kind"], "Role");
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": FULLNAME, "namespace": "ops"}])
        );
    }

    // Across every rendering: Secrets are never listed or watched, nothing uses wildcards.
    let all: Vec<Value> = [render_default("ops"), render_custom("ops", ["a", "b"])]
        .iter()
        .flat_map(|y| documents(y))
        .collect();
    for role in all
        .iter()
        .filter(|d| matches!(kind(d), "Role" | "ClusterRole"))
    {
        for (group, resource, verb) in grants(&rules(role)) {
            assert!(
                !(resource == "secrets" && verb != "get"),
                "{} grants {verb} on secrets",
                name_of(role)
            );
            assert!(
                group != "*" && resource != "*" && verb != "*",
                "{} uses a wildcard",
                name_of(role)
            );
        }
    }
}

/// The flags the chart passes are ones the operator accepts, and they mean what the values say.
#[test]
fn rendered_args_parse_with_the_operator_cli() {
    use clap::Parser;
    use sparkjobrun_operator::cli::{Cli, Command as CliCommand, RunArgs};

    let parse = |docs: &[Value]| -> RunArgs {
        let mut argv = vec!["sparkjobrun-operator".to_owned()];
        argv.extend(args(docs));
        match Cli::try_parse_from(&argv) {
            Ok(Cli {
                command: CliCommand::Run(run),
            }) => run,
            Ok(other) => panic!("{argv:?} parsed as {other:?}"),
            Err(e) => panic!("the operator refuses the chart's flags {argv:?}:\n{e}"),
        }
    };

    let run = parse(&documents(&render_default("ops")));
    let settings = run.settings().expect("default flags are valid");
    assert!(settings.scope.namespaces.is_empty());
    assert_eq!(run.metrics_addr.port(), 8080);
    assert_eq!(run.leader_election().expect("valid"), None);

    let run = parse(&documents(&render_custom("ops", ["team-a", "team-b"])));
    let settings = run.settings().expect("custom flags are valid");
    assert_eq!(settings.scope.namespaces, ["team-a", "team-b"]);
    assert_eq!(
        settings.scope.label_selector.as_deref(),
        Some("team in (data,ml)")
    );
    assert_eq!(settings.default_region.as_deref(), Some("cn-hangzhou"));
    assert_eq!(settings.rate.per_second, 2.5);
    assert_eq!(settings.rate.burst, 5);
    assert_eq!(run.metrics_addr.port(), 9090);
    let election = run
        .leader_election()
        .expect("valid")
        .expect("leader election on with two replicas");
    assert_eq!(election.namespace, "ops");
    assert_eq!(election.lease_name, FULLNAME);
}

/// The hardening a restricted namespace asks for, on every rendering.
#[test]
fn deployment_is_hardened_and_probed() {
    for (what, yaml) in [
        ("defaults", render_default("ops")),
        ("custom", render_custom("ops", ["a", "b"])),
    ] {
        let docs = documents(&yaml);
        let deployment = only(&docs, "Deployment");
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
        assert_eq!(pod["securityContext"]["runAsUser"], 65532, "{what}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{what}"
        );
        let c = container(&docs);
        let sc = &c["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{what}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{what}");
        assert!(sc["capabilities"]["add"].is_null(), "{what}");
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{what}");
        assert!(
            sc["privileged"].is_null() || sc["privileged"] == false,
            "{what}"
        );

        for key in ["requests", "limits"] {
            assert!(
                c["resources"][key]["memory"].is_string(),
                "{what}: resources.{key}.memory missing"
            );
        }
        assert!(c["resources"]["requests"]["cpu"].is_string(), "{what}");

        let ports = c["ports"].as_array().expect("ports");
        assert_eq!(ports.len(), 1, "{what}");
        assert_eq!(ports[0]["name"], "http-metrics", "{what}");
        for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
            assert_eq!(
                c[probe]["httpGet"],
                json!({"path": path, "port": "http-metrics"}),
                "{what}: {probe}"
            );
            assert!(c[probe]["periodSeconds"].as_u64().is_some_and(|p| p > 0));
        }
        let metrics_port = ports[0]["containerPort"].as_u64().expect("containerPort");
        assert!(
            args(&docs).contains(&format!("--metrics-addr=0.0.0.0:{metrics_port}")),
            "{what}: --metrics-addr does not match the container port"
        );
    }
}

/// A minimal ServiceMonitor CRD, so the chart's ServiceMonitor is sent to the server too.
const SERVICE_MONITOR_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {plural: servicemonitors, singular: servicemonitor, kind: ServiceMonitor, listKind: ServiceMonitorList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

fn kubectl_ok(plane: &ControlPlane, args: &[&str]) -> Result<(String, String), String> {
    let out = plane.kubectl(args).map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok((stdout, stderr))
    } else {
        Err(format!(
            "kubectl {args:?}: {}\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        ))
    }
}

/// Sends `manifest` to the server with a server-side dry run and checks every object was
/// accepted, with no warning (the release namespace warns on Pod Security "restricted").
fn dry_run(plane: &ControlPlane, what: &str, manifest: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join(format!("{what}.yaml"));
    std::fs::write(&path, manifest).map_err(|e| e.to_string())?;
    let file = path.to_str().ok_or("non-utf-8 temp path")?;
    let (stdout, stderr) = kubectl_ok(
        plane,
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=chart-test",
            "-f",
            file,
        ],
    )?;
    let objects = documents(manifest).len();
    let applied = stdout
        .lines()
        .filter(|l| l.ends_with("serverside-applied (server dry run)"))
        .count();
    if applied != objects {
        return Err(format!(
            "{what}: {applied} of {objects} objects applied\nstdout: {stdout}\nstderr: {stderr}"
        ));
    }
    if stderr.to_lowercase().contains("warning") {
        return Err(format!("{what}: the server warned:\n{stderr}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_objects_pass_a_server_side_dry_run() {
    let mut plane = match ControlPlane::start(ControlPlaneOptions::default()).await {
        Ok(plane) => plane,
        Err(e) => panic!("control plane did not start: {e}"),
    };
    let checks = async {
        let crd = std::fs::read_to_string(chart_dir().join("files/sparkjobruns.emrspark.io.yaml"))
            .map_err(|e| e.to_string())?;
        plane.apply_yaml(&crd).await.map_err(|e| e.to_string())?;
        plane
            .apply_yaml(SERVICE_MONITOR_CRD)
            .await
            .map_err(|e| e.to_string())?;
        for name in [
            "sparkjobruns.emrspark.io",
            "servicemonitors.monitoring.coreos.com",
        ] {
            plane
                .wait_crd_established(name)
                .await
                .map_err(|e| e.to_string())?;
        }
        let release_ns = plane
            .create_namespace("chart")
            .await
            .map_err(|e| e.to_string())?;
        let team_a = plane
            .create_namespace("team-a")
            .await
            .map_err(|e| e.to_string())?;
        let team_b = plane
            .create_namespace("team-b")
            .await
            .map_err(|e| e.to_string())?;
        // Pod Security admission warns about workloads whose pods "restricted" would refuse.
        kubectl_ok(
            &plane,
            &[
                "label",
                "namespace",
                &release_ns,
                "pod-security.kubernetes.io/enforce=restricted",
                "pod-security.kubernetes.io/warn=restricted",
            ],
        )?;

        dry_run(&plane, "defaults", &render_default(&release_ns))?;
        dry_run(
            &plane,
            "custom",
            &render_custom(&release_ns, [&team_a, &team_b]),
        )?;

        // The check can fail: a privileged container is refused with a warning.
        let bad = template(
            &release_ns,
            &["--set", "securityContext.allowPrivilegeEscalation=true"],
        )?;
        match dry_run(&plane, "escalating", &bad) {
            Err(e) if e.contains("allowPrivilegeEscalation") => {}
            other => {
                return Err(format!(
                    "escalating container: expected a warning, got {other:?}"
                ));
            }
        }

        // A real install with the default values: helm's own checks against the server, and
        // the NOTES a user reads afterwards.
        let kubeconfig = plane.kubeconfig_admin_path().to_string_lossy().into_owned();
        let chart = chart_dir().to_string_lossy().into_owned();
        // The CRD was applied apart above (as by a platform team), so the release does not
        // manage it; tests of the CRD's own lifecycle follow in crd_upgrades_with_the_release.
        let notes = run_helm(&[
            "install",
            RELEASE,
            &chart,
            "--namespace",
            &release_ns,
            "--kubeconfig",
            &kubeconfig,
            "--set",
            "crds.install=false",
        ])?;
        for line in [
            "kubectl get sparkjobruns -A",
            "kubectl wait --for=condition=Finished",
        ] {
            if !notes.contains(line) {
                return Err(format!("helm install NOTES lack {line:?}:\n{notes}"));
            }
        }
        let (names, _) = kubectl_ok(
            &plane,
            &[
                "get",
                "deployment,serviceaccount,service",
                "-n",
                &release_ns,
                "-o",
                "name",
            ],
        )?;
        for expected in [
            format!("deployment.apps/{FULLNAME}"),
            format!("serviceaccount/{FULLNAME}"),
            format!("service/{FULLNAME}-metrics"),
        ] {
            if !names.lines().any(|l| l == expected) {
                return Err(format!(
                    "after helm install, {expected} is missing:\n{names}"
                ));
            }
        }
        Ok::<(), String>(())
    };
    if let Err(e) = checks.await {
        let logs = plane.keep_logs();
        panic!("{e}\nlogs kept: {}", logs.kube_apiserver.display());
    }
    plane.stop();
}

/// Issue 12.3: the optional dashboard ConfigMap carries the sidecar label and exactly the
/// dashboard file, which is valid JSON with a title and panels that each query something.
#[test]
fn the_dashboard_configmap_carries_the_dashboard_for_the_sidecar() {
    let yaml = template(
        "ops",
        &[
            "--set",
            "metrics.grafanaDashboard.enabled=true",
            "--set",
            "metrics.grafanaDashboard.namespace=monitoring",
        ],
    )
    .expect("renders");
    let docs = documents(&yaml);
    let cm = docs
        .iter()
        .find(|d| kind(d) == "ConfigMap" && name_of(d).ends_with("-dashboard"))
        .expect("a dashboard ConfigMap");
    assert_eq!(namespace_of(cm), Some("monitoring"));
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let text = cm["data"]["sparkjobrun-operator.json"]
        .as_str()
        .expect("dashboard");
    let file = std::fs::read_to_string(chart_dir().join("files/dashboard.json")).expect("file");
    assert_eq!(text, file.trim());
    let dash: Value = serde_json::from_str(text).expect("dashboard JSON parses");
    assert_eq!(dash["uid"], "sparkjobrun-operator");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "{} panels", panels.len());
    for p in panels {
        let exprs: Vec<&str> = p["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["expr"].as_str())
            .collect();
        assert!(!exprs.is_empty(), "panel {} queries nothing", p["title"]);
    }
    let off = documents(&render_default("ops"));
    assert!(!off.iter().any(|d| name_of(d).ends_with("-dashboard")));
}

/// Issue 11.4: `delete` on sparkjobruns is granted, and the TTL flags passed, only when
/// ttlAfterFinished is enabled; a default without it is refused.
#[test]
fn ttl_rights_and_flags_only_when_enabled() {
    let verbs = |docs: &[Value]| -> BTreeSet<String> {
        docs.iter()
            .filter(|d| kind(d) == "ClusterRole")
            .flat_map(rules)
            .filter(|r| r.resources == ["sparkjobruns"])
            .flat_map(|r| r.verbs)
            .collect()
    };
    let off = documents(&render_default("ops"));
    assert!(!verbs(&off).contains("delete"), "{:?}", verbs(&off));
    assert!(!args(&off).iter().any(|a| a.starts_with("--ttl")));
    let on = documents(
        &template(
            "ops",
            &[
                "--set",
                "ttlAfterFinished.enabled=true",
                "--set",
                "ttlAfterFinished.default=24h",
            ],
        )
        .expect("renders"),
    );
    assert!(verbs(&on).contains("delete"));
    let a = args(&on);
    assert!(a.contains(&"--ttl-after-finished=true".to_owned()), "{a:?}");
    assert!(
        a.contains(&"--ttl-after-finished-default=24h".to_owned()),
        "{a:?}"
    );
    let err = template("ops", &["--set", "ttlAfterFinished.default=24h"]).expect_err("refused");
    assert!(err.contains("ttlAfterFinished.enabled"), "{err}");
}

/// Issue 11.5: `patch` on sparkjobruns, `update` on their finalizers and `--allow-cancel` only
/// when cancelOnDelete is enabled.
#[test]
fn cancel_rights_and_flag_only_when_enabled() {
    let grants = |docs: &[Value], resource: &str| -> BTreeSet<String> {
        docs.iter()
            .filter(|d| kind(d) == "ClusterRole")
            .flat_map(rules)
            .filter(|r| r.resources == [resource])
            .flat_map(|r| r.verbs)
            .collect()
    };
    let off = documents(&render_default("ops"));
    assert_eq!(
        grants(&off, "sparkjobruns"),
        ["get", "list", "watch"].map(String::from).into()
    );
    assert!(grants(&off, "sparkjobruns/finalizers").is_empty());
    assert!(!args(&off).iter().any(|a| a.starts_with("--allow-cancel")));
    let on =
        documents(&template("ops", &["--set", "cancelOnDelete.enabled=true"]).expect("renders"));
    assert_eq!(
        grants(&on, "sparkjobruns"),
        ["get", "list", "watch", "patch"].map(String::from).into()
    );
    assert_eq!(
        grants(&on, "sparkjobruns/finalizers"),
        ["update"].map(String::from).into()
    );
    assert!(args(&on).contains(&"--allow-cancel=true".to_owned()));
    let err = template("ops", &["--set", "cancelOnDelete.enabled=yes"]).expect_err("refused");
    assert!(err.contains("cancelOnDelete"), "{err}");
}

/// Copies the chart to `dir` with its CRD's `spec.ttlSecondsAfterFinished` removed: the chart as
/// it was before that field existed.
fn chart_without_ttl_field(dir: &Path) -> PathBuf {
    let copy = dir.join("old-chart");
    let status = Command::new("cp")
        .arg("-r")
        .arg(chart_dir())
        .arg(&copy)
        .status()
        .expect("cp runs");
    assert!(status.success());
    let path = copy.join("files/sparkjobruns.emrspark.io.yaml");
    let mut crd: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).expect("CRD")).expect("YAML");
    let props = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"];
    let removed = props
        .as_mapping_mut()
        .and_then(|m| m.remove("ttlSecondsAfterFinished"));
    assert!(
        removed.is_some(),
        "the current CRD has ttlSecondsAfterFinished"
    );
    let text = format!("---\n{}", serde_yaml::to_string(&crd).expect("YAML"));
    assert!(text.contains("metadata:\n  name: sparkjobruns.emrspark.io\n"));
    std::fs::write(&path, text).expect("write");
    copy
}

/// Hands a CRD that belongs to no release over to one (docs/upgrading.md gives these commands).
const HANDOVER_LABEL: &[&str] = &[
    "label",
    "--overwrite",
    "crd",
    "sparkjobruns.emrspark.io",
    "app.kubernetes.io/managed-by=Helm",
];

fn handover_annotate(release: &str, namespace: &str) -> Vec<String> {
    vec![
        "annotate".into(),
        "--overwrite".into(),
        "crd".into(),
        "sparkjobruns.emrspark.io".into(),
        format!("meta.helm.sh/release-name={release}"),
        format!("meta.helm.sh/release-namespace={namespace}"),
    ]
}

/// Whether the served CRD's spec schema has `field`.
fn served_spec_has(plane: &ControlPlane, field: &str) -> Result<bool, String> {
    let (json, _) = kubectl_ok(
        plane,
        &["get", "crd", "sparkjobruns.emrspark.io", "-o", "json"],
    )?;
    let crd: Value = serde_json::from_str(&json).map_err(|e| e.to_string())?;
    Ok(
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            .get(field)
            .is_some(),
    )
}

/// Issue 12.1: `helm upgrade` applies a changed CRD (it is a template, not a crds/ file Helm
/// never upgrades); `helm uninstall` leaves the CRD and every object; and a CRD installed by an
/// older chart's crds/ is taken over after the two commands the README gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_upgrades_with_the_release() {
    let mut plane = match ControlPlane::start(ControlPlaneOptions::default()).await {
        Ok(plane) => plane,
        Err(e) => panic!("control plane did not start: {e}"),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let checks = async {
        let kubeconfig = plane.kubeconfig_admin_path().to_string_lossy().into_owned();
        let helm = |args: &[&str]| {
            let mut all: Vec<&str> = args.to_vec();
            all.extend(["--namespace", "ops", "--kubeconfig", kubeconfig.as_str()]);
            run_helm(&all)
        };
        let old = chart_without_ttl_field(dir.path());
        let old = old.to_string_lossy().into_owned();
        let chart = chart_dir().to_string_lossy().into_owned();
        helm(&["install", RELEASE, &old, "--create-namespace"])?;
        plane
            .wait_crd_established("sparkjobruns.emrspark.io")
            .await
            .map_err(|e| e.to_string())?;
        if served_spec_has(&plane, "ttlSecondsAfterFinished")? {
            return Err("the old chart already served the new field".into());
        }
        let object = "apiVersion: emrspark.io/v1alpha1\nkind: SparkJobRunRef\nmetadata:\n  name: kept\n  namespace: ops\nspec:\n  workspaceId: w-abc\n  jobRunId: jr-abc\n";
        let file = dir.path().join("object.yaml");
        std::fs::write(&file, object).map_err(|e| e.to_string())?;
        let file = file.to_string_lossy().into_owned();
        kubectl_ok(&plane, &["apply", "-f", &file])?;

        helm(&["upgrade", RELEASE, &chart])?;
        if !served_spec_has(&plane, "ttlSecondsAfterFinished")? {
            return Err("helm upgrade left the old CRD schema served".into());
        }
        helm(&["uninstall", RELEASE])?;
        kubectl_ok(&plane, &["get", "crd", "sparkjobruns.emrspark.io"])
            .map_err(|e| format!("helm uninstall deleted the CRD: {e}"))?;
        kubectl_ok(&plane, &["get", "sparkjobrun", "kept", "-n", "ops"])
            .map_err(|e| format!("helm uninstall deleted the objects: {e}"))?;

        // A CRD from an older chart's crds/ (not owned by any release): install refuses to
        // adopt it until it carries Helm's ownership metadata.
        kubectl_ok(
            &plane,
            &[
                "annotate",
                "crd",
                "sparkjobruns.emrspark.io",
                "meta.helm.sh/release-name-",
                "meta.helm.sh/release-namespace-",
            ],
        )?;
        kubectl_ok(
            &plane,
            &[
                "label",
                "crd",
                "sparkjobruns.emrspark.io",
                "app.kubernetes.io/managed-by-",
            ],
        )?;
        match helm(&["install", RELEASE, &chart]) {
            Err(e) if e.contains("cannot be imported") => {}
            other => return Err(format!("install over an unowned CRD: {other:?}")),
        }
        let annotate = handover_annotate(RELEASE, "ops");
        kubectl_ok(&plane, HANDOVER_LABEL)?;
        kubectl_ok(
            &plane,
            &annotate.iter().map(String::as_str).collect::<Vec<_>>(),
        )?;
        helm(&["install", RELEASE, &chart])?;
        kubectl_ok(&plane, &["get", "sparkjobrun", "kept", "-n", "ops"])?;
        Ok::<(), String>(())
    };
    if let Err(e) = checks.await {
        let logs = plane.keep_logs();
        panic!("{e}\nlogs kept: {}", logs.kube_apiserver.display());
    }
    plane.stop();
}

/// docs/upgrading.md gives the hand-over commands crd_upgrades_with_the_release runs (with the
/// release and namespace as placeholders), and names the values that changed.
#[test]
fn upgrade_notes_give_the_commands_the_upgrade_test_runs() {
    let notes =
        std::fs::read_to_string(repo().join("docs/upgrading.md")).expect("docs/upgrading.md");
    // The very arguments the upgrade test runs, with the release and namespace as placeholders.
    for command in [
        format!("kubectl {}", HANDOVER_LABEL.join(" ")),
        format!(
            "kubectl {}",
            handover_annotate("RELEASE", "NAMESPACE").join(" ")
        ),
    ] {
        assert!(
            notes.contains(&command),
            "docs/upgrading.md lacks `{command}`"
        );
    }
    for value in [
        "crds.install",
        "assumeRoleAllow",
        "--endpoint-allow",
        "ttlAfterFinished",
    ] {
        assert!(
            notes.contains(value),
            "docs/upgrading.md does not mention {value}"
        );
    }
}
