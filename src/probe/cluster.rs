//! IPFS Cluster REST calls. List endpoints stream one JSON object per line, answer 204 when there
//! is nothing to list, and report errors that happen after the first item in an `X-Stream-Error`
//! trailer.

use std::collections::BTreeMap;
use std::time::Duration;

use http_body_util::BodyExt;
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::http::{Endpoint, IpfsClient, failure, http_failure, invalid};
use super::report::{ClusterStatus, FailureKind, PinCounts, ProbeFailure, ProbeResult};

/// The trailer in which IPFS Cluster reports an error that happened mid-stream.
const STREAM_ERROR_TRAILER: &str = "x-stream-error";

/// How a CID should be held (`POST /pins/{cid}` query).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinOptions {
    /// The pin's name in the cluster.
    pub name: String,
    pub replication_min: Option<i32>,
    pub replication_max: Option<i32>,
    /// `recursive` or `direct`.
    pub mode: String,
}

/// The cluster's pin of a CID (`GET /allocations/{cid}`): the fields compared with a spec.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Allocation {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub replication_factor_min: i32,
    #[serde(default)]
    pub replication_factor_max: i32,
}

/// One peer's state of a CID (`GET /pins/{cid}`, `peer_map`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct PeerPinInfo {
    #[serde(default)]
    pub peername: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub timestamp: Option<String>,
}

#[derive(Deserialize)]
struct GlobalPinInfo {
    #[serde(default)]
    peer_map: BTreeMap<String, PeerPinInfo>,
}

impl IpfsClient {
    /// The cluster peer's liveness, identity, peerset and local pin counts, plus whether
    /// `GET /health` (which needs nothing but the daemon) answered.
    pub async fn cluster_status(
        &self,
        api: &Endpoint,
        timeout: Duration,
    ) -> (ProbeResult<ClusterStatus>, bool) {
        // `/health` first: the report of a daemon that does not answer it is that failure
        // whatever the other calls say, so they are not made (one connection attempt per round
        // to a peer that is down, not four).
        let req = self.request(Method::GET, api, "/health", timeout);
        if let Err(down) = Self::send("GET /health", req, &[]).await {
            return (Err(down), false);
        }
        let rest = tokio::try_join!(
            self.cluster_id(api, timeout),
            self.peers_seen(api, timeout),
            self.pin_counts(api, timeout)
        );
        let result = rest.and_then(|(id, peers_seen, pins)| {
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
        (result, true)
    }

    async fn cluster_id(&self, api: &Endpoint, timeout: Duration) -> ProbeResult<ClusterId> {
        Self::json("GET /id", self.request(Method::GET, api, "/id", timeout)).await
    }

    /// `/peers` asks every peer for its identity, so one hung peer stalls the stream after the
    /// others have answered: the peers that answered within the timeout are the ones seen.
    async fn peers_seen(&self, api: &Endpoint, timeout: Duration) -> ProbeResult<Vec<String>> {
        let mut seen = Vec::new();
        let result = self
            .cluster_stream(api, "/peers", timeout, |item| {
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
    }

    /// Counting pins needs Kubo; when it is down the cluster peer still answers the rest, so
    /// the failure is kept inside the result.
    async fn pin_counts(
        &self,
        api: &Endpoint,
        timeout: Duration,
    ) -> ProbeResult<ProbeResult<PinCounts>> {
        let mut counts = PinCounts::default();
        let result = self
            .cluster_stream(api, "/pins?local=true", timeout, |item| {
                count_pin(&mut counts, &item)
            })
            .await;
        Ok(result.map(|()| counts))
    }

    /// Reads a Cluster list endpoint: one JSON object per line, 204 when empty, late errors in
    /// the `X-Stream-Error` trailer. Calls `each` for every object as it arrives.
    pub async fn cluster_stream(
        &self,
        api: &Endpoint,
        path: &str,
        timeout: Duration,
        mut each: impl FnMut(Value),
    ) -> ProbeResult<()> {
        let what = format!("GET {path}");
        let resp = self
            .request(Method::GET, api, path, timeout)
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

    /// `DELETE /peers/{id}`: removes a peer from the peerset (raft), or re-allocates its pins and
    /// then refuses (CRDT: see [`CRDT_CANNOT_REMOVE`]).
    pub async fn remove_peer(
        &self,
        api: &Endpoint,
        id: &str,
        timeout: Duration,
    ) -> ProbeResult<()> {
        let req = self.request(Method::DELETE, api, &format!("/peers/{id}"), timeout);
        Self::send("DELETE /peers", req, &[]).await.map(drop)
    }

    /// `GET /allocations/{cid}`: the cluster's pin of `cid`, `None` when it is not in the pinset.
    pub async fn allocation(
        &self,
        api: &Endpoint,
        cid: &str,
        timeout: Duration,
    ) -> ProbeResult<Option<Allocation>> {
        let what = format!("GET /allocations/{cid}");
        let req = self.request(Method::GET, api, &format!("/allocations/{cid}"), timeout);
        let (status, body) = Self::send(&what, req, &[404]).await?;
        if status == 404 {
            return Ok(None);
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| invalid(&what, &e))
    }

    /// `GET /pins/{cid}`: each peer's state of `cid`, by cluster peer id.
    pub async fn pin_status(
        &self,
        api: &Endpoint,
        cid: &str,
        timeout: Duration,
    ) -> ProbeResult<BTreeMap<String, PeerPinInfo>> {
        let what = format!("GET /pins/{cid}");
        let req = self.request(Method::GET, api, &format!("/pins/{cid}"), timeout);
        Self::json::<GlobalPinInfo>(&what, req)
            .await
            .map(|g| g.peer_map)
    }

    /// `POST /pins/{cid}` with `options`: pins the CID, or updates the options of its pin.
    pub async fn pin(
        &self,
        api: &Endpoint,
        cid: &str,
        options: &PinOptions,
        timeout: Duration,
    ) -> ProbeResult<()> {
        let req = self
            .request(Method::POST, api, &format!("/pins/{cid}"), timeout)
            .query(&pin_query(options));
        Self::send(&format!("POST /pins/{cid}"), req, &[])
            .await
            .map(drop)
    }

    /// `DELETE /pins/{cid}`; a CID not in the pinset (404) is already unpinned.
    pub async fn unpin(&self, api: &Endpoint, cid: &str, timeout: Duration) -> ProbeResult<()> {
        let req = self.request(Method::DELETE, api, &format!("/pins/{cid}"), timeout);
        Self::send(&format!("DELETE /pins/{cid}"), req, &[404])
            .await
            .map(drop)
    }
}

/// What IPFS Cluster answers `DELETE /peers/<id>` with under CRDT consensus, after it has moved
/// the peer's pins to other peers (`consensus/crdt`: `ErrRmPeer`).
pub const CRDT_CANNOT_REMOVE: &str = "crdt consensus component cannot remove peers";

#[derive(Deserialize)]
struct ClusterId {
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

/// The query of `POST /pins/{cid}`.
fn pin_query(options: &PinOptions) -> Vec<(&'static str, String)> {
    let mut query = vec![("mode", options.mode.clone())];
    if let Some(n) = options.replication_min {
        query.push(("replication-min", n.to_string()));
    }
    if let Some(n) = options.replication_max {
        query.push(("replication-max", n.to_string()));
    }
    query.push(("name", options.name.clone()));
    query
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

#[cfg(test)]
mod tests;
