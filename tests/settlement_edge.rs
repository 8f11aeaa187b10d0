//! Hostile or odd input at the settlement API's edge (issue 10), on real
//! PostgreSQL and Redis: free text with control characters is refused with
//! INVALID_ARGUMENT naming the field (it answered INTERNAL with the raw
//! database error, because PostgreSQL refuses NUL in text and jsonb), and the
//! consent evidence of a call reaches the ledger instead of the dead letters.

mod common;

use callauth::pb;
use callauth::pb::settlement_client::SettlementClient;
use callauth::settlement::SettlementPolicy;
use common::server::{consent_for, req, ADMIN, IVR};
use common::settle::World;
use common::*;
use tonic::Code;

const A: &str = "+46701234567";

fn holder(name: &str, address: &[&str], email: &str) -> pb::UpsertHolderRequest {
    pb::UpsertHolderRequest {
        number: "070-123 45 67".into(),
        name: name.into(),
        address_lines: address.iter().map(|s| s.to_string()).collect(),
        email: email.into(),
        invoice_delivery: "email".into(),
        personal_number: String::new(),
    }
}

fn assert_invalid(err: &tonic::Status, field: &str) {
    assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
    assert!(
        err.message().contains(field),
        "the message names {field}: {}",
        err.message()
    );
    assert!(
        !err.message().contains("Svensson") && !err.message().contains("Storgatan"),
        "no personal data in {}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_settlement_requests_are_invalid_and_store_nothing() {
    let w = World::new(T0, &[A], SettlementPolicy::default()).await;
    let mut c = SettlementClient::new(w.serve_api().await);
    // The test world's own holders (with their postal addresses) are there
    // before; nothing may be added to them.
    let holders_before = w
        .count("select count(*) from holders where name is not null")
        .await;
    let upserts_before = w
        .count("select count(*) from audit_log where action = 'holder_upserted'")
        .await;

    let too_many_lines: Vec<&str> = vec!["Storgatan 1"; 7];
    let long_line = "S".repeat(101);
    let long_email = format!("{}@example.se", "a".repeat(250));
    for (field, h) in [
        (
            "name",
            holder("Anna\u{0} Svensson", &["Storgatan 1"], "anna@example.se"),
        ),
        (
            "name",
            holder(&"A".repeat(201), &["Storgatan 1"], "anna@example.se"),
        ),
        (
            "address_lines",
            holder("Anna Svensson", &["Storgatan 1\u{0}"], "anna@example.se"),
        ),
        (
            "address_lines",
            holder(
                "Anna Svensson",
                &["Storgatan 1\nLGH 1101"],
                "anna@example.se",
            ),
        ),
        (
            "address_lines",
            holder("Anna Svensson", &too_many_lines, "anna@example.se"),
        ),
        (
            "address_lines",
            holder("Anna Svensson", &[long_line.as_str()], "anna@example.se"),
        ),
        (
            "email",
            holder("Anna Svensson", &["Storgatan 1"], "anna\u{0}@example.se"),
        ),
        (
            "email",
            holder("Anna Svensson", &["Storgatan 1"], long_email.as_str()),
        ),
        (
            "email",
            holder(
                "Anna Svensson",
                &["Storgatan 1"],
                "anna svensson@example.se",
            ),
        ),
    ] {
        let err = c.upsert_holder(req(h, ADMIN)).await.unwrap_err();
        assert_invalid(&err, field);
    }
    let err = c
        .set_marketing_preference(req(
            pb::SetMarketingPreferenceRequest {
                number: "070-123 45 67".into(),
                opt_out: false,
                marketing_address: "Box 12\u{0}, Storgatan".into(),
            },
            ADMIN,
        ))
        .await
        .unwrap_err();
    assert_invalid(&err, "marketing_address");
    let err = c
        .open_dispute(req(
            pb::OpenDisputeRequest {
                invoice_id: 1,
                reason: "I did not call\u{0}".into(),
            },
            ADMIN,
        ))
        .await
        .unwrap_err();
    assert_invalid(&err, "reason");
    let err = c
        .resolve_dispute(req(
            pb::ResolveDisputeRequest {
                dispute_id: 1,
                upheld: true,
                resolution: "x".repeat(2001),
            },
            ADMIN,
        ))
        .await
        .unwrap_err();
    assert_invalid(&err, "resolution");
    let err = c
        .pick_up_prepaid_code(req(
            pb::PickUpPrepaidCodeRequest {
                ocr: "12345\u{0}".into(),
                pickup_secret: "s".into(),
            },
            ADMIN,
        ))
        .await
        .unwrap_err();
    assert_invalid(&err, "ocr");
    let err = c
        .list_statements(req(
            pb::ListStatementsRequest {
                merchant_id: "Stjärn\u{0}".into(),
            },
            ADMIN,
        ))
        .await
        .unwrap_err();
    assert_invalid(&err, "merchant_id");

    // Nothing was written.
    assert_eq!(
        w.count("select count(*) from holders where name is not null")
            .await,
        holders_before
    );
    assert_eq!(
        w.count("select count(*) from audit_log where action = 'holder_upserted'")
            .await,
        upserts_before
    );

    // Clean text, Swedish letters included, is kept as sent.
    let h = c
        .upsert_holder(req(
            holder(
                "Åsa Östlund-Svensson",
                &["c/o Ärlig", "Storgatan 1, lgh 1101", "123 45 Småstad"],
                "asa.ostlund@example.se",
            ),
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.name, "Åsa Östlund-Svensson");
    assert_eq!(h.address_lines.len(), 3);
    assert_eq!(h.email, "asa.ostlund@example.se");
}

/// The chain of the issue: a NUL in `ivr_id` was accepted, the consent event
/// carried `\u0000`, PostgreSQL refused it and settlement dead-lettered the
/// consent evidence of a billed call. The gateway now refuses the request;
/// the call made with clean text reaches the ledger's consents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_evidence_reaches_the_ledger_not_the_dead_letters() {
    let w = World::new(T0, &[], SettlementPolicy::default()).await;
    let g = common::server::start(w.store.clone()).await;
    let first = g
        .authz()
        .authorize(req(
            common::server::authorize_req("c1", A, common::server::TAROT),
            IVR,
        ))
        .await
        .unwrap()
        .into_inner();
    let terms = first.terms.unwrap();

    let mut r = common::server::authorize_req("c1", A, common::server::TAROT);
    r.consent = Some(consent_for(&terms, false));
    r.ivr_id = "ivr-node\u{0}1".into();
    let err = g.authz().authorize(req(r.clone(), IVR)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("ivr_id"), "{}", err.message());

    r.ivr_id = "ivr-node-1".into();
    let ok = g.authz().authorize(req(r, IVR)).await.unwrap().into_inner();
    assert_eq!(ok.decision, pb::Decision::Allowed as i32, "{ok:?}");
    w.settle().await;
    assert_eq!(
        w.count("select count(*) from dead_letters").await,
        0,
        "nothing dead-lettered"
    );
    assert_eq!(
        w.count("select count(*) from consents where call_id = 'c1' and ivr_id = 'ivr-node-1'")
            .await,
        1,
        "the consent is in the ledger"
    );
    g.stop().await;
}
