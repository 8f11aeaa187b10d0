//! `callauth-settlement run`: the long-running worker. It consumes the event
//! streams into the ledger, pushes account changes back to the state store,
//! runs the daily calendar at the configured Stockholm time (one replica at
//! a time), reconciles the store with the ledger after each daily run, and
//! serves the Settlement gRPC API, the Swish callback, `/metrics`,
//! `/healthz` and `/readyz` (both listeners over TLS with `--tls-cert`).
//! Shutdown is graceful on SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::auth::TokenRegistry;
use crate::clock::SystemClock;
use crate::domain::CodeHasher;
use crate::pb;
use crate::process::{self, ReadyProbe, Tasks};
use crate::settlement::api::SettlementApi;
use crate::settlement::config::{Common, RunArgs};
use crate::settlement::consumer::{ConsumerConfig, StreamConsumer};
use crate::settlement::context::{connect, migrate, Settlement};
use crate::settlement::{calendar, daily, projector, reconcile, swish};
use crate::store::redis::RedisStore;
use crate::store::Store;

pub async fn run(common: &Common, args: &RunArgs) -> anyhow::Result<()> {
    let policy = common.policy.policy()?;
    let tls_settings = args.tls.settings().map_err(anyhow::Error::msg)?;
    common
        .redis_tls
        .validate(&common.store)
        .map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        args.replica_count >= 1 && args.replica_index < args.replica_count,
        "--replica-index must be below --replica-count"
    );
    anyhow::ensure!(
        args.ingest_concurrency + 2 <= args.db_pool,
        "--ingest-concurrency ({}) must leave two of the --db-pool ({}) connections for the API and the calendar",
        args.ingest_concurrency,
        args.db_pool
    );
    let prometheus = crate::metrics::install();
    crate::metrics::preregister_settlement();
    let pool = connect(&common.database_url, args.db_pool)
        .await
        .context("connecting to the ledger database")?;
    migrate(&pool)
        .await
        .context("migrating the ledger database")?;
    let store = RedisStore::connect(&common.redis_config(), common.store_policy())
        .await
        .with_context(|| format!("connecting to {}", common.store))?;
    let settlement = Arc::new(Settlement::new(
        pool,
        store.clone(),
        policy,
        Arc::new(SystemClock),
    ));
    let consumer_name = args
        .consumer_name
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("settlement-{}", args.replica_index));
    let consumer = Arc::new(StreamConsumer::new(
        settlement.clone(),
        store,
        ConsumerConfig {
            consumer: consumer_name.clone(),
            partitions: ConsumerConfig::owned(
                common.partitions,
                args.replica_index,
                args.replica_count,
            ),
            batch: args.batch,
            max_deliveries: args.max_deliveries,
            claim_idle: args.claim_idle(),
            poll_interval: Duration::from_millis(200),
            concurrency: args.ingest_concurrency as usize,
        },
    ));

    let mut tasks = Tasks::new();
    {
        let consumer = consumer.clone();
        let stop = tasks.stop_signal();
        tasks.spawn(async move {
            if let Err(e) = consumer.run(stop).await {
                tracing::error!(error = %e, "event consumer stopped");
            }
            Ok(())
        });
    }
    {
        let s = settlement.clone();
        tasks.every(Duration::from_millis(500), move || {
            let s = s.clone();
            async move {
                if let Err(e) = projector::flush(&s).await {
                    tracing::warn!(error = %e, "pushing account changes to the state store failed");
                }
            }
        });
    }
    {
        let (s, consumer, run_at) = (settlement.clone(), consumer.clone(), args.daily_run_at);
        tasks.every(Duration::from_secs(30), move || {
            let (s, consumer) = (s.clone(), consumer.clone());
            async move { daily_tick(&s, &consumer, run_at).await }
        });
    }
    let tls = process::tls_server(&mut tasks, tls_settings)?;
    serve(&mut tasks, &settlement, args, prometheus, tls.as_ref()).await?;
    tracing::info!(grpc = %args.grpc_listen, http = %args.http_listen, consumer = %consumer_name, "settlement worker running");
    process::shutdown_signal().await;
    tracing::info!("shutting down");
    tasks.shutdown();
    tasks.join(Duration::from_secs(15)).await
}

/// The daily calendar, once per Stockholm date after `run_at` (one replica
/// at a time), then reconciliation when the streams are caught up.
async fn daily_tick(
    s: &Settlement<RedisStore>,
    consumer: &StreamConsumer<RedisStore>,
    run_at: chrono::NaiveTime,
) {
    let now_ms = s.clock.now_ms();
    let today = calendar::stockholm_date(now_ms);
    let local = crate::settlement::context::ms_to_utc(now_ms)
        .with_timezone(&chrono_tz::Europe::Stockholm)
        .time();
    if local < run_at {
        return;
    }
    match daily::ran(&s.pool, today).await {
        Ok(false) => {}
        Ok(true) => return,
        Err(e) => {
            tracing::warn!(error = %e, "checking the calendar failed");
            return;
        }
    }
    if let Err(e) = daily::run_day(s, today).await {
        tracing::error!(%today, error = %e, "daily calendar run failed; retried");
        return;
    }
    if matches!(consumer.caught_up().await, Ok(true)) {
        match reconcile::reconcile(s, false).await {
            Ok(r) if !r.drifting.is_empty() => tracing::warn!(
                accounts = r.drifting.len(),
                drift_ore = r.total_drift_ore,
                "reconciliation found drift; run `callauth-settlement reconcile --repair` after review"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reconciliation failed"),
        }
    }
}

/// The HTTP side (metrics, health, Swish callbacks) and the gRPC side (the
/// Settlement API, health, reflection).
async fn serve(
    tasks: &mut Tasks,
    settlement: &Arc<Settlement<RedisStore>>,
    args: &RunArgs,
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
    tls: Option<&Arc<crate::tls::TlsServer>>,
) -> anyhow::Result<()> {
    let tokens = match &args.tokens_file {
        Some(path) => TokenRegistry::from_file(path)?,
        None => {
            tracing::warn!("no --tokens-file: the Settlement API refuses every call (the Swish callback still works)");
            TokenRegistry::default()
        }
    };
    let hasher = match &args.prepaid_code_key {
        Some(k) => Some(CodeHasher::new(k.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?),
        None => None,
    };
    let ready: ReadyProbe = {
        let s = settlement.clone();
        Arc::new(move || {
            let s = s.clone();
            Box::pin(async move { dependencies_ready(&s).await })
        })
    };
    let http = process::bind("HTTP", args.http_listen).await?;
    let app = process::ops_router(prometheus, ready.clone()).merge(swish::router(
        settlement.clone(),
        args.swish_callback_token.clone(),
    ));
    process::serve_http(tasks, http, app, tls)?;

    let grpc = process::bind("gRPC", args.grpc_listen).await?;
    let health = process::health_following(
        tasks,
        &["callauth.v1.Settlement"],
        ready,
        Duration::from_secs(2),
        |_| {},
    )
    .await;
    let api = pb::settlement_server::SettlementServer::with_interceptor(
        SettlementApi {
            settlement: settlement.clone(),
            hasher,
        },
        tokens.interceptor(),
    );
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .add_service(health)
        .add_service(process::reflection()?)
        .add_service(api);
    process::serve_grpc(tasks, router, grpc, tls);
    Ok(())
}

/// Whether the ledger database and the state store answer; each is also a gauge.
async fn dependencies_ready<S: Store>(s: &Settlement<S>) -> Result<(), String> {
    let db = sqlx::query("select 1").execute(&s.pool).await.is_ok();
    let store = s.store.ready().await;
    for (dependency, up) in [("ledger_database", db), ("state_store", store)] {
        metrics::gauge!(crate::metrics::SETTLEMENT_READY, "dependency" => dependency).set(if up {
            1.0
        } else {
            0.0
        });
    }
    match (db, store) {
        (true, true) => Ok(()),
        (false, _) => Err("ledger database unreachable".into()),
        (_, false) => Err("state store not ready".into()),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::settlement::config::{Cli, Command};

    /// The check runs before anything is connected: a concurrency that leaves
    /// no connections for the API and the calendar is refused at start.
    #[tokio::test]
    async fn refuses_an_ingest_concurrency_the_pool_cannot_serve() {
        let cli = Cli::try_parse_from([
            "callauth-settlement",
            "run",
            "--db-pool",
            "4",
            "--ingest-concurrency",
            "3",
        ])
        .expect("the flags parse");
        let Command::Run(args) = &cli.command else {
            panic!("run was parsed as {:?}", cli.command)
        };
        let err = super::run(&cli.common, args).await.unwrap_err();
        assert!(
            err.to_string().contains("--ingest-concurrency (3)"),
            "{err}"
        );
    }
}
