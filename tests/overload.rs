//! Overload and usage-stream bounds (issue 10), against a private
//! redis-server started by the test. No timed assertion: bounds on waiting
//! are hang guards, far above what the properties need.
//!
//! - Overload: an open loop far above what the gateway serves. Every request
//!   the client saw fail must leave no hold (the issue: 150 868 holds for
//!   requests the IVR was told had failed) and readiness must never turn
//!   NOT_SERVING (it flapped 4 times).
//! - Usage streams: an idle stream is closed; the number of open streams is
//!   bounded; HTTP/2 advertises a stream limit; shutdown does not wait for
//!   idle streams.

mod common;

use std::time::Duration;

use callauth::gateway::server::ServerOptions;
use callauth::pb;
use callauth::store::redis::{RedisConfig, RedisStore};
use callauth::store::{Store, StorePolicy};
use common::redis::{free_port, spawn_redis, unique_prefix};
use common::server::*;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Far above anything these tests need: a hang, not a slow run.
const HANG_GUARD: Duration = Duration::from_secs(20);

/// The Redis command timeout of the overload test: the production default.
const STORE_TIMEOUT: Duration = Duration::from_millis(250);

/// A private Redis with a short command timeout.
async fn private_store() -> RedisStore {
    let port = free_port();
    tokio::task::spawn_blocking(move || spawn_redis(port, &[]))
        .await
        .unwrap();
    let mut config = RedisConfig::new(&format!("redis://127.0.0.1:{port}"));
    config.prefix = unique_prefix();
    config.response_timeout = STORE_TIMEOUT;
    RedisStore::connect(&config, StorePolicy::default())
        .await
        .expect("connect to the private redis")
}

/// Every health status of the Authorization service seen until `stop`.
fn watch_readiness(
    channel: tonic::transport::Channel,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Vec<i32>> {
    tokio::spawn(async move {
        let mut health = HealthClient::new(channel);
        let mut stream = health
            .watch(HealthCheckRequest {
                service: "callauth.v1.Authorization".into(),
            })
            .await
            .expect("health watch")
            .into_inner();
        let mut seen = Vec::new();
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                next = stream.next() => match next {
                    Some(Ok(r)) => seen.push(r.status),
                    _ => break,
                },
            }
        }
        seen
    })
}

/// What the client saw of the overload run.
#[derive(Default, Debug)]
struct Seen {
    allowed: u64,
    refused: u64,
    failed: std::collections::BTreeMap<String, u64>,
    reasons: std::collections::BTreeSet<String>,
    messages: std::collections::BTreeSet<String>,
}

fn number(i: usize) -> String {
    format!("+4670{i:07}")
}

/// Fires `total` Authorize requests with consent, each for its own call id
/// and number, in bursts of `burst` without waiting for answers (open loop).
async fn open_loop<S: Store>(g: &TestGateway<S>, total: usize, burst: usize) -> Seen {
    let terms = g
        .authz()
        .authorize(req(authorize_req("probe-call", A, TAROT), IVR))
        .await
        .unwrap()
        .into_inner()
        .terms
        .expect("terms");
    let consent = consent_for(&terms, false);
    // Every number listed with a registered holder (postpaid), set up
    // before the load through the store itself.
    let mut setup = tokio::task::JoinSet::new();
    for i in 0..total {
        let gateway = g.gateway.clone();
        setup.spawn(async move {
            let number = callauth::domain::E164::parse(&number(i)).unwrap();
            gateway.put_directory(&number, true, "overload-test").await
        });
        if setup.len() >= 64 {
            setup.join_next().await.unwrap().unwrap().unwrap();
        }
    }
    while let Some(r) = setup.join_next().await {
        r.unwrap().unwrap();
    }
    // A few connections, as IVR nodes would have.
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(
            tonic::transport::Endpoint::from_shared(format!("http://{}", g.running.grpc_addr))
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let mut client =
            pb::authorization_client::AuthorizationClient::new(channels[i % 4].clone());
        let mut r = authorize_req(&format!("ov-{i}"), &number(i), TAROT);
        r.consent = Some(consent.clone());
        tasks.spawn(async move { client.authorize(req(r, IVR)).await });
        if i % burst == burst - 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let mut seen = Seen::default();
    while let Some(answer) = tasks.join_next().await {
        match answer.unwrap() {
            Ok(a) if a.get_ref().decision == pb::Decision::Allowed as i32 => seen.allowed += 1,
            Ok(a) => {
                seen.refused += 1;
                seen.reasons.insert(format!("{:?}", a.get_ref()));
            }
            Err(s) => {
                *seen.failed.entry(format!("{:?}", s.code())).or_default() += 1;
                seen.messages.insert(s.message().to_string());
            }
        }
    }
    seen
}

/// Issue 10: open loop far above capacity with the default limits. Every
/// Authorize the client saw fail left no hold — the holds in Redis are
/// exactly the allowed answers — and readiness never left SERVING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_sheds_without_holds_for_failed_requests_and_stays_ready() {
    let store = private_store().await;
    let opts = ServerOptions {
        store_timeout: STORE_TIMEOUT,
        ..ServerOptions::default()
    };
    let g = start_with(store.clone(), opts).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let readiness = watch_readiness(g.channel.clone(), stop_rx);

    let seen = tokio::time::timeout(Duration::from_secs(120), open_loop(&g, 6000, 100))
        .await
        .expect("the open loop finished");
    // A command sent before its request failed would still run: let any
    // such command finish before counting holds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_tx.send(true);
    let statuses = readiness.await.unwrap();

    let holds = store.stats().await.unwrap().pending_holds;
    let failed: u64 = seen.failed.values().sum();
    eprintln!("overload: {seen:?}, holds {holds}, readiness {statuses:?}");
    assert!(
        failed > 0,
        "the load must exceed what the gateway serves: {seen:?}"
    );
    assert!(seen.allowed > 0, "some requests must be served: {seen:?}");
    assert_eq!(
        holds, seen.allowed,
        "every hold is an allowed answer: no hold for a request the client saw fail ({seen:?})"
    );
    let serving = tonic_health::ServingStatus::Serving as i32;
    assert!(
        !statuses.is_empty() && statuses.iter().all(|s| *s == serving),
        "readiness stayed SERVING: {statuses:?}"
    );
    g.stop().await;
}

/// Opens a usage stream that sends nothing until `sender` is dropped.
async fn idle_stream<S: Store>(
    g: &TestGateway<S>,
) -> (
    tokio::sync::mpsc::Sender<pb::UsageRecord>,
    Result<tonic::Streaming<pb::UsageAck>, tonic::Status>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let outbound = tokio_stream::wrappers::ReceiverStream::new(rx);
    let answer = g
        .usage()
        .report(req(outbound, STJARN))
        .await
        .map(|r| r.into_inner());
    (tx, answer)
}

async fn memory_gateway(opts: ServerOptions) -> TestGateway<callauth::store::memory::MemoryStore> {
    start_with(
        callauth::store::memory::MemoryStore::new(StorePolicy::default()),
        opts,
    )
    .await
}

/// Issue 10: a stream that never sends is closed after the idle timeout,
/// with UNAVAILABLE and a message that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_usage_stream_is_closed() {
    let g = memory_gateway(ServerOptions {
        usage_stream_idle: Duration::from_millis(300),
        ..ServerOptions::default()
    })
    .await;
    let (_tx, answer) = idle_stream(&g).await;
    let mut acks = answer.expect("stream opened");
    let end = tokio::time::timeout(HANG_GUARD, acks.next())
        .await
        .expect("the idle stream was closed by the gateway");
    let status = end.expect("an answer").expect_err("closed with a status");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("no usage record"), "{status:?}");
    g.stop().await;
}

/// Issue 10: at most `max_usage_streams` streams are open; one more is
/// refused RESOURCE_EXHAUSTED, and a closed one frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_streams_are_bounded() {
    let g = memory_gateway(ServerOptions {
        max_usage_streams: 2,
        ..ServerOptions::default()
    })
    .await;
    let (a, first) = idle_stream(&g).await;
    let (_b, second) = idle_stream(&g).await;
    let mut first = first.expect("first stream");
    second.expect("second stream");
    let (_c, third) = idle_stream(&g).await;
    let status = third.expect_err("a third stream is refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // The merchant ends the first stream: its place is free again.
    drop(a);
    let end = tokio::time::timeout(HANG_GUARD, first.next())
        .await
        .unwrap();
    assert!(end.is_none(), "{end:?}");
    let mut reopened = None;
    for _ in 0..100 {
        let (tx, r) = idle_stream(&g).await;
        if let Ok(s) = r {
            reopened = Some((tx, s));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reopened.is_some(), "a closed stream frees its place");
    g.stop().await;
}

/// Issue 10: the server advertises SETTINGS_MAX_CONCURRENT_STREAMS: with
/// four idle streams open on a connection limited to four, a fifth request
/// on that connection waits until one of them ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_per_connection_are_bounded() {
    let g = memory_gateway(ServerOptions {
        http2_max_concurrent_streams: 4,
        ..ServerOptions::default()
    })
    .await;
    let mut senders = Vec::new();
    for _ in 0..4 {
        let (tx, answer) = idle_stream(&g).await;
        answer.expect("stream opened");
        senders.push(tx);
    }
    let mut catalog = g.catalog();
    let lookup = tokio::spawn(async move {
        catalog
            .lookup_service(req(
                pb::LookupServiceRequest {
                    service_number: TAROT.into(),
                },
                IVR,
            ))
            .await
    });
    // Not a timing figure: the request must not be served while the four
    // streams are open (with no limit it is answered at once).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !lookup.is_finished(),
        "a fifth stream on the connection was served"
    );
    senders.pop();
    let answer = tokio::time::timeout(HANG_GUARD, lookup)
        .await
        .expect("served once a stream ended")
        .unwrap();
    answer.expect("lookup answered");
    drop(senders);
    g.stop().await;
}

/// Issue 10: shutdown closes idle usage streams (UNAVAILABLE, "shutting
/// down") instead of waiting the whole grace period for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_usage_streams() {
    let grace = Duration::from_secs(60);
    let g = memory_gateway(ServerOptions {
        shutdown_grace: grace,
        ..ServerOptions::default()
    })
    .await;
    let (_tx, answer) = idle_stream(&g).await;
    let mut acks = answer.expect("stream opened");
    g.running.shutdown();
    let status = tokio::time::timeout(HANG_GUARD, acks.next())
        .await
        .expect("the stream ended at shutdown")
        .expect("an answer")
        .expect_err("closed with a status");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("shutting down"), "{status:?}");
    // The servers stop well before the grace period (HANG_GUARD < grace).
    tokio::time::timeout(HANG_GUARD, g.running.stopped())
        .await
        .expect("shutdown did not wait the grace period for an idle stream")
        .unwrap();
}
