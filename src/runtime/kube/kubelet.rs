//! What kubelet and the scheduler say about the peer pods, for status: the restarts kubelet made
//! (it restarts exited containers itself), why a container exited (exit code, OOMKilled), and
//! why a pod does not run (not scheduled, e.g. an unbound claim; an image that cannot be pulled;
//! a container in CrashLoopBackOff). The probes only see that a peer does not answer; this says
//! why, in the peer's `lastError` and in the cluster's Ready and Degraded conditions.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::api::IpfsClusterStatus;

/// Waiting reasons that mean the container will not start without a change (or only after a
/// backoff): worth reporting. `ContainerCreating` and `PodInitializing` are the normal start.
const STUCK: [&str; 7] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "CrashLoopBackOff",
    "RunContainerError",
];

/// Why the pod does not run, if kubelet or the scheduler says: one line.
pub fn stuck(pod: &Pod) -> Option<String> {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let status = pod.status.as_ref()?;
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let unscheduled = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    if let Some(c) = unscheduled {
        return Some(format!(
            "pod {name} cannot be scheduled: {}",
            c.message
                .as_deref()
                .or(c.reason.as_deref())
                .unwrap_or("no reason given")
        ));
    }
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .map(|c| (c, "init container"))
        .chain(
            status
                .container_statuses
                .iter()
                .flatten()
                .map(|c| (c, "container")),
        );
    let stuck: Vec<String> = containers
        .filter_map(|(c, kind)| waiting(c).map(|why| format!("{kind} {} {why}", c.name)))
        .collect();
    (!stuck.is_empty()).then(|| format!("pod {name}: {}", stuck.join("; ")))
}

/// `is waiting: ImagePullBackOff: <kubelet's message>` for a stuck container.
fn waiting(c: &ContainerStatus) -> Option<String> {
    let w = c.state.as_ref()?.waiting.as_ref()?;
    let reason = w.reason.as_deref()?;
    if !STUCK.contains(&reason) {
        return None;
    }
    let mut text = format!("is waiting: {reason}");
    if let Some(m) = w.message.as_deref().filter(|m| !m.is_empty()) {
        text.push_str(&format!(": {}", first_line(m)));
    }
    if let Some(t) = c.last_state.as_ref().and_then(|s| s.terminated.as_ref()) {
        text.push_str(&format!(
            " (last exit: {}, exit code {})",
            t.reason.as_deref().unwrap_or("no reason given"),
            t.exit_code
        ));
    }
    Some(text)
}

fn first_line(text: &str) -> &str {
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(300) {
        Some((at, _)) => &line[..at],
        None => line,
    }
}

/// The lines for the cluster's conditions: one per pod that kubelet or the scheduler says does
/// not run.
pub fn problems(pods: &[Pod]) -> Vec<String> {
    pods.iter().filter_map(stuck).collect()
}

/// Adds what kubelet did and says to the peers' status: the restarts of their containers are
/// counted in `restarts`; a container that exited and is not back yet, or a pod that does not
/// run, is explained in `lastError` (before the probe's own error).
pub fn add_to_status(status: &mut IpfsClusterStatus, pods: &[Pod]) {
    for peer in &mut status.peers {
        let Some(pod) = pods.iter().find(|p| {
            p.metadata.name.as_deref() == Some(&peer.name)
                && p.metadata.deletion_timestamp.is_none()
        }) else {
            continue;
        };
        let mut why = Vec::new();
        if let Some(line) = stuck(pod) {
            why.push(line);
        }
        for c in pod
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
        {
            peer.restarts = peer.restarts.saturating_add(c.restart_count);
            let running_ready = c.ready && c.state.as_ref().is_some_and(|s| s.running.is_some());
            let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
            let waiting_reported = waiting(c).is_some();
            if let (false, false, Some(t)) = (running_ready, waiting_reported, last) {
                why.push(format!(
                    "{} container exited ({}, exit code {}); kubelet restarts it (restart {})",
                    c.name,
                    t.reason.as_deref().unwrap_or("no reason given"),
                    t.exit_code,
                    c.restart_count
                ));
            }
        }
        if !why.is_empty() {
            let mut text = why.join("; ");
            if let Some(probe) = &peer.last_error {
                text = format!("{text}; {probe}");
            }
            peer.last_error = Some(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PeerStatus;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        PodCondition, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn container(name: &str, restarts: i32, ready: bool) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            restart_count: restarts,
            ready,
            state: Some(ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..Default::default()
            }),
            last_state: (restarts > 0).then(|| ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 137,
                    reason: Some("Error".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(status: PodStatus) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-1".into()),
                ..Default::default()
            },
            status: Some(status),
            ..Default::default()
        }
    }

    fn status(restarts: i32, last_error: Option<&str>) -> IpfsClusterStatus {
        IpfsClusterStatus {
            peers: vec![PeerStatus {
                name: "web-1".into(),
                restarts,
                last_error: last_error.map(Into::into),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// A Kubo container killed and restarted by kubelet: counted in the peer's restarts, and
    /// explained (exit code, reason) until it is back and ready.
    #[test]
    fn kubelet_restarts_are_counted_and_explained() {
        let containers = |ready: bool| PodStatus {
            container_statuses: Some(vec![
                container("kubo", 1, ready),
                container("cluster", 0, true),
            ]),
            ..Default::default()
        };
        let mut starting = status(2, Some("Kubo RPC: unreachable"));
        add_to_status(&mut starting, &[pod(containers(false))]);
        let peer = &starting.peers[0];
        assert_eq!(peer.restarts, 3, "2 by the operator, 1 by kubelet");
        assert_eq!(
            peer.last_error.as_deref(),
            Some(
                "kubo container exited (Error, exit code 137); kubelet restarts it (restart 1); \
                 Kubo RPC: unreachable"
            )
        );
        let mut back = status(0, None);
        add_to_status(&mut back, &[pod(containers(true))]);
        assert_eq!(back.peers[0].restarts, 1);
        assert_eq!(back.peers[0].last_error, None);
    }

    /// Pods that do not run say why: not scheduled (an unbound claim), an image that cannot be
    /// pulled, a container in CrashLoopBackOff after an OOM kill.
    #[test]
    fn pods_that_do_not_run_are_explained() {
        let unscheduled = pod(PodStatus {
            phase: Some("Pending".into()),
            conditions: Some(vec![PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some("Unschedulable".into()),
                message: Some(
                    "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."
                        .into(),
                ),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert_eq!(
            stuck(&unscheduled).as_deref(),
            Some(
                "pod web-1 cannot be scheduled: 0/1 nodes are available: pod has unbound \
                 immediate PersistentVolumeClaims."
            )
        );
        let waiting = |reason: &str, message: &str, restarts: i32| {
            let mut c = container("kubo", restarts, false);
            c.state = Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.into()),
                    message: Some(message.into()),
                }),
                ..Default::default()
            });
            if let Some(t) = c.last_state.as_mut().and_then(|s| s.terminated.as_mut()) {
                t.reason = Some("OOMKilled".into());
            }
            pod(PodStatus {
                phase: Some("Pending".into()),
                container_statuses: Some(vec![c]),
                ..Default::default()
            })
        };
        let pull = waiting(
            "ImagePullBackOff",
            "Back-off pulling image \"ipfs/kubo:nope\"",
            0,
        );
        assert_eq!(
            stuck(&pull).as_deref(),
            Some(
                "pod web-1: container kubo is waiting: ImagePullBackOff: Back-off pulling image \
                 \"ipfs/kubo:nope\""
            )
        );
        let crash = waiting(
            "CrashLoopBackOff",
            "back-off 40s restarting failed container",
            3,
        );
        let mut s = status(0, None);
        add_to_status(&mut s, std::slice::from_ref(&crash));
        assert_eq!(
            s.peers[0].last_error.as_deref(),
            Some(
                "pod web-1: container kubo is waiting: CrashLoopBackOff: back-off 40s restarting \
                 failed container (last exit: OOMKilled, exit code 137)"
            )
        );
        assert_eq!(s.peers[0].restarts, 3);
        let normal = waiting("ContainerCreating", "", 0);
        assert_eq!(stuck(&normal), None);
        assert_eq!(problems(&[unscheduled, pull, normal, crash]).len(), 3);
    }
}
