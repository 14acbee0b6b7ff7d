//! The supervise loop of `local up`: after the peers have started it stays in the foreground,
//! sees each daemon's exit at once (a watch task reports it), probes every `probeInterval`, lets
//! the health engine ([`super::heal`]) decide what to restart (one peer at a time, within budget),
//! carries out the dashboard's requests, rotates the log files and publishes the status after
//! every round. SIGINT/SIGTERM stop every daemon gracefully; SIGKILL leaves them running, and the
//! next `local up` adopts them.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::daemons::{Daemons, Event};
use super::heal::Healer;
use super::logs::{LOG_KEEP, LOG_ROTATE_BYTES, rotate_log};
use super::state::{ClusterPaths, ClusterState, DaemonKind, PeerPaths, save_state, write_atomic};
use super::status::{LocalStatus, rows, targets};
use super::{LocalError, now_millis};
use crate::dashboard::{ActionKind, ActionRequest, Daemon, HOST_SAMPLE_INTERVAL, Publisher};
use crate::probe::report::{PeerReport, ProcessState};
use crate::probe::{DEFAULT_CONCURRENCY, Prober};
use crate::reconcile::{Action, RestartScope};

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
    pub(super) restarts: BTreeMap<String, u32>,
    pub(super) prober: Prober,
    pub(super) healer: Healer,
    /// The in-process dashboard's side, when it is served.
    pub(super) publisher: Option<Publisher>,
}

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

    /// One probe round: probe, assess, carry out the actions, publish the status.
    pub(super) async fn round(&mut self) {
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
        let snapshot = self.snapshot(&reports, &assessment);
        self.publish(&snapshot);
    }

    /// The status after a round: the probe reports and the assessment, with this supervisor's
    /// PIDs, restart counts and last exits.
    fn snapshot(
        &self,
        reports: &[PeerReport],
        assessment: &crate::reconcile::Assessment,
    ) -> LocalStatus {
        let running = self.daemons.pids();
        let pid_of = |peer: &str, kind: DaemonKind| {
            running
                .iter()
                .find(|(p, k, _)| p == peer && *k == kind)
                .map(|(_, _, pid)| *pid)
        };
        let restarts = &self.restarts;
        let peers = rows(
            &self.state,
            reports,
            assessment,
            &|p| (pid_of(p, DaemonKind::Kubo), pid_of(p, DaemonKind::Cluster)),
            &|p| restarts.get(p).copied().unwrap_or(0),
        );
        LocalStatus {
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
            publisher.publish(super::dashboard::snapshot(snapshot, self.state.spec.paused));
        }
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
                self.restart_peer(&peer, kubo, cluster).await;
            }
        }
    }

    /// Serves the in-process dashboard on `listener` (bound before any namespace change); returns
    /// the channel of its action requests.
    pub(super) fn serve_dashboard(
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
                    None => self.peer_names(),
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
                    self.restart_peer(&name, kubo, cluster).await;
                }
            }
        }
        self.round().await;
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
        requests: &mut Option<mpsc::Receiver<ActionRequest>>,
        sigterm: &mut tokio::signal::unix::Signal,
    ) -> Result<(), LocalError> {
        let mut interval = tokio::time::interval(self.healer.policy.probe_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
