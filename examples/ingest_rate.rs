//! Measures how many outbox events per second the settlement worker commits
//! to PostgreSQL (docs/performance.md records the output).
//!
//!     cargo run --release --example ingest_rate -- [events] [redis://127.0.0.1:6379]
//!
//! It creates a database of its own on the local PostgreSQL
//! (CALLAUTH_TEST_PG_URL, default postgres://postgres@127.0.0.1:5432/postgres),
//! generates realistic events — for each call a consent and a posted usage,
//! over 10 000 numbers — and measures (1) the commit path alone, batches of
//! 500 (BATCH) through `ingest::commit_batch`, and (2) with a Redis URL, the whole
//! path: the events in the partitions' streams, read by the consumer group,
//! committed and acknowledged, INGEST_CONCURRENCY (4) partitions at once as
//! the worker's --ingest-concurrency does. The database and the keys are
//! removed at the end.

use std::sync::Arc;
use std::time::Instant;

use callauth::clock::ManualClock;
use callauth::domain::Event;
use callauth::settlement::context::{connect, migrate};
use callauth::settlement::ingest::consumer::{ConsumerConfig, StreamConsumer};
use callauth::settlement::ingest::{commit_batch, Delivered};
use callauth::settlement::{Settlement, SettlementPolicy};
use callauth::store::memory::MemoryStore;
use callauth::store::partition::partition_of;
use callauth::store::redis::{RedisConfig, RedisStore};
use callauth::store::StorePolicy;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

#[path = "support/events.rs"]
mod events;

const T0: i64 = 1_795_000_000_000;

fn events(calls: usize, partitions: u32, tag: &str) -> Vec<Event> {
    let mut out = Vec::with_capacity(calls * 2);
    for i in 0..calls {
        let number = format!("+4670{:07}", i % 10_000);
        let p = partition_of(&number, partitions);
        let call_id = format!("{tag}-{i}");
        let (consent, usage) =
            events::call_events(&call_id, &number, p, T0 + i as i64, 30 + (i as u32 % 600));
        out.push(consent);
        out.push(usage);
    }
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200_000);
    let redis_url = std::env::args().nth(2);
    // Partitions the stream path commits at once (the worker's
    // --ingest-concurrency); the pool has one connection more.
    let concurrency: usize = std::env::var("INGEST_CONCURRENCY")
        .ok()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(4);
    // Events per batch (the worker's --batch).
    let batch: usize = std::env::var("BATCH")
        .ok()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(500);
    let admin = std::env::var("CALLAUTH_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db = format!("callauth_ingest_bench_{}", std::process::id());
    let mut admin_conn = PgConnection::connect(&admin).await?;
    admin_conn
        .execute(AssertSqlSafe(format!("create database \"{db}\"")))
        .await?;
    let url = format!("{}/{db}", &admin[..admin.rfind('/').unwrap()]);
    let result = run(&url, total, redis_url.as_deref(), concurrency, batch).await;
    admin_conn
        .execute(AssertSqlSafe(format!(
            "drop database if exists \"{db}\" with (force)"
        )))
        .await?;
    result
}

async fn run(
    url: &str,
    total: usize,
    redis_url: Option<&str>,
    concurrency: usize,
    batch: usize,
) -> anyhow::Result<()> {
    let pool = connect(url, concurrency as u32 + 1).await?;
    migrate(&pool).await?;
    let policy = StorePolicy::default();
    let clock = Arc::new(ManualClock::new(T0));

    // (1) The commit path alone.
    let s = Settlement::new(
        pool.clone(),
        MemoryStore::new(policy.clone()),
        SettlementPolicy::default(),
        clock.clone(),
    );
    let evs = events(total / 2, policy.partitions, "a");
    let start = Instant::now();
    for chunk in evs.chunks(batch) {
        let batch: Vec<Delivered> = chunk
            .iter()
            .enumerate()
            .map(|(i, e)| Delivered {
                partition: e.partition,
                stream_id: format!("0-{i}"),
                event: e.clone(),
            })
            .collect();
        let mut tx = pool.begin().await?;
        commit_batch(&mut tx, &s.policy, &batch, s.today(), s.now()).await?;
        tx.commit().await?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "commit path: {} events in {:.2} s = {:.0} events/s = {:.0} usage events/s, each with its consent (batches of {batch}, one connection)",
        evs.len(),
        secs,
        evs.len() as f64 / secs,
        evs.len() as f64 / 2.0 / secs
    );

    // (2) From Redis streams through the consumer group.
    if let Some(redis_url) = redis_url {
        let mut cfg = RedisConfig::new(redis_url);
        cfg.prefix = format!("ingestbench{}", std::process::id());
        // On a loaded machine (builds, a gateway under load beside it) a
        // 500-entry XREADGROUP can take longer than the default 250 ms.
        cfg.response_timeout = std::time::Duration::from_secs(10);
        let store = RedisStore::connect(&cfg, policy.clone()).await?;
        let result = stream_path(&pool, &store, total, concurrency, batch, &clock).await;
        remove_keys(&store, &cfg.prefix).await?;
        result?;
    }
    pool.close().await;
    Ok(())
}

/// (2) The stream path: the events XADDed to the partitions' streams, then
/// read, committed and acknowledged by the consumer group.
async fn stream_path(
    pool: &sqlx::PgPool,
    store: &RedisStore,
    total: usize,
    concurrency: usize,
    batch: usize,
    clock: &Arc<ManualClock>,
) -> anyhow::Result<()> {
    let policy = StorePolicy::default();
    let evs = events(total / 2, policy.partitions, "b");
    for chunk in evs.chunks(1000) {
        let mut pipe = redis::pipe();
        for e in chunk {
            pipe.cmd("XADD")
                .arg(store.keys().events(e.partition))
                .arg("*")
                .arg("e")
                .arg(e.to_json())
                .ignore();
        }
        store.conn().query_pipeline::<()>(&pipe).await?;
    }
    let s = Arc::new(Settlement::new(
        pool.clone(),
        store.clone(),
        SettlementPolicy::default(),
        clock.clone(),
    ));
    let consumer = StreamConsumer::new(
        s,
        store.clone(),
        ConsumerConfig {
            consumer: "bench".into(),
            partitions: (0..policy.partitions).collect(),
            batch,
            max_deliveries: 5,
            claim_idle: std::time::Duration::from_secs(60),
            poll_interval: std::time::Duration::from_millis(10),
            concurrency,
        },
    );
    consumer.ensure_groups().await?;
    let start = Instant::now();
    let n = consumer.drain().await?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "stream path: {n} events in {:.2} s = {:.0} events/s = {:.0} usage events/s, each with its consent (XREADGROUP, commit, XACK; batches of {batch}, {concurrency} partitions at once)",
        secs,
        n as f64 / secs,
        n as f64 / 2.0 / secs
    );
    Ok(())
}

/// Unlinks the run's keys (its prefix), whether the run succeeded or not.
async fn remove_keys(store: &RedisStore, prefix: &str) -> anyhow::Result<()> {
    let mut cursor = 0u64;
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(format!("{{{prefix}:*"))
            .arg("COUNT")
            .arg(1000);
        let (next, keys): (u64, Vec<String>) = store.conn().query(&scan).await?;
        for k in keys {
            let mut del = redis::cmd("UNLINK");
            del.arg(k);
            store.conn().query::<i64>(&del).await?;
        }
        cursor = next;
        if cursor == 0 {
            return Ok(());
        }
    }
}
