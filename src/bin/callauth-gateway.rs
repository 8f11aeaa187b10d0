//! callauth-gateway: the real-time call authorization server.
//! Configuration: `callauth-gateway --help` (every flag is also a CALLAUTH_… variable).

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cfg = callauth::gateway::config::GatewayConfig::parse();
    callauth::process::init_tracing(&cfg.log_format);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if cfg.worker_threads > 0 {
        runtime.worker_threads(cfg.worker_threads);
    }
    runtime
        .enable_all()
        .thread_name("callauth")
        .build()?
        .block_on(callauth::gateway::run::gateway(cfg))
}
