//! The gateway's copy of the catalogue: one immutable snapshot behind an
//! `ArcSwap`, so every lookup on the hot path is a lock-free pointer load.
//!
//! Staleness is bounded: a refresher compares the store's catalogue version
//! every `refresh_interval` and reloads on change, so a change made through
//! another gateway is seen within one interval plus one round trip; a change
//! made through this gateway is seen at once. The age since the last
//! successful check is exported as `callauth_catalog_staleness_seconds`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::domain::CatalogSnapshot;
use crate::metrics as m;
use crate::store::{Store, StoreResult};

pub struct CatalogCache {
    current: ArcSwap<CatalogSnapshot>,
    checked_at_ms: AtomicI64,
}

impl Default for CatalogCache {
    fn default() -> Self {
        CatalogCache {
            current: ArcSwap::from_pointee(CatalogSnapshot::default()),
            checked_at_ms: AtomicI64::new(0),
        }
    }
}

impl CatalogCache {
    /// The current snapshot (lock-free).
    pub fn snapshot(&self) -> Arc<CatalogSnapshot> {
        self.current.load_full()
    }

    /// Reloads from `store` when its version differs; returns true on reload.
    pub async fn refresh<S: Store>(&self, store: &S, now_ms: i64) -> StoreResult<bool> {
        let version = store.catalog_version().await?;
        let reloaded = if version != self.current.load().version {
            let snapshot = store.catalog().await?;
            metrics::gauge!(m::CATALOG_VERSION).set(snapshot.version as f64);
            self.current.store(snapshot);
            true
        } else {
            false
        };
        self.checked_at_ms.store(now_ms, Ordering::Relaxed);
        metrics::gauge!(m::CATALOG_STALENESS_SECONDS).set(0.0);
        Ok(reloaded)
    }

    /// Updates the staleness gauge (called by the refresher when a check fails).
    pub fn report_staleness(&self, now_ms: i64) {
        let age_ms = now_ms - self.checked_at_ms.load(Ordering::Relaxed);
        metrics::gauge!(m::CATALOG_STALENESS_SECONDS).set(age_ms.max(0) as f64 / 1000.0);
    }
}
