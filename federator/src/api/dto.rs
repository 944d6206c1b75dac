//! The API's JSON shapes. They mirror the catalog and state types on purpose rather than
//! serializing them directly: the REST contract (and the OpenAPI document generated from these
//! definitions) must not change because an internal type did. Instants are Unix milliseconds,
//! spelled `u64` here because utoipa would document the `u64` alias as a named schema.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use skybridge_api::model::{Cloud, Protocol};
use utoipa::ToSchema;

use crate::core::SourceStatus;
use crate::store::Event;

use super::policy::PolicyDto;

/// The cloud a cluster runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CloudDto {
    Aws,
    Gcp,
    Azure,
    Other,
}

impl From<Cloud> for CloudDto {
    fn from(c: Cloud) -> Self {
        match c {
            Cloud::Aws => CloudDto::Aws,
            Cloud::Gcp => CloudDto::Gcp,
            Cloud::Azure => CloudDto::Azure,
            Cloud::Other => CloudDto::Other,
        }
    }
}

/// How clients speak a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolDto {
    Tls,
    Http,
    Tcp,
}

impl From<Protocol> for ProtocolDto {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Tls => ProtocolDto::Tls,
            Protocol::Http => ProtocolDto::Http,
            Protocol::Tcp => ProtocolDto::Tcp,
        }
    }
}

/// One port of a service (the winning definition when clusters disagree).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PortDto {
    pub port: u16,
    pub protocol: ProtocolDto,
}

/// How many of a cluster's gateway replicas are connected to this federator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GatewayCounts {
    pub total: usize,
    pub connected: usize,
    pub disconnected: usize,
}

/// A cluster from the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterDto {
    #[schema(example = "aws-prod-use1")]
    pub id: String,
    pub cloud: CloudDto,
    #[schema(example = "us-east-1")]
    pub region: String,
    pub network: Option<String>,
    pub gateways: GatewayCounts,
}

/// `GET /api/v1/clusters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClustersResponse {
    /// The catalog version the list was taken from.
    pub catalog_version: u64,
    /// Sorted by id.
    pub clusters: Vec<ClusterDto>,
}

/// One gateway replica and its control-stream state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GatewayDto {
    pub cluster: String,
    /// Instance (pod) name, unique within the cluster.
    pub instance: String,
    pub cloud: String,
    pub region: String,
    /// Gateway software version from its Hello.
    pub version: String,
    pub tunnel_addresses: Vec<String>,
    pub connected: bool,
    /// Unix ms; null while disconnected.
    pub connected_since: Option<u64>,
    /// Unix ms of the last RTT/health report.
    pub last_report: Option<u64>,
    /// Unix ms the federator last heard from it (persisted across restarts).
    pub last_seen: u64,
    /// The last catalog version the gateway ACKed.
    pub acked_version: u64,
    /// NACKs received on the current connection.
    pub nacks: u64,
    pub last_nack: Option<String>,
    /// The federator replica holding its control stream (null while disconnected).
    #[serde(default)]
    pub federator: Option<String>,
}

/// `GET /api/v1/gateways`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GatewaysResponse {
    /// Sorted by cluster, then instance.
    pub gateways: Vec<GatewayDto>,
}

/// A cluster hosting a service, with endpoint counts. Endpoints are counted by IP address
/// (one pod serving several ports counts once); an address is ready when it is ready on every
/// port it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServiceClusterSummary {
    pub cluster: String,
    pub ready: usize,
    pub total: usize,
    /// This cluster's data comes from a failing source (kept, not dropped).
    pub stale: bool,
}

/// One item of `GET /api/v1/services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServiceSummary {
    pub namespace: String,
    pub name: String,
    #[schema(example = "payments.prod.svc.clusterset.local")]
    pub fqdn: String,
    pub ports: Vec<PortDto>,
    pub clusters: Vec<ServiceClusterSummary>,
    /// Some cluster's export disagrees with the winning definition.
    pub has_conflicts: bool,
    /// Some cluster's data comes from a failing source.
    pub stale: bool,
}

/// `GET /api/v1/services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServicesResponse {
    pub catalog_version: u64,
    /// Sorted by namespace, then name.
    pub services: Vec<ServiceSummary>,
}

/// One endpoint behind one service port in one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EndpointDto {
    /// The service port this endpoint serves.
    pub port: u16,
    /// Target `ip:port`.
    #[schema(example = "10.0.1.7:8443")]
    pub address: String,
    pub zone: Option<String>,
    pub ready: bool,
}

/// Where a cluster's share of a service came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProvenanceDto {
    /// The catalog source, as configured.
    pub source: String,
    /// Unix ms of the source's last successful sync.
    pub observed_at: u64,
    /// Unix ms since which the source has been failing; null when healthy.
    pub stale_since: Option<u64>,
    /// Age of the data (`now - observed_at`) while stale; null when healthy.
    pub stale_for_ms: Option<u64>,
}

/// One cluster's share of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServiceClusterDetail {
    pub cluster: String,
    /// Unix ms the cluster exported the service (oldest export wins conflicts).
    pub exported_at: u64,
    pub ready: usize,
    pub total: usize,
    /// Sorted by port, then address.
    pub endpoints: Vec<EndpointDto>,
    pub provenance: ProvenanceDto,
}

/// A cluster whose export disagrees with the winning definition (MCS ServiceExportConflict).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConflictDto {
    pub cluster: String,
    /// The cluster whose older export won.
    pub winner: String,
    pub reason: String,
}

/// `GET /api/v1/services/{namespace}/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServiceDetail {
    pub namespace: String,
    pub name: String,
    pub fqdn: String,
    pub catalog_version: u64,
    pub ports: Vec<PortDto>,
    pub clusters: Vec<ServiceClusterDetail>,
    pub conflicts: Vec<ConflictDto>,
    pub has_conflicts: bool,
    pub stale: bool,
    /// The service's routing policy; null when none is set.
    pub policy: Option<PolicyDto>,
    /// The latest reachability proofs of the service (see `GET /api/v1/proofs`).
    #[serde(default)]
    pub proofs: Vec<ProofDto>,
}

/// One reachability proof: a gateway of `from` asked the gateway of `to` to connect to an
/// endpoint of `service:port`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProofDto {
    /// `namespace/name`.
    pub service: String,
    pub port: u16,
    pub from: String,
    pub to: String,
    pub ok: bool,
    /// When it was made (Unix ms).
    pub at: u64,
    /// Why it failed: the remote gateway's refusal (`denied`, `no_route`, `upstream_unreachable`)
    /// with its reason, or the stream error; null when it succeeded.
    pub error: Option<String>,
    /// Time to the answer; null without one.
    pub took_ms: Option<f64>,
    /// The gateway instance that made it.
    pub by: String,
}

/// `GET /api/v1/proofs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProofsResponse {
    /// Failing proofs first, then by service, port, source and target.
    pub proofs: Vec<ProofDto>,
    pub failing: usize,
}

/// One measured path between two clusters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LatencyPath {
    pub from: String,
    pub to: String,
    /// Smoothed RTT; null when the path is down or not measured.
    pub rtt_ms: Option<f64>,
    /// The RTT the gateway ranks this peer by (the smoothed RTT, moved only past a hysteresis
    /// band); null when not measured or not reported.
    pub rank_rtt_ms: Option<f64>,
    /// One of `unknown`, `healthy`, `suspect`, `down`, `probing` (as the gateway reports it).
    #[schema(example = "healthy")]
    pub state: String,
    /// The transport the path's new streams use: `quic`, or `tcp` when UDP is blocked on the
    /// path and the gateway fell back to TLS over TCP.
    #[schema(example = "quic")]
    pub transport: String,
    /// Seconds on that transport since it last changed; null when it never changed.
    pub transport_for_s: Option<u64>,
    /// Unix ms of the report.
    pub reported_at: u64,
    /// The gateway instance that measured it.
    pub by: String,
}

/// `GET /api/v1/latency`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LatencyResponse {
    /// Every cluster in the catalog or in a measurement, sorted: the matrix's rows and columns.
    pub clusters: Vec<String>,
    /// Sorted by `from`, then `to`.
    pub paths: Vec<LatencyPath>,
    /// Where each service's new connections go from each cluster with a gateway. Sorted by
    /// namespace, name, then `from`.
    pub routes: Vec<ServiceRoute>,
}

/// The share of a service's first tries that one cluster takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RouteShare {
    pub cluster: String,
    /// 0..=1; a route's shares sum to 1.
    #[schema(example = 0.5)]
    pub share: f64,
}

/// Where one service's new connections go from one cluster's gateways, as the gateways' route
/// choice computes it from the catalog, the reported health and RTTs, and the policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServiceRoute {
    pub namespace: String,
    pub name: String,
    /// The cluster whose gateways the connections start from.
    pub from: String,
    /// The cluster taking the largest share of first tries; null when no cluster can take the
    /// service from here.
    pub preferred: Option<String>,
    /// Clusters that take first tries, largest share first.
    pub shares: Vec<RouteShare>,
    /// Every candidate cluster in the order tried after the first.
    pub order: Vec<String>,
    /// Σ share × RTT (the local cluster counts 0); null without a route or when a sharing
    /// cluster's RTT is not measured.
    pub expected_rtt_ms: Option<f64>,
}

/// One side of a what-if comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RouteOutcome {
    /// The cluster taking the largest share of first tries; null when unreachable.
    pub preferred: Option<String>,
    /// Largest share first; empty when unreachable.
    pub shares: Vec<RouteShare>,
    pub expected_rtt_ms: Option<f64>,
    /// No cluster can take the service from here.
    pub unreachable: bool,
}

/// A service's route from one cluster, before and after the listed clusters go down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WhatIfRoute {
    pub namespace: String,
    pub name: String,
    pub from: String,
    pub before: RouteOutcome,
    pub after: RouteOutcome,
    /// The first tries move (the shares differ). Losing a cluster that was only a fallback
    /// does not count.
    pub changed: bool,
}

/// Totals over the routes returned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WhatIfSummary {
    /// Routes compared (services × source clusters, after the filters).
    pub routes: usize,
    /// Routes whose first tries move.
    pub routes_changed: usize,
    /// Services with at least one changed route.
    pub services_affected: usize,
    /// Services that some source cluster could reach before and no longer can.
    pub services_unreachable: usize,
}

/// `GET /api/v1/whatif`. Also `Deserialize`: `skybridge whatif` reads it with this type, so
/// the client cannot drift from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WhatIfResponse {
    /// The clusters treated as gone, sorted.
    pub down: Vec<String>,
    pub summary: WhatIfSummary,
    /// Every service from every remaining source cluster (after the filters), sorted by
    /// namespace, name, then `from`.
    pub routes: Vec<WhatIfRoute>,
}

/// A catalog source's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SourceStatusDto {
    #[schema(example = "static")]
    pub kind: String,
    /// Unix ms of the last successful sync.
    pub last_success: Option<u64>,
    /// Unix ms of the last sync attempt.
    pub last_attempt: Option<u64>,
    pub consecutive_failures: u32,
    pub total_failures: u64,
    pub last_error: Option<String>,
    /// One of `auth`, `not_found`, `throttled`, `unavailable`, `malformed`.
    pub last_error_kind: Option<String>,
    /// Set while failing: the source's last good data is served, stale since then.
    pub stale_since: Option<u64>,
    /// Services in the source's last good snapshot.
    pub services: usize,
    /// Clusters of a fleet source that fail while the others sync, keyed by cluster id: their
    /// last good exports are served, stale since `since`.
    pub failing_clusters: BTreeMap<String, ClusterFailureDto>,
    /// The source's last answer would remove most of its services: held, the previous data is
    /// served. Null when nothing is held.
    #[serde(default)]
    pub held_removal: Option<HeldRemovalDto>,
}

/// A held source answer (the mass-removal guard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HeldRemovalDto {
    /// Unix ms when the answer was first seen.
    pub since: u64,
    /// Services it would remove, of how many the source has now.
    pub removed: usize,
    pub of: usize,
    /// Unix ms when it applies unless another answer comes first or it is confirmed sooner.
    pub applies_at: u64,
}

/// One failing cluster of a fleet source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterFailureDto {
    /// Unix ms when the federator first saw the cluster failing.
    pub since: u64,
    /// One of `auth`, `not_found`, `throttled`, `unavailable`, `malformed`.
    pub kind: String,
    pub error: String,
}

impl From<SourceStatus> for SourceStatusDto {
    fn from(s: SourceStatus) -> Self {
        SourceStatusDto {
            kind: s.kind,
            last_success: s.last_success,
            last_attempt: s.last_attempt,
            consecutive_failures: s.consecutive_failures,
            total_failures: s.total_failures,
            last_error: s.last_error,
            last_error_kind: s.last_error_kind,
            stale_since: s.stale_since,
            services: s.services,
            held_removal: s.held_removal.map(|h| HeldRemovalDto {
                since: h.since,
                removed: h.removed,
                of: h.of,
                applies_at: h.applies_at,
            }),
            failing_clusters: s
                .failing_clusters
                .into_iter()
                .map(|(c, f)| (c.to_string(), ClusterFailureDto { since: f.since, kind: f.kind, error: f.error }))
                .collect(),
        }
    }
}

/// `GET /api/v1/sources`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SourcesResponse {
    /// Keyed by source id.
    pub sources: BTreeMap<String, SourceStatusDto>,
}

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventDto {
    /// Increasing; use it as `after` to page, or as `Last-Event-ID` to resume the stream.
    pub seq: u64,
    /// Unix ms.
    pub at: u64,
    #[schema(example = "policy")]
    pub kind: String,
    pub message: String,
}

impl From<Event> for EventDto {
    fn from(e: Event) -> Self {
        EventDto { seq: e.seq, at: e.at, kind: e.kind, message: e.message }
    }
}

/// `GET /api/v1/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventsResponse {
    /// Oldest first.
    pub events: Vec<EventDto>,
}

/// The `lagged` SSE event's data: the stream dropped events because the client read too slowly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LaggedDto {
    pub missed: u64,
}
