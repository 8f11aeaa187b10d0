//! Starts the real gateway on 127.0.0.1:0 over any store, with the demo
//! catalogue and tokens and a manual clock, and hands out generated clients.
#![allow(dead_code)]

use std::sync::Arc;

use callauth::auth::TokenRegistry;
use callauth::clock::ManualClock;
use callauth::domain::CodeHasher;
use callauth::gateway::catalog_file::{CatalogFile, DEMO};
use callauth::gateway::server::{self, Running, ServerOptions};
use callauth::gateway::{Gateway, GatewayLimits};
use callauth::pb;
use callauth::store::Store;
use tonic::transport::Channel;
use tonic::Request;

pub const IVR: &str = "demo-ivr-token-0123456789";
pub const IVR2: &str = "demo-ivr-2-token-0123456789";
pub const ADMIN: &str = "demo-admin-token-0123456789";
pub const STJARN: &str = "demo-merchant-stjarnlinjen-0123456789";
pub const RADGIV: &str = "demo-merchant-radgivarna-0123456789";
pub const SAMTAL: &str = "demo-merchant-samtalsstod-0123456789";

pub const TAROT: &str = "0900-100 10 10"; // 29.90/min, stjarnlinjen
pub const CHAT: &str = "0944-20 20 20"; // 24.90/min, min 2, stjarnlinjen
pub const LEGAL: &str = "0939-30 30 30"; // 39.90/min, min 3, radgivarna
pub const PSYCH: &str = "0900-500 50 50"; // 19.95/min per second, samtalsstod
pub const A: &str = "070-123 45 67";
pub const B: &str = "073-765 43 21";
pub const FIXED: &str = "08-555 123 45";
pub const SECRET: &str = "076-111 22 33";

pub const START_MS: i64 = 1_795_000_000_000; // 2026-11-18

pub struct TestGateway<S: Store> {
    pub gateway: Arc<Gateway<S>>,
    pub clock: ManualClock,
    pub running: Running,
    pub channel: Channel,
}

pub async fn start<S: Store>(store: S) -> TestGateway<S> {
    start_with(store, ServerOptions::default()).await
}

pub async fn start_with<S: Store>(store: S, opts: ServerOptions) -> TestGateway<S> {
    let clock = ManualClock::new(START_MS);
    let hasher = CodeHasher::new(&[9u8; 32]).unwrap();
    let gateway = Arc::new(Gateway::new(
        store,
        Arc::new(clock.clone()),
        hasher,
        GatewayLimits::default(),
    ));
    let demo = CatalogFile::parse(DEMO).unwrap();
    demo.load_into(&gateway).await.unwrap();
    let tokens = TokenRegistry::from_clients(&demo.clients).unwrap();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = server::start(gateway.clone(), tokens, grpc, http, opts)
        .await
        .unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", running.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    TestGateway {
        gateway,
        clock,
        running,
        channel,
    }
}

pub fn req<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

impl<S: Store> TestGateway<S> {
    pub fn authz(&self) -> pb::authorization_client::AuthorizationClient<Channel> {
        pb::authorization_client::AuthorizationClient::new(self.channel.clone())
    }
    pub fn usage(&self) -> pb::usage_client::UsageClient<Channel> {
        pb::usage_client::UsageClient::new(self.channel.clone())
    }
    pub fn catalog(&self) -> pb::catalog_client::CatalogClient<Channel> {
        pb::catalog_client::CatalogClient::new(self.channel.clone())
    }
    pub fn accounts(&self) -> pb::accounts_client::AccountsClient<Channel> {
        pb::accounts_client::AccountsClient::new(self.channel.clone())
    }

    pub fn now(&self) -> i64 {
        use callauth::clock::Clock;
        self.clock.now_ms()
    }

    pub async fn account(&self, number: &str) -> pb::AccountView {
        self.accounts()
            .get_account(req(
                pb::GetAccountRequest {
                    number: number.into(),
                },
                ADMIN,
            ))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn stop(self) {
        self.running.shutdown();
        self.running.stopped().await.unwrap();
    }
}

pub fn authorize_req(call_id: &str, a_number: &str, service: &str) -> pb::AuthorizeRequest {
    pb::AuthorizeRequest {
        call_id: call_id.into(),
        a_number: a_number.into(),
        service_number: service.into(),
        ivr_id: "ivr-node-1".into(),
        ..Default::default()
    }
}

/// The consent an IVR sends after the caller confirmed the announced terms.
pub fn consent_for(terms: &pb::Terms, prepaid: bool) -> pb::Consent {
    pb::Consent {
        age_confirmed: true,
        own_number_confirmed: !prepaid,
        step1_at: None,
        terms_accepted: true,
        step2_at: None,
        terms_id: terms.terms_id.clone(),
    }
}

pub fn usage_record(
    record_id: &str,
    call_id: &str,
    service: &str,
    started_at_ms: i64,
    duration: i32,
) -> pb::UsageRecord {
    pb::UsageRecord {
        record_id: record_id.into(),
        call_id: call_id.into(),
        service_number: service.into(),
        started_at: Some(callauth::gateway::api::convert::ms_to_timestamp(
            started_at_ms,
        )),
        duration_seconds: duration,
    }
}
