-- Issue 11: VAT, delivery (held invoices, e-mail bounces), chargebacks of
-- upheld disputes, and what erasure and retention need.

-- VAT (mervärdesskattelagen 2023:200): each call's rate from the terms the
-- caller accepted, and the VAT contained in its charge (prices are
-- consumer prices, VAT included). Calls booked before this migration have
-- no rate (null) and no VAT split: their whole charge was credited to the
-- merchant, and the statements keep treating them so.
alter table usage add column vat_rate_percent integer
    check (vat_rate_percent in (0, 6, 12, 25));
alter table usage add column vat_ore bigint not null default 0;

-- An invoice line's VAT rate and the VAT in its amount; null for what is
-- outside the scope of VAT (reminder and collection fees, interest,
-- credits of overpayments).
alter table invoice_lines add column vat_rate_percent integer
    check (vat_rate_percent in (0, 6, 12, 25));
alter table invoice_lines add column vat_ore bigint not null default 0;

-- Merchant statements: the VAT in the collected calls (declared by us) and
-- what upheld disputes charged back (the merchant's share, VAT excluded).
alter table merchant_statements add column vat_ore bigint not null default 0;
alter table merchant_statements add column chargeback_ore bigint not null default 0;

-- A held invoice (no postal address and no e-mail to send it to) is in the
-- books but not sent, so it is not due and the ladder leaves it alone.
alter table invoices drop constraint invoices_status_check;
alter table invoices add constraint invoices_status_check
    check (status in ('open', 'paid', 'credited', 'held'));
alter table invoices add column credited_at timestamptz;
create index invoices_held on invoices (number) where status = 'held';

-- Documents: held with their invoice; the mailing system's report
-- (sent, bounced) and, for a bounced e-mail, the paper copy sent instead.
alter table documents drop constraint documents_status_check;
alter table documents add constraint documents_status_check
    check (status in ('queued', 'sent', 'bounced', 'held'));
alter table documents add column reported_at timestamptz;
alter table documents add column report_detail text;
alter table documents add column fallback_of bigint references documents (id);
create index documents_invoice on documents (invoice_id);

-- R13: an e-mail address that bounced is not used again until it changes.
alter table holders add column email_bounced_at timestamptz;

-- R19, R20: the uncollectable part of a credited invoice's calls, charged
-- back to each merchant (VAT excluded; the VAT is reversed on its own) and
-- shown on the merchant's next statement.
create table merchant_chargebacks (
    id                      bigserial primary key,
    dispute_id              bigint not null references disputes (id),
    invoice_id              bigint not null references invoices (id),
    merchant_id             text not null,
    vat_rate_percent        integer,
    gross_ore               bigint not null,
    vat_ore                 bigint not null,
    base_ore                bigint not null,
    created_at              timestamptz not null,
    merchant_statement_id   bigint references merchant_statements (id)
);
create index merchant_chargebacks_unsettled on merchant_chargebacks (merchant_id)
    where merchant_statement_id is null;

-- Erasure (R21) finds a number's events by their ids ("block:<number>:3").
-- Only the rare kinds are keyed by number, and only they are indexed, so
-- the ingest path of usage and consents pays nothing for it.
create index events_rare_ids on events (event_id text_pattern_ops)
    where kind not in ('usage_posted', 'consent_recorded');

-- Retention (Bokföringslagen 7 kap. 2 §) deletes by date without an index
-- of its own: it runs once a month, while an index on usage or ledger
-- entries by time would cost every call on the ingest path (0004).
