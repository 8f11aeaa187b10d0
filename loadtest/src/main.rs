//! `callauth-loadtest`: the whole-system benchmark of callauth (STYLE habit 9).
//!
//! * `run` — an open-loop load generator (a fixed arrival rate; latency is
//!   measured from each request's *scheduled* start, so a slow server cannot
//!   hide its queueing: no coordinated omission) with a closed-loop mode for
//!   finding saturation. Scenarios: `authorize` (one identical kind of
//!   request, for comparing servers) and `mix` (whole calls with consent,
//!   extensions, prepaid codes, blocks and usage over the bidirectional
//!   `Usage.Report` stream, followed by a money check).
//! * `noop-server` — reference servers for the same `Authorization` service:
//!   a fixed answer (the machine's gRPC ceiling) or one Redis `FCALL` of
//!   callauth's authorize Function per request (the Redis ceiling).
//! * `report` — renders the Markdown comparison `compare.sh` writes.
//! * `idle-streams` — opens many `Usage.Report` streams that never send and
//!   reports how the gateway bounds and closes them (issue 10).
//!
//! Nothing here is a test: no figure is asserted, they are measured and printed.

mod cpu;
mod driver;
mod idle;
mod mix;
mod noop;
mod report;
mod retry;
mod run;
mod setup;
mod stats;
mod target;
mod usage;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "callauth-loadtest",
    version,
    about = "Open-loop gRPC load generator and reference servers for callauth"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate load against a gateway (or a reference server) and report
    /// latency percentiles, throughput, errors and decisions.
    Run(Box<run::RunArgs>),
    /// Serve `callauth.v1.Authorization` with no work (gRPC ceiling), or with
    /// exactly one Redis FCALL of the authorize Function per request (--fcall).
    NoopServer(noop::NoopArgs),
    /// Render the comparison report from the JSON results of `run` (used by compare.sh).
    Report(report::ReportArgs),
    /// Open many Usage.Report streams that never send; report how many the
    /// gateway refused and when it closed the others.
    IdleStreams(idle::IdleArgs),
}

fn runtime(worker_threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all();
    if worker_threads > 0 {
        b.worker_threads(worker_threads);
    }
    Ok(b.build()?)
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => {
            runtime(args.worker_threads).and_then(|rt| rt.block_on(run::run(*args)))
        }
        Command::NoopServer(args) => {
            runtime(args.worker_threads).and_then(|rt| rt.block_on(noop::serve(args)))
        }
        Command::Report(args) => report::write(args).map(|()| 0),
        Command::IdleStreams(args) => {
            runtime(args.worker_threads).and_then(|rt| rt.block_on(idle::run(args)))
        }
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("callauth-loadtest: error: {e:#}");
            std::process::exit(1);
        }
    }
}
