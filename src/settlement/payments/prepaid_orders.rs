//! Prepaid-code orders (SPEC R17: a code is "bought by Swish or by a bankgiro
//! deposit"): an order gets its own OCR reference, the buyer pays with it,
//! and the payment (see `payments`) marks the order paid.
//!
//! A **top-up** order names an existing code: once paid, a `top_up_prepaid`
//! store operation adds the amount to it (the projector applies it,
//! idempotent by `order-<id>`). An **issue** order gets its code only when the
//! buyer picks it up ([`pick_up`]): the state store draws the code, and it is
//! returned in that one response and never stored anywhere (stores keep its
//! keyed hash only).
//!
//! Money: the payment credits `prepaid_sales`; the gateway's `PrepaidCredited`
//! event for the issue or top-up (ingested by `ingest`) debits it and credits
//! the code's `prepaid:<code_id>` account, so `prepaid_sales` holds exactly
//! what was paid for codes not yet picked up.
//!
//! Trade-offs. Order OCRs are `9 000 000 000 + id` with a length and check
//! digit, so they never collide with invoice OCRs (invoice ids plus a small
//! offset), but they are not secret: [`pick_up`] must only be reachable by
//! the buyer (the API that calls it authenticates them, or delivers the code
//! to `deliver_to` itself). If the process dies between the store issuing the
//! code and the response reaching the buyer, the code cannot be shown again
//! (the store's issue is idempotent per order, so no second code is made);
//! the next pick-up records the code id and answers `AlreadyPickedUp`, and
//! support resolves it (e.g. a new order whose amount is refunded).

use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::domain::{CodeHasher, CodeId, Money, PrepaidCode, Reference};
use crate::settlement::context::{
    audit, queue_store_op, Settlement, SettlementError, SettlementResult,
};
use crate::settlement::formats::ocr;
use crate::store::{IssueOutcome, Store};

/// Order OCR references are this plus the order id (plus length and check digit).
pub const ORDER_OCR_BASE: u64 = 9_000_000_000;
/// The largest amount one order may carry (the state store's limit for a
/// prepaid credit); a larger payment goes to manual matching.
pub const MAX_ORDER_AMOUNT: Money = Money::sek(100_000);
const MAX_DELIVER_TO_LEN: usize = 200;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderKind {
    /// A new code, issued when picked up.
    Issue,
    /// More balance on an existing code.
    TopUp { code_id: CodeId },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    pub id: i64,
    /// The reference the buyer pays with (bankgiro OCR or Swish payee reference).
    pub ocr: String,
    pub kind: OrderKind,
    /// For an issue order: the secret needed to pick the code up, shown only
    /// here (the ledger keeps its SHA-256). Empty for a top-up.
    pub pickup_secret: String,
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How an order is named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderRef {
    Id(i64),
    Ocr(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PickedUp {
    /// The code, in clear, for this response only.
    Issued {
        order_id: i64,
        code: PrepaidCode,
        code_id: CodeId,
        balance: Money,
    },
    /// Picked up before: the code cannot be shown again.
    AlreadyPickedUp { code_id: CodeId },
}

/// The OCR reference of order `id`.
pub fn order_ocr(id: i64) -> String {
    ocr::ocr_for(ORDER_OCR_BASE + id.unsigned_abs()).to_string()
}

/// Creates an order awaiting payment, in the caller's transaction.
/// `deliver_to` is where the code or receipt goes (a phone number or an
/// e-mail address; not checked further here).
pub async fn create_order(
    conn: &mut PgConnection,
    kind: OrderKind,
    deliver_to: &str,
) -> SettlementResult<Order> {
    let deliver_to = deliver_to.trim();
    if deliver_to.len() > MAX_DELIVER_TO_LEN || deliver_to.chars().any(char::is_control) {
        return Err(SettlementError::Invalid(format!(
            "deliver_to must be printable text of at most {MAX_DELIVER_TO_LEN} characters"
        )));
    }
    let code_id = match &kind {
        OrderKind::Issue => None,
        OrderKind::TopUp { code_id } => {
            let known: bool =
                sqlx::query_scalar("select exists(select 1 from prepaid_codes where code_id = $1)")
                    .bind(code_id.as_str())
                    .fetch_one(&mut *conn)
                    .await?;
            if !known {
                return Err(SettlementError::NotFound(format!("prepaid code {code_id}")));
            }
            Some(code_id.as_str())
        }
    };
    let id: i64 = sqlx::query_scalar("select nextval('prepaid_orders_id_seq')")
        .fetch_one(&mut *conn)
        .await?;
    let ocr = order_ocr(id);
    let (pickup_secret, secret_hash) = if code_id.is_none() {
        let bytes: [u8; 24] = rand::random();
        let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let hash = sha256_hex(&secret);
        (secret, Some(hash))
    } else {
        (String::new(), None)
    };
    sqlx::query(
        "insert into prepaid_orders (id, ocr, kind, code_id, deliver_to, status, pickup_secret_sha256)
         values ($1, $2, $3, $4, $5, 'awaiting_payment', $6)",
    )
    .bind(id)
    .bind(&ocr)
    .bind(if code_id.is_some() { "topup" } else { "issue" })
    .bind(code_id)
    .bind(deliver_to)
    .bind(secret_hash)
    .execute(&mut *conn)
    .await?;
    Ok(Order {
        id,
        ocr,
        kind,
        pickup_secret,
    })
}

/// Marks an order paid by `payment_id` (called by `payments`, in its
/// transaction) and, for a top-up, queues the store operation. `Err(reason)`,
/// with nothing written, when the order cannot take the payment (already
/// paid, amount out of range): the payment then waits for manual matching.
pub(crate) async fn mark_paid(
    conn: &mut PgConnection,
    order_id: i64,
    payment_id: i64,
    amount: Money,
) -> SettlementResult<Result<(), String>> {
    let row =
        sqlx::query("select kind, code_id, status from prepaid_orders where id = $1 for update")
            .bind(order_id)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| SettlementError::NotFound(format!("prepaid order {order_id}")))?;
    let status: String = row.get("status");
    if status != "awaiting_payment" {
        return Ok(Err(format!(
            "prepaid order {order_id} is {status}; a second payment is not applied"
        )));
    }
    if amount <= Money::ZERO || amount > MAX_ORDER_AMOUNT {
        return Ok(Err(format!(
            "a prepaid order takes 0.01 to {MAX_ORDER_AMOUNT}, this payment is {amount}"
        )));
    }
    sqlx::query(
        "update prepaid_orders set status = 'paid', paid_ore = $2, amount_ore = $2, payment_id = $3
         where id = $1",
    )
    .bind(order_id)
    .bind(amount.ore())
    .bind(payment_id)
    .execute(&mut *conn)
    .await?;
    if row.get::<String, _>("kind") == "topup" {
        let code_id: String = row.get::<Option<String>, _>("code_id").ok_or_else(|| {
            SettlementError::Invalid(format!("top-up order {order_id} has no code"))
        })?;
        // The projector's "number" of a prepaid operation is the code id.
        queue_store_op(
            conn,
            "top_up_prepaid",
            &code_id,
            json!({ "code_id": code_id, "amount_ore": amount.ore(), "topup_ref": topup_ref(order_id) }),
        )
        .await?;
    }
    Ok(Ok(()))
}

/// The purchase / top-up reference of an order at the state store.
fn topup_ref(order_id: i64) -> String {
    format!("order-{order_id}")
}

/// Issues the code of a paid issue order (see the module doc): the code is
/// returned in clear this once. An unpaid order and a top-up order are refused.
pub async fn pick_up<S: Store>(
    s: &Settlement<S>,
    order: OrderRef,
    pickup_secret: &str,
    hasher: &CodeHasher,
) -> SettlementResult<PickedUp> {
    let mut tx = s.pool.begin().await?;
    let row = lock_order(&mut tx, &order).await?;
    let id: i64 = row.get("id");
    let status: String = row.get("status");
    check_issue_order(&row, id, pickup_secret)?;
    match status.as_str() {
        "picked_up" => {
            let code_id = stored_code_id(row.get("code_id"), id)?;
            return Ok(PickedUp::AlreadyPickedUp { code_id });
        }
        "paid" => {}
        _ => {
            return Err(SettlementError::Refused(format!(
                "prepaid order {id} is not paid yet"
            )))
        }
    }
    let amount = Money::ore_unchecked(row.get("paid_ore"));
    let purchase = Reference::parse(&topup_ref(id)).expect("order-<digits> is a valid reference");
    let now = s.now();
    let (code, view) = match s
        .store
        .issue_prepaid(hasher, amount, &purchase, now.timestamp_millis())
        .await?
    {
        IssueOutcome::Issued { code, view } => (Some(code), view),
        IssueOutcome::AlreadyIssued(view) => {
            tracing::warn!(order_id = id, code_id = %view.code_id,
                "prepaid order's code was issued before but never recorded as picked up; it cannot be shown again");
            (None, view)
        }
    };
    sqlx::query(
        "update prepaid_orders set status = 'picked_up', code_id = $2, picked_up_at = $3 where id = $1",
    )
    .bind(id)
    .bind(view.code_id.as_str())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    audit(
        &mut tx,
        "settlement",
        "prepaid_picked_up",
        &format!("prepaid_order:{id}"),
        json!({ "code_id": view.code_id.as_str(), "amount_ore": amount.ore(), "code_shown": code.is_some() }),
    )
    .await?;
    tx.commit().await?;
    Ok(match code {
        Some(code) => PickedUp::Issued {
            order_id: id,
            code,
            code_id: view.code_id,
            balance: view.balance,
        },
        None => PickedUp::AlreadyPickedUp {
            code_id: view.code_id,
        },
    })
}

/// Reads and locks the order: the row lock makes concurrent pick-ups of one
/// order take turns.
async fn lock_order(tx: &mut PgConnection, order: &OrderRef) -> SettlementResult<PgRow> {
    let query = match order {
        OrderRef::Id(id) => sqlx::query(
            "select id, kind, status, code_id, paid_ore, pickup_secret_sha256 from prepaid_orders where id = $1 for update",
        )
        .bind(*id),
        OrderRef::Ocr(ocr) => sqlx::query(
            "select id, kind, status, code_id, paid_ore, pickup_secret_sha256 from prepaid_orders where ocr = $1 for update",
        )
        .bind(ocr.trim().to_string()),
    };
    query
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| SettlementError::NotFound(format!("prepaid order {order:?}")))
}

/// Only an issue order is picked up, and only with its pick-up secret
/// (compared in constant time: the secret never leaks by timing).
fn check_issue_order(row: &PgRow, id: i64, pickup_secret: &str) -> SettlementResult<()> {
    let stored: Option<String> = row.get("pickup_secret_sha256");
    let presented = sha256_hex(pickup_secret);
    let secret_ok = stored.is_some_and(|h| {
        use subtle::ConstantTimeEq;
        bool::from(h.as_bytes().ct_eq(presented.as_bytes()))
    });
    if row.get::<String, _>("kind") == "issue" && !secret_ok {
        return Err(SettlementError::Refused(format!(
            "prepaid order {id}: wrong pick-up secret"
        )));
    }
    if row.get::<String, _>("kind") != "issue" {
        return Err(SettlementError::Refused(format!(
            "prepaid order {id} is a top-up: its amount goes to an existing code"
        )));
    }
    Ok(())
}

fn stored_code_id(value: Option<String>, order_id: i64) -> SettlementResult<CodeId> {
    value
        .as_deref()
        .and_then(CodeId::from_stored)
        .ok_or_else(|| {
            SettlementError::Invalid(format!("prepaid order {order_id} has no valid code id"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_references_are_valid_and_apart_from_invoices() {
        let ocr = order_ocr(1);
        assert_eq!(ocr.len(), 12);
        assert!(ocr.starts_with("9000000001"));
        let parsed = ocr::parse(&ocr, ocr::OcrLevel::CheckDigitAndLength).unwrap();
        assert_eq!(ocr::payload(&parsed), Some(ORDER_OCR_BASE + 1));
        // Invoice OCRs start at the invoice id plus 100 000: eight digits for a long time.
        let invoice = crate::settlement::billing::invoicing::invoice_ocr(
            &crate::settlement::SettlementPolicy::default(),
            1,
        );
        assert_ne!(invoice.len(), ocr.len());
    }
}
