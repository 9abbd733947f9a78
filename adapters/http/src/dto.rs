//! The API's request and response bodies, and their conversion from the application's
//! views. Names are the wire names; dates are ISO 8601, times RFC 3339 UTC.

use care_access_audit::{AccessReportRow, Hash};
use care_alert::Alert;
use care_application::views::{
    AccessReport, ChainVerification, ConsentView, GpSummary, GpSummaryState, PersonSummary,
    ReferralList, SearchHit, SearchResults, SourceDemographics, SourceFreshness,
};
use care_application::{
    FeedReport, FeedStatus, MessageResult, Organisation, QuarantineSummary, QuarantinedMessage,
    UserSummary,
};
use care_consent::{ChangeKind, ConsentChange, Representative};
use care_kernel::{Date, SourceId, SourceKind, Timestamp, UpdateOutcome};
use care_person::{Demographics, Gender, NhsNumber, SourceRecord, Sourced};
use care_referral::Referral;
use poem_openapi::Object;
use poem_openapi::registry::MetaSchemaRef;
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use uuid::Uuid;

/// A string in a request body, and only a string: poem-openapi's `String` also takes a
/// JSON number or boolean (as its text), which the document, saying `string`, does not
/// allow. Its schema is `String`'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl std::ops::Deref for Text {
    type Target = String;

    fn deref(&self) -> &String {
        &self.0
    }
}

impl Type for Text {
    const IS_REQUIRED: bool = true;
    type RawValueType = String;
    type RawElementValueType = String;

    fn name() -> std::borrow::Cow<'static, str> {
        String::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        String::schema_ref()
    }

    fn as_raw_value(&self) -> Option<&String> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a String> + 'a> {
        Box::new(std::iter::once(&self.0))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl ParseFromJSON for Text {
    fn parse_from_json(value: Option<serde_json::Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            serde_json::Value::String(text) => Ok(Text(text)),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

impl ToJSON for Text {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::Value::String(self.0.clone()))
    }
}

fn gender(g: Gender) -> String {
    match g {
        Gender::Male => "male",
        Gender::Female => "female",
        Gender::Other => "other",
        Gender::Unknown => "unknown",
    }
    .to_owned()
}

fn hex(hash: &Hash) -> String {
    hash.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a shown value came from.
#[derive(Debug, Object)]
pub struct Provenance {
    /// The source system.
    pub source: String,
    /// Its kind (`national`, `gp_practice`, `acute`, `community`, `social_care`, `other`).
    pub source_kind: String,
    /// When the source said it (source time).
    pub as_of: Timestamp,
}

fn provenance<T>(s: &Sourced<T>) -> Provenance {
    Provenance {
        source: s.source.to_string(),
        source_kind: s.kind.as_str().to_owned(),
        as_of: s.as_of,
    }
}

/// A name with its provenance.
#[derive(Debug, Object)]
pub struct NameField {
    /// Family name.
    pub family: String,
    /// Given names.
    pub given: String,
    /// Its source.
    pub provenance: Provenance,
}

/// A date with its provenance.
#[derive(Debug, Object)]
pub struct DateField {
    /// The date.
    pub value: Date,
    /// Its source.
    pub provenance: Provenance,
}

/// A coded value with its provenance.
#[derive(Debug, Object)]
pub struct TextField {
    /// The value.
    pub value: String,
    /// Its source.
    pub provenance: Provenance,
}

/// An address with its provenance.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AddressField {
    /// Address lines.
    pub lines: Vec<String>,
    /// Postcode.
    pub postcode: Option<String>,
    /// Its source.
    pub provenance: Provenance,
}

/// A GP practice with its provenance.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct GpField {
    /// Practice code.
    pub code: String,
    /// Practice name.
    pub name: Option<String>,
    /// Its source.
    pub provenance: Provenance,
}

/// Demographics, each field with where it came from.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DemographicsDto {
    /// Name.
    pub name: Option<NameField>,
    /// Date of birth.
    pub birth_date: Option<DateField>,
    /// Gender.
    pub gender: Option<TextField>,
    /// Address.
    pub address: Option<AddressField>,
    /// Registered GP practice.
    pub registered_gp: Option<GpField>,
}

/// An alert.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AlertDto {
    /// Its id.
    pub id: String,
    /// `allergy`, `medication`, `environmental_hazard`, `safeguarding`,
    /// `communication_need` or `other`.
    pub category: String,
    /// What it says.
    pub description: String,
    /// `high`, `moderate`, `low` or `unknown`.
    pub severity: String,
    /// When it was recorded.
    pub recorded: Date,
    /// Active from.
    pub active_from: Date,
    /// Active until (none: open-ended).
    pub active_to: Option<Date>,
    /// The source system.
    pub source: String,
    /// Its kind.
    pub source_kind: String,
}

impl From<&Alert> for AlertDto {
    fn from(a: &Alert) -> Self {
        let d = a.details();
        Self {
            id: a.id().to_string(),
            category: d.category().as_str().to_owned(),
            description: d.description().to_owned(),
            severity: d.severity().as_str().to_owned(),
            recorded: d.recorded(),
            active_from: d.active_from(),
            active_to: d.active_to(),
            source: a.source().id.to_string(),
            source_kind: a.source().kind.as_str().to_owned(),
        }
    }
}

/// How recently a source told the record about this person.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct FreshnessDto {
    /// The source.
    pub source: String,
    /// Its kind.
    pub source_kind: String,
    /// Its name.
    pub name: Option<String>,
    /// Its newest statement about this person (source time).
    pub last_update_for_person: Timestamp,
    /// Its last message about anyone.
    pub last_message_at: Option<Timestamp>,
    /// Quiet for longer than expected: what it holds may be out of date.
    pub stale: bool,
}

impl From<&SourceFreshness> for FreshnessDto {
    fn from(f: &SourceFreshness) -> Self {
        Self {
            source: f.source.to_string(),
            source_kind: f.kind.as_str().to_owned(),
            name: f.name.clone(),
            last_update_for_person: f.last_update_for_person,
            last_message_at: f.last_message_at,
            stale: f.stale,
        }
    }
}

/// A person's record summary.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PersonSummaryDto {
    /// The record's id (the surviving record's, after a merge).
    pub id: String,
    /// NHS number (10 digits).
    pub nhs_number: Option<String>,
    /// NHS number as people write it (`943 476 5919`).
    pub nhs_number_formatted: Option<String>,
    /// Demographics with provenance.
    pub demographics: DemographicsDto,
    /// `alive` or `deceased`.
    pub vital_status: String,
    /// Date of death.
    pub date_of_death: Option<Date>,
    /// `participating` or `ask_first` (an `ask_first` record was opened on an asserted
    /// basis).
    pub consent: String,
    /// Partner alerts for the banner, most severe category first; absent when the
    /// role may not see them.
    pub banner: Option<Vec<AlertDto>>,
    /// Per-source freshness, most recent first.
    pub freshness: Vec<FreshnessDto>,
}

fn nhs(n: Option<&NhsNumber>) -> (Option<String>, Option<String>) {
    (n.map(NhsNumber::digits), n.map(NhsNumber::formatted))
}

impl From<&PersonSummary> for PersonSummaryDto {
    fn from(s: &PersonSummary) -> Self {
        let d = &s.demographics;
        let (nhs_number, nhs_number_formatted) = nhs(s.nhs_number.as_ref());
        Self {
            id: s.person.to_string(),
            nhs_number,
            nhs_number_formatted,
            demographics: DemographicsDto {
                name: d.name.as_ref().map(|n| NameField {
                    family: n.value.family().to_owned(),
                    given: n.value.given().to_owned(),
                    provenance: provenance(n),
                }),
                birth_date: d.birth_date.as_ref().map(|b| DateField {
                    value: b.value,
                    provenance: provenance(b),
                }),
                gender: d.gender.as_ref().map(|g| TextField {
                    value: gender(g.value),
                    provenance: provenance(g),
                }),
                address: d.address.as_ref().map(|a| AddressField {
                    lines: a.value.lines().to_vec(),
                    postcode: a.value.postcode().map(|p| p.as_str().to_owned()),
                    provenance: provenance(a),
                }),
                registered_gp: d.registered_gp.as_ref().map(|g| GpField {
                    code: g.value.code().to_owned(),
                    name: g.value.name().map(str::to_owned),
                    provenance: provenance(g),
                }),
            },
            vital_status: s.vital_status.as_str().to_owned(),
            date_of_death: s.date_of_death,
            consent: s.consent.as_str().to_owned(),
            banner: s
                .banner
                .as_ref()
                .map(|b| b.iter().map(AlertDto::from).collect()),
            freshness: s.freshness.iter().map(FreshnessDto::from).collect(),
        }
    }
}

/// One person found.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SearchHitDto {
    /// The record's id.
    pub id: String,
    /// NHS number.
    pub nhs_number: Option<String>,
    /// NHS number formatted `943 476 5919`.
    pub nhs_number_formatted: Option<String>,
    /// Family name.
    pub family_name: Option<String>,
    /// Given names.
    pub given_name: Option<String>,
    /// Date of birth.
    pub birth_date: Option<Date>,
    /// Gender.
    pub gender: Option<String>,
    /// Postcode.
    pub postcode: Option<String>,
    /// Date of death (deceased marker).
    pub date_of_death: Option<Date>,
    /// Opening the record needs permission or an emergency asserted.
    pub ask_first: bool,
}

impl From<&SearchHit> for SearchHitDto {
    fn from(h: &SearchHit) -> Self {
        let (nhs_number, nhs_number_formatted) = nhs(h.nhs_number.as_ref());
        Self {
            id: h.person.to_string(),
            nhs_number,
            nhs_number_formatted,
            family_name: h.name.as_ref().map(|n| n.family().to_owned()),
            given_name: h.name.as_ref().map(|n| n.given().to_owned()),
            birth_date: h.birth_date,
            gender: h.gender.map(gender),
            postcode: h.postcode.as_ref().map(|p| p.as_str().to_owned()),
            date_of_death: h.date_of_death,
            ask_first: h.ask_first,
        }
    }
}

/// Search results.
#[derive(Debug, Object)]
pub struct SearchResultsDto {
    /// The people found (at most 50).
    pub results: Vec<SearchHitDto>,
    /// More matched than shown: narrow the search.
    pub truncated: bool,
}

impl From<&SearchResults> for SearchResultsDto {
    fn from(r: &SearchResults) -> Self {
        Self {
            results: r.hits.iter().map(SearchHitDto::from).collect(),
            truncated: r.truncated,
        }
    }
}

/// A children's social-care referral.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ReferralDto {
    /// Its id.
    pub id: String,
    /// Date received.
    pub received: Date,
    /// Team or specialty referred to.
    pub team: String,
    /// Who referred (`police`, `school`, `health_visitor`, ...).
    pub referral_source: String,
    /// `awaiting_decision`, `accepted`, `closed_no_further_action`, `closed_transferred`.
    pub status: String,
    /// Date closed.
    pub closed: Option<Date>,
    /// Level of involvement (`early_help`, `child_in_need`, `child_protection_plan`,
    /// `looked_after_child`).
    pub involvement: Option<String>,
    /// The source system.
    pub source: String,
    /// When the source last said something about it.
    pub updated_at: Timestamp,
}

impl From<&Referral> for ReferralDto {
    fn from(r: &Referral) -> Self {
        let d = r.details();
        Self {
            id: r.id().to_string(),
            received: d.received(),
            team: d.team().to_owned(),
            referral_source: d.referral_source().as_str().to_owned(),
            status: d.status().as_str().to_owned(),
            closed: d.closed(),
            involvement: d.involvement().map(|i| i.as_str().to_owned()),
            source: r.source().id.to_string(),
            updated_at: r.source_time(),
        }
    }
}

/// A person's referrals.
#[derive(Debug, Object)]
pub struct ReferralListDto {
    /// The record's id.
    pub person: String,
    /// Most recently received first.
    pub referrals: Vec<ReferralDto>,
}

impl From<&ReferralList> for ReferralListDto {
    fn from(l: &ReferralList) -> Self {
        Self {
            person: l.person.to_string(),
            referrals: l.referrals.iter().map(ReferralDto::from).collect(),
        }
    }
}

/// The GP summary.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct GpSummaryDto {
    /// The record's id.
    pub person: String,
    /// `open`, or `closed_after_death` (the GP record closes when the person dies).
    pub state: String,
    /// GP alerts (empty when closed).
    pub alerts: Vec<AlertDto>,
    /// The date of death, when closed.
    pub date_of_death: Option<Date>,
}

impl From<&GpSummary> for GpSummaryDto {
    fn from(g: &GpSummary) -> Self {
        let (state, alerts, date_of_death) = match &g.state {
            GpSummaryState::Open { alerts } => {
                ("open", alerts.iter().map(AlertDto::from).collect(), None)
            }
            GpSummaryState::ClosedAfterDeath { date_of_death } => {
                ("closed_after_death", Vec::new(), Some(*date_of_death))
            }
        };
        Self {
            person: g.person.to_string(),
            state: state.to_owned(),
            alerts,
            date_of_death,
        }
    }
}

/// One source's own statement of a person's demographics.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SourceRecordDto {
    /// The source.
    pub source: String,
    /// Its kind.
    pub source_kind: String,
    /// Source time of its latest statement.
    pub as_of: Timestamp,
    /// Family name.
    pub family_name: Option<String>,
    /// Given names.
    pub given_name: Option<String>,
    /// Date of birth.
    pub birth_date: Option<Date>,
    /// Gender.
    pub gender: Option<String>,
    /// Address lines.
    pub address: Option<Vec<String>>,
    /// Postcode.
    pub postcode: Option<String>,
    /// Registered GP practice code.
    pub registered_gp: Option<String>,
}

fn source_record(r: &SourceRecord) -> SourceRecordDto {
    let d: &Demographics = &r.demographics;
    SourceRecordDto {
        source: r.source.id.to_string(),
        source_kind: r.source.kind.as_str().to_owned(),
        as_of: r.source_time,
        family_name: d.name.as_ref().map(|n| n.family().to_owned()),
        given_name: d.name.as_ref().map(|n| n.given().to_owned()),
        birth_date: d.birth_date,
        gender: d.gender.map(gender),
        address: d.address.as_ref().map(|a| a.lines().to_vec()),
        postcode: d
            .address
            .as_ref()
            .and_then(|a| a.postcode())
            .map(|p| p.as_str().to_owned()),
        registered_gp: d.registered_gp.as_ref().map(|g| g.code().to_owned()),
    }
}

/// Each source's statement of a person's demographics (data quality).
#[derive(Debug, Object)]
pub struct SourceDemographicsDto {
    /// The record's id.
    pub person: String,
    /// By source.
    pub records: Vec<SourceRecordDto>,
}

impl From<&SourceDemographics> for SourceDemographicsDto {
    fn from(s: &SourceDemographics) -> Self {
        Self {
            person: s.person.to_string(),
            records: s.records.iter().map(source_record).collect(),
        }
    }
}

/// A representative who opted a person out.
#[derive(Debug, Object)]
pub struct RepresentativeDto {
    /// Their name.
    pub name: String,
    /// Their relationship to the person.
    pub relationship: String,
    /// Reference of the evidence of their authority.
    pub evidence_reference: String,
    /// `not_requested`, `requested` or `verified`.
    pub evidence_status: String,
}

impl From<&Representative> for RepresentativeDto {
    fn from(r: &Representative) -> Self {
        Self {
            name: r.name().to_owned(),
            relationship: r.relationship().to_owned(),
            evidence_reference: r.evidence_reference().to_owned(),
            evidence_status: r.evidence_status().as_str().to_owned(),
        }
    }
}

/// One consent change.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ConsentChangeDto {
    /// When.
    pub at: Timestamp,
    /// Who recorded it.
    pub by: String,
    /// Their organisation.
    pub organisation: String,
    /// Their role.
    pub role: String,
    /// Level before.
    pub from: String,
    /// Level after.
    pub to: String,
    /// `opt_out_by_person`, `opt_out_by_representative`, `ask_first`, `opt_in`,
    /// `evidence_status`.
    pub kind: String,
    /// The representative, for an opt-out by one.
    pub representative: Option<RepresentativeDto>,
    /// The evidence status set, for an evidence update.
    pub evidence_status: Option<String>,
    /// Why.
    pub reason: String,
}

impl From<&ConsentChange> for ConsentChangeDto {
    fn from(c: &ConsentChange) -> Self {
        let (kind, representative, evidence_status) = match &c.kind {
            ChangeKind::OptOutByPerson => ("opt_out_by_person", None, None),
            ChangeKind::OptOutByRepresentative { representative } => (
                "opt_out_by_representative",
                Some(RepresentativeDto::from(representative)),
                None,
            ),
            ChangeKind::AskFirst => ("ask_first", None, None),
            ChangeKind::OptIn => ("opt_in", None, None),
            ChangeKind::EvidenceStatus { status } => {
                ("evidence_status", None, Some(status.as_str().to_owned()))
            }
        };
        Self {
            at: c.at,
            by: c.by.to_string(),
            organisation: c.organisation.to_string(),
            role: c.role.as_str().to_owned(),
            from: c.from.as_str().to_owned(),
            to: c.to.as_str().to_owned(),
            kind: kind.to_owned(),
            representative,
            evidence_status,
            reason: c.reason.clone(),
        }
    }
}

/// A person's consent, as the DPO sees it.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ConsentDto {
    /// The NHS number.
    pub nhs_number: String,
    /// The record it belongs to, if the care record holds one.
    pub person: Option<String>,
    /// `participating`, `ask_first` or `opted_out`.
    pub level: String,
    /// The representative of an opt-out in force.
    pub representative: Option<RepresentativeDto>,
    /// Every change, oldest first.
    pub history: Vec<ConsentChangeDto>,
}

impl From<&ConsentView> for ConsentDto {
    fn from(c: &ConsentView) -> Self {
        Self {
            nhs_number: c.nhs_number.digits(),
            person: c.person.map(|p| p.to_string()),
            level: c.level.as_str().to_owned(),
            representative: c.representative.as_ref().map(RepresentativeDto::from),
            history: c.history.iter().map(ConsentChangeDto::from).collect(),
        }
    }
}

/// A consent change to record.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ConsentChangeRequest {
    /// `opt_out`, `ask_first`, `opt_in` or `evidence_status`.
    pub change: Required<Text>,
    /// Why (kept in the history).
    pub reason: Required<Text>,
    /// For an opt-out by a representative.
    pub representative: Option<RepresentativeRequest>,
    /// For `evidence_status`: `requested` or `verified`.
    pub evidence_status: Option<Text>,
}

/// A representative acting for a person who lacks capacity.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RepresentativeRequest {
    /// Their name.
    pub name: Required<Text>,
    /// Their relationship to the person.
    pub relationship: Required<Text>,
    /// They confirm the person lacks capacity.
    pub lacks_capacity_confirmed: Required<bool>,
    /// They confirm their authority to act.
    pub authority_confirmed: Required<bool>,
    /// Reference of the evidence of their authority.
    pub evidence_reference: Required<Text>,
}

/// One organisation and role in an access report.
#[derive(Debug, Object)]
pub struct AccessReportRowDto {
    /// Organisation.
    pub organisation: String,
    /// Role.
    pub role: String,
    /// First permitted access in the period.
    pub first_access: Timestamp,
    /// Last permitted access in the period.
    pub last_access: Timestamp,
    /// Permitted accesses.
    pub accesses: u64,
    /// Of which under an asserted basis (ask first).
    pub with_basis: u64,
    /// Refused attempts.
    pub refused: u64,
}

impl From<&AccessReportRow> for AccessReportRowDto {
    fn from(r: &AccessReportRow) -> Self {
        Self {
            organisation: r.organisation.to_string(),
            role: r.role.as_str().to_owned(),
            first_access: r.first_access,
            last_access: r.last_access,
            accesses: r.accesses,
            with_basis: r.with_basis,
            refused: r.refused,
        }
    }
}

/// Who accessed a person's record over a period.
#[derive(Debug, Object)]
pub struct AccessReportDto {
    /// The record's id.
    pub person: String,
    /// Period start (inclusive).
    pub from: Timestamp,
    /// Period end (exclusive).
    pub to: Timestamp,
    /// One row per organisation and role.
    pub rows: Vec<AccessReportRowDto>,
}

impl From<&AccessReport> for AccessReportDto {
    fn from(r: &AccessReport) -> Self {
        Self {
            person: r.person.to_string(),
            from: r.from,
            to: r.to,
            rows: r.rows.iter().map(AccessReportRowDto::from).collect(),
        }
    }
}

/// Quotes a CSV field when it needs it (RFC 4180), and defuses spreadsheet formulas.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The access report as CSV (RFC 4180, with a header row).
pub fn access_report_csv(r: &AccessReport) -> String {
    let mut out =
        String::from("organisation,role,first_access,last_access,accesses,with_basis,refused\r\n");
    for row in &r.rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{}\r\n",
            csv_field(row.organisation.as_str()),
            csv_field(row.role.as_str()),
            row.first_access.to_rfc3339(),
            row.last_access.to_rfc3339(),
            row.accesses,
            row.with_basis,
            row.refused
        ));
    }
    out
}

/// The result of verifying the audit chain.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct VerificationDto {
    /// Whether every event verified against the head.
    pub valid: bool,
    /// Events in the chain (by its head).
    pub events: u64,
    /// The head's last hash (hex).
    pub head_hash: String,
    /// The position of the first bad event, when broken.
    pub first_bad_position: Option<u64>,
    /// What is wrong, when broken.
    pub problem: Option<String>,
}

impl From<&ChainVerification> for VerificationDto {
    fn from(v: &ChainVerification) -> Self {
        let (valid, first_bad_position, problem) = match &v.result {
            Ok(_) => (true, None, None),
            Err(b) => (false, Some(b.position()), Some(b.to_string())),
        };
        Self {
            valid,
            events: v.head.len,
            head_hash: hex(&v.head.last_hash),
            first_bad_position,
            problem,
        }
    }
}

/// A field the request must carry: the document lists it as required, and a missing
/// one (or `null`) is refused by the handler, by name, through [`required`]
/// (poem-openapi's own error for a missing field does not name it). What it holds, when
/// present, is parsed as `T`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Required<T>(pub Option<T>);

impl<T: Type> Type for Required<T> {
    const IS_REQUIRED: bool = true;
    type RawValueType = T::RawValueType;
    type RawElementValueType = T::RawElementValueType;

    fn name() -> std::borrow::Cow<'static, str> {
        T::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut poem_openapi::registry::Registry) {
        T::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        self.0.as_ref().and_then(T::as_raw_value)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        match &self.0 {
            Some(value) => value.raw_element_iter(),
            None => Box::new(std::iter::empty()),
        }
    }

    fn is_none(&self) -> bool {
        self.0.is_none()
    }
}

impl<T: ParseFromJSON> ParseFromJSON for Required<T> {
    fn parse_from_json(value: Option<serde_json::Value>) -> ParseResult<Self> {
        match value {
            None | Some(serde_json::Value::Null) => Ok(Required(None)),
            value => T::parse_from_json(value)
                .map(|v| Required(Some(v)))
                .map_err(ParseError::propagate),
        }
    }
}

impl<T: ToJSON> ToJSON for Required<T> {
    fn to_json(&self) -> Option<serde_json::Value> {
        self.0.as_ref().and_then(ToJSON::to_json)
    }
}

/// The value of a [`Required`] field, or a problem naming it.
pub fn required<'a, T>(
    value: &'a Required<T>,
    field: &str,
) -> Result<&'a T, crate::problem::Problem> {
    value
        .0
        .as_ref()
        .ok_or_else(|| crate::problem::Problem::invalid(field, "is required"))
}

/// A sign-in.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SignInRequest {
    /// Account name.
    pub username: Required<Text>,
    /// Password.
    #[oai(write_only)]
    pub password: Required<Text>,
}

/// A new session.
#[derive(Debug, Object)]
pub struct SessionDto {
    /// The bearer token (send as `Authorization: Bearer <token>`; keep it in memory only).
    pub token: String,
    /// Account name.
    pub user: String,
    /// Role.
    pub role: String,
    /// Organisation.
    pub organisation: String,
    /// The session ends after this many seconds without a request.
    pub idle_timeout_seconds: u64,
    /// The session ends at this time however it is used.
    pub expires_at: Timestamp,
}

/// The current session.
#[derive(Debug, Object)]
pub struct WhoAmIDto {
    /// Account name.
    pub user: String,
    /// Role.
    pub role: String,
    /// Organisation.
    pub organisation: String,
    /// When the session ends if no further request is made.
    pub ends_at: Timestamp,
}

/// A user.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct UserDto {
    /// Account name.
    pub username: String,
    /// Name.
    pub display_name: String,
    /// Organisation.
    pub organisation: String,
    /// Role.
    pub role: String,
    /// Source, for feed accounts.
    pub feed_source: Option<String>,
    /// Disabled.
    pub disabled: bool,
    /// Created at.
    pub created_at: Timestamp,
}

impl From<&UserSummary> for UserDto {
    fn from(u: &UserSummary) -> Self {
        Self {
            username: u.user.to_string(),
            display_name: u.display_name.clone(),
            organisation: u.organisation.to_string(),
            role: u.role.as_str().to_owned(),
            feed_source: u.feed_source.as_ref().map(SourceId::to_string),
            disabled: u.disabled,
            created_at: u.created_at,
        }
    }
}

/// A user to create.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct NewUserRequest {
    /// Account name (letters, digits, `-`, `_`, `.`, `@`).
    pub username: Required<Text>,
    /// Name.
    pub display_name: Required<Text>,
    /// Organisation code (must exist).
    pub organisation: Required<Text>,
    /// Role.
    pub role: Required<Text>,
    /// For feed accounts: their source.
    pub feed_source: Option<Text>,
    /// Initial password (≥ 12 characters, not common, not containing the username).
    #[oai(write_only)]
    pub password: Required<Text>,
}

/// A new password.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PasswordRequest {
    /// The new password.
    #[oai(write_only)]
    pub password: Required<Text>,
}

/// An organisation.
#[derive(Debug, Object)]
pub struct OrganisationDto {
    /// Code.
    pub id: String,
    /// Name.
    pub name: String,
    /// Created at.
    pub created_at: Timestamp,
}

impl From<&Organisation> for OrganisationDto {
    fn from(o: &Organisation) -> Self {
        Self {
            id: o.id.to_string(),
            name: o.name.clone(),
            created_at: o.created_at,
        }
    }
}

/// An organisation to create.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct NewOrganisationRequest {
    /// Code (e.g. an ODS code).
    pub id: Required<Text>,
    /// Name.
    pub name: Required<Text>,
}

/// One feed source's status.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct FeedSourceDto {
    /// Source id.
    pub source: String,
    /// Kind.
    pub source_kind: String,
    /// Name.
    pub name: String,
    /// Expected interval between messages, in seconds.
    pub expected_interval_seconds: u64,
    /// Last message received.
    pub last_message_at: Option<Timestamp>,
    /// Messages applied.
    pub applied: u64,
    /// Messages that changed nothing.
    pub unchanged: u64,
    /// Messages set aside in the quarantine.
    pub quarantined: u64,
    /// Quiet for longer than expected.
    pub stale: bool,
}

/// Feed status.
#[derive(Debug, Object)]
pub struct FeedStatusDto {
    /// By source.
    pub sources: Vec<FeedSourceDto>,
}

impl From<&FeedStatus> for FeedStatusDto {
    fn from(f: &FeedStatus) -> Self {
        Self {
            sources: f
                .sources
                .iter()
                .map(|s| FeedSourceDto {
                    source: s.info.source.id.to_string(),
                    source_kind: source_kind(s.info.source.kind),
                    name: s.info.name.clone(),
                    expected_interval_seconds: s.info.expected_interval.as_secs(),
                    last_message_at: s.info.last_message_at,
                    applied: s.info.applied,
                    unchanged: s.info.unchanged,
                    quarantined: s.info.quarantined,
                    stale: s.stale,
                })
                .collect(),
        }
    }
}

fn source_kind(k: SourceKind) -> String {
    k.as_str().to_owned()
}

/// Service health.
#[derive(Debug, Object)]
pub struct HealthDto {
    /// `ok`.
    pub status: String,
}

/// A security event (sign-ins, sign-outs, network refusals, rate limiting).
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SecurityEventDto {
    /// When.
    pub at: Timestamp,
    /// `sign_in_succeeded`, `sign_in_failed`, `sign_in_locked`, `signed_out`,
    /// `network_refused` or `rate_limited`.
    pub kind: String,
    /// The account concerned (for a failed sign-in, the name tried).
    pub user: Option<String>,
    /// The client address.
    pub client: String,
    /// Detail (never a secret).
    pub detail: Option<String>,
}

impl From<&care_application::SecurityEvent> for SecurityEventDto {
    fn from(e: &care_application::SecurityEvent) -> Self {
        Self {
            at: e.at,
            kind: e.kind.as_str().to_owned(),
            user: e.user.as_ref().map(|u| u.to_string()),
            client: e.client.to_string(),
            detail: e.detail.clone(),
        }
    }
}

/// What became of one submitted message.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct MessageReportDto {
    /// Its position in the submission, from 0.
    pub index: u64,
    /// What names it to its sender (HL7 MSH-10, a FHIR `type/id`), when anything does.
    pub reference: Option<String>,
    /// `applied`, `unchanged` or `quarantined`.
    pub outcome: String,
    /// The quarantine entry, for a quarantined message.
    pub quarantine_id: Option<Uuid>,
    /// Why it was quarantined.
    pub reason: Option<String>,
}

/// What became of a submission: every message, applied, unchanged or quarantined.
#[derive(Debug, Object)]
pub struct FeedReportDto {
    /// Messages applied.
    pub applied: u64,
    /// Messages that changed nothing (repeats, older than what is held).
    pub unchanged: u64,
    /// Messages set aside with their reason.
    pub quarantined: u64,
    /// Each message, in order.
    pub messages: Vec<MessageReportDto>,
    /// About the submission as a whole (none of them stopped a message).
    pub warnings: Vec<String>,
}

impl From<&FeedReport> for FeedReportDto {
    fn from(r: &FeedReport) -> Self {
        let (applied, unchanged, quarantined) = r.counts();
        Self {
            applied: applied as u64,
            unchanged: unchanged as u64,
            quarantined: quarantined as u64,
            messages: r
                .messages
                .iter()
                .map(|m| {
                    let (outcome, quarantine_id, reason) = match &m.outcome {
                        MessageResult::Applied => ("applied", None, None),
                        MessageResult::Unchanged => ("unchanged", None, None),
                        MessageResult::Quarantined { id, reason } => {
                            ("quarantined", Some(*id), Some(reason.clone()))
                        }
                    };
                    MessageReportDto {
                        index: m.index as u64,
                        reference: m.reference.clone(),
                        outcome: outcome.to_owned(),
                        quarantine_id,
                        reason,
                    }
                })
                .collect(),
            warnings: r.warnings.clone(),
        }
    }
}

fn outcome_name(outcome: UpdateOutcome) -> String {
    match outcome {
        UpdateOutcome::Applied => "applied",
        UpdateOutcome::Unchanged | UpdateOutcome::Stale => "unchanged",
    }
    .to_owned()
}

/// A quarantined feed message, without its content.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct QuarantineEntryDto {
    /// Its id.
    pub id: Uuid,
    /// The source it came from.
    pub source: String,
    /// `hl7v2`, `fhir`, `csv_referrals` or `csv_alerts`.
    pub format: String,
    /// When it arrived.
    pub received_at: Timestamp,
    /// What names it to its sender.
    pub reference: Option<String>,
    /// Why it was not applied.
    pub reason: String,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// When it was re-submitted and applied (absent while open).
    pub resolved_at: Option<Timestamp>,
    /// Who re-submitted it.
    pub resolved_by: Option<String>,
    /// What applying it did.
    pub resolution: Option<String>,
}

impl From<&QuarantineSummary> for QuarantineEntryDto {
    fn from(m: &QuarantineSummary) -> Self {
        Self {
            id: m.id,
            source: m.source.to_string(),
            format: m.format.as_str().to_owned(),
            received_at: m.received_at,
            reference: m.reference.clone(),
            reason: m.reason.clone(),
            size_bytes: m.size,
            resolved_at: m.resolution.as_ref().map(|r| r.at),
            resolved_by: m.resolution.as_ref().map(|r| r.by.to_string()),
            resolution: m.resolution.as_ref().map(|r| outcome_name(r.outcome)),
        }
    }
}

/// A quarantined feed message with its content (audited when read).
#[derive(Debug, Object)]
pub struct QuarantineMessageDto {
    /// The entry.
    pub entry: QuarantineEntryDto,
    /// The message as text (bytes that are not UTF-8 shown as U+FFFD).
    pub raw: String,
    /// Whether the message was valid UTF-8 (else `raw` is not byte-exact).
    pub raw_is_utf8: bool,
}

impl From<&QuarantinedMessage> for QuarantineMessageDto {
    fn from(m: &QuarantinedMessage) -> Self {
        Self {
            entry: QuarantineEntryDto::from(&QuarantineSummary::from(m)),
            raw: String::from_utf8_lossy(&m.raw).into_owned(),
            raw_is_utf8: std::str::from_utf8(&m.raw).is_ok(),
        }
    }
}

/// A re-submitted message, applied.
#[derive(Debug, Object)]
pub struct ResubmittedDto {
    /// The entry, now resolved.
    pub id: Uuid,
    /// `applied` or `unchanged`.
    pub outcome: String,
}

impl ResubmittedDto {
    /// The answer for an entry and what applying it did.
    pub fn new(id: Uuid, outcome: UpdateOutcome) -> Self {
        Self {
            id,
            outcome: outcome_name(outcome),
        }
    }
}
