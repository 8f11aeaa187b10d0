//! What the measuring examples and the Redis benchmark share: the demo's
//! tarot line (Stjärnlinjen AB, 0900-100 10 10, 29,90 kr per started minute)
//! and a call to it with both consent steps given.

use std::sync::Arc;

use callauth::domain::catalog::{Merchant, ServiceSpec};
use callauth::domain::decision::Consent;
use callauth::domain::{CallId, MerchantId, Money, RecordId, Service, Tariff, E164};
use callauth::store::{CallSpec, Evidence, Store, UsagePost};

/// Creates the merchant and its tarot service in `store`.
pub async fn tarot_line<S: Store>(store: &S) -> anyhow::Result<Arc<Service>> {
    let merchant = Merchant {
        id: MerchantId::parse("stjarnlinjen")?,
        name: "Stjärnlinjen AB".into(),
        org_number: String::new(),
        fee_basis_points: 1500,
        active: true,
    };
    store.upsert_merchant(&merchant).await?;
    let spec = ServiceSpec {
        number: E164::parse("0900-100 10 10")?,
        merchant_id: merchant.id.clone(),
        name: "Tarotlinjen".into(),
        category: "tarot".into(),
        tariff: Tariff::new(Money::ore_unchecked(2990), 60, 0)?,
        reminder_fee: Money::sek(60),
        vat: callauth::domain::VatRate::STANDARD,
        active: true,
    };
    Ok(store.upsert_service(&spec, 0).await?.service)
}

/// A call `id` to `service` whose caller confirmed age and price.
pub fn consented_call(id: &str, service: &Arc<Service>) -> CallSpec {
    CallSpec {
        call_id: CallId::parse(id).expect("a valid call id"),
        service: service.clone(),
        terms: service.terms.clone(),
        consent: Some(Consent {
            age_confirmed: true,
            own_number_confirmed: true,
            step1_at_ms: 1,
            terms_accepted: true,
            step2_at_ms: 2,
            terms_id: Some(service.terms.terms_id.clone()),
        }),
        evidence: Evidence {
            ivr_client: "ivr-1".into(),
            ivr_id: "node-1".into(),
            line_ref: String::new(),
            number_withheld: false,
        },
    }
}

/// A whole call from `number`: Authorize with consent, then its usage
/// (`seconds` long) posted, as the merchant would report it.
pub async fn finished_call<S: Store>(
    store: &S,
    number: &E164,
    id: &str,
    service: &Arc<Service>,
    seconds: u32,
    now_ms: i64,
) -> anyhow::Result<()> {
    let call = consented_call(id, service);
    store.authorize(number, &call, now_ms).await?;
    store
        .post_usage(
            &UsagePost {
                merchant_id: service.merchant_id.clone(),
                record_id: RecordId::parse("r")?,
                call_id: call.call_id,
                service_number: service.number.clone(),
                started_at_ms: now_ms,
                duration_seconds: seconds,
            },
            now_ms,
        )
        .await?;
    Ok(())
}

/// A call in progress from `number`: authorized with consent, not yet ended
/// (its hold is pending).
pub async fn call_in_progress<S: Store>(
    store: &S,
    number: &E164,
    id: &str,
    service: &Arc<Service>,
    now_ms: i64,
) -> anyhow::Result<()> {
    store
        .authorize(number, &consented_call(id, service), now_ms)
        .await?;
    Ok(())
}
