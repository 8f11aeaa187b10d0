//! Benchmarks of the pure core and the embedded store (issue 2; numbers in
//! docs/performance.md). `cargo bench --bench core`.

use callauth::domain::catalog::{CatalogSnapshot, Merchant, ServiceSpec};
use callauth::domain::decision::{
    decide_postpaid, AccountSnapshot, Consent, Directory, GrantPolicy,
};
use callauth::domain::{rate, CallId, MerchantId, Money, Tariff, E164};
use callauth::store::memory::MemoryStore;
use callauth::store::{CallSpec, Evidence, Store, StorePolicy, UsagePost};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::hint::black_box;

fn catalog() -> (CatalogSnapshot, ServiceSpec) {
    let merchant = Merchant {
        id: MerchantId::parse("stjarnlinjen").unwrap(),
        name: "Stjärnlinjen AB".into(),
        org_number: String::new(),
        fee_basis_points: 1500,
        active: true,
    };
    let spec = ServiceSpec {
        number: E164::parse("0900-100 10 10").unwrap(),
        merchant_id: merchant.id.clone(),
        name: "Tarotlinjen".into(),
        category: "tarot".into(),
        tariff: Tariff::new(Money::ore_unchecked(2990), 60, 2).unwrap(),
        reminder_fee: Money::sek(60),
        vat: callauth::domain::VatRate::STANDARD,
        active: true,
    };
    (CatalogSnapshot::default().with_merchant(merchant), spec)
}

fn pure_core(c: &mut Criterion) {
    let (cat, spec) = catalog();
    let change = cat.plan_service(&spec, 0).unwrap();
    let terms = change.service.terms.clone();
    let account = AccountSnapshot {
        directory: Directory::Registered,
        holder_blocked: false,
        credit_blocked: false,
        overdue_blocked: false,
        limit: Money::sek(1500),
        unbilled: Money::sek(300),
        invoiced_unpaid: Money::ZERO,
        pending: Money::sek(100),
    };
    let consent = Consent {
        age_confirmed: true,
        own_number_confirmed: true,
        step1_at_ms: 0,
        terms_accepted: true,
        step2_at_ms: 0,
        terms_id: Some(terms.terms_id.clone()),
    };
    let policy = GrantPolicy {
        quota_seconds: 900,
        max_call_seconds: 14_400,
    };
    c.bench_function("decide_postpaid+rate", |b| {
        b.iter(|| {
            let d = decide_postpaid(
                black_box(&account),
                black_box(&terms),
                Some(black_box(&consent)),
                &policy,
            );
            let r = rate(&terms.tariff, black_box(187));
            (d, r)
        })
    });
    c.bench_function("rate_per_second", |b| {
        let t = Tariff::new(Money::ore_unchecked(1995), 1, 0).unwrap();
        b.iter(|| rate(&t, black_box(3601)))
    });
    c.bench_function("e164_parse_national", |b| {
        b.iter(|| E164::parse(black_box("070-123 45 67")))
    });
    c.bench_function("e164_parse_e164", |b| {
        b.iter(|| E164::parse(black_box("+46701234567")))
    });
}

/// The embedded store in a steady state: each iteration is one whole call
/// (authorize with consent, then usage posted), the clock advances 1 ms per
/// call, and finished calls are purged after 10 s as the sweeper would, so
/// the maps stay at a realistic size instead of growing for the whole run.
fn memory_store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = MemoryStore::new(StorePolicy {
        hold_retention_ms: 10_000,
        ..StorePolicy::default()
    });
    let (cat, spec) = catalog();
    let service = rt.block_on(async {
        let merchant = cat.merchants.values().next().unwrap().as_ref().clone();
        store.upsert_merchant(&merchant).await.unwrap();
        store.upsert_service(&spec, 0).await.unwrap().service
    });
    let numbers: Vec<E164> = (0..100_000)
        .map(|i| E164::parse(&format!("+4670{:07}", i)).unwrap())
        .collect();
    rt.block_on(async {
        for n in &numbers {
            store.put_directory(n, true, "bench", 0).await.unwrap();
        }
    });
    let consent = Consent {
        age_confirmed: true,
        own_number_confirmed: true,
        step1_at_ms: 0,
        terms_accepted: true,
        step2_at_ms: 0,
        terms_id: Some(service.terms.terms_id.clone()),
    };
    let call = |i: u64, consent: Option<Consent>| CallSpec {
        call_id: CallId::parse(&format!("c{i}")).unwrap(),
        service: service.clone(),
        terms: service.terms.clone(),
        consent,
        evidence: Evidence::default(),
    };

    let mut i = 0u64;
    c.bench_function("memory_store_authorize_without_consent", |b| {
        b.to_async(&rt).iter_batched(
            || {
                i += 1;
                (
                    numbers[(i % numbers.len() as u64) as usize].clone(),
                    call(i, None),
                )
            },
            |(n, spec)| {
                let store = store.clone();
                async move { store.authorize(&n, &spec, 1).await.unwrap() }
            },
            BatchSize::SmallInput,
        )
    });

    let mut now = 1i64;
    c.bench_function("memory_store_call_cycle", |b| {
        b.to_async(&rt).iter_batched(
            || {
                now += 1;
                let k = now as u64;
                let n = numbers[(k % numbers.len() as u64) as usize].clone();
                let spec = call(k + 1_000_000_000, Some(consent.clone()));
                let usage = UsagePost {
                    merchant_id: service.merchant_id.clone(),
                    record_id: callauth::domain::RecordId::parse("r").unwrap(),
                    call_id: spec.call_id.clone(),
                    service_number: service.number.clone(),
                    started_at_ms: now,
                    duration_seconds: 61,
                };
                (n, spec, usage, now)
            },
            |(n, spec, usage, now)| {
                let store = store.clone();
                async move {
                    store.authorize(&n, &spec, now).await.unwrap();
                    let posted = store.post_usage(&usage, now).await.unwrap();
                    if now % 1024 == 0 {
                        store.expire_due(now, 100_000).await.unwrap();
                    }
                    posted
                }
            },
            BatchSize::SmallInput,
        )
    });
}

/// The embedded store as `loadtest/compare.sh` drives it (issue 13.2): every
/// iteration an Authorize with consent and an IVR's evidence that leaves its
/// hold pending (a hold, a call-index claim, an expiry entry and a consent
/// event in the outbox ring, which drops its oldest), over 1 000 numbers;
/// grants of 60 s expire and are swept as the clock advances 1 ms per call,
/// so the store holds ~60 000 pending holds instead of growing for the run.
fn memory_store_pending(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = MemoryStore::new(StorePolicy {
        grant: GrantPolicy {
            quota_seconds: 60,
            max_call_seconds: 14_400,
        },
        hold_grace_ms: 0,
        hold_retention_ms: 10_000,
        ..StorePolicy::default()
    });
    let (cat, spec) = catalog();
    let service = rt.block_on(async {
        let merchant = cat.merchants.values().next().unwrap().as_ref().clone();
        store.upsert_merchant(&merchant).await.unwrap();
        store.upsert_service(&spec, 0).await.unwrap().service
    });
    let numbers: Vec<E164> = (0..1000)
        .map(|i| E164::parse(&format!("+4670{:07}", i)).unwrap())
        .collect();
    // The load test's 1 000 000 kr credit decision: every call is granted.
    let limit = callauth::domain::LimitChange::CreditDecision {
        limit: Money::sek(1_000_000),
        credit_check_reference: "bench".into(),
        decided_by: "bench".into(),
    };
    rt.block_on(async {
        for n in &numbers {
            store.put_directory(n, true, "bench", 0).await.unwrap();
            store.set_limit(n, &limit, "bench", 0).await.unwrap();
        }
    });
    let consent = Consent {
        age_confirmed: true,
        own_number_confirmed: true,
        step1_at_ms: 0,
        terms_accepted: true,
        step2_at_ms: 0,
        terms_id: Some(service.terms.terms_id.clone()),
    };
    let mut now = 1i64;
    c.bench_function("memory_store_authorize_pending", |b| {
        b.to_async(&rt).iter_batched(
            || {
                now += 1;
                let k = now as u64;
                // A fresh parse, as each request's number is.
                let n = E164::parse(numbers[(k % 1000) as usize].as_str()).unwrap();
                let spec = CallSpec {
                    call_id: CallId::parse(&format!("p{k}")).unwrap(),
                    service: service.clone(),
                    terms: service.terms.clone(),
                    consent: Some(consent.clone()),
                    evidence: Evidence {
                        ivr_client: "ivr-bench".into(),
                        ivr_id: "callauth-loadtest-ivr".into(),
                        line_ref: String::new(),
                        number_withheld: false,
                    },
                };
                (n, spec, now)
            },
            |(n, spec, now)| {
                let store = store.clone();
                async move {
                    let r = store.authorize(&n, &spec, now).await.unwrap();
                    assert!(matches!(r.decision, callauth::domain::Decision::Allowed(_)));
                    if now % 1024 == 0 {
                        store.expire_due(now, 100_000).await.unwrap();
                    }
                    r
                }
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, pure_core, memory_store, memory_store_pending);
criterion_main!(benches);
