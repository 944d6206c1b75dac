//! Cloud Map data → catalog snapshot. Pure: what the API returned comes in, a snapshot and the
//! reasons for anything skipped come out.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use skybridge_api::catalog::{ClusterInfo, Endpoint, Export, PortExport, SourceSnapshot, UnixMillis};
use skybridge_api::model::{Cloud, ClusterId, Protocol, ServiceKey};

use super::config::CloudMapConfig;

/// The standard Cloud Map instance attributes.
pub const IPV4: &str = "AWS_INSTANCE_IPV4";
pub const IPV6: &str = "AWS_INSTANCE_IPV6";
pub const PORT: &str = "AWS_INSTANCE_PORT";

/// At most this many skip reasons are kept per sync (the count is always exact).
const MAX_SKIPPED: usize = 20;

/// A namespace as read from the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    pub services: Vec<Service>,
}

/// A service and its instances as read from the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    /// `CreateDate`: the MCS conflict rule lets the oldest export win.
    pub created_at: UnixMillis,
    pub instances: Vec<Instance>,
}

/// One registered instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub attributes: HashMap<String, String>,
    /// From GetInstancesHealthStatus; `None` when the service has no health check.
    pub health: Option<Health>,
}

/// Cloud Map's health states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Unhealthy,
    /// Reported briefly after registration; treated as ready so that a new instance is not
    /// refused while its first check runs.
    Unknown,
}

/// What a sync produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapped {
    pub snapshot: SourceSnapshot,
    /// Instances or services left out, and why (the first few).
    pub skipped: Vec<String>,
    pub skipped_count: usize,
}

impl Mapped {
    fn skip(&mut self, why: String) {
        self.skipped_count += 1;
        if self.skipped.len() < MAX_SKIPPED {
            self.skipped.push(why);
        }
    }
}

/// The clusterset namespace for a Cloud Map namespace name.
pub fn clusterset_namespace<'a>(cfg: &'a CloudMapConfig, name: &'a str) -> &'a str {
    cfg.namespace_map.get(name).map_or_else(|| name.split('.').next().unwrap_or(name), String::as_str)
}

/// Maps every namespace's services into one snapshot.
pub fn map(cfg: &CloudMapConfig, namespaces: &[Namespace]) -> Mapped {
    let mut out = Mapped::default();
    let mut clusters: BTreeMap<ClusterId, ClusterInfo> = BTreeMap::new();
    for ns in namespaces {
        let set_ns = clusterset_namespace(cfg, &ns.name);
        for svc in &ns.services {
            let key = match ServiceKey::new(set_ns, &svc.name) {
                Ok(k) => k,
                Err(e) => {
                    out.skip(format!("namespace {} service {}: {e}", ns.name, svc.name));
                    continue;
                }
            };
            // cluster -> (port, protocol) -> endpoints
            let mut per_cluster: BTreeMap<ClusterId, BTreeMap<(u16, Protocol), Vec<Endpoint>>> = BTreeMap::new();
            for inst in &svc.instances {
                match instance(cfg, inst) {
                    Ok((cluster, port, protocol, ep)) => {
                        per_cluster.entry(cluster).or_default().entry((port, protocol)).or_default().push(ep);
                    }
                    Err(why) => out.skip(format!("{key} instance {}: {why}", inst.id)),
                }
            }
            let exports = out.snapshot.services.entry(key).or_default();
            for (cluster, ports) in per_cluster {
                clusters.entry(cluster.clone()).or_insert_with(|| ClusterInfo {
                    id: cluster.clone(),
                    cloud: Cloud::Aws,
                    region: cfg.region.clone(),
                    network: None,
                });
                let ports = ports.into_iter().map(|((port, protocol), endpoints)| PortExport {
                    port,
                    protocol,
                    endpoints: endpoints.into(),
                });
                // Two Cloud Map namespaces mapped onto one clusterset namespace: one export per
                // cluster, with the ports of both.
                match exports.iter_mut().find(|e| e.cluster == cluster) {
                    Some(e) => {
                        e.ports.extend(ports);
                        e.exported_at = e.exported_at.min(svc.created_at);
                    }
                    None => exports.push(Export { cluster, exported_at: svc.created_at, ports: ports.collect() }),
                }
            }
        }
    }
    out.snapshot.services.retain(|_, exports| !exports.is_empty());
    out.snapshot.clusters = clusters.into_values().collect();
    out
}

fn instance(cfg: &CloudMapConfig, inst: &Instance) -> Result<(ClusterId, u16, Protocol, Endpoint), String> {
    let attr = |k: &str| inst.attributes.get(k).map(String::as_str);
    let ip: IpAddr = match (attr(IPV4), attr(IPV6)) {
        (Some(v4), _) => v4.parse().map_err(|_| format!("{IPV4} {v4:?} is not an IPv4 address"))?,
        (None, Some(v6)) => v6.parse().map_err(|_| format!("{IPV6} {v6:?} is not an IPv6 address"))?,
        (None, None) => {
            return Err(format!("no {IPV4} or {IPV6} attribute (only IP-based instances can be routed to)"));
        }
    };
    let port: u16 = match attr(PORT) {
        Some(p) => p.parse().map_err(|_| format!("{PORT} {p:?} is not a port"))?,
        None => return Err(format!("no {PORT} attribute")),
    };
    let cluster = match (attr(&cfg.cluster_attribute), &cfg.default_cluster) {
        (Some(c), _) => ClusterId::new(c).map_err(|e| format!("attribute {}: {e}", cfg.cluster_attribute))?,
        (None, Some(c)) => c.clone(),
        (None, None) => {
            return Err(format!("no {:?} attribute and no default_cluster configured", cfg.cluster_attribute));
        }
    };
    let service_port = match attr(&cfg.port_attribute) {
        Some(p) => p.parse().map_err(|_| format!("attribute {} {p:?} is not a port", cfg.port_attribute))?,
        None => port,
    };
    let protocol = match attr(&cfg.protocol_attribute) {
        Some("tls") => Protocol::Tls,
        Some("http") => Protocol::Http,
        Some("tcp") => Protocol::Tcp,
        Some(other) => {
            return Err(format!("attribute {} {other:?} is not tls, http or tcp", cfg.protocol_attribute));
        }
        None => cfg.default_protocol,
    };
    let endpoint = Endpoint {
        address: SocketAddr::new(ip, port),
        zone: attr(&cfg.zone_attribute).map(str::to_owned),
        ready: inst.health != Some(Health::Unhealthy),
    };
    Ok((cluster, service_port, protocol, endpoint))
}

#[cfg(test)]
mod tests;
