//! `tapgate-bridge`: parses settings, sets up logging, and runs the bridge until SIGINT/SIGTERM.

use std::process::ExitCode;

use anyhow::Context;
use tapgate_bridge::BridgeConfig;
use tapgate_bridge::Cli;

/// One thread runs every task. Per tap the bridge's tasks hand work to each other several times
/// (MQTT loop, shard worker, Redis connection, back to the MQTT loop); on one thread a hand-over is
/// a queue push, while between threads it is often a futex wake-up and a context switch, which
/// costs more than the work handed over. One core is also more than Redis, single-threaded, can
/// keep busy with decisions.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tapgate_runtime::exit::report(start().await)
}

async fn start() -> anyhow::Result<()> {
    let (cli, flags) = Cli::parse_from(std::env::args_os()).map_err(|e| e.exit_on_parse())?;
    cli.log.init()?;
    let config = BridgeConfig::load(cli.config.as_deref(), flags).context("invalid settings")?;
    if cli.print_config {
        print!("{}", tapgate_runtime::settings::to_toml(&config)?);
        return Ok(());
    }
    let shutdown = tapgate_runtime::shutdown::on_signals();
    tapgate_bridge::run(config, shutdown)
        .await
        .context("bridge failed")
}
