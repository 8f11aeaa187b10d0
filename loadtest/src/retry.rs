//! Retries of the mix scenario's RPCs, as a production IVR and merchant make
//! them (issue 10, `loadtest/chaos.sh`): a request that failed with a
//! transient status — the gateway or its Redis was killed, restarting, or
//! shedding load — is sent again, unchanged (the same `call_id`, Extend
//! `sequence` and usage `record_id`), on the next connection (with several
//! `--endpoint`s, another gateway), with a growing pause, until it is answered
//! or `--retry-seconds` have passed. The gateway's idempotency (docs/redis.md,
//! "Timeouts, retries, failures") makes the resend safe: a request applied
//! before its answer was lost is answered from its idempotency record.
//!
//! Every failed attempt is still recorded as an error under its status, so a
//! run that needed retries says so; an RPC given up is counted under
//! `retries` (`… GAVE UP`), because its outcome is unknown to the client and
//! the money check may then differ for a reason outside the gateway.
//!
//! With `--retry-seconds 0` (the default) nothing changes: each RPC is sent
//! once (a usage record up to three times at once, as before).

use std::future::Future;
use std::time::{Duration, Instant};

use rand::RngExt;
use tonic::{Code, Status};

use crate::stats::{code_label, Recorder};

/// The longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// The first pause.
const FIRST_PAUSE: Duration = Duration::from_millis(50);

/// Statuses a retry can cure: the server or its store was away, the request
/// was cut off, or load was shed. INTERNAL and UNKNOWN are what tonic reports
/// when a gateway dies mid-request (a reset HTTP/2 stream). Everything else is
/// an answer (a refusal) that a resend would only repeat.
pub fn transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Internal
            | Code::ResourceExhausted
            | Code::Aborted
    )
}

/// The pause before attempt `attempt + 1`: doubling from 50 ms up to 1 s,
/// with up to half of it random (so that retries after a kill spread out).
fn pause(attempt: u32) -> Duration {
    let base = FIRST_PAUSE
        .saturating_mul(1u32 << attempt.min(8))
        .min(MAX_PAUSE);
    base.mul_f64(rand::rng().random_range(0.5..1.0))
}

/// How one RPC of a call is retried.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// How long after the first failure attempts continue (zero: off).
    pub window: Duration,
    /// Attempts made in any case, at once, whatever the error (usage: 3).
    pub min_attempts: u32,
    /// Connections to rotate over (the attempt `a` uses `conn + a`).
    pub conns: usize,
}

/// An RPC's answer and how many attempts it took.
pub struct Answered<T> {
    pub value: T,
    pub attempts: u32,
}

/// Runs `send(conn)` until it is answered or the retry policy gives up;
/// records every attempt (latency from `started` for the first, from its own
/// send for a resend) and, under `retries`, the RPCs that needed them.
#[allow(clippy::too_many_arguments)]
pub async fn send<T, F, Fut>(
    rec: &Recorder,
    seq: u64,
    op: &'static str,
    measured: bool,
    started: Instant,
    conn: usize,
    policy: Retry,
    mut send: F,
) -> Option<Answered<T>>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let mut started = started;
    let mut attempt = 0u32;
    let mut deadline: Option<Instant> = None;
    loop {
        let c = (conn + attempt as usize) % policy.conns.max(1);
        match send(c).await {
            Ok(value) => {
                rec.rpc(seq, op, measured, started, Ok(()));
                if attempt > 0 && !policy.window.is_zero() {
                    rec.count(seq, "retries", format!("{op}: answered after a retry"));
                }
                return Some(Answered {
                    value,
                    attempts: attempt + 1,
                });
            }
            Err(status) => {
                rec.rpc(seq, op, measured, started, Err(code_label(status.code())));
                let deadline = *deadline.get_or_insert_with(|| Instant::now() + policy.window);
                let more = attempt + 1 < policy.min_attempts
                    || (!policy.window.is_zero()
                        && transient(status.code())
                        && Instant::now() < deadline);
                if !more {
                    if !policy.window.is_zero() && transient(status.code()) {
                        rec.count(seq, "retries", format!("{op}: GAVE UP"));
                    }
                    return None;
                }
                if !policy.window.is_zero() {
                    tokio::time::sleep(pause(attempt)).await;
                }
                attempt += 1;
                started = Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_and_stay_bounded() {
        for a in 0..20 {
            let p = pause(a);
            assert!(p <= MAX_PAUSE, "{a}: {p:?}");
            assert!(p >= FIRST_PAUSE / 2, "{a}: {p:?}");
        }
        assert!(pause(10) >= MAX_PAUSE / 2);
    }

    #[test]
    fn refusals_are_not_retried() {
        assert!(transient(Code::Unavailable));
        assert!(!transient(Code::FailedPrecondition));
        assert!(!transient(Code::PermissionDenied));
        assert!(!transient(Code::InvalidArgument));
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
            .block_on(f)
    }

    #[test]
    fn resends_until_answered_on_rotating_connections() {
        let rec = Recorder::new(Instant::now(), Duration::ZERO);
        let mut seen = Vec::new();
        let policy = Retry {
            window: Duration::from_secs(5),
            min_attempts: 1,
            conns: 2,
        };
        let r = block_on(send(&rec, 0, "Op", true, Instant::now(), 1, policy, |c| {
            seen.push(c);
            let n = seen.len();
            async move {
                if n < 3 {
                    Err(Status::unavailable("down"))
                } else {
                    Ok(7)
                }
            }
        }))
        .expect("answered");
        assert_eq!((r.value, r.attempts), (7, 3));
        assert_eq!(seen, vec![1, 0, 1]);
        let o = rec.snapshot();
        assert_eq!(o.errors_total.values().sum::<u64>(), 2);
    }

    #[test]
    fn a_refusal_or_no_window_is_final() {
        let rec = Recorder::new(Instant::now(), Duration::ZERO);
        let mut calls = 0;
        let policy = Retry {
            window: Duration::from_secs(5),
            min_attempts: 1,
            conns: 1,
        };
        let r: Option<Answered<()>> =
            block_on(send(&rec, 0, "Op", true, Instant::now(), 0, policy, |_| {
                calls += 1;
                async { Err(Status::failed_precondition("no")) }
            }));
        assert!(r.is_none());
        assert_eq!(calls, 1);
        let off = Retry {
            window: Duration::ZERO,
            ..policy
        };
        let r: Option<Answered<()>> =
            block_on(send(&rec, 0, "Op", true, Instant::now(), 0, off, |_| {
                calls += 1;
                async { Err(Status::unavailable("down")) }
            }));
        assert!(r.is_none());
        assert_eq!(calls, 2);
    }
}
