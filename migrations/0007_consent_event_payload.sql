-- Issue 13.3: the event log keeps a payload only where no table holds the
-- fact. A consent_recorded event's every field is in its `consents` row
-- (R3, R19), so the event row keeps only what idempotency and ordering need
-- (event_id, partition, stream_id, kind, at) and its payload is NULL. The
-- personal-data extract, erasure and retention read and clear `consents`,
-- which is where the consent is, once. Usage events keep theirs: the
-- authorization instant, the exposure and the uncollected amount are in no
-- table.
alter table events alter column payload drop not null;
