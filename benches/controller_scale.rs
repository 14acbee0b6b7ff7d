//! Controller scale: N IpfsClusters of one peer each on a loopback control plane of their own
//! (etcd, kube-apiserver, controller-manager, scheduler, kwok), reconciled by the operator's
//! release binary running as its own process (`ipfs-kit-operator run`, leader election on, the
//! default `--concurrency`), and the same work done by a plain client for comparison.
//!
//! Per size:
//! 1. hostPath PersistentVolumes for every claim, so the peers' pods are scheduled and kwok runs
//!    them (no containers: every probe of a pod IP is refused; probes at the default interval);
//! 2. the operator is started; the time runs from the first IpfsCluster created until every one
//!    is converged: `status.observedGeneration == metadata.generation` and its StatefulSet
//!    exists;
//! 3. once every pod is Running and a settle period has passed, the operator's CPU time
//!    (utime + stime from `/proc/<pid>/stat`) is measured over an idle period; its RSS and peak
//!    RSS (`VmRSS`, `VmHWM` from `/proc/<pid>/status`) are read at convergence and after the idle
//!    period;
//! 4. the operator is stopped, and the baseline runs in another namespace of the same API
//!    server: a client without any controller creates the same IpfsClusters and server-side
//!    applies, per cluster, the objects the operator applies (built by the operator's own
//!    builders: Secret, ConfigMap, Services, PodDisruptionBudget, NetworkPolicy, StatefulSet) and
//!    a status with `observedGeneration`, as many clusters at once as the operator's
//!    `--concurrency`.
//!
//! Prints a table and writes `<target>/bench/controller_scale.json`. Measures; asserts nothing.
//!
//! Run with `scripts/run-bench.sh --bench controller_scale` (it builds the release binary).
//! Settings (environment): `IPFS_KIT_BENCH_SIZES` (default `10,100`; `1000` takes about 15
//! minutes), `IPFS_KIT_BENCH_IDLE_SECS` (60), `IPFS_KIT_BENCH_SETTLE_SECS` (20),
//! `IPFS_KIT_BENCH_CONCURRENCY` (8, the operator's default), `IPFS_KIT_BENCH_OPERATOR` (the
//! binary; default `<target>/release/ipfs-kit-operator`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use ipfs_kit_operator::api::{IpfsCluster, IpfsClusterStatus};
use ipfs_kit_operator::runtime::kube::build;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde_json::{Value, json};
use support::clusters::{http_get, operator_command_of, provide_volumes};
use support::control_plane::{ControlPlane, random_hex};
use support::process::{Daemon, free_port};

/// Creates of IpfsClusters in flight at once (the benchmark's client, for both runs).
const CREATE_CONCURRENCY: usize = 32;
/// Field manager of the baseline's writes.
const BASELINE_MANAGER: &str = "ipfs-kit-bench-baseline";
/// Clock ticks per second in `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

struct Options {
    sizes: Vec<usize>,
    idle: Duration,
    settle: Duration,
    concurrency: usize,
    operator: PathBuf,
    out: PathBuf,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// The target directory: this benchmark runs as `<target>/<profile>/deps/controller_scale-*`.
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

impl Options {
    fn from_env() -> Options {
        let target = target_dir();
        let operator = std::env::var_os("IPFS_KIT_BENCH_OPERATOR")
            .map(PathBuf::from)
            .unwrap_or_else(|| target.join("release/ipfs-kit-operator"));
        assert!(
            operator.is_file(),
            "{} is missing: build it with `cargo build --release --bin ipfs-kit-operator` \
             (scripts/run-bench.sh does), or name it in IPFS_KIT_BENCH_OPERATOR",
            operator.display()
        );
        Options {
            sizes: std::env::var("IPFS_KIT_BENCH_SIZES")
                .unwrap_or_else(|_| "10,100".into())
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect(),
            idle: Duration::from_secs(env_or("IPFS_KIT_BENCH_IDLE_SECS", 60)),
            settle: Duration::from_secs(env_or("IPFS_KIT_BENCH_SETTLE_SECS", 20)),
            concurrency: env_or("IPFS_KIT_BENCH_CONCURRENCY", 8),
            operator,
            out: target.join("bench/controller_scale.json"),
        }
    }
}

/// What `/proc` says of a process at one moment.
#[derive(Clone, Copy, Debug, Default)]
struct ProcSample {
    rss_kib: u64,
    /// Of which anonymous (heap, stacks) and file-backed (mostly the binary's code).
    anon_kib: u64,
    file_kib: u64,
    hwm_kib: u64,
    cpu_ticks: u64,
}

impl ProcSample {
    fn of(pid: u32) -> ProcSample {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // After the command name (which ends with ')'): utime is the 12th field, stime the 13th.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| -> u64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0) };
        ProcSample {
            rss_kib: kib("VmRSS:"),
            anon_kib: kib("RssAnon:"),
            file_kib: kib("RssFile:"),
            hwm_kib: kib("VmHWM:"),
            cpu_ticks: ticks(11) + ticks(12),
        }
    }

    fn rss_mib(self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    fn hwm_mib(self) -> f64 {
        self.hwm_kib as f64 / 1024.0
    }

    /// CPU seconds from `earlier` to `self`.
    fn cpu_since(self, earlier: ProcSample) -> f64 {
        self.cpu_ticks.saturating_sub(earlier.cpu_ticks) as f64 / TICKS_PER_SECOND
    }
}

/// One size's figures (the JSON file holds one per size).
#[derive(Debug, Default, Serialize)]
struct Figures {
    clusters: usize,
    concurrency: usize,
    /// From the first create until every cluster converged (operator), in seconds.
    converged_secs: f64,
    /// The same for the baseline client.
    baseline_secs: f64,
    /// converged / baseline.
    ratio: f64,
    /// Until every peer pod is Running, from the first create.
    pods_running_secs: f64,
    operator_cpu_until_converged_secs: f64,
    rss_start_mib: f64,
    rss_converged_mib: f64,
    /// At the end of the idle period.
    rss_idle_mib: f64,
    /// Of which anonymous memory (heap, stacks) and file-backed pages (the binary's code).
    rss_idle_anon_mib: f64,
    rss_idle_file_mib: f64,
    peak_rss_mib: f64,
    idle_secs: f64,
    idle_cpu_secs: f64,
    idle_cpu_secs_per_min: f64,
    /// Idle CPU as a share of one core, in %.
    idle_core_percent: f64,
    /// IpfsCluster reconciles per minute while idle.
    idle_reconciles_per_min: f64,
    /// Pods replaced while idle (the health engine restarting a peer would show here).
    idle_pods_replaced: usize,
    reconcile_errors: u64,
}

/// A watch of `api` kept in a store by a task of its own (aborted with the handle).
fn watched<K>(api: Api<K>) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let task = tokio::spawn(
        watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .for_each(|_| async {}),
    );
    (store, task)
}

/// Polls `check` every 100 ms until it holds, at most `timeout`; whether it held.
async fn until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !check() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

/// IpfsCluster `c<i>`: one peer, both volumes in `class`, the default probe settings. Healing
/// is off: the peers never answer (kwok runs no containers), and restarting them once their
/// start grace is over would make the idle period anything but idle.
fn cluster_object(i: usize, class: &str) -> IpfsCluster {
    serde_json::from_value(json!({
        "apiVersion": "ipfskit.io/v1alpha1",
        "kind": "IpfsCluster",
        "metadata": {"name": format!("c{i}")},
        "spec": {
            "replicas": 1,
            "kubo": {"storage": {"size": "1Gi", "storageClassName": class}},
            "cluster": {"storage": {"size": "1Gi", "storageClassName": class}},
            "health": {"autoHeal": false}
        }
    }))
    .expect("cluster json")
}

/// Creates IpfsCluster `c<i>` (retrying while the API server is too busy); as created.
async fn create_cluster(api: &Api<IpfsCluster>, i: usize, class: &str) -> Option<IpfsCluster> {
    let object = cluster_object(i, class);
    for _ in 0..20 {
        match api.create(&PostParams::default(), &object).await {
            Ok(created) => return Some(created),
            Err(e) => {
                eprintln!("creating c{i}: {e}; again in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    None
}

/// The operator's `ipfs_kit_<name>` counter (summed over its labels) from its `/metrics`.
fn counter(port: u16, name: &str) -> u64 {
    let text = http_get(port, "/metrics").unwrap_or_default();
    let series = format!("ipfs_kit_{name}_total");
    text.lines()
        .filter(|l| l.starts_with(&series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Every Running pod with an IP, by name: its uid.
fn running_pods(pods: &Store<Pod>) -> std::collections::HashMap<String, String> {
    pods.state()
        .iter()
        .filter(|p| {
            let status = p.status.as_ref();
            p.metadata.deletion_timestamp.is_none()
                && status.and_then(|s| s.phase.as_deref()) == Some("Running")
                && status.and_then(|s| s.pod_ip.as_ref()).is_some()
        })
        .map(|p| (p.name_any(), p.metadata.uid.clone().unwrap_or_default()))
        .collect()
}

/// Starts the operator for `ns`; waits until it leads. The process and its metrics port.
async fn start_operator(cp: &ControlPlane, ns: &str, opts: &Options) -> (Daemon, u16) {
    let port = free_port();
    let mut cmd = operator_command_of(
        &opts.operator,
        cp,
        ns,
        "bench",
        &format!("127.0.0.1:{port}"),
    );
    cmd.args(["--concurrency", &opts.concurrency.to_string()]);
    let mut operator =
        Daemon::spawn(&format!("operator-{ns}"), cmd, &cp.dir.join("logs")).expect("operator");
    let leads = until(Duration::from_secs(60), || {
        operator.assert_running();
        http_get(port, "/metrics").is_some_and(|m| m.lines().any(|l| l == "ipfs_kit_leader 1"))
    })
    .await;
    assert!(
        leads,
        "the operator did not lead within 60 s; log:\n{}",
        operator.log_tail(30)
    );
    (operator, port)
}

/// The operator run: converge, pods Running, settle, idle. Fills in the operator's figures.
async fn operator_run(cp: &ControlPlane, client: &Client, size: usize, opts: &Options) -> Figures {
    let ns = cp.namespace("scale-op").await;
    let class = provide_volumes(client, &ns, 2 * size).await;
    let (clusters, t1) = watched(Api::<IpfsCluster>::namespaced(client.clone(), &ns));
    let (pods, t2) = watched(Api::<Pod>::namespaced(client.clone(), &ns));
    // Metadata only: all the convergence check reads of a StatefulSet is that it exists.
    let (statefulsets, t3) = watched(Api::<PartialObjectMeta<StatefulSet>>::namespaced(
        client.clone(),
        &ns,
    ));
    let (mut operator, port) = start_operator(cp, &ns, opts).await;
    let pid = operator.pid();
    let start = ProcSample::of(pid);
    let api: Api<IpfsCluster> = Api::namespaced(client.clone(), &ns);
    let started = Instant::now();
    futures::stream::iter(0..size)
        .for_each_concurrent(CREATE_CONCURRENCY, |i| {
            let (api, class) = (api.clone(), class.clone());
            async move {
                create_cluster(&api, i, &class).await;
            }
        })
        .await;
    let converged = until(Duration::from_secs(1800), || {
        let done = clusters
            .state()
            .iter()
            .filter(|c| {
                c.status.as_ref().and_then(|s| s.observed_generation) == c.metadata.generation
            })
            .count();
        done == size && statefulsets.state().len() == size
    })
    .await;
    assert!(converged, "{size} clusters did not converge within 30 min");
    let converged_secs = started.elapsed().as_secs_f64();
    let at_convergence = ProcSample::of(pid);
    eprintln!(
        "{size} clusters converged in {converged_secs:.1} s ({:.1} MiB)",
        at_convergence.rss_mib()
    );
    let running = until(Duration::from_secs(1800), || {
        running_pods(&pods).len() == size
    })
    .await;
    assert!(running, "{size} pods not Running within 30 min");
    let pods_running_secs = started.elapsed().as_secs_f64();
    eprintln!("{size} pods Running after {pods_running_secs:.1} s; idle period next");
    tokio::time::sleep(opts.settle).await;
    let (idle, replaced) = idle_period(pid, port, &pods, opts.idle).await;
    operator.assert_running();
    let errors = counter(port, "reconcile_errors");
    operator.stop(Duration::from_secs(10));
    for t in [t1, t2, t3] {
        t.abort();
    }
    Figures {
        clusters: size,
        concurrency: opts.concurrency,
        converged_secs,
        pods_running_secs,
        operator_cpu_until_converged_secs: at_convergence.cpu_since(start),
        rss_start_mib: start.rss_mib(),
        rss_converged_mib: at_convergence.rss_mib(),
        idle_pods_replaced: replaced,
        reconcile_errors: errors,
        ..idle
    }
}

/// The idle figures of the operator (`pid`, metrics on `port`) over `idle`, and how many pods
/// were replaced meanwhile.
async fn idle_period(pid: u32, port: u16, pods: &Store<Pod>, idle: Duration) -> (Figures, usize) {
    let before_pods = running_pods(pods);
    let reconciles = counter(port, "reconciles");
    let before = ProcSample::of(pid);
    let began = Instant::now();
    tokio::time::sleep(idle).await;
    let after = ProcSample::of(pid);
    let secs = began.elapsed().as_secs_f64();
    let reconciles = counter(port, "reconciles").saturating_sub(reconciles);
    let after_pods = running_pods(pods);
    let replaced = before_pods
        .iter()
        .filter(|(name, uid)| after_pods.get(*name) != Some(*uid))
        .count();
    let cpu = after.cpu_since(before);
    let figures = Figures {
        rss_idle_mib: after.rss_mib(),
        rss_idle_anon_mib: after.anon_kib as f64 / 1024.0,
        rss_idle_file_mib: after.file_kib as f64 / 1024.0,
        peak_rss_mib: after.hwm_mib(),
        idle_secs: secs,
        idle_cpu_secs: cpu,
        idle_cpu_secs_per_min: cpu * 60.0 / secs,
        idle_core_percent: cpu * 100.0 / secs,
        idle_reconciles_per_min: reconciles as f64 * 60.0 / secs,
        ..Figures::default()
    };
    (figures, replaced)
}

/// Server-side applies `object` with the baseline's field manager.
async fn apply<K>(client: &Client, ns: &str, object: &K)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let pp = PatchParams::apply(BASELINE_MANAGER).force();
    let name = object.name_any();
    if let Err(e) = api.patch(&name, &pp, &Patch::Apply(object)).await {
        panic!("baseline: applying {} {name}: {e}", K::kind(&()));
    }
}

/// What the operator writes for one new cluster, done by a plain client: the owned objects from
/// the operator's builders, then the status saying the generation was observed.
async fn baseline_cluster(client: &Client, ns: &str, cluster: IpfsCluster) {
    let children = build::children(&cluster, &build::Environment::default()).expect("children");
    let secret = build::generated_secret(&cluster, &children.names, &random_hex(32))
        .expect("generated secret");
    apply::<Secret>(client, ns, &secret).await;
    let build::Children {
        names,
        config_map,
        statefulset,
        headless_service,
        api_service,
        peer_services,
        gateway_service,
        pdb,
        network_policy,
    } = children;
    apply::<ConfigMap>(client, ns, &config_map).await;
    let services = [headless_service, api_service]
        .into_iter()
        .chain(peer_services)
        .chain(gateway_service);
    for svc in services {
        apply::<Service>(client, ns, &svc).await;
    }
    apply::<PodDisruptionBudget>(client, ns, &pdb).await;
    apply::<NetworkPolicy>(client, ns, &network_policy).await;
    apply::<StatefulSet>(client, ns, &statefulset).await;
    let status = IpfsClusterStatus {
        observed_generation: cluster.metadata.generation,
        ..IpfsClusterStatus::default()
    };
    let patch: Value = json!({
        "apiVersion": "ipfskit.io/v1alpha1",
        "kind": "IpfsCluster",
        "status": status
    });
    let api: Api<IpfsCluster> = Api::namespaced(client.clone(), ns);
    let pp = PatchParams::apply(BASELINE_MANAGER).force();
    if let Err(e) = api
        .patch_status(&names.cluster, &pp, &Patch::Apply(&patch))
        .await
    {
        panic!("baseline: status of {}: {e}", names.cluster);
    }
}

/// The baseline: the same clusters created, their objects applied by a plain client at the
/// operator's concurrency. Its time from the first create to the last write.
async fn baseline_run(cp: &ControlPlane, client: &Client, size: usize, opts: &Options) -> f64 {
    let ns = cp.namespace("scale-base").await;
    let class = provide_volumes(client, &ns, 2 * size).await;
    let api: Api<IpfsCluster> = Api::namespaced(client.clone(), &ns);
    let started = Instant::now();
    futures::stream::iter(0..size)
        .map(|i| {
            let (api, class) = (api.clone(), class.clone());
            async move { create_cluster(&api, i, &class).await }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .filter_map(|c| async move { c })
        .for_each_concurrent(opts.concurrency, |c| baseline_cluster(client, &ns, c))
        .await;
    started.elapsed().as_secs_f64()
}

fn print_table(all: &[Figures]) {
    println!(
        "\n| IpfsClusters | converged | baseline | ratio | RSS converged | RSS idle (anon + file) | \
         peak RSS | idle CPU-s/min | % of a core |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for f in all {
        println!(
            "| {} | {:.1} s | {:.1} s | {:.2} | {:.1} MiB | {:.1} MiB ({:.1} + {:.1}) | {:.1} MiB | \
             {:.2} | {:.2} % |",
            f.clusters,
            f.converged_secs,
            f.baseline_secs,
            f.ratio,
            f.rss_converged_mib,
            f.rss_idle_mib,
            f.rss_idle_anon_mib,
            f.rss_idle_file_mib,
            f.peak_rss_mib,
            f.idle_cpu_secs_per_min,
            f.idle_core_percent
        );
    }
}

fn write_json(opts: &Options, all: &[Figures]) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let report = json!({
        "benchmark": "controller_scale",
        "operator": opts.operator.display().to_string(),
        "cores": std::thread::available_parallelism().map_or(0, usize::from),
        "load_average_at_end": load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        "idle_secs": opts.idle.as_secs(),
        "settle_secs": opts.settle.as_secs(),
        "results": all,
    });
    if let Some(dir) = opts.out.parent() {
        std::fs::create_dir_all(dir).expect("bench output directory");
    }
    let text = serde_json::to_string_pretty(&report).expect("json");
    std::fs::write(&opts.out, text + "\n").expect("write the results");
}

fn main() {
    let opts = Options::from_env();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let mut all = Vec::new();
    for &size in &opts.sizes {
        // A control plane of its own per size: no size pays for the objects of the one before.
        let cp = ControlPlane::start_private();
        let figures = runtime.block_on(async {
            cp.install_crds().await;
            let client = cp.admin_client().await;
            let mut figures = operator_run(&cp, &client, size, &opts).await;
            figures.baseline_secs = baseline_run(&cp, &client, size, &opts).await;
            figures.ratio = figures.converged_secs / figures.baseline_secs.max(f64::EPSILON);
            figures
        });
        eprintln!("{size} clusters: {figures:?}");
        all.push(figures);
        write_json(&opts, &all);
        drop(cp);
    }
    print_table(&all);
    println!("\nwritten to {}", opts.out.display());
}
