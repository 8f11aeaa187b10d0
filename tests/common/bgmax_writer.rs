//! A BgMax file writer for tests, benches and demos (issue 12: the product
//! only parses BgMax — `callauth::settlement::formats::bgmax` — so the writer
//! lives with the code that needs files to parse). `FileBuilder` assembles a
//! file payment by payment; [`write`] refuses anything the parser would not
//! give back unchanged, so `parse(&write(&x)?)? == x`.
//!
//! Included by `tests/common/mod.rs`, `tests/bgmax.rs` and
//! `benches/settlement.rs` (by `#[path]`).

use chrono::NaiveDate;

use callauth::domain::money::Money;
use callauth::settlement::formats::bgmax::{
    BgMaxFile, ExtraReference, Payment, Section, RECORD_LEN,
};

/// The only currency a BgMax file carries (as the parser requires).
const CURRENCY: &str = "SEK";

/// Why the writer refused to produce a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot write BgMax: {0}")]
pub struct WriteError(String);

// ---------------------------------------------------------------------------
// Writer

/// Writes `file` as BgMax: ISO-8859-1, 80-column records, LF line ends, TK15
/// and TK70 totals from the content. Refuses anything the parser would not
/// give back unchanged (a deposit amount that is not the payments' sum, text
/// that does not fit its field or is not Latin-1, untrimmed text), so that
/// `parse(&write(&x)?)? == x`. `ignored_records` is not written.
pub fn write(file: &BgMaxFile) -> Result<Vec<u8>, WriteError> {
    let mut lines: Vec<Line> = Vec::new();
    let mut line = Line::new("01");
    line.left(3, 22, "BGMAX")?;
    line.digits(23, 24, &file.version, "layout version")?;
    if file.timestamp.len() != 20 || !file.timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WriteError(format!(
            "timestamp '{}' is not 20 digits",
            file.timestamp
        )));
    }
    line.left(25, 44, &file.timestamp)?;
    line.left(45, 45, if file.test { "T" } else { "P" })?;
    lines.push(line);

    let (mut n20, mut n21, mut n22, mut n15) = (0u64, 0u64, 0u64, 0u64);
    for section in &file.sections {
        if section.currency != CURRENCY {
            return Err(WriteError(format!(
                "currency '{}' is not SEK",
                section.currency
            )));
        }
        let mut line = Line::new("05");
        line.digits(3, 12, &section.payee_bankgiro, "payee bankgiro")?;
        if let Some(plusgiro) = &section.payee_plusgiro {
            line.digits(13, 22, plusgiro, "payee plusgiro")?;
        }
        line.left(23, 25, &section.currency)?;
        lines.push(line);

        let mut sum = Money::ZERO;
        for payment in &section.payments {
            sum = sum
                .checked_add(payment.amount)
                .ok_or_else(|| WriteError("the payments' sum is out of range".to_string()))?;
            write_payment(&mut lines, payment)?;
            if payment.is_deduction() {
                n21 += 1;
            } else {
                n20 += 1;
            }
            n22 += payment.extra_references.len() as u64;
        }
        if sum != section.deposit_amount {
            return Err(WriteError(format!(
                "deposit {} declares {} but its payments sum to {}",
                section.deposit_serial, section.deposit_amount, sum
            )));
        }
        let mut line = Line::new("15");
        let account = match section.payee_account.as_str() {
            "" => "0",
            digits => digits,
        };
        line.digits(3, 37, account, "payee account")?;
        line.left(38, 45, &section.payment_date.format("%Y%m%d").to_string())?;
        if section.deposit_serial.len() != 5 {
            return Err(WriteError(format!(
                "deposit serial '{}' is not 5 digits",
                section.deposit_serial
            )));
        }
        line.digits(46, 50, &section.deposit_serial, "deposit serial")?;
        line.amount(51, section.deposit_amount, false)?;
        line.left(69, 71, &section.currency)?;
        line.digits(72, 79, &section.payments.len().to_string(), "payment count")?;
        if let Some(kind) = section.deposit_type {
            line.left(80, 80, &kind.to_string())?;
        }
        lines.push(line);
        n15 += 1;
    }

    let mut line = Line::new("70");
    line.digits(3, 10, &n20.to_string(), "TK20 count")?;
    line.digits(11, 18, &n21.to_string(), "TK21 count")?;
    line.digits(19, 26, &n22.to_string(), "TK22/23 count")?;
    line.digits(27, 34, &n15.to_string(), "TK15 count")?;
    lines.push(line);

    let mut bytes = Vec::with_capacity(lines.len() * (RECORD_LEN + 1));
    for line in lines {
        // Line only ever holds characters checked to be in U+0000–U+00FF.
        bytes.extend(line.chars.iter().map(|&c| c as u32 as u8));
        bytes.push(b'\n');
    }
    Ok(bytes)
}

fn write_payment(lines: &mut Vec<Line>, p: &Payment) -> Result<(), WriteError> {
    let deduction = p.is_deduction();
    if deduction != p.amount.is_negative() && p.amount != Money::ZERO {
        return Err(WriteError(format!(
            "payment {} has amount {} but is {}a deduction",
            p.bgc_serial,
            p.amount,
            if deduction { "" } else { "not " }
        )));
    }
    let mut line = payment_line(
        if deduction { "21" } else { "20" },
        p,
        &p.reference_raw,
        p.reference_code,
        p.amount,
    )?;
    if let Some(code) = p.deduction_code {
        line.digits(71, 71, &code.to_string(), "deduction code")?;
    }
    lines.push(line);
    for extra in &p.extra_references {
        if extra.amount != Money::ZERO && extra.negative != extra.amount.is_negative() {
            return Err(WriteError(format!(
                "extra reference '{}' has amount {} but negative is {}",
                extra.reference, extra.amount, extra.negative
            )));
        }
        let tk = if extra.negative { "23" } else { "22" };
        lines.push(payment_line(
            tk,
            p,
            &extra.reference,
            extra.reference_code,
            extra.amount,
        )?);
    }
    for info in &p.info {
        let mut line = Line::new("25");
        line.text(3, 52, info, "information")?;
        lines.push(line);
    }
    if p.payer_name.is_some() || p.payer_extra_name.is_some() {
        let mut line = Line::new("26");
        line.optional_text(3, 37, &p.payer_name, "payer name")?;
        line.optional_text(38, 72, &p.payer_extra_name, "extra name")?;
        lines.push(line);
    }
    if p.address.is_some() || p.postcode.is_some() {
        let mut line = Line::new("27");
        line.optional_text(3, 37, &p.address, "address")?;
        line.optional_text(38, 46, &p.postcode, "postcode")?;
        lines.push(line);
    }
    if p.city.is_some() || p.country.is_some() || p.country_code.is_some() {
        let mut line = Line::new("28");
        line.optional_text(3, 37, &p.city, "city")?;
        line.optional_text(38, 72, &p.country, "country")?;
        line.optional_text(73, 74, &p.country_code, "country code")?;
        lines.push(line);
    }
    if let Some(org) = &p.org_number {
        let valid = (org.len() == 10 || (org.len() == 12 && !org.starts_with("00")))
            && org.bytes().all(|b| b.is_ascii_digit());
        if !valid {
            return Err(WriteError(format!(
                "organisation number '{org}' is not 10 or 12 digits"
            )));
        }
        let mut line = Line::new("29");
        line.digits(3, 14, org, "organisation number")?;
        lines.push(line);
    }
    Ok(())
}

/// A TK20–TK23 record: the payment's own fields with `reference` and `amount`.
fn payment_line(
    tk: &str,
    p: &Payment,
    reference: &str,
    reference_code: u8,
    amount: Money,
) -> Result<Line, WriteError> {
    let mut line = Line::new(tk);
    line.digits(
        3,
        12,
        p.payer_bankgiro.as_deref().unwrap_or("0"),
        "payer bankgiro",
    )?;
    if reference.trim() != reference {
        return Err(WriteError(format!(
            "reference '{reference}' has surrounding blanks"
        )));
    }
    if reference_code == 2 {
        line.right(13, 37, reference)?;
    } else {
        line.left(13, 37, reference)?;
    }
    line.amount(38, amount, true)?;
    line.digits(56, 56, &reference_code.to_string(), "reference code")?;
    line.digits(57, 57, &p.channel.to_string(), "payment channel")?;
    if p.bgc_serial.len() != 12 {
        return Err(WriteError(format!(
            "BGC serial '{}' is not 12 digits",
            p.bgc_serial
        )));
    }
    line.digits(58, 69, &p.bgc_serial, "BGC serial")?;
    line.left(70, 70, if p.image { "1" } else { "0" })?;
    Ok(line)
}

/// An 80-column record being written.
struct Line {
    chars: [char; RECORD_LEN],
}

impl Line {
    fn new(tk: &str) -> Line {
        let mut chars = [' '; RECORD_LEN];
        for (slot, c) in chars.iter_mut().zip(tk.chars()) {
            *slot = c;
        }
        Line { chars }
    }

    fn put(&mut self, from: usize, to: usize, text: &str, right: bool) -> Result<(), WriteError> {
        let width = to + 1 - from;
        let len = text.chars().count();
        if len > width {
            return Err(WriteError(format!(
                "'{text}' does not fit in {width} columns"
            )));
        }
        if let Some(c) = text
            .chars()
            .find(|c| u32::from(*c) > 0xFF || c.is_control())
        {
            return Err(WriteError(format!(
                "'{text}' contains '{}', which ISO-8859-1 records cannot hold",
                c.escape_default()
            )));
        }
        let start = from - 1 + if right { width - len } else { 0 };
        for (slot, c) in self.chars[start..start + len].iter_mut().zip(text.chars()) {
            *slot = c;
        }
        Ok(())
    }

    fn left(&mut self, from: usize, to: usize, text: &str) -> Result<(), WriteError> {
        self.put(from, to, text, false)
    }

    fn right(&mut self, from: usize, to: usize, text: &str) -> Result<(), WriteError> {
        self.put(from, to, text, true)
    }

    /// Trimmed, non-empty free text (what the parser gives back).
    fn text(&mut self, from: usize, to: usize, text: &str, what: &str) -> Result<(), WriteError> {
        if text.is_empty() || text.trim() != text {
            return Err(WriteError(format!(
                "{what} '{text}' is empty or has surrounding blanks"
            )));
        }
        self.left(from, to, text)
    }

    fn optional_text(
        &mut self,
        from: usize,
        to: usize,
        text: &Option<String>,
        what: &str,
    ) -> Result<(), WriteError> {
        match text {
            Some(text) => self.text(from, to, text, what),
            None => Ok(()),
        }
    }

    /// Digits right-aligned and zero-filled (N:h0).
    fn digits(
        &mut self,
        from: usize,
        to: usize,
        digits: &str,
        what: &str,
    ) -> Result<(), WriteError> {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(WriteError(format!("{what} '{digits}' is not a number")));
        }
        let width = to + 1 - from;
        self.right(from, to, &format!("{digits:0>width$}"))
            .map_err(|_| WriteError(format!("{what} '{digits}' does not fit in {width} digits")))
    }

    /// 18-digit öre; `magnitude` writes the absolute value (TK21, TK23).
    fn amount(&mut self, from: usize, amount: Money, magnitude: bool) -> Result<(), WriteError> {
        if amount.is_negative() && !magnitude {
            return Err(WriteError(format!("amount {amount} is negative")));
        }
        self.digits(
            from,
            from + 17,
            &amount.ore().unsigned_abs().to_string(),
            "amount",
        )
    }
}

/// Builds BgMax files for tests and demos: sections of OCR (reference code 2),
/// free-text (code 3) and deduction payments with payer details. BGC serial
/// numbers are assigned in order. Misuse (a payment before any section, a
/// name before any payment) is reported by [`FileBuilder::build`].
#[derive(Clone, Debug)]
pub struct FileBuilder {
    file: BgMaxFile,
    next_serial: u64,
    misuse: Option<String>,
}

impl FileBuilder {
    /// A file written at `timestamp` (YYYYMMDDHHMMSSffffff); `test` marks a test file.
    pub fn new(timestamp: &str, test: bool) -> FileBuilder {
        FileBuilder {
            file: BgMaxFile {
                version: "01".to_string(),
                timestamp: timestamp.to_string(),
                test,
                sections: Vec::new(),
                ignored_records: 0,
            },
            next_serial: 1,
            misuse: None,
        }
    }

    /// Starts a deposit to `payee_bankgiro` (digits) on `payment_date`.
    pub fn section(
        &mut self,
        payee_bankgiro: &str,
        payment_date: NaiveDate,
        deposit_serial: &str,
    ) -> &mut Self {
        self.file.sections.push(Section {
            payee_bankgiro: payee_bankgiro.to_string(),
            payee_plusgiro: None,
            currency: CURRENCY.to_string(),
            payee_account: String::new(),
            payment_date,
            deposit_serial: deposit_serial.to_string(),
            deposit_amount: Money::ZERO,
            deposit_type: None,
            payments: Vec::new(),
        });
        self
    }

    /// A TK20 paid with a correct OCR reference (code 2).
    pub fn ocr_payment(&mut self, ocr: &str, amount: Money) -> &mut Self {
        self.add(2, ocr, amount, None)
    }

    /// A TK20 with free-text references (code 3), e.g. "657866 658765".
    pub fn free_text_payment(&mut self, text: &str, amount: Money) -> &mut Self {
        self.add(3, text, amount, None)
    }

    /// A TK21 deduction of `amount` (given positive; held negative), deduction code 0.
    pub fn deduction(&mut self, reference: &str, amount: Money) -> &mut Self {
        let negative = Money::ore_unchecked(-amount.ore().saturating_abs());
        self.add(3, reference, negative, Some(0))
    }

    /// Any payment as given (its amount is added to the deposit).
    pub fn payment(&mut self, payment: Payment) -> &mut Self {
        let problem = match self.file.sections.last_mut() {
            Some(section) => match section.deposit_amount.checked_add(payment.amount) {
                Some(sum) => {
                    section.deposit_amount = sum;
                    section.payments.push(payment);
                    None
                }
                None => Some("a deposit amount out of range"),
            },
            None => Some("a payment before any section"),
        };
        if let Some(problem) = problem {
            self.misuse(problem);
        }
        self
    }

    /// The last payment's payer bankgiro number.
    pub fn payer_bankgiro(&mut self, bankgiro: &str) -> &mut Self {
        self.edit_last("payer bankgiro", |p| {
            p.payer_bankgiro = Some(bankgiro.to_string())
        })
    }

    /// The last payment's payer name (TK26).
    pub fn payer_name(&mut self, name: &str) -> &mut Self {
        self.edit_last("payer name", |p| p.payer_name = Some(name.to_string()))
    }

    /// The last payment's address, postcode (TK27) and city (TK28).
    pub fn payer_address(&mut self, address: &str, postcode: &str, city: &str) -> &mut Self {
        self.edit_last("payer address", |p| {
            p.address = Some(address.to_string());
            p.postcode = Some(postcode.to_string());
            p.city = Some(city.to_string());
        })
    }

    /// An extra OCR reference (TK22, amount 0) on the last payment.
    pub fn extra_reference(&mut self, reference: &str) -> &mut Self {
        self.edit_last("extra reference", |p| {
            p.extra_references.push(ExtraReference {
                reference: reference.to_string(),
                reference_code: 2,
                amount: Money::ZERO,
                negative: false,
            })
        })
    }

    /// An information line (TK25) on the last payment.
    pub fn info(&mut self, text: &str) -> &mut Self {
        self.edit_last("information line", |p| p.info.push(text.to_string()))
    }

    /// What [`parse`] returns for the built file.
    pub fn file(&self) -> Result<BgMaxFile, WriteError> {
        match &self.misuse {
            Some(message) => Err(WriteError(message.clone())),
            None => Ok(self.file.clone()),
        }
    }

    /// The file's bytes.
    pub fn build(&self) -> Result<Vec<u8>, WriteError> {
        write(&self.file()?)
    }

    fn add(
        &mut self,
        reference_code: u8,
        reference: &str,
        amount: Money,
        deduction_code: Option<u8>,
    ) -> &mut Self {
        let bgc_serial = format!("{:012}", self.next_serial);
        self.next_serial += 1;
        self.payment(Payment {
            reference_raw: reference.to_string(),
            reference_code,
            amount,
            channel: 1,
            bgc_serial,
            deduction_code,
            ..Payment::default()
        })
    }

    fn edit_last(&mut self, what: &str, edit: impl FnOnce(&mut Payment)) -> &mut Self {
        match self
            .file
            .sections
            .last_mut()
            .and_then(|s| s.payments.last_mut())
        {
            Some(payment) => edit(payment),
            None => self.misuse(&format!("{what} before any payment")),
        }
        self
    }

    fn misuse(&mut self, message: &str) {
        self.misuse.get_or_insert_with(|| message.to_string());
    }
}
