//! The ingest commands feeds call (HL7 v2, FHIR, CSV): demographics, death, merge,
//! alerts, referrals. Each is idempotent and ordered by source time (the domain decides
//! what is older); each returns what it did, or an error whose text is fit for a
//! quarantine record. Writes are retried when another writer changed the same record.

use care_alert::{Alert, AlertDetails};
use care_kernel::{
    Action, Actor, AlertId, Date, DenyReason, InvalidValue, PersonId, ReferralId, Source, SourceId,
    Timestamp, UpdateOutcome,
};
use care_person::{
    DemographicFields, Demographics, Identifier, LocalId, NhsNumber, Person, PersonError,
};
use care_referral::{Referral, ReferralDetails, ReferralError};
use thiserror::Error;

use async_trait::async_trait;
use uuid::Uuid;

use crate::ports::{
    AlertRepository, Decision, FeedFormat, MessageOutcome, QuarantinedMessage, ReferralRepository,
    RepoError,
};
use crate::{AccessError, Services, gate::Access};

/// How a feed names the person a message is about: an NHS number, the source's own
/// local id, or both. At least one is required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonIdentity {
    nhs_number: Option<NhsNumber>,
    local_id: Option<LocalId>,
}

impl PersonIdentity {
    /// An identity with at least one identifier.
    pub fn new(
        nhs_number: Option<NhsNumber>,
        local_id: Option<LocalId>,
    ) -> Result<Self, InvalidValue> {
        if nhs_number.is_none() && local_id.is_none() {
            return Err(InvalidValue::new(
                "identifier",
                "an NHS number or a local id is required",
            ));
        }
        Ok(Self {
            nhs_number,
            local_id,
        })
    }

    /// The NHS number, if given.
    pub fn nhs_number(&self) -> Option<&NhsNumber> {
        self.nhs_number.as_ref()
    }

    /// The local id, if given.
    pub fn local_id(&self) -> Option<&LocalId> {
        self.local_id.as_ref()
    }

    fn identifiers(&self) -> impl Iterator<Item = Identifier> + '_ {
        self.nhs_number
            .iter()
            .cloned()
            .map(Identifier::Nhs)
            .chain(self.local_id.iter().cloned().map(Identifier::Local))
    }
}

/// What a message says about death.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathStatement {
    /// Nothing: the message neither reports nor denies a death (never clears one).
    NotStated,
    /// The person died on this date.
    Deceased(Date),
    /// The source says explicitly that the person is alive (corrects an error).
    NotDeceased,
}

/// Why a message could not be applied. The text names the problem for the quarantine.
#[derive(Debug, Error)]
pub enum IngestError {
    /// The account may not submit for this source.
    #[error("not permitted to submit for source {0}")]
    Forbidden(SourceId),
    /// The source is not registered.
    #[error("unknown source {0}")]
    UnknownSource(SourceId),
    /// A field was invalid.
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
    /// The message contradicts the record (e.g. a second NHS number, a referral reopened).
    #[error("{0}")]
    Conflict(String),
    /// Other writers kept changing the same record; the message can be retried.
    #[error("the record was busy; retry the message")]
    Busy,
    /// Storage or audit failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<RepoError> for IngestError {
    fn from(e: RepoError) -> Self {
        IngestError::Unexpected(anyhow::Error::new(e))
    }
}

impl From<PersonError> for IngestError {
    fn from(e: PersonError) -> Self {
        IngestError::Conflict(e.to_string())
    }
}

/// Attempts at a write that others keep changing before giving up with `Busy`.
const WRITE_ATTEMPTS: usize = 5;

fn combine(a: UpdateOutcome, b: UpdateOutcome) -> UpdateOutcome {
    use UpdateOutcome::*;
    match (a, b) {
        (Applied, _) | (_, Applied) => Applied,
        (Stale, _) | (_, Stale) => Stale,
        _ => Unchanged,
    }
}

/// One statement a feed message makes. A message may make several (an ADT with AL1
/// segments states demographics and allergies); they are applied in order.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestCommand {
    /// A source's statement of a person's demographics (HL7 ADT A01/A04/A08/A28/A31,
    /// FHIR Patient), with what it says about death.
    Demographics {
        /// Whom it is about.
        identity: PersonIdentity,
        /// When the source made the statement.
        source_time: Timestamp,
        /// What it says.
        demographics: Demographics,
        /// What it says about death.
        death: DeathStatement,
        /// How to read a field the statement leaves empty. `None` (a whole FHIR
        /// resource): the source no longer states it. `Some(cleared)` (HL7 v2, where an
        /// empty field means "not sent"): it keeps what this source said before, except
        /// the fields in `cleared`, which the message nulled (`""`).
        partial: Option<DemographicFields>,
    },
    /// A source's statement about death alone.
    Death {
        /// Whom it is about.
        identity: PersonIdentity,
        /// When the source made the statement.
        source_time: Timestamp,
        /// What it says.
        death: DeathStatement,
    },
    /// A source says two of its records are one person (HL7 A40).
    Merge {
        /// The record that stays.
        survivor: PersonIdentity,
        /// The record merged into it, named by the source's local id.
        retired: PersonIdentity,
        /// When the source made the statement.
        source_time: Timestamp,
    },
    /// An alert (HL7 AL1, FHIR Flag / AllergyIntolerance, CSV).
    Alert {
        /// Whom it is about.
        identity: PersonIdentity,
        /// The source's own reference for the alert.
        source_ref: String,
        /// What it says.
        details: AlertDetails,
        /// When the source made the statement.
        source_time: Timestamp,
    },
    /// A referral (HL7 REF^I12–I14, FHIR ServiceRequest, CSV).
    Referral {
        /// Whom it is about.
        identity: PersonIdentity,
        /// The source's own reference for the referral.
        source_ref: String,
        /// What it says.
        details: ReferralDetails,
        /// When the source made the statement.
        source_time: Timestamp,
    },
}

impl IngestCommand {
    fn identities(&self) -> Vec<&PersonIdentity> {
        match self {
            IngestCommand::Demographics { identity, .. }
            | IngestCommand::Death { identity, .. }
            | IngestCommand::Alert { identity, .. }
            | IngestCommand::Referral { identity, .. } => vec![identity],
            IngestCommand::Merge {
                survivor, retired, ..
            } => vec![survivor, retired],
        }
    }
}

/// A message as a feed received it, set aside because it could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The message's format.
    pub format: FeedFormat,
    /// What names the message to its sender (an HL7 control id, a FHIR resource id, a
    /// CSV line number), if anything does.
    pub reference: Option<String>,
    /// The message exactly as received.
    pub raw: Vec<u8>,
    /// Why it was not applied, in words a System Manager can act on.
    pub reason: String,
    /// Whom it may be about (identifiers found in it, possibly none).
    pub subjects: Vec<Identifier>,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageResult {
    /// It changed the record.
    Applied,
    /// It changed nothing: a repeat, older than what is held, or nothing this record
    /// keeps (a discharge without a death).
    Unchanged,
    /// It was set aside; the quarantine entry says why.
    Quarantined {
        /// The quarantine entry.
        id: Uuid,
        /// Why.
        reason: String,
    },
}

impl From<UpdateOutcome> for MessageResult {
    fn from(outcome: UpdateOutcome) -> Self {
        match outcome {
            UpdateOutcome::Applied => MessageResult::Applied,
            UpdateOutcome::Unchanged | UpdateOutcome::Stale => MessageResult::Unchanged,
        }
    }
}

/// One message of a submission and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageReport {
    /// Its position in the submission, from 0.
    pub index: usize,
    /// What names it to its sender (HL7 MSH-10, a FHIR resource id, a CSV line).
    pub reference: Option<String>,
    /// What happened.
    pub outcome: MessageResult,
}

/// What became of a submission's messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedReport {
    /// Each message, in order.
    pub messages: Vec<MessageReport>,
    /// Things about the submission as a whole (e.g. a batch trailer's count that does
    /// not match), none of which stopped a message.
    pub warnings: Vec<String>,
}

impl FeedReport {
    /// How many messages were applied, unchanged and quarantined.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for m in &self.messages {
            match m.outcome {
                MessageResult::Applied => counts.0 += 1,
                MessageResult::Unchanged => counts.1 += 1,
                MessageResult::Quarantined { .. } => counts.2 += 1,
            }
        }
        counts
    }
}

/// Why a re-submission did not resolve its entry.
#[derive(Debug, thiserror::Error)]
pub enum ResubmitError {
    /// The message still cannot be applied; the entry stays open.
    #[error("{0}")]
    StillFailing(String),
    /// Storage failed.
    #[error(transparent)]
    Ingest(IngestError),
}

impl IngestError {
    /// Whether the error is the message's fault (quarantine it) or the system's (stop,
    /// acknowledge nothing, let the sender retry).
    pub fn is_the_messages_fault(&self) -> bool {
        matches!(
            self,
            IngestError::Invalid(_) | IngestError::Conflict(_) | IngestError::Busy
        )
    }
}

/// A feed source's messages, from one authorised submitter: an HTTP request, an MLLP
/// connection, a batch file. Authorised once when opened (a refusal is audited); each
/// message then is applied or quarantined, and counted in the source's freshness.
#[derive(Debug, Clone)]
pub struct FeedSession {
    services: Services,
    source: Source,
}

impl FeedSession {
    /// The source the session submits for.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// How many messages the units of [`FeedSession::unit`] hold at most.
    pub fn unit_capacity(&self) -> usize {
        self.services.ports.units.capacity()
    }

    /// Whether another process would wait for this one's units (see
    /// [`crate::UnitOfWork::others_attached`]).
    pub fn others_attached(&self) -> bool {
        self.services.ports.units.others_attached()
    }

    /// Opens a unit of work: a session over the same source whose writes — applied
    /// messages, quarantine entries, the source's counters — commit together when the
    /// unit does (see [`crate::UnitOfWork`]). Nothing written through it may be
    /// acknowledged to a sender before the commit is durable
    /// ([`FeedUnit::commit_then_flush`]).
    pub async fn unit(&self) -> Result<FeedUnit, IngestError> {
        let unit = self.services.ports.units.begin().await?;
        let ports = self.services.ports.clone();
        let stores = unit.stores(&ports.feed_stores());
        Ok(FeedUnit {
            session: FeedSession {
                services: Services::new(ports.with_feed_stores(stores)),
                source: self.source.clone(),
            },
            unit,
        })
    }

    /// Applies one message's statements in order and counts the message (no statements:
    /// unchanged). An error names what was wrong, fit for [`FeedSession::quarantine`];
    /// statements before the failing one stay applied (each is idempotent, so applying
    /// the message again after a fix is safe).
    pub async fn apply(&self, commands: &[IngestCommand]) -> Result<UpdateOutcome, IngestError> {
        let outcome = self.services.apply_commands(&self.source, commands).await?;
        self.services
            .ports
            .sources
            .record_activity(&self.source.id, self.services.now(), outcome.into())
            .await?;
        Ok(outcome)
    }

    /// Keeps a message that could not be applied, with its reason, and counts it.
    /// Returns the quarantine entry's id (the open entry already holding the same bytes,
    /// when a sender sends a message again).
    pub async fn quarantine(&self, rejected: Rejected) -> Result<Uuid, IngestError> {
        let now = self.services.now();
        let id = self
            .services
            .ports
            .quarantine
            .put(&QuarantinedMessage {
                id: self.services.ports.ids.new_id(),
                source: self.source.id.clone(),
                format: rejected.format,
                received_at: now,
                reference: rejected.reference,
                raw: rejected.raw,
                reason: rejected.reason,
                subjects: rejected.subjects,
                resolution: None,
            })
            .await?;
        self.services
            .ports
            .sources
            .record_activity(&self.source.id, now, MessageOutcome::Quarantined)
            .await?;
        Ok(id)
    }
}

/// A feed session within a unit of work (see [`FeedSession::unit`]).
pub struct FeedUnit {
    session: FeedSession,
    unit: Box<dyn crate::Unit>,
}

impl std::fmt::Debug for FeedUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedUnit")
            .field("source", &self.session.source.id)
            .finish_non_exhaustive()
    }
}

impl FeedUnit {
    /// The session to apply and quarantine through within the unit.
    pub fn session(&self) -> &FeedSession {
        &self.session
    }

    /// Whether others wait for the database this unit holds: commit soon.
    pub fn others_waiting(&self) -> bool {
        self.unit.others_waiting()
    }

    /// Commits, letting the database go to the next unit before the commit is durable,
    /// and returns what says when it is ([`crate::Unit::commit_then_flush`]): only once
    /// that has returned `Ok` may anything written through the unit be acknowledged.
    pub async fn commit_then_flush(self) -> Result<crate::Durable, IngestError> {
        self.unit
            .commit_then_flush()
            .await
            .map_err(IngestError::from)
    }
}

impl Services {
    /// Opens a session for a feed account submitting for `source`: its role must allow
    /// feed submission and the account must be that source's own. A refusal is audited.
    pub async fn open_feed(
        &self,
        actor: &Actor,
        source: &SourceId,
    ) -> Result<FeedSession, IngestError> {
        let source = self.authorize_feed(actor, source).await?;
        Ok(FeedSession {
            services: self.clone(),
            source,
        })
    }

    /// Checks that the actor may submit for `source` (role, and a feed account's own
    /// source only), auditing a refusal, and returns the registered source.
    async fn authorize_feed(
        &self,
        actor: &Actor,
        source: &SourceId,
    ) -> Result<Source, IngestError> {
        let submit =
            Access::new(actor, self.now(), Action::SubmitFeed).on(format!("source:{source}"));
        let refusal = match self.decide(&submit) {
            Decision::Deny(reason) => Some(reason),
            Decision::Permit if actor.feed_source.as_ref() != Some(source) => {
                Some(DenyReason::WrongSource)
            }
            Decision::Permit => None,
        };
        if let Some(reason) = refusal {
            return match self.refuse(&submit, reason).await {
                AccessError::Unexpected(e) => Err(IngestError::Unexpected(e)),
                _ => Err(IngestError::Forbidden(source.clone())),
            };
        }
        self.registered_source(source).await
    }

    pub(crate) async fn registered_source(&self, source: &SourceId) -> Result<Source, IngestError> {
        self.ports
            .sources
            .get(source)
            .await?
            .map(|info| info.source)
            .ok_or_else(|| IngestError::UnknownSource(source.clone()))
    }

    /// Applies a message's statements for an authorised source, combining outcomes. A
    /// message that states nothing this record keeps (a discharge without a death) is
    /// read and changes nothing.
    pub(crate) async fn apply_commands(
        &self,
        source: &Source,
        commands: &[IngestCommand],
    ) -> Result<UpdateOutcome, IngestError> {
        for command in commands {
            Self::check_local_ids(source, command.identities())?;
        }
        let mut outcome = UpdateOutcome::Unchanged;
        // The person a statement of this message just wrote or found: an alert or referral
        // about the same identity that follows (an ADT's AL1s) is theirs without a second
        // lookup.
        let mut written: Option<(&PersonIdentity, PersonId)> = None;
        for command in commands {
            let (one, person) = self.apply_command(source, command, written).await?;
            outcome = combine(outcome, one);
            written = person;
        }
        Ok(outcome)
    }

    /// Applies one statement; `written` is the person an earlier statement of the same
    /// message wrote or found, by the identity it named. Returns the outcome, and the
    /// person this statement wrote or found, by its identity (none after a merge, which
    /// changes whom identities name).
    async fn apply_command<'c>(
        &self,
        source: &Source,
        command: &'c IngestCommand,
        written: Option<(&'c PersonIdentity, PersonId)>,
    ) -> Result<(UpdateOutcome, Option<(&'c PersonIdentity, PersonId)>), IngestError> {
        // The person an earlier statement wrote, if it named the same identity.
        let known = |identity: &PersonIdentity| {
            written
                .filter(|(named, _)| *named == identity)
                .map(|(_, person)| person)
        };
        Ok(match command {
            IngestCommand::Demographics {
                identity,
                source_time,
                demographics,
                death,
                partial,
            } => {
                let (person, outcome) = self
                    .write_person(identity, |person| {
                        let mut stated = demographics.clone();
                        if let Some(cleared) = partial {
                            // Fields not sent keep this source's earlier statement (only
                            // for a newer message: an older one is stale anyway).
                            if let Some(held) = person
                                .source_records()
                                .find(|r| r.source.id == source.id)
                                .filter(|r| r.source_time < *source_time)
                            {
                                stated.fill_from(&held.demographics, *cleared);
                            }
                        }
                        let shown =
                            person.apply_demographics(source.clone(), *source_time, stated)?;
                        let died = apply_death(person, source, *source_time, *death)?;
                        Ok(combine(shown, died))
                    })
                    .await?;
                (outcome, Some((identity, person.id())))
            }
            IngestCommand::Death {
                identity,
                source_time,
                death,
            } => {
                let (person, outcome) = self
                    .write_person(identity, |person| {
                        apply_death(person, source, *source_time, *death)
                    })
                    .await?;
                (outcome, Some((identity, person.id())))
            }
            IngestCommand::Merge {
                survivor, retired, ..
            } => (self.merge(survivor, retired).await?, None),
            IngestCommand::Alert {
                identity,
                source_ref,
                details,
                source_time,
            } => {
                let (outcome, person) = self
                    .upsert_item(
                        self.ports.alerts.as_ref(),
                        source,
                        (identity, known(identity)),
                        source_ref,
                        details.clone(),
                        *source_time,
                    )
                    .await?;
                (outcome, Some((identity, person)))
            }
            IngestCommand::Referral {
                identity,
                source_ref,
                details,
                source_time,
            } => {
                let (outcome, person) = self
                    .upsert_item(
                        self.ports.referrals.as_ref(),
                        source,
                        (identity, known(identity)),
                        source_ref,
                        details.clone(),
                        *source_time,
                    )
                    .await?;
                (outcome, Some((identity, person)))
            }
        })
    }

    /// One message for one source: opens a session and applies it (see
    /// [`Services::open_feed`] and [`FeedSession::apply`]).
    pub async fn ingest(
        &self,
        actor: &Actor,
        source: &SourceId,
        commands: &[IngestCommand],
    ) -> Result<UpdateOutcome, IngestError> {
        self.open_feed(actor, source).await?.apply(commands).await
    }

    fn check_local_ids<'a>(
        source: &Source,
        identities: impl IntoIterator<Item = &'a PersonIdentity>,
    ) -> Result<(), IngestError> {
        for identity in identities {
            if let Some(local) = identity.local_id()
                && local.source() != &source.id
            {
                return Err(InvalidValue::new(
                    "local_id",
                    format!("belongs to source {}, not to {}", local.source(), source.id),
                )
                .into());
            }
        }
        Ok(())
    }

    /// The live record an identity names, or a new empty one. Both identifiers naming
    /// two different records is a conflict: only a merge may join them.
    async fn resolve_person(&self, identity: &PersonIdentity) -> Result<Person, IngestError> {
        let identifiers: Vec<Identifier> = identity.identifiers().collect();
        let mut found = self.ports.people.find_by_identifiers(&identifiers).await?;
        if found.len() > 1 {
            return Err(IngestError::Conflict(
                "the NHS number and the local id belong to different records; a merge is needed"
                    .into(),
            ));
        }
        Ok(found
            .pop()
            .unwrap_or_else(|| Person::new(PersonId::from_uuid(self.ports.ids.new_id()))))
    }

    /// Loads or creates the person, lets `change` update it, and stores it if anything
    /// changed, retrying when another writer got there first.
    async fn write_person(
        &self,
        identity: &PersonIdentity,
        change: impl Fn(&mut Person) -> Result<UpdateOutcome, IngestError>,
    ) -> Result<(Person, UpdateOutcome), IngestError> {
        for _ in 0..WRITE_ATTEMPTS {
            let mut person = self.resolve_person(identity).await?;
            let is_new = person.version() == 0;
            let mut outcome = UpdateOutcome::Unchanged;
            for identifier in identity.identifiers() {
                outcome = combine(outcome, person.add_identifier(identifier)?);
            }
            outcome = combine(outcome, change(&mut person)?);
            if outcome != UpdateOutcome::Applied && !is_new {
                return Ok((person, outcome));
            }
            match self.ports.people.save(&person).await {
                Ok(version) => {
                    person.set_version(version);
                    return Ok((person, outcome));
                }
                Err(RepoError::Conflict | RepoError::IdentifierTaken(_)) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(IngestError::Busy)
    }

    /// A source says two of its records are one person (HL7 A40): the retired record is
    /// merged into the survivor with everything it held, its alerts and referrals follow,
    /// and later messages naming the retired identifier reach the survivor. Running the
    /// same merge again changes nothing (and finishes moving items if a run was cut short).
    /// A source merges only its own records: the retired one is named by its local id.
    async fn merge(
        &self,
        survivor: &PersonIdentity,
        retired: &PersonIdentity,
    ) -> Result<UpdateOutcome, IngestError> {
        let Some(retired_local) = retired.local_id() else {
            return Err(InvalidValue::new(
                "retired_identifier",
                "a merge names the retired record by the source's own local id",
            )
            .into());
        };
        let retired_key = Identifier::Local(retired_local.clone());
        for _ in 0..WRITE_ATTEMPTS {
            // The survivor is the record this source knows by the survivor's own id; its
            // NHS number may still sit on the retired record, and moves over with it.
            let by_own_id = match survivor.local_id() {
                Some(local) => {
                    let own = Identifier::Local(local.clone());
                    self.ports.people.find_by_identifier(&own).await?
                }
                None => None,
            };
            let mut keep = match by_own_id {
                Some(p) => p,
                None => self.resolve_person(survivor).await?,
            };
            let gone = self.ports.people.find_by_identifier(&retired_key).await?;
            let outcome = match gone {
                // Already merged (or one record all along): the survivor holds the retired
                // identifier. Give it the survivor's identifiers too, and finish moving
                // items in case an earlier run stopped between the merge and the moves.
                Some(p) if p.id() == keep.id() => {
                    let mut outcome = UpdateOutcome::Unchanged;
                    for identifier in survivor.identifiers() {
                        outcome = combine(outcome, keep.add_identifier(identifier)?);
                    }
                    if outcome == UpdateOutcome::Applied
                        && merge_write(self.ports.people.save(&keep).await)?.is_none()
                    {
                        continue;
                    }
                    let retired_ids: Vec<PersonId> = keep.merged_from().copied().collect();
                    let mut moved = 0;
                    for id in retired_ids {
                        moved += self.ports.referrals.reassign_person(id, keep.id()).await?;
                        moved += self.ports.alerts.reassign_person(id, keep.id()).await?;
                    }
                    if moved > 0 {
                        UpdateOutcome::Applied
                    } else {
                        outcome
                    }
                }
                Some(mut gone) => {
                    for identifier in survivor.identifiers() {
                        keep.add_identifier(identifier)?;
                    }
                    keep.absorb(&mut gone)?;
                    if merge_write(self.ports.people.save_merge(&keep, &gone).await)?.is_none() {
                        continue;
                    }
                    self.ports
                        .referrals
                        .reassign_person(gone.id(), keep.id())
                        .await?;
                    self.ports
                        .alerts
                        .reassign_person(gone.id(), keep.id())
                        .await?;
                    UpdateOutcome::Applied
                }
                // The retired record was never sent to us: the survivor takes its
                // identifier, so later messages that use it still find the person.
                None => {
                    let mut outcome = UpdateOutcome::Unchanged;
                    for identifier in survivor.identifiers().chain(retired.identifiers()) {
                        outcome = combine(outcome, keep.add_identifier(identifier)?);
                    }
                    if (outcome == UpdateOutcome::Applied || keep.version() == 0)
                        && merge_write(self.ports.people.save(&keep).await)?.is_none()
                    {
                        continue;
                    }
                    outcome
                }
            };
            return Ok(outcome);
        }
        Err(IngestError::Busy)
    }

    /// [`IngestCommand::Demographics`] as one message (see [`Services::ingest`]).
    pub async fn ingest_demographics(
        &self,
        actor: &Actor,
        source: &SourceId,
        identity: &PersonIdentity,
        source_time: Timestamp,
        demographics: Demographics,
        death: DeathStatement,
    ) -> Result<UpdateOutcome, IngestError> {
        let command = IngestCommand::Demographics {
            identity: identity.clone(),
            source_time,
            demographics,
            death,
            partial: None,
        };
        self.ingest(actor, source, &[command]).await
    }

    /// [`IngestCommand::Death`] as one message.
    pub async fn ingest_death(
        &self,
        actor: &Actor,
        source: &SourceId,
        identity: &PersonIdentity,
        source_time: Timestamp,
        death: DeathStatement,
    ) -> Result<UpdateOutcome, IngestError> {
        let command = IngestCommand::Death {
            identity: identity.clone(),
            source_time,
            death,
        };
        self.ingest(actor, source, &[command]).await
    }

    /// [`IngestCommand::Merge`] as one message.
    pub async fn ingest_merge(
        &self,
        actor: &Actor,
        source: &SourceId,
        survivor: &PersonIdentity,
        retired: &PersonIdentity,
        source_time: Timestamp,
    ) -> Result<UpdateOutcome, IngestError> {
        let command = IngestCommand::Merge {
            survivor: survivor.clone(),
            retired: retired.clone(),
            source_time,
        };
        self.ingest(actor, source, &[command]).await
    }

    /// [`IngestCommand::Alert`] as one message.
    pub async fn ingest_alert(
        &self,
        actor: &Actor,
        source: &SourceId,
        identity: &PersonIdentity,
        source_ref: &str,
        details: AlertDetails,
        source_time: Timestamp,
    ) -> Result<UpdateOutcome, IngestError> {
        let command = IngestCommand::Alert {
            identity: identity.clone(),
            source_ref: source_ref.to_owned(),
            details,
            source_time,
        };
        self.ingest(actor, source, &[command]).await
    }

    /// [`IngestCommand::Referral`] as one message.
    pub async fn ingest_referral(
        &self,
        actor: &Actor,
        source: &SourceId,
        identity: &PersonIdentity,
        source_ref: &str,
        details: ReferralDetails,
        source_time: Timestamp,
    ) -> Result<UpdateOutcome, IngestError> {
        let command = IngestCommand::Referral {
            identity: identity.clone(),
            source_ref: source_ref.to_owned(),
            details,
            source_time,
        };
        self.ingest(actor, source, &[command]).await
    }

    /// Creates or updates an alert or referral from a source's statement, retrying when
    /// another writer changed it first. An item moves to the person the message names
    /// only when the message is newer (the source re-filed it) or its person was merged
    /// away: an older message never moves it.
    async fn upsert_item<T: SourceItem, R: ItemStore<T> + ?Sized>(
        &self,
        repo: &R,
        source: &Source,
        (identity, mut known): (&PersonIdentity, Option<PersonId>),
        source_ref: &str,
        details: T::Details,
        source_time: Timestamp,
    ) -> Result<(UpdateOutcome, PersonId), IngestError> {
        for _ in 0..WRITE_ATTEMPTS {
            // The person the message's demographics just wrote, on the first attempt; else
            // found (or created) by the identity.
            let person = match known.take() {
                Some(person) => person,
                None => self
                    .write_person(identity, |_| Ok(UpdateOutcome::Unchanged))
                    .await?
                    .0
                    .id(),
            };
            let (item, outcome) = match repo.find(&source.id, source_ref).await? {
                Some(mut item) => {
                    let mut outcome = item.apply(source, details.clone(), source_time)?;
                    if item.person() != person
                        && (outcome == UpdateOutcome::Applied
                            || self.merged_away(item.person()).await?)
                    {
                        item.reassign(person);
                        outcome = UpdateOutcome::Applied;
                    }
                    (item, outcome)
                }
                None => {
                    let id = self.ports.ids.new_id();
                    let item = T::create(
                        id,
                        person,
                        source.clone(),
                        source_ref,
                        details.clone(),
                        source_time,
                    )?;
                    (item, UpdateOutcome::Applied)
                }
            };
            if outcome != UpdateOutcome::Applied {
                return Ok((outcome, person));
            }
            match repo.store(&item).await {
                Ok(_) => return Ok((outcome, person)),
                Err(RepoError::Conflict) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(IngestError::Busy)
    }

    async fn merged_away(&self, id: PersonId) -> Result<bool, IngestError> {
        Ok(self
            .ports
            .people
            .get(id)
            .await?
            .is_some_and(|p| p.merged_into().is_some()))
    }
}

/// What alerts and referrals have in common for ingest: a source's item about a person,
/// known by the source's reference, updated by source time.
trait SourceItem: Sized + Send + Sync {
    type Details: Clone + Send + Sync;
    fn create(
        id: Uuid,
        person: PersonId,
        source: Source,
        source_ref: &str,
        details: Self::Details,
        source_time: Timestamp,
    ) -> Result<Self, InvalidValue>;
    fn person(&self) -> PersonId;
    fn reassign(&mut self, to: PersonId);
    fn apply(
        &mut self,
        source: &Source,
        details: Self::Details,
        source_time: Timestamp,
    ) -> Result<UpdateOutcome, IngestError>;
}

impl SourceItem for Alert {
    type Details = AlertDetails;
    fn create(
        id: Uuid,
        person: PersonId,
        source: Source,
        source_ref: &str,
        details: AlertDetails,
        source_time: Timestamp,
    ) -> Result<Self, InvalidValue> {
        Alert::new(
            AlertId::from_uuid(id),
            person,
            source,
            source_ref,
            details,
            source_time,
        )
    }
    fn person(&self) -> PersonId {
        Alert::person(self)
    }
    fn reassign(&mut self, to: PersonId) {
        Alert::reassign(self, to);
    }
    fn apply(
        &mut self,
        source: &Source,
        details: AlertDetails,
        source_time: Timestamp,
    ) -> Result<UpdateOutcome, IngestError> {
        Alert::apply(self, source, details, source_time)
            .map_err(|e| IngestError::Conflict(e.to_string()))
    }
}

impl SourceItem for Referral {
    type Details = ReferralDetails;
    fn create(
        id: Uuid,
        person: PersonId,
        source: Source,
        source_ref: &str,
        details: ReferralDetails,
        source_time: Timestamp,
    ) -> Result<Self, InvalidValue> {
        Referral::new(
            ReferralId::from_uuid(id),
            person,
            source,
            source_ref,
            details,
            source_time,
        )
    }
    fn person(&self) -> PersonId {
        Referral::person(self)
    }
    fn reassign(&mut self, to: PersonId) {
        Referral::reassign(self, to);
    }
    fn apply(
        &mut self,
        source: &Source,
        details: ReferralDetails,
        source_time: Timestamp,
    ) -> Result<UpdateOutcome, IngestError> {
        Referral::apply(self, source, details, source_time)
            .map_err(|e: ReferralError| IngestError::Conflict(e.to_string()))
    }
}

/// The two calls of a repository that [`Services::upsert_item`] needs.
#[async_trait]
trait ItemStore<T>: Send + Sync {
    async fn find(&self, source: &SourceId, source_ref: &str) -> Result<Option<T>, RepoError>;
    async fn store(&self, item: &T) -> Result<u64, RepoError>;
}

#[async_trait]
impl ItemStore<Alert> for dyn AlertRepository {
    async fn find(&self, source: &SourceId, source_ref: &str) -> Result<Option<Alert>, RepoError> {
        self.find_by_source_ref(source, source_ref).await
    }
    async fn store(&self, item: &Alert) -> Result<u64, RepoError> {
        self.save(item).await
    }
}

#[async_trait]
impl ItemStore<Referral> for dyn ReferralRepository {
    async fn find(
        &self,
        source: &SourceId,
        source_ref: &str,
    ) -> Result<Option<Referral>, RepoError> {
        self.find_by_source_ref(source, source_ref).await
    }
    async fn store(&self, item: &Referral) -> Result<u64, RepoError> {
        self.save(item).await
    }
}

/// What a merge's write came to: `Some` when stored, `None` when another writer got
/// there first (retry). An identifier a third record holds is a conflict: only another
/// merge can join them, so retrying is pointless.
fn merge_write<T>(result: Result<T, RepoError>) -> Result<Option<T>, IngestError> {
    match result {
        Ok(stored) => Ok(Some(stored)),
        Err(RepoError::Conflict) => Ok(None),
        Err(RepoError::IdentifierTaken(what)) => Err(IngestError::Conflict(format!(
            "the survivor's {what} belongs to another record; a merge of that record is needed first"
        ))),
        Err(other) => Err(other.into()),
    }
}

fn apply_death(
    person: &mut Person,
    source: &Source,
    source_time: Timestamp,
    death: DeathStatement,
) -> Result<UpdateOutcome, IngestError> {
    Ok(match death {
        DeathStatement::NotStated => UpdateOutcome::Unchanged,
        DeathStatement::Deceased(date) => person.record_death(date, source.clone(), source_time)?,
        DeathStatement::NotDeceased => person.record_not_deceased(source, source_time)?,
    })
}
