//! Commits outbox events to the ledger (DESIGN invariant 6): a batch of
//! events is one PostgreSQL transaction. Each event id is inserted once
//! (`on conflict do nothing`); only the events that were new have effects, so
//! a redelivered batch — after a crash between the commit and the stream
//! acknowledgement — changes nothing.
//!
//! The high-volume events (usage posted, consent recorded) are written in
//! bulk: their event ids with one `unnest` statement (the one that finds
//! which are new), then their CDRs, consents and ledger entries with one
//! binary `COPY` per table per batch (issue 13.3); the rare events one by
//! one. A threshold event issues its invoice in the same transaction (R8:
//! "an invoice is created and sent at once").
//!
//! Where the events come from: [`consumer`] reads the partitions' Redis
//! streams, [`jsonl`] an embedded gateway's JSON-lines outbox file.

pub mod consumer;
pub mod jsonl;

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgConnection;

use crate::domain::decision::Funding;
use crate::domain::event::{ConsentRecorded, Event, EventBody, UsagePosted};
use crate::settlement::billing::invoicing::{issue_invoice, InvoiceKind};
use crate::settlement::context::{audit, ms_to_utc, SettlementResult};
use crate::settlement::formats::pgcopy::CopyRows;
use crate::settlement::ledger::{self, account, Txn};
use crate::settlement::policy::SettlementPolicy;

/// One event as read from a stream.
#[derive(Clone, Debug)]
pub struct Delivered {
    pub partition: u32,
    pub stream_id: String,
    pub event: Event,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub committed: usize,
    pub duplicates: usize,
    pub usage_posted: usize,
    pub invoices_issued: usize,
}

fn funding_str(f: Funding) -> &'static str {
    match f {
        Funding::Postpaid => "postpaid",
        Funding::Prepaid => "prepaid",
    }
}

fn opt(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Commits a batch in the caller's transaction: records the event ids,
/// then books only the events that were new — usage and consents in bulk,
/// the rest one by one in stream order.
pub async fn commit_batch(
    conn: &mut PgConnection,
    policy: &SettlementPolicy,
    batch: &[Delivered],
    today: chrono::NaiveDate,
    now: DateTime<Utc>,
) -> SettlementResult<BatchOutcome> {
    let mut out = BatchOutcome::default();
    if batch.is_empty() {
        return Ok(out);
    }
    let fresh = record_events(conn, batch).await?;
    out.committed = fresh.len();
    out.duplicates = batch.len() - fresh.len();
    out.usage_posted = post_usage(conn, &fresh).await?;
    record_consents(conn, &fresh).await?;
    for e in &fresh {
        apply_event(conn, policy, e, today, now, &mut out).await?;
    }
    Ok(out)
}

/// Step 1: records the event ids and returns the events that were new, once
/// each (a batch may carry a redelivery next to the original).
async fn record_events<'a>(
    conn: &mut PgConnection,
    batch: &'a [Delivered],
) -> SettlementResult<Vec<&'a Event>> {
    let ids: Vec<&str> = batch.iter().map(|d| d.event.event_id.as_str()).collect();
    let partitions: Vec<i32> = batch.iter().map(|d| d.partition as i32).collect();
    let stream_ids: Vec<&str> = batch.iter().map(|d| d.stream_id.as_str()).collect();
    let kinds: Vec<&str> = batch.iter().map(|d| d.event.body.label()).collect();
    let ats: Vec<DateTime<Utc>> = batch.iter().map(|d| ms_to_utc(d.event.at_ms)).collect();
    // As text, cast to jsonb by PostgreSQL: no intermediate JSON tree here.
    // Issue 13.3: the log keeps a payload only where no table holds the
    // fact. A consent's every field is in its `consents` row (migration
    // 0007), a posted call's in its `usage` row (0008).
    let payloads: Vec<Option<String>> = batch
        .iter()
        .map(|d| match &d.event.body {
            EventBody::ConsentRecorded(_) | EventBody::UsagePosted(_) => None,
            _ => Some(d.event.to_json()),
        })
        .collect();
    let inserted: Vec<String> = sqlx::query_scalar(
        "insert into events (event_id, partition, stream_id, kind, at, payload)
         select * from unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::timestamptz[], $6::text[]::jsonb[])
         on conflict (event_id) do nothing
         returning event_id",
    )
    .bind(&ids)
    .bind(&partitions)
    .bind(&stream_ids)
    .bind(&kinds)
    .bind(&ats)
    .bind(&payloads)
    .fetch_all(&mut *conn)
    .await?;
    let new: HashSet<String> = inserted.into_iter().collect();
    // A batch may carry the same event twice (a redelivery next to the original).
    let mut seen = HashSet::new();
    let fresh: Vec<&Event> = batch
        .iter()
        .map(|d| &d.event)
        .filter(|e| new.contains(&e.event_id) && seen.insert(e.event_id.clone()))
        .collect();
    Ok(fresh)
}

/// Step 2, usage (bulk): the CDRs, the numbers, and one ledger transaction
/// each: the charge (VAT included) from the caller or the code, to the
/// merchant without VAT and the VAT to output VAT at the call's rate.
/// Returns how many calls were posted.
async fn post_usage(conn: &mut PgConnection, fresh: &[&Event]) -> SettlementResult<usize> {
    let usages: Vec<(&Event, &UsagePosted)> = fresh
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::UsagePosted(u) => Some((*e, u)),
            _ => None,
        })
        .collect();
    if !usages.is_empty() {
        insert_usage(conn, &usages).await?;
        ledger::post_many(conn, &usage_txns(&usages)).await?;
    }
    Ok(usages.len())
}

/// Step 3: consents (bulk).
async fn record_consents(conn: &mut PgConnection, fresh: &[&Event]) -> SettlementResult<()> {
    let consents: Vec<&ConsentRecorded> = fresh
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::ConsentRecorded(c) => Some(c),
            _ => None,
        })
        .collect();
    if !consents.is_empty() {
        insert_consents(conn, &consents).await?;
    }
    Ok(())
}

/// Step 4: one of the other events, in stream order.
async fn apply_event(
    conn: &mut PgConnection,
    policy: &SettlementPolicy,
    e: &Event,
    today: chrono::NaiveDate,
    now: DateTime<Utc>,
    out: &mut BatchOutcome,
) -> SettlementResult<()> {
    let at = ms_to_utc(e.at_ms);
    match &e.body {
        EventBody::UsagePosted(_) | EventBody::ConsentRecorded(_) => {}
        EventBody::ThresholdReached(t) => {
            if threshold_invoice(conn, policy, t, today, now).await? {
                out.invoices_issued += 1;
            }
        }
        EventBody::PrepaidCredited(p) => credit_prepaid(conn, &e.event_id, p, at).await?,
        EventBody::PrepaidDebited(p) => {
            insert_movement(
                conn,
                &e.event_id,
                &p.code_id,
                "debit",
                p.amount_ore,
                p.balance_after_ore,
                None,
                Some(&p.call_id),
                at,
            )
            .await?;
        }
        EventBody::DirectoryChanged(d) => {
            sqlx::query(
                "insert into numbers (number, holder_registered) values ($1, $2)
                 on conflict (number) do update set holder_registered = excluded.holder_registered",
            )
            .bind(&d.number)
            .bind(d.holder_registered)
            .execute(&mut *conn)
            .await?;
        }
        EventBody::BlockChanged(b) => {
            audit(
                conn,
                &b.actor,
                if b.blocked { "block" } else { "unblock" },
                &b.number,
                json!({ "kind": b.kind, "target": b.target, "reason": b.reason }),
            )
            .await?;
        }
        EventBody::LimitChanged(l) => {
            audit(
                conn,
                &l.actor,
                "limit_changed",
                &l.number,
                json!({ "limit_ore": l.limit_ore, "source": l.source, "reference": l.reference }),
            )
            .await?;
        }
        EventBody::LimitReached(l) => {
            audit(
                conn,
                "gateway",
                "limit_reached",
                &l.number,
                json!({ "exposure_ore": l.exposure_ore, "limit_ore": l.limit_ore }),
            )
            .await?;
        }
        EventBody::BalancesRepaired(r) => {
            audit(conn, "reconciliation", "balances_repaired", &r.number, json!({ "unbilled_after_ore": r.unbilled_after_ore, "invoiced_unpaid_after_ore": r.invoiced_unpaid_after_ore, "reason": r.reason })).await?;
        }
        // Kept in `events`; nothing more to book.
        EventBody::HoldExpired(_)
        | EventBody::HoldVoided(_)
        | EventBody::InvoiceApplied(_)
        | EventBody::PaymentApplied(_) => {}
    }
    Ok(())
}

/// R8: a threshold event invoices what is not yet invoiced, at once; true
/// when an invoice was issued.
async fn threshold_invoice(
    conn: &mut PgConnection,
    policy: &SettlementPolicy,
    t: &crate::domain::event::ThresholdReached,
    today: chrono::NaiveDate,
    now: DateTime<Utc>,
) -> SettlementResult<bool> {
    // R8: invoice what is not yet invoiced, at once.
    if let Ok(inv) = issue_invoice(
        conn,
        policy,
        &t.number,
        InvoiceKind::Threshold,
        today,
        None,
        now,
    )
    .await?
    {
        audit(
            conn,
            "settlement",
            "threshold_invoice",
            &t.number,
            json!({ "invoice_id": inv.id, "total_ore": inv.total.ore() }),
        )
        .await?;
        return Ok(true);
    }
    Ok(false)
}

/// A prepaid code credited: the code, its movement, and the sale in the ledger.
async fn credit_prepaid(
    conn: &mut PgConnection,
    event_id: &str,
    p: &crate::domain::event::PrepaidCredited,
    at: DateTime<Utc>,
) -> SettlementResult<()> {
    sqlx::query(
        "insert into prepaid_codes (code_id, purchase_ref, issued_at) values ($1, $2, $3)
         on conflict (code_id) do nothing",
    )
    .bind(&p.code_id)
    .bind(if p.issued {
        Some(p.reference.as_str())
    } else {
        None
    })
    .bind(at)
    .execute(&mut *conn)
    .await?;
    insert_movement(
        conn,
        event_id,
        &p.code_id,
        "credit",
        p.amount_ore,
        p.balance_after_ore,
        Some(&p.reference),
        None,
        at,
    )
    .await?;
    ledger::post(
        conn,
        &Txn::new(
            format!("prepaid-credit:{}:{}", p.code_id, p.reference),
            at,
            "prepaid code credited",
        )
        .debit(account::PREPAID_SALES, p.amount_ore)
        .credit(account::prepaid(&p.code_id), p.amount_ore),
    )
    .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn insert_movement(
    conn: &mut PgConnection,
    event_id: &str,
    code_id: &str,
    kind: &str,
    amount_ore: i64,
    balance_after_ore: i64,
    reference: Option<&str>,
    call_id: Option<&str>,
    at: DateTime<Utc>,
) -> SettlementResult<()> {
    sqlx::query(
        "insert into prepaid_movements (event_id, code_id, kind, amount_ore, balance_after_ore, reference, call_id, at)
         values ($1, $2, $3, $4, $5, $6, $7, $8) on conflict (event_id) do nothing",
    )
    .bind(event_id)
    .bind(code_id)
    .bind(kind)
    .bind(amount_ore)
    .bind(balance_after_ore)
    .bind(reference)
    .bind(call_id)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The CDRs, with one binary `COPY`. Every call is new: its usage event was
/// (the event id is `usage:<call_id>`, `ids::usage`), so there is no
/// conflict to skip; a `usage` row without its event would fail the batch,
/// which the consumer then retries event by event and dead-letters.
async fn insert_usage(
    conn: &mut PgConnection,
    usages: &[(&Event, &UsagePosted)],
) -> SettlementResult<()> {
    insert_numbers(conn, usages).await?;
    let rows = usage_rows(usages);
    ledger::copy_rows(
        conn,
        "copy usage (call_id, record_id, merchant_id, service_number, number, funding, code_id, terms_id,
                     price_per_minute_ore, billing_step_seconds, minimum_minutes, started_at, duration_seconds,
                     billed_seconds, charge_ore, granted_seconds, overrun_seconds, late, posted_at,
                     vat_rate_percent, vat_ore, authorized_at, exposure_after_ore, uncollected_ore)
         from stdin (format binary)",
        rows,
    )
    .await?;
    Ok(())
}

/// The postpaid calls' numbers, known to the ledger from their first call.
async fn insert_numbers(
    conn: &mut PgConnection,
    usages: &[(&Event, &UsagePosted)],
) -> SettlementResult<()> {
    let mut numbers: Vec<&str> = usages
        .iter()
        .filter(|(_, u)| u.funding == Funding::Postpaid && !u.number.is_empty())
        .map(|(_, u)| u.number.as_str())
        .collect();
    // Once each, in one order: fewer lookups, and concurrent batches lock
    // the same numbers in the same order.
    numbers.sort_unstable();
    numbers.dedup();
    sqlx::query("insert into numbers (number) select * from unnest($1::text[]) on conflict (number) do nothing")
        .bind(&numbers)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The consents, with one binary `COPY`; every call is new, as for
/// [`insert_usage`] (the event id is `consent:<call_id>`).
async fn insert_consents(
    conn: &mut PgConnection,
    consents: &[&ConsentRecorded],
) -> SettlementResult<()> {
    let rows = consent_rows(consents);
    ledger::copy_rows(
        conn,
        "copy consents (call_id, number, number_withheld, service_number, merchant_id, funding, code_id, terms_id,
                        price_per_minute_ore, minimum_minutes, billing_step_seconds, reminder_fee_ore,
                        age_confirmed, own_number_confirmed, step1_at, terms_accepted, step2_at,
                        ivr_client, ivr_id, line_ref, authorized_at)
         from stdin (format binary)",
        rows,
    )
    .await?;
    Ok(())
}

/// The ledger transactions of posted calls, one each: the charge (VAT
/// included) from the caller or the code, to the merchant without VAT and
/// the VAT to output VAT at the call's rate.
pub fn usage_txns(usages: &[(&Event, &UsagePosted)]) -> Vec<Txn> {
    usages
        .iter()
        .map(|(e, u)| {
            let debit = match u.funding {
                Funding::Postpaid => account::caller_unbilled(&u.number),
                Funding::Prepaid => account::prepaid(&u.code_id),
            };
            let vat_ore = u.vat_rate.vat_in_ore(u.charge_ore);
            Txn::new(
                format!("usage:{}", u.call_id),
                ms_to_utc(e.at_ms),
                "call posted",
            )
            .debit(debit, u.charge_ore)
            .credit(
                account::merchant_payable(&u.merchant_id),
                u.charge_ore - vat_ore,
            )
            .credit(account::vat_output(u.vat_rate), vat_ore)
        })
        .collect()
}

/// The CDRs of posted calls as `COPY` rows, in the column order of
/// `insert_usage`'s statement. Pure, so the benchmarks measure it.
pub fn usage_rows(usages: &[(&Event, &UsagePosted)]) -> CopyRows {
    let mut rows = CopyRows::new(24, usages.len() * 360);
    for (e, u) in usages {
        rows.row()
            .text(&u.call_id)
            .text(&u.record_id)
            .text(&u.merchant_id)
            .text(&u.service_number)
            .opt_text(opt(&u.number))
            .text(funding_str(u.funding))
            .opt_text(opt(&u.code_id))
            .text(&u.terms_id)
            .int8(u.price_per_minute_ore)
            .int4(u.billing_step_seconds as i32)
            .int4(u.minimum_minutes as i32)
            .timestamptz(ms_to_utc(u.started_at_ms))
            .int4(u.duration_seconds as i32)
            .int4(u.billed_seconds as i32)
            .int8(u.charge_ore)
            .int4(u.granted_seconds as i32)
            .int4(u.overrun_seconds as i32)
            .bool(u.late)
            .timestamptz(ms_to_utc(e.at_ms))
            .int4(u.vat_rate.percent() as i32)
            .int8(u.vat_rate.vat_in_ore(u.charge_ore))
            .timestamptz(ms_to_utc(u.authorized_at_ms))
            .int8(u.exposure_after_ore)
            .int8(u.uncollected_ore);
    }
    rows
}

/// The consents as `COPY` rows, in the column order of
/// `insert_consents`'s statement. Pure, so the benchmarks measure it.
pub fn consent_rows(consents: &[&ConsentRecorded]) -> CopyRows {
    let mut rows = CopyRows::new(21, consents.len() * 320);
    for c in consents {
        rows.row()
            .text(&c.call_id)
            .opt_text(opt(&c.number))
            .bool(c.number_withheld)
            .text(&c.service_number)
            .text(&c.merchant_id)
            .text(funding_str(c.funding))
            .opt_text(opt(&c.code_id))
            .text(&c.terms_id)
            .int8(c.price_per_minute_ore)
            .int4(c.minimum_minutes as i32)
            .int4(c.billing_step_seconds as i32)
            .int8(c.reminder_fee_ore)
            .bool(c.age_confirmed)
            .bool(c.own_number_confirmed)
            .opt_timestamptz((c.step1_at_ms > 0).then(|| ms_to_utc(c.step1_at_ms)))
            .bool(c.terms_accepted)
            .opt_timestamptz((c.step2_at_ms > 0).then(|| ms_to_utc(c.step2_at_ms)))
            .text(&c.ivr_client)
            .text(&c.ivr_id)
            .text(&c.line_ref)
            .timestamptz(ms_to_utc(c.authorized_at_ms));
    }
    rows
}
