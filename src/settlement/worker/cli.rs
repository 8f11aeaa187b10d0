//! `callauth-settlement`'s subcommands (the binary only parses and calls `run`).

use std::sync::Arc;

use anyhow::Context;

use chrono::NaiveDate;

use crate::clock::{Clock, SystemClock};
use crate::domain::Money;
use crate::settlement::context::{connect, migrate, ms_to_utc, Settlement};
use crate::settlement::ingest::consumer::{ConsumerConfig, StreamConsumer};
use crate::settlement::worker::config::{Cli, Command, Common, DocumentsAction};
use crate::settlement::{
    billing::delivery, billing::merchants, billing::route, ingest::jsonl, payments,
    privacy::personal, privacy::retention, sync::projector, sync::reconcile, worker::daemon,
    worker::daily, worker::time,
};
use crate::store::redis::RedisStore;

/// Database connections of a one-off command.
const COMMAND_POOL: u32 = 4;

/// The clock of a one-off command (`settlement::worker::time`); `at` is
/// `run-once --at`.
fn command_clock(common: &Common, at: Option<NaiveDate>) -> anyhow::Result<Arc<dyn Clock>> {
    Ok(time::build(time::choose(
        common.now.as_deref(),
        at,
        false,
        SystemClock.now_ms(),
    )?))
}

async fn settlement(
    common: &Common,
    at: Option<NaiveDate>,
) -> anyhow::Result<Arc<Settlement<RedisStore>>> {
    let clock = command_clock(common, at)?;
    let policy = common.policy.policy()?;
    let pool = connect(&common.database_url, COMMAND_POOL)
        .await
        .context("connecting to the ledger database")?;
    migrate(&pool)
        .await
        .context("migrating the ledger database")?;
    let store = RedisStore::connect(&common.redis_config(), common.store_policy())
        .await
        .with_context(|| format!("connecting to {}", common.store))?;
    Ok(Arc::new(Settlement::new(pool, store, policy, clock)))
}

/// Brings the ledger up to every event in the streams (so reconciliation
/// compares like with like): commits them itself when no worker runs, else
/// waits for the running workers to catch up.
async fn drain(s: &Arc<Settlement<RedisStore>>, common: &Common) -> anyhow::Result<usize> {
    let consumer = StreamConsumer::new(
        s.clone(),
        s.store.clone(),
        ConsumerConfig {
            consumer: "callauth-settlement-cli".into(),
            partitions: ConsumerConfig::owned(common.store_policy.partitions, 0, 1),
            batch: 500,
            max_deliveries: 5,
            claim_idle: std::time::Duration::from_secs(60),
            poll_interval: std::time::Duration::from_millis(100),
            // Leave one connection of the command's pool for the rest.
            concurrency: COMMAND_POOL as usize - 1,
        },
    );
    // A running worker polls every 200 ms; 10 s of silence means none runs.
    Ok(consumer
        .drain_or_wait(
            std::time::Duration::from_secs(10),
            std::time::Duration::from_secs(120),
        )
        .await?)
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let common = &cli.common;
    match &cli.command {
        Command::Migrate => {
            let pool = connect(&common.database_url, 2).await?;
            migrate(&pool).await?;
            println!("migrations applied");
        }
        Command::Run(args) => daemon::run(common, args).await?,
        Command::RunOnce { at } => {
            let s = settlement(common, Some(*at)).await?;
            let consumed = drain(&s, common).await?;
            let report = daily::run_day(&s, *at).await?;
            println!("events committed by this command: {consumed}");
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::ImportBgmax { file } => import_bgmax(common, file).await?,
        Command::IngestJsonl { file } => {
            let s = settlement(common, None).await?;
            let r = jsonl::ingest_file(&s, file, 500).await?;
            println!(
                "{} event(s) read, {} committed, {} already committed",
                r.lines, r.committed, r.duplicates
            );
        }
        Command::Reconcile { repair } => reconcile_accounts(common, *repair).await?,
        Command::Extract { number, json } => {
            let clock = command_clock(common, None)?;
            let pool = connect(&common.database_url, 2).await?;
            let x = personal::extract(&pool, number, "cli", ms_to_utc(clock.now_ms())).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&x.json)?);
            } else {
                print!("{}", x.text);
            }
        }
        Command::Erase { number } => erase(common, number).await?,
        Command::Statements { merchant } => statements(common, merchant.as_deref()).await?,
        Command::RefusedStoreOps => refused_store_ops(common).await?,
        Command::DismissPayment {
            payment_id,
            reason,
            by,
        } => dismiss_payment(common, *payment_id, reason, by).await?,
        Command::Documents { action } => documents(common, action).await?,
        Command::Retention { at } => {
            let s = settlement(common, *at).await?;
            let date = at.unwrap_or_else(|| s.today());
            let r = retention::run(&s, date).await?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
    }
    Ok(())
}

/// `import-bgmax FILE`: registers a bank file's payments and prints the summary.
async fn import_bgmax(common: &Common, file: &std::path::Path) -> anyhow::Result<()> {
    let s = settlement(common, None).await?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let r = payments::import_bgmax(&s, &bytes).await?;
    println!(
        "{}: {} section(s), {} payment(s), {} matched, {} unmatched, {} already imported, total {}{}",
        r.file_key,
        r.sections,
        r.payments,
        r.matched,
        r.unmatched,
        r.duplicates,
        r.total.to_swedish(),
        if r.already_imported { " (the file was imported before: nothing changed)" } else { "" }
    );
    Ok(())
}

/// `reconcile [--repair]`: brings the ledger up to the streams, flushes the
/// queued store operations, then compares (and repairs) every account.
async fn reconcile_accounts(common: &Common, repair: bool) -> anyhow::Result<()> {
    let s = settlement(common, None).await?;
    drain(&s, common).await?;
    projector::flush(&s).await?;
    let r = reconcile::reconcile(&s, repair).await?;
    println!(
        "{} account(s) checked, {} skipped (changes still pending), {} drifting ({} in all), {} repaired, {} refused change(s) closed",
        r.checked,
        r.skipped_pending_ops,
        r.drifting.len(),
        Money::ore_unchecked(r.total_drift_ore).to_swedish(),
        r.repaired,
        r.refused_ops_resolved
    );
    for d in &r.drifting {
        println!(
            "  {}: unbilled ledger {} store {}, invoiced-unpaid ledger {} store {}, overdue block ledger {} store {}, first invoice paid ledger {} store {}, {} refused change(s)",
            d.number,
            Money::ore_unchecked(d.ledger_unbilled_ore).to_swedish(),
            Money::ore_unchecked(d.store_unbilled_ore).to_swedish(),
            Money::ore_unchecked(d.ledger_invoiced_unpaid_ore).to_swedish(),
            Money::ore_unchecked(d.store_invoiced_unpaid_ore).to_swedish(),
            d.ledger_overdue_blocked,
            d.store_overdue_blocked,
            d.ledger_established,
            d.store_established,
            d.refused_ops
        );
    }
    // A check that found drift fails, so that automation (a CronJob, a
    // script after a failover) sees it without parsing the report; a repair
    // fails only when it left an account unrepaired.
    let unrepaired = unrepaired(&r, repair);
    if unrepaired > 0 {
        anyhow::bail!(
            "{unrepaired} account(s) differ from the ledger{}",
            if repair {
                " after the repair"
            } else {
                "; `reconcile --repair` rewrites them from the ledger"
            }
        );
    }
    Ok(())
}

/// Accounts a `reconcile` leaves differing from the ledger: every drifting
/// one for a check, the ones a repair did not rewrite for `--repair`.
fn unrepaired(r: &reconcile::ReconcileReport, repair: bool) -> usize {
    if repair {
        r.drifting.len().saturating_sub(r.repaired)
    } else {
        r.drifting.len()
    }
}

/// `erase NUMBER` (R22): erases the holder's personal data and says what is kept and why.
async fn erase(common: &Common, number: &str) -> anyhow::Result<()> {
    let s = settlement(common, None).await?;
    let e = personal::erase(&s, number, "cli").await?;
    println!(
        "erased: holder {}, {} consent record(s); kept:",
        if e.holder_erased {
            "erased"
        } else {
            "none on file"
        },
        e.consents_deleted
    );
    for k in e.kept {
        println!("  - {k}");
    }
    Ok(())
}

/// `statements [--merchant ID]`: the merchant statements with their VAT per rate (R20).
async fn statements(common: &Common, merchant: Option<&str>) -> anyhow::Result<()> {
    let pool = connect(&common.database_url, 2).await?;
    for st in merchants::statements(&pool, merchant).await? {
        println!("{}", merchants::describe(&st));
        for (rate, base, vat) in merchants::vat_summary(&pool, st.id).await? {
            println!(
                "  moms {rate} %: underlag {}, moms {}",
                Money::ore_unchecked(base).to_swedish(),
                Money::ore_unchecked(vat).to_swedish()
            );
        }
    }
    Ok(())
}

/// `refused-store-ops`: the account changes the state store refused.
async fn refused_store_ops(common: &Common) -> anyhow::Result<()> {
    let pool = connect(&common.database_url, 2).await?;
    migrate(&pool).await?;
    let ops = projector::refused(&pool).await?;
    println!(
        "{} refused account change(s); `reconcile --repair` rewrites these accounts from the ledger",
        ops.len()
    );
    for op in ops {
        println!(
            "  #{} {} {} queued {} refused {} after {} attempt(s): {}",
            op.id, op.kind, op.number, op.created_at, op.refused_at, op.attempts, op.error
        );
    }
    Ok(())
}

/// `dismiss-payment ID --reason R --by WHO`: takes a payment off the manual queue.
async fn dismiss_payment(
    common: &Common,
    payment_id: i64,
    reason: &str,
    by: &str,
) -> anyhow::Result<()> {
    let clock = command_clock(common, None)?;
    let pool = connect(&common.database_url, 2).await?;
    migrate(&pool).await?;
    let mut tx = pool.begin().await?;
    let d = payments::dismiss_payment(&mut tx, payment_id, reason, by, ms_to_utc(clock.now_ms()))
        .await?;
    tx.commit().await?;
    println!(
        "payment {} dismissed{}",
        d.payment_id,
        if d.written_off.ore() > 0 {
            format!(", {} written off", d.written_off.to_swedish())
        } else {
            String::new()
        }
    );
    Ok(())
}

async fn documents(common: &Common, action: &DocumentsAction) -> anyhow::Result<()> {
    match action {
        DocumentsAction::List {
            channel,
            limit,
            out,
        } => {
            let pool = connect(&common.database_url, 2).await?;
            let channel = match channel.as_deref() {
                None => None,
                Some(c) => Some(
                    route::Channel::parse(c)
                        .ok_or_else(|| anyhow::anyhow!("--channel is email or paper"))?,
                ),
            };
            let list = delivery::queued(&pool, channel, *limit, out.is_some()).await?;
            for d in &list {
                let to = match d.channel.as_str() {
                    "email" => d.email.clone().unwrap_or_default(),
                    _ => std::iter::once(d.name.clone().unwrap_or_default())
                        .chain(d.address_lines.iter().cloned())
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                println!(
                    "{} {} {} invoice {} queued {} to {}",
                    d.id,
                    d.kind,
                    d.channel,
                    d.invoice_id,
                    d.created_at.to_rfc3339(),
                    to
                );
                if let Some(dir) = out {
                    let path = dir.join(format!("{}.pdf", d.id));
                    std::fs::write(&path, &d.pdf)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
            }
        }
        DocumentsAction::Sent { id } | DocumentsAction::Bounced { id, .. } => {
            let s = settlement(common, None).await?;
            let (outcome, detail) = match action {
                DocumentsAction::Bounced { detail, .. } => {
                    (delivery::Outcome::Bounced, detail.as_str())
                }
                _ => (delivery::Outcome::Sent, ""),
            };
            let r = delivery::report(&s, *id, outcome, detail, "cli").await?;
            println!(
                "document {}: {}{}{}",
                r.document_id,
                r.status,
                if r.changed { "" } else { " (reported before)" },
                r.fallback_document_id
                    .map(|f| format!("; paper copy {f} queued in its place"))
                    .unwrap_or_default()
            );
        }
        DocumentsAction::Held => {
            let pool = connect(&common.database_url, 2).await?;
            for h in delivery::held_invoices(&pool).await? {
                println!("{}", delivery::describe_held(&h));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drift(number: &str) -> reconcile::Drift {
        reconcile::Drift {
            number: number.into(),
            ledger_unbilled_ore: 2990,
            store_unbilled_ore: 0,
            ledger_invoiced_unpaid_ore: 0,
            store_invoiced_unpaid_ore: 0,
            ledger_overdue_blocked: false,
            store_overdue_blocked: false,
            ledger_established: false,
            store_established: false,
            refused_ops: 0,
        }
    }

    /// `reconcile` fails while an account differs from the ledger: a check
    /// with drift, or a repair that left one unrepaired; a clean check and
    /// a complete repair succeed.
    #[test]
    fn reconcile_fails_while_an_account_differs() {
        let clean = reconcile::ReconcileReport {
            checked: 2,
            ..Default::default()
        };
        assert_eq!(unrepaired(&clean, false), 0);
        let drifting = reconcile::ReconcileReport {
            checked: 2,
            drifting: vec![drift("+46701234567"), drift("+46701234568")],
            total_drift_ore: 5980,
            ..Default::default()
        };
        assert_eq!(unrepaired(&drifting, false), 2);
        let half = reconcile::ReconcileReport {
            repaired: 1,
            ..drifting.clone()
        };
        assert_eq!(unrepaired(&half, true), 1);
        let whole = reconcile::ReconcileReport {
            repaired: 2,
            ..drifting
        };
        assert_eq!(unrepaired(&whole, true), 0);
    }
}
