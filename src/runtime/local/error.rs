//! The local runtime's error: one variant per thing that can go wrong, each carrying what a user
//! needs to act on it (which file, which peer, which daemon, which command and its output, which
//! spec field). The message printed by the CLI is the variant's `Display`: what failed, where,
//! and what to do.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use super::state::{DaemonKind, STATE_FORMAT};
use crate::api::FieldError;
use crate::probe::ProberError;

/// An error of the local runtime, worded for the user: what failed, where, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The spec file cannot be used (not YAML, not an IpfsCluster, invalid, unsupported here).
    #[error("{}: {reason}", file.display())]
    Spec { file: PathBuf, reason: String },

    /// One field of the spec holds a value that cannot be used (`spec.health.probeInterval`).
    #[error("{0}")]
    Field(FieldError),

    /// A cluster name that cannot name a state directory.
    #[error(
        "cluster name {name:?} is not a valid metadata.name: use lower-case letters, digits, \
         `-` and `.` (it names the state directory)"
    )]
    InvalidName { name: String },

    /// No cluster of that name was ever brought up under the state directory.
    #[error(
        "no local cluster named {name:?} in {}: `local status` lists the clusters there, \
         `local up -f FILE` starts one",
        state_root.display()
    )]
    UnknownCluster { name: String, state_root: PathBuf },

    /// Neither `XDG_DATA_HOME` nor `HOME` says where the state directory is.
    #[error(
        "neither XDG_DATA_HOME nor HOME is set: pass --state-dir to say where cluster state lives"
    )]
    NoStateRoot,

    /// An I/O error on a file or directory: `<action> <path>: <error>`.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    /// A JSON file of a repository or configuration that cannot be parsed.
    #[error("{} is not valid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },

    /// A configuration file lacks a value that the tool which wrote it always writes.
    #[error("{} has no {field}: {what} is damaged", file.display())]
    Damaged {
        file: PathBuf,
        field: &'static str,
        what: &'static str,
    },

    /// `state.json` cannot be understood.
    #[error(
        "{} is not a valid local cluster state ({source}): restore it or remove the directory \
         with `local down --purge`",
        file.display()
    )]
    CorruptState {
        file: PathBuf,
        source: serde_json::Error,
    },

    /// `state.json` was written by a version with another layout.
    #[error("{} has format {found}, this version reads format {STATE_FORMAT}", file.display())]
    StateFormat { file: PathBuf, found: u32 },

    /// A value that could not be written as JSON.
    #[error("serialising {what}: {source}")]
    Serialize {
        what: String,
        source: serde_json::Error,
    },

    /// A secret file (cluster secret, swarm key, dashboard token) other users may read.
    #[error(
        "{} is readable by other users (mode {mode:o}): run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    SecretExposed { path: PathBuf, mode: u32 },

    /// The dashboard token file holds no usable token.
    #[error(
        "{} holds no usable dashboard token (at least 16 characters): delete it to make a new one",
        path.display()
    )]
    BadToken { path: PathBuf },

    /// A daemon program (`ipfs`, `ipfs-cluster-service`) that is not on `PATH`.
    #[error("`{name}` was not found on PATH: {}", binary_hint(component, flag))]
    BinaryNotFound {
        name: &'static str,
        flag: &'static str,
        component: &'static str,
    },

    /// A daemon program given on the command line that cannot be run.
    #[error(
        "{} (given with {flag}) is not an executable file: {}",
        path.display(),
        binary_hint(component, flag)
    )]
    NotExecutable {
        path: PathBuf,
        flag: &'static str,
        component: &'static str,
    },

    /// A rendered configuration names addresses outside loopback (from `spec.kubo.config`).
    #[error(
        "refusing to start {what}: its configuration names addresses outside 127.0.0.0/8 ({}); \
         the local runtime runs private, loopback-only peers. Remove them from spec.kubo.config",
        addresses.join(", ")
    )]
    NotLoopback {
        what: String,
        addresses: Vec<String>,
    },

    /// No free loopback port for one of a peer's listeners.
    #[error(
        "{peer}: no free TCP port on 127.0.0.1 for the {port} (preferred {preferred} is held): \
         free some ports and retry"
    )]
    PortsExhausted {
        peer: String,
        port: &'static str,
        preferred: u16,
    },

    /// A tool run to its end (`ipfs init`, `ipfs-cluster-service init`) could not be started.
    #[error("running {command} failed: {source}")]
    ToolNotRun { command: String, source: io::Error },

    /// A tool run to its end exited with a failure.
    #[error("{command} failed ({status}): {output}")]
    Tool {
        command: String,
        status: ExitStatus,
        /// Its standard output, then its standard error.
        output: String,
    },

    /// A daemon could not be spawned.
    #[error("{peer}: starting {daemon} ({command}) failed: {source}")]
    Spawn {
        peer: String,
        daemon: DaemonKind,
        command: String,
        source: io::Error,
    },

    /// A daemon exited before the supervisor could learn its PID.
    #[error("{peer}: {daemon} exited before it had a PID")]
    NoPid { peer: String, daemon: DaemonKind },

    /// A daemon exited before its API answered.
    #[error("{peer}: {daemon} exited during start; last log lines:\n{log_tail}")]
    ExitedDuringStart {
        peer: String,
        daemon: DaemonKind,
        log_tail: String,
    },

    /// A daemon runs but its API did not answer in time.
    #[error(
        "{peer}: {daemon} (PID {pid}) did not answer within {}s; see {}",
        waited.as_secs(),
        log.display()
    )]
    StartTimeout {
        peer: String,
        daemon: DaemonKind,
        pid: i32,
        waited: Duration,
        log: PathBuf,
    },

    /// The peer's IPFS Cluster state was made for the other consensus.
    #[error(
        "{peer}: its IPFS Cluster configuration was made with spec.cluster.consensus {was}, not \
         {wanted}: spec.cluster.consensus is immutable (the crdt and raft states are \
         incompatible); bring up a new cluster under another metadata.name to switch"
    )]
    ConsensusChanged {
        peer: String,
        was: &'static str,
        wanted: &'static str,
    },

    /// Raft: a peer added by scale-up has no running member of the peerset to join.
    #[error(
        "{peer}: cannot join the raft peerset: no member peer runs (raft adds a peer through a \
         running member). Start the cluster at its former spec.replicas first"
    )]
    NoRaftMember { peer: String },

    /// Raft: a peer added by scale-up runs but did not join the peerset in time.
    #[error(
        "{peer}: did not join the raft peerset within {}s (a leader must accept it: is a \
         majority of the peers up?); see {}",
        waited.as_secs(),
        log.display()
    )]
    RaftJoinTimeout {
        peer: String,
        waited: Duration,
        log: PathBuf,
    },

    /// Another process holds the cluster's supervisor lock.
    #[error(
        "cluster {} is already supervised by {}: stop it first with `local down {name}`",
        root.display(),
        pid.map_or_else(|| "another process".to_owned(), |p| format!("PID {p}"))
    )]
    Locked {
        name: String,
        root: PathBuf,
        /// The supervisor's PID, when its lock file names a live process of ours.
        pid: Option<i32>,
    },

    /// The running supervisor did not stop after `local down` asked it to.
    #[error(
        "the supervisor (PID {pid}) did not stop in time: check its output, then retry \
         `local down {name}`"
    )]
    SupervisorStuck { name: String, pid: i32 },

    /// `--purge` without `--yes` and without a terminal to confirm on.
    #[error(
        "--purge deletes every repository, key and log of the cluster: pass --yes to confirm \
         when not on a terminal"
    )]
    PurgeNeedsYes,

    /// `--purge` was not confirmed.
    #[error("not purged: confirmation declined")]
    PurgeDeclined,

    /// `--isolated`: this process may not create a network namespace.
    #[error(
        "--isolated needs a new network namespace, which this process may not create (as uid \
         {uid}: network namespace: {net}; user + network namespace: {user}). Run as root, or \
         enable unprivileged user namespaces (e.g. `sysctl kernel.unprivileged_userns_clone=1` \
         or `sysctl kernel.apparmor_restrict_unprivileged_userns=0`), or run without \
         --isolated inside your own loopback-only namespace"
    )]
    NamespaceDenied {
        uid: u32,
        net: nix::Error,
        user: nix::Error,
    },

    /// `--isolated`: the `ip` program (to bring `lo` up) could not be run.
    #[error("--isolated: running `ip link set lo up` failed ({source}): install iproute2")]
    NoIpTool { source: io::Error },

    /// The dashboard's address cannot be bound.
    #[error(
        "binding the dashboard address {addr}: {source} (choose another with \
         --dashboard-listen, e.g. 127.0.0.1:0)"
    )]
    DashboardAddress { addr: SocketAddr, source: io::Error },

    /// An alert flag is wrong (`--alert-webhook`, `--alert-for`): the message names it.
    #[error("{0}")]
    Alerts(String),

    /// The HTTP client of the probes could not be built.
    #[error(transparent)]
    Prober(#[from] ProberError),

    /// An operating-system facility (async runtime, signal handler, terminal, listener) failed.
    #[error("{what}: {source}")]
    System { what: String, source: io::Error },
}

impl LocalError {
    /// An I/O error on a file or directory: `<action> <path>: <error>`.
    pub fn io(action: &'static str, path: &Path, source: io::Error) -> LocalError {
        LocalError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }

    /// An error of the spec file `file`.
    pub fn spec(file: &Path, reason: impl Into<String>) -> LocalError {
        LocalError::Spec {
            file: file.to_owned(),
            reason: reason.into(),
        }
    }

    /// An operating-system facility that failed while doing `what`.
    pub fn system(what: impl Into<String>, source: io::Error) -> LocalError {
        LocalError::System {
            what: what.into(),
            source,
        }
    }
}

/// How to get a daemon program: build it with the test world, or name it with a flag.
fn binary_hint(component: &str, flag: &str) -> String {
    format!(
        "build it with `scripts/test-world.sh build {component}` and put \
         `$(scripts/test-world.sh bindir {component})` on PATH, or pass {flag} PATH"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_where_and_what_to_do() {
        let ports = LocalError::PortsExhausted {
            peer: "peer-1".into(),
            port: "Kubo RPC API",
            preferred: 5011,
        }
        .to_string();
        assert!(
            ports.starts_with("peer-1: ") && ports.contains("Kubo RPC API (preferred 5011"),
            "{ports}"
        );
        let unknown = LocalError::UnknownCluster {
            name: "demo".into(),
            state_root: PathBuf::from("/state"),
        }
        .to_string();
        assert!(
            unknown.contains("\"demo\" in /state") && unknown.contains("local status"),
            "{unknown}"
        );
        let io = LocalError::io(
            "reading",
            Path::new("/state/demo/state.json"),
            io::Error::from(io::ErrorKind::PermissionDenied),
        )
        .to_string();
        assert!(io.starts_with("reading /state/demo/state.json: "), "{io}");
        let start = LocalError::StartTimeout {
            peer: "peer-0".into(),
            daemon: DaemonKind::Cluster,
            pid: 42,
            waited: Duration::from_secs(90),
            log: PathBuf::from("/state/demo/peer-0/logs/cluster.log"),
        }
        .to_string();
        assert_eq!(
            start,
            "peer-0: IPFS Cluster (PID 42) did not answer within 90s; see \
             /state/demo/peer-0/logs/cluster.log"
        );
    }

    #[test]
    fn raft_errors_name_the_peer_and_the_field_to_change() {
        let none = LocalError::NoRaftMember {
            peer: "peer-3".into(),
        }
        .to_string();
        assert!(
            none.starts_with("peer-3: cannot join the raft peerset")
                && none.contains("spec.replicas"),
            "{none}"
        );
        let join = LocalError::RaftJoinTimeout {
            peer: "peer-4".into(),
            waited: Duration::from_secs(90),
            log: PathBuf::from("/state/demo/peer-4/logs/cluster.log"),
        }
        .to_string();
        assert!(
            join.starts_with("peer-4: did not join the raft peerset within 90s")
                && join.ends_with("see /state/demo/peer-4/logs/cluster.log"),
            "{join}"
        );
    }
}
