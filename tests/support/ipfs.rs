//! N real Kubo + ipfs-cluster-service peers on free loopback ports, offline-safe, joined into one
//! CRDT cluster. Every config is checked to name only loopback addresses before a daemon starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipfs_kit_operator::netguard::non_loopback_addresses;
use serde_json::{Value, json};
use tokio::process::Command;

use super::control_plane::random_hex;
use super::process::{Daemon, free_port};
use super::tools::binary;
use super::wait_for;

/// One peer: a Kubo daemon and the ipfs-cluster-service daemon that drives it.
pub struct Peer {
    pub index: usize,
    pub dir: PathBuf,
    /// `http://127.0.0.1:<port>` of the Kubo RPC API.
    pub kubo_api: String,
    pub kubo_peer_id: String,
    /// The Kubo swarm multiaddr including `/p2p/<id>`.
    pub kubo_swarm: String,
    /// `http://127.0.0.1:<port>` of the cluster REST API.
    pub cluster_api: String,
    pub cluster_peer_id: String,
    /// The cluster libp2p multiaddr including `/p2p/<id>`.
    pub cluster_addr: String,
    pub kubo: Daemon,
    pub cluster: Option<Daemon>,
}

impl Peer {
    pub fn ipfs_path(&self) -> PathBuf {
        self.dir.join("ipfs")
    }

    pub fn cluster_path(&self) -> PathBuf {
        self.dir.join("cluster")
    }
}

/// A running set of peers. Dropping it stops every daemon.
pub struct IpfsWorld {
    pub peers: Vec<Peer>,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for IpfsWorld {
    /// A failed test shows what each cluster peer logged, so that a peer that fell behind can be
    /// told apart from one that never received the pin.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for peer in &self.peers {
            if let Some(cluster) = &peer.cluster {
                eprintln!(
                    "--- cluster peer {} ({}) last log lines:\n{}",
                    peer.index,
                    peer.cluster_peer_id,
                    cluster.log_tail(40)
                );
            }
        }
    }
}

/// The environment every Kubo command runs with.
fn kubo_command(ipfs_path: &Path) -> Command {
    let mut cmd = Command::new(binary("kubo", "ipfs"));
    cmd.env("IPFS_PATH", ipfs_path).env("IPFS_TELEMETRY", "off");
    cmd
}

async fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Writes a daemon config after checking that it names only loopback addresses.
fn write_checked(path: &Path, config: &Value, ignore: &[&str]) {
    let outside = non_loopback_addresses(config, ignore);
    assert!(
        outside.is_empty(),
        "refusing to start a daemon whose config {} names non-loopback addresses: {}",
        path.display(),
        outside
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    std::fs::write(path, serde_json::to_vec_pretty(config).expect("json")).expect("write config");
}

/// Sets a Kubo config (as `ipfs init` wrote it) to run offline-safe on loopback: the RPC API and
/// swarm on the given ports, no gateway, no bootstrap, mDNS, routing, AutoConf, AutoTLS, NAT port
/// mapping or telemetry.
pub fn offline_loopback_kubo(config: &mut Value, api: u16, swarm: u16) {
    config["Addresses"]["API"] = json!(format!("/ip4/127.0.0.1/tcp/{api}"));
    config["Addresses"]["Gateway"] = json!([]);
    config["Addresses"]["Swarm"] = json!([format!("/ip4/127.0.0.1/tcp/{swarm}")]);
    config["Bootstrap"] = json!([]);
    config["Discovery"]["MDNS"]["Enabled"] = json!(false);
    config["Routing"]["Type"] = json!("none");
    config["AutoConf"]["Enabled"] = json!(false);
    config["AutoTLS"]["Enabled"] = json!(false);
    config["Swarm"]["DisableNatPortMap"] = json!(true);
    config["Plugins"]["Plugins"]["telemetry"]["Config"]["Mode"] = json!("off");
}

impl IpfsWorld {
    /// Starts `n` peers and waits until every cluster peer lists all `n` peers.
    pub async fn start(n: usize) -> IpfsWorld {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::Builder::new()
            .prefix("ipfs-kit-peers-")
            .tempdir()
            .expect("tempdir");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .expect("http client");
        let secret = random_hex(32);

        // Kubo: init offline-safe every peer first (identities and ports), then start them, each
        // keeping connections to the others through `Peering` (reconnected if one drops: with no
        // routing, a peer that lost its connections could never fetch a block again).
        struct Prepared {
            dir: PathBuf,
            ipfs_path: PathBuf,
            config: Value,
            api: u16,
            swarm: u16,
            id: String,
        }
        let mut prepared = Vec::new();
        for index in 0..n {
            let peer_dir = dir.path().join(format!("peer-{index}"));
            let ipfs_path = peer_dir.join("ipfs");
            std::fs::create_dir_all(&peer_dir).expect("peer dir");
            let mut init = kubo_command(&ipfs_path);
            init.args(["init", "--profile=test", "--empty-repo"]);
            run(init, "ipfs init").await;
            let (api, gateway, swarm) = (free_port(), free_port(), free_port());
            let mut config = read_json(&ipfs_path.join("config"));
            offline_loopback_kubo(&mut config, api, swarm);
            config["Addresses"]["Gateway"] = json!(format!("/ip4/127.0.0.1/tcp/{gateway}"));
            config["Addresses"]["Announce"] = json!([]);
            config["Addresses"]["NoAnnounce"] = json!([]);
            let id = config["Identity"]["PeerID"]
                .as_str()
                .expect("PeerID")
                .to_string();
            prepared.push(Prepared {
                dir: peer_dir,
                ipfs_path,
                config,
                api,
                swarm,
                id,
            });
        }
        let mut peers = Vec::new();
        for (index, p) in prepared.iter().enumerate() {
            let others: Vec<Value> = prepared
                .iter()
                .filter(|o| o.id != p.id)
                .map(|o| json!({"ID": o.id, "Addrs": [format!("/ip4/127.0.0.1/tcp/{}", o.swarm)]}))
                .collect();
            let mut config = p.config.clone();
            config["Peering"]["Peers"] = json!(others);
            write_checked(&p.ipfs_path.join("config"), &config, &[]);
            let mut daemon = std::process::Command::new(binary("kubo", "ipfs"));
            daemon
                .env("IPFS_PATH", &p.ipfs_path)
                .env("IPFS_TELEMETRY", "off")
                .args(["daemon", "--migrate=false"]);
            let kubo = Daemon::spawn("kubo", daemon, &p.dir.join("logs")).expect("spawn kubo");
            peers.push(Peer {
                index,
                dir: p.dir.clone(),
                kubo_api: format!("http://127.0.0.1:{}", p.api),
                kubo_swarm: format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", p.swarm, p.id),
                kubo_peer_id: p.id.clone(),
                cluster_api: String::new(),
                cluster_peer_id: String::new(),
                cluster_addr: String::new(),
                kubo,
                cluster: None,
            });
        }
        let mut world = IpfsWorld {
            peers,
            http,
            _dir: dir,
        };
        for i in 0..n {
            world.wait_kubo(i).await;
        }
        // Peers find each other only through explicit loopback addresses.
        for i in 1..n {
            for j in 0..i {
                let addr = world.peers[j].kubo_swarm.clone();
                world.kubo(i, "swarm/connect", &[("arg", &addr)]).await;
            }
        }

        // IPFS Cluster: init every peer first (identities), then configure and start them.
        for i in 0..n {
            let path = world.peers[i].cluster_path();
            let mut init = Command::new(binary("ipfs-cluster", "ipfs-cluster-service"));
            init.env("IPFS_CLUSTER_PATH", &path).args([
                "--config",
                &path.display().to_string(),
                "init",
                "--consensus",
                "crdt",
            ]);
            run(init, "ipfs-cluster-service init").await;
            let identity = read_json(&path.join("identity.json"));
            let id = identity["id"].as_str().expect("identity id").to_string();
            let port = free_port();
            world.peers[i].cluster_peer_id = id.clone();
            world.peers[i].cluster_addr = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{id}");
        }
        let ids: Vec<String> = world
            .peers
            .iter()
            .map(|p| p.cluster_peer_id.clone())
            .collect();
        for i in 0..n {
            let path = world.peers[i].cluster_path();
            let listen = world.peers[i]
                .cluster_addr
                .rsplit_once("/p2p/")
                .map(|(a, _)| a.to_string())
                .expect("addr");
            let others: Vec<String> = world
                .peers
                .iter()
                .filter(|p| p.index != i)
                .map(|p| p.cluster_addr.clone())
                .collect();
            let kubo_api = world.peers[i]
                .kubo_api
                .replace("http://127.0.0.1:", "/ip4/127.0.0.1/tcp/");
            let rest = free_port();
            let config_path = path.join("service.json");
            let mut config = read_json(&config_path);
            let c = &mut config["cluster"];
            c["peername"] = json!(format!("peer-{i}"));
            c["secret"] = json!(secret);
            c["listen_multiaddress"] = json!([listen]);
            c["announce_multiaddress"] = json!([]);
            c["peer_addresses"] = json!(others);
            c["mdns_interval"] = json!("0s");
            c["monitor_ping_interval"] = json!("2s");
            c["peer_watch_interval"] = json!("1s");
            config["consensus"]["crdt"]["trusted_peers"] = json!(ids);
            // A peer that missed a pin's broadcast (a busy machine) gets it within seconds, and a
            // pin that failed is retried as soon, not after the defaults (1 and 12 minutes).
            config["consensus"]["crdt"]["rebroadcast_interval"] = json!("5s");
            // A peer whose fetch of a pin's update failed marks its store dirty and walks it
            // again at the next repair (default: an hour later).
            config["consensus"]["crdt"]["repair_interval"] = json!("10s");
            config["cluster"]["pin_recover_interval"] = json!("10s");
            config["api"]["restapi"]["http_listen_multiaddress"] =
                json!(format!("/ip4/127.0.0.1/tcp/{rest}"));
            config["api"]["ipfsproxy"]["listen_multiaddress"] =
                json!(format!("/ip4/127.0.0.1/tcp/{}", free_port()));
            config["api"]["ipfsproxy"]["node_multiaddress"] = json!(kubo_api);
            config["api"]["pinsvcapi"]["http_listen_multiaddress"] =
                json!(format!("/ip4/127.0.0.1/tcp/{}", free_port()));
            config["ipfs_connector"]["ipfshttp"]["node_multiaddress"] = json!(kubo_api);
            config["monitor"]["pubsubmon"]["check_interval"] = json!("2s");
            if config["observations"]["tracing"].is_object() {
                config["observations"]["tracing"]["jaeger_agent_endpoint"] =
                    json!("/ip4/127.0.0.1/udp/6831");
            }
            if config["observations"]["metrics"].is_object() {
                config["observations"]["metrics"]["prometheus_endpoint"] =
                    json!(format!("/ip4/127.0.0.1/tcp/{}", free_port()));
            }
            write_checked(&config_path, &config, &[]);
            world.peers[i].cluster_api = format!("http://127.0.0.1:{rest}");

            let mut daemon =
                std::process::Command::new(binary("ipfs-cluster", "ipfs-cluster-service"));
            daemon.env("IPFS_CLUSTER_PATH", &path).args([
                "--config",
                &path.display().to_string(),
                "daemon",
            ]);
            let logs = world.peers[i].dir.join("logs");
            world.peers[i].cluster =
                Some(Daemon::spawn("ipfs-cluster-service", daemon, &logs).expect("spawn cluster"));
            // One after the other, each once it sees the ones before it (as the Kubernetes start
            // script does): peers that dial each other at the same moment could end up with a
            // pubsub stream on a connection that is then closed as a duplicate, and one peer then
            // never hears the CRDT broadcasts of a pin (seen on a loaded machine: a peer's pin
            // `unpinned` for minutes while its /peers listed everyone).
            world.wait_cluster_peers(i, i + 1).await;
        }
        for i in 0..n {
            world.wait_cluster_peers(i, n).await;
        }
        world
    }

    /// Calls a Kubo RPC endpoint (always POST) and returns its JSON answer.
    pub async fn kubo(&self, i: usize, path: &str, args: &[(&str, &str)]) -> Value {
        let url = format!("{}/api/v0/{path}", self.peers[i].kubo_api);
        let resp = self.http.post(&url).query(args).send().await;
        let resp = resp.unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "POST {url}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {url}: {e}: {text}"))
    }

    /// GETs a cluster REST endpoint; list endpoints answer one JSON object per line (or 204).
    pub async fn cluster_lines(&self, i: usize, path: &str) -> Option<Vec<Value>> {
        let url = format!("{}{path}", self.peers[i].cluster_api);
        let resp = self.http.get(&url).send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let text = resp.text().await.ok()?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<Vec<Value>, _>>()
            .ok()
    }

    async fn wait_kubo(&mut self, i: usize) {
        let url = format!("{}/api/v0/id", self.peers[i].kubo_api);
        let http = self.http.clone();
        self.peers[i].kubo.assert_running();
        let peer = &mut self.peers[i];
        let what = format!("Kubo peer {i} API at {url}");
        let log = peer.kubo.log.clone();
        tokio::time::timeout(Duration::from_secs(90), async {
            loop {
                if let Ok(r) = http.post(&url).send().await
                    && r.status().is_success()
                {
                    return;
                }
                peer.kubo.assert_running();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{what} not up after 90 s; log:\n{}",
                super::process::log_tail(&log, 30)
            )
        });
    }

    /// Waits until cluster peer `i` lists `n` peers on `GET /peers`, asked only once its log
    /// says it is ready: ipfs-cluster-service 1.1.6 opens its REST API before it has an RPC
    /// client, and a request in between crashes it (a nil pointer in go-libp2p-gorpc).
    pub async fn wait_cluster_peers(&mut self, i: usize, n: usize) {
        let log = self.peers[i].cluster.as_ref().expect("cluster").log.clone();
        let this = &*self;
        let log_path = &log;
        let seen = tokio::time::timeout(
            Duration::from_secs(120),
            wait_for(
                &format!("cluster peer {i} to list {n} peers"),
                Duration::from_secs(120),
                Duration::from_millis(500),
                || async move {
                    let text = std::fs::read_to_string(log_path).unwrap_or_default();
                    if !text.contains("IPFS Cluster is READY") {
                        return None;
                    }
                    let peers = this.cluster_lines(i, "/peers").await?;
                    (peers.len() == n).then_some(peers)
                },
            ),
        )
        .await;
        if seen.is_err() {
            panic!(
                "cluster peer {i} does not list {n} peers; log:\n{}",
                super::process::log_tail(&log, 40)
            );
        }
        if let Some(cluster) = self.peers[i].cluster.as_mut() {
            cluster.assert_running();
        }
    }

    /// Stores `data` as a raw block on Kubo peer `i` only and returns its CID.
    pub async fn put_block(&self, i: usize, data: &[u8]) -> String {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(data.to_vec()).file_name("data"),
        );
        let url = format!("{}/api/v0/block/put?cid-codec=raw", self.peers[i].kubo_api);
        let resp = self
            .http
            .post(&url)
            .multipart(form)
            .send()
            .await
            .expect("block/put");
        let added: Value = resp.json().await.expect("block/put json");
        added["Key"].as_str().expect("Key").to_string()
    }

    /// Pins `cid` through cluster peer `i` (replicated to every peer).
    pub async fn pin(&self, i: usize, cid: &str) {
        let url = format!("{}/pins/{cid}", self.peers[i].cluster_api);
        let resp = self.http.post(&url).send().await.expect("POST /pins");
        assert!(
            resp.status().is_success(),
            "POST /pins/{cid}: {}",
            resp.status()
        );
    }

    /// Waits until every peer reports `cid` as pinned, and returns the peer map.
    pub async fn wait_pinned_everywhere(&self, cid: &str) -> serde_json::Map<String, Value> {
        let n = self.peers.len();
        wait_for(
            &format!("{cid} pinned on all {n} peers"),
            // Generous for a loaded machine: a pass returns as soon as it is pinned everywhere.
            Duration::from_secs(180),
            Duration::from_millis(500),
            || async {
                let status = self.cluster_lines(0, &format!("/pins/{cid}")).await?;
                let map = status.first()?["peer_map"].as_object()?.clone();
                (map.len() == n && map.values().all(|p| p["status"] == "pinned")).then_some(map)
            },
        )
        .await
    }
}

/// One real Kubo daemon alone (offline-safe, on loopback) in `dir`: the daemon and its RPC API
/// address, once it answers.
pub async fn start_kubo(dir: &Path) -> (Daemon, SocketAddr) {
    let ipfs_path = dir.join("ipfs");
    std::fs::create_dir_all(dir).expect("kubo dir");
    let mut init = kubo_command(&ipfs_path);
    init.args(["init", "--profile=test", "--empty-repo"]);
    run(init, "ipfs init").await;
    let (api, swarm) = (free_port(), free_port());
    let mut config = read_json(&ipfs_path.join("config"));
    offline_loopback_kubo(&mut config, api, swarm);
    write_checked(&ipfs_path.join("config"), &config, &[]);
    let mut daemon = std::process::Command::new(binary("kubo", "ipfs"));
    daemon
        .env("IPFS_PATH", &ipfs_path)
        .env("IPFS_TELEMETRY", "off")
        .args(["daemon", "--migrate=false"]);
    let mut kubo = Daemon::spawn("kubo", daemon, &dir.join("logs")).expect("spawn kubo");
    let addr: SocketAddr = format!("127.0.0.1:{api}").parse().expect("address");
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");
    let url = format!("http://{addr}/api/v0/id");
    for _ in 0..450 {
        if let Ok(r) = http.post(&url).send().await
            && r.status().is_success()
        {
            return (kubo, addr);
        }
        kubo.assert_running();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "Kubo at {addr} did not answer within 90 s:\n{}",
        kubo.log_tail(40)
    );
}
