//! Step `status`: the round's [`IpfsClusterStatus`] (computed by the runtime-neutral
//! [`crate::reconcile::status`]), exported as metrics and written by server-side apply only when
//! it changed.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::apply::FIELD_MANAGER;
use super::build;
use super::context::{Context, KubeCallError, kube_err};
use super::observe::Observation;
use crate::api::{IpfsCluster, IpfsClusterStatus};
use crate::reconcile::status::{Observed, compute, needs_write};
use crate::reconcile::{Assessment, UnixMillis};

/// The status could not be written.
pub type StatusError = KubeCallError;

/// Whether the StatefulSet is still creating or rolling pods, and why.
pub fn rollout(sts: Option<&StatefulSet>, desired: i32, pods: i32) -> Option<String> {
    let Some(sts) = sts else {
        return Some("the StatefulSet does not exist yet".into());
    };
    let status = sts.status.clone().unwrap_or_default();
    if sts.metadata.generation > status.observed_generation {
        return Some("the StatefulSet controller has not seen the latest spec yet".into());
    }
    if pods < desired {
        return Some(format!("{pods}/{desired} peer pods exist"));
    }
    if pods > desired {
        return Some(format!("scaling in: {pods} peer pods, {desired} wanted"));
    }
    let updated = status.updated_replicas.unwrap_or(0);
    if status.update_revision.is_some()
        && status.current_revision != status.update_revision
        && updated < desired
    {
        return Some(format!(
            "rolling out a new pod template: {updated}/{desired} peers updated"
        ));
    }
    None
}

/// What a round concluded about a cluster, for [`report`].
pub struct Round<'a> {
    pub statefulset: Option<&'a StatefulSet>,
    pub observed: &'a Observation,
    pub assessment: &'a Assessment,
    pub problems: &'a [String],
    pub now: UnixMillis,
}

/// Computes the status of the round, exports it as metrics and writes it when it changed.
pub async fn report(
    cluster: &IpfsCluster,
    round: Round<'_>,
    ns: &str,
    ctx: &Context,
) -> Result<(), StatusError> {
    let name = cluster.name_any();
    let pods = round.observed.alive();
    let mut status = compute(&Observed {
        generation: cluster.metadata.generation,
        replicas: cluster.spec.replicas,
        paused: cluster.spec.paused,
        selector: build::selector_string(&name),
        pods,
        rollout: rollout(round.statefulset, cluster.spec.replicas, pods),
        reports: &round.observed.reports,
        assessment: round.assessment,
        problems: round.problems,
        previous: cluster.status.as_ref(),
        now: round.now,
    });
    add_container_restarts(&mut status, &round.observed.pods);
    ctx.metrics
        .observe_cluster(&format!("{ns}/{name}"), &status);
    let refresh = ctx.settings.status_refresh;
    if needs_write(cluster.status.as_ref(), &status, round.now, refresh) {
        write(cluster, &status, ns, ctx).await?;
    }
    Ok(())
}

/// Adds what kubelet did to the peers' status: the restarts of their containers (kubelet restarts
/// an exited container by itself) are counted in `restarts`, and a container that exited and is
/// not back yet is explained in `lastError` (its exit code and reason, e.g. OOMKilled).
pub fn add_container_restarts(status: &mut IpfsClusterStatus, pods: &[Pod]) {
    for peer in &mut status.peers {
        let Some(pod) = pods.iter().find(|p| {
            p.metadata.name.as_deref() == Some(&peer.name)
                && p.metadata.deletion_timestamp.is_none()
        }) else {
            continue;
        };
        let containers = pod
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten());
        let mut exits = Vec::new();
        for c in containers {
            peer.restarts = peer.restarts.saturating_add(c.restart_count);
            let running_ready = c.ready && c.state.as_ref().is_some_and(|s| s.running.is_some());
            let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
            if let (false, Some(t)) = (running_ready, last) {
                exits.push(format!(
                    "{} container exited ({}, exit code {}); kubelet restarts it (restart {})",
                    c.name,
                    t.reason.as_deref().unwrap_or("no reason given"),
                    t.exit_code,
                    c.restart_count
                ));
            }
        }
        if !exits.is_empty() {
            let mut text = exits.join("; ");
            if let Some(probe) = &peer.last_error {
                text = format!("{text}; {probe}");
            }
            peer.last_error = Some(text);
        }
    }
}

/// Writes `status` by server-side apply with the operator's field manager.
async fn write(
    cluster: &IpfsCluster,
    status: &IpfsClusterStatus,
    ns: &str,
    ctx: &Context,
) -> Result<(), StatusError> {
    let name = cluster.name_any();
    let api: Api<IpfsCluster> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({
        "apiVersion": IpfsCluster::api_version(&()),
        "kind": IpfsCluster::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&name, &params, &Patch::Apply(&patch))
        .await
        .map_err(kube_err(
            &name,
            "writing the status of",
            "IpfsCluster",
            &name,
        ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{StatefulSetSpec, StatefulSetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn sts(
        generation: i64,
        observed: i64,
        current: &str,
        update: &str,
        updated: i32,
    ) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                generation: Some(generation),
                ..Default::default()
            },
            spec: StatefulSetSpec::default(),
            status: Some(StatefulSetStatus {
                observed_generation: Some(observed),
                current_revision: Some(current.into()),
                update_revision: Some(update.into()),
                updated_replicas: Some(updated),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_rollout_is_named_until_every_peer_runs_the_current_template() {
        assert_eq!(
            rollout(None, 3, 0).as_deref(),
            Some("the StatefulSet does not exist yet")
        );
        let stale = sts(2, 1, "a", "a", 3);
        assert!(rollout(Some(&stale), 3, 3).is_some_and(|r| r.contains("not seen the latest")));
        let settled = sts(2, 2, "a", "a", 3);
        assert_eq!(
            rollout(Some(&settled), 3, 2).as_deref(),
            Some("2/3 peer pods exist")
        );
        assert_eq!(
            rollout(Some(&settled), 3, 4).as_deref(),
            Some("scaling in: 4 peer pods, 3 wanted")
        );
        assert_eq!(rollout(Some(&settled), 3, 3), None);
        let rolling = sts(2, 2, "a", "b", 1);
        assert_eq!(
            rollout(Some(&rolling), 3, 3).as_deref(),
            Some("rolling out a new pod template: 1/3 peers updated")
        );
    }

    /// A Kubo container killed and restarted by kubelet: counted in the peer's restarts, and
    /// explained (exit code, reason) until it is back and ready.
    #[test]
    fn kubelet_restarts_are_counted_and_explained() {
        use crate::api::PeerStatus;
        use k8s_openapi::api::core::v1::{
            ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus,
            PodStatus,
        };
        let container = |name: &str, restarts: i32, ready: bool| ContainerStatus {
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
        };
        let pod = |ready: bool| Pod {
            metadata: ObjectMeta {
                name: Some("web-1".into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                container_statuses: Some(vec![
                    container("kubo", 1, ready),
                    container("cluster", 0, true),
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let status = |restarts: i32| IpfsClusterStatus {
            peers: vec![PeerStatus {
                name: "web-1".into(),
                restarts,
                last_error: Some("Kubo RPC: unreachable".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut starting = status(2);
        add_container_restarts(&mut starting, &[pod(false)]);
        let peer = &starting.peers[0];
        assert_eq!(peer.restarts, 3, "2 by the operator, 1 by kubelet");
        assert_eq!(
            peer.last_error.as_deref(),
            Some(
                "kubo container exited (Error, exit code 137); kubelet restarts it (restart 1); \
                 Kubo RPC: unreachable"
            )
        );
        let mut back = status(0);
        back.peers[0].last_error = None;
        add_container_restarts(&mut back, &[pod(true)]);
        assert_eq!(back.peers[0].restarts, 1);
        assert_eq!(back.peers[0].last_error, None);
    }
}
