//! Route views over hand-made catalogs, gateways and reports: no sockets, no store.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use skybridge_api::catalog::{
    ClusterExport, ClusterInfo, Endpoint, GlobalCatalog, GlobalService, PortSpec, Provenance,
};
use skybridge_api::model::{Cloud, ClusterId, Protocol, ServiceKey};

use super::*;
use crate::state::{GatewayState, LatencySample};
use crate::store::{GatewayRecord, Policy};

fn id(s: &str) -> ClusterId {
    ClusterId::new(s).unwrap()
}

fn key(s: &str) -> ServiceKey {
    s.parse().unwrap()
}

/// A catalog, gateways and reports, built up by the tests.
struct World {
    catalog: GlobalCatalog,
    gateways: Vec<GatewayState>,
    samples: BTreeMap<(ClusterId, ClusterId), LatencySample>,
    policies: BTreeMap<ServiceKey, Policy>,
}

impl World {
    /// Clusters `a`, `b`, `c`, each with a dialable gateway; no services, no reports.
    fn new() -> World {
        let mut w = World {
            catalog: GlobalCatalog::default(),
            gateways: Vec::new(),
            samples: BTreeMap::new(),
            policies: BTreeMap::new(),
        };
        for c in ["a", "b", "c"] {
            w.cluster(c);
            w.gateway(c, true);
        }
        w
    }

    fn cluster(&mut self, c: &str) {
        let info = ClusterInfo { id: id(c), cloud: Cloud::Other, region: "r".into(), network: None };
        self.catalog.clusters.insert(id(c), info);
    }

    fn gateway(&mut self, c: &str, dialable: bool) {
        let tunnel_addresses = if dialable { vec![format!("{c}.example:15443")] } else { Vec::new() };
        self.gateways.push(GatewayState::known(GatewayRecord {
            cluster: id(c),
            instance: "gw-0".into(),
            version: String::new(),
            tunnel_addresses,
            last_seen: 0,
            acked_version: 0,
        }));
    }

    /// `svc` hosted in `ready` (one ready endpoint each) and exported, not ready, by `not_ready`.
    fn service(&mut self, svc: &str, ready: &[&str], not_ready: &[&str]) {
        let export = |ok: bool| ClusterExport {
            exported_at: 1,
            endpoints: BTreeMap::from([(
                80,
                [Endpoint { address: "10.0.0.1:80".parse().unwrap(), zone: None, ready: ok }].into(),
            )]),
            provenance: Provenance { source: "s".into(), observed_at: 1, stale_since: None },
        };
        let clusters =
            ready.iter().map(|c| (id(c), export(true))).chain(not_ready.iter().map(|c| (id(c), export(false))));
        let s = GlobalService {
            ports: vec![PortSpec { port: 80, protocol: Protocol::Http }],
            clusters: clusters.collect(),
            conflicts: vec![],
        };
        self.catalog.services.insert(key(svc), s);
    }

    /// `from` reported `to` in `state` with a smoothed and a ranking RTT (ms).
    fn report(&mut self, from: &str, to: &str, state: &str, rtt: Option<f64>, rank: Option<f64>) {
        let s = LatencySample {
            rtt_ms: rtt,
            rank_rtt_ms: rank,
            state: state.into(),
            transport: "quic".into(),
            transport_for_s: None,
            reported_at: 1,
            by: "gw-0".into(),
        };
        self.samples.insert((id(from), id(to)), s);
    }

    fn net(&self) -> Network {
        Network::new(&self.catalog, &self.gateways, &self.samples).in_trust_domain("fed.test")
    }

    fn routes(&self, filter: &RouteFilter) -> Vec<ServiceRoute> {
        routes(&self.catalog, &self.policies, &self.net(), filter)
    }

    /// The route of `svc` from `from`.
    fn route(&self, svc: &str, from: &str) -> ServiceRoute {
        let f = RouteFilter { service: Some(key(svc)), from: Some(id(from)) };
        let mut r = self.routes(&f);
        assert_eq!(r.len(), 1, "{r:?}");
        r.remove(0)
    }

    fn whatif(&self, down: &[&str], filter: &RouteFilter) -> WhatIfResponse {
        let down: BTreeSet<ClusterId> = down.iter().map(|c| id(c)).collect();
        whatif(&self.catalog, &self.policies, &self.net(), filter, &down)
    }
}

fn shares(r: &ServiceRoute) -> Vec<(&str, f64)> {
    r.shares.iter().map(|s| (s.cluster.as_str(), s.share)).collect()
}

#[test]
fn local_first_then_the_fastest_healthy_peer() {
    let mut w = World::new();
    w.service("prod/web", &["a", "b", "c"], &[]);
    w.report("a", "b", "healthy", Some(40.0), Some(40.0));
    w.report("a", "c", "healthy", Some(10.0), Some(10.0));
    let r = w.route("prod/web", "a");
    assert_eq!((r.preferred.as_deref(), r.order.clone()), (Some("a"), vec!["a".into(), "c".into(), "b".into()]));
    assert_eq!(r.expected_rtt_ms, Some(0.0), "local costs nothing");

    // Not hosted locally: the faster peer takes everything; a down one is a last resort.
    w.service("prod/web", &["b", "c"], &["a"]);
    let r = w.route("prod/web", "a");
    assert_eq!((shares(&r), r.expected_rtt_ms), (vec![("c", 1.0)], Some(10.0)));
    w.report("a", "c", "down", None, Some(10.0));
    let r = w.route("prod/web", "a");
    assert_eq!((r.preferred.as_deref(), r.order.clone()), (Some("b"), vec!["b".into(), "c".into()]));
    assert_eq!(r.expected_rtt_ms, Some(40.0));
}

#[test]
fn the_ranking_rtt_wins_over_the_smoothed_one_and_close_peers_share() {
    let mut w = World::new();
    w.service("prod/web", &["b", "c"], &[]);
    // Smoothed RTTs say c is far faster; the ranking RTTs (what gateways sort by) are close.
    w.report("a", "b", "healthy", Some(40.0), Some(20.0));
    w.report("a", "c", "healthy", Some(10.0), Some(21.0));
    let r = w.route("prod/web", "a");
    assert_eq!(shares(&r), [("b", 0.5), ("c", 0.5)]);
    assert_eq!(r.expected_rtt_ms, Some(20.5));
    // An older gateway reports no ranking RTT: the smoothed one is used.
    w.report("a", "c", "healthy", Some(10.0), None);
    assert_eq!(shares(&w.route("prod/web", "a")), [("c", 1.0)]);
}

#[test]
fn unreported_peers_are_used_but_their_rtt_is_unknown() {
    let mut w = World::new();
    w.service("prod/web", &["b", "c"], &[]);
    let r = w.route("prod/web", "a");
    assert_eq!(shares(&r), [("b", 0.5), ("c", 0.5)], "unmeasured peers share until measured");
    assert_eq!(r.expected_rtt_ms, None);
    // A state string from a newer gateway counts as unknown: usable.
    w.report("a", "b", "warming", Some(5.0), Some(5.0));
    w.report("a", "c", "suspect", Some(1.0), Some(1.0));
    let r = w.route("prod/web", "a");
    assert_eq!((shares(&r), r.order.clone()), (vec![("b", 1.0)], vec!["b".into(), "c".into()]));
}

#[test]
fn only_clusters_with_a_dialable_gateway_are_peers_and_only_gateway_clusters_are_sources() {
    let mut w = World::new();
    w.cluster("d");
    w.gateway("d", false); // a gateway without a tunnel address: a source, never a target
    w.cluster("e"); // no gateway at all
    w.service("prod/web", &["d", "e"], &[]);
    let all = w.routes(&RouteFilter::default());
    assert_eq!(all.iter().map(|r| r.from.as_str()).collect::<Vec<_>>(), ["a", "b", "c", "d"]);
    let from_a = &all[0];
    assert_eq!((from_a.preferred.clone(), from_a.order.clone()), (None, vec![]), "d and e cannot be dialed");
    assert_eq!(w.route("prod/web", "d").preferred.as_deref(), Some("d"), "d reaches its own endpoints");
}

#[test]
fn policies_steer_and_allow_lists_keep_a_source_local() {
    let mut w = World::new();
    w.service("prod/web", &["a", "b", "c"], &[]);
    w.report("a", "b", "healthy", Some(10.0), Some(10.0));
    w.report("a", "c", "healthy", Some(30.0), Some(30.0));
    w.policies.insert(
        key("prod/web"),
        Policy { weights: BTreeMap::from([(id("b"), 70), (id("c"), 30)]), ..Default::default() },
    );
    let r = w.route("prod/web", "a");
    assert_eq!((shares(&r), r.expected_rtt_ms), (vec![("b", 0.7), ("c", 0.3)], Some(16.0)));

    w.policies.insert(key("prod/web"), Policy { avoid: vec![id("a")], failover: vec![id("c")], ..Default::default() });
    let r = w.route("prod/web", "a");
    assert_eq!((r.preferred.as_deref(), r.order.clone()), (Some("c"), vec!["c".into(), "b".into()]));

    // a is not allowed in: remote gateways would refuse it, so only its own endpoints remain.
    w.policies.insert(key("prod/web"), Policy { allow: Some(vec!["b".parse().unwrap()]), ..Default::default() });
    let r = w.route("prod/web", "a");
    assert_eq!(r.order, ["a"]);
    w.service("prod/web", &["b", "c"], &[]);
    assert_eq!(w.route("prod/web", "a").preferred, None);
    assert_eq!(w.route("prod/web", "c").preferred.as_deref(), Some("c"));
}

#[test]
fn allow_and_deny_entries_shape_the_preview() {
    let mut w = World::new();
    w.service("prod/web", &["b"], &[]);
    let sources = |s: &[&str]| s.iter().map(|e| e.parse().unwrap()).collect::<Vec<_>>();
    // Every gateway is taken to be of the federator's trust domain.
    let p = Policy { allow: Some(sources(&["spiffe://fed.test"])), deny: sources(&["a"]), ..Default::default() };
    w.policies.insert(key("prod/web"), p);
    assert_eq!(w.route("prod/web", "a").preferred, None, "deny wins");
    assert_eq!(w.route("prod/web", "c").preferred.as_deref(), Some("b"), "allowed by the trust domain");
    w.policies.insert(
        key("prod/web"),
        Policy { allow: Some(sources(&["spiffe://other.test", "x-*"])), ..Default::default() },
    );
    assert_eq!(w.route("prod/web", "c").preferred, None, "another domain and a glob that does not match");
}

#[test]
fn filters_bound_the_output() {
    let mut w = World::new();
    w.service("prod/web", &["a"], &[]);
    w.service("prod/api", &["b"], &[]);
    assert_eq!(w.routes(&RouteFilter::default()).len(), 6);
    let names = |f: RouteFilter| {
        w.routes(&f).iter().map(|r| format!("{}/{}@{}", r.namespace, r.name, r.from)).collect::<Vec<_>>()
    };
    assert_eq!(names(RouteFilter { from: Some(id("b")), ..Default::default() }), ["prod/api@b", "prod/web@b"]);
    assert_eq!(names(RouteFilter { service: Some(key("prod/web")), ..Default::default() }).len(), 3);
    assert!(names(RouteFilter { from: Some(id("zz")), ..Default::default() }).is_empty());
    assert!(names(RouteFilter { service: Some(key("prod/nope")), ..Default::default() }).is_empty());
}

#[test]
fn whatif_moves_routes_off_the_down_clusters() {
    let mut w = World::new();
    w.service("prod/web", &["b", "c"], &[]);
    w.service("prod/db", &["c"], &[]);
    w.service("prod/local", &["a", "b"], &[]);
    w.report("a", "b", "healthy", Some(30.0), Some(30.0));
    w.report("a", "c", "healthy", Some(10.0), Some(10.0));
    let r = w.whatif(&["c"], &RouteFilter { from: Some(id("a")), ..Default::default() });
    assert_eq!(r.down, ["c"]);
    let by_name: BTreeMap<&str, &WhatIfRoute> = r.routes.iter().map(|x| (x.name.as_str(), x)).collect();
    let web = by_name["web"];
    assert!(web.changed);
    assert_eq!((web.before.preferred.as_deref(), web.before.expected_rtt_ms), (Some("c"), Some(10.0)));
    assert_eq!((web.after.preferred.as_deref(), web.after.expected_rtt_ms), (Some("b"), Some(30.0)));
    let db = by_name["db"];
    assert!(db.changed && db.after.unreachable && db.after.preferred.is_none() && db.after.shares.is_empty());
    assert!(!db.before.unreachable);
    assert!(!by_name["local"].changed, "served locally either way");
    assert_eq!(
        r.summary,
        WhatIfSummary { routes: 3, routes_changed: 2, services_affected: 2, services_unreachable: 1 }
    );

    // The down clusters are not sources either.
    let all = w.whatif(&["c"], &RouteFilter::default());
    assert!(all.routes.iter().all(|x| x.from != "c"));
    assert_eq!(all.summary.routes, 6);
    assert!(w.whatif(&["c"], &RouteFilter { from: Some(id("c")), ..Default::default() }).routes.is_empty());
}

#[test]
fn whatif_a_fallback_only_cluster_changes_nothing() {
    let mut w = World::new();
    w.service("prod/web", &["a", "b"], &[]);
    let r = w.whatif(&["b"], &RouteFilter { from: Some(id("a")), ..Default::default() });
    assert!(!r.routes[0].changed, "{r:?}");
    assert_eq!(r.summary.services_affected, 0);
}

#[test]
fn query_parsing_names_the_parameter() {
    let q = |s: &[(&str, &str)]| s.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
    let f = RouteFilter::from_query(&q(&[("service", "prod/web"), ("from", "a")])).unwrap();
    assert_eq!(f, RouteFilter { service: Some(key("prod/web")), from: Some(id("a")) });
    for (pairs, field) in [
        (q(&[("service", "web")]), "service"),
        (q(&[("service", "Prod/web")]), "service"),
        (q(&[("from", "A")]), "from"),
        (q(&[("down", "a")]), "down"),
        (q(&[("from", "a"), ("from", "b")]), "from"),
    ] {
        let e = RouteFilter::from_query(&pairs).unwrap_err();
        assert_eq!(e.body.field.as_deref(), Some(field), "{pairs:?}: {e:?}");
    }

    let w = WhatIfQuery::from_query(&q(&[("down", "b, c"), ("service", "prod/web")])).unwrap();
    assert_eq!(w.down, BTreeSet::from([id("b"), id("c")]));
    assert_eq!(w.filter(), RouteFilter { service: Some(key("prod/web")), from: None });
    for (pairs, needle) in [
        (q(&[]), "required"),
        (q(&[("down", "")]), "empty"),
        (q(&[("down", "a,,b")]), "item 2"),
        (q(&[("down", "a,Bad")]), "\"Bad\""),
        (q(&[("down", "a,a")]), "more than once"),
    ] {
        let e = WhatIfQuery::from_query(&pairs).unwrap_err();
        assert_eq!(e.body.field.as_deref(), Some("down"), "{pairs:?}");
        assert!(e.body.error.contains(needle), "{pairs:?}: {}", e.body.error);
    }
    let e = WhatIfQuery::from_query(&q(&[("down", "a"), ("colour", "red")])).unwrap_err();
    assert_eq!(e.body.field.as_deref(), Some("colour"));

    let net = World::new().net();
    assert!(net.check_known(&BTreeSet::from([id("a"), id("c")])).is_ok());
    let e = net.check_known(&BTreeSet::from([id("a"), id("zz")])).unwrap_err();
    assert_eq!(e.body.field.as_deref(), Some("down"));
    assert!(e.body.error.contains("unknown cluster zz") && e.body.error.contains("a, b, c"), "{}", e.body.error);
}

/// The API computes routes on demand: 10,000 services from three clusters must stay cheap.
#[test]
fn ten_thousand_services_from_three_clusters() {
    let mut w = World::new();
    w.report("a", "b", "healthy", Some(30.0), Some(30.0));
    w.report("a", "c", "healthy", Some(10.0), Some(10.0));
    w.report("b", "c", "suspect", Some(10.0), Some(10.0));
    let hosts: [&[&str]; 4] = [&["a", "b", "c"], &["b", "c"], &["c"], &["a"]];
    for i in 0..10_000 {
        w.service(&format!("ns-{}/svc-{i}", i % 10), hosts[i % 4], &[]);
    }
    let t = Instant::now();
    let routes = w.routes(&RouteFilter::default());
    let r = w.whatif(&["c"], &RouteFilter::default());
    let took = t.elapsed();
    assert_eq!(routes.len(), 30_000);
    assert_eq!(r.summary.routes, 20_000);
    assert_eq!(r.summary.services_unreachable, 2_500, "the services only c hosts");
    eprintln!("routes + whatif over 10,000 services × 3 clusters: {took:?}");
}
