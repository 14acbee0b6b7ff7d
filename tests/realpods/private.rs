//! A private network on real pods: an IpfsCluster with `spec.swarmKeyRef` whose pods also leave
//! their user and groups to the platform (`spec.podSecurityContext.omitIds`), in a restricted
//! namespace. The missing Secret is explained in status; once it exists the peers form one
//! cluster, each Kubo connected to the other with the key in its repository (mode 0400, owned
//! by the image's non-root user); a Kubo outside the network cannot connect to them, the same
//! Kubo with the key can; no container restarts.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use crate::steps::{Cluster, KUBO_ARGV, process_of};
use crate::support::clusters::wait_status_within;
use crate::support::process::{Daemon, free_port};
use crate::support::real_node::{NONROOT_CLUSTER_IMAGE, NONROOT_KUBO_IMAGE, real_node};
use crate::support::tools::binary;
use crate::support::wait_for;
use crate::{kubectl, report};

const NAME: &str = "private";
const SECRET: &str = "pnet";

pub async fn private_network_with_platform_ids() {
    let node = real_node();
    let c = Cluster::in_new_namespace(NAME).await;
    let ns = c.ns.clone();
    let started = Instant::now();
    create_cluster(&c).await;
    missing_secret_explained(&c).await;
    let key =
        ipfs_kit_operator::api::swarm_key_text(&crate::support::control_plane::random_hex(32));
    create_swarm_key_secret(&c, &key).await;
    c.wait_healthy(2, Duration::from_secs(240)).await;
    report(&format!(
        "private network, ids omitted: created -> Healthy with 2 real peers: {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    let ids = crate::scenario::peers_connected(&c, 2).await;
    runs_as_the_images_user_with_the_key_in_its_repo(&c, &key).await;
    outsiders_cannot_connect(&c, &ids, &key).await;
    let restarts = crate::restarts(&c.live_pods().await);
    assert!(restarts.iter().all(|(_, _, n)| *n == 0), "{restarts:?}");
    kubectl(node, &["delete", "ipfscluster", NAME, "-n", &ns, "--wait"]);
}

/// Two peers on the private network of Secret `pnet` (not created yet), ids left to the
/// platform, the node's images that run as a non-root user.
async fn create_cluster(c: &Cluster) {
    let cluster = serde_json::from_value(json!({
        "apiVersion": "ipfskit.io/v1alpha1",
        "kind": "IpfsCluster",
        "metadata": {"name": NAME},
        "spec": {
            "replicas": 2,
            "swarmKeyRef": {"name": SECRET},
            "podSecurityContext": {"omitIds": true},
            "kubo": {"image": NONROOT_KUBO_IMAGE},
            "cluster": {"image": NONROOT_CLUSTER_IMAGE}
        }
    }))
    .expect("cluster json");
    c.api
        .create(&PostParams::default(), &cluster)
        .await
        .expect("create the private IpfsCluster");
}

/// Without the Secret, status names it and its key (the pods wait for the volume).
async fn missing_secret_explained(c: &Cluster) {
    let expected = format!("spec.swarmKeyRef: Secret {SECRET} does not exist in namespace");
    let cluster = wait_status_within(
        &c.api,
        NAME,
        "the missing swarm key Secret named in the Ready condition",
        Duration::from_secs(60),
        |cl| {
            cl.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|k| k.type_ == "Ready" && k.message.contains(&expected))
            })
        },
    )
    .await;
    let ready = cluster
        .status
        .and_then(|s| s.conditions.into_iter().find(|k| k.type_ == "Ready"))
        .expect("Ready condition");
    assert!(
        ready.message.contains("key `swarm.key`"),
        "{}",
        ready.message
    );
    report(&format!(
        "missing swarm key Secret: Ready {}",
        ready.message
    ));
}

async fn create_swarm_key_secret(c: &Cluster, key: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": SECRET},
        "stringData": {"swarm.key": key}
    }))
    .expect("secret json");
    Api::<Secret>::namespaced(c.client.clone(), &c.ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the swarm key Secret");
}

/// The pods name no user or group; Kubo runs as the image's user 1000 and finds the key in its
/// repository, readable by that user alone.
async fn runs_as_the_images_user_with_the_key_in_its_repo(c: &Cluster, key: &str) {
    use std::os::unix::fs::MetadataExt;
    for i in 0..2 {
        let pod: Pod = c.pod(i).await;
        let spec = pod.spec.expect("pod spec");
        let psc = spec.security_context.expect("pod security context");
        assert_eq!(psc.fs_group, None);
        for ct in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            let s = ct
                .security_context
                .as_ref()
                .expect("container security context");
            assert_eq!((s.run_as_user, s.run_as_group), (None, None), "{}", ct.name);
        }
        let peer = c.peer(i);
        let pid = process_of(&peer, &KUBO_ARGV).expect("Kubo's process");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .expect("Uid line");
        assert_eq!(uid, "1000", "Kubo of {peer} runs as the image's user");
        let file = format!("/proc/{pid}/root/data/ipfs/swarm.key");
        let meta = std::fs::metadata(&file).expect("swarm.key in the repository");
        assert_eq!(meta.mode() & 0o777, 0o400, "{file}");
        assert_eq!(meta.uid(), 1000, "{file}");
        assert_eq!(std::fs::read_to_string(&file).expect("read key"), key);
    }
}

/// A Kubo outside the cluster (on the test's side of the node's bridge) without the key cannot
/// connect to a peer; with the key it can (so the key, not the network, kept it out).
async fn outsiders_cannot_connect(c: &Cluster, ids: &[String], key: &str) {
    let ips = c.ips(2).await;
    let target = format!("/ip4/{}/tcp/4001/p2p/{}", ips[0], ids[0]);
    let dir = crate::scratch(&c.ns).join("outsider");
    let mut outsider = Outsider::start(&dir, None).await;
    let refused = outsider.connect(&target).await;
    assert!(refused.is_err(), "connected without the key: {refused:?}");
    let members = c.swarm_peers(&ips[0]).await;
    assert!(!members.contains(&outsider.id), "{members:?}");
    report(&format!(
        "Kubo without the swarm key -> swarm/connect to {}: {}",
        c.peer(0),
        refused.err().unwrap_or_default()
    ));
    outsider.daemon.stop(Duration::from_secs(5));
    let mut member = Outsider::start(&dir, Some(key)).await;
    member
        .connect(&target)
        .await
        .unwrap_or_else(|e| panic!("the same Kubo with the key: {e}"));
    let peers = c.swarm_peers(&ips[0]).await;
    assert!(peers.contains(&member.id), "{peers:?}");
    member.daemon.stop(Duration::from_secs(5));
}

/// A Kubo on the test's side: loopback listeners only, no bootstrap, routing or discovery.
pub struct Outsider {
    pub id: String,
    api: String,
    pub daemon: Daemon,
    http: reqwest::Client,
}

impl Outsider {
    /// Starts it on repository `dir` (made the first time), with `key` as its swarm key or none.
    pub async fn start(dir: &std::path::Path, key: Option<&str>) -> Outsider {
        let repo = dir.join("ipfs");
        if !repo.join("config").exists() {
            std::fs::create_dir_all(dir).expect("outsider dir");
            let out = std::process::Command::new(binary("kubo", "ipfs"))
                .env("IPFS_PATH", &repo)
                .args(["init", "--profile=test", "--empty-repo"])
                .output()
                .expect("ipfs init");
            assert!(out.status.success(), "ipfs init: {out:?}");
        }
        let api_port = free_port();
        let config_file = repo.join("config");
        let mut config: Value =
            serde_json::from_slice(&std::fs::read(&config_file).expect("config")).expect("json");
        crate::support::ipfs::offline_loopback_kubo(&mut config, api_port, free_port());
        std::fs::write(&config_file, serde_json::to_vec(&config).expect("json")).expect("write");
        let key_file = repo.join("swarm.key");
        match key {
            Some(k) => std::fs::write(&key_file, k).expect("write swarm.key"),
            None => {
                let _ = std::fs::remove_file(&key_file);
            }
        }
        let id = config["Identity"]["PeerID"]
            .as_str()
            .expect("PeerID")
            .to_owned();
        let mut cmd = std::process::Command::new(binary("kubo", "ipfs"));
        cmd.env("IPFS_PATH", &repo)
            .env("IPFS_TELEMETRY", "off")
            .args(["daemon", "--migrate=false"]);
        let daemon = Daemon::spawn("outsider-kubo", cmd, dir).expect("start Kubo");
        let outsider = Outsider {
            id,
            api: format!("http://127.0.0.1:{api_port}/api/v0"),
            daemon,
            http: crate::http(),
        };
        wait_for(
            "the outside Kubo answering",
            Duration::from_secs(60),
            Duration::from_millis(200),
            || async {
                let r = outsider
                    .http
                    .post(format!("{}/id", outsider.api))
                    .send()
                    .await;
                r.ok().filter(|r| r.status().is_success()).map(|_| ())
            },
        )
        .await;
        outsider
    }

    /// `swarm/connect` to `addr`: Kubo's error message when it fails.
    pub async fn connect(&mut self, addr: &str) -> Result<(), String> {
        self.daemon.assert_running();
        let response = self
            .http
            .post(format!("{}/swarm/connect?arg={addr}", self.api))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            return Ok(());
        }
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        Err(body["Message"].as_str().unwrap_or_default().to_owned())
    }
}
