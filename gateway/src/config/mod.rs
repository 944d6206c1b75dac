//! The gateway's one typed config: TOML, parsed once, unknown keys rejected, every semantic
//! error naming the key, the value and the reason.

mod dns;
mod limits;
mod listen;
mod routing;
mod telemetry;

use skybridge_api::backoff::Backoff;
use skybridge_api::routing::SourceMatcher;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use dns::{AnswerAddress, DnsSection};
pub use limits::{Limits, deadline};
pub use listen::ListenAddr;
pub use routing::{OpenTimeouts, RoutingSection, TcpFallbackMode};
use serde::Deserialize;
pub use skybridge_api::config::{AuthorizationSection, ConfigError, TlsSection, duration};
use skybridge_api::config::{from_toml, invalid};
use skybridge_api::identity::valid_trust_domain;
use skybridge_api::model::{Cloud, ClusterId, Protocol, ServiceKey};

use limits::within;
pub use telemetry::TelemetrySection;

/// The whole gateway config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub gateway: GatewaySection,
    pub tls: TlsSection,
    #[serde(default)]
    pub listen: ListenSection,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub routing: RoutingSection,
    #[serde(default)]
    pub telemetry: TelemetrySection,
    /// The federator to take the catalog from; without it the static sections below are used.
    #[serde(default)]
    pub federator: Option<FederatorSection>,
    /// Static peers; replaced by the federator's catalog once one is configured.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Static services; replaced by the federator's catalog once one is configured.
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    #[serde(default)]
    pub authorization: AuthorizationSection,
    /// The `clusterset.local` DNS server's answers (it listens at `listen.dns`).
    #[serde(default)]
    pub dns: DnsSection,
}

/// Who this gateway is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    pub cluster: ClusterId,
    pub cloud: Cloud,
    pub region: String,
    #[serde(default)]
    pub network: Option<String>,
    pub trust_domain: String,
}

/// Where the federator is and how this gateway presents itself to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederatorSection {
    /// `host:port` of the federator's control listener; a DNS name may resolve to one record
    /// per replica (a headless Service). Exactly one of `address` and `addresses` is given.
    #[serde(default)]
    pub address: Option<String>,
    /// `host:port` of each federator replica, listed explicitly.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Where the last verified catalog is kept, so a restart routes before the federator
    /// answers.
    #[serde(default)]
    pub catalog_cache: CatalogCache,
    /// This replica's name (pod name); default from `$HOSTNAME`, else `default`.
    #[serde(default)]
    pub instance: Option<String>,
    /// The federator's trust domain, when it is another (a `[[tls.federated]]` one) than ours.
    #[serde(default)]
    pub trust_domain: Option<String>,
    /// Tunnel addresses peers should dial (the LoadBalancer's); default: `listen.tunnel` when it
    /// is not a wildcard address.
    #[serde(default)]
    pub tunnel_addresses: Vec<String>,
    /// Per peer cluster, the address to dial instead of the one the federator advertises
    /// (a private interconnect, or the demo's WAN emulator).
    #[serde(default)]
    pub peer_addresses: BTreeMap<ClusterId, String>,
    #[serde(default = "defaults::report_interval", with = "duration")]
    pub report_interval: Duration,
    #[serde(default = "defaults::reconnect_min", with = "duration")]
    pub reconnect_min: Duration,
    #[serde(default = "defaults::reconnect_max", with = "duration")]
    pub reconnect_max: Duration,
    #[serde(default = "defaults::handshake_timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// Largest control message accepted, bytes. A snapshot of 10,000 services with 10 endpoints
    /// in 3 clusters is about 10 MB.
    #[serde(default = "defaults::max_control_message")]
    pub max_message_size: usize,
    /// Cluster-id globs for which the federator may introduce trust domains (its `[federator]
    /// distribute_trust`); empty (the default): distributed trust is not taken.
    #[serde(default)]
    pub distributed_trust: Vec<skybridge_api::trust::ClusterGlob>,
}

/// The catalog cache file setting (`[federator] catalog_cache`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CatalogCache {
    /// Not set: [`CatalogCache::DEFAULT_FILE`] in the config file's folder. A config parsed from
    /// text has no folder, so there it means no cache.
    #[default]
    Default,
    /// `"off"`: no cache is read or written.
    Off,
    /// This file (relative paths follow the config file's folder).
    Path(PathBuf),
}

impl CatalogCache {
    /// The file name used when `catalog_cache` is not set.
    pub const DEFAULT_FILE: &str = "catalog-cache.pb";

    /// The file to read and write, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            CatalogCache::Path(p) => Some(p),
            CatalogCache::Default | CatalogCache::Off => None,
        }
    }

    fn resolve(&mut self, base: &Path) {
        match self {
            CatalogCache::Default => *self = CatalogCache::Path(base.join(Self::DEFAULT_FILE)),
            CatalogCache::Path(p) if p.is_relative() => *p = base.join(&*p),
            CatalogCache::Path(_) | CatalogCache::Off => {}
        }
    }
}

impl<'de> Deserialize<'de> for CatalogCache {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(if s == "off" { CatalogCache::Off } else { CatalogCache::Path(PathBuf::from(s)) })
    }
}

impl FederatorSection {
    /// The configured replica addresses (`address` or `addresses`), `host:port` each.
    pub fn targets(&self) -> Vec<String> {
        match &self.address {
            Some(a) => vec![a.clone()],
            None => self.addresses.clone(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match (&self.address, self.addresses.is_empty()) {
            (Some(a), false) => {
                return Err(invalid(
                    "federator.addresses",
                    format!("{:?}", self.addresses),
                    format!("federator.address ({a:?}) is set too: give one of the two"),
                ));
            }
            (None, true) => {
                return Err(invalid(
                    "federator.address",
                    "",
                    "missing: set federator.address (host:port; a DNS name may resolve to every replica) \
                     or federator.addresses (a list of host:port)",
                ));
            }
            (Some(a), true) => host_port("federator.address", a)?,
            (None, false) => {
                let mut seen = BTreeSet::new();
                for (i, a) in self.addresses.iter().enumerate() {
                    host_port(&format!("federator.addresses[{i}]"), a)?;
                    if !seen.insert(a) {
                        return Err(invalid(format!("federator.addresses[{i}]"), a, "listed twice"));
                    }
                }
            }
        }
        if let CatalogCache::Path(p) = &self.catalog_cache
            && p.as_os_str().is_empty()
        {
            return Err(invalid("federator.catalog_cache", "", "expected a file path, or \"off\" to keep no cache"));
        }
        let (ms, hour) = (Duration::from_millis(1), Duration::from_secs(3600));
        within("federator.report_interval", self.report_interval, ms, hour)?;
        within("federator.reconnect_max", self.reconnect_max, ms, hour)?;
        within("federator.connect_timeout", self.connect_timeout, ms, Duration::from_secs(300))?;
        Backoff::checked("federator.reconnect_min", self.reconnect_min, "federator.reconnect_max", self.reconnect_max)?;
        if !(64 * 1024..=1 << 30).contains(&self.max_message_size) {
            return Err(invalid(
                "federator.max_message_size",
                self.max_message_size,
                "must be between 65536 and 1073741824 (1 GiB)",
            ));
        }
        for (c, a) in &self.peer_addresses {
            if !a.contains(':') {
                return Err(invalid(format!("federator.peer_addresses.{c}"), a, "expected host:port"));
            }
        }
        Ok(())
    }
}

/// Checks `host:port` (`[v6]:port` for IPv6 literals) without resolving the host.
fn host_port(key: &str, value: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| invalid(key, value, format!("expected host:port (e.g. federator.example.com:15010): {why}"));
    let (host, port) = value.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    match port.parse::<u16>() {
        Ok(p) if p != 0 => {}
        _ => return Err(bad("the port must be a number from 1 to 65535")),
    }
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() || host.contains(char::is_whitespace) || (host.contains(':') && !value.starts_with('[')) {
        return Err(bad("the host is empty or malformed (write IPv6 addresses as [addr]:port)"));
    }
    Ok(())
}

/// Listen addresses. An egress listener set to `"off"` is not started.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    /// The QUIC tunnel (UDP); cannot be turned off.
    #[serde(default = "defaults::tunnel", with = "listen::required")]
    pub tunnel: SocketAddr,
    /// The tunnel over TLS on TCP (for UDP-blocked peers): an address, `"off"`, or unset for
    /// `tunnel`'s address on TCP.
    #[serde(default)]
    pub tunnel_tcp: Option<ListenAddr>,
    #[serde(default = "defaults::sni")]
    pub sni: ListenAddr,
    #[serde(default = "defaults::http")]
    pub http: ListenAddr,
    /// The admin server; cannot be turned off.
    #[serde(default = "defaults::admin", with = "listen::required")]
    pub admin: SocketAddr,
    #[serde(default)]
    pub tcp: Vec<TcpListenerConfig>,
    /// The `clusterset.local` DNS server, UDP and TCP on one address; `"off"` (the default).
    #[serde(default = "defaults::dns")]
    pub dns: ListenAddr,
}

impl Default for ListenSection {
    fn default() -> Self {
        ListenSection {
            tunnel: defaults::tunnel(),
            tunnel_tcp: None,
            sni: defaults::sni(),
            http: defaults::http(),
            admin: defaults::admin(),
            tcp: Vec::new(),
            dns: defaults::dns(),
        }
    }
}

/// A port-mapped TCP listener: everything accepted goes to one service port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpListenerConfig {
    #[serde(with = "listen::required")]
    pub address: SocketAddr,
    /// `<name>.<namespace>` or the full clusterset name.
    #[serde(deserialize_with = "listen::service_host")]
    pub service: ServiceKey,
    pub port: u16,
    /// The port clients dial for this listener, which DNS SRV answers give (the egress
    /// Service's port in front of it). Unset: the service port when `dns.answer` is set (the
    /// Service exposes it), else this listener's own port.
    #[serde(default)]
    pub advertised_port: Option<u16>,
}

/// Defaults of the non-`[limits]` keys, also quoted in docs/operations.md.
pub mod defaults {
    use super::ListenAddr;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;
    fn any(port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))
    }
    pub fn tunnel() -> SocketAddr {
        any(15443)
    }
    pub fn sni() -> ListenAddr {
        ListenAddr::At(any(15001))
    }
    pub fn http() -> ListenAddr {
        ListenAddr::At(any(15080))
    }
    pub fn admin() -> SocketAddr {
        any(15021)
    }
    pub fn dns() -> ListenAddr {
        ListenAddr::Off
    }
    pub fn handshake_timeout() -> Duration {
        Duration::from_secs(3)
    }
    pub fn report_interval() -> Duration {
        Duration::from_secs(5)
    }
    pub fn reconnect_min() -> Duration {
        Duration::from_millis(500)
    }
    pub fn reconnect_max() -> Duration {
        Duration::from_secs(30)
    }
    pub fn max_control_message() -> usize {
        256 * 1024 * 1024
    }
}

/// A peer gateway reached through the tunnel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub cluster: ClusterId,
    pub cloud: Cloud,
    #[serde(default)]
    pub region: String,
    /// `host:port` of the peer's tunnel (its LoadBalancer address).
    pub address: String,
}

/// A service and the clusters that host it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub namespace: String,
    pub name: String,
    pub clusters: Vec<ClusterId>,
    /// Sources allowed in: cluster ids, cluster globs (`gcp-*`) or trust domains
    /// (`spiffe://<domain>`); absent: `[authorization] default` decides.
    #[serde(default)]
    pub allow: Option<Vec<SourceMatcher>>,
    /// Sources refused whatever `allow` says.
    #[serde(default)]
    pub deny: Vec<SourceMatcher>,
    pub ports: Vec<ServicePortConfig>,
}

/// One service port and, when this cluster hosts the service, its local endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePortConfig {
    pub port: u16,
    pub protocol: Protocol,
    #[serde(default)]
    pub endpoints: Vec<SocketAddr>,
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let mut cfg = skybridge_api::config::load(path, Config::parse)?;
        cfg.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(cfg)
    }

    /// Parses and validates config text; relative paths stay relative.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = from_toml(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Makes TLS and cache paths relative to the config file's folder, as operators expect.
    fn resolve_paths(&mut self, base: &Path) {
        self.tls.resolve(base);
        if let Some(f) = &mut self.federator {
            f.catalog_cache.resolve(base);
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let g = &self.gateway;
        if !valid_trust_domain(&g.trust_domain) {
            return Err(invalid(
                "gateway.trust_domain",
                &g.trust_domain,
                "use lowercase letters, digits, '.', '-' or '_'",
            ));
        }
        self.tls.validate(&g.trust_domain)?;
        if let Some(f) = &self.federator {
            f.validate()?;
            if let Some(td) = &f.trust_domain
                && td != &g.trust_domain
                && !self.tls.federated.iter().any(|d| &d.trust_domain == td)
            {
                return Err(invalid(
                    "federator.trust_domain",
                    td,
                    "must be ours (gateway.trust_domain) or one listed in [[tls.federated]], whose roots verify it",
                ));
            }
        }
        self.listen.validate(self.federator.as_ref())?;
        self.validate_dns()?;
        self.limits.validate()?;
        self.routing.validate()?;
        self.telemetry.validate()?;

        let mut known: BTreeSet<&ClusterId> = BTreeSet::from([&g.cluster]);
        for (i, p) in self.peers.iter().enumerate() {
            if !known.insert(&p.cluster) {
                return Err(invalid(
                    format!("peers[{i}].cluster"),
                    &p.cluster,
                    "listed twice, or is this gateway's own cluster",
                ));
            }
            if !p.address.contains(':') {
                return Err(invalid(format!("peers[{i}].address"), &p.address, "expected host:port"));
            }
        }
        let mut seen = BTreeSet::new();
        for (i, s) in self.services.iter().enumerate() {
            let key = ServiceKey::new(&s.namespace, &s.name)
                .map_err(|e| invalid(format!("services[{i}]"), format!("{}/{}", s.namespace, s.name), e.to_string()))?;
            if !seen.insert(key.clone()) {
                return Err(invalid(format!("services[{i}]"), &key, "service listed twice"));
            }
            for (j, c) in s.clusters.iter().enumerate() {
                if !known.contains(c) {
                    return Err(invalid(
                        format!("services[{i}].clusters[{j}]"),
                        c,
                        "not this gateway's cluster and not in [[peers]]",
                    ));
                }
            }
            if s.ports.is_empty() {
                return Err(invalid(format!("services[{i}].ports"), "[]", "a service needs at least one port"));
            }
            let hosted_here = s.clusters.contains(&g.cluster);
            let mut ports = BTreeSet::new();
            for (j, p) in s.ports.iter().enumerate() {
                if !ports.insert(p.port) {
                    return Err(invalid(format!("services[{i}].ports[{j}].port"), p.port, "port listed twice"));
                }
                if !hosted_here && !p.endpoints.is_empty() {
                    return Err(invalid(
                        format!("services[{i}].ports[{j}].endpoints"),
                        format!("{:?}", p.endpoints),
                        format!(
                            "endpoints are local, but clusters does not include this gateway's cluster {}",
                            g.cluster
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Config {
    /// `[dns]` and `listen.dns`: the section's own bounds, and an answer address to give.
    fn validate_dns(&self) -> Result<(), ConfigError> {
        self.dns.validate()?;
        if self.listen.dns.addr().is_some() && self.dns.answer.is_empty() && self.listen.egress_ips().is_empty() {
            return Err(invalid(
                "dns.answer",
                "[]",
                "listen.dns is on but every egress listener is a wildcard address: give the address clients \
                 reach the egress listeners at (the egress Service's ClusterIP or DNS name)",
            ));
        }
        for (i, t) in self.listen.tcp.iter().enumerate() {
            if t.advertised_port == Some(0) {
                return Err(invalid(format!("listen.tcp[{i}].advertised_port"), 0, "expected the port clients dial"));
            }
        }
        Ok(())
    }
}

impl ListenSection {
    /// The concrete (not wildcard) addresses of the egress listeners: what DNS answers when
    /// `dns.answer` is empty.
    pub fn egress_ips(&self) -> Vec<std::net::IpAddr> {
        let mut ips = Vec::new();
        let listeners = [self.sni.addr(), self.http.addr()].into_iter().flatten();
        for a in listeners.chain(self.tcp.iter().map(|t| t.address)) {
            if !a.ip().is_unspecified() && !ips.contains(&a.ip()) {
                ips.push(a.ip());
            }
        }
        ips
    }

    /// Where the tunnel over TLS on TCP listens: `tunnel_tcp`, or `tunnel`'s address when it is
    /// unset; `None` when it is `"off"`.
    pub fn tunnel_tcp_addr(&self) -> Option<SocketAddr> {
        match self.tunnel_tcp {
            Some(v) => v.addr(),
            None => Some(self.tunnel),
        }
    }

    /// Every address parses; no two TCP listeners share a port (the tunnel is UDP, so it may
    /// share a number with one); port 0 (any free port, for tests) is allowed except for a
    /// tunnel that peers reach at fixed `federator.tunnel_addresses`.
    fn validate(&self, federator: Option<&FederatorSection>) -> Result<(), ConfigError> {
        let mut tcp: Vec<(String, SocketAddr)> = Vec::new();
        if let Some(a) = self.tunnel_tcp_addr() {
            tcp.push(("listen.tunnel_tcp".to_owned(), a));
        }
        for (key, a) in [
            ("listen.sni", self.sni.addr()),
            ("listen.http", self.http.addr()),
            ("listen.admin", Some(self.admin)),
            ("listen.dns", self.dns.addr()),
        ] {
            if let Some(a) = a {
                tcp.push((key.to_owned(), a));
            }
        }
        for (i, t) in self.tcp.iter().enumerate() {
            tcp.push((format!("listen.tcp[{i}].address"), t.address));
        }
        for (i, (key, a)) in tcp.iter().enumerate() {
            // Port 0 picks a different free port for each listener, so it never collides.
            let clash = tcp[..i].iter().find(|(_, b)| skybridge_api::config::listeners_collide(*a, *b));
            if let Some((other, _)) = clash {
                return Err(invalid(
                    key,
                    a,
                    format!("{other} listens on the same address; give each listener its own port"),
                ));
            }
        }
        let tunnel = self.tunnel;
        // The two UDP sockets: the tunnel's and DNS's.
        if let Some(dns) = self.dns.addr()
            && skybridge_api::config::listeners_collide(dns, tunnel)
        {
            return Err(invalid("listen.dns", dns, "listen.tunnel takes the same UDP address; give DNS its own port"));
        }
        if let Some(f) = federator
            && tunnel.port() == 0
            && !f.tunnel_addresses.is_empty()
        {
            return Err(invalid(
                "listen.tunnel",
                self.tunnel,
                "port 0 picks a random port, but peers dial the fixed federator.tunnel_addresses; set the port they forward to",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
