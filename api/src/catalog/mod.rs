//! The catalog model shared by sources, the federator and gateways: what each source saw
//! (`SourceSnapshot`), the merged, versioned view (`GlobalCatalog`) and the deltas between
//! versions. Plain data and pure functions; the merge rules live in the federator.

mod delta;

pub use delta::{Delta, DeltaError, apply, apply_in_place, diff, digest, service_digest};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{Cloud, ClusterId, Protocol, ServiceKey};

/// Milliseconds since the Unix epoch: how every timestamp in the catalog is kept, so that
/// decision logic takes time as a plain argument.
pub type UnixMillis = u64;

/// Names a catalog source as configured (`aws-prod`, `gke-fleet`, `static`).
pub type SourceId = String;

/// A cluster as sources describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterInfo {
    pub id: ClusterId,
    pub cloud: Cloud,
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

/// One address serving one service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub address: SocketAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Ready per the source (EndpointSlice `ready`, Cloud Map health).
    #[serde(default = "yes")]
    pub ready: bool,
}

fn yes() -> bool {
    true
}

fn no_endpoints() -> Endpoints {
    Arc::from([])
}

/// A port's endpoints, sorted by address with no address twice. Shared rather than copied: a
/// source's snapshot, every catalog version merged from it and the API views all point at one
/// list, which is what keeps a 300k-endpoint catalog's memory to one copy.
pub type Endpoints = Arc<[Endpoint]>;

/// Puts `eps` in catalog order (sorted, one entry per address), reusing the list when it
/// already is.
pub fn normalize_endpoints(eps: &Endpoints) -> Endpoints {
    if eps.windows(2).all(|w| w[0].address < w[1].address) {
        return eps.clone();
    }
    let mut v = eps.to_vec();
    v.sort();
    v.dedup_by_key(|e| e.address);
    v.into()
}

/// One port of an export and the endpoints behind it in that cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortExport {
    pub port: u16,
    pub protocol: Protocol,
    #[serde(default = "no_endpoints")]
    pub endpoints: Endpoints,
}

/// A cluster's export of a service (an MCS ServiceExport, a Cloud Map service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Export {
    pub cluster: ClusterId,
    /// When the export was created: the MCS conflict rule lets the oldest export win.
    pub exported_at: UnixMillis,
    pub ports: Vec<PortExport>,
}

/// Everything one source saw in one successful sync.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SourceSnapshot {
    pub clusters: Vec<ClusterInfo>,
    pub services: BTreeMap<ServiceKey, Vec<Export>>,
    /// Clusters of a multi-cluster source (a fleet) that are failing while the rest syncs: their
    /// exports in `services` are the last good ones, and the federator marks them stale from
    /// when it first saw the failure. Empty for single-cluster sources. Not persisted: the
    /// source reports it again after a restart.
    #[serde(skip)]
    pub failing: BTreeMap<ClusterId, crate::source::SourceError>,
}

/// A port of the merged service: the winning definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortSpec {
    pub port: u16,
    pub protocol: Protocol,
}

/// Where one cluster's part of a merged service came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    pub source: SourceId,
    /// When that source last synced successfully. Informational: it does not change the
    /// catalog's digest, so a sync that finds nothing new pushes nothing.
    pub observed_at: UnixMillis,
    /// Set while the source is failing: its last good data is kept, stale since then. The age
    /// is `now - observed_at`; a fixed instant keeps the content stable while it ages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_since: Option<UnixMillis>,
}

/// One cluster's share of a merged service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterExport {
    pub exported_at: UnixMillis,
    /// Endpoints per service port (only ports that agree with the winning definition).
    pub endpoints: BTreeMap<u16, Endpoints>,
    pub provenance: Provenance,
}

/// Why a cluster's export does not (fully) agree with the winning definition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Conflict {
    pub cluster: ClusterId,
    /// The cluster whose older export won.
    pub winner: ClusterId,
    pub reason: String,
}

/// A service across every cluster that exports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalService {
    pub ports: Vec<PortSpec>,
    pub clusters: BTreeMap<ClusterId, ClusterExport>,
    /// The MCS ServiceExportConflict condition, per losing cluster.
    pub conflicts: Vec<Conflict>,
}

/// The merged catalog the federator serves and pushes to gateways.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GlobalCatalog {
    /// Increases by one whenever the content changes; never for a no-op merge.
    pub version: u64,
    /// Hash of the content (not of the version): equal digests mean equal catalogs.
    pub digest: u64,
    pub clusters: BTreeMap<ClusterId, ClusterInfo>,
    pub services: BTreeMap<ServiceKey, GlobalService>,
}
