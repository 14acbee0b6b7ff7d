//! The page over a real backend: `local up` with real Kubo and IPFS Cluster daemons of the test
//! world and its in-process dashboard, seen in Chromium as a person on call would use it: the
//! overview (health over time, pins, relative times), a daemon's log followed live, the
//! configuration changed with the token (refusals named, a scale applied as `local up -f`
//! would), a peer in trouble (a daemon stopped while healing is off) and healed once healing is
//! switched back on, the healing timeline, keyboard use and the page without its style sheet.
//! Screenshots: `<target>/browser/{overview,trouble,config,config-refused,unstyled}.png`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ipfs_kit_operator::runtime::local::LocalStatus;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::cdp::{Browser, Page};
use crate::support::process::log_tail;
use crate::support::tools::binary;
use crate::support::wait_for;
use crate::target_dir;

const OPERATOR: &str = env!("CARGO_BIN_EXE_ipfs-kit-operator");
/// Daemons start, probe and heal on a machine shared with builds: generous.
const WAIT: Duration = Duration::from_secs(120);

/// `local up` in the foreground with its dashboard on a free loopback port. Dropping it stops
/// the supervisor and every daemon it started.
struct LocalUp {
    dir: tempfile::TempDir,
    name: &'static str,
    child: Option<std::process::Child>,
    log: PathBuf,
}

impl LocalUp {
    fn start(name: &'static str, replicas: u32) -> LocalUp {
        let dir = tempfile::Builder::new()
            .prefix("ipfs-kit-page-")
            .tempdir()
            .expect("tempdir");
        let spec = dir.path().join("cluster.yaml");
        std::fs::write(
            &spec,
            format!(
                "apiVersion: ipfskit.io/v1alpha1\nkind: IpfsCluster\nmetadata:\n  name: {name}\n\
                 spec:\n  replicas: {replicas}\n  health:\n    probeInterval: 2s\n    \
                 probeTimeout: 1s\n"
            ),
        )
        .expect("write spec");
        let log = dir.path().join("supervisor.log");
        let out = std::fs::File::create(&log).expect("supervisor log");
        let err = out.try_clone().expect("log");
        let spec = spec.to_str().expect("utf-8 path");
        let child = Self::command(
            dir.path(),
            &[
                "local",
                "up",
                "--dashboard-listen",
                "127.0.0.1:0",
                "-f",
                spec,
            ],
        )
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start local up");
        LocalUp {
            dir,
            name,
            child: Some(child),
            log,
        }
    }

    /// The operator with `args` (a `local` subcommand) on this test's state directory.
    fn command(dir: &Path, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(OPERATOR);
        cmd.args(args)
            .arg("--state-dir")
            .arg(dir.join("state"))
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

    fn cluster_dir(&self) -> PathBuf {
        self.dir.path().join("state").join(self.name)
    }

    /// `http://127.0.0.1:PORT`, from the supervisor's log.
    async fn dashboard_base(&self) -> String {
        wait_for(
            "the dashboard address in the supervisor's log",
            Duration::from_secs(60),
            Duration::from_millis(200),
            || async {
                let log = std::fs::read_to_string(&self.log).ok()?;
                let at = log.find("dashboard on http://")? + "dashboard on ".len();
                let end = log[at..].find(char::is_whitespace)?;
                Some(log[at..at + end].trim_end_matches('/').to_string())
            },
        )
        .await
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.cluster_dir().join("dashboard-token"))
            .expect("the dashboard token file")
            .trim()
            .to_owned()
    }

    /// The supervisor's last status (`status.json`), with PIDs and ports.
    fn status(&self) -> Option<LocalStatus> {
        let text = std::fs::read_to_string(self.cluster_dir().join("status.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The persisted state (`state.json`): the spec applied and its generation.
    fn state(&self) -> Value {
        let text =
            std::fs::read_to_string(self.cluster_dir().join("state.json")).expect("state.json");
        serde_json::from_str(&text).expect("state JSON")
    }

    fn output(&self) -> String {
        log_tail(&self.log, 60)
    }
}

impl Drop for LocalUp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::support::process::terminate(&mut child, Duration::from_secs(60));
        }
        let _ = Self::command(self.dir.path(), &["local", "down", self.name]).output();
    }
}

fn http() -> reqwest::Client {
    ipfs_kit_operator::tls::ensure_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client")
}

/// A peer row of the cluster's peer table as a person reads it, by column header.
fn peer_row(cluster: &str, peer: &str) -> String {
    format!(
        r##"(() => {{
        const t = document.querySelector("#cluster-{cluster} table.peers");
        if (!t) return null;
        const heads = [...t.querySelectorAll("thead th")].map((h) => h.textContent.trim());
        const r = t.querySelector('tbody tr[data-peer="{peer}"]');
        if (!r) return null;
        const row = {{}};
        [...r.children].forEach((c, i) => {{ row[heads[i]] = c.textContent.trim(); }});
        return row;
    }})()"##
    )
}

async fn text_of(page: &Page<'_>, selector: &str) -> String {
    let sel = serde_json::to_string(selector).expect("selector");
    page.eval(&format!(
        "(() => {{ const e = document.querySelector({sel}); return e ? e.textContent.trim() : ''; }})()"
    ))
    .await
    .as_str()
    .unwrap_or_default()
    .to_string()
}

/// Stores a block on peer `index`'s Kubo and pins it through its IPFS Cluster API.
async fn pin_block(status: &LocalStatus, index: usize, data: &[u8]) -> String {
    let ports = status.peers[index].ports.expect("ports");
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(data.to_vec()).file_name("data"),
    );
    let added: Value = http()
        .post(format!(
            "http://127.0.0.1:{}/api/v0/block/put?cid-codec=raw",
            ports.kubo_api
        ))
        .multipart(form)
        .send()
        .await
        .expect("block/put")
        .json()
        .await
        .expect("block/put json");
    let cid = added["Key"].as_str().expect("Key").to_owned();
    let resp = http()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_on_call_uses_the_page_over_a_local_cluster() {
    let local = LocalUp::start("web", 2);
    let base = local.dashboard_base().await;
    crate::support::dashboard_status_until(&base, "two healthy peers", |b| {
        let peers = b["data"]["clusters"][0]["peers"].as_array()?;
        (peers.len() == 2 && peers.iter().all(|p| p["state"] == "Healthy")).then_some(())
    })
    .await;
    let out = target_dir().join("browser");
    let browser = Browser::launch("chromium-local", &out);
    let page = browser.new_page(1280, 1000).await;
    page.navigate(&format!("{base}/")).await;

    overview(&page, &local).await;
    page.screenshot(&out.join("overview.png")).await;
    follow_a_log(&page, &local).await;
    let token = local.token();
    configuration(&page, &local, &base, &token, &out).await;
    trouble_and_healing(&page, &local, &out).await;
    scale_up(&page, &local).await;
    keyboard_and_plain_page(&page, &base, &out).await;
    println!("screenshots in {}", out.display());
}

/// Peers, health over time (score, bandwidth, repository size), pins by state, relative times.
async fn overview(page: &Page<'_>, local: &LocalUp) {
    for peer in ["peer-0", "peer-1"] {
        page.wait_until(
            &format!("{peer} Healthy in the peer table"),
            WAIT,
            &format!(
                "(() => {{ const r = {}; return r && r.State === 'Healthy'; }})()",
                peer_row("web", peer)
            ),
        )
        .await;
    }
    // The last 15 minutes, chosen with the range list.
    page.eval(
        "(() => { const s = document.getElementById('cluster-web-range'); s.value = '15m'; \
         s.dispatchEvent(new Event('change')); })()",
    )
    .await;
    let charts = page
        .wait_until(
            "the score, bandwidth and repository size drawn from the history",
            WAIT,
            "(() => { const n = (id, k) => [...document.querySelectorAll(`#${id} svg polyline.series-${k}`)] \
               .map((l) => l.getAttribute('points').trim().split(/\\s+/).length).reduce((a, b) => a + b, 0); \
               const ok = n('cluster-web-score', 0) >= 3 && n('cluster-web-bandwidth', 0) >= 2 \
                 && n('cluster-web-bandwidth', 1) >= 2 && n('cluster-web-repo', 0) >= 3 \
                 && n('cluster-web-repo', 1) >= 3; \
               return ok && [...document.querySelectorAll('#cluster-web figure.chart svg')] \
                 .map((s) => s.getAttribute('aria-label')); })()",
        )
        .await;
    let labels: Vec<&str> = charts
        .as_array()
        .expect("labels")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        labels[0].starts_with("Health score from ") && labels[0].contains("Cluster score "),
        "{labels:?}"
    );
    assert!(
        labels[1].contains("In ") && labels[1].contains("B/s latest"),
        "{labels:?}"
    );
    assert!(
        labels[2].contains("peer-0 ") && labels[2].contains("peer-1 "),
        "{labels:?}"
    );
    // The figures as a table too (for screen readers).
    let rows = page
        .eval("document.querySelectorAll('#cluster-web-repo details table tbody tr').length")
        .await;
    assert!(rows.as_u64().is_some_and(|n| n >= 3), "{rows}");

    // A pin made through IPFS Cluster shows in the counts of both peers.
    let status = local.status().expect("status.json");
    pin_block(&status, 0, b"seen on the page").await;
    page.wait_until(
        "the pin counted on both peers",
        WAIT,
        "(() => { const t = document.querySelector('#cluster-web table.pin-counts'); if (!t) return false; \
         const foot = [...t.querySelectorAll('tfoot td')].map((c) => c.textContent); return foot[0] === '2'; })()",
    )
    .await;
    let ipfs_pins = text_of(page, "#cluster-web .ipfs-pins").await;
    assert!(
        ipfs_pins.contains("exist only in Kubernetes"),
        "{ipfs_pins}"
    );

    // Times read "12 s ago", with the absolute time on hover.
    let times = page
        .eval(
            "[...document.querySelectorAll('time[data-relative]')].map((t) => \
             [t.textContent, t.getAttribute('title'), t.getAttribute('datetime')])",
        )
        .await;
    let times = times.as_array().expect("times");
    assert!(
        times.len() >= 3,
        "the overall round and each peer's last probe: {times:?}"
    );
    for t in times {
        let (text, title) = (
            t[0].as_str().unwrap_or_default(),
            t[1].as_str().unwrap_or_default(),
        );
        assert!(
            text == "just now" || text.ends_with(" s ago") || text.ends_with(" min ago"),
            "{t}"
        );
        assert!(
            title.len() == 23 && title.ends_with(" UTC") && title.starts_with("20"),
            "{t}"
        );
    }
    let overall = text_of(page, "#overall").await;
    assert!(
        overall.contains("1 cluster, 2 peers, 0 alerts firing; last probe round"),
        "{overall}"
    );
}

/// A peer row's Logs button opens that daemon's log; Follow shows new lines without a click.
async fn follow_a_log(page: &Page<'_>, local: &LocalUp) {
    page.click("button.logs[data-backend=\"web/peer-0/ipfs\"]")
        .await;
    page.wait_until(
        "Kubo's log of peer-0",
        WAIT,
        "document.getElementById('log-output').textContent.includes('Daemon is ready')",
    )
    .await;
    assert_eq!(
        page.eval("document.activeElement.id").await,
        "log-output",
        "the log gets the focus"
    );
    assert_eq!(
        text_of(page, "#log-state")
            .await
            .split(':')
            .next()
            .unwrap_or_default(),
        "Showing the log of web/peer-0/ipfs"
    );
    page.click("#log-follow").await;
    let marker = format!("a line written at {:?}", std::time::SystemTime::now());
    let log = local.cluster_dir().join("peer-0/logs/kubo.log");
    // Appended as the daemon appends its own lines.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("kubo.log");
    std::io::Write::write_all(&mut file, format!("{marker}\n").as_bytes()).expect("append");
    page.wait_until(
        "the new line, followed without a click",
        Duration::from_secs(20),
        &format!(
            "document.getElementById('log-output').textContent.includes({})",
            json!(marker)
        ),
    )
    .await;
    assert!(
        text_of(page, "#log-state")
            .await
            .starts_with("Following the log of web/peer-0/ipfs")
    );
    page.click("#log-follow").await;
}

/// Evaluates `expression` (a string) until `found` finds what it waits for in it; fails naming
/// `what` and the last text.
async fn wait_text<T>(
    page: &Page<'_>,
    what: &str,
    expression: &str,
    found: impl Fn(&str) -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let value = page.eval(expression).await;
        let text = value.as_str().unwrap_or_default();
        if let Some(hit) = found(text) {
            return hit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; last text:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of the configuration input of `field`.
fn config_input(field: &str) -> String {
    format!("#cluster-web-config input[data-field=\"{field}\"]")
}

async fn config_result(page: &Page<'_>, what: &str, starts: &str) -> String {
    let expr = format!(
        "(() => {{ const t = document.querySelector('#cluster-web-config .config-result').textContent; \
         return t.startsWith({}) && t; }})()",
        json!(starts)
    );
    page.wait_until(what, WAIT, &expr)
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The spec shown whole; its safe fields changed with the token; refusals named.
async fn configuration(page: &Page<'_>, local: &LocalUp, base: &str, token: &str, out: &Path) {
    page.click("#cluster-web-config > summary").await;
    page.wait_until(
        "the configuration form with the spec's values",
        WAIT,
        &format!(
            "(() => {{ const v = (f) => document.querySelector({}.replace('F', f)); \
             const r = v('spec.replicas'); return r && r.value === '2' \
             && v('spec.health.autoHeal').checked && v('spec.health.probeInterval').value === '2s'; }})()",
            json!(config_input("F"))
        ),
    )
    .await;
    let spec = text_of(page, "#cluster-web-config pre.spec").await;
    assert!(
        spec.contains("\"image\": \"ipfs/kubo:") && spec.contains("\"consensus\": \"crdt\""),
        "{spec}"
    );
    let editable = page
        .eval("document.querySelectorAll('#cluster-web-config form input').length")
        .await;
    assert_eq!(editable, 8, "only the safe fields are editable");

    // Without the token: refused, nothing changed.
    page.click(&config_input("spec.health.autoHeal")).await;
    page.click("#cluster-web-config button[type=submit]").await;
    let refused = config_result(page, "the refusal without the token", "Not saved: 401").await;
    assert!(refused.contains("Enter the dashboard token"), "{refused}");
    assert_eq!(local.state()["spec"]["health"]["autoHeal"], true);

    // With it: saved, applied by the supervisor as the next generation.
    page.type_into("#token", token).await;
    page.click("#token-form button[type=submit]").await;
    page.click("#cluster-web-config button[type=submit]").await;
    let saved = config_result(page, "the change saved", "Saved").await;
    assert_eq!(
        saved,
        "Saved as generation 2: spec.health.autoHeal true → false."
    );
    let state = local.state();
    assert_eq!(
        (&state["generation"], &state["spec"]["health"]["autoHeal"]),
        (&json!(2), &json!(false))
    );
    page.screenshot_of("#cluster-web-config", &out.join("config.png"))
        .await;

    // A value the rules refuse: the field is named, marked and focused.
    page.eval(&format!(
        "document.querySelector({}).value = ''",
        json!(config_input("spec.health.probeTimeout"))
    ))
    .await;
    page.type_into(&config_input("spec.health.probeTimeout"), "5s")
        .await;
    page.click("#cluster-web-config button[type=submit]").await;
    let refused = config_result(page, "the refused timeout", "Not saved: 422").await;
    assert!(
        refused.contains("spec.health.probeTimeout") && refused.contains("shorter than"),
        "{refused}"
    );
    let marked = page
        .eval(&format!(
            "(() => {{ const i = document.querySelector({}); return [i.getAttribute('aria-invalid'), document.activeElement === i]; }})()",
            json!(config_input("spec.health.probeTimeout"))
        ))
        .await;
    assert_eq!(marked, json!(["true", true]));
    page.screenshot_of("#cluster-web-config", &out.join("config-refused.png"))
        .await;
    page.click("#cluster-web-config button[type=button]").await;
    config_result(page, "the form reloaded", "Reloaded").await;
    assert_eq!(
        local.state()["generation"],
        2,
        "a refused change is not saved"
    );
    every_other_field_is_refused(base, token).await;
}

/// Through the API: a read-only field is refused naming it, a stale generation too.
async fn every_other_field_is_refused(base: &str, token: &str) {
    let url = format!("{base}/api/dashboard/clusters/web/spec");
    let http = http();
    let resp = http.get(&url).send().await.expect("GET spec");
    assert_eq!(resp.headers()["etag"], "\"2\"");
    for (body, code, field) in [
        (
            json!({"kubo": {"image": "ipfs/kubo:v0.43.0"}}),
            "read_only_field",
            "spec.kubo.image",
        ),
        (
            json!({"networking": {"gateway": {"enabled": true}}}),
            "read_only_field",
            "spec.networking.gateway.enabled",
        ),
        (
            json!({"replicas": 2, "storage": "1Gi"}),
            "unknown_field",
            "spec.storage",
        ),
    ] {
        let resp = http
            .patch(&url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("PATCH");
        let status = resp.status().as_u16();
        let answer: Value = resp.json().await.expect("json");
        assert_eq!(
            (status, &answer["error"]["code"]),
            (422, &json!(code)),
            "{body}: {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(&format!("{field}: ")), "{message}");
    }
    let stale = http
        .patch(&url)
        .bearer_auth(token)
        .header("if-match", "\"1\"")
        .json(&json!({"paused": true}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(stale.status().as_u16(), 412);
    let anonymous = http
        .patch(&url)
        .json(&json!({"paused": true}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(anonymous.status().as_u16(), 401);
}

/// The healing timeline, one `action|text` line per step, newest first.
const TIMELINE: &str = "[...document.querySelectorAll('#cluster-web ol.timeline li')].map((l) => \
     `${l.getAttribute('data-action')}|${l.textContent}`).join('\\n')";

/// The newest step of `action` whose text has `result`, without the action.
fn step_of(timeline: &str, action: &str, result: &str) -> Option<String> {
    let prefix = format!("{action}|");
    timeline
        .lines()
        .find(|l| l.starts_with(&prefix) && l.contains(result))
        .map(|l| l[prefix.len()..].to_owned())
}

/// Kills peer-1's Kubo; returns its PID.
fn kill_kubo_of_peer_1(local: &LocalUp) -> i32 {
    let status = local.status().expect("status.json");
    let kubo = status.peers[1].kubo_pid.expect("peer-1's Kubo runs");
    kill(Pid::from_raw(kubo), Signal::SIGKILL).expect("kill Kubo of peer-1");
    kubo
}

/// A daemon stopped while healing is off: the peer is shown in trouble and stays so, the
/// timeline says what would be done and why not; healing switched back on from the page brings
/// it back (as `local up -f` would), and a daemon that exits then is healed: the timeline tells
/// what was done, why, and the result.
async fn trouble_and_healing(page: &Page<'_>, local: &LocalUp, out: &Path) {
    let kubo = kill_kubo_of_peer_1(local);
    let row = page
        .wait_until(
            "peer-1 shown in trouble",
            WAIT,
            &format!(
                "(() => {{ const r = {}; return r && r.State !== 'Healthy' && r.State !== 'Starting' && r; }})()",
                peer_row("web", "peer-1")
            ),
        )
        .await;
    assert!(
        row["Last error"].as_str().is_some_and(|e| e != "none"),
        "{row}"
    );
    page.wait_until(
        "the status line to count the peer in trouble",
        WAIT,
        "document.getElementById('status').textContent.includes('1 of 2 peers healthy')",
    )
    .await;
    let held = wait_text(page, "the restart held back", TIMELINE, |t| {
        step_of(t, "RestartPeer", "result: Skipped")
    })
    .await;
    assert!(
        held.contains("peer-1: would restart it (RestartPeer) because ")
            && held.contains("spec.health.autoHeal is false"),
        "{held}"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let still = page
        .eval(&format!("{}.State", peer_row("web", "peer-1")))
        .await;
    assert_ne!(still, "Healthy", "healed although autoHeal is off");
    page.eval("document.getElementById('cluster-web').scrollIntoView()")
        .await;
    page.screenshot(&out.join("trouble.png")).await;

    page.click(&config_input("spec.health.autoHeal")).await;
    page.click("#cluster-web-config button[type=submit]").await;
    let saved = config_result(page, "healing switched back on", "Saved").await;
    assert_eq!(
        saved,
        "Saved as generation 3: spec.health.autoHeal false → true."
    );
    let healthy = format!(
        "(() => {{ const r = {}; return r && r.State === 'Healthy'; }})()",
        peer_row("web", "peer-1")
    );
    page.wait_until("peer-1 brought back", WAIT, &healthy).await;
    // The restarts for Kubo so far (bringing it back was one; a restarted IPFS Cluster that is
    // slow to answer `/id` may take another, for itself).
    let for_kubo = |t: &str| {
        t.lines()
            .filter(|l| l.starts_with("RestartPeer|") && l.contains("result: Succeeded"))
            .filter(|l| l.contains("Kubo"))
            .map(|l| l["RestartPeer|".len()..].to_owned())
            .collect::<Vec<_>>()
    };
    let before = for_kubo(page.eval(TIMELINE).await.as_str().unwrap_or_default()).len();
    let again = kill_kubo_of_peer_1(local);
    assert_ne!(again, kubo, "a new Kubo ran");
    let step = wait_text(page, "the restart in the healing timeline", TIMELINE, |t| {
        let steps = for_kubo(t);
        // The timeline lists the newest step first.
        (steps.len() > before).then(|| steps[0].clone())
    })
    .await;
    assert!(
        step.contains("peer-1: restarted it (RestartPeer) because ") && step.contains("Kubo"),
        "{step}"
    );
    page.wait_until("peer-1 healed", WAIT, &healthy).await;
    let now = local.status().and_then(|s| s.peers[1].kubo_pid);
    assert!(
        now.is_some_and(|p| p != again),
        "Kubo of peer-1 runs again: {now:?}\n{}",
        local.output()
    );
}

/// replicas 2 -> 3 from the page: the supervisor brings up the third peer as `local up -f` would.
async fn scale_up(page: &Page<'_>, local: &LocalUp) {
    page.eval(&format!(
        "document.querySelector({}).value = ''",
        json!(config_input("spec.replicas"))
    ))
    .await;
    page.type_into(&config_input("spec.replicas"), "3").await;
    page.click("#cluster-web-config button[type=submit]").await;
    let saved = config_result(page, "the scale saved", "Saved").await;
    assert_eq!(saved, "Saved as generation 4: spec.replicas 2 → 3.");
    page.wait_until(
        "peer-2 started and Healthy",
        Duration::from_secs(180),
        &format!(
            "(() => {{ const r = {}; return r && r.State === 'Healthy'; }})()",
            peer_row("web", "peer-2")
        ),
    )
    .await;
    let state = local.state();
    assert_eq!(
        (
            &state["spec"]["replicas"],
            state["peers"].as_array().map(Vec::len)
        ),
        (&json!(3), Some(3))
    );
    page.wait_until(
        "the operator to say it applied the generation",
        WAIT,
        "document.querySelector('#cluster-web-config .rollout').textContent === 'The operator has applied generation 4.'",
    )
    .await;
}

/// Every control is named and reached with Tab in page order; a checkbox toggles with Space; the
/// page reads without its style sheet; nothing was fetched from elsewhere.
async fn keyboard_and_plain_page(page: &Page<'_>, base: &str, out: &Path) {
    let unnamed = page
        .eval(
            "[...document.querySelectorAll('button, input, select, summary, a[href], pre[tabindex]')] \
             .filter((e) => !((e.labels && e.labels.length) || e.getAttribute('aria-label') \
               || e.getAttribute('aria-labelledby') || e.textContent.trim())) \
             .map((e) => e.outerHTML.slice(0, 80))",
        )
        .await;
    assert_eq!(unnamed, json!([]), "controls without a name");
    assert_eq!(
        page.eval("document.querySelectorAll('[tabindex]:not([tabindex=\"0\"]):not([tabindex=\"-1\"])').length").await,
        0,
        "no tab order of its own"
    );
    page.eval("document.getElementById('token').focus()").await;
    let mut order = Vec::new();
    for _ in 0..3 {
        page.press("Tab").await;
        order.push(
            page.eval("document.activeElement.textContent.trim() || document.activeElement.id")
                .await,
        );
    }
    assert_eq!(
        order,
        [json!("Use token"), json!("Forget token"), json!("Restart")]
    );
    let paused = config_input("spec.paused");
    page.eval(&format!(
        "document.querySelector({}).focus()",
        json!(paused)
    ))
    .await;
    page.press("Space").await;
    assert_eq!(
        page.eval(&format!(
            "document.querySelector({}).checked",
            json!(paused)
        ))
        .await,
        true
    );

    page.eval("document.querySelector('link[rel=stylesheet]').disabled = true")
        .await;
    let plain = page
        .eval(
            "(() => { const svgs = [...document.querySelectorAll('#cluster-web figure svg.chart-svg')]; \
             return svgs.length === 3 && svgs.every((s) => s.getAttribute('width') && \
             s.querySelector('polyline[stroke]')) && document.getElementById('log-output').offsetHeight > 0 \
             && document.querySelector('#cluster-web table.peers').offsetHeight > 0; })()",
        )
        .await;
    assert_eq!(plain, true, "the page without its style sheet");
    page.screenshot(&out.join("unstyled.png")).await;
    page.eval("document.querySelector('link[rel=stylesheet]').disabled = false")
        .await;

    let elsewhere: Vec<String> = page
        .requested_urls()
        .into_iter()
        .filter(|u| !u.starts_with(base) && !u.starts_with("data:"))
        .collect();
    assert!(elsewhere.is_empty(), "requests to elsewhere: {elsewhere:?}");
    let spec_url = "/api/dashboard/clusters/web/spec";
    let unexpected: Vec<String> = page
        .problems()
        .into_iter()
        .filter(|p| !(p.contains(spec_url) && (p.contains("401") || p.contains("422"))))
        // A peer's history before its first sample: the page shows "No samples yet".
        .filter(|p| !(p.contains("/api/dashboard/history/") && p.contains("404")))
        .collect();
    assert_eq!(
        unexpected,
        Vec::<String>::new(),
        "problems seen by the browser"
    );
}
