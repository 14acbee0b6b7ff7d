//! `logs` of `GET /logs/{backend}`: the daemon's lines as the old toolkit's log entries, newest
//! first, with the time and level the daemons' own logging (go-log: `<RFC 3339>\t<LEVEL>\t...`)
//! puts at the start of a line, when it does.

use schemars::JsonSchema;
use serde::Serialize;

/// One line of a daemon's log, in the toolkit's fields.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct LogEntry {
    /// The line's place in `lines` (1 = the oldest answered).
    pub id: usize,
    /// RFC 3339, when the line starts with a time.
    pub timestamp: Option<String>,
    /// `debug`, `info`, `warn`, `error`, ... when the line gives one after its time.
    pub level: Option<String>,
    /// The backend name as asked for.
    pub backend: String,
    /// The line without its time and level.
    pub message: String,
}

const LEVELS: [&str; 8] = [
    "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "DPANIC", "PANIC", "FATAL",
];

/// `line` split into its time, level and message.
fn parse(line: &str) -> (Option<String>, Option<String>, String) {
    let mut parts = line.splitn(2, char::is_whitespace);
    let first = parts.next().unwrap_or_default();
    let Ok(time) = first.parse::<k8s_openapi::jiff::Timestamp>() else {
        return (None, None, line.to_string());
    };
    let rest = parts.next().unwrap_or_default().trim_start();
    let mut words = rest.splitn(2, char::is_whitespace);
    let word = words.next().unwrap_or_default();
    if LEVELS.contains(&word) {
        let message = words.next().unwrap_or_default().trim_start();
        (
            Some(time.to_string()),
            Some(word.to_lowercase()),
            message.to_string(),
        )
    } else {
        (Some(time.to_string()), None, rest.to_string())
    }
}

/// The entries of `lines` (oldest first), newest first.
pub fn entries(backend: &str, lines: &[String]) -> Vec<LogEntry> {
    lines
        .iter()
        .enumerate()
        .rev()
        .map(|(i, line)| {
            let (timestamp, level, message) = parse(line);
            LogEntry {
                id: i + 1,
                timestamp,
                level,
                backend: backend.to_string(),
                message,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_log_lines_give_their_time_and_level_and_other_lines_stay_whole() {
        let lines = vec![
            "Daemon is ready".to_string(),
            "2026-11-30T09:52:13.123Z\tINFO\tcluster\tipfscluster/cluster.go:612\tpeer up"
                .to_string(),
            "2026-11-30T09:52:14Z  oops, no level".to_string(),
        ];
        let got = entries("demo/peer-0/cluster", &lines);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].id, 3, "newest first");
        assert_eq!(got[0].timestamp.as_deref(), Some("2026-11-30T09:52:14Z"));
        assert_eq!(
            (got[0].level.as_deref(), got[0].message.as_str()),
            (None, "oops, no level")
        );
        assert_eq!(
            got[1].timestamp.as_deref(),
            Some("2026-11-30T09:52:13.123Z")
        );
        assert_eq!(got[1].level.as_deref(), Some("info"));
        assert_eq!(
            got[1].message,
            "cluster\tipfscluster/cluster.go:612\tpeer up"
        );
        assert_eq!(
            got[2],
            LogEntry {
                id: 1,
                timestamp: None,
                level: None,
                backend: "demo/peer-0/cluster".into(),
                message: "Daemon is ready".into(),
            }
        );
    }
}
