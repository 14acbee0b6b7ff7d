//! What this host's `/proc` says about a process: alive or not, when it started, its command line.
//! Used to decide whether a PID file still names a daemon this tool started (and so may be adopted
//! or signalled) or a process that merely reuses the number (which is left alone).

use std::path::Path;

use serde::{Deserialize, Serialize};

/// What a PID file records about a daemon this tool started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PidRecord {
    pub pid: i32,
    /// Start time of the process in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_time: u64,
    /// A string the process's command line must contain (the repository or config path), so
    /// that a recycled PID with the same start time (practically impossible) still does not match.
    pub marker: String,
}

/// Whether a recorded process is the one this tool started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Same PID, same start time, command line names our repository: ours, alive.
    Ours,
    /// No such process (or only its zombie is left).
    Gone,
    /// A process with that PID exists but is not the one we started (the number was reused, or
    /// the file was written by someone else). It must not be signalled.
    Foreign(String),
}

/// Start time (clock ticks since boot) and state letter of a process, from `/proc/<pid>/stat`.
pub fn stat(pid: i32) -> Option<(u64, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses `/proc/<pid>/stat`: the command name is in parentheses and may itself contain spaces
/// and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<(u64, char)> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: field 3 (state) is fields[0]; field 22 (starttime) is fields[19].
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state))
}

/// The command line of a process, arguments joined by spaces.
pub fn cmdline(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// True when the process exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    matches!(stat(pid), Some((_, state)) if state != 'Z' && state != 'X')
}

/// Decides whether `record` names a live process this tool started.
pub fn ownership(record: &PidRecord) -> Ownership {
    if record.pid <= 1 {
        return Ownership::Foreign(format!("PID {} is never one of ours", record.pid));
    }
    match stat(record.pid) {
        None => Ownership::Gone,
        Some((_, 'Z' | 'X')) => Ownership::Gone,
        Some((start, _)) if start != record.start_time => Ownership::Foreign(format!(
            "PID {} started at tick {start}, not at tick {} as recorded: the number was reused",
            record.pid, record.start_time
        )),
        Some(_) => match cmdline(record.pid) {
            Some(cmd) if cmd.contains(&record.marker) => Ownership::Ours,
            Some(cmd) => Ownership::Foreign(format!(
                "PID {} runs `{}`, which does not name {}",
                record.pid,
                cmd.chars().take(200).collect::<String>(),
                record.marker
            )),
            None => Ownership::Gone,
        },
    }
}

/// Builds the record of a process we just started.
pub fn record_for(pid: i32, marker: &Path) -> PidRecord {
    PidRecord {
        pid,
        start_time: stat(pid).map_or(0, |(start, _)| start),
        marker: marker.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_counts_fields_after_the_last_parenthesis() {
        let line = "1234 (odd) name)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 4 0 \
                    987654 1000 100 18446744073709551615";
        assert_eq!(parse_stat(line), Some((987654, 'S')));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_ours_only_with_the_right_start_time_and_marker() {
        let pid = std::process::id() as i32;
        let exe = cmdline(pid).expect("own cmdline");
        let marker = exe.split(' ').next().expect("argv0").to_string();
        let record = PidRecord {
            pid,
            start_time: stat(pid).expect("own stat").0,
            marker: marker.clone(),
        };
        assert_eq!(ownership(&record), Ownership::Ours);
        let reused = PidRecord {
            start_time: record.start_time + 1,
            ..record.clone()
        };
        assert!(matches!(ownership(&reused), Ownership::Foreign(_)));
        let other = PidRecord {
            marker: "/no/such/repo".into(),
            ..record
        };
        assert!(matches!(ownership(&other), Ownership::Foreign(_)));
        let init = PidRecord {
            pid: 1,
            start_time: 0,
            marker,
        };
        assert!(matches!(ownership(&init), Ownership::Foreign(_)));
    }
}
