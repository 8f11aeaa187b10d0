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
use crate::clock::{Clock, SystemClock};
use crate::domain::CodeHasher;
use crate::pb;
use crate::process::{self, ReadyProbe, Tasks};
use crate::settlement::context::{connect, migrate, Settlement};
use crate::settlement::ingest::consumer::{ConsumerConfig, StreamConsumer};
use crate::settlement::worker::api::SettlementApi;
use crate::settlement::worker::config::{Common, RunArgs};
use crate::settlement::{
    billing::delivery, payments::swish, sync::projector, worker::scheduler, worker::time,
};
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
    let clock = time::build(time::choose(
        common.now.as_deref(),
        None,
        true,
        SystemClock.now_ms(),
    )?);
    if common.now.is_some() {
        tracing::warn!(now = %crate::settlement::context::ms_to_utc(clock.now_ms()), "--now: the worker runs on a simulated clock");
    }
    let settlement = Arc::new(Settlement::new(pool, store.clone(), policy, clock));
    let consumer_name = args
        .consumer_name
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("settlement-{}", args.replica_index));
    let consumer = Arc::new(StreamConsumer::new(
        settlement.clone(),
        store.clone(),
        consumer_config(
            args,
            consumer_name.clone(),
            ConsumerConfig::owned(
                common.store_policy.partitions,
                args.replica_index,
                args.replica_count,
            ),
            args.ingest_concurrency as usize,
        ),
    ));

    let mut tasks = Tasks::new();
    spawn_workers(
        &mut tasks,
        &settlement,
        &consumer,
        store,
        args,
        &consumer_name,
        common.store_policy.partitions,
    );
    let tls = process::tls_server(&mut tasks, tls_settings)?;
    serve(&mut tasks, &settlement, args, prometheus, tls.as_ref()).await?;
    tracing::info!(grpc = %args.grpc_listen, http = %args.http_listen, consumer = %consumer_name, "settlement worker running");
    process::shutdown_signal().await;
    tracing::info!("shutting down");
    tasks.shutdown();
    tasks.join(Duration::from_secs(15)).await
}

/// A stream consumer's configuration from the worker's flags.
fn consumer_config(
    args: &RunArgs,
    consumer: String,
    partitions: Vec<u32>,
    concurrency: usize,
) -> ConsumerConfig {
    ConsumerConfig {
        consumer,
        partitions,
        batch: args.batch,
        max_deliveries: args.max_deliveries,
        claim_idle: args.claim_idle(),
        poll_interval: Duration::from_millis(200),
        concurrency,
    }
}

/// The worker's background tasks: the event consumer, the projector, the
/// daily calendar loop (with a drainer of its own) and the mailing queue's
/// gauges.
fn spawn_workers(
    tasks: &mut Tasks,
    settlement: &Arc<Settlement<RedisStore>>,
    consumer: &Arc<StreamConsumer<RedisStore>>,
    store: RedisStore,
    args: &RunArgs,
    consumer_name: &str,
    partitions: u32,
) {
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
        let (s, stop) = (settlement.clone(), tasks.stop_signal());
        tasks.spawn(async move {
            projector::run(&s, stop).await;
            Ok(())
        });
    }
    {
        // The daily run brings the ledger up to every partition's events
        // first, under a consumer name of its own (scheduler module doc).
        let drainer = StreamConsumer::new(
            settlement.clone(),
            store,
            consumer_config(
                args,
                format!("{consumer_name}-calendar"),
                ConsumerConfig::owned(partitions, 0, 1),
                1,
            ),
        );
        let fut = scheduler::run(
            settlement.clone(),
            consumer.clone(),
            drainer,
            args.daily_run_at,
            tasks.stop_signal(),
        );
        tasks.spawn(async move {
            fut.await;
            Ok(())
        });
    }
    {
        // The mailing queue's gauges (held invoices, queued documents and the
        // oldest one's age), so that an alert sees documents nobody collects.
        let s = settlement.clone();
        tasks.every(Duration::from_secs(60), move || {
            let s = s.clone();
            async move {
                if let Err(e) = delivery::refresh_gauges(&s.pool, s.now()).await {
                    tracing::warn!(error = %e, "reading the document queue failed");
                }
            }
        });
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
    for (dependency, up) in [("ledger_database", db), ("state_store", store.is_ok())] {
        metrics::gauge!(crate::metrics::SETTLEMENT_READY, "dependency" => dependency).set(if up {
            1.0
        } else {
            0.0
        });
    }
    match (db, store) {
        (true, Ok(())) => Ok(()),
        (false, _) => Err("ledger database unreachable".into()),
        (_, Err(why)) => Err(why.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::settlement::worker::config::{Cli, Command};

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
