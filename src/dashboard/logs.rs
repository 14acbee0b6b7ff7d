//! Where `/logs/{backend}` reads a daemon's own log lines from: the captured log files of the
//! local runtime, or the pod container log through the Kubernetes API. The route resolves the
//! backend name against the reconciled status first, so a source only ever sees a cluster and a
//! peer that exist; neither is used as a path as given.

use futures::future::BoxFuture;

use super::Daemon;

/// One daemon whose log is asked for, as the reconciled status names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogTarget {
    /// The namespace in Kubernetes; `None` locally.
    pub namespace: Option<String>,
    pub cluster: String,
    /// The peer's name from status (the pod name in Kubernetes, `peer-N` locally).
    pub peer: String,
    pub daemon: Daemon,
}

/// Why no log lines could be read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The daemon has no log yet (never started, or its pod has no container yet).
    #[error("{0}")]
    NotFound(String),
    /// The log exists but could not be read now (API or file error), with the reason.
    #[error("{0}")]
    Unavailable(String),
}

/// A runtime's access to daemon logs.
pub trait LogSource: Send + Sync {
    /// The last `lines` lines the daemon wrote (oldest first).
    fn tail(&self, target: LogTarget, lines: usize)
    -> BoxFuture<'static, Result<String, LogError>>;
}

/// Kubernetes: `GET /api/v1/namespaces/{ns}/pods/{peer}/log?container=kubo|cluster&tailLines=N`.
pub struct PodLogs {
    client: kube::Client,
}

impl PodLogs {
    pub fn new(client: kube::Client) -> PodLogs {
        PodLogs { client }
    }
}

/// The pod container that runs a daemon (see `runtime::kube::build`).
pub fn container(daemon: Daemon) -> &'static str {
    match daemon {
        Daemon::Ipfs => "kubo",
        Daemon::Cluster => "cluster",
    }
}

impl LogSource for PodLogs {
    fn tail(
        &self,
        target: LogTarget,
        lines: usize,
    ) -> BoxFuture<'static, Result<String, LogError>> {
        let client = self.client.clone();
        Box::pin(async move {
            let namespace = target.namespace.as_deref().ok_or_else(|| {
                LogError::NotFound(format!("{} has no namespace", target.cluster))
            })?;
            let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
                kube::Api::namespaced(client, namespace);
            let params = kube::api::LogParams {
                container: Some(container(target.daemon).to_string()),
                tail_lines: Some(i64::try_from(lines).unwrap_or(i64::MAX)),
                ..kube::api::LogParams::default()
            };
            let what = format!(
                "the {} container log of pod {namespace}/{}",
                container(target.daemon),
                target.peer
            );
            match pods.logs(&target.peer, &params).await {
                Ok(text) => Ok(text),
                Err(kube::Error::Api(status)) if status.is_not_found() => {
                    Err(LogError::NotFound(format!("{what}: {}", status.message)))
                }
                Err(kube::Error::Api(status)) => Err(LogError::Unavailable(format!(
                    "{what}: the API answered {} {}",
                    status.code, status.message
                ))),
                Err(e) => Err(LogError::Unavailable(format!("{what}: {e}"))),
            }
        })
    }
}
