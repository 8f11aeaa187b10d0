//! The load shapes: open loop (a fixed arrival rate, each request with its
//! own scheduled start) and closed loop (N workers, each sending back to back).
//!
//! Open loop is the honest default (STYLE habit 9): request i is due at
//! `start + i / rate` whatever happened to the requests before it, and its
//! latency is measured from that due time. When the server falls behind, the
//! in-flight bound (`--max-in-flight`) makes the generator wait, and the wait
//! is part of every late request's latency rather than silently thinning the
//! load (no coordinated omission). The generator's own lateness (send lag) is
//! recorded too, so a run can tell a slow server from a slow generator.
//!
//! Timers in tokio have a 1 ms granularity, which would add up to a
//! millisecond to every latency: the schedule runs on its own OS thread
//! instead, sleeping (tens of µs of overshoot) and optionally busy-waiting
//! the last `--spin-us` before each due time, and hands each request to the
//! runtime. The hand-over is part of the send lag and of the latency.
//!
//! Closed loop measures what a fixed number of outstanding requests achieves
//! (saturation throughput, or 1 in flight for pure latency); there a request
//! is "scheduled" when its worker sends it.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::cpu::{self, Watched};
use crate::stats::Recorder;

#[derive(Clone, Debug)]
pub enum Load {
    Open {
        rate: f64,
        max_in_flight: usize,
        /// Busy-wait this long before each due time (precision for CPU).
        spin: Duration,
    },
    Closed {
        concurrency: usize,
    },
}

#[derive(Clone, Debug)]
pub struct Plan {
    /// Measured time after the warm-up (None: until `count`).
    pub duration: Option<Duration>,
    /// Measured requests (or calls) after the warm-up (None: until `duration`).
    pub count: Option<u64>,
    /// How long to wait for requests still in flight when the load stops.
    pub drain: Duration,
}

/// What the driver saw besides the recorder's figures.
pub struct Driven {
    pub issued: u64,
    /// Requests (calls) still unanswered when the drain time ran out.
    pub unfinished: u64,
    /// CPU seconds per watched process (and "client") over the measured window.
    pub cpu_seconds: Vec<(String, Option<f64>)>,
    /// From the end of the warm-up to the end of the drain.
    pub window: Duration,
}

/// Runs `job(seq, scheduled)` under `load` until `plan` is done. The job
/// records its own RPCs in `rec` (a call of the mix scenario is several).
pub async fn drive<J, F>(
    load: &Load,
    plan: &Plan,
    rec: Arc<Recorder>,
    watched: &[Watched],
    job: J,
) -> Driven
where
    J: Fn(u64, Instant) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let ticks = cpu::clock_ticks_per_second();
    let warmup_end = rec.warmup_end;
    let end = plan.duration.map(|d| warmup_end + d);
    let before = {
        let watched = watched.to_vec();
        tokio::spawn(async move {
            tokio::time::sleep_until(warmup_end.into()).await;
            cpu::sample(&watched, ticks)
        })
    };
    let job = Arc::new(job);
    let (issued, unfinished) = match *load {
        Load::Open {
            rate,
            max_in_flight,
            spin,
        } => open_loop(rate, max_in_flight, spin, plan, end, rec.clone(), job).await,
        Load::Closed { concurrency } => closed_loop(concurrency, plan, end, rec.clone(), job).await,
    };
    let after = cpu::sample(watched, ticks);
    let finished_at = Instant::now();
    let cpu_seconds = if finished_at > warmup_end && before.is_finished() {
        match before.await {
            Ok(b) => cpu::delta(&b, &after),
            Err(_) => Vec::new(),
        }
    } else {
        before.abort();
        Vec::new()
    };
    Driven {
        issued,
        unfinished,
        cpu_seconds,
        window: finished_at.saturating_duration_since(warmup_end),
    }
}

/// Blocks the calling (scheduler) thread until `due`: an OS sleep (tens of
/// µs of overshoot, unlike tokio's 1 ms timer wheel) until `spin` before it,
/// then a busy wait.
fn pace(due: Instant, spin: Duration) {
    let now = Instant::now();
    if due > now + spin {
        std::thread::sleep(due - now - spin);
    }
    while Instant::now() < due {
        std::hint::spin_loop();
    }
}

#[allow(clippy::too_many_arguments)]
async fn open_loop<J, F>(
    rate: f64,
    max_in_flight: usize,
    spin: Duration,
    plan: &Plan,
    end: Option<Instant>,
    rec: Arc<Recorder>,
    job: Arc<J>,
) -> (u64, u64)
where
    J: Fn(u64, Instant) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    let handle = tokio::runtime::Handle::current();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let count = plan.count;
    {
        // The schedule runs on its own OS thread, so its pacing does not
        // depend on the runtime's timer or on how busy the workers are.
        let in_flight = in_flight.clone();
        let spawn = std::thread::Builder::new()
            .name("open-loop-scheduler".into())
            .spawn(move || {
                let interval_ns = 1e9 / rate;
                // Spin at most a quarter of the interval: at high rates the
                // scheduler must not take a core from the workers.
                let spin = spin.min(Duration::from_nanos((interval_ns / 4.0) as u64));
                let mut seq: u64 = 0;
                let mut measured_issued: u64 = 0;
                loop {
                    let due = rec.start + Duration::from_nanos((seq as f64 * interval_ns) as u64);
                    if end.is_some_and(|e| due >= e) {
                        break;
                    }
                    if due >= rec.warmup_end {
                        if count.is_some_and(|c| measured_issued >= c) {
                            break;
                        }
                        measured_issued += 1;
                    }
                    pace(due, spin);
                    // Waiting for a free slot delays every later request too;
                    // each one's latency still runs from its own due time.
                    let permit = match in_flight.clone().try_acquire_owned() {
                        Ok(p) => p,
                        Err(_) => handle
                            .block_on(in_flight.clone().acquire_owned())
                            .expect("the semaphore is never closed"),
                    };
                    let fut = job(seq, due);
                    let rec = rec.clone();
                    handle.spawn(async move {
                        rec.send_lag(seq, due, Instant::now());
                        fut.await;
                        drop(permit);
                    });
                    seq += 1;
                }
                let _ = done_tx.send(seq);
            });
        if let Err(e) = spawn {
            eprintln!("cannot start the scheduler thread: {e}");
            return (0, 0);
        }
    }
    let seq = done_rx.await.unwrap_or(0);
    let drained =
        tokio::time::timeout(plan.drain, in_flight.acquire_many(max_in_flight as u32)).await;
    let unfinished = match drained {
        Ok(_) => 0,
        Err(_) => (max_in_flight - in_flight.available_permits()) as u64,
    };
    (seq, unfinished)
}

async fn closed_loop<J, F>(
    concurrency: usize,
    plan: &Plan,
    end: Option<Instant>,
    rec: Arc<Recorder>,
    job: Arc<J>,
) -> (u64, u64)
where
    J: Fn(u64, Instant) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let next = Arc::new(AtomicU64::new(0));
    let measured_left = Arc::new(AtomicI64::new(
        plan.count
            .map_or(i64::MAX, |c| c.min(i64::MAX as u64) as i64),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        let (next, measured_left, stop, rec, job) = (
            next.clone(),
            measured_left.clone(),
            stop.clone(),
            rec.clone(),
            job.clone(),
        );
        workers.push(tokio::spawn(async move {
            tokio::time::sleep_until(rec.start.into()).await;
            loop {
                let now = Instant::now();
                if stop.load(Ordering::Relaxed) || end.is_some_and(|e| now >= e) {
                    break;
                }
                if now >= rec.warmup_end && measured_left.fetch_sub(1, Ordering::Relaxed) <= 0 {
                    break;
                }
                let seq = next.fetch_add(1, Ordering::Relaxed);
                job(seq, now).await;
            }
        }));
    }
    let all = futures_util::future::join_all(workers.iter_mut());
    let limit = end.map_or(Duration::MAX, |e| {
        e.saturating_duration_since(Instant::now()) + plan.drain
    });
    let unfinished = match tokio::time::timeout(limit, all).await {
        Ok(_) => 0,
        Err(_) => {
            stop.store(true, Ordering::Relaxed);
            let left = workers.iter().filter(|w| !w.is_finished()).count() as u64;
            for w in &workers {
                w.abort();
            }
            left
        }
    };
    (next.load(Ordering::Relaxed), unfinished)
}
