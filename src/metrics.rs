//! Metrics: every name declared once, as `callauth_<subsystem>_<name>_<unit>`
//! (STYLE, after quickwit). Histograms use explicit buckets from 50 µs to
//! 1 s with the latency objective (1 ms) as an exact boundary; never
//! summaries. Labels are bounded sets (method, decision, reason, backend,
//! operation, partition index): never a phone number, code or call id.

use std::sync::OnceLock;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

// gRPC layer (api::middleware).
pub const GRPC_REQUESTS_TOTAL: &str = "callauth_grpc_requests_total";
pub const GRPC_REQUEST_DURATION_SECONDS: &str = "callauth_grpc_request_duration_seconds";
pub const GRPC_REQUESTS_IN_FLIGHT: &str = "callauth_grpc_requests_in_flight";
pub const GRPC_OVERLOAD_REJECTIONS_TOTAL: &str = "callauth_grpc_overload_rejections_total";
/// Requests refused before reaching the store, by reason (issue 10).
pub const SHED_TOTAL: &str = "callauth_shed_total";
/// Open `Usage.Report` streams (issue 10).
pub const USAGE_STREAMS_OPEN: &str = "callauth_usage_streams_open";
/// `Usage.Report` streams the gateway closed, by reason (issue 10).
pub const USAGE_STREAMS_CLOSED_TOTAL: &str = "callauth_usage_streams_closed_total";

/// The reasons of [`SHED_TOTAL`]: the concurrency limit had no permit, the
/// queue-time budget was spent before the store command, the usage-stream
/// limit was reached.
pub const SHED_REASONS: [&str; 3] = ["concurrency", "queue_budget", "usage_streams"];

/// The reasons of [`USAGE_STREAMS_CLOSED_TOTAL`].
pub const USAGE_CLOSE_REASONS: [&str; 3] = ["idle", "max_age", "shutdown"];

/// Counts one request shed for `reason` (one of [`SHED_REASONS`]).
pub fn shed(reason: &'static str) {
    metrics::counter!(SHED_TOTAL, "reason" => reason).increment(1);
}

// Decisions (gateway).
pub const AUTHORIZE_DECISIONS_TOTAL: &str = "callauth_authorize_decisions_total";
pub const AUTHORIZE_GRANTED_SECONDS: &str = "callauth_authorize_granted_seconds";
pub const EXTEND_DECISIONS_TOTAL: &str = "callauth_extend_decisions_total";
pub const RELEASE_OUTCOMES_TOTAL: &str = "callauth_release_outcomes_total";
pub const HOLDS_PENDING: &str = "callauth_holds_pending";
pub const HOLDS_EXPIRED_TOTAL: &str = "callauth_holds_expired_total";
pub const USAGE_ACKS_TOTAL: &str = "callauth_usage_acks_total";
pub const USAGE_OVERRUN_SECONDS_TOTAL: &str = "callauth_usage_overrun_seconds_total";
pub const USAGE_CHARGED_ORE_TOTAL: &str = "callauth_usage_charged_ore_total";
pub const CREDIT_EVENTS_TOTAL: &str = "callauth_credit_events_total";
pub const PREPAID_CODE_FAILURES_TOTAL: &str = "callauth_prepaid_code_failures_total";
pub const PREPAID_LOCKOUTS_TOTAL: &str = "callauth_prepaid_lockouts_total";

// State store.
pub const STORE_OPERATION_DURATION_SECONDS: &str = "callauth_store_operation_duration_seconds";
pub const STORE_ERRORS_TOTAL: &str = "callauth_store_errors_total";
pub const STORE_READY: &str = "callauth_store_ready";

// Catalogue cache.
pub const CATALOG_LOOKUPS_TOTAL: &str = "callauth_catalog_lookups_total";
pub const CATALOG_STALENESS_SECONDS: &str = "callauth_catalog_staleness_seconds";
pub const CATALOG_VERSION: &str = "callauth_catalog_version";

// Outbox.
pub const OUTBOX_EVENTS_TOTAL: &str = "callauth_outbox_events_total";
pub const OUTBOX_DROPPED_TOTAL: &str = "callauth_outbox_dropped_events_total";
pub const OUTBOX_LENGTH_EVENTS: &str = "callauth_outbox_length_events";
pub const OUTBOX_CONSUMER_LAG_EVENTS: &str = "callauth_outbox_consumer_lag_events";

// Settlement worker.
pub const SETTLEMENT_EVENTS_COMMITTED_TOTAL: &str = "callauth_settlement_events_committed_total";
pub const SETTLEMENT_EVENTS_DUPLICATE_TOTAL: &str = "callauth_settlement_events_duplicate_total";
pub const SETTLEMENT_REDELIVERIES_TOTAL: &str = "callauth_settlement_redeliveries_total";
pub const SETTLEMENT_DEAD_LETTERS_TOTAL: &str = "callauth_settlement_dead_letters_total";
pub const SETTLEMENT_CONSUMER_LAG_EVENTS: &str = "callauth_settlement_consumer_lag_events";
pub const SETTLEMENT_BATCH_DURATION_SECONDS: &str = "callauth_settlement_batch_duration_seconds";
pub const SETTLEMENT_INVOICES_ISSUED_TOTAL: &str = "callauth_settlement_invoices_issued_total";
pub const SETTLEMENT_PAYMENTS_TOTAL: &str = "callauth_settlement_payments_total";
pub const SETTLEMENT_PAYMENTS_ORE_TOTAL: &str = "callauth_settlement_payments_ore_total";
pub const SETTLEMENT_LADDER_STEPS_TOTAL: &str = "callauth_settlement_ladder_steps_total";
pub const SETTLEMENT_STORE_OPS_PENDING: &str = "callauth_settlement_store_ops_pending";
pub const SETTLEMENT_STORE_OPS_FAILED_TOTAL: &str = "callauth_settlement_store_ops_failed_total";
pub const SETTLEMENT_RECONCILIATION_DRIFT_ORE: &str =
    "callauth_settlement_reconciliation_drift_ore";
pub const SETTLEMENT_RECONCILIATION_DRIFT_ACCOUNTS: &str =
    "callauth_settlement_reconciliation_drift_accounts";
pub const SETTLEMENT_MERCHANT_STATEMENTS_TOTAL: &str =
    "callauth_settlement_merchant_statements_total";
pub const SETTLEMENT_READY: &str = "callauth_settlement_ready";
pub const SETTLEMENT_CALENDAR_RUNS_TOTAL: &str = "callauth_settlement_calendar_runs_total";
pub const SETTLEMENT_STORE_OPS_REFUSED: &str = "callauth_settlement_store_ops_refused";
pub const SETTLEMENT_CALENDAR_MISSED_RUNS: &str = "callauth_settlement_calendar_missed_runs";
pub const SETTLEMENT_INVOICES_HELD: &str = "callauth_settlement_invoices_held";
pub const SETTLEMENT_DOCUMENTS_QUEUED: &str = "callauth_settlement_documents_queued";
pub const SETTLEMENT_DOCUMENTS_OLDEST_QUEUED_SECONDS: &str =
    "callauth_settlement_documents_oldest_queued_seconds";
pub const SETTLEMENT_DOCUMENT_REPORTS_TOTAL: &str = "callauth_settlement_document_reports_total";

// TLS listeners (src/tls.rs), both processes, only when TLS is on.
pub const TLS_CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS: &str =
    "callauth_tls_certificate_expiry_timestamp_seconds";
pub const TLS_RELOADS_TOTAL: &str = "callauth_tls_reloads_total";
pub const TLS_HANDSHAKE_FAILURES_TOTAL: &str = "callauth_tls_handshake_failures_total";

pub const BUILD_INFO: &str = "callauth_build_info";

/// Latency buckets in seconds: 50 µs … 1 s, with the 1 ms objective exact.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// The authorize latency objective, in seconds (a bucket boundary above).
pub const LATENCY_OBJECTIVE_SECONDS: f64 = 0.001;

const GRANT_BUCKETS_SECONDS: &[f64] = &[
    30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return
/// the same handle, so tests may start many servers in one process).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS_SECONDS)
                .expect("non-empty buckets")
                .set_buckets_for_metric(
                    Matcher::Full(AUTHORIZE_GRANTED_SECONDS.to_string()),
                    GRANT_BUCKETS_SECONDS,
                )
                .expect("non-empty buckets")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            describe();
            metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        GRPC_REQUESTS_TOTAL,
        "gRPC requests by method and status code, each once: requests refused before a handler ran included, a passed deadline as deadline_exceeded, a request abandoned by its client as cancelled; a usage stream (Report) counts once, when it ends"
    );
    describe_histogram!(
        GRPC_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "gRPC server time per request by method"
    );
    describe_gauge!(GRPC_REQUESTS_IN_FLIGHT, "gRPC requests being served");
    describe_counter!(
        SHED_TOTAL,
        "requests refused with RESOURCE_EXHAUSTED before anything reached the state store, by reason: concurrency (no permit), queue_budget (waited too long before the store command), usage_streams (too many open Usage.Report streams)"
    );
    describe_gauge!(USAGE_STREAMS_OPEN, "Usage.Report streams open");
    describe_counter!(
        USAGE_STREAMS_CLOSED_TOTAL,
        "Usage.Report streams closed by the gateway, by reason: idle (no record within --usage-stream-idle-seconds), max_age (open longer than --max-connection-age-seconds), shutdown"
    );
    describe_counter!(
        GRPC_OVERLOAD_REJECTIONS_TOTAL,
        "requests refused with RESOURCE_EXHAUSTED by the concurrency limit"
    );
    describe_counter!(
        AUTHORIZE_DECISIONS_TOTAL,
        "Authorize answers by decision, reason and funding"
    );
    describe_histogram!(
        AUTHORIZE_GRANTED_SECONDS,
        Unit::Seconds,
        "seconds granted to allowed calls"
    );
    describe_counter!(
        EXTEND_DECISIONS_TOTAL,
        "Extend answers by result and reason"
    );
    describe_counter!(RELEASE_OUTCOMES_TOTAL, "Release answers by outcome");
    describe_gauge!(HOLDS_PENDING, "pending holds (calls in progress)");
    describe_counter!(
        HOLDS_EXPIRED_TOTAL,
        "pending holds released after their timeout"
    );
    describe_counter!(
        USAGE_ACKS_TOTAL,
        "usage acknowledgements by result and reject reason"
    );
    describe_counter!(
        USAGE_OVERRUN_SECONDS_TOTAL,
        "seconds of usage beyond the grant (charged)"
    );
    describe_counter!(
        USAGE_CHARGED_ORE_TOTAL,
        "öre charged by applied usage records"
    );
    describe_counter!(CREDIT_EVENTS_TOTAL, "80 % threshold and 100 % limit events");
    describe_counter!(PREPAID_CODE_FAILURES_TOTAL, "wrong prepaid codes typed");
    describe_counter!(
        PREPAID_LOCKOUTS_TOTAL,
        "lines locked out after repeated wrong prepaid codes"
    );
    describe_histogram!(
        STORE_OPERATION_DURATION_SECONDS,
        Unit::Seconds,
        "state store round trip per operation"
    );
    describe_counter!(
        STORE_ERRORS_TOTAL,
        "state store errors by operation and kind"
    );
    describe_gauge!(STORE_READY, "1 when the state store is reachable and ready");
    describe_counter!(CATALOG_LOOKUPS_TOTAL, "catalogue cache lookups by result");
    describe_gauge!(
        CATALOG_STALENESS_SECONDS,
        Unit::Seconds,
        "time since the catalogue cache was last confirmed current"
    );
    describe_gauge!(CATALOG_VERSION, "version of the cached catalogue");
    describe_counter!(OUTBOX_EVENTS_TOTAL, "events appended to the outbox by type");
    describe_counter!(
        OUTBOX_DROPPED_TOTAL,
        "outbox events dropped from a bounded buffer, by sink"
    );
    describe_gauge!(
        OUTBOX_LENGTH_EVENTS,
        "events held in the outbox (stream length) per partition"
    );
    describe_gauge!(
        OUTBOX_CONSUMER_LAG_EVENTS,
        "events of a partition's stream not yet delivered to or acknowledged by a consumer group"
    );
    describe_counter!(
        SETTLEMENT_EVENTS_COMMITTED_TOTAL,
        "outbox events committed to the ledger"
    );
    describe_counter!(
        SETTLEMENT_EVENTS_DUPLICATE_TOTAL,
        "events delivered again and found already committed"
    );
    describe_counter!(
        SETTLEMENT_REDELIVERIES_TOTAL,
        "stream entries read again from the consumer's pending list"
    );
    describe_counter!(
        SETTLEMENT_DEAD_LETTERS_TOTAL,
        "events moved to the dead-letter stream"
    );
    describe_gauge!(
        SETTLEMENT_CONSUMER_LAG_EVENTS,
        "events of a partition not yet committed and acknowledged by settlement"
    );
    describe_histogram!(
        SETTLEMENT_BATCH_DURATION_SECONDS,
        Unit::Seconds,
        "time to commit one batch of events to PostgreSQL"
    );
    describe_counter!(
        SETTLEMENT_INVOICES_ISSUED_TOTAL,
        "invoices issued by kind (threshold, monthly)"
    );
    describe_counter!(
        SETTLEMENT_PAYMENTS_TOTAL,
        "payments registered by channel and result"
    );
    describe_counter!(SETTLEMENT_PAYMENTS_ORE_TOTAL, "öre received by channel");
    describe_counter!(
        SETTLEMENT_LADDER_STEPS_TOTAL,
        "reminder, collection and enforcement steps taken"
    );
    describe_gauge!(
        SETTLEMENT_STORE_OPS_PENDING,
        "account changes not yet applied to the state store"
    );
    describe_counter!(
        SETTLEMENT_STORE_OPS_FAILED_TOTAL,
        "account changes the state store refused or could not take"
    );
    describe_gauge!(
        SETTLEMENT_RECONCILIATION_DRIFT_ORE,
        "absolute difference in öre between the ledger and the state store, last reconciliation"
    );
    describe_gauge!(
        SETTLEMENT_RECONCILIATION_DRIFT_ACCOUNTS,
        "accounts whose state-store figures differ from the ledger, last reconciliation"
    );
    describe_counter!(
        SETTLEMENT_MERCHANT_STATEMENTS_TOTAL,
        "merchant settlement statements made"
    );
    describe_counter!(SETTLEMENT_CALENDAR_RUNS_TOTAL, "calendar jobs run by job");
    describe_gauge!(
        SETTLEMENT_STORE_OPS_REFUSED,
        "account changes the state store refused for good, waiting for reconcile --repair"
    );
    describe_gauge!(
        SETTLEMENT_CALENDAR_MISSED_RUNS,
        "calendar runs missed (caught up in the last 24 hours, or due and not done)"
    );
    describe_gauge!(
        SETTLEMENT_INVOICES_HELD,
        "invoices held: neither a postal address nor a working e-mail address to send them to"
    );
    describe_gauge!(
        SETTLEMENT_DOCUMENTS_QUEUED,
        "documents waiting for the mailing system, by channel"
    );
    describe_gauge!(
        SETTLEMENT_DOCUMENTS_OLDEST_QUEUED_SECONDS,
        Unit::Seconds,
        "age of the oldest document waiting for the mailing system, by channel"
    );
    describe_counter!(
        SETTLEMENT_DOCUMENT_REPORTS_TOTAL,
        "documents the mailing system reported sent or bounced"
    );
    describe_gauge!(
        SETTLEMENT_READY,
        "1 when the worker's dependency (ledger_database, state_store) answers"
    );
    describe_gauge!(
        TLS_CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS,
        Unit::Seconds,
        "expiry (notAfter, Unix seconds) of the certificate the TLS listeners serve now"
    );
    describe_counter!(
        TLS_RELOADS_TOTAL,
        "changes of the TLS certificate, key or client CA files, by result (ok: in use; error: the previous one stays)"
    );
    describe_counter!(
        TLS_HANDSHAKE_FAILURES_TOTAL,
        "TLS handshakes that failed or timed out, by listener (grpc, http): plaintext clients, unknown CAs, missing client certificates"
    );
    describe_gauge!(BUILD_INFO, "build information");
}

/// A metric handle resolved once, on first use and after the recorder is
/// installed; afterwards an update is one atomic operation. The hot path
/// (every Authorize) uses these instead of `counter!(…)` at each call, which
/// hashes the name and labels and looks the series up in the registry.
pub struct Handle<T>(OnceLock<T>);

impl<T> Handle<T> {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Handle<T> {
        Handle(OnceLock::new())
    }

    pub fn get(&self, make: impl FnOnce() -> T) -> &T {
        self.0.get_or_init(|| {
            install();
            make()
        })
    }
}

/// A counter whose labels are constant at the call site, resolved once.
#[macro_export]
macro_rules! cached_counter {
    ($($args:tt)*) => {{
        static HANDLE: $crate::metrics::Handle<::metrics::Counter> = $crate::metrics::Handle::new();
        HANDLE.get(|| ::metrics::counter!($($args)*))
    }};
}

/// A histogram whose labels are constant at the call site, resolved once.
#[macro_export]
macro_rules! cached_histogram {
    ($($args:tt)*) => {{
        static HANDLE: $crate::metrics::Handle<::metrics::Histogram> = $crate::metrics::Handle::new();
        HANDLE.get(|| ::metrics::histogram!($($args)*))
    }};
}

/// A gauge whose labels are constant at the call site, resolved once.
#[macro_export]
macro_rules! cached_gauge {
    ($($args:tt)*) => {{
        static HANDLE: $crate::metrics::Handle<::metrics::Gauge> = $crate::metrics::Handle::new();
        HANDLE.get(|| ::metrics::gauge!($($args)*))
    }};
}

/// The steps a gateway times against its store (the `operation` label).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StoreOp {
    Authorize,
    AuthorizePrepaid,
    RecordCodeFailure,
    Extend,
    Release,
    PostUsage,
    ExpireDue,
    Stats,
    Account,
    Prepaid,
    PutDirectory,
    SetBlock,
    SetLimit,
    IssuePrepaid,
    TopUpPrepaid,
    UpsertMerchant,
    UpsertService,
}

impl StoreOp {
    const COUNT: usize = 17;

    pub fn label(self) -> &'static str {
        match self {
            StoreOp::Authorize => "authorize",
            StoreOp::AuthorizePrepaid => "authorize_prepaid",
            StoreOp::RecordCodeFailure => "record_code_failure",
            StoreOp::Extend => "extend",
            StoreOp::Release => "release",
            StoreOp::PostUsage => "post_usage",
            StoreOp::ExpireDue => "expire_due",
            StoreOp::Stats => "stats",
            StoreOp::Account => "account",
            StoreOp::Prepaid => "prepaid",
            StoreOp::PutDirectory => "put_directory",
            StoreOp::SetBlock => "set_block",
            StoreOp::SetLimit => "set_limit",
            StoreOp::IssuePrepaid => "issue_prepaid",
            StoreOp::TopUpPrepaid => "top_up_prepaid",
            StoreOp::UpsertMerchant => "upsert_merchant",
            StoreOp::UpsertService => "upsert_service",
        }
    }
}

/// Store round-trip histograms by backend and operation, resolved once each.
pub fn store_operation_duration(backend: &'static str, op: StoreOp) -> &'static Histogram {
    const BACKENDS: usize = 2;
    static HANDLES: [[Handle<Histogram>; StoreOp::COUNT]; BACKENDS] =
        [const { [const { Handle::new() }; StoreOp::COUNT] }; BACKENDS];
    let b = usize::from(backend != "memory");
    HANDLES[b][op as usize].get(|| {
        metrics::histogram!(STORE_OPERATION_DURATION_SECONDS, "backend" => backend, "operation" => op.label())
    })
}

/// Authorize decisions by reason code (which implies the decision) and funding.
pub fn authorize_decision(
    decision: &'static str,
    reason: &'static str,
    reason_code: u8,
    funding: crate::domain::Funding,
) -> &'static Counter {
    static HANDLES: [[Handle<Counter>; 2]; 256] = [const { [const { Handle::new() }; 2] }; 256];
    let f = usize::from(funding == crate::domain::Funding::Prepaid);
    HANDLES[usize::from(reason_code)][f].get(|| {
        metrics::counter!(AUTHORIZE_DECISIONS_TOTAL, "decision" => decision, "reason" => reason, "funding" => funding.label())
    })
}

/// Outbox events by event type (`index` is the type's position in `labels`).
pub fn outbox_event(index: usize, label: &'static str) -> &'static Counter {
    static HANDLES: [Handle<Counter>; 32] = [const { Handle::new() }; 32];
    HANDLES[index].get(|| metrics::counter!(OUTBOX_EVENTS_TOTAL, "type" => label))
}

/// The gRPC methods of the gateway, as the `method` label names them.
pub const GATEWAY_METHODS: &[&str] = &[
    "Authorize",
    "Extend",
    "Release",
    "Report",
    "ReportOne",
    "LookupService",
    "ListServices",
    "GetTerms",
    "UpsertMerchant",
    "UpsertService",
    "PutDirectoryEntry",
    "SetBlock",
    "SetCreditLimit",
    "GetAccount",
    "IssuePrepaidCode",
    "TopUpPrepaidCode",
    "GetPrepaidBalance",
];

/// Status codes an availability objective divides by, pre-registered so that
/// ratios and `absent()` work before the first error.
const AVAILABILITY_CODES: &[&str] = &[
    "ok",
    "cancelled",
    "deadline_exceeded",
    "resource_exhausted",
    "unavailable",
    "internal",
];

/// Registers the gateway's series at zero (adding 0, so a second gateway in
/// one process, as in the tests, resets nothing), so that every metric the
/// dashboards and alerts use is on `/metrics` from the first scrape (a
/// counter that appears only with its first increment hides it from
/// `rate()` and makes "no errors yet" look like "no data").
pub fn preregister_gateway(backend: &'static str) {
    use crate::domain::decision::DenyReason;
    for &method in GATEWAY_METHODS {
        for &code in AVAILABILITY_CODES {
            metrics::counter!(GRPC_REQUESTS_TOTAL, "method" => method, "code" => code).increment(0);
        }
        if method != "Report" {
            // The usage stream is counted when it ends; it has no request latency.
            let _ = metrics::histogram!(GRPC_REQUEST_DURATION_SECONDS, "method" => method);
        }
        metrics::counter!(GRPC_OVERLOAD_REJECTIONS_TOTAL, "method" => method).increment(0);
    }
    metrics::gauge!(GRPC_REQUESTS_IN_FLIGHT).increment(0.0);
    metrics::gauge!(USAGE_STREAMS_OPEN).increment(0.0);
    for reason in SHED_REASONS {
        metrics::counter!(SHED_TOTAL, "reason" => reason).increment(0);
    }
    for reason in USAGE_CLOSE_REASONS {
        metrics::counter!(USAGE_STREAMS_CLOSED_TOTAL, "reason" => reason).increment(0);
    }
    for funding in ["postpaid", "prepaid"] {
        metrics::counter!(AUTHORIZE_DECISIONS_TOTAL, "decision" => "allowed", "reason" => "granted", "funding" => funding).increment(0);
    }
    for reason in DenyReason::ALL {
        let funding = if reason.label().starts_with("prepaid_") {
            "prepaid"
        } else {
            "postpaid"
        };
        metrics::counter!(AUTHORIZE_DECISIONS_TOTAL, "decision" => "denied", "reason" => reason.label(), "funding" => funding).increment(0);
    }
    let _ = metrics::histogram!(AUTHORIZE_GRANTED_SECONDS);
    metrics::counter!(EXTEND_DECISIONS_TOTAL, "result" => "extended", "reason" => "granted")
        .increment(0);
    for outcome in [
        "voided",
        "already_voided",
        "already_posted",
        "already_expired",
        "unknown_call",
    ] {
        metrics::counter!(RELEASE_OUTCOMES_TOTAL, "outcome" => outcome).increment(0);
    }
    metrics::gauge!(HOLDS_PENDING).increment(0.0);
    metrics::counter!(HOLDS_EXPIRED_TOTAL).increment(0);
    for (result, reason) in [("applied", "none"), ("duplicate", "none")] {
        metrics::counter!(USAGE_ACKS_TOTAL, "result" => result, "reason" => reason).increment(0);
    }
    metrics::counter!(USAGE_OVERRUN_SECONDS_TOTAL).increment(0);
    metrics::counter!(USAGE_CHARGED_ORE_TOTAL).increment(0);
    for kind in ["threshold", "limit"] {
        metrics::counter!(CREDIT_EVENTS_TOTAL, "kind" => kind).increment(0);
    }
    metrics::counter!(PREPAID_CODE_FAILURES_TOTAL).increment(0);
    metrics::counter!(PREPAID_LOCKOUTS_TOTAL).increment(0);
    for op in ["authorize", "post_usage"] {
        let _ = metrics::histogram!(STORE_OPERATION_DURATION_SECONDS, "backend" => backend, "operation" => op);
        for kind in ["unavailable", "timeout"] {
            metrics::counter!(STORE_ERRORS_TOTAL, "backend" => backend, "operation" => op, "kind" => kind).increment(0);
        }
    }
    for result in ["hit", "miss"] {
        metrics::counter!(CATALOG_LOOKUPS_TOTAL, "result" => result).increment(0);
    }
    metrics::gauge!(CATALOG_STALENESS_SECONDS).increment(0.0);
    metrics::counter!(OUTBOX_EVENTS_TOTAL, "type" => "usage_posted").increment(0);
    metrics::counter!(OUTBOX_DROPPED_TOTAL, "sink" => "memory").increment(0);
}

/// Registers the settlement worker's series at zero (see [`preregister_gateway`]).
/// The TLS series, when a process serves TLS (the expiry gauge is set when
/// the certificate loads: a zero would read as long expired).
pub fn preregister_tls() {
    for result in ["ok", "error"] {
        metrics::counter!(TLS_RELOADS_TOTAL, "result" => result).increment(0);
    }
    for listener in ["grpc", "http"] {
        metrics::counter!(TLS_HANDSHAKE_FAILURES_TOTAL, "listener" => listener).increment(0);
    }
}

pub fn preregister_settlement() {
    metrics::counter!(SETTLEMENT_EVENTS_COMMITTED_TOTAL).increment(0);
    metrics::counter!(SETTLEMENT_EVENTS_DUPLICATE_TOTAL).increment(0);
    metrics::counter!(SETTLEMENT_REDELIVERIES_TOTAL).increment(0);
    metrics::counter!(SETTLEMENT_DEAD_LETTERS_TOTAL).increment(0);
    let _ = metrics::histogram!(SETTLEMENT_BATCH_DURATION_SECONDS);
    for kind in ["threshold", "monthly"] {
        metrics::counter!(SETTLEMENT_INVOICES_ISSUED_TOTAL, "kind" => kind).increment(0);
    }
    for channel in ["bankgiro", "swish"] {
        for result in ["matched", "unmatched", "duplicate", "dismissed"] {
            metrics::counter!(SETTLEMENT_PAYMENTS_TOTAL, "channel" => channel, "result" => result)
                .increment(0);
        }
        metrics::counter!(SETTLEMENT_PAYMENTS_ORE_TOTAL, "channel" => channel).increment(0);
    }
    for step in [
        "overdue",
        "reminder",
        "collection",
        "enforcement",
        "fees_waived",
    ] {
        metrics::counter!(SETTLEMENT_LADDER_STEPS_TOTAL, "step" => step).increment(0);
    }
    metrics::gauge!(SETTLEMENT_STORE_OPS_PENDING).increment(0.0);
    for kind in ["unavailable", "rejected"] {
        metrics::counter!(SETTLEMENT_STORE_OPS_FAILED_TOTAL, "kind" => kind).increment(0);
    }
    metrics::gauge!(SETTLEMENT_RECONCILIATION_DRIFT_ORE).increment(0.0);
    metrics::gauge!(SETTLEMENT_RECONCILIATION_DRIFT_ACCOUNTS).increment(0.0);
    metrics::counter!(SETTLEMENT_MERCHANT_STATEMENTS_TOTAL).increment(0);
    metrics::counter!(SETTLEMENT_CALENDAR_RUNS_TOTAL, "job" => "daily").increment(0);
    metrics::gauge!(SETTLEMENT_STORE_OPS_REFUSED).increment(0.0);
    metrics::gauge!(SETTLEMENT_CALENDAR_MISSED_RUNS).increment(0.0);
    metrics::counter!(SETTLEMENT_CALENDAR_RUNS_TOTAL, "job" => "retention").increment(0);
    metrics::gauge!(SETTLEMENT_INVOICES_HELD).increment(0.0);
    for channel in ["email", "paper"] {
        metrics::gauge!(SETTLEMENT_DOCUMENTS_QUEUED, "channel" => channel).increment(0.0);
        metrics::gauge!(SETTLEMENT_DOCUMENTS_OLDEST_QUEUED_SECONDS, "channel" => channel)
            .increment(0.0);
    }
    for result in ["sent", "bounced"] {
        metrics::counter!(SETTLEMENT_DOCUMENT_REPORTS_TOTAL, "result" => result).increment(0);
    }
}
