//! The OCI image tools/image.sh assembles (tools/test.sh builds it first): its layout is valid
//! and content-addressed, its only layer holds the static binary, the CA roots and a non-root
//! user, its config runs `/sparkjobrun-operator run` as 65532, and the entrypoint works in a
//! chroot holding nothing but the image's files: it prints the CRD, and as the operator it
//! follows a run on the local kube-apiserver and the service simulator.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use sparkjobrun_operator::kit::devenv::{ControlPlane, ControlPlaneOptions};
use sparkjobrun_operator::kit::simulator::{Account, RunScript, Simulator, SimulatorConfig};

/// Absolute: the command runs with a cleared environment, so no PATH lookup.
const CHROOT: &str = "/usr/sbin/chroot";

fn archive() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "target/image/sparkjobrun-operator-{}.oci.tar",
        env!("CARGO_PKG_VERSION")
    ));
    assert!(
        path.is_file(),
        "{} is missing: run tools/image.sh (tools/test.sh does)",
        path.display()
    );
    path
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A blob of the layout, checked against its digest.
fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).expect("blob");
    assert_eq!(
        hex::encode(Sha256::digest(&bytes)),
        hex,
        "blob {digest} is corrupt"
    );
    bytes
}

struct Unpacked {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: Value,
    files: BTreeSet<String>,
}

fn unpack() -> Unpacked {
    let dir = tempfile::tempdir().expect("temp dir");
    let layout = dir.path().join("layout");
    std::fs::create_dir_all(&layout).expect("mkdir");
    run(Command::new("tar")
        .arg("-xf")
        .arg(archive())
        .arg("-C")
        .arg(&layout));
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json"))
            .expect("JSON");
    let layout_file = std::fs::read_to_string(layout.join("oci-layout")).expect("oci-layout");
    assert!(layout_file.contains("imageLayoutVersion"), "{layout_file}");
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .expect("a manifest");
    let manifest: Value =
        serde_json::from_slice(&blob(&layout, manifest_digest)).expect("manifest JSON");
    assert_eq!(
        manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json",
        "{manifest}"
    );
    let config: Value = serde_json::from_slice(&blob(
        &layout,
        manifest["config"]["digest"].as_str().expect("config"),
    ))
    .expect("config JSON");
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "one layer: {manifest}");
    let layer = layers[0]["digest"].as_str().expect("layer digest");
    let bytes = blob(&layout, layer);
    let layer_file = dir.path().join("layer.tar.gz");
    std::fs::write(&layer_file, bytes).expect("write");
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(&root).expect("mkdir");
    let listing = run(Command::new("tar").arg("-tzf").arg(&layer_file));
    run(Command::new("tar")
        .arg("-xzpf")
        .arg(&layer_file)
        .arg("-C")
        .arg(&root)
        .arg("--numeric-owner"));
    let files = listing
        .lines()
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    Unpacked {
        _dir: dir,
        root,
        config,
        files,
    }
}

/// The devices every OCI runtime creates in a container's /dev (runc's defaults), which a
/// chroot lacks; the rest of the root is the image's files alone.
fn runtime_devices(root: &Path) {
    std::fs::create_dir_all(root.join("dev")).expect("mkdir dev");
    for (name, minor) in [
        ("null", "3"),
        ("zero", "5"),
        ("random", "8"),
        ("urandom", "9"),
    ] {
        let path = root.join("dev").join(name);
        if !path.exists() {
            run(Command::new("mknod")
                .args(["-m", "666"])
                .arg(&path)
                .args(["c", "1", minor]));
        }
    }
}

fn as_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "chroot needs root; CI runs these tests as root");
}

#[test]
fn the_image_holds_the_binary_ca_roots_and_a_non_root_user() {
    let image = unpack();
    let want: BTreeSet<String> = [
        "etc",
        "etc/group",
        "etc/passwd",
        "etc/ssl",
        "etc/ssl/certs",
        "etc/ssl/certs/ca-certificates.crt",
        "sparkjobrun-operator",
        "tmp",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(image.files, want);
    let c = &image.config["config"];
    assert_eq!(c["User"], "65532:65532");
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/sparkjobrun-operator"])
    );
    assert_eq!(c["Cmd"], serde_json::json!(["run"]));
    assert_eq!(image.config["architecture"], "amd64");
    assert_eq!(image.config["os"], "linux");
    let passwd = std::fs::read_to_string(image.root.join("etc/passwd")).expect("passwd");
    assert!(passwd.starts_with("nonroot:x:65532:65532:"), "{passwd}");
}

#[test]
fn the_entrypoint_runs_in_a_chroot_of_the_image_alone() {
    as_root();
    let image = unpack();
    runtime_devices(&image.root);
    let crd = run(Command::new(CHROOT)
        .arg("--userspec=65532:65532")
        .arg(&image.root)
        .args(["/sparkjobrun-operator", "crd"])
        .env_clear());
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/sparkjobruns.emrspark.io.yaml"
    ))
    .expect("crds/");
    assert_eq!(crd, committed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_follows_a_run_against_the_local_api_server() {
    as_root();
    let image = unpack();
    runtime_devices(&image.root);
    let sim = Simulator::start(SimulatorConfig {
        accounts: vec![Account::new("LTAI5tImageTestKey01", "image-test-secret")],
        ..SimulatorConfig::default()
    })
    .await
    .expect("simulator");
    sim.add_run(RunScript::new("w-image000000001", "jr-image").holding("Running"))
        .expect("script");
    let mut plane = ControlPlane::start(ControlPlaneOptions::default())
        .await
        .unwrap_or_else(|e| panic!("control plane: {e}"));
    let mut child = None;
    let checks = async {
        let crd = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crds/sparkjobruns.emrspark.io.yaml"
        );
        plane
            .apply_yaml_file(crd)
            .await
            .map_err(|e| e.to_string())?;
        plane
            .wait_crd_established("sparkjobruns.emrspark.io")
            .await
            .map_err(|e| e.to_string())?;
        plane
            .apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: img}\n---\napiVersion: emrspark.io/v1alpha1\nkind: SparkJobRunRef\nmetadata: {name: r, namespace: img}\nspec: {workspaceId: w-image000000001, jobRunId: jr-image, regionId: cn-hangzhou}\n")
            .await
            .map_err(|e| e.to_string())?;
        // What a pod gets mounted: a kubeconfig, readable by the image's user.
        let kubeconfig = image.root.join("tmp/kubeconfig");
        std::fs::copy(plane.kubeconfig_admin_path(), &kubeconfig).map_err(|e| e.to_string())?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&kubeconfig, std::fs::Permissions::from_mode(0o644))
                .map_err(|e| e.to_string())?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let log = image.root.with_file_name("operator.log");
        child = Some(
            Command::new(CHROOT)
                .arg("--userspec=65532:65532")
                .arg(&image.root)
                .args(["/sparkjobrun-operator", "run"])
                .args([
                    "--endpoint",
                    &sim.endpoint(),
                    "--metrics-addr",
                    &format!("127.0.0.1:{port}"),
                ])
                .env_clear()
                .env("KUBECONFIG", "/tmp/kubeconfig")
                .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tImageTestKey01")
                .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "image-test-secret")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?)
                .spawn()
                .map_err(|e| format!("chroot: {e}"))?,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = plane
                .kubectl(&[
                    "get",
                    "sparkjobrun",
                    "r",
                    "-n",
                    "img",
                    "-o",
                    "jsonpath={.status.state}",
                ])
                .map_err(|e| e.to_string())?;
            if String::from_utf8_lossy(&out.stdout) == "Running" {
                break;
            }
            if Instant::now() > deadline {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                return Err(format!(
                    "the operator in the image did not report Running in 60 s; its log ends:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let readyz = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
            .await
            .map_err(|e| e.to_string())?;
        if !readyz.status().is_success() {
            return Err(format!("/readyz {}", readyz.status()));
        }
        Ok::<(), String>(())
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

/// The Dockerfile (for those with an engine) makes the same image: user, entrypoint, command,
/// the static gnu build and the files of the layer.
#[test]
fn the_dockerfile_matches_the_image() {
    let dockerfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile"))
        .expect("Dockerfile");
    let image = unpack();
    let c = &image.config["config"];
    let user = c["User"].as_str().expect("user");
    assert!(dockerfile.contains(&format!("USER {user}")), "USER {user}");
    assert!(dockerfile.contains(r#"ENTRYPOINT ["/sparkjobrun-operator"]"#));
    assert!(dockerfile.contains(r#"CMD ["run"]"#));
    assert!(dockerfile.contains("+crt-static") && dockerfile.contains("x86_64-unknown-linux-gnu"));
    assert!(dockerfile.contains("ca-certificates.crt /rootfs/etc/ssl/certs/"));
    for file in ["etc/ssl/certs", "etc/passwd", "etc/group", "tmp"] {
        assert!(dockerfile.contains(&format!("/rootfs/{file}")), "{file}");
    }
    let passwd = std::fs::read_to_string(image.root.join("etc/passwd")).expect("passwd");
    assert!(dockerfile.contains(passwd.trim()), "{passwd}");
}
