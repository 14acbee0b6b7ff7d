//! The state directory of a local cluster and what is persisted in it.
//!
//! ```text
//! <state dir>/<cluster name>/
//!   state.json          peers, their ports and ids, the applied spec (this file)
//!   status.json         the supervisor's last status snapshot (for `local status`)
//!   supervisor.lock     flock held by the running supervisor
//!   cluster.secret      the IPFS Cluster secret (0600)
//!   swarm.key           the Kubo private-network key (0600, copied into each repo)
//!   peer-N/ipfs         Kubo repository (IPFS_PATH)
//!   peer-N/cluster      IPFS Cluster configuration and state
//!   peer-N/logs         kubo.log, cluster.log (+ rotated .1, .2, ...)
//!   peer-N/kubo.pid     PID file (JSON PidRecord) of the Kubo daemon we started
//!   peer-N/cluster.pid  PID file of the ipfs-cluster-service daemon we started
//! ```

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::LocalError;
use super::ports::PeerPorts;
use super::process::PidRecord;
use crate::api::IpfsClusterSpec;

/// Version of the `state.json` layout.
pub const STATE_FORMAT: u32 = 1;

/// The default state directory: `$XDG_DATA_HOME/ipfs-kit`, else `~/.local/share/ipfs-kit`.
pub fn default_state_root() -> Result<PathBuf, LocalError> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("ipfs-kit"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/ipfs-kit")),
        None => Err(LocalError::NoStateRoot),
    }
}

/// A cluster name safe as a directory name: what Kubernetes allows for `metadata.name`.
pub fn check_name(name: &str) -> Result<(), LocalError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.starts_with(['-', '.'])
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(LocalError::InvalidName {
            name: name.to_owned(),
        })
    }
}

/// Where one cluster's files live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterPaths {
    pub root: PathBuf,
}

/// Where one peer's files live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerPaths {
    pub dir: PathBuf,
}

/// The two daemons of a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DaemonKind {
    Kubo,
    Cluster,
}

impl DaemonKind {
    pub fn label(self) -> &'static str {
        match self {
            DaemonKind::Kubo => "kubo",
            DaemonKind::Cluster => "cluster",
        }
    }
}

impl std::fmt::Display for DaemonKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DaemonKind::Kubo => "Kubo",
            DaemonKind::Cluster => "IPFS Cluster",
        })
    }
}

impl ClusterPaths {
    pub fn new(state_root: &Path, name: &str) -> Result<ClusterPaths, LocalError> {
        check_name(name)?;
        Ok(ClusterPaths {
            root: state_root.join(name),
        })
    }

    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }

    pub fn status_file(&self) -> PathBuf {
        self.root.join("status.json")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.root.join("supervisor.lock")
    }

    pub fn secret_file(&self) -> PathBuf {
        self.root.join("cluster.secret")
    }

    pub fn swarm_key_file(&self) -> PathBuf {
        self.root.join("swarm.key")
    }

    pub fn peer(&self, name: &str) -> PeerPaths {
        PeerPaths {
            dir: self.root.join(name),
        }
    }
}

impl PeerPaths {
    pub fn ipfs(&self) -> PathBuf {
        self.dir.join("ipfs")
    }

    pub fn cluster(&self) -> PathBuf {
        self.dir.join("cluster")
    }

    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }

    pub fn log(&self, kind: DaemonKind) -> PathBuf {
        self.logs().join(format!("{}.log", kind.label()))
    }

    pub fn pid_file(&self, kind: DaemonKind) -> PathBuf {
        self.dir.join(format!("{}.pid", kind.label()))
    }

    /// The path the daemon's command line names (its ownership marker).
    pub fn marker(&self, kind: DaemonKind) -> PathBuf {
        match kind {
            DaemonKind::Kubo => self.ipfs(),
            DaemonKind::Cluster => self.cluster(),
        }
    }
}

/// One peer as the supervisor created it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerRecord {
    /// `peer-<index>`.
    pub name: String,
    pub index: u32,
    pub ports: PeerPorts,
    /// Kubo's libp2p peer id (from its repository).
    pub kubo_peer_id: String,
    /// IPFS Cluster's libp2p peer id (from `identity.json`).
    pub cluster_peer_id: String,
    /// Raft only: this peer was added to a running cluster (scale-up) and has not joined its
    /// peerset yet. Its next start bootstraps to a member (`--bootstrap`); cleared once the peer
    /// lists itself among the cluster's peers. A member never starts with `--bootstrap`, which
    /// would discard its raft state.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raft_join: bool,
}

impl PeerRecord {
    pub fn name_of(index: u32) -> String {
        format!("peer-{index}")
    }

    pub fn kubo_api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.kubo_api)
    }

    pub fn cluster_api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.cluster_rest)
    }

    /// Kubo's swarm address including `/p2p/<id>`.
    pub fn kubo_swarm_addr(&self) -> String {
        format!(
            "/ip4/127.0.0.1/tcp/{}/p2p/{}",
            self.ports.kubo_swarm, self.kubo_peer_id
        )
    }

    /// The cluster peer's libp2p address including `/p2p/<id>`.
    pub fn cluster_addr(&self) -> String {
        format!(
            "/ip4/127.0.0.1/tcp/{}/p2p/{}",
            self.ports.cluster_swarm, self.cluster_peer_id
        )
    }
}

/// What `state.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterState {
    pub format: u32,
    pub name: String,
    /// The spec last applied by `local up`.
    pub spec: IpfsClusterSpec,
    /// Bumped whenever the applied spec changes (the local `metadata.generation`).
    pub generation: u64,
    /// Peers in index order.
    pub peers: Vec<PeerRecord>,
    /// Raft only: the cluster peer ids the peerset was first initialised with
    /// (`consensus.raft.init_peerset` of every peer), fixed when the cluster is first created.
    /// A peer with raft state ignores it, so restarts never re-initialise the peerset.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub raft_init_peerset: Vec<String>,
}

impl ClusterState {
    pub fn new(name: &str, spec: IpfsClusterSpec) -> ClusterState {
        ClusterState {
            format: STATE_FORMAT,
            name: name.to_owned(),
            spec,
            generation: 1,
            peers: Vec::new(),
            raft_init_peerset: Vec::new(),
        }
    }

    pub fn peer(&self, name: &str) -> Option<&PeerRecord> {
        self.peers.iter().find(|p| p.name == name)
    }
}

/// Reads `state.json`, or `None` when the cluster was never brought up.
pub fn load_state(paths: &ClusterPaths) -> Result<Option<ClusterState>, LocalError> {
    let file = paths.state_file();
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LocalError::io("reading", &file, e)),
    };
    let state: ClusterState =
        serde_json::from_str(&text).map_err(|source| LocalError::CorruptState {
            file: file.clone(),
            source,
        })?;
    if state.format != STATE_FORMAT {
        return Err(LocalError::StateFormat {
            file,
            found: state.format,
        });
    }
    Ok(Some(state))
}

/// Writes `state.json` atomically (temporary file, then rename).
pub fn save_state(paths: &ClusterPaths, state: &ClusterState) -> Result<(), LocalError> {
    let json = serde_json::to_vec_pretty(state).map_err(|source| LocalError::Serialize {
        what: "the cluster state".into(),
        source,
    })?;
    write_atomic(&paths.state_file(), &json, 0o644)
}

/// Writes `data` to `path` through a temporary file in the same directory and a rename, so that
/// readers never see half a file.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), LocalError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| LocalError::io("creating", dir, e))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| LocalError::io("creating", &tmp, e))?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(|e| LocalError::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| LocalError::io("renaming into", path, e))
}

/// Reads a secret file, creating it with `make()` (mode 0600) when missing. The value is never
/// logged.
pub fn secret_file(
    path: &Path,
    make: impl FnOnce() -> Result<String, LocalError>,
) -> Result<String, LocalError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mode = std::fs::metadata(path)
                .map(|m| m.permissions().mode() & 0o077)
                .unwrap_or(0);
            if mode != 0 {
                return Err(LocalError::SecretExposed {
                    path: path.to_owned(),
                    mode,
                });
            }
            Ok(text)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let value = make()?;
            write_atomic(path, value.as_bytes(), 0o600)?;
            Ok(value)
        }
        Err(e) => Err(LocalError::io("reading", path, e)),
    }
}

/// `n` bytes from the kernel's CSPRNG, as lower-case hex.
pub fn random_hex(n: usize) -> Result<String, LocalError> {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| LocalError::io("reading random bytes from", Path::new("/dev/urandom"), e))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Reads a PID file; `None` when there is none or it cannot be understood (then it names no
/// process we may touch).
pub fn read_pid_file(path: &Path) -> Option<PidRecord> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn write_pid_file(path: &Path, record: &PidRecord) -> Result<(), LocalError> {
    let json = serde_json::to_vec(record).map_err(|source| LocalError::Serialize {
        what: "a PID record".into(),
        source,
    })?;
    write_atomic(path, &json, 0o644)
}

/// Removes a PID file; a missing one is fine.
pub fn remove_pid_file(path: &Path) -> Result<(), LocalError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(LocalError::io("removing", path, e))
        }
        _ => Ok(()),
    }
}

/// The names of the clusters under a state root (directories holding a `state.json`).
pub fn cluster_names(state_root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("state.json").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_the_state_directory_are_refused() {
        for bad in ["", "..", "a/b", "-x", ".hidden", "Upper", "a b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["demo", "my-cluster.1", "a"] {
            check_name(good).expect(good);
        }
    }

    #[test]
    fn state_round_trips_through_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = ClusterPaths::new(dir.path(), "demo").expect("paths");
        assert_eq!(load_state(&paths).expect("no state"), None);
        let mut state = ClusterState::new("demo", IpfsClusterSpec::default());
        state.peers.push(PeerRecord {
            name: PeerRecord::name_of(0),
            index: 0,
            ports: PeerPorts::preferred(0),
            kubo_peer_id: "12D3KooWkubo".into(),
            cluster_peer_id: "12D3KooWcluster".into(),
            raft_join: false,
        });
        save_state(&paths, &state).expect("save");
        assert_eq!(load_state(&paths).expect("load"), Some(state.clone()));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(paths.state_file()).expect("read"))
                .expect("json");
        assert_eq!(json["peers"][0]["ports"]["kuboApi"], 5001);
        // A CRDT cluster's file has no raft fields, so files written before them still load.
        assert_eq!(json["peers"][0].get("raftJoin"), None);
        assert_eq!(json.get("raftInitPeerset"), None);
        // The raft peerset and a peer still to join survive a restart of the supervisor.
        state.raft_init_peerset = vec!["12D3KooWcluster".into()];
        let mut joiner = state.peers[0].clone();
        joiner.name = PeerRecord::name_of(3);
        joiner.index = 3;
        joiner.raft_join = true;
        state.peers.push(joiner);
        save_state(&paths, &state).expect("save");
        assert_eq!(load_state(&paths).expect("load"), Some(state.clone()));
        assert_eq!(
            state.peers[0].kubo_swarm_addr(),
            "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWkubo"
        );
    }

    #[test]
    fn a_corrupt_state_file_names_the_file_and_the_way_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = ClusterPaths::new(dir.path(), "demo").expect("paths");
        std::fs::create_dir_all(&paths.root).expect("mkdir");
        std::fs::write(paths.state_file(), "{").expect("write");
        let err = load_state(&paths).expect_err("corrupt").to_string();
        assert!(
            err.contains("state.json") && err.contains("--purge"),
            "{err}"
        );
    }

    #[test]
    fn secrets_are_created_private_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("cluster.secret");
        let first = secret_file(&file, || random_hex(32)).expect("create");
        assert_eq!(first.len(), 64);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = secret_file(&file, || Ok("other".into())).expect("read");
        assert_eq!(again, first);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = secret_file(&file, || Ok(String::new())).expect_err("too open");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn unreadable_pid_files_name_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("kubo.pid");
        assert_eq!(read_pid_file(&file), None);
        std::fs::write(&file, "12345").expect("write");
        assert_eq!(read_pid_file(&file), None);
        let record = PidRecord {
            pid: 42,
            start_time: 7,
            marker: "/x".into(),
        };
        write_pid_file(&file, &record).expect("write");
        assert_eq!(read_pid_file(&file), Some(record));
        remove_pid_file(&file).expect("remove");
        remove_pid_file(&file).expect("already gone");
    }
}
