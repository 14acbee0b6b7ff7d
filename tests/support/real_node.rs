//! A real Kubernetes node: kubelet + containerd + runc + the CNI bridge, CoreDNS for
//! `cluster.local`, and a control plane it joins (etcd, kube-apiserver with Node,RBAC
//! authorization and client-certificate authentication, kube-controller-manager, kube-scheduler).
//! Pods run for real, from images built locally by `scripts/test-world.sh` (pause, `ipfs/kubo`,
//! `ipfs/ipfs-cluster`) and `scripts/image.sh` (the operator), imported into containerd: nothing is
//! ever pulled.
//!
//! Started once per test binary, on first use ([`real_node`]), and torn down when the test process
//! exits, whether its tests passed or not (an `atexit` handler: kubelet stopped, every container
//! process killed, containerd and its shims stopped, the node's cgroups removed).
//!
//! Network: the node lives in the test run's own network namespace (`scripts/run-tests.sh` runs
//! every test under `unshare --net`), which has only loopback; [`real_node`] refuses to start
//! anywhere else. There it adds a bridge `node0` with the node address [`NODE_IP`] and the CNI
//! bridge `cni0` for pod addresses from [`POD_CIDR`]: the project's own test hosts, reachable from
//! the test process, with no route out of the namespace. kube-proxy (iptables mode, in that
//! namespace) serves the Service ClusterIPs of [`SERVICE_CIDR`], the `kubernetes` Service's
//! included, to pods and to the tests alike.
//!
//! Files: containerd, kubelet and the CNI plugins hard-code paths under /run, /var/lib and
//! /var/log; containerd runs in a mount namespace of its own where those are bind-mounted from the
//! node's directory, and kubelet joins that mount namespace (so runc sees kubelet's volume mounts),
//! so the machine's own /run, /var/lib and /var/log stay untouched.

use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

use super::control_plane::{
    admin_client_from, kubeconfig_yaml, node_ready, random_hex, write, write_pki,
};
use super::process::{Daemon, free_port, log_tail};
use super::tools::{bin_dir, binary};

/// The node's name (its hostname for kubelet).
pub const NODE_NAME: &str = "ipfs-kit-node";
/// The node's address, on the bridge `node0`: kubelet, CoreDNS and the API server's advertised
/// address.
pub const NODE_IP: &str = "10.99.0.1";
const NODE_BRIDGE: &str = "node0";
/// Pod addresses (CNI `bridge` + `host-local` on `cni0`, gateway `10.244.0.1`).
pub const POD_CIDR: &str = "10.244.0.0/16";
const POD_BRIDGE: &str = "cni0";
/// Service ClusterIPs (served by kube-proxy inside the run's namespace).
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The `kubernetes` Service's ClusterIP (the first address of [`SERVICE_CIDR`]).
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";
/// The default StorageClass: a directory of the node per claim, provisioned by the harness.
pub const STORAGE_CLASS: &str = "ipfs-kit-local";
const PROVISIONER: &str = "ipfs-kit.test/local-dir";
/// The node's Kubo and IPFS Cluster images that run as the non-root user 1000:100 (USER in the
/// image): what pods that leave their ids to the platform need where no SCC assigns them.
pub const NONROOT_KUBO_IMAGE: &str = "localhost/ipfs-kit-test/kubo:v0.42.0";
pub const NONROOT_CLUSTER_IMAGE: &str = "localhost/ipfs-kit-test/ipfs-cluster:v1.1.6";
/// The operator's image reference (the default of the chart and of `deploy/`).
pub const OPERATOR_IMAGE: &str = concat!(
    "ghcr.io/ipfs-kit/ipfs-kit-operator:",
    env!("CARGO_PKG_VERSION")
);
/// The sandbox image `scripts/test-world.sh` builds (containerd's `sandbox_image`).
const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// The running node and its control plane.
pub struct RealNode {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub server: String,
    /// How long the start-up took, step by step.
    pub figures: Figures,
    admin_token: String,
}

/// Start-up times of the node.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// etcd + kube-apiserver started until `/readyz`.
    pub control_plane: Duration,
    /// containerd started until every image is imported.
    pub containerd_and_images: Duration,
    /// kubelet started until the Node is Ready.
    pub kubelet_to_ready: Duration,
    /// From nothing to a Ready node with its StorageClass.
    pub total: Duration,
}

static NODE: OnceLock<Result<RealNode, String>> = OnceLock::new();
/// The node thread's request channel, for the `atexit` teardown.
static SHUTDOWN: Mutex<Option<mpsc::Sender<mpsc::Sender<()>>>> = Mutex::new(None);

/// The node, started on first use (a minute or so). Panics (failing the calling test) with the
/// reason and the log tails when it cannot start.
pub fn real_node() -> &'static RealNode {
    let started = NODE.get_or_init(launch);
    match started {
        Ok(node) => node,
        Err(e) => panic!("the real test node did not start: {e}"),
    }
}

unsafe extern "C" {
    fn atexit(callback: extern "C" fn()) -> c_int;
}

/// Runs at process exit: asks the node thread to stop everything and waits (2 minutes at most).
extern "C" fn teardown_at_exit() {
    let sender = SHUTDOWN.lock().ok().and_then(|mut s| s.take());
    if let Some(sender) = sender {
        let (tx, rx) = mpsc::channel();
        if sender.send(tx).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(120));
        }
    }
}

fn launch() -> Result<RealNode, String> {
    check_isolated()?;
    let (tx, rx) = mpsc::channel();
    let (shutdown_tx, shutdown_rx) = mpsc::channel::<mpsc::Sender<()>>();
    *SHUTDOWN.lock().map_err(|e| e.to_string())? = Some(shutdown_tx);
    // SAFETY: registers a plain function; it runs once, at exit.
    if unsafe { atexit(teardown_at_exit) } != 0 {
        return Err("atexit refused the teardown handler".into());
    }
    std::thread::Builder::new()
        .name("test-world-real-node".into())
        .spawn(move || {
            let mut node = NodeProcesses::new();
            let result = node.start();
            let ok = result.is_ok();
            let _ = tx.send(result);
            if ok {
                node.serve(&shutdown_rx);
            } else {
                // Not started: stop what did start now (the process may live on for other tests).
                node.teardown();
                while let Ok(reply) = shutdown_rx.recv() {
                    let _ = reply.send(());
                }
            }
        })
        .map_err(|e| format!("spawning the node thread: {e}"))?;
    rx.recv()
        .map_err(|e| format!("the node thread died: {e}"))?
}

/// Refuses to run outside a network namespace of the test run's own: as root of the machine (not
/// of a user namespace), with no interface but loopback and this node's own, and no default route.
fn check_isolated() -> Result<(), String> {
    let uid_map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    let full_root = uid_map
        .split_whitespace()
        .collect::<Vec<_>>()
        .starts_with(&["0", "0", "4294967295"]);
    if !nix::unistd::Uid::effective().is_root() || !full_root {
        return Err(
            "the real node needs root (containerd, runc, cgroups, mounts); run the tests as root"
                .into(),
        );
    }
    let dev = std::fs::read_to_string("/proc/net/dev").map_err(|e| e.to_string())?;
    let foreign: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .filter(|n| !matches!(*n, "lo" | NODE_BRIDGE | POD_BRIDGE) && !n.starts_with("veth"))
        .collect();
    let route = std::fs::read_to_string("/proc/net/route").map_err(|e| e.to_string())?;
    let default_route = route
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().nth(1) == Some("00000000"));
    if !foreign.is_empty() || default_route {
        return Err(format!(
            "refusing to start the real node: this network namespace has interfaces {foreign:?} \
             or a default route; it runs only inside the test run's own loopback-only namespace \
             (scripts/run-tests.sh)"
        ));
    }
    Ok(())
}

/// Where things are.
#[derive(Clone)]
struct Paths {
    dir: PathBuf,
    pki: PathBuf,
    logs: PathBuf,
    kubeconfig: PathBuf,
    containerd_socket: PathBuf,
    volumes: PathBuf,
}

impl Paths {
    fn new() -> Paths {
        // The pid alone is not unique: test runs have PID namespaces of their own.
        let dir = std::env::temp_dir().join(format!(
            "ipfs-kit-node-{}-{}",
            std::process::id(),
            random_hex(3)
        ));
        Paths {
            pki: dir.join("pki"),
            logs: dir.join("logs"),
            kubeconfig: dir.join("admin.kubeconfig"),
            containerd_socket: dir.join("containerd/containerd.sock"),
            volumes: dir.join("volumes"),
            dir,
        }
    }
    fn pki(&self, file: &str) -> String {
        self.pki.join(file).display().to_string()
    }
}

/// What the node thread owns: the daemons (started and stopped by that thread only: a child gets
/// SIGKILL when the thread that spawned it ends) and what the teardown must clean.
struct NodeProcesses {
    paths: Paths,
    daemons: Vec<Daemon>,
    cgroup: String,
    cgroup_dirs: Vec<PathBuf>,
    admin_token: String,
    api_port: u16,
}

impl NodeProcesses {
    fn new() -> NodeProcesses {
        NodeProcesses {
            paths: Paths::new(),
            daemons: Vec::new(),
            cgroup: std::env::var("IPFS_KIT_NODE_CGROUP")
                .unwrap_or_else(|_| format!("ipfs-kit-node-{}", random_hex(4))),
            cgroup_dirs: Vec::new(),
            admin_token: random_hex(16),
            api_port: 0,
        }
    }

    fn spawn(&mut self, name: &str, cmd: Command) -> Result<u32, String> {
        let d = Daemon::spawn(name, cmd, &self.paths.logs).map_err(|e| e.to_string())?;
        let pid = d.pid();
        self.daemons.push(d);
        Ok(pid)
    }

    fn exited(&mut self) -> Option<String> {
        let d = self
            .daemons
            .iter_mut()
            .find_map(|d| (!d.is_running()).then_some(d))?;
        Some(format!(
            "{} exited; last log lines:\n{}",
            d.name,
            d.log_tail(40)
        ))
    }

    fn start(&mut self) -> Result<RealNode, String> {
        let began = Instant::now();
        let mut figures = Figures::default();
        let p = self.paths.clone();
        for d in [&p.pki, &p.logs, &p.volumes] {
            mkdir(d)?;
        }
        let images = image_archives()?;
        // A node of an earlier test binary in this namespace that could not tear down.
        remove_node_network();
        create_node_network()?;
        write_node_pki(&p.pki)?;
        write(
            &p.pki.join("tokens.csv"),
            &format!("{},admin,admin,\"system:masters\"\n", self.admin_token),
        )?;

        // Control plane.
        let t = Instant::now();
        let server = self.start_etcd_and_apiserver()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let kubeconfig = p.kubeconfig.clone();
        rt.block_on(self.wait_apiserver(&kubeconfig))?;
        figures.control_plane = t.elapsed();

        let kc = kubeconfig.display().to_string();
        self.start_controllers(&kc)?;

        let dns_ready = self.start_coredns(&kc)?;

        // containerd in a mount namespace of its own, images imported.
        let t = Instant::now();
        self.create_cgroup_root()?;
        self.write_node_configs()?;
        let containerd_pid = self.start_containerd()?;
        self.import_images(&images)?;
        figures.containerd_and_images = t.elapsed();

        // kubelet, in containerd's mount namespace.
        let t = Instant::now();
        self.start_kubelet(containerd_pid)?;
        self.start_kube_proxy()?;
        rt.block_on(self.wait_node_ready())?;
        figures.kubelet_to_ready = t.elapsed();
        rt.block_on(self.wait_kubernetes_service())?;
        rt.block_on(self.wait_dns_ready(dns_ready))?;
        rt.block_on(self.create_storage_class())?;
        figures.total = began.elapsed();
        say(&format!(
            "{NODE_NAME} Ready in {:.1} s ({figures:?}); kubeconfig {}",
            figures.total.as_secs_f64(),
            kubeconfig.display()
        ));
        Ok(RealNode {
            dir: self.paths.dir.clone(),
            kubeconfig,
            server,
            figures,
            admin_token: self.admin_token.clone(),
        })
    }

    /// etcd and kube-apiserver (the admin kubeconfig written); returns the API server's URL.
    fn start_etcd_and_apiserver(&mut self) -> Result<String, String> {
        let p = self.paths.clone();
        let etcd_port = free_port();
        let etcd_peer = free_port();
        self.api_port = free_port();
        let server = format!("https://127.0.0.1:{}", self.api_port);
        write(
            &p.kubeconfig,
            &kubeconfig_yaml(&server, &p.pki.join("ca.crt"), &self.admin_token),
        )?;
        let mut etcd = Command::new(binary("etcd", "etcd"));
        etcd.args([
            "--name=node".to_string(),
            format!("--data-dir={}", p.dir.join("etcd").display()),
            format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-cluster=node=http://127.0.0.1:{etcd_peer}"),
            "--unsafe-no-fsync".into(),
            "--log-level=warn".into(),
        ]);
        self.spawn("etcd", etcd)?;
        let mut apiserver = Command::new(binary("kubernetes", "kube-apiserver"));
        apiserver.args([
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            // Inside the run's namespace: loopback for the tests, the node address for pods.
            "--bind-address=0.0.0.0".into(),
            format!("--advertise-address={NODE_IP}"),
            format!("--secure-port={}", self.api_port),
            format!("--cert-dir={}", p.pki("generated")),
            format!("--tls-cert-file={}", p.pki("apiserver.crt")),
            format!("--tls-private-key-file={}", p.pki("apiserver.key")),
            format!("--client-ca-file={}", p.pki("ca.crt")),
            format!("--token-auth-file={}", p.pki("tokens.csv")),
            format!(
                "--kubelet-client-certificate={}",
                p.pki("apiserver-kubelet-client.crt")
            ),
            format!(
                "--kubelet-client-key={}",
                p.pki("apiserver-kubelet-client.key")
            ),
            "--kubelet-preferred-address-types=InternalIP".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", p.pki("sa.pub")),
            format!("--service-account-signing-key-file={}", p.pki("sa.key")),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
        ]);
        self.spawn("kube-apiserver", apiserver)?;
        Ok(server)
    }

    /// kube-controller-manager and kube-scheduler, with the admin kubeconfig `kc`.
    fn start_controllers(&mut self, kc: &str) -> Result<(), String> {
        let mut kcm = Command::new(binary("kubernetes", "kube-controller-manager"));
        kcm.args([
            format!("--kubeconfig={kc}"),
            "--leader-elect=false".into(),
            // Pod addresses come from the CNI config, not from Node.spec.podCIDR.
            "--controllers=*,-nodeipam,-cloud-node-lifecycle".into(),
            format!(
                "--service-account-private-key-file={}",
                self.paths.pki("sa.key")
            ),
            format!("--root-ca-file={}", self.paths.pki("ca.crt")),
            "--secure-port=0".into(),
        ]);
        self.spawn("kube-controller-manager", kcm)?;
        let mut scheduler = Command::new(binary("kubernetes", "kube-scheduler"));
        scheduler.args([
            format!("--kubeconfig={kc}"),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
        ]);
        self.spawn("kube-scheduler", scheduler)?;
        Ok(())
    }

    /// CoreDNS on the node address, serving cluster.local from the API server; returns the port
    /// of its readiness endpoint.
    fn start_coredns(&mut self, kc: &str) -> Result<u16, String> {
        let dns_ready = free_port();
        let corefile = self.paths.dir.join("Corefile");
        write(
            &corefile,
            &format!(
                ".:53 {{\n    bind {NODE_IP}\n    errors\n    ready 127.0.0.1:{dns_ready}\n    \
                 kubernetes cluster.local in-addr.arpa ip6.arpa {{\n        kubeconfig {kc} test\n        \
                 pods insecure\n        ttl 5\n        fallthrough in-addr.arpa ip6.arpa\n    }}\n}}\n"
            ),
        )?;
        let mut coredns = Command::new(binary("coredns", "coredns"));
        coredns.arg("-conf").arg(&corefile);
        self.spawn("coredns", coredns)?;
        Ok(dns_ready)
    }

    /// Imports the image archives into containerd's `k8s.io` namespace.
    fn import_images(&self, images: &[PathBuf]) -> Result<(), String> {
        for image in images {
            let out = self
                .ctr()
                .args(["images", "import"])
                .arg(image)
                .output()
                .map_err(|e| format!("ctr: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "ctr images import {}: {}",
                    image.display(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        Ok(())
    }

    /// kubelet, in containerd's mount namespace (`containerd_pid`'s).
    fn start_kubelet(&mut self, containerd_pid: u32) -> Result<(), String> {
        let mut kubelet = Command::new("nsenter");
        kubelet
            .arg(format!("--target={containerd_pid}"))
            .arg("--mount")
            .arg("--")
            .arg(binary("kubelet", "kubelet"))
            .args([
                format!(
                    "--config={}",
                    self.paths.dir.join("kubelet-config.yaml").display()
                ),
                format!(
                    "--kubeconfig={}",
                    self.paths.dir.join("kubelet.kubeconfig").display()
                ),
                format!("--root-dir={}", self.paths.dir.join("kubelet").display()),
                format!(
                    "--cert-dir={}",
                    self.paths.dir.join("kubelet/pki").display()
                ),
                format!("--hostname-override={NODE_NAME}"),
                format!("--node-ip={NODE_IP}"),
                "--v=1".into(),
            ]);
        self.spawn("kubelet", kubelet)?;
        Ok(())
    }

    /// kube-proxy (iptables mode, in the run's network namespace): ClusterIPs answer from pods
    /// and from the tests, so that pods reach the API server through the `kubernetes` Service
    /// as they do in any cluster. Service traffic is masqueraded, so that a pod reaching a
    /// Service backed by a pod on the same bridge gets its answers back without br_netfilter.
    fn start_kube_proxy(&mut self) -> Result<(), String> {
        let config = self.paths.dir.join("kube-proxy.yaml");
        write(
            &config,
            &format!(
                r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
mode: iptables
clusterCIDR: {POD_CIDR}
hostnameOverride: {NODE_NAME}
bindAddress: {NODE_IP}
healthzBindAddress: 127.0.0.1:{healthz}
metricsBindAddress: 127.0.0.1:{metrics}
nodePortAddresses: ["{NODE_IP}/32"]
iptables:
  masqueradeAll: true
  syncPeriod: 10s
  minSyncPeriod: 0s
# The namespace's conntrack table is the kernel's: no sysctl is changed.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"#,
                kubeconfig = self.paths.kubeconfig.display(),
                healthz = free_port(),
                metrics = free_port(),
            ),
        )?;
        let mut proxy = Command::new(binary("kubelet", "kube-proxy"));
        proxy
            .arg(format!("--config={}", config.display()))
            .arg("--v=1");
        self.spawn("kube-proxy", proxy)?;
        Ok(())
    }

    /// Waits until the `kubernetes` Service's ClusterIP forwards to the API server.
    async fn wait_kubernetes_service(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let address = format!("{KUBERNETES_SERVICE_IP}:443");
        loop {
            let connect = tokio::net::TcpStream::connect(address.as_str());
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
                return Ok(());
            }
            if let Some(e) = self.exited() {
                return Err(e);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the kubernetes Service ({address}) not forwarded after 30 s; kube-proxy log:\n{}",
                    log_tail(&self.paths.logs.join("kube-proxy.log"), 30)
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_apiserver(&mut self, kubeconfig: &Path) -> Result<(), String> {
        let client = admin_client_from(kubeconfig).await;
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let req = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
            match client.request_text(req).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                _ => {}
            }
            if let Some(e) = self.exited() {
                return Err(e);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "kube-apiserver not ready after 180 s; log:\n{}",
                    log_tail(&self.paths.logs.join("kube-apiserver.log"), 30)
                ));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn wait_node_ready(&mut self) -> Result<(), String> {
        let nodes: Api<Node> = Api::all(admin_client_from(&self.paths.kubeconfig).await);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(node)) = nodes.get_opt(NODE_NAME).await
                && node_ready(&node)
            {
                return Ok(());
            }
            if let Some(e) = self.exited() {
                return Err(e);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "node {NODE_NAME} not Ready after 120 s; kubelet log:\n{}",
                    log_tail(&self.paths.logs.join("kubelet.log"), 40)
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_dns_ready(&mut self, port: u16) -> Result<(), String> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http
                .get(format!("http://127.0.0.1:{port}/ready"))
                .send()
                .await
                && r.status().is_success()
            {
                return Ok(());
            }
            if let Some(e) = self.exited() {
                return Err(e);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "CoreDNS not ready after 60 s; log:\n{}",
                    log_tail(&self.paths.logs.join("coredns.log"), 30)
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn create_storage_class(&self) -> Result<(), String> {
        let client = admin_client_from(&self.paths.kubeconfig).await;
        let class: StorageClass = serde_json::from_value(json!({
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}
            },
            "provisioner": PROVISIONER,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer"
        }))
        .map_err(|e| e.to_string())?;
        Api::<StorageClass>::all(client)
            .create(&PostParams::default(), &class)
            .await
            .map_err(|e| format!("creating StorageClass {STORAGE_CLASS}: {e}"))?;
        Ok(())
    }

    /// kubelet's pods go under `/<cgroup>/kubepods` in every cgroup v1 hierarchy (kubelet wants
    /// the root to exist), so that the teardown finds every container process and removes only
    /// this node's cgroups.
    fn create_cgroup_root(&mut self) -> Result<(), String> {
        let hierarchies = std::fs::read_dir("/sys/fs/cgroup")
            .map_err(|e| format!("/sys/fs/cgroup: {e}"))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.join("cgroup.procs").exists() && !p.ends_with("unified"))
            .collect::<Vec<_>>();
        if hierarchies.is_empty() {
            return Err("no cgroup v1 hierarchy under /sys/fs/cgroup".into());
        }
        for h in hierarchies {
            let dir = h.join(&self.cgroup);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            if h.ends_with("cpuset") {
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let value = std::fs::read_to_string(h.join(f)).unwrap_or_default();
                    std::fs::write(dir.join(f), value.trim())
                        .map_err(|e| format!("{}: {e}", dir.join(f).display()))?;
                }
            }
            self.cgroup_dirs.push(dir);
        }
        Ok(())
    }

    fn write_node_configs(&self) -> Result<(), String> {
        let d = &self.paths.dir;
        for sub in [
            "containerd/root",
            "containerd/state",
            "containerd/runc",
            "cni/net.d",
            "cni/ipam",
            "kubelet/pki",
            "pod-logs",
            "hostfs/run",
            "hostfs/var/lib",
            "hostfs/var/log",
        ] {
            mkdir(&d.join(sub))?;
        }
        let dd = d.display();
        write(
            &d.join("containerd/config.toml"),
            &format!(
                r#"version = 2
root = "{dd}/containerd/root"
state = "{dd}/containerd/state"

[grpc]
  address = "{dd}/containerd/containerd.sock"

[ttrpc]
  address = "{dd}/containerd/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  disable_apparmor = true
  # This machine's capability bounding set lacks CAP_SYS_RESOURCE: without this, runc cannot
  # lower a container's oom_score_adj below containerd's own and every sandbox fails to start.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{dd}/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{dd}/cni/net.d"
    max_conf_num = 1
"#
            ),
        )?;
        write(
            &d.join("cni/net.d/10-pods.conflist"),
            &serde_json::to_string_pretty(&json!({
                "cniVersion": "1.0.0",
                "name": "ipfs-kit-pods",
                "plugins": [{
                    "type": "bridge",
                    "bridge": POD_BRIDGE,
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR, "gateway": "10.244.0.1"}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": format!("{dd}/cni/ipam")
                    }
                }]
            }))
            .map_err(|e| e.to_string())?,
        )?;
        write(
            &d.join("kubelet.kubeconfig"),
            &format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: \
                 https://127.0.0.1:{port}\n    certificate-authority: {ca}\nusers:\n- name: kubelet\n  \
                 user:\n    client-certificate: {crt}\n    client-key: {key}\ncontexts:\n- name: test\n  \
                 context:\n    cluster: test\n    user: kubelet\ncurrent-context: test\n",
                port = self.api_port,
                ca = self.paths.pki("ca.crt"),
                crt = self.paths.pki("kubelet.crt"),
                key = self.paths.pki("kubelet.key"),
            ),
        )?;
        write(
            &d.join("kubelet-config.yaml"),
            &format!(
                r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroup v1 only: kubelet 1.36 runs on it when told to.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup}
containerRuntimeEndpoint: unix://{dd}/containerd/containerd.sock
failSwapOn: false
address: {NODE_IP}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 0
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {ca}}}
authorization:
  mode: Webhook
clusterDomain: cluster.local
clusterDNS: [{NODE_IP}]
resolvConf: ""
podLogsDir: {dd}/pod-logs
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
"#,
                cgroup = self.cgroup,
                ca = self.paths.pki("ca.crt"),
            ),
        )?;
        Ok(())
    }

    /// Starts containerd in a new mount namespace in which /run, /var/lib and /var/log are the
    /// node's own directories; returns its pid (kubelet joins its mount namespace).
    fn start_containerd(&mut self) -> Result<u32, String> {
        let d = self.paths.dir.display().to_string();
        // Names that containerd and kubelet look up (an image pull) go to the node's CoreDNS,
        // which answers `cluster.local` only: no lookup is even tried past the node.
        write(
            &self.paths.dir.join("hostfs/resolv.conf"),
            &format!("nameserver {NODE_IP}\n"),
        )?;
        let script = format!(
            "mount --bind {d}/hostfs/run /run && mount --bind {d}/hostfs/var/lib /var/lib && \
             mount --bind {d}/hostfs/var/log /var/log && \
             mount --bind {d}/hostfs/resolv.conf /etc/resolv.conf && \
             exec containerd --config {d}/containerd/config.toml"
        );
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "slave", "--", "/bin/sh", "-c"])
            .arg(script);
        let pid = self.spawn("containerd", cmd)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.paths.containerd_socket.exists()
                && self
                    .ctr()
                    .arg("version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            {
                return Ok(pid);
            }
            if let Some(e) = self.exited() {
                return Err(e);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "containerd not answering after 30 s; log:\n{}",
                    log_tail(&self.paths.logs.join("containerd.log"), 30)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ctr(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.paths.containerd_socket)
            .args(["--namespace", "k8s.io"]);
        cmd
    }

    /// Serves until the process exits, provisioning volumes for claims of [`STORAGE_CLASS`] once a
    /// second; at exit tears everything down.
    fn serve(&mut self, shutdown: &mpsc::Receiver<mpsc::Sender<()>>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = rt.block_on(admin_client_from(&self.paths.kubeconfig));
        loop {
            match shutdown.recv_timeout(Duration::from_secs(1)) {
                Ok(reply) => {
                    self.teardown();
                    let _ = reply.send(());
                    return;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.teardown();
                    return;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(e) = rt.block_on(provision(&client, &self.paths.volumes)) {
                        say(&format!("volume provisioning: {e}"));
                    }
                }
            }
        }
    }

    /// Stops kubelet, kills every container process, stops containerd and its shims, then the
    /// control plane, and removes the node's cgroups and runtime state (logs are kept).
    fn teardown(&mut self) {
        let began = Instant::now();
        if let Some(i) = self.daemons.iter().position(|d| d.name == "kubelet") {
            self.daemons.remove(i).stop(Duration::from_secs(10));
        }
        // Every container process is in this node's cgroups.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let pids = self.cgroup_pids();
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if let Some(i) = self.daemons.iter().position(|d| d.name == "containerd") {
            self.daemons.remove(i).stop(Duration::from_secs(5));
        }
        // The shims (reparented when containerd stopped) name this node's socket.
        let socket = self.paths.containerd_socket.display().to_string();
        for pid in pids_whose_cmdline_contains(&socket) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        while let Some(mut d) = self.daemons.pop() {
            d.stop(Duration::from_secs(5));
        }
        std::thread::sleep(Duration::from_millis(300));
        for dir in self.all_cgroup_dirs() {
            remove_cgroup_tree(&dir);
        }
        let left: Vec<_> = self
            .all_cgroup_dirs()
            .into_iter()
            .filter(|d| d.exists())
            .collect();
        if !left.is_empty() {
            say(&format!(
                "teardown: cgroups left (processes inside?): {left:?}"
            ));
        }
        for sub in ["containerd", "kubelet", "hostfs", "volumes", "etcd"] {
            let _ = std::fs::remove_dir_all(self.paths.dir.join(sub));
        }
        remove_node_network();
        say(&format!(
            "torn down in {:.1} s (logs kept in {})",
            began.elapsed().as_secs_f64(),
            self.paths.logs.display()
        ));
    }

    /// This node's cgroup in every hierarchy where it exists (the cgroup v2 one included, where
    /// runc may have made some too).
    fn all_cgroup_dirs(&self) -> Vec<PathBuf> {
        if self.cgroup_dirs.is_empty() {
            return Vec::new();
        }
        std::fs::read_dir("/sys/fs/cgroup")
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path().join(&self.cgroup))
                    .filter(|d| d.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn cgroup_pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for dir in self.all_cgroup_dirs() {
            collect_cgroup_pids(&dir, &mut pids);
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }
}

/// A line on standard error past the test harness' output capture (which threads inherit).
/// The node's own network: the bridge `node0` with the node address, and a route for the
/// Service ClusterIPs (the pods' bridge is made by the CNI plugin).
fn create_node_network() -> Result<(), String> {
    // The node's address on a bridge: the kernel may lack the `dummy` module, and kubelet
    // refuses a loopback node address.
    run(
        "ip",
        &["link", "add", NODE_BRIDGE, "type", "bridge"],
        "creating the node bridge",
    )?;
    run(
        "ip",
        &["addr", "add", &format!("{NODE_IP}/24"), "dev", NODE_BRIDGE],
        "addressing the node bridge",
    )?;
    run(
        "ip",
        &["link", "set", NODE_BRIDGE, "up"],
        "bringing the node bridge up",
    )?;
    // ClusterIPs from the tests' own processes: a route for kube-proxy's NAT to apply to
    // (pods route them through their gateway).
    run(
        "ip",
        &["route", "add", SERVICE_CIDR, "dev", NODE_BRIDGE],
        "routing Service ClusterIPs",
    )?;
    Ok(())
}

/// Removes the node's bridges (their routes go with them) and kube-proxy's rules from the run's
/// network namespace, so that the next test binary's node starts from loopback alone.
fn remove_node_network() {
    // (Not looked up in /sys/class/net: that shows the namespace of whoever mounted /sys.)
    for bridge in [POD_BRIDGE, NODE_BRIDGE] {
        let _ = Command::new("ip")
            .args(["link", "del", bridge])
            .stderr(std::process::Stdio::null())
            .status();
    }
    let _ = Command::new(binary("kubelet", "kube-proxy"))
        .arg("--cleanup")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "[real node] {line}");
}

fn collect_cgroup_pids(dir: &Path, pids: &mut Vec<i32>) {
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_cgroup_pids(&e.path(), pids);
            }
        }
    }
}

/// Removes a cgroup and its descendants, deepest first (only empty cgroups can be removed).
fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

fn pids_whose_cmdline_contains(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .is_ok_and(|c| c.contains(needle))
        })
        .collect()
}

/// One pass of the harness' volume provisioner: a directory and a `local` PersistentVolume
/// (pre-bound) for every claim of [`STORAGE_CLASS`] that the scheduler placed on the node; the
/// volume of a deleted claim is deleted with its directory.
async fn provision(client: &Client, volumes: &Path) -> Result<(), String> {
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let existing = pvs
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    for pv in &existing.items {
        let ours = pv
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref())
            == Some(STORAGE_CLASS);
        let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
        if ours && released {
            let name = pv.metadata.name.clone().unwrap_or_default();
            let _ = std::fs::remove_dir_all(volumes.join(&name));
            let _ = pvs.delete(&name, &DeleteParams::default()).await;
        }
    }
    for claim in claims
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items
    {
        let spec = claim.spec.clone().unwrap_or_default();
        let pending = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending");
        let placed = claim
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("volume.kubernetes.io/selected-node"));
        if spec.storage_class_name.as_deref() != Some(STORAGE_CLASS) || !pending || !placed {
            continue;
        }
        let uid = claim.metadata.uid.clone().unwrap_or_default();
        let name = format!("pvc-{uid}");
        if existing
            .items
            .iter()
            .any(|pv| pv.metadata.name.as_deref() == Some(&name))
        {
            continue;
        }
        let dir = volumes.join(&name);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| e.to_string())?;
        let size = spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| q.0.clone())
            .unwrap_or_else(|| "1Gi".into());
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {
                "name": name,
                "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}
            },
            "spec": {
                "capacity": {"storage": size},
                "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": STORAGE_CLASS,
                "volumeMode": "Filesystem",
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": claim.metadata.namespace,
                    "name": claim.metadata.name,
                    "uid": uid
                },
                "local": {"path": dir.display().to_string()},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE_NAME]}
                ]}]}}
            }
        }))
        .map_err(|e| e.to_string())?;
        pvs.create(&PostParams::default(), &pv)
            .await
            .map_err(|e| format!("creating {name}: {e}"))?;
    }
    Ok(())
}

/// The image archives to import: the test world's node images and the operator's image, built
/// from this crate's binary by `scripts/image.sh` (cached while the binary is unchanged).
fn image_archives() -> Result<Vec<PathBuf>, String> {
    let node_images = bin_dir("node-images");
    let mut archives = Vec::new();
    for name in [
        "pause.tar",
        "kubo.tar",
        "ipfs-cluster.tar",
        "kubo-nonroot.tar",
        "ipfs-cluster-nonroot.tar",
    ] {
        let path = node_images.join(name);
        if !path.is_file() {
            return Err(format!(
                "{} is missing: build the test world first with `make test-world`",
                path.display()
            ));
        }
        archives.push(path);
    }
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_ipfs-kit-operator"));
    let target = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("no target directory")?;
    let out = target.join("image/ipfs-kit-operator-test.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/image.sh");
    let status = Command::new("bash")
        .arg(&script)
        .arg("--binary")
        .arg(&exe)
        .arg("--tag")
        .arg(OPERATOR_IMAGE)
        .arg("--out")
        .arg(&out)
        .status()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !status.success() {
        return Err(format!("{} failed ({status})", script.display()));
    }
    archives.push(out);
    Ok(archives)
}

impl RealNode {
    /// A client with cluster-admin rights (group `system:masters`).
    pub async fn admin_client(&self) -> Client {
        admin_client_from(&self.kubeconfig).await
    }

    /// `kubectl` from the test world, pointed at this node's control plane.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(binary("kubernetes", "kubectl"));
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()));
        cmd
    }

    /// Gives image `from` a second name `to` in containerd's `k8s.io` namespace (the images
    /// kubelet runs), as a registry serving a new tag of the same build would.
    pub fn tag_image(&self, from: &str, to: &str) {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(self.dir.join("containerd/containerd.sock"))
            .args([
                "--namespace",
                "k8s.io",
                "images",
                "tag",
                "--force",
                from,
                to,
            ])
            .output()
            .expect("run ctr");
        assert!(
            out.status.success(),
            "ctr images tag {from} {to}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The admin bearer token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The last lines of a node daemon's log (`kubelet`, `containerd`, `coredns`, ...).
    pub fn log_tail(&self, daemon: &str, lines: usize) -> String {
        log_tail(&self.dir.join("logs").join(format!("{daemon}.log")), lines)
    }

    /// Installs the CRDs shipped in `crds/` (by server-side apply) and waits until they are
    /// Established.
    pub async fn install_crds(&self) {
        super::control_plane::apply_crds(self.admin_client().await).await;
    }

    /// Creates a fresh namespace named `<prefix>-<random>` and waits until its `default`
    /// ServiceAccount exists (pods are refused before that).
    pub async fn namespace(&self, prefix: &str) -> String {
        super::control_plane::fresh_namespace(self.admin_client().await, prefix).await
    }
}

fn run(program: &str, args: &[&str], what: &str) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{what}: {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn mkdir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))
}

/// The node's PKI: a CA; the API server's serving certificate (loopback, the node address, the
/// `kubernetes` Service's first ClusterIP and names); kubelet's client certificate (the Node
/// authorizer's `system:node:<name>` in `system:nodes`); the API server's client certificate for
/// kubelet; the service-account signing key.
fn write_node_pki(dir: &Path) -> Result<(), String> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
    let err = |e: rcgen::Error| e.to_string();
    let issuer = write_pki(dir, &[NODE_IP, KUBERNETES_SERVICE_IP])?;
    let node_cn = format!("system:node:{NODE_NAME}");
    for (file, cn, org) in [
        ("kubelet", node_cn.as_str(), "system:nodes"),
        (
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            "system:masters",
        ),
    ] {
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer).map_err(err)?;
        write(&dir.join(format!("{file}.crt")), &cert.pem())?;
        write(&dir.join(format!("{file}.key")), &key.serialize_pem())?;
    }

    Ok(())
}
