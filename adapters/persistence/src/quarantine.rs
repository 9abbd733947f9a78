//! The feed quarantine in SQLite or PostgreSQL.

use async_trait::async_trait;
use care_application::{
    FeedFormat, QuarantineFilter, QuarantineStore, QuarantineSummary, QuarantinedMessage,
    RepoError, Resolution,
};
use care_kernel::{SourceId, UpdateOutcome, UserId};
use care_person::Identifier;
use sea_orm::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::people::{identifier_from_key, identifier_key};
use crate::{Database, Row, col, from_micros, micros, unexpected};

/// Quarantined feed messages in the database.
#[derive(Debug, Clone)]
pub struct SqlQuarantine {
    db: Database,
}

impl SqlQuarantine {
    /// The quarantine in this database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

const COLUMNS: &str = "id, source_id, format, received_at, reference, raw, reason, \
                       resolved_at, resolved_by, resolved_outcome, corrected, subjects";

/// A list's columns: the size in place of the content, no correction.
const SUMMARY_COLUMNS: &str = "id, source_id, format, received_at, reference, \
                               CAST(length(raw) AS BIGINT), reason, resolved_at, resolved_by, \
                               resolved_outcome, NULL, subjects";

fn subjects_text(subjects: &[Identifier]) -> String {
    let keys: Vec<String> = subjects.iter().map(identifier_key).collect();
    serde_json::to_string(&keys).unwrap_or_else(|_| "[]".to_owned())
}

fn subjects_of(row: &Row<'_>) -> Result<Vec<Identifier>, RepoError> {
    let text: String = col(row, 11)?;
    let keys: Vec<String> = serde_json::from_str(&text).map_err(unexpected)?;
    keys.iter().map(|k| identifier_from_key(k)).collect()
}

fn outcome_name(outcome: UpdateOutcome) -> &'static str {
    match outcome {
        UpdateOutcome::Applied => "applied",
        UpdateOutcome::Unchanged => "unchanged",
        UpdateOutcome::Stale => "stale",
    }
}

fn outcome_of(name: &str) -> Result<UpdateOutcome, RepoError> {
    match name {
        "applied" => Ok(UpdateOutcome::Applied),
        "unchanged" => Ok(UpdateOutcome::Unchanged),
        "stale" => Ok(UpdateOutcome::Stale),
        other => Err(RepoError::Unexpected(anyhow::anyhow!(
            "unknown resolution outcome {other:?}"
        ))),
    }
}

fn decode_summary(row: &Row<'_>) -> Result<QuarantineSummary, RepoError> {
    let id = Uuid::parse_str(&col::<String>(row, 0)?).map_err(unexpected)?;
    let size: i64 = col(row, 5)?;
    Ok(QuarantineSummary {
        id,
        source: SourceId::parse(&col::<String>(row, 1)?).map_err(unexpected)?,
        format: FeedFormat::parse(&col::<String>(row, 2)?).map_err(unexpected)?,
        received_at: from_micros(col(row, 3)?)?,
        reference: col(row, 4)?,
        size: u64::try_from(size).unwrap_or(0),
        reason: col(row, 6)?,
        subjects: subjects_of(row)?,
        resolution: resolution(row, false)?,
    })
}

fn resolution(row: &Row<'_>, with_correction: bool) -> Result<Option<Resolution>, RepoError> {
    let resolved_at: Option<i64> = col(row, 7)?;
    let Some(at) = resolved_at else {
        return Ok(None);
    };
    let by: Option<String> = col(row, 8)?;
    let outcome: Option<String> = col(row, 9)?;
    Ok(Some(Resolution {
        at: from_micros(at)?,
        by: UserId::parse(&by.unwrap_or_default()).map_err(unexpected)?,
        outcome: outcome_of(&outcome.unwrap_or_default())?,
        corrected: if with_correction { col(row, 10)? } else { None },
    }))
}

fn decode(row: &Row<'_>) -> Result<QuarantinedMessage, RepoError> {
    let id = Uuid::parse_str(&col::<String>(row, 0)?).map_err(unexpected)?;
    let resolution = resolution(row, true)?;
    Ok(QuarantinedMessage {
        id,
        source: SourceId::parse(&col::<String>(row, 1)?).map_err(unexpected)?,
        format: FeedFormat::parse(&col::<String>(row, 2)?).map_err(unexpected)?,
        received_at: from_micros(col(row, 3)?)?,
        reference: col(row, 4)?,
        raw: col(row, 5)?,
        reason: col(row, 6)?,
        subjects: subjects_of(row)?,
        resolution,
    })
}

#[async_trait]
impl QuarantineStore for SqlQuarantine {
    async fn put(&self, message: &QuarantinedMessage) -> Result<Uuid, RepoError> {
        let digest: String = Sha256::digest(&message.raw)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let (at, by, outcome, corrected) = match &message.resolution {
            None => (None, None, None, None),
            Some(r) => (
                Some(micros(r.at)),
                Some(r.by.as_str().to_owned()),
                Some(outcome_name(r.outcome).to_owned()),
                r.corrected.clone(),
            ),
        };
        for _ in 0..3 {
            let done = self
                .db
                .execute_alone(
                    &format!(
                        "INSERT INTO quarantine ({COLUMNS}, raw_digest) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                     ON CONFLICT (source_id, raw_digest) WHERE resolved_at IS NULL DO NOTHING"
                    ),
                    vec![
                        message.id.to_string().into(),
                        message.source.as_str().into(),
                        message.format.as_str().into(),
                        micros(message.received_at).into(),
                        message.reference.clone().into(),
                        message.raw.clone().into(),
                        message.reason.clone().into(),
                        at.into(),
                        by.clone().into(),
                        outcome.clone().into(),
                        corrected.clone().into(),
                        subjects_text(&message.subjects).into(),
                        digest.clone().into(),
                    ],
                )
                .await
                .map_err(unexpected)?;
            if done == 1 {
                return Ok(message.id);
            }
            // The same bytes are already open for this source: that entry holds them.
            let open = self
                .db
                .rows(
                    "SELECT id FROM quarantine \
                 WHERE source_id = $1 AND raw_digest = $2 AND resolved_at IS NULL",
                    vec![message.source.as_str().into(), digest.clone().into()],
                    |row| Uuid::parse_str(&col::<String>(row, 0)?).map_err(unexpected),
                )
                .await?;
            if let Some(id) = open.into_iter().next() {
                return Ok(id);
            }
            // That entry was resolved between the two statements: insert again.
        }
        Err(RepoError::Conflict)
    }

    async fn get(&self, id: Uuid) -> Result<Option<QuarantinedMessage>, RepoError> {
        Ok(self
            .db
            .rows(
                &format!("SELECT {COLUMNS} FROM quarantine WHERE id = $1"),
                vec![id.to_string().into()],
                decode,
            )
            .await?
            .pop())
    }

    async fn list(
        &self,
        filter: &QuarantineFilter,
        limit: usize,
    ) -> Result<Vec<QuarantineSummary>, RepoError> {
        let mut conditions = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        if let Some(source) = &filter.source {
            values.push(source.as_str().into());
            conditions.push(format!("source_id = ${}", values.len()));
        }
        if filter.open_only {
            conditions.push("resolved_at IS NULL".to_owned());
        }
        let filter_sql = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        values.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM quarantine {filter_sql} \
             ORDER BY received_at DESC, id LIMIT ${}",
            values.len()
        );
        self.db.rows(&sql, values, decode_summary).await
    }

    async fn resolve(&self, id: Uuid, resolution: &Resolution) -> Result<bool, RepoError> {
        let done = self
            .db
            .execute(
                "UPDATE quarantine SET resolved_at = $1, resolved_by = $2, resolved_outcome = $3, \
                 corrected = $4 WHERE id = $5 AND resolved_at IS NULL",
                vec![
                    micros(resolution.at).into(),
                    resolution.by.as_str().into(),
                    outcome_name(resolution.outcome).into(),
                    resolution.corrected.clone().into(),
                    id.to_string().into(),
                ],
            )
            .await
            .map_err(unexpected)?;
        Ok(done == 1)
    }
}
