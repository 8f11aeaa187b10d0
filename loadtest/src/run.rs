//! `callauth-loadtest run`: setup, the measured run, the report (text and
//! JSON) and, for the mix scenario, the money check.
//!
//! Exit status: 0 clean; 2 when any request failed or was left unanswered
//! (the report says so loudly); 3 when the money check failed; 1 when the run
//! could not be made at all.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use callauth::gateway::api::convert::ms_to_timestamp;
use callauth::pb;
use rand::RngExt;
use serde::Serialize;

use crate::cpu::Watched;
use crate::driver::{self, Driven, Load, Plan};
use crate::mix::{self, Knobs, Mix, Zipf};
use crate::setup::{self, Admin, Class, MoneySnapshot, Population, Shares};
use crate::stats::{code_label, Observed, Percentiles, Recorder, Summary};
use crate::target::{self, Clients, Token};
use crate::usage::UsageStream;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Only Authorize with consent, unique call ids: the same request for every server.
    Authorize,
    /// Whole calls: consent, prepaid codes, extensions, releases, usage; money check.
    Mix,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// gRPC endpoint of the gateway (or reference server) under test;
    /// repeatable: calls are spread over several gateways (each gets
    /// --connections connections), and a resend (--retry-seconds) goes to
    /// the next one. Setup and the money check use the first.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub endpoint: Vec<String>,
    /// Allow a non-loopback endpoint.
    #[arg(long)]
    pub allow_remote: bool,
    #[arg(long, value_enum, default_value_t = Scenario::Mix)]
    pub scenario: Scenario,
    /// Open loop: requests (authorize) or calls (mix) per second
    /// [default: 1000 for authorize, 200 for mix unless --concurrency].
    #[arg(long, conflicts_with = "concurrency")]
    pub rate: Option<f64>,
    /// Closed loop instead: this many requests (calls) in flight, each worker
    /// sending the next as soon as its previous one is answered.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Separate HTTP/2 connections, used round-robin.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Measured seconds after the warm-up [default: 10 unless --count].
    #[arg(long)]
    pub duration: Option<f64>,
    /// Measured requests (calls) after the warm-up; with --duration, whichever ends first.
    #[arg(long)]
    pub count: Option<u64>,
    /// Seconds of load before the measurement starts (excluded from the figures).
    #[arg(long, default_value_t = 2.0)]
    pub warmup_seconds: f64,
    /// Open loop: requests (calls) in flight at most; beyond it the generator
    /// waits, and the wait counts in the latency of the requests it delays.
    #[arg(long, default_value_t = 10_000)]
    pub max_in_flight: usize,
    /// Open loop: busy-wait up to this many µs (at most a quarter of the
    /// interval) before each due time: sharper pacing for some CPU. The OS
    /// sleep alone overshoots by tens of µs, which counts as latency and
    /// shows as send lag.
    #[arg(long, default_value_t = 100)]
    pub spin_us: u64,
    /// Seconds to wait for requests still in flight when the load stops.
    #[arg(long, default_value_t = 30.0)]
    pub drain_seconds: f64,
    /// Mix: resend an RPC that failed transiently (UNAVAILABLE, a reset
    /// stream, …) unchanged, on the next connection, for up to this many
    /// seconds — what an IVR and a merchant do when a gateway or its Redis
    /// fails (loadtest/chaos.sh). Every failed attempt still counts as an error.
    #[arg(long, default_value_t = 0.0)]
    pub retry_seconds: f64,
    /// Client-side timeout of every RPC, milliseconds (counted as an error).
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Tokio worker threads of the generator (0 = one per available core).
    #[arg(long, default_value_t = 0)]
    pub worker_threads: usize,
    /// IVR token [default: the public demo token].
    #[arg(long, env = "CALLAUTH_LOADTEST_IVR_TOKEN", hide_env_values = true)]
    pub ivr_token: Option<String>,
    /// Admin token for setup and the money check [default: the public demo token].
    #[arg(long, env = "CALLAUTH_LOADTEST_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// A merchant's token as MERCHANT_ID=TOKEN (repeatable) [default: the demo merchants].
    #[arg(long)]
    pub merchant_token: Vec<String>,
    /// Skip all setup (for the reference servers, which have no admin API;
    /// authorize scenario only).
    #[arg(long)]
    pub skip_setup: bool,
    /// The terms id to consent to with --skip-setup.
    #[arg(long, default_value = "t-469001001010-1")]
    pub terms_id: String,
    /// Population size [default: 1000 for authorize, 10000 for mix].
    #[arg(long)]
    pub numbers: Option<usize>,
    /// First number of the population is +4673 followed by this, 7 digits [default: random].
    #[arg(long)]
    pub number_base: Option<u64>,
    /// The service the authorize scenario calls.
    #[arg(long, default_value = "0900-100 10 10")]
    pub service: String,
    /// Mix: Zipf exponent of the numbers' popularity (0 = uniform).
    #[arg(long, default_value_t = 0.8)]
    pub zipf_s: f64,
    /// Mix: percent of the population with a holder block on all services.
    #[arg(long, default_value_t = 2)]
    pub blocked_pct: u32,
    /// Mix: percent of the population whose holder lowered the limit.
    #[arg(long, default_value_t = 3)]
    pub low_limit_pct: u32,
    /// Mix: the lowered limit, SEK.
    #[arg(long, default_value_t = 50)]
    pub low_limit_sek: i64,
    /// Mix: percent of the population listed without an invoiceable holder.
    #[arg(long, default_value_t = 2)]
    pub secret_pct: u32,
    /// Mix: percent of the population not in the number directory.
    #[arg(long, default_value_t = 2)]
    pub unlisted_pct: u32,
    /// Mix: percent of calls from a withheld number (prepaid flow).
    #[arg(long, default_value_t = 4.0)]
    pub withheld_pct: f64,
    /// Mix: percent of calls from a foreign number (prepaid flow).
    #[arg(long, default_value_t = 1.0)]
    pub foreign_pct: f64,
    /// Mix: prepaid codes issued at setup.
    #[arg(long, default_value_t = 200)]
    pub prepaid_codes: usize,
    /// Mix: balance of each prepaid code, SEK.
    #[arg(long, default_value_t = 10_000)]
    pub code_amount_sek: i64,
    /// Mix: percent of prepaid-only callers who have a code.
    #[arg(long, default_value_t = 70.0)]
    pub have_code_pct: f64,
    /// Mix: percent of code-typing callers who first type a wrong code.
    #[arg(long, default_value_t = 5.0)]
    pub wrong_code_pct: f64,
    /// Mix: withheld callers' line refs (wrong codes lock a line out after 5).
    #[arg(long, default_value_t = 1000)]
    pub lines: u32,
    /// Mix: percent of allowed calls released before the service starts.
    #[arg(long, default_value_t = 3.0)]
    pub release_pct: f64,
    /// Mix: percent of allowed calls the IVR fails to cut at the end of the
    /// grant (30–180 s overrun, charged in full).
    #[arg(long, default_value_t = 2.0)]
    pub overrun_pct: f64,
    /// Mix: percent of calls with 0 seconds of service.
    #[arg(long, default_value_t = 3.0)]
    pub zero_length_pct: f64,
    /// Mix: median reported call length, seconds (log-normal, sigma 1).
    #[arg(long, default_value_t = 180.0)]
    pub median_call_seconds: f64,
    /// Mix: the caller's mean think time between IVR steps, ms (compressed).
    #[arg(long, default_value_t = 20)]
    pub think_ms: u64,
    /// Mix: wall-clock time between the grant and the usage record, ms (compressed).
    #[arg(long, default_value_t = 50)]
    pub call_hold_ms: u64,
    /// Admin requests in flight during setup and the money snapshots.
    #[arg(long, default_value_t = 64)]
    pub setup_concurrency: usize,
    /// Also measure a process's CPU time over the measured window, as
    /// NAME=PID (repeatable; e.g. server=1234 redis=1300).
    #[arg(long)]
    pub watch_pid: Vec<Watched>,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// A label for the report (e.g. "callauth embedded, saturation").
    #[arg(long)]
    pub label: Option<String>,
}

fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[derive(Serialize)]
struct LoadDesc {
    mode: &'static str,
    rate_per_s: Option<f64>,
    concurrency: Option<usize>,
    max_in_flight: Option<usize>,
}

#[derive(Serialize)]
struct CpuFigure {
    cpu_seconds: Option<f64>,
    us_per_request: Option<f64>,
    cores: Option<f64>,
}

#[derive(Serialize)]
struct MoneyCheck {
    ok: bool,
    acked_postpaid_ore: i64,
    gateway_exposure_growth_ore: i64,
    acked_prepaid_ore: i64,
    gateway_prepaid_balance_drop_ore: i64,
    before: MoneySnapshot,
    after: MoneySnapshot,
}

#[derive(Serialize)]
struct RunReport {
    tool: String,
    label: Option<String>,
    command: Vec<String>,
    started_at_unix_ms: i64,
    endpoint: String,
    scenario: Scenario,
    load: LoadDesc,
    connections: usize,
    warmup_seconds: f64,
    /// From the end of the warm-up to the last measured answer.
    measured_seconds: f64,
    summary: Summary,
    latency_us: BTreeMap<String, Percentiles>,
    throughput_per_s: BTreeMap<String, f64>,
    /// How late the generator sent first requests compared with their schedule.
    send_lag_us: Percentiles,
    /// Requests (calls) started, warm-up included.
    issued: u64,
    errors_measured: BTreeMap<String, u64>,
    errors_total: BTreeMap<String, u64>,
    unfinished: u64,
    /// Outcomes over the whole run: decisions, extensions, releases, usage acks, callers.
    outcomes: BTreeMap<String, BTreeMap<String, u64>>,
    cpu: BTreeMap<String, CpuFigure>,
    money_check: Option<MoneyCheck>,
    warnings: Vec<String>,
}

/// Scenario state shared by the tasks of the authorize scenario.
struct AuthorizeOnly {
    rec: Arc<Recorder>,
    conns: Vec<Clients>,
    ivr: Token,
    numbers: Vec<String>,
    service: String,
    terms_id: String,
    call_prefix: String,
}

impl AuthorizeOnly {
    async fn once(self: Arc<Self>, seq: u64, due: Instant) {
        let measured = self.rec.measured(due);
        let i = seq as usize;
        let ts = ms_to_timestamp(now_unix_ms());
        let req = pb::AuthorizeRequest {
            call_id: format!("{}-{seq}", self.call_prefix),
            a_number: self.numbers[i % self.numbers.len()].clone(),
            number_withheld: false,
            service_number: self.service.clone(),
            prepaid_code: String::new(),
            consent: Some(pb::Consent {
                age_confirmed: true,
                own_number_confirmed: true,
                step1_at: Some(ts),
                terms_accepted: true,
                step2_at: Some(ts),
                terms_id: self.terms_id.clone(),
            }),
            ivr_id: "callauth-loadtest-ivr".into(),
            line_ref: String::new(),
        };
        let r = self.conns[i % self.conns.len()]
            .authorization
            .clone()
            .authorize(self.ivr.request(req))
            .await;
        match r {
            Ok(resp) => {
                self.rec.rpc(seq, "Authorize", measured, due, Ok(()));
                self.rec
                    .count(seq, "authorize", mix::authorize_label(resp.get_ref()));
            }
            Err(status) => {
                self.rec.rpc(
                    seq,
                    "Authorize",
                    measured,
                    due,
                    Err(code_label(status.code())),
                );
            }
        }
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<i32> {
    for e in &args.endpoint {
        target::check_endpoint(e, args.allow_remote)?;
    }
    anyhow::ensure!(
        args.retry_seconds >= 0.0 && args.retry_seconds.is_finite(),
        "--retry-seconds must be 0 or more"
    );
    if args.skip_setup && args.scenario == Scenario::Mix {
        bail!(
            "--skip-setup is for the authorize scenario only (mix needs its population and codes)"
        );
    }
    let load = match (args.rate, args.concurrency) {
        (_, Some(c)) => Load::Closed {
            concurrency: c.max(1),
        },
        (rate, None) => Load::Open {
            rate: rate.unwrap_or(match args.scenario {
                Scenario::Authorize => 1000.0,
                Scenario::Mix => 200.0,
            }),
            max_in_flight: args.max_in_flight.max(1),
            spin: Duration::from_micros(args.spin_us),
        },
    };
    if let Load::Open { rate, .. } = load {
        if !(rate > 0.0 && rate.is_finite()) {
            bail!("--rate must be positive");
        }
    }
    let duration = match (args.duration, args.count) {
        (None, None) => Some(10.0),
        (d, _) => d,
    };
    let plan = Plan {
        duration: duration.map(Duration::from_secs_f64),
        count: args.count,
        drain: Duration::from_secs_f64(args.drain_seconds),
    };

    let demo = target::demo_tokens()?;
    let ivr = Token::new(args.ivr_token.as_deref().unwrap_or(&demo.ivr))?;
    let admin_token = Token::new(args.admin_token.as_deref().unwrap_or(&demo.admin))?;
    let mut merchant_tokens: BTreeMap<String, String> = demo.merchants.into_iter().collect();
    for mt in &args.merchant_token {
        let (m, t) = mt
            .split_once('=')
            .with_context(|| format!("--merchant-token {mt:?} is not MERCHANT_ID=TOKEN"))?;
        merchant_tokens.insert(m.to_string(), t.to_string());
    }

    let channels = target::connect_all(
        &args.endpoint,
        args.connections.max(1),
        Duration::from_millis(args.timeout_ms),
    )
    .await?;
    let conns: Vec<Clients> = channels.iter().map(Clients::new).collect();
    let admin = Admin {
        clients: conns[0].clone(),
        token: admin_token,
    };
    let run_id: String = {
        let mut rng = rand::rng();
        (0..8)
            .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16usize)]))
            .collect()
    };
    let call_prefix = format!("lt-{run_id}");
    let numbers = args.numbers.unwrap_or(match args.scenario {
        Scenario::Authorize => 1000,
        Scenario::Mix => 10_000,
    });
    anyhow::ensure!(
        (1..=1_000_000).contains(&numbers),
        "--numbers must be 1..=1000000"
    );
    let base = args
        .number_base
        .unwrap_or_else(|| rand::rng().random_range(0..10_000_000u64));
    let started_at_unix_ms = now_unix_ms();
    let mut warnings = Vec::new();

    // Setup and the scenario's job.
    let setup_started = Instant::now();
    let mut money_before = None;
    let mut mix_codes = Vec::new();
    let mut mix_numbers = Vec::new();
    let rec;
    let driven: Driven;
    match args.scenario {
        Scenario::Authorize => {
            let pop = Population::new(base, numbers, None);
            let terms_id = if args.skip_setup {
                args.terms_id.clone()
            } else {
                let svc = setup::lookup(&conns[0], &args.service).await?;
                admin
                    .setup_population(
                        &pop,
                        0,
                        &format!("loadtest-{run_id}"),
                        args.setup_concurrency,
                    )
                    .await
                    .context("setting up the population")?;
                svc.terms_id
            };
            eprintln!(
                "setup: {} numbers from +4673{:07} with a {} SEK credit-decision limit{} ({:.1} s)",
                numbers,
                base,
                setup::MAX_LIMIT_ORE / 100,
                if args.skip_setup { " [skipped]" } else { "" },
                setup_started.elapsed().as_secs_f64()
            );
            rec = Arc::new(Recorder::new(
                Instant::now() + Duration::from_millis(50),
                Duration::from_secs_f64(args.warmup_seconds),
            ));
            let job = Arc::new(AuthorizeOnly {
                rec: rec.clone(),
                conns: conns.clone(),
                ivr: ivr.clone(),
                numbers: pop.numbers,
                service: args.service.clone(),
                terms_id,
                call_prefix,
            });
            driven = driver::drive(
                &load,
                &plan,
                rec.clone(),
                &args.watch_pid,
                move |seq, due| job.clone().once(seq, due),
            )
            .await;
        }
        Scenario::Mix => {
            let shares = Shares {
                blocked_pct: args.blocked_pct,
                low_limit_pct: args.low_limit_pct,
                secret_pct: args.secret_pct,
                unlisted_pct: args.unlisted_pct,
            };
            anyhow::ensure!(
                shares.blocked_pct + shares.low_limit_pct + shares.secret_pct + shares.unlisted_pct
                    <= 100,
                "the class percentages add up to more than 100"
            );
            let pop = Population::new(base, numbers, Some(&shares));
            let services = setup::services(&conns[0]).await?;
            anyhow::ensure!(!services.is_empty(), "the gateway has no active service");
            admin
                .setup_population(
                    &pop,
                    args.low_limit_sek * 100,
                    &format!("loadtest-{run_id}"),
                    args.setup_concurrency,
                )
                .await
                .context("setting up the population")?;
            let codes = admin
                .issue_codes(
                    args.prepaid_codes,
                    args.code_amount_sek * 100,
                    &run_id,
                    args.setup_concurrency,
                )
                .await
                .context("issuing prepaid codes")?;
            let mut usage = Vec::new();
            for ch in &channels {
                let mut by_merchant = std::collections::HashMap::new();
                for (m, t) in &merchant_tokens {
                    by_merchant.insert(m.clone(), Arc::new(UsageStream::new(ch, Token::new(t)?)));
                }
                usage.push(by_merchant);
            }
            for s in &services {
                if !merchant_tokens.contains_key(&s.merchant_id) {
                    warnings.push(format!(
                        "no token for merchant {}: usage of service {} is not reported",
                        s.merchant_id, s.number
                    ));
                }
            }
            let zipf = Zipf::new(numbers, args.zipf_s);
            eprintln!(
                "setup: {} numbers from +4673{:07} (regular {}, blocked {}, low limit {}, secret {}, unlisted {}; top 1 % make {:.0} % of the calls), {} prepaid codes, {} services ({:.1} s)",
                numbers,
                base,
                pop.count(Class::Regular),
                pop.count(Class::Blocked),
                pop.count(Class::LowLimit),
                pop.count(Class::Secret),
                pop.count(Class::Unlisted),
                100.0 * zipf.top_share(numbers.div_ceil(100)),
                codes.len(),
                services.len(),
                setup_started.elapsed().as_secs_f64()
            );
            let before = admin
                .money(&pop.numbers, &codes, args.setup_concurrency)
                .await
                .context("money snapshot before the run")?;
            money_before = Some(before);
            mix_codes = codes.clone();
            mix_numbers = pop.numbers.clone();
            rec = Arc::new(Recorder::new(
                Instant::now() + Duration::from_millis(50),
                Duration::from_secs_f64(args.warmup_seconds),
            ));
            let m = Arc::new(Mix {
                rec: rec.clone(),
                conns: conns.clone(),
                ivr: ivr.clone(),
                usage,
                services,
                pop,
                zipf,
                codes,
                knobs: Knobs {
                    withheld_pct: args.withheld_pct,
                    foreign_pct: args.foreign_pct,
                    have_code_pct: args.have_code_pct,
                    wrong_code_pct: args.wrong_code_pct,
                    release_pct: args.release_pct,
                    overrun_pct: args.overrun_pct,
                    zero_length_pct: args.zero_length_pct,
                    median_call_seconds: args.median_call_seconds,
                    think: Duration::from_millis(args.think_ms),
                    hold: Duration::from_millis(args.call_hold_ms),
                    lines: args.lines,
                },
                call_prefix,
                retry: Duration::from_secs_f64(args.retry_seconds),
            });
            driven = driver::drive(
                &load,
                &plan,
                rec.clone(),
                &args.watch_pid,
                move |seq, due| m.clone().call(seq, due),
            )
            .await;
        }
    }

    let obs = rec.snapshot();
    let money_check = match money_before {
        Some(before) => {
            let after = admin
                .money(&mix_numbers, &mix_codes, args.setup_concurrency)
                .await
                .context("money snapshot after the run")?;
            let growth = after.exposure_ore - before.exposure_ore;
            let drop = before.prepaid_balance_ore - after.prepaid_balance_ore;
            Some(MoneyCheck {
                ok: growth == obs.postpaid_ore && drop == obs.prepaid_ore,
                acked_postpaid_ore: obs.postpaid_ore,
                gateway_exposure_growth_ore: growth,
                acked_prepaid_ore: obs.prepaid_ore,
                gateway_prepaid_balance_drop_ore: drop,
                before,
                after,
            })
        }
        None => None,
    };

    let report = build_report(
        &args,
        &load,
        &rec,
        &obs,
        &driven,
        money_check,
        started_at_unix_ms,
        warnings,
    );
    print_report(&report);
    if let Some(path) = &args.json_out {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    let failed = report.errors_total.values().sum::<u64>() + report.unfinished > 0;
    Ok(match &report.money_check {
        Some(m) if !m.ok => 3,
        _ if failed => 2,
        _ => 0,
    })
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    args: &RunArgs,
    load: &Load,
    rec: &Recorder,
    obs: &Observed,
    driven: &Driven,
    money_check: Option<MoneyCheck>,
    started_at_unix_ms: i64,
    mut warnings: Vec<String>,
) -> RunReport {
    let measured_seconds = obs
        .last_done
        .map(|l| l.saturating_duration_since(rec.warmup_end))
        .unwrap_or(driven.window)
        .as_secs_f64()
        .max(1e-9);
    let latency_us: BTreeMap<String, Percentiles> = obs
        .latency
        .iter()
        .map(|(op, h)| (op.clone(), Percentiles::of(h)))
        .collect();
    let mut throughput_per_s: BTreeMap<String, f64> = latency_us
        .iter()
        .map(|(op, p)| (op.clone(), p.count as f64 / measured_seconds))
        .collect();
    let ok_total: u64 = latency_us.values().map(|p| p.count).sum();
    let errors_window: u64 = obs.errors_measured.values().sum();
    let errors_total: u64 = obs.errors_total.values().sum();
    let requests_window = ok_total + errors_window;
    if args.scenario == Scenario::Mix {
        throughput_per_s.insert("calls".into(), obs.calls_measured as f64 / measured_seconds);
        throughput_per_s.insert("all RPCs".into(), ok_total as f64 / measured_seconds);
    }

    let mut cpu = BTreeMap::new();
    let window_s = driven.window.as_secs_f64().max(1e-9);
    let ours: f64 = driven
        .cpu_seconds
        .iter()
        .filter(|(n, _)| n != "machine")
        .filter_map(|(_, s)| *s)
        .sum();
    let machine = driven
        .cpu_seconds
        .iter()
        .find(|(n, _)| n == "machine")
        .and_then(|(_, s)| *s);
    let other_cpu_cores = machine.map(|m| (m - ours).max(0.0) / window_s);
    for (name, secs) in driven.cpu_seconds.iter().filter(|(n, _)| n != "machine") {
        cpu.insert(
            name.clone(),
            CpuFigure {
                cpu_seconds: *secs,
                us_per_request: secs
                    .filter(|_| requests_window > 0)
                    .map(|s| s * 1e6 / requests_window as f64),
                cores: secs.map(|s| s / window_s),
            },
        );
    }
    let cpu_per = |name: &str| cpu.get(name).and_then(|c| c.us_per_request);

    let primary = "Authorize";
    let p = latency_us.get(primary).cloned().unwrap_or_default();
    let summary = Summary {
        operation: match args.scenario {
            Scenario::Authorize => "Authorize".into(),
            Scenario::Mix => "calls (latency: Authorize)".into(),
        },
        requests: match args.scenario {
            Scenario::Authorize => p.count + errors_window,
            Scenario::Mix => obs.calls_measured,
        },
        throughput_per_s: match args.scenario {
            Scenario::Authorize => p.count as f64 / measured_seconds,
            Scenario::Mix => obs.calls_measured as f64 / measured_seconds,
        },
        p50_us: (p.count > 0).then_some(p.p50_us as f64),
        p90_us: (p.count > 0).then_some(p.p90_us as f64),
        p99_us: (p.count > 0).then_some(p.p99_us as f64),
        p999_us: (p.count > 0).then_some(p.p999_us as f64),
        max_us: (p.count > 0).then_some(p.max_us as f64),
        errors: errors_window,
        errors_total,
        server_cpu_us_per_request: cpu_per("server"),
        redis_cpu_us_per_request: cpu_per("redis"),
        client_cpu_cores: cpu.get("client").and_then(|c| c.cores),
        client_cores_available: std::thread::available_parallelism()
            .ok()
            .map(|n| n.get() as f64),
        other_cpu_cores,
    };

    // Anything a reader of the figures must not miss.
    if errors_total > 0 || driven.unfinished > 0 {
        warnings.push(format!(
            "{errors_total} request(s) FAILED and {} were left unanswered: the figures do not describe a healthy run",
            driven.unfinished
        ));
    }
    let outcomes = obs.counts.clone();
    if args.scenario == Scenario::Authorize {
        let not_granted: u64 = outcomes
            .get("authorize")
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| !k.starts_with("ALLOWED GRANTED"))
                    .map(|(_, n)| n)
                    .sum()
            })
            .unwrap_or(0);
        if not_granted > 0 {
            warnings.push(format!(
                "{not_granted} Authorize answer(s) were not grants: the run did not measure the granting path only"
            ));
        }
    }
    if let Some(usage) = outcomes.get("usage") {
        let odd: u64 = usage
            .iter()
            .filter(|(k, _)| !k.starts_with("APPLIED"))
            .map(|(_, n)| n)
            .sum();
        if odd > 0 {
            warnings.push(format!(
                "{odd} usage record(s) were not simply APPLIED (see outcomes.usage)"
            ));
        }
    }
    if let Some(m) = &money_check {
        if !m.ok {
            warnings.push(format!(
                "MONEY CHECK FAILED: acked postpaid {} öre vs gateway exposure growth {} öre; acked prepaid {} öre vs balance drop {} öre",
                m.acked_postpaid_ore,
                m.gateway_exposure_growth_ore,
                m.acked_prepaid_ore,
                m.gateway_prepaid_balance_drop_ore
            ));
        }
    }
    let send_lag = Percentiles::of(&obs.send_lag);
    if let Load::Open { .. } = load {
        if send_lag.p99_us > 1000 {
            warnings.push(format!(
                "the generator sent 1 % of its requests more than {} µs late: it may be the bottleneck (the lateness is included in the latencies)",
                send_lag.p99_us
            ));
        }
    }
    if let Some(other) = other_cpu_cores.filter(|o| *o > 0.25) {
        warnings.push(format!(
            "other processes used {other:.2} CPU cores during the measured window: the machine was not quiet"
        ));
    }
    if let (Some(cores), Some(available)) =
        (summary.client_cpu_cores, summary.client_cores_available)
    {
        if cores > 0.9 * available {
            warnings.push(format!(
                "the generator used {cores:.2} of its {available} core(s): the run may be client-bound"
            ));
        }
    }

    RunReport {
        tool: format!("callauth-loadtest {}", env!("CARGO_PKG_VERSION")),
        label: args.label.clone(),
        command: std::env::args().collect(),
        started_at_unix_ms,
        endpoint: args.endpoint.join(","),
        scenario: args.scenario,
        load: match *load {
            Load::Open {
                rate,
                max_in_flight,
                ..
            } => LoadDesc {
                mode: "open loop",
                rate_per_s: Some(rate),
                concurrency: None,
                max_in_flight: Some(max_in_flight),
            },
            Load::Closed { concurrency } => LoadDesc {
                mode: "closed loop",
                rate_per_s: None,
                concurrency: Some(concurrency),
                max_in_flight: None,
            },
        },
        connections: args.connections.max(1),
        warmup_seconds: args.warmup_seconds,
        measured_seconds,
        summary,
        latency_us,
        throughput_per_s,
        send_lag_us: send_lag,
        issued: driven.issued,
        errors_measured: obs.errors_measured.clone(),
        errors_total: obs.errors_total.clone(),
        unfinished: driven.unfinished,
        outcomes,
        cpu,
        money_check,
        warnings,
    }
}

fn sek(ore: i64) -> String {
    callauth::domain::Money::ore_unchecked(ore).to_swedish()
}

fn print_report(r: &RunReport) {
    let load = match (r.load.rate_per_s, r.load.concurrency) {
        (Some(rate), _) => format!("open loop at {rate} /s"),
        (_, Some(c)) => format!("closed loop, {c} in flight"),
        _ => String::new(),
    };
    println!(
        "callauth-loadtest run{}: scenario {:?}, {load}, {} connection(s) to {}",
        r.label
            .as_ref()
            .map(|l| format!(" [{l}]"))
            .unwrap_or_default(),
        r.scenario,
        r.connections,
        r.endpoint
    );
    println!(
        "measured {:.2} s after a {:.1} s warm-up; {} {} started in all",
        r.measured_seconds,
        r.warmup_seconds,
        r.issued,
        if r.scenario == Scenario::Mix {
            "calls"
        } else {
            "requests"
        }
    );
    let what = if r.load.rate_per_s.is_some() {
        "from scheduled start"
    } else {
        "from send (closed loop)"
    };
    println!(
        "\n{:<14} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9}   latency µs {what}",
        "operation", "count", "per s", "p50", "p90", "p99", "p99.9", "max"
    );
    for (op, p) in &r.latency_us {
        println!(
            "{:<14} {:>9} {:>10.1} {:>8} {:>8} {:>8} {:>8} {:>9}",
            op,
            p.count,
            r.throughput_per_s.get(op).copied().unwrap_or(0.0),
            p.p50_us,
            p.p90_us,
            p.p99_us,
            p.p999_us,
            p.max_us
        );
    }
    for k in ["calls", "all RPCs"] {
        if let Some(t) = r.throughput_per_s.get(k) {
            println!("{k:<14} {:>9} {t:>10.1}", "");
        }
    }
    if r.load.rate_per_s.is_some() {
        let l = &r.send_lag_us;
        println!(
            "send lag       {:>9} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9}   (generator lateness, included above)",
            l.count, "", l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
        );
    }
    if r.errors_total.is_empty() && r.unfinished == 0 {
        println!("\nerrors: none");
    } else {
        println!("\n!!!!!!!! ERRORS !!!!!!!!");
        for (k, n) in &r.errors_total {
            let window = r.errors_measured.get(k).copied().unwrap_or(0);
            println!("  {k}: {n} ({window} in the measured window)");
        }
        if r.unfinished > 0 {
            println!("  unanswered when the drain time ran out: {}", r.unfinished);
        }
    }
    for (category, counts) in &r.outcomes {
        println!("\n{category} (whole run):");
        for (label, n) in counts {
            println!("  {label:<44} {n:>9}");
        }
    }
    if !r.cpu.is_empty() {
        println!("\nCPU over the measured window:");
        for (name, c) in &r.cpu {
            match (c.cpu_seconds, c.us_per_request, c.cores) {
                (Some(s), Some(per), Some(cores)) => {
                    println!("  {name:<8} {s:>8.2} s  {per:>8.1} µs/request  {cores:>5.2} cores")
                }
                _ => println!("  {name:<8} unavailable"),
            }
        }
    }
    if let Some(o) = r.summary.other_cpu_cores {
        println!("  other processes of the machine: {o:.2} cores");
    }
    if let Some(m) = &r.money_check {
        println!("\nmoney check ({}):", if m.ok { "OK" } else { "FAILED" });
        println!(
            "  postpaid: APPLIED acks {} — gateway exposure growth {}",
            sek(m.acked_postpaid_ore),
            sek(m.gateway_exposure_growth_ore)
        );
        println!(
            "  prepaid:  APPLIED acks {} — gateway balance drop   {}",
            sek(m.acked_prepaid_ore),
            sek(m.gateway_prepaid_balance_drop_ore)
        );
    }
    for w in &r.warnings {
        eprintln!("WARNING: {w}");
    }
}
