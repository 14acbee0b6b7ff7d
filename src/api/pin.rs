//! `IpfsPin`: content pinned on an IpfsCluster through the IPFS Cluster REST API.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::cluster::MAX_REPLICAS;
use super::common::LocalObjectReference;
use super::validation::{CID_MAX_LENGTH, CID_PATTERN, FieldError, ValidationErrors, check_cid};

/// Content (a CID) pinned on an IpfsCluster: the operator submits the pin through the IPFS
/// Cluster REST API, reports which peers hold it, and unpins it when this object is deleted.
// Clippy reads the repeated `printcolumn(type_ = ...)` keys as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "ipfskit.io",
    version = "v1alpha1",
    kind = "IpfsPin",
    plural = "ipfspins",
    namespaced,
    status = "IpfsPinStatus",
    shortname = "ipin",
    category = "ipfs",
    derive = "PartialEq",
    doc = "Content (a CID) pinned on an IpfsCluster by ipfs-kit-operator.",
    printcolumn(
        name = "CID",
        type_ = "string",
        json_path = ".spec.cid",
        description = "The pinned content"
    ),
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.clusterRef.name",
        description = "The IpfsCluster holding the pin"
    ),
    printcolumn(
        name = "Pinned",
        type_ = "string",
        json_path = ".status.pinnedSummary",
        description = "Peers holding the pin / peers allocated to it"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Lifecycle phase"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.replicationMin) || !has(self.replicationMax) || self.replicationMin <= self.replicationMax")
    .message("spec.replicationMin must not exceed spec.replicationMax")
    .field_path(".replicationMin"))]
pub struct IpfsPinSpec {
    /// The IpfsCluster, in the same namespace, that holds the pin. Required and immutable
    /// (to move content, create an IpfsPin on the other cluster).
    #[x_kube(validation = Rule::new("self == oldSelf")
        .message("spec.clusterRef is immutable: create a new IpfsPin to pin on another cluster")
        .reason(Reason::FieldValueForbidden))]
    pub cluster_ref: LocalObjectReference,

    /// The content identifier to pin: a CIDv0 (`Qm` followed by 44 base58 characters) or a
    /// CIDv1 in a multibase encoding such as base32 (`bafy...`), base58btc (`z...`), base36
    /// (`k...`) or base16 (`f01...`). Immutable: to pin other content, create another IpfsPin.
    #[schemars(length(min = 1, max = CID_MAX_LENGTH))]
    #[x_kube(
        validation = Rule::new(format!("self.matches('{CID_PATTERN}')"))
            .message("spec.cid must be a CID: CIDv0 (`Qm` followed by 44 base58 characters) or a multibase CIDv1 such as `bafy...` (base32), `z...` (base58btc), `k...` (base36) or `f01...` (base16)"),
        validation = Rule::new("self == oldSelf")
            .message("spec.cid is immutable: create another IpfsPin to pin other content")
            .reason(Reason::FieldValueForbidden),
    )]
    pub cid: String,

    /// Human-readable name of the pin in IPFS Cluster (`ipfs-cluster-ctl pin ls`). Unset: the
    /// `<namespace>/<name>` of this object. At most 255 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub name: Option<String>,

    /// Minimum number of peers that must hold the content. Unset: the cluster's
    /// `spec.cluster.replicationFactorMin` (every peer when that is unset too). At least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_REPLICAS))]
    pub replication_min: Option<i32>,

    /// Maximum number of peers that hold the content. Unset: the cluster's
    /// `spec.cluster.replicationFactorMax` (every peer when that is unset too). At least
    /// `replicationMin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_REPLICAS))]
    pub replication_max: Option<i32>,

    /// `recursive` (default: the CID and everything it links to) or `direct` (the root block
    /// only).
    #[serde(default)]
    pub mode: PinMode,
}

/// How much of a DAG a pin holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PinMode {
    #[default]
    Recursive,
    Direct,
}

impl PinMode {
    /// The name IPFS Cluster's REST API uses (`?mode=`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recursive => "recursive",
            Self::Direct => "direct",
        }
    }
}

/// Lifecycle phase of an IpfsPin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PinPhase {
    /// Not submitted yet (e.g. the IpfsCluster does not exist or is not ready).
    #[default]
    Pending,
    /// Submitted; the allocated peers are fetching the content.
    Pinning,
    /// Every allocated peer holds the content.
    Pinned,
    /// At least `replicationMin` peers hold it, some allocated peers are in error.
    Degraded,
    /// Fewer than `replicationMin` peers hold it and pinning failed.
    Failed,
}

/// State of a pin on one peer, as IPFS Cluster reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PeerPinState {
    /// Waiting in the peer's pinning queue.
    Queued,
    /// Being fetched.
    Pinning,
    /// Held by the peer.
    Pinned,
    /// Pinning failed on the peer (see `error`).
    Error,
    /// Allocated to the peer but not pinned, and not queued.
    Unpinned,
    /// Not allocated to this peer (held by others).
    Remote,
}

/// The pin as seen on one peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerPinStatus {
    /// Peer name (as in the IpfsCluster's `status.peers[].name`).
    pub peer: String,
    /// IPFS Cluster peer ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
    /// Queued, Pinning, Pinned, Error, Unpinned or Remote.
    pub state: PeerPinState,
    /// The error IPFS Cluster reported for this peer, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When IPFS Cluster last updated this peer's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Time>,
}

/// Observed state of an IpfsPin, written by the operator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpfsPinStatus {
    /// Lifecycle phase: Pending, Pinning, Pinned, Degraded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PinPhase>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Conditions (Kubernetes API conventions), one per type, e.g. Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The pin on each peer of the cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["peer".into()]))]
    pub peers: Vec<PeerPinStatus>,

    /// Peers holding the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<i32>,

    /// Peers the content is allocated to (everything but Remote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated: Option<i32>,

    /// `pinned/allocated`, e.g. `2/3`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_summary: Option<String>,
}

impl IpfsPinStatus {
    /// Sets `pinned`, `allocated` and `pinnedSummary` from `peers`.
    pub fn summarize_peers(&mut self) {
        let count = |f: &dyn Fn(&PeerPinStatus) -> bool| {
            i32::try_from(self.peers.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
        };
        let pinned = count(&|p| p.state == PeerPinState::Pinned);
        let allocated = count(&|p| p.state != PeerPinState::Remote);
        self.pinned = Some(pinned);
        self.allocated = Some(allocated);
        self.pinned_summary = Some(format!("{pinned}/{allocated}"));
    }
}

impl IpfsPinSpec {
    /// Checks the rules the API server enforces on creation. Error fields are JSON paths from the
    /// object root (`spec.cid`).
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = Vec::new();
        if self.cluster_ref.name.is_empty() || self.cluster_ref.name.len() > 253 {
            errors.push(FieldError::new(
                "spec.clusterRef.name",
                "must be 1 to 253 characters",
            ));
        }
        if let Err(e) = check_cid(&self.cid) {
            errors.push(FieldError::new("spec.cid", e));
        }
        if self.name.as_ref().is_some_and(|n| n.len() > 255) {
            errors.push(FieldError::new(
                "spec.name",
                "must be at most 255 characters",
            ));
        }
        for (field, value) in [
            ("spec.replicationMin", self.replication_min),
            ("spec.replicationMax", self.replication_max),
        ] {
            if value.is_some_and(|v| !(1..=MAX_REPLICAS).contains(&v)) {
                errors.push(FieldError::new(
                    field,
                    format!("must be between 1 and {MAX_REPLICAS}"),
                ));
            }
        }
        if let (Some(min), Some(max)) = (self.replication_min, self.replication_max)
            && min > max
        {
            errors.push(FieldError::new(
                "spec.replicationMin",
                "must not exceed spec.replicationMax",
            ));
        }
        ValidationErrors::check(errors)
    }

    /// Checks the rules the API server enforces on update: [`Self::validate`] plus the fixed
    /// `clusterRef` and `cid`.
    pub fn validate_update(&self, old: &Self) -> Result<(), ValidationErrors> {
        let mut errors = match self.validate() {
            Ok(()) => Vec::new(),
            Err(ValidationErrors(errors)) => errors,
        };
        if self.cluster_ref != old.cluster_ref {
            errors.push(FieldError::new("spec.clusterRef", "is immutable"));
        }
        if self.cid != old.cid {
            errors.push(FieldError::new("spec.cid", "is immutable"));
        }
        ValidationErrors::check(errors)
    }
}
