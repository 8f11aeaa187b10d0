//! Prepaid codes in Redis (SPEC R17): issuing a code in the partition of its
//! purchase reference (so the idempotency key and the code share a slot),
//! topping one up, and reading one. The code's secret is never stored: only
//! its keyed hash (the code id).

use super::*;

pub(super) async fn issue_prepaid(
    store: &RedisStore,
    hasher: &CodeHasher,
    amount: Money,
    purchase_ref: &Reference,
    now_ms: i64,
) -> StoreResult<IssueOutcome> {
    check_prepaid_amount(amount)?;
    let k = &store.inner.keys;
    // The reference key and the code must share a slot: draw codes until
    // one falls in the reference's partition (expected `partitions` draws
    // of one HMAC each). This costs log2(partitions) bits of the code's
    // ~50 bits of randomness.
    let p = store.reference_partition(purchase_ref);
    for _ in 0..16 {
        let (code, id) = loop {
            let code = PrepaidCode::generate();
            let id = hasher.id(&code);
            if store.partition(id.as_str()) == p {
                break (code, id);
            }
        };
        let v = array(
            store
                .fcall(
                    "issue_code",
                    &[
                        k.reference(p, purchase_ref.as_str()),
                        k.code(p, id.as_str()),
                        k.events(p),
                    ],
                    vec![
                        now_ms.to_string(),
                        id.to_string(),
                        lua_safe(amount, "amount")?.to_string(),
                        purchase_ref.to_string(),
                        p.to_string(),
                    ],
                )
                .await?,
        )?;
        match int_at(&v, 0)? {
            1 => {
                return Ok(IssueOutcome::Issued {
                    code,
                    view: PrepaidView {
                        code_id: id,
                        balance: amount,
                        pending: Money::ZERO,
                        issued_at_ms: now_ms,
                    },
                })
            }
            2 => {
                let existing = CodeId::from_stored(&text(at(&v, 1)?)?)
                    .ok_or_else(|| StoreError::Corrupt("purchase without a code id".into()))?;
                let view = store.prepaid(&existing).await?.ok_or_else(|| {
                    StoreError::Corrupt(format!("purchase {purchase_ref} has no code"))
                })?;
                return Ok(IssueOutcome::AlreadyIssued(view));
            }
            -1 => return Err(StoreError::Rejected(text(at(&v, 1)?)?)),
            -2 => continue, // an id collision: draw again
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unexpected issue_code answer {other}"
                )))
            }
        }
    }
    Err(StoreError::Unavailable(
        "could not draw a fresh prepaid code".into(),
    ))
}

pub(super) async fn top_up_prepaid(
    store: &RedisStore,
    code: &CodeId,
    amount: Money,
    topup_ref: &Reference,
    now_ms: i64,
) -> StoreResult<PrepaidView> {
    check_prepaid_amount(amount)?;
    let k = &store.inner.keys;
    if store.prepaid(code).await?.is_none() {
        return Err(StoreError::NotFound("prepaid code".into()));
    }
    // The reference first (its own slot): a reference pays for one thing.
    let r = store.reference_partition(topup_ref);
    let claimed = store
        .fcall(
            "claim_reference",
            &[k.reference(r, topup_ref.as_str())],
            vec![
                code.to_string(),
                lua_safe(amount, "amount")?.to_string(),
                topup_ref.to_string(),
            ],
        )
        .await?;
    if let Value::Array(a) = &claimed {
        return Err(StoreError::Rejected(text(at(a, 1)?)?));
    }
    let p = store.partition(code.as_str());
    let v = store
        .fcall(
            "top_up",
            &[k.code(p, code.as_str()), k.events(p)],
            vec![
                now_ms.to_string(),
                code.to_string(),
                lua_safe(amount, "amount")?.to_string(),
                topup_ref.to_string(),
                p.to_string(),
            ],
        )
        .await?;
    if int(&v)? == 0 {
        return Err(StoreError::NotFound("prepaid code".into()));
    }
    store
        .prepaid(code)
        .await?
        .ok_or_else(|| StoreError::NotFound("prepaid code".into()))
}

pub(super) async fn prepaid(store: &RedisStore, code: &CodeId) -> StoreResult<Option<PrepaidView>> {
    let p = store.partition(code.as_str());
    let c = store
        .hgetall(&store.inner.keys.code(p, code.as_str()))
        .await?;
    if c.is_empty() {
        return Ok(None);
    }
    Ok(Some(PrepaidView {
        code_id: code.clone(),
        balance: Money::ore_unchecked(counter(&c, "bal")?),
        pending: Money::ore_unchecked(counter(&c, "pd")?),
        issued_at_ms: counter(&c, "iss")?,
    }))
}
