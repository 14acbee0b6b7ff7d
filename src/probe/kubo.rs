//! Kubo RPC calls: every call is a POST to `/api/v0/<command>` with arguments in the query string.

use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;

use super::http::{Endpoint, IpfsClient};
use super::report::{KuboStatus, ProbeResult};

impl IpfsClient {
    /// One Kubo RPC call: POST `/api/v0/<command>?<args>`, JSON answer.
    async fn kubo_call<T: for<'de> Deserialize<'de>>(
        &self,
        api: &Endpoint,
        command: &str,
        args: &[(&str, &str)],
        timeout: Duration,
    ) -> ProbeResult<T> {
        let what = format!("POST /api/v0/{command}");
        let req = self
            .request(Method::POST, api, &format!("/api/v0/{command}"), timeout)
            .query(args);
        Self::json(&what, req).await
    }

    /// Kubo's identity, version, swarm peers, repo size (`size-only`) and bandwidth totals.
    pub async fn kubo_status(&self, api: &Endpoint, timeout: Duration) -> ProbeResult<KuboStatus> {
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
            #[serde(default)]
            storage_max: u64,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Bandwidth {
            total_in: u64,
            total_out: u64,
        }
        // `id` first: a daemon that does not answer it is reported with that failure, and is
        // not asked the rest (one connection attempt per round to a Kubo that is down, not five).
        let id = self.kubo_call::<Id>(api, "id", &[], timeout).await?;
        let (version, swarm, repo, bw) = tokio::try_join!(
            self.kubo_call::<Version>(api, "version", &[], timeout),
            self.kubo_call::<SwarmPeers>(api, "swarm/peers", &[], timeout),
            self.kubo_call::<RepoStat>(api, "repo/stat", &[("size-only", "true")], timeout),
            self.kubo_call::<Bandwidth>(api, "stats/bw", &[], timeout),
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
            storage_max: repo.storage_max,
            total_in: bw.total_in,
            total_out: bw.total_out,
        })
    }

    /// `swarm/connect` to `addr` (a multiaddr ending in `/p2p/<peer id>`).
    pub async fn swarm_connect(
        &self,
        api: &Endpoint,
        addr: &str,
        timeout: Duration,
    ) -> ProbeResult<()> {
        self.swarm_call(api, "/api/v0/swarm/connect", addr, timeout)
            .await
    }

    /// `swarm/peering/add` of `addr`: Kubo keeps a connection to that peer from now on and
    /// re-establishes it when it drops (until Kubo restarts).
    pub async fn swarm_peering_add(
        &self,
        api: &Endpoint,
        addr: &str,
        timeout: Duration,
    ) -> ProbeResult<()> {
        self.swarm_call(api, "/api/v0/swarm/peering/add", addr, timeout)
            .await
    }

    /// `POST {path}?arg={addr}`, its answer dropped.
    async fn swarm_call(
        &self,
        api: &Endpoint,
        path: &'static str,
        addr: &str,
        timeout: Duration,
    ) -> ProbeResult<()> {
        let req = self
            .request(Method::POST, api, path, timeout)
            .query(&[("arg", addr)]);
        Self::send(&format!("POST {path}"), req, &[])
            .await
            .map(drop)
    }

    /// `repo/gc`: removes every block no pin holds; returns how many Kubo removed. The answer is
    /// one JSON object per removed block (read as it comes, never held whole); an object with an
    /// `Error` is the failure.
    pub async fn kubo_repo_gc(&self, api: &Endpoint, timeout: Duration) -> ProbeResult<u64> {
        const WHAT: &str = "POST /api/v0/repo/gc";
        let req = self
            .request(Method::POST, api, "/api/v0/repo/gc", timeout)
            .query(&[("quiet", "true"), ("stream-errors", "true")]);
        let mut resp = req
            .send()
            .await
            .map_err(|e| super::http::failure(WHAT, &e))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.bytes().await.unwrap_or_default();
            return Err(super::http::http_failure(WHAT, status, &body));
        }
        let (mut removed, mut line) = (0u64, Vec::new());
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| super::http::failure(WHAT, &e))?
        {
            for byte in chunk {
                if byte != b'\n' {
                    line.push(byte);
                    continue;
                }
                gc_line(&line)?;
                removed += 1;
                line.clear();
            }
        }
        if !line.is_empty() {
            gc_line(&line)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// `shutdown`: Kubo stops gracefully (its container or supervisor starts it again).
    pub async fn kubo_shutdown(&self, api: &Endpoint, timeout: Duration) -> ProbeResult<()> {
        let req = self.request(Method::POST, api, "/api/v0/shutdown", timeout);
        Self::send("POST /api/v0/shutdown", req, &[])
            .await
            .map(drop)
    }
}

/// One line of `repo/gc`: a removed block, or the error that ended the collection.
fn gc_line(line: &[u8]) -> ProbeResult<()> {
    #[derive(Deserialize)]
    struct Line {
        #[serde(rename = "Error", default)]
        error: String,
    }
    match serde_json::from_slice::<Line>(line) {
        Ok(l) if !l.error.is_empty() => Err(super::report::ProbeFailure {
            kind: super::report::FailureKind::HttpStatus,
            message: format!("POST /api/v0/repo/gc: {}", l.error),
        }),
        _ => Ok(()),
    }
}
