//! Reference servers for `callauth.v1.Authorization`, to put the gateway's
//! figures in proportion on the same machine with the same client:
//!
//! * without `--fcall`: every Authorize is answered with a fixed ALLOWED and
//!   no work at all (no auth, no store) — the machine's gRPC ceiling;
//! * with `--fcall redis://…`: every Authorize does exactly one Redis `FCALL`
//!   of callauth's authorize Function (the command `RedisStore::authorize_command`
//!   builds, with a unique call id) on accounts this server set up at start —
//!   the ceiling of callauth on Redis. On a single node that command claims
//!   the call index inside the Function, as the gateway's does; this server
//!   skips the catalogue lookup, the auth interceptor, the concurrency limit
//!   and the metrics the gateway adds.
//!
//! The answer has the shape and size of the gateway's ALLOWED answer (the
//! terms with their announcement text), prebuilt once, so the bytes on the
//! wire match. The tonic server is configured like the gateway's
//! (`callauth::gateway::server::start`: TCP_NODELAY, request timeout, keep-alive,
//! connection age). Extend and Release answer fixed values in both modes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use callauth::domain::account::LimitChange;
use callauth::domain::catalog::{Merchant, Service, ServiceSpec, Terms};
use callauth::domain::decision::Consent;
use callauth::domain::{CallId, MerchantId, Money, Tariff, E164};
use callauth::gateway::api::convert;
use callauth::gateway::server::ServerOptions;
use callauth::pb;
use callauth::store::redis::{RedisConfig, RedisStore};
use callauth::store::{CallSpec, Evidence, Store, StorePolicy};
use rand::RngExt;
use tonic::{Request, Response, Status};

#[derive(clap::Args, Debug)]
pub struct NoopArgs {
    /// gRPC listen address.
    #[arg(long, default_value = "127.0.0.1:50061")]
    pub listen: SocketAddr,
    /// Do one FCALL of callauth's authorize Function per request on this
    /// Redis (redis://host:port) instead of no work.
    #[arg(long)]
    pub fcall: Option<String>,
    /// Key prefix of this server's accounts in Redis (keep it apart from a gateway's).
    #[arg(long, default_value = "ltfcall")]
    pub redis_prefix: String,
    /// Accounts set up at start (with --fcall); requests use them round-robin.
    #[arg(long, default_value_t = 1000)]
    pub numbers: usize,
    /// Tokio worker threads (0 = one per available core).
    #[arg(long, default_value_t = 0)]
    pub worker_threads: usize,
    /// Leave Nagle's algorithm on for accepted connections: a diagnostic of
    /// what a server without TCP_NODELAY costs (tonic ignores
    /// `Server::tcp_nodelay` with `serve_with_incoming*`, so a server that
    /// brings its own listener must set it on the incoming stream).
    #[arg(long)]
    pub nagle: bool,
}

/// The service both modes answer for: Tarotlinjen of the demo catalogue,
/// 29,90 kr per started minute (the authorize scenario's default service).
const SERVICE_NUMBER: &str = "+469001001010";
const PRICE_PER_MINUTE_ORE: i64 = 2990;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn tariff() -> Tariff {
    Tariff {
        price_per_minute: Money::ore_unchecked(PRICE_PER_MINUTE_ORE),
        billing_step_seconds: 60,
        minimum_minutes: 0,
    }
}

/// The gateway's ALLOWED answer for `terms` with a full 900 s grant.
fn allowed_template(terms: &Terms) -> pb::AuthorizeResponse {
    pb::AuthorizeResponse {
        decision: pb::Decision::Allowed as i32,
        reason: pb::Reason::Granted as i32,
        granted_seconds: 900,
        terms: Some(convert::terms(terms, false)),
        funding: pb::Funding::Postpaid as i32,
        hold_ore: PRICE_PER_MINUTE_ORE * 15,
        replayed: false,
        hold_expires_at: Some(convert::ms_to_timestamp(now_ms() + 1_020_000)),
    }
}

/// Counts of what the server answered, printed at exit.
#[derive(Default)]
struct Counts {
    allowed: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

struct FcallState {
    store: RedisStore,
    numbers: Vec<E164>,
    service: Arc<Service>,
    /// Per-process prefix of the call ids, so that restarts never replay.
    run: String,
    next: AtomicU64,
}

struct Reference {
    template: pb::AuthorizeResponse,
    fcall: Option<FcallState>,
    counts: Arc<Counts>,
}

fn int(v: &redis::Value) -> i64 {
    match v {
        redis::Value::Int(i) => *i,
        redis::Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        redis::Value::SimpleString(s) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

impl Reference {
    async fn fcall(&self, f: &FcallState) -> Result<pb::AuthorizeResponse, Status> {
        let i = f.next.fetch_add(1, Ordering::Relaxed);
        let number = &f.numbers[(i as usize) % f.numbers.len()];
        let call_id = CallId::parse(&format!("{}-{i}", f.run))
            .map_err(|e| Status::internal(e.to_string()))?;
        let now = now_ms();
        let call = CallSpec {
            call_id,
            service: f.service.clone(),
            terms: f.service.terms.clone(),
            consent: Some(Consent {
                age_confirmed: true,
                own_number_confirmed: true,
                step1_at_ms: now,
                terms_accepted: true,
                step2_at_ms: now,
                terms_id: Some(f.service.terms.terms_id.clone()),
            }),
            evidence: Evidence {
                ivr_client: "callauth-loadtest".into(),
                ivr_id: "callauth-loadtest-ivr".into(),
                line_ref: String::new(),
                number_withheld: false,
            },
        };
        let cmd = f
            .store
            .authorize_command(number, &call, now)
            .map_err(|e| Status::internal(e.to_string()))?;
        let answer = f
            .store
            .conn()
            .query::<redis::Value>(&cmd)
            .await
            .map_err(|e| Status::unavailable(format!("redis: {e}")))?;
        let items = match answer {
            redis::Value::Array(items) => items,
            other => return Err(Status::internal(format!("unexpected answer {other:?}"))),
        };
        let mut resp = self.template.clone();
        match items.first().map(int) {
            Some(1 | 2) => {
                resp.granted_seconds = items.get(1).map_or(0, int) as u32;
                resp.hold_ore = items.get(2).map_or(0, int);
                resp.hold_expires_at = Some(convert::ms_to_timestamp(items.get(3).map_or(0, int)));
                resp.replayed = items.first().map(int) == Some(2);
                Ok(resp)
            }
            Some(0) => {
                resp.decision = pb::Decision::Denied as i32;
                resp.reason = items.get(1).map_or(0, int) as i32;
                resp.granted_seconds = 0;
                resp.hold_ore = 0;
                resp.hold_expires_at = None;
                Ok(resp)
            }
            _ => Err(Status::failed_precondition(format!(
                "authorize Function refused: {items:?}"
            ))),
        }
    }
}

#[tonic::async_trait]
impl pb::authorization_server::Authorization for Reference {
    async fn authorize(
        &self,
        _req: Request<pb::AuthorizeRequest>,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        let r = match &self.fcall {
            None => Ok(self.template.clone()),
            Some(f) => self.fcall(f).await,
        };
        let c = &self.counts;
        match &r {
            Ok(resp) if resp.decision == pb::Decision::Allowed as i32 => &c.allowed,
            Ok(_) => &c.refused,
            Err(_) => &c.failed,
        }
        .fetch_add(1, Ordering::Relaxed);
        r.map(Response::new)
    }

    async fn extend(
        &self,
        req: Request<pb::ExtendRequest>,
    ) -> Result<Response<pb::ExtendResponse>, Status> {
        let seq = req.get_ref().sequence;
        Ok(Response::new(pb::ExtendResponse {
            decision: pb::Decision::Allowed as i32,
            reason: pb::Reason::Granted as i32,
            granted_seconds_total: 900 * (seq + 1),
            added_seconds: 900,
            hold_ore: PRICE_PER_MINUTE_ORE * 15 * i64::from(seq + 1),
            replayed: false,
            hold_expires_at: self.template.hold_expires_at,
        }))
    }

    async fn release(
        &self,
        _req: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        Ok(Response::new(pb::ReleaseResponse {
            outcome: pb::ReleaseOutcome::Voided as i32,
            released_ore: PRICE_PER_MINUTE_ORE * 15,
        }))
    }
}

/// Connects to Redis (loading the Function library) and sets up this
/// server's merchant, service and `count` accounts with the highest limit
/// the rules allow, directly through the store.
async fn setup_fcall(url: &str, prefix: &str, count: usize) -> anyhow::Result<FcallState> {
    let mut config = RedisConfig::new(url);
    config.prefix = prefix.to_string();
    // A reference server under saturation queues commands on its connection:
    // do not turn queueing into timeouts.
    config.response_timeout = Duration::from_secs(5);
    let store = RedisStore::connect(&config, StorePolicy::default())
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let now = now_ms();
    let merchant_id = MerchantId::parse("loadtest").expect("valid id");
    store
        .upsert_merchant(&Merchant {
            id: merchant_id.clone(),
            name: "Loadtest AB".into(),
            org_number: "556000-0000".into(),
            fee_basis_points: 1500,
            active: true,
        })
        .await?;
    let change = store
        .upsert_service(
            &ServiceSpec {
                number: E164::parse(SERVICE_NUMBER)?,
                merchant_id,
                name: "Tarotlinjen".into(),
                category: "tarot".into(),
                tariff: tariff(),
                reminder_fee: Money::sek(60),
                vat: callauth::domain::VatRate::STANDARD,
                active: true,
            },
            now,
        )
        .await?;
    let mut numbers = Vec::with_capacity(count);
    let limit = LimitChange::CreditDecision {
        limit: Money::sek(1_000_000),
        credit_check_reference: "callauth-loadtest".into(),
        decided_by: "callauth-loadtest".into(),
    };
    for i in 0..count {
        let n = E164::parse(&format!("+4672{:07}", i))?;
        store
            .put_directory(&n, true, "callauth-loadtest", now)
            .await?;
        store
            .set_limit(&n, &limit, "callauth-loadtest", now)
            .await?;
        numbers.push(n);
    }
    let run: String = {
        let mut rng = rand::rng();
        (0..8)
            .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16usize)]))
            .collect()
    };
    Ok(FcallState {
        store,
        numbers,
        service: change.service,
        run: format!("fc-{run}"),
        next: AtomicU64::new(0),
    })
}

pub async fn serve(args: NoopArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(args.numbers > 0, "--numbers must be positive");
    let fcall = match &args.fcall {
        Some(url) => Some(setup_fcall(url, &args.redis_prefix, args.numbers).await?),
        None => None,
    };
    let terms = match &fcall {
        Some(f) => (*f.service.terms).clone(),
        None => Terms {
            terms_id: Terms::make_id(&E164::parse(SERVICE_NUMBER)?, 1),
            service_number: E164::parse(SERVICE_NUMBER)?,
            service_name: "Tarotlinjen".into(),
            version: 1,
            tariff: tariff(),
            reminder_fee: Money::sek(60),
            vat: callauth::domain::VatRate::STANDARD,
            created_at_ms: now_ms(),
            announcements: Default::default(),
        },
    };
    let counts = Arc::new(Counts::default());
    let reference = Reference {
        template: allowed_template(&terms),
        fcall,
        counts: counts.clone(),
    };

    let opts = ServerOptions::default();
    let mut builder = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .timeout(opts.request_timeout)
        .http2_keepalive_interval(Some(opts.http2_keepalive_interval))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    if let Some(age) = opts.max_connection_age {
        builder = builder.max_connection_age(age);
    }
    // Bound only after setup: an open port means the server is ready.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    eprintln!(
        "callauth-loadtest noop-server listening on {} ({})",
        listener.local_addr()?,
        match &args.fcall {
            Some(url) => format!(
                "one FCALL per Authorize on {url}, prefix {}, {} accounts",
                args.redis_prefix, args.numbers
            ),
            None => "no work".into(),
        }
    );
    if args.nagle {
        eprintln!("noop-server: TCP_NODELAY is off (--nagle)");
    }
    // `tcp_nodelay` on the builder only applies to `serve(addr)`: with our
    // own listener the incoming stream must set it.
    let incoming = tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay((!args.nagle).then_some(true));
    builder
        .add_service(pb::authorization_server::AuthorizationServer::new(
            reference,
        ))
        .serve_with_incoming_shutdown(incoming, callauth::process::shutdown_signal())
        .await
        .context("gRPC server")?;
    eprintln!(
        "noop-server: answered {} ALLOWED, {} refused, {} failed",
        counts.allowed.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed)
    );
    Ok(0)
}
