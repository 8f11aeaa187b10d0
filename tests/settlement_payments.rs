//! Payments end to end (SPEC R7, R8, R9, R15, R17) against a real Redis (the
//! state store) and a real PostgreSQL (the ledger), each test in its own
//! world: Bankgirot's BgMax files, Swish callbacks through the HTTP router,
//! manual matching, and prepaid-code orders.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use callauth::domain::{BlockKind, CodeHasher, Decision, LimitChange, Money, PrepaidCode};
use callauth::settlement::billing::invoicing::{self, InvoiceKind};
use callauth::settlement::payments::prepaid_orders::{self, OrderKind, OrderRef, PickedUp};
use callauth::settlement::payments::swish::{self, SwishCallback, SwishOutcome};
use callauth::settlement::payments::{self, Allocation, BgMaxImport, MatchTarget};
use callauth::settlement::{ledger, sync::projector, SettlementError, SettlementPolicy};
use callauth::store::{BlockChange, LineKey, Store};
use common::bgmax_writer::FileBuilder;
use common::settle::World;
use common::*;
use serde_json::json;
use tower::ServiceExt;

const A: &str = "+46701234567";
const B: &str = "+46701234568";
/// Our bankgiro (SettlementPolicy::default: 991-2346).
const OUR_BANKGIRO: &str = "9912346";
const SAMPLE: &[u8] = include_bytes!("fixtures/bgmax/bankgirot-sample-ocr-check-length.bgmax");
const TOKEN: &str = "0f3c9a7e-callback-secret-5d21b8";

#[derive(Clone, Debug)]
struct Invoice {
    id: i64,
    ocr: String,
    total: i64,
    paid: i64,
    status: String,
}

async fn world(numbers: &[&str]) -> World {
    World::new(T0, numbers, SettlementPolicy::default()).await
}

async fn invoice(w: &World, id: i64) -> Invoice {
    let (ocr, total, paid, status): (String, i64, i64, String) =
        sqlx::query_as("select ocr, total_ore, paid_ore, status from invoices where id = $1")
            .bind(id)
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
    Invoice {
        id,
        ocr,
        total,
        paid,
        status,
    }
}

/// A call far past the limit (55 minutes of tarot, 1 644.50 SEK: the grant
/// stops at the limit, the overrun is charged), consumed: the threshold
/// invoice is issued and applied, and the number is credit-blocked.
async fn over_the_limit(w: &World, number: &str, call: &str, minutes: u32) -> Invoice {
    w.call(number, call, TAROT, minutes * 60).await;
    w.settle().await;
    let id: i64 =
        sqlx::query_scalar("select max(id) from invoices where number = $1 and kind = 'threshold'")
            .bind(number)
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
    let inv = invoice(w, id).await;
    let account = w.account(number).await;
    assert!(account.credit_blocked, "{account:?}");
    assert_eq!(account.invoiced_unpaid.ore(), inv.total);
    inv
}

/// A small call, then the monthly invoice of it.
async fn monthly(w: &World, number: &str, call: &str, minutes: u32) -> Invoice {
    w.call(number, call, TAROT, minutes * 60).await;
    w.settle().await;
    let s = &w.settlement;
    let mut tx = s.pool.begin().await.unwrap();
    let issued = invoicing::issue_invoice(
        &mut tx,
        &s.policy,
        number,
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
    invoice(w, issued.id).await
}

/// A file with one deposit to our bankgiro; the deposit serial is the
/// timestamp's last five digits, so that each file is its own deposit.
fn file(timestamp: &str) -> FileBuilder {
    let mut f = FileBuilder::new(timestamp, false);
    f.section(
        OUR_BANKGIRO,
        chrono::NaiveDate::from_ymd_opt(2025, 11, 24).unwrap(),
        &timestamp[timestamp.len() - 5..],
    );
    f
}

async fn import(w: &World, f: &FileBuilder) -> BgMaxImport {
    payments::import_bgmax(&w.settlement, &f.build().unwrap())
        .await
        .unwrap()
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
    let unbalanced = w
        .count("select count(*) from (select txn from ledger_entries group by txn having sum(amount_ore) <> 0) t")
        .await;
    assert_eq!(unbalanced, 0, "every transaction balances");
}

/// Row counts and ledger sums that must not move when nothing happens.
async fn snapshot(w: &World) -> Vec<i64> {
    let mut out = Vec::new();
    for sql in [
        "select count(*) from payments",
        "select count(*) from payment_allocations",
        "select count(*) from bgmax_files",
        "select count(*) from ledger_entries",
        "select count(*) from store_ops",
        "select coalesce(sum(paid_ore), 0)::bigint from invoices",
        "select coalesce(sum(amount_ore), 0)::bigint from payments",
        "select coalesce(sum(abs(amount_ore)), 0)::bigint from ledger_entries",
    ] {
        out.push(w.count(sql).await);
    }
    out
}

// ---------------------------------------------------------------------------
// BgMax

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bankgirot_sample_goes_to_the_manual_queue_with_exact_amounts() {
    let w = world(&[A]).await;

    // A copy whose TK70 declares 5 payments instead of 6 is refused whole.
    let text: String = SAMPLE.iter().map(|&b| char::from(b)).collect();
    assert!(text.contains("7000000006000000010000000600000002"));
    let broken: Vec<u8> = text
        .replace(
            "7000000006000000010000000600000002",
            "7000000005000000010000000600000002",
        )
        .chars()
        .map(|c| c as u8)
        .collect();
    let e = payments::import_bgmax(&w.settlement, &broken)
        .await
        .unwrap_err();
    assert!(matches!(e, SettlementError::Invalid(_)), "{e:?}");
    assert!(e.to_string().contains("TK70 declares 5"), "{e}");
    assert_eq!(snapshot(&w).await, vec![0; 8], "nothing written");

    let r = payments::import_bgmax(&w.settlement, SAMPLE).await.unwrap();
    assert_eq!(
        r,
        BgMaxImport {
            file_key: "bgmax:20040525173035010331:P:9912346".into(),
            already_imported: false,
            test_file: false,
            sections: 2,
            payments: 7,
            matched: 0,
            unmatched: 7,
            duplicates: 0,
            total: Money::sek(9_900),
        }
    );
    let file_total: i64 = w.count("select total_ore from bgmax_files").await;
    assert_eq!(
        file_total,
        190_000 + 800_000,
        "deposits 1 900.00 + 8 000.00"
    );

    let queue = payments::unmatched(&w.db.pool).await.unwrap();
    let amounts: Vec<i64> = queue.iter().map(|p| p.amount.ore()).collect();
    assert_eq!(
        amounts,
        vec![100_000, -50_000, 140_000, 110_000, 120_000, 70_000, 500_000]
    );
    let references: Vec<Option<&str>> = queue.iter().map(|p| p.reference.as_deref()).collect();
    assert_eq!(
        references,
        vec![
            Some("655969"),
            Some("89853"),
            Some("657866 658765 657767 657965"),
            Some("650861"),
            None,
            Some("659763"),
            Some("658260 658369 658468"),
        ]
    );
    assert!(queue.iter().all(|p| p.channel == "bankgiro"
        && p.paid_on == chrono::NaiveDate::from_ymd_opt(2004, 5, 25).unwrap()));
    assert_eq!(queue[0].payer_name.as_deref(), Some("Kalles Plåt AB"));
    assert_eq!(queue[0].raw["city"], json!("Storåker"));
    assert_eq!(
        queue[0].external_id,
        "bgmax:9912346:20040525:00074:000000000010"
    );
    assert_eq!(
        queue[6].external_id, "bgmax:9912346:20040525:00075:000000000016#2",
        "the sample reuses a BGC serial: the second gets an occurrence suffix"
    );

    assert_eq!(balance(&w, "bank:bankgiro").await, 990_000);
    assert_eq!(balance(&w, "unmatched_payments").await, -990_000);
    books_balance(&w).await;

    // The same file again changes nothing.
    let before = snapshot(&w).await;
    let again = payments::import_bgmax(&w.settlement, SAMPLE).await.unwrap();
    assert!(again.already_imported);
    assert_eq!((again.matched, again.unmatched), (0, 0));
    assert_eq!(snapshot(&w).await, before);
    books_balance(&w).await;

    // A test file (TK01 mark T) is recorded, its payments are not booked.
    let date = chrono::NaiveDate::from_ymd_opt(2025, 11, 24).unwrap();
    let mut test_file = FileBuilder::new("20251124061500000001", true);
    test_file
        .section(OUR_BANKGIRO, date, "00009")
        .ocr_payment("1234574", Money::sek(10));
    let r = import(&w, &test_file).await;
    assert!(r.test_file && !r.already_imported);
    assert_eq!((r.matched, r.unmatched), (0, 0));
    let after = snapshot(&w).await;
    assert_eq!(after[2], before[2] + 1);
    assert_eq!((&after[..2], &after[3..]), (&before[..2], &before[3..]));
    // A deposit to somebody else's bankgiro refuses the whole file.
    let mut foreign = file("20251124061500000002");
    foreign
        .ocr_payment("1234574", Money::sek(10))
        .section("3783511", date, "00010")
        .ocr_payment("1234574", Money::sek(10));
    let e = payments::import_bgmax(&w.settlement, &foreign.build().unwrap())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("ours is 991-2346"), "{e}");
    assert_eq!(snapshot(&w).await, after);

    // A deduction cannot be matched to anything.
    let deduction = queue[1].id;
    let mut tx = w.db.pool.begin().await.unwrap();
    let e = payments::match_payment(
        &mut tx,
        &w.settlement.policy,
        deduction,
        MatchTarget::Number(A.into()),
        "staff:anna",
        w.settlement.today(),
        w.settlement.now(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, SettlementError::Refused(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_the_first_invoice_lifts_the_block_and_raises_the_limit() {
    let w = world(&[A, B]).await;
    // B's holder asked for a lower limit (R9): it stays after the first payment.
    w.store
        .set_limit(
            &n(B),
            &LimitChange::HolderRequested(Money::sek(1000)),
            "holder",
            w.now(),
        )
        .await
        .unwrap();
    let inv_a = over_the_limit(&w, A, "a1", 55).await;
    let inv_b = over_the_limit(&w, B, "b1", 40).await;
    assert_eq!(w.account(A).await.limit, Money::sek(1500));

    let mut f = file("20251124061500000001");
    f.ocr_payment(&inv_a.ocr, Money::ore_unchecked(inv_a.total))
        .payer_name("Anna Andersson")
        .ocr_payment(&inv_b.ocr, Money::ore_unchecked(inv_b.total));
    let r = import(&w, &f).await;
    assert_eq!((r.matched, r.unmatched, r.duplicates), (2, 0, 0));

    for inv in [&inv_a, &inv_b] {
        let now = invoice(&w, inv.id).await;
        assert_eq!((now.paid, now.status.as_str()), (inv.total, "paid"));
    }
    let a = w.account(A).await;
    assert_eq!(a.invoiced_unpaid, Money::ZERO);
    assert!(!a.credit_blocked, "the credit block lifts at once (R7)");
    assert!(a.established);
    assert_eq!(a.limit, Money::sek(3000), "first invoice paid (R8)");
    let b = w.account(B).await;
    assert!(!b.credit_blocked && b.established);
    assert_eq!(
        b.limit,
        Money::sek(1000),
        "the holder's lower limit stays (R9)"
    );
    assert_eq!(
        w.count("select count(*) from numbers where established")
            .await,
        2
    );
    assert_eq!(
        w.count("select count(*) from store_ops where kind = 'apply_payment' and (payload->>'first_invoice_paid')::bool")
            .await,
        2
    );
    assert_eq!(balance(&w, &format!("caller_invoiced:{A}")).await, 0);
    assert_eq!(balance(&w, &format!("caller_invoiced:{B}")).await, 0);
    assert_eq!(
        balance(&w, "bank:bankgiro").await,
        inv_a.total + inv_b.total
    );
    books_balance(&w).await;

    // The same deposit delivered again in another file (same payment keys)
    // registers nothing new.
    let before = snapshot(&w).await;
    let mut redelivered = file("20251124071500000001");
    redelivered
        .ocr_payment(&inv_a.ocr, Money::ore_unchecked(inv_a.total))
        .payer_name("Anna Andersson")
        .ocr_payment(&inv_b.ocr, Money::ore_unchecked(inv_b.total));
    let r = import(&w, &redelivered).await;
    assert!(!r.already_imported);
    assert_eq!((r.matched, r.unmatched, r.duplicates), (0, 0, 2));
    let after = snapshot(&w).await;
    assert_eq!(after[2], before[2] + 1, "the file is recorded");
    assert_eq!((&after[..2], &after[3..]), (&before[..2], &before[3..]));
    // The very same file: already imported.
    let r = import(&w, &f).await;
    assert!(r.already_imported);
    assert_eq!(snapshot(&w).await, after);
    books_balance(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_payment_then_overpayment_becomes_credit_for_the_next_invoice() {
    let w = world(&[A]).await;
    let inv = over_the_limit(&w, A, "a1", 55).await;

    // Partial: the invoice stays open, the exposure falls below the limit.
    let mut f = file("20251124061500000001");
    f.ocr_payment(&inv.ocr, Money::sek(500));
    assert_eq!(import(&w, &f).await.matched, 1);
    let now = invoice(&w, inv.id).await;
    assert_eq!((now.paid, now.status.as_str()), (50_000, "open"));
    let a = w.account(A).await;
    assert_eq!(a.invoiced_unpaid.ore(), inv.total - 50_000);
    assert!(!a.credit_blocked);
    assert!(!a.established, "not paid in full yet");
    assert_eq!(a.limit, Money::sek(1500));

    // The rest plus 100 SEK too much: paid, and 100 SEK of credit.
    let rest = inv.total - 50_000;
    let mut f = file("20251124061500000002");
    f.ocr_payment(&inv.ocr, Money::ore_unchecked(rest + 10_000));
    assert_eq!(import(&w, &f).await.matched, 1);
    let now = invoice(&w, inv.id).await;
    assert_eq!((now.paid, now.status.as_str()), (inv.total, "paid"));
    assert_eq!(balance(&w, &format!("caller_credit:{A}")).await, -10_000);
    let a = w.account(A).await;
    assert_eq!(a.invoiced_unpaid, Money::ZERO);
    assert_eq!(a.limit, Money::sek(3000));
    let credit_rows = w
        .count(
            "select count(*) from payment_allocations where kind = 'credit' and amount_ore = 10000",
        )
        .await;
    assert_eq!(credit_rows, 1);

    // The next invoice uses the credit: 10 minutes (299.00) + paper fee 30.00 − 100.00.
    let next = monthly(&w, A, "a2", 10).await;
    assert_eq!(next.total, 29_900 + 3_000 - 10_000);
    assert_eq!(balance(&w, &format!("caller_credit:{A}")).await, 0);
    assert_eq!(w.account(A).await.invoiced_unpaid.ore(), next.total);
    books_balance(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_text_references_and_surplus_pay_several_invoices() {
    let w = world(&[A]).await;
    let inv1 = monthly(&w, A, "a1", 5).await;
    let inv2 = monthly(&w, A, "a2", 7).await;
    let inv3 = monthly(&w, A, "a3", 3).await;
    let inv4 = monthly(&w, A, "a4", 4).await;
    let all = inv1.total + inv2.total + inv3.total + inv4.total;
    assert_eq!(w.account(A).await.invoiced_unpaid.ore(), all);

    let mut f = file("20251124061500000001");
    // Code 3: two OCRs in free text.
    f.free_text_payment(
        &format!("{}, {}", inv1.ocr, inv2.ocr),
        Money::ore_unchecked(inv1.total + inv2.total),
    )
    // inv4 named; the surplus pays the other open invoice (inv3).
    .ocr_payment(&inv4.ocr, Money::ore_unchecked(inv4.total + inv3.total));
    let r = import(&w, &f).await;
    assert_eq!((r.matched, r.unmatched), (2, 0));
    for inv in [&inv1, &inv2, &inv3, &inv4] {
        let now = invoice(&w, inv.id).await;
        assert_eq!(
            (now.paid, now.status.as_str()),
            (inv.total, "paid"),
            "{inv:?}"
        );
    }
    let order: Vec<(i64, i64)> =
        sqlx::query_as("select invoice_id, amount_ore from payment_allocations order by id")
            .fetch_all(&w.db.pool)
            .await
            .unwrap();
    assert_eq!(
        order,
        vec![
            (inv1.id, inv1.total),
            (inv2.id, inv2.total),
            (inv4.id, inv4.total),
            (inv3.id, inv3.total)
        ]
    );
    assert_eq!(w.account(A).await.invoiced_unpaid, Money::ZERO);
    assert_eq!(balance(&w, &format!("caller_credit:{A}")).await, 0);
    books_balance(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_the_last_overdue_invoice_lifts_the_overdue_block() {
    let w = world(&[A]).await;
    let inv1 = monthly(&w, A, "a1", 5).await;
    let inv2 = monthly(&w, A, "a2", 6).await;
    let inv3 = monthly(&w, A, "a3", 7).await;
    // All three are past due and the number is blocked (as the ladder does);
    // inv3 is disputed, so it does not count for the block (R19).
    let past = w.settlement.today() - chrono::Days::new(10);
    sqlx::query("update invoices set due_date = $2, stage_due_date = $2 where id = any($1)")
        .bind(vec![inv1.id, inv2.id, inv3.id])
        .bind(past)
        .execute(&w.db.pool)
        .await
        .unwrap();
    sqlx::query("update invoices set disputed = true where id = $1")
        .bind(inv3.id)
        .execute(&w.db.pool)
        .await
        .unwrap();
    let overdue = |blocked: bool| BlockChange {
        kind: BlockKind::Overdue,
        target: String::new(),
        blocked,
        reason: "overdue".into(),
        actor: "settlement".into(),
    };
    w.store
        .set_block(&n(A), &overdue(true), w.now())
        .await
        .unwrap();
    assert!(w.account(A).await.overdue_blocked);

    // inv1 paid: inv2 is still overdue, the block stays.
    let mut f = file("20251124061500000001");
    f.ocr_payment(&inv1.ocr, Money::ore_unchecked(inv1.total));
    assert_eq!(import(&w, &f).await.matched, 1);
    assert!(w.account(A).await.overdue_blocked);
    let clear: bool = sqlx::query_scalar(
        "select (payload->>'clear_overdue')::bool from store_ops where kind = 'apply_payment' order by id desc limit 1",
    )
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    assert!(!clear);

    // inv2 paid (a partial payment of it would not do): the block lifts.
    let mut f = file("20251124061500000002");
    f.ocr_payment(&inv2.ocr, Money::ore_unchecked(inv2.total - 1));
    import(&w, &f).await;
    assert!(w.account(A).await.overdue_blocked, "one öre still unpaid");
    let mut f = file("20251124061500000003");
    f.ocr_payment(&inv2.ocr, Money::ore_unchecked(1));
    import(&w, &f).await;
    assert!(!w.account(A).await.overdue_blocked, "R7: lifted at once");
    assert_eq!(
        invoice(&w, inv3.id).await.status,
        "open",
        "the disputed one is untouched"
    );
    assert_eq!(w.account(A).await.invoiced_unpaid.ore(), inv3.total);
    books_balance(&w).await;
}

// ---------------------------------------------------------------------------
// Swish

fn swish_json(id: &str, status: &str, reference: &str, amount: &str) -> serde_json::Value {
    json!({
        "id": id,
        "payeePaymentReference": reference,
        "paymentReference": "1E2FC19E5E5E4E18916609B7F8911C12",
        "callbackUrl": "https://pay.example.se/swish/callback/x",
        "payerAlias": "46701234567",
        "payeeAlias": "1231181189",
        "amount": amount,
        "currency": "SEK",
        "message": "Faktura",
        "status": status,
        "dateCreated": "2025-11-24T09:59:01.000+0100",
        "datePaid": if status == "PAID" { json!("2025-11-24T10:00:02.000+0100") } else { json!(null) },
        "errorCode": if status == "DECLINED" { json!("RF07") } else { json!(null) },
        "errorMessage": if status == "DECLINED" { json!("Transaction declined") } else { json!(null) },
    })
}

async fn post(router: &axum::Router, path: &str, body: impl Into<Body>) -> (StatusCode, String) {
    let response = router
        .clone()
        .oneshot(
            Request::post(path)
                .header("content-type", "application/json")
                .body(body.into())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn sek_text(ore: i64) -> String {
    format!("{}.{:02}", ore / 100, ore % 100)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swish_callback_pays_the_invoice_once() {
    let w = world(&[A]).await;
    let inv = over_the_limit(&w, A, "a1", 55).await;
    let router = swish::router(w.settlement.clone(), Some(TOKEN.into()));
    let path = format!("/swish/callback/{TOKEN}");
    let paid = swish_json(
        "AB23D7406ECE4542A80152D909EF9F6B",
        "PAID",
        &inv.ocr,
        &sek_text(inv.total),
    )
    .to_string();

    let (status, body) = post(&router, &path, paid.clone()).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "registered\n"));
    let now = invoice(&w, inv.id).await;
    assert_eq!((now.paid, now.status.as_str()), (inv.total, "paid"));
    // Lifted in real time: no settle() in between.
    let a = w.account(A).await;
    assert_eq!(a.invoiced_unpaid, Money::ZERO);
    assert!(!a.credit_blocked);
    assert_eq!(a.limit, Money::sek(3000));
    let (channel, external_id, paid_on, alias): (String, String, chrono::NaiveDate, String) =
        sqlx::query_as("select channel, external_id, paid_on, payer_alias from payments")
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
    assert_eq!(channel, "swish");
    assert_eq!(external_id, "swish:AB23D7406ECE4542A80152D909EF9F6B");
    assert_eq!(
        paid_on,
        chrono::NaiveDate::from_ymd_opt(2025, 11, 24).unwrap()
    );
    assert_eq!(alias, "46701234567");
    assert_eq!(balance(&w, "bank:swish").await, inv.total);

    // Swish retries: the same callback changes nothing.
    let before = snapshot(&w).await;
    let (status, body) = post(&router, &path, paid).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "duplicate\n"));
    assert_eq!(snapshot(&w).await, before);

    // A declined payment is recorded, without money, once.
    let declined = swish_json(
        "11A86BE70EA346E4B1C39C874173F088",
        "DECLINED",
        &inv.ocr,
        "100.00",
    )
    .to_string();
    let (status, _) = post(&router, &path, declined.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let (st, amount, code): (String, i64, String) = sqlx::query_as(
        "select status, amount_ore, raw->>'errorCode' from payments where external_id like '%11A86BE7%'",
    )
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (st.as_str(), amount, code.as_str()),
        ("declined", 0, "RF07")
    );
    let after_decline = snapshot(&w).await;
    assert_eq!(after_decline[0], before[0] + 1, "one more payments row");
    assert_eq!(
        &after_decline[1..],
        &before[1..],
        "no money, no ledger, no store op"
    );
    let (status, body) = post(&router, &path, declined).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "duplicate\n"));
    assert_eq!(snapshot(&w).await, after_decline);

    // CREATED is acknowledged and ignored.
    let created = swish_json(
        "22A86BE70EA346E4B1C39C874173F088",
        "CREATED",
        &inv.ocr,
        "5.00",
    );
    let (status, body) = post(&router, &path, created.to_string()).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ignored\n"));

    // Malformed input: 400 with a message, nothing written.
    let bad_amount = swish_json(
        "33A86BE70EA346E4B1C39C874173F088",
        "PAID",
        &inv.ocr,
        "100.005",
    );
    let (status, body) = post(&router, &path, bad_amount.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("more than two decimals"), "{body}");
    let mut euro = swish_json(
        "44A86BE70EA346E4B1C39C874173F088",
        "PAID",
        &inv.ocr,
        "10.00",
    );
    euro["currency"] = json!("EUR");
    let (status, body) = post(&router, &path, euro.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("not SEK"), "{body}");
    let (status, body) = post(&router, &path, "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("malformed Swish callback"), "{body}");
    assert_eq!(snapshot(&w).await, after_decline);

    // The wrong token, or none, is forbidden.
    let good = swish_json("55A86BE70EA346E4B1C39C874173F088", "PAID", &inv.ocr, "1.00").to_string();
    let (status, _) = post(&router, "/swish/callback/guess", good.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = post(&router, "/swish/callback", good).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(snapshot(&w).await, after_decline);
    books_balance(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callbacks_register_once_and_never_overpay_an_invoice() {
    let w = world(&[A]).await;
    let inv = over_the_limit(&w, A, "a1", 55).await;
    let s = &w.settlement;
    let cb = |id: &str| -> SwishCallback {
        serde_json::from_value(swish_json(id, "PAID", &inv.ocr, &sek_text(inv.total))).unwrap()
    };
    let same = "77A86BE70EA346E4B1C39C874173F088";
    // Swish retrying while the first delivery is in flight, and a second
    // payment of the same invoice at the same moment.
    let (r1, r2, r3) = tokio::join!(
        swish::handle_callback(s, cb(same)),
        swish::handle_callback(s, cb(same)),
        swish::handle_callback(s, cb("88A86BE70EA346E4B1C39C874173F088")),
    );
    let outcomes = [r1.unwrap(), r2.unwrap(), r3.unwrap()];
    let duplicates = outcomes
        .iter()
        .filter(|o| {
            matches!(
                o,
                SwishOutcome::Paid(payments::Registered::AlreadyRegistered { .. })
            )
        })
        .count();
    assert_eq!(duplicates, 1, "{outcomes:?}");
    assert_eq!(w.count("select count(*) from payments").await, 2);
    let now = invoice(&w, inv.id).await;
    assert_eq!((now.paid, now.status.as_str()), (inv.total, "paid"));
    // The second payment found nothing open: it is the caller's credit.
    assert_eq!(balance(&w, &format!("caller_credit:{A}")).await, -inv.total);
    assert_eq!(balance(&w, "bank:swish").await, 2 * inv.total);
    projector::flush(s).await.unwrap();
    assert_eq!(w.account(A).await.invoiced_unpaid, Money::ZERO);
    books_balance(&w).await;
}

// ---------------------------------------------------------------------------
// Manual matching

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_payment_is_matched_by_hand_once() {
    let w = world(&[A]).await;
    let inv = over_the_limit(&w, A, "a1", 55).await;
    let mut f = file("20251124061500000001");
    f.free_text_payment("faktura november", Money::ore_unchecked(inv.total))
        .payer_name("Anna Andersson")
        .free_text_payment("present", Money::sek(50));
    let r = import(&w, &f).await;
    assert_eq!((r.matched, r.unmatched), (0, 2));
    let queue = payments::unmatched(&w.db.pool).await.unwrap();
    assert_eq!(queue.len(), 2);
    assert_eq!(queue[0].reference.as_deref(), Some("faktura november"));
    assert_eq!(queue[0].payer_name.as_deref(), Some("Anna Andersson"));
    assert_eq!(
        balance(&w, "unmatched_payments").await,
        -(inv.total + 5_000)
    );
    assert!(w.account(A).await.credit_blocked, "nothing applied yet");

    let s = &w.settlement;
    let mut tx = s.pool.begin().await.unwrap();
    let allocations = payments::match_payment(
        &mut tx,
        &s.policy,
        queue[0].id,
        MatchTarget::Invoice(inv.ocr.clone()),
        "staff:anna",
        s.today(),
        s.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        allocations,
        vec![Allocation::Invoice {
            invoice_id: inv.id,
            number: A.into(),
            amount: Money::ore_unchecked(inv.total),
            paid_in_full: true
        }]
    );
    projector::flush(s).await.unwrap();
    assert_eq!(invoice(&w, inv.id).await.status, "paid");
    let a = w.account(A).await;
    assert_eq!(a.invoiced_unpaid, Money::ZERO);
    assert!(!a.credit_blocked);
    assert_eq!(a.limit, Money::sek(3000));
    assert_eq!(balance(&w, "unmatched_payments").await, -5_000);
    let by: String = sqlx::query_scalar("select matched_by from payments where id = $1")
        .bind(queue[0].id)
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
    assert_eq!(by, "staff:anna");
    assert_eq!(
        w.count("select count(*) from audit_log where action = 'payment_matched'")
            .await,
        1
    );

    // Twice: refused, nothing changes.
    let before = snapshot(&w).await;
    let mut tx = s.pool.begin().await.unwrap();
    let e = payments::match_payment(
        &mut tx,
        &s.policy,
        queue[0].id,
        MatchTarget::Number(A.into()),
        "staff:bo",
        s.today(),
        s.now(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, SettlementError::Refused(_)), "{e:?}");
    drop(tx);
    assert_eq!(snapshot(&w).await, before);

    // The other one, matched to the number with nothing open: credit.
    let mut tx = s.pool.begin().await.unwrap();
    let allocations = payments::match_payment(
        &mut tx,
        &s.policy,
        queue[1].id,
        MatchTarget::Number("not a number".into()),
        "staff:anna",
        s.today(),
        s.now(),
    )
    .await;
    assert!(
        matches!(allocations, Err(SettlementError::Invalid(_))),
        "{allocations:?}"
    );
    drop(tx);
    let mut tx = s.pool.begin().await.unwrap();
    let allocations = payments::match_payment(
        &mut tx,
        &s.policy,
        queue[1].id,
        // As staff type it: normalised to E.164.
        MatchTarget::Number("070-123 45 67".into()),
        "staff:anna",
        s.today(),
        s.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        allocations,
        vec![Allocation::Credit {
            number: A.into(),
            amount: Money::sek(50)
        }]
    );
    assert_eq!(balance(&w, "unmatched_payments").await, 0);
    assert_eq!(balance(&w, &format!("caller_credit:{A}")).await, -5_000);
    assert!(payments::unmatched(&w.db.pool).await.unwrap().is_empty());
    books_balance(&w).await;
}

// ---------------------------------------------------------------------------
// Prepaid orders (R17)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepaid_code_bought_by_swish_and_topped_up_by_bankgiro() {
    let w = world(&[A]).await;
    let s = &w.settlement;
    let hasher = CodeHasher::new(&[42u8; 32]).unwrap();

    let mut tx = s.pool.begin().await.unwrap();
    let order = prepaid_orders::create_order(&mut tx, OrderKind::Issue, "+46701234567")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(order.ocr.len(), 12);
    let e = prepaid_orders::pick_up(s, OrderRef::Id(order.id), &order.pickup_secret, &hasher)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not paid"), "{e}");

    // Paid by Swish, with the order's OCR as payee reference.
    let cb: SwishCallback = serde_json::from_value(swish_json(
        "66A86BE70EA346E4B1C39C874173F088",
        "PAID",
        &order.ocr,
        "200.00",
    ))
    .unwrap();
    let outcome = swish::handle_callback(s, cb).await.unwrap();
    assert!(
        matches!(&outcome, SwishOutcome::Paid(payments::Registered::Matched { allocations, .. })
            if allocations == &vec![Allocation::PrepaidOrder { order_id: order.id, amount: Money::sek(200) }]),
        "{outcome:?}"
    );
    assert_eq!(balance(&w, "prepaid_sales").await, -20_000);

    // Picked up once: the code in clear, only in this answer.
    let PickedUp::Issued {
        code,
        code_id,
        balance: issued_balance,
        ..
    } = prepaid_orders::pick_up(
        s,
        OrderRef::Ocr(order.ocr.clone()),
        &order.pickup_secret,
        &hasher,
    )
    .await
    .unwrap()
    else {
        panic!("first pick-up issues the code")
    };
    assert_eq!(code.expose().len(), 16);
    assert!(PrepaidCode::parse(code.expose()).is_ok());
    // Knowing the order's OCR is not enough: the pick-up secret is required.
    let wrong = prepaid_orders::pick_up(s, OrderRef::Ocr(order.ocr.clone()), "guess", &hasher)
        .await
        .unwrap_err();
    assert!(
        wrong.to_string().contains("wrong pick-up secret"),
        "{wrong}"
    );
    assert_eq!(order.pickup_secret.len(), 48);
    assert_eq!(hasher.id(&code), code_id);
    assert_eq!(issued_balance, Money::sek(200));
    assert_eq!(
        prepaid_orders::pick_up(s, OrderRef::Id(order.id), &order.pickup_secret, &hasher)
            .await
            .unwrap(),
        PickedUp::AlreadyPickedUp {
            code_id: code_id.clone()
        }
    );
    let stored = w
        .count("select count(*) from prepaid_orders where status = 'picked_up' and code_id is not null")
        .await;
    assert_eq!(stored, 1);

    // The code works at the state store, from a withheld number.
    let svc = service(&w.store, TAROT).await;
    let mut spec = call("p1", &svc, true);
    spec.consent.as_mut().unwrap().own_number_confirmed = false;
    let r = w
        .store
        .authorize_prepaid(
            &LineKey::withheld("ivr-test", "line-7"),
            None,
            &code_id,
            &spec,
            w.now(),
        )
        .await
        .unwrap();
    assert!(matches!(r.decision, Decision::Allowed(_)), "{r:?}");
    assert_eq!(
        w.store.prepaid(&code_id).await.unwrap().unwrap().balance,
        Money::sek(200)
    );
    // The gateway's PrepaidCredited event clears prepaid_sales.
    w.settle().await;
    assert_eq!(balance(&w, "prepaid_sales").await, 0);
    assert_eq!(balance(&w, &format!("prepaid:{code_id}")).await, -20_000);

    // A top-up order for the code, paid by a bankgiro deposit.
    let mut tx = s.pool.begin().await.unwrap();
    let topup = prepaid_orders::create_order(
        &mut tx,
        OrderKind::TopUp {
            code_id: code_id.clone(),
        },
        "",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut f = file("20251124061500000001");
    f.ocr_payment(&topup.ocr, Money::sek(100))
        // A second payment to the same order is not applied: manual queue.
        .ocr_payment(&topup.ocr, Money::sek(100));
    let r = import(&w, &f).await;
    assert_eq!((r.matched, r.unmatched), (1, 1));
    projector::flush(s).await.unwrap();
    assert_eq!(
        w.store.prepaid(&code_id).await.unwrap().unwrap().balance,
        Money::sek(300)
    );
    let e = prepaid_orders::pick_up(s, OrderRef::Id(topup.id), &topup.pickup_secret, &hasher)
        .await
        .unwrap_err();
    assert!(matches!(e, SettlementError::Refused(_)), "{e:?}");
    w.settle().await;
    assert_eq!(balance(&w, "prepaid_sales").await, 0);
    assert_eq!(balance(&w, &format!("prepaid:{code_id}")).await, -30_000);
    assert_eq!(balance(&w, "unmatched_payments").await, -10_000);
    books_balance(&w).await;
}

/// R15 (issue 11): a 0 SEK payment and a BgMax deduction can never be
/// matched; staff take them out of the manual queue with a reason. The
/// deduction (Bankgirot's sample has one of 500,00 SEK) is written off; a
/// payment with money in it cannot be dismissed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_payments_and_deductions_leave_the_manual_queue_with_a_reason() {
    let w = world(&[A]).await;
    payments::import_bgmax(&w.settlement, SAMPLE).await.unwrap();
    let mut zero = file("20251124061500000001");
    zero.free_text_payment("okänd", Money::ZERO);
    assert_eq!(import(&w, &zero).await.unmatched, 1);
    let queue = payments::unmatched(&w.db.pool).await.unwrap();
    assert_eq!(queue.len(), 8);
    let deduction = queue[1].id;
    assert_eq!(queue[1].amount, Money::ore_unchecked(-50_000));
    let nothing = queue.iter().find(|p| p.amount == Money::ZERO).unwrap().id;
    let money_in_it = queue[0].id;
    let now = w.settlement.now();
    let dismiss = |id: i64, reason: &'static str| {
        let pool = w.db.pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            let r = payments::dismiss_payment(&mut tx, id, reason, "staff:anna", now).await;
            if r.is_ok() {
                tx.commit().await.unwrap();
            }
            r
        }
    };

    // Refused, writing nothing: money in it, no reason, an endless reason.
    let before = snapshot(&w).await;
    let audit_before = w.count("select count(*) from audit_log").await;
    assert!(matches!(
        dismiss(money_in_it, "fel bankgiro").await,
        Err(SettlementError::Refused(_))
    ));
    assert!(matches!(
        dismiss(nothing, "  ").await,
        Err(SettlementError::Invalid(_))
    ));
    let long: &'static str = Box::leak("x".repeat(501).into_boxed_str());
    match dismiss(nothing, long).await {
        Err(SettlementError::Invalid(m)) => assert!(!m.contains("xxx"), "never echoed: {m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        dismiss(999_999, "finns inte").await,
        Err(SettlementError::NotFound(_))
    ));
    assert_eq!(snapshot(&w).await, before);
    assert_eq!(
        w.count("select count(*) from audit_log").await,
        audit_before
    );

    // The 0 SEK payment: nothing to book.
    let d = dismiss(nothing, "nollbelopp från banken").await.unwrap();
    assert_eq!(d.written_off, Money::ZERO);
    // The deduction: 500,00 SEK written off, out of unmatched_payments.
    assert_eq!(balance(&w, "unmatched_payments").await, -990_000);
    let d = dismiss(deduction, "avdrag: återbetalning enligt banken")
        .await
        .unwrap();
    assert_eq!(d.written_off, Money::sek(500));
    // −990 000 − 50 000: the deduction no longer offsets the money that waits.
    assert_eq!(balance(&w, "unmatched_payments").await, -1_040_000);
    assert_eq!(balance(&w, "losses:payment_write_offs").await, 50_000);
    let left: Vec<i64> = payments::unmatched(&w.db.pool)
        .await
        .unwrap()
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(left.len(), 6);
    assert!(!left.contains(&deduction) && !left.contains(&nothing));
    let (status, by, reason): (String, String, String) =
        sqlx::query_as("select status, matched_by, dismissed_reason from payments where id = $1")
            .bind(deduction)
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), by.as_str(), reason.as_str()),
        (
            "dismissed",
            "staff:anna",
            "avdrag: återbetalning enligt banken"
        )
    );
    assert_eq!(
        w.count("select count(*) from audit_log where action = 'payment_dismissed'")
            .await,
        2
    );
    // Once only.
    assert!(matches!(
        dismiss(deduction, "igen").await,
        Err(SettlementError::Refused(_))
    ));
    books_balance(&w).await;
}
