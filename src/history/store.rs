//! The embedded store of the local supervisor's history: a redb file in the cluster's state
//! directory, one table keyed by (series, time in ms), each value a sample as JSON. It holds what
//! the history holds in memory (bounded the same way: every sample dropped from memory is
//! deleted here in the same write), so that the next supervisor starts with it.
//!
//! Written by a thread of its own ([`Writer`]): recording a sample or answering a query never
//! waits on the disk (a commit waits for fsync, seconds on a busy machine), so the samples keep
//! their interval whatever the disk does. What is handed to the writer while it commits is
//! written in the next transaction, in the order it was handed over; dropping the writer writes
//! what is pending before it returns (a supervisor that is killed loses at most that).
//!
//! Never fatal: a file that cannot be read is renamed `<file>.corrupt` (replacing an older one)
//! and a fresh store started, with a warning naming both; a file held by another process, or a
//! directory where none can be made, leaves the history in memory only; a failed write is warned
//! about once and the store abandoned.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tracing::warn;

use super::{Point, UnixMillis};

const SAMPLES: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("samples");

/// An open store.
pub struct Store {
    db: Database,
    path: PathBuf,
}

/// The samples read back, per series, oldest first.
pub type Loaded = BTreeMap<String, Vec<Point>>;

impl Store {
    /// Opens (or creates) the store at `path` and reads it; see the module for what happens when
    /// it cannot be read.
    pub fn open(path: &Path) -> (Option<Store>, Loaded) {
        let db = match Database::create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                warn!(
                    file = %path.display(),
                    "the history store {} is in use by another process: this process keeps its \
                     history in memory only",
                    path.display()
                );
                return (None, Loaded::new());
            }
            Err(e) => return (start_fresh(path, &e.to_string()), Loaded::new()),
        };
        match read_all(&db) {
            Ok(loaded) => {
                let store = Store {
                    db,
                    path: path.to_owned(),
                };
                (Some(store), loaded)
            }
            Err(e) => {
                drop(db);
                (start_fresh(path, &e), Loaded::new())
            }
        }
    }

    /// Writes `batches` in one transaction, each in turn (its deletions, then its samples). On
    /// failure the store is abandoned (warned once): the history carries on in memory.
    fn write(&mut self, batches: &[Batch]) -> bool {
        match self.try_write(batches) {
            Ok(()) => true,
            Err(e) => {
                warn!(
                    file = %self.path.display(),
                    "writing the history store {}: {e}; samples from now on are kept in memory \
                     only until the next start",
                    self.path.display()
                );
                false
            }
        }
    }

    fn try_write(&mut self, batches: &[Batch]) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(SAMPLES)?;
            for batch in batches {
                for (series, t) in &batch.gone {
                    table.remove((series.as_str(), *t))?;
                }
                for (series, point) in &batch.added {
                    // A sample always serializes (plain numbers and strings).
                    let value = serde_json::to_vec(point).unwrap_or_default();
                    table.insert((series.as_str(), point.t), value.as_slice())?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// The samples one change added and the ones it dropped (by series and time).
struct Batch {
    added: Vec<(String, Point)>,
    gone: Vec<(String, UnixMillis)>,
}

/// The thread that owns a [`Store`] and writes to it what it is handed, in order.
pub struct Writer {
    sender: Option<mpsc::Sender<Batch>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread writing to `store`; `None` (warned, the history stays in memory) when
    /// no thread can be started.
    pub fn spawn(mut store: Store) -> Option<Writer> {
        let (sender, receiver) = mpsc::channel::<Batch>();
        let path = store.path.clone();
        let thread = std::thread::Builder::new()
            .name("history-store".to_owned())
            .spawn(move || {
                while let Ok(first) = receiver.recv() {
                    let mut batches = vec![first];
                    batches.extend(receiver.try_iter());
                    if !store.write(&batches) {
                        return;
                    }
                }
            });
        match thread {
            Ok(thread) => Some(Writer {
                sender: Some(sender),
                thread: Some(thread),
            }),
            Err(e) => {
                warn!(
                    file = %path.display(),
                    "starting the writer of the history store {}: {e}; the history is kept in \
                     memory only",
                    path.display()
                );
                None
            }
        }
    }

    /// Hands the samples `added` and the deletions `gone` to the thread; `false` when it has
    /// abandoned the store (it warned).
    pub fn send(&self, added: &[(String, Point)], gone: &[(String, UnixMillis)]) -> bool {
        if added.is_empty() && gone.is_empty() {
            return true;
        }
        let batch = Batch {
            added: added.to_vec(),
            gone: gone.to_vec(),
        };
        self.sender.as_ref().is_some_and(|s| s.send(batch).is_ok())
    }
}

impl Drop for Writer {
    /// Writes what is pending, then stops the thread.
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Every sample in `db`; samples that do not decode are skipped with one warning.
fn read_all(db: &Database) -> Result<Loaded, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let table = match txn.open_table(SAMPLES) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Loaded::new()),
        Err(e) => return Err(e.to_string()),
    };
    let mut loaded = Loaded::new();
    let mut undecodable = 0usize;
    for entry in table.iter().map_err(|e| e.to_string())? {
        let (key, value) = entry.map_err(|e| e.to_string())?;
        let (series, _) = key.value();
        match serde_json::from_slice::<Point>(value.value()) {
            Ok(point) => loaded.entry(series.to_owned()).or_default().push(point),
            Err(_) => undecodable += 1,
        }
    }
    if undecodable > 0 {
        warn!("the history store holds {undecodable} samples that do not decode: skipped");
    }
    Ok(loaded)
}

/// Sets the unreadable store at `path` aside and creates a fresh one.
fn start_fresh(path: &Path, why: &str) -> Option<Store> {
    let aside = path.with_extension("redb.corrupt");
    warn!(
        file = %path.display(),
        "the history store {} cannot be read ({why}): it is moved to {} and a fresh one started; \
         the earlier samples are not served",
        path.display(),
        aside.display()
    );
    if let Err(e) = std::fs::rename(path, &aside)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(file = %path.display(), "moving {} aside: {e}", path.display());
        let _ = std::fs::remove_file(path);
    }
    match Database::create(path) {
        Ok(db) => Some(Store {
            db,
            path: path.to_owned(),
        }),
        Err(e) => {
            warn!(
                file = %path.display(),
                "creating the history store {}: {e}; the history is kept in memory only",
                path.display()
            );
            None
        }
    }
}
