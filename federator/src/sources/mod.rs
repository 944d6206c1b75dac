//! Catalog sources: one task per source, each with its own backoff. A source only produces
//! snapshots; what happens to them (staleness, merge, persistence) is the core's business.

pub mod static_file;

pub use skybridge_api::backoff::Backoff;
use skybridge_api::catalog::{SourceId, SourceSnapshot, UnixMillis};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What kind of failure a source hit; decides the operator's next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Credentials missing, expired or lacking permissions.
    Auth,
    /// A configured namespace, fleet, cluster or file does not exist.
    NotFound,
    /// The cloud API rate-limited us.
    Throttled,
    /// The cloud API or file system did not answer.
    Unavailable,
    /// The data does not make sense (bad names, bad file).
    Malformed,
}

impl ErrorKind {
    /// Label for metrics and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Auth => "auth",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Malformed => "malformed",
        }
    }
}

/// A failed sync, classified, with a message that says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct SourceError {
    pub kind: ErrorKind,
    pub message: String,
}

impl SourceError {
    /// Builds an error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        SourceError { kind, message: message.into() }
    }
}

/// A catalog source. `next` returns the source's whole current view as soon as something may
/// have changed (the first call at once; then when a file changes, a poll interval passes, or a
/// watch fires). It must be cancel-safe: the runner drops it mid-wait on shutdown.
pub trait CatalogSource: Send + 'static {
    /// The source type, for logs (`static`, `aws-cloudmap`, ...).
    fn kind(&self) -> &'static str;
    /// Waits for and returns the next full snapshot.
    fn next(&mut self) -> impl Future<Output = Result<SourceSnapshot, SourceError>> + Send;
}

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
