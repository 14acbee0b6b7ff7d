//! Dashboard under load: requests/second and latency of `GET /api/dashboard/status`, served by the
//! real dashboard router in this process, next to nginx serving the same JSON bytes from a file,
//! in the same run on the same machine, with the same load generator (`wrk`).
//!
//! The dashboard gets a snapshot the size of a busy installation (default 10 clusters x 5 peers,
//! every field of every peer filled in, four conditions and a full healing log of 20 records per
//! cluster); its answer is fetched once, written to a file, and nginx serves that file at the same
//! path, so both answer with identical bodies (checked before the load starts). Each target gets a
//! warm-up, then a measured run of fixed duration and connection count. Prints a table; asserts
//! nothing about time.
//!
//! Run with `scripts/run-bench.sh --bench dashboard_load` (a loopback-only network namespace). It
//! needs Debian's `nginx` and `wrk` (`apt-get install nginx wrk`); it says so when they are missing.
//! Settings, from the environment:
//!
//! | variable | default | what |
//! |---|---:|---|
//! | `BENCH_DURATION_SECS` | 10 | measured run per target |
//! | `BENCH_WARMUP_SECS` | 2 | warm-up per target, not counted |
//! | `BENCH_CONNECTIONS` | 64 | open HTTP/1.1 keep-alive connections |
//! | `BENCH_THREADS` | available cores | dashboard runtime threads = nginx workers = wrk threads |
//! | `BENCH_CLUSTERS`, `BENCH_PEERS` | 10, 5 | snapshot size |
//!
//! `BENCH_PROFILE=release scripts/run-bench.sh --bench dashboard_load` measures the optimized build
//! (the default dev build leaves this crate unoptimized).
//!
//! The server and the load generator share the machine's cores, for both targets alike. Measured
//! on 2 cores shared with other builds (load average 3-7), defaults (73 KB answer), two release
//! runs and one dev run:
//!
//! | build | target | req/s | p50 | p99 | req per CPU-s | RSS |
//! |---|---|---:|---:|---:|---:|---:|
//! | release | dashboard | 19,800 - 35,500 | 1.5 - 2.6 ms | 6 ms | 36,000 - 38,000 | 12 MiB |
//! | release | nginx, same bytes | 22,800 - 41,600 | 1.2 - 2.1 ms | 42 - 117 ms | 49,000 | 18 MiB |
//! | dev | dashboard | 18,900 | 2.8 ms | 116 ms | 20,000 | 13 MiB |
//!
//! Requests/s follows what else the machine runs; requests per CPU-second of the server much
//! less. Building and serializing the answer costs about 2 ms (release) once per published
//! snapshot; serialized per request, as before the cache, the release build managed 587 req/s.

#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ipfs_kit_operator::api::IpfsClusterStatus;
use ipfs_kit_operator::dashboard::{ClusterEntry, Dashboard, Snapshot, router};
use serde_json::json;
use support::process::Daemon;

const STATUS_PATH: &str = "/api/dashboard/status";

/// Fixed load and snapshot size, overridable from the environment.
struct Settings {
    duration: u64,
    warmup: u64,
    connections: usize,
    threads: usize,
    clusters: usize,
    peers: usize,
}

fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Err(_) => default,
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => fail(&format!("{name}={text:?} is not a positive whole number")),
        },
    }
}

impl Settings {
    fn from_env() -> Settings {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Settings {
            duration: env_number("BENCH_DURATION_SECS", 10) as u64,
            warmup: env_number("BENCH_WARMUP_SECS", 2) as u64,
            connections: env_number("BENCH_CONNECTIONS", 64),
            threads: env_number("BENCH_THREADS", cores),
            clusters: env_number("BENCH_CLUSTERS", 10),
            peers: env_number("BENCH_PEERS", 5),
        }
    }
}

/// Stops the benchmark with a message (a missing tool, a bad setting), without a backtrace.
fn fail(message: &str) -> ! {
    eprintln!("dashboard_load: {message}");
    std::process::exit(2)
}

/// `name` on PATH or in the sbin directories (nginx lives in /usr/sbin, often not on PATH).
fn find_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            fail(&format!(
                "{name} not found on PATH or in /usr/sbin; install Debian's packages with \
                 `apt-get install nginx wrk`"
            ))
        })
}

/// A snapshot as the reconciler publishes it for a busy installation: every peer field set, a
/// realistic mix of states, four conditions and a full healing log per cluster.
fn snapshot(clusters: usize, peers: usize) -> Snapshot {
    let states = ["Healthy", "Healthy", "Healthy", "Degraded", "Restarting"];
    let actions = ["SwarmConnect", "RestartPeer", "Backoff", "RestartPeer"];
    let results = ["Succeeded", "Succeeded", "Pending", "Failed", "Skipped"];
    let entries = (0..clusters)
        .map(|c| {
            let name = format!("store-{c:02}");
            let peer_list: Vec<_> = (0..peers)
                .map(|p| {
                    let state = states[(c + p) % states.len()];
                    let score = if state == "Healthy" { 100 - p as i32 } else { 62 };
                    json!({
                        "name": format!("{name}-{p}"),
                        "peerId": format!("12D3KooWKubo{c:02}{p:02}xZ9mRkQvTqJ8cYhN4bLwE7sDfGpU3aV"),
                        "clusterPeerId": format!("12D3KooWClus{c:02}{p:02}hB2nWqLmT5vYxK8jR6cZaPeS4dFgU"),
                        "kuboVersion": "0.42.0",
                        "clusterVersion": "1.1.6",
                        "swarmPeers": peers as i32 - 1 + (p as i32 % 3) * 7,
                        "clusterPeersSeen": peers,
                        "repoSize": 10_737_418_240_i64 + (c * 1000 + p) as i64 * 7_340_033,
                        "pinsQueued": p,
                        "pinsPinning": (c + p) % 4,
                        "pinsError": if state == "Degraded" { 3 } else { 0 },
                        "score": score,
                        "state": state,
                        "restarts": (c + 2 * p) % 5,
                        "lastProbe": "2026-11-27T23:59:55Z",
                        "lastError": if state == "Healthy" {
                            serde_json::Value::Null
                        } else {
                            json!("cluster /pins: 3 pins in error (context deadline exceeded)")
                        },
                    })
                })
                .collect();
            let healing: Vec<_> = (0..20)
                .map(|h| {
                    json!({
                        "time": format!("2026-11-27T{:02}:{:02}:00Z", 12 + h / 6, (h % 6) * 10),
                        "peer": format!("{name}-{}", h % peers),
                        "action": actions[h % actions.len()],
                        "reason": "Kubo RPC unresponsive for 3 probes (POST /api/v0/id: timed out after 2s)",
                        "result": results[h % results.len()],
                    })
                })
                .collect();
            let condition = |kind: &str, status: &str, reason: &str, message: &str| {
                json!({
                    "type": kind, "status": status, "reason": reason, "message": message,
                    "lastTransitionTime": "2026-11-27T20:14:03Z", "observedGeneration": 7,
                })
            };
            let status: IpfsClusterStatus = serde_json::from_value(json!({
                "phase": "Degraded",
                "observedGeneration": 7,
                "replicas": peers,
                "readyReplicas": peers - 1,
                "selector": format!("app.kubernetes.io/instance={name}"),
                "healthScore": 87,
                "conditions": [
                    condition("Ready", "False", "PeersNotReady", "4 of 5 peers ready"),
                    condition("Available", "True", "PeersAnswering", "at least one peer answers"),
                    condition("Progressing", "True", "Healing", "restarting one peer"),
                    condition("Degraded", "True", "PinErrors", "1 peer has pins in error"),
                ],
                "peers": peer_list,
                "healing": healing,
            }))
            .expect("the bench snapshot matches IpfsClusterStatus");
            ClusterEntry {
                namespace: Some(format!("team-{}", c % 3)),
                name,
                replicas: peers as i32,
                paused: false,
                status,
                uid: None,
                resource_version: None,
                processes: Vec::new(),
            }
        })
        .collect();
    Snapshot {
        clusters: entries,
        pins: Vec::new(),
        updated_at: Some("2026-11-27T23:59:55Z".into()),
    }
}

/// The minimal nginx configuration: one static file at the dashboard's path.
fn nginx_config(dir: &Path, port: u16, workers: usize) -> String {
    let d = dir.display();
    // As root nginx would switch its workers to an unprivileged user that cannot read the
    // temporary directory; keep them as the current user.
    let user = if nix::unistd::geteuid().is_root() {
        "user root root;\n"
    } else {
        ""
    };
    format!(
        "{user}worker_processes {workers};
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    default_type application/json;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {d}/www;
    }}
}}
"
    )
}

/// What one wrk run measured (wrk's `done` hook prints it).
#[derive(Default)]
struct Run {
    requests: u64,
    duration_us: u64,
    bytes: u64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
    errors: u64,
}

const WRK_SCRIPT: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d bytes=%d p50_us=%d p99_us=%d max_us=%d errors=%d\n",
    summary.requests, summary.duration, summary.bytes, latency:percentile(50),
    latency:percentile(99), latency.max, e.connect + e.read + e.write + e.status + e.timeout))
end
"#;

fn wrk(wrk: &Path, script: &Path, url: &str, secs: u64, settings: &Settings) -> Run {
    let threads = settings.threads.min(settings.connections);
    let out = Command::new(wrk)
        .args(["--latency", "--timeout", "10s"])
        .arg(format!("--threads={threads}"))
        .arg(format!("--connections={}", settings.connections))
        .arg(format!("--duration={secs}s"))
        .arg("--script")
        .arg(script)
        .arg(url)
        .output()
        .unwrap_or_else(|e| fail(&format!("running {}: {e}", wrk.display())));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| {
            fail(&format!(
                "wrk against {url} printed no result ({}):\n{stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        });
    let mut run = Run::default();
    for field in line.split_whitespace() {
        let (key, value) = field
            .split_once('=')
            .expect("key=value from the wrk script");
        let value: u64 = value.parse().expect("a number from the wrk script");
        match key {
            "requests" => run.requests = value,
            "duration_us" => run.duration_us = value,
            "bytes" => run.bytes = value,
            "p50_us" => run.p50_us = value,
            "p99_us" => run.p99_us = value,
            "max_us" => run.max_us = value,
            "errors" => run.errors = value,
            other => panic!("unexpected field {other:?} from the wrk script"),
        }
    }
    run
}

/// CPU time (user + system) of the given processes, from /proc/<pid>/stat.
fn cpu_time(pids: &[u32]) -> Duration {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let total: u64 = pids
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the command name (which may hold spaces), counted from field 3.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    Duration::from_secs_f64(total as f64 / ticks)
}

/// Resident set size of the given processes, in KiB (VmRSS from /proc/<pid>/status).
fn rss_kib(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum()
}

/// nginx's master and its workers.
fn nginx_pids(master: u32) -> Vec<u32> {
    let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
        .unwrap_or_default();
    std::iter::once(master)
        .chain(children.split_whitespace().filter_map(|p| p.parse().ok()))
        .collect()
}

struct Row {
    target: String,
    run: Run,
    cpu: Duration,
    rss_kib: u64,
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<30} {:>10} {:>10} {:>10} {:>10} {:>12} {:>7} {:>12} {:>11} {:>10}",
        "target",
        "req/s",
        "p50",
        "p99",
        "max",
        "bytes/resp",
        "errors",
        "server CPU",
        "req/CPU-s",
        "RSS"
    );
    for row in rows {
        let r = &row.run;
        let secs = r.duration_us.max(1) as f64 / 1e6;
        let _ = writeln!(
            out,
            "{:<30} {:>10.0} {:>10} {:>10} {:>10} {:>12} {:>7} {:>10.1} s {:>11.0} {:>6.1} MiB",
            row.target,
            r.requests as f64 / secs,
            ms(r.p50_us),
            ms(r.p99_us),
            ms(r.max_us),
            r.bytes / r.requests.max(1),
            r.errors,
            row.cpu.as_secs_f64(),
            r.requests as f64 / row.cpu.as_secs_f64().max(0.001),
            row.rss_kib as f64 / 1024.0,
        );
    }
    out
}

async fn get(http: &reqwest::Client, url: &str) -> (String, bytes::Bytes) {
    let resp = http
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| fail(&format!("GET {url}: {e}")));
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (content_type, resp.bytes().await.expect("response body"))
}

fn main() {
    let settings = Settings::from_env();
    let nginx_bin = find_tool("nginx");
    let wrk_bin = find_tool("wrk");
    let started = Instant::now();
    let build = if cfg!(debug_assertions) {
        "dev build (debug assertions on; crate at opt-level 0, dependencies at 1)"
    } else {
        "optimized build"
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "dashboard load: GET {STATUS_PATH}, {} s after {} s warm-up, {} connections, {} threads \
         (dashboard runtime = nginx workers = wrk threads), {build}; load average before: {}",
        settings.duration,
        settings.warmup,
        settings.connections,
        settings.threads,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );

    // The dashboard, in this process, on its own runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (dashboard, publisher, _actions) = Dashboard::new(None, false);
    publisher.publish(snapshot(settings.clusters, settings.peers));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind the dashboard");
    let dashboard_url = format!(
        "http://{}{STATUS_PATH}",
        listener.local_addr().expect("dashboard address")
    );
    runtime.spawn(async move { axum::serve(listener, router(dashboard)).await });

    ipfs_kit_operator::tls::ensure_crypto_provider();
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client");
    let (dashboard_type, body) = runtime.block_on(get(&http, &dashboard_url));

    // The answer is serialized once per published snapshot: the first GET after a publish pays
    // for it, the next ones do not. Median of 21 publishes, one client, no other load.
    let (first, cached) = runtime.block_on(async {
        let fresh = snapshot(settings.clusters, settings.peers);
        let (mut first, mut cached) = (Vec::new(), Vec::new());
        for _ in 0..21 {
            publisher.publish(fresh.clone());
            for times in [&mut first, &mut cached] {
                let started = Instant::now();
                let (_, again) = get(&http, &dashboard_url).await;
                times.push(started.elapsed());
                assert_eq!(again, body, "the same snapshot gives the same answer");
            }
        }
        first.sort();
        cached.sort();
        (first[first.len() / 2], cached[cached.len() / 2])
    });

    // nginx, serving those bytes from a file at the same path.
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join(format!("www{STATUS_PATH}"));
    std::fs::create_dir_all(file.parent().expect("parent")).expect("www directory");
    std::fs::write(&file, &body).expect("write the status file");
    let port = support::process::free_port();
    let config = dir.path().join("nginx.conf");
    std::fs::write(&config, nginx_config(dir.path(), port, settings.threads))
        .expect("write nginx.conf");
    let mut cmd = Command::new(&nginx_bin);
    cmd.arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("nginx-error.log"))
        .arg("-c")
        .arg(&config);
    let mut nginx = Daemon::spawn("nginx", cmd, dir.path())
        .unwrap_or_else(|e| fail(&format!("starting nginx: {e}")));
    let nginx_url = format!("http://127.0.0.1:{port}{STATUS_PATH}");
    let (nginx_type, nginx_body) = runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            nginx.assert_running();
            if let Ok(resp) = http.get(&nginx_url).send().await
                && resp.status().is_success()
            {
                break get(&http, &nginx_url).await;
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not answer {nginx_url} within 20 s:\n{}",
                nginx.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert_eq!(
        nginx_body, body,
        "nginx must serve exactly the dashboard's bytes"
    );
    assert_eq!(nginx_type, dashboard_type, "same Content-Type");
    let parsed: serde_json::Value = serde_json::from_slice(&body).expect("status is JSON");
    println!(
        "answer: {} bytes of {dashboard_type} ({} clusters, {} peers, {} alerts); identical from both",
        body.len(),
        parsed["data"]["overall"]["clusters"],
        parsed["data"]["overall"]["peers"],
        parsed["data"]["alerts"].as_array().map_or(0, Vec::len),
    );
    println!(
        "one GET, no load: {:.2} ms right after a publish (builds and serializes the answer), \
         {:.2} ms for the next ones (served from the cached bytes)",
        first.as_secs_f64() * 1e3,
        cached.as_secs_f64() * 1e3,
    );

    let script = dir.path().join("report.lua");
    std::fs::write(&script, WRK_SCRIPT).expect("write the wrk script");
    let own_pid = std::process::id();
    let mut rows = Vec::new();
    for (target, url, pids) in [
        (
            "dashboard (axum, in-process)",
            &dashboard_url,
            vec![own_pid],
        ),
        ("nginx (static file)", &nginx_url, nginx_pids(nginx.pid())),
    ] {
        wrk(&wrk_bin, &script, url, settings.warmup, &settings);
        let cpu_before = cpu_time(&pids);
        let run = wrk(&wrk_bin, &script, url, settings.duration, &settings);
        let cpu = cpu_time(&pids).saturating_sub(cpu_before);
        rows.push(Row {
            target: target.to_string(),
            run,
            cpu,
            rss_kib: rss_kib(&pids),
        });
    }
    nginx.assert_running();
    nginx.stop(Duration::from_secs(5));
    print!("{}", table(&rows));
    println!(
        "RSS: the dashboard's is this whole bench process (snapshot, runtime, HTTP client); \
         nginx's is master + workers. Server CPU: user + system time of the server during the \
         measured run (req/CPU-s depends less on what else the machine runs). Total {:.0} s.",
        started.elapsed().as_secs_f64()
    );
}
