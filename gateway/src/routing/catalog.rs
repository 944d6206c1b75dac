//! The catalog the data path routes on, built either from the static config or from the
//! federator's pushed catalog: the data path sees one type either way.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use skybridge_api::catalog::GlobalCatalog;
use skybridge_api::model::{Cloud, ClusterId, Protocol, ServiceKey};
use skybridge_api::proto::wire;
use skybridge_api::routing::{DefaultAction, Policy, SourceMatcher, Verdict};

use crate::config::Config;

/// A peer gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub cluster: ClusterId,
    pub cloud: Cloud,
    pub region: String,
    /// `host:port` of its tunnel.
    pub address: String,
}

/// One port of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub port: u16,
    pub protocol: Protocol,
    /// Endpoints in this gateway's cluster; empty when the service is hosted elsewhere only.
    pub local_endpoints: Vec<SocketAddr>,
}

/// A service as the data path needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub key: ServiceKey,
    pub ports: Vec<ServicePort>,
    /// Clusters that host the service, this gateway's own included when it does.
    pub clusters: Vec<ClusterId>,
    /// Sources allowed in; `None`: the receiving gateway's default decides.
    pub allow: Option<Vec<SourceMatcher>>,
    /// Sources refused whatever `allow` says.
    pub deny: Vec<SourceMatcher>,
}

impl Service {
    /// The port entry for `port`.
    pub fn port(&self, port: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == port)
    }

    /// The first port spoken with `protocol` (how SNI and Host routing pick a port).
    pub fn port_for(&self, protocol: Protocol) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.protocol == protocol)
    }

    /// Whether a gateway of `source` in `trust_domain` may open streams to this service, and
    /// the rule that says so.
    pub fn authorize(&self, source: &ClusterId, trust_domain: &str, default: DefaultAction) -> Verdict {
        skybridge_api::routing::decide(self.allow.as_deref(), &self.deny, default, source, trust_domain)
    }
}

/// A complete, versioned routing view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// Opaque version shown in `/status`; the static config's is a content hash.
    pub version: String,
    pub local: ClusterId,
    pub peers: BTreeMap<ClusterId, Peer>,
    pub services: HashMap<ServiceKey, Service>,
    /// Routing policies from the federator, by service.
    pub policies: HashMap<ServiceKey, Policy>,
    /// The federation's `[authorization] default` (allow for a static catalog); streams are
    /// admitted under the stricter of it and this gateway's own.
    pub authorization_default: DefaultAction,
}

impl Catalog {
    /// Builds the catalog from the config's static `[[peers]]` and `[[services]]`.
    pub fn from_config(cfg: &Config, version: String) -> Catalog {
        let peers = cfg
            .peers
            .iter()
            .map(|p| {
                let peer = Peer {
                    cluster: p.cluster.clone(),
                    cloud: p.cloud,
                    region: p.region.clone(),
                    address: p.address.clone(),
                };
                (p.cluster.clone(), peer)
            })
            .collect();
        let services = cfg
            .services
            .iter()
            .map(|s| {
                // Validated by Config::parse.
                let key = ServiceKey::new(&s.namespace, &s.name).expect("validated service key");
                let svc = Service {
                    key: key.clone(),
                    ports: s
                        .ports
                        .iter()
                        .map(|p| ServicePort {
                            port: p.port,
                            protocol: p.protocol,
                            local_endpoints: p.endpoints.clone(),
                        })
                        .collect(),
                    clusters: s.clusters.clone(),
                    allow: s.allow.clone(),
                    deny: s.deny.clone(),
                };
                (key, svc)
            })
            .collect();
        Catalog {
            version,
            local: cfg.gateway.cluster.clone(),
            peers,
            services,
            policies: HashMap::new(),
            authorization_default: DefaultAction::Allow,
        }
    }

    /// Builds the routing view from the federator's catalog, gateway list and policies. Peers
    /// are the other clusters that have a gateway with a tunnel address (the first instance's
    /// first address, by sorted instance name, unless `overrides` names another); a cluster
    /// hosts a service when it has at least one ready endpoint for it. A policy's allow list
    /// becomes the service's.
    pub fn from_global(
        local: &ClusterId,
        g: &GlobalCatalog,
        gateways: &[wire::Gateway],
        policies: &BTreeMap<ServiceKey, Policy>,
        overrides: &BTreeMap<ClusterId, String>,
    ) -> Catalog {
        let mut addresses: BTreeMap<ClusterId, (String, String)> = BTreeMap::new();
        for gw in gateways {
            let (Ok(c), Some(addr)) = (ClusterId::new(&gw.cluster), gw.tunnel_addresses.first()) else { continue };
            let candidate = (gw.instance.clone(), addr.clone());
            let e = addresses.entry(c).or_insert_with(|| candidate.clone());
            if candidate.0 < e.0 {
                *e = candidate;
            }
        }
        let peers: BTreeMap<ClusterId, Peer> = g
            .clusters
            .values()
            .filter(|c| c.id != *local)
            .filter_map(|c| {
                let (_, advertised) = addresses.get(&c.id)?;
                let address = overrides.get(&c.id).unwrap_or(advertised).clone();
                Some((c.id.clone(), Peer { cluster: c.id.clone(), cloud: c.cloud, region: c.region.clone(), address }))
            })
            .collect();
        let services = g
            .services
            .iter()
            .map(|(key, svc)| {
                let ready = |c: &ClusterId, port: u16| -> Vec<SocketAddr> {
                    svc.clusters
                        .get(c)
                        .and_then(|e| e.endpoints.get(&port))
                        .map(|eps| eps.iter().filter(|e| e.ready).map(|e| e.address).collect())
                        .unwrap_or_default()
                };
                let ports = svc
                    .ports
                    .iter()
                    .map(|p| ServicePort { port: p.port, protocol: p.protocol, local_endpoints: ready(local, p.port) })
                    .collect();
                let clusters = svc
                    .clusters
                    .keys()
                    .filter(|c| svc.ports.iter().any(|p| !ready(c, p.port).is_empty()))
                    .cloned()
                    .collect();
                let policy = policies.get(key);
                let allow = policy.and_then(|p| p.allow.clone());
                let deny = policy.map(|p| p.deny.clone()).unwrap_or_default();
                (key.clone(), Service { key: key.clone(), ports, clusters, allow, deny })
            })
            .collect();
        let policies = policies.iter().map(|(k, p)| (k.clone(), p.clone())).collect();
        Catalog {
            version: format!("federator-{}", g.version),
            local: local.clone(),
            peers,
            services,
            policies,
            authorization_default: DefaultAction::Allow,
        }
    }

    /// Whether this gateway's cluster hosts `service` with endpoints on `port`.
    pub fn local_endpoints(&self, service: &ServiceKey, port: u16) -> Option<&[SocketAddr]> {
        let svc = self.services.get(service)?;
        if !svc.clusters.contains(&self.local) {
            return None;
        }
        let eps = &svc.port(port)?.local_endpoints;
        (!eps.is_empty()).then_some(eps.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use skybridge_api::catalog::{ClusterExport, ClusterInfo, Endpoint, GlobalService, PortSpec, Provenance};

    use super::*;

    fn id(s: &str) -> ClusterId {
        ClusterId::new(s).unwrap()
    }

    #[test]
    fn from_global_builds_peers_and_ready_endpoints() {
        let ep = |a: &str, ready| Endpoint { address: a.parse().unwrap(), zone: None, ready };
        let export = |eps: Vec<Endpoint>| ClusterExport {
            exported_at: 1,
            endpoints: BTreeMap::from([(80, eps.into())]),
            provenance: Provenance { source: "s".into(), observed_at: 1, stale_since: None },
        };
        let key: ServiceKey = "prod/web".parse().unwrap();
        let svc = GlobalService {
            ports: vec![PortSpec { port: 80, protocol: Protocol::Http }],
            clusters: BTreeMap::from([
                (id("aws-1"), export(vec![ep("10.0.0.1:80", true), ep("10.0.0.2:80", false)])),
                (id("gcp-1"), export(vec![ep("10.1.0.1:80", true)])),
                (id("azure-1"), export(vec![ep("10.2.0.1:80", false)])),
            ]),
            conflicts: vec![],
        };
        let info = |c: &str, cloud| (id(c), ClusterInfo { id: id(c), cloud, region: "r".into(), network: None });
        let g = GlobalCatalog {
            version: 7,
            digest: 0,
            clusters: BTreeMap::from([
                info("aws-1", Cloud::Aws),
                info("gcp-1", Cloud::Gcp),
                info("azure-1", Cloud::Azure),
            ]),
            services: BTreeMap::from([(key.clone(), svc)]),
        };
        let gw = |c: &str, i: &str, a: &str| wire::Gateway {
            cluster: c.into(),
            instance: i.into(),
            tunnel_addresses: vec![a.into()],
        };
        let gateways = [gw("gcp-1", "gw-1", "b:1"), gw("gcp-1", "gw-0", "a:1"), gw("aws-1", "gw-0", "self:1")];
        let policies = BTreeMap::from([(
            key.clone(),
            Policy {
                allow: Some(vec!["gcp-1".parse().unwrap()]),
                deny: vec!["spiffe://evil.test".parse().unwrap()],
                avoid: vec![id("gcp-1")],
                ..Default::default()
            },
        )]);
        let c = Catalog::from_global(&id("aws-1"), &g, &gateways, &policies, &BTreeMap::new());
        assert_eq!(c.version, "federator-7");
        assert_eq!(
            c.peers.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            vec!["gcp-1"],
            "azure-1 has no gateway; self is not a peer"
        );
        assert_eq!(c.peers[&id("gcp-1")].address, "a:1", "lowest instance name");
        let overrides = BTreeMap::from([(id("gcp-1"), "relay:9".to_owned())]);
        let o = Catalog::from_global(&id("aws-1"), &g, &gateways, &policies, &overrides);
        assert_eq!(o.peers[&id("gcp-1")].address, "relay:9", "the configured override wins");
        let s = &c.services[&key];
        assert_eq!(s.clusters, vec![id("aws-1"), id("gcp-1")], "azure-1 has no ready endpoint");
        assert_eq!(s.ports[0].local_endpoints, vec!["10.0.0.1:80".parse::<SocketAddr>().unwrap()]);
        let allows = |c: &str, td: &str| s.authorize(&id(c), td, DefaultAction::Allow).allowed;
        assert!(allows("gcp-1", "t.test") && !allows("azure-1", "t.test"), "the policy's allow list applies");
        assert!(!allows("gcp-1", "evil.test"), "and its deny list");
        assert_eq!(c.policies[&key].avoid, vec![id("gcp-1")]);
    }
}
