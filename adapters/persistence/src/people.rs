use std::collections::BTreeSet;

use async_trait::async_trait;
use care_application::{ConsentRepository, HeldRecord, ItemStores, PersonRepository, RepoError};
use care_consent::Consent;
use care_kernel::{PersonId, SourceId};
use care_person::{Identifier, LocalId, NhsNumber, Person, SearchCriteria};
use sea_orm::Value;

use crate::conn::Txn;
use crate::items::Either;
use crate::{
    Database, col, from_json, to_json, unexpected, unique_or_unexpected, version_of, version_value,
};

/// The key an identifier is stored under: `nhs:<digits>` or `local:<source>:<id>`.
pub(crate) fn identifier_key(identifier: &Identifier) -> String {
    match identifier {
        Identifier::Nhs(n) => format!("nhs:{}", n.digits()),
        Identifier::Local(l) => format!("local:{}:{}", l.source(), l.value()),
    }
}

/// The identifier a key written by [`identifier_key`] names.
pub(crate) fn identifier_from_key(key: &str) -> Result<Identifier, RepoError> {
    let bad = || RepoError::Unexpected(anyhow::anyhow!("not an identifier key: {key:?}"));
    if let Some(digits) = key.strip_prefix("nhs:") {
        return NhsNumber::parse(digits)
            .map(Identifier::Nhs)
            .map_err(|_| bad());
    }
    let rest = key.strip_prefix("local:").ok_or_else(bad)?;
    let (source, value) = rest.split_once(':').ok_or_else(bad)?;
    let source = SourceId::parse(source).map_err(|_| bad())?;
    LocalId::new(source, value)
        .map(Identifier::Local)
        .map_err(|_| bad())
}

/// `INSERT INTO table (columns) VALUES (...), (...)` with `$n` placeholders.
pub(crate) fn insert_rows(
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Value>>,
) -> (String, Vec<Value>) {
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
    let mut values = Vec::with_capacity(rows.len() * columns.len());
    for (r, row) in rows.into_iter().enumerate() {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for (c, value) in row.into_iter().enumerate() {
            if c > 0 {
                sql.push_str(", ");
            }
            values.push(value);
            sql.push_str(&format!("${}", values.len()));
        }
        sql.push(')');
    }
    (sql, values)
}

/// The search rows of a live person: (family key, birth date) from every source
/// statement that has both, and every postcode.
pub(crate) fn search_rows(person: &Person) -> (BTreeSet<(String, String)>, BTreeSet<String>) {
    let names = person
        .source_records()
        .filter_map(|r| {
            let name = r.demographics.name.as_ref()?;
            let birth = r.demographics.birth_date?;
            Some((name.family_key().as_str().to_owned(), birth.to_string()))
        })
        .collect();
    let postcodes = person
        .postcodes()
        .into_iter()
        .map(|p| p.as_str().to_owned())
        .collect();
    (names, postcodes)
}

/// People in SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlPeople {
    db: Database,
}

impl SqlPeople {
    /// People in this database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    fn decode(version: i64, body: &str) -> Result<Person, RepoError> {
        let mut person: Person = from_json(body)?;
        person.set_version(version_of(version));
        Ok(person)
    }

    async fn query_people(&self, sql: &str, values: Vec<Value>) -> Result<Vec<Person>, RepoError> {
        self.db
            .rows(sql, values, |row| {
                Self::decode(col(row, 0)?, &col::<String>(row, 1)?)
            })
            .await
    }

    /// Fails with `IdentifierTaken` if a record other than `own` holds one of the
    /// person's identifiers.
    async fn check_identifiers_free(
        &self,
        person: &Person,
        own: &[PersonId],
    ) -> Result<(), RepoError> {
        let mut values: Vec<Value> = own.iter().map(|id| id.to_string().into()).collect();
        let own_list = placeholders(1..=values.len());
        let first = values.len() + 1;
        values.extend(person.identifiers().map(|i| identifier_key(&i).into()));
        if values.len() < first {
            return Ok(());
        }
        let held = self
            .db
            .rows(
                &format!(
                    "SELECT identifier FROM person_identifiers \
                     WHERE person_id NOT IN ({own_list}) AND identifier IN ({}) LIMIT 1",
                    placeholders(first..=values.len())
                ),
                values,
                |row| col::<String>(row, 0),
            )
            .await?;
        match held.first() {
            Some(key) => Err(taken(&identifier_from_key(key)?)),
            None => Ok(()),
        }
    }

    /// Fails with `Conflict` unless each person is stored at the version it was read at
    /// (a new one: not stored).
    async fn check_versions(&self, people: &[&Person]) -> Result<(), RepoError> {
        let values: Vec<Value> = people.iter().map(|p| p.id().to_string().into()).collect();
        let stored = self
            .db
            .rows(
                &format!(
                    "SELECT id, version FROM people WHERE id IN ({})",
                    placeholders(1..=values.len())
                ),
                values,
                |row| Ok((col::<String>(row, 0)?, version_of(col(row, 1)?))),
            )
            .await?;
        for person in people {
            let id = person.id().to_string();
            let version = stored
                .iter()
                .find(|(stored, _)| *stored == id)
                .map_or(0, |(_, version)| *version);
            if version != person.version() {
                return Err(RepoError::Conflict);
            }
        }
        Ok(())
    }

    /// Writes one person inside a transaction: the row (optimistically locked), then its
    /// identifiers and search keys, replaced whole. Returns the new version.
    async fn write(&self, txn: &Txn, person: &Person) -> Result<u64, RepoError> {
        let db = &self.db;
        let id = person.id().to_string();
        let new_version = person.version() + 1;
        let mut stored = person.clone();
        stored.set_version(new_version);
        let body = to_json(&stored)?;
        let merged_into: Option<String> = person.merged_into().map(|p| p.to_string());
        if person.version() == 0 {
            txn.execute(
                db,
                "INSERT INTO people (id, version, merged_into, body) VALUES ($1, $2, $3, $4)",
                vec![
                    id.clone().into(),
                    version_value(new_version),
                    merged_into.into(),
                    body.into(),
                ],
            )
            .await
            .map_err(|e| unique_or_unexpected(e, || RepoError::Conflict))?;
        } else {
            let done = txn
                .execute(
                    db,
                    "UPDATE people SET version = $1, merged_into = $2, body = $3 \
                     WHERE id = $4 AND version = $5",
                    vec![
                        version_value(new_version),
                        merged_into.into(),
                        body.into(),
                        id.clone().into(),
                        version_value(person.version()),
                    ],
                )
                .await
                .map_err(unexpected)?;
            if done != 1 {
                return Err(RepoError::Conflict);
            }
            for table in ["person_identifiers", "person_names", "person_postcodes"] {
                txn.execute(
                    db,
                    &format!("DELETE FROM {table} WHERE person_id = $1"),
                    vec![id.clone().into()],
                )
                .await
                .map_err(unexpected)?;
            }
        }
        if person.merged_into().is_some() {
            return Ok(new_version);
        }
        for identifier in person.identifiers() {
            txn.execute(
                db,
                "INSERT INTO person_identifiers (identifier, person_id) VALUES ($1, $2)",
                vec![identifier_key(&identifier).into(), id.clone().into()],
            )
            .await
            .map_err(|e| unique_or_unexpected(e, || taken(&identifier)))?;
        }
        let (names, postcodes) = search_rows(person);
        if !names.is_empty() {
            let rows = names
                .into_iter()
                .map(|(key, birth)| vec![id.clone().into(), birth.into(), key.into()])
                .collect();
            let (sql, values) = insert_rows(
                "person_names",
                &["person_id", "birth_date", "family_key"],
                rows,
            );
            txn.execute(db, &sql, values).await.map_err(unexpected)?;
        }
        if !postcodes.is_empty() {
            let rows = postcodes
                .into_iter()
                .map(|p| vec![id.clone().into(), p.into()])
                .collect();
            let (sql, values) = insert_rows("person_postcodes", &["person_id", "postcode"], rows);
            txn.execute(db, &sql, values).await.map_err(unexpected)?;
        }
        Ok(new_version)
    }
}

/// The joins from a record `p` to the consent `c` held for its NHS number (its `nhs:`
/// identifier key; a merged-away record holds none). `substr`, not a range or LIKE,
/// picks the NHS key: it means the same under every collation, on both databases.
macro_rules! consent_joins {
    () => {
        "FROM people p \
         LEFT JOIN person_identifiers i ON i.person_id = p.id \
         AND substr(i.identifier, 1, 4) = 'nhs:' \
         LEFT JOIN consents c ON c.nhs_number = substr(i.identifier, 5) \
         WHERE p.id = $1"
    };
}

/// A record and the consent held for its NHS number.
const PERSON_WITH_CONSENT: &str = concat!(
    "SELECT p.version, p.body, c.version, c.body ",
    consent_joins!()
);

/// A row of [`RECORD_WITH_ITEMS`].
enum Held {
    Person(Person, Option<Consent>),
    Item(Either),
}

/// The record's row as [`PERSON_WITH_CONSENT`] reads it (`r`, materialized: read once),
/// then, if the record is live and no consent is held for it, the alerts (if `$2` is 1)
/// and referrals (if `$3` is 1) filed under it, in the order of
/// `items::ALERTS_AND_REFERRALS` (kind "a" sorts before "p", "p" before "r"). The items'
/// person is a scalar subquery that is NULL otherwise, so that no index entry of theirs
/// is looked at either. Columns: kind, then person id, version and body (of the record
/// or the item), the date received and the item's id, then the consent's version and
/// body.
const RECORD_WITH_ITEMS: &str = concat!(
    "WITH r AS MATERIALIZED (SELECT p.id, p.version, p.body, p.merged_into, \
     c.version AS consent_version, c.body AS consent ",
    consent_joins!(),
    ") \
     SELECT 'p' AS kind, id, version, body, NULL AS received, NULL AS item, \
     consent_version, consent FROM r \
     UNION ALL \
     SELECT 'a', person_id, version, body, '', id, NULL, NULL FROM alerts \
     WHERE $2 = 1 AND person_id = (SELECT min(id) FROM r \
     WHERE merged_into IS NULL HAVING count(consent) = 0) \
     UNION ALL \
     SELECT 'r', person_id, version, body, received, id, NULL, NULL FROM referrals \
     WHERE $3 = 1 AND person_id = (SELECT min(id) FROM r \
     WHERE merged_into IS NULL HAVING count(consent) = 0) \
     ORDER BY 1, 5 DESC, 6"
);

/// `$a, $a+1, …, $b`.
fn placeholders(numbers: std::ops::RangeInclusive<usize>) -> String {
    numbers
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An identifier held by another record, named for the caller.
fn taken(identifier: &Identifier) -> RepoError {
    RepoError::IdentifierTaken(match identifier {
        Identifier::Nhs(_) => "nhs_number".to_owned(),
        Identifier::Local(l) => format!("local id of {}", l.source()),
    })
}

/// The exclusive upper bound of the keys that start with `prefix`, in byte order (the
/// search keys' collation on both databases).
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

#[async_trait]
impl PersonRepository for SqlPeople {
    async fn get(&self, id: PersonId) -> Result<Option<Person>, RepoError> {
        Ok(self
            .query_people(
                "SELECT version, body FROM people WHERE id = $1",
                vec![id.to_string().into()],
            )
            .await?
            .pop())
    }

    async fn get_with_consent(
        &self,
        id: PersonId,
        _same_record: &dyn ConsentRepository,
    ) -> Result<Option<(Person, Option<Consent>)>, RepoError> {
        // One query (consent is in this database): on PostgreSQL one round trip per read
        // of a record instead of two, and on SQLite one read transaction.
        let rows = self
            .db
            .rows(PERSON_WITH_CONSENT, vec![id.to_string().into()], |row| {
                let person = Self::decode(col(row, 0)?, &col::<String>(row, 1)?)?;
                let consent = match col::<Option<String>>(row, 3)? {
                    Some(body) => Some(crate::records::decode_consent(col(row, 2)?, &body)?),
                    None => None,
                };
                Ok((person, consent))
            })
            .await?;
        // One row: a record holds at most one NHS number (the domain refuses a second)
        // and an identifier key is the primary key. Should that ever not hold, the
        // caller still keeps only a consent for the record's own number.
        let consent = rows.iter().find_map(|(_, c)| c.clone());
        Ok(rows.into_iter().next().map(|(person, _)| (person, consent)))
    }

    async fn get_with_items(
        &self,
        id: PersonId,
        stores: ItemStores<'_>,
    ) -> Result<Option<HeldRecord>, RepoError> {
        // One query (consent, alerts and referrals are in this database): a record
        // summary's one read, one round trip on PostgreSQL and one read transaction on
        // SQLite. The stores are only asked whether their items are wanted.
        let flag = |wanted: bool| Value::from(i64::from(wanted));
        let (want_alerts, want_referrals) = (stores.alerts.is_some(), stores.referrals.is_some());
        let rows = self
            .db
            .rows(
                RECORD_WITH_ITEMS,
                vec![
                    id.to_string().into(),
                    flag(want_alerts),
                    flag(want_referrals),
                ],
                |row| {
                    let kind: String = col(row, 0)?;
                    if kind != "p" {
                        return Ok(Held::Item(Either::decode(&kind, row, 1)?));
                    }
                    let person = Self::decode(col(row, 2)?, &col::<String>(row, 3)?)?;
                    let consent = match col::<Option<String>>(row, 7)? {
                        Some(body) => Some(crate::records::decode_consent(col(row, 6)?, &body)?),
                        None => None,
                    };
                    Ok(Held::Person(person, consent))
                },
            )
            .await?;
        let mut record = None;
        let (mut alerts, mut referrals) = (Vec::new(), Vec::new());
        for row in rows {
            match row {
                // One row, as in `get_with_consent`; should there be more, the first
                // record is kept with any consent among them.
                Held::Person(person, consent) => match &mut record {
                    None => record = Some((person, consent)),
                    Some((_, held)) => *held = held.take().or(consent),
                },
                Held::Item(Either::Alert(a)) => alerts.push(a),
                Held::Item(Either::Referral(r)) => referrals.push(r),
            }
        }
        let Some((person, consent)) = record else {
            return Ok(None);
        };
        // What the query read: the items wanted, for a live record without a consent.
        // Rows it should not have read are an error, not dropped unseen: the contract
        // suite then catches a query that reads them.
        let read = consent.is_none() && person.merged_into().is_none();
        let (alerts_read, referrals_read) = (read && want_alerts, read && want_referrals);
        if !(alerts_read || alerts.is_empty()) || !(referrals_read || referrals.is_empty()) {
            return Err(RepoError::Unexpected(anyhow::anyhow!(
                "the record's query read items it should not have"
            )));
        }
        Ok(Some(HeldRecord {
            person,
            consent,
            alerts: alerts_read.then_some(alerts),
            referrals: referrals_read.then_some(referrals),
        }))
    }

    async fn find_by_identifier(&self, id: &Identifier) -> Result<Option<Person>, RepoError> {
        Ok(self
            .query_people(
                "SELECT p.version, p.body FROM person_identifiers i \
                 JOIN people p ON p.id = i.person_id WHERE i.identifier = $1",
                vec![identifier_key(id).into()],
            )
            .await?
            .pop())
    }

    async fn find_by_identifiers(&self, ids: &[Identifier]) -> Result<Vec<Person>, RepoError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.query_people(
            &format!(
                "SELECT p.version, p.body FROM people p WHERE p.id IN \
                 (SELECT i.person_id FROM person_identifiers i WHERE i.identifier IN ({}))",
                placeholders(1..=ids.len())
            ),
            ids.iter().map(|id| identifier_key(id).into()).collect(),
        )
        .await
    }

    async fn search(
        &self,
        criteria: &SearchCriteria,
        limit: usize,
    ) -> Result<Vec<Person>, RepoError> {
        let limit = Value::from(i64::try_from(limit).unwrap_or(i64::MAX));
        match criteria {
            SearchCriteria::NhsNumber(n) => {
                self.find_by_identifier(&Identifier::Nhs(n.clone()))
                    .await
                    .map(|p| p.into_iter().collect())
            }
            SearchCriteria::FamilyAndBirthDate {
                family_prefix,
                birth_date,
            } => {
                self.query_people(
                    "SELECT p.version, p.body FROM people p WHERE p.merged_into IS NULL AND p.id IN \
                     (SELECT n.person_id FROM person_names n \
                      WHERE n.birth_date = $1 AND n.family_key >= $2 AND n.family_key < $3) \
                     ORDER BY p.id LIMIT $4",
                    vec![
                        birth_date.to_string().into(),
                        family_prefix.as_str().to_owned().into(),
                        prefix_end(family_prefix.as_str()).into(),
                        limit,
                    ],
                )
                .await
            }
            SearchCriteria::Postcode(postcode) => {
                self.query_people(
                    "SELECT p.version, p.body FROM people p WHERE p.merged_into IS NULL AND p.id IN \
                     (SELECT c.person_id FROM person_postcodes c WHERE c.postcode = $1) \
                     ORDER BY p.id LIMIT $2",
                    vec![postcode.as_str().to_owned().into(), limit],
                )
                .await
            }
        }
    }

    async fn save(&self, person: &Person) -> Result<u64, RepoError> {
        let _turn = self.db.write_turn().await;
        let txn = self.db.transaction().await.map_err(unexpected)?;
        if txn.undoes_nothing() && person.merged_into().is_none() {
            // A failure after the first write would take the whole unit with it: an
            // identifier another record holds is found before anything is written (a
            // version that moved on fails the first statement, before any change).
            self.check_identifiers_free(person, &[person.id()]).await?;
        }
        let version = self.write(&txn, person).await?;
        txn.commit().await.map_err(unexpected)?;
        Ok(version)
    }

    async fn save_merge(&self, survivor: &Person, retired: &Person) -> Result<(), RepoError> {
        // `Person::absorb` makes these true; checked here, before any write, so that a
        // caller that did not cannot end a SQLite unit halfway (see `Txn::Lite`).
        care_application::ports::check_merge(survivor, retired)?;
        let _turn = self.db.write_turn().await;
        let txn = self.db.transaction().await.map_err(unexpected)?;
        if txn.undoes_nothing() {
            // Both checked before the first write (see `save`): the survivor's write comes
            // after the retired record's, where a failure would take the unit with it.
            self.check_versions(&[survivor, retired]).await?;
            self.check_identifiers_free(survivor, &[survivor.id(), retired.id()])
                .await?;
        }
        // The retired record gives up its identifiers first, then the survivor takes them.
        self.write(&txn, retired).await?;
        self.write(&txn, survivor).await?;
        txn.commit().await.map_err(unexpected)?;
        Ok(())
    }
}
