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

use chrono::NaiveDate;
use serde::Serialize;

use crate::metrics as m;
use crate::settlement::context::{claim_calendar_job, Settlement, SettlementResult};
use crate::settlement::invoicing::{self, MonthlyRunReport};
use crate::settlement::ladder::{self, LadderReport};
use crate::settlement::retention::{self, RetentionReport};
use crate::settlement::{delivery, merchants, projector};
use crate::store::Store;

/// An arbitrary constant naming the calendar's advisory lock.
const CALENDAR_LOCK: i64 = 0x6361_6c6c_6175_7468; // "callauth"

#[derive(Clone, Debug, Default, Serialize)]
pub struct DayReport {
    pub date: NaiveDate,
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
    pub plans_completed: usize,
    pub plans_broken: usize,
    pub merchant_statements: usize,
    /// The retention job ran (the first run of each month).
    pub retention: Option<RetentionReport>,
    pub store_ops_applied: usize,
    pub store_ops_pending: usize,
}

impl DayReport {
    fn absorb(&mut self, monthly: &MonthlyRunReport, ladder: &LadderReport) {
        self.invoices_issued = monthly.issued;
        self.invoices_held = monthly.held;
        self.invoices_carried = monthly.carried;
        self.overdue = ladder.overdue;
        self.reminders = ladder.reminders;
        self.collections = ladder.collections;
        self.enforcements = ladder.enforcements;
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
    // Held invoices whose holder has an address by now go out first, so
    // that the ladder sees them with their new due dates.
    report.invoices_released = delivery::release_held(s, None).await?.invoices;
    let monthly = invoicing::monthly_run(s, date).await?;
    let ladder = ladder::run_ladder(s, date).await?;
    report.absorb(&monthly, &ladder);
    report.merchant_statements = merchants::run_statements(s, date).await?.len();
    if !retention::ran_this_month(&s.pool, date).await? {
        report.retention = Some(retention::run(s, date).await?);
    }
    delivery::refresh_gauges(&s.pool, s.now()).await?;
    let pushed = projector::flush(s).await?;
    report.store_ops_applied = pushed.applied;
    report.store_ops_pending = pushed.pending;
    let mut conn = s.pool.acquire().await?;
    claim_calendar_job(&mut conn, date, "daily").await?;
    metrics::counter!(m::SETTLEMENT_CALENDAR_RUNS_TOTAL, "job" => "daily").increment(1);
    tracing::info!(
        %date,
        invoices = report.invoices_issued,
        reminders = report.reminders,
        collections = report.collections,
        enforcements = report.enforcements,
        statements = report.merchant_statements,
        "daily calendar run"
    );
    Ok(report)
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
