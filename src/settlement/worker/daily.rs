//! The daily calendar (SPEC R11, R13, R16, R18, R20, R21), for one
//! Stockholm date: held invoices whose holder can now be reached, the
//! monthly invoice run on the invoice day, the reminder and collection
//! ladder with the installment-plan checks, merchant statements on their
//! day, the retention job on the first run of each month, and pushing the
//! resulting account changes to the state store.
//!
//! Time is injected: `run_day` takes the date, so a test (or
//! `callauth-settlement run-once --at 2026-12-15`) can play a month in
//! seconds. Every step is idempotent, so running a date twice does nothing
//! new; a PostgreSQL advisory lock makes concurrent runs on several
//! replicas take turns.
//!
//! **Missed days (R11).** The monthly invoice run and the merchant
//! statements belong to their day, not to the date they run: the run of a
//! date does the latest one that is not recorded yet, so a worker that was
//! down on the 15th invoices on its next run (with the 15th's cut-off and
//! payment time, see `invoicing::monthly_run`). The ladder needs no catch-up:
//! each step is due from a date on, and the next run takes it. Every run is
//! recorded in `calendar_runs` (`daily` per date, `monthly_invoices` and
//! `merchant_statements` under the day they belong to), and every day the
//! daily run did not happen, and every monthly run caught up late, as
//! `missed:<job>` under the day missed. [`missed_runs`] turns those into the
//! gauge `callauth_settlement_calendar_missed_runs` (alert
//! `CallauthSettlementCalendarMissed`). Before the first day a ledger ever
//! ran nothing counts as missed: a new installation has no history.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::PgConnection;

use crate::metrics as m;
use crate::settlement::billing::invoicing::{self, MonthlyRunReport};
use crate::settlement::collection::ladder::{self, LadderReport};
use crate::settlement::context::{claim_calendar_job, Settlement, SettlementResult};
use crate::settlement::privacy::retention::{self, RetentionReport};
use crate::settlement::{billing::delivery, billing::merchants, calendar, sync::projector};
use crate::store::Store;

/// An arbitrary constant naming the calendar's advisory lock.
const CALENDAR_LOCK: i64 = 0x6361_6c6c_6175_7468; // "callauth"
/// The `calendar_runs` job of the merchant statements.
pub const STATEMENTS_JOB: &str = "merchant_statements";
/// A gap longer than this (a ledger restored after a year, a test jumping
/// ahead) records its first days only; the count in the log is exact.
const MAX_MISSED_DAYS_RECORDED: i64 = 366;
/// How long a missed run keeps `callauth_settlement_calendar_missed_runs` up.
const MISSED_RECENT_HOURS: i64 = 24;

#[derive(Clone, Debug, Default, Serialize)]
pub struct DayReport {
    pub date: NaiveDate,
    /// Days since the previous daily run on which the calendar did not run.
    pub missed_days: usize,
    /// The invoice day whose monthly run this was, if one was due.
    pub monthly_run_for: Option<NaiveDate>,
    /// That run was missed on its day and caught up by this one.
    pub monthly_caught_up: bool,
    pub invoices_issued: usize,
    /// Of those issued, held for want of an address (R13).
    pub invoices_held: usize,
    /// Held invoices (and letters) sent now that an address exists.
    pub invoices_released: usize,
    pub invoices_carried: usize,
    pub overdue: usize,
    pub reminders: usize,
    pub collections: usize,
    pub enforcements: usize,
    /// Claims of fees only written off instead of escalated (R16).
    pub fees_waived: usize,
    pub plans_completed: usize,
    pub plans_broken: usize,
    pub merchant_statements: usize,
    /// The statement day caught up by this run, if it was missed.
    pub statements_caught_up_for: Option<NaiveDate>,
    /// The retention job ran (the first run of each month).
    pub retention: Option<RetentionReport>,
    pub store_ops_applied: usize,
    pub store_ops_pending: usize,
    /// Account changes the state store refused, waiting for a repair.
    pub store_ops_refused: usize,
}

impl DayReport {
    fn absorb(&mut self, monthly: &MonthlyRunReport, ladder: &LadderReport) {
        self.monthly_run_for = monthly.run_day;
        self.monthly_caught_up = monthly.caught_up;
        self.invoices_issued = monthly.issued;
        self.invoices_held = monthly.held;
        self.invoices_carried = monthly.carried;
        self.overdue = ladder.overdue;
        self.reminders = ladder.reminders;
        self.collections = ladder.collections;
        self.enforcements = ladder.enforcements;
        self.fees_waived = ladder.fees_waived;
        self.plans_completed = ladder.plans_completed;
        self.plans_broken = ladder.plans_broken;
    }
}

/// Runs the calendar for `date`.
pub async fn run_day<S: Store>(s: &Settlement<S>, date: NaiveDate) -> SettlementResult<DayReport> {
    // A session-level lock on one connection, held for the whole run.
    let mut lock = s.pool.acquire().await?;
    sqlx::query("select pg_advisory_lock($1)")
        .bind(CALENDAR_LOCK)
        .execute(&mut *lock)
        .await?;
    let result = run_locked(s, date).await;
    sqlx::query("select pg_advisory_unlock($1)")
        .bind(CALENDAR_LOCK)
        .execute(&mut *lock)
        .await?;
    result
}

async fn run_locked<S: Store>(s: &Settlement<S>, date: NaiveDate) -> SettlementResult<DayReport> {
    let mut report = DayReport {
        date,
        ..DayReport::default()
    };
    report.missed_days = record_missed_days(s, date).await?;
    // Held invoices whose holder has an address by now go out first, so
    // that the ladder sees them with their new due dates.
    report.invoices_released = delivery::release_held(s, None).await?.invoices;
    let monthly = invoicing::monthly_run(s, date).await?;
    let ladder = ladder::run_ladder(s, date).await?;
    report.absorb(&monthly, &ladder);
    let (statements, caught_up_for) = statements_due(s, date).await?;
    report.merchant_statements = statements;
    report.statements_caught_up_for = caught_up_for;
    if !retention::ran_this_month(&s.pool, date).await? {
        report.retention = Some(retention::run(s, date).await?);
    }
    delivery::refresh_gauges(&s.pool, s.now()).await?;
    let pushed = projector::flush(s).await?;
    report.store_ops_applied = pushed.applied;
    report.store_ops_pending = pushed.pending;
    report.store_ops_refused = pushed.refused;
    let mut conn = s.pool.acquire().await?;
    claim_calendar_job(&mut conn, date, "daily").await?;
    metrics::counter!(m::SETTLEMENT_CALENDAR_RUNS_TOTAL, "job" => "daily").increment(1);
    tracing::info!(
        %date,
        missed_days = report.missed_days,
        invoices = report.invoices_issued,
        reminders = report.reminders,
        collections = report.collections,
        enforcements = report.enforcements,
        fees_waived = report.fees_waived,
        statements = report.merchant_statements,
        "daily calendar run"
    );
    Ok(report)
}

/// The merchant statements of the latest statement day on or before
/// `date`, unless done (R20); records the day as missed when it is caught
/// up later. Returns the statements made and the day caught up.
async fn statements_due<S: Store>(
    s: &Settlement<S>,
    date: NaiveDate,
) -> SettlementResult<(usize, Option<NaiveDate>)> {
    let Some(day) = calendar::latest_monthly_run_date(date, s.policy.merchant_settlement_day)
    else {
        return Ok((0, None));
    };
    let done: bool = sqlx::query_scalar(
        "select exists(select 1 from calendar_runs where run_date = $1 and job = $2)",
    )
    .bind(day)
    .bind(STATEMENTS_JOB)
    .fetch_one(&s.pool)
    .await?;
    if done {
        return Ok((0, None));
    }
    let made = merchants::run_statements(s, day).await?.len();
    let mut caught_up = None;
    if day < date {
        let mut conn = s.pool.acquire().await?;
        if record_missed(&mut conn, day, STATEMENTS_JOB, date, s.now()).await? {
            tracing::warn!(%day, %date, statements = made, "the merchant statements were missed on their day and caught up");
            caught_up = Some(day);
        }
    }
    Ok((made, caught_up))
}

/// Records that `job` of `run_date` was missed and caught up on
/// `caught_up_on`, unless the ledger has no daily run before `run_date` (a
/// new installation: nothing was missed). True when recorded.
pub(crate) async fn record_missed(
    conn: &mut PgConnection,
    run_date: NaiveDate,
    job: &str,
    caught_up_on: NaiveDate,
    now: DateTime<Utc>,
) -> SettlementResult<bool> {
    let ran_before: bool = sqlx::query_scalar(
        "select exists(select 1 from calendar_runs where job = 'daily' and run_date < $1)",
    )
    .bind(run_date)
    .fetch_one(&mut *conn)
    .await?;
    if !ran_before {
        return Ok(false);
    }
    sqlx::query(
        "insert into calendar_runs (run_date, job, completed_at, details) values ($1, $2, $3, $4)
         on conflict do nothing",
    )
    .bind(run_date)
    .bind(format!("missed:{job}"))
    .bind(now)
    .bind(serde_json::json!({ "caught_up_on": caught_up_on }))
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

/// Records the days between the previous daily run and `date` on which the
/// calendar did not run; returns how many.
async fn record_missed_days<S: Store>(
    s: &Settlement<S>,
    date: NaiveDate,
) -> SettlementResult<usize> {
    let previous: Option<NaiveDate> = sqlx::query_scalar(
        "select max(run_date) from calendar_runs where job = 'daily' and run_date < $1",
    )
    .bind(date)
    .fetch_one(&s.pool)
    .await?;
    let Some(previous) = previous else {
        return Ok(0);
    };
    let gap = (date - previous).num_days() - 1;
    if gap <= 0 {
        return Ok(0);
    }
    let mut conn = s.pool.acquire().await?;
    let now = s.now();
    let mut day = previous;
    for _ in 0..gap.min(MAX_MISSED_DAYS_RECORDED) {
        let Some(next) = day.succ_opt() else { break };
        day = next;
        record_missed(&mut conn, day, "daily", date, now).await?;
    }
    tracing::warn!(%date, %previous, missed_days = gap, "the daily calendar did not run on every day; what was due is done now");
    Ok(gap as usize)
}

/// Calendar runs missed, for the gauge `callauth_settlement_calendar_missed_runs`:
/// the runs recorded as missed within the last 24 hours of `now`, plus the
/// days the daily run is behind — `today` if its run is due
/// (`run_due_today`, after `--daily-run-at`) and not done, and any day
/// before it since the last run.
pub async fn missed_runs(
    pool: &sqlx::PgPool,
    today: NaiveDate,
    run_due_today: bool,
    now: DateTime<Utc>,
) -> SettlementResult<i64> {
    let recent: i64 = sqlx::query_scalar(
        "select count(*) from calendar_runs where job like 'missed:%' and completed_at > $1",
    )
    .bind(now - chrono::Duration::hours(MISSED_RECENT_HOURS))
    .fetch_one(pool)
    .await?;
    let last: Option<NaiveDate> =
        sqlx::query_scalar("select max(run_date) from calendar_runs where job = 'daily'")
            .fetch_one(pool)
            .await?;
    let due = if run_due_today {
        Some(today)
    } else {
        today.pred_opt()
    };
    let behind = match (last, due) {
        (Some(last), Some(due)) => (due - last).num_days().max(0),
        _ => 0,
    };
    Ok(recent + behind)
}

/// Whether the daily run for `date` has completed before.
pub async fn ran(s: &sqlx::PgPool, date: NaiveDate) -> SettlementResult<bool> {
    Ok(sqlx::query_scalar(
        "select exists(select 1 from calendar_runs where run_date = $1 and job = 'daily')",
    )
    .bind(date)
    .fetch_one(s)
    .await?)
}
