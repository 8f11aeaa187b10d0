//! The settlement side: the PostgreSQL ledger, invoicing, payments, reminders,
//! collection, merchant settlements and personal data (SPEC R11–R22).
//!
//! The pure building blocks come first: OCR references (`ocr`), Bankgirot's
//! BgMax payment files (`bgmax`), the Stockholm invoicing calendar
//! (`calendar`), late-payment interest (`interest`) and invoice documents
//! (`pdf`).

pub mod api;
pub mod bgmax;
pub mod calendar;
pub mod cli;
pub mod config;
pub mod consumer;
pub mod context;
pub mod credit_note;
pub mod daemon;
pub mod daily;
pub mod delivery;
pub mod disputes;
pub mod ingest;
pub mod interest;
pub mod invoicing;
pub mod jsonl;
pub mod ladder;
pub mod ledger;
pub mod merchants;
pub mod ocr;
pub mod payments;
pub mod pdf;
pub mod personal;
pub mod plans;
pub mod policy;
pub mod prepaid_orders;
pub mod projector;
pub mod reconcile;
pub mod retention;
pub mod scheduler;
pub mod swish;
pub mod time;

pub use context::{Settlement, SettlementError, SettlementResult};
pub use policy::SettlementPolicy;
