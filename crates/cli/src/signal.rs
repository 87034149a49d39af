//! The signals that stop a command cleanly: Ctrl-C (SIGINT) and, on Unix, SIGTERM. `watch`,
//! `snapshot` and `sim serve` finish the line they are printing, flush, and exit 0 on either.

/// Resolves on the first SIGINT or SIGTERM.
pub(crate) async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
