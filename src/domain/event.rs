//! Outbox events (DESIGN invariant 6): what settlement must know of.
//!
//! The wire form is the proto3 JSON of `callauth.v1.Event` with the original
//! (snake_case) field names — the Redis Functions write it with `cjson`, the
//! embedded store with serde — so one decoder reads both and any protobuf
//! JSON parser reads it too. Reading is strict: every field must be present
//! (a missing amount is an error, never 0; the writers always write every
//! field), except a field marked as added later, which says why its default
//! is exact for older writers. Unknown fields are ignored, so a newer writer
//! does not break an older reader. Event ids come from business keys
//! ("usage:<call_id>"), never from a stream position, so that the ledger
//! commits a fact once even when a failover makes a store emit it again.

use serde::{Deserialize, Serialize};

use super::account::{BlockKind, LimitSource};
use super::decision::Funding;
use super::vat::VatRate;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: String,
    pub at_ms: i64,
    pub partition: u32,
    #[serde(flatten)]
    pub body: EventBody,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventBody {
    UsagePosted(UsagePosted),
    HoldExpired(HoldExpired),
    HoldVoided(HoldVoided),
    ThresholdReached(ThresholdReached),
    LimitReached(LimitReached),
    ConsentRecorded(ConsentRecorded),
    BlockChanged(BlockChanged),
    PrepaidDebited(PrepaidDebited),
    PrepaidCredited(PrepaidCredited),
    LimitChanged(LimitChanged),
    DirectoryChanged(DirectoryChanged),
    InvoiceApplied(InvoiceApplied),
    PaymentApplied(PaymentApplied),
    BalancesRepaired(BalancesRepaired),
}

impl EventBody {
    /// Every event type's label, in the order of [`EventBody::index`].
    pub const LABELS: [&'static str; 14] = [
        "usage_posted",
        "hold_expired",
        "hold_voided",
        "threshold_reached",
        "limit_reached",
        "consent_recorded",
        "block_changed",
        "prepaid_debited",
        "prepaid_credited",
        "limit_changed",
        "directory_changed",
        "invoice_applied",
        "payment_applied",
        "balances_repaired",
    ];

    /// The event type's position in [`EventBody::LABELS`].
    pub fn index(&self) -> usize {
        match self {
            EventBody::UsagePosted(_) => 0,
            EventBody::HoldExpired(_) => 1,
            EventBody::HoldVoided(_) => 2,
            EventBody::ThresholdReached(_) => 3,
            EventBody::LimitReached(_) => 4,
            EventBody::ConsentRecorded(_) => 5,
            EventBody::BlockChanged(_) => 6,
            EventBody::PrepaidDebited(_) => 7,
            EventBody::PrepaidCredited(_) => 8,
            EventBody::LimitChanged(_) => 9,
            EventBody::DirectoryChanged(_) => 10,
            EventBody::InvoiceApplied(_) => 11,
            EventBody::PaymentApplied(_) => 12,
            EventBody::BalancesRepaired(_) => 13,
        }
    }

    /// The event type for metrics labels and logs.
    pub fn label(&self) -> &'static str {
        Self::LABELS[self.index()]
    }
}

/// Event ids, one function per fact. Kept together so that the memory store,
/// the Redis Functions (which build the same strings) and the ledger agree.
pub mod ids {
    pub fn usage(call_id: &str) -> String {
        format!("usage:{call_id}")
    }
    pub fn prepaid_debit(call_id: &str) -> String {
        format!("prepaid-debit:{call_id}")
    }
    pub fn expired(call_id: &str) -> String {
        format!("expired:{call_id}")
    }
    pub fn voided(call_id: &str) -> String {
        format!("voided:{call_id}")
    }
    pub fn consent(call_id: &str) -> String {
        format!("consent:{call_id}")
    }
    pub fn threshold(number: &str, seq: u64) -> String {
        format!("threshold:{number}:{seq}")
    }
    pub fn limit_reached(number: &str, seq: u64) -> String {
        format!("limit:{number}:{seq}")
    }
    pub fn block(number: &str, seq: u64) -> String {
        format!("block:{number}:{seq}")
    }
    pub fn limit_changed(number: &str, seq: u64) -> String {
        format!("limit-changed:{number}:{seq}")
    }
    pub fn directory(number: &str, seq: u64) -> String {
        format!("directory:{number}:{seq}")
    }
    pub fn prepaid_credit(code_id: &str, reference: &str) -> String {
        format!("prepaid-credit:{code_id}:{reference}")
    }
    pub fn invoice_applied(number: &str, invoice_id: &str) -> String {
        format!("invoice:{number}:{invoice_id}")
    }
    pub fn payment_applied(number: &str, payment_id: &str) -> String {
        format!("payment:{number}:{payment_id}")
    }
    pub fn repaired(number: &str, seq: u64) -> String {
        format!("repaired:{number}:{seq}")
    }
    /// The prefixes of every id above that is keyed by a number rather than
    /// a call (erasure finds a number's events by them).
    pub fn number_prefixes(number: &str) -> [String; 8] {
        [
            format!("threshold:{number}:"),
            format!("limit:{number}:"),
            format!("block:{number}:"),
            format!("limit-changed:{number}:"),
            format!("directory:{number}:"),
            format!("invoice:{number}:"),
            format!("payment:{number}:"),
            format!("repaired:{number}:"),
        ]
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UsagePosted {
    pub call_id: String,
    pub record_id: String,
    pub merchant_id: String,
    pub service_number: String,
    pub number: String,
    pub funding: Funding,
    pub code_id: String,
    pub terms_id: String,
    pub price_per_minute_ore: i64,
    pub billing_step_seconds: u32,
    pub minimum_minutes: u32,
    pub started_at_ms: i64,
    pub duration_seconds: u32,
    pub billed_seconds: u32,
    pub charge_ore: i64,
    pub granted_seconds: u32,
    pub overrun_seconds: u32,
    pub late: bool,
    pub authorized_at_ms: i64,
    pub exposure_after_ore: i64,
    /// Added in library version 3; absent in events of older gateways,
    /// which never capped a prepaid debit, so 0 is exact for them.
    #[serde(default)]
    pub uncollected_ore: i64,
    /// The VAT rate of the accepted terms (the charge includes it). Added
    /// with VAT; an event written before rates existed reads as 25 %, the
    /// rate every service had then.
    #[serde(rename = "vat_rate_percent", default)]
    pub vat_rate: VatRate,
}

#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HoldExpired {
    pub call_id: String,
    pub number: String,
    pub funding: Funding,
    pub code_id: String,
    pub amount_ore: i64,
    pub granted_seconds: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HoldVoided {
    pub call_id: String,
    pub number: String,
    pub funding: Funding,
    pub code_id: String,
    pub amount_ore: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ThresholdReached {
    pub number: String,
    pub exposure_ore: i64,
    pub limit_ore: i64,
    pub unbilled_ore: i64,
    pub invoiced_unpaid_ore: i64,
    pub sequence: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LimitReached {
    pub number: String,
    pub exposure_ore: i64,
    pub limit_ore: i64,
    pub sequence: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConsentRecorded {
    pub call_id: String,
    pub number: String,
    pub number_withheld: bool,
    pub service_number: String,
    pub merchant_id: String,
    pub funding: Funding,
    pub code_id: String,
    pub terms_id: String,
    pub price_per_minute_ore: i64,
    pub minimum_minutes: u32,
    pub billing_step_seconds: u32,
    pub reminder_fee_ore: i64,
    pub age_confirmed: bool,
    pub own_number_confirmed: bool,
    pub step1_at_ms: i64,
    pub terms_accepted: bool,
    pub step2_at_ms: i64,
    pub ivr_client: String,
    pub ivr_id: String,
    pub line_ref: String,
    pub authorized_at_ms: i64,
}

/// A `consent_recorded` event as borrowed fields, serialised to the same JSON
/// as the owned [`Event`] (its shape: `event_id`, `at_ms`, `partition` and the
/// body under its type name). The Redis store sends one with every Authorize
/// that carries consent; this spares copying a dozen strings to write it.
#[derive(Serialize)]
pub struct ConsentEventRef<'a> {
    pub event_id: &'a str,
    pub at_ms: i64,
    pub partition: u32,
    pub consent_recorded: ConsentRecordedRef<'a>,
}

/// The borrowed body of [`ConsentEventRef`]; the fields of [`ConsentRecorded`].
#[derive(Serialize)]
pub struct ConsentRecordedRef<'a> {
    pub call_id: &'a str,
    pub number: &'a str,
    pub number_withheld: bool,
    pub service_number: &'a str,
    pub merchant_id: &'a str,
    pub funding: Funding,
    pub code_id: &'a str,
    pub terms_id: &'a str,
    pub price_per_minute_ore: i64,
    pub minimum_minutes: u32,
    pub billing_step_seconds: u32,
    pub reminder_fee_ore: i64,
    pub age_confirmed: bool,
    pub own_number_confirmed: bool,
    pub step1_at_ms: i64,
    pub terms_accepted: bool,
    pub step2_at_ms: i64,
    pub ivr_client: &'a str,
    pub ivr_id: &'a str,
    pub line_ref: &'a str,
    pub authorized_at_ms: i64,
}

impl ConsentEventRef<'_> {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("events serialise")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BlockChanged {
    pub number: String,
    pub kind: BlockKind,
    pub target: String,
    pub blocked: bool,
    pub reason: String,
    pub actor: String,
    pub sequence: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PrepaidDebited {
    pub code_id: String,
    pub call_id: String,
    pub amount_ore: i64,
    pub balance_after_ore: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PrepaidCredited {
    pub code_id: String,
    pub reference: String,
    pub amount_ore: i64,
    pub balance_after_ore: i64,
    pub issued: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LimitChanged {
    pub number: String,
    pub limit_ore: i64,
    pub source: LimitSource,
    pub reference: String,
    pub actor: String,
    pub sequence: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DirectoryChanged {
    pub number: String,
    pub holder_registered: bool,
    pub actor: String,
    pub sequence: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InvoiceApplied {
    pub number: String,
    pub invoice_id: String,
    pub usage_ore: i64,
    pub fees_ore: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PaymentApplied {
    pub number: String,
    pub payment_id: String,
    pub amount_ore: i64,
    pub overdue_cleared: bool,
    pub first_invoice_paid: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BalancesRepaired {
    pub number: String,
    pub unbilled_before_ore: i64,
    pub unbilled_after_ore: i64,
    pub invoiced_unpaid_before_ore: i64,
    pub invoiced_unpaid_after_ore: i64,
    pub reason: String,
    pub sequence: u64,
}

impl Event {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("events serialise")
    }

    pub fn from_json(s: &str) -> Result<Event, serde_json::Error> {
        serde_json::from_str(s)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_number_keyed_id_has_its_prefix() {
        use super::ids;
        let n = "+46701234567";
        let prefixes = ids::number_prefixes(n);
        for id in [
            ids::threshold(n, 1),
            ids::limit_reached(n, 2),
            ids::block(n, 3),
            ids::limit_changed(n, 4),
            ids::directory(n, 5),
            ids::invoice_applied(n, "inv-6"),
            ids::payment_applied(n, "pay-7"),
            ids::repaired(n, 8),
        ] {
            assert_eq!(
                prefixes
                    .iter()
                    .filter(|p| id.starts_with(p.as_str()))
                    .count(),
                1,
                "{id}"
            );
        }
        // Another number sharing the digits is not matched ("…67" vs "…678").
        assert!(!ids::block("+467012345678", 1).starts_with(&prefixes[2]));
    }

    #[test]
    fn a_borrowed_consent_event_is_the_owned_event() {
        use super::*;
        let owned = Event {
            event_id: ids::consent("c-1"),
            at_ms: 1_700_000_000_123,
            partition: 7,
            body: EventBody::ConsentRecorded(ConsentRecorded {
                call_id: "c-1".into(),
                number: "+46701234567".into(),
                number_withheld: false,
                service_number: "+469001001010".into(),
                merchant_id: "stjarnlinjen".into(),
                funding: Funding::Prepaid,
                code_id: "k\"1".into(),
                terms_id: "t-469001001010-1".into(),
                price_per_minute_ore: 2990,
                minimum_minutes: 2,
                billing_step_seconds: 60,
                reminder_fee_ore: 6000,
                age_confirmed: true,
                own_number_confirmed: true,
                step1_at_ms: 1,
                terms_accepted: true,
                step2_at_ms: 2,
                ivr_client: "ivr-a".into(),
                ivr_id: "é".into(),
                line_ref: "".into(),
                authorized_at_ms: 3,
            }),
        };
        let EventBody::ConsentRecorded(c) = &owned.body else {
            unreachable!()
        };
        let borrowed = ConsentEventRef {
            event_id: &owned.event_id,
            at_ms: owned.at_ms,
            partition: owned.partition,
            consent_recorded: ConsentRecordedRef {
                call_id: &c.call_id,
                number: &c.number,
                number_withheld: c.number_withheld,
                service_number: &c.service_number,
                merchant_id: &c.merchant_id,
                funding: c.funding,
                code_id: &c.code_id,
                terms_id: &c.terms_id,
                price_per_minute_ore: c.price_per_minute_ore,
                minimum_minutes: c.minimum_minutes,
                billing_step_seconds: c.billing_step_seconds,
                reminder_fee_ore: c.reminder_fee_ore,
                age_confirmed: c.age_confirmed,
                own_number_confirmed: c.own_number_confirmed,
                step1_at_ms: c.step1_at_ms,
                terms_accepted: c.terms_accepted,
                step2_at_ms: c.step2_at_ms,
                ivr_client: &c.ivr_client,
                ivr_id: &c.ivr_id,
                line_ref: &c.line_ref,
                authorized_at_ms: c.authorized_at_ms,
            },
        };
        assert_eq!(borrowed.to_json(), owned.to_json());
        assert_eq!(Event::from_json(&borrowed.to_json()).unwrap(), owned);
    }

    use super::*;

    #[test]
    fn json_is_proto3_json_shape() {
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
        let json = e.to_json();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["event_id"], "usage:c1");
        assert_eq!(v["usage_posted"]["funding"], "FUNDING_POSTPAID");
        assert_eq!(v["usage_posted"]["charge_ore"], 2990);
        assert_eq!(Event::from_json(&json).unwrap(), e);
    }

    #[test]
    fn unknown_fields_are_ignored_and_missing_money_is_an_error() {
        // A field added by a newer writer does not break this reader.
        let json = r#"{"event_id":"threshold:+46701234567:1","at_ms":5,"partition":0,
            "threshold_reached":{"number":"+46701234567","exposure_ore":120000,"limit_ore":150000,
            "unbilled_ore":120000,"invoiced_unpaid_ore":0,"sequence":1,"future_field":true}}"#;
        let e = Event::from_json(json).unwrap();
        match e.body {
            EventBody::ThresholdReached(t) => assert_eq!(t.exposure_ore, 120_000),
            other => panic!("unexpected {other:?}"),
        }
        // A missing amount is never read as 0.
        let json = r#"{"event_id":"threshold:+46701234567:1","at_ms":5,"partition":0,
            "threshold_reached":{"number":"+46701234567","exposure_ore":120000,"limit_ore":150000,"sequence":1}}"#;
        let err = Event::from_json(json).unwrap_err().to_string();
        assert!(err.contains("unbilled_ore"), "{err}");
    }

    #[test]
    fn usage_carries_its_vat_rate_and_old_usage_reads_as_25() {
        let event = |vat_rate| Event {
            event_id: ids::usage("c1"),
            at_ms: 5,
            partition: 0,
            body: EventBody::UsagePosted(UsagePosted {
                call_id: "c1".into(),
                charge_ore: 1995,
                vat_rate,
                ..Default::default()
            }),
        };
        let exempt = event(VatRate::EXEMPT);
        assert_eq!(Event::from_json(&exempt.to_json()).unwrap(), exempt);
        // An event written before rates existed has no field: 25 %, the rate
        // every service had then (a field added later, read with a default).
        let mut v: serde_json::Value = serde_json::from_str(&exempt.to_json()).unwrap();
        v["usage_posted"]
            .as_object_mut()
            .unwrap()
            .remove("vat_rate_percent");
        match Event::from_json(&v.to_string()).unwrap().body {
            EventBody::UsagePosted(u) => assert_eq!(u.vat_rate, VatRate::STANDARD),
            other => panic!("unexpected {other:?}"),
        }
    }
}
