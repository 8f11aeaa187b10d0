//! The settlement side: the PostgreSQL ledger, invoicing, payments, reminders,
//! collection, merchant settlements and personal data (SPEC R11–R22).
//!
//! The pure building blocks come first: OCR references (`ocr`), Bankgirot's
//! BgMax payment files (`bgmax`), the Stockholm invoicing calendar
//! (`calendar`), late-payment interest (`interest`) and invoice documents
//! (`pdf`).

pub mod bgmax;
pub mod calendar;
pub mod consumer;
pub mod context;
pub mod ingest;
pub mod interest;
pub mod invoicing;
pub mod ledger;
pub mod ocr;
pub mod pdf;
pub mod policy;
pub mod projector;

pub use context::{Settlement, SettlementError, SettlementResult};
pub use policy::SettlementPolicy;
