//! Which clock a `callauth-settlement` command runs on (one clock
//! everywhere). Every settlement step reads the time from the injected
//! [`Clock`]; this decides that clock from the command line, so that a
//! simulated month is the real month: `run-once --at 2027-01-05` books, dates
//! and stamps everything on 5 January 2027, and `--now 2027-01-05` makes
//! `import-bgmax`, `reconcile` (and the worker's API: disputes, plans,
//! matching) act on the same day.
//!
//! - `--now` given: that instant — an RFC 3339 time, or a date meaning
//!   12:00 Stockholm that day. One-off commands stay at it; `run` starts its
//!   clock there and lets it run. With `run-once --at`, the two must be the
//!   same Stockholm date.
//! - no `--now`: the system clock, except that `run-once --at` a date other
//!   than today runs at 12:00 Stockholm on that date (noon: well inside the
//!   day whatever the daylight-saving shift).

use std::sync::Arc;

use chrono::{DateTime, NaiveDate};

use crate::clock::{Clock, ManualClock, OffsetClock, SystemClock};
use crate::settlement::calendar;

/// 12:00 in Stockholm, in milliseconds after the start of the day.
const NOON_MS: i64 = 12 * 3_600_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("--now: expected an RFC 3339 time (2027-01-05T09:00:00+01:00) or a date (2027-01-05)")]
    Unreadable,
    #[error("--now is on {now} (Stockholm) but --at is {at}: they must be the same day")]
    Disagree { now: NaiveDate, at: NaiveDate },
}

/// The clock a command gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockChoice {
    System,
    /// Stands still at this instant (one-off commands).
    Fixed(i64),
    /// Starts at this instant and runs on (the worker).
    Running {
        start_ms: i64,
    },
}

/// Reads `--now`: an RFC 3339 instant, or a date (12:00 Stockholm).
pub fn parse_now(text: &str) -> Result<i64, TimeError> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(noon_ms)
        .map_err(|_| TimeError::Unreadable)
}

/// 12:00 Stockholm on `date`, in UTC milliseconds.
pub fn noon_ms(date: NaiveDate) -> i64 {
    calendar::start_of_day_utc_ms(date) + NOON_MS
}

/// The clock for a command (module doc). `at` is `run-once --at`,
/// `keeps_running` is true for `run`; `system_now_ms` is the system clock.
pub fn choose(
    now_flag: Option<&str>,
    at: Option<NaiveDate>,
    keeps_running: bool,
    system_now_ms: i64,
) -> Result<ClockChoice, TimeError> {
    if let Some(text) = now_flag {
        let instant = parse_now(text)?;
        if let Some(at) = at {
            let now = calendar::stockholm_date(instant);
            if now != at {
                return Err(TimeError::Disagree { now, at });
            }
        }
        return Ok(if keeps_running {
            ClockChoice::Running { start_ms: instant }
        } else {
            ClockChoice::Fixed(instant)
        });
    }
    match at {
        Some(at) if at != calendar::stockholm_date(system_now_ms) => {
            Ok(ClockChoice::Fixed(noon_ms(at)))
        }
        _ => Ok(ClockChoice::System),
    }
}

/// The clock itself.
pub fn build(choice: ClockChoice) -> Arc<dyn Clock> {
    match choice {
        ClockChoice::System => Arc::new(SystemClock),
        ClockChoice::Fixed(ms) => Arc::new(ManualClock::new(ms)),
        ClockChoice::Running { start_ms } => Arc::new(OffsetClock::starting_at(start_ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn utc_ms(y: i32, m: u32, d: u32, h: u32) -> i64 {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn now_reads_instants_and_dates() {
        // 09:00 CET = 08:00 UTC.
        assert_eq!(
            parse_now("2027-01-05T09:00:00+01:00"),
            Ok(utc_ms(2027, 1, 5, 8))
        );
        // A date: 12:00 Stockholm = 11:00 UTC in winter, 10:00 UTC in summer.
        assert_eq!(parse_now("2027-01-05"), Ok(utc_ms(2027, 1, 5, 11)));
        assert_eq!(parse_now("2026-07-01"), Ok(utc_ms(2026, 7, 1, 10)));
        assert_eq!(parse_now("5 januari"), Err(TimeError::Unreadable));
    }

    #[test]
    fn one_clock_for_every_command() {
        let system = utc_ms(2026, 12, 1, 9); // 1 December 2026, 10:00 Stockholm
                                             // Nothing asked: the system clock.
        assert_eq!(choose(None, None, false, system), Ok(ClockChoice::System));
        assert_eq!(choose(None, None, true, system), Ok(ClockChoice::System));
        // run-once --at today: the system clock; another day: noon that day.
        assert_eq!(
            choose(None, Some(ymd(2026, 12, 1)), false, system),
            Ok(ClockChoice::System)
        );
        assert_eq!(
            choose(None, Some(ymd(2027, 1, 5)), false, system),
            Ok(ClockChoice::Fixed(utc_ms(2027, 1, 5, 11)))
        );
        // --now: fixed for a command, running for the worker.
        assert_eq!(
            choose(Some("2027-01-05"), None, false, system),
            Ok(ClockChoice::Fixed(utc_ms(2027, 1, 5, 11)))
        );
        assert_eq!(
            choose(Some("2027-01-05"), None, true, system),
            Ok(ClockChoice::Running {
                start_ms: utc_ms(2027, 1, 5, 11)
            })
        );
        // run-once --at with --now on the same day, or refused.
        assert_eq!(
            choose(
                Some("2027-01-05T07:30:00+01:00"),
                Some(ymd(2027, 1, 5)),
                false,
                system
            ),
            Ok(ClockChoice::Fixed(utc_ms(2027, 1, 5, 6) + 30 * 60_000))
        );
        assert_eq!(
            choose(Some("2027-01-05"), Some(ymd(2027, 1, 6)), false, system),
            Err(TimeError::Disagree {
                now: ymd(2027, 1, 5),
                at: ymd(2027, 1, 6)
            })
        );
        // The clocks read what was chosen.
        assert_eq!(build(ClockChoice::Fixed(42)).now_ms(), 42);
        let running = build(ClockChoice::Running {
            start_ms: utc_ms(2027, 1, 5, 11),
        })
        .now_ms();
        assert!((running - utc_ms(2027, 1, 5, 11)).abs() < 60_000);
    }
}
