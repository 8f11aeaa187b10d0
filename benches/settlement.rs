//! Benchmarks of the settlement worker's file and reference handling (issue 6;
//! numbers in docs/performance.md). `cargo bench --bench settlement`.
//!
//! - BgMax: Bankgirot's own sample file, and a generated day of 10 000 OCR
//!   payments (the size a busy bankgiro number receives), parsed and checked.
//! - OCR: making the reference printed on an invoice, and validating one
//!   read from a payment.
//! - Ingest (issue 13.3): a batch of 500 events (250 posted calls, each with
//!   its consent) turned into the binary `COPY` rows the worker sends — the
//!   CDRs, the ledger entries, the consents.

#[path = "../tests/common/bgmax_writer.rs"]
#[allow(dead_code)]
mod bgmax_writer;
#[path = "../examples/support/events.rs"]
mod events;

use bgmax_writer::FileBuilder;
use callauth::domain::event::{ConsentRecorded, EventBody, UsagePosted};
use callauth::domain::{Event, Money};
use callauth::settlement::formats::bgmax;
use callauth::settlement::formats::ocr::{self, OcrLevel};
use callauth::settlement::ingest;
use callauth::settlement::ledger;
use chrono::NaiveDate;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

const SAMPLE: &[u8] =
    include_bytes!("../tests/fixtures/bgmax/bankgirot-sample-ocr-check-length.bgmax");

fn day_of_payments(n: u64) -> Vec<u8> {
    let mut b = FileBuilder::new("20261123061500123456", false);
    b.section(
        "9912346",
        NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
        "00001",
    );
    for i in 0..n {
        let reference = ocr::ocr_for(1_000_000 + i);
        b.ocr_payment(reference.as_str(), Money::ore_unchecked(12_345 + i as i64));
    }
    b.build().expect("a well-formed file")
}

fn bgmax_parsing(c: &mut Criterion) {
    let mut g = c.benchmark_group("bgmax");
    g.throughput(Throughput::Bytes(SAMPLE.len() as u64));
    g.bench_function("parse_bankgirot_sample", |b| {
        b.iter(|| bgmax::parse(black_box(SAMPLE)).unwrap())
    });
    let day = day_of_payments(10_000);
    assert_eq!(bgmax::parse(&day).unwrap().payments().count(), 10_000);
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("parse_10000_ocr_payments", |b| {
        b.iter(|| bgmax::parse(black_box(&day)).unwrap())
    });
    g.finish();
}

fn ocr_references(c: &mut Criterion) {
    let mut g = c.benchmark_group("ocr");
    g.bench_function("generate", |b| {
        let mut n = 4_711_000_000u64;
        b.iter(|| {
            n += 1;
            ocr::ocr_for(black_box(n))
        })
    });
    let reference = ocr::ocr_for(4_711_000_123).as_str().to_string();
    g.bench_function("validate_check_and_length", |b| {
        b.iter(|| ocr::parse(black_box(&reference), OcrLevel::CheckDigitAndLength).unwrap())
    });
    g.finish();
}

/// 250 posted calls and their consents, as `examples/ingest_rate.rs` makes
/// them (the same fields a gateway fills).
fn calls(n: usize) -> Vec<(Event, Event)> {
    const T0: i64 = 1_795_000_000_000;
    (0..n)
        .map(|i| {
            let number = format!("+4670{:07}", i % 10_000);
            let call_id = format!("bench-{i}");
            events::call_events(&call_id, &number, 0, T0 + i as i64, 30 + (i as u32 % 600))
        })
        .collect()
}

fn ingest_encoding(c: &mut Criterion) {
    let calls = calls(250);
    let usages: Vec<(&Event, &UsagePosted)> = calls
        .iter()
        .map(|(_, u)| match &u.body {
            EventBody::UsagePosted(p) => (u, p),
            _ => unreachable!(),
        })
        .collect();
    let consents: Vec<&ConsentRecorded> = calls
        .iter()
        .map(|(c, _)| match &c.body {
            EventBody::ConsentRecorded(r) => r,
            _ => unreachable!(),
        })
        .collect();
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(500));
    g.bench_function("copy_rows_500_events", |b| {
        b.iter(|| {
            let usage = ingest::usage_rows(black_box(&usages)).finish();
            let txns = ingest::usage_txns(black_box(&usages));
            let entries = ledger::entry_rows(&txns).unwrap().finish();
            let consents = ingest::consent_rows(black_box(&consents)).finish();
            (usage.len(), entries.len(), consents.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bgmax_parsing, ocr_references, ingest_encoding);
criterion_main!(benches);
