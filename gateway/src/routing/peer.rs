//! What a gateway knows of each peer: reachability and latency. Pure: time comes in as an
//! argument, so the state machine is tested with a simulated clock.

use std::time::{Duration, Instant};

/// Reachability of a peer as seen from the data path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Never tried.
    Unknown,
    /// The last open or handshake worked.
    Healthy,
    /// Failed; not used again before `retry_at` unless nothing else is left.
    Down { retry_at: Instant },
}

/// Per-peer state kept across connections.
#[derive(Debug, Clone)]
pub struct PeerState {
    pub health: Health,
    pub consecutive_failures: u32,
    /// Smoothed RTT (QUIC's estimate, else open latency), EWMA.
    pub srtt: Option<Duration>,
    pub opens_ok: u64,
    pub opens_failed: u64,
    pub last_error: Option<String>,
}

impl Default for PeerState {
    fn default() -> Self {
        PeerState {
            health: Health::Unknown,
            consecutive_failures: 0,
            srtt: None,
            opens_ok: 0,
            opens_failed: 0,
            last_error: None,
        }
    }
}

/// Weight of a new RTT sample in the moving average (as TCP's SRTT, 1/8).
const EWMA_NEW: f64 = 0.125;
/// Backoff doubles per consecutive failure up to this many times the base.
const MAX_BACKOFF_FACTOR: u32 = 32;

impl PeerState {
    /// A stream open (or handshake) succeeded.
    pub fn on_success(&mut self) {
        self.health = Health::Healthy;
        self.consecutive_failures = 0;
        self.opens_ok += 1;
    }

    /// Feeds a latency sample into the smoothed RTT.
    pub fn on_rtt(&mut self, sample: Duration) {
        self.srtt = Some(match self.srtt {
            None => sample,
            Some(s) => s.mul_f64(1.0 - EWMA_NEW) + sample.mul_f64(EWMA_NEW),
        });
    }

    /// A connect, handshake or open failed: down, with exponential backoff from `base`.
    pub fn on_failure(&mut self, reason: String, now: Instant, base: Duration) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.opens_failed += 1;
        let factor = 1u32 << (self.consecutive_failures - 1).min(MAX_BACKOFF_FACTOR.trailing_zeros());
        self.health = Health::Down { retry_at: now + base * factor };
        self.last_error = Some(reason);
    }

    /// Whether the peer should be tried in the normal order (not backing off).
    pub fn usable(&self, now: Instant) -> bool {
        match self.health {
            Health::Unknown | Health::Healthy => true,
            Health::Down { retry_at } => now >= retry_at,
        }
    }

    /// A short name for `/status` and metrics.
    pub fn label(&self, now: Instant) -> &'static str {
        match self.health {
            Health::Unknown => "unknown",
            Health::Healthy => "healthy",
            Health::Down { .. } if self.usable(now) => "retrying",
            Health::Down { .. } => "down",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_backs_off_exponentially_and_caps() {
        let t0 = Instant::now();
        let base = Duration::from_millis(100);
        let mut p = PeerState::default();
        assert!(p.usable(t0));
        p.on_failure("refused".into(), t0, base);
        assert!(!p.usable(t0));
        assert!(p.usable(t0 + base));
        assert_eq!(p.label(t0), "down");
        assert_eq!(p.label(t0 + base), "retrying");
        for _ in 0..10 {
            p.on_failure("refused".into(), t0, base);
        }
        assert!(!p.usable(t0 + base * 31));
        assert!(p.usable(t0 + base * 32), "backoff is capped at 32x");
        assert_eq!(p.opens_failed, 11);
    }

    #[test]
    fn success_resets_failures() {
        let t0 = Instant::now();
        let mut p = PeerState::default();
        p.on_failure("x".into(), t0, Duration::from_secs(1));
        p.on_success();
        assert_eq!(p.consecutive_failures, 0);
        assert!(p.usable(t0));
        assert_eq!(p.health, Health::Healthy);
        p.on_failure("y".into(), t0, Duration::from_secs(1));
        assert!(p.usable(t0 + Duration::from_secs(1)), "backoff restarts at base");
    }

    #[test]
    fn srtt_is_smoothed() {
        let mut p = PeerState::default();
        p.on_rtt(Duration::from_millis(80));
        assert_eq!(p.srtt, Some(Duration::from_millis(80)));
        p.on_rtt(Duration::from_millis(160));
        assert_eq!(p.srtt, Some(Duration::from_millis(90)));
    }
}
