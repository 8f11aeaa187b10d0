//! Settlement against a real Redis (the gateway's state store and its event
//! streams) and a real PostgreSQL (the ledger), each test isolated by its own
//! key prefix and its own database.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use callauth::domain::{Money, RecordId};
use callauth::settlement::ingest::consumer::{ConsumeError, ConsumerConfig, StreamConsumer};
use callauth::settlement::{ledger, sync::projector, SettlementPolicy};
use callauth::store::redis::RedisStore;
use callauth::store::{Store, StorePolicy, UsagePost};
use common::settle::World;
use common::*;

const A: &str = "+46701234567";

async fn world() -> World {
    World::new(T0, &[A], SettlementPolicy::default()).await
}

fn consumer(w: &World, name: &str) -> StreamConsumer<RedisStore> {
    StreamConsumer::new(
        w.settlement.clone(),
        w.store.clone(),
        ConsumerConfig {
            consumer: name.into(),
            partitions: ConsumerConfig::owned(StorePolicy::default().partitions, 0, 1),
            batch: 7,
            max_deliveries: 3,
            claim_idle: Duration::from_millis(1),
            poll_interval: Duration::from_millis(10),
            concurrency: 4,
        },
    )
}

/// A whole postpaid call: authorized, then `duration` seconds posted.
async fn call_and_post(w: &World, id: &str, service_no: &str, duration: u32) -> Money {
    let svc = service(&w.store, service_no).await;
    let r = w
        .store
        .authorize(&n(A), &call(id, &svc, true), T0)
        .await
        .unwrap();
    assert!(
        matches!(r.decision, callauth::domain::Decision::Allowed(_)),
        "{r:?}"
    );
    let u = UsagePost {
        merchant_id: svc.merchant_id.clone(),
        record_id: RecordId::parse(&format!("r-{id}")).unwrap(),
        call_id: call_id(id),
        service_number: svc.number.clone(),
        started_at_ms: T0,
        duration_seconds: duration,
    };
    match w.store.post_usage(&u, T0 + 1000).await.unwrap() {
        callauth::store::UsageOutcome::Applied(p) => p.charge,
        other => panic!("{other:?}"),
    }
}

async fn count(pool: &sqlx::PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_commit_once_even_after_a_crash_between_commit_and_ack() {
    let w = world().await;
    let mut charged = Money::ZERO;
    for i in 0..12 {
        charged += call_and_post(&w, &format!("c{i}"), TAROT, 30 + i * 10).await;
    }
    let in_streams = w.store.recent_events(10_000).await.unwrap().len() as i64;
    assert!(in_streams >= 25, "directory, consents, usage: {in_streams}");

    // The first worker commits a batch and dies before acknowledging it.
    let first = consumer(&w, "worker-1");
    first.crash_after_commit.store(true, Ordering::SeqCst);
    let crashed = first.drain().await;
    assert!(
        matches!(crashed, Err(ConsumeError::SimulatedCrash)),
        "{crashed:?}"
    );
    let committed_before_restart = count(&w.db.pool, "select count(*) from events").await;
    assert!(committed_before_restart > 0);

    // Restarted (same consumer name): it re-reads its pending entries first.
    let restarted = consumer(&w, "worker-1");
    restarted.drain().await.unwrap();
    assert_eq!(
        count(&w.db.pool, "select count(*) from events").await,
        in_streams,
        "every event once"
    );
    assert_eq!(
        count(&w.db.pool, "select count(*) from usage").await,
        12,
        "no duplicate CDR"
    );
    assert_eq!(count(&w.db.pool, "select count(*) from consents").await, 12);
    let unbilled = ledger::balance(
        &mut w.db.pool.acquire().await.unwrap(),
        &ledger::account::caller_unbilled(A),
    )
    .await
    .unwrap();
    assert_eq!(
        unbilled,
        charged.ore(),
        "the ledger holds exactly the posted charges"
    );
    assert_eq!(
        ledger::total(&mut w.db.pool.acquire().await.unwrap())
            .await
            .unwrap(),
        0,
        "books balance"
    );
    assert!(
        restarted.caught_up().await.unwrap(),
        "nothing pending or undelivered"
    );

    // A second worker with another name finds nothing left; a dead worker's
    // pending entries are claimed: simulate by crashing worker-2 mid-way.
    for i in 12..20 {
        call_and_post(&w, &format!("c{i}"), TAROT, 45).await;
    }
    let dying = consumer(&w, "worker-2");
    dying.crash_after_commit.store(true, Ordering::SeqCst);
    assert!(dying.drain().await.is_err());
    let other = consumer(&w, "worker-3");
    tokio::time::sleep(Duration::from_millis(5)).await;
    for p in 0..StorePolicy::default().partitions {
        other.reclaim(p).await.unwrap();
    }
    other.drain().await.unwrap();
    assert_eq!(count(&w.db.pool, "select count(*) from usage").await, 20);
    assert!(other.caught_up().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threshold_invoice_is_issued_at_once_and_applied_to_the_store() {
    let w = world().await;
    // 41 minutes of tarot at 29.90 = 1 225.90 SEK ≥ 80 % of 1 500.
    let charge = call_and_post(&w, "big", TAROT, 41 * 60).await;
    assert!(w.store.account(&n(A)).await.unwrap().threshold_reached);
    consumer(&w, "worker-1").drain().await.unwrap();

    let (id, kind, total, usage, fees, ocr): (i64, String, i64, i64, i64, String) = sqlx::query_as(
        "select id, kind, total_ore, usage_ore, fees_ore, ocr from invoices where number = $1",
    )
    .bind(A)
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(kind, "threshold");
    assert_eq!(usage, charge.ore());
    assert_eq!(fees, 3000, "paper invoice fee (no e-mail address on file)");
    assert_eq!(total, usage + fees);
    assert!(callauth::domain::luhn::is_valid(&ocr));
    let docs = count(
        &w.db.pool,
        "select count(*) from documents where kind = 'invoice'",
    )
    .await;
    assert_eq!(docs, 1);
    let pdf: Vec<u8> = sqlx::query_scalar("select pdf from documents where invoice_id = $1")
        .bind(id)
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
    assert!(pdf.starts_with(b"%PDF-1.4"));
    let text = String::from_utf8_lossy(&pdf);
    assert!(text.contains(&ocr), "the OCR is printed");
    assert!(
        !text.to_lowercase().contains("tarot"),
        "no category on the invoice"
    );

    // The projector moves the amount from unbilled to invoiced-unpaid in Redis.
    let before = w.store.account(&n(A)).await.unwrap();
    assert_eq!(before.unbilled, charge);
    let r = projector::flush(&w.settlement).await.unwrap();
    assert_eq!(r.applied, 1);
    assert_eq!(r.pending, 0);
    let after = w.store.account(&n(A)).await.unwrap();
    assert_eq!(after.unbilled, Money::ZERO);
    assert_eq!(after.invoiced_unpaid, Money::ore_unchecked(total));
    // Applying again is harmless.
    sqlx::query("update store_ops set applied_at = null")
        .execute(&w.db.pool)
        .await
        .unwrap();
    projector::flush(&w.settlement).await.unwrap();
    assert_eq!(
        w.store.account(&n(A)).await.unwrap().invoiced_unpaid,
        Money::ore_unchecked(total)
    );
    let _ = &w.clock;
}

/// `reconcile` and `run-once` must not take a partition's events from a
/// running worker (two consumers of one partition can commit a number's
/// events out of order): while a worker is live they wait for it, and only
/// when none runs do they commit the events themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_waits_for_running_workers_and_drains_only_when_none_runs() {
    let w = world().await;
    for i in 0..3 {
        call_and_post(&w, &format!("a{i}"), TAROT, 60).await;
    }
    let worker = consumer(&w, "worker-1");
    worker.drain().await.unwrap();
    assert_eq!(count(&w.db.pool, "select count(*) from usage").await, 3);

    // New events while the worker is live (it read a moment ago).
    for i in 0..3 {
        call_and_post(&w, &format!("b{i}"), TAROT, 60).await;
    }
    let cli = consumer(&w, "callauth-settlement-cli");
    assert_eq!(
        cli.live_consumers(Duration::from_secs(60)).await.unwrap(),
        vec!["worker-1".to_string()]
    );
    let waited = cli
        .drain_or_wait(Duration::from_secs(60), Duration::from_millis(300))
        .await;
    assert!(
        matches!(&waited, Err(ConsumeError::WorkersBehind { workers, .. }) if workers == "worker-1"),
        "{waited:?}"
    );
    assert_eq!(
        count(&w.db.pool, "select count(*) from usage").await,
        3,
        "the command took none of the worker's events"
    );

    // The worker catches up: the command returns at once, having consumed nothing.
    worker.drain().await.unwrap();
    assert_eq!(
        cli.drain_or_wait(Duration::from_secs(60), Duration::from_secs(5))
            .await
            .unwrap(),
        0
    );
    assert_eq!(count(&w.db.pool, "select count(*) from usage").await, 6);

    // No worker has read within the window: the command drains by itself.
    for i in 0..2 {
        call_and_post(&w, &format!("c{i}"), TAROT, 60).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(cli
        .live_consumers(Duration::from_millis(20))
        .await
        .unwrap()
        .is_empty());
    let drained = cli
        .drain_or_wait(Duration::from_millis(20), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(drained >= 4, "consents and usage of two calls: {drained}");
    assert_eq!(count(&w.db.pool, "select count(*) from usage").await, 8);
    assert!(cli.caught_up().await.unwrap());
}

/// Consumer names of pods that are gone are removed from the group once they
/// hold nothing; a consumer that still holds pending entries is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_that_are_gone_and_hold_nothing_are_pruned() {
    let w = world().await;
    for i in 0..3 {
        call_and_post(&w, &format!("a{i}"), TAROT, 60).await;
    }
    // An old pod consumed everything and went away.
    consumer(&w, "old-pod").drain().await.unwrap();
    // A dying pod left a batch pending.
    call_and_post(&w, "b0", TAROT, 60).await;
    let dying = consumer(&w, "dying-pod");
    dying.crash_after_commit.store(true, Ordering::SeqCst);
    assert!(dying.drain().await.is_err());

    tokio::time::sleep(Duration::from_millis(30)).await;
    let worker = consumer(&w, "worker-1");
    let mut removed = 0;
    for p in 0..StorePolicy::default().partitions {
        removed += worker
            .prune_consumers(p, Duration::from_millis(20))
            .await
            .unwrap();
    }
    assert!(removed >= 1, "old-pod removed where it held nothing");
    let left = worker
        .live_consumers(Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(!left.contains(&"old-pod".to_string()), "{left:?}");
    assert!(
        left.contains(&"dying-pod".to_string()),
        "a consumer with pending entries stays: {left:?}"
    );

    // Its pending entries are claimed; then it too is pruned.
    for p in 0..StorePolicy::default().partitions {
        worker.reclaim(p).await.unwrap();
    }
    worker.drain().await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    for p in 0..StorePolicy::default().partitions {
        worker
            .prune_consumers(p, Duration::from_millis(20))
            .await
            .unwrap();
    }
    let left = worker
        .live_consumers(Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert!(worker.caught_up().await.unwrap());
    assert_eq!(count(&w.db.pool, "select count(*) from usage").await, 4);
}
