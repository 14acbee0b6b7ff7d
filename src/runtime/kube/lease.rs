//! Leader election on a `coordination.k8s.io` Lease (kube-lease-manager), so that two operator
//! replicas never both write: only the holder runs the controller; a follower waits and takes
//! over when the leader stops renewing (it died) or releases the Lease (it shut down).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tracing::{info, warn};

use super::controller::{Metrics, Settings};
use super::watches::{StartError, run};

/// Where the Lease lives and how long it holds.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Namespace of the Lease (the operator's own namespace).
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// How long a Lease holds without renewal, in seconds: how soon a follower takes over from
    /// a leader that died.
    pub duration_seconds: u64,
    /// How long before expiry the holder renews, in seconds (less than `duration_seconds`).
    pub grace_seconds: u64,
    /// Base URL of this instance's metrics and health server, written on the Lease
    /// (`ipfskit.io/leader-endpoint`) when it takes the lead, so that the dashboard sidecars of
    /// the other replicas read the history from it. `None`: not advertised.
    pub advertise_url: Option<String>,
}

impl LeaseSettings {
    /// The defaults: Lease `ipfs-kit-operator`, 15 s, renewed 5 s before expiry.
    pub fn in_namespace(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: "ipfs-kit-operator".into(),
            duration_seconds: 15,
            grace_seconds: 5,
            advertise_url: None,
        }
    }
}

/// Why leader election failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "leader election on Lease {namespace}/{name}: {source} (the operator needs get, create \
         and patch on leases.coordination.k8s.io in {namespace})"
    )]
    Lease {
        namespace: String,
        name: String,
        #[source]
        source: LeaseManagerError,
    },
    #[error(transparent)]
    Start(#[from] StartError),
}

/// The field manager under which `instance` takes the Lease: one per replica, so that when two
/// replicas take a free Lease at the same moment the second one's apply of `holderIdentity`
/// conflicts (409) instead of silently overwriting the first holder (under one shared manager
/// both would believe they lead until their next renewal).
/// (A field manager has at most 128 characters: the instance is cut to 100.)
pub fn field_manager(instance: &str) -> String {
    let instance: String = instance.chars().take(100).collect();
    format!("{}-lease-{instance}", super::apply::FIELD_MANAGER)
}

/// Writes where this leader's history is read ([`LeaseSettings::advertise_url`]) on the Lease.
/// A failure is only warned about: the sidecars of the other replicas then answer 503 for the
/// history until the next leader advertises.
async fn advertise(client: &Client, lease: &LeaseSettings, instance: &str) {
    use crate::dashboard::{LEADER_ANNOTATION, LeaderEndpoint};
    let Some(url) = &lease.advertise_url else {
        return;
    };
    let endpoint = LeaderEndpoint {
        instance: instance.to_owned(),
        url: url.clone(),
    };
    let value = serde_json::to_string(&endpoint).unwrap_or_default();
    let patch = serde_json::json!({"metadata": {"annotations": {LEADER_ANNOTATION: value}}});
    let api: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(client.clone(), &lease.namespace);
    let params = kube::api::PatchParams::default();
    match api
        .patch(&lease.name, &params, &kube::api::Patch::Merge(&patch))
        .await
    {
        Ok(_) => info!(%url, "advertised the history address on the Lease"),
        Err(e) => warn!(
            "advertising the history address on the Lease {}/{}: {e}; the dashboards of the \
             other replicas cannot read the history",
            lease.namespace, lease.name
        ),
    }
}

/// Runs the controller whenever this instance holds the Lease, until `shutdown` resolves; then
/// releases the Lease so that a follower takes over at once.
pub async fn run_with_leader_election(
    client: Client,
    settings: Settings,
    lease: LeaseSettings,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), LeaseError> {
    let lease_err = |source| LeaseError::Lease {
        namespace: lease.namespace.clone(),
        name: lease.name.clone(),
        source,
    };
    let manager = LeaseManagerBuilder::new(client.clone(), &lease.name)
        .with_namespace(&lease.namespace)
        .with_identity(&settings.instance)
        .with_duration(lease.duration_seconds)
        .with_grace(lease.grace_seconds)
        .with_field_manager(field_manager(&settings.instance))
        .build()
        .await
        .map_err(lease_err)?;
    let (mut leader, watcher) = manager.watch().await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut stopping = stop_rx.clone();
    loop {
        // Follower: wait to become the leader, or to be told to stop.
        info!(instance = %settings.instance, lease = %lease.name, "waiting to lead");
        tokio::select! {
            _ = leader.wait_for(|is_leader| *is_leader) => {}
            _ = stopping.wait_for(|stop| *stop) => break,
        }
        if *stopping.borrow() {
            break;
        }
        info!(instance = %settings.instance, "leading: starting the controller");
        advertise(&client, &lease, &settings.instance).await;
        let mut lost = leader.clone();
        let mut stop = stop_rx.clone();
        let until = async move {
            tokio::select! {
                _ = lost.wait_for(|is_leader| !*is_leader) => {
                    warn!("lost the Lease: stopping the controller");
                }
                _ = stop.wait_for(|stop| *stop) => {}
            }
        };
        run(client.clone(), settings.clone(), metrics.clone(), until).await?;
        if *stopping.borrow() {
            break;
        }
    }
    // Dropping the receiver makes the manager release the Lease.
    drop(leader);
    match tokio::time::timeout(Duration::from_secs(10), watcher).await {
        Ok(Ok(Err(e))) => warn!("releasing the Lease: {e}"),
        Err(_) => warn!("releasing the Lease took longer than 10 s"),
        _ => {}
    }
    Ok(())
}
