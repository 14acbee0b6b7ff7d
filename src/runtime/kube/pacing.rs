//! Probe rounds on the probe interval. A reconcile runs on every change of a cluster's pods (a
//! rollout or a restart brings dozens within seconds), but the peers are probed once per
//! `spec.health.probeInterval`: a reconcile within the interval of the last round reuses that
//! round's answers for the peers whose pod is the same and that answered, and probes only the
//! others (a pod new or moved, a peer that did not answer: one coming up is seen at once; the
//! policy counts a failure once per interval however often it is probed). A dashboard "health
//! check now" request probes every peer at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;

use crate::api::IpfsCluster;
use crate::probe::PeerTarget;
use crate::probe::liveness::{HungSet, is_hung, overlay};
use crate::probe::report::PeerReport;

/// Rounds a little early (requeue jitter) count as due.
const SLACK: Duration = Duration::from_secs(1);

/// The last full round of a cluster: when, and each probed peer's report with the address it
/// was probed at.
#[derive(Clone, Debug)]
pub struct LastRound {
    pub at: Instant,
    pub reports: Vec<(String, PeerReport)>,
}

/// When each daemon of a peer last answered a probe (wall clock): a container that answered
/// since its start has come up, whatever kubelet's startup probe (run every 2 s, on its own
/// schedule) says yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Answered {
    pub kubo: Option<Timestamp>,
    pub cluster: Option<Timestamp>,
}

/// The daemons' last answers of a cluster's peers, by peer.
pub type AnsweredBy = BTreeMap<String, Answered>;

/// The last rounds of every cluster, and when each daemon last answered.
#[derive(Debug, Default)]
pub struct Rounds {
    last: Mutex<HashMap<ObjectRef<IpfsCluster>, LastRound>>,
    answered: Mutex<HashMap<ObjectRef<IpfsCluster>, AnsweredBy>>,
}

/// What a reconcile probes now, and what it takes from the last round.
#[derive(Debug)]
pub struct Plan {
    pub probe: Vec<PeerTarget>,
    pub reused: Vec<PeerReport>,
    /// Whether this is a full round (then it becomes the last round).
    pub full: bool,
}

/// Splits `targets` into those to probe now and the reports reused from `last`: all are probed
/// when `force`, when there is no last round or when it is at least `interval` old; otherwise only
/// the targets whose peer was not probed then at the same address, or did not answer then. A reused report takes the
/// process states the runtime reports now (kubelet's view is fresh on every reconcile).
pub fn plan(
    last: Option<&LastRound>,
    targets: Vec<PeerTarget>,
    interval: Duration,
    now: Instant,
    force: bool,
) -> Plan {
    let due = |l: &LastRound| now.saturating_duration_since(l.at) + SLACK >= interval;
    let Some(last) = last.filter(|l| !force && !due(l)) else {
        return Plan {
            probe: targets,
            reused: Vec::new(),
            full: true,
        };
    };
    let mut probe = Vec::new();
    let mut reused = Vec::new();
    for target in targets {
        let earlier = last.reports.iter().find(|(base, r)| {
            r.peer == target.peer
                && *base == target.kubo.base
                && r.kubo.is_ok()
                && r.cluster.is_ok()
        });
        match earlier {
            Some((_, report)) => reused.push(PeerReport {
                kubo_process: target.kubo_process,
                cluster_process: target.cluster_process,
                ..report.clone()
            }),
            None => probe.push(target),
        }
    }
    Plan {
        probe,
        reused,
        full: false,
    }
}

/// Splits the targets to probe: those with a hung daemon and an earlier report are not probed but
/// judged on that report, the hung daemons marked as not answering (each with the address
/// probed); the others are probed.
pub fn judge_hung(
    last: Option<&LastRound>,
    probe: Vec<PeerTarget>,
    hung: &HungSet,
) -> (Vec<PeerTarget>, Vec<(String, PeerReport)>) {
    let mut rest = Vec::new();
    let mut judged = Vec::new();
    for target in probe {
        let earlier = last
            .filter(|_| is_hung(hung, &target.peer))
            .and_then(|l| l.reports.iter().find(|(_, r)| r.peer == target.peer));
        match earlier {
            Some((_, report)) => {
                let mut report = PeerReport {
                    kubo_process: target.kubo_process,
                    cluster_process: target.cluster_process,
                    ..report.clone()
                };
                overlay(&mut report, hung);
                judged.push((target.kubo.base.clone(), report));
            }
            None => rest.push(target),
        }
    }
    (rest, judged)
}

impl Rounds {
    pub fn last(&self, cluster: &ObjectRef<IpfsCluster>) -> Option<LastRound> {
        self.last.lock().ok()?.get(cluster).cloned()
    }

    /// When each daemon of `cluster`'s peers last answered.
    pub fn answered(&self, cluster: &ObjectRef<IpfsCluster>) -> AnsweredBy {
        self.answered
            .lock()
            .ok()
            .and_then(|a| a.get(cluster).cloned())
            .unwrap_or_default()
    }

    /// Notes the daemons that answered in `probed`, a round that started at `at`.
    pub fn heard(
        &self,
        cluster: &ObjectRef<IpfsCluster>,
        probed: &[(String, PeerReport)],
        at: Timestamp,
    ) {
        let Ok(mut answered) = self.answered.lock() else {
            return;
        };
        let peers = answered.entry(cluster.clone()).or_default();
        for (_, report) in probed {
            let a = peers.entry(report.peer.clone()).or_default();
            if report.kubo.is_ok() {
                a.kubo = Some(at);
            }
            if report.cluster.is_ok() {
                a.cluster = Some(at);
            }
        }
    }

    /// Notes who answered in `probed` and records the round that started `at` (a full one with
    /// the `judged` reports too); the reports recorded.
    pub fn keep(
        &self,
        cluster: &ObjectRef<IpfsCluster>,
        full: bool,
        probed: Vec<(String, PeerReport)>,
        judged: &[(String, PeerReport)],
        at: (Instant, Timestamp),
    ) -> Vec<(String, PeerReport)> {
        self.heard(cluster, &probed, at.1);
        let mut recorded = probed;
        if full {
            recorded.extend(judged.iter().cloned());
        }
        self.record(cluster.clone(), full, &recorded, at.0);
        recorded
    }

    /// Records a round: a full one replaces the last round; a partial one adds its reports to it
    /// (keeping its time).
    pub fn record(
        &self,
        cluster: ObjectRef<IpfsCluster>,
        full: bool,
        probed: &[(String, PeerReport)],
        now: Instant,
    ) {
        let Ok(mut rounds) = self.last.lock() else {
            return;
        };
        if full {
            rounds.insert(
                cluster,
                LastRound {
                    at: now,
                    reports: probed.to_vec(),
                },
            );
        } else if let Some(last) = rounds.get_mut(&cluster) {
            for (base, report) in probed {
                last.reports.retain(|(_, r)| r.peer != report.peer);
                last.reports.push((base.clone(), report.clone()));
            }
        }
    }

    pub fn forget(&self, cluster: &ObjectRef<IpfsCluster>) {
        if let Ok(mut rounds) = self.last.lock() {
            rounds.remove(cluster);
        }
        if let Ok(mut answered) = self.answered.lock() {
            answered.remove(cluster);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Endpoint;
    use crate::probe::report::{FailureKind, ProbeFailure, ProcessState};

    fn target(peer: &str, ip: &str) -> PeerTarget {
        PeerTarget {
            peer: peer.into(),
            kubo: Endpoint::at(ip, 5001),
            cluster: Endpoint::at(ip, 9094),
            kubo_process: ProcessState::Running,
            cluster_process: ProcessState::Running,
        }
    }

    /// A report of a peer that answered (`up`) or timed out.
    fn report(peer: &str, up: bool) -> PeerReport {
        let mut r = crate::reconcile::connectivity::tests::mesh(1).remove(0);
        r.peer = peer.into();
        if !up {
            let failure = ProbeFailure {
                kind: FailureKind::Timeout,
                message: format!("{peer} timed out"),
            };
            r.kubo = Err(failure.clone());
            r.cluster = Err(failure);
        }
        r
    }

    fn last(at: Instant) -> LastRound {
        LastRound {
            at,
            reports: vec![
                ("http://10.0.0.1:5001".into(), report("p-0", true)),
                ("http://10.0.0.2:5001".into(), report("p-1", true)),
                ("http://10.0.0.4:5001".into(), report("p-3", false)),
            ],
        }
    }

    fn peers(targets: &[PeerTarget]) -> Vec<&str> {
        targets.iter().map(|t| t.peer.as_str()).collect()
    }

    /// Reconciles within the interval reuse the answers of the pods that are the same and probe
    /// the new ones; a due round, a forced one or the first one probes every peer.
    #[test]
    fn a_reconcile_within_the_interval_probes_only_new_pods() {
        let t0 = Instant::now();
        let interval = Duration::from_secs(10);
        let targets = || {
            vec![
                target("p-0", "10.0.0.1"),
                target("p-1", "10.0.0.9"),
                target("p-2", "10.0.0.3"),
                target("p-3", "10.0.0.4"),
            ]
        };
        let soon = plan(
            Some(&last(t0)),
            targets(),
            interval,
            t0 + Duration::from_secs(2),
            false,
        );
        assert!(!soon.full);
        assert_eq!(
            peers(&soon.probe),
            ["p-1", "p-2", "p-3"],
            "p-1 moved, p-2 is new, p-3 did not answer"
        );
        assert_eq!(soon.reused.len(), 1);
        assert_eq!(soon.reused[0].peer, "p-0");
        let due = plan(
            Some(&last(t0)),
            targets(),
            interval,
            t0 + Duration::from_millis(9_500),
            false,
        );
        assert!(due.full && due.probe.len() == 4 && due.reused.is_empty());
        let forced = plan(
            Some(&last(t0)),
            targets(),
            interval,
            t0 + Duration::from_secs(1),
            true,
        );
        assert!(forced.full && forced.probe.len() == 4);
        let first = plan(None, targets(), interval, t0, false);
        assert!(first.full && first.probe.len() == 4);
    }

    /// A reused report carries the process states kubelet reports now.
    #[test]
    fn reused_reports_take_the_current_process_states() {
        let t0 = Instant::now();
        let mut t = target("p-0", "10.0.0.1");
        t.kubo_process = ProcessState::Restarting;
        let p = plan(
            Some(&last(t0)),
            vec![t],
            Duration::from_secs(10),
            t0 + Duration::from_secs(1),
            false,
        );
        assert_eq!(p.reused[0].kubo_process, ProcessState::Restarting);
        assert!(p.reused[0].kubo.is_ok(), "the answer of the last round");
    }

    /// A peer with a hung daemon and an earlier answer is judged on it, not probed again; the
    /// others (and a hung peer never heard from) are probed.
    #[test]
    fn a_hung_peer_is_judged_on_its_last_answers_without_a_probe() {
        use crate::probe::liveness::{DaemonApi, HungSet};
        let mut hung = HungSet::new();
        let why = ProbeFailure {
            kind: FailureKind::Timeout,
            message: "hung: no answer to 3 liveness pings in a row".into(),
        };
        hung.insert(("p-0".into(), DaemonApi::Kubo), why.clone());
        hung.insert(("p-2".into(), DaemonApi::Kubo), why.clone());
        let l = last(Instant::now());
        let targets = vec![
            target("p-0", "10.0.0.1"),
            target("p-1", "10.0.0.2"),
            target("p-2", "10.0.0.3"),
        ];
        let (probe, judged) = judge_hung(Some(&l), targets, &hung);
        assert_eq!(peers(&probe), ["p-1", "p-2"], "p-2 has no earlier answer");
        assert_eq!(judged.len(), 1);
        let (base, report) = &judged[0];
        assert_eq!(base, "http://10.0.0.1:5001");
        assert_eq!(report.kubo.as_ref().err(), Some(&why));
        assert!(report.cluster.is_ok(), "IPFS Cluster still answers");
        let (probe, judged) = judge_hung(None, vec![target("p-0", "10.0.0.1")], &hung);
        assert_eq!((probe.len(), judged.len()), (1, 0), "no round yet: probed");
    }

    #[test]
    fn a_partial_round_adds_to_the_last_one_and_keeps_its_time() {
        let rounds = Rounds::default();
        let key = ObjectRef::<IpfsCluster>::new("web").within("ns");
        let t0 = Instant::now();
        rounds.record(key.clone(), true, &last(t0).reports, t0);
        let moved = ("http://10.0.0.9:5001".to_owned(), report("p-1", true));
        rounds.record(key.clone(), false, &[moved], t0 + Duration::from_secs(3));
        let l = rounds.last(&key).expect("last round");
        assert_eq!(l.at, t0);
        let bases: Vec<&str> = l.reports.iter().map(|(b, _)| b.as_str()).collect();
        assert_eq!(
            bases,
            [
                "http://10.0.0.1:5001",
                "http://10.0.0.4:5001",
                "http://10.0.0.9:5001"
            ]
        );
        let at: Timestamp = "2026-11-30T10:00:00Z".parse().expect("timestamp");
        rounds.heard(&key, &last(t0).reports, at);
        let answered = rounds.answered(&key);
        assert_eq!(answered["p-0"].kubo, Some(at));
        assert_eq!(answered["p-3"], Answered::default(), "p-3 did not answer");
        rounds.forget(&key);
        assert!(rounds.last(&key).is_none());
        assert!(rounds.answered(&key).is_empty());
    }
}
