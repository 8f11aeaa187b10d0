//! Measures what callauth's state costs in Redis, with `MEMORY USAGE` and the
//! growth of `used_memory` (docs/redis.md records the output).
//!
//!     cargo run --release --example redis_memory -- redis://127.0.0.1:6379 [accounts]
//!
//! It writes under a fresh key prefix and deletes everything it wrote at the end.

use callauth::domain::E164;
use callauth::store::redis::{RedisConfig, RedisStore};
use callauth::store::{Store, StorePolicy};

mod support;

async fn used_memory(store: &RedisStore) -> i64 {
    let mut cmd = redis::cmd("INFO");
    cmd.arg("memory");
    let info: String = store.conn().query(&cmd).await.unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn memory_usage(store: &RedisStore, key: &str) -> i64 {
    let mut cmd = redis::cmd("MEMORY");
    cmd.arg("USAGE").arg(key).arg("SAMPLES").arg(0);
    store
        .conn()
        .query::<Option<i64>>(&cmd)
        .await
        .unwrap()
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let accounts: usize = std::env::args()
        .nth(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    let mut config = RedisConfig::new(&url);
    config.prefix = format!("memtest{}", std::process::id());
    let policy = StorePolicy::default();
    let partitions = policy.partitions;
    let store = RedisStore::connect(&config, policy).await?;
    let keys = store.keys().clone();

    let service = support::tarot_line(&store).await?;
    let now = 1_795_000_000_000;
    let number = |i: usize| E164::parse(&format!("+4670{:07}", i)).unwrap();

    // 1. Accounts with one posted call each (the typical state of a caller).
    let before = used_memory(&store).await;
    for i in 0..accounts {
        let n = number(i);
        store.put_directory(&n, true, "memtest", now).await?;
        support::finished_call(&store, &n, &format!("m{i}"), &service, 185, now).await?;
    }
    let after_accounts = used_memory(&store).await;
    // 2. One pending hold per account (a call in progress).
    for i in 0..accounts {
        support::call_in_progress(&store, &number(i), &format!("p{i}"), &service, now).await?;
    }
    let after_holds = used_memory(&store).await;

    let p0 = callauth::store::partition::partition_of(number(0).as_str(), partitions);
    let account_key = keys.account(p0, number(0).as_str());
    let posted_hold = keys.hold(p0, "m0");
    let pending_hold = keys.hold(p0, "p0");
    let call_key = keys.call(
        callauth::store::partition::partition_of("p0", partitions),
        "p0",
    );
    let mut xlen = 0i64;
    let mut stream_bytes = 0i64;
    for p in 0..partitions {
        let mut cmd = redis::cmd("XLEN");
        cmd.arg(keys.events(p));
        xlen += store.conn().query::<i64>(&cmd).await?;
        stream_bytes += memory_usage(&store, &keys.events(p)).await;
    }

    println!("accounts measured: {accounts} (Redis at {url})");
    println!(
        "MEMORY USAGE account hash (one posted call):  {} bytes",
        memory_usage(&store, &account_key).await
    );
    println!(
        "MEMORY USAGE posted hold (kept 72 h):          {} bytes",
        memory_usage(&store, &posted_hold).await
    );
    println!(
        "MEMORY USAGE pending hold:                     {} bytes",
        memory_usage(&store, &pending_hold).await
    );
    println!(
        "MEMORY USAGE call index entry:                 {} bytes",
        memory_usage(&store, &call_key).await
    );
    println!(
        "event streams: {xlen} entries, {} bytes per entry",
        if xlen > 0 { stream_bytes / xlen } else { 0 }
    );
    let per_account = (after_accounts - before) / accounts as i64;
    let per_hold = (after_holds - after_accounts) / accounts as i64;
    println!("used_memory growth per account with one posted call (all keys and events): {per_account} bytes");
    println!("used_memory growth per additional pending hold (hold, index, expiry entry, consent event): {per_hold} bytes");

    // Clean up everything under the prefix.
    let pattern = format!("{{{}:*", config.prefix);
    let mut cursor = 0u64;
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(10_000);
        let (next, found): (u64, Vec<String>) = store.conn().query(&scan).await?;
        for chunk in found.chunks(500) {
            let mut del = redis::cmd("UNLINK");
            del.arg(chunk);
            store.conn().query::<i64>(&del).await?;
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    Ok(())
}
