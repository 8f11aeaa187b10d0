//! Authentication and roles (DESIGN invariant 10).
//!
//! Every client has its own bearer token and one role: `ivr` (Authorization
//! service), `merchant` bound to one merchant id (Usage service, its own
//! services only), or `admin` (catalogue changes, accounts). Catalogue
//! lookups are public (SPEC R5).
//!
//! Tokens are configured by their SHA-256 (or in clear, for development) and
//! looked up by the digest of the presented token, so the time a lookup takes
//! depends only on that digest, which reveals nothing about any valid token;
//! the final comparison is constant-time. Tokens must be long random strings
//! (at least 128 bits); `callauthctl gen-token` makes one.
//!
//! Mutual TLS (`--tls-client-ca`, `crate::tls`): on a connection whose client
//! presented a certificate, a token is accepted only if it belongs to the
//! client the certificate names, so a stolen token is useless from another
//! client's connection (UNAUTHENTICATED). A client marked
//! `require_certificate` in the tokens file is refused on a connection
//! without a certificate (for `--tls-client-auth optional`, while clients
//! move to certificates one by one). A certificate alone authenticates
//! nobody: the token still carries the role and stays the one credential to
//! issue and revoke (docs/deployment.md "Mutual TLS").

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

use crate::domain::MerchantId;
use crate::tls::{ClientCertificate, PeerInfo};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Ivr,
    Merchant(MerchantId),
    Admin,
}

impl Role {
    pub fn label(&self) -> &'static str {
        match self {
            Role::Ivr => "ivr",
            Role::Merchant(_) => "merchant",
            Role::Admin => "admin",
        }
    }
}

/// An authenticated client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub client_id: String,
    pub role: Role,
}

/// One client as configured in the tokens file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub id: String,
    /// "ivr", "merchant" or "admin".
    pub role: String,
    /// Required for merchants.
    #[serde(default)]
    pub merchant_id: Option<String>,
    /// Hex SHA-256 of the token (preferred: the file then holds no secret).
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// The token in clear (development only).
    #[serde(default)]
    pub token: Option<String>,
    /// Refuse this client's token on a connection without its client
    /// certificate (mutual TLS; see the module doc).
    #[serde(default)]
    pub require_certificate: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensFile {
    #[serde(default, rename = "client")]
    pub clients: Vec<ClientConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("cannot read tokens file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("tokens file: {0}")]
    Parse(String),
    #[error("client {0}: {1}")]
    Client(String, String),
}

/// The longest bearer token looked at, in bytes; a longer one is refused
/// (UNAUTHENTICATED) without hashing it. Real tokens are ~43 characters
/// (`callauthctl gen-token`); the request's whole header block may be up to
/// 64 KiB (`gateway::server::MAX_HEADER_LIST_BYTES`).
pub const MAX_TOKEN_BYTES: usize = 4096;

/// The configured clients, by token digest.
#[derive(Clone, Default)]
pub struct TokenRegistry {
    by_digest: Arc<HashMap<[u8; 32], Principal>>,
    /// Ids of the clients whose token needs their client certificate.
    certificate_required: Arc<HashSet<String>>,
}

impl std::fmt::Debug for TokenRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenRegistry({} clients)", self.by_digest.len())
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Hex SHA-256 of a token, for the tokens file.
pub fn token_sha256_hex(token: &str) -> String {
    digest(token).iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hex = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(out)
}

impl TokenRegistry {
    pub fn from_clients(clients: &[ClientConfig]) -> Result<TokenRegistry, AuthConfigError> {
        let mut by_digest = HashMap::new();
        let mut certificate_required = HashSet::new();
        for c in clients {
            let err = |m: &str| AuthConfigError::Client(c.id.clone(), m.to_string());
            if c.id.trim().is_empty() {
                return Err(AuthConfigError::Parse("a client has an empty id".into()));
            }
            let role = match (c.role.as_str(), &c.merchant_id) {
                ("ivr", None) => Role::Ivr,
                ("admin", None) => Role::Admin,
                ("merchant", Some(m)) => {
                    Role::Merchant(MerchantId::parse(m).map_err(|e| err(&e.to_string()))?)
                }
                ("merchant", None) => return Err(err("a merchant client needs merchant_id")),
                ("ivr" | "admin", Some(_)) => {
                    return Err(err("only merchant clients have a merchant_id"))
                }
                (other, _) => {
                    return Err(err(&format!(
                        "unknown role '{other}' (ivr, merchant, admin)"
                    )))
                }
            };
            let d = match (&c.token_sha256, &c.token) {
                (Some(h), None) => parse_hex32(&h.to_ascii_lowercase())
                    .ok_or_else(|| err("token_sha256 must be 64 hex digits"))?,
                (None, Some(t)) => {
                    if t.len() < 16 {
                        return Err(err("a token must be at least 16 characters"));
                    }
                    digest(t)
                }
                _ => return Err(err("give exactly one of token_sha256 and token")),
            };
            let principal = Principal {
                client_id: c.id.clone(),
                role,
            };
            if by_digest.insert(d, principal).is_some() {
                return Err(err("two clients share a token"));
            }
            if c.require_certificate {
                certificate_required.insert(c.id.clone());
            }
        }
        Ok(TokenRegistry {
            by_digest: Arc::new(by_digest),
            certificate_required: Arc::new(certificate_required),
        })
    }

    pub fn from_file(path: &Path) -> Result<TokenRegistry, AuthConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let file: TokensFile =
            toml::from_str(&text).map_err(|e| AuthConfigError::Parse(e.to_string()))?;
        TokenRegistry::from_clients(&file.clients)
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let d = digest(token);
        let (stored, principal) = self.by_digest.get_key_value(&d)?;
        bool::from(stored.ct_eq(&d)).then(|| principal.clone())
    }

    /// Whether `principal` may act on a connection whose client presented
    /// `certificate` (None: no certificate, or no TLS); the refusal says why
    /// without naming either client.
    pub fn check_connection(
        &self,
        principal: &Principal,
        certificate: Option<&ClientCertificate>,
    ) -> Result<(), Status> {
        match certificate {
            Some(cert) if cert.client_id.as_deref() == Some(principal.client_id.as_str()) => Ok(()),
            Some(_) => Err(Status::unauthenticated(
                "this token does not belong to the client named by the connection's certificate",
            )),
            None if self.certificate_required.contains(&principal.client_id) => Err(
                Status::unauthenticated("this client must connect with its client certificate"),
            ),
            None => Ok(()),
        }
    }

    /// A tonic interceptor: a valid bearer token attaches its [`Principal`]
    /// to the request; an invalid one is refused at once; no token leaves the
    /// request anonymous (the handler decides). On a TLS connection with a
    /// client certificate the token must be that client's
    /// ([`TokenRegistry::check_connection`]).
    pub fn interceptor(
        &self,
    ) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + 'static {
        let registry = self.clone();
        move |mut req: Request<()>| {
            let Some(value) = req.metadata().get("authorization") else {
                return Ok(req);
            };
            let token = value
                .to_str()
                .ok()
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .ok_or_else(|| Status::unauthenticated("authorization must be 'Bearer <token>'"))?;
            if token.len() > MAX_TOKEN_BYTES {
                return Err(Status::unauthenticated(format!(
                    "the bearer token is longer than {MAX_TOKEN_BYTES} bytes"
                )));
            }
            let principal = registry
                .authenticate(token.trim())
                .ok_or_else(|| Status::unauthenticated("unknown token"))?;
            let certificate = req
                .extensions()
                .get::<PeerInfo>()
                .and_then(|peer| peer.certificate.as_ref());
            registry.check_connection(&principal, certificate)?;
            req.extensions_mut().insert(principal);
            Ok(req)
        }
    }
}

/// The principal of a request, or `UNAUTHENTICATED`.
pub fn principal<T>(req: &Request<T>) -> Result<&Principal, Status> {
    req.extensions()
        .get::<Principal>()
        .ok_or_else(|| Status::unauthenticated("this call needs a bearer token"))
}

pub fn require_ivr<T>(req: &Request<T>) -> Result<&Principal, Status> {
    let p = principal(req)?;
    // Only IVR clients: a call is bound to the client that authorized it
    // (only it may extend or release it), and an administrator is not an IVR.
    match p.role {
        Role::Ivr => Ok(p),
        _ => Err(Status::permission_denied(
            "only IVR clients may authorize, extend or release calls",
        )),
    }
}

pub fn require_admin<T>(req: &Request<T>) -> Result<&Principal, Status> {
    let p = principal(req)?;
    match p.role {
        Role::Admin => Ok(p),
        _ => Err(Status::permission_denied("this call needs an admin token")),
    }
}

/// The merchant a request acts for, or `PERMISSION_DENIED`.
pub fn require_merchant<T>(req: &Request<T>) -> Result<MerchantId, Status> {
    let p = principal(req)?;
    match &p.role {
        Role::Merchant(m) => Ok(m.clone()),
        _ => Err(Status::permission_denied(
            "only merchant clients may report usage",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: &str, role: &str, merchant: Option<&str>, token: &str) -> ClientConfig {
        ClientConfig {
            id: id.into(),
            role: role.into(),
            merchant_id: merchant.map(Into::into),
            token_sha256: None,
            token: Some(token.into()),
            require_certificate: false,
        }
    }

    #[test]
    fn authenticates_by_token() {
        let mut hashed = client("ops", "admin", None, "x");
        hashed.token = None;
        hashed.token_sha256 = Some(token_sha256_hex("admin-token-0123456789"));
        let reg = TokenRegistry::from_clients(&[
            client("ivr-1", "ivr", None, "ivr-token-0123456789"),
            client(
                "m1",
                "merchant",
                Some("stjarnlinjen"),
                "merchant-token-0123456789",
            ),
            hashed,
        ])
        .unwrap();
        assert_eq!(
            reg.authenticate("ivr-token-0123456789").unwrap().role,
            Role::Ivr
        );
        assert_eq!(
            reg.authenticate("merchant-token-0123456789").unwrap().role,
            Role::Merchant(MerchantId::parse("stjarnlinjen").unwrap())
        );
        assert_eq!(
            reg.authenticate("admin-token-0123456789")
                .unwrap()
                .client_id,
            "ops"
        );
        assert!(reg.authenticate("ivr-token-012345678").is_none());
        assert!(reg.authenticate("").is_none());
    }

    #[test]
    fn refuses_bad_configuration() {
        assert!(
            TokenRegistry::from_clients(&[client("m", "merchant", None, "0123456789abcdef")])
                .is_err()
        );
        assert!(
            TokenRegistry::from_clients(&[client("i", "ivr", Some("x"), "0123456789abcdef")])
                .is_err()
        );
        assert!(
            TokenRegistry::from_clients(&[client("i", "root", None, "0123456789abcdef")]).is_err()
        );
        assert!(TokenRegistry::from_clients(&[client("i", "ivr", None, "short")]).is_err());
        assert!(TokenRegistry::from_clients(&[
            client("a", "ivr", None, "0123456789abcdef"),
            client("b", "admin", None, "0123456789abcdef"),
        ])
        .is_err());
        let file: TokensFile = toml::from_str(
            r#"
            [[client]]
            id = "ivr-1"
            role = "ivr"
            token_sha256 = "00"
        "#,
        )
        .unwrap();
        assert!(TokenRegistry::from_clients(&file.clients).is_err());
    }

    /// Mutual TLS: a token is accepted on a certificate's connection only
    /// when both name the same client; a client that requires its
    /// certificate is refused without one; others keep working on tokens.
    #[test]
    fn binds_tokens_to_the_connection_certificate() {
        let mut strict = client("ivr-2", "ivr", None, "ivr-token-2-0123456789");
        strict.require_certificate = true;
        let reg = TokenRegistry::from_clients(&[
            client("ivr-1", "ivr", None, "ivr-token-1-0123456789"),
            strict,
        ])
        .unwrap();
        let ivr1 = reg.authenticate("ivr-token-1-0123456789").unwrap();
        let ivr2 = reg.authenticate("ivr-token-2-0123456789").unwrap();
        let cert = |id: Option<&str>| ClientCertificate {
            client_id: id.map(Arc::from),
        };
        assert!(reg
            .check_connection(&ivr1, Some(&cert(Some("ivr-1"))))
            .is_ok());
        assert!(reg.check_connection(&ivr1, None).is_ok());
        for wrong in [cert(Some("ivr-2")), cert(Some("IVR-1")), cert(None)] {
            let refused = reg.check_connection(&ivr1, Some(&wrong)).unwrap_err();
            assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{wrong:?}");
        }
        assert!(reg
            .check_connection(&ivr2, Some(&cert(Some("ivr-2"))))
            .is_ok());
        assert_eq!(
            reg.check_connection(&ivr2, None).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }
}
