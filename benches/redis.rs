//! Redis-store benchmarks (`cargo bench --bench redis`). They need a Redis:
//! set CALLAUTH_BENCH_REDIS=redis://127.0.0.1:6379 (a key prefix of their own
//! is used and deleted afterwards); without it they print a note and run nothing.

use callauth::domain::{LimitChange, Money, E164};
use callauth::store::redis::{RedisConfig, RedisStore};
use callauth::store::{Store, StorePolicy};
use criterion::{criterion_group, criterion_main, Criterion};

#[path = "../examples/support/mod.rs"]
mod support;

fn redis_store(c: &mut Criterion) {
    let Ok(url) = std::env::var("CALLAUTH_BENCH_REDIS") else {
        eprintln!("benches/redis.rs: set CALLAUTH_BENCH_REDIS=redis://host:port to run the Redis benchmarks");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut config = RedisConfig::new(&url);
    config.prefix = format!("bench{}", std::process::id());
    let store = rt
        .block_on(RedisStore::connect(&config, StorePolicy::default()))
        .expect("redis");
    let numbers: Vec<E164> = (0..1000)
        .map(|i| E164::parse(&format!("+4672{:07}", i)).unwrap())
        .collect();
    let service = rt.block_on(async {
        let service = support::tarot_line(&store).await.unwrap();
        for n in &numbers {
            store.put_directory(n, true, "bench", 0).await.unwrap();
            // A limit so high that every benchmarked call is granted.
            let big = LimitChange::CreditDecision {
                limit: Money::sek(1_000_000),
                credit_check_reference: "bench".into(),
                decided_by: "bench".into(),
            };
            store.set_limit(n, &big, "bench", 0).await.unwrap();
        }
        service
    });
    let mut i = 0u64;
    c.bench_function("redis_store_authorize", |b| {
        b.to_async(&rt).iter(|| {
            i += 1;
            let n = numbers[(i % numbers.len() as u64) as usize].clone();
            let id = format!("a{i}");
            let (store, service) = (store.clone(), service.clone());
            async move {
                support::call_in_progress(&store, &n, &id, &service, 1_795_000_000_000)
                    .await
                    .unwrap()
            }
        })
    });
    let mut j = 0u64;
    c.bench_function("redis_store_call_cycle", |b| {
        b.to_async(&rt).iter(|| {
            j += 1;
            let n = numbers[(j % numbers.len() as u64) as usize].clone();
            let id = format!("c{j}");
            let (store, service) = (store.clone(), service.clone());
            async move {
                support::finished_call(&store, &n, &id, &service, 61, 1_795_000_000_000)
                    .await
                    .unwrap()
            }
        })
    });
    // The expiry sweep (library version 5: a list per second of expiry):
    // 100 pending holds made before each timed sweep, then one sweep that
    // expires them. Earlier than the calls above, so only these are due.
    let mut k = 0u64;
    c.bench_function("redis_store_sweep_100_due_holds", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (store, service, numbers) = (store.clone(), service.clone(), numbers.clone());
            k += 1;
            let round = k;
            async move {
                let t0 = 1_795_000_000_000 - 10_000_000;
                let mut timed = std::time::Duration::ZERO;
                for it in 0..iters {
                    for (x, number) in numbers.iter().take(100).enumerate() {
                        let id = format!("s{round}-{it}-{x}");
                        support::call_in_progress(&store, number, &id, &service, t0)
                            .await
                            .unwrap();
                    }
                    let start = std::time::Instant::now();
                    let expired = store.expire_due(t0 + 2_000_000, 1000).await.unwrap();
                    timed += start.elapsed();
                    assert_eq!(expired, 100);
                }
                timed
            }
        })
    });
    // Clean up the prefix.
    rt.block_on(async {
        let pattern = format!("{{{}:*", config.prefix);
        let mut cursor = 0u64;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(10_000);
            let (next, found): (u64, Vec<String>) = store.conn().query(&scan).await.unwrap();
            for chunk in found.chunks(500) {
                let mut del = redis::cmd("UNLINK");
                del.arg(chunk);
                let _: i64 = store.conn().query(&del).await.unwrap();
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
    });
}

criterion_group!(benches, redis_store);
criterion_main!(benches);
