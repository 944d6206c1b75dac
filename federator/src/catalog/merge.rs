//! Merging per-source snapshots into the global catalog. Pure: sources, the previous catalog and
//! the time come in; a catalog comes out. No I/O, no clock.
//!
//! Rules:
//! - a source that is failing keeps its last good snapshot, marked stale since it began failing;
//!   after `stale_timeout` past its last success its data is dropped; other sources never change;
//! - the same holds per cluster inside a multi-cluster source (a fleet) whose other clusters
//!   still sync: a failing cluster's last good exports are marked stale since its first failure
//!   and dropped `stale_timeout` after it;
//! - when two sources describe the same cluster's export, the fresh one wins over a stale one,
//!   then the most recently synced, then the lower source id;
//! - when clusters export one service with different ports or protocols, the oldest export wins
//!   (MCS), and every cluster that disagrees gets a conflict condition; its endpoints are kept for
//!   the ports that agree with the winner;
//! - the version moves by one exactly when the content's digest changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use skybridge_api::catalog::{
    ClusterExport, ClusterInfo, Conflict, Export, GlobalCatalog, GlobalService, PortSpec, Provenance, SourceId,
    SourceSnapshot, UnixMillis, digest, normalize_endpoints,
};
use skybridge_api::model::{ClusterId, ServiceKey};

/// Merge settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeConfig {
    /// How long after its last success a failing source's data is kept; `None` keeps it forever.
    pub stale_timeout_ms: Option<u64>,
}

/// One source's last good snapshot and its health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInput {
    /// Shared, not copied: the persister and the merge read the same snapshot.
    pub snapshot: Arc<SourceSnapshot>,
    /// When the snapshot was taken (the last successful sync).
    pub synced_at: UnixMillis,
    /// Set while syncs fail: when the first failure after `synced_at` happened.
    pub failing_since: Option<UnixMillis>,
    /// Clusters of this source that fail while the source as a whole syncs, with when each
    /// was first seen failing; their exports in `snapshot` are the last good ones.
    pub failing_clusters: BTreeMap<ClusterId, UnixMillis>,
}

impl SourceInput {
    fn expired(&self, now: UnixMillis, cfg: &MergeConfig) -> bool {
        match (self.failing_since, cfg.stale_timeout_ms) {
            (Some(_), Some(timeout)) => now.saturating_sub(self.synced_at) > timeout,
            _ => false,
        }
    }

    /// When `cluster`'s part of this source went stale; `Err` when it has expired.
    fn stale_since(&self, cluster: &ClusterId, now: UnixMillis, cfg: &MergeConfig) -> Result<Option<UnixMillis>, ()> {
        let Some(&since) = self.failing_clusters.get(cluster) else { return Ok(self.failing_since) };
        if cfg.stale_timeout_ms.is_some_and(|t| now.saturating_sub(since) > t) {
            return Err(());
        }
        Ok(Some(self.failing_since.map_or(since, |s| s.min(since))))
    }
}

/// Preference between sources describing the same thing: fresh first, then newest, then id.
fn preference<'a>(sources: &'a BTreeMap<SourceId, SourceInput>, live: &[&'a SourceId]) -> Vec<&'a SourceId> {
    let mut order = live.to_vec();
    order.sort_by_key(|id| {
        let s = &sources[*id];
        (s.failing_since.is_some(), std::cmp::Reverse(s.synced_at), (*id).clone())
    });
    order
}

/// Merges the sources into the next catalog. `prev` only supplies the version to continue from.
pub fn merge(
    prev: &GlobalCatalog,
    sources: &BTreeMap<SourceId, SourceInput>,
    now: UnixMillis,
    cfg: &MergeConfig,
) -> GlobalCatalog {
    let live: Vec<&SourceId> = sources.iter().filter(|(_, s)| !s.expired(now, cfg)).map(|(id, _)| id).collect();
    let order = preference(sources, &live);

    let mut clusters: BTreeMap<ClusterId, ClusterInfo> = BTreeMap::new();
    // service -> cluster -> (export, provenance), first (most preferred) source wins.
    let mut exports: BTreeMap<&ServiceKey, BTreeMap<&ClusterId, (&Export, Provenance)>> = BTreeMap::new();
    for id in &order {
        let src = &sources[*id];
        for c in &src.snapshot.clusters {
            clusters.entry(c.id.clone()).or_insert_with(|| c.clone());
        }
        for (key, list) in &src.snapshot.services {
            let per_cluster = exports.entry(key).or_default();
            for e in list {
                let Ok(stale_since) = src.stale_since(&e.cluster, now, cfg) else { continue };
                per_cluster.entry(&e.cluster).or_insert_with(|| {
                    (e, Provenance { source: (*id).clone(), observed_at: src.synced_at, stale_since })
                });
            }
        }
    }

    let services = exports
        .into_iter()
        .filter(|(_, per_cluster)| !per_cluster.is_empty())
        .map(|(key, per_cluster)| (key.clone(), merge_service(per_cluster)))
        .collect();
    let mut next = GlobalCatalog { version: prev.version, digest: 0, clusters, services };
    next.digest = digest(&next);
    // Version 0 means "nothing known yet": merging no data into it is not a first version
    // (gateways that connected early would otherwise replace their routes with nothing).
    let still_nothing = prev.version == 0 && next.clusters.is_empty() && next.services.is_empty();
    if next.digest != prev.digest && !still_nothing {
        next.version = prev.version + 1;
    }
    next
}

/// Puts `next`'s endpoint lists in catalog order and, where one equals the list `prev` had for
/// the same service, cluster and port, reuses `prev`'s: a source re-reading an unchanged world
/// then costs no memory, and catalog versions merged from either snapshot share the lists.
pub fn share_endpoints(prev: Option<&SourceSnapshot>, next: &mut SourceSnapshot) {
    for (key, exports) in next.services.iter_mut() {
        let old = prev.and_then(|p| p.services.get(key));
        for e in exports.iter_mut() {
            let old_export = old.and_then(|o| o.iter().find(|x| x.cluster == e.cluster));
            for port in e.ports.iter_mut() {
                let normal = normalize_endpoints(&port.endpoints);
                let same = old_export
                    .and_then(|o| o.ports.iter().find(|p| p.port == port.port))
                    .filter(|p| p.endpoints == normal);
                port.endpoints = match same {
                    Some(p) => p.endpoints.clone(),
                    None => normal,
                };
            }
        }
    }
}

fn port_specs(e: &Export) -> Vec<PortSpec> {
    let mut ports: Vec<PortSpec> = e.ports.iter().map(|p| PortSpec { port: p.port, protocol: p.protocol }).collect();
    ports.sort();
    ports.dedup_by_key(|p| p.port);
    ports
}

fn describe(ports: &[PortSpec]) -> String {
    let parts: Vec<String> =
        ports.iter().map(|p| format!("{}/{}", p.port, serde_json::to_value(p.protocol).unwrap_or_default())).collect();
    format!("[{}]", parts.join(", ").replace('"', ""))
}

fn merge_service(per_cluster: BTreeMap<&ClusterId, (&Export, Provenance)>) -> GlobalService {
    // Oldest export wins; ties go to the lower cluster id (the map is ordered by it).
    let (winner, (winning, _)) =
        per_cluster.iter().min_by_key(|(c, (e, _))| (e.exported_at, (**c).clone())).expect("non-empty");
    let winner = (*winner).clone();
    let ports = port_specs(winning);
    let mut conflicts = Vec::new();
    let mut clusters = BTreeMap::new();
    for (cluster, (export, provenance)) in per_cluster {
        let mine = port_specs(export);
        if mine != ports {
            conflicts.push(Conflict {
                cluster: cluster.clone(),
                winner: winner.clone(),
                reason: format!(
                    "exports ports {} but the oldest export (cluster {winner}) has {}",
                    describe(&mine),
                    describe(&ports)
                ),
            });
        }
        let mut endpoints = BTreeMap::new();
        for p in &export.ports {
            if !ports.contains(&PortSpec { port: p.port, protocol: p.protocol }) || endpoints.contains_key(&p.port) {
                continue;
            }
            endpoints.insert(p.port, normalize_endpoints(&p.endpoints));
        }
        clusters.insert(cluster.clone(), ClusterExport { exported_at: export.exported_at, endpoints, provenance });
    }
    conflicts.sort();
    GlobalService { ports, clusters, conflicts }
}

#[cfg(test)]
mod tests;
