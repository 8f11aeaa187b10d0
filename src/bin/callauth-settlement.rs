//! callauth-settlement: the settlement worker and its operator commands
//! (`callauth-settlement --help`; every flag is also a CALLAUTH_… variable).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = callauth::settlement::worker::config::Cli::parse();
    callauth::process::init_tracing(&cli.common.log_format);
    callauth::settlement::worker::cli::run(cli).await
}
