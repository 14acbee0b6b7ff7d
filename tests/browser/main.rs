//! The dashboard's web page in a real headless Chromium (Debian's `chromium`), driven over the
//! DevTools protocol: here against the dashboard served in-process on loopback and fed with
//! published snapshots (exact states on demand); in `local` against `local up` with real daemons.

#[path = "../support/mod.rs"]
mod support;

mod cdp;
mod local;

use std::path::PathBuf;
use std::time::Duration;

use ipfs_kit_operator::api::{IpfsClusterStatus, PeerStatus};
use ipfs_kit_operator::dashboard::{
    ActionKind, ActionRequest, ClusterEntry, Daemon, Dashboard, HistorySource, Publisher, Snapshot,
    Token, router,
};
use ipfs_kit_operator::history::History;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use cdp::{Browser, Page};

const TOKEN: &str = "browser-test-token-0123456789";
/// Generous: Chromium shares 2 cores with other builds.
const WAIT: Duration = Duration::from_secs(60);

struct Server {
    base: String,
    publisher: Publisher,
    actions: mpsc::Receiver<ActionRequest>,
    round: u32,
    /// The history the page draws; each published round is also one sample (as if each came one
    /// probe interval after the other).
    history: History,
}

async fn serve(auth_reads: bool) -> Server {
    let (dashboard, publisher, actions) = Dashboard::new(Token::new(TOKEN), auth_reads);
    let history = History::in_memory();
    let dashboard = dashboard.with_history(HistorySource::Recorded(history.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    tokio::spawn(async move { axum::serve(listener, router(dashboard)).await });
    Server {
        base,
        publisher,
        actions: actions.receiver,
        round: 0,
        history,
    }
}

/// One peer as the reconciler reports it: `(name, state, score, last error)`.
type PeerSpec<'a> = (&'a str, &'a str, i32, Option<&'a str>);

fn peer((name, state, score, error): PeerSpec<'_>) -> PeerStatus {
    serde_json::from_value(json!({
        "name": name, "state": state, "score": score, "restarts": 0, "swarmPeers": 2,
        "peerId": format!("12D3KooW{name}"), "kuboVersion": "0.42.0", "clusterVersion": "1.1.6",
        "clusterPeersSeen": 3, "repoSize": 1234, "lastError": error,
    }))
    .expect("peer status")
}

impl Server {
    /// Publishes one reconciled round of the cluster `demo`, with its healing records.
    fn publish(&mut self, phase: &str, score: i32, peers: &[PeerSpec<'_>], healing: Value) {
        self.round += 1;
        let status: IpfsClusterStatus = serde_json::from_value(json!({
            "phase": phase, "healthScore": score,
            "readyReplicas": peers.iter().filter(|p| p.1 == "Healthy").count(),
            "peers": peers.iter().copied().map(peer).collect::<Vec<_>>(),
            "healing": healing,
        }))
        .expect("cluster status");
        let minute =
            ipfs_kit_operator::history::now_millis() - 3_600_000 + i64::from(self.round) * 60_000;
        self.history
            .record("demo", Duration::from_secs(60), &status, minute);
        self.publisher.publish(Snapshot {
            clusters: vec![ClusterEntry {
                namespace: None,
                name: "demo".into(),
                replicas: 3,
                paused: false,
                status,
                uid: None,
                resource_version: None,
                processes: Vec::new(),
            }],
            pins: Vec::new(),
            updated_at: Some(format!("2026-11-27T21:{:02}:00Z", self.round)),
        });
    }

    fn publish_healthy(&mut self, score: i32) {
        self.publish(
            "Healthy",
            score,
            &[
                ("demo-0", "Healthy", score, None),
                ("demo-1", "Healthy", score, None),
                ("demo-2", "Healthy", score, None),
            ],
            json!([]),
        );
    }
}

/// The test binary's target directory (`<target>/debug/deps/browser-*` -> `<target>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors()
        .nth(3)
        .expect("target directory above the test executable")
        .to_path_buf()
}

/// The peer tables as a person reads them: one object per row, keyed by column header.
const ROWS: &str = r##"[...document.querySelectorAll("#clusters table.peers")].flatMap((t) => {
    const heads = [...t.querySelectorAll("thead th")].map((h) => h.textContent.trim());
    return [...t.querySelectorAll("tbody tr")].map((r) => {
        const row = {};
        [...r.children].forEach((c, i) => { row[heads[i]] = c.textContent.trim(); });
        row.points = [...r.querySelectorAll("svg polyline")]
            .map((l) => l.getAttribute("points").trim().split(/\s+/).length)
            .reduce((a, b) => a + b, 0);
        return row;
    });
})"##;

async fn rows(page: &Page<'_>) -> Vec<Value> {
    page.eval(ROWS)
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn row<'a>(rows: &'a [Value], peer: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["Peer"] == peer)
        .unwrap_or_else(|| panic!("no row for {peer} in {rows:?}"))
}

async fn text(page: &Page<'_>, id: &str) -> String {
    page.eval(&format!(
        "document.getElementById({id:?}).textContent.trim()"
    ))
    .await
    .as_str()
    .unwrap_or_default()
    .to_string()
}

#[tokio::test]
async fn page_is_embedded_and_served_with_strict_headers() {
    let s = serve(false).await;
    ipfs_kit_operator::tls::ensure_crypto_provider();
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    for (path, kind) in [
        ("/", "text/html"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
        ("/assets/icon.svg", "image/svg+xml"),
    ] {
        let resp = http
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .expect("GET");
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert!(header("content-type").starts_with(kind), "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        let csp = header("content-security-policy");
        for rule in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
        ] {
            assert!(csp.contains(rule), "{path}: CSP {csp:?} lacks {rule}");
        }
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(header("cache-control"), "no-cache", "{path}");
        let etag = header("etag");
        assert!(etag.starts_with('"'), "{path}: ETag {etag:?}");
        let again = http
            .get(format!("{}{path}", s.base))
            .header("if-none-match", &etag)
            .send()
            .await
            .expect("GET");
        assert_eq!(
            again.status().as_u16(),
            304,
            "{path}: revalidation with its ETag"
        );
        let body = resp.text().await.expect("body");
        assert!(!body.is_empty(), "{path}");
    }
    let missing = http
        .get(format!("{}/assets/../Cargo.toml", s.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(missing.status().as_u16(), 404);
    let missing = http
        .get(format!("{}/assets/app.js.map", s.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(missing.status().as_u16(), 404);
}

#[tokio::test]
async fn page_shows_live_status_and_restarts_a_daemon_with_the_token() {
    let mut s = serve(false).await;
    for score in [88, 90, 93, 95, 95] {
        s.publish_healthy(score);
    }
    let out = target_dir().join("browser");
    let browser = Browser::launch("chromium-live", &out);
    let page = browser.new_page(1280, 900).await;
    page.navigate(&format!("{}/", s.base)).await;

    // The published peers, their scores and states, and a sparkline of their 5 samples.
    page.wait_until(
        "three peer rows with a 5-point sparkline each",
        WAIT,
        &format!("(() => {{ const r = {ROWS}; return r.length === 3 && r.every((x) => x.points === 5); }})()"),
    )
    .await;
    let table = rows(&page).await;
    for name in ["demo-0", "demo-1", "demo-2"] {
        let r = row(&table, name);
        assert_eq!(r["State"], "Healthy", "{r}");
        assert_eq!(r["Score"], "95", "{r}");
        assert!(
            r["Kubo (ipfs)"]
                .as_str()
                .is_some_and(|t| t.contains("v0.42.0")),
            "{r}"
        );
    }
    let status = text(&page, "status").await;
    assert!(
        status.contains("Live.") && status.contains("3 of 3 peers healthy"),
        "status line: {status:?}"
    );
    assert!(
        text(&page, "overall").await.contains("95"),
        "overall health"
    );
    assert_eq!(
        page.problems(),
        Vec::<String>::new(),
        "problems while loading the page"
    );

    // A peer goes down: the page changes by itself, without a reload.
    page.eval("window.stillTheSamePage = true").await;
    s.publish(
        "Degraded",
        70,
        &[
            ("demo-0", "Healthy", 95, None),
            (
                "demo-1",
                "Unhealthy",
                20,
                Some("Kubo RPC unresponsive for 3 probes"),
            ),
            ("demo-2", "Healthy", 95, None),
        ],
        json!([{"time": "2026-11-27T21:06:00Z", "peer": "demo-1", "action": "RestartPeer",
                "reason": "Kubo RPC unresponsive for 3 probes", "result": "Pending"}]),
    );
    page.wait_until(
        "demo-1 shown Unhealthy with score 20",
        WAIT,
        &format!(
            "(() => {{ const r = {ROWS}.find((x) => x.Peer === 'demo-1'); \
             return r && r.State === 'Unhealthy' && r.Score === '20' && r.points === 6; }})()"
        ),
    )
    .await;
    assert_eq!(
        page.eval("window.stillTheSamePage === true").await,
        true,
        "the page was reloaded"
    );
    let table = rows(&page).await;
    assert_eq!(
        row(&table, "demo-1")["Last error"],
        "Kubo RPC unresponsive for 3 probes"
    );
    assert_eq!(row(&table, "demo-0")["State"], "Healthy");
    let status = page
        .wait_until(
            "the status line to report the lost peer",
            WAIT,
            "(() => { const t = document.getElementById('status').textContent; \
             return t.includes('2 of 3 peers healthy') && t; })()",
        )
        .await;
    assert!(
        status
            .as_str()
            .is_some_and(|t| t.contains("Overall health 70 (degraded)")),
        "status line: {status}"
    );
    let sparkline = page
        .eval("document.querySelector('tr[data-peer=\"demo-1\"] svg').getAttribute('aria-label')")
        .await;
    assert_eq!(
        sparkline,
        "Score history of demo-1: 6 samples, lowest 20, latest 20"
    );
    // The healing timeline: when (relative, the absolute time on hover), what, why, result.
    let step = page
        .eval(
            "(() => { const s = document.querySelector('#cluster-demo ol.timeline li'); \
             const t = s.querySelector('time'); return [s.textContent, t.getAttribute('title')]; })()",
        )
        .await;
    let words = step[0].as_str().unwrap_or_default();
    assert!(
        words.ends_with(
            " demo-1: restarted it (RestartPeer) because Kubo RPC unresponsive for 3 probes; \
             result: Pending"
        ) && words.contains(" ago "),
        "recent healing: {step}"
    );
    assert_eq!(step[1], "2026-11-27 21:06:00 UTC");
    assert_eq!(
        page.problems(),
        Vec::<String>::new(),
        "problems after the update"
    );

    // Restart without the token: the API's 401 is shown, nothing is requested.
    let restart_kubo = "tr[data-peer=\"demo-1\"] button.restart[data-backend=\"demo/demo-1/ipfs\"]";
    page.click(restart_kubo).await;
    let answer = page
        .wait_until(
            "the refusal of the restart",
            WAIT,
            "(() => { const t = document.getElementById('action-result').textContent; \
             return t.includes('refused') && t; })()",
        )
        .await;
    let answer = answer.as_str().unwrap_or_default();
    assert!(
        answer.contains("401") && answer.contains("Enter the dashboard token"),
        "{answer}"
    );
    assert!(
        s.actions.try_recv().is_err(),
        "a refused restart reached the reconciler"
    );
    let restart_url = "/api/dashboard/backends/demo/demo-1/ipfs/restart";
    let unexpected: Vec<String> = page
        .problems()
        .into_iter()
        .filter(|p| !(p.contains(restart_url) && p.contains("401")))
        .collect();
    assert_eq!(unexpected, Vec::<String>::new());
    assert!(
        page.problems().iter().any(|p| p.contains(restart_url)),
        "the 401 answer was not seen by the browser"
    );

    // With the token: exactly one request for the right daemon, and the page says so.
    page.type_into("#token", TOKEN).await;
    page.click("#token-form button[type=submit]").await;
    page.click(restart_kubo).await;
    let answer = page
        .wait_until(
            "the acceptance of the restart",
            WAIT,
            "(() => { const t = document.getElementById('action-result').textContent; \
             return t.includes('accepted') && t; })()",
        )
        .await;
    let request = tokio::time::timeout(WAIT, s.actions.recv())
        .await
        .expect("the restart request within the timeout")
        .expect("a restart request");
    assert_eq!(request.action, ActionKind::Restart);
    assert_eq!(request.cluster, "demo");
    assert_eq!(request.peer.as_deref(), Some("demo-1"));
    assert_eq!(request.daemon, Some(Daemon::Ipfs));
    assert_eq!(
        answer.as_str().unwrap_or_default(),
        format!(
            "Restart of demo/demo-1/ipfs accepted as request {}: recorded; the reconciler \
             carries it out and the watch URL tells its state.",
            request.id
        )
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        s.actions.try_recv().is_err(),
        "one click must make exactly one request"
    );

    // The token stays in this tab's session storage and headers: never in a URL.
    assert_eq!(
        page.eval("sessionStorage.getItem('ipfs-kit-dashboard-token')")
            .await,
        TOKEN
    );
    assert_eq!(page.eval("localStorage.length").await, 0);
    let leaked: Vec<String> = page
        .requested_urls()
        .into_iter()
        .filter(|u| u.contains(TOKEN))
        .collect();
    assert!(leaked.is_empty(), "the token went into URLs: {leaked:?}");
    let unexpected: Vec<String> = page
        .problems()
        .into_iter()
        .filter(|p| !(p.contains(restart_url) && p.contains("401")))
        .collect();
    assert_eq!(unexpected, Vec::<String>::new());

    let shot = out.join("dashboard.png");
    page.screenshot(&shot).await;
    println!("screenshot: {}", shot.display());
}

#[tokio::test]
async fn page_asks_for_the_token_when_reads_are_authenticated() {
    let mut s = serve(true).await;
    s.publish_healthy(90);
    let out = target_dir().join("browser");
    let browser = Browser::launch("chromium-auth-reads", &out);
    let page = browser.new_page(1024, 768).await;
    page.navigate(&format!("{}/", s.base)).await;
    page.wait_until(
        "the page to ask for the token",
        WAIT,
        "document.getElementById('status').textContent.includes('needs the token')",
    )
    .await;
    assert!(
        rows(&page).await.is_empty(),
        "status shown without the token"
    );

    page.eval("window.stillTheSamePage = true").await;
    page.type_into("#token", TOKEN).await;
    page.click("#token-form button[type=submit]").await;
    page.wait_until(
        "the peers once the token is given",
        WAIT,
        &format!("{ROWS}.length === 3"),
    )
    .await;

    // The event stream now runs with the token: a change shows without a reload.
    s.publish(
        "Degraded",
        60,
        &[
            ("demo-0", "Healthy", 90, None),
            ("demo-1", "Healthy", 90, None),
            ("demo-2", "Degraded", 55, Some("2 pins in error")),
        ],
        json!([]),
    );
    page.wait_until(
        "demo-2 shown Degraded",
        WAIT,
        &format!(
            "{ROWS}.some((r) => r.Peer === 'demo-2' && r.State === 'Degraded' && r.Score === '55')"
        ),
    )
    .await;
    assert_eq!(
        page.eval("window.stillTheSamePage === true").await,
        true,
        "the page was reloaded"
    );
    let status = text(&page, "status").await;
    assert!(
        status.contains("Live.") && status.contains("2 of 3 peers healthy"),
        "{status:?}"
    );
    // Only the reads made before the token was given were refused.
    let unexpected: Vec<String> = page
        .problems()
        .into_iter()
        .filter(|p| {
            !(p.contains("401")
                && (p.contains("/api/dashboard/status") || p.contains("/api/dashboard/events")))
        })
        .collect();
    assert_eq!(unexpected, Vec::<String>::new());
}

/// Before anything is known, and for parts that have nothing to show or cannot be read, the
/// page says so in words instead of showing blanks.
#[tokio::test]
async fn page_says_what_is_empty_and_what_cannot_be_read() {
    let s = serve(false).await;
    let out = target_dir().join("browser");
    let browser = Browser::launch("chromium-empty", &out);
    let page = browser.new_page(1024, 768).await;
    page.navigate(&format!("{}/", s.base)).await;
    page.wait_until(
        "the empty state of the clusters",
        WAIT,
        "(() => { const p = document.getElementById('no-clusters'); return !p.hidden && p.offsetHeight > 0; })()",
    )
    .await;

    // A cluster without peers, history, healing steps or alerts (no sample recorded).
    let status: IpfsClusterStatus =
        serde_json::from_value(json!({"phase": "Pending"})).expect("status");
    s.publisher.publish(Snapshot {
        clusters: vec![ClusterEntry {
            namespace: None,
            name: "fresh".into(),
            replicas: 3,
            paused: false,
            status,
            uid: None,
            resource_version: None,
            processes: Vec::new(),
        }],
        pins: Vec::new(),
        updated_at: Some("2026-11-27T21:00:00Z".into()),
    });
    let texts = page
        .wait_until(
            "the empty states of a new cluster",
            WAIT,
            "(() => { const c = document.getElementById('cluster-fresh'); if (!c) return false; \
             const t = (q) => (c.querySelector(q) || {}).textContent; \
             const note = t('#cluster-fresh-score .chart-note'); if (!note) return false; \
             return [t('table.peers tbody'), note, t('ol.timeline'), t('ul.alerts'), \
                     t('section[aria-labelledby=cluster-fresh-pins] p'), document.getElementById('no-clusters').hidden]; })()",
        )
        .await;
    assert_eq!(
        texts,
        json!([
            "No peers yet: the operator has not started any (see the phase above).",
            "No samples yet: the first is taken one probe interval after the cluster is reconciled.",
            "No healing steps yet: nothing has needed fixing.",
            "No alerts.",
            "No pin counts yet: IPFS Cluster has not answered a probe.",
            true
        ])
    );

    // This dashboard has no log source: choosing a daemon says so.
    s.publisher.publish(Snapshot {
        clusters: vec![ClusterEntry {
            namespace: None,
            name: "fresh".into(),
            replicas: 1,
            paused: false,
            status: serde_json::from_value(json!({"phase": "Progressing",
                "peers": [peer(("fresh-0", "Starting", 0, None))]}))
            .expect("status"),
            uid: None,
            resource_version: None,
            processes: Vec::new(),
        }],
        pins: Vec::new(),
        updated_at: Some("2026-11-27T21:01:00Z".into()),
    });
    page.wait_until(
        "the Logs button of fresh-0",
        WAIT,
        "!!document.querySelector('button.logs[data-backend=\"fresh/fresh-0/ipfs\"]')",
    )
    .await;
    page.click("button.logs[data-backend=\"fresh/fresh-0/ipfs\"]")
        .await;
    page.wait_until(
        "the logs' error state",
        WAIT,
        "document.getElementById('log-state').textContent === \
         'This dashboard has no access to daemon logs.'",
    )
    .await;
    let unexpected: Vec<String> = page
        .problems()
        .into_iter()
        .filter(|p| {
            !((p.contains("/api/dashboard/history/") && p.contains("404"))
                || (p.contains("/api/dashboard/logs/") && p.contains("501")))
        })
        .collect();
    assert_eq!(unexpected, Vec::<String>::new());
}
