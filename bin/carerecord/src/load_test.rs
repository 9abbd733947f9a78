//! `carerecord load-test`: latency of the reads that matter on a seeded database, and
//! audit append throughput, each beside a baseline measured in the same run (a bare
//! `SELECT 1` on the same pool; one caller appending alone), because these machines are
//! noisy. The figures go in docs/BENCHMARKS.md with the command that produced them.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use care_access_audit::{AuditEvent, Outcome};
use care_application::{AuditLog, Ports, Services};
use care_kernel::{Action, Actor, OrganisationId, PersonId, Purpose, Role, UserId};
use care_persistence::{Database, SqlAuditLog};
use care_person::{NameKey, SearchCriteria};
use care_synthetic::Generator;
use sea_orm::{ConnectionTrait, Statement};

/// Percentiles of a set of timings.
struct Summary {
    name: &'static str,
    samples: Vec<Duration>,
}

impl Summary {
    fn line(mut self) -> String {
        self.samples.sort();
        let at = |q: f64| {
            let i = ((self.samples.len() as f64 - 1.0) * q).round() as usize;
            self.samples.get(i).copied().unwrap_or_default()
        };
        format!(
            "{:<42} n={:<6} p50={:>9.1?} p95={:>9.1?} p99={:>9.1?} max={:>9.1?}",
            self.name,
            self.samples.len(),
            at(0.50),
            at(0.95),
            at(0.99),
            at(1.0)
        )
    }
}

async fn time<F, Fut, T>(name: &'static str, n: u64, mut f: F) -> anyhow::Result<Summary>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut samples = Vec::with_capacity(n as usize);
    for i in 0..n {
        let start = Instant::now();
        f(i).await?;
        samples.push(start.elapsed());
    }
    Ok(Summary { name, samples })
}

/// A spread of indices over the seeded people (a multiplicative walk, so cache locality
/// does not flatter the figures).
fn pick(i: u64, people: u64) -> u64 {
    i.wrapping_mul(2_654_435_761) % people.max(1)
}

fn clinician() -> anyhow::Result<Actor> {
    Ok(Actor::new(
        UserId::parse("loadtest.clinician")?,
        OrganisationId::parse("RDZ")?,
        Role::Clinician,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    ))
}

fn event() -> anyhow::Result<AuditEvent> {
    Ok(AuditEvent {
        at: care_kernel::Timestamp::UNIX_EPOCH,
        user: UserId::parse("loadtest")?,
        organisation: OrganisationId::parse("RDZ")?,
        role: Role::Clinician,
        client: IpAddr::V4(Ipv4Addr::LOCALHOST),
        action: Action::ReadDemographics,
        person: Some(PersonId::from_uuid(uuid::Uuid::nil())),
        resource: Some("loadtest".into()),
        purpose: Purpose::DirectCare,
        basis: None,
        outcome: Outcome::Permitted,
    })
}

/// Runs every measurement and returns the report's lines.
pub async fn run(
    db: &Database,
    ports: Ports,
    generator: &Generator,
    people: u64,
    samples: u64,
    audit_callers: usize,
    audit_seconds: u64,
) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    let conn = db.connection().clone();
    let backend = db.backend();
    lines.push(
        time("baseline: SELECT 1", samples, |_| {
            let conn = conn.clone();
            async move {
                conn.query_one_raw(Statement::from_string(backend, "SELECT 1"))
                    .await?;
                Ok(())
            }
        })
        .await?
        .line(),
    );
    let people_port = ports.people.clone();
    lines.push(
        time("search by NHS number", samples, |i| {
            let people_port = people_port.clone();
            let nhs =
                generator.nhs_number(pick(i, people.min(care_synthetic::NHS_NUMBER_CAPACITY)));
            async move {
                if let Some(nhs) = nhs {
                    let found = people_port
                        .search(&SearchCriteria::NhsNumber(nhs), 101)
                        .await?;
                    anyhow::ensure!(found.len() == 1, "a seeded NHS number was not found");
                }
                Ok(())
            }
        })
        .await?
        .line(),
    );
    lines.push(
        time("search by family prefix + birth date", samples, |i| {
            let people_port = people_port.clone();
            let person = generator.person(pick(i, people)).person;
            async move {
                let shown = person.resolved();
                if let (Some(name), Some(birth)) = (shown.name, shown.birth_date) {
                    let family = name.value.family_key();
                    let prefix: String = family.as_str().chars().take(3).collect();
                    let criteria = SearchCriteria::FamilyAndBirthDate {
                        family_prefix: NameKey::parse_prefix(&prefix)?,
                        birth_date: birth.value,
                    };
                    let found = people_port.search(&criteria, 101).await?;
                    anyhow::ensure!(!found.is_empty(), "a seeded person was not found by name");
                }
                Ok(())
            }
        })
        .await?
        .line(),
    );
    let alerts = ports.alerts.clone();
    let referrals = ports.referrals.clone();
    lines.push(
        time("summary data (person, alerts, referrals)", samples, |i| {
            let (people_port, alerts, referrals) =
                (people_port.clone(), alerts.clone(), referrals.clone());
            let id = generator.person_id(pick(i, people));
            async move {
                let person = people_port.get(id).await?;
                anyhow::ensure!(person.is_some(), "a seeded person was not found by id");
                // As the summary use case reads them: both at once.
                futures_util::future::try_join(
                    alerts.list_for_person(id),
                    referrals.list_for_person(id),
                )
                .await?;
                Ok(())
            }
        })
        .await?
        .line(),
    );
    let services = Services::new(ports.clone());
    let actor = clinician()?;
    lines.push(
        time(
            "summary use case (policy + durable audit)",
            samples.min(2_000),
            |i| {
                let services = services.clone();
                let actor = actor.clone();
                let id = generator.person_id(pick(i, people));
                async move {
                    // Opted-out or long-dead people answer NotFound: still a full read path.
                    let _ = services.person_summary(&actor, id).await;
                    Ok(())
                }
            },
        )
        .await?
        .line(),
    );

    // Audit append throughput: one caller alone, then many at once (group commit).
    let log = Arc::new(SqlAuditLog::new(db.clone()));
    for callers in [1usize, audit_callers] {
        let deadline = Instant::now() + Duration::from_secs(audit_seconds);
        let started = Instant::now();
        let tasks: Vec<_> = (0..callers)
            .map(|_| {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let mut done = 0u64;
                    while Instant::now() < deadline {
                        log.append(vec![event()?]).await?;
                        done += 1;
                    }
                    anyhow::Ok(done)
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await??;
        }
        let secs = started.elapsed().as_secs_f64();
        lines.push(format!(
            "audit append, {callers:>4} caller(s) each waiting for its own commit: {total} events in {secs:.1} s = {:.0} events/s",
            total as f64 / secs
        ));
    }
    Ok(lines)
}
