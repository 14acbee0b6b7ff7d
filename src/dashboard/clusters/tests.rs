use serde_json::json;

use super::*;
use crate::api::Consensus;

fn patch(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("an object")
}

#[test]
fn only_the_safe_fields_may_be_changed_and_a_refusal_names_the_field() {
    assert_eq!(
        check_patch(&patch(json!({"replicas": 4, "paused": true,
            "health": {"autoHeal": false, "probeInterval": "30s", "probeTimeout": "2s",
                       "failureThreshold": 5, "maxRestartsPerHour": 0, "minPeerConnections": 2}}))),
        Ok(())
    );
    let refused = |v: Value| check_patch(&patch(v)).expect_err("refused");
    let r = refused(json!({"kubo": {"image": "ipfs/kubo:v0.43.0"}}));
    assert_eq!(
        (r.code, r.field.as_str()),
        ("read_only_field", "spec.kubo.image")
    );
    assert!(
        r.message.contains("spec.replicas") && r.message.contains("kubectl apply"),
        "{r}"
    );
    let r = refused(json!({"cluster": {"consensus": "raft"}}));
    assert_eq!(r.field, "spec.cluster.consensus");
    let r = refused(json!({"replicas": 2, "swarmKeyRef": {"name": "k"}}));
    assert_eq!(
        (r.code, r.field.as_str()),
        ("read_only_field", "spec.swarmKeyRef.name")
    );
    let r = refused(json!({"replicaz": 2}));
    assert_eq!(
        (r.code, r.field.as_str()),
        ("unknown_field", "spec.replicaz")
    );
    let r = refused(json!({"health": {"autoHeel": true}}));
    assert_eq!(
        (r.code, r.field.as_str()),
        ("unknown_field", "spec.health.autoHeel")
    );
    for (value, field, what) in [
        (json!({"replicas": 0}), "spec.replicas", "between 1 and 100"),
        (json!({"replicas": "3"}), "spec.replicas", "a whole number"),
        (json!({"replicas": 2.5}), "spec.replicas", "a whole number"),
        (json!({"paused": "yes"}), "spec.paused", "true or false"),
        (
            json!({"replicas": null}),
            "spec.replicas",
            "null is refused",
        ),
        (
            json!({"health": {"probeInterval": "soon"}}),
            "spec.health.probeInterval",
            "not a duration",
        ),
        (
            json!({"health": {"maxRestartsPerHour": 61}}),
            "spec.health.maxRestartsPerHour",
            "between 0 and 60",
        ),
        (json!({"health": 3}), "spec.health", "an object"),
    ] {
        let r = refused(value.clone());
        assert_eq!(
            (r.code, r.field.as_str()),
            ("invalid_value", field),
            "{value}"
        );
        assert!(r.message.contains(what), "{value}: {r}");
    }
}

#[test]
fn a_merged_spec_is_validated_as_an_update_and_tells_what_changed() {
    let spec = IpfsClusterSpec::default();
    let (new, changed) = merged(
        &spec,
        &patch(json!({"replicas": 5, "health": {"autoHeal": false}})),
    )
    .expect("valid");
    assert_eq!((new.replicas, new.health.auto_heal), (5, false));
    assert_eq!(new.kubo, spec.kubo, "the other fields are kept");
    assert_eq!(changed, ["spec.replicas", "spec.health.autoHeal"]);
    let (_, changed) = merged(&spec, &patch(json!({"replicas": 3}))).expect("valid");
    assert!(changed.is_empty(), "3 is the default: nothing changed");

    // The rules across fields: a timeout not shorter than the interval, raft's odd count.
    let err = merged(&spec, &patch(json!({"health": {"probeTimeout": "10s"}})))
        .expect_err("timeout = interval")
        .to_string();
    assert!(err.contains("spec.health.probeTimeout"), "{err}");
    let raft = IpfsClusterSpec {
        cluster: crate::api::ClusterSpec {
            consensus: Consensus::Raft,
            ..Default::default()
        },
        ..IpfsClusterSpec::default()
    };
    let err = merged(&raft, &patch(json!({"replicas": 4})))
        .expect_err("raft with 4")
        .to_string();
    assert!(
        err.contains("spec.replicas") && err.contains("odd"),
        "{err}"
    );
}

#[test]
fn the_view_lists_the_editable_fields_with_their_values() {
    let cluster = ClusterEntry {
        namespace: Some("prod".into()),
        name: "web".into(),
        replicas: 3,
        paused: false,
        status: Default::default(),
        uid: None,
        resource_version: None,
        processes: Vec::new(),
    };
    let stored = StoredSpec {
        spec: IpfsClusterSpec::default(),
        generation: 7,
    };
    let view = serde_json::to_value(spec_view(&cluster, &stored, "a patch")).expect("json");
    assert_eq!(view["cluster"], "prod/web");
    assert_eq!(view["generation"], 7);
    assert_eq!(
        view["spec"]["kubo"]["image"],
        crate::api::cluster::DEFAULT_KUBO_IMAGE
    );
    let fields: Vec<&str> = view["editable"]
        .as_array()
        .expect("editable")
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert_eq!(fields.len(), EDITABLE.len());
    assert_eq!(fields[0], "spec.replicas");
    assert_eq!(view["editable"][0]["value"], 3);
    assert_eq!(view["editable"][0]["maximum"], 100);
    assert_eq!(view["editable"][3]["field"], "spec.health.probeInterval");
    assert_eq!(view["editable"][3]["value"], "10s");
    assert!(view.get("changed").is_none());
}

#[test]
fn credentials_in_the_kubo_config_are_not_shown() {
    let cluster = ClusterEntry {
        namespace: None,
        name: "demo".into(),
        replicas: 3,
        paused: false,
        status: Default::default(),
        uid: None,
        resource_version: None,
        processes: Vec::new(),
    };
    let mut spec = IpfsClusterSpec::default();
    spec.kubo.config = patch(json!({
        "Pinning": {"RemoteServices": {"pinata": {"API": {
            "Endpoint": "https://api.pinata.cloud/psa", "Key": "s3cr3t-value"}}}},
        "Swarm": {"ConnMgr": {"HighWater": 200}}}))
    .into();
    let view = spec_view(
        &cluster,
        &StoredSpec {
            spec,
            generation: 1,
        },
        "memory",
    );
    let text = serde_json::to_string(&view).expect("json");
    assert!(!text.contains("s3cr3t-value"), "{text}");
    let api = &view.spec["kubo"]["config"]["Pinning"]["RemoteServices"]["pinata"]["API"];
    assert_eq!(api["Key"], REDACTED);
    assert_eq!(api["Endpoint"], "https://api.pinata.cloud/psa");
    assert_eq!(
        view.spec["kubo"]["config"]["Swarm"]["ConnMgr"]["HighWater"],
        200
    );
}
