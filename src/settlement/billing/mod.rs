//! Billing (SPEC R8, R11–R14, R19, R20): the invoices themselves, what a
//! document says (`document` reads it from the ledger, `layout` puts it on
//! the page), where it goes (`route`), held invoices and
//! the mailing queue (`delivery`), what a credit note credits, and the
//! merchants' statements.

pub mod credit_note;
pub mod delivery;
pub mod document;
pub mod invoicing;
pub mod layout;
pub mod merchants;
pub mod route;
