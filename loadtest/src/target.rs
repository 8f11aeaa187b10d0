//! The system under test: its endpoint (loopback only unless allowed), one
//! HTTP/2 connection per `tonic::transport::Channel`, and the bearer tokens.
//!
//! Each `Channel` is connected eagerly and used round-robin, so `--connections
//! C` really means C TCP connections (a lazily connected or cloned channel
//! could share one).

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use callauth::gateway::catalog_file::{CatalogFile, DEMO};
use callauth::pb;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::Request;

/// Refuses a non-loopback endpoint unless `allow_remote`: a load test
/// pointed at a shared or production gateway by mistake does real harm.
pub fn check_endpoint(endpoint: &str, allow_remote: bool) -> anyhow::Result<()> {
    let uri: tonic::codegen::http::Uri = endpoint
        .parse()
        .with_context(|| format!("--endpoint {endpoint} is not a URI"))?;
    let host = uri.host().context("--endpoint has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback && !allow_remote {
        bail!("--endpoint {endpoint} is not a loopback address; pass --allow-remote to load a remote gateway on purpose");
    }
    Ok(())
}

/// `count` separately connected channels to `endpoint`.
pub async fn connect(
    endpoint: &str,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let ch = Endpoint::from_shared(endpoint.to_string())
            .context("invalid --endpoint")?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            // A client-side bound on every request: a hung request becomes a
            // counted DEADLINE_EXCEEDED-like error instead of stalling the run.
            .timeout(timeout)
            .connect()
            .await
            .with_context(|| format!("cannot connect to {endpoint}"))?;
        out.push(ch);
    }
    Ok(out)
}

/// `per_endpoint` channels to each of `endpoints`, interleaved (the first
/// of each endpoint, then the second of each, …), so that connection `i + 1`
/// is on another gateway than connection `i` when there are several: a
/// resend on the next connection (`retry`) reaches another gateway.
pub async fn connect_all(
    endpoints: &[String],
    per_endpoint: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Channel>> {
    let per_endpoint = per_endpoint.max(1);
    let mut each = Vec::with_capacity(endpoints.len());
    for e in endpoints {
        each.push(connect(e, per_endpoint, timeout).await?);
    }
    let mut out = Vec::with_capacity(endpoints.len() * per_endpoint);
    for i in 0..per_endpoint {
        for chans in &each {
            out.push(chans[i].clone());
        }
    }
    anyhow::ensure!(!out.is_empty(), "no --endpoint given");
    Ok(out)
}

/// A bearer token as gRPC metadata (parsed once, cloned per request).
#[derive(Clone)]
pub struct Token(MetadataValue<Ascii>);

impl Token {
    pub fn new(token: &str) -> anyhow::Result<Token> {
        Ok(Token(
            format!("Bearer {token}")
                .parse()
                .context("token is not valid header text")?,
        ))
    }

    pub fn request<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.metadata_mut().insert("authorization", self.0.clone());
        r
    }
}

/// The public demo tokens of `examples/demo.toml` (what `callauth-gateway
/// --demo` accepts).
pub struct DemoTokens {
    pub ivr: String,
    pub admin: String,
    /// (merchant_id, token)
    pub merchants: Vec<(String, String)>,
}

pub fn demo_tokens() -> anyhow::Result<DemoTokens> {
    let demo = CatalogFile::parse(DEMO).context("the built-in demo catalogue")?;
    let find = |role: &str| {
        demo.clients
            .iter()
            .find(|c| c.role == role)
            .and_then(|c| c.token.clone())
            .with_context(|| format!("the demo catalogue has no {role} token"))
    };
    let merchants = demo
        .clients
        .iter()
        .filter(|c| c.role == "merchant")
        .filter_map(|c| Some((c.merchant_id.clone()?, c.token.clone()?)))
        .collect();
    Ok(DemoTokens {
        ivr: find("ivr")?,
        admin: find("admin")?,
        merchants,
    })
}

/// The clients of one connection.
#[derive(Clone)]
pub struct Clients {
    pub authorization: pb::authorization_client::AuthorizationClient<Channel>,
    pub catalog: pb::catalog_client::CatalogClient<Channel>,
    pub accounts: pb::accounts_client::AccountsClient<Channel>,
}

impl Clients {
    pub fn new(ch: &Channel) -> Clients {
        Clients {
            authorization: pb::authorization_client::AuthorizationClient::new(ch.clone()),
            catalog: pb::catalog_client::CatalogClient::new(ch.clone()),
            accounts: pb::accounts_client::AccountsClient::new(ch.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_without_allow_remote() {
        assert!(check_endpoint("http://127.0.0.1:50051", false).is_ok());
        assert!(check_endpoint("http://localhost:50051", false).is_ok());
        assert!(check_endpoint("http://[::1]:50051", false).is_ok());
        assert!(check_endpoint("http://10.0.0.5:50051", false).is_err());
        assert!(check_endpoint("http://gateway.example:50051", false).is_err());
        assert!(check_endpoint("http://10.0.0.5:50051", true).is_ok());
    }
}
