//! Pushes settlement's account changes back to the state store (DESIGN:
//! "pushes account changes back through the same store operations").
//!
//! An operation is written to `store_ops` in the same PostgreSQL transaction
//! as the ledger change it mirrors, then applied here in id order. Every
//! store operation is idempotent (by invoice id, payment id, or a block's
//! state), so applying one twice — after a crash, or from two workers — is
//! harmless. Operations of one number stay in order: after a failure the
//! number's later operations wait for the next round.

use std::collections::HashSet;

use serde::Deserialize;
use sqlx::Row;

use crate::domain::account::BlockKind;
use crate::domain::{Money, Reference, E164};
use crate::metrics as m;
use crate::settlement::context::{Settlement, SettlementError, SettlementResult};
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
    pub failed: usize,
    pub pending: usize,
}

fn bad(what: &str, e: impl std::fmt::Display) -> SettlementError {
    SettlementError::Invalid(format!("store op {what}: {e}"))
}

/// Applies up to `max` pending operations; returns what happened.
pub async fn apply_pending<S: Store>(
    s: &Settlement<S>,
    max: i64,
) -> SettlementResult<ProjectorReport> {
    let rows = sqlx::query("select id, kind, number, payload from store_ops where applied_at is null order by id limit $1")
        .bind(max)
        .fetch_all(&s.pool)
        .await?;
    let mut report = ProjectorReport::default();
    let mut held_back: HashSet<String> = HashSet::new();
    for row in rows {
        let id: i64 = row.get("id");
        let kind: String = row.get("kind");
        let number_text: String = row.get("number");
        if held_back.contains(&number_text) {
            continue;
        }
        let payload: serde_json::Value = row.get("payload");
        let now = s.clock.now_ms();
        // Prepaid top-ups have no number; their "number" is the code id.
        let number = if kind == "top_up_prepaid" {
            E164::parse("+46700000000").expect("valid placeholder")
        } else {
            E164::parse(&number_text).map_err(|e| bad("number", e))?
        };
        let result: Result<(), StoreError> = match kind.as_str() {
            "apply_invoice" => {
                let op: InvoiceOp =
                    serde_json::from_value(payload).map_err(|e| bad("payload", e))?;
                let apply = InvoiceApply {
                    invoice_id: Reference::parse(&op.invoice_id)
                        .map_err(|e| bad("invoice id", e))?,
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
                    serde_json::from_value(payload).map_err(|e| bad("payload", e))?;
                let apply = PaymentApply {
                    payment_id: Reference::parse(&op.payment_id)
                        .map_err(|e| bad("payment id", e))?,
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
                let op: BlockOp = serde_json::from_value(payload).map_err(|e| bad("payload", e))?;
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
                let op: TopUpOp = serde_json::from_value(payload).map_err(|e| bad("payload", e))?;
                let code = crate::domain::CodeId::from_stored(&op.code_id)
                    .ok_or_else(|| bad("code id", &op.code_id))?;
                let reference =
                    Reference::parse(&op.topup_ref).map_err(|e| bad("top-up reference", e))?;
                s.store
                    .top_up_prepaid(&code, Money::ore_unchecked(op.amount_ore), &reference, now)
                    .await
                    .map(|_| ())
            }
            other => Err(StoreError::Corrupt(format!(
                "unknown store op kind {other}"
            ))),
        };
        match result {
            Ok(()) => {
                sqlx::query("update store_ops set applied_at = now(), attempts = attempts + 1, last_error = null where id = $1")
                    .bind(id)
                    .execute(&s.pool)
                    .await?;
                report.applied += 1;
            }
            Err(e) => {
                // Keep the number's order: its later operations wait.
                held_back.insert(number_text.clone());
                sqlx::query(
                    "update store_ops set attempts = attempts + 1, last_error = $2 where id = $1",
                )
                .bind(id)
                .bind(e.to_string())
                .execute(&s.pool)
                .await?;
                report.failed += 1;
                metrics::counter!(m::SETTLEMENT_STORE_OPS_FAILED_TOTAL, "kind" => e.kind_label())
                    .increment(1);
                if e.is_transient() {
                    tracing::warn!(op = id, error = %e, "state store unavailable; store operations wait");
                    break;
                }
                tracing::error!(op = id, number = %number.masked(), error = %e, "store operation refused; reconciliation will show the drift");
            }
        }
    }
    report.pending =
        sqlx::query_scalar::<_, i64>("select count(*) from store_ops where applied_at is null")
            .fetch_one(&s.pool)
            .await? as usize;
    metrics::gauge!(m::SETTLEMENT_STORE_OPS_PENDING).set(report.pending as f64);
    Ok(report)
}

/// Applies until nothing is pending or nothing more can be applied.
pub async fn flush<S: Store>(s: &Settlement<S>) -> SettlementResult<ProjectorReport> {
    let mut total = ProjectorReport::default();
    loop {
        let r = apply_pending(s, 500).await?;
        total.applied += r.applied;
        total.failed += r.failed;
        total.pending = r.pending;
        if r.applied == 0 || r.pending == 0 {
            return Ok(total);
        }
    }
}
