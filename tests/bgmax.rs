//! The BgMax writer of the tests (`tests/common/bgmax_writer.rs`) against the
//! product's parser: what the builder writes parses back to the same file,
//! the Bankgirot sample round-trips, and the writer refuses content the
//! parser would not give back unchanged. (These were unit tests of
//! `settlement::bgmax` until the writer left the product, issue 12.)

#[path = "common/bgmax_writer.rs"]
#[allow(dead_code)]
mod bgmax_writer;

use bgmax_writer::{write, FileBuilder};
use callauth::domain::money::Money;
use callauth::settlement::formats::bgmax::*;
use chrono::NaiveDate;
use proptest::prelude::*;

const FIXTURE: &[u8] = include_bytes!("fixtures/bgmax/bankgirot-sample-ocr-check-length.bgmax");

fn fixture() -> BgMaxFile {
    parse(FIXTURE).expect("the Bankgirot sample parses")
}

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn sek(kronor: i64) -> Money {
    Money::sek(kronor)
}

#[test]
fn builder_round_trip() {
    let date = ymd(2026, 2, 2);
    let mut builder = FileBuilder::new("20260202061500123456", true);
    builder
        .section("9912346", date, "00001")
        .ocr_payment("1234574", Money::ore_unchecked(29_990))
        .payer_name("Åsa Öberg")
        .payer_address("Ängsvägen 7", "123 45", "Västerås")
        .payer_bankgiro("3783511")
        .free_text_payment("1234574, 1636976 faktura", sek(150))
        .payer_name("Björn Ärlig")
        .info("Betalar två fakturor")
        .deduction("1202951008", sek(50))
        .section("9912346", date, "00002")
        .ocr_payment("1018966492531", sek(1500))
        .extra_reference("0072019122420063")
        .payment(Payment {
            payer_bankgiro: Some("1234567".to_string()),
            reference_raw: "18108401345678778".to_string(),
            reference_code: 2,
            amount: sek(75),
            channel: 3,
            bgc_serial: "000000999999".to_string(),
            image: true,
            org_number: Some("0501011234".to_string()),
            city: Some("Göteborg".to_string()),
            country: Some("Sverige".to_string()),
            country_code: Some("SE".to_string()),
            payer_extra_name: Some("c/o Karlsson".to_string()),
            ..Payment::default()
        });
    let expected = builder.file().unwrap();
    assert_eq!(
        expected.sections[0].deposit_amount,
        Money::ore_unchecked(29_990 + 15_000 - 5_000)
    );
    assert_eq!(expected.sections[1].deposit_amount, sek(1575));

    let bytes = builder.build().unwrap();
    // ISO-8859-1, 80-column records, LF.
    assert!(bytes.windows(9).any(|w| w == b"\xc5sa \xd6berg"));
    assert!(!bytes.windows(2).any(|w| w == "Å".as_bytes()));
    let text: String = bytes.iter().map(|&b| char::from(b)).collect();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.iter().all(|l| l.chars().count() == RECORD_LEN));
    assert_eq!(lines.first().map(|l| &l[..2]), Some("01"));
    assert_eq!(
        lines.last().map(|l| l.trim_end()),
        Some("7000000004000000010000000100000002")
    );

    let parsed = parse(&bytes).unwrap();
    assert_eq!(parsed, expected);
    assert!(parsed.test);
    let p = &parsed.sections[0].payments;
    assert_eq!(p[0].references(), vec!["1234574"]);
    assert_eq!(p[0].city.as_deref(), Some("Västerås"));
    assert_eq!(p[1].references(), vec!["1234574", "1636976", "faktura"]);
    assert_eq!(p[2].amount, sek(-50));
    assert_eq!(
        parsed.sections[1].payments[1].org_number.as_deref(),
        Some("0501011234")
    );
}

#[test]
fn writer_round_trips_the_fixture() {
    let file = fixture();
    let bytes = write(&file).unwrap();
    assert_eq!(parse(&bytes).unwrap(), file);
}

#[test]
fn writer_refuses_invalid_content() {
    let date = ymd(2026, 2, 2);
    let base = || {
        let mut b = FileBuilder::new("20260202061500123456", false);
        b.section("9912346", date, "00001");
        b
    };
    // Not Latin-1.
    let mut b = base();
    b.ocr_payment("1234574", sek(1)).payer_name("Zoë → Ž");
    assert!(b.build().unwrap_err().to_string().contains("ISO-8859-1"));
    // Too long for its field (25 columns).
    let mut b = base();
    b.free_text_payment(&"1".repeat(26), sek(1));
    assert!(b.build().is_err());
    // Misuse.
    let mut b = FileBuilder::new("20260202061500123456", false);
    b.ocr_payment("1234574", sek(1));
    assert!(b
        .build()
        .unwrap_err()
        .to_string()
        .contains("before any section"));
    let mut b = base();
    b.payer_name("Nobody");
    assert!(b
        .build()
        .unwrap_err()
        .to_string()
        .contains("before any payment"));
    // A deposit amount that is not the sum.
    let mut file = fixture();
    file.sections[0].deposit_amount = sek(1901);
    assert!(write(&file)
        .unwrap_err()
        .to_string()
        .contains("declares 1901.00 SEK"));
    // A bad timestamp.
    assert!(FileBuilder::new("2026", false).build().is_err());
}

#[test]
fn empty_file_with_no_deposits() {
    let bytes = FileBuilder::new("20260202061500123456", false)
        .build()
        .unwrap();
    let file = parse(&bytes).unwrap();
    assert!(file.sections.is_empty());
    assert_eq!(file.file_key(), "bgmax:20260202061500123456:P:");
}

proptest! {
    #[test]
    fn builder_round_trips(
        amounts in proptest::collection::vec(0i64..100_000_000, 1..20),
        payload in 1u64..10_000_000_000,
    ) {
        let mut builder = FileBuilder::new("20260202061500123456", false);
        builder.section("9912346", NaiveDate::from_ymd_opt(2026, 2, 2).unwrap(), "00001");
        for (i, ore) in amounts.iter().enumerate() {
            let ocr = callauth::settlement::formats::ocr::ocr_for(payload + i as u64);
            builder.ocr_payment(ocr.as_str(), Money::ore_unchecked(*ore));
        }
        let bytes = builder.build().unwrap();
        prop_assert_eq!(parse(&bytes).unwrap(), builder.file().unwrap());
    }
}
