//! The production state store: Redis (one node) or Redis Cluster.
//!
//! Every money step is one call of a Redis Function (`callauth.lua`, loaded
//! at start with `FUNCTION LOAD REPLACE` under a versioned library name, so
//! that gateways of two versions can share a Redis during a rolling upgrade).
//! The pure checks that need no state (consent against the terms, the code's
//! format) run in Rust before the call; the Function re-checks everything that
//! depends on state, atomically.
//!
//! Key layout (DESIGN invariant 7; docs/redis.md has the full table): every
//! key of a number — account, holds, lockout, applied invoices and payments —
//! and its partition's event stream and expiry index share the hash tag
//! `{<prefix>:p<N>}`, N = FNV-1a(number) mod partitions. Prepaid codes live in
//! the partition of their id; a code is issued in the partition of its
//! purchase reference so that the idempotency key and the code share a slot.
//! The call index (`call_id` → the partition holding its hold) lives in the
//! call id's own partition and is written concurrently with the authorize
//! Function, so a postpaid Authorize costs one round trip of latency.
//!
//! Timeouts and retries are deliberate: each command has a response timeout
//! (default 250 ms) and the whole store step a deadline; a connection dropped
//! mid-command may be retried by the client, which is safe because every
//! Function checks its own idempotency (tested in tests/redis_faults.rs).

mod calls;
mod catalog;
mod conn;
mod decode;
mod functions;
pub mod keys;
pub mod streams;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ::redis::Value;

use calls::*;
use catalog::ServiceRecord;
pub use conn::{Conn, RedisConfig, RedisTls, RedisTlsArgs};
use decode::*;
use functions::*;
pub use functions::{library_source, LIBRARY_VERSION};
use keys::Keys;
pub use streams::{ConsumerInfo, GroupInfo};

use super::partition::partition_of;
use super::validate::check_prepaid_amount;
use super::*;
use crate::domain::account::{CreditPolicy, LimitSource};
use crate::domain::catalog::{Merchant, Service, ServiceChange, ServiceSpec, Terms};
use crate::domain::decision::{check_consent, Decision, DenyReason, Funding, Grant};
use crate::domain::event::{self, ids};
use crate::domain::{CodeId, Money, TermsId};

/// The readiness connection's response timeout is 4 × the business one,
/// and at least this.
const PROBE_TIMEOUT_FLOOR: std::time::Duration = std::time::Duration::from_secs(1);

/// The version of the Function library; bump it whenever `callauth.lua`
/// changes its behaviour or its calling convention.

#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    /// A connection of its own for readiness (issue 10): the probe never
    /// queues behind business commands on `conn`, so pure overload does not
    /// turn the gateway NOT_SERVING.
    probe: Conn,
    keys: Keys,
    policy: StorePolicy,
    ready: AtomicBool,
    /// The per-command response timeout, for the error that reports it.
    response_timeout_ms: u64,
}

impl RedisStore {
    /// Connects, loads the Function library and checks it.
    pub async fn connect(config: &RedisConfig, policy: StorePolicy) -> anyhow::Result<RedisStore> {
        let store = RedisStore::open(config, policy).await?;
        store.load_functions().await?;
        store.ensure_policy(false).await?;
        Ok(store)
    }

    /// A connection, before the library is loaded or the policy checked.
    async fn open(config: &RedisConfig, policy: StorePolicy) -> anyhow::Result<RedisStore> {
        let conn = Conn::connect(config).await?;
        // Readiness asks whether Redis answers, not how fast: a gateway
        // whose CPU is saturated reads answers late, and a probe with the
        // business timeout turned it NOT_SERVING under pure overload.
        let mut probe_config = config.clone();
        probe_config.response_timeout = (config.response_timeout * 4).max(PROBE_TIMEOUT_FLOOR);
        let probe = Conn::connect(&probe_config).await?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conn,
                probe,
                keys: Keys::new(&config.prefix),
                policy,
                ready: AtomicBool::new(false),
                response_timeout_ms: u64::try_from(config.response_timeout.as_millis())
                    .unwrap_or(u64::MAX),
            }),
        })
    }

    /// Connects and records this process's policy even when another one is
    /// recorded (`--record-policy`: an intended change of the limits).
    pub async fn connect_recording(
        config: &RedisConfig,
        policy: StorePolicy,
    ) -> anyhow::Result<RedisStore> {
        let store = RedisStore::open(config, policy).await?;
        store.load_functions().await?;
        store.ensure_policy(true).await?;
        Ok(store)
    }

    /// The store policy recorded in the deployment record, if any (read on
    /// the readiness connection).
    async fn recorded_policy(&self) -> StoreResult<Option<String>> {
        let mut cmd = ::redis::cmd("HGET");
        cmd.arg(self.inner.keys.meta()).arg("policy");
        self.inner
            .probe
            .query(&cmd)
            .await
            .map_err(|e| self.unavailable(e))
    }

    /// Records this process's policy when none is (a new or emptied store),
    /// or checks it against the recorded one: a process with other limits or
    /// partitions would compute other answers, so it refuses to start
    /// (`overwrite` records it anyway). The first writer wins a race (HSETNX).
    async fn ensure_policy(&self, overwrite: bool) -> anyhow::Result<()> {
        let mine = self.inner.policy.fingerprint();
        let mut cmd = ::redis::cmd(if overwrite { "HSET" } else { "HSETNX" });
        cmd.arg(self.inner.keys.meta()).arg("policy").arg(&mine);
        self.inner.conn.query::<i64>(&cmd).await?;
        let recorded = self.recorded_policy().await?.unwrap_or_default();
        let differences = self.inner.policy.differences(&recorded);
        anyhow::ensure!(
            differences.is_empty(),
            "the state store was set up with another store policy ({}); start with the same \
             flags, or record the new policy with `callauth-gateway --record-policy`",
            differences.join(", ")
        );
        Ok(())
    }

    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    pub fn conn(&self) -> &Conn {
        &self.inner.conn
    }

    /// A Redis error as a store error; a timeout names the configured timeout.
    fn unavailable(&self, e: ::redis::RedisError) -> StoreError {
        redis_error(e, self.inner.response_timeout_ms)
    }

    fn partition(&self, key: &str) -> u32 {
        partition_of(key, self.inner.policy.partitions)
    }

    fn credit(&self) -> &CreditPolicy {
        &self.inner.policy.credit
    }

    /// The partition of a payment reference's key.
    fn reference_partition(&self, reference: &Reference) -> u32 {
        self.partition(&format!("ref:{reference}"))
    }

    async fn line_state(
        &self,
        line: &LineKey,
        number: Option<&E164>,
        call: &CallSpec,
    ) -> StoreResult<(i64, bool)> {
        let p = self.partition(line.as_str());
        let account = match number {
            // A number's line key is the number itself: its account shares the slot.
            Some(n) if line.as_str() == n.as_str() => self.inner.keys.account(p, n.as_str()),
            _ => self.inner.keys.account(p, "-"),
        };
        let v = array(
            self.fcall_ro(
                "prepaid_line",
                &[account, self.inner.keys.line(p, line.as_str())],
                vec![
                    call.service.merchant_id.to_string(),
                    call.service.number.as_str().to_string(),
                ],
            )
            .await?,
        )?;
        let locked_until = int_at(&v, 0)?;
        let mut blocked = flag_at(&v, 1)?;
        if let Some(n) = number {
            if line.as_str() != n.as_str() {
                // Line and number in different partitions: ask the number's own.
                let q = self.partition(n.as_str());
                let v = array(
                    self.fcall_ro(
                        "prepaid_line",
                        &[
                            self.inner.keys.account(q, n.as_str()),
                            self.inner.keys.line(q, "-"),
                        ],
                        vec![
                            call.service.merchant_id.to_string(),
                            call.service.number.as_str().to_string(),
                        ],
                    )
                    .await?,
                )?;
                blocked |= flag_at(&v, 1)?;
            }
        }
        Ok((locked_until, blocked))
    }

    async fn hgetall(&self, key: &str) -> StoreResult<HashMap<String, String>> {
        crate::store::budget::check()?;
        let mut cmd = ::redis::cmd("HGETALL");
        cmd.arg(key);
        let v: Value = self
            .inner
            .conn
            .query(&cmd)
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(flat_map(&v))
    }

    async fn view(&self, number: &E164) -> StoreResult<AccountView> {
        let p = self.partition(number.as_str());
        let a = self
            .hgetall(&self.inner.keys.account(p, number.as_str()))
            .await?;
        self.view_from(number, &a)
    }
}

impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn authorize(
        &self,
        number: &E164,
        call: &CallSpec,
        now_ms: i64,
    ) -> StoreResult<AuthorizeResult> {
        let a = self.postpaid_authorize(number, call, now_ms)?;
        self.run_authorize(call, a).await
    }

    async fn authorize_prepaid(
        &self,
        line: &LineKey,
        number: Option<&E164>,
        code: &CodeId,
        call: &CallSpec,
        now_ms: i64,
    ) -> StoreResult<AuthorizeResult> {
        let k = &self.inner.keys;
        let q = self.partition(code.as_str());
        // Step 1: the line (lockout) and the holder's blocks.
        let (locked_until, holder_blocked) = self.line_state(line, number, call).await?;
        let line_snap = crate::domain::decision::LineSnapshot {
            locked_until_ms: locked_until,
            holder_blocked,
        };
        if let Some(refusal) = crate::domain::decision::decide_prepaid_line(&line_snap, now_ms) {
            // A retry of a call this code holds answers as the call stands.
            if let Some(Payer::Code(_, c)) = self.payer_of(&call.call_id).await? {
                if c == code.as_str() {
                    let v = array(
                        self.fcall_ro(
                            "replay_code",
                            &[k.hold(q, call.call_id.as_str())],
                            vec![
                                code.to_string(),
                                call.call_id.to_string(),
                                call.service.number.as_str().to_string(),
                                call.evidence.ivr_client.clone(),
                                now_ms.to_string(),
                            ],
                        )
                        .await?,
                    )?;
                    if int_at(&v, 0)? != 0 {
                        return parse_hold_answer(v);
                    }
                }
            }
            return Ok(AuthorizeResult::refused(refusal));
        }
        // Step 2: the code.
        let a = self.prepaid_authorize(number, code, call, now_ms)?;
        let mut r = self.run_authorize(call, a).await?;
        if r.decision == Decision::Denied(DenyReason::PrepaidCodeInvalid) {
            // Step 3 (wrong codes only): count it against the line.
            if self.record_code_failure(line, now_ms).await? {
                r.decision = Decision::Denied(DenyReason::PrepaidLockedOut);
                r.lockout_started = true;
            }
        }
        Ok(r)
    }

    async fn record_code_failure(&self, line: &LineKey, now_ms: i64) -> StoreResult<bool> {
        let p = self.partition(line.as_str());
        let pol = &self.inner.policy;
        let v = self
            .fcall(
                "code_failure",
                &[self.inner.keys.line(p, line.as_str())],
                vec![
                    now_ms.to_string(),
                    pol.lockout_window_ms.to_string(),
                    pol.lockout_max_failures.to_string(),
                    pol.lockout_ms.to_string(),
                ],
            )
            .await?;
        Ok(int(&v)? == 1)
    }

    async fn extend(
        &self,
        call_id: &CallId,
        ivr_client: &str,
        sequence: u32,
        now_ms: i64,
    ) -> StoreResult<ExtendResult> {
        let payer = self
            .payer_of(call_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("call {call_id}")))?;
        let k = &self.inner.keys;
        let p = payer.partition();
        let h_key = k.hold(p, call_id.as_str());
        // A prepaid call from a known number stops growing when its holder blocks.
        let holder_blocked = match &payer {
            Payer::Code(..) => {
                let parties = array(
                    self.fcall_ro("hold_parties", std::slice::from_ref(&h_key), vec![])
                        .await?,
                )?;
                match parties.as_slice() {
                    [n, m, s] => {
                        let (n, m, s) = (text(n)?, text(m)?, text(s)?);
                        if n.is_empty() {
                            false
                        } else {
                            let q = self.partition(&n);
                            let v = array(
                                self.fcall_ro(
                                    "prepaid_line",
                                    &[k.account(q, &n), k.line(q, "-")],
                                    vec![m, s],
                                )
                                .await?,
                            )?;
                            flag_at(&v, 1)?
                        }
                    }
                    _ => false,
                }
            }
            Payer::Number(..) => false,
        };
        let [quota, max_call, grace, _] = self.grant_args();
        let [first, established, _] = self.limit_args()?;
        let v = array(
            self.fcall(
                "extend",
                &[self.payer_key(&payer), h_key, k.expiry(p)],
                vec![
                    now_ms.to_string(),
                    call_id.to_string(),
                    sequence.to_string(),
                    quota,
                    max_call,
                    grace,
                    first,
                    established,
                    if holder_blocked { "1" } else { "0" }.to_string(),
                    ivr_client.to_string(),
                ],
            )
            .await?,
        )?;
        parse_extend_answer(v, call_id)
    }

    async fn release(
        &self,
        call_id: &CallId,
        ivr_client: &str,
        now_ms: i64,
    ) -> StoreResult<ReleaseOutcome> {
        let Some(payer) = self.payer_of(call_id).await? else {
            return Ok(ReleaseOutcome::UnknownCall);
        };
        let k = &self.inner.keys;
        let p = payer.partition();
        let v = array(
            self.fcall(
                "release",
                &[
                    self.payer_key(&payer),
                    k.hold(p, call_id.as_str()),
                    k.expiry(p),
                    k.events(p),
                ],
                vec![
                    now_ms.to_string(),
                    call_id.to_string(),
                    self.inner.policy.hold_retention_ms.to_string(),
                    p.to_string(),
                    ivr_client.to_string(),
                ],
            )
            .await?,
        )?;
        parse_release_answer(v)
    }

    async fn post_usage(&self, usage: &UsagePost, now_ms: i64) -> StoreResult<UsageOutcome> {
        let Some(payer) = self.payer_of(&usage.call_id).await? else {
            return Ok(UsageOutcome::rejected(UsageReject::UnknownCall));
        };
        let k = &self.inner.keys;
        let p = payer.partition();
        let [first, established, percent] = self.limit_args()?;
        let v = array(
            self.fcall(
                "post_usage",
                &[
                    self.payer_key(&payer),
                    k.hold(p, usage.call_id.as_str()),
                    k.expiry(p),
                    k.events(p),
                ],
                vec![
                    now_ms.to_string(),
                    usage.call_id.to_string(),
                    usage.merchant_id.to_string(),
                    usage.record_id.to_string(),
                    usage.service_number.as_str().to_string(),
                    usage.started_at_ms.to_string(),
                    usage.duration_seconds.to_string(),
                    self.inner.policy.usage_start_skew_ms.to_string(),
                    self.inner.policy.hold_retention_ms.to_string(),
                    first,
                    established,
                    percent,
                    p.to_string(),
                ],
            )
            .await?,
        )?;
        parse_usage_answer(v)
    }

    async fn expire_due(&self, now_ms: i64, max: usize) -> StoreResult<usize> {
        let k = &self.inner.keys;
        let mut total = 0usize;
        for p in 0..self.inner.policy.partitions {
            if total >= max {
                break;
            }
            let v = self
                .fcall(
                    "expire_due",
                    &[k.expiry(p), k.events(p)],
                    vec![
                        now_ms.to_string(),
                        (max - total).to_string(),
                        k.tag_prefix(p),
                        self.inner.policy.hold_retention_ms.to_string(),
                        p.to_string(),
                    ],
                )
                .await?;
            total += usize::try_from(int(&v)?)
                .map_err(|_| StoreError::Corrupt("expire_due answered a negative count".into()))?;
        }
        Ok(total)
    }

    async fn put_directory(
        &self,
        number: &E164,
        holder_registered: bool,
        actor: &str,
        now_ms: i64,
    ) -> StoreResult<AccountView> {
        let k = &self.inner.keys;
        let p = self.partition(number.as_str());
        self.fcall(
            "put_directory",
            &[k.account(p, number.as_str()), k.events(p)],
            vec![
                now_ms.to_string(),
                number.as_str().to_string(),
                if holder_registered { "1" } else { "0" }.to_string(),
                actor.to_string(),
                p.to_string(),
            ],
        )
        .await?;
        self.view(number).await
    }

    async fn set_block(
        &self,
        number: &E164,
        change: &BlockChange,
        now_ms: i64,
    ) -> StoreResult<AccountView> {
        let target = super::validate::normalise_block_target(change)?;
        let field = match change.kind {
            BlockKind::HolderAllServices => "bo".to_string(),
            BlockKind::HolderMerchant => format!("bm:{target}"),
            BlockKind::HolderService => format!("bs:{target}"),
            BlockKind::Overdue => "bd".to_string(),
            BlockKind::CreditLimit => unreachable!("refused by normalise_block_target"),
        };
        let kind = serde_json::to_value(change.kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let k = &self.inner.keys;
        let p = self.partition(number.as_str());
        self.fcall(
            "set_block",
            &[k.account(p, number.as_str()), k.events(p)],
            vec![
                now_ms.to_string(),
                number.as_str().to_string(),
                field,
                kind,
                target,
                if change.blocked { "1" } else { "0" }.to_string(),
                change.reason.clone(),
                change.actor.clone(),
                p.to_string(),
            ],
        )
        .await?;
        self.view(number).await
    }

    async fn set_limit(
        &self,
        number: &E164,
        change: &LimitChange,
        actor: &str,
        now_ms: i64,
    ) -> StoreResult<AccountView> {
        let current = self.view(number).await?;
        let (source, fixed) = change
            .resolve(self.credit(), current.established)
            .map_err(|e| StoreError::Rejected(e.to_string()))?;
        let [first, established, percent] = self.limit_args()?;
        let k = &self.inner.keys;
        let p = self.partition(number.as_str());
        self.fcall(
            "set_limit",
            &[k.account(p, number.as_str()), k.events(p)],
            vec![
                now_ms.to_string(),
                number.as_str().to_string(),
                source.code().to_string(),
                lua_safe(fixed, "limit")?.to_string(),
                first,
                established,
                percent,
                change.reference().to_string(),
                actor.to_string(),
                p.to_string(),
            ],
        )
        .await?;
        self.view(number).await
    }

    async fn account(&self, number: &E164) -> StoreResult<AccountView> {
        self.view(number).await
    }

    async fn apply_invoice(
        &self,
        number: &E164,
        invoice: &InvoiceApply,
        now_ms: i64,
    ) -> StoreResult<Applied> {
        super::validate::check_amount(invoice.usage, "invoice usage")?;
        super::validate::check_amount(invoice.fees, "invoice fees")?;
        let [first, established, percent] = self.limit_args()?;
        let k = &self.inner.keys;
        let p = self.partition(number.as_str());
        let v = self
            .fcall(
                "apply_invoice",
                &[
                    k.account(p, number.as_str()),
                    k.applied_invoices(p, number.as_str()),
                    k.events(p),
                ],
                vec![
                    now_ms.to_string(),
                    number.as_str().to_string(),
                    invoice.invoice_id.to_string(),
                    lua_safe(invoice.usage, "invoice usage")?.to_string(),
                    lua_safe(invoice.fees, "invoice fees")?.to_string(),
                    first,
                    established,
                    percent,
                    p.to_string(),
                ],
            )
            .await?;
        applied_answer(v, number)
    }

    async fn apply_payment(
        &self,
        number: &E164,
        payment: &PaymentApply,
        now_ms: i64,
    ) -> StoreResult<Applied> {
        super::validate::check_amount(payment.amount, "payment")?;
        let [first, established, percent] = self.limit_args()?;
        let k = &self.inner.keys;
        let p = self.partition(number.as_str());
        let v = self
            .fcall(
                "apply_payment",
                &[
                    k.account(p, number.as_str()),
                    k.applied_payments(p, number.as_str()),
                    k.events(p),
                ],
                vec![
                    now_ms.to_string(),
                    number.as_str().to_string(),
                    payment.payment_id.to_string(),
                    lua_safe(payment.amount, "payment")?.to_string(),
                    if payment.clear_overdue { "1" } else { "0" }.to_string(),
                    if payment.first_invoice_paid { "1" } else { "0" }.to_string(),
                    first,
                    established,
                    percent,
                    p.to_string(),
                ],
            )
            .await?;
        applied_answer(v, number)
    }

    async fn repair_balances(
        &self,
        number: &E164,
        unbilled: Money,
        invoiced_unpaid: Money,
        reason: &str,
        now_ms: i64,
    ) -> StoreResult<AccountView> {
        super::validate::check_amount(unbilled, "unbilled")?;
        super::validate::check_amount(invoiced_unpaid, "invoiced-unpaid")?;
        let [first, established, percent] = self.limit_args()?;
        let k = &self.inner.keys;
        let p = self.partition(number.as_str());
        self.fcall(
            "repair_balances",
            &[k.account(p, number.as_str()), k.events(p)],
            vec![
                now_ms.to_string(),
                number.as_str().to_string(),
                lua_safe(unbilled, "unbilled")?.to_string(),
                lua_safe(invoiced_unpaid, "invoiced-unpaid")?.to_string(),
                reason.to_string(),
                first,
                established,
                percent,
                p.to_string(),
            ],
        )
        .await?;
        self.view(number).await
    }

    async fn issue_prepaid(
        &self,
        hasher: &CodeHasher,
        amount: Money,
        purchase_ref: &Reference,
        now_ms: i64,
    ) -> StoreResult<IssueOutcome> {
        check_prepaid_amount(amount)?;
        let k = &self.inner.keys;
        // The reference key and the code must share a slot: draw codes until
        // one falls in the reference's partition (expected `partitions` draws
        // of one HMAC each). This costs log2(partitions) bits of the code's
        // ~50 bits of randomness.
        let p = self.reference_partition(purchase_ref);
        for _ in 0..16 {
            let (code, id) = loop {
                let code = PrepaidCode::generate();
                let id = hasher.id(&code);
                if self.partition(id.as_str()) == p {
                    break (code, id);
                }
            };
            let v = array(
                self.fcall(
                    "issue_code",
                    &[
                        k.reference(p, purchase_ref.as_str()),
                        k.code(p, id.as_str()),
                        k.events(p),
                    ],
                    vec![
                        now_ms.to_string(),
                        id.to_string(),
                        lua_safe(amount, "amount")?.to_string(),
                        purchase_ref.to_string(),
                        p.to_string(),
                    ],
                )
                .await?,
            )?;
            match int_at(&v, 0)? {
                1 => {
                    return Ok(IssueOutcome::Issued {
                        code,
                        view: PrepaidView {
                            code_id: id,
                            balance: amount,
                            pending: Money::ZERO,
                            issued_at_ms: now_ms,
                        },
                    })
                }
                2 => {
                    let existing = CodeId::from_stored(&text(at(&v, 1)?)?)
                        .ok_or_else(|| StoreError::Corrupt("purchase without a code id".into()))?;
                    let view = self.prepaid(&existing).await?.ok_or_else(|| {
                        StoreError::Corrupt(format!("purchase {purchase_ref} has no code"))
                    })?;
                    return Ok(IssueOutcome::AlreadyIssued(view));
                }
                -1 => return Err(StoreError::Rejected(text(at(&v, 1)?)?)),
                -2 => continue, // an id collision: draw again
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "unexpected issue_code answer {other}"
                    )))
                }
            }
        }
        Err(StoreError::Unavailable(
            "could not draw a fresh prepaid code".into(),
        ))
    }

    async fn top_up_prepaid(
        &self,
        code: &CodeId,
        amount: Money,
        topup_ref: &Reference,
        now_ms: i64,
    ) -> StoreResult<PrepaidView> {
        check_prepaid_amount(amount)?;
        let k = &self.inner.keys;
        if self.prepaid(code).await?.is_none() {
            return Err(StoreError::NotFound("prepaid code".into()));
        }
        // The reference first (its own slot): a reference pays for one thing.
        let r = self.reference_partition(topup_ref);
        let claimed = self
            .fcall(
                "claim_reference",
                &[k.reference(r, topup_ref.as_str())],
                vec![
                    code.to_string(),
                    lua_safe(amount, "amount")?.to_string(),
                    topup_ref.to_string(),
                ],
            )
            .await?;
        if let Value::Array(a) = &claimed {
            return Err(StoreError::Rejected(text(at(a, 1)?)?));
        }
        let p = self.partition(code.as_str());
        let v = self
            .fcall(
                "top_up",
                &[k.code(p, code.as_str()), k.events(p)],
                vec![
                    now_ms.to_string(),
                    code.to_string(),
                    lua_safe(amount, "amount")?.to_string(),
                    topup_ref.to_string(),
                    p.to_string(),
                ],
            )
            .await?;
        if int(&v)? == 0 {
            return Err(StoreError::NotFound("prepaid code".into()));
        }
        self.prepaid(code)
            .await?
            .ok_or_else(|| StoreError::NotFound("prepaid code".into()))
    }

    async fn prepaid(&self, code: &CodeId) -> StoreResult<Option<PrepaidView>> {
        let p = self.partition(code.as_str());
        let c = self
            .hgetall(&self.inner.keys.code(p, code.as_str()))
            .await?;
        if c.is_empty() {
            return Ok(None);
        }
        Ok(Some(PrepaidView {
            code_id: code.clone(),
            balance: Money::ore_unchecked(counter(&c, "bal")?),
            pending: Money::ore_unchecked(counter(&c, "pd")?),
            issued_at_ms: counter(&c, "iss")?,
        }))
    }

    async fn catalog(&self) -> StoreResult<Arc<CatalogSnapshot>> {
        Ok(Arc::new(self.load_catalog().await?))
    }

    async fn catalog_version(&self) -> StoreResult<u64> {
        let mut cmd = ::redis::cmd("GET");
        cmd.arg(&self.inner.keys.catalog()[0]);
        let v: Option<u64> = self
            .inner
            .conn
            .query(&cmd)
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(v.unwrap_or(0))
    }

    async fn upsert_merchant(&self, merchant: &Merchant) -> StoreResult<()> {
        merchant
            .validate()
            .map_err(|e| StoreError::Rejected(e.to_string()))?;
        let json = serde_json::to_string(merchant).expect("merchants serialise");
        self.catalog_write(|_| Ok(vec![('m', merchant.id.to_string(), json.clone())]))
            .await
    }

    async fn upsert_service(&self, spec: &ServiceSpec, now_ms: i64) -> StoreResult<ServiceChange> {
        let planned = std::sync::Mutex::new(None);
        self.catalog_write(|current| {
            let change = current
                .plan_service(spec, now_ms)
                .map_err(|e| StoreError::Rejected(e.to_string()))?;
            let record = ServiceRecord {
                number: change.service.number.clone(),
                merchant_id: change.service.merchant_id.clone(),
                name: change.service.name.clone(),
                category: change.service.category.clone(),
                active: change.service.active,
                terms_id: change.service.terms.terms_id.clone(),
            };
            let mut writes = Vec::new();
            if let Some(t) = &change.new_terms {
                writes.push((
                    't',
                    t.terms_id.to_string(),
                    serde_json::to_string(t.as_ref()).expect("terms serialise"),
                ));
            }
            writes.push((
                's',
                record.number.as_str().to_string(),
                serde_json::to_string(&record).expect("services serialise"),
            ));
            *planned.lock().expect("local lock") = Some(change);
            Ok(writes)
        })
        .await?;
        planned
            .into_inner()
            .expect("local lock")
            .ok_or_else(|| StoreError::Corrupt("service change was not planned".into()))
    }

    async fn recent_events(&self, max: usize) -> StoreResult<Vec<Event>> {
        // Oldest first within each partition (as appended), then by time.
        let mut all = Vec::new();
        for p in 0..self.inner.policy.partitions {
            let mut cmd = ::redis::cmd("XREVRANGE");
            cmd.arg(self.inner.keys.events(p))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(max);
            let entries = array(
                self.inner
                    .conn
                    .query::<Value>(&cmd)
                    .await
                    .map_err(|e| self.unavailable(e))?,
            )?;
            for entry in entries.into_iter().rev() {
                let parts = array(entry)?;
                let fields = parts.get(1).map(flat_map).unwrap_or_default();
                if let Some(json) = fields.get("e") {
                    let e = Event::from_json(json)
                        .map_err(|err| StoreError::Corrupt(format!("event {json}: {err}")))?;
                    all.push(e);
                }
            }
        }
        all.sort_by_key(|e| e.at_ms);
        let skip = all.len().saturating_sub(max);
        Ok(all.split_off(skip))
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        let mut stats = StoreStats::default();
        for p in 0..self.inner.policy.partitions {
            let mut z = ::redis::cmd("ZCARD");
            z.arg(self.inner.keys.expiry(p));
            let mut x = ::redis::cmd("XLEN");
            x.arg(self.inner.keys.events(p));
            let (pending, len) = tokio::join!(
                self.inner.conn.query::<u64>(&z),
                self.inner.conn.query::<u64>(&x)
            );
            stats.pending_holds += pending.map_err(|e| self.unavailable(e))?;
            stats.outbox_len.push(len.map_err(|e| self.unavailable(e))?);
        }
        Ok(stats)
    }

    async fn ready(&self) -> Result<(), NotReady> {
        if let Err(e) = self.check_version().await {
            // The library is gone (e.g. a Redis restarted without
            // persistence): load it again, stay not ready until it is.
            if self.inner.ready.swap(false, Ordering::Relaxed) {
                tracing::warn!(error = %e, "redis function library check failed");
            }
            let missing =
                e.to_string().contains("Function not found") || e.to_string().contains("version");
            if !missing {
                return Err(NotReady::Unreachable);
            }
            if let Err(e) = self.load_functions().await {
                tracing::warn!(error = %e, "reloading the redis function library failed");
                return Err(NotReady::Unreachable);
            }
        }
        let recorded = self.recorded_policy().await.map_err(|e| {
            tracing::warn!(error = %e, "reading the state store's deployment record failed");
            NotReady::Unreachable
        })?;
        match recorded {
            None => Err(NotReady::Empty),
            Some(fp) if !self.inner.policy.differences(&fp).is_empty() => Err(NotReady::Foreign),
            Some(_) => {
                self.inner.ready.store(true, Ordering::Relaxed);
                Ok(())
            }
        }
    }
}
