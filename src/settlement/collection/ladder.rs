//! The reminder and collection ladder (SPEC R16, with R7's overdue block and
//! the pauses of R18 and R19): the daily run that moves an unpaid invoice
//! from due, to overdue, to a reminder, to a collection demand and finally to
//! Kronofogden.
//!
//! The date is injected: [`run_ladder`] acts as on `date` whatever the clock
//! says, so tests play a month of ladder in a few calls. It looks at the open
//! invoices that are neither disputed (R19) nor in an installment plan that
//! is being kept (R18), and for each one takes the next step that is due.
//!
//! **Deadlines and bank days (R15: "allow 3 bank days").** A deadline (the
//! invoice's due date, a reminder's or a demand's) that falls on a weekend
//! or a bank holiday moves to the next bank day (lag 1930:173), and a
//! payment made on it may take `payment_grace_bank_days` (3) bank days to
//! reach us (seed 001: "det tar minst 3 bankdagar"). So a deadline has
//! *passed* only after [`calendar::payment_grace_end`]: a December invoice
//! due on nyårsafton (Thursday 31 December 2026) and paid on Monday
//! 4 January 2027, the first bank day after it, is on time; unpaid, it is
//! overdue on Saturday 9 January (4 January + 3 bank days = Friday 8, the
//! 6th being trettondedag jul). Letters (reminder, collection demand) and
//! the hand-over to Kronofogden are dated on bank days only.
//!
//! 1. **Overdue** — the day after the due date's grace: the number is
//!    blocked (R7: "a number is also blocked when an invoice is overdue");
//!    the payment that clears it lifts the block (`clear_overdue`, R15).
//! 2. **Reminder** — on the first bank day at least `reminder_after_days`
//!    after the due date (seed 001: 5) and after its grace, on paper (R13:
//!    reminders always on paper), due in `reminder_due_days` (10). In the
//!    example: Monday 11 January 2027, due Thursday 21 January. The reminder
//!    fee (lag 1981:739 2 §, 4 §: at most 60 SEK) is charged only if the
//!    caller's accepted terms agreed it when the debt arose
//!    (`invoices.reminder_fee_agreed`, and never more than the terms said)
//!    and only once per claim (the step is unique per invoice).
//! 3. **Collection demand** — on the first bank day after the reminder's
//!    deadline and its grace (Wednesday 27 January 2027): the collection fee
//!    (4 § p.2: at most 180 SEK), late-payment interest (räntelagen 6 §:
//!    reference rate + 8 pp, from the effective due date — the next bank day
//!    when the due date is not one — to this day, computed once by
//!    `interest::late_interest`), on paper, with at least 8 days to pay or
//!    object (god inkassosed).
//! 4. **Enforcement** — on the first bank day after the demand's deadline and
//!    its grace the claim is handed to Kronofogden ([`enforcement_list`]). A
//!    disputed claim never gets here: a sakligt grundad invändning must be
//!    investigated first.
//!
//! **Fees only (lag 1981:739 4 §: only costs "skäligen påkallade").** A claim
//! escalates only for its principal — the invoice amount itself (calls and
//! invoicing fee, less credits). When the principal is paid and only the
//! ladder's own fees and interest are left (a 60 SEK reminder fee, say), a
//! 180 SEK collection demand, or a Kronofogden application costing 300 SEK,
//! for them would not be reasonable. So when the stage's deadline (and its
//! grace) has passed, the remainder is written off instead (step
//! `fees_waived`, booked to `losses:waived_fees`), the invoice is paid and
//! the number's overdue block lifts. Until that deadline the fee is owed
//! and may be paid.
//!
//! Each step is one PostgreSQL transaction that records the step in
//! `collection_steps` (unique per invoice and step, so each happens once),
//! changes the invoice, posts a balanced ledger transaction whose id comes
//! from the invoice and step (`reminder:<id>`, `collection:<id>`,
//! `fees-waived:<id>`), queues the state-store operation that mirrors it
//! (applied later by the projector, idempotent by its id) and queues the
//! letter. Running the same date twice therefore changes nothing the second
//! time.
//!
//! Choices worth knowing:
//! - The current deadline of a claim is `stage_due_date`: the due date until
//!   the reminder, then the reminder's and the demand's deadlines. A rejected
//!   dispute or a broken plan moves it, and the ladder resumes from the stage
//!   the claim is in.
//! - Interest is charged once, with the collection demand, on the principal
//!   still unpaid (payments are counted against the principal first, which
//!   is in the debtor's favour and needs no payment history). After a broken
//!   plan it runs from the day the plan broke: the days a plan was kept carry
//!   none (R18) and the plan's total was the debt the holder agreed to.
//!   Interest after the demand is claimed in the Kronofogden application.
//! - The fees are capped at the statutory amounts whatever the configuration
//!   says; a demand's deadline is at least 8 days whatever it says.
//! - Every step (re)asserts the overdue block; the store operation is
//!   idempotent, and the ladder only ever acts on a claim that is overdue.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::json;
use sqlx::{PgConnection, PgPool, Row};

use crate::domain::Money;
use crate::metrics as m;
use crate::settlement::billing::document::{self, DocumentKind};
use crate::settlement::billing::invoicing;
use crate::settlement::collection::claim::{
    self, deadline_passed, is_overdue, lock_invoice, other_overdue, record_step, recorded_steps,
    InvoiceRow, Stage,
};
use crate::settlement::context::{
    audit, queue_store_op, Settlement, SettlementError, SettlementResult,
};
use crate::settlement::ledger::{self, account, Txn};
use crate::settlement::policy::SettlementPolicy;
use crate::settlement::{calendar, collection::plans, interest};
use crate::store::Store;

/// Lag (1981:739) 4 § p.1: the most a written reminder may cost.
pub const STATUTORY_MAX_REMINDER_FEE: Money = Money::sek(60);
/// Lag (1981:739) 4 § p.2: the most a collection demand may cost.
pub const STATUTORY_MAX_COLLECTION_FEE: Money = Money::sek(180);
/// God inkassosed: a collection demand gives at least 8 days to pay or object.
pub const MIN_COLLECTION_DUE_DAYS: u32 = 8;
/// Invoices read per batch by the daily run.
const BATCH: i64 = 500;
/// A claim takes at most this many steps in one run (overdue and reminder
/// can both be due on the same day; the later steps wait for deadlines).
const MAX_STEPS_PER_RUN: usize = 4;

/// A step the ladder takes (`collection_steps.step`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Overdue,
    Reminder,
    Collection,
    Enforcement,
    /// Instead of a collection demand or Kronofogden: only the ladder's own
    /// fees and interest are left, and they are written off (module doc).
    WaiveFees,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Overdue => "overdue",
            Step::Reminder => "reminder",
            Step::Collection => "collection",
            Step::Enforcement => "enforcement",
            Step::WaiveFees => "fees_waived",
        }
    }
}

/// What the next step of a claim depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimState {
    pub stage: Stage,
    /// The due date printed on the invoice.
    pub due_date: NaiveDate,
    /// The current deadline (see the module doc).
    pub stage_due_date: NaiveDate,
    /// The `overdue` step has been recorded.
    pub overdue_recorded: bool,
    /// The principal is paid: what is left is the ladder's own fees and
    /// interest (module doc: such a claim is not escalated).
    pub fees_only: bool,
}

/// The step due for a claim on `date`, if any (pure; see the module doc).
pub fn next_step(claim: &ClaimState, date: NaiveDate, policy: &SettlementPolicy) -> Option<Step> {
    let grace = policy.payment_grace_bank_days;
    let deadline_passed = deadline_passed(claim.stage_due_date, date, grace);
    // Letters and the hand-over are dated on bank days only.
    let letter_day = calendar::is_bank_day(date);
    let escalate = |step: Step| {
        if claim.fees_only {
            Step::WaiveFees
        } else {
            step
        }
    };
    match claim.stage {
        Stage::Invoiced => {
            if !claim.overdue_recorded
                && is_overdue(claim.due_date, claim.stage_due_date, date, grace)
            {
                return Some(Step::Overdue);
            }
            // Measures under lag 1981:739 come only after the due date.
            let reminder_on = claim
                .stage_due_date
                .checked_add_days(chrono::Days::new(u64::from(policy.reminder_after_days)))
                .unwrap_or(NaiveDate::MAX);
            (letter_day && deadline_passed && date >= reminder_on).then_some(Step::Reminder)
        }
        Stage::Reminded => (letter_day && deadline_passed).then(|| escalate(Step::Collection)),
        Stage::Collection => (letter_day && deadline_passed).then(|| escalate(Step::Enforcement)),
        Stage::Enforcement => None,
    }
}

/// The reminder fee to charge: nothing unless the terms agreed one when the
/// debt arose; never more than the terms agreed, the policy says, or the law
/// allows.
pub fn reminder_fee(policy: &SettlementPolicy, agreed: bool, agreed_fee: Option<Money>) -> Money {
    if !agreed {
        return Money::ZERO;
    }
    let fee = policy.reminder_fee.min(STATUTORY_MAX_REMINDER_FEE);
    agreed_fee.map_or(fee, |a| fee.min(a)).max(Money::ZERO)
}

/// The collection fee to charge (policy, capped by the law).
pub fn collection_fee(policy: &SettlementPolicy) -> Money {
    policy
        .collection_fee
        .min(STATUTORY_MAX_COLLECTION_FEE)
        .max(Money::ZERO)
}

/// What one daily run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LadderReport {
    pub overdue: usize,
    pub reminders: usize,
    pub collections: usize,
    pub enforcements: usize,
    /// Reminder and collection fees charged.
    pub fees: Money,
    pub interest: Money,
    pub plans_completed: usize,
    pub plans_broken: usize,
    /// Claims whose remaining fees and interest were written off.
    pub fees_waived: usize,
    /// What was written off.
    pub waived: Money,
    /// Invoices whose step failed (rolled back; logged; retried next run).
    pub failed: usize,
}

/// One claim to hand over to Kronofogden (an application for a
/// betalningsföreläggande lists the principal, each cost and the interest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnforcementItem {
    pub invoice_id: i64,
    pub ocr: String,
    pub number: String,
    pub customer_number: Option<String>,
    pub holder_name: Option<String>,
    pub address_lines: Vec<String>,
    pub due_date: NaiveDate,
    /// The invoice amount itself (calls and invoicing fees, less credits).
    pub principal: Money,
    pub reminder_fee: Money,
    pub collection_fee: Money,
    /// Reminder and collection fees.
    pub fees: Money,
    /// Late-payment interest charged with the demand.
    pub interest: Money,
    /// Interest was charged through this date; it runs on from the next day.
    pub interest_charged_to: Option<NaiveDate>,
    pub paid: Money,
    pub outstanding: Money,
    pub handed_over_on: NaiveDate,
}

/// The daily run for `date`: installment plans first (a broken plan's
/// claims rejoin the ladder), then every claim's next step. Idempotent.
pub async fn run_ladder<S: Store>(
    s: &Settlement<S>,
    date: NaiveDate,
) -> SettlementResult<LadderReport> {
    let mut report = LadderReport::default();
    let (completed, broken) = plans::check_plans(s, date).await?;
    report.plans_completed = completed;
    report.plans_broken = broken;

    let mut after_id = 0i64;
    loop {
        // Candidates only; each is locked and checked again in its own step.
        let ids: Vec<i64> = sqlx::query_scalar(
            "select i.id from invoices i
             where i.id > $2 and i.status = 'open' and i.total_ore > i.paid_ore and not i.disputed
               and i.stage <> 'enforcement'
               and not exists (select 1 from installment_plans p where p.id = i.plan_id and p.status = 'active')
               and $1 > least(i.due_date, i.stage_due_date)
             order by i.id limit $3",
        )
        .bind(date)
        .bind(after_id)
        .bind(BATCH)
        .fetch_all(&s.pool)
        .await?;
        let Some(&last) = ids.last() else { break };
        after_id = last;
        for id in ids {
            match advance(s, id, date, &mut report).await {
                Ok(()) => {}
                Err(SettlementError::Db(e)) => return Err(SettlementError::Db(e)),
                Err(e) => {
                    report.failed += 1;
                    tracing::error!(invoice = id, %date, error = %e, "ladder step failed; retried next run");
                }
            }
        }
    }
    Ok(report)
}

/// Takes the steps due for one invoice on `date`, each in its own transaction.
async fn advance<S: Store>(
    s: &Settlement<S>,
    id: i64,
    date: NaiveDate,
    report: &mut LadderReport,
) -> SettlementResult<()> {
    for _ in 0..MAX_STEPS_PER_RUN {
        let mut tx = s.pool.begin().await?;
        let Some(inv) = lock_invoice(&mut tx, id).await? else {
            return Ok(());
        };
        if !inv.on_ladder() {
            return Ok(());
        }
        let steps = recorded_steps(&mut tx, id).await?;
        let ladder_fees = ladder_fees_ore(&mut tx, id).await?;
        let state = ClaimState {
            stage: inv.stage,
            due_date: inv.due_date,
            stage_due_date: inv.stage_due_date,
            overdue_recorded: steps.iter().any(|(st, _)| st == "overdue"),
            fees_only: inv.paid_ore >= inv.principal_ore(ladder_fees),
        };
        let Some(step) = next_step(&state, date, &s.policy) else {
            return Ok(());
        };
        let now = s.now();
        let taken = match step {
            Step::Overdue => overdue(&mut tx, &inv, date).await?,
            Step::Reminder => reminder(&mut tx, &s.policy, &inv, date, now).await?,
            Step::Collection => collection(&mut tx, &s.policy, &inv, &steps, date, now).await?,
            Step::Enforcement => enforcement(&mut tx, &inv, date).await?,
            Step::WaiveFees => waive_fees(&mut tx, &s.policy, &inv, date, now).await?,
        };
        let Some((fee, interest)) = taken else {
            // Recorded by a concurrent run: nothing to do.
            return Ok(());
        };
        tx.commit().await?;
        metrics::counter!(m::SETTLEMENT_LADDER_STEPS_TOTAL, "step" => step.as_str()).increment(1);
        tracing::info!(invoice = id, step = step.as_str(), %date, fee_ore = fee.ore(), interest_ore = interest.ore(), "ladder step");
        match step {
            Step::Overdue => report.overdue += 1,
            Step::Reminder => report.reminders += 1,
            Step::Collection => report.collections += 1,
            Step::Enforcement => report.enforcements += 1,
            Step::WaiveFees => {
                report.fees_waived += 1;
                // Negative: what was taken off the claim.
                report.waived -= fee + interest;
                continue;
            }
        }
        report.fees += fee;
        report.interest += interest;
    }
    Ok(())
}

/// Step 1: the number is blocked (R7).
async fn overdue(
    conn: &mut PgConnection,
    inv: &InvoiceRow,
    date: NaiveDate,
) -> SettlementResult<Option<(Money, Money)>> {
    if !record_step(conn, inv.id, "overdue", date, 0, 0, None, "").await? {
        return Ok(None);
    }
    block(conn, inv, "overdue").await?;
    Ok(Some((Money::ZERO, Money::ZERO)))
}

/// Step 2: the written reminder, on paper, with the agreed fee (once).
async fn reminder(
    conn: &mut PgConnection,
    policy: &SettlementPolicy,
    inv: &InvoiceRow,
    date: NaiveDate,
    now: DateTime<Utc>,
) -> SettlementResult<Option<(Money, Money)>> {
    // The fee the caller's terms named, lowest over the invoice's calls.
    let agreed_fee: Option<i64> = sqlx::query_scalar(
        "select min(c.reminder_fee_ore)::bigint from invoice_lines l join consents c on c.call_id = l.call_id
         where l.invoice_id = $1 and l.kind = 'call'",
    )
    .bind(inv.id)
    .fetch_one(&mut *conn)
    .await?;
    let fee = reminder_fee(
        policy,
        inv.reminder_fee_agreed,
        agreed_fee.map(Money::ore_unchecked),
    );
    let new_due = calendar::due_date_after(date, policy.reminder_due_days);
    let note = if inv.reminder_fee_agreed {
        ""
    } else {
        "no reminder fee: none agreed when the debt arose"
    };
    if !record_step(
        conn,
        inv.id,
        "reminder",
        date,
        fee.ore(),
        0,
        Some(new_due),
        note,
    )
    .await?
    {
        return Ok(None);
    }
    if fee.ore() > 0 {
        invoicing::add_line(conn, inv.id, "fee", "Påminnelseavgift", fee.ore()).await?;
        ledger::post(
            conn,
            &Txn::new(
                format!("reminder:{}", inv.id),
                now,
                format!("reminder fee, invoice {}", inv.ocr),
            )
            .debit(account::caller_invoiced(&inv.number), fee.ore())
            .credit(account::INCOME_REMINDER_FEE, fee.ore()),
        )
        .await?;
        queue_store_op(
            conn,
            "apply_invoice",
            &inv.number,
            json!({ "invoice_id": format!("{}-reminder", invoicing::store_invoice_id(inv.id)),
                    "usage_ore": 0, "fees_ore": fee.ore() }),
        )
        .await?;
    }
    sqlx::query(
        "update invoices set stage = 'reminded', stage_due_date = $2,
                fees_ore = fees_ore + $3, total_ore = total_ore + $3 where id = $1",
    )
    .bind(inv.id)
    .bind(new_due)
    .bind(fee.ore())
    .execute(&mut *conn)
    .await?;
    block(conn, inv, "overdue").await?;
    let doc = document::render(conn, policy, inv.id, DocumentKind::Reminder).await?;
    invoicing::queue_document(conn, inv.id, DocumentKind::Reminder, "paper", doc).await?;
    Ok(Some((fee, Money::ZERO)))
}

/// Step 3: the collection demand, on paper, with its fee and the interest.
async fn collection(
    conn: &mut PgConnection,
    policy: &SettlementPolicy,
    inv: &InvoiceRow,
    steps: &[(String, NaiveDate)],
    date: NaiveDate,
    now: DateTime<Utc>,
) -> SettlementResult<Option<(Money, Money)>> {
    let fee = collection_fee(policy);
    let ladder_fees = ladder_fees_ore(conn, inv.id).await?;
    let principal = Money::ore_unchecked((inv.principal_ore(ladder_fees) - inv.paid_ore).max(0));
    let (interest, interest_from) = collection_interest(policy, inv, steps, date, principal)?;
    let new_due = calendar::due_date_after(
        date,
        policy.collection_due_days.max(MIN_COLLECTION_DUE_DAYS),
    );
    let note = format!("interest on {principal} from {interest_from}");
    if !record_step(
        conn,
        inv.id,
        "collection",
        date,
        fee.ore(),
        interest.ore(),
        Some(new_due),
        &note,
    )
    .await?
    {
        return Ok(None);
    }
    if fee.ore() > 0 {
        invoicing::add_line(conn, inv.id, "fee", "Inkassoavgift", fee.ore()).await?;
    }
    if interest.ore() > 0 {
        let from_day = interest_from.succ_opt().unwrap_or(interest_from);
        let description = format!("Dröjsmålsränta {from_day} – {date}");
        invoicing::add_line(conn, inv.id, "interest", &description, interest.ore()).await?;
    }
    let added = fee.ore() + interest.ore();
    ledger::post(
        conn,
        &Txn::new(
            format!("collection:{}", inv.id),
            now,
            format!("collection demand, invoice {}", inv.ocr),
        )
        .debit(account::caller_invoiced(&inv.number), added)
        .credit(account::INCOME_COLLECTION_FEE, fee.ore())
        .credit(account::INCOME_INTEREST, interest.ore()),
    )
    .await?;
    if added > 0 {
        queue_store_op(
            conn,
            "apply_invoice",
            &inv.number,
            json!({ "invoice_id": format!("{}-collection", invoicing::store_invoice_id(inv.id)),
                    "usage_ore": 0, "fees_ore": added }),
        )
        .await?;
    }
    sqlx::query(
        "update invoices set stage = 'collection', stage_due_date = $2, fees_ore = fees_ore + $3,
                interest_ore = interest_ore + $4, total_ore = total_ore + $3 + $4 where id = $1",
    )
    .bind(inv.id)
    .bind(new_due)
    .bind(fee.ore())
    .bind(interest.ore())
    .execute(&mut *conn)
    .await?;
    block(conn, inv, "overdue").await?;
    let doc = document::render(conn, policy, inv.id, DocumentKind::Collection).await?;
    invoicing::queue_document(conn, inv.id, DocumentKind::Collection, "paper", doc).await?;
    Ok(Some((fee, interest)))
}

/// Late-payment interest on `principal` up to `date` (räntelagen 6 §), and
/// the day it runs from.
fn collection_interest(
    policy: &SettlementPolicy,
    inv: &InvoiceRow,
    steps: &[(String, NaiveDate)],
    date: NaiveDate,
    principal: Money,
) -> SettlementResult<(Money, NaiveDate)> {
    // Interest runs from the effective due date: a payment on the next bank
    // day after a due date on a weekend or holiday was on time. After a
    // broken plan the debt fell due again on the day it broke.
    let due = calendar::next_bank_day_on_or_after(inv.due_date);
    let interest_from = steps
        .iter()
        .filter(|(st, _)| st == "plan_broken")
        .map(|(_, on)| *on)
        .max()
        .map_or(due, |broken_on| broken_on.max(due));
    if let interest::Coverage::Stale { valid_through } = policy.reference_rates.coverage(date) {
        tracing::warn!(
            invoice = inv.id,
            %date,
            %valid_through,
            "the reference-rate table ends before this date: the last rate is used; add the Riksbank's rate for the new half-year"
        );
    }
    let interest = interest::late_interest(
        principal,
        interest_from,
        date,
        &policy.reference_rates,
        policy.interest_margin_pp,
    )
    .map_err(|e| SettlementError::Invalid(format!("invoice {}: {e}", inv.id)))?;
    Ok((interest, interest_from))
}

/// Step 4: the hand-over to Kronofogden.
async fn enforcement(
    conn: &mut PgConnection,
    inv: &InvoiceRow,
    date: NaiveDate,
) -> SettlementResult<Option<(Money, Money)>> {
    if inv.disputed {
        // Never for a disputed claim (the candidates exclude it; this is the guard).
        return Ok(None);
    }
    if !record_step(
        conn,
        inv.id,
        "enforcement",
        date,
        0,
        0,
        None,
        "handed over to Kronofogden",
    )
    .await?
    {
        return Ok(None);
    }
    sqlx::query("update invoices set stage = 'enforcement' where id = $1")
        .bind(inv.id)
        .execute(&mut *conn)
        .await?;
    block(conn, inv, "overdue").await?;
    Ok(Some((Money::ZERO, Money::ZERO)))
}

/// Instead of escalating a claim of fees only (module doc): the remainder is
/// written off, interest first, and the invoice is paid. Returns what was
/// taken off, negative, as (fees, interest).
async fn waive_fees(
    conn: &mut PgConnection,
    policy: &SettlementPolicy,
    inv: &InvoiceRow,
    date: NaiveDate,
    now: DateTime<Utc>,
) -> SettlementResult<Option<(Money, Money)>> {
    let remainder = inv.outstanding_ore();
    let waived_interest = remainder.min(inv.interest_ore.max(0));
    let waived_fees = remainder - waived_interest;
    let note = format!(
        "invoice amount paid; {} of fees and interest left not escalated (lag 1981:739 4 §): written off",
        Money::ore_unchecked(remainder)
    );
    if !record_step(
        conn,
        inv.id,
        Step::WaiveFees.as_str(),
        date,
        -waived_fees,
        -waived_interest,
        None,
        &note,
    )
    .await?
    {
        return Ok(None);
    }
    write_off(conn, inv, remainder, now).await?;
    let clear_overdue = !other_overdue(
        conn,
        &inv.number,
        &[inv.id],
        date,
        policy.payment_grace_bank_days,
    )
    .await?;
    let first_invoice_paid = claim::settle_first_invoice(conn, &inv.number).await?;
    queue_store_op(
        conn,
        "apply_payment",
        &inv.number,
        json!({ "payment_id": format!("waive-{}", invoicing::store_invoice_id(inv.id)),
                "amount_ore": remainder, "clear_overdue": clear_overdue,
                "first_invoice_paid": first_invoice_paid }),
    )
    .await?;
    audit(
        conn,
        "settlement",
        "ladder_fees_waived",
        &inv.number,
        json!({ "invoice_id": inv.id, "stage": inv.stage.as_str(), "on": date,
                "fees_ore": waived_fees, "interest_ore": waived_interest }),
    )
    .await?;
    Ok(Some((
        Money::ore_unchecked(-waived_fees),
        Money::ore_unchecked(-waived_interest),
    )))
}

/// The remainder of a claim of fees only, written off: a credit line, the
/// loss booked, the invoice paid.
async fn write_off(
    conn: &mut PgConnection,
    inv: &InvoiceRow,
    remainder: i64,
    now: DateTime<Utc>,
) -> SettlementResult<()> {
    invoicing::add_line(
        conn,
        inv.id,
        "credit",
        "Avskrivna avgifter och ränta",
        -remainder,
    )
    .await?;
    ledger::post(
        conn,
        &Txn::new(
            format!("fees-waived:{}", inv.id),
            now,
            format!("fees and interest written off, invoice {}", inv.ocr),
        )
        .debit(account::LOSSES_WAIVED_FEES, remainder)
        .credit(account::caller_invoiced(&inv.number), remainder),
    )
    .await?;
    sqlx::query(
        "update invoices set credits_ore = credits_ore + $2, total_ore = total_ore - $2,
                status = 'paid', paid_at = $3 where id = $1",
    )
    .bind(inv.id)
    .bind(remainder)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The reminder and collection fees charged on an invoice so far.
async fn ladder_fees_ore(conn: &mut PgConnection, invoice_id: i64) -> SettlementResult<i64> {
    Ok(sqlx::query_scalar(
        "select coalesce(sum(fee_ore), 0)::bigint from collection_steps where invoice_id = $1",
    )
    .bind(invoice_id)
    .fetch_one(&mut *conn)
    .await?)
}

async fn block(conn: &mut PgConnection, inv: &InvoiceRow, why: &str) -> SettlementResult<()> {
    queue_store_op(
        conn,
        "set_block",
        &inv.number,
        json!({ "blocked": true, "reason": format!("invoice {} {why}", inv.ocr) }),
    )
    .await
}

/// The claims handed over to Kronofogden and still unpaid, oldest first:
/// the list to send with the applications. Disputed claims and claims in a
/// kept installment plan are left out.
pub async fn enforcement_list(pool: &PgPool) -> SettlementResult<Vec<EnforcementItem>> {
    let rows = sqlx::query(
        "select i.id, i.ocr, i.number, i.due_date, i.usage_ore, i.fees_ore, i.interest_ore, i.credits_ore,
                i.total_ore, i.paid_ore, h.customer_number, h.name, h.address_lines,
                e.on_date as handed_over_on,
                coalesce(r.fee_ore, 0)::bigint as reminder_fee_ore,
                coalesce(c.fee_ore, 0)::bigint as collection_fee_ore,
                c.on_date as collection_on
         from invoices i
         join collection_steps e on e.invoice_id = i.id and e.step = 'enforcement'
         left join collection_steps r on r.invoice_id = i.id and r.step = 'reminder'
         left join collection_steps c on c.invoice_id = i.id and c.step = 'collection'
         left join holders h on h.id = i.holder_id
         where i.stage = 'enforcement' and i.status = 'open' and not i.disputed and i.total_ore > i.paid_ore
           and not exists (select 1 from installment_plans p where p.id = i.plan_id and p.status = 'active')
         order by e.on_date, i.id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let reminder_fee: i64 = r.get("reminder_fee_ore");
            let collection_fee: i64 = r.get("collection_fee_ore");
            let interest: i64 = r.get("interest_ore");
            let total: i64 = r.get("total_ore");
            let paid: i64 = r.get("paid_ore");
            let fees = reminder_fee + collection_fee;
            EnforcementItem {
                invoice_id: r.get("id"),
                ocr: r.get("ocr"),
                number: r.get("number"),
                customer_number: r.get("customer_number"),
                holder_name: r.get("name"),
                address_lines: r
                    .get::<Option<Vec<String>>, _>("address_lines")
                    .unwrap_or_default(),
                due_date: r.get("due_date"),
                principal: Money::ore_unchecked(total - fees - interest),
                reminder_fee: Money::ore_unchecked(reminder_fee),
                collection_fee: Money::ore_unchecked(collection_fee),
                fees: Money::ore_unchecked(fees),
                interest: Money::ore_unchecked(interest),
                interest_charged_to: if interest > 0 {
                    r.get("collection_on")
                } else {
                    None
                },
                paid: Money::ore_unchecked(paid),
                outstanding: Money::ore_unchecked(total - paid),
                handed_over_on: r.get("handed_over_on"),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn claim(stage: Stage, due: NaiveDate, stage_due: NaiveDate, overdue: bool) -> ClaimState {
        ClaimState {
            stage,
            due_date: due,
            stage_due_date: stage_due,
            overdue_recorded: overdue,
            fees_only: false,
        }
    }

    /// Due Monday 8 December 2025. With 3 bank days of grace for the money
    /// to arrive (R15), each deadline passes only after its grace, and
    /// letters go out on bank days only.
    #[test]
    fn the_ladder_in_order() {
        let p = SettlementPolicy::default();
        let due = ymd(2025, 12, 8);
        let c = claim(Stage::Invoiced, due, due, false);
        assert_eq!(next_step(&c, due, &p), None, "due today is not overdue");
        // 8 December + 3 bank days = Thursday 11: a payment may still arrive.
        assert_eq!(next_step(&c, ymd(2025, 12, 9), &p), None);
        assert_eq!(next_step(&c, ymd(2025, 12, 11), &p), None);
        assert_eq!(next_step(&c, ymd(2025, 12, 12), &p), Some(Step::Overdue));
        // Overdue and reminder due on the same day: overdue first.
        assert_eq!(next_step(&c, ymd(2025, 12, 20), &p), Some(Step::Overdue));
        let c = claim(Stage::Invoiced, due, due, true);
        assert_eq!(next_step(&c, ymd(2025, 12, 12), &p), None);
        // 8 + 5 = Saturday 13: no letter on a weekend; Monday 15.
        assert_eq!(next_step(&c, ymd(2025, 12, 13), &p), None);
        assert_eq!(next_step(&c, ymd(2025, 12, 14), &p), None);
        assert_eq!(next_step(&c, ymd(2025, 12, 15), &p), Some(Step::Reminder));
        // The reminder due Tuesday 23 December; + 3 bank days: 29, 30
        // December (24–26 and 31 are closed, 27–28 a weekend), 2 January.
        let c = claim(Stage::Reminded, due, ymd(2025, 12, 23), true);
        assert_eq!(next_step(&c, ymd(2025, 12, 24), &p), None);
        assert_eq!(next_step(&c, ymd(2026, 1, 2), &p), None);
        assert_eq!(next_step(&c, ymd(2026, 1, 3), &p), None, "a Saturday");
        assert_eq!(next_step(&c, ymd(2026, 1, 5), &p), Some(Step::Collection));
        // The demand due Monday 5 January; + 3 bank days: 7, 8, 9 (the 6th
        // is trettondedag jul): Kronofogden on Monday 12 January.
        let c = claim(Stage::Collection, due, ymd(2026, 1, 5), true);
        assert_eq!(next_step(&c, ymd(2026, 1, 9), &p), None);
        assert_eq!(next_step(&c, ymd(2026, 1, 10), &p), None);
        assert_eq!(next_step(&c, ymd(2026, 1, 12), &p), Some(Step::Enforcement));
        let c = claim(Stage::Enforcement, due, ymd(2026, 1, 5), true);
        assert_eq!(next_step(&c, ymd(2027, 1, 1), &p), None);
    }

    /// The example: due nyårsafton 2026 (Thursday 31 December),
    /// banks closed until Monday 4 January 2027.
    #[test]
    fn a_due_date_on_new_years_eve() {
        let p = SettlementPolicy::default();
        let due = ymd(2026, 12, 31);
        // 4 January + 3 bank days: 5, 7, 8 (the 6th is trettondedag jul).
        assert!(!is_overdue(due, due, ymd(2027, 1, 1), 3));
        assert!(!is_overdue(due, due, ymd(2027, 1, 8), 3));
        assert!(is_overdue(due, due, ymd(2027, 1, 9), 3));
        let c = claim(Stage::Invoiced, due, due, false);
        assert_eq!(next_step(&c, ymd(2027, 1, 5), &p), None);
        assert_eq!(next_step(&c, ymd(2027, 1, 9), &p), Some(Step::Overdue));
        let c = claim(Stage::Invoiced, due, due, true);
        assert_eq!(next_step(&c, ymd(2027, 1, 10), &p), None, "a Sunday");
        assert_eq!(next_step(&c, ymd(2027, 1, 11), &p), Some(Step::Reminder));
    }

    #[test]
    fn a_claim_of_fees_only_is_written_off_not_escalated() {
        let p = SettlementPolicy::default();
        let due = ymd(2025, 12, 8);
        let mut c = claim(Stage::Reminded, due, ymd(2025, 12, 23), true);
        c.fees_only = true;
        assert_eq!(
            next_step(&c, ymd(2026, 1, 2), &p),
            None,
            "the fee is owed until then"
        );
        assert_eq!(next_step(&c, ymd(2026, 1, 5), &p), Some(Step::WaiveFees));
        let mut c = claim(Stage::Collection, due, ymd(2026, 1, 5), true);
        c.fees_only = true;
        assert_eq!(next_step(&c, ymd(2026, 1, 12), &p), Some(Step::WaiveFees));
    }

    #[test]
    fn never_a_reminder_on_the_due_date() {
        let p = SettlementPolicy {
            reminder_after_days: 0,
            payment_grace_bank_days: 0,
            ..SettlementPolicy::default()
        };
        let due = ymd(2025, 12, 8);
        let c = claim(Stage::Invoiced, due, due, true);
        assert_eq!(next_step(&c, due, &p), None);
        assert_eq!(next_step(&c, ymd(2025, 12, 9), &p), Some(Step::Reminder));
    }

    #[test]
    fn new_time_and_broken_plans() {
        let p = SettlementPolicy::default();
        // A rejected dispute gave time to Tuesday 2026-01-20: the reminder
        // waits for it + 5 days (Sunday 25) and its grace (21, 22, 23): Monday
        // 26 January; the claim stays overdue (its printed due date has passed).
        let c = claim(Stage::Invoiced, ymd(2025, 12, 8), ymd(2026, 1, 20), true);
        assert!(is_overdue(
            c.due_date,
            c.stage_due_date,
            ymd(2026, 1, 10),
            3
        ));
        assert_eq!(next_step(&c, ymd(2026, 1, 24), &p), None);
        assert_eq!(next_step(&c, ymd(2026, 1, 25), &p), None);
        assert_eq!(next_step(&c, ymd(2026, 1, 26), &p), Some(Step::Reminder));
        // A plan made before the due date broke on Monday 2025-12-01: due at
        // once, with the grace of a payment in transit (2, 3, 4 December).
        let c = claim(Stage::Invoiced, ymd(2025, 12, 8), ymd(2025, 12, 1), false);
        assert_eq!(next_step(&c, ymd(2025, 12, 4), &p), None);
        assert_eq!(next_step(&c, ymd(2025, 12, 5), &p), Some(Step::Overdue));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the dates: a letter or a hand-over only on a bank
            /// day, and no step before the stage's deadline and its grace.
            #[test]
            fn letters_on_bank_days_and_never_inside_the_grace(
                due_days in 0i64..3_000,
                extra in 0i64..40,
                after in 0i64..60,
                stage in 0usize..3,
                overdue in any::<bool>(),
            ) {
                let p = SettlementPolicy::default();
                let due = ymd(2024, 1, 1) + chrono::Duration::days(due_days);
                let stage_due = due + chrono::Duration::days(extra);
                let date = due + chrono::Duration::days(after);
                let stage = [Stage::Invoiced, Stage::Reminded, Stage::Collection][stage];
                let c = claim(stage, due, stage_due, overdue);
                if let Some(step) = next_step(&c, date, &p) {
                    let grace_end = calendar::payment_grace_end(
                        if step == Step::Overdue { due.min(stage_due) } else { stage_due },
                        p.payment_grace_bank_days,
                    );
                    prop_assert!(date > grace_end, "{step:?} on {date}, grace to {grace_end}");
                    if step != Step::Overdue {
                        prop_assert!(calendar::is_bank_day(date), "{step:?} on {date}");
                    }
                }
            }
        }
    }

    #[test]
    fn fees_respect_agreement_and_law() {
        let p = SettlementPolicy::default();
        assert_eq!(reminder_fee(&p, false, Some(Money::sek(60))), Money::ZERO);
        assert_eq!(reminder_fee(&p, true, Some(Money::sek(60))), Money::sek(60));
        assert_eq!(reminder_fee(&p, true, Some(Money::sek(45))), Money::sek(45));
        assert_eq!(reminder_fee(&p, true, None), Money::sek(60));
        let greedy = SettlementPolicy {
            reminder_fee: Money::sek(100),
            collection_fee: Money::sek(500),
            ..SettlementPolicy::default()
        };
        assert_eq!(
            reminder_fee(&greedy, true, Some(Money::sek(100))),
            Money::sek(60)
        );
        assert_eq!(collection_fee(&greedy), Money::sek(180));
        assert_eq!(collection_fee(&p), Money::sek(180));
    }
}
