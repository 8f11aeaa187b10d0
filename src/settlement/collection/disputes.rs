//! Disputes (SPEC R19): "I did not call", "not liable". A dispute is a
//! sakligt grundad invändning that must be investigated before collection
//! goes on (reference/sweden.md §1.4), so opening one pauses the ladder for
//! the invoice: no reminder, no collection demand, never Kronofogden.
//!
//! - **Opening** attaches the consent evidence of every call on the invoice
//!   (R3: the two confirmations, the exact terms announced, the times and
//!   the IVR) as JSON, copied at that moment so that the case keeps it. The
//!   disputed invoice no longer counts for the overdue block (R7): when no
//!   other invoice of the number is overdue, the block is lifted.
//! - **Upheld**: what is still outstanding is credited (`credit` lines per
//!   VAT rate, `credits_ore`, status `credited`, `credited_at`) by a credit
//!   note (`credit_note.rs`): the uncollectable calls are charged back to
//!   their merchants' payable accounts without VAT and shown on their next
//!   statements (`merchant_chargebacks`), the VAT in them is taken off the
//!   output VAT, and our own fees and interest are reversed from their
//!   income accounts — not all booked as our loss. The state store gets the
//!   credit as a payment so the number's invoiced-unpaid amount falls.
//!   Anything already paid stays paid: a refund is a separate decision (an
//!   invoice paid in full while disputed keeps its status `paid`).
//! - **Rejected**: the debtor gets new time before the ladder's next step:
//!   `reminder_due_days` from today (moved to a bank day), but never less
//!   than the claim already had — the stage's deadline becomes the latest of
//!   that, the invoice's due date and the current stage's deadline (R19). A
//!   dispute rejected on Tuesday 25 November 2025 of an invoice due Monday
//!   8 December: 25 November + 10 days is Friday 5 December, before the due
//!   date, so the deadline stays 8 December (overdue only after its three
//!   bank days of grace, Friday 12 December). The ladder then resumes from
//!   the invoice's stage. An invoice already overdue is blocked again at once.
//!
//! An invoice in a kept installment plan cannot be disputed: agreeing to the
//! plan acknowledged the debt (R18). Every change is one transaction and is
//! audited; refusals write nothing.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::json;
use sqlx::{PgConnection, Row};

use crate::domain::VatRate;
use crate::settlement::collection::claim::{
    is_overdue, lock_invoice, other_overdue, record_step, InvoiceRow,
};
use crate::settlement::context::{
    audit, queue_store_op, Settlement, SettlementError, SettlementResult,
};
use crate::settlement::ledger::{self, account, Txn};
use crate::settlement::{billing::credit_note, billing::invoicing, calendar};
use crate::store::Store;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DisputeStatus {
    Open,
    Upheld,
    Rejected,
}

impl DisputeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DisputeStatus::Open => "open",
            DisputeStatus::Upheld => "upheld",
            DisputeStatus::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<DisputeStatus> {
        Some(match s {
            "open" => DisputeStatus::Open,
            "upheld" => DisputeStatus::Upheld,
            "rejected" => DisputeStatus::Rejected,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Dispute {
    pub id: i64,
    pub invoice_id: i64,
    pub number: String,
    pub reason: String,
    pub status: DisputeStatus,
    /// The `consents` rows of the invoice's calls (R3), as a JSON array.
    pub evidence: serde_json::Value,
    pub opened_by: String,
    pub opened_at: DateTime<Utc>,
    pub resolved_by: Option<String>,
    pub resolution: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
}

fn required(what: &str, value: &str) -> SettlementResult<()> {
    if value.trim().is_empty() {
        return Err(SettlementError::Invalid(format!("{what} is required")));
    }
    Ok(())
}

/// Opens a dispute of an open invoice (R19); see the module doc.
pub async fn open_dispute<S: Store>(
    s: &Settlement<S>,
    invoice_id: i64,
    reason: &str,
    actor: &str,
) -> SettlementResult<Dispute> {
    required("a reason", reason)?;
    required("the actor", actor)?;
    let today = s.today();
    let mut tx = s.pool.begin().await?;
    let inv = lock_invoice(&mut tx, invoice_id)
        .await?
        .ok_or_else(|| SettlementError::NotFound(format!("invoice {invoice_id}")))?;
    check_disputable(&inv)?;
    let (evidence, calls) = consent_evidence(&mut tx, invoice_id).await?;
    let evidence_calls = evidence.as_array().map_or(0, |a| a.len());
    let now = s.now();
    let id: i64 = sqlx::query_scalar(
        "insert into disputes (invoice_id, reason, status, evidence, opened_by, opened_at)
         values ($1, $2, 'open', $3, $4, $5) returning id",
    )
    .bind(invoice_id)
    .bind(reason)
    .bind(&evidence)
    .bind(actor)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("update invoices set disputed = true where id = $1")
        .bind(invoice_id)
        .execute(&mut *tx)
        .await?;
    pause_for_dispute(&mut tx, &inv, id, today, s.policy.payment_grace_bank_days).await?;
    audit(
        &mut tx,
        actor,
        "dispute_opened",
        &inv.number,
        json!({ "dispute_id": id, "invoice_id": invoice_id, "reason": reason,
                "calls": calls, "calls_with_evidence": evidence_calls }),
    )
    .await?;
    let dispute = load(&mut tx, id).await?;
    tx.commit().await?;
    if (evidence_calls as i64) < calls {
        tracing::warn!(
            dispute = id,
            invoice = invoice_id,
            calls,
            evidence_calls,
            "dispute opened without consent evidence for every call"
        );
    }
    Ok(dispute)
}

/// Resolves an open dispute (R19): `upheld` credits the invoice, otherwise
/// the ladder resumes after new time; see the module doc.
pub async fn resolve_dispute<S: Store>(
    s: &Settlement<S>,
    dispute_id: i64,
    upheld: bool,
    resolution: &str,
    actor: &str,
) -> SettlementResult<Dispute> {
    required("a resolution", resolution)?;
    required("the actor", actor)?;
    let today = s.today();
    let now = s.now();
    let mut tx = s.pool.begin().await?;
    let row = sqlx::query("select invoice_id, status from disputes where id = $1 for update")
        .bind(dispute_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| SettlementError::NotFound(format!("dispute {dispute_id}")))?;
    let status: String = row.get("status");
    if status != DisputeStatus::Open.as_str() {
        return Err(SettlementError::Refused(format!(
            "dispute {dispute_id} is already {status}"
        )));
    }
    let invoice_id: i64 = row.get("invoice_id");
    let inv = lock_invoice(&mut tx, invoice_id)
        .await?
        .ok_or_else(|| SettlementError::NotFound(format!("invoice {invoice_id}")))?;
    let grace = s.policy.payment_grace_bank_days;
    let outcome = if upheld {
        DisputeStatus::Upheld
    } else {
        DisputeStatus::Rejected
    };
    let mut details = json!({ "dispute_id": dispute_id, "invoice_id": invoice_id,
                              "outcome": outcome.as_str(), "resolution": resolution });
    if upheld {
        let credit = uphold(&mut tx, &inv, dispute_id, now, today, grace).await?;
        details["credited_ore"] = json!(credit);
    } else {
        let new_due = reject(&mut tx, &inv, s.policy.reminder_due_days, today, grace).await?;
        details["new_due_date"] = json!(new_due);
    }
    sqlx::query(
        "update disputes set status = $2, resolved_by = $3, resolution = $4, resolved_at = $5 where id = $1",
    )
    .bind(dispute_id)
    .bind(outcome.as_str())
    .bind(actor)
    .bind(resolution)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    audit(&mut tx, actor, "dispute_resolved", &inv.number, details).await?;
    let dispute = load(&mut tx, dispute_id).await?;
    tx.commit().await?;
    Ok(dispute)
}

/// Only an open claim with something outstanding, not already disputed and
/// not in a kept plan (which acknowledged the debt) can be disputed.
fn check_disputable(inv: &InvoiceRow) -> SettlementResult<()> {
    let invoice_id = inv.id;
    if inv.status != "open" || inv.outstanding_ore() == 0 {
        return Err(SettlementError::Refused(format!(
            "invoice {invoice_id} is {} with nothing outstanding; there is no claim to dispute",
            inv.status
        )));
    }
    if inv.disputed {
        return Err(SettlementError::Refused(format!(
            "invoice {invoice_id} is already disputed"
        )));
    }
    if inv.plan_active {
        return Err(SettlementError::Refused(format!(
            "invoice {invoice_id} is in installment plan {}, which acknowledged the debt",
            inv.plan_id.unwrap_or_default()
        )));
    }
    Ok(())
}

/// The consent evidence of every call on the invoice, and how many calls
/// it has.
async fn consent_evidence(
    tx: &mut PgConnection,
    invoice_id: i64,
) -> SettlementResult<(serde_json::Value, i64)> {
    let evidence: serde_json::Value = sqlx::query_scalar(
        "select coalesce(jsonb_agg(to_jsonb(c) order by c.authorized_at, c.call_id), '[]'::jsonb)
         from consents c
         where c.call_id in (select l.call_id from invoice_lines l where l.invoice_id = $1 and l.kind = 'call')",
    )
    .bind(invoice_id)
    .fetch_one(&mut *tx)
    .await?;
    let calls: i64 = sqlx::query_scalar(
        "select count(*) from invoice_lines where invoice_id = $1 and kind = 'call'",
    )
    .bind(invoice_id)
    .fetch_one(&mut *tx)
    .await?;
    Ok((evidence, calls))
}

/// The disputed claim leaves the ladder: a `paused_dispute` step, and the
/// overdue block lifted when no other claim keeps it (R7, R19).
async fn pause_for_dispute(
    tx: &mut PgConnection,
    inv: &InvoiceRow,
    id: i64,
    today: NaiveDate,
    grace: u32,
) -> SettlementResult<()> {
    let invoice_id = inv.id;
    // Once per invoice; a later dispute of the same invoice is in `disputes` and the audit log.
    record_step(
        &mut *tx,
        invoice_id,
        "paused_dispute",
        today,
        0,
        0,
        None,
        &format!("dispute {id}"),
    )
    .await?;
    if is_overdue(inv.due_date, inv.stage_due_date, today, grace)
        && !other_overdue(&mut *tx, &inv.number, &[invoice_id], today, grace).await?
    {
        queue_store_op(
            &mut *tx,
            "set_block",
            &inv.number,
            json!({ "blocked": false, "reason": format!("invoice {} disputed", inv.ocr) }),
        )
        .await?;
    }
    Ok(())
}

/// An upheld dispute: the outstanding amount credited by a credit note,
/// the store told, the invoice credited. Returns the amount credited.
async fn uphold(
    tx: &mut PgConnection,
    inv: &InvoiceRow,
    dispute_id: i64,
    now: DateTime<Utc>,
    today: NaiveDate,
    grace: u32,
) -> SettlementResult<i64> {
    let invoice_id = inv.id;
    let credit = inv.outstanding_ore();
    if credit > 0 {
        let note = credit_note::credit_note(&invoice_parts(&mut *tx, invoice_id).await?);
        if note.total_ore() != credit {
            return Err(SettlementError::Invalid(format!(
                "invoice {invoice_id}: its parts explain {} öre of the {credit} öre outstanding",
                note.total_ore()
            )));
        }
        book_credit_note(&mut *tx, inv, dispute_id, &note, now).await?;
        let clear_overdue =
            !other_overdue(&mut *tx, &inv.number, &[invoice_id], today, grace).await?;
        queue_store_op(
            &mut *tx,
            "apply_payment",
            &inv.number,
            json!({ "payment_id": format!("credit-dispute-{dispute_id}"), "amount_ore": credit,
                    "clear_overdue": clear_overdue, "first_invoice_paid": false }),
        )
        .await?;
    }
    sqlx::query(
        "update invoices set status = case when status = 'open' then 'credited' else status end,
                credited_at = case when status = 'open' then $3 else credited_at end,
                disputed = false, credits_ore = credits_ore + $2, total_ore = total_ore - $2
         where id = $1",
    )
    .bind(invoice_id)
    .bind(credit)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(credit)
}

/// A rejected dispute: the ladder resumes with new time, never less than
/// the claim had (R19), and the block returns when the claim is overdue.
/// Returns the new due date.
async fn reject(
    tx: &mut PgConnection,
    inv: &InvoiceRow,
    reminder_due_days: u32,
    today: NaiveDate,
    grace: u32,
) -> SettlementResult<NaiveDate> {
    let invoice_id = inv.id;
    // Never less time than the claim had (R19; module doc).
    let new_due = calendar::due_date_after(today, reminder_due_days)
        .max(inv.due_date)
        .max(inv.stage_due_date);
    sqlx::query("update invoices set disputed = false, stage_due_date = $2 where id = $1")
        .bind(invoice_id)
        .bind(new_due)
        .execute(&mut *tx)
        .await?;
    let still_open = inv.status == "open" && inv.outstanding_ore() > 0 && !inv.plan_active;
    if still_open && is_overdue(inv.due_date, new_due, today, grace) {
        queue_store_op(
            &mut *tx,
            "set_block",
            &inv.number,
            json!({ "blocked": true, "reason": format!("invoice {} overdue (dispute rejected)", inv.ocr) }),
        )
        .await?;
    }
    Ok(new_due)
}

/// What an invoice consists of, for its credit note, read under the
/// invoice's row lock.
async fn invoice_parts(
    conn: &mut PgConnection,
    invoice_id: i64,
) -> SettlementResult<credit_note::InvoiceParts> {
    let rate = |p: Option<i32>| -> SettlementResult<Option<VatRate>> {
        p.map(|p| {
            VatRate::from_percent(p as u32)
                .map_err(|e| SettlementError::Invalid(format!("invoice {invoice_id}: {e}")))
        })
        .transpose()
    };
    let mut usage = Vec::new();
    for r in sqlx::query(
        "select u.merchant_id, u.vat_rate_percent, sum(l.amount_ore)::bigint as gross, sum(l.vat_ore)::bigint as vat
         from invoice_lines l join usage u on u.call_id = l.call_id
         where l.invoice_id = $1 and l.kind = 'call'
         group by u.merchant_id, u.vat_rate_percent order by u.merchant_id, u.vat_rate_percent",
    )
    .bind(invoice_id)
    .fetch_all(&mut *conn)
    .await?
    {
        usage.push(credit_note::UsageGroup {
            merchant_id: r.get("merchant_id"),
            rate: rate(r.get("vat_rate_percent"))?,
            gross_ore: r.get("gross"),
            vat_ore: r.get("vat"),
        });
    }
    let paper = sqlx::query(
        "select coalesce(sum(amount_ore), 0)::bigint as gross, coalesce(sum(vat_ore), 0)::bigint as vat,
                max(vat_rate_percent) as rate
         from invoice_lines where invoice_id = $1 and kind = 'fee' and description = $2",
    )
    .bind(invoice_id)
    .bind(invoicing::PAPER_FEE_DESCRIPTION)
    .fetch_one(&mut *conn)
    .await?;
    let (reminder, collection): (i64, i64) = sqlx::query_as(
        "select coalesce(sum(fee_ore) filter (where step = 'reminder'), 0)::bigint,
                coalesce(sum(fee_ore) filter (where step = 'collection'), 0)::bigint
         from collection_steps where invoice_id = $1",
    )
    .bind(invoice_id)
    .fetch_one(&mut *conn)
    .await?;
    let (fees, interest, credits, paid): (i64, i64, i64, i64) = sqlx::query_as(
        "select fees_ore, interest_ore, credits_ore, paid_ore from invoices where id = $1",
    )
    .bind(invoice_id)
    .fetch_one(&mut *conn)
    .await?;
    let paper_fee_ore: i64 = paper.get("gross");
    Ok(credit_note::InvoiceParts {
        usage,
        paper_fee_ore,
        paper_fee_vat_ore: paper.get("vat"),
        paper_fee_rate: rate(paper.get("rate"))?,
        reminder_fee_ore: reminder,
        collection_fee_ore: collection,
        interest_ore: interest,
        other_fees_ore: (fees - paper_fee_ore - reminder - collection).max(0),
        received_ore: credits + paid,
    })
}

/// Books a credit note in the caller's transaction: the credit lines on the
/// invoice (per VAT rate, so its VAT summary shows the reduction), one
/// ledger transaction, the merchants' chargebacks for their next
/// statements, and the state-store payment that lowers invoiced-unpaid.
async fn book_credit_note(
    conn: &mut PgConnection,
    inv: &InvoiceRow,
    dispute_id: i64,
    note: &credit_note::CreditNote,
    now: DateTime<Utc>,
) -> SettlementResult<()> {
    let credit = note.total_ore();
    let paper_rate = paper_rate(conn, inv.id).await?;
    credit_lines(conn, inv.id, note, paper_rate).await?;

    let mut txn = Txn::new(
        format!("dispute-credit:{dispute_id}"),
        now,
        format!("dispute {dispute_id} upheld, invoice {}", inv.ocr),
    )
    .credit(account::caller_invoiced(&inv.number), credit);
    for c in &note.chargebacks {
        txn = txn.debit(account::merchant_payable(&c.merchant_id), c.base_ore);
        if let Some(rate) = c.rate {
            txn = txn.debit(account::vat_output(rate), c.vat_ore);
        }
        sqlx::query(
            "insert into merchant_chargebacks (dispute_id, invoice_id, merchant_id, vat_rate_percent,
                                               gross_ore, vat_ore, base_ore, created_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(dispute_id)
        .bind(inv.id)
        .bind(&c.merchant_id)
        .bind(c.rate.map(|r| r.percent() as i32))
        .bind(c.gross_ore)
        .bind(c.vat_ore)
        .bind(c.base_ore)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    txn = txn
        .debit(
            account::INCOME_PAPER_FEE,
            note.paper_fee_ore - note.paper_fee_vat_ore,
        )
        .debit(account::INCOME_REMINDER_FEE, note.reminder_fee_ore)
        .debit(account::INCOME_COLLECTION_FEE, note.collection_fee_ore)
        .debit(account::INCOME_INTEREST, note.interest_ore)
        .debit(account::LOSSES_DISPUTES, note.unattributed_ore);
    if let Some(rate) = paper_rate {
        txn = txn.debit(account::vat_output(rate), note.paper_fee_vat_ore);
    }
    ledger::post(conn, &txn).await?;
    Ok(())
}

/// The credit note's lines on the invoice: one per VAT rate (calls and the
/// paper fee), one for what is outside the scope of VAT.
async fn credit_lines(
    conn: &mut PgConnection,
    invoice_id: i64,
    note: &credit_note::CreditNote,
    paper_rate: Option<VatRate>,
) -> SettlementResult<()> {
    const TEXT: &str = "Kreditering efter utredning av invändning";
    let mut by_rate: std::collections::BTreeMap<u32, (VatRate, i64, i64)> = Default::default();
    let mut without_vat =
        note.reminder_fee_ore + note.collection_fee_ore + note.interest_ore + note.unattributed_ore;
    let vat_parts = note
        .chargebacks
        .iter()
        .map(|c| (c.rate, c.gross_ore, c.vat_ore))
        .chain(std::iter::once((
            paper_rate,
            note.paper_fee_ore,
            note.paper_fee_vat_ore,
        )));
    for (rate, gross, vat) in vat_parts {
        match rate {
            Some(r) => {
                let e = by_rate.entry(r.percent()).or_insert((r, 0, 0));
                e.1 += gross;
                e.2 += vat;
            }
            None => without_vat += gross,
        }
    }
    for (rate, gross, vat) in by_rate.values().rev() {
        if *gross != 0 {
            invoicing::add_vat_line(conn, invoice_id, "credit", TEXT, -gross, *rate, -vat).await?;
        }
    }
    if without_vat != 0 {
        invoicing::add_line(conn, invoice_id, "credit", TEXT, -without_vat).await?;
    }
    Ok(())
}

async fn paper_rate(conn: &mut PgConnection, invoice_id: i64) -> SettlementResult<Option<VatRate>> {
    let p: Option<i32> = sqlx::query_scalar(
        "select max(vat_rate_percent) from invoice_lines where invoice_id = $1 and kind = 'fee' and description = $2",
    )
    .bind(invoice_id)
    .bind(invoicing::PAPER_FEE_DESCRIPTION)
    .fetch_one(&mut *conn)
    .await?;
    p.map(|p| VatRate::from_percent(p as u32).map_err(|e| SettlementError::Invalid(e.to_string())))
        .transpose()
}

/// One dispute as stored.
pub async fn load(conn: &mut PgConnection, id: i64) -> SettlementResult<Dispute> {
    let r = sqlx::query(
        "select d.id, d.invoice_id, i.number, d.reason, d.status, d.evidence, d.opened_by, d.opened_at,
                d.resolved_by, d.resolution, d.resolved_at
         from disputes d join invoices i on i.id = d.invoice_id where d.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| SettlementError::NotFound(format!("dispute {id}")))?;
    let status: String = r.get("status");
    Ok(Dispute {
        id: r.get("id"),
        invoice_id: r.get("invoice_id"),
        number: r.get("number"),
        reason: r.get("reason"),
        status: DisputeStatus::parse(&status)
            .ok_or_else(|| SettlementError::Invalid(format!("dispute {id}: status {status}")))?,
        evidence: r.get("evidence"),
        opened_by: r.get("opened_by"),
        opened_at: r.get("opened_at"),
        resolved_by: r.get("resolved_by"),
        resolution: r.get("resolution"),
        resolved_at: r.get("resolved_at"),
    })
}
