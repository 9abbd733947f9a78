//! `carerecord`: the composition root. The only place that picks adapters for ports.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use care_application::{AccessPolicy, AccessRequest, Clock, Decision, SubjectState};
use care_in_memory::SystemClock;
use care_kernel::{Action, Role};
use care_policy::CasbinPolicy;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "carerecord",
    version,
    about = "Care Record: a shared care record"
)]
struct Cli {
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
    let result = match cli.command {
        Command::Policy { model, policy } => show_policy(model, policy).await,
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

fn generate(people: u64, seed: u64, as_of: Option<chrono::NaiveDate>) -> anyhow::Result<()> {
    let day = as_of.unwrap_or_else(|| SystemClock.now().date_naive());
    let now = day.and_time(chrono::NaiveTime::MIN).and_utc();
    let mut out = BufWriter::new(std::io::stdout().lock());
    care_synthetic::write_json_lines(seed, now, people, &mut out)?;
    out.flush().context("writing to standard output")?;
    Ok(())
}
