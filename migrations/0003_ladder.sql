-- Installment plans (R18) count the payments made towards their invoices
-- since the plan was agreed. This column keeps what had already been
-- allocated to those invoices at that moment (read under the invoices' row
-- locks), so "paid since the plan" is sum(payment_allocations) minus it:
-- exact, and independent of which clock stamped the allocations and of the
-- order in which concurrent payments took their ids.
alter table installment_plans add column paid_before_ore bigint not null default 0;
