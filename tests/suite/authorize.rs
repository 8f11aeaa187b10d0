//! Authorize: who may be invoiced, consent, retries, call ids, grants (R2–R4, R10).

use super::*;

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
}

/// A retry after the call ended — posted, released or expired — says so
/// (`CALL_ENDED`, replayed), never a grant that no longer exists (issue 10).
pub async fn a_retry_after_the_call_ended_says_so<S: Store>(s: S) {
    ready(&s).await;
    let svc = service(&s, TAROT).await;
    let ended = AuthorizeResult {
        replayed: true,
        ..AuthorizeResult::refused(Decision::Denied(DenyReason::CallEnded))
    };
    // Posted.
    allowed(&s, NUM_A, "c1", TAROT, T0).await;
    s.post_usage(&usage("c1", TAROT, MERCHANT, 30), T0 + 60_000)
        .await
        .unwrap();
    let r = s
        .authorize(&n(NUM_A), &call("c1", &svc, true), T0 + 70_000)
        .await
        .unwrap();
    assert_eq!(r, ended);
    // Released.
    allowed(&s, NUM_A, "c2", TAROT, T0).await;
    s.release(&call_id("c2"), IVR, T0 + 1000).await.unwrap();
    let r = s
        .authorize(&n(NUM_A), &call("c2", &svc, true), T0 + 2000)
        .await
        .unwrap();
    assert_eq!(r, ended);
    // Past its expiry (900 s + 120 s grace), before and after the sweep.
    allowed(&s, NUM_A, "c3", TAROT, T0).await;
    let after = T0 + 1_020_000;
    let r = s
        .authorize(&n(NUM_A), &call("c3", &svc, true), after)
        .await
        .unwrap();
    assert_eq!(r, ended);
    s.expire_due(after, 100).await.unwrap();
    let r = s
        .authorize(&n(NUM_A), &call("c3", &svc, false), after + 1)
        .await
        .unwrap();
    assert_eq!(r, ended, "without consent too");
    // Nothing is held and the usage of the ended calls is not posted again.
    let acct = s.account(&n(NUM_A)).await.unwrap();
    assert_eq!(acct.pending, Money::ZERO);
    assert_eq!(acct.pending_calls, 0);
    assert_eq!(acct.unbilled, Money::ore_unchecked(2990));
}

/// A call belongs to the IVR client that authorized it: another client may
/// not extend or release it, nor authorize under its call id (issue 10).
pub async fn a_call_is_bound_to_its_ivr_client<S: Store>(s: S) {
    ready(&s).await;
    let g = allowed(&s, NUM_A, "c1", TAROT, T0).await;
    assert!(matches!(
        s.extend(&call_id("c1"), "ivr-other", 1, T0 + 1000).await,
        Err(StoreError::Forbidden(_))
    ));
    assert!(matches!(
        s.release(&call_id("c1"), "ivr-other", T0 + 1000).await,
        Err(StoreError::Forbidden(_))
    ));
    let svc = service(&s, TAROT).await;
    let mut other = call("c1", &svc, true);
    other.evidence.ivr_client = "ivr-other".into();
    assert!(matches!(
        s.authorize(&n(NUM_A), &other, T0 + 1000).await,
        Err(StoreError::Rejected(_))
    ));
    // Nothing changed: the hold is still the owner's, who may release it.
    assert_eq!(s.account(&n(NUM_A)).await.unwrap().pending, g.hold);
    assert_eq!(
        s.release(&call_id("c1"), IVR, T0 + 2000).await.unwrap(),
        ReleaseOutcome::Voided(g.hold)
    );
}

/// Two callers racing for one call id: exactly one hold, and only the
/// winner's consent is recorded — on a cluster the loser must not write an
/// event under the winner's event ids (issue 10).
pub async fn colliding_call_ids_record_one_consent<S: Store + Clone>(s: S) {
    ready(&s).await;
    let svc = service(&s, TAROT).await;
    for round in 0..20 {
        let id = format!("x{round}");
        let (a, b) = (s.clone(), s.clone());
        let (ca, cb) = (call(&id, &svc, true), call(&id, &svc, true));
        let (ra, rb) = tokio::join!(
            async move { a.authorize(&n(NUM_A), &ca, T0 + round).await },
            async move { b.authorize(&n(NUM_B), &cb, T0 + round).await },
        );
        let winner = match (&ra, &rb) {
            (Ok(r), Err(StoreError::Rejected(_))) if r.decision.kind_label() == "allowed" => NUM_A,
            (Err(StoreError::Rejected(_)), Ok(r)) if r.decision.kind_label() == "allowed" => NUM_B,
            other => panic!("round {round}: {other:?}"),
        };
        let consents: Vec<_> = events(&s)
            .await
            .into_iter()
            .filter(|e| e.event_id == format!("consent:{id}"))
            .collect();
        assert_eq!(consents.len(), 1, "round {round}: {consents:?}");
        match &consents[0].body {
            EventBody::ConsentRecorded(c) => assert_eq!(c.number, winner, "round {round}"),
            other => panic!("{other:?}"),
        }
        let pending = s.account(&n(NUM_A)).await.unwrap().pending_calls
            + s.account(&n(NUM_B)).await.unwrap().pending_calls;
        assert_eq!(pending, 1, "round {round}: one hold per call id");
        // The winner ends the call; its void is the only one, and dated now.
        s.release(&call_id(&id), IVR, T0 + round + 1).await.unwrap();
        let voids: Vec<_> = events(&s)
            .await
            .into_iter()
            .filter(|e| e.event_id == format!("voided:{id}"))
            .collect();
        assert_eq!(voids.len(), 1, "round {round}: {voids:?}");
        assert_eq!(voids[0].at_ms, T0 + round + 1);
    }
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
            uncollected: Money::ZERO,
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
