//! The helm chart (`charts/ipfs-kit-operator`) with the real helm of the test world: it lints
//! strictly, renders hardened defaults, keeps the rules of `deploy/rbac.yaml` and the CRDs of
//! `crds/`, and installs, upgrades and uninstalls on the loopback control plane.
//!
//! kwok runs no containers: the pods of the chart's Deployment are scheduled on fake nodes and
//! reported Running, but nothing runs in them. So one test plays the kubelet: it starts the
//! operator binary with exactly the arguments, environment and mounted token Secret of the installed
//! Deployment's containers, authenticated as the chart's ServiceAccount, and checks that it does its
//! whole job with the chart's rights.
//!
//! CRDs are cluster-wide and other tests install the same ones (`install_crds`). helm creates the
//! chart's CRDs only when they are missing and skips those that exist, so whichever comes first,
//! the result is the same objects; byte equality of the chart's crds/ and the repository's crds/ is
//! checked separately.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use ipfs_kit_operator::api::IpfsCluster;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Secret, Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, ResourceExt};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::support::clusters::{
    provide_volumes, running_pods_matching as running_pods, wait_requests_done,
};
use crate::support::control_plane::{ControlPlane, control_plane};
use crate::support::dashboard_status_until;
use crate::support::process::{Daemon, free_port};
use crate::support::{tools, wait_for};

/// The release name used by the tests: the objects are then named `ipfs-kit-operator`.
const RELEASE: &str = "ipfs-kit-operator";
const CRD_FILES: [&str; 2] = ["ipfsclusters.ipfskit.io.yaml", "ipfspins.ipfskit.io.yaml"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    repo().join("charts/ipfs-kit-operator")
}

/// The test world's helm with its own (empty) cache, config and data directories.
struct Helm {
    home: tempfile::TempDir,
    kubeconfig: Option<PathBuf>,
}

impl Helm {
    /// helm without a cluster (lint, template).
    fn offline() -> Helm {
        Helm {
            home: tempfile::tempdir().expect("helm home"),
            kubeconfig: None,
        }
    }

    /// helm pointed at the control plane with the admin kubeconfig (the one kubectl uses).
    fn on(cp: &ControlPlane) -> Helm {
        Helm {
            kubeconfig: Some(cp.kubeconfig.clone()),
            ..Helm::offline()
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(tools::binary("helm", "helm"));
        cmd.env("HELM_CACHE_HOME", self.home.path().join("cache"))
            .env("HELM_CONFIG_HOME", self.home.path().join("config"))
            .env("HELM_DATA_HOME", self.home.path().join("data"))
            .env_remove("KUBECONFIG")
            .args(args);
        if let Some(kubeconfig) = &self.kubeconfig {
            cmd.arg("--kubeconfig").arg(kubeconfig);
        }
        cmd.output().expect("run helm")
    }

    /// Runs helm, fails the test with its output unless it succeeds; returns standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "helm {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs helm expecting a failure; returns standard error.
    fn refused(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "helm {} succeeded but should have been refused:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `helm template` of the chart with `--set` values, as JSON objects.
    fn template(&self, sets: &[&str]) -> Vec<Value> {
        let chart = chart_dir();
        let mut args = vec![
            "template",
            RELEASE,
            chart.to_str().expect("utf-8 path"),
            "--namespace",
            "operators",
        ];
        for set in sets {
            args.extend(["--set", *set]);
        }
        documents(&self.ok(&args))
    }
}

/// The documents of a YAML stream, as JSON (empty documents dropped).
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| serde_yaml::Value::deserialize(doc).expect("a YAML document"))
        .filter(|v| !v.is_null())
        .map(|v| serde_json::to_value(v).expect("YAML as JSON"))
        .collect()
}

/// The one object of `kind` (named `name` when given) among `docs`, as its typed form.
fn find<K: DeserializeOwned>(docs: &[Value], kind: &str, name: Option<&str>) -> K {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == kind && name.is_none_or(|n| d["metadata"]["name"] == n))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind} {name:?} in the rendered chart, found {}",
        found.len()
    );
    serde_json::from_value(found[0].clone()).unwrap_or_else(|e| panic!("{kind}: {e}"))
}

fn kinds(docs: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = docs
        .iter()
        .map(|d| d["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    kinds.sort();
    kinds
}

/// The rules of the first object of `kind` in `deploy/rbac.yaml`.
fn deploy_rules(kind: &str) -> Vec<PolicyRule> {
    let text = std::fs::read_to_string(repo().join("deploy/rbac.yaml")).expect("deploy/rbac.yaml");
    let docs = documents(&text);
    let object = docs
        .iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("deploy/rbac.yaml has no {kind}"));
    serde_json::from_value(object["rules"].clone()).expect("rules")
}

/// Fails unless `rules` (of `what`) are exactly the rules of `kind` in `deploy/rbac.yaml`, in the
/// same order, naming the rules that differ.
fn assert_rules_match_deploy(what: &str, rules: Option<Vec<PolicyRule>>, kind: &str) {
    let ours = rules.unwrap_or_default();
    let deployed = deploy_rules(kind);
    if ours == deployed {
        return;
    }
    let show = |r: &PolicyRule| {
        format!(
            "{:?} {:?} {:?}",
            r.api_groups.clone().unwrap_or_default(),
            r.resources.clone().unwrap_or_default(),
            r.verbs
        )
    };
    let only_ours: Vec<String> = ours
        .iter()
        .filter(|r| !deployed.contains(r))
        .map(show)
        .collect();
    let only_deployed: Vec<String> = deployed
        .iter()
        .filter(|r| !ours.contains(r))
        .map(show)
        .collect();
    panic!(
        "{what} and the {kind} of deploy/rbac.yaml grant different rights (keep them identical):\n\
         only in {what}:\n  {}\nonly in deploy/rbac.yaml:\n  {}",
        only_ours.join("\n  "),
        only_deployed.join("\n  ")
    );
}

fn container<'a>(spec: &'a PodSpec, name: &str) -> &'a Container {
    spec.containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name} in the operator pod"))
}

/// The hardening a user expects of the operator pod: non-root, RuntimeDefault seccomp, read-only
/// root file system, no privilege escalation, no capabilities.
fn assert_hardened(spec: &PodSpec) {
    let pod = spec.security_context.as_ref().expect("pod securityContext");
    assert_eq!(pod.run_as_non_root, Some(true), "pod runAsNonRoot");
    assert!(
        pod.run_as_user.is_some_and(|u| u != 0),
        "pod runs as a non-root uid"
    );
    assert_eq!(
        pod.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault"),
        "pod seccomp profile"
    );
    assert_eq!(spec.containers.len(), 2, "controller and dashboard");
    for c in &spec.containers {
        let sc = c
            .security_context
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no securityContext", c.name));
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
        assert_eq!(
            sc.capabilities.as_ref().and_then(|caps| caps.drop.clone()),
            Some(vec!["ALL".to_owned()]),
            "{} drops every capability",
            c.name
        );
        assert!(sc.privileged != Some(true), "{} is not privileged", c.name);
        assert!(
            c.resources.as_ref().is_some_and(|r| r.limits.is_some()),
            "{} has resource limits",
            c.name
        );
    }
}

#[test]
fn the_chart_ships_the_repositorys_crds_byte_for_byte() {
    let chart_crds = chart_dir().join("crds");
    let mut shipped: Vec<String> = std::fs::read_dir(&chart_crds)
        .expect("read the chart's crds/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    shipped.sort();
    assert_eq!(
        shipped, CRD_FILES,
        "the chart's crds/ holds exactly the CRD files of crds/ (run `make crds`)"
    );
    for file in CRD_FILES {
        let ours = std::fs::read(repo().join("crds").join(file)).expect("crds/ file");
        let chart = std::fs::read(chart_crds.join(file)).expect("chart crds/ file");
        assert!(
            ours == chart,
            "charts/ipfs-kit-operator/crds/{file} differs from crds/{file}: run `make crds`"
        );
    }
}

#[test]
fn the_chart_lints_strictly_and_renders_hardened_defaults() {
    let helm = Helm::offline();
    let chart = chart_dir();
    let chart = chart.to_str().expect("utf-8 path");
    helm.ok(&["lint", "--strict", chart]);
    helm.ok(&["lint", "--strict", chart, "--set", "watchNamespace=apps"]);

    let meta: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart_dir().join("Chart.yaml")).expect("read"),
    )
    .expect("Chart.yaml");
    assert_eq!(
        meta["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml appVersion is the crate version"
    );

    let docs = helm.template(&[]);
    assert_eq!(
        kinds(&docs),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Role",
            "RoleBinding",
            "Secret",
            "Service",
            "ServiceAccount"
        ]
    );
    for doc in &docs {
        let labels = &doc["metadata"]["labels"];
        for key in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ] {
            assert!(
                labels[key].is_string(),
                "{} {} lacks label {key}",
                doc["kind"],
                doc["metadata"]["name"]
            );
        }
    }

    let deployment: Deployment = find(&docs, "Deployment", Some(RELEASE));
    let spec = deployment.spec;
    assert_eq!(spec.replicas, Some(2), "two replicas with leader election");
    let pod = spec.template.spec.expect("pod spec");
    assert_hardened(&pod);
    assert_eq!(pod.service_account_name.as_deref(), Some(RELEASE));
    let labels = spec
        .template
        .metadata
        .expect("pod metadata")
        .labels
        .expect("labels");
    assert_eq!(
        labels.get("ipfskit.io/api-access").map(String::as_str),
        Some("operator"),
        "the peers' NetworkPolicy admits the operator pods by this label"
    );
    let controller = container(&pod, "controller");
    assert_eq!(
        controller.image.as_deref(),
        Some(
            format!(
                "ghcr.io/ipfs-kit/ipfs-kit-operator:{}",
                env!("CARGO_PKG_VERSION")
            )
            .as_str()
        ),
        "the image tag defaults to the appVersion"
    );
    let env: BTreeMap<&str, &str> = controller
        .env
        .iter()
        .flatten()
        .map(|e| {
            let value = e.value.as_deref().or_else(|| {
                e.value_from
                    .as_ref()
                    .and_then(|v| v.field_ref.as_ref())
                    .map(|f| f.field_path.as_str())
            });
            (e.name.as_str(), value.unwrap_or_default())
        })
        .collect();
    assert_eq!(
        env.get("POD_NAMESPACE"),
        Some(&"metadata.namespace"),
        "the operator's namespace: the Lease's, and the only one whose api-access pods the \
         peers' NetworkPolicy admits"
    );
    let args = controller.args.clone().unwrap_or_default();
    assert!(
        !args
            .iter()
            .any(|a| a == "--no-leader-election" || a == "--cluster-domain"),
        "leader election on, the cluster domain detected: {args:?}"
    );
    assert_eq!(env.get("IPFS_KIT_LOG_FORMAT"), Some(&"json"));
    let dashboard = container(&pod, "dashboard");
    let args = dashboard.args.clone().unwrap_or_default();
    assert!(
        !args.iter().any(|a| a == "--auth-reads"),
        "reads open by default: {args:?}"
    );
    assert!(args.iter().any(|a| a == "--token-file"), "{args:?}");

    let service: Service = find(&docs, "Service", Some("ipfs-kit-operator-dashboard"));
    assert_eq!(
        service.spec.and_then(|s| s.type_).as_deref(),
        Some("ClusterIP"),
        "the dashboard is never exposed outside the cluster by default"
    );
    let secret: Secret = find(&docs, "Secret", Some("ipfs-kit-operator-dashboard-token"));
    let token = secret
        .data
        .expect("data")
        .remove("token")
        .expect("token key");
    assert!(token.0.len() >= 32, "a long generated token");
    assert!(token.0.iter().all(u8::is_ascii_alphanumeric));
}

#[test]
fn the_chart_rules_are_exactly_those_of_deploy_rbac() {
    let docs = Helm::offline().template(&[]);
    let role: ClusterRole = find(&docs, "ClusterRole", None);
    assert_rules_match_deploy("the chart's ClusterRole", role.rules, "ClusterRole");
    let lease_role: Role = find(&docs, "Role", None);
    assert_rules_match_deploy("the chart's leader-election Role", lease_role.rules, "Role");
    let binding: ClusterRoleBinding = find(&docs, "ClusterRoleBinding", None);
    assert_eq!(binding.role_ref.name, role.metadata.name.expect("name"));
    let subject = &binding.subjects.expect("subjects")[0];
    assert_eq!(
        (
            subject.kind.as_str(),
            subject.name.as_str(),
            subject.namespace.as_deref()
        ),
        ("ServiceAccount", RELEASE, Some("operators"))
    );
}

#[test]
fn chart_values_change_what_they_say_and_bad_values_are_refused_by_name() {
    let helm = Helm::offline();
    // One watched namespace: the rights are granted there only, both containers watch only it.
    let docs = helm.template(&["watchNamespace=apps", "dashboard.authReads=true"]);
    assert!(
        !kinds(&docs).contains(&"ClusterRoleBinding".to_owned()),
        "no cluster-wide binding with watchNamespace"
    );
    let binding: RoleBinding = find(&docs, "RoleBinding", Some("operators-ipfs-kit-operator"));
    assert_eq!(binding.metadata.namespace.as_deref(), Some("apps"));
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    let deployment: Deployment = find(&docs, "Deployment", None);
    let pod = deployment.spec.template.spec.expect("pod spec");
    for name in ["controller", "dashboard"] {
        let args = container(&pod, name).args.clone().unwrap_or_default();
        assert!(
            args.windows(2)
                .any(|w| w[0] == "--namespace" && w[1] == "apps"),
            "{name} watches only namespace apps: {args:?}"
        );
    }
    let dashboard_args = container(&pod, "dashboard")
        .args
        .clone()
        .unwrap_or_default();
    assert!(
        dashboard_args.iter().any(|a| a == "--auth-reads"),
        "{dashboard_args:?}"
    );

    // A token Secret of the user's: none generated, the pod mounts that one.
    let docs = helm.template(&[
        "dashboard.token.existingSecret=my-token",
        "dashboard.token.key=bearer",
    ]);
    assert!(!kinds(&docs).contains(&"Secret".to_owned()));
    let deployment: Deployment = find(&docs, "Deployment", None);
    let pod = deployment.spec.template.spec.expect("pod spec");
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "dashboard-token");
    let secret = volume
        .and_then(|v| v.secret.as_ref())
        .expect("token volume");
    assert_eq!(secret.secret_name.as_deref(), Some("my-token"));
    let args = container(&pod, "dashboard")
        .args
        .clone()
        .unwrap_or_default();
    assert!(
        args.iter()
            .any(|a| a == "/var/run/ipfs-kit/dashboard/bearer"),
        "the token file is the configured key: {args:?}"
    );

    // Single replica without leader election: no Lease rights, leader election turned off, the
    // operator's namespace still known (the NetworkPolicy needs it).
    let docs = helm.template(&["replicaCount=1", "leaderElection.enabled=false"]);
    assert!(!kinds(&docs).contains(&"Role".to_owned()));
    let deployment: Deployment = find(&docs, "Deployment", None);
    let pod = deployment.spec.template.spec.expect("pod spec");
    let controller = container(&pod, "controller");
    let env = controller.env.clone().unwrap_or_default();
    assert!(env.iter().any(|e| e.name == "POD_NAMESPACE"), "{env:?}");
    let args = controller.args.clone().unwrap_or_default();
    assert!(args.iter().any(|a| a == "--no-leader-election"), "{args:?}");

    // A cluster domain of the user's: passed as the flag.
    let docs = helm.template(&["clusterDomain=k8s.example.org"]);
    let deployment: Deployment = find(&docs, "Deployment", None);
    let pod = deployment.spec.template.spec.expect("pod spec");
    let args = container(&pod, "controller")
        .args
        .clone()
        .unwrap_or_default();
    assert!(
        args.windows(2)
            .any(|w| w[0] == "--cluster-domain" && w[1] == "k8s.example.org"),
        "{args:?}"
    );

    // Metrics: a ClusterIP Service, and a ServiceMonitor when the cluster knows the kind.
    let docs = helm.template(&["metrics.service.enabled=true"]);
    let metrics: Service = find(&docs, "Service", Some("ipfs-kit-operator-metrics"));
    assert_eq!(
        metrics.spec.and_then(|s| s.type_).as_deref(),
        Some("ClusterIP")
    );
    let chart = chart_dir();
    let chart = chart.to_str().expect("utf-8 path");
    let out = helm.ok(&[
        "template",
        RELEASE,
        chart,
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "dashboard.authReads=true",
        "--api-versions",
        "monitoring.coreos.com/v1/ServiceMonitor",
    ]);
    let docs = documents(&out);
    let monitor = docs
        .iter()
        .find(|d| d["kind"] == "ServiceMonitor")
        .expect("a ServiceMonitor");
    let endpoints = &monitor["spec"]["endpoints"];
    assert_eq!(endpoints[0]["port"], "metrics");
    assert_eq!(endpoints[1]["port"], "dashboard");
    assert_eq!(
        endpoints[1]["authorization"]["credentials"],
        json!({"name": "ipfs-kit-operator-dashboard-token", "key": "token"}),
        "with authReads the dashboard's /metrics is scraped with the token"
    );
    assert!(kinds(&docs).iter().filter(|k| *k == "Service").count() == 2);

    // No dashboard: one container, no token Secret, no dashboard Service.
    let docs = helm.template(&["dashboard.enabled=false"]);
    assert!(!kinds(&docs).contains(&"Secret".to_owned()));
    assert!(!kinds(&docs).contains(&"Service".to_owned()));
    let deployment: Deployment = find(&docs, "Deployment", None);
    let pod = deployment.spec.template.spec.expect("pod spec");
    assert_eq!(pod.containers.len(), 1);
    assert!(pod.volumes.is_none(), "{:?}", pod.volumes);

    let refusals = [
        (
            vec!["leaderElection.enabled=false"],
            "leaderElection.enabled",
        ),
        (vec!["log.format=text"], "/log/format"),
        (vec!["replicaCount=0"], "/replicaCount"),
        (
            vec!["dashboard.port=9090"],
            "dashboard.port and controller.metricsPort",
        ),
        (
            vec!["metrics.serviceMonitor.enabled=true"],
            "metrics.serviceMonitor.enabled",
        ),
        (vec!["serviceAccount.create=false"], "serviceAccount.name"),
        (vec!["clusterDomain=Not A Domain"], "/clusterDomain"),
    ];
    for (sets, named) in refusals {
        let mut args = vec!["template", RELEASE, chart];
        for set in &sets {
            args.extend(["--set", *set]);
        }
        let err = helm.refused(&args);
        assert!(
            err.contains(named),
            "refusing {sets:?} names {named}: {err}"
        );
    }
}

/// Waits until `name` no longer exists.
async fn gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    wait_for(
        &format!("{name} deleted by helm uninstall"),
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async { api.get_opt(name).await.ok()?.is_none().then_some(()) },
    )
    .await;
}

async fn dashboard_token(client: &Client, ns: &str) -> String {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = secrets
        .get("ipfs-kit-operator-dashboard-token")
        .await
        .expect("the generated token Secret");
    let bytes = secret
        .data
        .and_then(|mut d| d.remove("token"))
        .expect("key token");
    String::from_utf8(bytes.0).expect("a text token")
}

#[tokio::test]
async fn helm_installs_upgrades_and_uninstalls_the_operator() {
    let cp = control_plane();
    let ns = cp.namespace("helm-install").await;
    let admin = cp.admin_client().await;
    let helm = Helm::on(cp);
    let chart = chart_dir();
    let chart = chart.to_str().expect("utf-8 path");

    // No --skip-crds: helm creates the chart's CRDs, or skips them when another test already has.
    let notes = helm.ok(&[
        "install",
        RELEASE,
        chart,
        "--namespace",
        &ns,
        "--wait",
        "--timeout",
        "180s",
    ]);
    assert!(
        notes.contains("kind: IpfsCluster"),
        "NOTES say how to create one:\n{notes}"
    );
    assert!(
        notes.contains("port-forward"),
        "NOTES say how to reach the dashboard:\n{notes}"
    );
    assert!(
        !notes.contains(&dashboard_token(&admin, &ns).await),
        "the NOTES never print the token"
    );

    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for file in CRD_FILES {
        let text = std::fs::read_to_string(chart_dir().join("crds").join(file)).expect("CRD");
        let shipped: CustomResourceDefinition = serde_yaml::from_str(&text).expect("CRD yaml");
        let name = shipped.name_any();
        tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("{name} not Established 60 s after helm install"))
        .expect("watch CRD");
        let mut served = crds.get(&name).await.expect("get CRD");
        // The API server fills in listKind; everything else is as shipped.
        served.spec.names.list_kind = None;
        assert_eq!(served.spec.names, shipped.spec.names, "{name}");
        assert_eq!(
            served
                .spec
                .versions
                .iter()
                .map(|v| &v.schema)
                .collect::<Vec<_>>(),
            shipped
                .spec
                .versions
                .iter()
                .map(|v| &v.schema)
                .collect::<Vec<_>>(),
            "{name}: the served schema is the chart's"
        );
    }

    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    let deployment = deployments.get(RELEASE).await.expect("the Deployment");
    let pod = deployment.spec.template.spec.clone().expect("pod spec");
    assert_hardened(&pod);
    // kwok schedules the pods on its fake nodes and reports them Running; nothing runs in them.
    let selector = format!("app.kubernetes.io/instance={RELEASE}");
    for p in running_pods(&admin, &ns, &selector, 2).await {
        let node = p.spec.and_then(|s| s.node_name).expect("scheduled");
        assert!(node.starts_with("kwok-node-"), "{node}");
    }
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), &ns);
    accounts.get(RELEASE).await.expect("the ServiceAccount");
    let cluster_name = format!("{ns}-{RELEASE}");
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let role = roles.get(&cluster_name).await.expect("the ClusterRole");
    assert_rules_match_deploy("the installed ClusterRole", role.rules, "ClusterRole");
    let bindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
    let binding = bindings
        .get(&cluster_name)
        .await
        .expect("the ClusterRoleBinding");
    let subject = &binding.subjects.expect("subjects")[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        (RELEASE, Some(ns.as_str()))
    );
    let lease_roles: Api<Role> = Api::namespaced(admin.clone(), &ns);
    let lease_role_name = format!("{RELEASE}-leader-election");
    lease_roles
        .get(&lease_role_name)
        .await
        .expect("the leader-election Role");
    let services: Api<Service> = Api::namespaced(admin.clone(), &ns);
    let service = services
        .get("ipfs-kit-operator-dashboard")
        .await
        .expect("the dashboard Service");
    assert_eq!(
        service.spec.and_then(|s| s.type_).as_deref(),
        Some("ClusterIP")
    );
    let token = dashboard_token(&admin, &ns).await;
    assert!(
        token.len() >= 32,
        "a generated token of {} characters",
        token.len()
    );

    // Upgrade with a changed value: it changes, and the generated token stays.
    helm.ok(&[
        "upgrade",
        RELEASE,
        chart,
        "--namespace",
        &ns,
        "--set",
        "replicaCount=1",
        "--set",
        "log.level=debug",
        "--wait",
        "--timeout",
        "180s",
    ]);
    let upgraded = deployments.get(RELEASE).await.expect("the Deployment");
    assert_eq!(upgraded.spec.replicas, Some(1));
    let pod = upgraded.spec.template.spec.expect("pod spec");
    let rust_log = container(&pod, "controller")
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "RUST_LOG")
        .and_then(|e| e.value.clone());
    assert_eq!(rust_log.as_deref(), Some("debug"));
    running_pods(&admin, &ns, &selector, 1).await;
    assert_eq!(
        dashboard_token(&admin, &ns).await,
        token,
        "helm upgrade keeps the generated dashboard token"
    );

    // Uninstall removes everything it installed, and leaves the CRDs (and so every IpfsCluster).
    helm.ok(&[
        "uninstall",
        RELEASE,
        "--namespace",
        &ns,
        "--wait",
        "--timeout",
        "120s",
    ]);
    gone(&deployments, RELEASE).await;
    gone(&accounts, RELEASE).await;
    gone(&roles, &cluster_name).await;
    gone(&bindings, &cluster_name).await;
    gone(&lease_roles, &lease_role_name).await;
    let lease_bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), &ns);
    gone(&lease_bindings, &lease_role_name).await;
    gone(&services, "ipfs-kit-operator-dashboard").await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
    gone(&secrets, "ipfs-kit-operator-dashboard-token").await;
    for file in CRD_FILES {
        let name = file.trim_end_matches(".yaml");
        assert!(
            crds.get_opt(name).await.expect("get CRD").is_some(),
            "{name} kept"
        );
    }
    let list = helm.ok(&["list", "--namespace", &ns, "--output", "json"]);
    assert_eq!(list.trim(), "[]");
}

/// A kubeconfig that authenticates as ServiceAccount `ns/name`, as a pod of that account would.
async fn service_account_kubeconfig(
    cp: &ControlPlane,
    ns: &str,
    name: &str,
    dir: &Path,
) -> PathBuf {
    let token = cp.service_account_token(ns, name).await;
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {
            "server": cp.server,
            "certificate-authority": cp.dir.join("pki/ca.crt"),
        }}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": "pod", "context": {"cluster": "test", "user": name, "namespace": ns}}],
        "current-context": "pod",
    });
    let path = dir.join("pod.kubeconfig");
    std::fs::write(&path, serde_json::to_string(&kubeconfig).expect("json")).expect("kubeconfig");
    path
}

/// Starts container `name` of the Deployment's pod template `spec` as a process, the way a kubelet
/// would for `pod`: its args, its environment (downward-API fields resolved for `pod`), its Secret
/// volumes written to `dir` (paths in the args and environment rewritten to there), authenticated
/// by `kubeconfig` (in place of the ServiceAccount token a kubelet mounts).
async fn start_container(
    client: &Client,
    spec: &PodSpec,
    pod: &Pod,
    name: &str,
    kubeconfig: &Path,
    dir: &Path,
) -> Daemon {
    let ns = pod.namespace().expect("pod namespace");
    let c = container(spec, name);
    let mut mounts = Vec::new();
    for mount in c.volume_mounts.iter().flatten() {
        let volume = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .expect("the mounted volume");
        let source = volume
            .secret
            .as_ref()
            .unwrap_or_else(|| panic!("volume {} is not a Secret: teach this test", volume.name));
        let local = dir.join(&volume.name);
        std::fs::create_dir_all(&local).expect("volume dir");
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let secret_name = source.secret_name.as_deref().expect("secretName");
        let data = secrets
            .get(secret_name)
            .await
            .expect("the mounted Secret")
            .data
            .unwrap_or_default();
        for item in source.items.iter().flatten() {
            let bytes = data.get(&item.key).expect("the Secret's key");
            std::fs::write(local.join(&item.path), &bytes.0).expect("write the Secret key");
        }
        mounts.push((mount.mount_path.clone(), local.display().to_string()));
    }
    let rewrite = |value: &str| {
        mounts
            .iter()
            .fold(value.to_owned(), |v, (from, to)| v.replace(from, to))
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipfs-kit-operator"));
    cmd.env_clear().env("KUBECONFIG", kubeconfig);
    for arg in c.args.iter().flatten() {
        cmd.arg(rewrite(arg));
    }
    for var in c.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => rewrite(v),
            (None, Some(from)) => {
                let field = from.field_ref.as_ref().expect("only fieldRef is used");
                match field.field_path.as_str() {
                    "metadata.name" => pod.name_any(),
                    "metadata.namespace" => ns.clone(),
                    // The pods of this test are processes on loopback.
                    "status.podIP" => "127.0.0.1".to_owned(),
                    other => panic!("{}: downward-API field {other}: teach this test", var.name),
                }
            }
            (None, None) => String::new(),
        };
        cmd.env(&var.name, value);
    }
    Daemon::spawn(
        &format!("{name}-{}", pod.name_any()),
        cmd,
        &dir.join("logs"),
    )
    .expect("start the container's process")
}

#[tokio::test]
async fn the_operator_as_the_chart_deploys_it_does_its_whole_job_with_the_chart_rights() {
    let cp = control_plane();
    let ns = cp.namespace("helm-run").await;
    let admin = cp.admin_client().await;
    let class = provide_volumes(&admin, &ns, 2).await;
    let helm = Helm::on(cp);
    let chart = chart_dir();
    let chart = chart.to_str().expect("utf-8 path");
    let (metrics_port, dashboard_port) = (free_port(), free_port());
    // The strictest binding: rights in the watched namespace only (a RoleBinding).
    helm.ok(&[
        "install",
        RELEASE,
        chart,
        "--namespace",
        &ns,
        "--set",
        &format!("watchNamespace={ns}"),
        "--set",
        "replicaCount=1",
        "--set",
        &format!("controller.metricsPort={metrics_port}"),
        "--set",
        &format!("dashboard.port={dashboard_port}"),
    ]);
    let bindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
    assert!(
        bindings
            .get_opt(&format!("{ns}-{RELEASE}"))
            .await
            .expect("get")
            .is_none(),
        "no cluster-wide rights with watchNamespace"
    );
    let selector = format!("app.kubernetes.io/instance={RELEASE}");
    let pod = running_pods(&admin, &ns, &selector, 1).await.remove(0);
    let dir = tempfile::tempdir().expect("pod dir");
    let kubeconfig = service_account_kubeconfig(cp, &ns, RELEASE, dir.path()).await;
    // The RoleBinding reaches the authorizer through a watch: wait until it is in force.
    let sa_client = cp.service_account_client(&ns, RELEASE).await;
    let probe: Api<IpfsCluster> = Api::namespaced(sa_client, &ns);
    wait_for(
        "the chart's RoleBinding in force",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async { probe.list(&Default::default()).await.ok() },
    )
    .await;
    let deployment = Api::<Deployment>::namespaced(admin.clone(), &ns)
        .get(RELEASE)
        .await
        .expect("the chart's Deployment");
    let template = deployment.spec.template.spec.expect("pod template");
    let start = |name| start_container(&admin, &template, &pod, name, &kubeconfig, dir.path());
    let mut controller = start("controller").await;
    let mut dashboard = start("dashboard").await;

    // The controller leads through the Lease the chart's Role allows.
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &ns);
    let holder = wait_for(
        "the controller holding the chart's Lease",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async { leases.get_opt(RELEASE).await.ok()??.spec?.holder_identity },
    )
    .await;
    assert_eq!(holder, pod.name_any(), "the Lease names the pod (POD_NAME)");

    let clusters: Api<IpfsCluster> = Api::namespaced(admin.clone(), &ns);
    let object = json!({
        "apiVersion": "ipfskit.io/v1alpha1",
        "kind": "IpfsCluster",
        "metadata": {"name": "chart"},
        "spec": {
            "replicas": 1,
            "kubo": {"storage": {"size": "1Gi", "storageClassName": class}},
            "cluster": {"storage": {"size": "1Gi", "storageClassName": class}},
            "health": {"probeInterval": "2s", "probeTimeout": "1s"}
        }
    });
    clusters
        .patch(
            "chart",
            &PatchParams::apply("helm-tests").force(),
            &Patch::Apply(&object),
        )
        .await
        .expect("apply the IpfsCluster");
    let statefulsets: Api<StatefulSet> = Api::namespaced(admin.clone(), &ns);
    wait_for(
        "the StatefulSet of IpfsCluster chart",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async { statefulsets.get_opt("chart").await.ok()? },
    )
    .await;
    let peer = running_pods(&admin, &ns, "app.kubernetes.io/instance=chart", 1)
        .await
        .remove(0);
    wait_for(
        "a converged status with an honest probe result for the peer",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || async {
            let c = clusters.get("chart").await.ok()?;
            let s = c.status?;
            (s.observed_generation == c.metadata.generation
                && s.peers.len() == 1
                && s.peers[0]
                    .last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("127.0.100.")))
            .then_some(())
        },
    )
    .await;
    controller.assert_running();
    // POD_NAMESPACE told the controller its namespace: the API ports admit the api-access pods of
    // the release namespace, named.
    let policy = Api::<NetworkPolicy>::namespaced(admin.clone(), &ns)
        .get("chart")
        .await
        .expect("the peers' NetworkPolicy");
    let selectors: Vec<Value> = policy
        .spec
        .and_then(|s| s.ingress)
        .into_iter()
        .flatten()
        .flat_map(|r| r.from.unwrap_or_default())
        .filter_map(|p| p.namespace_selector)
        .map(|s| json!(s))
        .collect();
    assert_eq!(
        selectors,
        [json!({"matchLabels": {"kubernetes.io/metadata.name": ns}})],
        "only the operator's namespace"
    );

    // The dashboard, with the generated token mounted as the chart mounts it.
    ipfs_kit_operator::tls::ensure_crypto_provider();
    let http = reqwest::Client::builder().no_proxy().build().expect("http");
    let base = format!("http://127.0.0.1:{dashboard_port}");
    let key = format!("{ns}/chart");
    dashboard_status_until(&base, "the dashboard serving the cluster", |body| {
        (body["data"]["clusters"][0]["cluster"] == json!(key)).then_some(())
    })
    .await;
    // IPFS Cluster alone: the controller, with the chart's rights, annotates the pod (its
    // cluster container stops the daemon; kubelet restarts it); the pod stays.
    let restart = format!("{base}/api/dashboard/backends/{ns}/chart/chart-0/cluster/restart");
    let token = dashboard_token(&admin, &ns).await;
    crate::support::restart_with_token(&restart, &token).await;
    let before = peer.uid().expect("pod uid");
    wait_requests_done(&admin, &ns, "chart").await;
    let pod = Api::<Pod>::namespaced(admin.clone(), &ns)
        .get("chart-0")
        .await
        .expect("pod chart-0");
    assert_eq!(pod.uid().as_deref(), Some(before.as_str()), "the pod stays");
    assert!(
        pod.annotations()
            .contains_key(ipfs_kit_operator::runtime::kube::build::RESTART_CLUSTER_ANNOTATION),
        "{:?}",
        pod.metadata.annotations
    );

    // The metrics endpoint on the port the chart declares.
    let metrics = http
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(metrics.contains("ipfs_kit_reconciles_total"), "{metrics}");

    controller.assert_running();
    dashboard.assert_running();
    let events: Api<Event> = Api::namespaced(admin.clone(), &ns);
    let warnings: Vec<String> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .map(|e| {
            format!(
                "{}: {}",
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default()
            )
        })
        .collect();
    assert!(
        warnings
            .iter()
            .all(|w| !w.to_lowercase().contains("forbidden")),
        "the operator was refused something with the chart's rights: {warnings:#?}"
    );
    controller.stop(Duration::from_secs(30));
    dashboard.stop(Duration::from_secs(30));
    for daemon in [&controller, &dashboard] {
        let log = std::fs::read_to_string(&daemon.log).unwrap_or_default();
        assert!(
            // (Not a bare "403": the log's timestamps may contain it.)
            !log.contains("code: 403") && !log.to_lowercase().contains("forbidden"),
            "{} was refused something with the chart's rights:\n{log}",
            daemon.name
        );
    }
}

#[test]
fn the_chart_runs_the_peers_kubo_metrics_from_its_own_image_and_can_monitor_the_peers() {
    let helm = Helm::offline();
    // The controller knows its own image: the peer pods' `kubo-metrics` container runs it.
    let docs = helm.template(&["image.tag=1.2.3"]);
    let deployment: Deployment = find(&docs, "Deployment", None);
    let pod = deployment.spec.template.spec.expect("pod spec");
    let args = container(&pod, "controller")
        .args
        .clone()
        .unwrap_or_default();
    assert!(
        args.windows(2).any(|w| w[0] == "--kubo-metrics-image"
            && w[1] == "ghcr.io/ipfs-kit/ipfs-kit-operator:1.2.3"),
        "{args:?}"
    );
    assert!(
        !kinds(&docs).contains(&"PodMonitor".to_owned()),
        "off by default"
    );

    // The dashboards read older history from a Prometheus of the user's; a URL it is not, refused.
    let docs = helm.template(&["dashboard.prometheusUrl=http://prom.monitoring:9090"]);
    let deployment: Deployment = find(&docs, "Deployment", None);
    let pod = deployment.spec.template.spec.expect("pod spec");
    let args = container(&pod, "dashboard")
        .args
        .clone()
        .unwrap_or_default();
    assert!(
        args.windows(2)
            .any(|w| w[0] == "--prometheus-url" && w[1] == "http://prom.monitoring:9090"),
        "{args:?}"
    );

    // The PodMonitor: the peers of every namespace, both daemons' ports, labelled by cluster and
    // peer; refused by name where the kind is unknown.
    let chart = chart_dir();
    let chart = chart.to_str().expect("utf-8 path");
    let out = helm.ok(&[
        "template",
        RELEASE,
        chart,
        "--set",
        "metrics.podMonitor.enabled=true",
        "--set",
        "metrics.podMonitor.labels.release=prom",
        "--api-versions",
        "monitoring.coreos.com/v1/PodMonitor",
    ]);
    let docs = documents(&out);
    let monitor = docs
        .iter()
        .find(|d| d["kind"] == "PodMonitor")
        .expect("a PodMonitor");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
    assert_eq!(monitor["spec"]["namespaceSelector"], json!({"any": true}));
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/managed-by"],
        "ipfs-kit-operator"
    );
    let endpoints = monitor["spec"]["podMetricsEndpoints"]
        .as_array()
        .expect("endpoints");
    let ports: Vec<&str> = endpoints
        .iter()
        .filter_map(|e| e["port"].as_str())
        .collect();
    assert_eq!(ports, ["kubo-metrics", "cluster-metrics"]);
    for endpoint in endpoints {
        let targets: Vec<&str> = endpoint["relabelings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["targetLabel"].as_str())
            .collect();
        assert_eq!(targets, ["cluster", "peer"], "{endpoint}");
    }
    let refused = helm.refused(&[
        "template",
        RELEASE,
        chart,
        "--set",
        "metrics.podMonitor.enabled=true",
    ]);
    assert!(refused.contains("metrics.podMonitor.enabled"), "{refused}");
    let refused = helm.refused(&[
        "template",
        RELEASE,
        chart,
        "--set",
        "dashboard.prometheusUrl=prom:9090",
    ]);
    assert!(refused.contains("prometheusUrl"), "{refused}");
}
