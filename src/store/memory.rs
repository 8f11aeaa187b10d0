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
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use arc_swap::ArcSwap;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use super::outbox::{ConsentEntry, Outbox};
use super::partition::partition_of;
use super::validate::{check_amount, check_prepaid_amount, normalise_block_target};
use super::*;
use crate::domain::account::{Balances, CreditPolicy, ThresholdState};
use crate::domain::decision::{
    decide_postpaid, decide_prepaid_code, decide_prepaid_line, AccountSnapshot, CodeSnapshot,
    Directory, Funding, Grant, LineSnapshot,
};
use crate::domain::event::{self, ids, EventBody};
use crate::domain::hold::{prepaid_debit, ExtendStep, Hold, Replay, UsageCheck};
use crate::domain::lockout::LineState;

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
    /// Every payment reference used for a code: a purchase or a top-up.
    references: FastDashMap<Reference, ReferenceUse>,
    /// The call index: call id → the payer whose hold it is, claimed by
    /// every Authorize that carries consent, for `call_index_ttl_ms`.
    calls: FastDashMap<CallId, CallIndex>,
    /// Pending holds by expiry time.
    expiry: Mutex<BTreeSet<(i64, CallId)>>,
    /// Finished holds by the time they may be forgotten.
    purge: Mutex<BTreeSet<(i64, CallId)>>,
    /// Call-index entries by the time they lapse (a refreshed entry lapses later).
    index_purge: Mutex<BTreeSet<(i64, CallId)>>,
    catalog: ArcSwap<CatalogSnapshot>,
    catalog_write: Mutex<()>,
    outbox: Outbox,
    /// The IVRs' texts every hold and consent event carries.
    texts: Texts,
}

/// The texts an IVR sends with every call — its client id, its node id, its
/// line reference — kept once and shared by the holds and consent events
/// that carry them, instead of a copy per call (issue 13.2). At most
/// [`Texts::MAX`] are kept (about a megabyte at the longest texts); past
/// that a text is copied per call, as before.
#[derive(Default)]
struct Texts(RwLock<HashSet<Arc<str>, foldhash::fast::RandomState>>);

impl Texts {
    const MAX: usize = 4096;

    fn get(&self, text: &str) -> Arc<str> {
        // A poisoned lock only means a panic elsewhere while inserting a
        // text: the set itself is still whole.
        if let Some(t) = self.0.read().unwrap_or_else(|e| e.into_inner()).get(text) {
            return t.clone();
        }
        let mut set = self.0.write().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = set.get(text) {
            return t.clone();
        }
        let t: Arc<str> = Arc::from(text);
        if set.len() < Self::MAX {
            set.insert(t.clone());
        }
        t
    }
}

/// A call-index entry: whose the call is, until when.
#[derive(Clone, Debug)]
struct CallIndex {
    payer: Payer,
    until_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Payer {
    Number(E164),
    Code(CodeId),
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

/// What a payment reference was used for (R17): each pays for one thing once.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ReferenceUse {
    purchase: bool,
    code: CodeId,
    amount: Money,
}

#[derive(Debug)]
struct Code {
    balance: Money,
    pending: Money,
    issued_at_ms: i64,
    holds: FastMap<CallId, Hold>,
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

    /// The money invariants of an account (DESIGN invariant 3), asserted
    /// after every step that moves its pending amount: a violation is a bug
    /// that must stop this number (the poisoned lock refuses further steps)
    /// rather than move more money.
    fn assert_invariants(&self) {
        assert!(
            !self.pending.is_negative(),
            "pending holds went negative: {}",
            self.pending
        );
    }

    /// After a grant: exposure plus pending holds within the limit (R8, R10).
    fn assert_within_limit(&self, credit: &CreditPolicy) {
        self.assert_invariants();
        assert!(
            self.exposure() + self.pending <= self.limit(credit),
            "a grant took the exposure {} plus pending {} past the limit {}",
            self.exposure(),
            self.pending,
            self.limit(credit)
        );
    }

    fn balances(&self) -> Balances {
        Balances {
            unbilled: self.unbilled,
            invoiced_unpaid: self.invoiced_unpaid,
        }
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
    /// A code's money never goes below zero, and its holds never exceed it
    /// (R17): asserted after every step that moves it.
    fn assert_invariants(&self) {
        assert!(
            !self.balance.is_negative() && !self.pending.is_negative(),
            "a code's balance {} or pending {} went negative",
            self.balance,
            self.pending
        );
        assert!(
            self.pending <= self.balance,
            "a code holds {} of its {}",
            self.pending,
            self.balance
        );
    }

    fn view(&self, id: &CodeId) -> PrepaidView {
        PrepaidView {
            code_id: id.clone(),
            balance: self.balance,
            pending: self.pending,
            issued_at_ms: self.issued_at_ms,
        }
    }
}

fn funding(hold: &Hold) -> Funding {
    if hold.code.is_some() {
        Funding::Prepaid
    } else {
        Funding::Postpaid
    }
}

fn number_str(hold: &Hold) -> String {
    hold.number
        .as_ref()
        .map(|n| n.as_str().to_string())
        .unwrap_or_default()
}

fn code_str(hold: &Hold) -> String {
    hold.code
        .as_ref()
        .map(|c| c.as_str().to_string())
        .unwrap_or_default()
}

/// The answer to an Authorize for a call id that already has `hold`.
fn replay(call: &CallSpec, hold: &Hold, now_ms: i64) -> StoreResult<AuthorizeResult> {
    match hold.replay(&call.service.number, &call.evidence.ivr_client, now_ms) {
        Replay::Reused => Err(reused(&call.call_id)),
        Replay::Answer(decision) => Ok(match decision {
            Decision::Allowed(_) => AuthorizeResult {
                decision,
                replayed: true,
                terms_id: Some(hold.terms_id().clone()),
                hold_expires_at_ms: hold.expires_at_ms,
                lockout_started: false,
            },
            ended => AuthorizeResult {
                replayed: true,
                ..AuthorizeResult::refused(ended)
            },
        }),
    }
}

/// Only the IVR client that authorized a call may extend or release it.
fn check_client(call_id: &CallId, hold: &Hold, ivr_client: &str) -> StoreResult<()> {
    if &*hold.ivr_client == ivr_client {
        Ok(())
    } else {
        Err(not_yours(call_id))
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
                references: FastDashMap::default(),
                calls: FastDashMap::default(),
                expiry: Mutex::new(BTreeSet::new()),
                purge: Mutex::new(BTreeSet::new()),
                index_purge: Mutex::new(BTreeSet::new()),
                catalog: ArcSwap::from_pointee(CatalogSnapshot::default()),
                catalog_write: Mutex::new(()),
                outbox,
                texts: Texts::default(),
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

    /// The account and its key (the number as the account map keeps it).
    fn account_keyed(&self, number: &E164) -> Option<(E164, Arc<Mutex<Account>>)> {
        self.accounts
            .get(number)
            .map(|a| (a.key().clone(), a.value().clone()))
    }

    fn account_or_new(&self, number: &E164) -> Arc<Mutex<Account>> {
        self.accounts.entry(number.clone()).or_default().clone()
    }

    fn code_arc(&self, code: &CodeId) -> Option<Arc<Mutex<Code>>> {
        self.codes.get(code).map(|c| c.clone())
    }

    /// The payer of a call, from the call index (lapsed entries are gone).
    fn payer_of(&self, call_id: &CallId, now_ms: i64) -> Option<Payer> {
        self.calls
            .get(call_id)
            .filter(|i| i.until_ms > now_ms)
            .map(|i| i.payer.clone())
    }

    /// Claims a call id for `payer` (or refreshes its claim); false when it
    /// belongs to another payer. An Authorize with consent claims whether or
    /// not it is allowed, as the Redis store does in one step.
    fn claim_call(&self, call_id: &CallId, payer: &Payer, now_ms: i64) -> StoreResult<bool> {
        let until_ms = now_ms + self.policy.call_index_ttl_ms();
        match self.calls.entry(call_id.clone()) {
            Entry::Occupied(mut o) => {
                let live = o.get().until_ms > now_ms;
                if live && o.get().payer != *payer {
                    return Ok(false);
                }
                o.insert(CallIndex {
                    payer: payer.clone(),
                    until_ms,
                });
            }
            Entry::Vacant(v) => {
                v.insert(CallIndex {
                    payer: payer.clone(),
                    until_ms,
                });
            }
        }
        guard(&self.index_purge)?.insert((until_ms, call_id.clone()));
        Ok(true)
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
        Hold::new(
            number.cloned(),
            code.cloned(),
            call.service.clone(),
            call.terms.clone(),
            self.texts.get(&call.evidence.ivr_client),
            g,
            now_ms,
            self.policy.hold_grace_ms,
        )
    }

    fn emit_consent(&self, partition: u32, call: &CallSpec, hold: &Hold, now_ms: i64) {
        let c = call.consent.as_ref();
        let e = &call.evidence;
        self.outbox.append_consent(ConsentEntry {
            partition,
            at_ms: now_ms,
            call_id: call.call_id.clone(),
            number: hold.number.clone(),
            number_withheld: e.number_withheld,
            code_id: hold.code.clone(),
            service: call.service.clone(),
            terms: call.terms.clone(),
            age_confirmed: c.is_some_and(|c| c.age_confirmed),
            own_number_confirmed: c.is_some_and(|c| c.own_number_confirmed),
            terms_accepted: c.is_some_and(|c| c.terms_accepted),
            step1_at_ms: c.map_or(0, |c| c.step1_at_ms),
            step2_at_ms: c.map_or(0, |c| c.step2_at_ms),
            ivr_client: hold.ivr_client.clone(),
            ivr_id: self.texts.get(&e.ivr_id),
            line_ref: self.texts.get(&e.line_ref),
        });
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
        self.lines
            .entry(line.clone())
            .or_default()
            .record_failure(now_ms, &self.policy.lockout())
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
        // The account's own key, when it has one: the hold and the call
        // index share it instead of keeping this request's copy.
        let account = s.account_keyed(number);
        if call.consent.is_some() {
            let payer = Payer::Number(account.as_ref().map_or(number, |(n, _)| n).clone());
            if !s.claim_call(&call.call_id, &payer, now_ms)? {
                return Err(reused(&call.call_id));
            }
        }
        let Some((number, acct)) = account else {
            return Ok(AuthorizeResult::refused(Decision::PrepaidCodeRequired(
                crate::domain::decision::PrepaidReason::NotInDirectory,
            )));
        };
        let number = &number;
        let mut a = guard(&acct)?;
        if let Some(h) = a.holds.get(&call.call_id) {
            return replay(call, h, now_ms);
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
        let hold = s.new_hold(call, Some(number), None, g, now_ms);
        a.pending += g.hold;
        a.pending_calls += 1;
        a.assert_within_limit(&s.policy.credit);
        s.expiry_moved(&call.call_id, None, Some(hold.expires_at_ms))?;
        s.emit_consent(s.partition(number.as_str()), call, &hold, now_ms);
        let result = AuthorizeResult {
            decision,
            replayed: false,
            terms_id: Some(hold.terms_id().clone()),
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
            // A retry of a call this code holds answers as the call stands.
            if s.payer_of(&call.call_id, now_ms) == Some(payer) {
                if let Some(c) = s.code_arc(code) {
                    if let Some(h) = guard(&c)?.holds.get(&call.call_id) {
                        return replay(call, h, now_ms);
                    }
                }
            }
            return Ok(AuthorizeResult::refused(refusal));
        }
        if call.consent.is_some() && !s.claim_call(&call.call_id, &payer, now_ms)? {
            return Err(reused(&call.call_id));
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
        if let Some(h) = c.holds.get(&call.call_id) {
            return replay(call, h, now_ms);
        }
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
        let hold = s.new_hold(call, number, Some(code), g, now_ms);
        c.pending += g.hold;
        c.assert_invariants();
        s.expiry_moved(&call.call_id, None, Some(hold.expires_at_ms))?;
        s.emit_consent(s.partition(code.as_str()), call, &hold, now_ms);
        let result = AuthorizeResult {
            decision,
            replayed: false,
            terms_id: Some(hold.terms_id().clone()),
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
        ivr_client: &str,
        sequence: u32,
        now_ms: i64,
    ) -> StoreResult<ExtendResult> {
        let s = &*self.inner;
        let payer = s
            .payer_of(call_id, now_ms)
            .ok_or_else(|| StoreError::NotFound(format!("call {call_id}")))?;
        let policy = &s.policy;
        // The index names a payer for every Authorize with consent, allowed
        // or not: a payer without this call's hold is an unknown call.
        let unknown = || StoreError::NotFound(format!("call {call_id}"));
        match payer {
            Payer::Number(number) => {
                let acct = s.account_arc(&number).ok_or_else(unknown)?;
                let mut a = guard(&acct)?;
                let available = a.available(&policy.credit);
                let Some(hold) = a.holds.get(call_id) else {
                    return Err(StoreError::NotFound(format!("call {call_id}")));
                };
                let refusal = if a.holder_blocked(hold.merchant_id(), hold.service_number()) {
                    Some(DenyReason::BlockedByHolder)
                } else if a.overdue_blocked {
                    Some(DenyReason::BlockedOverdue)
                } else if a.credit_blocked {
                    Some(DenyReason::BlockedCreditLimit)
                } else {
                    None
                };
                let hold = a.holds.get_mut(call_id).expect("looked up above");
                let (result, delta) = extend_hold(
                    s, call_id, hold, ivr_client, sequence, available, refusal, now_ms,
                )?;
                a.pending += delta;
                if delta > Money::ZERO {
                    a.assert_within_limit(&policy.credit);
                }
                Ok(result)
            }
            Payer::Code(code) => {
                let number = {
                    let c = s.code_arc(&code).ok_or_else(unknown)?;
                    let g = guard(&c)?;
                    g.holds.get(call_id).and_then(|h| {
                        h.number
                            .clone()
                            .map(|n| (n, h.merchant_id().clone(), h.service_number().clone()))
                    })
                };
                let holder_blocked = match number {
                    Some((n, m, svc)) => match s.account_arc(&n) {
                        Some(acct) => guard(&acct)?.holder_blocked(&m, &svc),
                        None => false,
                    },
                    None => false,
                };
                let code_arc = s.code_arc(&code).ok_or_else(unknown)?;
                let mut c = guard(&code_arc)?;
                let available = c.balance - c.pending;
                let hold = c.holds.get_mut(call_id).ok_or_else(unknown)?;
                let refusal = holder_blocked.then_some(DenyReason::BlockedByHolder);
                let (result, delta) = extend_hold(
                    s, call_id, hold, ivr_client, sequence, available, refusal, now_ms,
                )?;
                c.pending += delta;
                c.assert_invariants();
                Ok(result)
            }
        }
    }

    async fn release(
        &self,
        call_id: &CallId,
        ivr_client: &str,
        now_ms: i64,
    ) -> StoreResult<ReleaseOutcome> {
        let s = &*self.inner;
        let Some(payer) = s.payer_of(call_id, now_ms) else {
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
                check_client(call_id, hold, ivr_client)?;
                let outcome = void_hold(s, call_id, hold, s.partition(number.as_str()), now_ms)?;
                if let ReleaseOutcome::Voided(amount) = outcome {
                    a.pending -= amount;
                    a.pending_calls -= 1;
                }
                a.assert_invariants();
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
                check_client(call_id, hold, ivr_client)?;
                let outcome = void_hold(s, call_id, hold, s.partition(code.as_str()), now_ms)?;
                if let ReleaseOutcome::Voided(amount) = outcome {
                    c.pending -= amount;
                }
                c.assert_invariants();
                Ok(outcome)
            }
        }
    }

    async fn post_usage(&self, usage: &UsagePost, now_ms: i64) -> StoreResult<UsageOutcome> {
        let s = &*self.inner;
        let unknown = || Ok(UsageOutcome::rejected(UsageReject::UnknownCall));
        let Some(payer) = s.payer_of(&usage.call_id, now_ms) else {
            return unknown();
        };
        match payer {
            Payer::Number(number) => {
                let Some(acct) = s.account_arc(&number) else {
                    return unknown();
                };
                let mut a = guard(&acct)?;
                let Some(hold) = a.holds.get_mut(&usage.call_id) else {
                    return unknown();
                };
                let (posting, released) = match check_and_post(s, hold, usage, None, now_ms)? {
                    Ok(x) => x,
                    Err(outcome) => return Ok(outcome),
                };
                let hold = hold.clone();
                a.pending -= released;
                if !posting.late {
                    a.pending_calls -= 1;
                }
                a.assert_invariants();
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
                    return unknown();
                };
                let mut c = guard(&code_arc)?;
                let (balance, pending) = (c.balance, c.pending);
                let Some(hold) = c.holds.get_mut(&usage.call_id) else {
                    return unknown();
                };
                let (posting, released) =
                    match check_and_post(s, hold, usage, Some((balance, pending)), now_ms)? {
                        Ok(x) => x,
                        Err(outcome) => return Ok(outcome),
                    };
                let hold = hold.clone();
                c.pending -= released;
                c.balance -= posting.charge;
                c.assert_invariants();
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
            // The index outlives every hold it names (see `call_index_ttl_ms`).
            let Some(payer) = s.calls.get(&call_id).map(|i| i.payer.clone()) else {
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
                        a.assert_invariants();
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
                        c.assert_invariants();
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
            let payer = s.calls.get(&call_id).map(|i| i.payer.clone());
            match payer {
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
        // Forget lapsed call-index entries (a refreshed one lapses later).
        let lapsed: Vec<CallId> = {
            let mut idx = guard(&s.index_purge)?;
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
        for call_id in lapsed {
            s.calls.remove_if(&call_id, |_, i| i.until_ms <= now_ms);
        }
        let lockout = s.policy.lockout();
        s.lines.retain(|_, l| l.is_current(now_ms, &lockout));
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
        let after = a
            .balances()
            .apply_invoice(invoice.invoice_id.as_str(), invoice.usage, invoice.fees)
            .map_err(|e| StoreError::Rejected(e.to_string()))?;
        a.unbilled = after.unbilled;
        a.invoiced_unpaid = after.invoiced_unpaid;
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
        let after = a
            .balances()
            .apply_payment(payment.payment_id.as_str(), payment.amount)
            .map_err(|e| StoreError::Rejected(e.to_string()))?;
        a.invoiced_unpaid = after.invoiced_unpaid;
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
        match s.references.entry(purchase_ref.clone()) {
            Entry::Occupied(o) => {
                let used = o.get().clone();
                drop(o);
                if !used.purchase || used.amount != amount {
                    return Err(reference_used(purchase_ref));
                }
                let c = s.code_arc(&used.code).ok_or_else(|| {
                    StoreError::Corrupt(format!("purchase {purchase_ref} has no code"))
                })?;
                let view = guard(&c)?.view(&used.code);
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
                let c = Code {
                    balance: amount,
                    pending: Money::ZERO,
                    issued_at_ms: now_ms,
                    holds: FastMap::default(),
                };
                let view = c.view(&id);
                s.codes.insert(id.clone(), Arc::new(Mutex::new(c)));
                v.insert(ReferenceUse {
                    purchase: true,
                    code: id.clone(),
                    amount,
                });
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
        let wanted = ReferenceUse {
            purchase: false,
            code: code.clone(),
            amount,
        };
        match s.references.entry(topup_ref.clone()) {
            // The same top-up again: already credited, nothing more.
            Entry::Occupied(o) if *o.get() == wanted => {
                drop(o);
                return Ok(guard(&c)?.view(code));
            }
            Entry::Occupied(_) => return Err(reference_used(topup_ref)),
            Entry::Vacant(v) => {
                v.insert(wanted);
            }
        }
        let mut c = guard(&c)?;
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

    async fn ready(&self) -> Result<(), NotReady> {
        Ok(())
    }
}

fn reused(call_id: &CallId) -> StoreError {
    StoreError::Rejected(format!(
        "call_id {call_id} is already used for another caller, code, service or IVR client"
    ))
}

/// A payment reference pays for one thing once (R17): a retry with the same
/// code and amount is answered as before, anything else is refused.
fn reference_used(reference: &Reference) -> StoreError {
    StoreError::Rejected(format!(
        "reference {reference} is already used for another purchase or top-up"
    ))
}

fn set_member(set: &mut BTreeSet<String>, item: &str, present: bool) -> bool {
    if present {
        set.insert(item.to_string())
    } else {
        set.remove(item)
    }
}

fn not_yours(call_id: &CallId) -> StoreError {
    StoreError::Forbidden(format!(
        "call_id {call_id} was authorized by another IVR client"
    ))
}

/// Extend on `hold` (the rules are `Hold::extend_step` and `Hold::extend`);
/// returns the answer and the change of the payer's pending amount.
#[allow(clippy::too_many_arguments)]
fn extend_hold(
    s: &Inner,
    call_id: &CallId,
    hold: &mut Hold,
    ivr_client: &str,
    sequence: u32,
    available: Money,
    refusal: Option<DenyReason>,
    now_ms: i64,
) -> StoreResult<(ExtendResult, Money)> {
    check_client(call_id, hold, ivr_client)?;
    match hold.extend_step(sequence) {
        ExtendStep::Replay(result) => Ok((result, Money::ZERO)),
        ExtendStep::OutOfOrder { expected } => Err(StoreError::Rejected(format!(
            "extension sequence {sequence} is out of order: expected {expected}"
        ))),
        ExtendStep::Fresh => {
            let old_expiry = hold.expires_at_ms;
            let (result, delta) = hold.extend(
                available,
                refusal,
                &s.policy.grant,
                s.policy.hold_grace_ms,
                now_ms,
            );
            if hold.expires_at_ms != old_expiry {
                s.expiry_moved(call_id, Some(old_expiry), Some(hold.expires_at_ms))?;
            }
            Ok((result, delta))
        }
    }
}

fn void_hold(
    s: &Inner,
    call_id: &CallId,
    hold: &mut Hold,
    partition: u32,
    now_ms: i64,
) -> StoreResult<ReleaseOutcome> {
    let outcome = hold.void();
    if let ReleaseOutcome::Voided(amount) = outcome {
        s.expiry_moved(call_id, Some(hold.expires_at_ms), None)?;
        s.schedule_purge(call_id, now_ms)?;
        s.emit(
            partition,
            now_ms,
            ids::voided(call_id.as_str()),
            EventBody::HoldVoided(event::HoldVoided {
                call_id: call_id.to_string(),
                number: number_str(hold),
                funding: funding(hold),
                code_id: code_str(hold),
                amount_ore: amount.ore(),
            }),
        );
    }
    Ok(outcome)
}

/// Expires a pending hold whose time has come; returns the amount released.
fn expire_hold(
    s: &Inner,
    call_id: &CallId,
    hold: &mut Hold,
    partition: u32,
    now_ms: i64,
) -> StoreResult<Option<Money>> {
    let Some(amount) = hold.expire(now_ms) else {
        return Ok(None);
    };
    s.schedule_purge(call_id, now_ms)?;
    s.emit(
        partition,
        now_ms,
        ids::expired(call_id.as_str()),
        EventBody::HoldExpired(event::HoldExpired {
            call_id: call_id.to_string(),
            number: number_str(hold),
            funding: funding(hold),
            code_id: code_str(hold),
            amount_ore: amount.ore(),
            granted_seconds: hold.grant.granted_seconds,
        }),
    );
    Ok(Some(amount))
}

/// Checks a usage record against its hold (`Hold::check_usage`) and marks
/// the hold posted. `code` is a prepaid code's balance and pending, whose
/// debit is capped (`prepaid_debit`). `Ok(Err(outcome))` is a duplicate or a
/// refusal that changes nothing; `Ok(Ok((posting, released)))` a new posting
/// and the pending amount it releases.
fn check_and_post(
    s: &Inner,
    hold: &mut Hold,
    usage: &UsagePost,
    code: Option<(Money, Money)>,
    now_ms: i64,
) -> StoreResult<Result<(Posting, Money), UsageOutcome>> {
    let (mut posting, late) = match hold.check_usage(
        &usage.merchant_id,
        &usage.service_number,
        usage.started_at_ms,
        usage.duration_seconds,
        s.policy.usage_start_skew_ms,
    ) {
        UsageCheck::Answer(outcome) => return Ok(Err(outcome)),
        UsageCheck::Post { posting, late } => (posting, late),
    };
    let released = if late { Money::ZERO } else { hold.grant.hold };
    if let Some((balance, pending)) = code {
        let (charge, uncollected) = prepaid_debit(posting.charge, balance - (pending - released));
        posting.charge = charge;
        posting.uncollected = uncollected;
    }
    if !late {
        s.expiry_moved(&usage.call_id, Some(hold.expires_at_ms), None)?;
    }
    hold.post(usage.duration_seconds, posting);
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
            number: number_str(hold),
            funding: funding(hold),
            code_id: code_str(hold),
            terms_id: hold.terms_id().to_string(),
            price_per_minute_ore: hold.tariff().price_per_minute.ore(),
            billing_step_seconds: hold.tariff().billing_step_seconds,
            minimum_minutes: hold.tariff().minimum_minutes,
            started_at_ms: usage.started_at_ms,
            duration_seconds: usage.duration_seconds,
            billed_seconds: posting.billed_seconds,
            charge_ore: posting.charge.ore(),
            uncollected_ore: posting.uncollected.ore(),
            granted_seconds: hold.grant.granted_seconds,
            overrun_seconds: posting.overrun_seconds,
            late: posting.late,
            authorized_at_ms: hold.authorized_at_ms,
            exposure_after_ore: exposure.ore(),
            vat_rate: hold.vat_rate(),
        }),
    );
}
