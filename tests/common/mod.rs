//! Fixtures shared by the integration tests: a small catalogue, numbers and
//! call builders. Each test builds its own store, so tests run in parallel.
#![allow(dead_code)]

use std::sync::Arc;

use callauth::domain::catalog::{Merchant, ServiceSpec};
use callauth::domain::decision::Consent;
use callauth::domain::{CallId, MerchantId, Money, Service, Tariff, E164};
use callauth::store::{CallSpec, Evidence, Store, StorePolicy};

pub const T0: i64 = 1_763_900_000_000; // 2025-11-23T12:13:20Z

/// The IVR client the test calls come from.
pub const IVR: &str = "ivr-test";

pub fn policy() -> StorePolicy {
    StorePolicy::default()
}

pub fn n(s: &str) -> E164 {
    E164::parse(s).unwrap()
}

pub fn call_id(s: &str) -> CallId {
    CallId::parse(s).unwrap()
}

pub fn merchant(id: &str, name: &str) -> Merchant {
    Merchant {
        id: MerchantId::parse(id).unwrap(),
        name: name.into(),
        org_number: "556677-8899".into(),
        fee_basis_points: 1500,
        active: true,
    }
}

/// Tarot 29.90/min per started minute; legal 24.90/min with a 3-minute
/// minimum; chat 19.95/min per second; a second merchant's psychology line.
pub const TAROT: &str = "+469001001010";
pub const LEGAL: &str = "+46939203040";
pub const CHAT: &str = "+46944101010";
pub const PSYCH: &str = "+469005005050";
pub const MERCHANT: &str = "stjarnlinjen";
pub const OTHER_MERCHANT: &str = "radgivarna";

pub fn spec(
    number: &str,
    merchant: &str,
    name: &str,
    price_ore: i64,
    step: u32,
    min: u32,
) -> ServiceSpec {
    ServiceSpec {
        number: n(number),
        merchant_id: MerchantId::parse(merchant).unwrap(),
        name: name.into(),
        category: "tarot".into(),
        tariff: Tariff::new(Money::ore_unchecked(price_ore), step, min).unwrap(),
        reminder_fee: Money::sek(60),
        vat: callauth::domain::VatRate::STANDARD,
        active: true,
    }
}

pub async fn seed_catalog<S: Store>(s: &S) {
    s.upsert_merchant(&merchant(MERCHANT, "Stjärnlinjen AB"))
        .await
        .unwrap();
    s.upsert_merchant(&merchant(OTHER_MERCHANT, "Rådgivarna i Norden AB"))
        .await
        .unwrap();
    for sp in [
        spec(TAROT, MERCHANT, "Tarotlinjen", 2990, 60, 0),
        spec(LEGAL, MERCHANT, "Juristjouren", 2490, 60, 3),
        spec(CHAT, MERCHANT, "Chattlinjen", 1995, 1, 0),
        spec(PSYCH, OTHER_MERCHANT, "Samtalsstöd", 3490, 60, 0),
    ] {
        s.upsert_service(&sp, T0).await.unwrap();
    }
}

pub async fn service<S: Store>(s: &S, number: &str) -> Arc<Service> {
    s.catalog()
        .await
        .unwrap()
        .service(&n(number))
        .unwrap()
        .clone()
}

pub fn full_consent(service: &Service) -> Consent {
    Consent {
        age_confirmed: true,
        own_number_confirmed: true,
        step1_at_ms: T0,
        terms_accepted: true,
        step2_at_ms: T0 + 1000,
        terms_id: Some(service.terms.terms_id.clone()),
    }
}

pub fn call(id: &str, service: &Arc<Service>, consent: bool) -> CallSpec {
    CallSpec {
        call_id: call_id(id),
        service: service.clone(),
        terms: service.terms.clone(),
        consent: consent.then(|| full_consent(service)),
        evidence: Evidence {
            ivr_client: IVR.into(),
            ivr_id: "node-1".into(),
            line_ref: String::new(),
            number_withheld: false,
        },
    }
}
pub mod bgmax_writer;
pub mod certs;
pub mod pg;
pub mod redis;
pub mod server;
pub mod settle;
