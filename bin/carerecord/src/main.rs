//! `carerecord`: the composition root. The only place that picks adapters for ports.

mod load_test;

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use care_application::{AccessPolicy, AccessRequest, Clock, Decision, Services, SubjectState};
use care_in_memory::{SpecPolicy, SystemClock, UuidV7Ids};
use care_kernel::{Action, Actor, OrganisationId, Role, UserId};
use care_persistence::{Database, ImportBatch};
use care_policy::CasbinPolicy;
use care_synthetic::Generator;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Parser)]
#[command(
    name = "carerecord",
    version,
    about = "Care Record: a shared care record"
)]
struct Cli {
    /// The database: `sqlite://FILE` (created if missing) or `postgres://…`.
    #[arg(
        long,
        global = true,
        env = "CARE_DATABASE_URL",
        default_value = "sqlite://care.db"
    )]
    database: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load the access policy and show what each role may do. Use it after editing the
    /// policy files: it fails, naming the problem, if they do not load.
    Policy {
        /// The casbin model file (default: the shipped model).
        #[arg(long, env = "CARE_POLICY_MODEL", requires = "policy")]
        model: Option<PathBuf>,
        /// The casbin policy file (default: the shipped policy).
        #[arg(long, env = "CARE_POLICY_FILE", requires = "model")]
        policy: Option<PathBuf>,
    },
    /// Create or update the database schema.
    Migrate,
    /// Fill the database with synthetic people (alerts, referrals, consent), in batches.
    Seed {
        /// How many people.
        #[arg(long)]
        people: u64,
        /// The seed: the same seed and date give the same people.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The day the data is generated as of (YYYY-MM-DD, default today, UTC).
        #[arg(long)]
        as_of: Option<chrono::NaiveDate>,
        /// People written per transaction.
        #[arg(long, default_value_t = 2_000)]
        batch: u64,
    },
    /// Verify the audit hash chain against its head; exits non-zero if it is broken.
    VerifyAudit,
    /// Measure read latency and audit append throughput on a database seeded with
    /// `seed --people N --seed S --as-of D` (give the same values).
    LoadTest {
        /// How many people were seeded.
        #[arg(long)]
        people: u64,
        /// The seed they were seeded with.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The day they were seeded as of.
        #[arg(long)]
        as_of: Option<chrono::NaiveDate>,
        /// Timed requests per read measurement.
        #[arg(long, default_value_t = 10_000)]
        samples: u64,
        /// Concurrent callers for the audit throughput measurement.
        #[arg(long, default_value_t = 256)]
        audit_callers: usize,
        /// Seconds per audit throughput measurement.
        #[arg(long, default_value_t = 5)]
        audit_seconds: u64,
    },
    /// Write synthetic people (with alerts, referrals and consent) as JSON lines.
    Generate {
        /// How many people.
        #[arg(long, default_value_t = 10)]
        people: u64,
        /// The seed: the same seed and date give the same people.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The day the data is generated as of (YYYY-MM-DD, default today, UTC): birth
        /// dates, deaths and source times are placed relative to it.
        #[arg(long)]
        as_of: Option<chrono::NaiveDate>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let database = cli.database;
    let result = match cli.command {
        Command::Policy { model, policy } => show_policy(model, policy).await,
        Command::Migrate => migrate(&database).await,
        Command::Seed {
            people,
            seed,
            as_of,
            batch,
        } => seed_database(&database, people, seed, as_of, batch).await,
        Command::VerifyAudit => verify_audit(&database).await,
        Command::LoadTest {
            people,
            seed,
            as_of,
            samples,
            audit_callers,
            audit_seconds,
        } => {
            load_test(
                &database,
                people,
                seed,
                as_of,
                samples,
                audit_callers,
                audit_seconds,
            )
            .await
        }
        Command::Generate {
            people,
            seed,
            as_of,
        } => generate(people, seed, as_of),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("carerecord: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn show_policy(model: Option<PathBuf>, policy: Option<PathBuf>) -> anyhow::Result<()> {
    let (loaded, origin) = match (model, policy) {
        (Some(m), Some(p)) => {
            let origin = format!("{} and {}", m.display(), p.display());
            (CasbinPolicy::load(&m, &p).await?, origin)
        }
        _ => (
            CasbinPolicy::load_default().await?,
            "the shipped defaults (adapters/policy/config)".to_owned(),
        ),
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    writeln!(
        out,
        "Access policy from {origin}: {} rules.",
        loaded.rule_count()
    )?;
    writeln!(
        out,
        "What each role may do for direct care, on a participating, living person's record:"
    )?;
    for role in Role::ALL {
        let allowed: Vec<&str> = Action::ALL
            .iter()
            .filter(|action| {
                let subject = action.concerns_a_person().then_some(SubjectState::NEUTRAL);
                loaded.decide(&AccessRequest {
                    role,
                    action: **action,
                    direct_care: true,
                    subject,
                }) == Decision::Permit
            })
            .map(|a| a.as_str())
            .collect();
        let shown = if allowed.is_empty() {
            "(nothing)".to_owned()
        } else {
            allowed.join(", ")
        };
        writeln!(out, "  {:<15} {shown}", role.as_str())?;
    }
    let sees_opted_out: Vec<&str> = Role::ALL
        .iter()
        .filter(|role| {
            Action::ALL.iter().any(|action| {
                loaded.decide(&AccessRequest {
                    role: **role,
                    action: *action,
                    direct_care: true,
                    subject: Some(SubjectState {
                        consent: care_consent::ConsentLevel::OptedOut,
                        ..SubjectState::NEUTRAL
                    }),
                }) == Decision::Permit
            })
        })
        .map(|r| r.as_str())
        .collect();
    writeln!(
        out,
        "Roles that can reach an opted-out person at all: {}.",
        sees_opted_out.join(", ")
    )?;
    out.flush().context("writing to standard output")?;
    Ok(())
}

/// Midnight (UTC) of the given day, or of today: what generated data is anchored to.
fn as_of_time(as_of: Option<chrono::NaiveDate>) -> care_kernel::Timestamp {
    let day = as_of.unwrap_or_else(|| SystemClock.now().date_naive());
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// Opens the database and brings its schema up to date (as every command does).
async fn open(url: &str) -> anyhow::Result<Database> {
    let db = Database::connect(url).await?;
    db.migrate().await?;
    Ok(db)
}

async fn migrate(url: &str) -> anyhow::Result<()> {
    open(url).await?;
    eprintln!("carerecord: the database schema is up to date");
    Ok(())
}

async fn seed_database(
    url: &str,
    people: u64,
    seed: u64,
    as_of: Option<chrono::NaiveDate>,
    batch: u64,
) -> anyhow::Result<()> {
    let db = open(url).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ports = db.ports(Arc::new(SpecPolicy::default()), clock, Arc::new(UuidV7Ids));
    for source in care_synthetic::sources()? {
        ports.sources.register(&source).await?;
    }
    let generator = Generator::new(seed, as_of_time(as_of))?;
    let bar = ProgressBar::new(people).with_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} people ({per_sec}, eta {eta})",
        )?
        .progress_chars("=> "),
    );
    let started = std::time::Instant::now();
    let (mut alerts, mut referrals) = (0usize, 0usize);
    let mut next = 0;
    while next < people {
        let end = (next + batch.max(1)).min(people);
        let mut import = ImportBatch::default();
        for p in generator.people_range(next..end) {
            import.people.push(p.person);
            import.alerts.extend(p.alerts);
            import.referrals.extend(p.referrals);
            import.consents.extend(p.consent);
        }
        alerts += import.alerts.len();
        referrals += import.referrals.len();
        db.import(&import)
            .await
            .with_context(|| format!("writing people {next}..{end}"))?;
        bar.inc(end - next);
        next = end;
    }
    bar.finish();
    eprintln!(
        "carerecord: seeded {people} people, {alerts} alerts and {referrals} referrals in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn verify_audit(url: &str) -> anyhow::Result<()> {
    let db = open(url).await?;
    let ports = db.ports(
        Arc::new(CasbinPolicy::load_default().await?),
        Arc::new(SystemClock),
        Arc::new(UuidV7Ids),
    );
    let services = Services::new(ports);
    // The operator running this command acts as the auditor, from this machine.
    let user: String = std::env::var("USER")
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(60)
        .collect();
    let user = if user.is_empty() {
        "operator".to_owned()
    } else {
        user
    };
    let actor = Actor::new(
        UserId::parse(&format!("cli.{user}"))?,
        OrganisationId::parse("LOCAL")?,
        Role::Auditor,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    );
    let verification = services.verify_audit(&actor).await?;
    match verification.result {
        Ok(chain) => {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "audit chain verified: {} events, last hash {}",
                chain.len, chain.last_hash
            )?;
            Ok(())
        }
        Err(broken) => anyhow::bail!(
            "audit chain broken at event {}: {broken}",
            broken.position()
        ),
    }
}

async fn load_test(
    url: &str,
    people: u64,
    seed: u64,
    as_of: Option<chrono::NaiveDate>,
    samples: u64,
    audit_callers: usize,
    audit_seconds: u64,
) -> anyhow::Result<()> {
    let db = open(url).await?;
    let ports = db.ports(
        Arc::new(CasbinPolicy::load_default().await?),
        Arc::new(SystemClock),
        Arc::new(UuidV7Ids),
    );
    let generator = Generator::new(seed, as_of_time(as_of))?;
    let lines = load_test::run(
        &db,
        ports,
        &generator,
        people,
        samples,
        audit_callers,
        audit_seconds,
    )
    .await?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "load test on {} ({people} people seeded)",
        db.backend_name()
    )?;
    for line in lines {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

fn generate(people: u64, seed: u64, as_of: Option<chrono::NaiveDate>) -> anyhow::Result<()> {
    let now = as_of_time(as_of);
    let mut out = BufWriter::new(std::io::stdout().lock());
    care_synthetic::write_json_lines(seed, now, people, &mut out)?;
    out.flush().context("writing to standard output")?;
    Ok(())
}
