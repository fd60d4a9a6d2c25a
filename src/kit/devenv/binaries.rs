//! Finding the etcd, kube-apiserver and kubectl binaries.
//!
//! They are built by `tools/ensure-tools.sh` into a cache outside the
//! repository, which records their paths in `tools.env`; environment
//! variables override single entries (handy when testing another build).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::DevEnvError;

/// Environment variable overriding the cache directory used by `tools/ensure-tools.sh`.
pub const CACHE_ENV: &str = "SPARKJOBRUN_CACHE";

/// Absolute paths of the three binaries the control plane needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    pub kube_apiserver: PathBuf,
    pub kubectl: PathBuf,
    pub etcd: PathBuf,
}

/// The cache directory: `$SPARKJOBRUN_CACHE`, else `$HOME/.cache/sparkjobrun-operator`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
    home.join(".cache").join("sparkjobrun-operator")
}

/// Path of the `tools.env` file written by `tools/ensure-tools.sh`.
pub fn tools_env_path() -> PathBuf {
    cache_dir().join("tools.env")
}

impl Binaries {
    /// Locates the binaries: `KUBE_APISERVER`, `KUBECTL` and `ETCD` win,
    /// the rest comes from `tools.env` in the cache directory.
    pub fn locate() -> Result<Self, DevEnvError> {
        Ok(Self {
            kube_apiserver: tool("KUBE_APISERVER", "kube-apiserver")?,
            kubectl: tool("KUBECTL", "kubectl")?,
            etcd: tool("ETCD", "etcd")?,
        })
    }
}

/// The one lookup of a tool binary (for the dev environment and for tests): the variable
/// `env_var` when set, else its line in `tools.env` (written by `tools/ensure-tools.sh`); the
/// file must be executable.
pub fn tool(env_var: &'static str, binary: &'static str) -> Result<PathBuf, DevEnvError> {
    let tools_env = tools_env_path();
    let not_found = |detail: String| DevEnvError::BinaryNotFound {
        binary,
        env_var,
        tools_env: tools_env.clone(),
        detail,
    };
    let path = match std::env::var_os(env_var).filter(|v| !v.is_empty()) {
        Some(value) => PathBuf::from(value),
        None => {
            let text = std::fs::read_to_string(&tools_env).map_err(|e| {
                not_found(format!(
                    "{env_var} is not set and {} cannot be read ({e})",
                    tools_env.display()
                ))
            })?;
            let entries = parse_tools_env(&text);
            let value = entries.get(env_var).ok_or_else(|| {
                not_found(format!("{} has no {env_var}= line", tools_env.display()))
            })?;
            PathBuf::from(value)
        }
    };
    check_executable(&path).map_err(not_found)?;
    Ok(path)
}

/// Parses `KEY=VALUE` lines; blank lines and `#` comments are ignored.
pub(crate) fn parse_tools_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn check_executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{} is not executable", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tools_env_lines() {
        let text = "# written by ensure-tools\nKUBE_APISERVER=/c/k8s/bin/kube-apiserver\n\nKUBECTL = /c/k8s/bin/kubectl\nETCD=/c/etcd/bin/etcd\nnot a pair\n";
        let entries = parse_tools_env(text);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries["KUBE_APISERVER"], "/c/k8s/bin/kube-apiserver");
        assert_eq!(entries["KUBECTL"], "/c/k8s/bin/kubectl");
        assert_eq!(entries["ETCD"], "/c/etcd/bin/etcd");
    }

    #[test]
    fn rejects_missing_and_non_executable_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope");
        assert!(check_executable(&missing).is_err());
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"x").expect("write");
        assert!(
            check_executable(&plain)
                .unwrap_err()
                .contains("not executable")
        );
    }
}
