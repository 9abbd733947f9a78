//! What a repository runs its statements on: the pool, or one open transaction shared
//! by every store of a unit of work (`Database::unit`), so that a feed batch's writes,
//! its quarantine entries and its sources' counters commit together. On a SQLite file a
//! unit's transaction is on our own write connection ([`crate::writer`]), elsewhere on
//! sea-orm's.

use std::sync::Arc;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, Statement, TransactionOptions, TransactionTrait,
};
use tokio::sync::Mutex;

use crate::SqlError;
use crate::writer::{LiteUnit, Steps};

/// Whose turn it is to write, on SQLite: one writer at a time in this process, served
/// in the order they asked (tokio's mutex is fair). SQLite has one write lock, and a
/// writer that finds it taken only polls (the busy timeout), so without a queue a busy
/// feed could keep readers' audit appends out for seconds.
///
/// Writers other than feed units of work (audit batches — themselves units, see
/// `Database::append_unit` — session touches, account changes) are counted while they
/// wait, so that a feed's unit can see that someone is waiting and commit early
/// ([`Turn::others_waiting`]): a reader's audit append then waits for one feed message,
/// not for a whole unit.
#[derive(Debug, Clone, Default)]
pub(crate) struct Turn {
    lock: Arc<Mutex<()>>,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts a writer as waiting until dropped (also when its wait is cancelled).
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Turn {
    /// The turn for a writer other than a feed's unit of work, counted while it waits.
    pub(crate) async fn take(&self) -> tokio::sync::OwnedMutexGuard<()> {
        if let Ok(guard) = self.lock.clone().try_lock_owned() {
            return guard;
        }
        self.waiting
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _counted = Waiting(&self.waiting);
        self.lock.clone().lock_owned().await
    }

    /// The turn for a feed's unit of work (not counted: feed units take turns among
    /// themselves), and for the checkpoint thread (`crate::checkpoints`).
    pub(crate) async fn take_for_unit(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.lock.clone().lock_owned().await
    }

    /// Whether a writer other than a feed's unit is waiting for the turn.
    pub(crate) fn others_waiting(&self) -> bool {
        self.waiting.load(std::sync::atomic::Ordering::SeqCst) > 0
    }
}

/// The pool, or a unit of work's transaction (taken out when the unit commits).
#[derive(Debug, Clone)]
pub(crate) enum Conn {
    /// The pool, and (SQLite) the write turn a single statement on it takes.
    Pool(DatabaseConnection, Option<Turn>),
    Unit {
        backend: DbBackend,
        tx: Arc<Mutex<Option<DatabaseTransaction>>>,
    },
    /// A unit on a SQLite file: its statements go through `Database::execute`, `rows`
    /// and `transaction`, never through sea-orm (which fails them).
    Lite(Arc<LiteUnit>),
}

/// A transaction for a few statements that stand or fall together: on the pool a new
/// one; within a unit a savepoint, or on a SQLite file the unit itself.
#[derive(Debug)]
pub(crate) enum Txn {
    Sea(DatabaseTransaction),
    /// In a unit on a SQLite file: no savepoint (SQLite copies every page a savepoint
    /// changes into a journal first: 7% of a feed's write path). The statements stand
    /// or fall with the whole unit: once one of them has changed a row, a failure or a
    /// drop without [`Txn::commit`] rolls the unit back. The unit holds the database
    /// alone, so a caller can check what may fail (a unique key) before it writes.
    Lite(Steps),
}

impl Txn {
    /// Runs a statement written with `$n` placeholders within the transaction.
    pub(crate) async fn execute(
        &self,
        db: &crate::Database,
        sql: &str,
        values: Vec<sea_orm::Value>,
    ) -> Result<u64, SqlError> {
        match self {
            Txn::Sea(txn) => Ok(txn
                .execute_raw(db.statement(sql, values))
                .await?
                .rows_affected()),
            Txn::Lite(steps) => steps.execute(&crate::sqlite_placeholders(sql), values),
        }
    }

    /// Keeps the statements (commits the transaction; in a SQLite unit, leaves them to
    /// the unit's commit).
    pub(crate) async fn commit(self) -> Result<(), SqlError> {
        match self {
            Txn::Sea(txn) => Ok(txn.commit().await?),
            Txn::Lite(steps) => {
                steps.keep();
                Ok(())
            }
        }
    }

    /// Whether a failure after a write ends the whole unit (see [`Txn::Lite`]): check
    /// what may fail before writing.
    pub(crate) fn undoes_nothing(&self) -> bool {
        matches!(self, Txn::Lite(_))
    }
}

/// A unit's transaction, while it is open.
async fn open(
    tx: &Mutex<Option<DatabaseTransaction>>,
) -> Result<tokio::sync::MappedMutexGuard<'_, DatabaseTransaction>, DbErr> {
    tokio::sync::MutexGuard::try_map(tx.lock().await, Option::as_mut).map_err(|_| {
        DbErr::Custom("the unit of work has ended (committed or rolled back)".to_owned())
    })
}

/// What a SQLite unit's statement gets if it is sent through sea-orm: a bug, kept from
/// writing outside the unit.
fn not_on_sea() -> DbErr {
    DbErr::Custom("a SQLite unit of work's statements run on its own connection".to_owned())
}

/// The options of a write transaction (a unit of work, an audit batch): on PostgreSQL
/// READ COMMITTED, whatever the server's default (under REPEATABLE READ a second
/// server's `FOR UPDATE` on the audit head would fail instead of waiting); on SQLite
/// `BEGIN IMMEDIATE`, which holds the write lock from the start and so never fails to
/// upgrade a read.
pub(crate) fn write_options(backend: DbBackend) -> TransactionOptions {
    match backend {
        DbBackend::Postgres => TransactionOptions {
            isolation_level: Some(sea_orm::IsolationLevel::ReadCommitted),
            ..TransactionOptions::default()
        },
        _ => TransactionOptions {
            sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        },
    }
}

impl Conn {
    /// Waits for this process's turn to write, on SQLite (held until dropped); `None`
    /// on PostgreSQL, and within a unit of work (which holds the turn already).
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match self {
            Conn::Pool(_, Some(turn)) => Some(turn.take().await),
            _ => None,
        }
    }

    /// A transaction: on the pool, a new one; in a unit, a savepoint within it.
    pub(crate) async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        match self {
            Conn::Pool(pool, _) => pool.begin().await,
            Conn::Unit { tx, .. } => open(tx).await?.begin().await,
            Conn::Lite(_) => Err(not_on_sea()),
        }
    }

    /// [`Conn::begin`] with options for a new transaction (a savepoint takes none).
    pub(crate) async fn begin_with_options(
        &self,
        options: TransactionOptions,
    ) -> Result<DatabaseTransaction, DbErr> {
        match self {
            Conn::Pool(pool, _) => pool.begin_with_options(options).await,
            Conn::Unit { .. } | Conn::Lite(_) => self.begin().await,
        }
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Conn {
    fn get_database_backend(&self) -> DbBackend {
        match self {
            Conn::Pool(pool, _) => pool.get_database_backend(),
            Conn::Unit { backend, .. } => *backend,
            Conn::Lite(_) => DbBackend::Sqlite,
        }
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match self {
            Conn::Pool(pool, _) => {
                let _turn = self.write_turn().await;
                pool.execute_raw(stmt).await
            }
            Conn::Unit { tx, .. } => open(tx).await?.execute_raw(stmt).await,
            Conn::Lite(_) => Err(not_on_sea()),
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match self {
            Conn::Pool(pool, _) => {
                let _turn = self.write_turn().await;
                pool.execute_unprepared(sql).await
            }
            Conn::Unit { tx, .. } => open(tx).await?.execute_unprepared(sql).await,
            Conn::Lite(_) => Err(not_on_sea()),
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self {
            Conn::Pool(pool, _) => pool.query_one_raw(stmt).await,
            Conn::Unit { tx, .. } => open(tx).await?.query_one_raw(stmt).await,
            Conn::Lite(_) => Err(not_on_sea()),
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self {
            Conn::Pool(pool, _) => pool.query_all_raw(stmt).await,
            Conn::Unit { tx, .. } => open(tx).await?.query_all_raw(stmt).await,
            Conn::Lite(_) => Err(not_on_sea()),
        }
    }
}
