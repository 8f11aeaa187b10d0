//! A number's account rules: the credit limit (R8, R9), the 80 % and 100 %
//! thresholds (R8), and what lifts a block (R7). Pure functions over amounts;
//! the stores call them inside their atomic steps.

use serde::{Deserialize, Serialize};

use super::money::Money;

/// Kinds of block on a number. Serialised with the `callauth.v1.BlockKind` names.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BlockKind {
    /// The holder blocked every service we bill, prepaid calls included (R6).
    #[default]
    #[serde(rename = "BLOCK_KIND_HOLDER_ALL_SERVICES")]
    HolderAllServices,
    #[serde(rename = "BLOCK_KIND_HOLDER_MERCHANT")]
    HolderMerchant,
    #[serde(rename = "BLOCK_KIND_HOLDER_SERVICE")]
    HolderService,
    /// Exposure reached the limit; lifts when a payment brings it below (R7, R8).
    #[serde(rename = "BLOCK_KIND_CREDIT_LIMIT")]
    CreditLimit,
    /// An invoice is overdue; settlement sets and lifts it (R7, R16).
    #[serde(rename = "BLOCK_KIND_OVERDUE")]
    Overdue,
}

impl BlockKind {
    pub fn is_holder_block(self) -> bool {
        matches!(
            self,
            BlockKind::HolderAllServices | BlockKind::HolderMerchant | BlockKind::HolderService
        )
    }

    pub fn label(self) -> &'static str {
        match self {
            BlockKind::HolderAllServices => "holder_all_services",
            BlockKind::HolderMerchant => "holder_merchant",
            BlockKind::HolderService => "holder_service",
            BlockKind::CreditLimit => "credit_limit",
            BlockKind::Overdue => "overdue",
        }
    }
}

/// Where a number's limit comes from (R9). Serialised with the
/// `callauth.v1.LimitSource` names.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LimitSource {
    /// 1 500 SEK, or 3 000 SEK once an invoice has been paid in full.
    #[default]
    #[serde(rename = "LIMIT_SOURCE_DEFAULT")]
    Default,
    /// The holder asked for a lower limit: it stays, even when the default rises.
    #[serde(rename = "LIMIT_SOURCE_HOLDER_REQUESTED")]
    HolderRequested,
    /// An individual decision after a credit check.
    #[serde(rename = "LIMIT_SOURCE_CREDIT_DECISION")]
    CreditDecision,
}

impl LimitSource {
    pub fn code(self) -> u8 {
        match self {
            LimitSource::Default => 1,
            LimitSource::HolderRequested => 2,
            LimitSource::CreditDecision => 3,
        }
    }

    pub fn from_code(c: u8) -> Option<LimitSource> {
        match c {
            1 => Some(LimitSource::Default),
            2 => Some(LimitSource::HolderRequested),
            3 => Some(LimitSource::CreditDecision),
            _ => None,
        }
    }
}

/// The configured credit rules (R8). Defaults: 1 500 / 3 000 SEK, 80 %.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CreditPolicy {
    pub first_time_limit: Money,
    pub established_limit: Money,
    /// Exposure at which an invoice is sent at once, in percent of the limit.
    pub threshold_percent: u8,
}

impl Default for CreditPolicy {
    fn default() -> Self {
        CreditPolicy {
            first_time_limit: Money::sek(1500),
            established_limit: Money::sek(3000),
            threshold_percent: 80,
        }
    }
}

impl CreditPolicy {
    pub fn default_limit(&self, established: bool) -> Money {
        if established {
            self.established_limit
        } else {
            self.first_time_limit
        }
    }

    /// The limit in force: the default for the number's history, or the fixed
    /// amount a holder request or credit decision set.
    pub fn effective_limit(&self, source: LimitSource, fixed: Money, established: bool) -> Money {
        match source {
            LimitSource::Default => self.default_limit(established),
            LimitSource::HolderRequested | LimitSource::CreditDecision => fixed,
        }
    }

    /// True when `exposure` is at or above the threshold percentage of `limit`.
    /// Integer comparison: no rounding of the threshold amount.
    pub fn at_threshold(&self, exposure: Money, limit: Money) -> bool {
        i128::from(exposure.ore()) * 100
            >= i128::from(limit.ore()) * i128::from(self.threshold_percent)
    }

    /// What posting usage (or any rise of exposure) triggers (R8): the
    /// threshold event once per cycle, and the credit block at the limit.
    pub fn on_exposure_rise(
        &self,
        state: ThresholdState,
        exposure: Money,
        limit: Money,
    ) -> ThresholdEffects {
        ThresholdEffects {
            threshold_reached: !state.threshold_fired && self.at_threshold(exposure, limit),
            limit_reached: !state.credit_blocked && exposure >= limit,
        }
    }

    /// After a payment or a limit change lowers exposure relative to the limit:
    /// the threshold re-arms below the threshold, the credit block lifts below
    /// the limit (R7: "as soon as the payment is registered").
    pub fn on_exposure_fall(
        &self,
        state: ThresholdState,
        exposure: Money,
        limit: Money,
    ) -> ThresholdState {
        ThresholdState {
            threshold_fired: state.threshold_fired && self.at_threshold(exposure, limit),
            credit_blocked: state.credit_blocked && exposure >= limit,
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct ThresholdState {
    /// The 80 % event has fired and exposure has not fallen below it since.
    pub threshold_fired: bool,
    pub credit_blocked: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct ThresholdEffects {
    pub threshold_reached: bool,
    pub limit_reached: bool,
}

/// An administrative change of a number's limit (R9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitChange {
    /// Lower on the holder's request: must not exceed the current default.
    HolderRequested(Money),
    /// Any amount after a credit check; the reference is required.
    CreditDecision {
        limit: Money,
        credit_check_reference: String,
        decided_by: String,
    },
    ResetToDefault,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error(
        "a holder may only lower the limit (at most {0}); a higher limit needs a credit decision"
    )]
    AboveDefault(Money),
    #[error("a credit decision needs the credit check's reference")]
    MissingReference,
    #[error("a limit must be between 0 and 1 000 000 SEK")]
    OutOfRange,
}

impl LimitChange {
    /// Validates the change against the policy; returns the source and fixed amount.
    pub fn resolve(
        &self,
        policy: &CreditPolicy,
        established: bool,
    ) -> Result<(LimitSource, Money), LimitError> {
        let in_range = |m: Money| !m.is_negative() && m <= Money::sek(1_000_000);
        match self {
            LimitChange::HolderRequested(m) => {
                if !in_range(*m) {
                    return Err(LimitError::OutOfRange);
                }
                let default = policy.default_limit(established);
                if *m > default {
                    return Err(LimitError::AboveDefault(default));
                }
                Ok((LimitSource::HolderRequested, *m))
            }
            LimitChange::CreditDecision {
                limit,
                credit_check_reference,
                ..
            } => {
                if !in_range(*limit) {
                    return Err(LimitError::OutOfRange);
                }
                if credit_check_reference.trim().is_empty() {
                    return Err(LimitError::MissingReference);
                }
                Ok((LimitSource::CreditDecision, *limit))
            }
            LimitChange::ResetToDefault => Ok((LimitSource::Default, Money::ZERO)),
        }
    }

    pub fn reference(&self) -> &str {
        match self {
            LimitChange::CreditDecision {
                credit_check_reference,
                ..
            } => credit_check_reference,
            _ => "",
        }
    }
}

/// A number's posted money: what is not invoiced yet and what is invoiced
/// but unpaid (R8's exposure is their sum).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Balances {
    pub unbilled: Money,
    pub invoiced_unpaid: Money,
}

/// Why settlement's account change was refused: the store and the ledger
/// disagree (e.g. a lost write after a failover); reconciliation repairs it.
/// The words are the same on every backend (the Redis Functions build the
/// same sentence from the same öre amounts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BalanceError {
    #[error("invoice {invoice_id} bills {usage_ore} öre but only {unbilled_ore} öre is unbilled")]
    InvoiceExceedsUnbilled {
        invoice_id: String,
        usage_ore: i64,
        unbilled_ore: i64,
    },
    #[error("payment {payment_id} of {amount_ore} öre exceeds the invoiced-unpaid {invoiced_unpaid_ore} öre")]
    PaymentExceedsInvoiced {
        payment_id: String,
        amount_ore: i64,
        invoiced_unpaid_ore: i64,
    },
}

impl Balances {
    pub fn exposure(&self) -> Money {
        self.unbilled + self.invoiced_unpaid
    }

    /// An invoice moves its usage from unbilled to invoiced-unpaid and adds
    /// its fees there (R11–R13); it cannot bill more than is unbilled.
    pub fn apply_invoice(
        &self,
        invoice_id: &str,
        usage: Money,
        fees: Money,
    ) -> Result<Balances, BalanceError> {
        if usage > self.unbilled {
            return Err(BalanceError::InvoiceExceedsUnbilled {
                invoice_id: invoice_id.to_string(),
                usage_ore: usage.ore(),
                unbilled_ore: self.unbilled.ore(),
            });
        }
        Ok(Balances {
            unbilled: self.unbilled - usage,
            invoiced_unpaid: self.invoiced_unpaid + usage + fees,
        })
    }

    /// A payment lowers invoiced-unpaid (R15); it cannot pay more than is
    /// invoiced (an overpayment stays in the ledger as the holder's credit).
    pub fn apply_payment(&self, payment_id: &str, amount: Money) -> Result<Balances, BalanceError> {
        if amount > self.invoiced_unpaid {
            return Err(BalanceError::PaymentExceedsInvoiced {
                payment_id: payment_id.to_string(),
                amount_ore: amount.ore(),
                invoiced_unpaid_ore: self.invoiced_unpaid.ore(),
            });
        }
        Ok(Balances {
            unbilled: self.unbilled,
            invoiced_unpaid: self.invoiced_unpaid - amount,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eighty_percent_of_1500_is_1200() {
        let p = CreditPolicy::default();
        assert!(!p.at_threshold(Money::ore_unchecked(119_999), Money::sek(1500)));
        assert!(p.at_threshold(Money::sek(1200), Money::sek(1500)));
        // Odd limits compare exactly, without rounding the threshold amount.
        assert!(!p.at_threshold(Money::ore_unchecked(800), Money::ore_unchecked(1001)));
        assert!(p.at_threshold(Money::ore_unchecked(801), Money::ore_unchecked(1001)));
    }

    #[test]
    fn threshold_fires_once_and_rearms_below() {
        let p = CreditPolicy::default();
        let limit = Money::sek(1500);
        let s0 = ThresholdState::default();
        let e = p.on_exposure_rise(s0, Money::sek(1200), limit);
        assert_eq!(
            e,
            ThresholdEffects {
                threshold_reached: true,
                limit_reached: false
            }
        );
        let s1 = ThresholdState {
            threshold_fired: true,
            credit_blocked: false,
        };
        assert!(
            !p.on_exposure_rise(s1, Money::sek(1300), limit)
                .threshold_reached
        );
        let e = p.on_exposure_rise(s1, Money::sek(1500), limit);
        assert!(e.limit_reached && !e.threshold_reached);
        // A jump past both fires both.
        let e = p.on_exposure_rise(s0, Money::sek(1600), limit);
        assert!(e.limit_reached && e.threshold_reached);
        // Payment down to 1 000: block lifts, threshold re-arms.
        let s2 = ThresholdState {
            threshold_fired: true,
            credit_blocked: true,
        };
        assert_eq!(
            p.on_exposure_fall(s2, Money::sek(1000), limit),
            ThresholdState::default()
        );
        // Payment down to 1 400 only: block lifts, threshold stays fired.
        assert_eq!(
            p.on_exposure_fall(s2, Money::sek(1400), limit),
            ThresholdState {
                threshold_fired: true,
                credit_blocked: false
            }
        );
    }

    #[test]
    fn limits_follow_r9() {
        let p = CreditPolicy::default();
        assert_eq!(
            p.effective_limit(LimitSource::Default, Money::ZERO, false),
            Money::sek(1500)
        );
        assert_eq!(
            p.effective_limit(LimitSource::Default, Money::ZERO, true),
            Money::sek(3000)
        );
        assert_eq!(
            p.effective_limit(LimitSource::HolderRequested, Money::sek(500), true),
            Money::sek(500)
        );
        assert_eq!(
            LimitChange::HolderRequested(Money::sek(2000)).resolve(&p, false),
            Err(LimitError::AboveDefault(Money::sek(1500)))
        );
        assert_eq!(
            LimitChange::HolderRequested(Money::sek(2000)).resolve(&p, true),
            Ok((LimitSource::HolderRequested, Money::sek(2000)))
        );
        let no_ref = LimitChange::CreditDecision {
            limit: Money::sek(10_000),
            credit_check_reference: " ".into(),
            decided_by: "kreditchef".into(),
        };
        assert_eq!(no_ref.resolve(&p, false), Err(LimitError::MissingReference));
        let ok = LimitChange::CreditDecision {
            limit: Money::sek(10_000),
            credit_check_reference: "UC-2026-1234".into(),
            decided_by: "kreditchef".into(),
        };
        assert_eq!(
            ok.resolve(&p, false),
            Ok((LimitSource::CreditDecision, Money::sek(10_000)))
        );
    }

    #[test]
    fn invoices_and_payments_move_money_exactly() {
        let ore = Money::ore_unchecked;
        let b = Balances {
            unbilled: ore(125_590),
            invoiced_unpaid: ore(0),
        };
        // 1 255,90 kr invoiced with a 30 kr paper fee: 1 285,90 kr to pay.
        let b = b.apply_invoice("F1", ore(125_590), ore(3000)).unwrap();
        assert_eq!(
            b,
            Balances {
                unbilled: ore(0),
                invoiced_unpaid: ore(128_590)
            }
        );
        let b = b.apply_payment("P1", ore(100_000)).unwrap();
        assert_eq!(b.invoiced_unpaid, ore(28_590));
        assert_eq!(
            b.apply_payment("P2", ore(28_591)).unwrap_err().to_string(),
            "payment P2 of 28591 öre exceeds the invoiced-unpaid 28590 öre"
        );
        assert_eq!(
            b.apply_invoice("F2", ore(1), ore(0))
                .unwrap_err()
                .to_string(),
            "invoice F2 bills 1 öre but only 0 öre is unbilled"
        );
    }
}
