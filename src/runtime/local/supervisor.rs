//! The supervise loop of `local up`: after the peers have started it stays in the foreground,
//! sees each daemon's exit at once (a watch task reports it), probes every `probeInterval`, lets
//! the health engine ([`super::heal`]) decide what to restart (one peer at a time, within budget),
//! carries out the dashboard's requests and spec changes ([`super::spec`]), rotates the log files
//! and publishes the status after every round. SIGINT/SIGTERM stop every daemon gracefully; SIGKILL leaves them running, and the
//! next `local up` adopts them.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::daemons::{Daemons, Event};
use super::heal::Healer;
use super::logs::{LOG_KEEP, LOG_ROTATE_BYTES, rotate_log};
use super::state::{ClusterPaths, ClusterState, DaemonKind, PeerPaths, save_state, write_atomic};
use super::status::{LocalStatus, compute_status, local_peers, targets};
use super::{LocalError, now_millis};
use crate::alerts::{AlertOptions, Alerter, Facts, rules};
use crate::api::IpfsClusterStatus;
use crate::dashboard::Requests;
use crate::dashboard::{HOST_SAMPLE_INTERVAL, Publisher};
use crate::metrics::{ClusterKey, ClusterReport, Metrics, healing_budgets, healing_labels};
use crate::probe::liveness::{self, HungSet, Monitor};
use crate::probe::report::{FailureKind, PeerReport, ProbeFailure, ProcessState};
use crate::probe::{DEFAULT_CONCURRENCY, Endpoint, PeerTarget, Prober};
use crate::reconcile::{RestartScope, RestartUnit, SwarmTarget};
use crate::runtime::PeerRuntime;
use crate::runtime::gc::{GcOutcome, GcRuns, GcSettings};

/// One cluster under supervision: its state, its daemons, and what the health engine and the
/// status need between rounds. Its methods live with their concern: [`super::lifecycle`]
/// (converge, start, remove), [`super::provision`] (create and configure peers), this module
/// (the loop).
pub struct Supervisor {
    pub(super) paths: ClusterPaths,
    pub(super) state: ClusterState,
    /// The IPFS Cluster secret (hex, trimmed).
    pub(super) secret: String,
    /// The Kubo private-network key file's text.
    pub(super) swarm_key: String,
    pub(super) daemons: Daemons,
    /// Per peer, the last exit or start failure, shown until the status has an error of its own.
    pub(super) last_exit: BTreeMap<String, String>,
    pub(super) prober: Prober,
    pub(super) healer: Healer,
    /// The in-process dashboard's side, when it is served.
    pub(super) publisher: Option<Publisher>,
    /// Every series of this process (`/metrics` of the in-process dashboard).
    pub(super) metrics: Metrics,
    /// The latest status for the history's sampler, when the dashboard is served.
    pub(super) latest: Option<crate::history::Latest>,
    /// The status of the previous round (conditions keep their transition times).
    pub(super) last_status: Option<IpfsClusterStatus>,
    /// Kubo garbage collections started and their outcomes, per peer.
    pub(super) gc: GcRuns,
    /// The alert engine of this cluster, and the webhook sender.
    pub(super) alerter: Alerter,
    /// The liveness pings of the daemons that answer, between rounds.
    pub(super) liveness: Monitor,
    /// Sees every change of the hung daemons.
    pub(super) hung_changes: watch::Receiver<HungSet>,
    /// The hung daemons the last round judged.
    pub(super) hung_seen: HungSet,
    /// The last round's reports, for a round run at once when a daemon is found hung.
    pub(super) last_reports: Vec<PeerReport>,
    /// The spec as the dashboard shows it, when the dashboard is served.
    pub(super) specs: Option<watch::Sender<crate::dashboard::clusters::StoredSpec>>,
    /// The dashboard's spec changes, taken by the supervise loop.
    pub(super) spec_changes: Option<mpsc::Receiver<super::spec::SpecChange>>,
}

/// The supervisor carries out the health engine's actions on the processes it started: one
/// daemon at a time.
impl PeerRuntime for Supervisor {
    const RESTART_UNIT: RestartUnit = RestartUnit::Daemon;

    async fn restart(&mut self, peer: &str, scope: RestartScope, reason: &str) {
        info!(
            peer,
            scope = scope.label(),
            "healing: restarting ({reason})"
        );
        self.last_exit
            .insert(peer.to_owned(), format!("restarted: {reason}"));
        let (kubo, cluster) = match scope {
            RestartScope::Kubo => (true, false),
            RestartScope::Cluster => (false, true),
            RestartScope::Both => (true, true),
        };
        let _ = self.restart_peer(peer, kubo, cluster).await;
    }

    async fn reconnect(&mut self, peer: &str, targets: &[SwarmTarget], reason: &str) {
        info!(peer, "healing: swarm/connect ({reason})");
        let Some(from) = self.state.peer(peer).cloned() else {
            return;
        };
        let api = Endpoint::new(from.kubo_api_url());
        for t in targets {
            let Some(to) = self.state.peer(&t.peer) else {
                continue;
            };
            let addr = format!(
                "/ip4/127.0.0.1/tcp/{}/p2p/{}",
                to.ports.kubo_swarm, t.peer_id
            );
            let client = self.prober.client();
            if let Err(f) = client.swarm_connect(&api, &addr, CONNECT_TIMEOUT).await {
                warn!(peer, "{}", f.message);
            }
        }
    }
}

/// The report of a peer no round has probed yet.
fn not_probed_yet(peer: &str) -> PeerReport {
    let failure = ProbeFailure {
        kind: FailureKind::Unreachable,
        message: "not probed yet".into(),
    };
    PeerReport {
        peer: peer.to_owned(),
        kubo_process: ProcessState::Unknown,
        cluster_process: ProcessState::Unknown,
        kubo: Err(failure.clone()),
        cluster: Err(failure),
    }
}

/// The size of the filesystem holding `path`, in bytes.
fn filesystem_size(path: &std::path::Path) -> Option<u64> {
    let fs = nix::sys::statvfs::statvfs(path).ok()?;
    (fs.blocks() as u64).checked_mul(fs.fragment_size() as u64)
}

/// The supervise loop's probe clock.
fn probe_ticks(every: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

/// How long one `swarm/connect` may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Supervisor {
    pub(super) fn peer_paths(&self, peer: &str) -> PeerPaths {
        self.paths.peer(peer)
    }

    /// The names of the peers, in index order.
    pub(super) fn peer_names(&self) -> Vec<String> {
        self.state.peers.iter().map(|p| p.name.clone()).collect()
    }

    fn process_state(&self, peer: &str, kind: DaemonKind) -> ProcessState {
        if self.daemons.is_running(peer, kind) {
            ProcessState::Running
        } else {
            ProcessState::Exited
        }
    }

    /// One probe round: probe, assess, carry out the actions, publish the status. A daemon found
    /// hung while the round waits on it (its probes time out only after `probeTimeout`) cuts the
    /// round short: it is judged at once on the last answers ([`Supervisor::hung_round`]).
    pub(super) async fn round(&mut self) {
        let targets = targets(&self.state, &|p, k| self.process_state(p, k));
        let seen = self.hung_seen.clone();
        let probed = tokio::select! {
            reports = self.prober.round(&targets, DEFAULT_CONCURRENCY) => Some(reports),
            () = liveness::newly_hung(&mut self.hung_changes, &seen) => None,
        };
        match probed {
            Some(reports) => {
                let now_hung = self.liveness.hung();
                self.hung_seen.retain(|k, _| now_hung.contains_key(k));
                self.settle(&targets, reports).await;
            }
            None => self.hung_round().await,
        }
    }

    /// The hung daemons changed: a daemon newly hung is judged at once, without probing (the
    /// other peers keep their last answers); one that answers again is probed with the others.
    async fn liveness_changed(&mut self) {
        let now = self.hung_changes.borrow_and_update().clone();
        if now.keys().any(|k| !self.hung_seen.contains_key(k)) {
            self.hung_round().await;
        } else {
            self.hung_seen = now;
            self.round().await;
        }
    }

    /// A round on the last answers, the hung daemons marked as not answering and the process
    /// states as they are now.
    async fn hung_round(&mut self) {
        let targets = targets(&self.state, &|p, k| self.process_state(p, k));
        let hung = self.liveness.hung();
        let reports = targets
            .iter()
            .map(|t| {
                let mut r = self
                    .last_reports
                    .iter()
                    .find(|r| r.peer == t.peer)
                    .cloned()
                    .unwrap_or_else(|| not_probed_yet(&t.peer));
                r.kubo_process = t.kubo_process;
                r.cluster_process = t.cluster_process;
                liveness::overlay(&mut r, &hung);
                r
            })
            .collect();
        self.hung_seen = hung;
        self.settle(&targets, reports).await;
    }

    /// Assesses a round's reports, carries out the actions and publishes the status.
    async fn settle(&mut self, targets: &[PeerTarget], reports: Vec<PeerReport>) {
        let started = std::time::Instant::now();
        self.metrics.reconciles.inc();
        let now = now_millis();
        let before = self.healer.history().clone();
        let assessment = self.healer.assess(&reports, now);
        let cluster = ClusterKey::local(&self.state.name);
        for (peer, action) in healing_labels(&assessment, &before) {
            self.metrics.count_healing(&cluster, &peer, action);
        }
        if let Some(why) = &assessment.decision.report_only
            && !assessment.decision.withheld.is_empty()
        {
            info!("{why}; would {}", assessment.decision.summary());
        }
        for action in &assessment.decision.actions {
            crate::runtime::carry_out(self, action).await;
        }
        self.collect_garbage(targets, &reports);
        // Published after the actions, so that it shows the new PIDs and restart counts.
        let previous = self.last_status.take();
        let mut snapshot = self.snapshot(&reports, &assessment, previous.as_ref(), now);
        self.evaluate_alerts(&mut snapshot.status, now);
        self.publish(&snapshot);
        self.report_metrics(&snapshot.status, now);
        self.metrics.reconciled(started.elapsed(), true);
        self.last_status = Some(snapshot.status);
        self.liveness.watch(liveness::targets_of(targets, &reports));
        self.last_reports = reports;
    }

    /// Hands the round's status to the metrics, with each peer's repository filesystem size and
    /// restarts left.
    fn report_metrics(&self, status: &IpfsClusterStatus, now: u64) {
        let volume_capacity = status
            .peers
            .iter()
            .filter_map(|p| {
                let size = filesystem_size(&self.peer_paths(&p.name).ipfs())?;
                Some((p.name.clone(), size))
            })
            .collect();
        let max = self.healer.policy.max_restarts_per_hour;
        self.metrics.report(ClusterReport {
            cluster: ClusterKey::local(&self.state.name),
            desired_peers: self.state.spec.replicas,
            status,
            volume_capacity,
            healing_budget: healing_budgets(status, self.healer.history(), max, now),
        });
    }

    /// Starts alerting (the webhook sender, if `--alert-webhook`) and takes over from the last
    /// snapshot of an earlier supervisor, if any: its firing alerts go on until their condition
    /// ends, and its healing steps stay listed.
    pub(super) fn take_over(
        &mut self,
        options: AlertOptions,
        dashboard: Option<std::net::SocketAddr>,
        earlier: Option<IpfsClusterStatus>,
    ) -> Result<(), LocalError> {
        let settings = options
            .start(dashboard.map(|a| format!("http://{a}/")))
            .map_err(LocalError::Alerts)?;
        if let Some(webhook) = &settings.webhook {
            self.metrics.webhook.watch(webhook.clone());
        }
        self.alerter = Alerter::new(settings);
        if let Some(earlier) = earlier {
            self.healer.take_over_log(&earlier.healing);
            self.last_status = Some(IpfsClusterStatus {
                alerts: earlier.alerts,
                ..IpfsClusterStatus::default()
            });
        }
        Ok(())
    }

    /// This round's alerts (see [`crate::alerts`]) into `status.alerts`; transitions are
    /// logged and posted to the webhook.
    fn evaluate_alerts(&self, status: &mut IpfsClusterStatus, now: u64) {
        let max = self.healer.policy.max_restarts_per_hour;
        let budget = rules::budget_left(status, self.healer.history(), max, now);
        let capacity = nix::sys::statvfs::statvfs(&self.paths.root)
            .ok()
            .map(|s| s.blocks().saturating_mul(s.fragment_size()));
        let previous = std::mem::take(&mut status.alerts);
        let facts = Facts {
            namespace: None,
            cluster: &self.state.name,
            status,
            budget_left: &budget,
            volume_capacity: capacity,
        };
        let round = self.alerter.round(&facts, &previous, now);
        status.alerts = round.alerts;
    }

    /// Logs the Kubo garbage collections that ended, then starts the ones this round calls for
    /// (see [`crate::runtime::gc`]); none while the cluster is paused.
    fn collect_garbage(&self, targets: &[PeerTarget], reports: &[PeerReport]) {
        for (peer, outcome) in self.gc.take_outcomes("") {
            match outcome {
                GcOutcome::Collected { .. } => info!(peer, "{}", outcome.describe()),
                GcOutcome::Failed(_) => warn!(peer, "{}", outcome.describe()),
            }
        }
        if self.state.spec.paused {
            return;
        }
        let settings = GcSettings::from_spec(&self.state.spec.kubo);
        let endpoint = |peer: &str| {
            targets
                .iter()
                .find(|t| t.peer == peer)
                .map(|t| t.kubo.clone())
        };
        for started in self
            .gc
            .start_due(self.prober.client(), "", &settings, reports, endpoint)
        {
            info!(peer = %started.peer, "{}", started.describe(&settings));
        }
    }

    /// The status after a round: the probe reports and the assessment as both runtimes report
    /// them, with this supervisor's PIDs and the last exit of a peer that has no error of its own.
    fn snapshot(
        &self,
        reports: &[PeerReport],
        assessment: &crate::reconcile::Assessment,
        previous: Option<&IpfsClusterStatus>,
        now: u64,
    ) -> LocalStatus {
        let running = self.daemons.pids();
        let pid_of = |peer: &str, kind: DaemonKind| {
            running
                .iter()
                .find(|(p, k, _)| p == peer && *k == kind)
                .map(|(_, _, pid)| *pid)
        };
        let peers = local_peers(&self.state, &|p| {
            (pid_of(p, DaemonKind::Kubo), pid_of(p, DaemonKind::Cluster))
        });
        let spec = &self.state.spec;
        let generation = self.state.generation;
        let mut status =
            compute_status(spec, generation, reports, assessment, &peers, previous, now);
        for p in &mut status.peers {
            if p.last_error.is_none() {
                p.last_error = self.last_exit.get(&p.name).cloned();
            }
        }
        LocalStatus {
            name: self.state.name.clone(),
            generation: self.state.generation,
            supervisor_pid: i32::try_from(std::process::id()).ok(),
            status,
            peers,
        }
    }

    /// Writes the status file (for `local status`) and hands the snapshot to the dashboard.
    fn publish(&self, snapshot: &LocalStatus) {
        if let Ok(json) = serde_json::to_vec_pretty(snapshot)
            && let Err(e) = write_atomic(&self.paths.status_file(), &json, 0o644)
        {
            warn!("{e}");
        }
        if let Some(publisher) = &self.publisher {
            publisher.publish(super::dashboard::snapshot(snapshot, &self.state.spec));
        }
        if let Some(latest) = &self.latest {
            let interval = self.healer.policy.probe_interval;
            latest.observe(&self.state.name, interval, &snapshot.status);
        }
    }

    /// Serves the in-process dashboard on `listener` (bound before any namespace change), with
    /// history older than the recorded samples from `prometheus_url`; returns the channel of its
    /// action requests.
    pub(super) fn serve_dashboard(
        &mut self,
        listener: std::net::TcpListener,
        prometheus_url: Option<&str>,
    ) -> Result<Requests, LocalError> {
        let token = super::dashboard::token(&self.paths.root)?;
        let (dashboard, publisher, requests) = crate::dashboard::Dashboard::new(Some(token), false);
        let (specs, changes) = super::spec::channel(crate::dashboard::clusters::StoredSpec {
            spec: self.state.spec.clone(),
            generation: i64::try_from(self.state.generation).unwrap_or(i64::MAX),
        });
        self.specs = Some(changes.current);
        self.spec_changes = Some(changes.receiver);
        let dashboard = dashboard
            .with_logs(std::sync::Arc::new(super::dashboard::LocalLogs::new(
                self.paths.clone(),
            )))
            .with_specs(std::sync::Arc::new(specs))
            .with_metrics(self.metrics.clone());
        // The history lives in the state directory: the next supervisor serves it too.
        let store = self.paths.root.join(crate::history::STORE_FILE);
        let history = crate::history::History::open(&store, crate::history::now_millis());
        let latest = crate::history::Latest::default();
        tokio::spawn(crate::history::sampler::run(
            history.clone(),
            latest.clone(),
        ));
        self.latest = Some(latest);
        let mut dashboard =
            dashboard.with_history(crate::dashboard::HistorySource::Recorded(history));
        if let Some(url) = prometheus_url {
            match crate::history::prometheus::PrometheusRange::new(url, false) {
                Ok(prometheus) => dashboard = dashboard.with_prometheus(prometheus),
                Err(e) => warn!("no history from Prometheus: {e}"),
            }
        }
        tokio::spawn(
            publisher
                .host_sampler(self.paths.root.clone())
                .run(HOST_SAMPLE_INTERVAL),
        );
        let addr = listener
            .local_addr()
            .map_err(|e| LocalError::system("the dashboard listener", e))?;
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
            .map_err(|e| LocalError::system(format!("serving the dashboard on {addr}"), e))?;
        info!(
            "dashboard on http://{addr}/ (API under /api/dashboard, described at /openapi.json); changes need the bearer token in {}",
            self.paths.root.join(super::dashboard::TOKEN_FILE).display()
        );
        self.publisher = Some(publisher);
        Ok(requests)
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

    /// A daemon exited: if it was the one running (not one stopped or replaced), note it and
    /// probe at once so that the health engine can act.
    async fn daemon_exited(&mut self, event: Event) {
        let Event::Exited {
            peer,
            kind,
            pid,
            how,
        } = event;
        if self.daemons.exited(&peer, kind, pid) {
            warn!(peer, pid, "{kind} {how}");
            self.last_exit.insert(peer.clone(), format!("{kind} {how}"));
            self.round().await;
        }
    }

    /// The foreground loop: exits are handled at once, probes every `probeInterval`.
    pub(super) async fn supervise(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Event>,
        requests: &mut Option<Requests>,
        sigterm: &mut tokio::signal::unix::Signal,
    ) -> Result<(), LocalError> {
        let mut interval = probe_ticks(self.healer.policy.probe_interval);
        let mut spec_changes = self.spec_changes.take();
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = sigterm.recv() => break,
                Some(event) = rx.recv() => self.daemon_exited(event).await,
                Some(request) = async {
                    match requests.as_mut() {
                        Some(r) => r.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let board = requests.as_ref().map(|r| r.board.clone()).unwrap_or_default();
                    self.carry_out_request(request, &board).await;
                }
                Some(change) = async {
                    match spec_changes.as_mut() {
                        Some(r) => r.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let every = self.healer.policy.probe_interval;
                    if self.take_spec_change(change) {
                        if self.healer.policy.probe_interval != every {
                            interval = probe_ticks(self.healer.policy.probe_interval);
                        }
                        self.reconverge().await;
                    }
                }
                Ok(()) = self.hung_changes.changed() => self.liveness_changed().await,
                _ = interval.tick() => {
                    self.rotate_logs();
                    self.round().await;
                }
            }
        }
        info!("stopping every daemon of {}", self.state.name);
        self.metrics
            .forget_cluster(&ClusterKey::local(&self.state.name));
        self.stop_all().await;
        save_state(&self.paths, &self.state)?;
        Ok(())
    }
}
