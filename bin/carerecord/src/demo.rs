//! `carerecord demo`: a database with a small realistic dataset and one user per role,
//! then the server. Safe to run again: it seeds only an empty database and resets the
//! demo users' password to the one it announces.

use std::io::Write;
use std::time::Duration;

use care_application::{NewUser, SourceInfo, TokenSource};
use care_consent::ConsentLevel;
use care_kernel::{OrganisationId, Role, Source, SourceId, SourceKind, UserId};
use care_person::VitalStatus;
use care_security::RandomTokens;
use care_synthetic::Generator;

use crate::serve::{ServeConfig, Wired};
use crate::{DEMO_SEED, Dataset};

/// People in the demo dataset.
pub const DEMO_PEOPLE: u64 = 2_000;
/// The demo feed's source.
pub const DEMO_FEED: &str = "demo-feed";

const ORGS: [(&str, &str); 6] = [
    ("DEMO-GP", "Demo Surgery"),
    ("DEMO-ACUTE", "Demo Hospitals NHS Trust"),
    ("DEMO-COUNCIL", "Demo Council Children's Services"),
    ("DEMO-PHARMACY", "Demo Pharmacy"),
    ("DEMO-ICB", "Demo Integrated Care Board"),
    ("DEMO-FEEDS", "Demo integration engine"),
];

fn user_org(role: Role) -> &'static str {
    match role {
        Role::Gp => "DEMO-GP",
        Role::Clinician => "DEMO-ACUTE",
        Role::SocialWorker => "DEMO-COUNCIL",
        Role::Pharmacist => "DEMO-PHARMACY",
        Role::SystemManager | Role::Dpo | Role::Auditor => "DEMO-ICB",
        Role::Feed => "DEMO-FEEDS",
    }
}

/// A password that passes the policy for every demo account name.
fn generated_password() -> String {
    loop {
        let candidate = format!("demo-{}", &RandomTokens.new_token()[..20]);
        if Role::ALL
            .iter()
            .all(|r| care_account::check_password(r.as_str(), &candidate).is_ok())
        {
            return candidate;
        }
    }
}

/// Seeds (if empty), provisions the demo users, prints how to sign in, and serves.
pub async fn run(config: ServeConfig, metrics: care_telemetry::Metrics) -> anyhow::Result<()> {
    let wired = crate::serve::wire(&config, &metrics).await?;
    let as_of = crate::as_of_time(None).date_naive();
    let dataset = Dataset {
        people: DEMO_PEOPLE,
        seed: DEMO_SEED,
        as_of: Some(as_of),
    };
    if wired.db.is_empty().await? {
        crate::seed_database(&config.database_url, &dataset, 1_000).await?;
    } else {
        eprintln!("carerecord: the database already holds people; not seeding");
    }
    provision(&wired).await?;
    let password = match std::env::var("CARE_DEMO_PASSWORD") {
        Ok(p) if !p.is_empty() => {
            for role in Role::ALL {
                care_account::check_password(role.as_str(), &p).map_err(|e| {
                    anyhow::anyhow!(
                        "CARE_DEMO_PASSWORD: {} (for user {})",
                        e.reason,
                        role.as_str()
                    )
                })?;
            }
            (p, false)
        }
        _ => (generated_password(), true),
    };
    for role in Role::ALL {
        wired
            .accounts
            .provision_password(&UserId::parse(role.as_str())?, &password.0)
            .await?;
    }
    let seeded_here = match dataset.generator()?.nhs_number(0) {
        Some(first) => wired
            .services
            .ports()
            .people
            .find_by_identifier(&care_person::Identifier::Nhs(first))
            .await?
            .is_some(),
        None => false,
    };
    announce(&config, &dataset, &password, seeded_here)?;
    crate::serve::serve(config, wired, metrics).await
}

async fn provision(wired: &Wired) -> anyhow::Result<()> {
    for (id, name) in ORGS {
        wired
            .accounts
            .provision_organisation(OrganisationId::parse(id)?, name)
            .await?;
    }
    let registry = wired.services.ports().sources.clone();
    let feed = SourceId::parse(DEMO_FEED)?;
    if registry.get(&feed).await?.is_none() {
        registry
            .register(&SourceInfo::new(
                Source::new(feed.clone(), SourceKind::Other),
                "Demo feed",
                Duration::from_secs(24 * 3600),
            ))
            .await?;
    }
    for role in Role::ALL {
        let user = UserId::parse(role.as_str())?;
        if wired.accounts.user_exists(&user).await? {
            continue;
        }
        wired
            .accounts
            .provision_user(NewUser {
                user,
                display_name: format!("Demo {}", role.as_str().replace('_', " ")),
                organisation: OrganisationId::parse(user_org(role))?,
                role,
                feed_source: (role == Role::Feed).then(|| feed.clone()),
                // Replaced at once by the announced password.
                password: generated_password(),
            })
            .await?;
    }
    Ok(())
}

/// Prints the sign-in details and a few NHS numbers worth trying.
fn announce(
    config: &ServeConfig,
    dataset: &Dataset,
    password: &(String, bool),
    examples_apply: bool,
) -> anyhow::Result<()> {
    let generator: Generator = dataset.generator()?;
    let today = generator.now().date_naive();
    let mut examples: Vec<(&str, String)> = Vec::new();
    let mut want = |label: &'static str, nhs: Option<String>| {
        if let Some(n) = nhs
            && !examples.iter().any(|(l, _)| *l == label)
        {
            examples.push((label, n));
        }
    };
    // The examples come from the demo dataset: on a database seeded otherwise, none.
    let people = if examples_apply { DEMO_PEOPLE } else { 0 };
    for p in generator.people(people) {
        let nhs = p.person.nhs_number().map(|n| n.formatted());
        let level = p
            .consent
            .as_ref()
            .map_or(ConsentLevel::Participating, |c| c.level());
        match (p.person.vital_status(today), level) {
            (VitalStatus::Alive, ConsentLevel::Participating)
                if !p.alerts.is_empty() && !p.referrals.is_empty() =>
            {
                want("participating, with alerts and referrals", nhs)
            }
            (VitalStatus::Alive, ConsentLevel::AskFirst) => want("ask first", nhs),
            (VitalStatus::Alive, ConsentLevel::OptedOut) => {
                want("opted out (shows as not found)", nhs)
            }
            (VitalStatus::Deceased, ConsentLevel::Participating) => {
                want("deceased (include_deceased)", nhs)
            }
            (VitalStatus::DeceasedBeyondRetention, _) => {
                want("died more than 8 years ago (never shown)", nhs)
            }
            _ => {}
        }
    }
    let mut out = std::io::stderr().lock();
    if examples_apply {
        writeln!(
            out,
            "carerecord demo: {DEMO_PEOPLE} people on {}",
            config.database_url
        )?;
    } else {
        writeln!(
            out,
            "carerecord demo: on {} (not the demo dataset: no example NHS numbers)",
            config.database_url
        )?;
    }
    writeln!(
        out,
        "  users: {} — password: {}{}",
        Role::ALL.map(Role::as_str).join(", "),
        password.0,
        if password.1 {
            " (generated; set CARE_DEMO_PASSWORD to choose one)"
        } else {
            " (from CARE_DEMO_PASSWORD)"
        }
    )?;
    for (label, nhs) in examples {
        writeln!(out, "  NHS number {nhs}: {label}")?;
    }
    writeln!(out, "  API documentation: http://{}/docs", config.http_addr)?;
    Ok(())
}
