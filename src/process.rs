//! What the two server processes (`callauth-gateway`, `callauth-settlement
//! run`) share around their business: logging, the shutdown signal, the set
//! of background tasks that stop together within a grace period, the gRPC
//! health service that follows a readiness probe, reflection, the
//! operations HTTP router (`/metrics`, `/healthz`, `/readyz`), and serving
//! gRPC and HTTP on a listener in plaintext or TLS (`crate::tls`: with
//! `--tls-cert`/`--tls-key` both listeners of a process serve TLS only,
//! reloading the certificate when its files change).
//!
//! Each process states only what differs: its services, its readiness probe
//! and its tasks. Readiness is a probe answering why the process is not
//! ready; `/readyz` and the gRPC health of the process's services both
//! follow it, and the gRPC health is updated by a task of its own, so a
//! health check never queues behind business traffic.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::tls::{TlsServer, TlsSettings};

/// Sets up `tracing`: `text` or `json` lines, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
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

/// A readiness probe: `Ok(())` when the process can serve, else why not
/// (a short fixed text, shown on `/readyz` and logged on change).
pub type ReadyProbe =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The background tasks of a process and the signal that stops them.
pub struct Tasks {
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
    handles: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Default for Tasks {
    fn default() -> Self {
        Tasks::new()
    }
}

impl Tasks {
    pub fn new() -> Tasks {
        let (stop_tx, stop_rx) = watch::channel(false);
        Tasks {
            stop_tx,
            stop_rx,
            handles: Vec::new(),
        }
    }

    /// A receiver that turns true when the process stops.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop_rx.clone()
    }

    /// Resolves when the process is asked to stop.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    pub fn spawn(&mut self, task: impl Future<Output = anyhow::Result<()>> + Send + 'static) {
        self.handles.push(tokio::spawn(task));
    }

    /// Runs `step` every `period` until the process stops; a step is never
    /// cut short by the stop signal.
    pub fn every<F, Fut>(&mut self, period: Duration, mut step: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let mut stop = self.stop_signal();
        self.spawn(async move {
            loop {
                step().await;
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(period) => {}
                }
            }
            Ok(())
        });
    }

    /// Asks every task to stop.
    pub fn shutdown(&self) {
        let _ = self.stop_tx.send(true);
    }

    /// Waits for the tasks after `shutdown`, at most `grace`; an error of a
    /// task (a server that failed) is returned.
    pub async fn join(self, grace: Duration) -> anyhow::Result<()> {
        let all = futures_util::future::join_all(self.handles);
        match tokio::time::timeout(grace, all).await {
            Ok(results) => {
                for r in results {
                    r.context("a task panicked")??;
                }
                Ok(())
            }
            Err(_) => {
                tracing::warn!(
                    grace_ms = grace.as_millis() as u64,
                    "in-flight work did not finish within the grace period"
                );
                Ok(())
            }
        }
    }
}

/// The gRPC health service: "" SERVING while the process runs (liveness),
/// `services` SERVING only while `probe` says ready (readiness), checked
/// every `period` by a task of its own. Everything turns NOT_SERVING when
/// the process stops. `on_change` sees each change (for a gauge).
pub async fn health_following(
    tasks: &mut Tasks,
    services: &'static [&'static str],
    probe: ReadyProbe,
    period: Duration,
    on_change: impl Fn(&Result<(), String>) + Send + Sync + 'static,
) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    let (health, service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;
    let mut stop = tasks.stop_signal();
    tasks.spawn(async move {
        let mut last: Option<Result<(), String>> = None;
        loop {
            let now = probe().await;
            if last.as_ref() != Some(&now) {
                set_all(&health, services, now.is_ok()).await;
                match &now {
                    Err(why) => tracing::warn!(reason = %why, "not ready"),
                    Ok(()) if last.is_some() => tracing::info!("ready again"),
                    Ok(()) => {}
                }
                on_change(&now);
                last = Some(now);
            }
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep(period) => {}
            }
        }
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        set_all(&health, services, false).await;
        Ok(())
    });
    service
}

async fn set_all(health: &HealthReporter, services: &[&str], ready: bool) {
    let status = if ready {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for name in services {
        health.set_service_status(*name, status).await;
    }
}

/// gRPC server reflection over callauth's and the health service's descriptors.
pub fn reflection() -> anyhow::Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")
}

#[derive(Clone)]
struct OpsState {
    prometheus: PrometheusHandle,
    ready: ReadyProbe,
}

/// `/metrics` (Prometheus text), `/healthz` (liveness) and `/readyz`
/// (readiness with its reason); a process merges its own routes into it.
pub fn ops_router(prometheus: PrometheusHandle, ready: ReadyProbe) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .with_state(OpsState { prometheus, ready })
}

async fn metrics_handler(
    State(s): State<OpsState>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        s.prometheus.render(),
    )
}

async fn ready_handler(State(s): State<OpsState>) -> (StatusCode, String) {
    match (s.ready)().await {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

/// Serves `app` on `listener` until the process stops, over TLS when `tls`
/// is given.
pub fn serve_http(
    tasks: &mut Tasks,
    listener: TcpListener,
    app: axum::Router,
    tls: Option<&Arc<TlsServer>>,
) -> anyhow::Result<()> {
    let stopped = tasks.stopped();
    match tls {
        None => tasks.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
                .context("HTTP server")
        }),
        Some(tls) => {
            let listener = tls.http_listener(tasks, listener)?;
            tasks.spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stopped)
                    .await
                    .context("HTTPS server")
            })
        }
    }
    Ok(())
}

/// Serves `router` on `listener` until the process stops, over TLS when
/// `tls` is given (each request then carries the connection's
/// [`crate::tls::PeerInfo`], which the token interceptor checks).
pub fn serve_grpc<L, ResBody>(
    tasks: &mut Tasks,
    router: tonic::transport::server::Router<L>,
    listener: TcpListener,
    tls: Option<&Arc<TlsServer>>,
) where
    L: tower::Layer<tonic::service::Routes> + Send + 'static,
    L::Service: tonic::codegen::Service<
            tonic::codegen::http::Request<tonic::body::Body>,
            Response = tonic::codegen::http::Response<ResBody>,
        > + Clone
        + Send
        + 'static,
    <L::Service as tonic::codegen::Service<tonic::codegen::http::Request<tonic::body::Body>>>::Future:
        Send,
    <L::Service as tonic::codegen::Service<tonic::codegen::http::Request<tonic::body::Body>>>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    ResBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stopped = tasks.stopped();
    match tls {
        None => {
            let incoming = grpc_incoming(listener);
            tasks.spawn(async move {
                router
                    .serve_with_incoming_shutdown(incoming, stopped)
                    .await
                    .context("gRPC server")
            })
        }
        Some(tls) => {
            let incoming = tls.grpc_incoming(tasks, listener);
            tasks.spawn(async move {
                router
                    .serve_with_incoming_shutdown(incoming, stopped)
                    .await
                    .context("gRPC server (TLS)")
            })
        }
    }
}

/// Loads the TLS configuration when `settings` asks for TLS and watches its
/// files for changes until the process stops.
pub fn tls_server(
    tasks: &mut Tasks,
    settings: Option<TlsSettings>,
) -> anyhow::Result<Option<Arc<TlsServer>>> {
    let Some(settings) = settings else {
        return Ok(None);
    };
    let server = TlsServer::load(settings).context("loading the TLS certificate")?;
    server.watch(tasks);
    Ok(Some(server))
}

/// The accepted gRPC connections of `listener`, with TCP_NODELAY: tonic's
/// builder setting applies only to listeners it binds itself, and without it
/// Nagle's algorithm meets the client's delayed ACK (~40 ms per answer).
pub fn grpc_incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Binds a listener, naming what it is for in the error.
pub async fn bind(what: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {what} to {addr}"))
}
