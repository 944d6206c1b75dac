//! The catalog the data path routes on. Today it is built from the static config; the
//! federator's pushed catalog produces the same type, so the data path never changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;

use skybridge_api::model::{Cloud, ClusterId, Protocol, ServiceKey};

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
    /// Source clusters allowed in; `None` is any gateway of the trust domain.
    pub allow: Option<BTreeSet<ClusterId>>,
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

    /// Whether `source` may open streams to this service.
    pub fn allows(&self, source: &ClusterId) -> bool {
        self.allow.as_ref().is_none_or(|a| a.contains(source))
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
                    allow: s.allow.as_ref().map(|a| a.iter().cloned().collect()),
                };
                (key, svc)
            })
            .collect();
        Catalog { version, local: cfg.gateway.cluster.clone(), peers, services }
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
