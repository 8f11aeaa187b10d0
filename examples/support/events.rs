//! One call's settlement events as a gateway writes them — its consent and
//! its posted usage, on the demo's tarot line — for the ingest example
//! (`examples/ingest_rate.rs`) and the ingest benchmark
//! (`benches/settlement.rs`).

use callauth::domain::event::{ConsentRecorded, EventBody, UsagePosted};
use callauth::domain::{Event, Funding};

/// The consent and the usage of call `call_id` from `number`, authorized at
/// `at` (ms), `seconds` long, in `partition`.
pub fn call_events(
    call_id: &str,
    number: &str,
    partition: u32,
    at: i64,
    seconds: u32,
) -> (Event, Event) {
    let consent = Event {
        event_id: format!("consent:{call_id}"),
        at_ms: at,
        partition,
        body: EventBody::ConsentRecorded(ConsentRecorded {
            call_id: call_id.into(),
            number: number.into(),
            service_number: "+469001001010".into(),
            merchant_id: "stjarnlinjen".into(),
            funding: Funding::Postpaid,
            terms_id: "t-469001001010-1".into(),
            price_per_minute_ore: 2990,
            billing_step_seconds: 60,
            reminder_fee_ore: 6000,
            age_confirmed: true,
            own_number_confirmed: true,
            step1_at_ms: at,
            terms_accepted: true,
            step2_at_ms: at,
            ivr_client: "ivr-1".into(),
            ivr_id: "node-1".into(),
            authorized_at_ms: at,
            ..Default::default()
        }),
    };
    let billed = seconds.div_ceil(60) * 60;
    let usage = Event {
        event_id: format!("usage:{call_id}"),
        at_ms: at + 1,
        partition,
        body: EventBody::UsagePosted(UsagePosted {
            call_id: call_id.into(),
            record_id: format!("r-{call_id}"),
            merchant_id: "stjarnlinjen".into(),
            service_number: "+469001001010".into(),
            number: number.into(),
            funding: Funding::Postpaid,
            terms_id: "t-469001001010-1".into(),
            price_per_minute_ore: 2990,
            billing_step_seconds: 60,
            started_at_ms: at,
            duration_seconds: seconds,
            billed_seconds: billed,
            charge_ore: i64::from(billed / 60) * 2990,
            granted_seconds: 900,
            authorized_at_ms: at,
            exposure_after_ore: 0,
            ..Default::default()
        }),
    };
    (consent, usage)
}
