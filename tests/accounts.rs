//! Accounts and sessions through the use cases, with a clock the tests move: lockout
//! and its end, idle and absolute session ends, disabling and password resets ending
//! sessions, and administration refused (and audited) for every role but the System
//! Manager.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use care_access_audit::Outcome;
use care_application::{
    AccessError, AccountSettings, Accounts, AuditLog, AuthError, IdentityPorts, LockoutPolicy,
    NewUser, SecurityEventKind, SecurityLog, Services, SessionEnd, SessionPolicy, SignInError,
};
use care_in_memory::{
    InMemoryAccounts, InMemoryAuditLog, InMemorySecurityLog, InMemorySessions, ManualClock,
    SpecPolicy, in_memory_ports,
};
use care_kernel::{Action, Actor, DenyReason, OrganisationId, Role, Timestamp, UserId};
use care_security::{Argon2Hasher, RandomTokens};

const PASSWORD: &str = "Lantern-Otter-Vermilion";
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));

struct World {
    accounts: Accounts,
    clock: Arc<ManualClock>,
    audit: Arc<InMemoryAuditLog>,
    security: Arc<InMemorySecurityLog>,
}

fn t0() -> Timestamp {
    Timestamp::from_timestamp(1_800_000_000, 0).unwrap()
}

impl World {
    async fn new() -> Self {
        let clock = Arc::new(ManualClock::new(t0()));
        let audit = Arc::new(InMemoryAuditLog::default());
        let mut ports = in_memory_ports(Arc::new(SpecPolicy::default()), clock.clone());
        ports.audit = audit.clone();
        ports
            .sources
            .register(&care_application::SourceInfo::new(
                care_kernel::Source::new(
                    care_kernel::SourceId::parse("a-feed").unwrap(),
                    care_kernel::SourceKind::Acute,
                ),
                "A feed",
                Duration::from_secs(3600),
            ))
            .await
            .unwrap();
        let security = Arc::new(InMemorySecurityLog::default());
        let identity = IdentityPorts {
            accounts: Arc::new(InMemoryAccounts::default()),
            sessions: Arc::new(InMemorySessions::default()),
            security: security.clone(),
            hasher: Arc::new(Argon2Hasher::new().unwrap()),
            tokens: Arc::new(RandomTokens),
        };
        let accounts = Accounts::new(
            Services::new(ports),
            identity,
            AccountSettings {
                lockout: LockoutPolicy::default(),
                sessions: SessionPolicy {
                    idle_timeout: Duration::from_secs(15 * 60),
                    absolute_lifetime: Duration::from_secs(8 * 3600),
                },
            },
        );
        accounts
            .provision_organisation(OrganisationId::parse("ORG").unwrap(), "An organisation")
            .await
            .unwrap();
        for role in Role::ALL {
            accounts
                .provision_user(NewUser {
                    user: UserId::parse(role.as_str()).unwrap(),
                    display_name: role.as_str().into(),
                    organisation: OrganisationId::parse("ORG").unwrap(),
                    role,
                    feed_source: (role == Role::Feed)
                        .then(|| care_kernel::SourceId::parse("a-feed").unwrap()),
                    password: PASSWORD.into(),
                })
                .await
                .unwrap();
        }
        Self {
            accounts,
            clock,
            audit,
            security,
        }
    }

    fn later(&self, secs: i64) {
        self.clock.set(t0() + chrono::Duration::seconds(secs));
    }
}

fn admin() -> Actor {
    Actor::new(
        UserId::parse("system_manager").unwrap(),
        OrganisationId::parse("ORG").unwrap(),
        Role::SystemManager,
        CLIENT,
    )
}

#[tokio::test]
async fn five_failures_lock_until_the_oldest_leaves_the_window() {
    let w = World::new().await;
    for i in 0..5 {
        w.later(i * 60);
        let e = w.accounts.sign_in("gp", "wrong password!", CLIENT).await;
        assert!(matches!(e, Err(SignInError::InvalidCredentials)));
    }
    w.later(5 * 60);
    let locked = w.accounts.sign_in("gp", PASSWORD, CLIENT).await;
    assert!(
        matches!(locked, Err(SignInError::Locked { .. })),
        "the right password does not unlock"
    );
    // The first failure (at 0) leaves the 15-minute window after 15 minutes.
    w.later(15 * 60 + 1);
    let signed_in = w.accounts.sign_in("gp", PASSWORD, CLIENT).await.unwrap();
    assert_eq!(signed_in.role, Role::Gp);
    // A success clears the count: four more failures do not lock.
    for _ in 0..4 {
        assert!(
            w.accounts
                .sign_in("gp", "wrong password!", CLIENT)
                .await
                .is_err()
        );
    }
    assert!(w.accounts.sign_in("gp", PASSWORD, CLIENT).await.is_ok());
    let kinds: Vec<SecurityEventKind> = w
        .security
        .recent(100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == SecurityEventKind::SignInFailed)
            .count(),
        9
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == SecurityEventKind::SignInLocked)
            .count(),
        1
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == SecurityEventKind::SignInSucceeded)
            .count(),
        2
    );
}

#[tokio::test]
async fn unknown_and_disabled_users_fail_like_a_wrong_password() {
    let w = World::new().await;
    assert!(matches!(
        w.accounts.sign_in("nobody", PASSWORD, CLIENT).await,
        Err(SignInError::InvalidCredentials)
    ));
    assert!(matches!(
        w.accounts.sign_in("bad name!", PASSWORD, CLIENT).await,
        Err(SignInError::InvalidCredentials)
    ));
    w.accounts
        .disable_user(&admin(), &UserId::parse("gp").unwrap())
        .await
        .unwrap();
    assert!(matches!(
        w.accounts.sign_in("gp", PASSWORD, CLIENT).await,
        Err(SignInError::InvalidCredentials)
    ));
}

#[tokio::test]
async fn sessions_end_when_idle_and_at_their_absolute_lifetime() {
    let w = World::new().await;
    let s = w
        .accounts
        .sign_in("clinician", PASSWORD, CLIENT)
        .await
        .unwrap();
    // Used every 10 minutes, the session outlives the 15-minute idle timeout...
    for minutes in (10..=60).step_by(10) {
        w.later(minutes * 60);
        w.accounts.authenticate(&s.token, CLIENT).await.unwrap();
    }
    // ...left for 15 minutes, it ends.
    w.later(75 * 60);
    assert!(matches!(
        w.accounts.authenticate(&s.token, CLIENT).await,
        Err(AuthError::Ended(SessionEnd::Idle))
    ));

    let s = w
        .accounts
        .sign_in("clinician", PASSWORD, CLIENT)
        .await
        .unwrap();
    let mut minutes = 75;
    while minutes < 75 + 8 * 60 - 10 {
        minutes += 10;
        w.later(minutes * 60);
        w.accounts.authenticate(&s.token, CLIENT).await.unwrap();
    }
    w.later((75 + 8 * 60) * 60);
    assert!(matches!(
        w.accounts.authenticate(&s.token, CLIENT).await,
        Err(AuthError::Ended(SessionEnd::Expired))
    ));
}

#[tokio::test]
async fn sign_out_disable_and_password_reset_end_sessions() {
    let w = World::new().await;
    let a = w
        .accounts
        .sign_in("pharmacist", PASSWORD, CLIENT)
        .await
        .unwrap();
    assert!(w.accounts.sign_out(&a.token, CLIENT).await.unwrap());
    assert!(matches!(
        w.accounts.authenticate(&a.token, CLIENT).await,
        Err(AuthError::Ended(SessionEnd::Revoked))
    ));

    let b = w
        .accounts
        .sign_in("pharmacist", PASSWORD, CLIENT)
        .await
        .unwrap();
    let pharmacist = UserId::parse("pharmacist").unwrap();
    w.accounts
        .reset_password(&admin(), &pharmacist, "Another-Good-Passphrase")
        .await
        .unwrap();
    assert!(w.accounts.authenticate(&b.token, CLIENT).await.is_err());
    assert!(
        w.accounts
            .sign_in("pharmacist", PASSWORD, CLIENT)
            .await
            .is_err()
    );
    let c = w
        .accounts
        .sign_in("pharmacist", "Another-Good-Passphrase", CLIENT)
        .await
        .unwrap();
    w.accounts
        .disable_user(&admin(), &pharmacist)
        .await
        .unwrap();
    assert!(w.accounts.authenticate(&c.token, CLIENT).await.is_err());
    // The System Manager cannot lock themselves out.
    let own = w
        .accounts
        .disable_user(&admin(), &UserId::parse("system_manager").unwrap())
        .await;
    assert!(matches!(own, Err(AccessError::Invalid(_))));
    // Garbage tokens are simply unknown.
    for token in ["", "x", &"a".repeat(10_000)] {
        assert!(matches!(
            w.accounts.authenticate(token, CLIENT).await,
            Err(AuthError::Unknown)
        ));
    }
}

#[tokio::test]
async fn only_the_system_manager_administers_and_every_attempt_is_audited() {
    let w = World::new().await;
    for role in Role::ALL {
        let actor = Actor::new(
            UserId::parse(role.as_str()).unwrap(),
            OrganisationId::parse("ORG").unwrap(),
            role,
            CLIENT,
        );
        let before = w.audit.head().await.unwrap().len;
        let listed = w.accounts.users(&actor).await;
        let events = w.audit.read(before, 10).await.unwrap();
        assert_eq!(events.len(), 1, "{role}: one audit event");
        assert_eq!(events[0].event.action, Action::ManageUsers);
        if role == Role::SystemManager {
            assert_eq!(listed.unwrap().value.len(), Role::ALL.len());
            assert_eq!(events[0].event.outcome, Outcome::Permitted);
        } else {
            assert!(matches!(listed, Err(AccessError::Forbidden)), "{role}");
            assert_eq!(
                events[0].event.outcome,
                Outcome::Denied(DenyReason::RoleNotPermitted)
            );
        }
    }
}

#[tokio::test]
async fn new_users_meet_the_password_policy_and_feed_rules() {
    let w = World::new().await;
    let new = |user: &str, role: Role, password: &str| NewUser {
        user: UserId::parse(user).unwrap(),
        display_name: "Someone".into(),
        organisation: OrganisationId::parse("ORG").unwrap(),
        role,
        feed_source: None,
        password: password.into(),
    };
    let field = |r: Result<_, AccessError>| match r {
        Err(AccessError::Invalid(v)) => v.field,
        other => panic!("expected an invalid field, got {other:?}"),
    };
    assert_eq!(
        field(
            w.accounts
                .create_user(&admin(), new("ann", Role::Gp, "short"))
                .await
        ),
        "password"
    );
    assert_eq!(
        field(
            w.accounts
                .create_user(&admin(), new("ann", Role::Gp, "qwertyuiop12"))
                .await
        ),
        "password"
    );
    assert_eq!(
        field(
            w.accounts
                .create_user(&admin(), new("annabel", Role::Gp, "xx-ANNABEL-2026-xx"))
                .await
        ),
        "password"
    );
    assert_eq!(
        field(
            w.accounts
                .create_user(&admin(), new("feed2", Role::Feed, PASSWORD))
                .await
        ),
        "feed_source"
    );
    let mut unknown_source = new("feed3", Role::Feed, PASSWORD);
    unknown_source.feed_source = Some(care_kernel::SourceId::parse("no-such-source").unwrap());
    assert_eq!(
        field(w.accounts.create_user(&admin(), unknown_source).await),
        "feed_source"
    );
    let mut wrong_org = new("bob", Role::Gp, PASSWORD);
    wrong_org.organisation = OrganisationId::parse("NOPE").unwrap();
    assert_eq!(
        field(w.accounts.create_user(&admin(), wrong_org).await),
        "organisation"
    );
    w.accounts
        .create_user(&admin(), new("ann", Role::Gp, PASSWORD))
        .await
        .unwrap();
    assert!(matches!(
        w.accounts
            .create_user(&admin(), new("ann", Role::Gp, PASSWORD))
            .await,
        Err(AccessError::Rejected(_))
    ));
}
