//! Pure functions from the federator's state to API responses, and query-string parsing.
//! No I/O and time as an argument, so that tests can call them directly.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use skybridge_api::catalog::{ClusterExport, GlobalCatalog, GlobalService, SourceId, UnixMillis};
use skybridge_api::model::{ClusterId, ServiceKey};
use utoipa::IntoParams;

use crate::core::SourceStatus;
use crate::state::{GatewayState, LatencySample};
use crate::store::Policy;

use super::dto::{
    ClusterDto, ClustersResponse, ConflictDto, EndpointDto, GatewayCounts, GatewayDto, GatewaysResponse, LatencyPath,
    LatencyResponse, PortDto, ProvenanceDto, ServiceClusterDetail, ServiceClusterSummary, ServiceDetail, ServiceRoute,
    ServiceSummary, ServicesResponse, SourcesResponse,
};
use super::error::ApiError;
use super::policy::PolicyDto;

/// The clusters of the catalog with their gateways' connection counts.
pub fn clusters(catalog: &GlobalCatalog, gateways: &[GatewayState]) -> ClustersResponse {
    let mut counts: BTreeMap<&ClusterId, GatewayCounts> = BTreeMap::new();
    for g in gateways {
        let c = counts.entry(&g.record.cluster).or_default();
        c.total += 1;
        if g.connected {
            c.connected += 1;
        } else {
            c.disconnected += 1;
        }
    }
    let clusters = catalog
        .clusters
        .values()
        .map(|info| ClusterDto {
            id: info.id.to_string(),
            cloud: info.cloud.into(),
            region: info.region.clone(),
            network: info.network.clone(),
            gateways: counts.get(&info.id).cloned().unwrap_or_default(),
        })
        .collect();
    ClustersResponse { catalog_version: catalog.version, clusters }
}

/// Every gateway replica, sorted by cluster then instance.
pub fn gateways(mut all: Vec<GatewayState>) -> GatewaysResponse {
    all.sort_by(|a, b| (&a.record.cluster, &a.record.instance).cmp(&(&b.record.cluster, &b.record.instance)));
    let gateways = all
        .into_iter()
        .map(|g| GatewayDto {
            cluster: g.record.cluster.to_string(),
            instance: g.record.instance,
            cloud: g.cloud,
            region: g.region,
            version: g.record.version,
            tunnel_addresses: g.record.tunnel_addresses,
            connected: g.connected,
            connected_since: g.connected_since,
            last_report: g.last_report,
            last_seen: g.record.last_seen,
            acked_version: g.record.acked_version,
            nacks: g.nacks,
            last_nack: g.last_nack,
            federator: g.connected.then_some(g.replica).flatten(),
        })
        .collect();
    GatewaysResponse { gateways }
}

/// Query parameters of `GET /api/v1/services`; all optional, combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ServiceFilter {
    /// Only services in this namespace.
    #[param(value_type = Option<String>)]
    pub namespace: Option<String>,
    /// Only services that this cluster exports.
    #[param(value_type = Option<String>)]
    pub cluster: Option<ClusterId>,
    /// `true`: only services with a conflict; `false`: only services without.
    pub conflicts: Option<bool>,
    /// `true`: only services with stale data from some cluster; `false`: only fully fresh ones.
    pub stale: Option<bool>,
}

impl ServiceFilter {
    /// Parses the query pairs, naming the parameter on any error.
    pub fn from_query(pairs: &[(String, String)]) -> Result<ServiceFilter, ApiError> {
        let mut f = ServiceFilter::default();
        for (k, v) in unique(pairs)? {
            match k {
                "namespace" => f.namespace = Some(label(k, v)?),
                "cluster" => f.cluster = Some(ClusterId::new(v).map_err(|e| ApiError::bad_field(k, e.to_string()))?),
                "conflicts" => f.conflicts = Some(boolean(k, v)?),
                "stale" => f.stale = Some(boolean(k, v)?),
                _ => return Err(unknown_param(k, "namespace, cluster, conflicts, stale")),
            }
        }
        Ok(f)
    }

    fn matches(&self, key: &ServiceKey, svc: &GlobalService) -> bool {
        self.namespace.as_ref().is_none_or(|ns| *ns == key.namespace)
            && self.cluster.as_ref().is_none_or(|c| svc.clusters.contains_key(c))
            && self.conflicts.is_none_or(|want| want == has_conflicts(svc))
            && self.stale.is_none_or(|want| want == is_stale(svc))
    }
}

/// Query parameters of `GET /api/v1/events`.
#[derive(Debug, Clone, PartialEq, Eq, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events with a larger `seq` (for paging forward).
    pub after: Option<u64>,
    /// At most this many, the most recent ones (1..=1000, default 100).
    #[param(minimum = 1, maximum = 1000, default = 100)]
    pub limit: usize,
}

impl EventsQuery {
    /// The largest `limit` accepted: bounds one response's size.
    pub const MAX_LIMIT: usize = 1000;

    /// Parses the query pairs, naming the parameter on any error.
    pub fn from_query(pairs: &[(String, String)]) -> Result<EventsQuery, ApiError> {
        let mut q = EventsQuery { after: None, limit: 100 };
        for (k, v) in unique(pairs)? {
            match k {
                "after" => q.after = Some(number(k, v)?),
                "limit" => {
                    let n = number(k, v)?;
                    if n == 0 || n > EventsQuery::MAX_LIMIT as u64 {
                        return Err(ApiError::bad_field(
                            k,
                            format!("limit: {n} is out of range 1..={}", EventsQuery::MAX_LIMIT),
                        ));
                    }
                    q.limit = n as usize;
                }
                _ => return Err(unknown_param(k, "after, limit")),
            }
        }
        Ok(q)
    }
}

/// Rejects query strings that give a parameter twice: which one would win is not obvious.
pub(super) fn unique(pairs: &[(String, String)]) -> Result<impl Iterator<Item = (&str, &str)>, ApiError> {
    let mut seen = BTreeSet::new();
    for (k, _) in pairs {
        if !seen.insert(k.as_str()) {
            return Err(ApiError::bad_field(k.clone(), format!("query parameter {k} is given more than once")));
        }
    }
    Ok(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// A 400 for a query parameter the endpoint does not take, listing those it does.
pub(super) fn unknown_param(k: &str, known: &str) -> ApiError {
    ApiError::bad_field(k, format!("unknown query parameter {k:?}; expected one of {known}"))
}

fn label(field: &str, v: &str) -> Result<String, ApiError> {
    // ServiceKey::new validates both labels; the name half is a known-good placeholder.
    ServiceKey::new(v, "x").map(|k| k.namespace).map_err(|e| ApiError::bad_field(field, e.to_string()))
}

fn boolean(field: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ApiError::bad_field(field, format!("{field}: {v:?} is not a boolean; use true or false"))),
    }
}

fn number(field: &str, v: &str) -> Result<u64, ApiError> {
    v.parse().map_err(|_| ApiError::bad_field(field, format!("{field}: {v:?} is not a non-negative integer")))
}

/// Validates a `{namespace}/{name}` path, naming the bad segment.
pub fn service_key(namespace: &str, name: &str) -> Result<ServiceKey, ApiError> {
    let namespace = label("namespace", namespace)?;
    ServiceKey::new(&namespace, name).map_err(|e| ApiError::bad_field("name", e.to_string()))
}

fn has_conflicts(svc: &GlobalService) -> bool {
    !svc.conflicts.is_empty()
}

fn is_stale(svc: &GlobalService) -> bool {
    svc.clusters.values().any(|c| c.provenance.stale_since.is_some())
}

/// (ready, total) endpoints of one cluster's export, counted by IP address.
fn endpoint_counts(ce: &ClusterExport) -> (usize, usize) {
    let mut by_ip: BTreeMap<IpAddr, bool> = BTreeMap::new();
    for e in ce.endpoints.values().flat_map(|eps| eps.iter()) {
        let ready = by_ip.entry(e.address.ip()).or_insert(true);
        *ready &= e.ready;
    }
    (by_ip.values().filter(|r| **r).count(), by_ip.len())
}

fn ports(svc: &GlobalService) -> Vec<PortDto> {
    svc.ports.iter().map(|p| PortDto { port: p.port, protocol: p.protocol.into() }).collect()
}

/// The services matching `filter`, sorted by namespace then name.
pub fn services(catalog: &GlobalCatalog, filter: &ServiceFilter) -> ServicesResponse {
    let services = catalog
        .services
        .iter()
        .filter(|(k, s)| filter.matches(k, s))
        .map(|(key, svc)| ServiceSummary {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            fqdn: key.fqdn(),
            ports: ports(svc),
            clusters: svc
                .clusters
                .iter()
                .map(|(id, ce)| {
                    let (ready, total) = endpoint_counts(ce);
                    ServiceClusterSummary {
                        cluster: id.to_string(),
                        ready,
                        total,
                        stale: ce.provenance.stale_since.is_some(),
                    }
                })
                .collect(),
            has_conflicts: has_conflicts(svc),
            stale: is_stale(svc),
        })
        .collect();
    ServicesResponse { catalog_version: catalog.version, services }
}

/// One service in full, or `None` if the catalog does not have it. `now` computes data ages;
/// `synced` is each healthy source's last successful sync, which a stored row's `observed_at`
/// may trail (rows are only rewritten when their content changes).
pub fn service_detail(
    catalog: &GlobalCatalog,
    key: &ServiceKey,
    policy: Option<&Policy>,
    synced: &BTreeMap<String, UnixMillis>,
    now: UnixMillis,
) -> Option<ServiceDetail> {
    let svc = catalog.services.get(key)?;
    let clusters = svc
        .clusters
        .iter()
        .map(|(id, ce)| {
            let (ready, total) = endpoint_counts(ce);
            let mut endpoints: Vec<EndpointDto> = ce
                .endpoints
                .iter()
                .flat_map(|(port, eps)| {
                    eps.iter().map(|e| EndpointDto {
                        port: *port,
                        address: e.address.to_string(),
                        zone: e.zone.clone(),
                        ready: e.ready,
                    })
                })
                .collect();
            endpoints.sort_by(|a, b| (a.port, &a.address).cmp(&(b.port, &b.address)));
            let p = &ce.provenance;
            let fresher = synced.get(&p.source).copied().filter(|_| p.stale_since.is_none());
            let observed_at = fresher.map_or(p.observed_at, |t| t.max(p.observed_at));
            ServiceClusterDetail {
                cluster: id.to_string(),
                exported_at: ce.exported_at,
                ready,
                total,
                endpoints,
                provenance: ProvenanceDto {
                    source: p.source.clone(),
                    observed_at,
                    stale_since: p.stale_since,
                    stale_for_ms: p.stale_since.map(|_| now.saturating_sub(p.observed_at)),
                },
            }
        })
        .collect();
    let conflicts = svc
        .conflicts
        .iter()
        .map(|c| ConflictDto { cluster: c.cluster.to_string(), winner: c.winner.to_string(), reason: c.reason.clone() })
        .collect();
    Some(ServiceDetail {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        fqdn: key.fqdn(),
        catalog_version: catalog.version,
        ports: ports(svc),
        clusters,
        conflicts,
        has_conflicts: has_conflicts(svc),
        stale: is_stale(svc),
        policy: policy.map(PolicyDto::from),
        proofs: Vec::new(),
    })
}

/// The latency matrix (every measured path plus the sorted set of clusters for rows/columns)
/// with the routes computed from it.
pub fn latency(
    catalog: &GlobalCatalog,
    samples: &BTreeMap<(ClusterId, ClusterId), LatencySample>,
    routes: Vec<ServiceRoute>,
) -> LatencyResponse {
    let mut clusters: BTreeSet<&ClusterId> = catalog.clusters.keys().collect();
    clusters.extend(samples.keys().flat_map(|(a, b)| [a, b]));
    let paths = samples
        .iter()
        .map(|((from, to), s)| LatencyPath {
            from: from.to_string(),
            to: to.to_string(),
            rtt_ms: s.rtt_ms,
            rank_rtt_ms: s.rank_rtt_ms,
            state: s.state.clone(),
            transport: s.transport.clone(),
            transport_for_s: s.transport_for_s,
            reported_at: s.reported_at,
            by: s.by.clone(),
        })
        .collect();
    LatencyResponse { clusters: clusters.into_iter().map(ToString::to_string).collect(), paths, routes }
}

/// Source health keyed by source id.
pub fn sources(all: BTreeMap<SourceId, SourceStatus>) -> SourcesResponse {
    SourcesResponse { sources: all.into_iter().map(|(k, v)| (k, v.into())).collect() }
}
