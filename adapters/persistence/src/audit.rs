//! The audit chain in the database: append-only (no update or delete path here, and
//! triggers refuse them in the database), one chain across restarts, connections and
//! servers, with **group commit**: concurrent callers' events are written together in one
//! transaction, and each caller returns only when its own events are committed.
//!
//! Appends are serialised by the chain head, a single row read and updated in the same
//! transaction as the events: `SELECT … FOR UPDATE` on PostgreSQL (so two app servers
//! on one database still build one chain), `BEGIN IMMEDIATE` on SQLite.

use std::sync::Mutex;

use async_trait::async_trait;
use care_access_audit::{AuditEvent, ChainHead, ChainedEvent, Hash};
use care_application::{AuditError, AuditLog, Durable, RepoError};
use care_kernel::{PersonId, Timestamp};
use sea_orm::{DbBackend, Value};
use tokio::sync::{mpsc, oneshot};

use crate::{Database, Row, col, from_json, micros, to_json, unexpected};

/// Events written in one transaction at most (the rest wait for the next one).
const MAX_BATCH_EVENTS: usize = 2_000;
/// Rows per INSERT statement where each statement is a round trip (PostgreSQL, or a
/// SQLite pool without a write connection); kept well under the parameter limits.
const ROWS_PER_INSERT: usize = 500;
/// Scheduler turns the writer waits for more callers after a shared commit.
const LINGER_TURNS: usize = 64;
/// Appends queued before callers wait for room (back-pressure, not unbounded memory).
const QUEUE: usize = 4_096;

struct Pending {
    events: Vec<AuditEvent>,
    reply: oneshot::Sender<Result<Vec<ChainedEvent>, String>>,
}

/// The audit chain in SQLite or PostgreSQL.
pub struct SqlAuditLog {
    db: Database,
    writer: Mutex<Option<mpsc::Sender<Pending>>>,
}

impl std::fmt::Debug for SqlAuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlAuditLog").finish_non_exhaustive()
    }
}

impl SqlAuditLog {
    /// The chain in this database. The writer task starts with the first append.
    pub fn new(db: Database) -> Self {
        Self {
            db,
            writer: Mutex::new(None),
        }
    }

    fn sender(&self) -> mpsc::Sender<Pending> {
        let mut writer = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match writer.as_ref() {
            Some(tx) if !tx.is_closed() => tx.clone(),
            _ => {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(write_loop(self.db.clone(), rx));
                *writer = Some(tx.clone());
                tx
            }
        }
    }

    async fn events(&self, sql: &str, values: Vec<Value>) -> Result<Vec<ChainedEvent>, AuditError> {
        self.db
            .rows(sql, values, decode_chained)
            .await
            .map_err(audit_err)
    }
}

fn audit_err(e: RepoError) -> AuditError {
    AuditError::Unexpected(anyhow::Error::new(e))
}

fn decode_hash(text: &str) -> Result<Hash, RepoError> {
    Hash::from_hex(text)
        .ok_or_else(|| RepoError::Unexpected(anyhow::anyhow!("stored hash is not 64 hex digits")))
}

fn decode_chained(row: &Row<'_>) -> Result<ChainedEvent, RepoError> {
    Ok(ChainedEvent {
        seq: u64::try_from(col::<i64>(row, 0)?).unwrap_or(u64::MAX),
        event: from_json(&col::<String>(row, 1)?)?,
        prev_hash: decode_hash(&col::<String>(row, 2)?)?,
        hash: decode_hash(&col::<String>(row, 3)?)?,
    })
}

/// Takes queued appends, writes as many as fit in one transaction, answers each.
async fn write_loop(db: Database, mut rx: mpsc::Receiver<Pending>) {
    // How many callers shared the last commit: when several did, they are about to send
    // again, so the writer gives them a moment (a few scheduler turns, well under a
    // commit's time) to join the next batch instead of committing for one.
    let mut last_callers = 0usize;
    while let Some(first) = rx.recv().await {
        let mut count = first.events.len();
        let mut batch = vec![first];
        let mut turns = if last_callers > 1 { LINGER_TURNS } else { 0 };
        while count < MAX_BATCH_EVENTS {
            match rx.try_recv() {
                Ok(next) => {
                    count += next.events.len();
                    batch.push(next);
                }
                Err(_) if turns > 0 && batch.len() < last_callers => {
                    turns -= 1;
                    tokio::task::yield_now().await;
                }
                Err(_) => break,
            }
        }
        last_callers = batch.len();
        let events: Vec<AuditEvent> = batch
            .iter()
            .flat_map(|p| p.events.iter().cloned())
            .collect();
        match write_batch(&db, events).await {
            // The callers are answered once the batch is durable; the next batch is
            // written meanwhile (on SQLite the log's flush runs beside it).
            Ok((chained, durable)) => {
                tokio::spawn(async move {
                    match durable.await {
                        Ok(()) => answer(batch, chained),
                        Err(e) => fail(batch, &e),
                    }
                });
            }
            Err(e) => fail(batch, &e),
        }
    }
}

/// Hands each caller its own events, in order.
fn answer(batch: Vec<Pending>, mut chained: Vec<ChainedEvent>) {
    for pending in batch {
        let rest = chained.split_off(pending.events.len().min(chained.len()));
        let mine = std::mem::replace(&mut chained, rest);
        let _ = pending.reply.send(Ok(mine));
    }
}

fn fail(batch: Vec<Pending>, e: &RepoError) {
    tracing::error!(target: "security", "audit append failed: {e}");
    let message = e.to_string();
    for pending in batch {
        let _ = pending.reply.send(Err(message.clone()));
    }
}

/// One transaction: lock and read the head, link the events, insert them, move the head.
/// It is a unit of work ([`Database::append_unit`]): on a SQLite file its statements run
/// on the write connection, synchronously, without a thread handoff per statement.
/// Returns the events as chained, and when they are durable.
async fn write_batch(
    db: &Database,
    events: Vec<AuditEvent>,
) -> Result<(Vec<ChainedEvent>, Durable), RepoError> {
    let unit = db.append_unit().await?;
    let txn = unit.database();
    let lock = match db.backend() {
        DbBackend::Postgres => "SELECT len, last_hash FROM audit_head WHERE id = 1 FOR UPDATE",
        _ => "SELECT len, last_hash FROM audit_head WHERE id = 1",
    };
    let mut head = txn
        .rows(lock, vec![], decode_head)
        .await?
        .pop()
        .ok_or_else(|| RepoError::Unexpected(anyhow::anyhow!("the audit chain head is missing")))?;
    let chained: Vec<ChainedEvent> = events.into_iter().map(|e| head.append(e)).collect();
    // On the SQLite write connection one prepared statement per row, kept in the
    // connection's cache; elsewhere a statement is a round trip, so many rows in each.
    let per_insert = if db.has_write_connection() {
        1
    } else {
        ROWS_PER_INSERT
    };
    for chunk in chained.chunks(per_insert) {
        let rows = chunk
            .iter()
            .map(|c| {
                Ok(vec![
                    Value::from(i64::try_from(c.seq).unwrap_or(i64::MAX)),
                    micros(c.event.at).into(),
                    c.event.person.map(|p| p.to_string()).into(),
                    to_json(&c.event)?.into(),
                    c.prev_hash.to_string().into(),
                    c.hash.to_string().into(),
                ])
            })
            .collect::<Result<Vec<_>, RepoError>>()?;
        let (sql, values) = crate::people::insert_rows(
            "audit_events",
            &["seq", "at", "person_id", "event", "prev_hash", "hash"],
            rows,
        );
        txn.execute(&sql, values).await.map_err(unexpected)?;
    }
    txn.execute(
        "UPDATE audit_head SET len = $1, last_hash = $2 WHERE id = 1",
        vec![
            i64::try_from(head.len).unwrap_or(i64::MAX).into(),
            head.last_hash.to_string().into(),
        ],
    )
    .await
    .map_err(unexpected)?;
    let durable = unit.end_then_flush().await?;
    Ok((chained, durable))
}

fn decode_head(row: &Row<'_>) -> Result<ChainHead, RepoError> {
    Ok(ChainHead {
        len: u64::try_from(col::<i64>(row, 0)?).unwrap_or(0),
        last_hash: decode_hash(&col::<String>(row, 1)?)?,
    })
}

#[async_trait]
impl AuditLog for SqlAuditLog {
    async fn append(&self, events: Vec<AuditEvent>) -> Result<Vec<ChainedEvent>, AuditError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.sender()
            .send(Pending { events, reply })
            .await
            .map_err(|_| AuditError::Unexpected(anyhow::anyhow!("the audit writer has stopped")))?;
        answer
            .await
            .map_err(|_| AuditError::Unexpected(anyhow::anyhow!("the audit writer has stopped")))?
            .map_err(|e| AuditError::Unexpected(anyhow::anyhow!("audit append failed: {e}")))
    }

    async fn head(&self) -> Result<ChainHead, AuditError> {
        self.db
            .rows(
                "SELECT len, last_hash FROM audit_head WHERE id = 1",
                vec![],
                decode_head,
            )
            .await
            .map_err(audit_err)?
            .pop()
            .ok_or_else(|| {
                AuditError::Unexpected(anyhow::anyhow!("the audit chain head is missing"))
            })
    }

    async fn read(&self, from: u64, limit: usize) -> Result<Vec<ChainedEvent>, AuditError> {
        self.events(
            "SELECT seq, event, prev_hash, hash FROM audit_events WHERE seq >= $1 ORDER BY seq LIMIT $2",
            vec![
                i64::try_from(from).unwrap_or(i64::MAX).into(),
                i64::try_from(limit).unwrap_or(i64::MAX).into(),
            ],
        )
        .await
    }

    async fn for_person(
        &self,
        person: PersonId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<AuditEvent>, AuditError> {
        // The column holds microseconds: widen the range by one and filter exactly here.
        let chained = self
            .events(
                "SELECT seq, event, prev_hash, hash FROM audit_events \
                 WHERE person_id = $1 AND at >= $2 AND at <= $3 ORDER BY seq",
                vec![
                    person.to_string().into(),
                    micros(from).into(),
                    micros(to).into(),
                ],
            )
            .await?;
        Ok(chained
            .into_iter()
            .map(|c| c.event)
            .filter(|event| event.at >= from && event.at < to)
            .collect())
    }
}
