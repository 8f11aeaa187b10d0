//! Phone numbers: normalisation to E.164 and classification (SPEC R1, R2).
//!
//! Accepted input: E.164 (`+46701234567`), international with `00`
//! (`0046701234567`), and Swedish national form with the trunk prefix
//! (`070-123 45 67`, `0900-123 45 67`), with spaces, dashes, dots, slashes,
//! parentheses and a `(0)` after the country code. A bare number without `+`,
//! `00` or `0` is refused: whether `46…` or `70…` is national or international
//! cannot be known, and guessing would invoice the wrong person.
//!
//! Swedish numbers are checked against the numbering plan closely enough to
//! refuse garbage (lengths per libphonenumber's SE metadata: 6–10 or 12 digits
//! after the country code; mobile exactly `7[02369]` + 7 digits; premium
//! `9(00|39|44)[1-8]` + 3–6 digits). Foreign numbers are only checked for the
//! E.164 shape: they cannot be invoiced anyway (R2).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A normalised E.164 number, e.g. `+46701234567`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct E164(Arc<str>);

/// What kind of line a number is (PTS numbering plan, reference/sweden.md §2.1, §4).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum NumberKind {
    SwedishMobile,
    SwedishGeographic,
    /// 0900 information, 0939 other, 0944 entertainment services.
    SwedishPremium,
    /// 020 freephone.
    SwedishTollFree,
    /// 075 personal numbers.
    SwedishPersonal,
    /// 077 shared cost.
    SwedishSharedCost,
    /// 071 telematics / M2M, 074 paging, 010 location-independent, others.
    SwedishOther,
    Foreign,
}

/// Why a number was refused. The texts never repeat the number: a phone
/// number is personal data, and an error travels into status messages and
/// logs (a 4 MB "number" was once echoed whole into `grpc-message`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("is empty")]
    Empty,
    #[error("contains characters that are not part of a phone number")]
    BadCharacters,
    #[error("has no prefix: write E.164 (+46…), 00… or Swedish national form (0…)")]
    NoPrefix,
    #[error("is not a valid Swedish number")]
    InvalidSwedish,
    #[error("is not a valid international number")]
    InvalidInternational,
}

impl E164 {
    /// Normalises a number as written or delivered by the network.
    pub fn parse(input: &str) -> Result<E164, NumberError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(NumberError::Empty);
        }
        // "+46 (0)70 …" is a common way to write a Swedish number for both audiences.
        let (head, tail) = match trimmed.find("(0)") {
            Some(i) => (&trimmed[..i], &trimmed[i + 3..]),
            None => (trimmed, ""),
        };
        // "+" and the digits, then the prefix rewritten in place, on the
        // stack for any number that can be valid: the only allocation is the
        // number's own (issue 13.2: two numbers are parsed per Authorize).
        let mut stack = [0u8; 40];
        let mut heap = Vec::new();
        let cap = trimmed.len() + 3;
        let buf: &mut [u8] = if cap <= stack.len() {
            &mut stack[..cap]
        } else {
            heap.resize(cap, 0);
            &mut heap[..]
        };
        buf[0] = b'+';
        let mut len = 1;
        let mut plus = false;
        for (i, c) in head.chars().chain(tail.chars()).enumerate() {
            match c {
                '0'..='9' => {
                    buf[len] = c as u8;
                    len += 1;
                }
                '+' if i == 0 => plus = true,
                ' ' | '-' | '.' | '/' | '(' | ')' | '\u{a0}' => {}
                _ => return Err(NumberError::BadCharacters),
            }
        }
        if len == 1 {
            return Err(NumberError::Empty);
        }
        if !plus {
            if buf[1..len].starts_with(b"00") {
                buf.copy_within(3..len, 1);
                len -= 2;
            } else if buf[1..len].starts_with(b"0") {
                buf.copy_within(2..len, 3);
                buf[1..3].copy_from_slice(b"46");
                len += 1;
            } else {
                return Err(NumberError::NoPrefix);
            }
        }
        let out = std::str::from_utf8(&buf[..len]).expect("'+' and ASCII digits");
        let international = &out[1..];
        if let Some(nsn) = international.strip_prefix("46") {
            if !valid_swedish_nsn(nsn) {
                return Err(NumberError::InvalidSwedish);
            }
        } else if !(8..=15).contains(&international.len()) || international.starts_with('0') {
            return Err(NumberError::InvalidInternational);
        }
        Ok(E164(Arc::from(out)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits after `+`.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }

    pub fn is_swedish(&self) -> bool {
        self.0.starts_with("+46")
    }

    /// The national significant number of a Swedish number (without `+46`).
    fn swedish_nsn(&self) -> Option<&str> {
        self.0.strip_prefix("+46")
    }

    pub fn kind(&self) -> NumberKind {
        let Some(nsn) = self.swedish_nsn() else {
            return NumberKind::Foreign;
        };
        classify_swedish(nsn)
    }

    /// Swedish display form, e.g. "070-123 45 67", "0900-123 45 67", "08-123 456 78".
    /// Foreign numbers are shown in E.164.
    pub fn national_display(&self) -> String {
        let Some(nsn) = self.swedish_nsn() else {
            return self.0.to_string();
        };
        let area_len = match nsn.as_bytes()[0] {
            b'8' => 1,
            b'9' if is_premium(nsn) => 3,
            b'7' | b'1' | b'2' | b'3' | b'4' | b'5' | b'6' | b'9' => 2,
            _ => 2,
        };
        let (area, subscriber) = nsn.split_at(area_len.min(nsn.len()));
        format!("0{area}-{}", group_subscriber(subscriber))
    }

    /// The number with all but the country code, two leading and two trailing
    /// digits hidden, for logs (DESIGN invariant 10): "+4670*****67".
    pub fn masked(&self) -> Masked<'_> {
        Masked(self)
    }
}

/// Display adapter that masks a number for logs.
pub struct Masked<'a>(&'a E164);

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_str();
        let keep_head = if s.starts_with("+46") { 5 } else { 4 };
        if s.len() <= keep_head + 2 {
            return f.write_str("+***");
        }
        let hidden = s.len() - keep_head - 2;
        write!(
            f,
            "{}{}{}",
            &s[..keep_head],
            "*".repeat(hidden),
            &s[s.len() - 2..]
        )
    }
}

/// E164 prints masked by default, so that a number never reaches a log in clear
/// by accident; use `as_str()` where the full number is meant (stores, invoices).
impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Masked(self).fmt(f)
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E164({})", Masked(self))
    }
}

impl TryFrom<String> for E164 {
    type Error = NumberError;
    fn try_from(s: String) -> Result<E164, NumberError> {
        E164::parse(&s)
    }
}

impl From<E164> for String {
    fn from(n: E164) -> String {
        n.0.to_string()
    }
}

fn is_premium(nsn: &str) -> bool {
    let b = nsn.as_bytes();
    (nsn.starts_with("900") || nsn.starts_with("939") || nsn.starts_with("944"))
        && (7..=10).contains(&nsn.len())
        && (b'1'..=b'8').contains(&b[3])
}

fn is_mobile(nsn: &str) -> bool {
    let b = nsn.as_bytes();
    nsn.len() == 9 && b[0] == b'7' && matches!(b[1], b'0' | b'2' | b'3' | b'6' | b'9')
}

fn valid_swedish_nsn(nsn: &str) -> bool {
    let b = nsn.as_bytes();
    if !matches!(nsn.len(), 6..=10 | 12) || b[0] == b'0' {
        return false;
    }
    match b[0] {
        // Mobile ranges must be exactly 9 digits; other 07x ranges follow the general rule.
        b'7' if matches!(b[1], b'0' | b'2' | b'3' | b'6' | b'9') => is_mobile(nsn),
        b'9' if nsn.starts_with("900") || nsn.starts_with("939") || nsn.starts_with("944") => {
            is_premium(nsn)
        }
        // general_desc of libphonenumber SE: 4\d{6,8} for the 04x area codes.
        b'4' => (7..=9).contains(&nsn.len()),
        _ => true,
    }
}

fn classify_swedish(nsn: &str) -> NumberKind {
    if is_mobile(nsn) {
        NumberKind::SwedishMobile
    } else if is_premium(nsn) {
        NumberKind::SwedishPremium
    } else if nsn.starts_with("20") {
        NumberKind::SwedishTollFree
    } else if nsn.starts_with("75") {
        NumberKind::SwedishPersonal
    } else if nsn.starts_with("77") {
        NumberKind::SwedishSharedCost
    } else if nsn.starts_with('7') || nsn.starts_with("10") {
        NumberKind::SwedishOther
    } else {
        NumberKind::SwedishGeographic
    }
}

fn group_subscriber(s: &str) -> String {
    // Swedish convention: groups of two from the end, a leading group of three.
    match s.len() {
        0..=4 => s.to_string(),
        5 => format!("{} {}", &s[..3], &s[3..]),
        6 => format!("{} {} {}", &s[..2], &s[2..4], &s[4..]),
        7 => format!("{} {} {}", &s[..3], &s[3..5], &s[5..]),
        8 => format!("{} {} {}", &s[..3], &s[3..6], &s[6..]),
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        E164::parse(s).unwrap().as_str().to_string()
    }

    #[test]
    fn normalises_swedish_forms() {
        assert_eq!(p("+46701234567"), "+46701234567");
        assert_eq!(p("070-123 45 67"), "+46701234567");
        assert_eq!(p("0701234567"), "+46701234567");
        assert_eq!(p("0046 70 123 45 67"), "+46701234567");
        assert_eq!(p("+46 (0)70-123 45 67"), "+46701234567");
        assert_eq!(p("08-123 456 78"), "+46812345678");
        assert_eq!(p("0900-123 45 67"), "+469001234567");
        assert_eq!(p("0939-20 30 40"), "+46939203040");
        assert_eq!(p("0944 10 10 10"), "+46944101010");
    }

    #[test]
    fn classifies() {
        let k = |s: &str| E164::parse(s).unwrap().kind();
        assert_eq!(k("0701234567"), NumberKind::SwedishMobile);
        assert_eq!(k("0761234567"), NumberKind::SwedishMobile);
        assert_eq!(k("0900-123 45 67"), NumberKind::SwedishPremium);
        assert_eq!(k("0939-20 30 40"), NumberKind::SwedishPremium);
        assert_eq!(k("0944 10 10 10"), NumberKind::SwedishPremium);
        assert_eq!(k("08-123 456 78"), NumberKind::SwedishGeographic);
        assert_eq!(k("020-123 456"), NumberKind::SwedishTollFree);
        assert_eq!(k("0771-123 456"), NumberKind::SwedishSharedCost);
        assert_eq!(k("+4520123456"), NumberKind::Foreign);
        assert_eq!(k("0047 22 33 44 55"), NumberKind::Foreign);
    }

    #[test]
    fn refuses_malformed() {
        assert_eq!(E164::parse(""), Err(NumberError::Empty));
        assert_eq!(E164::parse("  "), Err(NumberError::Empty));
        assert!(matches!(
            E164::parse("070-ABC"),
            Err(NumberError::BadCharacters)
        ));
        assert!(matches!(
            E164::parse("701234567"),
            Err(NumberError::NoPrefix)
        ));
        // Mobile with a digit too many or too few.
        assert!(matches!(
            E164::parse("07012345678"),
            Err(NumberError::InvalidSwedish)
        ));
        assert!(matches!(
            E164::parse("070123456"),
            Err(NumberError::InvalidSwedish)
        ));
        // Premium with a 0 or 9 after the range, or too long.
        assert!(matches!(
            E164::parse("0900-012 34 56"),
            Err(NumberError::InvalidSwedish)
        ));
        assert!(matches!(
            E164::parse("0900-123 45 67 89"),
            Err(NumberError::InvalidSwedish)
        ));
        assert!(matches!(
            E164::parse("+1"),
            Err(NumberError::InvalidInternational)
        ));
        assert!(matches!(
            E164::parse("+12345678901234567"),
            Err(NumberError::InvalidInternational)
        ));
        assert!(matches!(
            E164::parse("+46"),
            Err(NumberError::InvalidSwedish)
        ));
        assert!(matches!(
            E164::parse("00"),
            Err(NumberError::InvalidInternational)
        ));
    }

    #[test]
    fn displays_nationally() {
        let d = |s: &str| E164::parse(s).unwrap().national_display();
        assert_eq!(d("+46701234567"), "070-123 45 67");
        assert_eq!(d("+469001234567"), "0900-123 45 67");
        assert_eq!(d("+46812345678"), "08-123 456 78");
        assert_eq!(d("+4520123456"), "+4520123456");
    }

    #[test]
    fn masks_in_logs() {
        let n = E164::parse("0701234567").unwrap();
        assert_eq!(n.to_string(), "+4670*****67");
        assert_eq!(format!("{n:?}"), "E164(+4670*****67)");
        assert!(!format!("{n}").contains("12345"));
    }

    #[test]
    fn serde_round_trip_validates() {
        let n: E164 = serde_json::from_str("\"070-123 45 67\"").unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"+46701234567\"");
        assert!(serde_json::from_str::<E164>("\"nope\"").is_err());
    }
}
