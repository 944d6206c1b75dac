//! The health of the path to one peer gateway: a state machine fed by probes, stream opens and
//! RTT samples. Pure: every event carries the time, so tests drive it with a simulated clock.
//!
//! ```text
//!             probe missed                misses >= down_after
//!   Healthy ───────────────► Suspect ─────────────────────────► Down
//!      ▲  ◄─────────────────    │     failed open / dead conn    │  ▲
//!      │     probe or open ok   └───────────────────────────────►│  │ any failure
//!      │                                                          │  │
//!      │   recover_after consecutive good probes   first good probe after hold-down
//!      └────────────────────────────────────────── Probing ◄──────┘  │
//!                                                     └──────────────┘
//! ```
//! A failed open or a dead connection takes a healthy or suspect peer straight to Down. Each
//! return to Down within `stable_after` of recovering doubles the hold-down, so a peer that
//! keeps failing and recovering is kept out longer each time instead of pulling traffic back
//! and forth.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Knobs of the health state machine and the latency estimate (defaults in [`HealthConfig::default`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthConfig {
    /// Consecutive missed probes that take a suspect peer down.
    pub down_after: u32,
    /// Consecutive good probes a down peer needs to be healthy again.
    pub recover_after: u32,
    /// Minimum time in Down before probes count towards recovery; doubles per relapse.
    pub hold_down: Duration,
    /// Cap of the doubled hold-down.
    pub max_hold_down: Duration,
    /// Healthy this long and earlier relapses are forgiven.
    pub stable_after: Duration,
    /// Weight of a new sample in the smoothed RTT (TCP's SRTT uses 1/8).
    pub ewma: f64,
    /// The ranking RTT moves only when the smoothed RTT leaves it by this fraction (plus
    /// `rank_floor`): noise on a path does not reorder peers.
    pub rank_hysteresis: f64,
    /// Absolute part of the ranking hysteresis.
    pub rank_floor: Duration,
    /// Samples over which the smoothed RTT is a plain mean; only then is the peer ranked (until
    /// then it counts as unmeasured), so that a first estimate, often taken while everything is
    /// starting, does not stick.
    pub warmup: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            down_after: 2,
            recover_after: 3,
            hold_down: Duration::from_secs(1),
            max_hold_down: Duration::from_secs(30),
            stable_after: Duration::from_secs(60),
            ewma: 0.125,
            rank_hysteresis: 0.15,
            rank_floor: Duration::from_millis(1),
            warmup: 5,
        }
    }
}

/// Where a peer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Not heard from yet: used, after measured peers.
    Unknown,
    Healthy,
    /// Missed a probe: still used, after healthy peers.
    Suspect,
    /// Failed: used only when nothing else is left.
    Down,
    /// Answering probes again, not yet for long enough.
    Probing,
}

impl State {
    /// The name used in `/status`, reports and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "unknown",
            State::Healthy => "healthy",
            State::Suspect => "suspect",
            State::Down => "down",
            State::Probing => "probing",
        }
    }

    /// Parses [`State::as_str`]; older gateways also reported "retrying", which is Probing.
    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "unknown" => State::Unknown,
            "healthy" => State::Healthy,
            "suspect" => State::Suspect,
            "down" => State::Down,
            "probing" | "retrying" => State::Probing,
            _ => return None,
        })
    }

    /// How route choice treats a peer in this state.
    pub fn tier(self) -> Tier {
        match self {
            State::Healthy | State::Unknown => Tier::Good,
            State::Suspect => Tier::Suspect,
            State::Down | State::Probing => Tier::Out,
        }
    }
}

/// Route choice's view of health: good peers first, suspect ones next, the rest last resort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    Good,
    Suspect,
    Out,
}

/// One transition, for logs and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
}

/// The health and latency of the path to one peer.
#[derive(Debug, Clone)]
pub struct PathHealth {
    state: State,
    since: Option<Instant>,
    misses: u32,
    goods: u32,
    hold_until: Option<Instant>,
    relapses: u32,
    srtt: Option<Duration>,
    rank_rtt: Option<Duration>,
    samples: u32,
    /// The last reason the peer failed.
    pub last_error: Option<String>,
    pub opens_ok: u64,
    pub opens_failed: u64,
    pub probes_ok: u64,
    pub probes_missed: u64,
}

impl Default for PathHealth {
    fn default() -> Self {
        PathHealth {
            state: State::Unknown,
            since: None,
            misses: 0,
            goods: 0,
            hold_until: None,
            relapses: 0,
            srtt: None,
            rank_rtt: None,
            samples: 0,
            last_error: None,
            opens_ok: 0,
            opens_failed: 0,
            probes_ok: 0,
            probes_missed: 0,
        }
    }
}

impl PathHealth {
    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// When the current state was entered (None: never changed).
    pub fn since(&self) -> Option<Instant> {
        self.since
    }

    /// Smoothed RTT (EWMA of probe round trips).
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The RTT route choice ranks by: the smoothed RTT, moved only when it drifts past the
    /// hysteresis band.
    pub fn rank_rtt(&self) -> Option<Duration> {
        self.rank_rtt
    }

    /// A round-trip sample (a probe's); updates the smoothed and the ranking RTT.
    pub fn on_rtt(&mut self, sample: Duration, cfg: &HealthConfig) {
        self.samples = self.samples.saturating_add(1);
        // The mean of the first samples, then the EWMA (a bias-corrected start).
        let weight = cfg.ewma.max(1.0 / f64::from(self.samples));
        let srtt = match self.srtt {
            None => sample,
            Some(s) => s.mul_f64(1.0 - weight) + sample.mul_f64(weight),
        };
        self.srtt = Some(srtt);
        if self.samples < cfg.warmup {
            return;
        }
        self.rank_rtt = Some(match self.rank_rtt {
            Some(r) if srtt.abs_diff(r) <= r.mul_f64(cfg.rank_hysteresis) + cfg.rank_floor => r,
            _ => srtt,
        });
    }

    /// A probe came back: its round trip feeds the RTT, and it counts towards recovery.
    pub fn on_probe_ok(&mut self, rtt: Duration, now: Instant, cfg: &HealthConfig) -> Option<Transition> {
        self.probes_ok += 1;
        self.on_rtt(rtt, cfg);
        self.good(now, cfg)
    }

    /// A probe got no answer within its window (or was refused).
    pub fn on_probe_missed(&mut self, reason: String, now: Instant, cfg: &HealthConfig) -> Option<Transition> {
        self.probes_missed += 1;
        self.last_error = Some(reason);
        self.goods = 0;
        match self.state {
            State::Healthy => {
                self.misses = 1;
                if cfg.down_after <= 1 { self.down(now, cfg) } else { self.enter(State::Suspect, now) }
            }
            State::Suspect | State::Unknown => {
                self.misses += 1;
                if self.misses >= cfg.down_after || self.state == State::Unknown { self.down(now, cfg) } else { None }
            }
            State::Probing => self.down(now, cfg),
            State::Down => None,
        }
    }

    /// A stream open was accepted: the peer gateway works (traffic counts as a good probe).
    pub fn on_open_ok(&mut self, now: Instant, cfg: &HealthConfig) -> Option<Transition> {
        self.opens_ok += 1;
        self.good(now, cfg)
    }

    /// A stream open failed for a reason that concerns the peer gateway (handshake, timeout,
    /// reset), or its connection died: out at once.
    pub fn on_failure(&mut self, reason: String, now: Instant, cfg: &HealthConfig) -> Option<Transition> {
        self.opens_failed += 1;
        self.last_error = Some(reason);
        self.goods = 0;
        match self.state {
            State::Down => None,
            _ => self.down(now, cfg),
        }
    }

    fn good(&mut self, now: Instant, cfg: &HealthConfig) -> Option<Transition> {
        self.misses = 0;
        match self.state {
            State::Unknown | State::Suspect => self.enter(State::Healthy, now),
            State::Healthy => {
                if self.since.is_some_and(|s| now.saturating_duration_since(s) >= cfg.stable_after) {
                    self.relapses = 0;
                }
                None
            }
            State::Down => {
                if self.hold_until.is_some_and(|h| now < h) {
                    return None;
                }
                self.goods = 1;
                if self.goods >= cfg.recover_after {
                    self.enter(State::Healthy, now)
                } else {
                    self.enter(State::Probing, now)
                }
            }
            State::Probing => {
                self.goods += 1;
                (self.goods >= cfg.recover_after).then(|| self.enter(State::Healthy, now)).flatten()
            }
        }
    }

    fn down(&mut self, now: Instant, cfg: &HealthConfig) -> Option<Transition> {
        // A relapse soon after recovering (or from Probing) lengthens the hold-down.
        let relapse = match self.state {
            State::Probing => true,
            State::Healthy | State::Suspect => {
                self.relapses > 0 && self.since.is_some_and(|s| now.saturating_duration_since(s) < cfg.stable_after)
            }
            State::Unknown | State::Down => false,
        };
        self.relapses = if relapse { self.relapses.saturating_add(1) } else { 1 };
        let factor = 1u32 << (self.relapses - 1).min(16);
        self.hold_until = Some(now + cfg.hold_down.saturating_mul(factor).min(cfg.max_hold_down));
        self.goods = 0;
        self.misses = 0;
        self.enter(State::Down, now)
    }

    fn enter(&mut self, to: State, now: Instant) -> Option<Transition> {
        let from = self.state;
        if from == to {
            return None;
        }
        self.state = to;
        self.since = Some(now);
        Some(Transition { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn cfg() -> HealthConfig {
        HealthConfig::default()
    }

    #[test]
    fn healthy_suspect_down_probing_healthy() {
        let c = cfg();
        let t0 = Instant::now();
        let mut h = PathHealth::default();
        assert_eq!(h.state(), State::Unknown);
        h.on_probe_ok(40 * MS, t0, &c);
        assert_eq!(h.state(), State::Healthy);
        let t = t0 + Duration::from_secs(1);
        assert_eq!(
            h.on_probe_missed("timeout".into(), t, &c),
            Some(Transition { from: State::Healthy, to: State::Suspect })
        );
        assert_eq!(h.state().tier(), Tier::Suspect);
        let t = t + Duration::from_secs(1);
        assert_eq!(h.on_probe_missed("timeout".into(), t, &c).map(|t| t.to), Some(State::Down));
        // Probes during the hold-down do not count.
        assert_eq!(h.on_probe_ok(40 * MS, t + 500 * MS, &c), None);
        assert_eq!(h.state(), State::Down);
        let t = t + c.hold_down;
        assert_eq!(h.on_probe_ok(40 * MS, t, &c).map(|t| t.to), Some(State::Probing));
        assert_eq!(h.on_probe_ok(40 * MS, t + 1000 * MS, &c), None);
        assert_eq!(h.on_probe_ok(40 * MS, t + 2000 * MS, &c).map(|t| t.to), Some(State::Healthy));
    }

    #[test]
    fn one_good_probe_clears_suspicion() {
        let c = cfg();
        let t0 = Instant::now();
        let mut h = PathHealth::default();
        h.on_probe_ok(10 * MS, t0, &c);
        h.on_probe_missed("x".into(), t0, &c);
        assert_eq!(h.on_probe_ok(10 * MS, t0, &c).map(|t| t.to), Some(State::Healthy));
        h.on_probe_missed("x".into(), t0, &c);
        assert_eq!(h.state(), State::Suspect, "the miss count started over");
    }

    #[test]
    fn failed_open_is_down_at_once_and_a_probing_failure_relapses_longer() {
        let c = cfg();
        let t0 = Instant::now();
        let mut h = PathHealth::default();
        h.on_open_ok(t0, &c);
        assert_eq!(h.on_failure("reset".into(), t0, &c).map(|t| t.to), Some(State::Down));
        let t = t0 + c.hold_down;
        h.on_probe_ok(MS, t, &c);
        assert_eq!(h.state(), State::Probing);
        h.on_probe_missed("lost".into(), t, &c);
        assert_eq!(h.state(), State::Down);
        // Second hold-down is twice the first.
        assert_eq!(h.on_probe_ok(MS, t + c.hold_down, &c), None);
        assert_eq!(h.on_probe_ok(MS, t + c.hold_down * 2, &c).map(|t| t.to), Some(State::Probing));
    }

    #[test]
    fn relapses_are_forgiven_after_a_stable_period() {
        let c = cfg();
        let t0 = Instant::now();
        let mut h = PathHealth::default();
        h.on_failure("a".into(), t0, &c);
        let mut t = t0 + c.hold_down;
        for _ in 0..c.recover_after {
            h.on_probe_ok(MS, t, &c);
            t += Duration::from_secs(1);
        }
        assert_eq!(h.state(), State::Healthy);
        // Fails again soon: a relapse, hold-down doubles.
        h.on_failure("b".into(), t, &c);
        assert_eq!(h.on_probe_ok(MS, t + c.hold_down, &c), None);
        let mut t = t + c.hold_down * 2;
        for _ in 0..c.recover_after {
            h.on_probe_ok(MS, t, &c);
            t += Duration::from_secs(1);
        }
        assert_eq!(h.state(), State::Healthy);
        // Stable for a long time, then fails: back to the base hold-down.
        h.on_probe_ok(MS, t + c.stable_after, &c);
        let t = t + c.stable_after;
        h.on_failure("c".into(), t, &c);
        assert_eq!(h.on_probe_ok(MS, t + c.hold_down, &c).map(|t| t.to), Some(State::Probing));
    }

    #[test]
    fn an_unknown_peer_that_misses_is_down() {
        let c = cfg();
        let mut h = PathHealth::default();
        assert_eq!(h.on_probe_missed("no answer".into(), Instant::now(), &c).map(|t| t.to), Some(State::Down));
    }

    #[test]
    fn hold_down_is_capped() {
        let c = HealthConfig { max_hold_down: Duration::from_secs(4), ..cfg() };
        let t0 = Instant::now();
        let mut h = PathHealth::default();
        h.on_failure("x".into(), t0, &c);
        let mut t = t0;
        for _ in 0..10 {
            t += c.max_hold_down;
            h.on_probe_ok(MS, t, &c);
            assert_eq!(h.state(), State::Probing, "never held longer than the cap");
            h.on_probe_missed("y".into(), t, &c);
        }
    }

    #[test]
    fn srtt_averages_the_warmup_then_smooths_and_rank_moves_only_past_the_hysteresis() {
        let c = cfg();
        let mut h = PathHealth::default();
        // Warm-up: a plain mean, and not ranked yet.
        h.on_rtt(120 * MS, &c);
        h.on_rtt(40 * MS, &c);
        assert_eq!((h.srtt(), h.rank_rtt()), (Some(80 * MS), None));
        for _ in 2..c.warmup {
            h.on_rtt(80 * MS, &c);
        }
        assert_eq!((h.srtt(), h.rank_rtt()), (Some(80 * MS), Some(80 * MS)));
        // The mean lasts until 1/n is the EWMA's weight (n = 8).
        for _ in c.warmup..8 {
            h.on_rtt(80 * MS, &c);
        }
        h.on_rtt(144 * MS, &c);
        assert_eq!(h.srtt(), Some(88 * MS));
        assert_eq!(h.rank_rtt(), Some(80 * MS), "within 15% + 1 ms of 80 ms");
        for _ in 0..30 {
            h.on_rtt(160 * MS, &c);
        }
        assert!(h.rank_rtt().unwrap() > 120 * MS, "a real change moves the rank: {:?}", h.rank_rtt());
    }

    #[test]
    fn states_round_trip_their_names() {
        for s in [State::Unknown, State::Healthy, State::Suspect, State::Down, State::Probing] {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        assert_eq!(State::parse("retrying"), Some(State::Probing));
        assert_eq!(State::parse("bogus"), None);
    }
}
