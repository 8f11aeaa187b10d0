//! Account changes that the state store refuses (issue 11, item 1), against
//! a real Redis and a real PostgreSQL. A Redis failover can lose the last
//! writes; an account change that depended on them is then refused for good
//! ("payment … exceeds the invoiced-unpaid …"). Such a change must not be
//! retried for ever nor hold back the number's later changes; it is listed,
//! and `reconcile --repair` rewrites the number's account from the ledger
//! (amounts, overdue block, first-invoice limit), after which the queue goes on.

mod common;

use callauth::domain::{Money, E164};
use callauth::settlement::{
    billing::invoicing, calendar, collection::ladder, payments, sync::projector, sync::reconcile,
    SettlementPolicy,
};
use callauth::store::Store;
use chrono::NaiveDate;
use common::bgmax_writer::FileBuilder;
use common::settle::World;
use common::*;

const A: &str = "+46701234567";
const OUR_BANKGIRO: &str = "9912346";

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn noon(date: NaiveDate) -> i64 {
    calendar::start_of_day_utc_ms(date) + 12 * 3_600_000
}

async fn pay_by_bankgiro(w: &World, paid_on: NaiveDate, file_no: u32, ocr: &str, ore: i64) {
    let timestamp = format!("{}0900{:02}000001", paid_on.format("%Y%m%d"), file_no);
    let mut f = FileBuilder::new(&timestamp, false);
    f.section(OUR_BANKGIRO, paid_on, &format!("{file_no:05}"));
    f.ocr_payment(ocr, Money::ore_unchecked(ore));
    let r = payments::import_bgmax(&w.settlement, &f.build().unwrap())
        .await
        .unwrap();
    assert_eq!(r.matched, 1, "{r:?}");
}

async fn pending_ops(w: &World) -> i64 {
    w.count("select count(*) from store_ops where applied_at is null and refused_at is null")
        .await
}

/// The ledger and the store are in step; then a failover loses the store's
/// invoiced amount of A's overdue invoice. A pays in full: the store refuses
/// the payment (it "exceeds" the 0 öre the store now knows). Before the
/// fix, A stayed blocked for good and every later change waited behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_change_is_set_aside_listed_and_repaired_from_the_ledger() {
    let w = World::new(T0, &[A], SettlementPolicy::default()).await;
    let number = E164::parse(A).unwrap();
    // 41 minutes of tarot: the threshold invoice, 1 225,90 + 30,00 = 1 255,90
    // SEK, due Monday 8 December 2025; overdue (after 3 bank days of grace)
    // on Friday 12 December.
    w.call(A, "a1", TAROT, 41 * 60).await;
    w.settle().await;
    let (first_id, first_ocr): (i64, String) =
        sqlx::query_as("select id, ocr from invoices where number = $1")
            .bind(A)
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
    // 10 December: one more minute (29,90 SEK), not yet invoiced.
    w.clock.set_ms(noon(ymd(2025, 12, 10)));
    w.call(A, "a2", TAROT, 60).await;
    w.settle().await;
    w.clock.set_ms(noon(ymd(2025, 12, 12)));
    ladder::run_ladder(&w.settlement, ymd(2025, 12, 12))
        .await
        .unwrap();
    projector::flush(&w.settlement).await.unwrap();
    assert!(w.account(A).await.overdue_blocked);

    // The failover: the store forgets the invoiced amount (the unbilled
    // 29,90 SEK survive).
    w.store
        .repair_balances(
            &number,
            Money::ore_unchecked(2990),
            Money::ZERO,
            "simulated loss",
            w.now(),
        )
        .await
        .unwrap();

    // 15 December: A pays the whole invoice. The store refuses the payment.
    w.clock.set_ms(noon(ymd(2025, 12, 15)));
    // (The import pushes its changes at once; that first attempt is refused.)
    pay_by_bankgiro(&w, ymd(2025, 12, 15), 1, &first_ocr, 125_590).await;
    // Set aside, not retried: the next rounds leave it alone.
    for _ in 0..3 {
        let again = projector::flush(&w.settlement).await.unwrap();
        assert_eq!((again.applied, again.failed), (0, 0), "{again:?}");
    }
    assert_eq!(pending_ops(&w).await, 0);
    let refused = projector::refused(&w.db.pool).await.unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].kind, "apply_payment");
    assert_eq!(refused[0].number, A);
    assert_eq!(refused[0].attempts, 1);
    assert!(refused[0].error.contains("exceeds"), "{}", refused[0].error);
    // What the issue saw: paid in full, still blocked, still 1 500 SEK.
    let view = w.account(A).await;
    assert!(view.overdue_blocked);
    assert!(!view.established);

    // A later change of the same number goes through at once: the call of
    // 10 December invoiced on 15 January 2026 (29,90 + 30,00 paper fee =
    // 59,90 SEK).
    w.clock.set_ms(noon(ymd(2026, 1, 15)));
    invoicing::monthly_run(&w.settlement, ymd(2026, 1, 15))
        .await
        .unwrap();
    let r = projector::flush(&w.settlement).await.unwrap();
    assert_eq!((r.applied, r.failed), (1, 0), "{r:?}");
    assert_eq!(w.account(A).await.invoiced_unpaid.ore(), 5990);

    // Reconciliation sees the number: the amounts agree by now (the lost
    // amount is exactly the payment the store refused), but the block and
    // the limit do not.
    let report = reconcile::reconcile(&w.settlement, false).await.unwrap();
    assert_eq!(report.skipped_pending_ops, 0);
    assert_eq!(report.drifting.len(), 1, "{report:?}");
    let d = &report.drifting[0];
    assert_eq!(d.number, A);
    assert_eq!(
        (d.ledger_invoiced_unpaid_ore, d.store_invoiced_unpaid_ore),
        (5990, 5990)
    );
    assert_eq!(
        (d.ledger_overdue_blocked, d.store_overdue_blocked),
        (false, true)
    );
    assert_eq!((d.ledger_established, d.store_established), (true, false));
    assert_eq!(d.refused_ops, 1);
    assert_eq!(report.repaired, 0);
    assert_eq!(projector::refused(&w.db.pool).await.unwrap().len(), 1);

    // --repair: the store is rewritten from the ledger and the refused
    // change is closed.
    let repaired = reconcile::reconcile(&w.settlement, true).await.unwrap();
    assert_eq!(repaired.repaired, 1);
    let view = w.account(A).await;
    assert!(!view.overdue_blocked, "paid in full: not blocked");
    assert!(view.established, "the first invoice is paid");
    assert_eq!(view.limit.ore(), 300_000);
    assert_eq!(view.invoiced_unpaid.ore(), 5990);
    assert!(projector::refused(&w.db.pool).await.unwrap().is_empty());
    let resolution: String = sqlx::query_scalar(
        "select resolution from store_ops where kind = 'apply_payment' and refused_at is not null",
    )
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    assert!(resolution.contains("ledger"), "{resolution}");
    let clean = reconcile::reconcile(&w.settlement, false).await.unwrap();
    assert!(clean.drifting.is_empty(), "{clean:?}");

    // The queue goes on: paying the second invoice is applied normally.
    let second_ocr: String =
        sqlx::query_scalar("select ocr from invoices where number = $1 and id <> $2")
            .bind(A)
            .bind(first_id)
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
    w.clock.set_ms(noon(ymd(2026, 1, 20)));
    pay_by_bankgiro(&w, ymd(2026, 1, 20), 2, &second_ocr, 5990).await;
    projector::flush(&w.settlement).await.unwrap();
    assert_eq!(pending_ops(&w).await, 0);
    assert_eq!(w.account(A).await.invoiced_unpaid, Money::ZERO);
    assert!(reconcile::reconcile(&w.settlement, false)
        .await
        .unwrap()
        .drifting
        .is_empty());
}
