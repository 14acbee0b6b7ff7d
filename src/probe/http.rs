//! The one HTTP client of the operator for the IPFS daemons' APIs ([`IpfsClient`]), where each
//! API is ([`Endpoint`]), and how a failed call becomes a [`ProbeFailure`] that keeps the daemon's
//! own words (status and body text) for status, Events and logs.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::de::DeserializeOwned;

use super::report::{FailureKind, ProbeFailure, ProbeResult};

/// Where one API of one peer is, and how to authenticate to it.
#[derive(Clone)]
pub struct Endpoint {
    /// `http://host:port`, no trailing slash.
    pub base: String,
    /// The `Authorization` header value, when the API requires one. Never logged.
    auth: Option<HeaderValue>,
}

impl Endpoint {
    pub fn new(base: impl Into<String>) -> Endpoint {
        Endpoint {
            base: base.into().trim_end_matches('/').to_string(),
            auth: None,
        }
    }

    /// `http://ip:port` (IPv6 addresses in brackets).
    pub fn at(ip: &str, port: i32) -> Endpoint {
        Endpoint::new(format!("http://{}", host_port(ip, port)))
    }

    /// Adds an `Authorization` header value (`Bearer <token>` or `Basic <base64>`), marked
    /// sensitive so that it never appears in debug output.
    pub fn with_auth(mut self, value: &str) -> Result<Endpoint, ProbeFailure> {
        let mut v = HeaderValue::from_str(value).map_err(|_| ProbeFailure {
            kind: FailureKind::InvalidResponse,
            message: "the API credentials contain characters not allowed in a header".into(),
        })?;
        v.set_sensitive(true);
        self.auth = Some(v);
        Ok(self)
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("base", &self.base)
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `ip:port`, with IPv6 addresses in brackets.
pub fn host_port(ip: &str, port: i32) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// The typed client of the Kubo RPC API ([`super::kubo`]) and the IPFS Cluster REST API
/// ([`super::cluster`]): one connection pool, built once and shared (cloning is cheap); every
/// call carries its own timeout.
#[derive(Clone, Debug)]
pub struct IpfsClient {
    pub(super) http: reqwest::Client,
}

/// The client could not be built (no TLS provider, bad settings).
#[derive(Debug, thiserror::Error)]
#[error("building the HTTP client of the IPFS APIs: {0}")]
pub struct ProberError(#[from] reqwest::Error);

impl IpfsClient {
    pub fn new() -> Result<IpfsClient, ProberError> {
        crate::tls::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(2)
            .build()?;
        Ok(IpfsClient { http })
    }

    /// A request to `api` (its credentials added) that gives up after `timeout`.
    pub(super) fn request(
        &self,
        method: reqwest::Method,
        api: &Endpoint,
        path: &str,
        timeout: Duration,
    ) -> reqwest::RequestBuilder {
        let req = self
            .http
            .request(method, format!("{}{path}", api.base))
            .timeout(timeout);
        match &api.auth {
            Some(v) => req.header(AUTHORIZATION, v.clone()),
            None => req,
        }
    }

    /// Sends `req`; a status other than 2xx (or `also_ok`) is a failure carrying the body text.
    /// Returns the status and body.
    pub(super) async fn send(
        what: &str,
        req: reqwest::RequestBuilder,
        also_ok: &[u16],
    ) -> ProbeResult<(u16, axum::body::Bytes)> {
        let resp = req.send().await.map_err(|e| failure(what, &e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| failure(what, &e))?;
        if !status.is_success() && !also_ok.contains(&status.as_u16()) {
            return Err(http_failure(what, status, &body));
        }
        Ok((status.as_u16(), body))
    }

    /// [`IpfsClient::send`], then the body as JSON.
    pub(super) async fn json<T: DeserializeOwned>(
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> ProbeResult<T> {
        let (_, body) = Self::send(what, req, &[]).await?;
        serde_json::from_slice(&body).map_err(|e| invalid(what, &e))
    }
}

/// A transport failure (no answer, refused, timed out) with its whole cause chain.
pub(super) fn failure(what: &str, e: &reqwest::Error) -> ProbeFailure {
    let kind = if e.is_timeout() {
        FailureKind::Timeout
    } else if e.is_decode() {
        FailureKind::InvalidResponse
    } else {
        FailureKind::Unreachable
    };
    let mut message = format!("{what}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    ProbeFailure { kind, message }
}

/// An error status, with the daemon's own explanation: Kubo's `Message` field when it sent its
/// JSON error, else the body's first 300 characters.
pub(super) fn http_failure(what: &str, status: reqwest::StatusCode, body: &[u8]) -> ProbeFailure {
    #[derive(serde::Deserialize)]
    struct KuboError {
        #[serde(rename = "Message")]
        message: String,
    }
    let text = match serde_json::from_slice::<KuboError>(body) {
        Ok(e) => e.message,
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let text: String = text.trim().chars().take(300).collect();
    ProbeFailure {
        kind: FailureKind::HttpStatus,
        message: format!("{what}: {status}: {text}"),
    }
}

pub(super) fn invalid(what: &str, e: &serde_json::Error) -> ProbeFailure {
    ProbeFailure {
        kind: FailureKind::InvalidResponse,
        message: format!("{what}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_debug_hides_credentials() {
        let ep = Endpoint::new("http://127.0.0.1:5001/")
            .with_auth("Bearer s3cr3t")
            .expect("ok");
        let shown = format!("{ep:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert_eq!(ep.base, "http://127.0.0.1:5001");
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(Endpoint::at("fd00::1", 5001).base, "http://[fd00::1]:5001");
        assert_eq!(Endpoint::at("10.0.0.1", 9094).base, "http://10.0.0.1:9094");
    }

    #[test]
    fn error_statuses_keep_the_daemons_own_words() {
        let kubo = br#"{"Message":"gater disallows connection to peer","Code":0,"Type":"error"}"#;
        let f = http_failure(
            "POST /api/v0/swarm/connect",
            reqwest::StatusCode::INTERNAL_SERVER_ERROR,
            kubo,
        );
        assert_eq!(f.kind, FailureKind::HttpStatus);
        assert!(
            f.message
                .ends_with("500 Internal Server Error: gater disallows connection to peer"),
            "{}",
            f.message
        );
        let plain = http_failure("GET /id", reqwest::StatusCode::BAD_GATEWAY, b" busy \n");
        assert!(plain.message.ends_with(": busy"), "{}", plain.message);
    }
}
