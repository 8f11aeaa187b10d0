//! Runs the gateway: the gRPC server (`callauth.v1` services, `grpc.health.v1`,
//! reflection) and a small HTTP server (`/metrics`, `/healthz`, `/readyz`),
//! with the hold sweeper and catalogue refresher in the background.
//!
//! Like mini-redis, `start` takes already-bound listeners, so tests run the
//! real server on 127.0.0.1:0. Shutdown is graceful: health turns
//! NOT_SERVING, the listeners stop accepting, in-flight requests finish
//! within `shutdown_grace`, then the process may exit.
//!
//! Health: the empty service name "" is SERVING while the process runs
//! (liveness); `callauth.v1.Authorization` and the other services are
//! SERVING only while the state store is ready (readiness).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tonic_health::ServingStatus;

use crate::api::auth::TokenRegistry;
use crate::api::{AccountsApi, ApiState, AuthorizationApi, CatalogApi, UsageApi};
use crate::gateway::Gateway;
use crate::metrics as m;
use crate::pb;
use crate::store::Store;

/// The gRPC services whose health follows the store's readiness.
pub const SERVICE_NAMES: [&str; 4] = [
    "callauth.v1.Authorization",
    "callauth.v1.Usage",
    "callauth.v1.Catalog",
    "callauth.v1.Accounts",
];

#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Deadline for a request that carries none (a shorter client deadline wins).
    pub request_timeout: Duration,
    /// Requests served at once by the whole process; beyond it RESOURCE_EXHAUSTED.
    pub max_concurrent_requests: usize,
    pub shutdown_grace: Duration,
    pub sweep_interval: Duration,
    pub catalog_refresh_interval: Duration,
    /// Close connections after this age so that clients re-balance across
    /// replicas behind a connection-level balancer (None: never).
    pub max_connection_age: Option<Duration>,
    pub http2_keepalive_interval: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            request_timeout: Duration::from_millis(2000),
            max_concurrent_requests: 4096,
            shutdown_grace: Duration::from_secs(10),
            sweep_interval: Duration::from_secs(1),
            catalog_refresh_interval: Duration::from_secs(1),
            max_connection_age: Some(Duration::from_secs(300)),
            http2_keepalive_interval: Duration::from_secs(30),
        }
    }
}

/// A running gateway.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
    grace: Duration,
}

impl Running {
    /// Asks every part to stop.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Waits for the servers to stop, at most the shutdown grace period after
    /// `shutdown` was called.
    pub async fn stopped(self) -> anyhow::Result<()> {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|s| *s).await;
        let all = futures_util::future::join_all(self.tasks);
        match tokio::time::timeout(self.grace, all).await {
            Ok(results) => {
                for r in results {
                    r.context("server task panicked")??;
                }
                Ok(())
            }
            Err(_) => {
                tracing::warn!(
                    grace_ms = self.grace.as_millis() as u64,
                    "in-flight requests did not finish within the grace period"
                );
                Ok(())
            }
        }
    }
}

/// Starts the gateway on the given listeners.
pub async fn start<S: Store>(
    gateway: Arc<Gateway<S>>,
    tokens: TokenRegistry,
    grpc: TcpListener,
    http: TcpListener,
    opts: ServerOptions,
) -> anyhow::Result<Running> {
    let prometheus = m::install();
    m::preregister_gateway(gateway.store().backend());
    gateway
        .refresh_catalog()
        .await
        .context("loading the catalogue from the state store")?;
    let grpc_addr = grpc.local_addr()?;
    let http_addr = http.local_addr()?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;

    // Readiness follows the store.
    {
        let gateway = gateway.clone();
        let health = health.clone();
        let mut stop = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut last = None;
            loop {
                let ready = gateway.store().ready().await;
                if last != Some(ready) {
                    let status = if ready {
                        ServingStatus::Serving
                    } else {
                        ServingStatus::NotServing
                    };
                    for name in SERVICE_NAMES {
                        health.set_service_status(name, status).await;
                    }
                    metrics::gauge!(m::STORE_READY).set(if ready { 1.0 } else { 0.0 });
                    if !ready {
                        tracing::warn!(
                            backend = gateway.store().backend(),
                            "state store not ready"
                        );
                    } else if last.is_some() {
                        tracing::info!(
                            backend = gateway.store().backend(),
                            "state store ready again"
                        );
                    }
                    last = Some(ready);
                }
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
            for name in [""].into_iter().chain(SERVICE_NAMES) {
                health
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
            Ok(())
        }));
    }

    // Sweeper and catalogue refresher.
    {
        let gateway = gateway.clone();
        let stop = shutdown_rx.clone();
        let (sweep, refresh) = (opts.sweep_interval, opts.catalog_refresh_interval);
        tasks.push(tokio::spawn(async move {
            gateway.run_background(sweep, refresh, stop).await;
            Ok(())
        }));
    }

    // Metrics upkeep (drains histogram buffers between scrapes).
    {
        let handle = prometheus.clone();
        let mut stop = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => handle.run_upkeep(),
                }
            }
            Ok(())
        }));
    }

    // HTTP: metrics and plain health endpoints.
    {
        let state = HttpState {
            prometheus,
            ready: {
                let gateway = gateway.clone();
                Arc::new(move || {
                    let gateway = gateway.clone();
                    Box::pin(async move { gateway.store().ready().await })
                        as std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
                })
            },
        };
        let app = axum::Router::new()
            .route("/metrics", get(metrics_handler))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(ready_handler))
            .with_state(state);
        let mut stop = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            axum::serve(http, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
                .context("HTTP server")
        }));
    }

    // gRPC.
    {
        let state = Arc::new(ApiState {
            gateway: gateway.clone(),
            limiter: Arc::new(Semaphore::new(opts.max_concurrent_requests)),
        });
        let intercept = tokens.interceptor();
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("building the reflection service")?;
        let mut builder = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .timeout(opts.request_timeout)
            .http2_keepalive_interval(Some(opts.http2_keepalive_interval))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)));
        if let Some(age) = opts.max_connection_age {
            builder = builder.max_connection_age(age);
        }
        let router = builder
            .add_service(health_service)
            .add_service(reflection)
            .add_service(
                pb::authorization_server::AuthorizationServer::with_interceptor(
                    AuthorizationApi(state.clone()),
                    intercept.clone(),
                ),
            )
            .add_service(pb::usage_server::UsageServer::with_interceptor(
                UsageApi(state.clone()),
                intercept.clone(),
            ))
            .add_service(pb::catalog_server::CatalogServer::with_interceptor(
                CatalogApi(state.clone()),
                intercept.clone(),
            ))
            .add_service(pb::accounts_server::AccountsServer::with_interceptor(
                AccountsApi(state),
                intercept,
            ));
        let mut stop = shutdown_rx.clone();
        // TCP_NODELAY must be set on the accepted sockets: tonic's builder
        // setting applies only to listeners it binds itself, and without it
        // Nagle's algorithm meets the client's delayed ACK (~40 ms per answer).
        let incoming = tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true));
        tasks.push(tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
                .context("gRPC server")
        }));
    }

    tracing::info!(%grpc_addr, %http_addr, backend = gateway.store().backend(), "gateway listening");
    Ok(Running {
        grpc_addr,
        http_addr,
        shutdown: shutdown_tx,
        tasks,
        grace: opts.shutdown_grace,
    })
}

type ReadyFn = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> + Send + Sync,
>;

#[derive(Clone)]
struct HttpState {
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
    ready: ReadyFn,
}

async fn metrics_handler(
    State(s): State<HttpState>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        s.prometheus.render(),
    )
}

async fn ready_handler(State(s): State<HttpState>) -> (StatusCode, &'static str) {
    if (s.ready)().await {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "state store not ready\n")
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (Kubernetes).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
