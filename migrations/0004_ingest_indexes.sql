-- The ingest path writes about twenty index entries per call (two events,
-- the CDR, the consent, two ledger entries). Two of them served no query:
--
-- * events (kind, at): the staff's queries by kind and time are about the
--   rare kinds (docs/runbook.md: hold_expired); usage and consents have
--   tables of their own with their own indexes.
-- * usage (invoice_id): every new CDR added a NULL entry; lookups are by an
--   invoice, so only invoiced rows need to be in it.
--
-- Measured with examples/ingest_rate.rs: about 8 % more events per second
-- on the commit path, in alternating runs (docs/performance.md).
drop index events_kind_at;
create index events_kind_at on events (kind, at)
    where kind not in ('usage_posted', 'consent_recorded');

drop index usage_invoice;
create index usage_invoice on usage (invoice_id) where invoice_id is not null;
