//! What an invoice, a reminder or a collection demand says, and where on
//! the page (SPEC R12, R13; reference/sweden.md §5.1 and rule 23: neutral
//! line texts): the document model ([`InvoiceDocument`]) and its A4 layout —
//! header, addresses, the call table flowing over as many pages as it needs
//! ("Sida n av m" on every page), the summary with VAT per rate, payment
//! details and notes. `formats::pdf` turns the laid-out pages into bytes.
//!
//! The document prints exactly the texts it is given. Keeping them neutral
//! (a service number and "Samtal till betalnummer", never "tarot" or
//! "psykolog") is the caller's job, because the invoice goes to the number
//! holder, who may not be the caller. [`NEUTRAL_CALL_DESCRIPTION`] is the
//! default line text.
//!
//! Layout coordinates are floating-point points; amounts never are: they are
//! [`Money`] and printed with [`Money::to_swedish`].

use chrono::NaiveDate;

use crate::domain::money::Money;
use crate::domain::vat::VatRate;
use crate::settlement::formats::pdf::{fit, text_width, wrap, write_pdf, Font, Op, Page};

/// The line text to use for a call unless a service has an approved neutral text.
pub const NEUTRAL_CALL_DESCRIPTION: &str = "Samtal till betalnummer";

/// Everything printed on an invoice, reminder or collection demand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvoiceDocument {
    /// The creditor's name, address and organisation number, one per line.
    pub issuer_lines: Vec<String>,
    pub invoice_number: String,
    /// "Faktura", "Påminnelse", "Inkassokrav".
    pub kind: String,
    pub invoice_date: NaiveDate,
    pub customer_number: String,
    pub holder_name: String,
    pub address_lines: Vec<String>,
    /// The billed number in national display form ("070-123 45 67").
    pub number_billed: String,
    pub ocr: String,
    pub due_date: NaiveDate,
    /// First and last day of the invoiced period.
    pub period: (NaiveDate, NaiveDate),
    pub lines: Vec<CallLine>,
    /// Fees, e.g. ("Pappersfakturaavgift", 30 kr), ("Påminnelseavgift", 60 kr).
    pub fees: Vec<(String, Money)>,
    /// Discounts; always printed as a reduction, whatever the sign given.
    pub discounts: Vec<(String, Money)>,
    pub previous_balance: Option<Money>,
    /// The amount to pay, as computed by invoicing (not recomputed here).
    pub total: Money,
    /// Mervärdesskattelagen 17 kap.: per VAT rate, the base and the VAT
    /// contained in the amounts above (prices include VAT). Empty prints no
    /// VAT block (a document of fees outside the scope of VAT only).
    pub vat: Vec<VatLine>,
    /// The bankgiro number as printed ("991-2346").
    pub bankgiro: String,
    /// Free paragraphs at the end (interest terms, dispute instructions…).
    pub notes: Vec<String>,
}

/// The VAT of one rate on a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VatLine {
    pub rate: VatRate,
    /// The amount without VAT.
    pub base: Money,
    pub vat: Money,
}

/// One call on the invoice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallLine {
    /// Stockholm date of the call's start.
    pub date: NaiveDate,
    /// Stockholm time of the call's start, "14:03".
    pub time: String,
    /// The service number in national display form ("0900-100 10 10").
    pub service_number: String,
    /// Neutral text (see [`NEUTRAL_CALL_DESCRIPTION`]), never the service category.
    pub description: String,
    pub duration_seconds: u32,
    /// As charged: "4" (started minutes) or "3:05" (per-second billing).
    pub charged_minutes: String,
    pub amount: Money,
}

/// Renders the document as PDF bytes.
pub fn render_invoice(doc: &InvoiceDocument) -> Vec<u8> {
    let pages = layout(doc);
    let title = format!("{} {}", doc.kind, doc.invoice_number);
    write_pdf(&pages, &title)
}

// ---------------------------------------------------------------------------
// Layout

const LEFT: f64 = 50.0;
const RIGHT: f64 = 545.0;
const TOP: f64 = 800.0;
/// Nothing but the footer goes below this line.
const BOTTOM: f64 = 70.0;
const FOOTER_Y: f64 = 40.0;

const BODY_SIZE: f64 = 9.0;
const ROW_SIZE: f64 = 8.5;
const ROW_HEIGHT: f64 = 12.0;
const LINE_HEIGHT: f64 = 12.5;

// Call table columns: left edges, or right edges for the numeric ones.
const COL_DATE: f64 = LEFT;
const COL_TIME: f64 = 102.0;
const COL_NUMBER: f64 = 130.0;
const COL_DESCRIPTION: f64 = 200.0;
const COL_DURATION_RIGHT: f64 = 410.0;
const COL_CHARGED_RIGHT: f64 = 470.0;
const COL_AMOUNT_RIGHT: f64 = RIGHT;
const DESCRIPTION_WIDTH: f64 = COL_DURATION_RIGHT - 40.0 - COL_DESCRIPTION;

/// Where the addressee's name goes: the window of a C5/E65 window envelope.
const ADDRESS_TOP: f64 = 700.0;
/// Where the call table starts on page 1 unless the blocks above are longer.
const TABLE_TOP: f64 = 600.0;

// Summary block: labels from here, amounts right-aligned at RIGHT.
const SUMMARY_LABEL: f64 = 330.0;
/// The VAT block's base column (right edge); the VAT itself is at RIGHT.
const VAT_BASE_RIGHT: f64 = 470.0;

struct Layout<'a> {
    doc: &'a InvoiceDocument,
    pages: Vec<Page>,
    /// The baseline of the next line on the current page.
    y: f64,
}

impl Layout<'_> {
    fn page(&mut self) -> &mut Page {
        if self.pages.is_empty() {
            self.pages.push(Page::default());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    fn text(&mut self, x: f64, y: f64, font: Font, size: f64, text: &str) {
        if text.is_empty() {
            return;
        }
        self.page().ops.push(Op::Text {
            x,
            y,
            font,
            size,
            text: text.to_string(),
        });
    }

    fn text_right(&mut self, right: f64, y: f64, font: Font, size: f64, text: &str) {
        let x = right - text_width(text, font, size);
        self.text(x, y, font, size, text);
    }

    fn rule(&mut self, x1: f64, x2: f64, y: f64, width: f64) {
        self.page().ops.push(Op::Rule { x1, x2, y, width });
    }

    /// Starts a continuation page with a short header.
    fn new_page(&mut self) {
        self.pages.push(Page::default());
        let heading = format!("{} {} (forts.)", self.doc.kind, self.doc.invoice_number);
        self.text(LEFT, TOP, Font::Bold, 11.0, &heading);
        let customer = format!("Kundnummer {}", self.doc.customer_number);
        self.text_right(RIGHT, TOP, Font::Regular, BODY_SIZE, &customer);
        self.y = TOP - 30.0;
    }

    /// Moves to a new page unless `height` points still fit above the bottom margin.
    fn ensure_space(&mut self, height: f64) -> bool {
        if self.y - height < BOTTOM {
            self.new_page();
            true
        } else {
            false
        }
    }

    fn table_header(&mut self) {
        let y = self.y;
        self.text(COL_DATE, y, Font::Bold, ROW_SIZE, "Datum");
        self.text(COL_TIME, y, Font::Bold, ROW_SIZE, "Tid");
        self.text(COL_NUMBER, y, Font::Bold, ROW_SIZE, "Nummer");
        self.text(COL_DESCRIPTION, y, Font::Bold, ROW_SIZE, "Beskrivning");
        self.text_right(COL_DURATION_RIGHT, y, Font::Bold, ROW_SIZE, "Längd");
        self.text_right(COL_CHARGED_RIGHT, y, Font::Bold, ROW_SIZE, "Deb. min");
        self.text_right(COL_AMOUNT_RIGHT, y, Font::Bold, ROW_SIZE, "Belopp");
        self.rule(LEFT, RIGHT, y - 4.0, 0.5);
        self.y -= ROW_HEIGHT + 4.0;
    }

    /// A label on the left of the summary block and an amount right-aligned.
    fn summary_row(&mut self, label: &str, amount: Money, font: Font) {
        let y = self.y;
        let label = fit(label, RIGHT - 80.0 - SUMMARY_LABEL, font, BODY_SIZE);
        self.text(SUMMARY_LABEL, y, font, BODY_SIZE, &label);
        self.text_right(RIGHT, y, font, BODY_SIZE, &amount.to_swedish());
        self.y -= LINE_HEIGHT;
    }
}

/// Lays the document out, block by block, in the order they are printed.
fn layout(doc: &InvoiceDocument) -> Vec<Page> {
    let mut l = Layout {
        doc,
        pages: vec![Page::default()],
        y: TOP,
    };
    let issuer_bottom = l.issuer();
    let facts_bottom = l.facts();
    let address_bottom = l.addressee(issuer_bottom);
    // The calls, below whichever block ends lowest.
    l.y = TABLE_TOP
        .min(address_bottom - 20.0)
        .min(facts_bottom - 25.0);
    l.calls();
    l.summary();
    l.vat();
    l.payment_instructions();
    l.notes();
    l.footers();
    l.pages
}

impl Layout<'_> {
    /// Issuer, top left; returns where it ends.
    fn issuer(&mut self) -> f64 {
        let doc = self.doc;
        let mut y = TOP;
        for (i, line) in doc.issuer_lines.iter().enumerate() {
            let font = if i == 0 { Font::Bold } else { Font::Regular };
            self.text(LEFT, y, font, BODY_SIZE, &fit(line, 250.0, font, BODY_SIZE));
            y -= LINE_HEIGHT;
        }
        y
    }

    /// Document kind and the invoice facts, top right; returns where they end.
    fn facts(&mut self) -> f64 {
        let doc = self.doc;
        self.text_right(
            RIGHT,
            TOP - 5.0,
            Font::Bold,
            20.0,
            &fit(&doc.kind, 200.0, Font::Bold, 20.0),
        );
        let period = format!("{} – {}", iso(doc.period.0), iso(doc.period.1));
        let facts = [
            ("Fakturanummer", doc.invoice_number.clone()),
            ("Fakturadatum", iso(doc.invoice_date)),
            ("Kundnummer", doc.customer_number.clone()),
            ("Telefonnummer", doc.number_billed.clone()),
            ("Period", period),
            ("Förfallodag", iso(doc.due_date)),
            ("OCR-nummer", doc.ocr.clone()),
        ];
        let mut y = TOP - 35.0;
        for (label, value) in &facts {
            self.text(SUMMARY_LABEL, y, Font::Regular, BODY_SIZE, label);
            self.text_right(
                RIGHT,
                y,
                Font::Regular,
                BODY_SIZE,
                &fit(value, 130.0, Font::Regular, BODY_SIZE),
            );
            y -= LINE_HEIGHT;
        }
        self.text(SUMMARY_LABEL, y, Font::Bold, 11.0, "Att betala");
        self.text_right(RIGHT, y, Font::Bold, 11.0, &doc.total.to_swedish());
        y
    }

    /// The addressee, where a window envelope shows it (lower if the issuer
    /// block is long); returns where it ends.
    fn addressee(&mut self, issuer_bottom: f64) -> f64 {
        let doc = self.doc;
        let mut y = f64::min(ADDRESS_TOP, issuer_bottom - 5.0);
        for (i, line) in std::iter::once(&doc.holder_name)
            .chain(doc.address_lines.iter())
            .enumerate()
        {
            let font = if i == 0 { Font::Bold } else { Font::Regular };
            self.text(LEFT, y, font, 10.0, &fit(line, 250.0, font, 10.0));
            y -= 13.0;
        }
        y
    }

    /// The call table from `self.y`, flowing over as many pages as it needs.
    fn calls(&mut self) {
        let doc = self.doc;
        self.text(LEFT, self.y, Font::Bold, 11.0, "Specifikation av samtal");
        self.y -= 18.0;
        self.table_header();
        if doc.lines.is_empty() {
            self.text(
                COL_DATE,
                self.y,
                Font::Regular,
                ROW_SIZE,
                "Inga samtal under perioden.",
            );
            self.y -= ROW_HEIGHT;
        }
        for call in &doc.lines {
            if self.ensure_space(ROW_HEIGHT) {
                self.table_header();
            }
            self.call_row(call);
            self.y -= ROW_HEIGHT;
        }
        self.rule(LEFT, RIGHT, self.y + ROW_HEIGHT - 4.0, 0.5);
        self.y -= 10.0;
    }

    /// One call on the current line.
    fn call_row(&mut self, call: &CallLine) {
        let y = self.y;
        self.text(COL_DATE, y, Font::Regular, ROW_SIZE, &iso(call.date));
        self.text(
            COL_TIME,
            y,
            Font::Regular,
            ROW_SIZE,
            &fit(&call.time, 26.0, Font::Regular, ROW_SIZE),
        );
        self.text(
            COL_NUMBER,
            y,
            Font::Regular,
            ROW_SIZE,
            &fit(
                &call.service_number,
                COL_DESCRIPTION - COL_NUMBER - 5.0,
                Font::Regular,
                ROW_SIZE,
            ),
        );
        self.text(
            COL_DESCRIPTION,
            y,
            Font::Regular,
            ROW_SIZE,
            &fit(
                &call.description,
                DESCRIPTION_WIDTH,
                Font::Regular,
                ROW_SIZE,
            ),
        );
        self.text_right(
            COL_DURATION_RIGHT,
            y,
            Font::Regular,
            ROW_SIZE,
            &duration(call.duration_seconds),
        );
        self.text_right(
            COL_CHARGED_RIGHT,
            y,
            Font::Regular,
            ROW_SIZE,
            &fit(&call.charged_minutes, 45.0, Font::Regular, ROW_SIZE),
        );
        self.text_right(
            COL_AMOUNT_RIGHT,
            y,
            Font::Regular,
            ROW_SIZE,
            &call.amount.to_swedish(),
        );
    }

    /// The summary: calls, fees, discounts, previous balance, total.
    fn summary(&mut self) {
        let doc = self.doc;
        let calls_total = doc
            .lines
            .iter()
            .try_fold(Money::ZERO, |sum, call| sum.checked_add(call.amount));
        let summary_rows =
            1 + doc.fees.len() + doc.discounts.len() + usize::from(doc.previous_balance.is_some());
        self.ensure_space(summary_rows as f64 * LINE_HEIGHT + 20.0);
        if let Some(calls_total) = calls_total {
            self.summary_row("Summa samtal inkl. moms", calls_total, Font::Regular);
        }
        for (label, amount) in &doc.fees {
            self.summary_row(label, *amount, Font::Regular);
        }
        for (label, amount) in &doc.discounts {
            self.summary_row(
                label,
                Money::ore_unchecked(-amount.ore().saturating_abs()),
                Font::Regular,
            );
        }
        if let Some(balance) = doc.previous_balance {
            self.summary_row("Tidigare saldo", balance, Font::Regular);
        }
        self.rule(SUMMARY_LABEL, RIGHT, self.y + LINE_HEIGHT - 3.0, 0.5);
        self.y -= 3.0;
        self.summary_row("Att betala", doc.total, Font::Bold);
        self.y -= 15.0;
    }

    /// VAT per rate: the base and the VAT contained in the amounts above
    /// (mervärdesskattelagen 17 kap.); nothing when there is no VAT.
    fn vat(&mut self) {
        let doc = self.doc;
        if doc.vat.is_empty() {
            return;
        }
        self.ensure_space((doc.vat.len() as f64 + 2.0) * LINE_HEIGHT + 10.0);
        let y = self.y;
        self.text(SUMMARY_LABEL, y, Font::Bold, BODY_SIZE, "Momsspecifikation");
        self.text_right(VAT_BASE_RIGHT, y, Font::Bold, BODY_SIZE, "Underlag");
        self.text_right(RIGHT, y, Font::Bold, BODY_SIZE, "Moms");
        self.y -= LINE_HEIGHT;
        let mut total_vat = Money::ZERO;
        for line in &doc.vat {
            let y = self.y;
            let label = format!("Moms {}", line.rate.label());
            self.text(SUMMARY_LABEL, y, Font::Regular, BODY_SIZE, &label);
            self.text_right(
                VAT_BASE_RIGHT,
                y,
                Font::Regular,
                BODY_SIZE,
                &line.base.to_swedish(),
            );
            self.text_right(RIGHT, y, Font::Regular, BODY_SIZE, &line.vat.to_swedish());
            total_vat = total_vat.checked_add(line.vat).unwrap_or(total_vat);
            self.y -= LINE_HEIGHT;
        }
        self.summary_row("Summa moms", total_vat, Font::Regular);
        self.y -= 12.0;
    }

    /// Payment instructions (Bankgirot requires the OCR instruction on the invoice).
    fn payment_instructions(&mut self) {
        let doc = self.doc;
        let payment_rows = [
            ("Bankgiro", doc.bankgiro.clone()),
            ("OCR-nummer", doc.ocr.clone()),
            ("Förfallodag", iso(doc.due_date)),
            ("Att betala", doc.total.to_swedish()),
        ];
        self.ensure_space(LINE_HEIGHT * (payment_rows.len() as f64 + 3.0));
        self.rule(LEFT, RIGHT, self.y + LINE_HEIGHT, 1.0);
        self.text(LEFT, self.y, Font::Bold, 11.0, "Betalningsinformation");
        self.y -= LINE_HEIGHT + 3.0;
        for (label, value) in &payment_rows {
            let y = self.y;
            self.text(LEFT, y, Font::Regular, BODY_SIZE, label);
            self.text(
                LEFT + 90.0,
                y,
                Font::Bold,
                BODY_SIZE,
                &fit(value, 200.0, Font::Bold, BODY_SIZE),
            );
            self.y -= LINE_HEIGHT;
        }
        self.text(
            LEFT,
            self.y,
            Font::Bold,
            BODY_SIZE,
            "Ange OCR-nummer vid betalning",
        );
        self.y -= LINE_HEIGHT * 2.0;
    }

    /// Notes, word-wrapped.
    fn notes(&mut self) {
        let doc = self.doc;
        for note in &doc.notes {
            for line in wrap(note, RIGHT - LEFT, Font::Regular, BODY_SIZE) {
                self.ensure_space(LINE_HEIGHT);
                let y = self.y;
                self.text(LEFT, y, Font::Regular, BODY_SIZE, &line);
                self.y -= LINE_HEIGHT;
            }
            self.y -= 4.0;
        }
    }

    /// Footers, once the page count is known: "Sida n av m" and the document.
    fn footers(&mut self) {
        let doc = self.doc;
        let count = self.pages.len();
        for (i, page) in self.pages.iter_mut().enumerate() {
            let footer = format!("Sida {} av {}", i + 1, count);
            page.ops.push(Op::Text {
                x: RIGHT - text_width(&footer, Font::Regular, 8.0),
                y: FOOTER_Y,
                font: Font::Regular,
                size: 8.0,
                text: footer,
            });
            page.ops.push(Op::Text {
                x: LEFT,
                y: FOOTER_Y,
                font: Font::Regular,
                size: 8.0,
                text: format!("{} {}", doc.kind, doc.invoice_number),
            });
        }
    }
}

fn iso(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// "4:05" or, from an hour, "1:02:03".
fn duration(seconds: u32) -> String {
    let (hours, minutes, secs) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if hours > 0 {
        format!("{hours}:{minutes:02}:{secs:02}")
    } else {
        format!("{minutes}:{secs:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settlement::formats::pdf::{pdf_string, text_string, winansi};

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn call(i: u32) -> CallLine {
        CallLine {
            date: ymd(2026, 1, 1 + i % 28),
            time: format!("{:02}:{:02}", 8 + i % 12, i % 60),
            service_number: "0900-100 10 10".to_string(),
            description: NEUTRAL_CALL_DESCRIPTION.to_string(),
            duration_seconds: 60 * (i % 9) + 5,
            charged_minutes: (i % 9 + 1).to_string(),
            amount: Money::ore_unchecked(2990 * i64::from(i % 9 + 1)),
        }
    }

    fn document(lines: usize) -> InvoiceDocument {
        InvoiceDocument {
            issuer_lines: vec![
                "Callauth Fakturering AB".to_string(),
                "Box 123, 111 22 Stockholm".to_string(),
                "Org.nr 556000-0000".to_string(),
            ],
            invoice_number: "12345".to_string(),
            kind: "Påminnelse".to_string(),
            invoice_date: ymd(2026, 2, 15),
            customer_number: "K-1001".to_string(),
            holder_name: "Åsa Öberg".to_string(),
            address_lines: vec!["Ängsvägen 7".to_string(), "123 45 Västerås".to_string()],
            number_billed: "070-123 45 67".to_string(),
            ocr: "1234574".to_string(),
            due_date: ymd(2026, 2, 28),
            period: (ymd(2026, 1, 1), ymd(2026, 1, 31)),
            lines: (0..lines as u32).map(call).collect(),
            fees: vec![("Pappersfakturaavgift".to_string(), Money::sek(30))],
            discounts: vec![("Rabatt (kampanj)".to_string(), Money::sek(10))],
            previous_balance: Some(Money::sek(100)),
            total: Money::sek(1500),
            vat: vec![VatLine {
                rate: VatRate::STANDARD,
                base: Money::sek(1200),
                vat: Money::sek(300),
            }],
            bankgiro: "991-2346".to_string(),
            notes: vec![
                "Vid betalning efter förfallodagen debiteras dröjsmålsränta enligt räntelagen. \
                 Har du frågor om fakturan, kontakta kundtjänst."
                    .to_string(),
            ],
        }
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    fn count(haystack: &[u8], needle: &[u8]) -> usize {
        haystack
            .windows(needle.len())
            .filter(|w| *w == needle)
            .count()
    }

    /// The xref entries as (object number, offset).
    fn xref_entries(pdf: &[u8]) -> Vec<(usize, usize)> {
        let text = String::from_utf8_lossy(pdf);
        let startxref: usize = text
            .rsplit("startxref\n")
            .next()
            .and_then(|rest| rest.lines().next())
            .and_then(|n| n.parse().ok())
            .expect("startxref");
        assert!(pdf[startxref..].starts_with(b"xref\n"));
        let table = std::str::from_utf8(&pdf[startxref..]).expect("the xref is ASCII");
        let mut lines = table.lines().skip(1);
        let header = lines.next().unwrap();
        let size: usize = header.split(' ').nth(1).unwrap().parse().unwrap();
        let mut entries = Vec::new();
        for (i, line) in lines.take(size).enumerate() {
            assert_eq!(line.len(), 19, "{line:?}"); // 20 bytes with the LF
            if i == 0 {
                assert_eq!(line, "0000000000 65535 f ");
                continue;
            }
            assert!(line.ends_with(" 00000 n "), "{line:?}");
            entries.push((i, line[..10].parse().unwrap()));
        }
        entries
    }

    #[test]
    fn well_formed_file() {
        let pdf = render_invoice(&document(3));
        assert!(pdf.starts_with(b"%PDF-1.4\n"));
        assert!(pdf.ends_with(b"%%EOF\n"));
        let entries = xref_entries(&pdf);
        assert_eq!(entries.len(), 5 + 2); // 5 fixed objects + one page with its content
        for (number, offset) in entries {
            let expected = format!("{number} 0 obj\n");
            assert!(
                pdf[offset..].starts_with(expected.as_bytes()),
                "object {number} at {offset}"
            );
        }
        // Stream lengths are exact: "endstream" follows the declared length and a newline.
        let mut search_from = 0;
        while let Some(pos) = find(&pdf[search_from..], b"<< /Length ") {
            let start = search_from + pos + b"<< /Length ".len();
            let digits: Vec<u8> = pdf[start..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .copied()
                .collect();
            let length: usize = std::str::from_utf8(&digits).unwrap().parse().unwrap();
            let body_start = start + find(&pdf[start..], b"stream\n").unwrap() + b"stream\n".len();
            assert!(pdf[body_start + length..].starts_with(b"\nendstream"));
            search_from = body_start + length;
        }
    }

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    #[test]
    fn one_page_for_a_short_invoice() {
        let pdf = render_invoice(&document(1));
        assert_eq!(count(&pdf, b"/Type /Page "), 1);
        assert!(contains(&pdf, b"/Count 1 "));
        assert!(contains(&pdf, b"(Sida 1 av 1)"));
    }

    #[test]
    fn two_hundred_calls_flow_over_five_pages() {
        // Page 1 holds 41 rows below its header blocks, each continuation page 57:
        // 41 + 57 + 57 + 45 = 200. The summary still fits on page 4; the payment
        // block does not and opens page 5.
        let doc = document(200);
        let pages = layout(&doc);
        let rows_per_page: Vec<usize> = pages
            .iter()
            .map(|page| {
                page.ops
                    .iter()
                    .filter(|op| matches!(op, Op::Text { text, .. } if text == NEUTRAL_CALL_DESCRIPTION))
                    .count()
            })
            .collect();
        assert_eq!(rows_per_page, vec![41, 57, 57, 45, 0]);
        let pdf = render_invoice(&doc);
        assert_eq!(count(&pdf, b"/Type /Page "), 5);
        assert!(contains(&pdf, b"/Count 5 "));
        assert!(contains(&pdf, b"(Sida 5 av 5)"));
        assert_eq!(xref_entries(&pdf).len(), 5 + 2 * 5);
        // Every call row is printed once, and nothing is drawn below the bottom margin but the footer.
        assert_eq!(count(&pdf, b"(Samtal till betalnummer)"), 200);
        for page in &pages {
            for op in &page.ops {
                if let Op::Text { y, text, .. } = op {
                    assert!(*y >= BOTTOM || *y == FOOTER_Y, "{text} at {y}");
                    assert!(*y <= TOP, "{text} at {y}");
                }
            }
        }
        // The table header is repeated on each page with calls.
        assert_eq!(count(&pdf, b"(Beskrivning)"), 4);
    }

    #[test]
    fn invoice_text_is_in_the_content() {
        let pdf = render_invoice(&document(2));
        for needle in [
            &b"(Ange OCR-nummer vid betalning) Tj"[..],
            b"(1234574) Tj",
            b"(1 500,00 kr) Tj",
            b"(991-2346) Tj",
            b"(Fakturadatum) Tj",
            b"(2026-02-15) Tj",
            b"(Kundnummer) Tj",
            b"(K-1001) Tj",
            b"(OCR-nummer) Tj",
            b"(2026-02-28) Tj",
            b"(Period) Tj",
            b"(2026-01-01 \x96 2026-01-31) Tj",
            b"(Att betala) Tj",
            b"(0900-100 10 10) Tj",
            b"(Pappersfakturaavgift) Tj",
            b"(30,00 kr) Tj",
            b"(Rabatt \\(kampanj\\)) Tj",
            b"(-10,00 kr) Tj",
            b"(Tidigare saldo) Tj",
            b"(100,00 kr) Tj",
            b"(070-123 45 67) Tj",
            // Call 1: 65 s, 2 charged minutes, 59,80 kr; the summary of calls 29,90 + 59,80.
            b"(1:05) Tj",
            b"(59,80 kr) Tj",
            b"(89,70 kr) Tj",
            b"(Summa samtal inkl. moms) Tj",
            // The VAT block (mervärdesskattelagen 17 kap.): rate, base, VAT.
            b"(Momsspecifikation) Tj",
            b"(Moms 25 %) Tj",
            b"(1 200,00 kr) Tj",
            b"(300,00 kr) Tj",
            b"(Summa moms) Tj",
        ] {
            assert!(
                contains(&pdf, needle),
                "missing {}",
                String::from_utf8_lossy(needle)
            );
        }
    }

    #[test]
    fn swedish_letters_are_single_winansi_bytes() {
        let pdf = render_invoice(&document(1));
        assert!(contains(&pdf, b"(P\xe5minnelse)"));
        assert!(contains(&pdf, b"(\xc5sa \xd6berg)"));
        assert!(contains(&pdf, b"(\xc4ngsv\xe4gen 7)"));
        assert!(contains(&pdf, b"(F\xf6rfallodag)"));
        assert!(contains(&pdf, b"(L\xe4ngd)"));
        // No UTF-8 sequences for å (C3 A5) or ö (C3 B6).
        assert!(!contains(&pdf, b"\xc3\xa5"));
        assert!(!contains(&pdf, b"\xc3\xb6"));
        assert_eq!(
            pdf_string("é (a) \\ € → Ž"),
            b"(\xe9 \\(a\\) \\\\ \x80 ? \x8e)".to_vec()
        );
    }

    #[test]
    fn no_category_words_leak() {
        let pdf = render_invoice(&document(20));
        let lower: Vec<u8> = pdf.iter().map(u8::to_ascii_lowercase).collect();
        for word in ["tarot", "psykolog", "juridik", "erotik", "spådom", "chat"] {
            let encoded: Vec<u8> = word.chars().map(winansi).collect();
            assert!(!contains(&lower, &encoded), "{word}");
        }
        // The renderer prints what it is given, and only that.
        let mut doc = document(1);
        doc.lines[0].description = "Tarot".to_string();
        assert!(contains(&render_invoice(&doc), b"(Tarot)"));
    }

    #[test]
    fn long_texts_are_cut_not_overflowing() {
        let mut doc = document(1);
        doc.lines[0].description =
            "Samtal till betalnummer med en mycket lång förklarande text".to_string();
        let pages = layout(&doc);
        let described = pages[0]
            .ops
            .iter()
            .find_map(|op| match op {
                Op::Text {
                    x,
                    text,
                    size,
                    font,
                    ..
                } if *x == COL_DESCRIPTION && text.starts_with("Samtal") => {
                    Some((text.clone(), text_width(text, *font, *size)))
                }
                _ => None,
            })
            .unwrap();
        assert!(described.0.ends_with('…'), "{}", described.0);
        assert!(described.1 <= DESCRIPTION_WIDTH);
        assert_eq!(fit("kort", 100.0, Font::Regular, 9.0), "kort");
    }

    #[test]
    fn helpers() {
        assert_eq!(duration(0), "0:00");
        assert_eq!(duration(245), "4:05");
        assert_eq!(duration(3723), "1:02:03");
        // "1 500,00 kr" in Helvetica 9: digits 556, space 278, comma 278, k 500, r 333.
        let expected = (6.0 * 556.0 + 2.0 * 278.0 + 278.0 + 500.0 + 333.0) * 9.0 / 1000.0;
        assert!((text_width("1 500,00 kr", Font::Regular, 9.0) - expected).abs() < 1e-9);
        let wrapped = wrap("a b c", 13.0, Font::Regular, 9.0);
        assert_eq!(wrapped, vec!["a b".to_string(), "c".to_string()]);
        assert_eq!(wrap("", 100.0, Font::Regular, 9.0), Vec::<String>::new());
    }

    #[test]
    fn empty_invoice_still_renders() {
        let mut doc = document(0);
        doc.notes.clear();
        doc.fees.clear();
        doc.discounts.clear();
        doc.previous_balance = None;
        let pdf = render_invoice(&doc);
        assert!(contains(&pdf, b"(Inga samtal under perioden.)"));
        assert_eq!(count(&pdf, b"/Type /Page "), 1);
    }

    #[test]
    fn long_address_blocks_push_the_table_down() {
        let mut doc = document(1);
        doc.issuer_lines = (1..=8).map(|i| format!("Avsändarrad {i}")).collect();
        doc.address_lines = (1..=6).map(|i| format!("Adressrad {i}")).collect();
        let pages = layout(&doc);
        let y_of = |wanted: &str| {
            pages[0]
                .ops
                .iter()
                .find_map(|op| match op {
                    Op::Text { y, text, .. } if text == wanted => Some(*y),
                    _ => None,
                })
                .unwrap()
        };
        // Issuer lines end at 800 − 7 × 12.5 = 712.5; the name goes 17.5 points below it.
        assert_eq!(y_of("Avsändarrad 8"), 712.5);
        assert_eq!(y_of("Åsa Öberg"), 695.0);
        assert!(y_of("Adressrad 6") > y_of("Specifikation av samtal") + 15.0);
    }

    #[test]
    fn title_is_utf16() {
        assert_eq!(text_string("På"), "<FEFF005000E5>");
        let pdf = render_invoice(&document(1));
        assert!(contains(
            &pdf,
            b"/Title <FEFF005000E5006D0069006E006E0065006C00730065002000310032003300340035>"
        ));
    }

    #[test]
    fn deterministic() {
        assert_eq!(render_invoice(&document(30)), render_invoice(&document(30)));
    }
}
