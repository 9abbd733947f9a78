//! The access audit (SPEC §3 "Access audit"): one event per access that touches a person,
//! in a tamper-evident **hash chain**, and the access report the DPO runs from it.
//!
//! Each event is encoded canonically (a fixed field order, every field length-prefixed)
//! and hashed with SHA-256 together with the previous event's hash and its own position.
//! The chain's head (length and last hash) is kept apart from the events, so a chain cut
//! short at its end is caught too. Events carry identifiers, never names or clinical
//! content.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use care_kernel::{
    AccessBasis, Action, DenyReason, OrganisationId, PersonId, Purpose, Role, Timestamp, UserId,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// What came of an access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "reason")]
pub enum Outcome {
    /// Data was returned or the change made.
    Permitted,
    /// Refused, and why.
    Denied(DenyReason),
}

/// One access, as the audit records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When (the application clock's time).
    pub at: Timestamp,
    /// Who.
    pub user: UserId,
    /// Their organisation.
    pub organisation: OrganisationId,
    /// The role they acted in.
    pub role: Role,
    /// From which address.
    pub client: IpAddr,
    /// What they did.
    pub action: Action,
    /// Whose record, when the access concerned one person.
    pub person: Option<PersonId>,
    /// What part, or which kind of query (never the query's values).
    pub resource: Option<String>,
    /// The declared purpose.
    pub purpose: Purpose,
    /// The basis asserted for an `ask_first` record.
    pub basis: Option<AccessBasis>,
    /// Permitted or denied.
    pub outcome: Outcome,
}

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Hash(#[serde(with = "hex_bytes")] [u8; 32]);

impl Hash {
    /// The hash before the first event.
    pub const GENESIS: Hash = Hash([0; 32]);

    /// Wraps raw digest bytes (as stored).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    /// The digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// Parses 64 hex digits.
    pub fn from_hex(raw: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(raw, &mut bytes).ok()?;
        Some(Self(bytes))
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", &hex::encode(self.0)[..12])
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// An event in its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainedEvent {
    /// Position in the chain, from 0.
    pub seq: u64,
    /// The event.
    pub event: AuditEvent,
    /// The hash of the event before (or [`Hash::GENESIS`]).
    pub prev_hash: Hash,
    /// SHA-256 over the previous hash and this event's canonical encoding.
    pub hash: Hash,
}

/// The end of the chain: how many events it has and the last one's hash. Kept apart
/// from the events (a chain-head row, or published elsewhere) so truncation shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// Number of events in the chain.
    pub len: u64,
    /// Hash of the last event, or [`Hash::GENESIS`] for an empty chain.
    pub last_hash: Hash,
}

impl Default for ChainHead {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl ChainHead {
    /// The head of an empty chain.
    pub const EMPTY: ChainHead = ChainHead {
        len: 0,
        last_hash: Hash::GENESIS,
    };

    /// Links `event` after this head and moves the head on. Adapters serialise calls
    /// to this (one writer at a time) and store the event and the new head together.
    pub fn append(&mut self, event: AuditEvent) -> ChainedEvent {
        let seq = self.len;
        let hash = hash_event(seq, &event, &self.last_hash);
        let chained = ChainedEvent {
            seq,
            event,
            prev_hash: self.last_hash,
            hash,
        };
        self.len += 1;
        self.last_hash = hash;
        chained
    }
}

/// Appends the canonical encoding of `(seq, event)`: version byte, then every field in a
/// fixed order, each as a tag, a 4-byte big-endian length and its bytes. No field can
/// run into the next, so two different events never encode alike.
pub fn encode_event(seq: u64, e: &AuditEvent, out: &mut Vec<u8>) {
    fn field(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
        out.push(tag);
        // Fields are bounded far below 4 GiB by the types that fill them.
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    fn optional(out: &mut Vec<u8>, tag: u8, bytes: Option<&[u8]>) {
        match bytes {
            Some(b) => field(out, tag, b),
            None => out.push(tag | 0x80),
        }
    }
    out.push(1);
    field(out, 1, &seq.to_be_bytes());
    let mut at = [0u8; 12];
    at[..8].copy_from_slice(&e.at.timestamp().to_be_bytes());
    at[8..].copy_from_slice(&e.at.timestamp_subsec_nanos().to_be_bytes());
    field(out, 2, &at);
    field(out, 3, e.user.as_str().as_bytes());
    field(out, 4, e.organisation.as_str().as_bytes());
    field(out, 5, e.role.as_str().as_bytes());
    match e.client {
        IpAddr::V4(v4) => field(out, 6, &v4.octets()),
        IpAddr::V6(v6) => field(out, 6, &v6.octets()),
    }
    field(out, 7, e.action.as_str().as_bytes());
    optional(
        out,
        8,
        e.person
            .as_ref()
            .map(|p| p.as_uuid())
            .as_ref()
            .map(|u| u.as_bytes().as_slice()),
    );
    optional(out, 9, e.resource.as_deref().map(str::as_bytes));
    field(out, 10, e.purpose.as_str().as_bytes());
    optional(
        out,
        11,
        e.basis.as_ref().map(|b| b.kind().as_str().as_bytes()),
    );
    optional(out, 12, e.basis.as_ref().map(|b| b.reason().as_bytes()));
    match e.outcome {
        Outcome::Permitted => field(out, 13, b"permitted"),
        Outcome::Denied(reason) => field(out, 14, reason.as_str().as_bytes()),
    }
}

/// The chain hash of an event: SHA-256(previous hash ‖ canonical encoding).
pub fn hash_event(seq: u64, event: &AuditEvent, prev: &Hash) -> Hash {
    let mut buf = Vec::with_capacity(256);
    encode_event(seq, event, &mut buf);
    let mut h = Sha256::new();
    h.update(prev.0);
    h.update(&buf);
    Hash(h.finalize().into())
}

/// How the chain is broken, at the first bad position.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ChainBreak {
    /// An event's position is not the next one: an event was removed or moved.
    #[error("event {position}: expected position {position}, found {found} (removed or reordered)")]
    OutOfSequence {
        /// The position expected.
        position: u64,
        /// The position the event claims.
        found: u64,
    },
    /// The event does not link to the one before.
    #[error("event {position}: does not link to the event before it")]
    BrokenLink {
        /// The first bad position.
        position: u64,
    },
    /// The event's content no longer matches its hash.
    #[error("event {position}: content does not match its hash (edited)")]
    Altered {
        /// The first bad position.
        position: u64,
    },
    /// Fewer events than the head says.
    #[error("chain ends after {found} events but its head records {expected} (truncated)")]
    Truncated {
        /// Events the head records.
        expected: u64,
        /// Events found.
        found: u64,
    },
    /// More events than the head says, or the last hash differs from the head.
    #[error("chain of {found} events does not end at its recorded head")]
    HeadMismatch {
        /// Events found.
        found: u64,
    },
}

impl ChainBreak {
    /// The position of the first bad event (for truncation: where the chain stops).
    pub fn position(&self) -> u64 {
        match self {
            ChainBreak::OutOfSequence { position, .. }
            | ChainBreak::BrokenLink { position }
            | ChainBreak::Altered { position } => *position,
            ChainBreak::Truncated { found, .. } | ChainBreak::HeadMismatch { found } => *found,
        }
    }
}

/// A chain that verified: its length and last hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedChain {
    /// Events verified.
    pub len: u64,
    /// The last hash.
    pub last_hash: Hash,
}

/// Verifies a chain streamed in order, one event at a time, in constant memory.
#[derive(Debug)]
pub struct ChainVerifier {
    next: u64,
    prev: Hash,
    buf: Vec<u8>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainVerifier {
    /// A verifier at the start of the chain.
    pub fn new() -> Self {
        Self {
            next: 0,
            prev: Hash::GENESIS,
            buf: Vec::with_capacity(256),
        }
    }

    /// Checks the next event: its position, its link to the one before, and its hash.
    pub fn push(&mut self, e: &ChainedEvent) -> Result<(), ChainBreak> {
        if e.seq != self.next {
            return Err(ChainBreak::OutOfSequence {
                position: self.next,
                found: e.seq,
            });
        }
        if e.prev_hash != self.prev {
            return Err(ChainBreak::BrokenLink { position: e.seq });
        }
        self.buf.clear();
        encode_event(e.seq, &e.event, &mut self.buf);
        let mut h = Sha256::new();
        h.update(self.prev.0);
        h.update(&self.buf);
        let hash = Hash(h.finalize().into());
        if hash != e.hash {
            return Err(ChainBreak::Altered { position: e.seq });
        }
        self.prev = hash;
        self.next += 1;
        Ok(())
    }

    /// Ends verification against the head kept apart from the events.
    pub fn finish(self, head: &ChainHead) -> Result<VerifiedChain, ChainBreak> {
        if self.next < head.len {
            return Err(ChainBreak::Truncated {
                expected: head.len,
                found: self.next,
            });
        }
        if self.next > head.len || self.prev != head.last_hash {
            return Err(ChainBreak::HeadMismatch { found: self.next });
        }
        Ok(VerifiedChain {
            len: self.next,
            last_hash: self.prev,
        })
    }
}

/// Verifies a whole chain against its head.
pub fn verify<'a>(
    events: impl IntoIterator<Item = &'a ChainedEvent>,
    head: &ChainHead,
) -> Result<VerifiedChain, ChainBreak> {
    let mut verifier = ChainVerifier::new();
    for e in events {
        verifier.push(e)?;
    }
    verifier.finish(head)
}

/// One line of an access report: an organisation and role's access to one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessReportRow {
    /// The organisation.
    pub organisation: OrganisationId,
    /// The role its staff acted in.
    pub role: Role,
    /// First permitted access in the period.
    pub first_access: Timestamp,
    /// Last permitted access in the period.
    pub last_access: Timestamp,
    /// Number of permitted accesses.
    pub accesses: u64,
    /// How many of them were under an asserted basis (ask first).
    pub with_basis: u64,
    /// Refused attempts in the period.
    pub refused: u64,
}

/// Which organisations accessed a person's record, when and in what role, over
/// `[from, to)` (looks at the record only: see [`Action::reads_the_record`]): one row per organisation and role, in order of first access. Rows with
/// only refused attempts are listed too, with no access times of their own beyond the
/// attempts'.
pub fn access_report<'a>(
    events: impl IntoIterator<Item = &'a AuditEvent>,
    person: PersonId,
    from: Timestamp,
    to: Timestamp,
) -> Vec<AccessReportRow> {
    let mut rows: BTreeMap<(OrganisationId, Role), AccessReportRow> = BTreeMap::new();
    for e in events {
        if e.person != Some(person) || e.at < from || e.at >= to || !e.action.reads_the_record() {
            continue;
        }
        let row = rows
            .entry((e.organisation.clone(), e.role))
            .or_insert_with(|| AccessReportRow {
                organisation: e.organisation.clone(),
                role: e.role,
                first_access: e.at,
                last_access: e.at,
                accesses: 0,
                with_basis: 0,
                refused: 0,
            });
        row.first_access = row.first_access.min(e.at);
        row.last_access = row.last_access.max(e.at);
        match e.outcome {
            Outcome::Permitted => {
                row.accesses += 1;
                row.with_basis += u64::from(e.basis.is_some());
            }
            Outcome::Denied(_) => row.refused += 1,
        }
    }
    let mut rows: Vec<_> = rows.into_values().collect();
    rows.sort_by(|a, b| {
        a.first_access
            .cmp(&b.first_access)
            .then(a.organisation.cmp(&b.organisation))
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use care_kernel::BasisKind;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn event(n: i64, person: u128, org: &str, outcome: Outcome) -> AuditEvent {
        AuditEvent {
            at: Timestamp::from_timestamp(1_700_000_000 + n, 0).unwrap(),
            user: UserId::parse("u1").unwrap(),
            organisation: OrganisationId::parse(org).unwrap(),
            role: Role::Clinician,
            client: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            action: Action::ReadDemographics,
            person: Some(PersonId::from_uuid(uuid::Uuid::from_u128(person))),
            resource: None,
            purpose: Purpose::DirectCare,
            basis: None,
            outcome,
        }
    }

    fn chain(n: usize) -> (Vec<ChainedEvent>, ChainHead) {
        let mut head = ChainHead::EMPTY;
        let events = (0..n)
            .map(|i| head.append(event(i as i64, 1, "ORG", Outcome::Permitted)))
            .collect();
        (events, head)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (events, head) = chain(5);
        assert_eq!(
            verify(&events, &head),
            Ok(VerifiedChain {
                len: 5,
                last_hash: head.last_hash
            })
        );
        assert!(verify(&[], &ChainHead::EMPTY).is_ok());
    }

    #[test]
    fn an_edited_event_is_found_at_its_position() {
        let (mut events, head) = chain(5);
        events[2].event.organisation = OrganisationId::parse("OTHER").unwrap();
        assert_eq!(
            verify(&events, &head),
            Err(ChainBreak::Altered { position: 2 })
        );
    }

    #[test]
    fn an_edited_event_with_its_hash_recomputed_breaks_the_next_link() {
        let (mut events, head) = chain(5);
        events[2].event.outcome = Outcome::Denied(DenyReason::OptedOut);
        events[2].hash = hash_event(2, &events[2].event, &events[2].prev_hash);
        assert_eq!(
            verify(&events, &head),
            Err(ChainBreak::BrokenLink { position: 3 })
        );
    }

    #[test]
    fn a_rewritten_tail_does_not_match_the_head_kept_apart() {
        let (mut events, head) = chain(5);
        let mut forged = ChainHead {
            len: 2,
            last_hash: events[1].hash,
        };
        events.truncate(2);
        for i in 2..5 {
            events.push(forged.append(event(i, 2, "FORGER", Outcome::Permitted)));
        }
        assert_eq!(
            verify(&events, &head),
            Err(ChainBreak::HeadMismatch { found: 5 })
        );
    }

    #[test]
    fn a_removed_event_is_found() {
        let (mut events, head) = chain(5);
        events.remove(1);
        assert_eq!(
            verify(&events, &head),
            Err(ChainBreak::OutOfSequence {
                position: 1,
                found: 2
            })
        );
    }

    #[test]
    fn reordered_events_are_found() {
        let (mut events, head) = chain(5);
        events.swap(3, 4);
        assert_eq!(
            verify(&events, &head),
            Err(ChainBreak::OutOfSequence {
                position: 3,
                found: 4
            })
        );
    }

    #[test]
    fn a_chain_cut_short_at_its_end_is_found_against_its_head() {
        let (mut events, head) = chain(5);
        events.truncate(3);
        let err = verify(&events, &head).unwrap_err();
        assert_eq!(
            err,
            ChainBreak::Truncated {
                expected: 5,
                found: 3
            }
        );
        assert_eq!(err.position(), 3);
    }

    #[test]
    fn every_field_is_covered_by_the_hash() {
        let base = event(0, 1, "ORG", Outcome::Permitted);
        let h = |e: &AuditEvent| hash_event(0, e, &Hash::GENESIS);
        let mut variants = vec![];
        let mut e = base.clone();
        e.at += chrono::Duration::nanoseconds(1);
        variants.push(e);
        let mut e = base.clone();
        e.user = UserId::parse("u2").unwrap();
        variants.push(e);
        let mut e = base.clone();
        e.organisation = OrganisationId::parse("ORH").unwrap();
        variants.push(e);
        let mut e = base.clone();
        e.role = Role::Gp;
        variants.push(e);
        let mut e = base.clone();
        e.client = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        variants.push(e);
        let mut e = base.clone();
        e.action = Action::ReadReferrals;
        variants.push(e);
        let mut e = base.clone();
        e.person = None;
        variants.push(e);
        let mut e = base.clone();
        e.resource = Some("x".into());
        variants.push(e);
        let mut e = base.clone();
        e.purpose = Purpose::Other("death-review".into());
        variants.push(e);
        let mut e = base.clone();
        e.basis = Some(AccessBasis::new(BasisKind::Emergency, "collapsed").unwrap());
        variants.push(e);
        let mut e = base.clone();
        e.outcome = Outcome::Denied(DenyReason::OptedOut);
        variants.push(e);
        for v in &variants {
            assert_ne!(h(v), h(&base), "{v:?}");
        }
        assert_ne!(hash_event(1, &base, &Hash::GENESIS), h(&base));
    }

    #[test]
    fn access_report_groups_by_organisation_and_role_over_the_period() {
        let events = vec![
            event(10, 1, "ORG-A", Outcome::Permitted),
            event(
                20,
                1,
                "ORG-B",
                Outcome::Denied(DenyReason::PermissionRequired),
            ),
            event(30, 1, "ORG-A", Outcome::Permitted),
            event(40, 2, "ORG-A", Outcome::Permitted),
            event(50, 1, "ORG-A", Outcome::Permitted),
        ];
        let t = |n: i64| Timestamp::from_timestamp(1_700_000_000 + n, 0).unwrap();
        let rows = access_report(
            &events,
            PersonId::from_uuid(uuid::Uuid::from_u128(1)),
            t(0),
            t(50),
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].organisation.as_str(), "ORG-A");
        assert_eq!(
            (rows[0].first_access, rows[0].last_access, rows[0].accesses),
            (t(10), t(30), 2)
        );
        assert_eq!((rows[1].accesses, rows[1].refused), (0, 1));
    }

    proptest! {
        /// Changing any single byte of any stored hash is always detected.
        #[test]
        fn any_tampered_hash_is_detected(n in 1usize..20, pick in any::<prop::sample::Index>(), byte in 0usize..32, flip in 1u8..=255) {
            let (mut events, head) = chain(n);
            let i = pick.index(n);
            events[i].hash.0[byte] ^= flip;
            prop_assert!(verify(&events, &head).is_err());
        }
    }
}
