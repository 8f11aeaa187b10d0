//! What the Redis store says about itself: readiness (the Function library
//! loaded at the expected version, the recorded store policy unchanged),
//! the pending holds and outbox lengths per partition, and the most recent
//! events (for `callauthctl` and the runbook).

use super::*;

pub(super) async fn recent_events(store: &RedisStore, max: usize) -> StoreResult<Vec<Event>> {
    // Oldest first within each partition (as appended), then by time.
    let mut all = Vec::new();
    for p in 0..store.inner.policy.partitions {
        let mut cmd = ::redis::cmd("XREVRANGE");
        cmd.arg(store.inner.keys.events(p))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(max);
        let entries = array(
            store
                .inner
                .conn
                .query::<Value>(&cmd)
                .await
                .map_err(|e| store.unavailable(e))?,
        )?;
        for entry in entries.into_iter().rev() {
            let parts = array(entry)?;
            let fields = parts.get(1).map(flat_map).unwrap_or_default();
            if let Some(json) = fields.get("e") {
                let e = Event::from_json(json)
                    .map_err(|err| StoreError::Corrupt(format!("event {json}: {err}")))?;
                all.push(e);
            }
        }
    }
    all.sort_by_key(|e| e.at_ms);
    let skip = all.len().saturating_sub(max);
    Ok(all.split_off(skip))
}

pub(super) async fn stats(store: &RedisStore) -> StoreResult<StoreStats> {
    let mut stats = StoreStats::default();
    for p in 0..store.inner.policy.partitions {
        // The pending holds: library version 5's count, and those version 4
        // made, still in its sorted set until they end.
        let mut n = ::redis::cmd("GET");
        n.arg(store.inner.keys.pending_count(p));
        let mut z = ::redis::cmd("ZCARD");
        z.arg(store.inner.keys.expiry_v4(p));
        let mut x = ::redis::cmd("XLEN");
        x.arg(store.inner.keys.events(p));
        let (pending, pending_v4, len) = tokio::join!(
            store.inner.conn.query::<Option<i64>>(&n),
            store.inner.conn.query::<u64>(&z),
            store.inner.conn.query::<u64>(&x)
        );
        let pending = pending.map_err(|e| store.unavailable(e))?.unwrap_or(0);
        let pending = u64::try_from(pending).map_err(|_| {
            StoreError::Corrupt(format!("partition {p} counts {pending} pending holds"))
        })?;
        stats.pending_holds += pending + pending_v4.map_err(|e| store.unavailable(e))?;
        stats
            .outbox_len
            .push(len.map_err(|e| store.unavailable(e))?);
    }
    Ok(stats)
}

pub(super) async fn ready(store: &RedisStore) -> Result<(), NotReady> {
    if let Err(e) = store.check_version().await {
        // The library is gone (e.g. a Redis restarted without
        // persistence): load it again, stay not ready until it is.
        if store.inner.ready.swap(false, Ordering::Relaxed) {
            tracing::warn!(error = %e, "redis function library check failed");
        }
        let missing =
            e.to_string().contains("Function not found") || e.to_string().contains("version");
        if !missing {
            return Err(NotReady::Unreachable);
        }
        if let Err(e) = store.load_functions().await {
            tracing::warn!(error = %e, "reloading the redis function library failed");
            return Err(NotReady::Unreachable);
        }
    }
    let recorded = store.recorded_policy().await.map_err(|e| {
        tracing::warn!(error = %e, "reading the state store's deployment record failed");
        NotReady::Unreachable
    })?;
    match recorded {
        None => Err(NotReady::Empty),
        Some(fp) if !store.inner.policy.differences(&fp).is_empty() => Err(NotReady::Foreign),
        Some(_) => {
            store.inner.ready.store(true, Ordering::Relaxed);
            Ok(())
        }
    }
}
