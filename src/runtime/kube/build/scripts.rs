//! The start scripts of the pods and the ConfigMap that carries them: Kubo's repository setup,
//! IPFS Cluster's state setup, and the Cluster start that bootstraps to the other peers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::reach::{ANNOUNCE_DIR, HOST_PLACEHOLDER, exposed};
use super::{
    CLUSTER_PATH, GATEWAY_PORT, KUBO_PATH, Names, RESTART_FILE, SWARM_KEY_DIR, SWARM_KEY_FILE,
    kubo_config_leaves, meta, sh_quote,
};
use crate::api::cluster::{CLUSTER_REST_PORT, CLUSTER_SWARM_PORT, KUBO_RPC_PORT};
use crate::api::{Consensus, IpfsCluster};

/// The script the `kubo-config` init container runs on every start.
pub fn kubo_init_script(cluster: &IpfsCluster) -> String {
    let spec = &cluster.spec.kubo;
    let profiles = spec
        .profiles
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let init = if profiles.is_empty() {
        "ipfs init".to_owned()
    } else {
        format!("ipfs init --profile={}", sh_quote(&profiles))
    };
    let gateway = if cluster.spec.networking.gateway.enabled {
        format!("/ip4/0.0.0.0/tcp/{GATEWAY_PORT}")
    } else {
        format!("/ip4/127.0.0.1/tcp/{GATEWAY_PORT}")
    };
    let mut lines = vec![
        "#!/bin/sh".to_owned(),
        "# Rendered by ipfs-kit-operator from the IpfsCluster spec; runs before every start of Kubo.".to_owned(),
        "set -eu".to_owned(),
        format!("export IPFS_PATH={KUBO_PATH}"),
        "if [ ! -f \"$IPFS_PATH/config\" ]; then".to_owned(),
        format!("  {init}"),
        "fi".to_owned(),
        "ipfs repo migrate".to_owned(),
        "# Operator-managed settings: the RPC API listens on the pod IP (the NetworkPolicy limits who".to_owned(),
        "# reaches it), the gateway only when enabled, no public bootstrap peers.".to_owned(),
        format!("ipfs config Addresses.API /ip4/0.0.0.0/tcp/{KUBO_RPC_PORT}"),
        format!("ipfs config Addresses.Gateway {gateway}"),
        "ipfs config --json Bootstrap '[]'".to_owned(),
        "# Pod addresses are private (10/8, 172.16/12, 192.168/16, 100.64/10): the `server` profile's".to_owned(),
        "# filters would keep the peers from dialling and announcing each other. spec.kubo.config may".to_owned(),
        "# set them again.".to_owned(),
        "ipfs config --json Swarm.AddrFilters '[]'".to_owned(),
        "ipfs config --json Addresses.NoAnnounce '[]'".to_owned(),
        "# Nothing fetched from or reported to the public network: no AutoConf (its `auto` values".to_owned(),
        "# are then skipped), no telemetry. spec.kubo.config may turn them on.".to_owned(),
        "ipfs config --json AutoConf.Enabled false".to_owned(),
        "ipfs config --json Plugins.Plugins.telemetry.Config.Mode '\"off\"'".to_owned(),
    ];
    // The API server refused a storageMax or volume size that does not parse.
    if let Ok(bytes) = spec.storage_max_bytes() {
        lines.push(
            "# The operator's garbage collection keeps the repository under this.".to_owned(),
        );
        lines.push(format!("ipfs config Datastore.StorageMax {bytes}"));
    }
    lines.extend(swarm_key_lines(cluster));
    lines.push(
        "# Announced besides the listening addresses: the peer's public ones, set below when exposed."
            .to_owned(),
    );
    lines.push("ipfs config --json Addresses.AppendAnnounce '[]'".to_owned());
    if let Some(config) = &spec.config {
        let leaves = kubo_config_leaves(config);
        if !leaves.is_empty() {
            lines.push("# spec.kubo.config overrides".to_owned());
        }
        for (path, value) in leaves {
            lines.push(format!(
                "ipfs config --json {} {}",
                sh_quote(&path),
                sh_quote(&value)
            ));
        }
    }
    if exposed(cluster) {
        lines.extend(kubo_announce_lines());
    }
    lines.push(String::new());
    lines.join("\n")
}

/// Sets `host` to this pod's node address as a multiaddr head (`ip4/...` or `ip6/...`), which
/// stands for [`HOST_PLACEHOLDER`] in a NodePort entry.
fn host_line() -> String {
    "host=\"ip4/$HOST_IP\"; case \"$HOST_IP\" in *:*) host=\"ip6/$HOST_IP\" ;; esac".to_owned()
}

/// `sed` reading the announce entry `kind` (kubo, cluster) of this peer, the placeholder replaced.
fn read_entry(kind: &str) -> String {
    format!("sed \"s#{HOST_PLACEHOLDER}#$host#g\" \"{ANNOUNCE_DIR}/$POD_NAME.{kind}\"")
}

/// The lines of the Kubo init script that append this peer's public addresses (from its own
/// Service, rendered by the operator into the announce ConfigMap) to `Addresses.AppendAnnounce`,
/// and report what the pod announces in the container's termination message, which the operator
/// compares with what it rendered (a peer started with an older address is restarted).
fn kubo_announce_lines() -> Vec<String> {
    vec![
        "# spec.networking.p2p.exposure: this peer's public addresses, from its own Service.".to_owned(),
        host_line(),
        "report=''".to_owned(),
        format!("if [ -f \"{ANNOUNCE_DIR}/$POD_NAME.kubo\" ]; then"),
        format!("  kubo=$({})", read_entry("kubo")),
        "  ipfs config --json Addresses.AppendAnnounce \"$kubo\"".to_owned(),
        "  echo \"announcing $kubo\"".to_owned(),
        "  report=\"kubo $kubo\"".to_owned(),
        "else".to_owned(),
        "  echo \"no public address for $POD_NAME yet: its Service has none (see the IpfsCluster's status)\"".to_owned(),
        "fi".to_owned(),
        format!("if [ -f \"{ANNOUNCE_DIR}/$POD_NAME.cluster\" ]; then"),
        format!("  report=\"$report\ncluster $({})\"", read_entry("cluster")),
        "fi".to_owned(),
        "printf '%b' \"$report\" > /dev/termination-log || true".to_owned(),
    ]
}

/// The lines of the Kubo init script that put the swarm key of `spec.swarmKeyRef` into the
/// repository (mode 0400, the daemon's user alone reads it), or remove one left by an earlier
/// spec. The key itself is never in the script.
fn swarm_key_lines(cluster: &IpfsCluster) -> Vec<String> {
    let repo_key = format!("\"$IPFS_PATH/{SWARM_KEY_FILE}\"");
    let Some(r) = &cluster.spec.swarm_key_ref else {
        return vec![
            "# No spec.swarmKeyRef: the public network (a swarm key of an earlier spec is removed).".to_owned(),
            format!("rm -f {repo_key}"),
        ];
    };
    let mounted = format!("{SWARM_KEY_DIR}/{SWARM_KEY_FILE}");
    let not_a_key = format!(
        "spec.swarmKeyRef: key `{}` of Secret {} is not a swarm key: its first line is not \
         /key/swarm/psk/1.0.0/",
        r.key, r.name
    );
    vec![
        format!(
            "# spec.swarmKeyRef (Secret {}, key `{}`): only the private network of that key. Kubo",
            r.name, r.key
        ),
        "# reads $IPFS_PATH/swarm.key; the daemon runs with LIBP2P_FORCE_PNET=1, so never without it.".to_owned(),
        format!("if [ \"$(head -n 1 {mounted})\" != '/key/swarm/psk/1.0.0/' ]; then"),
        format!("  echo {} >&2", sh_quote(&not_a_key)),
        "  exit 1".to_owned(),
        "fi".to_owned(),
        format!("rm -f {repo_key}"),
        format!("(umask 0377 && cat {mounted} > {repo_key})"),
    ]
}

/// The script the `cluster-config` init container runs on every start: creates the state (and
/// the peer's own identity) once; settings come from `CLUSTER_*` variables at each start.
pub fn cluster_init_script(cluster: &IpfsCluster) -> String {
    let consensus = match cluster.spec.cluster.consensus {
        Consensus::Crdt => "crdt",
        Consensus::Raft => "raft",
    };
    [
        "#!/bin/sh",
        "# Rendered by ipfs-kit-operator; runs before every start of ipfs-cluster-service.",
        "set -eu",
        &format!("export IPFS_CLUSTER_PATH={CLUSTER_PATH}"),
        "if [ ! -f \"$IPFS_CLUSTER_PATH/service.json\" ]; then",
        &format!("  ipfs-cluster-service init --consensus {consensus} --datastore pebble"),
        "fi",
        "",
    ]
    .join("\n")
}

/// The script the `cluster` container runs: bootstraps to every other peer that answers (by its
/// DNS name in the headless Service; ordinals are contiguous, so the first name that does not
/// resolve ends the list), then execs the daemon. Peer 0 starts alone when nobody answers (the
/// first start of a new cluster); every other peer waits up to two minutes for one to answer, so
/// that peers started together (`Parallel` pod management) join peer 0 instead of each starting
/// a cluster of its own. `cluster_domain` is the Kubernetes cluster's DNS domain.
pub fn cluster_start_script(
    cluster: &IpfsCluster,
    names: &Names,
    namespace: &str,
    cluster_domain: &str,
) -> String {
    let domain = names.peers_domain(namespace, cluster_domain);
    let sts = &names.statefulset;
    let mut lines: Vec<String> = [
        "#!/bin/sh",
        "# Rendered by ipfs-kit-operator: start ipfs-cluster-service bootstrapped to every peer.",
        "set -u",
        &format!("export IPFS_CLUSTER_PATH={CLUSTER_PATH}"),
        "find_peers() {",
        "  bootstrap=''",
        "  i=0",
        "  while [ \"$i\" -lt 100 ]; do",
        &format!("    host=\"{sts}-$i.{domain}\""),
        "    i=$((i + 1))",
        &format!("    [ \"{sts}-$((i - 1))\" = \"$POD_NAME\" ] && continue"),
        "    nslookup \"$host\" >/dev/null 2>&1 || break",
        &format!(
            // `timeout`, not `wget -T`: Debian's busybox has no -T (and crashes on it).
            "    id=$(timeout 2 wget -q -O - \"http://$host:{CLUSTER_REST_PORT}/id\" 2>/dev/null | grep -o '\"id\":\"[^\"]*\"' | head -n 1 | cut -d '\"' -f 4)"
        ),
        &format!(
            "    [ -n \"$id\" ] && bootstrap=\"$bootstrap,/dns4/$host/tcp/{CLUSTER_SWARM_PORT}/p2p/$id\""
        ),
        "  done",
        "}",
        "find_peers",
        "tries=0",
        &format!("while [ -z \"$bootstrap\" ] && [ \"$POD_NAME\" != \"{sts}-0\" ] && [ \"$tries\" -lt 60 ]; do"),
        "  [ \"$tries\" -eq 0 ] && echo \"no other peer answers yet; waiting up to 120 s for one\"",
        "  tries=$((tries + 1))",
        "  sleep 2",
        "  find_peers",
        "done",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    if exposed(cluster) {
        lines.extend(cluster_announce_lines());
    }
    // (The variable is for the script's tests; pods read the downward-API file.)
    let read = format!("$(cat \"${{IPFS_KIT_RESTART_FILE:-{RESTART_FILE}}}\" 2>/dev/null)");
    lines.extend(
        [
            &format!("asked={read}"),
            "if [ -n \"$bootstrap\" ]; then",
            "  echo \"bootstrapping to ${bootstrap#,}\"",
            "  ipfs-cluster-service daemon --bootstrap \"${bootstrap#,}\" &",
            "else",
            "  ipfs-cluster-service daemon &",
            "fi",
            "daemon=$!",
            "trap 'kill -TERM \"$daemon\" 2>/dev/null' TERM INT",
            "# A new value of the restart annotation (a request id) stops the daemon; kubelet",
            "# restarts this container, nothing else of the pod.",
            "while kill -0 \"$daemon\" 2>/dev/null; do",
            &format!("  now={read}"),
            "  if [ \"$now\" != \"$asked\" ]; then",
            "    echo \"restart requested ($now): stopping ipfs-cluster-service\"",
            "    kill -TERM \"$daemon\"",
            "    wait \"$daemon\"",
            "    exit 0",
            "  fi",
            "  sleep 2",
            "done",
            "wait \"$daemon\"",
            "",
        ]
        .map(|l: &str| l.to_owned()),
    );
    lines.join("\n")
}

/// The lines of the Cluster start script that announce this peer's public address (from its own
/// Service) through `CLUSTER_ANNOUNCEMULTIADDRESS`, which overrides `announce_multiaddress`.
fn cluster_announce_lines() -> Vec<String> {
    vec![
        "# spec.networking.p2p.exposure: this peer's public address, from its own Service."
            .to_owned(),
        format!("if [ -f \"{ANNOUNCE_DIR}/$POD_NAME.cluster\" ]; then"),
        format!("  {}", host_line()),
        format!(
            "  CLUSTER_ANNOUNCEMULTIADDRESS=$({})",
            read_entry("cluster")
        ),
        "  export CLUSTER_ANNOUNCEMULTIADDRESS".to_owned(),
        "  echo \"announcing $CLUSTER_ANNOUNCEMULTIADDRESS\"".to_owned(),
        "fi".to_owned(),
    ]
}

pub(super) fn config_map(
    cluster: &IpfsCluster,
    names: &Names,
    namespace: &str,
    cluster_domain: &str,
    owner: &OwnerReference,
) -> ConfigMap {
    ConfigMap {
        metadata: meta(&names.config_map, names, owner),
        data: Some(BTreeMap::from([
            ("kubo-init.sh".to_owned(), kubo_init_script(cluster)),
            ("cluster-init.sh".to_owned(), cluster_init_script(cluster)),
            (
                "cluster-start.sh".to_owned(),
                cluster_start_script(cluster, names, namespace, cluster_domain),
            ),
        ])),
        ..Default::default()
    }
}
