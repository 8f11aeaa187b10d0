//! A settlement test world: a real Redis (own key prefix) holding the state
//! and event streams, a real PostgreSQL database of its own, a manual clock,
//! and helpers to make calls and consume their events.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use callauth::clock::{Clock, ManualClock};
use callauth::domain::{Decision, Money, RecordId, E164};
use callauth::settlement::ingest::consumer::{ConsumerConfig, StreamConsumer};
use callauth::settlement::{sync::projector, Settlement, SettlementPolicy};
use callauth::store::redis::RedisStore;
use callauth::store::{Store, StorePolicy, UsageOutcome, UsagePost};

use super::*;

pub struct World {
    pub store: RedisStore,
    pub db: super::pg::TestDb,
    pub clock: ManualClock,
    pub settlement: Arc<Settlement<RedisStore>>,
}

impl World {
    /// A world whose clock starts at `start_ms`, with the test catalogue and
    /// `numbers` registered in the directory.
    pub async fn new(start_ms: i64, numbers: &[&str], policy: SettlementPolicy) -> World {
        let store = super::redis::single_store(StorePolicy::default()).await;
        seed_catalog(&store).await;
        for num in numbers {
            store
                .put_directory(&n(num), true, "test", start_ms)
                .await
                .unwrap();
        }
        let db = super::pg::TestDb::new().await;
        // Each number's holder with a postal address, on paper (R13): an
        // invoice to a holder who cannot be reached is held, not sent.
        for (i, num) in numbers.iter().enumerate() {
            register_paper_holder(&db.pool, num, i).await;
        }
        let clock = ManualClock::new(start_ms);
        let settlement = Arc::new(Settlement::new(
            db.pool.clone(),
            store.clone(),
            policy,
            Arc::new(clock.clone()),
        ));
        World {
            store,
            db,
            clock,
            settlement,
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn consumer(&self, name: &str) -> StreamConsumer<RedisStore> {
        StreamConsumer::new(
            self.settlement.clone(),
            self.store.clone(),
            ConsumerConfig {
                consumer: name.into(),
                partitions: ConsumerConfig::owned(StorePolicy::default().partitions, 0, 1),
                batch: 100,
                max_deliveries: 3,
                claim_idle: Duration::from_millis(1),
                poll_interval: Duration::from_millis(10),
                concurrency: 4,
            },
        )
    }

    /// Consumes every event into the ledger, then pushes the ledger's account
    /// changes back to the store.
    pub async fn settle(&self) {
        self.consumer("worker-1").drain().await.unwrap();
        projector::flush(&self.settlement).await.unwrap();
    }

    /// A whole postpaid call now: authorized with consent, `duration` seconds posted.
    pub async fn call(&self, number: &str, id: &str, service_no: &str, duration: u32) -> Money {
        let svc = service(&self.store, service_no).await;
        let now = self.now();
        let r = self
            .store
            .authorize(&n(number), &call(id, &svc, true), now)
            .await
            .unwrap();
        assert!(
            matches!(r.decision, Decision::Allowed(_)),
            "{number} {id}: {r:?}"
        );
        let u = UsagePost {
            merchant_id: svc.merchant_id.clone(),
            record_id: RecordId::parse(&format!("r-{id}")).unwrap(),
            call_id: call_id(id),
            service_number: svc.number.clone(),
            started_at_ms: now,
            duration_seconds: duration,
        };
        match self.store.post_usage(&u, now + 1000).await.unwrap() {
            UsageOutcome::Applied(p) => p.charge,
            other => panic!("{other:?}"),
        }
    }

    pub async fn account(&self, number: &str) -> callauth::store::AccountView {
        self.store
            .account(&E164::parse(number).unwrap())
            .await
            .unwrap()
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }
}

/// Registers `number`'s holder with a name and a postal address, invoiced on
/// paper (the default a holder gets when customer service gives no choice).
pub async fn register_paper_holder(pool: &sqlx::PgPool, number: &str, i: usize) {
    use callauth::settlement::privacy::personal::{self, HolderInput};
    let mut conn = pool.acquire().await.unwrap();
    personal::upsert_holder(
        &mut conn,
        &HolderInput {
            number: number.into(),
            name: Some(format!("Testinnehavare {}", i + 1)),
            address_lines: vec![format!("Provgatan {}", i + 1), "123 45 Teststad".into()],
            email: None,
            invoice_delivery: "paper".into(),
            personal_number: None,
        },
        "test",
    )
    .await
    .unwrap();
}

/// The settlement gRPC API over this world, with the demo catalogue's
/// tokens, on a free port; the channel to it.
impl World {
    pub async fn serve_api(&self) -> tonic::transport::Channel {
        use callauth::auth::TokenRegistry;
        use callauth::gateway::catalog_file::{CatalogFile, DEMO};
        use callauth::settlement::worker::api::SettlementApi;
        let tokens =
            TokenRegistry::from_clients(&CatalogFile::parse(DEMO).unwrap().clients).unwrap();
        let api = callauth::pb::settlement_server::SettlementServer::with_interceptor(
            SettlementApi {
                settlement: self.settlement.clone(),
                hasher: Some(callauth::domain::CodeHasher::new(&[42u8; 32]).unwrap()),
            },
            tokens.interceptor(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(api)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }
}
