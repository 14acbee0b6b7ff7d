//! Rendering the Kubo and IPFS Cluster configurations of a local peer from the spec: pure
//! functions from the file the daemon's own `init` wrote (identity, datastore) to the file it runs
//! with. Offline-safe and private: every listener on 127.0.0.1, no bootstrap, no mDNS, no
//! delegated routing, no AutoConf/AutoTLS, no telemetry, no NAT port mapping; peers find each
//! other only through explicit loopback addresses. The result is checked with
//! [`crate::netguard`] before a daemon starts.

use serde_json::{Map, Value, json};

use super::LocalError;
use super::ports::PeerPorts;
use crate::api::{Consensus, IpfsClusterSpec, MANAGED_KUBO_KEYS};
use crate::netguard::non_loopback_addresses;

/// Another peer of the cluster, as this peer's configuration names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtherPeer {
    pub kubo_peer_id: String,
    pub kubo_swarm_port: u16,
    /// Cluster libp2p address with `/p2p/<id>`.
    pub cluster_addr: String,
}

fn loopback_tcp(port: u16) -> String {
    format!("/ip4/127.0.0.1/tcp/{port}")
}

/// Deep-merges `overrides` into `base`: objects merge key by key, anything else replaces.
fn merge(base: &mut Value, overrides: &Value) {
    match (base, overrides) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Removes the value at a dotted path, if present.
pub(crate) fn remove_path(config: &mut Value, path: &str) {
    match path.split_once('.') {
        None => {
            if let Some(map) = config.as_object_mut() {
                map.remove(path);
            }
        }
        Some((head, rest)) => {
            if let Some(child) = config.get_mut(head) {
                remove_path(child, rest);
            }
        }
    }
}

/// Removes the managed keys (`A.B` paths) from the user's overrides: a second line of defence,
/// [`crate::api::IpfsCluster::validate`] refuses a spec that sets them.
fn without_managed(overrides: &Map<String, Value>) -> Value {
    let mut value = Value::Object(overrides.clone());
    for path in MANAGED_KUBO_KEYS {
        remove_path(&mut value, path);
    }
    value
}

/// Sets `value` at a dotted path, creating objects on the way (and replacing non-objects).
fn set(config: &mut Value, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            if !config.is_object() {
                *config = Value::Object(Map::new());
            }
            if let Value::Object(map) = config {
                map.insert(path.to_owned(), value);
            }
        }
        Some((head, rest)) => {
            if !config.is_object() {
                *config = Value::Object(Map::new());
            }
            if let Value::Object(map) = config {
                let child = map
                    .entry(head.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                set(child, rest, value);
            }
        }
    }
}

fn refuse_non_loopback(config: &Value, what: &str) -> Result<(), LocalError> {
    let outside = non_loopback_addresses(config, &[]);
    if outside.is_empty() {
        return Ok(());
    }
    Err(LocalError::NotLoopback {
        what: what.to_owned(),
        addresses: outside.iter().map(ToString::to_string).collect(),
    })
}

/// The Kubo configuration of one peer: `base` is the config `ipfs init` wrote (it holds the
/// identity), `others` the other peers of the cluster (kept connected through `Peering`).
pub fn render_kubo(
    base: &Value,
    spec: &IpfsClusterSpec,
    ports: &PeerPorts,
    others: &[OtherPeer],
    peer_name: &str,
) -> Result<Value, LocalError> {
    let mut config = base.clone();
    if let Some(overrides) = &spec.kubo.config {
        merge(&mut config, &without_managed(overrides));
    }
    set(
        &mut config,
        "Addresses.API",
        json!(loopback_tcp(ports.kubo_api)),
    );
    let gateway = if spec.networking.gateway.enabled {
        json!(loopback_tcp(ports.kubo_gateway))
    } else {
        json!([])
    };
    set(&mut config, "Addresses.Gateway", gateway);
    set(
        &mut config,
        "Addresses.Swarm",
        json!([loopback_tcp(ports.kubo_swarm)]),
    );
    set(&mut config, "Addresses.Announce", json!([]));
    set(&mut config, "Addresses.AppendAnnounce", json!([]));
    set(&mut config, "Addresses.NoAnnounce", json!([]));
    set(&mut config, "Swarm.AddrFilters", Value::Null);
    set(&mut config, "Bootstrap", json!([]));
    // The supervisor's garbage collection (`runtime::gc`) keeps the repository under
    // spec.kubo.storageMax; the spec check refused a size that does not parse.
    if let Ok(bytes) = spec.kubo.storage_max_bytes() {
        set(
            &mut config,
            "Datastore.StorageMax",
            json!(bytes.to_string()),
        );
    }
    set(&mut config, "Discovery.MDNS.Enabled", json!(false));
    set(&mut config, "Routing.Type", json!("none"));
    set(&mut config, "AutoConf.Enabled", json!(false));
    set(&mut config, "AutoTLS.Enabled", json!(false));
    set(&mut config, "Swarm.DisableNatPortMap", json!(true));
    set(&mut config, "Swarm.RelayClient.Enabled", json!(false));
    set(&mut config, "Swarm.RelayService.Enabled", json!(false));
    // A private network (swarm.key) works over TCP only; these transports cannot use the key.
    for transport in ["QUIC", "Websocket", "WebTransport", "WebRTCDirect"] {
        set(
            &mut config,
            &format!("Swarm.Transports.Network.{transport}"),
            json!(false),
        );
    }
    set(
        &mut config,
        "Plugins.Plugins.telemetry.Config.Mode",
        json!("off"),
    );
    let peering = peering_peers(&config, others);
    set(&mut config, "Peering.Peers", peering);
    refuse_non_loopback(&config, &format!("Kubo of {peer_name}"))?;
    Ok(config)
}

/// Kubo's `Peering.Peers`: the user's (spec.kubo.config) and, always, the cluster's own.
fn peering_peers(config: &Value, others: &[OtherPeer]) -> Value {
    let mut peering: Vec<Value> = config
        .pointer("/Peering/Peers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    peering.retain(|p| {
        !others
            .iter()
            .any(|o| p["ID"].as_str() == Some(o.kubo_peer_id.as_str()))
    });
    peering.extend(others.iter().map(|o| {
        json!({
            "ID": o.kubo_peer_id,
            "Addrs": [loopback_tcp(o.kubo_swarm_port)],
        })
    }));
    Value::Array(peering)
}

/// What the IPFS Cluster configuration of one peer needs besides the spec.
#[derive(Clone, Debug)]
pub struct ClusterInputs<'a> {
    pub peer_name: &'a str,
    /// The shared cluster secret (32 bytes, hex).
    pub secret: &'a str,
    pub ports: &'a PeerPorts,
    pub others: &'a [OtherPeer],
    /// Raft only: the cluster peer ids the peerset is first initialised with (every initial
    /// peer's, this one's included when it is one of them).
    pub raft_init_peerset: &'a [String],
}

/// Who may change the pinset of a CRDT cluster: every peer (`"*"`).
///
/// A list of peer ids would be fixed when each peer's `service.json` is written, and IPFS
/// Cluster reads it only at start (it has no API to trust a peer later): after a scale-up the
/// older peers would discard every pin made through the new one until each of them restarted.
/// Trusting all is safe here because the cluster's libp2p network is private: every connection
/// must prove the cluster secret (a libp2p private network), which the local runtime makes from
/// the kernel's CSPRNG, keeps in a 0600 file and gives to no one but its own peers, all listening
/// on loopback. The peers that can reach a peer at all are the ones it should trust. IPFS
/// Cluster's documentation warns against `"*"` only for collaborative clusters, whose secret is
/// handed out to followers. It is also what the Kubernetes runtime (and `ipfs-cluster-service
/// init`) sets.
pub const CRDT_TRUSTED_PEERS: &str = "*";

/// The consensus settings of a peer: CRDT trusts every peer of the private network, raft is
/// initialised with the cluster's initial peerset. A configuration made for the other consensus
/// is refused: the crdt and raft states are incompatible.
fn set_consensus(
    config: &mut Value,
    spec: &IpfsClusterSpec,
    inputs: &ClusterInputs<'_>,
) -> Result<(), LocalError> {
    let wanted = spec.cluster.consensus;
    let other = match wanted {
        Consensus::Crdt => Consensus::Raft,
        Consensus::Raft => Consensus::Crdt,
    };
    if config["consensus"].get(other.as_str()).is_some() {
        return Err(LocalError::ConsensusChanged {
            peer: inputs.peer_name.to_owned(),
            was: other.as_str(),
            wanted: wanted.as_str(),
        });
    }
    match spec.cluster.consensus {
        Consensus::Crdt => set(
            config,
            "consensus.crdt.trusted_peers",
            json!([CRDT_TRUSTED_PEERS]),
        ),
        Consensus::Raft => set(
            config,
            "consensus.raft.init_peerset",
            json!(inputs.raft_init_peerset),
        ),
    }
    Ok(())
}

/// The IPFS Cluster `service.json` of one peer; `base` is the file `ipfs-cluster-service init`
/// wrote.
pub fn render_cluster(
    base: &Value,
    spec: &IpfsClusterSpec,
    inputs: &ClusterInputs<'_>,
) -> Result<Value, LocalError> {
    let mut config = base.clone();
    let ports = inputs.ports;
    let kubo_api = loopback_tcp(ports.kubo_api);
    let cluster = [
        ("cluster.peername", json!(inputs.peer_name)),
        ("cluster.secret", json!(inputs.secret)),
        (
            "cluster.listen_multiaddress",
            json!([loopback_tcp(ports.cluster_swarm)]),
        ),
        ("cluster.announce_multiaddress", json!([])),
        (
            "cluster.peer_addresses",
            json!(
                inputs
                    .others
                    .iter()
                    .map(|o| o.cluster_addr.clone())
                    .collect::<Vec<_>>()
            ),
        ),
        ("cluster.mdns_interval", json!("0s")),
        ("cluster.enable_relay_hop", json!(false)),
        (
            "cluster.replication_factor_min",
            json!(spec.cluster.replication_factor_min.unwrap_or(-1)),
        ),
        (
            "cluster.replication_factor_max",
            json!(spec.cluster.replication_factor_max.unwrap_or(-1)),
        ),
        (
            "api.restapi.http_listen_multiaddress",
            json!(loopback_tcp(ports.cluster_rest)),
        ),
        (
            "api.ipfsproxy.listen_multiaddress",
            json!(loopback_tcp(ports.cluster_proxy)),
        ),
        ("api.ipfsproxy.node_multiaddress", json!(kubo_api)),
        (
            "api.pinsvcapi.http_listen_multiaddress",
            json!(loopback_tcp(ports.cluster_pinsvc)),
        ),
        ("ipfs_connector.ipfshttp.node_multiaddress", json!(kubo_api)),
    ];
    for (path, value) in cluster {
        set(&mut config, path, value);
    }
    set_consensus(&mut config, spec, inputs)?;
    // Tracing and metrics exporters are off by default; keep their endpoints on loopback anyway.
    if config["observations"]["tracing"].is_object() {
        set(
            &mut config,
            "observations.tracing.jaeger_agent_endpoint",
            json!("/ip4/127.0.0.1/udp/6831"),
        );
    }
    if config["observations"]["metrics"].is_object() {
        set(
            &mut config,
            "observations.metrics.prometheus_endpoint",
            json!("/ip4/127.0.0.1/tcp/8888"),
        );
    }
    refuse_non_loopback(&config, &format!("IPFS Cluster of {}", inputs.peer_name))?;
    Ok(config)
}

/// Profiles passed to `ipfs init`: always `test` (loopback, no bootstrap, no discovery), plus the
/// spec's datastore and power profiles. Network profiles (`server`, `local-discovery`,
/// `randomports`, `announce-*`) are superseded by the rendered loopback addresses.
pub fn init_profiles(spec: &IpfsClusterSpec) -> String {
    use crate::api::KuboProfile as P;
    let mut profiles = vec!["test"];
    for p in &spec.kubo.profiles {
        if matches!(p, P::Flatfs | P::Pebbleds | P::Lowpower) {
            profiles.push(p.as_str());
        }
    }
    profiles.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Consensus, KuboProfile};

    fn kubo_base() -> Value {
        json!({
            "Identity": {"PeerID": "12D3KooWself", "PrivKey": "secret"},
            "Addresses": {
                "API": "/ip4/127.0.0.1/tcp/0",
                "Gateway": "/ip4/127.0.0.1/tcp/0",
                "Swarm": ["/ip4/127.0.0.1/tcp/0"],
                "NoAnnounce": ["/ip4/10.0.0.0/ipcidr/8"]
            },
            "Bootstrap": ["/dnsaddr/bootstrap.libp2p.io/p2p/QmNnoo"],
            "Discovery": {"MDNS": {"Enabled": true}},
            "Routing": {"Type": "auto"},
            "Swarm": {"AddrFilters": ["/ip4/10.0.0.0/ipcidr/8"]},
            "Datastore": {"StorageMax": "10GB", "GCPeriod": "1h"}
        })
    }

    fn others() -> Vec<OtherPeer> {
        vec![OtherPeer {
            kubo_peer_id: "12D3KooWother".into(),
            kubo_swarm_port: 4011,
            cluster_addr: "/ip4/127.0.0.1/tcp/9106/p2p/12D3KooWcl".into(),
        }]
    }

    /// `spec.kubo.config` may add peering peers; the cluster's own are always there too, once.
    #[test]
    fn the_users_peering_peers_are_kept_beside_the_clusters_own() {
        let mut spec = IpfsClusterSpec::default();
        spec.kubo.config = json!({"Peering": {"Peers": [
            {"ID": "12D3KooWuser", "Addrs": ["/ip4/127.0.0.1/tcp/4999"]},
            {"ID": "12D3KooWother", "Addrs": ["/ip4/127.0.0.1/tcp/1"]}
        ]}})
        .as_object()
        .cloned();
        let ports = PeerPorts::preferred(0);
        let config = render_kubo(&kubo_base(), &spec, &ports, &others(), "peer-0").expect("ok");
        assert_eq!(
            config["Peering"]["Peers"],
            json!([
                {"ID": "12D3KooWuser", "Addrs": ["/ip4/127.0.0.1/tcp/4999"]},
                {"ID": "12D3KooWother", "Addrs": ["/ip4/127.0.0.1/tcp/4011"]}
            ])
        );
    }

    #[test]
    fn kubo_config_is_private_and_loopback_only() {
        let spec = IpfsClusterSpec::default();
        let ports = PeerPorts::preferred(0);
        let config = render_kubo(&kubo_base(), &spec, &ports, &others(), "peer-0").expect("ok");
        assert_eq!(config["Addresses"]["API"], "/ip4/127.0.0.1/tcp/5001");
        assert_eq!(config["Addresses"]["Gateway"], json!([]));
        assert_eq!(
            config["Addresses"]["Swarm"],
            json!(["/ip4/127.0.0.1/tcp/4001"])
        );
        assert_eq!(config["Bootstrap"], json!([]));
        assert_eq!(config["Discovery"]["MDNS"]["Enabled"], false);
        assert_eq!(config["Routing"]["Type"], "none");
        assert_eq!(config["AutoConf"]["Enabled"], false);
        assert_eq!(config["AutoTLS"]["Enabled"], false);
        assert_eq!(config["Swarm"]["DisableNatPortMap"], true);
        assert_eq!(config["Swarm"]["Transports"]["Network"]["QUIC"], false);
        assert_eq!(
            config["Plugins"]["Plugins"]["telemetry"]["Config"]["Mode"],
            "off"
        );
        assert_eq!(
            config["Peering"]["Peers"],
            json!([{"ID": "12D3KooWother", "Addrs": ["/ip4/127.0.0.1/tcp/4011"]}])
        );
        assert_eq!(
            config["Identity"]["PeerID"], "12D3KooWself",
            "identity kept"
        );
        assert_eq!(
            config["Datastore"]["StorageMax"], "9663676416",
            "90 % of the default 10Gi volume, whatever the repository held"
        );
        assert_eq!(config["Datastore"]["GCPeriod"], "1h", "the rest kept");
        assert!(non_loopback_addresses(&config, &[]).is_empty());
    }

    #[test]
    fn kubo_overrides_merge_but_cannot_touch_managed_keys() {
        let mut spec = IpfsClusterSpec::default();
        spec.networking.gateway.enabled = true;
        spec.kubo.config = Some(
            json!({
                "Swarm": {"ConnMgr": {"HighWater": 200}},
                "Addresses": {"API": "/ip4/0.0.0.0/tcp/5001"},
                "Bootstrap": ["/ip4/1.2.3.4/tcp/4001"],
                "Identity": {"PeerID": "stolen"}
            })
            .as_object()
            .cloned()
            .expect("object"),
        );
        let ports = PeerPorts::preferred(1);
        let config = render_kubo(&kubo_base(), &spec, &ports, &[], "peer-1").expect("ok");
        assert_eq!(config["Swarm"]["ConnMgr"]["HighWater"], 200);
        assert_eq!(config["Addresses"]["API"], "/ip4/127.0.0.1/tcp/5011");
        assert_eq!(config["Addresses"]["Gateway"], "/ip4/127.0.0.1/tcp/8090");
        assert_eq!(config["Bootstrap"], json!([]));
        assert_eq!(config["Identity"]["PeerID"], "12D3KooWself");
    }

    #[test]
    fn an_override_naming_an_outside_address_is_refused_with_its_path() {
        let mut spec = IpfsClusterSpec::default();
        spec.kubo.config = Some(
            json!({"Gateway": {"PublicGateways": {"x": {"Paths": ["https://example.org"]}}}})
                .as_object()
                .cloned()
                .expect("object"),
        );
        let err = render_kubo(&kubo_base(), &spec, &PeerPorts::preferred(0), &[], "peer-0")
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("Gateway.PublicGateways.x.Paths[0]") && err.contains("peer-0"),
            "{err}"
        );
    }

    #[test]
    fn cluster_config_names_the_secret_peers_and_loopback_apis() {
        let base = json!({
            "cluster": {"peername": "host", "secret": "", "listen_multiaddress": ["/ip4/0.0.0.0/tcp/9096"], "mdns_interval": "10s"},
            "consensus": {"crdt": {"trusted_peers": ["*"]}},
            "api": {
                "restapi": {"http_listen_multiaddress": "/ip4/127.0.0.1/tcp/9094"},
                "ipfsproxy": {"listen_multiaddress": "/ip4/127.0.0.1/tcp/9095", "node_multiaddress": "/ip4/127.0.0.1/tcp/5001"},
                "pinsvcapi": {"http_listen_multiaddress": "/ip4/127.0.0.1/tcp/9097"}
            },
            "ipfs_connector": {"ipfshttp": {"node_multiaddress": "/ip4/127.0.0.1/tcp/5001"}},
            "observations": {"metrics": {"prometheus_endpoint": "/ip4/0.0.0.0/tcp/8888"}}
        });
        let mut spec = IpfsClusterSpec::default();
        spec.cluster.replication_factor_min = Some(2);
        let ports = PeerPorts::preferred(1);
        let others = others();
        let inputs = ClusterInputs {
            peer_name: "peer-1",
            secret: "ab".repeat(32).leak(),
            ports: &ports,
            others: &others,
            raft_init_peerset: &[],
        };
        let config = render_cluster(&base, &spec, &inputs).expect("ok");
        let c = &config["cluster"];
        assert_eq!(c["peername"], "peer-1");
        assert_eq!(c["secret"], "ab".repeat(32));
        assert_eq!(c["listen_multiaddress"], json!(["/ip4/127.0.0.1/tcp/9106"]));
        assert_eq!(
            c["peer_addresses"],
            json!(["/ip4/127.0.0.1/tcp/9106/p2p/12D3KooWcl"])
        );
        assert_eq!(c["mdns_interval"], "0s");
        assert_eq!(c["replication_factor_min"], 2);
        assert_eq!(c["replication_factor_max"], -1);
        // Every peer of the private network is trusted, so one added later is trusted at once.
        assert_eq!(config["consensus"]["crdt"]["trusted_peers"], json!(["*"]));
        assert_eq!(config["consensus"].get("raft"), None);
        assert_eq!(
            config["api"]["restapi"]["http_listen_multiaddress"],
            "/ip4/127.0.0.1/tcp/9104"
        );
        assert_eq!(
            config["ipfs_connector"]["ipfshttp"]["node_multiaddress"],
            "/ip4/127.0.0.1/tcp/5011"
        );
        assert!(non_loopback_addresses(&config, &[]).is_empty());
        assert_eq!(spec.cluster.consensus, Consensus::Crdt);
    }

    fn raft_base() -> Value {
        json!({
            "cluster": {"peername": "host", "secret": "", "listen_multiaddress": ["/ip4/0.0.0.0/tcp/9096"]},
            "consensus": {"raft": {"init_peerset": [], "wait_for_leader_timeout": "15s"}},
            "api": {"restapi": {"http_listen_multiaddress": "/ip4/127.0.0.1/tcp/9094"}}
        })
    }

    fn raft_spec() -> IpfsClusterSpec {
        let mut spec = IpfsClusterSpec {
            replicas: 3,
            ..IpfsClusterSpec::default()
        };
        spec.cluster.consensus = Consensus::Raft;
        spec
    }

    #[test]
    fn a_raft_peer_is_initialised_with_the_whole_initial_peerset() {
        let ports = PeerPorts::preferred(0);
        let others = others();
        let peerset = ["12D3KooWa", "12D3KooWb", "12D3KooWc"].map(String::from);
        let inputs = ClusterInputs {
            peer_name: "peer-0",
            secret: "ab".repeat(32).leak(),
            ports: &ports,
            others: &others,
            raft_init_peerset: &peerset,
        };
        let config = render_cluster(&raft_base(), &raft_spec(), &inputs).expect("ok");
        assert_eq!(
            config["consensus"]["raft"]["init_peerset"],
            json!(["12D3KooWa", "12D3KooWb", "12D3KooWc"])
        );
        assert_eq!(
            config["consensus"]["raft"]["wait_for_leader_timeout"], "15s",
            "the rest of init's raft section kept"
        );
        assert_eq!(
            config["consensus"].get("crdt"),
            None,
            "IPFS Cluster refuses a config with two consensus sections"
        );
        assert_eq!(
            config["cluster"]["peer_addresses"],
            json!(["/ip4/127.0.0.1/tcp/9106/p2p/12D3KooWcl"])
        );
        assert!(non_loopback_addresses(&config, &[]).is_empty());
    }

    #[test]
    fn a_peer_made_for_the_other_consensus_is_refused_naming_the_field() {
        let ports = PeerPorts::preferred(0);
        let inputs = ClusterInputs {
            peer_name: "peer-0",
            secret: "ab",
            ports: &ports,
            others: &[],
            raft_init_peerset: &[],
        };
        let err = render_cluster(&raft_base(), &IpfsClusterSpec::default(), &inputs)
            .expect_err("raft state, crdt spec")
            .to_string();
        assert!(
            err.starts_with("peer-0: ")
                && err.contains("consensus raft, not crdt")
                && err.contains("spec.cluster.consensus is immutable"),
            "{err}"
        );
        let crdt = json!({"consensus": {"crdt": {"trusted_peers": ["*"]}}});
        let err = render_cluster(&crdt, &raft_spec(), &inputs)
            .expect_err("crdt state, raft spec")
            .to_string();
        assert!(err.contains("consensus crdt, not raft"), "{err}");
    }

    #[test]
    fn init_profiles_keep_only_storage_and_power_profiles() {
        let mut spec = IpfsClusterSpec::default();
        assert_eq!(init_profiles(&spec), "test");
        spec.kubo.profiles = vec![
            KuboProfile::Server,
            KuboProfile::Pebbleds,
            KuboProfile::Lowpower,
        ];
        assert_eq!(init_profiles(&spec), "test,pebbleds,lowpower");
    }
}
