//! Prepaid codes (SPEC R17): secrets that pay for calls from any line.
//!
//! A code is 16 digits — easy to type on a phone keypad — of which 15 are
//! random and the last is a Luhn check digit, so a mistyped digit is caught
//! before any store is asked. 15 random digits (~50 bits) together with the
//! per-line lockout make guessing hopeless. Codes are never stored: stores
//! keep an HMAC-SHA-256 of the code under a server-side key, and the first 16
//! bytes of that hash in hex (the [`CodeId`]) are both the store key and the
//! non-secret id shown to support staff and in the ledger.

use std::fmt;

use hmac::{KeyInit, Mac};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::luhn;

pub const CODE_DIGITS: usize = 16;

/// A prepaid code in clear. Debug and Display never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct PrepaidCode(String);

/// The non-secret identity of a code: hex of its keyed hash (32 characters).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CodeId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("a prepaid code has 16 digits")]
    Length,
    #[error("a prepaid code has digits only")]
    NotDigits,
    #[error("the prepaid code's check digit is wrong (mistyped?)")]
    CheckDigit,
}

impl PrepaidCode {
    /// A new random code from the operating system's CSPRNG (via `rand`'s
    /// thread-local ChaCha generator, seeded from the OS).
    pub fn generate() -> PrepaidCode {
        let mut rng = rand::rng();
        let mut digits = String::with_capacity(CODE_DIGITS);
        // The first digit is never 0, so the code survives being read as a number.
        digits.push(char::from(b'0' + rng.random_range(1u8..=9)));
        for _ in 1..CODE_DIGITS - 1 {
            digits.push(char::from(b'0' + rng.random_range(0u8..=9)));
        }
        let check = luhn::check_digit(&digits).expect("digits only");
        digits.push(char::from(b'0' + check));
        PrepaidCode(digits)
    }

    /// A code as typed: spaces and dashes are ignored.
    pub fn parse(input: &str) -> Result<PrepaidCode, CodeError> {
        let digits: String = input.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(CodeError::NotDigits);
        }
        if digits.len() != CODE_DIGITS {
            return Err(CodeError::Length);
        }
        if !luhn::is_valid(&digits) {
            return Err(CodeError::CheckDigit);
        }
        Ok(PrepaidCode(digits))
    }

    /// The digits, for the one response that delivers a new code.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Grouped for reading out or printing: "1234 5678 9012 3456".
    pub fn grouped(&self) -> String {
        self.0
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).expect("ascii"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Debug for PrepaidCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrepaidCode(****)")
    }
}

impl CodeId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Rebuilds an id read back from a store; refuses anything but 32 hex digits.
    pub fn from_stored(s: &str) -> Option<CodeId> {
        (s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| CodeId(s.to_string()))
    }

    /// A number in 0..2^32 derived from the id, for partitioning.
    pub fn bucket(&self) -> u32 {
        u32::from_str_radix(&self.0[..8], 16).expect("hex")
    }
}

impl fmt::Display for CodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CodeId({})", self.0)
    }
}

/// Keyed hashing of codes. The key is a deployment secret: whoever has the
/// key and the store could test guesses offline, so keep the two apart.
#[derive(Clone)]
pub struct CodeHasher {
    key: Vec<u8>,
}

impl fmt::Debug for CodeHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeHasher(<key redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the prepaid code key must be at least 32 bytes")]
pub struct WeakKey;

impl CodeHasher {
    pub fn new(key: &[u8]) -> Result<CodeHasher, WeakKey> {
        if key.len() < 32 {
            return Err(WeakKey);
        }
        Ok(CodeHasher { key: key.to_vec() })
    }

    pub fn id(&self, code: &PrepaidCode) -> CodeId {
        let mut mac =
            hmac::Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(b"callauth-prepaid-code-v1:");
        mac.update(code.0.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut hex = String::with_capacity(32);
        for b in &digest[..16] {
            hex.push_str(&format!("{b:02x}"));
        }
        CodeId(hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_valid_and_distinct() {
        let a = PrepaidCode::generate();
        let b = PrepaidCode::generate();
        assert_ne!(a, b);
        for c in [&a, &b] {
            assert_eq!(c.expose().len(), 16);
            assert!(luhn::is_valid(c.expose()));
            assert_eq!(PrepaidCode::parse(&c.grouped()).unwrap(), *c);
        }
    }

    #[test]
    fn parse_catches_typos() {
        let c = PrepaidCode::generate();
        let mut typo: Vec<u8> = c.expose().bytes().collect();
        typo[5] = if typo[5] == b'9' { b'0' } else { typo[5] + 1 };
        let typo = String::from_utf8(typo).unwrap();
        assert_eq!(PrepaidCode::parse(&typo), Err(CodeError::CheckDigit));
        assert_eq!(PrepaidCode::parse("123"), Err(CodeError::Length));
        assert_eq!(PrepaidCode::parse("12a4"), Err(CodeError::NotDigits));
    }

    #[test]
    fn secrets_stay_hidden() {
        let c = PrepaidCode::generate();
        assert_eq!(format!("{c:?}"), "PrepaidCode(****)");
        let h = CodeHasher::new(&[7u8; 32]).unwrap();
        assert!(!format!("{h:?}").contains('7'));
        let id = h.id(&c);
        assert_eq!(id.as_str().len(), 32);
        assert!(!id.as_str().contains(c.expose()));
        assert_eq!(h.id(&c), id, "hashing is deterministic");
        let other = CodeHasher::new(&[8u8; 32]).unwrap();
        assert_ne!(other.id(&c), id, "the key matters");
        assert!(CodeHasher::new(b"short").is_err());
        assert_eq!(CodeId::from_stored(id.as_str()), Some(id));
        assert_eq!(CodeId::from_stored("xyz"), None);
    }
}
