//! Which transport new streams to one peer use: QUIC first, TLS over TCP when QUIC goes
//! unanswered while TCP to the same address works, and back to QUIC once background probes
//! show it works again. Pure: time comes in as an argument, and the pool does the dialling.
//!
//! No flapping: recovery needs `recover_after` successful QUIC probes in a row, and a peer that
//! falls back again within `flap_window` of recovering waits twice as long before the next
//! probe (up to 8 × `probe_interval`).

use std::time::{Duration, Instant};

/// The transport of a connection or a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// QUIC over UDP.
    #[default]
    Quic,
    /// TLS 1.3 over TCP, HTTP/2 framing.
    Tcp,
}

impl Transport {
    /// A metric label and the name in `/status` and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Quic => "quic",
            Transport::Tcp => "tcp",
        }
    }

    /// The name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Quic => "QUIC",
            Transport::Tcp => "TLS-over-TCP",
        }
    }
}

/// Settings of the choice (`[routing]` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FallbackConfig {
    /// While on TCP, a QUIC probe this often (doubled after a flap).
    pub probe_interval: Duration,
    /// Successful QUIC probes in a row that move new streams back to QUIC.
    pub recover_after: u32,
    /// A fallback within this long of a recovery counts as a flap.
    pub flap_window: Duration,
}

/// The longest probe interval a flapping peer backs off to, as a multiple of `probe_interval`.
const MAX_BACKOFF: u32 = 8;

/// A change of transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch {
    pub from: Transport,
    pub to: Transport,
}

/// One peer's transport choice.
#[derive(Debug, Clone)]
pub struct TransportChoice {
    current: Transport,
    /// When `current` was chosen (`None`: QUIC from the start).
    since: Option<Instant>,
    /// While on TCP: when the next QUIC probe is due.
    next_probe: Option<Instant>,
    /// While on TCP: the probe interval now in force.
    interval: Duration,
    /// Successful QUIC probes in a row while on TCP.
    confirmed: u32,
    last_recovery: Option<Instant>,
    /// Why the last fallback happened.
    reason: Option<String>,
}

impl Default for TransportChoice {
    fn default() -> Self {
        TransportChoice {
            current: Transport::Quic,
            since: None,
            next_probe: None,
            interval: Duration::ZERO,
            confirmed: 0,
            last_recovery: None,
            reason: None,
        }
    }
}

impl TransportChoice {
    /// The transport new streams use.
    pub fn current(&self) -> Transport {
        self.current
    }

    /// How long the current transport has been in use (`None` for QUIC from the start).
    pub fn for_how_long(&self, now: Instant) -> Option<Duration> {
        self.since.map(|s| now.saturating_duration_since(s))
    }

    /// Why the peer is on TCP, if it is.
    pub fn reason(&self) -> Option<&str> {
        (self.current == Transport::Tcp).then_some(self.reason.as_deref()).flatten()
    }

    /// The probe interval in force while on TCP.
    pub fn probe_interval(&self) -> Option<Duration> {
        (self.current == Transport::Tcp).then_some(self.interval)
    }

    /// QUIC went unanswered (or timed out) while a TLS handshake over TCP to the same address
    /// completed. Not for a QUIC handshake that was *rejected*: that is an error, not blocking.
    pub fn on_quic_unanswered(&mut self, reason: String, now: Instant, cfg: &FallbackConfig) -> Option<Switch> {
        if self.current == Transport::Tcp {
            return None;
        }
        let flapped = self.last_recovery.is_some_and(|r| now.saturating_duration_since(r) < cfg.flap_window);
        let max = cfg.probe_interval.saturating_mul(MAX_BACKOFF);
        self.interval = match flapped {
            true => self.interval.max(cfg.probe_interval).saturating_mul(2).min(max),
            false => cfg.probe_interval,
        };
        self.current = Transport::Tcp;
        self.since = Some(now);
        self.next_probe = now.checked_add(self.interval);
        self.confirmed = 0;
        self.reason = Some(reason);
        Some(Switch { from: Transport::Quic, to: Transport::Tcp })
    }

    /// Whether a QUIC probe should run now (only while on TCP). After a successful probe the
    /// next one is due at once, so confirmation takes `recover_after` probe rounds.
    pub fn quic_probe_due(&self, now: Instant) -> bool {
        self.current == Transport::Tcp && self.next_probe.is_none_or(|at| now >= at)
    }

    /// The result of a QUIC probe (a handshake and a probe stream answered) while on TCP.
    pub fn on_quic_probe(&mut self, ok: bool, now: Instant, cfg: &FallbackConfig) -> Option<Switch> {
        if self.current != Transport::Tcp {
            return None;
        }
        if !ok {
            self.confirmed = 0;
            self.next_probe = now.checked_add(self.interval);
            return None;
        }
        self.confirmed += 1;
        if self.confirmed < cfg.recover_after.max(1) {
            self.next_probe = Some(now);
            return None;
        }
        self.current = Transport::Quic;
        self.since = Some(now);
        self.next_probe = None;
        self.confirmed = 0;
        self.last_recovery = Some(now);
        Some(Switch { from: Transport::Tcp, to: Transport::Quic })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: FallbackConfig = FallbackConfig {
        probe_interval: Duration::from_secs(30),
        recover_after: 2,
        flap_window: Duration::from_secs(300),
    };

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn falls_back_probes_on_the_interval_and_recovers_after_confirmation() {
        let t0 = Instant::now();
        let mut c = TransportChoice::default();
        assert_eq!(c.current(), Transport::Quic);
        assert!(!c.quic_probe_due(t0), "no QUIC probing while on QUIC");
        let sw = c.on_quic_unanswered("no answer".into(), t0, &CFG);
        assert_eq!(sw, Some(Switch { from: Transport::Quic, to: Transport::Tcp }));
        assert_eq!(c.reason(), Some("no answer"));
        assert_eq!(c.on_quic_unanswered("again".into(), t0, &CFG), None, "already on TCP");
        assert!(!c.quic_probe_due(t0 + s(29)));
        assert!(c.quic_probe_due(t0 + s(30)));
        // A failed probe waits a whole interval again.
        assert_eq!(c.on_quic_probe(false, t0 + s(30), &CFG), None);
        assert!(!c.quic_probe_due(t0 + s(59)) && c.quic_probe_due(t0 + s(60)));
        // One success is not enough; the confirming probe is due at once.
        assert_eq!(c.on_quic_probe(true, t0 + s(60), &CFG), None);
        assert!(c.quic_probe_due(t0 + s(60)));
        // A failure in between starts the confirmation over.
        assert_eq!(c.on_quic_probe(false, t0 + s(61), &CFG), None);
        assert_eq!(c.on_quic_probe(true, t0 + s(91), &CFG), None);
        let back = c.on_quic_probe(true, t0 + s(92), &CFG);
        assert_eq!(back, Some(Switch { from: Transport::Tcp, to: Transport::Quic }));
        assert_eq!(c.current(), Transport::Quic);
        assert_eq!(c.reason(), None);
        assert_eq!(c.for_how_long(t0 + s(100)), Some(s(8)));
    }

    #[test]
    fn a_flapping_peer_backs_its_probes_off_up_to_a_cap() {
        let t0 = Instant::now();
        let mut c = TransportChoice::default();
        let mut now = t0;
        let mut intervals = Vec::new();
        for _ in 0..6 {
            c.on_quic_unanswered("blocked".into(), now, &CFG);
            intervals.push(c.probe_interval().unwrap().as_secs());
            now += c.probe_interval().unwrap();
            c.on_quic_probe(true, now, &CFG);
            now += s(1);
            assert!(c.on_quic_probe(true, now, &CFG).is_some());
            now += s(10);
        }
        assert_eq!(intervals, vec![30, 60, 120, 240, 240, 240]);
        // Stable on QUIC for longer than the flap window: back to the base interval.
        now += s(301);
        c.on_quic_unanswered("blocked".into(), now, &CFG);
        assert_eq!(c.probe_interval(), Some(s(30)));
    }

    #[test]
    fn recover_after_zero_means_one_probe() {
        let t0 = Instant::now();
        let cfg = FallbackConfig { recover_after: 0, ..CFG };
        let mut c = TransportChoice::default();
        c.on_quic_unanswered("x".into(), t0, &cfg);
        assert!(c.on_quic_probe(true, t0 + s(30), &cfg).is_some());
    }

    #[test]
    fn probe_results_on_quic_change_nothing() {
        let t0 = Instant::now();
        let mut c = TransportChoice::default();
        assert_eq!(c.on_quic_probe(true, t0, &CFG), None);
        assert_eq!(c.on_quic_probe(false, t0, &CFG), None);
        assert_eq!(c.current(), Transport::Quic);
        assert_eq!(c.for_how_long(t0), None);
    }
}
