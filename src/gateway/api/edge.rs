//! The edge of the gateway's gRPC server: a tower layer around every service
//! that gives each request its deadline and accounts for the requests the
//! handlers never see (issue 10).
//!
//! **Deadlines.** A request's deadline is the client's `grpc-timeout` or,
//! without one, `--request-timeout-ms`, whichever is shorter. When it passes
//! the request is answered `DEADLINE_EXCEEDED` and counted as
//! `deadline_exceeded`, which the availability objective counts as a failure.
//! tonic's own timeout answered `CANCELLED` ("Timeout expired") and the
//! handler's guard counted `cancelled`, which the objective leaves out: a
//! gateway too slow for its clients looked healthy. tonic still enforces the
//! client's `grpc-timeout` itself, outside this layer, so the layer's timer
//! for a client deadline is set [`EARLY`] before it and always fires first.
//! The server default is this layer's alone (the server is built without
//! tonic's `timeout`).
//!
//! **Requests no handler sees.** tonic answers some requests before the
//! handler runs: a message that does not decode (INTERNAL, per gRPC's status
//! code table for servers — but the bytes are the client's: this layer
//! answers INVALID_ARGUMENT), a token the interceptor refuses
//! (UNAUTHENTICATED), a deadline that passes while the body is still
//! arriving. None reached the handler's [`super::Rpc`] guard, so none was
//! counted in `callauth_grpc_requests_total`. Each request carries a
//! [`RequestEdge`] in its extensions; the guard marks it when it counts the
//! request, and this layer counts, by the status tonic put in the response,
//! what no guard counted — so every request is counted once.
//!
//! **Queue-time budget** (issue 10). The layer also scopes each request in
//! its [`crate::store::budget::SendBy`]: the store refuses to send a command
//! for a request that arrived more than the queue budget ago, or whose
//! deadline is nearer than the store's response timeout (at most half the
//! request's time is reserved for the store), so an answered error never
//! leaves a hold made by a command that was still queued.
//!
//! Cost on the hot path: a lookup of the path in a small map, one `Arc` and a
//! boxed future per request, and a look at the response's extensions (empty
//! for a successful unary answer: its status travels in the trailers).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tonic::body::Body;
use tonic::codegen::http::{HeaderMap, Request, Response};
use tonic::{Code, Status};

use crate::domain::catalog::FastMap;
use crate::metrics as m;
use crate::status::{bounded, code_label};
use crate::store::budget::{self, SendBy};

/// How much earlier than tonic's own timer the layer's timer for a client's
/// `grpc-timeout` fires: both are created while the request is dispatched
/// (microseconds apart) on a timer with millisecond ticks, so one tick
/// earlier is always first.
pub const EARLY: Duration = Duration::from_millis(1);

/// What the layer and the handler's guard share about one request.
#[derive(Clone, Debug)]
pub struct RequestEdge(Arc<EdgeState>);

#[derive(Debug)]
struct EdgeState {
    deadline: Instant,
    counted: AtomicBool,
}

impl RequestEdge {
    pub fn new(deadline: Instant) -> RequestEdge {
        RequestEdge(Arc::new(EdgeState {
            deadline,
            counted: AtomicBool::new(false),
        }))
    }

    /// When the request must have been answered.
    pub fn deadline(&self) -> Instant {
        self.0.deadline
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.0.deadline
    }

    /// Called by whoever counts the request in `callauth_grpc_requests_total`.
    pub fn mark_counted(&self) {
        self.0.counted.store(true, Ordering::Release);
    }

    pub fn counted(&self) -> bool {
        self.0.counted.load(Ordering::Acquire)
    }
}

/// One method of a served service, as its path names it.
#[derive(Debug)]
struct Method {
    /// The metric label (the method's name, as the handlers' guards use it).
    name: &'static str,
    /// The request message's full name, for the error text.
    input: &'static str,
}

/// `/package.Service/Method` → the method, for every method of callauth's
/// services, read once from the compiled descriptors (the strings are
/// leaked once per process: a few dozen).
fn methods() -> &'static HashMap<&'static str, Method> {
    static METHODS: OnceLock<HashMap<&'static str, Method>> = OnceLock::new();
    METHODS.get_or_init(|| {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET)
            .expect("the compiled descriptor set decodes");
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let mut out = HashMap::new();
        for file in &set.file {
            let package = file.package();
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/{package}.{}/{}", service.name(), method.name());
                    out.insert(
                        leak(path),
                        Method {
                            name: leak(method.name().to_string()),
                            input: leak(method.input_type().trim_start_matches('.').to_string()),
                        },
                    );
                }
            }
        }
        out
    })
}

/// The layer: `services` are the full names of the services whose requests
/// are counted (others — health, reflection — only get deadlines).
#[derive(Clone, Debug)]
pub struct EdgeLayer {
    /// Looked up for every request: foldhash, like the other hot maps.
    counted: Arc<FastMap<&'static str, &'static Method>>,
    default_timeout: Duration,
    budget: QueueBudget,
}

/// How long a request may wait before its store command is sent (issue 10).
#[derive(Clone, Copy, Debug)]
pub struct QueueBudget {
    /// From arrival to the store command.
    pub queue: Duration,
    /// Kept between the store command and the request's deadline: the
    /// store's response timeout (at most half the request's time).
    pub store_timeout: Duration,
}

impl QueueBudget {
    /// The `SendBy` of a request that arrived at `arrived` with `deadline`.
    pub fn send_by(&self, arrived: Instant, deadline: Instant) -> SendBy {
        let time = deadline.saturating_duration_since(arrived);
        let reserve = self.store_timeout.min(time / 2);
        SendBy {
            arrived,
            send_by: (arrived + self.queue).min(deadline - reserve),
            deadline,
        }
    }
}

impl EdgeLayer {
    pub fn new(services: &[&str], default_timeout: Duration, budget: QueueBudget) -> EdgeLayer {
        let counted = methods()
            .iter()
            .filter(|(path, _)| {
                services.iter().any(|s| {
                    path.strip_prefix('/')
                        .and_then(|p| p.strip_prefix(s))
                        .is_some_and(|rest| rest.starts_with('/'))
                })
            })
            .map(|(path, m)| (*path, m))
            .collect();
        EdgeLayer {
            counted: Arc::new(counted),
            default_timeout,
            budget,
        }
    }
}

impl<S> tower::Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service the layer wraps around the router.
#[derive(Clone, Debug)]
pub struct Edge<S> {
    inner: S,
    layer: EdgeLayer,
}

/// The client's `grpc-timeout` (gRPC over HTTP/2: at most 8 digits and a
/// unit H, M, S, m, u or n), parsed as tonic parses it; `None` when absent or
/// malformed (tonic then ignores it too).
pub fn client_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn count(method: &Method, code: Code) {
    metrics::counter!(m::GRPC_REQUESTS_TOTAL, "method" => method.name, "code" => code_label(code))
        .increment(1);
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower::Service<Request<Body>> for Edge<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let method = self.layer.counted.get(req.uri().path()).copied();
        let timeout = match client_timeout(req.headers()) {
            Some(client) => client.saturating_sub(EARLY).min(self.layer.default_timeout),
            None => self.layer.default_timeout,
        };
        let arrived = Instant::now();
        let deadline = arrived + timeout;
        let edge = RequestEdge::new(deadline);
        req.extensions_mut().insert(edge.clone());
        // The service that was polled ready serves this request (tower's rule).
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let send_by = self.layer.budget.send_by(arrived, deadline);
        let response = budget::scope(send_by, inner.call(req));
        Box::pin(async move {
            // The handler's future is dropped by the end of this statement,
            // so its guard has counted (or not) before the checks below.
            let outcome = tokio::time::timeout_at(deadline, response).await;
            match outcome {
                Ok(Ok(response)) => Ok(match method {
                    Some(method) => uncounted_response(response, method, &edge),
                    None => response,
                }),
                Ok(Err(e)) => Err(e),
                Err(_elapsed) => {
                    if let (Some(method), false) = (method, edge.counted()) {
                        count(method, Code::DeadlineExceeded);
                    }
                    Ok(Status::deadline_exceeded(format!(
                        "the request's deadline of {} ms passed before it was answered",
                        timeout.as_millis()
                    ))
                    .into_http())
                }
            }
        })
    }
}

/// Counts a response that carries a status no handler counted, answering an
/// undecodable request INVALID_ARGUMENT.
fn uncounted_response(
    response: Response<Body>,
    method: &Method,
    edge: &RequestEdge,
) -> Response<Body> {
    // A status in the extensions is an answer made without a message
    // (tonic's `Status::into_http`); successful answers have none.
    let Some(status) = response.extensions().get::<Status>() else {
        return response;
    };
    if edge.counted() {
        return response;
    }
    match status.code() {
        // No handler ran and no handler answers INTERNAL without counting:
        // tonic could not read the request (its message did not decode, or
        // its framing or compression was broken) — the client's bytes.
        Code::Internal => {
            count(method, Code::InvalidArgument);
            Status::invalid_argument(bounded(&format!(
                "the request is not a valid {}: {}",
                method.input,
                status.message()
            )))
            .into_http()
        }
        code => {
            count(method, code);
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grpc_timeout_as_tonic_does() {
        let headers = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("grpc-timeout", v.parse().unwrap());
            h
        };
        assert_eq!(
            client_timeout(&headers("150m")),
            Some(Duration::from_millis(150))
        );
        assert_eq!(client_timeout(&headers("2S")), Some(Duration::from_secs(2)));
        assert_eq!(
            client_timeout(&headers("1H")),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            client_timeout(&headers("99999999n")),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "m", "123456789m", "12x", "-1m", "1.5S"] {
            assert_eq!(client_timeout(&headers(bad)), None, "{bad:?}");
        }
        assert_eq!(client_timeout(&HeaderMap::new()), None);
    }

    #[test]
    fn queue_budget_keeps_the_store_timeout_before_the_deadline() {
        let b = QueueBudget {
            queue: Duration::from_millis(50),
            store_timeout: Duration::from_millis(250),
        };
        let t0 = Instant::now();
        let ms = |s: SendBy| (s.send_by - s.arrived).as_millis();
        // The default deadline: the queue budget decides.
        assert_eq!(ms(b.send_by(t0, t0 + Duration::from_secs(2))), 50);
        // 280 ms left: the store's 250 ms are reserved only up to half.
        assert_eq!(ms(b.send_by(t0, t0 + Duration::from_millis(280))), 50);
        assert_eq!(ms(b.send_by(t0, t0 + Duration::from_millis(80))), 40);
        // A long queue budget: the deadline minus the store timeout decides.
        let long = QueueBudget {
            queue: Duration::from_secs(1),
            ..b
        };
        assert_eq!(ms(long.send_by(t0, t0 + Duration::from_millis(600))), 350);
        assert_eq!(ms(long.send_by(t0, t0 + Duration::from_secs(2))), 1000);
    }

    #[test]
    fn knows_every_method_of_the_gateway() {
        let layer = EdgeLayer::new(
            &["callauth.v1.Authorization", "callauth.v1.Usage"],
            Duration::from_secs(2),
            QueueBudget {
                queue: Duration::from_millis(50),
                store_timeout: Duration::from_millis(250),
            },
        );
        let m = layer.counted["/callauth.v1.Authorization/Authorize"];
        assert_eq!(m.name, "Authorize");
        assert_eq!(m.input, "callauth.v1.AuthorizeRequest");
        assert!(layer.counted.contains_key("/callauth.v1.Usage/Report"));
        // Only the services asked for: a label set fixed by the descriptors.
        assert!(!layer
            .counted
            .contains_key("/callauth.v1.Catalog/LookupService"));
        assert!(!layer
            .counted
            .contains_key("/callauth.v1.Authorization/Nope"));
        assert_eq!(layer.counted.len(), 5);
    }
}
