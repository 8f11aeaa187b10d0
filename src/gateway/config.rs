//! The gateway's configuration: one `clap` struct, every flag also an
//! environment variable (`CALLAUTH_…`), secrets never printed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::gateway::server::ServerOptions;
use crate::gateway::GatewayLimits;
use crate::store::policy::StorePolicyArgs;
use crate::store::StorePolicy;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "callauth-gateway",
    version,
    about = "Real-time call authorization gateway for separately invoiced premium-rate calls"
)]
pub struct GatewayConfig {
    /// gRPC listen address.
    #[arg(long, env = "CALLAUTH_GRPC_LISTEN", default_value = "127.0.0.1:50051")]
    pub grpc_listen: SocketAddr,

    /// HTTP listen address for /metrics, /healthz and /readyz.
    #[arg(long, env = "CALLAUTH_HTTP_LISTEN", default_value = "127.0.0.1:9090")]
    pub http_listen: SocketAddr,

    /// State store: "memory" (embedded, nothing persists), "redis://host:port[/db]",
    /// or "redis+cluster://host:port,host:port,…"; "rediss://" and
    /// "rediss+cluster://" for TLS (see --redis-ca-file).
    #[arg(long, env = "CALLAUTH_STORE", default_value = "memory")]
    pub store: String,

    /// Load the demo catalogue, directory and demo tokens (examples/demo.toml).
    /// On by default with the memory store when no --catalog is given.
    #[arg(long, env = "CALLAUTH_DEMO")]
    pub demo: bool,

    /// A catalogue file (merchants, services, directory) to load at start.
    #[arg(long, env = "CALLAUTH_CATALOG")]
    pub catalog: Option<PathBuf>,

    /// Client tokens (TOML, see README "Security"). Required unless --demo.
    #[arg(long, env = "CALLAUTH_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Secret key (at least 32 bytes) for hashing prepaid codes. Required with
    /// a persistent store; a random one is made for the memory store.
    #[arg(long, env = "CALLAUTH_PREPAID_CODE_KEY", hide_env_values = true)]
    pub prepaid_code_key: Option<String>,

    /// Prefix of every Redis key (several deployments may share a Redis).
    #[arg(long, env = "CALLAUTH_REDIS_PREFIX", default_value = "ca")]
    pub redis_prefix: String,

    /// Redis per-command response timeout, milliseconds.
    #[arg(long, env = "CALLAUTH_REDIS_TIMEOUT_MS", default_value_t = 250)]
    pub redis_timeout_ms: u64,

    /// Redis connect timeout, milliseconds.
    #[arg(long, env = "CALLAUTH_REDIS_CONNECT_TIMEOUT_MS", default_value_t = 500)]
    pub redis_connect_timeout_ms: u64,

    /// Entries kept in a partition's event stream while no consumer group
    /// reads it (with groups, streams are trimmed behind the slowest one).
    #[arg(
        long,
        env = "CALLAUTH_STREAM_CAP_WITHOUT_CONSUMERS",
        default_value_t = 1_000_000
    )]
    pub stream_cap_without_consumers: u64,

    /// Load the Redis Function library and exit (the Helm hook job).
    #[arg(long)]
    pub load_functions_only: bool,

    /// Print the Redis Function library (the exact source `FUNCTION LOAD`
    /// receives) and exit: for a managed Redis whose functions are loaded by
    /// other tooling, and for benchmarks of the Functions alone.
    #[arg(long)]
    pub print_function_library: bool,

    /// Also write every outbox event to this JSON-lines file (memory store).
    #[arg(long, env = "CALLAUTH_OUTBOX_JSONL")]
    pub outbox_jsonl: Option<PathBuf>,

    /// The rules the state store applies (shared with callauth-settlement).
    #[command(flatten)]
    pub store_policy: StorePolicyArgs,

    /// Record this process's store policy in the state store even when
    /// another one is recorded (after an intended change of the limits or
    /// partitions; every gateway and settlement worker must then use it).
    #[arg(long)]
    pub record_policy: bool,

    /// How far ahead of the gateway's clock a usage record may start and end
    /// (started_at + duration), seconds: usage cannot have happened after it
    /// was reported, so this is the merchants' clock skew.
    #[arg(long, env = "CALLAUTH_USAGE_CLOCK_SKEW_SECONDS", default_value_t = 60)]
    pub usage_clock_skew_seconds: u32,

    /// How far ahead of the gateway's clock a consent step (step1_at,
    /// step2_at) may be, milliseconds: the IVRs' clock skew.
    #[arg(long, env = "CALLAUTH_CONSENT_CLOCK_SKEW_MS", default_value_t = 5_000)]
    pub consent_clock_skew_ms: u32,

    /// How long before the Authorize that carries it the caller's first
    /// confirmation may be, seconds; older consent must be asked for again.
    #[arg(long, env = "CALLAUTH_CONSENT_MAX_AGE_SECONDS", default_value_t = 900)]
    pub consent_max_age_seconds: u32,

    /// Deadline for requests that carry none, milliseconds.
    #[arg(long, env = "CALLAUTH_REQUEST_TIMEOUT_MS", default_value_t = 2000)]
    pub request_timeout_ms: u64,

    /// Requests served at once by the process; beyond it RESOURCE_EXHAUSTED
    /// at once (no queue). Size it to the store's throughput × a tenth of
    /// --redis-timeout-ms (docs/runbook.md "Overload").
    #[arg(
        long,
        env = "CALLAUTH_MAX_CONCURRENT_REQUESTS",
        default_value_t = crate::gateway::server::DEFAULT_MAX_CONCURRENT_REQUESTS
    )]
    pub max_concurrent_requests: usize,

    /// How long a request may wait, from its arrival, before its Redis
    /// command is sent, milliseconds; later it is refused RESOURCE_EXHAUSTED
    /// without sending anything (so it leaves no hold).
    #[arg(long, env = "CALLAUTH_QUEUE_BUDGET_MS", default_value_t = 250)]
    pub queue_budget_ms: u64,

    /// Usage.Report streams open at once in the process; beyond it
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "CALLAUTH_MAX_USAGE_STREAMS", default_value_t = 1024)]
    pub max_usage_streams: usize,

    /// A Usage.Report stream with no record for this many seconds is closed
    /// (UNAVAILABLE; the merchant opens a new one).
    #[arg(long, env = "CALLAUTH_USAGE_STREAM_IDLE_SECONDS", default_value_t = 60)]
    pub usage_stream_idle_seconds: u64,

    /// Requests a client may have open at once on one HTTP/2 connection
    /// (advertised as SETTINGS_MAX_CONCURRENT_STREAMS).
    #[arg(
        long,
        env = "CALLAUTH_HTTP2_MAX_CONCURRENT_STREAMS",
        default_value_t = 1024
    )]
    pub http2_max_concurrent_streams: u32,

    /// Seconds in-flight requests get to finish at shutdown.
    #[arg(long, env = "CALLAUTH_SHUTDOWN_GRACE_SECONDS", default_value_t = 10)]
    pub shutdown_grace_seconds: u64,

    /// Close client connections after this many seconds (0 = never) so that
    /// clients re-balance over replicas.
    #[arg(
        long,
        env = "CALLAUTH_MAX_CONNECTION_AGE_SECONDS",
        default_value_t = 300
    )]
    pub max_connection_age_seconds: u64,

    /// How often the catalogue version is checked, milliseconds (the
    /// staleness bound for changes made through another gateway).
    #[arg(long, env = "CALLAUTH_CATALOG_REFRESH_MS", default_value_t = 1000)]
    pub catalog_refresh_ms: u64,

    /// Tokio worker threads (0 = one per core).
    #[arg(long, env = "CALLAUTH_WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,

    /// Log format: "text" or "json".
    #[arg(long, env = "CALLAUTH_LOG_FORMAT", default_value = "text")]
    pub log_format: String,

    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,

    #[command(flatten)]
    pub redis_tls: crate::store::redis::RedisTlsArgs,
}

impl GatewayConfig {
    pub fn store_policy(&self) -> StorePolicy {
        self.store_policy.policy()
    }

    pub fn redis_config(&self) -> crate::store::redis::RedisConfig {
        let mut c = crate::store::redis::RedisConfig::new(&self.store);
        c.prefix = self.redis_prefix.clone();
        c.response_timeout = Duration::from_millis(self.redis_timeout_ms);
        c.connection_timeout = Duration::from_millis(self.redis_connect_timeout_ms);
        c.tls = self.redis_tls.files();
        c
    }

    pub fn limits(&self) -> GatewayLimits {
        GatewayLimits {
            max_call_seconds: self.store_policy.max_call_seconds,
            usage_future_skew_ms: i64::from(self.usage_clock_skew_seconds) * 1000,
            consent_future_skew_ms: i64::from(self.consent_clock_skew_ms),
            consent_max_age_ms: i64::from(self.consent_max_age_seconds) * 1000,
            ..GatewayLimits::default()
        }
    }

    pub fn server_options(&self) -> ServerOptions {
        ServerOptions {
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            max_concurrent_requests: self.max_concurrent_requests,
            queue_budget: Duration::from_millis(self.queue_budget_ms),
            store_timeout: Duration::from_millis(self.redis_timeout_ms),
            max_usage_streams: self.max_usage_streams,
            usage_stream_idle: Duration::from_secs(self.usage_stream_idle_seconds),
            http2_max_concurrent_streams: self.http2_max_concurrent_streams,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
            catalog_refresh_interval: Duration::from_millis(self.catalog_refresh_ms),
            max_connection_age: (self.max_connection_age_seconds > 0)
                .then(|| Duration::from_secs(self.max_connection_age_seconds)),
            ..ServerOptions::default()
        }
    }

    /// Checks combinations clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        self.store_policy.validate()?;
        if self.max_concurrent_requests == 0
            || self.max_usage_streams == 0
            || self.usage_stream_idle_seconds == 0
            || self.http2_max_concurrent_streams == 0
        {
            return Err("--max-concurrent-requests, --max-usage-streams, --usage-stream-idle-seconds and --http2-max-concurrent-streams must be positive".into());
        }
        if self.consent_max_age_seconds == 0 {
            return Err("--consent-max-age-seconds must be positive".into());
        }
        if let Some(k) = &self.prepaid_code_key {
            if k.len() < 32 {
                return Err("--prepaid-code-key must be at least 32 bytes".into());
            }
        }
        if self.store != "memory"
            && ![
                "redis://",
                "rediss://",
                "redis+cluster://",
                "rediss+cluster://",
            ]
            .iter()
            .any(|scheme| self.store.starts_with(scheme))
        {
            // The URL may hold a password: name the scheme only.
            return Err(
                "--store is not memory, redis[s]://host:port or redis[s]+cluster://host:port,…"
                    .into(),
            );
        }
        self.redis_tls.validate(&self.store)?;
        self.tls.settings()?;
        if self.redis_prefix.is_empty() || self.redis_prefix.contains(['{', '}', ' ']) {
            return Err("--redis-prefix must be non-empty, without braces or spaces".into());
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err("--log-format is text or json".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Money;

    #[test]
    fn defaults_follow_the_spec() {
        let c = GatewayConfig::parse_from(["callauth-gateway"]);
        c.validate().unwrap();
        let p = c.store_policy();
        assert_eq!(p.credit.first_time_limit, Money::sek(1500));
        assert_eq!(p.credit.established_limit, Money::sek(3000));
        assert_eq!(p.credit.threshold_percent, 80);
        assert_eq!(c.store, "memory");
        // The flags' defaults are the library's (docs/api.md documents both).
        let (flags, library) = (c.limits(), GatewayLimits::default());
        assert_eq!(flags.usage_future_skew_ms, library.usage_future_skew_ms);
        assert_eq!(flags.consent_future_skew_ms, library.consent_future_skew_ms);
        assert_eq!(flags.consent_max_age_ms, library.consent_max_age_ms);
    }

    #[test]
    fn refuses_bad_values() {
        assert!(GatewayConfig::try_parse_from(["g", "--threshold-percent", "0"]).is_err());
        assert!(GatewayConfig::try_parse_from(["g", "--first-time-limit-sek", "abc"]).is_err());
        let c = GatewayConfig::parse_from(["g", "--prepaid-code-key", "short"]);
        assert!(c.validate().is_err());
    }
}
