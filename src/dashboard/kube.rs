//! The dashboard as a sidecar in Kubernetes: status comes from a watch cache of IpfsCluster
//! objects; action requests are recorded on the IpfsCluster (an annotation) for the controller
//! to carry out, so that the controller stays the one writer of pods and status. The controller
//! writes traffic figures (bandwidth totals, repository size, pin counts) into the status at most
//! once a minute when health is unchanged, so here they are up to a minute old (its `/metrics`
//! has them from every round).

use std::sync::Arc;

use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;

use super::{ActionRequest, ClusterEntry, PinEntry, Publisher, Snapshot};
use crate::api::{ACTION_REQUEST_ANNOTATION, IpfsCluster, IpfsPin};

/// The field manager of the dashboard's annotation patches.
pub const FIELD_MANAGER: &str = "ipfs-kit-operator-dashboard";

/// Errors of the Kubernetes dashboard source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("recording action request {id} on IpfsCluster {cluster}: {source}")]
    Record {
        id: u64,
        cluster: String,
        #[source]
        source: kube::Error,
    },
    #[error("action request {id} names {cluster:?}, which is not <namespace>/<name>")]
    BadCluster { id: u64, cluster: String },
}

fn snapshot(clusters: &Store<IpfsCluster>, pins: &Store<IpfsPin>) -> Snapshot {
    let mut cluster_entries: Vec<ClusterEntry> = clusters
        .state()
        .iter()
        .map(|c| ClusterEntry {
            namespace: c.namespace(),
            name: c.name_any(),
            replicas: c.spec.replicas,
            paused: c.spec.paused,
            status: c.status.clone().unwrap_or_default(),
        })
        .collect();
    cluster_entries.sort_by_key(ClusterEntry::key);
    let mut pin_entries: Vec<PinEntry> = pins
        .state()
        .iter()
        .map(|p| PinEntry {
            namespace: p.namespace().unwrap_or_default(),
            name: p.name_any(),
            cluster: p.spec.cluster_ref.name.clone(),
            cid: p.spec.cid.clone(),
            status: p.status.clone().unwrap_or_default(),
        })
        .collect();
    pin_entries.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Snapshot {
        clusters: cluster_entries,
        pins: pin_entries,
        updated_at: Some(now_rfc3339()),
    }
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// Watches IpfsClusters and IpfsPins (in `namespace`, or all) and publishes a snapshot on every
/// change, until the watch streams end.
pub async fn follow_clusters(client: Client, namespace: Option<&str>, publisher: Arc<Publisher>) {
    fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let (clusters, cluster_writer) = reflector::store();
    let (pins, pin_writer) = reflector::store();
    // Every event, including the end of an initial list (when a cache is filled), publishes.
    fn changed<K>(event: Result<watcher::Event<K>, watcher::Error>, what: &str) -> bool {
        match event {
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => false,
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "watching {what}");
                false
            }
        }
    }
    let cluster_events = watcher(
        api::<IpfsCluster>(&client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(cluster_writer)
    .map(|e| changed(e, "IpfsClusters"));
    let pin_events = watcher(
        api::<IpfsPin>(&client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(pin_writer)
    .map(|e| changed(e, "IpfsPins"));
    let events = futures::stream::select(cluster_events, pin_events);
    futures::pin_mut!(events);
    while let Some(publish) = events.next().await {
        if publish {
            publisher.publish(snapshot(&clusters, &pins));
        }
    }
}

/// Records one action request on its IpfsCluster.
pub async fn record(client: &Client, request: &ActionRequest) -> Result<(), SourceError> {
    let (namespace, name) =
        request
            .cluster
            .split_once('/')
            .ok_or_else(|| SourceError::BadCluster {
                id: request.id,
                cluster: request.cluster.clone(),
            })?;
    let api: Api<IpfsCluster> = Api::namespaced(client.clone(), namespace);
    // The annotation sits on the cluster: it does not repeat it.
    let recorded = ActionRequest {
        cluster: String::new(),
        requested_at: Some(now_rfc3339()),
        ..request.clone()
    };
    let value = serde_json::to_string(&recorded).unwrap_or_default();
    let patch = json!({"metadata": {"annotations": {ACTION_REQUEST_ANNOTATION: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| SourceError::Record {
            id: request.id,
            cluster: request.cluster.clone(),
            source,
        })?;
    tracing::info!(id = request.id, cluster = %request.cluster, action = ?request.action, "recorded action request");
    Ok(())
}

/// Records every request the dashboard receives, until the channel closes.
pub async fn record_requests(client: Client, mut requests: mpsc::Receiver<ActionRequest>) {
    while let Some(request) = requests.recv().await {
        if let Err(e) = record(&client, &request).await {
            tracing::warn!(error = %e, "action request not recorded");
        }
    }
}

/// The sidecar's dashboard: daemon logs come from the pod container logs through the API; with
/// `kube_auth`, Kubernetes bearer tokens are accepted with the rights RBAC gives them.
pub fn dashboard(
    client: &Client,
    token: Option<super::Token>,
    auth_reads: bool,
    kube_auth: bool,
) -> (super::Dashboard, Publisher, mpsc::Receiver<ActionRequest>) {
    let (dashboard, publisher, requests) = super::Dashboard::new(token, auth_reads);
    let mut dashboard = dashboard.with_logs(Arc::new(super::logs::PodLogs::new(client.clone())));
    if kube_auth {
        dashboard =
            dashboard.with_access_review(Arc::new(super::KubeAccessReview::new(client.clone())));
    }
    (dashboard, publisher, requests)
}

/// Errors that stop the sidecar.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error(transparent)]
    Token(#[from] super::auth::TokenError),
    #[error("connecting to the Kubernetes API: {0} (in a pod this uses its ServiceAccount)")]
    Client(#[source] kube::Error),
    #[error("the HTTP client for the leader's history: {0}")]
    Http(#[from] crate::probe::ProberError),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// `ipfs-kit-operator dashboard`: serves the dashboard from the cluster's IpfsCluster status until
/// SIGTERM or Ctrl-C.
pub async fn serve_sidecar(
    listen: std::net::SocketAddr,
    token_file: Option<&std::path::Path>,
    auth_reads: bool,
    kube_auth: bool,
    namespace: Option<String>,
    leader: &crate::cli::LeaderArgs,
) -> Result<(), SidecarError> {
    // A bad token is an error at start; a missing one (an optional Secret not created yet) only
    // refuses changes until it appears.
    let token_now = token_file
        .map(super::Token::from_optional_file)
        .transpose()?;
    match (token_file, token_now.flatten()) {
        (Some(path), None) => tracing::warn!(
            path = %path.display(),
            "the token file does not exist (yet): the dashboard serves reads and refuses every \
             change until it does (create the Secret mounted there)"
        ),
        (None, _) if !kube_auth => {
            tracing::warn!("no --token-file: the dashboard serves reads and refuses every change");
        }
        _ => {}
    }
    let client = Client::try_default().await.map_err(SidecarError::Client)?;
    let (mut dashboard, publisher, requests) = dashboard(&client, None, auth_reads, kube_auth);
    if let Some(path) = token_file {
        dashboard = dashboard.with_token_file(path);
    }
    let mut dashboard = dashboard.with_history(leader_history(&client, leader)?);
    if let Some(url) = &leader.prometheus.prometheus_url {
        match crate::history::prometheus::PrometheusRange::new(url, true) {
            Ok(prometheus) => dashboard = dashboard.with_prometheus(prometheus),
            Err(e) => tracing::warn!("no history from Prometheus: {e}"),
        }
    }
    tokio::spawn(publisher.host_sampler("/").run(super::HOST_SAMPLE_INTERVAL));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| SidecarError::Listen {
            addr: listen,
            source,
        })?;
    tracing::info!(%listen, namespace = namespace.as_deref().unwrap_or("<all>"), "dashboard listening");
    let follow = {
        let client = client.clone();
        async move { follow_clusters(client, namespace.as_deref(), Arc::new(publisher)).await }
    };
    tokio::spawn(follow);
    tokio::spawn(record_requests(client, requests));
    axum::serve(listener, super::router(dashboard))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|source| SidecarError::Listen {
            addr: listen,
            source,
        })
}

/// The history read from the leader controller (see [`super::history`]).
fn leader_history(
    client: &Client,
    args: &crate::cli::LeaderArgs,
) -> Result<super::HistorySource, SidecarError> {
    let lease = args
        .lease_namespace
        .as_ref()
        .filter(|ns| !ns.is_empty())
        .map(|ns| super::LeaseRef {
            namespace: ns.clone(),
            name: args.lease_name.clone(),
            instance: args.instance.clone(),
        });
    tracing::info!(
        controller = %args.controller_url,
        lease = lease.as_ref().map(|l| format!("{}/{}", l.namespace, l.name)).unwrap_or_default(),
        "the history is read from the leader controller"
    );
    let reader = super::LeaderHistory::new(client.clone(), lease, args.controller_url.clone())?;
    Ok(super::HistorySource::Leader(Arc::new(reader)))
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
