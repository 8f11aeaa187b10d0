//! Runs the gateway: the gRPC server (`callauth.v1` services, `grpc.health.v1`,
//! reflection) and a small HTTP server (`/metrics`, `/healthz`, `/readyz`),
//! with the hold sweeper and catalogue refresher in the background.
//!
//! Like mini-redis, `start` takes already-bound listeners, so tests run the
//! real server on 127.0.0.1:0. Shutdown is graceful: health turns
//! NOT_SERVING, the listeners stop accepting, in-flight requests finish
//! within `shutdown_grace` (usage streams end after their record in
//! progress, idle ones at once: issue 10), then the process may exit.
//!
//! With `opts.tls` both listeners serve TLS only (`crate::tls`), the gRPC
//! listener with optional client certificates.
//!
//! Health: the empty service name "" is SERVING while the process runs
//! (liveness); `callauth.v1.Authorization` and the other services are
//! SERVING only while the state store is ready (readiness).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::api::edge::{EdgeLayer, QueueBudget};
use super::api::{AccountsApi, ApiState, AuthorizationApi, CatalogApi, UsageApi, UsageStreams};
use super::Gateway;
use crate::auth::TokenRegistry;
use crate::metrics as m;
use crate::pb;
use crate::process::{self, ReadyProbe, Tasks};
use crate::store::Store;
use crate::tls::TlsSettings;

/// The gRPC services whose health follows the store's readiness.
pub const SERVICE_NAMES: [&str; 4] = [
    "callauth.v1.Authorization",
    "callauth.v1.Usage",
    "callauth.v1.Catalog",
    "callauth.v1.Accounts",
];

/// The largest header block a request may carry. hyper's default (16 KiB)
/// refused a longer bearer token with HTTP 431 before any gRPC code ran, and
/// clients reported UNKNOWN; up to this size the interceptor answers
/// UNAUTHENTICATED. Envoy's default limit is 60 KiB; headers are held per
/// request, like its message (at most 4 MiB), so this adds little.
pub const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;

/// The default concurrency limit (issue 10). One Redis primary runs about
/// 10 000 authorize Functions a second on the reference machine
/// (docs/performance.md); 256 commands in flight then wait at most ~26 ms
/// in Redis, a tenth of the 250 ms response timeout, so an admitted command
/// does not time out from queueing alone. The 4096 before let the queue
/// exceed the timeout and the Functions of failed requests made holds.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 256;

#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Deadline for a request that carries none (a shorter client deadline
    /// wins); when it passes the answer is DEADLINE_EXCEEDED.
    pub request_timeout: Duration,
    /// Requests served at once by the whole process; beyond it
    /// RESOURCE_EXHAUSTED at once, never a queue (issue 10: sized so that
    /// this many store commands in flight wait far less than the store's
    /// response timeout — see docs/runbook.md "Overload").
    pub max_concurrent_requests: usize,
    /// How long a request may wait, from arrival, before its store command
    /// is sent; later it is refused RESOURCE_EXHAUSTED without sending it.
    pub queue_budget: Duration,
    /// The store's per-command response timeout, kept free before each
    /// request's deadline (`api::edge::QueueBudget`).
    pub store_timeout: Duration,
    /// `Usage.Report` streams open at once in the process.
    pub max_usage_streams: usize,
    /// A usage stream with no record for this long is closed.
    pub usage_stream_idle: Duration,
    /// HTTP/2 streams (requests) a client may have open on one connection
    /// (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub http2_max_concurrent_streams: u32,
    pub shutdown_grace: Duration,
    pub sweep_interval: Duration,
    pub catalog_refresh_interval: Duration,
    /// Close connections after this age so that clients re-balance across
    /// replicas behind a connection-level balancer (None: never).
    pub max_connection_age: Option<Duration>,
    pub http2_keepalive_interval: Duration,
    /// TLS for both listeners (None: plaintext).
    pub tls: Option<TlsSettings>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            request_timeout: Duration::from_millis(2000),
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            queue_budget: Duration::from_millis(250),
            store_timeout: Duration::from_millis(250),
            max_usage_streams: 1024,
            usage_stream_idle: Duration::from_secs(60),
            http2_max_concurrent_streams: 1024,
            shutdown_grace: Duration::from_secs(10),
            sweep_interval: Duration::from_secs(1),
            catalog_refresh_interval: Duration::from_secs(1),
            max_connection_age: Some(Duration::from_secs(300)),
            http2_keepalive_interval: Duration::from_secs(30),
            tls: None,
        }
    }
}

/// A running gateway.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    tasks: Tasks,
    grace: Duration,
}

impl Running {
    /// Asks every part to stop.
    pub fn shutdown(&self) {
        self.tasks.shutdown();
    }

    /// Waits for the servers to stop, at most the shutdown grace period after
    /// `shutdown` was called.
    pub async fn stopped(self) -> anyhow::Result<()> {
        self.tasks.stopped().await;
        self.tasks.join(self.grace).await
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
    let mut tasks = Tasks::new();
    let tls = process::tls_server(&mut tasks, opts.tls.clone())?;

    let ready: ReadyProbe = {
        let gateway = gateway.clone();
        Arc::new(move || {
            let gateway = gateway.clone();
            Box::pin(async move {
                let ready = gateway.store().ready().await;
                gateway.set_ready(&ready);
                ready.map_err(|why| why.to_string())
            })
        })
    };
    let health_service = process::health_following(
        &mut tasks,
        &SERVICE_NAMES,
        ready.clone(),
        Duration::from_millis(500),
        |now| metrics::gauge!(m::STORE_READY).set(if now.is_ok() { 1.0 } else { 0.0 }),
    )
    .await;

    // Sweeper and catalogue refresher.
    {
        let gateway = gateway.clone();
        let stop = tasks.stop_signal();
        let (sweep, refresh) = (opts.sweep_interval, opts.catalog_refresh_interval);
        tasks.spawn(async move {
            gateway.run_background(sweep, refresh, stop).await;
            Ok(())
        });
    }

    // Metrics upkeep (drains histogram buffers between scrapes).
    {
        let handle = prometheus.clone();
        tasks.every(Duration::from_secs(5), move || {
            handle.run_upkeep();
            std::future::ready(())
        });
    }

    process::serve_http(
        &mut tasks,
        http,
        process::ops_router(prometheus, ready),
        tls.as_ref(),
    )?;

    // gRPC.
    {
        let state = Arc::new(ApiState {
            gateway: gateway.clone(),
            limiter: Arc::new(Semaphore::new(opts.max_concurrent_requests)),
            usage: UsageStreams {
                open: Arc::new(Semaphore::new(opts.max_usage_streams)),
                idle: opts.usage_stream_idle,
                max_age: opts.max_connection_age,
                stop: tasks.stop_signal(),
            },
        });
        let intercept = tokens.interceptor();
        // No tonic `timeout`: the edge layer keeps the deadlines, so that a
        // deadline hit is DEADLINE_EXCEEDED and counted (api::edge).
        let mut builder = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
            // Issue 10: advertised, so one connection cannot open 10 000.
            .max_concurrent_streams(Some(opts.http2_max_concurrent_streams))
            .http2_keepalive_interval(Some(opts.http2_keepalive_interval))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)));
        if let Some(age) = opts.max_connection_age {
            builder = builder.max_connection_age(age);
        }
        let router = builder
            .layer(EdgeLayer::new(
                &SERVICE_NAMES,
                opts.request_timeout,
                QueueBudget {
                    queue: opts.queue_budget,
                    store_timeout: opts.store_timeout,
                },
            ))
            .add_service(health_service)
            .add_service(process::reflection()?)
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
        process::serve_grpc(&mut tasks, router, grpc, tls.as_ref());
    }

    tracing::info!(%grpc_addr, %http_addr, backend = gateway.store().backend(), tls = tls.is_some(), "gateway listening");
    Ok(Running {
        grpc_addr,
        http_addr,
        tasks,
        grace: opts.shutdown_grace,
    })
}
