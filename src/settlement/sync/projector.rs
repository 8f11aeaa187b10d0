//! Pushes settlement's account changes back to the state store (DESIGN:
//! "pushes account changes back through the same store operations").
//!
//! An operation is written to `store_ops` in the same PostgreSQL transaction
//! as the ledger change it mirrors, then applied here in id order. Every
//! store operation is idempotent (by invoice id, payment id, or a block's
//! state), so applying one twice — after a crash, or from two workers — is
//! harmless.
//!
//! Two kinds of failure, handled differently:
//!
//! - **The store is unavailable** (a timeout, a connection refused): nothing
//!   is wrong with the operation. It stays pending, the round stops, and
//!   [`run`] tries again with a growing pause ([`Backoff`]: 0,5 s doubling
//!   to 30 s), so a Redis outage costs a few log lines a minute, not two a
//!   second.
//! - **The store refuses the operation** (e.g. a payment larger than the
//!   invoiced-unpaid amount a Redis failover left it with) or it cannot be
//!   read: retrying would fail for ever. It is set aside (`refused_at`),
//!   counted in `callauth_settlement_store_ops_refused` (alert
//!   `CallauthSettlementStoreOpsRefused`) and listed ([`refused`], the
//!   `ListRefusedStoreOps` RPC), and the number's later operations go on:
//!   holding them back would leave a number blocked that paid, or unblocked
//!   that is overdue. The ledger is the record, so the fix is
//!   `reconcile --repair`, which rewrites the number's account from the
//!   ledger and closes the refused operations (`resolved_at`).
//!
//! Trade-off: an operation applied after a refused one of the same number
//! may leave the store's figures wrong until the repair (they were already
//! wrong: that is why the store refused); the repair makes them right.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};

use crate::domain::account::BlockKind;
use crate::domain::{Money, Reference, E164};
use crate::metrics as m;
use crate::settlement::context::{Settlement, SettlementResult};
use crate::store::{BlockChange, InvoiceApply, PaymentApply, Store, StoreError};

#[derive(Deserialize)]
struct InvoiceOp {
    invoice_id: String,
    usage_ore: i64,
    fees_ore: i64,
}

#[derive(Deserialize)]
struct PaymentOp {
    payment_id: String,
    amount_ore: i64,
    clear_overdue: bool,
    first_invoice_paid: bool,
}

#[derive(Deserialize)]
struct TopUpOp {
    code_id: String,
    amount_ore: i64,
    topup_ref: String,
}

#[derive(Deserialize)]
struct BlockOp {
    blocked: bool,
    reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProjectorReport {
    pub applied: usize,
    /// Operations that failed this round: refused (set aside) or not
    /// delivered (the store unavailable).
    pub failed: usize,
    /// Still to apply (not counting refused ones).
    pub pending: usize,
    /// The store was unavailable: the round stopped early.
    pub unavailable: bool,
    /// Refused operations waiting for a repair.
    pub refused: usize,
}

/// A refused operation, for the admin list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RefusedOp {
    pub id: i64,
    pub kind: String,
    /// The number (E.164), or a prepaid code's id for a top-up.
    pub number: String,
    pub created_at: DateTime<Utc>,
    pub refused_at: DateTime<Utc>,
    pub attempts: i32,
    /// What the store said (amounts and ids; never personal data).
    pub error: String,
}

/// The most refused operations [`refused`] lists.
pub const REFUSED_PAGE: i64 = 1000;

/// Applies up to `max` pending operations; returns what happened.
pub async fn apply_pending<S: Store>(
    s: &Settlement<S>,
    max: i64,
) -> SettlementResult<ProjectorReport> {
    let rows = sqlx::query(
        "select id, kind, number, payload from store_ops
         where applied_at is null and refused_at is null order by id limit $1",
    )
    .bind(max)
    .fetch_all(&s.pool)
    .await?;
    let mut report = ProjectorReport::default();
    for row in rows {
        let id: i64 = row.get("id");
        let kind: String = row.get("kind");
        let number_text: String = row.get("number");
        let payload: serde_json::Value = row.get("payload");
        let result = apply_one(s, &kind, &number_text, payload).await;
        match result {
            Ok(()) => {
                sqlx::query("update store_ops set applied_at = now(), attempts = attempts + 1, last_error = null where id = $1")
                    .bind(id)
                    .execute(&s.pool)
                    .await?;
                report.applied += 1;
            }
            Err(e) => {
                report.failed += 1;
                metrics::counter!(m::SETTLEMENT_STORE_OPS_FAILED_TOTAL, "kind" => e.kind_label())
                    .increment(1);
                if e.is_transient() {
                    // Nothing wrong with the operation: it waits, and so
                    // does everything after it (the round stops).
                    sqlx::query(
                        "update store_ops set attempts = attempts + 1, last_error = $2 where id = $1",
                    )
                    .bind(id)
                    .bind(e.to_string())
                    .execute(&s.pool)
                    .await?;
                    tracing::warn!(op = id, error = %e, "state store unavailable; store operations wait");
                    report.unavailable = true;
                    break;
                }
                // Refused for good: set aside; the number's later
                // operations go on (module doc).
                sqlx::query(
                    "update store_ops set attempts = attempts + 1, last_error = $2, refused_at = $3
                     where id = $1",
                )
                .bind(id)
                .bind(e.to_string())
                .bind(s.now())
                .execute(&s.pool)
                .await?;
                let masked = E164::parse(&number_text)
                    .map(|n| n.masked().to_string())
                    .unwrap_or_else(|_| "-".into());
                tracing::error!(op = id, kind = %kind, number = %masked, error = %e,
                    "store operation refused and set aside; run `callauth-settlement reconcile --repair`");
            }
        }
    }
    report.pending = sqlx::query_scalar::<_, i64>(
        "select count(*) from store_ops where applied_at is null and refused_at is null",
    )
    .fetch_one(&s.pool)
    .await? as usize;
    report.refused = refused_count(&s.pool).await? as usize;
    metrics::gauge!(m::SETTLEMENT_STORE_OPS_PENDING).set(report.pending as f64);
    metrics::gauge!(m::SETTLEMENT_STORE_OPS_REFUSED).set(report.refused as f64);
    Ok(report)
}

/// Applies one operation. A payload or number that cannot be read is a
/// refusal (`Corrupt`): retrying would not make it readable.
async fn apply_one<S: Store>(
    s: &Settlement<S>,
    kind: &str,
    number_text: &str,
    payload: serde_json::Value,
) -> Result<(), StoreError> {
    let now = s.clock.now_ms();
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        StoreError::Corrupt(format!("store op {what}: {e}"))
    };
    // Prepaid top-ups have no number; their "number" is the code id.
    let number = if kind == "top_up_prepaid" {
        E164::parse("+46700000000").expect("valid placeholder")
    } else {
        E164::parse(number_text).map_err(|e| corrupt("number", &e))?
    };
    match kind {
        "apply_invoice" => {
            let op: InvoiceOp =
                serde_json::from_value(payload).map_err(|e| corrupt("payload", &e))?;
            let apply = InvoiceApply {
                invoice_id: Reference::parse(&op.invoice_id)
                    .map_err(|e| corrupt("invoice id", &e))?,
                usage: Money::ore_unchecked(op.usage_ore),
                fees: Money::ore_unchecked(op.fees_ore),
            };
            s.store
                .apply_invoice(&number, &apply, now)
                .await
                .map(|_| ())
        }
        "apply_payment" => {
            let op: PaymentOp =
                serde_json::from_value(payload).map_err(|e| corrupt("payload", &e))?;
            let apply = PaymentApply {
                payment_id: Reference::parse(&op.payment_id)
                    .map_err(|e| corrupt("payment id", &e))?,
                amount: Money::ore_unchecked(op.amount_ore),
                clear_overdue: op.clear_overdue,
                first_invoice_paid: op.first_invoice_paid,
            };
            s.store
                .apply_payment(&number, &apply, now)
                .await
                .map(|_| ())
        }
        "set_block" => {
            let op: BlockOp =
                serde_json::from_value(payload).map_err(|e| corrupt("payload", &e))?;
            let change = BlockChange {
                kind: BlockKind::Overdue,
                target: String::new(),
                blocked: op.blocked,
                reason: op.reason,
                actor: "settlement".into(),
            };
            s.store.set_block(&number, &change, now).await.map(|_| ())
        }
        "top_up_prepaid" => {
            let op: TopUpOp =
                serde_json::from_value(payload).map_err(|e| corrupt("payload", &e))?;
            let code = crate::domain::CodeId::from_stored(&op.code_id)
                .ok_or_else(|| corrupt("code id", &op.code_id))?;
            let reference =
                Reference::parse(&op.topup_ref).map_err(|e| corrupt("top-up reference", &e))?;
            s.store
                .top_up_prepaid(&code, Money::ore_unchecked(op.amount_ore), &reference, now)
                .await
                .map(|_| ())
        }
        other => Err(StoreError::Corrupt(format!(
            "unknown store op kind {other}"
        ))),
    }
}

async fn refused_count(pool: &PgPool) -> SettlementResult<i64> {
    Ok(sqlx::query_scalar(
        "select count(*) from store_ops where refused_at is not null and resolved_at is null",
    )
    .fetch_one(pool)
    .await?)
}

/// The refused operations not yet repaired, oldest first (at most
/// [`REFUSED_PAGE`]).
pub async fn refused(pool: &PgPool) -> SettlementResult<Vec<RefusedOp>> {
    let rows = sqlx::query(
        "select id, kind, number, created_at, refused_at, attempts, coalesce(last_error, '') as error
         from store_ops where refused_at is not null and resolved_at is null order by id limit $1",
    )
    .bind(REFUSED_PAGE)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| RefusedOp {
            id: r.get("id"),
            kind: r.get("kind"),
            number: r.get("number"),
            created_at: r.get("created_at"),
            refused_at: r.get("refused_at"),
            attempts: r.get("attempts"),
            error: r.get("error"),
        })
        .collect())
}

/// Closes the refused operations of `number` up to `through_id` once
/// reconciliation has rewritten its account from the ledger. Returns how
/// many were closed.
pub(crate) async fn resolve_refused(
    pool: &PgPool,
    number: &str,
    through_id: i64,
    resolution: &str,
    now: DateTime<Utc>,
) -> SettlementResult<u64> {
    let closed = sqlx::query(
        "update store_ops set resolved_at = $3, resolution = $4
         where number = $1 and id <= $2 and refused_at is not null and resolved_at is null",
    )
    .bind(number)
    .bind(through_id)
    .bind(now)
    .bind(resolution)
    .execute(pool)
    .await?
    .rows_affected();
    metrics::gauge!(m::SETTLEMENT_STORE_OPS_REFUSED).set(refused_count(pool).await? as f64);
    Ok(closed)
}

/// Applies until nothing is pending or nothing more can be applied.
pub async fn flush<S: Store>(s: &Settlement<S>) -> SettlementResult<ProjectorReport> {
    let mut total = ProjectorReport::default();
    loop {
        let r = apply_pending(s, 500).await?;
        total.applied += r.applied;
        total.failed += r.failed;
        total.pending = r.pending;
        total.refused = r.refused;
        total.unavailable |= r.unavailable;
        if r.unavailable || r.pending == 0 || r.applied + r.failed == 0 {
            return Ok(total);
        }
    }
}

/// The pause between projector rounds: short while the store answers,
/// doubling while it is unavailable (or the ledger is), up to a ceiling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            current: base,
        }
    }

    /// After a round that went through: the base pause.
    pub fn reset(&mut self) -> Duration {
        self.current = self.base;
        self.base
    }

    /// After a failed round: the current pause, and twice as long next time.
    pub fn failed(&mut self) -> Duration {
        let wait = self.current;
        self.current = (self.current * 2).min(self.max);
        wait
    }
}

/// The worker's projector: pushes pending operations until `shutdown`
/// flips, backing off while the store (or the ledger) is unavailable.
pub async fn run<S: Store>(s: &Settlement<S>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        let wait = match flush(s).await {
            Ok(r) if r.unavailable => backoff.failed(),
            Ok(_) => backoff.reset(),
            Err(e) => {
                tracing::warn!(error = %e, "pushing account changes to the state store failed");
                backoff.failed()
            }
        };
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let waits: Vec<u64> = (0..9).map(|_| b.failed().as_millis() as u64).collect();
        // 0,5 → 1 → 2 → 4 → 8 → 16 → 30 (the ceiling) …
        assert_eq!(
            waits,
            vec![500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]
        );
        assert_eq!(b.reset(), Duration::from_millis(500));
        assert_eq!(b.failed(), Duration::from_millis(500));
        assert_eq!(b.failed(), Duration::from_millis(1000));
    }
}
