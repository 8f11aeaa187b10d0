//! Accounts in Redis (SPEC R7–R9, R13, R16): the directory entry of a number,
//! its blocks and credit limit, and what settlement pushes back — invoices,
//! payments and balance repairs. Each is one Function call on the number's
//! partition (its account key and event stream share the hash tag), after
//! the checks that need no state.

use super::*;

pub(super) async fn put_directory(
    store: &RedisStore,
    number: &E164,
    holder_registered: bool,
    actor: &str,
    now_ms: i64,
) -> StoreResult<AccountView> {
    let k = &store.inner.keys;
    let p = store.partition(number.as_str());
    store
        .fcall(
            "put_directory",
            &[k.account(p, number.as_str()), k.events(p)],
            vec![
                now_ms.to_string(),
                number.as_str().to_string(),
                if holder_registered { "1" } else { "0" }.to_string(),
                actor.to_string(),
                p.to_string(),
            ],
        )
        .await?;
    store.view(number).await
}

pub(super) async fn set_block(
    store: &RedisStore,
    number: &E164,
    change: &BlockChange,
    now_ms: i64,
) -> StoreResult<AccountView> {
    let target = crate::store::validate::normalise_block_target(change)?;
    let field = match change.kind {
        BlockKind::HolderAllServices => "bo".to_string(),
        BlockKind::HolderMerchant => format!("bm:{target}"),
        BlockKind::HolderService => format!("bs:{target}"),
        BlockKind::Overdue => "bd".to_string(),
        BlockKind::CreditLimit => unreachable!("refused by normalise_block_target"),
    };
    let kind = serde_json::to_value(change.kind)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let k = &store.inner.keys;
    let p = store.partition(number.as_str());
    store
        .fcall(
            "set_block",
            &[k.account(p, number.as_str()), k.events(p)],
            vec![
                now_ms.to_string(),
                number.as_str().to_string(),
                field,
                kind,
                target,
                if change.blocked { "1" } else { "0" }.to_string(),
                change.reason.clone(),
                change.actor.clone(),
                p.to_string(),
            ],
        )
        .await?;
    store.view(number).await
}

pub(super) async fn set_limit(
    store: &RedisStore,
    number: &E164,
    change: &LimitChange,
    actor: &str,
    now_ms: i64,
) -> StoreResult<AccountView> {
    let current = store.view(number).await?;
    let (source, fixed) = change
        .resolve(store.credit(), current.established)
        .map_err(|e| StoreError::Rejected(e.to_string()))?;
    let [first, established, percent] = store.limit_args()?;
    let k = &store.inner.keys;
    let p = store.partition(number.as_str());
    store
        .fcall(
            "set_limit",
            &[k.account(p, number.as_str()), k.events(p)],
            vec![
                now_ms.to_string(),
                number.as_str().to_string(),
                source.code().to_string(),
                lua_safe(fixed, "limit")?.to_string(),
                first,
                established,
                percent,
                change.reference().to_string(),
                actor.to_string(),
                p.to_string(),
            ],
        )
        .await?;
    store.view(number).await
}

pub(super) async fn apply_invoice(
    store: &RedisStore,
    number: &E164,
    invoice: &InvoiceApply,
    now_ms: i64,
) -> StoreResult<Applied> {
    crate::store::validate::check_amount(invoice.usage, "invoice usage")?;
    crate::store::validate::check_amount(invoice.fees, "invoice fees")?;
    let [first, established, percent] = store.limit_args()?;
    let k = &store.inner.keys;
    let p = store.partition(number.as_str());
    let v = store
        .fcall(
            "apply_invoice",
            &[
                k.account(p, number.as_str()),
                k.applied_invoices(p, number.as_str()),
                k.events(p),
            ],
            vec![
                now_ms.to_string(),
                number.as_str().to_string(),
                invoice.invoice_id.to_string(),
                lua_safe(invoice.usage, "invoice usage")?.to_string(),
                lua_safe(invoice.fees, "invoice fees")?.to_string(),
                first,
                established,
                percent,
                p.to_string(),
            ],
        )
        .await?;
    applied_answer(v, number)
}

pub(super) async fn apply_payment(
    store: &RedisStore,
    number: &E164,
    payment: &PaymentApply,
    now_ms: i64,
) -> StoreResult<Applied> {
    crate::store::validate::check_amount(payment.amount, "payment")?;
    let [first, established, percent] = store.limit_args()?;
    let k = &store.inner.keys;
    let p = store.partition(number.as_str());
    let v = store
        .fcall(
            "apply_payment",
            &[
                k.account(p, number.as_str()),
                k.applied_payments(p, number.as_str()),
                k.events(p),
            ],
            vec![
                now_ms.to_string(),
                number.as_str().to_string(),
                payment.payment_id.to_string(),
                lua_safe(payment.amount, "payment")?.to_string(),
                if payment.clear_overdue { "1" } else { "0" }.to_string(),
                if payment.first_invoice_paid { "1" } else { "0" }.to_string(),
                first,
                established,
                percent,
                p.to_string(),
            ],
        )
        .await?;
    applied_answer(v, number)
}

pub(super) async fn repair_balances(
    store: &RedisStore,
    number: &E164,
    unbilled: Money,
    invoiced_unpaid: Money,
    reason: &str,
    now_ms: i64,
) -> StoreResult<AccountView> {
    crate::store::validate::check_amount(unbilled, "unbilled")?;
    crate::store::validate::check_amount(invoiced_unpaid, "invoiced-unpaid")?;
    let [first, established, percent] = store.limit_args()?;
    let k = &store.inner.keys;
    let p = store.partition(number.as_str());
    store
        .fcall(
            "repair_balances",
            &[k.account(p, number.as_str()), k.events(p)],
            vec![
                now_ms.to_string(),
                number.as_str().to_string(),
                lua_safe(unbilled, "unbilled")?.to_string(),
                lua_safe(invoiced_unpaid, "invoiced-unpaid")?.to_string(),
                reason.to_string(),
                first,
                established,
                percent,
                p.to_string(),
            ],
        )
        .await?;
    store.view(number).await
}
