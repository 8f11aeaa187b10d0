//! Collecting what is owed (SPEC R7, R16, R18, R19): the reminder and
//! collection ladder, installment plans and disputes, with the overdue facts
//! and step records they share (`claim`). Late-payment interest, a pure rule
//! the configuration also needs, is `settlement::interest`.

pub mod claim;
pub mod disputes;
pub mod ladder;
pub mod plans;
