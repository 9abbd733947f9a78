//! `carerecord bench-feed`: a load client for a running server's feeds. It sends
//! synthetic ADT A01 messages (about 1 KB each, every one a new person with an NHS
//! number, a local id, an address, a practice and an allergy) over MLLP (each
//! connection waits for its ACK before the next message, as most MLLP senders do, or
//! with `--in-flight` sends several before reading their ACKs) and over
//! HTTP as HL7 batches, and reports messages/s beside the parse-only rate of the same
//! messages in this process (the baseline: what the feed costs before the database).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use care_person::NhsNumber;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What to drive and how hard.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchFeed {
    /// The server's HTTP base URL, for the batch measurement (signs in as `user`).
    #[arg(long)]
    pub url: Option<String>,
    /// The MLLP listener (host:port).
    #[arg(long)]
    pub mllp: Option<String>,
    /// The feed account (for HTTP).
    #[arg(long, default_value = "feed")]
    pub user: String,
    /// Its password.
    #[arg(long, env = "CARE_DEMO_PASSWORD", default_value = "")]
    pub password: String,
    /// Its source.
    #[arg(long, default_value = "demo-feed")]
    pub source: String,
    /// Messages per measurement.
    #[arg(long, default_value_t = 20_000)]
    pub messages: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Messages per HTTP batch.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Messages an MLLP connection sends before it reads their ACKs (1: each waits for
    /// its ACK, as most senders do; at most 256, so that unread ACKs cannot fill both
    /// sides' socket buffers).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub in_flight: u16,
    /// Where generated identifiers start (change it between runs to add new people
    /// rather than repeat old ones).
    #[arg(long, default_value_t = 0)]
    pub offset: u32,
}

/// A realistic ADT A01 for person `n`.
pub fn message(n: u64, offset: u32) -> String {
    let first_nine = 900_000_000 + offset + u32::try_from(n).unwrap_or(0) * 11 % 99_000_000;
    let nhs = (0..20)
        .find_map(|k| NhsNumber::from_first_nine(first_nine + k))
        .map(|n| n.digits())
        .unwrap_or_default();
    let second = n % 86_400;
    let time = format!(
        "2026110{}{:02}{:02}{:02}",
        1 + n % 9,
        second / 3600,
        second / 60 % 60,
        second % 60
    );
    format!(
        "MSH|^~\\&|PAS|RDZ|CARE|DCR|{time}||ADT^A01^ADT_A01|B{offset}-{n}|P|2.4|||AL|NE|GBR\r\
         EVN|A01|{time}|||C006^Wolf^Kathy^^^Dr\r\
         PID|1||L{offset}-{n}^^^RDZ^MR~{nhs}^^^NHS^NH||Bench{n}^Alex^James^^Mr||19{:02}0{}1{}|{}|||{} Harbour Road^Flat {}^Poole^Dorset^BH15 1AA^GBR^H||01202 {:06}^PRN^PH|||S||||||||||||||\r\
         PD1|||Harbour Medical Practice^^J81{:03}|G{:07}^Jones^Sarah^^^Dr\r\
         NK1|1|Bench{n}^Morgan^^^Mrs|SPO^Spouse^HL70063|{} Harbour Road^Flat {}^Poole^Dorset^BH15 1AA^GBR^H|01202 {:06}^PRN^PH||NOK^Next of kin^HL70131\r\
         ROL|1|AD|PP^Primary Care Provider^HL70443|G{:07}^Jones^Sarah^^^Dr|||||||Harbour Medical Practice^^^^^^^^^J81{:03}\r\
         PV1|1|I|Ward 4^Bay 2^Bed {}^Poole Hospital^^BED^Main|28b|||C006^Wolf^Kathy^^^Dr^^^DRNBR|||MED|||||||||V{offset}{n}^^^^visitid|||||||||||||||||||||||ARRIVED|||{time}\r\
         PV2|||R69^Observation for suspected condition^I10||||||||||||||||||||||||N\r\
         DG1|1||I10^Essential (primary) hypertension^I10|Essential hypertension|20240101|W\r\
         AL1|1|DA|{}^{}^L|{}|Rash and itching|20250101\r",
        n % 100,
        1 + n % 9,
        n % 10,
        ["M", "F"][usize::try_from(n % 2).unwrap_or(0)],
        1 + n % 200,
        1 + n % 40,
        n % 1_000_000,
        n % 1000,
        n % 10_000_000,
        1 + n % 200,
        1 + n % 40,
        n % 1_000_000,
        n % 10_000_000,
        n % 1000,
        1 + n % 30,
        ["PEN", "ASP", "LTX"][usize::try_from(n % 3).unwrap_or(0)],
        ["PENICILLIN", "ASPIRIN", "LATEX"][usize::try_from(n % 3).unwrap_or(0)],
        ["SV", "MO", "MI"][usize::try_from(n % 3).unwrap_or(0)],
    )
}

fn rate_line(name: &str, count: u64, elapsed: Duration, latencies: &mut [Duration]) -> String {
    latencies.sort();
    let at = |q: f64| {
        if latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies[i.min(latencies.len() - 1)]
    };
    format!(
        "{name:<48} {:>9.0} msg/s  n={count:<8} p50={:>9.1?} p99={:>9.1?}",
        count as f64 / elapsed.as_secs_f64(),
        at(0.5),
        at(0.99)
    )
}

/// Parse-only: the same messages parsed and mapped in this process, one core.
fn parse_baseline(bench: &BenchFeed) -> anyhow::Result<String> {
    let source = care_kernel::SourceId::parse(&bench.source)?;
    let messages: Vec<String> = (0..bench.messages.min(50_000))
        .map(|n| message(n, bench.offset))
        .collect();
    let bytes: usize = messages.iter().map(String::len).sum();
    let started = Instant::now();
    let mut commands = 0usize;
    for m in &messages {
        let parsed = care_hl7::Message::parse(m).map_err(|e| anyhow::anyhow!("{e}"))?;
        commands += care_feeds::hl7::map_message(&parsed, &source)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .len();
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(commands >= messages.len(), "every message maps");
    Ok(format!(
        "{} (mean {} bytes)",
        rate_line(
            "parse + map only (baseline, 1 core)",
            messages.len() as u64,
            elapsed,
            &mut []
        ),
        bytes / messages.len().max(1)
    ))
}

async fn read_ack(
    stream: &mut tokio::net::TcpStream,
    buffer: &mut Vec<u8>,
) -> anyhow::Result<String> {
    loop {
        if let Some(end) = buffer.windows(2).position(|w| w == [0x1c, 0x0d]) {
            let start = buffer.iter().position(|&b| b == 0x0b).unwrap_or(0);
            let ack = String::from_utf8_lossy(&buffer[start + 1..end]).into_owned();
            buffer.drain(..end + 2);
            return Ok(ack);
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("the listener closed the connection");
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

async fn mllp(bench: &BenchFeed, addr: &str) -> anyhow::Result<String> {
    let next = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..bench.connections.max(1) {
        let next = next.clone();
        let rejected = rejected.clone();
        let addr = addr.to_owned();
        let total = bench.messages;
        let offset = bench.offset;
        let in_flight = usize::from(bench.in_flight);
        tasks.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(&addr)
                .await
                .with_context(|| format!("connecting to MLLP at {addr}"))?;
            stream.set_nodelay(true)?;
            let mut buffer = Vec::new();
            let mut latencies = Vec::new();
            loop {
                let mut frames = Vec::new();
                let mut count = 0;
                while count < in_flight {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        break;
                    }
                    frames.push(0x0b);
                    frames.extend_from_slice(message(n, offset).as_bytes());
                    frames.extend_from_slice(&[0x1c, 0x0d]);
                    count += 1;
                }
                if count == 0 {
                    break;
                }
                let sent = Instant::now();
                stream.write_all(&frames).await?;
                for _ in 0..count {
                    let ack = read_ack(&mut stream, &mut buffer).await?;
                    latencies.push(sent.elapsed());
                    if !ack.contains("MSA|AA") {
                        rejected.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = started.elapsed();
    let not_accepted = rejected.load(Ordering::Relaxed);
    anyhow::ensure!(
        not_accepted == 0,
        "{not_accepted} messages were not accepted (AA)"
    );
    Ok(rate_line(
        &if bench.in_flight > 1 {
            format!(
                "MLLP, {} connections, {} in flight each",
                bench.connections, bench.in_flight
            )
        } else {
            format!("MLLP, {} connections, ACK per message", bench.connections)
        },
        latencies.len() as u64,
        elapsed,
        &mut latencies,
    ))
}

async fn http(bench: &BenchFeed, url: &str) -> anyhow::Result<String> {
    let client = reqwest::Client::new();
    let signed_in: serde_json::Value = client
        .post(format!("{url}/api/v1/sessions"))
        .json(&serde_json::json!({"username": bench.user, "password": bench.password}))
        .send()
        .await?
        .error_for_status()
        .context("signing in as the feed account")?
        .json()
        .await?;
    let token = signed_in["token"]
        .as_str()
        .context("no token in the sign-in answer")?
        .to_owned();
    let batch = bench.batch.max(1) as u64;
    let batches = bench.messages.div_ceil(batch);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..bench.connections.max(1) {
        let next = next.clone();
        let client = client.clone();
        let token = token.clone();
        let endpoint = format!("{url}/api/v1/feeds/{}/messages", bench.source);
        let offset = bench.offset.wrapping_add(50_000_000);
        let total = bench.messages;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut applied = 0u64;
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    break;
                }
                let body: String = (b * batch..((b + 1) * batch).min(total))
                    .map(|n| message(n, offset))
                    .collect();
                let sent = Instant::now();
                let report: serde_json::Value = client
                    .post(&endpoint)
                    .bearer_auth(&token)
                    .header("content-type", "application/hl7-v2")
                    .body(body)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                latencies.push(sent.elapsed());
                applied += report["applied"].as_u64().unwrap_or(0);
            }
            anyhow::Ok((latencies, applied))
        }));
    }
    let mut latencies = Vec::new();
    let mut applied = 0;
    for t in tasks {
        let (l, a) = t.await??;
        latencies.extend(l);
        applied += a;
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(
        applied == bench.messages,
        "{applied} of {} messages applied",
        bench.messages
    );
    Ok(format!(
        "{} (latency per batch of {batch})",
        rate_line(
            &format!("HTTP HL7 batches, {} connections", bench.connections),
            bench.messages,
            elapsed,
            &mut latencies,
        )
    ))
}

/// Runs the measurements asked for; returns one line each.
pub async fn run(bench: &BenchFeed) -> anyhow::Result<Vec<String>> {
    let mut lines = vec![parse_baseline(bench)?];
    if let Some(addr) = &bench.mllp {
        lines.push(mllp(bench, addr).await?);
    }
    if let Some(url) = &bench.url {
        lines.push(http(bench, url).await?);
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn bench_messages_are_about_a_kilobyte_and_map_to_demographics_and_an_allergy() {
        let source = care_kernel::SourceId::parse("demo-feed").unwrap();
        for n in [0, 1, 7, 99_999] {
            let m = super::message(n, 0);
            assert!((900..1400).contains(&m.len()), "{} bytes", m.len());
            let parsed = care_hl7::Message::parse(&m).unwrap();
            let commands = care_feeds::hl7::map_message(&parsed, &source).unwrap();
            assert_eq!(commands.len(), 2, "demographics and one allergy");
        }
    }
}
