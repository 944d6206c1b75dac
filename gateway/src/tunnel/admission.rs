//! Admission of incoming tunnel connection attempts, decided from the first datagram before any
//! handshake state exists. Anyone on the internet can send Initials, so the number of
//! handshakes in progress is capped in total and per source; under load, sources must first
//! prove with a QUIC Retry that they receive our packets (a spoofed flood cannot), which costs
//! us one small stateless packet and them one round trip.
//!
//! The decision is pure ([`decide`]); [`Handshakes`] counts what is in progress.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::gauge::Gauge;

/// The bounds, from `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Handshakes in progress at once.
    pub max_handshakes: usize,
    /// Handshakes in progress at once from one source (at most `max_handshakes`).
    pub max_per_source: usize,
    /// In-progress count from which unvalidated attempts get a Retry (0 = always).
    pub retry_from: usize,
}

impl AdmissionConfig {
    /// Bounds from the configured values; `retry_load` is the share of `max_handshakes` in
    /// progress from which Retry is required.
    pub fn new(max_handshakes: usize, max_per_source: usize, retry_load: f64) -> Self {
        let max_handshakes = max_handshakes.max(1);
        let retry_from = (max_handshakes as f64 * retry_load.clamp(0.0, 1.0)).ceil() as usize;
        AdmissionConfig { max_handshakes, max_per_source: max_per_source.clamp(1, max_handshakes), retry_from }
    }
}

/// One connection attempt as seen before its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// The source proved it receives our packets (it echoed a Retry or NEW_TOKEN token).
    pub validated: bool,
    /// Handshakes in progress now, from anyone.
    pub in_flight: usize,
    /// Handshakes in progress now from this attempt's source.
    pub from_source: usize,
}

/// What to do with an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start the handshake.
    Accept,
    /// Answer with a Retry (stateless, smaller than the Initial); a real peer comes back
    /// validated at once.
    Retry,
    /// Say nothing and keep nothing: a validated source over its own cap.
    Ignore,
    /// Answer CONNECTION_REFUSED: a validated source while every slot is taken.
    Refuse,
}

impl Decision {
    /// A metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Accept => "accepted",
            Decision::Retry => "retry",
            Decision::Ignore => "per_source_limit",
            Decision::Refuse => "handshake_limit",
        }
    }

    /// Every decision, for pre-registering metric series.
    pub const ALL: [Decision; 4] = [Decision::Accept, Decision::Retry, Decision::Ignore, Decision::Refuse];
}

/// Decides one attempt.
///
/// An unvalidated source is never counted against a per-source cap on its claimed address
/// alone (anyone can spoof a peer's address to lock it out): over the cap, or under load, it
/// gets a Retry instead. Once validated, a source over its own cap is ignored (it costs
/// nothing, and a real peer retransmits its Initial), and one arriving while every slot is
/// taken is refused. Replies never exceed the Initial's size, so the front door cannot be used
/// to amplify traffic towards a spoofed address.
pub fn decide(cfg: &AdmissionConfig, a: Attempt) -> Decision {
    let over_source = a.from_source >= cfg.max_per_source;
    let under_load = a.in_flight >= cfg.retry_from;
    let full = a.in_flight >= cfg.max_handshakes;
    if !a.validated && (under_load || over_source || full) {
        Decision::Retry
    } else if over_source {
        Decision::Ignore
    } else if full {
        Decision::Refuse
    } else {
        Decision::Accept
    }
}

/// The unit a per-source cap applies to: an IPv4 address, or an IPv6 /64 (one host usually
/// has a whole /64 to pick addresses from).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
}

impl Source {
    /// The source of a remote address (IPv4-mapped IPv6 counts as IPv4).
    pub fn of(addr: SocketAddr) -> Source {
        match addr.ip().to_canonical() {
            IpAddr::V4(v4) => Source::V4(v4.octets()),
            IpAddr::V6(v6) => {
                let o = v6.octets();
                Source::V6Prefix(o[..8].try_into().expect("8 of 16 bytes"))
            }
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// Only sources with a handshake in progress: at most `max_handshakes` entries.
    by_source: HashMap<Source, usize>,
}

/// Handshakes in progress, in total and per source.
#[derive(Debug)]
pub struct Handshakes {
    cfg: AdmissionConfig,
    counts: Mutex<Counts>,
    gauge: Gauge,
}

/// One admitted handshake's slot; released when dropped.
#[derive(Debug)]
pub struct Slot {
    owner: Arc<Handshakes>,
    source: Source,
}

impl Handshakes {
    /// Counts against `cfg`, mirrored in `gauge`.
    pub fn new(cfg: AdmissionConfig, gauge: Gauge) -> Arc<Self> {
        Arc::new(Handshakes { cfg, counts: Mutex::default(), gauge })
    }

    /// Decides an attempt from `remote`; on [`Decision::Accept`] the slot is taken.
    pub fn admit(self: &Arc<Self>, remote: SocketAddr, validated: bool) -> Result<Slot, Decision> {
        let source = Source::of(remote);
        let mut c = self.counts.lock().expect("handshake counts lock");
        let from_source = c.by_source.get(&source).copied().unwrap_or(0);
        match decide(&self.cfg, Attempt { validated, in_flight: c.total, from_source }) {
            Decision::Accept => {
                c.total += 1;
                *c.by_source.entry(source).or_default() += 1;
                self.gauge.set(c.total as i64);
                Ok(Slot { owner: self.clone(), source })
            }
            d => Err(d),
        }
    }

    /// Handshakes in progress.
    pub fn in_flight(&self) -> usize {
        self.counts.lock().expect("handshake counts lock").total
    }

    /// Sources with a handshake in progress.
    pub fn sources(&self) -> usize {
        self.counts.lock().expect("handshake counts lock").by_source.len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.owner.counts.lock().expect("handshake counts lock");
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                c.by_source.remove(&self.source);
            }
        }
        self.owner.gauge.set(c.total as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: AdmissionConfig = AdmissionConfig { max_handshakes: 100, max_per_source: 10, retry_from: 50 };

    fn attempt(validated: bool, in_flight: usize, from_source: usize) -> Decision {
        decide(&CFG, Attempt { validated, in_flight, from_source })
    }

    #[test]
    fn quiet_times_accept_without_retry() {
        assert_eq!(attempt(false, 0, 0), Decision::Accept);
        assert_eq!(attempt(false, 49, 9), Decision::Accept);
        assert_eq!(attempt(true, 99, 9), Decision::Accept);
    }

    #[test]
    fn under_load_unvalidated_attempts_must_retry() {
        assert_eq!(attempt(false, 50, 0), Decision::Retry);
        assert_eq!(attempt(false, 100, 0), Decision::Retry);
        // Validated sources are admitted up to the cap, then refused.
        assert_eq!(attempt(true, 50, 0), Decision::Accept);
        assert_eq!(attempt(true, 100, 0), Decision::Refuse);
    }

    #[test]
    fn per_source_cap_retries_claims_and_ignores_proven_sources() {
        // A spoofer claiming a peer's address only makes the peer do one Retry round trip.
        assert_eq!(attempt(false, 10, 10), Decision::Retry);
        assert_eq!(attempt(true, 10, 10), Decision::Ignore);
        assert_eq!(attempt(true, 100, 10), Decision::Ignore, "per-source before the global refusal");
    }

    #[test]
    fn config_from_limits() {
        let c = AdmissionConfig::new(256, 16, 0.5);
        assert_eq!(c, AdmissionConfig { max_handshakes: 256, max_per_source: 16, retry_from: 128 });
        assert_eq!(AdmissionConfig::new(256, 16, 0.0).retry_from, 0, "always retry");
        assert_eq!(
            decide(&AdmissionConfig::new(256, 16, 0.0), Attempt { validated: false, in_flight: 0, from_source: 0 }),
            Decision::Retry
        );
        assert_eq!(
            AdmissionConfig::new(8, 16, 1.0),
            AdmissionConfig { max_handshakes: 8, max_per_source: 8, retry_from: 8 }
        );
    }

    #[test]
    fn slots_count_per_source_and_release_on_drop() {
        let h = Handshakes::new(AdmissionConfig::new(3, 2, 1.0), Gauge::default());
        let a: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let a2: SocketAddr = "192.0.2.1:2000".parse().unwrap();
        let b: SocketAddr = "[2001:db8::1]:1000".parse().unwrap();
        let b_same_64: SocketAddr = "[2001:db8::ffff]:1000".parse().unwrap();
        let s1 = h.admit(a, true).unwrap();
        let _s2 = h.admit(a2, true).unwrap();
        assert_eq!(h.admit(a, true).unwrap_err(), Decision::Ignore, "same IPv4, other port");
        let s3 = h.admit(b, true).unwrap();
        assert_eq!(h.in_flight(), 3);
        assert_eq!(h.admit(b_same_64, true).unwrap_err(), Decision::Refuse, "full");
        assert_eq!(h.admit(b_same_64, false).unwrap_err(), Decision::Retry);
        drop(s3);
        assert!(h.admit(b_same_64, true).is_ok(), "released on drop (and dropped again here)");
        drop(s1);
        assert_eq!(h.in_flight(), 1);
        assert_eq!(h.sources(), 1);
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:3000".parse().unwrap();
        assert_eq!(Source::of(mapped), Source::of(a));
    }
}
