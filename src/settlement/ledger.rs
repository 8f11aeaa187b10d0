//! Double-entry bookkeeping: every money movement is one transaction whose
//! entries sum to zero (positive = debit, negative = credit). A transaction
//! has an id derived from the business fact it records (`"usage:<call_id>"`,
//! `"invoice:<id>"`), and posting the same id twice posts it once.
//!
//! The chart of accounts (one account per counterparty where it matters):
//!
//! | account | kind | what |
//! |---|---|---|
//! | `caller_unbilled:<number>` | asset | posted usage not yet invoiced |
//! | `caller_invoiced:<number>` | asset | invoiced and not yet paid |
//! | `caller_credit:<number>` | liability | overpayments, used on the next invoice |
//! | `merchant_payable:<merchant>` | liability | billed usage owed to the merchant |
//! | `prepaid:<code_id>` | liability | prepaid balance not yet used |
//! | `prepaid_sales` | clearing | prepaid purchases paid, codes not yet issued |
//! | `bank:bankgiro`, `bank:swish` | asset | money received |
//! | `bank:payouts` | asset | money paid out to merchants (negative) |
//! | `unmatched_payments` | liability | received, not yet matched |
//! | `income:<kind>` | revenue | fees (paper, reminder, collection), interest, merchant fee (all without VAT) |
//! | `vat:output:<rate>` | liability | output VAT per rate (25, 12, 6, 0), owed to Skatteverket |
//! | `losses:disputes` | expense | credited after an upheld dispute and attributable to no other account (see `disputes.rs`) |
//! | `losses:waived_fees` | expense | reminder and collection fees and interest written off when only they were left (R16) |
//! | `losses:payment_write_offs` | expense | BgMax deductions taken out of the manual queue (R15) |
//!
//! VAT (mervärdesskattelagen 2023:200): prices to consumers include it. A
//! call's VAT is taken out of its charge when the call is booked (the
//! supply), so `merchant_payable` holds what the merchants are owed without
//! VAT and `vat:output:<rate>` what we declare; the paper-invoice fee's VAT
//! is booked with the invoice. Reminder and collection fees and late
//! interest are compensation, outside the scope of VAT.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::settlement::formats::pgcopy::CopyRows;

/// Account names, so that every module spells them the same way.
pub mod account {
    pub fn caller_unbilled(number: &str) -> String {
        format!("caller_unbilled:{number}")
    }
    pub fn caller_invoiced(number: &str) -> String {
        format!("caller_invoiced:{number}")
    }
    pub fn caller_credit(number: &str) -> String {
        format!("caller_credit:{number}")
    }
    pub fn merchant_payable(merchant: &str) -> String {
        format!("merchant_payable:{merchant}")
    }
    pub fn prepaid(code_id: &str) -> String {
        format!("prepaid:{code_id}")
    }
    pub const PREPAID_SALES: &str = "prepaid_sales";
    pub const BANKGIRO: &str = "bank:bankgiro";
    pub const SWISH: &str = "bank:swish";
    pub const PAYOUTS: &str = "bank:payouts";
    pub const UNMATCHED: &str = "unmatched_payments";
    pub const INCOME_PAPER_FEE: &str = "income:paper_invoice_fee";
    pub const INCOME_REMINDER_FEE: &str = "income:reminder_fee";
    pub const INCOME_COLLECTION_FEE: &str = "income:collection_fee";
    pub const INCOME_INTEREST: &str = "income:late_interest";
    pub const INCOME_MERCHANT_FEE: &str = "income:merchant_fee";
    pub const LOSSES_DISPUTES: &str = "losses:disputes";
    /// Ladder fees and interest written off: the principal was paid (R16).
    pub const LOSSES_WAIVED_FEES: &str = "losses:waived_fees";
    /// BgMax deductions dismissed from the manual queue (R15).
    pub const LOSSES_PAYMENT_WRITE_OFFS: &str = "losses:payment_write_offs";
    /// Output VAT at `rate` (a liability to Skatteverket).
    pub fn vat_output(rate: crate::domain::VatRate) -> String {
        format!("vat:output:{}", rate.percent())
    }
}

/// One balanced transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Txn {
    pub id: String,
    pub at: DateTime<Utc>,
    pub memo: String,
    pub entries: Vec<(String, i64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("transaction {0} does not balance (sum {1} öre)")]
    Unbalanced(String, i64),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl Txn {
    pub fn new(id: impl Into<String>, at: DateTime<Utc>, memo: impl Into<String>) -> Txn {
        Txn {
            id: id.into(),
            at,
            memo: memo.into(),
            entries: Vec::new(),
        }
    }

    pub fn debit(mut self, account: impl Into<String>, ore: i64) -> Txn {
        if ore != 0 {
            self.entries.push((account.into(), ore));
        }
        self
    }

    pub fn credit(mut self, account: impl Into<String>, ore: i64) -> Txn {
        if ore != 0 {
            self.entries.push((account.into(), -ore));
        }
        self
    }

    pub fn sum(&self) -> i64 {
        self.entries.iter().map(|(_, a)| a).sum()
    }
}

/// Posts `txn` unless a transaction with its id exists; returns whether it
/// was posted. Refuses an unbalanced transaction.
pub async fn post(conn: &mut PgConnection, txn: &Txn) -> Result<bool, LedgerError> {
    if txn.sum() != 0 {
        return Err(LedgerError::Unbalanced(txn.id.clone(), txn.sum()));
    }
    if txn.entries.is_empty() {
        return Ok(false);
    }
    let exists: bool =
        sqlx::query_scalar("select exists(select 1 from ledger_entries where txn = $1)")
            .bind(&txn.id)
            .fetch_one(&mut *conn)
            .await?;
    if exists {
        return Ok(false);
    }
    let accounts: Vec<&str> = txn.entries.iter().map(|(a, _)| a.as_str()).collect();
    let amounts: Vec<i64> = txn.entries.iter().map(|(_, v)| *v).collect();
    sqlx::query(
        "insert into ledger_entries (txn, account, amount_ore, at, memo)
         select $1, a, v, $4, $5 from unnest($2::text[], $3::bigint[]) as t(a, v)",
    )
    .bind(&txn.id)
    .bind(&accounts)
    .bind(&amounts)
    .bind(txn.at)
    .bind(&txn.memo)
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

/// Posts many transactions with one binary `COPY` (the ingest path). Ids
/// must be new (the caller deduplicated them, e.g. by event id).
pub async fn post_many(conn: &mut PgConnection, txns: &[Txn]) -> Result<(), LedgerError> {
    let rows = entry_rows(txns)?;
    copy_rows(
        conn,
        "copy ledger_entries (txn, account, amount_ore, at, memo) from stdin (format binary)",
        rows,
    )
    .await?;
    Ok(())
}

/// The entries of `txns` as `COPY` rows (txn, account, amount_ore, at,
/// memo), or the first transaction that does not balance. Pure, so the
/// benchmarks measure it.
pub fn entry_rows(txns: &[Txn]) -> Result<CopyRows, LedgerError> {
    let entries: usize = txns.iter().map(|t| t.entries.len()).sum();
    let mut rows = CopyRows::new(5, entries * 96);
    for t in txns {
        if t.sum() != 0 {
            return Err(LedgerError::Unbalanced(t.id.clone(), t.sum()));
        }
        for (a, v) in &t.entries {
            rows.row()
                .text(&t.id)
                .text(a)
                .int8(*v)
                .timestamptz(t.at)
                .text(&t.memo);
        }
    }
    Ok(rows)
}

/// Runs `statement`, a `COPY … FROM STDIN (FORMAT binary)`, with `rows` as
/// its data, in the caller's transaction, and returns how many rows it
/// copied: the bulk inserts of the ledger and the ingest path (issue 13.3).
/// Nothing is sent for no rows.
pub async fn copy_rows(
    conn: &mut PgConnection,
    statement: &str,
    rows: CopyRows,
) -> Result<u64, sqlx::Error> {
    if rows.rows() == 0 {
        return Ok(0);
    }
    let mut copy = conn.copy_in_raw(statement).await?;
    // Should sending fail, dropping `copy` tells the server to abandon the
    // COPY (CopyFail), and the caller's transaction fails as usual.
    copy.send(rows.finish()).await?;
    copy.finish().await
}

/// The balance of one account (debits positive).
pub async fn balance(conn: &mut PgConnection, account: &str) -> Result<i64, sqlx::Error> {
    let v: Option<i64> =
        sqlx::query_scalar("select sum(amount_ore)::bigint from ledger_entries where account = $1")
            .bind(account)
            .fetch_one(&mut *conn)
            .await?;
    Ok(v.unwrap_or(0))
}

/// The sum of every entry: zero when the books balance.
pub async fn total(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    let v: Option<i64> = sqlx::query_scalar("select sum(amount_ore)::bigint from ledger_entries")
        .fetch_one(&mut *conn)
        .await?;
    Ok(v.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_balance() {
        let t = Txn::new("usage:c1", Utc::now(), "call")
            .debit(account::caller_unbilled("+46701234567"), 2990)
            .credit(account::merchant_payable("stjarnlinjen"), 2990);
        assert_eq!(t.sum(), 0);
        assert_eq!(t.entries.len(), 2);
        let zero = Txn::new("x", Utc::now(), "").debit("a", 0).credit("b", 0);
        assert!(zero.entries.is_empty());
    }
}
