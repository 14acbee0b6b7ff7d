//! The runtimes that carry out what the reconcile core decides: Kubernetes objects ([`kube`]) or
//! real processes on this host ([`local`]). Both map the spec into one [`HealthPolicy`]
//! ([`policy_for`]), report one [`crate::api::IpfsClusterStatus`]
//! ([`crate::reconcile::status::compute`]) and carry out healing through [`PeerRuntime`].

pub mod gc;
pub mod kube;
pub mod local;

use std::future::Future;

use crate::api::{FieldError, IpfsClusterSpec};
use crate::reconcile::{Action, HealthPolicy, RestartScope, RestartUnit, SwarmTarget};

/// What a runtime can do to a peer for the health engine.
pub trait PeerRuntime {
    /// The smallest thing this runtime restarts; the policy plans restarts (and guards the raft
    /// quorum) at that granularity.
    const RESTART_UNIT: RestartUnit;

    /// Restarts the daemons of `peer` in `scope` (a runtime whose unit is the peer restarts
    /// both, whatever the scope).
    fn restart(
        &mut self,
        peer: &str,
        scope: RestartScope,
        reason: &str,
    ) -> impl Future<Output = ()> + Send;

    /// Connects `peer`'s Kubo to each target's Kubo (`swarm/connect`).
    fn reconnect(
        &mut self,
        peer: &str,
        targets: &[SwarmTarget],
        reason: &str,
    ) -> impl Future<Output = ()> + Send;
}

/// Carries out one healing action on `runtime`. Failures are the runtime's to report (Events,
/// logs); the health engine judges the outcome on the next rounds.
pub async fn carry_out<R: PeerRuntime>(runtime: &mut R, action: &Action) {
    match action {
        Action::RestartPeer {
            peer,
            scope,
            reason,
        } => runtime.restart(peer, *scope, reason).await,
        Action::SwarmConnect {
            peer,
            targets,
            reason,
        } => runtime.reconnect(peer, targets, reason).await,
    }
}

/// The health policy of `spec` at `generation` as runtime `R` carries it out.
pub fn policy_for<R: PeerRuntime>(
    spec: &IpfsClusterSpec,
    generation: u64,
) -> Result<HealthPolicy, FieldError> {
    let mut policy = HealthPolicy::from_spec(spec, generation)?;
    policy.restart_unit = R::RESTART_UNIT;
    Ok(policy)
}
