//! The protobuf form of the outbox events (`proto/callauth/v1/events.proto`,
//! the contract with settlement). The stores write the proto3 JSON of these
//! messages (`domain::event`); this conversion names every field of both
//! sides, so a field added to one and not the other does not compile.

use crate::domain::account::{BlockKind, LimitSource};
use crate::domain::decision::Funding;
use crate::domain::event::{Event, EventBody};
use crate::pb;

fn funding_pb(f: Funding) -> i32 {
    match f {
        Funding::Postpaid => pb::Funding::Postpaid as i32,
        Funding::Prepaid => pb::Funding::Prepaid as i32,
    }
}

fn block_kind_pb(k: BlockKind) -> i32 {
    (match k {
        BlockKind::HolderAllServices => pb::BlockKind::HolderAllServices,
        BlockKind::HolderMerchant => pb::BlockKind::HolderMerchant,
        BlockKind::HolderService => pb::BlockKind::HolderService,
        BlockKind::CreditLimit => pb::BlockKind::CreditLimit,
        BlockKind::Overdue => pb::BlockKind::Overdue,
    }) as i32
}

fn limit_source_pb(s: LimitSource) -> i32 {
    (match s {
        LimitSource::Default => pb::LimitSource::Default,
        LimitSource::HolderRequested => pb::LimitSource::HolderRequested,
        LimitSource::CreditDecision => pb::LimitSource::CreditDecision,
    }) as i32
}

/// The protobuf form of an event (the contract in `proto/callauth/v1/events.proto`).
impl From<&Event> for pb::Event {
    fn from(e: &Event) -> pb::Event {
        use pb::event::Body;
        let body = match &e.body {
            EventBody::UsagePosted(u) => Body::UsagePosted(pb::UsagePosted {
                call_id: u.call_id.clone(),
                record_id: u.record_id.clone(),
                merchant_id: u.merchant_id.clone(),
                service_number: u.service_number.clone(),
                number: u.number.clone(),
                funding: funding_pb(u.funding),
                code_id: u.code_id.clone(),
                terms_id: u.terms_id.clone(),
                price_per_minute_ore: u.price_per_minute_ore,
                billing_step_seconds: u.billing_step_seconds,
                minimum_minutes: u.minimum_minutes,
                started_at_ms: u.started_at_ms,
                duration_seconds: u.duration_seconds,
                billed_seconds: u.billed_seconds,
                charge_ore: u.charge_ore,
                granted_seconds: u.granted_seconds,
                overrun_seconds: u.overrun_seconds,
                late: u.late,
                authorized_at_ms: u.authorized_at_ms,
                exposure_after_ore: u.exposure_after_ore,
                uncollected_ore: u.uncollected_ore,
                vat_rate_percent: Some(u.vat_rate.percent()),
            }),
            EventBody::HoldExpired(h) => Body::HoldExpired(pb::HoldExpired {
                call_id: h.call_id.clone(),
                number: h.number.clone(),
                funding: funding_pb(h.funding),
                code_id: h.code_id.clone(),
                amount_ore: h.amount_ore,
                granted_seconds: h.granted_seconds,
            }),
            EventBody::HoldVoided(h) => Body::HoldVoided(pb::HoldVoided {
                call_id: h.call_id.clone(),
                number: h.number.clone(),
                funding: funding_pb(h.funding),
                code_id: h.code_id.clone(),
                amount_ore: h.amount_ore,
            }),
            EventBody::ThresholdReached(t) => Body::ThresholdReached(pb::ThresholdReached {
                number: t.number.clone(),
                exposure_ore: t.exposure_ore,
                limit_ore: t.limit_ore,
                unbilled_ore: t.unbilled_ore,
                invoiced_unpaid_ore: t.invoiced_unpaid_ore,
                sequence: t.sequence,
            }),
            EventBody::LimitReached(l) => Body::LimitReached(pb::LimitReached {
                number: l.number.clone(),
                exposure_ore: l.exposure_ore,
                limit_ore: l.limit_ore,
                sequence: l.sequence,
            }),
            EventBody::ConsentRecorded(c) => Body::ConsentRecorded(pb::ConsentRecorded {
                call_id: c.call_id.clone(),
                number: c.number.clone(),
                number_withheld: c.number_withheld,
                service_number: c.service_number.clone(),
                merchant_id: c.merchant_id.clone(),
                funding: funding_pb(c.funding),
                code_id: c.code_id.clone(),
                terms_id: c.terms_id.clone(),
                price_per_minute_ore: c.price_per_minute_ore,
                minimum_minutes: c.minimum_minutes,
                billing_step_seconds: c.billing_step_seconds,
                reminder_fee_ore: c.reminder_fee_ore,
                age_confirmed: c.age_confirmed,
                own_number_confirmed: c.own_number_confirmed,
                step1_at_ms: c.step1_at_ms,
                terms_accepted: c.terms_accepted,
                step2_at_ms: c.step2_at_ms,
                ivr_client: c.ivr_client.clone(),
                ivr_id: c.ivr_id.clone(),
                line_ref: c.line_ref.clone(),
                authorized_at_ms: c.authorized_at_ms,
            }),
            EventBody::BlockChanged(b) => Body::BlockChanged(pb::BlockChanged {
                number: b.number.clone(),
                kind: block_kind_pb(b.kind),
                target: b.target.clone(),
                blocked: b.blocked,
                reason: b.reason.clone(),
                actor: b.actor.clone(),
                sequence: b.sequence,
            }),
            EventBody::PrepaidDebited(p) => Body::PrepaidDebited(pb::PrepaidDebited {
                code_id: p.code_id.clone(),
                call_id: p.call_id.clone(),
                amount_ore: p.amount_ore,
                balance_after_ore: p.balance_after_ore,
            }),
            EventBody::PrepaidCredited(p) => Body::PrepaidCredited(pb::PrepaidCredited {
                code_id: p.code_id.clone(),
                reference: p.reference.clone(),
                amount_ore: p.amount_ore,
                balance_after_ore: p.balance_after_ore,
                issued: p.issued,
            }),
            EventBody::LimitChanged(l) => Body::LimitChanged(pb::LimitChanged {
                number: l.number.clone(),
                limit_ore: l.limit_ore,
                source: limit_source_pb(l.source),
                reference: l.reference.clone(),
                actor: l.actor.clone(),
                sequence: l.sequence,
            }),
            EventBody::DirectoryChanged(d) => Body::DirectoryChanged(pb::DirectoryChanged {
                number: d.number.clone(),
                holder_registered: d.holder_registered,
                actor: d.actor.clone(),
                sequence: d.sequence,
            }),
            EventBody::InvoiceApplied(i) => Body::InvoiceApplied(pb::InvoiceApplied {
                number: i.number.clone(),
                invoice_id: i.invoice_id.clone(),
                usage_ore: i.usage_ore,
                fees_ore: i.fees_ore,
            }),
            EventBody::PaymentApplied(p) => Body::PaymentApplied(pb::PaymentApplied {
                number: p.number.clone(),
                payment_id: p.payment_id.clone(),
                amount_ore: p.amount_ore,
                overdue_cleared: p.overdue_cleared,
                first_invoice_paid: p.first_invoice_paid,
            }),
            EventBody::BalancesRepaired(r) => Body::BalancesRepaired(pb::BalancesRepaired {
                number: r.number.clone(),
                unbilled_before_ore: r.unbilled_before_ore,
                unbilled_after_ore: r.unbilled_after_ore,
                invoiced_unpaid_before_ore: r.invoiced_unpaid_before_ore,
                invoiced_unpaid_after_ore: r.invoiced_unpaid_after_ore,
                reason: r.reason.clone(),
                sequence: r.sequence,
            }),
        };
        pb::Event {
            event_id: e.event_id.clone(),
            at_ms: e.at_ms,
            partition: e.partition,
            body: Some(body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{ids, UsagePosted};

    #[test]
    fn converts_to_the_protobuf_contract() {
        let e = Event {
            event_id: ids::usage("c1"),
            at_ms: 1_763_900_000_000,
            partition: 3,
            body: EventBody::UsagePosted(UsagePosted {
                call_id: "c1".into(),
                funding: Funding::Postpaid,
                charge_ore: 2990,
                ..Default::default()
            }),
        };
        let p: pb::Event = (&e).into();
        assert_eq!(p.event_id, "usage:c1");
        assert!(
            matches!(p.body, Some(pb::event::Body::UsagePosted(ref u)) if u.charge_ore == 2990 && u.funding == pb::Funding::Postpaid as i32)
        );
    }
}
