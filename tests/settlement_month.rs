//! A simulated month and a half (issue 4): real calls through the gRPC
//! gateway on a real Redis, the settlement worker on a real PostgreSQL, a
//! real BgMax file, and the daily calendar played day by day on one
//! injected clock.
//!
//! * A reaches 80 % (a threshold invoice at once) and then 100 % (credit
//!   block), is invoiced again on the 15th, pays both by bankgiro: the
//!   blocks lift and the limit rises to 3 000 SEK (R7, R8, R11, R15).
//! * B does not pay: overdue block, reminder with 60 SEK, collection demand
//!   with 180 SEK and interest, the enforcement list (R16).
//! * F disputes the invoice: no reminder, no collection, no enforcement (R19).
//! * P owes more than 2 000 SEK, keeps an installment plan for a month
//!   without fees, then misses an installment: the plan breaks and the
//!   ladder resumes (R18).

mod common;

use std::sync::Arc;

use callauth::clock::Clock;
use callauth::domain::Money;
use callauth::pb;
use callauth::settlement::ingest::consumer::{ConsumerConfig, StreamConsumer};
use callauth::settlement::{
    collection::disputes, collection::ladder, collection::plans, interest, ledger, payments,
    sync::projector, sync::reconcile, worker::daily, Settlement, SettlementPolicy,
};
use callauth::store::redis::RedisStore;
use callauth::store::StorePolicy;
use chrono::{NaiveDate, TimeZone};
use chrono_tz::Europe::Stockholm;
use common::server::*;

const P: &str = "070-555 66 77";

fn at(y: i32, m: u32, d: u32, h: u32) -> i64 {
    Stockholm
        .with_ymd_and_hms(y, m, d, h, 0, 0)
        .single()
        .unwrap()
        .timestamp_millis()
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// A whole call through the gateway: terms, consent, grant, usage. Returns the charge.
async fn call(
    g: &TestGateway<RedisStore>,
    id: &str,
    number: &str,
    service: &str,
    merchant: &str,
    seconds: i32,
) -> i64 {
    let first = g
        .authz()
        .authorize(req(authorize_req(id, number, service), IVR))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first.decision,
        pb::Decision::ConsentRequired as i32,
        "{id}: {first:?}"
    );
    let mut r = authorize_req(id, number, service);
    r.consent = Some(consent_for(first.terms.as_ref().unwrap(), false));
    let ok = g.authz().authorize(req(r, IVR)).await.unwrap().into_inner();
    assert_eq!(ok.decision, pb::Decision::Allowed as i32, "{id}: {ok:?}");
    let started = g.now();
    g.clock.advance_ms(i64::from(seconds) * 1000);
    let ack = g
        .usage()
        .report_one(req(
            usage_record(&format!("r-{id}"), id, service, started, seconds),
            merchant,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.result, pb::UsageResult::Applied as i32, "{id}: {ack:?}");
    ack.charge_ore
}

async fn decision(g: &TestGateway<RedisStore>, id: &str, number: &str) -> (i32, i32) {
    let r = g
        .authz()
        .authorize(req(authorize_req(id, number, TAROT), IVR))
        .await
        .unwrap()
        .into_inner();
    (r.decision, r.reason)
}

struct Books {
    s: Arc<Settlement<RedisStore>>,
    consumer: StreamConsumer<RedisStore>,
}

impl Books {
    async fn settle(&self) {
        self.consumer.drain().await.unwrap();
        projector::flush(&self.s).await.unwrap();
    }

    async fn invoice(&self, number: &str, kind: &str) -> (i64, String, i64) {
        sqlx::query_as("select id, ocr, total_ore from invoices where number = $1 and kind = $2 order by id limit 1")
            .bind(callauth::domain::E164::parse(number).unwrap().as_str())
            .bind(kind)
            .fetch_one(&self.s.pool)
            .await
            .unwrap()
    }

    async fn pay_bgmax(&self, day: NaiveDate, serial: &str, payments_: &[(&str, i64)]) {
        let mut f = common::bgmax_writer::FileBuilder::new(
            &format!("{}060000000001", day.format("%Y%m%d")),
            false,
        );
        f.section("9912346", day, serial);
        for (ocr, ore) in payments_ {
            f.ocr_payment(ocr, Money::ore_unchecked(*ore));
        }
        let r = payments::import_bgmax(&self.s, &f.build().unwrap())
            .await
            .unwrap();
        assert_eq!(r.matched, payments_.len(), "{r:?}");
        projector::flush(&self.s).await.unwrap();
    }

    async fn steps(&self, invoice_id: i64) -> Vec<(String, i64, i64)> {
        sqlx::query_as("select step, fee_ore, interest_ore from collection_steps where invoice_id = $1 order by id")
            .bind(invoice_id)
            .fetch_all(&self.s.pool)
            .await
            .unwrap()
    }

    /// Plays the calendar from `from` through `to`, one day at a time, at 06:00.
    async fn days(&self, g: &TestGateway<RedisStore>, from: NaiveDate, to: NaiveDate) {
        let mut d = from;
        while d <= to {
            g.clock.set_ms(at(d.year(), d.month(), d.day(), 6));
            self.settle().await;
            daily::run_day(&self.s, d).await.unwrap();
            d = d.succ_opt().unwrap();
        }
    }
}

use chrono::Datelike;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_of_calls_invoices_payments_reminders_collection_plans_and_disputes() {
    let store = common::redis::single_store(StorePolicy::default()).await;
    let g = start(store.clone()).await;
    let db = common::pg::TestDb::new().await;
    let s = Arc::new(Settlement::new(
        db.pool.clone(),
        store.clone(),
        SettlementPolicy::default(),
        Arc::new(g.clock.clone()),
    ));
    let books = Books {
        s: s.clone(),
        consumer: StreamConsumer::new(
            s.clone(),
            store.clone(),
            ConsumerConfig {
                consumer: "month".into(),
                partitions: ConsumerConfig::owned(StorePolicy::default().partitions, 0, 1),
                batch: 200,
                max_deliveries: 3,
                claim_idle: std::time::Duration::from_secs(60),
                poll_interval: std::time::Duration::from_millis(10),
                concurrency: 4,
            },
        ),
    };
    g.accounts()
        .put_directory_entry(req(
            pb::DirectoryEntry {
                number: P.into(),
                holder_registered: true,
            },
            ADMIN,
        ))
        .await
        .unwrap();

    // The holders, with postal addresses: their invoices go on paper with
    // the fee (R13); without an address they would be held.
    for (i, number) in [A, B, FIXED, P].into_iter().enumerate() {
        common::settle::register_paper_holder(&db.pool, number, i).await;
    }

    // ---- 2 November: the calls.
    g.clock.set_ms(at(2026, 11, 2, 10));
    let a1 = call(&g, "a1", A, TAROT, STJARN, 41 * 60).await; // 1 225.90 ≥ 80 % of 1 500
    assert_eq!(a1, 41 * 2990);
    books.settle().await;
    let (a_threshold, a_threshold_ocr, a_threshold_total) = books.invoice(A, "threshold").await;
    assert_eq!(
        a_threshold_total,
        a1 + 3000,
        "the threshold invoice at once, with the paper fee (R8, R13)"
    );
    let a2 = call(&g, "a2", A, TAROT, STJARN, 10 * 60).await; // exposure passes 1 500
    assert_eq!(
        decision(&g, "a3", A).await,
        (
            pb::Decision::Denied as i32,
            pb::Reason::BlockedCreditLimit as i32
        )
    );
    let b1 = call(&g, "b1", B, TAROT, STJARN, 20 * 60).await;
    let f1 = call(&g, "f1", FIXED, LEGAL, RADGIV, 30 * 60).await;
    let p1 = call(&g, "p1", P, TAROT, STJARN, 80 * 60).await; // not cut: runs past the grant
    assert_eq!(p1, 80 * 2990);
    books.settle().await;
    let (p_invoice, p_ocr, p_total) = books.invoice(P, "threshold").await;
    assert_eq!(p_total, p1 + 3000);

    // ---- 3–15 November: the monthly run on the 15th.
    books.days(&g, date(2026, 11, 3), date(2026, 11, 15)).await;
    let (a_monthly, a_monthly_ocr, a_monthly_total) = books.invoice(A, "monthly").await;
    assert_eq!(a_monthly_total, a2 + 3000);
    let (b_invoice, _, b_total) = books.invoice(B, "monthly").await;
    assert_eq!(b_total, b1 + 3000);
    let (f_invoice, _, f_total) = books.invoice(FIXED, "monthly").await;
    assert_eq!(f_total, f1 + 3000);
    let due: NaiveDate = sqlx::query_scalar("select due_date from invoices where id = $1")
        .bind(b_invoice)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        due,
        date(2026, 11, 30),
        "the monthly invoice is due at the month's end (R11)"
    );
    assert_eq!(g.account(B).await.unbilled_ore, 0);
    assert_eq!(g.account(B).await.invoiced_unpaid_ore, b_total);

    // ---- 16 November: A pays both invoices by bankgiro.
    g.clock.set_ms(at(2026, 11, 16, 9));
    books
        .pay_bgmax(
            date(2026, 11, 16),
            "00001",
            &[
                (&a_threshold_ocr, a_threshold_total),
                (&a_monthly_ocr, a_monthly_total),
            ],
        )
        .await;
    let acct = g.account(A).await;
    assert!(
        !acct.credit_blocked,
        "the credit block lifts on payment (R7)"
    );
    assert_eq!(acct.invoiced_unpaid_ore, 0);
    assert_eq!(
        acct.limit_ore, 300_000,
        "the first paid invoice raises the limit to 3 000 SEK (R8)"
    );
    assert!(acct.established);
    let again = call(&g, "a4", A, TAROT, STJARN, 60).await;
    assert_eq!(again, 2990, "A may call again");

    // ---- 17 November: P agrees an installment plan; 20 November: F disputes.
    g.clock.set_ms(at(2026, 11, 17, 9));
    let plan = plans::create_plan(
        &s,
        P,
        Money::sek(500),
        date(2026, 12, 1),
        "customer-service",
        false,
    )
    .await
    .unwrap();
    assert_eq!(plan.total.ore(), p_total);
    g.clock.set_ms(at(2026, 11, 20, 9));
    let dispute = disputes::open_dispute(
        &s,
        f_invoice,
        "I did not call this number",
        "customer-service",
    )
    .await
    .unwrap();
    assert_eq!(
        dispute.evidence.as_array().unwrap().len(),
        1,
        "the consent of the call is attached (R3, R19)"
    );
    books.days(&g, date(2026, 11, 16), date(2026, 11, 30)).await;

    // ---- 1 December: P pays the first installment.
    g.clock.set_ms(at(2026, 12, 1, 9));
    books
        .pay_bgmax(date(2026, 12, 1), "00002", &[(&p_ocr, 50_000)])
        .await;

    // ---- December to mid-January, day by day.
    books.days(&g, date(2026, 12, 1), date(2027, 1, 20)).await;

    // B: overdue block, reminder (60), collection (180 + interest), enforcement.
    let steps = books.steps(b_invoice).await;
    let names: Vec<&str> = steps.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(
        names,
        vec!["overdue", "reminder", "collection", "enforcement"]
    );
    assert_eq!(steps[1].1, 6000, "the statutory reminder fee");
    assert_eq!(steps[2].1, 18_000, "the collection fee");
    let reminder_day: NaiveDate = sqlx::query_scalar(
        "select on_date from collection_steps where invoice_id = $1 and step = 'reminder'",
    )
    .bind(b_invoice)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    // Due Monday 30 November; 5 days later is Saturday 5 December, so the
    // first bank day after it (and after the 3 bank days of grace, 1–3
    // December): Monday 7 December.
    assert_eq!(
        reminder_day,
        date(2026, 12, 7),
        "five days after the due date (seed 001), on a bank day"
    );
    let collection_day: NaiveDate = sqlx::query_scalar(
        "select on_date from collection_steps where invoice_id = $1 and step = 'collection'",
    )
    .bind(b_invoice)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let expected_interest = interest::late_interest(
        Money::ore_unchecked(b_total),
        date(2026, 11, 30),
        collection_day,
        &interest::default_table(),
        interest::STATUTORY_MARGIN_PP,
    )
    .unwrap();
    assert_eq!(
        steps[2].2,
        expected_interest.ore(),
        "reference rate + 8 pp from the due date"
    );
    assert!(expected_interest.ore() > 0);
    let b = g.account(B).await;
    assert!(b.overdue_blocked);
    assert_eq!(
        b.invoiced_unpaid_ore,
        b_total + 6000 + 18_000 + expected_interest.ore()
    );
    assert_eq!(
        decision(&g, "b2", B).await,
        (
            pb::Decision::Denied as i32,
            pb::Reason::BlockedOverdue as i32
        )
    );
    let enforcement = ladder::enforcement_list(&db.pool).await.unwrap();
    let listed: Vec<i64> = enforcement.iter().map(|e| e.invoice_id).collect();
    assert!(listed.contains(&b_invoice), "{listed:?}");

    // F: the dispute stopped the ladder.
    let f_steps: Vec<String> = books
        .steps(f_invoice)
        .await
        .into_iter()
        .map(|(s, _, _)| s)
        .collect();
    assert_eq!(f_steps, vec!["paused_dispute"]);
    assert!(
        !listed.contains(&f_invoice),
        "a disputed claim never goes to Kronofogden"
    );
    assert!(!g.account(FIXED).await.overdue_blocked);

    // P: kept in December (no fee), broken in January by the missed installment.
    let p_steps = books.steps(p_invoice).await;
    let p_names: Vec<&str> = p_steps.iter().map(|(s, _, _)| s.as_str()).collect();
    assert!(p_names.contains(&"plan_broken"), "{p_names:?}");
    let broken_at = p_names.iter().position(|s| *s == "plan_broken").unwrap();
    assert!(
        p_steps[..broken_at]
            .iter()
            .all(|(_, fee, interest)| *fee == 0 && *interest == 0),
        "no fees or interest while the plan was kept (R18): {p_steps:?}"
    );
    assert!(
        p_names[broken_at..].contains(&"reminder"),
        "the ladder resumes: {p_names:?}"
    );
    let status: String = sqlx::query_scalar("select status from installment_plans where id = $1")
        .bind(plan.id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(status, "broken");

    // The books balance, every document was made, and the store agrees with the ledger.
    let mut conn = db.pool.acquire().await.unwrap();
    assert_eq!(ledger::total(&mut conn).await.unwrap(), 0);
    drop(conn);
    let docs: i64 = sqlx::query_scalar("select count(*) from documents")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(docs >= 6 + 2 + 2, "invoices, reminders and demands: {docs}");
    books.settle().await;
    let r = reconcile::reconcile(&s, false).await.unwrap();
    assert!(r.drifting.is_empty(), "{:?}", r.drifting);
    assert!(r.checked >= 4);
    let _ = (a_threshold, a_monthly, g.clock.now_ms());
    g.stop().await;
}
