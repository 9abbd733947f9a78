//! The application: the use cases of the care record and the ports they need.
//!
//! Every read takes the acting [`Actor`], asks the [`AccessPolicy`] port, appends the
//! audit event (permitted or denied) and only then loads and returns data, wrapped in a
//! view that carries the [`AuditReceipt`] (see [`views`]). Nothing here knows HTTP,
//! SQL, casbin or the system clock.

pub mod access;
mod consent;
mod ingest;
mod oversight;
pub mod ports;
mod reads;
pub mod views;

use std::sync::Arc;

use care_access_audit::{AuditEvent, Outcome};
use care_kernel::{Action, Actor, Date, DenyReason, InvalidValue, PersonId, Timestamp};
use care_person::Person;
use thiserror::Error;

pub use consent::ConsentCommand;
pub use ingest::{DeathStatement, IngestError, PersonIdentity};
pub use ports::{
    AccessPolicy, AccessRequest, AlertRepository, AuditError, AuditLog, Clock, ConsentRepository,
    Decision, IdGenerator, PersonRepository, ReferralRepository, RepoError, SourceInfo,
    SourceRegistry, SubjectState,
};
pub use reads::SEARCH_LIMIT;
pub use views::AuditReceipt;

/// Why a use case did not return data. What the caller sees is deliberately coarse:
/// an opted-out person, a person who died more than 8 years ago and an unknown id are
/// all `NotFound`; the audit records the real reason.
#[derive(Debug, Error)]
pub enum AccessError {
    /// No such person, as far as this actor may know.
    #[error("no record found")]
    NotFound,
    /// The person asked to be asked first: permission or an emergency must be asserted.
    #[error("this record needs permission or an emergency to be asserted, with a reason")]
    PermissionRequired,
    /// Only direct care is a lawful purpose.
    #[error("the care record may only be used for direct care")]
    PurposeRefused,
    /// The actor's role may not do this.
    #[error("your role does not allow this")]
    Forbidden,
    /// The request itself was invalid.
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
    /// The change conflicts with the record's state (e.g. consent already at that level).
    #[error("{0}")]
    Rejected(String),
    /// Something failed that the caller cannot fix.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<RepoError> for AccessError {
    fn from(e: RepoError) -> Self {
        AccessError::Unexpected(anyhow::Error::new(e))
    }
}

impl From<AuditError> for AccessError {
    fn from(e: AuditError) -> Self {
        AccessError::Unexpected(anyhow::Error::new(e))
    }
}

impl AccessError {
    fn from_denial(reason: DenyReason) -> Self {
        match reason {
            DenyReason::RoleNotPermitted | DenyReason::WrongSource => AccessError::Forbidden,
            DenyReason::PurposeNotDirectCare => AccessError::PurposeRefused,
            DenyReason::PermissionRequired => AccessError::PermissionRequired,
            DenyReason::OptedOut | DenyReason::DeceasedBeyondRetention | DenyReason::NotFound => {
                AccessError::NotFound
            }
            DenyReason::InvalidChange => {
                AccessError::Rejected("the change breaks a consent rule".into())
            }
        }
    }
}

/// The ports the application needs, as the composition root wires them.
#[derive(Clone)]
pub struct Ports {
    /// People.
    pub people: Arc<dyn PersonRepository>,
    /// Referrals.
    pub referrals: Arc<dyn ReferralRepository>,
    /// Alerts.
    pub alerts: Arc<dyn AlertRepository>,
    /// Consent.
    pub consent: Arc<dyn ConsentRepository>,
    /// The audit chain.
    pub audit: Arc<dyn AuditLog>,
    /// The access policy.
    pub policy: Arc<dyn AccessPolicy>,
    /// Feed sources.
    pub sources: Arc<dyn SourceRegistry>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Id generation.
    pub ids: Arc<dyn IdGenerator>,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ports { .. }")
    }
}

/// The use cases, over one set of ports. Cheap to clone; share one per process.
#[derive(Debug, Clone)]
pub struct Services {
    ports: Ports,
}

/// How many merge links a read follows before giving up (a loop would be a bug).
const MAX_MERGE_HOPS: usize = 16;

impl Services {
    /// The use cases over these ports.
    pub fn new(ports: Ports) -> Self {
        Self { ports }
    }

    /// The ports (for the composition root and tests).
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    fn now(&self) -> Timestamp {
        self.ports.clock.now()
    }

    /// Today's date for the record's rules (UTC).
    fn today(&self, now: Timestamp) -> Date {
        now.date_naive()
    }

    /// The live record for an id, following merges to the survivor.
    async fn load_live(&self, id: PersonId) -> Result<Option<Person>, RepoError> {
        let mut next = id;
        for _ in 0..MAX_MERGE_HOPS {
            match self.ports.people.get(next).await? {
                None => return Ok(None),
                Some(p) => match p.merged_into() {
                    None => return Ok(Some(p)),
                    Some(survivor) => next = survivor,
                },
            }
        }
        Ok(None)
    }

    /// What the policy needs to know of a person for this actor.
    async fn subject_state(
        &self,
        person: &Person,
        actor: &Actor,
        today: Date,
    ) -> Result<SubjectState, RepoError> {
        let consent = match person.nhs_number() {
            Some(n) => self.ports.consent.get(n).await?.map(|c| c.level()),
            None => None,
        };
        Ok(SubjectState {
            consent: consent.unwrap_or(care_consent::ConsentLevel::Participating),
            vital: person.vital_status(today),
            basis: actor.basis.as_ref().map(|b| b.kind()),
        })
    }

    fn event(
        actor: &Actor,
        at: Timestamp,
        action: Action,
        person: Option<PersonId>,
        subject: Option<SubjectState>,
        resource: Option<String>,
        outcome: Outcome,
    ) -> AuditEvent {
        // The asserted basis is recorded where it mattered: on an `ask_first` record.
        let basis = subject
            .filter(|s| s.consent == care_consent::ConsentLevel::AskFirst)
            .and(actor.basis.clone());
        AuditEvent {
            at,
            user: actor.user.clone(),
            organisation: actor.organisation.clone(),
            role: actor.role,
            client: actor.client,
            action,
            person,
            resource,
            purpose: actor.purpose.clone(),
            basis,
            outcome,
        }
    }

    fn request(actor: &Actor, action: Action, subject: Option<SubjectState>) -> AccessRequest {
        AccessRequest {
            role: actor.role,
            action,
            direct_care: actor.purpose.is_direct_care(),
            subject,
        }
    }

    /// The one gate every access passes: decide, append the audit event, and only then
    /// answer. A denial is audited and returned as an error; a failure to audit stops
    /// the access (fail closed).
    async fn gate(
        &self,
        actor: &Actor,
        at: Timestamp,
        action: Action,
        person: Option<PersonId>,
        subject: Option<SubjectState>,
        resource: Option<String>,
    ) -> Result<AuditReceipt, AccessError> {
        let decision = self
            .ports
            .policy
            .decide(&Self::request(actor, action, subject));
        let outcome = match decision {
            Decision::Permit => Outcome::Permitted,
            Decision::Deny(reason) => Outcome::Denied(reason),
        };
        self.audit_outcome(actor, at, action, person, subject, resource, outcome)
            .await
    }

    /// Appends one event with a known outcome; a denial comes back as its error.
    #[allow(clippy::too_many_arguments)]
    async fn audit_outcome(
        &self,
        actor: &Actor,
        at: Timestamp,
        action: Action,
        person: Option<PersonId>,
        subject: Option<SubjectState>,
        resource: Option<String>,
        outcome: Outcome,
    ) -> Result<AuditReceipt, AccessError> {
        let event = Self::event(actor, at, action, person, subject, resource, outcome);
        let chained = self.ports.audit.append(vec![event]).await?;
        let seq = chained
            .first()
            .map(|e| e.seq)
            .ok_or_else(|| anyhow::anyhow!("the audit log appended nothing"))?;
        match outcome {
            Outcome::Permitted => Ok(AuditReceipt::new(seq)),
            Outcome::Denied(reason) => {
                tracing::info!(target: "security", action = action.as_str(), role = actor.role.as_str(), reason = reason.as_str(), "access refused");
                Err(AccessError::from_denial(reason))
            }
        }
    }

    /// Audits an access to a person who is not in the record and returns the error to
    /// answer with. Decided with a neutral subject, so that role and purpose refusals
    /// read the same whether or not the person exists; otherwise audited as not found.
    async fn refuse_unknown(
        &self,
        actor: &Actor,
        at: Timestamp,
        action: Action,
        resource: Option<String>,
    ) -> AccessError {
        let request = Self::request(actor, action, Some(SubjectState::NEUTRAL));
        let outcome = match self.ports.policy.decide(&request) {
            Decision::Deny(
                reason @ (DenyReason::RoleNotPermitted | DenyReason::PurposeNotDirectCare),
            ) => Outcome::Denied(reason),
            _ => Outcome::Denied(DenyReason::NotFound),
        };
        match self
            .audit_outcome(actor, at, action, None, None, resource, outcome)
            .await
        {
            Err(e) => e,
            Ok(_) => AccessError::NotFound,
        }
    }

    /// Loads the live record an access is about and passes the gate for it (an unknown
    /// id goes through [`Self::refuse_unknown`]).
    async fn gate_person(
        &self,
        actor: &Actor,
        at: Timestamp,
        action: Action,
        id: PersonId,
        resource: Option<String>,
    ) -> Result<(Person, SubjectState, AuditReceipt), AccessError> {
        let today = self.today(at);
        let Some(person) = self.load_live(id).await? else {
            return Err(self.refuse_unknown(actor, at, action, resource).await);
        };
        let subject = self.subject_state(&person, actor, today).await?;
        let receipt = self
            .gate(
                actor,
                at,
                action,
                Some(person.id()),
                Some(subject),
                resource,
            )
            .await?;
        Ok((person, subject, receipt))
    }
}
