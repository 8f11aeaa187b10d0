//! Accounts: the 80 % and 100 % rules, blocks, limits, invoices, payments and repairs (R6–R9, R15).

use super::*;

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
            uncollected: Money::ZERO,
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
