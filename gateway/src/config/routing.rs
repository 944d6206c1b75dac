//! `[routing]`: how peers are probed, when they count as down or back, and how the choice
//! among healthy clusters is made (docs/routing.md explains every knob).

use std::time::Duration;

use serde::Deserialize;
use skybridge_api::config::{ConfigError, duration, invalid};
use skybridge_api::routing::{ChoiceConfig, HealthConfig};

/// Route choice and peer health knobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSection {
    /// Local endpoints before any remote cluster.
    #[serde(default = "defaults::prefer_local")]
    pub prefer_local: bool,
    /// How often every peer is probed through the tunnel.
    #[serde(default = "defaults::probe_interval", with = "duration")]
    pub probe_interval: Duration,
    /// A probe not answered within this is missed (the peer becomes suspect).
    #[serde(default = "defaults::probe_timeout", with = "duration")]
    pub probe_timeout: Duration,
    /// Consecutive missed probes that take a suspect peer down.
    #[serde(default = "defaults::down_after")]
    pub down_after: u32,
    /// Consecutive good probes a down peer needs before it takes traffic again.
    #[serde(default = "defaults::recover_after")]
    pub recover_after: u32,
    /// Minimum time a peer stays down; doubles each time it fails again soon after recovering.
    #[serde(default = "defaults::hold_down", with = "duration")]
    pub hold_down: Duration,
    #[serde(default = "defaults::max_hold_down", with = "duration")]
    pub max_hold_down: Duration,
    /// Clusters within this fraction of the best RTT share new connections.
    #[serde(default = "defaults::share_margin")]
    pub share_margin: f64,
    #[serde(default = "defaults::share_floor", with = "duration")]
    pub share_floor: Duration,
    /// The RTT peers are ranked by moves only when the measurement drifts this far.
    #[serde(default = "defaults::rank_hysteresis")]
    pub rank_hysteresis: f64,
    /// An open slower than this many smoothed RTTs (but at least `slow_open_min`, at most
    /// `limits.open_timeout`) is abandoned and tried on the next candidate.
    #[serde(default = "defaults::slow_open_factor")]
    pub slow_open_factor: f64,
    #[serde(default = "defaults::slow_open_min", with = "duration")]
    pub slow_open_min: Duration,
    /// `auto`: fall back to TLS over TCP for a peer whose QUIC goes unanswered while TCP works;
    /// `off`: QUIC only; `always`: TLS over TCP to every peer (a path known to block UDP).
    #[serde(default)]
    pub tcp_fallback: TcpFallbackMode,
    /// A QUIC dial that has heard nothing from the peer this long starts a TCP dial beside it.
    #[serde(default = "defaults::tcp_fallback_after", with = "duration")]
    pub tcp_fallback_after: Duration,
    /// While on TCP, how often QUIC is tried again.
    #[serde(default = "defaults::quic_probe_interval", with = "duration")]
    pub quic_probe_interval: Duration,
    /// Successful QUIC probes in a row that move new streams back to QUIC.
    #[serde(default = "defaults::quic_recover_after")]
    pub quic_recover_after: u32,
    /// A fallback this soon after a recovery doubles the QUIC probe interval.
    #[serde(default = "defaults::quic_flap_window", with = "duration")]
    pub quic_flap_window: Duration,
    /// How often (±20 % jitter) every remote service port is proven reachable: its hosting
    /// clusters' gateways each connect to one endpoint (docs/routing.md, "Reachability proofs").
    #[serde(default = "defaults::proof_interval", with = "duration")]
    pub proof_interval: Duration,
    /// Proofs per round at most (the rest wait for the next rounds, in turn).
    #[serde(default = "defaults::proofs_per_round")]
    pub proofs_per_round: usize,
}

/// `routing.tcp_fallback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TcpFallbackMode {
    #[default]
    Auto,
    Off,
    Always,
}

impl Default for RoutingSection {
    fn default() -> Self {
        toml::from_str("").expect("all routing keys have defaults")
    }
}

/// Defaults, also quoted in docs/routing.md.
pub(super) mod defaults {
    use std::time::Duration;

    use skybridge_api::routing::{ChoiceConfig, HealthConfig};

    pub(crate) fn prefer_local() -> bool {
        ChoiceConfig::default().prefer_local
    }
    pub(crate) fn probe_interval() -> Duration {
        Duration::from_secs(1)
    }
    pub(crate) fn probe_timeout() -> Duration {
        Duration::from_millis(500)
    }
    pub(crate) fn down_after() -> u32 {
        HealthConfig::default().down_after
    }
    pub(crate) fn recover_after() -> u32 {
        HealthConfig::default().recover_after
    }
    pub(crate) fn hold_down() -> Duration {
        HealthConfig::default().hold_down
    }
    pub(crate) fn max_hold_down() -> Duration {
        HealthConfig::default().max_hold_down
    }
    pub(crate) fn share_margin() -> f64 {
        ChoiceConfig::default().share_margin
    }
    pub(crate) fn share_floor() -> Duration {
        ChoiceConfig::default().share_floor
    }
    pub(crate) fn rank_hysteresis() -> f64 {
        HealthConfig::default().rank_hysteresis
    }
    pub(crate) fn slow_open_factor() -> f64 {
        4.0
    }
    pub(crate) fn slow_open_min() -> Duration {
        Duration::from_millis(250)
    }
    pub(crate) fn tcp_fallback_after() -> Duration {
        Duration::from_secs(1)
    }
    pub(crate) fn quic_probe_interval() -> Duration {
        Duration::from_secs(30)
    }
    pub(crate) fn quic_recover_after() -> u32 {
        2
    }
    pub(crate) fn quic_flap_window() -> Duration {
        Duration::from_secs(300)
    }
    pub(crate) fn proof_interval() -> Duration {
        Duration::from_secs(30)
    }
    pub(crate) fn proofs_per_round() -> usize {
        256
    }
}

/// How long one open may wait for the receiver's status: see [`RoutingSection::open_timeouts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenTimeouts {
    /// Past this the open is abandoned for the next candidate...
    pub attempt: Duration,
    /// ...unless the peer was heard from meanwhile and no candidate is left: then up to this.
    pub patience: Duration,
}

impl RoutingSection {
    /// The health state machine's knobs.
    pub fn health(&self) -> HealthConfig {
        HealthConfig {
            down_after: self.down_after,
            recover_after: self.recover_after,
            hold_down: self.hold_down,
            max_hold_down: self.max_hold_down,
            rank_hysteresis: self.rank_hysteresis,
            ..HealthConfig::default()
        }
    }

    /// The transport fallback's knobs.
    pub fn fallback(&self) -> crate::tunnel::fallback::FallbackConfig {
        crate::tunnel::fallback::FallbackConfig {
            probe_interval: self.quic_probe_interval,
            recover_after: self.quic_recover_after,
            flap_window: self.quic_flap_window,
        }
    }

    /// The choice's knobs.
    pub fn choice(&self) -> ChoiceConfig {
        ChoiceConfig { prefer_local: self.prefer_local, share_margin: self.share_margin, share_floor: self.share_floor }
    }

    /// How long one open to a peer with smoothed RTT `srtt` may take before the next candidate
    /// is tried; `cap` is `limits.open_timeout`.
    pub fn attempt_timeout(&self, srtt: Option<Duration>, cap: Duration) -> Duration {
        match srtt {
            Some(rtt) => rtt.mul_f64(self.slow_open_factor).max(self.slow_open_min).min(cap),
            None => cap,
        }
    }

    /// The attempt timeout, and how long a late status is still waited for when the peer was
    /// heard from during the attempt (it is alive, only busy) and `last`: no other candidate is
    /// left. Giving up on a slow open helps only when there is somewhere else to go; a burst of
    /// opens queued at a busy peer is slow, not dead. A silent connection is still abandoned at
    /// the attempt timeout (and redialled).
    pub fn open_timeouts(&self, srtt: Option<Duration>, cap: Duration, last: bool) -> OpenTimeouts {
        let attempt = self.attempt_timeout(srtt, cap);
        OpenTimeouts { attempt, patience: if last { cap } else { attempt } }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let (ms, s) = (Duration::from_millis(1), Duration::from_secs);
        for (key, d, min, max) in [
            ("routing.probe_interval", self.probe_interval, ms, s(60)),
            ("routing.probe_timeout", self.probe_timeout, ms, s(60)),
            ("routing.hold_down", self.hold_down, ms, s(600)),
            ("routing.max_hold_down", self.max_hold_down, ms, s(3600)),
            ("routing.share_floor", self.share_floor, Duration::ZERO, s(10)),
            ("routing.slow_open_min", self.slow_open_min, ms, s(60)),
            ("routing.tcp_fallback_after", self.tcp_fallback_after, ms, s(60)),
            ("routing.quic_probe_interval", self.quic_probe_interval, ms, s(3600)),
            ("routing.quic_flap_window", self.quic_flap_window, Duration::ZERO, s(86400)),
            ("routing.proof_interval", self.proof_interval, Duration::from_millis(100), s(86400)),
        ] {
            super::within(key, d, min, max)?;
        }
        if !(1..=100_000).contains(&self.proofs_per_round) {
            return Err(invalid("routing.proofs_per_round", self.proofs_per_round, "must be between 1 and 100000"));
        }
        if self.probe_timeout > self.probe_interval {
            return Err(invalid(
                "routing.probe_timeout",
                duration::format(self.probe_timeout),
                format!("must be at most routing.probe_interval ({})", duration::format(self.probe_interval)),
            ));
        }
        if self.max_hold_down < self.hold_down {
            return Err(invalid(
                "routing.max_hold_down",
                duration::format(self.max_hold_down),
                "must be at least routing.hold_down",
            ));
        }
        for (key, v) in [
            ("routing.down_after", self.down_after),
            ("routing.recover_after", self.recover_after),
            ("routing.quic_recover_after", self.quic_recover_after),
        ] {
            if !(1..=100).contains(&v) {
                return Err(invalid(key, v, "must be between 1 and 100"));
            }
        }
        for (key, v, hi) in [
            ("routing.share_margin", self.share_margin, 10.0),
            ("routing.rank_hysteresis", self.rank_hysteresis, 10.0),
            ("routing.slow_open_factor", self.slow_open_factor, 100.0),
        ] {
            if !(0.0..=hi).contains(&v) {
                return Err(invalid(key, v, format!("must be between 0 and {hi}")));
            }
        }
        if self.slow_open_factor < 1.0 {
            return Err(invalid("routing.slow_open_factor", self.slow_open_factor, "must be at least 1 (one RTT)"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_pure_defaults() {
        let r = RoutingSection::default();
        assert_eq!(r.health(), HealthConfig::default());
        assert_eq!(r.choice(), ChoiceConfig::default());
        r.validate().unwrap();
    }

    #[test]
    fn attempt_timeout_scales_with_rtt_within_bounds() {
        let r = RoutingSection::default();
        let cap = Duration::from_secs(2);
        assert_eq!(r.attempt_timeout(None, cap), cap);
        assert_eq!(r.attempt_timeout(Some(Duration::from_millis(1)), cap), r.slow_open_min);
        assert_eq!(r.attempt_timeout(Some(Duration::from_millis(100)), cap), Duration::from_millis(400));
        assert_eq!(r.attempt_timeout(Some(Duration::from_secs(1)), cap), cap);
    }

    #[test]
    fn only_the_last_candidate_is_waited_for_past_the_attempt() {
        let r = RoutingSection::default();
        let cap = Duration::from_secs(2);
        let fast = Some(Duration::from_millis(1));
        assert_eq!(r.open_timeouts(fast, cap, true), OpenTimeouts { attempt: r.slow_open_min, patience: cap });
        assert_eq!(
            r.open_timeouts(fast, cap, false),
            OpenTimeouts { attempt: r.slow_open_min, patience: r.slow_open_min }
        );
        assert_eq!(r.open_timeouts(None, cap, true), OpenTimeouts { attempt: cap, patience: cap });
    }

    #[test]
    fn errors_name_the_key() {
        let bad = |text: &str| toml::from_str::<RoutingSection>(text).unwrap().validate().unwrap_err().to_string();
        assert!(bad("probe_timeout = \"2s\"").contains("routing.probe_timeout"));
        assert!(bad("tcp_fallback_after = \"2m\"").contains("routing.tcp_fallback_after"));
        assert!(bad("quic_recover_after = 0").contains("routing.quic_recover_after"));
        assert!(bad("quic_probe_interval = \"0s\"").contains("routing.quic_probe_interval"));
        assert!(bad("recover_after = 0").contains("routing.recover_after"));
        assert!(bad("share_margin = -1.0").contains("routing.share_margin"));
        assert!(bad("slow_open_factor = 0.5").contains("routing.slow_open_factor"));
        assert!(bad("max_hold_down = \"100ms\"").contains("routing.max_hold_down"));
    }
}
