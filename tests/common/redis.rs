//! Real Redis for the tests: a single node and a 3-master Redis Cluster,
//! started once per test binary on free ports with `redis-server` (no mock).
//! Each test isolates itself with its own key prefix. Every server runs
//! under a small shell watchdog that stops it (and removes its directory)
//! when the test process exits, even after a panic.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use callauth::store::redis::{RedisConfig, RedisStore};
use callauth::store::StorePolicy;

static SINGLE: OnceLock<u16> = OnceLock::new();
static CLUSTER: OnceLock<Vec<u16>> = OnceLock::new();
static PREFIX: AtomicU64 = AtomicU64::new(0);

fn require(binary: &str) {
    let ok = Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{binary} is required for the Redis tests (apt-get install redis-server redis-tools)"
    );
}

/// A port that is free, and whose cluster bus port (+10000) is free too.
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn wait_for_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "redis-server on {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `redis-server` with `args` on `port` in its own directory, under a
/// watchdog tied to this process. Returns the directory.
pub fn spawn_redis(port: u16, extra: &[&str]) -> PathBuf {
    require("redis-server");
    let dir =
        std::env::temp_dir().join(format!("callauth-test-redis-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut args = vec![
        "--port".to_string(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--dir".into(),
        dir.display().to_string(),
        "--save".into(),
        "''".into(),
        "--appendonly".into(),
        "no".into(),
        "--daemonize".into(),
        "no".into(),
        "--logfile".into(),
        "redis.log".into(),
        "--maxmemory-policy".into(),
        "noeviction".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let script = format!(
        "redis-server {} & child=$!; while kill -0 {} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.3; done; kill $child 2>/dev/null; wait $child 2>/dev/null; rm -rf '{}'",
        args.join(" "),
        std::process::id(),
        dir.display()
    );
    // Not waited on by design: the watchdog outlives this call and ends with
    // the test process (an early exit leaves a zombie until then, harmlessly).
    #[allow(clippy::zombie_processes)]
    let _watchdog: Child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh");
    wait_for_port(port);
    dir
}

/// redis-cli against a port.
pub fn cli(port: u16, args: &[&str]) -> String {
    require("redis-cli");
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The shared single-node server of this test binary.
pub fn single_port() -> u16 {
    *SINGLE.get_or_init(|| {
        let port = free_port();
        spawn_redis(port, &[]);
        port
    })
}

/// The shared 3-master cluster of this test binary.
pub fn cluster_ports() -> Vec<u16> {
    CLUSTER
        .get_or_init(|| {
            let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
            for &p in &ports {
                spawn_redis(
                    p,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                    ],
                );
            }
            let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
            args.extend(ports.iter().map(|p| format!("127.0.0.1:{p}")));
            args.extend([
                "--cluster-replicas".into(),
                "0".into(),
                "--cluster-yes".into(),
            ]);
            let out = Command::new("redis-cli")
                .args(&args)
                .output()
                .expect("redis-cli --cluster create");
            assert!(
                out.status.success(),
                "cluster create failed: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            let start = Instant::now();
            loop {
                let ok = ports
                    .iter()
                    .all(|&p| cli(p, &["cluster", "info"]).contains("cluster_state:ok"));
                if ok {
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "cluster did not become ok"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            ports
        })
        .clone()
}

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!(
        "t{}x{}",
        std::process::id(),
        PREFIX.fetch_add(1, Ordering::Relaxed)
    )
}

/// Commands get seconds, not the production 250 ms: tests share two cores
/// with the build, and a slow answer is not what they test (the fault and
/// overload tests set their own timeouts).
const TEST_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn single_config() -> RedisConfig {
    let mut c = RedisConfig::new(&format!("redis://127.0.0.1:{}", single_port()));
    c.prefix = unique_prefix();
    c.response_timeout = TEST_RESPONSE_TIMEOUT;
    c
}

pub fn cluster_config() -> RedisConfig {
    let nodes: Vec<String> = cluster_ports()
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let mut c = RedisConfig::new(&format!("redis+cluster://{}", nodes.join(",")));
    c.prefix = unique_prefix();
    c.response_timeout = TEST_RESPONSE_TIMEOUT;
    c
}

pub async fn single_store(policy: StorePolicy) -> RedisStore {
    let config = single_config();
    tokio::task::spawn_blocking(single_port).await.unwrap();
    RedisStore::connect(&config, policy)
        .await
        .expect("connect to the test redis")
}

pub async fn cluster_store(policy: StorePolicy) -> RedisStore {
    tokio::task::spawn_blocking(cluster_ports).await.unwrap();
    let config = cluster_config();
    RedisStore::connect(&config, policy)
        .await
        .expect("connect to the test cluster")
}
