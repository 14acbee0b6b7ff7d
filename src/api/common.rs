//! Types shared by the IpfsCluster and IpfsPin schemas: storage, container resources, and the
//! schema fragments that `schemars` cannot derive (free-form objects, quantities).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::KubeSchema;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use super::validation::{
    FieldError, QUANTITY_PATTERN, STORAGE_SIZE_PATTERN, is_quantity, parse_storage_size,
    quantity_value,
};

/// Storage of one daemon: a PersistentVolumeClaim per peer, or a directory in local mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("quantity(self.size).compareTo(quantity(oldSelf.size)) >= 0")
        .message("may grow but never shrink: a PersistentVolumeClaim cannot be made smaller (create a new IpfsCluster and migrate the data instead)")
        .field_path(".size")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)")
        .message("is immutable: the storage class of existing volumes cannot change")
        .field_path(".storageClassName")
        .reason(Reason::FieldValueForbidden),
)]
pub struct StorageSpec {
    /// Size of the volume, as a Kubernetes quantity with an optional binary (`Ki`, `Mi`, `Gi`,
    /// `Ti`, `Pi`, `Ei`) or decimal (`k`, `M`, `G`, `T`, `P`, `E`) suffix, e.g. `10Gi`. At least
    /// `1Mi`. It may grow (the StorageClass must allow volume expansion) but never shrink.
    #[schemars(length(min = 1, max = 32), regex(pattern = STORAGE_SIZE_PATTERN))]
    #[x_kube(validation = Rule::new(format!("!self.matches(r'{STORAGE_SIZE_PATTERN}') || quantity(self).compareTo(quantity('1Mi')) >= 0")).message("must be at least 1Mi"))]
    pub size: String,

    /// StorageClass of the volumes. Unset: the cluster's default StorageClass. Immutable once
    /// set (or left unset) at creation. Ignored in local mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
}

impl StorageSpec {
    /// A volume of `size` in the default StorageClass.
    pub fn of_size(size: &str) -> Self {
        Self {
            size: size.to_owned(),
            storage_class_name: None,
        }
    }

    /// The size in bytes.
    pub fn size_bytes(&self) -> Result<u128, String> {
        parse_storage_size(&self.size)
    }

    pub(crate) fn validate(&self, path: &str, errors: &mut Vec<FieldError>) {
        match self.size_bytes() {
            Ok(bytes) if bytes < 1 << 20 => {
                errors.push(FieldError::new(
                    format!("{path}.size"),
                    "must be at least 1Mi",
                ));
            }
            Ok(_) => {}
            Err(e) => errors.push(FieldError::new(format!("{path}.size"), e)),
        }
        if self
            .storage_class_name
            .as_deref()
            .is_some_and(|c| c.is_empty() || c.len() > 253)
        {
            errors.push(FieldError::new(
                format!("{path}.storageClassName"),
                "must be 1 to 253 characters when set",
            ));
        }
    }

    pub(crate) fn validate_update(&self, old: &Self, path: &str, errors: &mut Vec<FieldError>) {
        if let (Ok(new), Ok(old_bytes)) = (self.size_bytes(), old.size_bytes())
            && new < old_bytes
        {
            errors.push(FieldError::new(
                format!("{path}.size"),
                format!(
                    "may grow but never shrink (was {}, now {})",
                    old.size, self.size
                ),
            ));
        }
        if self.storage_class_name != old.storage_class_name {
            errors.push(FieldError::new(
                format!("{path}.storageClassName"),
                "is immutable: the storage class of existing volumes cannot change",
            ));
        }
    }
}

/// CPU and memory for one container. The same shape as a Pod's `resources`, limited to requests
/// and limits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "!has(self.requests) || !has(self.limits) || self.limits.all(k, !(k in self.requests) || \
     !isQuantity(string(self.requests[k])) || !isQuantity(string(self.limits[k])) || \
     quantity(string(self.requests[k])).compareTo(quantity(string(self.limits[k]))) <= 0)"
).message("must not exceed limits: every request must be at most the limit of the same resource").field_path(".requests"))]
pub struct ResourceRequirements {
    /// Minimum resources the container is scheduled with, by resource name (`cpu`, `memory`,
    /// `ephemeral-storage`), as quantities: `cpu: 500m`, `memory: 512Mi`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "resource_list_schema")]
    pub requests: BTreeMap<String, Quantity>,

    /// Maximum resources the container may use, by resource name, as quantities. A request
    /// without a limit is unbounded; a limit without a request also sets the request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "resource_list_schema")]
    pub limits: BTreeMap<String, Quantity>,
}

impl ResourceRequirements {
    pub(crate) fn validate(&self, path: &str, errors: &mut Vec<FieldError>) {
        for (kind, list) in [("requests", &self.requests), ("limits", &self.limits)] {
            for (name, q) in list {
                if !is_quantity(&q.0) {
                    errors.push(FieldError::new(
                        format!("{path}.{kind}.{name}"),
                        format!("`{}` is not a quantity like `500m`, `2` or `1Gi`", q.0),
                    ));
                }
            }
        }
        for (name, limit) in &self.limits {
            let request = self.requests.get(name).and_then(|q| quantity_value(&q.0));
            if let (Some(request), Some(limit)) = (request, quantity_value(&limit.0))
                && request > limit
            {
                errors.push(FieldError::new(
                    format!("{path}.requests"),
                    format!("must not exceed limits: {name} request is above its limit"),
                ));
            }
        }
    }
}

/// `{resource name: quantity}`, each quantity an integer or a string in the Kubernetes quantity
/// syntax (what `controller-gen` emits for `corev1.ResourceList`).
fn resource_list_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "maxProperties": 8,
        "additionalProperties": {
            "maxLength": 64,
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": true,
        },
    })
}

/// `{annotation key: value}`, bounded (at most 32 entries of at most 4 KiB each).
pub(crate) fn annotations_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "maxProperties": 32,
        "additionalProperties": {"type": "string", "maxLength": 4096},
    })
}

/// The name of an object in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// Name of the object, in the namespace of the referring object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}
