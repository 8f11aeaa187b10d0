//! Reconciliation (DESIGN invariant 6): the state store is a fast projection
//! that can lose its last writes in a failover; the ledger is the record.
//! This compares, for every number the ledger knows, the store's account
//! with the ledger — the unbilled and invoiced-unpaid amounts
//! (`caller_unbilled:<number>`, `caller_invoiced:<number>`), the overdue
//! block (an open, undisputed claim outside a kept plan on which the ladder
//! recorded the overdue step or a broken plan) and whether the first invoice
//! is paid (`numbers.established`, the 3 000 SEK limit, R8) — reports the
//! drift as metrics and log lines, and can repair the projection from the
//! ledger through the store's own operations (`Store::repair_balances`,
//! `set_block`, and a zero payment that carries `first_invoice_paid`).
//!
//! The comparison is only meaningful when settlement has caught up: usage
//! posted in the store but not yet consumed, or account changes not yet
//! pushed back, look like drift. So numbers with pending store operations
//! are skipped, and callers drain the event streams first (the CLI does;
//! the worker reconciles only when its consumer is caught up). Operations
//! the store *refused* are not pending (the projector set them aside, see
//! `projector`): a number with refused operations is always reported, and a
//! repair closes them — the ledger, not the lost store state they depended
//! on, is what the account is rebuilt from.
//!
//! A repair never lowers a limit: the store cannot un-establish a number
//! (no settlement step does), so a store that says "established" while the
//! ledger does not is reported, not changed.

use serde::Serialize;

use crate::domain::account::BlockKind;
use crate::domain::{Money, Reference, E164};
use crate::metrics as m;
use crate::settlement::collection::claim;
use crate::settlement::context::{Settlement, SettlementResult};
use crate::settlement::ledger::{self, account};
use crate::settlement::sync::projector;
use crate::store::{BlockChange, PaymentApply, Store};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub number: String,
    pub ledger_unbilled_ore: i64,
    pub store_unbilled_ore: i64,
    pub ledger_invoiced_unpaid_ore: i64,
    pub store_invoiced_unpaid_ore: i64,
    pub ledger_overdue_blocked: bool,
    pub store_overdue_blocked: bool,
    /// The number's first invoice is paid in full (R8).
    pub ledger_established: bool,
    pub store_established: bool,
    /// Account changes the store refused, not yet repaired.
    pub refused_ops: i64,
}

impl Drift {
    pub fn abs_ore(&self) -> i64 {
        (self.ledger_unbilled_ore - self.store_unbilled_ore).abs()
            + (self.ledger_invoiced_unpaid_ore - self.store_invoiced_unpaid_ore).abs()
    }

    /// True when the store disagrees with the ledger in anything compared,
    /// or has refused changes waiting.
    pub fn any(&self) -> bool {
        self.abs_ore() != 0
            || self.ledger_overdue_blocked != self.store_overdue_blocked
            || self.ledger_established != self.store_established
            || self.refused_ops > 0
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    pub checked: usize,
    pub skipped_pending_ops: usize,
    pub drifting: Vec<Drift>,
    pub total_drift_ore: i64,
    pub repaired: usize,
    /// Refused store operations closed by the repair.
    pub refused_ops_resolved: u64,
}

/// Compares every number; with `repair`, rewrites the store's account from
/// the ledger where they differ (module doc).
pub async fn reconcile<S: Store>(
    s: &Settlement<S>,
    repair: bool,
) -> SettlementResult<ReconcileReport> {
    let mut report = ReconcileReport::default();
    let numbers: Vec<(String, bool)> =
        sqlx::query_as("select number, established from numbers order by number")
            .fetch_all(&s.pool)
            .await?;
    let mut conn = s.pool.acquire().await?;
    for (number_text, ledger_established) in numbers {
        let (pending, refused, last_refused): (i64, i64, Option<i64>) = sqlx::query_as(
            "select count(*) filter (where refused_at is null),
                    count(*) filter (where refused_at is not null),
                    max(id) filter (where refused_at is not null)
             from store_ops where number = $1 and applied_at is null and resolved_at is null",
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
        let ledger_overdue = claim::overdue_on_record(&mut conn, &number_text).await?;
        let view = s.store.account(&number).await?;
        report.checked += 1;
        let drift = Drift {
            number: number_text.clone(),
            ledger_unbilled_ore: ledger_unbilled,
            store_unbilled_ore: view.unbilled.ore(),
            ledger_invoiced_unpaid_ore: ledger_invoiced,
            store_invoiced_unpaid_ore: view.invoiced_unpaid.ore(),
            ledger_overdue_blocked: ledger_overdue,
            store_overdue_blocked: view.overdue_blocked,
            ledger_established,
            store_established: view.established,
            refused_ops: refused,
        };
        if !drift.any() {
            continue;
        }
        tracing::warn!(
            number = %number.masked(),
            ledger_unbilled_ore = ledger_unbilled,
            store_unbilled_ore = view.unbilled.ore(),
            ledger_invoiced_unpaid_ore = ledger_invoiced,
            store_invoiced_unpaid_ore = view.invoiced_unpaid.ore(),
            ledger_overdue_blocked = ledger_overdue,
            store_overdue_blocked = view.overdue_blocked,
            ledger_established,
            store_established = view.established,
            refused_ops = refused,
            "state store differs from the ledger"
        );
        report.total_drift_ore += drift.abs_ore();
        if repair {
            repair_account(s, &number, &drift).await?;
            if let Some(through) = last_refused {
                report.refused_ops_resolved += projector::resolve_refused(
                    &s.pool,
                    &number_text,
                    through,
                    "repaired from the ledger by reconciliation",
                    s.now(),
                )
                .await?;
            }
            report.repaired += 1;
        }
        report.drifting.push(drift);
    }
    metrics::gauge!(m::SETTLEMENT_RECONCILIATION_DRIFT_ORE).set(report.total_drift_ore as f64);
    metrics::gauge!(m::SETTLEMENT_RECONCILIATION_DRIFT_ACCOUNTS).set(report.drifting.len() as f64);
    Ok(report)
}

/// Rewrites one account from the ledger's figures in `drift`, each part
/// through the store operation that owns it.
async fn repair_account<S: Store>(
    s: &Settlement<S>,
    number: &E164,
    drift: &Drift,
) -> SettlementResult<()> {
    const REASON: &str = "reconciliation from the ledger";
    let now_ms = s.clock.now_ms();
    if drift.abs_ore() != 0 || drift.refused_ops > 0 {
        s.store
            .repair_balances(
                number,
                Money::ore_unchecked(drift.ledger_unbilled_ore.max(0)),
                Money::ore_unchecked(drift.ledger_invoiced_unpaid_ore.max(0)),
                REASON,
                now_ms,
            )
            .await?;
    }
    if drift.ledger_overdue_blocked != drift.store_overdue_blocked {
        let change = BlockChange {
            kind: BlockKind::Overdue,
            target: String::new(),
            blocked: drift.ledger_overdue_blocked,
            reason: REASON.into(),
            actor: "settlement".into(),
        };
        s.store.set_block(number, &change, now_ms).await?;
    }
    if drift.ledger_established && !drift.store_established {
        // The first invoice is paid (R8): the store's own payment step
        // raises the limit; a zero amount changes no balance. Unique per
        // repair, so a later repair is not taken for a repeat.
        let payment_id = Reference::parse(&format!("repair-first-paid-{now_ms}"))
            .map_err(|e| crate::settlement::SettlementError::Invalid(e.to_string()))?;
        let apply = PaymentApply {
            payment_id,
            amount: Money::ZERO,
            clear_overdue: false,
            first_invoice_paid: true,
        };
        s.store.apply_payment(number, &apply, now_ms).await?;
    }
    Ok(())
}
