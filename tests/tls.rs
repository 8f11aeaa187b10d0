//! TLS end to end (issue 10, "the network"), with certificates generated at
//! test time (tests/common/certs.rs): the gateway's gRPC and HTTP listeners
//! over TLS, mutual TLS binding tokens to client certificates, certificate
//! reload without dropping connections, callauthctl over https, the
//! settlement worker's listeners over TLS, Redis over TLS (one node and a
//! cluster, private `redis-server`s started with `--tls-port`), and
//! PostgreSQL with `sslmode`.

mod common;

use std::io;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callauth::auth::{ClientConfig, TokenRegistry};
use callauth::clock::ManualClock;
use callauth::domain::CodeHasher;
use callauth::gateway::catalog_file::{CatalogFile, DEMO};
use callauth::gateway::server::{self, Running, ServerOptions};
use callauth::gateway::{Gateway, GatewayLimits};
use callauth::pb;
use callauth::store::memory::MemoryStore;
use callauth::store::redis::{RedisConfig, RedisStore};
use callauth::store::Store;
use callauth::tls::{ClientAuth, TlsSettings};
use rustls::pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

use common::certs::{CertDir, Leaf, TestCa, SERVER_NOT_AFTER_UNIX_S};
use common::server::{
    authorize_req, consent_for, req, usage_record, A, ADMIN, IVR, START_MS, STJARN, TAROT,
};

/// A second IVR client, for a token that is not the certificate's.
const IVR_TWO: &str = "ivr-two-token-0123456789";

struct TlsGateway {
    running: Running,
    clock: ManualClock,
}

impl TlsGateway {
    fn grpc(&self) -> SocketAddr {
        self.running.grpc_addr
    }
    fn http(&self) -> SocketAddr {
        self.running.http_addr
    }
    async fn stop(self) {
        self.running.shutdown();
        self.running.stopped().await.unwrap();
    }
}

/// The real gateway (memory store, demo catalogue, a manual clock) with TLS
/// on both listeners; the demo clients plus `ivr-two`.
async fn start_tls(tls: TlsSettings) -> TlsGateway {
    let clock = ManualClock::new(START_MS);
    let gateway = Arc::new(Gateway::new(
        MemoryStore::new(callauth::store::StorePolicy::default()),
        Arc::new(clock.clone()),
        CodeHasher::new(&[9u8; 32]).unwrap(),
        GatewayLimits::default(),
    ));
    let demo = CatalogFile::parse(DEMO).unwrap();
    demo.load_into(&gateway).await.unwrap();
    let mut clients = demo.clients.clone();
    clients.push(ClientConfig {
        id: "ivr-two".into(),
        role: "ivr".into(),
        merchant_id: None,
        token_sha256: None,
        token: Some(IVR_TWO.into()),
        require_certificate: false,
    });
    let tokens = TokenRegistry::from_clients(&clients).unwrap();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let opts = ServerOptions {
        tls: Some(tls),
        shutdown_grace: Duration::from_secs(2),
        ..ServerOptions::default()
    };
    let running = server::start(gateway, tokens, grpc, http, opts)
        .await
        .unwrap();
    TlsGateway { running, clock }
}

/// Server certificate files for a gateway, from `ca`.
fn server_files(dir: &CertDir, ca: &TestCa, serial: u64) -> TlsSettings {
    let (cert, key) = dir.write_pair("tls", &ca.server(serial));
    TlsSettings::new(cert, key)
}

/// A tonic channel over TLS trusting `ca_pem`, optionally with a client certificate.
async fn tls_channel(
    addr: SocketAddr,
    ca_pem: &str,
    identity: Option<&Leaf>,
) -> Result<Channel, tonic::transport::Error> {
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some(leaf) = identity {
        config = config.identity(Identity::from_pem(&leaf.cert_pem, &leaf.key_pem));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(config)?
        .connect()
        .await
}

fn rustls_client(ca_pem: &str, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

fn sha256(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// The SHA-256 of the certificate a new connection to `addr` is served.
async fn served_fingerprint(addr: SocketAddr, ca_pem: &str) -> [u8; 32] {
    let conn = tls_connect(addr, rustls_client(ca_pem, b"h2"))
        .await
        .unwrap();
    sha256(conn.get_ref().1.peer_certificates().unwrap()[0].as_ref())
}

/// A gRPC channel whose connector counts the TLS connections it opens, so
/// a test can tell that an RPC after a reload used the old connection.
async fn counting_channel(addr: SocketAddr, ca_pem: &str) -> (Channel, Arc<AtomicUsize>) {
    let config = rustls_client(ca_pem, b"h2");
    let opened = Arc::new(AtomicUsize::new(0));
    let counter = opened.clone();
    let connector = tower::service_fn(move |_uri: tonic::codegen::http::Uri| {
        let (config, counter) = (config.clone(), counter.clone());
        async move {
            let conn = tls_connect(addr, config).await?;
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(conn))
        }
    });
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(connector)
        .await
        .unwrap();
    (channel, opened)
}

/// GET over HTTPS (HTTP/1.1, one request): status and body.
async fn https_get(addr: SocketAddr, ca_pem: &str, path: &str) -> io::Result<(u16, String)> {
    tokio::time::timeout(Duration::from_secs(10), https_get_once(addr, ca_pem, path))
        .await
        .map_err(|_| io::Error::other("no answer within 10 s"))?
}

async fn https_get_once(addr: SocketAddr, ca_pem: &str, path: &str) -> io::Result<(u16, String)> {
    let mut conn = tls_connect(addr, rustls_client(ca_pem, b"http/1.1")).await?;
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut raw = Vec::new();
    // A server closing without close_notify ends the read with an error
    // after the whole response: what was read is the answer.
    let _ = conn.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no HTTP status in {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Polls `check` until it holds, at most 30 s (a bound for a slow machine,
/// not a measured duration).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < Duration::from_secs(30), "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn authz(channel: &Channel) -> pb::authorization_client::AuthorizationClient<Channel> {
    pb::authorization_client::AuthorizationClient::new(channel.clone())
}

fn catalog(channel: &Channel) -> pb::catalog_client::CatalogClient<Channel> {
    pb::catalog_client::CatalogClient::new(channel.clone())
}

/// A whole call over TLS: consent asked, consent given and the call
/// allowed, usage reported and charged; a plaintext client is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_call_over_tls_and_plaintext_refused() {
    let (dir, ca) = (CertDir::new(), TestCa::new("callauth test CA"));
    let g = start_tls(server_files(&dir, &ca, 1)).await;
    let channel = tls_channel(g.grpc(), &ca.pem, None).await.unwrap();

    let first = authz(&channel)
        .authorize(req(authorize_req("tls-1", A, TAROT), IVR))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.decision, pb::Decision::ConsentRequired as i32);
    let mut with_consent = authorize_req("tls-1", A, TAROT);
    with_consent.consent = Some(consent_for(first.terms.as_ref().unwrap(), false));
    let allowed = authz(&channel)
        .authorize(req(with_consent, IVR))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(allowed.decision, pb::Decision::Allowed as i32);
    assert_eq!(allowed.granted_seconds, 900);
    // 29,90 kr/min × 15 min = 448,50 kr held.
    assert_eq!(allowed.hold_ore, 44_850);

    g.clock.advance_ms(185_000);
    let ack = pb::usage_client::UsageClient::new(channel.clone())
        .report_one(req(
            usage_record("tls-1-r1", "tls-1", TAROT, START_MS, 185),
            STJARN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.result, pb::UsageResult::Applied as i32, "{ack:?}");
    // 185 s is 4 started minutes: 4 × 29,90 kr = 119,60 kr.
    assert_eq!(ack.charge_ore, 11_960);

    // A plaintext client: its HTTP/2 preface is no TLS ClientHello.
    let plain = async {
        let channel = Endpoint::from_shared(format!("http://{}", g.grpc()))
            .unwrap()
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        catalog(&channel)
            .list_services(pb::ListServicesRequest::default())
            .await
    };
    assert!(plain.await.is_err(), "a plaintext client was served");
    // A client that does not trust the gateway's CA refuses it.
    let other_ca = TestCa::new("another CA");
    let untrusting = async {
        let channel = tls_channel(g.grpc(), &other_ca.pem, None)
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        catalog(&channel)
            .list_services(pb::ListServicesRequest::default())
            .await
    };
    assert!(untrusting.await.is_err());
    drop(channel);
    g.stop().await;
}

/// /metrics (and /readyz) over HTTPS, with the certificate's expiry; plain
/// HTTP is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_over_https() {
    let (dir, ca) = (CertDir::new(), TestCa::new("callauth test CA"));
    let g = start_tls(server_files(&dir, &ca, 7)).await;
    let (status, body) = https_get(g.http(), &ca.pem, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        body.lines().any(|l| l
            == format!(
                "callauth_tls_certificate_expiry_timestamp_seconds {SERVER_NOT_AFTER_UNIX_S}"
            )),
        "no expiry line in /metrics"
    );
    assert!(body.contains("callauth_tls_handshake_failures_total{listener=\"grpc\"}"));
    eventually("/readyz answers ready over HTTPS", || async {
        matches!(https_get(g.http(), &ca.pem, "/readyz").await, Ok((200, _)))
    })
    .await;

    // Plain HTTP to the TLS listener gets no HTTP answer.
    let mut plain = TcpStream::connect(g.http()).await.unwrap();
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = plain.read_to_end(&mut raw).await;
    assert!(!String::from_utf8_lossy(&raw).contains("callauth_"));
    g.stop().await;
}

/// Mutual TLS: the right certificate with its own token works; another
/// client's token on that certificate is UNAUTHENTICATED; no certificate,
/// or one of another CA, is refused when certificates are required.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_binds_tokens_to_the_certificate() {
    let dir = CertDir::new();
    let (server_ca, client_ca) = (TestCa::new("server CA"), TestCa::new("client CA"));
    let mut settings = server_files(&dir, &server_ca, 1);
    settings.client_ca = Some(dir.write("client-ca.crt", &client_ca.pem));
    settings.trust_domain = Some("callauth.test".into());
    let g = start_tls(settings).await;
    let demo_ivr = client_ca.client("spiffe://callauth.test/ivr/demo-ivr");

    let channel = tls_channel(g.grpc(), &server_ca.pem, Some(&demo_ivr))
        .await
        .unwrap();
    let own = authz(&channel)
        .authorize(req(authorize_req("mtls-1", A, TAROT), IVR))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.decision, pb::Decision::ConsentRequired as i32);

    // A token of another IVR client (stolen, say) on demo-ivr's certificate.
    let stolen = authz(&channel)
        .authorize(req(authorize_req("mtls-2", A, TAROT), IVR_TWO))
        .await
        .unwrap_err();
    assert_eq!(stolen.code(), Code::Unauthenticated, "{stolen:?}");
    // An admin token is another client too.
    let admin = pb::accounts_client::AccountsClient::new(channel.clone())
        .get_account(req(pb::GetAccountRequest { number: A.into() }, ADMIN))
        .await
        .unwrap_err();
    assert_eq!(admin.code(), Code::Unauthenticated);
    // Public calls need no token.
    catalog(&channel)
        .list_services(pb::ListServicesRequest::default())
        .await
        .unwrap();

    // A certificate of the right CA in another trust domain names nobody.
    let foreign = client_ca.client("spiffe://elsewhere.test/ivr/demo-ivr");
    let channel = tls_channel(g.grpc(), &server_ca.pem, Some(&foreign))
        .await
        .unwrap();
    let refused = authz(&channel)
        .authorize(req(authorize_req("mtls-3", A, TAROT), IVR))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    // No certificate, or one the client CA did not sign: no connection.
    for identity in [
        None,
        Some(&server_ca.client("spiffe://callauth.test/ivr/demo-ivr")),
    ] {
        let attempt = async {
            let channel = tls_channel(g.grpc(), &server_ca.pem, identity)
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            authz(&channel)
                .authorize(req(authorize_req("mtls-4", A, TAROT), IVR))
                .await
        };
        let err = attempt.await.unwrap_err();
        assert_ne!(err.code(), Code::Ok);
        assert_ne!(
            err.code(),
            Code::Unauthenticated,
            "refused by the handshake, not the token"
        );
    }
    drop(channel);
    g.stop().await;
}

/// `--tls-client-auth optional`: clients without a certificate keep working
/// on tokens, except those the tokens file marks `require_certificate`; a
/// certificate presented is still bound to its token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_client_certificates() {
    let dir = CertDir::new();
    let (server_ca, client_ca) = (TestCa::new("server CA"), TestCa::new("client CA"));
    let mut settings = server_files(&dir, &server_ca, 1);
    settings.client_ca = Some(dir.write("client-ca.crt", &client_ca.pem));
    settings.client_auth = ClientAuth::Optional;
    let g = start_tls(settings).await;

    let anonymous = tls_channel(g.grpc(), &server_ca.pem, None).await.unwrap();
    let ok = authz(&anonymous)
        .authorize(req(authorize_req("opt-1", A, TAROT), IVR))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.decision, pb::Decision::ConsentRequired as i32);

    let with_cert = tls_channel(
        g.grpc(),
        &server_ca.pem,
        Some(&client_ca.client("spiffe://any.test/ivr-two")),
    )
    .await
    .unwrap();
    let err = authz(&with_cert)
        .authorize(req(authorize_req("opt-2", A, TAROT), IVR))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    authz(&with_cert)
        .authorize(req(authorize_req("opt-3", A, TAROT), IVR_TWO))
        .await
        .unwrap();
    drop((anonymous, with_cert));
    g.stop().await;
}

/// The certificate files are replaced (as cert-manager renews a Secret): a
/// new connection is served the new certificate, an established one keeps
/// working on its session; a bad replacement is refused and the current
/// certificate stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reload_keeps_established_connections() {
    let (dir, ca) = (CertDir::new(), TestCa::new("callauth test CA"));
    let first = ca.server(1);
    let (cert_path, key_path) = dir.write_pair("tls", &first);
    let mut settings = TlsSettings::new(&cert_path, &key_path);
    settings.reload_interval = Duration::from_millis(50);
    let g = start_tls(settings).await;
    assert_eq!(
        served_fingerprint(g.grpc(), &ca.pem).await,
        sha256(&first.der)
    );

    let (old, opened) = counting_channel(g.grpc(), &ca.pem).await;
    catalog(&old)
        .list_services(pb::ListServicesRequest::default())
        .await
        .unwrap();
    assert_eq!(opened.load(Ordering::SeqCst), 1);

    let second = ca.server(2);
    assert_ne!(sha256(&second.der), sha256(&first.der));
    // Key first, then certificate: for a moment the pair does not match,
    // which the reload must survive.
    dir.write("tls.key", &second.key_pem);
    dir.write("tls.crt", &second.cert_pem);
    eventually("new connections get the second certificate", || async {
        served_fingerprint(g.grpc(), &ca.pem).await == sha256(&second.der)
    })
    .await;
    // The HTTP listener serves the same certificate.
    let http = tls_connect(g.http(), rustls_client(&ca.pem, b"http/1.1"))
        .await
        .unwrap();
    assert_eq!(
        sha256(http.get_ref().1.peer_certificates().unwrap()[0].as_ref()),
        sha256(&second.der)
    );

    // The connection made before the reload still answers, and no new
    // connection was opened for it.
    catalog(&old)
        .list_services(pb::ListServicesRequest::default())
        .await
        .unwrap();
    assert_eq!(opened.load(Ordering::SeqCst), 1);

    // A broken key file: the reload fails (counted), the second
    // certificate stays in use.
    let errors_before = reload_errors(g.http(), &ca.pem).await;
    dir.write("tls.key", "-----BEGIN PRIVATE KEY-----\nnot a key\n");
    eventually("the broken key file is refused", || async {
        reload_errors(g.http(), &ca.pem).await > errors_before
    })
    .await;
    assert_eq!(
        served_fingerprint(g.grpc(), &ca.pem).await,
        sha256(&second.der)
    );
    catalog(&tls_channel(g.grpc(), &ca.pem, None).await.unwrap())
        .list_services(pb::ListServicesRequest::default())
        .await
        .unwrap();
    drop(old);
    g.stop().await;
}

/// `callauth_tls_reloads_total{result="error"}` as scraped.
async fn reload_errors(http: SocketAddr, ca_pem: &str) -> f64 {
    let (_, body) = https_get(http, ca_pem, "/metrics").await.unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix("callauth_tls_reloads_total{result=\"error\"} "))
        .map(|v| v.parse().unwrap())
        .unwrap_or(0.0)
}

/// Runs a binary of this package to the end (on a blocking thread, so the
/// in-process gateway keeps serving); its exit status and output.
async fn run_binary(path: &'static str, args: Vec<String>) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(path).args(&args).output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    })
    .await
    .unwrap()
}

/// callauthctl reaches a TLS gateway (https://, --ca-cert) and, with
/// --client-cert/--client-key, one that requires client certificates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callauthctl_over_https_and_mutual_tls() {
    let dir = CertDir::new();
    let (server_ca, client_ca) = (TestCa::new("server CA"), TestCa::new("client CA"));
    let ca_file = dir.write("ca.crt", &server_ca.pem);
    let mut settings = server_files(&dir, &server_ca, 1);
    settings.client_ca = Some(dir.write("client-ca.crt", &client_ca.pem));
    let g = start_tls(settings).await;
    let (cert, key) = dir.write_pair(
        "admin",
        &client_ca.client("spiffe://callauth.test/demo-admin"),
    );
    let ctl = env!("CARGO_BIN_EXE_callauthctl");
    let endpoint = format!("https://127.0.0.1:{}", g.grpc().port());
    let base = |extra: &[&str]| -> Vec<String> {
        let mut args = vec![
            "--endpoint".to_string(),
            endpoint.clone(),
            "--ca-cert".into(),
            ca_file.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let client = [
        "--client-cert",
        cert.to_str().unwrap(),
        "--client-key",
        key.to_str().unwrap(),
    ];

    let mut args = base(&client);
    args.extend(["--demo".into(), "account".into(), A.into()]);
    let (ok, out) = run_binary(ctl, args).await;
    assert!(ok, "{out}");
    assert!(out.contains("account +46701234567"), "{out}");

    // Without its certificate the gateway refuses the connection.
    let mut args = base(&[]);
    args.extend(["services".into()]);
    let (ok, _) = run_binary(ctl, args).await;
    assert!(!ok);
    // Without the CA the gateway's certificate is not trusted.
    let (ok, _) = run_binary(
        ctl,
        vec![
            "--endpoint".into(),
            endpoint.clone(),
            "--client-cert".into(),
            cert.display().to_string(),
            "--client-key".into(),
            key.display().to_string(),
            "services".into(),
        ],
    )
    .await;
    assert!(!ok);
    g.stop().await;
}

/// Kills a child process when the test ends, even after a panic.
struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `callauth-settlement run` with CALLAUTH_TLS_CERT/KEY serves /readyz and
/// gRPC health over TLS only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_worker_serves_tls() {
    let (dir, ca) = (CertDir::new(), TestCa::new("callauth test CA"));
    let (cert, key) = dir.write_pair("tls", &ca.server(3));
    let db = common::pg::TestDb::new().await;
    let redis_port = tokio::task::spawn_blocking(common::redis::single_port)
        .await
        .unwrap();
    let (grpc_port, http_port) = (common::redis::free_port(), common::redis::free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_callauth-settlement"))
        .args([
            "run",
            "--grpc-listen",
            &format!("127.0.0.1:{grpc_port}"),
            "--http-listen",
            &format!("127.0.0.1:{http_port}"),
        ])
        .env("CALLAUTH_DATABASE_URL", &db.url)
        .env("CALLAUTH_STORE", format!("redis://127.0.0.1:{redis_port}"))
        .env("CALLAUTH_REDIS_PREFIX", common::redis::unique_prefix())
        .env("CALLAUTH_TLS_CERT", &cert)
        .env("CALLAUTH_TLS_KEY", &key)
        .env("CALLAUTH_SWISH_CALLBACK_TOKEN", "tls-test-swish-token")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.file("settlement.log")).unwrap())
        .spawn()
        .unwrap();
    let _child = Killed(child);
    let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    let grpc: SocketAddr = format!("127.0.0.1:{grpc_port}").parse().unwrap();
    let log = dir.file("settlement.log");
    let start = Instant::now();
    while !matches!(https_get(http, &ca.pem, "/readyz").await, Ok((200, _))) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the worker never became ready over HTTPS: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let channel = tls_channel(grpc, &ca.pem, None).await.unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    // The Swish callback is behind TLS too: an unknown callback token is
    // answered (refused) over HTTPS, not over plain HTTP.
    let (status, _) = https_get(http, &ca.pem, "/swish/callback/wrong-token")
        .await
        .unwrap();
    assert!(status >= 400, "{status}");
    let mut plain = TcpStream::connect(http).await.unwrap();
    plain
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = plain.read_to_end(&mut raw).await;
    assert!(!String::from_utf8_lossy(&raw).contains("ready"));
}

/// A private `redis-server` with TLS only (`--port 0 --tls-port`), its
/// certificate from `ca`; `extra` adds settings. Returns the TLS port.
fn tls_redis(dir: &CertDir, ca: &TestCa, extra: &[&str]) -> u16 {
    let (cert, key) = dir.write_pair("redis", &ca.server(99));
    let ca_file = dir.write("redis-ca.crt", &ca.pem);
    let port = common::redis::free_port();
    let port_s = port.to_string();
    let mut args = vec![
        "--port",
        "0",
        "--tls-port",
        &port_s,
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-key-file",
        key.to_str().unwrap(),
        "--tls-ca-cert-file",
        ca_file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    common::redis::spawn_redis(port, &args);
    port
}

fn redis_tls_config(url: String, ca_file: Option<std::path::PathBuf>) -> RedisConfig {
    let mut c = RedisConfig::new(&url);
    c.prefix = common::redis::unique_prefix();
    c.tls.ca_file = ca_file;
    // A TLS handshake on a busy 2-core machine may take longer than 500 ms.
    c.connection_timeout = Duration::from_secs(5);
    c.response_timeout = Duration::from_secs(5);
    c
}

/// rediss:// to one node that requires client certificates: the store
/// works with the private CA and a client certificate; without the CA, or
/// without the client certificate, connecting fails and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_single_node() {
    let (dir, ca) = (CertDir::new(), TestCa::new("redis CA"));
    let port = tls_redis(&dir, &ca, &["--tls-auth-clients", "yes"]);
    let url = format!("rediss://127.0.0.1:{port}");
    let ca_file = dir.file("redis-ca.crt");
    let (client_cert, client_key) =
        dir.write_pair("redis-client", &ca.client("spiffe://callauth.test/gateway"));

    let mut config = redis_tls_config(url.clone(), Some(ca_file.clone()));
    config.tls.client_cert = Some(client_cert.clone());
    config.tls.client_key = Some(client_key.clone());
    let store = RedisStore::connect(&config, common::policy())
        .await
        .unwrap();
    common::seed_catalog(&store).await;
    let catalog = store.catalog().await.unwrap();
    assert!(catalog.service(&common::n(common::TAROT)).is_some());
    assert_eq!(store.ready().await, Ok(()));

    // The system trust store does not know the private CA.
    let mut untrusted = redis_tls_config(url.clone(), None);
    untrusted.tls.client_cert = Some(client_cert.clone());
    untrusted.tls.client_key = Some(client_key.clone());
    let err = RedisStore::connect(&untrusted, common::policy())
        .await
        .err()
        .expect("a certificate of an unknown CA was accepted");
    assert!(
        format!("{err:#}").to_lowercase().contains("certificate"),
        "{err:#}"
    );
    // tls-auth-clients yes: no client certificate, no connection.
    let anonymous = redis_tls_config(url.clone(), Some(ca_file.clone()));
    assert!(RedisStore::connect(&anonymous, common::policy())
        .await
        .is_err());
    // Plaintext redis:// to the TLS port fails too.
    let plain = redis_tls_config(format!("redis://127.0.0.1:{port}"), None);
    assert!(RedisStore::connect(&plain, common::policy()).await.is_err());
}

/// rediss+cluster:// to a 3-master cluster whose nodes talk TLS to each
/// other too: keys in every slot range are written and read back through
/// the redirections, and the Function library is loaded on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_cluster() {
    let (dir, ca) = (CertDir::new(), TestCa::new("redis cluster CA"));
    let mut ports = Vec::new();
    for _ in 0..3 {
        let port = common::redis::free_port();
        let bus = (port + 10_000).to_string();
        let (cert, key) = dir.write_pair(&format!("node-{port}"), &ca.server(u64::from(port)));
        let ca_file = dir.write("cluster-ca.crt", &ca.pem);
        let port_s = port.to_string();
        common::redis::spawn_redis(
            port,
            &[
                "--port",
                "0",
                "--tls-port",
                &port_s,
                "--tls-cert-file",
                cert.to_str().unwrap(),
                "--tls-key-file",
                key.to_str().unwrap(),
                "--tls-ca-cert-file",
                ca_file.to_str().unwrap(),
                "--tls-cluster",
                "yes",
                "--tls-auth-clients",
                "no",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-port",
                &bus,
            ],
        );
        ports.push(port);
    }
    let ca_file = dir.file("cluster-ca.crt");
    let tls_cli = |port: Option<u16>| {
        let mut c = Command::new("redis-cli");
        c.args(["--tls", "--cacert", ca_file.to_str().unwrap()]);
        if let Some(p) = port {
            c.args(["-p", &p.to_string()]);
        }
        c
    };
    let mut create = tls_cli(None);
    create.args(["--cluster", "create"]);
    create.args(ports.iter().map(|p| format!("127.0.0.1:{p}")));
    create.args(["--cluster-replicas", "0", "--cluster-yes"]);
    let out = create.output().unwrap();
    assert!(
        out.status.success(),
        "cluster create over TLS failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let start = Instant::now();
    while !ports.iter().all(|&p| {
        let out = tls_cli(Some(p)).args(["cluster", "info"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok")
    }) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the TLS cluster never became ok"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let url = format!(
        "rediss+cluster://127.0.0.1:{},127.0.0.1:{}",
        ports[0], ports[1]
    );
    let config = redis_tls_config(url, Some(ca_file.clone()));
    let store = RedisStore::connect(&config, common::policy())
        .await
        .unwrap();
    common::seed_catalog(&store).await;
    assert!(store
        .catalog()
        .await
        .unwrap()
        .service(&common::n(common::PSYCH))
        .is_some());
    // 64 keys spread over the slots, so every node is reached.
    for i in 0..64 {
        let key = format!("{}:tls-probe:{i}", config.prefix);
        let () = store
            .conn()
            .query(redis::cmd("SET").arg(&key).arg(i))
            .await
            .unwrap();
        let back: i64 = store
            .conn()
            .query(redis::cmd("GET").arg(&key))
            .await
            .unwrap();
        assert_eq!(back, i);
    }
    // Without the private CA, the cluster is refused.
    let untrusted = redis_tls_config(format!("rediss+cluster://127.0.0.1:{}", ports[0]), None);
    assert!(RedisStore::connect(&untrusted, common::policy())
        .await
        .is_err());
}

/// PostgreSQL with `sslmode` in the database URL. When the server has SSL
/// on: `require` encrypts (pg_stat_ssl says so), `disable` does not,
/// `verify-full` against a CA that did not sign the server's certificate
/// fails and names the certificate, and (when the server's certificate is
/// self-signed, as Debian's snakeoil is) `verify-ca` with that certificate
/// as the root succeeds. When SSL is off: `require` fails clearly and
/// `disable`/`prefer` work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sslmode() {
    use sqlx::Connection;
    let db = common::pg::TestDb::new().await;
    let ssl_on: String = sqlx::query_scalar("show ssl")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let encrypted = |url: String| async move {
        let pool = callauth::settlement::context::connect(&url, 1).await?;
        let ssl: Option<bool> =
            sqlx::query_scalar("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
                .fetch_one(&pool)
                .await?;
        pool.close().await;
        Ok::<bool, sqlx::Error>(ssl.unwrap_or(false))
    };
    let with = |params: &str| format!("{}?{params}", db.url);
    assert!(!encrypted(with("sslmode=disable")).await.unwrap());

    if ssl_on == "on" {
        assert!(encrypted(with("sslmode=require")).await.unwrap());
        assert!(encrypted(with("sslmode=prefer")).await.unwrap());

        let dir = CertDir::new();
        let wrong_ca = dir.write("wrong-ca.crt", &TestCa::new("not the server's CA").pem);
        let err = encrypted(with(&format!(
            "sslmode=verify-full&sslrootcert={}",
            wrong_ca.display()
        )))
        .await
        .unwrap_err();
        assert!(
            err.to_string().to_lowercase().contains("certificate"),
            "{err}"
        );

        // The server's own certificate, read through SQL (superuser).
        let server_pem: String =
            sqlx::query_scalar("select pg_read_file(current_setting('ssl_cert_file'))")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        let der = {
            use rustls::pki_types::pem::PemObject;
            CertificateDer::from_pem_slice(server_pem.as_bytes()).unwrap()
        };
        let parsed = {
            use x509_cert::der::Decode;
            x509_cert::Certificate::from_der(der.as_ref()).unwrap()
        };
        if parsed.tbs_certificate.issuer == parsed.tbs_certificate.subject {
            let root = dir.write("server.crt", &server_pem);
            assert!(encrypted(with(&format!(
                "sslmode=verify-ca&sslrootcert={}",
                root.display()
            )))
            .await
            .unwrap());
        } else {
            eprintln!(
                "the server's certificate is not self-signed: verify-ca with it as root not tried"
            );
        }
    } else {
        let err = encrypted(with("sslmode=require")).await.unwrap_err();
        eprintln!("sslmode=require against a server without SSL: {err}");
        assert!(!encrypted(with("sslmode=prefer")).await.unwrap());
    }
    // Connection itself (not only the pool) parses sslmode too.
    let conn = sqlx::PgConnection::connect(&with("sslmode=disable"))
        .await
        .unwrap();
    conn.close().await.unwrap();
}
