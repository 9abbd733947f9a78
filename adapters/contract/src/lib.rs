//! One contract test suite per port: plain async functions that take an adapter and
//! panic (as tests do) when it breaks its port's contract. The in-memory adapters run
//! them now; the SQLite and PostgreSQL adapters run the very same functions.
//!
//! Every suite makes its own fresh ids and NHS numbers, so suites can share one database
//! and run in any order, and tolerates records other suites left behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use care_access_audit::{AuditEvent, ChainVerifier, Outcome};
use care_alert::{Alert, AlertCategory, AlertDetails, Severity};
use care_application::{
    AccountStore, AlertRepository, AuditLog, Clock, ConsentRepository, FeedFormat, FeedStores,
    HeldRecord, IdGenerator, ItemStores, MessageOutcome, Organisation, PersonRepository,
    QuarantineFilter, QuarantineStore, QuarantineSummary, QuarantinedMessage, ReferralRepository,
    RepoError, Resolution, SecurityEvent, SecurityEventKind, SecurityLog, SessionRecord,
    SessionStore, SourceInfo, SourceRegistry, TokenHash, UnitOfWork, UserAccount,
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

/// The shared sample data (real HL7 v2 messages and FHIR resources written by others):
/// `CARE_SHARED_DATA` if set, else a `shared/data` folder beside the checkout (the
/// team's copy), else the byte-for-byte copy in the repository's `fixtures/shared-data`.
pub fn shared_data() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("CARE_SHARED_DATA") {
        return dir.into();
    }
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = here
        .ancestors()
        .map(|a| a.join("shared/data"))
        .chain(here.ancestors().map(|a| a.join("fixtures/shared-data")))
        .find(|dir| dir.join("MANIFEST.tsv").is_file());
    found.unwrap_or_else(|| {
        panic!(
            "the shared sample data is missing: set CARE_SHARED_DATA, or keep fixtures/shared-data in the checkout"
        )
    })
}

/// The repository's own copy of the shared sample data.
pub fn shared_data_copy() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/shared-data")
}

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

/// The ids of the records `find_by_identifiers` finds, in order.
async fn ids_found(repo: &dyn PersonRepository, identifiers: &[Identifier]) -> Vec<PersonId> {
    let mut ids: Vec<PersonId> = repo
        .find_by_identifiers(identifiers)
        .await
        .unwrap()
        .iter()
        .map(|p| p.id())
        .collect();
    ids.sort();
    ids
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
    let identifiers: Vec<Identifier> = p.identifiers().collect();
    assert!(
        identifiers.len() >= 2,
        "the sample has an NHS number and a local id"
    );
    let by_all = repo.find_by_identifiers(&identifiers).await.unwrap();
    assert_eq!(
        by_all.iter().map(|f| f.id()).collect::<Vec<_>>(),
        vec![p.id()],
        "found once by all its identifiers"
    );
    assert_eq!(by_all.first(), Some(&p), "whole, at its version");
    let nobody = Identifier::Nhs(fresh_nhs_number());
    assert_eq!(
        ids_found(repo, &[nobody.clone(), identifiers[1].clone()]).await,
        vec![p.id()],
        "found by one identifier among unknown ones"
    );
    assert!(ids_found(repo, &[nobody]).await.is_empty());
    assert!(ids_found(repo, &[]).await.is_empty());
    let other = sample_person("Contrary", date(1971, 2, 3), &fresh_postcode());
    repo.save(&other).await.unwrap();
    let mut both = vec![p.id(), other.id()];
    both.sort();
    assert_eq!(
        ids_found(
            repo,
            &[identifiers[0].clone(), other.identifiers().last().unwrap()]
        )
        .await,
        both,
        "identifiers of two records find both"
    );

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
        .find_by_identifier(&Identifier::Local(retired_local.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        found.id(),
        survivor.id(),
        "the retired identifier reaches the survivor"
    );
    let mut all_of_them: Vec<Identifier> = survivor.identifiers().collect();
    all_of_them.push(Identifier::Local(retired_local));
    assert_eq!(
        ids_found(repo, &all_of_them).await,
        vec![survivor.id()],
        "every identifier, the retired one's too, reaches the survivor alone"
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

    // A survivor taking an NHS number a third record holds is refused, and nothing of
    // the merge is written; the repository goes on (within a unit of work too).
    let third = sample_person("Third", date(1991, 2, 2), &fresh_postcode());
    repo.save(&third).await.unwrap();
    let mut survivor = person_with("Merge", date(1992, 3, 3), &fresh_postcode(), false);
    let mut retired = person_with("Merge", date(1992, 3, 3), &fresh_postcode(), false);
    survivor.set_version(repo.save(&survivor).await.unwrap());
    retired.set_version(repo.save(&retired).await.unwrap());
    survivor.absorb(&mut retired).unwrap();
    survivor
        .add_identifier(Identifier::Nhs(third.nhs_number().unwrap().clone()))
        .unwrap();
    assert!(matches!(
        repo.save_merge(&survivor, &retired).await,
        Err(RepoError::IdentifierTaken(_))
    ));
    let kept = repo.get(retired.id()).await.unwrap().unwrap();
    assert_eq!(kept.merged_into(), None, "the retired record is untouched");
    assert_eq!(kept.version(), 1);
    // What is not a merge (one record; a retired record not merged into the survivor)
    // is refused before anything is written.
    let mut other = person_with("Merge", date(1992, 3, 3), &fresh_postcode(), false);
    other.set_version(repo.save(&other).await.unwrap());
    let kept = repo.get(survivor.id()).await.unwrap().unwrap();
    assert!(repo.save_merge(&kept, &kept).await.is_err(), "one record");
    assert!(
        repo.save_merge(&kept, &other).await.is_err(),
        "not merged into the survivor"
    );
    assert_eq!(
        repo.get(kept.id()).await.unwrap().unwrap().version(),
        kept.version()
    );
    assert_eq!(
        repo.get(other.id()).await.unwrap().unwrap().merged_into(),
        None
    );

    let later = sample_person("Later", date(1993, 4, 4), &fresh_postcode());
    repo.save(&later).await.unwrap();
    assert!(repo.get(later.id()).await.unwrap().is_some());
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

/// The [`AlertRepository::list_with_referrals`] contract: `referrals` is the same
/// record's referral store; each list is what its own store lists.
pub async fn alerts_with_referrals(
    alerts: &dyn AlertRepository,
    referrals: &dyn ReferralRepository,
    people: &dyn PersonRepository,
) {
    let owner = stored_person(people).await;
    let other = stored_person(people).await;
    assert_eq!(
        alerts.list_with_referrals(owner, referrals).await.unwrap(),
        (Vec::new(), Vec::new()),
        "nothing held: two empty lists"
    );
    file_items(alerts, referrals, owner, other).await;
    for person in [owner, other] {
        let (listed_alerts, listed_referrals) =
            alerts.list_with_referrals(person, referrals).await.unwrap();
        assert_eq!(
            by_id(listed_alerts),
            by_id(alerts.list_for_person(person).await.unwrap()),
            "the person's alerts, whole"
        );
        assert_eq!(
            listed_referrals,
            referrals.list_for_person(person).await.unwrap(),
            "the person's referrals, whole, most recently received first"
        );
    }
    let (a, r) = alerts.list_with_referrals(owner, referrals).await.unwrap();
    assert_eq!((a.len(), r.len()), (2, 3));
    assert_eq!(
        r.iter().map(|r| r.source_ref()).collect::<Vec<_>>(),
        ["REF-2", "REF-3", "REF-1"],
        "most recently received first, then by id"
    );
}

/// Files two alerts and three referrals under `owner` and one of each under `other`.
/// Two of `owner`'s referrals were received on one day, the later-stored one with the
/// smaller id (so an order without the id would show): most recently received first,
/// then by id, they are REF-2, REF-3, REF-1.
async fn file_items(
    alerts: &dyn AlertRepository,
    referrals: &dyn ReferralRepository,
    owner: PersonId,
    other: PersonId,
) {
    let acute = source(SourceKind::Acute);
    let council = source(SourceKind::SocialCare);
    for (n, person) in [(1, owner), (2, owner), (3, other)] {
        let mut alert = Alert::new(
            AlertId::from_uuid(Uuid::new_v4()),
            person,
            acute.clone(),
            &format!("AL-{n}"),
            AlertDetails::new(
                AlertCategory::Allergy,
                &format!("Allergen {n}"),
                Severity::High,
                date(2025, 1, n),
                date(2025, 1, n),
                None,
            )
            .unwrap(),
            at(i64::from(n)),
        )
        .unwrap();
        alert.set_version(alerts.save(&alert).await.unwrap());
    }
    let mut same_day = [Uuid::new_v4(), Uuid::new_v4()];
    same_day.sort();
    for (n, person, received, id) in [
        (1, owner, date(2025, 3, 1), same_day[1]),
        (2, owner, date(2026, 2, 1), Uuid::new_v4()),
        (3, owner, date(2025, 3, 1), same_day[0]),
        (4, other, date(2026, 5, 1), Uuid::new_v4()),
    ] {
        let referral = Referral::new(
            ReferralId::from_uuid(id),
            person,
            council.clone(),
            &format!("REF-{n}"),
            referral_details(ReferralStatus::AwaitingDecision, received),
            at(i64::from(n)),
        )
        .unwrap();
        referrals.save(&referral).await.unwrap();
    }
}

/// Alerts in id order (their lists promise no order).
fn by_id(mut list: Vec<Alert>) -> Vec<Alert> {
    list.sort_by_key(|a| a.id());
    list
}

/// What `get_with_items` reads of a stored record.
async fn held(people: &dyn PersonRepository, id: PersonId, stores: ItemStores<'_>) -> HeldRecord {
    people
        .get_with_items(id, stores)
        .await
        .unwrap()
        .expect("a stored record")
}

/// The [`PersonRepository::get_with_items`] contract: `stores` are the same record's;
/// the items asked for are what `list_with_referrals` lists, read only for a record
/// without a consent.
pub async fn person_with_items(people: &dyn PersonRepository, stores: ItemStores<'_>) {
    let (Some(alert_store), Some(referral_store)) = (stores.alerts, stores.referrals) else {
        panic!("the suite is run with every store");
    };
    assert_eq!(
        people
            .get_with_items(fresh_person_id(), stores)
            .await
            .unwrap(),
        None,
        "unknown id gives None"
    );
    let mut owner = sample_person("Itemised", date(1981, 7, 8), &fresh_postcode());
    owner.set_version(people.save(&owner).await.unwrap());
    let mut local = person_with("Itemlocal", date(1982, 8, 9), &fresh_postcode(), false);
    local.set_version(people.save(&local).await.unwrap());
    assert_eq!(
        people.get_with_items(owner.id(), stores).await.unwrap(),
        Some(HeldRecord {
            person: owner.clone(),
            consent: None,
            alerts: Some(Vec::new()),
            referrals: Some(Vec::new()),
        }),
        "nothing held but the record: both lists read, empty"
    );
    file_items(alert_store, referral_store, owner.id(), local.id()).await;
    // Someone else's consent changes nothing for the owner.
    let mut other = Consent::participating(fresh_nhs_number());
    other.opt_out(&dpo(), at(1), None, "form received").unwrap();
    stores.consent.save(&other).await.unwrap();
    for person in [&owner, &local] {
        let mut read = held(people, person.id(), stores).await;
        read.alerts = read.alerts.map(by_id);
        let (alerts, referrals) = alert_store
            .list_with_referrals(person.id(), referral_store)
            .await
            .unwrap();
        assert_eq!(
            read,
            HeldRecord {
                person: person.clone(),
                consent: None,
                alerts: Some(by_id(alerts)),
                referrals: Some(referrals),
            },
            "without a consent: the record and what the item stores list"
        );
    }
    let read = held(people, owner.id(), stores).await;
    assert_eq!(
        read.referrals
            .unwrap()
            .iter()
            .map(|r| r.source_ref())
            .collect::<Vec<_>>(),
        ["REF-2", "REF-3", "REF-1"],
        "most recently received first, then by id"
    );
    assert_eq!(
        read.alerts.map(|a| a.len()),
        Some(2),
        "only the owner's own"
    );
    // Only what is asked for is read.
    for (alerts, referrals) in [(true, false), (false, true), (false, false)] {
        let asked = ItemStores {
            consent: stores.consent,
            alerts: stores.alerts.filter(|_| alerts),
            referrals: stores.referrals.filter(|_| referrals),
        };
        let read = held(people, owner.id(), asked).await;
        assert_eq!(
            (
                read.alerts.map(|a| a.len()),
                read.referrals.map(|r| r.len())
            ),
            (alerts.then_some(2), referrals.then_some(3)),
            "alerts asked {alerts}, referrals asked {referrals}"
        );
    }
    // A record with a consent (whatever it says) has its items left unread.
    let mut own = Consent::participating(owner.nhs_number().unwrap().clone());
    own.opt_out(&dpo(), at(2), None, "form received").unwrap();
    own.set_version(stores.consent.save(&own).await.unwrap());
    assert_eq!(
        people.get_with_items(owner.id(), stores).await.unwrap(),
        Some(HeldRecord {
            person: owner.clone(),
            consent: Some(own.clone()),
            alerts: None,
            referrals: None,
        }),
        "opted out: the record and its consent, no item read"
    );
    own.opt_in(&dpo(), at(3), "asked to take part again")
        .unwrap();
    own.set_version(stores.consent.save(&own).await.unwrap());
    let read = held(people, owner.id(), stores).await;
    assert_eq!(
        (read.consent, read.alerts, read.referrals),
        (Some(own), None, None),
        "a consent changed back: still no item read with the record"
    );
    // A merged-away record (here `local`, its items still filed under it) has none read.
    let mut survivor = sample_person("Itemsurvivor", date(1982, 8, 9), &fresh_postcode());
    survivor.set_version(people.save(&survivor).await.unwrap());
    let mut retired = people.get(local.id()).await.unwrap().unwrap();
    survivor.absorb(&mut retired).unwrap();
    people.save_merge(&survivor, &retired).await.unwrap();
    let read = held(people, local.id(), stores).await;
    assert_eq!(
        (read.person.merged_into(), read.alerts, read.referrals),
        (Some(survivor.id()), None, None),
        "merged away: no item read with the record"
    );
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

/// The [`PersonRepository::get_with_consent`] contract: `consent` is the same record's
/// consent store.
pub async fn person_with_consent(people: &dyn PersonRepository, consent: &dyn ConsentRepository) {
    assert!(
        people
            .get_with_consent(fresh_person_id(), consent)
            .await
            .unwrap()
            .is_none(),
        "unknown id gives None"
    );
    let mut p = sample_person("Consenting", date(1975, 4, 5), &fresh_postcode());
    p.set_version(people.save(&p).await.unwrap());
    assert_eq!(
        people.get_with_consent(p.id(), consent).await.unwrap(),
        Some((p.clone(), None)),
        "no consent held: none"
    );
    let nhs = p.nhs_number().unwrap().clone();
    let mut held = Consent::participating(nhs.clone());
    held.opt_out(&dpo(), at(1), None, "form received").unwrap();
    held.set_version(consent.save(&held).await.unwrap());
    assert_eq!(
        people.get_with_consent(p.id(), consent).await.unwrap(),
        Some((p.clone(), Some(held.clone()))),
        "the consent held for the record's NHS number, whole"
    );
    // Someone else's consent is not theirs; a record without an NHS number has none.
    let mut other = Consent::participating(fresh_nhs_number());
    other.ask_first(&dpo(), at(2), "asked").unwrap();
    consent.save(&other).await.unwrap();
    let mut local = person_with("Localonly", date(1976, 5, 6), &fresh_postcode(), false);
    local.set_version(people.save(&local).await.unwrap());
    assert_eq!(
        people.get_with_consent(local.id(), consent).await.unwrap(),
        Some((local, None))
    );
    assert_eq!(
        people
            .get_with_consent(p.id(), consent)
            .await
            .unwrap()
            .and_then(|(_, c)| c),
        Some(held)
    );
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
        .record_activity(&council.id, at(100), MessageOutcome::Applied)
        .await
        .unwrap();
    registry
        .record_activity(&council.id, at(50), MessageOutcome::Unchanged)
        .await
        .unwrap();
    registry
        .record_activity(&council.id, at(60), UpdateOutcome::Stale.into())
        .await
        .unwrap();
    registry
        .record_activity(&council.id, at(70), MessageOutcome::Quarantined)
        .await
        .unwrap();
    let seen = registry.get(&council.id).await.unwrap().unwrap();
    assert_eq!(seen.last_message_at, Some(at(100)), "never moves back");
    assert_eq!((seen.applied, seen.unchanged, seen.quarantined), (1, 2, 1));

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
    assert_eq!((seen.applied, seen.quarantined), (1, 1));

    // Unknown sources are ignored.
    let ghost = source(SourceKind::Other);
    registry
        .record_activity(&ghost.id, at(1), MessageOutcome::Applied)
        .await
        .unwrap();
    assert_eq!(registry.get(&ghost.id).await.unwrap(), None);
}

/// The [`QuarantineStore`] contract. `sources` registers the sources the entries name
/// (a database keeps entries only for known sources).
pub async fn quarantine_store(store: &dyn QuarantineStore, sources: &dyn SourceRegistry) {
    let acute = source(SourceKind::Acute);
    let council = source(SourceKind::SocialCare);
    for s in [&acute, &council] {
        sources
            .register(&SourceInfo::new(s.clone(), "feed", Duration::from_secs(60)))
            .await
            .unwrap();
    }
    // Raw bytes kept exactly, including ones that are not text.
    let raw: Vec<u8> = b"MSH|^~\\&|PAS\r\x0b\x1c\x00\xff\xfe PID|1\r".to_vec();
    let entry =
        |id: Uuid, source: &Source, secs: i64, reference: Option<&str>| QuarantinedMessage {
            id,
            source: source.id.clone(),
            format: FeedFormat::Hl7v2,
            received_at: at_micros(secs, 123_456),
            reference: reference.map(str::to_owned),
            raw: [raw.as_slice(), secs.to_string().as_bytes()].concat(),
            reason: "PID-3: no NHS number or local id — «Zoë»".into(),
            subjects: vec![
                Identifier::Nhs(fresh_nhs_number()),
                Identifier::Local(LocalId::new(source.id.clone(), "MRN:0042/a").unwrap()),
            ],
            resolution: None,
        };
    let first = entry(Uuid::new_v4(), &acute, 10, Some("MSG00001"));
    let second = entry(Uuid::new_v4(), &acute, 20, None);
    let third = QuarantinedMessage {
        format: FeedFormat::CsvReferrals,
        ..entry(Uuid::new_v4(), &council, 30, Some("line 17"))
    };
    assert_eq!(store.get(first.id).await.unwrap(), None);
    for e in [&first, &second, &third] {
        assert_eq!(store.put(e).await.unwrap(), e.id);
    }
    assert_eq!(store.get(first.id).await.unwrap().as_ref(), Some(&first));
    assert_eq!(store.get(third.id).await.unwrap().as_ref(), Some(&third));
    assert!(
        store
            .put(&QuarantinedMessage {
                raw: b"other bytes".to_vec(),
                ..first.clone()
            })
            .await
            .is_err(),
        "an id is stored once: a second put must not replace the first"
    );
    // The same bytes again from the same source, while open: the same entry.
    let again = QuarantinedMessage {
        reason: "a later reason".into(),
        ..entry(Uuid::new_v4(), &acute, 10, Some("MSG00001"))
    };
    assert_eq!(store.put(&again).await.unwrap(), first.id);
    assert_eq!(
        store.get(again.id).await.unwrap(),
        None,
        "nothing new stored"
    );
    assert_eq!(store.get(first.id).await.unwrap().as_ref(), Some(&first));
    // The same bytes from another source are another entry.
    let elsewhere = entry(Uuid::new_v4(), &council, 10, Some("MSG00001"));
    assert_eq!(store.put(&elsewhere).await.unwrap(), elsewhere.id);

    // Newest first, by source, limited.
    let acute_only = QuarantineFilter {
        source: Some(acute.id.clone()),
        open_only: false,
    };
    let summary = |m: &QuarantinedMessage| QuarantineSummary::from(m);
    let listed = store.list(&acute_only, 10).await.unwrap();
    assert_eq!(listed, vec![summary(&second), summary(&first)]);
    assert_eq!(
        listed[0].size,
        second.raw.len() as u64,
        "the size, not the content"
    );
    assert_eq!(
        store.list(&acute_only, 1).await.unwrap(),
        vec![summary(&second)]
    );
    let council_only = QuarantineFilter {
        source: Some(council.id.clone()),
        open_only: true,
    };
    assert_eq!(
        store.list(&council_only, 10).await.unwrap(),
        vec![summary(&third), summary(&elsewhere)]
    );
    let everything = store
        .list(&QuarantineFilter::default(), 10_000)
        .await
        .unwrap();
    for e in [&first, &second, &third] {
        assert!(
            everything.contains(&summary(e)),
            "an unfiltered list holds every entry"
        );
    }
    assert!(
        everything
            .windows(2)
            .all(|w| w[0].received_at >= w[1].received_at),
        "newest first"
    );

    // Resolving: once, keeping the original bytes; resolved entries leave the open list.
    let resolution = Resolution {
        at: at_micros(40, 7),
        by: UserId::parse("sm.jones").unwrap(),
        outcome: UpdateOutcome::Applied,
        corrected: Some(b"MSH|^~\\&|fixed".to_vec()),
    };
    assert!(store.resolve(first.id, &resolution).await.unwrap());
    let later = Resolution {
        at: at_micros(50, 0),
        outcome: UpdateOutcome::Unchanged,
        corrected: None,
        ..resolution.clone()
    };
    assert!(
        !store.resolve(first.id, &later).await.unwrap(),
        "the first resolution stands"
    );
    assert!(!store.resolve(Uuid::new_v4(), &later).await.unwrap());
    let resolved = store.get(first.id).await.unwrap().unwrap();
    assert_eq!(resolved.resolution.as_ref(), Some(&resolution));
    assert_eq!(resolved.raw, first.raw, "the original message is kept");
    let open_acute = QuarantineFilter {
        source: Some(acute.id.clone()),
        open_only: true,
    };
    assert_eq!(
        store.list(&open_acute, 10).await.unwrap(),
        vec![summary(&second)]
    );
    let plain = Resolution {
        corrected: None,
        outcome: UpdateOutcome::Stale,
        ..resolution
    };
    assert!(store.resolve(second.id, &plain).await.unwrap());
    assert_eq!(
        store.get(second.id).await.unwrap().unwrap().resolution,
        Some(plain)
    );
    // Once resolved, the same bytes sent again are a new entry.
    let after = entry(Uuid::new_v4(), &acute, 10, Some("MSG00001"));
    assert_eq!(store.put(&after).await.unwrap(), after.id);
}

/// A time with microseconds (what every adapter keeps exactly).
fn at_micros(secs: i64, micros: i64) -> Timestamp {
    Timestamp::from_timestamp_micros((1_750_000_000 + secs) * 1_000_000 + micros).unwrap()
}

/// One microsecond later.
fn just_after(t: Timestamp) -> Timestamp {
    Timestamp::from_timestamp_micros(t.timestamp_micros() + 1).unwrap()
}

fn fresh_org_id(suffix: &str) -> OrganisationId {
    OrganisationId::parse(&format!("{}{suffix}", fresh_text("org"))).unwrap()
}

fn fresh_user_id() -> UserId {
    UserId::parse(&fresh_text("user.")).unwrap()
}

/// Id suffixes whose byte order (the ids' `Ord`) differs from a locale's collation,
/// which ignores punctuation and case: `-` < `B` < `_` < `a` by bytes.
const ORDER_SUFFIXES: [&str; 4] = ["a", "-d", "_c", "B"];

fn organisation(id: OrganisationId, name: &str, created: Timestamp) -> Organisation {
    Organisation {
        id,
        name: name.to_owned(),
        created_at: created,
    }
}

/// An account with every optional field filled and every flag set.
fn full_account(user: UserId, organisation: OrganisationId) -> UserAccount {
    UserAccount {
        user,
        display_name: "Zoë O'Neill-Ångström".into(),
        organisation,
        role: Role::Feed,
        feed_source: Some(SourceId::parse(&fresh_text("feed-")).unwrap()),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
        disabled: true,
        created_at: at_micros(10, 123_456),
        failures_cleared_at: Some(at_micros(20, 654_321)),
    }
}

/// An account with every optional field empty and every flag clear.
fn plain_account(user: UserId, organisation: OrganisationId) -> UserAccount {
    UserAccount {
        user,
        display_name: "Sam Jones".into(),
        organisation,
        role: Role::Gp,
        feed_source: None,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$b3RoZXJzYWx0$b3RoZXJoYXNo".into(),
        disabled: false,
        created_at: at_micros(30, 1),
        failures_cleared_at: None,
    }
}

fn assert_sorted_strictly<T: Ord + std::fmt::Debug>(ids: &[T], what: &str) {
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "{what} are listed in id order, each once: {ids:?}"
    );
}

/// The [`AccountStore`] contract.
pub async fn account_store(store: &dyn AccountStore) {
    // Organisations: created once; a taken id is refused and changes nothing.
    let org = organisation(fresh_org_id(""), "Quay Surgery", at_micros(1, 999_999));
    assert!(
        store.create_organisation(&org).await.unwrap(),
        "a new id is stored"
    );
    let imposter = organisation(org.id.clone(), "Imposter Trust", at_micros(2, 5));
    assert!(
        !store.create_organisation(&imposter).await.unwrap(),
        "a taken id gives false"
    );
    let listed = store.organisations().await.unwrap();
    assert_eq!(
        listed.iter().filter(|o| o.id == org.id).collect::<Vec<_>>(),
        vec![&org],
        "the first organisation stands, every field as stored, microseconds included"
    );

    // Lists are ordered by id (byte order, as the ids' `Ord`), whatever the order of
    // creation and whatever the database's collation.
    let base = fresh_text("order");
    let mut org_ids = Vec::new();
    for suffix in ORDER_SUFFIXES {
        let id = OrganisationId::parse(&format!("{base}{suffix}")).unwrap();
        assert!(
            store
                .create_organisation(&organisation(id.clone(), "Ordered", at_micros(3, 0)))
                .await
                .unwrap()
        );
        org_ids.push(id);
    }
    org_ids.sort();
    let all: Vec<OrganisationId> = store
        .organisations()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_sorted_strictly(&all, "organisations");
    let mine: Vec<OrganisationId> = all
        .iter()
        .filter(|id| id.as_str().starts_with(&base))
        .cloned()
        .collect();
    assert_eq!(mine, org_ids, "organisations in id order");

    // A user round-trips every field: optional ones filled, then empty.
    let other_org = organisation(fresh_org_id("-b"), "Dorset Council", at_micros(4, 4));
    assert!(store.create_organisation(&other_org).await.unwrap());
    let full = full_account(fresh_user_id(), org.id.clone());
    let plain = plain_account(fresh_user_id(), other_org.id.clone());
    assert_eq!(
        store.user(&full.user).await.unwrap(),
        None,
        "unknown user gives None"
    );
    assert!(
        store.create_user(&full).await.unwrap(),
        "a new user is stored"
    );
    assert!(store.create_user(&plain).await.unwrap());
    assert_eq!(store.user(&full.user).await.unwrap().as_ref(), Some(&full));
    assert_eq!(
        store.user(&plain.user).await.unwrap().as_ref(),
        Some(&plain)
    );
    let full_stored = store.user(&full.user).await.unwrap().unwrap();
    assert_eq!(
        full_stored.feed_source, full.feed_source,
        "feed source kept"
    );
    assert!(full_stored.disabled, "disabled kept");
    assert_eq!(
        full_stored.failures_cleared_at, full.failures_cleared_at,
        "failures_cleared_at kept to the microsecond"
    );
    assert_eq!(
        full_stored.created_at, full.created_at,
        "created_at kept to the microsecond"
    );

    // A taken user id gives false and changes nothing.
    let mut twin = plain_account(full.user.clone(), other_org.id.clone());
    twin.display_name = "Someone Else".into();
    assert!(
        !store.create_user(&twin).await.unwrap(),
        "a taken user id gives false"
    );
    assert_eq!(
        store.user(&full.user).await.unwrap().as_ref(),
        Some(&full),
        "the first account stands"
    );

    // A user of an organisation that does not exist is an error, and is not stored.
    let ghost_org = fresh_org_id("-ghost");
    let orphan = plain_account(fresh_user_id(), ghost_org.clone());
    assert!(
        matches!(
            store.create_user(&orphan).await,
            Err(RepoError::Unexpected(_))
        ),
        "a user of an unknown organisation is Unexpected"
    );
    assert_eq!(store.user(&orphan.user).await.unwrap(), None);
    let orphan_twin = plain_account(full.user.clone(), ghost_org);
    assert!(
        matches!(
            store.create_user(&orphan_twin).await,
            Err(RepoError::Unexpected(_))
        ),
        "an unknown organisation is Unexpected even when the user id is taken"
    );
    assert_eq!(store.user(&full.user).await.unwrap().as_ref(), Some(&full));

    // update_user replaces every field of the stored account.
    let mut changed = plain_account(full.user.clone(), other_org.id.clone());
    changed.display_name = "Zoë Renamed".into();
    changed.password_hash = "$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdA$bmV3aGFzaA".into();
    changed.created_at = at_micros(40, 7);
    assert!(
        store.update_user(&changed).await.unwrap(),
        "an existing user is replaced"
    );
    assert_eq!(
        store.user(&full.user).await.unwrap().as_ref(),
        Some(&changed),
        "every field replaced, optional ones emptied"
    );
    let mut refilled = full_account(plain.user.clone(), org.id.clone());
    refilled.role = Role::SystemManager;
    assert!(store.update_user(&refilled).await.unwrap());
    assert_eq!(
        store.user(&plain.user).await.unwrap().as_ref(),
        Some(&refilled),
        "every field replaced, optional ones filled"
    );
    let unchanged_again = refilled.clone();
    assert!(
        store.update_user(&unchanged_again).await.unwrap(),
        "replacing with equal values still finds the user"
    );

    // update_user of a missing user gives false and stores nothing.
    let missing = plain_account(fresh_user_id(), org.id.clone());
    assert!(
        !store.update_user(&missing).await.unwrap(),
        "updating a missing user gives false"
    );
    assert_eq!(store.user(&missing.user).await.unwrap(), None);

    // clear_failures sets that one field and nothing else: a sign-in racing a disable
    // or a password reset must not undo it.
    let mut racing = plain_account(fresh_user_id(), org.id.clone());
    assert!(store.create_user(&racing).await.unwrap());
    racing.disabled = true;
    racing.password_hash = "$argon2id$v=19$m=19456,t=2,p=1$bmV3$bmV3aGFzaA".into();
    assert!(store.update_user(&racing).await.unwrap());
    let cleared_at = Timestamp::from_timestamp(1_800_000_123, 456_000).unwrap();
    assert!(
        store
            .clear_failures(&racing.user, cleared_at)
            .await
            .unwrap()
    );
    racing.failures_cleared_at = Some(cleared_at);
    assert_eq!(
        store.user(&racing.user).await.unwrap(),
        Some(racing.clone()),
        "clear_failures changes only failures_cleared_at"
    );
    assert!(
        !store
            .clear_failures(&fresh_user_id(), cleared_at)
            .await
            .unwrap(),
        "clear_failures of a missing user gives false"
    );

    // Users are listed in id order, each once, as stored.
    let user_base = fresh_text("order.");
    let mut user_ids = Vec::new();
    for suffix in ORDER_SUFFIXES {
        let id = UserId::parse(&format!("{user_base}{suffix}")).unwrap();
        assert!(
            store
                .create_user(&plain_account(id.clone(), org.id.clone()))
                .await
                .unwrap()
        );
        user_ids.push(id);
    }
    user_ids.sort();
    let users = store.users().await.unwrap();
    let all: Vec<UserId> = users.iter().map(|u| u.user.clone()).collect();
    assert_sorted_strictly(&all, "users");
    let mine: Vec<UserId> = all
        .iter()
        .filter(|id| id.as_str().starts_with(&user_base))
        .cloned()
        .collect();
    assert_eq!(mine, user_ids, "users in id order");
    assert!(
        users.contains(&changed) && users.contains(&refilled),
        "users lists them as stored"
    );
}

/// A token hash no other run uses, with a zero first byte and a 0xFF last byte (binary,
/// not text).
fn fresh_token() -> TokenHash {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    bytes[0] = 0;
    bytes[31] = 0xFF;
    TokenHash(bytes)
}

fn session(user: &UserId, created: Timestamp) -> SessionRecord {
    SessionRecord {
        token_hash: fresh_token(),
        user: user.clone(),
        created_at: created,
        last_seen_at: created,
        revoked_at: None,
    }
}

/// The [`SessionStore`] contract. Its users are created first through `accounts`
/// (adapters may hold a foreign key to them).
pub async fn session_store(sessions: &dyn SessionStore, accounts: &dyn AccountStore) {
    let org = organisation(fresh_org_id(""), "Sessions Trust", at_micros(0, 0));
    assert!(accounts.create_organisation(&org).await.unwrap());
    let alice = fresh_user_id();
    let bob = fresh_user_id();
    // Carol's account has every field set (feed source, disabled, failures cleared).
    let carol = fresh_user_id();
    for account in [
        plain_account(alice.clone(), org.id.clone()),
        plain_account(bob.clone(), org.id.clone()),
        full_account(carol.clone(), org.id.clone()),
    ] {
        assert!(accounts.create_user(&account).await.unwrap());
    }

    // create / get round-trip, microseconds included.
    let s1 = session(&alice, at_micros(100, 123_456));
    assert_eq!(
        sessions.get(&s1.token_hash).await.unwrap(),
        None,
        "unknown token gives None"
    );
    sessions.create(&s1).await.unwrap();
    assert_eq!(
        sessions.get(&s1.token_hash).await.unwrap().as_ref(),
        Some(&s1)
    );
    // Token hashes are unique: a second session with the same hash is refused.
    let mut dup = session(&bob, at_micros(101, 0));
    dup.token_hash = s1.token_hash;
    assert!(
        sessions.create(&dup).await.is_err(),
        "a taken token hash is refused"
    );
    assert_eq!(
        sessions.get(&s1.token_hash).await.unwrap().as_ref(),
        Some(&s1),
        "the first session stands"
    );
    // A session stored as already revoked round-trips too.
    let mut ended = session(&bob, at_micros(102, 5));
    ended.last_seen_at = at_micros(103, 6);
    ended.revoked_at = Some(at_micros(104, 7));
    sessions.create(&ended).await.unwrap();
    assert_eq!(
        sessions.get(&ended.token_hash).await.unwrap().as_ref(),
        Some(&ended)
    );

    // A session with its user's account, in one read where the store can: what `get`
    // and `user` give, a revoked session included (ending it is the caller's check),
    // and Carol's account with every field set.
    let s3 = session(&carol, at_micros(104, 9));
    sessions.create(&s3).await.unwrap();
    for (s, user) in [(&s1, &alice), (&ended, &bob), (&s3, &carol)] {
        assert_eq!(
            sessions
                .get_with_account(&s.token_hash, accounts)
                .await
                .unwrap(),
            Some((s.clone(), accounts.user(user).await.unwrap().unwrap())),
            "the session and its user's account"
        );
    }
    assert_eq!(
        sessions
            .get_with_account(&session(&alice, at_micros(105, 0)).token_hash, accounts)
            .await
            .unwrap(),
        None,
        "an unknown token has no session and no account"
    );

    // touch only moves last_seen_at forward.
    let t = s1.last_seen_at;
    assert!(
        !sessions
            .touch(&s1.token_hash, at_micros(99, 0))
            .await
            .unwrap(),
        "an earlier time does not write"
    );
    assert!(
        !sessions.touch(&s1.token_hash, t).await.unwrap(),
        "the same time does not write"
    );
    assert_eq!(
        sessions.get(&s1.token_hash).await.unwrap().as_ref(),
        Some(&s1)
    );
    let later = just_after(t);
    assert!(
        sessions.touch(&s1.token_hash, later).await.unwrap(),
        "a later time writes (one microsecond is later)"
    );
    let touched = sessions.get(&s1.token_hash).await.unwrap().unwrap();
    assert_eq!(touched.last_seen_at, later);
    assert_eq!(
        touched,
        SessionRecord {
            last_seen_at: later,
            ..s1.clone()
        },
        "touch changes last_seen_at alone"
    );
    assert!(
        !sessions.touch(&s1.token_hash, t).await.unwrap(),
        "never moves back"
    );
    assert_eq!(
        sessions
            .get(&s1.token_hash)
            .await
            .unwrap()
            .unwrap()
            .last_seen_at,
        later
    );
    assert!(
        !sessions
            .touch(&fresh_token(), at_micros(500, 0))
            .await
            .unwrap(),
        "an unknown token is not touched"
    );

    // revoke: once, the first revocation stands; a revoked session is never touched.
    let revoked_at = at_micros(200, 222_222);
    assert!(
        sessions.revoke(&s1.token_hash, revoked_at).await.unwrap(),
        "a live session is revoked"
    );
    assert!(
        !sessions
            .revoke(&s1.token_hash, at_micros(300, 0))
            .await
            .unwrap(),
        "a revoked session is not revoked again"
    );
    let stored = sessions.get(&s1.token_hash).await.unwrap().unwrap();
    assert_eq!(
        stored.revoked_at,
        Some(revoked_at),
        "the first revocation stands"
    );
    assert_eq!(
        stored.last_seen_at, later,
        "revoke leaves last_seen_at alone"
    );
    assert!(
        !sessions
            .touch(&s1.token_hash, at_micros(400, 0))
            .await
            .unwrap(),
        "a revoked session is not touched"
    );
    assert_eq!(
        sessions.get(&s1.token_hash).await.unwrap().unwrap(),
        stored,
        "get returns revoked sessions, unchanged by a refused touch"
    );
    assert!(
        !sessions.revoke(&fresh_token(), revoked_at).await.unwrap(),
        "an unknown token was not live"
    );

    // revoke_user counts and ends only that user's live sessions.
    let a2 = session(&alice, at_micros(110, 1));
    let a3 = session(&alice, at_micros(111, 2));
    let mut a4 = session(&alice, at_micros(112, 3));
    a4.revoked_at = Some(at_micros(113, 4));
    let b1 = session(&bob, at_micros(114, 5));
    for s in [&a2, &a3, &a4, &b1] {
        sessions.create(s).await.unwrap();
    }
    let all_gone = at_micros(600, 600_006);
    assert_eq!(
        sessions.revoke_user(&alice, all_gone).await.unwrap(),
        2,
        "only live sessions count (s1 and a4 were already revoked)"
    );
    for s in [&a2, &a3] {
        assert_eq!(
            sessions.get(&s.token_hash).await.unwrap(),
            Some(SessionRecord {
                revoked_at: Some(all_gone),
                ..s.clone()
            })
        );
    }
    assert_eq!(
        sessions.get(&a4.token_hash).await.unwrap().as_ref(),
        Some(&a4),
        "an earlier revocation stands"
    );
    assert_eq!(
        sessions
            .get(&s1.token_hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(revoked_at)
    );
    assert_eq!(
        sessions.get(&b1.token_hash).await.unwrap().as_ref(),
        Some(&b1),
        "another user's session is untouched"
    );
    assert_eq!(
        sessions
            .revoke_user(&alice, at_micros(700, 0))
            .await
            .unwrap(),
        0,
        "nothing left to revoke"
    );
    assert_eq!(
        sessions
            .revoke_user(&fresh_user_id(), all_gone)
            .await
            .unwrap(),
        0
    );
    assert!(
        sessions
            .touch(&b1.token_hash, at_micros(800, 8))
            .await
            .unwrap()
    );
    assert_eq!(
        sessions.revoke_user(&bob, at_micros(900, 9)).await.unwrap(),
        1
    );
    assert!(
        !sessions
            .revoke(&b1.token_hash, at_micros(901, 0))
            .await
            .unwrap()
    );
}

fn security_event(
    at: Timestamp,
    kind: SecurityEventKind,
    user: Option<&UserId>,
    client: IpAddr,
    detail: Option<&str>,
) -> SecurityEvent {
    SecurityEvent {
        at,
        kind,
        user: user.cloned(),
        client,
        detail: detail.map(str::to_owned),
    }
}

/// The [`SecurityLog`] contract. `recent` is checked on the events this suite appends
/// last, so the log must not have other writers while it runs.
pub async fn security_log(log: &dyn SecurityLog) {
    use SecurityEventKind::{NetworkRefused, SignInFailed, SignInLocked, SignInSucceeded};
    let u = fresh_user_id();
    let v = fresh_user_id();
    let v4 = IpAddr::V4(Ipv4Addr::new(192, 168, 10, 254));
    let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0xff00, 0x42, 0x8329));
    let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
    let events = vec![
        security_event(
            at_micros(1_000, 1),
            SignInFailed,
            Some(&u),
            v4,
            Some("wrong password"),
        ),
        security_event(at_micros(1_001, 2), SignInFailed, Some(&u), v6, None),
        security_event(at_micros(1_002, 3), SignInFailed, Some(&v), v4, Some("")),
        security_event(at_micros(1_002, 3), SignInSucceeded, Some(&u), mapped, None),
        security_event(
            at_micros(1_003, 4),
            NetworkRefused,
            None,
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            Some("not on the allow-list: «ünïcode» 'quoted'"),
        ),
        security_event(
            at_micros(1_004, 999_999),
            SignInFailed,
            Some(&u),
            v6,
            Some("account disabled"),
        ),
    ];
    for e in &events {
        log.append(e).await.unwrap();
    }

    // recent: newest first, at most `limit`, every field as appended.
    let newest_first: Vec<SecurityEvent> = events.iter().rev().cloned().collect();
    assert_eq!(
        log.recent(events.len()).await.unwrap(),
        newest_first,
        "newest first; IPv4, IPv6 and mapped clients, users and details (None, empty, text) kept"
    );
    assert_eq!(
        log.recent(2).await.unwrap(),
        newest_first[..2],
        "the limit holds"
    );
    assert!(log.recent(0).await.unwrap().is_empty());

    // count: one user's events of one kind at or after `since`.
    let since_start = at_micros(0, 0);
    assert_eq!(log.count(&u, SignInFailed, since_start).await.unwrap(), 3);
    assert_eq!(
        log.count(&u, SignInFailed, events[1].at).await.unwrap(),
        2,
        "since is inclusive"
    );
    assert_eq!(
        log.count(&u, SignInFailed, just_after(events[1].at))
            .await
            .unwrap(),
        1,
        "one microsecond later leaves the event out"
    );
    assert_eq!(
        log.count(&u, SignInFailed, just_after(events[5].at))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        log.count(&u, SignInSucceeded, since_start).await.unwrap(),
        1,
        "filtered by kind"
    );
    assert_eq!(log.count(&u, SignInLocked, since_start).await.unwrap(), 0);
    assert_eq!(
        log.count(&v, SignInFailed, since_start).await.unwrap(),
        1,
        "filtered by user"
    );
    assert_eq!(
        log.count(&v, SignInSucceeded, since_start).await.unwrap(),
        0
    );
    assert_eq!(
        log.count(&fresh_user_id(), SignInFailed, since_start)
            .await
            .unwrap(),
        0
    );

    // An identical event appended again is a second event: nothing is merged or replaced.
    log.append(&events[5]).await.unwrap();
    assert_eq!(
        log.count(&u, SignInFailed, since_start).await.unwrap(),
        4,
        "a repeated event counts again"
    );
    let recent = log.recent(events.len() + 1).await.unwrap();
    assert_eq!(recent[0], events[5]);
    assert_eq!(recent[1..], newest_first[..]);
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

/// The feed stores' own contracts hold for the stores a unit hands out, as they do
/// outside one (the same suites, run inside one unit, then committed).
pub async fn feed_stores_in_a_unit(units: &dyn UnitOfWork, outside: &FeedStores) {
    let unit = units.begin().await.unwrap();
    let stores = unit.stores(outside);
    person_repository(stores.people.as_ref()).await;
    person_search(stores.people.as_ref()).await;
    person_merge(stores.people.as_ref()).await;
    referral_repository(stores.referrals.as_ref(), stores.people.as_ref()).await;
    alert_repository(stores.alerts.as_ref(), stores.people.as_ref()).await;
    source_registry(stores.sources.as_ref()).await;
    quarantine_store(stores.quarantine.as_ref(), stores.sources.as_ref()).await;
    unit.commit().await.unwrap();
}

/// The [`UnitOfWork`] contract, over the feed stores used outside any unit.
pub async fn unit_of_work(units: &dyn UnitOfWork, outside: &FeedStores) {
    assert!(units.capacity() >= 1, "a unit holds at least one message");
    assert!(
        !units.others_attached(),
        "no other process has the test's database open"
    );
    let acute = source(SourceKind::Acute);
    outside
        .sources
        .register(&SourceInfo::new(
            acute.clone(),
            "PAS",
            Duration::from_secs(60),
        ))
        .await
        .unwrap();
    let alert_for = |person: PersonId, reference: &str| {
        Alert::new(
            AlertId::from_uuid(Uuid::new_v4()),
            person,
            acute.clone(),
            reference,
            AlertDetails::new(
                AlertCategory::Allergy,
                "Penicillin",
                Severity::High,
                date(2025, 1, 1),
                date(2025, 1, 1),
                None,
            )
            .unwrap(),
            at(1),
        )
        .unwrap()
    };

    // Within a unit, its stores read what it wrote; a conflict inside it spoils only
    // that write; after commit, everyone sees all of it.
    let unit = units.begin().await.unwrap();
    let stores = unit.stores(outside);
    let person = sample_person("Unitas", date(1980, 1, 2), &fresh_postcode());
    assert_eq!(stores.people.save(&person).await.unwrap(), 1);
    assert!(
        matches!(stores.people.save(&person).await, Err(RepoError::Conflict)),
        "the same new person twice"
    );
    let stored = stores.people.get(person.id()).await.unwrap();
    assert_eq!(
        stored.map(|p| p.version()),
        Some(1),
        "a unit reads its writes"
    );
    let alert = alert_for(person.id(), &fresh_text("AL"));
    stores.alerts.save(&alert).await.unwrap();
    assert!(
        matches!(stores.alerts.save(&alert).await, Err(RepoError::Conflict)),
        "the same new alert twice"
    );
    // A write that fails halfway (its row inserted, then an identifier already held)
    // leaves nothing of itself, and the unit goes on.
    let mut thief = Person::new(fresh_person_id());
    thief
        .add_identifier(Identifier::Nhs(person.nhs_number().unwrap().clone()))
        .unwrap();
    assert!(matches!(
        stores.people.save(&thief).await,
        Err(RepoError::IdentifierTaken(_))
    ));
    assert_eq!(stores.people.get(thief.id()).await.unwrap(), None);
    // Several messages' activity in one unit adds up (the latest time stays).
    for (time, outcome) in [
        (500, MessageOutcome::Applied),
        (400, MessageOutcome::Applied),
        (450, MessageOutcome::Unchanged),
    ] {
        stores
            .sources
            .record_activity(&acute.id, at(time), outcome)
            .await
            .unwrap();
    }
    let kept = QuarantinedMessage {
        id: Uuid::new_v4(),
        source: acute.id.clone(),
        format: FeedFormat::Hl7v2,
        received_at: at(500),
        reference: None,
        raw: fresh_text("MSH|unit").into_bytes(),
        reason: "PID-3: missing".into(),
        subjects: Vec::new(),
        resolution: None,
    };
    assert_eq!(stores.quarantine.put(&kept).await.unwrap(), kept.id);
    unit.commit().await.unwrap();
    assert!(outside.people.get(person.id()).await.unwrap().is_some());
    assert_eq!(
        outside
            .alerts
            .list_for_person(person.id())
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(outside.quarantine.get(kept.id).await.unwrap().is_some());
    let seen = outside.sources.get(&acute.id).await.unwrap().unwrap();
    assert_eq!(
        (seen.last_message_at, seen.applied, seen.unchanged),
        (Some(at(500)), 2, 1)
    );

    // A unit ended without commit holds nothing up: others go on writing (whether its
    // own writes stayed is the adapter's business, which callers may not rely on).
    let abandoned = units.begin().await.unwrap();
    let other = sample_person("Abandon", date(1981, 3, 4), &fresh_postcode());
    abandoned.stores(outside).people.save(&other).await.unwrap();
    drop(abandoned);
    let after = sample_person("Afterwards", date(1982, 5, 6), &fresh_postcode());
    let saved = tokio::time::timeout(Duration::from_secs(10), outside.people.save(&after)).await;
    assert_eq!(
        saved.expect("a dropped unit released its locks").unwrap(),
        1
    );

    // Units open at the same time, over different people, both commit (a database
    // with one writer makes the second wait for the first, never fail).
    let (a, b) = (
        sample_person("Together", date(1991, 2, 3), &fresh_postcode()),
        sample_person("Alongside", date(1992, 3, 4), &fresh_postcode()),
    );
    let write = |p: Person| async move {
        let unit = units.begin().await.unwrap();
        unit.stores(outside).people.save(&p).await.unwrap();
        tokio::task::yield_now().await;
        unit.commit().await.unwrap();
        p.id()
    };
    let both = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(write(a.clone()), write(b.clone()))
    })
    .await
    .expect("two units at once both finish");
    for id in [both.0, both.1] {
        assert!(outside.people.get(id).await.unwrap().is_some());
    }

    // Units one after another each commit on their own.
    for n in 0..3 {
        let unit = units.begin().await.unwrap();
        let p = sample_person(&format!("Serial{n}"), date(1990, 1, 1), &fresh_postcode());
        unit.stores(outside).people.save(&p).await.unwrap();
        unit.commit().await.unwrap();
        assert!(outside.people.get(p.id()).await.unwrap().is_some());
    }
}
