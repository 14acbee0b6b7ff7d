//! The supervisor lock, `<cluster>/supervisor.lock`: an exclusive `flock` held while `local up`
//! supervises a cluster (and while `local down` stops it), released by the kernel when the holder
//! exits or dies. The file records the holder's PID, so that `local down` and `local status` can
//! find the running supervisor.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use super::LocalError;
use super::process::{self, Ownership, ownership};
use super::state::{ClusterPaths, read_pid_file};

/// The supervisor's lock: held while `local up` runs, released when it exits or dies.
pub struct SupervisorLock {
    _lock: Flock<std::fs::File>,
}

/// Takes the cluster's lock, or fails naming the supervisor that holds it.
pub fn take_lock(paths: &ClusterPaths) -> Result<SupervisorLock, LocalError> {
    let file = paths.lock_file();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&file)
        .map_err(|e| LocalError::io("opening", &file, e))?;
    let mut lock = lock_exclusive(f).map_err(|()| LocalError::Locked {
        name: paths
            .root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        root: paths.root.clone(),
        pid: running_supervisor(paths),
    })?;
    let me = process::record_for(std::process::id() as i32, Path::new("local"));
    let json = serde_json::to_vec(&me).unwrap_or_default();
    use std::io::{Seek, Write};
    lock.set_len(0)
        .and_then(|()| lock.rewind())
        .and_then(|()| lock.write_all(&json))
        .map_err(|e| LocalError::io("writing", &file, e))?;
    Ok(SupervisorLock { _lock: lock })
}

/// How long a supervisor waits for a lock held only for a moment: [`running_supervisor`] (of
/// `local status` or `local down`) holds it shared for the time of one test.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// Locks `f` exclusively, waiting up to [`LOCK_PATIENCE`] for a momentary holder to let go.
fn lock_exclusive(mut f: std::fs::File) -> Result<Flock<std::fs::File>, ()> {
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((file, _)) if std::time::Instant::now() < deadline => {
                f = file;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(_) => return Err(()),
        }
    }
}

/// The PID of the supervisor running this cluster, if one holds the lock.
pub fn running_supervisor(paths: &ClusterPaths) -> Option<i32> {
    let file = std::fs::File::open(paths.lock_file()).ok()?;
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_unlocked_again_on_drop) => None,
        Err(_) => {
            let record = read_pid_file(&paths.lock_file())?;
            (ownership(&record) == Ownership::Ours).then_some(record.pid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_supervisor_is_refused_with_the_way_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = ClusterPaths::new(dir.path(), "demo").expect("paths");
        std::fs::create_dir_all(&paths.root).expect("mkdir");
        assert_eq!(running_supervisor(&paths), None);
        let held = take_lock(&paths).expect("first");
        let err = take_lock(&paths).err().expect("second is refused");
        assert!(matches!(&err, LocalError::Locked { name, .. } if name == "demo"));
        let message = err.to_string();
        assert!(
            message.contains("already supervised") && message.contains("`local down demo`"),
            "{message}"
        );
        drop(held);
        assert_eq!(running_supervisor(&paths), None);
        take_lock(&paths).expect("free again");
    }

    /// `local status` tests the lock (a shared lock, for a moment): a supervisor starting at
    /// that moment waits for it instead of failing as if another supervisor ran.
    #[test]
    fn a_supervisor_waits_for_a_momentary_status_check() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = ClusterPaths::new(dir.path(), "demo").expect("paths");
        std::fs::create_dir_all(&paths.root).expect("mkdir");
        let file = std::fs::File::create(paths.lock_file()).expect("lock file");
        let shared = Flock::lock(file, FlockArg::LockSharedNonblock).expect("shared");
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(shared);
        });
        take_lock(&paths).expect("taken once the status check let go");
        release.join().expect("join");
    }
}
