//! Starts the real etcd + kube-apiserver and checks the basics the other
//! integration tests rely on. Fails (never skips) when the binaries are
//! missing: run `tools/ensure-tools.sh` first.

use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams};
use sparkjobrun_operator::kit::devenv::{ControlPlane, ControlPlaneOptions};

/// Must match the version pinned in tools/k8s/go.mod.
const EXPECTED_VERSION: &str = "v1.36.5";

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_starts_serves_and_stops() {
    let mut plane = match ControlPlane::start(ControlPlaneOptions::default()).await {
        Ok(plane) => plane,
        Err(e) => panic!("control plane did not start: {e}"),
    };
    let pids = plane.pids();
    let work_dir = plane.work_dir().to_owned();
    let logs = plane.log_paths().clone();
    assert!(plane.kubeconfig_admin_path().is_file());
    assert!(plane.kubeconfig_operator_path().is_file());

    let checks = async {
        let admin = plane.admin_client().map_err(|e| e.to_string())?;

        let version = admin.apiserver_version().await.map_err(|e| e.to_string())?;
        if version.git_version != EXPECTED_VERSION {
            return Err(format!(
                "/version says {}, expected {EXPECTED_VERSION}",
                version.git_version
            ));
        }

        let ns = plane
            .create_namespace("smoke")
            .await
            .map_err(|e| e.to_string())?;
        let out = plane
            .kubectl(&["get", "ns", "-o", "name"])
            .map_err(|e| e.to_string())?;
        if !out.status.success()
            || !stdout_of(&out)
                .lines()
                .any(|l| l == format!("namespace/{ns}"))
        {
            return Err(format!(
                "kubectl get ns: {}\nstdout: {}\nstderr: {}",
                out.status,
                stdout_of(&out),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let out = plane
            .kubectl(&["version", "-o", "json"])
            .map_err(|e| e.to_string())?;
        if !stdout_of(&out).contains(EXPECTED_VERSION) {
            return Err(format!("kubectl version: {}", stdout_of(&out)));
        }

        // Server-side apply of multi-document YAML into the test's namespace.
        let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: one\ndata:\n  k: v\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: two\n";
        let applied = plane
            .apply_yaml_in(yaml, &ns)
            .await
            .map_err(|e| e.to_string())?;
        if applied.len() != 2 {
            return Err(format!("applied {} objects, expected 2", applied.len()));
        }
        let cm = Api::<ConfigMap>::namespaced(admin.clone(), &ns)
            .get("one")
            .await
            .map_err(|e| e.to_string())?;
        if cm.data.and_then(|d| d.get("k").cloned()).as_deref() != Some("v") {
            return Err("applied ConfigMap lost its data".into());
        }

        // A CRD and an object of its kind in one file: apply waits for the CRD.
        let crd_yaml = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.example.com
spec:
  group: smoke.example.com
  scope: Namespaced
  names: { plural: widgets, singular: widget, kind: Widget }
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: { type: object, x-kubernetes-preserve-unknown-fields: true }
---
apiVersion: smoke.example.com/v1
kind: Widget
metadata:
  name: w1
spec:
  size: 3
"#;
        plane
            .apply_yaml_in(crd_yaml, &ns)
            .await
            .map_err(|e| e.to_string())?;
        plane
            .wait_crd_established("widgets.smoke.example.com")
            .await
            .map_err(|e| e.to_string())?;
        let out = plane
            .kubectl(&[
                "get",
                "widgets",
                "-n",
                &ns,
                "w1",
                "-o",
                "jsonpath={.spec.size}",
            ])
            .map_err(|e| e.to_string())?;
        if stdout_of(&out) != "3" {
            return Err(format!("applied Widget: {out:?}"));
        }

        // Service-account tokens are signed with the generated EC key.
        let out = plane
            .kubectl(&["create", "serviceaccount", "smoke", "-n", &ns])
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("create serviceaccount: {out:?}"));
        }
        let out = plane
            .kubectl(&["create", "token", "smoke", "-n", &ns])
            .map_err(|e| e.to_string())?;
        if !out.status.success() || stdout_of(&out).split('.').count() != 3 {
            return Err(format!("create token: {out:?}"));
        }

        // The operator user has no rights until a test grants them.
        let operator = plane.operator_client().map_err(|e| e.to_string())?;
        match Api::<Namespace>::all(operator)
            .list(&ListParams::default())
            .await
        {
            Err(kube::Error::Api(status)) if status.code == 403 => {}
            other => {
                return Err(format!(
                    "operator listing namespaces: expected 403, got {other:?}"
                ));
            }
        }
        let out = plane
            .kubectl_as_operator(&["get", "ns"])
            .map_err(|e| e.to_string())?;
        if out.status.success() || !String::from_utf8_lossy(&out.stderr).contains("forbidden") {
            return Err(format!("kubectl as operator should be forbidden: {out:?}"));
        }
        Ok::<(), String>(())
    };
    if let Err(e) = checks.await {
        let logs = plane.keep_logs();
        panic!(
            "{e}\nlogs kept: {} and {}",
            logs.etcd.display(),
            logs.kube_apiserver.display()
        );
    }

    plane.stop();
    for (name, pid) in [("etcd", pids.etcd), ("kube-apiserver", pids.kube_apiserver)] {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "{name} (pid {pid}) still running after stop"
        );
    }
    assert!(
        !work_dir.exists(),
        "work dir {} not removed",
        work_dir.display()
    );
    assert!(!logs.etcd.exists());
}
