//! Free text from clients: the one rule every string field of both gRPC APIs
//! goes through (issue 10), so that what a client writes can be stored,
//! logged, put in a JSON event and in PostgreSQL `text` and `jsonb` as is.
//!
//! Free text is one line of printable Unicode of at most a documented number
//! of characters (the table is in `docs/api.md`). Refused are the control
//! characters (Unicode category Cc: NUL, tab, line feed, carriage return,
//! escape, DEL and the C1 controls; PostgreSQL refuses NUL in `text` and
//! `jsonb`, and a newline forges log lines and document layouts), the line
//! and paragraph separators U+2028 and U+2029, and the bidirectional
//! embedding, override and isolate controls U+202A–U+202E and U+2066–U+2069
//! (which make a stored name read differently from what it is). Letters of
//! every script, Swedish å, ä, ö included, and all punctuation are accepted.
//!
//! Identifiers have grammars of their own ([`super::ids`], [`super::E164`],
//! prepaid codes); this module also checks the few small grammars that are
//! not types (digit strings such as OCR references, e-mail addresses).
//!
//! Errors name the field and never repeat the value: a request that carries
//! a name, an address or a number must not have it echoed back into logs and
//! status messages. The offending character is named by its code point only.
//! Lengths count characters (Unicode scalar values), not bytes, so "Åsa" is
//! three; checking stops at the first character past the limit, so an
//! unbounded input costs no more than the limit to refuse.

/// Why a piece of client text was refused. The texts name the field, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("{field} is required")]
    Missing { field: &'static str },
    #[error("{field} is longer than {max_chars} characters")]
    TooLong {
        field: &'static str,
        max_chars: usize,
    },
    #[error(
        "{field} contains the control character U+{code_point:04X}: write plain text on one line"
    )]
    Control {
        field: &'static str,
        code_point: u32,
    },
    #[error("{field} {expected}")]
    Grammar {
        field: &'static str,
        expected: &'static str,
    },
}

impl TextError {
    /// The field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            TextError::Missing { field }
            | TextError::TooLong { field, .. }
            | TextError::Control { field, .. }
            | TextError::Grammar { field, .. } => field,
        }
    }
}

/// Whether `c` may not appear in client text (see the module documentation).
pub fn is_refused(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// `value` if it is free text of at most `max_chars` characters; empty is allowed.
pub fn checked_text<'a>(
    field: &'static str,
    value: &'a str,
    max_chars: usize,
) -> Result<&'a str, TextError> {
    for (count, c) in value.chars().enumerate() {
        if count == max_chars {
            return Err(TextError::TooLong { field, max_chars });
        }
        if is_refused(c) {
            return Err(TextError::Control {
                field,
                code_point: u32::from(c),
            });
        }
    }
    Ok(value)
}

/// Like [`checked_text`], trimmed, and not empty after trimming.
pub fn required_text<'a>(
    field: &'static str,
    value: &'a str,
    max_chars: usize,
) -> Result<&'a str, TextError> {
    let value = checked_text(field, value, max_chars)?.trim();
    if value.is_empty() {
        return Err(TextError::Missing { field });
    }
    Ok(value)
}

/// `value` if it is `min_digits..=max_digits` ASCII digits (OCR references,
/// invoice ids); `expected` says so in the error, e.g. "must be 2–25 digits".
pub fn checked_digits<'a>(
    field: &'static str,
    value: &'a str,
    min_digits: usize,
    max_digits: usize,
    expected: &'static str,
) -> Result<&'a str, TextError> {
    checked_text(field, value, max_digits)?;
    if value.len() < min_digits || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TextError::Grammar { field, expected });
    }
    Ok(value)
}

/// The longest e-mail address accepted (RFC 5321: 254 octets in a path).
pub const MAX_EMAIL_CHARS: usize = 254;

/// `value` (trimmed) if it reads as one e-mail address: a local part, one
/// `@`, a domain with a dot, no spaces, at most [`MAX_EMAIL_CHARS`]. Whether
/// mail arrives is for the mail server to say; this keeps out what is
/// certainly not an address.
pub fn checked_email<'a>(field: &'static str, value: &'a str) -> Result<&'a str, TextError> {
    let value = checked_text(field, value, MAX_EMAIL_CHARS)?.trim();
    let grammar = TextError::Grammar {
        field,
        expected: "must be one e-mail address (name@example.se)",
    };
    let Some((local, domain)) = value.split_once('@') else {
        return Err(grammar);
    };
    if local.is_empty()
        || domain.len() < 3
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains('@')
        || value.chars().any(char::is_whitespace)
    {
        return Err(grammar);
    }
    Ok(value)
}

/// The longest Swedish organisation number as written: "NNNNNN-NNNN".
pub const MAX_ORG_NUMBER_CHARS: usize = 11;

/// `value` (trimmed) if it is empty or a Swedish organisation number written
/// as ten digits, optionally with a dash after the sixth ("556677-8899").
/// The check digit is not verified: the number is printed on statements, not
/// used to pay.
pub fn checked_org_number<'a>(field: &'static str, value: &'a str) -> Result<&'a str, TextError> {
    let value = checked_text(field, value, MAX_ORG_NUMBER_CHARS + 4)?.trim();
    if value.is_empty() {
        return Ok(value);
    }
    let digits: String = value.chars().filter(|c| *c != '-').collect();
    let dash_ok = match value.find('-') {
        None => true,
        Some(i) => i == 6 && value.matches('-').count() == 1,
    };
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) || !dash_ok {
        return Err(TextError::Grammar {
            field,
            expected: "must be a Swedish organisation number (NNNNNN-NNNN)",
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_is_one_printable_line() {
        assert_eq!(
            checked_text("name", "Åsa Östlund-Svensson, c/o Ärlig", 40),
            Ok("Åsa Östlund-Svensson, c/o Ärlig")
        );
        assert_eq!(checked_text("name", "", 40), Ok(""));
        for (bad, code_point) in [
            ("a\0b", 0x0),
            ("a\nb", 0xA),
            ("a\rb", 0xD),
            ("a\tb", 0x9),
            ("a\u{7f}b", 0x7F),
            ("a\u{85}b", 0x85),
            ("a\u{2028}b", 0x2028),
            ("a\u{2029}b", 0x2029),
            ("a\u{202e}b", 0x202E),
            ("a\u{2066}b", 0x2066),
        ] {
            assert_eq!(
                checked_text("reason", bad, 40),
                Err(TextError::Control {
                    field: "reason",
                    code_point
                }),
                "{bad:?}"
            );
        }
        let e = checked_text("ivr_id", "node\0", 40).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ivr_id contains the control character U+0000: write plain text on one line"
        );
        assert!(!e.to_string().contains("node"));
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        // "å" is two bytes and one character: three of them fit in three.
        assert!(checked_text("name", "ååå", 3).is_ok());
        assert_eq!(
            checked_text("name", "åååå", 3),
            Err(TextError::TooLong {
                field: "name",
                max_chars: 3
            })
        );
        assert_eq!(
            checked_text("name", &"x".repeat(1 << 20), 128)
                .unwrap_err()
                .to_string(),
            "name is longer than 128 characters"
        );
    }

    #[test]
    fn required_text_is_trimmed_and_not_blank() {
        assert_eq!(required_text("reason", "  form 12 ", 40), Ok("form 12"));
        assert_eq!(
            required_text("reason", "   ", 40),
            Err(TextError::Missing { field: "reason" })
        );
        assert!(required_text("reason", " a\u{0} ", 40).is_err());
    }

    #[test]
    fn digits_emails_and_org_numbers() {
        let expected = "must be 2–25 digits";
        assert_eq!(checked_digits("ocr", "1234", 2, 25, expected), Ok("1234"));
        assert!(checked_digits("ocr", "1", 2, 25, expected).is_err());
        assert!(checked_digits("ocr", "12a4", 2, 25, expected).is_err());
        assert!(checked_digits("ocr", &"1".repeat(26), 2, 25, expected).is_err());
        assert_eq!(
            checked_digits("ocr", "12 4", 2, 25, expected)
                .unwrap_err()
                .to_string(),
            "ocr must be 2–25 digits"
        );

        assert_eq!(
            checked_email("email", " anna@example.se "),
            Ok("anna@example.se")
        );
        for bad in [
            "anna",
            "@example.se",
            "anna@",
            "anna@se",
            "anna@.se",
            "anna@example.",
            "an na@example.se",
            "anna@ex@ample.se",
            "anna\0@example.se",
        ] {
            assert!(checked_email("email", bad).is_err(), "{bad:?}");
        }
        assert!(checked_email("email", &format!("{}@example.se", "a".repeat(250))).is_err());

        for ok in ["556677-8899", "5566778899", ""] {
            assert!(checked_org_number("org_number", ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "556677-889",
            "55667-78899",
            "556677--8899",
            "5566-778899",
            "abcdef-ghij",
        ] {
            assert!(checked_org_number("org_number", bad).is_err(), "{bad:?}");
        }
    }
}
