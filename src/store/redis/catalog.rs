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

pub(super) async fn catalog_version(store: &RedisStore) -> StoreResult<u64> {
    let mut cmd = ::redis::cmd("GET");
    cmd.arg(&store.inner.keys.catalog()[0]);
    let v: Option<u64> = store
        .inner
        .conn
        .query(&cmd)
        .await
        .map_err(|e| store.unavailable(e))?;
    Ok(v.unwrap_or(0))
}

pub(super) async fn upsert_merchant(store: &RedisStore, merchant: &Merchant) -> StoreResult<()> {
    merchant
        .validate()
        .map_err(|e| StoreError::Rejected(e.to_string()))?;
    let json = serde_json::to_string(merchant).expect("merchants serialise");
    store
        .catalog_write(|_| Ok(vec![('m', merchant.id.to_string(), json.clone())]))
        .await
}

pub(super) async fn upsert_service(
    store: &RedisStore,
    spec: &ServiceSpec,
    now_ms: i64,
) -> StoreResult<ServiceChange> {
    let planned = std::sync::Mutex::new(None);
    store
        .catalog_write(|current| {
            let change = current
                .plan_service(spec, now_ms)
                .map_err(|e| StoreError::Rejected(e.to_string()))?;
            let record = ServiceRecord {
                number: change.service.number.clone(),
                merchant_id: change.service.merchant_id.clone(),
                name: change.service.name.clone(),
                category: change.service.category.clone(),
                active: change.service.active,
                terms_id: change.service.terms.terms_id.clone(),
            };
            let mut writes = Vec::new();
            if let Some(t) = &change.new_terms {
                writes.push((
                    't',
                    t.terms_id.to_string(),
                    serde_json::to_string(t.as_ref()).expect("terms serialise"),
                ));
            }
            writes.push((
                's',
                record.number.as_str().to_string(),
                serde_json::to_string(&record).expect("services serialise"),
            ));
            *planned.lock().expect("local lock") = Some(change);
            Ok(writes)
        })
        .await?;
    planned
        .into_inner()
        .expect("local lock")
        .ok_or_else(|| StoreError::Corrupt("service change was not planned".into()))
}
