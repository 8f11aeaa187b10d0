//! The settlement rules in force, from configuration (SPEC R11–R20; defaults
//! from the seeds and reference/sweden.md). Every amount and period here is
//! configurable; nothing in the calendar code hard-codes them.

use crate::domain::Money;
use crate::settlement::interest::{self, ReferenceRateTable};

#[derive(Clone, Debug)]
pub struct SettlementPolicy {
    /// Day of the month of the monthly invoice run (R11; seed: the 15th).
    pub invoice_day: u32,
    /// Days until a threshold invoice (R8) is due.
    pub threshold_due_days: u32,
    /// Fee on a paper invoice (R13; seed 001: 30 SEK). E-mail invoices have none.
    pub paper_invoice_fee: Money,
    /// The VAT rate included in the paper-invoice fee: an invoicing fee is
    /// part of what is paid for the supply it invoices (Skatteverket), and
    /// one invoice may mix rates, so the general rate applies by default.
    pub paper_invoice_fee_vat: crate::domain::VatRate,
    /// R14: below this an invoice is carried to the next period (None = off).
    pub minimum_invoice_amount: Option<Money>,
    /// R14: never carried for more than this many months.
    pub max_carry_months: u32,
    /// R15: bank days a payment made on a deadline may take to reach us
    /// (seed 001: "det tar minst 3 bankdagar"). A deadline on a weekend or
    /// holiday first moves to the next bank day; the claim is overdue, and
    /// the ladder's next step due, only after these bank days.
    pub payment_grace_bank_days: u32,
    /// R16: a reminder this many days after the due date (seed 001: 5).
    pub reminder_after_days: u32,
    /// R16: the statutory reminder fee (lag 1981:739: at most 60 SEK).
    pub reminder_fee: Money,
    /// R16: a reminder is due this many days after it is sent (seed 001: 10).
    pub reminder_due_days: u32,
    /// R16: the collection fee per demand (at most 180 SEK).
    pub collection_fee: Money,
    /// A collection demand gives at least 8 days (god inkassosed).
    pub collection_due_days: u32,
    /// Late-payment interest: reference rate + this margin (räntelagen 6 §).
    pub interest_margin_pp: rust_decimal::Decimal,
    pub reference_rates: ReferenceRateTable,
    /// R18: plans for debts over this amount (smaller by decision).
    pub installment_min_debt: Money,
    /// R18: at least this much per month.
    pub installment_min_monthly: Money,
    /// Bank days of grace after an installment's due date before the plan breaks.
    pub installment_grace_days: u32,
    /// Day of the month on which merchant statements for the previous month are made (R20).
    pub merchant_settlement_day: u32,
    /// Our bankgiro number, printed on invoices.
    pub bankgiro: String,
    /// The invoicing company, printed on invoices.
    pub issuer_lines: Vec<String>,
    /// OCR references are the invoice id plus this offset (so they have a fixed-ish length).
    pub ocr_offset: u64,
    /// Bookkeeping records are kept until the end of this many years after
    /// their year (Bokföringslagen 7 kap. 2 §: 7, which is also the least).
    pub bookkeeping_retention_years: u32,
    /// Consent evidence and call detail are kept until the end of this many
    /// years after the call (a consumer claim is time-barred after 3 years,
    /// preskriptionslagen 2 §), and while the call's invoice is open.
    pub evidence_retention_years: u32,
}

impl Default for SettlementPolicy {
    fn default() -> Self {
        SettlementPolicy {
            invoice_day: 15,
            threshold_due_days: 14,
            paper_invoice_fee: Money::sek(30),
            paper_invoice_fee_vat: crate::domain::VatRate::STANDARD,
            minimum_invoice_amount: None,
            max_carry_months: 3,
            payment_grace_bank_days: 3,
            reminder_after_days: 5,
            reminder_fee: Money::sek(60),
            reminder_due_days: 10,
            collection_fee: Money::sek(180),
            collection_due_days: 10,
            interest_margin_pp: interest::STATUTORY_MARGIN_PP,
            reference_rates: interest::default_table(),
            installment_min_debt: Money::sek(2000),
            installment_min_monthly: Money::sek(500),
            installment_grace_days: 3,
            merchant_settlement_day: 1,
            bankgiro: "991-2346".into(),
            issuer_lines: vec![
                "Callauth Fakturering AB".into(),
                "Box 736, 114 79 Stockholm".into(),
                "Org.nr 556000-0000".into(),
                "Momsreg.nr SE556000000001".into(),
            ],
            ocr_offset: 100_000,
            bookkeeping_retention_years: 7,
            evidence_retention_years: 3,
        }
    }
}
