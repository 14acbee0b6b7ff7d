//! The dashboard as a sidecar in Kubernetes: status comes from a watch cache of IpfsCluster
//! objects; each action request is recorded as a ConfigMap of its own next to its IpfsCluster
//! (created before the request is answered) for the controller to carry out, so that the
//! controller stays the one writer of pods and status; a watch of those ConfigMaps tells the
//! sidecar what became of each.
//! The controller writes traffic figures (bandwidth totals, repository size, pin counts) into the
//! status at most once a minute when health is unchanged, so here they are up to a minute old
//! (its `/metrics` has them from every round).

use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use super::requests::{self, RecordError, RequestBoard, RequestRecorder};
use super::{ActionRequest, ClusterEntry, PinEntry, Publisher, Snapshot};
use crate::api::request::{REQUEST_LABEL, request_config_map, request_record};
use crate::api::{IpfsCluster, IpfsPin};

/// The field manager of the dashboard's request ConfigMaps.
pub const FIELD_MANAGER: &str = "ipfs-kit-operator-dashboard";

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
            uid: c.uid(),
            resource_version: c.resource_version(),
            processes: Vec::new(),
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

/// Records each request as a ConfigMap of its own in its cluster's namespace.
pub struct KubeRecorder {
    client: Client,
}

impl KubeRecorder {
    pub fn new(client: Client) -> KubeRecorder {
        KubeRecorder { client }
    }
}

impl RequestRecorder for KubeRecorder {
    fn record(
        &self,
        request: &ActionRequest,
        cluster: &ClusterEntry,
    ) -> BoxFuture<'static, Result<(), RecordError>> {
        let client = self.client.clone();
        let request = request.clone();
        let cluster = cluster.clone();
        Box::pin(async move { record(&client, &request, &cluster).await })
    }

    fn needs_unique_ids(&self) -> bool {
        true
    }
}

/// Creates the ConfigMap of `request` (a create never replaces another request's).
async fn record(
    client: &Client,
    request: &ActionRequest,
    cluster: &ClusterEntry,
) -> Result<(), RecordError> {
    let Some(namespace) = &cluster.namespace else {
        return Err(RecordError::Refused(format!(
            "cluster {} has no namespace",
            cluster.name
        )));
    };
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let object = request_config_map(
        request,
        &cluster.name,
        cluster.uid.as_deref(),
        &requests::now_rfc3339(),
    );
    let name = object.metadata.name.clone().unwrap_or_default();
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    match api.create(&params, &object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Err(RecordError::Taken(request.id)),
        Err(kube::Error::Api(s)) if s.code < 500 && s.code != 429 => {
            Err(RecordError::Refused(format!(
                "creating ConfigMap {namespace}/{name}: {} ({}); the dashboard's \
                 ServiceAccount needs `create` on configmaps (deploy/rbac.yaml)",
                s.message, s.code
            )))
        }
        Err(e) => Err(RecordError::Unavailable(format!(
            "creating ConfigMap {namespace}/{name}: {e}; try again shortly"
        ))),
    }
}

/// Copies the states of the request ConfigMaps (in `namespace`, or all) onto `board`, until the
/// watch ends.
pub async fn follow_requests(client: Client, namespace: Option<String>, board: RequestBoard) {
    let api: Api<ConfigMap> = match &namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let config = watcher::Config::default().labels(REQUEST_LABEL);
    let events = watcher(api, config).default_backoff();
    futures::pin_mut!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm)) => {
                match request_record(&cm) {
                    Ok(record) => board.set(record),
                    Err(e) => tracing::debug!("not a request: {e}"),
                }
            }
            Ok(watcher::Event::Delete(cm)) => {
                if let Ok(record) = request_record(&cm) {
                    board.remove(record.request.id);
                }
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
            Err(e) => tracing::warn!(error = %e, "watching the request ConfigMaps"),
        }
    }
}

/// The sidecar's dashboard: daemon logs come from the pod container logs through the API;
/// requests are recorded as ConfigMaps (follow their states onto the returned board with
/// [`follow_requests`]); with `kube_auth`, Kubernetes bearer tokens are accepted with the rights
/// RBAC gives them.
pub fn dashboard(
    client: &Client,
    token: Option<super::Token>,
    auth_reads: bool,
    kube_auth: bool,
) -> (super::Dashboard, Publisher, RequestBoard) {
    let (dashboard, publisher, local) = super::Dashboard::new(token, auth_reads);
    let board = local.board.clone();
    let mut dashboard = dashboard
        .with_logs(Arc::new(super::logs::PodLogs::new(client.clone())))
        .with_requests(Arc::new(KubeRecorder::new(client.clone())), board.clone())
        .with_specs(Arc::new(super::clusters::kube::KubeSpecs::new(
            client.clone(),
        )));
    if kube_auth {
        dashboard =
            dashboard.with_access_review(Arc::new(super::KubeAccessReview::new(client.clone())));
    }
    (dashboard, publisher, board)
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
    let (mut dashboard, publisher, board) = dashboard(&client, None, auth_reads, kube_auth);
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
    tokio::spawn(follow_requests(client.clone(), namespace.clone(), board));
    let follow = {
        let client = client.clone();
        async move { follow_clusters(client, namespace.as_deref(), Arc::new(publisher)).await }
    };
    tokio::spawn(follow);
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
