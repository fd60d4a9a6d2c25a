//! Which RAM roles objects of which namespaces may ask the operator to assume
//! (`spec.credentials.roleArn`).
//!
//! The operator's identity is shared by every namespace; without a list, any tenant could name
//! any role that trusts the operator, including another tenant's. So every entry names the
//! namespaces it is for: `NAMESPACES=ROLE`, where `NAMESPACES` is a glob over namespace names
//! (`team-a`, `data-*`, or `*` for every namespace, which must be written out) and `ROLE` a role
//! ARN pattern that may contain `{namespace}`, replaced by the object's namespace
//! (`*=acs:ram::123:role/emr-{namespace}` gives each namespace its own role). The list is set by
//! whoever runs the operator (`--assume-role-allow`); empty refuses every role. Pure.

use std::fmt;

/// One `NAMESPACES=ROLE` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    namespaces: String,
    role: String,
}

/// Namespace-bound role ARN patterns. In a role pattern `*` matches any run of characters
/// except `:` and `/`, so it can widen an account or a role name but never reach into another
/// ARN field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleAllowList {
    entries: Vec<Entry>,
}

/// An entry that cannot be a namespace-bound role ARN pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--assume-role-allow entry {entry:?} {reason}")]
pub struct PatternError {
    pub entry: String,
    pub reason: &'static str,
}

const PREFIX: &str = "acs:ram::";
const PLACEHOLDER: &str = "{namespace}";

impl RoleAllowList {
    /// Validates the entries; blank ones are dropped.
    pub fn new<I, S>(entries: I) -> Result<Self, PatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = Vec::new();
        for e in entries {
            let e = e.as_ref().trim();
            if !e.is_empty() {
                out.push(parse_entry(e)?);
            }
        }
        Ok(Self { entries: out })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether an object in `namespace` may assume `role_arn` (case-sensitive: a miss only
    /// refuses).
    pub fn allows(&self, namespace: &str, role_arn: &str) -> bool {
        self.entries.iter().any(|e| {
            glob_match(&e.namespaces, namespace)
                && glob_match(&e.role.replace(PLACEHOLDER, namespace), role_arn)
        })
    }
}

fn parse_entry(entry: &str) -> Result<Entry, PatternError> {
    let err = |reason| PatternError {
        entry: entry.to_owned(),
        reason,
    };
    let Some((namespaces, role)) = entry.split_once('=') else {
        return Err(err(
            "does not name its namespaces: write NAMESPACES=ROLE, e.g. team-a=acs:ram::123456789012:role/emr-*, or *=... for every namespace",
        ));
    };
    let (namespaces, role) = (namespaces.trim(), role.trim());
    let ns_ok = !namespaces.is_empty()
        && namespaces
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '*'));
    if !ns_ok {
        return Err(err(
            "has a namespace pattern other than lowercase letters, digits, - and *",
        ));
    }
    // A glob in the placeholder's own segment would let one namespace reach another's role:
    // `emr-{namespace}-*` for namespace `team` matches `emr-team-a-reader` of `team-a`.
    let segment_with_placeholder = role.split([':', '/']).find(|s| s.contains(PLACEHOLDER));
    if segment_with_placeholder.is_some_and(|s| s.contains('*')) {
        return Err(err(
            "has * in the same ARN segment as {namespace}, which would let one namespace match another's role",
        ));
    }
    // The placeholder stands for a namespace name, which is a valid role-name fragment.
    let concrete = role.replace(PLACEHOLDER, "ns");
    if !concrete.starts_with(PREFIX) {
        return Err(err(
            "must have a role pattern starting with acs:ram:: (e.g. acs:ram::123456789012:role/emr-*)",
        ));
    }
    let valid = concrete
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '.' | '_' | '@' | '-' | '*'));
    if !valid {
        return Err(err(
            "has characters other than letters, digits, : / . _ @ - * and {namespace} in its role pattern",
        ));
    }
    let rest = &concrete[PREFIX.len()..];
    let Some((account, resource)) = rest.split_once(':') else {
        return Err(err("lacks the :role/ part"));
    };
    if account.is_empty() || !resource.starts_with("role/") || resource.len() <= 5 {
        return Err(err(
            "must look like NAMESPACES=acs:ram::<account>:role/<name>",
        ));
    }
    Ok(Entry {
        namespaces: namespaces.to_owned(),
        role: role.to_owned(),
    })
}

impl fmt::Display for RoleAllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.entries.is_empty() {
            return f.write_str("(empty: no role may be assumed)");
        }
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={}", e.namespaces, e.role)?;
        }
        Ok(())
    }
}

/// `*` matches any run of characters other than `:` and `/`; everything else literally.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Positions in the pattern reachable after consuming a prefix of the text.
    let mut states = vec![false; p.len() + 1];
    states[0] = true;
    close_stars(&p, &mut states);
    for &c in &t {
        let mut next = vec![false; p.len() + 1];
        for i in 0..p.len() {
            if !states[i] {
                continue;
            }
            match p[i] {
                '*' if c != ':' && c != '/' => next[i] = true,
                '*' => {}
                pc if pc == c => next[i + 1] = true,
                _ => {}
            }
        }
        close_stars(&p, &mut next);
        if !next.iter().any(|s| *s) {
            return false;
        }
        states = next;
    }
    states[p.len()]
}

/// A `*` may match nothing: being before it means being after it too.
fn close_stars(p: &[char], states: &mut [bool]) {
    for i in 0..p.len() {
        if states[i] && p[i] == '*' {
            states[i + 1] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_table() {
        let cases = [
            (
                "acs:ram::123:role/emr-*",
                "acs:ram::123:role/emr-reader",
                true,
            ),
            ("acs:ram::123:role/emr-*", "acs:ram::123:role/emr-", true),
            ("acs:ram::123:role/emr-*", "acs:ram::123:role/other", false),
            (
                "acs:ram::123:role/emr-*",
                "acs:ram::1234:role/emr-reader",
                false,
            ),
            (
                "acs:ram::*:role/emr-reader",
                "acs:ram::999:role/emr-reader",
                true,
            ),
            (
                "acs:ram::*:role/emr-reader",
                "acs:ram::9:9:role/emr-reader",
                false,
            ),
            ("acs:ram::123:role/*", "acs:ram::123:role/x/y", false),
            ("acs:ram::123:*", "acs:ram::123:role/x", false),
            ("acs:ram::123:role/a*b*c", "acs:ram::123:role/aXXbYYc", true),
            ("acs:ram::123:role/a*b*c", "acs:ram::123:role/aXXbYY", false),
            ("acs:ram::123:role/exact", "acs:ram::123:role/exact", true),
            (
                "acs:ram::123:role/exact",
                "acs:ram::123:role/exactly",
                false,
            ),
            ("acs:ram::123:role/Exact", "acs:ram::123:role/exact", false),
            ("acs:ram::123:role/**", "acs:ram::123:role/x", true),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(glob_match(pattern, text), want, "{pattern} vs {text}");
        }
    }

    #[test]
    fn entries_bind_roles_to_namespaces() {
        let empty = RoleAllowList::new(Vec::<String>::new()).expect("valid");
        assert!(empty.is_empty());
        assert!(!empty.allows("a", "acs:ram::1:role/x"), "empty refuses all");
        assert!(empty.to_string().contains("no role"));
        let list = RoleAllowList::new([
            " team-a = acs:ram::123:role/emr-* ",
            "",
            "data-*=acs:ram::456:role/reporting",
            "*=acs:ram::789:role/emr-{namespace}",
        ])
        .expect("valid");
        let table = [
            ("team-a", "acs:ram::123:role/emr-a", true),
            // Another tenant's role: listed, but for team-a only.
            ("team-b", "acs:ram::123:role/emr-a", false),
            ("data-eu", "acs:ram::456:role/reporting", true),
            ("data", "acs:ram::456:role/reporting", false),
            ("team-a", "acs:ram::456:role/reporting", false),
            // Each namespace its own role through the placeholder, and no other's.
            ("team-b", "acs:ram::789:role/emr-team-b", true),
            ("team-b", "acs:ram::789:role/emr-team-a", false),
            ("team-a", "acs:ram::789:role/emr-team-a", true),
            ("x", "acs:ram::789:role/emr-{namespace}", false),
        ];
        for (ns, role, want) in table {
            assert_eq!(list.allows(ns, role), want, "{ns} {role}");
        }
        assert_eq!(
            list.to_string(),
            "team-a=acs:ram::123:role/emr-*, data-*=acs:ram::456:role/reporting, *=acs:ram::789:role/emr-{namespace}"
        );
        for bad in [
            "acs:ram::123:role/emr-*",
            "=acs:ram::1:role/x",
            "Team=acs:ram::1:role/x",
            "a/b=acs:ram::1:role/x",
            "a=*",
            "a=acs:ram::123",
            "a=acs:ram::123:user/x",
            "a=acs:ram:::role/x",
            "a=acs:ram::1:role/",
            "a=acs:ram::1:role/a b",
            "a=acs:ram::1:role/{name}",
            "*=acs:ram::1:role/emr-{namespace}-*",
            "*=acs:ram::1:role/*{namespace}",
            "a=arn:aws:iam::1:role/x",
        ] {
            let err = RoleAllowList::new([bad]).expect_err(bad);
            assert!(err.to_string().contains(bad), "{err}");
        }
        let unbound = RoleAllowList::new(["acs:ram::1:role/x"]).expect_err("unbound");
        assert!(unbound.to_string().contains("NAMESPACES=ROLE"), "{unbound}");
    }
}
