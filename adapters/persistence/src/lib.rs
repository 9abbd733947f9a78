//! Persistence for SQLite (the embedded default) and PostgreSQL, from one code base, on
//! sea-orm: every repository port, the source registry, the audit chain, and accounts,
//! sessions and the security log.
//!
//! Each aggregate is stored as its serde JSON document (`body`) beside the columns that
//! are searched, indexed, locked or joined on; the columns are the truth for identity,
//! person and version, and conversion to domain types happens here, at the edge. SQL is
//! written once with `$n` placeholders; on SQLite they become anonymous `?` when they run
//! in order (binding numbered ones is quadratic in sqlx) or numbered `?n` otherwise, so
//! both databases run the same statements.
//!
//! Which database is chosen by its URL: `sqlite://care.db` (created if missing, WAL
//! mode) or `postgres://…`.

mod accounts;
mod audit;
mod checkpoints;
mod conn;
mod import;
mod indexes;
mod items;
pub mod migration;
mod people;
mod quarantine;
mod reader;
mod records;
mod sources;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use care_application::{
    AccessPolicy, AccountStore, Clock, Durable, FeedStores, IdGenerator, Ports, RepoError,
    SecurityLog, SessionStore, Unit, UnitOfWork,
};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database as SeaDatabase, DatabaseConnection, DbBackend, DbErr,
    SqlErr, Statement, Value,
};
use sea_orm_migration::MigratorTrait;

pub use accounts::{SqlAccounts, SqlSecurityLog, SqlSessions};
pub use audit::SqlAuditLog;
pub use import::{ImportBatch, PreparedImport};
pub use items::{SqlAlerts, SqlItems, SqlReferrals, StoredItem};
pub use people::SqlPeople;
pub use quarantine::SqlQuarantine;
pub(crate) use reader::{Row, col};
pub use records::SqlConsent;
pub use sources::SqlSources;

/// The shape of a connection pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    /// SQLite connections.
    pub sqlite_connections: u32,
    /// SQLite page cache per connection, in MiB.
    pub sqlite_cache_mib: u32,
    /// PostgreSQL connections.
    pub postgres_connections: u32,
    /// SQLite `synchronous = FULL` (every commit on disk when it returns). Only a bulk
    /// load into an empty database, which is thrown away if the machine fails midway,
    /// turns it off.
    pub sqlite_durable: bool,
    /// SQLite: a rollback journal instead of the write-ahead log, so that a bulk load
    /// writes each page once, into the file itself, rather than into a log copied back by
    /// checkpoints. Only possible while no other connection has the file open; the pool
    /// that opens the file next returns it to WAL.
    pub sqlite_rollback_journal: bool,
}

impl Pool {
    /// For batch work: few SQLite connections, 256 MiB of cache each.
    pub const BATCH: Pool = Pool {
        sqlite_connections: 8,
        sqlite_cache_mib: 256,
        postgres_connections: 16,
        sqlite_durable: true,
        sqlite_rollback_journal: false,
    };
    /// For `seed` into an empty database: the batch shape without a disk flush per
    /// commit, and on SQLite a rollback journal instead of the write-ahead log, so each
    /// page is written once (the load ends by closing this pool, flushing the file
    /// ([`flush_file`]) and opening a durable pool, which returns the file to WAL).
    pub const BULK_LOAD: Pool = Pool {
        sqlite_durable: false,
        sqlite_rollback_journal: true,
        ..Pool::BATCH
    };
    /// [`Pool::BULK_LOAD`] for a file another pool has open (the demo's server): the
    /// write-ahead log stays.
    pub const BULK_LOAD_SHARED: Pool = Pool {
        sqlite_rollback_journal: false,
        ..Pool::BULK_LOAD
    };
    /// For serving: 32 SQLite connections of 64 MiB (measured: 2,094–2,764 person
    /// summaries/s against 1,773–1,784 with the batch shape; docs/BENCHMARKS.md).
    /// PostgreSQL did not gain from more connections (its server processes share the
    /// same cores).
    pub const SERVING: Pool = Pool {
        sqlite_connections: 32,
        sqlite_cache_mib: 64,
        postgres_connections: 16,
        sqlite_durable: true,
        sqlite_rollback_journal: false,
    };
}

/// A pooled connection idle this long is pinged before it is handed out.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(10);

/// How long a full checkpoint waits for another connection's copy of the log to end
/// ([`Database::checkpoint`]).
const CHECKPOINT_WAIT: Duration = Duration::from_secs(30);

/// A connection pool to the care record's database, SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct Database {
    /// The pool (migrations, tests that reach past the adapters).
    pool: DatabaseConnection,
    /// What statements run on: the pool, or a unit of work's transaction.
    conn: conn::Conn,
    /// On a SQLite file, the pool's reads run on these, on the calling thread.
    readers: Option<Arc<reader::Readers>>,
    /// On a SQLite file, units of work run on this connection, on the calling thread.
    writer: Option<Arc<writer::Writer>>,
    /// On a SQLite file, the thread that checkpoints its log ([`checkpoints`]).
    checkpoints: Option<Arc<checkpoints::Checkpoints>>,
}

impl Database {
    /// Connects to `url` for batch work (migrate, seed, load tests): on SQLite a few
    /// connections with a large page cache each. A SQLite file is created if missing and
    /// opened in WAL mode with `synchronous = FULL` (a commit is on disk when it returns:
    /// the audit's promise to each caller), foreign keys on and a busy timeout, so
    /// concurrent writers wait rather than fail.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Self::connect_with(url, Pool::BATCH).await
    }

    /// Connects to `url` for serving many concurrent requests: on SQLite, more
    /// connections (sqlx runs each on its own thread, and a request waits for one per
    /// statement) with a smaller page cache each, so that memory stays bounded.
    pub async fn connect_serving(url: &str) -> anyhow::Result<Self> {
        Self::connect_with(url, Pool::SERVING).await
    }

    /// Connects with an explicit pool shape.
    pub async fn connect_with(url: &str, pool: Pool) -> anyhow::Result<Self> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .sqlx_logging(false)
            .connect_timeout(Duration::from_secs(10))
            .acquire_timeout(Duration::from_secs(30))
            // A connection is checked (a round trip) before use only once it has been
            // idle long enough for the server or a firewall to have dropped it, not at
            // every statement: on PostgreSQL the check was a round trip more per query.
            // A connection that broke more recently (a database restart) fails the one
            // statement that finds it broken, and is then closed, not reused.
            .test_before_acquire_if_idle_for(IDLE_BEFORE_PING);
        if url.starts_with("sqlite:") {
            let cache = format!("-{}", u64::from(pool.sqlite_cache_mib) * 1024);
            options
                .max_connections(pool.sqlite_connections)
                .min_connections(1)
                .map_sqlx_sqlite_opts(move |o| {
                    o.create_if_missing(true)
                        .journal_mode(if pool.sqlite_rollback_journal {
                            // Outlives a killed process, as the log would.
                            SqliteJournalMode::Persist
                        } else {
                            SqliteJournalMode::Wal
                        })
                        .synchronous(if pool.sqlite_durable {
                            SqliteSynchronous::Full
                        } else {
                            SqliteSynchronous::Off
                        })
                        .foreign_keys(true)
                        .busy_timeout(Duration::from_secs(30))
                        .pragma("cache_size", cache.clone())
                        .pragma("temp_store", "memory")
                        .pragma("wal_autocheckpoint", checkpoints::BACKSTOP.to_string())
                });
        } else {
            options
                .max_connections(pool.postgres_connections)
                .min_connections(1);
        }
        let conn = SeaDatabase::connect(options)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the database: {e}"))?;
        let sqlite = conn.get_database_backend() == DbBackend::Sqlite;
        let turn = sqlite.then(conn::Turn::default);
        let mut db = Self {
            conn: conn::Conn::Pool(conn.clone(), turn.clone()),
            pool: conn,
            readers: None,
            writer: None,
            checkpoints: None,
        };
        // Not for a bulk load (its file is not in WAL mode while it runs), nor for an
        // in-memory database (another connection would see another database).
        if pool.sqlite_durable
            && let Some(file) = db.sqlite_file().await?
        {
            db.readers = Some(Arc::new(reader::Readers::new(
                file.clone(),
                pool.sqlite_cache_mib,
            )));
            db.writer = Some(Arc::new(writer::Writer::new(
                file.clone(),
                pool.sqlite_cache_mib,
            )));
            if let Some(turn) = turn {
                db.checkpoints = Some(Arc::new(
                    checkpoints::Checkpoints::start(file, turn)
                        .map_err(|e| anyhow::anyhow!("cannot start checkpoints: {e}"))?,
                ));
            }
        }
        Ok(db)
    }

    /// Closes the pool (every clone of this handle), waiting for its connections to close:
    /// on SQLite, what lets the next connection change the journal mode. A SQLite file's
    /// own connections (readers, the writer, the checkpoint thread's) close when the last
    /// clone is dropped.
    pub async fn close(self) -> anyhow::Result<()> {
        self.pool
            .close()
            .await
            .map_err(|e| anyhow::anyhow!("cannot close the database: {e}"))
    }

    /// Makes everything written so far durable: on SQLite, a checkpoint that moves the
    /// write-ahead log into the database file and flushes both (call it on a durable
    /// connection after a load with `Pool::BULK_LOAD_SHARED`); on PostgreSQL, nothing to
    /// do. Fails if a reader kept the checkpoint from finishing (after the busy timeout,
    /// 30 s); waits while another connection is copying the log (such as this process's
    /// checkpoint thread, `checkpoints.rs`), for up to [`CHECKPOINT_WAIT`].
    pub async fn checkpoint(&self) -> anyhow::Result<()> {
        if self.backend() != DbBackend::Sqlite {
            return Ok(());
        }
        // Busy at once, with no page counts, if another connection is copying the log
        // (a database's own checkpoint thread): asked again for a while, not failed.
        let deadline = std::time::Instant::now() + CHECKPOINT_WAIT;
        loop {
            let row = self
                .pool
                .query_one_raw(Statement::from_string(
                    DbBackend::Sqlite,
                    "PRAGMA wal_checkpoint(TRUNCATE)",
                ))
                .await
                .map_err(|e| anyhow::anyhow!("checkpoint failed: {e}"))?;
            let Some(row) = row else {
                return Ok(());
            };
            let busy: i64 = row.try_get_by_index(0)?;
            let (log, done): (i64, i64) = (row.try_get_by_index(1)?, row.try_get_by_index(2)?);
            if busy == 0 && log == done {
                return Ok(());
            }
            let copying = busy == 1 && log == -1;
            anyhow::ensure!(
                !copying || std::time::Instant::now() < deadline,
                "checkpoint could not start: another connection kept copying the log for \
                 {CHECKPOINT_WAIT:?}; run `carerecord migrate` once nothing else uses the database"
            );
            anyhow::ensure!(
                copying,
                "checkpoint could not finish ({done} of {log} pages; another connection \
                 was reading): run `carerecord migrate` once nothing else uses the database"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The SQLite database's file, if it is one (not PostgreSQL, not in memory), for
    /// [`flush_file`]: read it before closing the pool.
    pub async fn sqlite_file(&self) -> anyhow::Result<Option<String>> {
        if self.backend() != DbBackend::Sqlite {
            return Ok(None);
        }
        let file: Option<String> = self
            .value("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .await?;
        Ok(file.filter(|file| !file.is_empty()))
    }

    /// The first column of the first row of a query on the pool, if there is a row.
    pub(crate) async fn value<T: sea_orm::TryGetable>(
        &self,
        sql: &str,
    ) -> anyhow::Result<Option<T>> {
        let row = self.pool.query_one_raw(self.statement(sql, vec![])).await?;
        Ok(row.map(|row| row.try_get_by_index(0)).transpose()?)
    }

    /// Applies every migration not yet applied, and rebuilds any secondary index an
    /// interrupted bulk load left missing.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        migration::Migrator::up(&self.pool, None)
            .await
            .map_err(|e| anyhow::anyhow!("migration failed: {e}"))?;
        self.build_indexes().await
    }

    /// Which database this is.
    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// The database's name, for reports.
    pub fn backend_name(&self) -> &'static str {
        match self.backend() {
            DbBackend::Postgres => "PostgreSQL",
            DbBackend::Sqlite => "SQLite",
            _ => "an unsupported database",
        }
    }

    /// The sea-orm connection (for tests that reach past the adapters, as an attacker
    /// with database access would).
    pub fn connection(&self) -> &DatabaseConnection {
        &self.pool
    }

    /// The application's ports over this database, with the given policy, clock and ids.
    pub fn ports(
        &self,
        policy: Arc<dyn AccessPolicy>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
    ) -> Ports {
        Ports {
            people: Arc::new(SqlPeople::new(self.clone())),
            referrals: Arc::new(SqlReferrals::new(self.clone())),
            alerts: Arc::new(SqlAlerts::new(self.clone())),
            consent: Arc::new(SqlConsent::new(self.clone())),
            audit: Arc::new(SqlAuditLog::new(self.clone())),
            policy,
            sources: Arc::new(SqlSources::new(self.clone())),
            quarantine: Arc::new(SqlQuarantine::new(self.clone())),
            units: Arc::new(SqlUnits { db: self.clone() }),
            clock,
            ids,
        }
    }

    /// Whether this is a SQLite file with a write connection of our own ([`writer`]):
    /// units of work run there, statement by statement, without a round trip.
    pub(crate) fn has_write_connection(&self) -> bool {
        self.writer.is_some()
    }

    /// Waits for this process's turn to write (see [`conn::Conn::write_turn`]).
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        self.conn.write_turn().await
    }

    /// Opens a unit of work: one transaction (on SQLite `BEGIN IMMEDIATE`, so it holds
    /// the write lock from the start and never fails to upgrade a read; on PostgreSQL
    /// READ COMMITTED) that every store built on the returned database shares. On a
    /// SQLite file it runs on the write connection ([`writer`]).
    pub async fn unit(&self) -> Result<SqlUnit, RepoError> {
        self.open_unit(false).await
    }

    /// A unit of work for a writer that is not a feed's (the audit chain's appends):
    /// counted while it waits for the write turn, so that a feed's unit commits early
    /// for it ([`conn::Turn::others_waiting`]).
    pub(crate) async fn append_unit(&self) -> Result<SqlUnit, RepoError> {
        self.open_unit(true).await
    }

    async fn open_unit(&self, counted: bool) -> Result<SqlUnit, RepoError> {
        let (turn, mut guard) = match &self.conn {
            conn::Conn::Pool(_, Some(turn)) => {
                let guard = if counted {
                    turn.take().await
                } else {
                    turn.take_for_unit().await
                };
                (Some(turn.clone()), Some(guard))
            }
            _ => (None, None),
        };
        let (conn, tx) = match (&self.writer, &self.conn) {
            (Some(writer), conn::Conn::Pool(..)) => {
                // The unit holds the turn: it lets it go only once its connection is done.
                let unit = writer.begin(guard.take()).await.map_err(unexpected)?;
                let unit = Arc::new(unit);
                (conn::Conn::Lite(unit.clone()), UnitTx::Lite(unit))
            }
            _ => {
                let tx = self
                    .conn
                    .begin_with_options(conn::write_options(self.backend()))
                    .await
                    .map_err(unexpected)?;
                let tx = Arc::new(tokio::sync::Mutex::new(Some(tx)));
                let conn = conn::Conn::Unit {
                    backend: self.backend(),
                    tx: tx.clone(),
                };
                (conn, UnitTx::Sea(tx))
            }
        };
        Ok(SqlUnit {
            _turn: guard,
            turn,
            tallies: Arc::default(),
            db: Database {
                pool: self.pool.clone(),
                conn,
                readers: None,
                writer: None,
                checkpoints: None,
            },
            tx,
        })
    }

    /// The identity stores over this database: accounts (users and organisations),
    /// sessions and the security log, for `care_application::IdentityPorts`.
    pub fn identity_stores(
        &self,
    ) -> (
        Arc<dyn AccountStore>,
        Arc<dyn SessionStore>,
        Arc<dyn SecurityLog>,
    ) {
        (
            Arc::new(SqlAccounts::new(self.clone())),
            Arc::new(SqlSessions::new(self.clone())),
            Arc::new(SqlSecurityLog::new(self.clone())),
        )
    }

    /// Runs a query written with `$n` placeholders and decodes each row.
    pub(crate) async fn rows<T>(
        &self,
        sql: &str,
        values: Vec<Value>,
        decode: impl Fn(&Row<'_>) -> Result<T, RepoError>,
    ) -> Result<Vec<T>, RepoError> {
        match (&self.conn, &self.readers) {
            (conn::Conn::Pool(..), Some(readers)) => {
                return readers.rows(&sqlite_placeholders(sql), values, decode);
            }
            (conn::Conn::Lite(unit), _) => {
                // Synchronous: spend tokio's budget so a long unit still lets other tasks
                // of this worker run now and then.
                tokio::task::consume_budget().await;
                return unit.rows(&sqlite_placeholders(sql), values, decode);
            }
            _ => {}
        }
        let rows = self
            .conn
            .query_all_raw(self.statement(sql, values))
            .await
            .map_err(unexpected)?;
        rows.iter().map(|row| decode(&Row::Sea(row))).collect()
    }

    /// Runs a statement written with `$n` placeholders; returns the rows it changed. On
    /// the pool it takes the write turn (SQLite).
    pub(crate) async fn execute(&self, sql: &str, values: Vec<Value>) -> Result<u64, SqlError> {
        match &self.conn {
            conn::Conn::Lite(unit) => {
                tokio::task::consume_budget().await;
                unit.execute(&sqlite_placeholders(sql), values)
            }
            conn => Ok(conn
                .execute_raw(self.statement(sql, values))
                .await?
                .rows_affected()),
        }
    }

    /// [`Database::execute`] for a statement that may fail (a taken key) without
    /// spoiling a unit it runs in: on PostgreSQL a failed statement aborts the whole
    /// transaction, so there it runs in a savepoint of its own; on SQLite a constraint
    /// failure undoes only its statement (the errors that make SQLite roll back the
    /// whole transaction — a full disk, an I/O error — end the unit: `writer.rs`).
    pub(crate) async fn execute_alone(
        &self,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<u64, SqlError> {
        if !matches!(self.conn, conn::Conn::Unit { .. }) || self.backend() != DbBackend::Postgres {
            return self.execute(sql, values).await;
        }
        let txn = self.transaction().await?;
        let done = txn.execute(self, sql, values).await?;
        txn.commit().await?;
        Ok(done)
    }

    /// A transaction for statements that stand or fall together: on the pool a new one
    /// (the caller takes the write turn first); within a unit a savepoint, or on a SQLite
    /// file the unit itself ([`conn::Txn::Lite`]).
    pub(crate) async fn transaction(&self) -> Result<conn::Txn, SqlError> {
        match &self.conn {
            conn::Conn::Lite(unit) => Ok(conn::Txn::Lite(unit.steps())),
            conn => Ok(conn::Txn::Sea(conn.begin().await?)),
        }
    }

    /// A statement for this database from SQL written with `$n` placeholders.
    pub(crate) fn statement(&self, sql: &str, values: Vec<Value>) -> Statement {
        let backend = self.backend();
        let sql = match backend {
            DbBackend::Postgres => sql.to_owned(),
            _ => sqlite_placeholders(sql),
        };
        Statement::from_sql_and_values(backend, sql, values)
    }
}

/// Flushes a SQLite file that a `Pool::BULK_LOAD` wrote straight into with
/// `synchronous = OFF` (nothing else flushes those pages). Only once every connection of
/// this process to the file is closed: closing any handle to a file drops the process's
/// POSIX locks on it, so opening it beside a live SQLite connection would leave that
/// connection unprotected (https://sqlite.org/howtocorrupt.html, 2.2).
pub async fn flush_file(file: String) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || std::fs::File::open(&file)?.sync_all())
        .await?
        .map_err(|e| anyhow::anyhow!("cannot flush the database file: {e}"))
}

/// Rewrites `$n` placeholders for SQLite. When they run `$1, $2, …` in order, each once
/// (as every multi-row insert here does), they become anonymous `?`: binding numbered
/// parameters makes SQLite look each one's name up in a list (`sqlite3_bind_parameter_name`,
/// linear), which made a 3,000-parameter insert quadratic and was 43% of a bulk load's
/// time. Otherwise (a parameter used twice) they become numbered `?n`.
fn sqlite_placeholders(sql: &str) -> String {
    // Byte by byte: `$` and digits are ASCII, so every other byte (UTF-8 included) is
    // copied as it is. (Run for every statement: it was 5% of a CSV load's CPU written
    // with `chars()` and a list of the numbers.)
    let bytes = sql.as_bytes();
    let placeholder = |i: usize| -> Option<(usize, usize)> {
        let digits = bytes[i + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        (bytes[i] == b'$' && digits > 0).then(|| {
            let number = sql[i + 1..i + 1 + digits].parse().unwrap_or(0);
            (number, i + 1 + digits)
        })
    };
    let mut expected = 1;
    let mut i = 0;
    while let Some(at) = bytes[i..].iter().position(|b| *b == b'$').map(|k| i + k) {
        match placeholder(at) {
            Some((number, next)) if number == expected => {
                expected += 1;
                i = next;
            }
            Some(_) => return sql.replace('$', "?"),
            None => i = at + 1,
        }
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(at) = bytes[i..].iter().position(|b| *b == b'$').map(|k| i + k) {
        out.extend_from_slice(&bytes[i..at]);
        match placeholder(at) {
            Some((_, next)) => {
                out.push(b'?');
                i = next;
            }
            None => {
                out.push(b'$');
                i = at + 1;
            }
        }
    }
    out.extend_from_slice(&bytes[i..]);
    // Only ASCII `$n` became `?`: still the UTF-8 it was.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A statement's failure, from sea-orm or from our own SQLite connections.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SqlError {
    #[error(transparent)]
    Sea(#[from] DbErr),
    #[error(transparent)]
    Lite(#[from] rusqlite::Error),
    #[error(transparent)]
    Other(anyhow::Error),
}

impl SqlError {
    /// Whether a row was refused for a taken unique key (or primary key).
    fn is_unique_violation(&self) -> bool {
        match self {
            SqlError::Sea(err) => {
                matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
            }
            SqlError::Lite(rusqlite::Error::SqliteFailure(err, _)) => matches!(
                err.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            ),
            _ => false,
        }
    }
}

/// Maps a database error at the edge: a uniqueness violation is the caller's conflict,
/// anything else is unexpected.
pub(crate) fn unique_or_unexpected(
    err: impl Into<SqlError>,
    on_unique: impl FnOnce() -> RepoError,
) -> RepoError {
    let err = err.into();
    if err.is_unique_violation() {
        on_unique()
    } else {
        unexpected(err)
    }
}

pub(crate) fn unexpected(err: impl std::error::Error + Send + Sync + 'static) -> RepoError {
    RepoError::Unexpected(anyhow::Error::new(err))
}

/// Microseconds since the epoch, as stored.
pub(crate) fn micros(at: care_kernel::Timestamp) -> i64 {
    at.timestamp_micros()
}

pub(crate) fn from_micros(us: i64) -> Result<care_kernel::Timestamp, RepoError> {
    care_kernel::Timestamp::from_timestamp_micros(us)
        .ok_or_else(|| RepoError::Unexpected(anyhow::anyhow!("stored time out of range: {us}")))
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, RepoError> {
    serde_json::to_string(value).map_err(unexpected)
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, RepoError> {
    serde_json::from_str(text).map_err(unexpected)
}

/// Versions are stored as BIGINT.
pub(crate) fn version_value(v: u64) -> Value {
    i64::try_from(v).unwrap_or(i64::MAX).into()
}

pub(crate) fn version_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::sqlite_placeholders;

    #[test]
    fn ordered_placeholders_become_anonymous_and_repeated_ones_numbered() {
        assert_eq!(
            sqlite_placeholders("INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)"),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"
        );
        assert_eq!(
            sqlite_placeholders(
                "UPDATE t SET a = CASE WHEN a < $1 THEN $1 ELSE a END WHERE id = $2"
            ),
            "UPDATE t SET a = CASE WHEN a < ?1 THEN ?1 ELSE a END WHERE id = ?2"
        );
        assert_eq!(sqlite_placeholders("SELECT 1"), "SELECT 1");
        assert_eq!(
            sqlite_placeholders("SELECT 'é$', $1 || '£' FROM t WHERE a = $2$"),
            "SELECT 'é$', ? || '£' FROM t WHERE a = ?$",
            "a `$` without digits stays, and text around is kept"
        );
        assert_eq!(
            sqlite_placeholders("VALUES ($1, $2), ($3, $10)"),
            "VALUES (?1, ?2), (?3, ?10)",
            "a gap in the numbers keeps them numbered"
        );
        assert_eq!(
            sqlite_placeholders("SELECT $2, $1"),
            "SELECT ?2, ?1",
            "out of order stays numbered"
        );
    }
}

/// Units of work on the database (see [`Database::unit`]).
#[derive(Debug, Clone)]
pub struct SqlUnits {
    db: Database,
}

#[async_trait::async_trait]
impl UnitOfWork for SqlUnits {
    async fn begin(&self) -> Result<Box<dyn Unit>, RepoError> {
        Ok(Box::new(self.db.unit().await?))
    }

    fn others_attached(&self) -> bool {
        self.db
            .writer
            .as_ref()
            .is_some_and(|writer| writer.others_attached())
    }

    fn capacity(&self) -> usize {
        match self.db.backend() {
            DbBackend::Postgres => UNIT_CAPACITY_POSTGRES,
            _ => UNIT_CAPACITY_SQLITE,
        }
    }
}

/// An open unit of work: a transaction every store it hands out writes in. Dropped
/// without `commit`, it is rolled back.
#[derive(Debug)]
pub struct SqlUnit {
    /// The transaction's statements; dropped before the turn.
    db: Database,
    tx: UnitTx,
    /// This process's turn to write (SQLite), until the unit ends (on a SQLite file the
    /// write connection's unit holds it instead).
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// The queue for it, to see whether other writers wait.
    turn: Option<conn::Turn>,
    /// The feed sources' activity recorded in the unit, written when it commits.
    tallies: Arc<sources::Tallies>,
}

/// A unit's transaction, to end it.
#[derive(Debug)]
enum UnitTx {
    /// On sea-orm; taken out when the unit commits.
    Sea(Arc<tokio::sync::Mutex<Option<sea_orm::DatabaseTransaction>>>),
    /// On the SQLite write connection.
    Lite(Arc<writer::LiteUnit>),
}

impl Drop for SqlUnit {
    fn drop(&mut self) {
        self.tallies.close();
        // Before the turn goes: the next unit finds the write connection idle. (A store
        // still held elsewhere then fails instead of writing outside the unit.)
        if let UnitTx::Lite(unit) = &self.tx {
            unit.roll_back();
        }
    }
}

/// How many feed messages a unit holds on SQLite: one writer at a time anyway, and each
/// unit waits its turn in a fair queue, so units can be large; they are also cut at
/// 50 ms by the feeds (the longest a reader's audit append waits for a feed).
const UNIT_CAPACITY_SQLITE: usize = 500;
/// On PostgreSQL one: a unit holds its rows' locks until it commits, and two units that
/// touch the same people in another order would deadlock.
const UNIT_CAPACITY_POSTGRES: usize = 1;

impl SqlUnit {
    /// The unit's transaction, to run statements in.
    pub(crate) fn database(&self) -> &Database {
        &self.db
    }

    /// Commits the unit, with the sources' activity it recorded, and returns once the
    /// commit is durable.
    pub(crate) async fn end(&self) -> Result<(), RepoError> {
        self.end_then_flush().await?.await
    }

    /// Commits the unit and lets the database go to the next writer; the returned
    /// future says when the commit is durable (on a SQLite file the log's flush,
    /// [`writer::LiteUnit::commit_then_flush`]; elsewhere it already is). Nothing the
    /// unit wrote may be acknowledged before it has returned `Ok`.
    pub(crate) async fn end_then_flush(&self) -> Result<Durable, RepoError> {
        self.tallies.write(&self.db).await?;
        match &self.tx {
            UnitTx::Lite(unit) => {
                let flush = unit.commit_then_flush().await.map_err(unexpected)?;
                Ok(Box::pin(async move { flush.await.map_err(unexpected) }))
            }
            UnitTx::Sea(tx) => {
                // Taken out, the stores still held elsewhere fail instead of writing
                // outside it.
                let tx = tx.lock().await.take();
                match tx {
                    Some(tx) => tx.commit().await.map_err(unexpected)?,
                    None => {
                        return Err(RepoError::Unexpected(anyhow::anyhow!(
                            "the unit of work had already ended"
                        )));
                    }
                }
                Ok(care_application::durable_already())
            }
        }
    }
}

#[async_trait::async_trait]
impl Unit for SqlUnit {
    fn others_waiting(&self) -> bool {
        self.turn.as_ref().is_some_and(conn::Turn::others_waiting)
    }

    fn stores(&self, _outside: &FeedStores) -> FeedStores {
        FeedStores {
            people: Arc::new(SqlPeople::new(self.db.clone())),
            referrals: Arc::new(SqlReferrals::new(self.db.clone())),
            alerts: Arc::new(SqlAlerts::new(self.db.clone())),
            sources: Arc::new(SqlSources::in_unit(self.db.clone(), self.tallies.clone())),
            quarantine: Arc::new(SqlQuarantine::new(self.db.clone())),
        }
    }

    async fn commit(self: Box<Self>) -> Result<(), RepoError> {
        self.end().await
    }

    async fn commit_then_flush(self: Box<Self>) -> Result<Durable, RepoError> {
        self.end_then_flush().await
    }
}
