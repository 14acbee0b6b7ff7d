//! HTTP clients for the Kubo RPC API and the IPFS Cluster REST API, and the concurrent probe round.
//!
//! Kubo: every call is a POST with arguments in the query string. Cluster: list endpoints stream
//! one JSON object per line, answer 204 when there is nothing to list, and report errors that
//! happen after the first item in an `X-Stream-Error` trailer.

use std::time::Duration;

use futures::StreamExt;
use http_body_util::BodyExt;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::Deserialize;
use serde_json::Value;

use super::report::{
    ClusterStatus, FailureKind, KuboStatus, PeerReport, PinCounts, ProbeFailure, ProbeResult,
    ProcessState,
};

/// Probes running at the same time in one round, at most.
pub const DEFAULT_CONCURRENCY: usize = 128;

/// The trailer in which IPFS Cluster reports an error that happened mid-stream.
const STREAM_ERROR_TRAILER: &str = "x-stream-error";

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

/// One peer to probe in a round.
#[derive(Clone, Debug)]
pub struct PeerTarget {
    pub peer: String,
    pub kubo: Endpoint,
    pub cluster: Endpoint,
    pub kubo_process: ProcessState,
    pub cluster_process: ProcessState,
}

/// Probes Kubo and Cluster APIs with a timeout on every call.
#[derive(Clone, Debug)]
pub struct Prober {
    http: reqwest::Client,
    timeout: Duration,
}

/// The prober could not be built (no TLS provider, bad settings).
#[derive(Debug, thiserror::Error)]
#[error("building the probe HTTP client: {0}")]
pub struct ProberError(#[from] reqwest::Error);

impl Prober {
    /// A prober whose every HTTP call gives up after `timeout`.
    pub fn new(timeout: Duration) -> Result<Prober, ProberError> {
        crate::tls::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .no_proxy()
            .pool_max_idle_per_host(2)
            .build()?;
        Ok(Prober { http, timeout })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Probes every target, at most `concurrency` at once; results come back in target order. A
    /// hung peer costs one timeout and never delays the others' results beyond that.
    pub async fn round(&self, targets: &[PeerTarget], concurrency: usize) -> Vec<PeerReport> {
        futures::stream::iter(targets)
            .map(|t| self.peer(t))
            .buffered(concurrency.max(1))
            .collect()
            .await
    }

    /// Probes one peer's Kubo and Cluster APIs concurrently.
    pub async fn peer(&self, target: &PeerTarget) -> PeerReport {
        let (kubo, (mut cluster, cluster_alive)) = tokio::join!(
            self.kubo(&target.kubo),
            self.cluster_with_liveness(&target.cluster)
        );
        // The cluster peer asks Kubo while answering `/id`, `/peers` and `/pins`: while Kubo hangs,
        // those stall although the cluster daemon is fine (its `/health` answers). Report the
        // daemon as up and waiting on Kubo, so that healing restarts Kubo, not both.
        if let (Err(kubo_failure), Err(stall)) = (&kubo, &cluster)
            && cluster_alive
            && stall.kind == FailureKind::Timeout
        {
            let why = format!(
                "no answer from Kubo ({}); the cluster peer is alive but its API stalls on it: {}",
                kubo_failure.message, stall.message
            );
            cluster = Ok(ClusterStatus {
                peer_id: String::new(),
                peername: String::new(),
                version: String::new(),
                cluster_peers: Vec::new(),
                peers_seen: Vec::new(),
                ipfs_error: Some(why.clone()),
                pins: Err(ProbeFailure {
                    kind: FailureKind::Timeout,
                    message: why,
                }),
            });
        }
        PeerReport {
            peer: target.peer.clone(),
            kubo_process: target.kubo_process,
            cluster_process: target.cluster_process,
            kubo,
            cluster,
        }
    }

    /// Kubo's identity, version, swarm peers, repo size (`size-only`) and bandwidth totals.
    pub async fn kubo(&self, api: &Endpoint) -> ProbeResult<KuboStatus> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Id {
            #[serde(rename = "ID")]
            id: String,
            #[serde(default)]
            agent_version: String,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Version {
            version: String,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct SwarmPeers {
            #[serde(default)]
            peers: Option<Vec<SwarmPeer>>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct SwarmPeer {
            peer: String,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct RepoStat {
            repo_size: u64,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Bandwidth {
            total_in: u64,
            total_out: u64,
        }
        let (id, version, swarm, repo, bw) = tokio::try_join!(
            self.kubo_call::<Id>(api, "id", &[]),
            self.kubo_call::<Version>(api, "version", &[]),
            self.kubo_call::<SwarmPeers>(api, "swarm/peers", &[]),
            self.kubo_call::<RepoStat>(api, "repo/stat", &[("size-only", "true")]),
            self.kubo_call::<Bandwidth>(api, "stats/bw", &[]),
        )?;
        Ok(KuboStatus {
            peer_id: id.id,
            agent_version: id.agent_version,
            version: version.version,
            swarm_peers: swarm
                .peers
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.peer)
                .collect(),
            repo_size: repo.repo_size,
            total_in: bw.total_in,
            total_out: bw.total_out,
        })
    }

    /// One Kubo RPC call: POST `/api/v0/<path>?<args>`, JSON answer.
    async fn kubo_call<T: for<'de> Deserialize<'de>>(
        &self,
        api: &Endpoint,
        path: &str,
        args: &[(&str, &str)],
    ) -> ProbeResult<T> {
        let what = format!("POST /api/v0/{path}");
        let url = format!("{}/api/v0/{path}", api.base);
        let resp = authorized(self.http.post(url).query(args), api)
            .send()
            .await
            .map_err(|e| failure(&what, &e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| failure(&what, &e))?;
        if !status.is_success() {
            return Err(http_failure(&what, status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| invalid(&what, &e))
    }

    /// The cluster peer's liveness, identity, peerset and local pin counts.
    pub async fn cluster(&self, api: &Endpoint) -> ProbeResult<ClusterStatus> {
        self.cluster_with_liveness(api).await.0
    }

    /// [`Prober::cluster`], plus whether `GET /health` (which needs nothing but the daemon)
    /// answered.
    async fn cluster_with_liveness(&self, api: &Endpoint) -> (ProbeResult<ClusterStatus>, bool) {
        #[derive(Deserialize)]
        struct Id {
            id: String,
            #[serde(default)]
            peername: String,
            #[serde(default)]
            version: String,
            #[serde(default)]
            cluster_peers: Option<Vec<String>>,
            #[serde(default)]
            error: String,
            #[serde(default)]
            ipfs: Option<IpfsId>,
        }
        #[derive(Deserialize)]
        struct IpfsId {
            #[serde(default)]
            error: String,
        }
        let health = async {
            let what = "GET /health";
            let resp = authorized(self.http.get(format!("{}/health", api.base)), api)
                .send()
                .await
                .map_err(|e| failure(what, &e))?;
            let status = resp.status();
            if status.is_success() {
                Ok(())
            } else {
                let body = resp.bytes().await.unwrap_or_default();
                Err(http_failure(what, status, &body))
            }
        };
        let id = async {
            let what = "GET /id";
            let resp = authorized(self.http.get(format!("{}/id", api.base)), api)
                .send()
                .await
                .map_err(|e| failure(what, &e))?;
            let status = resp.status();
            let body = resp.bytes().await.map_err(|e| failure(what, &e))?;
            if !status.is_success() {
                return Err(http_failure(what, status, &body));
            }
            serde_json::from_slice::<Id>(&body).map_err(|e| invalid(what, &e))
        };
        // `/peers` asks every peer for its identity, so one hung peer stalls the stream after the
        // others have answered: the peers that answered within the timeout are the ones seen.
        let peers = async {
            let mut seen = Vec::new();
            let result = self
                .cluster_stream(api, "/peers", |item| {
                    let ok = item
                        .get("error")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .is_empty();
                    if let (true, Some(id)) = (ok, item.get("id").and_then(Value::as_str)) {
                        seen.push(id.to_string());
                    }
                })
                .await;
            match result {
                Err(e) if e.kind == FailureKind::Timeout && !seen.is_empty() => Ok(seen),
                other => other.map(|()| seen),
            }
        };
        // Counting pins needs Kubo; when it is down the cluster peer still answers the rest.
        let pins = async {
            let mut counts = PinCounts::default();
            let result = self
                .cluster_stream(api, "/pins?local=true", |item| {
                    count_pin(&mut counts, &item)
                })
                .await;
            Ok(result.map(|()| counts))
        };
        let (health, rest) = tokio::join!(health, async { tokio::try_join!(id, peers, pins) });
        let alive = health.is_ok();
        let result = health.and(rest).and_then(|(id, peers_seen, pins)| {
            if !id.error.is_empty() {
                return Err(ProbeFailure {
                    kind: FailureKind::HttpStatus,
                    message: format!("GET /id: the peer reports an error: {}", id.error),
                });
            }
            Ok(ClusterStatus {
                peer_id: id.id,
                peername: id.peername,
                version: id.version,
                cluster_peers: id.cluster_peers.unwrap_or_default(),
                peers_seen,
                ipfs_error: id.ipfs.map(|i| i.error).filter(|e| !e.is_empty()),
                pins,
            })
        });
        (result, alive)
    }

    /// Reads a Cluster list endpoint: one JSON object per line, 204 when empty, late errors in
    /// the `X-Stream-Error` trailer. Calls `each` for every object as it arrives.
    pub async fn cluster_stream(
        &self,
        api: &Endpoint,
        path: &str,
        mut each: impl FnMut(Value),
    ) -> ProbeResult<()> {
        let what = format!("GET {path}");
        let resp = authorized(self.http.get(format!("{}{path}", api.base)), api)
            .header("TE", "trailers")
            .send()
            .await
            .map_err(|e| failure(&what, &e))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(());
        }
        if !status.is_success() {
            let body = resp.bytes().await.unwrap_or_default();
            return Err(http_failure(&what, status, &body));
        }
        let mut body = http::Response::from(resp).into_body();
        let mut pending: Vec<u8> = Vec::new();
        let mut stream_error = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| failure(&what, &e))?;
            match frame.into_data() {
                Ok(data) => {
                    pending.extend_from_slice(&data);
                    while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=end).collect();
                        parse_line(&what, &line, &mut each)?;
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        stream_error = trailers
                            .get(STREAM_ERROR_TRAILER)
                            .and_then(|v| v.to_str().ok())
                            .filter(|v| !v.trim().is_empty())
                            .map(str::to_string);
                    }
                }
            }
        }
        parse_line(&what, &pending, &mut each)?;
        match stream_error {
            Some(message) => Err(ProbeFailure {
                kind: FailureKind::HttpStatus,
                message: format!("{what}: the stream ended with an error: {message}"),
            }),
            None => Ok(()),
        }
    }
}

fn parse_line(what: &str, line: &[u8], each: &mut impl FnMut(Value)) -> ProbeResult<()> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Ok(());
    }
    each(serde_json::from_slice(line).map_err(|e| invalid(what, &e))?);
    Ok(())
}

/// Adds one `GlobalPinInfo` line of `GET /pins?local=true` to the counts.
fn count_pin(counts: &mut PinCounts, item: &Value) {
    let Some(peers) = item.get("peer_map").and_then(Value::as_object) else {
        return;
    };
    for info in peers.values() {
        match info.get("status").and_then(Value::as_str).unwrap_or("") {
            "pin_queued" | "queued" => counts.queued += 1,
            "pinning" => counts.pinning += 1,
            "pinned" => counts.pinned += 1,
            "pin_error" | "error" | "cluster_error" | "unexpectedly_unpinned" => counts.error += 1,
            _ => {}
        }
    }
}

fn authorized(req: reqwest::RequestBuilder, api: &Endpoint) -> reqwest::RequestBuilder {
    match &api.auth {
        Some(v) => req.header(AUTHORIZATION, v.clone()),
        None => req,
    }
}

fn failure(what: &str, e: &reqwest::Error) -> ProbeFailure {
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

fn http_failure(what: &str, status: reqwest::StatusCode, body: &[u8]) -> ProbeFailure {
    let text = String::from_utf8_lossy(body);
    let text: String = text.trim().chars().take(300).collect();
    ProbeFailure {
        kind: FailureKind::HttpStatus,
        message: format!("{what}: {status}: {text}"),
    }
}

fn invalid(what: &str, e: &serde_json::Error) -> ProbeFailure {
    ProbeFailure {
        kind: FailureKind::InvalidResponse,
        message: format!("{what}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pin_counts_group_statuses() {
        let mut counts = PinCounts::default();
        for status in [
            "pinned",
            "pinned",
            "pinning",
            "pin_queued",
            "pin_error",
            "remote",
        ] {
            count_pin(
                &mut counts,
                &json!({"cid": "x", "peer_map": {"p": {"status": status}}}),
            );
        }
        assert_eq!(
            counts,
            PinCounts {
                queued: 1,
                pinning: 1,
                pinned: 2,
                error: 1
            }
        );
    }

    #[test]
    fn endpoint_debug_hides_credentials() {
        let ep = Endpoint::new("http://127.0.0.1:5001/")
            .with_auth("Bearer s3cr3t")
            .expect("ok");
        let shown = format!("{ep:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert_eq!(ep.base, "http://127.0.0.1:5001");
    }

    /// Serves `lines` as a chunked NDJSON stream on 127.0.0.1, then `trailer` as X-Stream-Error.
    async fn ndjson_server(lines: Vec<&'static str>, trailer: &'static str) -> Endpoint {
        use axum::body::Body;
        use http_body::Frame;
        use http_body_util::StreamBody;
        let app = axum::Router::new().route(
            "/peers",
            axum::routing::get(move || {
                let lines = lines.clone();
                async move {
                    let mut frames: Vec<Result<Frame<bytes::Bytes>, std::convert::Infallible>> =
                        lines
                            .into_iter()
                            .map(|l| Ok(Frame::data(bytes::Bytes::from(format!("{l}\n")))))
                            .collect();
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("X-Stream-Error", HeaderValue::from_static(trailer));
                    frames.push(Ok(Frame::trailers(trailers)));
                    http::Response::builder()
                        .header("Content-Type", "application/json")
                        .header("Trailer", "X-Stream-Error")
                        .body(Body::new(StreamBody::new(futures::stream::iter(frames))))
                        .expect("response")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Endpoint::new(format!("http://{addr}"))
    }

    #[tokio::test]
    async fn stream_reads_one_object_per_line() {
        let ep = ndjson_server(vec![r#"{"id":"a"}"#, r#"{"id":"b"}"#, r#"{"id":"c"}"#], "").await;
        let prober = Prober::new(Duration::from_secs(5)).expect("prober");
        let mut ids = Vec::new();
        prober
            .cluster_stream(&ep, "/peers", |v| {
                ids.push(v["id"].as_str().unwrap_or("").to_string())
            })
            .await
            .expect("stream");
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn stream_error_trailer_fails_the_probe() {
        let ep = ndjson_server(vec![r#"{"id":"a"}"#], "peer b did not answer").await;
        let prober = Prober::new(Duration::from_secs(5)).expect("prober");
        let err = prober
            .cluster_stream(&ep, "/peers", |_| {})
            .await
            .expect_err("trailer error");
        assert_eq!(err.kind, FailureKind::HttpStatus);
        assert!(
            err.message.contains("peer b did not answer"),
            "{}",
            err.message
        );
    }
}
