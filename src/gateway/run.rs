//! Builds a gateway from its configuration and runs it until a shutdown
//! signal: what `callauth-gateway` does, kept in the library so the binary
//! stays a few lines (STYLE "library first").

use std::sync::Arc;

use anyhow::{bail, Context};

use crate::auth::TokenRegistry;
use crate::clock::SystemClock;
use crate::domain::CodeHasher;
use crate::gateway::catalog_file::{CatalogFile, DEMO};
use crate::gateway::config::GatewayConfig;
use crate::gateway::server;
use crate::gateway::Gateway;
use crate::store::memory::MemoryStore;
use crate::store::outbox::Outbox;
use crate::store::redis::RedisStore;
use crate::store::Store;

pub async fn gateway(cfg: GatewayConfig) -> anyhow::Result<()> {
    if cfg.print_function_library {
        print!("{}", crate::store::redis::library_source());
        return Ok(());
    }
    cfg.validate().map_err(anyhow::Error::msg)?;
    crate::metrics::install();
    let policy = cfg.store_policy();
    if cfg.store == "memory" {
        let mut outbox = Outbox::new(
            policy.partitions,
            crate::store::memory::DEFAULT_OUTBOX_CAPACITY,
        );
        if let Some(path) = &cfg.outbox_jsonl {
            outbox = outbox
                .with_jsonl_file(path)
                .with_context(|| format!("opening outbox file {}", path.display()))?;
        }
        let store = MemoryStore::with_outbox(policy, outbox);
        run_with(cfg, store, true).await
    } else {
        let redis = cfg.redis_config();
        let store = if cfg.record_policy {
            RedisStore::connect_recording(&redis, policy).await
        } else {
            RedisStore::connect(&redis, policy).await
        };
        let store = store.with_context(|| format!("connecting to {}", cfg.store))?;
        tracing::info!(store = %cfg.store, prefix = %redis.prefix, version = crate::store::redis::LIBRARY_VERSION, "redis function library loaded");
        if cfg.load_functions_only {
            return Ok(());
        }
        let trimmer = store.clone();
        let cap = cfg.stream_cap_without_consumers;
        let partitions = cfg.store_policy.partitions;
        tokio::spawn(async move { trim_loop(trimmer, cap, partitions).await });
        run_with(cfg, store, false).await
    }
}

/// Trims the event streams behind their consumer groups every 10 s and
/// exports stream length and group lag per partition.
async fn trim_loop(store: RedisStore, cap_without_groups: u64, partitions: u32) {
    for p in 0..partitions {
        // The settlement group's lag exists from the start (0 until measured).
        metrics::gauge!(crate::metrics::OUTBOX_CONSUMER_LAG_EVENTS, "partition" => p.to_string(), "group" => crate::store::redis::streams::SETTLEMENT_GROUP)
            .increment(0.0);
    }
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    let mut warned = false;
    loop {
        tick.tick().await;
        let mut without_groups = 0;
        for p in 0..partitions {
            match store.stream_groups(p).await {
                Ok(groups) => {
                    if groups.is_empty() {
                        without_groups += 1;
                    }
                    for g in groups {
                        let lag = g.lag.unwrap_or(0) + g.pending;
                        metrics::gauge!(crate::metrics::OUTBOX_CONSUMER_LAG_EVENTS, "partition" => p.to_string(), "group" => g.name)
                            .set(lag as f64);
                    }
                }
                Err(e) => tracing::warn!(partition = p, error = %e, "reading stream groups failed"),
            }
        }
        if without_groups > 0 && !warned {
            tracing::warn!(
                partitions = without_groups,
                "event streams have no consumer group: is callauth-settlement running?"
            );
            warned = true;
        }
        match store.trim_streams(cap_without_groups).await {
            Ok(n) if n > 0 => tracing::debug!(removed = n, "event streams trimmed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "trimming event streams failed"),
        }
    }
}

/// Runs the gateway on `store`. `ephemeral` stores lose everything at exit,
/// so they may use a random prepaid-code key and the demo catalogue by default.
pub async fn run_with<S: Store>(
    cfg: GatewayConfig,
    store: S,
    ephemeral: bool,
) -> anyhow::Result<()> {
    let demo = cfg.demo || (ephemeral && cfg.catalog.is_none());
    let demo_file = if demo {
        Some(CatalogFile::parse(DEMO).context("the built-in demo catalogue")?)
    } else {
        None
    };

    let tokens = match (&cfg.tokens_file, &demo_file) {
        (Some(path), _) => TokenRegistry::from_file(path)?,
        (None, Some(d)) => {
            tracing::warn!(
                "using the PUBLIC demo tokens from examples/demo.toml: for a laptop only"
            );
            TokenRegistry::from_clients(&d.clients)?
        }
        (None, None) => bail!("--tokens-file (CALLAUTH_TOKENS_FILE) is required outside demo mode"),
    };

    let hasher = match &cfg.prepaid_code_key {
        Some(key) => CodeHasher::new(key.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?,
        None if ephemeral => {
            tracing::warn!("no --prepaid-code-key: using a random key (codes die with this process, like the memory store)");
            let key: [u8; 32] = rand::random();
            CodeHasher::new(&key).expect("32 bytes")
        }
        None => bail!(
            "--prepaid-code-key (CALLAUTH_PREPAID_CODE_KEY) is required with a persistent store"
        ),
    };

    let gateway = Arc::new(Gateway::new(
        store,
        Arc::new(SystemClock),
        hasher,
        cfg.limits(),
    ));
    if let Some(d) = &demo_file {
        d.load_into(&gateway)
            .await
            .context("loading the demo catalogue")?;
        tracing::info!(
            services = d.services.len(),
            directory = d.directory.len(),
            "demo catalogue loaded"
        );
    }
    if let Some(path) = &cfg.catalog {
        let f = CatalogFile::read(path)?;
        f.load_into(&gateway)
            .await
            .with_context(|| format!("loading {}", path.display()))?;
        tracing::info!(path = %path.display(), services = f.services.len(), "catalogue loaded");
    }

    let grpc = tokio::net::TcpListener::bind(cfg.grpc_listen)
        .await
        .with_context(|| format!("binding gRPC to {}", cfg.grpc_listen))?;
    let http = tokio::net::TcpListener::bind(cfg.http_listen)
        .await
        .with_context(|| format!("binding HTTP to {}", cfg.http_listen))?;
    let mut opts = cfg.server_options();
    opts.tls = cfg.tls.settings().map_err(anyhow::Error::msg)?;
    let running = server::start(gateway, tokens, grpc, http, opts).await?;
    crate::process::shutdown_signal().await;
    tracing::info!("shutting down: draining in-flight requests");
    running.shutdown();
    running.stopped().await
}
