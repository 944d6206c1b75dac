//! How a gateway picks the cluster a connection goes to: the health of each peer path
//! ([`health`]), the choice among the clusters hosting a service ([`choice`]) and the policies
//! the federator sets ([`policy`]). Shared by the gateway's data path and the federator's
//! latency and what-if views, so both always agree. Pure logic; docs/routing.md explains it.

pub mod authz;
pub mod choice;
pub mod health;
pub mod policy;

pub use authz::{DefaultAction, SourceMatcher, Verdict, decide};
pub use choice::{Candidate, ChoiceConfig, Route, order, route};
pub use health::{HealthConfig, PathHealth, State, Tier, Transition};
pub use policy::Policy;

#[cfg(test)]
mod flapping {
    //! The no-flapping promise, on a simulated clock: with ±20 % RTT jitter a service's
    //! preferred cluster changes at most once per 30 s.
    use std::time::{Duration, Instant};

    use super::*;
    use crate::model::ClusterId;

    /// xorshift64*: deterministic, good enough for jitter.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Runs `minutes` of probes every second to peers with the given true RTTs (ms), each
    /// sample jittered uniformly by ±20 %; returns the seconds at which the preferred cluster
    /// changed.
    fn preferred_changes(
        true_ms: &[f64],
        minutes: u64,
        health: &HealthConfig,
        choice: &ChoiceConfig,
        seed: u64,
    ) -> Vec<u64> {
        // Named so that the slower peers sort first: a sharing band lists its members by name,
        // and this is the order in which band membership changes would show.
        let ids: Vec<ClusterId> =
            (0..true_ms.len()).map(|i| ClusterId::new(&format!("peer-{}", true_ms.len() - i)).unwrap()).collect();
        let mut paths = vec![PathHealth::default(); ids.len()];
        let mut rng = Rng(seed);
        let t0 = Instant::now();
        let mut last: Option<ClusterId> = None;
        let mut changes = Vec::new();
        for s in 0..minutes * 60 {
            let now = t0 + Duration::from_secs(s);
            for (p, ms) in paths.iter_mut().zip(true_ms) {
                let jitter = 1.0 + 0.4 * (rng.unit() - 0.5);
                p.on_probe_ok(Duration::from_secs_f64(ms * jitter / 1000.0), now, health);
            }
            let cands: Vec<Candidate<'_>> = ids
                .iter()
                .zip(&paths)
                .map(|(c, p)| Candidate {
                    cluster: c,
                    local: false,
                    tier: p.state().tier(),
                    rtt: p.rank_rtt(),
                    load: 0,
                })
                .collect();
            let preferred = route(&cands, None, choice).preferred().cloned();
            if s > 0 && preferred != last {
                changes.push(s);
            }
            last = preferred;
        }
        changes
    }

    #[test]
    fn preferred_cluster_changes_at_most_once_per_30s_under_jitter() {
        let (h, c) = (HealthConfig::default(), ChoiceConfig::default());
        let paths =
            [vec![40.0, 40.0], vec![40.0, 42.0], vec![40.0, 44.0, 46.0], vec![40.0, 46.0], vec![10.0, 12.0, 80.0]];
        for (rtts, seed) in paths.iter().flat_map(|p| (1..=10).map(move |s| (p, s))) {
            let changes = preferred_changes(rtts, 30, &h, &c, seed);
            let closest = changes.windows(2).map(|w| w[1] - w[0]).min();
            assert!(closest.is_none_or(|gap| gap >= 30), "{rtts:?}: changes at {changes:?} s, two within 30 s");
        }
    }

    #[test]
    fn without_hysteresis_the_same_paths_flap() {
        // The control: ranking by the raw smoothed RTT with no sharing band flaps many times a
        // minute, so the test above measures the mechanism rather than passing trivially.
        let h = HealthConfig { rank_hysteresis: 0.0, rank_floor: Duration::ZERO, ..Default::default() };
        let c = ChoiceConfig { share_margin: 0.0, share_floor: Duration::ZERO, ..Default::default() };
        let changes = preferred_changes(&[40.0, 42.0], 30, &h, &c, 2);
        let within_30s = changes.windows(2).filter(|w| w[1] - w[0] < 30).count();
        assert!(within_30s > 60, "only {within_30s} changes within 30 s of another without hysteresis");
    }
}
