//! The generated control protocol and conversions between it and the catalog model. The
//! conversions validate everything that comes off the wire (names, addresses), so the rest of
//! the code only ever sees a valid catalog.

use std::collections::{BTreeMap, HashMap};

use crate::catalog::{
    ClusterExport, ClusterInfo, Conflict, Delta, Endpoint, GlobalCatalog, GlobalService, PortSpec, Provenance,
};
use crate::model::{Cloud, ClusterId, Protocol, ServiceKey};
use crate::routing::{DefaultAction, Policy, SourceMatcher};

/// The generated messages and gRPC client/server of `skybridge.control.v1`.
#[allow(missing_docs, clippy::all)]
pub mod wire {
    tonic::include_proto!("skybridge.control.v1");
}

/// Why a message from the other side is not a valid catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct WireError {
    pub field: &'static str,
    pub reason: String,
}

fn bad(field: &'static str, reason: impl ToString) -> WireError {
    WireError { field, reason: reason.to_string() }
}

fn protocol_to(p: crate::model::Protocol) -> wire::Protocol {
    match p {
        Protocol::Tls => wire::Protocol::Tls,
        Protocol::Http => wire::Protocol::Http,
        Protocol::Tcp => wire::Protocol::Tcp,
    }
}

fn protocol_from(v: i32) -> Result<Protocol, WireError> {
    match wire::Protocol::try_from(v) {
        Ok(wire::Protocol::Tls) => Ok(Protocol::Tls),
        Ok(wire::Protocol::Http) => Ok(Protocol::Http),
        Ok(wire::Protocol::Tcp) => Ok(Protocol::Tcp),
        _ => Err(bad("port.protocol", format!("unknown protocol {v}"))),
    }
}

fn cluster_id(field: &'static str, s: &str) -> Result<ClusterId, WireError> {
    ClusterId::new(s).map_err(|e| bad(field, e))
}

impl From<&ClusterInfo> for wire::Cluster {
    fn from(c: &ClusterInfo) -> Self {
        wire::Cluster {
            id: c.id.to_string(),
            cloud: c.cloud.to_string(),
            region: c.region.clone(),
            network: c.network.clone().unwrap_or_default(),
        }
    }
}

impl TryFrom<&wire::Cluster> for ClusterInfo {
    type Error = WireError;
    fn try_from(c: &wire::Cluster) -> Result<Self, WireError> {
        Ok(ClusterInfo {
            id: cluster_id("cluster.id", &c.id)?,
            cloud: c.cloud.parse::<Cloud>().map_err(|e| bad("cluster.cloud", e))?,
            region: c.region.clone(),
            network: (!c.network.is_empty()).then(|| c.network.clone()),
        })
    }
}

/// Encodes one service.
pub fn service_to_wire(key: &ServiceKey, s: &GlobalService) -> wire::Service {
    wire::Service {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        ports: s
            .ports
            .iter()
            .map(|p| wire::Port { port: u32::from(p.port), protocol: protocol_to(p.protocol) as i32 })
            .collect(),
        clusters: s
            .clusters
            .iter()
            .map(|(c, e)| wire::ClusterExport {
                cluster: c.to_string(),
                exported_at: e.exported_at,
                endpoints: e
                    .endpoints
                    .iter()
                    .map(|(port, eps)| wire::PortEndpoints {
                        port: u32::from(*port),
                        endpoints: eps
                            .iter()
                            .map(|ep| wire::Endpoint {
                                address: ep.address.to_string(),
                                zone: ep.zone.clone().unwrap_or_default(),
                                ready: ep.ready,
                            })
                            .collect(),
                    })
                    .collect(),
                provenance: Some(wire::Provenance {
                    source: e.provenance.source.clone(),
                    observed_at: e.provenance.observed_at,
                    stale_since: e.provenance.stale_since,
                }),
            })
            .collect(),
        conflicts: s
            .conflicts
            .iter()
            .map(|c| wire::Conflict {
                cluster: c.cluster.to_string(),
                winner: c.winner.to_string(),
                reason: c.reason.clone(),
            })
            .collect(),
    }
}

fn port_num(field: &'static str, p: u32) -> Result<u16, WireError> {
    u16::try_from(p).map_err(|_| bad(field, format!("{p} is not a port")))
}

/// Decodes and validates one service.
pub fn service_from_wire(s: &wire::Service) -> Result<(ServiceKey, GlobalService), WireError> {
    let key = ServiceKey::new(&s.namespace, &s.name).map_err(|e| bad("service", e))?;
    let ports = s
        .ports
        .iter()
        .map(|p| Ok(PortSpec { port: port_num("port.port", p.port)?, protocol: protocol_from(p.protocol)? }))
        .collect::<Result<Vec<_>, WireError>>()?;
    let mut clusters = BTreeMap::new();
    for c in &s.clusters {
        let mut endpoints = BTreeMap::new();
        for pe in &c.endpoints {
            let eps = pe
                .endpoints
                .iter()
                .map(|e| {
                    Ok(Endpoint {
                        address: e.address.parse().map_err(|_| bad("endpoint.address", &e.address))?,
                        zone: (!e.zone.is_empty()).then(|| e.zone.clone()),
                        ready: e.ready,
                    })
                })
                .collect::<Result<Vec<_>, WireError>>()?;
            endpoints.insert(port_num("endpoints.port", pe.port)?, eps.into());
        }
        let p = c.provenance.clone().unwrap_or_default();
        clusters.insert(
            cluster_id("cluster_export.cluster", &c.cluster)?,
            ClusterExport {
                exported_at: c.exported_at,
                endpoints,
                provenance: Provenance { source: p.source, observed_at: p.observed_at, stale_since: p.stale_since },
            },
        );
    }
    let conflicts = s
        .conflicts
        .iter()
        .map(|c| {
            Ok(Conflict {
                cluster: cluster_id("conflict.cluster", &c.cluster)?,
                winner: cluster_id("conflict.winner", &c.winner)?,
                reason: c.reason.clone(),
            })
        })
        .collect::<Result<Vec<_>, WireError>>()?;
    Ok((key, GlobalService { ports, clusters, conflicts }))
}

/// The policies as sent to gateways: every service's, and the federation-wide default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WirePolicies {
    pub services: Vec<wire::ServicePolicy>,
    pub deny_by_default: bool,
    /// The trust domains the federator distributes.
    pub trust_domains: Vec<wire::TrustDomain>,
}

/// A bare policy list: the federation's default is allow.
impl From<Vec<wire::ServicePolicy>> for WirePolicies {
    fn from(services: Vec<wire::ServicePolicy>) -> Self {
        WirePolicies { services, deny_by_default: false, trust_domains: Vec::new() }
    }
}

/// Encodes a whole catalog, its gateway list and the policies as a single-part snapshot.
pub fn snapshot_to_wire(
    c: &GlobalCatalog,
    gateways: Vec<wire::Gateway>,
    policies: impl Into<WirePolicies>,
) -> wire::Snapshot {
    let policies = policies.into();
    wire::Snapshot {
        version: c.version,
        digest: c.digest,
        clusters: c.clusters.values().map(wire::Cluster::from).collect(),
        services: c.services.iter().map(|(k, s)| service_to_wire(k, s)).collect(),
        gateways,
        more: false,
        policies: policies.services,
        deny_by_default: policies.deny_by_default,
        trust_domains: policies.trust_domains,
    }
}

/// The snapshot as parts of at most `services_per_part` services each (at least one part);
/// clusters, gateways and policies ride in the first.
pub fn snapshot_parts(
    c: &GlobalCatalog,
    gateways: Vec<wire::Gateway>,
    policies: impl Into<WirePolicies>,
    services_per_part: usize,
) -> Vec<wire::Snapshot> {
    let policies = policies.into();
    let services: Vec<wire::Service> = c.services.iter().map(|(k, s)| service_to_wire(k, s)).collect();
    let mut chunks: Vec<Vec<wire::Service>> =
        services.chunks(services_per_part.max(1)).map(<[wire::Service]>::to_vec).collect();
    if chunks.is_empty() {
        chunks.push(Vec::new());
    }
    let last = chunks.len() - 1;
    let deny_by_default = policies.deny_by_default;
    let mut first = Some((gateways, policies.services, policies.trust_domains));
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, services)| {
            let (gateways, policies, trust_domains) = first.take().unwrap_or_default();
            wire::Snapshot {
                version: c.version,
                digest: c.digest,
                clusters: if i == 0 { c.clusters.values().map(wire::Cluster::from).collect() } else { Vec::new() },
                services,
                gateways,
                more: i != last,
                policies,
                deny_by_default,
                trust_domains,
            }
        })
        .collect()
}

/// Collects the parts of a snapshot; yields the whole snapshot with its last part.
#[derive(Debug, Default)]
pub struct SnapshotAssembler {
    partial: Option<wire::Snapshot>,
}

impl SnapshotAssembler {
    /// Adds a part. A part of another version than the one being collected starts over (the
    /// sender moved on); `Some` is the complete snapshot.
    pub fn push(&mut self, part: wire::Snapshot) -> Option<wire::Snapshot> {
        let whole = match self.partial.take() {
            Some(mut acc) if acc.version == part.version && acc.digest == part.digest => {
                acc.services.extend(part.services);
                acc.more = part.more;
                acc
            }
            _ => part,
        };
        if whole.more {
            self.partial = Some(whole);
            None
        } else {
            Some(whole)
        }
    }
}

/// Decodes a snapshot into a catalog (digest as sent; the receiver checks it).
pub fn snapshot_from_wire(s: &wire::Snapshot) -> Result<GlobalCatalog, WireError> {
    let clusters = s
        .clusters
        .iter()
        .map(|c| ClusterInfo::try_from(c).map(|ci| (ci.id.clone(), ci)))
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    let services = s.services.iter().map(service_from_wire).collect::<Result<BTreeMap<_, _>, _>>()?;
    Ok(GlobalCatalog { version: s.version, digest: s.digest, clusters, services })
}

/// Encodes a catalog delta; `gateways` and `policies`, when given, replace the receiver's lists.
pub fn delta_to_wire(d: &Delta, gateways: Option<Vec<wire::Gateway>>, policies: Option<WirePolicies>) -> wire::Delta {
    wire::Delta {
        from_version: d.from_version,
        to_version: d.to_version,
        to_digest: d.to_digest,
        clusters_upserted: d.clusters_upserted.iter().map(wire::Cluster::from).collect(),
        clusters_removed: d.clusters_removed.iter().map(|c| c.to_string()).collect(),
        services_upserted: d.services_upserted.iter().map(|(k, s)| service_to_wire(k, s)).collect(),
        services_removed: d.services_removed.iter().map(|k| k.to_string()).collect(),
        gateways_changed: gateways.is_some(),
        gateways: gateways.unwrap_or_default(),
        policies_changed: policies.is_some(),
        deny_by_default: policies.as_ref().is_some_and(|p| p.deny_by_default),
        trust_domains: policies.as_ref().map(|p| p.trust_domains.clone()).unwrap_or_default(),
        policies: policies.map(|p| p.services).unwrap_or_default(),
    }
}

/// Decodes a catalog delta.
pub fn delta_from_wire(d: &wire::Delta) -> Result<Delta, WireError> {
    Ok(Delta {
        from_version: d.from_version,
        to_version: d.to_version,
        to_digest: d.to_digest,
        clusters_upserted: d.clusters_upserted.iter().map(ClusterInfo::try_from).collect::<Result<_, _>>()?,
        clusters_removed: d
            .clusters_removed
            .iter()
            .map(|c| cluster_id("clusters_removed", c))
            .collect::<Result<_, _>>()?,
        services_upserted: d.services_upserted.iter().map(service_from_wire).collect::<Result<_, _>>()?,
        services_removed: d
            .services_removed
            .iter()
            .map(|k| k.parse().map_err(|e| bad("services_removed", e)))
            .collect::<Result<_, _>>()?,
    })
}

/// Encodes every policy, sorted by service (the map's order), with the federation's default.
pub fn policies_to_wire(policies: &BTreeMap<ServiceKey, Policy>, default: DefaultAction) -> WirePolicies {
    let ids = |v: &[ClusterId]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    let services = policies
        .iter()
        .map(|(key, p)| wire::ServicePolicy {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            weights: p.weights.iter().map(|(c, w)| (c.to_string(), *w)).collect::<HashMap<_, _>>(),
            failover: ids(&p.failover),
            avoid: ids(&p.avoid),
            allow: p.allow.iter().flatten().map(ToString::to_string).collect(),
            has_allow: p.allow.is_some(),
            deny: p.deny.iter().map(ToString::to_string).collect(),
        })
        .collect();
    WirePolicies { services, deny_by_default: default == DefaultAction::Deny, trust_domains: Vec::new() }
}

/// The default a snapshot's or delta's `deny_by_default` stands for.
pub fn default_from_wire(deny_by_default: bool) -> DefaultAction {
    if deny_by_default { DefaultAction::Deny } else { DefaultAction::Allow }
}

/// Decodes and validates policies: service names and cluster ids must be valid, and a service
/// may appear once. Weights are taken as sent (the federator's API checked their range and
/// sum; route choice renormalises whatever it gets), so a policy never makes a catalog update
/// fail.
pub fn policies_from_wire(policies: &[wire::ServicePolicy]) -> Result<BTreeMap<ServiceKey, Policy>, WireError> {
    let ids = |field: &'static str, v: &[String]| v.iter().map(|c| cluster_id(field, c)).collect::<Result<Vec<_>, _>>();
    let sources = |field: &'static str, v: &[String]| {
        v.iter().map(|s| s.parse::<SourceMatcher>().map_err(|e| bad(field, e))).collect::<Result<Vec<_>, _>>()
    };
    let mut out = BTreeMap::new();
    for p in policies {
        let key = ServiceKey::new(&p.namespace, &p.name).map_err(|e| bad("policy.service", e))?;
        let weights = p
            .weights
            .iter()
            .map(|(c, w)| Ok((cluster_id("policy.weights", c)?, *w)))
            .collect::<Result<BTreeMap<_, _>, WireError>>()?;
        let policy = Policy {
            weights,
            failover: ids("policy.failover", &p.failover)?,
            avoid: ids("policy.avoid", &p.avoid)?,
            allow: if p.has_allow { Some(sources("policy.allow", &p.allow)?) } else { None },
            deny: sources("policy.deny", &p.deny)?,
        };
        if out.insert(key.clone(), policy).is_some() {
            return Err(bad("policy.service", format!("{key} has more than one policy")));
        }
    }
    Ok(out)
}

/// The payload of a gateway's catalog cache file (the file's framing is the gateway's).
pub fn catalog_cache_to_bytes(c: &wire::CatalogCache) -> Vec<u8> {
    prost::Message::encode_to_vec(c)
}

/// Decodes a catalog cache payload; the snapshot in it still needs [`snapshot_from_wire`] and
/// its digest checked.
pub fn catalog_cache_from_bytes(bytes: &[u8]) -> Result<wire::CatalogCache, WireError> {
    <wire::CatalogCache as prost::Message>::decode(bytes).map_err(|e| bad("catalog_cache", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{apply, diff, digest};

    fn catalog() -> GlobalCatalog {
        let key: ServiceKey = "prod/web".parse().unwrap();
        let a = ClusterId::new("aws-1").unwrap();
        let svc = GlobalService {
            ports: vec![PortSpec { port: 80, protocol: Protocol::Http }],
            clusters: BTreeMap::from([(
                a.clone(),
                ClusterExport {
                    exported_at: 3,
                    endpoints: BTreeMap::from([(
                        80,
                        [Endpoint { address: "10.0.0.1:8080".parse().unwrap(), zone: Some("a".into()), ready: true }]
                            .into(),
                    )]),
                    provenance: Provenance { source: "s".into(), observed_at: 9, stale_since: Some(7) },
                },
            )]),
            conflicts: vec![Conflict { cluster: a.clone(), winner: a.clone(), reason: "r".into() }],
        };
        let mut c = GlobalCatalog {
            version: 4,
            digest: 0,
            clusters: BTreeMap::from([(
                a.clone(),
                ClusterInfo { id: a, cloud: Cloud::Aws, region: "us".into(), network: None },
            )]),
            services: BTreeMap::from([(key, svc)]),
        };
        c.digest = digest(&c);
        c
    }

    #[test]
    fn snapshot_round_trips_through_protobuf() {
        use prost::Message;
        let c = catalog();
        let bytes = snapshot_to_wire(&c, vec![], vec![]).encode_to_vec();
        let back = snapshot_from_wire(&wire::Snapshot::decode(bytes.as_slice()).unwrap()).unwrap();
        assert_eq!(back, c);
        assert_eq!(digest(&back), c.digest);
    }

    #[test]
    fn catalog_cache_round_trips() {
        let c = wire::CatalogCache {
            cluster: "aws-1".into(),
            trust_domain: "example.org".into(),
            written_at_unix_ms: 5,
            snapshot: Some(snapshot_to_wire(&catalog(), vec![], vec![])),
        };
        let back = catalog_cache_from_bytes(&catalog_cache_to_bytes(&c)).unwrap();
        assert_eq!(back, c);
        assert_eq!(snapshot_from_wire(back.snapshot.as_ref().unwrap()).unwrap(), catalog());
        assert_eq!(catalog_cache_from_bytes(&[0xff, 0xff]).unwrap_err().field, "catalog_cache");
    }

    #[test]
    fn snapshot_parts_reassemble() {
        let mut c = catalog();
        let (k, s) = c.services.iter().next().map(|(k, s)| (k.clone(), s.clone())).unwrap();
        for i in 0..5 {
            c.services.insert(ServiceKey::new(&k.namespace, &format!("x{i}")).unwrap(), s.clone());
        }
        c.digest = digest(&c);
        let parts = snapshot_parts(&c, vec![], vec![], 2);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.iter().map(|p| p.more).collect::<Vec<_>>(), vec![true, true, false]);
        assert!(parts[1].clusters.is_empty() && !parts[0].clusters.is_empty());
        let mut asm = SnapshotAssembler::default();
        assert!(asm.push(parts[0].clone()).is_none());
        // A part of another version restarts the collection.
        let mut other = parts[0].clone();
        other.version = 99;
        assert!(asm.push(other).is_none());
        for p in &parts[..2] {
            assert!(asm.push(p.clone()).is_none());
        }
        let whole = asm.push(parts[2].clone()).unwrap();
        assert_eq!(snapshot_from_wire(&whole).unwrap(), c);
        assert_eq!(
            snapshot_parts(&GlobalCatalog::default(), vec![], vec![], 2).len(),
            1,
            "an empty catalog is one part"
        );
    }

    #[test]
    fn delta_round_trips_and_applies() {
        let old = catalog();
        let mut new = old.clone();
        new.services.clear();
        new.version = 5;
        new.digest = digest(&new);
        let d = diff(&old, &new);
        let back = delta_from_wire(&delta_to_wire(&d, None, None)).unwrap();
        assert_eq!(back, d);
        assert_eq!(apply(&old, &back).unwrap(), new);
    }

    #[test]
    fn invalid_wire_data_is_rejected_with_the_field() {
        let mut s = snapshot_to_wire(&catalog(), vec![], vec![]);
        s.services[0].clusters[0].endpoints[0].endpoints[0].address = "nope".into();
        assert_eq!(snapshot_from_wire(&s).unwrap_err().field, "endpoint.address");
        let mut s = snapshot_to_wire(&catalog(), vec![], vec![]);
        s.services[0].ports[0].protocol = 42;
        assert_eq!(snapshot_from_wire(&s).unwrap_err().field, "port.protocol");
        let mut s = snapshot_to_wire(&catalog(), vec![], vec![]);
        s.clusters[0].id = "Bad_Id".into();
        assert_eq!(snapshot_from_wire(&s).unwrap_err().field, "cluster.id");
    }

    fn policies() -> BTreeMap<ServiceKey, Policy> {
        let id = |s: &str| ClusterId::new(s).unwrap();
        BTreeMap::from([
            (
                "prod/web".parse().unwrap(),
                Policy {
                    weights: BTreeMap::from([(id("aws-1"), 70), (id("gcp-1"), 30)]),
                    failover: vec![id("gcp-1"), id("aws-1")],
                    avoid: vec![id("azure-1")],
                    allow: Some(vec!["aws-1".parse().unwrap(), "spiffe://gcp.corp.example".parse().unwrap()]),
                    deny: vec!["aws-dev-*".parse().unwrap()],
                },
            ),
            // An empty allow list (nobody may reach it) differs from none (anybody may).
            ("prod/locked".parse().unwrap(), Policy { allow: Some(vec![]), ..Default::default() }),
            ("dev/api".parse().unwrap(), Policy { avoid: vec![id("gcp-1")], ..Default::default() }),
        ])
    }

    #[test]
    fn policies_round_trip_through_protobuf() {
        use prost::Message;
        let p = policies();
        let wire = policies_to_wire(&p, DefaultAction::Allow).services;
        assert_eq!(wire.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(), ["api", "locked", "web"]);
        assert!(wire[1].has_allow && wire[1].allow.is_empty());
        assert!(!wire[0].has_allow);
        let bytes = snapshot_to_wire(&catalog(), vec![], wire).encode_to_vec();
        let back = wire::Snapshot::decode(bytes.as_slice()).unwrap();
        assert_eq!(policies_from_wire(&back.policies).unwrap(), p);
        assert_eq!(policies_from_wire(&[]).unwrap(), BTreeMap::new());
        assert_eq!(default_from_wire(back.deny_by_default), DefaultAction::Allow);
        // The federation's default deny rides along, in a snapshot and in a delta's policy list.
        let deny = policies_to_wire(&p, DefaultAction::Deny);
        let back =
            wire::Snapshot::decode(snapshot_to_wire(&catalog(), vec![], deny.clone()).encode_to_vec().as_slice());
        assert_eq!(default_from_wire(back.unwrap().deny_by_default), DefaultAction::Deny);
        let d = Delta { from_version: 4, to_version: 4, ..Delta::default() };
        assert!(delta_to_wire(&d, None, Some(deny)).deny_by_default);
    }

    #[test]
    fn policies_ride_in_the_first_snapshot_part_and_in_deltas_when_changed() {
        let mut c = catalog();
        let (k, s) = c.services.iter().next().map(|(k, s)| (k.clone(), s.clone())).unwrap();
        c.services.insert(ServiceKey::new(&k.namespace, "other").unwrap(), s);
        c.digest = digest(&c);
        let parts = snapshot_parts(&c, vec![], policies_to_wire(&policies(), DefaultAction::Allow), 1);
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].policies.len(), parts[1].policies.len()), (3, 0));
        let mut asm = SnapshotAssembler::default();
        asm.push(parts[0].clone());
        let whole = asm.push(parts[1].clone()).unwrap();
        assert_eq!(policies_from_wire(&whole.policies).unwrap(), policies());
        // Policies are not part of the catalog: the digest is the catalog's alone.
        assert_eq!(digest(&snapshot_from_wire(&whole).unwrap()), c.digest);

        let d = Delta { from_version: 4, to_version: 4, to_digest: c.digest, ..Delta::default() };
        let w = delta_to_wire(&d, None, Some(vec![].into()));
        assert!(w.policies_changed && w.policies.is_empty() && !w.gateways_changed, "an emptied list is a change");
        let w = delta_to_wire(&d, None, None);
        assert!(!w.policies_changed);
    }

    #[test]
    fn invalid_policies_are_rejected_with_the_field() {
        type Break = fn(&mut wire::ServicePolicy);
        let good = policies_to_wire(&policies(), DefaultAction::Allow).services;
        let cases: [(&str, Break); 7] = [
            ("policy.service", |p| p.namespace = "Prod".into()),
            ("policy.weights", |p| {
                p.weights.insert("gcp_1".into(), 10);
            }),
            ("policy.failover", |p| p.failover.push("-x".into())),
            ("policy.avoid", |p| p.avoid.push(String::new())),
            ("policy.allow", |p| p.allow.push("a.b".into())),
            ("policy.deny", |p| p.deny.push("spiffe://".into())),
            ("policy.service", |p| {
                // A second policy for dev/api.
                p.namespace = "dev".into();
                p.name = "api".into();
            }),
        ];
        for (field, break_it) in cases {
            let mut w = good.clone();
            break_it(&mut w[2]);
            let e = policies_from_wire(&w).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
        // The allow list is read only when has_allow says it is there.
        let mut w = good.clone();
        w[0].allow.push("ignored".into());
        assert_eq!(policies_from_wire(&w).unwrap()[&"dev/api".parse::<ServiceKey>().unwrap()].allow, None);
    }
}
