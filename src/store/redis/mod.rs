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

mod conn;
pub mod keys;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ::redis::Value;

pub use conn::{Conn, RedisConfig};
use keys::Keys;

use super::partition::partition_of;
use super::*;
use crate::domain::account::{CreditPolicy, LimitSource};
use crate::domain::catalog::{Merchant, Service, ServiceChange, ServiceSpec, Terms};
use crate::domain::decision::{check_consent, Decision, DenyReason, Funding, Grant};
use crate::domain::event::{self, ids};
use crate::domain::{CodeId, Money, TermsId};

/// The version of the Function library; bump it whenever `callauth.lua`
/// changes its behaviour or its calling convention.
pub const LIBRARY_VERSION: &str = "3";

/// The Function library source with its version filled in.
pub fn library_source() -> String {
    include_str!("callauth.lua").replace("__V__", LIBRARY_VERSION)
}

fn fname(name: &str) -> String {
    format!("ca_v{LIBRARY_VERSION}_{name}")
}

/// `FCALL <function> <n> <keys…> [call-index key]`; the arguments follow.
fn fcall_cmd(function: &str, keys: &[String; 4], index: Option<&IndexClaim>) -> ::redis::Cmd {
    let mut cmd = ::redis::cmd("FCALL");
    cmd.arg(fname(function))
        .arg(keys.len() + usize::from(index.is_some()))
        .arg(&keys[..]);
    if let Some(i) = index {
        cmd.arg(&i.key);
    }
    cmd
}

/// A postpaid Authorize, ready to send (see `postpaid_authorize`).
struct PostpaidAuthorize {
    payer: Payer,
    claim: Option<IndexClaim>,
    cmd: ::redis::Cmd,
    keys: [String; 4],
}

/// A call-index entry to claim for an Authorize (see `authorize_with_index`).
struct IndexClaim {
    key: String,
    payer: String,
    ttl_ms: i64,
    /// Claimed inside the Function (single node) rather than beside it.
    inline: bool,
}

/// Amounts passed to Lua stay far below 2^53 (doubles are exact there).
const LUA_SAFE: i64 = 1 << 50;

fn lua_safe(m: Money, what: &str) -> StoreResult<i64> {
    if m.ore().abs() >= LUA_SAFE {
        return Err(StoreError::Rejected(format!("{what} is too large")));
    }
    Ok(m.ore())
}

#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    keys: Keys,
    policy: StorePolicy,
    ready: AtomicBool,
}

fn unavailable(e: ::redis::RedisError) -> StoreError {
    let text = e.to_string();
    if e.is_timeout() {
        StoreError::Timeout(0)
    } else if text.contains("@user_function") || text.contains("script:") {
        // A Function failed at run time: a bug, not an outage. Not transient.
        StoreError::Corrupt(format!("redis function error: {text}"))
    } else if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
    {
        StoreError::Unavailable(text)
    } else {
        StoreError::Unavailable(format!("redis: {text}"))
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        Value::SimpleString(s) => s.parse().unwrap_or(0),
        Value::Double(d) => *d as i64,
        _ => 0,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::VerbatimString { text, .. } => text.clone(),
        _ => String::new(),
    }
}

fn array(v: Value) -> StoreResult<Vec<Value>> {
    match v {
        Value::Array(a) => Ok(a),
        Value::Set(a) => Ok(a),
        other => Err(StoreError::Corrupt(format!(
            "expected an array from redis, got {other:?}"
        ))),
    }
}

fn flat_map(v: &Value) -> HashMap<String, String> {
    let mut out = HashMap::new();
    match v {
        Value::Array(items) => {
            for pair in items.chunks(2) {
                if let [k, val] = pair {
                    out.insert(text(k), text(val));
                }
            }
        }
        Value::Map(items) => {
            for (k, val) in items {
                out.insert(text(k), text(val));
            }
        }
        _ => {}
    }
    out
}

fn parse_hold_answer(v: Vec<Value>) -> StoreResult<AuthorizeResult> {
    let kind = v.first().map(int).unwrap_or(0);
    match kind {
        -1 => Err(StoreError::Rejected(v.get(1).map(text).unwrap_or_default())),
        0 => {
            let code = v.get(1).map(int).unwrap_or(0) as u8;
            let decision = Decision::refusal_from_code(code).ok_or_else(|| {
                StoreError::Corrupt(format!("unknown reason code {code} from redis"))
            })?;
            Ok(AuthorizeResult::refused(decision))
        }
        1 | 2 => {
            let g = Grant {
                granted_seconds: v.get(1).map(int).unwrap_or(0) as u32,
                hold: Money::ore_unchecked(v.get(2).map(int).unwrap_or(0)),
            };
            let terms_id = v
                .get(4)
                .map(text)
                .and_then(|t| TermsId::parse(&t).ok())
                .ok_or_else(|| StoreError::Corrupt("hold without terms id".into()))?;
            Ok(AuthorizeResult {
                decision: Decision::Allowed(g),
                replayed: kind == 2,
                terms_id: Some(terms_id),
                hold_expires_at_ms: v.get(3).map(int).unwrap_or(0),
                lockout_started: false,
            })
        }
        other => Err(StoreError::Corrupt(format!(
            "unexpected authorize answer {other}"
        ))),
    }
}

/// The payer of a call as recorded in the call index: "n|<partition>|<number>"
/// or "c|<partition>|<code_id>".
#[derive(Clone, Debug, PartialEq, Eq)]
enum Payer {
    Number(u32, String),
    Code(u32, String),
}

impl Payer {
    fn encode(&self) -> String {
        match self {
            Payer::Number(p, n) => format!("n|{p}|{n}"),
            Payer::Code(p, c) => format!("c|{p}|{c}"),
        }
    }

    fn decode(s: &str) -> Option<Payer> {
        let mut it = s.splitn(3, '|');
        let kind = it.next()?;
        let p: u32 = it.next()?.parse().ok()?;
        let id = it.next()?.to_string();
        match kind {
            "n" => Some(Payer::Number(p, id)),
            "c" => Some(Payer::Code(p, id)),
            _ => None,
        }
    }

    fn partition(&self) -> u32 {
        match self {
            Payer::Number(p, _) | Payer::Code(p, _) => *p,
        }
    }
}

impl RedisStore {
    /// Connects, loads the Function library and checks it.
    pub async fn connect(config: &RedisConfig, policy: StorePolicy) -> anyhow::Result<RedisStore> {
        let conn = Conn::connect(config).await?;
        let store = RedisStore {
            inner: Arc::new(Inner {
                conn,
                keys: Keys::new(&config.prefix),
                policy,
                ready: AtomicBool::new(false),
            }),
        };
        store.load_functions().await?;
        Ok(store)
    }

    /// Loads (or replaces) this version's Function library on every primary.
    pub async fn load_functions(&self) -> anyhow::Result<()> {
        let mut cmd = ::redis::cmd("FUNCTION");
        cmd.arg("LOAD").arg("REPLACE").arg(library_source());
        self.inner
            .conn
            .query::<Value>(&cmd)
            .await
            .map_err(|e| anyhow::anyhow!("FUNCTION LOAD failed: {e}"))?;
        self.check_version().await?;
        self.inner.ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn check_version(&self) -> anyhow::Result<()> {
        let mut cmd = ::redis::cmd("FCALL_RO");
        cmd.arg(fname("version")).arg(0);
        let v: String = self.inner.conn.query(&cmd).await?;
        if v != LIBRARY_VERSION {
            anyhow::bail!("library version {v} loaded, {LIBRARY_VERSION} expected");
        }
        Ok(())
    }

    /// The `FCALL` of the postpaid authorize Function for one call, and its
    /// four keys (for undoing the hold). With `index`, the call index is the
    /// fifth key and is claimed inside the Function (single node).
    fn authorize_call(
        &self,
        number: &E164,
        call: &CallSpec,
        now_ms: i64,
        index: Option<&IndexClaim>,
    ) -> StoreResult<(::redis::Cmd, [String; 4])> {
        let k = &self.inner.keys;
        let p = self.partition(number.as_str());
        let t = &call.terms.tariff;
        let pol = &self.inner.policy;
        let c = self.credit();
        let keys = [
            k.account(p, number.as_str()),
            k.hold(p, call.call_id.as_str()),
            k.expiry(p),
            k.events(p),
        ];
        let mut cmd = fcall_cmd("authorize", &keys, index);
        cmd.arg(now_ms)
            .arg(call.call_id.as_str())
            .arg(number.as_str())
            .arg(call.service.number.as_str())
            .arg(call.service.merchant_id.as_str())
            .arg(call.terms.terms_id.as_str())
            .arg(lua_safe(t.price_per_minute, "price")?)
            .arg(t.billing_step_seconds)
            .arg(t.minimum_minutes)
            .arg(pol.grant.quota_seconds)
            .arg(pol.grant.max_call_seconds)
            .arg(pol.hold_grace_ms)
            .arg(pol.hold_retention_ms)
            .arg(lua_safe(c.first_time_limit, "first-time limit")?)
            .arg(lua_safe(c.established_limit, "established limit")?)
            .arg(consent_verdict(call, Funding::Postpaid))
            .arg(p)
            .arg(self.consent_json(call, Some(number), None, p, now_ms))
            .arg(call.terms.vat.percent());
        if let Some(i) = index {
            cmd.arg(&i.payer).arg(i.ttl_ms);
        }
        Ok((cmd, keys))
    }

    /// The exact `FCALL` a postpaid Authorize sends (on a single node with
    /// the call-index claim inside it; on a cluster without the claim, which
    /// goes to another slot), for measuring the Redis floor: a server that
    /// does only this per request is the ceiling callauth on Redis is
    /// compared against.
    pub fn authorize_command(
        &self,
        number: &E164,
        call: &CallSpec,
        now_ms: i64,
    ) -> StoreResult<::redis::Cmd> {
        Ok(self.postpaid_authorize(number, call, now_ms)?.cmd)
    }

    /// Everything a postpaid Authorize sends: the payer, its call-index
    /// claim (inside the `FCALL` on a single node), the command and its keys.
    fn postpaid_authorize(
        &self,
        number: &E164,
        call: &CallSpec,
        now_ms: i64,
    ) -> StoreResult<PostpaidAuthorize> {
        let payer = Payer::Number(self.partition(number.as_str()), number.as_str().to_string());
        let claim = self.index_claim(call, &payer);
        let inline = claim.as_ref().filter(|c| c.inline);
        let (cmd, keys) = self.authorize_call(number, call, now_ms, inline)?;
        Ok(PostpaidAuthorize {
            payer,
            claim,
            cmd,
            keys,
        })
    }

    /// The call-index claim for an Authorize that may create a hold: inside
    /// the Function on a single node, beside it on a cluster (another slot).
    fn index_claim(&self, call: &CallSpec, payer: &Payer) -> Option<IndexClaim> {
        call.consent.as_ref()?;
        let p = self.partition(call.call_id.as_str());
        Some(IndexClaim {
            key: self.inner.keys.call(p, call.call_id.as_str()),
            payer: payer.encode(),
            ttl_ms: i64::from(self.inner.policy.grant.max_call_seconds) * 1000
                + self.inner.policy.hold_grace_ms
                + self.inner.policy.hold_retention_ms,
            inline: !self.inner.conn.is_cluster(),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    pub fn conn(&self) -> &Conn {
        &self.inner.conn
    }

    fn partition(&self, key: &str) -> u32 {
        partition_of(key, self.inner.policy.partitions)
    }

    async fn fcall(&self, name: &str, keys: &[String], args: Vec<String>) -> StoreResult<Value> {
        let mut cmd = ::redis::cmd("FCALL");
        cmd.arg(fname(name)).arg(keys.len()).arg(keys).arg(args);
        self.inner.conn.query(&cmd).await.map_err(unavailable)
    }

    async fn fcall_ro(&self, name: &str, keys: &[String], args: Vec<String>) -> StoreResult<Value> {
        let mut cmd = ::redis::cmd("FCALL_RO");
        cmd.arg(fname(name)).arg(keys.len()).arg(keys).arg(args);
        self.inner.conn.query(&cmd).await.map_err(unavailable)
    }

    fn credit(&self) -> &CreditPolicy {
        &self.inner.policy.credit
    }

    fn consent_json(
        &self,
        call: &CallSpec,
        number: Option<&E164>,
        code: Option<&CodeId>,
        partition: u32,
        now_ms: i64,
    ) -> String {
        let c = call.consent.as_ref();
        event::ConsentEventRef {
            event_id: &ids::consent(call.call_id.as_str()),
            at_ms: now_ms,
            partition,
            consent_recorded: event::ConsentRecordedRef {
                call_id: call.call_id.as_str(),
                number: number.map_or("", |n| n.as_str()),
                number_withheld: call.evidence.number_withheld,
                service_number: call.service.number.as_str(),
                merchant_id: call.service.merchant_id.as_str(),
                funding: if code.is_some() {
                    Funding::Prepaid
                } else {
                    Funding::Postpaid
                },
                code_id: code.map_or("", |c| c.as_str()),
                terms_id: call.terms.terms_id.as_str(),
                price_per_minute_ore: call.terms.tariff.price_per_minute.ore(),
                minimum_minutes: call.terms.tariff.minimum_minutes,
                billing_step_seconds: call.terms.tariff.billing_step_seconds,
                reminder_fee_ore: call.terms.reminder_fee.ore(),
                age_confirmed: c.is_some_and(|c| c.age_confirmed),
                own_number_confirmed: c.is_some_and(|c| c.own_number_confirmed),
                step1_at_ms: c.map_or(0, |c| c.step1_at_ms),
                terms_accepted: c.is_some_and(|c| c.terms_accepted),
                step2_at_ms: c.map_or(0, |c| c.step2_at_ms),
                ivr_client: &call.evidence.ivr_client,
                ivr_id: &call.evidence.ivr_id,
                line_ref: &call.evidence.line_ref,
                authorized_at_ms: now_ms,
            },
        }
        .to_json()
    }

    /// Claims the call id in the call index (SET NX, returning any previous
    /// owner). Written with the hold's TTL horizon; a refused call leaves an
    /// entry that expires by itself.
    async fn claim_call(&self, claim: &IndexClaim) -> StoreResult<Option<Payer>> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(&claim.key)
            .arg(&claim.payer)
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(claim.ttl_ms);
        let old: Option<String> = self.inner.conn.query(&cmd).await.map_err(unavailable)?;
        Ok(old.and_then(|s| Payer::decode(&s)))
    }

    async fn payer_of(&self, call_id: &CallId) -> StoreResult<Option<Payer>> {
        let p = self.partition(call_id.as_str());
        let mut cmd = ::redis::cmd("GET");
        cmd.arg(self.inner.keys.call(p, call_id.as_str()));
        let v: Option<String> = self.inner.conn.query(&cmd).await.map_err(unavailable)?;
        Ok(v.and_then(|s| Payer::decode(&s)))
    }

    fn payer_key(&self, payer: &Payer) -> String {
        match payer {
            Payer::Number(p, n) => self.inner.keys.account(*p, n),
            Payer::Code(p, c) => self.inner.keys.code(*p, c),
        }
    }

    /// Runs an Authorize Function with the call-index claim: inside it on a
    /// single node; on a cluster concurrently beside it (one round trip of
    /// latency), where a conflict in the index (the call id already belongs
    /// to another payer) undoes a hold the Function just created.
    async fn authorize_with_index(
        &self,
        call: &CallSpec,
        payer: &Payer,
        claim: Option<IndexClaim>,
        cmd: ::redis::Cmd,
        keys: [String; 4],
    ) -> StoreResult<AuthorizeResult> {
        let index = async {
            match &claim {
                Some(c) if !c.inline => self.claim_call(c).await,
                _ => Ok(None),
            }
        };
        let answer = async {
            self.inner
                .conn
                .query::<Value>(&cmd)
                .await
                .map_err(unavailable)
        };
        let (answer, previous) = tokio::join!(answer, index);
        let result = parse_hold_answer(array(answer?)?)?;
        match previous? {
            Some(other) if other != *payer => {
                if let Decision::Allowed(_) = result.decision {
                    if !result.replayed {
                        // Undo our fresh hold: the call id belongs to someone else.
                        let p = payer.partition();
                        let _ = self
                            .fcall(
                                "release",
                                &keys,
                                vec![
                                    "0".into(),
                                    call.call_id.to_string(),
                                    "1000".into(),
                                    p.to_string(),
                                ],
                            )
                            .await;
                    }
                }
                Err(StoreError::Rejected(format!(
                    "call_id {} is already used for another caller, code or service",
                    call.call_id
                )))
            }
            _ => Ok(result),
        }
    }

    fn grant_args(&self) -> [String; 4] {
        let pol = &self.inner.policy;
        [
            pol.grant.quota_seconds.to_string(),
            pol.grant.max_call_seconds.to_string(),
            pol.hold_grace_ms.to_string(),
            pol.hold_retention_ms.to_string(),
        ]
    }

    fn limit_args(&self) -> StoreResult<[String; 3]> {
        let c = self.credit();
        Ok([
            lua_safe(c.first_time_limit, "first-time limit")?.to_string(),
            lua_safe(c.established_limit, "established limit")?.to_string(),
            c.threshold_percent.to_string(),
        ])
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
        let locked_until = v.first().map(int).unwrap_or(0);
        let mut blocked = v.get(1).map(int).unwrap_or(0) == 1;
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
                blocked |= v.get(1).map(int).unwrap_or(0) == 1;
            }
        }
        Ok((locked_until, blocked))
    }

    async fn hgetall(&self, key: &str) -> StoreResult<HashMap<String, String>> {
        let mut cmd = ::redis::cmd("HGETALL");
        cmd.arg(key);
        let v: Value = self.inner.conn.query(&cmd).await.map_err(unavailable)?;
        Ok(flat_map(&v))
    }

    fn view_from(&self, number: &E164, a: &HashMap<String, String>) -> AccountView {
        let n = |k: &str| a.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        let source = LimitSource::from_code(n("ls") as u8).unwrap_or(LimitSource::Default);
        let established = a.get("est").is_some_and(|v| v == "1");
        let mut merchants: Vec<String> = a
            .iter()
            .filter(|(k, v)| k.starts_with("bm:") && *v == "1")
            .map(|(k, _)| k[3..].to_string())
            .collect();
        merchants.sort();
        let mut services: Vec<String> = a
            .iter()
            .filter(|(k, v)| k.starts_with("bs:") && *v == "1")
            .map(|(k, _)| k[3..].to_string())
            .collect();
        services.sort();
        AccountView {
            number: number.clone(),
            in_directory: a.contains_key("dir"),
            holder_registered: a.get("dir").is_some_and(|v| v == "1"),
            limit: self.credit().effective_limit(
                source,
                Money::ore_unchecked(n("lf")),
                established,
            ),
            limit_source: source,
            unbilled: Money::ore_unchecked(n("ub")),
            invoiced_unpaid: Money::ore_unchecked(n("iu")),
            pending: Money::ore_unchecked(n("pd")),
            blocked_all_services: a.get("bo").is_some_and(|v| v == "1"),
            blocked_merchants: merchants,
            blocked_services: services,
            credit_blocked: a.get("bc").is_some_and(|v| v == "1"),
            overdue_blocked: a.get("bd").is_some_and(|v| v == "1"),
            threshold_reached: a.get("tf").is_some_and(|v| v == "1"),
            established,
            pending_calls: n("pc").max(0) as u32,
        }
    }

    async fn view(&self, number: &E164) -> StoreResult<AccountView> {
        let p = self.partition(number.as_str());
        let a = self
            .hgetall(&self.inner.keys.account(p, number.as_str()))
            .await?;
        Ok(self.view_from(number, &a))
    }

    async fn catalog_write(
        &self,
        build: impl Fn(&CatalogSnapshot) -> StoreResult<Vec<(char, String, String)>>,
    ) -> StoreResult<()> {
        // Optimistic concurrency: plan against a fresh read, apply if nobody wrote in between.
        for _ in 0..10 {
            let current = self.load_catalog().await?;
            let writes = build(&current)?;
            let mut args = vec![current.version.to_string()];
            for (kind, key, json) in writes {
                args.push(kind.to_string());
                args.push(key);
                args.push(json);
            }
            let v = int(&self
                .fcall("catalog_apply", &self.inner.keys.catalog(), args)
                .await?);
            if v >= 0 {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable(
            "the catalogue kept changing under a write; try again".into(),
        ))
    }

    async fn load_catalog(&self) -> StoreResult<CatalogSnapshot> {
        let v = array(
            self.fcall_ro("catalog_read", &self.inner.keys.catalog(), vec![])
                .await?,
        )?;
        if v.len() != 4 {
            return Err(StoreError::Corrupt("catalog_read answered badly".into()));
        }
        let version = int(&v[0]) as u64;
        let parse = |what: &str, e: serde_json::Error| {
            StoreError::Corrupt(format!("catalogue {what}: {e}"))
        };
        let mut snap = CatalogSnapshot {
            version,
            ..Default::default()
        };
        for (_, json) in flat_map(&v[1]) {
            let m: Merchant = serde_json::from_str(&json).map_err(|e| parse("merchant", e))?;
            snap.merchants.insert(m.id.clone(), Arc::new(m));
        }
        for (_, json) in flat_map(&v[3]) {
            let t: Terms = serde_json::from_str(&json).map_err(|e| parse("terms", e))?;
            snap.terms.insert(t.terms_id.clone(), Arc::new(t));
        }
        for (_, json) in flat_map(&v[2]) {
            let s: ServiceRecord = serde_json::from_str(&json).map_err(|e| parse("service", e))?;
            let terms = snap.terms.get(&s.terms_id).cloned().ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "service {} points at missing terms",
                    s.number.as_str()
                ))
            })?;
            snap.services.insert(
                s.number.clone(),
                Arc::new(Service {
                    number: s.number,
                    merchant_id: s.merchant_id,
                    name: s.name,
                    category: s.category,
                    active: s.active,
                    terms,
                }),
            );
        }
        Ok(snap)
    }

    /// Trims each partition's stream behind its slowest consumer group
    /// (`XTRIM MINID`): entries a group has not acknowledged are never
    /// deleted. A stream without any group is capped at `cap_without_groups`
    /// entries (approximate `MAXLEN`), and a warning says settlement is not
    /// consuming. Returns the entries removed.
    pub async fn trim_streams(&self, cap_without_groups: u64) -> StoreResult<u64> {
        let mut removed = 0u64;
        for p in 0..self.inner.policy.partitions {
            let stream = self.inner.keys.events(p);
            let groups = self.stream_groups(p).await?;
            let mut cmd = ::redis::cmd("XTRIM");
            if groups.is_empty() {
                cmd.arg(&stream)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(cap_without_groups);
            } else {
                // The oldest entry still needed: the oldest pending one, or
                // the one after the last delivered, over all groups.
                let mut min_needed: Option<(u64, u64)> = None;
                for g in &groups {
                    let needed = match g.oldest_pending {
                        Some(id) => id,
                        None => next_id(g.last_delivered),
                    };
                    min_needed = Some(min_needed.map_or(needed, |m| m.min(needed)));
                }
                let (ms, seq) = min_needed.expect("at least one group");
                cmd.arg(&stream)
                    .arg("MINID")
                    .arg("~")
                    .arg(format!("{ms}-{seq}"));
            }
            removed += self
                .inner
                .conn
                .query::<i64>(&cmd)
                .await
                .map_err(unavailable)?
                .max(0) as u64;
        }
        Ok(removed)
    }

    /// The consumer groups of one partition's stream.
    pub async fn stream_groups(&self, partition: u32) -> StoreResult<Vec<GroupInfo>> {
        let stream = self.inner.keys.events(partition);
        let mut cmd = ::redis::cmd("XINFO");
        cmd.arg("GROUPS").arg(&stream);
        let v: Value = match self.inner.conn.query(&cmd).await {
            Ok(v) => v,
            Err(e) if e.to_string().contains("no such key") => return Ok(vec![]),
            Err(e) => return Err(unavailable(e)),
        };
        let mut out = Vec::new();
        for g in array(v)? {
            let info = flat_map(&g);
            let name = info.get("name").cloned().unwrap_or_default();
            let last_delivered = parse_stream_id(
                info.get("last-delivered-id")
                    .map(String::as_str)
                    .unwrap_or("0-0"),
            );
            let lag = info.get("lag").and_then(|l| l.parse::<u64>().ok());
            let pending = info
                .get("pending")
                .and_then(|l| l.parse::<u64>().ok())
                .unwrap_or(0);
            let oldest_pending = if pending > 0 {
                let mut x = ::redis::cmd("XPENDING");
                x.arg(&stream).arg(&name);
                let summary = array(
                    self.inner
                        .conn
                        .query::<Value>(&x)
                        .await
                        .map_err(unavailable)?,
                )?;
                summary.get(1).map(text).map(|s| parse_stream_id(&s))
            } else {
                None
            };
            out.push(GroupInfo {
                name,
                last_delivered,
                pending,
                lag,
                oldest_pending,
            });
        }
        Ok(out)
    }

    /// The consumers of `group` on one partition's stream (empty when the
    /// stream or the group does not exist yet).
    pub async fn stream_consumers(
        &self,
        partition: u32,
        group: &str,
    ) -> StoreResult<Vec<ConsumerInfo>> {
        let mut cmd = ::redis::cmd("XINFO");
        cmd.arg("CONSUMERS")
            .arg(self.inner.keys.events(partition))
            .arg(group);
        let v: Value = match self.inner.conn.query(&cmd).await {
            Ok(v) => v,
            Err(e) if e.code() == Some("NOGROUP") || e.to_string().contains("no such key") => {
                return Ok(vec![])
            }
            Err(e) => return Err(unavailable(e)),
        };
        Ok(array(v)?
            .iter()
            .map(|c| {
                let info = flat_map(c);
                let num = |k: &str| info.get(k).and_then(|v| v.parse::<u64>().ok());
                ConsumerInfo {
                    name: info.get("name").cloned().unwrap_or_default(),
                    pending: num("pending").unwrap_or(0),
                    idle_ms: num("idle").unwrap_or(u64::MAX),
                }
            })
            .collect())
    }
}

fn parse_stream_id(s: &str) -> (u64, u64) {
    let mut it = s.splitn(2, '-');
    let ms = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    let seq = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    (ms, seq)
}

fn next_id((ms, seq): (u64, u64)) -> (u64, u64) {
    if seq == u64::MAX {
        (ms + 1, 0)
    } else {
        (ms, seq + 1)
    }
}

/// A consumer group of a partition's event stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: String,
    pub last_delivered: (u64, u64),
    pub pending: u64,
    /// Entries not yet delivered to the group (Redis 7: `lag`).
    pub lag: Option<u64>,
    pub oldest_pending: Option<(u64, u64)>,
}

/// A consumer of a group on a partition's event stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerInfo {
    pub name: String,
    pub pending: u64,
    /// Milliseconds since it last read (`XINFO CONSUMERS` `idle`).
    pub idle_ms: u64,
}

/// A service as stored in the catalogue hash (its terms are stored apart).
#[derive(serde::Serialize, serde::Deserialize)]
struct ServiceRecord {
    number: E164,
    merchant_id: MerchantId,
    name: String,
    category: String,
    active: bool,
    terms_id: TermsId,
}

fn consent_verdict(call: &CallSpec, funding: Funding) -> u8 {
    match check_consent(call.consent.as_ref(), &call.terms, funding) {
        Ok(()) => 0,
        Err(reason) => Decision::ConsentRequired(reason).reason_code(),
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
        self.authorize_with_index(call, &a.payer, a.claim, a.cmd, a.keys)
            .await
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
            // A retry of an allowed call still gets its grant.
            if let Some(Payer::Code(_, c)) = self.payer_of(&call.call_id).await? {
                if c == code.as_str() {
                    let h = self.hgetall(&k.hold(q, call.call_id.as_str())).await?;
                    if let (Some(og), Some(oh), Some(exp), Some(tid)) =
                        (h.get("og"), h.get("oh"), h.get("exp"), h.get("tid"))
                    {
                        return Ok(AuthorizeResult {
                            decision: Decision::Allowed(Grant {
                                granted_seconds: og.parse().unwrap_or(0),
                                hold: Money::ore_unchecked(oh.parse().unwrap_or(0)),
                            }),
                            replayed: true,
                            terms_id: TermsId::parse(tid).ok(),
                            hold_expires_at_ms: exp.parse().unwrap_or(0),
                            lockout_started: false,
                        });
                    }
                }
            }
            return Ok(AuthorizeResult::refused(refusal));
        }
        // Step 2: the code.
        let t = &call.terms.tariff;
        let pol = &self.inner.policy;
        let keys = [
            k.code(q, code.as_str()),
            k.hold(q, call.call_id.as_str()),
            k.expiry(q),
            k.events(q),
        ];
        let payer = Payer::Code(q, code.to_string());
        let claim = self.index_claim(call, &payer);
        let inline = claim.as_ref().filter(|c| c.inline);
        let mut cmd = fcall_cmd("authorize_code", &keys, inline);
        cmd.arg(now_ms)
            .arg(call.call_id.as_str())
            .arg(code.as_str())
            .arg(number.map_or("", |n| n.as_str()))
            .arg(call.service.number.as_str())
            .arg(call.service.merchant_id.as_str())
            .arg(call.terms.terms_id.as_str())
            .arg(lua_safe(t.price_per_minute, "price")?)
            .arg(t.billing_step_seconds)
            .arg(t.minimum_minutes)
            .arg(pol.grant.quota_seconds)
            .arg(pol.grant.max_call_seconds)
            .arg(pol.hold_grace_ms)
            .arg(pol.hold_retention_ms)
            .arg(consent_verdict(call, Funding::Prepaid))
            .arg(q)
            .arg(self.consent_json(call, number, Some(code), q, now_ms))
            .arg(call.terms.vat.percent());
        if let Some(i) = inline {
            cmd.arg(&i.payer).arg(i.ttl_ms);
        }
        let mut r = self
            .authorize_with_index(call, &payer, claim, cmd, keys)
            .await?;
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
        Ok(int(&v) == 1)
    }

    async fn extend(
        &self,
        call_id: &CallId,
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
                let h = self.hgetall(&h_key).await?;
                match (h.get("num"), h.get("mer"), h.get("svc")) {
                    (Some(n), Some(m), Some(s)) if !n.is_empty() => {
                        let q = self.partition(n);
                        let v = array(
                            self.fcall_ro(
                                "prepaid_line",
                                &[k.account(q, n), k.line(q, "-")],
                                vec![m.clone(), s.clone()],
                            )
                            .await?,
                        )?;
                        v.get(1).map(int).unwrap_or(0) == 1
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
                ],
            )
            .await?,
        )?;
        let head = v.first().map(int).unwrap_or(0);
        match head {
            -2 => return Err(StoreError::NotFound(format!("call {call_id}"))),
            -1 => return Err(StoreError::Rejected(v.get(1).map(text).unwrap_or_default())),
            _ => {}
        }
        let outcome = if head == 1 {
            ExtendOutcome::Extended
        } else {
            ExtendOutcome::Refused(
                DenyReason::from_code(head as u8)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown extend outcome {head}")))?,
            )
        };
        Ok(ExtendResult {
            outcome,
            granted_seconds_total: v.get(1).map(int).unwrap_or(0) as u32,
            added_seconds: v.get(2).map(int).unwrap_or(0) as u32,
            hold: Money::ore_unchecked(v.get(3).map(int).unwrap_or(0)),
            hold_expires_at_ms: v.get(4).map(int).unwrap_or(0),
            replayed: v.get(5).map(int).unwrap_or(0) == 1,
        })
    }

    async fn release(&self, call_id: &CallId, now_ms: i64) -> StoreResult<ReleaseOutcome> {
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
                ],
            )
            .await?,
        )?;
        Ok(match v.first().map(int).unwrap_or(0) {
            1 => ReleaseOutcome::Voided(Money::ore_unchecked(v.get(1).map(int).unwrap_or(0))),
            2 => ReleaseOutcome::AlreadyVoided,
            3 => ReleaseOutcome::AlreadyPosted,
            4 => ReleaseOutcome::AlreadyExpired,
            _ => ReleaseOutcome::UnknownCall,
        })
    }

    async fn post_usage(&self, usage: &UsagePost, now_ms: i64) -> StoreResult<UsageOutcome> {
        let Some(payer) = self.payer_of(&usage.call_id).await? else {
            return Ok(UsageOutcome::Rejected(
                UsageReject::UnknownCall,
                "no call with this call_id was authorized".into(),
            ));
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
        let head = v.first().map(int).unwrap_or(0);
        if head == 0 {
            let reject = match v.get(1).map(int).unwrap_or(0) {
                1 => UsageReject::UnknownCall,
                2 => UsageReject::ServiceMismatch,
                3 => UsageReject::NotMerchantsService,
                4 => UsageReject::ConflictingDuplicate,
                5 => UsageReject::CallReleased,
                6 => UsageReject::StartOutOfRange,
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "unknown usage rejection {other}"
                    )))
                }
            };
            return Ok(UsageOutcome::Rejected(
                reject,
                v.get(2).map(text).unwrap_or_default(),
            ));
        }
        let posting = Posting {
            charge: Money::ore_unchecked(v.get(1).map(int).unwrap_or(0)),
            billed_seconds: v.get(2).map(int).unwrap_or(0) as u32,
            overrun_seconds: v.get(3).map(int).unwrap_or(0) as u32,
            late: v.get(4).map(int).unwrap_or(0) == 1,
            threshold_reached: v.get(5).map(int).unwrap_or(0) == 1,
            limit_reached: v.get(6).map(int).unwrap_or(0) == 1,
        };
        Ok(if head == 2 {
            UsageOutcome::Duplicate(posting)
        } else {
            UsageOutcome::Applied(posting)
        })
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
            total += int(&v).max(0) as usize;
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
        let target = super::memory::normalise_block_target(change)?;
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
        super::memory::check_amount(invoice.usage, "invoice usage")?;
        super::memory::check_amount(invoice.fees, "invoice fees")?;
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
        super::memory::check_amount(payment.amount, "payment")?;
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
        super::memory::check_amount(unbilled, "unbilled")?;
        super::memory::check_amount(invoiced_unpaid, "invoiced-unpaid")?;
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
        super::memory::check_prepaid_amount(amount)?;
        let k = &self.inner.keys;
        // The purchase key and the code must share a slot: draw codes until
        // one falls in the purchase's partition (expected `partitions` draws
        // of one HMAC each). This costs log2(partitions) bits of the code's
        // ~50 bits of randomness.
        let p = self.partition(&format!("purchase:{purchase_ref}"));
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
                        k.purchase(p, purchase_ref.as_str()),
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
            match v.first().map(int).unwrap_or(0) {
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
                    let existing = v
                        .get(1)
                        .map(text)
                        .and_then(|s| CodeId::from_stored(&s))
                        .ok_or_else(|| StoreError::Corrupt("purchase without a code id".into()))?;
                    let view = self.prepaid(&existing).await?.ok_or_else(|| {
                        StoreError::Corrupt(format!("purchase {purchase_ref} has no code"))
                    })?;
                    return Ok(IssueOutcome::AlreadyIssued(view));
                }
                _ => continue, // an id collision: draw again
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
        super::memory::check_prepaid_amount(amount)?;
        let k = &self.inner.keys;
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
        if int(&v) == 0 {
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
        let n = |k: &str| c.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        Ok(Some(PrepaidView {
            code_id: code.clone(),
            balance: Money::ore_unchecked(n("bal")),
            pending: Money::ore_unchecked(n("pd")),
            issued_at_ms: n("iss"),
        }))
    }

    async fn catalog(&self) -> StoreResult<Arc<CatalogSnapshot>> {
        Ok(Arc::new(self.load_catalog().await?))
    }

    async fn catalog_version(&self) -> StoreResult<u64> {
        let mut cmd = ::redis::cmd("GET");
        cmd.arg(&self.inner.keys.catalog()[0]);
        let v: Option<u64> = self.inner.conn.query(&cmd).await.map_err(unavailable)?;
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
                    .map_err(unavailable)?,
            )?;
            for entry in entries {
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
            stats.pending_holds += pending.map_err(unavailable)?;
            stats.outbox_len.push(len.map_err(unavailable)?);
        }
        Ok(stats)
    }

    async fn ready(&self) -> bool {
        match self.check_version().await {
            Ok(()) => {
                self.inner.ready.store(true, Ordering::Relaxed);
                true
            }
            Err(e) => {
                // The library is gone (e.g. a Redis restarted without
                // persistence): load it again, stay not ready until it is.
                if self.inner.ready.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "redis function library check failed");
                }
                if e.to_string().contains("Function not found") || e.to_string().contains("version")
                {
                    if let Err(e) = self.load_functions().await {
                        tracing::warn!(error = %e, "reloading the redis function library failed");
                        return false;
                    }
                    return true;
                }
                false
            }
        }
    }
}

fn applied_answer(v: Value, number: &E164) -> StoreResult<Applied> {
    match &v {
        Value::Int(1) => Ok(Applied::Applied),
        Value::Int(2) => Ok(Applied::AlreadyApplied),
        Value::Array(a) => match a.first().map(int) {
            Some(-2) => Err(StoreError::NotFound(format!("account {number}"))),
            Some(-1) => Err(StoreError::Rejected(a.get(1).map(text).unwrap_or_default())),
            _ => Err(StoreError::Corrupt(format!("unexpected answer {v:?}"))),
        },
        _ => Err(StoreError::Corrupt(format!("unexpected answer {v:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_is_versioned() {
        let src = library_source();
        assert!(src.starts_with(&format!("#!lua name=callauth_v{LIBRARY_VERSION}\n")));
        assert!(!src.contains("__V__"));
        assert!(src.contains(&format!("'ca_v{LIBRARY_VERSION}_authorize'")));
    }

    #[test]
    fn payer_encoding_round_trips() {
        for p in [
            Payer::Number(3, "+46701234567".into()),
            Payer::Code(0, "ab".repeat(16)),
        ] {
            assert_eq!(Payer::decode(&p.encode()), Some(p));
        }
        assert_eq!(Payer::decode("x|1|y"), None);
        assert_eq!(Payer::decode("n|q|y"), None);
    }

    #[test]
    fn stream_ids() {
        assert_eq!(parse_stream_id("1700-3"), (1700, 3));
        assert_eq!(next_id((5, 1)), (5, 2));
    }
}
