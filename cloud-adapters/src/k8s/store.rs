//! The in-memory view of one cluster: compact records per resource type, with list results
//! swapped in atomically (a re-list never shows half a state), and the snapshot built from it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use skybridge_api::catalog::{ClusterInfo, Endpoint, Export, PortExport, SourceSnapshot, UnixMillis};
use skybridge_api::model::ServiceKey;

use super::convert::{ExportRec, ObjKey, ServiceRec, SliceRec};

/// One resource type's objects: the live set plus, during a (re-)list, the list being read.
#[derive(Debug)]
pub(crate) struct Table<T> {
    pub items: BTreeMap<ObjKey, T>,
    pending: Option<BTreeMap<ObjKey, T>>,
    /// A complete list has been read at least once.
    pub synced: bool,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table { items: BTreeMap::new(), pending: None, synced: false }
    }
}

impl<T: PartialEq> Table<T> {
    /// A list starts (or restarts after an expired continue token): buffer from scratch.
    pub(super) fn begin(&mut self) {
        self.pending = Some(BTreeMap::new());
    }

    /// Adds a listed object to the list being read.
    pub(super) fn listed(&mut self, key: ObjKey, item: T) {
        self.pending.get_or_insert_default().insert(key, item);
    }

    /// The list is complete: it replaces the live set. Returns whether anything changed.
    pub(super) fn finish(&mut self) -> bool {
        let new = self.pending.take().unwrap_or_default();
        let changed = new != self.items || !self.synced;
        self.items = new;
        self.synced = true;
        changed
    }

    /// An object was added or modified (watch event). Returns whether anything changed.
    pub(super) fn apply(&mut self, key: ObjKey, item: T) -> bool {
        match self.items.get(&key) {
            Some(old) if *old == item => false,
            _ => {
                self.items.insert(key, item);
                true
            }
        }
    }

    /// An object was deleted (watch event). Returns whether anything changed.
    pub(super) fn delete(&mut self, key: &ObjKey) -> bool {
        self.items.remove(key).is_some()
    }

    /// Drops objects (live and pending) for which `keep` is false.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) -> bool {
        let before = self.items.len();
        self.items.retain(|_, v| keep(v));
        if let Some(p) = &mut self.pending {
            p.retain(|_, v| keep(v));
        }
        before != self.items.len()
    }
}

/// Everything the source knows about its cluster.
#[derive(Debug, Default)]
pub(crate) struct Store {
    /// ServiceExports, one table per configured API group.
    pub exports: Vec<Table<ExportRec>>,
    pub services: Table<ServiceRec>,
    /// EndpointSlices of exported services only (memory stays proportional to what is exported).
    pub slices: Table<SliceRec>,
}

impl Store {
    /// A store for `groups` ServiceExport API groups.
    pub(super) fn new(groups: usize) -> Self {
        Store { exports: (0..groups).map(|_| Table::default()).collect(), ..Default::default() }
    }

    /// Exported services and when each was first exported (the oldest export across groups).
    pub(super) fn exported(&self) -> BTreeMap<ServiceKey, UnixMillis> {
        let mut out = BTreeMap::new();
        for rec in self.exports.iter().flat_map(|t| t.items.values()) {
            out.entry(rec.key.clone())
                .and_modify(|t: &mut UnixMillis| *t = (*t).min(rec.created_ms))
                .or_insert(rec.created_ms);
        }
        out
    }

    /// Drops slices of services that are no longer exported. Returns whether any went.
    pub(super) fn prune_slices(&mut self) -> bool {
        let exported = self.exported();
        self.slices.retain(|s| exported.contains_key(&s.service))
    }

    /// Builds the cluster's snapshot. Endpoint lists equal to those in `prev` are shared with
    /// it rather than rebuilt, so unchanged ports cost nothing downstream.
    pub(super) fn snapshot(&self, cluster: &ClusterInfo, prev: Option<&SourceSnapshot>) -> SourceSnapshot {
        let exported = self.exported();
        let services_by_key: HashMap<&ServiceKey, &ServiceRec> =
            self.services.items.values().map(|s| (&s.key, s)).collect();
        let mut slices_by_key: HashMap<&ServiceKey, Vec<&SliceRec>> = HashMap::new();
        for s in self.slices.items.values() {
            slices_by_key.entry(&s.service).or_default().push(s);
        }
        let mut services = BTreeMap::new();
        for (key, exported_at) in exported {
            // MCS: an export without its Service exports nothing (the export's condition says so).
            let Some(svc) = services_by_key.get(&key) else {
                tracing::debug!(service = %key, "ServiceExport without a Service; not exported");
                continue;
            };
            if svc.external_name || svc.ports.is_empty() {
                tracing::debug!(service = %key, "exported Service has no TCP ports or is ExternalName; not exported");
                continue;
            }
            let slices = slices_by_key.get(&key).map(Vec::as_slice).unwrap_or_default();
            let prev_ports =
                prev.and_then(|p| p.services.get(&key)).and_then(|e| e.first()).map(|e| e.ports.as_slice());
            let ports = svc
                .ports
                .iter()
                .map(|p| {
                    let eps = endpoints(slices, &p.name);
                    let endpoints = prev_ports
                        .and_then(|pp| pp.iter().find(|q| q.port == p.port))
                        .filter(|q| *q.endpoints == *eps)
                        .map(|q| q.endpoints.clone())
                        .unwrap_or_else(|| eps.into());
                    PortExport { port: p.port, protocol: p.protocol, endpoints }
                })
                .collect();
            services.insert(key, vec![Export { cluster: cluster.id.clone(), exported_at, ports }]);
        }
        SourceSnapshot { clusters: vec![cluster.clone()], services, ..Default::default() }
    }
}

/// The endpoints behind the service port named `port_name`: each slice's addresses with the
/// slice port of the same name, sorted, one entry per address (ready wins if slices disagree,
/// as they may briefly while the controller moves endpoints between slices).
fn endpoints(slices: &[&SliceRec], port_name: &str) -> Vec<Endpoint> {
    let mut by_addr: BTreeMap<SocketAddr, Endpoint> = BTreeMap::new();
    for s in slices {
        let Some((_, target)) = s.ports.iter().find(|(n, _)| n == port_name) else { continue };
        for a in &s.addrs {
            let address = SocketAddr::new(a.ip, *target);
            let ep = Endpoint { address, zone: a.zone.clone(), ready: a.ready };
            by_addr
                .entry(address)
                .and_modify(|old| {
                    if ep.ready && !old.ready {
                        *old = ep.clone()
                    }
                })
                .or_insert(ep);
        }
    }
    by_addr.into_values().collect()
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::k8s::convert::{SliceAddr, SvcPort};
    use skybridge_api::model::{Cloud, ClusterId, Protocol};

    fn okey(ns: &str, name: &str) -> ObjKey {
        ObjKey { namespace: ns.into(), name: name.into() }
    }

    fn addr(ip: &str, ready: bool) -> SliceAddr {
        SliceAddr { ip: ip.parse::<IpAddr>().expect("ip"), ready, zone: None }
    }

    #[test]
    fn snapshot_merges_slices_and_shares_unchanged_lists() {
        let key = ServiceKey::new("ns", "svc").expect("key");
        let mut store = Store::new(1);
        store.exports[0].apply(okey("ns", "svc"), ExportRec { key: key.clone(), created_ms: 5 });
        let port = SvcPort { name: String::new(), port: 80, protocol: Protocol::Tcp };
        store
            .services
            .apply(okey("ns", "svc"), ServiceRec { key: key.clone(), ports: vec![port], external_name: false });
        // The same address in two slices (mid-migration): ready wins, listed once.
        let ports = vec![(String::new(), 8080)];
        let a = SliceRec { service: key.clone(), ports: ports.clone(), addrs: vec![addr("10.0.0.2", false)] };
        let b = SliceRec { service: key.clone(), ports, addrs: vec![addr("10.0.0.2", true), addr("10.0.0.1", false)] };
        store.slices.apply(okey("ns", "svc-a"), a);
        store.slices.apply(okey("ns", "svc-b"), b);
        let cluster = ClusterInfo {
            id: ClusterId::new("c1").expect("id"),
            cloud: Cloud::Other,
            region: "r".into(),
            network: None,
        };
        let s1 = store.snapshot(&cluster, None);
        let eps = &s1.services[&key][0].ports[0].endpoints;
        let got: Vec<_> = eps.iter().map(|e| (e.address.to_string(), e.ready)).collect();
        assert_eq!(got, vec![("10.0.0.1:8080".to_owned(), false), ("10.0.0.2:8080".to_owned(), true)]);
        assert_eq!(s1.services[&key][0].exported_at, 5);
        // Rebuilt without changes: the endpoint list is the same allocation.
        let s2 = store.snapshot(&cluster, Some(&s1));
        assert!(std::sync::Arc::ptr_eq(eps, &s2.services[&key][0].ports[0].endpoints));
        // Unexported: its slices go too.
        store.exports[0].delete(&okey("ns", "svc"));
        assert!(store.prune_slices());
        assert!(store.snapshot(&cluster, None).services.is_empty());
    }
}
