//! The ports: one small trait per real I/O edge. Each doc comment states the contract
//! that every adapter keeps; `care-contract` holds the test suite that checks it, run
//! against the in-memory adapters now and the database adapters later.

use std::time::Duration;

use async_trait::async_trait;
use care_access_audit::{AuditEvent, ChainHead, ChainedEvent};
use care_alert::Alert;
use care_consent::{Consent, ConsentLevel};
use std::net::IpAddr;

use care_kernel::{
    Action, BasisKind, DenyReason, OrganisationId, PersonId, Role, Source, SourceId, Timestamp,
    UpdateOutcome, UserId, named_enum,
};
use care_person::{Identifier, NhsNumber, Person, SearchCriteria, VitalStatus};
use care_referral::Referral;
use thiserror::Error;
use uuid::Uuid;

/// Failures of a repository.
#[derive(Debug, Error)]
pub enum RepoError {
    /// The record changed since it was loaded (optimistic locking): reload and retry.
    #[error("the record was changed by someone else")]
    Conflict,
    /// Another live record already holds one of the identifiers being saved.
    #[error("another record already holds identifier {0}")]
    IdentifierTaken(String),
    /// Storage failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// The stores of one record that [`PersonRepository::get_with_items`] reads beside the
/// people: the consent store always, the item stores only where given.
#[derive(Clone, Copy)]
pub struct ItemStores<'a> {
    /// Consent.
    pub consent: &'a dyn ConsentRepository,
    /// Alerts, if they are wanted.
    pub alerts: Option<&'a dyn AlertRepository>,
    /// Referrals, if they are wanted.
    pub referrals: Option<&'a dyn ReferralRepository>,
}

impl std::fmt::Debug for ItemStores<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ItemStores { .. }")
    }
}

/// A record with its consent and, where they were read, the items filed under its id.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldRecord {
    /// The record (merged-away ones included).
    pub person: Person,
    /// The consent held for its NHS number, if any.
    pub consent: Option<Consent>,
    /// The alerts filed under its id, in no particular order; `None` if not read.
    pub alerts: Option<Vec<Alert>>,
    /// The referrals filed under its id, most recently received first, then by id;
    /// `None` if not read.
    pub referrals: Option<Vec<Referral>>,
}

/// People. Contract:
/// - `get` returns the record with that id, merged-away records included, else `None`;
///   `get_with_consent` the same with the consent held for its NHS number, and
///   `get_with_items` with that and, for a live record without a consent, the alerts
///   and referrals asked for that are filed under its id.
/// - `find_by_identifier` returns the one live (not merged-away) record holding it;
///   `find_by_identifiers` the records holding any of several, each once, in no order.
/// - `search` returns live records that [`Person::matches`] the criteria, ordered by id,
///   at most `limit`; whether a record may be shown is not its concern.
/// - `save` stores a record whose `version()` equals the stored version (0 for a new
///   record) and returns the new version; otherwise `Conflict`. An identifier held by
///   another live record gives `IdentifierTaken` and stores nothing.
/// - `save_merge` stores a survivor and its retired record atomically, same rules.
#[async_trait]
pub trait PersonRepository: Send + Sync {
    /// The record with this id.
    async fn get(&self, id: PersonId) -> Result<Option<Person>, RepoError>;
    /// The live record holding this identifier.
    async fn find_by_identifier(&self, id: &Identifier) -> Result<Option<Person>, RepoError>;
    /// The record with this id (as [`Self::get`]) and the consent held for its NHS
    /// number in `consent`, the same record's consent store. A store that holds both (a
    /// database) reads them in one query instead, from its own tables, whatever store is
    /// passed: callers pass the one of the same record. Every read of a record asks (a
    /// summary through `get_with_items`).
    async fn get_with_consent(
        &self,
        id: PersonId,
        consent: &dyn ConsentRepository,
    ) -> Result<Option<(Person, Option<Consent>)>, RepoError> {
        let Some(person) = self.get(id).await? else {
            return Ok(None);
        };
        let held = match person.nhs_number() {
            Some(n) => consent.get(n).await?,
            None => None,
        };
        Ok(Some((person, held)))
    }
    /// What a record summary reads: the record with its consent (as
    /// [`Self::get_with_consent`]) and the alerts and referrals filed under its id, each
    /// only if its store is given and **only for a live record without a consent**: the
    /// items of a person who changed their consent (who may be hidden by it) or of a
    /// merged-away record (whose survivor may be) are never read before the gate has
    /// decided, so that refusing an opted-out person costs what refusing an unknown id
    /// does. (A person dead for more than 8 years, hidden too, has theirs read.) A store
    /// that holds them all (a database) reads them in one query.
    async fn get_with_items(
        &self,
        id: PersonId,
        stores: ItemStores<'_>,
    ) -> Result<Option<HeldRecord>, RepoError> {
        let Some((person, consent)) = self.get_with_consent(id, stores.consent).await? else {
            return Ok(None);
        };
        let (mut alerts, mut referrals) = (None, None);
        if consent.is_none() && person.merged_into().is_none() {
            if let Some(store) = stores.alerts {
                alerts = Some(store.list_for_person(id).await?);
            }
            if let Some(store) = stores.referrals {
                referrals = Some(store.list_for_person(id).await?);
            }
        }
        Ok(Some(HeldRecord {
            person,
            consent,
            alerts,
            referrals,
        }))
    }
    /// The live records holding any of `ids`, each once: none, one, or several when the
    /// identifiers name different records. (A store that can answer in one query
    /// overrides this; a feed message names a person by two identifiers.)
    async fn find_by_identifiers(&self, ids: &[Identifier]) -> Result<Vec<Person>, RepoError> {
        let mut found: Vec<Person> = Vec::new();
        for id in ids {
            if let Some(person) = self.find_by_identifier(id).await?
                && !found.iter().any(|held| held.id() == person.id())
            {
                found.push(person);
            }
        }
        Ok(found)
    }
    /// Live records matching the criteria.
    async fn search(
        &self,
        criteria: &SearchCriteria,
        limit: usize,
    ) -> Result<Vec<Person>, RepoError>;
    /// Stores one record.
    async fn save(&self, person: &Person) -> Result<u64, RepoError>;
    /// Stores a merge's two records together. `retired` must be another record, merged
    /// into `survivor` (as `Person::absorb` leaves them); anything else is refused before
    /// anything is written ([`check_merge`]).
    async fn save_merge(&self, survivor: &Person, retired: &Person) -> Result<(), RepoError>;
}

/// What every [`PersonRepository::save_merge`] checks before it writes: that `retired`
/// is another record, merged into `survivor`.
pub fn check_merge(survivor: &Person, retired: &Person) -> Result<(), RepoError> {
    if survivor.id() == retired.id() || retired.merged_into() != Some(survivor.id()) {
        return Err(RepoError::Unexpected(anyhow::anyhow!(
            "not a merge: the retired record must be merged into another, the survivor"
        )));
    }
    Ok(())
}

/// Referrals. Contract: a referral is unique by (source, source reference); `save`
/// follows the optimistic-locking rule of [`PersonRepository::save`] (version 0 inserts,
/// and an insert whose source reference is taken is a `Conflict` too) and returns the
/// new version; `list_for_person` returns a person's referrals, most recently received
/// first; `reassign_person` moves every referral of `from` to `to` and returns how many
/// moved (so running it twice moves none the second time).
#[async_trait]
pub trait ReferralRepository: Send + Sync {
    /// The referral a source knows by its reference.
    async fn find_by_source_ref(
        &self,
        source: &SourceId,
        source_ref: &str,
    ) -> Result<Option<Referral>, RepoError>;
    /// Inserts or updates, with optimistic locking.
    async fn save(&self, referral: &Referral) -> Result<u64, RepoError>;
    /// A person's referrals, most recently received first.
    async fn list_for_person(&self, person: PersonId) -> Result<Vec<Referral>, RepoError>;
    /// Moves referrals to a merge's survivor.
    async fn reassign_person(&self, from: PersonId, to: PersonId) -> Result<u64, RepoError>;
}

/// Alerts. Same contract as [`ReferralRepository`]; `list_for_person` returns every alert,
/// ended ones included, in no promised order (display order is the domain's).
#[async_trait]
pub trait AlertRepository: Send + Sync {
    /// The alert a source knows by its reference.
    async fn find_by_source_ref(
        &self,
        source: &SourceId,
        source_ref: &str,
    ) -> Result<Option<Alert>, RepoError>;
    /// Inserts or updates, with optimistic locking.
    async fn save(&self, alert: &Alert) -> Result<u64, RepoError>;
    /// A person's alerts.
    async fn list_for_person(&self, person: PersonId) -> Result<Vec<Alert>, RepoError>;
    /// A person's alerts and their referrals in `referrals`, the same record's referral
    /// store: each list as its store's `list_for_person` gives it (alerts in no promised
    /// order, referrals most recently received first). A store that holds both (a
    /// database) reads them in one query instead, from its own tables, whatever store
    /// is passed: callers pass the one of the same record. A summary asks when
    /// `get_with_items` did not read them (and the person's records were not merged).
    async fn list_with_referrals(
        &self,
        person: PersonId,
        referrals: &dyn ReferralRepository,
    ) -> Result<(Vec<Alert>, Vec<Referral>), RepoError> {
        Ok((
            self.list_for_person(person).await?,
            referrals.list_for_person(person).await?,
        ))
    }
    /// Moves alerts to a merge's survivor.
    async fn reassign_person(&self, from: PersonId, to: PersonId) -> Result<u64, RepoError>;
}

/// Consent, by NHS number. Contract: `get` returns `None` for a person who never changed
/// their consent (they participate); `get_many` returns the stored ones among the
/// numbers asked for, in any order; `save` follows the optimistic-locking rule of
/// [`PersonRepository::save`] and keeps the whole history.
#[async_trait]
pub trait ConsentRepository: Send + Sync {
    /// One person's consent.
    async fn get(&self, nhs_number: &NhsNumber) -> Result<Option<Consent>, RepoError>;
    /// Several people's consent (for search results).
    async fn get_many(&self, nhs_numbers: &[NhsNumber]) -> Result<Vec<Consent>, RepoError>;
    /// Stores consent and returns its new version.
    async fn save(&self, consent: &Consent) -> Result<u64, RepoError>;
}

/// Failures of the audit log. Any failure means the access must not go ahead.
#[derive(Debug, Error)]
pub enum AuditError {
    /// Storage failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// The access audit, one hash chain. Contract:
/// - `append` links the events, in order, as consecutive links at the end of the one
///   chain (via [`ChainHead::append`]), and returns only once they and the new head are
///   durable: all of a batch or none. Concurrent callers are serialised, so the chain
///   stays one valid chain whatever the number of writers.
/// - `head` returns the head kept apart from the events (for truncation checks).
/// - `read` returns events from position `from` in order, at most `limit`.
/// - `for_person` returns the events about one person with `from <= at < to`, in order.
/// - There is no way to change or delete an event.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends events to the chain.
    async fn append(&self, events: Vec<AuditEvent>) -> Result<Vec<ChainedEvent>, AuditError>;
    /// The chain's head.
    async fn head(&self) -> Result<ChainHead, AuditError>;
    /// A page of the chain.
    async fn read(&self, from: u64, limit: usize) -> Result<Vec<ChainedEvent>, AuditError>;
    /// A person's events over a period.
    async fn for_person(
        &self,
        person: PersonId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<AuditEvent>, AuditError>;
}

/// What a feed source is and how lively it has been.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    /// The source and its kind.
    pub source: Source,
    /// A name people recognise ("University Hospitals Dorset PAS").
    pub name: String,
    /// How often it is expected to send; quieter than this and it is stale.
    pub expected_interval: Duration,
    /// When its last message arrived.
    pub last_message_at: Option<Timestamp>,
    /// Messages applied.
    pub applied: u64,
    /// Messages that changed nothing (repeats, or older than what is held).
    pub unchanged: u64,
    /// Messages set aside in the quarantine.
    pub quarantined: u64,
}

impl SourceInfo {
    /// A registered source that has sent nothing yet.
    pub fn new(source: Source, name: &str, expected_interval: Duration) -> Self {
        Self {
            source,
            name: name.to_owned(),
            expected_interval,
            last_message_at: None,
            applied: 0,
            unchanged: 0,
            quarantined: 0,
        }
    }

    /// A source is stale when it has been quiet for longer than its expected interval
    /// (or has never sent anything).
    pub fn is_stale(&self, now: Timestamp) -> bool {
        match self.last_message_at {
            None => true,
            Some(last) => chrono::Duration::from_std(self.expected_interval)
                .map(|interval| now - last > interval)
                .unwrap_or(false),
        }
    }
}

/// What became of one message, for a source's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageOutcome {
    /// It changed the record.
    Applied,
    /// It changed nothing (a repeat, or older than what is held).
    Unchanged,
    /// It was set aside in the quarantine.
    Quarantined,
}

impl From<UpdateOutcome> for MessageOutcome {
    fn from(outcome: UpdateOutcome) -> Self {
        match outcome {
            UpdateOutcome::Applied => MessageOutcome::Applied,
            UpdateOutcome::Unchanged | UpdateOutcome::Stale => MessageOutcome::Unchanged,
        }
    }
}

/// The registry of feed sources. Contract: `register` inserts or updates a source's
/// description and keeps its activity; `record_activity` moves `last_message_at` forward
/// (never back) and adds one to the counter of the outcome; unknown sources give
/// `Ok(None)` / no change.
#[async_trait]
pub trait SourceRegistry: Send + Sync {
    /// One source.
    async fn get(&self, id: &SourceId) -> Result<Option<SourceInfo>, RepoError>;
    /// Every source, by id.
    async fn list(&self) -> Result<Vec<SourceInfo>, RepoError>;
    /// Registers or re-describes a source.
    async fn register(&self, info: &SourceInfo) -> Result<(), RepoError>;
    /// Notes a message from a source and what it did.
    async fn record_activity(
        &self,
        id: &SourceId,
        at: Timestamp,
        outcome: MessageOutcome,
    ) -> Result<(), RepoError>;
}

named_enum!(
    /// How a feed message was written.
    FeedFormat, "format" {
        /// HL7 version 2 (pipe-delimited), over MLLP or HTTP.
        Hl7v2 => "hl7v2",
        /// A FHIR R4 resource (JSON).
        Fhir => "fhir",
        /// A row of a referrals CSV extract.
        CsvReferrals => "csv_referrals",
        /// A row of an alerts CSV extract.
        CsvAlerts => "csv_alerts",
    }
);

/// How a quarantined message was dealt with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// When.
    pub at: Timestamp,
    /// By whom (the System Manager who re-submitted it).
    pub by: UserId,
    /// What applying it did.
    pub outcome: UpdateOutcome,
    /// The message applied in its place, when the System Manager corrected it.
    pub corrected: Option<Vec<u8>>,
}

/// A feed message that could not be applied, kept with its raw bytes and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedMessage {
    /// Its id.
    pub id: Uuid,
    /// The source it came from.
    pub source: SourceId,
    /// How it was written.
    pub format: FeedFormat,
    /// When it arrived.
    pub received_at: Timestamp,
    /// What names it to its sender (HL7 control id, FHIR resource id, CSV line).
    pub reference: Option<String>,
    /// The message exactly as received.
    pub raw: Vec<u8>,
    /// Why it was not applied.
    pub reason: String,
    /// Whom it may be about: the identifiers found in it (possibly none). Reading it is
    /// an access to each of these people, under their consent.
    pub subjects: Vec<Identifier>,
    /// Set once it has been re-submitted and applied.
    pub resolution: Option<Resolution>,
}

/// A quarantined message without its content, for lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineSummary {
    /// Its id.
    pub id: Uuid,
    /// The source it came from.
    pub source: SourceId,
    /// How it was written.
    pub format: FeedFormat,
    /// When it arrived.
    pub received_at: Timestamp,
    /// What names it to its sender.
    pub reference: Option<String>,
    /// Its size in bytes.
    pub size: u64,
    /// Why it was not applied.
    pub reason: String,
    /// Whom it may be about.
    pub subjects: Vec<Identifier>,
    /// Set once it has been re-submitted and applied (without a correction's bytes).
    pub resolution: Option<Resolution>,
}

impl From<&QuarantinedMessage> for QuarantineSummary {
    fn from(m: &QuarantinedMessage) -> Self {
        Self {
            id: m.id,
            source: m.source.clone(),
            format: m.format,
            received_at: m.received_at,
            reference: m.reference.clone(),
            size: m.raw.len() as u64,
            reason: m.reason.clone(),
            subjects: m.subjects.clone(),
            resolution: m.resolution.as_ref().map(|r| Resolution {
                corrected: None,
                ..r.clone()
            }),
        }
    }
}

/// Which quarantined messages to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuarantineFilter {
    /// Only this source's.
    pub source: Option<SourceId>,
    /// Only those not yet resolved.
    pub open_only: bool,
}

/// The quarantine. Contract:
/// - `put` stores a new entry with its raw bytes and subjects unchanged and returns its
///   id — unless an open (unresolved) entry of the same source holds the same bytes:
///   then it stores nothing and returns that entry's id (a sender retrying a message
///   does not fill the quarantine). Storing a second entry under an id already stored
///   is an error.
/// - `get` returns an entry by id, resolved or not.
/// - `list` returns summaries (no content: a list never loads messages) of the entries
///   matching the filter, newest first (ties by id), at most `limit`.
/// - `resolve` sets the resolution of an open entry and returns `true`; an entry already
///   resolved (or unknown) keeps what it has and gives `false`.
#[async_trait]
pub trait QuarantineStore: Send + Sync {
    /// Keeps a message; returns the id of the entry holding it.
    async fn put(&self, message: &QuarantinedMessage) -> Result<Uuid, RepoError>;
    /// One entry.
    async fn get(&self, id: Uuid) -> Result<Option<QuarantinedMessage>, RepoError>;
    /// Entries, newest first, without their content.
    async fn list(
        &self,
        filter: &QuarantineFilter,
        limit: usize,
    ) -> Result<Vec<QuarantineSummary>, RepoError>;
    /// Marks an open entry resolved.
    async fn resolve(&self, id: Uuid, resolution: &Resolution) -> Result<bool, RepoError>;
}

/// The time. The only way the application learns it.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// New ids. Contract: never the same id twice.
pub trait IdGenerator: Send + Sync {
    /// A new UUID.
    fn new_id(&self) -> Uuid;
}

/// What is known of the person an access concerns, as the policy needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubjectState {
    /// Their consent level.
    pub consent: ConsentLevel,
    /// Alive, deceased, or deceased beyond retention.
    pub vital: VitalStatus,
    /// The basis the actor asserted, if any.
    pub basis: Option<BasisKind>,
}

impl SubjectState {
    /// The state used when there is no person to speak of (an unknown id, a search
    /// before its hits): decisions then depend on role and purpose alone.
    pub const NEUTRAL: SubjectState = SubjectState {
        consent: ConsentLevel::Participating,
        vital: VitalStatus::Alive,
        basis: None,
    };
}

/// One access to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AccessRequest {
    /// The actor's role.
    pub role: Role,
    /// What they want to do.
    pub action: Action,
    /// Whether the declared purpose is direct care.
    pub direct_care: bool,
    /// The person concerned; `None` for actions on no person (verify the audit, ...).
    pub subject: Option<SubjectState>,
}

/// The policy's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Go ahead.
    Permit,
    /// Refused, and why.
    Deny(DenyReason),
}

/// The access policy (SPEC §2 and the consent levels). Contract: a pure function of the
/// request. A denial's reason follows one precedence, so that the reason never depends on
/// whether the person exists unless role and purpose are already in order:
/// 1. `RoleNotPermitted` when no subject state would let this role do this action;
/// 2. `PurposeNotDirectCare` when the purpose is not direct care and no subject state
///    would let the role do it for that purpose;
/// 3. `OptedOut` / `PermissionRequired` when the consent level is what stands in the way;
/// 4. `DeceasedBeyondRetention` when the vital status is.
pub trait AccessPolicy: Send + Sync {
    /// Decides one request.
    fn decide(&self, request: &AccessRequest) -> Decision;
}

/// An organisation users belong to (e.g. a GP practice, a hospital trust, a council).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organisation {
    /// Its code (e.g. an ODS code).
    pub id: OrganisationId,
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A user account. The password is kept only as an Argon2id PHC string.
#[derive(Clone, PartialEq, Eq)]
pub struct UserAccount {
    /// The account name (what the user signs in with, and what the audit records).
    pub user: UserId,
    /// The person's name, for the System Manager's lists.
    pub display_name: String,
    /// Their organisation.
    pub organisation: OrganisationId,
    /// The one role the account acts in.
    pub role: Role,
    /// For feed accounts: the one source they may submit for.
    pub feed_source: Option<SourceId>,
    /// The password hash (PHC string).
    pub password_hash: String,
    /// A disabled account cannot sign in and its sessions end.
    pub disabled: bool,
    /// When the account was created.
    pub created_at: Timestamp,
    /// Failed sign-ins before this time do not count towards lockout (the last
    /// successful sign-in or password reset).
    pub failures_cleared_at: Option<Timestamp>,
}

impl std::fmt::Debug for UserAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserAccount")
            .field("user", &self.user)
            .field("organisation", &self.organisation)
            .field("role", &self.role)
            .field("feed_source", &self.feed_source)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// Users and organisations. Contract:
/// - `create_organisation` / `create_user` store a new row and return `true`, or return
///   `false` and change nothing when the id is taken.
/// - `create_user` for an organisation that does not exist is `Unexpected`.
/// - `update_user` replaces the stored account with the same `user`; returns `false` if
///   there is none.
/// - lists are ordered by id.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Adds an organisation.
    async fn create_organisation(&self, org: &Organisation) -> Result<bool, RepoError>;
    /// Every organisation.
    async fn organisations(&self) -> Result<Vec<Organisation>, RepoError>;
    /// Adds a user.
    async fn create_user(&self, user: &UserAccount) -> Result<bool, RepoError>;
    /// One user.
    async fn user(&self, id: &UserId) -> Result<Option<UserAccount>, RepoError>;
    /// Every user.
    async fn users(&self) -> Result<Vec<UserAccount>, RepoError>;
    /// Replaces a user's account.
    async fn update_user(&self, user: &UserAccount) -> Result<bool, RepoError>;
    /// Sets only `failures_cleared_at` (a successful sign-in), leaving every other field
    /// as stored, so a sign-in racing a disable or a password reset cannot undo it.
    /// Returns `false` if there is no such user.
    async fn clear_failures(&self, user: &UserId, at: Timestamp) -> Result<bool, RepoError>;
}

/// The SHA-256 of a session token: what is stored, so that a copy of the table signs
/// nobody in.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// A signed-in session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The hash of its token.
    pub token_hash: TokenHash,
    /// Whose.
    pub user: UserId,
    /// Signed in at.
    pub created_at: Timestamp,
    /// Last used at (kept to [`SESSION_TOUCH_GRANULARITY`]).
    pub last_seen_at: Timestamp,
    /// Signed out or revoked at.
    pub revoked_at: Option<Timestamp>,
}

/// How stale `last_seen_at` may be before a use writes it again: one write per session
/// per this interval instead of one per request. The idle timeout is therefore honoured
/// to within this much.
pub const SESSION_TOUCH_GRANULARITY: Duration = Duration::from_secs(15);

/// Sessions, in the database so that several servers share them. Contract:
/// - `create` stores a new session (token hashes are unique).
/// - `get` returns the session with that hash, revoked or not, else `None`.
/// - `touch` sets `last_seen_at` to `at` if that is later than what is stored and the
///   session is not revoked; returns whether it wrote.
/// - `revoke` sets `revoked_at` (once; the first revocation stands) and returns whether
///   the session was live; `revoke_user` revokes every live session of a user and
///   returns how many.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session.
    async fn create(&self, session: &SessionRecord) -> Result<(), RepoError>;
    /// Looks a session up.
    async fn get(&self, token: &TokenHash) -> Result<Option<SessionRecord>, RepoError>;
    /// A session with its user's account, `None` if either is missing: [`Self::get`],
    /// then [`AccountStore::user`] on `accounts`, the same record's account store. A
    /// store that holds both (a database) reads them in one query instead, since every
    /// authenticated request asks.
    async fn get_with_account(
        &self,
        token: &TokenHash,
        accounts: &dyn AccountStore,
    ) -> Result<Option<(SessionRecord, UserAccount)>, RepoError> {
        let Some(session) = self.get(token).await? else {
            return Ok(None);
        };
        Ok(accounts
            .user(&session.user)
            .await?
            .map(|account| (session, account)))
    }
    /// Notes a use.
    async fn touch(&self, token: &TokenHash, at: Timestamp) -> Result<bool, RepoError>;
    /// Ends one session.
    async fn revoke(&self, token: &TokenHash, at: Timestamp) -> Result<bool, RepoError>;
    /// Ends every session of a user.
    async fn revoke_user(&self, user: &UserId, at: Timestamp) -> Result<u64, RepoError>;
}

named_enum!(
    /// A security event that is not an access to a record (those are in the audit chain).
    SecurityEventKind, "kind" {
        /// A sign-in succeeded.
        SignInSucceeded => "sign_in_succeeded",
        /// A sign-in failed (unknown user, wrong password, disabled account).
        SignInFailed => "sign_in_failed",
        /// A sign-in was refused because the account is locked.
        SignInLocked => "sign_in_locked",
        /// A user signed out.
        SignedOut => "signed_out",
        /// A request came from outside the allow-list.
        NetworkRefused => "network_refused",
        /// A request was refused by the sign-in rate limit.
        RateLimited => "rate_limited",
        /// A feed channel configured for an account (MLLP) refused it: the account is
        /// unknown, disabled or not a feed account.
        FeedAccountRefused => "feed_account_refused",
    }
);

/// One security event. Holds no password and no token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEvent {
    /// When.
    pub at: Timestamp,
    /// What happened.
    pub kind: SecurityEventKind,
    /// The account concerned, when there is one (for a failed sign-in, the name tried,
    /// if it is a well-formed account name).
    pub user: Option<UserId>,
    /// From where.
    pub client: IpAddr,
    /// Detail fit for the log (never a secret).
    pub detail: Option<String>,
}

/// The security log: append-only. Contract: `append` stores the event; `count` counts a
/// user's events of one kind at or after `since`; `recent` returns the newest first.
#[async_trait]
pub trait SecurityLog: Send + Sync {
    /// Appends one event.
    async fn append(&self, event: &SecurityEvent) -> Result<(), RepoError>;
    /// Counts a user's events of a kind since a time.
    async fn count(
        &self,
        user: &UserId,
        kind: SecurityEventKind,
        since: Timestamp,
    ) -> Result<u32, RepoError>;
    /// The newest events.
    async fn recent(&self, limit: usize) -> Result<Vec<SecurityEvent>, RepoError>;
}

/// Password hashing (Argon2id in the adapter). Async because it is deliberately slow:
/// adapters run it off the request threads.
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    /// Hashes a password with a fresh salt, as a PHC string.
    async fn hash(&self, password: &str) -> Result<String, RepoError>;
    /// Whether the password matches the PHC string (`false` for a malformed one). With
    /// no hash (an unknown user) it returns `false` after as long as a real check takes,
    /// so that timing does not tell which account names exist.
    async fn verify(&self, password: &str, phc: Option<&str>) -> bool;
}

/// Session tokens: random, at least 128 bits, URL-safe text.
pub trait TokenSource: Send + Sync {
    /// A new token.
    fn new_token(&self) -> String;
}

/// The stores a feed writes through: what a [`Unit`] of work binds together.
#[derive(Clone)]
pub struct FeedStores {
    /// People.
    pub people: std::sync::Arc<dyn PersonRepository>,
    /// Referrals.
    pub referrals: std::sync::Arc<dyn ReferralRepository>,
    /// Alerts.
    pub alerts: std::sync::Arc<dyn AlertRepository>,
    /// Feed sources (freshness and counts).
    pub sources: std::sync::Arc<dyn SourceRegistry>,
    /// Quarantined messages.
    pub quarantine: std::sync::Arc<dyn QuarantineStore>,
}

impl std::fmt::Debug for FeedStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FeedStores { .. }")
    }
}

/// Units of work: a feed's writes — its records, quarantine entries and the source's
/// counters — committed together, so a batch costs one durable commit instead of
/// several per message, and freshness moves in the same transaction as the data.
/// Contract:
/// - `begin` opens a [`Unit`]. What is written through its stores is read back by them
///   at once, and seen by everyone else once `commit` has returned, when it is durable.
/// - A unit dropped without `commit`, or whose `commit` fails, may have kept none, some
///   or all of its writes (a database rolls them back; memory has no rollback): use a
///   unit only for writes its caller will redo if not acknowledged — every ingest
///   command is idempotent, and a feed message not acknowledged is sent again.
/// - A unit may hold a database's write lock until it ends: keep units short.
#[async_trait]
pub trait UnitOfWork: Send + Sync {
    /// Opens a unit.
    async fn begin(&self) -> Result<Box<dyn Unit>, RepoError>;
    /// How many feed messages a unit should hold at most: as many as the database can
    /// keep in one transaction without holding up others for long (PostgreSQL keeps each
    /// row's lock until commit, so a unit there holds one message).
    fn capacity(&self) -> usize;
    /// Whether another process has the database open now and would wait for this one's
    /// units: on a database with one write lock (SQLite), whose other processes cannot
    /// join this process's queue for it and only poll. A long run of units (a batch load
    /// in its own process) then leaves the database to them between units; alone, it
    /// need not. Asked once per unit, so cheap.
    fn others_attached(&self) -> bool {
        false
    }
}

/// An open unit of work (see [`UnitOfWork`]).
#[async_trait]
pub trait Unit: Send + Sync {
    /// Whether others are waiting for the database this unit holds (a reader's audit
    /// append on SQLite): the unit should then commit after its current message.
    fn others_waiting(&self) -> bool {
        false
    }
    /// The stores to write through within this unit, given those used outside it (a
    /// unit that has no transaction of its own hands those back).
    fn stores(&self, outside: &FeedStores) -> FeedStores;
    /// Makes everything written through the unit durable and visible.
    async fn commit(self: Box<Self>) -> Result<(), RepoError>;
    /// Commits, letting the database go to the next unit as soon as it can, and returns
    /// what says when the commit is durable (a database that flushes its log after
    /// letting go: SQLite). Nothing written through the unit may be acknowledged before
    /// that has returned `Ok`; the caller may begin the next unit meanwhile.
    async fn commit_then_flush(self: Box<Self>) -> Result<Durable, RepoError> {
        self.commit().await?;
        Ok(durable_already())
    }
}

/// Resolves when a committed unit is durable ([`Unit::commit_then_flush`]).
pub type Durable =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), RepoError>> + Send>>;

/// A [`Durable`] for a commit that was durable when it returned (or nothing committed).
pub fn durable_already() -> Durable {
    Box::pin(std::future::ready(Ok(())))
}
