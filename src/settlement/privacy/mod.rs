//! Personal data (SPEC R21, R22): who holds a number, the extract, erasure,
//! the marketing opt-out, and how long anything is kept.

pub mod personal;
pub mod retention;
