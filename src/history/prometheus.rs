//! Longer ranges than the history keeps, read from Prometheus (`--prometheus-url`): the same
//! figures, from the series the operator exports (`ipfs_kit_cluster_health_score`,
//! `ipfs_kit_cluster_phase`, `ipfs_kit_peer_score`, `ipfs_kit_peer_state`,
//! `ipfs_kit_peer_repo_size_bytes`, the bandwidth counters' rates and `ipfs_kit_peer_pins`), by
//! `GET /api/v1/query_range`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{HealthSample, MAX_POINTS, UnixMillis};

/// How long one range query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(15);
/// The smallest step asked of Prometheus (a usual scrape interval).
pub const MIN_STEP: Duration = Duration::from_secs(15);

/// Why Prometheus gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error("--prometheus-url {url:?} is not an http:// or https:// URL")]
    BadUrl { url: String },
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("querying Prometheus at {url}: {source}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Prometheus at {url} refused the query {query:?}: {message}")]
    Refused {
        url: String,
        query: String,
        message: String,
    },
    #[error("{name:?} names no cluster or peer ({expected})")]
    BadName {
        name: String,
        expected: &'static str,
    },
}

/// A Prometheus that scrapes the operator, read for ranges older than the kept history.
#[derive(Clone, Debug)]
pub struct PrometheusRange {
    http: reqwest::Client,
    base: String,
    /// Kubernetes names (`namespace/cluster[/peer]`) or local ones (`cluster[/peer]`).
    namespaced: bool,
}

/// The labels that select one series' figures.
struct Selector {
    /// `namespace="..",cluster=".."[,peer=".."]`.
    matchers: String,
    peer: bool,
}

#[derive(Deserialize)]
struct RangeAnswer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<RangeData>,
}

#[derive(Deserialize)]
struct RangeData {
    result: Vec<RangeSeries>,
}

#[derive(Deserialize)]
struct RangeSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

/// The figures of one step, as they are read.
#[derive(Default)]
struct Row {
    score: Option<f64>,
    state: Option<String>,
    repo: Option<f64>,
    rate_in: Option<f64>,
    rate_out: Option<f64>,
    pins: [Option<f64>; 4],
}

const PIN_STATES: [&str; 4] = ["pinned", "queued", "pinning", "error"];

/// The command line's check of `--prometheus-url`.
pub fn parse_url(url: &str) -> Result<String, String> {
    PrometheusRange::new(url, false)
        .map(|_| url.to_owned())
        .map_err(|e| e.to_string())
}

impl PrometheusRange {
    /// A reader of the Prometheus at `url`; `namespaced` for the Kubernetes dashboard (history
    /// names `namespace/cluster[/peer]`), not for local mode (`cluster[/peer]`).
    pub fn new(url: &str, namespaced: bool) -> Result<PrometheusRange, PrometheusError> {
        let base = url.trim_end_matches('/');
        let scheme_len = if base.starts_with("http://") {
            "http://".len()
        } else if base.starts_with("https://") {
            "https://".len()
        } else {
            0
        };
        if scheme_len == 0 || base.len() <= scheme_len {
            return Err(PrometheusError::BadUrl {
                url: url.to_owned(),
            });
        }
        crate::tls::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(QUERY_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(PrometheusError::Client)?;
        Ok(PrometheusRange {
            http,
            base: base.to_owned(),
            namespaced,
        })
    }

    /// The step for a range from `start` to `end`: `asked`, else one that keeps the answer
    /// under [`MAX_POINTS`], never under [`MIN_STEP`].
    pub fn step(start: UnixMillis, end: UnixMillis, asked: Option<Duration>) -> Duration {
        if let Some(step) = asked {
            return step;
        }
        let span = (end - start).max(0) as u64;
        let per_point = span.div_ceil(MAX_POINTS as u64 - 1);
        Duration::from_secs(per_point.div_ceil(1000)).max(MIN_STEP)
    }

    fn selector(&self, name: &str) -> Result<Selector, PrometheusError> {
        let parts: Vec<&str> = name.split('/').collect();
        let (namespace, rest) = if self.namespaced {
            match parts.split_first() {
                Some((ns, rest)) if !rest.is_empty() => (*ns, rest),
                _ => {
                    return Err(PrometheusError::BadName {
                        name: name.to_owned(),
                        expected: "namespace/cluster or namespace/cluster/peer",
                    });
                }
            }
        } else {
            ("", parts.as_slice())
        };
        let quote = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
        let (cluster, peer) = match rest {
            [cluster] => (*cluster, None),
            [cluster, peer] => (*cluster, Some(*peer)),
            _ => {
                return Err(PrometheusError::BadName {
                    name: name.to_owned(),
                    expected: if self.namespaced {
                        "namespace/cluster or namespace/cluster/peer"
                    } else {
                        "cluster or cluster/peer"
                    },
                });
            }
        };
        let mut matchers = format!(
            "namespace=\"{}\",cluster=\"{}\"",
            quote(namespace),
            quote(cluster)
        );
        if let Some(peer) = peer {
            matchers.push_str(&format!(",peer=\"{}\"", quote(peer)));
        }
        Ok(Selector {
            matchers,
            peer: peer.is_some(),
        })
    }

    /// The samples of `name` from `start` to `end`, one per `step` where Prometheus has data.
    pub async fn samples(
        &self,
        name: &str,
        start: UnixMillis,
        end: UnixMillis,
        step: Duration,
    ) -> Result<Vec<HealthSample>, PrometheusError> {
        let sel = self.selector(name)?;
        let m = &sel.matchers;
        let mut rows: BTreeMap<i64, Row> = BTreeMap::new();
        if sel.peer {
            // A rate over at least two scrapes of a usual interval.
            let window = step.max(Duration::from_secs(60)).as_secs();
            let queries = [
                format!("ipfs_kit_peer_score{{{m}}}"),
                format!("ipfs_kit_peer_state{{{m}}} == 1"),
                format!("ipfs_kit_peer_repo_size_bytes{{{m}}}"),
                format!("rate(ipfs_kit_peer_received_bytes_total{{{m}}}[{window}s])"),
                format!("rate(ipfs_kit_peer_sent_bytes_total{{{m}}}[{window}s])"),
                format!("ipfs_kit_peer_pins{{{m}}}"),
            ];
            for (i, query) in queries.iter().enumerate() {
                for series in self.query_range(query, start, end, step).await? {
                    fill(&mut rows, &series, |row, v| match i {
                        0 => row.score = Some(v),
                        1 => row.state = series.metric.get("state").cloned(),
                        2 => row.repo = Some(v),
                        3 => row.rate_in = Some(v),
                        4 => row.rate_out = Some(v),
                        _ => {
                            let state = series.metric.get("state").map(String::as_str);
                            if let Some(k) = PIN_STATES.iter().position(|s| Some(*s) == state) {
                                row.pins[k] = Some(v);
                            }
                        }
                    });
                }
            }
        } else {
            let score = format!("ipfs_kit_cluster_health_score{{{m}}}");
            let phase = format!("ipfs_kit_cluster_phase{{{m}}} == 1");
            for series in self.query_range(&score, start, end, step).await? {
                fill(&mut rows, &series, |row, v| row.score = Some(v));
            }
            for series in self.query_range(&phase, start, end, step).await? {
                fill(&mut rows, &series, |row, _| {
                    row.state = series.metric.get("phase").cloned()
                });
            }
        }
        Ok(rows.into_iter().map(|(t, row)| sample(t, row)).collect())
    }

    async fn query_range(
        &self,
        query: &str,
        start: UnixMillis,
        end: UnixMillis,
        step: Duration,
    ) -> Result<Vec<RangeSeries>, PrometheusError> {
        let url = format!("{}/api/v1/query_range", self.base);
        let secs = |ms: UnixMillis| format!("{:.3}", ms as f64 / 1000.0);
        let request = |source| PrometheusError::Request {
            url: self.base.clone(),
            source,
        };
        let answer: RangeAnswer = self
            .http
            .get(&url)
            .query(&[
                ("query", query.to_owned()),
                ("start", secs(start)),
                ("end", secs(end)),
                ("step", format!("{}s", step.as_secs().max(1))),
            ])
            .send()
            .await
            .map_err(request)?
            .json()
            .await
            .map_err(request)?;
        match (answer.status.as_str(), answer.data) {
            ("success", Some(data)) => Ok(data.result),
            _ => Err(PrometheusError::Refused {
                url: self.base.clone(),
                query: query.to_owned(),
                message: answer.error.unwrap_or_else(|| answer.status.clone()),
            }),
        }
    }
}

/// Calls `set` with the row of each of the series' timestamps and its value.
fn fill(rows: &mut BTreeMap<i64, Row>, series: &RangeSeries, mut set: impl FnMut(&mut Row, f64)) {
    for (t, value) in &series.values {
        if let Ok(v) = value.parse::<f64>()
            && v.is_finite()
        {
            set(rows.entry((t * 1000.0).round() as i64).or_default(), v);
        }
    }
}

fn sample(t: UnixMillis, row: Row) -> HealthSample {
    let whole = |v: Option<f64>| v.map(|v| v.round() as i64);
    HealthSample {
        time: k8s_openapi::jiff::Timestamp::from_millisecond(t)
            .map(|t| t.to_string())
            .unwrap_or_default(),
        score: row.score.map(|s| s.round() as i32),
        state: row.state.unwrap_or_default(),
        repo_size: whole(row.repo),
        bytes_in_per_second: row.rate_in,
        bytes_out_per_second: row.rate_out,
        pins_pinned: whole(row.pins[0]),
        pins_queued: whole(row.pins[1]),
        pins_pinning: whole(row.pins[2]),
        pins_error: whole(row.pins[3]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_select_the_series_of_their_runtime() {
        let kube = PrometheusRange::new("http://prometheus:9090/", true).expect("kube");
        let local = PrometheusRange::new("https://127.0.0.1:9090", false).expect("local");
        let m = |r: &PrometheusRange, n: &str| r.selector(n).map(|s| (s.matchers, s.peer));
        assert_eq!(
            m(&kube, "team/demo").ok(),
            Some((r#"namespace="team",cluster="demo""#.to_owned(), false))
        );
        assert_eq!(
            m(&kube, "team/demo/demo-1").ok(),
            Some((
                r#"namespace="team",cluster="demo",peer="demo-1""#.to_owned(),
                true
            ))
        );
        assert_eq!(
            m(&local, "demo/demo-1").ok(),
            Some((
                r#"namespace="",cluster="demo",peer="demo-1""#.to_owned(),
                true
            ))
        );
        for (r, bad) in [(&kube, "demo"), (&kube, "a/b/c/d"), (&local, "a/b/c")] {
            let err = m(r, bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(bad), "{bad}: {err}");
        }
        // A quote cannot end the matcher early.
        assert_eq!(
            m(&local, "a\"b").ok().map(|s| s.0),
            Some(r#"namespace="",cluster="a\"b""#.to_owned())
        );
    }

    #[test]
    fn only_http_urls_are_accepted() {
        for bad in ["", "prometheus:9090", "http://", "ftp://x"] {
            let err = PrometheusRange::new(bad, false)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("--prometheus-url"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_step_keeps_an_answer_under_the_point_limit() {
        let day = 24 * 3600 * 1000;
        assert_eq!(PrometheusRange::step(0, 600_000, None), MIN_STEP);
        let step = PrometheusRange::step(0, 7 * day, None);
        assert!(
            7 * day / (step.as_millis() as i64) < MAX_POINTS as i64,
            "{step:?}"
        );
        assert_eq!(
            PrometheusRange::step(0, day, Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
    }
}
