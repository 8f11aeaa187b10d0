//! Measures what the embedded store costs in memory for many numbers, from
//! the process's resident set (docs/performance.md records the output).
//!
//!     cargo run --release --example memory_footprint -- [numbers]
//!
//! Default 1 000 000 numbers. Three states, measured one after the other:
//! 1. every number in the directory (an account with no calls),
//! 2. every number with one finished call (unbilled money, the posted hold
//!    kept for the retention period so that retries are recognised),
//! 3. every number with a call in progress as well (a pending hold).
//!
//! The outbox ring is bounded (16 partitions × 10 000 events by default) and
//! does not grow with the number of callers, so the phases run with a ring of
//! one event per partition and a full default ring is measured on its own.

use std::time::Instant;

use callauth::domain::E164;
use callauth::store::memory::{MemoryStore, DEFAULT_OUTBOX_CAPACITY};
use callauth::store::outbox::Outbox;
use callauth::store::{Store, StorePolicy};

mod support;

/// The resident set of this process in bytes (Linux `/proc/self/status`).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let numbers: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let policy = StorePolicy::default();
    let partitions = policy.partitions;
    let store = MemoryStore::with_outbox(policy, Outbox::new(partitions, 1));

    let service = support::tarot_line(&store).await?;
    let now = 1_795_000_000_000;
    let number = |i: usize| E164::parse(&format!("+4670{:07}", i)).unwrap();

    let base = rss_bytes();
    let started = Instant::now();
    for i in 0..numbers {
        store
            .put_directory(&number(i), true, "memtest", now)
            .await?;
    }
    let directory = rss_bytes();
    let directory_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    for i in 0..numbers {
        let n = number(i);
        support::finished_call(&store, &n, &format!("m{i}"), &service, 185, now).await?;
    }
    let posted = rss_bytes();
    let posted_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    for i in 0..numbers {
        support::call_in_progress(&store, &number(i), &format!("p{i}"), &service, now).await?;
    }
    let pending = rss_bytes();
    let pending_s = started.elapsed().as_secs_f64();

    // The bounded outbox, measured on its own: a default ring filled with
    // copies of the events the phases produced (consents and usage posted).
    let samples = store.recent_events(usize::MAX).await?;
    let ring = Outbox::new(partitions, DEFAULT_OUTBOX_CAPACITY);
    let outbox_events = partitions as usize * DEFAULT_OUTBOX_CAPACITY;
    let before_ring = rss_bytes();
    for i in 0..outbox_events {
        let mut event = samples[i % samples.len()].clone();
        event.partition = (i % partitions as usize) as u32;
        ring.append(event);
    }
    let full_ring = rss_bytes();

    let per = |delta: u64| delta as f64 / numbers as f64;
    println!("embedded store, {numbers} numbers, {partitions} partitions");
    println!(
        "  baseline resident set                {:>9.1} MiB",
        mib(base)
    );
    println!(
        "  1. directory entries                 {:>9.1} MiB  {:>6.0} B/number  ({directory_s:.1} s)",
        mib(directory - base),
        per(directory - base)
    );
    println!(
        "  2. + one finished call each          {:>9.1} MiB  {:>6.0} B/number  ({posted_s:.1} s)",
        mib(posted - directory),
        per(posted - directory)
    );
    println!(
        "  3. + one pending hold each           {:>9.1} MiB  {:>6.0} B/number  ({pending_s:.1} s)",
        mib(pending - posted),
        per(pending - posted)
    );
    println!(
        "  total                                {:>9.1} MiB  {:>6.0} B/number",
        mib(pending - base),
        per(pending - base)
    );
    println!(
        "  outbox ring, full ({outbox_events} events) {:>9.1} MiB  {:>6.0} B/event   (fixed; not per number)",
        mib(full_ring - before_ring),
        (full_ring - before_ring) as f64 / outbox_events as f64
    );
    drop(ring);
    Ok(())
}
