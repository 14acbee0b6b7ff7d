//! Step `status`: the round's [`IpfsClusterStatus`] (computed by the runtime-neutral
//! [`crate::reconcile::status`]), exported as metrics and written by server-side apply only when
//! it changed.

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::apply::FIELD_MANAGER;
use super::build;
use super::context::{Context, KubeCallError, kube_err};
use super::observe::Observation;
use kube::runtime::events::EventType;

use crate::alerts::{Facts, rules};
use crate::api::{ClusterAlert, IpfsCluster, IpfsClusterStatus};
use crate::metrics::{ClusterKey, ClusterReport, healing_budgets};
use crate::reconcile::status::{Observed, Upgrade, compute, needs_write};
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

/// The history's sampling interval when the spec's cannot be read.
const PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// What a round concluded about a cluster, for [`report`].
pub struct Round<'a> {
    pub statefulset: Option<&'a StatefulSet>,
    pub observed: &'a Observation,
    pub assessment: &'a Assessment,
    pub problems: &'a [String],
    /// The gated rollout of a new pod template, if one is under way or stalled.
    pub upgrade: Option<Upgrade>,
    /// The health policy's restart budget per peer and hour.
    pub max_restarts_per_hour: u32,
    pub now: UnixMillis,
    /// A client asked for this round (`POST /health/check`): its probe times are written even
    /// when nothing else changed, so that the client sees the round.
    pub requested: bool,
}

/// What [`report`] computed and did.
pub struct Reported {
    /// The health score.
    pub score: Option<i32>,
    /// Whether it wrote the status.
    pub written: bool,
    /// The cluster's resourceVersion after that write (the same as before when it changed
    /// nothing).
    pub version: Option<String>,
    /// Whether a rollout, a scale or a gated upgrade is under way.
    pub rolling: bool,
}

/// Computes the status of the round, exports it as metrics and writes it when it changed (or
/// the round was requested).
pub async fn report(
    cluster: &IpfsCluster,
    round: Round<'_>,
    ns: &str,
    ctx: &Context,
) -> Result<Reported, StatusError> {
    let name = cluster.name_any();
    let pods = round.observed.alive();
    let rolling = rollout(round.statefulset, cluster.spec.replicas, pods);
    let upgrading = round.upgrade.is_some();
    let mut status = compute(&Observed {
        generation: cluster.metadata.generation,
        replicas: cluster.spec.replicas,
        paused: cluster.spec.paused,
        selector: build::selector_string(&name),
        pods,
        // The gate's account of a rollout says more than the StatefulSet's counts.
        rollout: rolling.clone().filter(|_| !upgrading),
        upgrade: round.upgrade.clone(),
        reports: &round.observed.reports,
        assessment: round.assessment,
        problems: round.problems,
        previous: cluster.status.as_ref(),
        now: round.now,
    });
    super::kubelet::add_to_status(&mut status, &round.observed.pods);
    let transitions = alerts(cluster, &mut status, round.assessment, ns, ctx, round.now);
    ctx.metrics
        .report(metrics_report(cluster, &round, ns, &status));
    // Validated before the round: the default only if the spec changed since.
    let interval = cluster
        .spec
        .health
        .probe_interval()
        .unwrap_or(PROBE_INTERVAL);
    ctx.latest
        .observe(&format!("{ns}/{name}"), interval, &status);
    let refresh = ctx.settings.status_refresh;
    let written =
        round.requested || needs_write(cluster.status.as_ref(), &status, round.now, refresh);
    let version = if written {
        write(cluster, &status, ns, ctx).await?
    } else {
        None
    };
    for t in transitions {
        let (type_, reason) = if t.is_firing() {
            (EventType::Warning, ALERT_FIRING)
        } else {
            (EventType::Normal, ALERT_RESOLVED)
        };
        ctx.event(cluster, type_, reason, t.summary).await;
    }
    Ok(Reported {
        score: status.health_score,
        written,
        version,
        rolling: rolling.is_some() || upgrading,
    })
}

/// What the metrics export of this round: the status, the claims' size (the spec's
/// `kubo.storage.size`, which every peer's claim requests) and the restarts left per peer.
fn metrics_report<'a>(
    cluster: &IpfsCluster,
    round: &Round<'_>,
    ns: &str,
    status: &'a IpfsClusterStatus,
) -> ClusterReport<'a> {
    let claim = cluster
        .spec
        .kubo
        .storage
        .size_bytes()
        .ok()
        .and_then(|b| u64::try_from(b).ok());
    let history = &round.assessment.decision.history;
    let volume_capacity = status
        .peers
        .iter()
        .filter_map(|p| Some((p.name.clone(), claim?)))
        .collect();
    let healing_budget = healing_budgets(status, history, round.max_restarts_per_hour, round.now);
    ClusterReport {
        cluster: ClusterKey::kube(ns, &cluster.name_any()),
        desired_peers: cluster.spec.replicas,
        status,
        volume_capacity,
        healing_budget,
    }
}

/// Reason of the Event of an alert that started firing (Warning).
pub const ALERT_FIRING: &str = "AlertFiring";
/// Reason of the Event of an alert that resolved (Normal).
pub const ALERT_RESOLVED: &str = "AlertResolved";

/// This round's alerts (see [`crate::alerts`]) into `status.alerts`; returns the transitions
/// (already logged and queued for the webhook).
fn alerts(
    cluster: &IpfsCluster,
    status: &mut IpfsClusterStatus,
    assessment: &Assessment,
    ns: &str,
    ctx: &Context,
    now: UnixMillis,
) -> Vec<ClusterAlert> {
    let max = u32::try_from(cluster.spec.health.max_restarts_per_hour).unwrap_or(0);
    let history = &assessment.decision.history;
    let budget = rules::budget_left(status, history, max, now);
    let capacity = cluster.spec.kubo.storage.size_bytes().ok();
    let previous = std::mem::take(&mut status.alerts);
    let name = cluster.name_any();
    let facts = Facts {
        namespace: Some(ns),
        cluster: &name,
        status,
        budget_left: &budget,
        volume_capacity: capacity.map(|c| u64::try_from(c).unwrap_or(u64::MAX)),
    };
    let round = ctx.alerter.round(&facts, &previous, now);
    status.alerts = round.alerts;
    round.transitions
}

/// Writes `status` by server-side apply with the operator's field manager; the cluster's
/// resourceVersion after it.
async fn write(
    cluster: &IpfsCluster,
    status: &IpfsClusterStatus,
    ns: &str,
    ctx: &Context,
) -> Result<Option<String>, StatusError> {
    let name = cluster.name_any();
    let api: Api<IpfsCluster> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({
        "apiVersion": IpfsCluster::api_version(&()),
        "kind": IpfsCluster::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let written = api
        .patch_status(&name, &params, &Patch::Apply(&patch))
        .await
        .map_err(kube_err(
            &name,
            "writing the status of",
            "IpfsCluster",
            &name,
        ))?;
    Ok(written.metadata.resource_version)
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
}
