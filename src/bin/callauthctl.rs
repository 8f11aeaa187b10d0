//! callauthctl: command-line client for the callauth gateway (`callauthctl --help`).

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = callauth::ctl::Cli::parse();
    match callauth::ctl::run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // A gRPC status prints its code and message; anything else its chain.
            match e.downcast_ref::<tonic::Status>() {
                Some(s) => eprintln!("error: {:?}: {}", s.code(), s.message()),
                None => eprintln!("error: {e:#}"),
            }
            std::process::exit(1);
        }
    }
}
