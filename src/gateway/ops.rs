//! The gateway's business operations over a [`Store`]: validation against
//! the cached catalogue, the caller checks that need no state (withheld and
//! foreign numbers, SPEC R2), the store's atomic step, and the decision
//! metrics. The gRPC layer (`api`) only converts messages and checks roles.
//!
//! Nothing here logs per request at info level (the hot path); decisions are
//! counted in metrics and logged at debug with the number masked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::CatalogCache;
use crate::clock::Clock;
use crate::domain::account::LimitChange;
use crate::domain::catalog::{Merchant, Service, ServiceChange, ServiceSpec, Terms};
use crate::domain::decision::{Consent, Decision, DenyReason, Funding, PrepaidReason};
use crate::domain::{
    CallId, CodeHasher, MerchantId, Money, PrepaidCode, RecordId, Reference, E164,
};
use crate::metrics::{self as m, StoreOp};
use crate::store::{
    AccountView, AuthorizeResult, BlockChange, CallSpec, Evidence, ExtendOutcome, ExtendResult,
    IssueOutcome, LineKey, NotReady, PrepaidView, ReleaseOutcome, Store, StoreError, StoreResult,
    UsageOutcome, UsagePost, UsageReject,
};

/// Errors of gateway operations; `api::error` maps them to gRPC status codes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// The request is malformed or names something unknown.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    /// The request is well-formed but conflicts with the state (a rule refused it).
    #[error("{0}")]
    FailedPrecondition(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for GatewayError {
    fn from(e: StoreError) -> GatewayError {
        match e {
            StoreError::Rejected(msg) => GatewayError::FailedPrecondition(msg),
            StoreError::NotFound(what) => GatewayError::NotFound(format!("{what} not found")),
            other => GatewayError::Store(other),
        }
    }
}

pub type GatewayResult<T> = Result<T, GatewayError>;

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    Number(E164),
    Withheld,
}

/// One Authorize, validated.
#[derive(Clone, Debug)]
pub struct AuthorizeInput {
    pub call_id: CallId,
    pub caller: Caller,
    pub service_number: E164,
    /// The code as typed; checked here (format, check digit) before any store lookup.
    pub prepaid_code: Option<String>,
    pub consent: Option<Consent>,
    pub evidence: Evidence,
}

#[derive(Clone, Debug)]
pub struct AuthorizeOutput {
    pub decision: Decision,
    pub funding: Funding,
    pub service: Arc<Service>,
    /// The terms to announce (current), or those of the call's hold (allowed).
    pub terms: Arc<Terms>,
    pub replayed: bool,
    pub hold_expires_at_ms: i64,
}

/// A merchant's usage record as received (validated here so that the stream
/// and the unary RPC answer the same).
#[derive(Clone, Debug, Default)]
pub struct UsageInput {
    pub record_id: String,
    pub call_id: String,
    pub service_number: String,
    pub started_at: UsageStart,
    pub duration_seconds: i64,
}

/// A usage record's `started_at` as received.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum UsageStart {
    #[default]
    Missing,
    /// Not a valid timestamp (nanos out of range, or beyond milliseconds).
    Invalid,
    At(i64),
}

/// Limits on requests, from configuration.
#[derive(Clone, Debug)]
pub struct GatewayLimits {
    /// The longest usage a record may report.
    pub max_call_seconds: u32,
    /// How far ahead of the gateway's clock a usage record may start and,
    /// above all, end (started_at + duration): usage cannot have happened
    /// after it was reported, so this is the merchant's clock skew only.
    pub usage_future_skew_ms: i64,
    /// How far ahead of the gateway's clock a consent step may be (the IVR's
    /// clock skew; a key press precedes the request that reports it).
    pub consent_future_skew_ms: i64,
    /// How long before the request the caller's first confirmation may be.
    pub consent_max_age_ms: i64,
    /// Holds expired per sweep batch.
    pub sweep_batch: usize,
}

impl Default for GatewayLimits {
    /// The defaults and why (docs/api.md repeats them):
    /// * usage skew 60 s: merchants' platforms keep NTP time (milliseconds
    ///   apart); a minute tolerates a badly kept clock while capping what a
    ///   record can claim beyond the time that has passed at one minute.
    /// * consent skew 5 s: the key presses happen before the Authorize that
    ///   carries them, so a correct clock puts them in the past; 5 s covers a
    ///   drifting IVR clock and refuses evidence from the future.
    /// * consent age 900 s: the announcement is read within 10 s of the call's
    ///   start and both confirmations follow it; a quarter of an hour leaves
    ///   room for a caller who has the menu repeated and for the IVR's retries
    ///   of the same Authorize, and refuses clocks that are hours or days off.
    fn default() -> Self {
        GatewayLimits {
            max_call_seconds: 4 * 3600,
            usage_future_skew_ms: 60_000,
            consent_future_skew_ms: 5_000,
            consent_max_age_ms: 900_000,
            sweep_batch: 1000,
        }
    }
}

pub struct Gateway<S: Store> {
    store: S,
    /// Why the store is not ready, when it is not (see `set_ready`).
    not_ready: arc_swap::ArcSwapOption<String>,
    catalog: CatalogCache,
    clock: Arc<dyn Clock>,
    hasher: CodeHasher,
    limits: GatewayLimits,
}

impl<S: Store> Gateway<S> {
    pub fn new(
        store: S,
        clock: Arc<dyn Clock>,
        hasher: CodeHasher,
        limits: GatewayLimits,
    ) -> Gateway<S> {
        Gateway {
            store,
            catalog: CatalogCache::default(),
            clock,
            hasher,
            limits,
            not_ready: arc_swap::ArcSwapOption::empty(),
        }
    }

    /// Records the store's readiness (the server's probe does, every
    /// 500 ms): while it is not ready, the call path answers UNAVAILABLE
    /// with the reason instead of answers drawn from a store that lost its
    /// data (an emptied Redis would otherwise make every service unknown and
    /// every number unlisted — wrong answers that look right).
    /// A store that is merely unreachable is not gated here: each request
    /// finds that out by itself, and a slow probe must not turn a brief blip
    /// into an outage.
    pub fn set_ready(&self, ready: &Result<(), NotReady>) {
        self.not_ready.store(match ready {
            Err(why) if why.data_is_wrong() => Some(Arc::new(why.to_string())),
            _ => None,
        });
    }

    /// UNAVAILABLE while the store is not ready (one atomic load).
    fn check_ready(&self) -> GatewayResult<()> {
        match &*self.not_ready.load() {
            None => Ok(()),
            Some(why) => Err(GatewayError::Store(StoreError::Unavailable(
                why.as_ref().clone(),
            ))),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn catalog(&self) -> &CatalogCache {
        &self.catalog
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn limits(&self) -> &GatewayLimits {
        &self.limits
    }

    /// Times a store step and counts its errors.
    async fn timed<T>(
        &self,
        op: StoreOp,
        f: impl std::future::Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let start = Instant::now();
        let r = f.await;
        let backend = self.store.backend();
        m::store_operation_duration(backend, op).record(start.elapsed().as_secs_f64());
        if let Err(e) = &r {
            metrics::counter!(m::STORE_ERRORS_TOTAL, "backend" => backend, "operation" => op.label(), "kind" => e.kind_label())
                .increment(1);
        }
        r
    }

    pub async fn refresh_catalog(&self) -> StoreResult<bool> {
        self.catalog.refresh(&self.store, self.now_ms()).await
    }

    fn service(&self, number: &E164) -> GatewayResult<Arc<Service>> {
        let snapshot = self.catalog.snapshot();
        match snapshot.service(number) {
            Some(s) => {
                crate::cached_counter!(m::CATALOG_LOOKUPS_TOTAL, "result" => "hit").increment(1);
                Ok(s.clone())
            }
            None => {
                crate::cached_counter!(m::CATALOG_LOOKUPS_TOTAL, "result" => "miss").increment(1);
                Err(GatewayError::InvalidArgument(format!(
                    "unknown service number {}",
                    number.as_str()
                )))
            }
        }
    }

    /// May this caller call this service now, and for how long? (SPEC R2–R10, R17)
    pub async fn authorize(&self, input: AuthorizeInput) -> GatewayResult<AuthorizeOutput> {
        let AuthorizeInput {
            call_id,
            caller,
            service_number,
            prepaid_code,
            consent,
            evidence,
        } = input;
        self.check_ready()?;
        let service = self.service(&service_number)?;
        let catalog = self.catalog.snapshot();
        let funding = if prepaid_code.is_some() {
            Funding::Prepaid
        } else {
            Funding::Postpaid
        };
        let merchant_active = catalog
            .merchant(&service.merchant_id)
            .is_some_and(|m| m.active);
        let now = self.now_ms();
        let call = CallSpec {
            call_id,
            service: service.clone(),
            terms: service.terms.clone(),
            consent,
            evidence,
        };
        let result = if !service.active || !merchant_active {
            AuthorizeResult::refused(Decision::Denied(DenyReason::ServiceSuspended))
        } else if let Some(raw_code) = &prepaid_code {
            self.authorize_prepaid(&caller, raw_code, &call, now)
                .await?
        } else {
            match &caller {
                Caller::Withheld => AuthorizeResult::refused(Decision::PrepaidCodeRequired(
                    PrepaidReason::NumberWithheld,
                )),
                Caller::Number(n) if !n.is_swedish() => AuthorizeResult::refused(
                    Decision::PrepaidCodeRequired(PrepaidReason::NumberForeign),
                ),
                Caller::Number(n) => {
                    self.timed(StoreOp::Authorize, self.store.authorize(n, &call, now))
                        .await?
                }
            }
        };
        let terms = result
            .terms_id
            .as_ref()
            .and_then(|id| catalog.terms(id).cloned())
            .unwrap_or_else(|| service.terms.clone());
        self.count_decision(&result.decision, funding);
        if let Caller::Number(n) = &caller {
            tracing::debug!(
                call_id = %call.call_id,
                number = %n.masked(),
                service = %service.number.as_str(),
                decision = result.decision.kind_label(),
                reason = result.decision.reason_label(),
                "authorize"
            );
        }
        Ok(AuthorizeOutput {
            decision: result.decision,
            funding,
            service,
            terms,
            replayed: result.replayed,
            hold_expires_at_ms: result.hold_expires_at_ms,
        })
    }

    async fn authorize_prepaid(
        &self,
        caller: &Caller,
        raw_code: &str,
        call: &CallSpec,
        now: i64,
    ) -> GatewayResult<AuthorizeResult> {
        let (line, number) = match caller {
            Caller::Number(n) => (LineKey::number(n), Some(n)),
            Caller::Withheld => {
                let line_ref = if !call.evidence.line_ref.is_empty() {
                    &call.evidence.line_ref
                } else {
                    &call.evidence.ivr_id
                };
                (LineKey::withheld(&call.evidence.ivr_client, line_ref), None)
            }
        };
        let code = match PrepaidCode::parse(raw_code) {
            Ok(code) => code,
            Err(_) => {
                // A mistyped code never reaches the code store, but it counts
                // against the line like any other wrong code (R17).
                metrics::counter!(m::PREPAID_CODE_FAILURES_TOTAL).increment(1);
                let locked = self
                    .timed(
                        StoreOp::RecordCodeFailure,
                        self.store.record_code_failure(&line, now),
                    )
                    .await?;
                if locked {
                    metrics::counter!(m::PREPAID_LOCKOUTS_TOTAL).increment(1);
                }
                return Ok(AuthorizeResult::refused(Decision::Denied(if locked {
                    DenyReason::PrepaidLockedOut
                } else {
                    DenyReason::PrepaidCodeInvalid
                })));
            }
        };
        let code_id = self.hasher.id(&code);
        let r = self
            .timed(
                StoreOp::AuthorizePrepaid,
                self.store
                    .authorize_prepaid(&line, number, &code_id, call, now),
            )
            .await?;
        if r.decision == Decision::Denied(DenyReason::PrepaidCodeInvalid) || r.lockout_started {
            metrics::counter!(m::PREPAID_CODE_FAILURES_TOTAL).increment(1);
        }
        if r.lockout_started {
            metrics::counter!(m::PREPAID_LOCKOUTS_TOTAL).increment(1);
        }
        Ok(r)
    }

    fn count_decision(&self, d: &Decision, funding: Funding) {
        m::authorize_decision(d.kind_label(), d.reason_label(), d.reason_code(), funding)
            .increment(1);
        if let Decision::Allowed(g) = d {
            crate::cached_histogram!(m::AUTHORIZE_GRANTED_SECONDS)
                .record(f64::from(g.granted_seconds));
        }
    }

    /// Grows an allowed call's grant (R10); only the IVR client that
    /// authorized the call may.
    pub async fn extend(
        &self,
        call_id: &CallId,
        ivr_client: &str,
        sequence: u32,
    ) -> GatewayResult<ExtendResult> {
        if sequence == 0 {
            return Err(GatewayError::InvalidArgument(
                "sequence starts at 1 for the first extension of a call".into(),
            ));
        }
        self.check_ready()?;
        let now = self.now_ms();
        let r = self
            .timed(
                StoreOp::Extend,
                self.store.extend(call_id, ivr_client, sequence, now),
            )
            .await?;
        let (result, reason) = match r.outcome {
            ExtendOutcome::Extended => ("extended", "granted"),
            ExtendOutcome::Refused(reason) => ("refused", reason.label()),
        };
        metrics::counter!(m::EXTEND_DECISIONS_TOTAL, "result" => result, "reason" => reason)
            .increment(1);
        Ok(r)
    }

    /// Voids an unused hold; only the IVR client that authorized the call may.
    pub async fn release(
        &self,
        call_id: &CallId,
        ivr_client: &str,
    ) -> GatewayResult<ReleaseOutcome> {
        self.check_ready()?;
        let now = self.now_ms();
        let r = self
            .timed(
                StoreOp::Release,
                self.store.release(call_id, ivr_client, now),
            )
            .await?;
        let label = match r {
            ReleaseOutcome::Voided(_) => "voided",
            ReleaseOutcome::AlreadyVoided => "already_voided",
            ReleaseOutcome::AlreadyPosted => "already_posted",
            ReleaseOutcome::AlreadyExpired => "already_expired",
            ReleaseOutcome::UnknownCall => "unknown_call",
        };
        metrics::counter!(m::RELEASE_OUTCOMES_TOTAL, "outcome" => label).increment(1);
        Ok(r)
    }

    /// Validates, rates and posts one usage record of `merchant` (R4, R10, R20).
    /// Refusals are outcomes; only an unreachable store is an error.
    pub async fn report_usage(
        &self,
        merchant: &MerchantId,
        input: &UsageInput,
    ) -> GatewayResult<UsageOutcome> {
        self.check_ready()?;
        let outcome = match self.validate_usage(merchant, input) {
            Ok(post) => {
                let now = self.now_ms();
                self.timed(StoreOp::PostUsage, self.store.post_usage(&post, now))
                    .await?
            }
            Err(rejection) => rejection,
        };
        let (result, reason) = match &outcome {
            UsageOutcome::Applied(p) => {
                if p.overrun_seconds > 0 {
                    crate::cached_counter!(m::USAGE_OVERRUN_SECONDS_TOTAL)
                        .increment(u64::from(p.overrun_seconds));
                }
                crate::cached_counter!(m::USAGE_CHARGED_ORE_TOTAL)
                    .increment(p.charge.ore().max(0) as u64);
                if p.threshold_reached {
                    crate::cached_counter!(m::CREDIT_EVENTS_TOTAL, "kind" => "threshold")
                        .increment(1);
                }
                if p.limit_reached {
                    crate::cached_counter!(m::CREDIT_EVENTS_TOTAL, "kind" => "limit").increment(1);
                }
                ("applied", "none")
            }
            UsageOutcome::Duplicate(_) => ("duplicate", "none"),
            UsageOutcome::Rejected(r, _) => ("rejected", r.label()),
        };
        metrics::counter!(m::USAGE_ACKS_TOTAL, "result" => result, "reason" => reason).increment(1);
        Ok(outcome)
    }

    fn validate_usage(
        &self,
        merchant: &MerchantId,
        input: &UsageInput,
    ) -> Result<UsagePost, UsageOutcome> {
        let malformed = |what: String| UsageOutcome::Rejected(UsageReject::Malformed, what);
        let record_id = RecordId::parse(&input.record_id).map_err(|e| malformed(e.to_string()))?;
        let call_id = CallId::parse(&input.call_id).map_err(|e| malformed(e.to_string()))?;
        let service_number = E164::parse(&input.service_number)
            .map_err(|e| malformed(format!("service_number {e}")))?;
        let service = self
            .catalog
            .snapshot()
            .service(&service_number)
            .cloned()
            .ok_or_else(|| {
                UsageOutcome::Rejected(
                    UsageReject::UnknownService,
                    format!("unknown service number {}", service_number.as_str()),
                )
            })?;
        if service.merchant_id != *merchant {
            return Err(UsageOutcome::Rejected(
                UsageReject::NotMerchantsService,
                "the service belongs to another merchant".into(),
            ));
        }
        let max = i64::from(self.limits.max_call_seconds);
        if !(0..=max).contains(&input.duration_seconds) {
            return Err(UsageOutcome::Rejected(
                UsageReject::DurationOutOfRange,
                format!("duration_seconds must be between 0 and {max}"),
            ));
        }
        // Usage cannot have happened after it was reported: neither its start
        // nor its end (start + duration) may lie beyond the receive time plus
        // the merchant's clock skew. (How long before the authorization it
        // may start is the store's check, against the hold.)
        let latest_ms = self
            .now_ms()
            .saturating_add(self.limits.usage_future_skew_ms);
        let skew_s = self.limits.usage_future_skew_ms / 1000;
        let start_out_of_range =
            |what: String| UsageOutcome::Rejected(UsageReject::StartOutOfRange, what);
        let started_at_ms = match input.started_at {
            UsageStart::At(t) if t > 0 && t <= latest_ms => t,
            UsageStart::At(t) if t <= 0 => {
                return Err(start_out_of_range("started_at is not after 1970".into()))
            }
            UsageStart::At(_) => {
                let ahead = format!("more than {skew_s} s ahead of the gateway's clock");
                return Err(start_out_of_range(format!(
                    "started_at is in the future ({ahead})"
                )));
            }
            UsageStart::Invalid => {
                return Err(start_out_of_range(
                    "started_at is not a valid timestamp".into(),
                ))
            }
            UsageStart::Missing => return Err(start_out_of_range("started_at is required".into())),
        };
        if started_at_ms.saturating_add(input.duration_seconds * 1000) > latest_ms {
            return Err(UsageOutcome::Rejected(
                UsageReject::DurationOutOfRange,
                format!(
                    "started_at + duration_seconds ends in the future (more than {skew_s} s \
                     ahead of the gateway's clock): report a call when it has ended"
                ),
            ));
        }
        Ok(UsagePost {
            merchant_id: merchant.clone(),
            record_id,
            call_id,
            service_number,
            started_at_ms,
            duration_seconds: input.duration_seconds as u32,
        })
    }

    /// Expires due holds in bounded batches and refreshes the gauges; returns
    /// how many holds expired.
    pub async fn sweep(&self) -> StoreResult<usize> {
        let now = self.now_ms();
        let mut total = 0;
        loop {
            let n = self
                .timed(
                    StoreOp::ExpireDue,
                    self.store.expire_due(now, self.limits.sweep_batch),
                )
                .await?;
            total += n;
            if n < self.limits.sweep_batch {
                break;
            }
        }
        if total > 0 {
            metrics::counter!(m::HOLDS_EXPIRED_TOTAL).increment(total as u64);
        }
        let stats = self.timed(StoreOp::Stats, self.store.stats()).await?;
        metrics::gauge!(m::HOLDS_PENDING).set(stats.pending_holds as f64);
        for (p, len) in stats.outbox_len.iter().enumerate() {
            metrics::gauge!(m::OUTBOX_LENGTH_EVENTS, "partition" => p.to_string()).set(*len as f64);
        }
        Ok(total)
    }

    /// Runs the hold sweeper and the catalogue refresher until `shutdown`.
    pub async fn run_background(
        self: Arc<Self>,
        sweep_every: Duration,
        catalog_every: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut sweep = tokio::time::interval(sweep_every);
        let mut refresh = tokio::time::interval(catalog_every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = sweep.tick() => {
                    if let Err(e) = self.sweep().await {
                        tracing::warn!(error = %e, "hold sweep failed");
                    }
                }
                _ = refresh.tick() => {
                    if let Err(e) = self.refresh_catalog().await {
                        self.catalog.report_staleness(self.now_ms());
                        tracing::warn!(error = %e, "catalogue refresh failed");
                    }
                }
            }
        }
    }

    // ---- administration (R6, R9, R17, catalogue) ----

    pub async fn put_directory(
        &self,
        number: &E164,
        registered: bool,
        actor: &str,
    ) -> GatewayResult<AccountView> {
        let now = self.now_ms();
        Ok(self
            .timed(
                StoreOp::PutDirectory,
                self.store.put_directory(number, registered, actor, now),
            )
            .await?)
    }

    pub async fn set_block(
        &self,
        number: &E164,
        change: &BlockChange,
    ) -> GatewayResult<AccountView> {
        let now = self.now_ms();
        Ok(self
            .timed(StoreOp::SetBlock, self.store.set_block(number, change, now))
            .await?)
    }

    pub async fn set_limit(
        &self,
        number: &E164,
        change: &LimitChange,
        actor: &str,
    ) -> GatewayResult<AccountView> {
        let now = self.now_ms();
        Ok(self
            .timed(
                StoreOp::SetLimit,
                self.store.set_limit(number, change, actor, now),
            )
            .await?)
    }

    pub async fn account(&self, number: &E164) -> GatewayResult<AccountView> {
        Ok(self
            .timed(StoreOp::Account, self.store.account(number))
            .await?)
    }

    pub async fn issue_prepaid(
        &self,
        amount: Money,
        purchase_ref: &Reference,
    ) -> GatewayResult<IssueOutcome> {
        let now = self.now_ms();
        Ok(self
            .timed(
                StoreOp::IssuePrepaid,
                self.store
                    .issue_prepaid(&self.hasher, amount, purchase_ref, now),
            )
            .await?)
    }

    fn code_id(&self, raw: &str) -> GatewayResult<crate::domain::CodeId> {
        let code =
            PrepaidCode::parse(raw).map_err(|e| GatewayError::InvalidArgument(e.to_string()))?;
        Ok(self.hasher.id(&code))
    }

    pub async fn top_up_prepaid(
        &self,
        raw_code: &str,
        amount: Money,
        topup_ref: &Reference,
    ) -> GatewayResult<PrepaidView> {
        let id = self.code_id(raw_code)?;
        let now = self.now_ms();
        Ok(self
            .timed(
                StoreOp::TopUpPrepaid,
                self.store.top_up_prepaid(&id, amount, topup_ref, now),
            )
            .await?)
    }

    pub async fn prepaid_balance(&self, raw_code: &str) -> GatewayResult<PrepaidView> {
        let id = self.code_id(raw_code)?;
        self.timed(StoreOp::Prepaid, self.store.prepaid(&id))
            .await?
            .ok_or_else(|| GatewayError::NotFound("prepaid code not found".into()))
    }

    pub async fn upsert_merchant(&self, merchant: &Merchant) -> GatewayResult<()> {
        self.timed(
            StoreOp::UpsertMerchant,
            self.store.upsert_merchant(merchant),
        )
        .await?;
        self.refresh_catalog().await?;
        Ok(())
    }

    pub async fn upsert_service(&self, spec: &ServiceSpec) -> GatewayResult<ServiceChange> {
        let now = self.now_ms();
        let change = self
            .timed(StoreOp::UpsertService, self.store.upsert_service(spec, now))
            .await?;
        self.refresh_catalog().await?;
        Ok(change)
    }
}
