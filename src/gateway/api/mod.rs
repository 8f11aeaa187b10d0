//! The gRPC services of `callauth.v1`. Generated types stop here: each
//! handler checks the caller's role, converts the request (`convert`), calls
//! the [`Gateway`] and converts the answer back.
//!
//! Every unary RPC runs inside an [`Rpc`] guard that takes a permit from the
//! process-wide concurrency limit (refusing with `RESOURCE_EXHAUSTED` when
//! none is free, rather than queueing behind a slow store) and records the
//! request count and latency when it is dropped — so a request cancelled by
//! its client is still counted (as `cancelled`), and one whose deadline
//! passed as `deadline_exceeded`. The [`edge`] layer around the services
//! gives each request its deadline and counts the requests no guard saw
//! (undecodable messages, refused tokens).
//!
//! `Usage.Report` streams (issue 10) take a permit of their own limit
//! ([`UsageStreams`]; none free → `RESOURCE_EXHAUSTED`), each record a
//! permit of the concurrency limit, and are closed by the gateway when idle,
//! when older than the connection's maximum age, and at shutdown.

pub mod convert;
pub mod edge;
pub mod events;

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use metrics::{Counter, Histogram};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tonic::{Code, Request, Response, Status, Streaming};

use self::edge::RequestEdge;
use crate::auth::{require_admin, require_ivr, require_merchant};
use crate::gateway::{Gateway, GatewayError};
use crate::metrics as m;
use crate::pb;
use crate::status::{code_label, to_status};
use crate::store::{IssueOutcome, Store};

/// State shared by the services.
pub struct ApiState<S: Store> {
    pub gateway: Arc<Gateway<S>>,
    pub limiter: Arc<Semaphore>,
    pub usage: UsageStreams,
}

/// The bounds of `Usage.Report` streams (issue 10: a stream that never sent
/// was never closed, took no permit, and held every shutdown for its grace).
#[derive(Clone)]
pub struct UsageStreams {
    /// One permit per open stream; none free → RESOURCE_EXHAUSTED.
    pub open: Arc<Semaphore>,
    /// A stream with no record for this long is closed.
    pub idle: Duration,
    /// A stream open this long is closed between records (the connection's
    /// maximum age, which an open stream would otherwise outlive).
    pub max_age: Option<Duration>,
    /// Turns true when the process stops: streams end between records.
    pub stop: watch::Receiver<bool>,
}

/// One method's metric handles, resolved on first use (see [`m::Handle`]).
pub struct RpcMetrics {
    method: &'static str,
    requests: [m::Handle<Counter>; 17],
    duration: m::Handle<Histogram>,
    overload: m::Handle<Counter>,
}

impl RpcMetrics {
    pub const fn new(method: &'static str) -> RpcMetrics {
        RpcMetrics {
            method,
            requests: [const { m::Handle::new() }; 17],
            duration: m::Handle::new(),
            overload: m::Handle::new(),
        }
    }

    fn requests(&self, code: Code) -> &Counter {
        let method = self.method;
        self.requests[code as usize].get(|| {
            metrics::counter!(m::GRPC_REQUESTS_TOTAL, "method" => method, "code" => code_label(code))
        })
    }
}

/// The handles of the method named by a literal, one static per call site.
macro_rules! method {
    ($name:literal) => {{
        static METRICS: RpcMetrics = RpcMetrics::new($name);
        &METRICS
    }};
}

/// Counts and times one RPC; see the module documentation.
pub struct Rpc {
    metrics: &'static RpcMetrics,
    start: Instant,
    code: Option<Code>,
    /// The request's deadline, shared with the [`edge`] layer (absent when a
    /// service is called without it, as in unit tests).
    edge: Option<RequestEdge>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Rpc {
    pub fn begin<T>(
        limiter: &Arc<Semaphore>,
        metrics: &'static RpcMetrics,
        req: &Request<T>,
    ) -> Result<Rpc, Status> {
        let edge = req.extensions().get::<RequestEdge>();
        let permit = limiter.clone().try_acquire_owned().map_err(|_| {
            let method = metrics.method;
            metrics
                .overload
                .get(|| metrics::counter!(m::GRPC_OVERLOAD_REJECTIONS_TOTAL, "method" => method))
                .increment(1);
            m::shed("concurrency");
            metrics.requests(Code::ResourceExhausted).increment(1);
            if let Some(edge) = edge {
                edge.mark_counted();
            }
            Status::resource_exhausted("the gateway is at its concurrency limit; retry shortly")
        })?;
        crate::cached_gauge!(m::GRPC_REQUESTS_IN_FLIGHT).increment(1.0);
        Ok(Rpc {
            metrics,
            start: Instant::now(),
            code: None,
            edge: edge.cloned(),
            _permit: Some(permit),
        })
    }

    pub fn finish<T>(mut self, r: Result<T, Status>) -> Result<T, Status> {
        self.code = Some(match &r {
            Ok(_) => Code::Ok,
            Err(s) => s.code(),
        });
        r
    }
}

impl Drop for Rpc {
    fn drop(&mut self) {
        // Dropped unanswered: by the edge layer when the deadline passed, or
        // because the client went away (cancelled).
        let code = self.code.unwrap_or_else(|| match &self.edge {
            Some(edge) if edge.expired() => Code::DeadlineExceeded,
            _ => Code::Cancelled,
        });
        if let Some(edge) = &self.edge {
            edge.mark_counted();
        }
        crate::cached_gauge!(m::GRPC_REQUESTS_IN_FLIGHT).decrement(1.0);
        self.metrics.requests(code).increment(1);
        let method = self.metrics.method;
        self.metrics
            .duration
            .get(|| metrics::histogram!(m::GRPC_REQUEST_DURATION_SECONDS, "method" => method))
            .record(self.start.elapsed().as_secs_f64());
    }
}

fn gw<T>(r: Result<T, GatewayError>) -> Result<T, Status> {
    r.map_err(to_status)
}

macro_rules! api_service {
    ($name:ident) => {
        pub struct $name<S: Store>(pub Arc<ApiState<S>>);

        impl<S: Store> Clone for $name<S> {
            fn clone(&self) -> Self {
                $name(self.0.clone())
            }
        }
    };
}

api_service!(AuthorizationApi);
api_service!(UsageApi);
api_service!(CatalogApi);
api_service!(AccountsApi);

#[tonic::async_trait]
impl<S: Store> pb::authorization_server::Authorization for AuthorizationApi<S> {
    async fn authorize(
        &self,
        req: Request<pb::AuthorizeRequest>,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        let rpc = Rpc::begin(&self.0.limiter, method!("Authorize"), &req)?;
        let r = async {
            require_ivr(&req)?;
            // The principal is this request's own copy (the interceptor put
            // it there): its client id moves into the call, uncopied.
            let (_, mut extensions, message) = req.into_parts();
            let client = extensions
                .remove::<crate::auth::Principal>()
                .map(|p| p.client_id)
                .unwrap_or_default();
            let gateway = &self.0.gateway;
            let input =
                convert::authorize_input(message, client, gateway.now_ms(), gateway.limits())?;
            let out = gw(gateway.authorize(input).await)?;
            Ok(Response::new(convert::authorize_response(&out)))
        }
        .await;
        rpc.finish(r)
    }

    async fn extend(
        &self,
        req: Request<pb::ExtendRequest>,
    ) -> Result<Response<pb::ExtendResponse>, Status> {
        let rpc = Rpc::begin(&self.0.limiter, method!("Extend"), &req)?;
        let r = async {
            let client = require_ivr(&req)?.client_id.clone();
            let r = req.into_inner();
            let call_id = crate::domain::CallId::parse(&r.call_id)
                .map_err(|e| Status::invalid_argument(format!("call_id: {e}")))?;
            let out = gw(self.0.gateway.extend(&call_id, &client, r.sequence).await)?;
            Ok(Response::new(convert::extend_response(&out)))
        }
        .await;
        rpc.finish(r)
    }

    async fn release(
        &self,
        req: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let rpc = Rpc::begin(&self.0.limiter, method!("Release"), &req)?;
        let r = async {
            let client = require_ivr(&req)?.client_id.clone();
            let call_id = crate::domain::CallId::parse(&req.get_ref().call_id)
                .map_err(|e| Status::invalid_argument(format!("call_id: {e}")))?;
            let out = gw(self.0.gateway.release(&call_id, &client).await)?;
            Ok(Response::new(convert::release_response(out)))
        }
        .await;
        rpc.finish(r)
    }
}

/// Acknowledgements buffered per usage stream: a merchant that stops reading
/// acknowledgements stops the gateway from reading its records.
const USAGE_STREAM_BUFFER: usize = 64;

type AckStream = Pin<Box<dyn Stream<Item = Result<pb::UsageAck, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl<S: Store> pb::usage_server::Usage for UsageApi<S> {
    type ReportStream = AckStream;

    async fn report(
        &self,
        req: Request<Streaming<pb::UsageRecord>>,
    ) -> Result<Response<AckStream>, Status> {
        let merchant = require_merchant(&req)?;
        let limits = self.0.usage.clone();
        let Ok(permit) = limits.open.clone().try_acquire_owned() else {
            m::shed("usage_streams");
            metrics::counter!(m::GRPC_REQUESTS_TOTAL, "method" => "Report", "code" => code_label(Code::ResourceExhausted))
                .increment(1);
            if let Some(edge) = req.extensions().get::<RequestEdge>() {
                edge.mark_counted();
            }
            return Err(Status::resource_exhausted(
                "the gateway has its maximum of open usage streams; retry shortly or use ReportOne",
            ));
        };
        let (tx, rx) = tokio::sync::mpsc::channel(USAGE_STREAM_BUFFER);
        let session = UsageSession {
            gateway: self.0.gateway.clone(),
            limiter: self.0.limiter.clone(),
            merchant,
            limits,
            tx,
        };
        tokio::spawn(session.run(req.into_inner(), permit));
        let out = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(out)))
    }

    async fn report_one(
        &self,
        req: Request<pb::UsageRecord>,
    ) -> Result<Response<pb::UsageAck>, Status> {
        let rpc = Rpc::begin(&self.0.limiter, method!("ReportOne"), &req)?;
        let r = async {
            let merchant = require_merchant(&req)?;
            let record = req.into_inner();
            let outcome = gw(self
                .0
                .gateway
                .report_usage(&merchant, &convert::usage_input(&record))
                .await)?;
            Ok(Response::new(convert::usage_ack(&record, &outcome)))
        }
        .await;
        rpc.finish(r)
    }
}

/// One `Usage.Report` stream, served by a task of its own.
struct UsageSession<S: Store> {
    gateway: Arc<Gateway<S>>,
    limiter: Arc<Semaphore>,
    merchant: crate::domain::MerchantId,
    limits: UsageStreams,
    tx: tokio::sync::mpsc::Sender<Result<pb::UsageAck, Status>>,
}

/// What ended the wait for a stream's next record.
enum Next {
    Record(Result<pb::UsageRecord, Status>),
    End,
    /// The gateway closes the stream: idle, too old, or shutting down.
    Close(&'static str, Status),
}

impl<S: Store> UsageSession<S> {
    /// Reads records until the stream ends, fails or is closed; counts it
    /// once, by how it ended (the time per record is in the store's
    /// post_usage histogram).
    async fn run(mut self, mut inbound: Streaming<pb::UsageRecord>, _permit: OwnedSemaphorePermit) {
        crate::cached_gauge!(m::USAGE_STREAMS_OPEN).increment(1.0);
        let opened = tokio::time::Instant::now();
        let mut end = Code::Ok;
        loop {
            let record = match self.next(&mut inbound, opened).await {
                Next::End => break,
                Next::Close(reason, status) => {
                    // Not a failure of the gateway: the merchant reopens.
                    metrics::counter!(m::USAGE_STREAMS_CLOSED_TOTAL, "reason" => reason)
                        .increment(1);
                    let _ = self.tx.send(Err(status)).await;
                    break;
                }
                Next::Record(Ok(r)) => r,
                // tonic could not decode the record: the merchant's bytes.
                // Tell it (after the acknowledgements before), then end.
                Next::Record(Err(status)) if status.code() == Code::Internal => {
                    let status = Status::invalid_argument(crate::status::bounded(&format!(
                        "a record is not a valid callauth.v1.UsageRecord: {}",
                        status.message()
                    )));
                    end = status.code();
                    let _ = self.tx.send(Err(status)).await;
                    break;
                }
                Next::Record(Err(status)) => {
                    tracing::debug!(merchant = %self.merchant, error = %status, "usage stream ended by client error");
                    end = status.code();
                    break;
                }
            };
            match self.apply(&record).await {
                Ok(()) => {}
                Err(code) => {
                    end = code;
                    break;
                }
            }
        }
        crate::cached_gauge!(m::USAGE_STREAMS_OPEN).decrement(1.0);
        metrics::counter!(m::GRPC_REQUESTS_TOTAL, "method" => "Report", "code" => code_label(end))
            .increment(1);
    }

    /// The next record, or why the stream ends (issue 10: idle timeout,
    /// maximum age, shutdown).
    async fn next(
        &mut self,
        inbound: &mut Streaming<pb::UsageRecord>,
        opened: tokio::time::Instant,
    ) -> Next {
        let idle = self.limits.idle;
        let too_old = async {
            match self.limits.max_age {
                Some(age) => tokio::time::sleep_until(opened + age).await,
                None => std::future::pending().await,
            }
        };
        let mut stop = self.limits.stop.clone();
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => Next::Close("shutdown", Status::unavailable(
                "the gateway is shutting down; open a new usage stream to report more records")),
            next = tokio::time::timeout(idle, inbound.next()) => match next {
                Ok(Some(r)) => Next::Record(r),
                Ok(None) => Next::End,
                Err(_) => Next::Close("idle", Status::unavailable(format!(
                    "no usage record for {} s: stream closed; open a new one to report more",
                    idle.as_secs()))),
            },
            _ = too_old => Next::Close("max_age", Status::unavailable(
                "the usage stream reached its maximum age; open a new one to report more")),
        }
    }

    /// Applies one record and sends its acknowledgement; `Err` ends the
    /// stream with that code. Each record takes a permit of the process's
    /// concurrency limit (waiting for one: the stream is back-pressured).
    async fn apply(&self, record: &pb::UsageRecord) -> Result<(), Code> {
        let ack = match self.limiter.acquire().await {
            Ok(_permit) => self
                .gateway
                .report_usage(&self.merchant, &convert::usage_input(record))
                .await
                .map(|outcome| convert::usage_ack(record, &outcome))
                // The store is unreachable: end the stream with the error.
                // Records without an acknowledgement are resent by the
                // merchant; applying them is idempotent.
                .map_err(to_status),
            Err(_) => Err(Status::unavailable("the gateway is shutting down")),
        };
        let failed = ack.as_ref().err().map(Status::code);
        if self.tx.send(ack).await.is_err() {
            return Err(Code::Cancelled);
        }
        match failed {
            Some(code) => Err(code),
            None => Ok(()),
        }
    }
}

#[tonic::async_trait]
impl<S: Store> pb::catalog_server::Catalog for CatalogApi<S> {
    async fn lookup_service(
        &self,
        req: Request<pb::LookupServiceRequest>,
    ) -> Result<Response<pb::ServiceInfo>, Status> {
        let rpc = Rpc::begin(&self.0.limiter, method!("LookupService"), &req)?;
        let r = async {
            let number = convert::number("service_number", &req.get_ref().service_number)?;
            let catalog = self.0.gateway.catalog().snapshot();
            let service = catalog.service(&number).ok_or_else(|| {
                Status::not_found(format!(
                    "no service has the number {}",
                    number.national_display()
                ))
            })?;
            let merchant = catalog
                .merchant(&service.merchant_id)
                .map(|m| m.name.as_str())
                .unwrap_or("");
            Ok(Response::new(convert::service_info(service, merchant)))
        }
        .await;
        rpc.finish(r)
    }

    async fn list_services(
        &self,
        req: Request<pb::ListServicesRequest>,
    ) -> Result<Response<pb::ListServicesResponse>, Status> {
        let rpc = Rpc::begin(&self.0.limiter, method!("ListServices"), &req)?;
        let r = async {
            let filter = req.get_ref().merchant_id.clone();
            if !filter.is_empty() {
                convert::merchant_id("merchant_id", &filter)?;
            }
            let catalog = self.0.gateway.catalog().snapshot();
            let mut services: Vec<_> = catalog
                .services
                .values()
                .filter(|s| filter.is_empty() || s.merchant_id.as_str() == filter)
                .map(|s| {
                    let merchant = catalog
                        .merchant(&s.merchant_id)
                        .map(|m| m.name.as_str())
                        .unwrap_or("");
                    convert::service_info(s, merchant)
                })
                .collect();
            services.sort_by(|a, b| a.service_number.cmp(&b.service_number));
            Ok(Response::new(pb::ListServicesResponse { services }))
        }
        .await;
        rpc.finish(r)
    }

    async fn get_terms(
        &self,
        req: Request<pb::GetTermsRequest>,
    ) -> Result<Response<pb::Terms>, Status> {
        let rpc = Rpc::begin(&self.0.limiter, method!("GetTerms"), &req)?;
        let r = async {
            let id = crate::domain::TermsId::parse(&req.get_ref().terms_id)
                .map_err(|e| Status::invalid_argument(format!("terms_id: {e}")))?;
            let catalog = self.0.gateway.catalog().snapshot();
            let terms = catalog
                .terms(&id)
                .ok_or_else(|| Status::not_found(format!("no terms {id}")))?;
            Ok(Response::new(convert::terms(terms, false)))
        }
        .await;
        rpc.finish(r)
    }

    async fn upsert_merchant(
        &self,
        req: Request<pb::Merchant>,
    ) -> Result<Response<pb::Merchant>, Status> {
        let rpc = Rpc::begin(&self.0.limiter, method!("UpsertMerchant"), &req)?;
        let r = async {
            let actor = require_admin(&req)?.client_id.clone();
            let merchant = convert::merchant_in(req.into_inner())?;
            gw(self.0.gateway.upsert_merchant(&merchant).await)?;
            tracing::info!(actor = %actor, merchant = %merchant.id, "merchant upserted");
            Ok(Response::new(convert::merchant_out(&merchant)))
        }
        .await;
        rpc.finish(r)
    }

    async fn upsert_service(
        &self,
        req: Request<pb::UpsertServiceRequest>,
    ) -> Result<Response<pb::ServiceInfo>, Status> {
        let rpc = Rpc::begin(&self.0.limiter, method!("UpsertService"), &req)?;
        let r = async {
            let actor = require_admin(&req)?.client_id.clone();
            let spec = convert::service_spec(req.into_inner())?;
            let change = gw(self.0.gateway.upsert_service(&spec).await)?;
            tracing::info!(
                actor = %actor,
                service = %change.service.number.as_str(),
                terms = %change.service.terms.terms_id,
                new_terms = change.new_terms.is_some(),
                "service upserted"
            );
            let catalog = self.0.gateway.catalog().snapshot();
            let merchant = catalog
                .merchant(&change.service.merchant_id)
                .map(|m| m.name.as_str())
                .unwrap_or("");
            Ok(Response::new(convert::service_info(
                &change.service,
                merchant,
            )))
        }
        .await;
        rpc.finish(r)
    }
}

#[tonic::async_trait]
impl<S: Store> pb::accounts_server::Accounts for AccountsApi<S> {
    async fn put_directory_entry(
        &self,
        req: Request<pb::DirectoryEntry>,
    ) -> Result<Response<pb::AccountView>, Status> {
        let rpc = Rpc::begin(&self.0.limiter, method!("PutDirectoryEntry"), &req)?;
        let r = async {
            let actor = require_admin(&req)?.client_id.clone();
            let number = convert::number("number", &req.get_ref().number)?;
            let view = gw(self
                .0
                .gateway
                .put_directory(&number, req.get_ref().holder_registered, &actor)
                .await)?;
            Ok(Response::new(convert::account_view(&view)))
        }
        .await;
        rpc.finish(r)
    }

    async fn set_block(
        &self,
        req: Request<pb::SetBlockRequest>,
    ) -> Result<Response<pb::AccountView>, Status> {
        let rpc = Rpc::begin(&self.0.limiter, method!("SetBlock"), &req)?;
        let r = async {
            let actor = require_admin(&req)?.client_id.clone();
            let number = convert::number("number", &req.get_ref().number)?;
            let change = convert::block_change(req.get_ref(), &actor)?;
            let view = gw(self.0.gateway.set_block(&number, &change).await)?;
            tracing::info!(actor = %actor, number = %number.masked(), kind = change.kind.label(), blocked = change.blocked, "block changed");
            Ok(Response::new(convert::account_view(&view)))
        }
        .await;
        rpc.finish(r)
    }

    async fn set_credit_limit(
        &self,
        req: Request<pb::SetCreditLimitRequest>,
    ) -> Result<Response<pb::AccountView>, Status> {
        let rpc = Rpc::begin(&self.0.limiter, method!("SetCreditLimit"), &req)?;
        let r = async {
            let actor = require_admin(&req)?.client_id.clone();
            let r = req.into_inner();
            let number = convert::number("number", &r.number)?;
            let change = convert::limit_change(r)?;
            let view = gw(self.0.gateway.set_limit(&number, &change, &actor).await)?;
            tracing::info!(actor = %actor, number = %number.masked(), limit_ore = view.limit.ore(), "credit limit changed");
            Ok(Response::new(convert::account_view(&view)))
        }
        .await;
        rpc.finish(r)
    }

    async fn get_account(
        &self,
        req: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::AccountView>, Status> {
        let rpc = Rpc::begin(&self.0.limiter, method!("GetAccount"), &req)?;
        let r = async {
            require_admin(&req)?;
            let number = convert::number("number", &req.get_ref().number)?;
            let view = gw(self.0.gateway.account(&number).await)?;
            Ok(Response::new(convert::account_view(&view)))
        }
        .await;
        rpc.finish(r)
    }

    async fn issue_prepaid_code(
        &self,
        req: Request<pb::IssuePrepaidCodeRequest>,
    ) -> Result<Response<pb::IssuePrepaidCodeResponse>, Status> {
        let rpc = Rpc::begin(&self.0.limiter, method!("IssuePrepaidCode"), &req)?;
        let r = async {
            let actor = require_admin(&req)?.client_id.clone();
            let amount = convert::money("amount_ore", req.get_ref().amount_ore)?;
            let purchase = convert::reference("purchase_ref", &req.get_ref().purchase_ref)?;
            let out = gw(self.0.gateway.issue_prepaid(amount, &purchase).await)?;
            let response = match out {
                IssueOutcome::Issued { code, view } => {
                    tracing::info!(actor = %actor, code_id = %view.code_id, purchase = %purchase, "prepaid code issued");
                    pb::IssuePrepaidCodeResponse {
                        code: code.expose().to_string(),
                        code_id: view.code_id.to_string(),
                        balance_ore: view.balance.ore(),
                        already_issued: false,
                    }
                }
                IssueOutcome::AlreadyIssued(view) => pb::IssuePrepaidCodeResponse {
                    code: String::new(),
                    code_id: view.code_id.to_string(),
                    balance_ore: view.balance.ore(),
                    already_issued: true,
                },
            };
            Ok(Response::new(response))
        }
        .await;
        rpc.finish(r)
    }

    async fn top_up_prepaid_code(
        &self,
        req: Request<pb::TopUpPrepaidCodeRequest>,
    ) -> Result<Response<pb::PrepaidBalance>, Status> {
        let rpc = Rpc::begin(&self.0.limiter, method!("TopUpPrepaidCode"), &req)?;
        let r = async {
            require_admin(&req)?;
            let r = req.get_ref();
            let amount = convert::money("amount_ore", r.amount_ore)?;
            let topup = convert::reference("topup_ref", &r.topup_ref)?;
            let code = convert::prepaid_code("code", &r.code)?;
            let view = gw(self.0.gateway.top_up_prepaid(code, amount, &topup).await)?;
            Ok(Response::new(convert::prepaid_balance(&view)))
        }
        .await;
        rpc.finish(r)
    }

    async fn get_prepaid_balance(
        &self,
        req: Request<pb::GetPrepaidBalanceRequest>,
    ) -> Result<Response<pb::PrepaidBalance>, Status> {
        let rpc = Rpc::begin(&self.0.limiter, method!("GetPrepaidBalance"), &req)?;
        let r = async {
            require_admin(&req)?;
            let code = convert::prepaid_code("code", &req.get_ref().code)?;
            let view = gw(self.0.gateway.prepaid_balance(code).await)?;
            Ok(Response::new(convert::prepaid_balance(&view)))
        }
        .await;
        rpc.finish(r)
    }
}
