//! One contract test suite per port: plain async functions that take an adapter and
//! panic (as tests do) when it breaks its port's contract. The in-memory adapters run
//! them now; the SQLite and PostgreSQL adapters run the very same functions.
//!
//! Every suite makes its own fresh ids and NHS numbers, so suites can share one database
//! and run in any order, and tolerates records other suites left behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use care_access_audit::{AuditEvent, ChainVerifier, Outcome};
use care_alert::{Alert, AlertCategory, AlertDetails, Severity};
use care_application::{
    AlertRepository, AuditLog, Clock, ConsentRepository, IdGenerator, PersonRepository,
    ReferralRepository, RepoError, SourceInfo, SourceRegistry,
};
use care_consent::{Consent, ConsentLevel, Representative};
use care_kernel::{
    Action, Actor, AlertId, Date, DenyReason, OrganisationId, PersonId, Purpose, ReferralId, Role,
    Source, SourceId, SourceKind, Timestamp, UpdateOutcome, UserId,
};
use care_person::{
    Address, Demographics, Identifier, LocalId, NameKey, NhsNumber, Person, PersonName, Postcode,
    SearchCriteria,
};
use care_referral::{InvolvementLevel, Referral, ReferralDetails, ReferralSource, ReferralStatus};
use uuid::Uuid;

/// A fresh, valid NHS number from the 999 test range, random so suites sharing a
/// database never collide.
pub fn fresh_nhs_number() -> NhsNumber {
    loop {
        let n = 999_000_000 + (Uuid::new_v4().as_u128() % 1_000_000) as u32;
        if let Some(nhs) = NhsNumber::from_first_nine(n) {
            return nhs;
        }
    }
}

fn fresh_person_id() -> PersonId {
    PersonId::from_uuid(Uuid::new_v4())
}

fn fresh_text(prefix: &str) -> String {
    format!("{prefix}{}", &Uuid::new_v4().simple().to_string()[..12])
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_timestamp(1_750_000_000 + secs, 0).unwrap()
}

fn date(y: i32, m: u32, d: u32) -> Date {
    Date::from_ymd_opt(y, m, d).unwrap()
}

fn source(kind: SourceKind) -> Source {
    Source::new(SourceId::parse(&fresh_text("src-")).unwrap(), kind)
}

fn demographics(family: &str, birth: Date, postcode: &str) -> Demographics {
    Demographics {
        name: Some(PersonName::new(family, "Sam").unwrap()),
        birth_date: Some(birth),
        gender: None,
        address: Some(
            Address::new(
                vec!["1 Quay".into()],
                Some(Postcode::parse(postcode).unwrap()),
            )
            .unwrap(),
        ),
        registered_gp: None,
    }
}

/// A person with a local id, one source's demographics and, if asked, an NHS number.
fn person_with(family: &str, birth: Date, postcode: &str, nhs: bool) -> Person {
    let acute = source(SourceKind::Acute);
    let mut p = Person::new(fresh_person_id());
    if nhs {
        p.add_identifier(Identifier::Nhs(fresh_nhs_number()))
            .unwrap();
    }
    p.add_identifier(Identifier::Local(
        LocalId::new(acute.id.clone(), &fresh_text("H")).unwrap(),
    ))
    .unwrap();
    p.apply_demographics(acute, at(0), demographics(family, birth, postcode))
        .unwrap();
    p
}

fn sample_person(family: &str, birth: Date, postcode: &str) -> Person {
    person_with(family, birth, postcode, true)
}

/// A postcode no other suite run uses (so searches by it see only this run's people).
fn fresh_postcode() -> String {
    let n = Uuid::new_v4().as_u128();
    let letters = b"ABDEFGHJLNPQRSTUWXYZ";
    format!(
        "ZZ{} {}{}{}",
        n % 100,
        (n / 100) % 10,
        letters[((n / 1000) % 20) as usize] as char,
        letters[((n / 20000) % 20) as usize] as char
    )
}

/// The [`PersonRepository`] contract.
pub async fn person_repository(repo: &dyn PersonRepository) {
    // A new record is stored at version 1 and read back equal.
    let mut p = sample_person("Contract", date(1970, 1, 2), &fresh_postcode());
    assert_eq!(
        repo.get(p.id()).await.unwrap(),
        None,
        "unknown id gives None"
    );
    let v = repo.save(&p).await.unwrap();
    assert_eq!(v, 1, "a new record is stored at version 1");
    p.set_version(v);
    assert_eq!(repo.get(p.id()).await.unwrap().as_ref(), Some(&p));
    for identifier in p.identifiers() {
        assert_eq!(
            repo.find_by_identifier(&identifier)
                .await
                .unwrap()
                .map(|f| f.id()),
            Some(p.id()),
            "found by each identifier"
        );
    }

    // Optimistic locking: a save from a stale copy is a conflict and stores nothing.
    let mut stale = p.clone();
    let mut newer = p.clone();
    newer
        .apply_demographics(
            source(SourceKind::GpPractice),
            at(5),
            Demographics::default(),
        )
        .unwrap();
    let v2 = repo.save(&newer).await.unwrap();
    assert_eq!(v2, 2);
    stale
        .apply_demographics(
            source(SourceKind::Community),
            at(6),
            Demographics::default(),
        )
        .unwrap();
    assert!(matches!(repo.save(&stale).await, Err(RepoError::Conflict)));
    assert_eq!(repo.get(p.id()).await.unwrap().unwrap().version(), 2);
    // Inserting a new record over an existing id is a conflict too.
    let mut clash = Person::new(p.id());
    clash.set_version(0);
    assert!(matches!(repo.save(&clash).await, Err(RepoError::Conflict)));

    // An identifier held by another live record is refused.
    let mut thief = Person::new(fresh_person_id());
    thief
        .add_identifier(Identifier::Nhs(p.nhs_number().unwrap().clone()))
        .unwrap();
    assert!(matches!(
        repo.save(&thief).await,
        Err(RepoError::IdentifierTaken(_))
    ));
    assert_eq!(repo.get(thief.id()).await.unwrap(), None);
}

/// Search by NHS number, by folded family-name prefix and birth date, by postcode.
pub async fn person_search(repo: &dyn PersonRepository) {
    let postcode = fresh_postcode();
    let family = fresh_text("Ó'Brïen");
    let birth = date(1980, 5, 6);
    let a = sample_person(&family, birth, &postcode);
    let b = sample_person(&format!("{family}-smith"), birth, &postcode);
    let c = sample_person(&family, date(1980, 5, 7), &fresh_postcode());
    for p in [&a, &b, &c] {
        repo.save(p).await.unwrap();
    }
    let ids = |found: Vec<Person>| {
        let mut ids: Vec<PersonId> = found.iter().map(Person::id).collect();
        ids.sort();
        ids
    };
    let mut expect_ab = vec![a.id(), b.id()];
    expect_ab.sort();

    let by_nhs = repo
        .search(
            &SearchCriteria::NhsNumber(a.nhs_number().unwrap().clone()),
            10,
        )
        .await
        .unwrap();
    assert_eq!(ids(by_nhs), vec![a.id()]);

    // Case- and accent-insensitive prefix: "Ó'BRÏEN…" finds "Ó'Brïen…" and "Ó'Brïen…-smith".
    let prefix = NameKey::parse_prefix(&family.to_uppercase()).unwrap();
    let by_name = repo
        .search(
            &SearchCriteria::FamilyAndBirthDate {
                family_prefix: prefix.clone(),
                birth_date: birth,
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(
        ids(by_name),
        expect_ab,
        "prefix matches both, birth date excludes c"
    );

    let by_postcode = repo
        .search(
            &SearchCriteria::Postcode(Postcode::parse(&postcode.to_lowercase()).unwrap()),
            10,
        )
        .await
        .unwrap();
    assert_eq!(ids(by_postcode), expect_ab);

    // The limit holds, and results come in id order.
    let limited = repo
        .search(
            &SearchCriteria::Postcode(Postcode::parse(&postcode).unwrap()),
            1,
        )
        .await
        .unwrap();
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0].id(), expect_ab[0]);
}

/// A merge stores both records at once, the survivor takes the identifiers, and the
/// retired record is kept (for redirects) but no longer found or searched.
pub async fn person_merge(repo: &dyn PersonRepository) {
    let postcode = fresh_postcode();
    let mut survivor = sample_person("Merge", date(1990, 1, 1), &fresh_postcode());
    // The retired record has no NHS number of its own (two different ones cannot merge).
    let mut retired = person_with("Merge", date(1990, 1, 1), &postcode, false);
    survivor.set_version(repo.save(&survivor).await.unwrap());
    retired.set_version(repo.save(&retired).await.unwrap());
    let retired_local = retired.local_ids().next().unwrap().clone();
    survivor.absorb(&mut retired).unwrap();
    repo.save_merge(&survivor, &retired).await.unwrap();

    let found = repo
        .find_by_identifier(&Identifier::Local(retired_local))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        found.id(),
        survivor.id(),
        "the retired identifier reaches the survivor"
    );
    let kept = repo.get(retired.id()).await.unwrap().unwrap();
    assert_eq!(kept.merged_into(), Some(survivor.id()));
    let by_postcode = repo
        .search(
            &SearchCriteria::Postcode(Postcode::parse(&postcode).unwrap()),
            10,
        )
        .await
        .unwrap();
    assert_eq!(
        by_postcode.iter().map(Person::id).collect::<Vec<_>>(),
        vec![survivor.id()],
        "only the survivor is searched, holding the retired record's statements"
    );
    // A merge from stale copies is a conflict.
    assert!(matches!(
        repo.save_merge(&survivor, &retired).await,
        Err(RepoError::Conflict)
    ));
}

async fn stored_person(people: &dyn PersonRepository) -> PersonId {
    let p = sample_person("Owner", date(2015, 2, 3), &fresh_postcode());
    people.save(&p).await.unwrap();
    p.id()
}

fn referral_details(status: ReferralStatus, received: Date) -> ReferralDetails {
    let closed = status.is_closed().then(|| date(2026, 2, 1));
    ReferralDetails::new(
        received,
        "Children's MASH",
        ReferralSource::School,
        status,
        closed,
        Some(InvolvementLevel::ChildInNeed),
    )
    .unwrap()
}

/// The [`ReferralRepository`] contract (people are stored first: adapters may hold a
/// foreign key to them).
pub async fn referral_repository(repo: &dyn ReferralRepository, people: &dyn PersonRepository) {
    let owner = stored_person(people).await;
    let other = stored_person(people).await;
    let council = source(SourceKind::SocialCare);
    let mut older = Referral::new(
        ReferralId::from_uuid(Uuid::new_v4()),
        owner,
        council.clone(),
        "REF-1",
        referral_details(ReferralStatus::AwaitingDecision, date(2025, 1, 1)),
        at(1),
    )
    .unwrap();
    let mut newer = Referral::new(
        ReferralId::from_uuid(Uuid::new_v4()),
        owner,
        council.clone(),
        "REF-2",
        referral_details(ReferralStatus::Accepted, date(2026, 1, 1)),
        at(2),
    )
    .unwrap();
    assert_eq!(
        repo.find_by_source_ref(&council.id, "REF-1").await.unwrap(),
        None
    );
    assert_eq!(
        repo.save(&older).await.unwrap(),
        1,
        "a new referral is stored at version 1"
    );
    older.set_version(1);
    newer.set_version(repo.save(&newer).await.unwrap());
    assert_eq!(
        repo.find_by_source_ref(&council.id, "REF-1")
            .await
            .unwrap()
            .as_ref(),
        Some(&older)
    );
    let listed = repo.list_for_person(owner).await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.source_ref()).collect::<Vec<_>>(),
        vec!["REF-2", "REF-1"],
        "most recently received first"
    );

    // Saving again updates by id; a save from a stale copy is a conflict.
    let mut stale = newer.clone();
    newer
        .apply(
            &council,
            referral_details(ReferralStatus::ClosedNoFurtherAction, date(2026, 1, 1)),
            at(3),
        )
        .unwrap();
    assert_eq!(repo.save(&newer).await.unwrap(), 2);
    stale
        .apply(
            &council,
            referral_details(ReferralStatus::ClosedTransferred, date(2026, 1, 1)),
            at(4),
        )
        .unwrap();
    assert!(matches!(repo.save(&stale).await, Err(RepoError::Conflict)));
    // A second referral with a taken source reference is a conflict, not a duplicate.
    let twin = Referral::new(
        ReferralId::from_uuid(Uuid::new_v4()),
        owner,
        council.clone(),
        "REF-1",
        referral_details(ReferralStatus::Accepted, date(2026, 1, 1)),
        at(9),
    )
    .unwrap();
    assert!(matches!(repo.save(&twin).await, Err(RepoError::Conflict)));
    let stored = repo
        .find_by_source_ref(&council.id, "REF-2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.details().status(),
        ReferralStatus::ClosedNoFurtherAction
    );
    assert_eq!(repo.list_for_person(owner).await.unwrap().len(), 2);

    // Reassigning for a merge moves all, and again moves none.
    assert_eq!(repo.reassign_person(owner, other).await.unwrap(), 2);
    assert_eq!(repo.reassign_person(owner, other).await.unwrap(), 0);
    assert!(repo.list_for_person(owner).await.unwrap().is_empty());
    assert_eq!(repo.list_for_person(other).await.unwrap().len(), 2);
}

/// The [`AlertRepository`] contract.
pub async fn alert_repository(repo: &dyn AlertRepository, people: &dyn PersonRepository) {
    let owner = stored_person(people).await;
    let other = stored_person(people).await;
    let acute = source(SourceKind::Acute);
    let details = |to: Option<Date>| {
        AlertDetails::new(
            AlertCategory::EnvironmentalHazard,
            "Dangerous dog at the property",
            Severity::High,
            date(2025, 1, 1),
            date(2025, 1, 1),
            to,
        )
        .unwrap()
    };
    let mut alert = Alert::new(
        AlertId::from_uuid(Uuid::new_v4()),
        owner,
        acute.clone(),
        "AL-1",
        details(None),
        at(1),
    )
    .unwrap();
    alert.set_version(repo.save(&alert).await.unwrap());
    assert_eq!(alert.version(), 1, "a new alert is stored at version 1");
    assert_eq!(
        repo.find_by_source_ref(&acute.id, "AL-1")
            .await
            .unwrap()
            .as_ref(),
        Some(&alert)
    );
    assert_eq!(
        repo.find_by_source_ref(&acute.id, "AL-2").await.unwrap(),
        None
    );
    let mut stale = alert.clone();
    alert
        .apply(&acute, details(Some(date(2025, 6, 1))), at(2))
        .unwrap();
    alert.set_version(repo.save(&alert).await.unwrap());
    stale
        .apply(&acute, details(Some(date(2025, 7, 1))), at(3))
        .unwrap();
    assert!(matches!(repo.save(&stale).await, Err(RepoError::Conflict)));
    let listed = repo.list_for_person(owner).await.unwrap();
    assert_eq!(
        listed,
        vec![alert.clone()],
        "replaced by id, ended alerts kept"
    );
    assert_eq!(repo.reassign_person(owner, other).await.unwrap(), 1);
    assert_eq!(repo.reassign_person(owner, other).await.unwrap(), 0);
    assert_eq!(repo.list_for_person(other).await.unwrap().len(), 1);
    // Reassigning changes the record: a copy from before it is stale.
    assert!(
        matches!(repo.save(&alert).await, Err(RepoError::Conflict)),
        "reassign_person moves the version on"
    );
}

fn dpo() -> Actor {
    Actor::new(
        UserId::parse("dpo1").unwrap(),
        OrganisationId::parse("DPO").unwrap(),
        Role::Dpo,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    )
}

/// The [`ConsentRepository`] contract.
pub async fn consent_repository(repo: &dyn ConsentRepository) {
    let nhs = fresh_nhs_number();
    assert_eq!(
        repo.get(&nhs).await.unwrap(),
        None,
        "never changed means None"
    );
    let mut consent = Consent::participating(nhs.clone());
    let rep = Representative::new("Jo Bloggs", "daughter", true, true, "LPA-1").unwrap();
    consent
        .opt_out(&dpo(), at(1), Some(rep), "form received")
        .unwrap();
    let v = repo.save(&consent).await.unwrap();
    assert_eq!(v, 1);
    consent.set_version(v);
    assert_eq!(
        repo.get(&nhs).await.unwrap().as_ref(),
        Some(&consent),
        "history and representative kept"
    );

    let mut stale = consent.clone();
    consent
        .opt_in(&dpo(), at(2), "asked to opt back in")
        .unwrap();
    assert_eq!(repo.save(&consent).await.unwrap(), 2);
    stale
        .ask_first(&dpo(), at(3), "conflicting change")
        .unwrap();
    assert!(matches!(repo.save(&stale).await, Err(RepoError::Conflict)));
    let stored = repo.get(&nhs).await.unwrap().unwrap();
    assert_eq!(stored.level(), ConsentLevel::Participating);
    assert_eq!(stored.history().len(), 2);

    let untouched = fresh_nhs_number();
    let many = repo
        .get_many(&[nhs.clone(), untouched, nhs.clone()])
        .await
        .unwrap();
    assert_eq!(many.len(), 1, "only stored consents, once each");
    assert_eq!(many[0].nhs_number(), &nhs);
}

fn audit_event(n: i64, person: PersonId, outcome: Outcome) -> AuditEvent {
    AuditEvent {
        at: at(n),
        user: UserId::parse("u1").unwrap(),
        organisation: OrganisationId::parse("RDZ").unwrap(),
        role: Role::Clinician,
        client: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
        action: Action::ReadDemographics,
        person: Some(person),
        resource: Some("summary".into()),
        purpose: Purpose::DirectCare,
        basis: None,
        outcome,
    }
}

async fn verify_all(log: &dyn AuditLog) -> u64 {
    let head = log.head().await.unwrap();
    let mut verifier = ChainVerifier::new();
    let mut next = 0;
    while next < head.len {
        let page = log.read(next, 1000).await.unwrap();
        assert!(!page.is_empty(), "read returns events up to the head");
        for e in &page {
            verifier.push(e).unwrap();
            next += 1;
        }
    }
    verifier.finish(&head).unwrap().len
}

/// The [`AuditLog`] contract, including concurrent writers producing one chain.
pub async fn audit_log(log: Arc<dyn AuditLog>) {
    let person = fresh_person_id();
    let before = log.head().await.unwrap();
    let chained = log
        .append(vec![
            audit_event(1, person, Outcome::Permitted),
            audit_event(2, person, Outcome::Denied(DenyReason::PermissionRequired)),
        ])
        .await
        .unwrap();
    assert_eq!(chained.len(), 2);
    assert_eq!(chained[0].seq, before.len, "appended at the end");
    assert_eq!(chained[1].seq, before.len + 1);
    assert_eq!(chained[0].prev_hash, before.last_hash);
    assert_eq!(chained[1].prev_hash, chained[0].hash);
    let head = log.head().await.unwrap();
    assert_eq!(head.len, before.len + 2);
    assert_eq!(head.last_hash, chained[1].hash);
    assert_eq!(log.read(before.len, 10).await.unwrap()[..2], chained[..]);
    assert!(log.append(vec![]).await.unwrap().is_empty());

    // Period filter: from inclusive, to exclusive; other people's events left out.
    log.append(vec![audit_event(3, fresh_person_id(), Outcome::Permitted)])
        .await
        .unwrap();
    let mine = log.for_person(person, at(2), at(3)).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        mine[0].outcome,
        Outcome::Denied(DenyReason::PermissionRequired)
    );
    assert_eq!(
        log.for_person(person, at(0), at(100)).await.unwrap().len(),
        2
    );

    // Concurrent writers: every event lands once, and the chain is one valid chain.
    let writers = 8;
    let per_writer = 25;
    let start = log.head().await.unwrap().len;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                for i in 0..per_writer {
                    let e = audit_event(10 + w * 100 + i, fresh_person_id(), Outcome::Permitted);
                    log.append(vec![e.clone(), e]).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let end = log.head().await.unwrap().len;
    assert_eq!(end - start, (writers * per_writer * 2) as u64);
    assert_eq!(verify_all(log.as_ref()).await, end);
}

/// The [`SourceRegistry`] contract.
pub async fn source_registry(registry: &dyn SourceRegistry) {
    let council = source(SourceKind::SocialCare);
    assert_eq!(registry.get(&council.id).await.unwrap(), None);
    let info = SourceInfo::new(
        council.clone(),
        "Dorset Council",
        Duration::from_secs(26 * 3600),
    );
    registry.register(&info).await.unwrap();
    assert_eq!(
        registry.get(&council.id).await.unwrap().as_ref(),
        Some(&info)
    );
    assert!(
        registry
            .list()
            .await
            .unwrap()
            .iter()
            .any(|s| s.source == council)
    );

    registry
        .record_activity(&council.id, at(100), UpdateOutcome::Applied)
        .await
        .unwrap();
    registry
        .record_activity(&council.id, at(50), UpdateOutcome::Unchanged)
        .await
        .unwrap();
    registry
        .record_activity(&council.id, at(60), UpdateOutcome::Stale)
        .await
        .unwrap();
    let seen = registry.get(&council.id).await.unwrap().unwrap();
    assert_eq!(seen.last_message_at, Some(at(100)), "never moves back");
    assert_eq!((seen.applied, seen.unchanged), (1, 2));

    // Re-registering keeps the activity.
    let renamed = SourceInfo::new(
        council.clone(),
        "Dorset Council (Mosaic)",
        Duration::from_secs(3600),
    );
    registry.register(&renamed).await.unwrap();
    let seen = registry.get(&council.id).await.unwrap().unwrap();
    assert_eq!(seen.name, "Dorset Council (Mosaic)");
    assert_eq!(seen.last_message_at, Some(at(100)));
    assert_eq!(seen.applied, 1);

    // Unknown sources are ignored.
    let ghost = source(SourceKind::Other);
    registry
        .record_activity(&ghost.id, at(1), UpdateOutcome::Applied)
        .await
        .unwrap();
    assert_eq!(registry.get(&ghost.id).await.unwrap(), None);
}

/// The [`IdGenerator`] contract: no repeats.
pub fn id_generator(ids: &dyn IdGenerator) {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10_000 {
        assert!(seen.insert(ids.new_id()), "an id repeated");
    }
}

/// The [`Clock`] contract: time does not run backwards.
pub fn clock(clock: &dyn Clock) {
    let a = clock.now();
    let b = clock.now();
    assert!(b >= a);
}
