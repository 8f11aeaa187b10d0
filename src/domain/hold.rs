//! A call's hold and its lifecycle (DESIGN invariant 3): a pending hold is
//! *posted* by the call's usage, *voided* by a release, or *expired* when no
//! usage came in time; Extend grows a pending hold, idempotently per
//! sequence. Each rule is one pure function here. The embedded store runs
//! them under the payer's lock; the Redis Functions (`callauth.lua`) run the
//! same rules and cite them by name; the differential test
//! (`tests/differential.rs`) runs both on one seeded workload and compares
//! every reply, account and event.
//!
//! The money a hold's end releases is not decided here but by the caller's
//! bookkeeping: a posted or voided pending hold releases its amount from the
//! payer's pending; an expired one already did.

use std::sync::Arc;

use super::catalog::{Service, Terms};
use super::decision::{decide_extend, Decision, DenyReason, Extension, Grant, GrantPolicy};
use super::ids::{MerchantId, TermsId};
use super::money::Money;
use super::number::E164;
use super::prepaid::CodeId;
use super::rating::{rate, Tariff};
use super::vat::VatRate;

/// Where a hold is in its life. The one-letter codes are the Redis
/// Functions' (`st` field of a hold).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldState {
    Pending,
    Posted {
        duration_seconds: u32,
        posting: Posting,
    },
    Voided,
    Expired,
}

impl HoldState {
    /// The state codes the Redis Functions store, generated into the Lua
    /// (`functions::lua_constants`) so that the two cannot disagree.
    pub const CODES: [(&'static str, &'static str); 4] = [
        ("HOLD_PENDING", "P"),
        ("HOLD_POSTED", "O"),
        ("HOLD_VOIDED", "V"),
        ("HOLD_EXPIRED", "E"),
    ];
}

/// What posting a call's usage charged (R4, R8, R10).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Posting {
    /// What the payer is charged: the rated amount, for a prepaid code at
    /// most what the code holds (see [`prepaid_debit`]).
    pub charge: Money,
    /// The part of the rated amount a prepaid code could not cover: not
    /// charged to anyone (the IVR let the call run past its grant).
    pub uncollected: Money,
    pub billed_seconds: u32,
    pub overrun_seconds: u32,
    /// The hold had expired before the usage arrived (charged anyway).
    pub late: bool,
    /// This posting brought the exposure to the 80 % threshold (R8).
    pub threshold_reached: bool,
    /// This posting brought the exposure to the limit: the number is now credit-blocked.
    pub limit_reached: bool,
}

/// Why a usage record was refused. The codes are the Redis Functions'
/// (`post_usage` returns `{0, code, detail}`), generated into the Lua.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum UsageReject {
    UnknownService,
    NotMerchantsService,
    UnknownCall,
    ServiceMismatch,
    ConflictingDuplicate,
    CallReleased,
    StartOutOfRange,
    DurationOutOfRange,
    Malformed,
}

impl UsageReject {
    pub const ALL: [UsageReject; 9] = [
        UsageReject::UnknownService,
        UsageReject::NotMerchantsService,
        UsageReject::UnknownCall,
        UsageReject::ServiceMismatch,
        UsageReject::ConflictingDuplicate,
        UsageReject::CallReleased,
        UsageReject::StartOutOfRange,
        UsageReject::DurationOutOfRange,
        UsageReject::Malformed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            UsageReject::UnknownService => "unknown_service",
            UsageReject::NotMerchantsService => "not_merchants_service",
            UsageReject::UnknownCall => "unknown_call",
            UsageReject::ServiceMismatch => "service_mismatch",
            UsageReject::ConflictingDuplicate => "conflicting_duplicate",
            UsageReject::CallReleased => "call_released",
            UsageReject::StartOutOfRange => "start_out_of_range",
            UsageReject::DurationOutOfRange => "duration_out_of_range",
            UsageReject::Malformed => "malformed",
        }
    }

    /// The code the Redis Functions use for the refusals they make.
    pub fn code(self) -> u8 {
        match self {
            UsageReject::UnknownCall => 1,
            UsageReject::ServiceMismatch => 2,
            UsageReject::NotMerchantsService => 3,
            UsageReject::ConflictingDuplicate => 4,
            UsageReject::CallReleased => 5,
            UsageReject::StartOutOfRange => 6,
            UsageReject::UnknownService => 7,
            UsageReject::DurationOutOfRange => 8,
            UsageReject::Malformed => 9,
        }
    }

    pub fn from_code(c: u8) -> Option<UsageReject> {
        UsageReject::ALL.into_iter().find(|r| r.code() == c)
    }

    /// The Lua constant's name (`USAGE_UNKNOWN_CALL`).
    pub fn lua_name(self) -> String {
        format!("USAGE_{}", self.label().to_ascii_uppercase())
    }

    /// The detail a refusal carries (the same words on every backend).
    pub fn detail(self) -> &'static str {
        match self {
            UsageReject::UnknownCall => "no call with this call_id was authorized",
            UsageReject::ServiceMismatch => "the call was authorized for another service number",
            UsageReject::NotMerchantsService => {
                "the call was authorized for another merchant's service"
            }
            UsageReject::CallReleased => "the IVR released the call before the service started",
            UsageReject::StartOutOfRange => "started_at is before the call was authorized",
            UsageReject::ConflictingDuplicate => {
                "the call was already posted with another duration"
            }
            UsageReject::UnknownService => "unknown service number",
            UsageReject::DurationOutOfRange => "duration out of range",
            UsageReject::Malformed => "malformed usage record",
        }
    }
}

/// The answer to a usage record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UsageOutcome {
    Applied(Posting),
    Duplicate(Posting),
    Rejected(UsageReject, String),
}

impl UsageOutcome {
    pub fn rejected(r: UsageReject) -> UsageOutcome {
        UsageOutcome::Rejected(r, r.detail().to_string())
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ExtendOutcome {
    Extended,
    Refused(DenyReason),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ExtendResult {
    pub outcome: ExtendOutcome,
    pub granted_seconds_total: u32,
    pub added_seconds: u32,
    pub hold: Money,
    pub hold_expires_at_ms: i64,
    pub replayed: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ReleaseOutcome {
    Voided(Money),
    AlreadyVoided,
    AlreadyPosted,
    AlreadyExpired,
    UnknownCall,
}

/// Extensions remembered per call: more than a call can use
/// (`max_call_seconds / quota_seconds` with the defaults is 16), so that any
/// earlier sequence replays its answer.
pub const MAX_EXTENSIONS: u32 = 64;

/// A call's hold: what the call was authorized for, and where it is.
///
/// Compact on purpose (issue 13.2): an embedded store keeps one per call
/// for the call and its retention, so the service and the accepted terms
/// are the catalogue's shared `Arc`s (their number, merchant, terms id,
/// tariff and VAT rate are read through them: [`Hold::service_number`] and
/// the other accessors) and the IVR client is a shared string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// The postpaid payer, or the caller of a prepaid call (None when withheld).
    pub number: Option<E164>,
    /// The prepaid payer.
    pub code: Option<CodeId>,
    /// The service called (its number and merchant at Authorize).
    pub service: Arc<Service>,
    /// The terms the caller accepted: the tariff a usage is rated by, the
    /// VAT rate carried to the usage event.
    pub terms: Arc<Terms>,
    /// The IVR client that authorized the call: only it may extend or release it.
    pub ivr_client: Arc<str>,
    /// The grant given by Authorize (what a replay returns).
    pub original: Grant,
    /// The grant now, after extensions.
    pub grant: Grant,
    pub authorized_at_ms: i64,
    pub expires_at_ms: i64,
    pub state: HoldState,
    /// Extension answers by sequence (1, 2, …), each replayed when asked again.
    pub extensions: Vec<ExtendResult>,
}

/// How an Authorize for a call id that already has a hold is answered.
pub enum Replay {
    /// The same payer, service and IVR client asked again.
    Answer(Decision),
    /// The call id belongs to another caller, code, service or IVR client.
    Reused,
}

/// What to do with an Extend's sequence number.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ExtendStep {
    /// Asked before: the same answer again.
    Replay(ExtendResult),
    /// The next sequence: decide.
    Fresh,
    /// A gap, zero, or past [`MAX_EXTENSIONS`].
    OutOfOrder { expected: u32 },
}

/// What a usage record does to its hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UsageCheck {
    /// Post it: the rated posting, and whether the hold was still pending
    /// (a late posting releases nothing: the expiry already did).
    Post { posting: Posting, late: bool },
    /// A duplicate or a refusal: nothing changes.
    Answer(UsageOutcome),
}

impl Hold {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        number: Option<E164>,
        code: Option<CodeId>,
        service: Arc<Service>,
        terms: Arc<Terms>,
        ivr_client: Arc<str>,
        grant: Grant,
        now_ms: i64,
        grace_ms: i64,
    ) -> Hold {
        Hold {
            number,
            code,
            service,
            terms,
            ivr_client,
            original: grant,
            grant,
            authorized_at_ms: now_ms,
            expires_at_ms: expiry(now_ms, grant.granted_seconds, grace_ms),
            state: HoldState::Pending,
            extensions: Vec::new(),
        }
    }

    /// The service number the call was authorized for.
    pub fn service_number(&self) -> &E164 {
        &self.service.number
    }

    /// The merchant whose service it is.
    pub fn merchant_id(&self) -> &MerchantId {
        &self.service.merchant_id
    }

    /// The terms version the caller accepted.
    pub fn terms_id(&self) -> &TermsId {
        &self.terms.terms_id
    }

    /// The tariff of the accepted terms.
    pub fn tariff(&self) -> &Tariff {
        &self.terms.tariff
    }

    /// The VAT rate of the accepted terms, carried to the usage event.
    pub fn vat_rate(&self) -> VatRate {
        self.terms.vat
    }

    /// Still holding credit: pending and not past its expiry (a sweeper may
    /// not have expired it yet).
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.state == HoldState::Pending && self.expires_at_ms > now_ms
    }

    /// A retried Authorize (DESIGN invariant 4): the original grant while the
    /// call holds credit; once it was posted, voided or expired the call is
    /// over and the answer says so (`CALL_ENDED`), never a grant that no
    /// longer exists.
    pub fn replay(&self, service: &E164, ivr_client: &str, now_ms: i64) -> Replay {
        if self.service_number() != service || &*self.ivr_client != ivr_client {
            return Replay::Reused;
        }
        Replay::Answer(if self.is_live(now_ms) {
            Decision::Allowed(self.original)
        } else {
            Decision::Denied(DenyReason::CallEnded)
        })
    }

    /// Extend's idempotency per `(call_id, sequence)`.
    pub fn extend_step(&self, sequence: u32) -> ExtendStep {
        let done = self.extensions.len() as u32;
        if sequence >= 1 && sequence <= done {
            let mut r = self.extensions[sequence as usize - 1];
            r.replayed = true;
            return ExtendStep::Replay(r);
        }
        if sequence == done + 1 && sequence <= MAX_EXTENSIONS {
            ExtendStep::Fresh
        } else {
            ExtendStep::OutOfOrder { expected: done + 1 }
        }
    }

    /// A fresh extension (after [`Hold::extend_step`] said `Fresh`): grows a
    /// live hold by up to one quota as `available` allows (R10). Returns the
    /// answer and how much the payer's pending grows.
    pub fn extend(
        &mut self,
        available: Money,
        refusal: Option<DenyReason>,
        policy: &GrantPolicy,
        grace_ms: i64,
        now_ms: i64,
    ) -> (ExtendResult, Money) {
        let before = self.grant;
        let decided = if !self.is_live(now_ms) {
            Extension::Refused(DenyReason::CallEnded)
        } else {
            decide_extend(self.tariff(), before, available, refusal, policy)
        };
        let (outcome, delta) = match decided {
            Extension::Extended(g) => {
                self.grant = g;
                self.expires_at_ms = expiry(self.authorized_at_ms, g.granted_seconds, grace_ms);
                (ExtendOutcome::Extended, g.hold - before.hold)
            }
            Extension::Refused(r) => (ExtendOutcome::Refused(r), Money::ZERO),
        };
        let result = ExtendResult {
            outcome,
            granted_seconds_total: self.grant.granted_seconds,
            added_seconds: self.grant.granted_seconds - before.granted_seconds,
            hold: self.grant.hold,
            hold_expires_at_ms: self.expires_at_ms,
            replayed: false,
        };
        self.extensions.push(result);
        (result, delta)
    }

    /// Release: voids a pending hold (even one past its expiry that no sweep
    /// has expired yet: nothing was charged, the credit returns either way).
    pub fn void(&mut self) -> ReleaseOutcome {
        match self.state {
            HoldState::Pending => {
                self.state = HoldState::Voided;
                ReleaseOutcome::Voided(self.grant.hold)
            }
            HoldState::Voided => ReleaseOutcome::AlreadyVoided,
            HoldState::Posted { .. } => ReleaseOutcome::AlreadyPosted,
            HoldState::Expired => ReleaseOutcome::AlreadyExpired,
        }
    }

    /// Expires a pending hold whose time has come; the amount it releases.
    pub fn expire(&mut self, now_ms: i64) -> Option<Money> {
        if self.state != HoldState::Pending || self.expires_at_ms > now_ms {
            return None;
        }
        self.state = HoldState::Expired;
        Some(self.grant.hold)
    }

    /// Checks a usage record against the hold (R4, R10, R20): the merchant,
    /// the service, a duplicate, a released call, the start; then rates it
    /// with the terms the caller accepted. Nothing changes.
    pub fn check_usage(
        &self,
        merchant: &MerchantId,
        service: &E164,
        started_at_ms: i64,
        duration_seconds: u32,
        start_skew_ms: i64,
    ) -> UsageCheck {
        if self.service_number() != service {
            return UsageCheck::Answer(UsageOutcome::rejected(UsageReject::ServiceMismatch));
        }
        if self.merchant_id() != merchant {
            return UsageCheck::Answer(UsageOutcome::rejected(UsageReject::NotMerchantsService));
        }
        let late = match &self.state {
            HoldState::Posted {
                duration_seconds: posted,
                posting,
            } => {
                return UsageCheck::Answer(if *posted == duration_seconds {
                    UsageOutcome::Duplicate(*posting)
                } else {
                    UsageOutcome::Rejected(
                        UsageReject::ConflictingDuplicate,
                        format!("the call was already posted with {posted} s"),
                    )
                });
            }
            HoldState::Voided => {
                return UsageCheck::Answer(UsageOutcome::rejected(UsageReject::CallReleased))
            }
            HoldState::Pending => false,
            HoldState::Expired => true,
        };
        if started_at_ms < self.authorized_at_ms - start_skew_ms {
            return UsageCheck::Answer(UsageOutcome::rejected(UsageReject::StartOutOfRange));
        }
        let rated = rate(self.tariff(), duration_seconds);
        UsageCheck::Post {
            posting: Posting {
                charge: rated.charge,
                uncollected: Money::ZERO,
                billed_seconds: rated.billed_seconds,
                overrun_seconds: duration_seconds.saturating_sub(self.grant.granted_seconds),
                late,
                threshold_reached: false,
                limit_reached: false,
            },
            late,
        }
    }

    /// Marks the hold posted with `posting` (what a duplicate replays).
    pub fn post(&mut self, duration_seconds: u32, posting: Posting) {
        self.state = HoldState::Posted {
            duration_seconds,
            posting,
        };
    }
}

/// When a hold granted `granted_seconds` at `authorized_at_ms` expires.
pub fn expiry(authorized_at_ms: i64, granted_seconds: u32, grace_ms: i64) -> i64 {
    authorized_at_ms + i64::from(granted_seconds) * 1000 + grace_ms
}

/// What a prepaid call's usage takes from its code (R17): the rated charge,
/// but never more than the code holds beside the other calls' holds, so that
/// a balance never goes negative and no other call's hold loses its cover.
/// The rest is `uncollected` (a call the IVR let run past its grant).
/// `free` is the balance less the pending holds of the code's other calls.
pub fn prepaid_debit(rated: Money, free: Money) -> (Money, Money) {
    let charge = rated.min(free.max(Money::ZERO));
    (charge, rated - charge)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold() -> Hold {
        let svc = E164::parse("0900-100 10 10").unwrap();
        let terms = Arc::new(crate::domain::Terms {
            terms_id: crate::domain::Terms::make_id(&svc, 1),
            service_number: svc.clone(),
            service_name: "Tarotlinjen".into(),
            version: 1,
            tariff: Tariff::new(Money::ore_unchecked(2990), 60, 0).unwrap(),
            reminder_fee: Money::ZERO,
            vat: VatRate::default(),
            created_at_ms: 0,
            announcements: Default::default(),
        });
        let service = Arc::new(Service {
            number: svc,
            merchant_id: MerchantId::parse("stjarnlinjen").unwrap(),
            name: "Tarotlinjen".into(),
            category: String::new(),
            active: true,
            terms: terms.clone(),
        });
        Hold::new(
            E164::parse("070-123 45 67").ok(),
            None,
            service,
            terms,
            "ivr-a".into(),
            Grant {
                granted_seconds: 900,
                hold: Money::ore_unchecked(44_850),
            },
            1_000_000,
            120_000,
        )
    }

    #[test]
    fn a_replay_after_the_end_says_the_call_is_over() {
        let mut h = hold();
        let svc = h.service_number().clone();
        assert!(matches!(
            h.replay(&svc, "ivr-a", 1_000_001),
            Replay::Answer(Decision::Allowed(_))
        ));
        assert!(matches!(h.replay(&svc, "ivr-b", 1_000_001), Replay::Reused));
        // Past its expiry (900 s + 120 s grace), even before a sweep.
        assert!(matches!(
            h.replay(&svc, "ivr-a", 1_000_000 + 1_020_000),
            Replay::Answer(Decision::Denied(DenyReason::CallEnded))
        ));
        h.void();
        assert!(matches!(
            h.replay(&svc, "ivr-a", 1_000_001),
            Replay::Answer(Decision::Denied(DenyReason::CallEnded))
        ));
    }

    #[test]
    fn every_earlier_extension_replays_its_answer() {
        let mut h = hold();
        let policy = GrantPolicy {
            quota_seconds: 900,
            max_call_seconds: 14_400,
        };
        assert_eq!(h.extend_step(0), ExtendStep::OutOfOrder { expected: 1 });
        assert_eq!(h.extend_step(2), ExtendStep::OutOfOrder { expected: 1 });
        assert_eq!(h.extend_step(1), ExtendStep::Fresh);
        let (first, delta) = h.extend(Money::sek(1000), None, &policy, 120_000, 1_000_001);
        // 900 s more at 29,90 kr/min: 1 800 s hold 897,00 kr, 448,50 kr more.
        assert_eq!(first.granted_seconds_total, 1800);
        assert_eq!(delta, Money::ore_unchecked(44_850));
        assert_eq!(h.extend_step(2), ExtendStep::Fresh);
        h.extend(Money::ZERO, None, &policy, 120_000, 1_000_002);
        // Sequence 1 again, after 2: the first answer, marked replayed.
        assert_eq!(
            h.extend_step(1),
            ExtendStep::Replay(ExtendResult {
                replayed: true,
                ..first
            })
        );
        assert_eq!(h.extend_step(4), ExtendStep::OutOfOrder { expected: 3 });
    }

    #[test]
    fn a_prepaid_debit_never_exceeds_what_the_code_holds() {
        let ore = Money::ore_unchecked;
        assert_eq!(prepaid_debit(ore(500), ore(2000)), (ore(500), ore(0)));
        assert_eq!(prepaid_debit(ore(2500), ore(2000)), (ore(2000), ore(500)));
        assert_eq!(prepaid_debit(ore(2500), ore(-100)), (ore(0), ore(2500)));
    }

    #[test]
    fn usage_reject_codes_round_trip() {
        for r in UsageReject::ALL {
            assert_eq!(UsageReject::from_code(r.code()), Some(r));
        }
        let mut codes: Vec<u8> = UsageReject::ALL.iter().map(|r| r.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), UsageReject::ALL.len());
    }
}
