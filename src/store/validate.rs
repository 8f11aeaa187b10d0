//! Checks of a store step's arguments that need no state, shared by both
//! backends so that they refuse the same requests with the same words.

use super::{BlockChange, StoreError, StoreResult};
use crate::domain::account::BlockKind;
use crate::domain::{MerchantId, Money, E164};

/// Validates a block change and returns its normalised target.
pub fn normalise_block_target(change: &BlockChange) -> StoreResult<String> {
    match change.kind {
        BlockKind::HolderMerchant => MerchantId::parse(&change.target)
            .map(|m| m.to_string())
            .map_err(|e| StoreError::Rejected(e.to_string())),
        BlockKind::HolderService => E164::parse(&change.target)
            .map(|n| n.as_str().to_string())
            .map_err(|e| StoreError::Rejected(format!("service number: {e}"))),
        BlockKind::HolderAllServices | BlockKind::Overdue => Ok(String::new()),
        BlockKind::CreditLimit => Err(StoreError::Rejected(
            "the credit block follows the limit and is lifted by payment, not by hand".into(),
        )),
    }
}

pub fn check_amount(m: Money, what: &str) -> StoreResult<()> {
    if m.is_negative() {
        return Err(StoreError::Rejected(format!("{what} must not be negative")));
    }
    Ok(())
}

pub fn check_prepaid_amount(m: Money) -> StoreResult<()> {
    if m <= Money::ZERO || m > Money::sek(100_000) {
        return Err(StoreError::Rejected(
            "a prepaid amount must be between 0.01 and 100 000 SEK".into(),
        ));
    }
    Ok(())
}
