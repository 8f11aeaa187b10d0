//! Money as an exact integer number of öre (DESIGN invariant 1).
//!
//! Every store keeps integer öre; arithmetic that multiplies a price uses
//! `rust_decimal` (see `rating`), and conversion from the decimal SEK that
//! people type ("29.90") is exact or refused. There is no float anywhere.
//! Amounts are bounded by [`Money::MAX`], far below 2^53, so that the Redis
//! Functions (Lua numbers are doubles) compute with them exactly.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// An amount of Swedish kronor in öre (1 SEK = 100 öre). May be negative
/// (a prepaid balance overrun, an available credit after an overrun).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Money(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("'{0}' is not an amount in SEK (use e.g. 29.90)")]
    Syntax(String),
    #[error("'{0}' has more than two decimals (öre is the smallest unit)")]
    TooPrecise(String),
    #[error("amount {0} öre is outside ±{max} öre", max = Money::MAX.0)]
    OutOfRange(i128),
}

impl Money {
    pub const ZERO: Money = Money(0);
    /// 10^13 öre (100 000 000 000 SEK): any real amount fits, and sums of many
    /// of them stay below 2^53 (≈ 9·10^15), where doubles stop being exact.
    pub const MAX: Money = Money(10_000_000_000_000);

    /// An amount in öre, checked against [`Money::MAX`].
    pub fn from_ore(ore: i64) -> Result<Money, MoneyError> {
        if ore.unsigned_abs() > Money::MAX.0 as u64 {
            return Err(MoneyError::OutOfRange(ore as i128));
        }
        Ok(Money(ore))
    }

    /// For constants and values already validated (e.g. read back from a store).
    pub const fn ore_unchecked(ore: i64) -> Money {
        Money(ore)
    }

    pub const fn sek(kronor: i64) -> Money {
        Money(kronor * 100)
    }

    pub const fn ore(self) -> i64 {
        self.0
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// Exact conversion from a decimal number of SEK; refuses sub-öre precision.
    pub fn from_sek_decimal(sek: Decimal) -> Result<Money, MoneyError> {
        // Checked: SEK beyond ~7.9·10^26 has no öre in a decimal (it panicked).
        let Some(ore) = sek.checked_mul(Decimal::ONE_HUNDRED) else {
            let whole = i128::try_from(sek.trunc()).unwrap_or(i128::MAX);
            return Err(MoneyError::OutOfRange(whole.saturating_mul(100)));
        };
        if ore.fract() != Decimal::ZERO {
            return Err(MoneyError::TooPrecise(sek.to_string()));
        }
        let ore: i128 = ore
            .trunc()
            .try_into()
            .map_err(|_| MoneyError::Syntax(sek.to_string()))?;
        if ore.unsigned_abs() > Money::MAX.0 as u128 {
            return Err(MoneyError::OutOfRange(ore));
        }
        Ok(Money(ore as i64))
    }

    pub fn to_sek_decimal(self) -> Decimal {
        Decimal::new(self.0, 2)
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0
            .checked_add(other.0)
            .and_then(|v| Money::from_ore(v).ok())
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0
            .checked_sub(other.0)
            .and_then(|v| Money::from_ore(v).ok())
    }

    /// Swedish display for announcements and documents: "29,90 kr".
    pub fn to_swedish(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let kronor = abs / 100;
        let ore = abs % 100;
        // Thousands separated by a (non-breaking in print) space: "1 500,00 kr".
        let digits = kronor.to_string();
        let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(' ');
            }
            grouped.push(ch);
        }
        format!("{sign}{grouped},{ore:02} kr")
    }
}

impl std::ops::Add for Money {
    type Output = Money;
    /// Panics on overflow of i64 (impossible for amounts within [`Money::MAX`]).
    fn add(self, rhs: Money) -> Money {
        Money(self.0.checked_add(rhs.0).expect("money overflow"))
    }
}

impl std::ops::Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(self.0.checked_sub(rhs.0).expect("money overflow"))
    }
}

impl std::ops::AddAssign for Money {
    fn add_assign(&mut self, rhs: Money) {
        *self = *self + rhs;
    }
}

impl std::ops::SubAssign for Money {
    fn sub_assign(&mut self, rhs: Money) {
        *self = *self - rhs;
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, |a, b| a + b)
    }
}

/// "29.90 SEK": unambiguous for logs and the command line.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} SEK", self.to_sek_decimal())
    }
}

/// Parses SEK as people write it: "29.90", "29,90", "1500", "1 500,00", optionally
/// followed by "SEK" or "kr".
impl FromStr for Money {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Money, MoneyError> {
        let trimmed = s.trim();
        let trimmed = trimmed
            .strip_suffix("SEK")
            .or_else(|| trimmed.strip_suffix("kr"))
            .unwrap_or(trimmed);
        let cleaned: String = trimmed
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '\u{a0}')
            .map(|c| if c == ',' { '.' } else { c })
            .collect();
        if cleaned.is_empty()
            || !cleaned
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
        {
            return Err(MoneyError::Syntax(s.to_string()));
        }
        let dec = Decimal::from_str(&cleaned).map_err(|_| MoneyError::Syntax(s.to_string()))?;
        Money::from_sek_decimal(dec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_swedish_and_plain_amounts() {
        assert_eq!("29.90".parse::<Money>().unwrap().ore(), 2990);
        assert_eq!("29,90".parse::<Money>().unwrap().ore(), 2990);
        assert_eq!("1 500".parse::<Money>().unwrap().ore(), 150_000);
        assert_eq!("1 500,00 kr".parse::<Money>().unwrap().ore(), 150_000);
        assert_eq!("3000 SEK".parse::<Money>().unwrap().ore(), 300_000);
        assert_eq!("0.01".parse::<Money>().unwrap().ore(), 1);
    }

    #[test]
    fn refuses_sub_ore_and_garbage() {
        assert!(matches!(
            "29.905".parse::<Money>(),
            Err(MoneyError::TooPrecise(_))
        ));
        assert!(matches!("abc".parse::<Money>(), Err(MoneyError::Syntax(_))));
        assert!(matches!("".parse::<Money>(), Err(MoneyError::Syntax(_))));
        assert!(matches!("1e3".parse::<Money>(), Err(MoneyError::Syntax(_))));
        assert!(matches!(
            "999999999999999".parse::<Money>(),
            Err(MoneyError::OutOfRange(_))
        ));
    }

    /// Found by tests/fuzz.rs (the catalogue's price_per_minute): a number
    /// too large for öre overflowed the decimal multiplication and panicked.
    #[test]
    fn amounts_beyond_a_decimal_are_out_of_range_not_a_panic() {
        for text in [
            "79228162514264337593543950335",
            "1000000000000000000000000000",
            "-79228162514264337593543950335",
        ] {
            assert!(
                matches!(text.parse::<Money>(), Err(MoneyError::OutOfRange(_))),
                "{text}"
            );
        }
        assert!(Money::from_sek_decimal(Decimal::MAX).is_err());
        assert!(Money::from_sek_decimal(Decimal::MIN).is_err());
    }

    #[test]
    fn swedish_display() {
        assert_eq!(Money::sek(1500).to_swedish(), "1 500,00 kr");
        assert_eq!(Money::ore_unchecked(2990).to_swedish(), "29,90 kr");
        assert_eq!(Money::ore_unchecked(-5).to_swedish(), "-0,05 kr");
        assert_eq!(
            Money::ore_unchecked(123_456_789).to_swedish(),
            "1 234 567,89 kr"
        );
        assert_eq!(Money::ore_unchecked(2990).to_string(), "29.90 SEK");
    }

    #[test]
    fn bounds_are_enforced() {
        assert!(Money::from_ore(Money::MAX.ore()).is_ok());
        assert!(Money::from_ore(Money::MAX.ore() + 1).is_err());
        assert!(Money::MAX.checked_add(Money::ore_unchecked(1)).is_none());
    }
}
