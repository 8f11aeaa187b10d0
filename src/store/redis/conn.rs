//! The connection to Redis: a `ConnectionManager` (one node, reconnecting by
//! itself) or a cluster connection, with deliberate timeouts.

use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, FromRedisValue, RedisResult};

/// How to reach Redis.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// `redis://host:port[/db]` for one node, `redis+cluster://host:port,host:port,…`
    /// for a cluster (`rediss://` and `rediss+cluster://` for TLS are not built in).
    pub url: String,
    /// Prefix of every key, so that several deployments (or test runs) share a Redis.
    pub prefix: String,
    /// Per-command response timeout.
    pub response_timeout: Duration,
    pub connection_timeout: Duration,
    /// Reconnection attempts per command before it fails (one node).
    pub reconnect_retries: usize,
}

impl RedisConfig {
    pub fn new(url: &str) -> RedisConfig {
        RedisConfig {
            url: url.to_string(),
            prefix: "ca".into(),
            response_timeout: Duration::from_millis(250),
            connection_timeout: Duration::from_millis(500),
            reconnect_retries: 1,
        }
    }

    pub fn is_cluster(&self) -> bool {
        self.url.starts_with("redis+cluster://")
    }

    /// The cluster's seed nodes as `redis://host:port` URLs.
    pub fn cluster_nodes(&self) -> Vec<String> {
        self.url
            .trim_start_matches("redis+cluster://")
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| format!("redis://{}", s.trim()))
            .collect()
    }
}

/// A cheap-to-clone connection; both kinds multiplex concurrent commands over
/// few sockets (pipelining).
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    pub async fn connect(config: &RedisConfig) -> anyhow::Result<Conn> {
        if config.is_cluster() {
            let nodes = config.cluster_nodes();
            anyhow::ensure!(
                !nodes.is_empty(),
                "redis+cluster:// needs at least one host:port"
            );
            let client = ::redis::cluster::ClusterClient::builder(nodes)
                .connection_timeout(config.connection_timeout)
                .response_timeout(config.response_timeout)
                .retries(2)
                .min_retry_wait(10)
                .max_retry_wait(100)
                .build()?;
            Ok(Conn::Cluster(client.get_async_connection().await?))
        } else {
            let client = ::redis::Client::open(config.url.as_str())?;
            let cfg = ConnectionManagerConfig::new()
                .set_response_timeout(Some(config.response_timeout))
                .set_connection_timeout(Some(config.connection_timeout))
                .set_number_of_retries(config.reconnect_retries)
                .set_max_delay(Duration::from_millis(200));
            Ok(Conn::Single(
                ConnectionManager::new_with_config(client, cfg).await?,
            ))
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }

    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query_async(&mut c.clone()).await,
            Conn::Cluster(c) => cmd.query_async(&mut c.clone()).await,
        }
    }

    /// Sends a pipeline (a `MULTI`/`EXEC` transaction when it is atomic; on a
    /// cluster every key of it must share one slot).
    pub async fn query_pipeline<T: FromRedisValue>(
        &self,
        pipe: &::redis::Pipeline,
    ) -> RedisResult<T> {
        match self {
            Conn::Single(c) => pipe.query_async(&mut c.clone()).await,
            Conn::Cluster(c) => pipe.query_async(&mut c.clone()).await,
        }
    }
}
