//! What the read use cases return. Every view carries an [`AuditReceipt`], a private
//! field that only this crate can fill, and only after the access was decided and its
//! audit event appended. So no adapter can build a response from data that has not passed
//! the decision: there is no other way to get one of these.

use care_access_audit::{AccessReportRow, ChainBreak, ChainHead, VerifiedChain};
use care_alert::Alert;
use care_consent::{ConsentChange, ConsentLevel, Representative};
use care_kernel::{Date, PersonId, SourceId, SourceKind, Timestamp};
use care_person::{
    Gender, NhsNumber, PersonName, Postcode, ResolvedDemographics, SourceRecord, VitalStatus,
};
use care_referral::Referral;

/// Proof that an access was decided and its audit event durably appended: the
/// position of the (first) event in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditReceipt {
    seq: u64,
}

impl AuditReceipt {
    pub(crate) fn new(seq: u64) -> Self {
        Self { seq }
    }

    /// The audit event's position in the chain.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// One person found by a search: enough to pick the right person, no more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    /// The person's id, to open the record with.
    pub person: PersonId,
    /// NHS number.
    pub nhs_number: Option<NhsNumber>,
    /// Name shown.
    pub name: Option<PersonName>,
    /// Date of birth shown.
    pub birth_date: Option<Date>,
    /// Gender shown.
    pub gender: Option<Gender>,
    /// Postcode shown.
    pub postcode: Option<Postcode>,
    /// Date of death, for the deceased marker.
    pub date_of_death: Option<Date>,
    /// Whether opening the record needs permission or an emergency asserted.
    pub ask_first: bool,
}

/// The people a search found and the actor may see.
#[derive(Debug, Clone)]
pub struct SearchResults {
    /// The hits, in a stable order.
    pub hits: Vec<SearchHit>,
    /// Whether more matched than the limit.
    pub truncated: bool,
    pub(crate) receipt: AuditReceipt,
}

impl SearchResults {
    /// The audit receipt.
    pub fn receipt(&self) -> AuditReceipt {
        self.receipt
    }
}

/// How recently a source has told the record about this person, and whether the source
/// itself has gone quiet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFreshness {
    /// The source.
    pub source: SourceId,
    /// Its kind.
    pub kind: SourceKind,
    /// Its display name, when registered.
    pub name: Option<String>,
    /// The newest source time of what it said about this person.
    pub last_update_for_person: Timestamp,
    /// When its last message (about anyone) arrived.
    pub last_message_at: Option<Timestamp>,
    /// Quiet for longer than its expected interval.
    pub stale: bool,
}

/// A person's record summary: demographics with provenance, banner alerts, freshness.
#[derive(Debug, Clone)]
pub struct PersonSummary {
    /// The person (the survivor, when the id asked for was merged away).
    pub person: PersonId,
    /// NHS number.
    pub nhs_number: Option<NhsNumber>,
    /// Demographics, each field with its source.
    pub demographics: ResolvedDemographics,
    /// Alive or deceased.
    pub vital_status: VitalStatus,
    /// Date of death, if deceased.
    pub date_of_death: Option<Date>,
    /// The consent level (an `ask_first` record is flagged as such).
    pub consent: ConsentLevel,
    /// Banner alerts in display order; `None` when the role may not see them.
    pub banner: Option<Vec<Alert>>,
    /// Per-source freshness, most recent first.
    pub freshness: Vec<SourceFreshness>,
    pub(crate) receipt: AuditReceipt,
}

impl PersonSummary {
    /// The audit receipt.
    pub fn receipt(&self) -> AuditReceipt {
        self.receipt
    }
}

/// A person's children's social-care referrals.
#[derive(Debug, Clone)]
pub struct ReferralList {
    /// The person.
    pub person: PersonId,
    /// Most recently received first.
    pub referrals: Vec<Referral>,
    pub(crate) receipt: AuditReceipt,
}

impl ReferralList {
    /// The audit receipt.
    pub fn receipt(&self) -> AuditReceipt {
        self.receipt
    }
}

/// The GP summary page.
#[derive(Debug, Clone)]
pub enum GpSummaryState {
    /// GP alerts, active first.
    Open {
        /// The GP practice alerts.
        alerts: Vec<Alert>,
    },
    /// The GP record closed when the person died.
    ClosedAfterDeath {
        /// Date of death.
        date_of_death: Date,
    },
}

/// The GP summary of a person.
#[derive(Debug, Clone)]
pub struct GpSummary {
    /// The person.
    pub person: PersonId,
    /// Open with alerts, or closed after death.
    pub state: GpSummaryState,
    pub(crate) receipt: AuditReceipt,
}

impl GpSummary {
    /// The audit receipt.
    pub fn receipt(&self) -> AuditReceipt {
        self.receipt
    }
}

/// Each source's own statement of a person's demographics (for the System Manager's
/// data-quality work: which system is wrong).
#[derive(Debug, Clone)]
pub struct SourceDemographics {
    /// The person.
    pub person: PersonId,
    /// Every source's latest statement.
    pub records: Vec<SourceRecord>,
    pub(crate) receipt: AuditReceipt,
}

impl SourceDemographics {
    /// The audit receipt.
    pub fn receipt(&self) -> AuditReceipt {
        self.receipt
    }
}

/// A person's identity only, as the DPO needs it to find them.
#[derive(Debug, Clone)]
pub struct IdentityView {
    /// Name, birth date, postcode, NHS number.
    pub identity: SearchHit,
    pub(crate) receipt: AuditReceipt,
}

impl IdentityView {
    /// The audit receipt.
    pub fn receipt(&self) -> AuditReceipt {
        self.receipt
    }
}

/// A person's consent as the DPO sees it.
#[derive(Debug, Clone)]
pub struct ConsentView {
    /// The NHS number asked about.
    pub nhs_number: NhsNumber,
    /// The record it belongs to, if the care record holds one.
    pub person: Option<PersonId>,
    /// The level in force.
    pub level: ConsentLevel,
    /// The representative of an opt-out in force.
    pub representative: Option<Representative>,
    /// Every change, oldest first.
    pub history: Vec<ConsentChange>,
    pub(crate) receipt: AuditReceipt,
}

impl ConsentView {
    /// The audit receipt.
    pub fn receipt(&self) -> AuditReceipt {
        self.receipt
    }
}

/// An access report for one person over a period.
#[derive(Debug, Clone)]
pub struct AccessReport {
    /// The person.
    pub person: PersonId,
    /// Start of the period (inclusive).
    pub from: Timestamp,
    /// End of the period (exclusive).
    pub to: Timestamp,
    /// One row per organisation and role.
    pub rows: Vec<AccessReportRow>,
    pub(crate) receipt: AuditReceipt,
}

impl AccessReport {
    /// The audit receipt.
    pub fn receipt(&self) -> AuditReceipt {
        self.receipt
    }
}

/// The result of verifying the audit chain.
#[derive(Debug, Clone)]
pub struct ChainVerification {
    /// The head checked against.
    pub head: ChainHead,
    /// The verified chain, or where and how it is broken.
    pub result: Result<VerifiedChain, ChainBreak>,
    pub(crate) receipt: AuditReceipt,
}

impl ChainVerification {
    /// The audit receipt.
    pub fn receipt(&self) -> AuditReceipt {
        self.receipt
    }
}
