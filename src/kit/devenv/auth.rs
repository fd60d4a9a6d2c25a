//! Static-token users and the kubeconfigs that carry their tokens.
//!
//! kube-apiserver's `--token-auth-file` is the simplest authenticator that
//! needs no client certificates and lets tests act as several users: one
//! admin in `system:masters` and least-privilege users whose rights the
//! tests grant through RBAC objects.

use std::path::Path;

use rand::Rng;

use super::DevEnvError;

/// Group that bypasses RBAC entirely; only the admin belongs to it.
pub const MASTERS_GROUP: &str = "system:masters";
/// Name of the admin user in the token file.
pub const ADMIN_USER: &str = "devenv-admin";
/// Name of the operator's least-privilege user.
pub const OPERATOR_USER: &str = "sparkjobrun-operator";
/// Group of the operator user; RBAC bindings in tests may target it.
pub const OPERATOR_GROUP: &str = "sparkjobrun:operators";
/// Cluster name used inside the generated kubeconfigs.
pub const CLUSTER_NAME: &str = "devenv";

/// One line of the static token file: a bearer token and who it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticUser {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub token: String,
}

impl StaticUser {
    /// A user with a fresh random token.
    pub fn new(name: impl Into<String>, uid: impl Into<String>, groups: &[&str]) -> Self {
        Self {
            name: name.into(),
            uid: uid.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            token: random_token(),
        }
    }

    /// The cluster admin: member of `system:masters`, so RBAC never denies it.
    pub fn admin() -> Self {
        Self::new(ADMIN_USER, "devenv-admin-uid", &[MASTERS_GROUP])
    }

    /// The operator's user: no rights until a test binds a role to it.
    pub fn operator() -> Self {
        Self::new(OPERATOR_USER, "sparkjobrun-operator-uid", &[OPERATOR_GROUP])
    }
}

/// 128 random bits as hex: unguessable, and safe inside CSV and YAML.
pub fn random_token() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    hex::encode(bytes)
}

fn check_field(what: &'static str, value: &str, allow_empty: bool) -> Result<(), DevEnvError> {
    let invalid = |reason| DevEnvError::InvalidInput {
        what,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() && !allow_empty {
        return Err(invalid("must not be empty"));
    }
    if value.chars().any(|c| matches!(c, ',' | '"' | '\n' | '\r')) {
        return Err(invalid("must not contain commas, quotes or line breaks"));
    }
    Ok(())
}

/// Renders the `--token-auth-file` CSV: `token,user,uid,"group1,group2"`.
pub fn render_token_csv(users: &[StaticUser]) -> Result<String, DevEnvError> {
    let mut out = String::new();
    for user in users {
        check_field("token", &user.token, false)?;
        check_field("user name", &user.name, false)?;
        check_field("user uid", &user.uid, true)?;
        for group in &user.groups {
            check_field("group", group, false)?;
        }
        out.push_str(&format!("{},{},{}", user.token, user.name, user.uid));
        if !user.groups.is_empty() {
            out.push_str(&format!(",\"{}\"", user.groups.join(",")));
        }
        out.push('\n');
    }
    Ok(out)
}

/// Renders a kubeconfig that trusts `ca_pem` and authenticates with `user`'s token.
pub fn render_kubeconfig(
    server: &str,
    ca_pem: &str,
    user: &StaticUser,
) -> Result<String, DevEnvError> {
    // k8s-openapi's ByteString serialises as base64, which is exactly what
    // `certificate-authority-data` wants.
    let ca_data = serde_json::to_value(k8s_openapi::ByteString(ca_pem.as_bytes().to_vec()))
        .map_err(|e| DevEnvError::serde("encoding the CA certificate", e))?;
    let context = format!("{}@{CLUSTER_NAME}", user.name);
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": CLUSTER_NAME,
            "cluster": { "server": server, "certificate-authority-data": ca_data },
        }],
        "users": [{ "name": user.name, "user": { "token": user.token } }],
        "contexts": [{
            "name": context,
            "context": { "cluster": CLUSTER_NAME, "user": user.name, "namespace": "default" },
        }],
        "current-context": context,
    });
    serde_yaml::to_string(&doc)
        .map_err(|e| DevEnvError::serde(format!("rendering the kubeconfig of {}", user.name), e))
}

/// Builds a kube client configuration from a rendered kubeconfig.
pub(crate) async fn config_from_kubeconfig(
    yaml: &str,
    user: &str,
) -> Result<kube::Config, DevEnvError> {
    let to_err = |source| DevEnvError::Kubeconfig {
        user: user.to_owned(),
        source,
    };
    let kubeconfig = kube::config::Kubeconfig::from_yaml(yaml).map_err(to_err)?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(to_err)
}

/// Writes a file readable only by the owner: it holds tokens or private keys.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), DevEnvError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| DevEnvError::io("creating", path, e))?;
    file.write_all(contents)
        .map_err(|e| DevEnvError::io("writing", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, uid: &str, groups: &[&str], token: &str) -> StaticUser {
        StaticUser {
            name: name.into(),
            uid: uid.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            token: token.into(),
        }
    }

    #[test]
    fn token_csv_quotes_group_lists() {
        let csv = render_token_csv(&[
            user("devenv-admin", "u1", &["system:masters"], "t1"),
            user(
                "sparkjobrun-operator",
                "u2",
                &["sparkjobrun:operators", "extra"],
                "t2",
            ),
            user("nobody", "u3", &[], "t3"),
        ])
        .expect("valid users");
        assert_eq!(
            csv,
            "t1,devenv-admin,u1,\"system:masters\"\n\
             t2,sparkjobrun-operator,u2,\"sparkjobrun:operators,extra\"\n\
             t3,nobody,u3\n"
        );
    }

    #[test]
    fn token_csv_rejects_separators() {
        for bad in [
            user("a,b", "u", &[], "t"),
            user("a", "u", &["g\"x"], "t"),
            user("a", "u", &["g,h"], "t"),
            user("a", "u", &[], "t\n"),
            user("", "u", &[], "t"),
            user("a", "u", &[], ""),
        ] {
            assert!(
                render_token_csv(std::slice::from_ref(&bad)).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn default_users_have_distinct_random_tokens() {
        let (admin, operator) = (StaticUser::admin(), StaticUser::operator());
        assert_eq!(admin.groups, vec![MASTERS_GROUP]);
        assert_eq!(operator.name, OPERATOR_USER);
        assert_eq!(operator.groups, vec![OPERATOR_GROUP]);
        assert!(!operator.groups.iter().any(|g| g == MASTERS_GROUP));
        assert_eq!(admin.token.len(), 32);
        assert_ne!(admin.token, operator.token);
    }

    #[test]
    fn kubeconfig_carries_server_ca_and_token() {
        let ca = "-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n";
        let u = user("sparkjobrun-operator", "u2", &["g"], "secret-token");
        let yaml = render_kubeconfig("https://127.0.0.1:6443", ca, &u).expect("render");
        let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).expect("yaml");
        assert_eq!(
            doc["current-context"].as_str(),
            Some("sparkjobrun-operator@devenv")
        );
        let cluster = &doc["clusters"][0]["cluster"];
        assert_eq!(cluster["server"].as_str(), Some("https://127.0.0.1:6443"));
        let data = cluster["certificate-authority-data"]
            .as_str()
            .expect("ca data");
        let decoded: k8s_openapi::ByteString =
            serde_json::from_value(serde_json::Value::String(data.to_owned())).expect("base64");
        assert_eq!(decoded.0, ca.as_bytes());
        assert_eq!(
            doc["users"][0]["user"]["token"].as_str(),
            Some("secret-token")
        );
        assert_eq!(
            doc["contexts"][0]["context"]["user"].as_str(),
            Some("sparkjobrun-operator")
        );
    }

    #[tokio::test]
    async fn kubeconfig_loads_into_a_kube_config() {
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("cert")
            .cert
            .pem();
        let u = user("op", "u", &[], "tok");
        let yaml = render_kubeconfig("https://127.0.0.1:7443", &ca, &u).expect("render");
        let config = config_from_kubeconfig(&yaml, "op").await.expect("load");
        assert_eq!(config.cluster_url.to_string(), "https://127.0.0.1:7443/");
        assert_eq!(config.root_cert.as_ref().map(Vec::len), Some(1));
        assert_eq!(config.default_namespace, "default");
    }
}
