//! The local runtime: `ipfs-kit-operator local up|down|status` runs the peers of an
//! `IpfsCluster` as real `ipfs` (Kubo) and `ipfs-cluster-service` processes on this host, keeps
//! them healthy with the shared health engine ([`crate::reconcile`]) and reports on them.
//!
//! - [`state`]: the state directory and what is persisted in it (ports, ids, PID files);
//! - [`config`]: the Kubo and IPFS Cluster configurations rendered from the spec (pure);
//! - [`ports`]: preferred ports, replaced by free ones when held (never by killing the holder);
//! - [`process`]: whether a PID file still names a process this tool started;
//! - [`daemons`]: the daemons this supervisor runs: spawn, adopt, watch and stop one of them;
//! - [`provision`]: a peer's repository, identities, ports and rendered configurations;
//! - [`lifecycle`]: `up` and `down`, converging to the spec, starting and removing peers;
//! - [`lock`]: the supervisor lock, held while a supervisor runs the cluster;
//! - [`supervisor`]: the foreground loop: probe rounds, healing actions, dashboard requests;
//! - `requests`: the dashboard's requests carried out, with their states on its board;
//! - [`spec`]: the dashboard's spec changes, applied as `local up -f` applies a changed file;
//! - [`logs`]: the daemons' log files (rotation, tails);
//! - [`heal`]: the seam to the health engine (spec -> policy, reports -> actions);
//! - [`status`]: the status snapshot, its table and JSON;
//! - [`dashboard`]: the in-process dashboard's token, snapshots and log source;
//! - [`isolate`]: `--isolated`, a network namespace with only loopback;
//! - [`error`]: [`LocalError`], what went wrong and what to do.

pub mod config;
pub mod daemons;
pub mod dashboard;
pub mod error;
pub mod heal;
pub mod isolate;
pub mod lifecycle;
pub mod lock;
pub mod logs;
mod membership;
pub mod ports;
pub mod process;
pub mod provision;
mod requests;
pub mod spec;
pub mod state;
pub mod status;
pub mod supervisor;

use std::path::{Path, PathBuf};

pub use error::LocalError;
pub use lifecycle::{DownOptions, UpOptions, down, up};
pub use status::{LocalStatus, status};

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
    name: &'static str,
    flag: &'static str,
    component: &'static str,
) -> Result<PathBuf, LocalError> {
    if let Some(path) = given {
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(LocalError::NotExecutable {
                path,
                flag,
                component,
            })
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
        .ok_or(LocalError::BinaryNotFound {
            name,
            flag,
            component,
        })
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
