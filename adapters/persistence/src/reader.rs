//! Reads on SQLite run on the calling thread, on connections of our own.
//!
//! sqlx runs each SQLite connection on a thread of its own and hands every statement to it
//! through a channel and back; a person summary is six reads, so some dozen thread
//! switches, and a profile of the server under load showed half of its CPU in the kernel
//! switching threads while SQLite itself used under 3% (docs/BENCHMARKS.md). A read of a
//! file the operating system has cached takes microseconds, less than the switch, so the
//! pool's reads (not a unit of work's, which must see the unit's own writes) run here,
//! synchronously, on read-only rusqlite connections to the same file. Units of work and
//! the audit chain's batches write on a rusqlite connection too ([`crate::writer`]);
//! other writes (sessions, accounts, the security log) stay on sea-orm. All take the
//! write turn.
//!
//! Why rusqlite and not sqlx's own connection: sqlx offers no synchronous call. rusqlite
//! links the same `libsqlite3-sys` (one SQLite in the process), and its statement cache
//! keeps each query prepared per connection.

use std::sync::Mutex;
use std::time::Duration;

use care_application::RepoError;
use rusqlite::{OpenFlags, types::Value as Lite};
use sea_orm::{QueryResult, Value};

/// A row being decoded: from sea-orm (PostgreSQL, a unit of work) or from a reader.
pub(crate) enum Row<'a> {
    Sea(&'a QueryResult),
    Lite(&'a rusqlite::Row<'a>),
}

/// Reads column `index` of a row.
pub(crate) fn col<T>(row: &Row<'_>, index: usize) -> Result<T, RepoError>
where
    T: sea_orm::TryGetable + rusqlite::types::FromSql,
{
    match row {
        Row::Sea(row) => row.try_get_by_index(index).map_err(crate::unexpected),
        Row::Lite(row) => row.get(index).map_err(crate::unexpected),
    }
}

/// Idle connections kept at most (more are opened when more threads read at once, and
/// closed when handed back beyond this).
const KEEP: usize = 64;

/// Read-only connections to one SQLite file.
#[derive(Debug)]
pub(crate) struct Readers {
    path: String,
    cache_kib: u32,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl Readers {
    /// Readers of the file at `path` (which the pool has opened, so it exists and is in
    /// WAL mode), each with `cache_mib` of page cache.
    pub(crate) fn new(path: String, cache_mib: u32) -> Self {
        Self {
            path,
            cache_kib: cache_mib.saturating_mul(1024),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn take(&self) -> Result<rusqlite::Connection, RepoError> {
        match lock(&self.idle).pop() {
            Some(conn) => Ok(conn),
            // A WAL reader waits only in rare cases (recovery after another process
            // crashed): briefly, since it waits on a runtime thread.
            None => open(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY,
                Duration::from_secs(1),
                self.cache_kib,
            )
            .map_err(crate::unexpected),
        }
    }

    fn give_back(&self, conn: rusqlite::Connection) {
        let mut idle = lock(&self.idle);
        if idle.len() < KEEP {
            idle.push(conn);
        }
    }

    /// Runs `sql` (SQLite placeholders already) with `values` and decodes each row.
    pub(crate) fn rows<T>(
        &self,
        sql: &str,
        values: Vec<Value>,
        decode: impl Fn(&Row<'_>) -> Result<T, RepoError>,
    ) -> Result<Vec<T>, RepoError> {
        let params = bind(values).map_err(crate::unexpected)?;
        let conn = self.take()?;
        let result = run(&conn, sql, params, decode);
        // A connection whose statement failed is as good as any other: SQLite keeps no
        // state from a failed read (no transaction was opened).
        self.give_back(conn);
        result
    }
}

/// A connection of our own to the file at `path` (readers' and the writer's): no
/// per-connection mutex (one thread uses it at a time), temporary tables in memory,
/// `cache_kib` of page cache, statements kept prepared. No mmap: a disk error under a
/// mapped page is a SIGBUS that ends the process, where read() returns an error, and it
/// measured no gain.
pub(crate) fn open(
    path: &str,
    flags: OpenFlags,
    busy: Duration,
    cache_kib: u32,
) -> rusqlite::Result<rusqlite::Connection> {
    let conn =
        rusqlite::Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(busy)?;
    conn.pragma_update(None, "temp_store", "memory")?;
    conn.pragma_update(None, "cache_size", -i64::from(cache_kib))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// A lock whose holder panicked is still good here: what it guards (idle connections, an
/// open unit) is taken or replaced whole.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `sql` on `conn` and decodes each row.
pub(crate) fn run<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    params: Vec<Lite>,
    decode: impl Fn(&Row<'_>) -> Result<T, RepoError>,
) -> Result<Vec<T>, RepoError> {
    let mut statement = conn.prepare_cached(sql).map_err(crate::unexpected)?;
    let mut rows = statement
        .query(rusqlite::params_from_iter(params))
        .map_err(crate::unexpected)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(crate::unexpected)? {
        out.push(decode(&Row::Lite(row))?);
    }
    Ok(out)
}

/// Sea-orm values as SQLite stores them.
pub(crate) fn bind(values: Vec<Value>) -> rusqlite::Result<Vec<Lite>> {
    values.into_iter().map(lite).collect()
}

/// A value rusqlite cannot bind: an error, not a wrong number.
fn unbindable(what: String) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(what.into())
}

/// A sea-orm value as SQLite stores it (as sqlx would bind it).
fn lite(value: Value) -> rusqlite::Result<Lite> {
    Ok(match value {
        Value::Bool(v) => v.map_or(Lite::Null, |v| Lite::Integer(i64::from(v))),
        Value::TinyInt(v) => v.map_or(Lite::Null, |v| Lite::Integer(v.into())),
        Value::SmallInt(v) => v.map_or(Lite::Null, |v| Lite::Integer(v.into())),
        Value::Int(v) => v.map_or(Lite::Null, |v| Lite::Integer(v.into())),
        Value::BigInt(v) => v.map_or(Lite::Null, Lite::Integer),
        Value::TinyUnsigned(v) => v.map_or(Lite::Null, |v| Lite::Integer(v.into())),
        Value::SmallUnsigned(v) => v.map_or(Lite::Null, |v| Lite::Integer(v.into())),
        Value::Unsigned(v) => v.map_or(Lite::Null, |v| Lite::Integer(v.into())),
        Value::BigUnsigned(v) => match v.map(i64::try_from) {
            None => Lite::Null,
            Some(Ok(v)) => Lite::Integer(v),
            Some(Err(_)) => {
                return Err(unbindable(
                    "an unsigned value beyond SQLite's integers".to_owned(),
                ));
            }
        },
        Value::Float(v) => v.map_or(Lite::Null, |v| Lite::Real(v.into())),
        Value::Double(v) => v.map_or(Lite::Null, Lite::Real),
        Value::Char(v) => v.map_or(Lite::Null, |v| Lite::Text(v.to_string())),
        // As sqlx binds a UUID for SQLite: its 16 bytes.
        Value::Uuid(v) => v.map_or(Lite::Null, |v| Lite::Blob(v.as_bytes().to_vec())),
        Value::String(v) => v.map_or(Lite::Null, Lite::Text),
        Value::Bytes(v) => v.map_or(Lite::Null, Lite::Blob),
        other => {
            return Err(unbindable(format!(
                "a value of a kind the SQLite adapter does not bind: {other:?}"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_is_compiled_as_configured() {
        // .cargo/config.toml: with STAT4, every new binding of a looked-at parameter
        // recompiles the statement; memory management and memory statistics put a
        // process-wide mutex under every page fetch and every allocation.
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        for (option, wanted) in [
            ("ENABLE_STAT4", 0),
            ("ENABLE_MEMORY_MANAGEMENT", 0),
            ("DEFAULT_MEMSTATUS=0", 1),
        ] {
            let used: i64 = conn
                .query_row("SELECT sqlite_compileoption_used(?1)", [option], |row| {
                    row.get(0)
                })
                .expect("compile options");
            assert_eq!(
                used, wanted,
                "SQLite's compile option {option}: see .cargo/config.toml"
            );
        }
    }

    #[test]
    fn values_bind_as_sqlx_binds_them_for_sqlite() {
        let id = uuid::Uuid::from_u128(7);
        let cases = [
            (Value::from(true), Lite::Integer(1)),
            (Value::from(42_i32), Lite::Integer(42)),
            (Value::from(-5_i64), Lite::Integer(-5)),
            (Value::from(7_u64), Lite::Integer(7)),
            (Value::from(1.5_f32), Lite::Real(1.5)),
            (Value::from(2.5_f64), Lite::Real(2.5)),
            (Value::from('x'), Lite::Text("x".to_owned())),
            (Value::from("text"), Lite::Text("text".to_owned())),
            (Value::from(vec![1_u8, 2]), Lite::Blob(vec![1, 2])),
            (Value::from(id), Lite::Blob(id.as_bytes().to_vec())),
            (Value::String(None), Lite::Null),
            (Value::BigInt(None), Lite::Null),
        ];
        for (value, expected) in cases {
            let shown = format!("{value:?}");
            assert_eq!(lite(value).ok(), Some(expected), "{shown}");
        }
    }

    #[test]
    fn a_value_sqlite_cannot_hold_is_an_error_not_a_wrong_number() {
        assert!(lite(Value::from(u64::MAX)).is_err());
        assert!(lite(Value::Json(Some(Box::new(serde_json::json!({}))))).is_err());
    }

    #[test]
    fn readers_read_what_another_connection_committed_and_give_errors_back() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("r.db");
        let writer = rusqlite::Connection::open(&path).expect("open");
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER, name TEXT, flag BOOLEAN);",
            )
            .expect("schema");
        let readers = Readers::new(path.to_string_lossy().into_owned(), 1);
        let read = |min: i64| {
            readers.rows(
                "SELECT id, name, flag FROM t WHERE id >= ? ORDER BY id",
                vec![Value::from(min)],
                |row| {
                    Ok((
                        col::<i64>(row, 0)?,
                        col::<Option<String>>(row, 1)?,
                        col::<bool>(row, 2)?,
                    ))
                },
            )
        };
        assert_eq!(read(0).expect("read"), vec![]);
        writer
            .execute_batch("INSERT INTO t VALUES (1, 'a', 1), (2, NULL, 0);")
            .expect("insert");
        assert_eq!(
            read(0).expect("read"),
            vec![(1, Some("a".to_owned()), true), (2, None, false)],
            "a reader sees what was committed after it was opened"
        );
        let wrong = readers.rows("SELECT name FROM t", vec![], |row| col::<i64>(row, 0));
        assert!(wrong.is_err(), "a text column read as a number is an error");
        assert!(
            readers
                .rows("INSERT INTO t VALUES (3, 'c', 1)", vec![], |_| Ok(()))
                .is_err(),
            "readers cannot write"
        );
        assert_eq!(read(2).expect("the connection is still good").len(), 1);
    }
}
