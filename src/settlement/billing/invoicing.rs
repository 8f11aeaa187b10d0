//! Invoicing (SPEC R8, R11–R14): the threshold invoice at once, the monthly
//! run on the configured day, one consolidated invoice of the calls not yet
//! invoiced (never one per call), paper fees, the minimum amount carried for
//! at most three months, OCR references, and the invoice document with its
//! VAT per rate (mervärdesskattelagen 17 kap.: each call line carries its
//! call's rate and VAT; the paper fee's VAT is booked with the invoice).
//! Where the invoice goes, and whether it carries the paper fee or is held
//! for want of an address, is `delivery.rs`'s decision (R13).
//!
//! Issuing an invoice is one PostgreSQL transaction: the invoice, its lines,
//! the usage rows marked invoiced, the ledger transaction, the rendered
//! document, and the state-store operation that moves the amount from
//! unbilled to invoiced-unpaid (applied afterwards by the projector, with the
//! invoice id as its idempotency key).

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::json;
use sqlx::{PgConnection, Row};

use crate::domain::{Money, VatRate};
use crate::settlement::billing::document::{self, DocumentKind};
use crate::settlement::billing::layout;
use crate::settlement::billing::route::{self, Route};
use crate::settlement::context::{holder_for, queue_store_op, SettlementResult};
use crate::settlement::ledger::{self, account, Txn};
use crate::settlement::policy::SettlementPolicy;
use crate::settlement::{calendar, formats::ocr};

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum InvoiceKind {
    /// Exposure reached 80 % of the limit (R8): invoiced at once.
    Threshold,
    /// The monthly run (R11).
    Monthly,
}

impl InvoiceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceKind::Threshold => "threshold",
            InvoiceKind::Monthly => "monthly",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedInvoice {
    pub id: i64,
    pub number: String,
    pub ocr: String,
    pub usage: Money,
    pub fees: Money,
    pub credits: Money,
    pub total: Money,
    pub due_date: NaiveDate,
    /// Held: in the books but not sent, for want of an address (R13).
    pub held: bool,
}

/// The paper-invoice fee's line text.
pub const PAPER_FEE_DESCRIPTION: &str = "Pappersfakturaavgift";

/// Why no invoice was issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotIssued {
    NothingToInvoice,
    /// R14: below the minimum amount; carried to the next period.
    Carried(Money),
}

/// The OCR reference of an invoice id (R12: mod-10 check digit and length digit).
pub fn invoice_ocr(policy: &SettlementPolicy, id: i64) -> String {
    ocr::ocr_for(policy.ocr_offset + id as u64).to_string()
}

/// Issues one invoice of `number`'s postpaid usage not yet invoiced and posted
/// before `cutoff` (None: all of it), in the caller's transaction.
pub async fn issue_invoice(
    conn: &mut PgConnection,
    policy: &SettlementPolicy,
    number: &str,
    kind: InvoiceKind,
    today: NaiveDate,
    cutoff: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> SettlementResult<Result<IssuedInvoice, NotIssued>> {
    let Some(calls) = uninvoiced_calls(conn, number, cutoff).await? else {
        return Ok(Err(NotIssued::NothingToInvoice));
    };
    let usage_ore = calls.usage_ore;

    let holder_id = holder_for(conn, number).await?;
    // R13: where the invoice can go decides its fee; with neither a postal
    // address nor a usable e-mail address it is held (see `delivery.rs`).
    let recipient = route::recipient(conn, holder_id).await?;
    let route = route::route_invoice(&recipient);
    let (fees_ore, fee_vat_ore) = sending_fee(policy, &route);

    // R14: a small amount waits for the next period, but never more than
    // max_carry_months after its oldest call. The minimum is compared with
    // the calls alone (seed 002: "kostnaderna"): the paper fee is the cost of
    // sending an invoice, so counting it would invoice a paper customer
    // whose e-mail neighbour with the same calls is carried.
    if kind == InvoiceKind::Monthly && carried(policy, usage_ore, calls.first_call, today) {
        return Ok(Err(NotIssued::Carried(Money::ore_unchecked(usage_ore))));
    }

    // Overpayments held as the caller's credit reduce the new invoice.
    let credit_available = -ledger::balance(conn, &account::caller_credit(number)).await?;
    let credits_ore = credit_available.clamp(0, usage_ore + fees_ore);
    let total_ore = usage_ore + fees_ore - credits_ore;

    let id: i64 = sqlx::query_scalar("select nextval('invoices_id_seq')")
        .fetch_one(&mut *conn)
        .await?;
    let ocr = invoice_ocr(policy, id);
    let due_date = due_date(policy, kind, today);
    let (status, delivery) = match route {
        _ if total_ore == 0 => ("paid", recipient.chosen.as_str()),
        Route::Send { channel, .. } => ("open", channel.as_str()),
        Route::Held => ("held", recipient.chosen.as_str()),
    };
    insert_invoice(
        conn,
        &NewInvoice {
            id,
            number,
            holder_id,
            kind,
            ocr: &ocr,
            issue_date: today,
            due_date,
            period_start: calendar::stockholm_date(calls.first_call.timestamp_millis()),
            period_end: calendar::stockholm_date(calls.last_call.timestamp_millis()),
            delivery,
            usage_ore,
            fees_ore,
            credits_ore,
            total_ore,
            status,
            reminder_fee_agreed: calls.reminder_fee_agreed,
        },
        now,
    )
    .await?;
    let lines = Lines {
        call_ids: &calls.call_ids,
        fees_ore,
        fee_vat_ore,
        credits_ore,
    };
    insert_lines(conn, policy, id, &lines).await?;

    let label = format!("{} invoice {ocr}", kind.as_str());
    book(conn, policy, number, id, &label, usage_ore, &lines, now).await?;
    if status == "open" {
        send(conn, policy, id, &route).await?;
    }
    Ok(Ok(IssuedInvoice {
        id,
        number: number.to_string(),
        ocr,
        usage: Money::ore_unchecked(usage_ore),
        fees: Money::ore_unchecked(fees_ore),
        credits: Money::ore_unchecked(credits_ore),
        total: Money::ore_unchecked(total_ore),
        due_date,
        held: status == "held",
    }))
}

/// The postpaid calls of a number not yet invoiced (locked), in call order.
/// The fee for sending an invoice by `route` and the VAT in it: the paper
/// fee when it goes on paper (R13), else nothing.
fn sending_fee(policy: &SettlementPolicy, route: &Route) -> (i64, i64) {
    let fees_ore = match route {
        Route::Send {
            paper_fee: true, ..
        } => policy.paper_invoice_fee.ore(),
        _ => 0,
    };
    (fees_ore, policy.paper_invoice_fee_vat.vat_in_ore(fees_ore))
}

/// A threshold invoice is due `threshold_due_days` after issue; a monthly one
/// by the monthly run's rule (both moved to a bank day by the calendar).
fn due_date(policy: &SettlementPolicy, kind: InvoiceKind, today: NaiveDate) -> NaiveDate {
    match kind {
        InvoiceKind::Threshold => calendar::due_date_after(today, policy.threshold_due_days),
        InvoiceKind::Monthly => calendar::due_date_for_monthly_run(today, policy.invoice_day),
    }
}

/// Renders an open invoice and queues it on its channel. A held invoice is
/// rendered when it can be sent (`delivery::release_held`).
async fn send(
    conn: &mut PgConnection,
    policy: &SettlementPolicy,
    id: i64,
    route: &Route,
) -> SettlementResult<()> {
    if let Route::Send { channel, .. } = route {
        let doc = document::render(conn, policy, id, DocumentKind::Invoice).await?;
        queue_document(conn, id, DocumentKind::Invoice, channel.as_str(), doc).await?;
    }
    Ok(())
}

/// An invoice row as `issue_invoice` decided it.
struct NewInvoice<'a> {
    id: i64,
    number: &'a str,
    holder_id: i64,
    kind: InvoiceKind,
    ocr: &'a str,
    issue_date: NaiveDate,
    due_date: NaiveDate,
    period_start: NaiveDate,
    /// Never before `period_start` (a call across midnight of a DST change).
    period_end: NaiveDate,
    delivery: &'a str,
    usage_ore: i64,
    fees_ore: i64,
    credits_ore: i64,
    total_ore: i64,
    /// `open`, `held`, or `paid` when credits cover it all.
    status: &'a str,
    reminder_fee_agreed: bool,
}

/// Writes the invoice row; its stage is due when the invoice is, and one
/// covered by credits is paid as it is issued.
async fn insert_invoice(
    conn: &mut PgConnection,
    inv: &NewInvoice<'_>,
    now: DateTime<Utc>,
) -> SettlementResult<()> {
    sqlx::query(
        "insert into invoices (id, number, holder_id, kind, ocr, issue_date, due_date, period_start, period_end,
                               delivery, usage_ore, fees_ore, credits_ore, total_ore, status, stage_due_date,
                               reminder_fee_agreed, paid_at, created_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $7, $16,
                 case when $15 = 'paid' then $17 else null end, $17)",
    )
    .bind(inv.id)
    .bind(inv.number)
    .bind(inv.holder_id)
    .bind(inv.kind.as_str())
    .bind(inv.ocr)
    .bind(inv.issue_date)
    .bind(inv.due_date)
    .bind(inv.period_start)
    .bind(inv.period_end.max(inv.period_start))
    .bind(inv.delivery)
    .bind(inv.usage_ore)
    .bind(inv.fees_ore)
    .bind(inv.credits_ore)
    .bind(inv.total_ore)
    .bind(inv.status)
    .bind(inv.reminder_fee_agreed)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

struct Calls {
    call_ids: Vec<String>,
    usage_ore: i64,
    first_call: DateTime<Utc>,
    last_call: DateTime<Utc>,
    /// Every call's accepted terms agreed the reminder fee.
    reminder_fee_agreed: bool,
}

/// The calls of `number` to invoice: postpaid, not yet invoiced, posted
/// before `cutoff` (None: all); None when there are none.
async fn uninvoiced_calls(
    conn: &mut PgConnection,
    number: &str,
    cutoff: Option<DateTime<Utc>>,
) -> SettlementResult<Option<Calls>> {
    let rows = sqlx::query(
        "select u.call_id, u.charge_ore, u.started_at, coalesce(c.reminder_fee_ore, 0) as reminder_fee_ore
         from usage u left join consents c on c.call_id = u.call_id
         where u.number = $1 and u.funding = 'postpaid' and u.invoice_id is null
           and ($2::timestamptz is null or u.posted_at < $2)
         order by u.started_at, u.call_id
         for update of u",
    )
    .bind(number)
    .bind(cutoff)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(Calls {
        call_ids: rows.iter().map(|r| r.get("call_id")).collect(),
        usage_ore: rows.iter().map(|r| r.get::<i64, _>("charge_ore")).sum(),
        first_call: rows[0].get("started_at"),
        last_call: rows[rows.len() - 1].get("started_at"),
        // The reminder fee may be charged only if every call's accepted terms agreed it.
        reminder_fee_agreed: rows.iter().all(|r| r.get::<i64, _>("reminder_fee_ore") > 0),
    }))
}

/// R14: true when a monthly invoice of `usage_ore` waits for the next period
/// (below the minimum, and its oldest call not yet `max_carry_months` old).
fn carried(
    policy: &SettlementPolicy,
    usage_ore: i64,
    first_call: DateTime<Utc>,
    today: NaiveDate,
) -> bool {
    let Some(min) = policy.minimum_invoice_amount else {
        return false;
    };
    let oldest = calendar::stockholm_date(first_call.timestamp_millis());
    let carried_too_long = oldest
        .checked_add_months(chrono::Months::new(policy.max_carry_months))
        .is_none_or(|limit| limit <= today);
    usage_ore < min.ore() && !carried_too_long
}

/// What an invoice carries besides its calls' charges.
struct Lines<'a> {
    call_ids: &'a [String],
    fees_ore: i64,
    fee_vat_ore: i64,
    credits_ore: i64,
}

/// The invoice's lines (calls, paper fee with its VAT, credit used), and
/// the calls marked invoiced.
async fn insert_lines(
    conn: &mut PgConnection,
    policy: &SettlementPolicy,
    id: i64,
    lines: &Lines<'_>,
) -> SettlementResult<()> {
    // Each call line carries its call's VAT rate and the VAT in its charge.
    sqlx::query(
        "insert into invoice_lines (invoice_id, kind, call_id, description, amount_ore, vat_rate_percent, vat_ore)
         select $1, 'call', u.call_id, $3, u.charge_ore, u.vat_rate_percent, u.vat_ore
         from usage u where u.call_id = any($2)",
    )
    .bind(id)
    .bind(lines.call_ids)
    .bind(layout::NEUTRAL_CALL_DESCRIPTION)
    .execute(&mut *conn)
    .await?;
    if lines.fees_ore > 0 {
        add_vat_line(
            conn,
            id,
            "fee",
            PAPER_FEE_DESCRIPTION,
            lines.fees_ore,
            policy.paper_invoice_fee_vat,
            lines.fee_vat_ore,
        )
        .await?;
    }
    if lines.credits_ore > 0 {
        add_line(
            conn,
            id,
            "credit",
            "Tidigare överskjutande inbetalning",
            -lines.credits_ore,
        )
        .await?;
    }
    sqlx::query("update usage set invoice_id = $1 where call_id = any($2)")
        .bind(id)
        .bind(lines.call_ids)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Books the invoice (and the credit it used) in the ledger and queues the
/// same for the state store.
#[allow(clippy::too_many_arguments)]
async fn book(
    conn: &mut PgConnection,
    policy: &SettlementPolicy,
    number: &str,
    id: i64,
    label: &str,
    usage_ore: i64,
    lines: &Lines<'_>,
    now: DateTime<Utc>,
) -> SettlementResult<()> {
    ledger::post(
        conn,
        &Txn::new(format!("invoice:{id}"), now, label)
            .debit(account::caller_invoiced(number), usage_ore + lines.fees_ore)
            .credit(account::caller_unbilled(number), usage_ore)
            .credit(
                account::INCOME_PAPER_FEE,
                lines.fees_ore - lines.fee_vat_ore,
            )
            .credit(
                account::vat_output(policy.paper_invoice_fee_vat),
                lines.fee_vat_ore,
            ),
    )
    .await?;
    queue_store_op(
        conn,
        "apply_invoice",
        number,
        json!({ "invoice_id": store_invoice_id(id), "usage_ore": usage_ore, "fees_ore": lines.fees_ore }),
    )
    .await?;
    if lines.credits_ore > 0 {
        ledger::post(
            conn,
            &Txn::new(format!("invoice-credit:{id}"), now, "credit used")
                .debit(account::caller_credit(number), lines.credits_ore)
                .credit(account::caller_invoiced(number), lines.credits_ore),
        )
        .await?;
        queue_store_op(
            conn,
            "apply_payment",
            number,
            json!({ "payment_id": format!("credit-{id}"), "amount_ore": lines.credits_ore,
                    "clear_overdue": false, "first_invoice_paid": false }),
        )
        .await?;
    }
    Ok(())
}

/// The id under which an invoice is applied to the state store.
pub fn store_invoice_id(id: i64) -> String {
    format!("inv-{id}")
}

/// Adds a line outside the scope of VAT (reminder and collection fees,
/// interest, credits of overpayments).
pub async fn add_line(
    conn: &mut PgConnection,
    invoice_id: i64,
    kind: &str,
    description: &str,
    amount_ore: i64,
) -> SettlementResult<()> {
    sqlx::query("insert into invoice_lines (invoice_id, kind, description, amount_ore) values ($1, $2, $3, $4)")
        .bind(invoice_id)
        .bind(kind)
        .bind(description)
        .bind(amount_ore)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Adds a line whose amount includes `vat_ore` of VAT at `rate`.
pub async fn add_vat_line(
    conn: &mut PgConnection,
    invoice_id: i64,
    kind: &str,
    description: &str,
    amount_ore: i64,
    rate: VatRate,
    vat_ore: i64,
) -> SettlementResult<()> {
    sqlx::query(
        "insert into invoice_lines (invoice_id, kind, description, amount_ore, vat_rate_percent, vat_ore)
         values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(invoice_id)
    .bind(kind)
    .bind(description)
    .bind(amount_ore)
    .bind(rate.percent() as i32)
    .bind(vat_ore)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Queues a rendered document for the mailing system, or holds it when its
/// holder cannot be reached (see `delivery.rs`).
pub async fn queue_document(
    conn: &mut PgConnection,
    invoice_id: i64,
    kind: DocumentKind,
    channel: &str,
    pdf: Vec<u8>,
) -> SettlementResult<()> {
    route::queue(conn, invoice_id, kind, channel, pdf, None).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoice_ocr_has_length_and_check_digit() {
        let p = SettlementPolicy::default();
        let o = invoice_ocr(&p, 1);
        assert!(o.starts_with("100001"), "{o}");
        assert_eq!(o.len(), 8);
        assert!(crate::domain::luhn::is_valid(&o));
        assert!(ocr::parse(&o, ocr::OcrLevel::CheckDigitAndLength).is_ok());
        assert_eq!(
            ocr::payload(&ocr::parse(&o, ocr::OcrLevel::CheckDigitAndLength).unwrap()),
            Some(100_001)
        );
    }
}

/// The monthly run (R11): one invoice per number of everything posted before
/// the invoice day and not yet invoiced. A number below the minimum amount
/// is carried (R14). Each invoice is its own transaction.
///
/// The run belongs to the invoice day, not to the date it happens: on
/// `date` it is the run of the latest invoice day on or before `date`, done
/// once (recorded in `calendar_runs` as `monthly_invoices` under that day,
/// with the day it ran). A worker that was down on the 15th therefore
/// catches the run up on its next day, with the 15th's cut-off and the same
/// time to pay (`calendar::due_date_for_monthly_run`), and records the
/// missed day (`missed:monthly_invoices`) unless the ledger has never run a
/// day before (a new installation). Running again finds nothing new.
pub async fn monthly_run<S: crate::store::Store>(
    s: &crate::settlement::Settlement<S>,
    date: NaiveDate,
) -> SettlementResult<MonthlyRunReport> {
    let mut report = MonthlyRunReport::default();
    let Some(run_day) = calendar::latest_monthly_run_date(date, s.policy.invoice_day) else {
        return Ok(report);
    };
    let done: bool = sqlx::query_scalar(
        "select exists(select 1 from calendar_runs where run_date = $1 and job = $2)",
    )
    .bind(run_day)
    .bind(MONTHLY_JOB)
    .fetch_one(&s.pool)
    .await?;
    if done {
        return Ok(report);
    }
    report.run_day = Some(run_day);
    let cutoff = crate::settlement::context::ms_to_utc(calendar::start_of_day_utc_ms(run_day));
    let numbers: Vec<String> = sqlx::query_scalar(
        "select distinct number from usage
         where funding = 'postpaid' and invoice_id is null and number is not null and posted_at < $1
         order by number",
    )
    .bind(cutoff)
    .fetch_all(&s.pool)
    .await?;
    for number in numbers {
        let mut tx = s.pool.begin().await?;
        match issue_invoice(
            &mut tx,
            &s.policy,
            &number,
            InvoiceKind::Monthly,
            date,
            Some(cutoff),
            s.now(),
        )
        .await?
        {
            Ok(inv) => {
                report.issued += 1;
                report.held += usize::from(inv.held);
                report.total_ore += inv.total.ore();
                metrics::counter!(crate::metrics::SETTLEMENT_INVOICES_ISSUED_TOTAL, "kind" => "monthly").increment(1);
            }
            Err(NotIssued::Carried(_)) => report.carried += 1,
            Err(NotIssued::NothingToInvoice) => {}
        }
        tx.commit().await?;
    }
    let mut tx = s.pool.begin().await?;
    sqlx::query(
        "insert into calendar_runs (run_date, job, completed_at, details) values ($1, $2, $3, $4)
         on conflict do nothing",
    )
    .bind(run_day)
    .bind(MONTHLY_JOB)
    .bind(s.now())
    .bind(json!({ "issued_on": date, "issued": report.issued, "carried": report.carried }))
    .execute(&mut *tx)
    .await?;
    if run_day < date {
        report.caught_up = crate::settlement::worker::daily::record_missed(
            &mut tx,
            run_day,
            MONTHLY_JOB,
            date,
            s.now(),
        )
        .await?;
        if report.caught_up {
            tracing::warn!(%run_day, %date, issued = report.issued, "the monthly invoice run was missed on its day and caught up");
        }
    }
    tx.commit().await?;
    metrics::counter!(crate::metrics::SETTLEMENT_CALENDAR_RUNS_TOTAL, "job" => MONTHLY_JOB)
        .increment(1);
    Ok(report)
}

/// The `calendar_runs` job of the monthly invoice run.
pub const MONTHLY_JOB: &str = "monthly_invoices";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MonthlyRunReport {
    /// The invoice day whose run this was (None: it was done before).
    pub run_day: Option<NaiveDate>,
    /// The run was missed on its day and caught up now.
    pub caught_up: bool,
    pub issued: usize,
    /// Of those issued, held for want of an address (R13).
    pub held: usize,
    pub carried: usize,
    pub total_ore: i64,
}
