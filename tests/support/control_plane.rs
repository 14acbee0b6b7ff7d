//! A loopback Kubernetes control plane: etcd, kube-apiserver (token auth, RBAC, service-account
//! signing), kube-controller-manager, kube-scheduler and kwok with fake nodes whose pods become
//! Running. Started once per test binary, on first use, and shared by its tests; each test works in
//! a namespace of its own. A test that needs to disrupt the control plane (stop the apiserver)
//! starts a private one with [`ControlPlane::start_private`] instead.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Node, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};

use super::process::{Daemon, free_port, log_tail};
use super::tools::{binary, kwok_stages};
use super::wait_for;

/// Number of fake nodes kwok manages.
pub const NODES: usize = 3;
/// Pod IPs kwok hands out: inside loopback, so an operator probing "pod IPs" dials 127.0.0.0/8.
pub const POD_CIDR: &str = "127.0.100.1/24";

/// A running control plane: the one shared by the tests of a test binary ([`control_plane`]) or
/// a private one ([`ControlPlane::start_private`]), whose daemons stop when it is dropped.
pub struct ControlPlane {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub server: String,
    admin_token: String,
    /// Requests to the thread that owns the daemons (see [`Request`]).
    requests: Mutex<mpsc::Sender<Request>>,
    crds_installed: tokio::sync::OnceCell<()>,
}

/// What the thread owning the daemons can be asked to do. Daemons are started and stopped by
/// that thread only: a child gets SIGKILL when the thread that spawned it ends.
enum Request {
    StopApiserver(mpsc::Sender<()>),
    StartApiserver(mpsc::Sender<Result<(), String>>),
}

static CONTROL_PLANE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

/// The control plane, started on first use. Panics (failing the calling test) with the reason and
/// the log tails when it cannot start.
pub fn control_plane() -> &'static ControlPlane {
    // Never dropped: its daemons live as long as the process.
    let started = CONTROL_PLANE.get_or_init(|| launch(std::process::id().to_string()));
    match started {
        Ok(cp) => cp,
        Err(e) => panic!("the test control plane did not start: {e}"),
    }
}

impl ControlPlane {
    /// A control plane of the calling test's own (blocks until it is up, about a minute), for
    /// tests that disrupt it. Its daemons stop when it is dropped. Panics with the reason and
    /// the log tails when it cannot start.
    pub fn start_private() -> ControlPlane {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        launch(format!("{}-private-{n}", std::process::id()))
            .unwrap_or_else(|e| panic!("a private test control plane did not start: {e}"))
    }

    /// Kills kube-apiserver (SIGKILL, as in a crash). etcd and the other daemons keep running.
    pub fn stop_apiserver(&self) {
        let (tx, rx) = mpsc::channel();
        self.request(Request::StopApiserver(tx));
        rx.recv().expect("the control-plane thread answers");
    }

    /// Starts kube-apiserver again on the same address, with the same etcd data, certificates
    /// and tokens, and waits until it is ready. Panics with its log tail if it does not become
    /// ready.
    pub fn start_apiserver(&self) {
        let (tx, rx) = mpsc::channel();
        self.request(Request::StartApiserver(tx));
        if let Err(e) = rx.recv().expect("the control-plane thread answers") {
            panic!("kube-apiserver did not come back: {e}");
        }
    }

    fn request(&self, request: Request) {
        self.requests
            .lock()
            .expect("request channel")
            .send(request)
            .expect("the control-plane thread is running");
    }
}

/// Starts the daemons from a thread that lives until the returned control plane is dropped (for
/// the shared one: until the process exits), and serves its requests there.
fn launch(id: String) -> Result<ControlPlane, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(format!("test-world-control-plane-{id}"))
        .spawn(move || {
            let (req_tx, req_rx) = mpsc::channel();
            let mut daemons = Vec::new();
            let result = start(&id, &mut daemons, req_tx);
            let Ok((setup, cp)) = result else {
                let _ = tx.send(result.map(|(_, cp)| cp));
                return;
            };
            let _ = tx.send(Ok(cp));
            serve(setup, daemons, req_rx);
        })
        .map_err(|e| format!("spawning the control-plane thread: {e}"))?;
    rx.recv()
        .map_err(|e| format!("control-plane thread died: {e}"))?
}

/// Serves requests until the control plane is dropped, then stops the daemons, last started
/// first.
fn serve(setup: Setup, mut daemons: Vec<Daemon>, requests: mpsc::Receiver<Request>) {
    let apiserver = |daemons: &[Daemon]| daemons.iter().position(|d| d.name == "kube-apiserver");
    while let Ok(request) = requests.recv() {
        match request {
            Request::StopApiserver(reply) => {
                if let Some(i) = apiserver(&daemons) {
                    daemons.remove(i).stop(Duration::ZERO);
                }
                let _ = reply.send(());
            }
            Request::StartApiserver(reply) => {
                let result = if apiserver(&daemons).is_some() {
                    Ok(())
                } else {
                    Daemon::spawn("kube-apiserver", setup.apiserver_command(), &setup.logs)
                        .map_err(|e| e.to_string())
                        .and_then(|d| {
                            daemons.push(d);
                            setup.wait_ready(&mut daemons)
                        })
                };
                let _ = reply.send(result);
            }
        }
    }
    while let Some(mut d) = daemons.pop() {
        d.stop(Duration::from_secs(5));
    }
}

/// What is needed to (re)start kube-apiserver and check it.
struct Setup {
    pki: PathBuf,
    logs: PathBuf,
    etcd_port: u16,
    api_port: u16,
    kubeconfig: PathBuf,
}

impl Setup {
    fn apiserver_command(&self) -> Command {
        let p = |f: &str| self.pki.join(f).display().to_string();
        let mut apiserver = Command::new(binary("kubernetes", "kube-apiserver"));
        apiserver.args([
            format!("--etcd-servers=http://127.0.0.1:{}", self.etcd_port),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={}", self.api_port),
            format!("--cert-dir={}", p("generated")),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--token-auth-file={}", p("tokens.csv")),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            // Service ClusterIPs are allocated from here but never dialled by tests (and cannot
            // be: the tests' network namespace has only loopback). A /16: the controller-scale
            // benchmark's 1000 IpfsClusters need 1000 ClusterIPs (a /24 has 254).
            "--service-cluster-ip-range=10.0.0.0/16".into(),
            "--authorization-mode=RBAC".into(),
            "--allow-privileged=true".into(),
            "--endpoint-reconciler-type=none".into(),
            "--profiling=false".into(),
        ]);
        apiserver
    }

    /// Waits up to 180 s until kube-apiserver answers `/readyz` with `ok`.
    fn wait_ready(&self, daemons: &mut [Daemon]) -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let client = admin_client_from(&self.kubeconfig).await;
            let deadline = Instant::now() + Duration::from_secs(180);
            loop {
                let req = http::Request::get("/readyz")
                    .body(Vec::new())
                    .expect("request");
                match client.request_text(req).await {
                    Ok(body) if body.trim() == "ok" => break,
                    _ if exited(daemons).is_some() => {
                        return Err(exited(daemons).unwrap_or_default());
                    }
                    _ if Instant::now() > deadline => {
                        return Err(format!(
                            "kube-apiserver not ready after 180 s; log:\n{}",
                            log_tail(&self.logs.join("kube-apiserver.log"), 30)
                        ));
                    }
                    _ => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
            Ok(())
        })
    }
}

fn start(
    id: &str,
    daemons: &mut Vec<Daemon>,
    requests: mpsc::Sender<Request>,
) -> Result<(Setup, ControlPlane), String> {
    let began = Instant::now();
    let dir = std::env::temp_dir().join(format!("ipfs-kit-k8s-{id}"));
    let _ = std::fs::remove_dir_all(&dir);
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki).map_err(|e| format!("creating {}: {e}", pki.display()))?;
    let logs = dir.join("logs");
    write_pki(&pki, &[])?;
    let admin_token = random_hex(16);
    write(
        &pki.join("tokens.csv"),
        &format!("{admin_token},admin,admin,\"system:masters\"\n"),
    )?;

    let etcd_port = free_port();
    let etcd_peer_port = free_port();
    let api_port = free_port();
    let server = format!("https://127.0.0.1:{api_port}");
    let kubeconfig = dir.join("admin.kubeconfig");
    write(
        &kubeconfig,
        &kubeconfig_yaml(&server, &pki.join("ca.crt"), &admin_token),
    )?;

    let mut etcd = Command::new(binary("etcd", "etcd"));
    etcd.args([
        "--name=test",
        &format!("--data-dir={}", dir.join("etcd").display()),
        &format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
        &format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
        &format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
        &format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
        &format!("--initial-cluster=test=http://127.0.0.1:{etcd_peer_port}"),
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]);
    daemons.push(Daemon::spawn("etcd", etcd, &logs).map_err(|e| e.to_string())?);
    wait_port("etcd", etcd_port, &logs.join("etcd.log"))?;

    let setup = Setup {
        pki: pki.clone(),
        logs: logs.clone(),
        etcd_port,
        api_port,
        kubeconfig: kubeconfig.clone(),
    };
    daemons.push(
        Daemon::spawn("kube-apiserver", setup.apiserver_command(), &logs)
            .map_err(|e| e.to_string())?,
    );
    setup.wait_ready(daemons)?;
    let cp = ControlPlane {
        dir: dir.clone(),
        kubeconfig: kubeconfig.clone(),
        server,
        admin_token,
        requests: Mutex::new(requests),
        crds_installed: tokio::sync::OnceCell::new(),
    };
    let p = |f: &str| pki.join(f).display().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;

    let kc = kubeconfig.display().to_string();
    let mut kcm = Command::new(binary("kubernetes", "kube-controller-manager"));
    kcm.args([
        format!("--kubeconfig={kc}"),
        "--leader-elect=false".into(),
        "--controllers=*".into(),
        format!("--service-account-private-key-file={}", p("sa.key")),
        format!("--root-ca-file={}", p("ca.crt")),
        "--secure-port=0".into(),
    ]);
    daemons.push(Daemon::spawn("kube-controller-manager", kcm, &logs).map_err(|e| e.to_string())?);
    let mut scheduler = Command::new(binary("kubernetes", "kube-scheduler"));
    scheduler.args([
        format!("--kubeconfig={kc}"),
        "--leader-elect=false".into(),
        "--secure-port=0".into(),
    ]);
    daemons.push(Daemon::spawn("kube-scheduler", scheduler, &logs).map_err(|e| e.to_string())?);
    // kwok stands in for the kubelets: it also serves the pods' container logs (to the API
    // server's `pods/log`) on the nodes' kubelet port, from one CRI-format file per container name.
    let kwok_logs = write_kwok_logs(&dir).map_err(|e| format!("kwok logs config: {e}"))?;
    let mut kwok = Command::new(binary("kwok", "kwok"));
    kwok.args([
        format!("--kubeconfig={kc}"),
        format!("--config={}", kwok_stages().display()),
        format!("--config={}", kwok_logs.display()),
        format!("--server-address=127.0.0.1:{KUBELET_PORT}"),
        format!("--tls-cert-file={}", p("apiserver.crt")),
        format!("--tls-private-key-file={}", p("apiserver.key")),
        "--manage-all-nodes=true".into(),
        "--node-ip=127.0.0.1".into(),
        format!("--cidr={POD_CIDR}"),
        "--node-lease-duration-seconds=40".into(),
    ]);
    daemons.push(Daemon::spawn("kwok", kwok, &logs).map_err(|e| e.to_string())?);

    rt.block_on(async {
        let client = cp.admin_client().await;
        let nodes: Api<Node> = Api::all(client.clone());
        for i in 0..NODES {
            let node: Node = serde_json::from_value(json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": format!("kwok-node-{i}"),
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                    "labels": {"type": "kwok", "kubernetes.io/hostname": format!("kwok-node-{i}")}
                },
                "spec": {}
            }))
            .expect("node json");
            nodes
                .create(&PostParams::default(), &node)
                .await
                .map_err(|e| format!("creating node {i}: {e}"))?;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let list = nodes
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            let ready = list.items.iter().filter(|n| node_ready(n)).count();
            if ready == NODES {
                break;
            }
            if let Some(e) = exited(daemons) {
                return Err(e);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{ready}/{NODES} kwok nodes Ready after 120 s; kwok log:\n{}",
                    log_tail(&logs.join("kwok.log"), 30)
                ));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(())
    })?;
    eprintln!(
        "test control plane up in {:.1} s at {} (kubeconfig {})",
        began.elapsed().as_secs_f64(),
        cp.server,
        cp.kubeconfig.display()
    );
    Ok((setup, cp))
}

/// Describes the first daemon that has exited, with its log tail.
fn exited(daemons: &mut [Daemon]) -> Option<String> {
    let d = daemons
        .iter_mut()
        .find_map(|d| (!d.is_running()).then_some(d))?;
    Some(format!(
        "{} exited; last log lines:\n{}",
        d.name,
        d.log_tail(30)
    ))
}

/// A client authenticated by `kubeconfig`.
pub async fn admin_client_from(kubeconfig: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig to config");
    Client::try_from(config).expect("client")
}

/// Whether `node` reports the condition Ready.
pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl ControlPlane {
    /// A client with cluster-admin rights (group `system:masters`).
    pub async fn admin_client(&self) -> Client {
        admin_client_from(&self.kubeconfig).await
    }

    /// A client that authenticates as ServiceAccount `namespace/name` (created if missing), with
    /// whatever RBAC rights that account has been given.
    pub async fn service_account_client(&self, namespace: &str, name: &str) -> Client {
        let token = self.service_account_token(namespace, name).await;
        let mut config = self.config_from_kubeconfig().await;
        config.auth_info.token = Some(token.into());
        Client::try_from(config).expect("client")
    }

    /// Grants ServiceAccount `ns/account` the RBAC `rules` (a JSON array of PolicyRules): a Role
    /// and RoleBinding `name` in `ns`, or with `cluster_wide` a ClusterRole and
    /// ClusterRoleBinding `<ns>-<name>`. Bindings take effect shortly after (a watch).
    pub async fn grant(
        &self,
        ns: &str,
        account: &str,
        name: &str,
        rules: Value,
        cluster_wide: bool,
    ) {
        use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
        let admin = self.admin_client().await;
        let (kind, name) = if cluster_wide {
            ("ClusterRole", format!("{ns}-{name}"))
        } else {
            ("Role", name.to_string())
        };
        let role = json!({"metadata": {"name": name}, "rules": rules});
        let binding = json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}]
        });
        let pp = PostParams::default();
        let created = if cluster_wide {
            let role: ClusterRole = serde_json::from_value(role).expect("ClusterRole json");
            let binding: ClusterRoleBinding =
                serde_json::from_value(binding).expect("ClusterRoleBinding json");
            Api::<ClusterRole>::all(admin.clone())
                .create(&pp, &role)
                .await
                .map(|_| ())
                .and(
                    Api::<ClusterRoleBinding>::all(admin)
                        .create(&pp, &binding)
                        .await
                        .map(|_| ()),
                )
        } else {
            let role: Role = serde_json::from_value(role).expect("Role json");
            let binding: RoleBinding = serde_json::from_value(binding).expect("RoleBinding json");
            Api::<Role>::namespaced(admin.clone(), ns)
                .create(&pp, &role)
                .await
                .map(|_| ())
                .and(
                    Api::<RoleBinding>::namespaced(admin, ns)
                        .create(&pp, &binding)
                        .await
                        .map(|_| ()),
                )
        };
        created.unwrap_or_else(|e| panic!("granting {account} the {kind} {name}: {e}"));
    }

    /// Appends `line` to the log every pod's `container` shows through `pods/log` (kwok serves it).
    pub fn append_pod_log(&self, container: &str, line: &str) {
        use std::io::Write;
        let path = self.dir.join("pod-logs").join(format!("{container}.log"));
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        writeln!(file, "2026-11-27T21:00:01.000000000Z stdout F {line}").expect("append log line");
    }

    /// A bearer token (valid for an hour) of ServiceAccount `namespace/name`, created if missing.
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> String {
        let admin = self.admin_client().await;
        let accounts: Api<ServiceAccount> = Api::namespaced(admin, namespace);
        if accounts
            .get_opt(name)
            .await
            .expect("get serviceaccount")
            .is_none()
        {
            let sa: ServiceAccount =
                serde_json::from_value(json!({"metadata": {"name": name}})).expect("sa json");
            accounts
                .create(&PostParams::default(), &sa)
                .await
                .expect("create serviceaccount");
        }
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..Default::default()
            }),
            ..Default::default()
        };
        accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .expect("token request")
            .status
            .expect("token status")
            .token
            .expect("token")
    }

    async fn config_from_kubeconfig(&self) -> Config {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("read kubeconfig");
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig to config")
    }

    /// Creates a fresh namespace named `<prefix>-<random>` and waits until its `default`
    /// ServiceAccount exists (pods are refused before that).
    pub async fn namespace(&self, prefix: &str) -> String {
        fresh_namespace(self.admin_client().await, prefix).await
    }

    /// Installs the CRDs shipped in `crds/` (once per control plane, by server-side apply) and
    /// waits until they are Established.
    pub async fn install_crds(&self) {
        self.crds_installed
            .get_or_init(|| async {
                apply_crds(self.admin_client().await).await;
            })
            .await;
    }

    /// `kubectl` from the test world, pointed at this control plane.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(binary("kubernetes", "kubectl"));
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()));
        cmd
    }

    /// The admin bearer token (for raw HTTP checks).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }
}

fn wait_port(what: &str, port: u16, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!(
                "{what} not listening on {port} after 60 s; log:\n{}",
                log_tail(log, 30)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Writes `contents` to `path`, the error naming the path.
pub fn write(path: &Path, contents: &str) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// `n` random bytes from the kernel, as hex.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A kubeconfig for `server` (CA file `ca`) authenticating with bearer `token`.
pub fn kubeconfig_yaml(server: &str, ca: &Path, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    \
         certificate-authority: {ca}\nusers:\n- name: admin\n  user:\n    token: {token}\n\
         contexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\n    \
         namespace: default\ncurrent-context: test\n",
        ca = ca.display()
    )
}

/// The port kwok serves the nodes' kubelet API on (the port kwok's nodes announce).
const KUBELET_PORT: u16 = 10250;

/// Containers whose logs kwok serves, each from `<dir>/pod-logs/<container>.log`.
pub const LOGGED_CONTAINERS: [&str; 2] = ["kubo", "cluster"];

/// Writes the kwok config that serves every pod's `kubo` and `cluster` container logs from one
/// file each (CRI log format, initially one line), and returns its path.
fn write_kwok_logs(dir: &Path) -> std::io::Result<PathBuf> {
    let logs = dir.join("pod-logs");
    std::fs::create_dir_all(&logs)?;
    let mut docs = Vec::new();
    for container in LOGGED_CONTAINERS {
        let file = logs.join(format!("{container}.log"));
        std::fs::write(
            &file,
            format!("2026-11-27T21:00:00.000000000Z stdout F {container} started\n"),
        )?;
        docs.push(format!(
            "apiVersion: kwok.x-k8s.io/v1alpha1\nkind: ClusterLogs\nmetadata:\n  name: {container}\n\
             spec:\n  logs:\n  - containers: [{container}]\n    logsFile: {}\n",
            file.display()
        ));
    }
    let path = dir.join("kwok-logs.yaml");
    std::fs::write(&path, docs.join("---\n"))?;
    Ok(path)
}

/// A CA, the apiserver's serving certificate (127.0.0.1, localhost, the in-cluster names and
/// `extra_names`) and the service-account signing key; returns the CA to sign more with.
pub fn write_pki(
    dir: &Path,
    extra_names: &[&str],
) -> Result<rcgen::Issuer<'static, rcgen::KeyPair>, String> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let err = |e: rcgen::Error| e.to_string();
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "ipfs-kit-operator test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca, ca_key);

    let server_key = KeyPair::generate().map_err(err)?;
    let mut names: Vec<String> = [
        "127.0.0.1",
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .iter()
    .chain(extra_names)
    .map(|n| n.to_string())
    .collect();
    names.dedup();
    let mut server = CertificateParams::new(names).map_err(err)?;
    server
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server.signed_by(&server_key, &issuer).map_err(err)?;

    let sa_key = KeyPair::generate().map_err(err)?;
    write(&dir.join("ca.crt"), &ca_cert.pem())?;
    write(&dir.join("apiserver.crt"), &server_cert.pem())?;
    write(&dir.join("apiserver.key"), &server_key.serialize_pem())?;
    write(&dir.join("sa.key"), &sa_key.serialize_pem())?;
    write(&dir.join("sa.pub"), &sa_key.public_key_pem())?;
    Ok(issuer)
}

/// Server-side applies the CRDs shipped in `crds/` and waits until they are Established.
pub async fn apply_crds(client: kube::Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, Patch, PatchParams};
    use kube::runtime::wait::{await_condition, conditions};
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    for file in ["ipfsclusters.ipfskit.io.yaml", "ipfspins.ipfskit.io.yaml"] {
        let text = std::fs::read_to_string(dir.join(file)).expect("read CRD file");
        let crd: CustomResourceDefinition = serde_yaml::from_str(&text).expect("CRD yaml");
        let name = crd.metadata.name.clone().expect("CRD name");
        crds.patch(
            &name,
            &PatchParams::apply("ipfs-kit-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("the API server refused crds/{file}: {e}"));
        tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("{name} not Established after 60 s"))
        .expect("watch CRD");
    }
}

/// Creates a namespace named `<prefix>-<random>` and waits until its `default` ServiceAccount
/// exists (pods are refused before that).
pub async fn fresh_namespace(client: Client, prefix: &str) -> String {
    let name = format!("{prefix}-{}", &random_hex(4));
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns json");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    let accounts: Api<ServiceAccount> = Api::namespaced(client, &name);
    wait_for(
        &format!("the default ServiceAccount of namespace {name}"),
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async { accounts.get_opt("default").await.ok().flatten() },
    )
    .await;
    name
}
