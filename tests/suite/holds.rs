//! A hold's life: release, expiry, extension (R10).

use super::*;

pub async fn release_voids_and_blocks_later_usage<S: Store>(s: S) {
    ready(&s).await;
    let g = allowed(&s, NUM_A, "c1", TAROT, T0).await;
    assert_eq!(
        s.release(&call_id("c1"), IVR, T0 + 5000).await.unwrap(),
        ReleaseOutcome::Voided(g.hold)
    );
    assert_eq!(
        s.release(&call_id("c1"), IVR, T0 + 6000).await.unwrap(),
        ReleaseOutcome::AlreadyVoided
    );
    assert_eq!(
        s.release(&call_id("nope"), IVR, T0).await.unwrap(),
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
        s.release(&call_id("c2"), IVR, T0 + 8000).await.unwrap(),
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
        s.release(&call_id("c1"), IVR, expiry + 2).await.unwrap(),
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
            uncollected: Money::ZERO,
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
    let e = s.extend(&call_id("c1"), IVR, 1, expiry + 20).await.unwrap();
    assert_eq!(e.outcome, ExtendOutcome::Refused(DenyReason::CallEnded));
}

pub async fn extend_grows_the_grant_idempotently<S: Store>(s: S) {
    ready(&s).await;
    let g = allowed(&s, NUM_A, "c1", TAROT, T0).await;
    let e1 = s
        .extend(&call_id("c1"), IVR, 1, T0 + 800_000)
        .await
        .unwrap();
    assert_eq!(e1.outcome, ExtendOutcome::Extended);
    assert_eq!(e1.granted_seconds_total, 1800);
    assert_eq!(e1.added_seconds, 900);
    assert_eq!(e1.hold, Money::ore_unchecked(30 * 2990));
    assert_eq!(
        e1.hold_expires_at_ms,
        T0 + 1_800_000 + policy().hold_grace_ms
    );
    let again = s
        .extend(&call_id("c1"), IVR, 1, T0 + 800_100)
        .await
        .unwrap();
    assert_eq!(
        again,
        ExtendResult {
            replayed: true,
            ..e1
        }
    );
    assert_eq!(s.account(&n(NUM_A)).await.unwrap().pending, e1.hold);
    assert!(matches!(
        s.extend(&call_id("c1"), IVR, 3, T0).await,
        Err(StoreError::Rejected(_))
    ));
    // 1 500 SEK = 50 minutes in all: the next extension gets 15, the one after 5, then none.
    let e2 = s
        .extend(&call_id("c1"), IVR, 2, T0 + 1_700_000)
        .await
        .unwrap();
    assert_eq!(e2.granted_seconds_total, 2700);
    // A late retry of an earlier sequence (1, 2, then 1 again) gets its
    // first answer, not "out of order" (issue 10).
    let late = s
        .extend(&call_id("c1"), IVR, 1, T0 + 1_700_100)
        .await
        .unwrap();
    assert_eq!(
        late,
        ExtendResult {
            replayed: true,
            ..e1
        }
    );
    assert_eq!(
        s.account(&n(NUM_A)).await.unwrap().pending,
        e2.hold,
        "a replay changes nothing"
    );
    let e3 = s
        .extend(&call_id("c1"), IVR, 3, T0 + 2_600_000)
        .await
        .unwrap();
    assert_eq!(e3.granted_seconds_total, 3000);
    let e4 = s
        .extend(&call_id("c1"), IVR, 4, T0 + 2_900_000)
        .await
        .unwrap();
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
    let e5 = s
        .extend(&call_id("c1"), IVR, 5, T0 + 2_950_000)
        .await
        .unwrap();
    assert_eq!(
        e5.outcome,
        ExtendOutcome::Refused(DenyReason::BlockedByHolder)
    );
    assert!(matches!(
        s.extend(&call_id("nope"), IVR, 1, T0).await,
        Err(StoreError::NotFound(_))
    ));
    let _ = g;
}
