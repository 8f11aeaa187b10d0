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
//!
//! Files (issue 12): this one has the connection and start-up checks and the
//! `Store` impl, whose account, prepaid, catalogue and health methods
//! forward to `accounts`, `prepaid`, `catalog` and `health`; the call path
//! (authorize, extend, release, usage) is in `calls`; `functions` loads the
//! Lua library, `keys` names the keys, `decode` reads replies, `streams`
//! reads the partitions' event streams, `conn` is the connection.

mod accounts;
mod calls;
mod catalog;
mod conn;
mod decode;
mod functions;
mod health;
pub mod keys;
mod prepaid;
pub mod streams;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ::redis::Value;

use calls::*;
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

/// The Redis (or Redis Cluster) state store: a handle shared by the
/// gateway's requests, its sweeper and its readiness probe.
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
        accounts::put_directory(self, number, holder_registered, actor, now_ms).await
    }

    async fn set_block(
        &self,
        number: &E164,
        change: &BlockChange,
        now_ms: i64,
    ) -> StoreResult<AccountView> {
        accounts::set_block(self, number, change, now_ms).await
    }

    async fn set_limit(
        &self,
        number: &E164,
        change: &LimitChange,
        actor: &str,
        now_ms: i64,
    ) -> StoreResult<AccountView> {
        accounts::set_limit(self, number, change, actor, now_ms).await
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
        accounts::apply_invoice(self, number, invoice, now_ms).await
    }

    async fn apply_payment(
        &self,
        number: &E164,
        payment: &PaymentApply,
        now_ms: i64,
    ) -> StoreResult<Applied> {
        accounts::apply_payment(self, number, payment, now_ms).await
    }

    async fn repair_balances(
        &self,
        number: &E164,
        unbilled: Money,
        invoiced_unpaid: Money,
        reason: &str,
        now_ms: i64,
    ) -> StoreResult<AccountView> {
        accounts::repair_balances(self, number, unbilled, invoiced_unpaid, reason, now_ms).await
    }

    async fn issue_prepaid(
        &self,
        hasher: &CodeHasher,
        amount: Money,
        purchase_ref: &Reference,
        now_ms: i64,
    ) -> StoreResult<IssueOutcome> {
        prepaid::issue_prepaid(self, hasher, amount, purchase_ref, now_ms).await
    }

    async fn top_up_prepaid(
        &self,
        code: &CodeId,
        amount: Money,
        topup_ref: &Reference,
        now_ms: i64,
    ) -> StoreResult<PrepaidView> {
        prepaid::top_up_prepaid(self, code, amount, topup_ref, now_ms).await
    }

    async fn prepaid(&self, code: &CodeId) -> StoreResult<Option<PrepaidView>> {
        prepaid::prepaid(self, code).await
    }

    async fn catalog(&self) -> StoreResult<Arc<CatalogSnapshot>> {
        Ok(Arc::new(self.load_catalog().await?))
    }

    async fn catalog_version(&self) -> StoreResult<u64> {
        catalog::catalog_version(self).await
    }

    async fn upsert_merchant(&self, merchant: &Merchant) -> StoreResult<()> {
        catalog::upsert_merchant(self, merchant).await
    }

    async fn upsert_service(&self, spec: &ServiceSpec, now_ms: i64) -> StoreResult<ServiceChange> {
        catalog::upsert_service(self, spec, now_ms).await
    }

    async fn recent_events(&self, max: usize) -> StoreResult<Vec<Event>> {
        health::recent_events(self, max).await
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        health::stats(self).await
    }

    async fn ready(&self) -> Result<(), NotReady> {
        health::ready(self).await
    }
}
