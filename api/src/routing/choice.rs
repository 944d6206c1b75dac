//! Route choice: for one service, in which order to try the clusters that host it. Pure: the
//! health, latency and load of each candidate and the random draws come in as arguments, so
//! the gateway's data path, the federator's preferred-target view and its what-if all compute
//! the same answer.
//!
//! The order, within each health tier (good, then suspect, then out as a last resort):
//! 1. clusters the policy avoids are dropped;
//! 2. clusters listed in the policy's failover order, in that order;
//! 3. the local cluster when `prefer_local` is set;
//! 4. the rest by ranking RTT (unmeasured last).
//!
//! The first try is then chosen: by the policy's weights among good clusters when it has any
//! (renormalised over those that are up, so weights fail over too); else the head of the order
//! when it comes from a failover list or is local; else the power of two choices among the
//! good clusters whose RTT is within the sharing margin of the best, so that a path a few
//! percent faster does not take all the traffic. Later tries follow the order.

use std::cmp::Ordering;
use std::time::Duration;

use super::health::Tier;
use super::policy::Policy;
use crate::model::ClusterId;

/// Knobs of the choice (defaults in [`ChoiceConfig::default`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChoiceConfig {
    /// Local endpoints before any remote cluster.
    pub prefer_local: bool,
    /// Clusters within this fraction of the best RTT share the first tries.
    pub share_margin: f64,
    /// Absolute part of the sharing margin (loopback RTTs differ by microseconds).
    pub share_floor: Duration,
}

impl Default for ChoiceConfig {
    fn default() -> Self {
        ChoiceConfig { prefer_local: true, share_margin: 0.1, share_floor: Duration::from_millis(2) }
    }
}

/// One cluster that hosts the service, as the chooser sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub cluster: &'a ClusterId,
    /// This gateway's own cluster (no tunnel; RTT zero).
    pub local: bool,
    pub tier: Tier,
    /// Ranking RTT; `None` when not measured yet.
    pub rtt: Option<Duration>,
    /// Connections in flight to it from here (the power of two choices compares these).
    pub load: u32,
}

/// How the first try is picked among the head of the order.
#[derive(Debug, Clone, PartialEq)]
enum First {
    /// The head of the order, always.
    Fixed,
    /// By weight among these (index into the order, weight).
    Weighted(Vec<(usize, u32)>),
    /// Power of two choices among the first `n` of the order.
    Band(usize),
}

/// What the choice yields before the random draws: the full order and how to pick the first.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    order: Vec<usize>,
    first: First,
}

fn plan(cands: &[Candidate<'_>], policy: Option<&Policy>, cfg: &ChoiceConfig) -> Plan {
    let avoid = |c: &ClusterId| policy.is_some_and(|p| p.avoid.contains(c));
    let listed = |c: &ClusterId| policy.and_then(|p| p.failover.iter().position(|f| f == c)).unwrap_or(usize::MAX);
    let key = |i: usize| {
        let c = &cands[i];
        let local_rank = if cfg.prefer_local && c.local { 0 } else { 1 };
        (c.tier, listed(c.cluster), local_rank, c.rtt.is_none(), c.rtt, c.cluster)
    };
    let mut order: Vec<usize> = (0..cands.len()).filter(|i| !avoid(cands[*i].cluster)).collect();
    order.sort_by(|a, b| key(*a).cmp(&key(*b)));
    let Some(&head) = order.first() else { return Plan { order, first: First::Fixed } };

    let weighted: Vec<(usize, u32)> = order
        .iter()
        .enumerate()
        .filter(|(_, i)| cands[**i].tier == Tier::Good)
        .filter_map(|(pos, i)| {
            let w = policy.and_then(|p| p.weights.get(cands[*i].cluster)).copied().unwrap_or(0);
            (w > 0).then_some((pos, w))
        })
        .collect();
    if !weighted.is_empty() {
        return Plan { order, first: First::Weighted(weighted) };
    }
    let h = &cands[head];
    if h.tier != Tier::Good || listed(h.cluster) != usize::MAX || (cfg.prefer_local && h.local) {
        return Plan { order, first: First::Fixed };
    }
    // The band: good, unlisted clusters as close to the best as the margin allows. Unmeasured
    // peers share only with each other (when nothing is measured yet).
    let band = order
        .iter()
        .take_while(|i| {
            let c = &cands[**i];
            c.tier == Tier::Good
                && listed(c.cluster) == usize::MAX
                && match (h.rtt, c.rtt) {
                    (Some(best), Some(rtt)) => rtt <= best.mul_f64(1.0 + cfg.share_margin) + cfg.share_floor,
                    (None, None) => true,
                    _ => false,
                }
        })
        .count();
    // Within the band the order is by name, not RTT: members share the first tries evenly, and
    // noise that reorders their RTTs must not change which one is reported as preferred.
    order[..band].sort_by(|a, b| cands[*a].cluster.cmp(cands[*b].cluster));
    Plan { order, first: if band > 1 { First::Band(band) } else { First::Fixed } }
}

/// The clusters to try, in order, for one connection. `draws` are two uniform random numbers
/// (the weighted pick uses the first; the power of two choices both).
pub fn order(cands: &[Candidate<'_>], policy: Option<&Policy>, cfg: &ChoiceConfig, draws: [u64; 2]) -> Vec<ClusterId> {
    let Plan { mut order, first } = plan(cands, policy, cfg);
    if order.is_empty() {
        return Vec::new();
    }
    let pick = match first {
        First::Fixed => 0,
        First::Weighted(w) => {
            let total: u64 = w.iter().map(|(_, w)| u64::from(*w)).sum();
            let mut x = draws[0] % total;
            w.iter()
                .find(|(_, w)| {
                    let hit = x < u64::from(*w);
                    x = x.saturating_sub(u64::from(*w));
                    hit
                })
                .map_or(0, |(pos, _)| *pos)
        }
        First::Band(n) => {
            let a = (draws[0] % n as u64) as usize;
            // A second, distinct draw: offset by 1..n.
            let b = (a + 1 + (draws[1] % (n as u64 - 1)) as usize) % n;
            let (ca, cb) = (&cands[order[a]], &cands[order[b]]);
            // Fewer in flight wins; on a tie the first draw, so equal loads split evenly.
            match ca.load.cmp(&cb.load) {
                Ordering::Greater => b,
                Ordering::Less | Ordering::Equal => a,
            }
        }
    };
    let chosen = order.remove(pick);
    order.insert(0, chosen);
    order.into_iter().map(|i| cands[i].cluster.clone()).collect()
}

/// Where a service's new connections go from one gateway, deterministically: the share of
/// first tries per cluster (summing to 1) and the order of the later ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Clusters that take first tries, with their expected share, largest first.
    pub shares: Vec<(ClusterId, f64)>,
    /// Every candidate in the order tried after the first.
    pub order: Vec<ClusterId>,
}

impl Route {
    /// The cluster that takes the largest share (first in the order on a tie); None when no
    /// cluster can take the service.
    pub fn preferred(&self) -> Option<&ClusterId> {
        self.shares.first().map(|(c, _)| c)
    }
}

/// The expected outcome of [`order`] over many connections with equal loads.
pub fn route(cands: &[Candidate<'_>], policy: Option<&Policy>, cfg: &ChoiceConfig) -> Route {
    let Plan { order, first } = plan(cands, policy, cfg);
    let name = |i: usize| cands[i].cluster.clone();
    let mut shares: Vec<(ClusterId, f64)> = match (&first, order.first()) {
        (_, None) => Vec::new(),
        (First::Fixed, Some(&head)) => vec![(name(head), 1.0)],
        (First::Weighted(w), _) => {
            let total: f64 = w.iter().map(|(_, w)| f64::from(*w)).sum();
            w.iter().map(|(pos, w)| (name(order[*pos]), f64::from(*w) / total)).collect()
        }
        (First::Band(n), _) => order[..*n].iter().map(|i| (name(*i), 1.0 / *n as f64)).collect(),
    };
    // Stable: equal shares keep the order's (fastest first).
    shares.sort_by(|a, b| b.1.total_cmp(&a.1));
    Route { shares, order: order.into_iter().map(name).collect() }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn id(s: &str) -> ClusterId {
        ClusterId::new(s).unwrap()
    }

    struct World {
        ids: Vec<ClusterId>,
    }

    impl World {
        fn new(names: &[&str]) -> World {
            World { ids: names.iter().map(|n| id(n)).collect() }
        }
        /// (tier, rtt ms, load) per cluster; the first is local.
        fn cands(&self, spec: &[(Tier, Option<u64>, u32)]) -> Vec<Candidate<'_>> {
            self.ids
                .iter()
                .zip(spec)
                .enumerate()
                .map(|(i, (c, (tier, rtt, load)))| Candidate {
                    cluster: c,
                    local: i == 0,
                    tier: *tier,
                    rtt: rtt.map(|ms| MS * ms as u32),
                    load: *load,
                })
                .collect()
        }
    }

    fn names(v: &[ClusterId]) -> Vec<&str> {
        v.iter().map(ClusterId::as_str).collect()
    }

    use Tier::{Good, Out, Suspect};

    #[test]
    fn local_first_then_latency_then_suspect_then_out() {
        let w = World::new(&["a", "b", "c", "d", "e"]);
        let c = w.cands(&[
            (Good, Some(0), 0),
            (Out, Some(5), 0),
            (Good, Some(80), 0),
            (Suspect, Some(1), 0),
            (Good, Some(40), 0),
        ]);
        let cfg = ChoiceConfig::default();
        assert_eq!(names(&order(&c, None, &cfg, [7, 9])), ["a", "e", "c", "d", "b"]);
        let r = route(&c, None, &cfg);
        assert_eq!(r.preferred().map(ClusterId::as_str), Some("a"));
        let no_local = ChoiceConfig { prefer_local: false, ..cfg };
        // Local's RTT is zero, so it still wins on latency.
        assert_eq!(names(&order(&c, None, &no_local, [0, 0]))[0], "a");
    }

    #[test]
    fn prefer_local_off_lets_a_band_include_local() {
        let w = World::new(&["a", "b"]);
        let c = w.cands(&[(Good, Some(0), 5), (Good, Some(1), 0)]);
        let cfg = ChoiceConfig { prefer_local: false, ..Default::default() };
        assert_eq!(names(&order(&c, None, &cfg, [0, 0]))[0], "b", "the less loaded of the two");
    }

    #[test]
    fn close_peers_share_by_power_of_two_choices() {
        let w = World::new(&["local", "b", "c", "d"]);
        // No local endpoints: local is not a candidate.
        let c = &w.cands(&[(Good, Some(0), 0), (Good, Some(40), 0), (Good, Some(42), 0), (Good, Some(80), 0)])[1..];
        let cfg = ChoiceConfig::default();
        let r = route(c, None, &cfg);
        assert_eq!(r.shares, vec![(id("b"), 0.5), (id("c"), 0.5)]);
        let mut firsts = HashMap::new();
        for i in 0..1000u64 {
            let o = order(c, None, &cfg, [i.wrapping_mul(2654435761), i.wrapping_mul(40503) >> 3]);
            assert_eq!(o.len(), 3);
            assert_eq!(o.last().unwrap().as_str(), "d", "outside the band stays last");
            *firsts.entry(o[0].clone()).or_insert(0) += 1;
        }
        assert!(firsts[&id("b")] > 350 && firsts[&id("c")] > 350, "{firsts:?}");
        // Load breaks the tie: c is busy, b takes every pick that compares the two.
        let busy = w.cands(&[(Good, Some(0), 0), (Good, Some(40), 0), (Good, Some(42), 9), (Good, Some(80), 0)]);
        for i in 0..50u64 {
            assert_eq!(order(&busy[1..], None, &cfg, [i, i * 7])[0].as_str(), "b");
        }
    }

    #[test]
    fn a_clearly_faster_peer_takes_everything() {
        let w = World::new(&["b", "c"]);
        let mut c = w.cands(&[(Good, Some(10), 0), (Good, Some(40), 0)]);
        c[0].local = false;
        for i in 0..100 {
            assert_eq!(order(&c, None, &ChoiceConfig::default(), [i, i + 1])[0].as_str(), "b");
        }
    }

    #[test]
    fn policy_avoid_and_failover_order() {
        let w = World::new(&["a", "b", "c", "d"]);
        let c = w.cands(&[(Good, Some(0), 0), (Good, Some(10), 0), (Good, Some(20), 0), (Good, Some(30), 0)]);
        let p = Policy { failover: vec![id("d"), id("b")], avoid: vec![id("c")], ..Default::default() };
        let cfg = ChoiceConfig::default();
        assert_eq!(names(&order(&c, Some(&p), &cfg, [3, 4])), ["d", "b", "a"]);
        // A failover target that is down drops behind the good ones.
        let c = w.cands(&[(Good, Some(0), 0), (Good, Some(10), 0), (Good, Some(20), 0), (Out, Some(30), 0)]);
        assert_eq!(names(&order(&c, Some(&p), &cfg, [3, 4])), ["b", "a", "d"]);
        assert_eq!(route(&c, Some(&p), &cfg).shares, vec![(id("b"), 1.0)]);
    }

    #[test]
    fn weights_split_and_fail_over() {
        let w = World::new(&["a", "b", "c"]);
        let p = Policy { weights: BTreeMap::from([(id("b"), 70), (id("c"), 30)]), ..Default::default() };
        let cfg = ChoiceConfig::default();
        let c = w.cands(&[(Good, Some(0), 0), (Good, Some(10), 0), (Good, Some(80), 0)]);
        let r = route(&c, Some(&p), &cfg);
        assert_eq!(r.shares, vec![(id("b"), 0.7), (id("c"), 0.3)]);
        let mut to_b = 0;
        for i in 0..1000u64 {
            let o = order(&c, Some(&p), &cfg, [i * 7919 % 1000, 0]);
            assert_eq!(o.len(), 3);
            if o[0].as_str() == "b" {
                to_b += 1;
            } else {
                assert_eq!(o[0].as_str(), "c");
            }
        }
        assert_eq!(to_b, 700);
        // b down: its share moves to c; with both down, local (unweighted) takes over.
        let c = w.cands(&[(Good, Some(0), 0), (Out, Some(10), 0), (Good, Some(80), 0)]);
        assert_eq!(route(&c, Some(&p), &cfg).shares, vec![(id("c"), 1.0)]);
        let c = w.cands(&[(Good, Some(0), 0), (Out, Some(10), 0), (Out, Some(80), 0)]);
        assert_eq!(names(&order(&c, Some(&p), &cfg, [1, 1])), ["a", "b", "c"]);
    }

    #[test]
    fn nothing_left_means_no_route() {
        let w = World::new(&["a"]);
        let c = w.cands(&[(Good, Some(0), 0)]);
        let p = Policy { avoid: vec![id("a")], ..Default::default() };
        assert!(order(&c, Some(&p), &ChoiceConfig::default(), [0, 0]).is_empty());
        assert_eq!(route(&c, Some(&p), &ChoiceConfig::default()).preferred(), None);
    }

    #[test]
    fn unmeasured_peers_share_until_measured() {
        let w = World::new(&["b", "c"]);
        let mut c = w.cands(&[(Good, None, 0), (Good, None, 0)]);
        c[0].local = false;
        assert_eq!(route(&c, None, &ChoiceConfig::default()).shares.len(), 2);
        c[1].rtt = Some(30 * MS);
        assert_eq!(names(&order(&c, None, &ChoiceConfig::default(), [0, 0])), ["c", "b"]);
    }
}
