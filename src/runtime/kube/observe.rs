//! Step `observe`: the cluster's pods (from the watch cache, or listed when the cache is not
//! filled yet) and one probe round of the peers that run with an IP. Peers without a running
//! pod are reported without being dialled.

use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::ObjectRef;

use super::build::{self, Names};
use super::context::{Context, KubeCallError, kube_err};
use super::pacing;
use crate::api::IpfsCluster;
use crate::api::cluster::{CLUSTER_REST_PORT, KUBO_RPC_PORT};
use crate::probe::liveness;
use crate::probe::report::{FailureKind, PeerReport, ProbeFailure, ProcessState};
use crate::probe::{Endpoint, PeerTarget};
use crate::reconcile::HealthPolicy;

/// The pods could not be listed.
pub type ObserveError = KubeCallError;

/// What one round saw of a cluster's peers.
#[derive(Debug)]
pub struct Observation {
    /// The cluster's pods (being deleted ones included).
    pub pods: Vec<Pod>,
    /// One report per desired peer, in ordinal order.
    pub reports: Vec<PeerReport>,
    /// The peers with a pod to probe.
    pub targets: Vec<PeerTarget>,
    /// Whether a daemon was hung in this round.
    pub hung: bool,
}

impl Observation {
    /// Pods that exist and are not being deleted.
    pub fn alive(&self) -> i32 {
        let n = self
            .pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .count();
        i32::try_from(n).unwrap_or(i32::MAX)
    }

    /// The IP of `peer`'s pod, if it has one.
    pub fn pod_ip(&self, peer: &str) -> Option<&str> {
        self.pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(peer))
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.pod_ip.as_deref())
    }
}

/// The cluster's pods: from the cache once it is filled, else listed.
async fn cluster_pods(name: &str, ns: &str, ctx: &Context) -> Result<Vec<Pod>, ObserveError> {
    if ctx.caches.pods_ready() {
        return Ok(ctx.caches.pods_of(ns, name));
    }
    let selector = build::selector_string(name);
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    Ok(api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(kube_err(name, "listing", "Pods", &selector))?
        .items)
}

/// Reads the cluster's pods and probes its peers with the policy's timeout: all of them once per
/// probe interval or when `force`, in between only those whose pod is new or moved or that did
/// not answer (see [`pacing`]).
pub async fn peers(
    cluster: &IpfsCluster,
    names: &Names,
    ns: &str,
    policy: &HealthPolicy,
    ctx: &Context,
    force: bool,
) -> Result<Observation, ObserveError> {
    let pods = cluster_pods(&cluster.name_any(), ns, ctx).await?;
    let now = k8s_openapi::jiff::Timestamp::now();
    let key = ObjectRef::from_obj(cluster);
    let answered = ctx.rounds.answered(&key);
    let containers = Containers {
        now,
        grace: policy.restart_timeout,
        answered: &answered,
    };
    let (targets, mut reports) = probe_targets(names, cluster.spec.replicas, &pods, containers);
    // Once per probe interval (see `pacing`), unless a request asks for a probe now.
    let started = Instant::now();
    let pinged = targets.clone();
    let last = ctx.rounds.last(&key);
    let (hung, changes) = ctx.pings.hung(&key);
    let plan = pacing::plan(
        last.as_ref(),
        targets,
        policy.probe_interval,
        started,
        force,
    );
    let (probe, mut reused, full) = (plan.probe, plan.reused, plan.full);
    // A hung daemon is judged on the pings' word (its last answers, marked as not answering),
    // not probed again: its probes would only time out.
    let (probe, judged) = pacing::judge_hung(last.as_ref(), probe, &hung);
    let prober = ctx
        .ipfs
        .prober(policy.probe_timeout)
        .timed(ctx.metrics.probe_durations.clone());
    let probing = probe_all(prober, probe.clone(), ctx.settings.probe_concurrency);
    // A daemon found hung while the round waits on it cuts the round short.
    let probed = match changes {
        Some(mut changes) => tokio::select! {
            probed = probing => Some(probed),
            () = liveness::newly_hung(&mut changes, &hung) => None,
        },
        None => Some(probing.await),
    };
    let any_hung = !hung.is_empty() || probed.is_none();
    let (probed, judged) = match probed {
        Some(probed) => {
            for r in &mut reused {
                liveness::overlay(r, &hung);
            }
            (probed, judged)
        }
        None => (
            Vec::new(),
            cut_short(last.as_ref(), probe, &mut reused, || ctx.pings.hung(&key).0),
        ),
    };
    let recorded = ctx.rounds.keep(&key, full, probed, &judged, (started, now));
    reports.extend(recorded.into_iter().map(|(_, report)| report));
    if !full {
        reports.extend(judged.into_iter().map(|(_, report)| report));
    }
    reports.append(&mut reused);
    ctx.pings
        .watch(&key, liveness::targets_of(&pinged, &reports));
    reports.sort_by_key(|r| ordinal(&r.peer));
    Ok(Observation {
        pods,
        reports,
        targets: pinged,
        hung: any_hung,
    })
}

/// Probes `targets`, at most `concurrency` at once; each report with the address probed. Owned
/// per-target futures (rather than `Prober::round`, which borrows), so that the reconcile future is
/// provably `Send`.
async fn probe_all(
    prober: crate::probe::Prober,
    targets: Vec<PeerTarget>,
    concurrency: usize,
) -> Vec<(String, PeerReport)> {
    futures::stream::iter(targets)
        .map(|target| {
            let prober = prober.clone();
            async move { (target.kubo.base.clone(), prober.peer(&target).await) }
        })
        .buffered(concurrency.max(1))
        .collect()
        .await
}

/// The reports of a round cut short by a daemon found hung: the reused ones and those of the
/// peers that were being probed judged on their last answers with the daemons `hung_now`; a peer
/// with no earlier answer counts as starting (no failure is counted; the next round probes it).
fn cut_short(
    last: Option<&pacing::LastRound>,
    probe: Vec<PeerTarget>,
    reused: &mut [PeerReport],
    hung_now: impl FnOnce() -> liveness::HungSet,
) -> Vec<(String, PeerReport)> {
    let hung = &hung_now();
    for r in reused.iter_mut() {
        liveness::overlay(r, hung);
    }
    let (rest, mut judged) = pacing::judge_hung(last, probe, hung);
    judged.extend(rest.iter().map(|target| {
        let mut report = unprobed(
            &target.peer,
            "not probed: the round was cut short by a hung daemon".into(),
        );
        report.kubo_process = ProcessState::Starting;
        report.cluster_process = ProcessState::Starting;
        (target.kubo.base.clone(), report)
    }));
    judged
}

fn ordinal(peer: &str) -> i64 {
    peer.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(i64::MAX)
}

/// The report of a peer that is not probed: both APIs unreachable for `why`. Its pod does not
/// exist, is being replaced or is not running yet: the StatefulSet controller and kubelet are
/// on it (a rollout, a scale-out, a restart), so its processes are `Starting`, which the policy
/// neither counts as failures nor restarts. (A pod that stays Pending is explained in status.)
fn unprobed(peer: &str, why: String) -> PeerReport {
    let failure = ProbeFailure {
        kind: FailureKind::Unreachable,
        message: why,
    };
    PeerReport {
        peer: peer.to_owned(),
        kubo_process: ProcessState::Starting,
        cluster_process: ProcessState::Starting,
        kubo: Err(failure.clone()),
        cluster: Err(failure),
    }
}

/// How containers are judged: kubelet restarts exited containers itself (the peer pods'
/// restart policy is Always), and a container (re)started less than `grace` ago that has not come
/// up yet (its startup probe, or without one its readiness probe, does not pass, and its daemon
/// has not answered the operator's probes since) is still starting.
#[derive(Clone, Copy, Debug)]
pub struct Containers<'a> {
    pub now: k8s_openapi::jiff::Timestamp,
    pub grace: std::time::Duration,
    /// When each peer's daemons last answered the operator's probes.
    pub answered: &'a pacing::AnsweredBy,
}

impl Containers<'_> {
    /// Whether the daemon of container `name` of `pod` answered a probe after `started`.
    fn answered_since(self, pod: &Pod, name: &str, started: k8s_openapi::jiff::Timestamp) -> bool {
        let Some(a) = pod
            .metadata
            .name
            .as_deref()
            .and_then(|peer| self.answered.get(peer))
        else {
            return false;
        };
        let at = if name == "kubo" { a.kubo } else { a.cluster };
        at.is_some_and(|at| at > started)
    }

    /// What kubelet says of container `name` of `pod`.
    fn state(self, pod: &Pod, name: &str) -> ProcessState {
        let Some(c) = pod
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
            .find(|c| c.name == name)
        else {
            return ProcessState::Unknown;
        };
        let Some(state) = c.state.as_ref() else {
            return ProcessState::Unknown;
        };
        if let Some(running) = &state.running {
            let young = running.started_at.as_ref().is_some_and(|t| {
                let age = self.now.duration_since(t.0);
                age.is_negative() || age.unsigned_abs() < self.grace
            });
            let came_up = has_started(pod, c)
                || running
                    .started_at
                    .as_ref()
                    .is_some_and(|t| self.answered_since(pod, name, t.0));
            return if young && !came_up {
                ProcessState::Starting
            } else {
                ProcessState::Running
            };
        }
        let restarted_by_kubelet = pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .is_none_or(|p| p == "Always");
        match (state.terminated.is_some(), state.waiting.is_some()) {
            (true, _) if !restarted_by_kubelet => ProcessState::Exited,
            (true, _) => ProcessState::Restarting,
            // Created, not run yet (ContainerCreating) or waiting to run again (CrashLoopBackOff).
            (false, true) if c.restart_count == 0 && c.last_state.is_none() => {
                ProcessState::Starting
            }
            (false, true) => ProcessState::Restarting,
            (false, false) => ProcessState::Unknown,
        }
    }
}

/// Whether kubelet says container `c` of `pod` has come up since its (re)start: its startup probe
/// passed (`started`; then an unready container is a daemon that stopped answering, not one still
/// starting), or, for a container without a startup probe, it is ready.
fn has_started(pod: &Pod, c: &k8s_openapi::api::core::v1::ContainerStatus) -> bool {
    let startup_probe = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .any(|spec| spec.name == c.name && spec.startup_probe.is_some());
    if startup_probe {
        c.started == Some(true)
    } else {
        c.ready
    }
}

/// The peers to probe (pods running with an IP) and the reports of peers that cannot be probed
/// (no pod, no IP yet, being deleted), which are never dialled. A pod not created yet, or deleted
/// and being recreated by the StatefulSet, is no reason to restart (deleting it again would not
/// help): its processes are Unknown.
pub fn probe_targets(
    names: &Names,
    replicas: i32,
    pods: &[Pod],
    containers: Containers<'_>,
) -> (Vec<PeerTarget>, Vec<PeerReport>) {
    let mut targets = Vec::new();
    let mut reports = Vec::new();
    for ordinal in 0..replicas {
        let peer = names.peer(ordinal);
        let Some(pod) = pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(&peer))
        else {
            reports.push(unprobed(&peer, format!("pod {peer} does not exist (yet)")));
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            reports.push(unprobed(&peer, format!("pod {peer} is being deleted")));
            continue;
        }
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
        let ip = status.and_then(|s| s.pod_ip.as_deref());
        let Some(ip) = ip.filter(|_| phase == "Running") else {
            let why = format!("pod {peer} is {phase}, not running with an IP yet");
            reports.push(unprobed(&peer, why));
            continue;
        };
        targets.push(PeerTarget {
            peer: peer.clone(),
            kubo: Endpoint::at(ip, KUBO_RPC_PORT),
            cluster: Endpoint::at(ip, CLUSTER_REST_PORT),
            kubo_process: containers.state(pod, "kubo"),
            cluster_process: containers.state(pod, "cluster"),
        });
    }
    (targets, reports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        ContainerStatus, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(name: &str, phase: &str, ip: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some(phase.into()),
                pod_ip: ip.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    static NOT_ANSWERED: pacing::AnsweredBy = pacing::AnsweredBy::new();

    fn containers() -> Containers<'static> {
        Containers {
            now: "2026-11-30T10:00:00Z".parse().expect("timestamp"),
            grace: std::time::Duration::from_secs(300),
            answered: &NOT_ANSWERED,
        }
    }

    fn with_container(state: ContainerState, ready: bool, restarts: i32) -> Pod {
        let mut p = pod("web-0", "Running", Some("10.244.0.7"));
        if let Some(s) = p.status.as_mut() {
            s.container_statuses = Some(vec![ContainerStatus {
                name: "kubo".into(),
                state: Some(state),
                ready,
                restart_count: restarts,
                ..Default::default()
            }]);
        }
        p
    }

    fn running_since(at: &str) -> ContainerState {
        ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(at.parse().expect("timestamp"))),
            }),
            ..Default::default()
        }
    }

    /// A Kubo container started at 09:59:30 with a startup probe, which kubelet says passed
    /// (`started`) or not, and ready or not.
    fn probed(started: bool, ready: bool) -> Pod {
        let mut p = with_container(running_since("2026-11-30T09:59:30Z"), ready, 0);
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            containers: vec![k8s_openapi::api::core::v1::Container {
                name: "kubo".into(),
                startup_probe: Some(Default::default()),
                ..Default::default()
            }],
            ..Default::default()
        });
        if let Some(cs) = p
            .status
            .as_mut()
            .and_then(|s| s.container_statuses.as_mut())
        {
            cs[0].started = Some(started);
        }
        p
    }

    /// Kubo answered the operator after its container's start, before kubelet's startup probe
    /// ran again: it came up, and not answering now is a failure, not a slow start.
    #[test]
    fn a_daemon_that_answered_since_its_start_has_come_up() {
        let c = containers();
        assert_eq!(
            c.state(&probed(false, false), "kubo"),
            ProcessState::Starting
        );
        let at = |t: &str| Some(t.parse().expect("timestamp"));
        let mut answered = pacing::AnsweredBy::new();
        answered.insert(
            "web-0".into(),
            pacing::Answered {
                kubo: at("2026-11-30T09:59:40Z"),
                cluster: None,
            },
        );
        let heard = Containers {
            answered: &answered,
            ..c
        };
        assert_eq!(
            heard.state(&probed(false, false), "kubo"),
            ProcessState::Running
        );
        answered.insert(
            "web-0".into(),
            pacing::Answered {
                kubo: at("2026-11-30T09:59:00Z"),
                cluster: None,
            },
        );
        let before = Containers {
            answered: &answered,
            ..c
        };
        assert_eq!(
            before.state(&probed(false, false), "kubo"),
            ProcessState::Starting,
            "an answer from before this start says nothing of it"
        );
    }

    /// Exited containers are kubelet's to restart, a container kubelet does not call ready is
    /// starting for `grace` after its start, then it is judged by the probes like any other;
    /// only a pod that kubelet does not restart (restartPolicy Never) makes an exit final.
    #[test]
    fn container_states_follow_kubelet() {
        let c = containers();
        let state = |p: &Pod| c.state(p, "kubo");
        let fresh = with_container(running_since("2026-11-30T09:59:30Z"), false, 1);
        assert_eq!(state(&fresh), ProcessState::Starting);
        let ready = with_container(running_since("2026-11-30T09:59:30Z"), true, 1);
        assert_eq!(state(&ready), ProcessState::Running);
        let old = with_container(running_since("2026-11-30T09:00:00Z"), false, 0);
        assert_eq!(
            state(&old),
            ProcessState::Running,
            "past the grace: probes decide"
        );
        // With a startup probe: starting until it passes; then unready means not answering.
        assert_eq!(state(&probed(false, false)), ProcessState::Starting);
        assert_eq!(
            state(&probed(true, false)),
            ProcessState::Running,
            "came up, then stopped answering kubelet: the probes decide"
        );
        let crashloop = ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("CrashLoopBackOff".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            state(&with_container(crashloop.clone(), false, 4)),
            ProcessState::Restarting
        );
        assert_eq!(
            state(&with_container(crashloop, false, 0)),
            ProcessState::Starting,
            "created, never run yet"
        );
        let exited = ContainerState {
            terminated: Some(ContainerStateTerminated::default()),
            ..Default::default()
        };
        let mut never = with_container(exited, false, 0);
        never.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            restart_policy: Some("Never".into()),
            ..Default::default()
        });
        assert_eq!(state(&never), ProcessState::Exited);
        assert_eq!(state(&pod("web-0", "Running", None)), ProcessState::Unknown);
    }

    #[test]
    fn only_running_pods_with_an_ip_are_dialled() {
        let names = Names::of("web");
        let mut exited = pod("web-2", "Running", Some("10.244.0.7"));
        if let Some(s) = exited.status.as_mut() {
            s.container_statuses = Some(vec![ContainerStatus {
                name: "kubo".into(),
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated::default()),
                    ..Default::default()
                }),
                ..Default::default()
            }]);
        }
        let pods = [pod("web-0", "Pending", None), exited];
        let (targets, reports) = probe_targets(&names, 4, &pods, containers());
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].kubo.base, "http://10.244.0.7:5001");
        assert_eq!(targets[0].cluster.base, "http://10.244.0.7:9094");
        // kubelet restarts it (restart policy Always): not the operator's restart to make.
        assert_eq!(targets[0].kubo_process, ProcessState::Restarting);
        assert_eq!(targets[0].cluster_process, ProcessState::Unknown);
        let why: Vec<String> = reports
            .iter()
            .map(|r| {
                r.kubo
                    .as_ref()
                    .err()
                    .map(|f| f.message.clone())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(
            why,
            [
                "pod web-0 is Pending, not running with an IP yet",
                "pod web-1 does not exist (yet)",
                "pod web-3 does not exist (yet)"
            ]
        );
    }
}
