//! A string that never shows itself in `Debug` or `Display`, so credentials cannot leak through
//! logs, events or error messages by accident.

use std::fmt;

/// Secret material (an AccessKey secret or an STS token). Read it only with [`Secret::expose`],
/// at the one place that needs the value (signing a request, sending a header).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// Headers of a signed request shown by name only: their values carry the signature and the
/// security token. The one `Debug` every request type (signed, prepared, received) uses.
pub struct HeaderNames<'a>(pub &'a [(String, String)]);

impl fmt::Debug for HeaderNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(n, _)| n))
            .finish()
    }
}

/// The `Debug` of a request on either side of the wire: method, path and query, header names
/// and the body's size, never a header value or the body.
pub fn debug_request(
    f: &mut fmt::Formatter<'_>,
    type_name: &str,
    method: &str,
    path: &str,
    query: &dyn fmt::Debug,
    headers: &[(String, String)],
    body: &[u8],
) -> fmt::Result {
    f.debug_struct(type_name)
        .field("method", &method)
        .field("path", &path)
        .field("query", query)
        .field("headers", &HeaderNames(headers))
        .field("body_len", &body.len())
        .finish()
}

/// Compares without an early exit, so the time an answer takes says nothing about how much of a
/// signature or token matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_hide_values_and_equality_is_exact() {
        let headers = vec![
            ("authorization".to_owned(), "ACS3 Signature=abc".to_owned()),
            ("x-acs-security-token".to_owned(), "tok-123".to_owned()),
        ];
        let shown = format!("{:?}", HeaderNames(&headers));
        assert_eq!(shown, r#"["authorization", "x-acs-security-token"]"#);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn debug_hides_the_value() {
        let s = Secret::new("hunter2-very-secret");
        let shown = format!("{s:?} {:?}", Some(&s));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }
}
