use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::api::networking::v1::NetworkPolicyIngressRule;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use std::path::Path;

use crate::api::{Exposure, IpfsClusterSpec, SecretKeyReference, SwarmKeyReference};
use serde_json::json;

fn cluster(spec: IpfsClusterSpec) -> IpfsCluster {
    let mut c = IpfsCluster::new("demo", spec);
    c.metadata.namespace = Some("ipfs".into());
    c.metadata.uid = Some("uid-1".into());
    c
}

/// Where the tests' operator runs.
const OPERATOR_NS: &str = "ipfs-kit-system";

fn environment() -> Environment {
    Environment {
        operator_namespace: Some(OPERATOR_NS.into()),
        ..Environment::default()
    }
}

/// The children of `c`, built for an operator in [`OPERATOR_NS`] and the default cluster domain.
fn build(c: &IpfsCluster) -> Result<Children, BuildError> {
    children(c, &environment())
}

fn pod_spec(c: &Children) -> &PodSpec {
    c.statefulset.spec.template.spec.as_ref().expect("pod spec")
}

fn hash_of(c: &Children) -> String {
    c.statefulset
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(CONFIG_HASH_ANNOTATION).cloned())
        .expect("config hash annotation")
}

#[test]
fn every_child_is_owned_labelled_and_named_after_the_cluster() {
    let c = build(&cluster(IpfsClusterSpec::default())).expect("children");
    let metas = [
        &c.config_map.metadata,
        &c.statefulset.metadata,
        &c.headless_service.metadata,
        &c.api_service.metadata,
        &c.pdb.metadata,
        &c.network_policy.metadata,
    ];
    for m in metas {
        let owner = &m.owner_references.as_ref().expect("owner refs")[0];
        assert_eq!(owner.kind, "IpfsCluster");
        assert_eq!(owner.name, "demo");
        assert_eq!(owner.uid, "uid-1");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(
            m.labels.as_ref().and_then(|l| l.get(CLUSTER_LABEL)),
            Some(&"demo".to_owned())
        );
    }
    assert_eq!(c.names.headless_service, "demo-peers");
    assert_eq!(c.service_names(), vec!["demo-peers", "demo-api"]);
    assert!(c.peer_services.is_empty() && c.gateway_service.is_none());
}

#[test]
fn a_cluster_without_uid_is_refused_by_name() {
    let mut c = cluster(IpfsClusterSpec::default());
    c.metadata.uid = None;
    let err = build(&c).expect_err("no uid").to_string();
    assert!(err.contains("demo") && err.contains("uid"), "{err}");
}

/// A DNS-1035 label (Service names, pod hostnames): a letter first, at most 63 characters.
fn is_dns1035_label(name: &str) -> bool {
    let b = name.as_bytes();
    name.len() <= 63
        && b.first().is_some_and(u8::is_ascii_lowercase)
        && b.last()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

#[test]
fn a_name_at_the_limit_yields_valid_object_names_and_a_longer_one_is_refused() {
    let name = format!("a{}", "b".repeat(crate::api::MAX_CLUSTER_NAME_LENGTH - 1));
    let mut c = cluster(IpfsClusterSpec::default());
    c.metadata.name = Some(name.clone());
    c.spec.networking.p2p.exposure = Exposure::LoadBalancer;
    c.spec.networking.gateway.enabled = true;
    c.spec.replicas = crate::api::cluster::MAX_REPLICAS;
    let built = build(&c).expect("children at the limit");
    let names = &built.names;
    let services = built.service_names();
    // Headless, API, gateway and one p2p Service per peer, the longest `<name>-99-p2p`.
    assert_eq!(services.len(), 3 + 100);
    assert!(services.contains(&format!("{name}-99-p2p")));
    for service in &services {
        assert!(is_dns1035_label(service), "Service {service}");
    }
    // Pods are the StatefulSet's `<name>-<ordinal>`, their hostname a DNS-1035 label.
    assert!(is_dns1035_label(
        &names.peer(crate::api::cluster::MAX_REPLICAS - 1)
    ));
    // Kubernetes labels the pods `controller-revision-hash: <statefulset>-<up to 10 characters>`,
    // a label value of at most 63 characters: this is the tightest limit.
    assert_eq!(names.statefulset.len() + 1 + 10, 63);
    for other in [
        &names.config_map,
        &names.announce_config_map,
        &names.generated_secret,
        &names.pdb,
        &names.network_policy,
        &names.claim(CLUSTER_VOLUME, 99),
    ] {
        assert!(other.len() <= 253, "{other}");
    }

    c.metadata.name = Some(format!("{name}c"));
    let err = build(&c).expect_err("one character too long").to_string();
    assert!(
        err.contains("metadata.name") && err.contains("at most 52"),
        "{err}"
    );
}

#[test]
fn statefulset_runs_kubo_and_cluster_after_two_config_init_containers() {
    let c = build(&cluster(IpfsClusterSpec::default())).expect("children");
    let sts = &c.statefulset.spec;
    assert_eq!(sts.replicas, Some(3));
    assert_eq!(sts.service_name.as_deref(), Some("demo-peers"));
    let pod = pod_spec(&c);
    let inits: Vec<_> = pod
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(inits, ["kubo-config", "cluster-config"]);
    let containers: Vec<_> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(containers, ["kubo", "cluster"]);
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("ipfs/kubo:v0.42.0")
    );
    assert_eq!(
        pod.containers[1].image.as_deref(),
        Some("ipfs/ipfs-cluster:v1.1.6")
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    let claims: Vec<_> = sts
        .volume_claim_templates
        .iter()
        .flatten()
        .map(|p| {
            let size = p
                .spec
                .as_ref()
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .map(|q| q.0.clone());
            (
                p.metadata.name.clone().unwrap_or_default(),
                size.unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        claims,
        [
            ("kubo-data".to_owned(), "10Gi".to_owned()),
            ("cluster-data".to_owned(), "1Gi".to_owned())
        ]
    );
}

#[test]
fn the_cluster_secret_reaches_only_the_cluster_containers_through_a_secret_key_ref() {
    let c = build(&cluster(IpfsClusterSpec::default())).expect("children");
    let pod = pod_spec(&c);
    let secret_ref = |ct: &Container| {
        ct.env
            .iter()
            .flatten()
            .find(|e| e.name == "CLUSTER_SECRET")
            .map(|e| {
                assert!(
                    e.value.is_none(),
                    "the secret must never be a literal env value"
                );
                let s = e
                    .value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.as_ref())
                    .expect("secretKeyRef");
                (s.name.clone(), s.key.clone())
            })
    };
    let all: Vec<_> = pod
        .init_containers
        .iter()
        .flatten()
        .chain(pod.containers.iter())
        .collect();
    for ct in all {
        let r = secret_ref(ct);
        if ct.name.starts_with("cluster") {
            assert_eq!(
                r,
                Some(("demo-cluster-secret".to_owned(), "secret".to_owned())),
                "{}",
                ct.name
            );
        } else {
            assert_eq!(r, None, "{} must not see the cluster secret", ct.name);
        }
    }
    // ...and never a ConfigMap.
    for v in c.config_map.data.iter().flatten().map(|(_, v)| v) {
        assert!(!v.contains("CLUSTER_SECRET="), "{v}");
    }

    let mut spec = IpfsClusterSpec::default();
    spec.cluster.secret_ref = Some(SecretKeyReference {
        name: "mine".into(),
        key: "k".into(),
    });
    let own = cluster(spec);
    let c = build(&own).expect("children");
    assert_eq!(
        secret_ref(&pod_spec(&c).containers[1]),
        Some(("mine".to_owned(), "k".to_owned()))
    );
}

#[test]
fn generated_secret_holds_the_given_hex_value() {
    let c = cluster(IpfsClusterSpec::default());
    let names = Names::of("demo");
    let hex = "ab".repeat(32);
    let s = generated_secret(&c, &names, &hex).expect("generated");
    assert_eq!(s.metadata.name.as_deref(), Some("demo-cluster-secret"));
    assert_eq!(
        s.string_data.as_ref().and_then(|d| d.get("secret")),
        Some(&hex)
    );
    assert!(is_valid_cluster_secret(hex.as_bytes()));
    assert!(!is_valid_cluster_secret(b"abc"));
    assert!(!is_valid_cluster_secret("zz".repeat(32).as_bytes()));
}

#[test]
fn config_hash_follows_the_rendered_config_and_nothing_else() {
    let mut limited = IpfsClusterSpec::default();
    limited.kubo.storage_max = Some("5Gi".into());
    let base = build(&cluster(limited.clone())).expect("children");
    let mut spec = limited.clone();
    spec.replicas = 5;
    spec.kubo.storage.size = "20Gi".into();
    spec.cluster.storage.size = "2Gi".into();
    let scaled = build(&cluster(spec)).expect("children");
    assert_eq!(
        hash_of(&base),
        hash_of(&scaled),
        "scaling, or growing storage under a set storageMax, must not roll pods"
    );

    let mut spec = limited.clone();
    spec.kubo.config = Some(
        json!({"Swarm": {"ConnMgr": {"HighWater": 200}}})
            .as_object()
            .cloned()
            .expect("object"),
    );
    let changed = build(&cluster(spec)).expect("children");
    assert_ne!(
        hash_of(&base),
        hash_of(&changed),
        "a kubo config change must roll pods"
    );
    assert_eq!(hash_of(&base).len(), 16);
    // Deterministic.
    assert_eq!(
        hash_of(&base),
        hash_of(&build(&cluster(limited)).expect("c"))
    );
}

#[test]
fn kubo_script_inits_once_migrates_every_start_and_applies_overrides_leaf_by_leaf() {
    // Managed keys, which the API server refuses, are skipped here too (second line of defence).
    let mut spec = IpfsClusterSpec::default();
    spec.kubo.config = Some(
        json!({
            "Swarm": {"ConnMgr": {"HighWater": 200, "LowWater": 100}},
            "Identity": {"PrivKey": "must-not-appear"},
            "Addresses": {"API": "/ip4/1.2.3.4/tcp/1", "Swarm": ["/ip4/0.0.0.0/tcp/4001"]},
            "Datastore": {
                "GCPeriod": "it's big",
                "StorageMax": "must-not-appear",
                "Spec": {"type": "must-not-appear"}
            }
        })
        .as_object()
        .cloned()
        .expect("object"),
    );
    let script = kubo_init_script(&cluster(spec));
    let init = script.find("ipfs init --profile='server'").expect("init");
    let migrate = script.find("ipfs repo migrate").expect("migrate");
    assert!(init < migrate, "{script}");
    assert!(
        script.contains("ipfs config --json 'Swarm.ConnMgr.HighWater' '200'"),
        "{script}"
    );
    assert!(
        script.contains("ipfs config --json 'Swarm.ConnMgr.LowWater' '100'"),
        "{script}"
    );
    assert!(
        script.contains(r#"ipfs config --json 'Addresses.Swarm' '["/ip4/0.0.0.0/tcp/4001"]'"#),
        "{script}"
    );
    assert!(script.contains(r#"'"it'\''s big"'"#), "quoted: {script}");
    assert!(!script.contains("must-not-appear"), "{script}");
    assert!(!script.contains("1.2.3.4"), "{script}");
    assert!(script.contains("ipfs config --json Bootstrap '[]'"));
    assert!(
        script.contains("Addresses.Gateway /ip4/127.0.0.1/tcp/8080"),
        "gateway off by default"
    );
}

#[test]
fn kubo_runs_under_a_storage_max_that_follows_the_volume() {
    let kubo = |sts: &StatefulSet| {
        sts.spec.template.spec.as_ref().expect("pod").containers[0]
            .command
            .clone()
            .expect("command")
    };
    let mut spec = IpfsClusterSpec::default();
    spec.kubo.storage.size = "10Gi".into();
    let objects = build(&cluster(spec.clone())).expect("build");
    // Kubo's own collection would keep a daemon stopped through its API from exiting; the
    // operator collects instead.
    assert!(!kubo(&objects.statefulset).contains(&"--enable-gc".to_owned()));
    // Unset: 90 % of the volume.
    let script = kubo_init_script(&cluster(spec.clone()));
    assert!(
        script.contains("ipfs config Datastore.StorageMax 9663676416\n"),
        "{script}"
    );
    // The volume grows: so does StorageMax, and the pods roll to pick it up.
    let mut grown = spec.clone();
    grown.kubo.storage.size = "20Gi".into();
    let script = kubo_init_script(&cluster(grown.clone()));
    assert!(
        script.contains("ipfs config Datastore.StorageMax 19327352832\n"),
        "{script}"
    );
    assert_ne!(
        hash_of(&objects),
        hash_of(&build(&cluster(grown)).expect("grown"))
    );
    // Set: as written, in bytes.
    spec.kubo.storage_max = Some("5G".into());
    let script = kubo_init_script(&cluster(spec));
    assert!(
        script.contains("ipfs config Datastore.StorageMax 5000000000\n"),
        "{script}"
    );
}

#[test]
fn cluster_start_bootstraps_to_every_peer_by_dns_not_only_pod_zero() {
    let names = Names::of("demo");
    let c = cluster(IpfsClusterSpec::default());
    let script = cluster_start_script(&c, &names, "ipfs", "cluster.local");
    assert!(
        script.contains("host=\"demo-$i.demo-peers.ipfs.svc.cluster.local\""),
        "{script}"
    );
    assert!(script.contains("/dns4/$host/tcp/9096/p2p/$id"), "{script}");
    assert!(
        script.contains("  ipfs-cluster-service daemon --bootstrap \"${bootstrap#,}\" &"),
        "{script}"
    );
    let init = cluster_init_script(&cluster(IpfsClusterSpec::default()));
    assert!(init.contains("init --consensus crdt"), "{init}");
}

/// Runs the rendered start script with `sh` as pod `pod`, with stand-ins for `nslookup` (peers
/// 0..=2 resolve), `wget` (answers `/id` for the hosts in `answering`, from the call number
/// `after` on), `sleep` (returns at once) and `ipfs-cluster-service` (prints its arguments).
fn run_start_script(pod: &str, answering: &[&str], after: u32) -> String {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let c = cluster(IpfsClusterSpec::default());
    let script = cluster_start_script(&c, &Names::of("demo"), "ipfs", "cluster.local");
    let stub = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write stub");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    };
    stub(
        "nslookup",
        "case \"$1\" in demo-[012].*) exit 0 ;; *) exit 1 ;; esac",
    );
    let counter = dir.path().join("calls");
    let answering = answering
        .iter()
        .map(|h| format!("http://{h}.*) ;;"))
        .collect::<Vec<_>>()
        .join(" ");
    stub(
        "wget",
        &format!(
            "n=$(cat {c} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {c}\n\
             [ $n -ge {after} ] || exit 1\n\
             for a; do case \"$a\" in {answering} http://*) exit 1 ;; esac; done\n\
             echo '{{\"id\":\"12D3KooWpeer\",\"addresses\":[]}}'",
            c = counter.display()
        ),
    );
    stub("sleep", "exit 0");
    stub("ipfs-cluster-service", "echo \"started: $*\"");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
        .env("POD_NAME", pod)
        .output()
        .expect("run sh");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A new value in the restart file (the pod annotation, through the downward API) stops the
/// daemon and ends the script with 0, so that kubelet restarts the container; the value it
/// started with does not.
#[test]
fn a_new_restart_annotation_stops_the_daemon_and_ends_the_container() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let script = cluster_start_script(
        &cluster(IpfsClusterSpec::default()),
        &Names::of("demo"),
        "ipfs",
        "cluster.local",
    );
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    let stub = |name: &str, body: &str| {
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write stub");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    };
    stub("nslookup", "exit 1");
    // A daemon that runs until SIGTERM.
    stub(
        "ipfs-cluster-service",
        "trap 'echo stopped; exit 0' TERM; echo started; while :; do /bin/sleep 0.1; done",
    );
    let file = dir.path().join("restart-cluster");
    std::fs::write(&file, "41").expect("restart file");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("POD_NAME", "demo-0")
        .env("IPFS_KIT_RESTART_FILE", &file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run sh");
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the value it started with does not stop it"
    );
    std::fs::write(&file, "42").expect("restart file");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "still running");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let out = child.wait_with_output().expect("output");
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(status.success(), "{status:?}: {out}");
    assert!(out.contains("restart requested (42)"), "{out}");
    assert!(out.contains("stopped"), "the daemon got SIGTERM: {out}");
}

#[test]
fn peer_zero_starts_alone_when_no_other_peer_answers() {
    let out = run_start_script("demo-0", &[], 1);
    assert!(out.ends_with("started: daemon\n"), "{out}");
    assert!(!out.contains("waiting"), "{out}");
}

#[test]
fn peers_started_together_wait_for_one_that_answers_and_join_it() {
    // Peer 2 starts with the others: nobody answers for its first 10 calls, then peer 0 does.
    let out = run_start_script("demo-2", &["demo-0"], 10);
    assert!(out.contains("waiting up to 120 s"), "{out}");
    assert!(
        out.ends_with(
            "started: daemon --bootstrap \
             /dns4/demo-0.demo-peers.ipfs.svc.cluster.local/tcp/9096/p2p/12D3KooWpeer\n"
        ),
        "{out}"
    );
    // Both other peers answering: it bootstraps to both, without waiting.
    let out = run_start_script("demo-1", &["demo-0", "demo-2"], 1);
    assert!(!out.contains("waiting"), "{out}");
    assert!(
        out.contains("demo-0.demo-peers") && out.contains("demo-2.demo-peers"),
        "{out}"
    );
}

#[test]
fn a_peer_gives_up_waiting_and_starts_alone() {
    let out = run_start_script("demo-1", &[], 1);
    assert!(out.contains("waiting up to 120 s"), "{out}");
    assert!(out.ends_with("started: daemon\n"), "{out}");
}

#[test]
fn headless_service_publishes_every_peer_and_api_service_is_internal() {
    let c = build(&cluster(IpfsClusterSpec::default())).expect("children");
    let h = c.headless_service.spec.as_ref().expect("spec");
    assert_eq!(h.cluster_ip.as_deref(), Some("None"));
    assert_eq!(h.publish_not_ready_addresses, Some(true));
    let a = c.api_service.spec.as_ref().expect("spec");
    assert_eq!(a.type_.as_deref(), Some("ClusterIP"));
    let ports: Vec<i32> = a.ports.iter().flatten().map(|p| p.port).collect();
    assert_eq!(ports, [9094, 9095]);
}

#[test]
fn p2p_exposure_carries_only_the_swarm_ports() {
    let mut spec = IpfsClusterSpec::default();
    spec.networking.p2p.exposure = Exposure::LoadBalancer;
    spec.networking.p2p.ports = vec![4001, 9096, 5001];
    spec.replicas = 2;
    let c = build(&cluster(spec)).expect("children");
    assert_eq!(
        c.service_names(),
        vec!["demo-peers", "demo-api", "demo-0-p2p", "demo-1-p2p"]
    );
    for svc in &c.peer_services {
        let s = svc.spec.as_ref().expect("spec");
        assert_eq!(s.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(
            super::reach_tests::ports(s),
            [(4001, "TCP"), (4001, "UDP"), (9096, "TCP")]
        );
    }

    let mut spec = IpfsClusterSpec::default();
    spec.networking.gateway.enabled = true;
    let c = build(&cluster(spec)).expect("children");
    assert_eq!(
        c.service_names(),
        vec!["demo-peers", "demo-api", "demo-gateway"]
    );
    assert!(
        kubo_init_script(&cluster({
            let mut s = IpfsClusterSpec::default();
            s.networking.gateway.enabled = true;
            s
        }))
        .contains("Addresses.Gateway /ip4/0.0.0.0/tcp/8080")
    );
}

#[test]
fn pdb_allows_one_peer_down() {
    let c = build(&cluster(IpfsClusterSpec::default())).expect("children");
    assert_eq!(
        c.pdb.spec.as_ref().and_then(|s| s.max_unavailable.clone()),
        Some(IntOrString::Int(1))
    );
}

#[test]
fn network_policy_opens_swarm_ports_and_restricts_the_apis() {
    let c = build(&cluster(IpfsClusterSpec::default())).expect("children");
    let rules = c
        .network_policy
        .spec
        .as_ref()
        .and_then(|s| s.ingress.clone())
        .expect("ingress");
    assert_eq!(rules.len(), 2);
    let ports = |r: &NetworkPolicyIngressRule| -> Vec<i32> {
        r.ports
            .iter()
            .flatten()
            .filter_map(|p| match &p.port {
                Some(IntOrString::Int(n)) => Some(*n),
                _ => None,
            })
            .collect()
    };
    assert_eq!(rules[0].from, None, "swarm ports open");
    assert_eq!(ports(&rules[0]), [4001, 4001, 9096]);
    assert_eq!(ports(&rules[1]), [5001, 9094, 9095]);
    let from = rules[1].from.as_ref().expect("restricted");
    assert_eq!(from.len(), 3, "peers, operator, labelled clients");
    assert!(
        from.iter().all(|p| p.pod_selector.is_some()),
        "no open ipBlock"
    );
}

/// The namespace selector and pod labels of each peer the API rule admits.
fn api_clients(c: &Children) -> Vec<(Option<LabelSelector>, BTreeMap<String, String>)> {
    let rules = c
        .network_policy
        .spec
        .as_ref()
        .and_then(|s| s.ingress.clone())
        .expect("ingress");
    rules[1]
        .from
        .iter()
        .flatten()
        .map(|p| {
            let labels = p
                .pod_selector
                .as_ref()
                .and_then(|s| s.match_labels.clone())
                .expect("pod labels");
            (p.namespace_selector.clone(), labels)
        })
        .collect()
}

#[test]
fn only_the_operator_namespace_pods_reach_the_apis_by_the_operator_label() {
    let c = build(&cluster(IpfsClusterSpec::default())).expect("children");
    let from = api_clients(&c);
    let operator = BTreeMap::from([(API_ACCESS_LABEL.to_owned(), "operator".to_owned())]);
    let by_label: Vec<_> = from.iter().filter(|(_, l)| *l == operator).collect();
    assert_eq!(by_label.len(), 1, "{from:?}");
    assert_eq!(
        by_label[0].0,
        Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                OPERATOR_NS.to_owned()
            )])),
            ..Default::default()
        }),
        "the operator's namespace, by name"
    );
    for (ns, labels) in &from {
        let empty = ns.as_ref().is_some_and(|s| {
            s.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
                && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
        });
        assert!(!empty, "no peer of every namespace: {labels:?}");
    }
    // The peers and the labelled clients: the cluster's own namespace (no namespace selector).
    assert_eq!(from.iter().filter(|(ns, _)| ns.is_none()).count(), 2);
}

#[test]
fn with_the_operator_namespace_unknown_the_label_counts_in_the_cluster_namespace_only() {
    let c = children(
        &cluster(IpfsClusterSpec::default()),
        &Environment::default(),
    )
    .expect("children");
    let from = api_clients(&c);
    assert_eq!(from.len(), 3);
    assert!(
        from.iter().all(|(ns, _)| ns.is_none()),
        "every admitted pod is of the cluster's namespace: {from:?}"
    );
    assert!(
        from.iter()
            .any(|(_, l)| l.get(API_ACCESS_LABEL).map(String::as_str) == Some("operator"))
    );
}

#[test]
fn the_cluster_domain_names_the_peers_in_the_start_script() {
    let env = Environment {
        cluster_domain: "k8s.example.org".into(),
        ..environment()
    };
    let c = children(&cluster(IpfsClusterSpec::default()), &env).expect("children");
    let script = c
        .config_map
        .data
        .as_ref()
        .and_then(|d| d.get("cluster-start.sh"))
        .expect("start script");
    assert!(
        script.contains("host=\"demo-$i.demo-peers.ipfs.svc.k8s.example.org\""),
        "{script}"
    );
    assert!(!script.contains("cluster.local"), "{script}");
    let default = build(&cluster(IpfsClusterSpec::default())).expect("children");
    assert_ne!(
        hash_of(&c),
        hash_of(&default),
        "another domain is another configuration: the pods roll"
    );
    assert_eq!(
        Names::of("demo").peer_host("demo-1", "ipfs", "k8s.example.org"),
        "demo-1.demo-peers.ipfs.svc.k8s.example.org"
    );
}

#[test]
fn selector_string_matches_the_pod_labels() {
    assert_eq!(
        selector_string("demo"),
        "app.kubernetes.io/instance=demo,app.kubernetes.io/name=ipfs-cluster"
    );
    assert_eq!(Names::of("demo").claim(KUBO_VOLUME, 2), "kubo-data-demo-2");
}

fn private_spec() -> IpfsClusterSpec {
    IpfsClusterSpec {
        swarm_key_ref: Some(SwarmKeyReference {
            name: "pnet".into(),
            key: "swarm.key".into(),
        }),
        ..Default::default()
    }
}

fn containers(pod: &PodSpec) -> Vec<&Container> {
    pod.init_containers
        .iter()
        .flatten()
        .chain(pod.containers.iter())
        .collect()
}

fn env_of<'a>(ct: &'a Container, name: &str) -> Option<&'a str> {
    ct.env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}

#[test]
fn the_swarm_key_is_a_secret_volume_of_the_kubo_config_init_container_only() {
    let c = build(&cluster(private_spec())).expect("children");
    let pod = pod_spec(&c);
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == SWARM_KEY_VOLUME)
        .expect("swarm key volume");
    let secret = volume.secret.as_ref().expect("a Secret volume");
    assert_eq!(secret.secret_name.as_deref(), Some("pnet"));
    let items: Vec<_> = secret
        .items
        .iter()
        .flatten()
        .map(|i| (i.key.as_str(), i.path.as_str()))
        .collect();
    assert_eq!(items, [("swarm.key", "swarm.key")]);
    assert_eq!(secret.optional, Some(false));
    for ct in containers(pod) {
        let mounts: Vec<_> = ct
            .volume_mounts
            .iter()
            .flatten()
            .filter(|m| m.name == SWARM_KEY_VOLUME)
            .collect();
        if ct.name == "kubo-config" {
            assert_eq!(mounts.len(), 1);
            assert_eq!(mounts[0].mount_path, SWARM_KEY_DIR);
            assert_eq!(mounts[0].read_only, Some(true));
        } else {
            assert!(mounts.is_empty(), "{} mounts the swarm key", ct.name);
        }
        let from_secret = ct
            .env
            .iter()
            .flatten()
            .filter_map(|e| e.value_from.as_ref()?.secret_key_ref.as_ref())
            .any(|s| s.name == "pnet");
        assert!(!from_secret, "{} has the swarm key in its env", ct.name);
    }
    // Kubo refuses to start without the key.
    assert_eq!(env_of(&pod.containers[0], "LIBP2P_FORCE_PNET"), Some("1"));
    assert_eq!(env_of(&pod.containers[1], "LIBP2P_FORCE_PNET"), None);
    // The ConfigMap names the Secret, never a key.
    let script = &c.config_map.data.as_ref().expect("data")["kubo-init.sh"];
    assert!(script.contains("Secret pnet"), "{script}");
    assert!(!script.contains("/base16/"), "{script}");

    let public = build(&cluster(IpfsClusterSpec::default())).expect("children");
    let pod = pod_spec(&public);
    assert!(pod.volumes.iter().flatten().all(|v| v.secret.is_none()));
    assert_eq!(env_of(&pod.containers[0], "LIBP2P_FORCE_PNET"), None);
    assert_ne!(
        hash_of(&public),
        hash_of(&c),
        "adding the key rolls the pods"
    );
}

/// Runs the Kubo init script of `spec` with a stub `ipfs`, the repository in `repo` and the
/// swarm key's Secret volume in `keys`; its exit status and standard error.
fn run_kubo_init(spec: IpfsClusterSpec, repo: &Path, keys: &Path) -> (bool, String) {
    use std::os::unix::fs::PermissionsExt;
    let bin = tempfile::tempdir().expect("temp dir");
    let stub = bin.path().join("ipfs");
    std::fs::write(&stub, "#!/bin/sh\nexit 0\n").expect("write stub");
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let script = kubo_init_script(&cluster(spec))
        .replace(KUBO_PATH, &repo.display().to_string())
        .replace(SWARM_KEY_DIR, &keys.display().to_string());
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.path().display()))
        .output()
        .expect("run sh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn kubo_init_puts_the_swarm_key_in_the_repository_for_its_user_alone_and_removes_it_later() {
    use std::os::unix::fs::PermissionsExt;
    let repo = tempfile::tempdir().expect("repo");
    std::fs::write(repo.path().join("config"), "{}").expect("config");
    let keys = tempfile::tempdir().expect("keys");
    let key = crate::api::swarm_key_text(&"5a".repeat(32));
    std::fs::write(keys.path().join("swarm.key"), &key).expect("key");
    let in_repo = repo.path().join("swarm.key");
    for start in 0..2 {
        let (ok, err) = run_kubo_init(private_spec(), repo.path(), keys.path());
        assert!(ok, "start {start}: {err}");
        assert_eq!(std::fs::read_to_string(&in_repo).expect("key in repo"), key);
        let mode = std::fs::metadata(&in_repo)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400, "start {start}");
    }
    // A Secret holding something else: the init container fails naming the Secret and key.
    std::fs::write(keys.path().join("swarm.key"), "5a".repeat(32)).expect("bare hex");
    let (ok, err) = run_kubo_init(private_spec(), repo.path(), keys.path());
    assert!(!ok);
    assert!(
        err.contains("spec.swarmKeyRef: key `swarm.key` of Secret pnet is not a swarm key"),
        "{err}"
    );
    assert!(!err.contains(&"5a".repeat(32)), "the key is never printed");
    // The ref removed: the next start removes the key from the repository.
    let (ok, err) = run_kubo_init(IpfsClusterSpec::default(), repo.path(), keys.path());
    assert!(ok, "{err}");
    assert!(!in_repo.exists());
}

#[test]
fn pods_run_as_the_images_user_by_default_and_leave_ids_to_the_platform_on_request() {
    let ids = |c: &Children| {
        let pod = pod_spec(c);
        let fs_group = pod.security_context.as_ref().and_then(|s| s.fs_group);
        let per_container: Vec<_> = containers(pod)
            .iter()
            .map(|ct| {
                let s = ct.security_context.as_ref().expect("security context");
                // Whatever the ids, the restricted standard's settings stay.
                assert_eq!(s.run_as_non_root, Some(true));
                assert_eq!(s.allow_privilege_escalation, Some(false));
                let drop = s.capabilities.as_ref().and_then(|c| c.drop.clone());
                assert_eq!(drop, Some(vec!["ALL".to_owned()]));
                (s.run_as_user, s.run_as_group)
            })
            .collect();
        let seccomp = pod
            .security_context
            .as_ref()
            .and_then(|s| s.seccomp_profile.as_ref())
            .map(|p| p.type_.clone());
        assert_eq!(seccomp.as_deref(), Some("RuntimeDefault"));
        (fs_group, per_container)
    };
    let default = build(&cluster(IpfsClusterSpec::default())).expect("children");
    let (fs_group, each) = ids(&default);
    assert_eq!(fs_group, Some(1000));
    assert!(
        each.iter().all(|ids| *ids == (Some(1000), Some(1000))),
        "{each:?}"
    );

    let mut own = IpfsClusterSpec::default();
    own.pod_security_context.run_as_user = Some(4242);
    own.pod_security_context.fs_group = Some(5000);
    let (fs_group, each) = ids(&build(&cluster(own)).expect("children"));
    assert_eq!(fs_group, Some(5000));
    assert!(
        each.iter().all(|ids| *ids == (Some(4242), Some(1000))),
        "{each:?}"
    );

    let mut omitted = IpfsClusterSpec::default();
    omitted.pod_security_context.omit_ids = true;
    let (fs_group, each) = ids(&build(&cluster(omitted)).expect("children"));
    assert_eq!(fs_group, None);
    assert!(each.iter().all(|ids| *ids == (None, None)), "{each:?}");
}

#[test]
fn probes_ask_the_daemons_apis_and_only_a_long_silence_restarts_one() {
    let c = build(&cluster(IpfsClusterSpec::default())).expect("children");
    let pod = pod_spec(&c);
    let get = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        let p = p.as_ref().expect("probe");
        let http = p.http_get.as_ref().expect("an HTTP GET probe");
        let port = match &http.port {
            IntOrString::Int(n) => *n,
            IntOrString::String(s) => panic!("named port {s}"),
        };
        let silence = p.period_seconds.unwrap_or(10) * p.failure_threshold.unwrap_or(3);
        (http.path.clone().unwrap_or_default(), port, silence)
    };
    for (ct, path, port) in [
        (&pod.containers[0], "/version", 5001),
        (&pod.containers[1], "/health", 9094),
    ] {
        let (p, n, ready_after) = get(&ct.readiness_probe);
        assert_eq!((p.as_str(), n), (path, port), "{} readiness", ct.name);
        assert!(
            ready_after <= 30,
            "{} unready after {ready_after} s",
            ct.name
        );
        let (p, n, restart_after) = get(&ct.liveness_probe);
        assert_eq!((p.as_str(), n), (path, port), "{} liveness", ct.name);
        assert!(
            restart_after >= 300,
            "{}: kubelet restarts after {restart_after} s, before the operator's healing",
            ct.name
        );
        let (p, n, start_within) = get(&ct.startup_probe);
        assert_eq!((p.as_str(), n), (path, port), "{} startup", ct.name);
        assert!(
            start_within >= 600,
            "{} must start within {start_within} s",
            ct.name
        );
    }
    assert!(pod.init_containers.iter().flatten().all(|ct| {
        ct.readiness_probe.is_none() && ct.liveness_probe.is_none() && ct.startup_probe.is_none()
    }));
}
