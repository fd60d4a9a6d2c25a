//! The one HTTP path to Alibaba Cloud's APIs, shared by the GetJobRun client and STS: a client
//! with the SDK's timeouts, no redirects and the operator's user agent; the signed headers sent
//! as they were signed (`host` comes from the URL, which the endpoint parser made match); and
//! the answer read with a bound, with its status, request id and retry hint. Callers turn
//! [`Failure`] into their own error kinds.

use crate::body::{self, BodyError};
use crate::client::Timeouts;
use crate::endpoint::Endpoint;

/// A fresh request nonce (`x-acs-signature-nonce`, STS's `SignatureNonce`).
pub fn nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// An answer of any status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub request_id: Option<String>,
    /// `x-acs-retry-after`, as sent.
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

/// Why no answer could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Connection, DNS, TLS, timeout or a body cut short: "what ... talking to ENDPOINT: cause".
    Unreachable(String),
    /// An answer larger than its bound (never read whole).
    TooLarge {
        status: u16,
        request_id: Option<String>,
        message: String,
    },
}

/// One request as signed: method, path, query string (no `?`), headers and body.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

#[derive(Debug, Clone)]
pub struct AcsTransport {
    http: reqwest::Client,
}

impl AcsTransport {
    /// `purpose` goes into the user agent, e.g. `sts`.
    pub fn new(timeouts: Timeouts, purpose: Option<&str>) -> Result<Self, reqwest::Error> {
        let version = env!("CARGO_PKG_VERSION");
        let user_agent = match purpose {
            Some(p) => format!("sparkjobrun-operator/{version} ({p})"),
            None => format!("sparkjobrun-operator/{version}"),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .read_timeout(timeouts.read)
            .timeout(timeouts.connect + timeouts.read)
            .user_agent(user_agent)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { http })
    }

    /// Sends `req` to `endpoint` and reads at most `limit` bytes of the answer.
    pub async fn send(
        &self,
        endpoint: &Endpoint,
        req: Outgoing<'_>,
        limit: usize,
    ) -> Result<Answer, Failure> {
        let url = format!("{}{}?{}", endpoint.base_url(), req.path, req.query);
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|e| Failure::Unreachable(format!("method {}: {e}", req.method)))?;
        let mut builder = self.http.request(method, &url);
        for (name, value) in req.headers {
            // reqwest derives `host` from the URL; sending it twice would be an error.
            if name != "host" {
                builder = builder.header(name.as_str(), value.as_str());
            }
        }
        // A POST always carries its body (an empty one as `content-length: 0`), a GET none.
        if req.method != "GET" {
            builder = builder.body(req.body.to_vec());
        }
        let unreachable = |e: &reqwest::Error| Failure::Unreachable(describe(endpoint, e));
        let response = builder.send().await.map_err(|e| unreachable(&e))?;
        let status = response.status().as_u16();
        let header = |n: &str| {
            response
                .headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let request_id = header("x-acs-request-id");
        let retry_after = header("x-acs-retry-after");
        let body = body::read_bounded(response, limit)
            .await
            .map_err(|e| match e {
                BodyError::Transport(e) => unreachable(&e),
                too_large => Failure::TooLarge {
                    status,
                    request_id: request_id.clone(),
                    message: too_large.to_string(),
                },
            })?;
        Ok(Answer {
            status,
            request_id,
            retry_after,
            body,
        })
    }
}

/// "timed out / could not connect / transport error talking to ENDPOINT: innermost cause". The
/// innermost cause is the useful part (DNS, refused, TLS); no secret can appear, as credentials
/// travel in headers only.
pub fn describe(endpoint: &Endpoint, e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    let mut cause = String::new();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(err) = cur {
        cause = err.to_string();
        cur = err.source();
    }
    if cause.is_empty() {
        format!("{what} talking to {endpoint}")
    } else {
        format!("{what} talking to {endpoint}: {cause}")
    }
}
