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
//! another process's write lock, up to the busy timeout) and `COMMIT` — runs on tokio's
//! blocking pool, not on a runtime thread.
//!
//! Durable commits, in two steps: the connection runs `synchronous = NORMAL`, so `COMMIT`
//! writes the unit's pages to the log and lets the write lock and the turn go at once;
//! then the log is flushed to the disk ([`Writer::flush_log`]), what `synchronous =
//! FULL` would have done before letting them go. A writer that waits for the flush
//! before it acknowledges anything (every caller does: [`LiteUnit::commit`], or the
//! future [`LiteUnit::commit_then_flush`] returns) keeps FULL's promise, while the next
//! unit writes during the flush. The flush goes through one descriptor held open from
//! before the unit wrote (so it hears of any failed write-back), and a failed flush
//! stops the writer until a restart ([`Writer::flush_log`]). What FULL did not allow:
//! a commit is visible to readers for the length of one flush (about a millisecond here)
//! before it is durable, so a read in that window may show a message that a power cut
//! in the same window then takes back. Its sender was not answered, and sends it again:
//! nothing acknowledged is lost, and what came back is what was taken.

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
    /// The file's write-ahead log (`<path>-wal`), flushed after each commit.
    log: String,
    /// The log, held open from a unit's `BEGIN IMMEDIATE` on (re-opened only if the path
    /// names another file: SQLite deletes the log when its last connection closes, after
    /// copying all of it into the database). Linux reports a write-back error once to
    /// each open descriptor: one opened afresh for each flush would miss an error that
    /// another descriptor (the checkpoint thread's) had already been told of.
    log_file: Mutex<Option<(std::fs::File, FileId)>>,
    /// Set once a flush has failed: the disk may have dropped pages that later commits
    /// build on (and would flush "successfully"), so the writer refuses to write any
    /// more, as PostgreSQL stops on a failed fsync. A restart recovers the longest valid
    /// log; what was not acknowledged is sent again.
    failed: std::sync::atomic::AtomicBool,
    /// Tests: the next flush fails, as a disk's would.
    #[cfg(test)]
    fail_next_flush: std::sync::atomic::AtomicBool,
    cache_kib: u32,
    idle: Mutex<Option<Connection>>,
}

/// Which file a path named when it was opened (device and inode; elsewhere than Unix,
/// the first file opened is kept).
type FileId = Option<(u64, u64)>;

fn file_id(meta: &std::fs::Metadata) -> FileId {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

impl Writer {
    /// A writer of the file at `path` (which the pool has opened: it exists, in WAL
    /// mode), with `cache_mib` of page cache.
    pub(crate) fn new(path: String, cache_mib: u32) -> Self {
        Self {
            log: format!("{path}-wal"),
            log_file: Mutex::new(None),
            failed: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            fail_next_flush: std::sync::atomic::AtomicBool::new(false),
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
        conn.execute_batch(&format!(
            "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
             PRAGMA wal_autocheckpoint = {};",
            crate::checkpoints::BACKSTOP
        ))?;
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

    /// Opens the log to flush it through, unless the descriptor held is still of the
    /// file at its path. Called with the write lock held, before a unit writes: every
    /// write of the unit's frames happens after the descriptor was opened, so a flush
    /// through it hears of any that failed.
    fn hold_log(&self) -> std::io::Result<()> {
        let mut held = lock(&self.log_file);
        let current = file_id(&std::fs::metadata(&self.log)?);
        if held.as_ref().is_none_or(|(_, id)| *id != current) {
            let file = std::fs::OpenOptions::new().write(true).open(&self.log)?;
            *held = Some((file, current));
        }
        Ok(())
    }

    /// Refuses once a flush has failed ([`Writer::failed`]).
    fn not_stopped(&self) -> Result<(), SqlError> {
        if self.failed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(SqlError::Other(anyhow::anyhow!(
                "a flush of the database's log {} failed earlier: nothing more is written \
                 until the server restarts",
                self.log
            )));
        }
        Ok(())
    }

    /// Makes every commit so far durable: flushes the log to the disk (what `COMMIT`
    /// itself does under `synchronous = FULL`, before it lets the write lock go). A
    /// failure stops the writer for good ([`Writer::failed`]).
    fn flush_log(&self) -> Result<(), SqlError> {
        use std::sync::atomic::Ordering;
        let failure = |e: &dyn std::fmt::Display| {
            SqlError::Other(anyhow::anyhow!(
                "the commit could not be made durable (flushing {}): {e}",
                self.log
            ))
        };
        self.not_stopped()?;
        #[cfg(test)]
        if self.fail_next_flush.swap(false, Ordering::SeqCst) {
            self.failed.store(true, Ordering::SeqCst);
            return Err(failure(&"injected by a test"));
        }
        let flushed = match lock(&self.log_file).as_ref() {
            Some((file, _)) => file.sync_data(),
            None => Err(std::io::Error::other("the log was never opened")),
        };
        flushed.map_err(|e| {
            self.failed.store(true, Ordering::SeqCst);
            tracing::error!(target: "security", log = %self.log, error = %e,
                "flushing the database's log failed: no more writes until a restart");
            failure(&e)
        })
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
            writer.not_stopped()?;
            let idle = lock(&writer.idle).take();
            let conn = match idle {
                Some(conn) => conn,
                None => writer.open()?,
            };
            conn.execute_batch("BEGIN IMMEDIATE")?;
            if let Err(e) = writer.hold_log() {
                let _ = conn.execute_batch("ROLLBACK");
                writer.give_back(conn);
                return Err(SqlError::Other(anyhow::anyhow!(
                    "cannot open the database's log {}: {e}",
                    writer.log
                )));
            }
            Ok::<_, SqlError>(Open { conn, turn })
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
}

impl Open {
    /// Rolls back what is still open (cheap in WAL mode: nothing reached the file) and
    /// hands the connection back (or closes it, which rolls back, if that failed), then
    /// lets the turn go.
    fn close(self, writer: &Writer) {
        let Open { conn, turn } = self;
        if conn.is_autocommit() || conn.execute_batch("ROLLBACK").is_ok() {
            writer.give_back(conn);
        } else {
            drop(conn);
        }
        drop(turn);
    }
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

    /// Ends the unit: rolls back what is still open and lets the turn go ([`Open::close`]).
    fn end(&self, open: Option<Open>) {
        if let Some(open) = open {
            open.close(&self.writer);
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

    /// Statements that stand or fall with the whole unit (see [`Steps`]).
    pub(crate) fn steps(self: &Arc<Self>) -> Steps {
        Steps {
            unit: self.clone(),
            wrote: std::sync::atomic::AtomicBool::new(false),
            kept: false,
        }
    }

    /// Commits, on the blocking pool, and hands the connection back; the turn goes with
    /// it, once the commit is done, even if the caller stops waiting. Returns when the
    /// commit is durable (see [`LiteUnit::commit_then_flush`]).
    #[cfg(test)]
    pub(crate) async fn commit(&self) -> Result<(), SqlError> {
        self.commit_then_flush().await?.await
    }

    /// Commits and hands the connection back, with the turn, before the commit is
    /// durable: the connection runs `synchronous = NORMAL`, so `COMMIT` writes the log
    /// but does not flush it. The returned future flushes it ([`Writer::flush_log`]):
    /// only once it has returned `Ok` may anything the unit wrote be acknowledged. The
    /// next unit writes meanwhile (a flush covers every commit before it: the log is
    /// appended to in order, and SQLite's recovery keeps the longest valid prefix of it).
    pub(crate) async fn commit_then_flush(
        &self,
    ) -> Result<impl Future<Output = Result<(), SqlError>> + Send + 'static + use<>, SqlError> {
        let open = lock(&self.open).take().ok_or_else(ended)?;
        let writer = self.writer.clone();
        let flusher = writer.clone();
        tokio::task::spawn_blocking(move || {
            let committed = if open.conn.is_autocommit() {
                Err(SqlError::Other(anyhow::anyhow!(
                    "the unit's transaction was rolled back by the database"
                )))
            } else {
                open.conn.execute_batch("COMMIT").map_err(SqlError::from)
            };
            // A failed COMMIT (a full disk) leaves the transaction open: `close` undoes
            // it, or the connection would not be fit to be used again.
            open.close(&writer);
            committed
        })
        .await
        .map_err(|e| SqlError::Other(anyhow::anyhow!("the commit did not finish: {e}")))??;
        Ok(async move {
            tokio::task::spawn_blocking(move || flusher.flush_log())
                .await
                .map_err(|e| SqlError::Other(anyhow::anyhow!("the flush did not finish: {e}")))?
        })
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

/// A few statements of a [`LiteUnit`] that stand or fall together, without a savepoint
/// (SQLite would copy every page they change into a journal first, in case it had to
/// undo them): once one of them has changed a row, a failing one — or dropping them
/// without [`Steps::keep`] — rolls the whole unit back (its commit fails; the caller
/// redoes it). A failure before any change (a unique key, a version that moved on) costs
/// nothing. The unit holds the database alone, so a caller checks what may fail before
/// it writes.
#[derive(Debug)]
pub(crate) struct Steps {
    unit: Arc<LiteUnit>,
    /// Whether a statement has changed a row.
    wrote: std::sync::atomic::AtomicBool,
    kept: bool,
}

impl Steps {
    /// Runs a statement (SQLite placeholders already).
    pub(crate) fn execute(&self, sql: &str, values: Vec<Value>) -> Result<u64, SqlError> {
        use std::sync::atomic::Ordering;
        match self.unit.execute(sql, values) {
            Ok(changed) => {
                if changed > 0 {
                    self.wrote.store(true, Ordering::SeqCst);
                }
                Ok(changed)
            }
            Err(e) => {
                if self.wrote.load(Ordering::SeqCst) {
                    self.unit.roll_back();
                }
                Err(e)
            }
        }
    }

    /// Keeps the statements (as part of the unit).
    pub(crate) fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        if !self.kept && self.wrote.load(std::sync::atomic::Ordering::SeqCst) {
            self.unit.roll_back();
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
    async fn the_next_unit_writes_while_a_commit_is_flushed() {
        let (_dir, writer, other) = file();
        let first = writer.begin(None).await.expect("begin");
        let (sql, values) = insert(1);
        first.execute(sql, values).expect("insert");
        let flushed = tokio::spawn(first.commit_then_flush().await.expect("commit"));
        // The write lock and the connection are free while the first unit's log is
        // flushed.
        let second = writer
            .begin(None)
            .await
            .expect("begin while the first flushes");
        let (sql, values) = insert(2);
        second.execute(sql, values).expect("insert");
        second.commit().await.expect("commit");
        flushed.await.expect("the flush ran").expect("flushed");
        assert_eq!(count(&other), 2);
    }

    #[tokio::test]
    async fn a_failed_flush_is_not_reported_durable_and_stops_the_writer() {
        let (_dir, writer, other) = file();
        let unit = writer.begin(None).await.expect("begin");
        let (sql, values) = insert(1);
        unit.execute(sql, values).expect("insert");
        writer
            .fail_next_flush
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let failed = unit.commit().await.expect_err("not durable");
        assert!(
            failed.to_string().contains("could not be made durable"),
            "{failed}"
        );
        // Committed, but never acknowledged: a sender sends it again (applying is
        // idempotent), and an audit's callers get an error instead of the data.
        assert_eq!(count(&other), 1);
        // The disk may have dropped what later commits would build on: no more units.
        let refused = writer
            .begin(None)
            .await
            .expect_err("no unit after a failed flush");
        assert!(refused.to_string().contains("restarts"), "{refused}");
    }

    #[tokio::test]
    async fn a_log_replaced_under_the_writer_is_opened_again() {
        let (dir, writer, other) = file();
        let unit = writer.begin(None).await.expect("begin");
        let (sql, values) = insert(1);
        unit.execute(sql, values).expect("insert");
        unit.commit().await.expect("commit");
        // Every connection closes: SQLite copies the log into the file and deletes it;
        // the next connection makes a new one.
        drop(lock(&writer.idle).take());
        drop(other);
        assert!(
            !std::path::Path::new(&writer.log).exists(),
            "the log went with the last connection"
        );
        let other = Connection::open(dir.path().join("w.db")).expect("open");
        let unit = writer.begin(None).await.expect("begin on the new log");
        let (sql, values) = insert(2);
        unit.execute(sql, values).expect("insert");
        unit.commit().await.expect("flushed through the new log");
        let held = lock(&writer.log_file)
            .as_ref()
            .map(|(_, id)| *id)
            .expect("a log held");
        let current = file_id(&std::fs::metadata(&writer.log).expect("the log"));
        assert_eq!(
            held, current,
            "the descriptor is of the log at the path now"
        );
        assert_eq!(count(&other), 2);
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
    async fn steps_that_fail_after_a_write_roll_the_unit_back() {
        let (_dir, writer, other) = file();
        let unit = Arc::new(writer.begin(None).await.expect("begin"));
        let (sql, values) = insert(1);
        unit.execute(sql, values).expect("insert");
        // Failing before any change: nothing to undo, the unit goes on.
        let steps = unit.steps();
        let (sql, values) = insert(1);
        assert!(steps.execute(sql, values).is_err(), "row 1 exists");
        drop(steps);
        // Kept: part of the unit.
        let steps = unit.steps();
        let (sql, values) = insert(2);
        steps.execute(sql, values).expect("insert");
        steps.keep();
        unit.commit().await.expect("commit");
        assert_eq!(count(&other), 2, "rows 1 and 2");

        // Failing after a change: the unit is rolled back, with what it held before.
        let unit = Arc::new(writer.begin(None).await.expect("begin"));
        let (sql, values) = insert(3);
        unit.execute(sql, values).expect("insert");
        let steps = unit.steps();
        let (sql, values) = insert(4);
        steps.execute(sql, values).expect("insert");
        let (sql, values) = insert(1);
        assert!(steps.execute(sql, values).is_err(), "row 1 exists");
        let (sql, values) = insert(5);
        assert!(unit.execute(sql, values).is_err(), "the unit has ended");
        assert!(unit.commit().await.is_err(), "and its commit says so");
        assert_eq!(count(&other), 2);

        // Dropped without being kept after a change: the same.
        let unit = Arc::new(writer.begin(None).await.expect("begin"));
        let steps = unit.steps();
        let (sql, values) = insert(6);
        steps.execute(sql, values).expect("insert");
        drop(steps);
        assert!(unit.commit().await.is_err(), "the unit was rolled back");
        assert_eq!(count(&other), 2);
    }
}
