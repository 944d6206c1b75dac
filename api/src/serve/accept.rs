//! Accept errors (EMFILE at the fd limit, ENOBUFS, ...) back off instead of spinning, and are
//! logged at most once per interval with a count.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::ratelog::{RateLimitedLog, Verdict};

/// Default accept queue of our TCP listeners: std's and tokio's 128 let a burst of new
/// connections overflow it, and the overflow waits a second for the SYN retransmit.
pub const DEFAULT_LISTEN_BACKLOG: usize = 4096;

/// A TCP listener on `addr` whose accept queue holds `backlog` completed connections (the
/// kernel caps it at `net.core.somaxconn`).
pub fn listen(addr: SocketAddr, backlog: usize) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(u32::try_from(backlog).unwrap_or(u32::MAX))
}

/// First pause after a failed accept.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause between accept attempts while they keep failing.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Accept errors are logged at most once per this interval.
pub const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Backoff and rate-limited logging for one accept loop.
#[derive(Debug)]
pub struct AcceptErrors {
    what: &'static str,
    delay: Duration,
    log: RateLimitedLog,
    failing_since: Option<Instant>,
}

impl AcceptErrors {
    /// For the accept loop of `what` (e.g. `"admin"`), named in the log lines.
    pub fn new(what: &'static str) -> Self {
        AcceptErrors {
            what,
            delay: ACCEPT_BACKOFF_MIN,
            log: RateLimitedLog::new(ACCEPT_LOG_INTERVAL),
            failing_since: None,
        }
    }

    /// Records a failed accept and returns how long to pause before the next one (doubling
    /// from [`ACCEPT_BACKOFF_MIN`] to [`ACCEPT_BACKOFF_MAX`]).
    pub fn failed(&mut self, e: &std::io::Error) -> Duration {
        use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
        // One client gave up before we accepted it: nothing is short, try the next at once.
        if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
            return Duration::ZERO;
        }
        let now = Instant::now();
        self.failing_since.get_or_insert(now);
        if let Verdict::Log { suppressed } = self.log.record(now, "accept_error") {
            let fd_limit = e.raw_os_error() == Some(24) || e.raw_os_error() == Some(23);
            tracing::warn!(
                listener = self.what,
                error = %e,
                more_since_last_line = suppressed.total(),
                hint = if fd_limit { "the process is at its open-file limit (ulimit -n / container nofile)" } else { "" },
                "accept failed; backing off"
            );
        }
        let d = self.delay;
        self.delay = (self.delay * 2).min(ACCEPT_BACKOFF_MAX);
        d
    }

    /// Records a successful accept: the backoff resets, and a run of failures is summarised.
    pub fn succeeded(&mut self) {
        let Some(since) = self.failing_since.take() else { return };
        self.delay = ACCEPT_BACKOFF_MIN;
        let more = self.log.flush(Instant::now() + ACCEPT_LOG_INTERVAL).map_or(0, |s| s.total());
        tracing::info!(
            listener = self.what,
            failed_for_ms = since.elapsed().as_millis() as u64,
            unlogged_errors = more,
            "accepting again"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut a = AcceptErrors::new("test");
        let e = std::io::Error::from_raw_os_error(24);
        let aborted = std::io::Error::from(std::io::ErrorKind::ConnectionAborted);
        assert_eq!(a.failed(&aborted), Duration::ZERO, "a client's reset is not a resource problem");
        let delays: Vec<_> = (0..10).map(|_| a.failed(&e)).collect();
        assert_eq!(delays[0], ACCEPT_BACKOFF_MIN);
        assert_eq!(delays[1], ACCEPT_BACKOFF_MIN * 2);
        assert_eq!(*delays.last().unwrap(), ACCEPT_BACKOFF_MAX);
        a.succeeded();
        assert_eq!(a.failed(&e), ACCEPT_BACKOFF_MIN);
    }
}
