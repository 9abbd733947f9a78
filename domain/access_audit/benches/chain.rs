//! The audit chain's costs: appending one event (canonical encoding + SHA-256 + head
//! move) and verifying a chain of 1,000,000 events. Baseline in the same run: SHA-256 of
//! the same number of bytes alone, so machine noise shows up in both.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use care_access_audit::{AuditEvent, ChainHead, Outcome, encode_event, verify};
use care_kernel::{Action, OrganisationId, PersonId, Purpose, Role, Timestamp, UserId};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sha2::{Digest, Sha256};

fn event(i: u64) -> AuditEvent {
    AuditEvent {
        at: Timestamp::from_timestamp(1_750_000_000 + i as i64, 0).unwrap(),
        user: UserId::parse("clinician.jones").unwrap(),
        organisation: OrganisationId::parse("RDZ").unwrap(),
        role: Role::Clinician,
        client: IpAddr::V4(Ipv4Addr::new(10, 20, 30, 40)),
        action: Action::ReadDemographics,
        person: Some(PersonId::from_uuid(uuid::Uuid::from_u128(
            u128::from(i) * 7919,
        ))),
        resource: Some("summary".into()),
        purpose: Purpose::DirectCare,
        basis: None,
        outcome: Outcome::Permitted,
    }
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("audit_append");
    group.throughput(Throughput::Elements(1));
    group.bench_function("append_one_event", |b| {
        let mut head = ChainHead::EMPTY;
        let mut next = 0u64;
        b.iter_batched(
            || {
                next += 1;
                event(next)
            },
            |e| black_box(head.append(e)),
            BatchSize::SmallInput,
        );
    });
    let mut encoded = Vec::new();
    encode_event(0, &event(0), &mut encoded);
    group.bench_function("baseline_sha256_of_same_bytes", |b| {
        b.iter(|| {
            let mut h = Sha256::new();
            h.update([0u8; 32]);
            h.update(black_box(&encoded));
            black_box(h.finalize())
        })
    });
    group.finish();
}

fn verify_million(c: &mut Criterion) {
    const N: u64 = 1_000_000;
    let mut head = ChainHead::EMPTY;
    let chain: Vec<_> = (0..N).map(|i| head.append(event(i))).collect();
    let mut group = c.benchmark_group("audit_verify");
    group.sample_size(10);
    group.throughput(Throughput::Elements(N));
    group.bench_function("verify_1m_events", |b| {
        b.iter(|| verify(black_box(&chain), &head).unwrap())
    });
    group.finish();
}

criterion_group!(benches, append, verify_million);
criterion_main!(benches);
