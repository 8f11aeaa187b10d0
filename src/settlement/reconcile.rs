//! Reconciliation (DESIGN invariant 6): the state store is a fast projection
//! that can lose its last writes in a failover; the ledger is the record.
//! This compares, for every number the ledger knows, the store's unbilled and
//! invoiced-unpaid amounts with the ledger's (`caller_unbilled:<number>` and
//! `caller_invoiced:<number>`), reports the drift as metrics and log lines,
//! and can repair the projection from the ledger (`Store::repair_balances`).
//!
//! The comparison is only meaningful when settlement has caught up: usage
//! posted in the store but not yet consumed, or account changes not yet
//! pushed back, look like drift. So numbers with pending store operations
//! are skipped, and callers drain the event streams first (the CLI does;
//! the worker reconciles only when its consumer is caught up).

use serde::Serialize;

use crate::domain::{Money, E164};
use crate::metrics as m;
use crate::settlement::context::{Settlement, SettlementResult};
use crate::settlement::ledger::{self, account};
use crate::store::Store;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub number: String,
    pub ledger_unbilled_ore: i64,
    pub store_unbilled_ore: i64,
    pub ledger_invoiced_unpaid_ore: i64,
    pub store_invoiced_unpaid_ore: i64,
}

impl Drift {
    pub fn abs_ore(&self) -> i64 {
        (self.ledger_unbilled_ore - self.store_unbilled_ore).abs()
            + (self.ledger_invoiced_unpaid_ore - self.store_invoiced_unpaid_ore).abs()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    pub checked: usize,
    pub skipped_pending_ops: usize,
    pub drifting: Vec<Drift>,
    pub total_drift_ore: i64,
    pub repaired: usize,
}

/// Compares every number; with `repair`, overwrites the store's amounts with
/// the ledger's where they differ.
pub async fn reconcile<S: Store>(
    s: &Settlement<S>,
    repair: bool,
) -> SettlementResult<ReconcileReport> {
    let mut report = ReconcileReport::default();
    let numbers: Vec<String> = sqlx::query_scalar("select number from numbers order by number")
        .fetch_all(&s.pool)
        .await?;
    let mut conn = s.pool.acquire().await?;
    for number_text in numbers {
        let pending: i64 = sqlx::query_scalar(
            "select count(*) from store_ops where number = $1 and applied_at is null",
        )
        .bind(&number_text)
        .fetch_one(&mut *conn)
        .await?;
        if pending > 0 {
            report.skipped_pending_ops += 1;
            continue;
        }
        let Ok(number) = E164::parse(&number_text) else {
            continue;
        };
        let ledger_unbilled =
            ledger::balance(&mut conn, &account::caller_unbilled(&number_text)).await?;
        let ledger_invoiced =
            ledger::balance(&mut conn, &account::caller_invoiced(&number_text)).await?;
        let view = s.store.account(&number).await?;
        report.checked += 1;
        let drift = Drift {
            number: number_text.clone(),
            ledger_unbilled_ore: ledger_unbilled,
            store_unbilled_ore: view.unbilled.ore(),
            ledger_invoiced_unpaid_ore: ledger_invoiced,
            store_invoiced_unpaid_ore: view.invoiced_unpaid.ore(),
        };
        if drift.abs_ore() == 0 {
            continue;
        }
        tracing::warn!(
            number = %number.masked(),
            ledger_unbilled_ore = ledger_unbilled,
            store_unbilled_ore = view.unbilled.ore(),
            ledger_invoiced_unpaid_ore = ledger_invoiced,
            store_invoiced_unpaid_ore = view.invoiced_unpaid.ore(),
            "state store differs from the ledger"
        );
        report.total_drift_ore += drift.abs_ore();
        if repair {
            s.store
                .repair_balances(
                    &number,
                    Money::ore_unchecked(ledger_unbilled.max(0)),
                    Money::ore_unchecked(ledger_invoiced.max(0)),
                    "reconciliation from the ledger",
                    s.clock.now_ms(),
                )
                .await?;
            report.repaired += 1;
        }
        report.drifting.push(drift);
    }
    metrics::gauge!(m::SETTLEMENT_RECONCILIATION_DRIFT_ORE).set(report.total_drift_ore as f64);
    metrics::gauge!(m::SETTLEMENT_RECONCILIATION_DRIFT_ACCOUNTS).set(report.drifting.len() as f64);
    Ok(report)
}
