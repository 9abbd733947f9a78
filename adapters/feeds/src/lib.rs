//! Feeds: what hospital, GP and council systems send, mapped to the application's
//! ingest commands and applied through a [`care_application::FeedSession`] — or, when a
//! message cannot be read or applied, quarantined with its raw bytes and the reason.
//! Nothing a feed sends is dropped: each message ends applied, unchanged or quarantined,
//! and the [`intake::Report`] says which.
//!
//! - [`csv`]: council CSV extracts (referrals, alerts) read as a stream, each row
//!   applied or quarantined with its line and column; and re-submission of a row.
//! - [`fhir`]: FHIR R4 JSON (Patient, ServiceRequest, Flag, AllergyIntolerance; one
//!   resource or a Bundle of any type) mapped to commands, one message per entry.
//! - [`hl7`]: HL7 v2 messages (ADT, merges, deaths, AL1 allergies, REF referrals) mapped
//!   to commands; parsing is `care-hl7`'s.
//! - [`intake`]: one submission (an HTTP body, an MLLP frame) split into messages, each
//!   applied or quarantined; and re-submission of quarantined messages.
//! - [`mllp`]: the MLLP listener (framing, one ACK per message, back-pressure).

pub mod csv;
pub mod fhir;
pub mod hl7;
pub mod intake;
pub mod mllp;
mod time;

pub use intake::{Intake, MessageReport, Outcome, Report};
