//! Conversions between generated protobuf types and domain types (STYLE
//! "types at the edge"). Proto3 defaults (empty string, 0, absent message)
//! are handled explicitly here, and every malformed field is reported by
//! name as `INVALID_ARGUMENT`.
//!
//! Every string field is checked here before anything else sees it (issue
//! 10): identifiers by their grammar (`CallId`, `MerchantId`, `TermsId`,
//! `Reference`, E.164 numbers, prepaid codes), free text by the one rule of
//! [`crate::domain::text`] — a documented maximum length and no control
//! characters — because free text ends up in events that PostgreSQL stores as
//! `jsonb`, which refuses NUL: a NUL in `ivr_id` once cost the consent
//! evidence of a billed call. The limits are the constants below and the
//! table in `docs/api.md`. Consent timestamps are checked against the
//! receive time ([`consent_time`]). Errors name the field, never its value.

use prost_types::Timestamp;
use tonic::Status;

use crate::domain::account::{BlockKind, LimitChange, LimitSource};
use crate::domain::catalog::{
    Merchant, Service, ServiceSpec, Terms, MAX_CATEGORY_CHARS, MAX_MERCHANT_NAME_CHARS,
    MAX_SERVICE_NAME_CHARS,
};
use crate::domain::decision::{Consent, Decision, Funding};
use crate::domain::text::{self, TextError};
use crate::domain::{CallId, MerchantId, Money, Reference, Tariff, TermsId, VatRate, E164};
use crate::gateway::{AuthorizeInput, AuthorizeOutput, Caller, GatewayLimits, UsageInput};
use crate::pb;
use crate::store::{
    AccountView, BlockChange, Evidence, ExtendOutcome, ExtendResult, PrepaidView, ReleaseOutcome,
    UsageOutcome, UsageReject,
};

/// The IVR node handling a call (free text, kept with the consent evidence).
pub const MAX_IVR_ID_CHARS: usize = 128;
/// The incoming line (free text; with a withheld number, the lockout key of R17).
pub const MAX_LINE_REF_CHARS: usize = 128;
/// Who asked for a block and how (free text, required, kept in the event).
pub const MAX_BLOCK_REASON_CHARS: usize = 500;
/// A credit check's reference (free text, required) and who decided (free text).
pub const MAX_CREDIT_REFERENCE_CHARS: usize = 128;
pub const MAX_DECIDED_BY_CHARS: usize = 128;
/// A phone number as written: "+46 (0)70-123 45 67" is 19 characters.
pub const MAX_NUMBER_CHARS: usize = 32;
/// A prepaid code as typed: 16 digits, perhaps grouped by spaces or dashes.
pub const MAX_PREPAID_CODE_CHARS: usize = 32;

fn invalid(field: &str, e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {e}"))
}

/// `INVALID_ARGUMENT` for a text rule; the message names the field only.
pub fn text_status(e: TextError) -> Status {
    crate::status::to_status(e)
}

pub fn number(field: &'static str, s: &str) -> Result<E164, Status> {
    text::checked_text(field, s, MAX_NUMBER_CHARS).map_err(text_status)?;
    E164::parse(s).map_err(|e| Status::invalid_argument(format!("{field} {e}")))
}

/// A prepaid code as typed: bounded and printable here; its digits and check
/// digit are checked by the gateway (a mistyped code counts against the line).
pub fn prepaid_code<'a>(field: &'static str, s: &'a str) -> Result<&'a str, Status> {
    text::checked_text(field, s, MAX_PREPAID_CODE_CHARS).map_err(text_status)
}

pub fn money(field: &str, ore: i64) -> Result<Money, Status> {
    Money::from_ore(ore).map_err(|e| invalid(field, e))
}

pub fn reference(field: &str, s: &str) -> Result<Reference, Status> {
    Reference::parse(s).map_err(|e| invalid(field, e))
}

pub fn ms_to_timestamp(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Milliseconds since the epoch, saturating: for timestamps the gateway made
/// or that were checked with [`checked_timestamp_ms`].
pub fn timestamp_to_ms(t: &Timestamp) -> i64 {
    t.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(t.nanos) / 1_000_000)
}

/// Milliseconds since the epoch of a client's timestamp, or `None` when it is
/// not a valid `google.protobuf.Timestamp` (nanos outside 0..1e9) or does not
/// fit in milliseconds.
pub fn checked_timestamp_ms(t: &Timestamp) -> Option<i64> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return None;
    }
    t.seconds
        .checked_mul(1000)?
        .checked_add(i64::from(t.nanos) / 1_000_000)
}

/// The consent step times as evidence (R3): when the caller pressed the key,
/// by the IVR's clock. An absent step takes the receive time — an absent
/// step 1 at most step 2's time, an absent step 2 at least step 1's, so that
/// an IVR reporting one step only is not refused for the order of a time it
/// did not send. They must be valid timestamps, in order (step 1 ≤ step 2),
/// not ahead of the receive time by more than the clock skew allowed, and
/// step 1 not older than the consent window: anything else is not evidence of
/// this call.
pub fn consent_time(
    step1: Option<&Timestamp>,
    step2: Option<&Timestamp>,
    now_ms: i64,
    limits: &GatewayLimits,
) -> Result<(i64, i64), Status> {
    let read = |field: &str, t: &Timestamp| {
        checked_timestamp_ms(t)
            .ok_or_else(|| Status::invalid_argument(format!("{field} is not a valid timestamp")))
    };
    let given1 = step1.map(|t| read("consent.step1_at", t)).transpose()?;
    let given2 = step2.map(|t| read("consent.step2_at", t)).transpose()?;
    let (step1_ms, step2_ms) = match (given1, given2) {
        (Some(s1), Some(s2)) => (s1, s2),
        (Some(s1), None) => (s1, now_ms.max(s1)),
        (None, Some(s2)) => (now_ms.min(s2), s2),
        (None, None) => (now_ms, now_ms),
    };
    if step1_ms > step2_ms {
        return Err(Status::invalid_argument(
            "consent.step1_at is after consent.step2_at: step 1 is confirmed first",
        ));
    }
    if step2_ms > now_ms.saturating_add(limits.consent_future_skew_ms) {
        return Err(Status::invalid_argument(format!(
            "consent.step2_at is more than {} ms ahead of the gateway's clock",
            limits.consent_future_skew_ms
        )));
    }
    if step1_ms < now_ms.saturating_sub(limits.consent_max_age_ms) {
        return Err(Status::invalid_argument(format!(
            "consent.step1_at is more than {} s before the request: ask for consent again",
            limits.consent_max_age_ms / 1000
        )));
    }
    Ok((step1_ms, step2_ms))
}

/// An Authorize request as the gateway needs it. `ivr_client` is the
/// authenticated client; `now_ms` (the receive time) stands in for missing
/// consent timestamps and bounds the given ones.
pub fn authorize_input(
    r: pb::AuthorizeRequest,
    ivr_client: impl Into<String>,
    now_ms: i64,
    limits: &GatewayLimits,
) -> Result<AuthorizeInput, Status> {
    let call_id = CallId::parse(&r.call_id).map_err(|e| invalid("call_id", e))?;
    text::checked_text("ivr_id", &r.ivr_id, MAX_IVR_ID_CHARS).map_err(text_status)?;
    text::checked_text("line_ref", &r.line_ref, MAX_LINE_REF_CHARS).map_err(text_status)?;
    prepaid_code("prepaid_code", &r.prepaid_code)?;
    let caller = match (r.number_withheld, r.a_number.trim().is_empty()) {
        (true, true) => Caller::Withheld,
        (true, false) => {
            return Err(Status::invalid_argument(
                "a_number must be empty when number_withheld is true",
            ))
        }
        (false, true) => {
            return Err(Status::invalid_argument(
                "a_number is required unless number_withheld is true",
            ))
        }
        (false, false) => Caller::Number(number("a_number", &r.a_number)?),
    };
    let service_number = number("service_number", &r.service_number)?;
    let consent = r
        .consent
        .map(|c| -> Result<Consent, Status> {
            let terms_id = if c.terms_id.is_empty() {
                None
            } else {
                Some(TermsId::parse(&c.terms_id).map_err(|e| invalid("consent.terms_id", e))?)
            };
            let (step1_at_ms, step2_at_ms) =
                consent_time(c.step1_at.as_ref(), c.step2_at.as_ref(), now_ms, limits)?;
            Ok(Consent {
                age_confirmed: c.age_confirmed,
                own_number_confirmed: c.own_number_confirmed,
                step1_at_ms,
                terms_accepted: c.terms_accepted,
                step2_at_ms,
                terms_id,
            })
        })
        .transpose()?;
    let prepaid_code =
        (!r.prepaid_code.trim().is_empty()).then(|| r.prepaid_code.trim().to_string());
    Ok(AuthorizeInput {
        evidence: Evidence {
            ivr_client: ivr_client.into(),
            ivr_id: r.ivr_id,
            line_ref: r.line_ref,
            number_withheld: matches!(caller, Caller::Withheld),
        },
        call_id,
        caller,
        service_number,
        prepaid_code,
        consent,
    })
}

pub fn funding(f: Funding) -> pb::Funding {
    match f {
        Funding::Postpaid => pb::Funding::Postpaid,
        Funding::Prepaid => pb::Funding::Prepaid,
    }
}

pub fn terms(t: &Terms, prepaid: bool) -> pb::Terms {
    pb::Terms {
        terms_id: t.terms_id.to_string(),
        service_number: t.service_number.as_str().to_string(),
        service_name: t.service_name.clone(),
        price_per_minute_ore: t.tariff.price_per_minute.ore(),
        minimum_minutes: t.tariff.minimum_minutes,
        minimum_charge_ore: t.tariff.minimum_charge().ore(),
        billing_step_seconds: t.tariff.billing_step_seconds,
        separate_invoice: !prepaid,
        reminder_fee_ore: t.reminder_fee.ore(),
        announcement_sv: t.announcement_sv(prepaid).to_string(),
        own_number_confirmation_required: !prepaid,
        vat_rate_percent: t.vat.percent(),
    }
}

fn decision_kind(d: &Decision) -> pb::Decision {
    match d {
        Decision::Allowed(_) => pb::Decision::Allowed,
        Decision::Denied(_) => pb::Decision::Denied,
        Decision::ConsentRequired(_) => pb::Decision::ConsentRequired,
        Decision::PrepaidCodeRequired(_) => pb::Decision::PrepaidCodeRequired,
    }
}

pub fn reason(code: u8) -> i32 {
    i32::from(code)
}

pub fn authorize_response(out: &AuthorizeOutput) -> pb::AuthorizeResponse {
    let (granted, hold) = match out.decision {
        Decision::Allowed(g) => (g.granted_seconds, g.hold.ore()),
        _ => (0, 0),
    };
    pb::AuthorizeResponse {
        decision: decision_kind(&out.decision) as i32,
        reason: reason(out.decision.reason_code()),
        granted_seconds: granted,
        terms: Some(terms(&out.terms, out.funding == Funding::Prepaid)),
        funding: funding(out.funding) as i32,
        hold_ore: hold,
        replayed: out.replayed,
        hold_expires_at: matches!(out.decision, Decision::Allowed(_))
            .then(|| ms_to_timestamp(out.hold_expires_at_ms)),
    }
}

pub fn extend_response(r: &ExtendResult) -> pb::ExtendResponse {
    let (decision, reason_code) = match r.outcome {
        ExtendOutcome::Extended => (
            pb::Decision::Allowed,
            crate::domain::decision::code::GRANTED,
        ),
        ExtendOutcome::Refused(d) => (pb::Decision::Denied, d.code()),
    };
    pb::ExtendResponse {
        decision: decision as i32,
        reason: reason(reason_code),
        granted_seconds_total: r.granted_seconds_total,
        added_seconds: r.added_seconds,
        hold_ore: r.hold.ore(),
        replayed: r.replayed,
        hold_expires_at: Some(ms_to_timestamp(r.hold_expires_at_ms)),
    }
}

pub fn release_response(r: ReleaseOutcome) -> pb::ReleaseResponse {
    let (outcome, released) = match r {
        ReleaseOutcome::Voided(m) => (pb::ReleaseOutcome::Voided, m.ore()),
        ReleaseOutcome::AlreadyVoided => (pb::ReleaseOutcome::AlreadyVoided, 0),
        ReleaseOutcome::AlreadyPosted => (pb::ReleaseOutcome::AlreadyPosted, 0),
        ReleaseOutcome::AlreadyExpired => (pb::ReleaseOutcome::AlreadyExpired, 0),
        ReleaseOutcome::UnknownCall => (pb::ReleaseOutcome::UnknownCall, 0),
    };
    pb::ReleaseResponse {
        outcome: outcome as i32,
        released_ore: released,
    }
}

/// A usage record as received; the gateway validates it (so that the stream
/// and the unary RPC answer the same, with a rejection rather than an error).
pub fn usage_input(r: &pb::UsageRecord) -> UsageInput {
    use crate::gateway::UsageStart;
    UsageInput {
        record_id: r.record_id.clone(),
        call_id: r.call_id.clone(),
        service_number: r.service_number.clone(),
        started_at: match &r.started_at {
            None => UsageStart::Missing,
            Some(t) => checked_timestamp_ms(t).map_or(UsageStart::Invalid, UsageStart::At),
        },
        duration_seconds: i64::from(r.duration_seconds),
    }
}

fn reject_reason(r: UsageReject) -> pb::UsageRejectReason {
    match r {
        UsageReject::Malformed => pb::UsageRejectReason::Malformed,
        UsageReject::DurationOutOfRange => pb::UsageRejectReason::DurationOutOfRange,
        UsageReject::StartOutOfRange => pb::UsageRejectReason::StartOutOfRange,
        UsageReject::UnknownService => pb::UsageRejectReason::UnknownService,
        UsageReject::NotMerchantsService => pb::UsageRejectReason::NotMerchantsService,
        UsageReject::UnknownCall => pb::UsageRejectReason::UnknownCall,
        UsageReject::ServiceMismatch => pb::UsageRejectReason::ServiceMismatch,
        UsageReject::ConflictingDuplicate => pb::UsageRejectReason::ConflictingDuplicate,
        UsageReject::CallReleased => pb::UsageRejectReason::CallReleased,
    }
}

pub fn usage_ack(record: &pb::UsageRecord, outcome: &UsageOutcome) -> pb::UsageAck {
    let mut ack = pb::UsageAck {
        record_id: record.record_id.clone(),
        call_id: record.call_id.clone(),
        ..Default::default()
    };
    match outcome {
        UsageOutcome::Applied(p) | UsageOutcome::Duplicate(p) => {
            ack.result = if matches!(outcome, UsageOutcome::Applied(_)) {
                pb::UsageResult::Applied
            } else {
                pb::UsageResult::Duplicate
            } as i32;
            ack.charge_ore = p.charge.ore();
            ack.uncollected_ore = p.uncollected.ore();
            ack.overrun_seconds = p.overrun_seconds;
            ack.billed_seconds = p.billed_seconds;
        }
        UsageOutcome::Rejected(r, detail) => {
            ack.result = pb::UsageResult::Rejected as i32;
            ack.reject_reason = reject_reason(*r) as i32;
            ack.detail = detail.clone();
        }
    }
    ack
}

pub fn service_info(s: &Service, merchant_name: &str) -> pb::ServiceInfo {
    pb::ServiceInfo {
        service_number: s.number.as_str().to_string(),
        name: s.name.clone(),
        category: s.category.clone(),
        merchant_id: s.merchant_id.to_string(),
        merchant_name: merchant_name.to_string(),
        active: s.active,
        terms: Some(terms(&s.terms, false)),
        service_number_national: s.number.national_display(),
    }
}

pub fn merchant_id(field: &str, s: &str) -> Result<MerchantId, Status> {
    MerchantId::parse(s).map_err(|e| invalid(field, e))
}

pub fn merchant_in(m: pb::Merchant) -> Result<Merchant, Status> {
    let name =
        text::required_text("name", &m.name, MAX_MERCHANT_NAME_CHARS).map_err(text_status)?;
    let org_number = text::checked_org_number("org_number", &m.org_number).map_err(text_status)?;
    Ok(Merchant {
        id: merchant_id("merchant_id", &m.merchant_id)?,
        name: name.to_string(),
        org_number: org_number.to_string(),
        fee_basis_points: m.fee_basis_points,
        active: m.active,
    })
}

pub fn merchant_out(m: &Merchant) -> pb::Merchant {
    pb::Merchant {
        merchant_id: m.id.to_string(),
        name: m.name.clone(),
        org_number: m.org_number.clone(),
        fee_basis_points: m.fee_basis_points,
        active: m.active,
    }
}

pub fn service_spec(r: pb::UpsertServiceRequest) -> Result<ServiceSpec, Status> {
    let step = if r.billing_step_seconds == 0 {
        60
    } else {
        r.billing_step_seconds
    };
    let tariff = Tariff::new(
        money("price_per_minute_ore", r.price_per_minute_ore)?,
        step,
        r.minimum_minutes,
    )
    .map_err(|e| invalid("terms", e))?;
    let name = text::required_text("name", &r.name, MAX_SERVICE_NAME_CHARS).map_err(text_status)?;
    let category =
        text::checked_text("category", &r.category, MAX_CATEGORY_CHARS).map_err(text_status)?;
    Ok(ServiceSpec {
        number: number("service_number", &r.service_number)?,
        merchant_id: merchant_id("merchant_id", &r.merchant_id)?,
        name: name.to_string(),
        category: category.trim().to_string(),
        tariff,
        reminder_fee: money("reminder_fee_ore", r.reminder_fee_ore)?,
        vat: match r.vat_rate_percent {
            None => VatRate::STANDARD,
            Some(p) => VatRate::from_percent(p).map_err(|e| invalid("vat_rate_percent", e))?,
        },
        active: r.active,
    })
}

pub fn limit_source(s: LimitSource) -> pb::LimitSource {
    match s {
        LimitSource::Default => pb::LimitSource::Default,
        LimitSource::HolderRequested => pb::LimitSource::HolderRequested,
        LimitSource::CreditDecision => pb::LimitSource::CreditDecision,
    }
}

pub fn account_view(v: &AccountView) -> pb::AccountView {
    pb::AccountView {
        number: v.number.as_str().to_string(),
        in_directory: v.in_directory,
        holder_registered: v.holder_registered,
        limit_ore: v.limit.ore(),
        limit_source: limit_source(v.limit_source) as i32,
        unbilled_ore: v.unbilled.ore(),
        invoiced_unpaid_ore: v.invoiced_unpaid.ore(),
        pending_ore: v.pending.ore(),
        available_ore: v.available().ore(),
        exposure_ore: v.exposure().ore(),
        blocked_all_services: v.blocked_all_services,
        blocked_merchants: v.blocked_merchants.clone(),
        blocked_services: v.blocked_services.clone(),
        credit_blocked: v.credit_blocked,
        overdue_blocked: v.overdue_blocked,
        threshold_reached: v.threshold_reached,
        established: v.established,
        pending_calls: v.pending_calls,
    }
}

pub fn block_change(r: &pb::SetBlockRequest, actor: &str) -> Result<BlockChange, Status> {
    let kind = match pb::BlockScope::try_from(r.scope) {
        Ok(pb::BlockScope::AllServices) => BlockKind::HolderAllServices,
        Ok(pb::BlockScope::Merchant) => BlockKind::HolderMerchant,
        Ok(pb::BlockScope::Service) => BlockKind::HolderService,
        _ => {
            return Err(Status::invalid_argument(
                "scope must be ALL_SERVICES, MERCHANT or SERVICE",
            ))
        }
    };
    // The target's grammar follows the scope: a merchant id or a service number.
    let target = match kind {
        _ if kind != BlockKind::HolderAllServices && r.target.trim().is_empty() => {
            return Err(Status::invalid_argument(
                "target is required for MERCHANT and SERVICE blocks",
            ))
        }
        BlockKind::HolderMerchant => merchant_id("target", r.target.trim())?.to_string(),
        BlockKind::HolderService => number("target", &r.target)?.as_str().to_string(),
        _ => {
            text::checked_text("target", &r.target, MAX_NUMBER_CHARS).map_err(text_status)?;
            r.target.trim().to_string()
        }
    };
    let reason =
        text::required_text("reason", &r.reason, MAX_BLOCK_REASON_CHARS).map_err(|e| match e {
            TextError::Missing { .. } => {
                Status::invalid_argument("reason is required (who asked, and how)")
            }
            other => text_status(other),
        })?;
    Ok(BlockChange {
        kind,
        target,
        blocked: r.blocked,
        reason: reason.to_string(),
        actor: actor.to_string(),
    })
}

pub fn limit_change(r: pb::SetCreditLimitRequest) -> Result<LimitChange, Status> {
    use pb::set_credit_limit_request::Change;
    match r.change {
        Some(Change::HolderRequestedOre(ore)) => Ok(LimitChange::HolderRequested(money(
            "holder_requested_ore",
            ore,
        )?)),
        Some(Change::CreditDecision(d)) => Ok(LimitChange::CreditDecision {
            limit: money("credit_decision.limit_ore", d.limit_ore)?,
            credit_check_reference: text::required_text(
                "credit_decision.credit_check_reference",
                &d.credit_check_reference,
                MAX_CREDIT_REFERENCE_CHARS,
            )
            .map_err(text_status)?
            .to_string(),
            decided_by: text::checked_text(
                "credit_decision.decided_by",
                &d.decided_by,
                MAX_DECIDED_BY_CHARS,
            )
            .map_err(text_status)?
            .trim()
            .to_string(),
        }),
        Some(Change::ResetToDefault(true)) => Ok(LimitChange::ResetToDefault),
        _ => Err(Status::invalid_argument(
            "give one of holder_requested_ore, credit_decision or reset_to_default = true",
        )),
    }
}

pub fn prepaid_balance(v: &PrepaidView) -> pb::PrepaidBalance {
    pb::PrepaidBalance {
        code_id: v.code_id.to_string(),
        balance_ore: v.balance.ore(),
        pending_ore: v.pending.ore(),
        disabled: false,
        issued_at: Some(ms_to_timestamp(v.issued_at_ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        for ms in [0i64, 1, 999, 1000, 1_763_900_000_123, -1] {
            assert_eq!(timestamp_to_ms(&ms_to_timestamp(ms)), ms);
        }
    }

    #[test]
    fn client_timestamps_are_checked() {
        let t = |seconds, nanos| Timestamp { seconds, nanos };
        assert_eq!(checked_timestamp_ms(&t(1, 999_999_999)), Some(1_999));
        assert_eq!(checked_timestamp_ms(&t(-1, 0)), Some(-1_000));
        assert_eq!(checked_timestamp_ms(&t(1, -1)), None);
        assert_eq!(checked_timestamp_ms(&t(1, 1_000_000_000)), None);
        assert_eq!(checked_timestamp_ms(&t(i64::MAX / 1000 + 1, 0)), None);
        assert_eq!(checked_timestamp_ms(&t(i64::MIN, 0)), None);
        // The saturating form never panics either.
        assert_eq!(timestamp_to_ms(&t(i64::MAX, 999_999_999)), i64::MAX);
    }

    #[test]
    fn consent_times_are_in_order_recent_and_not_ahead() {
        let limits = GatewayLimits::default();
        let now = 1_800_000_000_000;
        let at = |ms| Some(ms_to_timestamp(ms));
        let check = |s1: Option<Timestamp>, s2: Option<Timestamp>| {
            consent_time(s1.as_ref(), s2.as_ref(), now, &limits)
        };
        assert_eq!(check(None, None).unwrap(), (now, now));
        assert_eq!(
            check(at(now - 900_000), None).unwrap(),
            (now - 900_000, now)
        );
        // One step given: the other is the receive time, kept in order.
        assert_eq!(
            check(None, at(now - 3_000)).unwrap(),
            (now - 3_000, now - 3_000)
        );
        assert_eq!(
            check(at(now + 2_000), None).unwrap(),
            (now + 2_000, now + 2_000)
        );
        assert_eq!(
            check(at(now - 1), at(now + 5_000)).unwrap(),
            (now - 1, now + 5_000)
        );
        for (s1, s2, field) in [
            (at(now - 900_001), at(now), "consent.step1_at"),
            (at(now), at(now + 5_001), "consent.step2_at"),
            (at(now + 2), at(now + 1), "consent.step1_at"),
            (at(now + 5_001), None, "consent.step2_at"),
            (None, at(now - 900_001), "consent.step1_at"),
        ] {
            let e = check(s1, s2).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.message().starts_with(field), "{}", e.message());
        }
    }

    #[test]
    fn authorize_request_validation() {
        let base = pb::AuthorizeRequest {
            call_id: "c1".into(),
            a_number: "070-123 45 67".into(),
            service_number: "0900-100 10 10".into(),
            ..Default::default()
        };
        let ok = authorize_input(base.clone(), "ivr", 5, &GatewayLimits::default()).unwrap();
        assert_eq!(
            ok.caller,
            Caller::Number(E164::parse("+46701234567").unwrap())
        );
        assert!(ok.consent.is_none() && ok.prepaid_code.is_none());

        let mut r = base.clone();
        r.call_id.clear();
        assert!(authorize_input(r, "ivr", 5, &GatewayLimits::default())
            .unwrap_err()
            .message()
            .contains("call_id"));
        let mut r = base.clone();
        r.a_number = "12".into();
        assert!(authorize_input(r, "ivr", 5, &GatewayLimits::default())
            .unwrap_err()
            .message()
            .contains("a_number"));
        let mut r = base.clone();
        r.number_withheld = true;
        assert!(authorize_input(r, "ivr", 5, &GatewayLimits::default()).is_err());
        let mut r = base.clone();
        r.a_number.clear();
        assert!(authorize_input(r.clone(), "ivr", 5, &GatewayLimits::default()).is_err());
        r.number_withheld = true;
        assert_eq!(
            authorize_input(r, "ivr", 5, &GatewayLimits::default())
                .unwrap()
                .caller,
            Caller::Withheld
        );
        let mut r = base;
        r.consent = Some(pb::Consent {
            age_confirmed: true,
            ..Default::default()
        });
        let c = authorize_input(r, "ivr", 5, &GatewayLimits::default())
            .unwrap()
            .consent
            .unwrap();
        assert_eq!(c.step1_at_ms, 5);
        assert!(c.terms_id.is_none());
    }
}
