//! The domain: pure types and rules, no I/O, no clock (STYLE "pure core").
//!
//! `rating` and `decision` are the heart (R2–R10, docs/rules.md); `hold` a
//! call's hold from Authorize to its end (R10); `catalog` holds the services
//! and their immutable terms (R4, R5); `account` the credit rules and the
//! balance changes invoices and payments make (R7–R9, R15); `prepaid` the
//! codes and `lockout` the wrong-code rule (R17); `event` the outbox contract
//! with settlement; `vat` the VAT rates of the terms; `text` the one rule for
//! clients' free text.

pub mod account;
pub mod catalog;
pub mod decision;
pub mod event;
pub mod hold;
pub mod ids;
pub mod lockout;
pub mod luhn;
pub mod money;
pub mod number;
pub mod prepaid;
pub mod rating;
pub mod text;
pub mod vat;

pub use account::{Balances, BlockKind, CreditPolicy, LimitChange, LimitSource};
pub use catalog::{CatalogSnapshot, Merchant, Service, ServiceSpec, Terms};
pub use decision::{Consent, Decision, DenyReason, Funding, Grant, GrantPolicy};
pub use event::{Event, EventBody};
pub use ids::{CallId, Label, MerchantId, RecordId, Reference, TermsId};
pub use money::Money;
pub use number::E164;
pub use prepaid::{CodeHasher, CodeId, PrepaidCode};
pub use rating::{rate, Rated, Tariff};
pub use vat::VatRate;
