//! OCR references for bankgiro payments (SPEC R12, reference/sweden.md §3.2).
//!
//! We issue references at Bankgirot's "variable length" control level: the
//! invoice number, then a length digit (the total length mod 10), then the
//! mod-10 check digit computed over everything before it, length digit
//! included. 12345 → "1234574". The check digit itself is computed by
//! [`crate::domain::luhn`]; this module only adds the length rule, the 2–25
//! digit bounds and the mapping back to the invoice number.
//!
//! Trade-off: [`parse`] validates at the level the caller names, because
//! payments arrive with references that other parties typed (soft control
//! lets a wrong reference through), while [`payload`] is strict: it returns
//! an invoice number only for a reference exactly as [`ocr_for`] would have
//! issued it, so a mistyped reference never matches the wrong invoice.

use std::fmt;

use crate::domain::luhn;

/// The fewest digits an OCR reference may have (Bankgirot).
pub const MIN_LEN: usize = 2;
/// The most digits an OCR reference may have (Bankgirot).
pub const MAX_LEN: usize = 25;

/// A validated OCR reference: ASCII digits only, 2–25 of them, with a correct
/// check digit (and a correct length digit when parsed at that level).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ocr(String);

/// How much of the reference is checked, as agreed with the bank (sweden.md
/// §3.2: soft/hard control check the check digit; "variable length" also the
/// length digit).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum OcrLevel {
    /// The last digit is the mod-10 check digit of the others.
    CheckDigit,
    /// As `CheckDigit`, and the second-to-last digit is the total length mod 10.
    CheckDigitAndLength,
}

/// Why a string is not an acceptable OCR reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcrError {
    #[error("OCR reference is empty")]
    Empty,
    #[error(
        "OCR reference contains '{character}' at position {position}: only digits are allowed"
    )]
    NotDigit { character: char, position: usize },
    #[error("OCR reference has {len_digits} digits: at least {MIN_LEN} are required")]
    TooShort { len_digits: usize },
    #[error("OCR reference has {len_digits} digits: at most {MAX_LEN} are allowed")]
    TooLong { len_digits: usize },
    #[error("OCR reference check digit is {found}, expected {expected}")]
    WrongCheckDigit { expected: u8, found: u8 },
    #[error(
        "OCR reference length digit is {found}, expected {expected} (length {len_digits} mod 10)"
    )]
    WrongLengthDigit {
        expected: u8,
        found: u8,
        len_digits: usize,
    },
}

impl Ocr {
    /// The digits of the reference.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Ocr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Ocr {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The reference we print on the invoice with number `payload`: its digits,
/// the length digit and the check digit. At most 20 + 2 = 22 digits, so every
/// `u64` gives a valid reference.
pub fn ocr_for(payload: u64) -> Ocr {
    let mut digits = payload.to_string();
    let length_digit = (digits.len() + 2) % 10;
    digits.push(char::from(b'0' + length_digit as u8));
    let check = luhn::check_digit(&digits).expect("u64 decimal digits are ASCII digits");
    digits.push(char::from(b'0' + check));
    Ocr(digits)
}

/// Validates a reference at `level`. Surrounding whitespace is ignored (it is
/// how references arrive from forms and files); anything else but digits is
/// refused.
pub fn parse(s: &str, level: OcrLevel) -> Result<Ocr, OcrError> {
    let digits = s.trim();
    if digits.is_empty() {
        return Err(OcrError::Empty);
    }
    if let Some((position, character)) = digits
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_digit())
    {
        return Err(OcrError::NotDigit {
            character,
            position: position + 1,
        });
    }
    // Only ASCII digits remain, so bytes and characters coincide.
    let len_digits = digits.len();
    if len_digits < MIN_LEN {
        return Err(OcrError::TooShort { len_digits });
    }
    if len_digits > MAX_LEN {
        return Err(OcrError::TooLong { len_digits });
    }
    let bytes = digits.as_bytes();
    let (body, check) = digits.split_at(len_digits - 1);
    let expected = luhn::check_digit(body).expect("checked: digits only");
    let found = check.as_bytes()[0] - b'0';
    if expected != found {
        return Err(OcrError::WrongCheckDigit { expected, found });
    }
    if level == OcrLevel::CheckDigitAndLength {
        let expected = (len_digits % 10) as u8;
        let found = bytes[len_digits - 2] - b'0';
        if expected != found {
            return Err(OcrError::WrongLengthDigit {
                expected,
                found,
                len_digits,
            });
        }
    }
    Ok(Ocr(digits.to_string()))
}

/// The invoice number behind a reference we issued with [`ocr_for`], or `None`
/// when the reference is not exactly one of ours (wrong length digit, leading
/// zeros we never print, a payload that does not fit a `u64`).
pub fn payload(ocr: &Ocr) -> Option<u64> {
    let digits = ocr.as_str();
    if digits.len() < 3 {
        return None;
    }
    let payload: u64 = digits[..digits.len() - 2].parse().ok()?;
    // Re-issuing is the whole check: length digit, check digit, no leading zeros.
    (ocr_for(payload) == *ocr).then_some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_from_the_reference() {
        // sweden.md §3.2: 12345 → length digit 7 → "123457" → check digit 4.
        assert_eq!(ocr_for(12345).as_str(), "1234574");
        assert_eq!(ocr_for(12345).to_string(), "1234574");
        assert_eq!(ocr_for(0).as_str(), "034");
        assert_eq!(ocr_for(u64::MAX).as_str().len(), 22);
    }

    #[test]
    fn bankgirot_samples_are_valid_at_both_levels() {
        for s in [
            "0072019122420063",
            "18108401345678778",
            "1018966492531",
            "1202951008",
            "1636976",
            "1234574",
        ] {
            let ocr =
                parse(s, OcrLevel::CheckDigitAndLength).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(ocr.as_str(), s);
            assert_eq!(parse(s, OcrLevel::CheckDigit).unwrap().as_str(), s);
        }
    }

    #[test]
    fn round_trips_through_payload() {
        for n in [
            0u64,
            1,
            9,
            10,
            12345,
            99_999_999,
            1_000_000_000_000,
            u64::MAX,
        ] {
            let ocr = ocr_for(n);
            let parsed = parse(ocr.as_str(), OcrLevel::CheckDigitAndLength).unwrap();
            assert_eq!(parsed, ocr);
            assert_eq!(payload(&parsed), Some(n), "{ocr}");
        }
        // Every length from 3 to 22 digits, including the ones whose length digit wraps (10 → 0, 20 → 0).
        let mut n = 1u64;
        for _ in 0..19 {
            let ocr = ocr_for(n);
            assert!(
                parse(ocr.as_str(), OcrLevel::CheckDigitAndLength).is_ok(),
                "{ocr}"
            );
            assert_eq!(payload(&ocr), Some(n));
            n = n.saturating_mul(10);
        }
        assert_eq!(ocr_for(12_345_678).as_str().len(), 10);
        assert_eq!(&ocr_for(12_345_678).as_str()[8..9], "0");
    }

    #[test]
    fn payload_refuses_references_we_did_not_issue() {
        // Valid at both levels but with a leading zero: ocr_for never prints one.
        let foreign = parse("0072019122420063", OcrLevel::CheckDigitAndLength).unwrap();
        assert_eq!(payload(&foreign), None);
        // Valid check digit, no length digit.
        let soft = parse("123455", OcrLevel::CheckDigit).unwrap();
        assert_eq!(payload(&soft), None);
        // Too short to hold a payload.
        let short = parse("26", OcrLevel::CheckDigit).unwrap();
        assert_eq!(payload(&short), None);
    }

    #[test]
    fn trims_surrounding_whitespace_only() {
        assert_eq!(
            parse("  1234574 ", OcrLevel::CheckDigitAndLength)
                .unwrap()
                .as_str(),
            "1234574"
        );
        assert_eq!(
            parse("1234 574", OcrLevel::CheckDigit),
            Err(OcrError::NotDigit {
                character: ' ',
                position: 5
            })
        );
    }

    #[test]
    fn rejections() {
        assert_eq!(parse("", OcrLevel::CheckDigit), Err(OcrError::Empty));
        assert_eq!(parse("   ", OcrLevel::CheckDigit), Err(OcrError::Empty));
        assert_eq!(
            parse("12a4574", OcrLevel::CheckDigit),
            Err(OcrError::NotDigit {
                character: 'a',
                position: 3
            })
        );
        assert_eq!(
            parse("１２", OcrLevel::CheckDigit),
            Err(OcrError::NotDigit {
                character: '１',
                position: 1
            })
        );
        assert_eq!(
            parse("7", OcrLevel::CheckDigit),
            Err(OcrError::TooShort { len_digits: 1 })
        );
        // 26 digits, even with a correct check digit.
        let body = "1".repeat(25);
        let check = luhn::check_digit(&body).unwrap();
        let long = format!("{body}{check}");
        assert_eq!(
            parse(&long, OcrLevel::CheckDigit),
            Err(OcrError::TooLong { len_digits: 26 })
        );
        assert_eq!(
            parse("1234575", OcrLevel::CheckDigitAndLength),
            Err(OcrError::WrongCheckDigit {
                expected: 4,
                found: 5
            })
        );
        // "123455" has a correct check digit but its length digit is 5, not 6.
        assert_eq!(
            parse("123455", OcrLevel::CheckDigitAndLength),
            Err(OcrError::WrongLengthDigit {
                expected: 6,
                found: 5,
                len_digits: 6
            })
        );
        assert!(parse("123455", OcrLevel::CheckDigit).is_ok());
    }

    #[test]
    fn error_messages_are_readable() {
        assert_eq!(
            OcrError::WrongCheckDigit {
                expected: 4,
                found: 5
            }
            .to_string(),
            "OCR reference check digit is 5, expected 4"
        );
        assert_eq!(
            OcrError::TooLong { len_digits: 26 }.to_string(),
            "OCR reference has 26 digits: at most 25 are allowed"
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn issued_references_parse_and_map_back(n in any::<u64>()) {
                let ocr = ocr_for(n);
                prop_assert_eq!(parse(ocr.as_str(), OcrLevel::CheckDigitAndLength), Ok(ocr.clone()));
                prop_assert_eq!(payload(&ocr), Some(n));
            }

            /// A single changed digit is always caught by the check digit.
            #[test]
            fn one_wrong_digit_is_refused(n in any::<u64>(), position in 0usize..22, delta in 1u8..10) {
                let ocr = ocr_for(n);
                let mut bytes = ocr.as_str().as_bytes().to_vec();
                let i = position % bytes.len();
                bytes[i] = b'0' + (bytes[i] - b'0' + delta) % 10;
                let changed = String::from_utf8(bytes).unwrap();
                prop_assert!(parse(&changed, OcrLevel::CheckDigit).is_err());
            }

            #[test]
            fn never_panics(s in "\\PC{0,30}") {
                let _ = parse(&s, OcrLevel::CheckDigitAndLength);
            }
        }
    }
}
