//! The contract between catalog sources (the static file in the federator, the cloud adapters
//! in `cloud-adapters/`) and the federator that runs them: a source produces whole snapshots or
//! classified errors; staleness, merging and persistence are the federator's business.

use crate::catalog::SourceSnapshot;

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
