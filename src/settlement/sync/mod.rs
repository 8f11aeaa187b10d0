//! The ledger back to the state store (DESIGN invariant 6): the projector
//! applies the queued store operations; reconciliation compares the store's
//! accounts with the ledger and repairs them.

pub mod projector;
pub mod reconcile;
