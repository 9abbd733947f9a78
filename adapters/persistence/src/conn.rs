//! What a repository runs its statements on: the pool, or one open transaction shared
//! by every store of a unit of work (`Database::unit`), so that a feed batch's writes,
//! its quarantine entries and its sources' counters commit together.

use std::sync::Arc;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, Statement, TransactionOptions, TransactionTrait,
};
use tokio::sync::Mutex;

/// Whose turn it is to write, on SQLite: one writer at a time in this process, served
/// in the order they asked (tokio's mutex is fair). SQLite has one write lock, and a
/// writer that finds it taken only polls (the busy timeout), so without a queue a busy
/// feed could keep readers' audit appends out for seconds.
pub(crate) type Turn = Arc<Mutex<()>>;

/// The pool, or a unit of work's transaction (taken out when the unit commits).
#[derive(Debug, Clone)]
pub(crate) enum Conn {
    /// The pool, and (SQLite) the write turn a single statement on it takes.
    Pool(DatabaseConnection, Option<Turn>),
    Unit {
        backend: DbBackend,
        tx: Arc<Mutex<Option<DatabaseTransaction>>>,
    },
}

fn ended() -> DbErr {
    DbErr::Custom("the unit of work has ended (committed or rolled back)".to_owned())
}

impl Conn {
    /// A transaction: on the pool, a new one; in a unit, a savepoint within it.
    pub(crate) async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        match self {
            Conn::Pool(pool, _) => pool.begin().await,
            Conn::Unit { tx, .. } => tx.lock().await.as_ref().ok_or_else(ended)?.begin().await,
        }
    }

    /// [`Conn::begin`] with options for a new transaction (a savepoint takes none).
    pub(crate) async fn begin_with_options(
        &self,
        options: TransactionOptions,
    ) -> Result<DatabaseTransaction, DbErr> {
        match self {
            Conn::Pool(pool, _) => pool.begin_with_options(options).await,
            Conn::Unit { .. } => self.begin().await,
        }
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Conn {
    fn get_database_backend(&self) -> DbBackend {
        match self {
            Conn::Pool(pool, _) => pool.get_database_backend(),
            Conn::Unit { backend, .. } => *backend,
        }
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match self {
            Conn::Pool(pool, turn) => {
                let _turn = match turn {
                    Some(turn) => Some(turn.lock().await),
                    None => None,
                };
                pool.execute_raw(stmt).await
            }
            Conn::Unit { tx, .. } => {
                tx.lock()
                    .await
                    .as_ref()
                    .ok_or_else(ended)?
                    .execute_raw(stmt)
                    .await
            }
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match self {
            Conn::Pool(pool, turn) => {
                let _turn = match turn {
                    Some(turn) => Some(turn.lock().await),
                    None => None,
                };
                pool.execute_unprepared(sql).await
            }
            Conn::Unit { tx, .. } => {
                tx.lock()
                    .await
                    .as_ref()
                    .ok_or_else(ended)?
                    .execute_unprepared(sql)
                    .await
            }
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self {
            Conn::Pool(pool, _) => pool.query_one_raw(stmt).await,
            Conn::Unit { tx, .. } => {
                tx.lock()
                    .await
                    .as_ref()
                    .ok_or_else(ended)?
                    .query_one_raw(stmt)
                    .await
            }
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self {
            Conn::Pool(pool, _) => pool.query_all_raw(stmt).await,
            Conn::Unit { tx, .. } => {
                tx.lock()
                    .await
                    .as_ref()
                    .ok_or_else(ended)?
                    .query_all_raw(stmt)
                    .await
            }
        }
    }
}
