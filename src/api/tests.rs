//! Unit tests of the API types: the generated CRDs (shape, freshness of `crds/`), defaults (serde
//! and schema agree), status round trips, and the Rust-side validation.

use std::path::{Path, PathBuf};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::*;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `openAPIV3Schema` of a CRD as JSON.
fn schema_of(crd: &CustomResourceDefinition) -> Value {
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref());
    serde_json::to_value(schema.expect("schema")).expect("schema json")
}

/// Applies the `default`s of `schema` to `value` the way the API server does: a missing property
/// with a default gets it, then defaulting recurses into present objects and arrays.
fn apply_schema_defaults(schema: &Value, value: &mut Value) {
    if let (Some(props), Some(obj)) = (schema["properties"].as_object(), value.as_object_mut()) {
        for (name, prop) in props {
            if !obj.contains_key(name)
                && let Some(default) = prop.get("default")
            {
                obj.insert(name.clone(), default.clone());
            }
            if let Some(child) = obj.get_mut(name) {
                apply_schema_defaults(prop, child);
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array_mut()) {
        for item in array {
            apply_schema_defaults(items, item);
        }
    }
}

#[test]
fn crds_directory_is_up_to_date() {
    let documents = crd_documents().expect("render CRDs");
    assert_eq!(documents.len(), 2);
    let mut stale = Vec::new();
    // The repository's crds/ and the helm chart's copy (helm installs crds/ of a chart).
    for dir in ["crds", "charts/ipfs-kit-operator/crds"] {
        for doc in &documents {
            let path = manifest_dir().join(dir).join(&doc.file_name);
            match std::fs::read_to_string(&path) {
                Ok(on_disk) if on_disk == doc.yaml => {}
                Ok(_) => stale.push(format!("{} differs", path.display())),
                Err(e) => stale.push(format!("{} unreadable: {e}", path.display())),
            }
        }
    }
    assert!(
        stale.is_empty(),
        "crds/ or charts/ipfs-kit-operator/crds/ is stale ({}): regenerate both with `make crds` \
         (scripts/gen-crds.sh) and commit the result",
        stale.join("; ")
    );
}

#[test]
fn crd_stream_is_both_documents_separated_by_a_document_marker() {
    let yaml = crds_yaml().expect("yaml");
    let documents: Vec<&str> = yaml.split("\n---\n").collect();
    assert_eq!(documents.len(), 2, "{yaml}");
    assert!(documents[0].contains("name: ipfsclusters.ipfskit.io"));
    assert!(documents[1].contains("name: ipfspins.ipfskit.io"));
    for doc in documents {
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(doc).expect("each document is a CRD");
        assert_eq!(crd.spec.group, GROUP);
    }
}

#[test]
fn cluster_crd_has_names_subresources_and_printer_columns() {
    let crd = IpfsCluster::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("ipfsclusters.ipfskit.io")
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["ipfsc".to_owned()]));
    assert_eq!(crd.spec.names.categories, Some(vec!["ipfs".to_owned()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, VERSION);
    let sub = version.subresources.as_ref().expect("subresources");
    assert!(sub.status.is_some());
    let scale = sub.scale.as_ref().expect("scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    let columns: Vec<(&str, &str)> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        columns,
        [
            ("Replicas", ".spec.replicas"),
            ("Ready", ".status.readyReplicas"),
            ("Health", ".status.healthScore"),
            ("Phase", ".status.phase"),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
}

#[test]
fn pin_crd_has_names_subresources_and_printer_columns() {
    let crd = IpfsPin::crd();
    assert_eq!(crd.metadata.name.as_deref(), Some("ipfspins.ipfskit.io"));
    assert_eq!(crd.spec.names.short_names, Some(vec!["ipin".to_owned()]));
    assert_eq!(crd.spec.names.categories, Some(vec!["ipfs".to_owned()]));
    let version = &crd.spec.versions[0];
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
    let columns: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["CID", "Cluster", "Pinned", "Phase", "Age"]);
}

/// Every property of the spec schemas carries a description (`kubectl explain` shows it).
#[test]
fn every_spec_field_is_documented() {
    fn walk(path: &str, schema: &Value, missing: &mut Vec<String>) {
        if let Some(props) = schema["properties"].as_object() {
            for (name, prop) in props {
                let child = format!("{path}.{name}");
                if prop["description"]
                    .as_str()
                    .is_none_or(|d| d.trim().is_empty())
                {
                    missing.push(child.clone());
                }
                walk(&child, prop, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    for crd in crds() {
        let schema = schema_of(&crd);
        walk(
            &format!("{}.spec", crd.spec.names.kind),
            &schema["properties"]["spec"],
            &mut missing,
        );
    }
    assert!(
        missing.is_empty(),
        "fields without a doc comment: {missing:?}"
    );
}

/// Strings and collections that CEL rules read are bounded (maxLength / maxItems / maxProperties),
/// or the API server refuses the CRD for exceeding the CEL cost budget.
#[test]
fn values_read_by_cel_rules_are_bounded() {
    fn walk(path: &str, schema: &Value, under_rule: bool, unbounded: &mut Vec<String>) {
        let under_rule = under_rule || schema.get("x-kubernetes-validations").is_some();
        if under_rule && schema.get("x-kubernetes-preserve-unknown-fields").is_none() {
            let bounded = match schema["type"].as_str() {
                Some("string") => schema.get("maxLength").is_some() || schema.get("enum").is_some(),
                Some("array") => schema.get("maxItems").is_some(),
                Some("object") if schema.get("additionalProperties").is_some() => {
                    schema.get("maxProperties").is_some()
                }
                _ => true,
            };
            if !bounded {
                unbounded.push(path.to_owned());
            }
        }
        if let Some(props) = schema["properties"].as_object() {
            for (name, prop) in props {
                walk(&format!("{path}.{name}"), prop, under_rule, unbounded);
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(child) = schema.get(key).filter(|c| c.is_object()) {
                walk(&format!("{path}[]"), child, under_rule, unbounded);
            }
        }
    }
    let mut unbounded = Vec::new();
    for crd in crds() {
        let schema = schema_of(&crd);
        walk(
            &crd.spec.names.kind,
            &schema["properties"]["spec"],
            false,
            &mut unbounded,
        );
    }
    assert!(
        unbounded.is_empty(),
        "unbounded values under CEL rules: {unbounded:?}"
    );
}

#[test]
fn images_default_to_pinned_versions() {
    let spec = IpfsClusterSpec::default();
    for image in [&spec.kubo.image, &spec.cluster.image] {
        assert!(validation::is_pinned_image(image), "{image}");
        assert!(!image.ends_with(":latest"));
    }
}

/// Deserialising a partial spec (serde defaults) gives the same object as the API server's
/// schema defaulting, so the local runtime and Kubernetes see the same effective spec.
#[test]
fn serde_defaults_equal_schema_defaults() {
    let schema = schema_of(&IpfsCluster::crd());
    let spec_schema = &schema["properties"]["spec"];
    for partial in [
        json!({}),
        json!({"replicas": 5}),
        json!({"health": {"probeInterval": "30s"}}),
        json!({"kubo": {"storage": {"size": "20Gi"}}, "cluster": {"consensus": "raft"}}),
        json!({"networking": {"p2p": {"exposure": "LoadBalancer"}, "gateway": {}}}),
        json!({"cluster": {"secretRef": {"name": "s"}}}),
    ] {
        let spec: IpfsClusterSpec = serde_json::from_value(partial.clone()).expect("deserialise");
        let mut defaulted = partial.clone();
        apply_schema_defaults(spec_schema, &mut defaulted);
        assert_eq!(
            serde_json::to_value(&spec).expect("serialise"),
            defaulted,
            "from {partial}"
        );
    }

    let schema = schema_of(&IpfsPin::crd());
    let partial = json!({"clusterRef": {"name": "c"}, "cid": "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"});
    let spec: IpfsPinSpec = serde_json::from_value(partial.clone()).expect("pin");
    let mut defaulted = partial;
    apply_schema_defaults(&schema["properties"]["spec"], &mut defaulted);
    assert_eq!(serde_json::to_value(&spec).expect("serialise"), defaulted);
    assert_eq!(spec.mode, PinMode::Recursive);
}

#[test]
fn documented_health_defaults() {
    let spec: IpfsClusterSpec = serde_json::from_value(json!({})).expect("empty spec");
    assert_eq!(spec.replicas, 3);
    assert_eq!(spec.cluster.consensus, Consensus::Crdt);
    assert!(!spec.paused);
    let h = &spec.health;
    assert_eq!(h.probe_interval(), Ok(std::time::Duration::from_secs(10)));
    assert_eq!(h.probe_timeout(), Ok(std::time::Duration::from_secs(5)));
    assert_eq!(
        (
            h.failure_threshold,
            h.auto_heal,
            h.max_restarts_per_hour,
            h.min_peer_connections
        ),
        (3, true, 5, 1)
    );
    assert_eq!(spec.kubo.storage.size_bytes(), Ok(10 << 30));
    assert_eq!(spec.cluster.storage.size_bytes(), Ok(1 << 30));
    assert_eq!(spec.networking.p2p.exposure, Exposure::Internal);
    assert_eq!(spec.networking.p2p.ports, [4001, 9096]);
    assert!(!spec.networking.gateway.enabled);
    assert_eq!(spec, IpfsClusterSpec::default());
    assert_eq!(spec.validate(), Ok(()));
}

fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).expect("timestamp"))
}

#[test]
fn cluster_status_round_trips() {
    let mut status = IpfsClusterStatus {
        phase: Some(ClusterPhase::Degraded),
        observed_generation: Some(4),
        replicas: Some(3),
        ready_replicas: Some(2),
        selector: Some("app.kubernetes.io/instance=demo".into()),
        health_score: Some(66),
        peers: vec![
            PeerStatus {
                name: "demo-0".into(),
                peer_id: Some("12D3KooWA".into()),
                cluster_peer_id: Some("12D3KooWB".into()),
                kubo_version: Some("0.42.0".into()),
                cluster_version: Some("1.1.6".into()),
                swarm_peers: Some(2),
                cluster_peers_seen: Some(3),
                repo_size: Some(1 << 33),
                storage_max: Some(9 << 30),
                bytes_in: Some(123_456),
                bytes_out: Some(654_321),
                pins_pinned: Some(3),
                pins_queued: Some(0),
                pins_pinning: Some(1),
                pins_error: Some(0),
                score: Some(100),
                state: PeerState::Healthy,
                restarts: 0,
                last_probe: Some(at(1_700_000_000)),
                last_error: None,
            },
            PeerStatus {
                name: "demo-1".into(),
                state: PeerState::Unhealthy,
                restarts: 2,
                last_error: Some("Kubo RPC: timed out after 5s".into()),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    conditions::set_condition(
        &mut status.conditions,
        conditions::READY,
        conditions::ConditionStatus::False,
        "PeersUnhealthy",
        "2/3 peers ready",
        Some(4),
        at(1_700_000_100),
    );
    status.record_healing(HealingRecord {
        time: at(1_700_000_200),
        peer: "demo-1".into(),
        action: HealingAction::RestartPeer,
        reason: "Kubo RPC unresponsive for 3 probes".into(),
        result: HealingResult::Pending,
    });

    let value = serde_json::to_value(&status).expect("serialise");
    assert_eq!(value["phase"], "Degraded");
    assert_eq!(value["peers"][0]["peerId"], "12D3KooWA");
    assert_eq!(value["peers"][0]["lastProbe"], "2023-11-14T22:13:20Z");
    assert_eq!(
        value["peers"][1].get("peerId"),
        None,
        "unset fields are omitted, not null"
    );
    assert_eq!(
        value["conditions"][0]["lastTransitionTime"],
        "2023-11-14T22:15:00Z"
    );
    assert_eq!(value["healing"][0]["action"], "RestartPeer");
    let back: IpfsClusterStatus = serde_json::from_value(value).expect("deserialise");
    assert_eq!(back, status);

    // Through YAML (the local runtime's state files, kubectl output) too.
    let yaml = serde_yaml::to_string(&status).expect("yaml");
    assert_eq!(
        serde_yaml::from_str::<IpfsClusterStatus>(&yaml).expect("from yaml"),
        status
    );

    // An empty status (a fresh object) deserialises.
    assert_eq!(
        serde_json::from_value::<IpfsClusterStatus>(json!({})).expect("{}"),
        IpfsClusterStatus::default()
    );
}

#[test]
fn healing_history_is_bounded() {
    let mut status = IpfsClusterStatus::default();
    for i in 0..(HEALING_LIMIT_FOR_TEST + 5) {
        status.record_healing(HealingRecord {
            time: at(1_700_000_000 + i as i64),
            peer: format!("p-{i}"),
            action: HealingAction::SwarmConnect,
            reason: "low connectivity".into(),
            result: HealingResult::Succeeded,
        });
    }
    assert_eq!(status.healing.len(), HEALING_LIMIT_FOR_TEST);
    assert_eq!(status.healing[0].peer, "p-5", "oldest dropped first");
    assert_eq!(status.healing.last().map(|r| r.peer.as_str()), Some("p-24"));
    // The schema bound matches the code bound.
    let schema = schema_of(&IpfsCluster::crd());
    assert_eq!(
        schema["properties"]["status"]["properties"]["healing"]["maxItems"],
        json!(HEALING_LIMIT_FOR_TEST)
    );
}

const HEALING_LIMIT_FOR_TEST: usize = cluster::HEALING_HISTORY_LIMIT;

#[test]
fn pin_status_round_trips_and_summarises() {
    let mut status = IpfsPinStatus {
        phase: Some(PinPhase::Pinning),
        observed_generation: Some(1),
        peers: vec![
            PeerPinStatus {
                peer: "c-0".into(),
                peer_id: None,
                state: PeerPinState::Pinned,
                error: None,
                timestamp: Some(at(10)),
            },
            PeerPinStatus {
                peer: "c-1".into(),
                peer_id: None,
                state: PeerPinState::Pinning,
                error: None,
                timestamp: None,
            },
            PeerPinStatus {
                peer: "c-2".into(),
                peer_id: None,
                state: PeerPinState::Error,
                error: Some("context deadline exceeded".into()),
                timestamp: None,
            },
            PeerPinStatus {
                peer: "c-3".into(),
                peer_id: None,
                state: PeerPinState::Remote,
                error: None,
                timestamp: None,
            },
        ],
        ..Default::default()
    };
    status.summarize_peers();
    assert_eq!((status.pinned, status.allocated), (Some(1), Some(3)));
    assert_eq!(status.pinned_summary.as_deref(), Some("1/3"));
    let value = serde_json::to_value(&status).expect("serialise");
    assert_eq!(value["pinnedSummary"], "1/3");
    assert_eq!(value["peers"][2]["state"], "Error");
    assert_eq!(
        serde_json::from_value::<IpfsPinStatus>(value).expect("back"),
        status
    );
}

/// Every file in `examples/` holds valid IpfsCluster / IpfsPin objects (as far as the Rust-side
/// rules see; the integration tests apply them to a real API server).
#[test]
fn examples_deserialise_and_validate() {
    let dir = manifest_dir().join("examples");
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("examples/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        for doc in read_yaml_documents(&path) {
            let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
            let file = path.display();
            match kind.as_str() {
                "IpfsCluster" => {
                    let c: IpfsCluster =
                        serde_json::from_value(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
                    c.spec.validate().unwrap_or_else(|e| panic!("{file}: {e}"));
                }
                "IpfsPin" => {
                    let p: IpfsPin =
                        serde_json::from_value(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
                    p.spec.validate().unwrap_or_else(|e| panic!("{file}: {e}"));
                }
                other => panic!("{file}: unexpected kind {other:?}"),
            }
            kinds.push(kind);
        }
    }
    assert!(
        kinds.iter().filter(|k| *k == "IpfsCluster").count() >= 3,
        "minimal, full, local: {kinds:?}"
    );
    assert!(kinds.iter().any(|k| k == "IpfsPin"), "{kinds:?}");
}

fn read_yaml_documents(path: &Path) -> Vec<Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).expect("read example");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("yaml document"))
        .filter(|v| !v.is_null())
        .collect()
}

fn cluster_spec(patch: Value) -> IpfsClusterSpec {
    serde_json::from_value(patch).expect("spec")
}

#[test]
fn rust_validation_names_the_field() {
    let cases = [
        (json!({"replicas": 0}), "spec.replicas"),
        (
            json!({"replicas": 2, "cluster": {"consensus": "raft"}}),
            "spec.replicas",
        ),
        (
            json!({"replicas": 4, "cluster": {"consensus": "raft"}}),
            "spec.replicas",
        ),
        (
            json!({"cluster": {"replicationFactorMin": 3, "replicationFactorMax": 2}}),
            "spec.cluster.replicationFactorMin",
        ),
        (
            json!({"cluster": {"replicationFactorMax": 4}}),
            "spec.cluster.replicationFactorMax",
        ),
        (
            json!({"kubo": {"image": "ipfs/kubo:latest"}}),
            "spec.kubo.image",
        ),
        (
            json!({"cluster": {"image": "ipfs/ipfs-cluster"}}),
            "spec.cluster.image",
        ),
        (
            json!({"kubo": {"image": "ipfs/kubo@sha256:abc"}}),
            "spec.kubo.image",
        ),
        (
            json!({"cluster": {"image": format!("ipfs/ipfs-cluster@sha256:{}", "A".repeat(64))}}),
            "spec.cluster.image",
        ),
        (
            json!({"kubo": {"config": {"Identity": {"PeerID": "12D3KooW"}}}}),
            "spec.kubo.config.Identity",
        ),
        (
            json!({"kubo": {"storage": {"size": "ten"}}}),
            "spec.kubo.storage.size",
        ),
        (
            json!({"cluster": {"storage": {"size": "100Ki"}}}),
            "spec.cluster.storage.size",
        ),
        (
            json!({"health": {"probeInterval": "10"}}),
            "spec.health.probeInterval",
        ),
        (
            json!({"health": {"probeInterval": "5s", "probeTimeout": "5s"}}),
            "spec.health.probeTimeout",
        ),
        (
            json!({"health": {"failureThreshold": 0}}),
            "spec.health.failureThreshold",
        ),
        (
            json!({"networking": {"p2p": {"ports": [4001, 5001]}}}),
            "spec.networking.p2p.ports",
        ),
        (
            json!({"networking": {"p2p": {"ports": [8080]}}}),
            "spec.networking.p2p.ports",
        ),
        (
            json!({"networking": {"gateway": {"exposure": "NodePort"}}}),
            "spec.networking.gateway.exposure",
        ),
        (
            json!({"kubo": {"profiles": ["flatfs", "pebbleds"]}}),
            "spec.kubo.profiles",
        ),
        (
            json!({"kubo": {"resources": {"limits": {"cpu": "lots"}}}}),
            "spec.kubo.resources.limits.cpu",
        ),
        (
            json!({"kubo": {"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}}}),
            "spec.kubo.resources.requests",
        ),
    ];
    for (patch, field) in cases {
        let err = cluster_spec(patch.clone())
            .validate()
            .expect_err(&format!("{patch} must be refused"));
        assert!(
            err.names(field),
            "{patch}: expected an error on {field}, got {err}"
        );
    }
    // Odd raft clusters of 3 or more are fine.
    assert_eq!(
        cluster_spec(json!({"replicas": 5, "cluster": {"consensus": "raft"}})).validate(),
        Ok(())
    );
}

#[test]
fn rust_validation_of_updates() {
    let old =
        cluster_spec(json!({"kubo": {"storage": {"size": "10Gi", "storageClassName": "fast"}}}));
    let grow =
        cluster_spec(json!({"kubo": {"storage": {"size": "20Gi", "storageClassName": "fast"}}}));
    assert_eq!(grow.validate_update(&old), Ok(()));
    let cases = [
        (
            json!({"kubo": {"storage": {"size": "5Gi", "storageClassName": "fast"}}}),
            "spec.kubo.storage.size",
        ),
        (
            json!({"kubo": {"storage": {"size": "10Gi", "storageClassName": "slow"}}}),
            "spec.kubo.storage.storageClassName",
        ),
        (
            json!({"kubo": {"storage": {"size": "10Gi"}}}),
            "spec.kubo.storage.storageClassName",
        ),
        (
            json!({"kubo": {"storage": {"size": "10Gi", "storageClassName": "fast"}}, "cluster": {"consensus": "raft"}}),
            "spec.cluster.consensus",
        ),
    ];
    for (patch, field) in cases {
        let err = cluster_spec(patch.clone())
            .validate_update(&old)
            .expect_err(&format!("{patch}"));
        assert!(err.names(field), "{patch}: expected {field}, got {err}");
    }

    let pin = |cluster: &str, cid: &str| -> IpfsPinSpec {
        serde_json::from_value(json!({"clusterRef": {"name": cluster}, "cid": cid})).expect("pin")
    };
    let v0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";
    let v1 = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
    assert_eq!(pin("a", v0).validate_update(&pin("a", v0)), Ok(()));
    assert!(
        pin("b", v0)
            .validate_update(&pin("a", v0))
            .expect_err("clusterRef")
            .names("spec.clusterRef")
    );
    assert!(
        pin("a", v1)
            .validate_update(&pin("a", v0))
            .expect_err("cid")
            .names("spec.cid")
    );
    assert!(
        pin("a", "hello")
            .validate()
            .expect_err("cid")
            .names("spec.cid")
    );
    assert!(
        pin("", v0)
            .validate()
            .expect_err("name")
            .names("spec.clusterRef.name")
    );
}

/// `{"A": {"B": value}}` for the dotted path `A.B`.
fn nested(path: &str, value: Value) -> Value {
    path.rsplit('.')
        .fold(value, |inner, key| json!({ key: inner }))
}

#[test]
fn managed_kubo_config_keys_are_refused_naming_the_key() {
    for key in MANAGED_KUBO_KEYS {
        let field = format!("spec.kubo.config.{key}");
        for value in [
            json!("x"),
            json!({}),
            json!(["/dnsaddr/bootstrap.libp2p.io"]),
        ] {
            let config = nested(key, value.clone());
            let err = cluster_spec(json!({"kubo": {"config": config}}))
                .validate()
                .expect_err(&format!("{config} must be refused"));
            assert!(err.names(&field), "{config}: {err}");
            assert!(
                err.to_string().contains("managed by the operator"),
                "{config}: {err}"
            );
        }
        // Written with dots, or one level deeper, it is the same key.
        let flat = json!({"kubo": {"config": {*key: "x"}}});
        assert!(
            cluster_spec(flat)
                .validate()
                .is_err_and(|e| e.names(&field))
        );
        let deeper = json!({"kubo": {"config": nested(&format!("{key}.Inner"), json!(1))}});
        assert!(
            cluster_spec(deeper)
                .validate()
                .is_err_and(|e| e.names(&field))
        );
    }
    // Each managed key gets its own error.
    let all = json!({"Identity": {}, "Addresses": {"API": "a", "Gateway": "g"}, "Bootstrap": []});
    let err = cluster_spec(json!({"kubo": {"config": all}}))
        .validate()
        .expect_err("refused");
    assert_eq!(err.0.len(), 4, "{err}");
    // A parent of managed keys must stay an object.
    let err = cluster_spec(json!({"kubo": {"config": {"Addresses": "/ip4/1.2.3.4/tcp/1"}}}))
        .validate()
        .expect_err("refused");
    assert!(err.names("spec.kubo.config.Addresses"), "{err}");
}

#[test]
fn unmanaged_kubo_config_keys_are_accepted() {
    let config = json!({
        "Swarm": {"AddrFilters": ["/ip4/10.0.0.0/ipcidr/8"], "ConnMgr": {"HighWater": 200}},
        "Addresses": {"NoAnnounce": ["/ip4/10.0.0.0/ipcidr/8"], "Swarm": ["/ip4/0.0.0.0/tcp/4001"]},
        "Datastore": {"GCPeriod": "1h", "StorageGCWatermark": 80},
        "AutoConf": {"Enabled": true},
        // `null` is no value: the API server drops it, and so does the operator.
        "Identity": null,
        "Bootstrap": null,
    });
    assert_eq!(
        cluster_spec(json!({"kubo": {"config": config}})).validate(),
        Ok(())
    );
}

/// The CRD declares every managed key (a free-form object hides its keys from CEL) and refuses it
/// with a rule whose message names it.
#[test]
fn crd_refuses_every_managed_kubo_config_key_by_name() {
    let schema = schema_of(&IpfsCluster::crd());
    let config = &schema["properties"]["spec"]["properties"]["kubo"]["properties"]["config"];
    assert_eq!(config["x-kubernetes-preserve-unknown-fields"], true);
    let rules = config["x-kubernetes-validations"]
        .as_array()
        .expect("rules on spec.kubo.config");
    assert_eq!(rules.len(), MANAGED_KUBO_KEYS.len());
    for key in MANAGED_KUBO_KEYS {
        let declared = key
            .split('.')
            .fold(config, |schema, segment| &schema["properties"][segment]);
        assert!(declared["type"].is_string(), "{key} not declared: {config}");
        let rule = rules
            .iter()
            .find(|r| r["fieldPath"] == format!(".{key}"))
            .unwrap_or_else(|| panic!("no rule for {key}"));
        let message = rule["message"].as_str().expect("message");
        assert!(
            message.starts_with(&format!("spec.kubo.config.{key} is managed")),
            "{message}"
        );
        assert!(
            rule["rule"]
                .as_str()
                .expect("rule")
                .contains(&format!("has(self.{key})"))
        );
    }
    for allowed in ["Swarm", "AutoConf"] {
        assert!(config["properties"].get(allowed).is_none(), "{allowed}");
    }
    let addresses = &config["properties"]["Addresses"]["properties"];
    assert!(addresses.get("NoAnnounce").is_none() && addresses.get("Swarm").is_none());
}

#[test]
fn cluster_names_are_limited_to_what_the_derived_names_allow() {
    let at_limit = format!("a{}", "b".repeat(MAX_CLUSTER_NAME_LENGTH - 1));
    assert_eq!(at_limit.len(), 52);
    assert_eq!(check_cluster_name(&at_limit), Ok(()));
    for good in ["a", "demo", "web-3", "a1"] {
        assert_eq!(check_cluster_name(good), Ok(()), "{good}");
    }
    let past_limit = format!("{at_limit}c");
    for bad in [
        past_limit.as_str(),
        "3peers",
        "-a",
        "a-",
        "a.b",
        "Demo",
        "a_b",
        "",
    ] {
        let err = check_cluster_name(bad).expect_err(bad);
        assert_eq!(err.field, "metadata.name", "{bad}");
        assert!(
            err.message.contains("at most 52 characters") && err.message.contains("letter"),
            "{bad}: {err}"
        );
    }
    // The whole object: the name and the spec, each error naming its field.
    let spec = IpfsClusterSpec {
        replicas: 0,
        ..Default::default()
    };
    let err = IpfsCluster::new(&past_limit, spec)
        .validate()
        .expect_err("refused");
    assert!(
        err.names("metadata.name") && err.names("spec.replicas"),
        "{err}"
    );
    assert_eq!(
        IpfsCluster::new(&at_limit, IpfsClusterSpec::default()).validate(),
        Ok(())
    );
    // The CRD's root rule says the same limit, on creation only.
    let schema = schema_of(&IpfsCluster::crd());
    let rule = &schema["x-kubernetes-validations"][0];
    let text = rule["rule"].as_str().expect("root rule");
    assert!(
        text.contains(&format!(
            "self.metadata.name.size() <= {MAX_CLUSTER_NAME_LENGTH}"
        )),
        "{text}"
    );
    assert_eq!(rule["optionalOldSelf"], true);
    assert!(
        rule["message"]
            .as_str()
            .expect("message")
            .starts_with("metadata.name must be at most 52 characters and start with a letter")
    );
}

#[test]
fn image_digests_must_be_whole() {
    let err = cluster_spec(json!({"kubo": {"image": "ipfs/kubo@sha256:abc"}}))
        .validate()
        .expect_err("truncated digest");
    assert_eq!(
        err.0,
        vec![FieldError::new(
            "spec.kubo.image",
            validation::IMAGE_DIGEST_MESSAGE
        )]
    );
    let whole = format!("ipfs/ipfs-cluster@sha256:{}", "0123456789abcdef".repeat(4));
    assert_eq!(
        cluster_spec(json!({"cluster": {"image": whole}})).validate(),
        Ok(())
    );
}
