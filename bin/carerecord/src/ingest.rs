//! `carerecord ingest`: a council's nightly CSV extract (referrals or alerts) loaded as
//! that source's feed. Each row is applied or quarantined on its own (see
//! `care_feeds::csv` and docs/FEEDS.md); the command prints what became of the rows and
//! fails when any was quarantined, so a scheduler notices.
//!
//! Each row is applied in its own transactions, so a load stopped midway (killed, the
//! machine down) leaves every row before it applied and none half-applied beyond what
//! loading the file again completes: loading the same file again is the recovery.

use std::io::{IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use care_application::Services;
use care_feeds::Intake;
use care_feeds::csv::{CsvKind, ingest_csv};
use care_in_memory::{SystemClock, UuidV7Ids};
use care_kernel::{Actor, OrganisationId, Role, SourceId, UserId};
use care_person::NhsNumber;
use care_policy::CasbinPolicy;
use indicatif::{ProgressBar, ProgressStyle};

/// The kind of extract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// Children's social-care referrals.
    Referrals,
    /// Alerts.
    Alerts,
}

impl From<Kind> for CsvKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Referrals => CsvKind::Referrals,
            Kind::Alerts => CsvKind::Alerts,
        }
    }
}

/// `carerecord ingest`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct IngestArgs {
    /// The registered source the file comes from (e.g. `council-bcp`); the load acts as
    /// that source's feed.
    #[arg(long)]
    source: String,
    /// What the file holds.
    #[arg(long, value_enum)]
    kind: Kind,
    /// The CSV file (columns: see docs/FEEDS.md).
    file: PathBuf,
    /// Instead of loading FILE, write a synthetic referrals file of N rows to it (for
    /// benchmarks and tests; two referrals a child, some rows repeating an earlier one
    /// with a later status).
    #[arg(long, value_name = "N", hide = true)]
    write_synthetic: Option<u64>,
}

/// The account name the batch acts under, in the audit and the quarantine.
const BATCH_USER: &str = "batch";

/// Runs the command against the database at `url`.
pub(crate) async fn run(url: &str, args: IngestArgs) -> anyhow::Result<()> {
    if let Some(rows) = args.write_synthetic {
        anyhow::ensure!(
            args.kind == Kind::Referrals,
            "--write-synthetic writes referrals only"
        );
        return write_synthetic(&args.file, rows);
    }
    let source =
        SourceId::parse(&args.source).map_err(|e| anyhow::anyhow!("--source: {}", e.reason))?;
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);

    let db = crate::open(url).await?;
    let services = Services::new(db.ports(
        Arc::new(CasbinPolicy::load_default().await?),
        Arc::new(SystemClock),
        Arc::new(UuidV7Ids),
    ));
    if services.ports().sources.get(&source).await?.is_none() {
        anyhow::bail!(
            "source {source} is not registered in this database (seed and demo register their \
             sources; a council's feed must be registered before its extracts are loaded)"
        );
    }
    // The batch is the source's own feed: its organisation is the source.
    let actor = Actor::new(
        UserId::parse(BATCH_USER)?,
        OrganisationId::parse(source.as_str())?,
        Role::Feed,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    )
    .with_feed_source(source.clone());
    let intake = Intake::new(services.open_feed(&actor, &source).await?);

    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(length).with_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
            )?
            .progress_chars("=> "),
        )
    } else {
        ProgressBar::hidden()
    };
    let started = Instant::now();
    let summary = ingest_csv(&intake, args.kind.into(), file, |bytes| {
        bar.set_position(bytes)
    })
    .await
    .with_context(|| format!("loading {}", args.file.display()))?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}: read {} rows from {}: {} applied, {} unchanged, {} quarantined ({seconds:.1} s, {:.0} rows/s)",
        source,
        summary.read,
        args.file.display(),
        summary.applied,
        summary.unchanged,
        summary.quarantined,
        summary.read as f64 / seconds.max(1e-9),
    )?;
    out.flush()?;
    for row in &summary.first_quarantined {
        eprintln!("carerecord: quarantined {}: {}", row.id, row.reason);
    }
    if summary.quarantined > summary.first_quarantined.len() as u64 {
        eprintln!(
            "carerecord: ... and {} more quarantined rows",
            summary.quarantined - summary.first_quarantined.len() as u64
        );
    }
    if summary.quarantined > 0 {
        anyhow::bail!(
            "{} of {} rows were quarantined (the rest were applied); correct and re-submit \
             them from the quarantine",
            summary.quarantined,
            summary.read
        );
    }
    Ok(())
}

/// Teams a synthetic referral goes to (one with a comma, to be quoted).
const TEAMS: [&str; 4] = [
    "MASH",
    "Early help hub",
    "Children in need, east",
    "Child protection",
];
const REFERRERS: [&str; 5] = ["police", "school", "health_visitor", "health", "self"];

/// Writes `rows` synthetic referral rows for two referrals a child, a child in three
/// named by NHS number as well as the council's id. Every fifth row restates the
/// previous row's referral a day later, further on in its lifecycle. Deterministic: the
/// same `rows` give the same file.
fn write_synthetic(path: &Path, rows: u64) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = csv::Writer::from_writer(std::io::BufWriter::with_capacity(1 << 20, file));
    out.write_record(care_feeds::csv::CsvKind::Referrals.columns())?;
    let epoch = chrono::NaiveDate::from_ymd_opt(2025, 1, 1)
        .context("the synthetic epoch")?
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let mut referral = 0u64;
    for i in 0..rows {
        let update = i % 5 == 4;
        if !update {
            referral += 1;
        }
        let child = referral / 2;
        let nhs = if child.is_multiple_of(3) {
            u32::try_from(999_000_000 + child % 1_000_000)
                .ok()
                .and_then(NhsNumber::from_first_nine)
                .map(|n| n.digits())
                .unwrap_or_default()
        } else {
            String::new()
        };
        let received = epoch + chrono::Duration::days(i64::try_from(referral % 365)?);
        let (status, closed, involvement) = match (update, referral % 4) {
            (false, _) => ("awaiting_decision", String::new(), ""),
            (true, 0 | 1) => ("accepted", String::new(), "child_in_need"),
            (true, 2) => (
                "closed_no_further_action",
                (received + chrono::Duration::days(3))
                    .format("%Y-%m-%d")
                    .to_string(),
                "",
            ),
            (true, _) => (
                "closed_transferred",
                (received + chrono::Duration::days(9))
                    .format("%Y-%m-%d")
                    .to_string(),
                "looked_after_child",
            ),
        };
        let updated = received + chrono::Duration::days(i64::from(update));
        let index = usize::try_from(referral).unwrap_or(0);
        out.write_record([
            format!("R{referral:08}").as_str(),
            &nhs,
            &format!("C{child:07}"),
            &received.format("%Y-%m-%d").to_string(),
            TEAMS[index % TEAMS.len()],
            REFERRERS[index % REFERRERS.len()],
            status,
            &closed,
            involvement,
            &updated.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ])?;
    }
    out.flush()?;
    Ok(())
}
