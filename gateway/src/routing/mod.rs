//! Route choice: which cluster a connection to a service goes to, in order of preference.
//! Pure functions of the catalog, the peer states and the time.

pub mod catalog;
pub mod peer;

use std::collections::HashMap;
use std::time::Instant;

use skybridge_api::model::{ClusterId, ServiceKey};

pub use catalog::{Catalog, Peer, Service, ServicePort};
pub use peer::{Health, PeerState};

/// Where a connection may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Endpoints in this gateway's own cluster.
    Local,
    /// Through the tunnel to this peer's gateway.
    Peer(ClusterId),
}

/// Candidates for `service`/`port` in the order to try them: the local cluster first when it
/// has endpoints; then peers that host the service and are not backing off, lowest smoothed
/// RTT first (never measured ones after measured ones); then peers that are backing off, as a
/// last resort, soonest retry first. Empty when the service is unknown.
pub fn candidates(
    catalog: &Catalog,
    service: &ServiceKey,
    port: u16,
    peers: &HashMap<ClusterId, PeerState>,
    now: Instant,
) -> Vec<Target> {
    let Some(svc) = catalog.services.get(service) else { return Vec::new() };
    let mut out = Vec::with_capacity(svc.clusters.len());
    if catalog.local_endpoints(service, port).is_some() {
        out.push(Target::Local);
    }
    let default = PeerState::default();
    let mut usable = Vec::new();
    let mut backing_off = Vec::new();
    for c in svc.clusters.iter().filter(|c| **c != catalog.local && catalog.peers.contains_key(*c)) {
        let st = peers.get(c).unwrap_or(&default);
        if st.usable(now) {
            usable.push((st.srtt.is_none(), st.srtt, c));
        } else {
            let retry_at = match st.health {
                Health::Down { retry_at } => retry_at,
                _ => now,
            };
            backing_off.push((retry_at, c));
        }
    }
    usable.sort();
    backing_off.sort();
    out.extend(usable.into_iter().map(|(_, _, c)| Target::Peer(c.clone())));
    out.extend(backing_off.into_iter().map(|(_, c)| Target::Peer(c.clone())));
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use skybridge_api::model::{Cloud, Protocol};

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
            clusters: vec![id("a"), id("b"), id("c"), id("d")],
            allow: None,
        };
        Catalog { version: "v".into(), local: id("a"), peers, services: HashMap::from([(key, svc)]) }
    }

    fn measured(ms: u64) -> PeerState {
        let mut s = PeerState::default();
        s.on_rtt(Duration::from_millis(ms));
        s
    }

    #[test]
    fn local_first_then_by_rtt_then_unmeasured() {
        let key = ServiceKey::new("prod", "api").unwrap();
        let now = Instant::now();
        let peers = HashMap::from([(id("b"), measured(40)), (id("c"), measured(10))]);
        let got = candidates(&catalog(true), &key, 80, &peers, now);
        assert_eq!(got, vec![Target::Local, Target::Peer(id("c")), Target::Peer(id("b")), Target::Peer(id("d"))]);
    }

    #[test]
    fn no_local_without_endpoints_or_port() {
        let key = ServiceKey::new("prod", "api").unwrap();
        let now = Instant::now();
        assert!(!candidates(&catalog(false), &key, 80, &HashMap::new(), now).contains(&Target::Local));
        assert!(!candidates(&catalog(true), &key, 81, &HashMap::new(), now).contains(&Target::Local));
    }

    #[test]
    fn down_peers_go_last_until_retry() {
        let key = ServiceKey::new("prod", "api").unwrap();
        let now = Instant::now();
        let mut down = measured(1);
        down.on_failure("refused".into(), now, Duration::from_secs(1));
        let peers = HashMap::from([(id("b"), down), (id("c"), measured(50))]);
        let got = candidates(&catalog(false), &key, 80, &peers, now);
        assert_eq!(got, vec![Target::Peer(id("c")), Target::Peer(id("d")), Target::Peer(id("b"))]);
        let later = candidates(&catalog(false), &key, 80, &peers, now + Duration::from_secs(2));
        assert_eq!(later[0], Target::Peer(id("b")), "retried first once its backoff passed (lowest RTT)");
    }

    #[test]
    fn unknown_service_has_no_candidates() {
        let key = ServiceKey::new("prod", "nope").unwrap();
        assert!(candidates(&catalog(true), &key, 80, &HashMap::new(), Instant::now()).is_empty());
    }
}
