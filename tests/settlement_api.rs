//! The Settlement gRPC API on 127.0.0.1:0 with the generated client: roles
//! (a merchant sees only its own statements), prepaid orders and pick-up,
//! personal data; and the embedded gateway's JSON-lines outbox ingested into
//! the ledger.

mod common;

use std::sync::Arc;

use callauth::domain::{CodeHasher, E164};
use callauth::pb;
use callauth::pb::settlement_client::SettlementClient;
use callauth::settlement::{billing::merchants, SettlementPolicy};
use callauth::store::Store;
use chrono::NaiveDate;
use common::server::{req, ADMIN, IVR, RADGIV, STJARN};
use common::settle::World;
use common::*;
use tonic::Code;

const A: &str = "+46701234567";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merchants_see_only_their_statements_and_admins_run_the_rest() {
    let w = World::new(T0, &[A], SettlementPolicy::default()).await;
    w.call(A, "a1", TAROT, 41 * 60).await; // stjarnlinjen, threshold invoice
    w.settle().await;
    sqlx::query("update invoices set status = 'paid', paid_ore = total_ore, paid_at = '2025-11-25T10:00:00Z'")
        .execute(&w.db.pool)
        .await
        .unwrap();
    let made =
        merchants::run_statements(&w.settlement, NaiveDate::from_ymd_opt(2025, 12, 1).unwrap())
            .await
            .unwrap();
    assert_eq!(made.len(), 1);
    let mut c = SettlementClient::new(w.serve_api().await);

    // stjarnlinjen sees its statement; radgivarna sees none and may not ask for stjarnlinjen's.
    let own = c
        .list_statements(req(pb::ListStatementsRequest::default(), STJARN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.statements.len(), 1);
    assert_eq!(own.statements[0].merchant_id, "stjarnlinjen");
    let detail = c
        .get_statement(req(
            pb::GetStatementRequest {
                statement_id: own.statements[0].id,
            },
            STJARN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(detail.lines.len(), 1);
    let other = c
        .list_statements(req(pb::ListStatementsRequest::default(), RADGIV))
        .await
        .unwrap()
        .into_inner();
    assert!(other.statements.is_empty());
    let err = c
        .list_statements(req(
            pb::ListStatementsRequest {
                merchant_id: "stjarnlinjen".into(),
            },
            RADGIV,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = c
        .get_statement(req(
            pb::GetStatementRequest {
                statement_id: own.statements[0].id,
            },
            RADGIV,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // Admin operations need an admin token.
    let err = c
        .personal_data_extract(req(
            pb::PersonalDataExtractRequest { number: A.into() },
            STJARN,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = c
        .list_marketing_opt_outs(req(pb::ListMarketingOptOutsRequest {}, IVR))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = c
        .list_unmatched_payments(tonic::Request::new(pb::ListUnmatchedPaymentsRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // Holder, marketing, invoices, extract.
    let h = c
        .upsert_holder(req(
            pb::UpsertHolderRequest {
                number: "070-123 45 67".into(),
                name: "Anna Andersson".into(),
                address_lines: vec!["Storgatan 1".into()],
                email: "anna@example.se".into(),
                invoice_delivery: "email".into(),
                personal_number: String::new(),
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.numbers, vec![A.to_string()]);
    c.set_marketing_preference(req(
        pb::SetMarketingPreferenceRequest {
            number: A.into(),
            opt_out: true,
            marketing_address: String::new(),
        },
        ADMIN,
    ))
    .await
    .unwrap();
    let optouts = c
        .list_marketing_opt_outs(req(pb::ListMarketingOptOutsRequest {}, STJARN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(optouts.numbers, vec![A.to_string()]);
    let invoices = c
        .list_invoices(req(
            pb::ListInvoicesRequest {
                number: A.into(),
                include_pdf: true,
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(invoices.invoices.len(), 1);
    assert!(invoices.invoices[0].pdf.starts_with(b"%PDF-"));
    let x = c
        .personal_data_extract(req(
            pb::PersonalDataExtractRequest { number: A.into() },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(x.free);
    assert!(x.text.contains("Anna Andersson"));
    let bad = c
        .create_installment_plan(req(
            pb::CreateInstallmentPlanRequest {
                number: A.into(),
                monthly_ore: 50_000,
                first_due_date: "not a date".into(),
                allow_small_debt: true,
            },
            ADMIN,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepaid_orders_are_paid_by_swish_and_picked_up_once_with_the_secret() {
    let w = World::new(T0, &[A], SettlementPolicy::default()).await;
    let mut c = SettlementClient::new(w.serve_api().await);
    let order = c
        .create_prepaid_order(req(
            pb::CreatePrepaidOrderRequest {
                top_up_code_id: String::new(),
                deliver_to: "+46701234567".into(),
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!order.pickup_secret.is_empty());
    let cb = serde_json::json!({
        "id": "0D44B7C4A8D54F5E8D7E7B2A6C3B9F01", "payeePaymentReference": order.ocr,
        "paymentReference": "1E2FD9D8AA1F4E4F8B4B3C4D5E6F7A8B", "callbackUrl": "https://example/swish",
        "payerAlias": "46701234567", "payeeAlias": "1231181189", "amount": "150.00", "currency": "SEK",
        "message": "", "status": "PAID", "dateCreated": "2025-11-23T13:00:00.000+0100",
        "datePaid": "2025-11-23T13:00:05.000+0100", "errorCode": null, "errorMessage": null
    });
    let cb: callauth::settlement::payments::swish::SwishCallback =
        serde_json::from_value(cb).unwrap();
    callauth::settlement::payments::swish::handle_callback(&w.settlement, cb)
        .await
        .unwrap();
    let wrong = c
        .pick_up_prepaid_code(req(
            pb::PickUpPrepaidCodeRequest {
                ocr: order.ocr.clone(),
                pickup_secret: "guess".into(),
            },
            ADMIN,
        ))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::FailedPrecondition);
    let got = c
        .pick_up_prepaid_code(req(
            pb::PickUpPrepaidCodeRequest {
                ocr: order.ocr.clone(),
                pickup_secret: order.pickup_secret.clone(),
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.code.len(), 16);
    assert_eq!(got.balance_ore, 15_000);
    let again = c
        .pick_up_prepaid_code(req(
            pb::PickUpPrepaidCodeRequest {
                ocr: order.ocr.clone(),
                pickup_secret: order.pickup_secret,
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(again.already_picked_up && again.code.is_empty());
    // The code is real: the store knows it by its id and balance.
    let id = CodeHasher::new(&[42u8; 32])
        .unwrap()
        .id(&callauth::domain::PrepaidCode::parse(&got.code).unwrap());
    assert_eq!(id.as_str(), got.code_id);
    assert_eq!(
        w.store.prepaid(&id).await.unwrap().unwrap().balance.ore(),
        15_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_gateways_jsonl_outbox_is_ingested_once() {
    use callauth::store::memory::MemoryStore;
    use callauth::store::outbox::Outbox;
    let dir = std::env::temp_dir().join(format!("callauth-jsonl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("outbox.jsonl");
    let policy = policy();
    let store = MemoryStore::with_outbox(
        policy.clone(),
        Outbox::new(policy.partitions, 1000)
            .with_jsonl_file(&file)
            .unwrap(),
    );
    seed_catalog(&store).await;
    store.put_directory(&n(A), true, "test", T0).await.unwrap();
    let svc = service(&store, TAROT).await;
    store
        .authorize(&n(A), &call("j1", &svc, true), T0)
        .await
        .unwrap();
    let usage = callauth::store::UsagePost {
        merchant_id: svc.merchant_id.clone(),
        record_id: callauth::domain::RecordId::parse("r-j1").unwrap(),
        call_id: call_id("j1"),
        service_number: svc.number.clone(),
        started_at_ms: T0,
        duration_seconds: 125,
    };
    store.post_usage(&usage, T0 + 130_000).await.unwrap();
    // The writer thread flushes when its queue runs dry.
    for _ in 0..100 {
        if std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .count()
            >= 3
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let db = common::pg::TestDb::new().await;
    let s = callauth::settlement::Settlement::new(
        db.pool.clone(),
        store.clone(),
        SettlementPolicy::default(),
        Arc::new(callauth::clock::ManualClock::new(T0)),
    );
    let r = callauth::settlement::ingest::jsonl::ingest_file(&s, &file, 2)
        .await
        .unwrap();
    assert_eq!(r.lines, 3, "directory, consent, usage");
    assert_eq!(r.committed, 3);
    let again = callauth::settlement::ingest::jsonl::ingest_file(&s, &file, 2)
        .await
        .unwrap();
    assert_eq!((again.committed, again.duplicates), (0, 3));
    let charge: i64 = sqlx::query_scalar("select charge_ore from usage where call_id = 'j1'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(charge, 3 * 2990);
    let _ = E164::parse(A);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The mailing system's API (R13), admin only: held invoices are listed and
/// sent when UpsertHolder gives an address; queued documents are fetched
/// with their recipient and PDF and reported sent or bounced, a bounced
/// e-mail queueing its paper copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mailing_system_fetches_documents_and_reports_them() {
    let w = World::new(T0, &[A], SettlementPolicy::default()).await;
    let mut c = SettlementClient::new(w.serve_api().await);
    let holder = |address: bool| pb::UpsertHolderRequest {
        number: A.into(),
        name: "Kim Karlsson".into(),
        address_lines: if address {
            vec!["Ringvägen 2".into(), "118 60 Stockholm".into()]
        } else {
            vec![]
        },
        email: String::new(),
        invoice_delivery: "paper".into(),
        personal_number: String::new(),
    };
    c.upsert_holder(req(holder(false), ADMIN)).await.unwrap();
    // 41 minutes: a threshold invoice at once, held (nowhere to send it).
    w.call(A, "a1", TAROT, 41 * 60).await;
    w.settle().await;
    let held = c
        .list_held_invoices(req(pb::ListHeldInvoicesRequest {}, ADMIN))
        .await
        .unwrap()
        .into_inner()
        .invoices;
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].number.as_str(), held[0].total_ore), (A, 122_590));
    let err = c
        .list_held_invoices(req(pb::ListHeldInvoicesRequest {}, STJARN))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // The address arrives: the invoice is sent on paper with the fee.
    c.upsert_holder(req(holder(true), ADMIN)).await.unwrap();
    assert!(c
        .list_held_invoices(req(pb::ListHeldInvoicesRequest {}, ADMIN))
        .await
        .unwrap()
        .into_inner()
        .invoices
        .is_empty());
    assert_eq!(w.account(A).await.invoiced_unpaid.ore(), 122_590 + 3_000);
    let docs = c
        .list_queued_documents(req(
            pb::ListQueuedDocumentsRequest {
                channel: "paper".into(),
                limit: 0,
                include_pdf: true,
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner()
        .documents;
    assert_eq!(docs.len(), 1);
    let d = &docs[0];
    assert_eq!((d.kind.as_str(), d.channel.as_str()), ("invoice", "paper"));
    assert_eq!(d.recipient_name, "Kim Karlsson");
    assert_eq!(d.address_lines, vec!["Ringvägen 2", "118 60 Stockholm"]);
    assert!(d.pdf.starts_with(b"%PDF-"));
    // Paper is never bounced; an unknown outcome or channel is refused; a
    // merchant may not report.
    let bounce = |outcome: pb::DeliveryOutcome| pb::ReportDocumentDeliveryRequest {
        document_id: d.document_id,
        outcome: outcome as i32,
        detail: String::new(),
    };
    for (r, code) in [
        (bounce(pb::DeliveryOutcome::Bounced), Code::InvalidArgument),
        (
            bounce(pb::DeliveryOutcome::Unspecified),
            Code::InvalidArgument,
        ),
    ] {
        assert_eq!(
            c.report_document_delivery(req(r, ADMIN))
                .await
                .unwrap_err()
                .code(),
            code
        );
    }
    assert_eq!(
        c.report_document_delivery(req(bounce(pb::DeliveryOutcome::Sent), STJARN))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let err = c
        .list_queued_documents(req(
            pb::ListQueuedDocumentsRequest {
                channel: "fax".into(),
                limit: 10,
                include_pdf: false,
            },
            ADMIN,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let sent = c
        .report_document_delivery(req(bounce(pb::DeliveryOutcome::Sent), ADMIN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((sent.status.as_str(), sent.changed), ("sent", true));
    assert!(c
        .list_queued_documents(req(pb::ListQueuedDocumentsRequest::default(), ADMIN))
        .await
        .unwrap()
        .into_inner()
        .documents
        .is_empty());
}

/// Issue 11: the admin list of account changes the state store refused, and
/// dismissing a payment that cannot be matched, over gRPC; admins only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_store_changes_are_listed_and_payments_dismissed_by_admins() {
    let w = World::new(T0, &[A], SettlementPolicy::default()).await;
    // A change the store refuses: a payment of an invoice it never had.
    let mut tx = w.db.pool.begin().await.unwrap();
    callauth::settlement::context::queue_store_op(
        &mut tx,
        "apply_payment",
        A,
        serde_json::json!({ "payment_id": "pay-1-1", "amount_ore": 5000,
                            "clear_overdue": false, "first_invoice_paid": false }),
    )
    .await
    .unwrap();
    // A 0 SEK payment in the manual queue.
    let payment_id: i64 = sqlx::query_scalar(
        "insert into payments (channel, external_id, amount_ore, paid_on, status)
         values ('bankgiro', 'bgmax:zero', 0, '2025-11-24', 'unmatched') returning id",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let _ = w.account(A).await; // the account exists in the store
    callauth::settlement::sync::projector::flush(&w.settlement)
        .await
        .unwrap();

    let mut c = SettlementClient::new(w.serve_api().await);
    let denied = c
        .list_refused_store_ops(req(pb::ListRefusedStoreOpsRequest {}, STJARN))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let ops = c
        .list_refused_store_ops(req(pb::ListRefusedStoreOpsRequest {}, ADMIN))
        .await
        .unwrap()
        .into_inner()
        .ops;
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(
        (ops[0].kind.as_str(), ops[0].number.as_str()),
        ("apply_payment", A)
    );
    assert_eq!(ops[0].attempts, 1);

    let denied = c
        .dismiss_payment(req(
            pb::DismissPaymentRequest {
                payment_id,
                reason: "nollbelopp".into(),
            },
            IVR,
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let no_reason = c
        .dismiss_payment(req(
            pb::DismissPaymentRequest {
                payment_id,
                reason: String::new(),
            },
            ADMIN,
        ))
        .await
        .unwrap_err();
    assert_eq!(no_reason.code(), Code::InvalidArgument);
    let done = c
        .dismiss_payment(req(
            pb::DismissPaymentRequest {
                payment_id,
                reason: "nollbelopp".into(),
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((done.payment_id, done.written_off_ore), (payment_id, 0));
    let again = c
        .dismiss_payment(req(
            pb::DismissPaymentRequest {
                payment_id,
                reason: "nollbelopp".into(),
            },
            ADMIN,
        ))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    let queue = c
        .list_unmatched_payments(req(pb::ListUnmatchedPaymentsRequest {}, ADMIN))
        .await
        .unwrap()
        .into_inner();
    assert!(queue.payments.is_empty());
}
