//! The one definition of a change a dashboard client asks for ([`ActionRequest`]), what became
//! of it ([`RequestRecord`]), and how it is recorded in Kubernetes: one ConfigMap per request
//! ([`request_config_map`]), labelled [`REQUEST_LABEL`] with its cluster's name, created by the
//! dashboard and updated, then deleted, only by the controller that carries it out.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a client asked for; the reconciler carries it out and the result shows in status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionRequest {
    /// Increasing id, echoed to the client.
    #[serde(default)]
    pub id: u64,
    /// `restart` or `probe`.
    pub action: ActionKind,
    /// The cluster (`namespace/name` in Kubernetes); not repeated in the annotation, which sits
    /// on the cluster itself.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    /// One peer, or every peer of the cluster when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// One daemon of the peer, or both when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<Daemon>,
    /// RFC 3339 time the request was recorded (Kubernetes: rolls a restart of every peer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<String>,
}

/// The changes a client may ask for. Starting and stopping peers are not among them: the
/// reconciler keeps the declared peers running (use `spec.paused` or `spec.replicas`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Restart,
    /// An immediate probe round (`POST /health/check`).
    Probe,
}

/// A daemon of a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Daemon {
    /// Kubo.
    Ipfs,
    /// ipfs-cluster-service.
    Cluster,
}

impl ActionKind {
    /// The lower-case name, as recorded and answered.
    pub const fn as_str(self) -> &'static str {
        match self {
            ActionKind::Restart => "restart",
            ActionKind::Probe => "probe",
        }
    }
}

impl Daemon {
    /// The name in backend names: `ipfs` or `cluster`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Daemon::Ipfs => "ipfs",
            Daemon::Cluster => "cluster",
        }
    }

    /// The daemon a client names: `ipfs`/`kubo`, or `cluster`/`ipfs-cluster`/
    /// `ipfs_cluster_service`.
    pub fn parse(s: &str) -> Option<Daemon> {
        match s {
            "ipfs" | "kubo" => Some(Daemon::Ipfs),
            "cluster" | "ipfs-cluster" | "ipfs_cluster_service" => Some(Daemon::Cluster),
            _ => None,
        }
    }
}

/// Where a request is: recorded and waiting, being carried out, or finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    /// Recorded; the reconciler has not taken it up yet.
    Queued,
    /// The reconciler took it up.
    Running,
    /// Carried out; `reason` says what was done.
    Done,
    /// Not carried out, or not completely; `reason` says why.
    Failed,
}

impl RequestState {
    /// Done or failed.
    pub fn is_finished(self) -> bool {
        matches!(self, RequestState::Done | RequestState::Failed)
    }

    fn parse(s: &str) -> Option<RequestState> {
        match s {
            "queued" => Some(RequestState::Queued),
            "running" => Some(RequestState::Running),
            "done" => Some(RequestState::Done),
            "failed" => Some(RequestState::Failed),
            _ => None,
        }
    }

    /// The lower-case name, as recorded and answered.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Queued => "queued",
            RequestState::Running => "running",
            RequestState::Done => "done",
            RequestState::Failed => "failed",
        }
    }
}

/// A request and what became of it: `GET /api/dashboard/requests/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub request: ActionRequest,
    pub state: RequestState,
    /// What was done (done), why not (failed), or who took it up (running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// RFC 3339 time of the last change of state.
    pub updated_at: String,
    /// A done probe in Kubernetes: the cluster's resourceVersion once its round's status was
    /// written (that status answers the health check). Not answered to clients.
    #[serde(skip)]
    pub status_version: Option<String>,
}

/// How long a finished request is kept (on the dashboard's board; in Kubernetes its ConfigMap,
/// deleted after that by the controller).
pub const KEEP_FINISHED: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// How many finished requests are kept at most (per dashboard; in Kubernetes per cluster), the
/// oldest going first.
pub const KEEP_FINISHED_COUNT: usize = 200;

/// Label of a request's ConfigMap: the name of the IpfsCluster it is for (same namespace).
pub const REQUEST_LABEL: &str = "ipfskit.io/request-for";
/// Keys of a request's ConfigMap.
pub const REQUEST_KEY: &str = "request";
pub const STATE_KEY: &str = "state";
pub const REASON_KEY: &str = "reason";
pub const UPDATED_KEY: &str = "updatedAt";
pub const STATUS_VERSION_KEY: &str = "statusVersion";

/// The name of the ConfigMap of request `id` on IpfsCluster `cluster`.
pub fn request_config_map_name(cluster: &str, id: u64) -> String {
    format!("{cluster}-request-{id}")
}

/// The ConfigMap that records `request` (queued) on the IpfsCluster `cluster` of uid
/// `cluster_uid` (its owner: deleting the cluster deletes its requests).
pub fn request_config_map(
    request: &ActionRequest,
    cluster: &str,
    cluster_uid: Option<&str>,
    now: &str,
) -> ConfigMap {
    let owner = cluster_uid.map(|uid| OwnerReference {
        api_version: format!("{}/{}", super::GROUP, super::VERSION),
        kind: "IpfsCluster".into(),
        name: cluster.to_owned(),
        uid: uid.to_owned(),
        ..OwnerReference::default()
    });
    let recorded = ActionRequest {
        cluster: String::new(),
        ..request.clone()
    };
    let data = BTreeMap::from([
        (
            REQUEST_KEY.to_owned(),
            serde_json::to_string(&recorded).unwrap_or_default(),
        ),
        (
            STATE_KEY.to_owned(),
            RequestState::Queued.as_str().to_owned(),
        ),
        (UPDATED_KEY.to_owned(), now.to_owned()),
    ]);
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(request_config_map_name(cluster, request.id)),
            labels: Some(BTreeMap::from([(
                REQUEST_LABEL.to_owned(),
                cluster.to_owned(),
            )])),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// The record a request's ConfigMap holds; its `cluster` is `namespace/name`. An error names
/// the ConfigMap and what is wrong with it.
pub fn request_record(config_map: &ConfigMap) -> Result<RequestRecord, String> {
    let meta = &config_map.metadata;
    let name = meta.name.as_deref().unwrap_or_default();
    let cluster = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(REQUEST_LABEL))
        .ok_or_else(|| format!("ConfigMap {name} has no label {REQUEST_LABEL}"))?;
    let data = config_map.data.clone().unwrap_or_default();
    let raw = data
        .get(REQUEST_KEY)
        .ok_or_else(|| format!("ConfigMap {name} has no key {REQUEST_KEY:?}"))?;
    let mut request: ActionRequest = serde_json::from_str(raw)
        .map_err(|e| format!("ConfigMap {name}: {REQUEST_KEY:?} is not an action request: {e}"))?;
    request.cluster = match &meta.namespace {
        Some(ns) => format!("{ns}/{cluster}"),
        None => cluster.clone(),
    };
    let state = data
        .get(STATE_KEY)
        .map_or(Some(RequestState::Queued), |s| RequestState::parse(s))
        .ok_or_else(|| format!("ConfigMap {name}: {STATE_KEY:?} is not a request state"))?;
    Ok(RequestRecord {
        request,
        state,
        reason: data.get(REASON_KEY).cloned(),
        updated_at: data.get(UPDATED_KEY).cloned().unwrap_or_default(),
        status_version: data.get(STATUS_VERSION_KEY).cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_request_reads_back_with_its_cluster_and_state() {
        let request = ActionRequest {
            id: 7,
            action: ActionKind::Restart,
            cluster: "prod/store".into(),
            peer: Some("store-1".into()),
            daemon: Some(Daemon::Cluster),
            requested_at: None,
        };
        let mut cm = request_config_map(&request, "store", Some("u-1"), "2026-01-01T00:00:00Z");
        assert_eq!(cm.metadata.name.as_deref(), Some("store-request-7"));
        let owner = &cm.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("IpfsCluster", "u-1")
        );
        cm.metadata.namespace = Some("prod".into());
        let record = request_record(&cm).expect("a record");
        assert_eq!(record.request, request);
        assert_eq!(record.state, RequestState::Queued);
        let data = cm.data.get_or_insert_default();
        data.insert(STATE_KEY.into(), "done".into());
        data.insert(REASON_KEY.into(), "deleted pod store-1".into());
        let record = request_record(&cm).expect("a record");
        assert_eq!(record.state, RequestState::Done);
        assert_eq!(record.reason.as_deref(), Some("deleted pod store-1"));
        data_without_request(&mut cm);
        let e = request_record(&cm).expect_err("no request");
        assert!(
            e.contains("store-request-7") && e.contains("\"request\""),
            "{e}"
        );
    }

    fn data_without_request(cm: &mut ConfigMap) {
        cm.data.get_or_insert_default().remove(REQUEST_KEY);
    }
}
