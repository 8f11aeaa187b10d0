//! Personal data (SPEC R21, R22): who holds a number, the extract of
//! everything held about a number, erasure, and the marketing opt-out.
//!
//! **Extract** (GDPR Art. 15, "registerutdrag"): everything in the ledger
//! about the number — holder, invoices and their lines, payments (each once,
//! with where its money went), what we owe the holder (credit), the calls
//! and the consent given for each, reminders and collection steps, plans,
//! disputes — as JSON and as readable text. Free once a year (seed 000): an
//! extract within 365 days of the previous one is marked as such.
//!
//! **Erasure** (Art. 17) is of the holder: every number of the holder is
//! checked and erased together. It is refused while a debt is open, held or
//! disputed (Art. 17(3)(e): legal claims), while usage is not yet invoiced,
//! while an installment plan runs, and while we owe the holder money (an
//! overpayment held as credit: refunding it needs the holder's name and
//! address). Otherwise every place that holds personal data is cleared:
//! the holder's name, address, e-mail, personal number and marketing
//! choices; the consent records; the contents of the number's events and
//! dead letters; dispute reasons, resolutions and evidence; plan notes; the
//! payer's name, alias, address and message on its payments; audit details;
//! prepaid receipt addresses; the number on prepaid calls; applied store
//! operations; earlier extracts. What bookkeeping law keeps for seven years
//! (Bokföringslagen 7 kap. 2 §) stays with the number as the only
//! identifier, and `KEPT` names each such table and why; the retention job
//! (`retention.rs`) deletes it when the seven years are over. The
//! state-store account (money counters and the holder's own blocks) is kept:
//! erasing it would also lift a block the holder asked for. A number that
//! calls again is registered again (seed 000).
//!
//! **Marketing** (R22): a holder may opt out of direct marketing from every
//! merchant, or give another address for it; merchants query the list.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool, Row};

use crate::domain::event::ids;
use crate::domain::{Money, E164};
use crate::settlement::context::{
    audit, ensure_number, holder_for, Settlement, SettlementError, SettlementResult,
};
use crate::settlement::ledger::{self, account};
use crate::store::Store;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderInput {
    pub number: String,
    pub name: Option<String>,
    pub address_lines: Vec<String>,
    pub email: Option<String>,
    /// "email" or "paper" (R13).
    pub invoice_delivery: String,
    /// 12 digits (YYYYMMDDNNNC); optional.
    pub personal_number: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Holder {
    pub id: i64,
    pub customer_number: String,
    pub name: Option<String>,
    pub address_lines: Vec<String>,
    pub email: Option<String>,
    pub invoice_delivery: String,
    pub marketing_opt_out: bool,
    pub marketing_address: Option<String>,
    pub numbers: Vec<String>,
}

fn valid_personal_number(p: &str) -> bool {
    // YYYYMMDDNNNC; the check digit is mod 10 over the 10-digit form (sweden.md §5.5).
    p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit()) && crate::domain::luhn::is_valid(&p[2..])
}

/// Masks a personal number for display outside the extract: "19640823-****".
pub fn mask_personal_number(p: &str) -> String {
    if p.len() == 12 {
        format!("{}-****", &p[..8])
    } else {
        "****".into()
    }
}

/// Registers or updates the holder of a number (from the directory import or
/// customer service).
pub async fn upsert_holder(
    conn: &mut PgConnection,
    input: &HolderInput,
    actor: &str,
) -> SettlementResult<Holder> {
    let number =
        E164::parse(&input.number).map_err(|e| SettlementError::Invalid(format!("number: {e}")))?;
    if !matches!(input.invoice_delivery.as_str(), "email" | "paper") {
        return Err(SettlementError::Invalid(
            "invoice_delivery is email or paper".into(),
        ));
    }
    if input.invoice_delivery == "email" && input.email.as_deref().is_none_or(|e| !e.contains('@'))
    {
        return Err(SettlementError::Invalid(
            "e-mail invoices need an e-mail address".into(),
        ));
    }
    if let Some(p) = &input.personal_number {
        if !valid_personal_number(p) {
            return Err(SettlementError::Invalid(
                "personal_number must be 12 digits with a valid check digit".into(),
            ));
        }
    }
    let id = holder_for(conn, number.as_str()).await?;
    sqlx::query(
        "update holders set name = $2, address_lines = $3, email = $4, invoice_delivery = $5,
           personal_number = coalesce($6, personal_number), erased_at = null, updated_at = now(),
           -- A new e-mail address is tried again; the same one stays marked bouncing (R13).
           email_bounced_at = case when email is distinct from $4 then null else email_bounced_at end
         where id = $1",
    )
    .bind(id)
    .bind(&input.name)
    .bind(&input.address_lines)
    .bind(&input.email)
    .bind(&input.invoice_delivery)
    .bind(&input.personal_number)
    .execute(&mut *conn)
    .await?;
    audit(
        conn,
        actor,
        "holder_upserted",
        number.as_str(),
        json!({ "holder_id": id, "delivery": input.invoice_delivery }),
    )
    .await?;
    holder(conn, id).await
}

pub async fn holder(conn: &mut PgConnection, id: i64) -> SettlementResult<Holder> {
    let r = sqlx::query(
        "select id, customer_number, name, address_lines, email, invoice_delivery, marketing_opt_out, marketing_address
         from holders where id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| SettlementError::NotFound(format!("holder {id}")))?;
    let numbers: Vec<String> =
        sqlx::query_scalar("select number from numbers where holder_id = $1 order by number")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
    Ok(Holder {
        id: r.get("id"),
        customer_number: r.get("customer_number"),
        name: r.get("name"),
        address_lines: r.get("address_lines"),
        email: r.get("email"),
        invoice_delivery: r.get("invoice_delivery"),
        marketing_opt_out: r.get("marketing_opt_out"),
        marketing_address: r.get("marketing_address"),
        numbers,
    })
}

/// R22: opt out of (or back into) direct marketing, or give another address for it.
pub async fn set_marketing(
    conn: &mut PgConnection,
    number: &str,
    opt_out: bool,
    address: Option<&str>,
    actor: &str,
) -> SettlementResult<Holder> {
    let number =
        E164::parse(number).map_err(|e| SettlementError::Invalid(format!("number: {e}")))?;
    let id = holder_for(conn, number.as_str()).await?;
    sqlx::query("update holders set marketing_opt_out = $2, marketing_address = $3, updated_at = now() where id = $1")
        .bind(id)
        .bind(opt_out)
        .bind(address)
        .execute(&mut *conn)
        .await?;
    audit(
        conn,
        actor,
        "marketing_preference",
        number.as_str(),
        json!({ "opt_out": opt_out, "other_address": address.is_some() }),
    )
    .await?;
    holder(conn, id).await
}

/// R22: the numbers whose holders want no direct marketing, for merchants.
pub async fn marketing_opt_outs(pool: &PgPool) -> SettlementResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "select n.number from numbers n join holders h on h.id = n.holder_id
         where h.marketing_opt_out and h.erased_at is null order by n.number",
    )
    .fetch_all(pool)
    .await?)
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Extract {
    pub number: String,
    /// False when another extract was delivered within the last 365 days.
    pub free: bool,
    pub json: Value,
    pub text: String,
}

async fn rows_json(
    conn: &mut PgConnection,
    sql: &'static str,
    number: &str,
) -> SettlementResult<Vec<Value>> {
    let rows: Vec<Value> = sqlx::query_scalar(sql)
        .bind(number)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows)
}

/// Everything held about a number (R21).
pub async fn extract(
    pool: &PgPool,
    number: &str,
    requested_by: &str,
    now: DateTime<Utc>,
) -> SettlementResult<Extract> {
    let number =
        E164::parse(number).map_err(|e| SettlementError::Invalid(format!("number: {e}")))?;
    let n = number.as_str();
    let mut conn = pool.acquire().await?;
    let previous: Option<DateTime<Utc>> =
        sqlx::query_scalar("select max(created_at) from data_extracts where number = $1")
            .bind(n)
            .fetch_one(&mut *conn)
            .await?;
    let free = previous.is_none_or(|p| now - p >= Duration::days(365));
    let PersonalRecords {
        holder,
        numbers,
        calls,
        consents,
        extracts,
    } = personal_records(&mut conn, n).await?;
    let LedgerRecords {
        invoices,
        payments,
        credit_ore,
        steps,
        plans,
        disputes,
    } = ledger_records(&mut conn, n).await?;
    let json = json!({
        "number": n,
        "generated_at": now,
        "controller": "the invoicing company (see invoices for its name and address)",
        "purposes": ["invoicing the holder for calls made from the number (contract)",
                     "bookkeeping (legal obligation, kept 7 years)",
                     "collection of unpaid invoices (legitimate interest)"],
        "sources": ["the number directory (holder)", "the IVR platforms and merchants (calls, consent)", "banks and Swish (payments)"],
        "holder": holder.first().cloned().unwrap_or(Value::Null),
        "number_record": numbers.first().cloned().unwrap_or(Value::Null),
        "invoices": invoices,
        "calls": calls,
        "consents": consents,
        "payments": payments,
        "credit_ore": credit_ore,
        "collection_steps": steps,
        "installment_plans": plans,
        "disputes": disputes,
        "previous_extracts": extracts,
    });
    let text = readable(&json, free);
    sqlx::query("insert into data_extracts (number, requested_by, created_at) values ($1, $2, $3)")
        .bind(n)
        .bind(requested_by)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    audit(
        &mut conn,
        requested_by,
        "data_extract",
        n,
        json!({ "free": free }),
    )
    .await?;
    Ok(Extract {
        number: n.to_string(),
        free,
        json,
        text,
    })
}

/// What an extract shows about the person: holder, number, calls,
/// consents and earlier extracts, each row as JSON.
struct PersonalRecords {
    holder: Vec<Value>,
    numbers: Vec<Value>,
    calls: Vec<Value>,
    consents: Vec<Value>,
    extracts: Vec<Value>,
}

async fn personal_records(conn: &mut PgConnection, n: &str) -> SettlementResult<PersonalRecords> {
    let holder = rows_json(
        &mut *conn,
        "select to_jsonb(h) - 'id' from holders h join numbers n on n.holder_id = h.id where n.number = $1",
        n,
    )
    .await?;
    let numbers = rows_json(
        &mut *conn,
        "select to_jsonb(n) - 'holder_id' from numbers n where n.number = $1",
        n,
    )
    .await?;
    let calls = rows_json(
        &mut *conn,
        "select to_jsonb(u) from usage u where u.number = $1 order by u.started_at",
        n,
    )
    .await?;
    let consents = rows_json(
        &mut *conn,
        "select to_jsonb(c) from consents c where c.number = $1 order by c.authorized_at",
        n,
    )
    .await?;
    let extracts = rows_json(
        &mut *conn,
        "select to_jsonb(x) from data_extracts x where x.number = $1 order by x.id",
        n,
    )
    .await?;
    Ok(PersonalRecords {
        holder,
        numbers,
        calls,
        consents,
        extracts,
    })
}

/// What an extract shows from the books: invoices with their lines,
/// payments (each once, with where its money went), what we owe the holder,
/// collection steps, plans and disputes.
struct LedgerRecords {
    invoices: Vec<Value>,
    payments: Vec<Value>,
    credit_ore: i64,
    steps: Vec<Value>,
    plans: Vec<Value>,
    disputes: Vec<Value>,
}

async fn ledger_records(conn: &mut PgConnection, n: &str) -> SettlementResult<LedgerRecords> {
    let invoices = rows_json(
        &mut *conn,
        "select to_jsonb(i) || jsonb_build_object('lines',
            (select coalesce(jsonb_agg(to_jsonb(l) - 'invoice_id' order by l.id), '[]') from invoice_lines l where l.invoice_id = i.id))
         from invoices i where i.number = $1 order by i.id",
        n,
    )
    .await?;
    // Each payment once, with where its money went (an invoice, the credit).
    let payments = rows_json(
        &mut *conn,
        "select to_jsonb(p) - 'raw' || jsonb_build_object('allocations',
            (select jsonb_agg(jsonb_build_object('kind', a.kind, 'invoice_id', a.invoice_id, 'amount_ore', a.amount_ore)
                              order by a.id)
             from payment_allocations a where a.payment_id = p.id and a.number = $1))
         from payments p
         where p.id in (select a.payment_id from payment_allocations a where a.number = $1)
         order by p.id",
        n,
    )
    .await?;
    // What we owe the holder: overpayments not yet used or refunded.
    let credit_ore = -ledger::balance(&mut *conn, &account::caller_credit(n)).await?;
    let steps = rows_json(
        &mut *conn,
        "select to_jsonb(s) from collection_steps s join invoices i on i.id = s.invoice_id where i.number = $1 order by s.id",
        n,
    )
    .await?;
    let plans = rows_json(
        &mut *conn,
        "select to_jsonb(p) from installment_plans p where p.number = $1 order by p.id",
        n,
    )
    .await?;
    let disputes = rows_json(
        &mut *conn,
        "select to_jsonb(d) - 'evidence' from disputes d join invoices i on i.id = d.invoice_id where i.number = $1 order by d.id",
        n,
    )
    .await?;
    Ok(LedgerRecords {
        invoices,
        payments,
        credit_ore,
        steps,
        plans,
        disputes,
    })
}

fn ore(v: &Value) -> String {
    Money::ore_unchecked(v.as_i64().unwrap_or(0)).to_swedish()
}

/// The extract as readable Swedish text.
fn readable(x: &Value, free: bool) -> String {
    let mut out = String::new();
    readable_header(&mut out, x, free);
    readable_holder(&mut out, &x["holder"]);
    section(&mut out, "Fakturor", &x["invoices"], &invoice_line);
    section(&mut out, "Samtal", &x["calls"], &call_line);
    section(
        &mut out,
        "Godkännanden (samtycken)",
        &x["consents"],
        &consent_line,
    );
    section(&mut out, "Betalningar", &x["payments"], &payment_line);
    let credit = x["credit_ore"].as_i64().unwrap_or(0);
    out.push_str(&format!(
        "\nTillgodohavande: {}{}\n",
        ore(&x["credit_ore"]),
        if credit > 0 {
            " (överskjutande betalning; räknas av på nästa faktura eller betalas tillbaka)"
        } else {
            ""
        }
    ));
    section(
        &mut out,
        "Påminnelser och inkasso",
        &x["collection_steps"],
        &step_line,
    );
    section(
        &mut out,
        "Avbetalningsplaner",
        &x["installment_plans"],
        &plan_line,
    );
    section(&mut out, "Invändningar", &x["disputes"], &dispute_line);
    out
}

/// Whose extract, when, and why the data is kept.
fn readable_header(out: &mut String, x: &Value, free: bool) {
    let number = x["number"].as_str().unwrap_or("");
    let national = E164::parse(number)
        .map(|n| n.national_display())
        .unwrap_or_default();
    out.push_str(&format!("Registerutdrag för {national} ({number})\n"));
    out.push_str(&format!(
        "Upprättat {}\n",
        x["generated_at"].as_str().unwrap_or("")
    ));
    if !free {
        out.push_str("Ett utdrag har redan lämnats under de senaste tolv månaderna.\n");
    }
    out.push_str("\nÄndamål: fakturering av samtal från numret, bokföring (sparas i 7 år), indrivning av obetalda fakturor.\n");
}

/// The holder's details, or that none are on file.
fn readable_holder(out: &mut String, h: &Value) {
    out.push_str("\nInnehavare\n");
    if h.is_null() {
        out.push_str("  inga uppgifter registrerade\n");
        return;
    }
    out.push_str(&format!(
        "  kundnummer: {}\n",
        h["customer_number"].as_str().unwrap_or("")
    ));
    out.push_str(&format!(
        "  namn: {}\n",
        h["name"].as_str().unwrap_or("(saknas)")
    ));
    let addr: Vec<&str> = h["address_lines"]
        .as_array()
        .map(|a| a.iter().filter_map(|l| l.as_str()).collect())
        .unwrap_or_default();
    out.push_str(&format!(
        "  adress: {}\n",
        if addr.is_empty() {
            "(saknas)".into()
        } else {
            addr.join(", ")
        }
    ));
    out.push_str(&format!(
        "  e-post: {}\n",
        h["email"].as_str().unwrap_or("(saknas)")
    ));
    out.push_str(&format!(
        "  personnummer: {}\n",
        h["personal_number"].as_str().unwrap_or("(saknas)")
    ));
    out.push_str(&format!(
        "  fakturor skickas med: {}\n",
        h["invoice_delivery"].as_str().unwrap_or("")
    ));
    out.push_str(&format!(
        "  direktreklam: {}\n",
        if h["marketing_opt_out"].as_bool().unwrap_or(false) {
            "spärrad"
        } else {
            "tillåten"
        }
    ));
}

/// A titled list with its count, one line per item.
fn section(out: &mut String, title: &str, items: &Value, f: &dyn Fn(&Value) -> String) {
    let list = items.as_array().cloned().unwrap_or_default();
    out.push_str(&format!("\n{title} ({})\n", list.len()));
    for item in &list {
        out.push_str(&format!("  {}\n", f(item)));
    }
}

fn invoice_line(i: &Value) -> String {
    format!(
        "{} {} OCR {}: {} att betala, {} betalt, status {}, förfallodag {}",
        i["issue_date"].as_str().unwrap_or(""),
        i["kind"].as_str().unwrap_or(""),
        i["ocr"].as_str().unwrap_or(""),
        ore(&i["total_ore"]),
        ore(&i["paid_ore"]),
        i["status"].as_str().unwrap_or(""),
        i["due_date"].as_str().unwrap_or("")
    )
}

fn call_line(c: &Value) -> String {
    format!(
        "{} till {}: {} s, {}",
        c["started_at"].as_str().unwrap_or(""),
        c["service_number"].as_str().unwrap_or(""),
        c["duration_seconds"].as_i64().unwrap_or(0),
        ore(&c["charge_ore"])
    )
}

fn consent_line(c: &Value) -> String {
    format!(
        "{} samtal {}: 18 år {}, eget nummer {}, pris godkänt {} (villkor {})",
        c["authorized_at"].as_str().unwrap_or(""),
        c["call_id"].as_str().unwrap_or(""),
        yes(&c["age_confirmed"]),
        yes(&c["own_number_confirmed"]),
        yes(&c["terms_accepted"]),
        c["terms_id"].as_str().unwrap_or("")
    )
}

/// A payment and where its money went.
fn payment_line(p: &Value) -> String {
    let went: Vec<String> = p["allocations"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|a| match a["kind"].as_str() {
                    Some("invoice") => format!(
                        "{} till faktura {}",
                        ore(&a["amount_ore"]),
                        a["invoice_id"].as_i64().unwrap_or(0)
                    ),
                    Some("credit") => format!("{} tillgodo", ore(&a["amount_ore"])),
                    _ => ore(&a["amount_ore"]),
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "{} {}: {} ({})",
        p["paid_on"].as_str().unwrap_or(""),
        p["channel"].as_str().unwrap_or(""),
        ore(&p["amount_ore"]),
        went.join(", ")
    )
}

fn step_line(s: &Value) -> String {
    format!(
        "{} {}: avgift {}",
        s["on_date"].as_str().unwrap_or(""),
        s["step"].as_str().unwrap_or(""),
        ore(&s["fee_ore"])
    )
}

fn plan_line(p: &Value) -> String {
    format!(
        "{}: {} per månad, status {}",
        ore(&p["total_ore"]),
        ore(&p["monthly_ore"]),
        p["status"].as_str().unwrap_or("")
    )
}

fn dispute_line(d: &Value) -> String {
    format!(
        "{}: {} ({})",
        d["opened_at"].as_str().unwrap_or(""),
        d["reason"].as_str().unwrap_or(""),
        d["status"].as_str().unwrap_or("")
    )
}

fn yes(v: &Value) -> &'static str {
    if v.as_bool().unwrap_or(false) {
        "ja"
    } else {
        "nej"
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Erasure {
    pub number: String,
    pub holder_erased: bool,
    pub consents_deleted: u64,
    /// What is kept, and why.
    pub kept: Vec<String>,
    /// The tables named in `kept`: the only ones that may still hold the number.
    pub kept_tables: Vec<&'static str>,
}

/// What erasure keeps (table names, then why), for the holder and for the
/// check that no other table holds the number afterwards.
const KEPT: &[(&[&str], &str)] = &[
    (
        &["numbers"],
        "the number itself: the identifier the kept records below refer to",
    ),
    (
        &["invoices", "invoice_lines", "documents", "collection_steps"],
        "the invoices, reminders and collection demands as issued, with their call specification: verifikationer (Bokföringslagen 5 kap. 6–7 §§), kept until the end of the 7th year after their year (7 kap. 2 §) and then deleted by the retention job; the copies sent (documents) keep the name and address they were sent to",
    ),
    (
        &["usage"],
        "the calls on those invoices (the call specification), kept likewise; prepaid calls lose the number",
    ),
    (
        &["payments", "payment_allocations"],
        "the payments and what they paid, kept likewise; the payer's name, alias, address and free text are removed",
    ),
    (
        &["ledger_entries"],
        "the ledger (the number names the caller's accounts), kept likewise",
    ),
    (
        &["installment_plans", "installment_items", "disputes"],
        "the history of the claims (plans, disputes and their outcome), kept likewise; free texts and the consent evidence are removed",
    ),
    (
        &["events"],
        "the processing history (behandlingshistorik, Bokföringslagen 5 kap. 11 §): the event ids stay, so that no event is ever booked twice; their contents are replaced by a redaction mark",
    ),
    (
        &["audit_log"],
        "who did what and when (GDPR Art. 5(2) accountability, this erasure included), kept likewise; the details are removed",
    ),
    (
        &["store_ops"],
        "account changes not yet pushed to the state store, until they are (applied ones are deleted)",
    ),
];

/// The contents an erased event or dead letter keeps.
const REDACTED: &str = "erased (R21)";

/// Erases what may be erased about the holder of a number (R21, GDPR Art.
/// 17): every number of the holder is checked and erased together, since
/// the holder's name and address are shared by them. Refused while a debt
/// is open or disputed (Art. 17(3)(e)), while usage is not yet invoiced or a
/// plan runs, and while we owe the holder money (an overpayment held as
/// credit: its refund needs the holder's name and address). See `KEPT`
/// for what stays.
pub async fn erase<S: Store>(
    s: &Settlement<S>,
    number: &str,
    actor: &str,
) -> SettlementResult<Erasure> {
    let number =
        E164::parse(number).map_err(|e| SettlementError::Invalid(format!("number: {e}")))?;
    let n = number.as_str();
    let mut tx = s.pool.begin().await?;
    ensure_number(&mut tx, n).await?;
    let (holder_id, numbers) = holder_numbers(&mut tx, n).await?;
    check_erasable(s, &mut tx, &number, &numbers).await?;
    let holder_erased = match holder_id {
        Some(id) => {
            erase_holder(&mut tx, id, s.now()).await?;
            true
        }
        None => false,
    };
    let redacted = json!({ "redacted": REDACTED });
    redact_events(&mut tx, &numbers, &redacted).await?;
    let consents_deleted = redact_records(&mut tx, &numbers, &redacted).await?;
    audit(
        &mut tx,
        actor,
        "erasure",
        n,
        json!({ "holder_erased": holder_erased, "consents_deleted": consents_deleted,
                "numbers": numbers.len() }),
    )
    .await?;
    tx.commit().await?;
    let mut kept: Vec<String> = KEPT
        .iter()
        .map(|(tables, why)| format!("{}: {why}", tables.join(", ")))
        .collect();
    kept.push("the number's state-store account (money counters and the holder's own blocks): erasing it would lift a block the holder asked for".into());
    Ok(Erasure {
        number: n.to_string(),
        holder_erased,
        consents_deleted,
        kept,
        kept_tables: KEPT
            .iter()
            .flat_map(|(tables, _)| tables.iter().copied())
            .collect(),
    })
}

/// The number's holder (locked), and every number of that holder (locked):
/// they are erased together. Without a holder, just the number.
async fn holder_numbers(
    tx: &mut PgConnection,
    n: &str,
) -> SettlementResult<(Option<i64>, Vec<String>)> {
    let holder_id: Option<i64> =
        sqlx::query_scalar("select holder_id from numbers where number = $1 for update")
            .bind(n)
            .fetch_one(&mut *tx)
            .await?;
    let numbers: Vec<String> = match holder_id {
        Some(id) => {
            sqlx::query_scalar(
                "select number from numbers where holder_id = $1 order by number for update",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?
        }
        None => vec![n.to_string()],
    };
    Ok((holder_id, numbers))
}

/// Refuses the erasure while a debt is open or disputed, usage is not yet
/// invoiced or a plan runs (GDPR Art. 17(3)(e)), while we owe the holder
/// money, or while the state store still holds money for a number.
async fn check_erasable<S: Store>(
    s: &Settlement<S>,
    tx: &mut PgConnection,
    number: &E164,
    numbers: &[String],
) -> SettlementResult<()> {
    let (open, disputed, uninvoiced, plans): (i64, i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from invoices where number = any($1) and status in ('open', 'held')),
                (select count(*) from disputes d join invoices i on i.id = d.invoice_id
                  where i.number = any($1) and d.status = 'open'),
                (select count(*) from usage where number = any($1) and funding = 'postpaid' and invoice_id is null),
                (select count(*) from installment_plans where number = any($1) and status = 'active')",
    )
    .bind(numbers)
    .fetch_one(&mut *tx)
    .await?;
    if open + disputed + uninvoiced + plans > 0 {
        return Err(SettlementError::Refused(format!(
            "cannot erase {}: {open} open invoice(s), {disputed} open dispute(s), {uninvoiced} call(s) not yet invoiced, {plans} active plan(s) (GDPR Art. 17(3)(e))",
            number.masked()
        )));
    }
    let mut credit_ore = 0;
    for num in numbers {
        credit_ore -= ledger::balance(&mut *tx, &account::caller_credit(num)).await?;
    }
    if credit_ore > 0 {
        return Err(SettlementError::Refused(format!(
            "cannot erase {}: we owe the holder {} (an overpayment held as credit); refund it or let an invoice use it first, since the refund needs the holder's name and address",
            number.masked(),
            Money::ore_unchecked(credit_ore).to_swedish()
        )));
    }
    for num in numbers {
        let parsed = E164::parse(num).map_err(|e| SettlementError::Invalid(e.to_string()))?;
        let account = s.store.account(&parsed).await?;
        if account.pending > Money::ZERO
            || account.unbilled > Money::ZERO
            || account.invoiced_unpaid > Money::ZERO
        {
            return Err(SettlementError::Refused(format!(
                "cannot erase {}: the state store still holds money for it (calls in progress or not yet settled)",
                parsed.masked()
            )));
        }
    }
    Ok(())
}

/// The holder's personal details, cleared; the row stays (`erased_at`).
async fn erase_holder(tx: &mut PgConnection, id: i64, now: DateTime<Utc>) -> SettlementResult<()> {
    sqlx::query(
        "update holders set name = null, address_lines = '{}', email = null, personal_number = null,
           marketing_opt_out = false, marketing_address = null, email_bounced_at = null,
           erased_at = $2, updated_at = $2
         where id = $1",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The events and dead letters that carry the numbers, redacted; a prepaid
/// order's receipt address cleared.
async fn redact_events(
    tx: &mut PgConnection,
    numbers: &[String],
    redacted: &serde_json::Value,
) -> SettlementResult<()> {
    // Events keyed by the number's calls (collected before the consents go).
    let call_ids: Vec<String> = sqlx::query_scalar(
        "select call_id from usage where number = any($1) union select call_id from consents where number = any($1)",
    )
    .bind(numbers)
    .fetch_all(&mut *tx)
    .await?;
    let call_event_ids: Vec<String> = call_ids
        .iter()
        .flat_map(|c| {
            [
                ids::usage(c),
                ids::consent(c),
                ids::expired(c),
                ids::voided(c),
                ids::prepaid_debit(c),
            ]
        })
        .collect();
    sqlx::query("update events set payload = $2 where event_id = any($1)")
        .bind(&call_event_ids)
        .bind(redacted)
        .execute(&mut *tx)
        .await?;
    for num in numbers {
        for prefix in ids::number_prefixes(num) {
            // The predicate of the partial index on the rare kinds' ids (migration 0006).
            sqlx::query(
                "update events set payload = $2
                 where event_id like $1 and kind not in ('usage_posted', 'consent_recorded')",
            )
            .bind(format!("{}%", like_escape(&prefix)))
            .bind(redacted)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("update dead_letters set payload = $2 where strpos(payload, $1) > 0")
            .bind(num)
            .bind(REDACTED)
            .execute(&mut *tx)
            .await?;
        // A prepaid order's receipt address may be the number.
        let national = E164::parse(num)
            .map(|e| e.national_display())
            .unwrap_or_default();
        sqlx::query(
            "update prepaid_orders set deliver_to = '' where deliver_to = $1 or deliver_to = $2",
        )
        .bind(num)
        .bind(&national)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// The records that stay for bookkeeping lose what identifies the holder;
/// consents go. Returns how many consents were deleted.
async fn redact_records(
    tx: &mut PgConnection,
    numbers: &[String],
    redacted: &serde_json::Value,
) -> SettlementResult<u64> {
    let consents_deleted = sqlx::query("delete from consents where number = any($1)")
        .bind(numbers)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    // Prepaid calls are not on any invoice: the number is not bookkeeping there.
    sqlx::query("update usage set number = null where number = any($1) and funding = 'prepaid'")
        .bind(numbers)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "update disputes set evidence = '[]'::jsonb, reason = $2,
                resolution = case when resolution is null then null else $2 end
         where invoice_id in (select id from invoices where number = any($1))",
    )
    .bind(numbers)
    .bind(REDACTED)
    .execute(&mut *tx)
    .await?;
    sqlx::query("update installment_plans set note = '' where number = any($1)")
        .bind(numbers)
        .execute(&mut *tx)
        .await?;
    // The payments stay (with their amount, date, channel and reference);
    // who paid, from where and with what message goes.
    sqlx::query(
        "update payments set payer_name = null, payer_alias = null,
                raw = raw - array['payer_bankgiro', 'payer_name', 'payer_extra_name', 'address', 'postcode',
                                  'city', 'country_code', 'info', 'payerAlias', 'payer_alias', 'payerSSN',
                                  'message']
         where id in (select payment_id from payment_allocations where number = any($1))",
    )
    .bind(numbers)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "update audit_log set details = $2
         where subject = any($1)
            or exists (select 1 from unnest($1::text[]) as m(num) where strpos(details::text, m.num) > 0)",
    )
    .bind(numbers)
    .bind(redacted)
    .execute(&mut *tx)
    .await?;
    sqlx::query("delete from store_ops where number = any($1) and applied_at is not null")
        .bind(numbers)
        .execute(&mut *tx)
        .await?;
    sqlx::query("delete from data_extracts where number = any($1)")
        .bind(numbers)
        .execute(&mut *tx)
        .await?;
    Ok(consents_deleted)
}

/// `text` as a literal LIKE pattern (the default escape character is `\`).
fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_numbers_are_checked_and_masked() {
        assert!(valid_personal_number("196408233234"));
        assert!(!valid_personal_number("196408233235"));
        assert!(!valid_personal_number("6408233234"));
        assert_eq!(mask_personal_number("196408233234"), "19640823-****");
    }
}
