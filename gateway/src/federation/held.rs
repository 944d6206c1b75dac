//! The catalog the gateway holds from the federator, and the rules for changing it: a snapshot
//! replaces it once its digest verifies, a delta applies only on top of the version it starts
//! from and must end at the sender's digest. Pure: no sockets, clocks or shared state; the
//! shell stores the result, counts it and answers ACK or NACK.

use std::collections::BTreeMap;

use skybridge_api::catalog::{DeltaError, GlobalCatalog, apply_in_place, digest};
use skybridge_api::model::{ClusterId, ServiceKey};
use skybridge_api::proto::{
    WirePolicies, default_from_wire, delta_from_wire, policies_from_wire, policies_to_wire, snapshot_from_wire,
    snapshot_to_wire, wire,
};
use skybridge_api::routing::{DefaultAction, Policy};
use wire::federator_message;

use crate::routing::Catalog;

/// Which kind of update was applied (the `kind` label of `catalog_updates_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    Snapshot,
    Delta,
}

impl UpdateKind {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            UpdateKind::Snapshot => "snapshot",
            UpdateKind::Delta => "delta",
        }
    }
}

/// An accepted update: ACK `version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub version: u64,
    pub kind: UpdateKind,
}

/// A refused update: NACK `version` with `reason` (the federator then sends a snapshot).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("catalog update to version {version} rejected: {reason}")]
pub struct Rejection {
    pub version: u64,
    pub reason: String,
}

fn reject(version: u64, reason: impl ToString) -> Rejection {
    Rejection { version, reason: reason.to_string() }
}

/// The verified catalog with the gateway list and policies that came with it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeldCatalog {
    /// `None` before the first snapshot, and after a delta left it differing from the
    /// sender's (routing keeps the last good one until a snapshot replaces it).
    catalog: Option<GlobalCatalog>,
    gateways: Vec<wire::Gateway>,
    policies: BTreeMap<ServiceKey, Policy>,
    /// The federation's `[authorization] default`, which travels with the policies.
    default: DefaultAction,
    /// The trust domains the federator distributes; they travel with the policies too.
    trust: Vec<wire::TrustDomain>,
}

impl HeldCatalog {
    /// Applies one whole snapshot or one delta. On rejection nothing changes, except that a
    /// delta ending at another digest drops the held catalog: it no longer matches any version
    /// the sender knows, so only a snapshot can follow.
    pub fn apply(&mut self, msg: federator_message::Msg) -> Result<Applied, Rejection> {
        match msg {
            federator_message::Msg::Snapshot(s) => self.apply_snapshot(s),
            federator_message::Msg::Delta(d) => self.apply_delta(d),
        }
    }

    fn apply_snapshot(&mut self, s: wire::Snapshot) -> Result<Applied, Rejection> {
        if s.more {
            return Err(reject(s.version, "snapshot is only a part (more is set); assemble it first"));
        }
        let c = snapshot_from_wire(&s).map_err(|e| reject(s.version, e))?;
        let computed = digest(&c);
        if computed != s.digest {
            return Err(reject(
                s.version,
                format!("snapshot digest {computed:#x} differs from the sent {:#x}", s.digest),
            ));
        }
        let policies = policies_from_wire(&s.policies).map_err(|e| reject(s.version, e))?;
        self.catalog = Some(c);
        self.gateways = s.gateways;
        self.policies = policies;
        self.default = default_from_wire(s.deny_by_default);
        self.trust = s.trust_domains;
        Ok(Applied { version: s.version, kind: UpdateKind::Snapshot })
    }

    fn apply_delta(&mut self, d: wire::Delta) -> Result<Applied, Rejection> {
        let delta = delta_from_wire(&d).map_err(|e| reject(d.to_version, e))?;
        // Validated before anything is applied, so a bad list leaves the held state as it was.
        let policies = d
            .policies_changed
            .then(|| policies_from_wire(&d.policies))
            .transpose()
            .map_err(|e| reject(d.to_version, e))?;
        let base = self.catalog.as_mut().ok_or_else(|| reject(d.to_version, "no valid catalog to apply a delta to"))?;
        if let Err(e) = apply_in_place(base, &delta) {
            if matches!(e, DeltaError::DigestMismatch { .. }) {
                self.catalog = None;
            }
            return Err(reject(d.to_version, e));
        }
        if d.gateways_changed {
            self.gateways = d.gateways;
        }
        if let Some(p) = policies {
            self.policies = p;
            self.default = default_from_wire(d.deny_by_default);
            self.trust = d.trust_domains;
        }
        Ok(Applied { version: d.to_version, kind: UpdateKind::Delta })
    }

    /// The trust domains the federator distributes, as last sent.
    pub fn trust_domains(&self) -> &[wire::TrustDomain] {
        &self.trust
    }

    /// The verified catalog, if one is held.
    pub fn catalog(&self) -> Option<&GlobalCatalog> {
        self.catalog.as_ref()
    }

    /// `(version, digest)` for the Hello: `(0, 0)` when nothing is held.
    pub fn have(&self) -> (u64, u64) {
        self.catalog.as_ref().map_or((0, 0), |c| (c.version, c.digest))
    }

    /// The routing view of what is held.
    pub fn routing(&self, local: &ClusterId, overrides: &BTreeMap<ClusterId, String>) -> Option<Catalog> {
        let c = self.catalog.as_ref()?;
        let mut routing = Catalog::from_global(local, c, &self.gateways, &self.policies, overrides);
        routing.authorization_default = self.default;
        Some(routing)
    }

    /// Everything held as one whole snapshot (what the cache file stores).
    pub fn to_wire(&self) -> Option<wire::Snapshot> {
        let c = self.catalog.as_ref()?;
        let policies = policies_to_wire(&self.policies, self.default);
        Some(snapshot_to_wire(c, self.gateways.clone(), WirePolicies { trust_domains: self.trust.clone(), ..policies }))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use skybridge_api::catalog::{
        ClusterExport, ClusterInfo, Delta, Endpoint, GlobalService, PortSpec, Provenance, diff,
    };
    use skybridge_api::model::{Cloud, Protocol};
    use skybridge_api::proto::delta_to_wire;

    use super::*;

    fn id(s: &str) -> ClusterId {
        ClusterId::new(s).unwrap()
    }

    /// A catalog at `version` with services `names`, each hosted in gcp-1 at one ready endpoint.
    pub(crate) fn catalog(version: u64, names: &[&str]) -> GlobalCatalog {
        let info = |c: &str, cloud| (id(c), ClusterInfo { id: id(c), cloud, region: "r".into(), network: None });
        let svc = |i: usize| GlobalService {
            ports: vec![PortSpec { port: 80, protocol: Protocol::Http }],
            clusters: BTreeMap::from([(
                id("gcp-1"),
                ClusterExport {
                    exported_at: 1,
                    endpoints: BTreeMap::from([(
                        80,
                        [Endpoint { address: format!("10.1.0.{i}:80").parse().unwrap(), zone: None, ready: true }]
                            .into(),
                    )]),
                    provenance: Provenance { source: "s".into(), observed_at: 1, stale_since: None },
                },
            )]),
            conflicts: vec![],
        };
        let mut c = GlobalCatalog {
            version,
            digest: 0,
            clusters: BTreeMap::from([info("aws-1", Cloud::Aws), info("gcp-1", Cloud::Gcp)]),
            services: names
                .iter()
                .enumerate()
                .map(|(i, n)| (ServiceKey::new("prod", n).unwrap(), svc(i + 1)))
                .collect(),
        };
        c.digest = digest(&c);
        c
    }

    pub(crate) fn gateway(cluster: &str, addr: &str) -> wire::Gateway {
        wire::Gateway { cluster: cluster.into(), instance: "gw-0".into(), tunnel_addresses: vec![addr.into()] }
    }

    fn snapshot(c: &GlobalCatalog) -> federator_message::Msg {
        federator_message::Msg::Snapshot(snapshot_to_wire(c, vec![gateway("gcp-1", "127.0.0.1:1")], vec![]))
    }

    fn delta(w: wire::Delta) -> federator_message::Msg {
        federator_message::Msg::Delta(w)
    }

    fn no_change(c: &GlobalCatalog) -> Delta {
        Delta { from_version: c.version, to_version: c.version, to_digest: c.digest, ..Delta::default() }
    }

    fn held_at(c: &GlobalCatalog) -> HeldCatalog {
        let mut h = HeldCatalog::default();
        h.apply(snapshot(c)).unwrap();
        h
    }

    #[test]
    fn snapshot_then_delta() {
        let (v1, v2) = (catalog(1, &["web"]), catalog(2, &["web", "api"]));
        let mut h = HeldCatalog::default();
        assert_eq!(h.have(), (0, 0));
        assert_eq!(h.apply(snapshot(&v1)), Ok(Applied { version: 1, kind: UpdateKind::Snapshot }));
        assert_eq!(h.have(), (1, v1.digest));
        let d = delta_to_wire(&diff(&v1, &v2), None, None);
        assert_eq!(h.apply(delta(d)), Ok(Applied { version: 2, kind: UpdateKind::Delta }));
        assert_eq!(h.catalog(), Some(&v2));
        let routing = h.routing(&id("aws-1"), &BTreeMap::new()).unwrap();
        assert_eq!(routing.services.len(), 2);
        assert_eq!(routing.peers[&id("gcp-1")].address, "127.0.0.1:1", "the snapshot's gateways are kept");
        // What the cache stores reads back as the same state.
        let mut back = HeldCatalog::default();
        back.apply(federator_message::Msg::Snapshot(h.to_wire().unwrap())).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn delta_on_no_base_is_refused() {
        let (v1, v2) = (catalog(1, &["web"]), catalog(2, &["web", "api"]));
        let mut h = HeldCatalog::default();
        let e = h.apply(delta(delta_to_wire(&diff(&v1, &v2), None, None))).unwrap_err();
        assert_eq!(e.version, 2);
        assert!(e.reason.contains("no valid catalog"), "{e}");
        assert_eq!(h, HeldCatalog::default());
        assert!(h.routing(&id("aws-1"), &BTreeMap::new()).is_none());
    }

    #[test]
    fn delta_from_another_version_leaves_the_catalog() {
        let (v1, v2, v3) = (catalog(1, &["web"]), catalog(2, &["web", "api"]), catalog(3, &["api"]));
        let mut h = held_at(&v1);
        let before = h.clone();
        let e = h.apply(delta(delta_to_wire(&diff(&v2, &v3), None, None))).unwrap_err();
        assert_eq!(e.version, 3);
        assert!(e.reason.contains("starts at version 2"), "{e}");
        assert_eq!(h, before, "a version gap changes nothing");
    }

    #[test]
    fn snapshot_with_a_wrong_digest_is_refused_and_the_old_catalog_stays() {
        let v1 = catalog(1, &["web"]);
        let mut h = held_at(&v1);
        let before = h.clone();
        let mut bad = snapshot_to_wire(&catalog(2, &["api"]), vec![], vec![]);
        bad.digest ^= 1;
        let e = h.apply(federator_message::Msg::Snapshot(bad)).unwrap_err();
        assert_eq!(e.version, 2);
        assert!(e.reason.contains("digest"), "{e}");
        assert_eq!(h, before);
        let mut partial = snapshot_to_wire(&catalog(2, &["api"]), vec![], vec![]);
        partial.more = true;
        assert!(h.apply(federator_message::Msg::Snapshot(partial)).unwrap_err().reason.contains("part"));
    }

    #[test]
    fn delta_with_a_wrong_digest_drops_the_held_catalog() {
        let (v1, v2) = (catalog(1, &["web"]), catalog(2, &["web", "api"]));
        let mut h = held_at(&v1);
        let last_good = h.routing(&id("aws-1"), &BTreeMap::new()).unwrap();
        let mut d = delta_to_wire(&diff(&v1, &v2), None, None);
        d.to_digest ^= 1;
        let e = h.apply(delta(d)).unwrap_err();
        assert!(e.reason.contains("digest"), "{e}");
        assert_eq!(h.catalog(), None, "no longer the sender's catalog");
        assert_eq!(h.have(), (0, 0), "the next Hello asks for a snapshot");
        assert!(h.routing(&id("aws-1"), &BTreeMap::new()).is_none(), "the shell keeps the last good routing");
        assert_eq!(last_good.services.len(), 1);
        // Only a snapshot brings it back.
        let e = h.apply(delta(delta_to_wire(&no_change(&v1), None, None))).unwrap_err();
        assert!(e.reason.contains("no valid catalog"), "{e}");
        assert_eq!(h.apply(snapshot(&v2)).unwrap().version, 2);
    }

    #[test]
    fn bad_policy_list_leaves_the_state_untouched() {
        let v1 = catalog(1, &["web"]);
        let mut h = held_at(&v1);
        let before = h.clone();
        let bad = wire::ServicePolicy { namespace: "Prod".into(), name: "web".into(), ..Default::default() };
        let d = delta_to_wire(&no_change(&v1), Some(vec![gateway("gcp-1", "new:1")]), Some(vec![bad.clone()].into()));
        let e = h.apply(delta(d)).unwrap_err();
        assert!(e.reason.contains("policy.service"), "{e}");
        assert_eq!(h, before, "neither gateways nor policies changed");
        let mut s = snapshot_to_wire(&catalog(2, &["api"]), vec![], vec![bad]);
        s.gateways = vec![gateway("gcp-1", "new:1")];
        assert!(h.apply(federator_message::Msg::Snapshot(s)).is_err());
        assert_eq!(h, before, "a snapshot with a bad policy changes nothing either");
    }

    #[test]
    fn gateway_and_policy_lists_change_through_no_change_deltas() {
        let v1 = catalog(1, &["web"]);
        let mut h = held_at(&v1);
        let web: ServiceKey = "prod/web".parse().unwrap();
        let policy = BTreeMap::from([(web.clone(), Policy { avoid: vec![id("gcp-1")], ..Default::default() })]);
        let mut sent = policies_to_wire(&policy, DefaultAction::Deny);
        let gcp =
            wire::TrustDomain { trust_domain: "gcp.corp".into(), roots: vec![vec![1]], clusters: vec!["gcp-*".into()] };
        sent.trust_domains = vec![gcp.clone()];
        let d = delta_to_wire(&no_change(&v1), None, Some(sent));
        assert_eq!(h.apply(delta(d)), Ok(Applied { version: 1, kind: UpdateKind::Delta }));
        let r = h.routing(&id("aws-1"), &BTreeMap::new()).unwrap();
        assert_eq!(r.policies[&web].avoid, vec![id("gcp-1")]);
        assert_eq!(r.authorization_default, DefaultAction::Deny, "the federation's default came with the policies");
        let cached = h.to_wire().unwrap();
        assert!(cached.deny_by_default, "and is kept in the cache file");
        assert_eq!(
            (h.trust_domains(), cached.trust_domains.as_slice()),
            (&[gcp.clone()][..], &[gcp][..]),
            "so are the distributed domains"
        );
        assert_eq!(r.peers[&id("gcp-1")].address, "127.0.0.1:1", "gateways untouched without gateways_changed");

        let d = delta_to_wire(&no_change(&v1), Some(vec![gateway("gcp-1", "127.0.0.2:2")]), None);
        h.apply(delta(d)).unwrap();
        let r = h.routing(&id("aws-1"), &BTreeMap::new()).unwrap();
        assert_eq!(r.peers[&id("gcp-1")].address, "127.0.0.2:2");
        assert_eq!(r.policies.len(), 1, "policies untouched without policies_changed");
        assert_eq!(r.authorization_default, DefaultAction::Deny, "the default too");

        let d = delta_to_wire(&no_change(&v1), Some(vec![]), Some(vec![].into()));
        h.apply(delta(d)).unwrap();
        let r = h.routing(&id("aws-1"), &BTreeMap::new()).unwrap();
        assert!(r.peers.is_empty() && r.policies.is_empty(), "emptied lists are changes too");
        assert_eq!(r.authorization_default, DefaultAction::Allow);
        assert_eq!(h.have(), (1, v1.digest));
    }
}
