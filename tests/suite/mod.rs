//! The shared store suite: every behaviour of the `Store` trait, written once
//! and run against each backend by `store_suite!` (STYLE, after limitador).
//! Each test gets a fresh, isolated store from the backend's factory.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use callauth::domain::account::{BlockKind, LimitChange, LimitSource};
use callauth::domain::decision::{ConsentReason, Decision, DenyReason, Grant, PrepaidReason};
use callauth::domain::event::EventBody;
use callauth::domain::{CodeHasher, Money, RecordId, Reference, VatRate};
use callauth::store::*;

use crate::common::*;

pub const NUM_A: &str = "+46701234567";
pub const NUM_B: &str = "+46702345678";
pub const NUM_UNREG: &str = "+46703456789";

pub fn hasher() -> CodeHasher {
    CodeHasher::new(&[42u8; 32]).unwrap()
}

/// A store with the catalogue and two registered numbers and one unregistered.
pub async fn ready<S: Store>(s: &S) {
    seed_catalog(s).await;
    s.put_directory(&n(NUM_A), true, "test", T0).await.unwrap();
    s.put_directory(&n(NUM_B), true, "test", T0).await.unwrap();
    s.put_directory(&n(NUM_UNREG), false, "test", T0)
        .await
        .unwrap();
}

pub fn usage(call: &str, service: &str, merchant: &str, duration: u32) -> UsagePost {
    usage_at(call, service, merchant, duration, T0)
}

pub fn usage_at(
    call: &str,
    service: &str,
    merchant: &str,
    duration: u32,
    started_at_ms: i64,
) -> UsagePost {
    UsagePost {
        merchant_id: callauth::domain::MerchantId::parse(merchant).unwrap(),
        record_id: RecordId::parse(&format!("r-{call}")).unwrap(),
        call_id: call_id(call),
        service_number: n(service),
        started_at_ms,
        duration_seconds: duration,
    }
}

async fn allowed<S: Store>(s: &S, number: &str, id: &str, service: &str, now: i64) -> Grant {
    let svc = crate::common::service(s, service).await;
    match s
        .authorize(&n(number), &call(id, &svc, true), now)
        .await
        .unwrap()
        .decision
    {
        Decision::Allowed(g) => g,
        other => panic!("expected allowed, got {other:?}"),
    }
}

async fn events<S: Store>(s: &S) -> Vec<callauth::domain::Event> {
    s.recent_events(10_000).await.unwrap()
}

fn count(events: &[callauth::domain::Event], label: &str) -> usize {
    events.iter().filter(|e| e.body.label() == label).count()
}

mod accounts;
mod authorize;
mod catalog;
mod holds;
mod interleavings;
mod prepaid;
mod upgrade;
mod usage;

pub use accounts::*;
pub use authorize::*;
pub use catalog::*;
pub use holds::*;
pub use interleavings::*;
pub use prepaid::*;
pub use upgrade::*;
pub use usage::*;

/// Every test of the suite, instantiated for one backend. `$factory` is an
/// async expression that yields a fresh, isolated store.
#[macro_export]
macro_rules! store_suite {
    ($factory:expr) => {
        $crate::store_suite!(@tests $factory;
            directory_decides_who_may_be_invoiced,
            consent_required_then_allowed_with_hold,
            stale_terms_need_new_consent,
            retried_authorize_returns_first_answer,
            a_retry_after_the_call_ended_says_so,
            a_call_is_bound_to_its_ivr_client,
            colliding_call_ids_record_one_consent,
            call_id_reuse_is_refused,
            concurrent_calls_share_credit,
            minimum_charge_applies,
            usage_is_rated_and_idempotent,
            usage_carries_the_accepted_terms_vat_rate,
            bad_usage_changes_nothing,
            threshold_event_fires_once,
            limit_blocks_and_payment_lifts,
            settlement_amounts_are_checked,
            overdue_block_set_and_lifted_by_payment,
            holder_blocks_stop_postpaid_and_prepaid,
            credit_blocked_number_may_use_prepaid,
            prepaid_issue_and_top_up_are_idempotent,
            a_payment_reference_pays_once,
            a_prepaid_overrun_never_drives_a_code_negative,
            wrong_codes_lock_the_line_out,
            release_voids_and_blocks_later_usage,
            holds_expire_and_late_usage_is_charged,
            extend_grows_the_grant_idempotently,
            a_sweep_expires_exactly_the_due_holds_in_order,
            limits_follow_r9,
            catalog_versions_terms,
            reconciliation_repairs_balances,
            zero_amounts_are_handled,
            random_interleavings_keep_money_exact,
            concurrent_authorizations_never_overspend,
        );
    };
    (@tests $factory:expr; $($name:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store = $factory.await;
                $crate::suite::$name(store).await;
            }
        )*
    };
}
