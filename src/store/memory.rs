//! The embedded state store: everything in process memory, for a laptop, a
//! demo or a single-node trial. Nothing survives a restart.
//!
//! Concurrency: one `Mutex` per number (and per prepaid code) inside a
//! `DashMap`, so that each business step on a number is atomic and steps on
//! different numbers run in parallel. Lock order, everywhere:
//! map shard (only long enough to clone an `Arc`) → account or code →
//! expiry/purge index → outbox partition. No lock is held across `.await`
//! (there is none inside this module), and no two account locks are ever held
//! together. A prepaid step reads the caller's account (for the holder's
//! blocks), releases it, then locks the code: the block check and the hold
//! are two steps, as in the Redis store where they live in different slots.

use std::collections::{BTreeSet, HashSet};

use crate::domain::catalog::FastMap;
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use super::outbox::Outbox;
use super::partition::partition_of;
use super::*;
use crate::domain::account::{CreditPolicy, ThresholdState};
use crate::domain::decision::{
    decide_extend, decide_postpaid, decide_prepaid_code, decide_prepaid_line, AccountSnapshot,
    CodeSnapshot, Directory, Extension, Funding, Grant, LineSnapshot,
};
use crate::domain::event::{self, ids, EventBody};
use crate::domain::rating::{rate, Tariff};
use crate::domain::vat::VatRate;

/// Events kept per partition in the in-process outbox (the JSON-lines file,
/// when configured, keeps all of them).
pub const DEFAULT_OUTBOX_CAPACITY: usize = 10_000;

/// The embedded store. Cheap to clone (shared state).
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    policy: StorePolicy,
    accounts: FastDashMap<E164, Arc<Mutex<Account>>>,
    /// Wrong-code counters per calling line (R17).
    lines: FastDashMap<LineKey, LineState>,
    codes: FastDashMap<CodeId, Arc<Mutex<Code>>>,
    purchases: FastDashMap<Reference, CodeId>,
    /// call id → who holds the call's hold.
    calls: FastDashMap<CallId, Payer>,
    /// Pending holds by expiry time.
    expiry: Mutex<BTreeSet<(i64, CallId)>>,
    /// Finished holds by the time they may be forgotten.
    purge: Mutex<BTreeSet<(i64, CallId)>>,
    catalog: ArcSwap<CatalogSnapshot>,
    catalog_write: Mutex<()>,
    outbox: Outbox,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Payer {
    Number(E164),
    Code(CodeId),
}

#[derive(Clone, Debug, Default)]
struct LineState {
    failures: u32,
    window_start_ms: i64,
    locked_until_ms: i64,
}

#[derive(Debug, Default)]
struct Account {
    /// None: not in the directory; Some(registered).
    directory: Option<bool>,
    limit_source: LimitSource,
    fixed_limit: Money,
    established: bool,
    unbilled: Money,
    invoiced_unpaid: Money,
    pending: Money,
    pending_calls: u32,
    blocked_all: bool,
    blocked_merchants: BTreeSet<String>,
    blocked_services: BTreeSet<String>,
    credit_blocked: bool,
    overdue_blocked: bool,
    threshold_fired: bool,
    threshold_seq: u64,
    repair_seq: u64,
    limit_seq: u64,
    block_seq: u64,
    limit_change_seq: u64,
    directory_seq: u64,
    holds: FastMap<CallId, Hold>,
    invoices: HashSet<Reference>,
    payments: HashSet<Reference>,
}

#[derive(Debug)]
struct Code {
    balance: Money,
    pending: Money,
    issued_at_ms: i64,
    refs: HashSet<Reference>,
    holds: FastMap<CallId, Hold>,
}

#[derive(Clone, Debug)]
struct Hold {
    number: Option<E164>,
    code: Option<CodeId>,
    service_number: E164,
    merchant_id: MerchantId,
    terms_id: TermsId,
    tariff: Tariff,
    /// The VAT rate of the accepted terms, carried to the usage event.
    vat_rate: VatRate,
    /// The grant given by Authorize (what a replay returns).
    original: Grant,
    /// The grant now, after extensions.
    grant: Grant,
    authorized_at_ms: i64,
    expires_at_ms: i64,
    state: HoldState,
    last_extend: Option<(u32, ExtendResult)>,
}

#[derive(Clone, Debug, PartialEq)]
enum HoldState {
    Pending,
    Posted {
        duration_seconds: u32,
        posting: Posting,
    },
    Voided,
    Expired,
}

/// A DashMap with foldhash's seeded hasher (see `domain::catalog::FastMap`).
type FastDashMap<K, V> = DashMap<K, V, foldhash::fast::RandomState>;

fn guard<T>(m: &Mutex<T>) -> StoreResult<MutexGuard<'_, T>> {
    // A poisoned lock means a panic in the middle of a money change: refuse
    // to go on with possibly half-applied state rather than guess.
    m.lock()
        .map_err(|_| StoreError::Corrupt("a lock was poisoned by an earlier panic".into()))
}

impl Account {
    fn limit(&self, credit: &CreditPolicy) -> Money {
        credit.effective_limit(self.limit_source, self.fixed_limit, self.established)
    }

    fn exposure(&self) -> Money {
        self.unbilled + self.invoiced_unpaid
    }

    fn available(&self, credit: &CreditPolicy) -> Money {
        self.limit(credit) - self.exposure() - self.pending
    }

    fn holder_blocked(&self, merchant: &MerchantId, service: &E164) -> bool {
        self.blocked_all
            || self.blocked_merchants.contains(merchant.as_str())
            || self.blocked_services.contains(service.as_str())
    }

    fn snapshot(
        &self,
        credit: &CreditPolicy,
        merchant: &MerchantId,
        service: &E164,
    ) -> AccountSnapshot {
        AccountSnapshot {
            directory: match self.directory {
                None => Directory::NotListed,
                Some(false) => Directory::Unregistered,
                Some(true) => Directory::Registered,
            },
            holder_blocked: self.holder_blocked(merchant, service),
            credit_blocked: self.credit_blocked,
            overdue_blocked: self.overdue_blocked,
            limit: self.limit(credit),
            unbilled: self.unbilled,
            invoiced_unpaid: self.invoiced_unpaid,
            pending: self.pending,
        }
    }

    fn threshold_state(&self) -> ThresholdState {
        ThresholdState {
            threshold_fired: self.threshold_fired,
            credit_blocked: self.credit_blocked,
        }
    }

    fn view(&self, number: &E164, credit: &CreditPolicy) -> AccountView {
        AccountView {
            number: number.clone(),
            in_directory: self.directory.is_some(),
            holder_registered: self.directory == Some(true),
            limit: self.limit(credit),
            limit_source: self.limit_source,
            unbilled: self.unbilled,
            invoiced_unpaid: self.invoiced_unpaid,
            pending: self.pending,
            blocked_all_services: self.blocked_all,
            blocked_merchants: self.blocked_merchants.iter().cloned().collect(),
            blocked_services: self.blocked_services.iter().cloned().collect(),
            credit_blocked: self.credit_blocked,
            overdue_blocked: self.overdue_blocked,
            threshold_reached: self.threshold_fired,
            established: self.established,
            pending_calls: self.pending_calls,
        }
    }
}

impl Code {
    fn view(&self, id: &CodeId) -> PrepaidView {
        PrepaidView {
            code_id: id.clone(),
            balance: self.balance,
            pending: self.pending,
            issued_at_ms: self.issued_at_ms,
        }
    }
}

impl Hold {
    fn funding(&self) -> Funding {
        if self.code.is_some() {
            Funding::Prepaid
        } else {
            Funding::Postpaid
        }
    }

    fn replay(&self) -> AuthorizeResult {
        AuthorizeResult {
            decision: Decision::Allowed(self.original),
            replayed: true,
            terms_id: Some(self.terms_id.clone()),
            hold_expires_at_ms: self.expires_at_ms,
            lockout_started: false,
        }
    }

    fn number_str(&self) -> String {
        self.number
            .as_ref()
            .map(|n| n.as_str().to_string())
            .unwrap_or_default()
    }

    fn code_str(&self) -> String {
        self.code
            .as_ref()
            .map(|c| c.as_str().to_string())
            .unwrap_or_default()
    }
}

impl MemoryStore {
    pub fn new(policy: StorePolicy) -> MemoryStore {
        let outbox = Outbox::new(policy.partitions, DEFAULT_OUTBOX_CAPACITY);
        MemoryStore::with_outbox(policy, outbox)
    }

    /// A store whose outbox also writes a JSON-lines file, or keeps a custom capacity.
    pub fn with_outbox(policy: StorePolicy, outbox: Outbox) -> MemoryStore {
        MemoryStore {
            inner: Arc::new(Inner {
                policy,
                accounts: FastDashMap::default(),
                lines: FastDashMap::default(),
                codes: FastDashMap::default(),
                purchases: FastDashMap::default(),
                calls: FastDashMap::default(),
                expiry: Mutex::new(BTreeSet::new()),
                purge: Mutex::new(BTreeSet::new()),
                catalog: ArcSwap::from_pointee(CatalogSnapshot::default()),
                catalog_write: Mutex::new(()),
                outbox,
            }),
        }
    }

    pub fn policy(&self) -> &StorePolicy {
        &self.inner.policy
    }
}

impl Inner {
    fn partition(&self, key: &str) -> u32 {
        partition_of(key, self.policy.partitions)
    }

    fn emit(&self, partition: u32, at_ms: i64, event_id: String, body: EventBody) {
        self.outbox.append(Event {
            event_id,
            at_ms,
            partition,
            body,
        });
    }

    fn account_arc(&self, number: &E164) -> Option<Arc<Mutex<Account>>> {
        self.accounts.get(number).map(|a| a.clone())
    }

    fn account_or_new(&self, number: &E164) -> Arc<Mutex<Account>> {
        self.accounts.entry(number.clone()).or_default().clone()
    }

    fn code_arc(&self, code: &CodeId) -> Option<Arc<Mutex<Code>>> {
        self.codes.get(code).map(|c| c.clone())
    }

    fn payer_of(&self, call_id: &CallId) -> Option<Payer> {
        self.calls.get(call_id).map(|p| p.clone())
    }

    /// Claims a call id for `payer`; false when another payer already has it.
    fn claim_call(&self, call_id: &CallId, payer: Payer) -> bool {
        match self.calls.entry(call_id.clone()) {
            Entry::Occupied(o) => *o.get() == payer,
            Entry::Vacant(v) => {
                v.insert(payer);
                true
            }
        }
    }

    fn expiry_moved(
        &self,
        call_id: &CallId,
        old_ms: Option<i64>,
        new_ms: Option<i64>,
    ) -> StoreResult<()> {
        let mut idx = guard(&self.expiry)?;
        if let Some(old) = old_ms {
            idx.remove(&(old, call_id.clone()));
        }
        if let Some(new) = new_ms {
            idx.insert((new, call_id.clone()));
        }
        Ok(())
    }

    fn schedule_purge(&self, call_id: &CallId, now_ms: i64) -> StoreResult<()> {
        guard(&self.purge)?.insert((now_ms + self.policy.hold_retention_ms, call_id.clone()));
        Ok(())
    }

    fn new_hold(
        &self,
        call: &CallSpec,
        number: Option<&E164>,
        code: Option<&CodeId>,
        g: Grant,
        now_ms: i64,
    ) -> Hold {
        Hold {
            number: number.cloned(),
            code: code.cloned(),
            service_number: call.service.number.clone(),
            merchant_id: call.service.merchant_id.clone(),
            terms_id: call.terms.terms_id.clone(),
            tariff: call.terms.tariff,
            vat_rate: call.terms.vat,
            original: g,
            grant: g,
            authorized_at_ms: now_ms,
            expires_at_ms: now_ms + i64::from(g.granted_seconds) * 1000 + self.policy.hold_grace_ms,
            state: HoldState::Pending,
            last_extend: None,
        }
    }

    fn emit_consent(&self, partition: u32, call: &CallSpec, hold: &Hold, now_ms: i64) {
        let c = call.consent.as_ref();
        self.emit(
            partition,
            now_ms,
            ids::consent(call.call_id.as_str()),
            EventBody::ConsentRecorded(event::ConsentRecorded {
                call_id: call.call_id.to_string(),
                number: hold.number_str(),
                number_withheld: call.evidence.number_withheld,
                service_number: call.service.number.as_str().to_string(),
                merchant_id: call.service.merchant_id.to_string(),
                funding: hold.funding(),
                code_id: hold.code_str(),
                terms_id: call.terms.terms_id.to_string(),
                price_per_minute_ore: call.terms.tariff.price_per_minute.ore(),
                minimum_minutes: call.terms.tariff.minimum_minutes,
                billing_step_seconds: call.terms.tariff.billing_step_seconds,
                reminder_fee_ore: call.terms.reminder_fee.ore(),
                age_confirmed: c.is_some_and(|c| c.age_confirmed),
                own_number_confirmed: c.is_some_and(|c| c.own_number_confirmed),
                step1_at_ms: c.map_or(0, |c| c.step1_at_ms),
                terms_accepted: c.is_some_and(|c| c.terms_accepted),
                step2_at_ms: c.map_or(0, |c| c.step2_at_ms),
                ivr_client: call.evidence.ivr_client.clone(),
                ivr_id: call.evidence.ivr_id.clone(),
                line_ref: call.evidence.line_ref.clone(),
                authorized_at_ms: now_ms,
            }),
        );
    }

    /// Posting usage (or fees) raised the exposure: the 80 % event once per
    /// cycle, and at 100 % the credit block (R8).
    fn after_rise(
        &self,
        a: &mut Account,
        number: &E164,
        partition: u32,
        now_ms: i64,
    ) -> crate::domain::account::ThresholdEffects {
        let credit = &self.policy.credit;
        let limit = a.limit(credit);
        let exposure = a.exposure();
        let fx = credit.on_exposure_rise(a.threshold_state(), exposure, limit);
        if fx.threshold_reached {
            a.threshold_fired = true;
            a.threshold_seq += 1;
            self.emit(
                partition,
                now_ms,
                ids::threshold(number.as_str(), a.threshold_seq),
                EventBody::ThresholdReached(event::ThresholdReached {
                    number: number.as_str().to_string(),
                    exposure_ore: exposure.ore(),
                    limit_ore: limit.ore(),
                    unbilled_ore: a.unbilled.ore(),
                    invoiced_unpaid_ore: a.invoiced_unpaid.ore(),
                    sequence: a.threshold_seq,
                }),
            );
        }
        if fx.limit_reached {
            a.credit_blocked = true;
            a.limit_seq += 1;
            self.emit(
                partition,
                now_ms,
                ids::limit_reached(number.as_str(), a.limit_seq),
                EventBody::LimitReached(event::LimitReached {
                    number: number.as_str().to_string(),
                    exposure_ore: exposure.ore(),
                    limit_ore: limit.ore(),
                    sequence: a.limit_seq,
                }),
            );
            self.emit_block(
                a,
                number,
                partition,
                BlockKind::CreditLimit,
                "",
                true,
                "limit reached",
                "gateway",
                now_ms,
            );
        }
        fx
    }

    /// A payment or a limit change lowered exposure relative to the limit:
    /// lift the credit block below the limit, re-arm the 80 % event below it (R7, R8).
    fn after_fall(&self, a: &mut Account, number: &E164, partition: u32, now_ms: i64) {
        let credit = &self.policy.credit;
        let next = credit.on_exposure_fall(a.threshold_state(), a.exposure(), a.limit(credit));
        a.threshold_fired = next.threshold_fired;
        if a.credit_blocked && !next.credit_blocked {
            a.credit_blocked = false;
            self.emit_block(
                a,
                number,
                partition,
                BlockKind::CreditLimit,
                "",
                false,
                "below the limit",
                "gateway",
                now_ms,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_block(
        &self,
        a: &mut Account,
        number: &E164,
        partition: u32,
        kind: BlockKind,
        target: &str,
        blocked: bool,
        reason: &str,
        actor: &str,
        now_ms: i64,
    ) {
        a.block_seq += 1;
        self.emit(
            partition,
            now_ms,
            ids::block(number.as_str(), a.block_seq),
            EventBody::BlockChanged(event::BlockChanged {
                number: number.as_str().to_string(),
                kind,
                target: target.to_string(),
                blocked,
                reason: reason.to_string(),
                actor: actor.to_string(),
                sequence: a.block_seq,
            }),
        );
    }

    fn emit_limit_changed(
        &self,
        a: &mut Account,
        number: &E164,
        partition: u32,
        reference: &str,
        actor: &str,
        now_ms: i64,
    ) {
        a.limit_change_seq += 1;
        self.emit(
            partition,
            now_ms,
            ids::limit_changed(number.as_str(), a.limit_change_seq),
            EventBody::LimitChanged(event::LimitChanged {
                number: number.as_str().to_string(),
                limit_ore: a.limit(&self.policy.credit).ore(),
                source: a.limit_source,
                reference: reference.to_string(),
                actor: actor.to_string(),
                sequence: a.limit_change_seq,
            }),
        );
    }

    fn record_failure(&self, line: &LineKey, now_ms: i64) -> bool {
        let p = &self.policy;
        let mut st = self.lines.entry(line.clone()).or_default();
        if st.locked_until_ms > now_ms {
            // Already locked: nothing more to count.
            return true;
        }
        if st.window_start_ms + p.lockout_window_ms <= now_ms {
            st.failures = 0;
            st.window_start_ms = now_ms;
        }
        st.failures += 1;
        if st.failures >= p.lockout_max_failures {
            st.failures = 0;
            st.window_start_ms = now_ms;
            st.locked_until_ms = now_ms + p.lockout_ms;
            true
        } else {
            false
        }
    }
}

impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn authorize(
        &self,
        number: &E164,
        call: &CallSpec,
        now_ms: i64,
    ) -> StoreResult<AuthorizeResult> {
        let s = &*self.inner;
        let payer = Payer::Number(number.clone());
        if let Some(existing) = s.payer_of(&call.call_id) {
            if existing != payer {
                return Err(reused(&call.call_id));
            }
        }
        let Some(acct) = s.account_arc(number) else {
            return Ok(AuthorizeResult::refused(Decision::PrepaidCodeRequired(
                crate::domain::decision::PrepaidReason::NotInDirectory,
            )));
        };
        let mut a = guard(&acct)?;
        if let Some(h) = a.holds.get(&call.call_id) {
            if h.service_number != call.service.number {
                return Err(reused(&call.call_id));
            }
            return Ok(h.replay());
        }
        let snap = a.snapshot(
            &s.policy.credit,
            &call.service.merchant_id,
            &call.service.number,
        );
        let decision = decide_postpaid(&snap, &call.terms, call.consent.as_ref(), &s.policy.grant);
        let Decision::Allowed(g) = decision else {
            return Ok(AuthorizeResult::refused(decision));
        };
        if !s.claim_call(&call.call_id, payer) {
            return Err(reused(&call.call_id));
        }
        let hold = s.new_hold(call, Some(number), None, g, now_ms);
        a.pending += g.hold;
        a.pending_calls += 1;
        s.expiry_moved(&call.call_id, None, Some(hold.expires_at_ms))?;
        s.emit_consent(s.partition(number.as_str()), call, &hold, now_ms);
        let result = AuthorizeResult {
            decision,
            replayed: false,
            terms_id: Some(hold.terms_id.clone()),
            hold_expires_at_ms: hold.expires_at_ms,
            lockout_started: false,
        };
        a.holds.insert(call.call_id.clone(), hold);
        Ok(result)
    }

    async fn authorize_prepaid(
        &self,
        line: &LineKey,
        number: Option<&E164>,
        code: &CodeId,
        call: &CallSpec,
        now_ms: i64,
    ) -> StoreResult<AuthorizeResult> {
        let s = &*self.inner;
        let payer = Payer::Code(code.clone());
        // A retry of an allowed call returns its grant, whatever happened since.
        if let Some(existing) = s.payer_of(&call.call_id) {
            if existing != payer {
                return Err(reused(&call.call_id));
            }
            if let Some(c) = s.code_arc(code) {
                if let Some(h) = guard(&c)?.holds.get(&call.call_id) {
                    return Ok(h.replay());
                }
            }
        }
        // Step 1: the line (lockout) and the holder's blocks.
        let locked_until_ms = s.lines.get(line).map_or(0, |l| l.locked_until_ms);
        let holder_blocked = match number.and_then(|n| s.account_arc(n)) {
            Some(acct) => {
                guard(&acct)?.holder_blocked(&call.service.merchant_id, &call.service.number)
            }
            None => false,
        };
        let line_snap = LineSnapshot {
            locked_until_ms,
            holder_blocked,
        };
        if let Some(refusal) = decide_prepaid_line(&line_snap, now_ms) {
            return Ok(AuthorizeResult::refused(refusal));
        }
        // Step 2: the code.
        let Some(code_arc) = s.code_arc(code) else {
            let locked = s.record_failure(line, now_ms);
            let mut r = AuthorizeResult::refused(Decision::Denied(if locked {
                DenyReason::PrepaidLockedOut
            } else {
                DenyReason::PrepaidCodeInvalid
            }));
            r.lockout_started = locked;
            return Ok(r);
        };
        let mut c = guard(&code_arc)?;
        let snap = CodeSnapshot {
            balance: c.balance,
            pending: c.pending,
        };
        let decision = decide_prepaid_code(
            Some(&snap),
            &call.terms,
            call.consent.as_ref(),
            &s.policy.grant,
        );
        let Decision::Allowed(g) = decision else {
            return Ok(AuthorizeResult::refused(decision));
        };
        if !s.claim_call(&call.call_id, payer) {
            return Err(reused(&call.call_id));
        }
        let hold = s.new_hold(call, number, Some(code), g, now_ms);
        c.pending += g.hold;
        s.expiry_moved(&call.call_id, None, Some(hold.expires_at_ms))?;
        s.emit_consent(s.partition(code.as_str()), call, &hold, now_ms);
        let result = AuthorizeResult {
            decision,
            replayed: false,
            terms_id: Some(hold.terms_id.clone()),
            hold_expires_at_ms: hold.expires_at_ms,
            lockout_started: false,
        };
        c.holds.insert(call.call_id.clone(), hold);
        Ok(result)
    }

    async fn record_code_failure(&self, line: &LineKey, now_ms: i64) -> StoreResult<bool> {
        Ok(self.inner.record_failure(line, now_ms))
    }

    async fn extend(
        &self,
        call_id: &CallId,
        sequence: u32,
        now_ms: i64,
    ) -> StoreResult<ExtendResult> {
        let s = &*self.inner;
        let payer = s
            .payer_of(call_id)
            .ok_or_else(|| StoreError::NotFound(format!("call {call_id}")))?;
        let policy = &s.policy;
        match payer {
            Payer::Number(number) => {
                let acct = s
                    .account_arc(&number)
                    .ok_or_else(|| StoreError::Corrupt(format!("call {call_id} has no account")))?;
                let mut a = guard(&acct)?;
                let available = a.available(&policy.credit);
                let (merchant, service) = a
                    .holds
                    .get(call_id)
                    .map(|h| (h.merchant_id.clone(), h.service_number.clone()))
                    .ok_or_else(|| StoreError::NotFound(format!("call {call_id}")))?;
                let refusal = if a.holder_blocked(&merchant, &service) {
                    Some(DenyReason::BlockedByHolder)
                } else if a.overdue_blocked {
                    Some(DenyReason::BlockedOverdue)
                } else if a.credit_blocked {
                    Some(DenyReason::BlockedCreditLimit)
                } else {
                    None
                };
                let hold = a
                    .holds
                    .get_mut(call_id)
                    .ok_or_else(|| StoreError::NotFound(format!("call {call_id}")))?;
                let (result, delta) =
                    extend_hold(s, call_id, hold, sequence, available, refusal, now_ms)?;
                a.pending += delta;
                Ok(result)
            }
            Payer::Code(code) => {
                let number = {
                    let c = s.code_arc(&code).ok_or_else(|| {
                        StoreError::Corrupt(format!("call {call_id} has no code"))
                    })?;
                    let g = guard(&c)?;
                    g.holds.get(call_id).and_then(|h| {
                        h.number
                            .clone()
                            .map(|n| (n, h.merchant_id.clone(), h.service_number.clone()))
                    })
                };
                let holder_blocked = match number {
                    Some((n, m, svc)) => match s.account_arc(&n) {
                        Some(acct) => guard(&acct)?.holder_blocked(&m, &svc),
                        None => false,
                    },
                    None => false,
                };
                let code_arc = s
                    .code_arc(&code)
                    .ok_or_else(|| StoreError::Corrupt(format!("call {call_id} has no code")))?;
                let mut c = guard(&code_arc)?;
                let available = c.balance - c.pending;
                let hold = c
                    .holds
                    .get_mut(call_id)
                    .ok_or_else(|| StoreError::NotFound(format!("call {call_id}")))?;
                let refusal = holder_blocked.then_some(DenyReason::BlockedByHolder);
                let (result, delta) =
                    extend_hold(s, call_id, hold, sequence, available, refusal, now_ms)?;
                c.pending += delta;
                Ok(result)
            }
        }
    }

    async fn release(&self, call_id: &CallId, now_ms: i64) -> StoreResult<ReleaseOutcome> {
        let s = &*self.inner;
        let Some(payer) = s.payer_of(call_id) else {
            return Ok(ReleaseOutcome::UnknownCall);
        };
        match payer {
            Payer::Number(number) => {
                let Some(acct) = s.account_arc(&number) else {
                    return Ok(ReleaseOutcome::UnknownCall);
                };
                let mut a = guard(&acct)?;
                let Some(hold) = a.holds.get_mut(call_id) else {
                    return Ok(ReleaseOutcome::UnknownCall);
                };
                let outcome = void_hold(s, call_id, hold, s.partition(number.as_str()), now_ms)?;
                if let ReleaseOutcome::Voided(amount) = outcome {
                    a.pending -= amount;
                    a.pending_calls -= 1;
                }
                Ok(outcome)
            }
            Payer::Code(code) => {
                let Some(code_arc) = s.code_arc(&code) else {
                    return Ok(ReleaseOutcome::UnknownCall);
                };
                let mut c = guard(&code_arc)?;
                let Some(hold) = c.holds.get_mut(call_id) else {
                    return Ok(ReleaseOutcome::UnknownCall);
                };
                let outcome = void_hold(s, call_id, hold, s.partition(code.as_str()), now_ms)?;
                if let ReleaseOutcome::Voided(amount) = outcome {
                    c.pending -= amount;
                }
                Ok(outcome)
            }
        }
    }

    async fn post_usage(&self, usage: &UsagePost, now_ms: i64) -> StoreResult<UsageOutcome> {
        let s = &*self.inner;
        let Some(payer) = s.payer_of(&usage.call_id) else {
            return Ok(rejected(
                UsageReject::UnknownCall,
                "no call with this call_id was authorized",
            ));
        };
        match payer {
            Payer::Number(number) => {
                let Some(acct) = s.account_arc(&number) else {
                    return Ok(rejected(
                        UsageReject::UnknownCall,
                        "no call with this call_id was authorized",
                    ));
                };
                let mut a = guard(&acct)?;
                let Some(hold) = a.holds.get_mut(&usage.call_id) else {
                    return Ok(rejected(
                        UsageReject::UnknownCall,
                        "no call with this call_id was authorized",
                    ));
                };
                let (posting, released) = match check_and_post(s, hold, usage, now_ms)? {
                    Ok(x) => x,
                    Err(outcome) => return Ok(outcome),
                };
                let hold = hold.clone();
                a.pending -= released;
                if !posting.late {
                    a.pending_calls -= 1;
                }
                a.unbilled += posting.charge;
                let p = s.partition(number.as_str());
                emit_usage(s, p, &hold, usage, &posting, a.exposure(), now_ms);
                let fx = s.after_rise(&mut a, &number, p, now_ms);
                Ok(UsageOutcome::Applied(Posting {
                    threshold_reached: fx.threshold_reached,
                    limit_reached: fx.limit_reached,
                    ..posting
                }))
            }
            Payer::Code(code) => {
                let Some(code_arc) = s.code_arc(&code) else {
                    return Ok(rejected(
                        UsageReject::UnknownCall,
                        "no call with this call_id was authorized",
                    ));
                };
                let mut c = guard(&code_arc)?;
                let Some(hold) = c.holds.get_mut(&usage.call_id) else {
                    return Ok(rejected(
                        UsageReject::UnknownCall,
                        "no call with this call_id was authorized",
                    ));
                };
                let (posting, released) = match check_and_post(s, hold, usage, now_ms)? {
                    Ok(x) => x,
                    Err(outcome) => return Ok(outcome),
                };
                let hold = hold.clone();
                c.pending -= released;
                c.balance -= posting.charge;
                let p = s.partition(code.as_str());
                emit_usage(s, p, &hold, usage, &posting, Money::ZERO, now_ms);
                s.emit(
                    p,
                    now_ms,
                    ids::prepaid_debit(usage.call_id.as_str()),
                    EventBody::PrepaidDebited(event::PrepaidDebited {
                        code_id: code.to_string(),
                        call_id: usage.call_id.to_string(),
                        amount_ore: posting.charge.ore(),
                        balance_after_ore: c.balance.ore(),
                    }),
                );
                Ok(UsageOutcome::Applied(posting))
            }
        }
    }

    async fn expire_due(&self, now_ms: i64, max: usize) -> StoreResult<usize> {
        let s = &*self.inner;
        let due: Vec<(i64, CallId)> = {
            let mut idx = guard(&s.expiry)?;
            let mut taken = Vec::new();
            while taken.len() < max {
                match idx.first() {
                    Some((t, _)) if *t <= now_ms => {
                        taken.push(idx.pop_first().expect("first exists"))
                    }
                    _ => break,
                }
            }
            taken
        };
        let mut expired = 0;
        for (_, call_id) in due {
            let Some(payer) = s.payer_of(&call_id) else {
                continue;
            };
            match payer {
                Payer::Number(number) => {
                    let Some(acct) = s.account_arc(&number) else {
                        continue;
                    };
                    let mut a = guard(&acct)?;
                    let Some(hold) = a.holds.get_mut(&call_id) else {
                        continue;
                    };
                    if let Some(amount) =
                        expire_hold(s, &call_id, hold, s.partition(number.as_str()), now_ms)?
                    {
                        a.pending -= amount;
                        a.pending_calls -= 1;
                        expired += 1;
                    }
                }
                Payer::Code(code) => {
                    let Some(code_arc) = s.code_arc(&code) else {
                        continue;
                    };
                    let mut c = guard(&code_arc)?;
                    let Some(hold) = c.holds.get_mut(&call_id) else {
                        continue;
                    };
                    if let Some(amount) =
                        expire_hold(s, &call_id, hold, s.partition(code.as_str()), now_ms)?
                    {
                        c.pending -= amount;
                        expired += 1;
                    }
                }
            }
        }
        // Forget finished holds past their retention.
        let forget: Vec<CallId> = {
            let mut idx = guard(&s.purge)?;
            let mut taken = Vec::new();
            while taken.len() < max {
                match idx.first() {
                    Some((t, _)) if *t <= now_ms => {
                        taken.push(idx.pop_first().expect("first exists").1)
                    }
                    _ => break,
                }
            }
            taken
        };
        for call_id in forget {
            match s.calls.remove(&call_id).map(|(_, p)| p) {
                Some(Payer::Number(n)) => {
                    if let Some(acct) = s.account_arc(&n) {
                        guard(&acct)?.holds.remove(&call_id);
                    }
                }
                Some(Payer::Code(c)) => {
                    if let Some(code_arc) = s.code_arc(&c) {
                        guard(&code_arc)?.holds.remove(&call_id);
                    }
                }
                None => {}
            }
        }
        let window = s.policy.lockout_window_ms;
        s.lines
            .retain(|_, l| l.locked_until_ms > now_ms || l.window_start_ms + window > now_ms);
        Ok(expired)
    }

    async fn put_directory(
        &self,
        number: &E164,
        holder_registered: bool,
        actor: &str,
        now_ms: i64,
    ) -> StoreResult<AccountView> {
        let s = &*self.inner;
        let acct = s.account_or_new(number);
        let mut a = guard(&acct)?;
        if a.directory != Some(holder_registered) {
            a.directory = Some(holder_registered);
            a.directory_seq += 1;
            s.emit(
                s.partition(number.as_str()),
                now_ms,
                ids::directory(number.as_str(), a.directory_seq),
                EventBody::DirectoryChanged(event::DirectoryChanged {
                    number: number.as_str().to_string(),
                    holder_registered,
                    actor: actor.to_string(),
                    sequence: a.directory_seq,
                }),
            );
        }
        Ok(a.view(number, &s.policy.credit))
    }

    async fn set_block(
        &self,
        number: &E164,
        change: &BlockChange,
        now_ms: i64,
    ) -> StoreResult<AccountView> {
        let s = &*self.inner;
        let target = normalise_block_target(change)?;
        let acct = s.account_or_new(number);
        let mut a = guard(&acct)?;
        let changed = match change.kind {
            BlockKind::HolderAllServices => {
                std::mem::replace(&mut a.blocked_all, change.blocked) != change.blocked
            }
            BlockKind::HolderMerchant => {
                set_member(&mut a.blocked_merchants, &target, change.blocked)
            }
            BlockKind::HolderService => {
                set_member(&mut a.blocked_services, &target, change.blocked)
            }
            BlockKind::Overdue => {
                std::mem::replace(&mut a.overdue_blocked, change.blocked) != change.blocked
            }
            BlockKind::CreditLimit => unreachable!("refused by normalise_block_target"),
        };
        if changed {
            s.emit_block(
                &mut a,
                number,
                s.partition(number.as_str()),
                change.kind,
                &target,
                change.blocked,
                &change.reason,
                &change.actor,
                now_ms,
            );
        }
        Ok(a.view(number, &s.policy.credit))
    }

    async fn set_limit(
        &self,
        number: &E164,
        change: &LimitChange,
        actor: &str,
        now_ms: i64,
    ) -> StoreResult<AccountView> {
        let s = &*self.inner;
        let acct = s.account_or_new(number);
        let mut a = guard(&acct)?;
        let (source, fixed) = change
            .resolve(&s.policy.credit, a.established)
            .map_err(|e| StoreError::Rejected(e.to_string()))?;
        a.limit_source = source;
        a.fixed_limit = fixed;
        let p = s.partition(number.as_str());
        s.emit_limit_changed(&mut a, number, p, change.reference(), actor, now_ms);
        s.after_fall(&mut a, number, p, now_ms);
        s.after_rise(&mut a, number, p, now_ms);
        Ok(a.view(number, &s.policy.credit))
    }

    async fn account(&self, number: &E164) -> StoreResult<AccountView> {
        let s = &*self.inner;
        match s.account_arc(number) {
            Some(acct) => Ok(guard(&acct)?.view(number, &s.policy.credit)),
            None => Ok(Account::default().view(number, &s.policy.credit)),
        }
    }

    async fn apply_invoice(
        &self,
        number: &E164,
        invoice: &InvoiceApply,
        now_ms: i64,
    ) -> StoreResult<Applied> {
        let s = &*self.inner;
        check_amount(invoice.usage, "invoice usage")?;
        check_amount(invoice.fees, "invoice fees")?;
        let acct = s
            .account_arc(number)
            .ok_or_else(|| StoreError::NotFound(format!("account {number}")))?;
        let mut a = guard(&acct)?;
        if a.invoices.contains(&invoice.invoice_id) {
            return Ok(Applied::AlreadyApplied);
        }
        if invoice.usage > a.unbilled {
            return Err(StoreError::Rejected(format!(
                "invoice {} bills {} but only {} is unbilled",
                invoice.invoice_id, invoice.usage, a.unbilled
            )));
        }
        a.unbilled -= invoice.usage;
        a.invoiced_unpaid += invoice.usage + invoice.fees;
        a.invoices.insert(invoice.invoice_id.clone());
        let p = s.partition(number.as_str());
        s.emit(
            p,
            now_ms,
            ids::invoice_applied(number.as_str(), invoice.invoice_id.as_str()),
            EventBody::InvoiceApplied(event::InvoiceApplied {
                number: number.as_str().to_string(),
                invoice_id: invoice.invoice_id.to_string(),
                usage_ore: invoice.usage.ore(),
                fees_ore: invoice.fees.ore(),
            }),
        );
        s.after_rise(&mut a, number, p, now_ms);
        Ok(Applied::Applied)
    }

    async fn apply_payment(
        &self,
        number: &E164,
        payment: &PaymentApply,
        now_ms: i64,
    ) -> StoreResult<Applied> {
        let s = &*self.inner;
        check_amount(payment.amount, "payment")?;
        let acct = s
            .account_arc(number)
            .ok_or_else(|| StoreError::NotFound(format!("account {number}")))?;
        let mut a = guard(&acct)?;
        if a.payments.contains(&payment.payment_id) {
            return Ok(Applied::AlreadyApplied);
        }
        if payment.amount > a.invoiced_unpaid {
            return Err(StoreError::Rejected(format!(
                "payment {} of {} exceeds the invoiced-unpaid {}",
                payment.payment_id, payment.amount, a.invoiced_unpaid
            )));
        }
        a.invoiced_unpaid -= payment.amount;
        a.payments.insert(payment.payment_id.clone());
        let p = s.partition(number.as_str());
        s.emit(
            p,
            now_ms,
            ids::payment_applied(number.as_str(), payment.payment_id.as_str()),
            EventBody::PaymentApplied(event::PaymentApplied {
                number: number.as_str().to_string(),
                payment_id: payment.payment_id.to_string(),
                amount_ore: payment.amount.ore(),
                overdue_cleared: payment.clear_overdue,
                first_invoice_paid: payment.first_invoice_paid,
            }),
        );
        if payment.clear_overdue && a.overdue_blocked {
            a.overdue_blocked = false;
            s.emit_block(
                &mut a,
                number,
                p,
                BlockKind::Overdue,
                "",
                false,
                "paid",
                "settlement",
                now_ms,
            );
        }
        if payment.first_invoice_paid && !a.established {
            a.established = true;
            if a.limit_source == LimitSource::Default {
                s.emit_limit_changed(
                    &mut a,
                    number,
                    p,
                    "first invoice paid",
                    "settlement",
                    now_ms,
                );
            }
        }
        s.after_fall(&mut a, number, p, now_ms);
        Ok(Applied::Applied)
    }

    async fn repair_balances(
        &self,
        number: &E164,
        unbilled: Money,
        invoiced_unpaid: Money,
        reason: &str,
        now_ms: i64,
    ) -> StoreResult<AccountView> {
        let s = &*self.inner;
        check_amount(unbilled, "unbilled")?;
        check_amount(invoiced_unpaid, "invoiced-unpaid")?;
        let acct = s.account_or_new(number);
        let mut a = guard(&acct)?;
        let (ub, iu) = (a.unbilled, a.invoiced_unpaid);
        a.unbilled = unbilled;
        a.invoiced_unpaid = invoiced_unpaid;
        a.repair_seq += 1;
        let p = s.partition(number.as_str());
        s.emit(
            p,
            now_ms,
            ids::repaired(number.as_str(), a.repair_seq),
            EventBody::BalancesRepaired(event::BalancesRepaired {
                number: number.as_str().to_string(),
                unbilled_before_ore: ub.ore(),
                unbilled_after_ore: unbilled.ore(),
                invoiced_unpaid_before_ore: iu.ore(),
                invoiced_unpaid_after_ore: invoiced_unpaid.ore(),
                reason: reason.to_string(),
                sequence: a.repair_seq,
            }),
        );
        s.after_fall(&mut a, number, p, now_ms);
        s.after_rise(&mut a, number, p, now_ms);
        Ok(a.view(number, &s.policy.credit))
    }

    async fn issue_prepaid(
        &self,
        hasher: &CodeHasher,
        amount: Money,
        purchase_ref: &Reference,
        now_ms: i64,
    ) -> StoreResult<IssueOutcome> {
        let s = &*self.inner;
        check_prepaid_amount(amount)?;
        match s.purchases.entry(purchase_ref.clone()) {
            Entry::Occupied(o) => {
                let id = o.get().clone();
                drop(o);
                let c = s.code_arc(&id).ok_or_else(|| {
                    StoreError::Corrupt(format!("purchase {purchase_ref} has no code"))
                })?;
                let view = guard(&c)?.view(&id);
                Ok(IssueOutcome::AlreadyIssued(view))
            }
            Entry::Vacant(v) => {
                let (code, id) = loop {
                    let code = PrepaidCode::generate();
                    let id = hasher.id(&code);
                    if !s.codes.contains_key(&id) {
                        break (code, id);
                    }
                };
                let mut refs = HashSet::new();
                refs.insert(purchase_ref.clone());
                let c = Code {
                    balance: amount,
                    pending: Money::ZERO,
                    issued_at_ms: now_ms,
                    refs,
                    holds: FastMap::default(),
                };
                let view = c.view(&id);
                s.codes.insert(id.clone(), Arc::new(Mutex::new(c)));
                v.insert(id.clone());
                s.emit(
                    s.partition(id.as_str()),
                    now_ms,
                    ids::prepaid_credit(id.as_str(), purchase_ref.as_str()),
                    EventBody::PrepaidCredited(event::PrepaidCredited {
                        code_id: id.to_string(),
                        reference: purchase_ref.to_string(),
                        amount_ore: amount.ore(),
                        balance_after_ore: amount.ore(),
                        issued: true,
                    }),
                );
                Ok(IssueOutcome::Issued { code, view })
            }
        }
    }

    async fn top_up_prepaid(
        &self,
        code: &CodeId,
        amount: Money,
        topup_ref: &Reference,
        now_ms: i64,
    ) -> StoreResult<PrepaidView> {
        let s = &*self.inner;
        check_prepaid_amount(amount)?;
        let c = s
            .code_arc(code)
            .ok_or_else(|| StoreError::NotFound("prepaid code".into()))?;
        let mut c = guard(&c)?;
        if c.refs.insert(topup_ref.clone()) {
            c.balance += amount;
            s.emit(
                s.partition(code.as_str()),
                now_ms,
                ids::prepaid_credit(code.as_str(), topup_ref.as_str()),
                EventBody::PrepaidCredited(event::PrepaidCredited {
                    code_id: code.to_string(),
                    reference: topup_ref.to_string(),
                    amount_ore: amount.ore(),
                    balance_after_ore: c.balance.ore(),
                    issued: false,
                }),
            );
        }
        Ok(c.view(code))
    }

    async fn prepaid(&self, code: &CodeId) -> StoreResult<Option<PrepaidView>> {
        match self.inner.code_arc(code) {
            Some(c) => Ok(Some(guard(&c)?.view(code))),
            None => Ok(None),
        }
    }

    async fn catalog(&self) -> StoreResult<Arc<CatalogSnapshot>> {
        Ok(self.inner.catalog.load_full())
    }

    async fn catalog_version(&self) -> StoreResult<u64> {
        Ok(self.inner.catalog.load().version)
    }

    async fn upsert_merchant(&self, merchant: &Merchant) -> StoreResult<()> {
        let s = &*self.inner;
        merchant
            .validate()
            .map_err(|e| StoreError::Rejected(e.to_string()))?;
        let _w = guard(&s.catalog_write)?;
        let next = s.catalog.load().with_merchant(merchant.clone());
        s.catalog.store(Arc::new(next));
        Ok(())
    }

    async fn upsert_service(&self, spec: &ServiceSpec, now_ms: i64) -> StoreResult<ServiceChange> {
        let s = &*self.inner;
        let _w = guard(&s.catalog_write)?;
        let current = s.catalog.load();
        let change = current
            .plan_service(spec, now_ms)
            .map_err(|e| StoreError::Rejected(e.to_string()))?;
        s.catalog.store(Arc::new(current.with_service(&change)));
        Ok(change)
    }

    async fn recent_events(&self, max: usize) -> StoreResult<Vec<Event>> {
        Ok(self.inner.outbox.recent(max))
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        Ok(StoreStats {
            pending_holds: guard(&self.inner.expiry)?.len() as u64,
            outbox_len: self.inner.outbox.lengths(),
        })
    }

    async fn ready(&self) -> bool {
        true
    }
}

fn reused(call_id: &CallId) -> StoreError {
    StoreError::Rejected(format!(
        "call_id {call_id} is already used for another caller, code or service"
    ))
}

fn rejected(r: UsageReject, detail: &str) -> UsageOutcome {
    UsageOutcome::Rejected(r, detail.to_string())
}

fn set_member(set: &mut BTreeSet<String>, item: &str, present: bool) -> bool {
    if present {
        set.insert(item.to_string())
    } else {
        set.remove(item)
    }
}

/// Validates a block change and returns its normalised target.
pub(crate) fn normalise_block_target(change: &BlockChange) -> StoreResult<String> {
    match change.kind {
        BlockKind::HolderMerchant => MerchantId::parse(&change.target)
            .map(|m| m.to_string())
            .map_err(|e| StoreError::Rejected(e.to_string())),
        BlockKind::HolderService => E164::parse(&change.target)
            .map(|n| n.as_str().to_string())
            .map_err(|e| StoreError::Rejected(format!("service number: {e}"))),
        BlockKind::HolderAllServices | BlockKind::Overdue => Ok(String::new()),
        BlockKind::CreditLimit => Err(StoreError::Rejected(
            "the credit block follows the limit and is lifted by payment, not by hand".into(),
        )),
    }
}

pub(crate) fn check_amount(m: Money, what: &str) -> StoreResult<()> {
    if m.is_negative() {
        return Err(StoreError::Rejected(format!("{what} must not be negative")));
    }
    Ok(())
}

pub(crate) fn check_prepaid_amount(m: Money) -> StoreResult<()> {
    if m <= Money::ZERO || m > Money::sek(100_000) {
        return Err(StoreError::Rejected(
            "a prepaid amount must be between 0.01 and 100 000 SEK".into(),
        ));
    }
    Ok(())
}

/// Grows `hold` by one quota as credit allows; returns the result and the
/// change of the payer's pending amount.
fn extend_hold(
    s: &Inner,
    call_id: &CallId,
    hold: &mut Hold,
    sequence: u32,
    available: Money,
    refusal: Option<DenyReason>,
    now_ms: i64,
) -> StoreResult<(ExtendResult, Money)> {
    let expected = hold.last_extend.map_or(1, |(s, _)| s + 1);
    if let Some((last, mut result)) = hold.last_extend {
        if sequence == last {
            result.replayed = true;
            return Ok((result, Money::ZERO));
        }
    }
    if sequence != expected {
        return Err(StoreError::Rejected(format!(
            "extension sequence {sequence} is out of order: expected {expected}"
        )));
    }
    let before = hold.grant;
    // A hold past its expiry is ended even if no sweeper has expired it yet.
    let outcome = if hold.state != HoldState::Pending || hold.expires_at_ms <= now_ms {
        Extension::Refused(DenyReason::CallEnded)
    } else {
        decide_extend(&hold.tariff, before, available, refusal, &s.policy.grant)
    };
    let (outcome, delta) = match outcome {
        Extension::Extended(g) => {
            let old_expiry = hold.expires_at_ms;
            hold.grant = g;
            hold.expires_at_ms = hold.authorized_at_ms
                + i64::from(g.granted_seconds) * 1000
                + s.policy.hold_grace_ms;
            s.expiry_moved(call_id, Some(old_expiry), Some(hold.expires_at_ms))?;
            (ExtendOutcome::Extended, g.hold - before.hold)
        }
        Extension::Refused(r) => (ExtendOutcome::Refused(r), Money::ZERO),
    };
    let result = ExtendResult {
        outcome,
        granted_seconds_total: hold.grant.granted_seconds,
        added_seconds: hold.grant.granted_seconds - before.granted_seconds,
        hold: hold.grant.hold,
        hold_expires_at_ms: hold.expires_at_ms,
        replayed: false,
    };
    hold.last_extend = Some((sequence, result));
    Ok((result, delta))
}

fn void_hold(
    s: &Inner,
    call_id: &CallId,
    hold: &mut Hold,
    partition: u32,
    now_ms: i64,
) -> StoreResult<ReleaseOutcome> {
    Ok(match hold.state {
        HoldState::Pending => {
            hold.state = HoldState::Voided;
            s.expiry_moved(call_id, Some(hold.expires_at_ms), None)?;
            s.schedule_purge(call_id, now_ms)?;
            s.emit(
                partition,
                now_ms,
                ids::voided(call_id.as_str()),
                EventBody::HoldVoided(event::HoldVoided {
                    call_id: call_id.to_string(),
                    number: hold.number_str(),
                    funding: hold.funding(),
                    code_id: hold.code_str(),
                    amount_ore: hold.grant.hold.ore(),
                }),
            );
            ReleaseOutcome::Voided(hold.grant.hold)
        }
        HoldState::Voided => ReleaseOutcome::AlreadyVoided,
        HoldState::Posted { .. } => ReleaseOutcome::AlreadyPosted,
        HoldState::Expired => ReleaseOutcome::AlreadyExpired,
    })
}

/// Expires a pending hold whose time has come; returns the amount released.
fn expire_hold(
    s: &Inner,
    call_id: &CallId,
    hold: &mut Hold,
    partition: u32,
    now_ms: i64,
) -> StoreResult<Option<Money>> {
    if hold.state != HoldState::Pending || hold.expires_at_ms > now_ms {
        return Ok(None);
    }
    hold.state = HoldState::Expired;
    s.schedule_purge(call_id, now_ms)?;
    s.emit(
        partition,
        now_ms,
        ids::expired(call_id.as_str()),
        EventBody::HoldExpired(event::HoldExpired {
            call_id: call_id.to_string(),
            number: hold.number_str(),
            funding: hold.funding(),
            code_id: hold.code_str(),
            amount_ore: hold.grant.hold.ore(),
            granted_seconds: hold.grant.granted_seconds,
        }),
    );
    Ok(Some(hold.grant.hold))
}

/// Checks a usage record against its hold and marks the hold posted.
/// `Ok(Err(outcome))` is a duplicate or a rejection that changes nothing;
/// `Ok(Ok((posting, released)))` is a new posting and the pending amount it releases.
fn check_and_post(
    s: &Inner,
    hold: &mut Hold,
    usage: &UsagePost,
    now_ms: i64,
) -> StoreResult<Result<(Posting, Money), UsageOutcome>> {
    if hold.service_number != usage.service_number {
        return Ok(Err(rejected(
            UsageReject::ServiceMismatch,
            "the call was authorized for another service number",
        )));
    }
    if hold.merchant_id != usage.merchant_id {
        return Ok(Err(rejected(
            UsageReject::NotMerchantsService,
            "the call was authorized for another merchant's service",
        )));
    }
    let late = match &hold.state {
        HoldState::Posted {
            duration_seconds,
            posting,
        } => {
            return Ok(Err(if *duration_seconds == usage.duration_seconds {
                UsageOutcome::Duplicate(*posting)
            } else {
                UsageOutcome::Rejected(
                    UsageReject::ConflictingDuplicate,
                    format!("the call was already posted with {duration_seconds} s"),
                )
            }))
        }
        HoldState::Voided => {
            return Ok(Err(rejected(
                UsageReject::CallReleased,
                "the IVR released the call before the service started",
            )))
        }
        HoldState::Pending => false,
        HoldState::Expired => true,
    };
    if usage.started_at_ms < hold.authorized_at_ms - s.policy.usage_start_skew_ms {
        return Ok(Err(rejected(
            UsageReject::StartOutOfRange,
            "started_at is before the call was authorized",
        )));
    }
    let rated = rate(&hold.tariff, usage.duration_seconds);
    let posting = Posting {
        charge: rated.charge,
        billed_seconds: rated.billed_seconds,
        overrun_seconds: usage
            .duration_seconds
            .saturating_sub(hold.grant.granted_seconds),
        late,
        threshold_reached: false,
        limit_reached: false,
    };
    let released = if late { Money::ZERO } else { hold.grant.hold };
    if !late {
        s.expiry_moved(&usage.call_id, Some(hold.expires_at_ms), None)?;
    }
    hold.state = HoldState::Posted {
        duration_seconds: usage.duration_seconds,
        posting,
    };
    s.schedule_purge(&usage.call_id, now_ms)?;
    Ok(Ok((posting, released)))
}

fn emit_usage(
    s: &Inner,
    partition: u32,
    hold: &Hold,
    usage: &UsagePost,
    posting: &Posting,
    exposure: Money,
    now_ms: i64,
) {
    s.emit(
        partition,
        now_ms,
        ids::usage(usage.call_id.as_str()),
        EventBody::UsagePosted(event::UsagePosted {
            call_id: usage.call_id.to_string(),
            record_id: usage.record_id.to_string(),
            merchant_id: usage.merchant_id.to_string(),
            service_number: usage.service_number.as_str().to_string(),
            number: hold.number_str(),
            funding: hold.funding(),
            code_id: hold.code_str(),
            terms_id: hold.terms_id.to_string(),
            price_per_minute_ore: hold.tariff.price_per_minute.ore(),
            billing_step_seconds: hold.tariff.billing_step_seconds,
            minimum_minutes: hold.tariff.minimum_minutes,
            started_at_ms: usage.started_at_ms,
            duration_seconds: usage.duration_seconds,
            billed_seconds: posting.billed_seconds,
            charge_ore: posting.charge.ore(),
            granted_seconds: hold.grant.granted_seconds,
            overrun_seconds: posting.overrun_seconds,
            late: posting.late,
            authorized_at_ms: hold.authorized_at_ms,
            exposure_after_ore: exposure.ore(),
            vat_rate: hold.vat_rate,
        }),
    );
}
