//! `local up --isolated`: the daemons run in a new network namespace holding only loopback, so
//! that nothing they do can leave the machine (ipfs-cluster-service probes the default gateway
//! for NAT port mapping at every start, and no setting turns that off).
//!
//! Network namespaces belong to threads, and sockets keep the namespace they were made in. So:
//! bind the dashboard listener first (it stays reachable from the host), then call
//! [`enter_loopback_namespace`] while the process still has a single thread, then build the tokio
//! runtime; every thread and child process created after that lives in the new namespace.
//!
//! Needs root (CAP_SYS_ADMIN), or unprivileged user namespaces (then the process becomes root of
//! a new user namespace mapped to the calling user), and the `ip` program (iproute2) to bring
//! `lo` up.

use std::path::Path;
use std::process::Command;

use nix::sched::{CloneFlags, unshare};

use super::LocalError;

/// Moves the calling thread (to be the only one) into a new network namespace with `lo` up.
pub fn enter_loopback_namespace() -> Result<(), LocalError> {
    if let Some(net_err) = unshare(CloneFlags::CLONE_NEWNET).err() {
        let uid = nix::unistd::getuid();
        let gid = nix::unistd::getgid();
        unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET).map_err(|user| {
            LocalError::NamespaceDenied {
                uid: uid.as_raw(),
                net: net_err,
                user,
            }
        })?;
        let write = |file: &str, text: String| {
            std::fs::write(file, text)
                .map_err(|e| LocalError::io("--isolated: writing", Path::new(file), e))
        };
        write("/proc/self/setgroups", "deny".into())?;
        write("/proc/self/uid_map", format!("0 {uid} 1"))?;
        write("/proc/self/gid_map", format!("0 {gid} 1"))?;
    }
    let out = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .output()
        .map_err(|source| LocalError::NoIpTool { source })?;
    if !out.status.success() {
        return Err(LocalError::Tool {
            command: "--isolated: `ip link set lo up`".into(),
            status: out.status,
            output: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}
