//! The lifecycle of a local cluster: `local up` reads the spec, takes the supervisor lock, adopts
//! the daemons an earlier supervisor left running, scales down, creates and starts what is
//! missing, restarts peers whose configuration changed (one at a time), then hands over to the
//! supervise loop ([`super::supervisor`]); `local down` stops what this tool started and, with
//! `--purge`, deletes the cluster's data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube::Resource;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::daemons::{Daemons, Event, stop_process};
use super::heal::{Healer, policy};
use super::lock::{running_supervisor, take_lock};
use super::logs::log_tail;
use super::process::{self, Ownership, ownership};
use super::state::{
    self, ClusterPaths, ClusterState, DaemonKind, PeerRecord, load_state, random_hex,
    read_pid_file, remove_pid_file, save_state,
};
use super::status::targets;
use super::supervisor::Supervisor;
use super::{Binaries, LocalError};
use crate::api::{Consensus, IpfsCluster, IpfsClusterSpec, swarm_key_text};
use crate::metrics::{Exporter, Metrics};
use crate::probe::Prober;
use crate::probe::liveness::monitor::Settings as MonitorSettings;
use crate::probe::liveness::{HungSet, Monitor};
use crate::probe::report::ProcessState;

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
    /// A Prometheus scraping the dashboard, for history older than the recorded samples.
    pub prometheus_url: Option<String>,
    /// `--alert-webhook` and the alerts' `for` durations.
    pub alerts: crate::alerts::AlertOptions,
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
        .map_err(|e| LocalError::spec(file, format!("not valid YAML: {e}")))?;
    let api_version = IpfsCluster::api_version(&());
    if raw.get("kind").and_then(Value::as_str) != Some("IpfsCluster")
        || raw.get("apiVersion").and_then(Value::as_str) != Some(&api_version)
    {
        return Err(LocalError::spec(
            file,
            format!("`kind` must be IpfsCluster and `apiVersion` {api_version}"),
        ));
    }
    let cluster: IpfsCluster = serde_json::from_value(raw)
        .map_err(|e| LocalError::spec(file, format!("not a valid IpfsCluster: {e}")))?;
    let name = cluster
        .metadata
        .name
        .clone()
        .ok_or_else(|| LocalError::spec(file, "metadata.name is required"))?;
    state::check_name(&name)?;
    cluster
        .validate()
        .map_err(|e| LocalError::spec(file, e.to_string()))?;
    if cluster.spec.cluster.secret_ref.is_some() {
        warn!(
            "spec.cluster.secretRef names a Kubernetes Secret; the local runtime generates and \
             keeps its own cluster secret instead"
        );
    }
    if cluster.spec.swarm_key_ref.is_some() {
        warn!(
            "spec.swarmKeyRef names a Kubernetes Secret; the local runtime always runs a private \
             network of its own generated swarm key instead"
        );
    }
    if cluster.spec.pod_security_context != Default::default() {
        warn!(
            "spec.podSecurityContext applies to pods; the local runtime's daemons run as the \
             user who runs it"
        );
    }
    Ok((name, cluster.spec))
}

/// The persisted state of cluster `name`, brought to `spec` (a new generation when it changed),
/// or a new one. The consensus of an existing cluster cannot change (as at the API server).
fn current_state(
    paths: &ClusterPaths,
    file: &Path,
    name: &str,
    spec: IpfsClusterSpec,
) -> Result<ClusterState, LocalError> {
    Ok(match load_state(paths)? {
        Some(mut old) => {
            let (was, wanted) = (old.spec.cluster.consensus, spec.cluster.consensus);
            if was != wanted {
                return Err(LocalError::spec(
                    file,
                    format!(
                        "spec.cluster.consensus is immutable: cluster {name} runs {} and cannot \
                         switch to {} (the crdt and raft states are incompatible); bring up a new \
                         cluster under another metadata.name",
                        was.as_str(),
                        wanted.as_str()
                    ),
                ));
            }
            if old.spec != spec {
                info!(cluster = %name, "the spec changed since the last `local up`: reconciling");
                old.spec = spec;
                old.generation += 1;
            }
            old
        }
        None => ClusterState::new(name, spec),
    })
}

/// `local up`: bring the cluster declared in the spec file to its desired state, then supervise
/// it in the foreground until SIGINT/SIGTERM (which stop the daemons).
pub async fn up(options: UpOptions) -> Result<(), LocalError> {
    let (name, spec) = read_spec(&options.spec_file)?;
    let paths = ClusterPaths::new(&options.state_root, &name)?;
    std::fs::create_dir_all(&paths.root).map_err(|e| LocalError::io("creating", &paths.root, e))?;
    let _lock = take_lock(&paths)?;
    // A snapshot left by an earlier supervisor describes processes that may be gone; only its
    // alerts (so that their resolution is delivered) and healing steps go on.
    let earlier = super::status::supervisor_snapshot(&paths).map(|s| s.status);
    let _ = std::fs::remove_file(paths.status_file());
    let state = current_state(&paths, &options.spec_file, &name, spec)?;
    let (mut sup, mut rx) = Supervisor::new(paths, options.binaries, state, options.stop_grace)?;
    let dashboard = options.dashboard.as_ref().and_then(|l| l.local_addr().ok());
    sup.take_over(options.alerts, dashboard, earlier)?;
    let mut requests = None;
    if let Some(listener) = options.dashboard {
        requests = Some(sup.serve_dashboard(listener, options.prometheus_url.as_deref())?);
    }
    // SIGINT/SIGTERM while the peers start: stop what was started and leave cleanly.
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| LocalError::system("installing the SIGTERM handler", e))?;
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
    /// A supervisor of `state` with no daemon yet: the cluster's secrets read (made the first
    /// time), its health policy and prober built. The receiver gets the daemons' exits.
    fn new(
        paths: ClusterPaths,
        binaries: Binaries,
        state: ClusterState,
        stop_grace: Duration,
    ) -> Result<(Supervisor, mpsc::UnboundedReceiver<Event>), LocalError> {
        let secret = state::secret_file(&paths.secret_file(), || random_hex(32))?;
        let swarm_key = state::secret_file(&paths.swarm_key_file(), || {
            random_hex(32).map(|h| swarm_key_text(&h))
        })?;
        let policy = policy(&state.spec, state.generation)?;
        let metrics = Metrics::new(Exporter::Local);
        let prober = Prober::new(policy.probe_timeout)?.timed(metrics.probe_durations.clone());
        let (daemons, rx) = Daemons::new(paths.clone(), binaries, stop_grace);
        let liveness = Monitor::spawn(
            state.name.clone(),
            prober.client().clone(),
            MonitorSettings::default(),
            || {},
        );
        let sup = Supervisor {
            hung_changes: liveness.changes(),
            liveness,
            hung_seen: HungSet::new(),
            last_reports: Vec::new(),
            paths,
            state,
            secret: secret.trim().to_owned(),
            swarm_key,
            daemons,
            last_exit: BTreeMap::new(),
            last_status: None,
            prober,
            healer: Healer::new(policy),
            publisher: None,
            metrics,
            latest: None,
            gc: crate::runtime::gc::GcRuns::default(),
            alerter: crate::alerts::Alerter::default(),
            specs: None,
            spec_changes: None,
        };
        Ok((sup, rx))
    }

    /// Brings the peers to the spec: scale down, create and start what is missing, adopt what
    /// runs, restart peers whose configuration changed (one at a time).
    pub(super) async fn converge(&mut self) -> Result<(), LocalError> {
        let replicas = u32::try_from(self.state.spec.replicas).unwrap_or(1);
        // Adopt daemons that still run and answer; stop ours that run but do not answer.
        for name in &self.peer_names() {
            for kind in [DaemonKind::Kubo, DaemonKind::Cluster] {
                if self.daemons.adopt_or_clear(name, kind) && !self.answers(name, kind).await {
                    warn!(peer = %name, "{kind} runs but does not answer: restarting it");
                    self.daemons.stop(name, kind).await;
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
        // Raft: the first peers form the initial peerset, fixed for good (peers added later join
        // it through a member; see `PeerRecord::raft_join`).
        if self.state.spec.cluster.consensus == Consensus::Raft
            && self.state.raft_init_peerset.is_empty()
        {
            self.state.raft_init_peerset = self
                .state
                .peers
                .iter()
                .map(|p| p.cluster_peer_id.clone())
                .collect();
        }
        save_state(&self.paths, &self.state)?;
        self.start_or_reconfigure().await?;
        save_state(&self.paths, &self.state)?;
        Ok(())
    }

    /// Starts what does not run; restarts running peers whose configuration changed.
    ///
    /// Every missing Kubo starts first, then every missing IPFS Cluster daemon: a raft peer that
    /// finds no leader within IPFS Cluster's ready timeout (30 s) shuts down, so the members of a
    /// peerset start close together. Peers that join a raft peerset start last, one at a time,
    /// each through a member that already runs.
    async fn start_or_reconfigure(&mut self) -> Result<(), LocalError> {
        let mut changed = Vec::new();
        let mut missing = Vec::new();
        let mut names = self.peer_names();
        names.sort_by_key(|n| self.state.peer(n).is_some_and(|p| p.raft_join));
        for name in &names {
            let (kubo_changed, cluster_changed) = self.prepare(name)?;
            let kubo_running = self.daemons.is_running(name, DaemonKind::Kubo);
            let cluster_running = self.daemons.is_running(name, DaemonKind::Cluster);
            // An adopted peer that joined while no supervisor waited for it (one was killed).
            if let Some(record) = self.state.peer(name).filter(|p| p.raft_join).cloned()
                && cluster_running
                && self.lists_itself(&record).await
            {
                self.joined(name)?;
            }
            if !kubo_running || !cluster_running {
                missing.push((name.clone(), !kubo_running, !cluster_running));
            }
            if (kubo_changed && kubo_running) || (cluster_changed && cluster_running) {
                changed.push((name.clone(), kubo_changed && kubo_running, cluster_changed));
            }
        }
        for (name, _, _) in missing.iter().filter(|(_, kubo, _)| *kubo) {
            let _ = self.start_peer(name, true, false).await;
        }
        for (name, _, _) in missing.iter().filter(|(_, _, cluster)| *cluster) {
            if self.daemons.is_running(name, DaemonKind::Kubo) {
                let _ = self.start_peer(name, false, true).await;
            }
        }
        for (name, kubo, cluster) in changed {
            info!(peer = %name, "configuration changed: restarting the peer");
            if kubo {
                let _ = self.restart_peer(&name, true, true).await;
            } else if cluster {
                let _ = self.restart_peer(&name, false, true).await;
            }
        }
        Ok(())
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

    /// Stops the given daemons of a peer (IPFS Cluster before Kubo) and starts them again.
    pub(super) async fn restart_peer(
        &mut self,
        peer: &str,
        kubo: bool,
        cluster: bool,
    ) -> Result<(), String> {
        if cluster {
            self.daemons.stop(peer, DaemonKind::Cluster).await;
        }
        if kubo {
            self.daemons.stop(peer, DaemonKind::Kubo).await;
        }
        self.start_peer(peer, kubo, cluster).await
    }

    /// Starts the given daemons of a peer (Kubo first, waiting for its API; then IPFS Cluster).
    /// A daemon that fails to start is logged and left to the health engine; the error is
    /// returned too.
    async fn start_peer(&mut self, peer: &str, kubo: bool, cluster: bool) -> Result<(), String> {
        let result = self.start_daemons(peer, kubo, cluster).await;
        if let Err(e) = &result {
            error!(peer, "{e}");
            self.last_exit.insert(peer.to_owned(), e.to_string());
        }
        result.map_err(|e| e.to_string())
    }

    async fn start_daemons(
        &mut self,
        peer: &str,
        kubo: bool,
        cluster: bool,
    ) -> Result<(), LocalError> {
        self.prepare(peer)?;
        if kubo {
            self.start(peer, DaemonKind::Kubo).await?;
        }
        if cluster {
            self.start(peer, DaemonKind::Cluster).await?;
        }
        Ok(())
    }

    /// Spawns one daemon and waits until its API answers, failing early if it exits. A raft
    /// peer still to join the peerset bootstraps to a member and is waited for until it has
    /// joined.
    async fn start(&mut self, peer: &str, kind: DaemonKind) -> Result<(), LocalError> {
        let joining =
            kind == DaemonKind::Cluster && self.state.peer(peer).is_some_and(|p| p.raft_join);
        let args = if joining {
            vec!["--bootstrap".to_owned(), self.raft_member_addr(peer)?]
        } else {
            Vec::new()
        };
        if joining {
            info!(peer, via = %args[1], "joining the raft peerset");
        }
        let pid = self.daemons.spawn(peer, kind, &args).await?;
        let log = self.peer_paths(peer).log(kind);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.answers(peer, kind).await {
                info!(peer, pid, "{kind} is up");
                if joining {
                    self.wait_joined(peer, pid).await?;
                }
                return Ok(());
            }
            if !process::is_alive(pid) {
                self.daemons.forget(peer, kind);
                return Err(LocalError::ExitedDuringStart {
                    peer: peer.to_owned(),
                    daemon: kind,
                    log_tail: log_tail(&log, 15),
                });
            }
            if Instant::now() >= deadline {
                return Err(LocalError::StartTimeout {
                    peer: peer.to_owned(),
                    daemon: kind,
                    pid,
                    waited: START_TIMEOUT,
                    log,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops every daemon, IPFS Cluster before Kubo (see [`Daemons::stop_all`]).
    pub(super) async fn stop_all(&mut self) {
        let names = self.peer_names();
        self.daemons.stop_all(&names).await;
    }
}

/// `local down NAME`: asks a running supervisor to stop (it stops its daemons), or stops the
/// daemons named by the PID files itself; then, with `purge`, deletes the cluster's data.
pub async fn down(options: DownOptions) -> Result<(), LocalError> {
    let paths = ClusterPaths::new(&options.state_root, &options.name)?;
    let state = load_state(&paths)?.ok_or_else(|| LocalError::UnknownCluster {
        name: options.name.clone(),
        state_root: options.state_root.clone(),
    })?;
    if let Some(pid) = running_supervisor(&paths) {
        stop_supervisor(&paths, pid, &options).await?;
    }
    let lock = take_lock(&paths)?;
    let stopped = stop_recorded(&paths, &state, options.stop_grace).await?;
    info!(cluster = %options.name, "stopped {stopped} daemons; data kept in {}", paths.root.display());
    if options.purge {
        if !options.yes && !confirm(&options.name, &paths.root)? {
            return Err(LocalError::PurgeDeclined);
        }
        drop(lock);
        std::fs::remove_dir_all(&paths.root)
            .map_err(|e| LocalError::io("removing", &paths.root, e))?;
        info!("deleted {}", paths.root.display());
    }
    Ok(())
}

/// Asks the running supervisor `pid` to stop (SIGTERM) and waits until it has.
async fn stop_supervisor(
    paths: &ClusterPaths,
    pid: i32,
    options: &DownOptions,
) -> Result<(), LocalError> {
    info!(pid, "asking the supervisor to stop the cluster");
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    let deadline = Instant::now() + options.stop_grace * 2 + Duration::from_secs(30);
    while running_supervisor(paths).is_some() {
        if Instant::now() >= deadline {
            return Err(LocalError::SupervisorStuck {
                name: options.name.clone(),
                pid,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Stops the daemons that the PID files name, when they are ours (IPFS Cluster before Kubo), and
/// removes the files. Returns how many were stopped.
async fn stop_recorded(
    paths: &ClusterPaths,
    state: &ClusterState,
    grace: Duration,
) -> Result<usize, LocalError> {
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
                    stop_process(&record, grace).await;
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
    Ok(stopped)
}

/// Asks on the terminal for the cluster's name before `--purge` deletes its data.
fn confirm(name: &str, root: &Path) -> Result<bool, LocalError> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(LocalError::PurgeNeedsYes);
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
        .map_err(|e| LocalError::system("reading the confirmation", e))?;
    Ok(line.trim() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn an_ipfs_cluster_of_another_api_version_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.yaml");
        for api_version in ["v1", "ipfskit.io/v1beta1", "example.com/v1alpha1"] {
            std::fs::write(
                &file,
                format!(
                    "apiVersion: {api_version}\nkind: IpfsCluster\nmetadata: {{name: demo}}\n\
                     spec: {{replicas: 1}}\n"
                ),
            )
            .expect("write");
            let err = read_spec(&file).expect_err(api_version).to_string();
            assert!(
                err.contains("c.yaml") && err.contains("ipfskit.io/v1alpha1"),
                "{err}"
            );
        }
    }

    fn raft_file(dir: &Path, replicas: u32) -> PathBuf {
        let file = dir.join("c.yaml");
        std::fs::write(
            &file,
            format!(
                "apiVersion: ipfskit.io/v1alpha1\nkind: IpfsCluster\nmetadata: {{name: demo}}\n\
                 spec: {{replicas: {replicas}, cluster: {{consensus: raft}}}}\n"
            ),
        )
        .expect("write");
        file
    }

    /// Raft runs locally with an odd number of at least 3 peers; other counts get the API
    /// server's message, naming the field.
    #[test]
    fn raft_needs_an_odd_number_of_at_least_three_peers() {
        let dir = tempfile::tempdir().expect("tempdir");
        for replicas in [1, 2, 4] {
            let file = raft_file(dir.path(), replicas);
            let err = read_spec(&file).expect_err("even or single raft");
            assert!(
                matches!(&err, LocalError::Spec { file: f, .. } if f == &file),
                "{err:?}"
            );
            let err = err.to_string();
            assert!(
                err.contains("spec.replicas")
                    && err.contains("odd number of at least 3 with spec.cluster.consensus: raft"),
                "{err}"
            );
        }
        for replicas in [3, 5] {
            let (_, spec) = read_spec(&raft_file(dir.path(), replicas)).expect("raft");
            assert_eq!(
                (spec.replicas, spec.cluster.consensus),
                (i32::try_from(replicas).expect("small"), Consensus::Raft)
            );
        }
    }

    #[test]
    fn the_consensus_of_an_existing_cluster_cannot_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = ClusterPaths::new(&dir.path().join("state"), "demo").expect("paths");
        std::fs::create_dir_all(&paths.root).expect("mkdir");
        let crdt = IpfsClusterSpec {
            replicas: 3,
            ..IpfsClusterSpec::default()
        };
        save_state(&paths, &ClusterState::new("demo", crdt)).expect("save");
        let file = raft_file(dir.path(), 3);
        let (_, raft) = read_spec(&file).expect("raft");
        let err = current_state(&paths, &file, "demo", raft)
            .expect_err("crdt -> raft")
            .to_string();
        assert!(
            err.contains("c.yaml")
                && err.contains("spec.cluster.consensus is immutable")
                && err.contains("runs crdt and cannot switch to raft"),
            "{err}"
        );
    }

    #[test]
    fn spec_errors_name_the_file_and_the_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = raft_file(dir.path(), 2);
        let err = read_spec(&file).expect_err("raft with 2 peers");
        assert!(
            matches!(&err, LocalError::Spec { file: f, .. } if f == &file),
            "{err:?}"
        );
        assert!(err.to_string().contains("spec.replicas"), "{err}");
        std::fs::write(&file, "kind: [").expect("write");
        let err = read_spec(&file).expect_err("yaml").to_string();
        assert!(err.contains("c.yaml") && err.contains("YAML"), "{err}");
    }
}
