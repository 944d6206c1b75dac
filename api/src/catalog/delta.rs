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
    let mut next = base.clone();
    apply_in_place(&mut next, delta)?;
    Ok(next)
}

/// Applies `delta` to `catalog` in place, in time proportional to the change (the digest is
/// updated incrementally). On `VersionGap` nothing changed; on `DigestMismatch` the catalog
/// holds the delta applied but is not the sender's: replace it with a snapshot.
pub fn apply_in_place(catalog: &mut GlobalCatalog, delta: &Delta) -> Result<(), DeltaError> {
    if catalog.version != delta.from_version {
        return Err(DeltaError::VersionGap { have: catalog.version, delta_from: delta.from_version });
    }
    let mut services_sum = catalog.digest.wrapping_sub(clusters_hash(&catalog.clusters));
    for id in &delta.clusters_removed {
        catalog.clusters.remove(id);
    }
    for c in &delta.clusters_upserted {
        catalog.clusters.insert(c.id.clone(), c.clone());
    }
    for k in &delta.services_removed {
        if let Some(old) = catalog.services.remove(k) {
            services_sum = services_sum.wrapping_sub(service_hash(k, &old));
        }
    }
    for (k, s) in &delta.services_upserted {
        if let Some(old) = catalog.services.insert(k.clone(), s.clone()) {
            services_sum = services_sum.wrapping_sub(service_hash(k, &old));
        }
        services_sum = services_sum.wrapping_add(service_hash(k, s));
    }
    catalog.version = delta.to_version;
    catalog.digest = clusters_hash(&catalog.clusters).wrapping_add(services_sum);
    if catalog.digest != delta.to_digest {
        return Err(DeltaError::DigestMismatch { got: catalog.digest, want: delta.to_digest });
    }
    Ok(())
}

/// FNV-1a as an `io::Write`, so values are hashed while they are serialized (no buffer).
struct Fnv(u64);

impl std::io::Write for Fnv {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for b in buf {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// splitmix64's finalizer: spreads each service hash before they are summed.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hash_json(v: &impl Serialize) -> u64 {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    serde_json::to_writer(&mut h, v).expect("catalog values serialize");
    h.0
}

fn clusters_hash(c: &BTreeMap<ClusterId, ClusterInfo>) -> u64 {
    mix(hash_json(c))
}

/// A service's routing content, without `observed_at` (which moves with every sync).
#[derive(Serialize)]
struct ServiceView<'a> {
    key: &'a ServiceKey,
    ports: &'a [super::PortSpec],
    clusters: Vec<ExportView<'a>>,
    conflicts: &'a [super::Conflict],
}

/// One cluster's export inside [`ServiceView`].
#[derive(Serialize)]
struct ExportView<'a> {
    cluster: &'a ClusterId,
    exported_at: u64,
    endpoints: &'a BTreeMap<u16, super::Endpoints>,
    source: &'a str,
    stale_since: Option<u64>,
}

/// A service's content hash as the digest counts it (without `observed_at`): equal hashes mean
/// the same routing content, so stores use it to skip rewriting unchanged rows.
pub fn service_digest(k: &ServiceKey, s: &GlobalService) -> u64 {
    service_hash(k, s)
}

fn service_hash(k: &ServiceKey, s: &GlobalService) -> u64 {
    let view = ServiceView {
        key: k,
        ports: &s.ports,
        clusters: s
            .clusters
            .iter()
            .map(|(c, e)| ExportView {
                cluster: c,
                exported_at: e.exported_at,
                endpoints: &e.endpoints,
                source: &e.provenance.source,
                stale_since: e.provenance.stale_since,
            })
            .collect(),
        conflicts: &s.conflicts,
    };
    mix(hash_json(&view))
}

/// The content digest: the clusters' hash plus the (order-independent) sum of every service's
/// hash, so that a delta can update it in time proportional to the change. Version, digest and
/// `observed_at` are not part of it.
pub fn digest(c: &GlobalCatalog) -> u64 {
    c.services.iter().fold(clusters_hash(&c.clusters), |acc, (k, s)| acc.wrapping_add(service_hash(k, s)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ClusterExport, Endpoint, PortSpec, Provenance};
    use crate::model::{Cloud, Protocol};

    fn catalog(n: usize) -> GlobalCatalog {
        let id = ClusterId::new("aws-1").unwrap();
        let mut c = GlobalCatalog {
            version: 1,
            digest: 0,
            clusters: BTreeMap::from([(
                id.clone(),
                ClusterInfo { id: id.clone(), cloud: Cloud::Aws, region: "r".into(), network: None },
            )]),
            services: (0..n)
                .map(|i| {
                    let svc = GlobalService {
                        ports: vec![PortSpec { port: 80, protocol: Protocol::Http }],
                        clusters: BTreeMap::from([(
                            id.clone(),
                            ClusterExport {
                                exported_at: 1,
                                endpoints: BTreeMap::from([(
                                    80,
                                    [Endpoint {
                                        address: format!("10.0.0.{i}:80").parse().unwrap(),
                                        zone: None,
                                        ready: true,
                                    }]
                                    .into(),
                                )]),
                                provenance: Provenance { source: "s".into(), observed_at: 5, stale_since: None },
                            },
                        )]),
                        conflicts: vec![],
                    };
                    (ServiceKey::new("prod", &format!("s{i}")).unwrap(), svc)
                })
                .collect(),
        };
        c.digest = digest(&c);
        c
    }

    #[test]
    fn digest_ignores_observed_at_and_order_but_sees_content() {
        let a = catalog(3);
        let mut b = a.clone();
        for s in b.services.values_mut() {
            for e in s.clusters.values_mut() {
                e.provenance.observed_at = 99;
            }
        }
        assert_eq!(digest(&a), digest(&b));
        let mut c = a.clone();
        c.services.values_mut().next().unwrap().clusters.values_mut().next().unwrap().provenance.stale_since = Some(1);
        assert_ne!(digest(&a), digest(&c));
        let mut d = a.clone();
        d.clusters.values_mut().next().unwrap().region = "other".into();
        assert_ne!(digest(&a), digest(&d));
    }

    #[test]
    fn in_place_apply_matches_a_full_recompute() {
        let old = catalog(50);
        let mut new = catalog(49);
        let k = ServiceKey::new("prod", "s7").unwrap();
        new.services.get_mut(&k).unwrap().ports[0].protocol = Protocol::Tcp;
        new.services.insert(ServiceKey::new("prod", "fresh").unwrap(), old.services.values().next().unwrap().clone());
        new.version = 2;
        new.digest = digest(&new);
        let d = diff(&old, &new);
        let mut applied = old.clone();
        apply_in_place(&mut applied, &d).unwrap();
        assert_eq!(applied.digest, digest(&applied), "incremental digest equals a full recompute");
        assert_eq!(applied.digest, new.digest);
        assert_eq!(applied.services.len(), new.services.len());
        let mut stale = old.clone();
        stale.version = 7;
        assert_eq!(apply_in_place(&mut stale, &d), Err(DeltaError::VersionGap { have: 7, delta_from: 1 }));
        assert_eq!(stale.services.len(), 50, "a version gap changes nothing");
    }
}
