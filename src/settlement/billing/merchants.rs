//! Merchant settlements (SPEC R20): we invoice on behalf of merchants
//! (factoring), and each merchant receives a periodic statement of its
//! services' usage that was billed **and collected**, less our fee.
//!
//! Collected means: a prepaid call (paid in advance), a postpaid call on an
//! invoice paid in full, or a postpaid call on an invoice credited after an
//! upheld dispute (R19), whose uncollectable part comes back as a
//! chargeback. A call is settled once (`usage.merchant_statement_id`), and
//! so is a chargeback. On the configured day of each month the previous
//! month is settled.
//!
//! **What a statement shows** (and `describe` prints): the calls and their
//! `gross` (consumer prices, VAT included); the `vat` in them, which we
//! declare and pay to Skatteverket because we sell in our own name; the
//! `chargeback` of upheld disputes (the uncollectable calls without VAT);
//! our `fee` at the merchant's rate on what is left (calls without VAT less
//! chargebacks, so no fee is taken on VAT or on money never collected); and
//! the `net` paid out: gross − VAT − chargeback − fee. The lines give the
//! calls, seconds, gross and VAT per service, funding and VAT rate. Calls
//! booked before VAT rates were recorded have no VAT split. The statement
//! is booked (debit the merchant's payable with what it still holds for
//! these calls, credit our fee income and the payout) and a payout
//! reference is recorded for the bank transfer. A net below zero (a
//! chargeback larger than the period's calls) is what the merchant owes us.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Row};

use crate::domain::Money;
use crate::metrics as m;
use crate::settlement::calendar;
use crate::settlement::context::{claim_calendar_job, ms_to_utc, Settlement, SettlementResult};
use crate::settlement::ledger::{self, account, Txn};
use crate::store::Store;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Statement {
    pub id: i64,
    pub merchant_id: String,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub calls: i64,
    pub gross_ore: i64,
    pub vat_ore: i64,
    pub chargeback_ore: i64,
    pub fee_ore: i64,
    pub net_ore: i64,
    pub payout_reference: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatementLine {
    pub service_number: String,
    pub funding: String,
    /// None for calls booked before VAT rates were recorded.
    pub vat_rate_percent: Option<u32>,
    pub calls: i64,
    pub billed_seconds: i64,
    pub gross_ore: i64,
    pub vat_ore: i64,
}

/// Our fee on `gross` at `basis_points`, rounded half-up to the öre once.
pub fn fee_of(gross_ore: i64, basis_points: i32) -> i64 {
    (Decimal::from(gross_ore) * Decimal::from(basis_points) / Decimal::from(10_000))
        .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
        .to_i64()
        .expect("fee of a bounded amount fits")
}

/// Copies the merchants (name, organisation number, fee) from the catalogue.
pub async fn sync_merchants<S: Store>(s: &Settlement<S>) -> SettlementResult<usize> {
    let catalog = s.store.catalog().await?;
    for merchant in catalog.merchants.values() {
        sqlx::query(
            "insert into merchants (merchant_id, name, org_number, fee_basis_points) values ($1, $2, $3, $4)
             on conflict (merchant_id) do update set name = excluded.name, org_number = excluded.org_number,
               fee_basis_points = excluded.fee_basis_points, updated_at = now()",
        )
        .bind(merchant.id.as_str())
        .bind(&merchant.name)
        .bind(&merchant.org_number)
        .bind(merchant.fee_basis_points as i32)
        .execute(&s.pool)
        .await?;
    }
    Ok(catalog.merchants.len())
}

/// The previous calendar month of `date`.
pub fn previous_month(date: NaiveDate) -> (NaiveDate, NaiveDate) {
    let first_this = NaiveDate::from_ymd_opt(date.year(), date.month(), 1).expect("valid month");
    let end = first_this.pred_opt().expect("a day before");
    let start = NaiveDate::from_ymd_opt(end.year(), end.month(), 1).expect("valid month");
    (start, end)
}

/// On the settlement day, settles the previous month for every merchant.
/// Returns the statements made (none on other days, or when already done).
pub async fn run_statements<S: Store>(
    s: &Settlement<S>,
    date: NaiveDate,
) -> SettlementResult<Vec<Statement>> {
    if date.day() != s.policy.merchant_settlement_day {
        return Ok(vec![]);
    }
    sync_merchants(s).await?;
    let (start, end) = previous_month(date);
    let until = ms_to_utc(calendar::start_of_day_utc_ms(
        end.succ_opt().expect("a day after"),
    ));
    let mut tx = s.pool.begin().await?;
    if !claim_calendar_job(&mut tx, date, "merchant_statements").await? {
        tx.rollback().await?;
        return Ok(vec![]);
    }
    let merchants =
        sqlx::query("select merchant_id, fee_basis_points from merchants order by merchant_id")
            .fetch_all(&mut *tx)
            .await?;
    let mut made = Vec::new();
    for row in merchants {
        let merchant: String = row.get("merchant_id");
        let bps: i32 = row.get("fee_basis_points");
        let period = (start, end, until);
        if let Some(st) = settle_merchant(&mut tx, merchant, bps, period, s.now()).await? {
            made.push(st);
        }
    }
    tx.commit().await?;
    Ok(made)
}

/// The merchant's collected calls not yet settled (call id, charge, VAT)
/// and its chargebacks not yet settled (id, base), locked.
#[allow(clippy::type_complexity)]
async fn collected(
    tx: &mut PgConnection,
    merchant: &str,
    until: DateTime<Utc>,
) -> SettlementResult<(Vec<(String, i64, i64)>, Vec<(i64, i64)>)> {
    let calls: Vec<(String, i64, i64)> = sqlx::query_as(
        "select u.call_id, u.charge_ore, u.vat_ore from usage u left join invoices i on i.id = u.invoice_id
         where u.merchant_id = $1 and u.merchant_statement_id is null
           and ((u.funding = 'prepaid' and u.posted_at < $2)
             or (u.funding = 'postpaid' and i.status = 'paid' and i.paid_at < $2)
             or (u.funding = 'postpaid' and i.status = 'credited' and i.credited_at < $2))
         for update of u",
    )
    .bind(merchant)
    .bind(until)
    .fetch_all(&mut *tx)
    .await?;
    let chargebacks: Vec<(i64, i64)> = sqlx::query_as(
        "select id, base_ore from merchant_chargebacks
         where merchant_id = $1 and merchant_statement_id is null and created_at < $2
         for update",
    )
    .bind(merchant)
    .bind(until)
    .fetch_all(&mut *tx)
    .await?;
    Ok((calls, chargebacks))
}

/// One merchant's statement for the period (start, end, and the instant
/// `until` that ends it), booked; None when nothing was collected.
async fn settle_merchant(
    tx: &mut PgConnection,
    merchant: String,
    bps: i32,
    (start, end, until): (NaiveDate, NaiveDate, DateTime<Utc>),
    now: DateTime<Utc>,
) -> SettlementResult<Option<Statement>> {
    let (calls, chargebacks) = collected(tx, &merchant, until).await?;
    if calls.is_empty() && chargebacks.is_empty() {
        return Ok(None);
    }
    let gross: i64 = calls.iter().map(|(_, c, _)| c).sum();
    let vat: i64 = calls.iter().map(|(_, _, v)| v).sum();
    let chargeback: i64 = chargebacks.iter().map(|(_, b)| b).sum();
    // Our fee is on what the merchant is owed: without VAT, less what
    // could not be collected.
    let owed = gross - vat - chargeback;
    let fee = fee_of(owed.max(0), bps);
    let net = owed - fee;
    let payout = format!("PAYOUT-{merchant}-{}", end.format("%Y%m"));
    let id: i64 = sqlx::query_scalar(
        "insert into merchant_statements (merchant_id, period_start, period_end, calls, gross_ore, fee_ore, net_ore,
                                          payout_reference, vat_ore, chargeback_ore)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) returning id",
    )
    .bind(&merchant)
    .bind(start)
    .bind(end)
    .bind(calls.len() as i32)
    .bind(gross)
    .bind(fee)
    .bind(net)
    .bind(&payout)
    .bind(vat)
    .bind(chargeback)
    .fetch_one(&mut *tx)
    .await?;
    let ids: Vec<&str> = calls.iter().map(|(c, _, _)| c.as_str()).collect();
    sqlx::query("update usage set merchant_statement_id = $1 where call_id = any($2)")
        .bind(id)
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    let chargeback_ids: Vec<i64> = chargebacks.iter().map(|(c, _)| *c).collect();
    sqlx::query("update merchant_chargebacks set merchant_statement_id = $1 where id = any($2)")
        .bind(id)
        .bind(&chargeback_ids)
        .execute(&mut *tx)
        .await?;
    // The payable holds the calls without VAT (booked with each call)
    // less the chargebacks (booked when the disputes were upheld).
    ledger::post(
        &mut *tx,
        &Txn::new(
            format!("merchant-statement:{id}"),
            now,
            format!("settlement {merchant} {start}..{end}"),
        )
        .debit(account::merchant_payable(&merchant), owed)
        .credit(account::INCOME_MERCHANT_FEE, fee)
        .credit(account::PAYOUTS, net),
    )
    .await?;
    metrics::counter!(m::SETTLEMENT_MERCHANT_STATEMENTS_TOTAL).increment(1);
    Ok(Some(Statement {
        id,
        merchant_id: merchant,
        period_start: start,
        period_end: end,
        calls: calls.len() as i64,
        gross_ore: gross,
        vat_ore: vat,
        chargeback_ore: chargeback,
        fee_ore: fee,
        net_ore: net,
        payout_reference: Some(payout),
    }))
}

/// A merchant's statements (all merchants' with `None`), newest first.
pub async fn statements(pool: &PgPool, merchant: Option<&str>) -> SettlementResult<Vec<Statement>> {
    let rows = sqlx::query(
        "select id, merchant_id, period_start, period_end, calls, gross_ore, vat_ore, chargeback_ore, fee_ore,
                net_ore, payout_reference
         from merchant_statements where $1::text is null or merchant_id = $1 order by period_end desc, merchant_id",
    )
    .bind(merchant)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| Statement {
            id: r.get("id"),
            merchant_id: r.get("merchant_id"),
            period_start: r.get("period_start"),
            period_end: r.get("period_end"),
            calls: r.get::<i32, _>("calls") as i64,
            gross_ore: r.get("gross_ore"),
            vat_ore: r.get("vat_ore"),
            chargeback_ore: r.get("chargeback_ore"),
            fee_ore: r.get("fee_ore"),
            net_ore: r.get("net_ore"),
            payout_reference: r.get("payout_reference"),
        })
        .collect())
}

/// One statement's lines per service and funding.
pub async fn statement_lines(
    pool: &PgPool,
    statement_id: i64,
) -> SettlementResult<Vec<StatementLine>> {
    let rows = sqlx::query(
        "select service_number, funding, vat_rate_percent, count(*) as calls, sum(billed_seconds)::bigint as seconds,
                sum(charge_ore)::bigint as gross, sum(vat_ore)::bigint as vat
         from usage where merchant_statement_id = $1
         group by service_number, funding, vat_rate_percent
         order by service_number, funding, vat_rate_percent desc",
    )
    .bind(statement_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| StatementLine {
            service_number: r.get("service_number"),
            funding: r.get("funding"),
            vat_rate_percent: r
                .get::<Option<i32>, _>("vat_rate_percent")
                .map(|p| p as u32),
            calls: r.get("calls"),
            billed_seconds: r.get::<Option<i64>, _>("seconds").unwrap_or(0),
            gross_ore: r.get::<Option<i64>, _>("gross").unwrap_or(0),
            vat_ore: r.get::<Option<i64>, _>("vat").unwrap_or(0),
        })
        .collect())
}

/// A statement's VAT per rate: (rate in percent, base without VAT, VAT),
/// highest rate first; calls booked before VAT rates had none and are left out.
pub async fn vat_summary(
    pool: &PgPool,
    statement_id: i64,
) -> SettlementResult<Vec<(u32, i64, i64)>> {
    let rows: Vec<(i32, i64, i64)> = sqlx::query_as(
        "select vat_rate_percent, sum(charge_ore - vat_ore)::bigint, sum(vat_ore)::bigint
         from usage where merchant_statement_id = $1 and vat_rate_percent is not null
         group by vat_rate_percent order by vat_rate_percent desc",
    )
    .bind(statement_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(r, base, vat)| (r as u32, base, vat))
        .collect())
}

/// The money of a statement, for display.
pub fn describe(st: &Statement) -> String {
    let kr = |ore: i64| Money::ore_unchecked(ore).to_swedish();
    format!(
        "{} {}..{}: {} calls, gross {} (moms {}, without VAT {}), chargebacks {}, fee {}, payout {} ({})",
        st.merchant_id,
        st.period_start,
        st.period_end,
        st.calls,
        kr(st.gross_ore),
        kr(st.vat_ore),
        kr(st.gross_ore - st.vat_ore),
        kr(st.chargeback_ore),
        kr(st.fee_ore),
        kr(st.net_ore),
        st.payout_reference.as_deref().unwrap_or("-")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fee_rounds_half_up_once() {
        assert_eq!(fee_of(10_000, 1500), 1500);
        assert_eq!(fee_of(333, 1500), 50); // 49.95 → 50
        assert_eq!(fee_of(1, 1250), 0); // 0.125 → 0
        assert_eq!(fee_of(4, 1250), 1); // 0.5 → 1
    }

    #[test]
    fn previous_month_spans_the_month() {
        let d = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        assert_eq!(
            previous_month(d),
            (
                NaiveDate::from_ymd_opt(2026, 2, 1).unwrap(),
                NaiveDate::from_ymd_opt(2026, 2, 28).unwrap()
            )
        );
        let j = NaiveDate::from_ymd_opt(2027, 1, 1).unwrap();
        assert_eq!(
            previous_month(j).0,
            NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
        );
    }
}
