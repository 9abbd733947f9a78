//! The casbin policy against SPEC §2 and §3: every request compared with the reference
//! `SpecPolicy`, a hand-written copy of the SPEC §2 table, the consent and purpose rules
//! by name, and what happens when an operator edits the files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use care_application::access::{all_requests, subject_states};
use care_application::{AccessPolicy, AccessRequest, Decision, SubjectState};
use care_consent::ConsentLevel;
use care_in_memory::SpecPolicy;
use care_kernel::{Action, BasisKind, DenyReason, Role};
use care_person::VitalStatus;
use care_policy::{CasbinPolicy, DEFAULT_MODEL, DEFAULT_POLICY, PolicyError};

const CLINICAL: [Role; 4] = [
    Role::Gp,
    Role::Clinician,
    Role::SocialWorker,
    Role::Pharmacist,
];
const RECORD_ACTIONS: [Action; 5] = [
    Action::SearchPeople,
    Action::ReadDemographics,
    Action::ReadBannerAlerts,
    Action::ReadGpSummary,
    Action::ReadReferrals,
];
const BASES: [Option<BasisKind>; 3] = [
    None,
    Some(BasisKind::PermissionGiven),
    Some(BasisKind::Emergency),
];

/// The shipped policy, loaded once for the whole binary (a load asks casbin about every
/// request there is).
fn shipped() -> &'static CasbinPolicy {
    static POLICY: OnceLock<CasbinPolicy> = OnceLock::new();
    POLICY.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(CasbinPolicy::load_default())
            .unwrap()
    })
}

fn spec() -> &'static SpecPolicy {
    static SPEC: OnceLock<SpecPolicy> = OnceLock::new();
    SPEC.get_or_init(SpecPolicy::default)
}

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

fn person(consent: ConsentLevel, vital: VitalStatus, basis: Option<BasisKind>) -> SubjectState {
    SubjectState {
        consent,
        vital,
        basis,
    }
}

fn request(
    role: Role,
    action: Action,
    direct_care: bool,
    subject: Option<SubjectState>,
) -> AccessRequest {
    AccessRequest {
        role,
        action,
        direct_care,
        subject,
    }
}

fn decide(
    role: Role,
    action: Action,
    direct_care: bool,
    subject: Option<SubjectState>,
) -> Decision {
    shipped().decide(&request(role, action, direct_care, subject))
}

const LIVING_PARTICIPANT: SubjectState = SubjectState {
    consent: ConsentLevel::Participating,
    vital: VitalStatus::Alive,
    basis: None,
};

// ---------------------------------------------------------------------------------------
// (a) Every request: casbin (raw and compiled) against the reference.

#[test]
fn every_request_is_decided_as_the_spec_policy_decides_it() {
    let policy = shipped();
    let mut count = 0;
    let mut mismatches = Vec::new();
    for r in all_requests() {
        count += 1;
        let raw = policy.enforce_raw(&r).unwrap();
        if raw != SpecPolicy::permits(&r) {
            mismatches.push(format!("raw enforce {raw} for {r:?}"));
        }
        let compiled = policy.decide(&r);
        let expected = spec().decide(&r);
        if compiled != expected {
            mismatches.push(format!("{compiled:?} instead of {expected:?} for {r:?}"));
        }
    }
    assert_eq!(
        count,
        Role::ALL.len() * Action::ALL.len() * 2 * (1 + 3 * 3 * 3)
    );
    assert!(
        mismatches.is_empty(),
        "{} of {count} requests differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert_eq!(
        policy.permitted_count(),
        all_requests().filter(SpecPolicy::permits).count()
    );
}

#[test]
fn the_built_in_policy_is_the_shipped_files() {
    assert_eq!(
        std::fs::read_to_string(config_dir().join("model.conf")).unwrap(),
        DEFAULT_MODEL
    );
    assert_eq!(
        std::fs::read_to_string(config_dir().join("policy.csv")).unwrap(),
        DEFAULT_POLICY
    );
}

// ---------------------------------------------------------------------------------------
// (b) SPEC §2, copied by hand: a participating, living person, direct care. Actions
// about no person (verify the audit, manage users, feeds) are asked with no person.

const SPEC_2: &str = "
                search_people read_demographics read_banner_alerts read_gp_summary read_referrals read_source_demographics find_identity administer_consent run_access_report verify_audit manage_users view_feed_status submit_feed resubmit_quarantine
gp              yes           yes               yes                yes             yes            -                        -             -                  -                 -            -            -                -               -
clinician       yes           yes               yes                yes             yes            -                        -             -                  -                 -            -            -                -               -
social_worker   yes           yes               yes                yes             yes            -                        -             -                  -                 -            -            -                -               -
pharmacist      yes           yes               yes                yes             -              -                        -             -                  -                 -            -            -                -               -
system_manager  -             -                 -                  -               -              yes                      -             -                  -                 -            yes          yes              -               yes
dpo             -             -                 -                  -               -              -                        yes           yes                yes               -            -            -                -               -
auditor         -             -                 -                  -               -              -                        -             -                  -                 yes          -            -                -               -
feed            -             -                 -                  -               -              -                        -             -                  -                 -            -            -                yes             -
";

const ABOUT_NO_PERSON: [&str; 5] = [
    "verify_audit",
    "manage_users",
    "view_feed_status",
    "submit_feed",
    "resubmit_quarantine",
];

#[test]
fn the_role_table_is_spec_section_2() {
    let mut lines = SPEC_2.lines().filter(|l| !l.trim().is_empty());
    let actions: Vec<Action> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(|a| Action::parse(a).unwrap())
        .collect();
    assert_eq!(
        actions.len(),
        Action::ALL.len(),
        "every action has a column"
    );
    let mut roles = Vec::new();
    for line in lines {
        let mut cells = line.split_whitespace();
        let role = Role::parse(cells.next().unwrap()).unwrap();
        roles.push(role);
        let cells: Vec<&str> = cells.collect();
        assert_eq!(cells.len(), actions.len(), "{role} row");
        for (&action, &cell) in actions.iter().zip(&cells) {
            let subject =
                (!ABOUT_NO_PERSON.contains(&action.as_str())).then_some(LIVING_PARTICIPANT);
            let r = request(role, action, true, subject);
            let expected = match cell {
                "yes" => Decision::Permit,
                "-" => Decision::Deny(DenyReason::RoleNotPermitted),
                other => panic!("cell {other:?}"),
            };
            assert_eq!(shipped().decide(&r), expected, "{role} {action:?}");
            assert_eq!(
                shipped().enforce_raw(&r).unwrap(),
                cell == "yes",
                "raw {role} {action:?}"
            );
        }
    }
    assert_eq!(roles.len(), Role::ALL.len(), "every role has a row");
}

// ---------------------------------------------------------------------------------------
// (c) The rules, by name.

#[test]
fn opted_out_person_is_invisible_to_every_clinical_role_even_in_an_emergency() {
    for role in CLINICAL {
        for action in RECORD_ACTIONS {
            let may = !(role == Role::Pharmacist && action == Action::ReadReferrals);
            for vital in VitalStatus::ALL {
                for basis in BASES {
                    let d = decide(
                        role,
                        action,
                        true,
                        Some(person(ConsentLevel::OptedOut, vital, basis)),
                    );
                    let expected = if may {
                        DenyReason::OptedOut
                    } else {
                        DenyReason::RoleNotPermitted
                    };
                    assert_eq!(
                        d,
                        Decision::Deny(expected),
                        "{role} {action:?} {vital:?} {basis:?}"
                    );
                }
            }
        }
    }
    // Opting back in restores the record (feeds kept it up to date).
    assert_eq!(
        decide(
            Role::Gp,
            Action::ReadDemographics,
            true,
            Some(LIVING_PARTICIPANT)
        ),
        Decision::Permit
    );
}

#[test]
fn ask_first_needs_permission_or_emergency_to_open_but_not_to_find() {
    for role in CLINICAL {
        for vital in [VitalStatus::Alive, VitalStatus::Deceased] {
            let ask_first = |basis| Some(person(ConsentLevel::AskFirst, vital, basis));
            for basis in BASES {
                assert_eq!(
                    decide(role, Action::SearchPeople, true, ask_first(basis)),
                    Decision::Permit,
                    "{role} finds an ask_first person ({basis:?})"
                );
            }
            for action in [
                Action::ReadDemographics,
                Action::ReadBannerAlerts,
                Action::ReadGpSummary,
            ] {
                assert_eq!(
                    decide(role, action, true, ask_first(None)),
                    Decision::Deny(DenyReason::PermissionRequired),
                    "{role} {action:?} without a basis"
                );
                for basis in [BasisKind::PermissionGiven, BasisKind::Emergency] {
                    assert_eq!(
                        decide(role, action, true, ask_first(Some(basis))),
                        Decision::Permit,
                        "{role} {action:?} with {basis:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn nobody_but_the_dpo_sees_a_record_eight_years_after_death() {
    for r in all_requests() {
        let Some(subject) = r.subject else { continue };
        if subject.vital != VitalStatus::DeceasedBeyondRetention {
            continue;
        }
        let d = shipped().decide(&r);
        if r.role == Role::Dpo {
            let dpo_action = matches!(
                r.action,
                Action::FindIdentity | Action::AdministerConsent | Action::RunAccessReport
            );
            assert_eq!(d == Decision::Permit, dpo_action, "{r:?}");
        } else {
            assert_ne!(d, Decision::Permit, "{r:?}");
        }
    }
    // And the audit says why, when nothing else stands in the way.
    let long_dead = Some(person(
        ConsentLevel::Participating,
        VitalStatus::DeceasedBeyondRetention,
        None,
    ));
    for role in CLINICAL {
        assert_eq!(
            decide(role, Action::ReadDemographics, true, long_dead),
            Decision::Deny(DenyReason::DeceasedBeyondRetention)
        );
    }
    assert_eq!(
        decide(
            Role::SystemManager,
            Action::ReadSourceDemographics,
            true,
            long_dead
        ),
        Decision::Deny(DenyReason::DeceasedBeyondRetention)
    );
    // Died within 8 years: still shown (the GP record's closing is the application's).
    assert_eq!(
        decide(
            Role::Clinician,
            Action::ReadDemographics,
            true,
            Some(person(
                ConsentLevel::Participating,
                VitalStatus::Deceased,
                None
            ))
        ),
        Decision::Permit
    );
}

#[test]
fn pharmacists_never_see_referrals() {
    for direct_care in [true, false] {
        for subject in std::iter::once(None).chain(subject_states().map(Some)) {
            let r = request(
                Role::Pharmacist,
                Action::ReadReferrals,
                direct_care,
                subject,
            );
            assert_eq!(
                shipped().decide(&r),
                Decision::Deny(DenyReason::RoleNotPermitted),
                "{r:?}"
            );
            assert!(!shipped().enforce_raw(&r).unwrap());
        }
    }
    assert_eq!(
        decide(
            Role::Pharmacist,
            Action::ReadBannerAlerts,
            true,
            Some(LIVING_PARTICIPANT)
        ),
        Decision::Permit
    );
}

#[test]
fn death_review_purpose_is_refused_with_purpose_reason() {
    for role in CLINICAL {
        for action in RECORD_ACTIONS {
            if role == Role::Pharmacist && action == Action::ReadReferrals {
                continue;
            }
            // Whoever the person is, even an unknown or opted-out one: the purpose is
            // refused before the person is looked at.
            for subject in subject_states() {
                assert_eq!(
                    decide(role, action, false, Some(subject)),
                    Decision::Deny(DenyReason::PurposeNotDirectCare),
                    "{role} {action:?} {subject:?}"
                );
            }
            assert_eq!(
                decide(role, action, false, Some(SubjectState::NEUTRAL)),
                Decision::Deny(DenyReason::PurposeNotDirectCare)
            );
        }
    }
}

#[test]
fn denial_reason_for_role_does_not_depend_on_the_person() {
    for role in Role::ALL {
        for &action in Action::ALL {
            for direct_care in [true, false] {
                let decisions: Vec<Decision> = subject_states()
                    .map(|s| decide(role, action, direct_care, Some(s)))
                    .collect();
                for reason in [
                    DenyReason::RoleNotPermitted,
                    DenyReason::PurposeNotDirectCare,
                ] {
                    let refused = Decision::Deny(reason);
                    let some = decisions.contains(&refused);
                    let all = decisions.iter().all(|d| *d == refused);
                    assert_eq!(
                        some, all,
                        "{role} {action:?} direct care {direct_care}: {reason:?}"
                    );
                }
                // An unknown id is asked as the neutral state: it answers as any person
                // would when the role or purpose is what is refused.
                let unknown = decide(role, action, direct_care, Some(SubjectState::NEUTRAL));
                let opted_out = decide(
                    role,
                    action,
                    direct_care,
                    Some(person(ConsentLevel::OptedOut, VitalStatus::Alive, None)),
                );
                if matches!(
                    unknown,
                    Decision::Deny(DenyReason::RoleNotPermitted | DenyReason::PurposeNotDirectCare)
                ) {
                    assert_eq!(unknown, opted_out, "{role} {action:?}");
                }
            }
        }
    }
    assert_eq!(
        decide(
            Role::Auditor,
            Action::ReadDemographics,
            true,
            Some(person(
                ConsentLevel::OptedOut,
                VitalStatus::DeceasedBeyondRetention,
                None
            ))
        ),
        Decision::Deny(DenyReason::RoleNotPermitted)
    );
}

// ---------------------------------------------------------------------------------------
// (d) Files an operator edits.

struct Deployed {
    _dir: tempfile::TempDir,
    model: PathBuf,
    policy: PathBuf,
}

fn deploy(model: &str, policy: &str) -> Deployed {
    let dir = tempfile::tempdir().unwrap();
    let deployed = Deployed {
        model: dir.path().join("model.conf"),
        policy: dir.path().join("policy.csv"),
        _dir: dir,
    };
    std::fs::write(&deployed.model, model).unwrap();
    std::fs::write(&deployed.policy, policy).unwrap();
    deployed
}

async fn load(model: &str, policy: &str) -> Result<CasbinPolicy, PolicyError> {
    let files = deploy(model, policy);
    CasbinPolicy::load(&files.model, &files.policy).await
}

#[tokio::test]
async fn bad_files_are_refused_with_a_clear_error() {
    // A policy line with a column missing.
    let short = DEFAULT_POLICY.replace(
        "p, feed, submit_feed, *, none, none, *",
        "p, feed, submit_feed, *, none, none",
    );
    let err = load(DEFAULT_MODEL, &short).await.unwrap_err();
    assert!(
        matches!(&err, PolicyError::Rule { message, .. } if message.contains("columns")),
        "{err}"
    );
    assert!(err.to_string().contains("policy.csv, line "), "{err}");

    // A misspelt role, action or value.
    for (from, to, word) in [
        (
            "p, pharmacist,     read_gp_summary",
            "p, pharmacsit,     read_gp_summary",
            "pharmacsit",
        ),
        (
            "p, gp,             read_referrals",
            "p, gp,             read_referal",
            "read_referal",
        ),
        (
            "participating|ask_first, alive|deceased, *",
            "participating|askfirst, alive|deceased, *",
            "askfirst",
        ),
    ] {
        assert!(DEFAULT_POLICY.contains(from), "{from}");
        let err = load(DEFAULT_MODEL, &DEFAULT_POLICY.replacen(from, to, 1))
            .await
            .unwrap_err();
        assert!(matches!(err, PolicyError::Rule { .. }), "{err}");
        assert!(err.to_string().contains(word), "{err}");
    }

    // An unknown rule type.
    let err = load(
        DEFAULT_MODEL,
        &format!("{DEFAULT_POLICY}\nq, gp, read_demographics\n"),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("unknown rule type `q`"), "{err}");

    // A model that does not parse, or whose matcher does not compile.
    let err = load("[request_definition]\nr role action\n", DEFAULT_POLICY)
        .await
        .unwrap_err();
    assert!(matches!(err, PolicyError::Model { .. }), "{err}");
    let err = load(
        &DEFAULT_MODEL.replace("&& anyOf(r.vital, p.vital)", "&& anyOf(r.vital, p.vital"),
        DEFAULT_POLICY,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PolicyError::Model { .. }), "{err}");

    // A model that asks for a request the application does not send.
    let err = load(
        &DEFAULT_MODEL.replace(
            "r = role, action, purpose, consent, vital, basis",
            "r = sub, obj, act",
        ),
        DEFAULT_POLICY,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("request definition"), "{err}");

    // A matcher calling a function that does not exist fails when casbin evaluates it.
    let err = load(
        &DEFAULT_MODEL.replace("anyOf(r.vital", "oneOf(r.vital"),
        DEFAULT_POLICY,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PolicyError::Evaluation { .. }), "{err}");

    // casbin's regexMatch panics on an invalid pattern: that is an error, not a crash.
    // (A column the vocabulary check does not know, so the pattern reaches casbin.)
    let regex_model = DEFAULT_MODEL
        .replace(
            "p = role, action, purpose, consent, vital, ask_first_basis",
            "p = role, pattern, purpose, consent, vital, ask_first_basis",
        )
        .replace(
            "anyOf(r.action, p.action)",
            "regexMatch(r.action, p.pattern)",
        );
    let err = load(
        &regex_model,
        &DEFAULT_POLICY.replace("p, auditor, verify_audit,", "p, auditor, (verify_audit,"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, PolicyError::Evaluation { message, .. } if message.contains("panicked")),
        "{err}"
    );

    // A policy that permits nothing (e.g. an emptied file).
    let err = load(DEFAULT_MODEL, "# nothing yet\n").await.unwrap_err();
    assert!(matches!(err, PolicyError::PermitsNothing { .. }), "{err}");
    assert!(err.to_string().contains("permits nothing"), "{err}");

    // A file that is not there.
    let missing = CasbinPolicy::load(
        Path::new("/nonexistent/model.conf"),
        &config_dir().join("policy.csv"),
    )
    .await
    .unwrap_err();
    assert!(matches!(missing, PolicyError::Read { .. }), "{missing}");
}

#[tokio::test]
async fn reload_picks_up_an_edited_policy_and_keeps_the_old_one_when_the_edit_is_refused() {
    let files = deploy(DEFAULT_MODEL, DEFAULT_POLICY);
    let policy = CasbinPolicy::load(&files.model, &files.policy)
        .await
        .unwrap();
    let banner = request(
        Role::Pharmacist,
        Action::ReadBannerAlerts,
        true,
        Some(LIVING_PARTICIPANT),
    );
    assert_eq!(policy.decide(&banner), Decision::Permit);

    // The operator takes banner alerts away from pharmacists.
    let line = "p, pharmacist,     read_banner_alerts, direct_care, participating|ask_first, alive|deceased, permission-given|emergency\n";
    assert!(DEFAULT_POLICY.contains(line));
    std::fs::write(&files.policy, DEFAULT_POLICY.replace(line, "")).unwrap();
    assert_eq!(
        policy.decide(&banner),
        Decision::Permit,
        "not before reload"
    );
    policy.reload().await.unwrap();
    assert_eq!(
        policy.decide(&banner),
        Decision::Deny(DenyReason::RoleNotPermitted)
    );
    assert!(!policy.enforce_raw(&banner).unwrap());
    // Other roles and other pages are untouched.
    let gp_banner = request(
        Role::Gp,
        Action::ReadBannerAlerts,
        true,
        Some(LIVING_PARTICIPANT),
    );
    assert_eq!(policy.decide(&gp_banner), Decision::Permit);

    // A broken edit is refused and the policy in force stays.
    std::fs::write(&files.policy, "p, pharmacist, read_banner_alerts\n").unwrap();
    assert!(matches!(
        policy.reload().await,
        Err(PolicyError::Rule { .. })
    ));
    assert_eq!(
        policy.decide(&banner),
        Decision::Deny(DenyReason::RoleNotPermitted)
    );
    assert_eq!(policy.decide(&gp_banner), Decision::Permit);

    // A reload can run on a spawned task (e.g. on SIGHUP).
    fn spawnable<T: Send>(_: &T) {}
    spawnable(&policy.reload());

    // Putting the line back restores it.
    std::fs::write(&files.policy, DEFAULT_POLICY).unwrap();
    policy.reload().await.unwrap();
    assert_eq!(policy.decide(&banner), Decision::Permit);
}
