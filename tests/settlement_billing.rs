//! Invoicing rules of issue 11 against a real Redis and a real PostgreSQL:
//! the minimum invoice amount (R14), VAT on invoices and statements
//! (mervärdesskattelagen 17 kap.), upheld disputes charged back to the
//! merchant (R19, R20), holders without an address (R13) and e-mail bounces
//! falling back to paper (R13). Expected amounts are worked out by hand in
//! the comments.

mod common;

use callauth::domain::Money;
use callauth::settlement::privacy::personal::{self, HolderInput};
use callauth::settlement::{
    billing::delivery, billing::route, collection::disputes, ledger, worker::daily,
    SettlementPolicy,
};
use callauth::store::Store;
use chrono::NaiveDate;
use common::settle::World;
use common::*;

/// A paper customer and an e-mail customer.
const PAPER: &str = "+46701112233";
const EMAIL: &str = "+46702223344";

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

async fn holder(w: &World, number: &str, delivery: &str) {
    let mut conn = w.db.pool.acquire().await.unwrap();
    personal::upsert_holder(
        &mut conn,
        &HolderInput {
            number: number.into(),
            name: Some("Kim Karlsson".into()),
            address_lines: vec!["Ringvägen 2".into(), "118 60 Stockholm".into()],
            email: Some("kim@example.se".into()),
            invoice_delivery: delivery.into(),
            personal_number: None,
        },
        "test",
    )
    .await
    .unwrap();
}

/// (kind, usage, fees, total) of a number's invoices, oldest first.
async fn invoices(w: &World, number: &str) -> Vec<(String, i64, i64, i64)> {
    sqlx::query_as(
        "select kind, usage_ore, fees_ore, total_ore from invoices where number = $1 order by id",
    )
    .bind(number)
    .fetch_all(&w.db.pool)
    .await
    .unwrap()
}

/// R14 (seed 002): the minimum invoice amount is compared with the calls,
/// not with the calls plus the paper fee, so a paper customer and an e-mail
/// customer with the same calls get the same decision; and nothing is
/// carried for more than three months.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minimum_invoice_amount_applies_to_the_calls_for_paper_and_email_alike() {
    let policy = SettlementPolicy {
        minimum_invoice_amount: Some(Money::sek(100)),
        ..SettlementPolicy::default()
    };
    let w = World::new(T0, &[PAPER, EMAIL], policy).await;
    holder(&w, PAPER, "paper").await;
    holder(&w, EMAIL, "email").await;
    // 3 started minutes of tarot at 29,90 kr = 89,70 kr each, on 2025-11-23:
    // below 100 kr (with the paper fee the paper customer's would be 119,70).
    assert_eq!(
        w.call(PAPER, "p1", TAROT, 150).await,
        Money::ore_unchecked(8970)
    );
    assert_eq!(
        w.call(EMAIL, "e1", TAROT, 150).await,
        Money::ore_unchecked(8970)
    );
    w.settle().await;

    // 15 December, 15 January and 15 February: carried for both. On
    // 15 February the calls are 2 months and 23 days old.
    for day in [ymd(2025, 12, 15), ymd(2026, 1, 15), ymd(2026, 2, 15)] {
        let r = daily::run_day(&w.settlement, day).await.unwrap();
        assert_eq!((r.invoices_issued, r.invoices_carried), (0, 2), "{day}");
        assert!(invoices(&w, PAPER).await.is_empty(), "{day}");
        assert!(invoices(&w, EMAIL).await.is_empty(), "{day}");
    }
    // 15 March: older than three months (23 Nov + 3 months = 23 Feb), so
    // invoiced although still below the minimum: carried three months, not more.
    let r = daily::run_day(&w.settlement, ymd(2026, 3, 15))
        .await
        .unwrap();
    assert_eq!((r.invoices_issued, r.invoices_carried), (2, 0));
    // Paper: 89,70 + 30,00 fee = 119,70. E-mail: 89,70, no fee.
    assert_eq!(
        invoices(&w, PAPER).await,
        vec![("monthly".to_string(), 8970, 3000, 11970)]
    );
    assert_eq!(
        invoices(&w, EMAIL).await,
        vec![("monthly".to_string(), 8970, 0, 8970)]
    );
}

/// An exempt psychology line of the second merchant: 19,95 kr a minute,
/// billed per second, no VAT (mervärdesskattelagen 10 kap.).
const EXEMPT_LINE: &str = "+469006006060";

async fn add_exempt_line(w: &World) {
    let mut spec = spec(EXEMPT_LINE, OTHER_MERCHANT, "Samtalsstöd", 1995, 1, 0);
    spec.vat = callauth::domain::VatRate::EXEMPT;
    w.store.upsert_service(&spec, T0).await.unwrap();
}

fn pdf_has(pdf: &[u8], text: &str) -> bool {
    let needle = format!("({text}) Tj");
    pdf.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn balance(w: &World, account: &str) -> i64 {
    let mut conn = w.db.pool.acquire().await.unwrap();
    ledger::balance(&mut conn, account).await.unwrap()
}

/// Mervärdesskattelagen 17 kap.: the invoice shows, per VAT rate, the base
/// and the VAT; the prices include VAT; the output VAT is booked on its own
/// account per rate, and the merchants are owed the calls without it. The
/// merchant statement shows the VAT we declare and takes our fee on the
/// calls without VAT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoices_and_statements_show_vat_per_rate_and_the_ledger_books_it() {
    let w = World::new(T0, &[PAPER], SettlementPolicy::default()).await;
    holder(&w, PAPER, "paper").await;
    add_exempt_line(&w).await;
    // 10 minutes of tarot: 299,00 kr incl. 25 % VAT = 299,00 × 25/125 = 59,80
    // VAT on a base of 239,20. 300 s on the exempt line: 19,95 × 5 = 99,75, no VAT.
    assert_eq!(w.call(PAPER, "t1", TAROT, 600).await, Money::sek(299));
    assert_eq!(
        w.call(PAPER, "x1", EXEMPT_LINE, 300).await,
        Money::ore_unchecked(9975)
    );
    w.settle().await;
    daily::run_day(&w.settlement, ymd(2025, 12, 15))
        .await
        .unwrap();
    // The invoice: 299,00 + 99,75 + 30,00 paper fee (incl. 25 %: 6,00 VAT on
    // 24,00) = 428,75.
    let (id, ocr, total): (i64, String, i64) =
        sqlx::query_as("select id, ocr, total_ore from invoices where number = $1")
            .bind(PAPER)
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
    assert_eq!(total, 42_875);
    // Per rate: 25 %: base 239,20 + 24,00 = 263,20, VAT 59,80 + 6,00 = 65,80;
    // 0 %: base 99,75, VAT 0,00.
    let summary: Vec<(Option<i32>, i64, i64)> = sqlx::query_as(
        "select vat_rate_percent, sum(amount_ore - vat_ore)::bigint, sum(vat_ore)::bigint
         from invoice_lines where invoice_id = $1 group by 1 order by 1 desc nulls last",
    )
    .bind(id)
    .fetch_all(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(
        summary,
        vec![(Some(25), 26_320, 6_580), (Some(0), 9_975, 0)]
    );
    let pdf: Vec<u8> = sqlx::query_scalar("select pdf from documents where invoice_id = $1")
        .bind(id)
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
    for text in [
        "Moms 25 %",
        "263,20 kr",
        "65,80 kr",
        "Moms 0 %",
        "99,75 kr",
        "0,00 kr",
        "Summa moms",
        "428,75 kr",
    ] {
        assert!(pdf_has(&pdf, text), "{text} missing from the invoice");
    }
    // The books: output VAT on its own account per rate; the merchants are
    // owed the calls without VAT; our paper fee income without VAT.
    assert_eq!(balance(&w, "vat:output:25").await, -6_580);
    assert_eq!(balance(&w, "vat:output:0").await, 0);
    assert_eq!(balance(&w, "merchant_payable:stjarnlinjen").await, -23_920);
    assert_eq!(balance(&w, "merchant_payable:radgivarna").await, -9_975);
    assert_eq!(balance(&w, "income:paper_invoice_fee").await, -2_400);

    // Paid in full; on 1 January the merchants are settled for December.
    w.clock.set_ms(T0 + 30 * 86_400_000);
    let mut f = common::bgmax_writer::FileBuilder::new("20251220060000000001", false);
    f.section("9912346", ymd(2025, 12, 20), "00001")
        .ocr_payment(&ocr, Money::ore_unchecked(total));
    let r = callauth::settlement::payments::import_bgmax(&w.settlement, &f.build().unwrap())
        .await
        .unwrap();
    assert_eq!(r.matched, 1);
    let made =
        callauth::settlement::billing::merchants::run_statements(&w.settlement, ymd(2026, 1, 1))
            .await
            .unwrap();
    let by: std::collections::HashMap<_, _> =
        made.iter().map(|s| (s.merchant_id.as_str(), s)).collect();
    // Stjärnlinjen: 299,00 collected incl. 59,80 VAT; fee 15 % of 239,20 =
    // 35,88; paid out 239,20 − 35,88 = 203,32.
    let st = by["stjarnlinjen"];
    assert_eq!(
        (
            st.gross_ore,
            st.vat_ore,
            st.chargeback_ore,
            st.fee_ore,
            st.net_ore
        ),
        (29_900, 5_980, 0, 3_588, 20_332)
    );
    // Rådgivarna: 99,75 without VAT; fee 15 % = 14,9625 → 14,96; paid out 84,79.
    let rg = by["radgivarna"];
    assert_eq!(
        (
            rg.gross_ore,
            rg.vat_ore,
            rg.chargeback_ore,
            rg.fee_ore,
            rg.net_ore
        ),
        (9_975, 0, 0, 1_496, 8_479)
    );
    let text = callauth::settlement::billing::merchants::describe(st);
    assert!(text.contains("moms 59,80 kr"), "{text}");
    // Per rate: 239,20 + 59,80 at 25 %; 99,75 + 0,00 at 0 %.
    assert_eq!(
        callauth::settlement::billing::merchants::vat_summary(&w.db.pool, st.id)
            .await
            .unwrap(),
        vec![(25, 23_920, 5_980)]
    );
    assert_eq!(
        callauth::settlement::billing::merchants::vat_summary(&w.db.pool, rg.id)
            .await
            .unwrap(),
        vec![(0, 9_975, 0)]
    );
    assert_eq!(balance(&w, "merchant_payable:stjarnlinjen").await, 0);
    assert_eq!(balance(&w, "merchant_payable:radgivarna").await, 0);
    let mut conn = w.db.pool.acquire().await.unwrap();
    assert_eq!(ledger::total(&mut conn).await.unwrap(), 0);
}

/// Noon in Stockholm on `day`, in Unix ms.
fn noon(day: NaiveDate) -> i64 {
    use chrono::TimeZone;
    chrono_tz::Europe::Stockholm
        .from_local_datetime(&day.and_hms_opt(12, 0, 0).unwrap())
        .single()
        .unwrap()
        .timestamp_millis()
}

async fn pay_ocr(w: &World, day: NaiveDate, serial: &str, ocr: &str, ore: i64) {
    let mut f = common::bgmax_writer::FileBuilder::new(
        &format!("{}060000000001", day.format("%Y%m%d")),
        false,
    );
    f.section("9912346", day, serial)
        .ocr_payment(ocr, Money::ore_unchecked(ore));
    let r = callauth::settlement::payments::import_bgmax(&w.settlement, &f.build().unwrap())
        .await
        .unwrap();
    assert_eq!(r.matched, 1, "{r:?}");
}

/// R19, R20: an upheld dispute charges the uncollectable calls back to the
/// merchants' payable accounts (without VAT; the VAT comes off the output
/// VAT) and reverses our own fee, instead of booking it all as our loss;
/// the merchants' next statements show the chargeback and our fee is taken
/// only on what was collected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upheld_dispute_is_charged_back_to_the_merchants_and_reverses_our_fee() {
    let w = World::new(T0, &[PAPER], SettlementPolicy::default()).await;
    holder(&w, PAPER, "paper").await;
    add_exempt_line(&w).await;
    // As above: 299,00 tarot (59,80 VAT), 99,75 exempt, 30,00 paper fee
    // (6,00 VAT): 428,75 invoiced on 15 December.
    w.call(PAPER, "t1", TAROT, 600).await;
    w.call(PAPER, "x1", EXEMPT_LINE, 300).await;
    w.settle().await;
    w.clock.set_ms(noon(ymd(2025, 12, 15)));
    daily::run_day(&w.settlement, ymd(2025, 12, 15))
        .await
        .unwrap();
    let (id, ocr): (i64, String) = sqlx::query_as("select id, ocr from invoices")
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
    // 100,00 paid on 20 December; the rest disputed and the dispute upheld.
    w.clock.set_ms(noon(ymd(2025, 12, 20)));
    pay_ocr(&w, ymd(2025, 12, 20), "00001", &ocr, 10_000).await;
    w.clock.set_ms(noon(ymd(2025, 12, 21)));
    let d = disputes::open_dispute(&w.settlement, id, "I never called", "support")
        .await
        .unwrap();
    w.clock.set_ms(noon(ymd(2025, 12, 22)));
    disputes::resolve_dispute(&w.settlement, d.id, true, "the line was cloned", "support")
        .await
        .unwrap();

    // Credited: 428,75 − 100,00 = 328,75. The 100,00 paid the calls first,
    // so the calls lack 398,75 − 100,00 = 298,75, split in proportion:
    // 29 875 × 29 900 / 39 875 = 22 401,57… and 29 875 × 9 975 / 39 875 =
    // 7 473,42… → 22 402 (the larger remainder takes the öre) and 7 473.
    // Stjärnlinjen's 224,02 carries 59,80 × 22 402 / 29 900 = 44,804 → 44,80
    // VAT: 179,22 charged back. Rådgivarna's 74,73 has no VAT. The paper fee
    // (30,00) is credited whole: 24,00 income and 6,00 VAT reversed.
    let (status, total, credits): (String, i64, i64) =
        sqlx::query_as("select status, total_ore, credits_ore from invoices where id = $1")
            .bind(id)
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), total, credits),
        ("credited", 10_000, 32_875)
    );
    assert_eq!(balance(&w, "caller_invoiced:+46701112233").await, 0);
    // Stjärnlinjen is still owed what was collected: 299,00 − 224,02 = 74,98
    // of which 59,80 − 44,80 = 15,00 is VAT: 59,98. Rådgivarna: 99,75 − 74,73 = 25,02.
    assert_eq!(balance(&w, "merchant_payable:stjarnlinjen").await, -5_998);
    assert_eq!(balance(&w, "merchant_payable:radgivarna").await, -2_502);
    // Output VAT: 59,80 + 6,00 − 44,80 − 6,00 = 15,00.
    assert_eq!(balance(&w, "vat:output:25").await, -1_500);
    assert_eq!(balance(&w, "income:paper_invoice_fee").await, 0);
    assert_eq!(
        balance(&w, "losses:disputes").await,
        0,
        "nothing is our loss"
    );
    let chargebacks: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "select merchant_id, gross_ore, vat_ore, base_ore from merchant_chargebacks order by merchant_id",
    )
    .fetch_all(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(
        chargebacks,
        vec![
            ("radgivarna".to_string(), 7_473, 0, 7_473),
            ("stjarnlinjen".to_string(), 22_402, 4_480, 17_922),
        ]
    );

    // 1 January: the statements show the chargebacks; our fee is on what was
    // collected without VAT. Stjärnlinjen: 299,00 − 59,80 − 179,22 = 59,98,
    // fee 15 % = 8,997 → 9,00, paid out 50,98. Rådgivarna: 99,75 − 74,73 =
    // 25,02, fee 3,753 → 3,75, paid out 21,27.
    w.clock.set_ms(noon(ymd(2026, 1, 1)));
    let made =
        callauth::settlement::billing::merchants::run_statements(&w.settlement, ymd(2026, 1, 1))
            .await
            .unwrap();
    let by: std::collections::HashMap<_, _> =
        made.iter().map(|s| (s.merchant_id.as_str(), s)).collect();
    let st = by["stjarnlinjen"];
    assert_eq!(
        (
            st.calls,
            st.gross_ore,
            st.vat_ore,
            st.chargeback_ore,
            st.fee_ore,
            st.net_ore
        ),
        (1, 29_900, 5_980, 17_922, 900, 5_098)
    );
    let rg = by["radgivarna"];
    assert_eq!(
        (
            rg.calls,
            rg.gross_ore,
            rg.vat_ore,
            rg.chargeback_ore,
            rg.fee_ore,
            rg.net_ore
        ),
        (1, 9_975, 0, 7_473, 375, 2_127)
    );
    let text = callauth::settlement::billing::merchants::describe(st);
    assert!(text.contains("chargebacks 179,22 kr"), "{text}");
    assert_eq!(balance(&w, "merchant_payable:stjarnlinjen").await, 0);
    assert_eq!(balance(&w, "merchant_payable:radgivarna").await, 0);
    assert_eq!(balance(&w, "income:merchant_fee").await, -(900 + 375));
    let mut conn = w.db.pool.acquire().await.unwrap();
    assert_eq!(ledger::total(&mut conn).await.unwrap(), 0);
}

/// The invoices of a number: (id, status, delivery, fees, total, issue, due).
async fn invoice_rows(
    w: &World,
    number: &str,
) -> Vec<(i64, String, String, i64, i64, NaiveDate, NaiveDate)> {
    sqlx::query_as(
        "select id, status, delivery, fees_ore, total_ore, issue_date, due_date
         from invoices where number = $1 order by id",
    )
    .bind(number)
    .fetch_all(&w.db.pool)
    .await
    .unwrap()
}

/// (id, kind, channel, status, fallback_of) of an invoice's documents.
async fn documents(w: &World, invoice_id: i64) -> Vec<(i64, String, String, String, Option<i64>)> {
    sqlx::query_as(
        "select id, kind, channel, status, fallback_of from documents where invoice_id = $1 order by id",
    )
    .bind(invoice_id)
    .fetch_all(&w.db.pool)
    .await
    .unwrap()
}

/// R13 and issue 11 item 12: a holder with neither a postal address nor an
/// e-mail address gets no PDF addressed to nobody and no paper fee: the
/// invoice is held (listed, never overdue, no reminder) until an address
/// exists, and then sent as the holder chose, due no earlier than 14 days
/// after it is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_to_a_holder_without_an_address_is_held_until_one_exists() {
    let w = World::new(T0, &[PAPER], SettlementPolicy::default()).await;
    let mut conn = w.db.pool.acquire().await.unwrap();
    personal::upsert_holder(
        &mut conn,
        &HolderInput {
            number: PAPER.into(),
            name: None,
            address_lines: vec![],
            email: None,
            invoice_delivery: "paper".into(),
            personal_number: None,
        },
        "directory-import",
    )
    .await
    .unwrap();
    drop(conn);
    // 41 minutes of tarot on 23 November: 1 225,90 ≥ 80 % of 1 500 → a
    // threshold invoice at once, but there is nowhere to send it.
    w.call(PAPER, "t1", TAROT, 41 * 60).await;
    w.settle().await;
    let rows = invoice_rows(&w, PAPER).await;
    assert_eq!(rows.len(), 1);
    let (id, status, _, fees, total, _, due) = rows[0].clone();
    assert_eq!(
        (status.as_str(), fees, total),
        ("held", 0, 122_590),
        "no paper fee"
    );
    assert!(
        documents(&w, id).await.is_empty(),
        "no PDF addressed to nobody"
    );
    let held = delivery::held_invoices(&w.db.pool).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].invoice_id, held[0].total_ore), (id, 122_590));
    // Still in the books and in the store: the claim exists.
    assert_eq!(balance(&w, "caller_invoiced:+46701112233").await, 122_590);
    assert_eq!(w.account(PAPER).await.invoiced_unpaid.ore(), 122_590);

    // Its due date (7 December + 14 days... a threshold invoice of 23 November
    // is due 7 December, a Sunday, so Monday 8 December) passes: not overdue,
    // no reminder, because it was never sent.
    assert_eq!(due, ymd(2025, 12, 8));
    for day in [ymd(2025, 12, 9), ymd(2025, 12, 13), ymd(2025, 12, 20)] {
        w.clock.set_ms(noon(day));
        let r = daily::run_day(&w.settlement, day).await.unwrap();
        assert_eq!((r.overdue, r.reminders), (0, 0), "{day}");
    }
    assert!(!w.account(PAPER).await.overdue_blocked);

    // 22 December: customer service registers the address (paper). The
    // invoice goes out that day on paper, with the fee the holder's choice
    // carries: 1 225,90 + 30,00 = 1 255,90, due 22 Dec + 14 = 5 January.
    w.clock.set_ms(noon(ymd(2025, 12, 22)));
    holder(&w, PAPER, "paper").await;
    let released = delivery::release_held(&w.settlement, Some(&[PAPER.to_string()]))
        .await
        .unwrap();
    assert_eq!(released.invoices, 1);
    let (_, status, channel, fees, total, issued, due) = invoice_rows(&w, PAPER).await[0].clone();
    assert_eq!(
        (status.as_str(), channel.as_str(), fees, total, issued, due),
        (
            "open",
            "paper",
            3_000,
            125_590,
            ymd(2025, 12, 22),
            ymd(2026, 1, 5)
        )
    );
    let docs = documents(&w, id).await;
    assert_eq!(docs.len(), 1);
    assert_eq!(
        (docs[0].2.as_str(), docs[0].3.as_str()),
        ("paper", "queued")
    );
    let pdf: Vec<u8> = sqlx::query_scalar("select pdf from documents where id = $1")
        .bind(docs[0].0)
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
    assert!(
        pdf_has(&pdf, "118 60 Stockholm"),
        "addressed to the holder now"
    );
    assert!(pdf_has(&pdf, "2026-01-05"));
    assert!(delivery::held_invoices(&w.db.pool)
        .await
        .unwrap()
        .is_empty());
    // The fee reached the store too; releasing again does nothing.
    w.settle().await;
    assert_eq!(w.account(PAPER).await.invoiced_unpaid.ore(), 125_590);
    assert_eq!(
        delivery::release_held(&w.settlement, None).await.unwrap(),
        delivery::Released::default()
    );
    let mut conn = w.db.pool.acquire().await.unwrap();
    assert_eq!(ledger::total(&mut conn).await.unwrap(), 0);
}

/// R13 (seed 002): an e-mail invoice that bounces falls back to paper. The
/// mailing system fetches the queued documents and reports each sent or
/// bounced; the paper copy costs the customer nothing, later invoices go on
/// paper without a fee while the address bounces, and a new e-mail address
/// is used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounced_email_invoice_falls_back_to_paper_without_a_fee() {
    let w = World::new(T0, &[EMAIL], SettlementPolicy::default()).await;
    holder(&w, EMAIL, "email").await;
    // 10 minutes of tarot (299,00), invoiced on 15 December by e-mail, no fee.
    w.call(EMAIL, "e1", TAROT, 600).await;
    w.settle().await;
    w.clock.set_ms(noon(ymd(2025, 12, 15)));
    daily::run_day(&w.settlement, ymd(2025, 12, 15))
        .await
        .unwrap();
    let (id, _, channel, fees, total, _, _) = invoice_rows(&w, EMAIL).await[0].clone();
    assert_eq!((channel.as_str(), fees, total), ("email", 0, 29_900));

    // The mailing system fetches the e-mail queue: one invoice, to kim@example.se.
    let queued = delivery::queued(&w.db.pool, Some(route::Channel::Email), 100, true)
        .await
        .unwrap();
    assert_eq!(queued.len(), 1);
    let doc = &queued[0];
    assert_eq!((doc.invoice_id, doc.kind.as_str()), (id, "invoice"));
    assert_eq!(doc.email.as_deref(), Some("kim@example.se"));
    assert!(doc.pdf.starts_with(b"%PDF-"));

    // It bounces: a paper copy is queued at once, without a fee.
    w.clock.set_ms(noon(ymd(2025, 12, 16)));
    let r = delivery::report(
        &w.settlement,
        doc.id,
        delivery::Outcome::Bounced,
        "550 5.1.1 mailbox unavailable",
        "mailer",
    )
    .await
    .unwrap();
    let fallback = r.fallback_document_id.expect("a paper copy");
    assert_eq!(
        documents(&w, id).await,
        vec![
            (
                doc.id,
                "invoice".into(),
                "email".into(),
                "bounced".into(),
                None
            ),
            (
                fallback,
                "invoice".into(),
                "paper".into(),
                "queued".into(),
                Some(doc.id)
            ),
        ]
    );
    let (_, _, channel, fees, total, _, _) = invoice_rows(&w, EMAIL).await[0].clone();
    assert_eq!(
        (channel.as_str(), fees, total),
        ("paper", 0, 29_900),
        "no fee"
    );
    // The same report again changes nothing; another outcome is refused.
    let again = delivery::report(
        &w.settlement,
        doc.id,
        delivery::Outcome::Bounced,
        "",
        "mailer",
    )
    .await
    .unwrap();
    assert!(!again.changed);
    assert_eq!(again.fallback_document_id, Some(fallback));
    assert!(matches!(
        delivery::report(&w.settlement, doc.id, delivery::Outcome::Sent, "", "mailer").await,
        Err(callauth::settlement::SettlementError::Refused(_))
    ));
    // The print house sends the paper copy; paper is never reported bounced.
    let paper = delivery::queued(&w.db.pool, Some(route::Channel::Paper), 100, false)
        .await
        .unwrap();
    assert_eq!(paper.len(), 1);
    assert_eq!(
        paper[0].address_lines,
        vec!["Ringvägen 2", "118 60 Stockholm"]
    );
    assert!(paper[0].pdf.is_empty(), "no PDF unless asked for");
    delivery::report(
        &w.settlement,
        fallback,
        delivery::Outcome::Sent,
        "",
        "print-house",
    )
    .await
    .unwrap();
    assert!(delivery::queued(&w.db.pool, None, 100, false)
        .await
        .unwrap()
        .is_empty());

    // Paid on 20 December.
    let ocr: String = sqlx::query_scalar("select ocr from invoices where id = $1")
        .bind(id)
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
    pay_ocr(&w, ymd(2025, 12, 20), "00001", &ocr, 29_900).await;
    w.settle().await;

    // The next invoice goes on paper while the address bounces, still
    // without a fee: 5 minutes, 149,50, on 15 January.
    w.call(EMAIL, "e2", TAROT, 300).await;
    w.settle().await;
    w.clock.set_ms(noon(ymd(2026, 1, 15)));
    daily::run_day(&w.settlement, ymd(2026, 1, 15))
        .await
        .unwrap();
    let second = invoice_rows(&w, EMAIL).await[1].clone();
    assert_eq!(
        (second.2.as_str(), second.3, second.4),
        ("paper", 0, 14_950)
    );
    let ocr: String = sqlx::query_scalar("select ocr from invoices where id = $1")
        .bind(second.0)
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
    pay_ocr(&w, ymd(2026, 1, 20), "00002", &ocr, 14_950).await;
    w.settle().await;

    // A new e-mail address is tried again.
    let mut conn = w.db.pool.acquire().await.unwrap();
    personal::upsert_holder(
        &mut conn,
        &HolderInput {
            number: EMAIL.into(),
            name: Some("Kim Karlsson".into()),
            address_lines: vec!["Ringvägen 2".into(), "118 60 Stockholm".into()],
            email: Some("kim.karlsson@example.se".into()),
            invoice_delivery: "email".into(),
            personal_number: None,
        },
        "support",
    )
    .await
    .unwrap();
    drop(conn);
    w.call(EMAIL, "e3", TAROT, 60).await;
    w.settle().await;
    w.clock.set_ms(noon(ymd(2026, 2, 15)));
    daily::run_day(&w.settlement, ymd(2026, 2, 15))
        .await
        .unwrap();
    let third = invoice_rows(&w, EMAIL).await[2].clone();
    assert_eq!((third.2.as_str(), third.3), ("email", 0));
}
