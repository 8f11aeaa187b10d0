//! Personal data and records over time (SPEC R21; GDPR Art. 15 and 17;
//! Bokföringslagen 7 kap. 2 §) against a real Redis and a real PostgreSQL:
//! the extract, erasure checked against every table of the schema, and the
//! retention job.

mod common;

use callauth::domain::{BlockKind, Money};
use callauth::settlement::privacy::personal::{self, HolderInput};
use callauth::settlement::{
    collection::disputes, payments, sync::projector, worker::daily, SettlementError,
};
use callauth::settlement::{ledger, SettlementPolicy};
use callauth::store::{BlockChange, Store};
use chrono::NaiveDate;
use common::bgmax_writer::FileBuilder;
use common::settle::World;
use common::*;

const A: &str = "+46701234567";
/// Our bankgiro (SettlementPolicy::default: 991-2346).
const OUR_BANKGIRO: &str = "9912346";

/// Everything personal the test gives the system about A's holder (and the
/// free texts that name her family), in the forms it may be stored in.
const PERSONAL: &[&str] = &[
    "Anna Andersson",
    "ANNA ANDERSSON",
    "Storgatan 1",
    "STORGATAN 1",
    "111 22 Stockholm",
    "anna@example.se",
    "196408233234",
    "Box 99",
    "Olle",
];

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

async fn tables(w: &World) -> Vec<String> {
    sqlx::query_scalar(
        "select table_name::text from information_schema.tables
         where table_schema = 'public' and table_type = 'BASE TABLE' and table_name <> '_sqlx_migrations'
         order by 1",
    )
    .fetch_all(&w.db.pool)
    .await
    .unwrap()
}

/// The tables with a row whose text contains `needle` (case-insensitive).
async fn tables_containing(w: &World, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for t in tables(w).await {
        let sql = format!("select count(*) from \"{t}\" x where x::text ilike '%' || $1 || '%'");
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(needle)
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
        if n > 0 {
            found.push(t);
        }
    }
    found
}

/// Pays `ocr` by bankgiro on `day` as the payer "ANNA ANDERSSON, STORGATAN 1".
async fn pay(w: &World, day: NaiveDate, serial: &str, ocr: &str, ore: i64) {
    let mut f = FileBuilder::new(&format!("{}060000000001", day.format("%Y%m%d")), false);
    f.section(OUR_BANKGIRO, day, serial);
    f.ocr_payment(ocr, Money::ore_unchecked(ore))
        .payer_name("ANNA ANDERSSON")
        .payer_address("STORGATAN 1", "11122", "STOCKHOLM");
    let r = payments::import_bgmax(&w.settlement, &f.build().unwrap())
        .await
        .unwrap();
    assert_eq!(r.matched, 1, "{r:?}");
    projector::flush(&w.settlement).await.unwrap();
}

async fn invoice_of(w: &World, day: NaiveDate) -> (i64, String, i64) {
    sqlx::query_as("select id, ocr, total_ore from invoices where number = $1 and issue_date = $2")
        .bind(A)
        .bind(day)
        .fetch_one(&w.db.pool)
        .await
        .unwrap()
}

/// R21: the extract shows each payment once and what we owe the holder;
/// erasure is refused while we owe the holder an overpayment (the refund
/// would have nowhere to go), and when granted it leaves the personal data
/// in no table of the schema: what bookkeeping law keeps names only the
/// number, and every table that still holds the number is in the "kept"
/// list with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_leaves_personal_data_in_no_table_and_waits_for_a_credit() {
    let w = World::new(T0, &[A], SettlementPolicy::default()).await;
    let mut conn = w.db.pool.acquire().await.unwrap();
    personal::upsert_holder(
        &mut conn,
        &HolderInput {
            number: A.into(),
            name: Some("Anna Andersson".into()),
            address_lines: vec!["Storgatan 1".into(), "111 22 Stockholm".into()],
            email: Some("anna@example.se".into()),
            invoice_delivery: "paper".into(),
            personal_number: Some("196408233234".into()),
        },
        "support",
    )
    .await
    .unwrap();
    personal::set_marketing(
        &mut conn,
        A,
        true,
        Some("Box 99, 111 11 Stockholm"),
        "support",
    )
    .await
    .unwrap();
    drop(conn);
    // The holder blocks one service, with a reason that names her.
    w.store
        .set_block(
            &n(A),
            &BlockChange {
                kind: BlockKind::HolderService,
                target: LEGAL.into(),
                blocked: true,
                reason: "Anna Andersson asked by phone".into(),
                actor: "support".into(),
            },
            w.now(),
        )
        .await
        .unwrap();

    // 10 minutes of tarot (10 × 29,90 = 299,00), invoiced on 15 December
    // on paper: 299,00 + 30,00 = 329,00.
    w.call(A, "a1", TAROT, 600).await;
    w.settle().await;
    consent_is_in_one_place(&w, "a1").await;
    usage_is_in_one_place(&w, "a1", 29_900).await;
    daily::run_day(&w.settlement, ymd(2025, 12, 15))
        .await
        .unwrap();
    let (first, first_ocr, first_total) = invoice_of(&w, ymd(2025, 12, 15)).await;
    assert_eq!(first_total, 32_900);
    // A dispute whose reason and resolution name her son; rejected.
    let d = disputes::open_dispute(
        &w.settlement,
        first,
        "Anna Andersson says her son Olle made the call",
        "support",
    )
    .await
    .unwrap();
    assert_eq!(d.evidence.as_array().map(|a| a.len()), Some(1));
    disputes::resolve_dispute(
        &w.settlement,
        d.id,
        false,
        "Olle is 19 and confirmed both steps",
        "support",
    )
    .await
    .unwrap();
    // She pays 400,00: 329,00 to the invoice and 71,00 held as her credit.
    pay(&w, ymd(2025, 12, 20), "00001", &first_ocr, 40_000).await;

    let x = personal::extract(&w.db.pool, A, "support", chrono::Utc::now())
        .await
        .unwrap();
    let listed = x.json["payments"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "one payment, listed once: {listed:?}");
    assert_eq!(listed[0]["amount_ore"], 40_000);
    // The consent, kept only in its row (issue 13.3), is in the extract.
    let consents = x.json["consents"].as_array().unwrap();
    assert_eq!(consents.len(), 1, "{consents:?}");
    assert_eq!(consents[0]["call_id"], "a1");
    assert_eq!(x.json["credit_ore"], 7_100, "the 71,00 kr we owe her");
    assert!(x.text.contains("71,00"), "{}", x.text);

    // We owe her 71,00 kr: erasure would lose where to refund it.
    match personal::erase(&w.settlement, A, "support").await {
        Err(SettlementError::Refused(m)) => {
            assert!(m.contains("71,00"), "{m}");
            assert!(!m.contains(A), "no number in the message: {m}");
        }
        other => panic!("{other:?}"),
    }
    let name: Option<String> = sqlx::query_scalar("select name from holders")
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
    assert_eq!(
        name.as_deref(),
        Some("Anna Andersson"),
        "a refusal erases nothing"
    );

    // 5 more minutes (149,50); the 15 January invoice uses the credit:
    // 149,50 + 30,00 − 71,00 = 108,50, which she pays.
    w.call(A, "a2", TAROT, 300).await;
    w.settle().await;
    daily::run_day(&w.settlement, ymd(2026, 1, 15))
        .await
        .unwrap();
    let (_, second_ocr, second_total) = invoice_of(&w, ymd(2026, 1, 15)).await;
    assert_eq!(second_total, 10_850);
    pay(&w, ymd(2026, 1, 20), "00002", &second_ocr, 10_850).await;

    let erased = personal::erase(&w.settlement, A, "support").await.unwrap();
    assert!(erased.holder_erased);

    // Nothing personal is left anywhere in the schema.
    for needle in PERSONAL {
        assert_eq!(
            tables_containing(&w, needle).await,
            Vec::<String>::new(),
            "{needle:?} is still stored"
        );
    }
    // The number remains only where bookkeeping needs it, and each of those
    // tables is named in the "kept" list.
    let with_number = tables_containing(&w, A).await;
    for t in &with_number {
        assert!(
            erased.kept_tables.contains(&t.as_str()),
            "{t} still holds the number but is not in the kept list {:?}",
            erased.kept_tables
        );
    }
    for t in ["invoices", "ledger_entries", "payments"] {
        assert!(erased.kept_tables.contains(&t), "{t}");
    }
    for t in &erased.kept_tables {
        assert!(
            erased.kept.iter().any(|k| k.contains(t)),
            "{t} kept without a reason"
        );
    }
    // The books are untouched.
    let mut conn = w.db.pool.acquire().await.unwrap();
    assert_eq!(ledger::total(&mut conn).await.unwrap(), 0);
    let invoices: i64 = sqlx::query_scalar("select count(*) from invoices")
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
    assert_eq!(invoices, 2);
}

/// Noon in Stockholm on `day`, in Unix ms.
/// Issue 13.3: a consent is in exactly one place — its `consents` row
/// (which the extract lists and erasure deletes, asserted by the caller);
/// its event row keeps only the id, kind and time (idempotency), no payload.
async fn consent_is_in_one_place(w: &World, call: &str) {
    let rows: i64 = sqlx::query_scalar("select count(*) from consents where call_id = $1")
        .bind(call)
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1, "the consent row");
    let payload: Option<serde_json::Value> =
        sqlx::query_scalar("select payload from events where event_id = $1")
            .bind(format!("consent:{call}"))
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
    assert_eq!(payload, None, "the event row keeps no copy of the consent");
    let copies: i64 = sqlx::query_scalar(
        "select count(*) from events where payload::text like '%' || $1 || '%' and kind <> 'usage_posted'",
    )
    .bind(format!("\"call_id\": \"{call}\""))
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(copies, 0, "no other event carries the consent");
}

/// Issue 13.3 (migration 0008): a posted call is in its `usage` row, the
/// three facts only its event used to carry included (the authorization
/// instant, the exposure after the call, the uncollected amount); its event
/// row keeps only the id, kind and time, no payload.
async fn usage_is_in_one_place(w: &World, call: &str, exposure_after_ore: i64) {
    // `World::call` authorizes and starts the call at the same instant.
    let (authorized_at_start, exposure, uncollected): (bool, i64, i64) = sqlx::query_as(
        "select authorized_at = started_at, exposure_after_ore, uncollected_ore
           from usage where call_id = $1",
    )
    .bind(call)
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (authorized_at_start, exposure, uncollected),
        (true, exposure_after_ore, 0)
    );
    let payload: Option<serde_json::Value> =
        sqlx::query_scalar("select payload from events where event_id = $1")
            .bind(format!("usage:{call}"))
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
    assert_eq!(payload, None, "the event row keeps no copy of the call");
}

fn noon(day: NaiveDate) -> i64 {
    use chrono::TimeZone;
    chrono_tz::Europe::Stockholm
        .from_local_datetime(&day.and_hms_opt(12, 0, 0).unwrap())
        .single()
        .unwrap()
        .timestamp_millis()
}

async fn count(w: &World, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&w.db.pool).await.unwrap()
}

/// Every account's balance, as a sorted list.
async fn balances(w: &World) -> Vec<(String, i64)> {
    sqlx::query_as(
        "select account, sum(amount_ore)::bigint from ledger_entries group by account
         having sum(amount_ore) <> 0 order by account",
    )
    .fetch_all(&w.db.pool)
    .await
    .unwrap()
}

const B: &str = "+46702345678";

/// Retention (Bokföringslagen 7 kap. 2 §; preskriptionslagen 2 §): consent
/// evidence and call detail go after the end of the 3rd year after the call
/// unless the claim is open; bookkeeping records of a year go on 1 January
/// of the 8th year after it, the ledger folded into opening balances so that
/// every balance stays; open claims stay whatever their age.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_deleted_after_their_retention_and_open_claims_stay() {
    use callauth::domain::{CodeHasher, Decision, RecordId, Reference};
    use callauth::settlement::{billing::merchants, privacy::retention};
    use callauth::store::{IssueOutcome, LineKey, UsageOutcome, UsagePost};

    let w = World::new(T0, &[A, B], SettlementPolicy::default()).await;
    // 23 November 2025: A calls 41 minutes (1 225,90: a threshold invoice at
    // once, 1 255,90 with the paper fee) and makes a prepaid call (2 minutes,
    // 59,80) with a code bought by Swish; B calls 5 minutes (149,50).
    w.call(A, "a1", TAROT, 41 * 60).await;
    w.call(B, "b1", TAROT, 300).await;
    let IssueOutcome::Issued { view: code, .. } = w
        .store
        .issue_prepaid(
            &CodeHasher::new(&[42u8; 32]).unwrap(),
            Money::sek(100),
            &Reference::parse("swish-r1").unwrap(),
            w.now(),
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    let svc = service(&w.store, TAROT).await;
    let mut c = call("p1", &svc, true);
    c.consent.as_mut().unwrap().own_number_confirmed = false;
    let d = w
        .store
        .authorize_prepaid(
            &LineKey::number(&n(A)),
            Some(&n(A)),
            &code.code_id,
            &c,
            w.now(),
        )
        .await
        .unwrap();
    assert!(matches!(d.decision, Decision::Allowed(_)), "{d:?}");
    let posted = w
        .store
        .post_usage(
            &UsagePost {
                merchant_id: svc.merchant_id.clone(),
                record_id: RecordId::parse("r-p1").unwrap(),
                call_id: call_id("p1"),
                service_number: svc.number.clone(),
                started_at_ms: w.now(),
                duration_seconds: 120,
            },
            w.now() + 1000,
        )
        .await
        .unwrap();
    assert!(matches!(posted, UsageOutcome::Applied(_)));
    w.settle().await;
    let (a_invoice, a_ocr, a_total): (i64, String, i64) =
        sqlx::query_as("select id, ocr, total_ore from invoices where number = $1")
            .bind(A)
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
    assert_eq!(a_total, 122_590 + 3_000);
    // A pays on 25 November; on 1 December the merchant is settled for
    // November (A's call and the prepaid call). B is invoiced on 15 December
    // and never pays.
    w.clock.set_ms(noon(ymd(2025, 11, 25)));
    pay(&w, ymd(2025, 11, 25), "00001", &a_ocr, a_total).await;
    w.clock.set_ms(noon(ymd(2025, 12, 1)));
    let st = merchants::run_statements(&w.settlement, ymd(2025, 12, 1))
        .await
        .unwrap();
    assert_eq!((st.len(), st[0].calls), (1, 2));
    w.clock.set_ms(noon(ymd(2025, 12, 15)));
    daily::run_day(&w.settlement, ymd(2025, 12, 15))
        .await
        .unwrap();
    // An audit entry of 2025 and one of 2026 (the audit log is dated by the
    // database's clock; these two pin the dates).
    sqlx::query(
        "insert into audit_log (at, actor, action, subject) values
           ('2025-12-31T12:00:00Z', 'test', 'old', $1), ('2026-01-02T12:00:00Z', 'test', 'new', $1)",
    )
    .bind(A)
    .execute(&w.db.pool)
    .await
    .unwrap();
    let before = balances(&w).await;
    let entries_before = count(&w, "select count(*) from ledger_entries").await;
    assert_eq!(count(&w, "select count(*) from consents").await, 3);

    // 31 December 2028: the calls of 2025 are not yet 3 full years past their year.
    let r = retention::run(&w.settlement, ymd(2028, 12, 31))
        .await
        .unwrap();
    assert_eq!(r.evidence_before, Some(ymd(2025, 1, 1)));
    assert_eq!((r.consents_deleted, r.prepaid_numbers_removed), (0, 0));

    // 1 January 2029: A's and the prepaid call's consents go (A's invoice is
    // paid); B's stays, its invoice is an open claim. The prepaid call loses
    // the number; the consent events are redacted except B's.
    let r = retention::run(&w.settlement, ymd(2029, 1, 1))
        .await
        .unwrap();
    assert_eq!(r.evidence_before, Some(ymd(2026, 1, 1)));
    assert_eq!(r.consents_deleted, 2);
    assert_eq!(r.prepaid_numbers_removed, 1);
    let left: Vec<String> = sqlx::query_scalar("select call_id from consents")
        .fetch_all(&w.db.pool)
        .await
        .unwrap();
    assert_eq!(left, vec!["b1"]);
    // Issue 13.3: a consent event carries no payload (its `consents` row
    // holds the fact), so once the row is deleted no copy of it is left;
    // the event rows stay for idempotency until the bookkeeping retention.
    assert_eq!(
        count(
            &w,
            "select count(*) from events where kind = 'consent_recorded' and payload is not null"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &w,
            "select count(*) from events where kind = 'consent_recorded'"
        )
        .await,
        3
    );
    assert_eq!(
        count(
            &w,
            "select count(*) from usage where funding = 'prepaid' and number is not null"
        )
        .await,
        0
    );
    assert_eq!(r.invoices_deleted, 0, "bookkeeping stays 7 years");

    // 31 December 2032: the records of 2025 are still within the 7th year.
    let r = retention::run(&w.settlement, ymd(2032, 12, 31))
        .await
        .unwrap();
    assert_eq!(r.bookkeeping_before, Some(ymd(2025, 1, 1)));
    assert_eq!((r.invoices_deleted, r.ledger_entries_folded), (0, 0));
    assert_eq!(count(&w, "select count(*) from invoices").await, 2);

    // 1 January 2033: A's paid invoice of 2025 goes with its lines, document,
    // calls, payment and allocations, and so does the November statement;
    // B's open invoice stays with its call. The ledger of 2025 is folded
    // into opening balances: every balance is what it was, and A's settled
    // accounts (zero) no longer name A.
    let r = retention::run(&w.settlement, ymd(2033, 1, 1))
        .await
        .unwrap();
    assert_eq!(r.bookkeeping_before, Some(ymd(2026, 1, 1)));
    assert_eq!(r.invoices_deleted, 1);
    assert_eq!(r.payments_deleted, 1);
    assert_eq!(r.statements_deleted, 1);
    assert_eq!(
        count(
            &w,
            "select count(*) from invoice_lines where invoice_id = 1"
        )
        .await
            + count(&w, "select count(*) from documents where invoice_id = 1").await,
        0
    );
    let _ = a_invoice;
    let invoices: Vec<String> = sqlx::query_scalar("select number from invoices")
        .fetch_all(&w.db.pool)
        .await
        .unwrap();
    assert_eq!(invoices, vec![B]);
    let calls: Vec<String> = sqlx::query_scalar("select call_id from usage order by call_id")
        .fetch_all(&w.db.pool)
        .await
        .unwrap();
    assert_eq!(
        calls,
        vec!["b1"],
        "A's call and the prepaid call of 2025 are gone"
    );
    assert_eq!(count(&w, "select count(*) from payments").await, 0);
    assert_eq!(
        count(&w, "select count(*) from payment_allocations").await,
        0
    );
    assert_eq!(
        count(&w, "select count(*) from documents").await,
        1,
        "B's invoice document stays"
    );
    assert_eq!(balances(&w).await, before, "every balance is kept");
    let mut conn = w.db.pool.acquire().await.unwrap();
    assert_eq!(ledger::total(&mut conn).await.unwrap(), 0);
    drop(conn);
    assert!(
        count(&w, "select count(*) from ledger_entries").await < entries_before,
        "folded"
    );
    let a_accounts: i64 =
        sqlx::query_scalar("select count(*) from ledger_entries where account like '%' || $1")
            .bind(A)
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
    assert_eq!(a_accounts, 0, "A's settled accounts are folded away");
    // The events of 2025 go; the 2025 audit entry goes, the 2026 one stays.
    assert_eq!(
        count(&w, "select count(*) from merchant_statements").await,
        0
    );
    assert_eq!(
        count(&w, "select count(*) from events where at < '2026-01-01'").await,
        0
    );
    let audit: Vec<String> = sqlx::query_scalar(
        "select action from audit_log where action in ('old', 'new') order by at",
    )
    .fetch_all(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(audit, vec!["new"]);
    // Running the same day again finds nothing more.
    let again = retention::run(&w.settlement, ymd(2033, 1, 1))
        .await
        .unwrap();
    assert_eq!(
        (
            again.invoices_deleted,
            again.consents_deleted,
            again.events_deleted
        ),
        (0, 0, 0)
    );
    // A's holder asks for erasure; the next run removes the number and the
    // holder too, now that no record refers to them: only the audit trail of
    // the years still kept names the number.
    personal::erase(&w.settlement, A, "support").await.unwrap();
    let r = retention::run(&w.settlement, ymd(2033, 2, 1))
        .await
        .unwrap();
    assert_eq!((r.numbers_deleted, r.holders_deleted), (1, 1));
    assert_eq!(tables_containing(&w, A).await, vec!["audit_log"]);
    assert!(tables_containing(&w, B)
        .await
        .contains(&"invoices".to_string()));
}
