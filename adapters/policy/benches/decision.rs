//! One access decision: asked of casbin itself (`enforce_raw`), looked up in the table
//! compiled at load (`decide`), and, as the baseline in the same run, decided by the
//! reference `SpecPolicy` (the same kind of table, compiled from Rust). Then what the
//! table costs: loading and compiling the shipped policy (every request asked of casbin).
//!
//! Two requests: a permit that the second rule of policy.csv grants (a gp reading a
//! participating, living person's demographics) and a refusal that casbin can only give
//! after trying every rule (a pharmacist asking for referrals).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use care_application::{AccessPolicy, AccessRequest, SubjectState};
use care_consent::ConsentLevel;
use care_in_memory::SpecPolicy;
use care_kernel::{Action, Role};
use care_person::VitalStatus;
use care_policy::CasbinPolicy;
use criterion::{Criterion, criterion_group, criterion_main};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

const PERSON: Option<SubjectState> = Some(SubjectState {
    consent: ConsentLevel::Participating,
    vital: VitalStatus::Alive,
    basis: None,
});

const PERMIT: AccessRequest = AccessRequest {
    role: Role::Gp,
    action: Action::ReadDemographics,
    direct_care: true,
    subject: PERSON,
};

const DENY: AccessRequest = AccessRequest {
    role: Role::Pharmacist,
    action: Action::ReadReferrals,
    direct_care: true,
    subject: PERSON,
};

fn decision(c: &mut Criterion) {
    let casbin = runtime().block_on(CasbinPolicy::load_default()).unwrap();
    let spec = SpecPolicy::default();
    let mut group = c.benchmark_group("access_decision");
    for (name, request) in [("permit", PERMIT), ("deny", DENY)] {
        group.bench_function(format!("casbin_enforce_raw/{name}"), |b| {
            b.iter(|| casbin.enforce_raw(black_box(&request)).unwrap())
        });
        group.bench_function(format!("compiled_table/{name}"), |b| {
            b.iter(|| casbin.decide(black_box(&request)))
        });
        group.bench_function(format!("spec_policy_baseline/{name}"), |b| {
            b.iter(|| spec.decide(black_box(&request)))
        });
    }
    group.finish();
}

fn load(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("policy_load");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("load_default_and_compile_every_request", |b| {
        b.iter(|| rt.block_on(CasbinPolicy::load_default()).unwrap())
    });
    group.finish();
}

criterion_group!(benches, decision, load);
criterion_main!(benches);
