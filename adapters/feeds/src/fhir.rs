//! FHIR R4 JSON resources mapped to ingest commands, and the intake of a FHIR body (one
//! resource or a Bundle of any type) through [`Intake::fhir`].
//!
//! | resource | command |
//! |---|---|
//! | Patient | demographics (identifier, name, birthDate, gender, address, generalPractitioner) and what `deceased[x]` says |
//! | ServiceRequest | a referral, named by its `id`, about its `subject` |
//! | Flag | an alert, named `Flag/{id}`, about its `subject` |
//! | AllergyIntolerance | an allergy alert, named `AllergyIntolerance/{id}`, about its `patient` |
//!
//! Any other resource type is an error, so the entry is quarantined, never dropped.
//! The types here are plain serde types holding only the fields read; everything else
//! in a resource is ignored (no FHIR crate: see `shared/STACK.md`).
//!
//! **Identifiers.** An identifier whose system is the NHS number's
//! (`https://fhir.nhs.uk/Id/nhs-number`, its `http` form, `fhir.nhs.net` and the NHS
//! number OID) is the NHS number and must pass its check digit — unless the UK Core
//! verification-status extension says it is not verified (any code but `01`), in which
//! case it is not used to find the person at all: matching on an untraced number could
//! join two people. The Patient's own `id` is the source's local id (else its first other
//! identifier, preferring type `MR`), so that a reference `Patient/{id}` from a later
//! resource finds the same person. US and other foreign identifiers are never NHS
//! numbers: they are ignored, and the resource id serves.
//!
//! **References to the person** (`ServiceRequest.subject`, `Flag.subject`,
//! `AllergyIntolerance.patient`), tried in order: a Patient entry of the same submission
//! (by its `fullUrl`, or by `Patient/{id}`); the reference's `identifier` when it is an
//! NHS number; `Patient/{id}` (relative, or an absolute URL ending so, taken to be the
//! sender's own server) as the source's local id. A `urn:uuid:` that is not an entry of
//! the submission, a contained resource or a reference to anything but a Patient is an
//! error naming the field.
//!
//! **Source time** (what orders updates): the resource's `meta.lastUpdated`, else the
//! Bundle's `timestamp`, else the Bundle's `meta.lastUpdated`. A resource with none of
//! them — PDS reads, Synthea exports and the HL7 examples carry none — is read as
//! **undated**: stated at the Unix epoch, the oldest statement a source can make. So any
//! dated statement overrides it; the same undated resource again changes nothing
//! (idempotent); and two different undated statements of the same thing are ordered by
//! their content (the domain's same-time rule), never by arrival. [`Intake::fhir`] says
//! so in the report's warnings. Refusing undated resources (as HL7 v2 refuses a message
//! without MSH-7) would have quarantined almost every published example.
//!
//! **Dates.** A dateTime's date is the calendar date as written (the local date where it
//! was recorded), not the UTC one. Dates precise only to the year or month are not dates
//! of anything this record keeps and read as absent (a death date must be full).
//!
//! Patient:
//!
//! | FHIR | record |
//! |---|---|
//! | `name` | the first with a family name by use: official, usual, unstated, other (never old or maiden); family and first given name |
//! | `gender` | male, female, other, unknown |
//! | `address` | home first (never old): `line`s, city, district, state, a non-UK country; `postalCode` as the postcode when a UK one parses, else a line; more than six lines are folded into the sixth |
//! | `generalPractitioner` | the first Organization reference whose identifier is an ODS code |
//! | `deceasedDateTime` | died on that date |
//! | `deceasedBoolean: false` | not deceased (corrects a death recorded in error) |
//! | `deceasedBoolean: true` | an error naming `Patient.deceased[x]`: the record needs the date, and dropping the death would show the person as alive |
//!
//! ServiceRequest:
//!
//! | FHIR | record |
//! |---|---|
//! | `status` draft, active, on-hold | awaiting decision (acceptance is a FHIR Task, not a ServiceRequest status) |
//! | `status` completed, revoked, entered-in-error | closed, no further action; closed on the statement's date (else the date received) |
//! | `authoredOn` | date received (else the statement's date) |
//! | `performerType`, else `performer` display, else `code`, else `category` (text or display) | team |
//! | `requester` | referral source: by its display (police, school, health visitor, council, NHS...), else by type (Patient: self, RelatedPerson: family, Practitioner(Role): health), else other |
//!
//! Flag category, from `code` text first, then `category`:
//!
//! | code text contains | category |
//! |---|---|
//! | allerg | allergy |
//! | safeguard, child protection, protection plan, vulnerable adult, domestic abuse, domestic violence | safeguarding |
//! | dog, animal, hazard, firearm, weapon, oxygen, violen, aggress | environmental hazard (a risk to whoever visits) |
//! | interpreter, sign language, bsl, deaf, hearing impair, blind, visually impaired, braille, makaton, communication | communication need |
//! | medication | medication |
//! | *(else, by category code)* safety | environmental hazard |
//! | drug | medication |
//! | anything else (behavioral, clinical, diet, contact, admin, ...) | other |
//!
//! A Flag's `status` inactive or entered-in-error ends it (`period.end`, else the
//! statement's date); `period` is its active period; severity is unknown.
//!
//! AllergyIntolerance: `criticality` high, low, unable-to-assess give the severity (high,
//! low, unknown); the description is `Allergy: {code} (reaction: {manifestations})`
//! (`Intolerance:` for type intolerance, `(unconfirmed)` when so verified); recorded is
//! `recordedDate` (else the onset); active from the onset (else recorded);
//! `clinicalStatus` inactive or resolved, or `verificationStatus` refuted or
//! entered-in-error, end it. A "no known allergy" statement (SNOMED 716186003 and its
//! drug, food, environmental and insect kinds; text starting "no known"; NKA, NKDA) is
//! an error naming `AllergyIntolerance.code`, so it is quarantined: the record keeps
//! allergies as alerts, and an absence is not an alert to show in the banner (nor can
//! the intake count a message as read-with-nothing-to-keep without quarantining it).

use std::collections::HashMap;

use care_alert::{AlertCategory, AlertDetails, Severity};
use care_application::{
    DeathStatement, FeedFormat, IngestCommand, IngestError, PersonIdentity, Resubmission,
};
use care_kernel::{Date, SourceId, Timestamp, UpdateOutcome};
use care_person::{
    Address, Demographics, Gender, GpPractice, LocalId, NhsNumber, PersonName, Postcode,
};
use care_referral::{ReferralDetails, ReferralSource, ReferralStatus};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use crate::hl7::MapError;
use crate::intake::{Intake, MessageReport, Report, ResubmitError, Units};

fn err(location: impl Into<String>, message: impl Into<String>) -> MapError {
    MapError {
        location: location.into(),
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------------------
// The resources, as plain serde types holding what is read.

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    last_updated: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    id: Option<String>,
    meta: Option<Meta>,
    timestamp: Option<String>,
    #[serde(default)]
    entry: Vec<BundleEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BundleEntry {
    full_url: Option<String>,
    resource: Option<Value>,
    request: Option<BundleRequest>,
}

#[derive(Debug, Deserialize)]
struct BundleRequest {
    method: Option<String>,
    url: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Coding {
    system: Option<String>,
    code: Option<String>,
    display: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct CodeableConcept {
    #[serde(default)]
    coding: Vec<Coding>,
    text: Option<String>,
}

impl CodeableConcept {
    /// The text, else the first display, else the first code.
    fn label(&self) -> Option<&str> {
        let displays = self.coding.iter().filter_map(|c| c.display.as_deref());
        let codes = self.coding.iter().filter_map(|c| c.code.as_deref());
        self.text
            .as_deref()
            .into_iter()
            .chain(displays)
            .chain(codes)
            .map(str::trim)
            .find(|s| !s.is_empty())
    }

    fn has_code(&self, code: &str) -> bool {
        self.coding
            .iter()
            .any(|c| c.code.as_deref().map(str::trim) == Some(code))
    }

    /// Whether a coding is this SNOMED CT code (a coding without a system is given the
    /// benefit of the doubt).
    fn has_snomed(&self, code: &str) -> bool {
        self.coding.iter().any(|c| {
            c.code.as_deref().map(str::trim) == Some(code)
                && c.system
                    .as_deref()
                    .is_none_or(|s| s.trim_end_matches('/') == "http://snomed.info/sct")
        })
    }

    fn codes(&self) -> impl Iterator<Item = &str> {
        self.coding
            .iter()
            .filter_map(|c| c.code.as_deref())
            .map(str::trim)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Extension {
    url: Option<String>,
    #[serde(rename = "valueCodeableConcept")]
    value_codeable_concept: Option<CodeableConcept>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Identifier {
    system: Option<String>,
    value: Option<String>,
    #[serde(rename = "type")]
    kind: Option<CodeableConcept>,
    #[serde(default)]
    extension: Vec<Extension>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Reference {
    reference: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    identifier: Option<Identifier>,
    display: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Period {
    start: Option<String>,
    end: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct HumanName {
    #[serde(rename = "use")]
    purpose: Option<String>,
    family: Option<String>,
    #[serde(default)]
    given: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FhirAddress {
    #[serde(rename = "use")]
    purpose: Option<String>,
    text: Option<String>,
    #[serde(default)]
    line: Vec<String>,
    city: Option<String>,
    district: Option<String>,
    state: Option<String>,
    postal_code: Option<String>,
    country: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Patient {
    id: Option<String>,
    meta: Option<Meta>,
    #[serde(default)]
    identifier: Vec<Identifier>,
    #[serde(default)]
    name: Vec<HumanName>,
    gender: Option<String>,
    birth_date: Option<String>,
    deceased_boolean: Option<bool>,
    deceased_date_time: Option<String>,
    #[serde(default)]
    address: Vec<FhirAddress>,
    #[serde(default)]
    general_practitioner: Vec<Reference>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceRequest {
    id: Option<String>,
    meta: Option<Meta>,
    #[serde(default)]
    identifier: Vec<Identifier>,
    status: Option<String>,
    #[serde(default)]
    category: Vec<CodeableConcept>,
    code: Option<CodeableConcept>,
    subject: Option<Reference>,
    authored_on: Option<String>,
    requester: Option<Reference>,
    performer_type: Option<CodeableConcept>,
    #[serde(default)]
    performer: Vec<Reference>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Flag {
    id: Option<String>,
    meta: Option<Meta>,
    #[serde(default)]
    identifier: Vec<Identifier>,
    status: Option<String>,
    #[serde(default)]
    category: Vec<CodeableConcept>,
    code: Option<CodeableConcept>,
    subject: Option<Reference>,
    period: Option<Period>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AllergyIntolerance {
    id: Option<String>,
    meta: Option<Meta>,
    #[serde(default)]
    identifier: Vec<Identifier>,
    clinical_status: Option<CodeableConcept>,
    verification_status: Option<CodeableConcept>,
    #[serde(rename = "type")]
    kind: Option<String>,
    criticality: Option<String>,
    code: Option<CodeableConcept>,
    patient: Option<Reference>,
    onset_date_time: Option<String>,
    onset_period: Option<Period>,
    recorded_date: Option<String>,
    #[serde(default)]
    reaction: Vec<Reaction>,
}

#[derive(Debug, Default, Deserialize)]
struct Reaction {
    #[serde(default)]
    manifestation: Vec<CodeableConcept>,
}

/// Reads a resource as `T`. When it does not fit, the reason names the first top-level
/// field that does not fit on its own (serde's error on a `Value` has no path).
fn typed<T: DeserializeOwned>(resource: &Value, kind: &str) -> Result<T, MapError> {
    T::deserialize(resource).map_err(|e| {
        let field = resource.as_object().and_then(|object| {
            object
                .iter()
                .find(|(key, value)| {
                    let mut alone = serde_json::Map::new();
                    alone.insert((*key).clone(), (*value).clone());
                    T::deserialize(&Value::Object(alone)).is_err()
                })
                .map(|(key, _)| key.clone())
        });
        match field {
            Some(field) => err(format!("{kind}.{field}"), e.to_string()),
            None => err(kind, e.to_string()),
        }
    })
}

// ---------------------------------------------------------------------------------------
// Times.

/// The time of an undated statement: the oldest a source can make (see the module doc).
const UNDATED: Timestamp = DateTime::<Utc>::UNIX_EPOCH;

/// When a resource's statement was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    /// `meta.lastUpdated`, or the Bundle's time.
    At(Timestamp),
    /// Nothing says: read as [`UNDATED`].
    Undated,
}

impl When {
    fn instant(self) -> Timestamp {
        match self {
            When::At(at) => at,
            When::Undated => UNDATED,
        }
    }

    fn date(self) -> Option<Date> {
        match self {
            When::At(at) => Some(at.date_naive()),
            When::Undated => None,
        }
    }
}

/// A FHIR `instant` (`2021-11-26T15:00:00+00:00`).
fn instant(raw: &str) -> Result<Timestamp, String> {
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{raw:?} is not a FHIR instant (YYYY-MM-DDThh:mm:ss+zz:zz)"))
}

/// The calendar date of a FHIR `date` or `dateTime`, as written. A year or year-month
/// alone reads as `None`.
fn date(raw: &str) -> Result<Option<Date>, String> {
    let raw = raw.trim();
    let bad = || format!("{raw:?} is not a FHIR date (YYYY-MM-DD) or dateTime");
    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| bad());
    match raw.len() {
        4 if raw.bytes().all(|b| b.is_ascii_digit()) => Ok(None),
        7 => day(&format!("{raw}-01")).map(|_| None),
        10 => day(raw).map(Some),
        n if n > 10 && raw.as_bytes()[10] == b'T' => {
            DateTime::parse_from_rfc3339(raw).map_err(|_| bad())?;
            day(&raw[..10]).map(Some)
        }
        _ => Err(bad()),
    }
}

fn optional_date(raw: Option<&str>, location: &str) -> Result<Option<Date>, MapError> {
    match raw {
        None => Ok(None),
        Some(raw) => date(raw).map_err(|e| err(location, e)),
    }
}

fn statement_time(
    meta: Option<&Meta>,
    kind: &str,
    context: &BundleContext,
) -> Result<When, MapError> {
    match meta.and_then(|m| m.last_updated.as_deref()) {
        Some(raw) => instant(raw)
            .map(When::At)
            .map_err(|e| err(format!("{kind}.meta.lastUpdated"), e)),
        None => Ok(context.time.map_or(When::Undated, When::At)),
    }
}

// ---------------------------------------------------------------------------------------
// The submission around a resource.

/// What a resource's mapping may take from the rest of its submission: the Patients
/// its references may name (by `fullUrl` and by `Patient/{id}`), the type of every
/// entry, and the Bundle's time. A resource sent on its own has an empty context.
#[derive(Debug, Clone, Default)]
pub struct BundleContext {
    patients: HashMap<String, Result<PersonIdentity, MapError>>,
    types: HashMap<String, String>,
    time: Option<Timestamp>,
}

impl BundleContext {
    /// A context whose resources without `meta.lastUpdated` take `time` (the Bundle's).
    pub fn new(time: Option<Timestamp>) -> Self {
        Self {
            time,
            ..Self::default()
        }
    }

    /// Notes one entry of the submission: its type, and for a Patient, the identity it
    /// gives (or why it gives none), so that other entries can refer to it.
    pub fn add_entry(&mut self, full_url: Option<&str>, resource: &Value, source: &SourceId) {
        let kind = resource_type(resource).unwrap_or_default().to_owned();
        let id = resource.get("id").and_then(Value::as_str);
        if kind == "Patient" {
            let identity = typed::<Patient>(resource, "Patient")
                .and_then(|patient| patient_identity(&patient, source));
            if let Some(url) = full_url {
                self.patients.insert(url.to_owned(), identity.clone());
            }
            if let Some(id) = id {
                self.patients.insert(format!("Patient/{id}"), identity);
            }
        }
        if let Some(url) = full_url {
            self.types.insert(url.to_owned(), kind);
        }
    }

    /// The Patient entry a reference names, if it is one of the submission's.
    fn patient(&self, reference: &str) -> Option<&Result<PersonIdentity, MapError>> {
        self.patients.get(reference).or_else(|| {
            let (kind, id) = typed_tail(reference)?;
            (kind == "Patient")
                .then(|| self.patients.get(&format!("Patient/{id}")))
                .flatten()
        })
    }

    /// The resource type a reference names: its `type`, the entry it names, or its
    /// `Type/id` tail.
    fn type_of<'a>(&'a self, reference: &'a Reference) -> Option<&'a str> {
        reference.kind.as_deref().or_else(|| {
            let text = reference.reference.as_deref()?;
            self.types
                .get(text)
                .map(String::as_str)
                .or_else(|| typed_tail(text).map(|(kind, _)| kind))
        })
    }
}

fn resource_type(resource: &Value) -> Option<&str> {
    resource.get("resourceType").and_then(Value::as_str)
}

/// `Type/id` from a relative or absolute reference (`…/Patient/1/_history/2` too).
fn typed_tail(reference: &str) -> Option<(&str, &str)> {
    if reference.starts_with("urn:") || reference.starts_with('#') {
        return None;
    }
    let path = reference
        .split_once("/_history/")
        .map_or(reference, |(path, _)| path);
    let mut parts = path.rsplit('/');
    let id = parts.next()?.trim();
    let kind = parts.next()?.trim();
    let is_type = kind.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && kind.chars().all(|c| c.is_ascii_alphabetic());
    (is_type && !id.is_empty()).then_some((kind, id))
}

// ---------------------------------------------------------------------------------------
// Mapping.

/// Maps one FHIR R4 resource from `source` to the commands it states, with what the rest
/// of its submission says in `context` (use `BundleContext::default()` for a resource
/// sent alone). A resource this record does not read is an error, so that it is
/// quarantined and never dropped.
pub fn map_resource(
    resource: &Value,
    source: &SourceId,
    context: &BundleContext,
) -> Result<Vec<IngestCommand>, MapError> {
    let Some(kind) = resource_type(resource) else {
        return Err(err("resourceType", "not a FHIR resource: no resourceType"));
    };
    match kind {
        "Patient" => patient(&typed(resource, kind)?, source, context).map(|c| vec![c]),
        "ServiceRequest" => {
            service_request(&typed(resource, kind)?, source, context).map(|c| vec![c])
        }
        "Flag" => flag(&typed(resource, kind)?, source, context).map(|c| vec![c]),
        "AllergyIntolerance" => allergy(&typed(resource, kind)?, source, context).map(|c| vec![c]),
        other => Err(err(
            "resourceType",
            format!("resourceType {other} is not one this record reads"),
        )),
    }
}

/// Whether an identifier system is the NHS number's.
fn is_nhs_system(system: Option<&str>) -> bool {
    let Some(system) = system else { return false };
    matches!(
        system.trim().trim_end_matches('/'),
        "https://fhir.nhs.uk/Id/nhs-number"
            | "http://fhir.nhs.uk/Id/nhs-number"
            | "https://fhir.nhs.net/Id/nhs-number"
            | "http://fhir.nhs.net/Id/nhs-number"
            | "urn:oid:2.16.840.1.113883.2.1.4.1"
    )
}

/// Whether an NHS number identifier says (UK Core verification status) that the number
/// is not verified: any code but `01`, "number present and verified".
fn unverified(identifier: &Identifier) -> Option<String> {
    identifier
        .extension
        .iter()
        .filter(|e| {
            e.url
                .as_deref()
                .is_some_and(|u| u.contains("NHSNumberVerificationStatus"))
        })
        .filter_map(|e| e.value_codeable_concept.as_ref())
        .flat_map(|c| c.codes())
        .find(|code| *code != "01")
        .map(str::to_owned)
}

fn nhs_number(value: Option<&str>, location: &str) -> Result<NhsNumber, MapError> {
    let value = value.unwrap_or_default().trim();
    NhsNumber::parse(value)
        .map_err(|e| err(location, format!("NHS number {value:?}: {}", e.reason)))
}

fn local_id(source: &SourceId, value: &str, location: &str) -> Result<LocalId, MapError> {
    LocalId::new(source.clone(), value)
        .map_err(|e| err(location, format!("local id {value:?}: {}", e.reason)))
}

fn patient_identity(patient: &Patient, source: &SourceId) -> Result<PersonIdentity, MapError> {
    let mut nhs: Option<NhsNumber> = None;
    let mut other: Option<(bool, &str)> = None;
    for identifier in &patient.identifier {
        let value = identifier
            .value
            .as_deref()
            .map(str::trim)
            .unwrap_or_default();
        if is_nhs_system(identifier.system.as_deref()) {
            if unverified(identifier).is_some() {
                continue;
            }
            let number = nhs_number(Some(value), "Patient.identifier")?;
            if nhs.as_ref().is_some_and(|held| held != &number) {
                return Err(err("Patient.identifier", "two different NHS numbers"));
            }
            nhs = Some(number);
        } else if !value.is_empty() {
            let is_mr = identifier.kind.as_ref().is_some_and(|k| k.has_code("MR"));
            if other.is_none_or(|(held_mr, _)| is_mr && !held_mr) {
                other = Some((is_mr, value));
            }
        }
    }
    let local = match patient.id.as_deref().map(str::trim) {
        Some(id) if !id.is_empty() => Some(local_id(source, id, "Patient.id")?),
        _ => other
            .map(|(_, value)| local_id(source, value, "Patient.identifier"))
            .transpose()?,
    };
    PersonIdentity::new(nhs, local).map_err(|_| {
        err(
            "Patient.identifier",
            "no identifier: neither a verified NHS number nor an id",
        )
    })
}

fn patient(
    patient: &Patient,
    source: &SourceId,
    context: &BundleContext,
) -> Result<IngestCommand, MapError> {
    let identity = patient_identity(patient, source)?;
    let at = statement_time(patient.meta.as_ref(), "Patient", context)?;
    let gender = match patient.gender.as_deref().map(str::trim) {
        None | Some("") => None,
        Some("male") => Some(Gender::Male),
        Some("female") => Some(Gender::Female),
        Some("other") => Some(Gender::Other),
        Some("unknown") => Some(Gender::Unknown),
        Some(other) => {
            return Err(err(
                "Patient.gender",
                format!("{other:?} is not male, female, other or unknown"),
            ));
        }
    };
    let demographics = Demographics {
        name: name(&patient.name)?,
        birth_date: optional_date(patient.birth_date.as_deref(), "Patient.birthDate")?,
        gender,
        address: address(&patient.address)?,
        registered_gp: practice(&patient.general_practitioner)?,
    };
    Ok(IngestCommand::Demographics {
        identity,
        source_time: at.instant(),
        demographics,
        death: death(patient)?,
        partial: None,
    })
}

fn name(names: &[HumanName]) -> Result<Option<PersonName>, MapError> {
    if names.is_empty() {
        return Ok(None);
    }
    let rank = |n: &HumanName| match n.purpose.as_deref() {
        Some("official") => 0,
        Some("usual") => 1,
        None => 2,
        Some("old" | "maiden") => 9,
        Some(_) => 3,
    };
    let best = names
        .iter()
        .filter(|n| rank(n) < 9)
        .filter(|n| n.family.as_deref().is_some_and(|f| !f.trim().is_empty()))
        .min_by_key(|n| rank(n));
    let Some(best) = best else {
        return Err(err("Patient.name", "no current name has a family name"));
    };
    let family = best.family.as_deref().unwrap_or_default();
    let given = best.given.first().map(String::as_str).unwrap_or_default();
    PersonName::new(family.trim(), given.trim())
        .map(Some)
        .map_err(|e| err("Patient.name", e.reason.clone()))
}

/// Whether a country names the United Kingdom (so adds nothing to a UK address).
fn is_uk(country: &str) -> bool {
    matches!(
        country.trim().to_ascii_uppercase().as_str(),
        "GB" | "GBR" | "UK" | "UNITED KINGDOM" | "ENGLAND" | "WALES" | "SCOTLAND"
    )
}

fn address(addresses: &[FhirAddress]) -> Result<Option<Address>, MapError> {
    let rank = |a: &FhirAddress| match a.purpose.as_deref() {
        Some("home") => 0,
        None => 1,
        Some("old") => 9,
        Some("temp") => 3,
        Some(_) => 2,
    };
    let Some(chosen) = addresses
        .iter()
        .filter(|a| rank(a) < 9)
        .min_by_key(|a| rank(a))
    else {
        return Ok(None);
    };
    let mut lines: Vec<String> = chosen
        .line
        .iter()
        .map(String::as_str)
        .chain(chosen.city.as_deref())
        .chain(chosen.district.as_deref())
        .chain(chosen.state.as_deref())
        .chain(chosen.country.as_deref().filter(|c| !is_uk(c)))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let postcode = match chosen.postal_code.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(code) => match Postcode::parse(code) {
            Ok(postcode) => Some(postcode),
            Err(_) => {
                lines.push(code.to_owned());
                None
            }
        },
    };
    if lines.is_empty()
        && postcode.is_none()
        && let Some(text) = chosen.text.as_deref().filter(|t| !t.trim().is_empty())
    {
        lines.push(text.trim().to_owned());
    }
    if lines.is_empty() && postcode.is_none() {
        return Ok(None);
    }
    if lines.len() > 6 {
        // Folded, not cut: nothing the source sent is lost.
        let rest = lines.split_off(5);
        lines.push(rest.join(", "));
    }
    Address::new(lines, postcode)
        .map(Some)
        .map_err(|e| err("Patient.address", e.reason.clone()))
}

fn is_ods_system(system: Option<&str>) -> bool {
    system.is_some_and(|s| s.contains("ods-organization-code"))
}

fn practice(practitioners: &[Reference]) -> Result<Option<GpPractice>, MapError> {
    for reference in practitioners {
        let Some(identifier) = &reference.identifier else {
            continue;
        };
        let organisation = reference.kind.as_deref() == Some("Organization")
            || reference
                .reference
                .as_deref()
                .and_then(typed_tail)
                .is_some_and(|(kind, _)| kind == "Organization");
        let ods = is_ods_system(identifier.system.as_deref())
            || (identifier.system.is_none() && organisation);
        let code = identifier
            .value
            .as_deref()
            .map(str::trim)
            .unwrap_or_default();
        if !ods || code.is_empty() {
            continue;
        }
        return GpPractice::new(code, reference.display.as_deref().map(str::trim))
            .map(Some)
            .map_err(|e| err("Patient.generalPractitioner", e.reason.clone()));
    }
    Ok(None)
}

fn death(patient: &Patient) -> Result<DeathStatement, MapError> {
    const LOCATION: &str = "Patient.deceased[x]";
    match (
        patient.deceased_boolean,
        patient.deceased_date_time.as_deref(),
    ) {
        (Some(_), Some(_)) => Err(err(
            LOCATION,
            "both deceasedBoolean and deceasedDateTime are given",
        )),
        (None, Some(raw)) => match date(raw).map_err(|e| err(LOCATION, e))? {
            Some(day) => Ok(DeathStatement::Deceased(day)),
            None => Err(err(
                LOCATION,
                format!("{raw:?} is not a full date of death"),
            )),
        },
        (Some(true), None) => Err(err(
            LOCATION,
            "deceasedBoolean is true but no date of death is given: the record needs the date (send deceasedDateTime)",
        )),
        (Some(false), None) => Ok(DeathStatement::NotDeceased),
        (None, None) => Ok(DeathStatement::NotStated),
    }
}

/// The person a reference names (see the module doc for the order tried).
fn person(
    reference: Option<&Reference>,
    location: &str,
    source: &SourceId,
    context: &BundleContext,
) -> Result<PersonIdentity, MapError> {
    let Some(reference) = reference else {
        return Err(err(location, "names no patient"));
    };
    let text = reference
        .reference
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    if let Some(kind) = reference.kind.as_deref().filter(|k| *k != "Patient") {
        return Err(err(location, format!("refers to a {kind}, not a Patient")));
    }
    if let Some(text) = text
        && let Some(entry) = context.patient(text)
    {
        return entry.clone().map_err(|e| {
            err(
                location,
                format!("{text} is a Patient of this submission that could not be read ({e})"),
            )
        });
    }
    let nhs = match &reference.identifier {
        Some(identifier) if is_nhs_system(identifier.system.as_deref()) => Some(nhs_number(
            identifier.value.as_deref(),
            &format!("{location}.identifier"),
        )?),
        _ => None,
    };
    let local = match text {
        None => None,
        Some(text) if text.starts_with("urn:") => {
            if nhs.is_some() {
                None
            } else {
                return Err(err(
                    location,
                    format!("{text} is not an entry of this submission"),
                ));
            }
        }
        Some(text) if text.starts_with('#') => {
            return Err(err(
                location,
                "a contained Patient is not read: refer to Patient/{id} or give an NHS number",
            ));
        }
        Some(text) => match typed_tail(text) {
            Some(("Patient", id)) => Some(local_id(source, id, location)?),
            Some((kind, _)) => {
                return Err(err(location, format!("refers to a {kind}, not a Patient")));
            }
            None => {
                return Err(err(
                    location,
                    format!("{text:?} is not a Patient reference"),
                ));
            }
        },
    };
    PersonIdentity::new(nhs, local).map_err(|_| {
        err(
            location,
            "names no patient: give a reference Patient/{id} or an NHS number identifier",
        )
    })
}

/// The reference an alert or referral is held by: `{kind}/{id}` (or the bare id for a
/// referral), else the first identifier's value.
fn source_ref(
    kind: &str,
    id: Option<&str>,
    identifiers: &[Identifier],
    prefixed: bool,
) -> Result<String, MapError> {
    if let Some(id) = id.map(str::trim).filter(|i| !i.is_empty()) {
        return Ok(if prefixed {
            format!("{kind}/{id}")
        } else {
            id.to_owned()
        });
    }
    identifiers
        .iter()
        .filter_map(|i| i.value.as_deref().map(str::trim))
        .find(|v| !v.is_empty())
        .map(|v| format!("{kind}:{v}"))
        .ok_or_else(|| {
            err(
                format!("{kind}.id"),
                "no id or identifier: a later update could not find it",
            )
        })
}

fn service_request(
    request: &ServiceRequest,
    source: &SourceId,
    context: &BundleContext,
) -> Result<IngestCommand, MapError> {
    let identity = person(
        request.subject.as_ref(),
        "ServiceRequest.subject",
        source,
        context,
    )?;
    let at = statement_time(request.meta.as_ref(), "ServiceRequest", context)?;
    let reference = source_ref(
        "ServiceRequest",
        request.id.as_deref(),
        &request.identifier,
        false,
    )?;
    let status = match request.status.as_deref().map(str::trim) {
        Some("draft" | "active" | "on-hold") => ReferralStatus::AwaitingDecision,
        Some("completed" | "revoked" | "entered-in-error") => ReferralStatus::ClosedNoFurtherAction,
        Some(other) => {
            return Err(err(
                "ServiceRequest.status",
                format!(
                    "{other:?} is not a status this record reads (draft, active, on-hold, completed, revoked, entered-in-error)"
                ),
            ));
        }
        None => return Err(err("ServiceRequest.status", "no status")),
    };
    let received = optional_date(request.authored_on.as_deref(), "ServiceRequest.authoredOn")?
        .or(at.date())
        .ok_or_else(|| {
            err(
                "ServiceRequest.authoredOn",
                "no date received (authoredOn) and no statement time",
            )
        })?;
    let team = request
        .performer_type
        .as_ref()
        .and_then(CodeableConcept::label)
        .or_else(|| {
            request
                .performer
                .iter()
                .filter_map(|p| p.display.as_deref().map(str::trim))
                .find(|d| !d.is_empty())
        })
        .or_else(|| request.code.as_ref().and_then(CodeableConcept::label))
        .or_else(|| request.category.iter().find_map(CodeableConcept::label))
        .ok_or_else(|| {
            err(
                "ServiceRequest.performer",
                "no team referred to (performerType, performer, code or category)",
            )
        })?;
    let closed = status
        .is_closed()
        .then(|| at.date().unwrap_or(received).max(received));
    let details = ReferralDetails::new(
        received,
        team,
        referral_source(request.requester.as_ref(), context),
        status,
        closed,
        None,
    )
    .map_err(|e| err("ServiceRequest", e.to_string()))?;
    Ok(IngestCommand::Referral {
        identity,
        source_ref: reference,
        details,
        source_time: at.instant(),
    })
}

/// Who referred: by the requester's name, else by what it is.
fn referral_source(requester: Option<&Reference>, context: &BundleContext) -> ReferralSource {
    let Some(requester) = requester else {
        return ReferralSource::Other;
    };
    let display = requester
        .display
        .as_deref()
        .unwrap_or_default()
        .to_lowercase();
    let by_name: [(&[&str], ReferralSource); 6] = [
        (&["police", "constabulary"], ReferralSource::Police),
        (&["health visitor"], ReferralSource::HealthVisitor),
        (
            &["school", "academy", "college", "nursery", "education"],
            ReferralSource::School,
        ),
        (
            &["council", "borough", "local authority"],
            ReferralSource::LocalAuthority,
        ),
        (
            &["nhs", "hospital", "surgery", "medical", "clinic", "health"],
            ReferralSource::Health,
        ),
        (&["anonymous"], ReferralSource::Anonymous),
    ];
    if let Some((_, found)) = by_name
        .iter()
        .find(|(words, _)| words.iter().any(|w| display.contains(w)))
    {
        return *found;
    }
    match context.type_of(requester) {
        Some("Patient") => ReferralSource::SelfReferral,
        Some("RelatedPerson") => ReferralSource::Family,
        Some("Practitioner" | "PractitionerRole") => ReferralSource::Health,
        _ => ReferralSource::Other,
    }
}

/// A Flag's category by its text (first) and its category code (see the module doc).
fn flag_category(description: &str, categories: &[CodeableConcept]) -> AlertCategory {
    let text = description.to_lowercase();
    let by_text: [(&[&str], AlertCategory); 5] = [
        (&["allerg"], AlertCategory::Allergy),
        (
            &[
                "safeguard",
                "child protection",
                "protection plan",
                "vulnerable adult",
                "domestic abuse",
                "domestic violence",
            ],
            AlertCategory::Safeguarding,
        ),
        (
            &[
                "dog", "animal", "hazard", "firearm", "weapon", "oxygen", "violen", "aggress",
            ],
            AlertCategory::EnvironmentalHazard,
        ),
        (
            &[
                "interpreter",
                "sign language",
                "bsl",
                "deaf",
                "hearing impair",
                "blind",
                "visually impaired",
                "braille",
                "makaton",
                "communication",
            ],
            AlertCategory::CommunicationNeed,
        ),
        (&["medication"], AlertCategory::Medication),
    ];
    if let Some((_, found)) = by_text
        .iter()
        .find(|(words, _)| words.iter().any(|w| text.contains(w)))
    {
        return *found;
    }
    for code in categories.iter().flat_map(CodeableConcept::codes) {
        match code {
            "safety" => return AlertCategory::EnvironmentalHazard,
            "drug" => return AlertCategory::Medication,
            _ => {}
        }
    }
    AlertCategory::Other
}

fn flag(
    flag: &Flag,
    source: &SourceId,
    context: &BundleContext,
) -> Result<IngestCommand, MapError> {
    let identity = person(flag.subject.as_ref(), "Flag.subject", source, context)?;
    let at = statement_time(flag.meta.as_ref(), "Flag", context)?;
    let reference = source_ref("Flag", flag.id.as_deref(), &flag.identifier, true)?;
    let description = flag
        .code
        .as_ref()
        .and_then(CodeableConcept::label)
        .ok_or_else(|| err("Flag.code", "no text, display or code"))?;
    let ended = match flag.status.as_deref().map(str::trim) {
        Some("active") => false,
        Some("inactive" | "entered-in-error") => true,
        Some(other) => {
            return Err(err(
                "Flag.status",
                format!("{other:?} is not active, inactive or entered-in-error"),
            ));
        }
        None => return Err(err("Flag.status", "no status")),
    };
    let period = flag.period.clone().unwrap_or_default();
    let start = optional_date(period.start.as_deref(), "Flag.period.start")?;
    let end = optional_date(period.end.as_deref(), "Flag.period.end")?;
    let from = start.or(at.date()).ok_or_else(|| {
        err(
            "Flag.period.start",
            "no start date and no statement time: the alert's dates are unknown",
        )
    })?;
    let to = match (end, ended) {
        (Some(end), _) => Some(end),
        (None, true) => Some(at.date().unwrap_or(from).max(from)),
        (None, false) => None,
    };
    let details = AlertDetails::new(
        flag_category(description, &flag.category),
        description,
        Severity::Unknown,
        from,
        from,
        to,
    )
    .map_err(|e| err("Flag", e.to_string()))?;
    Ok(IngestCommand::Alert {
        identity,
        source_ref: reference,
        details,
        source_time: at.instant(),
    })
}

/// SNOMED CT situations that say no allergy is known (any, drug, food, environmental,
/// insect).
const NO_KNOWN_ALLERGY: [&str; 5] = [
    "716186003",
    "409137002",
    "429625007",
    "428607008",
    "428197003",
];

/// The longest description an alert may have.
const DESCRIPTION_MAX: usize = 500;

fn allergy(
    allergy: &AllergyIntolerance,
    source: &SourceId,
    context: &BundleContext,
) -> Result<IngestCommand, MapError> {
    let code = allergy.code.clone().unwrap_or_default();
    let label = code.label().ok_or_else(|| {
        err(
            "AllergyIntolerance.code",
            "no allergen: no text, display or code",
        )
    })?;
    let text = label.to_lowercase();
    let says_none = NO_KNOWN_ALLERGY.iter().any(|c| code.has_snomed(c))
        || text.starts_with("no known")
        || matches!(text.as_str(), "nka" | "nkda");
    if says_none {
        return Err(err(
            "AllergyIntolerance.code",
            format!(
                "{label:?} states that no allergy is known; this record keeps allergies as alerts, not their absence"
            ),
        ));
    }
    let identity = person(
        allergy.patient.as_ref(),
        "AllergyIntolerance.patient",
        source,
        context,
    )?;
    let at = statement_time(allergy.meta.as_ref(), "AllergyIntolerance", context)?;
    let reference = source_ref(
        "AllergyIntolerance",
        allergy.id.as_deref(),
        &allergy.identifier,
        true,
    )?;
    let severity = match allergy.criticality.as_deref().map(str::trim) {
        Some("high") => Severity::High,
        Some("low") => Severity::Low,
        Some("unable-to-assess") | None => Severity::Unknown,
        Some(other) => {
            return Err(err(
                "AllergyIntolerance.criticality",
                format!("{other:?} is not low, high or unable-to-assess"),
            ));
        }
    };
    let status_is = |concept: &Option<CodeableConcept>, codes: &[&str]| {
        concept
            .as_ref()
            .is_some_and(|c| c.codes().any(|code| codes.contains(&code)))
    };
    let ended = status_is(&allergy.clinical_status, &["inactive", "resolved"])
        || status_is(
            &allergy.verification_status,
            &["refuted", "entered-in-error"],
        );
    let unconfirmed = status_is(&allergy.verification_status, &["unconfirmed"]);
    let onset = match (&allergy.onset_date_time, &allergy.onset_period) {
        (Some(raw), _) => optional_date(Some(raw), "AllergyIntolerance.onsetDateTime")?,
        (None, Some(period)) => optional_date(
            period.start.as_deref(),
            "AllergyIntolerance.onsetPeriod.start",
        )?,
        (None, None) => None,
    };
    let recorded = optional_date(
        allergy.recorded_date.as_deref(),
        "AllergyIntolerance.recordedDate",
    )?
    .or(onset)
    .or(at.date())
    .ok_or_else(|| {
        err(
            "AllergyIntolerance.recordedDate",
            "no recorded date, onset or statement time: the alert's dates are unknown",
        )
    })?;
    let from = onset.unwrap_or(recorded);
    let to = ended.then(|| at.date().unwrap_or(from).max(from));
    let description = allergy_description(allergy, label, unconfirmed);
    let details = AlertDetails::new(
        AlertCategory::Allergy,
        &description,
        severity,
        recorded,
        from,
        to,
    )
    .map_err(|e| err("AllergyIntolerance.code", e.to_string()))?;
    Ok(IngestCommand::Alert {
        identity,
        source_ref: reference,
        details,
        source_time: at.instant(),
    })
}

/// `Allergy: {allergen} (reaction: {manifestations})`, the reactions shortened when the
/// whole would be longer than an alert may be.
fn allergy_description(allergy: &AllergyIntolerance, label: &str, unconfirmed: bool) -> String {
    let kind = if allergy.kind.as_deref() == Some("intolerance") {
        "Intolerance"
    } else {
        "Allergy"
    };
    let mut head = format!("{kind}: {label}");
    if unconfirmed {
        head.push_str(" (unconfirmed)");
    }
    let mut reactions: Vec<&str> = Vec::new();
    for label in allergy
        .reaction
        .iter()
        .flat_map(|r| r.manifestation.iter())
        .filter_map(CodeableConcept::label)
    {
        if !reactions.contains(&label) {
            reactions.push(label);
        }
    }
    if reactions.is_empty() {
        return head;
    }
    let reactions = reactions.join(", ");
    let room = DESCRIPTION_MAX.saturating_sub(head.chars().count() + " (reaction: )".len());
    let reactions = if reactions.chars().count() > room {
        let cut: String = reactions.chars().take(room.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        reactions
    };
    format!("{head} (reaction: {reactions})")
}

// ---------------------------------------------------------------------------------------
// Intake.

/// The name a resource goes by in reports and the quarantine: `Type/id`, else its
/// `fullUrl`, else its type.
fn reference_of(resource: &Value, full_url: Option<&str>) -> Option<String> {
    let kind = resource_type(resource);
    let id = resource.get("id").and_then(Value::as_str);
    match (kind, id, full_url) {
        (Some(kind), Some(id), _) => Some(format!("{kind}/{id}")),
        (_, _, Some(url)) => Some(url.to_owned()),
        (Some(kind), None, None) => Some(kind.to_owned()),
        (None, _, None) => None,
    }
}

/// The resource types [`map_resource`] reads.
const READ: [&str; 4] = ["Patient", "ServiceRequest", "Flag", "AllergyIntolerance"];

/// Whether a readable resource will be read as undated (for the report's warning).
fn is_undated(resource: &Value, context: &BundleContext) -> bool {
    resource_type(resource).is_some_and(|k| READ.contains(&k))
        && context.time.is_none()
        && resource.pointer("/meta/lastUpdated").is_none()
}

fn undated_warning(count: usize) -> String {
    format!(
        "{count} resource(s) carry no meta.lastUpdated (and the submission no Bundle.timestamp): each is read as the oldest statement its source can make, so any dated statement overrides it; send meta.lastUpdated so that updates are ordered"
    )
}

/// The Bundle's time: `timestamp`, else `meta.lastUpdated`.
fn bundle_time(bundle: &Bundle) -> Result<Option<Timestamp>, MapError> {
    if let Some(raw) = bundle.timestamp.as_deref() {
        return instant(raw)
            .map(Some)
            .map_err(|e| err("Bundle.timestamp", e));
    }
    match bundle.meta.as_ref().and_then(|m| m.last_updated.as_deref()) {
        Some(raw) => instant(raw)
            .map(Some)
            .map_err(|e| err("Bundle.meta.lastUpdated", e)),
        None => Ok(None),
    }
}

/// A Bundle's entries in the order they are applied: Patients first (so that the others
/// find their person), each group in Bundle order.
fn application_order(entries: &[BundleEntry]) -> Vec<usize> {
    let is_patient = |e: &BundleEntry| {
        e.resource
            .as_ref()
            .and_then(resource_type)
            .is_some_and(|k| k == "Patient")
    };
    let patients = (0..entries.len()).filter(|&i| is_patient(&entries[i]));
    let others = (0..entries.len()).filter(|&i| !is_patient(&entries[i]));
    patients.chain(others).collect()
}

impl Intake {
    /// A FHIR R4 JSON body: one resource, or a Bundle of any type (transaction, batch,
    /// collection, message, searchset, ...) whose entries are each one message, applied
    /// or quarantined on its own — Patients first, so that a ServiceRequest, Flag or
    /// AllergyIntolerance in the same Bundle finds its person. A quarantined entry keeps
    /// its resource, re-serialised, as its raw bytes. A body that is not JSON, not a
    /// resource, or not a readable Bundle is quarantined whole. The report lists the
    /// entries in Bundle order.
    #[tracing::instrument(skip_all, fields(source = %self.session().source().id))]
    pub async fn fhir(&self, raw: &[u8]) -> Result<Report, IngestError> {
        let value: Value = match serde_json::from_slice(raw) {
            Ok(value) => value,
            Err(e) => return self.fhir_whole(raw, None, format!("not JSON: {e}")).await,
        };
        let source = self.session().source().id.clone();
        let Some(kind) = resource_type(&value) else {
            return self
                .fhir_whole(raw, None, "not a FHIR resource: no resourceType".into())
                .await;
        };
        if kind != "Bundle" {
            let context = BundleContext::default();
            let mut warnings = Vec::new();
            if is_undated(&value, &context) {
                warnings.push(undated_warning(1));
            }
            let mapped = map_resource(&value, &source, &context).map_err(|e| e.to_string());
            let mut units = Units::new(self.session());
            let one = units
                .intake()
                .await?
                .submit_mapped(0, FeedFormat::Fhir, reference_of(&value, None), raw, mapped)
                .await?;
            units.finish().await?;
            return Ok(Report {
                messages: vec![one],
                warnings,
            });
        }
        let bundle_ref = reference_of(&value, None);
        let bundle = match typed::<Bundle>(&value, "Bundle").and_then(|b| {
            let time = bundle_time(&b)?;
            Ok((b, time))
        }) {
            Ok(read) => read,
            Err(e) => return self.fhir_whole(raw, bundle_ref, e.to_string()).await,
        };
        let (bundle, time) = bundle;
        let mut context = BundleContext::new(time);
        for entry in &bundle.entry {
            if let Some(resource) = &entry.resource {
                context.add_entry(entry.full_url.as_deref(), resource, &source);
            }
        }
        // A quarantined entry is kept alone, but it may name its person only by a
        // reference into the Bundle: it is about everyone the Bundle names.
        let about = crate::intake::subjects_in(FeedFormat::Fhir, raw, &source);
        let mut report = Report::default();
        if bundle.entry.is_empty() {
            report.warnings.push(format!(
                "the Bundle{} has no entries",
                bundle.id.map(|id| format!(" {id}")).unwrap_or_default()
            ));
        }
        let mut undated = 0;
        let mut units = Units::new(self.session());
        for index in application_order(&bundle.entry) {
            let intake = units.intake().await?;
            let entry = &bundle.entry[index];
            let full_url = entry.full_url.as_deref();
            let message = match &entry.resource {
                Some(resource) => {
                    if is_undated(resource, &context) {
                        undated += 1;
                    }
                    let bytes = serde_json::to_vec(resource).unwrap_or_default();
                    let mapped =
                        map_resource(resource, &source, &context).map_err(|e| e.to_string());
                    intake
                        .submit_mapped_about(
                            index,
                            FeedFormat::Fhir,
                            reference_of(resource, full_url),
                            &bytes,
                            mapped,
                            &about,
                        )
                        .await?
                }
                None => intake.fhir_entry_without_resource(index, entry).await?,
            };
            report.messages.push(message);
            units.written().await?;
        }
        units.finish().await?;
        report.messages.sort_by_key(|m| m.index);
        if undated > 0 {
            report.warnings.push(undated_warning(undated));
        }
        Ok(report)
    }

    /// A Bundle entry with no resource (a DELETE, a response): quarantined, as this
    /// record reads resources only.
    async fn fhir_entry_without_resource(
        &self,
        index: usize,
        entry: &BundleEntry,
    ) -> Result<MessageReport, IngestError> {
        let request = entry.request.as_ref();
        let url = request.and_then(|r| r.url.clone());
        let what = match request {
            Some(r) => format!(
                "a {} {} request",
                r.method.as_deref().unwrap_or("?"),
                r.url.as_deref().unwrap_or("?")
            ),
            None => "an entry".to_owned(),
        };
        let reason = format!(
            "Bundle.entry[{index}]: {what} without a resource; this record reads resources only"
        );
        let bytes = serde_json::to_vec(&serde_json::json!({
            "fullUrl": entry.full_url,
            "request": request.map(|r| serde_json::json!({"method": r.method, "url": r.url})),
        }))
        .unwrap_or_default();
        self.quarantine(
            index,
            FeedFormat::Fhir,
            url.or_else(|| entry.full_url.clone()),
            &bytes,
            reason,
        )
        .await
    }

    /// The whole body quarantined as one message.
    async fn fhir_whole(
        &self,
        raw: &[u8],
        reference: Option<String>,
        reason: String,
    ) -> Result<Report, IngestError> {
        let one = self
            .quarantine(0, FeedFormat::Fhir, reference, raw, reason)
            .await?;
        Ok(Report {
            messages: vec![one],
            warnings: Vec::new(),
        })
    }
}

/// The commands of a body re-submitted whole: one resource, or every entry of a Bundle
/// (Patients first). Any entry that cannot be mapped fails the whole re-submission.
fn map_body(raw: &[u8], source: &SourceId) -> Result<Vec<IngestCommand>, String> {
    let value: Value = serde_json::from_slice(raw).map_err(|e| format!("not JSON: {e}"))?;
    if resource_type(&value) != Some("Bundle") {
        return map_resource(&value, source, &BundleContext::default()).map_err(|e| e.to_string());
    }
    let bundle: Bundle = typed(&value, "Bundle").map_err(|e| e.to_string())?;
    let mut context = BundleContext::new(bundle_time(&bundle).map_err(|e| e.to_string())?);
    for entry in &bundle.entry {
        if let Some(resource) = &entry.resource {
            context.add_entry(entry.full_url.as_deref(), resource, source);
        }
    }
    let mut commands = Vec::new();
    for index in application_order(&bundle.entry) {
        let Some(resource) = &bundle.entry[index].resource else {
            return Err(format!("Bundle.entry[{index}]: no resource"));
        };
        let mapped = map_resource(resource, source, &context)
            .map_err(|e| format!("Bundle.entry[{index}]: {e}"))?;
        commands.extend(mapped);
    }
    Ok(commands)
}

/// Re-submits a quarantined FHIR message (or the corrected one given in its place)
/// through an opened [`Resubmission`]: one resource, or a Bundle whose entries are then
/// applied together. A quarantined entry was kept as its resource alone, so a reference
/// to another entry of its Bundle (`urn:uuid:`) no longer resolves and the Bundle's
/// time no longer applies: correct it to `Patient/{id}` or an NHS number, and give it
/// `meta.lastUpdated`, or re-submit a Bundle. A message that still cannot be applied
/// leaves the entry open and comes back as `Err` with the reason.
pub async fn resubmit_fhir(
    resubmission: Resubmission,
    corrected: Option<Vec<u8>>,
) -> Result<UpdateOutcome, ResubmitError> {
    crate::intake::resubmit_with(resubmission, corrected, map_body).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use serde_json::json;

    use super::*;

    fn source() -> SourceId {
        SourceId::parse("fhir-src").unwrap()
    }

    fn map(resource: Value) -> Result<Vec<IngestCommand>, MapError> {
        map_resource(&resource, &source(), &BundleContext::default())
    }

    fn one(resource: Value) -> IngestCommand {
        let mut commands = map(resource).unwrap();
        assert_eq!(commands.len(), 1);
        commands.remove(0)
    }

    fn location(resource: Value) -> String {
        map(resource).unwrap_err().location
    }

    fn day(y: i32, m: u32, d: u32) -> Date {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn alert(command: IngestCommand) -> (PersonIdentity, String, AlertDetails) {
        match command {
            IngestCommand::Alert {
                identity,
                source_ref,
                details,
                ..
            } => (identity, source_ref, details),
            other => panic!("not an alert: {other:?}"),
        }
    }

    fn patient_json() -> Value {
        json!({
            "resourceType": "Patient", "id": "p1",
            "meta": {"lastUpdated": "2026-03-01T10:00:00+01:00"},
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}],
            "name": [
                {"use": "usual", "family": "Usual", "given": ["U"]},
                {"use": "official", "family": "Smith", "given": ["Jane", "Ann"]},
                {"use": "maiden", "family": "Old"}
            ],
            "gender": "female", "birthDate": "1980-02-03",
            "address": [
                {"use": "old", "line": ["9 Gone Rd"]},
                {"use": "home", "line": ["1 High St"], "city": "Poole", "postalCode": "bh15 1aa"}
            ],
            "generalPractitioner": [{"type": "Organization", "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "J82001"}}]
        })
    }

    #[test]
    fn a_patient_states_its_demographics_under_its_nhs_number_and_id() {
        let IngestCommand::Demographics {
            identity,
            source_time,
            demographics,
            death,
            partial,
        } = one(patient_json())
        else {
            panic!("not demographics");
        };
        assert!(
            partial.is_none(),
            "a FHIR Patient states its whole demographics"
        );
        assert_eq!(identity.nhs_number().unwrap().digits(), "9434765919");
        assert_eq!(identity.local_id().unwrap().value(), "p1");
        assert_eq!(source_time.to_rfc3339(), "2026-03-01T09:00:00+00:00");
        let name = demographics.name.unwrap();
        assert_eq!((name.family(), name.given()), ("Smith", "Jane"));
        assert_eq!(demographics.birth_date, Some(day(1980, 2, 3)));
        assert_eq!(demographics.gender, Some(Gender::Female));
        let address = demographics.address.unwrap();
        assert_eq!(address.lines(), ["1 High St", "Poole"]);
        assert_eq!(address.postcode().unwrap().as_str(), "BH15 1AA");
        assert_eq!(demographics.registered_gp.unwrap().code(), "J82001");
        assert_eq!(death, DeathStatement::NotStated);
    }

    #[test]
    fn a_bad_nhs_number_is_refused_naming_the_identifier() {
        let mut patient = patient_json();
        patient["identifier"][0]["value"] = json!("9434765918");
        let e = map(patient).unwrap_err();
        assert_eq!(e.location, "Patient.identifier");
        assert!(e.message.contains("check digit"), "{e}");
    }

    #[test]
    fn an_unverified_nhs_number_does_not_identify_the_person() {
        let mut patient = patient_json();
        patient["identifier"][0]["extension"] = json!([{
            "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus",
            "valueCodeableConcept": {"coding": [{"code": "02"}]}
        }]);
        let IngestCommand::Demographics { identity, .. } = one(patient) else {
            panic!()
        };
        assert!(identity.nhs_number().is_none());
        assert_eq!(identity.local_id().unwrap().value(), "p1");
    }

    #[test]
    fn foreign_identifiers_leave_the_resource_id_as_the_local_id() {
        let IngestCommand::Demographics { identity, .. } = one(json!({
            "resourceType": "Patient", "id": "abc",
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-94-5397"}]
        })) else {
            panic!()
        };
        assert!(identity.nhs_number().is_none());
        assert_eq!(identity.local_id().unwrap().value(), "abc");
        // Without an id, the first other identifier (an MR one preferred) serves.
        let IngestCommand::Demographics { identity, .. } = one(json!({
            "resourceType": "Patient",
            "identifier": [
                {"system": "x", "value": "first"},
                {"type": {"coding": [{"code": "MR"}]}, "value": "mrn-1"}
            ]
        })) else {
            panic!()
        };
        assert_eq!(identity.local_id().unwrap().value(), "mrn-1");
        assert_eq!(
            location(json!({"resourceType": "Patient"})),
            "Patient.identifier"
        );
    }

    #[test]
    fn deceased_x_says_died_alive_or_is_refused_without_a_date() {
        let with = |field: &str, value: Value| {
            let mut p = patient_json();
            p[field] = value;
            p
        };
        let death = |p: Value| match one(p) {
            IngestCommand::Demographics { death, .. } => death,
            _ => panic!(),
        };
        assert_eq!(
            death(with("deceasedDateTime", json!("2015-02-14T23:42:00+10:00"))),
            DeathStatement::Deceased(day(2015, 2, 14)),
            "the date as written, not the UTC one"
        );
        assert_eq!(
            death(with("deceasedBoolean", json!(false))),
            DeathStatement::NotDeceased
        );
        let e = map(with("deceasedBoolean", json!(true))).unwrap_err();
        assert_eq!(e.location, "Patient.deceased[x]");
        assert_eq!(
            location(with("deceasedDateTime", json!("2015"))),
            "Patient.deceased[x]"
        );
    }

    #[test]
    fn addresses_keep_every_line_and_a_foreign_postcode() {
        let mut patient = patient_json();
        patient["address"] = json!([{
            "line": ["1", "2", "3", "4", "5"], "city": "Town", "state": "Vic",
            "postalCode": "3999", "country": "AUS"
        }]);
        let IngestCommand::Demographics { demographics, .. } = one(patient) else {
            panic!()
        };
        let address = demographics.address.unwrap();
        assert_eq!(
            address.lines(),
            ["1", "2", "3", "4", "5", "Town, Vic, AUS, 3999"]
        );
        assert!(address.postcode().is_none());
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named() {
        let mut patient = patient_json();
        patient["gender"] = json!(5);
        assert_eq!(location(patient), "Patient.gender");
        let mut patient = patient_json();
        patient["gender"] = json!("boy");
        assert_eq!(location(patient), "Patient.gender");
        let mut patient = patient_json();
        patient["birthDate"] = json!("03/02/1980");
        assert_eq!(location(patient), "Patient.birthDate");
    }

    #[test]
    fn other_resource_types_are_refused_by_name() {
        let e = map(json!({"resourceType": "Consent", "id": "c"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "resourceType: resourceType Consent is not one this record reads"
        );
    }

    fn flag_json(code: &str, category: &str) -> Value {
        json!({
            "resourceType": "Flag", "id": "f1", "status": "active",
            "category": [{"coding": [{"code": category}]}],
            "code": {"text": code},
            "subject": {"reference": "Patient/p1"},
            "period": {"start": "2025-01-02"}
        })
    }

    #[test]
    fn flags_are_categorised_by_their_text_then_their_category() {
        let category = |code: &str, cat: &str| alert(one(flag_json(code, cat))).2.category();
        assert_eq!(
            category("Big dog", "safety"),
            AlertCategory::EnvironmentalHazard
        );
        assert_eq!(
            category("Keys under mat", "safety"),
            AlertCategory::EnvironmentalHazard
        );
        assert_eq!(
            category("Safeguarding concern", "safety"),
            AlertCategory::Safeguarding
        );
        assert_eq!(
            category("Domestic violence in household", "clinical"),
            AlertCategory::Safeguarding
        );
        assert_eq!(
            category("Needs BSL interpreter", "contact"),
            AlertCategory::CommunicationNeed
        );
        assert_eq!(
            category("Patient has a severe peanut allergy.", "diet"),
            AlertCategory::Allergy
        );
        assert_eq!(category("Warfarin", "drug"), AlertCategory::Medication);
        assert_eq!(
            category("Known to be aggressive", "behavioral"),
            AlertCategory::EnvironmentalHazard
        );
        assert_eq!(
            category("Prefers morning visits", "behavioral"),
            AlertCategory::Other
        );
    }

    #[test]
    fn a_flag_is_held_by_its_id_and_ends_when_inactive() {
        let (identity, reference, details) = alert(one(flag_json("Big dog", "safety")));
        assert_eq!(identity.local_id().unwrap().value(), "p1");
        assert_eq!(reference, "Flag/f1");
        assert_eq!(details.active_from(), day(2025, 1, 2));
        assert_eq!(details.active_to(), None);
        let mut inactive = flag_json("Big dog", "safety");
        inactive["status"] = json!("inactive");
        inactive["meta"] = json!({"lastUpdated": "2025-06-01T00:00:00Z"});
        assert_eq!(alert(one(inactive)).2.active_to(), Some(day(2025, 6, 1)));
    }

    fn allergy_json() -> Value {
        json!({
            "resourceType": "AllergyIntolerance", "id": "a1",
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "criticality": "high",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "227493005", "display": "Cashew nuts"}]},
            "patient": {"reference": "Patient/p1"},
            "onsetDateTime": "2004",
            "recordedDate": "2014-10-09T14:58:00+11:00",
            "reaction": [
                {"manifestation": [{"coding": [{"display": "Anaphylactic reaction"}]}]},
                {"manifestation": [{"coding": [{"display": "Urticaria"}]}, {"text": "Anaphylactic reaction"}]}
            ]
        })
    }

    #[test]
    fn an_allergy_becomes_an_allergy_alert_with_its_reactions() {
        let (_, reference, details) = alert(one(allergy_json()));
        assert_eq!(reference, "AllergyIntolerance/a1");
        assert_eq!(details.category(), AlertCategory::Allergy);
        assert_eq!(
            details.description(),
            "Allergy: Cashew nuts (reaction: Anaphylactic reaction, Urticaria)"
        );
        assert_eq!(details.severity(), Severity::High);
        assert_eq!(details.recorded(), day(2014, 10, 9));
        assert_eq!(details.active_from(), day(2014, 10, 9));
        assert_eq!(details.active_to(), None);
    }

    #[test]
    fn a_resolved_or_refuted_allergy_ends() {
        for (field, code) in [
            ("clinicalStatus", "resolved"),
            ("clinicalStatus", "inactive"),
            ("verificationStatus", "refuted"),
            ("verificationStatus", "entered-in-error"),
        ] {
            let mut a = allergy_json();
            a[field] = json!({"coding": [{"code": code}]});
            assert!(alert(one(a)).2.active_to().is_some(), "{code}");
        }
    }

    #[test]
    fn long_reaction_lists_are_shortened_to_fit_an_alert() {
        let mut a = allergy_json();
        a["reaction"] = json!([{"manifestation": (0..80).map(|i| json!({"text": format!("reaction number {i}")})).collect::<Vec<_>>()}]);
        let (_, _, details) = alert(one(a));
        assert_eq!(details.description().chars().count(), DESCRIPTION_MAX);
        assert!(details.description().ends_with("…)"));
    }

    #[test]
    fn no_known_allergy_is_refused_as_stating_an_absence() {
        let mut a = allergy_json();
        a["code"] = json!({"coding": [{"system": "http://snomed.info/sct", "code": "716186003", "display": "No Known Allergy (situation)"}]});
        let e = map(a).unwrap_err();
        assert_eq!(e.location, "AllergyIntolerance.code");
        assert!(e.message.contains("no allergy is known"), "{e}");
    }

    fn referral_json(status: &str) -> Value {
        json!({
            "resourceType": "ServiceRequest", "id": "r1", "status": status,
            "meta": {"lastUpdated": "2026-02-01T09:00:00Z"},
            "subject": {"reference": "Patient/p1"},
            "authoredOn": "2026-01-15",
            "performerType": {"text": "Children's social care"},
            "requester": {"display": "Dorset Police"}
        })
    }

    fn referral(command: IngestCommand) -> (String, ReferralDetails) {
        match command {
            IngestCommand::Referral {
                source_ref,
                details,
                ..
            } => (source_ref, details),
            other => panic!("not a referral: {other:?}"),
        }
    }

    #[test]
    fn a_service_request_is_a_referral_by_its_status() {
        let (reference, open) = referral(one(referral_json("active")));
        assert_eq!(reference, "r1");
        assert_eq!(open.status(), ReferralStatus::AwaitingDecision);
        assert_eq!(open.received(), day(2026, 1, 15));
        assert_eq!(open.team(), "Children's social care");
        assert_eq!(open.referral_source(), ReferralSource::Police);
        assert_eq!(open.closed(), None);
        for status in ["completed", "revoked", "entered-in-error"] {
            let (_, closed) = referral(one(referral_json(status)));
            assert_eq!(closed.status(), ReferralStatus::ClosedNoFurtherAction);
            assert_eq!(closed.closed(), Some(day(2026, 2, 1)));
        }
        assert_eq!(location(referral_json("unknown")), "ServiceRequest.status");
    }

    #[test]
    fn the_requesters_kind_gives_the_referral_source_when_its_name_does_not() {
        let with = |requester: Value| {
            let mut r = referral_json("active");
            r["requester"] = requester;
            referral(one(r)).1.referral_source()
        };
        assert_eq!(
            with(json!({"reference": "Patient/p1"})),
            ReferralSource::SelfReferral
        );
        assert_eq!(
            with(json!({"reference": "RelatedPerson/m"})),
            ReferralSource::Family
        );
        assert_eq!(
            with(json!({"reference": "Practitioner/d", "display": "Dr Who"})),
            ReferralSource::Health
        );
        assert_eq!(
            with(json!({"display": "St Mary's Primary School"})),
            ReferralSource::School
        );
        assert_eq!(
            with(json!({"reference": "Organization/o"})),
            ReferralSource::Other
        );
    }

    #[test]
    fn a_subject_resolves_through_the_bundle_an_nhs_number_or_a_local_id() {
        let source = source();
        let mut context = BundleContext::default();
        context.add_entry(Some("urn:uuid:1"), &patient_json(), &source);
        let subject = |reference: Value| {
            let mut r = referral_json("active");
            r["subject"] = reference;
            map_resource(&r, &source, &context).map(|c| match &c[0] {
                IngestCommand::Referral { identity, .. } => identity.clone(),
                _ => panic!(),
            })
        };
        let by_url = subject(json!({"reference": "urn:uuid:1"})).unwrap();
        assert_eq!(by_url.nhs_number().unwrap().digits(), "9434765919");
        let by_id = subject(json!({"reference": "Patient/p1"})).unwrap();
        assert_eq!(by_id, by_url);
        let by_nhs = subject(json!({"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "943 476 5919"}})).unwrap();
        assert_eq!(by_nhs.nhs_number(), by_url.nhs_number());
        assert!(by_nhs.local_id().is_none());
        let remote =
            subject(json!({"reference": "https://example.org/fhir/Patient/77/_history/2"}))
                .unwrap();
        assert_eq!(remote.local_id().unwrap().value(), "77");
        for bad in [
            json!({"reference": "urn:uuid:2"}),
            json!({"reference": "Group/1"}),
            json!({"reference": "#p"}),
            json!({"display": "Someone"}),
            json!({"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "1"}}),
        ] {
            let e = subject(bad.clone()).unwrap_err();
            assert!(
                e.location.starts_with("ServiceRequest.subject"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn a_subject_that_is_an_unreadable_patient_of_the_bundle_says_so() {
        let source = source();
        let mut context = BundleContext::default();
        let mut bad = patient_json();
        bad["identifier"][0]["value"] = json!("123");
        context.add_entry(Some("urn:uuid:1"), &bad, &source);
        let mut r = referral_json("active");
        r["subject"] = json!({"reference": "urn:uuid:1"});
        let e = map_resource(&r, &source, &context).unwrap_err();
        assert!(e.message.contains("could not be read"), "{e}");
    }

    #[test]
    fn source_time_is_last_updated_then_the_bundles_then_undated() {
        let at = |t: &str| instant(t).unwrap();
        let bundle = BundleContext::new(Some(at("2026-05-05T00:00:00Z")));
        let time = |resource: &Value, context: &BundleContext| match &map_resource(
            resource,
            &source(),
            context,
        )
        .unwrap()[0]
        {
            IngestCommand::Demographics { source_time, .. } => *source_time,
            _ => panic!(),
        };
        let dated = patient_json();
        assert_eq!(time(&dated, &bundle), at("2026-03-01T09:00:00Z"));
        let mut undated = patient_json();
        undated.as_object_mut().unwrap().remove("meta");
        assert_eq!(time(&undated, &bundle), at("2026-05-05T00:00:00Z"));
        assert_eq!(time(&undated, &BundleContext::default()), UNDATED);
        let mut bad = patient_json();
        bad["meta"]["lastUpdated"] = json!("yesterday");
        assert_eq!(location(bad), "Patient.meta.lastUpdated");
    }

    #[test]
    fn fhir_dates_read_as_written() {
        assert_eq!(date("2014-02-14").unwrap(), Some(day(2014, 2, 14)));
        assert_eq!(
            date("2015-02-14T23:42:00-04:00").unwrap(),
            Some(day(2015, 2, 14))
        );
        assert_eq!(date("2004").unwrap(), None);
        assert_eq!(date("2012-06").unwrap(), None);
        for bad in [
            "",
            "2012-13",
            "2014-02-30",
            "14/02/2014",
            "2014-02-14T10:00",
            "20140214",
        ] {
            assert!(date(bad).is_err(), "{bad:?}");
        }
        assert!(instant("2014-02-14").is_err());
    }

    #[test]
    fn references_name_their_type_and_id() {
        assert_eq!(typed_tail("Patient/1"), Some(("Patient", "1")));
        assert_eq!(
            typed_tail("http://x/fhir/Patient/1/_history/3"),
            Some(("Patient", "1"))
        );
        assert_eq!(typed_tail("urn:uuid:9"), None);
        assert_eq!(typed_tail("d5ffd0cd"), None);
        assert_eq!(typed_tail("fhir/patient/1"), None);
    }
}
