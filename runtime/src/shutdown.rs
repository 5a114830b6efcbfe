//! Shutdown on SIGINT or SIGTERM.
//!
//! Every long-running loop takes a [`CancellationToken`] and stops when it is cancelled. A program
//! gets its token from [`on_signals`]. Both signals are handled, because a program started in the
//! background by a non-interactive shell has SIGINT ignored, while SIGTERM always arrives.

use tokio_util::sync::CancellationToken;

/// Returns a token that is cancelled at the first SIGINT or SIGTERM. Must be called inside a
/// tokio runtime.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    tokio::spawn(cancel_on_signal(token.clone()));
    token
}

/// Waits for SIGINT or SIGTERM, logs it, and cancels `token`.
pub async fn cancel_on_signal(token: CancellationToken) {
    let which = wait_for_signal().await;
    tracing::info!(signal = which, "Shutting down");
    token.cancel();
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}
