//! The probe round: every peer's Kubo and Cluster APIs probed concurrently, a timeout on every
//! call, bounded concurrency, one [`PeerReport`] per peer.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::http::{Endpoint, IpfsClient, ProberError};
use super::report::{
    ClusterStatus, FailureKind, KuboStatus, PeerReport, ProbeFailure, ProbeResult, ProcessState,
};
use crate::metrics::{ApiLabels, ProbeDurations};

/// Probes running at the same time in one round, at most.
pub const DEFAULT_CONCURRENCY: usize = 128;

/// One peer to probe in a round.
#[derive(Clone, Debug)]
pub struct PeerTarget {
    pub peer: String,
    pub kubo: Endpoint,
    pub cluster: Endpoint,
    pub kubo_process: ProcessState,
    pub cluster_process: ProcessState,
}

/// Probes Kubo and Cluster APIs through a shared [`IpfsClient`], with a timeout on every call.
#[derive(Clone)]
pub struct Prober {
    client: IpfsClient,
    timeout: Duration,
    /// Where each probe's duration is recorded (`ipfs_kit_probe_duration_seconds`), if anywhere.
    durations: Option<ProbeDurations>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("client", &self.client)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Prober {
    /// A prober with a client of its own whose every call gives up after `timeout`.
    pub fn new(timeout: Duration) -> Result<Prober, ProberError> {
        Ok(IpfsClient::new()?.prober(timeout))
    }

    /// Records the duration of every probe of a daemon's API in `durations`, by API.
    pub fn timed(mut self, durations: ProbeDurations) -> Prober {
        self.durations = Some(durations);
        self
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `probe` of `api` (`kubo`, `cluster`), recording how long it took.
    async fn time<T>(&self, api: &str, probe: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = probe.await;
        if let Some(durations) = &self.durations {
            let labels = ApiLabels {
                api: api.to_owned(),
            };
            durations
                .get_or_create(&labels)
                .observe(started.elapsed().as_secs_f64());
        }
        out
    }

    /// The client this prober probes with, for the calls that act on a peer.
    pub fn client(&self) -> &IpfsClient {
        &self.client
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
            self.time("kubo", self.kubo(&target.kubo)),
            self.time(
                "cluster",
                self.client.cluster_status(&target.cluster, self.timeout)
            )
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
        self.client.kubo_status(api, self.timeout).await
    }

    /// The cluster peer's liveness, identity, peerset and local pin counts.
    pub async fn cluster(&self, api: &Endpoint) -> ProbeResult<ClusterStatus> {
        self.client.cluster_status(api, self.timeout).await.0
    }
}

impl IpfsClient {
    /// A prober sharing this client's connections, every call bounded by `timeout`.
    pub fn prober(&self, timeout: Duration) -> Prober {
        Prober {
            client: self.clone(),
            timeout,
            durations: None,
        }
    }
}
