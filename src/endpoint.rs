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
///
/// `host` comes out exactly as reqwest will send the `Host` header (the URL parser the client
/// uses drops a scheme's default port), because it is what the request is signed over.
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
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let valid_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if authority.is_empty() || !authority.chars().all(valid_char) {
        return Err(malformed());
    }
    if let Some((_, port)) = authority
        .rsplit_once(':')
        .filter(|_| !authority.ends_with(']'))
        && !valid_port(port)
    {
        return Err(malformed());
    }
    let scheme = if https { "https" } else { "http" };
    let url = reqwest::Url::parse(&format!("{scheme}://{authority}/")).map_err(|_| malformed())?;
    let host = url.host_str().ok_or_else(malformed)?;
    Ok(Endpoint {
        https,
        host: match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        },
    })
}

/// 1-65535, decimal digits only, no leading zero (the CRD's rule too).
fn valid_port(port: &str) -> bool {
    port.bytes().all(|b| b.is_ascii_digit())
        && !port.starts_with('0')
        && port.parse::<u16>().is_ok()
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

/// Which hosts a `spec.endpoint` may point at (https only): always the service's own public and
/// VPC hosts of the object's region, and hosts under `extra` suffixes only when the operator opts
/// in. A suffix such as `aliyuncs.com` would also admit other products, STS and anyone's bucket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowList {
    extra: Vec<String>,
}

impl AllowList {
    pub fn new(suffixes: impl IntoIterator<Item = String>) -> Self {
        Self {
            extra: suffixes
                .into_iter()
                .map(|s| s.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }

    /// Checks a user-supplied endpoint for an object in `region`: https, and the host (port
    /// ignored) one of the region's service hosts, or equal to or under an extra suffix at a label
    /// boundary (`evilaliyuncs.com` does not match `aliyuncs.com`).
    pub fn check(&self, text: &str, region: &str) -> Result<Endpoint, EndpointError> {
        let ep = parse(text)?;
        if !ep.https {
            return Err(EndpointError::NotHttps(text.to_owned()));
        }
        let host = host_without_port(&ep.host);
        let own = [Network::Public, Network::Vpc]
            .into_iter()
            .filter_map(|n| for_region(region, n).ok())
            .any(|e| e.host == host);
        let extra = self.extra.iter().any(|s| {
            host == s
                || host
                    .strip_suffix(s.as_str())
                    .is_some_and(|p| p.ends_with('.'))
        });
        if own || extra {
            return Ok(ep);
        }
        let mut allowed = format!("the service hosts of region {region}");
        for s in &self.extra {
            allowed.push_str(", *.");
            allowed.push_str(s);
        }
        Err(EndpointError::NotAllowed {
            host: host.to_owned(),
            allowed,
        })
    }
}

fn host_without_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, port)) if !h.is_empty() && !port.contains(']') => h,
        _ => host,
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
        (Some(s), _) => allow.check(s, region),
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

    /// The `host` the signer signs must be the `Host` header reqwest sends, which leaves out a
    /// scheme's default port.
    #[test]
    fn signed_host_is_the_sent_host_header() {
        for (text, want) in [
            (
                "https://emr-serverless-spark.cn-hangzhou.aliyuncs.com:443",
                "emr-serverless-spark.cn-hangzhou.aliyuncs.com",
            ),
            ("http://127.0.0.1:80/", "127.0.0.1"),
            ("https://h.example:80", "h.example:80"),
            ("http://h.example:443", "h.example:443"),
            ("https://[::1]:8443", "[::1]:8443"),
            ("https://[::1]:443", "[::1]"),
        ] {
            let ep = parse(text).expect(text);
            assert_eq!(ep.host, want, "{text}");
            let url = reqwest::Url::parse(&ep.base_url()).expect("url");
            let sent = match url.port() {
                Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
                None => url.host_str().unwrap_or_default().to_owned(),
            };
            assert_eq!(ep.host, sent, "{text}");
        }
        for bad in [
            "https://h:0",
            "https://h:0443",
            "https://h:",
            "https://h:+1",
            "https://h:65536",
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn allow_list() {
        let allow = AllowList::default();
        for ok in [
            "https://emr-serverless-spark-vpc.cn-hangzhou.aliyuncs.com",
            "https://emr-serverless-spark.cn-hangzhou.aliyuncs.com:443/",
            "https://EMR-serverless-spark.cn-hangzhou.aliyuncs.com:8443",
        ] {
            assert!(allow.check(ok, "cn-hangzhou").is_ok(), "{ok}");
        }
        assert!(matches!(
            allow.check(
                "http://emr-serverless-spark.cn-hangzhou.aliyuncs.com",
                "cn-hangzhou"
            ),
            Err(EndpointError::NotHttps(_))
        ));
        // Other products, other regions' hosts, buckets and look-alikes are not the service.
        for bad in [
            "https://my-bucket.oss-cn-hangzhou.aliyuncs.com",
            "https://sts.cn-hangzhou.aliyuncs.com",
            "https://ecs.aliyuncs.com",
            "https://emr-serverless-spark.cn-shanghai.aliyuncs.com",
            "https://emr-serverless-spark.cn-hangzhou.aliyuncs.com.evil.io",
            "https://evilaliyuncs.com",
            "https://127.0.0.1:8443",
        ] {
            let err = allow.check(bad, "cn-hangzhou").expect_err(bad);
            assert!(matches!(err, EndpointError::NotAllowed { .. }), "{bad}");
            assert!(err.to_string().contains("region cn-hangzhou"), "{err}");
        }
        let custom = AllowList::new(vec![".corp.example".to_string()]);
        assert!(
            custom
                .check("https://emr.corp.example", "cn-hangzhou")
                .is_ok()
        );
        assert!(
            custom
                .check("https://emr.corp.example.evil", "cn-hangzhou")
                .is_err()
        );
        assert!(
            custom
                .check(
                    "https://emr-serverless-spark.cn-hangzhou.aliyuncs.com",
                    "cn-hangzhou"
                )
                .is_ok()
        );
        let wide = AllowList::new(vec!["aliyuncs.com".to_string()]);
        assert!(
            wide.check(
                "https://emr-serverless-spark.cn-shanghai.aliyuncs.com",
                "cn-hangzhou"
            )
            .is_ok()
        );
        assert!(
            wide.check("https://evilaliyuncs.com", "cn-hangzhou")
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
                Some("https://emr-serverless-spark-vpc.cn-hangzhou.aliyuncs.com"),
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
