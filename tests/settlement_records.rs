//! Personal data and records over time (SPEC R21; GDPR Art. 15 and 17;
//! Bokföringslagen 7 kap. 2 §) against a real Redis and a real PostgreSQL:
//! the extract, erasure checked against every table of the schema, and the
//! retention job.

mod common;

use callauth::domain::{BlockKind, Money};
use callauth::settlement::bgmax::FileBuilder;
use callauth::settlement::personal::{self, HolderInput};
use callauth::settlement::{daily, disputes, payments, projector, SettlementError};
use callauth::settlement::{ledger, SettlementPolicy};
use callauth::store::{BlockChange, Store};
use chrono::NaiveDate;
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
