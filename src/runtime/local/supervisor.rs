//! The local supervisor: `local up` creates, starts, adopts and heals the peers of one cluster and
//! stays in the foreground; `local down` stops what it started.
//!
//! - Daemons write standard output and error straight to `peer-N/logs/<daemon>.log` (appending),
//!   so that they outlive a crashed supervisor (no pipe to break); the supervisor rotates the
//!   files by copy-and-truncate when they grow past [`LOG_ROTATE_BYTES`].
//! - Each daemon this tool starts gets a PID file recording its PID, start time and repository;
//!   only a live process matching all three is ever signalled or adopted.
//! - A child's exit is seen at once (a task waits on it) and triggers a probe round; the health
//!   engine ([`super::heal`]) decides what to restart, one peer at a time, within budget.
//! - SIGINT/SIGTERM to the supervisor stops every daemon gracefully; SIGKILL leaves them running
//!   and the next `local up` adopts them.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::config::{ClusterInputs, OtherPeer, init_profiles, render_cluster, render_kubo};
use super::heal::{Healer, policy_from_spec};
use super::ports::{self, Loopback, PortSource};
use super::process::{self, Ownership, PidRecord, ownership};
use super::state::{
    self, ClusterPaths, ClusterState, DaemonKind, PeerPaths, PeerRecord, load_state, random_hex,
    read_pid_file, remove_pid_file, save_state, swarm_key_text, write_atomic, write_pid_file,
};
use super::status::{LocalStatus, rows, targets};
use super::{Binaries, LocalError, now_millis};
use crate::api::{Consensus, IpfsCluster, IpfsClusterSpec};
use crate::dashboard::{ActionKind, ActionRequest, Daemon, HOST_SAMPLE_INTERVAL, Publisher};
use crate::probe::report::{PeerReport, ProcessState};
use crate::probe::{DEFAULT_CONCURRENCY, Prober};
use crate::reconcile::{Action, RestartScope};

/// A log file larger than this is rotated (copied to `.1`, older ones shifted, then truncated).
pub const LOG_ROTATE_BYTES: u64 = 10 * 1024 * 1024;
/// Rotated log files kept per daemon.
pub const LOG_KEEP: usize = 3;
/// How long a starting daemon has to answer its API.
pub const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Options of `local up`.
#[derive(Debug)]
pub struct UpOptions {
    pub spec_file: PathBuf,
    pub state_root: PathBuf,
    pub binaries: Binaries,
    /// SIGTERM to SIGKILL.
    pub stop_grace: Duration,
    /// The dashboard's listener, bound before entering an isolated namespace (the dashboard is a
    /// later piece: held here so that the address is reserved and stays on the host).
    pub dashboard: Option<std::net::TcpListener>,
    /// Return once every peer is up instead of supervising in the foreground.
    pub detach_after_start: bool,
}

/// Options of `local down`.
#[derive(Debug)]
pub struct DownOptions {
    pub name: String,
    pub state_root: PathBuf,
    pub stop_grace: Duration,
    pub purge: bool,
    pub yes: bool,
}

/// Reads an IpfsCluster YAML file and checks its spec as the API server would.
pub fn read_spec(file: &Path) -> Result<(String, IpfsClusterSpec), LocalError> {
    let text = std::fs::read_to_string(file).map_err(|e| LocalError::io("reading", file, e))?;
    let raw: Value = serde_yaml::from_str(&text)
        .map_err(|e| LocalError::new(format!("{} is not valid YAML: {e}", file.display())))?;
    if raw.get("kind").and_then(Value::as_str) != Some("IpfsCluster") {
        return Err(LocalError::new(format!(
            "{}: `kind` must be IpfsCluster (apiVersion ipfskit.io/v1alpha1)",
            file.display()
        )));
    }
    let cluster: IpfsCluster = serde_json::from_value(raw).map_err(|e| {
        LocalError::new(format!("{}: not a valid IpfsCluster: {e}", file.display()))
    })?;
    let name =
        cluster.metadata.name.clone().ok_or_else(|| {
            LocalError::new(format!("{}: metadata.name is required", file.display()))
        })?;
    state::check_name(&name)?;
    cluster
        .spec
        .validate()
        .map_err(|e| LocalError::new(format!("{}: {e}", file.display())))?;
    if cluster.spec.cluster.consensus == Consensus::Raft {
        return Err(LocalError::new(format!(
            "{}: spec.cluster.consensus raft is not supported by the local runtime yet: use crdt",
            file.display()
        )));
    }
    if cluster.spec.cluster.secret_ref.is_some() {
        warn!(
            "spec.cluster.secretRef names a Kubernetes Secret; the local runtime generates and \
             keeps its own cluster secret instead"
        );
    }
    Ok((name, cluster.spec))
}

/// The supervisor's lock: held while `local up` runs, released when it exits or dies.
struct SupervisorLock {
    _lock: Flock<std::fs::File>,
}

fn take_lock(paths: &ClusterPaths) -> Result<SupervisorLock, LocalError> {
    let file = paths.lock_file();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&file)
        .map_err(|e| LocalError::io("opening", &file, e))?;
    let mut lock = Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, _)| {
        let holder = running_supervisor(paths)
            .map_or_else(|| "another process".to_owned(), |p| format!("PID {p}"));
        LocalError::new(format!(
            "cluster {} is already supervised by {holder}: stop it first with `local down {}`",
            paths.root.display(),
            paths
                .root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ))
    })?;
    let me = process::record_for(std::process::id() as i32, Path::new("local"));
    let json = serde_json::to_vec(&me).unwrap_or_default();
    use std::io::{Seek, Write};
    lock.set_len(0)
        .and_then(|()| lock.rewind())
        .and_then(|()| lock.write_all(&json))
        .map_err(|e| LocalError::io("writing", &file, e))?;
    Ok(SupervisorLock { _lock: lock })
}

/// The PID of the supervisor running this cluster, if one holds the lock.
pub fn running_supervisor(paths: &ClusterPaths) -> Option<i32> {
    let file = std::fs::File::open(paths.lock_file()).ok()?;
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_unlocked_again_on_drop) => None,
        Err(_) => {
            let record = read_pid_file(&paths.lock_file())?;
            (ownership(&record) == Ownership::Ours).then_some(record.pid)
        }
    }
}

/// Something a watch task saw.
#[derive(Debug)]
enum Event {
    Exited {
        peer: String,
        kind: DaemonKind,
        pid: i32,
        how: String,
    },
}

/// A daemon running under this supervisor.
#[derive(Debug)]
struct Running {
    record: PidRecord,
}

/// The status the supervisor publishes after every round: the seam for the in-process dashboard.
pub type SharedStatus = Arc<RwLock<LocalStatus>>;

struct Supervisor {
    paths: ClusterPaths,
    binaries: Binaries,
    state: ClusterState,
    secret: String,
    swarm_key: String,
    stop_grace: Duration,
    running: BTreeMap<(String, DaemonKind), Running>,
    last_exit: BTreeMap<String, String>,
    restarts: BTreeMap<String, u32>,
    events: mpsc::UnboundedSender<Event>,
    prober: Prober,
    healer: Healer,
    status: SharedStatus,
    /// The in-process dashboard's side, when it is served.
    publisher: Option<Publisher>,
}

/// `local up`: bring the cluster declared in the spec file to its desired state, then supervise
/// it in the foreground until SIGINT/SIGTERM (which stop the daemons).
pub async fn up(options: UpOptions) -> Result<(), LocalError> {
    let (name, spec) = read_spec(&options.spec_file)?;
    let paths = ClusterPaths::new(&options.state_root, &name)?;
    std::fs::create_dir_all(&paths.root).map_err(|e| LocalError::io("creating", &paths.root, e))?;
    let _lock = take_lock(&paths)?;
    // A snapshot left by an earlier supervisor describes processes that may be gone.
    let _ = std::fs::remove_file(paths.status_file());
    let state = match load_state(&paths)? {
        Some(mut old) => {
            if old.spec != spec {
                info!(cluster = %name, "the spec changed since the last `local up`: reconciling");
                old.spec = spec.clone();
                old.generation += 1;
            }
            old
        }
        None => ClusterState::new(&name, spec.clone()),
    };
    let secret = state::secret_file(&paths.secret_file(), || random_hex(32))?;
    let swarm_key = state::secret_file(&paths.swarm_key_file(), || {
        random_hex(32).map(|h| swarm_key_text(&h))
    })?;
    let policy = policy_from_spec(&state.spec, state.generation)?;
    let prober = Prober::new(policy.probe_timeout).map_err(|e| LocalError::new(e.to_string()))?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut sup = Supervisor {
        paths,
        binaries: options.binaries,
        state,
        secret: secret.trim().to_owned(),
        swarm_key,
        stop_grace: options.stop_grace,
        running: BTreeMap::new(),
        last_exit: BTreeMap::new(),
        restarts: BTreeMap::new(),
        events: tx,
        prober,
        healer: Healer::new(policy),
        status: Arc::new(RwLock::new(LocalStatus::default())),
        publisher: None,
    };
    let mut requests = None;
    if let Some(listener) = options.dashboard {
        requests = Some(sup.serve_dashboard(listener)?);
    }
    // SIGINT/SIGTERM while the peers start: stop what was started and leave cleanly.
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| LocalError::new(format!("installing the SIGTERM handler: {e}")))?;
    let converged = tokio::select! {
        result = sup.converge() => Some(result),
        _ = tokio::signal::ctrl_c() => None,
        _ = sigterm.recv() => None,
    };
    match converged {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            error!("{e}");
            sup.stop_all().await;
            return Err(e);
        }
        None => {
            info!(
                "interrupted while starting: stopping every daemon of {}",
                sup.state.name
            );
            sup.stop_all().await;
            save_state(&sup.paths, &sup.state)?;
            return Ok(());
        }
    }
    sup.round().await;
    if options.detach_after_start {
        return Ok(());
    }
    info!(
        cluster = %sup.state.name,
        "supervising {} peers; logs in {}/peer-*/logs; stop with Ctrl-C or `local down {}`",
        sup.state.peers.len(),
        sup.paths.root.display(),
        sup.state.name
    );
    sup.supervise(&mut rx, &mut requests, &mut sigterm).await
}

impl Supervisor {
    fn peer_paths(&self, peer: &str) -> PeerPaths {
        self.paths.peer(peer)
    }

    /// Brings the peers to the spec: scale down, create and start what is missing, adopt what
    /// runs, restart peers whose configuration changed (one at a time).
    async fn converge(&mut self) -> Result<(), LocalError> {
        let replicas = u32::try_from(self.state.spec.replicas).unwrap_or(1);
        // Adopt daemons that still run and answer; stop ours that run but do not answer.
        let existing: Vec<String> = self.state.peers.iter().map(|p| p.name.clone()).collect();
        for name in &existing {
            for kind in [DaemonKind::Kubo, DaemonKind::Cluster] {
                if self.adopt_or_clear(name, kind) && !self.answers(name, kind).await {
                    warn!(peer = %name, "{kind} runs but does not answer: restarting it");
                    self.stop(name, kind).await;
                }
            }
        }
        // Scale down: leave the cluster first (`DELETE /peers/{id}` on a remaining peer).
        let extra: Vec<PeerRecord> = self
            .state
            .peers
            .iter()
            .filter(|p| p.index >= replicas)
            .cloned()
            .collect();
        for peer in extra.iter().rev() {
            self.remove_peer(peer).await;
            save_state(&self.paths, &self.state)?;
        }
        // Create what is missing (identities first: every config names every peer).
        for index in 0..replicas {
            if self.state.peers.iter().all(|p| p.index != index) {
                let record = self.init_peer(index).await?;
                self.state.peers.push(record);
                self.state.peers.sort_by_key(|p| p.index);
            }
        }
        save_state(&self.paths, &self.state)?;
        let names: Vec<String> = self.state.peers.iter().map(|p| p.name.clone()).collect();
        // Start what does not run; restart running peers whose configuration changed.
        let mut changed = Vec::new();
        for name in &names {
            let (kubo_changed, cluster_changed) = self.prepare(name)?;
            let kubo_running = self.running.contains_key(&(name.clone(), DaemonKind::Kubo));
            let cluster_running = self
                .running
                .contains_key(&(name.clone(), DaemonKind::Cluster));
            if !kubo_running || !cluster_running {
                self.start_peer(name, !kubo_running, !cluster_running).await;
            }
            if (kubo_changed && kubo_running) || (cluster_changed && cluster_running) {
                changed.push((name.clone(), kubo_changed && kubo_running, cluster_changed));
            }
        }
        for (name, kubo, cluster) in changed {
            info!(peer = %name, "configuration changed: restarting the peer");
            if kubo {
                self.stop(&name, DaemonKind::Cluster).await;
                self.stop(&name, DaemonKind::Kubo).await;
                self.start_peer(&name, true, true).await;
            } else if cluster {
                self.stop(&name, DaemonKind::Cluster).await;
                self.start_peer(&name, false, true).await;
            }
        }
        save_state(&self.paths, &self.state)?;
        Ok(())
    }

    /// Creates peer `index`: Kubo repository and IPFS Cluster configuration with their
    /// identities, ports chosen.
    async fn init_peer(&mut self, index: u32) -> Result<PeerRecord, LocalError> {
        let name = PeerRecord::name_of(index);
        let pp = self.peer_paths(&name);
        info!(peer = %name, "initialising the Kubo repository and IPFS Cluster identity");
        for dir in [pp.dir.clone(), pp.logs()] {
            std::fs::create_dir_all(&dir).map_err(|e| LocalError::io("creating", &dir, e))?;
        }
        if !pp.ipfs().join("config").is_file() {
            let mut cmd = tokio::process::Command::new(&self.binaries.ipfs);
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
            let mut cmd = tokio::process::Command::new(&self.binaries.cluster);
            cmd.env("IPFS_CLUSTER_PATH", &cluster_dir)
                .arg("--config")
                .arg(&cluster_dir)
                .args(["init", "--consensus", "crdt", "--force"]);
            run_tool(cmd, &format!("`ipfs-cluster-service init` for {name}")).await?;
        }
        let kubo_config = read_json(&pp.ipfs().join("config"))?;
        let kubo_peer_id = kubo_config["Identity"]["PeerID"]
            .as_str()
            .ok_or_else(|| {
                LocalError::new(format!(
                    "{} has no Identity.PeerID: the repository is damaged",
                    pp.ipfs().join("config").display()
                ))
            })?
            .to_owned();
        let identity = read_json(&cluster_dir.join("identity.json"))?;
        let cluster_peer_id = identity["id"]
            .as_str()
            .ok_or_else(|| {
                LocalError::new(format!(
                    "{} has no id: the cluster identity is damaged",
                    cluster_dir.join("identity.json").display()
                ))
            })?
            .to_owned();
        let mut taken: BTreeSet<u16> = self
            .state
            .peers
            .iter()
            .flat_map(|p| p.ports.named().map(|(_, port)| port))
            .collect();
        let (ports, moved) = ports::choose(
            ports::PeerPorts::preferred(index),
            &mut taken,
            &mut Loopback,
        )
        .map_err(|e| LocalError::new(format!("{name}: {e}")))?;
        for m in moved {
            info!(peer = %name, "{} port {} is in use: using {} instead", m.what, m.from, m.to);
        }
        Ok(PeerRecord {
            name,
            index,
            ports,
            kubo_peer_id,
            cluster_peer_id,
        })
    }

    /// Looks at a daemon's PID file: ours and alive -> tracked as running (true); gone -> file
    /// removed; someone else's -> left alone, file removed (false).
    fn adopt_or_clear(&mut self, peer: &str, kind: DaemonKind) -> bool {
        let key = (peer.to_owned(), kind);
        if self.running.contains_key(&key) {
            return true;
        }
        let file = self.peer_paths(peer).pid_file(kind);
        let Some(record) = read_pid_file(&file) else {
            let _ = remove_pid_file(&file);
            return false;
        };
        match ownership(&record) {
            Ownership::Ours => {
                info!(peer, pid = record.pid, "adopting the running {kind} daemon");
                self.watch_adopted(peer, kind, record.pid);
                self.running.insert(key, Running { record });
                true
            }
            Ownership::Gone => {
                let _ = remove_pid_file(&file);
                false
            }
            Ownership::Foreign(why) => {
                warn!(
                    peer,
                    "{} names a process that is not ours ({why}): leaving it alone",
                    file.display()
                );
                let _ = remove_pid_file(&file);
                false
            }
        }
    }

    /// Whether a daemon's API answers with the identity we expect.
    async fn answers(&self, peer: &str, kind: DaemonKind) -> bool {
        let Some(record) = self.state.peer(peer) else {
            return false;
        };
        let targets = targets(&self.state, &|_, _| ProcessState::Running);
        let Some(target) = targets.iter().find(|t| t.peer == peer) else {
            return false;
        };
        match kind {
            DaemonKind::Kubo => self
                .prober
                .kubo(&target.kubo)
                .await
                .is_ok_and(|k| k.peer_id == record.kubo_peer_id),
            DaemonKind::Cluster => self
                .prober
                .cluster(&target.cluster)
                .await
                .is_ok_and(|c| c.peer_id == record.cluster_peer_id),
        }
    }

    /// Re-chooses the ports of daemons that do not run (when held by someone else), renders both
    /// configurations and writes them. Returns whether each changed in a way that needs a
    /// restart of a running daemon.
    fn prepare(&mut self, peer: &str) -> Result<(bool, bool), LocalError> {
        let Some(index) = self.state.peers.iter().position(|p| p.name == peer) else {
            return Ok((false, false));
        };
        let kubo_running = self
            .running
            .contains_key(&(peer.to_owned(), DaemonKind::Kubo));
        let cluster_running = self
            .running
            .contains_key(&(peer.to_owned(), DaemonKind::Cluster));
        let record = self.state.peers[index].clone();
        let mut keep: BTreeSet<u16> = BTreeSet::new();
        if kubo_running {
            keep.extend(record.ports.kubo());
        }
        if cluster_running {
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
        let (new_ports, moved) = ports::choose(record.ports, &mut taken, &mut source)
            .map_err(|e| LocalError::new(format!("{peer}: {e}")))?;
        for m in moved {
            info!(
                peer,
                "{} port {} is in use: using {} instead", m.what, m.from, m.to
            );
        }
        self.state.peers[index].ports = new_ports;
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
        let trusted: Vec<String> = self
            .state
            .peers
            .iter()
            .map(|p| p.cluster_peer_id.clone())
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
            trusted_peers: &trusted,
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

    /// Starts the given daemons of a peer (Kubo first, waiting for its API; then IPFS Cluster).
    /// A daemon that fails to start is logged and left to the health engine.
    async fn start_peer(&mut self, peer: &str, kubo: bool, cluster: bool) {
        if let Err(e) = self.prepare(peer) {
            error!(peer, "{e}");
            self.last_exit.insert(peer.to_owned(), e.to_string());
            return;
        }
        if kubo && let Err(e) = self.start(peer, DaemonKind::Kubo).await {
            error!(peer, "{e}");
            self.last_exit.insert(peer.to_owned(), e.to_string());
            return;
        }
        if cluster && let Err(e) = self.start(peer, DaemonKind::Cluster).await {
            error!(peer, "{e}");
            self.last_exit.insert(peer.to_owned(), e.to_string());
        }
    }

    /// Spawns one daemon with its output appended to its log file, records its PID file, watches
    /// it, and waits until its API answers.
    async fn start(&mut self, peer: &str, kind: DaemonKind) -> Result<(), LocalError> {
        let pp = self.peer_paths(peer);
        let logs = pp.logs();
        std::fs::create_dir_all(&logs).map_err(|e| LocalError::io("creating", &logs, e))?;
        let log = pp.log(kind);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| LocalError::io("opening", &log, e))?;
        let err = out
            .try_clone()
            .map_err(|e| LocalError::io("opening", &log, e))?;
        let mut cmd = match kind {
            DaemonKind::Kubo => {
                let mut c = tokio::process::Command::new(&self.binaries.ipfs);
                c.env("IPFS_PATH", pp.ipfs())
                    .env("IPFS_TELEMETRY", "off")
                    .arg("--repo-dir")
                    .arg(pp.ipfs())
                    .args(["daemon", "--migrate=false"]);
                c
            }
            DaemonKind::Cluster => {
                let mut c = tokio::process::Command::new(&self.binaries.cluster);
                c.env("IPFS_CLUSTER_PATH", pp.cluster())
                    .arg("--config")
                    .arg(pp.cluster())
                    .arg("daemon");
                c
            }
        };
        // Own process group: a Ctrl-C in the terminal reaches the supervisor, which stops the
        // daemons in order, not the daemons themselves.
        cmd.stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(false);
        info!(peer, "starting {kind} (log {})", log.display());
        let mut child = cmd.spawn().map_err(|e| {
            LocalError::new(format!("{peer}: starting {kind} ({cmd:?}) failed: {e}"))
        })?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| LocalError::new(format!("{peer}: {kind} exited before it had a PID")))?;
        let record = process::record_for(pid, &pp.marker(kind));
        write_pid_file(&pp.pid_file(kind), &record)?;
        self.running
            .insert((peer.to_owned(), kind), Running { record });
        let tx = self.events.clone();
        let name = peer.to_owned();
        tokio::spawn(async move {
            let how = match child.wait().await {
                Ok(status) => status.to_string(),
                Err(e) => format!("could not be waited for: {e}"),
            };
            let _ = tx.send(Event::Exited {
                peer: name,
                kind,
                pid,
                how,
            });
        });
        // Wait for the API, failing early if the process exits.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.answers(peer, kind).await {
                info!(peer, pid, "{kind} is up");
                return Ok(());
            }
            if !process::is_alive(pid) {
                self.running.remove(&(peer.to_owned(), kind));
                let _ = remove_pid_file(&pp.pid_file(kind));
                return Err(LocalError::new(format!(
                    "{peer}: {kind} exited during start; last log lines:\n{}",
                    log_tail(&log, 15)
                )));
            }
            if Instant::now() >= deadline {
                return Err(LocalError::new(format!(
                    "{peer}: {kind} (PID {pid}) did not answer within {}s; see {}",
                    START_TIMEOUT.as_secs(),
                    log.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Watches a daemon that is not our child (adopted): polls /proc and reports its exit.
    fn watch_adopted(&self, peer: &str, kind: DaemonKind, pid: i32) {
        let tx = self.events.clone();
        let name = peer.to_owned();
        tokio::spawn(async move {
            while process::is_alive(pid) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let _ = tx.send(Event::Exited {
                peer: name,
                kind,
                pid,
                how: "exited (adopted process, status unknown)".into(),
            });
        });
    }

    /// Stops one daemon we track: SIGTERM, grace, SIGKILL. Only a process whose PID record still
    /// matches is signalled.
    async fn stop(&mut self, peer: &str, kind: DaemonKind) {
        let Some(run) = self.running.remove(&(peer.to_owned(), kind)) else {
            return;
        };
        let file = self.peer_paths(peer).pid_file(kind);
        info!(peer, pid = run.record.pid, "stopping {kind}");
        stop_process(&run.record, self.stop_grace).await;
        let _ = remove_pid_file(&file);
    }

    /// Stops every daemon, IPFS Cluster before Kubo.
    /// Stops every daemon, IPFS Cluster before Kubo: the tracked ones, and any other that a PID
    /// file of ours names (a start interrupted before it was tracked).
    async fn stop_all(&mut self) {
        let names: Vec<String> = self.state.peers.iter().map(|p| p.name.clone()).collect();
        for kind in [DaemonKind::Cluster, DaemonKind::Kubo] {
            for name in &names {
                self.stop(name, kind).await;
                let file = self.peer_paths(name).pid_file(kind);
                if let Some(record) = read_pid_file(&file) {
                    stop_process(&record, self.stop_grace).await;
                    let _ = remove_pid_file(&file);
                }
            }
        }
    }

    /// Scale down: removes a peer from the cluster through a remaining peer's REST API, then
    /// stops its daemons. Its data stays on disk.
    async fn remove_peer(&mut self, peer: &PeerRecord) {
        let remaining = self
            .state
            .peers
            .iter()
            .find(|p| {
                p.name != peer.name
                    && self
                        .running
                        .contains_key(&(p.name.clone(), DaemonKind::Cluster))
            })
            .cloned();
        if let Some(via) = remaining {
            let url = format!("{}/peers/{}", via.cluster_api_url(), peer.cluster_peer_id);
            info!(peer = %peer.name, via = %via.name, "removing the peer from the cluster (DELETE /peers/{})", peer.cluster_peer_id);
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .no_proxy()
                .build();
            match client {
                Ok(client) => match client.delete(&url).send().await {
                    Ok(resp) if resp.status().is_success() => {}
                    Ok(resp) => warn!(peer = %peer.name, "DELETE {url}: {}", resp.status()),
                    Err(e) => warn!(peer = %peer.name, "DELETE {url}: {e}"),
                },
                Err(e) => warn!("building an HTTP client: {e}"),
            }
        }
        self.stop(&peer.name, DaemonKind::Cluster).await;
        self.stop(&peer.name, DaemonKind::Kubo).await;
        self.state.peers.retain(|p| p.name != peer.name);
        self.restarts.remove(&peer.name);
        info!(peer = %peer.name, "removed; its data stays in {}", self.peer_paths(&peer.name).dir.display());
    }

    fn process_state(&self, peer: &str, kind: DaemonKind) -> ProcessState {
        if self.running.contains_key(&(peer.to_owned(), kind)) {
            ProcessState::Running
        } else {
            ProcessState::Exited
        }
    }

    /// One probe round: probe, assess, carry out the actions, publish the status.
    async fn round(&mut self) {
        let targets = targets(&self.state, &|p, k| self.process_state(p, k));
        let reports: Vec<PeerReport> = self.prober.round(&targets, DEFAULT_CONCURRENCY).await;
        let now = now_millis();
        let assessment = self.healer.assess(&reports, now);
        if let Some(why) = &assessment.decision.report_only
            && !assessment.decision.withheld.is_empty()
        {
            info!("{why}; would {}", assessment.decision.summary());
        }
        for action in assessment.decision.actions.clone() {
            self.carry_out(action).await;
        }
        // Published after the actions, so that it shows the new PIDs and restart counts.
        let running: Vec<(String, DaemonKind, i32)> = self
            .running
            .iter()
            .map(|((p, k), r)| (p.clone(), *k, r.record.pid))
            .collect();
        let pid_of = |peer: &str, kind: DaemonKind| {
            running
                .iter()
                .find(|(p, k, _)| p == peer && *k == kind)
                .map(|(_, _, pid)| *pid)
        };
        let restarts = self.restarts.clone();
        let peers = rows(
            &self.state,
            &reports,
            &assessment,
            &|p| (pid_of(p, DaemonKind::Kubo), pid_of(p, DaemonKind::Cluster)),
            &|p| restarts.get(p).copied().unwrap_or(0),
        );
        let snapshot = LocalStatus {
            name: self.state.name.clone(),
            generation: self.state.generation,
            replicas: self.state.spec.replicas,
            supervisor_pid: Some(std::process::id() as i32),
            health_score: Some(assessment.health.score),
            health: Some(assessment.health.level.as_str().to_owned()),
            reason: Some(assessment.health.reason.clone()),
            peers: peers
                .into_iter()
                .map(|mut row| {
                    if row.last_error.is_none() {
                        row.last_error = self.last_exit.get(&row.name).cloned();
                    }
                    row
                })
                .collect(),
            healing: self.healer.history().log.entries().cloned().collect(),
        };
        if let Ok(json) = serde_json::to_vec_pretty(&snapshot)
            && let Err(e) = write_atomic(&self.paths.status_file(), &json, 0o644)
        {
            warn!("{e}");
        }
        if let Some(publisher) = &self.publisher {
            publisher.publish(super::dashboard::snapshot(
                &snapshot,
                self.state.spec.paused,
            ));
        }
        if let Ok(mut shared) = self.status.write() {
            *shared = snapshot;
        }
    }

    /// Serves the in-process dashboard on `listener` (bound before any namespace change); returns
    /// the channel of its action requests.
    fn serve_dashboard(
        &mut self,
        listener: std::net::TcpListener,
    ) -> Result<mpsc::Receiver<ActionRequest>, LocalError> {
        let token = super::dashboard::token(&self.paths.root)?;
        let (dashboard, publisher, requests) = crate::dashboard::Dashboard::new(Some(token), false);
        let dashboard = dashboard.with_logs(std::sync::Arc::new(super::dashboard::LocalLogs::new(
            self.paths.clone(),
        )));
        tokio::spawn(
            publisher
                .host_sampler(self.paths.root.clone())
                .run(HOST_SAMPLE_INTERVAL),
        );
        let addr = listener
            .local_addr()
            .map_err(|e| LocalError::new(format!("the dashboard listener: {e}")))?;
        listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(listener))
            .map(|listener| {
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, crate::dashboard::router(dashboard)).await
                    {
                        warn!("the dashboard stopped: {e}");
                    }
                })
            })
            .map_err(|e| LocalError::new(format!("serving the dashboard on {addr}: {e}")))?;
        info!(
            "dashboard on http://{addr}/ (API under /api/dashboard, described at /openapi.json); changes need the bearer token in {}",
            self.paths.root.join(super::dashboard::TOKEN_FILE).display()
        );
        self.publisher = Some(publisher);
        Ok(requests)
    }

    /// Carries out a request from the dashboard, then probes so that its status shows the result.
    async fn carry_out_request(&mut self, request: ActionRequest) {
        info!(
            id = request.id,
            action = ?request.action,
            peer = request.peer.as_deref().unwrap_or("<all>"),
            "dashboard request"
        );
        match request.action {
            ActionKind::Probe => {}
            ActionKind::Restart => {
                let names: Vec<String> = match &request.peer {
                    Some(peer) => vec![peer.clone()],
                    None => self.state.peers.iter().map(|p| p.name.clone()).collect(),
                };
                let (kubo, cluster) = match request.daemon {
                    Some(Daemon::Ipfs) => (true, false),
                    Some(Daemon::Cluster) => (false, true),
                    None => (true, true),
                };
                // One peer at a time, like every restart of this supervisor.
                for name in names {
                    if self.state.peers.iter().all(|p| p.name != name) {
                        warn!(id = request.id, peer = %name, "no such peer: request ignored");
                        continue;
                    }
                    if cluster {
                        self.stop(&name, DaemonKind::Cluster).await;
                    }
                    if kubo {
                        self.stop(&name, DaemonKind::Kubo).await;
                    }
                    self.start_peer(&name, kubo, cluster).await;
                }
            }
        }
        self.round().await;
    }

    /// Carries out one healing action.
    async fn carry_out(&mut self, action: Action) {
        match action {
            Action::SwarmConnect {
                peer,
                targets,
                reason,
            } => {
                info!(peer, "healing: swarm/connect ({reason})");
                let Some(from) = self.state.peer(&peer).cloned() else {
                    return;
                };
                for t in targets {
                    let Some(to) = self.state.peer(&t.peer) else {
                        continue;
                    };
                    let addr = format!(
                        "/ip4/127.0.0.1/tcp/{}/p2p/{}",
                        to.ports.kubo_swarm, t.peer_id
                    );
                    let url = format!("{}/api/v0/swarm/connect", from.kubo_api_url());
                    let client = reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .no_proxy()
                        .build();
                    if let Ok(client) = client
                        && let Err(e) = client.post(&url).query(&[("arg", &addr)]).send().await
                    {
                        warn!(peer, "swarm/connect {addr}: {e}");
                    }
                }
            }
            Action::RestartPeer {
                peer,
                scope,
                reason,
            } => {
                info!(
                    peer,
                    scope = scope.label(),
                    "healing: restarting ({reason})"
                );
                *self.restarts.entry(peer.clone()).or_default() += 1;
                self.last_exit
                    .insert(peer.clone(), format!("restarted: {reason}"));
                let (kubo, cluster) = match scope {
                    RestartScope::Kubo => (true, false),
                    RestartScope::Cluster => (false, true),
                    RestartScope::Both => (true, true),
                };
                if cluster {
                    self.stop(&peer, DaemonKind::Cluster).await;
                }
                if kubo {
                    self.stop(&peer, DaemonKind::Kubo).await;
                }
                self.start_peer(&peer, kubo, cluster).await;
            }
        }
    }

    /// Rotates the daemons' log files that grew too large.
    fn rotate_logs(&self) {
        for p in &self.state.peers {
            for kind in [DaemonKind::Kubo, DaemonKind::Cluster] {
                let log = self.peer_paths(&p.name).log(kind);
                if let Err(e) = rotate_log(&log, LOG_ROTATE_BYTES, LOG_KEEP) {
                    warn!("rotating {}: {e}", log.display());
                }
            }
        }
    }

    /// The foreground loop: exits are handled at once, probes every `probeInterval`.
    async fn supervise(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Event>,
        requests: &mut Option<mpsc::Receiver<ActionRequest>>,
        sigterm: &mut tokio::signal::unix::Signal,
    ) -> Result<(), LocalError> {
        let mut interval = tokio::time::interval(self.healer.policy.probe_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = sigterm.recv() => break,
                Some(event) = rx.recv() => {
                    let Event::Exited { peer, kind, pid, how } = event;
                    let key = (peer.clone(), kind);
                    if self.running.get(&key).is_some_and(|r| r.record.pid == pid) {
                        warn!(peer, pid, "{kind} {how}");
                        self.running.remove(&key);
                        let _ = remove_pid_file(&self.peer_paths(&peer).pid_file(kind));
                        self.last_exit.insert(peer.clone(), format!("{kind} {how}"));
                        self.round().await;
                    }
                }
                Some(request) = async {
                    match requests.as_mut() {
                        Some(r) => r.recv().await,
                        None => std::future::pending().await,
                    }
                } => self.carry_out_request(request).await,
                _ = interval.tick() => {
                    self.rotate_logs();
                    self.round().await;
                }
            }
        }
        info!("stopping every daemon of {}", self.state.name);
        self.stop_all().await;
        save_state(&self.paths, &self.state)?;
        Ok(())
    }
}

/// Settings that name the other peers: they change when peers come and go, and a running daemon
/// needs no restart for them (new peers dial it).
const KUBO_HINTS: &[&str] = &["Peering"];
const CLUSTER_HINTS: &[&str] = &["cluster.peer_addresses", "consensus.crdt.trusted_peers"];

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

/// SIGTERM, up to `grace`, then SIGKILL; only if the record still names our live process.
pub async fn stop_process(record: &PidRecord, grace: Duration) {
    if ownership(record) != Ownership::Ours {
        return;
    }
    let pid = Pid::from_raw(record.pid);
    let _ = kill(pid, Signal::SIGCONT);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !process::is_alive(record.pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if ownership(record) == Ownership::Ours {
        warn!(
            pid = record.pid,
            "still running after {}s: SIGKILL",
            grace.as_secs()
        );
        let _ = kill(pid, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(10);
        while process::is_alive(record.pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `local down NAME`: asks a running supervisor to stop (it stops its daemons), or stops the
/// daemons named by the PID files itself; then, with `purge`, deletes the cluster's data.
pub async fn down(options: DownOptions) -> Result<(), LocalError> {
    let paths = ClusterPaths::new(&options.state_root, &options.name)?;
    let state = load_state(&paths)?.ok_or_else(|| {
        LocalError::new(format!(
            "no local cluster named {:?} in {}",
            options.name,
            options.state_root.display()
        ))
    })?;
    if let Some(pid) = running_supervisor(&paths) {
        info!(pid, "asking the supervisor to stop the cluster");
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = Instant::now() + options.stop_grace * 2 + Duration::from_secs(30);
        while running_supervisor(&paths).is_some() {
            if Instant::now() >= deadline {
                return Err(LocalError::new(format!(
                    "the supervisor (PID {pid}) did not stop in time: check its output, then \
                     retry `local down {}`",
                    options.name
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let _lock = take_lock(&paths)?;
    let mut stopped = 0;
    for kind in [DaemonKind::Cluster, DaemonKind::Kubo] {
        for peer in &state.peers {
            let file = paths.peer(&peer.name).pid_file(kind);
            let Some(record) = read_pid_file(&file) else {
                continue;
            };
            match ownership(&record) {
                Ownership::Ours => {
                    info!(peer = %peer.name, pid = record.pid, "stopping {kind}");
                    stop_process(&record, options.stop_grace).await;
                    stopped += 1;
                }
                Ownership::Foreign(why) => {
                    warn!(peer = %peer.name, "{} names a process that is not ours ({why}): leaving it alone", file.display());
                }
                Ownership::Gone => {}
            }
            remove_pid_file(&file)?;
        }
    }
    info!(cluster = %options.name, "stopped {stopped} daemons; data kept in {}", paths.root.display());
    if options.purge {
        if !options.yes && !confirm(&options.name, &paths.root)? {
            return Err(LocalError::new("not purged: confirmation declined"));
        }
        drop(_lock);
        std::fs::remove_dir_all(&paths.root)
            .map_err(|e| LocalError::io("removing", &paths.root, e))?;
        info!("deleted {}", paths.root.display());
    }
    Ok(())
}

fn confirm(name: &str, root: &Path) -> Result<bool, LocalError> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(LocalError::new(
            "--purge deletes every repository, key and log of the cluster: pass --yes to confirm \
             when not on a terminal",
        ));
    }
    eprint!(
        "Delete {} (all repositories, keys and logs of cluster {name})? Type the cluster name: ",
        root.display()
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| LocalError::new(format!("reading the confirmation: {e}")))?;
    Ok(line.trim() == name)
}

async fn run_tool(mut cmd: tokio::process::Command, what: &str) -> Result<String, LocalError> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| LocalError::new(format!("{what}: {e}")))?;
    if !out.status.success() {
        return Err(LocalError::new(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn read_json(path: &Path) -> Result<Value, LocalError> {
    let text = std::fs::read_to_string(path).map_err(|e| LocalError::io("reading", path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| LocalError::new(format!("{} is not valid JSON: {e}", path.display())))
}

fn write_json(path: &Path, value: &Value, mode: u32) -> Result<(), LocalError> {
    let json = serde_json::to_vec_pretty(value)
        .map_err(|e| LocalError::new(format!("serialising {}: {e}", path.display())))?;
    write_atomic(path, &json, mode)
}

/// Copy-and-truncate rotation: the daemon keeps appending to the same open file.
pub fn rotate_log(log: &Path, max: u64, keep: usize) -> std::io::Result<()> {
    let Ok(meta) = std::fs::metadata(log) else {
        return Ok(());
    };
    if meta.len() <= max || keep == 0 {
        return Ok(());
    }
    let name = |i: usize| PathBuf::from(format!("{}.{i}", log.display()));
    for i in (1..keep).rev() {
        if name(i).exists() {
            std::fs::rename(name(i), name(i + 1))?;
        }
    }
    std::fs::copy(log, name(1))?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(log)?
        .set_len(0)
}

/// The last `lines` lines of a file (at most its last 64 KiB).
pub fn log_tail(path: &Path, lines: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut buf = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
        let _ = f.read_to_end(&mut buf);
    }
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn peer_hints_do_not_count_as_a_configuration_change() {
        let a = json!({"cluster": {"peer_addresses": ["x"], "secret": "s"}, "consensus": {"crdt": {"trusted_peers": ["a"]}}});
        let b = json!({"cluster": {"peer_addresses": ["x", "y"], "secret": "s"}, "consensus": {"crdt": {"trusted_peers": ["a", "b"]}}});
        assert_eq!(
            restart_relevant(&a, CLUSTER_HINTS),
            restart_relevant(&b, CLUSTER_HINTS)
        );
        let c = json!({"cluster": {"peer_addresses": ["x"], "secret": "t"}, "consensus": {"crdt": {"trusted_peers": ["a"]}}});
        assert_ne!(
            restart_relevant(&a, CLUSTER_HINTS),
            restart_relevant(&c, CLUSTER_HINTS)
        );
    }

    #[test]
    fn logs_rotate_by_copy_and_truncate_keeping_a_few() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("kubo.log");
        for round in 0..5 {
            std::fs::write(&log, format!("round {round} ").repeat(20)).expect("write");
            rotate_log(&log, 10, 3).expect("rotate");
            assert_eq!(std::fs::metadata(&log).expect("meta").len(), 0);
        }
        let one = std::fs::read_to_string(dir.path().join("kubo.log.1")).expect("1");
        assert!(one.starts_with("round 4"), "{one}");
        let three = std::fs::read_to_string(dir.path().join("kubo.log.3")).expect("3");
        assert!(three.starts_with("round 2"), "{three}");
        assert!(!dir.path().join("kubo.log.4").exists());
        std::fs::write(&log, "small").expect("write");
        rotate_log(&log, 10, 3).expect("no rotation");
        assert_eq!(std::fs::read_to_string(&log).expect("read"), "small");
    }

    #[test]
    fn spec_files_must_be_valid_ipfs_clusters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n").expect("write");
        let err = read_spec(&file).expect_err("kind").to_string();
        assert!(err.contains("IpfsCluster"), "{err}");
        std::fs::write(
            &file,
            "apiVersion: ipfskit.io/v1alpha1\nkind: IpfsCluster\nmetadata: {name: demo}\nspec: {replicas: 0}\n",
        )
        .expect("write");
        let err = read_spec(&file).expect_err("replicas").to_string();
        assert!(err.contains("spec.replicas"), "{err}");
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/local-cluster.yaml");
        let (name, spec) = read_spec(&example).expect("example");
        assert_eq!((name.as_str(), spec.replicas), ("demo", 3));
    }
}
