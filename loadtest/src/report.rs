//! `callauth-loadtest report`: the comparison table of `compare.sh`, from
//! the JSON files of `run --json-out` (and the small JSON compare.sh writes
//! for redis-benchmark), with the ratios that put callauth in proportion.
//! Printed to stdout and written as Markdown after a preamble (the machine,
//! the versions and the exact command, which compare.sh collects).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;

use crate::stats::Summary;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// A result as SYSTEM:LOAD=FILE; SYSTEM is noop, noop-nagle,
    /// callauth-memory, fcall, callauth-redis or redis-benchmark; LOAD is 1x1
    /// or sat (repeatable).
    #[arg(long = "case", required = true)]
    pub cases: Vec<String>,
    /// Markdown placed before the table (machine, versions, command).
    #[arg(long)]
    pub preamble: Option<PathBuf>,
    /// Markdown placed after the ratios (notes on the method).
    #[arg(long)]
    pub notes: Option<PathBuf>,
    /// Where to write the Markdown report.
    #[arg(long)]
    pub out: PathBuf,
    /// CPUs the servers (and Redis) were pinned to, for the observations.
    #[arg(long)]
    pub server_cpus: Option<f64>,
}

const SYSTEMS: [(&str, &str); 6] = [
    ("noop", "1. no-op gRPC server (gRPC ceiling)"),
    ("noop-nagle", "1b. no-op gRPC server, Nagle on (diagnostic)"),
    ("callauth-memory", "2. callauth-gateway, embedded store"),
    ("fcall", "3. FCALL server (Redis ceiling)"),
    ("callauth-redis", "4. callauth-gateway on Redis"),
    ("redis-benchmark", "5. redis-benchmark FCALL (no gRPC)"),
];

struct Case {
    summary: Summary,
    load: String,
}

fn load_text(v: &serde_json::Value) -> String {
    if let Some(t) = v.get("load_text").and_then(|t| t.as_str()) {
        return t.to_string();
    }
    let conns = v.get("connections").and_then(|c| c.as_u64()).unwrap_or(1);
    let load = &v["load"];
    match (load["concurrency"].as_u64(), load["rate_per_s"].as_f64()) {
        (Some(c), _) => format!("closed, {conns} conn × {c} in flight"),
        (_, Some(r)) => format!("open, {r} /s over {conns} conn"),
        _ => String::new(),
    }
}

fn read(path: &str) -> anyhow::Result<Case> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {path}"))?;
    let summary: Summary = serde_json::from_value(v["summary"].clone())
        .with_context(|| format!("{path} has no valid summary"))?;
    Ok(Case {
        summary,
        load: load_text(&v),
    })
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("—".into(), |x| format!("{x:.decimals$}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

pub fn write(args: ReportArgs) -> anyhow::Result<()> {
    let mut cases: BTreeMap<(String, String), Case> = BTreeMap::new();
    for c in &args.cases {
        let (key, file) = c
            .split_once('=')
            .with_context(|| format!("--case {c:?} is not SYSTEM:LOAD=FILE"))?;
        let (system, load) = key
            .split_once(':')
            .with_context(|| format!("--case {c:?} is not SYSTEM:LOAD=FILE"))?;
        anyhow::ensure!(
            SYSTEMS.iter().any(|(s, _)| *s == system),
            "unknown system {system:?}"
        );
        anyhow::ensure!(load == "1x1" || load == "sat", "unknown load {load:?}");
        cases.insert((system.to_string(), load.to_string()), read(file)?);
    }
    let get = |system: &str, load: &str| cases.get(&(system.to_string(), load.to_string()));
    let sum = |system: &str, load: &str| get(system, load).map(|c| &c.summary);

    let mut t = String::new();
    writeln!(
        t,
        "| system | load | throughput (req/s) | p50 µs | p99 µs | p99.9 µs | server CPU µs/req | Redis CPU µs/req | client cores | other procs cores | errors |"
    )?;
    writeln!(t, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")?;
    for (system, name) in SYSTEMS {
        for (load, load_name) in [("1x1", "1×1"), ("sat", "saturation")] {
            let Some(c) = get(system, load) else {
                continue;
            };
            let s = &c.summary;
            let errors = if s.errors_total > s.errors {
                format!("{} ({} total)", s.errors, s.errors_total)
            } else {
                s.errors.to_string()
            };
            writeln!(
                t,
                "| {name} | {load_name}: {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {}{} |",
                c.load,
                s.throughput_per_s,
                opt(s.p50_us, 0),
                opt(s.p99_us, 0),
                opt(s.p999_us, 0),
                opt(s.server_cpu_us_per_request, 1),
                opt(s.redis_cpu_us_per_request, 1),
                opt(s.client_cpu_cores, 2),
                opt(s.other_cpu_cores, 2),
                errors,
                if s.errors_total > 0 { " ⚠" } else { "" }
            )?;
        }
    }

    let mut r = String::new();
    writeln!(r, "| ratio | value |")?;
    writeln!(r, "|---|--:|")?;
    let tp = |s: &str, l: &str| sum(s, l).map(|x| x.throughput_per_s);
    let p99 = |s: &str, l: &str| sum(s, l).and_then(|x| x.p99_us);
    let p50 = |s: &str, l: &str| sum(s, l).and_then(|x| x.p50_us);
    let cpu = |s: &str, l: &str| sum(s, l).and_then(|x| x.server_cpu_us_per_request);
    let rows: Vec<(String, String)> = vec![
        (
            "callauth embedded / no-op: throughput at saturation".into(),
            ratio(tp("callauth-memory", "sat"), tp("noop", "sat")),
        ),
        (
            "callauth embedded / no-op: p99 at 1×1".into(),
            ratio(p99("callauth-memory", "1x1"), p99("noop", "1x1")),
        ),
        (
            "callauth embedded / no-op: server CPU per request at saturation".into(),
            ratio(cpu("callauth-memory", "sat"), cpu("noop", "sat")),
        ),
        (
            "callauth on Redis / FCALL server: throughput at saturation".into(),
            ratio(tp("callauth-redis", "sat"), tp("fcall", "sat")),
        ),
        (
            "callauth on Redis / FCALL server: p99 at 1×1".into(),
            ratio(p99("callauth-redis", "1x1"), p99("fcall", "1x1")),
        ),
        (
            "callauth on Redis / FCALL server: server CPU per request at saturation".into(),
            ratio(cpu("callauth-redis", "sat"), cpu("fcall", "sat")),
        ),
        (
            "FCALL server / redis-benchmark: throughput at saturation".into(),
            ratio(tp("fcall", "sat"), tp("redis-benchmark", "sat")),
        ),
        (
            "FCALL server / redis-benchmark: p50 at 1×1".into(),
            ratio(p50("fcall", "1x1"), p50("redis-benchmark", "1x1")),
        ),
        (
            "FCALL server / redis-benchmark: p99 at 1×1".into(),
            ratio(p99("fcall", "1x1"), p99("redis-benchmark", "1x1")),
        ),
        (
            "callauth on Redis / callauth embedded: throughput at saturation".into(),
            ratio(tp("callauth-redis", "sat"), tp("callauth-memory", "sat")),
        ),
    ];
    for (what, value) in rows {
        writeln!(r, "| {what} | {value} |")?;
    }

    let failed: Vec<String> = cases
        .iter()
        .filter(|(_, c)| c.summary.errors_total > 0)
        .map(|((s, l), c)| format!("{s} {l}: {} errors", c.summary.errors_total))
        .collect();
    let mut alarm = String::new();
    if !failed.is_empty() {
        writeln!(
            alarm,
            "\n**⚠ RUNS WITH ERRORS — their figures do not describe a healthy system: {}**\n",
            failed.join("; ")
        )?;
    }

    let observations = observe(&cases, args.server_cpus);
    println!("{t}\n{r}{alarm}");
    if !observations.is_empty() {
        println!("{observations}");
    }
    let mut md = String::new();
    if let Some(p) = &args.preamble {
        md.push_str(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        );
        md.push('\n');
    }
    md.push_str("## Results\n\n");
    md.push_str(&t);
    md.push_str(&alarm);
    md.push_str("\n## Ratios\n\n");
    md.push_str(&r);
    if !observations.is_empty() {
        md.push_str("\n## Observations (derived from the figures above)\n\n");
        md.push_str(&observations);
    }
    if let Some(p) = &args.notes {
        md.push('\n');
        md.push_str(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        );
    }
    std::fs::write(&args.out, md).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("report written to {}", args.out.display());
    Ok(())
}

/// Facts a reader should not have to work out from the table.
fn observe(cases: &BTreeMap<(String, String), Case>, server_cpus: Option<f64>) -> String {
    let get = |s: &str, l: &str| {
        cases
            .get(&(s.to_string(), l.to_string()))
            .map(|c| &c.summary)
    };
    let mut out = String::new();
    let p50 = |s: &str| get(s, "1x1").and_then(|x| x.p50_us);
    // Nagle's algorithm meeting delayed ACKs stalls a lone request ~40 ms.
    const NAGLE_US: f64 = 20_000.0;
    let fast_noop = p50("noop").is_some_and(|v| v < NAGLE_US / 10.0);
    let slow_nagle = p50("noop-nagle").is_some_and(|v| v >= NAGLE_US);
    let slow: Vec<String> = ["callauth-memory", "callauth-redis"]
        .into_iter()
        .filter_map(|gw| {
            p50(gw)
                .filter(|v| *v >= NAGLE_US)
                .map(|v| format!("{gw} in {:.1} ms", v / 1000.0))
        })
        .collect();
    if !slow.is_empty() {
        let _ = writeln!(
            out,
            "* The gateway answers a lone request (p50 at 1×1): {}{}. That is the signature of Nagle's algorithm on the server's sockets meeting the client's delayed ACKs, not of work: check that `src/server.rs` sets TCP_NODELAY on the accepted sockets (tonic ignores `Server::tcp_nodelay` when it serves an incoming stream of our own). Every gateway row is affected, at saturation too.",
            slow.join(", "),
            if fast_noop && slow_nagle {
                format!(
                    "; the no-op server takes {:.0} µs with TCP_NODELAY and {:.1} ms without it (row 1b)",
                    p50("noop").unwrap_or(0.0),
                    p50("noop-nagle").unwrap_or(0.0) / 1000.0
                )
            } else {
                String::new()
            }
        );
    }
    for ((s, l), c) in cases {
        let x = &c.summary;
        if let (Some(used), Some(avail)) = (x.client_cpu_cores, x.client_cores_available) {
            if used >= 0.9 * avail {
                let _ = writeln!(
                    out,
                    "* {s} {l}: the load generator used {used:.2} of its {avail} core(s): that row may be limited by the client, not the server."
                );
            }
        }
        // Server and Redis cores: CPU per request × requests per second.
        let sut_us =
            x.server_cpu_us_per_request.unwrap_or(0.0) + x.redis_cpu_us_per_request.unwrap_or(0.0);
        let sut_cores = sut_us * x.throughput_per_s / 1e6;
        if let Some(cpus) = server_cpus.filter(|c| *c > 0.0 && sut_cores >= 0.9 * c) {
            let _ = writeln!(
                out,
                "* {s} {l}: the system under test used {sut_cores:.2} of the {cpus} CPU(s) it was pinned to{}: that row is bound by that CPU.",
                if x.redis_cpu_us_per_request.is_some() && x.server_cpu_us_per_request.is_some() {
                    " (server and Redis share it)"
                } else {
                    ""
                }
            );
        }
        if let Some(o) = x.other_cpu_cores.filter(|o| *o > 0.25) {
            let _ = writeln!(
                out,
                "* {s} {l}: other processes of the machine used {o:.2} cores during the measurement: its figures are disturbed."
            );
        }
    }
    out
}
