//! The reminder and collection ladder, installment plans and disputes (SPEC
//! R7, R16, R18, R19) against a real Redis (the state store the gateway
//! reads) and a real PostgreSQL (the ledger). Invoices come from real calls:
//! a call of 41 minutes of tarot (1 225,90 SEK, 80 % of the first-time limit)
//! issues a threshold invoice at once, with the 30 SEK paper fee. Time moves
//! by setting the manual clock and passing the date to the daily run.

mod common;

use callauth::domain::decision::code::BLOCKED_OVERDUE;
use callauth::domain::{Decision, DenyReason, Money};
use callauth::settlement::collection::disputes::{self, DisputeStatus};
use callauth::settlement::collection::ladder::{self, LadderReport};
use callauth::settlement::collection::plans::{self, PlanStatus};
use callauth::settlement::context::queue_store_op;
use callauth::settlement::ledger::{self, account, Txn};
use callauth::settlement::{
    calendar, interest, sync::projector, SettlementError, SettlementPolicy,
};
use callauth::store::Store;
use chrono::NaiveDate;
use common::settle::World;
use common::*;
use serde_json::json;
use sqlx::Row;

const A: &str = "+46701234567";
const B: &str = "+46701234568";
/// Shown when the store does not add a fee-only invoice (usage 0), which is
/// how the ladder's fees and interest reach the state store.
const FEE_ONLY_INVOICE: &str = "the state store must add the ladder's fee-only invoice \
     (usage_ore 0) to invoiced-unpaid; the Redis store's apply_invoice fails on \
     `HINCRBY ub -usage` when usage is 0 (Lua sends \"-0\")";
/// A tarot line whose terms agree no reminder fee.
const NO_FEE_LINE: &str = "+469001002020";

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// Noon in Stockholm on `date`.
fn noon(date: NaiveDate) -> i64 {
    calendar::start_of_day_utc_ms(date) + 12 * 3_600_000
}

fn money(ore: i64) -> Money {
    Money::ore_unchecked(ore)
}

/// The daily run on `date` (clock set to that day), then the projector.
async fn day(w: &World, date: NaiveDate) -> LadderReport {
    w.clock.set_ms(noon(date));
    let report = ladder::run_ladder(&w.settlement, date).await.unwrap();
    projector::flush(&w.settlement).await.unwrap();
    report
}

fn nothing_new(r: &LadderReport) -> bool {
    r.overdue + r.reminders + r.collections + r.enforcements == 0 && r.fees == Money::ZERO
}

#[derive(Debug)]
struct Inv {
    id: i64,
    ocr: String,
    due_date: NaiveDate,
    stage: String,
    stage_due_date: NaiveDate,
    fees: i64,
    interest: i64,
    total: i64,
    status: String,
}

/// The (only) invoice of `number`.
async fn invoice(w: &World, number: &str) -> Inv {
    let r = sqlx::query(
        "select id, ocr, due_date, stage, stage_due_date, fees_ore, interest_ore, total_ore, status
         from invoices where number = $1",
    )
    .bind(number)
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    Inv {
        id: r.get("id"),
        ocr: r.get("ocr"),
        due_date: r.get("due_date"),
        stage: r.get("stage"),
        stage_due_date: r.get("stage_due_date"),
        fees: r.get("fees_ore"),
        interest: r.get("interest_ore"),
        total: r.get("total_ore"),
        status: r.get("status"),
    }
}

async fn steps(w: &World, invoice_id: i64) -> Vec<String> {
    sqlx::query_scalar("select step from collection_steps where invoice_id = $1 order by id")
        .bind(invoice_id)
        .fetch_all(&w.db.pool)
        .await
        .unwrap()
}

/// (channel, pdf) of an invoice's documents of one kind.
async fn documents(w: &World, invoice_id: i64, kind: &str) -> Vec<(String, Vec<u8>)> {
    sqlx::query(
        "select channel, pdf from documents where invoice_id = $1 and kind = $2 order by id",
    )
    .bind(invoice_id)
    .bind(kind)
    .fetch_all(&w.db.pool)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get("channel"), r.get("pdf")))
    .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn balance(w: &World, account: &str) -> i64 {
    ledger::balance(&mut w.db.pool.acquire().await.unwrap(), account)
        .await
        .unwrap()
}

async fn books_balance(w: &World) {
    let total = ledger::total(&mut w.db.pool.acquire().await.unwrap())
        .await
        .unwrap();
    assert_eq!(total, 0, "the books balance");
}

async fn invoiced_unpaid(w: &World, number: &str) -> Money {
    w.account(number).await.invoiced_unpaid
}

/// A new postpaid call's decision for `number` now.
async fn try_call(w: &World, number: &str, id: &str) -> Decision {
    let svc = service(&w.store, TAROT).await;
    w.store
        .authorize(&n(number), &call(id, &svc, true), w.now())
        .await
        .unwrap()
        .decision
}

/// A stand-in for the payments module (written by another engineer): a
/// matched bank payment allocated to an invoice, as the ledger, the invoice
/// and the state store would record it. Plans read only
/// `payment_allocations`; the rest keeps the books and the store honest.
async fn pay(w: &World, invoice_id: i64, amount_ore: i64, paid_on: NaiveDate) {
    let mut tx = w.db.pool.begin().await.unwrap();
    let (number, ocr): (String, String) =
        sqlx::query_as("select number, ocr from invoices where id = $1")
            .bind(invoice_id)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    let payment_id: i64 = sqlx::query_scalar(
        "insert into payments (channel, external_id, reference, amount_ore, paid_on, status)
         values ('bankgiro', 'test-' || $1::text || '-' || $2::text, $3, $4, $5, 'matched') returning id",
    )
    .bind(invoice_id)
    .bind(paid_on.to_string())
    .bind(&ocr)
    .bind(amount_ore)
    .bind(paid_on)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "insert into payment_allocations (payment_id, kind, invoice_id, number, amount_ore)
         values ($1, 'invoice', $2, $3, $4)",
    )
    .bind(payment_id)
    .bind(invoice_id)
    .bind(&number)
    .bind(amount_ore)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "update invoices set paid_ore = paid_ore + $2,
                status = case when paid_ore + $2 >= total_ore then 'paid' else status end
         where id = $1",
    )
    .bind(invoice_id)
    .bind(amount_ore)
    .execute(&mut *tx)
    .await
    .unwrap();
    ledger::post(
        &mut tx,
        &Txn::new(
            format!("payment:{payment_id}"),
            w.settlement.now(),
            "test payment",
        )
        .debit(account::BANKGIRO, amount_ore)
        .credit(account::caller_invoiced(&number), amount_ore),
    )
    .await
    .unwrap();
    queue_store_op(
        &mut tx,
        "apply_payment",
        &number,
        json!({ "payment_id": format!("pay-{payment_id}"), "amount_ore": amount_ore,
                "clear_overdue": false, "first_invoice_paid": false }),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// Both numbers call 41 minutes of tarot on 2025-11-23 and are invoiced at
/// once (threshold): 1 225,90 + 30,00 paper fee, due Monday 2025-12-08.
async fn two_invoices() -> World {
    let w = World::new(T0, &[A, B], SettlementPolicy::default()).await;
    w.call(A, "a1", TAROT, 41 * 60).await;
    w.call(B, "b1", TAROT, 41 * 60).await;
    w.settle().await;
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaid_invoice_climbs_the_whole_ladder() {
    let w = World::new(T0, &[A], SettlementPolicy::default()).await;
    w.call(A, "a1", TAROT, 41 * 60).await;
    w.settle().await;
    let inv = invoice(&w, A).await;
    assert_eq!(inv.total, 125_590);
    assert_eq!(inv.due_date, ymd(2025, 12, 8));
    assert_eq!(invoiced_unpaid(&w, A).await, money(125_590));

    // Due today is not overdue, nor within the 3 bank days a payment may
    // take to arrive (R15): Tuesday 9 – Thursday 11 December.
    for date in [ymd(2025, 12, 8), ymd(2025, 12, 9), ymd(2025, 12, 11)] {
        assert!(nothing_new(&day(&w, date).await), "{date}");
    }
    assert!(!w.account(A).await.overdue_blocked);

    // 1. Overdue the day after the grace, Friday 12 December: the number is
    // blocked (R7).
    let r = day(&w, ymd(2025, 12, 12)).await;
    assert_eq!(r.overdue, 1);
    assert!(w.account(A).await.overdue_blocked);
    match try_call(&w, A, "refused").await {
        Decision::Denied(reason) => {
            assert_eq!(reason, DenyReason::BlockedOverdue);
            assert_eq!(reason.code(), BLOCKED_OVERDUE);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        nothing_new(&day(&w, ymd(2025, 12, 13)).await),
        "the 5th day after the due date is a Saturday: no letter"
    );
    assert!(nothing_new(&day(&w, ymd(2025, 12, 14)).await));

    // 2. The reminder on the first bank day at least 5 days after the due
    // date, Monday 15 December: 60 SEK, due in 10 days, on paper.
    // Two workers running the same day at once still send one reminder.
    w.clock.set_ms(noon(ymd(2025, 12, 15)));
    let (r1, r2) = tokio::join!(
        ladder::run_ladder(&w.settlement, ymd(2025, 12, 15)),
        ladder::run_ladder(&w.settlement, ymd(2025, 12, 15))
    );
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    assert_eq!(r1.reminders + r2.reminders, 1);
    assert_eq!(r1.fees + r2.fees, Money::sek(60));
    projector::flush(&w.settlement).await.unwrap();
    let ops_before = w.count("select count(*) from store_ops").await;
    let entries_before = w.count("select count(*) from ledger_entries").await;
    assert!(
        nothing_new(&day(&w, ymd(2025, 12, 15)).await),
        "running the day again does nothing"
    );
    assert!(nothing_new(&day(&w, ymd(2025, 12, 16)).await));
    assert_eq!(w.count("select count(*) from store_ops").await, ops_before);
    assert_eq!(
        w.count("select count(*) from ledger_entries").await,
        entries_before
    );
    let inv = invoice(&w, A).await;
    assert_eq!(inv.stage, "reminded");
    // 15 Dec + 10 days = Thursday 25 December (juldagen; the 26th is
    // annandag jul, then a weekend) → Monday 29 December.
    assert_eq!(inv.stage_due_date, ymd(2025, 12, 29));
    assert_eq!(inv.fees, 3000 + 6000);
    assert_eq!(inv.total, 125_590 + 6000);
    assert_eq!(
        w.count("select count(*) from invoice_lines where description = 'Påminnelseavgift'")
            .await,
        1,
        "one reminder fee per claim"
    );
    let (on, fee, new_due): (NaiveDate, i64, Option<NaiveDate>) = sqlx::query_as(
        "select on_date, fee_ore, new_due_date from collection_steps where step = 'reminder'",
    )
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (on, fee, new_due),
        (ymd(2025, 12, 15), 6000, Some(ymd(2025, 12, 29)))
    );
    let reminders = documents(&w, inv.id, "reminder").await;
    assert_eq!(reminders.len(), 1);
    assert_eq!(reminders[0].0, "paper", "reminders always on paper (R13)");
    assert!(reminders[0].1.starts_with(b"%PDF-1.4"));
    assert!(contains(&reminders[0].1, b"P\xe5minnelse"));
    assert!(contains(&reminders[0].1, inv.ocr.as_bytes()));
    assert_eq!(
        invoiced_unpaid(&w, A).await,
        money(125_590 + 6000),
        "{FEE_ONLY_INVOICE}"
    );
    // The reminder's due date itself, and its grace: 30 December, 2 and
    // 5 January (31 December and 1 January are closed).
    for date in [ymd(2025, 12, 29), ymd(2026, 1, 2)] {
        assert!(nothing_new(&day(&w, date).await), "{date}");
    }

    // 3. The collection demand on the first bank day after the grace,
    // Wednesday 7 January (the 6th is trettondedag jul): 180 SEK plus
    // interest from the due date. Default table: reference rate 2.00 % from
    // 2025-07-01 and 2026-01-01, + 8 pp = 10 %; 9 December – 7 January =
    // 30 days; 125 590 öre × 10 × 30 / 36 500 = 1 032.2… → 1 032 öre.
    assert!(nothing_new(&day(&w, ymd(2026, 1, 5)).await));
    assert!(nothing_new(&day(&w, ymd(2026, 1, 6)).await));
    let r = day(&w, ymd(2026, 1, 7)).await;
    assert_eq!(r.collections, 1);
    assert_eq!(r.fees, Money::sek(180));
    assert_eq!(r.interest, money(1032));
    let expected_interest = interest::late_interest(
        money(125_590),
        ymd(2025, 12, 8),
        ymd(2026, 1, 7),
        &interest::default_table(),
        interest::STATUTORY_MARGIN_PP,
    )
    .unwrap();
    assert_eq!(expected_interest, money(1032));
    let inv = invoice(&w, A).await;
    assert_eq!(inv.stage, "collection");
    // 7 Jan + 10 = Saturday 17 January → Monday 19 January (at least 8 days).
    assert_eq!(inv.stage_due_date, ymd(2026, 1, 19));
    assert_eq!(inv.fees, 3000 + 6000 + 18_000);
    assert_eq!(inv.interest, 1032);
    assert_eq!(inv.total, 125_590 + 6000 + 18_000 + 1032);
    let demands = documents(&w, inv.id, "collection").await;
    assert_eq!(demands.len(), 1);
    assert_eq!(demands[0].0, "paper");
    assert!(contains(&demands[0].1, b"Inkassokrav"));
    assert_eq!(
        w.count("select count(*) from invoice_lines where kind = 'interest' and amount_ore = 1032")
            .await,
        1
    );
    // The store's invoiced-unpaid grew by exactly the fees and the interest.
    assert_eq!(
        invoiced_unpaid(&w, A).await,
        money(125_590 + 6000 + 18_000 + 1032),
        "{FEE_ONLY_INVOICE}"
    );
    assert!(ladder::enforcement_list(&w.db.pool)
        .await
        .unwrap()
        .is_empty());
    // The demand's deadline and its grace (20, 21, 22 January).
    for date in [ymd(2026, 1, 19), ymd(2026, 1, 22)] {
        assert!(nothing_new(&day(&w, date).await), "{date}");
    }

    // 4. Kronofogden on the first bank day after the demand's deadline
    // and its grace: Friday 23 January.
    let r = day(&w, ymd(2026, 1, 23)).await;
    assert_eq!(r.enforcements, 1);
    assert!(
        nothing_new(&day(&w, ymd(2026, 3, 1)).await),
        "nothing after enforcement"
    );
    let list = ladder::enforcement_list(&w.db.pool).await.unwrap();
    assert_eq!(list.len(), 1);
    let item = &list[0];
    assert_eq!(item.invoice_id, inv.id);
    assert_eq!(item.number, A);
    assert!(item
        .customer_number
        .as_deref()
        .is_some_and(|c| c.starts_with('K')));
    assert_eq!(item.principal, money(125_590));
    assert_eq!(item.reminder_fee, Money::sek(60));
    assert_eq!(item.collection_fee, Money::sek(180));
    assert_eq!(item.fees, Money::sek(240));
    assert_eq!(item.interest, money(1032));
    assert_eq!(item.interest_charged_to, Some(ymd(2026, 1, 7)));
    assert_eq!(item.outstanding, money(125_590 + 24_000 + 1032));
    assert_eq!(item.handed_over_on, ymd(2026, 1, 23));

    assert_eq!(
        steps(&w, inv.id).await,
        ["overdue", "reminder", "collection", "enforcement"]
    );
    assert_eq!(
        balance(&w, &account::caller_invoiced(A)).await,
        125_590 + 24_000 + 1032
    );
    assert_eq!(balance(&w, account::INCOME_REMINDER_FEE).await, -6000);
    assert_eq!(balance(&w, account::INCOME_COLLECTION_FEE).await, -18_000);
    assert_eq!(balance(&w, account::INCOME_INTEREST).await, -1032);
    books_balance(&w).await;
    assert!(w.account(A).await.overdue_blocked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reminder_fee_unless_the_terms_agreed_one() {
    let w = World::new(T0, &[A], SettlementPolicy::default()).await;
    let mut line = spec(
        NO_FEE_LINE,
        MERCHANT,
        "Tarotlinjen utan avgift",
        2990,
        60,
        0,
    );
    line.reminder_fee = Money::ZERO;
    w.store.upsert_service(&line, T0).await.unwrap();
    w.call(A, "a1", NO_FEE_LINE, 41 * 60).await;
    w.settle().await;
    let inv = invoice(&w, A).await;
    let agreed: bool = sqlx::query_scalar("select reminder_fee_agreed from invoices where id = $1")
        .bind(inv.id)
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
    assert!(!agreed);
    let ops_before = w
        .count("select count(*) from store_ops where kind = 'apply_invoice'")
        .await;

    // Monday 15 December: overdue since the 12th (not run until now) and the
    // reminder's first bank day.
    let r = day(&w, ymd(2025, 12, 15)).await;
    assert_eq!(
        (r.overdue, r.reminders),
        (1, 1),
        "overdue and reminder on the same run"
    );
    assert_eq!(r.fees, Money::ZERO);
    let after = invoice(&w, A).await;
    assert_eq!(after.stage, "reminded");
    assert_eq!(after.fees, inv.fees, "no fee added");
    assert_eq!(after.total, inv.total);
    assert_eq!(w.count("select count(*) from invoice_lines where kind = 'fee' and description = 'Påminnelseavgift'").await, 0);
    assert_eq!(
        w.count("select count(*) from store_ops where kind = 'apply_invoice'")
            .await,
        ops_before
    );
    let fee: i64 =
        sqlx::query_scalar("select fee_ore from collection_steps where step = 'reminder'")
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
    assert_eq!(fee, 0);
    // The reminder itself is still sent, on paper.
    let docs = documents(&w, inv.id, "reminder").await;
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].0, "paper");
    assert_eq!(invoiced_unpaid(&w, A).await, money(inv.total));
    assert_eq!(balance(&w, account::INCOME_REMINDER_FEE).await, 0);
    books_balance(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispute_stops_the_ladder_until_it_is_resolved() {
    let w = two_invoices().await;
    let (a, b) = (invoice(&w, A).await, invoice(&w, B).await);
    // Due Monday 8 December + 3 bank days of grace: overdue Friday 12.
    day(&w, ymd(2025, 12, 12)).await;
    assert!(w.account(A).await.overdue_blocked);
    assert!(w.account(B).await.overdue_blocked);

    // Opening: the consent evidence of the call is attached, the block lifts.
    w.clock.set_ms(noon(ymd(2025, 12, 13)));
    let da = disputes::open_dispute(&w.settlement, a.id, "Jag har inte ringt", "kundtjanst:eva")
        .await
        .unwrap();
    assert_eq!(da.status, DisputeStatus::Open);
    assert_eq!(da.number, A);
    let evidence = da.evidence.as_array().expect("a JSON array of consents");
    assert_eq!(evidence.len(), 1);
    let consent = &evidence[0];
    assert_eq!(consent["call_id"], "a1");
    assert_eq!(consent["number"], A);
    assert_eq!(consent["age_confirmed"], true);
    assert_eq!(consent["own_number_confirmed"], true);
    assert_eq!(consent["terms_accepted"], true);
    assert_eq!(consent["price_per_minute_ore"], 2990);
    assert_eq!(consent["ivr_client"], "ivr-test");
    assert!(consent["step1_at"].is_string() && consent["step2_at"].is_string());
    let db: bool = sqlx::query_scalar("select disputed from invoices where id = $1")
        .bind(a.id)
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
    assert!(db);
    projector::flush(&w.settlement).await.unwrap();
    assert!(
        !w.account(A).await.overdue_blocked,
        "the disputed invoice no longer blocks"
    );
    assert!(
        w.account(B).await.overdue_blocked,
        "another number is untouched"
    );

    // Refusals write nothing.
    let disputes_before = w.count("select count(*) from disputes").await;
    let audit_before = w.count("select count(*) from audit_log").await;
    assert!(matches!(
        disputes::open_dispute(&w.settlement, a.id, "igen", "kundtjanst:eva").await,
        Err(SettlementError::Refused(_))
    ));
    assert!(matches!(
        disputes::open_dispute(&w.settlement, 999_999, "okänd", "kundtjanst:eva").await,
        Err(SettlementError::NotFound(_))
    ));
    assert!(matches!(
        disputes::open_dispute(&w.settlement, b.id, "  ", "kundtjanst:eva").await,
        Err(SettlementError::Invalid(_))
    ));
    assert_eq!(
        w.count("select count(*) from disputes").await,
        disputes_before
    );
    assert_eq!(
        w.count("select count(*) from audit_log").await,
        audit_before
    );

    let db_ = disputes::open_dispute(
        &w.settlement,
        b.id,
        "Inte betalningsansvarig",
        "kundtjanst:eva",
    )
    .await
    .unwrap();
    projector::flush(&w.settlement).await.unwrap();
    assert!(!w.account(B).await.overdue_blocked);

    // Paused: no reminder, no demand, never Kronofogden.
    for date in [
        ymd(2025, 12, 13),
        ymd(2025, 12, 24),
        ymd(2026, 1, 6),
        ymd(2026, 2, 1),
    ] {
        assert!(nothing_new(&day(&w, date).await), "{date}");
    }
    assert_eq!(steps(&w, a.id).await, ["overdue", "paused_dispute"]);
    assert_eq!(steps(&w, b.id).await, ["overdue", "paused_dispute"]);
    assert!(ladder::enforcement_list(&w.db.pool)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(invoice(&w, A).await.total, a.total);
    assert_eq!(
        w.count("select count(*) from documents where kind <> 'invoice'")
            .await,
        0
    );

    // Upheld: credited, the store's invoiced-unpaid back down.
    w.clock.set_ms(noon(ymd(2026, 2, 2)));
    assert_eq!(invoiced_unpaid(&w, A).await, money(a.total));
    let resolved = disputes::resolve_dispute(
        &w.settlement,
        da.id,
        true,
        "Samtalet ringdes från en annan linje",
        "jurist:karin",
    )
    .await
    .unwrap();
    assert_eq!(resolved.status, DisputeStatus::Upheld);
    assert_eq!(resolved.resolved_by.as_deref(), Some("jurist:karin"));
    let credited = invoice(&w, A).await;
    assert_eq!(credited.status, "credited");
    assert_eq!(credited.total, 0);
    projector::flush(&w.settlement).await.unwrap();
    assert_eq!(invoiced_unpaid(&w, A).await, Money::ZERO);
    // Not our loss (R19, R20): A's call (1 225,90 incl. 245,18 VAT) is
    // charged back to the merchant without VAT (980,72) and its VAT
    // reversed, and the paper fee (30,00 incl. 6,00 VAT) is reversed. What
    // remains on those accounts is B's: 980,72 owed to the merchant,
    // 24,00 fee income, 245,18 + 6,00 output VAT.
    assert_eq!(balance(&w, account::LOSSES_DISPUTES).await, 0);
    assert_eq!(balance(&w, &account::caller_invoiced(A)).await, 0);
    assert_eq!(
        balance(&w, &account::merchant_payable("stjarnlinjen")).await,
        -98_072
    );
    assert_eq!(balance(&w, account::INCOME_PAPER_FEE).await, -2_400);
    assert_eq!(balance(&w, "vat:output:25").await, -(24_518 + 600));
    assert!(matches!(
        disputes::resolve_dispute(&w.settlement, da.id, false, "ångrat", "jurist:karin").await,
        Err(SettlementError::Refused(_))
    ));

    // Rejected: new time (2 Feb + 10 = Thursday 12 Feb), then the ladder resumes.
    let rejected = disputes::resolve_dispute(
        &w.settlement,
        db_.id,
        false,
        "Samtycket är styrkt",
        "jurist:karin",
    )
    .await
    .unwrap();
    assert_eq!(rejected.status, DisputeStatus::Rejected);
    let b_now = invoice(&w, B).await;
    assert_eq!(b_now.stage_due_date, ymd(2026, 2, 12));
    projector::flush(&w.settlement).await.unwrap();
    assert!(
        w.account(B).await.overdue_blocked,
        "still unpaid past its due date"
    );
    // The reminder on the first bank day ≥ 12 + 5 = 17 February and after
    // the new deadline's grace (13, 16, 17 February): Wednesday 18 February.
    assert!(nothing_new(&day(&w, ymd(2026, 2, 17)).await));
    let r = day(&w, ymd(2026, 2, 18)).await;
    assert_eq!(r.reminders, 1);
    assert_eq!(r.fees, Money::sek(60));
    assert_eq!(
        steps(&w, b.id).await,
        ["overdue", "paused_dispute", "reminder"]
    );
    assert!(
        steps(&w, a.id).await.len() == 2,
        "a credited invoice stays off the ladder"
    );
    assert_eq!(
        w.count(
            "select count(*) from audit_log where action in ('dispute_opened', 'dispute_resolved')"
        )
        .await,
        4
    );
    books_balance(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installment_plan_pauses_the_ladder_until_one_payment_is_missed() {
    let w = World::new(T0, &[A, B], SettlementPolicy::default()).await;
    // A: 140 minutes (4 186,00 SEK; the call ran past its grant) + 30 paper fee = 4 216,00 SEK.
    w.call(A, "a1", TAROT, 140 * 60).await;
    // B: 1 255,90 SEK, not over the 2 000 SEK minimum.
    w.call(B, "b1", TAROT, 41 * 60).await;
    w.settle().await;
    let (a, b) = (invoice(&w, A).await, invoice(&w, B).await);
    assert_eq!(a.total, 421_600);
    assert_eq!(b.total, 125_590);
    day(&w, ymd(2025, 12, 12)).await;
    assert!(w.account(A).await.overdue_blocked);

    // Refused, writing nothing: a small debt without a decision; under 500 SEK a month.
    w.clock.set_ms(noon(ymd(2025, 12, 13)));
    let first_due = ymd(2026, 1, 10);
    assert!(matches!(
        plans::create_plan(
            &w.settlement,
            B,
            Money::sek(500),
            first_due,
            "kundtjanst:eva",
            false
        )
        .await,
        Err(SettlementError::Refused(_))
    ));
    assert!(matches!(
        plans::create_plan(
            &w.settlement,
            A,
            money(49_999),
            first_due,
            "kundtjanst:eva",
            false
        )
        .await,
        Err(SettlementError::Refused(_))
    ));
    assert!(matches!(
        plans::create_plan(
            &w.settlement,
            A,
            Money::sek(1500),
            ymd(2025, 12, 1),
            "kundtjanst:eva",
            false
        )
        .await,
        Err(SettlementError::Invalid(_))
    ));
    assert_eq!(w.count("select count(*) from installment_plans").await, 0);
    assert_eq!(
        w.count("select count(*) from audit_log where action like 'installment_plan_%'")
            .await,
        0
    );

    let plan = plans::create_plan(
        &w.settlement,
        A,
        Money::sek(1500),
        first_due,
        "kundtjanst:eva",
        false,
    )
    .await
    .unwrap();
    assert_eq!(plan.total, money(421_600));
    assert_eq!(plan.status, PlanStatus::Active);
    assert_eq!(plan.invoice_ids, vec![a.id]);
    let items: Vec<(NaiveDate, i64)> = plan
        .items
        .iter()
        .map(|i| (i.due_date, i.amount.ore()))
        .collect();
    assert_eq!(
        items,
        vec![
            (ymd(2026, 1, 10), 150_000),
            (ymd(2026, 2, 10), 150_000),
            (ymd(2026, 3, 10), 121_600)
        ]
    );
    assert!(
        matches!(
            plans::create_plan(
                &w.settlement,
                A,
                Money::sek(1500),
                first_due,
                "kundtjanst:eva",
                false
            )
            .await,
            Err(SettlementError::Refused(_))
        ),
        "one plan at a time"
    );
    // The small debt by an individual decision.
    let small = plans::create_plan(
        &w.settlement,
        B,
        Money::sek(500),
        first_due,
        "kreditchef:olle",
        true,
    )
    .await
    .unwrap();
    assert_eq!(
        small
            .items
            .iter()
            .map(|i| i.amount.ore())
            .collect::<Vec<_>>(),
        vec![50_000, 50_000, 25_590]
    );
    projector::flush(&w.settlement).await.unwrap();
    assert!(
        !w.account(A).await.overdue_blocked,
        "a kept plan lifts the overdue block"
    );
    // A planned invoice cannot be disputed: the plan acknowledged the debt.
    assert!(matches!(
        disputes::open_dispute(&w.settlement, a.id, "Jag har inte ringt", "kundtjanst:eva").await,
        Err(SettlementError::Refused(_))
    ));

    // Kept: installments paid, no fees, no interest, no steps.
    for date in [ymd(2025, 12, 13), ymd(2025, 12, 24), ymd(2026, 1, 6)] {
        assert!(nothing_new(&day(&w, date).await), "{date}");
    }
    w.clock.set_ms(noon(ymd(2026, 1, 9)));
    pay(&w, a.id, 150_000, ymd(2026, 1, 9)).await;
    pay(&w, b.id, 125_590, ymd(2026, 1, 9)).await;
    let r = day(&w, ymd(2026, 1, 20)).await;
    assert_eq!(
        (r.plans_completed, r.plans_broken),
        (1, 0),
        "B paid everything"
    );
    assert!(nothing_new(&r));
    let r = day(&w, ymd(2026, 2, 13)).await;
    assert!(
        nothing_new(&r) && r.plans_broken == 0,
        "10 Feb + 3 bank days of grace"
    );
    let kept = invoice(&w, A).await;
    assert_eq!((kept.fees, kept.interest, kept.total), (a.fees, 0, a.total));
    assert_eq!(steps(&w, a.id).await, ["overdue", "paused_plan"]);
    let paid_items: Vec<i64> = sqlx::query_scalar(
        "select paid_ore from installment_items where plan_id = $1 order by seq",
    )
    .bind(plan.id)
    .fetch_all(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(paid_items, vec![150_000, 0, 0]);
    let mut conn = w.db.pool.acquire().await.unwrap();
    assert_eq!(
        plans::plan(&mut conn, small.id).await.unwrap().status,
        PlanStatus::Completed
    );
    drop(conn);

    // One missed installment breaks the plan: the whole rest is due at once.
    let r = day(&w, ymd(2026, 2, 16)).await;
    assert_eq!(r.plans_broken, 1);
    let mut conn = w.db.pool.acquire().await.unwrap();
    assert_eq!(
        plans::plan(&mut conn, plan.id).await.unwrap().status,
        PlanStatus::Broken
    );
    drop(conn);
    assert_eq!(
        steps(&w, a.id).await,
        ["overdue", "paused_plan", "plan_broken"]
    );
    let broken = invoice(&w, A).await;
    assert_eq!(broken.stage_due_date, ymd(2026, 2, 16));
    assert!(w.account(A).await.overdue_blocked, "blocked again at once");

    // The ladder resumes: the reminder on the first bank day at least 5
    // days later (Saturday 21 → Monday 23 February), then the demand.
    assert!(nothing_new(&day(&w, ymd(2026, 2, 20)).await));
    assert!(nothing_new(&day(&w, ymd(2026, 2, 21)).await));
    let r = day(&w, ymd(2026, 2, 23)).await;
    assert_eq!(r.reminders, 1);
    assert_eq!(r.fees, Money::sek(60));
    // 23 Feb + 10 = Thursday 5 March; + 3 bank days of grace = 10 March.
    assert_eq!(invoice(&w, A).await.stage_due_date, ymd(2026, 3, 5));
    assert!(nothing_new(&day(&w, ymd(2026, 3, 10)).await));
    let r = day(&w, ymd(2026, 3, 11)).await;
    assert_eq!(r.collections, 1);
    // Interest only from the day the plan broke, on the principal left:
    // 421 600 − 150 000 = 271 600 öre × 10 % × 23 days (17 Feb – 11 Mar) / 365
    // = 1 711.45… → 1 711 öre.
    assert_eq!(r.interest, money(1711));
    assert_eq!(
        interest::late_interest(
            money(271_600),
            ymd(2026, 2, 16),
            ymd(2026, 3, 11),
            &interest::default_table(),
            interest::STATUTORY_MARGIN_PP
        )
        .unwrap(),
        money(1711)
    );
    let last = invoice(&w, A).await;
    assert_eq!(last.stage, "collection");
    assert_eq!(last.total, 421_600 + 6000 + 18_000 + 1711);
    assert_eq!(
        steps(&w, a.id).await,
        [
            "overdue",
            "paused_plan",
            "plan_broken",
            "reminder",
            "collection"
        ]
    );
    assert_eq!(
        invoiced_unpaid(&w, A).await,
        money(421_600 - 150_000 + 6000 + 18_000 + 1711),
        "{FEE_ONLY_INVOICE}"
    );
    assert_eq!(
        w.count("select count(*) from audit_log where action like 'installment_plan_%'")
            .await,
        4,
        "two created, one completed, one broken"
    );
    books_balance(&w).await;
}
