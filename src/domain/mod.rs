//! The domain: pure types and rules, no I/O, no clock (STYLE "pure core").
//!
//! `rating` and `decision` are the heart (SPEC R2–R10); `catalog` holds the
//! services and their immutable terms (R4, R5); `account` the credit rules
//! (R7–R9); `prepaid` the codes (R17); `event` the outbox contract with
//! settlement (DESIGN invariant 6); `text` the one rule for clients' free text.

pub mod account;
pub mod catalog;
pub mod decision;
pub mod event;
pub mod ids;
pub mod luhn;
pub mod money;
pub mod number;
pub mod prepaid;
pub mod rating;
pub mod text;

pub use account::{BlockKind, CreditPolicy, LimitChange, LimitSource};
pub use catalog::{CatalogSnapshot, Merchant, Service, ServiceSpec, Terms};
pub use decision::{Consent, Decision, DenyReason, Funding, Grant, GrantPolicy};
pub use event::{Event, EventBody};
pub use ids::{CallId, Label, MerchantId, RecordId, Reference, TermsId};
pub use money::Money;
pub use number::E164;
pub use prepaid::{CodeHasher, CodeId, PrepaidCode};
pub use rating::{rate, Rated, Tariff};
