//! The health engine end to end on real daemons: probes feed the pure policy, and the policy asks
//! for exactly the restart a user would expect.

use std::time::Duration;

use ipfs_kit_operator::probe::report::{PeerReport, ProcessState};
use ipfs_kit_operator::probe::{DEFAULT_CONCURRENCY, Endpoint, PeerTarget, Prober};
use ipfs_kit_operator::reconcile::policy::{
    Action, ClusterHistory, Consensus, HealthPolicy, RestartScope, UnixMillis, decide,
};
use nix::sys::signal::Signal;

use crate::support::ipfs::IpfsWorld;

const START: UnixMillis = 1_800_000_000_000;

struct Engine {
    prober: Prober,
    policy: HealthPolicy,
    history: ClusterHistory,
    now: UnixMillis,
}

impl Engine {
    fn new() -> Engine {
        let policy = HealthPolicy::new(3, Consensus::Crdt);
        Engine {
            prober: Prober::new(Duration::from_secs(1)).expect("prober"),
            history: ClusterHistory::default(),
            now: START,
            policy,
        }
    }

    /// One probe round of the world, with the process states a runtime's child watch would give,
    /// then one policy decision (the clock advances by one probe interval per round).
    async fn round(&mut self, world: &mut IpfsWorld) -> (Vec<PeerReport>, Vec<Action>) {
        let targets: Vec<PeerTarget> = world
            .peers
            .iter_mut()
            .map(|p| PeerTarget {
                peer: format!("peer-{}", p.index),
                kubo: Endpoint::new(&p.kubo_api),
                cluster: Endpoint::new(&p.cluster_api),
                kubo_process: state(p.kubo.is_running()),
                cluster_process: state(p.cluster.as_mut().is_some_and(|c| c.is_running())),
            })
            .collect();
        let reports = self.prober.round(&targets, DEFAULT_CONCURRENCY).await;
        self.now += self.policy.probe_interval.as_millis() as u64;
        let decision = decide(&self.policy, &reports, &self.history, self.now);
        self.history = decision.history;
        (reports, decision.actions)
    }
}

fn state(running: bool) -> ProcessState {
    if running {
        ProcessState::Running
    } else {
        ProcessState::Exited
    }
}

fn restarts(actions: &[Action]) -> Vec<(String, RestartScope)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::RestartPeer { peer, scope, .. } => Some((peer.clone(), *scope)),
            _ => None,
        })
        .collect()
}

/// Rounds until every peer probes healthy and the policy has nothing to do.
async fn settle(engine: &mut Engine, world: &mut IpfsWorld) {
    for _ in 0..20 {
        let (reports, actions) = engine.round(world).await;
        if actions.is_empty() && reports.iter().all(|r| r.kubo.is_ok() && r.cluster.is_ok()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the healthy cluster did not settle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_kubo_gets_exactly_one_restart_of_exactly_that_peer() {
    let mut world = IpfsWorld::start(3).await;
    let mut engine = Engine::new();
    settle(&mut engine, &mut world).await;

    world.peers[1].kubo.stop(Duration::from_secs(10));
    let (_, actions) = engine.round(&mut world).await;
    assert_eq!(
        restarts(&actions),
        [("peer-1".to_string(), RestartScope::Kubo)],
        "actions: {actions:?}"
    );
    // The restart is in progress: the next round does not ask again.
    let (_, actions) = engine.round(&mut world).await;
    assert!(restarts(&actions).is_empty(), "second round: {actions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_kubo_is_restarted_after_failure_threshold_rounds() {
    let mut world = IpfsWorld::start(3).await;
    let mut engine = Engine::new();
    settle(&mut engine, &mut world).await;

    world.peers[2].kubo.signal(Signal::SIGSTOP);
    let threshold = engine.policy.effective_failure_threshold();
    for round in 1..threshold {
        let (reports, actions) = engine.round(&mut world).await;
        assert!(
            reports[2].kubo.is_err(),
            "round {round}: peer 2 Kubo answered"
        );
        assert!(
            restarts(&actions).is_empty(),
            "round {round} < threshold: {actions:?}"
        );
    }
    let (_, actions) = engine.round(&mut world).await;
    world.peers[2].kubo.signal(Signal::SIGCONT);
    assert_eq!(
        restarts(&actions),
        [("peer-2".to_string(), RestartScope::Kubo)],
        "actions at the threshold: {actions:?}"
    );
}
