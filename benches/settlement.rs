//! Benchmarks of the settlement worker's file and reference handling (issue 6;
//! numbers in docs/performance.md). `cargo bench --bench settlement`.
//!
//! - BgMax: Bankgirot's own sample file, and a generated day of 10 000 OCR
//!   payments (the size a busy bankgiro number receives), parsed and checked.
//! - OCR: making the reference printed on an invoice, and validating one
//!   read from a payment.

#[path = "../tests/common/bgmax_writer.rs"]
#[allow(dead_code)]
mod bgmax_writer;

use bgmax_writer::FileBuilder;
use callauth::domain::Money;
use callauth::settlement::formats::bgmax;
use callauth::settlement::formats::ocr::{self, OcrLevel};
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

criterion_group!(benches, bgmax_parsing, ocr_references);
criterion_main!(benches);
