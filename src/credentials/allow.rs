//! Which RAM roles objects may ask the operator to assume (`spec.credentials.roleArn`).
//!
//! The operator's identity is shared by every namespace; without a list, any tenant could name
//! any role that trusts the operator, including another tenant's. The list is set by whoever
//! runs the operator (`--assume-role-allow`); empty refuses every role. Pure.

use std::fmt;

/// Role ARN patterns: `*` matches any run of characters except `:` and `/`, so a pattern can
/// widen an account or a role name but never reach into another ARN field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleAllowList {
    patterns: Vec<String>,
}

/// A pattern that cannot be a role ARN pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("role ARN pattern {pattern:?} {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: &'static str,
}

const PREFIX: &str = "acs:ram::";

impl RoleAllowList {
    /// Validates the patterns; blank entries are dropped.
    pub fn new<I, S>(patterns: I) -> Result<Self, PatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = Vec::new();
        for p in patterns {
            let p = p.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            let err = |reason| PatternError {
                pattern: p.to_owned(),
                reason,
            };
            if !p.starts_with(PREFIX) {
                return Err(err(
                    "must start with acs:ram:: (e.g. acs:ram::123456789012:role/emr-*)",
                ));
            }
            let valid = p.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '.' | '_' | '@' | '-' | '*')
            });
            if !valid {
                return Err(err(
                    "has characters other than letters, digits, : / . _ @ - and *",
                ));
            }
            let rest = &p[PREFIX.len()..];
            let Some((account, resource)) = rest.split_once(':') else {
                return Err(err("lacks the :role/ part"));
            };
            if account.is_empty() || !resource.starts_with("role/") || resource.len() <= 5 {
                return Err(err("must look like acs:ram::<account>:role/<name>"));
            }
            out.push(p.to_owned());
        }
        Ok(Self { patterns: out })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether `role_arn` matches one of the patterns (case-sensitive: a miss only refuses).
    pub fn allows(&self, role_arn: &str) -> bool {
        self.patterns.iter().any(|p| glob_match(p, role_arn))
    }
}

impl fmt::Display for RoleAllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.patterns.is_empty() {
            f.write_str("(empty: no role may be assumed)")
        } else {
            f.write_str(&self.patterns.join(", "))
        }
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
    fn list_validation_and_matching() {
        let empty = RoleAllowList::new(Vec::<String>::new()).expect("valid");
        assert!(empty.is_empty());
        assert!(!empty.allows("acs:ram::1:role/x"), "empty refuses all");
        assert!(empty.to_string().contains("no role"));
        let list = RoleAllowList::new([" acs:ram::123:role/emr-* ", "", "acs:ram::456:role/r"])
            .expect("valid");
        assert_eq!(list.patterns().len(), 2);
        assert!(list.allows("acs:ram::123:role/emr-a"));
        assert!(list.allows("acs:ram::456:role/r"));
        assert!(!list.allows("acs:ram::456:role/r2"));
        for bad in [
            "*",
            "acs:ram::123",
            "acs:ram::123:user/x",
            "acs:ram:::role/x",
            "acs:ram::1:role/",
            "acs:ram::1:role/a b",
            "arn:aws:iam::1:role/x",
        ] {
            let err = RoleAllowList::new([bad]).expect_err(bad);
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
