//! The local runtime: `ipfs-kit-operator local up|down|status` runs the peers of an
//! `IpfsCluster` as real `ipfs` (Kubo) and `ipfs-cluster-service` processes on this host, keeps
//! them healthy with the shared health engine ([`crate::reconcile`]) and reports on them.
//!
//! - [`state`]: the state directory and what is persisted in it (ports, ids, PID files);
//! - [`config`]: the Kubo and IPFS Cluster configurations rendered from the spec (pure);
//! - [`ports`]: preferred ports, replaced by free ones when held (never by killing the holder);
//! - [`process`]: whether a PID file still names a process this tool started;
//! - [`supervisor`]: spawn, watch, stop and restart the daemons; `up` and `down`;
//! - [`heal`]: the seam to the health engine (spec -> policy, reports -> actions);
//! - [`status`]: the status snapshot, its table and JSON;
//! - [`isolate`]: `--isolated`, a network namespace with only loopback.

pub mod config;
pub mod dashboard;
pub mod heal;
pub mod isolate;
pub mod ports;
pub mod process;
pub mod state;
pub mod status;
pub mod supervisor;

use std::path::{Path, PathBuf};

pub use status::{LocalStatus, status};
pub use supervisor::{DownOptions, UpOptions, down, up};

/// An error of the local runtime, worded for the user: what failed, where, and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LocalError(String);

impl LocalError {
    pub fn new(message: impl Into<String>) -> LocalError {
        LocalError(message.into())
    }

    /// An I/O error on a file or directory: `<action> <path>: <error>`.
    pub fn io(action: &str, path: &Path, e: std::io::Error) -> LocalError {
        LocalError(format!("{action} {}: {e}", path.display()))
    }
}

/// The `ipfs` and `ipfs-cluster-service` executables to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binaries {
    pub ipfs: PathBuf,
    pub cluster: PathBuf,
}

impl Binaries {
    /// Uses the given paths, or finds the programs on `PATH`, failing with how to get them.
    pub fn resolve(
        ipfs: Option<PathBuf>,
        cluster: Option<PathBuf>,
    ) -> Result<Binaries, LocalError> {
        Ok(Binaries {
            ipfs: find_binary(ipfs, "ipfs", "--ipfs-bin", "kubo")?,
            cluster: find_binary(
                cluster,
                "ipfs-cluster-service",
                "--cluster-bin",
                "ipfs-cluster",
            )?,
        })
    }
}

fn find_binary(
    given: Option<PathBuf>,
    name: &str,
    flag: &str,
    component: &str,
) -> Result<PathBuf, LocalError> {
    let hint = format!(
        "build it with `scripts/test-world.sh build {component}` and put \
         `$(scripts/test-world.sh bindir {component})` on PATH, or pass {flag} PATH"
    );
    if let Some(path) = given {
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(LocalError::new(format!(
                "{} (given with {flag}) is not an executable file: {hint}",
                path.display()
            )))
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
        .ok_or_else(|| LocalError::new(format!("`{name}` was not found on PATH: {hint}")))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Milliseconds since the Unix epoch, the clock the health engine takes.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_says_how_to_build_it() {
        let err = find_binary(
            Some(PathBuf::from("/no/such/ipfs")),
            "ipfs",
            "--ipfs-bin",
            "kubo",
        )
        .expect_err("missing")
        .to_string();
        assert!(
            err.contains("/no/such/ipfs") && err.contains("test-world.sh build kubo"),
            "{err}"
        );
    }

    #[test]
    fn an_explicit_executable_is_taken_as_is() {
        let sh = PathBuf::from("/bin/sh");
        assert_eq!(
            find_binary(Some(sh.clone()), "sh", "--x", "x").expect("sh"),
            sh
        );
    }
}
