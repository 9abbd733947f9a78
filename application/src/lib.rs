//! The application: the use cases of the care record and the ports they need.
//!
//! Every read takes the acting [`Actor`], asks the [`AccessPolicy`] port, appends the
//! audit event (permitted or denied) and only then loads and returns data, wrapped in a
//! view that carries the [`AuditReceipt`] (see [`views`]). Nothing here knows HTTP,
//! SQL, casbin or the system clock.

pub mod access;
mod accounts;
mod consent;
mod gate;
mod ingest;
mod oversight;
pub mod ports;
mod quarantine;
mod reads;
pub mod views;

use std::sync::Arc;

use care_kernel::{Actor, Date, DenyReason, InvalidValue, PersonId, Timestamp};
use care_person::Person;
use thiserror::Error;

pub use accounts::{
    AccountSettings, Accounts, Administered, AuthError, Authenticated, IdentityPorts, NewUser,
    SignInError, SignedIn, UserSummary, hash_token,
};
pub use care_account::{LockoutPolicy, SessionEnd, SessionPolicy};
pub use consent::ConsentCommand;
pub use ingest::{
    DeathStatement, FeedReport, FeedSession, FeedUnit, IngestCommand, IngestError, MessageReport,
    MessageResult, PersonIdentity, Rejected, ResubmitError,
};
pub use oversight::{FeedSourceStatus, FeedStatus};
pub use ports::{
    AccessPolicy, AccessRequest, AccountStore, AlertRepository, AuditError, AuditLog, Clock,
    ConsentRepository, Decision, Durable, FeedFormat, FeedStores, HeldRecord, IdGenerator,
    ItemStores, MessageOutcome, Organisation, PasswordHasher, PersonRepository, QuarantineFilter,
    QuarantineStore, QuarantineSummary, QuarantinedMessage, ReferralRepository, RepoError,
    Resolution, SecurityEvent, SecurityEventKind, SecurityLog, SessionRecord, SessionStore,
    SourceInfo, SourceRegistry, SubjectState, TokenHash, TokenSource, Unit, UnitOfWork,
    UserAccount, durable_already,
};
pub use quarantine::{QUARANTINE_PAGE_MAX, QuarantineList, Resubmission, WITHHELD};
pub use reads::SEARCH_LIMIT;
pub use views::AuditReceipt;

use gate::Access;

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
    /// Feed messages that could not be applied.
    pub quarantine: Arc<dyn QuarantineStore>,
    /// Units of work over the feed stores above.
    pub units: Arc<dyn UnitOfWork>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Id generation.
    pub ids: Arc<dyn IdGenerator>,
}

impl Ports {
    /// The feed stores among these ports.
    pub fn feed_stores(&self) -> FeedStores {
        FeedStores {
            people: self.people.clone(),
            referrals: self.referrals.clone(),
            alerts: self.alerts.clone(),
            sources: self.sources.clone(),
            quarantine: self.quarantine.clone(),
        }
    }

    /// These ports with the feed stores replaced (by a unit of work's).
    pub fn with_feed_stores(mut self, stores: FeedStores) -> Self {
        self.people = stores.people;
        self.referrals = stores.referrals;
        self.alerts = stores.alerts;
        self.sources = stores.sources;
        self.quarantine = stores.quarantine;
        self
    }
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

/// A person's consent level: what `consent` (held for their NHS number) says, or
/// participating when none is held. A consent for another number says nothing of them.
fn consent_level(
    person: &Person,
    consent: Option<&care_consent::Consent>,
) -> care_consent::ConsentLevel {
    consent
        .filter(|c| Some(c.nhs_number()) == person.nhs_number())
        .map_or(care_consent::ConsentLevel::Participating, |c| c.level())
}

/// What the policy needs to know of a person with this consent level, for this actor.
fn subject_of(
    person: &Person,
    consent: care_consent::ConsentLevel,
    actor: &Actor,
    today: Date,
) -> SubjectState {
    SubjectState {
        consent,
        vital: person.vital_status(today),
        basis: actor.basis.as_ref().map(|b| b.kind()),
    }
}

/// Which of a record's items a read wants with the record.
#[derive(Debug, Clone, Copy)]
struct WantedItems {
    alerts: bool,
    referrals: bool,
}

impl WantedItems {
    const NONE: Self = Self {
        alerts: false,
        referrals: false,
    };
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

    /// The live record for an id, following merges to the survivor, with its consent
    /// level, and the items `wanted` that [`PersonRepository::get_with_items`] reads
    /// (none for a record with a consent or merged away): read together, one query on a
    /// database.
    async fn load_live(
        &self,
        id: PersonId,
        wanted: WantedItems,
    ) -> Result<Option<(HeldRecord, care_consent::ConsentLevel)>, RepoError> {
        let (people, consent) = (&self.ports.people, self.ports.consent.as_ref());
        let stores = ItemStores {
            consent,
            alerts: wanted.alerts.then_some(self.ports.alerts.as_ref()),
            referrals: wanted.referrals.then_some(self.ports.referrals.as_ref()),
        };
        let mut next = id;
        for _ in 0..MAX_MERGE_HOPS {
            let read = if wanted.alerts || wanted.referrals {
                people.get_with_items(next, stores).await?
            } else {
                people
                    .get_with_consent(next, consent)
                    .await?
                    .map(|(person, consent)| HeldRecord {
                        person,
                        consent,
                        alerts: None,
                        referrals: None,
                    })
            };
            let Some(held) = read else {
                return Ok(None);
            };
            match held.person.merged_into() {
                None => {
                    let level = consent_level(&held.person, held.consent.as_ref());
                    return Ok(Some((held, level)));
                }
                Some(survivor) => next = survivor,
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
            Some(n) => self.ports.consent.get(n).await?,
            None => None,
        };
        Ok(subject_of(
            person,
            consent_level(person, consent.as_ref()),
            actor,
            today,
        ))
    }

    /// Loads the live record an access is about and passes the gate for it (an unknown
    /// id goes through [`Services::refuse_unknown`]).
    async fn gate_person(
        &self,
        access: Access<'_>,
        id: PersonId,
    ) -> Result<(Person, SubjectState, AuditReceipt), AccessError> {
        let (held, subject, receipt) = self.gate_record(access, id, WantedItems::NONE).await?;
        Ok((held.person, subject, receipt))
    }

    /// [`Self::gate_person`], with the items `wanted` read in the same query where
    /// [`PersonRepository::get_with_items`] reads them (a record summary shows them;
    /// dropped unseen if the gate refuses).
    async fn gate_record(
        &self,
        access: Access<'_>,
        id: PersonId,
        wanted: WantedItems,
    ) -> Result<(HeldRecord, SubjectState, AuditReceipt), AccessError> {
        self.refuse_early(&access).await?;
        let today = self.today(access.at);
        // Person and consent in one read: on a database an unknown id and a hidden
        // (opted-out) person cost the same one query before they are refused, no item of
        // theirs read (in memory, one lookup against two: nanoseconds, and the HTTP
        // adapter holds every no-record answer to the same floor anyway). A person dead
        // for over 8 years without a consent has the items wanted read and dropped: the
        // floor covers that.
        let Some((held, consent)) = self.load_live(id, wanted).await? else {
            return Err(self.refuse_unknown(&access).await);
        };
        let subject = subject_of(&held.person, consent, access.actor, today);
        let receipt = self
            .gate(&access.about(Some(held.person.id()), Some(subject)))
            .await?;
        Ok((held, subject, receipt))
    }
}
