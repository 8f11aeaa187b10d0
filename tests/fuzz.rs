//! Fuzz targets as proptest corpora (issue 10), run by the ordinary
//! `cargo test` for a bounded number of cases each (no nightly, no
//! cargo-fuzz): hostile input must never panic, and requests that do not make
//! sense must be refused as the client's fault.
//!
//! | target | input | cases |
//! |---|---|---|
//! | gateway requests | arbitrary bytes, and encodings of generated requests with bytes overwritten and cut, decoded with prost, converted, and sent through a gateway on the embedded store | Authorize 1 000, UsageRecord 1 500, SetBlock, SetCreditLimit, Merchant, UpsertService 400 each |
//! | E.164 parsing | arbitrary strings and number-like strings | 4 000 |
//! | BgMax parsing | arbitrary bytes, and Bankgirot's sample with lines dropped, repeated, swapped, replaced and cut | 1 500 + 1 500 |
//! | catalogue TOML | arbitrary strings, and the demo catalogue with values replaced | 800 + 800 |
//! | Swish callback JSON | arbitrary bytes, callbacks with arbitrary field values, amounts | 1 500 × 3 |
//! | small grammars | `grpc-timeout` values, free-text rules | 1 000 |
//!
//! Each target takes a few seconds in a debug build on a 2-core machine.
//!
//! A failure prints the smallest input proptest found and is saved under
//! `proptest-regressions/` so that it is replayed first next time.

mod common;

use std::sync::Arc;

use callauth::clock::ManualClock;
use callauth::domain::text;
use callauth::domain::{CodeHasher, MerchantId, E164};
use callauth::gateway::api::convert;
use callauth::gateway::catalog_file::{CatalogFile, DEMO};
use callauth::gateway::{Gateway, GatewayLimits};
use callauth::pb;
use callauth::settlement::{formats::bgmax, payments::swish};
use callauth::status::to_status;
use callauth::store::memory::MemoryStore;
use callauth::store::StorePolicy;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use prost::Message;
use prost_types::Timestamp;
use tonic::Code;

const NOW_MS: i64 = common::server::START_MS;

/// A runner for one target. CI runs a fixed corpus: the inputs come from a
/// seed derived from the target's name, so every run tries the same cases
/// and a failure reproduces. `CALLAUTH_FUZZ_SEED=<any text>` explores other
/// inputs (the seed is printed with a failure) and `CALLAUTH_FUZZ_SCALE=<n>`
/// runs n times the cases, e.g. for a long local run.
fn runner(target: &str, cases: u32) -> TestRunner {
    use proptest::test_runner::{RngAlgorithm, TestRng};
    use sha2::{Digest, Sha256};
    let extra = std::env::var("CALLAUTH_FUZZ_SEED").unwrap_or_default();
    let scale: u32 = std::env::var("CALLAUTH_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1);
    if !extra.is_empty() {
        eprintln!("fuzz target {target}: CALLAUTH_FUZZ_SEED={extra:?}");
    }
    let seed: [u8; 32] = Sha256::digest(format!("{target}/{extra}")).into();
    TestRunner::new_with_rng(
        Config {
            cases: cases.saturating_mul(scale),
            // Shrinking a failure may take a while; finding none is bounded by `cases`.
            max_shrink_iters: 4096,
            // The corpus is fixed by its seed: a failure reproduces without a file.
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed),
    )
}

// ---------------------------------------------------------------- strategies

/// Text as clients send it, and as they should not: printable, number-like,
/// identifier-like around the length limits, control characters, any Unicode.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,40}",
        "[0-9 +()./-]{0,24}",
        "[A-Za-z0-9._:@-]{120,135}",
        prop::collection::vec(
            prop_oneof![
                Just('\0'),
                Just('\n'),
                Just('\u{202e}'),
                Just('\u{2028}'),
                Just('å'),
                Just('a'),
                Just('7'),
                any::<char>(),
            ],
            0..300
        )
        .prop_map(|v| v.into_iter().collect()),
    ]
}

/// A field that is usually what the gateway expects and sometimes anything.
fn one_of(good: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(good).prop_map(str::to_string),
        1 => hostile_text(),
    ]
}

fn timestamp() -> impl Strategy<Value = Option<Timestamp>> {
    prop_oneof![
        Just(None),
        (any::<i64>(), any::<i32>())
            .prop_map(|(seconds, nanos)| Some(Timestamp { seconds, nanos })),
        (-2_000i64..2_000, 0i32..1_000_000_000).prop_map(|(d, nanos)| Some(Timestamp {
            seconds: NOW_MS / 1000 + d,
            nanos
        })),
    ]
}

const NUMBERS: &[&str] = &[
    "070-123 45 67",
    "+46701234567",
    "073-765 43 21",
    "08-555 123 45",
    "",
];
const SERVICES: &[&str] = &[
    "0900-100 10 10",
    "0944-20 20 20",
    "0939-30 30 30",
    "0900-500 50 50",
];
const IDS: &[&str] = &["c1", "c2", "call:2026-11-18:000123", ""];

fn authorize_request() -> impl Strategy<Value = pb::AuthorizeRequest> {
    let consent = (
        any::<bool>(),
        any::<bool>(),
        timestamp(),
        any::<bool>(),
        timestamp(),
        one_of(&["t-469001001010-1", "t-469442020202-1", ""]),
    )
        .prop_map(|(age, own, s1, terms, s2, terms_id)| pb::Consent {
            age_confirmed: age,
            own_number_confirmed: own,
            step1_at: s1,
            terms_accepted: terms,
            step2_at: s2,
            terms_id,
        });
    (
        one_of(IDS),
        one_of(NUMBERS),
        any::<bool>(),
        one_of(SERVICES),
        one_of(&["", "4000 0000 0000 0002", "1234"]),
        prop::option::of(consent),
        one_of(&["ivr-node-1", ""]),
        one_of(&["trunk-7", ""]),
    )
        .prop_map(
            |(call_id, a_number, withheld, service, code, consent, ivr_id, line_ref)| {
                pb::AuthorizeRequest {
                    call_id,
                    a_number,
                    number_withheld: withheld,
                    service_number: service,
                    prepaid_code: code,
                    consent,
                    ivr_id,
                    line_ref,
                }
            },
        )
}

fn usage_record() -> impl Strategy<Value = pb::UsageRecord> {
    (
        one_of(&["r1", "r2", ""]),
        one_of(IDS),
        one_of(SERVICES),
        timestamp(),
        prop_oneof![any::<i32>(), -10i32..20_000],
    )
        .prop_map(
            |(record_id, call_id, service, started_at, duration)| pb::UsageRecord {
                record_id,
                call_id,
                service_number: service,
                started_at,
                duration_seconds: duration,
            },
        )
}

fn set_block() -> impl Strategy<Value = pb::SetBlockRequest> {
    (
        one_of(NUMBERS),
        -1i32..5,
        hostile_text(),
        any::<bool>(),
        hostile_text(),
    )
        .prop_map(
            |(number, scope, target, blocked, reason)| pb::SetBlockRequest {
                number,
                scope,
                target,
                blocked,
                reason,
            },
        )
}

fn set_limit() -> impl Strategy<Value = pb::SetCreditLimitRequest> {
    use pb::set_credit_limit_request::Change;
    let change = prop_oneof![
        any::<i64>().prop_map(Change::HolderRequestedOre),
        (any::<i64>(), hostile_text(), hostile_text()).prop_map(|(limit, reference, by)| {
            Change::CreditDecision(pb::CreditDecision {
                limit_ore: limit,
                credit_check_reference: reference,
                decided_by: by,
            })
        }),
        any::<bool>().prop_map(Change::ResetToDefault),
    ];
    (one_of(NUMBERS), prop::option::of(change))
        .prop_map(|(number, change)| pb::SetCreditLimitRequest { number, change })
}

fn merchant() -> impl Strategy<Value = pb::Merchant> {
    (
        one_of(&["stjarnlinjen", "nykund", ""]),
        hostile_text(),
        one_of(&["556677-8899", ""]),
        any::<u32>(),
        any::<bool>(),
    )
        .prop_map(|(id, name, org, fee, active)| pb::Merchant {
            merchant_id: id,
            name,
            org_number: org,
            fee_basis_points: fee,
            active,
        })
}

fn upsert_service() -> impl Strategy<Value = pb::UpsertServiceRequest> {
    (
        one_of(SERVICES),
        one_of(&["stjarnlinjen", "radgivarna", ""]),
        hostile_text(),
        hostile_text(),
        any::<i64>(),
        any::<u32>(),
        any::<u32>(),
        any::<i64>(),
        any::<bool>(),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(
            |(number, merchant, name, category, price, min, step, fee, active, vat)| {
                pb::UpsertServiceRequest {
                    service_number: number,
                    merchant_id: merchant,
                    name,
                    category,
                    price_per_minute_ore: price,
                    minimum_minutes: min,
                    billing_step_seconds: step,
                    reminder_fee_ore: fee,
                    active,
                    vat_rate_percent: vat,
                }
            },
        )
}

/// `message`'s encoding with some bytes overwritten and perhaps cut short.
fn damaged<M: Message + std::fmt::Debug + 'static>(
    message: impl Strategy<Value = M>,
) -> impl Strategy<Value = Vec<u8>> {
    (
        message,
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        prop::option::of(any::<prop::sample::Index>()),
    )
        .prop_map(|(m, edits, cut)| {
            let mut bytes = m.encode_to_vec();
            if !bytes.is_empty() {
                for (at, byte) in edits {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
                if let Some(cut) = cut {
                    bytes.truncate(cut.index(bytes.len() + 1));
                }
            }
            bytes
        })
}

/// Arbitrary bytes, or a damaged encoding of a generated message (most of
/// which still decodes: the conversions see field values, not just noise).
fn request_bytes<M, S>(make: impl Fn() -> S) -> impl Strategy<Value = Vec<u8>>
where
    M: Message + std::fmt::Debug + 'static,
    S: Strategy<Value = M> + 'static,
{
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..200),
        1 => damaged(make()),
        2 => make().prop_map(|m| m.encode_to_vec()),
    ]
}

// ---------------------------------------------------------------- gateway requests

/// A gateway on the embedded store with the demo catalogue, and a runtime to drive it.
fn demo_gateway() -> (tokio::runtime::Runtime, Arc<Gateway<MemoryStore>>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let gateway = Arc::new(Gateway::new(
        MemoryStore::new(StorePolicy::default()),
        Arc::new(ManualClock::new(NOW_MS)),
        CodeHasher::new(&[9u8; 32]).unwrap(),
        GatewayLimits::default(),
    ));
    rt.block_on(async {
        CatalogFile::parse(DEMO)
            .unwrap()
            .load_into(&gateway)
            .await
            .unwrap();
    });
    (rt, gateway)
}

/// A refusal of a conversion is the client's fault, with a bounded message.
fn assert_client_error(status: &tonic::Status, what: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "{}: {:?}",
        what,
        status
    );
    prop_assert!(
        status.message().len() <= 1024,
        "{}: message of {} bytes",
        what,
        status.message().len()
    );
    Ok(())
}

/// A gateway error is never INTERNAL or UNKNOWN (the embedded store is always reachable).
fn assert_answered(
    r: Result<(), callauth::gateway::GatewayError>,
    what: &str,
) -> Result<(), TestCaseError> {
    if let Err(e) = r {
        let status = to_status(e);
        prop_assert!(
            matches!(
                status.code(),
                Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition
            ),
            "{}: {:?}",
            what,
            status
        );
    }
    Ok(())
}

const AUTHORIZE_CASES: u32 = 1_000;
const USAGE_CASES: u32 = 1_500;
/// Per admin message kind; upserts grow the catalogue, so each costs more.
const ADMIN_CASES: u32 = 400;

#[test]
fn authorize_requests_from_arbitrary_bytes_never_panic() {
    let (rt, gateway) = demo_gateway();
    runner("authorize", AUTHORIZE_CASES)
        .run(&request_bytes(authorize_request), |bytes| {
            let Ok(r) = pb::AuthorizeRequest::decode(bytes.as_slice()) else {
                return Ok(());
            };
            match convert::authorize_input(r, "fuzz-ivr", NOW_MS, gateway.limits()) {
                Err(status) => assert_client_error(&status, "authorize_input"),
                Ok(input) => {
                    let out = rt.block_on(gateway.authorize(input));
                    if let Ok(out) = &out {
                        let _ = convert::authorize_response(out);
                    }
                    assert_answered(out.map(|_| ()), "authorize")
                }
            }
        })
        .unwrap();
}

#[test]
fn usage_records_from_arbitrary_bytes_never_panic() {
    let (rt, gateway) = demo_gateway();
    let merchant = MerchantId::parse("stjarnlinjen").unwrap();
    runner("usage", USAGE_CASES)
        .run(&request_bytes(usage_record), |bytes| {
            let Ok(record) = pb::UsageRecord::decode(bytes.as_slice()) else {
                return Ok(());
            };
            let input = convert::usage_input(&record);
            // Refusals of a usage record are acknowledgements, never errors.
            let outcome = rt.block_on(gateway.report_usage(&merchant, &input));
            prop_assert!(outcome.is_ok(), "{:?}", outcome);
            let ack = convert::usage_ack(&record, &outcome.unwrap());
            prop_assert!(
                ack.detail.len() <= 1024,
                "detail of {} bytes",
                ack.detail.len()
            );
            Ok(())
        })
        .unwrap();
}

#[test]
fn admin_requests_from_arbitrary_bytes_never_panic() {
    let (rt, gateway) = demo_gateway();
    runner("set_block", ADMIN_CASES)
        .run(&request_bytes(set_block), |bytes| {
            let Ok(r) = pb::SetBlockRequest::decode(bytes.as_slice()) else {
                return Ok(());
            };
            let number = match convert::number("number", &r.number) {
                Ok(n) => n,
                Err(status) => return assert_client_error(&status, "number"),
            };
            match convert::block_change(&r, "fuzz-admin") {
                Err(status) => assert_client_error(&status, "block_change"),
                Ok(change) => assert_answered(
                    rt.block_on(gateway.set_block(&number, &change)).map(|_| ()),
                    "set_block",
                ),
            }
        })
        .unwrap();
    runner("set_limit", ADMIN_CASES)
        .run(&request_bytes(set_limit), |bytes| {
            let Ok(r) = pb::SetCreditLimitRequest::decode(bytes.as_slice()) else {
                return Ok(());
            };
            let number = match convert::number("number", &r.number) {
                Ok(n) => n,
                Err(status) => return assert_client_error(&status, "number"),
            };
            match convert::limit_change(r) {
                Err(status) => assert_client_error(&status, "limit_change"),
                Ok(change) => assert_answered(
                    rt.block_on(gateway.set_limit(&number, &change, "fuzz-admin"))
                        .map(|_| ()),
                    "set_limit",
                ),
            }
        })
        .unwrap();
    runner("merchant", ADMIN_CASES)
        .run(&request_bytes(merchant), |bytes| {
            let Ok(r) = pb::Merchant::decode(bytes.as_slice()) else {
                return Ok(());
            };
            match convert::merchant_in(r) {
                Err(status) => assert_client_error(&status, "merchant_in"),
                Ok(m) => {
                    let _ = convert::merchant_out(&m);
                    assert_answered(rt.block_on(gateway.upsert_merchant(&m)), "upsert_merchant")
                }
            }
        })
        .unwrap();
    runner("service", ADMIN_CASES)
        .run(&request_bytes(upsert_service), |bytes| {
            let Ok(r) = pb::UpsertServiceRequest::decode(bytes.as_slice()) else {
                return Ok(());
            };
            match convert::service_spec(r) {
                Err(status) => assert_client_error(&status, "service_spec"),
                Ok(spec) => assert_answered(
                    rt.block_on(gateway.upsert_service(&spec)).map(|change| {
                        let _ = convert::service_info(&change.service, "fuzz");
                    }),
                    "upsert_service",
                ),
            }
        })
        .unwrap();
}

// ---------------------------------------------------------------- E.164

#[test]
fn e164_parsing_never_panics_and_round_trips() {
    let input = prop_oneof![
        any::<String>(),
        "[0-9 +()./-]{0,30}",
        "(\\+46|0046|0)[ -]?[0-9]{1,3}[ -]?[0-9 -]{0,12}",
        "\\+[0-9]{0,20}",
    ];
    runner("e164", 4_000)
        .run(&input, |s| {
            if let Ok(n) = E164::parse(&s) {
                prop_assert!(n.as_str().starts_with('+'));
                prop_assert!(n.digits().bytes().all(|b| b.is_ascii_digit()));
                prop_assert!(n.as_str().len() <= 16, "{}", n.as_str());
                prop_assert_eq!(&E164::parse(n.as_str()).unwrap(), &n);
                let _ = n.kind();
                let _ = n.masked().to_string();
                let national = n.national_display();
                // What we display, we read back as the same number.
                let again = E164::parse(&national).ok();
                prop_assert_eq!(again.as_ref(), Some(&n), "{}", national);
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------- BgMax

const BGMAX_SAMPLE: &[u8] =
    include_bytes!("fixtures/bgmax/bankgirot-sample-ocr-check-length.bgmax");

/// One change to a BgMax file, line by line.
#[derive(Clone, Debug)]
enum LineEdit {
    Drop(prop::sample::Index),
    Repeat(prop::sample::Index),
    Swap(prop::sample::Index, prop::sample::Index),
    /// A line replaced by a record type and arbitrary (mostly digit) content.
    Replace(prop::sample::Index, String),
    /// A line cut at some length.
    Cut(prop::sample::Index, usize),
}

fn line_edit() -> impl Strategy<Value = LineEdit> {
    let index = any::<prop::sample::Index>;
    prop_oneof![
        index().prop_map(LineEdit::Drop),
        index().prop_map(LineEdit::Repeat),
        (index(), index()).prop_map(|(a, b)| LineEdit::Swap(a, b)),
        (
            index(),
            "(01|05|15|20|21|22|23|25|26|27|28|29|70|99)[0-9 A-Z]{0,90}"
        )
            .prop_map(|(i, s)| LineEdit::Replace(i, s)),
        (index(), 0usize..90).prop_map(|(i, n)| LineEdit::Cut(i, n)),
    ]
}

fn edited_sample(edits: &[LineEdit]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = BGMAX_SAMPLE
        .split(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    for edit in edits {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match edit {
            LineEdit::Drop(i) => {
                lines.remove(i.index(n));
            }
            LineEdit::Repeat(i) => {
                let line = lines[i.index(n)].clone();
                lines.insert(i.index(n), line);
            }
            LineEdit::Swap(a, b) => lines.swap(a.index(n), b.index(n)),
            LineEdit::Replace(i, s) => lines[i.index(n)] = s.as_bytes().to_vec(),
            LineEdit::Cut(i, len) => {
                let line = &mut lines[i.index(n)];
                line.truncate(*len);
            }
        }
    }
    lines.join(&b'\n')
}

fn check_bgmax(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(file) = bgmax::parse(bytes) {
        let _ = file.file_key();
        for section in &file.sections {
            prop_assert_eq!(section.payment_keys().len(), section.payments.len());
        }
        for (_, payment) in file.payments() {
            let _ = payment.references();
            let _ = payment.is_deduction();
        }
        let _ = common::bgmax_writer::write(&file);
    }
    Ok(())
}

#[test]
fn bgmax_parsing_never_panics() {
    runner("bgmax_bytes", 1_500)
        .run(&prop::collection::vec(any::<u8>(), 0..2_000), |bytes| {
            check_bgmax(&bytes)
        })
        .unwrap();
    runner("bgmax_sample", 1_500)
        .run(&prop::collection::vec(line_edit(), 1..6), |edits| {
            check_bgmax(&edited_sample(&edits))
        })
        .unwrap();
}

// ---------------------------------------------------------------- catalogue TOML

/// A TOML value: a string (any text, escaped as TOML), a number of any size
/// or a decimal with many digits, a boolean.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        hostile_text().prop_map(|s| toml::Value::String(s).to_string()),
        "\"-?[0-9]{0,32}(\\.[0-9]{0,32})?\"",
        "\"[1-9][0-9]{20,40}\"",
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("\"\"".to_string()),
        Just("[]".to_string()),
    ]
}

/// The demo catalogue with the values of some `key = value` lines replaced,
/// half of the time a line of an amount, a percentage or a count.
fn edited_demo() -> impl Strategy<Value = String> {
    let lines: Vec<String> = DEMO.lines().map(str::to_string).collect();
    let numeric: Vec<usize> = (0..lines.len())
        .filter(|i| {
            [
                "fee_percent",
                "price_per_minute",
                "reminder_fee",
                "minimum_minutes",
                "billing_step_seconds",
            ]
            .iter()
            .any(|k| lines[*i].starts_with(k))
        })
        .collect();
    let n = lines.len();
    let line = prop_oneof![0..n, prop::sample::select(numeric)];
    prop::collection::vec((line, toml_value()), 1..5).prop_map(move |edits| {
        let mut lines = lines.clone();
        for (i, value) in edits {
            if let Some((key, _)) = lines[i].split_once(" = ") {
                lines[i] = format!("{key} = {value}");
            }
        }
        lines.join("\n")
    })
}

fn check_catalogue(text: &str) -> Result<(), TestCaseError> {
    let Ok(file) = CatalogFile::parse(text) else {
        return Ok(());
    };
    let _ = file.merchants();
    let _ = file.services();
    let _ = file.directory();
    let _ = callauth::auth::TokenRegistry::from_clients(&file.clients);
    // Whatever validated is loaded through the gateway's own checks.
    if file.merchants().is_ok() && file.services().is_ok() && file.directory().is_ok() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let gateway = Gateway::new(
            MemoryStore::new(StorePolicy::default()),
            Arc::new(ManualClock::new(NOW_MS)),
            CodeHasher::new(&[9u8; 32]).unwrap(),
            GatewayLimits::default(),
        );
        let _ = rt.block_on(file.load_into(&gateway));
    }
    Ok(())
}

#[test]
fn catalogue_toml_never_panics() {
    runner("toml_text", 800)
        .run(&any::<String>(), |text| check_catalogue(&text))
        .unwrap();
    runner("toml_demo", 800)
        .run(&edited_demo(), |text| check_catalogue(&text))
        .unwrap();
}

// ---------------------------------------------------------------- Swish

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{json, Value};
    prop_oneof![
        hostile_text().prop_map(Value::String),
        "-?[0-9]{0,32}(\\.[0-9]{0,20})?".prop_map(Value::String),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
        Just(json!({"nested": [1, "two"]})),
    ]
}

fn swish_callback() -> impl Strategy<Value = Vec<u8>> {
    use serde_json::Value;
    const FIELDS: &[&str] = &[
        "id",
        "payeePaymentReference",
        "paymentReference",
        "payerAlias",
        "amount",
        "currency",
        "message",
        "status",
        "dateCreated",
        "datePaid",
        "errorCode",
        "errorMessage",
    ];
    let typical = (
        prop::sample::select(&["PAID", "DECLINED", "ERROR", "CANCELLED", "CREATED"][..]),
        prop_oneof![
            "[0-9]{1,6}(\\.[0-9]{1,3})?",
            "[1-9][0-9]{24,30}(\\.[0-9]{1,2})?"
        ],
        prop::sample::select(
            &[
                "2026-12-01T10:15:00.123+0100",
                "2026-12-01T10:15:00Z",
                "2026-03-29T02:30:00",
                "2026-13-45T99:99:99",
                "",
            ][..],
        ),
    );
    (
        typical,
        prop::collection::vec((prop::sample::select(FIELDS), json_value()), 0..6),
    )
        .prop_map(move |((status, amount, paid), overrides)| {
            let mut object = serde_json::Map::new();
            object.insert(
                "id".into(),
                Value::String("AB23D7406ECE4542A80152D909EF9F6B".into()),
            );
            object.insert(
                "payeePaymentReference".into(),
                Value::String("1000000018".into()),
            );
            object.insert("amount".into(), Value::String(amount));
            object.insert("currency".into(), Value::String("SEK".into()));
            object.insert("status".into(), Value::String(status.into()));
            object.insert("datePaid".into(), Value::String(paid.into()));
            for (field, value) in overrides {
                object.insert(field.to_string(), value);
            }
            serde_json::to_vec(&Value::Object(object)).unwrap()
        })
}

fn check_swish(body: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(cb) = swish::SwishCallback::from_json(body) {
        let _ = cb.status();
        if let Ok(amount) = cb.amount() {
            prop_assert!(amount.ore() > 0);
        }
        let _ = serde_json::to_value(&cb);
    }
    Ok(())
}

#[test]
fn swish_callbacks_never_panic() {
    runner("swish_bytes", 1_500)
        .run(&prop::collection::vec(any::<u8>(), 0..300), |b| {
            check_swish(&b)
        })
        .unwrap();
    runner("swish_json", 1_500)
        .run(&swish_callback(), |b| check_swish(&b))
        .unwrap();
    runner("swish_sek", 1_500)
        .run(
            &prop_oneof![any::<String>(), "[0-9.]{0,40}", "[1-9][0-9]{20,32}"],
            |s| {
                if let Ok(m) = swish::parse_sek(&s) {
                    prop_assert!(m.ore() > 0);
                }
                Ok(())
            },
        )
        .unwrap();
}

// ---------------------------------------------------------------- small grammars

#[test]
fn small_grammars_never_panic() {
    use tonic::codegen::http::{HeaderMap, HeaderValue};
    runner("grammars", 1_000)
        .run(
            &("[0-9]{0,12}[HMSmunx]?", hostile_text()),
            |(timeout, text_in)| {
                let mut headers = HeaderMap::new();
                if let Ok(v) = HeaderValue::from_str(&timeout) {
                    headers.insert("grpc-timeout", v);
                    let _ = callauth::gateway::api::edge::client_timeout(&headers);
                }
                // Free text is accepted exactly when it is short and has no refused character.
                let ok = text::checked_text("field", &text_in, 128).is_ok();
                let expected =
                    text_in.chars().count() <= 128 && !text_in.chars().any(text::is_refused);
                prop_assert_eq!(ok, expected);
                let _ = text::checked_email("email", &text_in);
                let _ = text::checked_org_number("org_number", &text_in);
                let _ = text::checked_digits("ocr", &text_in, 2, 25, "must be 2–25 digits");
                Ok(())
            },
        )
        .unwrap();
}
