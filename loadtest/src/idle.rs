//! `idle-streams`: opens many `Usage.Report` streams that never send a
//! record (issue 10: 20 000 of them took a gateway from 10 MB to 311 MB of
//! RSS, never closed). Reports how many the gateway accepted and refused, and
//! when and how it closed the accepted ones. Nothing is asserted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use callauth::pb;
use callauth::status::code_label;
use tokio_stream::StreamExt;

use crate::target::{self, Token};

#[derive(clap::Args, Debug)]
pub struct IdleArgs {
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub endpoint: String,
    /// Streams to open.
    #[arg(long, default_value_t = 20_000)]
    pub streams: usize,
    /// HTTP/2 connections they are spread over.
    #[arg(long, default_value_t = 20)]
    pub connections: usize,
    /// Stop waiting for the gateway to close the streams after this many seconds.
    #[arg(long, default_value_t = 180)]
    pub wait_seconds: u64,
    /// A merchant token [default: the demo merchant stjarnlinjen's].
    #[arg(long, env = "CALLAUTH_LOADTEST_MERCHANT_TOKEN", hide_env_values = true)]
    pub merchant_token: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub worker_threads: usize,
}

/// How one stream went.
enum Outcome {
    /// Refused when opened, with this code.
    Refused(&'static str),
    /// Opened, then ended by the gateway after this long, with this code.
    Closed(Duration, &'static str),
    /// Still open when the wait ended.
    Open,
}

pub async fn run(args: IdleArgs) -> anyhow::Result<i32> {
    target::check_endpoint(&args.endpoint, false)?;
    let token = match &args.merchant_token {
        Some(t) => Token::new(t)?,
        None => Token::new(&target::demo_tokens()?.merchants[0].1)?,
    };
    let channels = target::connect(&args.endpoint, args.connections, Duration::from_secs(3600))
        .await
        .context("connecting")?;
    let wait = Duration::from_secs(args.wait_seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut senders = Vec::with_capacity(args.streams);
    for i in 0..args.streams {
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::UsageRecord>(1);
        senders.push(tx);
        let mut client = pb::usage_client::UsageClient::new(channels[i % channels.len()].clone());
        let request = token.request(tokio_stream::wrappers::ReceiverStream::new(rx));
        tasks.spawn(async move {
            let opened = Instant::now();
            let mut acks = match client.report(request).await {
                Ok(r) => r.into_inner(),
                Err(s) => return Outcome::Refused(code_label(s.code())),
            };
            match tokio::time::timeout(wait, acks.next()).await {
                Err(_) => Outcome::Open,
                Ok(None) => Outcome::Closed(opened.elapsed(), "ok"),
                Ok(Some(Ok(_))) => Outcome::Closed(opened.elapsed(), "ack"),
                Ok(Some(Err(s))) => Outcome::Closed(opened.elapsed(), code_label(s.code())),
            }
        });
    }
    eprintln!(
        "idle-streams: {} streams requested over {} connections in {:.1} s",
        args.streams,
        channels.len(),
        started.elapsed().as_secs_f64()
    );
    let mut refused: BTreeMap<&str, u64> = BTreeMap::new();
    let mut closed: BTreeMap<&str, u64> = BTreeMap::new();
    let mut close_times = Vec::new();
    let mut open = 0u64;
    while let Some(outcome) = tasks.join_next().await {
        match outcome? {
            Outcome::Refused(code) => *refused.entry(code).or_default() += 1,
            Outcome::Closed(after, code) => {
                *closed.entry(code).or_default() += 1;
                close_times.push(after.as_secs_f64());
            }
            Outcome::Open => open += 1,
        }
    }
    drop(senders);
    close_times.sort_by(f64::total_cmp);
    let at = |q: f64| {
        close_times
            .get(((close_times.len() as f64 - 1.0) * q) as usize)
            .copied()
    };
    let report = serde_json::json!({
        "streams": args.streams,
        "connections": channels.len(),
        "refused": refused,
        "closed_by_gateway": closed,
        "still_open_after_wait": open,
        "closed_after_seconds": { "min": at(0.0), "p50": at(0.5), "max": at(1.0) },
        "elapsed_seconds": started.elapsed().as_secs_f64(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(0)
}
