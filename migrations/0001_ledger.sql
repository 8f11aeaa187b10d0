-- The callauth ledger: the system of record (DESIGN invariant 6).
-- Money is integer öre (bigint) everywhere; dates of the invoicing calendar
-- are Europe/Stockholm dates (date); instants are timestamptz (UTC).

-- Holders (number owners) and their numbers (R1, R21, R22).
create table holders (
    id                  bigserial primary key,
    customer_number     text not null unique,
    name                text,
    address_lines       text[] not null default '{}',
    email               text,
    -- R13: e-mail invoices carry no fee, paper invoices do.
    invoice_delivery    text not null default 'paper' check (invoice_delivery in ('email', 'paper')),
    -- 12 digits; shown masked everywhere except the personal-data extract.
    personal_number     text,
    -- R22: no direct marketing from any merchant, or send it elsewhere.
    marketing_opt_out   boolean not null default false,
    marketing_address   text,
    erased_at           timestamptz,
    created_at          timestamptz not null default now(),
    updated_at          timestamptz not null default now()
);

create table numbers (
    number              text primary key,          -- E.164
    holder_id           bigint references holders (id),
    holder_registered   boolean,
    -- R8: the first invoice has been paid in full (the default limit is 3 000 SEK).
    established         boolean not null default false,
    first_seen_at       timestamptz not null default now()
);
create index numbers_holder on numbers (holder_id);

-- Every event consumed from the state store, once (idempotency by event id).
create table events (
    event_id            text primary key,
    partition           integer not null,
    stream_id           text,
    kind                text not null,
    at                  timestamptz not null,
    payload             jsonb not null,
    committed_at        timestamptz not null default now()
);
create index events_kind_at on events (kind, at);

create table dead_letters (
    id                  bigserial primary key,
    partition           integer not null,
    stream_id           text not null,
    deliveries          integer not null,
    payload             text not null,
    error               text not null,
    at                  timestamptz not null default now(),
    unique (partition, stream_id)
);

-- The caller's two-step consent, kept as evidence (R3, R19).
create table consents (
    call_id                 text primary key,
    number                  text,
    number_withheld         boolean not null,
    service_number          text not null,
    merchant_id             text not null,
    funding                 text not null,
    code_id                 text,
    terms_id                text not null,
    price_per_minute_ore    bigint not null,
    minimum_minutes         integer not null,
    billing_step_seconds    integer not null,
    reminder_fee_ore        bigint not null,
    age_confirmed           boolean not null,
    own_number_confirmed    boolean not null,
    step1_at                timestamptz,
    terms_accepted          boolean not null,
    step2_at                timestamptz,
    ivr_client              text not null,
    ivr_id                  text not null,
    line_ref                text not null,
    authorized_at           timestamptz not null
);
create index consents_number on consents (number);

-- Merchants as known from the catalogue (R20).
create table merchants (
    merchant_id         text primary key,
    name                text not null,
    org_number          text not null default '',
    fee_basis_points    integer not null,
    updated_at          timestamptz not null default now()
);

create table merchant_statements (
    id                  bigserial primary key,
    merchant_id         text not null,
    period_start        date not null,
    period_end          date not null,
    calls               integer not null,
    gross_ore           bigint not null,
    fee_ore             bigint not null,
    net_ore             bigint not null,
    created_at          timestamptz not null default now(),
    payout_reference    text,
    paid_at             timestamptz,
    unique (merchant_id, period_end)
);

-- Invoices (R11–R14) and their lines.
create table invoices (
    id                  bigserial primary key,
    number              text not null references numbers (number),
    holder_id           bigint references holders (id),
    kind                text not null check (kind in ('threshold', 'monthly')),
    ocr                 text not null unique,
    issue_date          date not null,
    due_date            date not null,
    period_start        date,
    period_end          date,
    delivery            text not null check (delivery in ('email', 'paper')),
    usage_ore           bigint not null,
    fees_ore            bigint not null default 0,
    interest_ore        bigint not null default 0,
    credits_ore         bigint not null default 0,
    -- What is claimed: usage + fees + interest − credits (fees and interest grow with the ladder).
    total_ore           bigint not null,
    paid_ore            bigint not null default 0,
    status              text not null default 'open' check (status in ('open', 'paid', 'credited')),
    -- R16: where the claim is on the reminder/collection ladder.
    stage               text not null default 'invoiced'
                        check (stage in ('invoiced', 'reminded', 'collection', 'enforcement')),
    stage_due_date      date not null,
    reminder_fee_agreed boolean not null default true,
    disputed            boolean not null default false,
    plan_id             bigint,
    paid_at             timestamptz,
    created_at          timestamptz not null default now()
);
create index invoices_number_status on invoices (number, status);
create index invoices_open_due on invoices (stage_due_date) where status = 'open';

create table invoice_lines (
    id                  bigserial primary key,
    invoice_id          bigint not null references invoices (id),
    kind                text not null check (kind in ('call', 'fee', 'interest', 'credit')),
    call_id             text,
    -- Neutral wording: never the service's category (a third party may open the letter).
    description         text not null,
    amount_ore          bigint not null,
    created_at          timestamptz not null default now()
);
create index invoice_lines_invoice on invoice_lines (invoice_id);

-- Posted usage (CDRs) with the terms applied.
create table usage (
    call_id                 text primary key,
    record_id               text not null,
    merchant_id             text not null,
    service_number          text not null,
    number                  text,
    funding                 text not null check (funding in ('postpaid', 'prepaid')),
    code_id                 text,
    terms_id                text not null,
    price_per_minute_ore    bigint not null,
    billing_step_seconds    integer not null,
    minimum_minutes         integer not null,
    started_at              timestamptz not null,
    duration_seconds        integer not null,
    billed_seconds          integer not null,
    charge_ore              bigint not null,
    granted_seconds         integer not null,
    overrun_seconds         integer not null,
    late                    boolean not null,
    posted_at               timestamptz not null,
    invoice_id              bigint references invoices (id),
    merchant_statement_id   bigint references merchant_statements (id)
);
create index usage_uninvoiced on usage (number, posted_at) where invoice_id is null and funding = 'postpaid';
create index usage_invoice on usage (invoice_id);
create index usage_unsettled on usage (merchant_id) where merchant_statement_id is null;

-- Rendered documents (invoice, reminder, collection demand) for the mailing system.
create table documents (
    id                  bigserial primary key,
    invoice_id          bigint not null references invoices (id),
    kind                text not null check (kind in ('invoice', 'reminder', 'collection')),
    channel             text not null check (channel in ('email', 'paper')),
    pdf                 bytea not null,
    status              text not null default 'queued' check (status in ('queued', 'sent', 'bounced')),
    created_at          timestamptz not null default now(),
    sent_at             timestamptz
);
create index documents_queued on documents (status, created_at);

-- Payments (R15) and where they went.
create table payments (
    id                  bigserial primary key,
    channel             text not null check (channel in ('bankgiro', 'swish', 'manual')),
    -- Idempotency: BgMax payment key, Swish payment id.
    external_id         text not null unique,
    reference           text,
    amount_ore          bigint not null,
    payer_name          text,
    payer_alias         text,
    paid_on             date not null,
    received_at         timestamptz not null default now(),
    status              text not null check (status in ('matched', 'unmatched', 'declined')),
    unallocated_ore     bigint not null default 0,
    matched_by          text,
    raw                 jsonb
);
create index payments_unmatched on payments (status) where status = 'unmatched';

create table payment_allocations (
    id                  bigserial primary key,
    payment_id          bigint not null references payments (id),
    kind                text not null check (kind in ('invoice', 'prepaid', 'credit')),
    invoice_id          bigint references invoices (id),
    prepaid_order_id    bigint,
    number              text,
    amount_ore          bigint not null,
    created_at          timestamptz not null default now()
);
create index payment_allocations_payment on payment_allocations (payment_id);
create index payment_allocations_invoice on payment_allocations (invoice_id);

create table bgmax_files (
    file_key            text primary key,
    sha256              text not null,
    sections            integer not null,
    payments            integer not null,
    total_ore           bigint not null,
    test_file           boolean not null,
    imported_at         timestamptz not null default now()
);

-- Reminders, collection and enforcement, one row per step (R16).
create table collection_steps (
    id                  bigserial primary key,
    invoice_id          bigint not null references invoices (id),
    step                text not null check (step in ('overdue', 'reminder', 'collection', 'enforcement',
                                                      'paused_dispute', 'paused_plan', 'plan_broken')),
    on_date             date not null,
    fee_ore             bigint not null default 0,
    interest_ore        bigint not null default 0,
    new_due_date        date,
    note                text not null default '',
    created_at          timestamptz not null default now(),
    unique (invoice_id, step)
);

-- Installment plans (R18).
create table installment_plans (
    id                  bigserial primary key,
    number              text not null references numbers (number),
    total_ore           bigint not null,
    monthly_ore         bigint not null,
    first_due_date      date not null,
    status              text not null check (status in ('active', 'completed', 'broken')),
    decided_by          text not null,
    note                text not null default '',
    created_at          timestamptz not null default now(),
    ended_at            timestamptz
);

create table installment_items (
    plan_id             bigint not null references installment_plans (id),
    seq                 integer not null,
    due_date            date not null,
    amount_ore          bigint not null,
    paid_ore            bigint not null default 0,
    primary key (plan_id, seq)
);

-- Disputes (R19).
create table disputes (
    id                  bigserial primary key,
    invoice_id          bigint not null references invoices (id),
    reason              text not null,
    status              text not null check (status in ('open', 'upheld', 'rejected')),
    -- The consent records of the invoice's calls (R3), attached when opened.
    evidence            jsonb not null,
    opened_by           text not null,
    opened_at           timestamptz not null default now(),
    resolved_by         text,
    resolution          text,
    resolved_at         timestamptz
);

-- Prepaid codes (R17): only their ids (keyed hashes), never the codes.
create table prepaid_codes (
    code_id             text primary key,
    purchase_ref        text,
    issued_at           timestamptz not null
);

create table prepaid_movements (
    id                  bigserial primary key,
    event_id            text not null unique,
    code_id             text not null,
    kind                text not null check (kind in ('credit', 'debit')),
    amount_ore          bigint not null,
    balance_after_ore   bigint not null,
    reference           text,
    call_id             text,
    at                  timestamptz not null
);

-- A purchase of a prepaid code or a top-up, paid by bankgiro (OCR) or Swish
-- (payee reference). The code is issued when the buyer picks it up, so that
-- it is never stored anywhere.
create table prepaid_orders (
    id                  bigserial primary key,
    ocr                 text not null unique,
    kind                text not null check (kind in ('issue', 'topup')),
    code_id             text,
    amount_ore          bigint,
    deliver_to          text not null default '',
    -- SHA-256 of the secret the buyer's session holds; pick-up needs it, so
    -- knowing (or guessing) an order's OCR is not enough to collect its code.
    pickup_secret_sha256 text,
    status              text not null check (status in ('awaiting_payment', 'paid', 'picked_up')),
    paid_ore            bigint not null default 0,
    payment_id          bigint references payments (id),
    created_at          timestamptz not null default now(),
    picked_up_at        timestamptz
);

-- Double-entry bookkeeping: every money movement is one transaction whose
-- entries sum to zero. Positive = debit, negative = credit.
create table ledger_entries (
    id                  bigserial primary key,
    txn                 text not null,
    account             text not null,
    amount_ore          bigint not null,
    at                  timestamptz not null,
    memo                text not null default ''
);
create index ledger_entries_txn on ledger_entries (txn);
create index ledger_entries_account on ledger_entries (account);

-- What settlement must push to the state store, written in the same
-- transaction as the ledger change and applied (idempotently) afterwards.
create table store_ops (
    id                  bigserial primary key,
    kind                text not null check (kind in ('apply_invoice', 'apply_payment', 'set_block', 'top_up_prepaid')),
    number              text not null,
    payload             jsonb not null,
    created_at          timestamptz not null default now(),
    applied_at          timestamptz,
    attempts            integer not null default 0,
    last_error          text
);
create index store_ops_pending on store_ops (id) where applied_at is null;

-- Calendar jobs done, so that a day's run is idempotent.
create table calendar_runs (
    run_date            date not null,
    job                 text not null,
    completed_at        timestamptz not null default now(),
    details             jsonb not null default '{}',
    primary key (run_date, job)
);

-- Personal-data extracts delivered (R21: free once a year).
create table data_extracts (
    id                  bigserial primary key,
    number              text not null,
    requested_by        text not null,
    created_at          timestamptz not null default now()
);

create table audit_log (
    id                  bigserial primary key,
    at                  timestamptz not null default now(),
    actor               text not null,
    action              text not null,
    subject             text not null,
    details             jsonb not null default '{}'
);
create index audit_log_subject on audit_log (subject);
