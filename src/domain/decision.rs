//! The authorization decision, as pure functions over snapshots (DESIGN
//! invariant 5; STYLE "pure core").
//!
//! The order of the checks is part of the contract, because it decides what
//! the IVR hears first:
//!   1. who pays — a caller who cannot be invoiced needs a prepaid code (R2);
//!   2. blocks — the holder's own blocks also stop prepaid calls (R6); credit
//!      and overdue blocks stop postpaid calls only (R7);
//!   3. money — the free credit (or prepaid balance) must cover the least
//!      charge of a call (R8, R10), so that nobody is read terms for a call
//!      they cannot make;
//!   4. consent — both steps, for the terms version announced (R3);
//!   5. the grant — the seconds the money covers, at most one quota, at least
//!      the minimum charge's time (R10).
//!
//! These functions are what the embedded store runs under its per-number
//! lock. The Redis store runs the same rules inside its Functions (Lua), and
//! the shared store suite holds the two to the same behaviour.

use super::catalog::Terms;
use super::ids::TermsId;
use super::money::Money;
use super::rating::{max_seconds_within, rate, Tariff};

/// How a call is paid. Serialised with the `callauth.v1.Funding` names.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Funding {
    #[default]
    #[serde(rename = "FUNDING_POSTPAID")]
    Postpaid,
    #[serde(rename = "FUNDING_PREPAID")]
    Prepaid,
}

impl Funding {
    pub fn label(self) -> &'static str {
        match self {
            Funding::Postpaid => "postpaid",
            Funding::Prepaid => "prepaid",
        }
    }
}

/// The caller's two-step confirmation as received from the IVR (R3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consent {
    pub age_confirmed: bool,
    pub own_number_confirmed: bool,
    pub step1_at_ms: i64,
    pub terms_accepted: bool,
    pub step2_at_ms: i64,
    pub terms_id: Option<TermsId>,
}

/// What the number directory says about a number (R1, R2).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Directory {
    NotListed,
    /// Listed, but no holder can be invoiced (secret or unregistered number).
    Unregistered,
    Registered,
}

/// The parts of a number's account that one postpaid call depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountSnapshot {
    pub directory: Directory,
    /// The holder blocked all services, this call's merchant, or this service.
    pub holder_blocked: bool,
    pub credit_blocked: bool,
    pub overdue_blocked: bool,
    pub limit: Money,
    pub unbilled: Money,
    pub invoiced_unpaid: Money,
    pub pending: Money,
}

impl AccountSnapshot {
    /// Credit still free for new calls: limit − unbilled − invoiced-unpaid −
    /// pending holds (R8). Negative after a call overran its grant.
    pub fn available(&self) -> Money {
        self.limit - self.unbilled - self.invoiced_unpaid - self.pending
    }

    pub fn exposure(&self) -> Money {
        self.unbilled + self.invoiced_unpaid
    }
}

/// The calling line's state for a prepaid call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineSnapshot {
    pub locked_until_ms: i64,
    pub holder_blocked: bool,
}

/// A prepaid code's money.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeSnapshot {
    pub balance: Money,
    pub pending: Money,
}

impl CodeSnapshot {
    pub fn available(&self) -> Money {
        self.balance - self.pending
    }
}

/// Limits on grants, from configuration.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct GrantPolicy {
    /// Seconds granted per Authorize or Extend at most, so that concurrent calls
    /// from one number share the credit instead of the first taking it all.
    pub quota_seconds: u32,
    /// The longest a call may be granted in total.
    pub max_call_seconds: u32,
}

/// An allowed call's grant and the amount held for it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub granted_seconds: u32,
    pub hold: Money,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DenyReason {
    BlockedByHolder,
    BlockedCreditLimit,
    BlockedOverdue,
    InsufficientCredit,
    PrepaidCodeInvalid,
    PrepaidLockedOut,
    PrepaidBalanceInsufficient,
    ServiceSuspended,
    CallEnded,
    MaxCallDuration,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConsentReason {
    Missing,
    Incomplete,
    TermsChanged,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum PrepaidReason {
    NumberWithheld,
    NumberForeign,
    NotInDirectory,
    HolderNotRegistered,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed(Grant),
    Denied(DenyReason),
    ConsentRequired(ConsentReason),
    PrepaidCodeRequired(PrepaidReason),
}

/// Stable numeric reason codes: the same numbers as `callauth.v1.Reason`, and
/// what the Redis Functions return.
pub mod code {
    pub const GRANTED: u8 = 1;
    pub const CONSENT_MISSING: u8 = 10;
    pub const CONSENT_INCOMPLETE: u8 = 11;
    pub const TERMS_CHANGED: u8 = 12;
    pub const NUMBER_WITHHELD: u8 = 20;
    pub const NUMBER_FOREIGN: u8 = 21;
    pub const NUMBER_NOT_IN_DIRECTORY: u8 = 22;
    pub const HOLDER_NOT_REGISTERED: u8 = 23;
    pub const BLOCKED_BY_HOLDER: u8 = 30;
    pub const BLOCKED_CREDIT_LIMIT: u8 = 31;
    pub const BLOCKED_OVERDUE: u8 = 32;
    pub const INSUFFICIENT_CREDIT: u8 = 40;
    pub const PREPAID_CODE_INVALID: u8 = 50;
    pub const PREPAID_LOCKED_OUT: u8 = 51;
    pub const PREPAID_BALANCE_INSUFFICIENT: u8 = 52;
    pub const SERVICE_SUSPENDED: u8 = 60;
    pub const CALL_ENDED: u8 = 61;
    pub const MAX_CALL_DURATION: u8 = 62;

    /// Every code with its name (the Redis Functions' constants are generated from this).
    pub const ALL: [(&str, u8); 18] = [
        ("GRANTED", GRANTED),
        ("CONSENT_MISSING", CONSENT_MISSING),
        ("CONSENT_INCOMPLETE", CONSENT_INCOMPLETE),
        ("TERMS_CHANGED", TERMS_CHANGED),
        ("NUMBER_WITHHELD", NUMBER_WITHHELD),
        ("NUMBER_FOREIGN", NUMBER_FOREIGN),
        ("NUMBER_NOT_IN_DIRECTORY", NUMBER_NOT_IN_DIRECTORY),
        ("HOLDER_NOT_REGISTERED", HOLDER_NOT_REGISTERED),
        ("BLOCKED_BY_HOLDER", BLOCKED_BY_HOLDER),
        ("BLOCKED_CREDIT_LIMIT", BLOCKED_CREDIT_LIMIT),
        ("BLOCKED_OVERDUE", BLOCKED_OVERDUE),
        ("INSUFFICIENT_CREDIT", INSUFFICIENT_CREDIT),
        ("PREPAID_CODE_INVALID", PREPAID_CODE_INVALID),
        ("PREPAID_LOCKED_OUT", PREPAID_LOCKED_OUT),
        ("PREPAID_BALANCE_INSUFFICIENT", PREPAID_BALANCE_INSUFFICIENT),
        ("SERVICE_SUSPENDED", SERVICE_SUSPENDED),
        ("CALL_ENDED", CALL_ENDED),
        ("MAX_CALL_DURATION", MAX_CALL_DURATION),
    ];
}

impl Decision {
    pub fn reason_code(&self) -> u8 {
        use code::*;
        match self {
            Decision::Allowed(_) => GRANTED,
            Decision::Denied(r) => r.code(),
            Decision::ConsentRequired(ConsentReason::Missing) => CONSENT_MISSING,
            Decision::ConsentRequired(ConsentReason::Incomplete) => CONSENT_INCOMPLETE,
            Decision::ConsentRequired(ConsentReason::TermsChanged) => TERMS_CHANGED,
            Decision::PrepaidCodeRequired(PrepaidReason::NumberWithheld) => NUMBER_WITHHELD,
            Decision::PrepaidCodeRequired(PrepaidReason::NumberForeign) => NUMBER_FOREIGN,
            Decision::PrepaidCodeRequired(PrepaidReason::NotInDirectory) => NUMBER_NOT_IN_DIRECTORY,
            Decision::PrepaidCodeRequired(PrepaidReason::HolderNotRegistered) => {
                HOLDER_NOT_REGISTERED
            }
        }
    }

    /// Rebuilds a refusal from its reason code (as returned by a Redis Function).
    pub fn refusal_from_code(c: u8) -> Option<Decision> {
        use code::*;
        Some(match c {
            CONSENT_MISSING => Decision::ConsentRequired(ConsentReason::Missing),
            CONSENT_INCOMPLETE => Decision::ConsentRequired(ConsentReason::Incomplete),
            TERMS_CHANGED => Decision::ConsentRequired(ConsentReason::TermsChanged),
            NUMBER_WITHHELD => Decision::PrepaidCodeRequired(PrepaidReason::NumberWithheld),
            NUMBER_FOREIGN => Decision::PrepaidCodeRequired(PrepaidReason::NumberForeign),
            NUMBER_NOT_IN_DIRECTORY => Decision::PrepaidCodeRequired(PrepaidReason::NotInDirectory),
            HOLDER_NOT_REGISTERED => {
                Decision::PrepaidCodeRequired(PrepaidReason::HolderNotRegistered)
            }
            other => Decision::Denied(DenyReason::from_code(other)?),
        })
    }

    /// Decision kind for metrics labels and logs.
    pub fn kind_label(&self) -> &'static str {
        match self {
            Decision::Allowed(_) => "allowed",
            Decision::Denied(_) => "denied",
            Decision::ConsentRequired(_) => "consent_required",
            Decision::PrepaidCodeRequired(_) => "prepaid_code_required",
        }
    }

    /// Reason for metrics labels and logs (snake case, bounded set).
    pub fn reason_label(&self) -> &'static str {
        match self {
            Decision::Allowed(_) => "granted",
            Decision::Denied(r) => r.label(),
            Decision::ConsentRequired(ConsentReason::Missing) => "consent_missing",
            Decision::ConsentRequired(ConsentReason::Incomplete) => "consent_incomplete",
            Decision::ConsentRequired(ConsentReason::TermsChanged) => "terms_changed",
            Decision::PrepaidCodeRequired(PrepaidReason::NumberWithheld) => "number_withheld",
            Decision::PrepaidCodeRequired(PrepaidReason::NumberForeign) => "number_foreign",
            Decision::PrepaidCodeRequired(PrepaidReason::NotInDirectory) => {
                "number_not_in_directory"
            }
            Decision::PrepaidCodeRequired(PrepaidReason::HolderNotRegistered) => {
                "holder_not_registered"
            }
        }
    }
}

impl DenyReason {
    pub const ALL: [DenyReason; 10] = [
        DenyReason::BlockedByHolder,
        DenyReason::BlockedCreditLimit,
        DenyReason::BlockedOverdue,
        DenyReason::InsufficientCredit,
        DenyReason::PrepaidCodeInvalid,
        DenyReason::PrepaidLockedOut,
        DenyReason::PrepaidBalanceInsufficient,
        DenyReason::ServiceSuspended,
        DenyReason::CallEnded,
        DenyReason::MaxCallDuration,
    ];

    pub fn code(self) -> u8 {
        use code::*;
        match self {
            DenyReason::BlockedByHolder => BLOCKED_BY_HOLDER,
            DenyReason::BlockedCreditLimit => BLOCKED_CREDIT_LIMIT,
            DenyReason::BlockedOverdue => BLOCKED_OVERDUE,
            DenyReason::InsufficientCredit => INSUFFICIENT_CREDIT,
            DenyReason::PrepaidCodeInvalid => PREPAID_CODE_INVALID,
            DenyReason::PrepaidLockedOut => PREPAID_LOCKED_OUT,
            DenyReason::PrepaidBalanceInsufficient => PREPAID_BALANCE_INSUFFICIENT,
            DenyReason::ServiceSuspended => SERVICE_SUSPENDED,
            DenyReason::CallEnded => CALL_ENDED,
            DenyReason::MaxCallDuration => MAX_CALL_DURATION,
        }
    }

    pub fn from_code(c: u8) -> Option<DenyReason> {
        use code::*;
        Some(match c {
            BLOCKED_BY_HOLDER => DenyReason::BlockedByHolder,
            BLOCKED_CREDIT_LIMIT => DenyReason::BlockedCreditLimit,
            BLOCKED_OVERDUE => DenyReason::BlockedOverdue,
            INSUFFICIENT_CREDIT => DenyReason::InsufficientCredit,
            PREPAID_CODE_INVALID => DenyReason::PrepaidCodeInvalid,
            PREPAID_LOCKED_OUT => DenyReason::PrepaidLockedOut,
            PREPAID_BALANCE_INSUFFICIENT => DenyReason::PrepaidBalanceInsufficient,
            SERVICE_SUSPENDED => DenyReason::ServiceSuspended,
            CALL_ENDED => DenyReason::CallEnded,
            MAX_CALL_DURATION => DenyReason::MaxCallDuration,
            _ => return None,
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            DenyReason::BlockedByHolder => "blocked_by_holder",
            DenyReason::BlockedCreditLimit => "blocked_credit_limit",
            DenyReason::BlockedOverdue => "blocked_overdue",
            DenyReason::InsufficientCredit => "insufficient_credit",
            DenyReason::PrepaidCodeInvalid => "prepaid_code_invalid",
            DenyReason::PrepaidLockedOut => "prepaid_locked_out",
            DenyReason::PrepaidBalanceInsufficient => "prepaid_balance_insufficient",
            DenyReason::ServiceSuspended => "service_suspended",
            DenyReason::CallEnded => "call_ended",
            DenyReason::MaxCallDuration => "max_call_duration",
        }
    }
}

/// Checks the caller's confirmations against the terms (R3). Postpaid needs
/// age, own number and terms; prepaid needs age and terms only.
pub fn check_consent(
    consent: Option<&Consent>,
    terms: &Terms,
    funding: Funding,
) -> Result<(), ConsentReason> {
    let Some(c) = consent else {
        return Err(ConsentReason::Missing);
    };
    let step1 = c.age_confirmed && (funding == Funding::Prepaid || c.own_number_confirmed);
    let step2 = c.terms_accepted;
    if !c.age_confirmed && !c.own_number_confirmed && !c.terms_accepted {
        return Err(ConsentReason::Missing);
    }
    if c.terms_id.as_ref() != Some(&terms.terms_id) {
        return Err(ConsentReason::TermsChanged);
    }
    if !(step1 && step2) {
        return Err(ConsentReason::Incomplete);
    }
    Ok(())
}

/// The grant for a call whose money (credit or balance) is `available`:
/// the covered seconds, at most one quota (but at least the minimum charge's
/// time) and the maximum call length. `None` when the least charge is not covered.
pub fn grant_for(tariff: &Tariff, available: Money, policy: &GrantPolicy) -> Option<Grant> {
    let cap = policy
        .quota_seconds
        .max(tariff.minimum_minutes * 60)
        .min(policy.max_call_seconds);
    let seconds = max_seconds_within(tariff, available, cap);
    (seconds > 0).then(|| Grant {
        granted_seconds: seconds,
        hold: rate(tariff, seconds).charge,
    })
}

/// The decision for a postpaid call (R2, R3, R6–R10).
pub fn decide_postpaid(
    account: &AccountSnapshot,
    terms: &Terms,
    consent: Option<&Consent>,
    policy: &GrantPolicy,
) -> Decision {
    match account.directory {
        Directory::NotListed => {
            return Decision::PrepaidCodeRequired(PrepaidReason::NotInDirectory)
        }
        Directory::Unregistered => {
            return Decision::PrepaidCodeRequired(PrepaidReason::HolderNotRegistered)
        }
        Directory::Registered => {}
    }
    if account.holder_blocked {
        return Decision::Denied(DenyReason::BlockedByHolder);
    }
    if account.overdue_blocked {
        return Decision::Denied(DenyReason::BlockedOverdue);
    }
    if account.credit_blocked {
        return Decision::Denied(DenyReason::BlockedCreditLimit);
    }
    let available = account.available();
    if available < terms.tariff.least_charge() {
        return Decision::Denied(DenyReason::InsufficientCredit);
    }
    if let Err(reason) = check_consent(consent, terms, Funding::Postpaid) {
        return Decision::ConsentRequired(reason);
    }
    match grant_for(&terms.tariff, available, policy) {
        Some(g) => Decision::Allowed(g),
        None => Decision::Denied(DenyReason::InsufficientCredit),
    }
}

/// The calling line's part of a prepaid decision: `Some(refusal)` stops the call.
pub fn decide_prepaid_line(line: &LineSnapshot, now_ms: i64) -> Option<Decision> {
    if line.locked_until_ms > now_ms {
        return Some(Decision::Denied(DenyReason::PrepaidLockedOut));
    }
    if line.holder_blocked {
        return Some(Decision::Denied(DenyReason::BlockedByHolder));
    }
    None
}

/// The code's part of a prepaid decision (R17); `None` is an unknown code.
pub fn decide_prepaid_code(
    code: Option<&CodeSnapshot>,
    terms: &Terms,
    consent: Option<&Consent>,
    policy: &GrantPolicy,
) -> Decision {
    let Some(code) = code else {
        return Decision::Denied(DenyReason::PrepaidCodeInvalid);
    };
    let available = code.available();
    if available < terms.tariff.least_charge() {
        return Decision::Denied(DenyReason::PrepaidBalanceInsufficient);
    }
    if let Err(reason) = check_consent(consent, terms, Funding::Prepaid) {
        return Decision::ConsentRequired(reason);
    }
    match grant_for(&terms.tariff, available, policy) {
        Some(g) => Decision::Allowed(g),
        None => Decision::Denied(DenyReason::PrepaidBalanceInsufficient),
    }
}

/// The outcome of asking to extend a call's grant.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Extension {
    /// The grant grew to `granted_seconds` in total; the hold is now `hold`.
    Extended(Grant),
    Refused(DenyReason),
}

/// Grows a pending call's grant by up to one quota (R10). `available` is the
/// money free beside this call's hold (the account's or the code's available);
/// `refusal` is a block that stops the call from growing.
pub fn decide_extend(
    tariff: &Tariff,
    current: Grant,
    available: Money,
    refusal: Option<DenyReason>,
    policy: &GrantPolicy,
) -> Extension {
    if let Some(r) = refusal {
        return Extension::Refused(r);
    }
    if current.granted_seconds >= policy.max_call_seconds {
        return Extension::Refused(DenyReason::MaxCallDuration);
    }
    let cap = current
        .granted_seconds
        .saturating_add(policy.quota_seconds)
        .min(policy.max_call_seconds);
    let budget = current.hold + available.max(Money::ZERO);
    let seconds = max_seconds_within(tariff, budget, cap);
    if seconds <= current.granted_seconds {
        return Extension::Refused(DenyReason::InsufficientCredit);
    }
    Extension::Extended(Grant {
        granted_seconds: seconds,
        hold: rate(tariff, seconds).charge.max(current.hold),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_deny_reason_is_listed_once_and_round_trips() {
        let mut codes: Vec<u8> = DenyReason::ALL.iter().map(|r| r.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), DenyReason::ALL.len());
        for r in DenyReason::ALL {
            assert_eq!(DenyReason::from_code(r.code()), Some(r));
        }
        // Every code the wire knows for a denial is in ALL.
        let known = (0..=u8::MAX).filter_map(DenyReason::from_code).count();
        assert_eq!(known, DenyReason::ALL.len());
    }

    use super::*;
    use crate::domain::number::E164;
    use proptest::prelude::*;

    fn terms(price_ore: i64, min: u32) -> Terms {
        let number = E164::parse("0900-123 45 67").unwrap();
        Terms {
            terms_id: Terms::make_id(&number, 1),
            service_number: number,
            service_name: "Tarot".into(),
            version: 1,
            tariff: Tariff::new(Money::ore_unchecked(price_ore), 60, min).unwrap(),
            reminder_fee: Money::sek(60),
            vat: crate::domain::VatRate::STANDARD,
            created_at_ms: 0,
            announcements: Default::default(),
        }
    }

    fn account(limit_sek: i64) -> AccountSnapshot {
        AccountSnapshot {
            directory: Directory::Registered,
            holder_blocked: false,
            credit_blocked: false,
            overdue_blocked: false,
            limit: Money::sek(limit_sek),
            unbilled: Money::ZERO,
            invoiced_unpaid: Money::ZERO,
            pending: Money::ZERO,
        }
    }

    fn consent(t: &Terms) -> Consent {
        Consent {
            age_confirmed: true,
            own_number_confirmed: true,
            step1_at_ms: 1,
            terms_accepted: true,
            step2_at_ms: 2,
            terms_id: Some(t.terms_id.clone()),
        }
    }

    const POLICY: GrantPolicy = GrantPolicy {
        quota_seconds: 900,
        max_call_seconds: 14_400,
    };

    #[test]
    fn first_time_caller_is_asked_for_consent_then_allowed() {
        let t = terms(2990, 0);
        let a = account(1500);
        assert_eq!(
            decide_postpaid(&a, &t, None, &POLICY),
            Decision::ConsentRequired(ConsentReason::Missing)
        );
        let d = decide_postpaid(&a, &t, Some(&consent(&t)), &POLICY);
        // 1 500 SEK covers 50 minutes at 29.90; one quota is 15 minutes.
        assert_eq!(
            d,
            Decision::Allowed(Grant {
                granted_seconds: 900,
                hold: Money::ore_unchecked(15 * 2990)
            })
        );
    }

    #[test]
    fn consent_rules() {
        let t = terms(2990, 0);
        let mut c = consent(&t);
        c.own_number_confirmed = false;
        assert_eq!(
            check_consent(Some(&c), &t, Funding::Postpaid),
            Err(ConsentReason::Incomplete)
        );
        // Prepaid: step 1 is the age only.
        assert_eq!(check_consent(Some(&c), &t, Funding::Prepaid), Ok(()));
        c.terms_accepted = false;
        assert_eq!(
            check_consent(Some(&c), &t, Funding::Prepaid),
            Err(ConsentReason::Incomplete)
        );
        let mut stale = consent(&t);
        stale.terms_id = Some(TermsId::parse("t-469001234567-0").unwrap());
        assert_eq!(
            check_consent(Some(&stale), &t, Funding::Postpaid),
            Err(ConsentReason::TermsChanged)
        );
        let none = Consent {
            age_confirmed: false,
            own_number_confirmed: false,
            step1_at_ms: 0,
            terms_accepted: false,
            step2_at_ms: 0,
            terms_id: None,
        };
        assert_eq!(
            check_consent(Some(&none), &t, Funding::Postpaid),
            Err(ConsentReason::Missing)
        );
    }

    #[test]
    fn refusals_come_before_consent() {
        let t = terms(2990, 0);
        let mut a = account(1500);
        a.directory = Directory::NotListed;
        assert_eq!(
            decide_postpaid(&a, &t, None, &POLICY),
            Decision::PrepaidCodeRequired(PrepaidReason::NotInDirectory)
        );
        a.directory = Directory::Unregistered;
        assert_eq!(
            decide_postpaid(&a, &t, None, &POLICY),
            Decision::PrepaidCodeRequired(PrepaidReason::HolderNotRegistered)
        );
        let mut a = account(1500);
        a.holder_blocked = true;
        a.credit_blocked = true;
        assert_eq!(
            decide_postpaid(&a, &t, None, &POLICY),
            Decision::Denied(DenyReason::BlockedByHolder)
        );
        a.holder_blocked = false;
        assert_eq!(
            decide_postpaid(&a, &t, None, &POLICY),
            Decision::Denied(DenyReason::BlockedCreditLimit)
        );
        let mut a = account(1500);
        a.unbilled = Money::ore_unchecked(150_000 - 2989);
        assert_eq!(
            decide_postpaid(&a, &t, Some(&consent(&t)), &POLICY),
            Decision::Denied(DenyReason::InsufficientCredit)
        );
    }

    #[test]
    fn minimum_charge_must_be_covered_and_granted() {
        // 30 SEK/min with a 10 minute minimum: 300 SEK needed.
        let t = terms(3000, 10);
        let mut a = account(1500);
        a.unbilled = Money::sek(1201);
        assert_eq!(
            decide_postpaid(&a, &t, Some(&consent(&t)), &POLICY),
            Decision::Denied(DenyReason::InsufficientCredit)
        );
        a.unbilled = Money::sek(1200);
        assert_eq!(
            decide_postpaid(&a, &t, Some(&consent(&t)), &POLICY),
            Decision::Allowed(Grant {
                granted_seconds: 600,
                hold: Money::sek(300)
            })
        );
        // A quota shorter than the minimum still grants the minimum's time.
        let short = GrantPolicy {
            quota_seconds: 60,
            max_call_seconds: 14_400,
        };
        let a = account(1500);
        assert_eq!(
            decide_postpaid(&a, &t, Some(&consent(&t)), &short),
            Decision::Allowed(Grant {
                granted_seconds: 600,
                hold: Money::sek(300)
            })
        );
    }

    #[test]
    fn prepaid_rules() {
        let t = terms(2990, 0);
        let line = LineSnapshot {
            locked_until_ms: 100,
            holder_blocked: true,
        };
        assert_eq!(
            decide_prepaid_line(&line, 99),
            Some(Decision::Denied(DenyReason::PrepaidLockedOut))
        );
        assert_eq!(
            decide_prepaid_line(&line, 100),
            Some(Decision::Denied(DenyReason::BlockedByHolder))
        );
        assert_eq!(
            decide_prepaid_code(None, &t, None, &POLICY),
            Decision::Denied(DenyReason::PrepaidCodeInvalid)
        );
        let code = CodeSnapshot {
            balance: Money::sek(100),
            pending: Money::ZERO,
        };
        assert_eq!(
            decide_prepaid_code(Some(&code), &t, None, &POLICY),
            Decision::ConsentRequired(ConsentReason::Missing)
        );
        let mut c = consent(&t);
        c.own_number_confirmed = false;
        assert_eq!(
            decide_prepaid_code(Some(&code), &t, Some(&c), &POLICY),
            Decision::Allowed(Grant {
                granted_seconds: 180,
                hold: Money::ore_unchecked(3 * 2990)
            })
        );
        let poor = CodeSnapshot {
            balance: Money::sek(10),
            pending: Money::ZERO,
        };
        assert_eq!(
            decide_prepaid_code(Some(&poor), &t, Some(&c), &POLICY),
            Decision::Denied(DenyReason::PrepaidBalanceInsufficient)
        );
    }

    #[test]
    fn extension_grows_by_quota_while_credit_allows() {
        let t = terms(1000, 0);
        let g = Grant {
            granted_seconds: 900,
            hold: Money::sek(150),
        };
        assert_eq!(
            decide_extend(&t.tariff, g, Money::sek(1000), None, &POLICY),
            Extension::Extended(Grant {
                granted_seconds: 1800,
                hold: Money::sek(300)
            })
        );
        // Only 5 more minutes of credit.
        assert_eq!(
            decide_extend(&t.tariff, g, Money::sek(50), None, &POLICY),
            Extension::Extended(Grant {
                granted_seconds: 1200,
                hold: Money::sek(200)
            })
        );
        assert_eq!(
            decide_extend(&t.tariff, g, Money::ore_unchecked(999), None, &POLICY),
            Extension::Refused(DenyReason::InsufficientCredit)
        );
        assert_eq!(
            decide_extend(
                &t.tariff,
                g,
                Money::sek(50),
                Some(DenyReason::BlockedByHolder),
                &POLICY
            ),
            Extension::Refused(DenyReason::BlockedByHolder)
        );
        let long = Grant {
            granted_seconds: 14_400,
            hold: Money::sek(2400),
        };
        assert_eq!(
            decide_extend(&t.tariff, long, Money::sek(5000), None, &POLICY),
            Extension::Refused(DenyReason::MaxCallDuration)
        );
    }

    #[test]
    fn reason_codes_round_trip() {
        for c in 0u8..=70 {
            if let Some(d) = Decision::refusal_from_code(c) {
                assert_eq!(d.reason_code(), c);
            }
        }
    }

    proptest! {
        /// A grant never exceeds the free credit (R10, DESIGN invariant 3).
        #[test]
        fn grant_never_exceeds_available(
            price in 0i64..=50_000, min in 0u32..=10,
            limit in 0i64..=1_000_000, used in 0i64..=1_200_000, pending in 0i64..=500_000,
            quota in 1u32..=3600,
        ) {
            let t = terms(price, min);
            let mut a = account(0);
            a.limit = Money::ore_unchecked(limit);
            a.unbilled = Money::ore_unchecked(used);
            a.pending = Money::ore_unchecked(pending);
            let policy = GrantPolicy { quota_seconds: quota, max_call_seconds: 14_400 };
            if let Decision::Allowed(g) = decide_postpaid(&a, &t, Some(&consent(&t)), &policy) {
                prop_assert!(g.hold <= a.available());
                prop_assert!(g.hold >= t.tariff.least_charge());
                prop_assert_eq!(g.hold, rate(&t.tariff, g.granted_seconds).charge);
            }
        }

        /// An extension never takes more than the free credit beside the hold.
        #[test]
        fn extension_never_exceeds_available(
            price in 1i64..=50_000, granted in 1u32..=3600, avail in -100_000i64..=1_000_000,
        ) {
            let t = terms(price, 0);
            let g = Grant { granted_seconds: granted, hold: rate(&t.tariff, granted).charge };
            if let Extension::Extended(n) = decide_extend(&t.tariff, g, Money::ore_unchecked(avail), None, &POLICY) {
                prop_assert!(n.granted_seconds > g.granted_seconds);
                prop_assert!(n.hold - g.hold <= Money::ore_unchecked(avail).max(Money::ZERO));
            }
        }
    }
}
