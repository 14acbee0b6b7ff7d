//! `ipfs-kit-operator local up|down|status` with real Kubo and IPFS Cluster daemons: what a user
//! of the local runtime notices.
//!
//! The tests of this file (and of `local/parity.rs`: raft, scale-up trust) run one at a time (they share the preferred ports 4001-9200 of the
//! network namespace they run in), each in its own state directory.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use ipfs_kit_operator::probe::report::ProcessState;
use ipfs_kit_operator::probe::{DEFAULT_CONCURRENCY, Endpoint, PeerTarget, Prober};
use ipfs_kit_operator::runtime::local::LocalStatus;
use ipfs_kit_operator::runtime::local::process;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::sync::{Mutex, MutexGuard};

use crate::support::process::log_tail;
use crate::support::tools::binary;
use crate::support::wait_for;

mod alerts;
mod hang;
mod history;
mod parity;
mod prometheus;
mod requests;
mod split;
mod storage;
mod toolkit;

/// One local-runtime test at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

const OPERATOR: &str = env!("CARGO_BIN_EXE_ipfs-kit-operator");

/// A local cluster under test: its state directory, spec file and (foreground) supervisor.
/// Dropping it stops the supervisor and every daemon it started.
struct Local {
    dir: tempfile::TempDir,
    name: String,
    supervisor: Option<std::process::Child>,
    supervisor_log: PathBuf,
    _serial: MutexGuard<'static, ()>,
}

impl Local {
    async fn new(name: &str, replicas: u32) -> Local {
        let serial = SERIAL.lock().await;
        let dir = tempfile::Builder::new()
            .prefix("ipfs-kit-local-")
            .tempdir()
            .expect("tempdir");
        let local = Local {
            supervisor_log: dir.path().join("supervisor.log"),
            dir,
            name: name.to_owned(),
            supervisor: None,
            _serial: serial,
        };
        local.write_spec(replicas);
        local
    }

    fn spec_file(&self) -> PathBuf {
        self.dir.path().join("cluster.yaml")
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn cluster_dir(&self) -> PathBuf {
        self.state_dir().join(&self.name)
    }

    /// A spec with the default health settings (probe every 10 s, 5 s timeout).
    fn write_spec_default(&self, replicas: u32) {
        let yaml = format!(
            "apiVersion: ipfskit.io/v1alpha1\nkind: IpfsCluster\nmetadata:\n  name: {}\nspec:\n  \
             replicas: {replicas}\n",
            self.name
        );
        std::fs::write(self.spec_file(), yaml).expect("write spec");
    }

    fn write_spec(&self, replicas: u32) {
        self.write_spec_with(replicas, "");
    }

    /// A spec probing every 2 s; `health` adds lines to `spec.health` (4-space indented).
    fn write_spec_with(&self, replicas: u32, health: &str) {
        let yaml = format!(
            "apiVersion: ipfskit.io/v1alpha1\nkind: IpfsCluster\nmetadata:\n  name: {}\nspec:\n  \
             replicas: {replicas}\n  health:\n    probeInterval: 2s\n    probeTimeout: 1s\n{health}",
            self.name
        );
        std::fs::write(self.spec_file(), yaml).expect("write spec");
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(OPERATOR);
        cmd.args(args)
            .arg("--state-dir")
            .arg(self.state_dir())
            .env("IPFS_KIT_IPFS_BIN", binary("kubo", "ipfs"))
            .env(
                "IPFS_KIT_CLUSTER_BIN",
                binary("ipfs-cluster", "ipfs-cluster-service"),
            )
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a `local` subcommand to its end; returns stdout, fails with stderr.
    async fn run(&self, args: &[&str]) -> String {
        let out = tokio::process::Command::from(self.command(args))
            .output()
            .await
            .expect("run operator");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "`ipfs-kit-operator {}` failed ({}):\n{stderr}",
            args.join(" "),
            out.status
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `local up --detach`: brings the peers up (or adopts them) and returns.
    async fn up_detached(&self) -> String {
        let spec = self.spec_file();
        let spec = spec.to_str().expect("utf-8 path");
        let out = tokio::process::Command::from(self.command(&[
            "local",
            "up",
            "--detach",
            "--dashboard-listen",
            "127.0.0.1:0",
            "-f",
            spec,
        ]))
        .output()
        .await
        .expect("run operator");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "local up failed ({}):\n{stderr}",
            out.status
        );
        stderr
    }

    /// `local up` in the foreground: the supervisor keeps running.
    fn up_foreground(&mut self) {
        self.up_foreground_with(&[]);
    }

    /// `local up` in the foreground with extra flags (e.g. `--isolated`).
    fn up_foreground_with(&mut self, extra: &[&str]) {
        let spec = self.spec_file();
        let log = std::fs::File::create(&self.supervisor_log).expect("supervisor log");
        let err = log.try_clone().expect("clone log");
        let mut args = vec!["local", "up", "--dashboard-listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        args.extend(["-f", spec.to_str().expect("utf-8 path")]);
        let child = self
            .command(&args)
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("start supervisor");
        self.supervisor = Some(child);
    }

    fn supervisor_output(&self) -> String {
        log_tail(&self.supervisor_log, 60)
    }

    /// The in-process dashboard's `http://127.0.0.1:PORT` (`--dashboard-listen 127.0.0.1:0`: the
    /// supervisor logs where it listens).
    async fn dashboard_base(&self) -> String {
        wait_for(
            "the dashboard address in the supervisor's log",
            Duration::from_secs(30),
            Duration::from_millis(200),
            || async {
                let log = self.supervisor_output();
                let at = log.find("dashboard on http://")? + "dashboard on ".len();
                let end = log[at..].find(char::is_whitespace)?;
                Some(log[at..at + end].trim_end_matches('/').to_string())
            },
        )
        .await
    }

    async fn status(&self) -> LocalStatus {
        let out = self
            .run(&["local", "status", &self.name, "--output", "json"])
            .await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("status JSON: {e}: {out}"))
    }

    /// The status, or `None` while the cluster has no state yet (a supervisor just started).
    async fn try_status(&self) -> Option<LocalStatus> {
        if !self.cluster_dir().join("state.json").is_file() {
            return None;
        }
        Some(self.status().await)
    }

    /// Waits until every peer runs and its cluster daemon sees `n` peers, its Kubo `n - 1`.
    async fn wait_converged(&self, n: usize) -> LocalStatus {
        let log = self.supervisor_log.clone();
        let result = tokio::time::timeout(
            Duration::from_secs(150),
            wait_for(
                &format!("{n} peers that all see each other"),
                Duration::from_secs(150),
                Duration::from_millis(1000),
                || async {
                    let s = self.try_status().await?;
                    let ok = s.peers.len() == n
                        && s.peers.iter().all(|p| {
                            let seen = s.peer(&p.name);
                            p.kubo_pid.is_some()
                                && p.cluster_pid.is_some()
                                && seen.is_some_and(|r| r.cluster_peers_seen == Some(n as i32))
                                && seen
                                    .and_then(|r| r.swarm_peers)
                                    .is_some_and(|c| c + 1 >= n as i32)
                        });
                    ok.then_some(s)
                },
            ),
        )
        .await;
        match result {
            Ok(s) => s,
            Err(_) => panic!("not converged; supervisor:\n{}", log_tail(&log, 60)),
        }
    }

    /// Waits until the cluster reports `cid` pinned on all `n` peers.
    async fn wait_pinned(&self, cid: &str, n: usize) {
        self.wait_pinned_within(cid, n, Duration::from_secs(60))
            .await;
    }

    async fn wait_pinned_within(&self, cid: &str, n: usize, timeout: Duration) {
        let http = http();
        wait_for(
            &format!("{cid} pinned on {n} peers"),
            timeout,
            Duration::from_millis(500),
            || async {
                let s = self.try_status().await?;
                let rest = s.peers[0].ports?.cluster_rest;
                let text = http
                    .get(format!("http://127.0.0.1:{rest}/pins/{cid}"))
                    .send()
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                let v: Value = serde_json::from_str(text.lines().next()?).ok()?;
                let map = v["peer_map"].as_object()?;
                (map.len() == n && map.values().all(|p| p["status"] == "pinned")).then_some(())
            },
        )
        .await;
    }

    fn pids(status: &LocalStatus) -> BTreeSet<i32> {
        status
            .peers
            .iter()
            .flat_map(|p| [p.kubo_pid, p.cluster_pid])
            .flatten()
            .collect()
    }

    /// PIDs of live daemons whose command line names this cluster's state directory.
    fn daemons_on_host(&self) -> BTreeSet<i32> {
        let marker = self.cluster_dir().display().to_string();
        std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| process::is_alive(*pid))
            .filter(|pid| process::cmdline(*pid).is_some_and(|c| c.contains(&marker)))
            .collect()
    }

    async fn stop_supervisor(&mut self) {
        if let Some(mut child) = self.supervisor.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let waited = tokio::time::timeout(Duration::from_secs(60), async {
                loop {
                    if let Ok(Some(status)) = child.try_wait() {
                        return status;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await;
            assert!(
                waited.is_ok_and(|s| s.success()),
                "the supervisor did not stop cleanly on SIGTERM:\n{}",
                self.supervisor_output()
            );
        }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(mut child) = self.supervisor.take() {
            crate::support::process::terminate(&mut child, Duration::from_secs(60));
        }
        if self.cluster_dir().join("state.json").exists() {
            let _ = self.command(&["local", "down", &self.name]).output();
        }
    }
}

fn targets(status: &LocalStatus) -> Vec<PeerTarget> {
    status
        .peers
        .iter()
        .map(|p| {
            let ports = p.ports.expect("ports");
            PeerTarget {
                peer: p.name.clone(),
                kubo: Endpoint::new(format!("http://127.0.0.1:{}", ports.kubo_api)),
                cluster: Endpoint::new(format!("http://127.0.0.1:{}", ports.cluster_rest)),
                kubo_process: ProcessState::Running,
                cluster_process: ProcessState::Running,
            }
        })
        .collect()
}

/// Stores a block on peer 0's Kubo and pins it through peer 0's cluster API; returns the CID.
async fn pin_block(status: &LocalStatus, data: &[u8]) -> String {
    pin_block_via(status, 0, data).await
}

/// Stores `data` as a raw block on the Kubo of RPC port `kubo_api` (pinned in Kubo if `pin`);
/// returns its CID.
async fn put_block(kubo_api: u16, data: &[u8], pin: bool) -> String {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(data.to_vec()).file_name("data"),
    );
    let added: Value = http()
        .post(format!(
            "http://127.0.0.1:{kubo_api}/api/v0/block/put?cid-codec=raw&pin={pin}"
        ))
        .multipart(form)
        .send()
        .await
        .expect("block/put")
        .json()
        .await
        .expect("block/put json");
    added["Key"].as_str().expect("Key").to_owned()
}

/// Stores a block on peer `index`'s Kubo and pins it through that peer's cluster API.
async fn pin_block_via(status: &LocalStatus, index: usize, data: &[u8]) -> String {
    let http = http();
    let ports = status.peers[index].ports.expect("ports");
    let cid = put_block(ports.kubo_api, data, false).await;
    let resp = http
        .post(format!(
            "http://127.0.0.1:{}/pins/{cid}",
            ports.cluster_rest
        ))
        .send()
        .await
        .expect("POST /pins");
    assert!(resp.status().is_success(), "POST /pins: {}", resp.status());
    cid
}

fn http() -> reqwest::Client {
    ipfs_kit_operator::tls::ensure_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .expect("http client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_up_runs_three_peers_that_see_each_other_and_down_keeps_their_data() {
    let mut local = Local::new("three", 3).await;
    local.up_foreground();
    let status = local.wait_converged(3).await;
    assert_eq!(
        status.supervisor_pid,
        local.supervisor.as_ref().map(|c| c.id() as i32)
    );
    assert_eq!(Local::pids(&status).len(), 6, "{status:?}");
    assert_eq!(local.daemons_on_host(), Local::pids(&status));

    // The probes agree: every cluster peer lists the three, every Kubo knows the two others.
    let prober = Prober::new(Duration::from_secs(5)).expect("prober");
    let reports = prober.round(&targets(&status), DEFAULT_CONCURRENCY).await;
    let cluster_ids: BTreeSet<String> = status
        .peers
        .iter()
        .map(|p| p.cluster_peer_id.clone())
        .collect();
    for (report, peer) in reports.iter().zip(&status.peers) {
        let kubo = report.kubo.as_ref().expect("Kubo answers");
        assert_eq!(kubo.peer_id, peer.kubo_peer_id);
        for other in status.peers.iter().filter(|o| o.name != peer.name) {
            assert!(kubo.swarm_peers.contains(&other.kubo_peer_id), "{kubo:?}");
        }
        let cluster = report.cluster.as_ref().expect("cluster answers");
        let seen: BTreeSet<String> = cluster.peers_seen.iter().cloned().collect();
        assert_eq!(seen, cluster_ids, "{} sees {seen:?}", peer.name);
        assert_eq!(cluster.peername, peer.name);
        assert_eq!(cluster.ipfs_error, None);
    }

    // A pin added through peer 0's cluster API ends up pinned on all three.
    let http = http();
    let kubo0 = format!(
        "http://127.0.0.1:{}",
        status.peers[0].ports.expect("ports").kubo_api
    );
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"local runtime pin".to_vec()).file_name("data"),
    );
    let added: Value = http
        .post(format!("{kubo0}/api/v0/block/put?cid-codec=raw"))
        .multipart(form)
        .send()
        .await
        .expect("block/put")
        .json()
        .await
        .expect("block/put json");
    let cid = added["Key"].as_str().expect("Key").to_owned();
    let rest0 = format!(
        "http://127.0.0.1:{}",
        status.peers[0].ports.expect("ports").cluster_rest
    );
    let resp = http
        .post(format!("{rest0}/pins/{cid}"))
        .send()
        .await
        .expect("POST /pins");
    assert!(resp.status().is_success(), "POST /pins: {}", resp.status());
    wait_for(
        "the pin on all three peers",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let s = local.status().await;
            s.status
                .peers
                .iter()
                .all(|p| p.pins_pinned == Some(1))
                .then_some(())
        },
    )
    .await;

    // The table says the same in words.
    let table = local.run(&["local", "status", "three"]).await;
    for p in &status.peers {
        assert!(table.contains(&p.name), "{table}");
    }
    assert!(
        table.contains("PEER") && table.contains("RESTARTS"),
        "{table}"
    );

    // `local down` stops the supervisor and every daemon; the data stays.
    local.run(&["local", "down", "three"]).await;
    let status_code = local
        .supervisor
        .as_mut()
        .expect("supervisor")
        .wait()
        .expect("wait");
    assert!(status_code.success(), "{}", local.supervisor_output());
    local.supervisor = None;
    assert!(
        local.daemons_on_host().is_empty(),
        "daemons left: {:?}",
        local.daemons_on_host()
    );
    for i in 0..3 {
        let peer = local.cluster_dir().join(format!("peer-{i}"));
        assert!(peer.join("ipfs/config").is_file(), "{}", peer.display());
        assert!(peer.join("cluster/identity.json").is_file());
        assert!(peer.join("logs/kubo.log").is_file());
        assert!(!peer.join("kubo.pid").exists());
    }
    let stopped = local.status().await;
    assert!(
        stopped.peers.iter().all(|p| p.stopped())
            && stopped.status.phase == Some(ipfs_kit_operator::api::ClusterPhase::Pending),
        "{stopped:?}"
    );

    // `--purge --yes` deletes it.
    local
        .run(&["local", "down", "three", "--purge", "--yes"])
        .await;
    assert!(!local.cluster_dir().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_kubo_is_noticed_at_once_and_restarted_with_a_reason() {
    let mut local = Local::new("heal", 2).await;
    local.up_foreground();
    let before = local.wait_converged(2).await;
    let cid = pin_block(&before, b"kept across kill -9").await;
    local.wait_pinned(&cid, 2).await;
    let victim = before.peers[1].kubo_pid.expect("kubo pid");
    kill(Pid::from_raw(victim), Signal::SIGKILL).expect("kill -9");

    let log = local.supervisor_log.clone();
    let healed = tokio::time::timeout(
        Duration::from_secs(60),
        wait_for(
            "peer-1's Kubo to be restarted",
            Duration::from_secs(60),
            Duration::from_millis(250),
            || async {
                let s = local.try_status().await?;
                let p = &s.peers[1];
                let reported = s.peer(&p.name)?;
                // restarts == 1: a snapshot taken after the restart, not one from before the kill.
                (p.kubo_pid.is_some_and(|pid| pid != victim)
                    && reported.restarts == 1
                    && reported.kubo_version.is_some())
                .then_some(s)
            },
        ),
    )
    .await
    .unwrap_or_else(|_| panic!("not healed; supervisor:\n{}", log_tail(&log, 60)));
    assert_eq!(healed.status.peers[1].restarts, 1, "{healed:?}");
    assert_eq!(
        healed.peers[1].cluster_pid, before.peers[1].cluster_pid,
        "only the daemon that failed is restarted"
    );
    assert_eq!(healed.peers[0].kubo_pid, before.peers[0].kubo_pid);
    let entry = healed
        .status
        .healing
        .iter()
        .find(|e| e.peer == "peer-1")
        .unwrap_or_else(|| panic!("no healing entry: {healed:?}"));
    assert!(!entry.reason.is_empty());
    let output = local.supervisor_output();
    assert!(
        output.contains("signal: 9") || output.contains("SIGKILL"),
        "{output}"
    );
    // No pin lost: the restarted Kubo still holds it.
    let kubo1 = format!(
        "http://127.0.0.1:{}",
        healed.peers[1].ports.expect("ports").kubo_api
    );
    let pins: Value = http()
        .post(format!("{kubo1}/api/v0/pin/ls"))
        .query(&[("arg", cid.as_str()), ("type", "recursive")])
        .send()
        .await
        .expect("pin/ls")
        .json()
        .await
        .expect("pin/ls json");
    assert!(pins["Keys"][&cid].is_object(), "{pins}");
    local.stop_supervisor().await;
    assert!(local.daemons_on_host().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pid_file_naming_someone_elses_process_is_never_signalled() {
    let local = Local::new("foreign", 1).await;
    local.up_detached().await;
    local.run(&["local", "down", "foreign"]).await;

    // Someone else's process, and a PID file of ours that names it.
    let mut sleeper = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("sleep");
    let pid = sleeper.id() as i32;
    let (start, _) = process::stat(pid).expect("stat");
    let peer = local.cluster_dir().join("peer-0");
    let record = process::PidRecord {
        pid,
        start_time: start,
        marker: peer.join("ipfs").display().to_string(),
    };
    std::fs::write(
        peer.join("kubo.pid"),
        serde_json::to_vec(&record).expect("json"),
    )
    .expect("pid file");

    let output = local.up_detached().await;
    assert!(output.contains("not ours"), "{output}");
    assert!(
        matches!(sleeper.try_wait(), Ok(None)),
        "the sleep was touched"
    );
    let status = local.status().await;
    assert!(status.peers[0].kubo_pid.is_some_and(|p| p != pid));

    local.run(&["local", "down", "foreign"]).await;
    assert!(local.daemons_on_host().is_empty());

    // `local down` with foreign PID files in place leaves their process alone too.
    for file in ["kubo.pid", "cluster.pid"] {
        std::fs::write(peer.join(file), serde_json::to_vec(&record).expect("json"))
            .expect("pid file");
    }
    let output = local.run(&["local", "down", "foreign"]).await;
    assert!(
        matches!(sleeper.try_wait(), Ok(None)),
        "the sleep was touched: {output}"
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_preferred_port_moves_the_peer_and_leaves_the_holder_alone() {
    let local = Local::new("ports", 1).await;
    let holder = std::net::TcpListener::bind("127.0.0.1:5001").expect("hold 5001");
    let output = local.up_detached().await;
    assert!(output.contains("port 5001 is in use"), "{output}");
    let status = local.status().await;
    let ports = status.peers[0].ports.expect("ports");
    assert_ne!(ports.kubo_api, 5001);
    assert!(status.status.peers[0].kubo_version.is_some(), "{status:?}");
    // The holder still holds its port and still accepts connections.
    let _client = std::net::TcpStream::connect("127.0.0.1:5001").expect("connect");
    let (_conn, _) = holder.accept().expect("holder accepts");
    // The choice is recorded and kept across restarts.
    local.run(&["local", "down", "ports"]).await;
    local.up_detached().await;
    let again = local.status().await;
    assert_eq!(again.peers[0].ports, Some(ports));
    local.run(&["local", "down", "ports"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_up_again_adopts_running_daemons_even_after_the_supervisor_was_killed() {
    let mut local = Local::new("adopt", 2).await;
    local.up_detached().await;
    let first = local.wait_converged(2).await;
    let pids = Local::pids(&first);
    assert_eq!(pids.len(), 4);

    // A second `local up` adopts instead of starting duplicates.
    let output = local.up_detached().await;
    assert!(output.contains("adopting"), "{output}");
    let second = local.status().await;
    assert_eq!(Local::pids(&second), pids);
    assert_eq!(local.daemons_on_host(), pids, "no duplicate daemons");

    // A foreground supervisor adopts them too; SIGKILLed, it leaves them running; the next one
    // adopts them again, with the same peer ids.
    local.up_foreground();
    wait_for(
        "the supervisor to adopt the peers",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async {
            local
                .supervisor_output()
                .contains("supervising")
                .then_some(())
        },
    )
    .await;
    let mut supervisor = local.supervisor.take().expect("supervisor");
    supervisor.kill().expect("kill -9 the supervisor");
    supervisor.wait().expect("reap");
    assert_eq!(
        local.daemons_on_host(),
        pids,
        "daemons survive the supervisor"
    );
    local.up_foreground();
    wait_for(
        "the new supervisor to adopt the peers",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async {
            local
                .supervisor_output()
                .contains("supervising")
                .then_some(())
        },
    )
    .await;
    let third = local.status().await;
    assert_eq!(Local::pids(&third), pids);
    for (a, b) in first.peers.iter().zip(&third.peers) {
        assert_eq!(a.kubo_peer_id, b.kubo_peer_id);
        assert_eq!(a.cluster_peer_id, b.cluster_peer_id);
    }
    assert_eq!(local.daemons_on_host(), pids);
    local.stop_supervisor().await;
    assert!(local.daemons_on_host().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_spec_scales_three_to_four_and_back() {
    let local = Local::new("scale", 3).await;
    local.up_detached().await;
    let three = local.wait_converged(3).await;
    let cid = pin_block(&three, b"kept across scaling").await;
    local.wait_pinned(&cid, 3).await;

    local.write_spec(4);
    local.up_detached().await;
    let four = local.wait_converged(4).await;
    // The new peer joins the pin set (it learns the shared state at the next CRDT rebroadcast,
    // every minute by default): the pin is on all four.
    local
        .wait_pinned_within(&cid, 4, Duration::from_secs(150))
        .await;
    for (a, b) in three.peers.iter().zip(&four.peers) {
        assert_eq!(a.kubo_pid, b.kubo_pid, "{} kept running", a.name);
        assert_eq!(a.cluster_pid, b.cluster_pid, "{} kept running", a.name);
    }
    assert_eq!(four.generation, three.generation + 1);

    local.write_spec(3);
    let output = local.up_detached().await;
    assert!(output.contains("DELETE /peers/"), "{output}");
    let back = local.wait_converged(3).await;
    assert_eq!(Local::pids(&back), Local::pids(&three));
    local.wait_pinned(&cid, 3).await;
    assert!(
        local.cluster_dir().join("peer-3/ipfs/config").is_file(),
        "data kept"
    );
    local.run(&["local", "down", "scale"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_kubo_is_caught_by_probes_and_restarted_after_the_threshold() {
    let mut local = Local::new("hung", 2).await;
    local.write_spec_with(2, "    failureThreshold: 2\n");
    local.up_foreground();
    let before = local.wait_converged(2).await;
    let victim = before.peers[0].kubo_pid.expect("kubo pid");
    kill(Pid::from_raw(victim), Signal::SIGSTOP).expect("SIGSTOP");
    let stopped_at = std::time::Instant::now();

    let log = local.supervisor_log.clone();
    let healed = tokio::time::timeout(
        Duration::from_secs(60),
        wait_for(
            "the hung Kubo to be restarted",
            Duration::from_secs(60),
            Duration::from_millis(250),
            || async {
                let s = local.try_status().await?;
                let p = &s.peers[0];
                let restarts = s.peer(&p.name)?.restarts;
                (p.kubo_pid.is_some_and(|pid| pid != victim) && restarts == 1).then_some(s)
            },
        ),
    )
    .await
    .unwrap_or_else(|_| panic!("not restarted; supervisor:\n{}", log_tail(&log, 60)));
    // Not before two failed rounds two seconds apart.
    assert!(stopped_at.elapsed() >= Duration::from_secs(2), "{healed:?}");
    assert!(!process::is_alive(victim), "the hung daemon was stopped");
    let entry = healed
        .status
        .healing
        .iter()
        .find(|e| e.peer == "peer-0")
        .unwrap_or_else(|| panic!("no healing entry: {healed:?}"));
    assert!(!entry.reason.is_empty(), "{entry:?}");
    local.stop_supervisor().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_that_keeps_exiting_hits_the_restart_budget_and_is_left_alone() {
    let mut local = Local::new("storm", 1).await;
    local.write_spec_with(1, "    maxRestartsPerHour: 1\n");
    local.up_foreground();
    let before = local.wait_converged(1).await;
    // Break Kubo's configuration so that it exits at once, then kill it.
    let config_file = local.cluster_dir().join("peer-0/ipfs/config");
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(&config_file).expect("read")).expect("json");
    config["Datastore"]["Spec"] = serde_json::json!({"type": "no-such-datastore"});
    std::fs::write(&config_file, serde_json::to_vec(&config).expect("json")).expect("write");
    let victim = before.peers[0].kubo_pid.expect("kubo pid");
    kill(Pid::from_raw(victim), Signal::SIGKILL).expect("kill -9");

    let log = local.supervisor_log.clone();
    let given_up = tokio::time::timeout(
        Duration::from_secs(90),
        wait_for(
            "the supervisor to give up on peer-0",
            Duration::from_secs(90),
            Duration::from_millis(500),
            || async {
                let s = local.try_status().await?;
                let gave_up = s.status.healing.iter().any(|e| {
                    e.peer == "peer-0"
                        && e.action == ipfs_kit_operator::reconcile::HealingAction::GiveUp
                });
                gave_up.then_some(s)
            },
        ),
    )
    .await
    .unwrap_or_else(|_| panic!("never gave up; supervisor:\n{}", log_tail(&log, 80)));
    assert_eq!(given_up.status.peers[0].restarts, 1, "{given_up:?}");
    assert_eq!(
        given_up.status.peers[0].state,
        ipfs_kit_operator::api::PeerState::Unhealthy
    );
    assert!(given_up.peers[0].kubo_pid.is_none());
    assert!(
        given_up.status.healing.iter().any(|e| e.peer == "peer-0"
            && e.action == ipfs_kit_operator::reconcile::HealingAction::GiveUp),
        "{given_up:?}"
    );
    // And it stays given up: no more restarts.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let later = local.status().await;
    assert_eq!(later.status.peers[0].restarts, 1, "{later:?}");
    local.stop_supervisor().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_daemons_run_in_their_own_loopback_namespace() {
    let mut local = Local::new("isolated", 1).await;
    local.up_foreground_with(&["--isolated"]);
    // The supervisor's probes (inside the namespace) see the peer up.
    let status = local.wait_converged(1).await;
    assert!(status.status.peers[0].kubo_version.is_some(), "{status:?}");
    // From this namespace, its ports are not reachable: it runs in another one.
    let ports = status.peers[0].ports.expect("ports");
    for port in [ports.kubo_api, ports.cluster_rest] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} answers outside the isolated namespace"
        );
    }
    let pid = status.peers[0].kubo_pid.expect("pid");
    let own = std::fs::read_link("/proc/self/ns/net").expect("own netns");
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).expect("daemon netns");
    assert_ne!(own, theirs, "the daemon shares our network namespace");
    local.stop_supervisor().await;
    assert!(local.daemons_on_host().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_spec_restarts_only_the_peers_whose_configuration_changed() {
    let local = Local::new("rolling", 2).await;
    local.up_detached().await;
    let first = local.wait_converged(2).await;

    // A health-policy change touches no daemon configuration: nothing restarts.
    local.write_spec_with(2, "    failureThreshold: 5\n");
    let output = local.up_detached().await;
    assert!(!output.contains("configuration changed"), "{output}");
    let second = local.status().await;
    assert_eq!(Local::pids(&second), Local::pids(&first));
    assert_eq!(second.generation, first.generation + 1);

    // A Kubo setting restarts every peer, one after the other, with the new setting.
    let yaml = std::fs::read_to_string(local.spec_file()).expect("spec");
    let yaml = yaml.replace(
        "spec:\n",
        "spec:\n  kubo:\n    config:\n      Swarm:\n        ConnMgr:\n          HighWater: 123\n",
    );
    std::fs::write(local.spec_file(), yaml).expect("spec");
    let output = local.up_detached().await;
    assert_eq!(
        output.matches("configuration changed").count(),
        2,
        "{output}"
    );
    let third = local.wait_converged(2).await;
    for (a, b) in first.peers.iter().zip(&third.peers) {
        assert_ne!(a.kubo_pid, b.kubo_pid, "{} restarted", a.name);
        assert_eq!(a.kubo_peer_id, b.kubo_peer_id, "same identity");
        let config: Value = serde_json::from_slice(
            &std::fs::read(local.cluster_dir().join(&a.name).join("ipfs/config")).expect("read"),
        )
        .expect("json");
        assert_eq!(config["Swarm"]["ConnMgr"]["HighWater"], 123);
    }
    // One at a time: peer-0 was up again before peer-1 was stopped.
    let up0 = output
        .rfind("Kubo is up peer=\"peer-0\"")
        .expect("peer-0 up");
    let stop1 = output
        .find("stopping IPFS Cluster peer=\"peer-1\"")
        .expect("peer-1 stopped");
    assert!(up0 < stop1, "{output}");
    local.run(&["local", "down", "rolling"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_dashboard_serves_status_and_restarts_a_daemon_on_request() {
    let mut local = Local::new("dash", 2).await;
    local.up_foreground();
    let before = local.wait_converged(2).await;
    let old_pid = before.peers[1].kubo_pid.expect("peer 1 Kubo runs");

    let base = local.dashboard_base().await;
    let http = http();
    let body: Value = wait_for(
        "the dashboard to list both peers",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || async {
            let url = format!("{base}/api/dashboard/status");
            let body: Value = http.get(url).send().await.ok()?.json().await.ok()?;
            (body["data"]["clusters"][0]["peers"].as_array()?.len() == 2).then_some(body)
        },
    )
    .await;
    let cluster = &body["data"]["clusters"][0];
    assert_eq!(cluster["cluster"], "dash");
    let peer_name = before.peers[1].name.clone();
    assert_eq!(cluster["peers"][1]["name"], Value::from(peer_name.clone()));
    assert_eq!(
        cluster["peers"][1]["peerId"],
        Value::from(before.peers[1].kubo_peer_id.clone())
    );

    let token = std::fs::read_to_string(local.cluster_dir().join("dashboard-token"))
        .expect("the token file in the cluster's state directory");
    let token = token.trim().to_string();
    every_read_route_answers_from_real_status(&base, &token, &before).await;

    // The bad-input table: every request refused with its reason, and nothing restarted.
    let requests_seen = || {
        std::fs::read_to_string(&local.supervisor_log)
            .unwrap_or_default()
            .matches("dashboard request")
            .count()
    };
    let requests_before = requests_seen();
    let table = crate::support::bad_requests::table("dash", &before.peers[0].name);
    let failures = crate::support::bad_requests::check_all(&base, &token, &table).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let unchanged = local.status().await;
    for (was, is) in before.peers.iter().zip(&unchanged.peers) {
        let restarts = unchanged.peer(&is.name).map_or(-1, |p| p.restarts);
        assert_eq!(
            (was.kubo_pid, was.cluster_pid, restarts),
            (is.kubo_pid, is.cluster_pid, 0),
            "{} was restarted by a refused request",
            is.name
        );
    }
    assert_eq!(
        requests_seen(),
        requests_before,
        "a refused request reached the supervisor:\n{}",
        local.supervisor_output()
    );

    let restart = format!("{base}/api/dashboard/backends/dash/{peer_name}/ipfs/restart");
    crate::support::restart_with_token(&restart, &token).await;

    let after = wait_for(
        "peer 1's Kubo to run under a new pid",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let status = local.try_status().await?;
            let pid = status.peers.get(1)?.kubo_pid?;
            (pid != old_pid).then_some(status)
        },
    )
    .await;
    // Only the daemon asked for was restarted.
    assert_eq!(after.peers[1].cluster_pid, before.peers[1].cluster_pid);
    assert_eq!(after.peers[0].kubo_pid, before.peers[0].kubo_pid);
}

/// Every read route of the in-process dashboard, on the status of real daemons (`before`).
/// The value of the one sample whose line starts with `prefix` (name and labels).
fn sample(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix} in:\n{metrics}"))
}

/// `/metrics` of `local up`: the supervisor's cluster and peer series (no namespace label),
/// the probe latency of real probes, and the dashboard's own requests, all in one answer.
fn local_metrics_are_served_from_one_registry(metrics: &str, peer: &str) {
    let labels = format!("cluster=\"dash\",peer=\"{peer}\"");
    assert_eq!(
        sample(metrics, &format!("ipfs_kit_peer_up{{{labels}}}")),
        1.0
    );
    assert_eq!(
        sample(
            metrics,
            &format!("ipfs_kit_peer_state{{{labels},state=\"Healthy\"}}")
        ),
        1.0
    );
    assert!(
        !metrics.contains("namespace="),
        "no namespace locally:\n{metrics}"
    );
    let info = metrics
        .lines()
        .find(|l| l.starts_with(&format!("ipfs_kit_peer_info{{{labels},peer_id=\"12D3KooW")))
        .unwrap_or_else(|| panic!("no peer_info of {peer}:\n{metrics}"));
    assert!(
        !info.contains("kubo_version=\"\"") && !info.contains("cluster_version=\"\""),
        "{info}"
    );
    assert_eq!(
        sample(metrics, "ipfs_kit_cluster_peers_desired{cluster=\"dash\"}"),
        2.0
    );
    for api in ["kubo", "cluster"] {
        let probes = sample(
            metrics,
            &format!("ipfs_kit_probe_duration_seconds_count{{api=\"{api}\"}}"),
        );
        assert!(probes >= 2.0, "{api} probes timed: {probes}");
    }
    let volume = sample(
        metrics,
        &format!("ipfs_kit_peer_volume_capacity_bytes{{{labels}}}"),
    );
    assert!(volume > 0.0, "the repository's filesystem size");
    assert!(
        sample(
            metrics,
            &format!("ipfs_kit_peer_received_bytes_total{{{labels}}}")
        ) > 0.0
    );
    assert_eq!(
        sample(
            metrics,
            &format!("ipfs_kit_peer_healing_budget_remaining{{{labels}}}")
        ),
        5.0
    );
    assert_eq!(sample(metrics, "ipfs_kit_leader "), 1.0);
    assert!(sample(metrics, "ipfs_kit_reconciles_total ") >= 1.0);
    assert!(sample(metrics, "ipfs_kit_last_reconcile_timestamp_seconds ") > 1.7e9);
    assert!(
        metrics.contains("ipfs_kit_dashboard_requests_total{route=\"/api/dashboard/status\""),
        "the in-process dashboard's own requests:\n{metrics}"
    );
}

/// Every answer is checked against the OpenAPI document.
async fn every_read_route_answers_from_real_status(base: &str, token: &str, before: &LocalStatus) {
    let http = http();
    let get = |path: &str| {
        let http = http.clone();
        let path = path.to_string();
        async move {
            let (code, body) = crate::support::openapi::get(&http, base, &path).await;
            assert_eq!(code, 200, "GET {path}: {body}");
            assert_eq!(body["success"], true, "GET {path}: {body}");
            body["data"].clone()
        }
    };
    let peer = &before.peers[0];
    let p = &peer.name;

    let kubo = get(&format!("/api/dashboard/backends/dash/{p}/ipfs/status")).await;
    assert_eq!(kubo["peerId"], Value::from(peer.kubo_peer_id.clone()));
    assert!(
        kubo["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("0.")),
        "{kubo}"
    );
    let cluster = get(&format!("/api/dashboard/backends/dash/{p}/cluster/status")).await;
    assert_eq!(cluster["peerId"], Value::from(peer.cluster_peer_id.clone()));
    assert_eq!(cluster["clusterPeersSeen"], 2);

    // The daemons' own log lines, from the files the supervisor captures.
    let logs = get(&format!("/api/dashboard/logs/dash/{p}/ipfs?lines=50")).await;
    let lines: Vec<&str> = logs["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        !lines.is_empty() && lines.len() <= 50,
        "{} lines",
        lines.len()
    );
    assert!(
        lines.iter().any(|l| l.contains("Daemon is ready")),
        "Kubo's own output: {lines:?}"
    );
    let logs = get(&format!("/api/dashboard/logs/dash/{p}/cluster?lines=2000")).await;
    assert!(
        logs["lines"].as_array().is_some_and(|l| l
            .iter()
            .any(|x| x.as_str().is_some_and(|x| x.contains("IPFS Cluster")))),
        "the cluster daemon's own output: {logs}"
    );

    // Host figures are sampled in the background; per-peer figures come from the probes.
    let realtime = wait_for(
        "host figures in /metrics/realtime",
        Duration::from_secs(20),
        Duration::from_millis(500),
        || async {
            let data = get("/api/dashboard/metrics/realtime").await;
            data["host"]["cpuPercent"]
                .as_f64()
                .is_some()
                .then_some(data)
        },
    )
    .await;
    assert!(
        realtime["host"]["memoryTotalBytes"].as_u64().unwrap_or(0) > 0,
        "{realtime}"
    );
    assert!(
        realtime["host"]["diskTotalBytes"].as_u64().unwrap_or(0) > 0,
        "{realtime}"
    );
    let first = &realtime["peers"][0];
    assert!(first["repoSize"].as_u64().unwrap_or(0) > 0, "{first}");
    assert!(first["bandwidth"]["totalIn"].as_u64().is_some(), "{first}");
    assert_eq!(first["swarmPeers"], 1);

    let history = get(&format!("/api/dashboard/history/dash/{p}")).await;
    assert!(
        history["samples"].as_array().is_some_and(|s| !s.is_empty()),
        "{history}"
    );
    let history = get("/api/dashboard/history/dash").await;
    assert!(
        history["samples"][0]["score"].as_i64().is_some(),
        "{history}"
    );

    let mut events = http
        .get(format!("{base}/api/dashboard/events"))
        .send()
        .await
        .expect("events");
    let first = tokio::time::timeout(Duration::from_secs(10), events.chunk())
        .await
        .expect("an event at once")
        .expect("chunk")
        .expect("data");
    let first = String::from_utf8_lossy(&first);
    assert!(
        first.contains("event: status") && first.contains("\"dash\""),
        "{first}"
    );

    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    local_metrics_are_served_from_one_registry(&metrics, p);
    for path in ["/healthz", "/readyz"] {
        let resp = http.get(format!("{base}{path}")).send().await.expect("GET");
        assert_eq!(resp.status().as_u16(), 200, "{path}");
    }
    let doc: Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("the OpenAPI document");
    assert!(
        doc["paths"]["/api/dashboard/logs/{backend}"].is_object(),
        "{doc}"
    );

    // Status and peers actions are reads: answered at once, no token needed.
    let post = |path: &str, body: Value, with_token: bool| {
        let http = http.clone();
        let path = path.to_string();
        let token = with_token.then_some(token);
        async move { crate::support::openapi::post(&http, base, &path, token, &body).await }
    };
    let (code, body) = post(
        "/api/dashboard/daemon/action",
        serde_json::json!({"daemon_name": format!("dash/{p}/cluster"), "action": "status", "force": true}),
        false,
    )
    .await;
    assert_eq!(
        (code, &body["data"]["peerId"]),
        (200, &Value::from(peer.cluster_peer_id.clone())),
        "{body}"
    );
    let (code, body) = post(
        "/api/dashboard/cluster/action",
        serde_json::json!({"action": "peers"}),
        false,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["peers"].as_array().map(Vec::len), Some(2));
    let (code, body) = post(
        "/api/dashboard/cluster/action",
        serde_json::json!({"action": "status"}),
        false,
    )
    .await;
    assert_eq!(
        (code, &body["data"]["cluster"]),
        (200, &Value::from("dash")),
        "{body}"
    );
    // A health check runs a real probe round and answers with its results.
    let (code, body) = post(
        "/api/dashboard/health/check",
        serde_json::json!({"backend_name": format!("dash/{p}/ipfs"), "force_check": true}),
        true,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["data"]["peers"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
    assert_eq!(body["data"]["requested"]["action"], "probe");
    // The toolkit's results: the one daemon asked for.
    let ipfs = format!("dash/{p}/ipfs");
    assert_eq!(
        body["data"]["results"][&ipfs]["status"], "running",
        "{body}"
    );
    assert_eq!(body["data"]["metrics"]["backends_checked"], 1);
    assert_eq!(body["data"]["metrics"]["healthy_count"], 1);
    assert!(
        body["data"]["metrics"]["check_duration"]
            .as_f64()
            .is_some_and(|s| s > 0.0)
    );

    toolkit_fields_of_two_real_peers(&get, &post, before).await;
}

/// The old toolkit's fields from two real peers: every daemon under its full name, the short
/// names standing for both, the supervisor's PIDs and ports.
async fn toolkit_fields_of_two_real_peers<G, GF, P, PF>(get: &G, post: &P, before: &LocalStatus)
where
    G: Fn(&str) -> GF,
    GF: std::future::Future<Output = Value>,
    P: Fn(&str, Value, bool) -> PF,
    PF: std::future::Future<Output = (u16, Value)>,
{
    let status = get("/api/dashboard/status").await;
    assert_eq!(status["overall_health"], "healthy", "{status:#}");
    for (i, peer) in before.peers.iter().enumerate() {
        let ports = peer.ports.expect("ports");
        let kubo = &status["backends"][format!("dash/{}/ipfs", peer.name)];
        assert_eq!(
            (&kubo["status"], &kubo["daemon_pid"], &kubo["port"]),
            (
                &Value::from("running"),
                &Value::from(peer.kubo_pid),
                &Value::from(ports.kubo_api)
            ),
            "{kubo}"
        );
        let cluster = &status["backends"][format!("dash/{}/cluster", peer.name)];
        assert_eq!(
            cluster["daemon_pid"],
            Value::from(peer.cluster_pid),
            "{cluster}"
        );
        let processes = &status["clusters"][0]["processes"][i];
        assert_eq!(processes["ports"]["clusterApi"], ports.cluster_rest);
    }
    let both = &status["backends"]["ipfs"];
    assert_eq!(both["members"].as_array().map(Vec::len), Some(2), "{both}");
    assert_eq!(
        (&both["status"], &both["daemon_pid"]),
        (&Value::from("running"), &Value::Null)
    );
    let cluster = &status["cluster"];
    assert_eq!(
        (&cluster["daemons"], &cluster["peer_count"]),
        (&Value::from(2), &Value::from(2))
    );
    assert_eq!(cluster["pid"], Value::Null, "two daemons, no one PID");
    assert_eq!(
        cluster["port_status"]["api"]["processes"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(status["libp2p"]["connected_peers"], 2);
    assert_eq!(status["metrics"]["total_backends"], 4);
    assert_eq!(status["metrics"]["healthy_backends"], 4);

    let realtime = get("/api/dashboard/metrics/realtime").await;
    assert!(
        realtime["system"]["memory_percent"]
            .as_f64()
            .is_some_and(|m| m > 0.0),
        "{realtime}"
    );
    assert!(
        realtime["system"]["disk_usage"]
            .as_f64()
            .is_some_and(|d| d > 0.0),
        "{realtime}"
    );
    assert_eq!(realtime["backends"]["healthy"], 4);
    assert_eq!(realtime["network"]["libp2p_connected"], 2);
    assert!(
        realtime["performance"]["overall_score"].as_f64().is_some(),
        "{realtime}"
    );

    // The short names with two peers: a status of both, a restart refused naming them.
    let group = get("/api/dashboard/backends/ipfs_cluster/status").await;
    assert_eq!(group["daemon"], "cluster");
    assert_eq!(
        group["backends"].as_object().map(|b| b.len()),
        Some(2),
        "{group}"
    );
    let (code, refused) = post("/api/dashboard/backends/ipfs/restart", Value::Null, true).await;
    assert_eq!(code, 409, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    for peer in &before.peers {
        assert!(
            message.contains(&format!("dash/{}/ipfs", peer.name)),
            "{message}"
        );
    }
}
