//! What an upheld dispute credits, and on whose account (SPEC R19, R20;
//! mervärdesskattelagen 15 kap.: a credit note reduces the output VAT).
//!
//! An invoice is its calls (each merchant's, at its VAT rate), our paper
//! fee (with its VAT), the reminder and collection fees and the interest
//! (outside the scope of VAT). What the holder paid towards it, and any
//! earlier overpayment it used, is taken to have paid the calls first, then
//! the paper fee, the reminder fee, the collection fee and the interest — so
//! the merchants keep as much of their calls as was collected. What remains
//! unpaid when the dispute is upheld is credited component by component:
//!
//! * the uncollectable calls are charged back to each merchant's payable
//!   account without VAT, split over the merchants and rates in proportion
//!   to their calls (largest remainder, so the parts add up to the öre), and
//!   the VAT in them is taken off the output VAT of their rate;
//! * our own fees and interest are reversed from their income accounts (and
//!   the paper fee's VAT from output VAT): a credited fee is income we never
//!   had, not a loss;
//! * only what no component explains (a fee this module does not know)
//!   is booked to `losses:disputes`.
//!
//! Pure arithmetic on integer öre; `disputes.rs` reads the components and
//! books the result.

use crate::domain::VatRate;

/// The calls of one merchant at one VAT rate on the invoice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageGroup {
    pub merchant_id: String,
    /// None for calls booked before VAT rates were recorded (no VAT split).
    pub rate: Option<VatRate>,
    pub gross_ore: i64,
    pub vat_ore: i64,
}

/// What the invoice consists of, and what was received towards it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct InvoiceParts {
    pub usage: Vec<UsageGroup>,
    pub paper_fee_ore: i64,
    pub paper_fee_vat_ore: i64,
    pub paper_fee_rate: Option<VatRate>,
    pub reminder_fee_ore: i64,
    pub collection_fee_ore: i64,
    pub interest_ore: i64,
    /// Fees on the invoice not explained by the components above.
    pub other_fees_ore: i64,
    /// Paid, plus earlier credits the invoice used.
    pub received_ore: i64,
}

/// The credited part of one usage group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chargeback {
    pub merchant_id: String,
    pub rate: Option<VatRate>,
    pub gross_ore: i64,
    pub vat_ore: i64,
    /// What the merchant is charged back: gross without VAT.
    pub base_ore: i64,
}

/// The credit note.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CreditNote {
    pub chargebacks: Vec<Chargeback>,
    pub paper_fee_ore: i64,
    pub paper_fee_vat_ore: i64,
    pub reminder_fee_ore: i64,
    pub collection_fee_ore: i64,
    pub interest_ore: i64,
    pub unattributed_ore: i64,
}

impl CreditNote {
    /// Everything credited.
    pub fn total_ore(&self) -> i64 {
        self.chargebacks.iter().map(|c| c.gross_ore).sum::<i64>()
            + self.paper_fee_ore
            + self.reminder_fee_ore
            + self.collection_fee_ore
            + self.interest_ore
            + self.unattributed_ore
    }
}

/// The credit note of an invoice whose unpaid rest is credited.
pub fn credit_note(p: &InvoiceParts) -> CreditNote {
    let usage_ore: i64 = p.usage.iter().map(|g| g.gross_ore).sum();
    // The money received covers the components in this order; each is
    // credited what it lacks.
    let mut received = p.received_ore.max(0);
    let mut lacking = |amount: i64| {
        let covered = amount.min(received).max(0);
        received -= covered;
        amount - covered
    };
    let usage_credit = lacking(usage_ore);
    let paper = lacking(p.paper_fee_ore);
    let reminder = lacking(p.reminder_fee_ore);
    let collection = lacking(p.collection_fee_ore);
    let interest = lacking(p.interest_ore);
    let other = lacking(p.other_fees_ore);

    let weights: Vec<i64> = p.usage.iter().map(|g| g.gross_ore).collect();
    let chargebacks = p
        .usage
        .iter()
        .zip(largest_remainder(usage_credit, &weights))
        .filter(|(_, part)| *part > 0)
        .map(|(g, part)| {
            let vat = share(g.vat_ore, part, g.gross_ore);
            Chargeback {
                merchant_id: g.merchant_id.clone(),
                rate: g.rate,
                gross_ore: part,
                vat_ore: vat,
                base_ore: part - vat,
            }
        })
        .collect();
    CreditNote {
        chargebacks,
        paper_fee_ore: paper,
        paper_fee_vat_ore: share(p.paper_fee_vat_ore, paper, p.paper_fee_ore),
        reminder_fee_ore: reminder,
        collection_fee_ore: collection,
        interest_ore: interest,
        unattributed_ore: other,
    }
}

/// `whole_part` of `whole`'s `part_of`, rounded half-up; exact at the ends.
fn share(whole_part: i64, part: i64, whole: i64) -> i64 {
    if part == whole {
        return whole_part;
    }
    if whole == 0 || part == 0 {
        return 0;
    }
    let num = i128::from(whole_part) * i128::from(part);
    let den = i128::from(whole);
    ((2 * num + den) / (2 * den)) as i64
}

/// Splits `total` over `weights` in proportion, rounding down and giving
/// the öre left over to the largest remainders (the first on a tie), so the
/// parts add up to `total` exactly. All weights zero: nothing is split.
pub fn largest_remainder(total: i64, weights: &[i64]) -> Vec<i64> {
    let sum: i128 = weights.iter().map(|&w| i128::from(w.max(0))).sum();
    if sum == 0 || total <= 0 {
        return vec![0; weights.len()];
    }
    let mut parts = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    for (i, &w) in weights.iter().enumerate() {
        let exact = i128::from(total) * i128::from(w.max(0));
        parts.push((exact / sum) as i64);
        remainders.push((exact % sum, i));
    }
    let mut left = total - parts.iter().sum::<i64>();
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in remainders {
        if left == 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(m: &str, rate: VatRate, gross: i64) -> UsageGroup {
        UsageGroup {
            merchant_id: m.into(),
            rate: Some(rate),
            gross_ore: gross,
            vat_ore: rate.vat_in_ore(gross),
        }
    }

    #[test]
    fn largest_remainder_adds_up() {
        assert_eq!(largest_remainder(100, &[1, 1, 1]), vec![34, 33, 33]);
        assert_eq!(largest_remainder(10, &[0, 5]), vec![0, 10]);
        assert_eq!(largest_remainder(0, &[3, 4]), vec![0, 0]);
        assert_eq!(largest_remainder(7, &[0, 0]), vec![0, 0]);
        // 1 000 over 2 990 and 9 975: 230.67… and 769.32… → 231 and 769.
        assert_eq!(largest_remainder(1000, &[2990, 9975]), vec![231, 769]);
    }

    #[test]
    fn an_unpaid_invoice_is_credited_whole() {
        // 299,00 tarot (25 %: 59,80 VAT), 99,75 exempt, 30,00 paper fee (6,00 VAT),
        // 60,00 reminder fee; nothing paid.
        let p = InvoiceParts {
            usage: vec![
                group("stjarnlinjen", VatRate::STANDARD, 29_900),
                group("radgivarna", VatRate::EXEMPT, 9_975),
            ],
            paper_fee_ore: 3000,
            paper_fee_vat_ore: 600,
            paper_fee_rate: Some(VatRate::STANDARD),
            reminder_fee_ore: 6000,
            ..InvoiceParts::default()
        };
        let c = credit_note(&p);
        assert_eq!(
            c.chargebacks,
            vec![
                Chargeback {
                    merchant_id: "stjarnlinjen".into(),
                    rate: Some(VatRate::STANDARD),
                    gross_ore: 29_900,
                    vat_ore: 5_980,
                    base_ore: 23_920
                },
                Chargeback {
                    merchant_id: "radgivarna".into(),
                    rate: Some(VatRate::EXEMPT),
                    gross_ore: 9_975,
                    vat_ore: 0,
                    base_ore: 9_975
                },
            ]
        );
        assert_eq!((c.paper_fee_ore, c.paper_fee_vat_ore), (3000, 600));
        assert_eq!(c.reminder_fee_ore, 6000);
        assert_eq!(c.unattributed_ore, 0);
        assert_eq!(c.total_ore(), 29_900 + 9_975 + 3000 + 6000);
    }

    #[test]
    fn what_was_paid_paid_the_calls_first() {
        // 100,00 paid of 299,00 + 99,75 + 30,00: the calls lack 298,75,
        // the fee all of its 30,00. 298,75 over 299,00 and 99,75:
        // 29 875 × 29 900 / 39 875 = 22 401.5… and 7 473.4… → 22 402 and 7 473.
        let p = InvoiceParts {
            usage: vec![
                group("stjarnlinjen", VatRate::STANDARD, 29_900),
                group("radgivarna", VatRate::EXEMPT, 9_975),
            ],
            paper_fee_ore: 3000,
            paper_fee_vat_ore: 600,
            paper_fee_rate: Some(VatRate::STANDARD),
            received_ore: 10_000,
            ..InvoiceParts::default()
        };
        let c = credit_note(&p);
        let parts: Vec<(i64, i64, i64)> = c
            .chargebacks
            .iter()
            .map(|x| (x.gross_ore, x.vat_ore, x.base_ore))
            .collect();
        // 22 402 of 29 900 carries 5 980 × 22 402 / 29 900 = 4 480.4 → 4 480 VAT.
        assert_eq!(parts, vec![(22_402, 4_480, 17_922), (7_473, 0, 7_473)]);
        assert_eq!((c.paper_fee_ore, c.paper_fee_vat_ore), (3000, 600));
        assert_eq!(c.total_ore(), 29_900 + 9_975 + 3000 - 10_000);
        // Paid more than the calls: only the fees are credited.
        let p = InvoiceParts {
            received_ore: 39_875 + 1000,
            ..p
        };
        let c = credit_note(&p);
        assert!(c.chargebacks.is_empty());
        // 20,00 of the 30,00 fee lacks: 600 × 2000 / 3000 = 400 VAT.
        assert_eq!((c.paper_fee_ore, c.paper_fee_vat_ore), (2000, 400));
    }
}
