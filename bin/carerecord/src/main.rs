//! `carerecord`: the composition root. The only place that picks adapters for ports.

mod bench_feed;
mod bench_http;
mod cache;
mod demo;
mod feeds;
mod ingest;
mod load_test;
mod metrics;
mod serve;

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use care_application::{
    AccessPolicy, AccessRequest, Clock, Decision, Services, SourceRegistry, SubjectState,
};
use care_in_memory::{SystemClock, UuidV7Ids};
use care_kernel::{Action, Actor, OrganisationId, Role, UserId};
use care_persistence::{Database, ImportBatch, PreparedImport, SqlSources};
use care_policy::CasbinPolicy;
use care_synthetic::Generator;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

/// mimalloc rather than glibc's malloc: under load the server spent 18% of its CPU in
/// glibc's allocator and its arena locks (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "carerecord",
    version,
    about = "Care Record: a shared care record"
)]
struct Cli {
    /// The database: `sqlite://FILE` (created if missing) or `postgres://…`
    /// [default: sqlite://care.db].
    #[arg(long, global = true, env = "CARE_DATABASE_URL")]
    database: Option<String>,
    /// A settings file (TOML) for `serve` and `demo`; `CARE_…` variables override it.
    #[arg(long, global = true, env = "CARE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// A synthetic dataset: how many people, from which seed, as of which day.
#[derive(Debug, clap::Args)]
pub(crate) struct Dataset {
    /// How many people.
    #[arg(long)]
    pub(crate) people: u64,
    /// The seed: the same seed and day give the same people.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// The day the data is generated as of (YYYY-MM-DD, default today, UTC): birth
    /// dates, deaths and source times are placed relative to it.
    #[arg(long)]
    pub(crate) as_of: Option<chrono::NaiveDate>,
}

impl Dataset {
    pub(crate) fn generator(&self) -> anyhow::Result<Generator> {
        Ok(Generator::new(self.seed, as_of_time(self.as_of))?)
    }
}

/// The database when none is named.
pub const DEFAULT_DATABASE: &str = "sqlite://care.db";
/// The seed of the demo dataset.
pub const DEMO_SEED: u64 = 7;

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (settings: defaults, then --config FILE, then CARE_… variables:
    /// CARE_HTTP_ADDR, CARE_DATABASE_URL, CARE_SESSION_IDLE_TIMEOUT, CARE_ALLOWED_NETWORKS,
    /// CARE_TRUSTED_PROXIES, CARE_TLS_CERT/CARE_TLS_KEY, ...).
    Serve,
    /// Create (if missing) and seed a demo database with one user per role, then serve.
    Demo,
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
        #[command(flatten)]
        dataset: Dataset,
        /// People written per transaction.
        #[arg(long, default_value_t = 2_000)]
        batch: u64,
    },
    /// Verify the audit hash chain against its head; exits non-zero if it is broken.
    VerifyAudit,
    /// Measure read latency and audit append throughput on a database seeded with
    /// `seed --people N --seed S --as-of D` (give the same values).
    LoadTest {
        #[command(flatten)]
        dataset: Dataset,
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
    /// Load a running server: `GET /api/v1/people/{id}` beside the bare `GET /health`,
    /// in one run (give the dataset the server was seeded with).
    BenchHttp {
        #[command(flatten)]
        dataset: Dataset,
        /// The server.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The user to sign in as.
        #[arg(long, default_value = "gp")]
        user: String,
        /// Their password.
        #[arg(long, env = "CARE_DEMO_PASSWORD")]
        password: String,
        /// Concurrent connections.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Also measure latency at this fixed request rate (requests/s).
        #[arg(long)]
        rate: Option<u64>,
    },
    /// Load a council's CSV extract (referrals or alerts) as that source's feed: each row
    /// applied or quarantined; exits non-zero when any row was quarantined.
    Ingest(ingest::IngestArgs),
    /// Load a running server's feeds: synthetic ADT A01 messages over MLLP (an ACK per
    /// message) and over HTTP as HL7 batches, beside the parse-only rate in this process.
    BenchFeed(bench_feed::BenchFeed),
    /// Write synthetic people (with alerts, referrals and consent) as JSON lines.
    Generate {
        #[command(flatten)]
        dataset: Dataset,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve | Command::Demo => run_server(&cli).await,
        _ => run_command(cli).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("carerecord: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_server(cli: &Cli) -> anyhow::Result<()> {
    let _telemetry = care_telemetry::init(
        "carerecord",
        Some("info,sea_orm_migration=warn,sqlx=warn,poem::server=warn"),
    )?;
    let metrics = care_telemetry::Metrics::new()?;
    let config = serve::ServeConfig::load(cli.config.as_deref(), cli.database.clone())?;
    match cli.command {
        Command::Demo => demo::run(config, metrics).await,
        _ => {
            let wired = serve::wire(&config, &metrics).await?;
            serve::serve(config, wired, metrics).await
        }
    }
}

async fn run_command(cli: Cli) -> anyhow::Result<()> {
    let database = cli
        .database
        .clone()
        .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
    match cli.command {
        Command::Serve | Command::Demo => Ok(()),
        Command::Policy { model, policy } => show_policy(model, policy).await,
        Command::Migrate => migrate(&database).await,
        Command::Seed { dataset, batch } => seed_database(&database, &dataset, batch).await,
        Command::VerifyAudit => verify_audit(&database).await,
        Command::LoadTest {
            dataset,
            samples,
            audit_callers,
            audit_seconds,
        } => load_test(&database, &dataset, samples, audit_callers, audit_seconds).await,
        Command::BenchHttp {
            dataset,
            url,
            user,
            password,
            concurrency,
            seconds,
            rate,
        } => {
            let bench = bench_http::BenchHttp {
                url,
                user,
                password,
                concurrency,
                seconds,
                rate,
            };
            let lines = bench_http::run(&bench, &dataset.generator()?, dataset.people).await?;
            let mut out = std::io::stdout().lock();
            for line in lines {
                writeln!(out, "{line}")?;
            }
            Ok(())
        }
        Command::BenchFeed(bench) => {
            let lines = bench_feed::run(&bench).await?;
            let mut out = std::io::stdout().lock();
            for line in lines {
                writeln!(out, "{line}")?;
            }
            Ok(())
        }
        Command::Generate { dataset } => generate(&dataset),
        Command::Ingest(args) => ingest::run(&database, args).await,
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
pub(crate) fn as_of_time(as_of: Option<chrono::NaiveDate>) -> care_kernel::Timestamp {
    let day = as_of.unwrap_or_else(|| SystemClock.now().date_naive());
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// Opens the database and brings its schema up to date (as every command does).
pub(crate) async fn open(url: &str) -> anyhow::Result<Database> {
    let db = Database::connect(url).await?;
    db.migrate().await?;
    Ok(db)
}

async fn migrate(url: &str) -> anyhow::Result<()> {
    open(url).await?;
    eprintln!("carerecord: the database schema is up to date");
    Ok(())
}

pub(crate) async fn seed_database(url: &str, dataset: &Dataset, batch: u64) -> anyhow::Result<()> {
    let people = dataset.people;
    // A bulk load into an empty database: no flush per commit (SQLite), one checkpoint
    // on a durable connection at the end. Interrupted, the database is not empty and
    // seed refuses it: start again with a fresh file. Migrated first on a durable
    // connection: a migration may rebuild a table, which on a file given by mistake must
    // not run without flushes.
    open(url).await?.close().await?;
    let (db, own_file) = match Database::connect_with(url, care_persistence::Pool::BULK_LOAD).await
    {
        Ok(db) => (db, true),
        // Another pool has the file open (the demo's server): SQLite cannot leave WAL
        // mode then ("database is locked"), so the load goes through the log.
        Err(e) if e.to_string().contains("database is locked") => (
            Database::connect_with(url, care_persistence::Pool::BULK_LOAD_SHARED).await?,
            false,
        ),
        Err(e) => return Err(e),
    };
    db.migrate().await?;
    let registry = SqlSources::new(db.clone());
    for source in care_synthetic::sources()? {
        registry.register(&source).await?;
    }
    let generator = dataset.generator()?;
    let bar = ProgressBar::new(people).with_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} people ({per_sec}, eta {eta})",
        )?
        .progress_chars("=> "),
    );
    let started = std::time::Instant::now();
    // Into an empty database, build the secondary indexes once at the end instead of
    // keeping them up to date row by row.
    // Synthetic people share the 999 test range of NHS numbers: two datasets in one
    // database would collide, so seed fills an empty database only.
    anyhow::ensure!(
        db.is_empty().await?,
        "the database already holds people: seed fills an empty database (give another --database)"
    );
    db.drop_indexes_for_bulk_load().await?;
    // Generate on another thread while this one writes: two cores, two jobs.
    let batch = batch.max(1);
    let (tx, mut rx) =
        tokio::sync::mpsc::channel::<anyhow::Result<(u64, u64, usize, usize, PreparedImport)>>(2);
    let writer_db = db.clone();
    let producer = tokio::task::spawn_blocking(move || {
        let mut latest = care_synthetic::LatestStatements::default();
        let mut next = 0;
        while next < people {
            let end = (next + batch).min(people);
            let mut import = ImportBatch::default();
            for p in generator.people_range(next..end) {
                latest.note(&p);
                import.people.push(p.person);
                import.alerts.extend(p.alerts);
                import.referrals.extend(p.referrals);
                import.consents.extend(p.consent);
            }
            let counts = (import.alerts.len(), import.referrals.len());
            let prepared = writer_db
                .prepare_import(&import)
                .map(|prepared| (next, end, counts.0, counts.1, prepared))
                .map_err(anyhow::Error::new);
            if tx.blocking_send(prepared).is_err() {
                break;
            }
            next = end;
        }
        latest
    });
    let (mut alerts, mut referrals) = (0usize, 0usize);
    while let Some(prepared) = rx.recv().await {
        let (from, to, batch_alerts, batch_referrals, prepared) = prepared?;
        alerts += batch_alerts;
        referrals += batch_referrals;
        db.write_import(prepared)
            .await
            .with_context(|| format!("writing people {from}..{to}"))?;
        bar.inc(to - from);
    }
    let latest = producer.await?;
    bar.finish();
    let loaded = started.elapsed();
    db.build_indexes().await?;
    latest.record(&registry).await?;
    drop(registry);
    // A load through the rollback journal wrote into the file without flushing it: flush
    // it once this pool (the only one on the file) is closed. A load through the log is
    // made durable by the checkpoint.
    let file = if own_file {
        db.sqlite_file().await?
    } else {
        None
    };
    db.close().await?;
    if let Some(file) = file {
        care_persistence::flush_file(file).await?;
    }
    open(url).await?.checkpoint().await?;
    eprintln!(
        "carerecord: seeded {people} people, {alerts} alerts and {referrals} referrals in {:.1} s \
         (rows {:.1} s, indexes built after the load {:.1} s)",
        started.elapsed().as_secs_f64(),
        loaded.as_secs_f64(),
        (started.elapsed() - loaded).as_secs_f64(),
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
    dataset: &Dataset,
    samples: u64,
    audit_callers: usize,
    audit_seconds: u64,
) -> anyhow::Result<()> {
    let people = dataset.people;
    let db = open(url).await?;
    let ports = db.ports(
        Arc::new(CasbinPolicy::load_default().await?),
        Arc::new(SystemClock),
        Arc::new(UuidV7Ids),
    );
    let generator = dataset.generator()?;
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

fn generate(dataset: &Dataset) -> anyhow::Result<()> {
    let now = as_of_time(dataset.as_of);
    let mut out = BufWriter::new(std::io::stdout().lock());
    care_synthetic::write_json_lines(dataset.seed, now, dataset.people, &mut out)?;
    out.flush().context("writing to standard output")?;
    Ok(())
}
