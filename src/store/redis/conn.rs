//! The connection to Redis: a `ConnectionManager` (one node, reconnecting by
//! itself) or a cluster connection, with deliberate timeouts, in plaintext
//! (`redis://`, `redis+cluster://`) or TLS (`rediss://`, `rediss+cluster://`).
//!
//! TLS verifies the server's certificate and host name against the system
//! trust store, or only against `--redis-ca-file` when given (a private CA);
//! `--redis-client-cert`/`--redis-client-key` answer Redis's
//! `tls-auth-clients`. A cluster's nodes are reached as announced by
//! `CLUSTER SLOTS`, so their certificates must name those addresses.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, FromRedisValue, RedisResult};

/// How to reach Redis.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// `redis://host:port[/db]` for one node, `redis+cluster://host:port,host:port,…`
    /// for a cluster; `rediss://` and `rediss+cluster://` for TLS.
    pub url: String,
    /// Prefix of every key, so that several deployments (or test runs) share a Redis.
    pub prefix: String,
    /// Per-command response timeout.
    pub response_timeout: Duration,
    pub connection_timeout: Duration,
    /// Reconnection attempts per command before it fails (one node).
    pub reconnect_retries: usize,
    /// Trust and client certificate for `rediss://` URLs.
    pub tls: RedisTls,
}

/// PEM files for TLS to Redis; all optional (the system trust store, no
/// client certificate).
#[derive(Clone, Debug, Default)]
pub struct RedisTls {
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl RedisTls {
    fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.client_cert.is_some()
    }

    fn certificates(&self) -> anyhow::Result<::redis::TlsCertificates> {
        use anyhow::Context;
        let read = |what: &str, p: &PathBuf| {
            std::fs::read(p).with_context(|| format!("reading the Redis {what} {}", p.display()))
        };
        let client_tls = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => Some(::redis::ClientTlsConfig {
                client_cert: read("client certificate", cert)?,
                client_key: read("client key", key)?,
            }),
            (None, None) => None,
            _ => anyhow::bail!("--redis-client-cert and --redis-client-key go together"),
        };
        let root_cert = match &self.ca_file {
            Some(p) => Some(read("CA file", p)?),
            None => None,
        };
        Ok(::redis::TlsCertificates {
            client_tls,
            root_cert,
        })
    }
}

/// The Redis TLS flags, shared by the gateway and the settlement worker.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RedisTlsArgs {
    /// PEM CA certificate(s) to trust for a rediss:// store instead of the
    /// system trust store (a private CA).
    #[arg(long, env = "CALLAUTH_REDIS_CA_FILE", global = true)]
    pub redis_ca_file: Option<PathBuf>,
    /// PEM client certificate for Redis's tls-auth-clients (with --redis-client-key).
    #[arg(long, env = "CALLAUTH_REDIS_CLIENT_CERT", global = true)]
    pub redis_client_cert: Option<PathBuf>,
    /// PEM private key of --redis-client-cert.
    #[arg(long, env = "CALLAUTH_REDIS_CLIENT_KEY", global = true)]
    pub redis_client_key: Option<PathBuf>,
}

impl RedisTlsArgs {
    pub fn files(&self) -> RedisTls {
        RedisTls {
            ca_file: self.redis_ca_file.clone(),
            client_cert: self.redis_client_cert.clone(),
            client_key: self.redis_client_key.clone(),
        }
    }

    /// Checks the flags against the store URL (never echoed: it may hold a password).
    pub fn validate(&self, store_url: &str) -> Result<(), String> {
        if self.redis_client_cert.is_some() != self.redis_client_key.is_some() {
            return Err("--redis-client-cert and --redis-client-key go together".into());
        }
        if self.files().is_set() && !is_tls(store_url) {
            return Err(
                "--redis-ca-file and --redis-client-cert need a rediss:// or rediss+cluster:// store"
                    .into(),
            );
        }
        Ok(())
    }
}

fn is_tls(url: &str) -> bool {
    url.starts_with("rediss://") || url.starts_with("rediss+cluster://")
}

impl RedisConfig {
    pub fn new(url: &str) -> RedisConfig {
        RedisConfig {
            url: url.to_string(),
            prefix: "ca".into(),
            response_timeout: Duration::from_millis(250),
            connection_timeout: Duration::from_millis(500),
            reconnect_retries: 1,
            tls: RedisTls::default(),
        }
    }

    pub fn is_cluster(&self) -> bool {
        self.url.starts_with("redis+cluster://") || self.url.starts_with("rediss+cluster://")
    }

    /// Whether the connection is TLS (`rediss://`, `rediss+cluster://`).
    pub fn is_tls(&self) -> bool {
        is_tls(&self.url)
    }

    /// The cluster's seed nodes as `redis://host:port` URLs (`rediss://` for TLS).
    pub fn cluster_nodes(&self) -> Vec<String> {
        let (scheme, rest) = match self.url.strip_prefix("rediss+cluster://") {
            Some(rest) => ("rediss", rest),
            None => ("redis", self.url.trim_start_matches("redis+cluster://")),
        };
        rest.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| format!("{scheme}://{}", s.trim()))
            .collect()
    }
}

/// A cheap-to-clone connection; both kinds multiplex concurrent commands over
/// few sockets (pipelining). The response timeout is applied here, per
/// command ([`Conn::query`], [`Conn::query_write`]); the client library's own
/// is only a ceiling (16 × ours).
#[derive(Clone)]
pub struct Conn {
    link: Link,
    timeout: Duration,
}

#[derive(Clone)]
enum Link {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// The client library's response timeout, as a multiple of the configured
/// one: a write waits for its answer up to its request's deadline (issue 10).
const LIBRARY_TIMEOUT_FACTOR: u32 = 16;

fn timed_out() -> ::redis::RedisError {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "response timed out").into()
}

/// The runtime the connections' drivers run on: one thread of its own
/// (issue 10). A connection's driver reads Redis's answers; on the
/// request-serving runtime, a gateway saturated with requests read answers
/// late, past the response timeout, and a request was told it failed although
/// its Function had run (a hold for a failed request). Here answers are read
/// when they arrive, and a request whose answer arrived in time gets it
/// whenever it is next polled (tokio's timeout polls the answer first).
fn io_runtime() -> &'static tokio::runtime::Handle {
    static IO: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    IO.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the Redis I/O runtime starts");
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("callauth-redis-io".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .expect("the Redis I/O thread starts");
        handle
    })
}

impl Conn {
    /// Connects on the Redis I/O runtime (its own thread, `callauth-redis-io`), so that the
    /// connection's driver runs there.
    pub async fn connect(config: &RedisConfig) -> anyhow::Result<Conn> {
        let config = config.clone();
        io_runtime()
            .spawn(async move { Conn::connect_here(&config).await })
            .await
            .map_err(|e| anyhow::anyhow!("the Redis I/O runtime failed: {e}"))?
    }

    async fn connect_here(config: &RedisConfig) -> anyhow::Result<Conn> {
        if config.is_cluster() {
            let nodes = config.cluster_nodes();
            anyhow::ensure!(
                !nodes.is_empty(),
                "redis+cluster:// needs at least one host:port"
            );
            anyhow::ensure!(
                !config.tls.is_set() || config.is_tls(),
                "Redis CA or client certificate files need a rediss+cluster:// URL"
            );
            let mut builder = ::redis::cluster::ClusterClient::builder(nodes)
                .connection_timeout(config.connection_timeout)
                .response_timeout(config.response_timeout * LIBRARY_TIMEOUT_FACTOR)
                .retries(2)
                .min_retry_wait(10)
                .max_retry_wait(100);
            if config.tls.is_set() {
                builder = builder.certs(config.tls.certificates()?);
            }
            let client = builder.build()?;
            Ok(Conn {
                link: Link::Cluster(client.get_async_connection().await?),
                timeout: config.response_timeout,
            })
        } else {
            let client = if config.tls.is_set() {
                anyhow::ensure!(
                    config.is_tls(),
                    "Redis CA or client certificate files need a rediss:// URL"
                );
                ::redis::Client::build_with_tls(config.url.as_str(), config.tls.certificates()?)?
            } else {
                ::redis::Client::open(config.url.as_str())?
            };
            let cfg = ConnectionManagerConfig::new()
                .set_response_timeout(Some(config.response_timeout * LIBRARY_TIMEOUT_FACTOR))
                .set_connection_timeout(Some(config.connection_timeout))
                .set_number_of_retries(config.reconnect_retries)
                .set_max_delay(Duration::from_millis(200));
            Ok(Conn {
                link: Link::Single(ConnectionManager::new_with_config(client, cfg).await?),
                timeout: config.response_timeout,
            })
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.link, Link::Cluster(_))
    }

    /// The configured response timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        self.query_write(cmd, self.timeout).await
    }

    /// Sends a command and waits `wait` for its answer (at least the
    /// configured timeout; a write waits up to its request's deadline: once
    /// sent it runs, and answering failure would hide what it did).
    pub async fn query_write<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        wait: Duration,
    ) -> RedisResult<T> {
        let answer = async {
            match &self.link {
                Link::Single(c) => cmd.query_async(&mut c.clone()).await,
                Link::Cluster(c) => cmd.query_async(&mut c.clone()).await,
            }
        };
        tokio::time::timeout(wait.max(self.timeout), answer)
            .await
            .unwrap_or_else(|_| Err(timed_out()))
    }

    /// Sends a pipeline (a `MULTI`/`EXEC` transaction when it is atomic; on a
    /// cluster every key of it must share one slot).
    pub async fn query_pipeline<T: FromRedisValue>(
        &self,
        pipe: &::redis::Pipeline,
    ) -> RedisResult<T> {
        let answer = async {
            match &self.link {
                Link::Single(c) => pipe.query_async(&mut c.clone()).await,
                Link::Cluster(c) => pipe.query_async(&mut c.clone()).await,
            }
        };
        tokio::time::timeout(self.timeout, answer)
            .await
            .unwrap_or_else(|_| Err(timed_out()))
    }
}
