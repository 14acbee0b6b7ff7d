//! A cluster's configuration in the dashboard: its spec shown whole, and the fields that are safe
//! to change from a page ([`EDITABLE`]: replicas, paused and the health policy) changed with the
//! token. A change is a JSON merge patch of those fields only: every other field is refused,
//! naming it, because it rolls or re-creates the peers' data (images, storage, consensus, keys)
//! and belongs in the manifest a user keeps (`kubectl apply`, `local up -f`).
//!
//! The checks here are pure: [`check_patch`] refuses what may not be changed, [`merged`] applies a
//! checked patch to a spec and validates the result as the API server would. Where the spec lives
//! is a runtime's [`SpecStore`]: in Kubernetes the IpfsCluster itself (`kube`, a merge patch
//! through the API), locally the supervisor, which applies a change as `local up -f` would
//! (`crate::runtime::local`).

pub mod kube;

use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{ClusterEntry, PinEntry};
use crate::api::cluster::MAX_REPLICAS;
use crate::api::validation::parse_duration;
use crate::api::{IpfsClusterSpec, PeerPinStatus, PinPhase, ValidationErrors};

/// What kind of value an editable field takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    Integer,
    Boolean,
    /// A duration like `10s`, `1m30s` or `500ms`.
    Duration,
}

/// One field the dashboard may change: its path under `spec`, its kind and bounds.
#[derive(Clone, Copy, Debug)]
pub struct Editable {
    /// The path under `spec`, dot-separated (`health.autoHeal`).
    pub path: &'static str,
    pub kind: FieldKind,
    pub range: Option<(i64, i64)>,
    pub description: &'static str,
}

/// The fields of an IpfsCluster spec that the dashboard may change. Each only changes how the
/// operator looks after the peers (how many, whether it acts, how it probes and heals); none
/// rewrites a peer's data or identity.
pub const EDITABLE: [Editable; 8] = [
    Editable {
        path: "replicas",
        kind: FieldKind::Integer,
        range: Some((1, MAX_REPLICAS as i64)),
        description: "Number of peers (odd and at least 3 with raft)",
    },
    Editable {
        path: "paused",
        kind: FieldKind::Boolean,
        range: None,
        description: "Stop reconciling and healing: peers keep running untouched",
    },
    Editable {
        path: "health.autoHeal",
        kind: FieldKind::Boolean,
        range: None,
        description: "Heal unhealthy peers (reconnect, restart); off: only report",
    },
    Editable {
        path: "health.probeInterval",
        kind: FieldKind::Duration,
        range: None,
        description: "Time between two probes of a peer, 1s to 1h",
    },
    Editable {
        path: "health.probeTimeout",
        kind: FieldKind::Duration,
        range: None,
        description: "How long one probe may take; shorter than the probe interval",
    },
    Editable {
        path: "health.failureThreshold",
        kind: FieldKind::Integer,
        range: Some((1, 100)),
        description: "Failed probes in a row before a daemon counts as unresponsive",
    },
    Editable {
        path: "health.maxRestartsPerHour",
        kind: FieldKind::Integer,
        range: Some((0, 60)),
        description: "Restarts per peer and hour at most (0: never restart)",
    },
    Editable {
        path: "health.minPeerConnections",
        kind: FieldKind::Integer,
        range: Some((0, 1000)),
        description: "Fewest Kubo swarm connections of a healthy peer",
    },
];

/// The spec of a cluster where it is kept, at its generation.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredSpec {
    pub spec: IpfsClusterSpec,
    /// `metadata.generation` in Kubernetes; the local state's generation.
    pub generation: i64,
}

/// A change carried out: the spec after it, and the fields it changed (none: it changed nothing).
#[derive(Clone, Debug, PartialEq)]
pub struct Patched {
    pub stored: StoredSpec,
    pub changed: Vec<String>,
}

/// Why a spec could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The cluster is gone.
    #[error("{0}")]
    NotFound(String),
    /// The changed spec is invalid (422); the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// The spec changed since the generation the client saw (412).
    #[error("{0}")]
    Changed(String),
    /// The store refused the dashboard itself (its RBAC): a deployment problem (500).
    #[error("{0}")]
    Refused(String),
    /// The store cannot be reached or is busy now (503).
    #[error("{0}")]
    Unavailable(String),
}

impl From<ValidationErrors> for SpecError {
    fn from(e: ValidationErrors) -> SpecError {
        SpecError::Invalid(e.to_string())
    }
}

/// Where a runtime keeps the specs, for `/clusters/{name}/spec`.
pub trait SpecStore: Send + Sync {
    /// The spec of `cluster` now.
    fn read(&self, cluster: &ClusterEntry) -> BoxFuture<'static, Result<StoredSpec, SpecError>>;

    /// Applies `patch` (checked by [`check_patch`]) to the spec of `cluster`, if it is still at
    /// generation `expected` (when given).
    fn patch(
        &self,
        cluster: &ClusterEntry,
        patch: Map<String, Value>,
        expected: Option<i64>,
    ) -> BoxFuture<'static, Result<Patched, SpecError>>;

    /// What a change does in this runtime, in one sentence for the answer.
    fn applied_by(&self) -> &'static str;
}

/// Why a patch is refused before it reaches a store: the field and what is wrong (422).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Refusal {
    /// `read_only_field`, `unknown_field` or `invalid_value`.
    pub code: &'static str,
    /// The JSON path from the object root (`spec.kubo.image`).
    pub field: String,
    pub message: String,
}

impl Refusal {
    fn new(code: &'static str, field: &str, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            field: format!("spec.{field}"),
            message: message.into(),
        }
    }
}

/// The editable fields, as `spec.` paths, for messages.
pub fn editable_list() -> String {
    EDITABLE
        .iter()
        .map(|e| format!("spec.{}", e.path))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The top-level fields of an IpfsCluster spec (from its schema).
fn spec_fields() -> Vec<String> {
    let schema = schemars::schema_for!(IpfsClusterSpec).to_value();
    schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// The fields of `spec.health` (from its schema).
fn health_fields() -> Vec<String> {
    let schema = schemars::schema_for!(crate::api::HealthSpec).to_value();
    schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// Checks a merge patch of a spec: only [`EDITABLE`] fields, each with a value of its kind (no
/// `null`: a field is changed, never removed). The first field refused is named.
pub fn check_patch(patch: &Map<String, Value>) -> Result<(), Refusal> {
    let (top, health) = (spec_fields(), health_fields());
    for (key, value) in patch {
        if key == "health" {
            let Value::Object(inner) = value else {
                return Err(Refusal::new(
                    "invalid_value",
                    "health",
                    "must be an object of the health fields to change",
                ));
            };
            for (key, value) in inner {
                let path = format!("health.{key}");
                if !health.contains(key) {
                    return Err(unknown(&path));
                }
                check_value(&path, value)?;
            }
        } else if top.contains(key) {
            check_value(key, value)?;
        } else {
            return Err(unknown(key));
        }
    }
    Ok(())
}

fn unknown(path: &str) -> Refusal {
    Refusal::new(
        "unknown_field",
        path,
        format!(
            "is not a field of an IpfsCluster spec; the dashboard changes {}",
            editable_list()
        ),
    )
}

/// The deepest first field of `value` under `path`, to name a read-only field exactly.
fn first_leaf(path: &str, value: &Value) -> String {
    match value {
        Value::Object(map) => match map.iter().next() {
            Some((k, v)) => first_leaf(&format!("{path}.{k}"), v),
            None => path.to_owned(),
        },
        _ => path.to_owned(),
    }
}

/// One field of a patch: editable, and a value of its kind within its bounds.
fn check_value(path: &str, value: &Value) -> Result<(), Refusal> {
    let Some(field) = EDITABLE.iter().find(|e| e.path == path) else {
        return Err(Refusal::new(
            "read_only_field",
            &first_leaf(path, value),
            format!(
                "is read-only in the dashboard: it changes the peers' data, identity or \
                 exposure, so it is changed in the cluster's manifest (`kubectl apply` in \
                 Kubernetes, `local up -f` locally). The dashboard changes {}",
                editable_list()
            ),
        ));
    };
    let wrong = |what: &str| Refusal::new("invalid_value", path, format!("must be {what}"));
    match (field.kind, value) {
        (_, Value::Null) => Err(wrong(
            "a value (a field is changed here, never removed: null is refused)",
        )),
        (FieldKind::Boolean, Value::Bool(_)) => Ok(()),
        (FieldKind::Boolean, _) => Err(wrong("true or false")),
        (FieldKind::Integer, Value::Number(n)) => match (n.as_i64(), field.range) {
            (Some(v), Some((min, max))) if (min..=max).contains(&v) => Ok(()),
            (Some(_), Some((min, max))) => Err(wrong(&format!("between {min} and {max}"))),
            (Some(_), None) => Ok(()),
            (None, _) => Err(wrong("a whole number")),
        },
        (FieldKind::Integer, _) => Err(wrong("a whole number")),
        (FieldKind::Duration, Value::String(s)) => parse_duration(s)
            .map(|_| ())
            .map_err(|e| Refusal::new("invalid_value", path, e)),
        (FieldKind::Duration, _) => Err(wrong("a duration like \"10s\", \"1m30s\" or \"500ms\"")),
    }
}

/// RFC 7386 JSON merge patch of `patch` onto `target`.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// The value at a dotted path under `spec`.
fn at<'a>(spec: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(spec, |v, k| &v[k])
}

/// `spec` with the checked `patch` applied, validated as the API server validates an update, and
/// the editable fields it changed (as `spec.` paths).
pub fn merged(
    spec: &IpfsClusterSpec,
    patch: &Map<String, Value>,
) -> Result<(IpfsClusterSpec, Vec<String>), SpecError> {
    let before = serde_json::to_value(spec)
        .map_err(|e| SpecError::Invalid(format!("the current spec: {e}")))?;
    let mut after = before.clone();
    merge(&mut after, &Value::Object(patch.clone()));
    let new: IpfsClusterSpec = serde_json::from_value(after.clone())
        .map_err(|e| SpecError::Invalid(format!("the changed spec: {e}")))?;
    new.validate_update(spec)?;
    let changed = EDITABLE
        .iter()
        .filter(|e| at(&before, e.path) != at(&after, e.path))
        .map(|e| format!("spec.{}", e.path))
        .collect();
    Ok((new, changed))
}

/// One editable field in the answer, with its value now.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct EditableField {
    /// The JSON path, `spec.replicas`, `spec.health.autoHeal`, ...
    pub field: String,
    pub kind: FieldKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum: Option<i64>,
    pub description: String,
    pub value: Value,
}

/// `GET` (and `PATCH`) `/api/dashboard/clusters/{cluster}/spec`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpecView {
    /// `namespace/name` in Kubernetes, `name` locally.
    pub cluster: String,
    /// `metadata.generation` in Kubernetes, the local state's generation; bumped by each change
    /// of the spec. Send it back in `If-Match` to change only the spec you read.
    pub generation: i64,
    /// The whole spec, as the operator applies it (defaults filled in); in `kubo.config` the
    /// values of credential-like keys (`*Key*`, `*Secret*`, `*Token*`, `*Password*`, `*Auth*`)
    /// read `<redacted>`.
    pub spec: Value,
    /// The fields the dashboard changes; every other field is read-only here.
    pub editable: Vec<EditableField>,
    /// What a change does in this runtime.
    pub applied_by: String,
    /// After a `PATCH`: the fields it changed (empty: nothing changed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<Vec<String>>,
}

/// What a Kubo configuration key holding a credential looks like (e.g. a remote pinning
/// service's `Key`, a `Secret`, an `AccessToken`).
fn is_credential(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["key", "secret", "token", "password", "auth"]
        .iter()
        .any(|w| key.contains(w))
}

/// `value` with every string or number under a credential-like key replaced: the page and the
/// API show the spec to every reader, `spec.kubo.config` may hold a remote pinning service's key.
fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_credential(k) && !v.is_object() && !v.is_array() && !v.is_null() {
                    *v = Value::String(REDACTED.into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// What a redacted value reads.
pub const REDACTED: &str = "<redacted>";

/// The answer for `stored` of `cluster`.
pub fn spec_view(cluster: &ClusterEntry, stored: &StoredSpec, applied_by: &str) -> SpecView {
    let mut spec = serde_json::to_value(&stored.spec).unwrap_or(Value::Null);
    if let Some(config) = spec.pointer_mut("/kubo/config") {
        redact(config);
    }
    let editable = EDITABLE
        .iter()
        .map(|e| EditableField {
            field: format!("spec.{}", e.path),
            kind: e.kind,
            minimum: e.range.map(|r| r.0),
            maximum: e.range.map(|r| r.1),
            description: e.description.to_owned(),
            value: at(&spec, e.path).clone(),
        })
        .collect();
    SpecView {
        cluster: cluster.key(),
        generation: stored.generation,
        spec,
        editable,
        applied_by: applied_by.to_owned(),
        changed: None,
    }
}

/// One IpfsPin of a cluster with its state on each peer.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PinDetail {
    pub name: String,
    pub cid: String,
    pub phase: Option<PinPhase>,
    /// Peers holding the content.
    pub pinned: Option<i32>,
    /// Peers the content is allocated to.
    pub allocated: Option<i32>,
    /// The pin on each peer: queued, pinning, pinned, error (with IPFS Cluster's error),
    /// unpinned or remote (held by others).
    pub peers: Vec<PeerPinStatus>,
}

/// `GET /api/dashboard/clusters/{cluster}/pins`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PinsView {
    pub cluster: String,
    /// Whether this runtime has IpfsPin objects (Kubernetes); locally pins are made through
    /// IPFS Cluster's own API and counted per peer in the status.
    pub ipfs_pins: bool,
    /// The IpfsPins of the cluster, by name.
    pub pins: Vec<PinDetail>,
}

/// The IpfsPins of `cluster` among `pins`.
pub fn pins_view(cluster: &ClusterEntry, pins: &[PinEntry]) -> PinsView {
    PinsView {
        cluster: cluster.key(),
        ipfs_pins: cluster.namespace.is_some(),
        pins: pins
            .iter()
            .filter(|p| {
                cluster.namespace.as_deref() == Some(p.namespace.as_str())
                    && p.cluster == cluster.name
            })
            .map(|p| PinDetail {
                name: p.name.clone(),
                cid: p.cid.clone(),
                phase: p.status.phase,
                pinned: p.status.pinned,
                allocated: p.status.allocated,
                peers: p.status.peers.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests;
