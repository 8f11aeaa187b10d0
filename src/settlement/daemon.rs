//! `callauth-settlement run`: the long-running worker. It consumes the event
//! streams into the ledger, pushes account changes back to the state store,
//! runs the daily calendar at the configured Stockholm time (one replica at
//! a time), reconciles the store with the ledger after each daily run, and
//! serves the Settlement gRPC API, the Swish callback, `/metrics`,
//! `/healthz` and `/readyz`. Shutdown is graceful on SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::watch;
use tonic_health::ServingStatus;

use crate::api::auth::TokenRegistry;
use crate::clock::SystemClock;
use crate::domain::CodeHasher;
use crate::pb;
use crate::settlement::api::SettlementApi;
use crate::settlement::config::{Common, RunArgs};
use crate::settlement::consumer::{ConsumerConfig, StreamConsumer};
use crate::settlement::context::{connect, migrate, Settlement};
use crate::settlement::{calendar, daily, delivery, projector, reconcile, swish};
use crate::store::redis::RedisStore;
use crate::store::Store;

pub async fn run(common: &Common, args: &RunArgs) -> anyhow::Result<()> {
    let policy = common.policy.policy()?;
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
    let consumer_name = args
        .consumer_name
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("settlement-{}", args.replica_index));
    let consumer = Arc::new(StreamConsumer::new(
        settlement.clone(),
        store.clone(),
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
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();

    {
        let consumer = consumer.clone();
        let rx = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = consumer.run(rx).await {
                tracing::error!(error = %e, "event consumer stopped");
            }
        }));
    }
    {
        let s = settlement.clone();
        let mut rx = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                if let Err(e) = projector::flush(&s).await {
                    tracing::warn!(error = %e, "pushing account changes to the state store failed");
                }
                tokio::select! {
                    _ = rx.changed() => break,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }));
    }
    {
        let s = settlement.clone();
        let consumer = consumer.clone();
        let run_at = args.daily_run_at;
        let mut rx = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let now_ms = s.clock.now_ms();
                let today = calendar::stockholm_date(now_ms);
                let local = crate::settlement::context::ms_to_utc(now_ms)
                    .with_timezone(&chrono_tz::Europe::Stockholm)
                    .time();
                if local >= run_at {
                    match daily::ran(&s.pool, today).await {
                        Ok(false) => match daily::run_day(&s, today).await {
                            Ok(_) => {
                                if matches!(consumer.caught_up().await, Ok(true)) {
                                    match reconcile::reconcile(&s, false).await {
                                        Ok(r) if !r.drifting.is_empty() => tracing::warn!(accounts = r.drifting.len(), drift_ore = r.total_drift_ore, "reconciliation found drift; run `callauth-settlement reconcile --repair` after review"),
                                        Ok(_) => {}
                                        Err(e) => tracing::warn!(error = %e, "reconciliation failed"),
                                    }
                                }
                            }
                            Err(e) => tracing::error!(%today, error = %e, "daily calendar run failed; retried"),
                        },
                        Ok(true) => {}
                        Err(e) => tracing::warn!(error = %e, "checking the calendar failed"),
                    }
                }
                tokio::select! {
                    _ = rx.changed() => break,
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
            }
        }));
    }

    // The mailing queue's gauges (held invoices, queued documents and the
    // oldest one's age), so that an alert sees documents nobody collects.
    {
        let s = settlement.clone();
        let mut rx = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                if let Err(e) = delivery::refresh_gauges(&s.pool, s.now()).await {
                    tracing::warn!(error = %e, "reading the document queue failed");
                }
                tokio::select! {
                    _ = rx.changed() => break,
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
            }
        }));
    }

    // HTTP: metrics, health, Swish callbacks.
    let http = tokio::net::TcpListener::bind(args.http_listen)
        .await
        .with_context(|| format!("binding HTTP to {}", args.http_listen))?;
    let ready_state = settlement.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let p = prometheus.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        p.render(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz::<RedisStore>).with_state(ready_state))
        .merge(swish::router(
            settlement.clone(),
            args.swish_callback_token.clone(),
        ));
    {
        let mut rx = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(http, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
        }));
    }

    // gRPC: the Settlement API, health and reflection.
    let grpc = tokio::net::TcpListener::bind(args.grpc_listen)
        .await
        .with_context(|| format!("binding gRPC to {}", args.grpc_listen))?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;
    // Readiness of the two dependencies, as a gauge and as the health of
    // the Settlement service (checked every 2 s).
    {
        let s = settlement.clone();
        let health = health.clone();
        let mut rx = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let (db, store) = dependencies_ready(&s).await;
                for (dependency, up) in [("ledger_database", db), ("state_store", store)] {
                    metrics::gauge!(crate::metrics::SETTLEMENT_READY, "dependency" => dependency)
                        .set(if up { 1.0 } else { 0.0 });
                }
                let status = if db && store {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                health
                    .set_service_status("callauth.v1.Settlement", status)
                    .await;
                tokio::select! {
                    _ = rx.changed() => break,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }));
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let api = pb::settlement_server::SettlementServer::with_interceptor(
        SettlementApi {
            settlement: settlement.clone(),
            hasher,
        },
        tokens.interceptor(),
    );
    {
        let mut rx = shutdown_rx.clone();
        // TCP_NODELAY must be set on the accepted sockets: tonic's builder
        // setting applies only to listeners it binds itself, and without it
        // Nagle's algorithm meets the client's delayed ACK (~40 ms per answer).
        let incoming = tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true));
        tasks.push(tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .timeout(Duration::from_secs(30))
                .add_service(health_service)
                .add_service(reflection)
                .add_service(api)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
        }));
    }
    tracing::info!(grpc = %args.grpc_listen, http = %args.http_listen, consumer = %consumer_name, "settlement worker running");
    crate::server::shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    let _ = tokio::time::timeout(
        Duration::from_secs(15),
        futures_util::future::join_all(tasks),
    )
    .await;
    Ok(())
}

/// Whether the ledger database and the state store answer.
async fn dependencies_ready<S: Store>(s: &Settlement<S>) -> (bool, bool) {
    let db = sqlx::query("select 1").execute(&s.pool).await.is_ok();
    (db, s.store.ready().await)
}

async fn readyz<S: Store>(State(s): State<Arc<Settlement<S>>>) -> (StatusCode, &'static str) {
    let (db, store) = dependencies_ready(&s).await;
    match (db, store) {
        (true, true) => (StatusCode::OK, "ready\n"),
        (false, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "ledger database unreachable\n",
        ),
        (_, false) => (StatusCode::SERVICE_UNAVAILABLE, "state store not ready\n"),
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
