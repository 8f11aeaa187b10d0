-- Issue 11: the settlement's books right on every date.

-- Account changes the state store refused for good (not "unavailable": the
-- store answered no, e.g. a payment larger than the invoiced amount a Redis
-- failover left it). Such a change is set aside instead of blocking the
-- number's later changes; reconciliation rewrites the number's account from
-- the ledger and closes it (`resolved_at`, `resolution`). A change is
-- pending while applied_at, refused_at are both null.
alter table store_ops
    add column refused_at  timestamptz,
    add column resolved_at timestamptz,
    add column resolution  text;
create index store_ops_refused on store_ops (number) where refused_at is not null and resolved_at is null;

-- R16, lag 1981:739 4 §: a claim whose invoice amount is paid and of which
-- only the ladder's own fees and interest are left is not escalated; the
-- rest is written off (`fees_waived`, fee_ore and interest_ore negative).
alter table collection_steps
    drop constraint collection_steps_step_check,
    add constraint collection_steps_step_check
        check (step in ('overdue', 'reminder', 'collection', 'enforcement',
                        'paused_dispute', 'paused_plan', 'plan_broken', 'fees_waived'));

-- R15: a payment of 0 SEK or a BgMax deduction cannot be matched to a claim;
-- staff take it out of the manual queue with a reason (`dismissed`; a
-- deduction is written off in the ledger).
alter table payments
    drop constraint payments_status_check,
    add constraint payments_status_check
        check (status in ('matched', 'unmatched', 'declined', 'dismissed'));
alter table payments add column dismissed_reason text;

-- R11: calendar_runs also records the monthly invoice run and the merchant
-- statements under the day they belong to (run_date), with the day they ran
-- in details, and every day or run that was missed and caught up later
-- (job 'missed:<job>'). completed_at of those rows is the injected clock's
-- time, so that "missed in the last 24 hours" is measured on one clock.
create index calendar_runs_job on calendar_runs (job, run_date);
