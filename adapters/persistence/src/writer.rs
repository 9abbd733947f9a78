//! A SQLite unit of work's statements run on the calling thread, on a write connection of
//! our own.
//!
//! A feed message is some fifteen statements (find the person by each identifier, the
//! person's row, its identifier and search-key rows, the alert or referral, the source's
//! counters). On sqlx each is handed to the connection's own thread and back, about 40 µs
//! a hand-off on these cores, which capped feeds at ~1,600 messages/s whatever the
//! batching (docs/BENCHMARKS.md). A statement of a unit touches pages the unit has just
//! read or written, and takes microseconds; so here it runs synchronously, as the
//! readers' do ([`crate::reader`]).
//!
//! One connection serves the process's units, one after the other: a unit holds the
//! process's write turn ([`crate::conn::Turn`]) from before `BEGIN IMMEDIATE` until it has
//! ended, so no two units ever want it at once. What may wait — `BEGIN IMMEDIATE` (for
//! another process's write lock, up to the busy timeout) and `COMMIT` (for the disk:
//! `synchronous = FULL`) — runs on tokio's blocking pool, not on a runtime thread.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use sea_orm::Value;

use crate::SqlError;
use crate::reader::{Row, bind, run};

/// The write connection to one SQLite file, idle between units.
#[derive(Debug)]
pub(crate) struct Writer {
    path: String,
    cache_kib: u32,
    idle: Mutex<Option<Connection>>,
}

impl Writer {
    /// A writer of the file at `path` (which the pool has opened: it exists, in WAL
    /// mode), with `cache_mib` of page cache.
    pub(crate) fn new(path: String, cache_mib: u32) -> Self {
        Self {
            path,
            cache_kib: cache_mib.saturating_mul(1024),
            idle: Mutex::new(None),
        }
    }

    /// Opened as the pool's connections are (`Database::connect_with`): durable commits,
    /// foreign keys, the same busy timeout.
    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.execute_batch(
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = memory;",
        )?;
        conn.pragma_update(None, "cache_size", -i64::from(self.cache_kib))?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    /// Whether another process has the file open: in WAL mode every connection holds a
    /// read lock on the shared-memory file (`-shm`) for as long as it is open, and Linux
    /// lists every lock with its process in `/proc/locks`. Read there rather than asked
    /// with `fcntl(F_GETLK)`, which needs a descriptor of the file, and closing any
    /// descriptor of a file drops every lock the process holds on it — SQLite's own
    /// (https://sqlite.org/howtocorrupt.html, 2.2). Where it cannot tell (no `/proc`),
    /// it answers yes. Processes in another PID namespace (another container sharing the
    /// file) are not listed there: such a deployment should use PostgreSQL.
    #[cfg(unix)]
    pub(crate) fn others_attached(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(shm) = std::fs::metadata(format!("{}-shm", self.path)) else {
            return true;
        };
        let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
            return true;
        };
        locks_of_others(&locks, shm.ino(), std::process::id())
    }

    /// Elsewhere it cannot tell: yes.
    #[cfg(not(unix))]
    pub(crate) fn others_attached(&self) -> bool {
        true
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            *idle = Some(conn);
        }
    }

    /// Opens a unit: `BEGIN IMMEDIATE` on the idle connection (or a new one). The caller
    /// holds the write turn.
    pub(crate) async fn begin(self: &Arc<Self>) -> Result<LiteUnit, SqlError> {
        let writer = self.clone();
        let conn = tokio::task::spawn_blocking(move || {
            let idle = writer.idle.lock().ok().and_then(|mut idle| idle.take());
            let conn = match idle {
                Some(conn) => conn,
                None => writer.open()?,
            };
            conn.execute_batch("BEGIN IMMEDIATE")?;
            Ok::<_, rusqlite::Error>(conn)
        })
        .await
        .map_err(|e| SqlError::Other(anyhow::anyhow!("the unit could not begin: {e}")))??;
        Ok(LiteUnit {
            writer: self.clone(),
            conn: Mutex::new(Some(conn)),
        })
    }
}

/// Whether `/proc/locks` lists a lock on the file with this inode held by a process
/// other than `me`. A line reads `1: POSIX  ADVISORY  READ 1234 fe:00:770064 128 128`
/// (a waiting lock has a `->` after the number); the device is not compared, so a file
/// with the same inode elsewhere counts too (a pause for nothing, never a missed one).
fn locks_of_others(locks: &str, inode: u64, me: u32) -> bool {
    locks.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = fields.iter().position(|f| f.matches(':').count() == 2) else {
            return false;
        };
        let same_file = fields[at]
            .rsplit(':')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            == Some(inode);
        let holder = at.checked_sub(1).and_then(|k| fields.get(k));
        same_file && holder.is_none_or(|pid| pid.parse::<u32>().ok() != Some(me))
    })
}

/// An open unit's transaction on the write connection. Ended by [`LiteUnit::commit`] or
/// [`LiteUnit::roll_back`] (and when dropped); after that its statements fail.
#[derive(Debug)]
pub(crate) struct LiteUnit {
    writer: Arc<Writer>,
    conn: Mutex<Option<Connection>>,
}

/// A unit that has ended: its stores no longer write.
fn ended() -> SqlError {
    SqlError::Other(anyhow::anyhow!(
        "the unit of work has ended (committed or rolled back)"
    ))
}

impl LiteUnit {
    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T, SqlError>) -> Result<T, SqlError> {
        let conn = self.conn.lock().map_err(|_| ended())?;
        f(conn.as_ref().ok_or_else(ended)?)
    }

    /// Runs a statement (SQLite placeholders already) and returns the rows it changed.
    pub(crate) fn execute(&self, sql: &str, values: Vec<Value>) -> Result<u64, SqlError> {
        let params = bind(values)?;
        self.with(|conn| {
            let mut statement = conn.prepare_cached(sql)?;
            let changed = statement.execute(rusqlite::params_from_iter(params))?;
            Ok(u64::try_from(changed).unwrap_or(u64::MAX))
        })
    }

    /// Runs a query (SQLite placeholders already) and decodes each row; it sees the
    /// unit's own writes.
    pub(crate) fn rows<T>(
        &self,
        sql: &str,
        values: Vec<Value>,
        decode: impl Fn(&Row<'_>) -> Result<T, care_application::RepoError>,
    ) -> Result<Vec<T>, care_application::RepoError> {
        let params = bind(values).map_err(crate::unexpected)?;
        self.with(|conn| Ok(run(conn, sql, params, decode)))
            .map_err(crate::unexpected)?
    }

    /// A savepoint within the unit: its statements are undone together unless it is
    /// released ([`Savepoint::release`]).
    pub(crate) fn savepoint(self: &Arc<Self>) -> Result<Savepoint, SqlError> {
        self.with(|conn| Ok(conn.execute_batch("SAVEPOINT step")?))?;
        Ok(Savepoint {
            unit: self.clone(),
            released: false,
        })
    }

    /// Commits, on the blocking pool (the disk flush), and hands the connection back.
    pub(crate) async fn commit(&self) -> Result<(), SqlError> {
        let conn = self
            .conn
            .lock()
            .ok()
            .and_then(|mut conn| conn.take())
            .ok_or_else(ended)?;
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let committed = conn.execute_batch("COMMIT");
            // A failed COMMIT (a full disk) leaves the transaction open: undo it, or
            // the connection is not fit to be used again.
            if conn.is_autocommit() || conn.execute_batch("ROLLBACK").is_ok() {
                writer.give_back(conn);
            }
            committed
        })
        .await
        .map_err(|e| SqlError::Other(anyhow::anyhow!("the commit did not finish: {e}")))??;
        Ok(())
    }

    /// Rolls back what the unit wrote, if it is still open (cheap in WAL mode: nothing
    /// reached the file), and hands the connection back.
    pub(crate) fn roll_back(&self) {
        let Some(conn) = self.conn.lock().ok().and_then(|mut conn| conn.take()) else {
            return;
        };
        if conn.is_autocommit() || conn.execute_batch("ROLLBACK").is_ok() {
            self.writer.give_back(conn);
        }
    }
}

impl Drop for LiteUnit {
    fn drop(&mut self) {
        self.roll_back();
    }
}

/// A savepoint of a [`LiteUnit`]; dropped without [`Savepoint::release`], it undoes its
/// statements.
#[derive(Debug)]
pub(crate) struct Savepoint {
    unit: Arc<LiteUnit>,
    released: bool,
}

impl Savepoint {
    /// Runs a statement within the savepoint.
    pub(crate) fn execute(&self, sql: &str, values: Vec<Value>) -> Result<u64, SqlError> {
        self.unit.execute(sql, values)
    }

    /// Keeps the savepoint's statements (as part of the unit).
    pub(crate) fn release(mut self) -> Result<(), SqlError> {
        self.released = true;
        self.unit
            .with(|conn| Ok(conn.execute_batch("RELEASE step")?))
    }
}

impl Drop for Savepoint {
    fn drop(&mut self) {
        if !self.released {
            // If the unit has ended there is nothing left to undo.
            let _ = self
                .unit
                .with(|conn| Ok(conn.execute_batch("ROLLBACK TO step; RELEASE step")?));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::locks_of_others;

    const LOCKS: &str = "1: POSIX  ADVISORY  READ 4242 fe:00:770064 128 128\n\
                         2: POSIX  ADVISORY  WRITE 17 fe:00:770062 0 EOF\n\
                         2: -> POSIX  ADVISORY  WRITE 99 fe:00:770070 0 EOF\n\
                         3: OFDLCK ADVISORY  READ -1 00:2f:5 0 EOF\n";

    #[test]
    fn a_lock_on_the_file_by_another_process_is_found_and_our_own_are_not() {
        assert!(locks_of_others(LOCKS, 770_064, 1));
        assert!(!locks_of_others(LOCKS, 770_064, 4242), "our own lock");
        assert!(!locks_of_others(LOCKS, 123, 1), "no lock on that file");
        assert!(locks_of_others(LOCKS, 770_070, 1), "a waiting lock counts");
        assert!(
            locks_of_others(LOCKS, 5, 1),
            "a lock without a process counts"
        );
        assert!(!locks_of_others("", 770_064, 1));
    }
}
