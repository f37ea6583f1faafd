//! Closing the serving queue on SIGINT or SIGTERM, so the serving loop
//! finishes what is in flight and the caller can stop its nodes.

use std::sync::Arc;

use shardlab_engine::orchestrator::serving::ServeQueue;

/// Watches for SIGINT and SIGTERM on a thread of its own; the first one
/// closes `queue` (waiting requests get a 503, running ones finish).
pub fn close_on_signal(queue: Arc<ServeQueue>) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    #[cfg(unix)]
    let mut term = {
        let _guard = runtime.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async {
                #[cfg(unix)]
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                #[cfg(not(unix))]
                let _ = tokio::signal::ctrl_c().await;
            });
            eprintln!("closing: no new requests; finishing those in flight");
            queue.close();
        })?;
    Ok(())
}
