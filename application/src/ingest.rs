//! The ingest commands feeds call (HL7 v2, FHIR, CSV): demographics, death, merge,
//! alerts, referrals. Each is idempotent and ordered by source time (the domain decides
//! what is older); each returns what it did, or an error whose text is fit for a
//! quarantine record. Writes are retried when another writer changed the same record.

use care_alert::{Alert, AlertDetails};
use care_kernel::{
    Action, Actor, AlertId, Date, DenyReason, InvalidValue, PersonId, ReferralId, Source, SourceId,
    Timestamp, UpdateOutcome,
};
use care_person::{Demographics, Identifier, LocalId, NhsNumber, Person, PersonError};
use care_referral::{Referral, ReferralDetails, ReferralError};
use thiserror::Error;

use crate::ports::{Decision, RepoError};
use crate::{AccessError, Services};

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

impl Services {
    /// Checks that the actor may submit for `source` (role, and a feed account's own
    /// source only), auditing a refusal, and returns the registered source.
    async fn authorize_feed(
        &self,
        actor: &Actor,
        source: &SourceId,
    ) -> Result<Source, IngestError> {
        let now = self.now();
        let refusal =
            match self
                .ports
                .policy
                .decide(&Self::request(actor, Action::SubmitFeed, None))
            {
                Decision::Deny(reason) => Some(reason),
                Decision::Permit if actor.feed_source.as_ref() != Some(source) => {
                    Some(DenyReason::WrongSource)
                }
                Decision::Permit => None,
            };
        if let Some(reason) = refusal {
            let audited = self
                .audit_outcome(
                    actor,
                    now,
                    Action::SubmitFeed,
                    None,
                    None,
                    Some(format!("source:{source}")),
                    care_access_audit::Outcome::Denied(reason),
                )
                .await;
            return match audited {
                Err(AccessError::Unexpected(e)) => Err(IngestError::Unexpected(e)),
                _ => Err(IngestError::Forbidden(source.clone())),
            };
        }
        self.ports
            .sources
            .get(source)
            .await?
            .map(|info| info.source)
            .ok_or_else(|| IngestError::UnknownSource(source.clone()))
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
        let mut found: Option<Person> = None;
        for identifier in identity.identifiers() {
            if let Some(p) = self.ports.people.find_by_identifier(&identifier).await? {
                match &found {
                    Some(held) if held.id() != p.id() => {
                        return Err(IngestError::Conflict(
                            "the NHS number and the local id belong to different records; a merge is needed"
                                .into(),
                        ));
                    }
                    _ => found = Some(p),
                }
            }
        }
        Ok(found.unwrap_or_else(|| Person::new(PersonId::from_uuid(self.ports.ids.new_id()))))
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

    async fn note_activity(
        &self,
        source: &Source,
        outcome: UpdateOutcome,
    ) -> Result<(), IngestError> {
        self.ports
            .sources
            .record_activity(&source.id, self.now(), outcome)
            .await?;
        Ok(())
    }

    /// A source's statement of a person's demographics (HL7 ADT A01/A04/A08/A28/A31,
    /// FHIR Patient), with what it says about death.
    pub async fn ingest_demographics(
        &self,
        actor: &Actor,
        source: &SourceId,
        identity: &PersonIdentity,
        source_time: Timestamp,
        demographics: Demographics,
        death: DeathStatement,
    ) -> Result<UpdateOutcome, IngestError> {
        let source = self.authorize_feed(actor, source).await?;
        Self::check_local_ids(&source, [identity])?;
        let (_, outcome) = self
            .write_person(identity, |person| {
                let shown =
                    person.apply_demographics(source.clone(), source_time, demographics.clone())?;
                let died = apply_death(person, &source, source_time, death)?;
                Ok(combine(shown, died))
            })
            .await?;
        self.note_activity(&source, outcome).await?;
        Ok(outcome)
    }

    /// A source's statement about death alone.
    pub async fn ingest_death(
        &self,
        actor: &Actor,
        source: &SourceId,
        identity: &PersonIdentity,
        source_time: Timestamp,
        death: DeathStatement,
    ) -> Result<UpdateOutcome, IngestError> {
        let source = self.authorize_feed(actor, source).await?;
        Self::check_local_ids(&source, [identity])?;
        let (_, outcome) = self
            .write_person(identity, |person| {
                apply_death(person, &source, source_time, death)
            })
            .await?;
        self.note_activity(&source, outcome).await?;
        Ok(outcome)
    }

    /// A source says two of its records are one person (HL7 A40): the retired record is
    /// merged into the survivor with everything it held, its alerts and referrals follow,
    /// and later messages naming the retired identifier reach the survivor. Running the
    /// same merge again changes nothing.
    pub async fn ingest_merge(
        &self,
        actor: &Actor,
        source: &SourceId,
        survivor: &PersonIdentity,
        retired: &PersonIdentity,
        _source_time: Timestamp,
    ) -> Result<UpdateOutcome, IngestError> {
        let source = self.authorize_feed(actor, source).await?;
        Self::check_local_ids(&source, [survivor, retired])?;
        for _ in 0..WRITE_ATTEMPTS {
            let mut keep = self.resolve_person(survivor).await?;
            let mut gone = None;
            for identifier in retired.identifiers() {
                if let Some(p) = self.ports.people.find_by_identifier(&identifier).await? {
                    gone = Some(p);
                    break;
                }
            }
            let outcome = match gone {
                // Already merged: the survivor holds the retired identifiers.
                Some(p) if p.id() == keep.id() => UpdateOutcome::Unchanged,
                Some(mut gone) => {
                    for identifier in survivor.identifiers() {
                        keep.add_identifier(identifier)?;
                    }
                    keep.absorb(&mut gone)?;
                    match self.ports.people.save_merge(&keep, &gone).await {
                        Ok(()) => {}
                        Err(RepoError::Conflict | RepoError::IdentifierTaken(_)) => continue,
                        Err(other) => return Err(other.into()),
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
                // identifiers, so later messages that use them still find the person.
                None => {
                    let mut outcome = UpdateOutcome::Unchanged;
                    for identifier in survivor.identifiers().chain(retired.identifiers()) {
                        outcome = combine(outcome, keep.add_identifier(identifier)?);
                    }
                    if outcome == UpdateOutcome::Applied || keep.version() == 0 {
                        match self.ports.people.save(&keep).await {
                            Ok(_) => {}
                            Err(RepoError::Conflict | RepoError::IdentifierTaken(_)) => continue,
                            Err(other) => return Err(other.into()),
                        }
                    }
                    outcome
                }
            };
            self.note_activity(&source, outcome).await?;
            return Ok(outcome);
        }
        Err(IngestError::Busy)
    }

    /// A source's statement of an alert (HL7 AL1, FHIR Flag / AllergyIntolerance, CSV).
    pub async fn ingest_alert(
        &self,
        actor: &Actor,
        source: &SourceId,
        identity: &PersonIdentity,
        source_ref: &str,
        details: AlertDetails,
        source_time: Timestamp,
    ) -> Result<UpdateOutcome, IngestError> {
        let source = self.authorize_feed(actor, source).await?;
        Self::check_local_ids(&source, [identity])?;
        let (person, _) = self
            .write_person(identity, |_| Ok(UpdateOutcome::Unchanged))
            .await?;
        let outcome = match self
            .ports
            .alerts
            .find_by_source_ref(&source.id, source_ref)
            .await?
        {
            Some(mut alert) => {
                let mut outcome = alert
                    .apply(&source, details, source_time)
                    .map_err(|e| IngestError::Conflict(e.to_string()))?;
                if alert.person() != person.id() {
                    alert.reassign(person.id());
                    outcome = UpdateOutcome::Applied;
                }
                if outcome == UpdateOutcome::Applied {
                    self.ports.alerts.save(&alert).await?;
                }
                outcome
            }
            None => {
                let alert = Alert::new(
                    AlertId::from_uuid(self.ports.ids.new_id()),
                    person.id(),
                    source.clone(),
                    source_ref,
                    details,
                    source_time,
                )?;
                self.ports.alerts.save(&alert).await?;
                UpdateOutcome::Applied
            }
        };
        self.note_activity(&source, outcome).await?;
        Ok(outcome)
    }

    /// A source's statement of a referral (HL7 REF^I12–I14, FHIR ServiceRequest, CSV).
    pub async fn ingest_referral(
        &self,
        actor: &Actor,
        source: &SourceId,
        identity: &PersonIdentity,
        source_ref: &str,
        details: ReferralDetails,
        source_time: Timestamp,
    ) -> Result<UpdateOutcome, IngestError> {
        let source = self.authorize_feed(actor, source).await?;
        Self::check_local_ids(&source, [identity])?;
        let (person, _) = self
            .write_person(identity, |_| Ok(UpdateOutcome::Unchanged))
            .await?;
        let outcome = match self
            .ports
            .referrals
            .find_by_source_ref(&source.id, source_ref)
            .await?
        {
            Some(mut referral) => {
                let mut outcome = referral
                    .apply(&source, details, source_time)
                    .map_err(|e: ReferralError| IngestError::Conflict(e.to_string()))?;
                if referral.person() != person.id() {
                    referral.reassign(person.id());
                    outcome = UpdateOutcome::Applied;
                }
                if outcome == UpdateOutcome::Applied {
                    self.ports.referrals.save(&referral).await?;
                }
                outcome
            }
            None => {
                let referral = Referral::new(
                    ReferralId::from_uuid(self.ports.ids.new_id()),
                    person.id(),
                    source.clone(),
                    source_ref,
                    details,
                    source_time,
                )?;
                self.ports.referrals.save(&referral).await?;
                UpdateOutcome::Applied
            }
        };
        self.note_activity(&source, outcome).await?;
        Ok(outcome)
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
