//! Local endpoint choice: round robin with passive ejection. Pure; time comes in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Ejections of endpoints that recently refused connections.
#[derive(Debug, Default)]
pub struct Ejections {
    until: HashMap<SocketAddr, Instant>,
}

impl Ejections {
    /// The order to try `endpoints` in: starting at round-robin position `rr`, healthy ones
    /// first, then ejected ones (so that a service whose endpoints all failed recently is still
    /// tried rather than refused outright).
    /// Rotation is over the healthy endpoints only, so an ejected endpoint's turns are spread
    /// evenly rather than all falling to its neighbour.
    pub fn order(&self, endpoints: &[SocketAddr], rr: usize, now: Instant) -> Vec<SocketAddr> {
        let (mut ok, ejected): (Vec<_>, Vec<_>) = endpoints.iter().partition(|e| !self.is_ejected(e, now));
        if !ok.is_empty() {
            let k = rr % ok.len();
            ok.rotate_left(k);
        }
        ok.extend(ejected);
        ok
    }

    /// Whether `ep` is inside its ejection window.
    pub fn is_ejected(&self, ep: &SocketAddr, now: Instant) -> bool {
        self.until.get(ep).is_some_and(|t| now < *t)
    }

    /// `ep` refused or timed out: skip it for `duration` (saturating: a huge duration means
    /// for as long as the process runs, never a panic).
    pub fn eject(&mut self, ep: SocketAddr, now: Instant, duration: Duration) {
        self.until.insert(ep, crate::config::deadline(now, duration));
    }

    /// `ep` accepted a connection.
    pub fn restore(&mut self, ep: &SocketAddr) {
        self.until.remove(ep);
    }

    /// Forgets expired ejections so the map stays bounded by the endpoints that fail.
    pub fn prune(&mut self, now: Instant) {
        self.until.retain(|_, t| now < *t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps() -> Vec<SocketAddr> {
        (1..=3).map(|p| SocketAddr::from(([127, 0, 0, 1], p))).collect()
    }

    #[test]
    fn round_robin_rotates() {
        let e = Ejections::default();
        let now = Instant::now();
        assert_eq!(e.order(&eps(), 0, now), eps());
        assert_eq!(e.order(&eps(), 1, now)[0], eps()[1]);
        assert_eq!(e.order(&eps(), 5, now)[0], eps()[2]);
    }

    #[test]
    fn ejected_go_last_then_return() {
        let mut e = Ejections::default();
        let now = Instant::now();
        e.eject(eps()[0], now, Duration::from_secs(10));
        assert_eq!(e.order(&eps(), 0, now), vec![eps()[1], eps()[2], eps()[0]]);
        // The healthy two alternate evenly.
        let firsts: Vec<_> = (0..4).map(|rr| e.order(&eps(), rr, now)[0]).collect();
        assert_eq!(firsts, vec![eps()[1], eps()[2], eps()[1], eps()[2]]);
        let later = now + Duration::from_secs(10);
        assert_eq!(e.order(&eps(), 0, later), eps());
        e.prune(later);
        assert!(e.until.is_empty());
    }

    #[test]
    fn huge_ejection_saturates() {
        let mut e = Ejections::default();
        let now = Instant::now();
        e.eject(eps()[0], now, Duration::MAX);
        assert!(e.is_ejected(&eps()[0], now + Duration::from_secs(365 * 86_400)));
    }

    #[test]
    fn restore_clears_ejection() {
        let mut e = Ejections::default();
        let now = Instant::now();
        e.eject(eps()[1], now, Duration::from_secs(10));
        e.restore(&eps()[1]);
        assert!(!e.is_ejected(&eps()[1], now));
    }
}
