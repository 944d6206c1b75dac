//! `[limits]`: every timeout and bound of the data path, the tunnel's front door and the admin
//! server. Each has a default and a maximum checked at parse (docs/operations.md lists them), so
//! no configured value can overflow the arithmetic done with it.

use std::time::{Duration, Instant};

use serde::Deserialize;
use skybridge_api::config::{ConfigError, duration, invalid};
use skybridge_api::serve::HttpLimits;

use crate::tunnel::admission::AdmissionConfig;

/// Every timeout and bound of the data path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// How long a client may take to send its ClientHello or HTTP request head.
    #[serde(default = "defaults::peek_timeout", with = "duration")]
    pub peek_timeout: Duration,
    #[serde(default = "defaults::max_client_hello")]
    pub max_client_hello: usize,
    #[serde(default = "defaults::max_http_head")]
    pub max_http_head: usize,
    /// Concurrent client connections across all egress listeners, and concurrent ingress streams.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Accept queue of the egress TCP listeners (SNI, HTTP, port-mapped): connections the kernel completes
    /// before the gateway accepts them. A burst past it waits for a SYN retransmit (1 s), so
    /// the std/tokio default of 128 is too small; the kernel caps it at `net.core.somaxconn`.
    #[serde(default = "defaults::listen_backlog")]
    pub listen_backlog: usize,
    #[serde(default = "defaults::max_streams_per_peer")]
    pub max_streams_per_peer: u32,
    #[serde(default = "defaults::max_stream_header")]
    pub max_stream_header: usize,
    /// QUIC connection idle timeout.
    #[serde(default = "defaults::idle_timeout", with = "duration")]
    pub idle_timeout: Duration,
    #[serde(default = "defaults::keep_alive", with = "duration")]
    pub keep_alive: Duration,
    #[serde(default = "defaults::handshake_timeout", with = "duration")]
    pub handshake_timeout: Duration,
    /// How long a sender waits for the status of one stream open.
    #[serde(default = "defaults::open_timeout", with = "duration")]
    pub open_timeout: Duration,
    /// How long a receiver waits for a stream header.
    #[serde(default = "defaults::header_timeout", with = "duration")]
    pub header_timeout: Duration,
    /// TCP connect to one local endpoint.
    #[serde(default = "defaults::connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// Total time one client connection may spend trying candidates.
    #[serde(default = "defaults::connect_budget", with = "duration")]
    pub connect_budget: Duration,
    /// How long SIGTERM waits for in-flight connections before closing them.
    #[serde(default = "defaults::drain_deadline", with = "duration")]
    pub drain_deadline: Duration,
    /// How long an endpoint that refused a connection is skipped.
    #[serde(default = "defaults::eject_duration", with = "duration")]
    pub eject_duration: Duration,
    #[serde(default = "defaults::connections_per_peer")]
    pub connections_per_peer: usize,
    #[serde(default = "defaults::stream_window")]
    pub stream_window: u32,
    #[serde(default = "defaults::connection_window")]
    pub connection_window: u32,
    /// Read-buffer bytes all relays together may grow to past their 16 KiB minimum (bulk
    /// transfers read up to 256 KiB at a time); idle connections hold none.
    #[serde(default = "defaults::relay_buffer_budget")]
    pub relay_buffer_budget: usize,
    /// Tunnel UDP socket buffers (SO_RCVBUF/SO_SNDBUF). Too small a receive buffer drops
    /// datagrams in bursts, which QUIC's congestion control reads as loss.
    #[serde(default = "defaults::udp_buffer")]
    pub udp_recv_buffer: usize,
    #[serde(default = "defaults::udp_buffer")]
    pub udp_send_buffer: usize,
    /// Tunnel handshakes in progress at once (from anyone: they are not authenticated yet).
    #[serde(default = "defaults::max_handshakes")]
    pub max_handshakes: usize,
    /// Tunnel handshakes in progress at once from one source (an IPv4 address or IPv6 /64).
    #[serde(default = "defaults::max_handshakes_per_source")]
    pub max_handshakes_per_source: usize,
    /// From this share of `max_handshakes` in progress on, new handshakes from addresses that
    /// have not proved they receive our packets get a QUIC Retry first; 0 = always.
    #[serde(default = "defaults::handshake_retry_load")]
    pub handshake_retry_load: f64,
    /// Logs about unauthenticated noise (failed handshakes, refusals) are summarised once per
    /// this interval.
    #[serde(default = "defaults::noise_log_interval", with = "duration")]
    pub noise_log_interval: Duration,
    /// Admin server connections at once; one more is answered 503 and closed.
    #[serde(default = "defaults::admin_max_connections")]
    pub admin_max_connections: usize,
    /// Services with their own traffic counters (metrics and reports); connections of services
    /// seen after these are counted under `other`.
    #[serde(default = "defaults::traffic_services")]
    pub traffic_services: usize,
    /// An admin connection must deliver a complete request head within this (of opening, or of
    /// the previous response).
    #[serde(default = "defaults::admin_header_timeout", with = "duration")]
    pub admin_header_timeout: Duration,
    /// An admin connection on which nothing moves for this long is closed.
    #[serde(default = "defaults::admin_idle_timeout", with = "duration")]
    pub admin_idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        toml::from_str("").expect("all limits have defaults")
    }
}

/// Defaults, also quoted in docs/operations.md.
pub(super) mod defaults {
    use std::time::Duration;

    pub(crate) fn peek_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub(crate) fn max_client_hello() -> usize {
        16 * 1024
    }
    pub(crate) fn max_http_head() -> usize {
        16 * 1024
    }
    pub(crate) fn max_connections() -> usize {
        10_000
    }
    pub(crate) fn listen_backlog() -> usize {
        skybridge_api::serve::DEFAULT_LISTEN_BACKLOG
    }
    pub(crate) fn max_streams_per_peer() -> u32 {
        1024
    }
    pub(crate) fn max_stream_header() -> usize {
        4096
    }
    pub(crate) fn idle_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub(crate) fn keep_alive() -> Duration {
        Duration::from_secs(5)
    }
    pub(crate) fn handshake_timeout() -> Duration {
        Duration::from_secs(3)
    }
    pub(crate) fn open_timeout() -> Duration {
        Duration::from_secs(2)
    }
    pub(crate) fn header_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub(crate) fn connect_timeout() -> Duration {
        Duration::from_secs(2)
    }
    pub(crate) fn connect_budget() -> Duration {
        Duration::from_secs(5)
    }
    pub(crate) fn drain_deadline() -> Duration {
        Duration::from_secs(20)
    }
    pub(crate) fn eject_duration() -> Duration {
        Duration::from_secs(10)
    }
    pub(crate) fn connections_per_peer() -> usize {
        2
    }
    pub(crate) fn stream_window() -> u32 {
        8 * 1024 * 1024
    }
    pub(crate) fn connection_window() -> u32 {
        64 * 1024 * 1024
    }
    pub(crate) fn relay_buffer_budget() -> usize {
        256 * 1024 * 1024
    }
    pub(crate) fn udp_buffer() -> usize {
        4 * 1024 * 1024
    }
    /// 128 per CPU core, from 128 to 1024: a completed handshake takes about one round trip,
    /// so even 128 admit thousands of legitimate handshakes a second, while each one in
    /// progress holds roughly 100 KB.
    pub(crate) fn max_handshakes() -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (128 * cores).clamp(128, 1024)
    }
    pub(crate) fn max_handshakes_per_source() -> usize {
        16
    }
    pub(crate) fn handshake_retry_load() -> f64 {
        0.5
    }
    pub(crate) fn noise_log_interval() -> Duration {
        Duration::from_secs(10)
    }
    pub(crate) fn admin_max_connections() -> usize {
        256
    }
    pub(crate) fn traffic_services() -> usize {
        100
    }
    pub(crate) fn admin_header_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub(crate) fn admin_idle_timeout() -> Duration {
        Duration::from_secs(60)
    }
}

const MS: Duration = Duration::from_millis(1);
const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Checks that a duration key is within `[min, max]`; the error names key, value and bounds.
pub(crate) fn within(key: &str, d: Duration, min: Duration, max: Duration) -> Result<(), ConfigError> {
    if d < min || d > max {
        let max = duration::format(max);
        let why = match min {
            m if m.is_zero() => format!("must be at most {max}"),
            m if m == MS => format!("must be positive and at most {max}"),
            m => format!("must be at least {} and at most {max}", duration::format(m)),
        };
        return Err(invalid(key, duration::format(d), why));
    }
    Ok(())
}

/// `now + d`, saturating far in the future instead of panicking on overflow.
pub fn deadline(now: Instant, d: Duration) -> Instant {
    // Thirty years is "never" for a process; it is the fallback only if `d` itself overflows.
    now.checked_add(d).or_else(|| now.checked_add(secs(30 * 365 * 86_400))).unwrap_or(now)
}

impl Limits {
    /// Duration keys with their bounds: (key, value, min, max).
    fn durations(&self) -> [(&'static str, Duration, Duration, Duration); 13] {
        let zero = Duration::ZERO;
        [
            ("limits.peek_timeout", self.peek_timeout, MS, secs(300)),
            ("limits.idle_timeout", self.idle_timeout, MS, secs(3600)),
            ("limits.keep_alive", self.keep_alive, zero, secs(600)),
            ("limits.handshake_timeout", self.handshake_timeout, MS, secs(60)),
            ("limits.open_timeout", self.open_timeout, MS, secs(60)),
            ("limits.header_timeout", self.header_timeout, MS, secs(60)),
            ("limits.connect_timeout", self.connect_timeout, MS, secs(60)),
            ("limits.connect_budget", self.connect_budget, MS, secs(300)),
            ("limits.drain_deadline", self.drain_deadline, zero, secs(3600)),
            ("limits.eject_duration", self.eject_duration, zero, secs(3600)),
            ("limits.noise_log_interval", self.noise_log_interval, secs(1), secs(3600)),
            ("limits.admin_header_timeout", self.admin_header_timeout, MS, secs(300)),
            ("limits.admin_idle_timeout", self.admin_idle_timeout, MS, secs(3600)),
        ]
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (key, d, min, max) in self.durations() {
            within(key, d, min, max)?;
        }
        if !self.keep_alive.is_zero() && self.keep_alive >= self.idle_timeout {
            return Err(invalid(
                "limits.keep_alive",
                duration::format(self.keep_alive),
                format!("must be shorter than limits.idle_timeout ({})", duration::format(self.idle_timeout)),
            ));
        }
        let ranges: [(&str, usize, usize, usize); 14] = [
            ("limits.traffic_services", self.traffic_services, 0, 10_000),
            ("limits.listen_backlog", self.listen_backlog, 1, 65_535),
            ("limits.relay_buffer_budget", self.relay_buffer_budget, 0, 1 << 36),
            ("limits.udp_recv_buffer", self.udp_recv_buffer, 64 * 1024, 1 << 30),
            ("limits.udp_send_buffer", self.udp_send_buffer, 64 * 1024, 1 << 30),
            ("limits.max_client_hello", self.max_client_hello, 512, 1 << 20),
            ("limits.max_http_head", self.max_http_head, 256, 1 << 20),
            ("limits.max_connections", self.max_connections, 1, 10_000_000),
            ("limits.max_stream_header", self.max_stream_header, 64, 65_535),
            ("limits.connections_per_peer", self.connections_per_peer, 1, 64),
            ("limits.max_streams_per_peer", self.max_streams_per_peer as usize, 1, 1 << 20),
            ("limits.max_handshakes", self.max_handshakes, 1, 100_000),
            ("limits.max_handshakes_per_source", self.max_handshakes_per_source, 1, 100_000),
            ("limits.admin_max_connections", self.admin_max_connections, 1, 100_000),
        ];
        for (key, v, lo, hi) in ranges {
            if !(lo..=hi).contains(&v) {
                return Err(invalid(key, v, format!("must be between {lo} and {hi}")));
            }
        }
        if self.stream_window < 64 * 1024 || self.connection_window < self.stream_window {
            return Err(invalid(
                "limits.stream_window",
                self.stream_window,
                "must be at least 65536 and at most limits.connection_window",
            ));
        }
        if self.connection_window > 1 << 30 {
            return Err(invalid(
                "limits.connection_window",
                self.connection_window,
                "must be at most 1073741824 (1 GiB)",
            ));
        }
        // `contains` is false for NaN too.
        if !(0.0..=1.0).contains(&self.handshake_retry_load) {
            return Err(invalid("limits.handshake_retry_load", self.handshake_retry_load, "must be between 0 and 1"));
        }
        Ok(())
    }

    /// The tunnel's handshake admission bounds.
    pub fn admission(&self) -> AdmissionConfig {
        AdmissionConfig::new(self.max_handshakes, self.max_handshakes_per_source, self.handshake_retry_load)
    }

    /// The admin server's bounds.
    pub fn admin_http(&self) -> HttpLimits {
        HttpLimits {
            max_connections: self.admin_max_connections,
            header_timeout: self.admin_header_timeout,
            idle_timeout: self.admin_idle_timeout,
        }
    }
}
