//! Organisations and users, sessions by token hash, and the append-only security log.
//!
//! Every write is one statement, so concurrent servers need no lock: creation is
//! `INSERT … ON CONFLICT DO NOTHING` (a taken id is `false`, never a race), and `touch`
//! and `revoke` are conditional `UPDATE`s whose row count is the answer.

use std::net::IpAddr;

use async_trait::async_trait;
use care_application::{
    AccountStore, Organisation, RepoError, SecurityEvent, SecurityEventKind, SecurityLog,
    SessionRecord, SessionStore, TokenHash, UserAccount,
};
use care_kernel::{OrganisationId, Role, SourceId, Timestamp, UserId};
use sea_orm::{ConnectionTrait, DbErr, SqlErr, Value};

use crate::{Database, Row, col, from_micros, micros, unexpected};

/// Users and organisations in SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlAccounts {
    db: Database,
}

impl SqlAccounts {
    /// Accounts in this database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// On sea-orm, whose errors tell a missing organisation (a foreign key) apart.
    async fn execute(&self, sql: &str, values: Vec<Value>) -> Result<u64, DbErr> {
        Ok(self
            .db
            .conn
            .execute_raw(self.db.statement(sql, values))
            .await?
            .rows_affected())
    }

    async fn organisation_exists(&self, id: &OrganisationId) -> Result<bool, RepoError> {
        let found = self
            .db
            .rows(
                "SELECT 1 FROM organisations WHERE id = $1",
                vec![id.as_str().into()],
                |_| Ok(()),
            )
            .await?;
        Ok(!found.is_empty())
    }

    async fn query_users(
        &self,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<Vec<UserAccount>, RepoError> {
        self.db.rows(sql, values, decode_user).await
    }
}

fn text_id<T>(
    raw: String,
    parse: impl FnOnce(&str) -> Result<T, care_kernel::InvalidValue>,
) -> Result<T, RepoError> {
    parse(&raw).map_err(unexpected)
}

fn decode_organisation(row: &Row<'_>) -> Result<Organisation, RepoError> {
    Ok(Organisation {
        id: text_id(col(row, 0)?, OrganisationId::parse)?,
        name: col(row, 1)?,
        created_at: from_micros(col(row, 2)?)?,
    })
}

const USER_COLUMNS: &str = "id, display_name, organisation_id, role, feed_source, password_hash, \
                            disabled, created_at, failures_cleared_at";

/// The columns of a session (as [`decode_session`] reads them), then its user's
/// ([`USER_COLUMNS`], from column 5), by token hash.
static SESSION_WITH_USER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let user_columns: Vec<String> = USER_COLUMNS.split(", ").map(|c| format!("u.{c}")).collect();
    format!(
        "SELECT s.token_hash, s.user_id, s.created_at, s.last_seen_at, s.revoked_at, {} \
         FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1",
        user_columns.join(", ")
    )
});

fn decode_user(row: &Row<'_>) -> Result<UserAccount, RepoError> {
    decode_user_at(row, 0)
}

/// A user from [`USER_COLUMNS`] starting at column `at` of the row.
fn decode_user_at(row: &Row<'_>, at: usize) -> Result<UserAccount, RepoError> {
    let feed_source: Option<String> = col(row, at + 4)?;
    let cleared: Option<i64> = col(row, at + 8)?;
    Ok(UserAccount {
        user: text_id(col(row, at)?, UserId::parse)?,
        display_name: col(row, at + 1)?,
        organisation: text_id(col(row, at + 2)?, OrganisationId::parse)?,
        role: text_id(col(row, at + 3)?, Role::parse)?,
        feed_source: feed_source
            .map(|s| text_id(s, SourceId::parse))
            .transpose()?,
        password_hash: col(row, at + 5)?,
        disabled: col(row, at + 6)?,
        created_at: from_micros(col(row, at + 7)?)?,
        failures_cleared_at: cleared.map(from_micros).transpose()?,
    })
}

/// The values of [`USER_COLUMNS`], in order.
fn user_values(user: &UserAccount) -> Vec<Value> {
    vec![
        user.user.as_str().into(),
        user.display_name.clone().into(),
        user.organisation.as_str().into(),
        user.role.as_str().into(),
        user.feed_source
            .as_ref()
            .map(|s| s.as_str().to_owned())
            .into(),
        user.password_hash.clone().into(),
        user.disabled.into(),
        micros(user.created_at).into(),
        user.failures_cleared_at.map(micros).into(),
    ]
}

fn no_organisation(id: &OrganisationId) -> RepoError {
    RepoError::Unexpected(anyhow::anyhow!("no organisation {id}"))
}

/// A missing organisation shows as a foreign-key violation.
fn user_write_error(err: DbErr, user: &UserAccount) -> RepoError {
    match err.sql_err() {
        Some(SqlErr::ForeignKeyConstraintViolation(_)) => no_organisation(&user.organisation),
        _ => unexpected(err),
    }
}

#[async_trait]
impl AccountStore for SqlAccounts {
    async fn create_organisation(&self, org: &Organisation) -> Result<bool, RepoError> {
        let inserted = self
            .execute(
                "INSERT INTO organisations (id, name, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO NOTHING",
                vec![
                    org.id.as_str().into(),
                    org.name.clone().into(),
                    micros(org.created_at).into(),
                ],
            )
            .await
            .map_err(unexpected)?;
        Ok(inserted == 1)
    }

    async fn organisations(&self) -> Result<Vec<Organisation>, RepoError> {
        self.db
            .rows(
                "SELECT id, name, created_at FROM organisations ORDER BY id",
                vec![],
                decode_organisation,
            )
            .await
    }

    async fn create_user(&self, user: &UserAccount) -> Result<bool, RepoError> {
        let inserted = self
            .execute(
                &format!(
                    "INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (id) DO NOTHING"
                ),
                user_values(user),
            )
            .await
            .map_err(|e| user_write_error(e, user))?;
        if inserted == 1 {
            return Ok(true);
        }
        // The id is taken. The foreign key was not checked for a row not inserted, and
        // an unknown organisation is an error whatever the id.
        if self.organisation_exists(&user.organisation).await? {
            Ok(false)
        } else {
            Err(no_organisation(&user.organisation))
        }
    }

    async fn user(&self, id: &UserId) -> Result<Option<UserAccount>, RepoError> {
        Ok(self
            .query_users(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
                vec![id.as_str().into()],
            )
            .await?
            .pop())
    }

    async fn users(&self) -> Result<Vec<UserAccount>, RepoError> {
        self.query_users(
            &format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"),
            vec![],
        )
        .await
    }

    async fn clear_failures(&self, user: &UserId, at: Timestamp) -> Result<bool, RepoError> {
        let updated = self
            .execute(
                "UPDATE users SET failures_cleared_at = $2 WHERE id = $1",
                vec![user.as_str().into(), micros(at).into()],
            )
            .await
            .map_err(|e| RepoError::Unexpected(anyhow::Error::new(e)))?;
        Ok(updated == 1)
    }

    async fn update_user(&self, user: &UserAccount) -> Result<bool, RepoError> {
        let updated = self
            .execute(
                "UPDATE users SET display_name = $2, organisation_id = $3, role = $4, \
                 feed_source = $5, password_hash = $6, disabled = $7, created_at = $8, \
                 failures_cleared_at = $9 WHERE id = $1",
                user_values(user),
            )
            .await
            .map_err(|e| user_write_error(e, user))?;
        Ok(updated == 1)
    }
}

/// Sessions in SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlSessions {
    db: Database,
}

impl SqlSessions {
    /// Sessions in this database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    async fn execute(&self, sql: &str, values: Vec<Value>) -> Result<u64, RepoError> {
        self.db.execute(sql, values).await.map_err(unexpected)
    }
}

fn token_value(token: &TokenHash) -> Value {
    token.0.to_vec().into()
}

fn decode_session(row: &Row<'_>) -> Result<SessionRecord, RepoError> {
    let hash: Vec<u8> = col(row, 0)?;
    let token_hash = <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| {
        RepoError::Unexpected(anyhow::anyhow!(
            "stored token hash is {} bytes, not 32",
            hash.len()
        ))
    })?;
    let revoked: Option<i64> = col(row, 4)?;
    Ok(SessionRecord {
        token_hash: TokenHash(token_hash),
        user: text_id(col(row, 1)?, UserId::parse)?,
        created_at: from_micros(col(row, 2)?)?,
        last_seen_at: from_micros(col(row, 3)?)?,
        revoked_at: revoked.map(from_micros).transpose()?,
    })
}

#[async_trait]
impl SessionStore for SqlSessions {
    async fn create(&self, session: &SessionRecord) -> Result<(), RepoError> {
        self.execute(
            "INSERT INTO sessions (token_hash, user_id, created_at, last_seen_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5)",
            vec![
                token_value(&session.token_hash),
                session.user.as_str().into(),
                micros(session.created_at).into(),
                micros(session.last_seen_at).into(),
                session.revoked_at.map(micros).into(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn get(&self, token: &TokenHash) -> Result<Option<SessionRecord>, RepoError> {
        Ok(self
            .db
            .rows(
                "SELECT token_hash, user_id, created_at, last_seen_at, revoked_at \
                 FROM sessions WHERE token_hash = $1",
                vec![token_value(token)],
                decode_session,
            )
            .await?
            .pop())
    }

    async fn get_with_account(
        &self,
        token: &TokenHash,
        _same_record: &dyn AccountStore,
    ) -> Result<Option<(SessionRecord, UserAccount)>, RepoError> {
        // One query (the accounts are in this database): on PostgreSQL one round trip
        // per authenticated request instead of two.
        Ok(self
            .db
            .rows(&SESSION_WITH_USER, vec![token_value(token)], |row| {
                Ok((decode_session(row)?, decode_user_at(row, 5)?))
            })
            .await?
            .pop())
    }

    async fn touch(&self, token: &TokenHash, at: Timestamp) -> Result<bool, RepoError> {
        let written = self
            .execute(
                "UPDATE sessions SET last_seen_at = $2 \
                 WHERE token_hash = $1 AND revoked_at IS NULL AND last_seen_at < $2",
                vec![token_value(token), micros(at).into()],
            )
            .await?;
        Ok(written == 1)
    }

    async fn revoke(&self, token: &TokenHash, at: Timestamp) -> Result<bool, RepoError> {
        let written = self
            .execute(
                "UPDATE sessions SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL",
                vec![token_value(token), micros(at).into()],
            )
            .await?;
        Ok(written == 1)
    }

    async fn revoke_user(&self, user: &UserId, at: Timestamp) -> Result<u64, RepoError> {
        self.execute(
            "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
            vec![user.as_str().into(), micros(at).into()],
        )
        .await
    }
}

/// The security log in SQLite or PostgreSQL: inserted and read, never changed (the
/// database refuses UPDATE and DELETE on the table).
#[derive(Debug, Clone)]
pub struct SqlSecurityLog {
    db: Database,
}

impl SqlSecurityLog {
    /// The security log in this database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn decode_event(row: &Row<'_>) -> Result<SecurityEvent, RepoError> {
    let user: Option<String> = col(row, 2)?;
    let client: String = col(row, 3)?;
    Ok(SecurityEvent {
        at: from_micros(col(row, 0)?)?,
        kind: text_id(col(row, 1)?, SecurityEventKind::parse)?,
        user: user.map(|u| text_id(u, UserId::parse)).transpose()?,
        client: client.parse::<IpAddr>().map_err(unexpected)?,
        detail: col(row, 4)?,
    })
}

#[async_trait]
impl SecurityLog for SqlSecurityLog {
    async fn append(&self, event: &SecurityEvent) -> Result<(), RepoError> {
        self.db
            .execute(
                "INSERT INTO security_events (at, kind, user_id, client, detail) \
                 VALUES ($1, $2, $3, $4, $5)",
                vec![
                    micros(event.at).into(),
                    event.kind.as_str().into(),
                    event.user.as_ref().map(|u| u.as_str().to_owned()).into(),
                    event.client.to_string().into(),
                    event.detail.clone().into(),
                ],
            )
            .await
            .map_err(unexpected)?;
        Ok(())
    }

    async fn count(
        &self,
        user: &UserId,
        kind: SecurityEventKind,
        since: Timestamp,
    ) -> Result<u32, RepoError> {
        let counts = self
            .db
            .rows(
                "SELECT COUNT(*) FROM security_events WHERE user_id = $1 AND kind = $2 AND at >= $3",
                vec![
                    user.as_str().into(),
                    kind.as_str().into(),
                    micros(since).into(),
                ],
                |row| col::<i64>(row, 0),
            )
            .await?;
        let n = counts.first().copied().unwrap_or(0);
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Newest first means most recently appended first (the order of `id`), as the
    /// in-memory log does.
    async fn recent(&self, limit: usize) -> Result<Vec<SecurityEvent>, RepoError> {
        self.db
            .rows(
                "SELECT at, kind, user_id, client, detail FROM security_events \
                 ORDER BY id DESC LIMIT $1",
                vec![i64::try_from(limit).unwrap_or(i64::MAX).into()],
                decode_event,
            )
            .await
    }
}
