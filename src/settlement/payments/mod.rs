//! Payments (SPEC R15, R17): registering money that arrived by bankgiro
//! (Bankgirot's BgMax file) or Swish, matching it to invoices and prepaid
//! orders by its reference, and the manual-matching queue for the rest.
//!
//! A payment is registered once per external id (the BgMax payment key, the
//! Swish payment id), in the caller's transaction: the `payments` row, where
//! the money went (`payment_allocations`), the invoices' paid amounts, one
//! balanced ledger transaction whose id is derived from the payment id, and
//! the state-store operations that lower the number's exposure and lift its
//! blocks (applied afterwards by the projector, idempotent by
//! `pay-<payment>-<invoice>`). Registering the same external id again changes
//! nothing.
//!
//! Matching rules. Every reference is compared, exactly (trimmed), with the
//! OCR references we issued: invoices' and prepaid orders'. A reference that
//! names an invoice of ours identifies the payer's number even when that
//! invoice is already paid. The money pays the named invoices first (each up
//! to what is outstanding), then the same number's other open invoices,
//! oldest due date first (disputed invoices only when named: R19), and what
//! is left becomes the caller's credit, which the next invoice uses. A
//! payment naming one prepaid order pays that order (the whole amount). A
//! payment with no usable reference, one naming both an order and invoices,
//! a second payment to an order, a zero amount and a BgMax deduction (TK21,
//! negative) go to the manual-matching queue (`unmatched_payments`), from
//! where [`match_payment`] moves them exactly as automatic matching would.
//! A 0 SEK payment or a deduction can never be matched: staff take it out of
//! the queue with [`dismiss_payment`] and a reason (a deduction is written
//! off to `losses:payment_write_offs`).
//!
//! Blocks and the limit. A payment lifts the overdue block when no other
//! invoice of the number is overdue by the ladder's rule, bank days of grace
//! included (`claim::other_overdue`), and raises the default limit when the
//! number's *first* invoice is now paid in full (`claim::settle_first_invoice`,
//! R8: paying a later invoice first does not).
//!
//! Trade-offs: at most [`MAX_REFERENCES`] references of a payment are
//! considered (a bank file never has more; the rest are kept in `raw`), and
//! the admin queue shows the oldest [`UNMATCHED_PAGE`] payments. The metrics
//! are counted when a payment is registered in the caller's transaction, so a
//! transaction that is rolled back afterwards (a refused BgMax file is refused
//! before any registration, so only a database failure) over-counts.
//!
//! The other ways money arrives: [`swish`] (the Swish callback) and
//! [`prepaid_orders`] (prepaid codes bought with an OCR reference).

pub mod prepaid_orders;
pub mod swish;

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool, Row};

use crate::domain::{Money, E164};
use crate::metrics as m;
use crate::settlement::context::{
    audit, queue_store_op, Settlement, SettlementError, SettlementResult,
};
use crate::settlement::formats::bgmax::{self, Payment as BgMaxPayment, Section};
use crate::settlement::ledger::{self, account, Txn};
use crate::settlement::policy::SettlementPolicy;
use crate::settlement::{collection::claim, sync::projector};
use crate::store::Store;

/// The most references of one payment that are matched.
pub const MAX_REFERENCES: usize = 20;
/// The most payments [`unmatched`] returns (oldest first).
pub const UNMATCHED_PAGE: i64 = 1000;
/// The longest external id accepted (BgMax keys are about 60 characters).
const MAX_EXTERNAL_ID_LEN: usize = 200;

/// How the money arrived.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Bankgiro,
    Swish,
    /// Registered by staff (e.g. a payment seen on the bank statement only);
    /// booked on the bankgiro account.
    Manual,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Bankgiro => "bankgiro",
            Channel::Swish => "swish",
            Channel::Manual => "manual",
        }
    }

    /// The bank account the money is in.
    pub fn bank_account(self) -> &'static str {
        match self {
            Channel::Swish => account::SWISH,
            Channel::Bankgiro | Channel::Manual => account::BANKGIRO,
        }
    }
}

/// A payment as a channel reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct IncomingPayment {
    pub channel: Channel,
    /// The idempotency key: the same key again is the same payment.
    pub external_id: String,
    /// The payer's references (OCR numbers or free text), in the order given.
    pub references: Vec<String>,
    /// Negative for a BgMax deduction.
    pub amount: Money,
    /// The bank's payment date (Stockholm).
    pub paid_on: NaiveDate,
    pub payer_name: Option<String>,
    /// The Swish payer's phone number (digits, country code first).
    pub payer_alias: Option<String>,
    /// What the channel sent, kept for the manual queue and for audits.
    pub raw: serde_json::Value,
}

/// Where (part of) a payment went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allocation {
    Invoice {
        invoice_id: i64,
        number: String,
        amount: Money,
        /// This payment completed the invoice.
        paid_in_full: bool,
    },
    /// Held for the number's next invoice (`caller_credit:<number>`).
    Credit {
        number: String,
        amount: Money,
    },
    PrepaidOrder {
        order_id: i64,
        amount: Money,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registered {
    Matched {
        payment_id: i64,
        allocations: Vec<Allocation>,
    },
    /// Queued for manual matching (R15).
    Unmatched { payment_id: i64 },
    /// This external id was registered before; nothing changed.
    AlreadyRegistered { payment_id: i64 },
}

impl Registered {
    pub fn payment_id(&self) -> i64 {
        match self {
            Registered::Matched { payment_id, .. }
            | Registered::Unmatched { payment_id }
            | Registered::AlreadyRegistered { payment_id } => *payment_id,
        }
    }
}

/// Registers a payment and matches it (see the module doc), in the caller's
/// transaction. `today` (Stockholm) decides which invoices are overdue.
pub async fn register_payment(
    conn: &mut PgConnection,
    // The bank days of grace decide which invoices are still overdue (R15).
    policy: &SettlementPolicy,
    p: &IncomingPayment,
    today: NaiveDate,
    now: DateTime<Utc>,
) -> SettlementResult<Registered> {
    let external_id = p.external_id.trim();
    if external_id.is_empty() || external_id.len() > MAX_EXTERNAL_ID_LEN {
        return Err(SettlementError::Invalid(format!(
            "a payment's external id must have 1–{MAX_EXTERNAL_ID_LEN} characters"
        )));
    }
    let channel = p.channel.as_str();
    let references = clean_references(&p.references);
    let reference_text = (!references.is_empty()).then(|| references.join(" "));
    let Some(payment_id) = insert_payment(conn, p, external_id, &reference_text, now).await? else {
        let payment_id = repeated_payment(conn, p, external_id).await?;
        return Ok(Registered::AlreadyRegistered { payment_id });
    };

    let target = if p.amount.ore() > 0 {
        resolve_references(conn, &references).await?
    } else {
        Target::Nothing("no positive amount".into())
    };
    let booking = Booking {
        payment_id,
        amount_ore: p.amount.ore(),
        debit_account: p.channel.bank_account(),
        txn_id: format!("payment:{payment_id}"),
        memo: format!("{channel} payment {external_id}"),
        today,
        grace_bank_days: policy.payment_grace_bank_days,
        now,
    };
    let allocated = match target {
        Target::Nothing(reason) => Err(reason),
        target => allocate(conn, &booking, &target).await?,
    };
    let result = record_outcome(conn, payment_id, allocated, &booking, channel).await?;
    let label = match result {
        Registered::Matched { .. } => "matched",
        _ => "unmatched",
    };
    metrics::counter!(m::SETTLEMENT_PAYMENTS_TOTAL, "channel" => channel, "result" => label)
        .increment(1);
    if p.amount.ore() > 0 {
        metrics::counter!(m::SETTLEMENT_PAYMENTS_ORE_TOTAL, "channel" => channel)
            .increment(p.amount.ore() as u64);
    }
    Ok(result)
}

/// Inserts the payment once per external id; None when it was registered
/// before.
async fn insert_payment(
    conn: &mut PgConnection,
    p: &IncomingPayment,
    external_id: &str,
    reference_text: &Option<String>,
    now: DateTime<Utc>,
) -> SettlementResult<Option<i64>> {
    let channel = p.channel.as_str();
    let inserted: Option<i64> = sqlx::query_scalar(
        "insert into payments (channel, external_id, reference, amount_ore, payer_name, payer_alias,
                               paid_on, received_at, status, unallocated_ore, raw)
         values ($1, $2, $3, $4, $5, $6, $7, $8, 'unmatched', $4, $9)
         on conflict (external_id) do nothing
         returning id",
    )
    .bind(channel)
    .bind(external_id)
    .bind(reference_text)
    .bind(p.amount.ore())
    .bind(&p.payer_name)
    .bind(&p.payer_alias)
    .bind(p.paid_on)
    .bind(now)
    .bind(&p.raw)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(inserted)
}

/// A payment registered before: the first registration stands (a repeat
/// with another amount is logged); returns its id.
async fn repeated_payment(
    conn: &mut PgConnection,
    p: &IncomingPayment,
    external_id: &str,
) -> SettlementResult<i64> {
    let channel = p.channel.as_str();
    let (payment_id, amount_ore): (i64, i64) =
        sqlx::query_as("select id, amount_ore from payments where external_id = $1")
            .bind(external_id)
            .fetch_one(&mut *conn)
            .await?;
    if amount_ore != p.amount.ore() {
        tracing::warn!(
            payment_id,
            external_id,
            registered_ore = amount_ore,
            received_ore = p.amount.ore(),
            "payment repeated with another amount; the first registration stands"
        );
    }
    metrics::counter!(m::SETTLEMENT_PAYMENTS_TOTAL, "channel" => channel, "result" => "duplicate")
        .increment(1);
    Ok(payment_id)
}

/// Marks the payment matched, or books it as unmatched for manual matching.
async fn record_outcome(
    conn: &mut PgConnection,
    payment_id: i64,
    allocated: Result<Vec<Allocation>, String>,
    booking: &Booking,
    channel: &str,
) -> SettlementResult<Registered> {
    let now = booking.now;
    Ok(match allocated {
        Ok(allocations) => {
            sqlx::query(
                "update payments set status = 'matched', unallocated_ore = 0 where id = $1",
            )
            .bind(payment_id)
            .execute(&mut *conn)
            .await?;
            Registered::Matched {
                payment_id,
                allocations,
            }
        }
        Err(reason) => {
            tracing::info!(payment_id, channel, reason = %reason, "payment queued for manual matching");
            ledger::post(
                conn,
                &Txn::new(
                    &booking.txn_id,
                    now,
                    format!("{} (unmatched)", booking.memo),
                )
                .debit(booking.debit_account, booking.amount_ore)
                .credit(account::UNMATCHED, booking.amount_ore),
            )
            .await?;
            Registered::Unmatched { payment_id }
        }
    })
}

/// The references worth matching: trimmed, non-empty, without duplicates, at
/// most [`MAX_REFERENCES`].
fn clean_references(references: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in references {
        let r = r.trim();
        if !r.is_empty() && !out.iter().any(|o| o == r) {
            out.push(r.to_string());
        }
        if out.len() == MAX_REFERENCES {
            break;
        }
    }
    out
}

/// Where a payment is to go.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// The invoices the payer named (in that order); the surplus goes to
    /// `number`'s other open invoices, then to its credit.
    Invoices {
        named: Vec<i64>,
        number: String,
    },
    /// A number's open invoices, oldest due first; the rest is credit.
    Number(String),
    PrepaidOrder(i64),
    /// Nowhere: the reason, for the log or the refusal.
    Nothing(String),
}

async fn resolve_references(
    conn: &mut PgConnection,
    references: &[String],
) -> SettlementResult<Target> {
    if references.is_empty() {
        return Ok(Target::Nothing("no reference".into()));
    }
    let invoices: HashMap<String, (i64, String)> =
        sqlx::query("select ocr, id, number from invoices where ocr = any($1)")
            .bind(references)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|r| (r.get("ocr"), (r.get("id"), r.get("number"))))
            .collect();
    let orders: HashMap<String, i64> =
        sqlx::query("select ocr, id from prepaid_orders where ocr = any($1)")
            .bind(references)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|r| (r.get("ocr"), r.get("id")))
            .collect();
    let mut named = Vec::new();
    let mut number = None;
    let mut named_orders = Vec::new();
    for r in references {
        if let Some((id, n)) = invoices.get(r) {
            named.push(*id);
            number.get_or_insert_with(|| n.clone());
        } else if let Some(id) = orders.get(r) {
            named_orders.push(*id);
        }
    }
    Ok(match (number, named_orders.as_slice()) {
        (None, []) => Target::Nothing("no reference matches an invoice or an order".into()),
        (None, [order]) => Target::PrepaidOrder(*order),
        (Some(number), []) => Target::Invoices { named, number },
        _ => Target::Nothing(
            "the references name more than one order, or orders and invoices".into(),
        ),
    })
}

/// How one allocation is booked: the payment, where its money comes from
/// (the bank account when registered, `unmatched_payments` when matched by
/// hand) and the ledger transaction's id.
struct Booking {
    payment_id: i64,
    amount_ore: i64,
    debit_account: &'static str,
    txn_id: String,
    memo: String,
    today: NaiveDate,
    grace_bank_days: u32,
    now: DateTime<Utc>,
}

/// Allocates the payment to `target` and books it; `Err(reason)` (nothing
/// written) when the target cannot take it.
async fn allocate(
    conn: &mut PgConnection,
    b: &Booking,
    target: &Target,
) -> SettlementResult<Result<Vec<Allocation>, String>> {
    match target {
        Target::Nothing(reason) => Ok(Err(reason.clone())),
        Target::PrepaidOrder(order_id) => {
            let amount = Money::ore_unchecked(b.amount_ore);
            if let Err(reason) =
                prepaid_orders::mark_paid(conn, *order_id, b.payment_id, amount).await?
            {
                return Ok(Err(reason));
            }
            sqlx::query(
                "insert into payment_allocations (payment_id, kind, prepaid_order_id, amount_ore)
                 values ($1, 'prepaid', $2, $3)",
            )
            .bind(b.payment_id)
            .bind(order_id)
            .bind(b.amount_ore)
            .execute(&mut *conn)
            .await?;
            ledger::post(
                conn,
                &Txn::new(
                    &b.txn_id,
                    b.now,
                    format!("{} (prepaid order {order_id})", b.memo),
                )
                .debit(b.debit_account, b.amount_ore)
                .credit(account::PREPAID_SALES, b.amount_ore),
            )
            .await?;
            Ok(Ok(vec![Allocation::PrepaidOrder {
                order_id: *order_id,
                amount,
            }]))
        }
        Target::Invoices { named, number } => {
            allocate_to_invoices(conn, b, named, number).await.map(Ok)
        }
        Target::Number(number) => allocate_to_invoices(conn, b, &[], number).await.map(Ok),
    }
}

/// An invoice as the allocation sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Claim {
    invoice_id: i64,
    number: String,
    outstanding_ore: i64,
}

/// The pure allocation rule: the named claims in order, then the others in
/// order, each up to what is outstanding; returns (invoice, amount) pairs and
/// the surplus.
fn plan_allocation(amount_ore: i64, named: &[Claim], others: &[Claim]) -> (Vec<(i64, i64)>, i64) {
    let mut left = amount_ore.max(0);
    let mut out = Vec::new();
    for claim in named.iter().chain(others) {
        if left == 0 {
            break;
        }
        let pay = left.min(claim.outstanding_ore.max(0));
        if pay > 0 && !out.iter().any(|(id, _)| *id == claim.invoice_id) {
            out.push((claim.invoice_id, pay));
            left -= pay;
        }
    }
    (out, left)
}

async fn allocate_to_invoices(
    conn: &mut PgConnection,
    b: &Booking,
    named: &[i64],
    surplus_number: &str,
) -> SettlementResult<Vec<Allocation>> {
    let established = lock_numbers(conn, named, surplus_number).await?;
    let (named_claims, others) = open_claims(conn, named, surplus_number).await?;

    let (plan, credit_ore) = plan_allocation(b.amount_ore, &named_claims, &others);
    let number_of: HashMap<i64, &str> = named_claims
        .iter()
        .chain(&others)
        .map(|c| (c.invoice_id, c.number.as_str()))
        .collect();

    let mut allocations = Vec::with_capacity(plan.len() + 1);
    let mut txn = Txn::new(&b.txn_id, b.now, b.memo.clone()).debit(b.debit_account, b.amount_ore);
    for (invoice_id, amount_ore) in &plan {
        let number = number_of[invoice_id];
        let paid_in_full: bool = sqlx::query_scalar(
            "update invoices set paid_ore = paid_ore + $2,
                    status = case when paid_ore + $2 >= total_ore then 'paid' else status end,
                    paid_at = case when paid_ore + $2 >= total_ore then $3 else paid_at end
             where id = $1 returning status = 'paid'",
        )
        .bind(invoice_id)
        .bind(amount_ore)
        .bind(b.now)
        .fetch_one(&mut *conn)
        .await?;
        sqlx::query(
            "insert into payment_allocations (payment_id, kind, invoice_id, number, amount_ore)
             values ($1, 'invoice', $2, $3, $4)",
        )
        .bind(b.payment_id)
        .bind(invoice_id)
        .bind(number)
        .bind(amount_ore)
        .execute(&mut *conn)
        .await?;
        txn = txn.credit(account::caller_invoiced(number), *amount_ore);
        allocations.push(Allocation::Invoice {
            invoice_id: *invoice_id,
            number: number.to_string(),
            amount: Money::ore_unchecked(*amount_ore),
            paid_in_full,
        });
    }
    if credit_ore > 0 {
        sqlx::query(
            "insert into payment_allocations (payment_id, kind, number, amount_ore)
             values ($1, 'credit', $2, $3)",
        )
        .bind(b.payment_id)
        .bind(surplus_number)
        .bind(credit_ore)
        .execute(&mut *conn)
        .await?;
        txn = txn.credit(account::caller_credit(surplus_number), credit_ore);
        allocations.push(Allocation::Credit {
            number: surplus_number.to_string(),
            amount: Money::ore_unchecked(credit_ore),
        });
    }
    ledger::post(conn, &txn).await?;
    queue_payment_ops(conn, b, &allocations, &established).await?;
    Ok(allocations)
}

/// Locks the numbers of the named invoices and the payer's, in a fixed
/// order (so that two payments of one number, or a payment and an invoice
/// run, serialise without deadlock); returns whether each is established.
async fn lock_numbers(
    conn: &mut PgConnection,
    named: &[i64],
    surplus_number: &str,
) -> SettlementResult<HashMap<String, bool>> {
    let numbers_of_named: Vec<String> =
        sqlx::query_scalar("select distinct number from invoices where id = any($1)")
            .bind(named)
            .fetch_all(&mut *conn)
            .await?;
    let mut numbers: Vec<String> = numbers_of_named;
    numbers.push(surplus_number.to_string());
    numbers.sort();
    numbers.dedup();
    let established: HashMap<String, bool> = sqlx::query(
        "select number, established from numbers where number = any($1) order by number for update",
    )
    .bind(&numbers)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| (r.get("number"), r.get("established")))
    .collect();
    if !established.contains_key(surplus_number) {
        return Err(SettlementError::NotFound(format!(
            "number {surplus_number}"
        )));
    }
    Ok(established)
}

/// The named invoices (in the order named; one that is not open counts as
/// nothing outstanding) and the payer's other open, undisputed invoices by
/// due date, all locked.
async fn open_claims(
    conn: &mut PgConnection,
    named: &[i64],
    surplus_number: &str,
) -> SettlementResult<(Vec<Claim>, Vec<Claim>)> {
    let named_rows = sqlx::query(
        "select id, number, total_ore - paid_ore as outstanding_ore, status
         from invoices where id = any($1) order by id for update",
    )
    .bind(named)
    .fetch_all(&mut *conn)
    .await?;
    let by_id: HashMap<i64, Claim> = named_rows
        .iter()
        .map(|r| {
            let open = r.get::<String, _>("status") == "open";
            let id: i64 = r.get("id");
            (
                id,
                Claim {
                    invoice_id: id,
                    number: r.get("number"),
                    outstanding_ore: if open { r.get("outstanding_ore") } else { 0 },
                },
            )
        })
        .collect();
    let named_claims: Vec<Claim> = named
        .iter()
        .filter_map(|id| by_id.get(id).cloned())
        .collect();
    let others: Vec<Claim> = sqlx::query(
        "select id, number, total_ore - paid_ore as outstanding_ore from invoices
         where number = $1 and status = 'open' and not disputed and id <> all($2)
         order by due_date, id for update",
    )
    .bind(surplus_number)
    .bind(named)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| Claim {
        invoice_id: r.get("id"),
        number: r.get("number"),
        outstanding_ore: r.get("outstanding_ore"),
    })
    .collect();
    Ok((named_claims, others))
}

/// One `apply_payment` store operation per invoice allocation (R7, R8, R15).
async fn queue_payment_ops(
    conn: &mut PgConnection,
    b: &Booking,
    allocations: &[Allocation],
    established: &HashMap<String, bool>,
) -> SettlementResult<()> {
    let mut clear_overdue: HashMap<&str, bool> = HashMap::new();
    let mut first_paid_checked: Vec<&str> = Vec::new();
    for a in allocations {
        let Allocation::Invoice {
            invoice_id,
            number,
            amount,
            ..
        } = a
        else {
            continue;
        };
        let clear = match clear_overdue.get(number.as_str()) {
            Some(clear) => *clear,
            None => {
                let clear =
                    !claim::other_overdue(conn, number, &[], b.today, b.grace_bank_days).await?;
                clear_overdue.insert(number, clear);
                clear
            }
        };
        // R8: the number's first invoice paid in full raises the default
        // limit — the first one, not whichever is paid first. Checked once
        // per number, after every allocation of this payment is booked.
        let first_invoice_paid = if first_paid_checked.contains(&number.as_str())
            || established.get(number.as_str()).copied().unwrap_or(true)
        {
            false
        } else {
            first_paid_checked.push(number);
            claim::settle_first_invoice(conn, number).await?
        };
        queue_store_op(
            conn,
            "apply_payment",
            number,
            json!({
                "payment_id": format!("pay-{}-{invoice_id}", b.payment_id),
                "amount_ore": amount.ore(),
                "clear_overdue": clear,
                "first_invoice_paid": first_invoice_paid,
            }),
        )
        .await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// BgMax import

/// What a BgMax import did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgMaxImport {
    pub file_key: String,
    /// The file was imported before: nothing changed.
    pub already_imported: bool,
    /// A test file (TK01 mark T): recorded, its payments not booked.
    pub test_file: bool,
    pub sections: usize,
    pub payments: usize,
    pub matched: usize,
    pub unmatched: usize,
    /// Payments already registered from another delivery.
    pub duplicates: usize,
    /// The sum of the deposits (deductions subtracted).
    pub total: Money,
}

/// Imports a BgMax file in one PostgreSQL transaction: every payment of the
/// file or none. A file that does not parse or add up, or that pays another
/// bankgiro than ours, is refused whole. Afterwards the state store is told
/// (a failure there is retried by the projector; the import stands).
pub async fn import_bgmax<S: Store>(
    s: &Settlement<S>,
    bytes: &[u8],
) -> SettlementResult<BgMaxImport> {
    let file = bgmax::parse(bytes)
        .map_err(|e| SettlementError::Invalid(format!("BgMax file refused: {e}")))?;
    check_payee(&file, &s.policy.bankgiro)?;
    let file_key = file.file_key();
    let total: Money = file.sections.iter().map(|sec| sec.deposit_amount).sum();
    let mut report = BgMaxImport {
        file_key: file_key.clone(),
        already_imported: false,
        test_file: file.test,
        sections: file.sections.len(),
        payments: file.sections.iter().map(|sec| sec.payments.len()).sum(),
        matched: 0,
        unmatched: 0,
        duplicates: 0,
        total,
    };
    let sha256: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (today, now) = (s.today(), s.now());

    let mut tx = s.pool.begin().await?;
    let new = sqlx::query(
        "insert into bgmax_files (file_key, sha256, sections, payments, total_ore, test_file, imported_at)
         values ($1, $2, $3, $4, $5, $6, $7) on conflict (file_key) do nothing",
    )
    .bind(&file_key)
    .bind(&sha256)
    .bind(report.sections as i32)
    .bind(report.payments as i32)
    .bind(total.ore())
    .bind(file.test)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !new {
        tx.rollback().await?;
        tracing::info!(file_key = %file_key, "BgMax file already imported");
        report.already_imported = true;
        return Ok(report);
    }
    if file.test {
        tx.commit().await?;
        tracing::warn!(file_key = %file_key, "BgMax test file recorded; its payments are not booked");
        return Ok(report);
    }
    for section in &file.sections {
        for (payment, key) in section.payments.iter().zip(section.payment_keys()) {
            let incoming = bgmax_payment(section, payment, key);
            match register_payment(&mut tx, &s.policy, &incoming, today, now).await? {
                Registered::Matched { .. } => report.matched += 1,
                Registered::Unmatched { .. } => report.unmatched += 1,
                Registered::AlreadyRegistered { .. } => report.duplicates += 1,
            }
        }
    }
    audit(
        &mut tx,
        "settlement",
        "bgmax_imported",
        &file_key,
        json!({ "payments": report.payments, "matched": report.matched, "unmatched": report.unmatched,
                "duplicates": report.duplicates, "total_ore": total.ore(), "sha256": sha256 }),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(file = %file, matched = report.matched, unmatched = report.unmatched, "BgMax file imported");
    if let Err(e) = projector::flush(s).await {
        tracing::warn!(error = %e, "store operations after the BgMax import wait for the projector");
    }
    Ok(report)
}

/// A file that pays another bankgiro than ours is refused whole.
fn check_payee(file: &bgmax::BgMaxFile, bankgiro: &str) -> SettlementResult<()> {
    let ours: String = bankgiro.chars().filter(char::is_ascii_digit).collect();
    if let Some((i, section)) = file
        .sections
        .iter()
        .enumerate()
        .find(|(_, sec)| sec.payee_bankgiro != ours)
    {
        return Err(SettlementError::Invalid(format!(
            "BgMax file refused: deposit {} (section {}) is to bankgiro {}, ours is {}",
            section.deposit_serial,
            i + 1,
            section.payee_bankgiro,
            bankgiro
        )));
    }
    Ok(())
}

fn bgmax_payment(section: &Section, p: &BgMaxPayment, key: String) -> IncomingPayment {
    // The payer's personnummer/organisation number (TK29) is left out: name
    // and address are enough to match by hand, and less personal data is kept.
    let raw = json!({
        "payee_bankgiro": section.payee_bankgiro,
        "deposit_serial": section.deposit_serial,
        "payer_bankgiro": p.payer_bankgiro,
        "reference": p.reference_raw,
        "reference_code": p.reference_code,
        "extra_references": p.extra_references.iter().map(|e| &e.reference).collect::<Vec<_>>(),
        "channel_code": p.channel,
        "bgc_serial": p.bgc_serial,
        "image": p.image,
        "deduction_code": p.deduction_code,
        "info": p.info,
        "payer_name": p.payer_name,
        "payer_extra_name": p.payer_extra_name,
        "address": p.address,
        "postcode": p.postcode,
        "city": p.city,
        "country_code": p.country_code,
    });
    IncomingPayment {
        channel: Channel::Bankgiro,
        external_id: key,
        references: p.references(),
        amount: p.amount,
        paid_on: section.payment_date,
        payer_name: p.payer_name.clone(),
        payer_alias: None,
        raw,
    }
}

// ---------------------------------------------------------------------------
// Manual matching (R15)

/// What staff match an unmatched payment to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MatchTarget {
    /// An invoice by its OCR reference or its id.
    Invoice(String),
    /// A number (E.164): its open invoices, oldest due first, then credit.
    Number(String),
    /// A prepaid order by its OCR reference.
    PrepaidOrder(String),
}

/// Moves an unmatched payment onto `target`, exactly as [`register_payment`]
/// would have had its reference matched (the money comes out of
/// `unmatched_payments`), records who did it, in the caller's transaction.
/// A payment is matched once; matching it again is refused.
pub async fn match_payment(
    conn: &mut PgConnection,
    policy: &SettlementPolicy,
    payment_id: i64,
    target: MatchTarget,
    actor: &str,
    today: NaiveDate,
    now: DateTime<Utc>,
) -> SettlementResult<Vec<Allocation>> {
    let actor = actor.trim();
    if actor.is_empty() {
        return Err(SettlementError::Invalid(
            "who matched the payment is required".into(),
        ));
    }
    let row = sqlx::query(
        "select status, unallocated_ore, channel from payments where id = $1 for update",
    )
    .bind(payment_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| SettlementError::NotFound(format!("payment {payment_id}")))?;
    let status: String = row.get("status");
    let amount_ore: i64 = row.get("unallocated_ore");
    let channel: String = row.get("channel");
    if status != "unmatched" {
        return Err(SettlementError::Refused(format!(
            "payment {payment_id} is {status}, only an unmatched payment can be matched"
        )));
    }
    if amount_ore <= 0 {
        return Err(SettlementError::Refused(format!(
            "payment {payment_id} has no money to match ({})",
            Money::ore_unchecked(amount_ore)
        )));
    }
    let resolved = resolve_target(conn, &target).await?;
    let booking = Booking {
        payment_id,
        amount_ore,
        debit_account: account::UNMATCHED,
        txn_id: format!("payment-match:{payment_id}"),
        memo: format!("{channel} payment {payment_id} matched by {actor}"),
        today,
        grace_bank_days: policy.payment_grace_bank_days,
        now,
    };
    let allocations = allocate(conn, &booking, &resolved)
        .await?
        .map_err(SettlementError::Refused)?;
    sqlx::query(
        "update payments set status = 'matched', unallocated_ore = 0, matched_by = $2 where id = $1",
    )
    .bind(payment_id)
    .bind(actor)
    .execute(&mut *conn)
    .await?;
    audit(
        conn,
        actor,
        "payment_matched",
        &format!("payment:{payment_id}"),
        json!({ "target": format!("{target:?}"), "amount_ore": amount_ore,
                "allocations": allocations.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>() }),
    )
    .await?;
    let channel = match channel.as_str() {
        "swish" => Channel::Swish,
        "manual" => Channel::Manual,
        _ => Channel::Bankgiro,
    };
    metrics::counter!(m::SETTLEMENT_PAYMENTS_TOTAL, "channel" => channel.as_str(), "result" => "matched_manually")
        .increment(1);
    Ok(allocations)
}

/// What an operator's match names, looked up: an invoice (by OCR reference
/// or id), a number, or a prepaid order (by OCR reference).
async fn resolve_target(conn: &mut PgConnection, target: &MatchTarget) -> SettlementResult<Target> {
    Ok(match target {
        MatchTarget::Invoice(reference) => {
            let reference = reference.trim();
            let row: Option<(i64, String)> = sqlx::query_as(
                "select id, number from invoices where ocr = $1 or id::text = $1
                     order by ocr = $1 desc limit 1",
            )
            .bind(reference)
            .fetch_optional(&mut *conn)
            .await?;
            let (id, number) =
                row.ok_or_else(|| SettlementError::NotFound(format!("invoice {reference}")))?;
            Target::Invoices {
                named: vec![id],
                number,
            }
        }
        MatchTarget::Number(number) => {
            let number = E164::parse(number.trim())
                .map_err(|e| SettlementError::Invalid(format!("number: {e}")))?;
            Target::Number(number.as_str().to_string())
        }
        MatchTarget::PrepaidOrder(ocr) => {
            let ocr = ocr.trim();
            let id: i64 = sqlx::query_scalar("select id from prepaid_orders where ocr = $1")
                .bind(ocr)
                .fetch_optional(&mut *conn)
                .await?
                .ok_or_else(|| SettlementError::NotFound(format!("prepaid order {ocr}")))?;
            Target::PrepaidOrder(id)
        }
    })
}

/// The longest reason accepted when a payment is dismissed.
pub const MAX_DISMISS_REASON_CHARS: usize = 500;

/// A payment taken out of the manual queue by [`dismiss_payment`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dismissed {
    pub payment_id: i64,
    /// What was written off (a deduction's amount, positive); zero for a
    /// 0 SEK payment.
    pub written_off: Money,
}

/// Takes a payment that can never be matched out of the manual queue (R15),
/// in the caller's transaction: a payment of 0 SEK (nothing was booked, so
/// nothing is) or a BgMax deduction (TK21: money the bank took back from a
/// deposit), whose amount is written off — debit `losses:payment_write_offs`,
/// credit `unmatched_payments`, which the deduction had left negative. A
/// payment with money in it is refused: it belongs to someone, so it is
/// matched or paid back, never dismissed. Who did it and why is recorded
/// (the payment row and the audit log); a payment is dismissed once.
pub async fn dismiss_payment(
    conn: &mut PgConnection,
    payment_id: i64,
    reason: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> SettlementResult<Dismissed> {
    let (actor, reason) = dismissal_input(actor, reason)?;
    let row = sqlx::query(
        "select status, unallocated_ore, channel from payments where id = $1 for update",
    )
    .bind(payment_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| SettlementError::NotFound(format!("payment {payment_id}")))?;
    let status: String = row.get("status");
    let amount_ore: i64 = row.get("unallocated_ore");
    let channel: String = row.get("channel");
    if status != "unmatched" {
        return Err(SettlementError::Refused(format!(
            "payment {payment_id} is {status}, only an unmatched payment can be dismissed"
        )));
    }
    if amount_ore > 0 {
        return Err(SettlementError::Refused(format!(
            "payment {payment_id} holds {}: match it to an invoice, a number or an order, or pay it back",
            Money::ore_unchecked(amount_ore)
        )));
    }
    let written_off = -amount_ore;
    if written_off > 0 {
        ledger::post(
            conn,
            &Txn::new(
                format!("payment-dismissed:{payment_id}"),
                now,
                format!("{channel} deduction {payment_id} written off by {actor}"),
            )
            .debit(account::LOSSES_PAYMENT_WRITE_OFFS, written_off)
            .credit(account::UNMATCHED, written_off),
        )
        .await?;
    }
    sqlx::query(
        "update payments set status = 'dismissed', unallocated_ore = 0, matched_by = $2,
                dismissed_reason = $3 where id = $1",
    )
    .bind(payment_id)
    .bind(actor)
    .bind(reason)
    .execute(&mut *conn)
    .await?;
    audit(
        conn,
        actor,
        "payment_dismissed",
        &format!("payment:{payment_id}"),
        json!({ "reason": reason, "amount_ore": amount_ore, "written_off_ore": written_off }),
    )
    .await?;
    let channel_label = match channel.as_str() {
        "swish" => "swish",
        "manual" => "manual",
        _ => "bankgiro",
    };
    metrics::counter!(m::SETTLEMENT_PAYMENTS_TOTAL, "channel" => channel_label, "result" => "dismissed")
        .increment(1);
    Ok(Dismissed {
        payment_id,
        written_off: Money::ore_unchecked(written_off),
    })
}

/// Who dismisses a payment and why, trimmed; both required, the reason
/// bounded.
fn dismissal_input<'a>(actor: &'a str, reason: &'a str) -> SettlementResult<(&'a str, &'a str)> {
    let actor = actor.trim();
    if actor.is_empty() {
        return Err(SettlementError::Invalid(
            "who dismissed the payment is required".into(),
        ));
    }
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(SettlementError::Invalid(
            "a reason for dismissing the payment is required".into(),
        ));
    }
    if reason.chars().count() > MAX_DISMISS_REASON_CHARS {
        return Err(SettlementError::Invalid(format!(
            "the reason is longer than {MAX_DISMISS_REASON_CHARS} characters"
        )));
    }
    Ok((actor, reason))
}

/// A payment waiting in the manual-matching queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnmatchedPayment {
    pub id: i64,
    pub channel: String,
    pub external_id: String,
    /// The references as received (space separated).
    pub reference: Option<String>,
    /// Negative for a deduction (it cannot be matched; it is for reconciling
    /// with the bank).
    pub amount: Money,
    pub payer_name: Option<String>,
    pub payer_alias: Option<String>,
    pub paid_on: NaiveDate,
    pub received_at: DateTime<Utc>,
    pub raw: serde_json::Value,
}

/// The manual-matching queue, oldest first (at most [`UNMATCHED_PAGE`]).
pub async fn unmatched(pool: &PgPool) -> SettlementResult<Vec<UnmatchedPayment>> {
    let rows = sqlx::query(
        "select id, channel, external_id, reference, unallocated_ore, payer_name, payer_alias, paid_on,
                received_at, raw
         from payments where status = 'unmatched' order by paid_on, id limit $1",
    )
    .bind(UNMATCHED_PAGE)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| UnmatchedPayment {
            id: r.get("id"),
            channel: r.get("channel"),
            external_id: r.get("external_id"),
            reference: r.get("reference"),
            amount: Money::ore_unchecked(r.get("unallocated_ore")),
            payer_name: r.get("payer_name"),
            payer_alias: r.get("payer_alias"),
            paid_on: r.get("paid_on"),
            received_at: r.get("received_at"),
            raw: r
                .get::<Option<serde_json::Value>, _>("raw")
                .unwrap_or(serde_json::Value::Null),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(id: i64, outstanding_ore: i64) -> Claim {
        Claim {
            invoice_id: id,
            number: "+46701234567".into(),
            outstanding_ore,
        }
    }

    #[test]
    fn named_invoices_first_then_oldest_then_credit() {
        let named = [claim(5, 10_000), claim(3, 2_000)];
        let others = [claim(1, 4_000), claim(2, 50_000)];
        assert_eq!(
            plan_allocation(15_000, &named, &others),
            (vec![(5, 10_000), (3, 2_000), (1, 3_000)], 0)
        );
        assert_eq!(
            plan_allocation(100_000, &named, &others),
            (
                vec![(5, 10_000), (3, 2_000), (1, 4_000), (2, 50_000)],
                34_000
            )
        );
        // A partial payment stays on the named invoice.
        assert_eq!(plan_allocation(700, &named, &others), (vec![(5, 700)], 0));
        // A paid (or credited) named invoice takes nothing; a claim named twice is paid once.
        assert_eq!(
            plan_allocation(3_000, &[claim(5, 0), claim(3, 1_000), claim(3, 1_000)], &[]),
            (vec![(3, 1_000)], 2_000)
        );
        assert_eq!(plan_allocation(0, &named, &others), (vec![], 0));
        assert_eq!(plan_allocation(-500, &named, &others), (vec![], 0));
    }

    #[test]
    fn references_are_trimmed_deduplicated_and_bounded() {
        let refs: Vec<String> = [" 1000018 ", "", "1000018", "abc"]
            .iter()
            .map(|s| s.to_string())
            .chain((0..40).map(|i| i.to_string()))
            .collect();
        let clean = clean_references(&refs);
        assert_eq!(&clean[..2], &["1000018".to_string(), "abc".to_string()]);
        assert_eq!(clean.len(), MAX_REFERENCES);
    }

    #[test]
    fn channels_book_on_their_bank_account() {
        assert_eq!(Channel::Swish.bank_account(), account::SWISH);
        assert_eq!(Channel::Bankgiro.bank_account(), account::BANKGIRO);
        assert_eq!(Channel::Manual.bank_account(), account::BANKGIRO);
    }
}
