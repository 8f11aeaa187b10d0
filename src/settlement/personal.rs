//! Personal data (SPEC R21, R22): who holds a number, the extract of
//! everything held about a number, erasure, and the marketing opt-out.
//!
//! **Extract** (GDPR Art. 15, "registerutdrag"): everything in the ledger
//! about the number — holder, invoices and their lines, payments, the calls
//! and the consent given for each, reminders and collection steps, plans,
//! disputes — as JSON and as readable text. Free once a year (seed 000): an
//! extract within 365 days of the previous one is marked as such.
//!
//! **Erasure** (Art. 17) is refused while a debt is open or disputed (Art.
//! 17(3)(e): legal claims), while usage is not yet invoiced, or while an
//! installment plan runs. Otherwise the holder's name, address, e-mail,
//! personal number and marketing choices are erased and the consent records
//! deleted; what bookkeeping law keeps for seven years (Bokföringslagen 7:2) —
//! invoices with their specification (the calls), payments and the ledger —
//! stays, with the number as the only identifier. The state-store account
//! (money counters and the holder's own blocks) is kept: erasing it would
//! also lift a block the holder asked for. A number that calls again is
//! registered again (seed 000).
//!
//! **Marketing** (R22): a holder may opt out of direct marketing from every
//! merchant, or give another address for it; merchants query the list.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool, Row};

use crate::domain::{Money, E164};
use crate::settlement::context::{
    audit, ensure_number, holder_for, Settlement, SettlementError, SettlementResult,
};
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
           personal_number = coalesce($6, personal_number), erased_at = null, updated_at = now()
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
    let holder = rows_json(
        &mut conn,
        "select to_jsonb(h) - 'id' from holders h join numbers n on n.holder_id = h.id where n.number = $1",
        n,
    )
    .await?;
    let numbers = rows_json(
        &mut conn,
        "select to_jsonb(n) - 'holder_id' from numbers n where n.number = $1",
        n,
    )
    .await?;
    let invoices = rows_json(
        &mut conn,
        "select to_jsonb(i) || jsonb_build_object('lines',
            (select coalesce(jsonb_agg(to_jsonb(l) - 'invoice_id' order by l.id), '[]') from invoice_lines l where l.invoice_id = i.id))
         from invoices i where i.number = $1 order by i.id",
        n,
    )
    .await?;
    let calls = rows_json(
        &mut conn,
        "select to_jsonb(u) from usage u where u.number = $1 order by u.started_at",
        n,
    )
    .await?;
    let consents = rows_json(
        &mut conn,
        "select to_jsonb(c) from consents c where c.number = $1 order by c.authorized_at",
        n,
    )
    .await?;
    let payments = rows_json(
        &mut conn,
        "select to_jsonb(p) - 'raw' || jsonb_build_object('allocated_ore', a.amount_ore, 'invoice_id', a.invoice_id)
         from payment_allocations a join payments p on p.id = a.payment_id where a.number = $1 order by p.id",
        n,
    )
    .await?;
    let steps = rows_json(
        &mut conn,
        "select to_jsonb(s) from collection_steps s join invoices i on i.id = s.invoice_id where i.number = $1 order by s.id",
        n,
    )
    .await?;
    let plans = rows_json(
        &mut conn,
        "select to_jsonb(p) from installment_plans p where p.number = $1 order by p.id",
        n,
    )
    .await?;
    let disputes = rows_json(
        &mut conn,
        "select to_jsonb(d) - 'evidence' from disputes d join invoices i on i.id = d.invoice_id where i.number = $1 order by d.id",
        n,
    )
    .await?;
    let extracts = rows_json(
        &mut conn,
        "select to_jsonb(x) from data_extracts x where x.number = $1 order by x.id",
        n,
    )
    .await?;
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

fn ore(v: &Value) -> String {
    Money::ore_unchecked(v.as_i64().unwrap_or(0)).to_swedish()
}

/// The extract as readable Swedish text.
fn readable(x: &Value, free: bool) -> String {
    let mut out = String::new();
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
    let h = &x["holder"];
    out.push_str("\nInnehavare\n");
    if h.is_null() {
        out.push_str("  inga uppgifter registrerade\n");
    } else {
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
    let section = |out: &mut String, title: &str, items: &Value, f: &dyn Fn(&Value) -> String| {
        let list = items.as_array().cloned().unwrap_or_default();
        out.push_str(&format!("\n{title} ({})\n", list.len()));
        for item in &list {
            out.push_str(&format!("  {}\n", f(item)));
        }
    };
    section(&mut out, "Fakturor", &x["invoices"], &|i| {
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
    });
    section(&mut out, "Samtal", &x["calls"], &|c| {
        format!(
            "{} till {}: {} s, {}",
            c["started_at"].as_str().unwrap_or(""),
            c["service_number"].as_str().unwrap_or(""),
            c["duration_seconds"].as_i64().unwrap_or(0),
            ore(&c["charge_ore"])
        )
    });
    section(
        &mut out,
        "Godkännanden (samtycken)",
        &x["consents"],
        &|c| {
            format!(
                "{} samtal {}: 18 år {}, eget nummer {}, pris godkänt {} (villkor {})",
                c["authorized_at"].as_str().unwrap_or(""),
                c["call_id"].as_str().unwrap_or(""),
                yes(&c["age_confirmed"]),
                yes(&c["own_number_confirmed"]),
                yes(&c["terms_accepted"]),
                c["terms_id"].as_str().unwrap_or("")
            )
        },
    );
    section(&mut out, "Betalningar", &x["payments"], &|p| {
        format!(
            "{} {}: {} (varav {} till faktura)",
            p["paid_on"].as_str().unwrap_or(""),
            p["channel"].as_str().unwrap_or(""),
            ore(&p["amount_ore"]),
            ore(&p["allocated_ore"])
        )
    });
    section(
        &mut out,
        "Påminnelser och inkasso",
        &x["collection_steps"],
        &|s| {
            format!(
                "{} {}: avgift {}",
                s["on_date"].as_str().unwrap_or(""),
                s["step"].as_str().unwrap_or(""),
                ore(&s["fee_ore"])
            )
        },
    );
    section(
        &mut out,
        "Avbetalningsplaner",
        &x["installment_plans"],
        &|p| {
            format!(
                "{}: {} per månad, status {}",
                ore(&p["total_ore"]),
                ore(&p["monthly_ore"]),
                p["status"].as_str().unwrap_or("")
            )
        },
    );
    section(&mut out, "Invändningar", &x["disputes"], &|d| {
        format!(
            "{}: {} ({})",
            d["opened_at"].as_str().unwrap_or(""),
            d["reason"].as_str().unwrap_or(""),
            d["status"].as_str().unwrap_or("")
        )
    });
    out
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
}

/// Erases what may be erased about a number (R21); refuses while a debt is
/// open or disputed.
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
    let open: i64 =
        sqlx::query_scalar("select count(*) from invoices where number = $1 and status = 'open'")
            .bind(n)
            .fetch_one(&mut *tx)
            .await?;
    let disputed: i64 = sqlx::query_scalar(
        "select count(*) from disputes d join invoices i on i.id = d.invoice_id where i.number = $1 and d.status = 'open'",
    )
    .bind(n)
    .fetch_one(&mut *tx)
    .await?;
    let uninvoiced: i64 =
        sqlx::query_scalar("select count(*) from usage where number = $1 and funding = 'postpaid' and invoice_id is null")
            .bind(n)
            .fetch_one(&mut *tx)
            .await?;
    let plans: i64 = sqlx::query_scalar(
        "select count(*) from installment_plans where number = $1 and status = 'active'",
    )
    .bind(n)
    .fetch_one(&mut *tx)
    .await?;
    if open + disputed + uninvoiced + plans > 0 {
        return Err(SettlementError::Refused(format!(
            "cannot erase {}: {open} open invoice(s), {disputed} open dispute(s), {uninvoiced} call(s) not yet invoiced, {plans} active plan(s) (GDPR Art. 17(3)(e))",
            number.masked()
        )));
    }
    let account = s.store.account(&number).await?;
    if account.pending > Money::ZERO
        || account.unbilled > Money::ZERO
        || account.invoiced_unpaid > Money::ZERO
    {
        return Err(SettlementError::Refused(format!(
            "cannot erase {}: the state store still holds money for it (calls in progress or not yet settled)",
            number.masked()
        )));
    }
    let holder_id: Option<i64> =
        sqlx::query_scalar("select holder_id from numbers where number = $1")
            .bind(n)
            .fetch_one(&mut *tx)
            .await?;
    let mut holder_erased = false;
    if let Some(id) = holder_id {
        sqlx::query(
            "update holders set name = null, address_lines = '{}', email = null, personal_number = null,
               marketing_opt_out = false, marketing_address = null, erased_at = now(), updated_at = now()
             where id = $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        holder_erased = true;
    }
    let consents_deleted = sqlx::query("delete from consents where number = $1")
        .bind(n)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query("delete from data_extracts where number = $1")
        .bind(n)
        .execute(&mut *tx)
        .await?;
    audit(
        &mut tx,
        actor,
        "erasure",
        n,
        json!({ "holder_erased": holder_erased, "consents_deleted": consents_deleted }),
    )
    .await?;
    tx.commit().await?;
    Ok(Erasure {
        number: n.to_string(),
        holder_erased,
        consents_deleted,
        kept: vec![
            "invoices, their call specification and payments: bookkeeping records, kept until the end of the 7th year after the financial year (Bokföringslagen 7 kap. 2 §)".into(),
            "the ledger entries: bookkeeping records, kept likewise".into(),
            "the number's state-store account (money counters and the holder's own blocks): erasing it would lift a block the holder asked for".into(),
        ],
    })
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
