//! Route choice: which cluster a connection to a service goes to, in order of preference.
//! The rules live in `skybridge_api::routing` (shared with the federator's views); this maps
//! the data path's catalog and peer measurements onto them. Pure.

pub mod catalog;

use std::collections::HashMap;
use std::time::Duration;

use skybridge_api::model::{ClusterId, ServiceKey};
use skybridge_api::routing::{Candidate, ChoiceConfig, Route, Tier, order, route};

pub use catalog::{Catalog, Peer, Service, ServicePort};

/// Where a connection may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Endpoints in this gateway's own cluster.
    Local,
    /// Through the tunnel to this peer's gateway.
    Peer(ClusterId),
}

/// What route choice needs to know of one peer right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerView {
    pub tier: Tier,
    /// The ranking RTT (see `PathHealth::rank_rtt`).
    pub rtt: Option<Duration>,
    /// Connections in flight to it.
    pub load: u32,
}

impl Default for PeerView {
    /// A peer never measured: usable, ranked after measured ones.
    fn default() -> Self {
        PeerView { tier: Tier::Good, rtt: None, load: 0 }
    }
}

/// The clusters that can take `service`/`port` as the choice sees them: the local cluster when
/// it has endpoints, and peers that host the service and have a gateway.
fn candidate_list<'a>(
    catalog: &'a Catalog,
    svc: &'a Service,
    port: u16,
    peers: &HashMap<ClusterId, PeerView>,
) -> Vec<Candidate<'a>> {
    let local_ok = catalog.local_endpoints(&svc.key, port).is_some();
    svc.clusters
        .iter()
        .filter_map(|c| {
            if *c == catalog.local {
                let local = Candidate { cluster: c, local: true, tier: Tier::Good, rtt: Some(Duration::ZERO), load: 0 };
                return local_ok.then_some(local);
            }
            if !catalog.peers.contains_key(c) {
                return None;
            }
            let v = peers.get(c).copied().unwrap_or_default();
            Some(Candidate { cluster: c, local: false, tier: v.tier, rtt: v.rtt, load: v.load })
        })
        .collect()
}

/// Candidates for `service`/`port` in the order to try them, by the shared choice rules under
/// the service's policy (docs/routing.md). `draws` are two random numbers. Empty when the
/// service is unknown or every host is avoided.
pub fn candidates(
    catalog: &Catalog,
    service: &ServiceKey,
    port: u16,
    peers: &HashMap<ClusterId, PeerView>,
    cfg: &ChoiceConfig,
    draws: [u64; 2],
) -> Vec<Target> {
    let Some(svc) = catalog.services.get(service) else { return Vec::new() };
    let cands = candidate_list(catalog, svc, port, peers);
    order(&cands, catalog.policies.get(service), cfg, draws)
        .into_iter()
        .map(|c| if c == catalog.local { Target::Local } else { Target::Peer(c) })
        .collect()
}

/// Where new connections to `svc` (its first port) go now, deterministically (for `/status`).
pub fn current_route(
    catalog: &Catalog,
    svc: &Service,
    peers: &HashMap<ClusterId, PeerView>,
    cfg: &ChoiceConfig,
) -> Route {
    let port = svc.ports.first().map_or(0, |p| p.port);
    route(&candidate_list(catalog, svc, port, peers), catalog.policies.get(&svc.key), cfg)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use skybridge_api::model::{Cloud, Protocol};
    use skybridge_api::routing::Policy;

    use super::*;

    fn id(s: &str) -> ClusterId {
        ClusterId::new(s).unwrap()
    }

    fn catalog(local_eps: bool) -> Catalog {
        let key = ServiceKey::new("prod", "api").unwrap();
        let peers: BTreeMap<_, _> = ["b", "c", "d"]
            .iter()
            .map(|c| {
                (id(c), Peer { cluster: id(c), cloud: Cloud::Other, region: String::new(), address: "x:1".into() })
            })
            .collect();
        let svc = Service {
            key: key.clone(),
            ports: vec![ServicePort {
                port: 80,
                protocol: Protocol::Http,
                local_endpoints: if local_eps { vec!["127.0.0.1:1".parse().unwrap()] } else { vec![] },
            }],
            // "e" hosts it but has no gateway: never a candidate.
            clusters: vec![id("a"), id("b"), id("c"), id("d"), id("e")],
            allow: None,
            deny: vec![],
        };
        Catalog {
            version: "v".into(),
            local: id("a"),
            peers,
            services: HashMap::from([(key, svc)]),
            policies: HashMap::new(),
            authorization_default: Default::default(),
        }
    }

    fn view(tier: Tier, ms: u64) -> PeerView {
        PeerView { tier, rtt: Some(Duration::from_millis(ms)), load: 0 }
    }

    fn key() -> ServiceKey {
        ServiceKey::new("prod", "api").unwrap()
    }

    #[test]
    fn local_first_then_by_rtt_then_unmeasured_then_down() {
        let peers = HashMap::from([(id("b"), view(Tier::Good, 40)), (id("c"), view(Tier::Out, 10))]);
        let got = candidates(&catalog(true), &key(), 80, &peers, &ChoiceConfig::default(), [0, 0]);
        assert_eq!(got, vec![Target::Local, Target::Peer(id("b")), Target::Peer(id("d")), Target::Peer(id("c"))]);
    }

    #[test]
    fn no_local_without_endpoints_or_port() {
        let cfg = ChoiceConfig::default();
        assert!(!candidates(&catalog(false), &key(), 80, &HashMap::new(), &cfg, [0, 0]).contains(&Target::Local));
        assert!(!candidates(&catalog(true), &key(), 81, &HashMap::new(), &cfg, [0, 0]).contains(&Target::Local));
    }

    #[test]
    fn the_services_policy_applies() {
        let mut c = catalog(true);
        c.policies.insert(key(), Policy { failover: vec![id("c")], avoid: vec![id("b")], ..Default::default() });
        let peers = HashMap::from([(id("b"), view(Tier::Good, 1)), (id("c"), view(Tier::Good, 90))]);
        let got = candidates(&c, &key(), 80, &peers, &ChoiceConfig::default(), [0, 0]);
        assert_eq!(got, vec![Target::Peer(id("c")), Target::Local, Target::Peer(id("d"))]);
    }

    #[test]
    fn current_route_reports_shares() {
        let c = catalog(false);
        let peers = HashMap::from([
            (id("b"), view(Tier::Good, 40)),
            (id("c"), view(Tier::Good, 41)),
            (id("d"), view(Tier::Good, 90)),
        ]);
        let r = current_route(&c, &c.services[&key()], &peers, &ChoiceConfig::default());
        assert_eq!(r.shares, vec![(id("b"), 0.5), (id("c"), 0.5)]);
    }

    #[test]
    fn unknown_service_has_no_candidates() {
        let key = ServiceKey::new("prod", "nope").unwrap();
        assert!(candidates(&catalog(true), &key, 80, &HashMap::new(), &ChoiceConfig::default(), [0, 0]).is_empty());
    }
}
