//! The IpfsCluster and IpfsPin CRDs against a real kube-apiserver: they install, the examples
//! apply, kubectl explains / scales / lists them, invalid objects and forbidden updates are
//! refused with errors that name the field, and the API server's defaults and the Rust types agree.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use ipfs_kit_operator::api::{
    self, ClusterPhase, IpfsCluster, IpfsClusterSpec, IpfsClusterStatus, IpfsPin, IpfsPinSpec,
    IpfsPinStatus, PeerPinState, PeerPinStatus, PeerState, PeerStatus, PinPhase,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use crate::support::control_plane::control_plane;

const FIELD_MANAGER: &str = "ipfs-kit-operator-tests";
const CID_V0: &str = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";
const CID_V1: &str = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Installs the CRDs shipped in `crds/` and returns an admin client.
async fn install_crds() -> kube::Client {
    let cp = control_plane();
    cp.install_crds().await;
    cp.admin_client().await
}

fn kubectl(args: &[&str]) -> Output {
    control_plane()
        .kubectl()
        .args(args)
        .output()
        .expect("run kubectl")
}

/// Runs kubectl and returns its stdout, failing the test (with stderr) if it fails.
fn kubectl_ok(args: &[&str]) -> String {
    let out = kubectl(args);
    assert!(
        out.status.success(),
        "kubectl {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cluster_object(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "ipfskit.io/v1alpha1", "kind": "IpfsCluster", "metadata": {"name": name}, "spec": spec})
}

fn pin_object(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "ipfskit.io/v1alpha1", "kind": "IpfsPin", "metadata": {"name": name}, "spec": spec})
}

/// A `DynamicObject` API for a kind, so that tests can send objects the Rust types could not
/// express (wrong types, unknown enum values).
fn dynamic_api(client: kube::Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(api::GROUP, api::VERSION, kind);
    let plural = match kind {
        "IpfsCluster" => "ipfsclusters",
        "IpfsPin" => "ipfspins",
        other => panic!("unknown kind {other}"),
    };
    Api::namespaced_with(client, ns, &ApiResource::from_gvk_with_plural(&gvk, plural))
}

async fn create(
    client: &kube::Client,
    ns: &str,
    object: &Value,
) -> Result<DynamicObject, kube::core::Status> {
    let kind = object["kind"].as_str().expect("kind");
    let api = dynamic_api(client.clone(), ns, kind);
    let object: DynamicObject = serde_json::from_value(object.clone()).expect("dynamic object");
    api.create(&PostParams::default(), &object)
        .await
        .map_err(|e| match e {
            kube::Error::Api(status) => *status,
            other => panic!("expected an API error, got {other}"),
        })
}

/// The fields the API server names in a refusal (`details.causes[].field`).
fn refused_fields(status: &kube::core::Status) -> Vec<String> {
    let causes: Vec<String> = status
        .details
        .iter()
        .flat_map(|d| d.causes.iter())
        .filter(|c| !c.field.is_empty())
        .map(|c| c.field.clone())
        .collect();
    causes
}

/// JSON merge patch (RFC 7386): objects merge recursively, `null` deletes, anything else replaces.
fn merge(base: &mut Value, patch: &Value) {
    match (base.as_object_mut(), patch.as_object()) {
        (Some(base), Some(patch)) => {
            for (k, v) in patch {
                if v.is_null() {
                    base.remove(k);
                } else {
                    merge(base.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *base = patch.clone(),
    }
}

#[tokio::test]
async fn crds_install_and_become_established() {
    let client = install_crds().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    for (name, short, kind) in [
        ("ipfsclusters.ipfskit.io", "ipfsc", "IpfsCluster"),
        ("ipfspins.ipfskit.io", "ipin", "IpfsPin"),
    ] {
        let crd = crds.get(name).await.expect("get CRD");
        let status = crd.status.expect("CRD status");
        let conds = status.conditions.unwrap_or_default();
        for wanted in ["Established", "NamesAccepted"] {
            assert!(
                conds
                    .iter()
                    .any(|c| c.type_ == wanted && c.status == "True"),
                "{name}: {wanted} not True: {conds:?}"
            );
        }
        let accepted = status.accepted_names.expect("accepted names");
        assert_eq!(accepted.kind, kind);
        assert_eq!(accepted.short_names, Some(vec![short.to_owned()]));
        assert_eq!(accepted.categories, Some(vec!["ipfs".to_owned()]));
    }
    // The CRDs installed are exactly the ones the binary generates.
    for generated in api::crds() {
        let name = generated.metadata.name.clone().expect("name");
        let installed = crds.get(&name).await.expect("get");
        assert_eq!(
            serde_json::to_value(&installed.spec.versions[0].schema).expect("json"),
            serde_json::to_value(&generated.spec.versions[0].schema).expect("json"),
            "{name}: installed schema differs from `ipfs-kit-operator crd` (run `make crds`)"
        );
    }
}

#[tokio::test]
async fn every_example_applies_cleanly() {
    let client = install_crds().await;
    let ns = control_plane().namespace("crd-examples").await;
    let mut applied = 0;
    for entry in std::fs::read_dir(repo_path("examples")).expect("examples/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let path = path.display().to_string();
        // Server-side apply with strict field validation: an unknown or misspelt field fails too.
        let out = kubectl_ok(&[
            "apply",
            "--server-side",
            "--validate=strict",
            "-n",
            &ns,
            "-f",
            &path,
        ]);
        assert!(out.contains("serverside-applied"), "{path}: {out}");
        applied += 1;
    }
    assert!(
        applied >= 4,
        "expected the minimal, full, local and pin examples, applied {applied}"
    );

    // The API server fills in the same defaults as the Rust types.
    let clusters: Api<IpfsCluster> = Api::namespaced(client.clone(), &ns);
    let minimal = clusters.get("minimal").await.expect("get minimal");
    assert_eq!(
        minimal.spec,
        IpfsClusterSpec::default(),
        "API server defaults differ from serde defaults"
    );
    let raw = dynamic_api(client.clone(), &ns, "IpfsCluster")
        .get("minimal")
        .await
        .expect("raw");
    assert_eq!(
        raw.data["spec"],
        serde_json::to_value(IpfsClusterSpec::default()).expect("json"),
        "defaulted spec as stored"
    );
    let full = clusters.get("full").await.expect("get full");
    assert_eq!(full.spec.replicas, 5);
    assert_eq!(full.spec.cluster.consensus, api::Consensus::Raft);
    assert_eq!(
        full.spec
            .kubo
            .config
            .as_ref()
            .map(|c| c["Swarm"]["ConnMgr"]["HighWater"].clone()),
        Some(json!(400)),
        "config overrides are kept, not pruned"
    );
    let pins: Api<IpfsPin> = Api::namespaced(client, &ns);
    let pin = pins.get("ipfs-docs-readme").await.expect("get pin");
    assert_eq!(pin.spec.cid, CID_V1);
}

#[tokio::test]
async fn kubectl_explain_prints_the_field_docs() {
    install_crds().await;
    let explain = |what: &str| {
        let cp = control_plane();
        // Discovery may lag the CRD becoming Established by a moment.
        let mut last = String::new();
        for _ in 0..50 {
            let out = cp
                .kubectl()
                .args(["explain", what])
                .output()
                .expect("kubectl explain");
            if out.status.success() {
                // kubectl wraps long descriptions; compare with whitespace collapsed.
                let text = String::from_utf8_lossy(&out.stdout);
                return text.split_whitespace().collect::<Vec<_>>().join(" ");
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("kubectl explain {what} failed: {last}");
    };
    let health = explain("ipfscluster.spec.health");
    for expected in [
        "probeInterval",
        "probeTimeout",
        "failureThreshold",
        "autoHeal",
        "maxRestartsPerHour",
        "minPeerConnections",
        "Default `10s`",
        "How often and how the peers are probed",
    ] {
        assert!(
            health.contains(expected),
            "explain ipfscluster.spec.health lacks {expected:?}:\n{health}"
        );
    }
    let interval = explain("ipfscluster.spec.health.probeInterval");
    assert!(
        interval.contains("units ms") && interval.contains("Between 1s and 1h"),
        "{interval}"
    );
    let swarm = explain("ipfscluster.spec.swarmKeyRef");
    assert!(
        swarm.contains("private network") && swarm.contains("Default `swarm.key`"),
        "{swarm}"
    );
    let ids = explain("ipfscluster.spec.podSecurityContext.omitIds");
    assert!(
        ids.contains("restricted-v2") && ids.contains("Default false"),
        "{ids}"
    );
    let replicas = explain("ipfsc.spec.replicas");
    assert!(replicas.contains("default 3"), "{replicas}");
    let cid = explain("ipfspin.spec.cid");
    assert!(cid.contains("CIDv0") && cid.contains("Immutable"), "{cid}");
    let status = explain("ipfscluster.status.peers");
    assert!(
        status.contains("swarmPeers") && status.contains("lastProbe"),
        "{status}"
    );
}

#[tokio::test]
async fn kubectl_scale_changes_spec_replicas() {
    let client = install_crds().await;
    let ns = control_plane().namespace("crd-scale").await;
    create(&client, &ns, &cluster_object("web", json!({})))
        .await
        .expect("create crdt cluster");
    create(
        &client,
        &ns,
        &cluster_object("quorum", json!({"cluster": {"consensus": "raft"}})),
    )
    .await
    .expect("create raft cluster");
    let clusters: Api<IpfsCluster> = Api::namespaced(client, &ns);

    kubectl_ok(&["scale", "-n", &ns, "ipfscluster/web", "--replicas=5"]);
    assert_eq!(clusters.get("web").await.expect("get").spec.replicas, 5);
    kubectl_ok(&["scale", "-n", &ns, "ipfsc/web", "--replicas=1"]);
    assert_eq!(clusters.get("web").await.expect("get").spec.replicas, 1);

    // The scale subresource goes through the same validation.
    let out = kubectl(&["scale", "-n", &ns, "ipfscluster/web", "--replicas=0"]);
    assert!(!out.status.success(), "scaling to 0 must be refused");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spec.replicas"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kubectl(&["scale", "-n", &ns, "ipfscluster/quorum", "--replicas=4"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "raft with 4 peers must be refused");
    assert!(
        stderr.contains("spec.replicas") && stderr.contains("raft"),
        "{stderr}"
    );
    kubectl_ok(&["scale", "-n", &ns, "ipfscluster/quorum", "--replicas=5"]);
    assert_eq!(clusters.get("quorum").await.expect("get").spec.replicas, 5);
}

fn at(secs: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(secs).expect("timestamp"))
}

#[tokio::test]
async fn status_round_trips_and_kubectl_get_ipfs_shows_the_columns() {
    let client = install_crds().await;
    let ns = control_plane().namespace("crd-get").await;
    let clusters: Api<IpfsCluster> = Api::namespaced(client.clone(), &ns);
    let pins: Api<IpfsPin> = Api::namespaced(client.clone(), &ns);
    let cluster = IpfsCluster::new("demo", IpfsClusterSpec::default());
    clusters
        .create(&PostParams::default(), &cluster)
        .await
        .expect("create cluster");
    let pin = IpfsPin::new(
        "readme",
        serde_json::from_value::<IpfsPinSpec>(
            json!({"clusterRef": {"name": "demo"}, "cid": CID_V0}),
        )
        .expect("pin spec"),
    );
    pins.create(&PostParams::default(), &pin)
        .await
        .expect("create pin");

    // A status as the operator writes it (server-side apply on the status subresource).
    let mut status = IpfsClusterStatus {
        phase: Some(ClusterPhase::Degraded),
        observed_generation: Some(1),
        replicas: Some(3),
        ready_replicas: Some(2),
        selector: Some("app.kubernetes.io/instance=demo".into()),
        health_score: Some(67),
        peers: vec![
            PeerStatus {
                name: "demo-0".into(),
                peer_id: Some("12D3KooWExample".into()),
                kubo_version: Some("0.42.0".into()),
                swarm_peers: Some(2),
                repo_size: Some(123_456_789_012),
                score: Some(100),
                state: PeerState::Healthy,
                last_probe: Some(at(1_700_000_000)),
                ..Default::default()
            },
            PeerStatus {
                name: "demo-2".into(),
                state: PeerState::Unhealthy,
                restarts: 1,
                last_error: Some("Kubo RPC timed out".into()),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    api::conditions::set_condition(
        &mut status.conditions,
        api::conditions::READY,
        api::conditions::ConditionStatus::False,
        "PeersUnhealthy",
        "2/3 peers ready",
        Some(1),
        at(1_700_000_100),
    );
    status.record_healing(api::HealingRecord {
        time: at(1_700_000_200),
        peer: "demo-2".into(),
        action: api::HealingAction::RestartPeer,
        reason: "Kubo RPC unresponsive for 3 probes".into(),
        result: api::HealingResult::Pending,
    });
    let patch =
        json!({"apiVersion": "ipfskit.io/v1alpha1", "kind": "IpfsCluster", "status": status});
    clusters
        .patch_status(
            "demo",
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .expect("apply cluster status");
    let back = clusters.get_status("demo").await.expect("get status");
    assert_eq!(
        back.status.as_ref(),
        Some(&status),
        "status changed on its way through the API server"
    );
    assert_eq!(
        back.spec,
        IpfsClusterSpec::default(),
        "a status write must not touch the spec"
    );

    let mut pin_status = IpfsPinStatus {
        phase: Some(PinPhase::Pinning),
        observed_generation: Some(1),
        peers: ["demo-0", "demo-1", "demo-2"]
            .iter()
            .zip([
                PeerPinState::Pinned,
                PeerPinState::Pinned,
                PeerPinState::Pinning,
            ])
            .map(|(peer, state)| PeerPinStatus {
                peer: (*peer).into(),
                peer_id: None,
                state,
                error: None,
                timestamp: Some(at(1_700_000_300)),
            })
            .collect(),
        ..Default::default()
    };
    pin_status.summarize_peers();
    let patch =
        json!({"apiVersion": "ipfskit.io/v1alpha1", "kind": "IpfsPin", "status": pin_status});
    pins.patch_status(
        "readme",
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .expect("apply pin status");
    assert_eq!(
        pins.get_status("readme")
            .await
            .expect("get")
            .status
            .as_ref(),
        Some(&pin_status)
    );

    let table = kubectl_ok(&["get", "ipfs", "-n", &ns]);
    let lines: Vec<&str> = table.lines().collect();
    let header_cols = |h: &str| h.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let cluster_header = lines
        .iter()
        .position(|l| l.starts_with("NAME") && l.contains("REPLICAS"))
        .unwrap_or_else(|| panic!("no IpfsCluster table in:\n{table}"));
    assert_eq!(
        header_cols(lines[cluster_header]),
        ["NAME", "REPLICAS", "READY", "HEALTH", "PHASE", "AGE"],
        "{table}"
    );
    let row = header_cols(lines[cluster_header + 1]);
    assert_eq!(
        &row[..5],
        ["ipfscluster.ipfskit.io/demo", "3", "2", "67", "Degraded"],
        "{table}"
    );
    let pin_header = lines
        .iter()
        .position(|l| l.starts_with("NAME") && l.contains("CID"))
        .unwrap_or_else(|| panic!("no IpfsPin table in:\n{table}"));
    assert_eq!(
        header_cols(lines[pin_header]),
        ["NAME", "CID", "CLUSTER", "PINNED", "PHASE", "AGE"],
        "{table}"
    );
    let row = header_cols(lines[pin_header + 1]);
    assert_eq!(
        &row[..5],
        [
            "ipfspin.ipfskit.io/readme",
            CID_V0,
            "demo",
            "2/3",
            "Pinning"
        ],
        "{table}"
    );

    // Short names work too.
    assert!(kubectl_ok(&["get", "ipfsc", "-n", &ns]).contains("demo"));
    assert!(kubectl_ok(&["get", "ipin", "-n", &ns]).contains("readme"));
}

/// One mistake per object; the API server must refuse each, naming `field`, and the Rust-side
/// validation (used where no API server is, in local mode) must refuse it too.
struct Invalid {
    what: &'static str,
    kind: &'static str,
    patch: Value,
    field: &'static str,
}

fn invalid_cases() -> Vec<Invalid> {
    let c = |what, patch, field| Invalid {
        what,
        kind: "IpfsCluster",
        patch,
        field,
    };
    let p = |what, patch, field| Invalid {
        what,
        kind: "IpfsPin",
        patch,
        field,
    };
    vec![
        c("zero replicas", json!({"replicas": 0}), "spec.replicas"),
        c(
            "too many replicas",
            json!({"replicas": 101}),
            "spec.replicas",
        ),
        c(
            "replicas not a number",
            json!({"replicas": "three"}),
            "spec.replicas",
        ),
        c(
            "unknown consensus",
            json!({"cluster": {"consensus": "paxos"}}),
            "spec.cluster.consensus",
        ),
        c(
            "raft with 2 peers",
            json!({"replicas": 2, "cluster": {"consensus": "raft"}}),
            "spec.replicas",
        ),
        c(
            "raft with 4 peers",
            json!({"replicas": 4, "cluster": {"consensus": "raft"}}),
            "spec.replicas",
        ),
        c(
            "raft with 1 peer",
            json!({"replicas": 1, "cluster": {"consensus": "raft"}}),
            "spec.replicas",
        ),
        c(
            "min above max replication",
            json!({"cluster": {"replicationFactorMin": 3, "replicationFactorMax": 2}}),
            "spec.cluster.replicationFactorMin",
        ),
        c(
            "swarm key Secret with an invalid name",
            json!({"swarmKeyRef": {"name": "Not_A_Name"}}),
            "spec.swarmKeyRef.name",
        ),
        c(
            "swarm key ref without a Secret name",
            json!({"swarmKeyRef": {"key": "swarm.key"}}),
            "spec.swarmKeyRef.name",
        ),
        c(
            "pods as root",
            json!({"podSecurityContext": {"runAsUser": 0}}),
            "spec.podSecurityContext.runAsUser",
        ),
        c(
            "ids omitted and set",
            json!({"podSecurityContext": {"omitIds": true, "fsGroup": 1000}}),
            "spec.podSecurityContext.omitIds",
        ),
        c(
            "min replication above replicas",
            json!({"replicas": 3, "cluster": {"replicationFactorMin": 4}}),
            "spec.cluster.replicationFactorMin",
        ),
        c(
            "max replication above replicas",
            json!({"replicas": 3, "cluster": {"replicationFactorMax": 5}}),
            "spec.cluster.replicationFactorMax",
        ),
        c(
            "zero min replication",
            json!({"cluster": {"replicationFactorMin": 0}}),
            "spec.cluster.replicationFactorMin",
        ),
        c(
            "storage size not a quantity",
            json!({"kubo": {"storage": {"size": "ten gigs"}}}),
            "spec.kubo.storage.size",
        ),
        c(
            "negative storage size",
            json!({"cluster": {"storage": {"size": "-1Gi"}}}),
            "spec.cluster.storage.size",
        ),
        c(
            "storage below 1Mi",
            json!({"kubo": {"storage": {"size": "100Ki"}}}),
            "spec.kubo.storage.size",
        ),
        c(
            "empty storage class",
            json!({"kubo": {"storage": {"size": "10Gi", "storageClassName": ""}}}),
            "spec.kubo.storage.storageClassName",
        ),
        c(
            "probe interval without unit",
            json!({"health": {"probeInterval": "10"}}),
            "spec.health.probeInterval",
        ),
        c(
            "probe interval above 1h",
            json!({"health": {"probeInterval": "2h"}}),
            "spec.health.probeInterval",
        ),
        c(
            "probe timeout not below interval",
            json!({"health": {"probeInterval": "10s", "probeTimeout": "10s"}}),
            "spec.health.probeTimeout",
        ),
        c(
            "zero failure threshold",
            json!({"health": {"failureThreshold": 0}}),
            "spec.health.failureThreshold",
        ),
        c(
            "negative restart budget",
            json!({"health": {"maxRestartsPerHour": -1}}),
            "spec.health.maxRestartsPerHour",
        ),
        c(
            "negative peer connections",
            json!({"health": {"minPeerConnections": -1}}),
            "spec.health.minPeerConnections",
        ),
        c(
            "exposing the Kubo RPC",
            json!({"networking": {"p2p": {"exposure": "LoadBalancer", "ports": [4001, 5001]}}}),
            "spec.networking.p2p.ports",
        ),
        c(
            "exposing the cluster REST API",
            json!({"networking": {"p2p": {"exposure": "NodePort", "ports": [9094]}}}),
            "spec.networking.p2p.ports",
        ),
        c(
            "exposing the cluster proxy",
            json!({"networking": {"p2p": {"ports": [9095]}}}),
            "spec.networking.p2p.ports",
        ),
        c(
            "exposing another port",
            json!({"networking": {"p2p": {"ports": [8080]}}}),
            "spec.networking.p2p.ports",
        ),
        c(
            "duplicate port",
            json!({"networking": {"p2p": {"ports": [4001, 4001]}}}),
            "spec.networking.p2p.ports[1]",
        ),
        c(
            "unknown exposure",
            json!({"networking": {"p2p": {"exposure": "Public"}}}),
            "spec.networking.p2p.exposure",
        ),
        c(
            "gateway exposed while off",
            json!({"networking": {"gateway": {"exposure": "LoadBalancer"}}}),
            "spec.networking.gateway.exposure",
        ),
        c(
            "latest kubo image",
            json!({"kubo": {"image": "ipfs/kubo:latest"}}),
            "spec.kubo.image",
        ),
        c(
            "untagged cluster image",
            json!({"cluster": {"image": "ipfs/ipfs-cluster"}}),
            "spec.cluster.image",
        ),
        c(
            "unknown kubo profile",
            json!({"kubo": {"profiles": ["fancy"]}}),
            "spec.kubo.profiles[0]",
        ),
        c(
            "two datastore profiles",
            json!({"kubo": {"profiles": ["flatfs", "pebbleds"]}}),
            "spec.kubo.profiles",
        ),
        c(
            "cpu limit not a quantity",
            json!({"kubo": {"resources": {"limits": {"cpu": "lots"}}}}),
            "spec.kubo.resources.limits.cpu",
        ),
        c(
            "request above limit",
            json!({"cluster": {"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}}}),
            "spec.cluster.resources.requests",
        ),
        c(
            "empty secret name",
            json!({"cluster": {"secretRef": {"name": ""}}}),
            "spec.cluster.secretRef.name",
        ),
        c(
            "invalid secret name",
            json!({"cluster": {"secretRef": {"name": "Not_A_Name"}}}),
            "spec.cluster.secretRef.name",
        ),
        c(
            "truncated kubo image digest",
            json!({"kubo": {"image": "ipfs/kubo@sha256:abc"}}),
            "spec.kubo.image",
        ),
        c(
            "upper-case cluster image digest",
            json!({"cluster": {"image": format!("ipfs/ipfs-cluster@sha256:{}", "AB".repeat(32))}}),
            "spec.cluster.image",
        ),
        c(
            "kubo identity in the config",
            json!({"kubo": {"config": {"Identity": {"PeerID": "12D3KooWabc"}}}}),
            "spec.kubo.config.Identity",
        ),
        c(
            "kubo RPC address in the config",
            json!({"kubo": {"config": {"Addresses": {"API": "/ip4/0.0.0.0/tcp/5001"}}}}),
            "spec.kubo.config.Addresses.API",
        ),
        c(
            "kubo gateway address in the config",
            json!({"kubo": {"config": {"Addresses": {"Gateway": "/ip4/0.0.0.0/tcp/8080"}}}}),
            "spec.kubo.config.Addresses.Gateway",
        ),
        c(
            "kubo datastore spec in the config",
            json!({"kubo": {"config": {"Datastore": {"Spec": {"type": "mount"}}}}}),
            "spec.kubo.config.Datastore.Spec",
        ),
        c(
            "kubo StorageMax in the config",
            json!({"kubo": {"config": {"Datastore": {"StorageMax": "100GB"}}}}),
            "spec.kubo.config.Datastore.StorageMax",
        ),
        c(
            "a storageMax beyond the volume",
            json!({"kubo": {"storage": {"size": "10Gi"}, "storageMax": "11Gi"}}),
            "spec.kubo.storageMax",
        ),
        c(
            "a storageMax beyond the default volume",
            json!({"kubo": {"storageMax": "20Gi"}}),
            "spec.kubo.storageMax",
        ),
        c(
            "a storageMax below 1Mi",
            json!({"kubo": {"storageMax": "512Ki"}}),
            "spec.kubo.storageMax",
        ),
        c(
            "a storageMax that is not a size",
            json!({"kubo": {"storageMax": "lots"}}),
            "spec.kubo.storageMax",
        ),
        c(
            "kubo bootstrap peers in the config",
            json!({"kubo": {"config": {"Bootstrap": ["/dnsaddr/bootstrap.libp2p.io"]}}}),
            "spec.kubo.config.Bootstrap",
        ),
        c(
            "kubo RPC address as a list",
            json!({"kubo": {"config": {"Addresses": {"API": ["/ip4/0.0.0.0/tcp/5001"]}}}}),
            "spec.kubo.config.Addresses.API",
        ),
        p("CID of prose", json!({"cid": "hello world"}), "spec.cid"),
        p(
            "CIDv0 one character short",
            json!({"cid": &CID_V0[..45]}),
            "spec.cid",
        ),
        p(
            "CIDv0 with a non-base58 character",
            json!({"cid": "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbd0"}),
            "spec.cid",
        ),
        p(
            "CIDv1 with an unknown multibase",
            json!({"cid": format!("x{}", &CID_V1[1..])}),
            "spec.cid",
        ),
        p("missing CID", json!({"cid": null}), "spec.cid"),
        p(
            "missing clusterRef",
            json!({"clusterRef": null}),
            "spec.clusterRef",
        ),
        p(
            "empty clusterRef name",
            json!({"clusterRef": {"name": ""}}),
            "spec.clusterRef.name",
        ),
        p(
            "min above max replication",
            json!({"replicationMin": 3, "replicationMax": 2}),
            "spec.replicationMin",
        ),
        p(
            "zero min replication",
            json!({"replicationMin": 0}),
            "spec.replicationMin",
        ),
        p("unknown pin mode", json!({"mode": "shallow"}), "spec.mode"),
    ]
}

/// Whether the Rust types refuse `spec` (it does not deserialise, or `validate` names a field
/// that `field` lies under).
fn rust_refuses(kind: &str, spec: &Value, field: &str) -> Result<(), String> {
    let result = match kind {
        "IpfsCluster" => match serde_json::from_value::<IpfsClusterSpec>(spec.clone()) {
            Err(_) => return Ok(()),
            Ok(s) => s.validate(),
        },
        _ => match serde_json::from_value::<IpfsPinSpec>(spec.clone()) {
            Err(_) => return Ok(()),
            Ok(s) => s.validate(),
        },
    };
    match result {
        Ok(()) => Err("accepted".into()),
        Err(errors) if errors.0.iter().any(|e| field.starts_with(&e.field)) => Ok(()),
        Err(errors) => Err(format!("refused, but naming other fields: {errors}")),
    }
}

#[tokio::test]
async fn invalid_objects_are_refused_naming_the_field() {
    let client = install_crds().await;
    let ns = control_plane().namespace("crd-invalid").await;
    let cases = invalid_cases();
    assert!(
        cases.len() >= 25,
        "the table must hold at least 25 mistakes, has {}",
        cases.len()
    );

    // The valid base objects are accepted, so each refusal below is due to its one mistake.
    let base_cluster = json!({});
    let base_pin = json!({"clusterRef": {"name": "c"}, "cid": CID_V1, "replicationMin": 1, "replicationMax": 2});
    create(&client, &ns, &cluster_object("base", base_cluster.clone()))
        .await
        .expect("base cluster accepted");
    create(&client, &ns, &pin_object("base", base_pin.clone()))
        .await
        .expect("base pin accepted");

    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let mut spec = if case.kind == "IpfsCluster" {
            base_cluster.clone()
        } else {
            base_pin.clone()
        };
        merge(&mut spec, &case.patch);
        let name = format!("bad-{i}");
        let object = if case.kind == "IpfsCluster" {
            cluster_object(&name, spec.clone())
        } else {
            pin_object(&name, spec.clone())
        };
        match create(&client, &ns, &object).await {
            Ok(_) => failures.push(format!(
                "{} ({}): accepted by the API server",
                case.what, case.kind
            )),
            Err(status) => {
                eprintln!("{} ({}): {}", case.what, case.kind, status.message);
                let fields = refused_fields(&status);
                let named = fields.iter().any(|f| f == case.field)
                    || status.message.contains(&format!("{}: ", case.field));
                if status.code != 422 || !named {
                    failures.push(format!(
                        "{} ({}): refused with code {} but not naming {}: fields {fields:?}, message {}",
                        case.what, case.kind, status.code, case.field, status.message
                    ));
                } else if !status.message.contains(case.field) {
                    failures.push(format!(
                        "{}: message does not name {}: {}",
                        case.what, case.field, status.message
                    ));
                }
            }
        }
        if let Err(e) = rust_refuses(case.kind, &spec, case.field) {
            failures.push(format!(
                "{} ({}): Rust validation {e}",
                case.what, case.kind
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Applies a merge patch to an existing object and returns the API server's refusal.
async fn update(
    client: &kube::Client,
    ns: &str,
    kind: &str,
    name: &str,
    patch: Value,
) -> Result<(), kube::core::Status> {
    let api = dynamic_api(client.clone(), ns, kind);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": patch})),
    )
    .await
    .map(|_| ())
    .map_err(|e| match e {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other}"),
    })
}

#[tokio::test]
async fn forbidden_updates_are_refused_naming_the_field() {
    let client = install_crds().await;
    let ns = control_plane().namespace("crd-update").await;
    create(
        &client,
        &ns,
        &cluster_object(
            "c",
            json!({"kubo": {"storage": {"size": "10Gi", "storageClassName": "fast"}}}),
        ),
    )
    .await
    .expect("create cluster");
    create(
        &client,
        &ns,
        &pin_object("p", json!({"clusterRef": {"name": "c"}, "cid": CID_V0})),
    )
    .await
    .expect("create pin");

    let refused: [(&str, &str, Value, &str); 7] = [
        (
            "IpfsCluster",
            "shrinking Kubo storage",
            json!({"kubo": {"storage": {"size": "5Gi"}}}),
            "spec.kubo.storage.size",
        ),
        (
            "IpfsCluster",
            "shrinking cluster storage",
            json!({"cluster": {"storage": {"size": "512Mi"}}}),
            "spec.cluster.storage.size",
        ),
        (
            "IpfsCluster",
            "changing the storage class",
            json!({"kubo": {"storage": {"storageClassName": "slow"}}}),
            "spec.kubo.storage.storageClassName",
        ),
        (
            "IpfsCluster",
            "setting a storage class",
            json!({"cluster": {"storage": {"storageClassName": "fast"}}}),
            "spec.cluster.storage.storageClassName",
        ),
        (
            "IpfsCluster",
            "changing consensus",
            json!({"cluster": {"consensus": "raft"}}),
            "spec.cluster.consensus",
        ),
        (
            "IpfsPin",
            "changing clusterRef",
            json!({"clusterRef": {"name": "other"}}),
            "spec.clusterRef",
        ),
        (
            "IpfsPin",
            "changing the CID",
            json!({"cid": CID_V1}),
            "spec.cid",
        ),
    ];
    let mut failures = Vec::new();
    for (kind, what, patch, field) in refused {
        let name = if kind == "IpfsCluster" { "c" } else { "p" };
        let result = update(&client, &ns, kind, name, patch).await;
        if let Err(status) = &result {
            eprintln!("{what}: {}", status.message);
        }
        match result {
            Ok(()) => failures.push(format!("{what}: accepted")),
            Err(status) if status.code == 422 && status.message.contains(&format!("{field}: ")) => {
            }
            Err(status) => failures.push(format!(
                "{what}: refused without naming {field}: {}",
                status.message
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Allowed updates: growing storage, scaling, changing health policy.
    update(&client, &ns, "IpfsCluster", "c", json!({"kubo": {"storage": {"size": "20Gi"}}, "replicas": 5, "health": {"probeInterval": "30s"}}))
        .await
        .expect("growing storage and other changes are allowed");
    let clusters: Api<IpfsCluster> = Api::namespaced(client, &ns);
    let c = clusters.get("c").await.expect("get");
    assert_eq!(
        (c.spec.kubo.storage.size.as_str(), c.spec.replicas),
        ("20Gi", 5)
    );
    assert_eq!(
        c.spec.kubo.storage.storage_class_name.as_deref(),
        Some("fast")
    );
}

/// `kubectl apply` of `object` (from stdin) in `ns`: the output and whether it succeeded.
fn kubectl_apply(ns: &str, object: &Value) -> (bool, String) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = control_plane()
        .kubectl()
        .args(["apply", "-n", ns, "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(object.to_string().as_bytes())
        .expect("write object");
    let out = child.wait_with_output().expect("kubectl output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Names, managed Kubo keys and image digests through `kubectl apply`: what cannot work is refused
/// with a message naming the key or the limit, what is at the limit is accepted, and the Rust
/// validation (local mode) agrees on each.
#[tokio::test]
async fn kubectl_apply_refuses_unsafe_specs_naming_the_key_or_limit() {
    let client = install_crds().await;
    let ns = control_plane().namespace("crd-safety").await;
    let limit = api::MAX_CLUSTER_NAME_LENGTH;
    let at_limit = format!("a{}", "b".repeat(limit - 1));
    let digest = "0123456789abcdef".repeat(4);
    let mut failures = Vec::new();

    let refused: Vec<(&str, Value, String)> = vec![
        (
            "a name one character past the limit",
            cluster_object(&format!("{at_limit}c"), json!({})),
            format!("metadata.name must be at most {limit} characters and start with a letter"),
        ),
        (
            "a name starting with a digit",
            cluster_object("3peers", json!({})),
            "start with a letter".into(),
        ),
        (
            "a name with a dot (not a Service name)",
            cluster_object("web.prod", json!({})),
            "start with a letter".into(),
        ),
        (
            "the Kubo identity",
            cluster_object(
                "identity",
                json!({"kubo": {"config": {"Identity": {"PrivKey": "x"}}}}),
            ),
            "spec.kubo.config.Identity is managed by the operator".into(),
        ),
        (
            "the Kubo RPC address among other overrides",
            cluster_object(
                "api",
                json!({"kubo": {"config": {
                    "Swarm": {"ConnMgr": {"HighWater": 200}},
                    "Addresses": {"API": "/ip4/0.0.0.0/tcp/5001", "NoAnnounce": []},
                }}}),
            ),
            "spec.kubo.config.Addresses.API is managed by the operator".into(),
        ),
        (
            "the datastore spec",
            cluster_object(
                "datastore",
                json!({"kubo": {"config": {"Datastore": {"StorageMax": "1GB", "Spec": {}}}}}),
            ),
            "spec.kubo.config.Datastore.Spec is managed by the operator".into(),
        ),
        (
            "StorageMax in the Kubo config",
            cluster_object(
                "storage-max",
                json!({"kubo": {"config": {"Datastore": {"StorageMax": "100GB"}}}}),
            ),
            "spec.kubo.config.Datastore.StorageMax is managed by the operator and may not be set: \
             set it with spec.kubo.storageMax"
                .into(),
        ),
        (
            "a storageMax beyond the volume",
            cluster_object(
                "storage-max-big",
                json!({"kubo": {"storage": {"size": "1Gi"}, "storageMax": "2Gi"}}),
            ),
            "spec.kubo.storageMax must be at least 1Mi and at most spec.kubo.storage.size".into(),
        ),
        (
            "public bootstrap peers",
            cluster_object(
                "bootstrap",
                json!({"kubo": {"config": {"Bootstrap": ["/dnsaddr/bootstrap.libp2p.io"]}}}),
            ),
            "spec.kubo.config.Bootstrap is managed by the operator".into(),
        ),
        (
            "a truncated digest",
            cluster_object("digest", json!({"kubo": {"image": "ipfs/kubo@sha256:abc"}})),
            "spec.kubo.image: Invalid value".into(),
        ),
    ];
    for (what, object, expected) in &refused {
        let (ok, out) = kubectl_apply(&ns, object);
        eprintln!("{what}: {out}");
        if ok {
            failures.push(format!("{what}: accepted: {out}"));
        } else if !out.contains(expected.as_str()) {
            failures.push(format!("{what}: refused without `{expected}`: {out}"));
        }
        if what.contains("digest") && !out.contains("exactly 64 lower-case hex digits") {
            failures.push(format!(
                "{what}: the message does not say the digest length: {out}"
            ));
        }
        let cluster: IpfsCluster = serde_json::from_value(object.clone()).expect("typed object");
        if cluster.validate().is_ok() {
            failures.push(format!("{what}: accepted by the Rust validation"));
        }
    }

    let accepted: Vec<(&str, Value)> = vec![
        ("a name at the limit", cluster_object(&at_limit, json!({}))),
        (
            "the overrides the start script clears, and other Kubo settings",
            cluster_object(
                "overrides",
                json!({"kubo": {"config": {
                    "Swarm": {"AddrFilters": ["/ip4/10.0.0.0/ipcidr/8"], "ConnMgr": {"HighWater": 200}},
                    "Addresses": {"NoAnnounce": ["/ip4/10.0.0.0/ipcidr/8"], "Swarm": ["/ip4/0.0.0.0/tcp/4001"]},
                    "Datastore": {"GCPeriod": "10m"},
                }, "storageMax": "9500Mi"}}),
            ),
        ),
        (
            "whole digests",
            cluster_object(
                "digests",
                json!({
                    "kubo": {"image": format!("ipfs/kubo@sha256:{digest}")},
                    "cluster": {"image": format!("ipfs/ipfs-cluster:v1.1.6@sha256:{digest}")},
                }),
            ),
        ),
    ];
    for (what, object) in &accepted {
        let (ok, out) = kubectl_apply(&ns, object);
        if !ok {
            failures.push(format!("{what}: refused: {out}"));
        }
        let cluster: IpfsCluster = serde_json::from_value(object.clone()).expect("typed object");
        if let Err(e) = cluster.validate() {
            failures.push(format!("{what}: refused by the Rust validation: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The overrides are stored as written (declaring the managed keys prunes nothing else).
    let clusters: Api<IpfsCluster> = Api::namespaced(client, &ns);
    let stored = clusters.get("overrides").await.expect("get overrides");
    let config = stored.spec.kubo.config.expect("config kept");
    assert_eq!(
        config["Swarm"]["AddrFilters"],
        json!(["/ip4/10.0.0.0/ipcidr/8"])
    );
    assert_eq!(
        config["Addresses"]["Swarm"],
        json!(["/ip4/0.0.0.0/tcp/4001"])
    );
    assert_eq!(config["Datastore"]["GCPeriod"], "10m");
    assert_eq!(stored.spec.kubo.storage_max.as_deref(), Some("9500Mi"));

    // The name rule is checked on creation only: the object at the limit updates as usual.
    kubectl_ok(&[
        "patch",
        "ipfscluster",
        &at_limit,
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":5}}"#,
    ]);
}

/// `kubectl apply` of a lower Kubo version tag is refused with a message naming the field, both
/// images and why; a higher version, a digest, and a tag after a digest (not comparable) apply.
#[tokio::test]
async fn kubectl_apply_refuses_a_kubo_downgrade_naming_both_versions() {
    install_crds().await;
    let ns = control_plane().namespace("crd-downgrade").await;
    let with_image = |image: &str| cluster_object("web", json!({"kubo": {"image": image}}));
    let (ok, out) = kubectl_apply(&ns, &with_image("ipfs/kubo:v0.42.0"));
    assert!(ok, "{out}");

    let (ok, out) = kubectl_apply(&ns, &with_image("ipfs/kubo:v0.41.3"));
    assert!(!ok, "a downgrade must be refused: {out}");
    for expected in [
        "spec.kubo.image: Forbidden: cannot downgrade Kubo from ipfs/kubo:v0.42.0 to ipfs/kubo:v0.41.3",
        "an older Kubo cannot open a repository a newer one has migrated",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in: {out}");
    }
    // Version parts compare as numbers: v0.100.0 is newer than v0.42.0, v0.9.0 older.
    let (ok, out) = kubectl_apply(&ns, &with_image("ipfs/kubo:v0.9.0"));
    assert!(
        !ok && out.contains("from ipfs/kubo:v0.42.0 to ipfs/kubo:v0.9.0"),
        "{out}"
    );
    for image in [
        "ipfs/kubo:v0.100.0",
        "ipfs/kubo@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "ipfs/kubo:v0.41.0",
    ] {
        let (ok, out) = kubectl_apply(&ns, &with_image(image));
        assert!(
            ok,
            "{image} must apply (an upgrade, or not comparable): {out}"
        );
    }
}
