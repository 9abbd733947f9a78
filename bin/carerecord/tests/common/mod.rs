//! What the end-to-end tests share: the real binary started on a random port, and the
//! people of the demo dataset worth testing with.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use care_application::Clock;
use care_consent::ConsentLevel;
use care_in_memory::SystemClock;
use care_person::VitalStatus;
use care_synthetic::Generator;

/// The demo users' password in every end-to-end test.
pub const PASSWORD: &str = "e2e-Tangerine-Harbour-42";
/// The demo dataset's seed and size (`carerecord demo`'s defaults).
pub const DEMO_SEED: u64 = 7;
pub const DEMO_PEOPLE: u64 = 2_000;

pub struct Server {
    pub child: Child,
    pub base: String,
    /// The MLLP listener's address, when `CARE_MLLP_ADDR` was set.
    pub mllp: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `carerecord <command>` on a random port and waits until it listens.
pub fn start(command: &str, url: &str, env: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_carerecord"));
    cmd.arg(command)
        .env("CARE_DATABASE_URL", url)
        .env("CARE_HTTP_ADDR", "127.0.0.1:0")
        .env("CARE_DEMO_PASSWORD", PASSWORD)
        .env("RUST_LOG", "warn")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the binary starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        let mut seen = String::new();
        let mut mllp = None;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent {
                seen.push_str(&line);
                seen.push('\n');
                if let Some(rest) = line.split("MLLP listening on ").nth(1) {
                    mllp = rest.split_whitespace().next().map(str::to_owned);
                }
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    tx.send(Ok((addr, mllp.take()))).ok();
                    sent = true;
                }
            }
        }
        if !sent {
            tx.send(Err(seen)).ok();
        }
    });
    match rx.recv_timeout(Duration::from_secs(300)) {
        Ok(Ok((addr, mllp))) => Server {
            child,
            base: format!("http://{addr}"),
            mllp,
        },
        Ok(Err(output)) => panic!("carerecord {command} exited before listening:\n{output}"),
        Err(_) => panic!("carerecord {command} did not listen within 300 s"),
    }
}

/// People of the demo dataset worth testing with.
pub struct Cast {
    pub participating: String,
    pub participating_nhs: String,
    pub participating_postcode: String,
    pub ask_first: String,
    pub ask_first_nhs: String,
    /// A second participating person, whose consent a test may change.
    pub spare_nhs: String,
    pub opted_out: String,
    pub opted_out_nhs: String,
    pub deceased: String,
    pub deceased_nhs: String,
    /// The deceased person's family name and birth date (`YYYY-MM-DD`), for a search.
    pub deceased_family: String,
    pub deceased_birth_date: String,
    pub long_dead: String,
    pub long_dead_nhs: String,
}

pub fn cast() -> Cast {
    let today = SystemClock.now().date_naive();
    let generator =
        Generator::new(DEMO_SEED, today.and_time(chrono::NaiveTime::MIN).and_utc()).unwrap();
    let mut participating = None;
    let mut ask_first = None;
    let mut spare = None;
    let mut opted_out = None;
    let mut deceased = None;
    let mut long_dead = None;
    for p in generator.people(DEMO_PEOPLE) {
        let Some(nhs) = p.person.nhs_number().map(|n| n.digits()) else {
            continue;
        };
        let id = p.person.id().to_string();
        let level = p
            .consent
            .as_ref()
            .map_or(ConsentLevel::Participating, |c| c.level());
        let postcode = p
            .person
            .resolved()
            .address
            .and_then(|a| a.value.postcode().map(|p| p.as_str().to_owned()));
        match (p.person.vital_status(today), level) {
            (VitalStatus::Alive, ConsentLevel::Participating)
                if !p.referrals.is_empty() && postcode.is_some() =>
            {
                if participating.is_none() {
                    participating = Some((id, nhs, postcode.unwrap()));
                } else {
                    spare.get_or_insert(nhs);
                }
            }
            (VitalStatus::Alive, ConsentLevel::AskFirst) => {
                ask_first.get_or_insert((id, nhs));
            }
            (VitalStatus::Alive, ConsentLevel::OptedOut) => {
                opted_out.get_or_insert((id, nhs));
            }
            (VitalStatus::Deceased, ConsentLevel::Participating) => {
                let resolved = p.person.resolved();
                if let (Some(name), Some(born)) = (resolved.name, resolved.birth_date) {
                    deceased.get_or_insert((id, nhs, name.value.family().to_owned(), born.value));
                }
            }
            (VitalStatus::DeceasedBeyondRetention, ConsentLevel::Participating) => {
                long_dead.get_or_insert((id, nhs));
            }
            _ => {}
        }
    }
    let (participating, participating_nhs, participating_postcode) = participating.unwrap();
    let (opted_out, opted_out_nhs) = opted_out.unwrap();
    let (ask_first, ask_first_nhs) = ask_first.unwrap();
    let (deceased, deceased_nhs, deceased_family, deceased_born) = deceased.unwrap();
    let (long_dead, long_dead_nhs) = long_dead.unwrap();
    Cast {
        participating,
        participating_nhs,
        participating_postcode,
        ask_first,
        ask_first_nhs,
        spare_nhs: spare.unwrap(),
        opted_out,
        opted_out_nhs,
        deceased,
        deceased_nhs,
        deceased_family,
        deceased_birth_date: deceased_born.format("%Y-%m-%d").to_string(),
        long_dead,
        long_dead_nhs,
    }
}

/// A valid NHS number from the 999 test range, away from the demo's people.
pub fn test_nhs(n: u32) -> String {
    care_person::NhsNumber::from_first_nine(999_555_000 + n)
        .or_else(|| care_person::NhsNumber::from_first_nine(999_556_000 + n))
        .unwrap()
        .digits()
}
