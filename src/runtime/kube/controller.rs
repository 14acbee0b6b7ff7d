//! The IpfsCluster controller. [`reconcile`] wraps the finalizer around a pipeline of named
//! steps, each a module with its own error type:
//!
//! validate ([`policy_for`]) -> build ([`super::build`], pure) -> [`secret`](super::secret) ->
//! [`apply`](super::apply) (with [`reach`](super::reach)) -> [`requests`](super::requests) -> [`observe`](super::observe) ->
//! assess ([`crate::reconcile::assess`], pure) -> [`heal`](super::heal) ->
//! [`upgrade`](super::upgrade) (the gate of a rollout) -> [`status`](super::status).
//!
//! The watches that trigger it and fill its caches are in [`super::watches`].

use std::sync::Arc;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use tracing::{debug, warn};

use super::build::{self, BuildError};
use super::context::{Context, now_millis};
use super::heal::{KubePeers, carry_out_actions};
use super::status::Round;
use super::{apply, observe, requests, secret, status, steady, upgrade};
use crate::api::IpfsCluster;
use crate::metrics::ClusterKey;
use crate::reconcile::{self, HealthPolicy};
use crate::runtime::policy_for as runtime_policy;

pub use super::context::Settings;
/// The operator's Prometheus metrics (shared with the dashboard).
pub use crate::metrics::Metrics;

/// Finalizer the operator puts on every IpfsCluster it manages.
pub const FINALIZER: &str = "ipfskit.io/cleanup";

/// Why a reconcile failed: the step that failed, with its own error. Every message names the
/// IpfsCluster and the object or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("IpfsCluster {0} has no namespace")]
    NoNamespace(String),
    #[error("IpfsCluster {cluster}: {source}")]
    Validate {
        cluster: String,
        #[source]
        source: crate::api::FieldError,
    },
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Secret(#[from] secret::SecretError),
    #[error(transparent)]
    Apply(apply::ApplyError),
    #[error(transparent)]
    Observe(observe::ObserveError),
    #[error(transparent)]
    Upgrade(apply::ApplyError),
    #[error(transparent)]
    Status(status::StatusError),
    #[error("finalizer of IpfsCluster: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// The failed step, a short machine label (the error metric's label).
    pub fn label(&self) -> &'static str {
        match self {
            Self::NoNamespace(_) => "no_namespace",
            Self::Validate { .. } => "validate",
            Self::Build(_) => "build",
            Self::Secret(_) => "secret",
            Self::Apply(_) => "apply",
            Self::Observe(_) => "observe",
            Self::Upgrade(_) => "upgrade",
            Self::Status(_) => "status",
            Self::Finalizer(_) => "finalizer",
        }
    }
}

/// The health policy of `cluster` as this runtime carries it out (whole-pod restarts), with the
/// controller's start grace.
pub fn policy_for(cluster: &IpfsCluster, settings: &Settings) -> Result<HealthPolicy, Error> {
    let generation = cluster
        .metadata
        .generation
        .and_then(|g| u64::try_from(g).ok());
    let mut policy = runtime_policy::<KubePeers<'_>>(&cluster.spec, generation.unwrap_or(0))
        .map_err(|e| Error::Validate {
            cluster: cluster.name_any(),
            source: e,
        })?;
    if let Some(grace) = settings.start_grace {
        policy.restart_timeout = grace;
    }
    Ok(policy)
}

/// Reconciles one IpfsCluster (the function given to the `Controller`).
pub async fn reconcile(cluster: Arc<IpfsCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconciles.inc();
    ctx.events.sweep();
    let started = std::time::Instant::now();
    let ns = cluster
        .namespace()
        .ok_or_else(|| Error::NoNamespace(cluster.name_any()))?;
    let api: Api<IpfsCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let key = ObjectRef::from_obj(&*cluster);
    // This reconcile probes the cluster: its steady rounds end.
    ctx.steady.stop(&key);
    let result = finalizer(&api, FINALIZER, cluster, |event| async {
        match event {
            FinalizerEvent::Apply(c) => apply_cluster(&c, &ns, &ctx).await,
            FinalizerEvent::Cleanup(c) => Box::pin(cleanup(&c, &ctx)).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(Box::new(other)),
    });
    if result.is_ok() {
        ctx.backoff.succeeded(&key);
    }
    ctx.metrics.reconciled(started.elapsed(), result.is_ok());
    result
}

/// The pipeline for a live IpfsCluster.
async fn apply_cluster(cluster: &IpfsCluster, ns: &str, ctx: &Context) -> Result<Action, Error> {
    let policy = policy_for(cluster, &ctx.settings)?;
    let env = ctx.settings.build_environment();
    let names = build::Names::of(&cluster.name_any());
    let Applied {
        statefulset,
        problems,
        built: built_statefulset,
    } = apply_owned(cluster, &names, &env, ns, ctx).await?;
    let taken = requests::carry_out(cluster, &names, ns, ctx).await;
    let mut observed = observe::peers(cluster, &names, ns, &policy, ctx, taken.probe_now)
        .await
        .map_err(Error::Observe)?;
    upgrade::leave_to_rollout(
        &mut observed.reports,
        statefulset.as_deref(),
        &observed.pods,
        |o| names.peer(o),
    );

    let key = ObjectRef::from_obj(cluster);
    let history = ctx.history(&key);
    let now = now_millis();
    let assessment = reconcile::assess(&policy, &observed.reports, &history, now);
    debug!(cluster = %cluster.name_any(), "{}", assessment.decision.summary());
    let mut peers = KubePeers {
        cluster,
        names: &names,
        ns,
        observed: &observed,
        ctx,
    };
    carry_out_actions(&mut peers, &assessment, &history).await;
    ctx.remember(key, assessment.decision.history.clone());
    super::collect::garbage(cluster, &observed, ctx).await;
    let gate = upgrade::step::Round {
        names: &names,
        observed: &observed,
        assessment: &assessment,
        grace: policy.restart_timeout,
        now,
    };
    // The StatefulSet as built, for the gate to move the partition (it rarely does).
    let built =
        || built_statefulset.or_else(|| Some(build::children(cluster, &env).ok()?.statefulset));
    let (statefulset, rollout) =
        upgrade::step::carry_out(cluster, built, statefulset, gate, ns, ctx)
            .await
            .map_err(Error::Upgrade)?;

    let problems = [problems, super::kubelet::problems(&observed.pods)].concat();
    let requested = taken.probe_now;
    let round = Round {
        statefulset: statefulset.as_deref(),
        observed: &observed,
        assessment: &assessment,
        problems: &problems,
        upgrade: upgrade::step::for_status(cluster, &rollout),
        max_restarts_per_hour: policy.max_restarts_per_hour,
        now,
        requested,
    };
    let reported = status::report(cluster, round, ns, ctx)
        .await
        .map_err(Error::Status)?;
    requests::finish_probes(taken, reported.score, reported.version, ns, ctx).await;
    let check = steady::Round {
        requested,
        written: reported.written,
        rolling: reported.rolling,
        problems: &problems,
        hung: observed.hung,
        ..steady::Round::new(&assessment, now)
    };
    Ok(next_round(cluster, &policy, check, observed, ctx))
}

/// How the cluster is probed next: by this reconcile's requeue after the probe interval, or, when
/// nothing is pending ([`steady::why_not`]), by steady rounds until one changes or its volatile
/// figures are due to be written (the status refresh), with a reconcile at the end of a start
/// grace, when an alert fires or after [`steady::RESYNC`], whichever comes first.
fn next_round(
    cluster: &IpfsCluster,
    policy: &HealthPolicy,
    mut check: steady::Round<'_>,
    observed: observe::Observation,
    ctx: &Context,
) -> Action {
    let ns = cluster.namespace().unwrap_or_default();
    check.alert_fires = ctx
        .alerter
        .fires_at(&format!("{ns}/{}", cluster.name_any()));
    check.collecting = ctx.gc.busy(&super::collect::gc_prefix(cluster));
    check.grace_ends = steady::grace_ends(
        check.assessment,
        &observed.pods,
        policy.restart_timeout,
        check.now,
    );
    if let Some(why) = steady::why_not(&check) {
        debug!(cluster = %cluster.name_any(), "probed by reconciles: {why}");
        return Action::requeue(policy.probe_interval);
    }
    ctx.steady.start(
        ObjectRef::from_obj(cluster),
        steady::Handoff {
            targets: observed.targets,
            reports: observed.reports,
            interval: policy.probe_interval,
            timeout: policy.probe_timeout,
            refresh: ctx.settings.status_refresh,
            gc: crate::runtime::gc::GcSettings::from_spec(&cluster.spec.kubo),
        },
    );
    let resync = steady::RESYNC.max(policy.probe_interval);
    let deadline = check.deadline().map(|t| {
        std::time::Duration::from_millis(t.saturating_sub(check.now))
            + std::time::Duration::from_secs(1)
    });
    Action::requeue(deadline.map_or(resync, |d| d.min(resync)))
}

/// Step `apply` of [`apply_cluster`]: the owned objects, or only the StatefulSet as it is when
/// the cluster is paused or nothing changed since the last full apply.
struct Applied {
    statefulset: Option<Arc<k8s_openapi::api::apps::v1::StatefulSet>>,
    /// The Secret's and the peers' reachability problems.
    problems: Vec<String>,
    /// The StatefulSet as built, when this reconcile built it.
    built: Option<k8s_openapi::api::apps::v1::StatefulSet>,
}

async fn apply_owned(
    cluster: &IpfsCluster,
    names: &build::Names,
    env: &build::Environment,
    ns: &str,
    ctx: &Context,
) -> Result<Applied, Error> {
    ctx.caches.ready().await;
    // An idle reconcile finds nothing changed since the last full apply: nothing to build.
    let children = if ctx.settled.unchanged(cluster, ns, &ctx.caches) {
        None
    } else {
        Some(build::children(cluster, env)?)
    };
    let built = children.as_ref().map(|c| c.statefulset.clone());
    if cluster.spec.paused {
        let existing = apply::existing_statefulset(cluster, names, ns, ctx).await;
        return Ok(Applied {
            statefulset: existing.map_err(Error::Apply)?,
            problems: Vec::new(),
            built,
        });
    }
    let mut problems = secret::ensure(cluster, names, ns, ctx).await?;
    let statefulset = match children {
        None => apply::existing_statefulset(cluster, names, ns, ctx)
            .await
            .map_err(Error::Apply)?,
        Some(children) => {
            let services = children.service_names();
            let owner = build::owner_reference(cluster)?;
            // Boxed: the full apply's future is most of a reconcile's size (40 KB), and an idle
            // reconcile, which does not run it, need not allocate and move it.
            let applied = Box::pin(apply::children(cluster, children, &owner, ns, ctx)).await;
            let (applied, unreached) = applied.map_err(Error::Apply)?;
            problems.extend(unreached);
            ctx.settled
                .record(cluster, services, &applied, ns, &ctx.caches);
            Some(Arc::new(applied))
        }
    };
    Ok(Applied {
        statefulset,
        problems,
        built,
    })
}

/// A deleted IpfsCluster: its owned objects go by garbage collection; the operator forgets it.
async fn cleanup(cluster: &IpfsCluster, ctx: &Context) -> Result<Action, Error> {
    ctx.forget(&ObjectRef::from_obj(cluster));
    let ns = cluster.namespace();
    ctx.metrics.forget_cluster(&ClusterKey::kube(
        ns.as_deref().unwrap_or_default(),
        &cluster.name_any(),
    ));
    // Its firing alerts resolve (posted to the webhook; the object is going, so no Event).
    ctx.alerter
        .forget(ns.as_deref(), &cluster.name_any(), now_millis());
    ctx.gc.forget(&super::collect::gc_prefix(cluster));
    ctx.event(
        cluster,
        EventType::Normal,
        "Deleting",
        "the owned StatefulSet, Services, ConfigMap, Secret, PodDisruptionBudget and \
         NetworkPolicy are removed by garbage collection (owner references)"
            .into(),
    )
    .await;
    Ok(Action::await_change())
}

/// Retries a failed reconcile after a per-cluster exponential backoff, counts the failure by
/// step, and reports it as a Warning Event.
pub fn error_policy(cluster: Arc<IpfsCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(ObjectRef::from_obj(&*cluster));
    ctx.metrics.count_error(error.label());
    warn!(
        cluster = %cluster.name_any(),
        namespace = cluster.namespace().unwrap_or_default(),
        retry_in = ?delay,
        "reconcile failed: {error}"
    );
    let note = format!("{error}; retrying in {}s", delay.as_secs());
    tokio::spawn(async move {
        ctx.event(&cluster, EventType::Warning, "ReconcileFailed", note)
            .await;
    });
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::IpfsClusterSpec;
    use crate::reconcile::RestartUnit;

    fn cluster(spec: IpfsClusterSpec) -> IpfsCluster {
        let mut c = IpfsCluster::new("web", spec);
        c.metadata.generation = Some(4);
        c
    }

    #[test]
    fn the_policy_is_the_specs_at_whole_pod_granularity() {
        let mut spec = IpfsClusterSpec {
            replicas: 3,
            ..IpfsClusterSpec::default()
        };
        spec.health.failure_threshold = 2;
        let policy = policy_for(&cluster(spec.clone()), &Settings::default()).expect("policy");
        let mut expected = HealthPolicy::from_spec(&spec, 4).expect("policy");
        expected.restart_unit = RestartUnit::Peer;
        assert_eq!(policy, expected);
    }

    #[test]
    fn a_bad_duration_names_the_field_and_the_cluster() {
        let mut spec = IpfsClusterSpec::default();
        spec.health.probe_interval = "soon".into();
        let err = policy_for(&cluster(spec), &Settings::default()).expect_err("invalid");
        assert_eq!(err.label(), "validate");
        let text = err.to_string();
        assert!(
            text.starts_with("IpfsCluster web: spec.health.probeInterval"),
            "{text}"
        );
    }
}
