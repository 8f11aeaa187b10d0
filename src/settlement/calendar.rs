//! The Stockholm invoicing calendar (SPEC R11, R15, R16).
//!
//! Storage is UTC; everything a customer sees (invoice date, due date, the
//! monthly run around the 15th, "allow 3 bank days") is a Europe/Stockholm
//! calendar date. This module converts between the two and knows which dates
//! are bank days: Monday–Friday except the Swedish public holidays and the
//! eves on which banks are closed (midsommarafton, julafton, nyårsafton).
//!
//! Everything here is a pure function of its arguments (the caller passes
//! "now"). Dates saturate at chrono's limits instead of panicking; no real
//! invoice is dated 262 000 years from now, so saturation never changes an
//! answer that matters.

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Europe::Stockholm;

/// The Stockholm calendar date of an instant given in UTC milliseconds.
pub fn stockholm_date(utc_ms: i64) -> NaiveDate {
    // chrono panics when a time zone offset pushes an instant past its
    // range, so saturate a day inside it.
    const DAY_MS: i64 = 86_400_000;
    let min_ms = DateTime::<Utc>::MIN_UTC.timestamp_millis() + DAY_MS;
    let max_ms = DateTime::<Utc>::MAX_UTC.timestamp_millis() - DAY_MS;
    let utc = DateTime::<Utc>::from_timestamp_millis(utc_ms.clamp(min_ms, max_ms))
        .expect("clamped into chrono's range");
    utc.with_timezone(&Stockholm).date_naive()
}

/// The instant (UTC milliseconds) at which `date` begins in Stockholm.
///
/// Sweden changes clocks at 02:00/03:00, so local midnight always exists and
/// is unique; the fallbacks below only matter at chrono's range limits.
pub fn start_of_day_utc_ms(date: NaiveDate) -> i64 {
    let midnight = date.and_time(NaiveTime::MIN);
    match Stockholm.from_local_datetime(&midnight).earliest() {
        Some(instant) => instant.timestamp_millis(),
        // Outside the zone database's range: CET (UTC+1) is the standard offset.
        None => midnight.and_utc().timestamp_millis() - 3_600_000,
    }
}

/// Easter Sunday of `year` (Gregorian calendar), by the anonymous Gregorian
/// computus (Meeus/Jones/Butcher). `None` only outside chrono's year range.
pub fn easter_sunday(year: i32) -> Option<NaiveDate> {
    let a = year.rem_euclid(19);
    let b = year.div_euclid(100);
    let c = year.rem_euclid(100);
    let d = b.div_euclid(4);
    let e = b.rem_euclid(4);
    let f = (b + 8).div_euclid(25);
    let g = (b - f + 1).div_euclid(3);
    let h = (19 * a + b - d - g + 15).rem_euclid(30);
    let i = c.div_euclid(4);
    let k = c.rem_euclid(4);
    let l = (32 + 2 * e + 2 * i - h - k).rem_euclid(7);
    let m = (a + 11 * h + 22 * l).div_euclid(451);
    let month = (h + l - 7 * m + 114).div_euclid(31);
    let day = (h + l - 7 * m + 114).rem_euclid(31) + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32)
}

/// The Swedish name of the holiday or bank-closed eve on `date`, if any.
///
/// Public holidays (lag 1989:253) plus the three eves on which banks are
/// closed. Some always fall on a weekend (påskdagen, pingstdagen,
/// midsommardagen, alla helgons dag); they are listed so the name is known.
pub fn holiday_name(date: NaiveDate) -> Option<&'static str> {
    let (month, day) = (date.month(), date.day());
    let fixed = match (month, day) {
        (1, 1) => Some("nyårsdagen"),
        (1, 6) => Some("trettondedag jul"),
        (5, 1) => Some("första maj"),
        (6, 6) => Some("nationaldagen"),
        (12, 24) => Some("julafton"),
        (12, 25) => Some("juldagen"),
        (12, 26) => Some("annandag jul"),
        (12, 31) => Some("nyårsafton"),
        _ => None,
    };
    if fixed.is_some() {
        return fixed;
    }
    let weekday = date.weekday();
    // Midsommarafton is the Friday in 19–25 June; midsommardagen the day after.
    if month == 6 && (19..=25).contains(&day) && weekday == Weekday::Fri {
        return Some("midsommarafton");
    }
    if month == 6 && (20..=26).contains(&day) && weekday == Weekday::Sat {
        return Some("midsommardagen");
    }
    // Alla helgons dag is the Saturday in 31 October – 6 November.
    if ((month == 10 && day == 31) || (month == 11 && day <= 6)) && weekday == Weekday::Sat {
        return Some("alla helgons dag");
    }
    let easter = easter_sunday(date.year())?;
    match (date - easter).num_days() {
        -2 => Some("långfredagen"),
        0 => Some("påskdagen"),
        1 => Some("annandag påsk"),
        39 => Some("Kristi himmelsfärdsdag"),
        49 => Some("pingstdagen"),
        _ => None,
    }
}

/// True on Monday–Friday that is neither a public holiday nor a bank-closed eve.
pub fn is_bank_day(date: NaiveDate) -> bool {
    !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) && holiday_name(date).is_none()
}

/// `date` itself if it is a bank day, else the first bank day after it.
pub fn next_bank_day_on_or_after(date: NaiveDate) -> NaiveDate {
    let mut d = date;
    while !is_bank_day(d) {
        match d.succ_opt() {
            Some(next) => d = next,
            None => return d,
        }
    }
    d
}

/// The date `bank_days` bank days after `date`: each step moves to the next
/// bank day, so the result is a bank day whenever `bank_days > 0`, even if
/// `date` is not (Friday + 1 = Monday; Saturday + 1 = Monday too).
pub fn add_bank_days(date: NaiveDate, bank_days: u32) -> NaiveDate {
    let mut d = date;
    for _ in 0..bank_days {
        match d.succ_opt() {
            Some(next) => d = next_bank_day_on_or_after(next),
            None => return d,
        }
    }
    d
}

/// The last day of a month; `None` for a month outside 1–12 or a year outside
/// chrono's range.
pub fn month_end(year: i32, month: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(year, month, days_in_month(year, month)?)
}

/// The day of a monthly run (e.g. the 15th, SPEC R11), clamped to the month's
/// length so that a configured 31 means the last day in short months and 0
/// means the 1st. `None` as for [`month_end`].
pub fn monthly_run_date(year: i32, month: u32, day_of_month: u32) -> Option<NaiveDate> {
    let last = days_in_month(year, month)?;
    NaiveDate::from_ymd_opt(year, month, day_of_month.clamp(1, last))
}

/// The due date of the monthly invoice issued on `run`: the last day of the
/// run's month (SPEC R11).
///
/// Not moved to a bank day: month end is the date printed, as the seeds say.
/// A payment made on the next bank day is still on time in practice, which the
/// grace period of [`payment_grace_end`] covers.
pub fn due_date_for_monthly(run: NaiveDate) -> NaiveDate {
    // A valid date's month always has a last day within chrono's range.
    month_end(run.year(), run.month()).unwrap_or(run)
}

/// The most recent monthly run date (see [`monthly_run_date`]) on or before
/// `date`: this month's when it has come, else last month's. The monthly
/// run that is due on `date`, whether on its day or caught up later (R11).
pub fn latest_monthly_run_date(date: NaiveDate, day_of_month: u32) -> Option<NaiveDate> {
    let this_month = monthly_run_date(date.year(), date.month(), day_of_month)?;
    if this_month <= date {
        return Some(this_month);
    }
    let previous = date.with_day(1)?.pred_opt()?;
    monthly_run_date(previous.year(), previous.month(), day_of_month)
}

/// The due date of a monthly invoice issued on `issued_on` for the run of
/// the latest invoice day on or before it (R11): the last day of that run's
/// month on the day itself; when the run is caught up later, that due date
/// moved by the days of delay, so the caller gets the same time to pay as
/// the run on its day would have given (invoice day 15 March 2026, caught up
/// on the 17th: 31 March + 2 days = 2 April).
pub fn due_date_for_monthly_run(issued_on: NaiveDate, invoice_day: u32) -> NaiveDate {
    let Some(run) = latest_monthly_run_date(issued_on, invoice_day) else {
        return due_date_for_monthly(issued_on);
    };
    let delay_days = (issued_on - run).num_days().max(0) as u64;
    due_date_for_monthly(run)
        .checked_add_days(Days::new(delay_days))
        .unwrap_or(NaiveDate::MAX)
}

/// The due date of an invoice issued outside the monthly run (the 80 %
/// threshold, SPEC R8) or of a reminder (R16): `days` calendar days after
/// `issue`, moved forward to the next bank day when that lands on a weekend or
/// holiday. The payer can then always pay on the due date itself; this
/// follows the rule for statutory deadlines (lag 1930:173) and common
/// invoicing practice.
pub fn due_date_after(issue: NaiveDate, days: u32) -> NaiveDate {
    let target = issue
        .checked_add_days(Days::new(u64::from(days)))
        .unwrap_or(NaiveDate::MAX);
    next_bank_day_on_or_after(target)
}

/// The last date by which a payment made on `due` can still be arriving: the
/// due date (or the next bank day, if it is not one) plus `grace_bank_days`
/// bank days (SPEC R15: allow 3). An invoice still unpaid after this date is
/// overdue (R7, R16).
pub fn payment_grace_end(due: NaiveDate, grace_bank_days: u32) -> NaiveDate {
    add_bank_days(next_bank_day_on_or_after(due), grace_bank_days)
}

fn days_in_month(year: i32, month: u32) -> Option<u32> {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    Some(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn utc_ms(y: i32, m: u32, d: u32, hh: u32, mm: u32) -> i64 {
        Utc.with_ymd_and_hms(y, m, d, hh, mm, 0)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn easter() {
        assert_eq!(easter_sunday(2024), Some(ymd(2024, 3, 31)));
        assert_eq!(easter_sunday(2025), Some(ymd(2025, 4, 20)));
        assert_eq!(easter_sunday(2026), Some(ymd(2026, 4, 5)));
        assert_eq!(easter_sunday(2027), Some(ymd(2027, 3, 28)));
        // Extremes of the Gregorian range: 22 March and 25 April.
        assert_eq!(easter_sunday(2285), Some(ymd(2285, 3, 22)));
        assert_eq!(easter_sunday(2038), Some(ymd(2038, 4, 25)));
    }

    #[test]
    fn holidays_2026() {
        let expected = [
            (ymd(2026, 1, 1), "nyårsdagen"),
            (ymd(2026, 1, 6), "trettondedag jul"),
            (ymd(2026, 4, 3), "långfredagen"),
            (ymd(2026, 4, 5), "påskdagen"),
            (ymd(2026, 4, 6), "annandag påsk"),
            (ymd(2026, 5, 1), "första maj"),
            (ymd(2026, 5, 14), "Kristi himmelsfärdsdag"),
            (ymd(2026, 5, 24), "pingstdagen"),
            (ymd(2026, 6, 6), "nationaldagen"),
            (ymd(2026, 6, 19), "midsommarafton"),
            (ymd(2026, 6, 20), "midsommardagen"),
            (ymd(2026, 10, 31), "alla helgons dag"),
            (ymd(2026, 12, 24), "julafton"),
            (ymd(2026, 12, 25), "juldagen"),
            (ymd(2026, 12, 26), "annandag jul"),
            (ymd(2026, 12, 31), "nyårsafton"),
        ];
        for (date, name) in expected {
            assert_eq!(holiday_name(date), Some(name), "{date}");
            assert!(!is_bank_day(date), "{date}");
        }
        // Exactly those 16 dates in the whole year.
        let mut count = 0;
        let mut d = ymd(2026, 1, 1);
        while d.year() == 2026 {
            if holiday_name(d).is_some() {
                count += 1;
            }
            d = d.succ_opt().unwrap();
        }
        assert_eq!(count, expected.len());
        // Not holidays: annandag pingst (since 2005), the Friday before the
        // midsommar window, the Saturday after the alla helgons window.
        assert_eq!(holiday_name(ymd(2026, 5, 25)), None);
        assert!(is_bank_day(ymd(2026, 5, 25)));
        assert_eq!(holiday_name(ymd(2026, 6, 26)), None);
        assert_eq!(holiday_name(ymd(2026, 11, 7)), None);
    }

    #[test]
    fn midsommar_and_alla_helgon_move() {
        assert_eq!(holiday_name(ymd(2025, 6, 20)), Some("midsommarafton"));
        assert_eq!(holiday_name(ymd(2024, 6, 21)), Some("midsommarafton"));
        assert_eq!(holiday_name(ymd(2027, 6, 25)), Some("midsommarafton"));
        assert_eq!(holiday_name(ymd(2025, 11, 1)), Some("alla helgons dag"));
        assert_eq!(holiday_name(ymd(2027, 11, 6)), Some("alla helgons dag"));
        // Nationaldagen on a weekday is a non-bank day (2025: Friday).
        assert!(!is_bank_day(ymd(2025, 6, 6)));
    }

    #[test]
    fn bank_days_around_christmas() {
        // 2026: julafton Thursday, juldagen Friday, annandag jul Saturday,
        // nyårsafton Thursday, nyårsdagen Friday.
        assert!(is_bank_day(ymd(2026, 12, 23)));
        assert!(!is_bank_day(ymd(2026, 12, 24)));
        assert!(!is_bank_day(ymd(2026, 12, 27)));
        assert!(is_bank_day(ymd(2026, 12, 28)));
        assert_eq!(
            next_bank_day_on_or_after(ymd(2026, 12, 24)),
            ymd(2026, 12, 28)
        );
        assert_eq!(
            next_bank_day_on_or_after(ymd(2026, 12, 23)),
            ymd(2026, 12, 23)
        );
        // 23 Dec + 3 bank days: 28, 29, 30 December.
        assert_eq!(add_bank_days(ymd(2026, 12, 23), 3), ymd(2026, 12, 30));
        // 30 Dec + 1: 31 Dec, 1 Jan (Fri), 2–3 Jan weekend → Monday 4 Jan.
        assert_eq!(add_bank_days(ymd(2026, 12, 30), 1), ymd(2027, 1, 4));
        // 6 Jan 2027 (Wednesday) is trettondedag jul.
        assert_eq!(add_bank_days(ymd(2027, 1, 4), 2), ymd(2027, 1, 7));
        // Easter 2026: Thursday 2 April + 1 → Tuesday 7 April.
        assert_eq!(add_bank_days(ymd(2026, 4, 2), 1), ymd(2026, 4, 7));
        assert_eq!(add_bank_days(ymd(2026, 4, 2), 0), ymd(2026, 4, 2));
        // From a Saturday, one bank day is Monday.
        assert_eq!(add_bank_days(ymd(2026, 3, 7), 1), ymd(2026, 3, 9));
    }

    #[test]
    fn months() {
        assert_eq!(month_end(2024, 2), Some(ymd(2024, 2, 29)));
        assert_eq!(month_end(2026, 2), Some(ymd(2026, 2, 28)));
        assert_eq!(month_end(2100, 2), Some(ymd(2100, 2, 28)));
        assert_eq!(month_end(2000, 2), Some(ymd(2000, 2, 29)));
        assert_eq!(month_end(2026, 4), Some(ymd(2026, 4, 30)));
        assert_eq!(month_end(2026, 12), Some(ymd(2026, 12, 31)));
        assert_eq!(month_end(2026, 13), None);
        assert_eq!(month_end(2026, 0), None);
        assert_eq!(monthly_run_date(2026, 3, 15), Some(ymd(2026, 3, 15)));
        assert_eq!(monthly_run_date(2026, 2, 31), Some(ymd(2026, 2, 28)));
        assert_eq!(monthly_run_date(2026, 2, 0), Some(ymd(2026, 2, 1)));
        assert_eq!(monthly_run_date(2026, 13, 15), None);
        let max = NaiveDate::MAX;
        assert_eq!(month_end(max.year(), 12), Some(max));
    }

    #[test]
    fn due_dates() {
        assert_eq!(due_date_for_monthly(ymd(2026, 1, 15)), ymd(2026, 1, 31));
        assert_eq!(due_date_for_monthly(ymd(2028, 2, 15)), ymd(2028, 2, 29));
        // 2026-05-04 + 10 days = Thursday 14 May, Kristi himmelsfärdsdag → Friday 15.
        assert_eq!(due_date_after(ymd(2026, 5, 4), 10), ymd(2026, 5, 15));
        // Lands on a Saturday → Monday.
        assert_eq!(due_date_after(ymd(2026, 3, 4), 10), ymd(2026, 3, 16));
        // Lands on a bank day → unchanged.
        assert_eq!(due_date_after(ymd(2026, 3, 2), 10), ymd(2026, 3, 12));
        assert_eq!(due_date_after(NaiveDate::MAX, 10), NaiveDate::MAX);
        // Due Saturday 31 January 2026: the next bank day is Monday 2 Feb,
        // plus 3 bank days → Thursday 5 Feb.
        assert_eq!(payment_grace_end(ymd(2026, 1, 31), 3), ymd(2026, 2, 5));
    }

    #[test]
    fn monthly_runs_caught_up() {
        assert_eq!(
            latest_monthly_run_date(ymd(2026, 3, 15), 15),
            Some(ymd(2026, 3, 15))
        );
        assert_eq!(
            latest_monthly_run_date(ymd(2026, 3, 14), 15),
            Some(ymd(2026, 2, 15))
        );
        assert_eq!(
            latest_monthly_run_date(ymd(2026, 1, 3), 15),
            Some(ymd(2025, 12, 15))
        );
        // On the day: the month's end. Two days late: two days more.
        assert_eq!(
            due_date_for_monthly_run(ymd(2026, 3, 15), 15),
            ymd(2026, 3, 31)
        );
        assert_eq!(
            due_date_for_monthly_run(ymd(2026, 3, 17), 15),
            ymd(2026, 4, 2)
        );
        // Caught up in the next month (down from 15 December to 2 January):
        // 31 December + 18 days = 18 January.
        assert_eq!(
            due_date_for_monthly_run(ymd(2026, 1, 2), 15),
            ymd(2026, 1, 18)
        );
        // February's run: 28 February 2026.
        assert_eq!(
            due_date_for_monthly_run(ymd(2026, 2, 15), 15),
            ymd(2026, 2, 28)
        );
    }

    #[test]
    fn stockholm_dates_across_dst() {
        // Spring forward 2026-03-29 01:00Z (02:00 CET → 03:00 CEST).
        assert_eq!(
            stockholm_date(utc_ms(2026, 3, 28, 22, 59)),
            ymd(2026, 3, 28)
        );
        assert_eq!(stockholm_date(utc_ms(2026, 3, 28, 23, 0)), ymd(2026, 3, 29));
        assert_eq!(stockholm_date(utc_ms(2026, 3, 29, 1, 30)), ymd(2026, 3, 29));
        assert_eq!(
            stockholm_date(utc_ms(2026, 3, 29, 21, 59)),
            ymd(2026, 3, 29)
        );
        assert_eq!(stockholm_date(utc_ms(2026, 3, 29, 22, 0)), ymd(2026, 3, 30));
        // Fall back 2026-10-25 01:00Z (03:00 CEST → 02:00 CET).
        assert_eq!(
            stockholm_date(utc_ms(2026, 10, 24, 21, 59)),
            ymd(2026, 10, 24)
        );
        assert_eq!(
            stockholm_date(utc_ms(2026, 10, 24, 22, 0)),
            ymd(2026, 10, 25)
        );
        assert_eq!(
            stockholm_date(utc_ms(2026, 10, 25, 1, 30)),
            ymd(2026, 10, 25)
        );
        assert_eq!(
            stockholm_date(utc_ms(2026, 10, 25, 22, 59)),
            ymd(2026, 10, 25)
        );
        assert_eq!(
            stockholm_date(utc_ms(2026, 10, 25, 23, 0)),
            ymd(2026, 10, 26)
        );
        // Out of range saturates instead of panicking.
        let _ = stockholm_date(i64::MAX);
        let _ = stockholm_date(i64::MIN);
    }

    #[test]
    fn start_of_day_across_dst() {
        assert_eq!(
            start_of_day_utc_ms(ymd(2026, 3, 29)),
            utc_ms(2026, 3, 28, 23, 0)
        );
        assert_eq!(
            start_of_day_utc_ms(ymd(2026, 3, 30)),
            utc_ms(2026, 3, 29, 22, 0)
        );
        assert_eq!(
            start_of_day_utc_ms(ymd(2026, 10, 25)),
            utc_ms(2026, 10, 24, 22, 0)
        );
        assert_eq!(
            start_of_day_utc_ms(ymd(2026, 10, 26)),
            utc_ms(2026, 10, 25, 23, 0)
        );
        // The DST days are 23 and 25 hours long.
        let hour_ms = 3_600_000;
        assert_eq!(
            start_of_day_utc_ms(ymd(2026, 3, 30)) - start_of_day_utc_ms(ymd(2026, 3, 29)),
            23 * hour_ms
        );
        assert_eq!(
            start_of_day_utc_ms(ymd(2026, 10, 26)) - start_of_day_utc_ms(ymd(2026, 10, 25)),
            25 * hour_ms
        );
        // Round trip every day of a year.
        let mut d = ymd(2026, 1, 1);
        while d.year() == 2026 {
            let start = start_of_day_utc_ms(d);
            assert_eq!(stockholm_date(start), d);
            assert_eq!(stockholm_date(start - 1), d.pred_opt().unwrap());
            d = d.succ_opt().unwrap();
        }
        let _ = start_of_day_utc_ms(NaiveDate::MAX);
        let _ = start_of_day_utc_ms(NaiveDate::MIN);
    }

    #[test]
    fn saturates_at_the_end_of_time() {
        assert_eq!(add_bank_days(NaiveDate::MAX, 5), NaiveDate::MAX);
        assert_eq!(next_bank_day_on_or_after(NaiveDate::MAX), NaiveDate::MAX);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn bank_day_arithmetic(days in 0i64..40_000, n in 1u32..30) {
                let d = ymd(1990, 1, 1) + chrono::Duration::days(days);
                let later = add_bank_days(d, n);
                prop_assert!(is_bank_day(later));
                prop_assert!(later > d);
                // Exactly n bank days in (d, later].
                let mut count = 0;
                let mut x = d.succ_opt().unwrap();
                while x <= later {
                    if is_bank_day(x) {
                        count += 1;
                    }
                    x = x.succ_opt().unwrap();
                }
                prop_assert_eq!(count, n);
                let next = next_bank_day_on_or_after(d);
                prop_assert!(is_bank_day(next) && next >= d);
            }

            #[test]
            fn start_of_day_maps_back(days in -40_000i64..40_000) {
                let d = ymd(2000, 1, 1) + chrono::Duration::days(days);
                let start = start_of_day_utc_ms(d);
                prop_assert_eq!(stockholm_date(start), d);
                prop_assert_eq!(stockholm_date(start - 1), d.pred_opt().unwrap());
            }

            #[test]
            fn easter_is_a_sunday_in_range(year in 1583i32..4000) {
                let easter = easter_sunday(year).unwrap();
                prop_assert_eq!(easter.weekday(), Weekday::Sun);
                prop_assert!(easter >= ymd(year, 3, 22) && easter <= ymd(year, 4, 25));
            }
        }
    }
}
