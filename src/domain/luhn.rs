//! The modulus-10 (Luhn) check digit used by Swedish bankgiro OCR references
//! (SPEC R12) and by our prepaid codes (R17).
//!
//! Weights 2,1,2,1… from the digit immediately left of the check digit;
//! a product of 10 or more contributes its digit sum.

/// The check digit for `payload` (ASCII digits only; `None` otherwise).
pub fn check_digit(payload: &str) -> Option<u8> {
    let mut sum = 0u32;
    for (i, b) in payload.bytes().rev().enumerate() {
        if !b.is_ascii_digit() {
            return None;
        }
        let d = u32::from(b - b'0');
        let v = if i % 2 == 0 { d * 2 } else { d };
        sum += if v > 9 { v - 9 } else { v };
    }
    Some(((10 - sum % 10) % 10) as u8)
}

/// True when the last digit of `digits` is the check digit of the rest.
pub fn is_valid(digits: &str) -> bool {
    if digits.len() < 2 {
        return false;
    }
    let (payload, check) = digits.split_at(digits.len() - 1);
    match (check_digit(payload), check.as_bytes()[0]) {
        (Some(expected), b) if b.is_ascii_digit() => expected == b - b'0',
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_references() {
        // Worked examples from reference/sweden.md §3.2.
        assert_eq!(check_digit("12345"), Some(5));
        assert!(is_valid("123455"));
        assert!(is_valid("1234574"));
        for ocr in [
            "0072019122420063",
            "18108401345678778",
            "1018966492531",
            "1202951008",
            "1636976",
        ] {
            assert!(is_valid(ocr), "{ocr}");
        }
        // Bankgiro numbers of the Bankgirot sample file.
        assert!(is_valid("9912346"));
        assert!(is_valid("3783511"));
        // Personnummer check digit (same algorithm): 640823-3234.
        assert!(is_valid("6408233234"));
    }

    #[test]
    fn rejects_wrong_digits() {
        assert!(!is_valid("1234575"));
        assert!(!is_valid("12a4574"));
        assert!(!is_valid("7"));
        assert_eq!(check_digit("12x"), None);
    }
}
