//! The daemons this supervisor runs, one at a time: spawn one with its output appended to its log
//! file, record its PID file and watch for its exit; adopt one that an earlier supervisor left
//! running; stop one (SIGTERM, grace, SIGKILL). A PID file is trusted only when it names a live
//! process with the recorded start time and repository ([`super::process::ownership`]): nothing
//! else is ever adopted or signalled.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::process::{self, Ownership, PidRecord, ownership};
use super::state::{
    ClusterPaths, DaemonKind, PeerPaths, read_pid_file, remove_pid_file, write_pid_file,
};
use super::{Binaries, LocalError};

/// Something a watch task saw.
#[derive(Debug)]
pub enum Event {
    Exited {
        peer: String,
        kind: DaemonKind,
        pid: i32,
        how: String,
    },
}

/// The daemons running under this supervisor, by peer and kind, with the PID record of each.
#[derive(Debug)]
pub struct Daemons {
    paths: ClusterPaths,
    binaries: Binaries,
    stop_grace: Duration,
    running: BTreeMap<(String, DaemonKind), PidRecord>,
    events: mpsc::UnboundedSender<Event>,
}

impl Daemons {
    /// No daemon tracked yet; the receiver gets every exit the watch tasks see.
    pub fn new(
        paths: ClusterPaths,
        binaries: Binaries,
        stop_grace: Duration,
    ) -> (Daemons, mpsc::UnboundedReceiver<Event>) {
        let (events, rx) = mpsc::unbounded_channel();
        let daemons = Daemons {
            paths,
            binaries,
            stop_grace,
            running: BTreeMap::new(),
            events,
        };
        (daemons, rx)
    }

    /// The programs this supervisor runs.
    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }

    pub fn is_running(&self, peer: &str, kind: DaemonKind) -> bool {
        self.running.contains_key(&(peer.to_owned(), kind))
    }

    /// Every tracked daemon's PID, by peer and kind.
    pub fn pids(&self) -> Vec<(String, DaemonKind, i32)> {
        self.running
            .iter()
            .map(|((p, k), r)| (p.clone(), *k, r.pid))
            .collect()
    }

    fn peer_paths(&self, peer: &str) -> PeerPaths {
        self.paths.peer(peer)
    }

    /// Looks at a daemon's PID file: ours and alive -> tracked as running (true); gone -> file
    /// removed; someone else's -> left alone, file removed (false).
    pub fn adopt_or_clear(&mut self, peer: &str, kind: DaemonKind) -> bool {
        let key = (peer.to_owned(), kind);
        if self.running.contains_key(&key) {
            return true;
        }
        let file = self.peer_paths(peer).pid_file(kind);
        let Some(record) = read_pid_file(&file) else {
            let _ = remove_pid_file(&file);
            return false;
        };
        match ownership(&record) {
            Ownership::Ours => {
                info!(peer, pid = record.pid, "adopting the running {kind} daemon");
                self.watch_adopted(peer, kind, record.pid);
                self.running.insert(key, record);
                true
            }
            Ownership::Gone => {
                let _ = remove_pid_file(&file);
                false
            }
            Ownership::Foreign(why) => {
                warn!(
                    peer,
                    "{} names a process that is not ours ({why}): leaving it alone",
                    file.display()
                );
                let _ = remove_pid_file(&file);
                false
            }
        }
    }

    /// Watches a daemon that is not our child (adopted): polls /proc and reports its exit.
    fn watch_adopted(&self, peer: &str, kind: DaemonKind, pid: i32) {
        let tx = self.events.clone();
        let name = peer.to_owned();
        tokio::spawn(async move {
            while process::is_alive(pid) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let _ = tx.send(Event::Exited {
                peer: name,
                kind,
                pid,
                how: "exited (adopted process, status unknown)".into(),
            });
        });
    }

    /// The command line of one daemon of a peer.
    fn command(&self, pp: &PeerPaths, kind: DaemonKind) -> tokio::process::Command {
        match kind {
            DaemonKind::Kubo => {
                let mut c = tokio::process::Command::new(&self.binaries.ipfs);
                c.env("IPFS_PATH", pp.ipfs())
                    .env("IPFS_TELEMETRY", "off")
                    .arg("--repo-dir")
                    .arg(pp.ipfs())
                    .args(["daemon", "--migrate=false"]);
                c
            }
            DaemonKind::Cluster => {
                let mut c = tokio::process::Command::new(&self.binaries.cluster);
                c.env("IPFS_CLUSTER_PATH", pp.cluster())
                    .arg("--config")
                    .arg(pp.cluster())
                    .arg("daemon");
                c
            }
        }
    }

    /// Spawns one daemon with its output appended to its log file, writes its PID file, tracks
    /// it and watches for its exit; `args` follow the daemon subcommand (`--bootstrap ADDR`).
    /// Returns its PID; whether its API answers is the caller's to wait for. A daemon whose PID
    /// file cannot be written is killed at once: untracked, no later `local down` or `local up`
    /// could find it.
    pub async fn spawn(
        &mut self,
        peer: &str,
        kind: DaemonKind,
        args: &[String],
    ) -> Result<i32, LocalError> {
        let pp = self.peer_paths(peer);
        let logs = pp.logs();
        std::fs::create_dir_all(&logs).map_err(|e| LocalError::io("creating", &logs, e))?;
        let log = pp.log(kind);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| LocalError::io("opening", &log, e))?;
        let err = out
            .try_clone()
            .map_err(|e| LocalError::io("opening", &log, e))?;
        let mut cmd = self.command(&pp, kind);
        cmd.args(args);
        // Own process group: a Ctrl-C in the terminal reaches the supervisor, which stops the
        // daemons in order, not the daemons themselves.
        cmd.stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(false);
        info!(peer, "starting {kind} (log {})", log.display());
        let mut child = cmd.spawn().map_err(|source| LocalError::Spawn {
            peer: peer.to_owned(),
            daemon: kind,
            command: format!("{cmd:?}"),
            source,
        })?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| LocalError::NoPid {
                peer: peer.to_owned(),
                daemon: kind,
            })?;
        let record = process::record_for(pid, &pp.marker(kind));
        if let Err(e) = write_pid_file(&pp.pid_file(kind), &record) {
            warn!(peer, pid, "{e}: stopping the {kind} daemon just started");
            // Its whole process group (its own, see above): a child it forked must not outlive it.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = child.kill().await;
            return Err(e);
        }
        self.running.insert((peer.to_owned(), kind), record);
        let tx = self.events.clone();
        let name = peer.to_owned();
        tokio::spawn(async move {
            let how = match child.wait().await {
                Ok(status) => status.to_string(),
                Err(e) => format!("could not be waited for: {e}"),
            };
            let _ = tx.send(Event::Exited {
                peer: name,
                kind,
                pid,
                how,
            });
        });
        Ok(pid)
    }

    /// No longer tracks a daemon that is gone, and removes its PID file.
    pub fn forget(&mut self, peer: &str, kind: DaemonKind) {
        self.running.remove(&(peer.to_owned(), kind));
        let _ = remove_pid_file(&self.peer_paths(peer).pid_file(kind));
    }

    /// Takes note of a daemon's exit: true when `pid` is the one tracked (then forgotten), false
    /// for one already stopped or replaced.
    pub fn exited(&mut self, peer: &str, kind: DaemonKind, pid: i32) -> bool {
        let current = self
            .running
            .get(&(peer.to_owned(), kind))
            .is_some_and(|r| r.pid == pid);
        if current {
            self.forget(peer, kind);
        }
        current
    }

    /// Stops one daemon we track: SIGTERM, grace, SIGKILL. Only a process whose PID record still
    /// matches is signalled.
    pub async fn stop(&mut self, peer: &str, kind: DaemonKind) {
        let Some(record) = self.running.remove(&(peer.to_owned(), kind)) else {
            return;
        };
        let file = self.peer_paths(peer).pid_file(kind);
        info!(peer, pid = record.pid, "stopping {kind}");
        stop_process(&record, self.stop_grace).await;
        let _ = remove_pid_file(&file);
    }

    /// Stops every daemon of `peers`, IPFS Cluster before Kubo: the tracked ones, and any other
    /// that a PID file of ours names (a start interrupted before it was tracked).
    pub async fn stop_all(&mut self, peers: &[String]) {
        for kind in [DaemonKind::Cluster, DaemonKind::Kubo] {
            for name in peers {
                self.stop(name, kind).await;
                let file = self.peer_paths(name).pid_file(kind);
                if let Some(record) = read_pid_file(&file) {
                    stop_process(&record, self.stop_grace).await;
                    let _ = remove_pid_file(&file);
                }
            }
        }
    }
}

/// SIGTERM, up to `grace`, then SIGKILL; only if the record still names our live process.
pub async fn stop_process(record: &PidRecord, grace: Duration) {
    if ownership(record) != Ownership::Ours {
        return;
    }
    let pid = Pid::from_raw(record.pid);
    let _ = kill(pid, Signal::SIGCONT);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !process::is_alive(record.pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if ownership(record) == Ownership::Ours {
        warn!(
            pid = record.pid,
            "still running after {}s: SIGKILL",
            grace.as_secs()
        );
        let _ = kill(pid, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(10);
        while process::is_alive(record.pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    /// Daemons of cluster `demo` under `dir`, both run by a stand-in that runs until it is
    /// stopped (its command line keeps the repository path, the PID record's marker).
    fn mk_daemons(dir: &Path, grace: Duration) -> (Daemons, ClusterPaths) {
        let bin = dir.join("daemon");
        std::fs::write(&bin, "#!/bin/sh\nwhile :; do sleep 0.1; done\n").expect("write");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let paths = ClusterPaths::new(&dir.join("state"), "demo").expect("paths");
        let binaries = Binaries {
            ipfs: bin.clone(),
            cluster: bin,
        };
        let (daemons, _exits) = Daemons::new(paths.clone(), binaries, grace);
        (daemons, paths)
    }

    #[tokio::test]
    async fn a_daemon_whose_pid_file_cannot_be_written_is_not_left_running() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut daemons, paths) = mk_daemons(dir.path(), Duration::ZERO);
        // A directory where the PID file goes: the file cannot be written.
        let pid_file = paths.peer("peer-0").pid_file(DaemonKind::Kubo);
        std::fs::create_dir_all(pid_file.join("in-the-way")).expect("mkdir");
        let err = daemons
            .spawn("peer-0", DaemonKind::Kubo, &[])
            .await
            .expect_err("no PID file, no daemon");
        assert!(err.to_string().contains("kubo.pid"), "{err}");
        assert!(!daemons.is_running("peer-0", DaemonKind::Kubo));
        // Neither the stand-in nor a child it had just forked (which shares its command line
        // until it runs `sleep`) outlives the failed start; SIGKILL takes a moment to land.
        let marker = paths
            .peer("peer-0")
            .marker(DaemonKind::Kubo)
            .display()
            .to_string();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !running_with(&marker).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(running_with(&marker), Vec::<i32>::new());
    }

    /// Live processes whose command line contains `marker`.
    fn running_with(marker: &str) -> Vec<i32> {
        std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| process::is_alive(*pid))
            .filter(|pid| process::cmdline(*pid).is_some_and(|c| c.contains(marker)))
            .collect()
    }

    #[tokio::test]
    async fn a_spawned_daemon_is_tracked_recorded_and_stopped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut daemons, paths) = mk_daemons(dir.path(), Duration::from_secs(5));
        let pid = daemons
            .spawn("peer-0", DaemonKind::Cluster, &[])
            .await
            .expect("spawn");
        let pid_file = paths.peer("peer-0").pid_file(DaemonKind::Cluster);
        assert_eq!(read_pid_file(&pid_file).map(|r| r.pid), Some(pid));
        assert_eq!(
            daemons.pids(),
            vec![("peer-0".into(), DaemonKind::Cluster, pid)]
        );
        daemons.stop("peer-0", DaemonKind::Cluster).await;
        assert!(!process::is_alive(pid));
        assert!(!pid_file.exists());
        assert!(daemons.pids().is_empty());
    }
}
