//! How the bytes of a PDF are written (SPEC R12): a deliberately small
//! PDF 1.4 writer with no dependencies — A4 pages, the standard Helvetica
//! and Helvetica-Bold fonts with WinAnsiEncoding (so å, ä, ö and the rest of
//! Latin-1 are single bytes and no font is embedded), text and horizontal
//! rules only, uncompressed content streams (an invoice is a few kilobytes,
//! and tests and auditors can read the text in the file), and an exact
//! cross-reference table. What goes on the pages is decided by
//! `billing::layout` (issue 12: what an invoice says apart from how PDF is
//! written; docs/architecture.md on why not a PDF crate).
//!
//! Its tests are with the layout, through whole documents.

use std::fmt::Write as _;

/// A4 in points.
pub const PAGE_WIDTH: f64 = 595.0;
pub const PAGE_HEIGHT: f64 = 842.0;

/// The two fonts of a document.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Font {
    Regular,
    Bold,
}

impl Font {
    fn resource(self) -> &'static str {
        match self {
            Font::Regular => "F1",
            Font::Bold => "F2",
        }
    }
}

/// One drawing operation on a page.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Text {
        x: f64,
        y: f64,
        font: Font,
        size: f64,
        text: String,
    },
    Rule {
        x1: f64,
        x2: f64,
        y: f64,
        width: f64,
    },
}

/// A page: its operations, in order.
#[derive(Default)]
pub struct Page {
    pub ops: Vec<Op>,
}

/// `text` cut to `max_width` points, ending in "…" when cut.
pub fn fit(text: &str, max_width: f64, font: Font, size: f64) -> String {
    if text_width(text, font, size) <= max_width {
        return text.to_string();
    }
    let ellipsis = '…';
    let mut out = String::new();
    for c in text.chars() {
        out.push(c);
        out.push(ellipsis);
        let too_wide = text_width(&out, font, size) > max_width;
        out.pop();
        if too_wide {
            out.pop();
            break;
        }
    }
    let trimmed = out.trim_end().to_string();
    trimmed + "…"
}

/// Greedy word wrap to `max_width` points; a word wider than a line is cut.
pub fn wrap(text: &str, max_width: f64, font: Font, size: f64) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let candidate = if current.is_empty() {
            word.to_string()
        } else {
            format!("{current} {word}")
        };
        if text_width(&candidate, font, size) <= max_width || current.is_empty() {
            current = candidate;
        } else {
            lines.push(std::mem::take(&mut current));
            current = word.to_string();
        }
        if text_width(&current, font, size) > max_width {
            lines.push(fit(&current, max_width, font, size));
            current.clear();
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

// ---------------------------------------------------------------------------
// Text encoding and metrics

/// The WinAnsiEncoding byte for `c`; `?` for characters it cannot show.
/// WinAnsi equals Latin-1 for 0xA0–0xFF and ASCII below 0x80.
pub fn winansi(c: char) -> u8 {
    let code = u32::from(c);
    match code {
        0x20..=0x7E | 0xA0..=0xFF => code as u8,
        _ => match c {
            '\t' | '\n' | '\r' => b' ',
            '€' => 0x80,
            '‚' => 0x82,
            'ƒ' => 0x83,
            '„' => 0x84,
            '…' => 0x85,
            '†' => 0x86,
            '‡' => 0x87,
            'ˆ' => 0x88,
            '‰' => 0x89,
            'Š' => 0x8A,
            '‹' => 0x8B,
            'Œ' => 0x8C,
            'Ž' => 0x8E,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            '•' => 0x95,
            '–' => 0x96,
            '—' => 0x97,
            '˜' => 0x98,
            '™' => 0x99,
            'š' => 0x9A,
            '›' => 0x9B,
            'œ' => 0x9C,
            'ž' => 0x9E,
            'Ÿ' => 0x9F,
            '\u{2212}' => b'-',
            '\u{2007}' | '\u{2009}' | '\u{202F}' => 0xA0,
            _ => b'?',
        },
    }
}

/// A PDF literal string in WinAnsi bytes, parentheses and backslashes escaped.
pub fn pdf_string(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 2);
    out.push(b'(');
    for c in text.chars() {
        let b = winansi(c);
        if matches!(b, b'(' | b')' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b')');
    out
}

/// A PDF text string (outside content streams) as UTF-16BE hex with a byte
/// order mark: exact for any character, unlike PDFDocEncoding.
pub fn text_string(text: &str) -> String {
    let mut hex = String::from("<FEFF");
    for unit in text.encode_utf16() {
        let _ = write!(hex, "{unit:04X}");
    }
    hex.push('>');
    hex
}

/// Advance widths (1/1000 em) of ASCII 0x20–0x7E in the standard Helvetica.
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278,
    278, // space–/
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, // 0–?
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, // @–O
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, // P–_
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, // `–o
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, // p–~
];

/// Advance widths of ASCII 0x20–0x7E in the standard Helvetica-Bold.
const HELVETICA_BOLD: [u16; 95] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278,
    278, // space–/
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611, // 0–?
    975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778, // @–O
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556, // P–_
    333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611, // `–o
    611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584, // p–~
];

/// The printed width of `text` in points. Exact for ASCII; Latin-1 letters
/// use a typical width of their case (close enough for alignment and cutting).
pub fn text_width(text: &str, font: Font, size: f64) -> f64 {
    let table = match font {
        Font::Regular => &HELVETICA,
        Font::Bold => &HELVETICA_BOLD,
    };
    let units: u64 = text
        .chars()
        .map(|c| {
            let b = winansi(c);
            let w = match b {
                0x20..=0x7E => table[usize::from(b - 0x20)],
                0x85 | 0x97 | 0x89 => 1000,
                0xA0 => 278,
                0xC0..=0xDE => 722,
                0xDF..=0xFF => 556,
                _ => 556,
            };
            u64::from(w)
        })
        .sum();
    units as f64 * size / 1000.0
}

// ---------------------------------------------------------------------------
// PDF file structure

/// Serialises the pages: catalog (1), page tree (2), the two fonts (3, 4),
/// the info dictionary (5), then a page object and its content stream for
/// each page.
pub fn write_pdf(pages: &[Page], title: &str) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    let mut offsets: Vec<usize> = Vec::new();
    out.extend_from_slice(b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n");

    let first_page_object = 6;
    let kids: Vec<String> = (0..pages.len())
        .map(|i| format!("{} 0 R", first_page_object + 2 * i))
        .collect();

    let mut objects: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        format!(
            "<< /Type /Pages /Kids [{}] /Count {} /MediaBox [0 0 {PAGE_WIDTH} {PAGE_HEIGHT}] >>",
            kids.join(" "),
            pages.len()
        )
        .into_bytes(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_vec(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>"
            .to_vec(),
    ];
    objects.push(format!("<< /Producer (callauth) /Title {} >>", text_string(title)).into_bytes());

    for (i, page) in pages.iter().enumerate() {
        let content_object = first_page_object + 2 * i + 1;
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_WIDTH} {PAGE_HEIGHT}] \
                 /Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents {content_object} 0 R >>"
            )
            .into_bytes(),
        );
        let content = content_stream(page);
        let mut stream = format!("<< /Length {} >>\nstream\n", content.len()).into_bytes();
        stream.extend(content);
        stream.extend_from_slice(b"\nendstream");
        objects.push(stream);
    }

    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n", i + 1).into_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    }

    let xref_offset = out.len();
    let mut xref = format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for offset in &offsets {
        // Each entry is exactly 20 bytes, the end of line included.
        let _ = writeln!(xref, "{offset:010} 00000 n ");
    }
    let _ = write!(
        xref,
        "trailer\n<< /Size {} /Root 1 0 R /Info 5 0 R >>\nstartxref\n{xref_offset}\n%%EOF\n",
        objects.len() + 1
    );
    out.extend(xref.into_bytes());
    out
}

fn content_stream(page: &Page) -> Vec<u8> {
    let mut out = Vec::new();
    for op in &page.ops {
        match op {
            Op::Text {
                x,
                y,
                font,
                size,
                text,
            } => {
                out.extend(
                    format!("BT /{} {size:.1} Tf {x:.2} {y:.2} Td ", font.resource()).into_bytes(),
                );
                out.extend(pdf_string(text));
                out.extend_from_slice(b" Tj ET\n");
            }
            Op::Rule { x1, x2, y, width } => {
                out.extend(
                    format!("{width:.2} w {x1:.2} {y:.2} m {x2:.2} {y:.2} l S\n").into_bytes(),
                );
            }
        }
    }
    out
}
