//! Reads on SQLite run on the calling thread, on connections of our own.
//!
//! sqlx runs each SQLite connection on a thread of its own and hands every statement to it
//! through a channel and back; a person summary is six reads, so some dozen thread
//! switches, and a profile of the server under load showed half of its CPU in the kernel
//! switching threads while SQLite itself used under 3% (docs/BENCHMARKS.md). A read of a
//! file the operating system has cached takes microseconds, less than the switch, so the
//! pool's reads (not a unit of work's, which must see the unit's own writes) run here,
//! synchronously, on read-only rusqlite connections to the same file. Writes stay on
//! sea-orm: they take the write turn and the group commit.
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

/// How much of the file a reader maps (64 GiB of address space).
const MMAP_BYTES: i64 = 1 << 36;

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

    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "cache_size", -i64::from(self.cache_kib))?;
        // Pages are read from the file mapped into memory rather than copied by a read()
        // per page: a million people do not fit the page cache, and the copies showed in
        // the profile. Address space only; the operating system's cache is shared.
        conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    fn take(&self) -> Result<rusqlite::Connection, RepoError> {
        let idle = self.idle.lock().map(|mut idle| idle.pop());
        match idle {
            Ok(Some(conn)) => Ok(conn),
            _ => self.open().map_err(crate::unexpected),
        }
    }

    fn give_back(&self, conn: rusqlite::Connection) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < KEEP
        {
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
        let params = values
            .into_iter()
            .map(lite)
            .collect::<Result<Vec<_>, _>>()?;
        let conn = self.take()?;
        let result = run(&conn, sql, params, decode);
        // A connection whose statement failed is as good as any other: SQLite keeps no
        // state from a failed read (no transaction was opened).
        self.give_back(conn);
        result
    }
}

fn run<T>(
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

/// A sea-orm value as SQLite stores it (as sqlx would bind it).
fn lite(value: Value) -> Result<Lite, RepoError> {
    Ok(match value {
        Value::Bool(v) => v.map_or(Lite::Null, |v| Lite::Integer(i64::from(v))),
        Value::TinyInt(v) => v.map_or(Lite::Null, |v| Lite::Integer(v.into())),
        Value::SmallInt(v) => v.map_or(Lite::Null, |v| Lite::Integer(v.into())),
        Value::Int(v) => v.map_or(Lite::Null, |v| Lite::Integer(v.into())),
        Value::BigInt(v) => v.map_or(Lite::Null, Lite::Integer),
        Value::TinyUnsigned(v) => v.map_or(Lite::Null, |v| Lite::Integer(v.into())),
        Value::SmallUnsigned(v) => v.map_or(Lite::Null, |v| Lite::Integer(v.into())),
        Value::Unsigned(v) => v.map_or(Lite::Null, |v| Lite::Integer(v.into())),
        Value::Double(v) => v.map_or(Lite::Null, Lite::Real),
        Value::String(v) => v.map_or(Lite::Null, Lite::Text),
        Value::Bytes(v) => v.map_or(Lite::Null, Lite::Blob),
        other => {
            return Err(RepoError::Unexpected(anyhow::anyhow!(
                "a value of a kind the SQLite reader does not bind: {other:?}"
            )));
        }
    })
}
