//! Commits outbox events to the ledger (DESIGN invariant 6): a batch of
//! events is one PostgreSQL transaction. Each event id is inserted once
//! (`on conflict do nothing`); only the events that were new have effects, so
//! a redelivered batch — after a crash between the commit and the stream
//! acknowledgement — changes nothing.
//!
//! The high-volume events (usage posted, consent recorded) are written with
//! one `unnest` statement per kind per batch; the rare ones one by one. A
//! threshold event issues its invoice in the same transaction (R8: "an
//! invoice is created and sent at once").
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
use crate::domain::event::{Event, EventBody};
use crate::settlement::billing::invoicing::{issue_invoice, InvoiceKind};
use crate::settlement::context::{audit, ms_to_utc, SettlementResult};
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
    // Issue 13.3 (migration 0007): the log keeps a payload only where no
    // table holds the fact; a consent's every field is in its `consents` row.
    let payloads: Vec<Option<String>> = batch
        .iter()
        .map(|d| match &d.event.body {
            EventBody::ConsentRecorded(_) => None,
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
    let usages: Vec<(&Event, &crate::domain::event::UsagePosted)> = fresh
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::UsagePosted(u) => Some((*e, u)),
            _ => None,
        })
        .collect();
    if !usages.is_empty() {
        insert_usage(conn, &usages).await?;
        let txns: Vec<Txn> = usages
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
            .collect();
        ledger::post_many(conn, &txns).await?;
    }
    Ok(usages.len())
}

/// Step 3: consents (bulk).
async fn record_consents(conn: &mut PgConnection, fresh: &[&Event]) -> SettlementResult<()> {
    let consents: Vec<&crate::domain::event::ConsentRecorded> = fresh
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

async fn insert_usage(
    conn: &mut PgConnection,
    usages: &[(&Event, &crate::domain::event::UsagePosted)],
) -> SettlementResult<()> {
    insert_numbers(conn, usages).await?;
    let col = |f: fn(&crate::domain::event::UsagePosted) -> String| -> Vec<String> {
        usages.iter().map(|(_, u)| f(u)).collect()
    };
    let ints = |f: fn(&crate::domain::event::UsagePosted) -> i32| -> Vec<i32> {
        usages.iter().map(|(_, u)| f(u)).collect()
    };
    let call_ids = col(|u| u.call_id.clone());
    let record_ids = col(|u| u.record_id.clone());
    let merchants = col(|u| u.merchant_id.clone());
    let services = col(|u| u.service_number.clone());
    let numbers: Vec<Option<&str>> = usages.iter().map(|(_, u)| opt(&u.number)).collect();
    let fundings: Vec<&str> = usages.iter().map(|(_, u)| funding_str(u.funding)).collect();
    let codes: Vec<Option<&str>> = usages.iter().map(|(_, u)| opt(&u.code_id)).collect();
    let terms = col(|u| u.terms_id.clone());
    let prices: Vec<i64> = usages.iter().map(|(_, u)| u.price_per_minute_ore).collect();
    let steps = ints(|u| u.billing_step_seconds as i32);
    let minimums = ints(|u| u.minimum_minutes as i32);
    let started: Vec<DateTime<Utc>> = usages
        .iter()
        .map(|(_, u)| ms_to_utc(u.started_at_ms))
        .collect();
    let durations = ints(|u| u.duration_seconds as i32);
    let billed = ints(|u| u.billed_seconds as i32);
    let charges: Vec<i64> = usages.iter().map(|(_, u)| u.charge_ore).collect();
    let granted = ints(|u| u.granted_seconds as i32);
    let overruns = ints(|u| u.overrun_seconds as i32);
    let late: Vec<bool> = usages.iter().map(|(_, u)| u.late).collect();
    let posted: Vec<DateTime<Utc>> = usages.iter().map(|(e, _)| ms_to_utc(e.at_ms)).collect();
    let vat_rates = ints(|u| u.vat_rate.percent() as i32);
    let vats: Vec<i64> = usages
        .iter()
        .map(|(_, u)| u.vat_rate.vat_in_ore(u.charge_ore))
        .collect();
    sqlx::query(
        "insert into usage (call_id, record_id, merchant_id, service_number, number, funding, code_id, terms_id,
                            price_per_minute_ore, billing_step_seconds, minimum_minutes, started_at, duration_seconds,
                            billed_seconds, charge_ore, granted_seconds, overrun_seconds, late, posted_at,
                            vat_rate_percent, vat_ore)
         select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                              $8::text[], $9::bigint[], $10::int[], $11::int[], $12::timestamptz[], $13::int[],
                              $14::int[], $15::bigint[], $16::int[], $17::int[], $18::bool[], $19::timestamptz[],
                              $20::int[], $21::bigint[])
         on conflict (call_id) do nothing",
    )
    .bind(&call_ids)
    .bind(&record_ids)
    .bind(&merchants)
    .bind(&services)
    .bind(&numbers)
    .bind(&fundings)
    .bind(&codes)
    .bind(&terms)
    .bind(&prices)
    .bind(&steps)
    .bind(&minimums)
    .bind(&started)
    .bind(&durations)
    .bind(&billed)
    .bind(&charges)
    .bind(&granted)
    .bind(&overruns)
    .bind(&late)
    .bind(&posted)
    .bind(&vat_rates)
    .bind(&vats)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The postpaid calls' numbers, known to the ledger from their first call.
async fn insert_numbers(
    conn: &mut PgConnection,
    usages: &[(&Event, &crate::domain::event::UsagePosted)],
) -> SettlementResult<()> {
    let numbers: Vec<&str> = usages
        .iter()
        .filter(|(_, u)| u.funding == Funding::Postpaid && !u.number.is_empty())
        .map(|(_, u)| u.number.as_str())
        .collect();
    sqlx::query("insert into numbers (number) select * from unnest($1::text[]) on conflict (number) do nothing")
        .bind(&numbers)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn insert_consents(
    conn: &mut PgConnection,
    consents: &[&crate::domain::event::ConsentRecorded],
) -> SettlementResult<()> {
    let s = |f: fn(&crate::domain::event::ConsentRecorded) -> String| -> Vec<String> {
        consents.iter().map(|c| f(c)).collect()
    };
    let call_ids = s(|c| c.call_id.clone());
    let numbers: Vec<Option<&str>> = consents.iter().map(|c| opt(&c.number)).collect();
    let withheld: Vec<bool> = consents.iter().map(|c| c.number_withheld).collect();
    let services = s(|c| c.service_number.clone());
    let merchants = s(|c| c.merchant_id.clone());
    let fundings: Vec<&str> = consents.iter().map(|c| funding_str(c.funding)).collect();
    let codes: Vec<Option<&str>> = consents.iter().map(|c| opt(&c.code_id)).collect();
    let terms = s(|c| c.terms_id.clone());
    let prices: Vec<i64> = consents.iter().map(|c| c.price_per_minute_ore).collect();
    let minimums: Vec<i32> = consents.iter().map(|c| c.minimum_minutes as i32).collect();
    let steps: Vec<i32> = consents
        .iter()
        .map(|c| c.billing_step_seconds as i32)
        .collect();
    let fees: Vec<i64> = consents.iter().map(|c| c.reminder_fee_ore).collect();
    let age: Vec<bool> = consents.iter().map(|c| c.age_confirmed).collect();
    let own: Vec<bool> = consents.iter().map(|c| c.own_number_confirmed).collect();
    let step1: Vec<Option<DateTime<Utc>>> = consents
        .iter()
        .map(|c| (c.step1_at_ms > 0).then(|| ms_to_utc(c.step1_at_ms)))
        .collect();
    let accepted: Vec<bool> = consents.iter().map(|c| c.terms_accepted).collect();
    let step2: Vec<Option<DateTime<Utc>>> = consents
        .iter()
        .map(|c| (c.step2_at_ms > 0).then(|| ms_to_utc(c.step2_at_ms)))
        .collect();
    let clients = s(|c| c.ivr_client.clone());
    let ivrs = s(|c| c.ivr_id.clone());
    let lines = s(|c| c.line_ref.clone());
    let authorized: Vec<DateTime<Utc>> = consents
        .iter()
        .map(|c| ms_to_utc(c.authorized_at_ms))
        .collect();
    sqlx::query(
        "insert into consents (call_id, number, number_withheld, service_number, merchant_id, funding, code_id, terms_id,
                               price_per_minute_ore, minimum_minutes, billing_step_seconds, reminder_fee_ore,
                               age_confirmed, own_number_confirmed, step1_at, terms_accepted, step2_at,
                               ivr_client, ivr_id, line_ref, authorized_at)
         select * from unnest($1::text[], $2::text[], $3::bool[], $4::text[], $5::text[], $6::text[], $7::text[],
                              $8::text[], $9::bigint[], $10::int[], $11::int[], $12::bigint[], $13::bool[],
                              $14::bool[], $15::timestamptz[], $16::bool[], $17::timestamptz[], $18::text[],
                              $19::text[], $20::text[], $21::timestamptz[])
         on conflict (call_id) do nothing",
    )
    .bind(&call_ids)
    .bind(&numbers)
    .bind(&withheld)
    .bind(&services)
    .bind(&merchants)
    .bind(&fundings)
    .bind(&codes)
    .bind(&terms)
    .bind(&prices)
    .bind(&minimums)
    .bind(&steps)
    .bind(&fees)
    .bind(&age)
    .bind(&own)
    .bind(&step1)
    .bind(&accepted)
    .bind(&step2)
    .bind(&clients)
    .bind(&ivrs)
    .bind(&lines)
    .bind(&authorized)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
