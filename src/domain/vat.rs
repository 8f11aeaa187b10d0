//! VAT rates (mervärdesskattelagen 2023:200, 9 kap.: 25 % generally, 12 %
//! and 6 % for what that chapter lists; 0 % stands for a service exempt
//! under 10 kap., e.g. health care by licensed staff) and the VAT contained
//! in a consumer price.
//!
//! Prices to consumers include VAT (prisinformationslagen), so the VAT is
//! taken out of a charge, never added to it: `vat = gross × rate / (100 +
//! rate)`, computed exactly and rounded half-up to the öre once. A rate is
//! part of the terms the caller accepted and travels with each call to
//! settlement, which books and prints the VAT per rate.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use super::money::Money;

/// A Swedish VAT rate in whole percent: 25, 12, 6 or 0 (exempt).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct VatRate(u8);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a VAT rate is 25, 12, 6 or 0 percent (mervärdesskattelagen 9 kap.), not {0}")]
pub struct VatRateError(pub u32);

impl VatRate {
    /// The general rate, and the default of every service.
    pub const STANDARD: VatRate = VatRate(25);
    pub const REDUCED_12: VatRate = VatRate(12);
    pub const REDUCED_6: VatRate = VatRate(6);
    /// No VAT: a supply exempt from VAT (10 kap.).
    pub const EXEMPT: VatRate = VatRate(0);

    pub fn from_percent(percent: u32) -> Result<VatRate, VatRateError> {
        match percent {
            25 | 12 | 6 | 0 => Ok(VatRate(percent as u8)),
            other => Err(VatRateError(other)),
        }
    }

    pub const fn percent(self) -> u32 {
        self.0 as u32
    }

    /// The VAT contained in `gross` (VAT included), rounded half-up to the öre.
    pub fn vat_in(self, gross: Money) -> Money {
        Money::ore_unchecked(self.vat_in_ore(gross.ore()))
    }

    /// [`VatRate::vat_in`] on öre; exact for any amount (negative amounts
    /// round half away from zero, so a credit mirrors its charge).
    pub fn vat_in_ore(self, gross_ore: i64) -> i64 {
        if self.0 == 0 {
            return 0;
        }
        let rate = Decimal::from(self.0);
        (Decimal::from(gross_ore) * rate / (Decimal::ONE_HUNDRED + rate))
            .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
            .to_i64()
            .expect("the VAT in an i64 amount fits an i64")
    }

    /// "25 %", as printed on invoices.
    pub fn label(self) -> String {
        format!("{} %", self.0)
    }
}

impl Default for VatRate {
    fn default() -> Self {
        VatRate::STANDARD
    }
}

impl TryFrom<u32> for VatRate {
    type Error = VatRateError;
    fn try_from(percent: u32) -> Result<Self, Self::Error> {
        VatRate::from_percent(percent)
    }
}

impl From<VatRate> for u32 {
    fn from(r: VatRate) -> u32 {
        r.percent()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_swedish_rates() {
        for p in [25, 12, 6, 0] {
            assert_eq!(VatRate::from_percent(p).unwrap().percent(), p);
        }
        for p in [1, 8, 20, 24, 26, 100] {
            assert_eq!(VatRate::from_percent(p), Err(VatRateError(p)));
        }
        assert_eq!(VatRate::default(), VatRate::STANDARD);
        assert_eq!(serde_json::to_string(&VatRate::REDUCED_6).unwrap(), "6");
        assert_eq!(
            serde_json::from_str::<VatRate>("12").unwrap(),
            VatRate::REDUCED_12
        );
        assert!(serde_json::from_str::<VatRate>("7").is_err());
    }

    #[test]
    fn vat_is_taken_out_of_the_gross_and_rounded_once() {
        // 125,00 kr incl. 25 %: 25,00 kr VAT (125 × 25 / 125).
        assert_eq!(VatRate::STANDARD.vat_in(Money::sek(125)), Money::sek(25));
        // 29,90 kr incl. 25 %: 2990 × 25 / 125 = 598 öre exactly.
        assert_eq!(VatRate::STANDARD.vat_in_ore(2990), 598);
        // 89,70 kr: 8970 / 5 = 1794 öre.
        assert_eq!(VatRate::STANDARD.vat_in_ore(8970), 1794);
        // 1 öre incl. 25 %: 0,2 öre → 0; 3 öre: 0,6 → 1.
        assert_eq!(VatRate::STANDARD.vat_in_ore(1), 0);
        assert_eq!(VatRate::STANDARD.vat_in_ore(3), 1);
        // 12 %: 112,00 kr → 12,00 kr; 1 öre × 12 / 112 rounds to 0.
        assert_eq!(VatRate::REDUCED_12.vat_in_ore(11_200), 1200);
        // 6 %: 19,95 kr → 1995 × 6 / 106 = 112,92… → 113 öre.
        assert_eq!(VatRate::REDUCED_6.vat_in_ore(1995), 113);
        // Half-up: 10 öre at 25 % is exactly 2; 2 öre × 6 / 106 = 0,113 → 0;
        // 53 öre × 6 / 106 = 3,0 → 3; 9 öre × 6 / 106 = 0,509… → 1.
        assert_eq!(VatRate::STANDARD.vat_in_ore(10), 2);
        assert_eq!(VatRate::REDUCED_6.vat_in_ore(2), 0);
        assert_eq!(VatRate::REDUCED_6.vat_in_ore(53), 3);
        assert_eq!(VatRate::REDUCED_6.vat_in_ore(9), 1);
        // A credit mirrors its charge.
        assert_eq!(VatRate::STANDARD.vat_in_ore(-3), -1);
        assert_eq!(VatRate::EXEMPT.vat_in_ore(123_456), 0);
    }
}
