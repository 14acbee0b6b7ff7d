//! Provisioning a peer: its Kubo repository and IPFS Cluster configuration created by the tools'
//! own `init` (which make the identities), its ports chosen (free ones when the preferred are
//! held), and both configurations rendered from the spec ([`super::config`]) and written before
//! every start, with whether a running daemon must restart to apply them.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use tracing::info;

use super::LocalError;
use super::config::{ClusterInputs, OtherPeer, init_profiles, render_cluster, render_kubo};
use super::ports::{self, Loopback, Moved, NoFreePort, PeerPorts, PortSource};
use super::state::{DaemonKind, PeerPaths, PeerRecord, write_atomic};
use super::supervisor::Supervisor;

/// Settings that name the other peers: they change when peers come and go, and a running daemon
/// needs no restart for them (new peers dial it; a raft peerset changes through the leader, and
/// `init_peerset` is fixed when the cluster is created). The CRDT trust (`"*"`) names no peer,
/// so it never changes with the peerset (see [`super::config::CRDT_TRUSTED_PEERS`]).
const KUBO_HINTS: &[&str] = &["Peering"];
const CLUSTER_HINTS: &[&str] = &["cluster.peer_addresses", "consensus.raft.init_peerset"];

fn restart_relevant(config: &Value, hints: &[&str]) -> Value {
    let mut c = config.clone();
    for hint in hints {
        super::config::remove_path(&mut c, hint);
    }
    c
}

/// Ports of this peer's running daemons count as free for it (it holds them itself).
struct KeepOwn<'a> {
    keep: &'a BTreeSet<u16>,
}

impl PortSource for KeepOwn<'_> {
    fn is_free(&mut self, port: u16) -> bool {
        self.keep.contains(&port) || Loopback.is_free(port)
    }
    fn any_free(&mut self) -> Option<u16> {
        Loopback.any_free()
    }
}

/// The error of a peer for which no free port was found.
fn exhausted(peer: &str, e: NoFreePort) -> LocalError {
    LocalError::PortsExhausted {
        peer: peer.to_owned(),
        port: e.what,
        preferred: e.preferred,
    }
}

fn log_moved(peer: &str, moved: Vec<Moved>) {
    for m in moved {
        info!(
            peer,
            "{} port {} is in use: using {} instead", m.what, m.from, m.to
        );
    }
}

impl Supervisor {
    /// Creates peer `index`: Kubo repository and IPFS Cluster configuration with their
    /// identities, ports chosen.
    pub(super) async fn init_peer(&mut self, index: u32) -> Result<PeerRecord, LocalError> {
        let name = PeerRecord::name_of(index);
        let pp = self.peer_paths(&name);
        info!(peer = %name, "initialising the Kubo repository and IPFS Cluster identity");
        for dir in [pp.dir.clone(), pp.logs()] {
            std::fs::create_dir_all(&dir).map_err(|e| LocalError::io("creating", &dir, e))?;
        }
        self.init_repositories(&name, &pp).await?;
        let (kubo_peer_id, cluster_peer_id) = read_identities(&pp)?;
        let mut taken: BTreeSet<u16> = self
            .state
            .peers
            .iter()
            .flat_map(|p| p.ports.named().map(|(_, port)| port))
            .collect();
        let (ports, moved) = ports::choose(PeerPorts::preferred(index), &mut taken, &mut Loopback)
            .map_err(|e| exhausted(&name, e))?;
        log_moved(&name, moved);
        Ok(PeerRecord {
            name,
            index,
            ports,
            kubo_peer_id,
            cluster_peer_id,
            // A raft cluster that already has a peerset takes a new peer in by a join.
            raft_join: self.state.spec.cluster.consensus == crate::api::Consensus::Raft
                && !self.state.raft_init_peerset.is_empty(),
        })
    }

    /// Runs `ipfs init` and `ipfs-cluster-service init` where their files are missing.
    async fn init_repositories(&self, name: &str, pp: &PeerPaths) -> Result<(), LocalError> {
        let binaries = self.daemons.binaries();
        if !pp.ipfs().join("config").is_file() {
            let mut cmd = tokio::process::Command::new(&binaries.ipfs);
            cmd.env("IPFS_PATH", pp.ipfs())
                .env("IPFS_TELEMETRY", "off")
                .arg("--repo-dir")
                .arg(pp.ipfs())
                .arg("init")
                .arg(format!("--profile={}", init_profiles(&self.state.spec)))
                .arg("--empty-repo");
            run_tool(cmd, &format!("`ipfs init` for {name}")).await?;
        }
        let cluster_dir = pp.cluster();
        if !cluster_dir.join("service.json").is_file()
            || !cluster_dir.join("identity.json").is_file()
        {
            let mut cmd = tokio::process::Command::new(&binaries.cluster);
            cmd.env("IPFS_CLUSTER_PATH", &cluster_dir)
                .arg("--config")
                .arg(&cluster_dir)
                .args([
                    "init",
                    "--consensus",
                    self.state.spec.cluster.consensus.as_str(),
                    "--force",
                ]);
            run_tool(cmd, &format!("`ipfs-cluster-service init` for {name}")).await?;
        }
        Ok(())
    }

    /// Re-chooses the ports of daemons that do not run (when held by someone else), renders both
    /// configurations and writes them. Returns whether each changed in a way that needs a
    /// restart of a running daemon.
    pub(super) fn prepare(&mut self, peer: &str) -> Result<(bool, bool), LocalError> {
        let Some(index) = self.state.peers.iter().position(|p| p.name == peer) else {
            return Ok((false, false));
        };
        self.state.peers[index].ports = self.rechoose_ports(&self.state.peers[index])?;
        let record = self.state.peers[index].clone();

        let pp = self.peer_paths(peer);
        let others: Vec<OtherPeer> = self
            .state
            .peers
            .iter()
            .filter(|p| p.name != peer)
            .map(|p| OtherPeer {
                kubo_peer_id: p.kubo_peer_id.clone(),
                kubo_swarm_port: p.ports.kubo_swarm,
                cluster_addr: p.cluster_addr(),
            })
            .collect();

        let kubo_file = pp.ipfs().join("config");
        let kubo_old = read_json(&kubo_file)?;
        let kubo_new = render_kubo(&kubo_old, &self.state.spec, &record.ports, &others, peer)?;
        let cluster_file = pp.cluster().join("service.json");
        let cluster_old = read_json(&cluster_file)?;
        let inputs = ClusterInputs {
            peer_name: peer,
            secret: &self.secret,
            ports: &record.ports,
            others: &others,
            raft_init_peerset: &self.state.raft_init_peerset,
        };
        let cluster_new = render_cluster(&cluster_old, &self.state.spec, &inputs)?;
        let kubo_changed =
            restart_relevant(&kubo_old, KUBO_HINTS) != restart_relevant(&kubo_new, KUBO_HINTS);
        let cluster_changed = restart_relevant(&cluster_old, CLUSTER_HINTS)
            != restart_relevant(&cluster_new, CLUSTER_HINTS);
        write_json(&kubo_file, &kubo_new, 0o600)?;
        write_json(&cluster_file, &cluster_new, 0o600)?;
        write_atomic(
            &pp.ipfs().join("swarm.key"),
            self.swarm_key.as_bytes(),
            0o600,
        )?;
        Ok((kubo_changed, cluster_changed))
    }

    /// The ports of `record`: those of its running daemons kept, the others moved when held by
    /// another process or another peer.
    fn rechoose_ports(&self, record: &PeerRecord) -> Result<PeerPorts, LocalError> {
        let peer = record.name.as_str();
        let mut keep: BTreeSet<u16> = BTreeSet::new();
        if self.daemons.is_running(peer, DaemonKind::Kubo) {
            keep.extend(record.ports.kubo());
        }
        if self.daemons.is_running(peer, DaemonKind::Cluster) {
            keep.extend(record.ports.cluster());
        }
        let mut taken: BTreeSet<u16> = self
            .state
            .peers
            .iter()
            .filter(|p| p.name != peer)
            .flat_map(|p| p.ports.named().map(|(_, port)| port))
            .collect();
        let mut source = KeepOwn { keep: &keep };
        let (new_ports, moved) =
            ports::choose(record.ports, &mut taken, &mut source).map_err(|e| exhausted(peer, e))?;
        log_moved(peer, moved);
        Ok(new_ports)
    }
}

/// Runs a tool to its end; its standard output, or an error with everything it printed.
async fn run_tool(mut cmd: tokio::process::Command, what: &str) -> Result<String, LocalError> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| LocalError::ToolNotRun {
            command: what.to_owned(),
            source,
        })?;
    if !out.status.success() {
        return Err(LocalError::Tool {
            command: what.to_owned(),
            status: out.status,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The Kubo and IPFS Cluster peer IDs that `init` wrote into the peer's files.
fn read_identities(pp: &PeerPaths) -> Result<(String, String), LocalError> {
    let kubo_file = pp.ipfs().join("config");
    let kubo_config = read_json(&kubo_file)?;
    let kubo_peer_id = kubo_config["Identity"]["PeerID"]
        .as_str()
        .ok_or_else(|| LocalError::Damaged {
            file: kubo_file.clone(),
            field: "Identity.PeerID",
            what: "the repository",
        })?
        .to_owned();
    let identity_file = pp.cluster().join("identity.json");
    let identity = read_json(&identity_file)?;
    let cluster_peer_id = identity["id"]
        .as_str()
        .ok_or_else(|| LocalError::Damaged {
            file: identity_file.clone(),
            field: "id",
            what: "the cluster identity",
        })?
        .to_owned();
    Ok((kubo_peer_id, cluster_peer_id))
}

fn read_json(path: &Path) -> Result<Value, LocalError> {
    let text = std::fs::read_to_string(path).map_err(|e| LocalError::io("reading", path, e))?;
    serde_json::from_str(&text).map_err(|source| LocalError::Json {
        path: path.to_owned(),
        source,
    })
}

fn write_json(path: &Path, value: &Value, mode: u32) -> Result<(), LocalError> {
    let json = serde_json::to_vec_pretty(value).map_err(|source| LocalError::Serialize {
        what: path.display().to_string(),
        source,
    })?;
    write_atomic(path, &json, mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn peer_hints_do_not_count_as_a_configuration_change() {
        let a = json!({"cluster": {"peer_addresses": ["x"], "secret": "s"}, "consensus": {"raft": {"init_peerset": ["a"]}}});
        let b = json!({"cluster": {"peer_addresses": ["x", "y"], "secret": "s"}, "consensus": {"raft": {"init_peerset": ["a", "b"]}}});
        assert_eq!(
            restart_relevant(&a, CLUSTER_HINTS),
            restart_relevant(&b, CLUSTER_HINTS)
        );
        let c = json!({"cluster": {"peer_addresses": ["x"], "secret": "t"}, "consensus": {"raft": {"init_peerset": ["a"]}}});
        assert_ne!(
            restart_relevant(&a, CLUSTER_HINTS),
            restart_relevant(&c, CLUSTER_HINTS)
        );
    }

    /// A peer whose `service.json` still lists its trusted peers (written by an earlier version)
    /// restarts once to trust every peer of the private network; afterwards the trust no longer
    /// changes with the peerset.
    #[test]
    fn a_trusted_peer_list_is_replaced_by_one_restart() {
        let listed = json!({"consensus": {"crdt": {"trusted_peers": ["a", "b"]}}});
        let all = json!({"consensus": {"crdt": {"trusted_peers": ["*"]}}});
        assert_ne!(
            restart_relevant(&listed, CLUSTER_HINTS),
            restart_relevant(&all, CLUSTER_HINTS)
        );
    }
}
