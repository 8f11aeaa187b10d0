//! Hostile or odd input at the gateway's edge (issue 10), end to end: the
//! real server on 127.0.0.1:0, the generated client (or raw bytes where a
//! generated client cannot send them), the demo catalogue and a manual clock.
//!
//! Each test states the defect it pins: free text with control characters
//! reaching the consent evidence, consent timestamps from the future or the
//! distant past, usage that ends after it was reported, oversized tokens,
//! undecodable messages, deadlines answered as CANCELLED, a store timeout
//! reported as "within 0 ms". Redis is a real, private server where a test
//! needs one; the deadline tests pause it (`CLIENT PAUSE`) instead of sleeping.

mod common;

use callauth::domain::event::EventBody;
use callauth::gateway::server::ServerOptions;
use callauth::pb;
use callauth::store::memory::MemoryStore;
use callauth::store::Store;
use common::server::*;
use prost_types::Timestamp;
use tonic::Code;

const ALLOWED: i32 = pb::Decision::Allowed as i32;

async fn memory_gateway() -> TestGateway<MemoryStore> {
    start(MemoryStore::new(callauth::store::StorePolicy::default())).await
}

async fn events<S: Store>(g: &TestGateway<S>) -> Vec<callauth::domain::Event> {
    g.gateway.store().recent_events(100_000).await.unwrap()
}

/// Prometheus text of the gateway's /metrics.
async fn metrics_text<S: Store>(g: &TestGateway<S>) -> String {
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

/// The value of one series in Prometheus text (0 when absent).
fn series(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn requests_series(method: &str, code: &str) -> String {
    format!("callauth_grpc_requests_total{{method=\"{method}\",code=\"{code}\"}} ")
}

fn ts(ms: i64) -> Option<Timestamp> {
    Some(callauth::gateway::api::convert::ms_to_timestamp(ms))
}

/// The terms the gateway announces for `service` (first Authorize of a call).
async fn announced<S: Store>(g: &TestGateway<S>, call_id: &str, service: &str) -> pb::Terms {
    g.authz()
        .authorize(req(authorize_req(call_id, A, service), IVR))
        .await
        .unwrap()
        .into_inner()
        .terms
        .unwrap()
}

fn assert_invalid_naming(err: &tonic::Status, field: &str, value: &str) {
    assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
    assert!(
        err.message().contains(field),
        "the message names {field}: {}",
        err.message()
    );
    let printable: String = value.chars().filter(|c| !c.is_control()).collect();
    if printable.len() >= 4 {
        assert!(
            !err.message().contains(&printable),
            "the message does not echo the value: {}",
            err.message()
        );
    }
}

// ---------------------------------------------------------------- free text

/// A NUL in `ivr_id` reached the consent event, PostgreSQL's jsonb refused it
/// and settlement dead-lettered the consent evidence of a billed call. Every
/// free-text field of the IVR and admin requests is now checked at the edge:
/// INVALID_ARGUMENT naming the field, never echoing the value, nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_free_text_are_refused_at_the_edge_and_store_nothing() {
    let g = memory_gateway().await;
    let terms = announced(&g, "c0", TAROT).await;
    let before_events = events(&g).await.len();
    let before = g.account(A).await;

    let mut cases: Vec<(&str, pb::AuthorizeRequest, String)> = Vec::new();
    for (field, value) in [
        ("ivr_id", "ivr-node\u{0}1".to_string()),
        ("ivr_id", "ivr\nnode".to_string()),
        ("ivr_id", "ivr\u{202e}node".to_string()),
        ("ivr_id", "n".repeat(129)),
        ("line_ref", "trunk-7\u{0}".to_string()),
        ("line_ref", "trunk\r\n7".to_string()),
        ("line_ref", "l".repeat(129)),
    ] {
        let mut r = authorize_req("c1", A, TAROT);
        r.consent = Some(consent_for(&terms, false));
        if field == "ivr_id" {
            r.ivr_id = value.clone();
        } else {
            r.line_ref = value.clone();
        }
        cases.push((field, r, value));
    }
    for (field, r, value) in cases {
        let err = g.authz().authorize(req(r, IVR)).await.unwrap_err();
        assert_invalid_naming(&err, field, &value);
    }

    // Admin free text: a block's reason, a credit decision's reference and
    // author, merchant and service names, categories, organisation numbers.
    let block = |reason: &str| pb::SetBlockRequest {
        number: A.into(),
        scope: pb::BlockScope::AllServices as i32,
        target: String::new(),
        blocked: true,
        reason: reason.into(),
    };
    for reason in ["holder request\u{0}", "holder\nrequest", &"r".repeat(501)] {
        let err = g
            .accounts()
            .set_block(req(block(reason), ADMIN))
            .await
            .unwrap_err();
        assert_invalid_naming(&err, "reason", reason);
    }
    let decision = |reference: &str, by: &str| pb::SetCreditLimitRequest {
        number: A.into(),
        change: Some(pb::set_credit_limit_request::Change::CreditDecision(
            pb::CreditDecision {
                limit_ore: 500_000,
                credit_check_reference: reference.into(),
                decided_by: by.into(),
            },
        )),
    };
    for (field, r) in [
        ("credit_check_reference", decision("UC-12\u{0}34", "ops")),
        ("credit_check_reference", decision("", "ops")),
        ("credit_check_reference", decision(&"u".repeat(129), "ops")),
        ("decided_by", decision("UC-1234", "Anna\u{7}")),
    ] {
        let err = g
            .accounts()
            .set_credit_limit(req(r, ADMIN))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }
    let merchant = |name: &str, org: &str| pb::Merchant {
        merchant_id: "nykund".into(),
        name: name.into(),
        org_number: org.into(),
        fee_basis_points: 1500,
        active: true,
    };
    for (field, m) in [
        ("name", merchant("Ny Kund\u{0} AB", "556677-8899")),
        ("name", merchant(&"N".repeat(201), "556677-8899")),
        ("org_number", merchant("Ny Kund AB", "5566\u{0}77-8899")),
        ("org_number", merchant("Ny Kund AB", "not an org number")),
    ] {
        let err = g
            .catalog()
            .upsert_merchant(req(m, ADMIN))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }
    let service = |name: &str, category: &str| pb::UpsertServiceRequest {
        service_number: "0900-100 10 10".into(),
        merchant_id: "stjarnlinjen".into(),
        name: name.into(),
        category: category.into(),
        price_per_minute_ore: 2990,
        minimum_minutes: 0,
        billing_step_seconds: 60,
        reminder_fee_ore: 6000,
        active: true,
        vat_rate_percent: None,
    };
    for (field, s) in [
        ("name", service("Tarot\nlinjen", "tarot")),
        ("category", service("Tarotlinjen", "tarot\u{0}")),
        ("category", service("Tarotlinjen", &"t".repeat(41))),
    ] {
        let err = g.catalog().upsert_service(req(s, ADMIN)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }

    // A lookup's merchant filter is a merchant id, not free text.
    let err = g
        .catalog()
        .list_services(req(
            pb::ListServicesRequest {
                merchant_id: "stjarnlinjen\u{0}".into(),
            },
            ADMIN,
        ))
        .await
        .unwrap_err();
    assert_invalid_naming(&err, "merchant_id", "stjarnlinjen");

    // Nothing was stored: no event, no hold, no block, no limit change, and
    // the catalogue still announces the same terms.
    assert_eq!(events(&g).await.len(), before_events);
    let after = g.account(A).await;
    assert_eq!(after.pending_ore, before.pending_ore);
    assert_eq!(after.limit_ore, before.limit_ore);
    assert!(!after.blocked_all_services);
    assert_eq!(announced(&g, "c2", TAROT).await, terms);

    // The same call with clean text is allowed and its evidence is kept as sent.
    let mut r = authorize_req("c1", A, TAROT);
    r.consent = Some(consent_for(&terms, false));
    r.ivr_id = "ivr-node-1 (Göteborg)".into();
    r.line_ref = "trunk 7/channel 12".into();
    let ok = g.authz().authorize(req(r, IVR)).await.unwrap().into_inner();
    assert_eq!(ok.decision, ALLOWED, "{ok:?}");
    let consent = events(&g)
        .await
        .into_iter()
        .find_map(|e| match e.body {
            EventBody::ConsentRecorded(c) if c.call_id == "c1" => Some(c),
            _ => None,
        })
        .expect("the consent event");
    assert_eq!(consent.ivr_id, "ivr-node-1 (Göteborg)");
    assert_eq!(consent.line_ref, "trunk 7/channel 12");
    g.stop().await;
}

/// An invalid A-number was echoed whole in `grpc-message`: error messages
/// name the field and never repeat a phone number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_numbers_are_not_echoed() {
    let g = memory_gateway().await;
    for bad in ["070-12 34 56 78 90 12", "+4670123x4567", "46701234567"] {
        let err = g
            .authz()
            .authorize(req(authorize_req("c1", bad, TAROT), IVR))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}: {err:?}");
        assert!(err.message().contains("a_number"), "{}", err.message());
        assert!(!err.message().contains("4567"), "{}", err.message());
        assert!(!err.message().contains("34 56"), "{}", err.message());
    }
    let err = g
        .accounts()
        .get_account(req(
            pb::GetAccountRequest {
                number: "073-765 43 21 99 99".into(),
            },
            ADMIN,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(!err.message().contains("765"), "{}", err.message());
    g.stop().await;
}

// ---------------------------------------------------------------- consent timestamps

/// Consent timestamps were stored as evidence whatever they said: step 1 a
/// day in the future, step 2 a day in the past, 50 years ahead, values that
/// overflow. They must satisfy step1 ≤ step2 ≤ receive time + 5 s, step 1 at
/// most 900 s before the request, and be valid timestamps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_timestamps_out_of_order_in_the_future_too_old_or_overflowing_are_invalid() {
    let g = memory_gateway().await;
    let terms = announced(&g, "c0", TAROT).await;
    let now = g.now();
    const DAY_MS: i64 = 86_400_000;
    const FIFTY_YEARS_MS: i64 = 50 * 365 * DAY_MS;
    let consent = |step1: Option<Timestamp>, step2: Option<Timestamp>| {
        let mut c = consent_for(&terms, false);
        c.step1_at = step1;
        c.step2_at = step2;
        c
    };
    let cases: Vec<(&str, pb::Consent)> = vec![
        (
            "step 1 a day in the future",
            consent(ts(now + DAY_MS), ts(now)),
        ),
        (
            "step 2 a day in the past",
            consent(ts(now - DAY_MS - 1000), ts(now - DAY_MS)),
        ),
        (
            "both 50 years ahead",
            consent(ts(now + FIFTY_YEARS_MS), ts(now + FIFTY_YEARS_MS)),
        ),
        (
            "step 2 50 years ahead",
            consent(ts(now), ts(now + FIFTY_YEARS_MS)),
        ),
        (
            "step 2 before step 1",
            consent(ts(now - 1000), ts(now - 2000)),
        ),
        (
            "step 1 after the receive time (step 2 absent)",
            consent(ts(now + 10_000), None),
        ),
        // 5 s of skew is allowed; 5 001 ms is not.
        ("step 2 beyond the skew", consent(ts(now), ts(now + 5_001))),
        // 900 s of age is allowed; 900 001 ms is not.
        ("step 1 too old", consent(ts(now - 900_001), ts(now))),
        (
            "seconds that overflow milliseconds",
            consent(
                Some(Timestamp {
                    seconds: i64::MAX,
                    nanos: 999_999_999,
                }),
                ts(now),
            ),
        ),
        (
            "the most negative seconds",
            consent(
                Some(Timestamp {
                    seconds: i64::MIN,
                    nanos: 0,
                }),
                ts(now),
            ),
        ),
        (
            "negative nanos",
            consent(
                Some(Timestamp {
                    seconds: now / 1000,
                    nanos: -1,
                }),
                ts(now),
            ),
        ),
        (
            "nanos of a whole second",
            consent(
                ts(now - 1000),
                Some(Timestamp {
                    seconds: now / 1000,
                    nanos: 1_000_000_000,
                }),
            ),
        ),
    ];
    for (what, c) in cases {
        let mut r = authorize_req("c1", A, TAROT);
        r.consent = Some(c);
        let err = g.authz().authorize(req(r, IVR)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(
            err.message().contains("consent.step"),
            "{what}: {}",
            err.message()
        );
    }
    // Nothing held, nothing recorded.
    assert_eq!(g.account(A).await.pending_ore, 0);
    assert!(!events(&g)
        .await
        .iter()
        .any(|e| matches!(e.body, EventBody::ConsentRecorded(_))));
    g.stop().await;
}

/// The limits are inclusive and the timestamps given are the evidence kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_timestamps_at_the_limits_are_kept_as_sent() {
    let g = memory_gateway().await;
    let terms = announced(&g, "c0", TAROT).await;
    let now = g.now();
    let cases = [
        // (call id, step 1, step 2): the oldest step 1 allowed (900 s), the
        // latest step 2 allowed (5 s ahead), and both steps at the same instant.
        ("c1", now - 900_000, now - 1_000),
        ("c2", now - 2_000, now + 5_000),
        ("c3", now - 500, now - 500),
    ];
    for (id, step1, step2) in cases {
        let mut r = authorize_req(id, A, TAROT);
        let mut c = consent_for(&terms, false);
        c.step1_at = ts(step1);
        c.step2_at = ts(step2);
        r.consent = Some(c);
        let resp = g.authz().authorize(req(r, IVR)).await.unwrap().into_inner();
        assert_eq!(resp.decision, ALLOWED, "{id}: {resp:?}");
        let recorded = events(&g)
            .await
            .into_iter()
            .find_map(|e| match e.body {
                EventBody::ConsentRecorded(c) if c.call_id == id => Some(c),
                _ => None,
            })
            .expect("consent event");
        assert_eq!((recorded.step1_at_ms, recorded.step2_at_ms), (step1, step2));
    }
    g.stop().await;
}

// ---------------------------------------------------------------- usage end

/// Usage whose end lay in the future was accepted: a merchant could report
/// 14 400 s a moment after the authorization, charging an overrun and
/// blocking the caller. The end (started_at + duration) may be at most 60 s
/// ahead of the gateway's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_that_ends_after_it_was_reported_is_rejected() {
    let g = memory_gateway().await;
    let t0 = g.now();
    let terms = announced(&g, "c1", TAROT).await;
    let mut r = authorize_req("c1", A, TAROT);
    r.consent = Some(consent_for(&terms, false));
    let allowed = g.authz().authorize(req(r, IVR)).await.unwrap().into_inner();
    assert_eq!(allowed.decision, ALLOWED);
    g.clock.advance_ms(10_000);

    // 10 s have passed: a call that started at t0 may report at most
    // 10 s + 60 s of skew = 70 s.
    for duration in [14_400, 901, 71] {
        let ack = g
            .usage()
            .report_one(req(usage_record("r1", "c1", TAROT, t0, duration), STJARN))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            ack.result,
            pb::UsageResult::Rejected as i32,
            "{duration}: {ack:?}"
        );
        assert_eq!(
            ack.reject_reason,
            pb::UsageRejectReason::DurationOutOfRange as i32,
            "{duration}: {ack:?}"
        );
        assert!(ack.detail.contains("future"), "{}", ack.detail);
    }
    // The same over the stream.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(usage_record("r1", "c1", TAROT, t0, 3_600))
        .await
        .unwrap();
    drop(tx);
    let mut acks = g
        .usage()
        .report(req(tokio_stream::wrappers::ReceiverStream::new(rx), STJARN))
        .await
        .unwrap()
        .into_inner();
    let ack = acks.message().await.unwrap().unwrap();
    assert_eq!(
        ack.reject_reason,
        pb::UsageRejectReason::DurationOutOfRange as i32,
        "{ack:?}"
    );
    // Nothing was posted: the hold is still pending, nothing unbilled.
    let acct = g.account(A).await;
    assert_eq!(acct.unbilled_ore, 0);
    assert_eq!(acct.pending_ore, allowed.hold_ore);

    // 70 s ends exactly at the bound and is charged: 2 started minutes at
    // 29,90 kr = 59,80 kr.
    let ack = g
        .usage()
        .report_one(req(usage_record("r1", "c1", TAROT, t0, 70), STJARN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.result, pb::UsageResult::Applied as i32, "{ack:?}");
    assert_eq!(ack.charge_ore, 5_980);
    assert_eq!(g.account(A).await.unbilled_ore, 5_980);
    g.stop().await;
}

// ---------------------------------------------------------------- tokens

/// A bearer token over 16 KiB was answered UNKNOWN (HTTP/2 refused the
/// headers with 431 before any gRPC code ran): it is UNAUTHENTICATED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_tokens_are_unauthenticated() {
    let g = memory_gateway().await;
    for len in [5_000, 17 * 1024, 48 * 1024] {
        let token = "t".repeat(len);
        let err = g
            .authz()
            .authorize(req(authorize_req("c1", A, TAROT), &token))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{len}: {err:?}");
        assert!(
            !err.message().contains("ttttttttttttttttt"),
            "{}",
            err.message()
        );
    }
    // The real token still works on the same connection.
    let ok = g
        .authz()
        .authorize(req(authorize_req("c1", A, TAROT), IVR))
        .await
        .unwrap();
    assert_eq!(
        ok.into_inner().decision,
        pb::Decision::ConsentRequired as i32
    );
    g.stop().await;
}

// ---------------------------------------------------------------- undecodable

/// Bytes in, bytes out: a client that sends whatever it is given, so that a
/// test can send what no generated client would.
mod raw {
    use prost::bytes::{Buf, BufMut};
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
    use tonic::Status;

    #[derive(Clone, Default)]
    pub struct RawCodec;
    pub struct RawEncoder;
    pub struct RawDecoder;

    impl Codec for RawCodec {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = RawEncoder;
        type Decoder = RawDecoder;
        fn encoder(&mut self) -> RawEncoder {
            RawEncoder
        }
        fn decoder(&mut self) -> RawDecoder {
            RawDecoder
        }
    }

    impl Encoder for RawEncoder {
        type Item = Vec<u8>;
        type Error = Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.put_slice(&item);
            Ok(())
        }
    }

    impl Decoder for RawDecoder {
        type Item = Vec<u8>;
        type Error = Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
            let n = src.remaining();
            Ok(Some(src.copy_to_bytes(n).to_vec()))
        }
    }

    /// One unary call of `path` with `body` as the message bytes.
    pub async fn unary(
        channel: tonic::transport::Channel,
        path: &'static str,
        body: Vec<u8>,
        token: &str,
    ) -> Result<Vec<u8>, Status> {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let request = crate::common::server::req(body, token);
        grpc.unary(
            request,
            tonic::codegen::http::uri::PathAndQuery::from_static(path),
            RawCodec,
        )
        .await
        .map(|r| r.into_inner())
    }

    /// One client-streaming call of `path` with each of `bodies` as a message.
    pub async fn streaming(
        channel: tonic::transport::Channel,
        path: &'static str,
        bodies: Vec<Vec<u8>>,
        token: &str,
    ) -> Result<Vec<Result<Vec<u8>, Status>>, Status> {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let request = crate::common::server::req(tokio_stream::iter(bodies), token);
        let mut out = grpc
            .streaming(
                request,
                tonic::codegen::http::uri::PathAndQuery::from_static(path),
                RawCodec,
            )
            .await?
            .into_inner();
        let mut items = Vec::new();
        loop {
            match out.message().await {
                Ok(Some(m)) => items.push(Ok(m)),
                Ok(None) => break,
                Err(e) => {
                    items.push(Err(e));
                    break;
                }
            }
        }
        Ok(items)
    }
}

/// Undecodable protobuf was answered INTERNAL and never counted in
/// `callauth_grpc_requests_total` (tonic refused it before the handler). It is
/// the client's fault: INVALID_ARGUMENT, counted under its method.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_requests_are_invalid_argument_and_counted() {
    let g = memory_gateway().await;
    let before = metrics_text(&g).await;
    // A truncated varint, and field 1 (call_id) holding bytes that are not UTF-8.
    let garbage = [vec![0x08, 0xff, 0xff], vec![0x0a, 0x02, 0xff, 0xfe]];
    for body in garbage {
        let err = raw::unary(
            g.channel.clone(),
            "/callauth.v1.Authorization/Extend",
            body,
            IVR,
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    let after = metrics_text(&g).await;
    let key = requests_series("Extend", "invalid_argument");
    assert_eq!(
        series(&after, &key) - series(&before, &key),
        2.0,
        "both undecodable requests are counted: {key}"
    );
    // A well-formed message on the same path still works.
    let ok = raw::unary(
        g.channel.clone(),
        "/callauth.v1.Authorization/Release",
        prost::Message::encode_to_vec(&pb::ReleaseRequest {
            call_id: "never-authorized".into(),
        }),
        IVR,
    )
    .await
    .unwrap();
    let resp: pb::ReleaseResponse = prost::Message::decode(ok.as_slice()).unwrap();
    assert_eq!(resp.outcome, pb::ReleaseOutcome::UnknownCall as i32);
    g.stop().await;
}

/// An undecodable record in a usage stream ended the stream as if all was
/// well; the merchant is told INVALID_ARGUMENT after the acknowledgements of
/// the records before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_usage_record_ends_the_stream_with_invalid_argument() {
    let g = memory_gateway().await;
    let good = prost::Message::encode_to_vec(&usage_record("r1", "never", TAROT, g.now(), 5));
    let items = raw::streaming(
        g.channel.clone(),
        "/callauth.v1.Usage/Report",
        vec![good, vec![0x0a, 0x02, 0xff, 0xfe]],
        STJARN,
    )
    .await
    .unwrap();
    assert_eq!(items.len(), 2, "{items:?}");
    let ack: pb::UsageAck = prost::Message::decode(items[0].as_ref().unwrap().as_slice()).unwrap();
    assert_eq!(ack.reject_reason, pb::UsageRejectReason::UnknownCall as i32);
    let err = items[1].as_ref().unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    g.stop().await;
}

// ---------------------------------------------------------------- deadlines

/// A private Redis this test can pause (`CLIENT PAUSE`), and a gateway on it.
async fn paused_redis_gateway(
    response_timeout_ms: u64,
    opts: ServerOptions,
) -> (TestGateway<callauth::store::redis::RedisStore>, u16) {
    let port = common::redis::free_port();
    tokio::task::spawn_blocking(move || common::redis::spawn_redis(port, &[]))
        .await
        .unwrap();
    let mut config = callauth::store::redis::RedisConfig::new(&format!("redis://127.0.0.1:{port}"));
    config.prefix = common::redis::unique_prefix();
    config.response_timeout = std::time::Duration::from_millis(response_timeout_ms);
    let store = callauth::store::redis::RedisStore::connect(
        &config,
        callauth::store::StorePolicy::default(),
    )
    .await
    .unwrap();
    (start_with(store, opts).await, port)
}

/// Pauses every client of the Redis on `port` for `ms` (it resumes by itself).
async fn pause_redis(port: u16, ms: u64) {
    let out = tokio::task::spawn_blocking(move || {
        common::redis::cli(port, &["CLIENT", "PAUSE", &ms.to_string(), "ALL"])
    })
    .await
    .unwrap();
    assert!(out.contains("OK"), "CLIENT PAUSE: {out}");
}

/// A bare HTTP/2 client: one unary gRPC call with the given `grpc-timeout`,
/// answered by whatever the server says. (tonic's client enforces a deadline
/// itself and reports its own CANCELLED, hiding the server's answer.)
async fn h2_unary_with_timeout(
    addr: std::net::SocketAddr,
    path: &str,
    message: Vec<u8>,
    token: &str,
    grpc_timeout: &str,
) -> (Code, String) {
    use prost::bytes::{BufMut, Bytes, BytesMut};
    use tonic::codegen::http;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", grpc_timeout)
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.put_u8(0);
    frame.put_u32(message.len() as u32);
    frame.put_slice(&message);
    body.send_data(frame.freeze(), true).unwrap();
    let response = response.await.unwrap();
    let status_of = |headers: &http::HeaderMap| {
        headers.get("grpc-status").map(|v| {
            let code = Code::from_i32(v.to_str().unwrap().parse().unwrap());
            let message = headers
                .get("grpc-message")
                .map(|m| m.to_str().unwrap().to_string())
                .unwrap_or_default();
            (code, message)
        })
    };
    if let Some(answer) = status_of(response.headers()) {
        return answer; // trailers-only
    }
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let _: Bytes = data.unwrap();
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    status_of(&trailers).expect("grpc-status in the trailers")
}

/// Requests that ran out of time on the server were answered CANCELLED and
/// counted as `cancelled`, which the availability objective leaves out. A
/// deadline hit — the client's `grpc-timeout` or the server's
/// `--request-timeout-ms` — is DEADLINE_EXCEEDED and counted as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_are_deadline_exceeded_and_counted() {
    // The store answers within 5 s, far beyond both deadlines below.
    let opts = ServerOptions {
        request_timeout: std::time::Duration::from_millis(300),
        ..ServerOptions::default()
    };
    let (g, port) = paused_redis_gateway(5_000, opts).await;
    let before = metrics_text(&g).await;
    pause_redis(port, 3_000).await;

    // The client's deadline (150 ms) is shorter than the server's.
    let (code, message) = h2_unary_with_timeout(
        g.running.grpc_addr,
        "/callauth.v1.Authorization/Authorize",
        prost::Message::encode_to_vec(&authorize_req("c1", A, TAROT)),
        IVR,
        "150m",
    )
    .await;
    assert_eq!(code, Code::DeadlineExceeded, "client deadline: {message}");
    // No client deadline: the server's --request-timeout-ms (300 ms).
    let err = g
        .authz()
        .authorize(req(authorize_req("c2", A, TAROT), IVR))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::DeadlineExceeded,
        "server deadline: {err:?}"
    );
    assert!(err.message().contains("300 ms"), "{}", err.message());

    let after = metrics_text(&g).await;
    let exceeded = requests_series("Authorize", "deadline_exceeded");
    let cancelled = requests_series("Authorize", "cancelled");
    assert_eq!(series(&after, &exceeded) - series(&before, &exceeded), 2.0);
    assert_eq!(
        series(&after, &cancelled) - series(&before, &cancelled),
        0.0
    );
    g.stop().await;
}

/// The store's timeout was reported as "did not answer within 0 ms": the
/// message names the configured per-command timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_timeout_names_the_configured_timeout() {
    let (g, port) = paused_redis_gateway(120, ServerOptions::default()).await;
    pause_redis(port, 2_000).await;
    let err = g
        .authz()
        .authorize(req(authorize_req("c1", A, TAROT), IVR))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("within 120 ms"), "{}", err.message());
    g.stop().await;
}
