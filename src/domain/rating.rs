//! Rating: what a call costs under the terms the caller accepted (SPEC R4), and
//! how many seconds an amount of credit covers (R10).
//!
//! `rate` is the one rating function (DESIGN invariant 1): the billed time is
//! the duration rounded up to the billing step; the charge is price per minute
//! × billed seconds / 60, computed in `rust_decimal` and rounded half-up to the
//! öre once, at the end; then the minimum charge applies. A call of 0 seconds
//! never connected to the service and costs nothing (the caller hung up during
//! or right after the announcement, reference/sweden.md §2.2).
//!
//! `max_seconds_within` is the inverse used for grants. It is written in
//! integer arithmetic so that the Redis Functions (Lua) can mirror it exactly;
//! a property test checks it against `rate`.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use super::money::Money;

/// The money part of a terms version: all that rating needs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tariff {
    pub price_per_minute: Money,
    /// 60 = per started minute; 1 = per second. Always a divisor of 60.
    pub billing_step_seconds: u32,
    /// Minimum charge per call, in minutes of the price (0 = none).
    pub minimum_minutes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TariffError {
    #[error("price per minute must be between 0 and 10 000 SEK")]
    Price,
    #[error(
        "billing step must be a divisor of 60 seconds (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60)"
    )]
    Step,
    #[error("minimum charge must be at most 240 minutes")]
    Minimum,
}

/// The outcome of rating one call.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Rated {
    /// Seconds charged after rounding up to the step and applying the minimum.
    pub billed_seconds: u32,
    pub charge: Money,
}

/// The longest price per minute we accept: far above any real service, and
/// small enough that price × seconds stays exact in a double.
pub const MAX_PRICE_PER_MINUTE: Money = Money::sek(10_000);
pub const MAX_MINIMUM_MINUTES: u32 = 240;

impl Tariff {
    pub fn new(
        price_per_minute: Money,
        billing_step_seconds: u32,
        minimum_minutes: u32,
    ) -> Result<Tariff, TariffError> {
        if price_per_minute.is_negative() || price_per_minute > MAX_PRICE_PER_MINUTE {
            return Err(TariffError::Price);
        }
        if billing_step_seconds == 0 || 60 % billing_step_seconds != 0 {
            return Err(TariffError::Step);
        }
        if minimum_minutes > MAX_MINIMUM_MINUTES {
            return Err(TariffError::Minimum);
        }
        Ok(Tariff {
            price_per_minute,
            billing_step_seconds,
            minimum_minutes,
        })
    }

    /// The minimum charge of a call (price × minimum minutes; exact).
    pub fn minimum_charge(&self) -> Money {
        Money::ore_unchecked(self.price_per_minute.ore() * i64::from(self.minimum_minutes))
    }

    /// The least a connected call can cost: the minimum charge, or one billing
    /// step when there is no minimum. A grant must cover at least this (R10).
    pub fn least_charge(&self) -> Money {
        rate(self, 1).charge
    }
}

/// What a call of `duration_seconds` costs under `tariff`.
pub fn rate(tariff: &Tariff, duration_seconds: u32) -> Rated {
    if duration_seconds == 0 {
        return Rated {
            billed_seconds: 0,
            charge: Money::ZERO,
        };
    }
    let step = tariff.billing_step_seconds;
    let stepped = duration_seconds.div_ceil(step) * step;
    let stepped_charge = (Decimal::from(tariff.price_per_minute.ore()) * Decimal::from(stepped)
        / Decimal::from(60))
    .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    let stepped_charge = Money::ore_unchecked(
        stepped_charge
            .to_i64()
            .expect("charge fits i64 for bounded prices"),
    );
    let minimum = tariff.minimum_charge();
    if stepped_charge >= minimum {
        Rated {
            billed_seconds: stepped.max(tariff.minimum_minutes * 60),
            charge: stepped_charge,
        }
    } else {
        Rated {
            billed_seconds: tariff.minimum_minutes * 60,
            charge: minimum,
        }
    }
}

/// The longest duration, at most `cap_seconds`, whose charge fits in `budget`;
/// 0 when the budget does not cover the least charge of a call.
///
/// Integer form of `rate` (mirrored in the Redis Functions): with price `p`
/// öre/min and step `b` s, `n` steps cost `floor((p·n·b + 30) / 60)` öre
/// (half-up at the öre), which is ≤ `a` exactly when `p·n·b ≤ 60·a + 29`.
pub fn max_seconds_within(tariff: &Tariff, budget: Money, cap_seconds: u32) -> u32 {
    if budget < tariff.least_charge() || cap_seconds == 0 {
        return 0;
    }
    let p = tariff.price_per_minute.ore();
    let b = i64::from(tariff.billing_step_seconds);
    let seconds = if p == 0 {
        i64::from(cap_seconds)
    } else {
        let steps = (60 * budget.ore() + 29) / (p * b);
        (steps * b).min(i64::from(cap_seconds))
    };
    let seconds = u32::try_from(seconds).unwrap_or(u32::MAX);
    debug_assert!(rate(tariff, seconds).charge <= budget);
    seconds
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tariff(price_ore: i64, step: u32, min: u32) -> Tariff {
        Tariff::new(Money::ore_unchecked(price_ore), step, min).unwrap()
    }

    #[test]
    fn per_started_minute_edges() {
        let t = tariff(2990, 60, 0);
        assert_eq!(
            rate(&t, 0),
            Rated {
                billed_seconds: 0,
                charge: Money::ZERO
            }
        );
        assert_eq!(rate(&t, 1).charge.ore(), 2990);
        assert_eq!(rate(&t, 59).charge.ore(), 2990);
        assert_eq!(rate(&t, 60).charge.ore(), 2990);
        assert_eq!(rate(&t, 61).charge.ore(), 5980);
        assert_eq!(rate(&t, 61).billed_seconds, 120);
    }

    #[test]
    fn minimum_charge() {
        // 24.90 kr/min, minimum 3 minutes.
        let t = tariff(2490, 60, 3);
        assert_eq!(t.minimum_charge().ore(), 7470);
        assert_eq!(rate(&t, 1).charge.ore(), 7470);
        assert_eq!(rate(&t, 1).billed_seconds, 180);
        assert_eq!(rate(&t, 180).charge.ore(), 7470);
        assert_eq!(rate(&t, 181).charge.ore(), 9960);
        assert_eq!(rate(&t, 0).charge.ore(), 0);
    }

    #[test]
    fn per_second_rounds_once_half_up() {
        // 19.95 kr/min per second: 1 s = 33.25 öre -> 33; 2 s = 66.5 -> 67.
        let t = tariff(1995, 1, 0);
        assert_eq!(rate(&t, 1).charge.ore(), 33);
        assert_eq!(rate(&t, 2).charge.ore(), 67);
        assert_eq!(rate(&t, 59).charge.ore(), 1962); // 1962.05
        assert_eq!(rate(&t, 60).charge.ore(), 1995);
        assert_eq!(rate(&t, 61).charge.ore(), 2028); // 2028.25
                                                     // Rounding once at the end is not the sum of rounded seconds.
        let summed: i64 = (0..61).map(|_| rate(&t, 1).charge.ore()).sum();
        assert_ne!(summed, rate(&t, 61).charge.ore());
    }

    #[test]
    fn per_second_with_minimum() {
        let t = tariff(1200, 1, 2);
        assert_eq!(rate(&t, 30).charge.ore(), 2400);
        assert_eq!(rate(&t, 30).billed_seconds, 120);
        assert_eq!(rate(&t, 121).charge.ore(), 2420);
        assert_eq!(rate(&t, 121).billed_seconds, 121);
    }

    #[test]
    fn grants_cover_exactly() {
        let t = tariff(2990, 60, 0);
        // 150 kr covers 5 started minutes (149.50), not 6.
        assert_eq!(max_seconds_within(&t, Money::sek(150), 3600), 300);
        assert_eq!(max_seconds_within(&t, Money::ore_unchecked(2989), 3600), 0);
        assert_eq!(max_seconds_within(&t, Money::ore_unchecked(2990), 3600), 60);
        assert_eq!(max_seconds_within(&t, Money::sek(1500), 600), 600);
        let min3 = tariff(2490, 60, 3);
        assert_eq!(
            max_seconds_within(&min3, Money::ore_unchecked(7469), 3600),
            0
        );
        assert_eq!(
            max_seconds_within(&min3, Money::ore_unchecked(7470), 3600),
            180
        );
        let free = tariff(0, 60, 0);
        assert_eq!(max_seconds_within(&free, Money::ZERO, 900), 900);
    }

    #[test]
    fn tariff_validation() {
        assert_eq!(
            Tariff::new(Money::ore_unchecked(-1), 60, 0),
            Err(TariffError::Price)
        );
        assert_eq!(Tariff::new(Money::sek(10), 7, 0), Err(TariffError::Step));
        assert_eq!(Tariff::new(Money::sek(10), 0, 0), Err(TariffError::Step));
        assert_eq!(
            Tariff::new(Money::sek(10), 60, 241),
            Err(TariffError::Minimum)
        );
        assert!(Tariff::new(Money::sek(10_000), 1, 240).is_ok());
    }

    fn any_tariff() -> impl Strategy<Value = Tariff> {
        (
            0i64..=MAX_PRICE_PER_MINUTE.ore(),
            prop::sample::select(vec![1u32, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60]),
            0u32..=10,
        )
            .prop_map(|(p, b, m)| tariff(p, b, m))
    }

    proptest! {
        /// The integer closed form used by the Redis Functions equals the decimal rating.
        #[test]
        fn integer_form_matches_decimal(t in any_tariff(), d in 1u32..=20_000) {
            let p = t.price_per_minute.ore();
            let b = t.billing_step_seconds;
            let stepped = d.div_ceil(b) * b;
            let integer = ((p * i64::from(stepped) + 30) / 60).max(t.minimum_charge().ore());
            prop_assert_eq!(rate(&t, d).charge.ore(), integer);
        }

        /// Rating never decreases with duration.
        #[test]
        fn monotonic(t in any_tariff(), d in 0u32..=20_000) {
            prop_assert!(rate(&t, d).charge <= rate(&t, d + 1).charge);
        }

        /// The grant is the longest duration the budget covers (R10).
        #[test]
        fn grant_is_maximal_and_covered(t in any_tariff(), budget in 0i64..=5_000_000, cap in 1u32..=14_400) {
            let budget = Money::ore_unchecked(budget);
            let g = max_seconds_within(&t, budget, cap);
            if g == 0 {
                prop_assert!(t.least_charge() > budget);
            } else {
                prop_assert!(rate(&t, g).charge <= budget);
                prop_assert!(g <= cap);
                if g < cap {
                    // One more billing step would not be covered.
                    let next = g + t.billing_step_seconds;
                    prop_assert!(rate(&t, next).charge > budget || t.price_per_minute == Money::ZERO);
                }
            }
        }
    }
}
