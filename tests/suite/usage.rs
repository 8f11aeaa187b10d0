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
