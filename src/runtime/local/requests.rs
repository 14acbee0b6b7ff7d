//! The dashboard's requests under `local up`: each arrives on the channel (recorded), is taken
//! up (running) and ends done or failed with what was done, on the board the dashboard answers
//! `GET /api/dashboard/requests/{id}` from. A restart of one daemon restarts that daemon only;
//! a probe request is done once its round has published its status.

use tracing::{info, warn};

use super::supervisor::Supervisor;
use crate::dashboard::{ActionKind, ActionRequest, Daemon, RequestBoard, RequestState};

impl Supervisor {
    /// Carries out a request from the dashboard, then probes so that its status shows the
    /// result; reports each step on `board`.
    pub(super) async fn carry_out_request(&mut self, request: ActionRequest, board: &RequestBoard) {
        info!(
            id = request.id,
            action = ?request.action,
            peer = request.peer.as_deref().unwrap_or("<all>"),
            "dashboard request"
        );
        board.update(
            request.id,
            RequestState::Running,
            "taken up by the supervisor",
        );
        let outcome = match request.action {
            ActionKind::Probe => Ok(String::new()),
            ActionKind::Restart => self.restart_requested(&request).await,
        };
        self.round().await;
        match outcome {
            Ok(_) if request.action == ActionKind::Probe => {
                let score = self
                    .last_status
                    .as_ref()
                    .and_then(|s| s.health_score)
                    .map_or_else(|| "none".to_owned(), |s| s.to_string());
                board.update(
                    request.id,
                    RequestState::Done,
                    format!("probed every peer; health score {score}"),
                );
            }
            Ok(done) => board.update(request.id, RequestState::Done, done),
            Err(why) => {
                warn!(id = request.id, "dashboard request failed: {why}");
                board.update(request.id, RequestState::Failed, why);
            }
        }
    }

    /// Restarts what `request` names, one peer at a time: what was restarted, or why not.
    async fn restart_requested(&mut self, request: &ActionRequest) -> Result<String, String> {
        let names: Vec<String> = match &request.peer {
            Some(peer) => vec![peer.clone()],
            None => self.peer_names(),
        };
        let (kubo, cluster, what) = match request.daemon {
            Some(Daemon::Ipfs) => (true, false, "Kubo"),
            Some(Daemon::Cluster) => (false, true, "IPFS Cluster"),
            None => (true, true, "Kubo and IPFS Cluster"),
        };
        if let Some(unknown) = names
            .iter()
            .find(|n| self.state.peers.iter().all(|p| &p.name != *n))
        {
            return Err(format!(
                "{unknown} is not a peer of {}: nothing restarted",
                self.state.name
            ));
        }
        let mut failed = Vec::new();
        for name in &names {
            if let Err(e) = self.restart_peer(name, kubo, cluster).await {
                failed.push(format!("{name}: {e}"));
            }
        }
        if failed.is_empty() {
            Ok(format!("restarted {what} of {}", names.join(", ")))
        } else {
            Err(format!(
                "restarting {what}: {} (the health engine takes over)",
                failed.join("; ")
            ))
        }
    }
}
