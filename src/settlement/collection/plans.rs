//! Installment plans (SPEC R18): a holder who cannot pay at once may pay a
//! debt over 2 000 SEK (`installment_min_debt`; a smaller one by an
//! individual decision) in monthly installments of at least 500 SEK
//! (`installment_min_monthly`).
//!
//! The plan covers the whole debt of the number: every open, undisputed
//! invoice, as it stands when the plan is made. While the plan is kept the
//! ladder leaves those invoices alone: no reminder or collection fee, no
//! late-payment interest, no step (R18), and they do not count for the
//! overdue block (R7), which is lifted when the plan is made. Agreeing to a
//! plan acknowledges the debt, so a planned invoice cannot then be disputed.
//!
//! [`check_plans`] (run by the ladder every day) judges each plan kept while
//! what was paid towards its invoices since it was made covers every
//! installment whose due date, plus `installment_grace_days` bank days for
//! the payment to arrive (R15), has passed. One missed installment breaks the
//! plan: the whole remaining debt falls due at once (its invoices'
//! `stage_due_date` becomes that day), the number is blocked again and the
//! ladder resumes from each invoice's stage. A plan whose debt is paid is
//! completed.
//!
//! "Paid since the plan" is read from `payment_allocations`, the payments
//! module's record of where money went, minus what had been allocated to the
//! same invoices when the plan was made (`paid_before_ore`, see
//! migrations/0003_ladder.sql). This keeps plans independent of how payments
//! are matched and of any clock. Steps are recorded once per invoice
//! (`collection_steps` is unique per step), so when an invoice is planned
//! and broken a second time the audit log, not a second step, records it,
//! and its interest restarts from the first break. A plan's written amortization-plan fee
//! (lag 1981:739 3 § 2, at most 170 SEK) is not charged.

use chrono::{Months, NaiveDate};
use serde_json::json;
use sqlx::{PgConnection, Row};

use crate::domain::{Money, E164};
use crate::settlement::calendar;
use crate::settlement::collection::claim::{is_overdue, other_overdue, record_step};
use crate::settlement::context::{
    audit, queue_store_op, Settlement, SettlementError, SettlementResult,
};
use crate::settlement::policy::SettlementPolicy;
use crate::store::Store;

/// A plan longer than this is a typing error, not a plan (10 years).
pub const MAX_INSTALLMENTS: usize = 120;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PlanStatus {
    Active,
    Completed,
    Broken,
}

impl PlanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::Active => "active",
            PlanStatus::Completed => "completed",
            PlanStatus::Broken => "broken",
        }
    }

    pub fn parse(s: &str) -> Option<PlanStatus> {
        Some(match s {
            "active" => PlanStatus::Active,
            "completed" => PlanStatus::Completed,
            "broken" => PlanStatus::Broken,
            _ => return None,
        })
    }
}

/// One monthly installment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanItem {
    pub seq: i32,
    pub due_date: NaiveDate,
    pub amount: Money,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub id: i64,
    pub number: String,
    /// The debt the plan covers.
    pub total: Money,
    pub monthly: Money,
    pub first_due_date: NaiveDate,
    pub status: PlanStatus,
    pub decided_by: String,
    pub invoice_ids: Vec<i64>,
    pub items: Vec<PlanItem>,
}

/// How a plan stands on a date (pure; see [`standing`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Everything is paid.
    Completed,
    /// Every installment whose grace has passed is covered.
    Kept,
    /// This installment (the first not covered) was missed.
    Broken { missed_seq: i32 },
}

/// The installments for `debt` at `monthly` a month from `first_due`: equal
/// amounts, the last one the rest. Dates keep the day of the month (the
/// month's last day where it is shorter).
pub fn schedule(
    debt: Money,
    monthly: Money,
    first_due: NaiveDate,
) -> SettlementResult<Vec<PlanItem>> {
    if debt.ore() <= 0 {
        return Err(SettlementError::Refused("no open debt to plan".into()));
    }
    if monthly.ore() <= 0 {
        return Err(SettlementError::Invalid(
            "the monthly amount must be positive".into(),
        ));
    }
    let count = (debt.ore() + monthly.ore() - 1) / monthly.ore();
    if count as usize > MAX_INSTALLMENTS {
        return Err(SettlementError::Refused(format!(
            "{monthly} a month would take {count} months to pay {debt}; at most {MAX_INSTALLMENTS} installments"
        )));
    }
    let mut items = Vec::with_capacity(count as usize);
    let mut left = debt.ore();
    for k in 0..count {
        let due_date = first_due
            .checked_add_months(Months::new(k as u32))
            .ok_or_else(|| SettlementError::Invalid("installment date out of range".into()))?;
        let amount = left.min(monthly.ore());
        left -= amount;
        items.push(PlanItem {
            seq: k as i32 + 1,
            due_date,
            amount: Money::ore_unchecked(amount),
        });
    }
    Ok(items)
}

/// How a plan stands on `date` when `paid_since` has been paid towards it:
/// an installment must be covered once `grace_bank_days` bank days have
/// passed after its due date.
pub fn standing(
    items: &[PlanItem],
    paid_since: Money,
    date: NaiveDate,
    grace_bank_days: u32,
) -> Standing {
    let total: Money = items.iter().map(|i| i.amount).sum();
    if paid_since >= total {
        return Standing::Completed;
    }
    let mut owed = Money::ZERO;
    for item in items {
        if calendar::payment_grace_end(item.due_date, grace_bank_days) >= date {
            break;
        }
        owed += item.amount;
        if paid_since < owed {
            return Standing::Broken {
                missed_seq: item.seq,
            };
        }
    }
    Standing::Kept
}

/// Makes a plan for the whole open, undisputed debt of `number` (R18),
/// decided by `decided_by`. `allow_small_debt` is the individual decision
/// that allows a debt not over `installment_min_debt`. Refuses, writing
/// nothing, a monthly amount under `installment_min_monthly`, a first due
/// date in the past, a number without debt or with a plan already kept.
pub async fn create_plan<S: Store>(
    s: &Settlement<S>,
    number: &str,
    monthly: Money,
    first_due: NaiveDate,
    decided_by: &str,
    allow_small_debt: bool,
) -> SettlementResult<Plan> {
    let number = E164::parse(number)
        .map_err(|e| SettlementError::Invalid(format!("number: {e}")))?
        .as_str()
        .to_string();
    let today = s.today();
    check_request(&s.policy, monthly, first_due, decided_by, today)?;

    let mut tx = s.pool.begin().await?;
    let PlanClaims {
        invoice_ids,
        debt,
        was_overdue,
    } = plan_claims(&mut tx, &number, today, s.policy.payment_grace_bank_days).await?;
    let min_debt = s.policy.installment_min_debt;
    let small = debt <= min_debt;
    if small && !allow_small_debt {
        return Err(SettlementError::Refused(format!(
            "a debt of {debt} is not over {min_debt}: a plan needs an individual decision (R18)"
        )));
    }
    let items = schedule(debt, monthly, first_due)?;

    let paid_before: i64 = sqlx::query_scalar(
        "select coalesce(sum(amount_ore), 0)::bigint from payment_allocations
         where kind = 'invoice' and invoice_id = any($1)",
    )
    .bind(&invoice_ids)
    .fetch_one(&mut *tx)
    .await?;
    let note = if small {
        "debt not over the minimum: individual decision"
    } else {
        ""
    };
    let new_plan = NewPlan {
        number: &number,
        debt,
        monthly,
        first_due,
        decided_by,
        note,
        paid_before,
        items: &items,
        invoice_ids: &invoice_ids,
    };
    let id = insert_plan(&mut tx, &new_plan, s.now()).await?;
    pause_claims(
        &mut tx,
        id,
        &number,
        &invoice_ids,
        today,
        was_overdue,
        s.policy.payment_grace_bank_days,
    )
    .await?;
    audit(
        &mut tx,
        decided_by,
        "installment_plan_created",
        &number,
        json!({ "plan_id": id, "total_ore": debt.ore(), "monthly_ore": monthly.ore(),
                "first_due_date": first_due, "installments": items.len(),
                "invoices": invoice_ids, "small_debt_decision": small }),
    )
    .await?;
    tx.commit().await?;
    Ok(Plan {
        id,
        number,
        total: debt,
        monthly,
        first_due_date: first_due,
        status: PlanStatus::Active,
        decided_by: decided_by.to_string(),
        invoice_ids,
        items,
    })
}

/// The checks of a plan request that need no database (R18): who decided
/// it, at least the minimum monthly amount, a first due date not past.
fn check_request(
    policy: &SettlementPolicy,
    monthly: Money,
    first_due: NaiveDate,
    decided_by: &str,
    today: NaiveDate,
) -> SettlementResult<()> {
    if decided_by.trim().is_empty() {
        return Err(SettlementError::Invalid(
            "a plan needs the name of whoever decided it".into(),
        ));
    }
    let min_monthly = policy.installment_min_monthly;
    if monthly < min_monthly {
        return Err(SettlementError::Refused(format!(
            "at least {min_monthly} a month (R18); {monthly} asked"
        )));
    }
    if first_due < today {
        return Err(SettlementError::Invalid(format!(
            "the first installment cannot be due before today ({first_due} < {today})"
        )));
    }
    Ok(())
}

/// The claims a plan covers, their debt, and whether any is overdue.
struct PlanClaims {
    invoice_ids: Vec<i64>,
    debt: Money,
    was_overdue: bool,
}

/// Every open, undisputed invoice of `number` with something outstanding,
/// locked. Refused when one is already in a kept plan, or there is no debt.
async fn plan_claims(
    tx: &mut PgConnection,
    number: &str,
    today: NaiveDate,
    grace_bank_days: u32,
) -> SettlementResult<PlanClaims> {
    let rows = sqlx::query(
        "select i.id, i.total_ore, i.paid_ore, i.due_date, i.stage_due_date,
                (select p.id from installment_plans p where p.id = i.plan_id and p.status = 'active') as active_plan
         from invoices i
         where i.number = $1 and i.status = 'open' and not i.disputed and i.total_ore > i.paid_ore
         order by i.id for update of i",
    )
    .bind(number)
    .fetch_all(&mut *tx)
    .await?;
    if let Some(active) = rows
        .iter()
        .find_map(|r| r.get::<Option<i64>, _>("active_plan"))
    {
        return Err(SettlementError::Refused(format!(
            "{number} already has installment plan {active}"
        )));
    }
    let invoice_ids: Vec<i64> = rows.iter().map(|r| r.get("id")).collect();
    let debt = Money::ore_unchecked(
        rows.iter()
            .map(|r| r.get::<i64, _>("total_ore") - r.get::<i64, _>("paid_ore"))
            .sum(),
    );
    if debt.ore() <= 0 {
        return Err(SettlementError::Refused(format!(
            "{number} has no open, undisputed debt"
        )));
    }
    let was_overdue = rows.iter().any(|r| {
        is_overdue(
            r.get("due_date"),
            r.get("stage_due_date"),
            today,
            grace_bank_days,
        )
    });
    Ok(PlanClaims {
        invoice_ids,
        debt,
        was_overdue,
    })
}

/// A plan about to be stored.
struct NewPlan<'a> {
    number: &'a str,
    debt: Money,
    monthly: Money,
    first_due: NaiveDate,
    decided_by: &'a str,
    note: &'a str,
    /// What was paid towards the invoices before the plan.
    paid_before: i64,
    items: &'a [PlanItem],
    invoice_ids: &'a [i64],
}

/// Stores the plan, its installments, and the plan on its invoices;
/// returns the plan's id.
async fn insert_plan(
    tx: &mut PgConnection,
    p: &NewPlan<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> SettlementResult<i64> {
    let id: i64 = sqlx::query_scalar(
        "insert into installment_plans (number, total_ore, monthly_ore, first_due_date, status, decided_by, note,
                                        created_at, paid_before_ore)
         values ($1, $2, $3, $4, 'active', $5, $6, $7, $8) returning id",
    )
    .bind(p.number)
    .bind(p.debt.ore())
    .bind(p.monthly.ore())
    .bind(p.first_due)
    .bind(p.decided_by)
    .bind(p.note)
    .bind(now)
    .bind(p.paid_before)
    .fetch_one(&mut *tx)
    .await?;
    let seqs: Vec<i32> = p.items.iter().map(|i| i.seq).collect();
    let dates: Vec<NaiveDate> = p.items.iter().map(|i| i.due_date).collect();
    let amounts: Vec<i64> = p.items.iter().map(|i| i.amount.ore()).collect();
    sqlx::query(
        "insert into installment_items (plan_id, seq, due_date, amount_ore)
         select $1, s, d, a from unnest($2::int[], $3::date[], $4::bigint[]) as t(s, d, a)",
    )
    .bind(id)
    .bind(&seqs)
    .bind(&dates)
    .bind(&amounts)
    .execute(&mut *tx)
    .await?;
    sqlx::query("update invoices set plan_id = $1 where id = any($2)")
        .bind(id)
        .bind(p.invoice_ids)
        .execute(&mut *tx)
        .await?;
    Ok(id)
}

/// The planned claims leave the ladder: a `paused_plan` step on each, and
/// the overdue block lifted when no other claim keeps it (R7).
async fn pause_claims(
    tx: &mut PgConnection,
    id: i64,
    number: &str,
    invoice_ids: &[i64],
    today: NaiveDate,
    was_overdue: bool,
    grace_bank_days: u32,
) -> SettlementResult<()> {
    let step_note = format!("installment plan {id}");
    for &invoice_id in invoice_ids {
        // Once per invoice: a later plan for the same invoice is in the audit log.
        record_step(
            &mut *tx,
            invoice_id,
            "paused_plan",
            today,
            0,
            0,
            None,
            &step_note,
        )
        .await?;
    }
    // The planned invoices no longer count as overdue (R7).
    if was_overdue && !other_overdue(&mut *tx, number, invoice_ids, today, grace_bank_days).await? {
        queue_store_op(
            &mut *tx,
            "set_block",
            number,
            json!({ "blocked": false, "reason": format!("installment plan {id}") }),
        )
        .await?;
    }
    Ok(())
}

/// Judges every active plan on `date` (see the module doc); returns how many
/// were completed and how many broke. Each plan is one transaction.
pub async fn check_plans<S: Store>(
    s: &Settlement<S>,
    date: NaiveDate,
) -> SettlementResult<(usize, usize)> {
    let ids: Vec<i64> =
        sqlx::query_scalar("select id from installment_plans where status = 'active' order by id")
            .fetch_all(&s.pool)
            .await?;
    let (mut completed, mut broken) = (0, 0);
    for id in ids {
        let mut tx = s.pool.begin().await?;
        match check_plan(&mut tx, s, id, date).await? {
            Some(Standing::Completed) => completed += 1,
            Some(Standing::Broken { .. }) => broken += 1,
            _ => {}
        }
        tx.commit().await?;
    }
    Ok((completed, broken))
}

async fn check_plan<S: Store>(
    conn: &mut PgConnection,
    s: &Settlement<S>,
    id: i64,
    date: NaiveDate,
) -> SettlementResult<Option<Standing>> {
    let Some(plan) = sqlx::query(
        "select number, paid_before_ore from installment_plans where id = $1 and status = 'active' for update",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let number: String = plan.get("number");
    let paid_before: i64 = plan.get("paid_before_ore");
    let invoices = sqlx::query(
        "select id, status, total_ore, paid_ore from invoices where plan_id = $1 order by id for update",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let invoice_ids: Vec<i64> = invoices.iter().map(|r| r.get("id")).collect();
    let paid_all: i64 = sqlx::query_scalar(
        "select coalesce(sum(amount_ore), 0)::bigint from payment_allocations
         where kind = 'invoice' and invoice_id = any($1)",
    )
    .bind(&invoice_ids)
    .fetch_one(&mut *conn)
    .await?;
    let paid_since = Money::ore_unchecked((paid_all - paid_before).max(0));
    let items: Vec<PlanItem> = sqlx::query(
        "select seq, due_date, amount_ore from installment_items where plan_id = $1 order by seq",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| PlanItem {
        seq: r.get("seq"),
        due_date: r.get("due_date"),
        amount: Money::ore_unchecked(r.get("amount_ore")),
    })
    .collect();

    // What is paid, installment by installment, for anyone looking at the plan.
    let mut left = paid_since.ore();
    for item in &items {
        let paid = left.min(item.amount.ore());
        left -= paid;
        sqlx::query("update installment_items set paid_ore = $3 where plan_id = $1 and seq = $2")
            .bind(id)
            .bind(item.seq)
            .bind(paid)
            .execute(&mut *conn)
            .await?;
    }

    let nothing_left = invoices.iter().all(|r| {
        r.get::<String, _>("status") != "open"
            || r.get::<i64, _>("total_ore") <= r.get::<i64, _>("paid_ore")
    });
    let verdict = if nothing_left {
        Standing::Completed
    } else {
        standing(&items, paid_since, date, s.policy.installment_grace_days)
    };
    match &verdict {
        Standing::Kept => {}
        Standing::Completed => complete_plan(conn, id, &number, paid_since, date, s.now()).await?,
        Standing::Broken { missed_seq } => {
            let plan = PlanRef {
                id,
                number: &number,
                paid_since,
            };
            break_plan(conn, &plan, *missed_seq, &invoices, date, s.now()).await?
        }
    }
    Ok(Some(verdict))
}

/// The plan being judged.
struct PlanRef<'a> {
    id: i64,
    number: &'a str,
    paid_since: Money,
}

/// Every claim of the plan is paid: the plan is completed.
async fn complete_plan(
    conn: &mut PgConnection,
    id: i64,
    number: &str,
    paid_since: Money,
    date: NaiveDate,
    now: chrono::DateTime<chrono::Utc>,
) -> SettlementResult<()> {
    sqlx::query("update installment_plans set status = 'completed', ended_at = $2 where id = $1")
        .bind(id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    audit(
        conn,
        "settlement",
        "installment_plan_completed",
        number,
        json!({ "plan_id": id, "paid_since_ore": paid_since.ore(), "on": date }),
    )
    .await?;
    Ok(())
}

/// An installment was missed (R18): the plan is broken, the whole debt is
/// due at once, the claims rejoin the ladder and the number is blocked (R7).
async fn break_plan(
    conn: &mut PgConnection,
    plan: &PlanRef<'_>,
    missed_seq: i32,
    invoices: &[sqlx::postgres::PgRow],
    date: NaiveDate,
    now: chrono::DateTime<chrono::Utc>,
) -> SettlementResult<()> {
    let PlanRef {
        id,
        number,
        paid_since,
    } = *plan;
    let invoice_ids: Vec<i64> = invoices.iter().map(|r| r.get("id")).collect();
    sqlx::query("update installment_plans set status = 'broken', ended_at = $2 where id = $1")
        .bind(id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    let note = format!("installment {missed_seq} of plan {id} missed: the whole debt is due");
    let mut reopened = 0;
    for r in invoices {
        let open = r.get::<String, _>("status") == "open"
            && r.get::<i64, _>("total_ore") > r.get::<i64, _>("paid_ore");
        if !open {
            continue;
        }
        let invoice_id: i64 = r.get("id");
        record_step(
            conn,
            invoice_id,
            "plan_broken",
            date,
            0,
            0,
            Some(date),
            &note,
        )
        .await?;
        sqlx::query("update invoices set stage_due_date = $2 where id = $1")
            .bind(invoice_id)
            .bind(date)
            .execute(&mut *conn)
            .await?;
        reopened += 1;
    }
    if reopened > 0 {
        // A missed installment is a payment default: blocked at once (R7).
        queue_store_op(
            conn,
            "set_block",
            number,
            json!({ "blocked": true, "reason": format!("installment plan {id} broken") }),
        )
        .await?;
    }
    audit(
        conn,
        "settlement",
        "installment_plan_broken",
        number,
        json!({ "plan_id": id, "missed_seq": missed_seq, "paid_since_ore": paid_since.ore(),
                "on": date, "invoices": invoice_ids }),
    )
    .await?;
    metrics::counter!(crate::metrics::SETTLEMENT_LADDER_STEPS_TOTAL, "step" => "plan_broken")
        .increment(1);
    Ok(())
}

/// A plan as stored.
pub async fn plan(conn: &mut PgConnection, id: i64) -> SettlementResult<Plan> {
    let r = sqlx::query(
        "select id, number, total_ore, monthly_ore, first_due_date, status, decided_by
         from installment_plans where id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| SettlementError::NotFound(format!("installment plan {id}")))?;
    let status: String = r.get("status");
    let invoice_ids: Vec<i64> =
        sqlx::query_scalar("select id from invoices where plan_id = $1 order by id")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
    let items = sqlx::query(
        "select seq, due_date, amount_ore from installment_items where plan_id = $1 order by seq",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| PlanItem {
        seq: r.get("seq"),
        due_date: r.get("due_date"),
        amount: Money::ore_unchecked(r.get("amount_ore")),
    })
    .collect();
    Ok(Plan {
        id,
        number: r.get("number"),
        total: Money::ore_unchecked(r.get("total_ore")),
        monthly: Money::ore_unchecked(r.get("monthly_ore")),
        first_due_date: r.get("first_due_date"),
        status: PlanStatus::parse(&status).ok_or_else(|| {
            SettlementError::Invalid(format!("installment plan {id}: status {status}"))
        })?,
        decided_by: r.get("decided_by"),
        invoice_ids,
        items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn equal_installments_and_the_rest() {
        let items = schedule(
            Money::ore_unchecked(421_600),
            Money::sek(1500),
            ymd(2026, 1, 31),
        )
        .unwrap();
        let amounts: Vec<i64> = items.iter().map(|i| i.amount.ore()).collect();
        assert_eq!(amounts, vec![150_000, 150_000, 121_600]);
        let dates: Vec<NaiveDate> = items.iter().map(|i| i.due_date).collect();
        assert_eq!(
            dates,
            vec![ymd(2026, 1, 31), ymd(2026, 2, 28), ymd(2026, 3, 31)]
        );
        assert_eq!(
            items.iter().map(|i| i.amount).sum::<Money>(),
            Money::ore_unchecked(421_600)
        );
        let exact = schedule(Money::sek(3000), Money::sek(1000), ymd(2026, 1, 10)).unwrap();
        assert_eq!(exact.len(), 3);
        assert_eq!(exact[2].amount, Money::sek(1000));
        assert!(schedule(Money::ZERO, Money::sek(500), ymd(2026, 1, 10)).is_err());
        assert!(schedule(Money::sek(100_000), Money::sek(500), ymd(2026, 1, 10)).is_err());
    }

    #[test]
    fn one_missed_installment_breaks_the_plan() {
        let items = schedule(Money::sek(3000), Money::sek(1000), ymd(2026, 2, 10)).unwrap();
        // Tuesday 10 Feb + 3 bank days = Friday 13 Feb.
        assert_eq!(
            standing(&items, Money::ZERO, ymd(2026, 2, 13), 3),
            Standing::Kept
        );
        assert_eq!(
            standing(&items, Money::ZERO, ymd(2026, 2, 14), 3),
            Standing::Broken { missed_seq: 1 }
        );
        assert_eq!(
            standing(&items, Money::sek(1000), ymd(2026, 3, 13), 3),
            Standing::Kept
        );
        assert_eq!(
            standing(&items, Money::sek(1999), ymd(2026, 3, 14), 3),
            Standing::Broken { missed_seq: 2 }
        );
        // Paying ahead is fine; paying everything completes it.
        assert_eq!(
            standing(&items, Money::sek(2000), ymd(2026, 2, 20), 3),
            Standing::Kept
        );
        assert_eq!(
            standing(&items, Money::sek(3000), ymd(2026, 2, 1), 3),
            Standing::Completed
        );
    }
}
