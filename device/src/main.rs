//! `tapgate-device`: parses the command line, sets up logging and signals, and runs.

use clap::Parser;
use tapgate_device::cli::{run, Cli};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_new(&cli.log)?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(on_signal(shutdown.clone()));
    run(cli.command, shutdown).await?;
    Ok(())
}

/// Cancels `shutdown` on SIGINT or SIGTERM, so lights go off and the device says `offline`.
async fn on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            },
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("Stopping");
    shutdown.cancel();
}
