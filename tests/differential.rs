//! The embedded store as the auditor of the Redis one (issue 12; after
//! TigerBeetle's auditor of its state machine): one seeded random workload —
//! authorize with and without consent, prepaid codes right and wrong,
//! extend, usage good and bad, release, expiry, blocks, limits, directory
//! changes, invoices, payments, repairs, issues and top-ups — runs on the
//! embedded store and on Redis (and on a Redis Cluster) side by side, step by
//! step. After every step it compares, in full:
//!
//! - the reply (the value, or the error's kind and words);
//! - every account view of the workload's numbers, every prepaid code's
//!   view, and the number of pending holds;
//! - every event the step appended, field by field, in append order per
//!   partition.
//!
//! The embedded store runs the rules of `src/domain` in Rust, Redis runs
//! them in Lua (`callauth.lua`): any reply, account or event field that
//! differs fails the test with the step, the seed and both sides.
//!
//! Prepaid codes are drawn at random by each backend, so a code's id (and
//! the partition its events land in) differ between the two: ids are
//! replaced by their issue order (`code#0`, …) before comparing, and a
//! code's events are compared as a set within the step.
//!
//! Simulated time advances at most ~35 hours, below every retention the
//! Redis keys expire by (they expire in real time, the embedded store by
//! the simulated clock).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use callauth::domain::account::{BlockKind, LimitChange};
use callauth::domain::decision::Consent;
use callauth::domain::{
    CodeHasher, CodeId, Event, Money, PrepaidCode, RecordId, Reference, Service,
};
use callauth::store::memory::MemoryStore;
use callauth::store::*;
use common::*;

/// SplitMix64: a small deterministic generator, so that both sides see the
/// same workload for a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const NUMBERS: [&str; 5] = [
    "+46701234567",
    "+46702345678",
    "+46703456789", // unregistered holder
    "+46704567890", // not listed at first
    "+4687654321",
];
const SERVICES: [&str; 4] = [TAROT, LEGAL, CHAT, PSYCH];
const CLIENTS: [&str; 2] = [IVR, "ivr-other"];

/// One step of the workload. Codes are named by their issue order.
#[derive(Clone, Debug)]
enum Op {
    Authorize {
        number: usize,
        call: String,
        service: usize,
        consent: Option<bool>, // Some(false): consent for stale terms
        client: usize,
    },
    AuthorizePrepaid {
        number: Option<usize>,
        call: String,
        service: usize,
        code: Option<usize>, // None: a wrong code
        consent: bool,
        client: usize,
    },
    CodeFailure {
        number: Option<usize>,
    },
    Extend {
        call: String,
        client: usize,
        sequence: u32,
    },
    Release {
        call: String,
        client: usize,
    },
    Usage {
        call: String,
        service: usize,
        own_merchant: bool,
        duration: u32,
        start_offset_ms: i64,
    },
    Expire,
    Directory {
        number: usize,
        registered: bool,
    },
    Block {
        number: usize,
        kind: usize,
        target: usize,
        blocked: bool,
    },
    Limit {
        number: usize,
        change: usize,
        amount_sek: i64,
    },
    Invoice {
        number: usize,
        id: u32,
        usage_percent: u64,
        fees_ore: i64,
    },
    Payment {
        number: usize,
        id: u32,
        amount_percent: u64,
        clear_overdue: bool,
        first_paid: bool,
    },
    Repair {
        number: usize,
        unbilled_ore: i64,
        invoiced_ore: i64,
    },
    Issue {
        reference: u32,
        amount_sek: i64,
    },
    TopUp {
        code: usize,
        reference: u32,
        amount_sek: i64,
    },
}

/// What the workload knows of the calls so far (from replies both sides
/// agreed on), so that most steps act on calls that exist.
#[derive(Default)]
struct Calls {
    next: u64,
    /// Allowed calls, most recent last.
    allowed: Vec<String>,
}

impl Calls {
    /// A new call id mostly; sometimes a recent one again (retries, reuse).
    fn for_authorize(&mut self, rng: &mut Rng) -> String {
        if !self.allowed.is_empty() && rng.chance(20) {
            return rng.pick(&self.allowed).clone();
        }
        self.next += 1;
        format!("c{}", self.next)
    }

    /// A recent allowed call mostly; sometimes any id.
    fn existing(&self, rng: &mut Rng) -> String {
        if self.allowed.is_empty() || rng.chance(10) {
            return format!("c{}", rng.below(self.next + 2));
        }
        let recent = &self.allowed[self.allowed.len().saturating_sub(12)..];
        rng.pick(recent).clone()
    }
}

fn gen_op(rng: &mut Rng, codes: usize, calls: &mut Calls) -> Op {
    let call = calls.existing(rng);
    let number = rng.below(NUMBERS.len() as u64) as usize;
    let client = usize::from(rng.chance(5));
    match rng.below(100) {
        0..=27 => Op::Authorize {
            number: if rng.chance(70) {
                rng.below(2) as usize
            } else {
                number
            },
            call: calls.for_authorize(rng),
            service: rng.below(4) as usize,
            consent: match rng.below(10) {
                0..=2 => None,
                3 => Some(false),
                _ => Some(true),
            },
            client,
        },
        28..=35 => Op::AuthorizePrepaid {
            number: (!rng.chance(30)).then_some(number),
            call: calls.for_authorize(rng),
            service: rng.below(4) as usize,
            code: (codes > 0 && !rng.chance(20)).then(|| rng.below(codes as u64) as usize),
            consent: !rng.chance(15),
            client,
        },
        36 => Op::CodeFailure {
            number: (!rng.chance(50)).then_some(number),
        },
        37..=46 => Op::Extend {
            call,
            client,
            sequence: match rng.below(10) {
                0..=5 => 1,
                6..=7 => 2,
                _ => rng.below(6) as u32,
            },
        },
        47..=51 => Op::Release { call, client },
        52..=67 => Op::Usage {
            call,
            service: if rng.chance(90) {
                usize::MAX // the call's own service (filled in at run time)
            } else {
                rng.below(4) as usize
            },
            own_merchant: !rng.chance(5),
            // A few durations, so that a record sent twice is often the same.
            duration: match rng.below(10) {
                0 => 0,
                1 => 3000 + rng.below(2000) as u32,
                2..=5 => *rng.pick(&[30, 60, 185, 600]),
                _ => rng.below(1200) as u32,
            },
            start_offset_ms: -(rng.below(400_000) as i64),
        },
        68..=72 => Op::Expire,
        73..=74 => Op::Directory {
            number,
            registered: !rng.chance(20),
        },
        75..=78 => Op::Block {
            number,
            kind: rng.below(4) as usize,
            target: rng.below(4) as usize,
            blocked: rng.chance(35),
        },
        79..=81 => Op::Limit {
            number,
            change: rng.below(4) as usize,
            amount_sek: [0, 300, 1000, 1500, 2000, 5000][rng.below(6) as usize],
        },
        82..=87 => Op::Invoice {
            number,
            id: rng.below(30) as u32,
            usage_percent: [0, 50, 100, 100, 130][rng.below(5) as usize],
            fees_ore: [0, 0, 3000, 6000, 18000][rng.below(5) as usize],
        },
        88..=92 => Op::Payment {
            number,
            id: rng.below(30) as u32,
            amount_percent: [10, 50, 100, 100, 150][rng.below(5) as usize],
            clear_overdue: rng.chance(50),
            first_paid: rng.chance(30),
        },
        93 => Op::Repair {
            number,
            unbilled_ore: rng.below(200_000) as i64,
            invoiced_ore: rng.below(100_000) as i64,
        },
        94..=96 => Op::Issue {
            reference: rng.below(12) as u32,
            amount_sek: [50, 100, 100, 300][rng.below(4) as usize],
        },
        _ => Op::TopUp {
            code: rng.below(codes.max(1) as u64) as usize,
            reference: rng.below(16) as u32,
            amount_sek: [50, 100][rng.below(2) as usize],
        },
    }
}

/// One backend and what the workload learned from it.
struct Side<S: Store> {
    store: S,
    name: &'static str,
    /// Codes by issue order (each backend draws its own).
    codes: Vec<CodeId>,
}

fn e164(i: usize) -> callauth::domain::E164 {
    n(NUMBERS[i])
}

fn consent_for(service: &Service, fresh: bool, now: i64) -> Consent {
    Consent {
        age_confirmed: true,
        own_number_confirmed: true,
        step1_at_ms: now - 9000,
        terms_accepted: true,
        step2_at_ms: now - 2000,
        terms_id: Some(if fresh {
            service.terms.terms_id.clone()
        } else {
            callauth::domain::Terms::make_id(&service.number, 99)
        }),
    }
}

fn call_spec(
    id: &str,
    service: &Arc<Service>,
    consent: Option<Consent>,
    client: usize,
    withheld: bool,
) -> CallSpec {
    CallSpec {
        call_id: call_id(id),
        service: service.clone(),
        terms: service.terms.clone(),
        consent,
        evidence: Evidence {
            ivr_client: CLIENTS[client].into(),
            ivr_id: "node-7".into(),
            line_ref: if withheld {
                "line-3".into()
            } else {
                String::new()
            },
            number_withheld: withheld,
        },
    }
}

/// Runs one step on one side; the reply as text with code ids replaced.
async fn apply<S: Store>(
    side: &mut Side<S>,
    op: &Op,
    services: &[Arc<Service>],
    call_services: &BTreeMap<String, usize>,
    wrong_code: &CodeId,
    hasher: &CodeHasher,
    now: i64,
) -> String {
    let s = &side.store;
    let reply = match op {
        Op::Authorize {
            number,
            call,
            service,
            consent,
            client,
        } => {
            let svc = &services[*service];
            let consent = consent.map(|fresh| consent_for(svc, fresh, now));
            format!(
                "{:?}",
                s.authorize(
                    &e164(*number),
                    &call_spec(call, svc, consent, *client, false),
                    now
                )
                .await
            )
        }
        Op::AuthorizePrepaid {
            number,
            call,
            service,
            code,
            consent,
            client,
        } => {
            let svc = &services[*service];
            let consent = consent.then(|| Consent {
                own_number_confirmed: false,
                ..consent_for(svc, true, now)
            });
            let code = match code {
                Some(k) => side.codes[*k].clone(),
                None => wrong_code.clone(),
            };
            let number = number.map(e164);
            let line = match &number {
                Some(n) => LineKey::number(n),
                None => LineKey::withheld(CLIENTS[*client], "line-3"),
            };
            let spec = call_spec(call, svc, consent, *client, number.is_none());
            format!(
                "{:?}",
                s.authorize_prepaid(&line, number.as_ref(), &code, &spec, now)
                    .await
            )
        }
        Op::CodeFailure { number } => {
            let line = match number {
                Some(i) => LineKey::number(&e164(*i)),
                None => LineKey::withheld(IVR, "line-3"),
            };
            format!("{:?}", s.record_code_failure(&line, now).await)
        }
        Op::Extend {
            call,
            client,
            sequence,
        } => format!(
            "{:?}",
            s.extend(&call_id(call), CLIENTS[*client], *sequence, now)
                .await
        ),
        Op::Release { call, client } => format!(
            "{:?}",
            s.release(&call_id(call), CLIENTS[*client], now).await
        ),
        Op::Usage {
            call,
            service,
            own_merchant,
            duration,
            start_offset_ms,
        } => {
            let svc_index = if *service == usize::MAX {
                call_services.get(call).copied().unwrap_or(0)
            } else {
                *service
            };
            let svc = &services[svc_index];
            let merchant = if *own_merchant {
                svc.merchant_id.clone()
            } else {
                callauth::domain::MerchantId::parse("someone-else").unwrap()
            };
            let post = UsagePost {
                merchant_id: merchant,
                record_id: RecordId::parse(&format!("r-{call}")).unwrap(),
                call_id: call_id(call),
                service_number: svc.number.clone(),
                started_at_ms: now + start_offset_ms,
                duration_seconds: *duration,
            };
            format!("{:?}", s.post_usage(&post, now).await)
        }
        Op::Expire => format!("{:?}", s.expire_due(now, 1000).await),
        Op::Directory { number, registered } => format!(
            "{:?}",
            s.put_directory(&e164(*number), *registered, "auditor", now)
                .await
        ),
        Op::Block {
            number,
            kind,
            target,
            blocked,
        } => {
            let (kind, target) = match kind {
                0 => (BlockKind::HolderAllServices, String::new()),
                1 => (
                    BlockKind::HolderMerchant,
                    services[*target].merchant_id.to_string(),
                ),
                2 => (
                    BlockKind::HolderService,
                    services[*target].number.as_str().to_string(),
                ),
                _ => (BlockKind::Overdue, String::new()),
            };
            let change = BlockChange {
                kind,
                target,
                blocked: *blocked,
                reason: "differential".into(),
                actor: "auditor".into(),
            };
            format!("{:?}", s.set_block(&e164(*number), &change, now).await)
        }
        Op::Limit {
            number,
            change,
            amount_sek,
        } => {
            let change = match change {
                0 => LimitChange::HolderRequested(Money::sek(*amount_sek)),
                1 => LimitChange::CreditDecision {
                    limit: Money::sek(*amount_sek),
                    credit_check_reference: "uc-2026-1".into(),
                    decided_by: "auditor".into(),
                },
                2 => LimitChange::CreditDecision {
                    limit: Money::sek(*amount_sek),
                    credit_check_reference: String::new(),
                    decided_by: "auditor".into(),
                },
                _ => LimitChange::ResetToDefault,
            };
            format!(
                "{:?}",
                s.set_limit(&e164(*number), &change, "auditor", now).await
            )
        }
        Op::Invoice {
            number,
            id,
            usage_percent,
            fees_ore,
        } => {
            // Sized from this side's own account: the two must agree anyway.
            let unbilled = s.account(&e164(*number)).await.unwrap().unbilled;
            let invoice = InvoiceApply {
                invoice_id: Reference::parse(&format!("F{id}")).unwrap(),
                usage: Money::ore_unchecked(unbilled.ore() * *usage_percent as i64 / 100),
                fees: Money::ore_unchecked(*fees_ore),
            };
            format!("{:?}", s.apply_invoice(&e164(*number), &invoice, now).await)
        }
        Op::Payment {
            number,
            id,
            amount_percent,
            clear_overdue,
            first_paid,
        } => {
            let due = s.account(&e164(*number)).await.unwrap().invoiced_unpaid;
            let payment = PaymentApply {
                payment_id: Reference::parse(&format!("P{id}")).unwrap(),
                amount: Money::ore_unchecked(due.ore() * *amount_percent as i64 / 100),
                clear_overdue: *clear_overdue,
                first_invoice_paid: *first_paid,
            };
            format!("{:?}", s.apply_payment(&e164(*number), &payment, now).await)
        }
        Op::Repair {
            number,
            unbilled_ore,
            invoiced_ore,
        } => format!(
            "{:?}",
            s.repair_balances(
                &e164(*number),
                Money::ore_unchecked(*unbilled_ore),
                Money::ore_unchecked(*invoiced_ore),
                "differential repair",
                now,
            )
            .await
        ),
        Op::Issue {
            reference,
            amount_sek,
        } => {
            let r = Reference::parse(&format!("ref-{reference}")).unwrap();
            match s
                .issue_prepaid(hasher, Money::sek(*amount_sek), &r, now)
                .await
            {
                Ok(IssueOutcome::Issued { view, .. }) => {
                    side.codes.push(view.code_id.clone());
                    format!("Ok(Issued {view:?})")
                }
                other => format!("{other:?}"),
            }
        }
        Op::TopUp {
            code,
            reference,
            amount_sek,
        } => match side.codes.get(*code) {
            Some(id) => {
                let r = Reference::parse(&format!("ref-{reference}")).unwrap();
                format!(
                    "{:?}",
                    s.top_up_prepaid(id, Money::sek(*amount_sek), &r, now).await
                )
            }
            None => "no code yet".into(),
        },
    };
    side.aliased(&reply)
}

impl<S: Store> Side<S> {
    /// `text` with this side's code ids replaced by their issue order.
    fn aliased(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (k, id) in self.codes.iter().enumerate() {
            out = out.replace(id.as_str(), &format!("code#{k}"));
        }
        out
    }

    /// Everything the step left behind, as comparable text: the accounts,
    /// the codes, the pending holds, and the events appended at `now`.
    async fn state(&self, now: i64, with_stats: bool) -> BTreeMap<String, String> {
        let s = &self.store;
        let mut out = BTreeMap::new();
        for (i, _) in NUMBERS.iter().enumerate() {
            out.insert(
                format!("account {}", NUMBERS[i]),
                format!("{:?}", s.account(&e164(i)).await),
            );
        }
        for (k, id) in self.codes.iter().enumerate() {
            out.insert(
                format!("code#{k}"),
                self.aliased(&format!("{:?}", s.prepaid(id).await)),
            );
        }
        if with_stats {
            out.insert(
                "pending holds".into(),
                format!("{:?}", s.stats().await.map(|st| st.pending_holds)),
            );
        }
        // The step's events: in append order per partition; a code's events
        // as a set (its partition follows its random id).
        let events: Vec<Event> = s
            .recent_events(64)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.at_ms == now)
            .collect();
        let mut by_partition: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for e in events {
            let json = e.to_json();
            let of_a_code = self.codes.iter().any(|id| json.contains(id.as_str()));
            let key = if of_a_code {
                "codes".to_string()
            } else {
                format!("p{:02}", e.partition)
            };
            let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
            if of_a_code {
                v["partition"] = serde_json::Value::Null;
            }
            by_partition
                .entry(key)
                .or_default()
                .push(self.aliased(&v.to_string()));
        }
        if let Some(codes) = by_partition.get_mut("codes") {
            codes.sort();
        }
        for (k, v) in by_partition {
            out.insert(format!("events {k}"), v.join("\n"));
        }
        out
    }
}

/// Runs `steps` steps of the workload of `seed` on both stores, comparing
/// after every step; panics at the first difference.
async fn audit<R: Store>(
    reference: MemoryStore,
    under_test: R,
    seed: u64,
    steps: usize,
) -> BTreeMap<String, usize> {
    let mut a = Side {
        store: reference,
        name: "memory",
        codes: vec![],
    };
    let mut b = Side {
        store: under_test,
        name: "redis",
        codes: vec![],
    };
    seed_catalog(&a.store).await;
    seed_catalog(&b.store).await;
    let services: Vec<Arc<Service>> = {
        let mut v = Vec::new();
        for s in SERVICES {
            v.push(service(&a.store, s).await);
        }
        v
    };
    // Number 3 is listed later by the workload, if at all; number 2's
    // holder is not registered.
    for i in [0, 1, 2, 4] {
        let registered = i != 2;
        a.store
            .put_directory(&e164(i), registered, "auditor", T0)
            .await
            .unwrap();
        b.store
            .put_directory(&e164(i), registered, "auditor", T0)
            .await
            .unwrap();
    }
    let hasher = CodeHasher::new(&[7u8; 32]).unwrap();
    let wrong_code = hasher.id(&PrepaidCode::generate());
    let mut rng = Rng(seed);
    let mut now = T0 + 1000;
    // Which service each call id was last authorized for (usage names it).
    let mut call_services: BTreeMap<String, usize> = BTreeMap::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut calls = Calls::default();
    for step in 0..steps {
        now += 1 + match rng.below(10) {
            0..=6 => rng.below(2000) as i64,
            7..=8 => rng.below(60_000) as i64,
            _ => rng.below(600_000) as i64,
        };
        let op = gen_op(&mut rng, a.codes.len().min(b.codes.len()), &mut calls);
        match &op {
            Op::Authorize { call, service, .. } | Op::AuthorizePrepaid { call, service, .. } => {
                call_services.insert(call.clone(), *service);
            }
            _ => {}
        }
        let ra = apply(
            &mut a,
            &op,
            &services,
            &call_services,
            &wrong_code,
            &hasher,
            now,
        )
        .await;
        let rb = apply(
            &mut b,
            &op,
            &services,
            &call_services,
            &wrong_code,
            &hasher,
            now,
        )
        .await;
        assert_eq!(
            ra, rb,
            "seed {seed}, step {step}: the replies to {op:?} differ ({} vs {})",
            a.name, b.name
        );
        // The pending-hold count costs two commands per partition: every
        // 20 steps (the accounts' pending amounts are compared every step).
        let with_stats = step % 20 == 19;
        let (sa, sb) = (
            a.state(now, with_stats).await,
            b.state(now, with_stats).await,
        );
        for (key, va) in &sa {
            assert_eq!(
                Some(va),
                sb.get(key),
                "seed {seed}, step {step}, after {op:?}: {key} differs ({} vs {})",
                a.name,
                b.name
            );
        }
        assert_eq!(
            sa.len(),
            sb.len(),
            "seed {seed}, step {step}: {:?} vs {:?}",
            sa.keys(),
            sb.keys()
        );
        if let Op::Authorize { call, .. } | Op::AuthorizePrepaid { call, .. } = &op {
            if ra.contains("Allowed(") && !calls.allowed.contains(call) {
                calls.allowed.push(call.clone());
            }
        }
        let kind = format!("{op:?}");
        let kind = kind.split([' ', '{']).next().unwrap_or_default();
        let outcome = [
            ("Err(", "err"),
            ("Allowed(", "allowed"),
            ("CallEnded", "ended"),
            ("Applied(", "applied"),
            ("Duplicate(", "duplicate"),
            ("Rejected(", "rejected"),
            ("Extended", "extended"),
            ("Voided(", "voided"),
        ]
        .iter()
        .find(|(needle, _)| ra.contains(needle))
        .map_or("ok", |(_, label)| label);
        *counts.entry(format!("{kind}/{outcome}")).or_default() += 1;
    }
    eprintln!("seed {seed}: {steps} steps agreed: {counts:?}");
    counts
}

/// The seeds' workloads together must have exercised what the test claims
/// to compare: each kind of step, answered and refused where that can be.
fn assert_exercised(counts: &[BTreeMap<String, usize>]) {
    let mut all: BTreeMap<String, usize> = BTreeMap::new();
    for c in counts {
        for (k, v) in c {
            *all.entry(k.clone()).or_default() += v;
        }
    }
    for must in [
        "Authorize/allowed",
        "Authorize/ended",
        "Authorize/ok",
        "Authorize/err",
        "AuthorizePrepaid/allowed",
        "AuthorizePrepaid/ok",
        "Extend/extended",
        "Extend/ended",
        "Extend/err",
        "Release/voided",
        "Usage/applied",
        "Usage/duplicate",
        "Usage/rejected",
        "Expire/ok",
        "Block/ok",
        "Limit/ok",
        "Limit/err",
        "Invoice/ok",
        "Invoice/err",
        "Payment/ok",
        "Payment/err",
        "Repair/ok",
        "Issue/ok",
        "Issue/err",
        "TopUp/ok",
        "TopUp/err",
    ] {
        assert!(
            all.get(must).copied().unwrap_or(0) > 0,
            "the workloads never produced {must}: {all:?}"
        );
    }
}

const STEPS: usize = 1200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_audits_redis() {
    let mut counts = Vec::new();
    for seed in [1, 2, 3] {
        let redis = common::redis::single_store(policy()).await;
        counts.push(audit(MemoryStore::new(policy()), redis, seed, STEPS).await);
    }
    assert_exercised(&counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_audits_redis_cluster() {
    let mut counts = Vec::new();
    for seed in [11, 12] {
        let redis = common::redis::cluster_store(policy()).await;
        counts.push(audit(MemoryStore::new(policy()), redis, seed, STEPS).await);
    }
    assert_exercised(&counts);
}
