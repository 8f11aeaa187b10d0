//! The queue-time budget of a request (issue 10): the instant by which a
//! request's first state-changing store command must have been *sent*.
//!
//! Under overload a request can wait — for a worker thread, for its turn on
//! the multiplexed Redis connection — long enough that its command, once
//! sent, is still queued in Redis when the per-command response timeout
//! fires. The client is then told the request failed while the Function
//! still runs and makes a hold (the 150 868 holds for failed
//! requests). So the gRPC edge ([`crate::gateway::api::edge`]) scopes every
//! request in a [`SendBy`] — arrival + the queue budget, and never later than
//! the request's deadline minus the store's response timeout — and the Redis
//! store calls [`check`] just before each command goes out: a request over
//! its budget is refused ([`StoreError::Overloaded`], `RESOURCE_EXHAUSTED`)
//! without sending anything, so it leaves no state.
//!
//! Work outside a request (readiness, the sweeper, usage streams' own tasks)
//! has no budget: [`check`] lets it through.

use std::cell::Cell;
use std::time::Duration;

use tokio::time::Instant;

use super::{StoreError, StoreResult};

/// When a request must have sent its store command, and when it arrived.
#[derive(Clone, Copy, Debug)]
pub struct SendBy {
    pub arrived: Instant,
    pub send_by: Instant,
    /// When the request must have been answered.
    pub deadline: Instant,
}

/// The budget of the request being served, and whether it has sent a
/// command that may change state (after which nothing of it is refused:
/// a refusal then would hide a change made).
struct Budget {
    send_by: SendBy,
    committed: Cell<bool>,
}

tokio::task_local! {
    static BUDGET: Budget;
}

/// Runs `fut` with the budget `send_by` (the edge layer, once per request).
pub async fn scope<F: std::future::Future>(send_by: SendBy, fut: F) -> F::Output {
    let budget = Budget {
        send_by,
        committed: Cell::new(false),
    };
    BUDGET.scope(budget, fut).await
}

/// Before a read: `Ok` when the current request may still send a command
/// (or is not a request, or has already sent a write); `Err(Overloaded)`
/// when its queue-time budget is spent.
pub fn check() -> StoreResult<()> {
    BUDGET.try_with(admit).unwrap_or(Ok(()))
}

/// Before a command that may change state: as [`check`], and once it is
/// admitted the request's later commands are never refused.
pub fn check_write() -> StoreResult<()> {
    BUDGET
        .try_with(|b| {
            admit(b)?;
            b.committed.set(true);
            Ok(())
        })
        .unwrap_or(Ok(()))
}

/// How long a write of the current request waits for its answer: until
/// just before its deadline (issue 10: a write answered late has still run;
/// telling the client it failed would leave a hold for a failed request),
/// and at least `timeout` (the store's, and all outside a request).
pub fn write_wait(timeout: Duration) -> Duration {
    BUDGET
        .try_with(|b| {
            b.send_by
                .deadline
                .saturating_duration_since(Instant::now())
                .saturating_sub(DEADLINE_MARGIN)
        })
        .unwrap_or(timeout)
        .max(timeout)
}

/// Kept between a write's wait and its request's deadline, so that the
/// store's answer (or its timeout) comes before the edge's.
const DEADLINE_MARGIN: Duration = Duration::from_millis(10);

fn admit(b: &Budget) -> StoreResult<()> {
    let now = Instant::now();
    if b.committed.get() || now <= b.send_by.send_by {
        return Ok(());
    }
    crate::metrics::shed("queue_budget");
    Err(StoreError::Overloaded(millis(now - b.send_by.arrived)))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
