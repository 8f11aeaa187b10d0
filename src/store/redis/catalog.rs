//! The catalogue in Redis: merchants, services and immutable terms versions
//! in three hashes beside a version counter, read in one consistent
//! Function call and written with optimistic concurrency (`catalog_apply`
//! applies a plan only if the version is still the one it was made against).

use super::*;

/// A service as stored in the catalogue hash (its terms are stored apart).
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct ServiceRecord {
    pub(super) number: E164,
    pub(super) merchant_id: MerchantId,
    pub(super) name: String,
    pub(super) category: String,
    pub(super) active: bool,
    pub(super) terms_id: TermsId,
}

impl RedisStore {
    pub(super) async fn catalog_write(
        &self,
        build: impl Fn(&CatalogSnapshot) -> StoreResult<Vec<(char, String, String)>>,
    ) -> StoreResult<()> {
        // Optimistic concurrency: plan against a fresh read, apply if nobody wrote in between.
        for _ in 0..10 {
            let current = self.load_catalog().await?;
            let writes = build(&current)?;
            let mut args = vec![current.version.to_string()];
            for (kind, key, json) in writes {
                args.push(kind.to_string());
                args.push(key);
                args.push(json);
            }
            let v = int(&self
                .fcall("catalog_apply", &self.inner.keys.catalog(), args)
                .await?)?;
            if v >= 0 {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable(
            "the catalogue kept changing under a write; try again".into(),
        ))
    }

    pub(super) async fn load_catalog(&self) -> StoreResult<CatalogSnapshot> {
        let v = array(
            self.fcall_ro("catalog_read", &self.inner.keys.catalog(), vec![])
                .await?,
        )?;
        if v.len() != 4 {
            return Err(StoreError::Corrupt("catalog_read answered badly".into()));
        }
        let version = u64::try_from(int(&v[0])?)
            .map_err(|_| StoreError::Corrupt("a negative catalogue version".into()))?;
        let parse = |what: &str, e: serde_json::Error| {
            StoreError::Corrupt(format!("catalogue {what}: {e}"))
        };
        let mut snap = CatalogSnapshot {
            version,
            ..Default::default()
        };
        for (_, json) in flat_map(&v[1]) {
            let m: Merchant = serde_json::from_str(&json).map_err(|e| parse("merchant", e))?;
            snap.merchants.insert(m.id.clone(), Arc::new(m));
        }
        for (_, json) in flat_map(&v[3]) {
            let t: Terms = serde_json::from_str(&json).map_err(|e| parse("terms", e))?;
            snap.terms.insert(t.terms_id.clone(), Arc::new(t));
        }
        for (_, json) in flat_map(&v[2]) {
            let s: ServiceRecord = serde_json::from_str(&json).map_err(|e| parse("service", e))?;
            let terms = snap.terms.get(&s.terms_id).cloned().ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "service {} points at missing terms",
                    s.number.as_str()
                ))
            })?;
            snap.services.insert(
                s.number.clone(),
                Arc::new(Service {
                    number: s.number,
                    merchant_id: s.merchant_id,
                    name: s.name,
                    category: s.category,
                    active: s.active,
                    terms,
                }),
            );
        }
        Ok(snap)
    }
}
