//! The whole core, wired as the binary wires it (in-memory stores, the reference
//! policy, a manual clock), driven through the use cases the way the feeds and the HTTP
//! API will drive it. Each test reads like the rule it checks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use care_access_audit::{AuditEvent, ChainBreak, Outcome};
use care_alert::{AlertCategory, AlertDetails, Severity};
use care_application::views::GpSummaryState;
use care_application::{
    AccessError, AlertRepository, ConsentCommand, DeathStatement, IngestError, PersonIdentity,
    Ports, ReferralRepository, RepoError, Services, SourceInfo,
};
use care_consent::{ConsentLevel, EvidenceStatus, Representative};
use care_in_memory::{InMemoryAuditLog, ManualClock, SpecPolicy, in_memory_ports};
use care_kernel::{
    AccessBasis, Action, Actor, BasisKind, Date, DenyReason, OrganisationId, PersonId, Purpose,
    Role, Source, SourceId, SourceKind, Timestamp, UpdateOutcome, UserId,
};
use care_person::{
    Address, Demographics, Gender, GpPractice, LocalId, NameKey, NhsNumber, PersonName, Postcode,
    SearchCriteria, VitalStatus,
};
use care_referral::{InvolvementLevel, ReferralDetails, ReferralSource, ReferralStatus};

const CLINICAL: [Role; 4] = [
    Role::Gp,
    Role::Clinician,
    Role::SocialWorker,
    Role::Pharmacist,
];

fn at(y: i32, m: u32, d: u32) -> Timestamp {
    Date::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc()
}

fn day(y: i32, m: u32, d: u32) -> Date {
    Date::from_ymd_opt(y, m, d).unwrap()
}

fn actor(role: Role, org: &str) -> Actor {
    Actor::new(
        UserId::parse(&format!("{}-user", role.as_str())).unwrap(),
        OrganisationId::parse(org).unwrap(),
        role,
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
    )
}

struct World {
    services: Services,
    clock: Arc<ManualClock>,
    audit: Arc<InMemoryAuditLog>,
}

const ACUTE: &str = "acute-uhd";
const GP: &str = "gp-ems";
const COUNCIL: &str = "council-dc";

impl World {
    async fn new() -> Self {
        let clock = Arc::new(ManualClock::new(at(2026, 11, 25)));
        let audit = Arc::new(InMemoryAuditLog::default());
        let mut ports: Ports = in_memory_ports(Arc::new(SpecPolicy::default()), clock.clone());
        ports.audit = audit.clone();
        for (id, kind, name, hours) in [
            (ACUTE, SourceKind::Acute, "University Hospitals Dorset", 1),
            (GP, SourceKind::GpPractice, "GP practices", 1),
            (COUNCIL, SourceKind::SocialCare, "Dorset Council", 26),
        ] {
            ports
                .sources
                .register(&SourceInfo::new(
                    Source::new(SourceId::parse(id).unwrap(), kind),
                    name,
                    Duration::from_secs(hours * 3600),
                ))
                .await
                .unwrap();
        }
        Self {
            services: Services::new(ports),
            clock,
            audit,
        }
    }

    fn feed(source: &str) -> Actor {
        actor(Role::Feed, "FEEDS").with_feed_source(SourceId::parse(source).unwrap())
    }

    fn identity(source: &str, local: &str, nhs: Option<&NhsNumber>) -> PersonIdentity {
        PersonIdentity::new(
            nhs.cloned(),
            Some(LocalId::new(SourceId::parse(source).unwrap(), local).unwrap()),
        )
        .unwrap()
    }

    /// A person sent by a source, returning their id.
    async fn person(
        &self,
        source: &str,
        local: &str,
        nhs: &NhsNumber,
        family: &str,
        postcode: &str,
    ) -> PersonId {
        self.services
            .ingest_demographics(
                &Self::feed(source),
                &SourceId::parse(source).unwrap(),
                &Self::identity(source, local, Some(nhs)),
                self.clock.now(),
                demographics(family, postcode),
                DeathStatement::NotStated,
            )
            .await
            .unwrap();
        self.services
            .ports()
            .people
            .find_by_identifier(&care_person::Identifier::Nhs(nhs.clone()))
            .await
            .unwrap()
            .unwrap()
            .id()
    }

    async fn set_consent(&self, nhs: &NhsNumber, command: ConsentCommand) {
        self.services
            .change_consent(
                &actor(Role::Dpo, "DPO"),
                nhs,
                command,
                "recorded from the form",
            )
            .await
            .unwrap();
    }

    fn events(&self) -> Vec<AuditEvent> {
        self.audit
            .snapshot()
            .0
            .into_iter()
            .map(|c| c.event)
            .collect()
    }

    fn last_event(&self) -> AuditEvent {
        self.events().pop().unwrap()
    }
}

use care_application::Clock as _;

fn demographics(family: &str, postcode: &str) -> Demographics {
    Demographics {
        name: Some(PersonName::new(family, "Alex").unwrap()),
        birth_date: Some(day(1950, 3, 4)),
        gender: Some(Gender::Female),
        address: Some(
            Address::new(
                vec!["1 High St".into()],
                Some(Postcode::parse(postcode).unwrap()),
            )
            .unwrap(),
        ),
        registered_gp: Some(GpPractice::new("J82001", Some("Quayside Surgery")).unwrap()),
    }
}

fn nhs(n: u32) -> NhsNumber {
    (n..)
        .find_map(|k| NhsNumber::from_first_nine(999_000_000 + k))
        .unwrap()
}

fn by_name(family: &str) -> SearchCriteria {
    SearchCriteria::FamilyAndBirthDate {
        family_prefix: NameKey::parse_prefix(family).unwrap(),
        birth_date: day(1950, 3, 4),
    }
}

fn is_not_found<T: std::fmt::Debug>(r: Result<T, AccessError>) -> bool {
    matches!(r, Err(AccessError::NotFound))
}

#[tokio::test]
async fn opted_out_person_is_invisible_to_every_clinical_role() {
    let w = World::new().await;
    let n = nhs(1);
    let id = w.person(ACUTE, "H1", &n, "Hidden", "BH1 1AA").await;
    w.set_consent(
        &n,
        ConsentCommand::OptOut {
            representative: None,
        },
    )
    .await;
    let unknown = PersonId::from_uuid(uuid::Uuid::from_u128(42));

    for role in CLINICAL {
        for a in [
            actor(role, "RDZ"),
            actor(role, "RDZ")
                .with_basis(AccessBasis::new(BasisKind::Emergency, "collapsed in ED").unwrap()),
        ] {
            for criteria in [
                SearchCriteria::NhsNumber(n.clone()),
                by_name("hid"),
                SearchCriteria::Postcode(Postcode::parse("BH1 1AA").unwrap()),
            ] {
                let found = w.services.search_people(&a, &criteria, true).await.unwrap();
                assert!(found.hits.is_empty(), "{role:?} found an opted-out person");
                assert!(!found.truncated);
            }
            // A direct read answers exactly as for an unknown id.
            assert!(is_not_found(w.services.person_summary(&a, id).await));
            assert!(is_not_found(w.services.person_summary(&a, unknown).await));
            assert!(is_not_found(w.services.gp_summary(&a, id).await));
            if role != Role::Pharmacist {
                assert!(is_not_found(w.services.list_referrals(&a, id).await));
            }
        }
    }
    // The audit knows why; the caller did not.
    let refused = w
        .events()
        .into_iter()
        .filter(|e| e.person == Some(id) && e.outcome == Outcome::Denied(DenyReason::OptedOut))
        .count();
    assert!(
        refused >= 8 * 3,
        "every refused access to the opted-out person is audited"
    );
}

#[tokio::test]
async fn opting_back_in_restores_the_record_that_feeds_kept_updating() {
    let w = World::new().await;
    let n = nhs(2);
    let id = w.person(ACUTE, "H2", &n, "Back", "BH1 1AA").await;
    w.set_consent(
        &n,
        ConsentCommand::OptOut {
            representative: None,
        },
    )
    .await;
    w.clock.advance(chrono::Duration::hours(1));
    w.person(ACUTE, "H2", &n, "Backhouse", "BH2 2BB").await;
    w.set_consent(&n, ConsentCommand::OptIn).await;
    let summary = w
        .services
        .person_summary(&actor(Role::Gp, "M81"), id)
        .await
        .unwrap();
    assert_eq!(
        summary.demographics.name.unwrap().value.family(),
        "Backhouse"
    );
    assert_eq!(summary.consent, ConsentLevel::Participating);
}

#[tokio::test]
async fn ask_first_needs_permission_or_emergency_to_open_and_the_basis_is_audited() {
    let w = World::new().await;
    let n = nhs(3);
    let id = w.person(ACUTE, "H3", &n, "Asker", "DT1 1AA").await;
    w.set_consent(&n, ConsentCommand::AskFirst).await;
    let gp = actor(Role::Gp, "M81");

    let found = w
        .services
        .search_people(&gp, &SearchCriteria::NhsNumber(n.clone()), false)
        .await
        .unwrap();
    assert_eq!(found.hits.len(), 1, "found, to pick the right person");
    assert!(found.hits[0].ask_first);

    assert!(matches!(
        w.services.person_summary(&gp, id).await,
        Err(AccessError::PermissionRequired)
    ));
    assert_eq!(
        w.last_event().outcome,
        Outcome::Denied(DenyReason::PermissionRequired)
    );

    let with_permission = gp.clone().with_basis(
        AccessBasis::new(BasisKind::PermissionGiven, "patient agreed in clinic").unwrap(),
    );
    let summary = w
        .services
        .person_summary(&with_permission, id)
        .await
        .unwrap();
    assert_eq!(summary.consent, ConsentLevel::AskFirst);
    let event = w.last_event();
    assert_eq!(event.outcome, Outcome::Permitted);
    assert_eq!(
        event.basis.as_ref().map(|b| b.kind()),
        Some(BasisKind::PermissionGiven)
    );
    assert_eq!(
        event.basis.as_ref().map(|b| b.reason()),
        Some("patient agreed in clinic")
    );
    assert_eq!(
        summary.receipt().seq(),
        w.audit.snapshot().1.len - 1,
        "the receipt names the event written"
    );
}

#[tokio::test]
async fn other_purposes_than_direct_care_are_refused_and_audited_whether_or_not_the_person_exists()
{
    let w = World::new().await;
    let n = nhs(4);
    let id = w.person(ACUTE, "H4", &n, "Review", "BH1 1AA").await;
    let hidden = nhs(5);
    let hidden_id = w.person(ACUTE, "H5", &hidden, "Review", "BH1 1AA").await;
    w.set_consent(
        &hidden,
        ConsentCommand::OptOut {
            representative: None,
        },
    )
    .await;
    let reviewer =
        actor(Role::Clinician, "RDZ").with_purpose(Purpose::Other("death-review".into()));
    for target in [id, hidden_id, PersonId::from_uuid(uuid::Uuid::from_u128(7))] {
        assert!(matches!(
            w.services.person_summary(&reviewer, target).await,
            Err(AccessError::PurposeRefused)
        ));
        let e = w.last_event();
        assert_eq!(e.outcome, Outcome::Denied(DenyReason::PurposeNotDirectCare));
        assert_eq!(e.purpose, Purpose::Other("death-review".into()));
    }
    assert!(matches!(
        w.services
            .search_people(&reviewer, &by_name("rev"), false)
            .await,
        Err(AccessError::PurposeRefused)
    ));
}

#[tokio::test]
async fn deceased_people_are_found_only_when_asked_their_gp_record_closes_and_after_eight_years_they_are_gone()
 {
    let w = World::new().await;
    let n = nhs(6);
    let id = w.person(GP, "G6", &n, "Late", "BH1 1AA").await;
    let gp_alert = AlertDetails::new(
        AlertCategory::Medication,
        "Warfarin",
        Severity::High,
        day(2020, 1, 1),
        day(2020, 1, 1),
        None,
    )
    .unwrap();
    w.services
        .ingest_alert(
            &World::feed(GP),
            &SourceId::parse(GP).unwrap(),
            &World::identity(GP, "G6", None),
            "GA-1",
            gp_alert,
            w.clock.now(),
        )
        .await
        .unwrap();
    let gp = actor(Role::Gp, "M81");
    match w.services.gp_summary(&gp, id).await.unwrap().state {
        GpSummaryState::Open { alerts } => assert_eq!(alerts.len(), 1),
        other => panic!("{other:?}"),
    }

    w.services
        .ingest_death(
            &World::feed(GP),
            &SourceId::parse(GP).unwrap(),
            &World::identity(GP, "G6", None),
            w.clock.now(),
            DeathStatement::Deceased(day(2026, 11, 20)),
        )
        .await
        .unwrap();
    let criteria = SearchCriteria::NhsNumber(n.clone());
    assert!(
        w.services
            .search_people(&gp, &criteria, false)
            .await
            .unwrap()
            .hits
            .is_empty()
    );
    let with_deceased = w
        .services
        .search_people(&gp, &criteria, true)
        .await
        .unwrap();
    assert_eq!(with_deceased.hits[0].date_of_death, Some(day(2026, 11, 20)));
    let summary = w.services.person_summary(&gp, id).await.unwrap();
    assert_eq!(summary.vital_status, VitalStatus::Deceased);
    assert!(
        matches!(w.services.gp_summary(&gp, id).await.unwrap().state, GpSummaryState::ClosedAfterDeath { date_of_death } if date_of_death == day(2026, 11, 20))
    );

    // Nine years on, the record is never shown, even when asked for.
    w.clock.set(at(2035, 11, 25));
    assert!(
        w.services
            .search_people(&gp, &criteria, true)
            .await
            .unwrap()
            .hits
            .is_empty()
    );
    assert!(is_not_found(w.services.person_summary(&gp, id).await));
    assert_eq!(
        w.last_event().outcome,
        Outcome::Denied(DenyReason::DeceasedBeyondRetention)
    );
}

#[tokio::test]
async fn pharmacists_never_see_referrals_and_auditors_never_see_records() {
    let w = World::new().await;
    let id = w.person(ACUTE, "H8", &nhs(8), "Kid", "BH1 1AA").await;
    assert!(matches!(
        w.services
            .list_referrals(&actor(Role::Pharmacist, "FA1"), id)
            .await,
        Err(AccessError::Forbidden)
    ));
    let council = SourceId::parse(COUNCIL).unwrap();
    w.services
        .ingest_referral(
            &World::feed(COUNCIL),
            &council,
            &PersonIdentity::new(Some(nhs(8)), None).unwrap(),
            "R8",
            referral(ReferralStatus::Accepted),
            w.clock.now(),
        )
        .await
        .unwrap();
    let pharmacist_view = w
        .services
        .person_summary(&actor(Role::Pharmacist, "FA1"), id)
        .await
        .unwrap();
    assert!(
        pharmacist_view
            .freshness
            .iter()
            .all(|f| f.source != council),
        "freshness must not reveal that the council holds a referral"
    );
    let gp_view = w
        .services
        .person_summary(&actor(Role::Gp, "M81"), id)
        .await
        .unwrap();
    assert!(gp_view.freshness.iter().any(|f| f.source == council));
    for role in [Role::Auditor, Role::Feed, Role::Dpo, Role::SystemManager] {
        assert!(
            matches!(
                w.services.person_summary(&actor(role, "X"), id).await,
                Err(AccessError::Forbidden)
            ),
            "{role:?}"
        );
        assert!(
            matches!(
                w.services
                    .search_people(&actor(role, "X"), &by_name("kid"), false)
                    .await,
                Err(AccessError::Forbidden)
            ),
            "{role:?}"
        );
    }
    // The system manager's by-source view is theirs alone.
    assert!(
        w.services
            .source_demographics(&actor(Role::SystemManager, "X"), id)
            .await
            .is_ok()
    );
    assert!(matches!(
        w.services
            .source_demographics(&actor(Role::Gp, "X"), id)
            .await,
        Err(AccessError::Forbidden)
    ));
}

#[tokio::test]
async fn the_summary_shows_each_field_with_its_source_partner_alerts_in_the_banner_and_freshness() {
    let w = World::new().await;
    let n = nhs(9);
    let id = w.person(COUNCIL, "C9", &n, "Councilname", "DT1 1AA").await;
    w.clock.advance(chrono::Duration::minutes(10));
    w.person(GP, "G9", &n, "Gpname", "BH1 1AA").await;
    let feed = World::feed(ACUTE);
    let alert = |cat, sev, to| {
        AlertDetails::new(cat, "text", sev, day(2026, 1, 1), day(2026, 1, 1), to).unwrap()
    };
    let source = SourceId::parse(ACUTE).unwrap();
    let identity = PersonIdentity::new(Some(n.clone()), None).unwrap();
    w.services
        .ingest_alert(
            &feed,
            &source,
            &identity,
            "A1",
            alert(AlertCategory::Safeguarding, Severity::High, None),
            w.clock.now(),
        )
        .await
        .unwrap();
    w.services
        .ingest_alert(
            &feed,
            &source,
            &identity,
            "A2",
            alert(AlertCategory::Allergy, Severity::High, None),
            w.clock.now(),
        )
        .await
        .unwrap();
    w.services
        .ingest_alert(
            &feed,
            &source,
            &identity,
            "A3",
            alert(AlertCategory::Allergy, Severity::Low, Some(day(2026, 2, 1))),
            w.clock.now(),
        )
        .await
        .unwrap();
    w.services
        .ingest_alert(
            &World::feed(GP),
            &SourceId::parse(GP).unwrap(),
            &identity,
            "G1",
            alert(AlertCategory::Medication, Severity::High, None),
            w.clock.now(),
        )
        .await
        .unwrap();

    w.clock.advance(chrono::Duration::hours(3));
    let summary = w
        .services
        .person_summary(&actor(Role::Clinician, "RDZ"), id)
        .await
        .unwrap();
    let name = summary.demographics.name.as_ref().unwrap();
    assert_eq!(name.value.family(), "Gpname", "GP outranks the council");
    assert_eq!(name.source.as_str(), GP);
    let banner: Vec<_> = summary
        .banner
        .as_ref()
        .unwrap()
        .iter()
        .map(|a| a.source_ref().to_owned())
        .collect();
    assert_eq!(
        banner,
        vec!["A2", "A1"],
        "partner alerts only, active only, allergy first"
    );
    let fresh: Vec<_> = summary
        .freshness
        .iter()
        .map(|f| (f.source.as_str().to_owned(), f.stale))
        .collect();
    // Acute and GP are realtime (1 h) and quiet for 3 h: stale. The council expects nightly.
    assert!(fresh.contains(&(ACUTE.to_owned(), true)));
    assert!(fresh.contains(&(COUNCIL.to_owned(), false)));
    assert_eq!(summary.freshness.len(), 3);
}

#[tokio::test]
async fn a_failed_audit_write_means_no_data() {
    struct BrokenAudit;
    #[async_trait::async_trait]
    impl care_application::AuditLog for BrokenAudit {
        async fn append(
            &self,
            _: Vec<AuditEvent>,
        ) -> Result<Vec<care_access_audit::ChainedEvent>, care_application::AuditError> {
            Err(care_application::AuditError::Unexpected(anyhow::anyhow!(
                "disk full"
            )))
        }
        async fn head(&self) -> Result<care_access_audit::ChainHead, care_application::AuditError> {
            Ok(care_access_audit::ChainHead::EMPTY)
        }
        async fn read(
            &self,
            _: u64,
            _: usize,
        ) -> Result<Vec<care_access_audit::ChainedEvent>, care_application::AuditError> {
            Ok(vec![])
        }
        async fn for_person(
            &self,
            _: PersonId,
            _: Timestamp,
            _: Timestamp,
        ) -> Result<Vec<AuditEvent>, care_application::AuditError> {
            Ok(vec![])
        }
    }
    let w = World::new().await;
    let id = w.person(ACUTE, "H10", &nhs(10), "Solid", "BH1 1AA").await;
    let mut ports = w.services.ports().clone();
    ports.audit = Arc::new(BrokenAudit);
    let broken = Services::new(ports);
    let gp = actor(Role::Gp, "M81");
    assert!(matches!(
        broken.person_summary(&gp, id).await,
        Err(AccessError::Unexpected(_))
    ));
    assert!(matches!(
        broken.search_people(&gp, &by_name("sol"), false).await,
        Err(AccessError::Unexpected(_))
    ));
    assert!(matches!(
        broken.list_referrals(&gp, id).await,
        Err(AccessError::Unexpected(_))
    ));
}

fn referral(status: ReferralStatus) -> ReferralDetails {
    let closed = status.is_closed().then(|| day(2026, 6, 1));
    ReferralDetails::new(
        day(2026, 5, 1),
        "Children's MASH",
        ReferralSource::Police,
        status,
        closed,
        Some(InvolvementLevel::ChildProtectionPlan),
    )
    .unwrap()
}

#[tokio::test]
async fn feeds_are_idempotent_and_an_older_update_never_overwrites_a_newer_one() {
    let w = World::new().await;
    let n = nhs(11);
    let council = SourceId::parse(COUNCIL).unwrap();
    let feed = World::feed(COUNCIL);
    let identity = World::identity(COUNCIL, "C11", Some(&n));
    let t1 = at(2026, 6, 1);
    let t2 = at(2026, 6, 2);
    // Arrives newest first.
    let newest = w
        .services
        .ingest_referral(
            &feed,
            &council,
            &identity,
            "R1",
            referral(ReferralStatus::ClosedTransferred),
            t2,
        )
        .await
        .unwrap();
    assert_eq!(newest, UpdateOutcome::Applied);
    assert_eq!(
        w.services
            .ingest_referral(
                &feed,
                &council,
                &identity,
                "R1",
                referral(ReferralStatus::Accepted),
                t1
            )
            .await
            .unwrap(),
        UpdateOutcome::Stale
    );
    assert_eq!(
        w.services
            .ingest_referral(
                &feed,
                &council,
                &identity,
                "R1",
                referral(ReferralStatus::ClosedTransferred),
                t2
            )
            .await
            .unwrap(),
        UpdateOutcome::Unchanged
    );
    // A newer message that reopens a closed referral is refused with a readable reason.
    let err = w
        .services
        .ingest_referral(
            &feed,
            &council,
            &identity,
            "R1",
            referral(ReferralStatus::AwaitingDecision),
            at(2026, 6, 3),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, IngestError::Conflict(m) if m.contains("closed_transferred")),
        "{err}"
    );

    let person = w
        .services
        .ports()
        .people
        .find_by_identifier(&care_person::Identifier::Nhs(n.clone()))
        .await
        .unwrap()
        .unwrap()
        .id();
    let list = w
        .services
        .list_referrals(&actor(Role::SocialWorker, "DC"), person)
        .await
        .unwrap();
    assert_eq!(list.referrals.len(), 1);
    assert_eq!(
        list.referrals[0].details().status(),
        ReferralStatus::ClosedTransferred
    );

    // Demographics: the same message twice is unchanged the second time.
    let d = demographics("Twice", "BH1 1AA");
    let again = |t| {
        w.services.ingest_demographics(
            &feed,
            &council,
            &identity,
            t,
            d.clone(),
            DeathStatement::NotStated,
        )
    };
    assert_eq!(again(t1).await.unwrap(), UpdateOutcome::Applied);
    assert_eq!(again(t1).await.unwrap(), UpdateOutcome::Unchanged);
    let sources = w
        .services
        .ports()
        .sources
        .get(&council)
        .await
        .unwrap()
        .unwrap();
    assert!(sources.last_message_at.is_some());
    assert!(sources.applied >= 2 && sources.unchanged >= 2);
}

#[tokio::test]
async fn a_death_is_kept_when_an_older_message_without_one_arrives() {
    let w = World::new().await;
    let n = nhs(12);
    let acute = SourceId::parse(ACUTE).unwrap();
    let feed = World::feed(ACUTE);
    let identity = World::identity(ACUTE, "H12", Some(&n));
    w.services
        .ingest_demographics(
            &feed,
            &acute,
            &identity,
            at(2026, 10, 2),
            demographics("Gone", "BH1 1AA"),
            DeathStatement::Deceased(day(2026, 10, 1)),
        )
        .await
        .unwrap();
    let older = w
        .services
        .ingest_demographics(
            &feed,
            &acute,
            &identity,
            at(2026, 9, 1),
            demographics("Gone", "BH1 1AA"),
            DeathStatement::NotStated,
        )
        .await
        .unwrap();
    assert_eq!(older, UpdateOutcome::Stale);
    let stored = w
        .services
        .ports()
        .people
        .find_by_identifier(&care_person::Identifier::Nhs(n))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.death().map(|d| d.date), Some(day(2026, 10, 1)));
}

#[tokio::test]
async fn after_a_merge_updates_to_the_retired_identifier_reach_the_survivor_with_nothing_lost() {
    let w = World::new().await;
    let n = nhs(13);
    let acute = SourceId::parse(ACUTE).unwrap();
    let feed = World::feed(ACUTE);
    let survivor = World::identity(ACUTE, "H-KEEP", Some(&n));
    let retired = World::identity(ACUTE, "H-OLD", None);
    w.services
        .ingest_demographics(
            &feed,
            &acute,
            &survivor,
            at(2026, 1, 1),
            demographics("Keep", "BH1 1AA"),
            DeathStatement::NotStated,
        )
        .await
        .unwrap();
    w.services
        .ingest_demographics(
            &feed,
            &acute,
            &retired,
            at(2026, 1, 2),
            demographics("Old", "BH2 2BB"),
            DeathStatement::NotStated,
        )
        .await
        .unwrap();
    let allergy = AlertDetails::new(
        AlertCategory::Allergy,
        "Penicillin",
        Severity::High,
        day(2026, 1, 1),
        day(2026, 1, 1),
        None,
    )
    .unwrap();
    w.services
        .ingest_alert(&feed, &acute, &retired, "AL-OLD", allergy, at(2026, 1, 2))
        .await
        .unwrap();
    let old_id = w
        .services
        .ports()
        .people
        .find_by_identifier(&care_person::Identifier::Local(
            LocalId::new(acute.clone(), "H-OLD").unwrap(),
        ))
        .await
        .unwrap()
        .unwrap()
        .id();

    assert_eq!(
        w.services
            .ingest_merge(&feed, &acute, &survivor, &retired, at(2026, 2, 1))
            .await
            .unwrap(),
        UpdateOutcome::Applied
    );
    assert_eq!(
        w.services
            .ingest_merge(&feed, &acute, &survivor, &retired, at(2026, 2, 1))
            .await
            .unwrap(),
        UpdateOutcome::Unchanged,
        "the same merge again"
    );
    w.services
        .ingest_demographics(
            &feed,
            &acute,
            &retired,
            at(2026, 3, 1),
            demographics("Newest", "BH3 3CC"),
            DeathStatement::NotStated,
        )
        .await
        .unwrap();

    let gp = actor(Role::Gp, "M81");
    // Reading the retired id follows the merge to the survivor.
    let summary = w.services.person_summary(&gp, old_id).await.unwrap();
    assert_ne!(summary.person, old_id);
    assert_eq!(summary.nhs_number.as_ref(), Some(&n));
    assert_eq!(summary.demographics.name.unwrap().value.family(), "Newest");
    assert_eq!(
        summary.banner.unwrap().len(),
        1,
        "the retired record's alert followed"
    );
    let found = w
        .services
        .search_people(&gp, &SearchCriteria::NhsNumber(n.clone()), false)
        .await
        .unwrap();
    assert_eq!(found.hits.len(), 1);
}

#[tokio::test]
async fn a_feed_account_submits_only_for_its_own_source_and_refusals_are_audited() {
    let w = World::new().await;
    let wrong = w
        .services
        .ingest_demographics(
            &World::feed(ACUTE),
            &SourceId::parse(COUNCIL).unwrap(),
            &World::identity(COUNCIL, "C1", None),
            at(2026, 1, 1),
            demographics("X", "BH1 1AA"),
            DeathStatement::NotStated,
        )
        .await;
    assert!(matches!(wrong, Err(IngestError::Forbidden(_))));
    assert_eq!(
        w.last_event().outcome,
        Outcome::Denied(DenyReason::WrongSource)
    );
    let clinician = w
        .services
        .ingest_demographics(
            &actor(Role::Clinician, "RDZ"),
            &SourceId::parse(ACUTE).unwrap(),
            &World::identity(ACUTE, "H1", None),
            at(2026, 1, 1),
            demographics("X", "BH1 1AA"),
            DeathStatement::NotStated,
        )
        .await;
    assert!(matches!(clinician, Err(IngestError::Forbidden(_))));
    assert_eq!(
        w.last_event().outcome,
        Outcome::Denied(DenyReason::RoleNotPermitted)
    );
    let unknown = w
        .services
        .ingest_demographics(
            &World::feed("lab-x"),
            &SourceId::parse("lab-x").unwrap(),
            &World::identity("lab-x", "L1", None),
            at(2026, 1, 1),
            demographics("X", "BH1 1AA"),
            DeathStatement::NotStated,
        )
        .await;
    assert!(matches!(unknown, Err(IngestError::UnknownSource(_))));
    let foreign_id = w
        .services
        .ingest_demographics(
            &World::feed(ACUTE),
            &SourceId::parse(ACUTE).unwrap(),
            &World::identity(COUNCIL, "C1", None),
            at(2026, 1, 1),
            demographics("X", "BH1 1AA"),
            DeathStatement::NotStated,
        )
        .await;
    assert!(matches!(foreign_id, Err(IngestError::Invalid(e)) if e.field == "local_id"));
}

#[tokio::test]
async fn the_dpo_records_a_representative_opt_out_with_evidence_and_only_the_dpo_changes_consent() {
    let w = World::new().await;
    let n = nhs(14);
    w.person(ACUTE, "H14", &n, "Rep", "BH1 1AA").await;
    let dpo = actor(Role::Dpo, "DPO");
    let rep = Representative::new("Jo Bloggs", "daughter", true, true, "LPA-77").unwrap();
    w.services
        .change_consent(
            &dpo,
            &n,
            ConsentCommand::OptOut {
                representative: Some(rep),
            },
            "form received",
        )
        .await
        .unwrap();
    let view = w
        .services
        .change_consent(
            &dpo,
            &n,
            ConsentCommand::SetEvidenceStatus(EvidenceStatus::Verified),
            "LPA seen",
        )
        .await
        .unwrap();
    assert_eq!(view.level, ConsentLevel::OptedOut);
    assert_eq!(
        view.representative.unwrap().evidence_status(),
        EvidenceStatus::Verified
    );
    assert_eq!(view.history.len(), 2);
    assert_eq!(
        w.last_event().resource.as_deref(),
        Some("consent:evidence_status")
    );

    for role in Role::ALL.into_iter().filter(|r| *r != Role::Dpo) {
        let r = w
            .services
            .change_consent(&actor(role, "X"), &n, ConsentCommand::OptIn, "let me in")
            .await;
        assert!(matches!(r, Err(AccessError::Forbidden)), "{role:?}");
    }
    // The DPO finds an opted-out person's identity; clinicians cannot.
    assert!(w.services.find_identity(&dpo, &n).await.is_ok());
    assert!(matches!(
        w.services.find_identity(&actor(Role::Gp, "M81"), &n).await,
        Err(AccessError::Forbidden)
    ));
    let again = w
        .services
        .change_consent(
            &dpo,
            &n,
            ConsentCommand::OptOut {
                representative: None,
            },
            "again",
        )
        .await;
    assert!(matches!(again, Err(AccessError::Rejected(_))));
}

#[tokio::test]
async fn the_access_report_lists_organisations_roles_and_counts_over_the_period() {
    let w = World::new().await;
    let n = nhs(15);
    let id = w.person(ACUTE, "H15", &n, "Watched", "BH1 1AA").await;
    for (role, org) in [
        (Role::Gp, "M81001"),
        (Role::Gp, "M81001"),
        (Role::Clinician, "RDZ"),
    ] {
        w.clock.advance(chrono::Duration::minutes(5));
        w.services
            .person_summary(&actor(role, org), id)
            .await
            .unwrap();
    }
    let report = w
        .services
        .access_report(
            &actor(Role::Dpo, "DPO"),
            &n,
            at(2026, 11, 1),
            at(2026, 12, 1),
        )
        .await
        .unwrap();
    let rows: Vec<_> = report
        .rows
        .iter()
        .map(|r| (r.organisation.as_str().to_owned(), r.role, r.accesses))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("M81001".to_owned(), Role::Gp, 2),
            ("RDZ".to_owned(), Role::Clinician, 1)
        ]
    );
    assert_eq!(
        w.last_event().action,
        Action::RunAccessReport,
        "the report run is audited"
    );
    let empty = w
        .services
        .access_report(&actor(Role::Dpo, "DPO"), &n, at(2025, 1, 1), at(2025, 2, 1))
        .await
        .unwrap();
    assert!(empty.rows.is_empty());
    assert!(
        matches!(w.services.access_report(&actor(Role::Dpo, "DPO"), &n, at(2026, 2, 1), at(2026, 1, 1)).await, Err(AccessError::Invalid(e)) if e.field == "to")
    );
    assert!(matches!(
        w.services
            .access_report(&actor(Role::Gp, "M81"), &n, at(2026, 1, 1), at(2026, 2, 1))
            .await,
        Err(AccessError::Forbidden)
    ));
}

#[tokio::test]
async fn the_auditor_verifies_the_chain_and_tampering_is_found_at_its_position() {
    let w = World::new().await;
    let id = w.person(ACUTE, "H16", &nhs(16), "Chain", "BH1 1AA").await;
    for _ in 0..5 {
        w.services
            .person_summary(&actor(Role::Gp, "M81"), id)
            .await
            .unwrap();
    }
    let auditor = actor(Role::Auditor, "AUD");
    let ok = w.services.verify_audit(&auditor).await.unwrap();
    assert_eq!(ok.result.unwrap().len, ok.head.len);
    assert!(matches!(
        w.services.verify_audit(&actor(Role::Gp, "M81")).await,
        Err(AccessError::Forbidden)
    ));

    // Someone edits event 2 in the store: verification names position 2.
    let (mut events, head) = w.audit.snapshot();
    events[2].event.organisation = OrganisationId::parse("ELSEWHERE").unwrap();
    let mut ports = w.services.ports().clone();
    ports.audit = Arc::new(InMemoryAuditLog::from_parts(events.clone(), head));
    let tampered = Services::new(ports.clone())
        .verify_audit(&auditor)
        .await
        .unwrap();
    assert_eq!(tampered.result, Err(ChainBreak::Altered { position: 2 }));

    // Or deletes the newest events: the head kept apart says so.
    // (The verification appends its own event first, after the recorded head, so the
    // gap shows as a missing position; either way the break is where the cut was.)
    let (mut events, head) = w.audit.snapshot();
    let cut_at = events.len() as u64 - 2;
    events.truncate(events.len() - 2);
    ports.audit = Arc::new(InMemoryAuditLog::from_parts(events, head));
    let cut = Services::new(ports).verify_audit(&auditor).await.unwrap();
    assert_eq!(cut.result.unwrap_err().position(), cut_at);
}

#[tokio::test]
async fn an_older_message_never_moves_an_alert_to_another_person() {
    let w = World::new().await;
    let acute = SourceId::parse(ACUTE).unwrap();
    let feed = World::feed(ACUTE);
    let x = w.person(ACUTE, "HX", &nhs(20), "Ex", "BH1 1AA").await;
    let y = w.person(ACUTE, "HY", &nhs(21), "Why", "BH1 1AA").await;
    let allergy = AlertDetails::new(
        AlertCategory::Allergy,
        "Latex",
        Severity::High,
        day(2026, 1, 1),
        day(2026, 1, 1),
        None,
    )
    .unwrap();
    w.services
        .ingest_alert(
            &feed,
            &acute,
            &World::identity(ACUTE, "HX", None),
            "AL-9",
            allergy.clone(),
            at(2026, 1, 20),
        )
        .await
        .unwrap();
    let late = w
        .services
        .ingest_alert(
            &feed,
            &acute,
            &World::identity(ACUTE, "HY", None),
            "AL-9",
            allergy.clone(),
            at(2026, 1, 10),
        )
        .await
        .unwrap();
    assert_eq!(late, UpdateOutcome::Stale);
    let gp = actor(Role::Gp, "M81");
    assert_eq!(
        w.services
            .person_summary(&gp, x)
            .await
            .unwrap()
            .banner
            .unwrap()
            .len(),
        1
    );
    assert!(
        w.services
            .person_summary(&gp, y)
            .await
            .unwrap()
            .banner
            .unwrap()
            .is_empty()
    );
    // A newer message re-filing it under the other person moves it.
    w.services
        .ingest_alert(
            &feed,
            &acute,
            &World::identity(ACUTE, "HY", None),
            "AL-9",
            allergy,
            at(2026, 1, 30),
        )
        .await
        .unwrap();
    assert!(
        w.services
            .person_summary(&gp, x)
            .await
            .unwrap()
            .banner
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        w.services
            .person_summary(&gp, y)
            .await
            .unwrap()
            .banner
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_source_merges_only_its_own_records() {
    let w = World::new().await;
    let n = nhs(22);
    w.person(GP, "G22", &n, "Theirs", "BH1 1AA").await;
    let acute = SourceId::parse(ACUTE).unwrap();
    let by_nhs_only = PersonIdentity::new(Some(n.clone()), None).unwrap();
    let r = w
        .services
        .ingest_merge(
            &World::feed(ACUTE),
            &acute,
            &World::identity(ACUTE, "H22", None),
            &by_nhs_only,
            at(2026, 1, 1),
        )
        .await;
    assert!(matches!(r, Err(IngestError::Invalid(e)) if e.field == "retired_identifier"));
    let gp_record = w
        .services
        .ports()
        .people
        .find_by_identifier(&care_person::Identifier::Nhs(n))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gp_record.merged_into(), None);
}

#[tokio::test]
async fn consent_changes_the_rules_refuse_are_audited_as_refused_and_unknown_numbers_as_not_found()
{
    let w = World::new().await;
    let n = nhs(23);
    w.person(ACUTE, "H23", &n, "Same", "BH1 1AA").await;
    let dpo = actor(Role::Dpo, "DPO");
    let r = w
        .services
        .change_consent(&dpo, &n, ConsentCommand::OptIn, "already in")
        .await;
    assert!(matches!(r, Err(AccessError::Rejected(_))));
    let e = w.last_event();
    assert_eq!(e.outcome, Outcome::Denied(DenyReason::InvalidChange));
    assert_eq!(e.resource.as_deref(), Some("consent:opt_in"));
    assert!(
        w.services
            .consent(&dpo, &n)
            .await
            .unwrap()
            .history
            .is_empty()
    );

    let unknown = nhs(900);
    assert!(is_not_found(w.services.find_identity(&dpo, &unknown).await));
    assert_eq!(
        w.last_event().outcome,
        Outcome::Denied(DenyReason::NotFound)
    );
    assert!(is_not_found(
        w.services
            .access_report(&dpo, &unknown, at(2026, 1, 1), at(2026, 2, 1))
            .await
    ));
    // Consent can be recorded before any source sends the person.
    let view = w
        .services
        .change_consent(
            &dpo,
            &unknown,
            ConsentCommand::OptOut {
                representative: None,
            },
            "form",
        )
        .await
        .unwrap();
    assert_eq!((view.person, view.level), (None, ConsentLevel::OptedOut));
}

#[tokio::test]
async fn a_search_whose_matches_exceed_what_was_looked_at_says_it_was_cut_short() {
    let w = World::new().await;
    let feed = World::feed(ACUTE);
    let acute = SourceId::parse(ACUTE).unwrap();
    // Many recently deceased people at one postcode, then one living person.
    for k in 0..(care_application::SEARCH_LIMIT as u32 * 2 + 1) {
        w.services
            .ingest_demographics(
                &feed,
                &acute,
                &World::identity(ACUTE, &format!("D{k}"), None),
                at(2026, 1, 1),
                demographics("Many", "DT9 9ZZ"),
                DeathStatement::Deceased(day(2025, 1, 1)),
            )
            .await
            .unwrap();
    }
    w.person(ACUTE, "ALIVE", &nhs(24), "Many", "DT9 9ZZ").await;
    let found = w
        .services
        .search_people(
            &actor(Role::Gp, "M81"),
            &SearchCriteria::Postcode(Postcode::parse("DT9 9ZZ").unwrap()),
            false,
        )
        .await
        .unwrap();
    assert!(
        found.hits.len() == 1 || found.truncated,
        "the living person is shown, or the list says it is incomplete"
    );
}

/// The alert and referral stores of a world, counting the reads of a person's items.
struct CountedItemReads {
    alerts: Arc<dyn AlertRepository>,
    referrals: Arc<dyn ReferralRepository>,
    alert_reads: std::sync::atomic::AtomicUsize,
    referral_reads: std::sync::atomic::AtomicUsize,
}

impl CountedItemReads {
    fn reads(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::SeqCst;
        (
            self.alert_reads.load(SeqCst),
            self.referral_reads.load(SeqCst),
        )
    }
}

#[async_trait::async_trait]
impl AlertRepository for CountedItemReads {
    async fn find_by_source_ref(
        &self,
        source: &SourceId,
        source_ref: &str,
    ) -> Result<Option<care_alert::Alert>, RepoError> {
        self.alerts.find_by_source_ref(source, source_ref).await
    }
    async fn save(&self, alert: &care_alert::Alert) -> Result<u64, RepoError> {
        self.alerts.save(alert).await
    }
    async fn list_for_person(&self, person: PersonId) -> Result<Vec<care_alert::Alert>, RepoError> {
        self.alert_reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.alerts.list_for_person(person).await
    }
    async fn reassign_person(&self, from: PersonId, to: PersonId) -> Result<u64, RepoError> {
        self.alerts.reassign_person(from, to).await
    }
}

#[async_trait::async_trait]
impl ReferralRepository for CountedItemReads {
    async fn find_by_source_ref(
        &self,
        source: &SourceId,
        source_ref: &str,
    ) -> Result<Option<care_referral::Referral>, RepoError> {
        self.referrals.find_by_source_ref(source, source_ref).await
    }
    async fn save(&self, referral: &care_referral::Referral) -> Result<u64, RepoError> {
        self.referrals.save(referral).await
    }
    async fn list_for_person(
        &self,
        person: PersonId,
    ) -> Result<Vec<care_referral::Referral>, RepoError> {
        self.referral_reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.referrals.list_for_person(person).await
    }
    async fn reassign_person(&self, from: PersonId, to: PersonId) -> Result<u64, RepoError> {
        self.referrals.reassign_person(from, to).await
    }
}

#[tokio::test]
async fn a_summary_reads_no_item_of_a_refused_person_nor_any_the_role_may_not_see() {
    let w = World::new().await;
    let (seen, hidden, asked, returned) = (nhs(21), nhs(22), nhs(23), nhs(24));
    let council = SourceId::parse(COUNCIL).unwrap();
    let mut ids = Vec::new();
    for (n, local) in [
        (&seen, "H21"),
        (&hidden, "H22"),
        (&asked, "H23"),
        (&returned, "H24"),
    ] {
        ids.push(w.person(ACUTE, local, n, "Itemised", "BH1 1AA").await);
        w.services
            .ingest_alert(
                &World::feed(ACUTE),
                &SourceId::parse(ACUTE).unwrap(),
                &World::identity(ACUTE, local, None),
                &format!("A-{local}"),
                AlertDetails::new(
                    AlertCategory::Safeguarding,
                    "text",
                    Severity::High,
                    day(2026, 1, 1),
                    day(2026, 1, 1),
                    None,
                )
                .unwrap(),
                w.clock.now(),
            )
            .await
            .unwrap();
        w.services
            .ingest_referral(
                &World::feed(COUNCIL),
                &council,
                &PersonIdentity::new(Some(n.clone()), None).unwrap(),
                &format!("R-{local}"),
                referral(ReferralStatus::Accepted),
                w.clock.now(),
            )
            .await
            .unwrap();
    }
    for n in [&hidden, &returned] {
        w.set_consent(
            n,
            ConsentCommand::OptOut {
                representative: None,
            },
        )
        .await;
    }
    w.set_consent(&asked, ConsentCommand::AskFirst).await;
    w.set_consent(&returned, ConsentCommand::OptIn).await;
    let summaries = |ports: &Ports| {
        let counted = Arc::new(CountedItemReads {
            alerts: ports.alerts.clone(),
            referrals: ports.referrals.clone(),
            alert_reads: 0.into(),
            referral_reads: 0.into(),
        });
        let mut ports = ports.clone();
        ports.alerts = counted.clone();
        ports.referrals = counted.clone();
        (Services::new(ports), counted)
    };

    // A GP sees both: the counts move (so a read would show below).
    let (services, counted) = summaries(w.services.ports());
    let view = services
        .person_summary(&actor(Role::Gp, "M81"), ids[0])
        .await
        .unwrap();
    assert_eq!(view.banner.map(|b| b.len()), Some(1));
    assert!(view.freshness.iter().any(|f| f.source == council));
    assert_eq!(counted.reads(), (1, 1), "the GP's summary reads both");

    // A pharmacist's summary reads no referral at all.
    let (services, counted) = summaries(w.services.ports());
    let view = services
        .person_summary(&actor(Role::Pharmacist, "FA1"), ids[0])
        .await
        .unwrap();
    assert!(view.freshness.iter().all(|f| f.source != council));
    assert_eq!(counted.reads(), (1, 0), "alerts only for a pharmacist");

    // An opted-out person is refused before any item of theirs is read.
    for role in CLINICAL {
        let (services, counted) = summaries(w.services.ports());
        assert!(is_not_found(
            services.person_summary(&actor(role, "RDZ"), ids[1]).await
        ));
        assert_eq!(
            counted.reads(),
            (0, 0),
            "{role:?} read a hidden person's items"
        );
    }

    // A person with a consent who may be seen (ask first, with a basis; opted back in)
    // has their items read after the gate, and shown whole.
    let basis = AccessBasis::new(BasisKind::PermissionGiven, "asked in clinic").unwrap();
    for (gp, id) in [
        (actor(Role::Gp, "M81").with_basis(basis), ids[2]),
        (actor(Role::Gp, "M81"), ids[3]),
    ] {
        let (services, counted) = summaries(w.services.ports());
        let view = services.person_summary(&gp, id).await.unwrap();
        assert_eq!(
            view.banner.map(|b| b.len()),
            Some(1),
            "the alert, in the banner"
        );
        assert!(view.freshness.iter().any(|f| f.source == council));
        assert_eq!(counted.reads(), (1, 1), "read once, after the gate");
    }
}
