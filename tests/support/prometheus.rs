//! A real Prometheus of the test world (`scripts/test-world.sh build prometheus`) on loopback: a
//! free port, its own temporary directory and TSDB, short scrape and evaluation intervals, the
//! scrape targets and rule files a test gives. Stopped when dropped.
//!
//! Rule files are loaded from a copy whose `for:` durations are shortened (`Rules::for_duration`),
//! so that an alert meant to wait minutes before firing fires within a test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::process::{Daemon, free_port};
use super::tools::binary;
use super::wait_for;

/// The `prometheus` binary of the test world (fails naming the build command when missing).
pub fn prometheus_binary() -> PathBuf {
    binary("prometheus", "prometheus")
}

/// The `promtool` binary of the test world (fails naming the build command when missing).
pub fn promtool_binary() -> PathBuf {
    binary("prometheus", "promtool")
}

/// One scrape job: `targets` are `host:port` on loopback, scraped at `metrics_path`.
pub struct ScrapeJob {
    pub job: String,
    pub targets: Vec<String>,
    pub metrics_path: String,
}

impl ScrapeJob {
    /// A job scraping `/metrics` of `target` (`127.0.0.1:PORT`).
    pub fn new(job: &str, target: &str) -> ScrapeJob {
        ScrapeJob {
            job: job.to_owned(),
            targets: vec![target.to_owned()],
            metrics_path: "/metrics".to_owned(),
        }
    }
}

/// What a test's Prometheus scrapes and evaluates.
#[derive(Default)]
pub struct Config {
    /// Scrape and rule evaluation interval (default 1 s).
    pub interval: Option<Duration>,
    pub scrape: Vec<ScrapeJob>,
    /// Rule files, loaded as they are unless `for_duration` is set.
    pub rule_files: Vec<PathBuf>,
    /// Replaces every rule's `for:` (and `keep_firing_for:`) with this duration.
    pub for_duration: Option<Duration>,
}

/// A running Prometheus. Dropping it stops the process and removes its directory.
pub struct Prometheus {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub http: reqwest::Client,
    daemon: Daemon,
    dir: tempfile::TempDir,
}

/// The answer of `/api/v1/query` that was not a success, with Prometheus's own words.
#[derive(Debug)]
pub struct QueryError {
    pub status: u16,
    pub error_type: String,
    pub error: String,
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HTTP {} {}: {}",
            self.status, self.error_type, self.error
        )
    }
}

/// A Prometheus duration (`1500ms`).
fn duration(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

impl Prometheus {
    /// Starts Prometheus with `config` and waits until it answers `/-/ready` (30 s at most).
    pub async fn start(config: Config) -> Prometheus {
        ipfs_kit_operator::tls::ensure_crypto_provider();
        let dir = tempfile::Builder::new()
            .prefix("ipfs-kit-prometheus-")
            .tempdir()
            .expect("tempdir");
        let rule_files = config
            .rule_files
            .iter()
            .enumerate()
            .map(|(i, file)| match config.for_duration {
                Some(d) => shortened_rules(file, d, &dir.path().join(format!("rules-{i}.yaml"))),
                None => file.clone(),
            })
            .collect::<Vec<_>>();
        let interval = config.interval.unwrap_or(Duration::from_secs(1));
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config_yaml(interval, &config.scrape, &rule_files))
            .expect("write prometheus.yml");
        let port = free_port();
        let mut cmd = Command::new(prometheus_binary());
        cmd.arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .current_dir(dir.path());
        let daemon = Daemon::spawn("prometheus", cmd, dir.path()).expect("start prometheus");
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        let mut prometheus = Prometheus {
            base: format!("http://127.0.0.1:{port}"),
            http,
            daemon,
            dir,
        };
        prometheus.wait_ready().await;
        prometheus
    }

    async fn wait_ready(&mut self) {
        let url = format!("{}/-/ready", self.base);
        let http = self.http.clone();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Ok(resp) = http.get(&url).send().await
                    && resp.status().is_success()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        if ready.is_err() {
            self.daemon.assert_running();
            panic!(
                "prometheus did not answer {url} within 30 s; its log:\n{}",
                self.daemon.log_tail(30)
            );
        }
    }

    /// The directory of its configuration, data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines Prometheus logged, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.daemon.log_tail(lines)
    }

    /// `GET /api/v1/query?query=EXPR` now: the `data.result` array (the vector's samples, each
    /// `{"metric": {...}, "value": [t, "v"]}`), or Prometheus's error (a parse error is HTTP 400
    /// with `errorType` `bad_data`).
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, QueryError> {
        let resp = self
            .http
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", expr)])
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET /api/v1/query {expr}: {e}"));
        let status = resp.status().as_u16();
        let body: Value = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("/api/v1/query {expr}: not JSON: {e}"));
        if status != 200 || body["status"] != "success" {
            return Err(QueryError {
                status,
                error_type: body["errorType"].as_str().unwrap_or_default().to_owned(),
                error: body["error"].as_str().unwrap_or_default().to_owned(),
            });
        }
        let data = &body["data"];
        Ok(match data["resultType"].as_str() {
            // A scalar or string answer as one sample without labels.
            Some("scalar") | Some("string") => vec![serde_json::json!({
                "metric": {},
                "value": data["result"].clone(),
            })],
            _ => data["result"].as_array().cloned().unwrap_or_default(),
        })
    }

    /// The samples of `expr` now; fails the test on a query error.
    pub async fn vector(&self, expr: &str) -> Vec<Value> {
        self.query(expr)
            .await
            .unwrap_or_else(|e| panic!("query {expr}: {e}"))
    }

    /// `GET /api/v1/alerts`: every pending and firing alert (`labels`, `annotations`, `state`,
    /// `activeAt`, `value`).
    pub async fn alerts(&self) -> Vec<Value> {
        let body: Value = self
            .http
            .get(format!("{}/api/v1/alerts", self.base))
            .send()
            .await
            .expect("GET /api/v1/alerts")
            .json()
            .await
            .expect("/api/v1/alerts JSON");
        assert_eq!(body["status"], "success", "/api/v1/alerts: {body}");
        body["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The alerts named `alertname` whose labels include every pair of `labels`.
    pub async fn alerts_named(&self, alertname: &str, labels: &[(&str, &str)]) -> Vec<Value> {
        self.alerts()
            .await
            .into_iter()
            .filter(|a| a["labels"]["alertname"] == alertname)
            .filter(|a| labels.iter().all(|(k, v)| a["labels"][*k] == *v))
            .collect()
    }

    /// Waits (up to `timeout`) until an alert `alertname` with `labels` is in `state`
    /// (`pending` or `firing`); returns it.
    pub async fn wait_alert(
        &self,
        alertname: &str,
        labels: &[(&str, &str)],
        state: &str,
        timeout: Duration,
    ) -> Value {
        wait_for(
            &format!("alert {alertname} {labels:?} to be {state} in Prometheus"),
            timeout,
            Duration::from_millis(500),
            || async {
                self.alerts_named(alertname, labels)
                    .await
                    .into_iter()
                    .find(|a| a["state"] == state)
            },
        )
        .await
    }

    /// Waits (up to `timeout`) until no alert `alertname` with `labels` is pending or firing.
    pub async fn wait_alert_gone(
        &self,
        alertname: &str,
        labels: &[(&str, &str)],
        timeout: Duration,
    ) {
        wait_for(
            &format!("alert {alertname} {labels:?} to resolve in Prometheus"),
            timeout,
            Duration::from_millis(500),
            || async {
                self.alerts_named(alertname, labels)
                    .await
                    .is_empty()
                    .then_some(())
            },
        )
        .await
    }

    /// Waits (up to `timeout`) until every scrape target is `up` (the last scrape succeeded).
    pub async fn wait_targets_up(&self, timeout: Duration) {
        wait_for(
            "every scrape target to be up",
            timeout,
            Duration::from_millis(300),
            || async {
                let up = self.query("up").await.ok()?;
                (!up.is_empty() && up.iter().all(|s| s["value"][1] == "1")).then_some(())
            },
        )
        .await
    }
}

/// The configuration file: global intervals, the scrape jobs, the rule files.
fn config_yaml(interval: Duration, scrape: &[ScrapeJob], rule_files: &[PathBuf]) -> String {
    let jobs: Vec<Value> = scrape
        .iter()
        .map(|j| {
            serde_json::json!({
                "job_name": j.job,
                "metrics_path": j.metrics_path,
                "static_configs": [{"targets": j.targets}],
            })
        })
        .collect();
    let config = serde_json::json!({
        "global": {
            "scrape_interval": duration(interval),
            "scrape_timeout": duration(interval),
            "evaluation_interval": duration(interval),
        },
        "rule_files": rule_files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        "scrape_configs": jobs,
    });
    serde_yaml::to_string(&config).expect("prometheus.yml as YAML")
}

/// Writes to `to` a copy of the rule file `from` with every rule's `for:` and `keep_firing_for:`
/// set to `wait`; returns `to`.
fn shortened_rules(from: &Path, wait: Duration, to: &Path) -> PathBuf {
    let text = std::fs::read_to_string(from)
        .unwrap_or_else(|e| panic!("reading rule file {}: {e}", from.display()));
    let mut rules: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("rule file {}: {e}", from.display()));
    let short = serde_yaml::Value::from(duration(wait));
    let groups = rules["groups"]
        .as_sequence_mut()
        .unwrap_or_else(|| panic!("rule file {} has no groups", from.display()));
    for group in groups {
        for rule in group["rules"].as_sequence_mut().into_iter().flatten() {
            let Some(rule) = rule.as_mapping_mut() else {
                continue;
            };
            for key in ["for", "keep_firing_for"] {
                if rule.contains_key(key) {
                    rule.insert(key.into(), short.clone());
                }
            }
        }
    }
    std::fs::write(to, serde_yaml::to_string(&rules).expect("rules as YAML"))
        .unwrap_or_else(|e| panic!("writing {}: {e}", to.display()));
    to.to_path_buf()
}

/// Runs `promtool` with `args` from the repository's root; returns (success, stdout + stderr).
pub fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new(promtool_binary())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("running promtool {}: {e}", args.join(" ")));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// One PromQL expression of a Grafana dashboard: a panel target, or the series selector of a
/// `label_values(selector, label)` variable query.
#[derive(Debug, Clone)]
pub struct DashboardQuery {
    /// `panel "Title" (id 3) target A`, or `variable namespace`.
    pub origin: String,
    pub expr: String,
}

/// The repository's dashboard (`dashboards/ipfs-kit.json`) as JSON.
pub fn repository_dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/ipfs-kit.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every PromQL expression of `dashboard`: the targets of every panel (rows' nested panels
/// included) and the selectors of its `label_values` variables.
pub fn dashboard_queries(dashboard: &Value) -> Vec<DashboardQuery> {
    let mut queries = Vec::new();
    let mut panels: Vec<&Value> = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        panels.push(panel);
        panels.extend(panel["panels"].as_array().into_iter().flatten());
    }
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(DashboardQuery {
                origin: format!(
                    "panel {:?} (id {}) target {}",
                    panel["title"].as_str().unwrap_or_default(),
                    panel["id"],
                    target["refId"].as_str().unwrap_or_default()
                ),
                expr: target["expr"].as_str().unwrap_or_default().to_owned(),
            });
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if var["type"] != "query" {
            continue;
        }
        let query = var["query"]["query"]
            .as_str()
            .or_else(|| var["query"].as_str())
            .unwrap_or_default();
        let selector = query
            .strip_prefix("label_values(")
            .and_then(|q| q.rsplit_once(','))
            .map(|(selector, _label)| selector.trim().to_owned())
            .unwrap_or_else(|| query.to_owned());
        queries.push(DashboardQuery {
            origin: format!("variable {}", var["name"].as_str().unwrap_or_default()),
            expr: selector,
        });
    }
    queries
}

/// `expr` with the dashboard's variables replaced as Grafana does: `$namespace` and `$cluster` by
/// their "All" value `.*`, `$__rate_interval` by `rate_interval`.
pub fn substitute(expr: &str, rate_interval: &str) -> String {
    expr.replace("$__rate_interval", rate_interval)
        .replace("${namespace}", ".*")
        .replace("$namespace", ".*")
        .replace("${cluster}", ".*")
        .replace("$cluster", ".*")
}
