//! Collecting what is owed (SPEC R7, R16, R18, R19): late-payment interest,
//! the reminder and collection ladder, installment plans and disputes, with
//! the overdue facts and step records they share (`claim`).

pub mod claim;
pub mod disputes;
pub mod interest;
pub mod ladder;
pub mod plans;
