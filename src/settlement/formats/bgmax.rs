//! Bankgirot's BgMax payment file ("Bankgiro Inbetalningar"): a parser that
//! refuses any file whose totals do not add up (SPEC R15; layout in
//! reference/sweden.md §3.3). The product only reads BgMax; the writer the
//! tests, benches and demos use is `tests/common/bgmax_writer.rs` (issue 12).
//!
//! A file is `TK01`, then one section per deposit (`TK05`, payments, `TK15`),
//! then `TK70`. Payments are `TK20` (positive) and `TK21` (deductions, held
//! here as negative amounts); `TK22`/`TK23` extra references and `TK25`–`TK29`
//! payer details belong to the payment before them. Unknown record types are
//! skipped and counted, as Bankgirot requires. The whole file is checked
//! before anything is returned (every TK15 sum and count, the TK70 counts), so
//! the caller either gets every payment of the file or none: a half-imported
//! bank file is worse than a refused one.
//!
//! Leniency, because real files are not always tidy (the official sample has
//! both problems): records may be shorter than 80 columns (missing columns
//! read as blanks), lines end in LF or CRLF, and TAB characters are accepted.
//! `payment_fields` explains how a payment record with TABs is read. A file
//! that someone re-saved as UTF-8 is decoded as UTF-8 (ISO-8859-1 Swedish text
//! is practically never valid UTF-8), so names keep their å, ä and ö; a
//! byte-order mark that the editor put in front (EF BB BF) is dropped.
//!
//! Idempotency: [`BgMaxFile::file_key`] identifies a delivery and
//! [`Section::payment_keys`] each payment, by (payee bankgiro, payment date,
//! deposit serial, BGC serial). Bankgirot's own sample reuses a BGC serial
//! within one deposit, so a repeated serial gets an occurrence suffix rather
//! than silently colliding with the first payment.

use std::collections::HashMap;
use std::fmt;

use chrono::{NaiveDate, NaiveDateTime};

use crate::domain::money::Money;

/// The record length of the format.
pub const RECORD_LEN: usize = 80;
/// The tab stops a TAB is expanded to (every 8 columns, as an editor that
/// replaced runs of spaces by TABs assumed).
const TAB_STOP: usize = 8;
/// The only currency handled: Bankgirot stopped handling euro in 2016, and
/// [`Money`] is SEK.
const CURRENCY: &str = "SEK";

/// A parsed BgMax file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgMaxFile {
    /// Layout version from TK01 ("01").
    pub version: String,
    /// TK01 write time, YYYYMMDDHHMMSS + 6 digits of microseconds.
    pub timestamp: String,
    /// TK01 test mark "T" (a test file: never book its payments).
    pub test: bool,
    pub sections: Vec<Section>,
    /// Records of unknown types that were skipped.
    pub ignored_records: usize,
}

/// One deposit: TK05 … TK15.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// The receiving bankgiro number, digits without the zero padding ("9912346").
    pub payee_bankgiro: String,
    /// The payee's plusgiro number, if the TK05 has one.
    pub payee_plusgiro: Option<String>,
    pub currency: String,
    /// The bank account the deposit went to (TK15), digits without padding.
    pub payee_account: String,
    /// The payment date of every payment in the section (TK15).
    pub payment_date: NaiveDate,
    /// The deposit serial number, as written ("00074").
    pub deposit_serial: String,
    /// Σ TK20 − Σ TK21, checked.
    pub deposit_amount: Money,
    /// TK15 deposit type ("K", "D", "S"), if given.
    pub deposit_type: Option<char>,
    pub payments: Vec<Payment>,
}

/// A TK20 payment or a TK21 deduction, with the records that follow it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Payment {
    /// The payer's bankgiro number without padding; `None` when unknown (all zeros).
    pub payer_bankgiro: Option<String>,
    /// The reference field, trimmed.
    pub reference_raw: String,
    /// 0/1 blank, 2 correct OCR, 3 one or more free references, 4 one
    /// reference, 5 incorrect reference (sweden.md §3.3).
    pub reference_code: u8,
    /// Positive for TK20, negative for TK21.
    pub amount: Money,
    /// 1 bank, 2 LB, 3 paper form, 4 Autogiro.
    pub channel: u8,
    /// Bankgirot's serial number of the payment (12 digits).
    pub bgc_serial: String,
    /// Bankgirot holds an image of the paper form.
    pub image: bool,
    /// `Some` exactly for a TK21 deduction.
    pub deduction_code: Option<u8>,
    pub extra_references: Vec<ExtraReference>,
    /// TK25 information lines.
    pub info: Vec<String>,
    pub payer_name: Option<String>,
    /// TK26 second name field.
    pub payer_extra_name: Option<String>,
    pub address: Option<String>,
    pub postcode: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub country_code: Option<String>,
    /// TK29: organisation number (10 digits) or personnummer (12 digits).
    pub org_number: Option<String>,
}

/// A TK22 (positive) or TK23 (negative) extra reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraReference {
    /// The reference field, trimmed.
    pub reference: String,
    pub reference_code: u8,
    /// Usually zero; negative for TK23.
    pub amount: Money,
    /// Came from a TK23.
    pub negative: bool,
}

/// Why a file was refused. Line numbers are 1-based physical lines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BgMaxError {
    #[error("the file is empty")]
    Empty,
    #[error("line {line}: {message}")]
    Structure { line: usize, message: String },
    #[error("line {line}: TK{record} {field} '{value}': {reason}")]
    Field {
        line: usize,
        record: String,
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("line {line}: section {section} (deposit {deposit_serial}) declares {declared}, its payments sum to {computed}")]
    SectionAmount {
        line: usize,
        section: usize,
        deposit_serial: String,
        declared: Money,
        computed: Money,
    },
    #[error("line {line}: section {section} (deposit {deposit_serial}) declares {declared} payments, it has {found}")]
    SectionCount {
        line: usize,
        section: usize,
        deposit_serial: String,
        declared: u64,
        found: u64,
    },
    #[error("line {line}: TK70 declares {declared} {records} records, the file has {found}")]
    TrailerCount {
        line: usize,
        records: &'static str,
        declared: u64,
        found: u64,
    },
    #[error("the file ends without a TK70 end record (truncated?)")]
    MissingTrailer,
}

impl BgMaxError {
    /// The line the error was found on, if it is about one line.
    pub fn line(&self) -> Option<usize> {
        match self {
            BgMaxError::Structure { line, .. }
            | BgMaxError::Field { line, .. }
            | BgMaxError::SectionAmount { line, .. }
            | BgMaxError::SectionCount { line, .. }
            | BgMaxError::TrailerCount { line, .. } => Some(*line),
            BgMaxError::Empty | BgMaxError::MissingTrailer => None,
        }
    }
}

impl BgMaxFile {
    /// The delivery's identity: `bgmax:<timestamp>:<P|T>:<payee bankgiros>`.
    /// A first guard against importing the same file twice; the payment keys
    /// are the real idempotency keys.
    pub fn file_key(&self) -> String {
        let mut payees: Vec<&str> = Vec::new();
        for section in &self.sections {
            if !payees.contains(&section.payee_bankgiro.as_str()) {
                payees.push(&section.payee_bankgiro);
            }
        }
        format!(
            "bgmax:{}:{}:{}",
            self.timestamp,
            if self.test { 'T' } else { 'P' },
            payees.join(",")
        )
    }

    /// Every payment with its section.
    pub fn payments(&self) -> impl Iterator<Item = (&Section, &Payment)> {
        self.sections
            .iter()
            .flat_map(|s| s.payments.iter().map(move |p| (s, p)))
    }
}

impl Section {
    /// Idempotency keys of the payments, in order:
    /// `bgmax:<payee bankgiro>:<YYYYMMDD>:<deposit serial>:<BGC serial>`, with
    /// "#2", "#3"… appended to the second and later payments of the deposit
    /// that carry the same BGC serial. A re-delivered deposit has the same
    /// payments in the same order, so it gets the same keys.
    pub fn payment_keys(&self) -> Vec<String> {
        let mut keys = Vec::with_capacity(self.payments.len());
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for payment in &self.payments {
            let occurrence = seen.entry(payment.bgc_serial.as_str()).or_insert(0);
            *occurrence += 1;
            let occurrence = *occurrence;
            let mut key = format!(
                "bgmax:{}:{}:{}:{}",
                self.payee_bankgiro,
                self.payment_date.format("%Y%m%d"),
                self.deposit_serial,
                payment.bgc_serial
            );
            if occurrence > 1 {
                key.push_str(&format!("#{occurrence}"));
            }
            keys.push(key);
        }
        keys
    }

    /// The idempotency key of the payment at `index` (see [`Section::payment_keys`]).
    pub fn payment_key(&self, index: usize) -> Option<String> {
        self.payment_keys().into_iter().nth(index)
    }
}

impl Payment {
    /// True for a TK21 deduction.
    pub fn is_deduction(&self) -> bool {
        self.deduction_code.is_some()
    }

    /// The references to match against our OCR numbers, without duplicates,
    /// in file order: for reference code 2 and 4 the reference itself, for the
    /// other codes the free text split on blanks and commas, then the extra
    /// references (split the same way by their own codes).
    pub fn references(&self) -> Vec<String> {
        let mut out = Vec::new();
        push_references(&mut out, self.reference_code, &self.reference_raw);
        for extra in &self.extra_references {
            push_references(&mut out, extra.reference_code, &extra.reference);
        }
        out
    }
}

fn push_references(out: &mut Vec<String>, code: u8, text: &str) {
    let mut push = |part: &str| {
        if !part.is_empty() && !out.iter().any(|r| r == part) {
            out.push(part.to_string());
        }
    };
    match code {
        2 | 4 => push(text.trim()),
        _ => text
            .split(|c: char| c.is_whitespace() || c == ',')
            .for_each(push),
    }
}

// ---------------------------------------------------------------------------
// Parser

/// Parses and checks a whole BgMax file (ISO-8859-1 bytes).
pub fn parse(bytes: &[u8]) -> Result<BgMaxFile, BgMaxError> {
    let text = decode(bytes);
    let mut parser = Parser::default();
    for (index, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        // Blank lines and a DOS end-of-file mark carry no record.
        if raw.chars().all(|c| c.is_whitespace() || c.is_control()) {
            continue;
        }
        let record = Record::new(raw, index + 1)?;
        parser.record(&record)?;
    }
    parser.finish()
}

/// ISO-8859-1, where every byte is the code point of the same value, unless
/// the bytes are valid UTF-8 with non-ASCII characters: then the file was
/// re-encoded on its way here (Latin-1 å, ä, ö are followed by ASCII letters,
/// which is never valid UTF-8). A UTF-8 byte-order mark is dropped first (in
/// Latin-1 it would read "ï»¿", which no BgMax file begins with).
fn decode(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) if !bytes.is_ascii() => text.to_string(),
        _ => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// One physical line, decoded, TABs expanded, other control characters blanked.
struct Record {
    line: usize,
    chars: Vec<char>,
    had_tab: bool,
}

impl Record {
    fn new(raw: &str, line: usize) -> Result<Record, BgMaxError> {
        let mut chars = Vec::with_capacity(RECORD_LEN);
        let mut had_tab = false;
        for c in raw.chars() {
            if c == '\t' {
                had_tab = true;
                let next_stop = (chars.len() / TAB_STOP + 1) * TAB_STOP;
                chars.resize(next_stop, ' ');
            } else if c.is_control() {
                chars.push(' ');
            } else {
                chars.push(c);
            }
        }
        let record = Record {
            line,
            chars,
            had_tab,
        };
        // A TAB-expanded line may legitimately overshoot; payment_fields reads it from its end.
        if !had_tab && record.content_len() > RECORD_LEN {
            return Err(record.structure(format!(
                "record is {} columns long, at most {RECORD_LEN} are allowed",
                record.content_len()
            )));
        }
        if record.chars.len() < 2 || !record.chars[..2].iter().all(char::is_ascii_digit) {
            return Err(record.structure(format!(
                "'{}' does not start with a two-digit record type",
                record.field(1, 10).trim()
            )));
        }
        Ok(record)
    }

    fn tk(&self) -> String {
        self.chars[..2].iter().collect()
    }

    /// Columns `from..=to` (1-based); missing columns are left out.
    fn field(&self, from: usize, to: usize) -> String {
        let start = (from - 1).min(self.chars.len());
        let end = to.min(self.chars.len());
        self.chars[start..end.max(start)].iter().collect()
    }

    /// The trimmed text of columns `from..=to`, `None` if blank.
    fn text(&self, from: usize, to: usize) -> Option<String> {
        let value = self.field(from, to);
        let value = value.trim();
        (!value.is_empty()).then(|| value.to_string())
    }

    /// The length without trailing blanks.
    fn content_len(&self) -> usize {
        self.chars.len() - self.chars.iter().rev().take_while(|c| **c == ' ').count()
    }

    fn structure(&self, message: String) -> BgMaxError {
        BgMaxError::Structure {
            line: self.line,
            message,
        }
    }

    fn field_error(&self, field: &'static str, value: String, reason: &'static str) -> BgMaxError {
        BgMaxError::Field {
            line: self.line,
            record: self.tk(),
            field,
            value,
            reason,
        }
    }

    /// Columns `from..=to` as a number: exactly that many ASCII digits, or
    /// (for right-aligned blank-filled fields) digits after leading blanks.
    fn number(&self, from: usize, to: usize, field: &'static str) -> Result<u64, BgMaxError> {
        let raw = self.field(from, to);
        let digits = raw.trim_start();
        if raw.chars().count() != to + 1 - from
            || digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(self.field_error(field, raw, "not a number"));
        }
        digits
            .parse()
            .map_err(|_| self.field_error(field, raw.clone(), "number too large"))
    }

    /// An amount in öre (18 digits).
    fn amount(&self, from: usize, field: &'static str) -> Result<Money, BgMaxError> {
        let ore = self.number(from, from + 17, field)?;
        i64::try_from(ore)
            .ok()
            .and_then(|ore| Money::from_ore(ore).ok())
            .ok_or_else(|| {
                self.field_error(field, self.field(from, from + 17), "amount out of range")
            })
    }

    /// A zero-padded account-like number without its padding; `None` if all zeros or blank.
    fn unpadded_digits(
        &self,
        from: usize,
        to: usize,
        field: &'static str,
    ) -> Result<Option<String>, BgMaxError> {
        let raw = self.field(from, to);
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        if !trimmed.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.field_error(field, raw, "not a number"));
        }
        let unpadded = trimmed.trim_start_matches('0');
        Ok((!unpadded.is_empty()).then(|| unpadded.to_string()))
    }

    fn digit(&self, column: usize, field: &'static str) -> Result<u8, BgMaxError> {
        match self.chars.get(column - 1) {
            Some(c) if c.is_ascii_digit() => Ok(*c as u8 - b'0'),
            other => Err(self.field_error(
                field,
                other.map(|c| c.to_string()).unwrap_or_default(),
                "not a digit",
            )),
        }
    }
}

/// The fields of a TK20–TK23 record.
struct PaymentFields {
    payer_bankgiro: Option<String>,
    reference: String,
    amount: Money,
    reference_code: u8,
    channel: u8,
    bgc_serial: String,
    image: bool,
    deduction_code: Option<u8>,
}

/// Reads a payment-like record (TK20–TK23).
///
/// A well-formed record has its fixed numeric tail (amount 18, reference
/// code, channel, BGC serial 12, image mark; TK21 also a deduction code) at
/// columns 38–70 (71), and the reference at 13–37. A TAB in the record makes
/// columns uncertain: an editor that replaced spaces by TABs assumed 8-column
/// tab stops, and expanding them that way restores the official sample
/// exactly. When it does not (the expanded record does not end at column 70,
/// or 71 for TK21, or its fixed columns do not validate), the tail is counted
/// back from the end of the record's content instead, and the reference is
/// whatever lies between column 13 and the tail, trimmed: TABs can only stand
/// for blanks, and blanks in the reference field are padding (code 2 is
/// right-aligned, free text left-aligned), so this reads the same values
/// whatever width the TABs had. A record read this way that still does not
/// validate is refused. The section totals are checked afterwards, so a
/// misread amount cannot pass unnoticed.
fn payment_fields(record: &Record) -> Result<PaymentFields, BgMaxError> {
    let deduction = record.tk() == "21";
    let tail_len = if deduction { 34 } else { 33 };
    let standard_start = 38;
    let content_len = record.content_len();
    let aligned = !record.had_tab || content_len == standard_start - 1 + tail_len;
    let fixed = aligned.then(|| read_payment_at(record, standard_start, deduction));
    match fixed {
        Some(Ok(fields)) => Ok(fields),
        Some(Err(error)) => {
            let fallback = (content_len >= 12 + tail_len
                && content_len != standard_start - 1 + tail_len)
                .then(|| read_payment_at(record, content_len - tail_len + 1, deduction));
            match fallback {
                Some(Ok(fields)) => Ok(fields),
                _ => Err(error),
            }
        }
        None => {
            if content_len < 12 + tail_len {
                return Err(record.structure(format!(
                    "TK{} record is too short ({content_len} columns)",
                    record.tk()
                )));
            }
            read_payment_at(record, content_len - tail_len + 1, deduction)
        }
    }
}

/// Reads TK20–TK23 with the amount starting at column `amount_from` (38 when
/// the record is aligned).
fn read_payment_at(
    record: &Record,
    amount_from: usize,
    deduction: bool,
) -> Result<PaymentFields, BgMaxError> {
    let payer_bankgiro = record.unpadded_digits(3, 12, "payer bankgiro")?;
    let reference = record.field(13, amount_from - 1).trim().to_string();
    let amount = record.amount(amount_from, "amount")?;
    let reference_code = record.digit(amount_from + 18, "reference code")?;
    let channel = record.digit(amount_from + 19, "payment channel")?;
    let serial_from = amount_from + 20;
    let bgc_serial = record.field(serial_from, serial_from + 11);
    if bgc_serial.chars().count() != 12 || !bgc_serial.chars().all(|c| c.is_ascii_digit()) {
        return Err(record.field_error("BGC serial", bgc_serial, "not 12 digits"));
    }
    let image_column = amount_from + 32;
    let image = match record.chars.get(image_column - 1) {
        Some('1') => true,
        Some('0') | Some(' ') | None => false,
        Some(c) => return Err(record.field_error("image mark", c.to_string(), "not 0 or 1")),
    };
    let deduction_code = if deduction {
        Some(record.digit(image_column + 1, "deduction code")?)
    } else {
        None
    };
    Ok(PaymentFields {
        payer_bankgiro,
        reference,
        amount,
        reference_code,
        channel,
        bgc_serial,
        image,
        deduction_code,
    })
}

struct OpenSection {
    line: usize,
    payee_bankgiro: String,
    payee_plusgiro: Option<String>,
    currency: String,
    payments: Vec<Payment>,
}

#[derive(Default)]
struct Parser {
    header: Option<(String, String, bool)>,
    open: Option<OpenSection>,
    sections: Vec<Section>,
    trailer_seen: bool,
    ignored_records: usize,
    count_tk20: u64,
    count_tk21: u64,
    count_tk22_23: u64,
    count_tk15: u64,
}

impl Parser {
    fn record(&mut self, r: &Record) -> Result<(), BgMaxError> {
        let tk = r.tk();
        if self.trailer_seen {
            return Err(r.structure(format!("TK{tk} record after the TK70 end record")));
        }
        if self.header.is_none() && tk != "01" {
            return Err(r.structure(format!(
                "the file must start with a TK01 start record, found TK{tk}"
            )));
        }
        match tk.as_str() {
            "01" => self.start(r),
            "05" => self.open_section(r),
            "20" | "21" => self.payment(r),
            "22" | "23" => self.extra_reference(r),
            "25" | "26" | "27" | "28" | "29" => self.payer_detail(r),
            "15" => self.close_section(r),
            "70" => self.end(r),
            _ => {
                self.ignored_records += 1;
                Ok(())
            }
        }
    }

    fn start(&mut self, r: &Record) -> Result<(), BgMaxError> {
        if self.header.is_some() {
            return Err(r.structure("a second TK01 start record".to_string()));
        }
        let layout = r.field(3, 22);
        if layout.trim() != "BGMAX" {
            return Err(r.field_error("layout name", layout, "not BGMAX"));
        }
        let version = r.field(23, 24);
        if version.len() != 2 || !version.bytes().all(|b| b.is_ascii_digit()) {
            return Err(r.field_error("layout version", version, "not two digits"));
        }
        let timestamp = r.field(25, 44);
        let valid_timestamp = timestamp.len() == 20
            && timestamp.bytes().all(|b| b.is_ascii_digit())
            && NaiveDateTime::parse_from_str(&timestamp[..14], "%Y%m%d%H%M%S").is_ok();
        if !valid_timestamp {
            return Err(r.field_error("timestamp", timestamp, "not YYYYMMDDHHMMSSffffff"));
        }
        let test = match r.chars.get(44) {
            Some('T') => true,
            Some('P') => false,
            other => {
                return Err(r.field_error(
                    "test mark",
                    other.map(|c| c.to_string()).unwrap_or_default(),
                    "not T or P",
                ))
            }
        };
        self.header = Some((version, timestamp, test));
        Ok(())
    }

    fn open_section(&mut self, r: &Record) -> Result<(), BgMaxError> {
        if let Some(open) = &self.open {
            return Err(r.structure(format!(
                "TK05 opens a section while the one opened on line {} has no TK15",
                open.line
            )));
        }
        let payee_bankgiro = r
            .unpadded_digits(3, 12, "payee bankgiro")?
            .ok_or_else(|| r.field_error("payee bankgiro", r.field(3, 12), "missing"))?;
        let payee_plusgiro = r.unpadded_digits(13, 22, "payee plusgiro")?;
        let currency = r.field(23, 25);
        if currency != CURRENCY {
            return Err(r.field_error("currency", currency, "only SEK is handled"));
        }
        self.open = Some(OpenSection {
            line: r.line,
            payee_bankgiro,
            payee_plusgiro,
            currency,
            payments: Vec::new(),
        });
        Ok(())
    }

    fn open_section_mut(&mut self, r: &Record) -> Result<&mut OpenSection, BgMaxError> {
        let tk = r.tk();
        self.open
            .as_mut()
            .ok_or_else(|| r.structure(format!("TK{tk} outside a section (no TK05 before it)")))
    }

    fn last_payment(&mut self, r: &Record) -> Result<&mut Payment, BgMaxError> {
        let tk = r.tk();
        self.open_section_mut(r)?
            .payments
            .last_mut()
            .ok_or_else(|| r.structure(format!("TK{tk} without a TK20/TK21 payment before it")))
    }

    fn payment(&mut self, r: &Record) -> Result<(), BgMaxError> {
        let deduction = r.tk() == "21";
        let fields = payment_fields(r)?;
        let section = self.open_section_mut(r)?;
        let amount = if deduction {
            Money::ore_unchecked(-fields.amount.ore())
        } else {
            fields.amount
        };
        section.payments.push(Payment {
            payer_bankgiro: fields.payer_bankgiro,
            reference_raw: fields.reference,
            reference_code: fields.reference_code,
            amount,
            channel: fields.channel,
            bgc_serial: fields.bgc_serial,
            image: fields.image,
            deduction_code: fields.deduction_code,
            ..Payment::default()
        });
        if deduction {
            self.count_tk21 += 1;
        } else {
            self.count_tk20 += 1;
        }
        Ok(())
    }

    fn extra_reference(&mut self, r: &Record) -> Result<(), BgMaxError> {
        let negative = r.tk() == "23";
        let fields = payment_fields(r)?;
        let amount = if negative {
            Money::ore_unchecked(-fields.amount.ore())
        } else {
            fields.amount
        };
        self.last_payment(r)?.extra_references.push(ExtraReference {
            reference: fields.reference,
            reference_code: fields.reference_code,
            amount,
            negative,
        });
        self.count_tk22_23 += 1;
        Ok(())
    }

    fn payer_detail(&mut self, r: &Record) -> Result<(), BgMaxError> {
        let tk = r.tk();
        // Read before borrowing the payment: TK29 may fail.
        let org_number = if tk == "29" { org_number(r)? } else { None };
        let payment = self.last_payment(r)?;
        match tk.as_str() {
            "25" => payment.info.extend(r.text(3, 52)),
            "26" => {
                payment.payer_name = r.text(3, 37);
                payment.payer_extra_name = r.text(38, 72);
            }
            "27" => {
                payment.address = r.text(3, 37);
                payment.postcode = r.text(38, 46);
            }
            "28" => {
                payment.city = r.text(3, 37);
                payment.country = r.text(38, 72);
                payment.country_code = r.text(73, 74);
            }
            _ => payment.org_number = org_number,
        }
        Ok(())
    }

    fn close_section(&mut self, r: &Record) -> Result<(), BgMaxError> {
        let Some(open) = self.open.take() else {
            return Err(r.structure("TK15 without a TK05 opening its section".to_string()));
        };
        let payee_account = r
            .unpadded_digits(3, 37, "payee account")?
            .unwrap_or_default();
        let date_text = r.field(38, 45);
        let payment_date = NaiveDate::parse_from_str(&date_text, "%Y%m%d")
            .ok()
            .filter(|_| date_text.len() == 8 && date_text.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                r.field_error("payment date", date_text.clone(), "not a date YYYYMMDD")
            })?;
        let deposit_serial = r.field(46, 50);
        if deposit_serial.len() != 5 || !deposit_serial.bytes().all(|b| b.is_ascii_digit()) {
            return Err(r.field_error("deposit serial", deposit_serial, "not 5 digits"));
        }
        let declared_amount = r.amount(51, "deposit amount")?;
        let currency = r.field(69, 71);
        if currency != open.currency {
            return Err(r.field_error("currency", currency, "differs from the section's TK05"));
        }
        let declared_count = r.number(72, 79, "payment count")?;
        let deposit_type = match r.chars.get(79) {
            None | Some(' ') => None,
            Some(c) => Some(*c),
        };

        let section_number = self.sections.len() + 1;
        let found_count = open.payments.len() as u64;
        if declared_count != found_count {
            return Err(BgMaxError::SectionCount {
                line: r.line,
                section: section_number,
                deposit_serial,
                declared: declared_count,
                found: found_count,
            });
        }
        let computed = open
            .payments
            .iter()
            .try_fold(Money::ZERO, |sum, p| sum.checked_add(p.amount))
            .ok_or_else(|| r.structure("the payments' sum is out of range".to_string()))?;
        if computed != declared_amount {
            return Err(BgMaxError::SectionAmount {
                line: r.line,
                section: section_number,
                deposit_serial,
                declared: declared_amount,
                computed,
            });
        }
        self.sections.push(Section {
            payee_bankgiro: open.payee_bankgiro,
            payee_plusgiro: open.payee_plusgiro,
            currency: open.currency,
            payee_account,
            payment_date,
            deposit_serial,
            deposit_amount: declared_amount,
            deposit_type,
            payments: open.payments,
        });
        self.count_tk15 += 1;
        Ok(())
    }

    fn end(&mut self, r: &Record) -> Result<(), BgMaxError> {
        if let Some(open) = &self.open {
            return Err(r.structure(format!(
                "TK70 while the section opened on line {} has no TK15",
                open.line
            )));
        }
        let checks = [
            (3, "TK20 payment", self.count_tk20),
            (11, "TK21 deduction", self.count_tk21),
            (19, "TK22/TK23 extra reference", self.count_tk22_23),
            (27, "TK15 deposit", self.count_tk15),
        ];
        for (from, records, found) in checks {
            let declared = r.number(from, from + 7, records)?;
            if declared != found {
                return Err(BgMaxError::TrailerCount {
                    line: r.line,
                    records,
                    declared,
                    found,
                });
            }
        }
        self.trailer_seen = true;
        Ok(())
    }

    fn finish(self) -> Result<BgMaxFile, BgMaxError> {
        let Some((version, timestamp, test)) = self.header else {
            return Err(BgMaxError::Empty);
        };
        if !self.trailer_seen {
            return Err(BgMaxError::MissingTrailer);
        }
        Ok(BgMaxFile {
            version,
            timestamp,
            test,
            sections: self.sections,
            ignored_records: self.ignored_records,
        })
    }
}

/// TK29 columns 3–14: a 12-digit personnummer as is; a 10-digit organisation
/// number (or 10-digit personnummer) zero-padded to 12 loses exactly its two
/// padding zeros, so a personnummer born in the 2000s keeps its leading 0.
fn org_number(r: &Record) -> Result<Option<String>, BgMaxError> {
    let raw = r.field(3, 14);
    let digits = raw.trim();
    if digits.is_empty() || digits.bytes().all(|b| b == b'0') {
        return Ok(None);
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(r.field_error("organisation number", raw, "not a number"));
    }
    let value = match digits.strip_prefix("00") {
        Some(ten) if digits.len() == 12 => ten,
        _ => digits,
    };
    Ok(Some(value.to_string()))
}

impl fmt::Display for BgMaxFile {
    /// A one-line summary for logs: "BgMax P 20040525173035010331: 2 deposits, 7 payments, 9900.00 SEK".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let payments: usize = self.sections.iter().map(|s| s.payments.len()).sum();
        let total = self
            .sections
            .iter()
            .fold(0i64, |sum, s| sum.saturating_add(s.deposit_amount.ore()));
        write!(
            f,
            "BgMax {} {}: {} deposits, {} payments, {}",
            if self.test { 'T' } else { 'P' },
            self.timestamp,
            self.sections.len(),
            payments,
            Money::ore_unchecked(total)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &[u8] =
        include_bytes!("../../../tests/fixtures/bgmax/bankgirot-sample-ocr-check-length.bgmax");

    fn fixture() -> BgMaxFile {
        parse(FIXTURE).expect("the Bankgirot sample parses")
    }

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn sek(kronor: i64) -> Money {
        Money::sek(kronor)
    }

    /// The fixture as text lines (Latin-1 decoded), to make altered copies.
    fn fixture_lines() -> Vec<String> {
        let text: String = FIXTURE.iter().map(|&b| char::from(b)).collect();
        text.split('\n').map(str::to_string).collect()
    }

    fn encode(lines: &[String], eol: &str) -> Vec<u8> {
        lines
            .join(eol)
            .chars()
            .map(|c| u8::try_from(u32::from(c)).expect("latin-1"))
            .collect()
    }

    fn replace_line(lines: &mut [String], line_no: usize, from: &str, to: &str) {
        let line = &mut lines[line_no - 1];
        assert!(line.contains(from), "line {line_no}: {line}");
        *line = line.replacen(from, to, 1);
    }

    #[test]
    fn fixture_header_and_sections() {
        let file = fixture();
        assert_eq!(file.version, "01");
        assert_eq!(file.timestamp, "20040525173035010331");
        assert!(!file.test);
        assert_eq!(file.ignored_records, 0);
        assert_eq!(file.sections.len(), 2);
        for s in &file.sections {
            assert_eq!(s.payee_bankgiro, "9912346");
            assert_eq!(s.payee_plusgiro, None);
            assert_eq!(s.currency, "SEK");
            assert_eq!(s.payee_account, "5841000001009823");
            assert_eq!(s.payment_date, ymd(2004, 5, 25));
            assert_eq!(s.deposit_type, None);
        }
        let (s1, s2) = (&file.sections[0], &file.sections[1]);
        assert_eq!(s1.deposit_serial, "00074");
        assert_eq!(s1.deposit_amount, sek(1900));
        assert_eq!(s1.payments.len(), 3);
        assert_eq!(s2.deposit_serial, "00075");
        assert_eq!(s2.deposit_amount, sek(8000));
        assert_eq!(s2.payments.len(), 4);
        // TK70 6/1/6/2 as counted.
        let tk20 = file.payments().filter(|(_, p)| !p.is_deduction()).count();
        let tk21 = file.payments().filter(|(_, p)| p.is_deduction()).count();
        let extras: usize = file.payments().map(|(_, p)| p.extra_references.len()).sum();
        assert_eq!((tk20, tk21, extras, file.sections.len()), (6, 1, 6, 2));
        assert_eq!(
            file.to_string(),
            "BgMax P 20040525173035010331: 2 deposits, 7 payments, 9900.00 SEK"
        );
    }

    #[test]
    fn fixture_section_one_payments() {
        let file = fixture();
        let p = &file.sections[0].payments;

        assert_eq!(p[0].amount, sek(1000));
        assert_eq!(p[0].reference_code, 2);
        assert_eq!(p[0].reference_raw, "655969");
        assert_eq!(p[0].references(), vec!["655969"]);
        assert_eq!(p[0].payer_bankgiro.as_deref(), Some("3783511"));
        assert_eq!(p[0].channel, 2);
        assert_eq!(p[0].bgc_serial, "000000000010");
        assert!(!p[0].image);
        assert_eq!(p[0].deduction_code, None);
        assert_eq!(p[0].payer_name.as_deref(), Some("Kalles Plåt AB"));
        assert_eq!(p[0].payer_extra_name, None);
        assert_eq!(p[0].address.as_deref(), Some("Storgatan 2"));
        assert_eq!(p[0].postcode.as_deref(), Some("12345"));
        assert_eq!(p[0].city.as_deref(), Some("Storåker"));
        assert_eq!(p[0].country, None);
        assert_eq!(p[0].org_number.as_deref(), Some("5500001234"));

        // The deduction.
        assert!(p[1].is_deduction());
        assert_eq!(p[1].amount, Money::ore_unchecked(-50_000));
        assert_eq!(p[1].reference_code, 3);
        assert_eq!(p[1].reference_raw, "89853");
        assert_eq!(p[1].references(), vec!["89853"]);
        assert_eq!(p[1].deduction_code, Some(0));
        assert_eq!(p[1].bgc_serial, "000230000111");
        assert_eq!(p[1].payer_name.as_deref(), Some("Kalles Plåt AB"));

        // Free text with three references, four extra references (the last one TAB-padded).
        assert_eq!(p[2].amount, sek(1400));
        assert_eq!(p[2].reference_code, 3);
        assert_eq!(p[2].reference_raw, "657866 658765 657767");
        let extras: Vec<&str> = p[2]
            .extra_references
            .iter()
            .map(|e| e.reference.as_str())
            .collect();
        assert_eq!(extras, vec!["657866", "658765", "657767", "657965"]);
        for e in &p[2].extra_references {
            assert_eq!(e.amount, Money::ZERO);
            assert_eq!(e.reference_code, 2);
            assert!(!e.negative);
        }
        assert_eq!(
            p[2].references(),
            vec!["657866", "658765", "657767", "657965"]
        );
        assert_eq!(p[2].info, vec!["Betalning med extra refnr 657965"]);
    }

    #[test]
    fn fixture_section_two_payments() {
        let file = fixture();
        let p = &file.sections[1].payments;
        let amounts: Vec<i64> = p.iter().map(|p| p.amount.ore()).collect();
        assert_eq!(amounts, vec![110_000, 120_000, 70_000, 500_000]);

        assert_eq!(p[0].references(), vec!["650861"]);
        assert_eq!(p[0].payer_name.as_deref(), Some("Olles färg AB"));
        assert_eq!(p[0].address.as_deref(), Some("Lillagatan 3"));
        assert_eq!(p[0].org_number.as_deref(), Some("5500004322"));
        assert_eq!(p[0].channel, 1);

        // No reference at all (code 1): manual matching by name.
        assert_eq!(p[1].reference_code, 1);
        assert_eq!(p[1].reference_raw, "");
        assert!(p[1].references().is_empty());
        assert_eq!(p[1].payer_name.as_deref(), Some("Berits Garn"));
        assert_eq!(p[1].payer_bankgiro.as_deref(), Some("1234567"));
        assert!(p[1].image);
        assert_eq!(p[1].channel, 3);

        assert_eq!(p[2].references(), vec!["659763"]);
        assert!(p[2].image);

        assert_eq!(p[3].references(), vec!["658260", "658369", "658468"]);
        assert_eq!(p[3].info, vec!["Faktura 658369", "Faktura 658468"]);
        assert_eq!(p[3].payer_name.as_deref(), Some("Kalles Plåt AB"));
    }

    #[test]
    fn names_decode_from_latin1_bytes() {
        // The bytes themselves: "Pl" 0xE5 "t" and "Stor" 0xE5 "ker".
        assert!(FIXTURE.windows(4).any(|w| w == b"Pl\xe5t"));
        assert!(FIXTURE.windows(8).any(|w| w == b"Stor\xe5ker"));
        let file = fixture();
        let name = file.sections[0].payments[0].payer_name.clone().unwrap();
        assert_eq!(name.chars().nth(9), Some('å'));
        assert_eq!(name, "Kalles Plåt AB");
    }

    #[test]
    fn keys() {
        let file = fixture();
        assert_eq!(file.file_key(), "bgmax:20040525173035010331:P:9912346");
        assert_eq!(
            file.sections[0].payment_keys(),
            vec![
                "bgmax:9912346:20040525:00074:000000000010",
                "bgmax:9912346:20040525:00074:000230000111",
                "bgmax:9912346:20040525:00074:000000000014",
            ]
        );
        // The sample reuses serial 000000000016 within deposit 00075.
        let keys = file.sections[1].payment_keys();
        assert_eq!(keys[2], "bgmax:9912346:20040525:00075:000000000016");
        assert_eq!(keys[3], "bgmax:9912346:20040525:00075:000000000016#2");
        let mut all: Vec<String> = file
            .sections
            .iter()
            .flat_map(|s| s.payment_keys())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 7);
        assert_eq!(file.sections[1].payment_key(3), Some(keys[3].clone()));
        assert_eq!(file.sections[1].payment_key(4), None);
    }

    #[test]
    fn crlf_gives_the_same_file() {
        let crlf = encode(&fixture_lines(), "\r\n");
        assert!(crlf.windows(2).any(|w| w == b"\r\n"));
        assert_eq!(parse(&crlf).unwrap(), fixture());
    }

    #[test]
    fn a_file_resaved_as_utf8_still_reads_right() {
        let utf8 = fixture_lines().join("\n").into_bytes();
        assert!(utf8.windows(2).any(|w| w == "å".as_bytes()));
        assert_eq!(parse(&utf8).unwrap(), fixture());
    }

    #[test]
    fn a_file_resaved_as_utf8_with_a_byte_order_mark_still_reads_right() {
        // Notepad's "UTF-8 with BOM": EF BB BF, then the UTF-8 text.
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend(fixture_lines().join("\r\n").into_bytes());
        assert_eq!(parse(&bom).unwrap(), fixture());
        // A Latin-1 file with a BOM in front (an editor that added one
        // without re-encoding) reads the same too.
        let mut latin1 = b"\xEF\xBB\xBF".to_vec();
        latin1.extend_from_slice(FIXTURE);
        assert_eq!(parse(&latin1).unwrap(), fixture());
    }

    #[test]
    fn unknown_records_are_ignored_and_counted() {
        let mut lines = fixture_lines();
        lines.insert(3, format!("{:<80}", "99SOMETHING NEW FROM BANKGIROT"));
        lines.insert(1, format!("{:<80}", "04FUTURE HEADER"));
        let mut file = parse(&encode(&lines, "\n")).unwrap();
        assert_eq!(file.ignored_records, 2);
        file.ignored_records = 0;
        assert_eq!(file, fixture());
    }

    #[test]
    fn wrong_tk70_count_is_refused() {
        let mut lines = fixture_lines();
        replace_line(&mut lines, 50, "700000000600", "700000000500");
        let error = parse(&encode(&lines, "\n")).unwrap_err();
        assert_eq!(
            error,
            BgMaxError::TrailerCount {
                line: 50,
                records: "TK20 payment",
                declared: 5,
                found: 6
            }
        );
        let mut lines = fixture_lines();
        replace_line(&mut lines, 50, "0000000600000002", "0000000500000002");
        assert!(matches!(
            parse(&encode(&lines, "\n")),
            Err(BgMaxError::TrailerCount {
                records: "TK22/TK23 extra reference",
                declared: 5,
                found: 6,
                ..
            })
        ));
    }

    #[test]
    fn wrong_tk15_amount_is_refused() {
        let mut lines = fixture_lines();
        replace_line(
            &mut lines,
            23,
            "000000000000190000SEK",
            "000000000000190001SEK",
        );
        let error = parse(&encode(&lines, "\n")).unwrap_err();
        assert_eq!(
            error,
            BgMaxError::SectionAmount {
                line: 23,
                section: 1,
                deposit_serial: "00074".to_string(),
                declared: Money::ore_unchecked(190_001),
                computed: sek(1900),
            }
        );
        assert_eq!(
            error.to_string(),
            "line 23: section 1 (deposit 00074) declares 1900.01 SEK, its payments sum to 1900.00 SEK"
        );
        // A changed payment amount is caught the same way.
        let mut lines = fixture_lines();
        replace_line(&mut lines, 25, "000000000000110000", "000000000000110100");
        assert!(matches!(
            parse(&encode(&lines, "\n")),
            Err(BgMaxError::SectionAmount {
                line: 49,
                section: 2,
                ..
            })
        ));
    }

    #[test]
    fn wrong_tk15_count_is_refused() {
        let mut lines = fixture_lines();
        replace_line(&mut lines, 49, "SEK00000004", "SEK00000005");
        assert_eq!(
            parse(&encode(&lines, "\n")).unwrap_err(),
            BgMaxError::SectionCount {
                line: 49,
                section: 2,
                deposit_serial: "00075".to_string(),
                declared: 5,
                found: 4
            }
        );
    }

    #[test]
    fn structural_errors_name_the_line() {
        // No TK01.
        let lines = fixture_lines()[1..].to_vec();
        let error = parse(&encode(&lines, "\n")).unwrap_err();
        assert_eq!(error.line(), Some(1));
        assert!(error.to_string().contains("TK01"), "{error}");

        // TK20 outside a section: drop the first TK05.
        let mut lines = fixture_lines();
        lines.remove(1);
        let error = parse(&encode(&lines, "\n")).unwrap_err();
        assert_eq!(error.line(), Some(2));
        assert!(error.to_string().contains("outside a section"), "{error}");

        // Truncated: no TK70.
        let lines = fixture_lines()[..49].to_vec();
        assert_eq!(
            parse(&encode(&lines, "\n")),
            Err(BgMaxError::MissingTrailer)
        );

        // A section without its TK15 before the next TK05.
        let mut lines = fixture_lines();
        lines.remove(22);
        let error = parse(&encode(&lines, "\n")).unwrap_err();
        assert_eq!(error.line(), Some(23));
        assert!(error.to_string().contains("no TK15"), "{error}");

        // A letter in an amount.
        let mut lines = fixture_lines();
        replace_line(&mut lines, 3, "000000000000100000", "00000000000010000X");
        let error = parse(&encode(&lines, "\n")).unwrap_err();
        assert_eq!(error.line(), Some(3));
        assert!(
            matches!(
                error,
                BgMaxError::Field {
                    field: "amount",
                    ..
                }
            ),
            "{error}"
        );

        // An impossible payment date.
        let mut lines = fixture_lines();
        replace_line(&mut lines, 23, "20040525", "20040231");
        let error = parse(&encode(&lines, "\n")).unwrap_err();
        assert!(
            matches!(
                error,
                BgMaxError::Field {
                    line: 23,
                    field: "payment date",
                    ..
                }
            ),
            "{error}"
        );

        // Not a BgMax file at all.
        assert_eq!(parse(b""), Err(BgMaxError::Empty));
        assert_eq!(parse(b"\n\r\n"), Err(BgMaxError::Empty));
        let error = parse(b"Hello, world\n").unwrap_err();
        assert_eq!(error.line(), Some(1));

        // A record after TK70.
        let mut lines = fixture_lines();
        lines.push(lines[2].clone());
        let error = parse(&encode(&lines, "\n")).unwrap_err();
        assert_eq!(error.line(), Some(51));

        // A payer detail with no payment before it.
        let mut lines = fixture_lines();
        lines.insert(2, lines[3].clone());
        let error = parse(&encode(&lines, "\n")).unwrap_err();
        assert_eq!(error.line(), Some(3));
        assert!(error.to_string().contains("without a TK20/TK21"), "{error}");

        // Wrong layout name, test mark, currency.
        let mut lines = fixture_lines();
        replace_line(&mut lines, 1, "BGMAX", "BGMIN");
        assert!(matches!(
            parse(&encode(&lines, "\n")),
            Err(BgMaxError::Field {
                line: 1,
                field: "layout name",
                ..
            })
        ));
        let mut lines = fixture_lines();
        replace_line(&mut lines, 1, "010331P", "010331X");
        assert!(matches!(
            parse(&encode(&lines, "\n")),
            Err(BgMaxError::Field {
                line: 1,
                field: "test mark",
                ..
            })
        ));
        let mut lines = fixture_lines();
        replace_line(&mut lines, 2, "SEK", "EUR");
        assert!(matches!(
            parse(&encode(&lines, "\n")),
            Err(BgMaxError::Field {
                line: 2,
                field: "currency",
                ..
            })
        ));

        // A record longer than 80 columns.
        let mut lines = fixture_lines();
        lines[2].push_str("EXTRA");
        assert_eq!(parse(&encode(&lines, "\n")).unwrap_err().line(), Some(3));
    }

    #[test]
    fn amounts_beyond_money_max_are_refused() {
        let mut lines = fixture_lines();
        replace_line(&mut lines, 3, "000000000000100000", "999999999999999999");
        assert!(matches!(
            parse(&encode(&lines, "\n")),
            Err(BgMaxError::Field {
                line: 3,
                field: "amount",
                reason: "amount out of range",
                ..
            })
        ));
    }

    #[test]
    fn test_mark() {
        let mut lines = fixture_lines();
        replace_line(&mut lines, 1, "010331P", "010331T");
        let file = parse(&encode(&lines, "\n")).unwrap();
        assert!(file.test);
        assert_eq!(file.file_key(), "bgmax:20040525173035010331:T:9912346");
    }

    #[test]
    fn tab_records_are_read_from_the_end_when_tab_stops_do_not_fit() {
        // The fixture's TK22 expands exactly with 8-column stops (line 17 reads 657965 above).
        // Here one TAB stands for all 19 blanks of a right-aligned reference.
        let mut lines = fixture_lines();
        lines[2] = "200003783511\t655969000000000000100000220000000000100".to_string();
        let file = parse(&encode(&lines, "\n")).unwrap();
        assert_eq!(file, fixture());
        // And a TAB in the padding of free text, in a TK21 with its deduction code.
        let mut lines = fixture_lines();
        lines[7] = "21000378351189853\t\t\t0000000000000500003200023000011100".to_string();
        assert_eq!(parse(&encode(&lines, "\n")).unwrap(), fixture());
        // A TAB that makes the record too short to hold the numeric fields is refused.
        let mut lines = fixture_lines();
        lines[2] = "200003783511\t6559690000001000002200000000001".to_string();
        assert_eq!(parse(&encode(&lines, "\n")).unwrap_err().line(), Some(3));
    }

    #[test]
    fn short_records_read_missing_columns_as_blank() {
        // Trailing blanks stripped from every record, as some tools do.
        let lines: Vec<String> = fixture_lines()
            .iter()
            .map(|l| l.trim_end().to_string())
            .collect();
        assert_eq!(parse(&encode(&lines, "\n")).unwrap(), fixture());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
                let _ = parse(&bytes);
            }

            /// Any single-byte change to the sample is either refused or still adds up.
            #[test]
            fn a_corrupted_sample_is_refused_or_consistent(index in 0..FIXTURE.len(), byte in any::<u8>()) {
                let mut bytes = FIXTURE.to_vec();
                bytes[index] = byte;
                if let Ok(file) = parse(&bytes) {
                    for section in &file.sections {
                        let sum: Money = section.payments.iter().map(|p| p.amount).sum();
                        prop_assert_eq!(sum, section.deposit_amount);
                    }
                }
            }

        }
    }
}
