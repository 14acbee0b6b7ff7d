//! The daemons' log files, `peer-N/logs/<daemon>.log`: the daemons append their standard output
//! and error to them directly (no pipe through the supervisor, so that they outlive it); the
//! supervisor rotates them by copy-and-truncate, and the status and dashboard show their tails.

use std::path::{Path, PathBuf};

/// A log file larger than this is rotated (copied to `.1`, older ones shifted, then truncated).
pub const LOG_ROTATE_BYTES: u64 = 10 * 1024 * 1024;
/// Rotated log files kept per daemon.
pub const LOG_KEEP: usize = 3;

/// Copy-and-truncate rotation: the daemon keeps appending to the same open file.
pub fn rotate_log(log: &Path, max: u64, keep: usize) -> std::io::Result<()> {
    let Ok(meta) = std::fs::metadata(log) else {
        return Ok(());
    };
    if meta.len() <= max || keep == 0 {
        return Ok(());
    }
    let name = |i: usize| PathBuf::from(format!("{}.{i}", log.display()));
    for i in (1..keep).rev() {
        if name(i).exists() {
            std::fs::rename(name(i), name(i + 1))?;
        }
    }
    std::fs::copy(log, name(1))?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(log)?
        .set_len(0)
}

/// The last `lines` lines of a file (at most its last 64 KiB).
pub fn log_tail(path: &Path, lines: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut buf = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
        let _ = f.read_to_end(&mut buf);
    }
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_rotate_by_copy_and_truncate_keeping_a_few() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("kubo.log");
        for round in 0..5 {
            std::fs::write(&log, format!("round {round} ").repeat(20)).expect("write");
            rotate_log(&log, 10, 3).expect("rotate");
            assert_eq!(std::fs::metadata(&log).expect("meta").len(), 0);
        }
        let one = std::fs::read_to_string(dir.path().join("kubo.log.1")).expect("1");
        assert!(one.starts_with("round 4"), "{one}");
        let three = std::fs::read_to_string(dir.path().join("kubo.log.3")).expect("3");
        assert!(three.starts_with("round 2"), "{three}");
        assert!(!dir.path().join("kubo.log.4").exists());
        std::fs::write(&log, "small").expect("write");
        rotate_log(&log, 10, 3).expect("no rotation");
        assert_eq!(std::fs::read_to_string(&log).expect("read"), "small");
    }
}
