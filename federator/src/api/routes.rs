//! Where connections go: for each service and each cluster with a gateway, the route that the
//! gateways' own route choice ([`skybridge_api::routing::route`]) computes from the catalog,
//! the health and RTTs the gateways last reported and the service's policy; and the same with
//! some clusters gone (what-if). Pure: inputs in, DTOs out, so tests need no sockets.
//!
//! The federator sees what the gateways report every few seconds, not what they measure this
//! instant, and assumes equal loads: the answer is the gateways' choice as of their last
//! reports, with `ChoiceConfig::default()`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use skybridge_api::catalog::{GlobalCatalog, GlobalService};
use skybridge_api::model::{ClusterId, ServiceKey};
use skybridge_api::routing::{self, Candidate, ChoiceConfig, Route, State as PeerState, Tier};
use utoipa::IntoParams;

use crate::state::{GatewayState, LatencySample};
use crate::store::Policy;

use super::dto::{RouteOutcome, RouteShare, ServiceRoute, WhatIfResponse, WhatIfRoute, WhatIfSummary};
use super::error::ApiError;
use super::view::{unique, unknown_param};

/// How route choice sees the path from one cluster's gateways to a peer cluster.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Link {
    tier: Tier,
    rtt: Option<Duration>,
}

impl Link {
    /// A path nobody has reported on: the gateways use it like a healthy one, after the
    /// measured ones.
    const UNREPORTED: Link = Link { tier: Tier::Good, rtt: None };

    fn from_sample(s: &LatencySample) -> Link {
        // A state this federator does not know (a newer gateway's) counts as unknown.
        let tier = PeerState::parse(&s.state).unwrap_or(PeerState::Unknown).tier();
        // The ranking RTT is what the gateway sorts by; older gateways report only the smoothed.
        let rtt = s.rank_rtt_ms.or(s.rtt_ms).and_then(|ms| Duration::try_from_secs_f64(ms / 1e3).ok());
        Link { tier, rtt }
    }
}

/// The federation as route choice sees it: which clusters have gateways, which of them peers
/// can dial, and how the paths between them were last reported.
#[derive(Debug, Clone, Default)]
pub struct Network {
    /// Clusters with at least one known gateway, connected or not (a disconnected gateway
    /// keeps routing on its last catalog): where connections start.
    sources: BTreeSet<ClusterId>,
    /// Catalog clusters with a gateway that advertised a tunnel address: the clusters other
    /// gateways can send to (the gateways build their peer list the same way).
    peers: BTreeSet<ClusterId>,
    /// Every cluster the federator has heard of: the catalog's, the gateways', the reports'.
    known: BTreeSet<ClusterId>,
    /// from → to → link.
    links: HashMap<ClusterId, HashMap<ClusterId, Link>>,
    /// The trust domain sources are taken to be of, for `spiffe://` allow and deny entries.
    trust_domain: String,
    /// The federation's `[authorization] default` (gateways may be stricter still).
    default: routing::DefaultAction,
}

impl Network {
    /// The network from the catalog, the known gateways and the latest reports.
    pub fn new(
        catalog: &GlobalCatalog,
        gateways: &[GatewayState],
        samples: &BTreeMap<(ClusterId, ClusterId), LatencySample>,
    ) -> Network {
        let mut net = Network::default();
        for g in gateways {
            let c = &g.record.cluster;
            net.sources.insert(c.clone());
            if !g.record.tunnel_addresses.is_empty() && catalog.clusters.contains_key(c) {
                net.peers.insert(c.clone());
            }
        }
        for ((from, to), s) in samples {
            net.links.entry(from.clone()).or_default().insert(to.clone(), Link::from_sample(s));
        }
        net.known.extend(catalog.clusters.keys().cloned());
        net.known.extend(net.sources.iter().cloned());
        net.known.extend(samples.keys().flat_map(|(a, b)| [a.clone(), b.clone()]));
        net
    }

    /// Takes every source gateway to be of `trust_domain` (the federator's own: it does not
    /// record each gateway's).
    pub fn in_trust_domain(mut self, trust_domain: &str) -> Network {
        self.trust_domain = trust_domain.to_owned();
        self
    }

    /// Admits a source no list names under `default` (the federation's `[authorization]
    /// default`; it does not know each gateway's own).
    pub fn with_default(mut self, default: routing::DefaultAction) -> Network {
        self.default = default;
        self
    }

    fn link(&self, from: &ClusterId, to: &ClusterId) -> Link {
        self.links.get(from).and_then(|m| m.get(to)).copied().unwrap_or(Link::UNREPORTED)
    }

    /// Checks that every cluster in `down` is one the federator knows, naming the first that
    /// is not.
    pub fn check_known(&self, down: &BTreeSet<ClusterId>) -> Result<(), ApiError> {
        match down.iter().find(|c| !self.known.contains(*c)) {
            None => Ok(()),
            Some(c) => Err(ApiError::bad_field(
                "down",
                format!("down: unknown cluster {c}; known clusters: {}", join(self.known.iter())),
            )),
        }
    }

    /// The candidates for one service from `from`, with the clusters in `down` gone.
    fn candidates<'a>(
        &self,
        hosts: &[&'a ClusterId],
        from: &ClusterId,
        policy: Option<&Policy>,
        down: &BTreeSet<ClusterId>,
    ) -> Vec<Candidate<'a>> {
        // Remote gateways refuse a source the lists leave out; its own cluster's endpoints are
        // reached without them. The federator does not know each gateway's own `[authorization]
        // default` or trust domain: the preview takes the federation's, and its own domain.
        let allowed = match policy {
            Some(p) => routing::decide(p.allow.as_deref(), &p.deny, self.default, from, &self.trust_domain).allowed,
            None => self.default == routing::DefaultAction::Allow,
        };
        hosts
            .iter()
            .filter(|c| !down.contains(**c))
            .filter_map(|&c| {
                if c == from {
                    Some(Candidate { cluster: c, local: true, tier: Tier::Good, rtt: Some(Duration::ZERO), load: 0 })
                } else if allowed && self.peers.contains(c) {
                    let link = self.link(from, c);
                    Some(Candidate { cluster: c, local: false, tier: link.tier, rtt: link.rtt, load: 0 })
                } else {
                    None
                }
            })
            .collect()
    }
}

fn join<'a>(ids: impl Iterator<Item = &'a ClusterId>) -> String {
    ids.map(ClusterId::as_str).collect::<Vec<_>>().join(", ")
}

/// The clusters hosting a service: those with a ready endpoint on one of its ports (the
/// gateways' rule).
fn hosts(svc: &GlobalService) -> Vec<&ClusterId> {
    svc.clusters
        .iter()
        .filter(|(_, e)| {
            svc.ports.iter().any(|p| e.endpoints.get(&p.port).is_some_and(|eps| eps.iter().any(|x| x.ready)))
        })
        .map(|(c, _)| c)
        .collect()
}

/// One computed route and its expected RTT.
#[derive(Debug, Clone, PartialEq)]
struct Computed {
    route: Route,
    expected_rtt_ms: Option<f64>,
}

fn compute(cands: &[Candidate<'_>], policy: Option<&Policy>) -> Computed {
    let route = routing::route(cands, policy, &ChoiceConfig::default());
    let expected_rtt_ms = if route.shares.is_empty() {
        None
    } else {
        route
            .shares
            .iter()
            .map(|(c, share)| {
                let rtt = cands.iter().find(|x| x.cluster == c)?.rtt?;
                Some(share * rtt.as_secs_f64() * 1e3)
            })
            .sum::<Option<f64>>()
            // Microsecond precision: 0.3 × 12 ms is 3.6, not 3.5999999999999996.
            .map(|ms| (ms * 1e3).round() / 1e3)
    };
    Computed { route, expected_rtt_ms }
}

fn shares(r: &Route) -> Vec<RouteShare> {
    r.shares.iter().map(|(c, share)| RouteShare { cluster: c.to_string(), share: *share }).collect()
}

fn outcome(c: &Computed) -> RouteOutcome {
    RouteOutcome {
        preferred: c.route.preferred().map(ToString::to_string),
        shares: shares(&c.route),
        expected_rtt_ms: c.expected_rtt_ms,
        unreachable: c.route.shares.is_empty(),
    }
}

/// Query filters of the route views; all optional, combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RouteFilter {
    /// Only this service, as `namespace/name`.
    #[param(value_type = Option<String>, example = "prod/payments")]
    pub service: Option<ServiceKey>,
    /// Only routes from this cluster's gateways.
    #[param(value_type = Option<String>, example = "aws-1")]
    pub from: Option<ClusterId>,
}

impl RouteFilter {
    /// Parses `service` and `from`, naming the parameter on any error.
    pub fn from_query(pairs: &[(String, String)]) -> Result<RouteFilter, ApiError> {
        let mut f = RouteFilter::default();
        for (k, v) in unique(pairs)? {
            if !f.take(k, v)? {
                return Err(unknown_param(k, "service, from"));
            }
        }
        Ok(f)
    }

    /// Reads `k` if it is one of the filter's parameters; false when it is not.
    fn take(&mut self, k: &str, v: &str) -> Result<bool, ApiError> {
        match k {
            "service" => {
                let (ns, name) = v.split_once('/').ok_or_else(|| {
                    ApiError::bad_field(k, format!("service: {v:?} is not namespace/name (for example prod/payments)"))
                })?;
                let key = ServiceKey::new(ns, name).map_err(|e| ApiError::bad_field(k, format!("service: {e}")))?;
                self.service = Some(key);
            }
            "from" => self.from = Some(ClusterId::new(v).map_err(|e| ApiError::bad_field(k, format!("from: {e}")))?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The services to show, sorted.
    fn services<'a>(&self, catalog: &'a GlobalCatalog) -> Vec<(&'a ServiceKey, &'a GlobalService)> {
        match &self.service {
            Some(k) => catalog.services.get_key_value(k).into_iter().collect(),
            None => catalog.services.iter().collect(),
        }
    }

    /// The source clusters to show, sorted, without the ones in `down`.
    fn sources<'a>(&self, net: &'a Network, down: &BTreeSet<ClusterId>) -> Vec<&'a ClusterId> {
        net.sources.iter().filter(|c| self.from.as_ref().is_none_or(|f| f == *c) && !down.contains(*c)).collect()
    }
}

/// Query parameters of `GET /api/v1/whatif`.
#[derive(Debug, Clone, Default, PartialEq, Eq, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WhatIfQuery {
    /// Cluster ids to treat as gone, comma-separated (required).
    #[param(value_type = String, example = "gcp-1,azure-1")]
    pub down: BTreeSet<ClusterId>,
    /// Only this service, as `namespace/name`.
    #[param(value_type = Option<String>, example = "prod/payments")]
    pub service: Option<ServiceKey>,
    /// Only routes from this cluster's gateways.
    #[param(value_type = Option<String>, example = "aws-1")]
    pub from: Option<ClusterId>,
}

impl WhatIfQuery {
    /// Parses the query pairs, naming the parameter on any error. Whether the clusters exist
    /// is [`Network::check_known`]'s to say.
    pub fn from_query(pairs: &[(String, String)]) -> Result<WhatIfQuery, ApiError> {
        let mut filter = RouteFilter::default();
        let mut down = None;
        for (k, v) in unique(pairs)? {
            if k == "down" {
                down = Some(parse_down(v)?);
            } else if !filter.take(k, v)? {
                return Err(unknown_param(k, "down, service, from"));
            }
        }
        let down = down.ok_or_else(|| {
            ApiError::bad_field("down", "down: required; give the cluster ids to treat as gone, comma-separated")
        })?;
        Ok(WhatIfQuery { down, service: filter.service, from: filter.from })
    }

    /// The `service` and `from` filters.
    pub fn filter(&self) -> RouteFilter {
        RouteFilter { service: self.service.clone(), from: self.from.clone() }
    }
}

/// `a,b`: cluster ids, each valid, none empty or repeated, at least one.
fn parse_down(v: &str) -> Result<BTreeSet<ClusterId>, ApiError> {
    let bad = |msg: String| ApiError::bad_field("down", format!("down: {msg}"));
    if v.trim().is_empty() {
        return Err(bad("empty; give the cluster ids to treat as gone, comma-separated".into()));
    }
    let mut down = BTreeSet::new();
    for (i, part) in v.split(',').map(str::trim).enumerate() {
        if part.is_empty() {
            return Err(bad(format!("item {} of {v:?} is empty", i + 1)));
        }
        let c = ClusterId::new(part).map_err(|e| bad(e.to_string()))?;
        if !down.insert(c) {
            return Err(bad(format!("cluster {part} is listed more than once")));
        }
    }
    Ok(down)
}

/// Every service's route from every cluster with a gateway (as `filter` allows).
pub fn routes(
    catalog: &GlobalCatalog,
    policies: &BTreeMap<ServiceKey, Policy>,
    net: &Network,
    filter: &RouteFilter,
) -> Vec<ServiceRoute> {
    let none = BTreeSet::new();
    let sources = filter.sources(net, &none);
    let mut out = Vec::new();
    for (key, svc) in filter.services(catalog) {
        let hosts = hosts(svc);
        let policy = policies.get(key);
        for from in &sources {
            let c = compute(&net.candidates(&hosts, from, policy, &none), policy);
            out.push(ServiceRoute {
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                from: from.to_string(),
                preferred: c.route.preferred().map(ToString::to_string),
                shares: shares(&c.route),
                order: c.route.order.iter().map(ToString::to_string).collect(),
                expected_rtt_ms: c.expected_rtt_ms,
            });
        }
    }
    out
}

/// Every service's route from every remaining cluster (as `filter` allows), before and after
/// the clusters in `down` are gone: they are neither targets nor sources afterwards.
pub fn whatif(
    catalog: &GlobalCatalog,
    policies: &BTreeMap<ServiceKey, Policy>,
    net: &Network,
    filter: &RouteFilter,
    down: &BTreeSet<ClusterId>,
) -> WhatIfResponse {
    let none = BTreeSet::new();
    let sources = filter.sources(net, down);
    let mut routes = Vec::new();
    let mut summary = WhatIfSummary::default();
    for (key, svc) in filter.services(catalog) {
        let hosts = hosts(svc);
        let policy = policies.get(key);
        let (mut affected, mut lost) = (false, false);
        for from in &sources {
            let before = compute(&net.candidates(&hosts, from, policy, &none), policy);
            let after = compute(&net.candidates(&hosts, from, policy, down), policy);
            let changed = before.route.shares != after.route.shares;
            affected |= changed;
            lost |= !before.route.shares.is_empty() && after.route.shares.is_empty();
            summary.routes += 1;
            summary.routes_changed += usize::from(changed);
            routes.push(WhatIfRoute {
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                from: from.to_string(),
                before: outcome(&before),
                after: outcome(&after),
                changed,
            });
        }
        summary.services_affected += usize::from(affected);
        summary.services_unreachable += usize::from(lost);
    }
    WhatIfResponse { down: down.iter().map(ToString::to_string).collect(), summary, routes }
}

#[cfg(test)]
mod tests;
