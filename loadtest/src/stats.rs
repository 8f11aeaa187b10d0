//! What a run observed: latency histograms (µs, HdrHistogram, 3 significant
//! digits) per operation, outcomes by gRPC status, decisions and usage acks
//! by kind, and the money the gateway acknowledged.
//!
//! A request belongs to the measurement when its *scheduled* start falls after
//! the warm-up; its latency runs from that scheduled start to its answer.
//! Latency, throughput and the errors of the measured window use only those;
//! decisions, acks, money and the run's total errors count everything (the
//! money check covers the whole run). Recording is sharded over a few
//! mutexes so that concurrent tasks rarely meet on one lock.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency recorded exactly: 10 minutes (larger values saturate).
const MAX_LATENCY_US: u64 = 600_000_000;
const SHARDS: usize = 16;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

#[derive(Default)]
struct Money {
    postpaid_ore: i64,
    prepaid_ore: i64,
}

struct Shard {
    latency: BTreeMap<&'static str, Histogram<u64>>,
    send_lag: Histogram<u64>,
    errors_measured: BTreeMap<(&'static str, String), u64>,
    errors_total: BTreeMap<(&'static str, String), u64>,
    counts: BTreeMap<(&'static str, String), u64>,
    calls_measured: u64,
    last_done: Option<Instant>,
    money: Money,
}

impl Shard {
    fn new() -> Shard {
        Shard {
            latency: BTreeMap::new(),
            send_lag: histogram(),
            errors_measured: BTreeMap::new(),
            errors_total: BTreeMap::new(),
            counts: BTreeMap::new(),
            calls_measured: 0,
            last_done: None,
            money: Money::default(),
        }
    }
}

/// Shared by every task of a run.
pub struct Recorder {
    shards: Vec<Mutex<Shard>>,
    pub start: Instant,
    pub warmup_end: Instant,
}

/// A gRPC status code as a stable label ("Unavailable", "DeadlineExceeded", …).
pub fn code_label(code: tonic::Code) -> String {
    format!("{code:?}")
}

impl Recorder {
    pub fn new(start: Instant, warmup: Duration) -> Recorder {
        Recorder {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::new())).collect(),
            start,
            warmup_end: start + warmup,
        }
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[(key as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub fn measured(&self, scheduled: Instant) -> bool {
        scheduled >= self.warmup_end
    }

    /// One RPC started (was due) at `started` and finished now with
    /// `result` (Err: the status code label). `measured` says whether it
    /// belongs to the measured window (its call was scheduled after the warm-up).
    pub fn rpc(
        &self,
        key: u64,
        op: &'static str,
        measured: bool,
        started: Instant,
        result: Result<(), String>,
    ) {
        let done = Instant::now();
        let mut s = self.shard(key);
        if let Err(code) = &result {
            *s.errors_total.entry((op, code.clone())).or_default() += 1;
        }
        if !measured {
            return;
        }
        match result {
            Ok(()) => {
                let us = done.saturating_duration_since(started).as_micros() as u64;
                s.latency
                    .entry(op)
                    .or_insert_with(histogram)
                    .saturating_record(us.max(1));
            }
            Err(code) => *s.errors_measured.entry((op, code)).or_default() += 1,
        }
        s.last_done = Some(s.last_done.map_or(done, |l| l.max(done)));
    }

    /// How late the generator issued a request compared with its schedule.
    pub fn send_lag(&self, key: u64, scheduled: Instant, sent: Instant) {
        if self.measured(scheduled) {
            let us = sent.saturating_duration_since(scheduled).as_micros() as u64;
            self.shard(key).send_lag.saturating_record(us.max(1));
        }
    }

    /// Counts one outcome (a decision, an ack, …) under `category`.
    pub fn count(&self, key: u64, category: &'static str, label: impl Into<String>) {
        *self
            .shard(key)
            .counts
            .entry((category, label.into()))
            .or_default() += 1;
    }

    /// A whole call (mix scenario) ended.
    pub fn call_done(&self, key: u64, measured: bool) {
        if measured {
            self.shard(key).calls_measured += 1;
        }
    }

    /// The charge of an APPLIED usage ack (or of a DUPLICATE one: an
    /// earlier attempt of the same record was applied and its ack lost).
    pub fn money(&self, key: u64, prepaid: bool, charge_ore: i64) {
        let mut s = self.shard(key);
        if prepaid {
            s.money.prepaid_ore += charge_ore;
        } else {
            s.money.postpaid_ore += charge_ore;
        }
    }

    /// Merges the shards.
    pub fn snapshot(&self) -> Observed {
        let mut o = Observed {
            latency: BTreeMap::new(),
            send_lag: histogram(),
            errors_measured: BTreeMap::new(),
            errors_total: BTreeMap::new(),
            counts: BTreeMap::new(),
            calls_measured: 0,
            last_done: None,
            postpaid_ore: 0,
            prepaid_ore: 0,
        };
        for shard in &self.shards {
            let s = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (op, h) in &s.latency {
                o.latency
                    .entry(op.to_string())
                    .or_insert_with(histogram)
                    .add(h)
                    .expect("same histogram bounds");
            }
            o.send_lag.add(&s.send_lag).expect("same histogram bounds");
            for ((op, code), n) in &s.errors_measured {
                *o.errors_measured.entry(format!("{op} {code}")).or_default() += n;
            }
            for ((op, code), n) in &s.errors_total {
                *o.errors_total.entry(format!("{op} {code}")).or_default() += n;
            }
            for ((cat, label), n) in &s.counts {
                *o.counts
                    .entry(cat.to_string())
                    .or_default()
                    .entry(label.clone())
                    .or_default() += n;
            }
            o.calls_measured += s.calls_measured;
            o.last_done = match (o.last_done, s.last_done) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            o.postpaid_ore += s.money.postpaid_ore;
            o.prepaid_ore += s.money.prepaid_ore;
        }
        o
    }
}

/// The merged observations of a run.
pub struct Observed {
    pub latency: BTreeMap<String, Histogram<u64>>,
    pub send_lag: Histogram<u64>,
    pub errors_measured: BTreeMap<String, u64>,
    pub errors_total: BTreeMap<String, u64>,
    pub counts: BTreeMap<String, BTreeMap<String, u64>>,
    pub calls_measured: u64,
    pub last_done: Option<Instant>,
    pub postpaid_ore: i64,
    pub prepaid_ore: i64,
}

/// Percentiles of one histogram, in µs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// The headline figures of a run, read back by `report` (compare.sh). Also
/// written by compare.sh for redis-benchmark, so every field but the
/// throughput is optional.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    /// What the figures are of ("Authorize", "calls", "FCALL", …).
    pub operation: String,
    pub requests: u64,
    pub throughput_per_s: f64,
    pub p50_us: Option<f64>,
    pub p90_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    pub max_us: Option<f64>,
    /// Failed requests in the measured window (any non-OK status or timeout).
    pub errors: u64,
    /// Errors over the whole run, warm-up and drain included.
    #[serde(default)]
    pub errors_total: u64,
    pub server_cpu_us_per_request: Option<f64>,
    pub redis_cpu_us_per_request: Option<f64>,
    /// CPU cores the load generator itself used on average (near the cores it
    /// may use means the generator, not the server, was the bottleneck).
    pub client_cpu_cores: Option<f64>,
    /// Cores the load generator could use (its CPU affinity).
    #[serde(default)]
    pub client_cores_available: Option<f64>,
    /// CPU cores every other process of the machine used meanwhile (a
    /// shared or busy machine disturbs the figures).
    #[serde(default)]
    pub other_cpu_cores: Option<f64>,
}
