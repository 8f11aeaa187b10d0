//! The shared store suite: every behaviour of the `Store` trait, written once
//! and run against each backend by `store_suite!` (STYLE, after limitador).
//! Each test gets a fresh, isolated store from the backend's factory.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use callauth::domain::account::{BlockKind, LimitChange, LimitSource};
use callauth::domain::decision::{ConsentReason, Decision, DenyReason, Grant, PrepaidReason};
use callauth::domain::event::EventBody;
use callauth::domain::{CodeHasher, Money, RecordId, Reference, VatRate};
use callauth::store::*;

use crate::common::*;

pub const NUM_A: &str = "+46701234567";
pub const NUM_B: &str = "+46702345678";
pub const NUM_UNREG: &str = "+46703456789";

pub fn hasher() -> CodeHasher {
    CodeHasher::new(&[42u8; 32]).unwrap()
}

/// A store with the catalogue and two registered numbers and one unregistered.
pub async fn ready<S: Store>(s: &S) {
    seed_catalog(s).await;
    s.put_directory(&n(NUM_A), true, "test", T0).await.unwrap();
    s.put_directory(&n(NUM_B), true, "test", T0).await.unwrap();
    s.put_directory(&n(NUM_UNREG), false, "test", T0)
        .await
        .unwrap();
}

pub fn usage(call: &str, service: &str, merchant: &str, duration: u32) -> UsagePost {
    usage_at(call, service, merchant, duration, T0)
}

pub fn usage_at(
    call: &str,
    service: &str,
    merchant: &str,
    duration: u32,
    started_at_ms: i64,
) -> UsagePost {
    UsagePost {
        merchant_id: callauth::domain::MerchantId::parse(merchant).unwrap(),
        record_id: RecordId::parse(&format!("r-{call}")).unwrap(),
        call_id: call_id(call),
        service_number: n(service),
        started_at_ms,
        duration_seconds: duration,
    }
}

async fn allowed<S: Store>(s: &S, number: &str, id: &str, service: &str, now: i64) -> Grant {
    let svc = crate::common::service(s, service).await;
    match s
        .authorize(&n(number), &call(id, &svc, true), now)
        .await
        .unwrap()
        .decision
    {
        Decision::Allowed(g) => g,
        other => panic!("expected allowed, got {other:?}"),
    }
}

async fn events<S: Store>(s: &S) -> Vec<callauth::domain::Event> {
    s.recent_events(10_000).await.unwrap()
}

fn count(events: &[callauth::domain::Event], label: &str) -> usize {
    events.iter().filter(|e| e.body.label() == label).count()
}

pub async fn directory_decides_who_may_be_invoiced<S: Store>(s: S) {
    ready(&s).await;
    let svc = service(&s, TAROT).await;
    let unknown = s
        .authorize(&n("+46709999999"), &call("c1", &svc, true), T0)
        .await
        .unwrap();
    assert_eq!(
        unknown.decision,
        Decision::PrepaidCodeRequired(PrepaidReason::NotInDirectory)
    );
    let unreg = s
        .authorize(&n(NUM_UNREG), &call("c2", &svc, true), T0)
        .await
        .unwrap();
    assert_eq!(
        unreg.decision,
        Decision::PrepaidCodeRequired(PrepaidReason::HolderNotRegistered)
    );
    // Nothing was held.
    assert_eq!(s.account(&n(NUM_UNREG)).await.unwrap().pending, Money::ZERO);
    assert_eq!(s.stats().await.unwrap().pending_holds, 0);
}

pub async fn consent_required_then_allowed_with_hold<S: Store>(s: S) {
    ready(&s).await;
    let svc = service(&s, TAROT).await;
    let first = s
        .authorize(&n(NUM_A), &call("c1", &svc, false), T0)
        .await
        .unwrap();
    assert_eq!(
        first.decision,
        Decision::ConsentRequired(ConsentReason::Missing)
    );
    assert_eq!(s.account(&n(NUM_A)).await.unwrap().pending, Money::ZERO);

    let second = s
        .authorize(&n(NUM_A), &call("c1", &svc, true), T0)
        .await
        .unwrap();
    // 1 500 SEK limit, 29.90/min, one quota of 15 minutes.
    let g = Grant {
        granted_seconds: 900,
        hold: Money::ore_unchecked(15 * 2990),
    };
    assert_eq!(second.decision, Decision::Allowed(g));
    assert!(!second.replayed);
    assert_eq!(second.terms_id.as_ref(), Some(&svc.terms.terms_id));
    assert_eq!(
        second.hold_expires_at_ms,
        T0 + 900_000 + policy().hold_grace_ms
    );
    let acct = s.account(&n(NUM_A)).await.unwrap();
    assert_eq!(acct.limit, Money::sek(1500));
    assert_eq!(acct.pending, g.hold);
    assert_eq!(acct.pending_calls, 1);
    assert_eq!(acct.available(), Money::sek(1500) - g.hold);

    let ev = events(&s).await;
    let consent = ev
        .iter()
        .find_map(|e| match &e.body {
            EventBody::ConsentRecorded(c) => Some(c.clone()),
            _ => None,
        })
        .expect("consent recorded");
    assert_eq!(consent.call_id, "c1");
    assert_eq!(consent.number, NUM_A);
    assert_eq!(consent.terms_id, svc.terms.terms_id.as_str());
    assert_eq!(consent.price_per_minute_ore, 2990);
    assert!(consent.age_confirmed && consent.own_number_confirmed && consent.terms_accepted);
    assert_eq!(consent.step2_at_ms, T0 + 1000);
    assert_eq!(consent.ivr_client, "ivr-test");
}

pub async fn stale_terms_need_new_consent<S: Store>(s: S) {
    ready(&s).await;
    let old = service(&s, TAROT).await;
    s.upsert_service(&spec(TAROT, MERCHANT, "Tarotlinjen", 3490, 60, 0), T0)
        .await
        .unwrap();
    let new = service(&s, TAROT).await;
    assert_ne!(old.terms.terms_id, new.terms.terms_id);
    // The caller accepted the old price; the call is checked against the new terms.
    let mut c = call("c1", &new, true);
    c.consent = Some(full_consent(&old));
    let r = s.authorize(&n(NUM_A), &c, T0).await.unwrap();
    assert_eq!(
        r.decision,
        Decision::ConsentRequired(ConsentReason::TermsChanged)
    );
}

pub async fn retried_authorize_returns_first_answer<S: Store>(s: S) {
    ready(&s).await;
    let g = allowed(&s, NUM_A, "c1", TAROT, T0).await;
    let svc = service(&s, TAROT).await;
    let again = s
        .authorize(&n(NUM_A), &call("c1", &svc, true), T0 + 5)
        .await
        .unwrap();
    assert_eq!(again.decision, Decision::Allowed(g));
    assert!(again.replayed);
    let acct = s.account(&n(NUM_A)).await.unwrap();
    assert_eq!(acct.pending, g.hold, "a retry holds nothing more");
    assert_eq!(acct.pending_calls, 1);
    // Even after the call was posted, the retry answers the same.
    s.post_usage(&usage("c1", TAROT, MERCHANT, 30), T0 + 60_000)
        .await
        .unwrap();
    let late = s
        .authorize(&n(NUM_A), &call("c1", &svc, true), T0 + 70_000)
        .await
        .unwrap();
    assert_eq!(late.decision, Decision::Allowed(g));
    assert!(late.replayed);
    assert_eq!(s.account(&n(NUM_A)).await.unwrap().pending, Money::ZERO);
}

pub async fn call_id_reuse_is_refused<S: Store>(s: S) {
    ready(&s).await;
    allowed(&s, NUM_A, "c1", TAROT, T0).await;
    let svc = service(&s, TAROT).await;
    let err = s
        .authorize(&n(NUM_B), &call("c1", &svc, true), T0)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Rejected(_)), "{err:?}");
    let other = service(&s, LEGAL).await;
    let err = s
        .authorize(&n(NUM_A), &call("c1", &other, true), T0)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Rejected(_)), "{err:?}");
    assert_eq!(s.account(&n(NUM_B)).await.unwrap().pending, Money::ZERO);
}

pub async fn concurrent_calls_share_credit<S: Store>(s: S) {
    ready(&s).await;
    // 1 500 SEK at 29.90: 15 + 15 + 15 + 5 minutes = 1 495 SEK, then nothing.
    let grants: Vec<Grant> = vec![
        allowed(&s, NUM_A, "c1", TAROT, T0).await,
        allowed(&s, NUM_A, "c2", TAROT, T0).await,
        allowed(&s, NUM_A, "c3", TAROT, T0).await,
        allowed(&s, NUM_A, "c4", TAROT, T0).await,
    ];
    assert_eq!(grants[3].granted_seconds, 300);
    let held: Money = grants.iter().map(|g| g.hold).sum();
    assert_eq!(held, Money::ore_unchecked(50 * 2990));
    let svc = service(&s, TAROT).await;
    let fifth = s
        .authorize(&n(NUM_A), &call("c5", &svc, true), T0)
        .await
        .unwrap();
    assert_eq!(
        fifth.decision,
        Decision::Denied(DenyReason::InsufficientCredit)
    );
    let acct = s.account(&n(NUM_A)).await.unwrap();
    assert_eq!(acct.pending, held);
    assert!(acct.available() >= Money::ZERO);
    assert_eq!(acct.pending_calls, 4);
}

pub async fn minimum_charge_applies<S: Store>(s: S) {
    ready(&s).await;
    let g = allowed(&s, NUM_A, "c1", LEGAL, T0).await;
    assert_eq!(g.granted_seconds, 900);
    let r = s
        .post_usage(&usage("c1", LEGAL, MERCHANT, 45), T0 + 60_000)
        .await
        .unwrap();
    assert_eq!(
        r,
        UsageOutcome::Applied(Posting {
            charge: Money::ore_unchecked(3 * 2490),
            billed_seconds: 180,
            overrun_seconds: 0,
            late: false,
            threshold_reached: false,
            limit_reached: false,
        })
    );
    assert_eq!(
        s.account(&n(NUM_A)).await.unwrap().unbilled,
        Money::ore_unchecked(7470)
    );
}

pub async fn usage_is_rated_and_idempotent<S: Store>(s: S) {
    ready(&s).await;
    allowed(&s, NUM_A, "c1", TAROT, T0).await;
    let u = usage("c1", TAROT, MERCHANT, 61);
    let first = s.post_usage(&u, T0 + 70_000).await.unwrap();
    let p = Posting {
        charge: Money::ore_unchecked(5980),
        billed_seconds: 120,
        overrun_seconds: 0,
        late: false,
        threshold_reached: false,
        limit_reached: false,
    };
    assert_eq!(first, UsageOutcome::Applied(p));
    assert_eq!(
        s.post_usage(&u, T0 + 80_000).await.unwrap(),
        UsageOutcome::Duplicate(p)
    );
    let conflicting = s
        .post_usage(&usage("c1", TAROT, MERCHANT, 62), T0 + 80_000)
        .await
        .unwrap();
    assert!(matches!(
        conflicting,
        UsageOutcome::Rejected(UsageReject::ConflictingDuplicate, _)
    ));
    let acct = s.account(&n(NUM_A)).await.unwrap();
    assert_eq!(acct.unbilled, Money::ore_unchecked(5980));
    assert_eq!(acct.pending, Money::ZERO);
    assert_eq!(acct.pending_calls, 0);
    let ev = events(&s).await;
    assert_eq!(count(&ev, "usage_posted"), 1);
    let posted = ev
        .iter()
        .find_map(|e| match &e.body {
            EventBody::UsagePosted(u) => Some(u.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(posted.charge_ore, 5980);
    assert_eq!(posted.number, NUM_A);
    assert_eq!(posted.exposure_after_ore, 5980);
    assert_eq!(
        posted.terms_id,
        service(&s, TAROT).await.terms.terms_id.as_str()
    );
}

/// The VAT rate travels with the terms the caller accepted to the usage
/// event (mervärdesskattelagen 9 kap.): settlement books each call at its
/// own rate, even when the service's rate changed during the call.
pub async fn usage_carries_the_accepted_terms_vat_rate<S: Store>(s: S) {
    ready(&s).await;
    const EXEMPT: &str = "+469006006060";
    let mut exempt = spec(EXEMPT, OTHER_MERCHANT, "Psykologsamtal", 1995, 1, 0);
    exempt.vat = VatRate::EXEMPT;
    s.upsert_service(&exempt, T0).await.unwrap();
    allowed(&s, NUM_A, "v1", TAROT, T0).await;
    allowed(&s, NUM_A, "v2", EXEMPT, T0).await;
    // The tarot line moves to 12 % while v1 is in progress: new terms.
    let mut reduced = spec(TAROT, MERCHANT, "Tarotlinjen", 2990, 60, 0);
    reduced.vat = VatRate::REDUCED_12;
    let change = s.upsert_service(&reduced, T0 + 1000).await.unwrap();
    assert_eq!(change.service.terms.vat, VatRate::REDUCED_12);
    allowed(&s, NUM_B, "v3", TAROT, T0 + 2000).await;
    // A prepaid call on the exempt line.
    let IssueOutcome::Issued { view: code, .. } = s
        .issue_prepaid(
            &hasher(),
            Money::sek(100),
            &Reference::parse("vat-1").unwrap(),
            T0,
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    let svc = service(&s, EXEMPT).await;
    let mut c = call("v4", &svc, true);
    c.consent.as_mut().unwrap().own_number_confirmed = false;
    let d = s
        .authorize_prepaid(
            &LineKey::number(&n(NUM_B)),
            Some(&n(NUM_B)),
            &code.code_id,
            &c,
            T0,
        )
        .await
        .unwrap();
    assert!(matches!(d.decision, Decision::Allowed(_)), "{d:?}");
    for (id, service, merchant) in [
        ("v1", TAROT, MERCHANT),
        ("v2", EXEMPT, OTHER_MERCHANT),
        ("v3", TAROT, MERCHANT),
        ("v4", EXEMPT, OTHER_MERCHANT),
    ] {
        let r = s
            .post_usage(&usage_at(id, service, merchant, 60, T0 + 2000), T0 + 70_000)
            .await
            .unwrap();
        assert!(matches!(r, UsageOutcome::Applied(_)), "{id}: {r:?}");
    }
    let rates: BTreeMap<String, VatRate> = events(&s)
        .await
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::UsagePosted(u) => Some((u.call_id.clone(), u.vat_rate)),
            _ => None,
        })
        .collect();
    assert_eq!(
        rates,
        BTreeMap::from([
            ("v1".to_string(), VatRate::STANDARD),
            ("v2".to_string(), VatRate::EXEMPT),
            ("v3".to_string(), VatRate::REDUCED_12),
            ("v4".to_string(), VatRate::EXEMPT),
        ])
    );
}

pub async fn bad_usage_changes_nothing<S: Store>(s: S) {
    ready(&s).await;
    allowed(&s, NUM_A, "c1", TAROT, T0).await;
    let before = s.account(&n(NUM_A)).await.unwrap();
    let cases = [
        (usage("nope", TAROT, MERCHANT, 10), UsageReject::UnknownCall),
        (
            usage("c1", LEGAL, MERCHANT, 10),
            UsageReject::ServiceMismatch,
        ),
        (
            usage("c1", TAROT, OTHER_MERCHANT, 10),
            UsageReject::NotMerchantsService,
        ),
    ];
    for (u, expected) in cases {
        match s.post_usage(&u, T0 + 1000).await.unwrap() {
            UsageOutcome::Rejected(r, _) => assert_eq!(r, expected),
            other => panic!("expected {expected:?}, got {other:?}"),
        }
    }
    let mut early = usage("c1", TAROT, MERCHANT, 10);
    early.started_at_ms = T0 - policy().usage_start_skew_ms - 1;
    assert!(matches!(
        s.post_usage(&early, T0 + 1000).await.unwrap(),
        UsageOutcome::Rejected(UsageReject::StartOutOfRange, _)
    ));
    assert_eq!(s.account(&n(NUM_A)).await.unwrap(), before);
}

pub async fn threshold_event_fires_once<S: Store>(s: S) {
    ready(&s).await;
    // Per-second chat at 19.95/min: 1 200 SEK is 3 609.02 s; post 3 610 s in three calls.
    allowed(&s, NUM_A, "c1", CHAT, T0).await;
    allowed(&s, NUM_A, "c2", CHAT, T0).await;
    allowed(&s, NUM_A, "c3", CHAT, T0).await;
    s.post_usage(&usage("c1", CHAT, MERCHANT, 900), T0 + 1_000_000)
        .await
        .unwrap();
    s.post_usage(&usage("c2", CHAT, MERCHANT, 900), T0 + 1_000_000)
        .await
        .unwrap();
    assert_eq!(count(&events(&s).await, "threshold_reached"), 0);
    // 1 800 s = 598.50; a long third call past its grant brings it over 1 200 SEK.
    let r = s
        .post_usage(&usage("c3", CHAT, MERCHANT, 1810), T0 + 2_000_000)
        .await
        .unwrap();
    let UsageOutcome::Applied(p) = r else {
        panic!("{r:?}")
    };
    assert_eq!(p.overrun_seconds, 910);
    assert!(p.threshold_reached, "the posting reports the 80 % crossing");
    assert!(!p.limit_reached);
    let acct = s.account(&n(NUM_A)).await.unwrap();
    assert!(acct.exposure() >= Money::sek(1200), "{acct:?}");
    assert!(acct.threshold_reached);
    let ev = events(&s).await;
    assert_eq!(count(&ev, "threshold_reached"), 1);
    // More usage in the same cycle: no second event.
    allowed(&s, NUM_A, "c4", CHAT, T0 + 2_000_000).await;
    let r = s
        .post_usage(
            &usage_at("c4", CHAT, MERCHANT, 60, T0 + 2_000_000),
            T0 + 2_100_000,
        )
        .await
        .unwrap();
    assert!(
        matches!(r, UsageOutcome::Applied(p) if !p.threshold_reached),
        "{r:?}"
    );
    assert_eq!(count(&events(&s).await, "threshold_reached"), 1);
}

pub async fn limit_blocks_and_payment_lifts<S: Store>(s: S) {
    ready(&s).await;
    let g = allowed(&s, NUM_A, "c1", TAROT, T0).await;
    // The IVR did not cut the call: 60 minutes at 29.90 = 1 794 SEK > 1 500 SEK.
    let r = s
        .post_usage(&usage("c1", TAROT, MERCHANT, 3600), T0 + 3_700_000)
        .await
        .unwrap();
    assert!(matches!(r, UsageOutcome::Applied(p)
        if p.overrun_seconds == 3600 - g.granted_seconds && p.threshold_reached && p.limit_reached));
    let acct = s.account(&n(NUM_A)).await.unwrap();
    assert!(acct.credit_blocked);
    assert_eq!(acct.unbilled, Money::ore_unchecked(60 * 2990));
    let ev = events(&s).await;
    assert_eq!(count(&ev, "threshold_reached"), 1);
    assert_eq!(count(&ev, "limit_reached"), 1);
    assert!(ev.iter().any(|e| matches!(&e.body,
        EventBody::BlockChanged(b) if b.kind == BlockKind::CreditLimit && b.blocked)));
    let svc = service(&s, TAROT).await;
    let denied = s
        .authorize(&n(NUM_A), &call("c2", &svc, true), T0 + 3_800_000)
        .await
        .unwrap();
    assert_eq!(
        denied.decision,
        Decision::Denied(DenyReason::BlockedCreditLimit)
    );

    // Settlement invoices the usage and the holder pays it in full.
    let inv = InvoiceApply {
        invoice_id: Reference::parse("inv-1").unwrap(),
        usage: Money::ore_unchecked(60 * 2990),
        fees: Money::ZERO,
    };
    assert_eq!(
        s.apply_invoice(&n(NUM_A), &inv, T0 + 4_000_000)
            .await
            .unwrap(),
        Applied::Applied
    );
    assert_eq!(
        s.apply_invoice(&n(NUM_A), &inv, T0 + 4_000_000)
            .await
            .unwrap(),
        Applied::AlreadyApplied
    );
    let acct = s.account(&n(NUM_A)).await.unwrap();
    assert_eq!(acct.unbilled, Money::ZERO);
    assert_eq!(acct.invoiced_unpaid, Money::ore_unchecked(60 * 2990));
    assert!(acct.credit_blocked, "invoicing does not lift the block");
    let pay = PaymentApply {
        payment_id: Reference::parse("pay-1").unwrap(),
        amount: Money::ore_unchecked(60 * 2990),
        clear_overdue: true,
        first_invoice_paid: true,
    };
    assert_eq!(
        s.apply_payment(&n(NUM_A), &pay, T0 + 5_000_000)
            .await
            .unwrap(),
        Applied::Applied
    );
    assert_eq!(
        s.apply_payment(&n(NUM_A), &pay, T0 + 5_000_000)
            .await
            .unwrap(),
        Applied::AlreadyApplied
    );
    let acct = s.account(&n(NUM_A)).await.unwrap();
    assert!(!acct.credit_blocked);
    assert!(!acct.threshold_reached, "the threshold re-arms below 80 %");
    assert!(acct.established);
    assert_eq!(
        acct.limit,
        Money::sek(3000),
        "first paid invoice raises the default limit (R8)"
    );
    assert_eq!(acct.exposure(), Money::ZERO);
    let ok = s
        .authorize(&n(NUM_A), &call("c3", &svc, true), T0 + 5_100_000)
        .await
        .unwrap();
    assert!(matches!(ok.decision, Decision::Allowed(_)));
}

pub async fn settlement_amounts_are_checked<S: Store>(s: S) {
    ready(&s).await;
    allowed(&s, NUM_A, "c1", TAROT, T0).await;
    s.post_usage(&usage("c1", TAROT, MERCHANT, 60), T0 + 70_000)
        .await
        .unwrap();
    let too_much = InvoiceApply {
        invoice_id: Reference::parse("inv-1").unwrap(),
        usage: Money::ore_unchecked(2991),
        fees: Money::ZERO,
    };
    assert!(matches!(
        s.apply_invoice(&n(NUM_A), &too_much, T0).await,
        Err(StoreError::Rejected(_))
    ));
    let with_fee = InvoiceApply {
        invoice_id: Reference::parse("inv-1").unwrap(),
        usage: Money::ore_unchecked(2990),
        fees: Money::sek(30),
    };
    s.apply_invoice(&n(NUM_A), &with_fee, T0).await.unwrap();
    let acct = s.account(&n(NUM_A)).await.unwrap();
    assert_eq!(acct.invoiced_unpaid, Money::ore_unchecked(2990 + 3000));
    let overpay = PaymentApply {
        payment_id: Reference::parse("p1").unwrap(),
        amount: Money::ore_unchecked(5991),
        clear_overdue: false,
        first_invoice_paid: false,
    };
    assert!(matches!(
        s.apply_payment(&n(NUM_A), &overpay, T0).await,
        Err(StoreError::Rejected(_))
    ));
    let partial = PaymentApply {
        payment_id: Reference::parse("p1").unwrap(),
        amount: Money::ore_unchecked(1000),
        clear_overdue: false,
        first_invoice_paid: false,
    };
    s.apply_payment(&n(NUM_A), &partial, T0).await.unwrap();
    let acct = s.account(&n(NUM_A)).await.unwrap();
    assert_eq!(acct.invoiced_unpaid, Money::ore_unchecked(4990));
    assert!(!acct.established);
    assert_eq!(acct.limit, Money::sek(1500));
}

pub async fn overdue_block_set_and_lifted_by_payment<S: Store>(s: S) {
    ready(&s).await;
    allowed(&s, NUM_A, "c1", TAROT, T0).await;
    s.post_usage(&usage("c1", TAROT, MERCHANT, 60), T0 + 70_000)
        .await
        .unwrap();
    let inv = InvoiceApply {
        invoice_id: Reference::parse("inv-1").unwrap(),
        usage: Money::ore_unchecked(2990),
        fees: Money::ZERO,
    };
    s.apply_invoice(&n(NUM_A), &inv, T0).await.unwrap();
    let overdue = BlockChange {
        kind: BlockKind::Overdue,
        target: String::new(),
        blocked: true,
        reason: "invoice inv-1 overdue".into(),
        actor: "settlement".into(),
    };
    assert!(
        s.set_block(&n(NUM_A), &overdue, T0)
            .await
            .unwrap()
            .overdue_blocked
    );
    let svc = service(&s, TAROT).await;
    let d = s
        .authorize(&n(NUM_A), &call("c2", &svc, true), T0)
        .await
        .unwrap();
    assert_eq!(d.decision, Decision::Denied(DenyReason::BlockedOverdue));
    let pay = PaymentApply {
        payment_id: Reference::parse("pay-1").unwrap(),
        amount: Money::ore_unchecked(2990),
        clear_overdue: true,
        first_invoice_paid: true,
    };
    s.apply_payment(&n(NUM_A), &pay, T0).await.unwrap();
    let acct = s.account(&n(NUM_A)).await.unwrap();
    assert!(!acct.overdue_blocked);
    let d = s
        .authorize(&n(NUM_A), &call("c2", &svc, true), T0)
        .await
        .unwrap();
    assert!(matches!(d.decision, Decision::Allowed(_)));
    // The credit block cannot be set by hand.
    let manual = BlockChange {
        kind: BlockKind::CreditLimit,
        ..overdue
    };
    assert!(matches!(
        s.set_block(&n(NUM_A), &manual, T0).await,
        Err(StoreError::Rejected(_))
    ));
}

pub async fn holder_blocks_stop_postpaid_and_prepaid<S: Store>(s: S) {
    ready(&s).await;
    let svc = service(&s, TAROT).await;
    let psych = service(&s, PSYCH).await;
    let block = |kind, target: &str, blocked| BlockChange {
        kind,
        target: target.into(),
        blocked,
        reason: "holder request".into(),
        actor: "support".into(),
    };
    // Merchant block: tarot (stjarnlinjen) refused, psychology (radgivarna) allowed.
    s.set_block(
        &n(NUM_A),
        &block(BlockKind::HolderMerchant, MERCHANT, true),
        T0,
    )
    .await
    .unwrap();
    let d = s
        .authorize(&n(NUM_A), &call("c1", &svc, true), T0)
        .await
        .unwrap();
    assert_eq!(d.decision, Decision::Denied(DenyReason::BlockedByHolder));
    let d = s
        .authorize(&n(NUM_A), &call("c2", &psych, true), T0)
        .await
        .unwrap();
    assert!(matches!(d.decision, Decision::Allowed(_)));
    s.set_block(
        &n(NUM_A),
        &block(BlockKind::HolderMerchant, MERCHANT, false),
        T0,
    )
    .await
    .unwrap();
    // Service block, in national form.
    let view = s
        .set_block(
            &n(NUM_A),
            &block(BlockKind::HolderService, "0900-100 10 10", true),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(view.blocked_services, vec![TAROT.to_string()]);
    let d = s
        .authorize(&n(NUM_A), &call("c3", &svc, true), T0)
        .await
        .unwrap();
    assert_eq!(d.decision, Decision::Denied(DenyReason::BlockedByHolder));
    // All services, and it also stops a prepaid code from that number (R6).
    s.set_block(
        &n(NUM_B),
        &block(BlockKind::HolderAllServices, "", true),
        T0,
    )
    .await
    .unwrap();
    let issued = s
        .issue_prepaid(
            &hasher(),
            Money::sek(200),
            &Reference::parse("buy-1").unwrap(),
            T0,
        )
        .await
        .unwrap();
    let IssueOutcome::Issued { view: code, .. } = issued else {
        panic!()
    };
    let d = s
        .authorize_prepaid(
            &LineKey::number(&n(NUM_B)),
            Some(&n(NUM_B)),
            &code.code_id,
            &call("c4", &psych, true),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(d.decision, Decision::Denied(DenyReason::BlockedByHolder));
    // Unknown targets are refused.
    assert!(s
        .set_block(
            &n(NUM_A),
            &block(BlockKind::HolderService, "banana", true),
            T0
        )
        .await
        .is_err());
    // Lifting twice is harmless and emits one event.
    let before = count(&events(&s).await, "block_changed");
    s.set_block(
        &n(NUM_B),
        &block(BlockKind::HolderAllServices, "", false),
        T0,
    )
    .await
    .unwrap();
    s.set_block(
        &n(NUM_B),
        &block(BlockKind::HolderAllServices, "", false),
        T0,
    )
    .await
    .unwrap();
    assert_eq!(count(&events(&s).await, "block_changed"), before + 1);
}

pub async fn credit_blocked_number_may_use_prepaid<S: Store>(s: S) {
    ready(&s).await;
    allowed(&s, NUM_A, "c1", TAROT, T0).await;
    s.post_usage(&usage("c1", TAROT, MERCHANT, 3600), T0 + 3_700_000)
        .await
        .unwrap();
    assert!(s.account(&n(NUM_A)).await.unwrap().credit_blocked);
    let IssueOutcome::Issued { view: code, .. } = s
        .issue_prepaid(
            &hasher(),
            Money::sek(100),
            &Reference::parse("buy-1").unwrap(),
            T0,
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    let svc = service(&s, TAROT).await;
    let mut c = call("c2", &svc, true);
    c.consent.as_mut().unwrap().own_number_confirmed = false; // prepaid: age only
    let d = s
        .authorize_prepaid(
            &LineKey::number(&n(NUM_A)),
            Some(&n(NUM_A)),
            &code.code_id,
            &c,
            T0 + 3_800_000,
        )
        .await
        .unwrap();
    // 100 SEK at 29.90 covers 3 minutes.
    assert_eq!(
        d.decision,
        Decision::Allowed(Grant {
            granted_seconds: 180,
            hold: Money::ore_unchecked(3 * 2990)
        })
    );
    assert_eq!(
        s.prepaid(&code.code_id).await.unwrap().unwrap().pending,
        Money::ore_unchecked(8970)
    );
    let r = s
        .post_usage(
            &usage_at("c2", TAROT, MERCHANT, 100, T0 + 3_800_000),
            T0 + 3_900_000,
        )
        .await
        .unwrap();
    assert!(matches!(r, UsageOutcome::Applied(p) if p.charge == Money::ore_unchecked(5980)));
    let view = s.prepaid(&code.code_id).await.unwrap().unwrap();
    assert_eq!(view.balance, Money::ore_unchecked(10_000 - 5980));
    assert_eq!(view.pending, Money::ZERO);
    // Never invoiced: the number's unbilled did not move.
    assert_eq!(
        s.account(&n(NUM_A)).await.unwrap().unbilled,
        Money::ore_unchecked(60 * 2990)
    );
    let ev = events(&s).await;
    assert!(ev.iter().any(|e| matches!(&e.body,
        EventBody::PrepaidDebited(p) if p.amount_ore == 5980 && p.balance_after_ore == 4020)));
    // Insufficient balance for another 3-minute-minimum legal call (74.70 > 40.20).
    let legal = service(&s, LEGAL).await;
    let mut c = call("c3", &legal, true);
    c.consent.as_mut().unwrap().own_number_confirmed = false;
    let d = s
        .authorize_prepaid(
            &LineKey::number(&n(NUM_A)),
            Some(&n(NUM_A)),
            &code.code_id,
            &c,
            T0 + 4_000_000,
        )
        .await
        .unwrap();
    assert_eq!(
        d.decision,
        Decision::Denied(DenyReason::PrepaidBalanceInsufficient)
    );
}

pub async fn prepaid_issue_and_top_up_are_idempotent<S: Store>(s: S) {
    ready(&s).await;
    let buy = Reference::parse("swish-ABC").unwrap();
    let IssueOutcome::Issued { code, view } = s
        .issue_prepaid(&hasher(), Money::sek(150), &buy, T0)
        .await
        .unwrap()
    else {
        panic!("first issue")
    };
    assert_eq!(hasher().id(&code), view.code_id);
    assert_eq!(view.balance, Money::sek(150));
    match s
        .issue_prepaid(&hasher(), Money::sek(150), &buy, T0)
        .await
        .unwrap()
    {
        IssueOutcome::AlreadyIssued(v) => assert_eq!(v.code_id, view.code_id),
        other => panic!("{other:?}"),
    }
    let top = Reference::parse("bg-7788").unwrap();
    let v = s
        .top_up_prepaid(&view.code_id, Money::sek(50), &top, T0)
        .await
        .unwrap();
    assert_eq!(v.balance, Money::sek(200));
    let v = s
        .top_up_prepaid(&view.code_id, Money::sek(50), &top, T0)
        .await
        .unwrap();
    assert_eq!(
        v.balance,
        Money::sek(200),
        "the same top-up twice adds once"
    );
    let unknown = hasher().id(&callauth::domain::PrepaidCode::generate());
    assert!(matches!(
        s.top_up_prepaid(&unknown, Money::sek(50), &top, T0).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(s.prepaid(&unknown).await.unwrap().is_none());
    assert!(matches!(
        s.issue_prepaid(&hasher(), Money::ZERO, &Reference::parse("x").unwrap(), T0)
            .await,
        Err(StoreError::Rejected(_))
    ));
    let ev = events(&s).await;
    assert_eq!(count(&ev, "prepaid_credited"), 2);
}

pub async fn wrong_codes_lock_the_line_out<S: Store>(s: S) {
    ready(&s).await;
    let IssueOutcome::Issued { view: good, .. } = s
        .issue_prepaid(
            &hasher(),
            Money::sek(300),
            &Reference::parse("buy-1").unwrap(),
            T0,
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    let svc = service(&s, TAROT).await;
    let line = LineKey::withheld("ivr-test", "trunk-7");
    let max = policy().lockout_max_failures;
    for i in 1..=max {
        let wrong = hasher().id(&callauth::domain::PrepaidCode::generate());
        let d = s
            .authorize_prepaid(
                &line,
                None,
                &wrong,
                &call(&format!("w{i}"), &svc, true),
                T0 + i as i64,
            )
            .await
            .unwrap();
        let expected = if i == max {
            DenyReason::PrepaidLockedOut
        } else {
            DenyReason::PrepaidCodeInvalid
        };
        assert_eq!(d.decision, Decision::Denied(expected), "attempt {i}");
        assert_eq!(d.lockout_started, i == max, "attempt {i}");
    }
    // Locked: even the right code is refused, and nothing is held.
    let d = s
        .authorize_prepaid(
            &line,
            None,
            &good.code_id,
            &call("ok", &svc, true),
            T0 + 100,
        )
        .await
        .unwrap();
    assert_eq!(d.decision, Decision::Denied(DenyReason::PrepaidLockedOut));
    assert_eq!(
        s.prepaid(&good.code_id).await.unwrap().unwrap().pending,
        Money::ZERO
    );
    // Another line is not affected.
    let other = LineKey::withheld("ivr-test", "trunk-8");
    let mut c = call("ok2", &svc, true);
    c.consent.as_mut().unwrap().own_number_confirmed = false;
    let d = s
        .authorize_prepaid(&other, None, &good.code_id, &c, T0 + 100)
        .await
        .unwrap();
    assert!(matches!(d.decision, Decision::Allowed(_)));
    s.release(&call_id("ok2"), T0 + 200).await.unwrap();
    // The lockout ends.
    let later = T0 + policy().lockout_ms + 1000;
    let mut c = call("ok3", &svc, true);
    c.consent.as_mut().unwrap().own_number_confirmed = false;
    let d = s
        .authorize_prepaid(&line, None, &good.code_id, &c, later)
        .await
        .unwrap();
    assert!(matches!(d.decision, Decision::Allowed(_)), "{d:?}");
    // A failure counted by the gateway (bad check digit) counts too.
    let line3 = LineKey::number(&n(NUM_B));
    for _ in 1..max {
        assert!(!s.record_code_failure(&line3, later).await.unwrap());
    }
    assert!(s.record_code_failure(&line3, later).await.unwrap());
}

pub async fn release_voids_and_blocks_later_usage<S: Store>(s: S) {
    ready(&s).await;
    let g = allowed(&s, NUM_A, "c1", TAROT, T0).await;
    assert_eq!(
        s.release(&call_id("c1"), T0 + 5000).await.unwrap(),
        ReleaseOutcome::Voided(g.hold)
    );
    assert_eq!(
        s.release(&call_id("c1"), T0 + 6000).await.unwrap(),
        ReleaseOutcome::AlreadyVoided
    );
    assert_eq!(
        s.release(&call_id("nope"), T0).await.unwrap(),
        ReleaseOutcome::UnknownCall
    );
    let acct = s.account(&n(NUM_A)).await.unwrap();
    assert_eq!(acct.pending, Money::ZERO);
    assert_eq!(acct.pending_calls, 0);
    let r = s
        .post_usage(&usage("c1", TAROT, MERCHANT, 10), T0 + 7000)
        .await
        .unwrap();
    assert!(matches!(
        r,
        UsageOutcome::Rejected(UsageReject::CallReleased, _)
    ));
    allowed(&s, NUM_A, "c2", TAROT, T0).await;
    s.post_usage(&usage("c2", TAROT, MERCHANT, 10), T0 + 7000)
        .await
        .unwrap();
    assert_eq!(
        s.release(&call_id("c2"), T0 + 8000).await.unwrap(),
        ReleaseOutcome::AlreadyPosted
    );
    assert_eq!(count(&events(&s).await, "hold_voided"), 1);
    assert_eq!(s.stats().await.unwrap().pending_holds, 0);
}

pub async fn holds_expire_and_late_usage_is_charged<S: Store>(s: S) {
    ready(&s).await;
    let g = allowed(&s, NUM_A, "c1", TAROT, T0).await;
    let expiry = T0 + i64::from(g.granted_seconds) * 1000 + policy().hold_grace_ms;
    assert_eq!(s.expire_due(expiry - 1, 100).await.unwrap(), 0);
    assert_eq!(s.account(&n(NUM_A)).await.unwrap().pending, g.hold);
    assert_eq!(s.expire_due(expiry, 100).await.unwrap(), 1);
    assert_eq!(
        s.expire_due(expiry + 1, 100).await.unwrap(),
        0,
        "expiring is idempotent"
    );
    let acct = s.account(&n(NUM_A)).await.unwrap();
    assert_eq!(acct.pending, Money::ZERO);
    assert_eq!(acct.pending_calls, 0);
    assert_eq!(count(&events(&s).await, "hold_expired"), 1);
    assert_eq!(
        s.release(&call_id("c1"), expiry + 2).await.unwrap(),
        ReleaseOutcome::AlreadyExpired
    );
    // The call did happen: usage that arrives late is still charged.
    let r = s
        .post_usage(&usage("c1", TAROT, MERCHANT, 120), expiry + 10)
        .await
        .unwrap();
    assert_eq!(
        r,
        UsageOutcome::Applied(Posting {
            charge: Money::ore_unchecked(5980),
            billed_seconds: 120,
            overrun_seconds: 0,
            late: true,
            threshold_reached: false,
            limit_reached: false,
        })
    );
    assert_eq!(
        s.account(&n(NUM_A)).await.unwrap().unbilled,
        Money::ore_unchecked(5980)
    );
    // An extension after expiry is refused.
    let e = s.extend(&call_id("c1"), 1, expiry + 20).await.unwrap();
    assert_eq!(e.outcome, ExtendOutcome::Refused(DenyReason::CallEnded));
}

pub async fn extend_grows_the_grant_idempotently<S: Store>(s: S) {
    ready(&s).await;
    let g = allowed(&s, NUM_A, "c1", TAROT, T0).await;
    let e1 = s.extend(&call_id("c1"), 1, T0 + 800_000).await.unwrap();
    assert_eq!(e1.outcome, ExtendOutcome::Extended);
    assert_eq!(e1.granted_seconds_total, 1800);
    assert_eq!(e1.added_seconds, 900);
    assert_eq!(e1.hold, Money::ore_unchecked(30 * 2990));
    assert_eq!(
        e1.hold_expires_at_ms,
        T0 + 1_800_000 + policy().hold_grace_ms
    );
    let again = s.extend(&call_id("c1"), 1, T0 + 800_100).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.granted_seconds_total, 1800);
    assert_eq!(s.account(&n(NUM_A)).await.unwrap().pending, e1.hold);
    assert!(matches!(
        s.extend(&call_id("c1"), 3, T0).await,
        Err(StoreError::Rejected(_))
    ));
    // 1 500 SEK = 50 minutes in all: the next extension gets 15, the one after 5, then none.
    let e2 = s.extend(&call_id("c1"), 2, T0 + 1_700_000).await.unwrap();
    assert_eq!(e2.granted_seconds_total, 2700);
    let e3 = s.extend(&call_id("c1"), 3, T0 + 2_600_000).await.unwrap();
    assert_eq!(e3.granted_seconds_total, 3000);
    let e4 = s.extend(&call_id("c1"), 4, T0 + 2_900_000).await.unwrap();
    assert_eq!(
        e4.outcome,
        ExtendOutcome::Refused(DenyReason::InsufficientCredit)
    );
    assert_eq!(e4.granted_seconds_total, 3000);
    assert_eq!(e4.added_seconds, 0);
    let acct = s.account(&n(NUM_A)).await.unwrap();
    assert_eq!(acct.pending, Money::ore_unchecked(50 * 2990));
    assert!(acct.available() >= Money::ZERO);
    // A holder block stops the next extension.
    s.set_block(
        &n(NUM_A),
        &BlockChange {
            kind: BlockKind::HolderAllServices,
            target: String::new(),
            blocked: true,
            reason: "holder".into(),
            actor: "support".into(),
        },
        T0,
    )
    .await
    .unwrap();
    let e5 = s.extend(&call_id("c1"), 5, T0 + 2_950_000).await.unwrap();
    assert_eq!(
        e5.outcome,
        ExtendOutcome::Refused(DenyReason::BlockedByHolder)
    );
    assert!(matches!(
        s.extend(&call_id("nope"), 1, T0).await,
        Err(StoreError::NotFound(_))
    ));
    let _ = g;
}

pub async fn limits_follow_r9<S: Store>(s: S) {
    ready(&s).await;
    let v = s
        .set_limit(
            &n(NUM_A),
            &LimitChange::HolderRequested(Money::sek(500)),
            "support",
            T0,
        )
        .await
        .unwrap();
    assert_eq!(v.limit, Money::sek(500));
    assert_eq!(v.limit_source, LimitSource::HolderRequested);
    assert!(matches!(
        s.set_limit(
            &n(NUM_A),
            &LimitChange::HolderRequested(Money::sek(2000)),
            "support",
            T0
        )
        .await,
        Err(StoreError::Rejected(_))
    ));
    let decision = LimitChange::CreditDecision {
        limit: Money::sek(10_000),
        credit_check_reference: "UC-123".into(),
        decided_by: "credit".into(),
    };
    assert_eq!(
        s.set_limit(&n(NUM_A), &decision, "credit", T0)
            .await
            .unwrap()
            .limit,
        Money::sek(10_000)
    );
    let no_ref = LimitChange::CreditDecision {
        limit: Money::sek(10_000),
        credit_check_reference: String::new(),
        decided_by: "credit".into(),
    };
    assert!(s.set_limit(&n(NUM_A), &no_ref, "credit", T0).await.is_err());
    let v = s
        .set_limit(&n(NUM_A), &LimitChange::ResetToDefault, "support", T0)
        .await
        .unwrap();
    assert_eq!(v.limit, Money::sek(1500));
    // A holder-requested lower limit stays when the first invoice is paid.
    s.set_limit(
        &n(NUM_A),
        &LimitChange::HolderRequested(Money::sek(300)),
        "support",
        T0,
    )
    .await
    .unwrap();
    allowed(&s, NUM_A, "c1", TAROT, T0).await;
    s.post_usage(&usage("c1", TAROT, MERCHANT, 60), T0 + 70_000)
        .await
        .unwrap();
    let inv = InvoiceApply {
        invoice_id: Reference::parse("i1").unwrap(),
        usage: Money::ore_unchecked(2990),
        fees: Money::ZERO,
    };
    s.apply_invoice(&n(NUM_A), &inv, T0).await.unwrap();
    let pay = PaymentApply {
        payment_id: Reference::parse("p1").unwrap(),
        amount: Money::ore_unchecked(2990),
        clear_overdue: true,
        first_invoice_paid: true,
    };
    s.apply_payment(&n(NUM_A), &pay, T0).await.unwrap();
    let v = s.account(&n(NUM_A)).await.unwrap();
    assert!(v.established);
    assert_eq!(v.limit, Money::sek(300));
    // Lowering the limit below the exposure blocks at once.
    allowed(&s, NUM_A, "c2", TAROT, T0).await;
    s.post_usage(&usage("c2", TAROT, MERCHANT, 300), T0 + 400_000)
        .await
        .unwrap();
    let v = s
        .set_limit(
            &n(NUM_A),
            &LimitChange::HolderRequested(Money::sek(100)),
            "support",
            T0,
        )
        .await
        .unwrap();
    assert!(v.credit_blocked);
    assert_eq!(count(&events(&s).await, "limit_changed"), 5);
}

pub async fn reconciliation_repairs_balances<S: Store>(s: S) {
    ready(&s).await;
    allowed(&s, NUM_A, "c1", TAROT, T0).await;
    s.post_usage(&usage("c1", TAROT, MERCHANT, 60), T0 + 70_000)
        .await
        .unwrap();
    // The ledger says 1 300 SEK unbilled (e.g. usage lost by a failover was re-posted there).
    let v = s
        .repair_balances(
            &n(NUM_A),
            Money::sek(1300),
            Money::sek(100),
            "ledger",
            T0 + 80_000,
        )
        .await
        .unwrap();
    assert_eq!(v.unbilled, Money::sek(1300));
    assert_eq!(v.invoiced_unpaid, Money::sek(100));
    assert!(v.threshold_reached, "1 400 of 1 500 is past 80 %");
    assert!(!v.credit_blocked);
    let v = s
        .repair_balances(
            &n(NUM_A),
            Money::sek(10),
            Money::ZERO,
            "ledger",
            T0 + 90_000,
        )
        .await
        .unwrap();
    assert!(!v.threshold_reached, "re-armed below 80 %");
    let ev = events(&s).await;
    assert_eq!(count(&ev, "balances_repaired"), 2);
    assert!(s
        .repair_balances(&n(NUM_A), Money::ore_unchecked(-1), Money::ZERO, "x", T0)
        .await
        .is_err());
}

/// Zero amounts: a 0-second call costs nothing (postpaid and prepaid), and
/// an invoice of fees only (a reminder fee) moves nothing from unbilled.
/// (In Lua `-0` reaches Redis as "-0", which HINCRBY refuses.)
pub async fn zero_amounts_are_handled<S: Store>(s: S) {
    ready(&s).await;
    allowed(&s, NUM_A, "c1", TAROT, T0).await;
    let r = s
        .post_usage(&usage("c1", TAROT, MERCHANT, 0), T0 + 1000)
        .await
        .unwrap();
    assert_eq!(
        r,
        UsageOutcome::Applied(Posting {
            charge: Money::ZERO,
            billed_seconds: 0,
            overrun_seconds: 0,
            late: false,
            threshold_reached: false,
            limit_reached: false,
        })
    );
    let IssueOutcome::Issued { view: code, .. } = s
        .issue_prepaid(
            &hasher(),
            Money::sek(100),
            &Reference::parse("buy-0").unwrap(),
            T0,
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    let svc = service(&s, TAROT).await;
    let mut c = call("c2", &svc, true);
    c.consent.as_mut().unwrap().own_number_confirmed = false;
    let d = s
        .authorize_prepaid(
            &LineKey::number(&n(NUM_B)),
            Some(&n(NUM_B)),
            &code.code_id,
            &c,
            T0,
        )
        .await
        .unwrap();
    assert!(matches!(d.decision, Decision::Allowed(_)));
    let r = s
        .post_usage(&usage("c2", TAROT, MERCHANT, 0), T0 + 1000)
        .await
        .unwrap();
    assert!(
        matches!(r, UsageOutcome::Applied(p) if p.charge == Money::ZERO),
        "{r:?}"
    );
    let v = s.prepaid(&code.code_id).await.unwrap().unwrap();
    assert_eq!((v.balance, v.pending), (Money::sek(100), Money::ZERO));
    // A fee-only invoice (a reminder) and a zero payment.
    let fee = InvoiceApply {
        invoice_id: Reference::parse("inv-1-reminder").unwrap(),
        usage: Money::ZERO,
        fees: Money::sek(60),
    };
    assert_eq!(
        s.apply_invoice(&n(NUM_A), &fee, T0).await.unwrap(),
        Applied::Applied
    );
    assert_eq!(
        s.apply_invoice(&n(NUM_A), &fee, T0).await.unwrap(),
        Applied::AlreadyApplied
    );
    let acct = s.account(&n(NUM_A)).await.unwrap();
    assert_eq!(
        (acct.unbilled, acct.invoiced_unpaid),
        (Money::ZERO, Money::sek(60))
    );
    let pay = PaymentApply {
        payment_id: Reference::parse("p0").unwrap(),
        amount: Money::ZERO,
        clear_overdue: false,
        first_invoice_paid: false,
    };
    assert_eq!(
        s.apply_payment(&n(NUM_A), &pay, T0).await.unwrap(),
        Applied::Applied
    );
    assert_eq!(
        s.account(&n(NUM_A)).await.unwrap().invoiced_unpaid,
        Money::sek(60)
    );
}

pub async fn catalog_versions_terms<S: Store>(s: S) {
    seed_catalog(&s).await;
    let v1 = s.catalog_version().await.unwrap();
    let old = service(&s, TAROT).await;
    let change = s
        .upsert_service(&spec(TAROT, MERCHANT, "Tarotlinjen", 3490, 60, 0), T0 + 1)
        .await
        .unwrap();
    assert!(change.new_terms.is_some());
    assert!(s.catalog_version().await.unwrap() > v1);
    let cat = s.catalog().await.unwrap();
    assert_eq!(
        cat.service(&n(TAROT))
            .unwrap()
            .terms
            .tariff
            .price_per_minute,
        Money::ore_unchecked(3490)
    );
    // The old terms are still there, unchanged.
    assert_eq!(
        cat.terms(&old.terms.terms_id)
            .unwrap()
            .tariff
            .price_per_minute,
        Money::ore_unchecked(2990)
    );
    // Unknown merchant refused.
    assert!(matches!(
        s.upsert_service(&spec("+469007007070", "nobody", "X", 100, 60, 0), T0)
            .await,
        Err(StoreError::Rejected(_))
    ));
}

/// A small deterministic generator, so that the random interleavings test
/// runs the same sequences on every backend.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random interleavings of authorize / extend / post / release / expire on
/// one number: exposure plus pending never passes the limit except through a
/// post-grant overrun or usage posted after its hold expired, pending always equals the open holds, and every
/// posted charge lands in unbilled (money is conserved).
pub async fn random_interleavings_keep_money_exact<S: Store>(s: S) {
    ready(&s).await;
    let services = [TAROT, LEGAL, CHAT];
    // How often each path was taken, so the test cannot pass by doing nothing.
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    for seed in 0..12u64 {
        let number = n(&format!("+4670{:07}", 1_000_000 + seed));
        s.put_directory(&number, true, "test", T0).await.unwrap();
        let mut rng = Rng::new(seed + 1);
        let mut now = T0;
        let mut open: BTreeMap<String, (String, Grant, i64)> = BTreeMap::new();
        let mut posted_total = Money::ZERO;
        let mut overran = false;
        let mut seq: HashMap<String, u32> = HashMap::new();
        for step in 0..60 {
            now += rng.below(400_000) as i64;
            match rng.below(6) {
                0 | 1 => {
                    let svc_no = services[rng.below(3) as usize];
                    let svc = service(&s, svc_no).await;
                    let id = format!("s{seed}-c{step}");
                    if let Decision::Allowed(g) = s
                        .authorize(&number, &call(&id, &svc, true), now)
                        .await
                        .unwrap()
                        .decision
                    {
                        open.insert(id, (svc_no.to_string(), g, now));
                        *seen.entry("allowed").or_default() += 1;
                    } else {
                        *seen.entry("denied").or_default() += 1;
                    }
                }
                2 => {
                    if let Some(id) = open.keys().next().cloned() {
                        let k = seq.entry(id.clone()).or_insert(0);
                        *k += 1;
                        let r = s.extend(&call_id(&id), *k, now).await.unwrap();
                        if r.outcome == ExtendOutcome::Extended {
                            *seen.entry("extended").or_default() += 1;
                            open.get_mut(&id).unwrap().1 = Grant {
                                granted_seconds: r.granted_seconds_total,
                                hold: r.hold,
                            };
                        }
                    }
                }
                3 => {
                    if let Some(id) = open.keys().next().cloned() {
                        let (svc, g, authorized_at) = open.remove(&id).unwrap();
                        // Mostly within the grant, sometimes past it.
                        let d = if rng.below(5) == 0 {
                            g.granted_seconds + rng.below(600) as u32
                        } else {
                            rng.below(u64::from(g.granted_seconds) + 1) as u32
                        };
                        let r = s
                            .post_usage(&usage_at(&id, &svc, MERCHANT, d, authorized_at), now)
                            .await
                            .unwrap();
                        let UsageOutcome::Applied(p) = r else {
                            panic!("seed {seed} step {step}: {r:?}")
                        };
                        posted_total += p.charge;
                        // The two documented ways past the limit: a call that ran past
                        // its grant, and usage that arrived after its hold expired.
                        overran |= p.overrun_seconds > 0 || p.late;
                        *seen.entry("posted").or_default() += 1;
                        if p.late {
                            *seen.entry("late").or_default() += 1;
                        }
                        if p.overrun_seconds > 0 {
                            *seen.entry("overrun").or_default() += 1;
                        }
                    }
                }
                4 => {
                    if let Some(id) = open.keys().next().cloned() {
                        open.remove(&id);
                        if matches!(
                            s.release(&call_id(&id), now).await.unwrap(),
                            ReleaseOutcome::Voided(_)
                        ) {
                            *seen.entry("voided").or_default() += 1;
                        }
                    }
                }
                _ => {
                    *seen.entry("expired").or_default() +=
                        s.expire_due(now, 1000).await.unwrap() as u32;
                    // Holds whose time passed are no longer open for posting within a grant.
                    let acct = s.account(&number).await.unwrap();
                    if acct.pending_calls == 0 {
                        open.clear();
                    }
                }
            }
            let acct = s.account(&number).await.unwrap();
            assert_eq!(
                acct.unbilled, posted_total,
                "seed {seed} step {step}: money conserved"
            );
            assert!(acct.pending >= Money::ZERO);
            if !overran {
                assert!(
                    acct.exposure() + acct.pending <= acct.limit,
                    "seed {seed} step {step}: {acct:?}"
                );
            }
        }
        // Drain: expire everything, pending must return to zero.
        s.expire_due(now + 100_000_000, 100_000).await.unwrap();
        let acct = s.account(&number).await.unwrap();
        assert_eq!(acct.pending, Money::ZERO, "seed {seed}");
        assert_eq!(acct.pending_calls, 0, "seed {seed}");
        assert_eq!(acct.unbilled, posted_total, "seed {seed}");
    }
    for path in [
        "allowed", "denied", "extended", "posted", "late", "overrun", "voided", "expired",
    ] {
        assert!(
            seen.get(path).copied().unwrap_or(0) > 0,
            "path {path} never taken: {seen:?}"
        );
    }
}

/// Many tasks authorizing for one number at once never hold more than the
/// limit; the same call id retried concurrently creates one hold.
pub async fn concurrent_authorizations_never_overspend<S: Store + Clone>(s: S) {
    ready(&s).await;
    let svc = service(&s, CHAT).await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let s = s.clone();
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            s.authorize(&n(NUM_A), &call(&format!("k{i}"), &svc, true), T0)
                .await
                .unwrap()
        }));
    }
    let mut held = Money::ZERO;
    for t in tasks {
        if let Decision::Allowed(g) = t.await.unwrap().decision {
            held += g.hold;
        }
    }
    let acct = s.account(&n(NUM_A)).await.unwrap();
    assert_eq!(acct.pending, held, "the sum of grants is what is held");
    assert!(held <= Money::sek(1500), "held {held}");
    assert!(
        acct.available() < Money::ore_unchecked(34),
        "credit is used up: {acct:?}"
    );

    let mut tasks = Vec::new();
    for _ in 0..32 {
        let s = s.clone();
        let svc = service(&s, TAROT).await;
        tasks.push(tokio::spawn(async move {
            s.authorize(&n(NUM_B), &call("same", &svc, true), T0)
                .await
                .unwrap()
        }));
    }
    let mut fresh = 0;
    for t in tasks {
        let r = t.await.unwrap();
        assert!(matches!(r.decision, Decision::Allowed(_)));
        if !r.replayed {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1, "exactly one hold was created");
    assert_eq!(s.account(&n(NUM_B)).await.unwrap().pending_calls, 1);
}

/// Every test of the suite, instantiated for one backend. `$factory` is an
/// async expression that yields a fresh, isolated store.
#[macro_export]
macro_rules! store_suite {
    ($factory:expr) => {
        $crate::store_suite!(@tests $factory;
            directory_decides_who_may_be_invoiced,
            consent_required_then_allowed_with_hold,
            stale_terms_need_new_consent,
            retried_authorize_returns_first_answer,
            call_id_reuse_is_refused,
            concurrent_calls_share_credit,
            minimum_charge_applies,
            usage_is_rated_and_idempotent,
            usage_carries_the_accepted_terms_vat_rate,
            bad_usage_changes_nothing,
            threshold_event_fires_once,
            limit_blocks_and_payment_lifts,
            settlement_amounts_are_checked,
            overdue_block_set_and_lifted_by_payment,
            holder_blocks_stop_postpaid_and_prepaid,
            credit_blocked_number_may_use_prepaid,
            prepaid_issue_and_top_up_are_idempotent,
            wrong_codes_lock_the_line_out,
            release_voids_and_blocks_later_usage,
            holds_expire_and_late_usage_is_charged,
            extend_grows_the_grant_idempotently,
            limits_follow_r9,
            catalog_versions_terms,
            reconciliation_repairs_balances,
            zero_amounts_are_handled,
            random_interleavings_keep_money_exact,
            concurrent_authorizations_never_overspend,
        );
    };
    (@tests $factory:expr; $($name:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store = $factory.await;
                $crate::suite::$name(store).await;
            }
        )*
    };
}
