//! `tapgate-device`: parses the command line, sets up logging and signals, and runs.

use std::process::ExitCode;

use clap::Parser;
use tapgate_device::cli::{run, Cli};
use tapgate_runtime::logging::{self, LogFormat};

#[tokio::main]
async fn main() -> ExitCode {
    tapgate_runtime::exit::report(start().await)
}

async fn start() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let format = if cli.log_json {
        LogFormat::Json
    } else {
        LogFormat::Text
    };
    logging::init(format, &cli.log)?;
    // SIGINT or SIGTERM: lights go off and the device says `offline`.
    let shutdown = tapgate_runtime::shutdown::on_signals();
    run(cli.command, shutdown).await?;
    Ok(())
}
