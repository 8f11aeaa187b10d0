//! The settlement side: the PostgreSQL ledger, invoicing, payments, reminders,
//! collection, merchant settlements and personal data (SPEC R11–R22).
//!
//! Grouped by what each part does (issue 12; docs/architecture.md):
//!
//! - the shared core at this level: the worker's [`context`] (pool, store,
//!   rules, clock), the double-entry [`ledger`], the rules in force
//!   ([`policy`]), the Stockholm invoicing [`calendar`] and late-payment
//!   [`interest`];
//! - [`ingest`]: the gateway's events into the ledger (stream consumer,
//!   JSON-lines outbox);
//! - [`sync`]: the ledger back to the state store (projector, reconciliation);
//! - [`billing`]: invoices, where documents go, credit notes, merchant
//!   statements;
//! - [`payments`]: bankgiro and Swish payments, matching, prepaid-code orders;
//! - [`collection`]: the reminder and collection ladder, installment plans,
//!   disputes, and the claim facts they share;
//! - [`privacy`]: personal data (extract, erasure, opt-out) and retention;
//! - [`formats`]: pure file formats — BgMax, OCR references, PDF bytes;
//! - [`worker`]: the `callauth-settlement` process — configuration, commands,
//!   the daemon, the daily calendar and its loop, the gRPC API, the clock.
//!
//! Dependencies point one way, between modules and between groups
//! (`.ci/settlement-deps --groups` checks and prints the graph): `worker`
//! uses the groups; `ingest` uses `billing` and `sync`; `payments` uses
//! `collection` and `sync`; `sync` uses `collection`; `collection` uses
//! `billing`; everything uses the core; `formats`, `calendar` and `interest`
//! use nothing of settlement's.

pub mod billing;
pub mod calendar;
pub mod collection;
pub mod context;
pub mod formats;
pub mod ingest;
pub mod interest;
pub mod ledger;
pub mod payments;
pub mod policy;
pub mod privacy;
pub mod sync;
pub mod worker;

pub use context::{Settlement, SettlementError, SettlementResult};
pub use policy::SettlementPolicy;
