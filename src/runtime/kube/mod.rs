//! The Kubernetes runtime: `ipfs-kit-operator run`. A kube-rs `Controller` over IpfsClusters whose
//! reconcile ([`controller`]) is a pipeline of steps, one module each:
//!
//! - [`build`]: the owned objects from the spec (pure);
//! - [`secret`]: the cluster secret, generated or checked;
//! - [`apply`]: server-side apply of what changed ([`applied`]), orphan Services, [`scale`];
//! - [`requests`]: the dashboard's requests (annotation);
//! - [`observe`]: pods and one probe round (once per probe interval: [`pacing`]);
//! - [`heal`]: the health engine's actions on pods, and their Events;
//! - [`status`]: the status, written when it changed, with what [`kubelet`] says of the pods.
//!
//! Around it: [`context`] (what reconciles share), [`liveness`] (the pings between rounds), [`dns`]
//! (the cluster domain), [`watches`]
//! (triggers and caches; [`slim`]: what the caches keep; [`pod_index`]: whose pods), [`backoff`], [`lease`] (leader election) and [`pin`] (the IpfsPin
//! reconciler).

pub mod applied;
pub mod apply;
pub mod backoff;
pub mod build;
pub mod collect;
pub mod context;
pub mod controller;
pub mod dns;
pub mod events;
pub mod heal;
pub mod kubelet;
pub mod lease;
pub mod liveness;
pub mod observe;
pub mod pacing;
pub mod pin;
pub mod pod_index;
pub mod reach;
pub mod requests;
pub mod scale;
pub mod secret;
pub mod settled;
pub mod slim;
pub mod status;
pub mod steady;
pub mod upgrade;
pub mod watches;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use crate::cli::RunArgs;
pub use controller::{Metrics, Settings};
pub use watches::{StartError, run};

/// Why `ipfs-kit-operator run` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error(
        "no Kubernetes configuration: {0} (in a pod, mount a ServiceAccount token; outside, set \
         KUBECONFIG)"
    )]
    Config(#[source] kube::Error),
    #[error("listening for metrics on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Lease(#[from] lease::LeaseError),
    /// An alert flag is wrong (`--alert-webhook`, `--alert-for`): the message names it.
    #[error("{0}")]
    Alerts(String),
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The metrics and health endpoint: `/metrics` (OpenMetrics when asked for, else the
/// Prometheus text format), `/healthz`, `/readyz`.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move |headers: axum::http::HeaderMap| {
                let metrics = metrics.clone();
                async move { crate::metrics::respond(&metrics, &headers) }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
}

/// `ipfs-kit-operator run`: connects to the cluster, serves metrics, runs the controller until
/// SIGTERM or Ctrl-C.
pub async fn run_operator(args: &RunArgs) -> Result<(), OperatorError> {
    let alerts = args.alerts.options().map_err(OperatorError::Alerts)?;
    let client = kube::Client::try_default()
        .await
        .map_err(OperatorError::Config)?;
    // An empty `POD_NAMESPACE` names no namespace: as if unset.
    let operator_namespace = args.operator_namespace.clone().filter(|ns| !ns.is_empty());
    let (cluster_domain, domain_source) =
        dns::cluster_domain(args.cluster_domain.as_deref(), Path::new(dns::RESOLV_CONF));
    log_environment(
        operator_namespace.as_deref(),
        &cluster_domain,
        domain_source,
    );
    let history = crate::history::History::in_memory();
    let settings = Settings {
        history: history.clone(),
        namespace: args.namespace.clone(),
        concurrency: args.concurrency,
        instance: args.instance.clone(),
        operator_namespace,
        cluster_domain,
        kubo_metrics_image: args.kubo_metrics_image.clone().filter(|i| !i.is_empty()),
        // Only the leader reconciles, so only the leader evaluates and posts alerts.
        alerts: alerts.start(None).map_err(OperatorError::Alerts)?,
        ..Settings::default()
    };
    let metrics = Arc::new(Metrics::default());
    if let Some(webhook) = &settings.alerts.webhook {
        metrics.webhook.watch(webhook.clone());
    }
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|source| OperatorError::Listen {
            addr: args.metrics_addr,
            source,
        })?;
    // The history's internal route sits next to /metrics: the dashboard sidecars read it.
    let app = metrics_router(metrics.clone()).merge(crate::dashboard::internal_router(history));
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("metrics endpoint stopped: {e}");
        }
    });
    let lease_namespace = args
        .lease_namespace
        .as_ref()
        .filter(|_| !args.no_leader_election);
    let result = match lease_namespace {
        Some(namespace) => {
            let lease = lease::LeaseSettings {
                name: args.lease_name.clone(),
                advertise_url: advertise_url(args),
                ..lease::LeaseSettings::in_namespace(namespace)
            };
            lease::run_with_leader_election(client, settings, lease, metrics, shutdown_signal())
                .await
                .map_err(OperatorError::from)
        }
        None => {
            tracing::warn!(
                "no leader election (--no-leader-election, or no --lease-namespace nor \
                 POD_NAMESPACE): run a single replica"
            );
            run(client, settings, metrics, shutdown_signal())
                .await
                .map_err(OperatorError::from)
        }
    };
    server.abort();
    result
}

/// The URL this instance's metrics and health server is reached at by the other replicas'
/// dashboards: `--advertise-url`, else `http://$POD_IP:<metrics port>`, else the metrics address
/// itself when it is not a wildcard (`0.0.0.0`).
pub fn advertise_url(args: &RunArgs) -> Option<String> {
    if let Some(url) = &args.advertise_url {
        return Some(url.clone());
    }
    let port = args.metrics_addr.port();
    let host = match args.pod_ip.as_deref().filter(|ip| !ip.is_empty()) {
        Some(ip) => ip.parse::<std::net::IpAddr>().ok()?,
        None if !args.metrics_addr.ip().is_unspecified() => args.metrics_addr.ip(),
        None => {
            tracing::warn!(
                "no --advertise-url nor POD_IP: the dashboards of the other replicas cannot read \
                 the history while this instance leads"
            );
            return None;
        }
    };
    Some(format!("http://{}", SocketAddr::new(host, port)))
}

/// Logs, once at start, whose pods may reach the peers' APIs and the cluster domain in use.
fn log_environment(
    operator_namespace: Option<&str>,
    cluster_domain: &str,
    source: dns::DomainSource,
) {
    match operator_namespace {
        Some(ns) => tracing::info!(
            operator_namespace = ns,
            "the peers' APIs admit the pods labelled {}: operator in namespace {ns}",
            build::API_ACCESS_LABEL
        ),
        None => tracing::warn!(
            "the operator's namespace is unknown (no --operator-namespace nor POD_NAMESPACE): the \
             peers' APIs admit the pods labelled {}: operator of each IpfsCluster's own namespace \
             only",
            build::API_ACCESS_LABEL
        ),
    }
    let from = match source {
        dns::DomainSource::Flag => "--cluster-domain",
        dns::DomainSource::ResolvConf => dns::RESOLV_CONF,
        dns::DomainSource::Default => {
            "the default; none in --cluster-domain or the resolver's search list"
        }
    };
    tracing::info!(
        cluster_domain,
        "the cluster DNS domain is {cluster_domain} ({from})"
    );
}
