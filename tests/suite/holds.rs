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

/// R10: a sweep expires exactly the pending holds due by its time, earliest
/// expiry first and at most `max` of them, whatever extensions, releases and
/// postings did before. (On Redis the expiry index lists call ids per second
/// of expiry: an extension moves a hold to a later second, an ended call
/// leaves an entry the sweep drops, and a due hold is kept when `max` is
/// reached — issue 13.1.)
pub async fn a_sweep_expires_exactly_the_due_holds_in_order<S: Store>(s: S) {
    ready(&s).await;
    // One number (one partition: a sweep takes partitions one after the
    // other), with room for six calls.
    let room = LimitChange::CreditDecision {
        limit: Money::sek(10_000),
        credit_check_reference: "UC-1".into(),
        decided_by: "credit".into(),
    };
    s.set_limit(&n(NUM_A), &room, "test", T0).await.unwrap();
    let grace = policy().hold_grace_ms;
    let expiry = |at: i64, g: &Grant| at + i64::from(g.granted_seconds) * 1000 + grace;
    let a = allowed(&s, NUM_A, "sw-a", TAROT, T0).await;
    let b = allowed(&s, NUM_A, "sw-b", TAROT, T0 + 300).await;
    allowed(&s, NUM_A, "sw-released", TAROT, T0).await;
    allowed(&s, NUM_A, "sw-posted", TAROT, T0).await;
    let e = allowed(&s, NUM_A, "sw-e", TAROT, T0 + 2_000).await;
    allowed(&s, NUM_A, "sw-f", TAROT, T0).await;
    let (ea, eb, ee) = (expiry(T0, &a), expiry(T0 + 300, &b), expiry(T0 + 2_000, &e));
    assert_eq!(eb, ea + 300);

    s.release(&call_id("sw-released"), IVR, T0 + 50)
        .await
        .unwrap();
    s.post_usage(&usage("sw-posted", TAROT, MERCHANT, 30), T0 + 60_000)
        .await
        .unwrap();
    let f = s
        .extend(&call_id("sw-f"), IVR, 1, T0 + 60_100)
        .await
        .unwrap();
    assert_eq!(f.outcome, ExtendOutcome::Extended);
    let ef = f.hold_expires_at_ms;
    assert!(ef > ee, "the extension moved the hold after the others");
    assert_eq!(s.stats().await.unwrap().pending_holds, 4);

    let expired_ids = |events: Vec<callauth::domain::Event>| -> Vec<String> {
        events
            .into_iter()
            .filter_map(|e| match e.body {
                EventBody::HoldExpired(h) => Some(h.call_id.to_string()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(s.expire_due(ea - 1, 10).await.unwrap(), 0);
    // Both a and b are due; max 1 takes the earlier and keeps the other.
    assert_eq!(s.expire_due(eb, 1).await.unwrap(), 1);
    assert_eq!(expired_ids(events(&s).await), ["sw-a"]);
    assert_eq!(s.expire_due(eb, 10).await.unwrap(), 1);
    assert_eq!(s.expire_due(ee - 1, 10).await.unwrap(), 0);
    assert_eq!(s.stats().await.unwrap().pending_holds, 2);
    assert_eq!(s.expire_due(ee, 10).await.unwrap(), 1);
    assert_eq!(s.expire_due(ef - 1, 10).await.unwrap(), 0);
    assert_eq!(s.expire_due(ef, 10).await.unwrap(), 1);
    assert_eq!(s.expire_due(ef + 1_000_000_000, 10).await.unwrap(), 0);
    assert_eq!(
        expired_ids(events(&s).await),
        ["sw-a", "sw-b", "sw-e", "sw-f"]
    );
    assert_eq!(s.stats().await.unwrap().pending_holds, 0);
    let acct = s.account(&n(NUM_A)).await.unwrap();
    assert_eq!(acct.pending, Money::ZERO);
    assert_eq!(acct.pending_calls, 0);
}
