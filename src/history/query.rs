//! The query of `/history/{name}`: `since` (an RFC 3339 time, or a duration back from now such as
//! `15m`, `6h`, `2d`) and `step` (a duration to downsample to), and the answer they select from
//! the recorded samples. Pure: every function takes the time.

use std::collections::VecDeque;
use std::time::Duration;

use super::{Answer, DEFAULT_POINTS, HealthSample, MAX_POINTS, Point, UnixMillis};

/// The smallest `step`.
pub const MIN_STEP: Duration = Duration::from_secs(1);

/// A query parameter that cannot be used: the parameter, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{parameter}: {reason}")]
pub struct QueryError {
    /// `since`, `step`, or the unknown parameter's name.
    pub parameter: String,
    pub reason: String,
}

impl QueryError {
    fn new(parameter: &str, reason: impl Into<String>) -> QueryError {
        QueryError {
            parameter: parameter.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The start of the range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    /// A point in time.
    At(UnixMillis),
    /// This long before now.
    Ago(Duration),
}

/// What `/history/{name}` was asked for. The default (no parameter) is the latest
/// [`DEFAULT_POINTS`] samples as recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub since: Option<Since>,
    pub step: Option<Duration>,
}

impl Query {
    /// Parses the raw query string (`since=...&step=...`); every other parameter is refused.
    pub fn parse(raw: Option<&str>) -> Result<Query, QueryError> {
        let mut query = Query::default();
        let pairs = raw.map(form_pairs).transpose()?.unwrap_or_default();
        for (name, value) in pairs {
            match name.as_str() {
                "since" => query.since = Some(parse_since(&value)?),
                "step" => query.step = Some(parse_step(&value)?),
                other => {
                    return Err(QueryError::new(
                        other,
                        "unknown parameter; the parameters are since=<RFC 3339 time or duration \
                         such as 15m> and step=<duration such as 1m>",
                    ));
                }
            }
        }
        Ok(query)
    }

    /// The start of the range in ms, when one was asked for.
    pub fn start(&self, now: UnixMillis) -> Option<UnixMillis> {
        self.since.map(|s| match s {
            Since::At(t) => t,
            Since::Ago(d) => now.saturating_sub(millis(d)),
        })
    }

    /// The answer from `points` (oldest first) of a series sampled every `interval`.
    pub fn answer(
        &self,
        points: &VecDeque<Point>,
        interval: Option<Duration>,
        now: UnixMillis,
    ) -> Answer {
        let since = self.start(now);
        let selected: Vec<&Point> = match since {
            Some(start) => points.iter().filter(|p| p.t >= start).collect(),
            None if self.step.is_none() => {
                let skip = points.len().saturating_sub(DEFAULT_POINTS);
                points.iter().skip(skip).collect()
            }
            None => points.iter().collect(),
        };
        let step = self.step.or_else(|| fitting_step(&selected));
        let samples = match step {
            Some(step) => downsample(&selected, step),
            None => selected.into_iter().map(sample).collect(),
        };
        Answer {
            samples,
            interval,
            step,
            since,
        }
    }
}

/// A step that brings more than [`MAX_POINTS`] samples down to at most that many buckets.
fn fitting_step(points: &[&Point]) -> Option<Duration> {
    if points.len() <= MAX_POINTS {
        return None;
    }
    let span = points.last()?.t - points.first()?.t;
    let per_bucket = (span / (MAX_POINTS as i64 - 1)).max(1000);
    // Whole seconds, rounded up.
    let secs = (per_bucket + 999) / 1000;
    Some(Duration::from_secs(secs as u64))
}

/// `a=b&c=d`, percent-decoded (`+` is a space).
fn form_pairs(raw: &str) -> Result<Vec<(String, String)>, QueryError> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(name).ok_or_else(|| QueryError::new(name, "not valid UTF-8"))?;
            let value = decode(value).ok_or_else(|| QueryError::new(&name, "not valid UTF-8"))?;
            Ok((name, value))
        })
        .collect()
}

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// `since`: an RFC 3339 time (`2026-11-27T21:00:00Z`) or a duration back from now (`15m`).
pub fn parse_since(value: &str) -> Result<Since, QueryError> {
    if value.contains('T') || value.contains('-') {
        let t: k8s_openapi::jiff::Timestamp = value.parse().map_err(|e| {
            QueryError::new(
                "since",
                format!("`{value}` is not an RFC 3339 time like 2026-11-27T21:00:00Z ({e})"),
            )
        })?;
        return Ok(Since::At(t.as_millisecond()));
    }
    let d = parse_duration(value).map_err(|reason| {
        QueryError::new(
            "since",
            format!("{reason}; or give an RFC 3339 time like 2026-11-27T21:00:00Z"),
        )
    })?;
    Ok(Since::Ago(d))
}

/// `step`: a duration of at least [`MIN_STEP`].
pub fn parse_step(value: &str) -> Result<Duration, QueryError> {
    let d = parse_duration(value).map_err(|reason| QueryError::new("step", reason))?;
    if d < MIN_STEP {
        return Err(QueryError::new(
            "step",
            format!("`{value}` is shorter than the smallest step, 1s"),
        ));
    }
    Ok(d)
}

/// A duration like `90s`, `15m`, `1h30m`, `2d`.
fn parse_duration(value: &str) -> Result<Duration, String> {
    let invalid = || format!("`{value}` is not a duration like 30s, 15m, 6h or 2d");
    if let Some(days) = value.strip_suffix('d') {
        let n: u64 = days.parse().map_err(|_| invalid())?;
        return n
            .checked_mul(86_400)
            .filter(|s| *s <= 3_650 * 86_400)
            .map(Duration::from_secs)
            .ok_or_else(invalid);
    }
    crate::api::validation::parse_duration(value).map_err(|_| invalid())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn rfc3339(t: UnixMillis) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(t)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// A sample as answered.
fn sample(p: &Point) -> HealthSample {
    let pin = |i: usize| p.pins.and_then(|pins| pins[i]);
    HealthSample {
        time: rfc3339(p.t),
        score: p.score,
        state: p.state.clone(),
        repo_size: p.repo,
        bytes_in_per_second: p.rate_in,
        bytes_out_per_second: p.rate_out,
        pins_pinned: pin(0),
        pins_queued: pin(1),
        pins_pinning: pin(2),
        pins_error: pin(3),
    }
}

/// Buckets of `step` aligned on the epoch (so that the same query gives the same buckets), each
/// answered at its start: numbers averaged over the samples that have them, the last state.
pub fn downsample(points: &[&Point], step: Duration) -> Vec<HealthSample> {
    let width = millis(step).max(1);
    let mut out = Vec::new();
    let mut i = 0;
    while i < points.len() {
        let start = points[i].t.div_euclid(width) * width;
        let end = points[i..]
            .iter()
            .position(|p| p.t >= start + width)
            .map_or(points.len(), |n| i + n);
        out.push(bucket(start, &points[i..end]));
        i = end;
    }
    out
}

fn bucket(start: UnixMillis, points: &[&Point]) -> HealthSample {
    let mean = |f: &dyn Fn(&Point) -> Option<f64>| {
        let values: Vec<f64> = points.iter().filter_map(|p| f(p)).collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    };
    let whole = |f: &dyn Fn(&Point) -> Option<f64>| mean(f).map(|m| m.round() as i64);
    let pin = |i: usize| whole(&|p: &Point| p.pins.and_then(|pins| pins[i]).map(|n| n as f64));
    HealthSample {
        time: rfc3339(start),
        score: whole(&|p: &Point| p.score.map(f64::from)).map(|s| s as i32),
        state: points.last().map(|p| p.state.clone()).unwrap_or_default(),
        repo_size: whole(&|p: &Point| p.repo.map(|r| r as f64)),
        bytes_in_per_second: mean(&|p: &Point| p.rate_in),
        bytes_out_per_second: mean(&|p: &Point| p.rate_out),
        pins_pinned: pin(0),
        pins_queued: pin(1),
        pins_pinning: pin(2),
        pins_error: pin(3),
    }
}
