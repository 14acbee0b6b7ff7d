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

use std::process::Command;

use nix::sched::{CloneFlags, unshare};

use super::LocalError;

/// Moves the calling thread (to be the only one) into a new network namespace with `lo` up.
pub fn enter_loopback_namespace() -> Result<(), LocalError> {
    if let Some(net_err) = unshare(CloneFlags::CLONE_NEWNET).err() {
        let uid = nix::unistd::getuid();
        let gid = nix::unistd::getgid();
        unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET).map_err(|user_err| {
            LocalError::new(format!(
                "--isolated needs a new network namespace, which this process may not create \
                 (as uid {uid}: network namespace: {net_err}; user + network namespace: \
                 {user_err}). Run as root, or enable unprivileged user namespaces (e.g. `sysctl \
                 kernel.unprivileged_userns_clone=1` or `sysctl \
                 kernel.apparmor_restrict_unprivileged_userns=0`), or run without --isolated \
                 inside your own loopback-only namespace"
            ))
        })?;
        let write = |file: &str, text: String| {
            std::fs::write(file, text)
                .map_err(|e| LocalError::new(format!("--isolated: writing {file}: {e}")))
        };
        write("/proc/self/setgroups", "deny".into())?;
        write("/proc/self/uid_map", format!("0 {uid} 1"))?;
        write("/proc/self/gid_map", format!("0 {gid} 1"))?;
    }
    let out = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .output()
        .map_err(|e| {
            LocalError::new(format!(
                "--isolated: running `ip link set lo up` failed ({e}): install iproute2"
            ))
        })?;
    if !out.status.success() {
        return Err(LocalError::new(format!(
            "--isolated: `ip link set lo up` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}
