//! What the measuring examples and the Redis benchmark share: the demo's
//! tarot line (Stjärnlinjen AB, 0900-100 10 10, 29,90 kr per started minute)
//! and a call to it with both consent steps given.

use std::sync::Arc;

use callauth::domain::catalog::{Merchant, ServiceSpec};
use callauth::domain::decision::Consent;
use callauth::domain::{CallId, MerchantId, Money, Service, Tariff, E164};
use callauth::store::{CallSpec, Evidence, Store};

/// Creates the merchant and its tarot service in `store`.
pub async fn tarot_line<S: Store>(store: &S) -> anyhow::Result<(Merchant, Arc<Service>)> {
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
        active: true,
    };
    let service = store.upsert_service(&spec, 0).await?.service;
    Ok((merchant, service))
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
