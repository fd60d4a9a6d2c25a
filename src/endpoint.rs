//! Which URL a GetJobRun goes to. Pure. A per-object `spec.endpoint` must pass an allow-list so a
//! namespace cannot make the operator send its signed requests (and STS tokens) to a host of the
//! user's choosing; the operator's own `--endpoint` flag is trusted and may be anything.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Network {
    /// emr-serverless-spark.{region}.aliyuncs.com
    #[default]
    Public,
    /// emr-serverless-spark-vpc.{region}.aliyuncs.com, reachable from inside a VPC only.
    Vpc,
}

/// A parsed base URL: scheme, host (with port, as it goes into the `host` header) and no path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub https: bool,
    pub host: String,
}

impl Endpoint {
    pub fn base_url(&self) -> String {
        format!(
            "{}://{}",
            if self.https { "https" } else { "http" },
            self.host
        )
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base_url())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("endpoint {0:?} is not a URL of the form https://host[:port]")]
    Malformed(String),
    #[error("endpoint {0:?} must use https")]
    NotHttps(String),
    #[error("endpoint host {host:?} is not in the allow-list ({allowed})")]
    NotAllowed { host: String, allowed: String },
    #[error("region {0:?} is not a valid region id")]
    BadRegion(String),
}

/// Parses `https://host[:port][/]` (or a bare host, taken as https).
pub fn parse(text: &str) -> Result<Endpoint, EndpointError> {
    let malformed = || EndpointError::Malformed(text.to_owned());
    let (https, rest) = if let Some(r) = text.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = text.strip_prefix("http://") {
        (false, r)
    } else if text.contains("://") {
        return Err(malformed());
    } else {
        (true, text)
    };
    let host = rest.strip_suffix('/').unwrap_or(rest);
    let valid_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if host.is_empty() || !host.chars().all(valid_char) {
        return Err(malformed());
    }
    if let Some((_, port)) = host.rsplit_once(':').filter(|_| !host.ends_with(']'))
        && port.parse::<u16>().is_err()
    {
        return Err(malformed());
    }
    Ok(Endpoint {
        https,
        host: host.to_ascii_lowercase(),
    })
}

/// The service endpoint of a region.
pub fn for_region(region: &str, network: Network) -> Result<Endpoint, EndpointError> {
    let ok = !region.is_empty()
        && region.len() <= 32
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        return Err(EndpointError::BadRegion(region.to_owned()));
    }
    let prefix = match network {
        Network::Public => "emr-serverless-spark",
        Network::Vpc => "emr-serverless-spark-vpc",
    };
    Ok(Endpoint {
        https: true,
        host: format!("{prefix}.{region}.aliyuncs.com"),
    })
}

/// Host suffixes a `spec.endpoint` may point at; https only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    suffixes: Vec<String>,
}

impl Default for AllowList {
    fn default() -> Self {
        Self {
            suffixes: vec!["aliyuncs.com".into()],
        }
    }
}

impl AllowList {
    pub fn new(suffixes: impl IntoIterator<Item = String>) -> Self {
        Self {
            suffixes: suffixes
                .into_iter()
                .map(|s| s.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }

    /// Checks a user-supplied endpoint: https, and the host (port ignored) equal to or under one
    /// of the suffixes at a label boundary (`evilaliyuncs.com` does not match `aliyuncs.com`).
    pub fn check(&self, text: &str) -> Result<Endpoint, EndpointError> {
        let ep = parse(text)?;
        if !ep.https {
            return Err(EndpointError::NotHttps(text.to_owned()));
        }
        let host = ep
            .host
            .rsplit_once(':')
            .map_or(ep.host.as_str(), |(h, _)| h);
        let allowed = self.suffixes.iter().any(|s| {
            host == s
                || host
                    .strip_suffix(s.as_str())
                    .is_some_and(|p| p.ends_with('.'))
        });
        if allowed {
            Ok(ep)
        } else {
            Err(EndpointError::NotAllowed {
                host: host.to_owned(),
                allowed: self.suffixes.join(", "),
            })
        }
    }
}

/// Where one object's calls go: `spec.endpoint` (checked), else the operator's `--endpoint`,
/// else the region's endpoint for the configured network.
pub fn resolve(
    spec_endpoint: Option<&str>,
    operator_endpoint: Option<&Endpoint>,
    region: &str,
    network: Network,
    allow: &AllowList,
) -> Result<Endpoint, EndpointError> {
    match (spec_endpoint, operator_endpoint) {
        (Some(s), _) => allow.check(s),
        (None, Some(op)) => Ok(op.clone()),
        (None, None) => for_region(region, network),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_endpoints() {
        assert_eq!(
            for_region("cn-hangzhou", Network::Public).map(|e| e.base_url()),
            Ok("https://emr-serverless-spark.cn-hangzhou.aliyuncs.com".into())
        );
        assert_eq!(
            for_region("ap-southeast-1", Network::Vpc).map(|e| e.base_url()),
            Ok("https://emr-serverless-spark-vpc.ap-southeast-1.aliyuncs.com".into())
        );
        assert!(for_region("cn-hangzhou/../x", Network::Public).is_err());
        assert!(for_region("", Network::Public).is_err());
    }

    #[test]
    fn parsing() {
        assert_eq!(
            parse("http://127.0.0.1:8080"),
            Ok(Endpoint {
                https: false,
                host: "127.0.0.1:8080".into()
            })
        );
        assert_eq!(
            parse("emr.example.com"),
            Ok(Endpoint {
                https: true,
                host: "emr.example.com".into()
            })
        );
        assert_eq!(
            parse("https://Host.COM/"),
            Ok(Endpoint {
                https: true,
                host: "host.com".into()
            })
        );
        for bad in [
            "ftp://x",
            "https://",
            "https://a b",
            "https://h/path",
            "https://h:99999",
            "https://u@h",
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn allow_list() {
        let allow = AllowList::default();
        assert!(
            allow
                .check("https://emr-serverless-spark-vpc.cn-hangzhou.aliyuncs.com")
                .is_ok()
        );
        assert!(
            allow
                .check("https://emr-serverless-spark.cn-hangzhou.aliyuncs.com:443/")
                .is_ok()
        );
        assert!(matches!(
            allow.check("http://emr-serverless-spark.cn-hangzhou.aliyuncs.com"),
            Err(EndpointError::NotHttps(_))
        ));
        for bad in [
            "https://evilaliyuncs.com",
            "https://aliyuncs.com.evil.io",
            "https://127.0.0.1:8443",
        ] {
            assert!(
                matches!(allow.check(bad), Err(EndpointError::NotAllowed { .. })),
                "{bad}"
            );
        }
        let custom = AllowList::new(vec![".corp.example".to_string()]);
        assert!(custom.check("https://emr.corp.example").is_ok());
        assert!(
            custom
                .check("https://emr.cn-hangzhou.aliyuncs.com")
                .is_err()
        );
    }

    #[test]
    fn resolution_order() {
        let allow = AllowList::default();
        let op = parse("http://127.0.0.1:9000").expect("parses");
        assert_eq!(
            resolve(None, Some(&op), "cn-hangzhou", Network::Public, &allow),
            Ok(op.clone())
        );
        assert_eq!(
            resolve(None, None, "cn-hangzhou", Network::Vpc, &allow).map(|e| e.host),
            Ok("emr-serverless-spark-vpc.cn-hangzhou.aliyuncs.com".into())
        );
        assert!(
            resolve(
                Some("https://x.aliyuncs.com"),
                Some(&op),
                "cn-hangzhou",
                Network::Public,
                &allow
            )
            .is_ok()
        );
        assert!(
            resolve(
                Some("http://127.0.0.1:1"),
                Some(&op),
                "cn-hangzhou",
                Network::Public,
                &allow
            )
            .is_err()
        );
    }
}
