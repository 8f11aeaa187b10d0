//! Retention (GDPR Art. 5(1)(e); Bokföringslagen 7 kap. 2 §;
//! preskriptionslagen 2 §): nothing is kept longer than its reason.
//!
//! | what | kept | then |
//! |---|---|---|
//! | bookkeeping records: closed invoices with their lines, documents, steps, disputes and chargebacks; the calls on them; payments and allocations; prepaid orders and movements; merchant statements; BgMax files; the events and audit entries of the period; the calendar runs | until the end of the 7th year after the year they belong to (`--bookkeeping-retention-years`, at least 7: BFL 7 kap. 2 §; a record of 2025 goes on 1 January 2033), and while the claim is open (an open, held or disputed invoice, an active plan, an unmatched payment) | deleted |
//! | ledger entries of those years | likewise | folded into one opening-balance entry per account (dated the first day kept), so every balance stays exact and an account whose old entries sum to zero — a number's settled accounts — disappears |
//! | consent evidence (the consents, their events, the evidence copied into resolved disputes), expired and released holds, the number on prepaid calls, dead letters, applied store operations, extracts delivered | until the end of the 3rd year after the call (`--evidence-retention-years`; a consumer claim is time-barred after 3 years, preskriptionslagen 2 §), and while the call's invoice is open or held | deleted, or redacted where the row is bookkeeping |
//! | an erased holder and its numbers | until their last record above is gone | deleted |
//! | a holder who is not erased | while the number is theirs (the directory keeps it current) | — |
//!
//! The daily calendar runs the job on its first run of each month (the
//! cut-offs move once a year; a month bounds how long a claim closed since
//! stays), and `callauth-settlement retention --at DATE` runs it for any
//! date. It is one transaction and idempotent; what it did is recorded in
//! `calendar_runs` and counted by `callauth_settlement_calendar_runs_total{job="retention"}`.
//! It scans by date without indexes of its own: once a month, that costs
//! less than indexing every call on the ingest path.

use chrono::{Datelike, NaiveDate};
use serde::Serialize;
use serde_json::json;

use crate::metrics as m;
use crate::settlement::calendar;
use crate::settlement::context::{claim_calendar_job, ms_to_utc, Settlement, SettlementResult};
use crate::store::Store;

/// What one run deleted or redacted, per kind of record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    pub date: Option<NaiveDate>,
    /// Bookkeeping records dated before this day were eligible.
    pub bookkeeping_before: Option<NaiveDate>,
    /// Evidence of calls before this day was eligible.
    pub evidence_before: Option<NaiveDate>,
    pub consents_deleted: u64,
    pub events_redacted: u64,
    pub dispute_evidence_redacted: u64,
    pub prepaid_numbers_removed: u64,
    pub invoices_deleted: u64,
    pub usage_deleted: u64,
    pub payments_deleted: u64,
    pub statements_deleted: u64,
    pub events_deleted: u64,
    pub audit_entries_deleted: u64,
    pub ledger_entries_folded: u64,
    pub numbers_deleted: u64,
    pub holders_deleted: u64,
}

/// The first day whose records are kept on `date`: 1 January of the year
/// `years` before `date`'s (records of `date.year() − years − 1` and earlier go).
pub fn keep_from(date: NaiveDate, years: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(date.year() - years as i32, 1, 1).expect("a valid year")
}

fn start_of(day: NaiveDate) -> chrono::DateTime<chrono::Utc> {
    ms_to_utc(calendar::start_of_day_utc_ms(day))
}

/// Whether the retention job already ran in `date`'s month.
pub async fn ran_this_month(pool: &sqlx::PgPool, date: NaiveDate) -> SettlementResult<bool> {
    let first = date.with_day(1).expect("day 1 exists");
    Ok(sqlx::query_scalar(
        "select exists(select 1 from calendar_runs where job = 'retention' and run_date >= $1 and run_date <= $2)",
    )
    .bind(first)
    .bind(date)
    .fetch_one(pool)
    .await?)
}

/// Runs `sql` with `$1` bound to `value` (a day or an instant, as the
/// statement compares it); returns the rows affected.
async fn exec<T>(tx: &mut sqlx::PgConnection, sql: &'static str, value: T) -> SettlementResult<u64>
where
    T: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
{
    Ok(sqlx::query(sql)
        .bind(value)
        .execute(&mut *tx)
        .await?
        .rows_affected())
}

async fn plain(tx: &mut sqlx::PgConnection, sql: &'static str) -> SettlementResult<u64> {
    Ok(sqlx::query(sql).execute(&mut *tx).await?.rows_affected())
}

/// Deletes or anonymises what is past its retention on `date` (see the
/// module doc). In the statements below `$1` is the cut-off: a day where
/// a day is compared, its first instant (Stockholm) where an instant is.
pub async fn run<S: Store>(
    s: &Settlement<S>,
    date: NaiveDate,
) -> SettlementResult<RetentionReport> {
    let b = keep_from(date, s.policy.bookkeeping_retention_years);
    let e = keep_from(date, s.policy.evidence_retention_years);
    let mut r = RetentionReport {
        date: Some(date),
        bookkeeping_before: Some(b),
        evidence_before: Some(e),
        ..RetentionReport::default()
    };
    let (b_at, e_at) = (start_of(b), start_of(e));
    let mut tx = s.pool.begin().await?;

    evidence(&mut tx, e_at, &mut r).await?;
    closed_invoices(&mut tx, b, b_at, &mut r).await?;
    other_records(&mut tx, b, b_at, &mut r).await?;
    fold_ledger(&mut tx, b, b_at, date, &mut r).await?;
    erased_holders(&mut tx, &mut r).await?;

    claim_calendar_job(&mut tx, date, "retention").await?;
    sqlx::query("update calendar_runs set details = $3 where run_date = $1 and job = $2")
        .bind(date)
        .bind("retention")
        .bind(json!(r))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    metrics::counter!(m::SETTLEMENT_CALENDAR_RUNS_TOTAL, "job" => "retention").increment(1);
    tracing::info!(
        %date,
        bookkeeping_before = %b,
        evidence_before = %e,
        invoices = r.invoices_deleted,
        consents = r.consents_deleted,
        ledger_entries = r.ledger_entries_folded,
        "retention run"
    );
    Ok(r)
}

/// Evidence and call detail (3 years, `e_at`), unless the claim is open.
async fn evidence(
    tx: &mut sqlx::PgConnection,
    e_at: chrono::DateTime<chrono::Utc>,
    r: &mut RetentionReport,
) -> SettlementResult<()> {
    // ---- Evidence and call detail (3 years), unless the claim is open.
    r.consents_deleted = exec(
        &mut *tx,
        "delete from consents c where c.authorized_at < $1
           and not exists (select 1 from usage u left join invoices i on i.id = u.invoice_id
                           where u.call_id = c.call_id and u.funding = 'postpaid'
                             and (u.invoice_id is null or i.status in ('open', 'held') or i.disputed))",
        e_at,
    )
    .await?;
    r.events_redacted = exec(
        &mut *tx,
        "update events set payload = '{\"redacted\": \"retention\"}'::jsonb
         where at < $1 and kind in ('consent_recorded', 'hold_expired', 'hold_voided')
           and payload <> '{\"redacted\": \"retention\"}'::jsonb
           and not exists (select 1 from consents c where 'consent:' || c.call_id = events.event_id)",
        e_at,
    )
    .await?;
    r.dispute_evidence_redacted = exec(
        &mut *tx,
        "update disputes set evidence = '[]'::jsonb
         where status <> 'open' and opened_at < $1 and evidence <> '[]'::jsonb",
        e_at,
    )
    .await?;
    r.prepaid_numbers_removed = exec(
        &mut *tx,
        "update usage set number = null where funding = 'prepaid' and posted_at < $1 and number is not null",
        e_at,
    )
    .await?;
    exec(&mut *tx, "delete from dead_letters where at < $1", e_at).await?;
    exec(
        &mut *tx,
        "delete from store_ops where applied_at is not null and applied_at < $1",
        e_at,
    )
    .await?;
    exec(
        &mut *tx,
        "delete from data_extracts where created_at < $1",
        e_at,
    )
    .await?;
    Ok(())
}

/// Bookkeeping (7 years), closed matters only: the invoices closed before
/// the cut-off `b` and everything hanging on them.
async fn closed_invoices(
    tx: &mut sqlx::PgConnection,
    b: NaiveDate,
    b_at: chrono::DateTime<chrono::Utc>,
    r: &mut RetentionReport,
) -> SettlementResult<()> {
    // ---- Bookkeeping (7 years), closed matters only.
    // Invoices closed before the cut-off, unless a record still kept refers
    // to them: a merchant statement with their calls (a statement belongs
    // to the year it is made, the month after its period, so one whose
    // period ends on the last day before the cut-off is kept) or a payment
    // of a later year.
    plain(
        &mut *tx,
        "create temporary table retention_invoices (id bigint primary key) on commit drop",
    )
    .await?;
    exec(
        &mut *tx,
        "insert into retention_invoices
         select i.id from invoices i
         where i.issue_date < $1 and i.status in ('paid', 'credited') and not i.disputed
           and not exists (select 1 from disputes d where d.invoice_id = i.id and d.status = 'open')
           and not exists (select 1 from installment_plans p where p.id = i.plan_id and p.status = 'active')
           and not exists (select 1 from usage u join merchant_statements m on m.id = u.merchant_statement_id
                           where u.invoice_id = i.id and m.period_end >= $1 - 1)
           and not exists (select 1 from payment_allocations a join payments p on p.id = a.payment_id
                           where a.invoice_id = i.id and p.paid_on >= $1)",
        b,
    )
    .await?;
    for sql in [
        "delete from merchant_chargebacks where invoice_id in (select id from retention_invoices)",
        "delete from disputes where invoice_id in (select id from retention_invoices)",
        "delete from collection_steps where invoice_id in (select id from retention_invoices)",
        "delete from documents where invoice_id in (select id from retention_invoices)",
        "delete from invoice_lines where invoice_id in (select id from retention_invoices)",
        "delete from payment_allocations where invoice_id in (select id from retention_invoices)",
    ] {
        plain(&mut *tx, sql).await?;
    }
    r.usage_deleted = sqlx::query(
        "delete from usage u where (u.invoice_id in (select id from retention_invoices)
                                    or (u.funding = 'prepaid' and u.posted_at < $2))
           and (u.merchant_statement_id is null
                or u.merchant_statement_id in (select id from merchant_statements where period_end < $1 - 1))",
    )
    .bind(b)
    .bind(b_at)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    r.invoices_deleted = plain(
        &mut *tx,
        "delete from invoices where id in (select id from retention_invoices)",
    )
    .await?;
    Ok(())
}

/// The rest of the bookkeeping past its 7 years: plans, prepaid orders and
/// movements, payments, statements, bank files, events, audit, calendar runs.
async fn other_records(
    tx: &mut sqlx::PgConnection,
    b: NaiveDate,
    b_at: chrono::DateTime<chrono::Utc>,
    r: &mut RetentionReport,
) -> SettlementResult<()> {
    exec(
        &mut *tx,
        "delete from installment_items where plan_id in (
            select p.id from installment_plans p where p.status <> 'active' and p.created_at < $1
              and not exists (select 1 from invoices i where i.plan_id = p.id))",
        b_at,
    )
    .await?;
    exec(
        &mut *tx,
        "delete from installment_plans p where p.status <> 'active' and p.created_at < $1
           and not exists (select 1 from invoices i where i.plan_id = p.id)
           and not exists (select 1 from installment_items t where t.plan_id = p.id)",
        b_at,
    )
    .await?;
    exec(
        &mut *tx,
        "delete from prepaid_orders where created_at < $1 and status <> 'awaiting_payment'",
        b_at,
    )
    .await?;
    exec(
        &mut *tx,
        "delete from prepaid_movements where at < $1",
        b_at,
    )
    .await?;
    // Payments whose every allocation is gone with its invoice (or went to
    // a credit or a prepaid order of the same years); unmatched ones stay.
    exec(
        &mut *tx,
        "delete from payment_allocations a using payments p
         where p.id = a.payment_id and p.paid_on < $1 and a.kind in ('credit', 'prepaid')
           and not exists (select 1 from payment_allocations k where k.payment_id = p.id and k.kind = 'invoice')
           and not exists (select 1 from prepaid_orders o where o.payment_id = p.id)",
        b,
    )
    .await?;
    r.payments_deleted = exec(
        &mut *tx,
        "delete from payments p where p.paid_on < $1 and p.status <> 'unmatched'
           and not exists (select 1 from payment_allocations a where a.payment_id = p.id)
           and not exists (select 1 from prepaid_orders o where o.payment_id = p.id)",
        b,
    )
    .await?;
    r.statements_deleted = exec(
        &mut *tx,
        "delete from merchant_statements m where m.period_end < $1 - 1
           and not exists (select 1 from usage u where u.merchant_statement_id = m.id)
           and not exists (select 1 from merchant_chargebacks c where c.merchant_statement_id = m.id)",
        b,
    )
    .await?;
    exec(
        &mut *tx,
        "delete from bgmax_files where imported_at < $1",
        b_at,
    )
    .await?;
    r.events_deleted = exec(&mut *tx, "delete from events where at < $1", b_at).await?;
    r.audit_entries_deleted = exec(&mut *tx, "delete from audit_log where at < $1", b_at).await?;
    exec(&mut *tx, "delete from calendar_runs where run_date < $1", b).await?;
    Ok(())
}

/// The ledger's entries before the cut-off, folded into opening balances.
async fn fold_ledger(
    tx: &mut sqlx::PgConnection,
    b: NaiveDate,
    b_at: chrono::DateTime<chrono::Utc>,
    date: NaiveDate,
    r: &mut RetentionReport,
) -> SettlementResult<()> {
    // The ledger: every entry before the cut-off folded into one opening
    // balance per account, dated the cut-off (so the next year's run folds
    // it again with that year). Each transaction balances and has one date,
    // so the folded entries balance too.
    let folded_txn = format!("retention-opening:{b}:{date}");
    r.ledger_entries_folded = sqlx::query_scalar::<_, i64>(
        "with old as (delete from ledger_entries where at < $1 returning account, amount_ore),
              opening as (
                insert into ledger_entries (txn, account, amount_ore, at, memo)
                select $2, account, sum(amount_ore), $1, $3 from old
                group by account having sum(amount_ore) <> 0
                returning 1)
         select count(*) from old",
    )
    .bind(b_at)
    .bind(&folded_txn)
    .bind(format!(
        "opening balance: the entries before {b} folded (Bokföringslagen 7 kap. 2 §)"
    ))
    .fetch_one(&mut *tx)
    .await? as u64;
    Ok(())
}

/// Erased holders and their numbers, once no record refers to them.
async fn erased_holders(
    tx: &mut sqlx::PgConnection,
    r: &mut RetentionReport,
) -> SettlementResult<()> {
    // Erased holders and their numbers, once no record refers to them.
    r.numbers_deleted = plain(
        &mut *tx,
        "delete from numbers n using holders h
         where h.id = n.holder_id and h.erased_at is not null
           and not exists (select 1 from invoices i where i.number = n.number)
           and not exists (select 1 from usage u where u.number = n.number)
           and not exists (select 1 from installment_plans p where p.number = n.number)
           and not exists (select 1 from consents c where c.number = n.number)",
    )
    .await?;
    r.holders_deleted = plain(
        &mut *tx,
        "delete from holders h where h.erased_at is not null
           and not exists (select 1 from numbers n where n.holder_id = h.id)
           and not exists (select 1 from invoices i where i.holder_id = h.id)",
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seventh_year_after_the_year() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        // A record of 2025 may go from 1 January 2033 (reference/sweden.md §5.4).
        assert_eq!(keep_from(d(2032, 12, 31), 7), d(2025, 1, 1));
        assert_eq!(keep_from(d(2033, 1, 1), 7), d(2026, 1, 1));
        // Evidence of a call in 2025: kept through 2028.
        assert_eq!(keep_from(d(2028, 12, 31), 3), d(2025, 1, 1));
        assert_eq!(keep_from(d(2029, 1, 1), 3), d(2026, 1, 1));
    }
}
