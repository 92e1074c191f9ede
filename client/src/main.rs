//! `renkei-client`: thin glue over the `renkei_client` library (see `cli`).

use std::process::ExitCode;

use clap::Parser;
use renkei_client::cli::{Cli, run};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    #[expect(
        clippy::disallowed_methods,
        reason = "the binary's edge reads the wall clock once"
    )]
    let now = chrono::Utc::now();
    match run(cli, now).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("renkei-client: {e}");
            ExitCode::FAILURE
        }
    }
}
