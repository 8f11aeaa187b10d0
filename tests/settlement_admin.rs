//! Merchant settlements (R20), personal data (R21, R22) and reconciliation,
//! against a real Redis and a real PostgreSQL.

mod common;

use callauth::domain::{Money, E164};
use callauth::settlement::privacy::personal::{self, HolderInput};
use callauth::settlement::{
    billing::merchants, ledger, sync::reconcile, SettlementError, SettlementPolicy,
};
use callauth::store::Store;
use chrono::NaiveDate;
use common::settle::World;
use common::*;

const A: &str = "+46701234567";
const B: &str = "+46702345678";

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// Marks an invoice paid in the ledger's tables only (the payments module has
/// its own tests; here only the merchant statement's notion of "collected" matters).
async fn mark_paid(w: &World, number: &str) {
    sqlx::query("update invoices set status = 'paid', paid_ore = total_ore, paid_at = '2025-11-25T10:00:00Z' where number = $1")
        .bind(number)
        .execute(&w.db.pool)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merchants_are_settled_for_billed_and_collected_usage_once() {
    let w = World::new(T0, &[A, B], SettlementPolicy::default()).await;
    // A: 41 min tarot (stjarnlinjen) → threshold invoice; and a psychology call (radgivarna).
    let tarot = w.call(A, "a1", TAROT, 41 * 60).await;
    let psych = w.call(A, "a2", PSYCH, 120).await;
    // B: a small call, not invoiced yet (not collected).
    w.call(B, "b1", TAROT, 60).await;
    w.settle().await;
    // The threshold invoice holds everything A posted when settlement read the
    // threshold event: a1 and a2. It is paid; B's call is not even invoiced.
    mark_paid(&w, A).await;

    let stmts = merchants::run_statements(&w.settlement, date(2025, 12, 1))
        .await
        .unwrap();
    let by: std::collections::HashMap<_, _> =
        stmts.iter().map(|s| (s.merchant_id.as_str(), s)).collect();
    let st = by["stjarnlinjen"];
    assert_eq!(st.calls, 1, "only the collected tarot call, not B's");
    // 41 minutes at 29,90 = 1 225,90 incl. 25 % VAT (1 225,90 / 5 = 245,18);
    // our 15 % is on the 980,72 without VAT: 147,108 → 147,11; paid out 833,61.
    assert_eq!(st.gross_ore, tarot.ore());
    assert_eq!(st.gross_ore, 122_590);
    assert_eq!(st.vat_ore, 24_518);
    assert_eq!(st.fee_ore, 14_711);
    assert_eq!(st.net_ore, 83_361);
    assert_eq!(st.period_start, date(2025, 11, 1));
    assert_eq!(st.period_end, date(2025, 11, 30));
    assert_eq!(
        st.payout_reference.as_deref(),
        Some("PAYOUT-stjarnlinjen-202511")
    );
    let rg = by["radgivarna"];
    // 2 minutes at 34,90 = 69,80 incl. 13,96 VAT; 15 % of 55,84 = 8,376 → 8,38.
    assert_eq!((rg.calls, rg.gross_ore), (1, psych.ore()));
    assert_eq!((rg.gross_ore, rg.vat_ore, rg.fee_ore), (6_980, 1_396, 838));

    // Running the day again makes nothing new; another day is not a settlement day.
    assert!(merchants::run_statements(&w.settlement, date(2025, 12, 1))
        .await
        .unwrap()
        .is_empty());
    assert!(merchants::run_statements(&w.settlement, date(2025, 12, 2))
        .await
        .unwrap()
        .is_empty());
    let lines = merchants::statement_lines(&w.db.pool, st.id).await.unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].service_number, TAROT);
    let listed = merchants::statements(&w.db.pool, Some("stjarnlinjen"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let mut conn = w.db.pool.acquire().await.unwrap();
    assert_eq!(ledger::total(&mut conn).await.unwrap(), 0);
    assert_eq!(
        ledger::balance(&mut conn, ledger::account::INCOME_MERCHANT_FEE)
            .await
            .unwrap(),
        -(st.fee_ore + rg.fee_ore)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extract_shows_everything_and_erasure_waits_for_the_debt() {
    let w = World::new(T0, &[A], SettlementPolicy::default()).await;
    let mut conn = w.db.pool.acquire().await.unwrap();
    let holder = personal::upsert_holder(
        &mut conn,
        &HolderInput {
            number: "070-123 45 67".into(),
            name: Some("Anna Andersson".into()),
            address_lines: vec!["Storgatan 1".into(), "111 22 Stockholm".into()],
            email: Some("anna@example.se".into()),
            invoice_delivery: "email".into(),
            personal_number: Some("196408233234".into()),
        },
        "support",
    )
    .await
    .unwrap();
    assert!(holder.customer_number.starts_with('K'));
    assert!(personal::upsert_holder(
        &mut conn,
        &HolderInput {
            number: A.into(),
            name: None,
            address_lines: vec![],
            email: None,
            invoice_delivery: "email".into(),
            personal_number: None,
        },
        "support"
    )
    .await
    .is_err());
    drop(conn);

    w.call(A, "a1", TAROT, 41 * 60).await;
    w.settle().await;
    // An e-mail holder pays no paper fee (R13).
    let fees: i64 = sqlx::query_scalar("select fees_ore from invoices where number = $1")
        .bind(A)
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
    assert_eq!(fees, 0);

    let x = personal::extract(&w.db.pool, A, "support", chrono::Utc::now())
        .await
        .unwrap();
    assert!(x.free);
    assert_eq!(x.json["holder"]["name"], "Anna Andersson");
    assert_eq!(x.json["invoices"].as_array().unwrap().len(), 1);
    assert_eq!(x.json["calls"].as_array().unwrap().len(), 1);
    assert_eq!(x.json["consents"].as_array().unwrap().len(), 1);
    assert!(!x.json["invoices"][0]["lines"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(x.text.contains("Registerutdrag för 070-123 45 67"));
    assert!(x.text.contains("Anna Andersson"));
    let again = personal::extract(&w.db.pool, A, "support", chrono::Utc::now())
        .await
        .unwrap();
    assert!(
        !again.free,
        "the second extract within a year is not the free one"
    );

    // Erasure is refused while the invoice is open (Art. 17(3)(e)).
    match personal::erase(&w.settlement, A, "support").await {
        Err(SettlementError::Refused(msg)) => assert!(msg.contains("open invoice"), "{msg}"),
        other => panic!("{other:?}"),
    }
    // Paid in full (and the store told so): erasure goes through.
    mark_paid(&w, A).await;
    let invoiced = w.account(A).await.invoiced_unpaid;
    let pay = callauth::store::PaymentApply {
        payment_id: callauth::domain::Reference::parse("p1").unwrap(),
        amount: invoiced,
        clear_overdue: true,
        first_invoice_paid: true,
    };
    w.store
        .apply_payment(&E164::parse(A).unwrap(), &pay, w.now())
        .await
        .unwrap();
    let erased = personal::erase(&w.settlement, A, "support").await.unwrap();
    assert!(erased.holder_erased);
    assert_eq!(erased.consents_deleted, 1);
    let name: Option<String> = sqlx::query_scalar(
        "select h.name from holders h join numbers n on n.holder_id = h.id where n.number = $1",
    )
    .bind(A)
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(name, None);
    assert_eq!(w.count("select count(*) from consents").await, 0);
    assert_eq!(
        w.count("select count(*) from invoices").await,
        1,
        "bookkeeping records stay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marketing_opt_outs_are_listed_for_merchants() {
    let w = World::new(T0, &[A, B], SettlementPolicy::default()).await;
    let mut conn = w.db.pool.acquire().await.unwrap();
    personal::set_marketing(&mut conn, A, true, None, "support")
        .await
        .unwrap();
    let h = personal::set_marketing(
        &mut conn,
        B,
        false,
        Some("Box 1, 111 11 Stockholm"),
        "support",
    )
    .await
    .unwrap();
    assert_eq!(
        h.marketing_address.as_deref(),
        Some("Box 1, 111 11 Stockholm")
    );
    assert_eq!(
        personal::marketing_opt_outs(&w.db.pool).await.unwrap(),
        vec![A.to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_reports_and_repairs_drift() {
    let w = World::new(T0, &[A], SettlementPolicy::default()).await;
    w.call(A, "a1", TAROT, 41 * 60).await;
    w.call(A, "a2", TAROT, 60).await;
    w.settle().await;
    let clean = reconcile::reconcile(&w.settlement, false).await.unwrap();
    assert_eq!(clean.checked, 1);
    assert!(clean.drifting.is_empty(), "{clean:?}");

    // A failover lost a write: the store forgot 29.90 SEK of the invoiced amount.
    let view = w.account(A).await;
    assert!(view.invoiced_unpaid > Money::ZERO);
    w.store
        .repair_balances(
            &E164::parse(A).unwrap(),
            view.unbilled,
            view.invoiced_unpaid - Money::ore_unchecked(2990),
            "simulated loss",
            w.now(),
        )
        .await
        .unwrap();
    let drift = reconcile::reconcile(&w.settlement, false).await.unwrap();
    assert_eq!(drift.drifting.len(), 1);
    assert_eq!(drift.total_drift_ore, 2990);
    let repaired = reconcile::reconcile(&w.settlement, true).await.unwrap();
    assert_eq!(repaired.repaired, 1);
    assert_eq!(w.account(A).await.invoiced_unpaid, view.invoiced_unpaid);
    assert!(reconcile::reconcile(&w.settlement, false)
        .await
        .unwrap()
        .drifting
        .is_empty());
}
