//! The APIs that refused their last connection. A daemon that is down (its pod not serving yet,
//! its process gone) is probed again every round; through the HTTP client each such probe costs
//! a request, a connection pool lookup, a connector and a formatted error chain. An API that
//! refused last time is dialled with a bare TCP connect first: refused again, the probe ends
//! there with the same failure; accepted, the connection is dropped and the probe goes on.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use super::http::Endpoint;
use super::report::{FailureKind, ProbeFailure, ProbeResult};

/// Bases remembered at most: past it the memory starts over (it only saves work; the addresses
/// of pods deleted while refusing are never dialled again, and so never forgotten one by one).
const MAX_REMEMBERED: usize = 65_536;

/// The bases (`http://ip:port`) whose last connection was refused.
#[derive(Debug, Default)]
pub struct Refused(Mutex<HashSet<String>>);

impl Refused {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `api` refused a connection.
    pub fn note(&self, api: &Endpoint) {
        let mut set = self.lock();
        if set.len() >= MAX_REMEMBERED {
            set.clear();
        }
        set.insert(api.base.clone());
    }

    /// `api` was reached (or failed some other way).
    pub fn forget(&self, api: &Endpoint) {
        let mut set = self.lock();
        if !set.is_empty() {
            set.remove(&api.base);
        }
    }

    /// When `api` refused its last connection: a bare connect to it, bounded by `timeout`. The
    /// failure when it refuses again (worded as the HTTP client words it: `what` and `path` are
    /// the call the probe would make); `Ok` when it accepts or was not refused last time.
    pub async fn dial(
        &self,
        api: &Endpoint,
        what: &str,
        path: &str,
        timeout: Duration,
    ) -> ProbeResult<()> {
        if !self.lock().contains(&api.base) {
            return Ok(());
        }
        let Some(addr) = socket_addr(&api.base) else {
            return Ok(());
        };
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Err(refused_failure(what, &format!("{}{path}", api.base), &e))
            }
            // Accepted, or anything else: the HTTP call says what it is.
            _ => {
                self.forget(api);
                Ok(())
            }
        }
    }
}

/// The address of `http://ip:port` (IPv6 in brackets); `None` for a host name.
fn socket_addr(base: &str) -> Option<SocketAddr> {
    let rest = base
        .strip_prefix("http://")
        .or_else(|| base.strip_prefix("https://"))?;
    rest.parse().ok()
}

/// A refused connection, in the words the HTTP client gives it (so that a peer's status reads the
/// same whichever path found it refused).
pub fn refused_failure(what: &str, url: &str, e: &std::io::Error) -> ProbeFailure {
    ProbeFailure {
        kind: FailureKind::Unreachable,
        message: format!(
            "{what}: error sending request for url ({url}): client error (Connect): \
             tcp connect error: {e}"
        ),
    }
}

/// Whether `e` (a failed HTTP call) is a refused connection.
pub fn is_refused(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::IpfsClient;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn remembered(client: &IpfsClient, api: &Endpoint) -> bool {
        client.refused.lock().contains(&api.base)
    }

    /// A port nobody listens on (bound, then closed).
    async fn closed_port() -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        l.local_addr().expect("addr").port()
    }

    #[tokio::test]
    async fn a_refusing_api_is_dialled_bare_and_reads_the_same() {
        let client = IpfsClient::new().expect("client");
        let port = closed_port().await;
        let api = Endpoint::at("127.0.0.1", i32::from(port));
        let timeout = Duration::from_secs(2);

        let first = client
            .kubo_status(&api, timeout)
            .await
            .expect_err("refused");
        assert!(remembered(&client, &api), "a refused API is remembered");
        let again = client
            .kubo_status(&api, timeout)
            .await
            .expect_err("refused");
        assert_eq!(first, again, "both paths word a refused connection alike");
        assert_eq!(again.kind, FailureKind::Unreachable);
        assert!(again.message.contains("refused"), "{}", again.message);

        let health = client.cluster_status(&api, timeout).await.0;
        let health_again = client.cluster_status(&api, timeout).await.0;
        assert_eq!(
            health.expect_err("refused"),
            health_again.expect_err("refused")
        );
    }

    #[tokio::test]
    async fn an_api_that_listens_again_is_called_again() {
        let client = IpfsClient::new().expect("client");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let api = Endpoint::at("127.0.0.1", i32::from(addr.port()));
        let timeout = Duration::from_secs(2);
        let (down, _) = client.cluster_status(&api, timeout).await;
        assert!(down.expect_err("refused").message.contains("refused"));
        assert!(remembered(&client, &api));

        // The daemon is back (answering 500 to everything).
        let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while conn.read(&mut buf).await.is_ok_and(|n| n > 0) {
                        let answer = "HTTP/1.1 500 Internal Server Error\r\n\
                                      content-length: 4\r\n\r\nbusy";
                        if conn.write_all(answer.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let (up, alive) = client.cluster_status(&api, timeout).await;
        let failure = up.expect_err("500");
        assert_eq!(failure.kind, FailureKind::HttpStatus, "{}", failure.message);
        assert!(failure.message.ends_with("busy"), "{}", failure.message);
        assert!(!alive);
        assert!(
            !remembered(&client, &api),
            "an API that answers is forgotten"
        );
    }
}
