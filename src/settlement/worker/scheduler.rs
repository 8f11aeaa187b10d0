//! The worker's daily calendar loop (`callauth-settlement run`). Every 30 s
//! it looks at the clock; once the Stockholm time has passed
//! `--daily-run-at` and today's run is not recorded, it first brings the
//! ledger up to the event streams — exactly as `run-once` does
//! (`StreamConsumer::drain_or_wait`: waits for the running consumers to
//! commit every event that was in the streams, or commits them itself when
//! none runs) — so that usage posted before the invoice day is on the
//! monthly invoice and payments are counted, and then runs the day
//! (`daily::run_day`, which also catches up a missed invoice day). After the
//! run it reconciles the store with the ledger (report only) when its own
//! consumer is caught up.
//!
//! It also keeps `callauth_settlement_calendar_missed_runs` current
//! (`daily::missed_runs`): runs missed in the last 24 hours, and days the
//! daily run is behind (e.g. failing, or waiting for a backlog).
//!
//! Trade-off: when the consumers cannot catch up within two minutes the run
//! waits for the next tick rather than invoicing from a ledger that lacks
//! events; a backlog that never clears shows as missed runs.

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveTime;
use tokio::sync::watch;

use crate::metrics as m;
use crate::settlement::context::{ms_to_utc, Settlement, SettlementError};
use crate::settlement::ingest::consumer::{ConsumeError, StreamConsumer};
use crate::settlement::worker::daily::{self, DayReport};
use crate::settlement::{calendar, interest, sync::reconcile};
use crate::store::redis::RedisStore;

/// How often the loop looks at the clock.
const TICK: Duration = Duration::from_secs(30);
/// A consumer that read within this is running (it polls every 200 ms).
const LIVE_WITHIN: Duration = Duration::from_secs(10);
/// The longest the daily run waits for the consumers, per tick.
const DRAIN_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum TickError {
    #[error("the event streams are not committed yet: {0}")]
    Drain(#[from] ConsumeError),
    #[error(transparent)]
    Settlement(#[from] SettlementError),
}

/// Runs until `shutdown` flips. `worker` is the process's own consumer
/// (its partitions); `drainer` reads every partition under a name of its own.
pub async fn run(
    s: Arc<Settlement<RedisStore>>,
    worker: Arc<StreamConsumer<RedisStore>>,
    drainer: StreamConsumer<RedisStore>,
    run_at: NaiveTime,
    mut shutdown: watch::Receiver<bool>,
) {
    warn_if_rates_run_out(&s);
    loop {
        match tick(&s, &worker, &drainer, run_at).await {
            Ok(_) => {}
            Err(TickError::Drain(e)) => {
                tracing::warn!(error = %e, "the daily calendar waits for the event streams to be committed")
            }
            Err(e) => tracing::error!(error = %e, "daily calendar run failed; retried"),
        }
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// One look at the clock: runs today's calendar if it is due and not done.
/// Returns the day's report when it ran.
pub async fn tick(
    s: &Settlement<RedisStore>,
    worker: &StreamConsumer<RedisStore>,
    drainer: &StreamConsumer<RedisStore>,
    run_at: NaiveTime,
) -> Result<Option<DayReport>, TickError> {
    let now_ms = s.clock.now_ms();
    let today = calendar::stockholm_date(now_ms);
    let local = ms_to_utc(now_ms)
        .with_timezone(&chrono_tz::Europe::Stockholm)
        .time();
    let due = local >= run_at;
    update_missed_gauge(s, today, due).await;
    if !due || daily::ran(&s.pool, today).await? {
        return Ok(None);
    }
    let consumed = drainer.drain_or_wait(LIVE_WITHIN, DRAIN_WAIT).await?;
    if consumed > 0 {
        tracing::info!(consumed, "events committed before the daily calendar run");
    }
    let report = daily::run_day(s, today).await?;
    update_missed_gauge(s, today, due).await;
    if matches!(worker.caught_up().await, Ok(true)) {
        match reconcile::reconcile(s, false).await {
            Ok(r) if !r.drifting.is_empty() => tracing::warn!(
                accounts = r.drifting.len(),
                drift_ore = r.total_drift_ore,
                "reconciliation found drift; run `callauth-settlement reconcile --repair` after review"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reconciliation failed"),
        }
    }
    Ok(Some(report))
}

async fn update_missed_gauge(s: &Settlement<RedisStore>, today: chrono::NaiveDate, due: bool) {
    match daily::missed_runs(&s.pool, today, due, s.now()).await {
        Ok(n) => metrics::gauge!(m::SETTLEMENT_CALENDAR_MISSED_RUNS).set(n as f64),
        Err(e) => tracing::warn!(error = %e, "counting missed calendar runs failed"),
    }
}

/// At start: says so when the reference-rate table no longer covers today
/// (the collection step warns, and later refuses, too).
fn warn_if_rates_run_out(s: &Settlement<RedisStore>) {
    match s.policy.reference_rates.coverage(s.today()) {
        interest::Coverage::Covered => {}
        interest::Coverage::Stale { valid_through } => tracing::warn!(
            %valid_through,
            "the reference-rate table ends before today: late interest uses its last rate; add the Riksbank's rate"
        ),
        interest::Coverage::Expired { valid_through } => tracing::error!(
            %valid_through,
            "the reference-rate table ended more than a half-year ago: collection demands are refused until it is updated"
        ),
    }
}
