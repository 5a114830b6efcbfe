//! `tapgate-device`: parses the command line, sets up logging and signals, and runs.

use std::process::ExitCode;

use tapgate_device::cli::{run, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    tapgate_runtime::exit::report(start().await)
}

async fn start() -> anyhow::Result<()> {
    let (cli, given) = Cli::parse_from(std::env::args_os()).map_err(|e| e.exit_on_parse())?;
    cli.log.init()?;
    // SIGINT or SIGTERM: lights go off and the device says `offline`.
    let shutdown = tapgate_runtime::shutdown::on_signals();
    run(cli.command, given, shutdown).await?;
    Ok(())
}
