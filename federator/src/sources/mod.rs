//! Catalog sources: one task per source, each with its own backoff. A source only produces
//! snapshots; what happens to them (staleness, merge, persistence) is the core's business.

pub mod static_file;

pub use skybridge_api::backoff::Backoff;
use skybridge_api::catalog::{SourceId, SourceSnapshot, UnixMillis};
pub use skybridge_api::source::{CatalogSource, ErrorKind, SourceError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One sync attempt's outcome, sent to the core.
#[derive(Debug, Clone)]
pub struct SourceUpdate {
    pub source: SourceId,
    pub at: UnixMillis,
    pub result: Result<SourceSnapshot, SourceError>,
}

/// The wall clock as Unix milliseconds; only the I/O shell calls it.
pub fn now_millis() -> UnixMillis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Drives one source until cancelled, sending every outcome to `tx` (bounded: a slow core
/// slows the source rather than growing a queue).
pub async fn run<S: CatalogSource>(
    id: SourceId,
    mut source: S,
    tx: mpsc::Sender<SourceUpdate>,
    backoff: Backoff,
    cancel: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = source.next() => r,
        };
        let wait = match &result {
            Ok(_) => {
                failures = 0;
                None
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(source = %id, kind = source.kind(), error = %e, failures, "source sync failed");
                Some(backoff.jittered(failures, fastrand::f64()))
            }
        };
        let update = SourceUpdate { source: id.clone(), at: now_millis(), result };
        tokio::select! {
            _ = cancel.cancelled() => return,
            sent = tx.send(update) => if sent.is_err() { return },
        }
        if let Some(wait) = wait {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
