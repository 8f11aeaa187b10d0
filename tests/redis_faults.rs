//! Redis failure behaviour (issue 3): Redis is killed in the middle of a run
//! of calls. The gateway must answer UNAVAILABLE (never hang, never a partial
//! money change), reconnect by itself when Redis returns, and after every
//! failed request is retried — the retry is what the IVR and the merchant do,
//! and the Functions' idempotency is what makes it safe — the accounts must
//! add up exactly.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use callauth::gateway::server::ServerOptions;
use callauth::pb;
use callauth::store::redis::{RedisConfig, RedisStore};
use callauth::store::{Store, StorePolicy};
use common::redis::{free_port, unique_prefix};
use common::server::*;
use tonic::Code;

/// A redis-server this test owns: it can be killed and started again on the
/// same port and directory (append-only file, fsync always, so that every
/// acknowledged write survives the kill).
struct OwnedRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl OwnedRedis {
    fn start() -> OwnedRedis {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("callauth-faults-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = OwnedRedis {
            port,
            dir,
            child: None,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--dir", &self.dir.display().to_string()])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .args(["--maxmemory-policy", "noeviction"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is required");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server did not start on {}", self.port);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL: no chance to flush anything not yet fsynced
            let _ = c.wait();
        }
    }
}

impl Drop for OwnedRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Clone, Debug)]
struct Call {
    id: String,
    number: String,
    duration: i32,
}

/// Awaits a request; a hang is a failure of the property under test (the
/// gateway must fail fast when Redis is gone), not a slow run.
async fn guard<T>(fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(10), fut).await {
        Ok(r) => r,
        Err(_) => panic!("the gateway did not answer within 10 s: it must fail fast"),
    }
}

/// One whole call through the gateway; returns the charge, or the status code of the first failure.
async fn run_call<S: callauth::store::Store>(g: &TestGateway<S>, c: &Call) -> Result<i64, Code> {
    let first = guard(
        g.authz()
            .authorize(req(authorize_req(&c.id, &c.number, TAROT), IVR)),
    )
    .await
    .map_err(|s| s.code())?
    .into_inner();
    let mut r = authorize_req(&c.id, &c.number, TAROT);
    r.consent = Some(consent_for(first.terms.as_ref().expect("terms"), false));
    let allowed = guard(g.authz().authorize(req(r, IVR)))
        .await
        .map_err(|s| s.code())?
        .into_inner();
    assert_eq!(
        allowed.decision,
        pb::Decision::Allowed as i32,
        "{allowed:?}"
    );
    let now = g.now();
    let ack = guard(g.usage().report_one(req(
        usage_record(&format!("r-{}", c.id), &c.id, TAROT, now, c.duration),
        STJARN,
    )))
    .await
    .map_err(|s| s.code())?
    .into_inner();
    assert!(
        ack.result == pb::UsageResult::Applied as i32
            || ack.result == pb::UsageResult::Duplicate as i32,
        "{ack:?}"
    );
    Ok(ack.charge_ore)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_redis_gives_unavailable_then_recovers_with_exact_sums() {
    let mut redis = OwnedRedis::start();
    let mut config = RedisConfig::new(&format!("redis://127.0.0.1:{}", redis.port));
    config.prefix = unique_prefix();
    config.response_timeout = Duration::from_millis(300);
    let store = RedisStore::connect(&config, StorePolicy::default())
        .await
        .unwrap();
    let g = start_with(
        store,
        ServerOptions {
            request_timeout: Duration::from_secs(2),
            ..ServerOptions::default()
        },
    )
    .await;

    // Calls from the demo's registered numbers, short enough to stay within credit.
    let numbers = [A, B, FIXED];
    let calls: Vec<Call> = (0..90)
        .map(|i| Call {
            id: format!("f{i}"),
            number: numbers[i % numbers.len()].to_string(),
            duration: 30 + (i as i32 % 5) * 7,
        })
        .collect();

    let mut charged: std::collections::HashMap<String, i64> = Default::default();
    let mut failed: Vec<Call> = Vec::new();
    let mut unavailable = 0;
    for (i, c) in calls.iter().enumerate() {
        if i == 30 {
            redis.kill();
        }
        if i == 60 {
            redis.spawn();
            // The gateway reconnects by itself; wait until it answers again.
            let mut back = false;
            for _ in 0..100 {
                if g.gateway
                    .store()
                    .account(&callauth::domain::E164::parse(A).unwrap())
                    .await
                    .is_ok()
                {
                    back = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(back, "the store did not come back");
        }
        let t = std::time::Instant::now();
        let outcome = run_call(&g, c).await;
        if outcome.is_err() {
            eprintln!("call {} failed after {:?}", c.id, t.elapsed());
        }
        match outcome {
            Ok(charge) => {
                *charged.entry(c.number.clone()).or_default() += charge;
            }
            Err(code) => {
                assert!(
                    matches!(
                        code,
                        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled
                    ),
                    "a dead store must give UNAVAILABLE, got {code:?}"
                );
                unavailable += 1;
                failed.push(c.clone());
            }
        }
    }
    assert!(
        unavailable >= 25,
        "calls 30–59 ran without Redis: {unavailable} failures"
    );

    // Readiness follows the store again.
    let mut ready = false;
    for _ in 0..100 {
        if readyz(g.running.http_addr)
            .await
            .starts_with("HTTP/1.1 200")
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready);

    // The IVR and the merchant retry what failed: applied at most once.
    for c in &failed {
        let charge = run_call(&g, c).await.expect("retry after recovery");
        *charged.entry(c.number.clone()).or_default() += charge;
    }
    for n in numbers {
        let acct = g.account(n).await;
        assert_eq!(
            acct.unbilled_ore,
            charged.get(n).copied().unwrap_or(0),
            "{n}: the account equals the sum of the acknowledged charges"
        );
        assert_eq!(acct.pending_ore, 0, "{n}: no hold left behind");
        assert_eq!(acct.pending_calls, 0);
    }
    let m = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(g.running.http_addr)
            .await
            .unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    assert!(
        m.contains("callauth_store_errors_total{backend=\"redis\""),
        "store errors are counted"
    );
    g.stop().await;
}

/// Reads the gateway's `/readyz`: its status line and body.
async fn readyz(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// Redis comes back empty (no persistence): the gateway must not keep
/// answering from it — every service unknown, every number unlisted, all
/// counted as good (issue 10). It turns not ready, says why, and the call
/// path answers UNAVAILABLE, until the deployment is set up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_store_makes_the_gateway_not_ready() {
    let mut redis = OwnedRedis::start();
    let mut config = RedisConfig::new(&format!("redis://127.0.0.1:{}", redis.port));
    config.prefix = unique_prefix();
    let store = RedisStore::connect(&config, StorePolicy::default())
        .await
        .unwrap();
    let g = start_with(store, ServerOptions::default()).await;
    let c = Call {
        id: "e1".into(),
        number: A.into(),
        duration: 30,
    };
    run_call(&g, &c).await.expect("a call before the loss");
    assert!(readyz(g.running.http_addr)
        .await
        .starts_with("HTTP/1.1 200"));

    // The data is lost: killed, its files removed, started empty.
    redis.kill();
    std::fs::remove_dir_all(&redis.dir).unwrap();
    std::fs::create_dir_all(&redis.dir).unwrap();
    redis.spawn();
    let mut body = String::new();
    for _ in 0..100 {
        body = readyz(g.running.http_addr).await;
        if body.contains("state store is empty") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(body.starts_with("HTTP/1.1 503"), "{body}");
    assert!(body.contains("state store is empty"), "{body}");
    let err = guard(g.authz().authorize(req(authorize_req("e2", A, TAROT), IVR)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("state store is empty"), "{err:?}");
    g.stop().await;

    // Setting the deployment up again (a gateway start records it) makes
    // the store ready again.
    let store = RedisStore::connect(&config, StorePolicy::default())
        .await
        .unwrap();
    assert_eq!(store.ready().await, Ok(()));
}

/// A process whose store policy differs from the one the store was set up
/// with refuses to start, naming the difference; `connect_recording` (the
/// gateway's `--record-policy`) records the new one, after which the old
/// processes' readiness says the store is foreign to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_set_up_with_another_policy_is_refused() {
    let redis = OwnedRedis::start();
    let mut config = RedisConfig::new(&format!("redis://127.0.0.1:{}", redis.port));
    config.prefix = unique_prefix();
    let old = RedisStore::connect(&config, StorePolicy::default())
        .await
        .unwrap();
    let mut other = StorePolicy::default();
    other.credit.first_time_limit = callauth::domain::Money::sek(2000);
    let err = RedisStore::connect(&config, other.clone())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("first_time_limit_ore: 200000 here, 150000 recorded"),
        "{err}"
    );
    let new = RedisStore::connect_recording(&config, other).await.unwrap();
    assert_eq!(new.ready().await, Ok(()));
    assert_eq!(old.ready().await, Err(callauth::store::NotReady::Foreign));
    drop(redis);
}
