//! Server-side apply of arbitrary multi-document YAML, like `kubectl apply
//! --server-side`, but in-process so tests get typed errors.

use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, ApiCapabilities, ApiResource, Scope};
use serde::Deserialize;

use super::DevEnvError;

/// Field manager recorded in `managedFields` for everything applied here.
pub const FIELD_MANAGER: &str = "devenv";

/// How long a kind may take to appear in discovery after its CRD is established.
const DISCOVERY_WAIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(100);

/// Splits multi-document YAML into objects; empty documents are skipped and
/// `kind: List` documents are flattened into their items.
pub fn parse_documents(yaml: &str) -> Result<Vec<DynamicObject>, DevEnvError> {
    let mut objects = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let what = || format!("parsing YAML document #{}", index + 1);
        let value =
            serde_yaml::Value::deserialize(doc).map_err(|e| DevEnvError::serde(what(), e))?;
        if value.is_null() {
            continue;
        }
        let is_list = value.get("kind").and_then(serde_yaml::Value::as_str) == Some("List");
        match value.get("items") {
            Some(serde_yaml::Value::Sequence(items)) if is_list => {
                for item in items {
                    objects.push(
                        serde_yaml::from_value(item.clone())
                            .map_err(|e| DevEnvError::serde(what(), e))?,
                    );
                }
            }
            _ => objects
                .push(serde_yaml::from_value(value).map_err(|e| DevEnvError::serde(what(), e))?),
        }
    }
    Ok(objects)
}

fn describe(obj: &DynamicObject) -> String {
    let kind = obj.types.as_ref().map_or("<no kind>", |t| t.kind.as_str());
    let name = obj.metadata.name.as_deref().unwrap_or("<no name>");
    format!("{kind}/{name}")
}

/// Resolves a kind through discovery, retrying briefly: a kind served by a
/// just-established CRD shows up in discovery a moment later.
async fn resolve(
    client: &Client,
    gvk: &GroupVersionKind,
) -> Result<(ApiResource, ApiCapabilities), DevEnvError> {
    let started = Instant::now();
    loop {
        match discovery::pinned_kind(client, gvk).await {
            Ok(found) => return Ok(found),
            Err(e) if started.elapsed() >= DISCOVERY_WAIT => {
                return Err(DevEnvError::kube(
                    format!("discovering {}/{} {}", gvk.group, gvk.version, gvk.kind),
                    e,
                ));
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Applies every object in `yaml`. Namespaced objects without a namespace go
/// to `default_namespace`. After a CRD is applied, waits for it to be
/// established so later documents may use its kind.
pub async fn apply_yaml(
    client: &Client,
    yaml: &str,
    default_namespace: &str,
) -> Result<Vec<DynamicObject>, DevEnvError> {
    let mut applied = Vec::new();
    for mut obj in parse_documents(yaml)? {
        let what = describe(&obj);
        let types = obj.types.clone().ok_or_else(|| {
            DevEnvError::serde(
                format!("applying {what}"),
                "apiVersion and kind are required",
            )
        })?;
        let gvk = GroupVersionKind::try_from(&types)
            .map_err(|e| DevEnvError::serde(format!("applying {what}"), e))?;
        let name = obj.metadata.name.clone().ok_or_else(|| {
            DevEnvError::serde(format!("applying {what}"), "metadata.name is required")
        })?;
        let (resource, caps) = resolve(client, &gvk).await?;
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => {
                let ns = obj
                    .metadata
                    .namespace
                    .get_or_insert_with(|| default_namespace.to_owned())
                    .clone();
                Api::namespaced_with(client.clone(), &ns, &resource)
            }
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let result = api
            .patch(&name, &params, &Patch::Apply(&obj))
            .await
            .map_err(|e| DevEnvError::kube(format!("server-side apply of {what}"), e))?;
        if gvk.group == "apiextensions.k8s.io" && gvk.kind == "CustomResourceDefinition" {
            wait_crd_established(client, &name, Duration::from_secs(30)).await?;
        }
        applied.push(result);
    }
    Ok(applied)
}

/// Waits until the CRD `name` has condition `Established=True`.
pub async fn wait_crd_established(
    client: &Client,
    name: &str,
    timeout: Duration,
) -> Result<(), DevEnvError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let started = Instant::now();
    loop {
        let crd = api.get_opt(name).await.map_err(|e| {
            DevEnvError::kube(format!("reading CustomResourceDefinition {name}"), e)
        })?;
        let established = crd
            .as_ref()
            .and_then(|c| c.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|conds| {
                conds
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
        if established {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(DevEnvError::Timeout {
                what: format!("CustomResourceDefinition {name} to be established"),
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multi_document_yaml() {
        let yaml = "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n---\n# only a comment\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata:\n    name: n1\n- apiVersion: rbac.authorization.k8s.io/v1\n  kind: ClusterRole\n  metadata:\n    name: r\n  rules: []\n";
        let objects = parse_documents(yaml).expect("parse");
        let names: Vec<String> = objects.iter().map(describe).collect();
        assert_eq!(names, ["ConfigMap/a", "Namespace/n1", "ClusterRole/r"]);
        assert_eq!(objects[0].data["data"]["k"], "v");
    }

    #[test]
    fn reports_the_broken_document() {
        let err = parse_documents("apiVersion: v1\n---\n: : :\n").unwrap_err();
        assert!(err.to_string().contains("#2"), "{err}");
    }
}
