//! An invoice as a claim, as the ladder, installment plans, disputes,
//! payments and reconciliation all see it (SPEC R7, R15, R16): its stage,
//! its row under lock, the collection steps recorded on it, and whether it
//! is overdue, and what paying a number's first invoice in full
//! establishes (R8). Kept apart from the ladder so that the ladder, the plans and
//! the payments each depend on it and not on one another (issue 12: the
//! import circle ladder ⇄ plans ⇄ payments).

use chrono::NaiveDate;
use sqlx::{PgConnection, Row};

use crate::settlement::calendar;
use crate::settlement::context::{SettlementError, SettlementResult};

/// Where a claim is on the ladder (`invoices.stage`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    Invoiced,
    Reminded,
    Collection,
    Enforcement,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Invoiced => "invoiced",
            Stage::Reminded => "reminded",
            Stage::Collection => "collection",
            Stage::Enforcement => "enforcement",
        }
    }

    pub fn parse(s: &str) -> Option<Stage> {
        Some(match s {
            "invoiced" => Stage::Invoiced,
            "reminded" => Stage::Reminded,
            "collection" => Stage::Collection,
            "enforcement" => Stage::Enforcement,
            _ => return None,
        })
    }
}

/// True when `deadline` has passed on `date` for a payment (R15): after the
/// deadline, moved to a bank day, plus `grace_bank_days` bank days for the
/// money to arrive ([`calendar::payment_grace_end`]).
pub fn deadline_passed(deadline: NaiveDate, date: NaiveDate, grace_bank_days: u32) -> bool {
    date > calendar::payment_grace_end(deadline, grace_bank_days)
}

/// True when a claim with these dates is overdue on `date` (R7, R15). The
/// earlier of the two dates counts: a broken plan makes the whole debt due at
/// once, while a rejected dispute's new time postpones the next fee, not the
/// fact that the invoice was not paid when due. Either way a payment gets its
/// bank days of grace.
pub fn is_overdue(
    due_date: NaiveDate,
    stage_due_date: NaiveDate,
    date: NaiveDate,
    grace_bank_days: u32,
) -> bool {
    deadline_passed(due_date.min(stage_due_date), date, grace_bank_days)
}

/// An invoice as the ladder, plans and disputes see it, read under its row lock.
#[derive(Clone, Debug)]
pub(crate) struct InvoiceRow {
    pub id: i64,
    pub number: String,
    pub ocr: String,
    pub status: String,
    pub stage: Stage,
    pub due_date: NaiveDate,
    pub stage_due_date: NaiveDate,
    pub interest_ore: i64,
    pub total_ore: i64,
    pub paid_ore: i64,
    pub reminder_fee_agreed: bool,
    pub disputed: bool,
    pub plan_id: Option<i64>,
    /// `plan_id` names a plan that is being kept.
    pub plan_active: bool,
}

impl InvoiceRow {
    pub fn outstanding_ore(&self) -> i64 {
        (self.total_ore - self.paid_ore).max(0)
    }

    /// Open, unpaid, undisputed and not in a kept plan.
    pub fn on_ladder(&self) -> bool {
        self.status == "open" && self.outstanding_ore() > 0 && !self.disputed && !self.plan_active
    }

    /// The claim without the ladder's own fees and interest.
    pub fn principal_ore(&self, ladder_fees_ore: i64) -> i64 {
        self.total_ore - ladder_fees_ore - self.interest_ore
    }
}

/// Reads and locks one invoice (`for update`) in the caller's transaction.
pub(crate) async fn lock_invoice(
    conn: &mut PgConnection,
    id: i64,
) -> SettlementResult<Option<InvoiceRow>> {
    let row = sqlx::query(
        "select i.id, i.number, i.ocr, i.status, i.stage, i.due_date, i.stage_due_date,
                i.interest_ore, i.total_ore, i.paid_ore, i.reminder_fee_agreed, i.disputed, i.plan_id,
                exists(select 1 from installment_plans p where p.id = i.plan_id and p.status = 'active') as plan_active
         from invoices i where i.id = $1 for update of i",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| {
        let stage: String = r.get("stage");
        Ok(InvoiceRow {
            id: r.get("id"),
            number: r.get("number"),
            ocr: r.get("ocr"),
            status: r.get("status"),
            stage: Stage::parse(&stage)
                .ok_or_else(|| SettlementError::Invalid(format!("invoice {id}: stage {stage}")))?,
            due_date: r.get("due_date"),
            stage_due_date: r.get("stage_due_date"),
            interest_ore: r.get("interest_ore"),
            total_ore: r.get("total_ore"),
            paid_ore: r.get("paid_ore"),
            reminder_fee_agreed: r.get("reminder_fee_agreed"),
            disputed: r.get("disputed"),
            plan_id: r.get("plan_id"),
            plan_active: r.get("plan_active"),
        })
    })
    .transpose()
}

/// The steps recorded for an invoice, with their dates.
pub(crate) async fn recorded_steps(
    conn: &mut PgConnection,
    invoice_id: i64,
) -> SettlementResult<Vec<(String, NaiveDate)>> {
    let rows =
        sqlx::query("select step, on_date from collection_steps where invoice_id = $1 order by id")
            .bind(invoice_id)
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get("step"), r.get("on_date")))
        .collect())
}

/// Records a step once; false when the invoice already has it.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn record_step(
    conn: &mut PgConnection,
    invoice_id: i64,
    step: &str,
    on_date: NaiveDate,
    fee_ore: i64,
    interest_ore: i64,
    new_due_date: Option<NaiveDate>,
    note: &str,
) -> SettlementResult<bool> {
    let inserted = sqlx::query(
        "insert into collection_steps (invoice_id, step, on_date, fee_ore, interest_ore, new_due_date, note)
         values ($1, $2, $3, $4, $5, $6, $7) on conflict (invoice_id, step) do nothing",
    )
    .bind(invoice_id)
    .bind(step)
    .bind(on_date)
    .bind(fee_ore)
    .bind(interest_ore)
    .bind(new_due_date)
    .bind(note)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// True when an open invoice of `number` other than `except` is overdue on
/// `date` ([`is_overdue`], with the bank days of grace) and counts for the
/// overdue block: not disputed, not in a kept plan.
pub(crate) async fn other_overdue(
    conn: &mut PgConnection,
    number: &str,
    except: &[i64],
    date: NaiveDate,
    grace_bank_days: u32,
) -> SettlementResult<bool> {
    // Past the plain dates in SQL; the bank-day grace in Rust.
    let candidates: Vec<(NaiveDate, NaiveDate)> = sqlx::query_as(
        "select i.due_date, i.stage_due_date from invoices i
           where i.number = $1 and i.id <> all($2) and i.status = 'open' and i.total_ore > i.paid_ore
             and not i.disputed
             and not exists (select 1 from installment_plans p where p.id = i.plan_id and p.status = 'active')
             and $3 > least(i.due_date, i.stage_due_date)",
    )
    .bind(number)
    .bind(except)
    .bind(date)
    .fetch_all(&mut *conn)
    .await?;
    Ok(candidates
        .into_iter()
        .any(|(due, stage_due)| is_overdue(due, stage_due, date, grace_bank_days)))
}

/// R8 (seed 000: "efter att första fakturan är betald"): marks `number`
/// established when its first invoice is paid in full, and says whether it
/// did so now. The first invoice is the earliest one that was owed: a
/// credited invoice (an upheld dispute) never was. Paying a later invoice
/// first changes nothing. In the caller's transaction, after the payment's
/// allocations are booked.
pub(crate) async fn settle_first_invoice(
    conn: &mut PgConnection,
    number: &str,
) -> SettlementResult<bool> {
    let established: Option<bool> =
        sqlx::query_scalar("select established from numbers where number = $1")
            .bind(number)
            .fetch_optional(&mut *conn)
            .await?;
    if established != Some(false) {
        return Ok(false);
    }
    let first_paid: Option<bool> = sqlx::query_scalar(
        "select status = 'paid' from invoices where number = $1 and status <> 'credited'
         order by id limit 1",
    )
    .bind(number)
    .fetch_optional(&mut *conn)
    .await?;
    if first_paid != Some(true) {
        return Ok(false);
    }
    sqlx::query("update numbers set established = true where number = $1")
        .bind(number)
        .execute(&mut *conn)
        .await?;
    Ok(true)
}

/// What the ledger says the number's overdue block should be: an open,
/// undisputed claim outside a kept plan on which the ladder has recorded the
/// overdue step or a broken plan (reconciliation repairs the store from it).
pub(crate) async fn overdue_on_record(
    conn: &mut PgConnection,
    number: &str,
) -> SettlementResult<bool> {
    Ok(sqlx::query_scalar(
        "select exists(select 1 from invoices i
           where i.number = $1 and i.status = 'open' and i.total_ore > i.paid_ore and not i.disputed
             and not exists (select 1 from installment_plans p where p.id = i.plan_id and p.status = 'active')
             and exists (select 1 from collection_steps c
                         where c.invoice_id = i.id and c.step in ('overdue', 'plan_broken')))",
    )
    .bind(number)
    .fetch_one(&mut *conn)
    .await?)
}
