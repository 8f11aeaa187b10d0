//! Usage: rating, idempotency and refusals (R4, R20).

use super::*;

pub async fn usage_is_rated_and_idempotent<S: Store>(s: S) {
    ready(&s).await;
    allowed(&s, NUM_A, "c1", TAROT, T0).await;
    let u = usage("c1", TAROT, MERCHANT, 61);
    let first = s.post_usage(&u, T0 + 70_000).await.unwrap();
    let p = Posting {
        charge: Money::ore_unchecked(5980),
        uncollected: Money::ZERO,
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
