//! Consent, by NHS number.

use async_trait::async_trait;
use care_application::{ConsentRepository, RepoError};
use care_consent::Consent;
use care_person::NhsNumber;
use sea_orm::Value;

use crate::{
    Database, col, from_json, to_json, unexpected, unique_or_unexpected, version_of, version_value,
};

/// Consent in SQLite or PostgreSQL, with its full history in the document.
#[derive(Debug, Clone)]
pub struct SqlConsent {
    db: Database,
}

impl SqlConsent {
    /// Consent in this database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    async fn query(&self, sql: &str, values: Vec<Value>) -> Result<Vec<Consent>, RepoError> {
        self.db
            .rows(sql, values, |row| {
                decode_consent(col(row, 0)?, &col::<String>(row, 1)?)
            })
            .await
    }
}

/// A consent from its `version` and `body` columns.
pub(crate) fn decode_consent(version: i64, body: &str) -> Result<Consent, RepoError> {
    let mut consent: Consent = from_json(body)?;
    consent.set_version(version_of(version));
    Ok(consent)
}

#[async_trait]
impl ConsentRepository for SqlConsent {
    async fn get(&self, nhs_number: &NhsNumber) -> Result<Option<Consent>, RepoError> {
        Ok(self
            .query(
                "SELECT version, body FROM consents WHERE nhs_number = $1",
                vec![nhs_number.digits().into()],
            )
            .await?
            .pop())
    }

    async fn get_many(&self, nhs_numbers: &[NhsNumber]) -> Result<Vec<Consent>, RepoError> {
        let mut wanted: Vec<String> = nhs_numbers.iter().map(NhsNumber::digits).collect();
        wanted.sort();
        wanted.dedup();
        let mut found = Vec::new();
        // Bounded IN lists: search results are at most a hundred or so numbers.
        for chunk in wanted.chunks(200) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT version, body FROM consents WHERE nhs_number IN ({})",
                placeholders.join(", ")
            );
            let values = chunk.iter().map(|n| Value::from(n.clone())).collect();
            found.extend(self.query(&sql, values).await?);
        }
        Ok(found)
    }

    async fn save(&self, consent: &Consent) -> Result<u64, RepoError> {
        let new_version = consent.version() + 1;
        let mut stored = consent.clone();
        stored.set_version(new_version);
        let body = to_json(&stored)?;
        let nhs = consent.nhs_number().digits();
        if consent.version() == 0 {
            self.db
                .execute(
                    "INSERT INTO consents (nhs_number, version, body) VALUES ($1, $2, $3)",
                    vec![nhs.into(), version_value(new_version), body.into()],
                )
                .await
                .map_err(|e| unique_or_unexpected(e, || RepoError::Conflict))?;
        } else {
            let done = self
                .db
                .execute(
                    "UPDATE consents SET version = $1, body = $2 WHERE nhs_number = $3 AND version = $4",
                    vec![
                        version_value(new_version),
                        body.into(),
                        nhs.into(),
                        version_value(consent.version()),
                    ],
                )
                .await
                .map_err(unexpected)?;
            if done != 1 {
                return Err(RepoError::Conflict);
            }
        }
        Ok(new_version)
    }
}
