//! TLS for the listeners of both server processes: the certificate and key
//! files, their reload, optional client certificates (mutual TLS) and the
//! identity a client certificate carries.
//!
//! One [`TlsServer`] per process serves the gRPC listener and the HTTP
//! listener (`/metrics`, `/readyz`, the Swish callback) from the same
//! certificate. Only the gRPC listener asks for client certificates: the
//! HTTP listener is scraped by Prometheus, probed by the kubelet and called
//! by Swish, none of which holds a certificate of our client CA.
//!
//! Reload: the files are re-read every `reload_interval` (polling, not
//! inotify: a Kubernetes Secret is updated by swapping a symlink, which file
//! watchers report unreliably, and three small files cost nothing to read).
//! When their content changed, a whole new rustls configuration is built and
//! swapped in atomically; handshakes from then on use it, established
//! connections keep the session they negotiated. A change that does not load
//! (a key that does not match the certificate, a half-written file) is
//! logged and counted once, and the current configuration stays.
//!
//! Handshakes run on tasks of their own (at most [`MAX_HANDSHAKES`] at once
//! per listener, each within [`HANDSHAKE_TIMEOUT`]), so a slow or silent
//! client never holds up the accept loop.
//!
//! Client identity: a client certificate names its client by a SPIFFE ID,
//! its one URI SAN `spiffe://<trust-domain>/<path…>/<client-id>`, the last
//! path segment being the `id` of the tokens file (`src/auth.rs`). Not the
//! CN: RFC 6125 retired the CN as an identity and cert-manager, SPIRE and
//! service meshes issue URI SANs. The certificate binds a token to the
//! client it was issued to; it does not replace the token (docs/deployment.md
//! "Mutual TLS" says why).
//!
//! One crypto provider for the whole process: ring (see Cargo.toml).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::metrics as m;
use crate::process::Tasks;

/// Handshakes in progress at once per listener; beyond it, accepting waits.
pub const MAX_HANDSHAKES: usize = 256;
/// A client that has not finished its handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the gRPC listener requires a client certificate or only checks
/// one when it is presented.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientAuth {
    /// Every connection must present a certificate of the client CA.
    Required,
    /// A certificate is checked when presented; connections without one
    /// are accepted (for migrating clients one by one; see the tokens file's
    /// `require_certificate`).
    Optional,
}

/// The TLS flags, shared by `callauth-gateway` and `callauth-settlement run`.
#[derive(clap::Args, Debug, Clone)]
pub struct TlsArgs {
    /// PEM certificate chain (leaf first) for the gRPC and HTTP listeners.
    /// With --tls-key, both listeners serve TLS only; without, plaintext.
    /// Re-read when it changes (see --tls-reload-seconds).
    #[arg(long, env = "CALLAUTH_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "CALLAUTH_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificate(s) that sign client certificates: the gRPC
    /// listener then asks clients for a certificate (mutual TLS) and binds
    /// each bearer token to the client its certificate names.
    #[arg(long, env = "CALLAUTH_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,

    /// With --tls-client-ca: "required" refuses connections without a
    /// client certificate; "optional" accepts them (tokens alone, as before).
    #[arg(
        long,
        env = "CALLAUTH_TLS_CLIENT_AUTH",
        value_enum,
        default_value = "required"
    )]
    pub tls_client_auth: ClientAuth,

    /// With --tls-client-ca: the SPIFFE trust domain client certificates
    /// must name (`spiffe://<this>/…/<client-id>`); any trust domain if unset.
    #[arg(long, env = "CALLAUTH_TLS_CLIENT_TRUST_DOMAIN")]
    pub tls_client_trust_domain: Option<String>,

    /// How often the certificate, key and client CA files are checked for
    /// changes, seconds.
    #[arg(long, env = "CALLAUTH_TLS_RELOAD_SECONDS", default_value_t = 10)]
    pub tls_reload_seconds: u64,
}

impl TlsArgs {
    /// The TLS settings, `None` for plaintext; an inconsistent combination
    /// of flags is an error naming them.
    pub fn settings(&self) -> Result<Option<TlsSettings>, String> {
        let (cert, key) = match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            (None, None) => {
                if self.tls_client_ca.is_some() {
                    return Err("--tls-client-ca needs --tls-cert and --tls-key".into());
                }
                return Ok(None);
            }
            _ => return Err("--tls-cert and --tls-key go together".into()),
        };
        if self.tls_client_ca.is_none() && self.tls_client_trust_domain.is_some() {
            return Err("--tls-client-trust-domain needs --tls-client-ca".into());
        }
        if self.tls_reload_seconds == 0 {
            return Err("--tls-reload-seconds must be positive".into());
        }
        Ok(Some(TlsSettings {
            cert,
            key,
            client_ca: self.tls_client_ca.clone(),
            client_auth: self.tls_client_auth,
            trust_domain: self.tls_client_trust_domain.clone(),
            reload_interval: Duration::from_secs(self.tls_reload_seconds),
        }))
    }
}

/// Where a process's TLS material is and how client certificates are treated.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
    pub trust_domain: Option<String>,
    pub reload_interval: Duration,
}

impl TlsSettings {
    /// Server certificate and key, no client certificates, checked every 10 s.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsSettings {
        TlsSettings {
            cert: cert.into(),
            key: key.into(),
            client_ca: None,
            client_auth: ClientAuth::Required,
            trust_domain: None,
            reload_interval: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("the {what} {path} is not usable: {reason}")]
    Invalid {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Which listener a connection came in on: only gRPC asks for client certificates.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Listener {
    Grpc,
    Http,
}

impl Listener {
    fn label(self) -> &'static str {
        match self {
            Listener::Grpc => "grpc",
            Listener::Http => "http",
        }
    }
}

/// What the server knows of a TLS client after the handshake; tonic puts it
/// in every request's extensions (the interceptor reads it).
#[derive(Clone, Debug, Default)]
pub struct PeerInfo {
    pub remote_addr: Option<SocketAddr>,
    /// Present when the client presented a certificate the client CA signed.
    pub certificate: Option<ClientCertificate>,
}

/// A verified client certificate and the client id it names, if it names one
/// (see the module doc); a certificate naming none authenticates no token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertificate {
    pub client_id: Option<Arc<str>>,
}

/// The file contents a configuration was built from, and what came of them.
struct Loaded {
    grpc: Arc<ServerConfig>,
    http: Arc<ServerConfig>,
    digest: [u8; 32],
    /// SHA-256 of the leaf certificate (DER), for logs and tests.
    fingerprint: [u8; 32],
    not_after_unix_s: u64,
}

/// The TLS configuration of a process's listeners, reloaded on change.
pub struct TlsServer {
    settings: TlsSettings,
    current: ArcSwap<Loaded>,
    /// The digest of file contents that failed to load: not retried (nor
    /// logged again) until the files change once more.
    failed: Mutex<Option<[u8; 32]>>,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer")
            .field("cert", &self.settings.cert)
            .field("client_ca", &self.settings.client_ca)
            .finish()
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

fn invalid(what: &'static str, path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::Invalid {
        what,
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// The certificates of a PEM file, at least one.
fn certificates(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(what, path, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(what, path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

/// The expiry of a DER certificate, seconds since the Unix epoch.
pub fn not_after_unix_s(der: &[u8]) -> Result<u64, String> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(der).map_err(|e| format!("bad X.509: {e}"))?;
    Ok(cert
        .tbs_certificate
        .validity
        .not_after
        .to_unix_duration()
        .as_secs())
}

/// The client id a client certificate names: the last path segment of its
/// one URI SAN, a SPIFFE ID (`spiffe://<trust-domain>/<path…>/<client-id>`),
/// whose trust domain must be `trust_domain` when one is configured. `None`
/// when the certificate names no client that way (no URI SAN, several, not
/// SPIFFE, another trust domain, an empty path).
pub fn client_id_of(der: &[u8], trust_domain: Option<&str>) -> Option<String> {
    use x509_cert::der::Decode;
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::SubjectAltName;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let (_, san) = cert.tbs_certificate.get::<SubjectAltName>().ok()??;
    let mut uris = san.0.iter().filter_map(|n| match n {
        GeneralName::UniformResourceIdentifier(u) => Some(u.to_string()),
        _ => None,
    });
    // An X.509-SVID carries exactly one URI SAN (SPIFFE X509-SVID §2).
    let uri = uris.next()?;
    if uris.next().is_some() {
        return None;
    }
    let rest = uri.strip_prefix("spiffe://")?;
    let (domain, path) = rest.split_once('/')?;
    if domain.is_empty() || trust_domain.is_some_and(|d| !d.eq_ignore_ascii_case(domain)) {
        return None;
    }
    let id = path.rsplit('/').next()?;
    if id.is_empty() || path.contains(['?', '#']) {
        return None;
    }
    Some(id.to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl TlsServer {
    /// Loads the files; an error here stops the process (nothing to keep yet).
    pub fn load(settings: TlsSettings) -> Result<Arc<TlsServer>, TlsError> {
        let (digest, files) = Self::read_files(&settings)?;
        let loaded = Self::build(&settings, digest, &files)?;
        m::preregister_tls();
        Self::export(&loaded);
        tracing::info!(
            cert = %settings.cert.display(),
            fingerprint_sha256 = %hex(&loaded.fingerprint),
            not_after_unix_s = loaded.not_after_unix_s,
            client_ca = ?settings.client_ca.as_ref().map(|p| p.display().to_string()),
            "TLS on"
        );
        Ok(Arc::new(TlsServer {
            settings,
            current: ArcSwap::from_pointee(loaded),
            failed: Mutex::new(None),
        }))
    }

    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// SHA-256 of the certificate new connections are served.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.current.load().fingerprint
    }

    /// Re-reads the files: `Ok(true)` when they changed and the new
    /// configuration is in use, `Ok(false)` when nothing changed (or the
    /// change already failed once); an error leaves the current one in use.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let (digest, files) = Self::read_files(&self.settings)?;
        if digest == self.current.load().digest {
            return Ok(false);
        }
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if *failed == Some(digest) {
            return Ok(false);
        }
        match Self::build(&self.settings, digest, &files) {
            Ok(loaded) => {
                *failed = None;
                Self::export(&loaded);
                tracing::info!(
                    cert = %self.settings.cert.display(),
                    fingerprint_sha256 = %hex(&loaded.fingerprint),
                    not_after_unix_s = loaded.not_after_unix_s,
                    "TLS certificate reloaded; established connections keep theirs"
                );
                self.current.store(Arc::new(loaded));
                metrics::counter!(m::TLS_RELOADS_TOTAL, "result" => "ok").increment(1);
                Ok(true)
            }
            Err(e) => {
                *failed = Some(digest);
                metrics::counter!(m::TLS_RELOADS_TOTAL, "result" => "error").increment(1);
                Err(e)
            }
        }
    }

    /// Checks the files every `reload_interval` until the process stops.
    pub fn watch(self: &Arc<Self>, tasks: &mut Tasks) {
        let server = self.clone();
        tasks.every(self.settings.reload_interval, move || {
            let server = server.clone();
            async move {
                let result =
                    tokio::task::spawn_blocking(move || server.reload_if_changed()).await;
                match result {
                    Ok(Ok(_)) => {}
                    // A file being replaced reads as missing or half-written
                    // for a moment: logged once per content, retried on change.
                    Ok(Err(e)) => tracing::warn!(error = %e, "TLS files changed but do not load; the current certificate stays in use"),
                    Err(e) => tracing::warn!(error = %e, "TLS reload task failed"),
                }
            }
        });
    }

    fn read_files(settings: &TlsSettings) -> Result<([u8; 32], Files), TlsError> {
        let files = Files {
            cert: read("certificate", &settings.cert)?,
            key: read("private key", &settings.key)?,
            client_ca: match &settings.client_ca {
                Some(p) => Some(read("client CA", p)?),
                None => None,
            },
        };
        let mut h = Sha256::new();
        for part in [&files.cert, &files.key] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        if let Some(ca) = &files.client_ca {
            h.update(ca);
        }
        Ok((h.finalize().into(), files))
    }

    fn build(settings: &TlsSettings, digest: [u8; 32], files: &Files) -> Result<Loaded, TlsError> {
        let chain = certificates("certificate", &settings.cert, &files.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&files.key)
            .map_err(|e| invalid("private key", &settings.key, format!("bad PEM: {e}")))?;
        let not_after =
            not_after_unix_s(&chain[0]).map_err(|e| invalid("certificate", &settings.cert, e))?;
        let fingerprint: [u8; 32] = Sha256::digest(&chain[0]).into();

        let client_verifier = match (&settings.client_ca, &files.client_ca) {
            (Some(path), Some(pem)) => {
                let mut roots = RootCertStore::empty();
                for ca in certificates("client CA", path, pem)? {
                    roots
                        .add(ca)
                        .map_err(|e| invalid("client CA", path, e.to_string()))?;
                }
                // The process's provider: ring, the only one compiled in.
                let builder = WebPkiClientVerifier::builder(Arc::new(roots));
                let builder = match settings.client_auth {
                    ClientAuth::Required => builder,
                    ClientAuth::Optional => builder.allow_unauthenticated(),
                };
                Some(
                    builder
                        .build()
                        .map_err(|e| invalid("client CA", path, e.to_string()))?,
                )
            }
            _ => None,
        };

        let mut grpc = match client_verifier {
            Some(v) => ServerConfig::builder().with_client_cert_verifier(v),
            None => ServerConfig::builder().with_no_client_auth(),
        }
        .with_single_cert(chain.clone(), key.clone_key())?;
        grpc.alpn_protocols = vec![b"h2".to_vec()];
        let mut http = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Loaded {
            grpc: Arc::new(grpc),
            http: Arc::new(http),
            digest,
            fingerprint,
            not_after_unix_s: not_after,
        })
    }

    fn export(loaded: &Loaded) {
        metrics::gauge!(m::TLS_CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS)
            .set(loaded.not_after_unix_s as f64);
    }

    fn acceptor(&self, listener: Listener) -> TlsAcceptor {
        let loaded = self.current.load();
        TlsAcceptor::from(match listener {
            Listener::Grpc => loaded.grpc.clone(),
            Listener::Http => loaded.http.clone(),
        })
    }

    /// Accepts TCP connections on `tcp` until the process stops and hands
    /// out those whose handshake succeeded.
    fn accept(
        self: &Arc<Self>,
        tasks: &mut Tasks,
        tcp: TcpListener,
        listener: Listener,
    ) -> mpsc::Receiver<TlsConn> {
        let (tx, rx) = mpsc::channel(64);
        let server = self.clone();
        let mut stop = tasks.stop_signal();
        let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        tasks.spawn(async move {
            loop {
                let permit = tokio::select! {
                    _ = stop.changed() => break,
                    p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                };
                let (stream, remote) = tokio::select! {
                    _ = stop.changed() => break,
                    accepted = tcp.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            accept_error(e).await;
                            continue;
                        }
                    },
                };
                // Nagle's algorithm meets the client's delayed ACK otherwise
                // (~40 ms per answer), as on the plaintext listener.
                let _ = stream.set_nodelay(true);
                let acceptor = server.acceptor(listener);
                let (tx, server) = (tx.clone(), server.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let conn = TlsConn::new(tls, remote, &server.settings);
                            let _ = tx.send(conn).await;
                        }
                        Ok(Err(e)) => {
                            handshake_failed(listener);
                            tracing::debug!(listener = listener.label(), error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            handshake_failed(listener);
                            tracing::debug!(listener = listener.label(), "TLS handshake timed out");
                        }
                    }
                });
            }
            Ok(())
        });
        rx
    }

    /// The accepted gRPC connections of `tcp`, for
    /// `Router::serve_with_incoming_shutdown`.
    pub fn grpc_incoming(
        self: &Arc<Self>,
        tasks: &mut Tasks,
        tcp: TcpListener,
    ) -> impl futures_util::Stream<Item = Result<TlsConn, io::Error>> + Send + 'static {
        use futures_util::StreamExt;
        tokio_stream::wrappers::ReceiverStream::new(self.accept(tasks, tcp, Listener::Grpc)).map(Ok)
    }

    /// The accepted HTTP connections of `tcp`, for `axum::serve`.
    pub fn http_listener(
        self: &Arc<Self>,
        tasks: &mut Tasks,
        tcp: TcpListener,
    ) -> io::Result<TlsListener> {
        let local_addr = tcp.local_addr()?;
        Ok(TlsListener {
            rx: self.accept(tasks, tcp, Listener::Http),
            local_addr,
        })
    }
}

struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

fn handshake_failed(listener: Listener) {
    metrics::counter!(m::TLS_HANDSHAKE_FAILURES_TOTAL, "listener" => listener.label()).increment(1);
}

/// As axum's own listener: a connection-level error (the client left before
/// it was accepted) is skipped; anything else (out of file descriptors) is
/// logged and retried a moment later instead of spinning.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// A server-side TLS connection and what is known of its client.
pub struct TlsConn {
    stream: TlsStream<TcpStream>,
    info: PeerInfo,
}

impl TlsConn {
    fn new(stream: TlsStream<TcpStream>, remote: SocketAddr, settings: &TlsSettings) -> TlsConn {
        let certificate = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| ClientCertificate {
                client_id: client_id_of(leaf, settings.trust_domain.as_deref()).map(Arc::from),
            });
        TlsConn {
            stream,
            info: PeerInfo {
                remote_addr: Some(remote),
                certificate,
            },
        }
    }

    pub fn peer(&self) -> &PeerInfo {
        &self.info
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

/// The HTTP listener's accepted TLS connections, as an axum listener.
pub struct TlsListener {
    rx: mpsc::Receiver<TlsConn>,
    local_addr: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsConn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TlsConn, SocketAddr) {
        match self.rx.recv().await {
            Some(conn) => {
                let addr = conn.info.remote_addr.unwrap_or(self.local_addr);
                (conn, addr)
            }
            // The accept loop ended: the process is stopping, and axum's
            // graceful shutdown ends the server.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    };

    fn ca() -> Issuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        Issuer::new(params, KeyPair::generate().unwrap())
    }

    /// A certificate signed by `ca` with these URI SANs; its DER and key PEM.
    fn leaf(ca: &Issuer<'static, KeyPair>, uris: &[&str]) -> (Vec<u8>, String, String) {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        for u in uris {
            params
                .subject_alt_names
                .push(SanType::URI((*u).try_into().unwrap()));
        }
        params.not_after = rcgen::date_time_ymd(2031, 3, 1);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, ca).unwrap();
        (cert.der().to_vec(), cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_client_is_named_by_the_last_segment_of_its_one_spiffe_id() {
        let ca = ca();
        let id = |uris: &[&str], domain: Option<&str>| client_id_of(&leaf(&ca, uris).0, domain);
        assert_eq!(
            id(&["spiffe://telephony.example/ivr/ivr-stockholm-1"], None).as_deref(),
            Some("ivr-stockholm-1")
        );
        assert_eq!(
            id(
                &["spiffe://telephony.example/ivr-1"],
                Some("Telephony.Example")
            )
            .as_deref(),
            Some("ivr-1")
        );
        // Another trust domain, no SPIFFE ID, two URI SANs, no path: nobody.
        assert_eq!(
            id(&["spiffe://other.example/ivr-1"], Some("telephony.example")),
            None
        );
        assert_eq!(id(&[], None), None);
        assert_eq!(id(&["https://telephony.example/ivr-1"], None), None);
        assert_eq!(
            id(
                &["spiffe://t.example/ivr-1", "spiffe://t.example/ivr-2"],
                None
            ),
            None
        );
        assert_eq!(id(&["spiffe://t.example/"], None), None);
        assert_eq!(id(&["spiffe://t.example"], None), None);
    }

    #[test]
    fn reads_the_expiry() {
        let (der, _, _) = leaf(&ca(), &[]);
        // 2031-03-01T00:00:00Z: 61 years of 365 days from 1970, 15 leap days
        // (1972…2028), then January and February 2031 (31 + 28 days).
        let expected = ((61 * 365 + 15 + 31 + 28) * 86_400) as u64;
        assert_eq!(not_after_unix_s(&der).unwrap(), expected);
        assert_eq!(expected, 1_930_089_600);
    }

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A changed pair is used at once; a key that does not match, or a
    /// half-written file, is refused once and the old pair stays in use;
    /// unchanged files are not reloaded.
    #[test]
    fn reloads_a_changed_pair_and_keeps_the_old_one_when_the_new_is_bad() {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = Dir(std::env::temp_dir().join(format!(
            "callauth-tls-unit-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        )));
        std::fs::create_dir_all(&dir.0).unwrap();
        let (cert_path, key_path) = (dir.0.join("tls.crt"), dir.0.join("tls.key"));
        let ca = ca();
        let (der_a, cert_a, key_a) = leaf(&ca, &[]);
        let (der_b, cert_b, key_b) = leaf(&ca, &[]);
        std::fs::write(&cert_path, &cert_a).unwrap();
        std::fs::write(&key_path, &key_a).unwrap();
        let server = TlsServer::load(TlsSettings::new(&cert_path, &key_path)).unwrap();
        let fingerprint = |der: &[u8]| -> [u8; 32] { Sha256::digest(der).into() };
        assert_eq!(server.fingerprint(), fingerprint(&der_a));
        assert!(!server.reload_if_changed().unwrap(), "nothing changed");

        // B's certificate with A's key: refused, A stays, and the same bad
        // content is not retried.
        std::fs::write(&cert_path, &cert_b).unwrap();
        let err = server.reload_if_changed().unwrap_err();
        assert!(matches!(err, TlsError::Config(_)), "{err}");
        assert_eq!(server.fingerprint(), fingerprint(&der_a));
        assert!(!server.reload_if_changed().unwrap());

        // The matching key arrives: B is used.
        std::fs::write(&key_path, &key_b).unwrap();
        assert!(server.reload_if_changed().unwrap());
        assert_eq!(server.fingerprint(), fingerprint(&der_b));

        // A truncated key file: refused, B stays.
        std::fs::write(&key_path, &key_b[..key_b.len() / 2]).unwrap();
        let err = server.reload_if_changed().unwrap_err();
        assert!(matches!(err, TlsError::Invalid { .. }), "{err}");
        assert_eq!(server.fingerprint(), fingerprint(&der_b));

        // A missing file: an error naming it, B stays.
        std::fs::remove_file(&key_path).unwrap();
        let err = server.reload_if_changed().unwrap_err().to_string();
        assert!(
            err.contains("private key") && err.contains("tls.key"),
            "{err}"
        );
        assert_eq!(server.fingerprint(), fingerprint(&der_b));
    }

    #[test]
    fn flags_go_together() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            tls: TlsArgs,
        }
        let settings = |args: &[&str]| {
            let mut all = vec!["x"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).unwrap().tls.settings()
        };
        assert!(settings(&[]).unwrap().is_none());
        assert!(settings(&["--tls-cert", "c"]).is_err());
        assert!(settings(&["--tls-client-ca", "ca"]).is_err());
        let s = settings(&["--tls-cert", "c", "--tls-key", "k", "--tls-client-ca", "ca"])
            .unwrap()
            .unwrap();
        assert_eq!(s.client_auth, ClientAuth::Required);
        assert_eq!(s.reload_interval, Duration::from_secs(10));
        let s = settings(&[
            "--tls-cert",
            "c",
            "--tls-key",
            "k",
            "--tls-client-ca",
            "ca",
            "--tls-client-auth",
            "optional",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.client_auth, ClientAuth::Optional);
    }
}
