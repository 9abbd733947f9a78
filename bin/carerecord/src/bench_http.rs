//! `carerecord bench-http`: a load client for a running server. It signs in, then for a
//! fixed time drives `GET /api/v1/people/{id}` (real policy, audit and database) and, in
//! the same run, the bare `GET /health` as the baseline, each with a number of concurrent
//! connections (closed loop: throughput), and optionally at a fixed rate (open loop:
//! latency at that rate). Figures go in docs/BENCHMARKS.md with the command.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use care_consent::ConsentLevel;
use care_person::VitalStatus;
use care_synthetic::Generator;

/// What to drive and how hard.
#[derive(Debug)]
pub struct BenchHttp {
    /// Server base URL.
    pub url: String,
    /// User to sign in as (a clinical role).
    pub user: String,
    /// Their password.
    pub password: String,
    /// Concurrent connections.
    pub concurrency: usize,
    /// Seconds per measurement.
    pub seconds: u64,
    /// Also measure latency at this fixed rate (requests/s), if given.
    pub rate: Option<u64>,
}

struct Outcome {
    name: String,
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Outcome {
    fn line(mut self) -> String {
        self.latencies.sort();
        let at = |q: f64| {
            let i = ((self.latencies.len() as f64 - 1.0) * q).round() as usize;
            self.latencies.get(i).copied().unwrap_or_default()
        };
        format!(
            "{:<44} {:>9.0} req/s  n={:<8} errors={:<5} p50={:>9.1?} p99={:>9.1?} max={:>9.1?}",
            self.name,
            self.requests as f64 / self.elapsed.as_secs_f64(),
            self.requests,
            self.errors,
            at(0.5),
            at(0.99),
            at(1.0)
        )
    }
}

/// Ids of living, participating people of the seeded dataset (whose summary a clinician
/// may read without asserting a basis).
fn readable_ids(generator: &Generator, people: u64, want: usize) -> Vec<String> {
    let today = generator.now().date_naive();
    let step = (people / (want as u64 * 2)).max(1);
    (0..people)
        .step_by(step as usize)
        .map(|i| generator.person(i))
        .filter(|p| {
            p.person.vital_status(today) == VitalStatus::Alive
                && p.consent
                    .as_ref()
                    .is_none_or(|c| c.level() == ConsentLevel::Participating)
        })
        .map(|p| p.person.id().to_string())
        .take(want)
        .collect()
}

async fn closed_loop(
    client: &reqwest::Client,
    name: String,
    urls: Arc<Vec<String>>,
    token: Arc<String>,
    concurrency: usize,
    duration: Duration,
) -> Outcome {
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let client = client.clone();
        let urls = urls.clone();
        let token = token.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut i = worker;
            while started.elapsed() < duration {
                let url = &urls[i % urls.len()];
                i = i.wrapping_add(concurrency);
                let t = Instant::now();
                let ok = match client.get(url).bearer_auth(token.as_str()).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                latencies.push(t.elapsed());
                if !ok {
                    errors += 1;
                }
                counter.fetch_add(1, Ordering::Relaxed);
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            latencies.extend(l);
            errors += e;
        }
    }
    Outcome {
        name,
        requests: counter.load(Ordering::Relaxed),
        errors,
        elapsed: started.elapsed(),
        latencies,
    }
}

async fn open_loop(
    client: &reqwest::Client,
    name: String,
    urls: Arc<Vec<String>>,
    token: Arc<String>,
    rate: u64,
    duration: Duration,
) -> Outcome {
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    let mut i = 0usize;
    while started.elapsed() < duration {
        ticker.tick().await;
        let client = client.clone();
        let url = urls[i % urls.len()].clone();
        let token = token.clone();
        i += 1;
        // Latency from when the request was due, so a stalled server cannot hide its
        // queue (no coordinated omission).
        let due = Instant::now();
        tasks.push(tokio::spawn(async move {
            let ok = match client.get(&url).bearer_auth(token.as_str()).send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            (due.elapsed(), ok)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        match t.await {
            Ok((l, ok)) => {
                latencies.push(l);
                if !ok {
                    errors += 1;
                }
            }
            Err(_) => errors += 1,
        }
    }
    Outcome {
        name,
        requests: latencies.len() as u64,
        errors,
        elapsed: started.elapsed(),
        latencies,
    }
}

/// Runs the benchmark; returns the report lines.
pub async fn run(b: &BenchHttp, generator: &Generator, people: u64) -> anyhow::Result<Vec<String>> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(b.concurrency.max(1))
        .build()?;
    let base = b.url.trim_end_matches('/');
    let signed_in: serde_json::Value = client
        .post(format!("{base}/api/v1/sessions"))
        .json(&serde_json::json!({"username": b.user, "password": b.password}))
        .send()
        .await
        .context("signing in")?
        .error_for_status()
        .context("signing in")?
        .json()
        .await?;
    let token = Arc::new(
        signed_in["token"]
            .as_str()
            .context("no token in the sign-in answer")?
            .to_owned(),
    );
    let ids = readable_ids(generator, people, 10_000);
    anyhow::ensure!(!ids.is_empty(), "no readable people in the dataset");
    let people_urls: Arc<Vec<String>> = Arc::new(
        ids.iter()
            .map(|id| format!("{base}/api/v1/people/{id}"))
            .collect(),
    );
    let health_urls = Arc::new(vec![format!("{base}/health")]);
    let duration = Duration::from_secs(b.seconds.max(1));
    // Warm up both paths.
    closed_loop(
        &client,
        String::new(),
        people_urls.clone(),
        token.clone(),
        b.concurrency,
        Duration::from_secs(1),
    )
    .await;
    let mut lines = vec![format!(
        "bench-http against {base}: {} concurrent connections, {} s per measurement, {} people ids",
        b.concurrency,
        duration.as_secs(),
        ids.len()
    )];
    let health = closed_loop(
        &client,
        "GET /health (baseline)".into(),
        health_urls.clone(),
        token.clone(),
        b.concurrency,
        duration,
    )
    .await;
    let summary = closed_loop(
        &client,
        "GET /api/v1/people/{id}".into(),
        people_urls.clone(),
        token.clone(),
        b.concurrency,
        duration,
    )
    .await;
    let ratio = (summary.requests as f64 / summary.elapsed.as_secs_f64())
        / (health.requests as f64 / health.elapsed.as_secs_f64()).max(f64::MIN_POSITIVE);
    lines.push(health.line());
    lines.push(summary.line());
    lines.push(format!(
        "person summary throughput = {:.0}% of the bare endpoint's",
        ratio * 100.0
    ));
    if let Some(rate) = b.rate {
        let fixed = open_loop(
            &client,
            format!("GET /api/v1/people/{{id}} at {rate}/s"),
            people_urls,
            token,
            rate,
            duration,
        )
        .await;
        lines.push(fixed.line());
    }
    Ok(lines)
}
