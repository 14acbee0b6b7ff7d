//! What the scenario checks with: the IpfsCluster and its pods through the API, the daemons'
//! own APIs at the pod IPs, and the daemons' processes on the node.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ipfs_kit_operator::api::{ClusterPhase, IpfsCluster, IpfsPin, PinPhase};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde_json::Value;

use crate::http;
use crate::support::clusters::wait_status_within;
use crate::support::wait_for;

/// One IpfsCluster of a test and the clients to look at it.
pub struct Cluster {
    pub client: Client,
    pub ns: String,
    pub name: String,
    pub api: Api<IpfsCluster>,
    pub pods: Api<Pod>,
    pub http: reqwest::Client,
}

impl Cluster {
    pub fn new(client: &Client, ns: &str, name: &str) -> Cluster {
        Cluster {
            client: client.clone(),
            ns: ns.to_owned(),
            name: name.to_owned(),
            api: Api::namespaced(client.clone(), ns),
            pods: Api::namespaced(client.clone(), ns),
            http: http(),
        }
    }

    /// The IpfsCluster `name` (not created yet) in a new namespace `<name>-<random>` of the real
    /// node that enforces the restricted Pod Security Standard.
    pub async fn in_new_namespace(name: &str) -> Cluster {
        let client = crate::support::real_node::real_node().admin_client().await;
        let ns = format!("{name}-{}", crate::support::control_plane::random_hex(3));
        crate::restricted_namespace(&client, &ns).await;
        Cluster::new(&client, &ns, name)
    }

    pub fn peer(&self, ordinal: usize) -> String {
        format!("{}-{ordinal}", self.name)
    }

    /// Waits until status says Healthy for exactly `n` ready peers of the current generation,
    /// each with its Kubo and IPFS Cluster identities.
    pub async fn wait_healthy(&self, n: usize, timeout: Duration) -> IpfsCluster {
        wait_status_within(
            &self.api,
            &self.name,
            &format!("Healthy with {n} ready peers"),
            timeout,
            |c| {
                let Some(s) = &c.status else { return false };
                s.phase == Some(ClusterPhase::Healthy)
                    && s.observed_generation == c.metadata.generation
                    && s.ready_replicas == Some(n as i32)
                    && s.peers.len() == n
                    && s.peers
                        .iter()
                        .all(|p| p.peer_id.is_some() && p.cluster_peer_id.is_some())
            },
        )
        .await
    }

    /// The pod of peer `ordinal`.
    pub async fn pod(&self, ordinal: usize) -> Pod {
        self.pods
            .get(&self.peer(ordinal))
            .await
            .unwrap_or_else(|e| panic!("get pod {}: {e}", self.peer(ordinal)))
    }

    /// The IPs of the running pods of peers `0..n`, in ordinal order.
    pub async fn ips(&self, n: usize) -> Vec<String> {
        let mut ips = Vec::new();
        for i in 0..n {
            let pod = self.pod(i).await;
            ips.push(
                pod.status
                    .and_then(|s| s.pod_ip)
                    .unwrap_or_else(|| panic!("{} has no IP", self.peer(i))),
            );
        }
        ips
    }

    /// The pods of the cluster (by its selector), not being deleted.
    pub async fn live_pods(&self) -> Vec<Pod> {
        let selector = format!(
            "app.kubernetes.io/name=ipfs-cluster,app.kubernetes.io/instance={}",
            self.name
        );
        self.pods
            .list(&ListParams::default().labels(&selector))
            .await
            .expect("list pods")
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }

    /// A Kubo RPC call at `ip` (`POST /api/v0/{path}`), its JSON answer.
    pub async fn kubo(&self, ip: &str, path: &str) -> Option<Value> {
        let response = self
            .http
            .post(format!("http://{ip}:5001/api/v0/{path}"))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    /// An IPFS Cluster REST call at `ip` (`GET /{path}`): its answer, a JSON value or, for
    /// streamed lists, an array of the values of its lines.
    pub async fn rest(&self, ip: &str, path: &str) -> Option<Value> {
        let response = self
            .http
            .get(format!("http://{ip}:9094/{path}"))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let text = response.text().await.ok()?;
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            return Some(v);
        }
        let lines: Option<Vec<Value>> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).ok())
            .collect();
        lines.map(Value::Array)
    }

    /// Kubo's own peer id at `ip`.
    pub async fn kubo_id(&self, ip: &str) -> String {
        let id = wait_for(
            &format!("Kubo's /api/v0/id at {ip}"),
            Duration::from_secs(60),
            Duration::from_millis(250),
            || async { self.kubo(ip, "id").await },
        )
        .await;
        id["ID"].as_str().expect("ID").to_owned()
    }

    /// The peer ids Kubo at `ip` has swarm connections to.
    pub async fn swarm_peers(&self, ip: &str) -> BTreeSet<String> {
        let Some(v) = self.kubo(ip, "swarm/peers").await else {
            return BTreeSet::new();
        };
        v["Peers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["Peer"].as_str().map(str::to_owned))
            .collect()
    }

    /// The cluster peer ids that IPFS Cluster at `ip` lists (`GET /peers`).
    pub async fn cluster_peers(&self, ip: &str) -> BTreeSet<String> {
        let Some(Value::Array(peers)) = self.rest(ip, "peers").await else {
            return BTreeSet::new();
        };
        peers
            .iter()
            .filter(|p| p["error"].as_str().unwrap_or_default().is_empty())
            .filter_map(|p| p["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// The IpfsPin `name`, once `ok` accepts it (up to `timeout`).
    pub async fn wait_pin(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&IpfsPin) -> bool,
    ) -> IpfsPin {
        let pins: Api<IpfsPin> = Api::namespaced(self.client.clone(), &self.ns);
        let deadline = Instant::now() + timeout;
        loop {
            let pin = pins.get_opt(name).await.ok().flatten();
            if let Some(p) = &pin
                && ok(p)
            {
                return p.clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "IpfsPin {name}: {what} not seen in {timeout:?}; last: {:#?}",
                    pin.and_then(|p| p.status)
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The cluster's view of `cid` from the peer at `ip`: peer name -> status
    /// (`GET /pins/{cid}`).
    pub async fn pin_status(&self, ip: &str, cid: &str) -> Vec<(String, String)> {
        let Some(v) = self.rest(ip, &format!("pins/{cid}")).await else {
            return Vec::new();
        };
        v["peer_map"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(_, info)| {
                (
                    info["peername"].as_str().unwrap_or_default().to_owned(),
                    info["status"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Watches the pods of peers `0..uids.len()` (whose pods had `uids`) being replaced; per peer,
    /// the poll (every 200 ms) in which its new pod was first seen and the one in which all its
    /// containers were first Ready. Fails after `timeout`.
    pub async fn watch_replacement(
        &self,
        uids: &[String],
        timeout: Duration,
    ) -> (Vec<Option<u32>>, Vec<Option<u32>>) {
        // Per peer, the poll in which its new pod was first seen, and the one in which it was
        // first Ready.
        let mut seen = vec![None; uids.len()];
        let mut ready_at = vec![None; uids.len()];
        let deadline = Instant::now() + timeout;
        let mut poll = 0u32;
        while ready_at.iter().any(Option::is_none) {
            poll += 1;
            for i in 0..uids.len() {
                let Some(pod) = self.pods.get_opt(&self.peer(i)).await.ok().flatten() else {
                    continue;
                };
                if pod.metadata.uid.as_deref() == Some(uids[i].as_str())
                    || pod.metadata.deletion_timestamp.is_some()
                {
                    continue;
                }
                seen[i].get_or_insert(poll);
                let ready = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c.ready));
                if ready {
                    ready_at[i].get_or_insert(poll);
                }
            }
            assert!(
                Instant::now() < deadline,
                "not every pod replaced within {timeout:?}: new pods seen {seen:?}, ready {ready_at:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        (seen, ready_at)
    }

    /// The restart count of container `container` of peer `ordinal`'s pod, and the pod's uid.
    pub async fn container_restarts(&self, ordinal: usize, container: &str) -> (i32, String) {
        let pod = self.pod(ordinal).await;
        let count = pod
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
            .find(|c| c.name == container)
            .map_or(0, |c| c.restart_count);
        (count, pod.uid().unwrap_or_default())
    }
}

/// Whether the pin reached `phase` with `n` peers pinned.
pub fn pinned_on(pin: &IpfsPin, n: i32) -> bool {
    pin.status
        .as_ref()
        .is_some_and(|s| s.phase == Some(PinPhase::Pinned) && s.pinned == Some(n))
}

/// The pid of the process of pod `pod` whose command line is `argv`, found through /proc (the
/// tests run in the PID namespace the node's containers are created in). kubelet sets
/// `HOSTNAME` to the pod name in every container.
pub fn process_of(pod: &str, argv: &[&str]) -> Option<i32> {
    let wanted = argv.join("\0") + "\0";
    let hostname = format!("HOSTNAME={pod}");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cmdline != wanted.as_bytes() {
                return false;
            }
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            environ
                .split(|b| *b == 0)
                .any(|var| var == hostname.as_bytes())
        })
}

/// Sends `signal` (`KILL`, `STOP`, `CONT`) to `pid`.
pub fn signal(pid: i32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}: {status}");
}

/// Kubo's command line in the peer pods.
pub const KUBO_ARGV: [&str; 3] = ["ipfs", "daemon", "--migrate=false"];
