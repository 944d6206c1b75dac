//! Error types at the module boundary and the mapping of Kubernetes API failures onto the
//! source contract's [`ErrorKind`]s, with messages that say what the operator should check.

use kube::core::Status;
use skybridge_api::source::{ErrorKind, SourceError};

use super::client::TokenError;

/// Why a cluster source could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The API server URL does not parse.
    #[error("invalid Kubernetes API server URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA bundle is not PEM or holds no certificate.
    #[error("invalid CA bundle for the Kubernetes API server: {0}")]
    BadCa(String),
    /// kube could not build an HTTP client from the settings (TLS set-up).
    #[error("cannot build a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// What a watch loop reports about one failed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The requested resourceVersion or continue token is too old: re-list, not an error.
    Gone,
    /// The resource type is not served (404): for ServiceExport groups, "no exports".
    NotServed(SourceError),
    /// Anything else, classified for the operator.
    Other(SourceError),
}

pub(crate) use crate::error_chain as chain;

/// Classifies an API `Status` (an error response or a watch ERROR event).
pub(crate) fn from_status(status: &Status, what: &str, server: &str) -> Failure {
    let msg = if status.message.is_empty() { status.reason.as_str() } else { status.message.as_str() };
    let code = status.code;
    let e = |kind, text: String| Failure::Other(SourceError::new(kind, text));
    match code {
        // kube reports a watch line that is JSON but not a decodable event as a Status
        // without a code; a real server's errors always carry one.
        0 => e(
            ErrorKind::Malformed,
            format!("{server} sent an undecodable watch event for {what}; kept the last good state"),
        ),
        410 => Failure::Gone,
        401 => e(
            ErrorKind::Auth,
            format!(
                "{server} rejected the bearer token while reading {what} (401 {msg}); the token is missing, \
                 expired or revoked: check the cluster's token source"
            ),
        ),
        403 => e(
            ErrorKind::Auth,
            format!(
                "{server} forbids reading {what} (403 {msg}); grant the federator's identity get/list/watch \
                 on {what} (ClusterRole + ClusterRoleBinding)"
            ),
        ),
        404 => Failure::NotServed(SourceError::new(
            ErrorKind::NotFound,
            format!("{server} does not serve {what} (404 {msg}); check the API server URL and that the API is enabled"),
        )),
        429 => e(
            ErrorKind::Throttled,
            format!("{server} is rate-limiting requests for {what} (429 {msg}); retrying with backoff"),
        ),
        400 | 422 => e(
            ErrorKind::Malformed,
            format!("{server} refused the request for {what} ({code} {msg}); the server may be too old or too new"),
        ),
        _ => e(ErrorKind::Unavailable, format!("{server} failed a request for {what} ({code} {msg}); retrying")),
    }
}

/// Classifies a failed kube request.
pub(crate) fn from_kube(err: &kube::Error, what: &str, server: &str) -> Failure {
    let other = |kind, text: String| Failure::Other(SourceError::new(kind, text));
    match err {
        kube::Error::Api(status) => from_status(status, what, server),
        kube::Error::SerdeError(_) | kube::Error::FromUtf8(_) | kube::Error::LinesCodecMaxLineLengthExceeded => other(
            ErrorKind::Malformed,
            format!("{server} sent an undecodable response for {what}: {}; kept the last good state", chain(err)),
        ),
        kube::Error::Service(inner) if inner.downcast_ref::<TokenError>().is_some() => other(
            ErrorKind::Auth,
            format!("no bearer token for {server}: {}; check the cluster's token source", chain(inner.as_ref())),
        ),
        _ => other(
            ErrorKind::Unavailable,
            format!(
                "cannot read {what} from {server}: {}; check the URL, the network path and the CA bundle",
                chain(err)
            ),
        ),
    }
}

/// A request that did not answer within its deadline.
pub(crate) fn timed_out(what: &str, server: &str, secs: f64) -> Failure {
    Failure::Other(SourceError::new(
        ErrorKind::Unavailable,
        format!("{server} did not answer a request for {what} within {secs:.1}s; retrying"),
    ))
}

/// An error kind's precedence when several resources fail at once: the one the operator must
/// act on first comes first.
pub(crate) fn precedence(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Auth => 0,
        ErrorKind::NotFound => 1,
        ErrorKind::Malformed => 2,
        ErrorKind::Throttled => 3,
        ErrorKind::Unavailable => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> Status {
        Status::failure("boom", "Reason").with_code(code)
    }

    #[test]
    fn statuses_map_to_kinds() {
        let kind = |code| match from_status(&status(code), "services", "https://k") {
            Failure::Other(e) | Failure::NotServed(e) => Some(e.kind),
            Failure::Gone => None,
        };
        assert_eq!(kind(401), Some(ErrorKind::Auth));
        assert_eq!(kind(403), Some(ErrorKind::Auth));
        assert_eq!(kind(404), Some(ErrorKind::NotFound));
        assert_eq!(kind(429), Some(ErrorKind::Throttled));
        assert_eq!(kind(500), Some(ErrorKind::Unavailable));
        assert_eq!(kind(503), Some(ErrorKind::Unavailable));
        assert_eq!(kind(410), None);
    }
}
