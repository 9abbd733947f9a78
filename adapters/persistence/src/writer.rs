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
use crate::reader::{Row, bind, lock, open, run};

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
        let conn = open(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE,
            Duration::from_secs(30),
            self.cache_kib,
        )?;
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
        Ok(conn)
    }

    /// Whether another process has the file open: in WAL mode every connection holds a
    /// read lock on one byte of the shared-memory file (`-shm`, the byte at 128: SQLite's
    /// "DMS" lock) for as long as it is open. `fcntl(F_GETLK)` asks whether a write lock
    /// there would conflict with another process's lock (never with this process's own),
    /// whatever PID namespace that process is in. Where it cannot tell, it answers yes.
    pub(crate) fn others_attached(&self) -> bool {
        shm_locked_by_others(&format!("{}-shm", self.path)).unwrap_or(true)
    }

    fn give_back(&self, conn: Connection) {
        *lock(&self.idle) = Some(conn);
    }

    /// Opens a unit: `BEGIN IMMEDIATE` on the idle connection (or a new one), holding
    /// `turn` (the process's write turn) until the unit ends. If the caller stops waiting,
    /// the turn goes only once the connection is done (closed, with the transaction).
    pub(crate) async fn begin(self: &Arc<Self>, turn: Option<Turn>) -> Result<LiteUnit, SqlError> {
        let writer = self.clone();
        let conn = tokio::task::spawn_blocking(move || {
            let idle = lock(&writer.idle).take();
            let conn = match idle {
                Some(conn) => conn,
                None => writer.open()?,
            };
            conn.execute_batch("BEGIN IMMEDIATE")?;
            Ok::<_, rusqlite::Error>(Open {
                conn,
                turn,
                savepoints: 0,
            })
        })
        .await
        .map_err(|e| SqlError::Other(anyhow::anyhow!("the unit could not begin: {e}")))??;
        Ok(LiteUnit {
            writer: self.clone(),
            open: Mutex::new(Some(conn)),
        })
    }
}

/// See [`Writer::others_attached`]; `None` when it cannot tell.
///
/// The descriptor of the `-shm` file is opened once per file and never closed: closing
/// any descriptor of a file drops every POSIX lock the process holds on it, SQLite's
/// own included (https://sqlite.org/howtocorrupt.html, 2.2).
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn shm_locked_by_others(shm: &str) -> Option<bool> {
    use nix::fcntl::{FcntlArg, fcntl};
    use nix::libc;
    use std::collections::HashMap;
    use std::os::unix::fs::MetadataExt;
    use std::sync::OnceLock;

    static OPEN: OnceLock<Mutex<HashMap<String, &'static std::fs::File>>> = OnceLock::new();
    let mut open = lock(OPEN.get_or_init(Default::default));
    // SQLite deletes the file when its last connection closes, and the next one makes a
    // new one: the descriptor kept must still be of the file at that path.
    let current = std::fs::metadata(shm).ok()?;
    let same = |file: &std::fs::File| {
        file.metadata()
            .is_ok_and(|kept| (kept.dev(), kept.ino()) == (current.dev(), current.ino()))
    };
    let file = match open.get(shm).filter(|file| same(file)) {
        Some(file) => *file,
        None => {
            let file: &'static std::fs::File = Box::leak(Box::new(std::fs::File::open(shm).ok()?));
            open.insert(shm.to_owned(), file);
            file
        }
    };
    let mut probe = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 128,
        l_len: 1,
        l_pid: 0,
    };
    fcntl(file, FcntlArg::F_GETLK(&mut probe)).ok()?;
    Some(probe.l_type != libc::F_UNLCK as libc::c_short)
}

/// Elsewhere it cannot tell.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn shm_locked_by_others(_shm: &str) -> Option<bool> {
    None
}

/// The process's write turn, held by a unit (see [`crate::conn::Turn`]).
pub(crate) type Turn = tokio::sync::OwnedMutexGuard<()>;

/// An open unit's transaction on the write connection, with the write turn. Ended by
/// [`LiteUnit::commit`] or [`LiteUnit::roll_back`] (and when dropped); after that — or
/// once SQLite itself has rolled the transaction back (a full disk, an I/O error) — its
/// statements fail: they must never run outside the unit's transaction.
#[derive(Debug)]
pub(crate) struct LiteUnit {
    writer: Arc<Writer>,
    open: Mutex<Option<Open>>,
}

/// What an open unit holds.
#[derive(Debug)]
struct Open {
    conn: Connection,
    turn: Option<Turn>,
    /// Savepoints open (each named by its depth: `step0`, `step1`, …).
    savepoints: usize,
}

/// A unit that has ended: its stores no longer write.
fn ended() -> SqlError {
    SqlError::Other(anyhow::anyhow!(
        "the unit of work has ended (committed or rolled back)"
    ))
}

impl LiteUnit {
    /// Runs `f` on the unit while its transaction is open. If SQLite rolled the whole
    /// transaction back (some errors do), the unit ends there.
    fn with_open<T>(
        &self,
        f: impl FnOnce(&mut Open) -> Result<T, SqlError>,
    ) -> Result<T, SqlError> {
        let mut guard = lock(&self.open);
        let open = guard.as_mut().ok_or_else(ended)?;
        let result = if open.conn.is_autocommit() {
            Err(ended())
        } else {
            f(open)
        };
        if result.is_err() && open.conn.is_autocommit() {
            self.end(guard.take());
        }
        result
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T, SqlError>) -> Result<T, SqlError> {
        self.with_open(|open| f(&open.conn))
    }

    /// Ends the unit: rolls back what is still open (cheap in WAL mode: nothing reached
    /// the file), hands the connection back, then lets the turn go.
    fn end(&self, open: Option<Open>) {
        if let Some(Open { conn, turn, .. }) = open {
            if conn.is_autocommit() || conn.execute_batch("ROLLBACK").is_ok() {
                self.writer.give_back(conn);
            } else {
                // Closed (which rolls back) before the turn goes.
                drop(conn);
            }
            drop(turn);
        }
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
        let depth = self.with_open(|open| {
            control(&open.conn, &format!("SAVEPOINT step{}", open.savepoints))?;
            open.savepoints += 1;
            Ok(open.savepoints - 1)
        })?;
        Ok(Savepoint {
            unit: self.clone(),
            depth: Some(depth),
        })
    }

    /// Ends the savepoint at `depth`, keeping its statements or undoing them. Only the
    /// innermost may end: one ended out of order would end the ones within it too, so
    /// then — or if ending it fails — the whole unit is rolled back (its commit fails;
    /// the caller redoes it).
    fn end_savepoint(&self, depth: usize, keep: bool) -> Result<(), SqlError> {
        let ended_in_order = self.with_open(|open| {
            if open.savepoints != depth + 1 {
                return Ok(false);
            }
            let name = format!("step{depth}");
            if !keep {
                control(&open.conn, &format!("ROLLBACK TO {name}"))?;
            }
            control(&open.conn, &format!("RELEASE {name}"))?;
            open.savepoints = depth;
            Ok(true)
        });
        // A savepoint that could not end leaves the unit in no state to go on.
        let ended_in_order = ended_in_order.inspect_err(|_| self.roll_back())?;
        if ended_in_order {
            return Ok(());
        }
        self.roll_back();
        Err(SqlError::Other(anyhow::anyhow!(
            "savepoints ended out of order: the unit of work was rolled back"
        )))
    }

    /// Commits, on the blocking pool (the disk flush), and hands the connection back;
    /// the turn goes with it, once the commit is done, even if the caller stops waiting.
    pub(crate) async fn commit(&self) -> Result<(), SqlError> {
        let Open { conn, turn, .. } = lock(&self.open).take().ok_or_else(ended)?;
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let committed = if conn.is_autocommit() {
                Err(SqlError::Other(anyhow::anyhow!(
                    "the unit's transaction was rolled back by the database"
                )))
            } else {
                conn.execute_batch("COMMIT").map_err(SqlError::from)
            };
            // A failed COMMIT (a full disk) leaves the transaction open: undo it, or
            // the connection is not fit to be used again.
            if conn.is_autocommit() || conn.execute_batch("ROLLBACK").is_ok() {
                writer.give_back(conn);
            } else {
                drop(conn);
            }
            drop(turn);
            committed
        })
        .await
        .map_err(|e| SqlError::Other(anyhow::anyhow!("the commit did not finish: {e}")))?
    }

    /// Rolls back what the unit wrote, if it is still open, and hands the connection
    /// back.
    pub(crate) fn roll_back(&self) {
        let open = lock(&self.open).take();
        self.end(open);
    }
}

impl Drop for LiteUnit {
    fn drop(&mut self) {
        self.roll_back();
    }
}

/// Runs a savepoint statement, prepared once per connection (`execute_batch` would parse
/// it each time: a savepoint is two statements a person saved).
fn control(conn: &Connection, sql: &str) -> Result<(), SqlError> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// A savepoint of a [`LiteUnit`]; dropped without [`Savepoint::release`], it undoes its
/// statements.
#[derive(Debug)]
pub(crate) struct Savepoint {
    unit: Arc<LiteUnit>,
    /// Its depth; taken once it has ended.
    depth: Option<usize>,
}

impl Savepoint {
    /// Runs a statement within the savepoint.
    pub(crate) fn execute(&self, sql: &str, values: Vec<Value>) -> Result<u64, SqlError> {
        self.unit.execute(sql, values)
    }

    /// Keeps the savepoint's statements (as part of the unit).
    pub(crate) fn release(mut self) -> Result<(), SqlError> {
        match self.depth.take() {
            Some(depth) => self.unit.end_savepoint(depth, true),
            None => Err(ended()),
        }
    }
}

impl Drop for Savepoint {
    fn drop(&mut self) {
        if let Some(depth) = self.depth.take() {
            // If the unit has ended there is nothing left to undo.
            let _ = self.unit.end_savepoint(depth, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer of a new file with one table, and a plain connection to look at it.
    fn file() -> (tempfile::TempDir, Arc<Writer>, Connection) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("w.db");
        let other = Connection::open(&path).expect("open");
        other
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY);")
            .expect("schema");
        let writer = Arc::new(Writer::new(path.to_string_lossy().into_owned(), 1));
        (dir, writer, other)
    }

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0))
            .expect("count")
    }

    fn insert(id: i64) -> (&'static str, Vec<Value>) {
        ("INSERT INTO t (id) VALUES (?)", vec![Value::from(id)])
    }

    #[tokio::test]
    async fn a_transaction_the_database_rolled_back_ends_the_unit() {
        let (_dir, writer, other) = file();
        let unit = writer.begin(None).await.expect("begin");
        let (sql, values) = insert(1);
        unit.execute(sql, values).expect("insert");
        // OR ROLLBACK: the conflict rolls the whole transaction back, as a full disk or
        // an I/O error would.
        assert!(
            unit.execute("INSERT OR ROLLBACK INTO t (id) VALUES (1)", vec![])
                .is_err()
        );
        let (sql, values) = insert(2);
        assert!(
            unit.execute(sql, values).is_err(),
            "no statement runs outside the unit's transaction"
        );
        assert!(unit.commit().await.is_err(), "the commit says so");
        assert_eq!(count(&other), 0);
        // The connection was handed back in order: the next unit works.
        let next = writer.begin(None).await.expect("begin again");
        let (sql, values) = insert(3);
        next.execute(sql, values).expect("insert");
        next.commit().await.expect("commit");
        assert_eq!(count(&other), 1);
    }

    #[tokio::test]
    async fn savepoints_end_innermost_first_or_the_unit_is_rolled_back() {
        let (_dir, writer, other) = file();
        let unit = Arc::new(writer.begin(None).await.expect("begin"));
        let outer = unit.savepoint().expect("outer");
        let (sql, values) = insert(1);
        outer.execute(sql, values).expect("insert");
        let inner = unit.savepoint().expect("inner");
        let (sql, values) = insert(2);
        inner.execute(sql, values).expect("insert");
        drop(inner);
        outer.release().expect("released in order");
        let (sql, values) = insert(3);
        unit.execute(sql, values).expect("insert");
        unit.commit().await.expect("commit");
        assert_eq!(
            count(&other),
            2,
            "rows 1 and 3; the dropped savepoint's 2 undone"
        );

        let unit = Arc::new(writer.begin(None).await.expect("begin"));
        let outer = unit.savepoint().expect("outer");
        let inner = unit.savepoint().expect("inner");
        let (sql, values) = insert(4);
        inner.execute(sql, values).expect("insert");
        assert!(outer.release().is_err(), "the outer one cannot end first");
        drop(inner);
        assert!(unit.commit().await.is_err(), "the unit was rolled back");
        assert_eq!(count(&other), 2);
    }
}
