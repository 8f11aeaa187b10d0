//! End-to-end tests: the real gRPC server on 127.0.0.1:0, the generated
//! client, the demo catalogue. Written once, run against every store
//! backend by `e2e_suite!`.
#![allow(dead_code)]

use callauth::domain::event::EventBody;
use callauth::pb;
use callauth::store::Store;
use futures_util::StreamExt;
use tonic::Code;

use crate::common::server::*;

const ALLOWED: i32 = pb::Decision::Allowed as i32;
const DENIED: i32 = pb::Decision::Denied as i32;
const CONSENT_REQUIRED: i32 = pb::Decision::ConsentRequired as i32;
const CODE_REQUIRED: i32 = pb::Decision::PrepaidCodeRequired as i32;

fn reason(r: pb::Reason) -> i32 {
    r as i32
}

/// Authorize without consent, then with consent for the announced terms.
async fn call_allowed<S: Store>(
    g: &TestGateway<S>,
    call_id: &str,
    a: &str,
    service: &str,
) -> pb::AuthorizeResponse {
    let first = g
        .authz()
        .authorize(req(authorize_req(call_id, a, service), IVR))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.decision, CONSENT_REQUIRED, "{first:?}");
    let mut r = authorize_req(call_id, a, service);
    r.consent = Some(consent_for(first.terms.as_ref().unwrap(), false));
    g.authz().authorize(req(r, IVR)).await.unwrap().into_inner()
}

async fn report<S: Store>(g: &TestGateway<S>, token: &str, rec: pb::UsageRecord) -> pb::UsageAck {
    g.usage()
        .report_one(req(rec, token))
        .await
        .unwrap()
        .into_inner()
}

async fn issue_code<S: Store>(g: &TestGateway<S>, sek: i64, purchase: &str) -> String {
    g.accounts()
        .issue_prepaid_code(req(
            pb::IssuePrepaidCodeRequest {
                amount_ore: sek * 100,
                purchase_ref: purchase.into(),
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner()
        .code
}

async fn events<S: Store>(g: &TestGateway<S>) -> Vec<callauth::domain::Event> {
    g.gateway.store().recent_events(100_000).await.unwrap()
}

pub async fn first_time_caller_gets_1500_and_consent_flow<S: Store>(g: TestGateway<S>) {
    let acct = g.account(A).await;
    assert_eq!(acct.limit_ore, 150_000);
    assert_eq!(acct.available_ore, 150_000);
    assert!(acct.holder_registered);

    let first = g
        .authz()
        .authorize(req(authorize_req("c1", A, TAROT), IVR))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.decision, CONSENT_REQUIRED);
    assert_eq!(first.reason, reason(pb::Reason::ConsentMissing));
    assert_eq!(first.granted_seconds, 0);
    let terms = first.terms.clone().unwrap();
    assert_eq!(terms.price_per_minute_ore, 2990);
    assert_eq!(terms.billing_step_seconds, 60);
    assert!(terms.separate_invoice);
    assert!(terms.own_number_confirmation_required);
    assert!(terms
        .announcement_sv
        .contains("29,90 kr per minut inklusive moms"));
    assert_eq!(terms.vat_rate_percent, 25, "the general rate by default");

    // Only one of the two steps: still consent required.
    let mut r = authorize_req("c1", A, TAROT);
    let mut partial = consent_for(&terms, false);
    partial.own_number_confirmed = false;
    r.consent = Some(partial);
    let resp = g.authz().authorize(req(r, IVR)).await.unwrap().into_inner();
    assert_eq!(resp.decision, CONSENT_REQUIRED);
    assert_eq!(resp.reason, reason(pb::Reason::ConsentIncomplete));

    let allowed = call_allowed(&g, "c1", A, TAROT).await;
    assert_eq!(allowed.decision, ALLOWED);
    assert_eq!(allowed.reason, reason(pb::Reason::Granted));
    assert_eq!(allowed.granted_seconds, 900);
    assert_eq!(allowed.hold_ore, 15 * 2990);
    assert_eq!(allowed.funding, pb::Funding::Postpaid as i32);
    assert!(allowed.hold_expires_at.is_some());
    let acct = g.account(A).await;
    assert_eq!(acct.pending_ore, 15 * 2990);
    assert_eq!(acct.available_ore, 150_000 - 15 * 2990);

    // The consent is kept as evidence with the exact terms.
    let ev = events(&g).await;
    let consent = ev
        .iter()
        .find_map(|e| match &e.body {
            EventBody::ConsentRecorded(c) if c.call_id == "c1" => Some(c.clone()),
            _ => None,
        })
        .expect("consent event");
    assert_eq!(consent.number, "+46701234567");
    assert_eq!(consent.terms_id, terms.terms_id);
    assert_eq!(consent.ivr_client, "demo-ivr");
    assert_eq!(consent.ivr_id, "ivr-node-1");
    g.stop().await;
}

pub async fn usage_posts_the_charge_and_minimum<S: Store>(g: TestGateway<S>) {
    let t0 = g.now();
    call_allowed(&g, "c1", A, LEGAL).await;
    g.clock.advance_ms(50_000);
    // 45 s on a 3-minute-minimum service at 39.90: 119.70.
    let ack = report(&g, RADGIV, usage_record("r1", "c1", LEGAL, t0, 45)).await;
    assert_eq!(ack.result, pb::UsageResult::Applied as i32, "{ack:?}");
    assert_eq!(ack.charge_ore, 11_970);
    assert_eq!(ack.billed_seconds, 180);
    assert_eq!(ack.record_id, "r1");
    let acct = g.account(A).await;
    assert_eq!(acct.unbilled_ore, 11_970);
    assert_eq!(acct.pending_ore, 0);
    // Per-second psychology line: 61 s at 19.95 = 20.2825 → 20.28.
    call_allowed(&g, "c2", A, PSYCH).await;
    let ack = report(&g, SAMTAL, usage_record("r2", "c2", PSYCH, t0, 61)).await;
    assert_eq!(ack.charge_ore, 2028);
    assert_eq!(g.account(A).await.unbilled_ore, 11_970 + 2028);
    g.stop().await;
}

pub async fn retried_authorize_returns_the_same_answer<S: Store>(g: TestGateway<S>) {
    let first = call_allowed(&g, "c1", A, TAROT).await;
    let mut r = authorize_req("c1", A, TAROT);
    r.consent = Some(consent_for(first.terms.as_ref().unwrap(), false));
    let again = g.authz().authorize(req(r, IVR)).await.unwrap().into_inner();
    assert!(again.replayed);
    assert_eq!(again.decision, first.decision);
    assert_eq!(again.granted_seconds, first.granted_seconds);
    assert_eq!(again.hold_ore, first.hold_ore);
    assert_eq!(g.account(A).await.pending_ore, first.hold_ore);
    // The same call id for another caller is a bad request.
    let mut r = authorize_req("c1", B, TAROT);
    r.consent = Some(consent_for(first.terms.as_ref().unwrap(), false));
    let err = g.authz().authorize(req(r, IVR)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    g.stop().await;
}

pub async fn concurrent_calls_share_the_credit<S: Store>(g: TestGateway<S>) {
    // Two calls at once from one number: the second gets what the first left.
    let (a, b) = tokio::join!(
        call_allowed(&g, "c1", A, TAROT),
        call_allowed(&g, "c2", A, TAROT)
    );
    assert_eq!(a.decision, ALLOWED);
    assert_eq!(b.decision, ALLOWED);
    let acct = g.account(A).await;
    assert_eq!(acct.pending_ore, a.hold_ore + b.hold_ore);
    assert_eq!(acct.pending_calls, 2);
    // Use most of the credit with two more calls: 15 + 15 + 15 + 5 minutes.
    call_allowed(&g, "c3", A, TAROT).await;
    let d = call_allowed(&g, "c4", A, TAROT).await;
    assert_eq!(d.granted_seconds, 300);
    let e = g
        .authz()
        .authorize(req(authorize_req("c5", A, TAROT), IVR))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e.decision, DENIED);
    assert_eq!(e.reason, reason(pb::Reason::InsufficientCredit));
    assert!(g.account(A).await.available_ore >= 0);
    g.stop().await;
}

pub async fn threshold_once_then_limit_block<S: Store>(g: TestGateway<S>) {
    let t0 = g.now();
    // 41 minutes of tarot = 1 225.90 ≥ 1 200 (80 %): the threshold event once.
    call_allowed(&g, "c1", A, TAROT).await;
    // Usage is reported when the call has ended (its end may not lie in the future).
    g.clock.advance_ms(41 * 60_000);
    let ack = report(&g, STJARN, usage_record("r1", "c1", TAROT, t0, 41 * 60)).await;
    assert_eq!(ack.result, pb::UsageResult::Applied as i32);
    assert_eq!(ack.overrun_seconds, 41 * 60 - 900);
    let thresholds = |ev: &[callauth::domain::Event]| {
        ev.iter()
            .filter(
                |e| matches!(&e.body, EventBody::ThresholdReached(t) if t.number == "+46701234567"),
            )
            .count()
    };
    assert_eq!(thresholds(&events(&g).await), 1);
    assert!(g.account(A).await.threshold_reached);
    // Another call in the same cycle: no second threshold event.
    let t2 = g.now();
    call_allowed(&g, "c2", A, TAROT).await;
    g.clock.advance_ms(60_000);
    report(&g, STJARN, usage_record("r2", "c2", TAROT, t2, 60)).await;
    assert_eq!(thresholds(&events(&g).await), 1);
    // A call that is not cut runs past 1 500 SEK: charged, and the number is blocked.
    let t3 = g.now();
    call_allowed(&g, "c3", A, TAROT).await;
    g.clock.advance_ms(10 * 60_000);
    let ack = report(&g, STJARN, usage_record("r3", "c3", TAROT, t3, 10 * 60)).await;
    assert_eq!(ack.charge_ore, 10 * 2990);
    let acct = g.account(A).await;
    assert!(acct.credit_blocked);
    assert_eq!(acct.unbilled_ore, 52 * 2990);
    assert!(acct.available_ore < 0);
    let limit_events = events(&g)
        .await
        .iter()
        .filter(|e| matches!(&e.body, EventBody::LimitReached(_)))
        .count();
    assert_eq!(limit_events, 1);
    let metrics = reqwest_metrics(&g).await;
    for kind in ["threshold", "limit"] {
        assert!(
            metrics.contains(&format!("callauth_credit_events_total{{kind=\"{kind}\"}}")),
            "{kind} events are counted"
        );
    }
    let denied = g
        .authz()
        .authorize(req(authorize_req("c4", A, TAROT), IVR))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(denied.decision, DENIED);
    assert_eq!(denied.reason, reason(pb::Reason::BlockedCreditLimit));
    g.stop().await;
}

pub async fn callers_who_cannot_be_invoiced_need_a_code<S: Store>(g: TestGateway<S>) {
    let mut withheld = authorize_req("w1", "", TAROT);
    withheld.number_withheld = true;
    let r = g
        .authz()
        .authorize(req(withheld, IVR))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.decision, CODE_REQUIRED);
    assert_eq!(r.reason, reason(pb::Reason::NumberWithheld));
    let r = g
        .authz()
        .authorize(req(authorize_req("f1", "+4520123456", TAROT), IVR))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.decision, CODE_REQUIRED);
    assert_eq!(r.reason, reason(pb::Reason::NumberForeign));
    let r = g
        .authz()
        .authorize(req(authorize_req("s1", SECRET, TAROT), IVR))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.decision, CODE_REQUIRED);
    assert_eq!(r.reason, reason(pb::Reason::HolderNotRegistered));
    let r = g
        .authz()
        .authorize(req(authorize_req("u1", "070-999 99 99", TAROT), IVR))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.decision, CODE_REQUIRED);
    assert_eq!(r.reason, reason(pb::Reason::NumberNotInDirectory));

    // With a code the withheld caller gets prepaid terms (age step only) and is allowed.
    let code = issue_code(&g, 100, "swish-1").await;
    let mut r = authorize_req("w1", "", TAROT);
    r.number_withheld = true;
    r.prepaid_code = code.clone();
    let first = g
        .authz()
        .authorize(req(r.clone(), IVR))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.decision, CONSENT_REQUIRED);
    let terms = first.terms.unwrap();
    assert!(!terms.separate_invoice);
    assert!(!terms.own_number_confirmation_required);
    r.consent = Some(consent_for(&terms, true));
    let ok = g.authz().authorize(req(r, IVR)).await.unwrap().into_inner();
    assert_eq!(ok.decision, ALLOWED);
    assert_eq!(ok.funding, pb::Funding::Prepaid as i32);
    assert_eq!(ok.granted_seconds, 180); // 100 SEK covers 3 minutes at 29.90
    let t0 = g.now();
    g.clock.advance_ms(100_000);
    let ack = report(&g, STJARN, usage_record("r-w1", "w1", TAROT, t0, 100)).await;
    assert_eq!(ack.charge_ore, 5980);
    let bal = g
        .accounts()
        .get_prepaid_balance(req(pb::GetPrepaidBalanceRequest { code }, ADMIN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bal.balance_ore, 10_000 - 5980);
    g.stop().await;
}

pub async fn holder_block_stops_prepaid_but_credit_block_does_not<S: Store>(g: TestGateway<S>) {
    let t0 = g.now();
    let code = issue_code(&g, 300, "buy-1").await;
    // B blocks all services: a prepaid code from B's number is refused too (R6).
    g.accounts()
        .set_block(req(
            pb::SetBlockRequest {
                number: B.into(),
                scope: pb::BlockScope::AllServices as i32,
                target: String::new(),
                blocked: true,
                reason: "holder request via form".into(),
            },
            ADMIN,
        ))
        .await
        .unwrap();
    let mut r = authorize_req("b1", B, TAROT);
    r.prepaid_code = code.clone();
    let d = g.authz().authorize(req(r, IVR)).await.unwrap().into_inner();
    assert_eq!(d.decision, DENIED);
    assert_eq!(d.reason, reason(pb::Reason::BlockedByHolder));
    let d = g
        .authz()
        .authorize(req(authorize_req("b2", B, TAROT), IVR))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.reason, reason(pb::Reason::BlockedByHolder));

    // A reaches the limit (credit block) but may still call with a code (R7).
    call_allowed(&g, "a1", A, TAROT).await;
    g.clock.advance_ms(60 * 60_000);
    report(&g, STJARN, usage_record("ra1", "a1", TAROT, t0, 60 * 60)).await;
    assert!(g.account(A).await.credit_blocked);
    let mut r = authorize_req("a2", A, TAROT);
    r.prepaid_code = code.clone();
    let first = g
        .authz()
        .authorize(req(r.clone(), IVR))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.decision, CONSENT_REQUIRED);
    r.consent = Some(consent_for(first.terms.as_ref().unwrap(), true));
    let ok = g.authz().authorize(req(r, IVR)).await.unwrap().into_inner();
    assert_eq!(ok.decision, ALLOWED, "{ok:?}");
    assert_eq!(ok.funding, pb::Funding::Prepaid as i32);
    g.stop().await;
}

pub async fn wrong_codes_lock_the_line_out<S: Store>(g: TestGateway<S>) {
    let good = issue_code(&g, 100, "buy-1").await;
    let attempt = |i: u32, code: String| {
        let mut r = authorize_req(&format!("x{i}"), A, TAROT);
        r.prepaid_code = code;
        r
    };
    // A mistyped code (bad check digit) and unknown valid-looking codes all count.
    let mut typo: Vec<u8> = good.bytes().collect();
    typo[3] = if typo[3] == b'9' { b'0' } else { typo[3] + 1 };
    let unknown = callauth::domain::PrepaidCode::generate()
        .expose()
        .to_string();
    let tries = [
        String::from_utf8(typo).unwrap(),
        unknown.clone(),
        unknown.clone(),
        "12".into(),
        unknown,
    ];
    for (i, code) in tries.iter().enumerate() {
        let d = g
            .authz()
            .authorize(req(attempt(i as u32, code.clone()), IVR))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(d.decision, DENIED);
        let expected = if i == tries.len() - 1 {
            pb::Reason::PrepaidLockedOut
        } else {
            pb::Reason::PrepaidCodeInvalid
        };
        assert_eq!(d.reason, reason(expected), "attempt {i}");
    }
    let d = g
        .authz()
        .authorize(req(attempt(99, good), IVR))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        d.reason,
        reason(pb::Reason::PrepaidLockedOut),
        "locked even for the right code"
    );
    let metrics = reqwest_metrics(&g).await;
    assert!(
        metrics.contains("callauth_prepaid_lockouts_total"),
        "lockouts are counted"
    );
    g.stop().await;
}

/// The gateway's /metrics page, read over plain HTTP.
async fn reqwest_metrics<S: Store>(g: &TestGateway<S>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(g.running.http_addr)
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

pub async fn bad_requests_are_invalid_and_change_nothing<S: Store>(g: TestGateway<S>) {
    let before = g.account(A).await;
    let cases = [
        authorize_req("", A, TAROT),
        authorize_req("c1", "12", TAROT),
        authorize_req("c1", "ABC", TAROT),
        authorize_req("c1", A, "0900-777 77 77"), // unknown service
        authorize_req("c1", A, ""),
    ];
    for c in cases {
        let err = g.authz().authorize(req(c.clone(), IVR)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{c:?}: {err:?}");
    }
    call_allowed(&g, "c1", A, TAROT).await;
    let t0 = g.now();
    let bad_usage = [
        (
            usage_record("r", "c1", TAROT, t0, -5),
            pb::UsageRejectReason::DurationOutOfRange,
        ),
        (
            usage_record("r", "c1", TAROT, t0, 1_000_000),
            pb::UsageRejectReason::DurationOutOfRange,
        ),
        (
            usage_record("", "c1", TAROT, t0, 5),
            pb::UsageRejectReason::Malformed,
        ),
        (
            usage_record("r", "", TAROT, t0, 5),
            pb::UsageRejectReason::Malformed,
        ),
        (
            usage_record("r", "never", TAROT, t0, 5),
            pb::UsageRejectReason::UnknownCall,
        ),
        (
            usage_record("r", "c1", "0900-777 77 77", t0, 5),
            pb::UsageRejectReason::UnknownService,
        ),
        (
            usage_record("r", "c1", TAROT, t0 + 3_600_000, 5),
            pb::UsageRejectReason::StartOutOfRange,
        ),
    ];
    for (rec, expected) in bad_usage {
        let ack = report(&g, STJARN, rec.clone()).await;
        assert_eq!(ack.result, pb::UsageResult::Rejected as i32, "{rec:?}");
        assert_eq!(ack.reject_reason, expected as i32, "{rec:?}: {ack:?}");
        assert!(!ack.detail.is_empty());
    }
    let mut no_start = usage_record("r", "c1", TAROT, t0, 5);
    no_start.started_at = None;
    assert_eq!(
        report(&g, STJARN, no_start).await.reject_reason,
        pb::UsageRejectReason::StartOutOfRange as i32
    );
    let after = g.account(A).await;
    assert_eq!(after.unbilled_ore, before.unbilled_ore);
    // Extend with sequence 0, release with an empty call id.
    let err = g
        .authz()
        .extend(req(
            pb::ExtendRequest {
                call_id: "c1".into(),
                sequence: 0,
            },
            IVR,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = g
        .authz()
        .release(req(pb::ReleaseRequest { call_id: "".into() }, IVR))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // A limit above the default on the holder's request is refused.
    let err = g
        .accounts()
        .set_credit_limit(req(
            pb::SetCreditLimitRequest {
                number: A.into(),
                change: Some(pb::set_credit_limit_request::Change::HolderRequestedOre(
                    500_000,
                )),
            },
            ADMIN,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    g.stop().await;
}

pub async fn merchants_are_confined_to_their_services<S: Store>(g: TestGateway<S>) {
    call_allowed(&g, "c1", A, TAROT).await;
    let t0 = g.now();
    // radgivarna reports on stjarnlinjen's tarot line.
    let ack = report(&g, RADGIV, usage_record("r1", "c1", TAROT, t0, 60)).await;
    assert_eq!(ack.result, pb::UsageResult::Rejected as i32);
    assert_eq!(
        ack.reject_reason,
        pb::UsageRejectReason::NotMerchantsService as i32
    );
    assert_eq!(g.account(A).await.unbilled_ore, 0);
    // A merchant token cannot authorize calls, an IVR token cannot report usage.
    let err = g
        .authz()
        .authorize(req(authorize_req("c2", A, TAROT), STJARN))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = g
        .usage()
        .report_one(req(usage_record("r1", "c1", TAROT, t0, 60), IVR))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // No token, or a wrong one.
    let err = g
        .authz()
        .authorize(tonic::Request::new(authorize_req("c2", A, TAROT)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = g
        .authz()
        .authorize(req(authorize_req("c2", A, TAROT), "not-a-token-at-all"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = g
        .accounts()
        .get_account(req(pb::GetAccountRequest { number: A.into() }, IVR))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Lookups are public (R5).
    let s = g
        .catalog()
        .lookup_service(tonic::Request::new(pb::LookupServiceRequest {
            service_number: "+469001001010".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.name, "Tarotlinjen");
    assert_eq!(s.merchant_name, "Stjärnlinjen AB");
    assert_eq!(s.service_number_national, "0900-100 10 10");
    // A VAT rate is one of the Swedish rates (mervärdesskattelagen 9 kap.);
    // an exempt service (0 %) is a new terms version and says no "moms".
    let upsert = |vat: Option<u32>| pb::UpsertServiceRequest {
        service_number: "+469001001010".into(),
        merchant_id: "stjarnlinjen".into(),
        name: "Tarotlinjen".into(),
        category: "tarot".into(),
        price_per_minute_ore: 2990,
        minimum_minutes: 0,
        billing_step_seconds: 60,
        reminder_fee_ore: 6000,
        active: true,
        vat_rate_percent: vat,
    };
    let err = g
        .catalog()
        .upsert_service(req(upsert(Some(20)), ADMIN))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let exempt = g
        .catalog()
        .upsert_service(req(upsert(Some(0)), ADMIN))
        .await
        .unwrap()
        .into_inner();
    let t = exempt.terms.unwrap();
    assert_eq!(t.vat_rate_percent, 0);
    assert_ne!(t.terms_id, "t-469001001010-1");
    assert!(!t.announcement_sv.contains("moms"));
    g.stop().await;
}

pub async fn usage_stream_acknowledges_each_record_in_order<S: Store>(g: TestGateway<S>) {
    let t0 = g.now();
    call_allowed(&g, "c1", A, TAROT).await;
    call_allowed(&g, "c2", B, TAROT).await;
    g.clock.advance_ms(61_000);
    let records = vec![
        usage_record("r1", "c1", TAROT, t0, 61),
        usage_record("r1-again", "c1", TAROT, t0, 61), // duplicate
        usage_record("r2", "c2", TAROT, t0, 30),
        usage_record("r3", "c2", TAROT, t0, 31), // conflicting duplicate
        usage_record("r4", "nope", TAROT, t0, 30), // unknown call
    ];
    let outbound = tokio_stream::iter(records);
    let mut acks = g
        .usage()
        .report(req(outbound, STJARN))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(a) = acks.next().await {
        got.push(a.unwrap());
    }
    let results: Vec<(String, i32)> = got
        .iter()
        .map(|a| (a.record_id.clone(), a.result))
        .collect();
    assert_eq!(
        results,
        vec![
            ("r1".to_string(), pb::UsageResult::Applied as i32),
            ("r1-again".to_string(), pb::UsageResult::Duplicate as i32),
            ("r2".to_string(), pb::UsageResult::Applied as i32),
            ("r3".to_string(), pb::UsageResult::Rejected as i32),
            ("r4".to_string(), pb::UsageResult::Rejected as i32),
        ]
    );
    assert_eq!(
        got[1].charge_ore, 5980,
        "a duplicate reports the original charge"
    );
    assert_eq!(
        got[3].reject_reason,
        pb::UsageRejectReason::ConflictingDuplicate as i32
    );
    assert_eq!(g.account(A).await.unbilled_ore, 5980);
    assert_eq!(g.account(B).await.unbilled_ore, 2990);
    let posted = events(&g)
        .await
        .iter()
        .filter(|e| matches!(e.body, EventBody::UsagePosted(_)))
        .count();
    assert_eq!(posted, 2, "each call posted once");
    // The stream is counted when it ends (before its acknowledgements close).
    let m = reqwest_metrics(&g).await;
    let ended_ok = m
        .lines()
        .find(|l| l.starts_with("callauth_grpc_requests_total{method=\"Report\",code=\"ok\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(ended_ok >= 1.0, "a finished usage stream is counted as ok");
    g.stop().await;
}

pub async fn extend_release_and_expiry<S: Store>(g: TestGateway<S>) {
    let t0 = g.now();
    let first = call_allowed(&g, "c1", A, TAROT).await;
    let e = g
        .authz()
        .extend(req(
            pb::ExtendRequest {
                call_id: "c1".into(),
                sequence: 1,
            },
            IVR,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e.decision, ALLOWED);
    assert_eq!(e.granted_seconds_total, 1800);
    assert_eq!(e.added_seconds, 900);
    let again = g
        .authz()
        .extend(req(
            pb::ExtendRequest {
                call_id: "c1".into(),
                sequence: 1,
            },
            IVR,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(again.replayed);
    assert_eq!(g.account(A).await.pending_ore, 30 * 2990);
    let err = g
        .authz()
        .extend(req(
            pb::ExtendRequest {
                call_id: "none".into(),
                sequence: 1,
            },
            IVR,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Release: the caller hung up before the service started.
    let released = call_allowed(&g, "c2", A, TAROT).await;
    let r = g
        .authz()
        .release(req(
            pb::ReleaseRequest {
                call_id: "c2".into(),
            },
            IVR,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.outcome, pb::ReleaseOutcome::Voided as i32);
    assert_eq!(r.released_ore, released.hold_ore);
    let ack = report(&g, STJARN, usage_record("r2", "c2", TAROT, t0, 30)).await;
    assert_eq!(
        ack.reject_reason,
        pb::UsageRejectReason::CallReleased as i32
    );

    // Expiry: c1's grant (1 800 s) plus grace passes without usage.
    assert_eq!(g.account(A).await.pending_ore, 30 * 2990);
    g.clock.advance_ms(1_800_000 + 120_000 + 1);
    let expired = g.gateway.sweep().await.unwrap();
    assert_eq!(expired, 1);
    let acct = g.account(A).await;
    assert_eq!(acct.pending_ore, 0);
    assert_eq!(acct.pending_calls, 0);
    assert!(events(&g)
        .await
        .iter()
        .any(|e| matches!(&e.body, EventBody::HoldExpired(h) if h.call_id == "c1")));
    let e = g
        .authz()
        .extend(req(
            pb::ExtendRequest {
                call_id: "c1".into(),
                sequence: 2,
            },
            IVR,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e.decision, DENIED);
    assert_eq!(e.reason, reason(pb::Reason::CallEnded));
    // Late usage is still charged.
    let ack = report(&g, STJARN, usage_record("r1", "c1", TAROT, t0, 600)).await;
    assert_eq!(ack.result, pb::UsageResult::Applied as i32);
    assert_eq!(g.account(A).await.unbilled_ore, 10 * 2990);
    let _ = first;
    g.stop().await;
}

/// A call belongs to the IVR client that authorized it, and only IVR
/// clients authorize (issue 10): an admin token may not, another IVR
/// client may neither extend nor release the call, and a retry after the
/// call ended says so instead of granting a hold that no longer exists.
pub async fn calls_are_bound_to_their_ivr_client<S: Store>(g: TestGateway<S>) {
    let err = g
        .authz()
        .authorize(req(authorize_req("b0", A, TAROT), ADMIN))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let allowed = call_allowed(&g, "b1", A, TAROT).await;
    let extend = |token: &'static str| {
        let mut c = g.authz();
        async move {
            c.extend(req(
                pb::ExtendRequest {
                    call_id: "b1".into(),
                    sequence: 1,
                },
                token,
            ))
            .await
        }
    };
    assert_eq!(
        extend(IVR2).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let release = |token: &'static str| {
        let mut c = g.authz();
        async move {
            c.release(req(
                pb::ReleaseRequest {
                    call_id: "b1".into(),
                },
                token,
            ))
            .await
        }
    };
    let err = release(IVR2).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("another IVR client"), "{err:?}");
    assert_eq!(g.account(A).await.pending_ore, allowed.hold_ore);
    // The owner releases it; a retried Authorize now hears the call is over.
    release(IVR).await.unwrap();
    let mut r = authorize_req("b1", A, TAROT);
    r.consent = Some(consent_for(allowed.terms.as_ref().unwrap(), false));
    let again = g.authz().authorize(req(r, IVR)).await.unwrap().into_inner();
    assert_eq!(again.decision, pb::Decision::Denied as i32);
    assert_eq!(again.reason, pb::Reason::CallEnded as i32);
    assert!(again.replayed);
    assert_eq!(again.hold_ore, 0);
    assert_eq!(g.account(A).await.pending_ore, 0);
}

pub async fn operations_surface_health_reflection_metrics<S: Store>(g: TestGateway<S>) {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let mut health = HealthClient::new(g.channel.clone());
    for service in ["", "callauth.v1.Authorization"] {
        // Readiness is reported by a background task: wait for it briefly.
        let mut status = 0;
        for _ in 0..50 {
            status = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .map(|r| r.into_inner().status)
                .unwrap_or(0);
            if status == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(status, 1, "{service:?} SERVING");
    }
    // Reflection lists our services.
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::{
        server_reflection_request::MessageRequest, ServerReflectionRequest,
    };
    let mut refl = ServerReflectionClient::new(g.channel.clone());
    let mut resp = refl
        .server_reflection_info(tokio_stream::iter(vec![ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }]))
        .await
        .unwrap()
        .into_inner();
    let listed = format!("{:?}", resp.next().await.unwrap().unwrap());
    assert!(listed.contains("callauth.v1.Authorization"), "{listed}");
    assert!(listed.contains("grpc.health.v1.Health"), "{listed}");
    // Metrics: decisions with reasons, latency histogram with sub-millisecond buckets.
    call_allowed(&g, "c1", A, TAROT).await;
    let m = reqwest_metrics(&g).await;
    assert!(m.contains("callauth_authorize_decisions_total{decision=\"allowed\",reason=\"granted\",funding=\"postpaid\"}"), "{m}");
    assert!(
        m.contains(
            "callauth_grpc_request_duration_seconds_bucket{method=\"Authorize\",le=\"0.0005\"}"
        ),
        "{m}"
    );
    assert!(!m.contains("quantile="), "histograms, never summaries");
    // Error and event series exist before the first error, for rate() and alerts.
    for series in [
        "callauth_grpc_requests_total{method=\"Authorize\",code=\"unavailable\"}",
        "callauth_authorize_decisions_total{decision=\"denied\",reason=\"blocked_overdue\",funding=\"postpaid\"}",
        "callauth_holds_expired_total",
        "callauth_store_errors_total{backend=",
    ] {
        assert!(m.contains(series), "{series} is registered at start");
    }
    assert!(!m.contains("46701234567"), "no phone numbers in metrics");
    g.stop().await;
}

#[macro_export]
macro_rules! e2e_suite {
    ($factory:expr) => {
        $crate::e2e_suite!(@tests $factory;
            first_time_caller_gets_1500_and_consent_flow,
            usage_posts_the_charge_and_minimum,
            retried_authorize_returns_the_same_answer,
            concurrent_calls_share_the_credit,
            threshold_once_then_limit_block,
            callers_who_cannot_be_invoiced_need_a_code,
            holder_block_stops_prepaid_but_credit_block_does_not,
            wrong_codes_lock_the_line_out,
            bad_requests_are_invalid_and_change_nothing,
            merchants_are_confined_to_their_services,
            usage_stream_acknowledges_each_record_in_order,
            extend_release_and_expiry,
            calls_are_bound_to_their_ivr_client,
            operations_surface_health_reflection_metrics,
        );
    };
    (@tests $factory:expr; $($name:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store = $factory.await;
                let g = $crate::common::server::start(store).await;
                $crate::e2e_suite::$name(g).await;
            }
        )*
    };
}
