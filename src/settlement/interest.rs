//! Late-payment interest (dröjsmålsränta) under räntelagen 6 §: the Riksbank's
//! reference rate plus 8 percentage points (reference/sweden.md §1.3).
//!
//! The reference rate is set per calendar half-year, so it is held as a dated
//! table ([`ReferenceRateTable`]) that operators configure; it is never
//! hard-coded in the calculation. A table is right through the end of the
//! half-year its last row starts ([`ReferenceRateTable::valid_through`]). In
//! the half-year after that the Riksbank may have set a new rate the table
//! does not have yet: the last rate is used and callers warn
//! ([`Coverage::Stale`]). After that half-year too, interest is refused
//! rather than guessed ([`InterestError::TableExpired`]) until the table is
//! brought up to date: with a table ending 2026-01-01, interest up to
//! 30 June 2026 is computed, up to 31 December 2026 with a warning, and from
//! 1 January 2027 not at all. Interest runs from the day after the due
//! date through the payment date; the period is split at every 1 January and
//! 1 July and each segment uses its half-year's rate.
//!
//! Trade-offs, stated once: the day count is actual/365 in every year (leap
//! years included; this is the common Swedish practice and is slightly in the
//! debtor's favour), the sum is kept exact in `Decimal` and rounded half-up to
//! the öre only once at the end, and a total rate below zero (a reference
//! rate under −8 %) gives zero interest rather than a credit.

use std::str::FromStr;

use chrono::{Datelike, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};

use crate::domain::money::Money;

/// The statutory margin over the reference rate (räntelagen 6 §), in percentage points.
pub const STATUTORY_MARGIN_PP: Decimal = Decimal::from_parts(8, 0, 0, false, 0);

/// Days per year in the day count (actual/365).
const DAYS_PER_YEAR: i64 = 365;

/// Reference rates beyond ±100 % are typing errors, not rates.
const MAX_ABS_RATE_PERCENT: i64 = 100;

/// One row of the table: the reference rate from `valid_from` until the next row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateEntry {
    /// 1 January or 1 July.
    pub valid_from: NaiveDate,
    pub rate_percent: Decimal,
}

/// The Riksbank reference rate by half-year: non-empty, strictly increasing
/// dates, each a 1 January or 1 July.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferenceRateTable {
    entries: Vec<RateEntry>,
}

/// Why a rate table was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateTableError {
    #[error("the reference rate table is empty")]
    Empty,
    #[error("{date}: a reference rate can only change on 1 January or 1 July")]
    NotHalfYearStart { date: NaiveDate },
    #[error("{date}: listed after {previous}; the table must be in increasing date order without duplicates")]
    NotIncreasing {
        date: NaiveDate,
        previous: NaiveDate,
    },
    #[error("{date}: reference rate {rate_percent} % is outside ±{MAX_ABS_RATE_PERCENT} %")]
    Implausible {
        date: NaiveDate,
        rate_percent: Decimal,
    },
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
}

/// Why interest could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterestError {
    #[error("no reference rate is configured for {date} (the table starts {table_starts})")]
    NoRate {
        date: NaiveDate,
        table_starts: NaiveDate,
    },
    #[error("the reference-rate table is valid through {valid_through}, more than a half-year before {date}: add the Riksbank's reference rates")]
    TableExpired {
        date: NaiveDate,
        valid_through: NaiveDate,
    },
    #[error("interest of {principal} from {from} to {to} does not fit in an amount")]
    Overflow {
        principal: Money,
        from: NaiveDate,
        to: NaiveDate,
    },
}

impl ReferenceRateTable {
    /// Validates and wraps the rows (see the type's invariants).
    pub fn from_entries(entries: Vec<RateEntry>) -> Result<ReferenceRateTable, RateTableError> {
        if entries.is_empty() {
            return Err(RateTableError::Empty);
        }
        let max_abs = Decimal::from(MAX_ABS_RATE_PERCENT);
        let mut previous: Option<NaiveDate> = None;
        for entry in &entries {
            let date = entry.valid_from;
            if date.day() != 1 || !(date.month() == 1 || date.month() == 7) {
                return Err(RateTableError::NotHalfYearStart { date });
            }
            if let Some(previous) = previous {
                if date <= previous {
                    return Err(RateTableError::NotIncreasing { date, previous });
                }
            }
            if entry.rate_percent.abs() > max_abs {
                return Err(RateTableError::Implausible {
                    date,
                    rate_percent: entry.rate_percent,
                });
            }
            previous = Some(date);
        }
        Ok(ReferenceRateTable { entries })
    }

    /// The reference rate in force on `date`, or `None` before the first row.
    pub fn rate_on(&self, date: NaiveDate) -> Option<Decimal> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.valid_from <= date)
            .map(|e| e.rate_percent)
    }

    /// The rows, oldest first.
    pub fn entries(&self) -> &[RateEntry] {
        &self.entries
    }

    /// The last day the table is known to be right: the end of the
    /// half-year that its last row starts.
    pub fn valid_through(&self) -> NaiveDate {
        let last = self.entries[self.entries.len() - 1].valid_from;
        half_year_end(last)
    }

    /// Whether the table can give the rate of `date` (module doc).
    pub fn coverage(&self, date: NaiveDate) -> Coverage {
        let valid_through = self.valid_through();
        if date <= valid_through {
            return Coverage::Covered;
        }
        let stale_through = valid_through
            .succ_opt()
            .map_or(NaiveDate::MAX, half_year_end);
        if date <= stale_through {
            Coverage::Stale { valid_through }
        } else {
            Coverage::Expired { valid_through }
        }
    }

    fn first_date(&self) -> NaiveDate {
        // Non-empty by construction.
        self.entries[0].valid_from
    }
}

/// How far a [`ReferenceRateTable`] reaches for a date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coverage {
    /// Within the half-years the table has.
    Covered,
    /// In the half-year after the table's last one: its last rate is used,
    /// with a warning (the Riksbank may have set a new one).
    Stale { valid_through: NaiveDate },
    /// Later still: interest is refused until the table is updated.
    Expired { valid_through: NaiveDate },
}

/// The last day of the half-year `date` is in (30 June or 31 December).
fn half_year_end(date: NaiveDate) -> NaiveDate {
    let (month, day) = if date.month() < 7 { (6, 30) } else { (12, 31) };
    NaiveDate::from_ymd_opt(date.year(), month, day).unwrap_or(NaiveDate::MAX)
}

/// A starting table with the values in reference/sweden.md §1.3.
///
/// Only 2024-01-01 (4.00 %) is verified against a source. The later rows
/// (2024-07-01 4.00, 2025-01-01 2.50, 2025-07-01 2.00, 2026-01-01 2.00) are
/// unverified and MUST be checked against the Riksbank's published
/// referensränta before use. Production loads the table from configuration
/// with [`parse_table`]; this is for tests, demos and a first configuration
/// file.
pub fn default_table() -> ReferenceRateTable {
    let rows = [
        ((2024, 1), 400), // [V] Riksbank via capway.se
        ((2024, 7), 400), // [U]
        ((2025, 1), 250), // [U]
        ((2025, 7), 200), // [U]
        ((2026, 1), 200), // [U]
    ];
    let entries = rows
        .iter()
        .map(|&((year, month), hundredths)| RateEntry {
            valid_from: NaiveDate::from_ymd_opt(year, month, 1).expect("constant dates are valid"),
            rate_percent: Decimal::new(hundredths, 2),
        })
        .collect();
    ReferenceRateTable::from_entries(entries).expect("the default table is valid")
}

/// Parses the configuration format: one row per line, `YYYY-MM-DD RATE`
/// (rate in percent, `.` or `,` as decimal mark, may be negative), blank
/// lines and `#` comments (whole-line or trailing) ignored.
///
/// ```text
/// # Riksbank referensränta
/// 2025-07-01  2.00
/// 2026-01-01  2.00   # checked 2026-01-02
/// ```
pub fn parse_table(text: &str) -> Result<ReferenceRateTable, RateTableError> {
    let mut entries = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let syntax = |message: String| RateTableError::Syntax { line, message };
        let mut parts = content.split_whitespace();
        let (Some(date_text), Some(rate_text), None) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(syntax(format!(
                "expected 'YYYY-MM-DD RATE', found '{content}'"
            )));
        };
        let valid_from = NaiveDate::parse_from_str(date_text, "%Y-%m-%d")
            .map_err(|_| syntax(format!("'{date_text}' is not a date (YYYY-MM-DD)")))?;
        let rate_percent = Decimal::from_str(&rate_text.replace(',', ".")).map_err(|_| {
            syntax(format!(
                "'{rate_text}' is not a rate in percent (e.g. 2.00)"
            ))
        })?;
        entries.push(RateEntry {
            valid_from,
            rate_percent,
        });
    }
    ReferenceRateTable::from_entries(entries)
}

/// Late-payment interest on `principal` for the days after `from` (the due
/// date) through `to` (the payment date), at the reference rate of each
/// half-year plus `margin_pp` percentage points (normally
/// [`STATUTORY_MARGIN_PP`]). Zero when `to <= from` or `principal <= 0`.
///
/// Refuses (rather than guessing) a period that starts before the table or
/// ends more than a half-year after it ([`Coverage::Expired`]).
pub fn late_interest(
    principal: Money,
    from: NaiveDate,
    to: NaiveDate,
    table: &ReferenceRateTable,
    margin_pp: Decimal,
) -> Result<Money, InterestError> {
    if to <= from || principal.ore() <= 0 {
        return Ok(Money::ZERO);
    }
    if let Coverage::Expired { valid_through } = table.coverage(to) {
        return Err(InterestError::TableExpired {
            date: to,
            valid_through,
        });
    }
    let overflow = || InterestError::Overflow {
        principal,
        from,
        to,
    };
    // Σ rate_percent × days over the segments; principal / (100 × 365) is applied once.
    let mut percent_days = Decimal::ZERO;
    let mut segment_start = from.succ_opt().ok_or_else(overflow)?;
    while segment_start <= to {
        let next_half = next_half_year_start(segment_start);
        let segment_end = match next_half.and_then(|d| d.pred_opt()) {
            Some(last_of_half) if last_of_half < to => last_of_half,
            _ => to,
        };
        let reference = table.rate_on(segment_start).ok_or(InterestError::NoRate {
            date: segment_start,
            table_starts: table.first_date(),
        })?;
        let rate = (reference + margin_pp).max(Decimal::ZERO);
        let days = Decimal::from((segment_end - segment_start).num_days() + 1);
        percent_days = rate
            .checked_mul(days)
            .and_then(|v| percent_days.checked_add(v))
            .ok_or_else(overflow)?;
        match next_half {
            Some(next) if segment_end < to => segment_start = next,
            _ => break,
        }
    }
    let interest_ore = Decimal::from(principal.ore())
        .checked_mul(percent_days)
        .and_then(|v| v.checked_div(Decimal::from(100 * DAYS_PER_YEAR)))
        .ok_or_else(overflow)?
        .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    let interest_ore: i64 = interest_ore.try_into().map_err(|_| overflow())?;
    Money::from_ore(interest_ore).map_err(|_| overflow())
}

/// The first 1 January or 1 July after `date`.
fn next_half_year_start(date: NaiveDate) -> Option<NaiveDate> {
    if date.month() < 7 {
        NaiveDate::from_ymd_opt(date.year(), 7, 1)
    } else {
        NaiveDate::from_ymd_opt(date.year() + 1, 1, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn table(text: &str) -> ReferenceRateTable {
        parse_table(text).unwrap()
    }

    #[test]
    fn default_table_values() {
        let t = default_table();
        assert_eq!(t.entries().len(), 5);
        assert_eq!(t.rate_on(ymd(2023, 12, 31)), None);
        assert_eq!(t.rate_on(ymd(2024, 1, 1)), Some(dec("4.00")));
        assert_eq!(t.rate_on(ymd(2024, 12, 31)), Some(dec("4.00")));
        assert_eq!(t.rate_on(ymd(2025, 1, 1)), Some(dec("2.50")));
        assert_eq!(t.rate_on(ymd(2025, 6, 30)), Some(dec("2.50")));
        assert_eq!(t.rate_on(ymd(2025, 7, 1)), Some(dec("2.00")));
        assert_eq!(t.rate_on(ymd(2030, 1, 1)), Some(dec("2.00")));
    }

    #[test]
    fn parses_the_config_format() {
        let t = table(
            "# Riksbank referensränta\n\n2019-01-01 -0.50\n2019-07-01\t0,00  # comma works\n   2020-01-01 0.00\n",
        );
        assert_eq!(
            t.entries(),
            &[
                RateEntry {
                    valid_from: ymd(2019, 1, 1),
                    rate_percent: dec("-0.50")
                },
                RateEntry {
                    valid_from: ymd(2019, 7, 1),
                    rate_percent: dec("0.00")
                },
                RateEntry {
                    valid_from: ymd(2020, 1, 1),
                    rate_percent: dec("0.00")
                },
            ]
        );
    }

    #[test]
    fn refuses_bad_tables() {
        assert_eq!(parse_table("# nothing\n"), Err(RateTableError::Empty));
        assert_eq!(
            parse_table("2024-02-01 4.00"),
            Err(RateTableError::NotHalfYearStart {
                date: ymd(2024, 2, 1)
            })
        );
        assert_eq!(
            parse_table("2024-07-02 4.00"),
            Err(RateTableError::NotHalfYearStart {
                date: ymd(2024, 7, 2)
            })
        );
        assert_eq!(
            parse_table("2024-07-01 4.00\n2024-01-01 4.00"),
            Err(RateTableError::NotIncreasing {
                date: ymd(2024, 1, 1),
                previous: ymd(2024, 7, 1)
            })
        );
        assert_eq!(
            parse_table("2024-01-01 4.00\n2024-01-01 3.00"),
            Err(RateTableError::NotIncreasing {
                date: ymd(2024, 1, 1),
                previous: ymd(2024, 1, 1)
            })
        );
        assert_eq!(
            parse_table("2024-01-01 400"),
            Err(RateTableError::Implausible {
                date: ymd(2024, 1, 1),
                rate_percent: dec("400")
            })
        );
        assert!(matches!(
            parse_table("2024-01-01 4.00\n2024-07-01 four"),
            Err(RateTableError::Syntax { line: 2, .. })
        ));
        assert!(matches!(
            parse_table("2024-13-01 4.00"),
            Err(RateTableError::Syntax { line: 1, .. })
        ));
        assert!(matches!(
            parse_table("2024-01-01"),
            Err(RateTableError::Syntax { line: 1, .. })
        ));
        assert!(matches!(
            parse_table("2024-01-01 4.00 5.00"),
            Err(RateTableError::Syntax { line: 1, .. })
        ));
        assert!(matches!(
            ReferenceRateTable::from_entries(vec![]),
            Err(RateTableError::Empty)
        ));
    }

    #[test]
    fn across_a_half_year_boundary_rounding_once() {
        // 10 000,00 kr due 2024-06-20, paid 2024-07-10.
        // 21–30 June: 10 days at 4.00 + 8 = 12.00 %; 1–10 July: 10 days at 3.50 + 8 = 11.50 %.
        // 1 000 000 öre × (12.00 × 10 + 11.50 × 10) / (100 × 365) = 1 000 000 × 235 / 36 500
        // = 6 438.356… → 6 438 öre. Rounding each segment would give 3 288 + 3 151 = 6 439.
        let t = table("2024-01-01 4.00\n2024-07-01 3.50");
        let interest = late_interest(
            Money::sek(10_000),
            ymd(2024, 6, 20),
            ymd(2024, 7, 10),
            &t,
            STATUTORY_MARGIN_PP,
        )
        .unwrap();
        assert_eq!(interest, Money::ore_unchecked(6438));
    }

    #[test]
    fn a_whole_year_and_several_segments() {
        // 1 000,00 kr from 2024-12-31 to 2025-12-31 on the default table:
        // 181 days (Jan–Jun) at 10.50 %, 184 days (Jul–Dec) at 10.00 %.
        // 100 000 × (10.5 × 181 + 10 × 184) / 36 500 = 100 000 × 3 740.5 / 36 500 = 10 247.945… → 10 248.
        let interest = late_interest(
            Money::sek(1000),
            ymd(2024, 12, 31),
            ymd(2025, 12, 31),
            &default_table(),
            STATUTORY_MARGIN_PP,
        )
        .unwrap();
        assert_eq!(interest, Money::ore_unchecked(10_248));
        // A segment that starts on a boundary day: due 30 June, paid 1 July → 1 day at H2's rate.
        // 100 000 × 10.00 / 36 500 = 27.397… → 27.
        let one_day = late_interest(
            Money::sek(1000),
            ymd(2025, 6, 30),
            ymd(2025, 7, 1),
            &default_table(),
            STATUTORY_MARGIN_PP,
        )
        .unwrap();
        assert_eq!(one_day, Money::ore_unchecked(27));
    }

    #[test]
    fn half_up_at_the_ore() {
        // 73 öre for 5 days at 10 %: 73 × 10 × 5 / 36 500 = 0.1 öre → 0.
        // 365 öre for 1 day at 50 % → 0.5 öre → rounds up to 1.
        let t = table("2024-01-01 42.00");
        let half = late_interest(
            Money::ore_unchecked(365),
            ymd(2024, 3, 1),
            ymd(2024, 3, 2),
            &t,
            STATUTORY_MARGIN_PP,
        )
        .unwrap();
        assert_eq!(half, Money::ore_unchecked(1));
        let t = table("2024-01-01 2.00");
        let tiny = late_interest(
            Money::ore_unchecked(73),
            ymd(2024, 3, 1),
            ymd(2024, 3, 6),
            &t,
            STATUTORY_MARGIN_PP,
        )
        .unwrap();
        assert_eq!(tiny, Money::ZERO);
    }

    #[test]
    fn negative_reference_rate() {
        // −0.50 + 8 = 7.50 % for 2019 (the floor is not zero), 8.00 % from 2020-01-01.
        let t = table("2019-01-01 -0.50\n2019-07-01 -0.50\n2020-01-01 0.00");
        assert_eq!(t.rate_on(ymd(2019, 3, 1)), Some(dec("-0.50")));
        let interest = late_interest(
            Money::sek(10_000),
            ymd(2019, 1, 1),
            ymd(2020, 1, 1),
            &t,
            STATUTORY_MARGIN_PP,
        )
        .unwrap();
        // 364 days in 2019 after 1 Jan, plus 1 January 2020 at 8.00 %:
        // 1 000 000 × (7.5 × 364 + 8 × 1) / 36 500 = 1 000 000 × 2 738 / 36 500 = 75 013.698… → 75 014.
        assert_eq!(interest, Money::ore_unchecked(75_014));
        // A reference rate below −8 % never yields negative interest.
        let absurd = table("2019-01-01 -9.00");
        assert_eq!(
            late_interest(
                Money::sek(10_000),
                ymd(2019, 1, 1),
                ymd(2019, 2, 1),
                &absurd,
                STATUTORY_MARGIN_PP
            ),
            Ok(Money::ZERO)
        );
    }

    #[test]
    fn the_table_warns_past_its_half_year_and_refuses_after_the_next() {
        // The default table's last row is 2026-01-01: right through 30 June
        // 2026, stale (the last rate, with a warning) through 31 December
        // 2026, refused from 1 January 2027.
        let t = default_table();
        assert_eq!(t.valid_through(), ymd(2026, 6, 30));
        assert_eq!(t.coverage(ymd(2026, 6, 30)), Coverage::Covered);
        let stale = Coverage::Stale {
            valid_through: ymd(2026, 6, 30),
        };
        assert_eq!(t.coverage(ymd(2026, 7, 1)), stale);
        assert_eq!(t.coverage(ymd(2026, 12, 31)), stale);
        assert_eq!(
            t.coverage(ymd(2027, 1, 1)),
            Coverage::Expired {
                valid_through: ymd(2026, 6, 30)
            }
        );
        // Stale: 1 000,00 kr due 30 June 2026, 10 days in July at 2.00 + 8:
        // 100 000 × 10 × 10 / 36 500 = 273.97… → 274 öre.
        assert_eq!(
            late_interest(
                Money::sek(1000),
                ymd(2026, 6, 30),
                ymd(2026, 7, 10),
                &t,
                STATUTORY_MARGIN_PP
            ),
            Ok(Money::ore_unchecked(274))
        );
        // Past the next half-year: refused, not guessed.
        assert_eq!(
            late_interest(
                Money::sek(1000),
                ymd(2026, 12, 1),
                ymd(2027, 1, 10),
                &t,
                STATUTORY_MARGIN_PP
            ),
            Err(InterestError::TableExpired {
                date: ymd(2027, 1, 10),
                valid_through: ymd(2026, 6, 30)
            })
        );
        // A table ending with a 1 July row: right through 31 December,
        // stale through the next 30 June.
        let july = table("2026-07-01 2.00");
        assert_eq!(july.valid_through(), ymd(2026, 12, 31));
        assert_eq!(
            july.coverage(ymd(2027, 6, 30)),
            Coverage::Stale {
                valid_through: ymd(2026, 12, 31)
            }
        );
        assert!(matches!(
            july.coverage(ymd(2027, 7, 1)),
            Coverage::Expired { .. }
        ));
    }

    #[test]
    fn zero_cases() {
        let t = default_table();
        let due = ymd(2025, 3, 31);
        assert_eq!(
            late_interest(Money::sek(1000), due, due, &t, STATUTORY_MARGIN_PP),
            Ok(Money::ZERO)
        );
        assert_eq!(
            late_interest(
                Money::sek(1000),
                due,
                ymd(2025, 3, 1),
                &t,
                STATUTORY_MARGIN_PP
            ),
            Ok(Money::ZERO)
        );
        assert_eq!(
            late_interest(Money::ZERO, due, ymd(2025, 12, 31), &t, STATUTORY_MARGIN_PP),
            Ok(Money::ZERO)
        );
        assert_eq!(
            late_interest(
                Money::sek(-50),
                due,
                ymd(2025, 12, 31),
                &t,
                STATUTORY_MARGIN_PP
            ),
            Ok(Money::ZERO)
        );
    }

    #[test]
    fn refuses_periods_before_the_table_and_overflow() {
        let t = default_table();
        assert_eq!(
            late_interest(
                Money::sek(1000),
                ymd(2023, 12, 1),
                ymd(2024, 2, 1),
                &t,
                STATUTORY_MARGIN_PP
            ),
            Err(InterestError::NoRate {
                date: ymd(2023, 12, 2),
                table_starts: ymd(2024, 1, 1)
            })
        );
        // Money::MAX for ~2 000 years at ≥ 10 % is far beyond Money::MAX
        // (a table that reaches that far).
        let long = table("2024-01-01 2.00\n4024-01-01 2.00");
        assert!(matches!(
            late_interest(
                Money::MAX,
                ymd(2024, 1, 1),
                ymd(4024, 1, 1),
                &long,
                STATUTORY_MARGIN_PP
            ),
            Err(InterestError::Overflow { .. })
        ));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Interest never decreases as the payment comes later, and a constant
            /// rate gives the closed form principal × rate × days / 36 500.
            #[test]
            fn monotone_and_closed_form(
                principal_ore in 1i64..10_000_000_000,
                start in 0i64..700,
                days in 0i64..800,
            ) {
                let flat = parse_table("2024-01-01 2.00\n2024-07-01 2.00\n2025-01-01 2.00\n2025-07-01 2.00\n2026-01-01 2.00\n2026-07-01 2.00\n2027-01-01 2.00\n2027-07-01 2.00").unwrap();
                let principal = Money::ore_unchecked(principal_ore);
                let from = ymd(2024, 1, 1) + chrono::Duration::days(start);
                let to = from + chrono::Duration::days(days);
                let a = late_interest(principal, from, to, &flat, STATUTORY_MARGIN_PP).unwrap();
                let b = late_interest(principal, from, to + chrono::Duration::days(1), &flat, STATUTORY_MARGIN_PP).unwrap();
                prop_assert!(b >= a);
                let exact = Decimal::from(principal_ore) * Decimal::from(10) * Decimal::from(days) / Decimal::from(36_500);
                let expected = exact.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
                prop_assert_eq!(Decimal::from(a.ore()), expected);
            }
        }
    }
}
