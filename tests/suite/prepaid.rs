//! Prepaid codes: issue, top-up, the wrong-code lockout, credit-blocked callers (R17).

use super::*;

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

/// A payment reference pays for one thing once (issue 10): the same
/// `topup_ref` for a second code adds nothing there; a reference reused with
/// another amount, or across purchase and top-up, is refused.
pub async fn a_payment_reference_pays_once<S: Store>(s: S) {
    ready(&s).await;
    let issue = |r: &str, sek: i64| {
        let (s, r) = (&s, Reference::parse(r).unwrap());
        async move {
            match s.issue_prepaid(&hasher(), Money::sek(sek), &r, T0).await {
                Ok(IssueOutcome::Issued { view, .. }) => Ok(view.code_id),
                Ok(other) => panic!("{other:?}"),
                Err(e) => Err(e),
            }
        }
    };
    let first = issue("swish-1", 100).await.unwrap();
    let second = issue("swish-2", 100).await.unwrap();
    let pay = Reference::parse("bg-50").unwrap();
    let v = s
        .top_up_prepaid(&first, Money::sek(50), &pay, T0)
        .await
        .unwrap();
    assert_eq!(v.balance, Money::sek(150));
    // The same reference for the second code: refused, nothing credited.
    assert!(matches!(
        s.top_up_prepaid(&second, Money::sek(50), &pay, T0).await,
        Err(StoreError::Rejected(_))
    ));
    assert_eq!(
        s.prepaid(&second).await.unwrap().unwrap().balance,
        Money::sek(100)
    );
    // The same code with another amount: refused, not answered as before.
    assert!(matches!(
        s.top_up_prepaid(&first, Money::sek(60), &pay, T0).await,
        Err(StoreError::Rejected(_))
    ));
    // A purchase reference as a top-up, and a top-up reference as a purchase.
    assert!(matches!(
        s.top_up_prepaid(
            &first,
            Money::sek(100),
            &Reference::parse("swish-2").unwrap(),
            T0
        )
        .await,
        Err(StoreError::Rejected(_))
    ));
    assert!(matches!(
        issue("bg-50", 50).await,
        Err(StoreError::Rejected(_))
    ));
    // A purchase retried with another amount.
    assert!(matches!(
        issue("swish-1", 200).await,
        Err(StoreError::Rejected(_))
    ));
    // The same top-up again is answered, once credited.
    let v = s
        .top_up_prepaid(&first, Money::sek(50), &pay, T0)
        .await
        .unwrap();
    assert_eq!(v.balance, Money::sek(150));
    let ev = events(&s).await;
    assert_eq!(
        count(&ev, "prepaid_credited"),
        3,
        "two purchases, one top-up"
    );
}

/// A prepaid call that ran past its grant is debited at most what the code
/// holds beside its other calls' holds; the rest is uncollected and the
/// balance never goes negative (issue 10).
pub async fn a_prepaid_overrun_never_drives_a_code_negative<S: Store>(s: S) {
    ready(&s).await;
    let buy = Reference::parse("swish-small").unwrap();
    let IssueOutcome::Issued { view, .. } = s
        .issue_prepaid(&hasher(), Money::sek(60), &buy, T0)
        .await
        .unwrap()
    else {
        panic!("issued")
    };
    let svc = service(&s, TAROT).await;
    let line = LineKey::number(&n(NUM_A));
    // 60,00 kr at 29,90 kr/min: two minutes (59,80 kr) are granted and held.
    let r = s
        .authorize_prepaid(
            &line,
            Some(&n(NUM_A)),
            &view.code_id,
            &call("p1", &svc, true),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(
        r.decision,
        Decision::Allowed(Grant {
            granted_seconds: 120,
            hold: Money::ore_unchecked(5980)
        })
    );
    // The IVR let it run 10 minutes: 299,00 kr rated, 60,00 kr on the code.
    let out = s
        .post_usage(&usage("p1", TAROT, MERCHANT, 600), T0 + 700_000)
        .await
        .unwrap();
    assert_eq!(
        out,
        UsageOutcome::Applied(Posting {
            charge: Money::sek(60),
            uncollected: Money::ore_unchecked(29_900 - 6000),
            billed_seconds: 600,
            overrun_seconds: 480,
            late: false,
            threshold_reached: false,
            limit_reached: false,
        })
    );
    let v = s.prepaid(&view.code_id).await.unwrap().unwrap();
    assert_eq!(v.balance, Money::ZERO);
    assert_eq!(v.pending, Money::ZERO);
    let ev = events(&s).await;
    let posted = ev
        .iter()
        .find_map(|e| match &e.body {
            EventBody::UsagePosted(u) if u.call_id == "p1" => Some(u.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!((posted.charge_ore, posted.uncollected_ore), (6000, 23_900));
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
    s.release(&call_id("ok2"), IVR, T0 + 200).await.unwrap();
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
