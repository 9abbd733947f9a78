//! How fast the generator streams people, single-threaded:
//! `cargo run --release -p care-synthetic --example throughput [-- PEOPLE [SEED]]`
//! (default 1,000,000 people, seed 1). Prints people per second and what was generated.

#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::Instant;

use care_kernel::Timestamp;
use care_synthetic::Generator;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let people: u64 = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let seed: u64 = args.next().map_or(Ok(1), |a| a.parse())?;
    // A fixed `now`: the generator never reads the clock.
    let now = Timestamp::from_timestamp(1_772_000_000, 0)
        .ok_or_else(|| anyhow::anyhow!("fixed timestamp out of range"))?;
    let generator = Generator::new(seed, now)?;

    let started = Instant::now();
    let (mut alerts, mut referrals, mut consents) = (0u64, 0u64, 0u64);
    for person in generator.people(people) {
        alerts += person.alerts.len() as u64;
        referrals += person.referrals.len() as u64;
        consents += u64::from(person.consent.is_some());
        black_box(person);
    }
    let elapsed = started.elapsed();

    let rate = people as f64 / elapsed.as_secs_f64();
    println!(
        "{people} people, {alerts} alerts, {referrals} referrals ({} in all), {consents} consents \
         in {:.2} s: {rate:.0} people/s",
        alerts + referrals,
        elapsed.as_secs_f64()
    );
    Ok(())
}
