//! Conversions between generated protobuf types and domain types (STYLE
//! "types at the edge"). Proto3 defaults (empty string, 0, absent message)
//! are handled explicitly here, and every malformed field is reported by
//! name as `INVALID_ARGUMENT`.

use prost_types::Timestamp;
use tonic::Status;

use crate::domain::account::{BlockKind, LimitChange, LimitSource};
use crate::domain::catalog::{Merchant, Service, ServiceSpec, Terms};
use crate::domain::decision::{Consent, Decision, Funding};
use crate::domain::{CallId, MerchantId, Money, Reference, Tariff, TermsId, VatRate, E164};
use crate::gateway::{AuthorizeInput, AuthorizeOutput, Caller, UsageInput};
use crate::pb;
use crate::store::{
    AccountView, BlockChange, Evidence, ExtendOutcome, ExtendResult, PrepaidView, ReleaseOutcome,
    UsageOutcome, UsageReject,
};

fn invalid(field: &str, e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {e}"))
}

pub fn number(field: &str, s: &str) -> Result<E164, Status> {
    E164::parse(s).map_err(|e| invalid(field, e))
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

pub fn timestamp_to_ms(t: &Timestamp) -> i64 {
    t.seconds.saturating_mul(1000) + i64::from(t.nanos) / 1_000_000
}

/// An Authorize request as the gateway needs it. `ivr_client` is the
/// authenticated client; `now_ms` stands in for missing consent timestamps.
pub fn authorize_input(
    r: pb::AuthorizeRequest,
    ivr_client: impl Into<String>,
    now_ms: i64,
) -> Result<AuthorizeInput, Status> {
    let call_id = CallId::parse(&r.call_id).map_err(|e| invalid("call_id", e))?;
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
    if r.ivr_id.len() > 128 || r.line_ref.len() > 128 {
        return Err(Status::invalid_argument(
            "ivr_id and line_ref are at most 128 characters",
        ));
    }
    let consent = r
        .consent
        .map(|c| -> Result<Consent, Status> {
            let terms_id = if c.terms_id.is_empty() {
                None
            } else {
                Some(TermsId::parse(&c.terms_id).map_err(|e| invalid("consent.terms_id", e))?)
            };
            Ok(Consent {
                age_confirmed: c.age_confirmed,
                own_number_confirmed: c.own_number_confirmed,
                step1_at_ms: c.step1_at.as_ref().map_or(now_ms, timestamp_to_ms),
                terms_accepted: c.terms_accepted,
                step2_at_ms: c.step2_at.as_ref().map_or(now_ms, timestamp_to_ms),
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

pub fn usage_input(r: &pb::UsageRecord) -> UsageInput {
    UsageInput {
        record_id: r.record_id.clone(),
        call_id: r.call_id.clone(),
        service_number: r.service_number.clone(),
        started_at_ms: r.started_at.as_ref().map(timestamp_to_ms),
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

pub fn merchant_in(m: pb::Merchant) -> Result<Merchant, Status> {
    Ok(Merchant {
        id: MerchantId::parse(&m.merchant_id).map_err(|e| invalid("merchant_id", e))?,
        name: m.name,
        org_number: m.org_number,
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
    Ok(ServiceSpec {
        number: number("service_number", &r.service_number)?,
        merchant_id: MerchantId::parse(&r.merchant_id).map_err(|e| invalid("merchant_id", e))?,
        name: r.name,
        category: r.category,
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
    if kind != BlockKind::HolderAllServices && r.target.trim().is_empty() {
        return Err(Status::invalid_argument(
            "target is required for MERCHANT and SERVICE blocks",
        ));
    }
    if r.reason.trim().is_empty() {
        return Err(Status::invalid_argument(
            "reason is required (who asked, and how)",
        ));
    }
    Ok(BlockChange {
        kind,
        target: r.target.trim().to_string(),
        blocked: r.blocked,
        reason: r.reason.clone(),
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
            credit_check_reference: d.credit_check_reference,
            decided_by: d.decided_by,
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
    fn authorize_request_validation() {
        let base = pb::AuthorizeRequest {
            call_id: "c1".into(),
            a_number: "070-123 45 67".into(),
            service_number: "0900-100 10 10".into(),
            ..Default::default()
        };
        let ok = authorize_input(base.clone(), "ivr", 5).unwrap();
        assert_eq!(
            ok.caller,
            Caller::Number(E164::parse("+46701234567").unwrap())
        );
        assert!(ok.consent.is_none() && ok.prepaid_code.is_none());

        let mut r = base.clone();
        r.call_id.clear();
        assert!(authorize_input(r, "ivr", 5)
            .unwrap_err()
            .message()
            .contains("call_id"));
        let mut r = base.clone();
        r.a_number = "12".into();
        assert!(authorize_input(r, "ivr", 5)
            .unwrap_err()
            .message()
            .contains("a_number"));
        let mut r = base.clone();
        r.number_withheld = true;
        assert!(authorize_input(r, "ivr", 5).is_err());
        let mut r = base.clone();
        r.a_number.clear();
        assert!(authorize_input(r.clone(), "ivr", 5).is_err());
        r.number_withheld = true;
        assert_eq!(
            authorize_input(r, "ivr", 5).unwrap().caller,
            Caller::Withheld
        );
        let mut r = base;
        r.consent = Some(pb::Consent {
            age_confirmed: true,
            ..Default::default()
        });
        let c = authorize_input(r, "ivr", 5).unwrap().consent.unwrap();
        assert_eq!(c.step1_at_ms, 5);
        assert!(c.terms_id.is_none());
    }
}
