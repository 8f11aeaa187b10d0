//! Held invoices and the mailing system's side of the `documents` queue
//! (SPEC R13); the route of a document is decided in `route`.
//!
//! **The mailing system** fetches queued documents (`ListQueuedDocuments`,
//! `callauth-settlement documents list`) and reports each one sent or
//! bounced (`ReportDocumentDelivery`, `documents sent|bounced`). A bounced
//! e-mail marks the holder's address as bouncing (not used again until it
//! changes) and queues a paper copy of the same document at once — or holds
//! it when there is no postal address.
//!
//! **The fee of a fallback** (decided here, R13 and seed 001/002): a paper
//! copy sent because an e-mail bounced, and any later invoice sent on paper
//! because the e-mail address does not work, carry **no** paper fee. The
//! fee is the price of the paper invoice a customer chooses (seed 001: "Vi
//! skickar fakturan ... med vanlig post. Det tillkommer en fakturaavgift");
//! a fallback is our way of delivering what the customer chose to get for
//! free, the bounce may be our mail provider's fault as much as theirs, and
//! the amount of an issued invoice does not change after the fact. The
//! customer is told on the paper copy and can give a working address.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

use crate::domain::Money;
use crate::metrics as m;
use crate::settlement::billing::document::{self, DocumentKind};
use crate::settlement::billing::invoicing;
use crate::settlement::billing::route::{self, Channel, Route};
use crate::settlement::context::{
    audit, queue_store_op, Settlement, SettlementError, SettlementResult,
};
use crate::settlement::ledger::{self, account, Txn};
use crate::settlement::{calendar, policy::SettlementPolicy};
use crate::store::Store;

// ---------------------------------------------------------------------------
// Held invoices

/// An invoice in the books that could not be sent.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HeldInvoice {
    pub invoice_id: i64,
    pub number: String,
    pub customer_number: Option<String>,
    pub total_ore: i64,
    pub held_since: NaiveDate,
}

/// Every held invoice, oldest first (the admin list).
pub async fn held_invoices(pool: &PgPool) -> SettlementResult<Vec<HeldInvoice>> {
    let rows = sqlx::query(
        "select i.id, i.number, h.customer_number, i.total_ore, i.issue_date
         from invoices i left join holders h on h.id = i.holder_id
         where i.status = 'held' order by i.issue_date, i.id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| HeldInvoice {
            invoice_id: r.get("id"),
            number: r.get("number"),
            customer_number: r.get("customer_number"),
            total_ore: r.get("total_ore"),
            held_since: r.get("issue_date"),
        })
        .collect())
}

/// What [`release_held`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Released {
    pub invoices: usize,
    pub documents: usize,
}

/// Sends what was held for want of an address, for the numbers given (all
/// numbers with `None`): invoices whose holder can now be reached are
/// issued `today` (see the module doc), held letters are queued. Each
/// invoice is its own transaction.
pub async fn release_held<S: Store>(
    s: &Settlement<S>,
    numbers: Option<&[String]>,
) -> SettlementResult<Released> {
    let mut out = Released::default();
    let today = s.today();
    let now = s.now();
    let invoices: Vec<i64> = sqlx::query_scalar(
        "select id from invoices where status = 'held' and ($1::text[] is null or number = any($1)) order by id",
    )
    .bind(numbers)
    .fetch_all(&s.pool)
    .await?;
    for id in invoices {
        let mut tx = s.pool.begin().await?;
        if release_invoice(&mut tx, &s.policy, id, today, now).await? {
            out.invoices += 1;
        }
        tx.commit().await?;
    }
    let documents: Vec<(i64, i64, String)> = sqlx::query_as(
        "select d.id, d.invoice_id, d.kind from documents d join invoices i on i.id = d.invoice_id
         where d.status = 'held' and ($1::text[] is null or i.number = any($1)) order by d.id",
    )
    .bind(numbers)
    .fetch_all(&s.pool)
    .await?;
    for (doc_id, invoice_id, kind) in documents {
        let mut tx = s.pool.begin().await?;
        let Some(r) = route::recipient_of_invoice(&mut tx, invoice_id).await? else {
            continue;
        };
        if let Route::Send { channel, .. } = route::route_letter(&r) {
            let kind = document_kind(&kind)?;
            // Rendered again: the address it goes to is new.
            let pdf = document::render(&mut tx, &s.policy, invoice_id, kind).await?;
            sqlx::query(
                "update documents set status = 'queued', channel = $2, pdf = $3 where id = $1 and status = 'held'",
            )
            .bind(doc_id)
            .bind(channel.as_str())
            .bind(pdf)
            .execute(&mut *tx)
            .await?;
            out.documents += 1;
        }
        tx.commit().await?;
    }
    if out.invoices + out.documents > 0 {
        tracing::info!(
            invoices = out.invoices,
            documents = out.documents,
            "held documents released"
        );
    }
    refresh_gauges(&s.pool, now).await?;
    Ok(out)
}

/// Issues one held invoice if its holder can now be reached; false otherwise.
async fn release_invoice(
    conn: &mut PgConnection,
    policy: &SettlementPolicy,
    id: i64,
    today: NaiveDate,
    now: DateTime<Utc>,
) -> SettlementResult<bool> {
    let row = sqlx::query(
        "select number, holder_id, ocr, due_date from invoices where id = $1 and status = 'held' for update",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(false) };
    let Some(holder_id) = row.get::<Option<i64>, _>("holder_id") else {
        return Ok(false);
    };
    let number: String = row.get("number");
    let ocr: String = row.get("ocr");
    let Route::Send { channel, paper_fee } =
        route::route_invoice(&route::recipient(conn, holder_id).await?)
    else {
        return Ok(false);
    };
    let fee_ore = if paper_fee {
        policy.paper_invoice_fee.ore()
    } else {
        0
    };
    if fee_ore > 0 {
        book_paper_fee(conn, policy, id, &number, &ocr, fee_ore, now).await?;
    }
    // Sent today, so due no earlier than the shortest time we give.
    let earliest = calendar::due_date_after(today, policy.threshold_due_days);
    let due: NaiveDate = row.get::<NaiveDate, _>("due_date").max(earliest);
    sqlx::query(
        "update invoices set status = 'open', delivery = $2, issue_date = $3, due_date = $4,
                stage_due_date = $4, fees_ore = fees_ore + $5, total_ore = total_ore + $5
         where id = $1",
    )
    .bind(id)
    .bind(channel.as_str())
    .bind(today)
    .bind(due)
    .bind(fee_ore)
    .execute(&mut *conn)
    .await?;
    let pdf = document::render(conn, policy, id, DocumentKind::Invoice).await?;
    route::queue(conn, id, DocumentKind::Invoice, channel.as_str(), pdf, None).await?;
    audit(
        conn,
        "settlement",
        "invoice_released",
        &number,
        json!({ "invoice_id": id, "channel": channel.as_str(), "fee_ore": fee_ore, "due_date": due }),
    )
    .await?;
    Ok(true)
}

/// The paper fee of a released invoice that goes on paper as its holder
/// chose (R13): a fee line with its VAT, booked, and the store told.
async fn book_paper_fee(
    conn: &mut PgConnection,
    policy: &SettlementPolicy,
    id: i64,
    number: &str,
    ocr: &str,
    fee_ore: i64,
    now: DateTime<Utc>,
) -> SettlementResult<()> {
    let fee_vat_ore = policy.paper_invoice_fee_vat.vat_in_ore(fee_ore);
    invoicing::add_vat_line(
        conn,
        id,
        "fee",
        invoicing::PAPER_FEE_DESCRIPTION,
        fee_ore,
        policy.paper_invoice_fee_vat,
        fee_vat_ore,
    )
    .await?;
    ledger::post(
        conn,
        &Txn::new(
            format!("invoice-fee:{id}"),
            now,
            format!("paper fee, invoice {ocr} released"),
        )
        .debit(account::caller_invoiced(number), fee_ore)
        .credit(account::INCOME_PAPER_FEE, fee_ore - fee_vat_ore)
        .credit(
            account::vat_output(policy.paper_invoice_fee_vat),
            fee_vat_ore,
        ),
    )
    .await?;
    queue_store_op(
        conn,
        "apply_invoice",
        number,
        json!({ "invoice_id": format!("{}-fee", invoicing::store_invoice_id(id)),
                "usage_ore": 0, "fees_ore": fee_ore }),
    )
    .await?;
    Ok(())
}

fn document_kind(kind: &str) -> SettlementResult<DocumentKind> {
    match kind {
        "invoice" => Ok(DocumentKind::Invoice),
        "reminder" => Ok(DocumentKind::Reminder),
        "collection" => Ok(DocumentKind::Collection),
        other => Err(SettlementError::Invalid(format!("document kind {other}"))),
    }
}

// ---------------------------------------------------------------------------
// The mailing system

/// A document waiting to be sent, with what the mailing system needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedDocument {
    pub id: i64,
    pub invoice_id: i64,
    pub kind: String,
    pub channel: String,
    /// For e-mail.
    pub email: Option<String>,
    /// For paper: the addressee and the address (also printed in the PDF's window).
    pub name: Option<String>,
    pub address_lines: Vec<String>,
    pub pdf: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

/// At most this many documents per fetch.
pub const MAX_FETCH: i64 = 500;

/// Queued documents, oldest first, of one channel or both.
pub async fn queued(
    pool: &PgPool,
    channel: Option<Channel>,
    limit: i64,
    with_pdf: bool,
) -> SettlementResult<Vec<QueuedDocument>> {
    if !(1..=MAX_FETCH).contains(&limit) {
        return Err(SettlementError::Invalid(format!(
            "limit must be 1–{MAX_FETCH}"
        )));
    }
    let rows = sqlx::query(
        "select d.id, d.invoice_id, d.kind, d.channel, d.created_at,
                case when $3 then d.pdf else ''::bytea end as pdf,
                h.email, h.name, coalesce(h.address_lines, '{}') as address_lines
         from documents d join invoices i on i.id = d.invoice_id left join holders h on h.id = i.holder_id
         where d.status = 'queued' and ($1::text is null or d.channel = $1)
         order by d.id limit $2",
    )
    .bind(channel.map(Channel::as_str))
    .bind(limit)
    .bind(with_pdf)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| QueuedDocument {
            id: r.get("id"),
            invoice_id: r.get("invoice_id"),
            kind: r.get("kind"),
            channel: r.get("channel"),
            email: r.get("email"),
            name: r.get("name"),
            address_lines: r.get("address_lines"),
            pdf: r.get("pdf"),
            created_at: r.get("created_at"),
        })
        .collect())
}

/// What the mailing system reports about a document.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// The e-mail could not be delivered.
    Bounced,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Bounced => "bounced",
        }
    }
}

/// The answer to a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reported {
    pub document_id: i64,
    pub status: String,
    /// The paper copy queued (or held) after a bounce.
    pub fallback_document_id: Option<i64>,
    /// False when the same report was made before (nothing changed).
    pub changed: bool,
}

/// The longest detail text a report may carry.
pub const MAX_DETAIL: usize = 500;

/// Records the mailing system's report on a document; a bounced e-mail
/// falls back to paper without a fee (see the module doc). Reporting the
/// same outcome again changes nothing; a different one is refused.
pub async fn report<S: Store>(
    s: &Settlement<S>,
    document_id: i64,
    outcome: Outcome,
    detail: &str,
    actor: &str,
) -> SettlementResult<Reported> {
    if detail.chars().count() > MAX_DETAIL {
        return Err(SettlementError::Invalid(format!(
            "detail is at most {MAX_DETAIL} characters"
        )));
    }
    let now = s.now();
    let mut tx = s.pool.begin().await?;
    let row = sqlx::query(
        "select d.invoice_id, d.kind, d.channel, d.status, i.number, i.holder_id,
                (select f.id from documents f where f.fallback_of = d.id order by f.id limit 1) as fallback
         from documents d join invoices i on i.id = d.invoice_id where d.id = $1 for update of d",
    )
    .bind(document_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| SettlementError::NotFound(format!("document {document_id}")))?;
    let status: String = row.get("status");
    let channel: String = row.get("channel");
    if status == outcome.as_str() {
        return Ok(Reported {
            document_id,
            status,
            fallback_document_id: row.get("fallback"),
            changed: false,
        });
    }
    if status != "queued" {
        return Err(SettlementError::Refused(format!(
            "document {document_id} is {status}; only a queued document can be reported"
        )));
    }
    if outcome == Outcome::Bounced && channel != "email" {
        return Err(SettlementError::Invalid(format!(
            "document {document_id} went on paper; only e-mail is reported bounced"
        )));
    }
    sqlx::query(
        "update documents set status = $2, reported_at = $3, report_detail = $4,
                sent_at = case when $2 = 'sent' then $3 else sent_at end
         where id = $1",
    )
    .bind(document_id)
    .bind(outcome.as_str())
    .bind(now)
    .bind((!detail.is_empty()).then_some(detail))
    .execute(&mut *tx)
    .await?;
    let number: String = row.get("number");
    let mut fallback = None;
    if outcome == Outcome::Bounced {
        fallback = Some(paper_copy(&mut tx, &s.policy, &row, document_id, now).await?);
    }
    audit(
        &mut tx,
        actor,
        "document_reported",
        &number,
        json!({ "document_id": document_id, "outcome": outcome.as_str(), "fallback_document_id": fallback }),
    )
    .await?;
    tx.commit().await?;
    metrics::counter!(m::SETTLEMENT_DOCUMENT_REPORTS_TOTAL, "result" => outcome.as_str())
        .increment(1);
    refresh_gauges(&s.pool, now).await?;
    Ok(Reported {
        document_id,
        status: outcome.as_str().to_string(),
        fallback_document_id: fallback,
        changed: true,
    })
}

/// A bounced e-mail: the holder's address marked bouncing, and a paper copy
/// of the document queued (or held) at once, without a fee (R13). Returns
/// the copy's id.
async fn paper_copy(
    tx: &mut PgConnection,
    policy: &SettlementPolicy,
    row: &PgRow,
    document_id: i64,
    now: DateTime<Utc>,
) -> SettlementResult<i64> {
    let invoice_id: i64 = row.get("invoice_id");
    if let Some(holder) = row.get::<Option<i64>, _>("holder_id") {
        sqlx::query(
            "update holders set email_bounced_at = coalesce(email_bounced_at, $2) where id = $1",
        )
        .bind(holder)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    let kind = document_kind(row.get::<&str, _>("kind"))?;
    let pdf = document::render(&mut *tx, policy, invoice_id, kind).await?;
    let id = route::queue(&mut *tx, invoice_id, kind, "paper", pdf, Some(document_id)).await?;
    if kind == DocumentKind::Invoice {
        sqlx::query("update invoices set delivery = 'paper' where id = $1")
            .bind(invoice_id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(id)
}

/// Sets the delivery gauges: held invoices, and queued documents and the
/// oldest one's age at `now` per channel.
pub async fn refresh_gauges(pool: &PgPool, now: DateTime<Utc>) -> SettlementResult<()> {
    let held: i64 = sqlx::query_scalar("select count(*) from invoices where status = 'held'")
        .fetch_one(pool)
        .await?;
    metrics::gauge!(m::SETTLEMENT_INVOICES_HELD).set(held as f64);
    for channel in [Channel::Email, Channel::Paper] {
        let (count, oldest): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "select count(*), min(created_at) from documents where status = 'queued' and channel = $1",
        )
        .bind(channel.as_str())
        .fetch_one(pool)
        .await?;
        metrics::gauge!(m::SETTLEMENT_DOCUMENTS_QUEUED, "channel" => channel.as_str())
            .set(count as f64);
        let age = oldest.map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
        metrics::gauge!(m::SETTLEMENT_DOCUMENTS_OLDEST_QUEUED_SECONDS, "channel" => channel.as_str())
            .set(age);
    }
    Ok(())
}

/// Money on a held invoice, for display.
pub fn describe_held(h: &HeldInvoice) -> String {
    format!(
        "invoice {} ({}, customer {}): {} held since {}",
        h.invoice_id,
        h.number,
        h.customer_number.as_deref().unwrap_or("-"),
        Money::ore_unchecked(h.total_ore).to_swedish(),
        h.held_since
    )
}
