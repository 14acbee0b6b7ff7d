//! `spec.kubo.config`: the Kubo settings the operator manages, which the spec may not set, the
//! schema that lets the API server see them (a free-form object hides its keys from CEL), and the
//! same check in Rust for specs that do not pass through an API server (local mode).

use schemars::{Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::api::validation::FieldError;

/// The JSON type Kubo gives a managed key (what the CRD declares, so that CEL can see the key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KuboValueType {
    Object,
    String,
    Strings,
}

/// One Kubo config key (a dotted path) the operator manages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManagedKuboKey {
    pub path: &'static str,
    pub value_type: KuboValueType,
    /// Why the operator keeps it: the end of the refusal message.
    pub why: &'static str,
}

/// The Kubo config keys the operator manages: `spec.kubo.config` may not set them (the API server
/// and [`check_kubo_config`] refuse them). `Swarm.AddrFilters` and `Addresses.NoAnnounce` are not
/// among them: the Kubernetes start script clears them and the spec may set them back.
pub const MANAGED_KUBO_CONFIG: [ManagedKuboKey; 6] = [
    ManagedKuboKey {
        path: "Identity",
        value_type: KuboValueType::Object,
        why: "each peer makes its own identity key on its own volume",
    },
    ManagedKuboKey {
        path: "Addresses.API",
        value_type: KuboValueType::String,
        why: "the operator binds the Kubo RPC API to port 5001, which only the NetworkPolicy's \
              clients reach",
    },
    ManagedKuboKey {
        path: "Addresses.Gateway",
        value_type: KuboValueType::String,
        why: "the operator binds the gateway to port 8080 as spec.networking.gateway says",
    },
    ManagedKuboKey {
        path: "Datastore.Spec",
        value_type: KuboValueType::Object,
        why: "the datastore is chosen by spec.kubo.profiles (flatfs or pebbleds) when a \
              repository is created and cannot change afterwards",
    },
    ManagedKuboKey {
        path: "Datastore.StorageMax",
        value_type: KuboValueType::String,
        why: "set it with spec.kubo.storageMax (default 90% of spec.kubo.storage.size), which \
              the operator checks against the volume",
    },
    ManagedKuboKey {
        path: "Bootstrap",
        value_type: KuboValueType::Strings,
        why: "the peers connect to each other, not to public bootstrap nodes",
    },
];

/// The paths of [`MANAGED_KUBO_CONFIG`].
pub const MANAGED_KUBO_KEYS: [&str; MANAGED_KUBO_CONFIG.len()] = {
    let mut paths = [""; MANAGED_KUBO_CONFIG.len()];
    let mut i = 0;
    while i < paths.len() {
        paths[i] = MANAGED_KUBO_CONFIG[i].path;
        i += 1;
    }
    paths
};

impl ManagedKuboKey {
    /// What is wrong with setting the key, after its field path.
    pub fn message(&self) -> String {
        format!(
            "is managed by the operator and may not be set: {}",
            self.why
        )
    }

    /// The JSON path of the key from the object root.
    pub fn field(&self) -> String {
        format!("spec.kubo.config.{}", self.path)
    }

    /// The CEL rule, on `spec.kubo.config`, that refuses the key.
    fn rule(&self) -> String {
        let mut prefix = String::from("self");
        let mut absent = Vec::new();
        for segment in self.path.split('.') {
            prefix = format!("{prefix}.{segment}");
            absent.push(format!("!has({prefix})"));
        }
        absent.join(" || ")
    }
}

/// The schema of `spec.kubo.config`: a free-form object whose managed keys are declared (with
/// Kubo's types) so that CEL rules can see them, and one rule per managed key that refuses it.
pub(crate) fn kubo_config_schema(_: &mut SchemaGenerator) -> Schema {
    let mut properties = Map::new();
    for key in &MANAGED_KUBO_CONFIG {
        let mut leaf = match key.value_type {
            KuboValueType::Object => {
                json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
            }
            // Bounded, as every value under a CEL rule (the rules only ask whether it is set).
            KuboValueType::String => json!({"type": "string", "maxLength": 4096}),
            KuboValueType::Strings => json!({
                "type": "array",
                "maxItems": 1024,
                "items": {"type": "string", "maxLength": 4096},
            }),
        };
        leaf["description"] = json!(format!(
            "Managed by the operator, may not be set: {}.",
            key.why
        ));
        let segments: Vec<&str> = key.path.split('.').collect();
        insert_property(&mut properties, &segments, leaf);
    }
    let rules: Vec<Value> = MANAGED_KUBO_CONFIG
        .iter()
        .map(|key| {
            json!({
                "rule": key.rule(),
                "message": format!("{} {}", key.field(), key.message()),
                "fieldPath": format!(".{}", key.path),
                "reason": "FieldValueForbidden",
            })
        })
        .collect();
    let mut schema = Map::new();
    schema.insert("type".into(), json!("object"));
    schema.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
    schema.insert("properties".into(), Value::Object(properties));
    schema.insert("x-kubernetes-validations".into(), Value::Array(rules));
    Schema::from(schema)
}

/// Declares `leaf` at the dotted path `segments` under `properties`, its parents as free-form
/// objects described by the managed keys they hold.
fn insert_property(properties: &mut Map<String, Value>, segments: &[&str], leaf: Value) {
    match segments {
        [] => {}
        [last] => {
            properties.insert((*last).to_owned(), leaf);
        }
        [head, rest @ ..] => {
            let parent = properties.entry(*head).or_insert_with(|| {
                json!({
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": true,
                    "properties": {},
                })
            });
            if let Some(children) = parent.get_mut("properties").and_then(Value::as_object_mut) {
                insert_property(children, rest, leaf);
            }
            let mut managed: Vec<String> = parent["properties"]
                .as_object()
                .map(|children| children.keys().map(|k| format!("`{head}.{k}`")).collect())
                .unwrap_or_default();
            managed.sort();
            parent["description"] = json!(format!(
                "Kubo's `{head}` section: free-form, except {} (managed by the operator).",
                managed.join(" and ")
            ));
        }
    }
}

/// The managed keys `config` sets, as errors naming `spec.kubo.config.<key>`. A key written with
/// dots (`{"Addresses.API": ...}`) counts too; a `null` value does not (the API server drops it).
/// A parent of a managed key (`Addresses`) must be an object, as the CRD's schema requires.
pub fn check_kubo_config(config: &Map<String, Value>) -> Vec<FieldError> {
    fn walk(prefix: &str, map: &Map<String, Value>, errors: &mut Vec<FieldError>) {
        for (k, v) in map {
            if v.is_null() {
                continue;
            }
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            let under = |managed: &str| path == managed || path.starts_with(&format!("{managed}."));
            if let Some(m) = MANAGED_KUBO_CONFIG.iter().find(|m| under(m.path)) {
                if !errors.iter().any(|e| e.field == m.field()) {
                    errors.push(FieldError::new(m.field(), m.message()));
                }
            } else if let Some(m) = MANAGED_KUBO_CONFIG
                .iter()
                .find(|m| m.path.starts_with(&format!("{path}.")))
            {
                match v {
                    Value::Object(child) => walk(&path, child, errors),
                    _ => errors.push(FieldError::new(
                        format!("spec.kubo.config.{path}"),
                        format!(
                            "must be an object: it holds {}, which the operator manages",
                            m.path
                        ),
                    )),
                }
            }
        }
    }
    let mut errors = Vec::new();
    walk("", config, &mut errors);
    errors
}
