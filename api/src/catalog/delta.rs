//! Deltas between catalog versions: what the federator sends after the first snapshot, and
//! what a gateway applies. `apply` checks the result against the sender's digest, so a gateway
//! that missed something notices and asks for a snapshot instead of drifting.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ClusterInfo, GlobalCatalog, GlobalService};
use crate::model::{ClusterId, ServiceKey};

/// The changes from one version to the next (possibly several versions apart).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Delta {
    pub from_version: u64,
    pub to_version: u64,
    pub to_digest: u64,
    pub clusters_upserted: Vec<ClusterInfo>,
    pub clusters_removed: Vec<ClusterId>,
    pub services_upserted: BTreeMap<ServiceKey, GlobalService>,
    pub services_removed: Vec<ServiceKey>,
}

impl Delta {
    /// Whether the delta carries no change.
    pub fn is_empty(&self) -> bool {
        self.clusters_upserted.is_empty()
            && self.clusters_removed.is_empty()
            && self.services_upserted.is_empty()
            && self.services_removed.is_empty()
    }
}

/// Why a delta could not be applied; the receiver should ask for a full snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    #[error("delta starts at version {delta_from} but the catalog is at {have}")]
    VersionGap { have: u64, delta_from: u64 },
    #[error("catalog after the delta has digest {got:#x}, the sender's is {want:#x}")]
    DigestMismatch { got: u64, want: u64 },
}

/// Content equality ignoring `observed_at`, which moves with every sync.
fn same_service(a: &GlobalService, b: &GlobalService) -> bool {
    a.ports == b.ports
        && a.conflicts == b.conflicts
        && a.clusters.len() == b.clusters.len()
        && a.clusters.iter().zip(&b.clusters).all(|((ca, ea), (cb, eb))| {
            ca == cb
                && ea.exported_at == eb.exported_at
                && ea.endpoints == eb.endpoints
                && ea.provenance.source == eb.provenance.source
                && ea.provenance.stale_since == eb.provenance.stale_since
        })
}

/// The delta that turns `old` into `new`. Its size follows the number of changed services,
/// not the catalog's size.
pub fn diff(old: &GlobalCatalog, new: &GlobalCatalog) -> Delta {
    let clusters_upserted =
        new.clusters.iter().filter(|(id, c)| old.clusters.get(*id) != Some(*c)).map(|(_, c)| c.clone()).collect();
    let clusters_removed = old.clusters.keys().filter(|id| !new.clusters.contains_key(*id)).cloned().collect();
    let services_upserted = new
        .services
        .iter()
        .filter(|(k, s)| old.services.get(*k).is_none_or(|o| !same_service(o, s)))
        .map(|(k, s)| (k.clone(), s.clone()))
        .collect();
    let services_removed = old.services.keys().filter(|k| !new.services.contains_key(*k)).cloned().collect();
    Delta {
        from_version: old.version,
        to_version: new.version,
        to_digest: new.digest,
        clusters_upserted,
        clusters_removed,
        services_upserted,
        services_removed,
    }
}

/// Applies `delta` to `base`, checking the version it starts from and the digest it ends at.
pub fn apply(base: &GlobalCatalog, delta: &Delta) -> Result<GlobalCatalog, DeltaError> {
    if base.version != delta.from_version {
        return Err(DeltaError::VersionGap { have: base.version, delta_from: delta.from_version });
    }
    let mut next = base.clone();
    for id in &delta.clusters_removed {
        next.clusters.remove(id);
    }
    for c in &delta.clusters_upserted {
        next.clusters.insert(c.id.clone(), c.clone());
    }
    for k in &delta.services_removed {
        next.services.remove(k);
    }
    for (k, s) in &delta.services_upserted {
        next.services.insert(k.clone(), s.clone());
    }
    next.version = delta.to_version;
    next.digest = digest(&next);
    if next.digest != delta.to_digest {
        return Err(DeltaError::DigestMismatch { got: next.digest, want: delta.to_digest });
    }
    Ok(next)
}

/// FNV-1a over the canonical JSON of the content, without version, digest and `observed_at`.
pub fn digest(c: &GlobalCatalog) -> u64 {
    let mut view = GlobalCatalog { version: 0, digest: 0, clusters: c.clusters.clone(), services: c.services.clone() };
    for svc in view.services.values_mut() {
        for ce in svc.clusters.values_mut() {
            ce.provenance.observed_at = 0;
        }
    }
    let bytes = serde_json::to_vec(&view).expect("catalog serializes");
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}
