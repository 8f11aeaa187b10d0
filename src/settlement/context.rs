//! The settlement worker's shared context — the PostgreSQL pool, the state
//! store it pushes account changes back to, the rules and the clock — and the
//! small database helpers every part uses.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};

use crate::clock::Clock;
use crate::settlement::calendar;
use crate::settlement::policy::SettlementPolicy;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum SettlementError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Ledger(#[from] crate::settlement::ledger::LedgerError),
    #[error("state store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// A request that breaks a rule (e.g. erasing a number with an open debt).
    #[error("{0}")]
    Refused(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
}

pub type SettlementResult<T> = Result<T, SettlementError>;

/// Everything a settlement step needs. `S` is the state store the worker
/// pushes invoices, payments and blocks to (Redis in production).
pub struct Settlement<S: Store> {
    pub pool: PgPool,
    pub store: S,
    pub policy: SettlementPolicy,
    pub clock: Arc<dyn Clock>,
}

impl<S: Store> Settlement<S> {
    pub fn new(
        pool: PgPool,
        store: S,
        policy: SettlementPolicy,
        clock: Arc<dyn Clock>,
    ) -> Settlement<S> {
        Settlement {
            pool,
            store,
            policy,
            clock,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        ms_to_utc(self.clock.now_ms())
    }

    /// Today in Stockholm (the invoicing calendar's date).
    pub fn today(&self) -> NaiveDate {
        calendar::stockholm_date(self.clock.now_ms())
    }
}

pub fn ms_to_utc(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(Utc::now)
}

/// Connects to PostgreSQL with a bounded pool.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_with(options)
        .await
}

/// Applies the migrations in `migrations/` (compiled into the binary).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations").run(pool).await
}

/// Makes sure a number (and, for a registered number, a holder with a
/// customer number) exists; returns the holder id when there is one.
pub async fn ensure_number(conn: &mut PgConnection, number: &str) -> SettlementResult<Option<i64>> {
    sqlx::query("insert into numbers (number) values ($1) on conflict (number) do nothing")
        .bind(number)
        .execute(&mut *conn)
        .await?;
    let holder: Option<i64> = sqlx::query_scalar("select holder_id from numbers where number = $1")
        .bind(number)
        .fetch_one(&mut *conn)
        .await?;
    Ok(holder)
}

/// The holder of a number, created (without name or address, to be filled in
/// by the holder import) when the number has none: every invoice needs a
/// customer number (R12).
pub async fn holder_for(conn: &mut PgConnection, number: &str) -> SettlementResult<i64> {
    if let Some(id) = ensure_number(conn, number).await? {
        return Ok(id);
    }
    let id: i64 = sqlx::query_scalar(
        "insert into holders (customer_number) values ('K' || nextval('holders_id_seq')::text || '-new') returning id",
    )
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query("update holders set customer_number = 'K' || lpad(id::text, 7, '0') where id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("update numbers set holder_id = $2 where number = $1")
        .bind(number)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(id)
}

/// Queues an operation for the state store, in the caller's transaction.
pub async fn queue_store_op(
    conn: &mut PgConnection,
    kind: &str,
    number: &str,
    payload: serde_json::Value,
) -> SettlementResult<()> {
    sqlx::query("insert into store_ops (kind, number, payload) values ($1, $2, $3)")
        .bind(kind)
        .bind(number)
        .bind(payload)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn audit(
    conn: &mut PgConnection,
    actor: &str,
    action: &str,
    subject: &str,
    details: serde_json::Value,
) -> SettlementResult<()> {
    sqlx::query("insert into audit_log (actor, action, subject, details) values ($1, $2, $3, $4)")
        .bind(actor)
        .bind(action)
        .bind(subject)
        .bind(details)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Records that a calendar job ran for a date; false when it already had.
pub async fn claim_calendar_job(
    conn: &mut PgConnection,
    date: NaiveDate,
    job: &str,
) -> SettlementResult<bool> {
    let inserted = sqlx::query(
        "insert into calendar_runs (run_date, job) values ($1, $2) on conflict do nothing",
    )
    .bind(date)
    .bind(job)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}
