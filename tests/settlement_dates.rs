//! The settlement's books on awkward dates (issue 11), against a real Redis
//! (the state store) and a real PostgreSQL (the ledger): due dates on bank
//! holidays and the three bank days a payment may take (R15), the first
//! invoice and the limit (R8), a dispute rejected before the due date (R19),
//! a remainder of fees only (R16, lag 1981:739 4 §) and a missed invoice day
//! (R11). Every expected date and amount is worked out by hand in a comment.
//!
//! The calendar of the dates used (Stockholm):
//!
//! * December 2025: Mon 8, Thu 11, Fri 12, Mon 15, Thu 25 juldagen,
//!   Fri 26 annandag jul, Mon 29, Tue 30, Wed 31 nyårsafton (banks closed);
//!   January 2026: Thu 1 nyårsdagen, Fri 2, Mon 5, Tue 6 trettondedag jul, Wed 7.
//! * December 2026: Tue 15, Thu 31 nyårsafton; January 2027: Fri 1
//!   nyårsdagen, Mon 4 (the first bank day), Tue 5, Wed 6 trettondedag jul,
//!   Thu 7, Fri 8, Mon 11, Thu 21, Fri 22, Mon 25, Tue 26, Wed 27;
//!   February 2027: Mon 8, Thu 11, Fri 12.
//! * March 2026: Mon 2, Fri 13, Sun 15, Mon 16, Tue 17, Tue 31; Thu 2 April.

mod common;

use callauth::settlement::billing::invoicing::{self, InvoiceKind};
use callauth::settlement::{
    calendar, collection::disputes, collection::ladder, interest, ledger, payments,
    sync::projector, worker::daily, worker::scheduler, SettlementPolicy,
};
use chrono::NaiveDate;
use common::bgmax_writer::FileBuilder;
use common::settle::World;
use common::*;
use sqlx::Row;

const A: &str = "+46701234567";
const B: &str = "+46701234568";
const OUR_BANKGIRO: &str = "9912346";

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// Noon in Stockholm on `date`.
fn noon(date: NaiveDate) -> i64 {
    calendar::start_of_day_utc_ms(date) + 12 * 3_600_000
}

/// A reference-rate table for these tests (2.00 % in every half-year they
/// touch; made-up values, so that the arithmetic is easy to follow).
fn test_rates() -> interest::ReferenceRateTable {
    interest::parse_table("2025-07-01 2.00\n2026-01-01 2.00\n2026-07-01 2.00\n2027-01-01 2.00")
        .unwrap()
}

fn policy() -> SettlementPolicy {
    SettlementPolicy {
        reference_rates: test_rates(),
        ..SettlementPolicy::default()
    }
}

/// The whole daily calendar (events first, as the worker does) for each
/// date from `from` through `to`, with the clock at noon that day.
async fn days(w: &World, from: NaiveDate, to: NaiveDate) {
    let mut d = from;
    while d <= to {
        w.clock.set_ms(noon(d));
        w.settle().await;
        daily::run_day(&w.settlement, d).await.unwrap();
        d = d.succ_opt().unwrap();
    }
}

/// The ladder alone (no monthly run) for each date from `from` through `to`.
async fn ladder_days(w: &World, from: NaiveDate, to: NaiveDate) {
    let mut d = from;
    while d <= to {
        w.clock.set_ms(noon(d));
        ladder::run_ladder(&w.settlement, d).await.unwrap();
        projector::flush(&w.settlement).await.unwrap();
        d = d.succ_opt().unwrap();
    }
}

#[derive(Debug)]
struct Inv {
    id: i64,
    ocr: String,
    issue_date: NaiveDate,
    due_date: NaiveDate,
    stage_due_date: NaiveDate,
    usage: i64,
    fees: i64,
    interest: i64,
    total: i64,
    paid: i64,
    status: String,
}

async fn invoices(w: &World, number: &str) -> Vec<Inv> {
    sqlx::query(
        "select id, ocr, issue_date, due_date, stage_due_date, usage_ore, fees_ore, interest_ore,
                total_ore, paid_ore, status
         from invoices where number = $1 order by id",
    )
    .bind(number)
    .fetch_all(&w.db.pool)
    .await
    .unwrap()
    .iter()
    .map(|r| Inv {
        id: r.get("id"),
        ocr: r.get("ocr"),
        issue_date: r.get("issue_date"),
        due_date: r.get("due_date"),
        stage_due_date: r.get("stage_due_date"),
        usage: r.get("usage_ore"),
        fees: r.get("fees_ore"),
        interest: r.get("interest_ore"),
        total: r.get("total_ore"),
        paid: r.get("paid_ore"),
        status: r.get("status"),
    })
    .collect()
}

async fn only_invoice(w: &World, number: &str) -> Inv {
    let mut all = invoices(w, number).await;
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

/// (step, date, fee, interest, new due date) of an invoice, in order.
async fn steps(
    w: &World,
    invoice_id: i64,
) -> Vec<(String, NaiveDate, i64, i64, Option<NaiveDate>)> {
    sqlx::query_as(
        "select step, on_date, fee_ore, interest_ore, new_due_date from collection_steps
         where invoice_id = $1 order by id",
    )
    .bind(invoice_id)
    .fetch_all(&w.db.pool)
    .await
    .unwrap()
}

async fn step_names(w: &World, invoice_id: i64) -> Vec<String> {
    steps(w, invoice_id)
        .await
        .into_iter()
        .map(|s| s.0)
        .collect()
}

/// One BgMax file with one payment to `ocr`, paid on `paid_on`, imported now.
async fn pay_by_bankgiro(w: &World, paid_on: NaiveDate, file_no: u32, ocr: &str, ore: i64) {
    let timestamp = format!("{}0900{:02}000001", paid_on.format("%Y%m%d"), file_no);
    let mut f = FileBuilder::new(&timestamp, false);
    f.section(OUR_BANKGIRO, paid_on, &format!("{file_no:05}"));
    f.ocr_payment(ocr, callauth::domain::Money::ore_unchecked(ore));
    let r = payments::import_bgmax(&w.settlement, &f.build().unwrap())
        .await
        .unwrap();
    assert_eq!(r.matched, 1, "{r:?}");
    projector::flush(&w.settlement).await.unwrap();
}

fn calendar_utc(ms: i64) -> chrono::DateTime<chrono::Utc> {
    callauth::settlement::context::ms_to_utc(ms)
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

/// R11, R15, R16: the December invoice is due on nyårsafton, when banks are
/// closed. A payment made on the first bank day after it (Monday 4 January)
/// is on time: no overdue block, no reminder, no fee, whatever day its money
/// reaches us within the three bank days. An unpaid one climbs the ladder
/// with every deadline counted from the next bank day, plus three bank days
/// for the money to arrive, and letters only on bank days.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_due_on_new_years_eve_is_paid_on_time_on_the_first_bank_day() {
    let w = World::new(noon(ymd(2026, 12, 1)), &[A, B], policy()).await;
    // Five minutes of tarot each: 5 × 29,90 = 149,50 SEK.
    assert_eq!(w.call(A, "a1", TAROT, 5 * 60).await.ore(), 14_950);
    assert_eq!(w.call(B, "b1", TAROT, 5 * 60).await.ore(), 14_950);
    days(&w, ymd(2026, 12, 2), ymd(2026, 12, 15)).await;

    // The monthly run on the 15th: 149,50 + 30,00 paper fee, due 31 December.
    let a = only_invoice(&w, A).await;
    let b = only_invoice(&w, B).await;
    for inv in [&a, &b] {
        assert_eq!(
            (inv.issue_date, inv.due_date),
            (ymd(2026, 12, 15), ymd(2026, 12, 31))
        );
        assert_eq!(inv.total, 14_950 + 3000);
    }

    // Nyårsafton, nyårsdagen, the weekend, 4 and 5 January, trettondedag jul:
    // within the grace (due date → Monday 4 January, + 3 bank days = Friday 8).
    days(&w, ymd(2026, 12, 16), ymd(2027, 1, 6)).await;
    for number in [A, B] {
        assert!(!w.account(number).await.overdue_blocked, "{number}");
    }
    assert_eq!(w.count("select count(*) from collection_steps").await, 0);

    // A paid the whole amount on Monday 4 January; the bank file arrives on
    // Thursday 7 January (4 → 5 → 7: two bank days later).
    w.clock.set_ms(noon(ymd(2027, 1, 7)) - 3 * 3_600_000);
    pay_by_bankgiro(&w, ymd(2027, 1, 4), 1, &a.ocr, a.total).await;

    days(&w, ymd(2027, 1, 7), ymd(2027, 2, 15)).await;

    // A: on time. Paid, no step, never blocked, nothing but the paper fee.
    let a = only_invoice(&w, A).await;
    assert_eq!((a.status.as_str(), a.paid, a.fees), ("paid", 17_950, 3000));
    assert!(steps(&w, a.id).await.is_empty());
    assert!(!w.account(A).await.overdue_blocked);
    assert_eq!(
        w.count(
            "select count(*) from audit_log where action = 'block' and subject = '+46701234567'"
        )
        .await,
        0,
        "A was never blocked"
    );

    // B: not paid.
    // * overdue the day after the grace: Saturday 9 January;
    // * the reminder on the first bank day that is at least 5 days after the
    //   due date and after the grace: Monday 11 January, 60 SEK, due
    //   11 + 10 = Thursday 21 January;
    // * the collection demand on the first bank day after that deadline's
    //   grace (21 → 22, 25, 26): Wednesday 27 January, 180 SEK and interest
    //   from the effective due date 4 January: 5–27 January = 23 days at
    //   2,00 + 8 = 10 %: 17 950 × 10 × 23 / 36 500 = 113,1… → 113 öre; due
    //   27 + 10 = Saturday 6 February → Monday 8 February;
    // * Kronofogden after that deadline's grace (8 → 9, 10, 11): Friday 12 February.
    let b = only_invoice(&w, B).await;
    assert_eq!(
        steps(&w, b.id).await,
        vec![
            ("overdue".to_string(), ymd(2027, 1, 9), 0, 0, None),
            (
                "reminder".to_string(),
                ymd(2027, 1, 11),
                6000,
                0,
                Some(ymd(2027, 1, 21))
            ),
            (
                "collection".to_string(),
                ymd(2027, 1, 27),
                18_000,
                113,
                Some(ymd(2027, 2, 8))
            ),
            ("enforcement".to_string(), ymd(2027, 2, 12), 0, 0, None),
        ]
    );
    assert_eq!(b.total, 17_950 + 6000 + 18_000 + 113);
    assert!(w.account(B).await.overdue_blocked);
    books_balance(&w).await;
}

/// R8, R9 (seed 000): the limit rises to 3 000 SEK when the number's first
/// invoice is paid in full, not when a later one is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_a_later_invoice_first_does_not_raise_the_limit() {
    let w = World::new(T0, &[A], policy()).await;
    // 41 minutes of tarot: 1 225,90 SEK ≥ 80 % of 1 500: the threshold
    // invoice at once, 1 225,90 + 30,00 = 1 255,90 SEK.
    w.call(A, "a1", TAROT, 41 * 60).await;
    w.settle().await;
    // The next day 4 minutes more (119,60 SEK), invoiced separately:
    // 119,60 + 30,00 = 149,60 SEK.
    w.clock.set_ms(noon(ymd(2025, 11, 24)));
    w.call(A, "a2", TAROT, 4 * 60).await;
    w.settle().await;
    let s = &w.settlement;
    let mut tx = s.pool.begin().await.unwrap();
    invoicing::issue_invoice(
        &mut tx,
        &s.policy,
        A,
        InvoiceKind::Monthly,
        s.today(),
        None,
        s.now(),
    )
    .await
    .unwrap()
    .unwrap();
    tx.commit().await.unwrap();
    projector::flush(s).await.unwrap();
    let all = invoices(&w, A).await;
    assert_eq!(all.len(), 2);
    let (first, later) = (&all[0], &all[1]);
    assert_eq!(first.total, 125_590);
    assert_eq!(later.total, 14_960);

    // Only the later invoice is paid: still the first-time limit.
    pay_by_bankgiro(&w, ymd(2025, 11, 25), 1, &later.ocr, 14_960).await;
    assert_eq!(invoices(&w, A).await[1].status, "paid");
    let view = w.account(A).await;
    assert!(!view.established, "{view:?}");
    assert_eq!(view.limit.ore(), 150_000);
    // Exposure is the unpaid first invoice: 1 500,00 − 1 255,90 = 244,10 SEK free.
    assert_eq!(view.available().ore(), 24_410);
    assert_eq!(
        w.count("select count(*) from numbers where established")
            .await,
        0
    );

    // The first invoice paid in full: now 3 000 SEK.
    pay_by_bankgiro(&w, ymd(2025, 11, 26), 2, &first.ocr, 125_590).await;
    let view = w.account(A).await;
    assert!(view.established);
    assert_eq!(view.limit.ore(), 300_000);
    assert_eq!(
        w.count("select count(*) from numbers where established")
            .await,
        1
    );
}

/// R19: a dispute rejected before the due date gives the later of the
/// resolution + 10 days and the invoice's own due date, never less time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispute_rejected_before_the_due_date_keeps_the_due_date() {
    let w = World::new(T0, &[A], policy()).await;
    w.call(A, "a1", TAROT, 41 * 60).await;
    w.settle().await;
    // Threshold invoice of Sunday 23 November 2025: + 14 days = Sunday
    // 7 December → due Monday 8 December.
    let inv = only_invoice(&w, A).await;
    assert_eq!(inv.due_date, ymd(2025, 12, 8));

    w.clock.set_ms(noon(ymd(2025, 11, 24)));
    let d = disputes::open_dispute(
        &w.settlement,
        inv.id,
        "Jag har inte ringt",
        "kundtjanst:eva",
    )
    .await
    .unwrap();
    w.clock.set_ms(noon(ymd(2025, 11, 25)));
    disputes::resolve_dispute(
        &w.settlement,
        d.id,
        false,
        "Samtycket är styrkt",
        "jurist:karin",
    )
    .await
    .unwrap();
    // 25 November + 10 days = Friday 5 December, before the due date: the
    // due date stands.
    assert_eq!(only_invoice(&w, A).await.stage_due_date, ymd(2025, 12, 8));
    projector::flush(&w.settlement).await.unwrap();
    assert!(!w.account(A).await.overdue_blocked);

    // Due Monday 8 December + 3 bank days = Thursday 11: overdue Friday 12,
    // reminder on the first bank day ≥ 8 + 5 = Saturday 13: Monday 15.
    ladder_days(&w, ymd(2025, 11, 26), ymd(2025, 12, 11)).await;
    assert!(step_names(&w, inv.id).await == ["paused_dispute"]);
    assert!(!w.account(A).await.overdue_blocked);
    ladder_days(&w, ymd(2025, 12, 12), ymd(2025, 12, 15)).await;
    let taken: Vec<(String, NaiveDate)> = steps(&w, inv.id)
        .await
        .into_iter()
        .map(|s| (s.0, s.1))
        .collect();
    assert_eq!(
        taken,
        vec![
            ("paused_dispute".to_string(), ymd(2025, 11, 24)),
            ("overdue".to_string(), ymd(2025, 12, 12)),
            ("reminder".to_string(), ymd(2025, 12, 15)),
        ]
    );
    assert!(w.account(A).await.overdue_blocked);
}

/// R16 and lag 1981:739 4 § ("skäligen påkallade"): when the invoice amount
/// itself is paid and only the reminder fee is left, no 180 SEK collection
/// demand and no Kronofogden follow; the fee is written off when the
/// reminder's deadline (and its grace) has passed, and the number is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remainder_of_fees_only_is_written_off_not_collected() {
    let w = World::new(T0, &[A], policy()).await;
    w.call(A, "a1", TAROT, 41 * 60).await;
    w.settle().await;
    let inv = only_invoice(&w, A).await;
    assert_eq!((inv.total, inv.due_date), (125_590, ymd(2025, 12, 8)));

    // Overdue Friday 12 December, reminder Monday 15 December with 60 SEK,
    // due 15 + 10 = Thursday 25 (juldagen) → Monday 29 December.
    ladder_days(&w, ymd(2025, 11, 24), ymd(2025, 12, 19)).await;
    let reminded = only_invoice(&w, A).await;
    assert_eq!(reminded.total, 125_590 + 6000);
    assert_eq!(reminded.stage_due_date, ymd(2025, 12, 29));

    // The holder pays the invoice amount, not the fee.
    w.clock.set_ms(noon(ymd(2025, 12, 19)));
    pay_by_bankgiro(&w, ymd(2025, 12, 19), 1, &inv.ocr, 125_590).await;
    assert_eq!(w.account(A).await.invoiced_unpaid.ore(), 6000);

    // The reminder's deadline Monday 29 December + 3 bank days (30 December,
    // 2 and 5 January) = Monday 5 January; the first bank day after it is
    // Wednesday 7 January (the 6th is trettondedag jul): the 60 SEK are
    // written off then, instead of a collection demand.
    ladder_days(&w, ymd(2025, 12, 20), ymd(2026, 1, 6)).await;
    assert_eq!(only_invoice(&w, A).await.status, "open");
    ladder_days(&w, ymd(2026, 1, 7), ymd(2026, 2, 28)).await;
    let after = only_invoice(&w, A).await;
    let names = step_names(&w, inv.id).await;
    assert!(
        !names
            .iter()
            .any(|s| s == "collection" || s == "enforcement"),
        "{names:?}"
    );
    let waived = steps(&w, inv.id).await;
    assert_eq!(
        waived.last().map(|s| (s.0.as_str(), s.1)),
        Some(("fees_waived", ymd(2026, 1, 7)))
    );
    // What the holder owes is what was paid: 1 255,90 SEK.
    assert_eq!(
        (after.status.as_str(), after.total, after.paid),
        ("paid", 125_590, 125_590)
    );
    assert_eq!(after.fees, 3000 + 6000);
    assert_eq!(after.interest, 0);
    assert!(ladder::enforcement_list(&w.db.pool)
        .await
        .unwrap()
        .is_empty());
    // Booked as a loss, not as a claim: the caller owes nothing.
    assert_eq!(balance(&w, "losses:waived_fees").await, 6000);
    assert_eq!(balance(&w, &ledger::account::caller_invoiced(A)).await, 0);
    assert_eq!(
        balance(&w, ledger::account::INCOME_REMINDER_FEE).await,
        -6000
    );
    let view = w.account(A).await;
    assert_eq!(view.invoiced_unpaid.ore(), 0);
    assert!(!view.overdue_blocked, "the block lifts with the write-off");
    books_balance(&w).await;
}

/// R11: the monthly run missed on the 15th (the worker was down on 15 and
/// 16 March) is caught up by the next run, for what was posted before the
/// 15th, with the payment time the missed run would have given; the runs and
/// the missed days are recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_invoice_day_is_caught_up_by_the_next_run() {
    let w = World::new(noon(ymd(2026, 3, 2)), &[A], policy()).await;
    assert_eq!(w.call(A, "a1", TAROT, 5 * 60).await.ore(), 14_950);
    days(&w, ymd(2026, 3, 13), ymd(2026, 3, 14)).await;
    // Monday 16 March, the worker still down: 3 more minutes (89,70 SEK),
    // after the invoice day.
    w.clock.set_ms(noon(ymd(2026, 3, 16)));
    assert_eq!(w.call(A, "a2", TAROT, 3 * 60).await.ore(), 8970);

    days(&w, ymd(2026, 3, 17), ymd(2026, 3, 17)).await;
    let inv = only_invoice(&w, A).await;
    // Issued on the 17th for the calls before the 15th: 149,50 + 30,00.
    assert_eq!(inv.issue_date, ymd(2026, 3, 17));
    assert_eq!((inv.usage, inv.total), (14_950, 17_950));
    // Due 31 March + the 2 days of delay = Thursday 2 April: the 16 days
    // the run of the 15th gives.
    assert_eq!(inv.due_date, ymd(2026, 4, 2));
    let invoiced_calls: Vec<String> =
        sqlx::query_scalar("select call_id from usage where invoice_id = $1 order by call_id")
            .bind(inv.id)
            .fetch_all(&w.db.pool)
            .await
            .unwrap();
    assert_eq!(invoiced_calls, vec!["a1".to_string()]);

    // Recorded: the invoice run of the 15th (done on the 17th), and the two
    // days the daily calendar did not run, and the missed invoice day.
    let issued_on: String = sqlx::query_scalar(
        "select details->>'issued_on' from calendar_runs where run_date = $1 and job = 'monthly_invoices'",
    )
    .bind(ymd(2026, 3, 15))
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(issued_on, "2026-03-17");
    let missed: Vec<(NaiveDate, String)> = sqlx::query_as(
        "select run_date, job from calendar_runs where job like 'missed:%' order by run_date, job",
    )
    .fetch_all(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(
        missed,
        vec![
            (ymd(2026, 3, 15), "missed:daily".to_string()),
            (ymd(2026, 3, 15), "missed:monthly_invoices".to_string()),
            (ymd(2026, 3, 16), "missed:daily".to_string()),
        ]
    );

    // The gauge behind CallauthSettlementCalendarMissed: the three missed
    // runs recorded within the last 24 hours (the run of the 17th is done).
    let missed_gauge = |today: NaiveDate, due: bool, at_ms: i64| {
        daily::missed_runs(&w.db.pool, today, due, calendar_utc(at_ms))
    };
    assert_eq!(
        missed_gauge(ymd(2026, 3, 17), true, noon(ymd(2026, 3, 17)))
            .await
            .unwrap(),
        3
    );
    // 25 hours later they are no longer recent; the 18th's run is due (after
    // 06:00) and not done: 1 behind; before 06:00 nothing is.
    let later = noon(ymd(2026, 3, 18)) + 3_600_000;
    assert_eq!(
        missed_gauge(ymd(2026, 3, 18), true, later).await.unwrap(),
        1
    );
    assert_eq!(
        missed_gauge(ymd(2026, 3, 18), false, later).await.unwrap(),
        0
    );

    // Running the day again changes nothing; April's run takes the rest.
    days(&w, ymd(2026, 3, 17), ymd(2026, 3, 17)).await;
    assert_eq!(invoices(&w, A).await.len(), 1);
    days(&w, ymd(2026, 4, 15), ymd(2026, 4, 15)).await;
    let all = invoices(&w, A).await;
    assert_eq!(all.len(), 2);
    assert_eq!((all[1].usage, all[1].due_date), (8970, ymd(2026, 4, 30)));
    books_balance(&w).await;
}

/// The worker's daily run (`scheduler::tick`) waits for `--daily-run-at`,
/// then commits what is in the event streams before it runs the day, as
/// `run-once` does: a call whose event nobody has consumed yet is still on
/// the 15th's invoice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_daily_run_commits_the_event_streams_first() {
    let w = World::new(noon(ymd(2026, 3, 2)), &[A], policy()).await;
    assert_eq!(w.call(A, "a1", TAROT, 5 * 60).await.ore(), 14_950);
    assert_eq!(
        w.count("select count(*) from usage").await,
        0,
        "not consumed yet"
    );
    let run_at = chrono::NaiveTime::from_hms_opt(6, 0, 0).unwrap();
    let worker = w.consumer("worker-1");
    let drainer = w.consumer("worker-1-calendar");
    let midnight = calendar::start_of_day_utc_ms(ymd(2026, 3, 15));

    // 05:59 on the invoice day: not yet.
    w.clock.set_ms(midnight + (5 * 60 + 59) * 60_000);
    assert!(scheduler::tick(&w.settlement, &worker, &drainer, run_at)
        .await
        .unwrap()
        .is_none());
    assert_eq!(w.count("select count(*) from invoices").await, 0);

    // 06:01: the events first, then the day.
    w.clock.set_ms(midnight + (6 * 60 + 1) * 60_000);
    let report = scheduler::tick(&w.settlement, &worker, &drainer, run_at)
        .await
        .unwrap()
        .expect("the day ran");
    assert_eq!((report.date, report.invoices_issued), (ymd(2026, 3, 15), 1));
    let inv = only_invoice(&w, A).await;
    assert_eq!(
        (inv.usage, inv.total, inv.due_date),
        (14_950, 17_950, ymd(2026, 3, 31))
    );
    // Once a day.
    assert!(scheduler::tick(&w.settlement, &worker, &drainer, run_at)
        .await
        .unwrap()
        .is_none());
}
