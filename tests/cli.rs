//! The command line as a user runs it: the real binary against the simulator on loopback.

use std::process::Output;

use sparkjobrun_operator::kit::simulator::{
    Account, Phase, Reason, RunScript, Simulator, SimulatorConfig, SimulatorHandle,
};

const BIN: &str = env!("CARGO_BIN_EXE_sparkjobrun-operator");
const KEY_ID: &str = "LTAI5tCliTestKey0001";
const KEY_SECRET: &str = "cli-test-secret-value-0001";

async fn simulator() -> SimulatorHandle {
    let sim = Simulator::start(SimulatorConfig {
        accounts: vec![Account::new(KEY_ID, KEY_SECRET)],
        ..SimulatorConfig::default()
    })
    .await
    .expect("simulator starts");
    let failed = RunScript::new("w-cli0000000001", "jr-clifailed").with_phases(vec![Phase {
        state: "Failed".into(),
        after_seconds: None,
        for_seconds: None,
        state_change_reason: Some(Reason {
            code: "ERR-100000".into(),
            message: "connection refused".into(),
        }),
    }]);
    sim.add_run(failed).expect("valid script");
    sim
}

/// The binary with nothing of the developer's environment: no variables but `PATH`, and an
/// empty `HOME`, so neither an Aliyun profile (`~/.alibabacloud`), a kubeconfig nor an
/// `ALIBABA_CLOUD_*` variable can change a test's outcome.
fn command() -> std::process::Command {
    let home = tempfile::Builder::new()
        .prefix("sparkjobrun-cli-home-")
        .tempdir()
        .expect("temporary HOME")
        .keep();
    let mut cmd = std::process::Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home);
    cmd
}

async fn get_job_run(
    sim: &SimulatorHandle,
    job_run: &str,
    secret: Option<&str>,
    extra: &[&str],
) -> Output {
    let mut cmd = tokio::process::Command::from(command());
    cmd.args([
        "get-job-run",
        "--workspace-id",
        "w-cli0000000001",
        "--job-run-id",
        job_run,
    ])
    .args(["--region-id", "cn-hangzhou", "--endpoint", &sim.endpoint()])
    .args(extra);
    if let Some(secret) = secret {
        cmd.env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret);
    }
    cmd.output().await.expect("binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn get_job_run_prints_the_status_the_controller_would_write() {
    let sim = simulator().await;
    let out = get_job_run(
        &sim,
        "jr-clifailed",
        Some(KEY_SECRET),
        &["--output", "json"],
    )
    .await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(status["state"], "Failed");
    assert_eq!(status["terminal"], true);
    assert_eq!(status["stateChangeReason"]["code"], "ERR-100000");
    for key in [
        "driverStdOut",
        "driverStdError",
        "driverSyslog",
        "driverStartup",
    ] {
        assert!(
            status["log"][key].is_string(),
            "log.{key} missing: {status}"
        );
    }
    let conditions = status["conditions"].as_array().expect("conditions");
    let get = |t: &str| {
        conditions
            .iter()
            .find(|c| c["type"] == t)
            .map(|c| c["status"].clone())
    };
    assert_eq!(get("Finished"), Some("True".into()));
    assert_eq!(get("Failed"), Some("True".into()));
    assert_eq!(get("Succeeded"), Some("False".into()));
    assert_eq!(get("Synced"), Some("True".into()));

    let yaml = get_job_run(&sim, "jr-clifailed", Some(KEY_SECRET), &["-o", "yaml"]).await;
    assert!(yaml.status.success());
    let parsed: serde_yaml::Value = serde_yaml::from_slice(&yaml.stdout).expect("YAML on stdout");
    assert_eq!(parsed["state"], serde_yaml::Value::from("Failed"));
}

#[tokio::test]
async fn get_job_run_failures_exit_non_zero_with_the_service_code() {
    let sim = simulator().await;
    let wrong = get_job_run(&sim, "jr-clifailed", Some("not-the-secret"), &[]).await;
    assert!(!wrong.status.success());
    let err = text(&wrong.stderr);
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
    assert!(!err.contains("not-the-secret"), "secret echoed: {err}");

    let missing = get_job_run(&sim, "jr-nosuchrun", Some(KEY_SECRET), &[]).await;
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("JobRunNotFound"),
        "{}",
        text(&missing.stderr)
    );

    let no_creds = get_job_run(&sim, "jr-clifailed", None, &[]).await;
    assert!(!no_creds.status.success());
    let err = text(&no_creds.stderr);
    assert!(
        err.contains("ALIBABA_CLOUD_ACCESS_KEY_ID")
            && err.contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
        "{err}"
    );
}

#[test]
fn crd_subcommand_prints_the_committed_crd() {
    let out = command().arg("crd").output().expect("binary runs");
    assert!(out.status.success());
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/sparkjobruns.emrspark.io.yaml"
    ))
    .expect("committed CRD");
    assert_eq!(text(&out.stdout), committed);
}

/// Issue 10: the binary allocates with jemalloc as configured (asked to, jemalloc prints its
/// statistics and options at exit); with glibc's malloc the operator held twice the memory.
#[test]
fn the_binary_allocates_with_jemalloc_as_configured() {
    let out = command()
        .arg("crd")
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .expect("binary runs");
    assert!(out.status.success());
    let stats = text(&out.stderr);
    assert!(stats.contains("Begin jemalloc statistics"), "{stats}");
    for option in [
        "opt.background_thread: true",
        "opt.narenas: 2",
        "opt.dirty_decay_ms: 1000",
        "opt.muzzy_decay_ms: 0",
    ] {
        assert!(stats.contains(option), "{option} not in:\n{stats}");
    }
}

#[test]
fn every_subcommand_has_help() {
    for sub in [
        &[][..],
        &["run"],
        &["crd"],
        &["get-job-run"],
        &["simulator"],
        &["wait"],
        &["import"],
    ] {
        let out = command()
            .args(sub)
            .arg("--help")
            .output()
            .expect("binary runs");
        assert!(out.status.success(), "{sub:?} --help failed");
        assert!(
            text(&out.stdout).contains("Usage:"),
            "{sub:?}: {}",
            text(&out.stdout)
        );
    }
    let out = command()
        .args(["run", "--help"])
        .output()
        .expect("binary runs");
    let help = text(&out.stdout);
    for flag in [
        "--namespace",
        "--label-selector",
        "--rate-limit",
        "--default-region",
        "--endpoint",
        "--network",
        "--log-format",
        "--leader-election",
    ] {
        assert!(help.contains(flag), "run --help lacks {flag}");
    }
    assert!(
        help.contains("[env: SPARKJOBRUN_RATE_LIMIT="),
        "env fallbacks are documented in --help"
    );
}

#[test]
fn bad_flags_fail_at_start_with_the_flag_named() {
    let out = command()
        .args(["run", "--rate-limit", "0", "--metrics-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", "/nonexistent")
        .output()
        .expect("binary runs");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--rate-limit"),
        "{}",
        text(&out.stderr)
    );
}

/// The krew manifest installs this binary as kubectl-sparkjobrun, at the package's version.
#[test]
fn the_krew_manifest_installs_the_binary_as_the_plugin() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/krew/sparkjobrun.yaml"
    ))
    .expect("manifest");
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
    assert_eq!(doc["kind"].as_str(), Some("Plugin"));
    assert_eq!(doc["metadata"]["name"].as_str(), Some("sparkjobrun"));
    let spec = &doc["spec"];
    assert_eq!(
        spec["version"].as_str(),
        Some(concat!("v", env!("CARGO_PKG_VERSION")))
    );
    let platform = &spec["platforms"][0];
    assert_eq!(platform["bin"].as_str(), Some("kubectl-sparkjobrun"));
    assert_eq!(
        platform["files"][0]["from"].as_str(),
        Some("sparkjobrun-operator")
    );
    assert_eq!(
        platform["files"][0]["to"].as_str(),
        Some("kubectl-sparkjobrun")
    );
    // What the description shows must be a command the binary accepts.
    let out = command()
        .args(["wait", "--help"])
        .output()
        .expect("binary runs");
    let help = text_of(&out.stdout);
    for flag in ["--for", "--timeout", "--namespace"] {
        assert!(help.contains(flag), "wait --help lacks {flag}");
    }
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn import(sim: &SimulatorHandle, extra: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::from(command());
    cmd.args([
        "import",
        "--region-id",
        "cn-hangzhou",
        "--endpoint",
        &sim.endpoint(),
    ])
    .args(extra)
    .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
    .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", KEY_SECRET);
    cmd.output().await.expect("binary runs")
}

/// `import` pages through ListJobRuns (230 runs: three pages), filters by state and tag, and
/// prints one ref per run with a stable name and labels from the tags; bad flags are refused
/// before any call.
#[tokio::test]
async fn import_prints_one_ref_per_matching_run() {
    let sim = simulator().await;
    let ws = "w-cliimport00001";
    for i in 0..230 {
        let mut run = RunScript::new(ws, format!("jr-imp{i:03}")).holding(if i % 2 == 0 {
            "Running"
        } else {
            "Success"
        });
        run.tags = Some(vec![sparkjobrun_operator::wire::Tag {
            key: Some("team".into()),
            value: Some(if i % 4 == 0 { "a" } else { "b" }.into()),
        }]);
        run.name = Some(format!("nightly {i}"));
        sim.add_run(run).expect("valid run");
    }
    let all = import(&sim, &["--workspace-id", ws, "-n", "data"]).await;
    assert!(all.status.success(), "stderr: {}", text(&all.stderr));
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_slice(&all.stdout)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML document"))
        .collect();
    assert_eq!(docs.len(), 230);
    assert_eq!(sim.calls().for_action("ListJobRuns"), 3, "pages of 100");
    let first = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "jr-imp000")
        .expect("jr-imp000");
    assert_eq!(first["kind"], "SparkJobRunRef");
    assert_eq!(first["metadata"]["namespace"], "data");
    assert_eq!(first["metadata"]["labels"]["team"], "a");
    assert_eq!(first["metadata"]["labels"]["emrspark.io/imported"], "true");
    assert_eq!(
        first["metadata"]["annotations"]["emrspark.io/job-run-name"],
        "nightly 0"
    );
    assert_eq!(first["spec"]["workspaceId"], ws);
    assert_eq!(first["spec"]["regionId"], "cn-hangzhou");

    let some = import(
        &sim,
        &[
            "--workspace-id",
            ws,
            "--states",
            "Running",
            "--tag",
            "team=a",
            "--name-prefix",
            "etl-",
        ],
    )
    .await;
    assert!(some.status.success(), "stderr: {}", text(&some.stderr));
    let out = text(&some.stdout);
    assert_eq!(
        out.matches("kind: SparkJobRunRef").count(),
        58,
        "i % 4 == 0 of 230"
    );
    assert!(out.contains("name: etl-jr-imp000") && !out.contains("jr-imp002\n"));
    let again = import(&sim, &["--workspace-id", ws, "-n", "data"]).await;
    assert_eq!(
        text(&again.stdout),
        text(&all.stdout),
        "importing again prints the same"
    );

    let limited = import(&sim, &["--workspace-id", ws, "--limit", "150"]).await;
    assert!(limited.status.success());
    assert_eq!(
        text(&limited.stdout)
            .matches("kind: SparkJobRunRef")
            .count(),
        150
    );
    assert!(
        text(&limited.stderr).contains("more than 150 runs match"),
        "{}",
        text(&limited.stderr)
    );

    let before = sim.calls().total;
    for (args, flag) in [
        (&["--workspace-id", "nope"][..], "--workspace-id"),
        (
            &["--workspace-id", ws, "--states", "Runing"][..],
            "--states",
        ),
        (
            &["--workspace-id", ws, "--name-prefix", "Team-"][..],
            "--name-prefix",
        ),
    ] {
        let out = import(&sim, args).await;
        assert!(!out.status.success(), "{args:?}");
        assert!(
            text(&out.stderr).contains(flag),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert_eq!(sim.calls().total, before, "refused before any call");
}
