//! HL7 v2 messages mapped to ingest commands.
//!
//! | message | commands |
//! |---|---|
//! | ADT A01 A02 A04 A05 A06 A07 A08 A28 A31 | demographics from PID (and PD1-3, the registered practice), death from PID-29/PID-30, one alert per AL1 |
//! | ADT A03 (discharge) | death from PID-29/PID-30 when it carries one, else nothing |
//! | ADT A40, A34 | a merge per PID/MRG pair: PID-3 survives, MRG-1 is retired |
//! | REF I12 I13 I14 | demographics as above, and the referral from RF1 (and PRD); I14 (cancel) closes it |
//!
//! Anything else is an error (so the message is quarantined, not dropped): a later
//! version that reads it can be given the quarantined message again.
//!
//! Identifiers (PID-3, MRG-1): a repetition whose type (CX-5) is `NH`/`NHSNMBR` or
//! whose authority (CX-4) is `NHS`/`NHSNBR` (or the NHS number OID in CX-4.2) is the NHS number, and must pass its check
//! digit; the first other repetition is the source's local id (preferring type `MR`).
//! The source is the feed's own, never what MSH-3/MSH-4 claim.
//!
//! Source time: EVN-2 (when the event was recorded), else MSH-7; without an offset, UK
//! local time.

use std::borrow::Cow;

use care_alert::{AlertCategory, AlertDetails, Severity};
use care_application::{DeathStatement, IngestCommand, PersonIdentity};
use care_hl7::{Message, Repetition, Segment};
use care_kernel::{Date, SourceId, Timestamp};
use care_person::{
    Address, DemographicFields, Demographics, Gender, GpPractice, LocalId, NhsNumber, PersonName,
    Postcode,
};
use care_referral::{ReferralDetails, ReferralSource, ReferralStatus};

use sha2::{Digest, Sha256};

use crate::time;

/// Why a message could not be mapped: where (an HL7 location such as `PID-3` or
/// `MSH-9`) and what, in words for the quarantine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct MapError {
    /// The segment and field.
    pub location: String,
    /// What was wrong.
    pub message: String,
}

fn err(location: impl Into<String>, message: impl Into<String>) -> MapError {
    MapError {
        location: location.into(),
        message: message.into(),
    }
}

/// The message types that state demographics.
const DEMOGRAPHIC_EVENTS: [&str; 9] = [
    "A01", "A02", "A04", "A05", "A06", "A07", "A08", "A28", "A31",
];

/// Maps one parsed message from `source` to the commands it states, in order. An empty
/// list means the message states nothing this record keeps (a discharge without a
/// death).
pub fn map_message(
    message: &Message<'_>,
    source: &SourceId,
) -> Result<Vec<IngestCommand>, MapError> {
    let (kind, event) = message.message_type();
    let event = if event.is_empty() {
        // Some senders put the trigger only in EVN-1.
        message
            .segment("EVN")
            .map(|evn| evn.field(1).value())
            .unwrap_or_default()
    } else {
        event
    };
    let at = source_time(message)?;
    match (kind.as_ref(), event.as_ref()) {
        ("ADT", e) if DEMOGRAPHIC_EVENTS.contains(&e) => {
            let (identity, stated) = patient(message, source, at)?;
            let mut commands = vec![stated];
            commands.extend(allergies(message, &identity, at)?);
            Ok(commands)
        }
        ("ADT", "A03") => {
            let pid = required_segment(message, "PID")?;
            let identity = identity(&pid, 3, "PID-3", source)?;
            Ok(match death(&pid)? {
                DeathStatement::NotStated => Vec::new(),
                stated => vec![IngestCommand::Death {
                    identity,
                    source_time: at,
                    death: stated,
                }],
            })
        }
        ("ADT", "A40" | "A34") => merges(message, source, at),
        ("REF", "I12" | "I13" | "I14") => {
            let (identity, stated) = patient(message, source, at)?;
            let mut commands = vec![stated];
            // I14 cancels the referral, whatever RF1-1 still says.
            let cancelled = event.as_ref() == "I14";
            commands.push(referral(message, &identity, at, cancelled)?);
            commands.extend(allergies(message, &identity, at)?);
            Ok(commands)
        }
        (kind, event) => Err(err(
            "MSH-9",
            format!("message type {kind}^{event} is not one this record reads"),
        )),
    }
}

/// Whom PID names, and what it states about them (HL7 fields are partial: an empty one
/// is "not sent", and `""` clears what this source said before).
fn patient(
    message: &Message<'_>,
    source: &SourceId,
    at: Timestamp,
) -> Result<(PersonIdentity, IngestCommand), MapError> {
    let pid = required_segment(message, "PID")?;
    let identity = identity(&pid, 3, "PID-3", source)?;
    let (demographics, cleared) = demographics(message, &pid)?;
    let stated = IngestCommand::Demographics {
        identity: identity.clone(),
        source_time: at,
        demographics,
        death: death(&pid)?,
        partial: Some(cleared),
    };
    Ok((identity, stated))
}

fn required_segment<'a>(message: &Message<'a>, id: &str) -> Result<Segment<'a>, MapError> {
    message
        .segment(id)
        .ok_or_else(|| err(id, format!("the message has no {id} segment")))
}

fn source_time(message: &Message<'_>) -> Result<Timestamp, MapError> {
    if let Some(evn) = message.segment("EVN") {
        let recorded = evn.field(2);
        if !recorded.is_empty() {
            return time::timestamp(&recorded.value()).map_err(|e| err("EVN-2", e));
        }
    }
    let sent = message.header().field(7);
    if sent.is_empty() {
        return Err(err(
            "MSH-7",
            "no message time (MSH-7) or event time (EVN-2): updates cannot be ordered",
        ));
    }
    time::timestamp(&sent.value()).map_err(|e| err("MSH-7", e))
}

/// The OID of the NHS number (England and Wales), as CX-4.2 (HD universal id) may give
/// the assigning authority.
const NHS_NUMBER_OID: &str = "2.16.840.1.113883.2.1.4.1";

fn is_nhs(rep: &Repetition<'_>) -> bool {
    let kind = rep.component(5).value();
    let authority = rep.component(4);
    matches!(kind.as_ref(), "NH" | "NHSNMBR" | "NHS")
        || matches!(authority.value().as_ref(), "NHS" | "NHSNBR" | "NHS NUMBER")
        || authority.subcomponent(2).value() == NHS_NUMBER_OID
}

/// The identity a CX list names: the NHS number and the local id.
fn identity(
    segment: &Segment<'_>,
    field: usize,
    location: &str,
    source: &SourceId,
) -> Result<PersonIdentity, MapError> {
    let mut nhs = None;
    let mut local: Option<(bool, String)> = None;
    for rep in segment.field(field).repetitions() {
        let id = rep.component(1).value();
        let id = id.trim();
        if id.is_empty() {
            continue;
        }
        if is_nhs(&rep) {
            let number = NhsNumber::parse(id)
                .map_err(|e| err(location, format!("NHS number {id:?}: {}", e.reason)))?;
            if nhs.as_ref().is_some_and(|held| held != &number) {
                return Err(err(location, "two different NHS numbers"));
            }
            nhs = Some(number);
        } else {
            let is_mr = rep.component(5).value() == "MR";
            let better = match &local {
                None => true,
                Some((held_mr, _)) => is_mr && !held_mr,
            };
            if better {
                local = Some((is_mr, id.to_owned()));
            }
        }
    }
    let local = local
        .map(|(_, id)| {
            LocalId::new(source.clone(), &id)
                .map_err(|e| err(location, format!("local id {id:?}: {}", e.reason)))
        })
        .transpose()?;
    PersonIdentity::new(nhs, local).map_err(|_| {
        err(
            location,
            "no identifier: neither an NHS number nor a local id",
        )
    })
}

/// What PID (and PD1) state, and which fields they clear with `""`.
fn demographics(
    message: &Message<'_>,
    pid: &Segment<'_>,
) -> Result<(Demographics, DemographicFields), MapError> {
    let pd1 = message.segment("PD1");
    let cleared = DemographicFields {
        name: pid.field(5).is_null(),
        birth_date: pid.field(7).is_null(),
        gender: pid.field(8).is_null(),
        address: pid.field(11).is_null(),
        registered_gp: pd1.as_ref().is_some_and(|pd1| pd1.field(3).is_null()),
    };
    let name_field = pid.field(5);
    let name = if name_field.is_empty() || cleared.name {
        None
    } else {
        let xpn = name_field.repetition(0);
        let family = xpn.component(1).value();
        let given = xpn.component(2).value();
        Some(
            PersonName::new(family.trim(), given.trim())
                .map_err(|e| err("PID-5", e.reason.clone()))?,
        )
    };
    let birth_date = time::date(&pid.field(7).value()).map_err(|e| err("PID-7", e))?;
    let gender = match pid.field(8).value().trim() {
        "" => None,
        "M" => Some(Gender::Male),
        "F" => Some(Gender::Female),
        "O" | "A" | "N" => Some(Gender::Other),
        "U" => Some(Gender::Unknown),
        other => {
            return Err(err(
                "PID-8",
                format!("{other:?} is not an HL7 administrative sex"),
            ));
        }
    };
    let address = address(&pid.field(11).repetition(0))?;
    let registered_gp = match pd1 {
        Some(pd1) if !pd1.field(3).is_empty() => practice(&pd1.field(3).repetition(0))?,
        _ => None,
    };
    let stated = Demographics {
        name,
        birth_date,
        gender,
        address,
        registered_gp,
    };
    Ok((stated, cleared))
}

/// An XAD address: street lines, other designation, city, county; the zip/postal code
/// as the postcode when it is a UK one (else it stays a line, so nothing is lost).
fn address(xad: &Repetition<'_>) -> Result<Option<Address>, MapError> {
    let mut lines: Vec<String> = Vec::new();
    // XAD-1 is a SAD: street, street name, dwelling number as subcomponents.
    let street: Vec<String> = xad
        .component(1)
        .subcomponents()
        .map(|s| s.value().trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if !street.is_empty() {
        lines.push(street.join(" "));
    }
    for n in [2, 3, 4] {
        let part = xad.component(n).text();
        let part = part.trim();
        if !part.is_empty() {
            lines.push(part.to_owned());
        }
    }
    let zip = xad.component(5).value();
    let zip = zip.trim();
    let postcode = if zip.is_empty() {
        None
    } else {
        match Postcode::parse(zip) {
            Ok(p) => Some(p),
            Err(_) => {
                lines.push(zip.to_owned());
                None
            }
        }
    };
    if lines.is_empty() && postcode.is_none() {
        return Ok(None);
    }
    lines.truncate(6);
    Address::new(lines, postcode)
        .map(Some)
        .map_err(|e| err("PID-11", e.reason.clone()))
}

/// PD1-3, the patient's primary facility (XON): name, and the organisation code from
/// XON-10 (v2.5+) or XON-3 (earlier versions).
fn practice(xon: &Repetition<'_>) -> Result<Option<GpPractice>, MapError> {
    let name = xon.component(1).value();
    let code = {
        let v25 = xon.component(10).value();
        if v25.trim().is_empty() {
            xon.component(3).value()
        } else {
            v25
        }
    };
    let code = code.trim();
    if code.is_empty() {
        return Ok(None);
    }
    let name = name.trim();
    GpPractice::new(code, (!name.is_empty()).then_some(name))
        .map(Some)
        .map_err(|e| err("PD1-3", e.reason.clone()))
}

/// PID-29 (date of death) and PID-30 (death indicator).
fn death(pid: &Segment<'_>) -> Result<DeathStatement, MapError> {
    let when = time::date(&pid.field(29).value()).map_err(|e| err("PID-29", e))?;
    let indicator = pid.field(30).value();
    match (indicator.trim(), when) {
        ("N", Some(_)) => Err(err(
            "PID-30",
            "says not deceased but PID-29 gives a date of death",
        )),
        ("N", None) => Ok(DeathStatement::NotDeceased),
        ("Y" | "", Some(date)) => Ok(DeathStatement::Deceased(date)),
        ("Y", None) => Err(err(
            "PID-29",
            "PID-30 says deceased but there is no date of death",
        )),
        ("", None) => Ok(DeathStatement::NotStated),
        (other, _) => Err(err("PID-30", format!("{other:?} is not Y or N"))),
    }
}

/// One alert per AL1 segment. The allergen (AL1-3) names it, so the same allergy sent
/// again updates the same alert.
fn allergies(
    message: &Message<'_>,
    identity: &PersonIdentity,
    at: Timestamp,
) -> Result<Vec<IngestCommand>, MapError> {
    let mut commands = Vec::new();
    for (i, al1) in message.segments_named("AL1").enumerate() {
        let location = |field: usize| format!("AL1[{}]-{field}", i + 1);
        let allergen = al1.field(3).repetition(0);
        let code = allergen.component(1).value();
        let text = allergen.component(2).value();
        let label: Cow<'_, str> = if text.trim().is_empty() {
            code.clone()
        } else {
            text
        };
        if label.trim().is_empty() {
            return Err(err(location(3), "no allergen code or text"));
        }
        let kind = al1.field(2).component(1).value();
        let reaction = al1.field(5).text();
        let description = if reaction.trim().is_empty() {
            format!("Allergy: {}", label.trim())
        } else {
            format!("Allergy: {} (reaction: {})", label.trim(), reaction.trim())
        };
        let severity = match al1.field(4).component(1).value().trim() {
            "SV" => Severity::High,
            "MO" => Severity::Moderate,
            "MI" => Severity::Low,
            _ => Severity::Unknown,
        };
        let identified: Option<Date> =
            time::date(&al1.field(6).value()).map_err(|e| err(location(6), e))?;
        let recorded = identified.unwrap_or_else(|| at.date_naive());
        let details = AlertDetails::new(
            AlertCategory::Allergy,
            &description,
            severity,
            recorded,
            recorded,
            None,
        )
        .map_err(|e| err(location(3), e.reason.clone()))?;
        let key = if code.trim().is_empty() {
            label.trim()
        } else {
            code.trim()
        };
        commands.push(IngestCommand::Alert {
            identity: identity.clone(),
            source_ref: allergy_ref(identity, kind.trim(), key),
            details,
            source_time: at,
        });
    }
    Ok(commands)
}

/// The reference an AL1 allergy is known by: AL1 has no id of its own, so the person
/// (this source's id for them, else their NHS number), the allergen type and the
/// allergen name it — the same allergy sent again updates the same alert, and another
/// person's same allergy is another alert. Long ones are shortened with a digest (alert
/// references are at most 64 characters).
fn allergy_ref(identity: &PersonIdentity, kind: &str, allergen: &str) -> String {
    let person = identity
        .local_id()
        .map(|l| l.value().to_owned())
        .or_else(|| identity.nhs_number().map(NhsNumber::digits))
        .unwrap_or_default();
    let full = format!("AL1:{person}:{kind}:{}", allergen.to_lowercase());
    if full.len() <= 64 {
        return full;
    }
    let digest = Sha256::digest(full.as_bytes());
    let short: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("AL1:{short}")
}

/// Each PID/MRG pair of an A40 (or A34): the PID record survives, the MRG one retires.
fn merges(
    message: &Message<'_>,
    source: &SourceId,
    at: Timestamp,
) -> Result<Vec<IngestCommand>, MapError> {
    let mut commands = Vec::new();
    let mut survivor: Option<PersonIdentity> = None;
    for segment in message.segments() {
        match segment.id() {
            "PID" => survivor = Some(identity(&segment, 3, "PID-3", source)?),
            "MRG" => {
                let Some(keep) = survivor.clone() else {
                    return Err(err("MRG", "an MRG segment before any PID"));
                };
                let retired = identity(&segment, 1, "MRG-1", source)?;
                if retired.local_id().is_none() {
                    return Err(err(
                        "MRG-1",
                        "the retired record must be named by this source's own id",
                    ));
                }
                commands.push(IngestCommand::Merge {
                    survivor: keep,
                    retired,
                    source_time: at,
                });
            }
            _ => {}
        }
    }
    if commands.is_empty() {
        return Err(err("MRG", "a merge message without an MRG segment"));
    }
    Ok(commands)
}

/// The referral of a REF^I12–I14: RF1-6 names it; RF1-1 is its status; RF1-3 (or the
/// referred-to provider, PRD with role RT) the team; the referring provider (PRD RP)
/// makes it a referral from health.
fn referral(
    message: &Message<'_>,
    identity: &PersonIdentity,
    at: Timestamp,
    cancelled: bool,
) -> Result<IngestCommand, MapError> {
    let rf1 = required_segment(message, "RF1")?;
    let reference = rf1.field(6).component(1).value();
    let reference = reference.trim();
    if reference.is_empty() {
        return Err(err("RF1-6", "no originating referral identifier"));
    }
    let status = match rf1.field(1).component(1).value().trim() {
        _ if cancelled => ReferralStatus::ClosedNoFurtherAction,
        "P" | "" => ReferralStatus::AwaitingDecision,
        "A" => ReferralStatus::Accepted,
        "R" | "E" => ReferralStatus::ClosedNoFurtherAction,
        other => {
            return Err(err(
                "RF1-1",
                format!("{other:?} is not a referral status (A, E, P, R)"),
            ));
        }
    };
    let received = time::date(&rf1.field(7).value())
        .map_err(|e| err("RF1-7", e))?
        .or(time::date(&rf1.field(9).value()).map_err(|e| err("RF1-9", e))?)
        .unwrap_or_else(|| at.date_naive());
    let mut team = {
        let t = rf1.field(3).component(2).value();
        if t.trim().is_empty() {
            rf1.field(3).component(1).value().into_owned()
        } else {
            t.into_owned()
        }
    };
    let mut from_provider = false;
    for prd in message.segments_named("PRD") {
        match prd.field(1).component(1).value().as_ref() {
            "RT" if team.trim().is_empty() => {
                let facility = prd.field(4).component(1).value();
                let name = prd.field(2).repetition(0);
                team = if facility.trim().is_empty() {
                    format!(
                        "{} {}",
                        name.component(2).value(),
                        name.component(1).value()
                    )
                } else {
                    facility.into_owned()
                };
            }
            "RP" => from_provider = true,
            _ => {}
        }
    }
    if team.trim().is_empty() {
        return Err(err(
            "RF1-3",
            "no team or specialty referred to (RF1-3 or PRD RT)",
        ));
    }
    let closed = status
        .is_closed()
        .then(|| {
            time::date(&rf1.field(8).value())
                .map_err(|e| err("RF1-8", e))
                .map(|d| d.unwrap_or_else(|| at.date_naive()).max(received))
        })
        .transpose()?;
    let referral_source = if from_provider {
        ReferralSource::Health
    } else {
        ReferralSource::Other
    };
    let details = ReferralDetails::new(received, &team, referral_source, status, closed, None)
        .map_err(|e| err("RF1", e.to_string()))?;
    Ok(IngestCommand::Referral {
        identity: identity.clone(),
        source_ref: reference.to_owned(),
        details,
        source_time: at,
    })
}
