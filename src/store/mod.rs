//! The state store: accounts, holds, blocks, prepaid balances, idempotency
//! records, the catalogue and the outbox.
//!
//! [`Store`] is coarse on purpose (STYLE, after limitador): each method is a
//! whole business step, executed atomically by the backend with its
//! idempotency check inside (DESIGN invariants 2 and 4). Two backends
//! implement it — `memory` (embedded, the default) and `redis` (single node or
//! cluster) — and one shared test suite (`tests/store_suite.rs`) runs against
//! both.
//!
//! Every method takes `now_ms` from the caller's clock; no backend reads the
//! time itself.

pub mod budget;
pub mod memory;
pub mod outbox;
pub mod partition;
pub mod policy;
pub mod redis;
pub mod validate;

use std::future::Future;
use std::sync::Arc;

use crate::domain::account::{BlockKind, LimitChange, LimitSource};
use crate::domain::catalog::{CatalogSnapshot, Merchant, ServiceChange, ServiceSpec};
use crate::domain::decision::{Consent, Decision, DenyReason};
pub use crate::domain::hold::{
    ExtendOutcome, ExtendResult, Posting, ReleaseOutcome, UsageOutcome, UsageReject,
};
use crate::domain::{
    CallId, CodeHasher, CodeId, Event, MerchantId, Money, PrepaidCode, RecordId, Reference,
    Service, Terms, TermsId, E164,
};

pub type StoreResult<T> = Result<T, StoreError>;

/// Store errors, marked transient or not (STYLE, after limitador): a
/// transient error is worth a retry and maps to `UNAVAILABLE`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    #[error("state store did not answer within {0} ms")]
    Timeout(u64),
    /// The request waited its whole queue-time budget ({0} ms since it
    /// arrived) before its store command could be sent: refused without
    /// sending anything (issue 10, [`budget`]). Safe to retry.
    #[error("the gateway is overloaded: the request waited {0} ms before reaching the state store; retry shortly")]
    Overloaded(u64),
    /// The request conflicts with the stored state (e.g. a call id reused for
    /// another caller, a limit rule, an invoice larger than the unbilled usage).
    #[error("{0}")]
    Rejected(String),
    #[error("{0} not found")]
    NotFound(String),
    /// Stored data that cannot be read back: a bug or a foreign writer.
    #[error("state store data is inconsistent: {0}")]
    Corrupt(String),
    /// The caller may not act on this (a call another IVR client authorized).
    #[error("{0}")]
    Forbidden(String),
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Timeout(_))
    }

    /// For metrics labels.
    pub fn kind_label(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Timeout(_) => "timeout",
            StoreError::Overloaded(_) => "overloaded",
            StoreError::Rejected(_) => "rejected",
            StoreError::NotFound(_) => "not_found",
            StoreError::Corrupt(_) => "corrupt",
            StoreError::Forbidden(_) => "forbidden",
        }
    }
}

/// Why a store is not ready.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// It does not answer (in time): each request finds out by itself.
    #[error("state store unreachable")]
    Unreachable,
    /// It answers but has lost its data or was never set up: answers drawn
    /// from it would be wrong, not merely missing.
    #[error("state store is empty: no deployment record (it lost its data or was never set up)")]
    Empty,
    /// It was set up with another store policy (another deployment's store,
    /// or a policy recorded since this process started).
    #[error("state store was set up with another store policy (a foreign or reconfigured store)")]
    Foreign,
}

impl NotReady {
    /// Whether answers from the store would be wrong rather than missing:
    /// then the call path refuses to use it at all.
    pub fn data_is_wrong(&self) -> bool {
        matches!(self, NotReady::Empty | NotReady::Foreign)
    }
}

/// Rules the stores apply inside their atomic steps, from configuration.
#[derive(Clone, Debug)]
pub struct StorePolicy {
    pub credit: crate::domain::CreditPolicy,
    pub grant: crate::domain::GrantPolicy,
    /// A pending hold expires this long after its grant ends (R10).
    pub hold_grace_ms: i64,
    /// Finished holds are kept this long, so that retries and late usage are
    /// recognised; after it a call id is forgotten.
    pub hold_retention_ms: i64,
    /// Usage may start this long before its authorization (clock skew).
    pub usage_start_skew_ms: i64,
    /// Wrong prepaid codes from one line within `lockout_window_ms` that lock it out (R17).
    pub lockout_max_failures: u32,
    pub lockout_window_ms: i64,
    pub lockout_ms: i64,
    /// Number of partitions (DESIGN invariant 7); fixed per deployment.
    pub partitions: u32,
}

impl StorePolicy {
    /// How long a call-index entry lives after its latest claim: longer than
    /// any hold it can name (the longest grant, its grace, its retention).
    pub fn call_index_ttl_ms(&self) -> i64 {
        i64::from(self.grant.max_call_seconds) * 1000 + self.hold_grace_ms + self.hold_retention_ms
    }

    pub fn lockout(&self) -> crate::domain::lockout::LockoutPolicy {
        crate::domain::lockout::LockoutPolicy {
            max_failures: self.lockout_max_failures,
            window_ms: self.lockout_window_ms,
            lockout_ms: self.lockout_ms,
        }
    }
}

impl Default for StorePolicy {
    fn default() -> Self {
        StorePolicy {
            credit: Default::default(),
            grant: crate::domain::GrantPolicy {
                quota_seconds: 900,
                max_call_seconds: 4 * 3600,
            },
            hold_grace_ms: 120_000,
            hold_retention_ms: 72 * 3600 * 1000,
            usage_start_skew_ms: 300_000,
            lockout_max_failures: 5,
            lockout_window_ms: 15 * 60 * 1000,
            lockout_ms: 15 * 60 * 1000,
            partitions: 16,
        }
    }
}

/// What the IVR told us about a call, kept with the consent evidence (R3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evidence {
    /// The authenticated IVR client.
    pub ivr_client: String,
    /// The IVR's own node id (self-reported).
    pub ivr_id: String,
    pub line_ref: String,
    pub number_withheld: bool,
}

/// One Authorize, as the stores need it.
#[derive(Clone, Debug)]
pub struct CallSpec {
    pub call_id: CallId,
    pub service: Arc<Service>,
    /// The service's current terms.
    pub terms: Arc<Terms>,
    pub consent: Option<Consent>,
    pub evidence: Evidence,
}

/// The line a prepaid call comes from, for the wrong-code lockout: the
/// A-number when there is one, otherwise the IVR client and its line ref.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LineKey(String);

impl LineKey {
    pub fn number(n: &E164) -> LineKey {
        LineKey(n.as_str().to_string())
    }

    pub fn withheld(ivr_client: &str, line_ref: &str) -> LineKey {
        LineKey(format!("withheld:{ivr_client}:{line_ref}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizeResult {
    pub decision: Decision,
    /// The answer repeats the grant of an earlier request with this call id.
    pub replayed: bool,
    /// The terms version the call's hold uses (ALLOWED only); on a replay after
    /// a price change it is the version the caller accepted, not the current one.
    pub terms_id: Option<TermsId>,
    pub hold_expires_at_ms: i64,
    /// This request's wrong prepaid code locked the line out (for metrics).
    pub lockout_started: bool,
}

impl AuthorizeResult {
    pub fn refused(decision: Decision) -> AuthorizeResult {
        AuthorizeResult {
            decision,
            replayed: false,
            terms_id: None,
            hold_expires_at_ms: 0,
            lockout_started: false,
        }
    }
}

/// A merchant's usage record, validated (SPEC R4, R10, R20).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsagePost {
    pub merchant_id: MerchantId,
    pub record_id: RecordId,
    pub call_id: CallId,
    pub service_number: E164,
    pub started_at_ms: i64,
    pub duration_seconds: u32,
}

/// An account as shown to administrators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountView {
    pub number: E164,
    pub in_directory: bool,
    pub holder_registered: bool,
    pub limit: Money,
    pub limit_source: LimitSource,
    pub unbilled: Money,
    pub invoiced_unpaid: Money,
    pub pending: Money,
    pub blocked_all_services: bool,
    pub blocked_merchants: Vec<String>,
    pub blocked_services: Vec<String>,
    pub credit_blocked: bool,
    pub overdue_blocked: bool,
    pub threshold_reached: bool,
    pub established: bool,
    pub pending_calls: u32,
}

impl AccountView {
    pub fn available(&self) -> Money {
        self.limit - self.unbilled - self.invoiced_unpaid - self.pending
    }

    pub fn exposure(&self) -> Money {
        self.unbilled + self.invoiced_unpaid
    }
}

/// A change of one block on a number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockChange {
    /// A holder block or `Overdue`; the credit block is the store's own.
    pub kind: BlockKind,
    /// Merchant id or service number (E.164) for merchant and service blocks.
    pub target: String,
    pub blocked: bool,
    pub reason: String,
    pub actor: String,
}

/// An invoice (or a fee added to one) applied to a number's account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvoiceApply {
    pub invoice_id: Reference,
    /// Unbilled usage moved onto the invoice.
    pub usage: Money,
    /// Fees added (paper invoice, reminder, collection).
    pub fees: Money,
}

/// A payment applied to a number's invoiced-unpaid amount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentApply {
    pub payment_id: Reference,
    pub amount: Money,
    /// No invoice of the number is overdue any more: lift the overdue block.
    pub clear_overdue: bool,
    /// The number's first invoice is now paid in full: the default limit rises (R8).
    pub first_invoice_paid: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    Applied,
    AlreadyApplied,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrepaidView {
    pub code_id: CodeId,
    pub balance: Money,
    pub pending: Money,
    pub issued_at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IssueOutcome {
    /// A new code: the only time it is seen in clear.
    Issued {
        code: PrepaidCode,
        view: PrepaidView,
    },
    /// This purchase already has a code; it cannot be shown again.
    AlreadyIssued(PrepaidView),
}

/// Gauges for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub pending_holds: u64,
    /// Events held per partition (stream length in Redis).
    pub outbox_len: Vec<u64>,
}

/// The state store's business steps (DESIGN "Store operations").
pub trait Store: Send + Sync + 'static {
    /// Short name for metrics and logs ("memory", "redis").
    fn backend(&self) -> &'static str;

    /// A postpaid Authorize for `number` (R2, R3, R6–R10): checks the
    /// directory, blocks, credit and consent and, when allowed, creates the
    /// pending hold and records the consent — one atomic step. A retry of a
    /// call id that holds credit returns its original grant (`replayed`); of
    /// a call that has ended, `CALL_ENDED` (`replayed`). The same call id for
    /// another caller, code, service or IVR client is refused (`Rejected`).
    fn authorize(
        &self,
        number: &E164,
        call: &CallSpec,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<AuthorizeResult>> + Send;

    /// A prepaid Authorize (R17): the line's lockout and the holder's blocks,
    /// then the code's balance and the hold on it. A wrong code counts
    /// against the line.
    fn authorize_prepaid(
        &self,
        line: &LineKey,
        number: Option<&E164>,
        code: &CodeId,
        call: &CallSpec,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<AuthorizeResult>> + Send;

    /// Counts a wrong code typed on `line` (a code rejected before any store
    /// lookup, e.g. by its check digit). Returns true when the line is now locked.
    fn record_code_failure(
        &self,
        line: &LineKey,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Grows a pending call's grant (R10); idempotent per (call_id,
    /// sequence): any earlier sequence gets its first answer again. Only the
    /// IVR client that authorized the call may extend it (`Forbidden`).
    fn extend(
        &self,
        call_id: &CallId,
        ivr_client: &str,
        sequence: u32,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<ExtendResult>> + Send;

    /// Voids a pending hold: nothing is charged. Only the IVR client that
    /// authorized the call may release it (`Forbidden`).
    fn release(
        &self,
        call_id: &CallId,
        ivr_client: &str,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<ReleaseOutcome>> + Send;

    /// Rates usage with the hold's terms and posts it (R4, R8, R10);
    /// idempotent per call.
    fn post_usage(
        &self,
        usage: &UsagePost,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<UsageOutcome>> + Send;

    /// Expires up to `max` pending holds whose time has passed; returns how
    /// many. Safe to run from several gateways at once.
    fn expire_due(
        &self,
        now_ms: i64,
        max: usize,
    ) -> impl Future<Output = StoreResult<usize>> + Send;

    fn put_directory(
        &self,
        number: &E164,
        holder_registered: bool,
        actor: &str,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<AccountView>> + Send;

    fn set_block(
        &self,
        number: &E164,
        change: &BlockChange,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<AccountView>> + Send;

    fn set_limit(
        &self,
        number: &E164,
        change: &LimitChange,
        actor: &str,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<AccountView>> + Send;

    /// The account of a number; a number never seen reads as an empty,
    /// unlisted account.
    fn account(&self, number: &E164) -> impl Future<Output = StoreResult<AccountView>> + Send;

    /// Moves invoiced usage from unbilled to invoiced-unpaid and adds fees;
    /// idempotent per invoice id.
    fn apply_invoice(
        &self,
        number: &E164,
        invoice: &InvoiceApply,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<Applied>> + Send;

    /// Lowers invoiced-unpaid by a payment, lifts blocks it clears and raises
    /// the default limit after the first paid invoice (R7, R8, R15);
    /// idempotent per payment id.
    fn apply_payment(
        &self,
        number: &E164,
        payment: &PaymentApply,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<Applied>> + Send;

    /// Reconciliation's repair: overwrites a number's unbilled and
    /// invoiced-unpaid amounts with the ledger's, then re-evaluates the
    /// credit block and the 80 % threshold. Pending holds are untouched.
    fn repair_balances(
        &self,
        number: &E164,
        unbilled: Money,
        invoiced_unpaid: Money,
        reason: &str,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<AccountView>> + Send;

    /// Issues a new prepaid code for a purchase (R17); idempotent per
    /// purchase reference and amount. A reference already used for a top-up,
    /// or for a purchase of another amount, is refused (`Rejected`).
    fn issue_prepaid(
        &self,
        hasher: &CodeHasher,
        amount: Money,
        purchase_ref: &Reference,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<IssueOutcome>> + Send;

    /// Adds to a code's balance; idempotent per top-up reference with the
    /// same code and amount. A reference already used for another code,
    /// amount or a purchase adds nothing and is refused (`Rejected`).
    fn top_up_prepaid(
        &self,
        code: &CodeId,
        amount: Money,
        topup_ref: &Reference,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<PrepaidView>> + Send;

    fn prepaid(
        &self,
        code: &CodeId,
    ) -> impl Future<Output = StoreResult<Option<PrepaidView>>> + Send;

    /// The whole catalogue (for the gateway's cache).
    fn catalog(&self) -> impl Future<Output = StoreResult<Arc<CatalogSnapshot>>> + Send;

    /// The catalogue's version, cheap to poll.
    fn catalog_version(&self) -> impl Future<Output = StoreResult<u64>> + Send;

    fn upsert_merchant(&self, merchant: &Merchant) -> impl Future<Output = StoreResult<()>> + Send;

    /// Creates or changes a service; a new tariff makes a new terms version (R4).
    fn upsert_service(
        &self,
        spec: &ServiceSpec,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<ServiceChange>> + Send;

    /// Up to `max` of the most recent events of every partition, oldest first
    /// (diagnostics and tests; settlement reads the streams itself).
    fn recent_events(&self, max: usize) -> impl Future<Output = StoreResult<Vec<Event>>> + Send;

    fn stats(&self) -> impl Future<Output = StoreResult<StoreStats>> + Send;

    /// `Ok` when the store can serve requests (readiness), else why not: it
    /// is unreachable, or it lost its data (an empty Redis), or it was set
    /// up with another policy (a foreign store). A short fixed text.
    fn ready(&self) -> impl Future<Output = Result<(), NotReady>> + Send;
}
