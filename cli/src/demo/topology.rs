//! The demo's world as data: three clusters named like clouds, the sample services and where
//! they run, the round-trip time between every pair of clusters, and where everything listens.
//! Pure: no I/O, so the layout and the expected routes are unit-tested.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// One emulated cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterSpec {
    /// Cluster id, as in the catalog and the gateway's certificate.
    pub id: &'static str,
    /// Cloud name as the configs spell it (`aws`, `gcp`, `azure`).
    pub cloud: &'static str,
    pub region: &'static str,
}

/// The three clusters; their index is used everywhere below (ports, RTT pairs).
pub const CLUSTERS: [ClusterSpec; 3] = [
    ClusterSpec { id: "aws-demo", cloud: "aws", region: "us-east-1" },
    ClusterSpec { id: "gcp-demo", cloud: "gcp", region: "europe-west1" },
    ClusterSpec { id: "azure-demo", cloud: "azure", region: "westeurope" },
];

/// The namespace of every sample service.
pub const NAMESPACE: &str = "shop";

/// A sample service and the clusters (indexes into [`CLUSTERS`]) that run a copy of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: &'static str,
    pub clusters: &'static [usize],
}

impl ServiceSpec {
    /// `name.shop`, as the backends introduce themselves.
    pub fn short(&self) -> String {
        format!("{}.{NAMESPACE}", self.name)
    }

    /// The clusterset name clients use (`Host:` or SNI).
    pub fn host(&self) -> String {
        format!("{}.{NAMESPACE}.svc.clusterset.local", self.name)
    }

    /// Whether `cluster` runs a copy.
    pub fn runs_in(&self, cluster: usize) -> bool {
        self.clusters.contains(&cluster)
    }
}

/// The sample services: one everywhere, two in two clouds each, one in a single cloud.
pub const SERVICES: [ServiceSpec; 4] = [
    ServiceSpec { name: "web", clusters: &[0, 1, 2] },
    ServiceSpec { name: "payments", clusters: &[0, 1] },
    ServiceSpec { name: "search", clusters: &[1, 2] },
    ServiceSpec { name: "inventory", clusters: &[2] },
];

/// The port every sample service exports (plain HTTP, routed by `Host`).
pub const SERVICE_PORT: u16 = 80;

/// Index of a cluster named by id (`aws-demo`) or cloud (`aws`).
pub fn cluster_index(name: &str) -> Option<usize> {
    CLUSTERS.iter().position(|c| c.id == name || c.cloud == name)
}

/// Why an `--rtt` override or a port layout was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("--rtt {0:?}: expected A-B=DURATION[,A-B=DURATION...] with A, B among aws, gcp, azure (e.g. aws-gcp=10ms)")]
    RttSyntax(String),
    #[error("--rtt {entry:?}: {reason}")]
    RttValue { entry: String, reason: String },
    #[error("--base-port {0}: the demo uses ports BASE+1 to BASE+{max}, which must stay below 65536", max = LAST_OFFSET)]
    BasePort(u16),
}

/// Round-trip times between cluster pairs (symmetric).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RttMatrix(BTreeMap<(usize, usize), Duration>);

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl Default for RttMatrix {
    /// aws↔gcp 10 ms, aws↔azure 40 ms, gcp↔azure 80 ms: far enough apart that the choice
    /// between two remote copies is never a toss-up.
    fn default() -> Self {
        let ms = Duration::from_millis;
        RttMatrix(BTreeMap::from([((0, 1), ms(10)), ((0, 2), ms(40)), ((1, 2), ms(80))]))
    }
}

impl RttMatrix {
    /// The RTT between clusters `a` and `b` (zero for a cluster and itself).
    pub fn get(&self, a: usize, b: usize) -> Duration {
        self.0.get(&pair(a, b)).copied().unwrap_or_default()
    }

    /// Every pair once, `a < b`, with its RTT.
    pub fn pairs(&self) -> impl Iterator<Item = (usize, usize, Duration)> + '_ {
        self.0.iter().map(|(&(a, b), &d)| (a, b, d))
    }

    /// Applies overrides written as `aws-gcp=10ms,gcp-azure=120ms` (clusters by cloud or id).
    pub fn apply(&mut self, spec: &str) -> Result<(), TopologyError> {
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (names, value) = entry.split_once('=').ok_or_else(|| TopologyError::RttSyntax(entry.into()))?;
            // Ids contain '-' themselves ("aws-demo-gcp-demo"), so try every split point.
            let (a, b) = names
                .match_indices('-')
                .find_map(|(i, _)| Some((cluster_index(&names[..i])?, cluster_index(&names[i + 1..])?)))
                .ok_or_else(|| TopologyError::RttSyntax(entry.into()))?;
            if a == b {
                return Err(TopologyError::RttValue {
                    entry: entry.into(),
                    reason: "a cluster has no link to itself".into(),
                });
            }
            let rtt = skybridge_api::config::duration::parse(value)
                .map_err(|reason| TopologyError::RttValue { entry: entry.into(), reason })?;
            self.0.insert(pair(a, b), rtt);
        }
        Ok(())
    }

    /// The cluster that answers a request for `service` sent to `from`'s gateway when every
    /// path is healthy: the local copy, else the copy with the lowest RTT from `from`.
    pub fn expected_answer(&self, from: usize, service: &ServiceSpec) -> usize {
        if service.runs_in(from) {
            return from;
        }
        *service.clusters.iter().min_by_key(|&&c| (self.get(from, c), c)).expect("every service runs somewhere")
    }
}

impl fmt::Display for RttMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .pairs()
            .map(|(a, b, d)| {
                format!("{}-{}={}", CLUSTERS[a].cloud, CLUSTERS[b].cloud, skybridge_api::config::duration::format(d))
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Where the demo's listeners come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    /// Fixed offsets from a base port, so printed addresses are the same on every run.
    Base(u16),
    /// Any free port (`:0`) for each listener; tests use this.
    Ephemeral,
}

/// The listeners of one gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayPorts {
    /// QUIC tunnel (UDP).
    pub tunnel: SocketAddr,
    /// Egress, TLS passthrough by SNI.
    pub sni: SocketAddr,
    /// Egress, plain HTTP by Host.
    pub http: SocketAddr,
    /// `/healthz`, `/readyz`, `/metrics`, `/status`.
    pub admin: SocketAddr,
    /// The `clusterset.local` DNS server (UDP and TCP).
    pub dns: SocketAddr,
}

/// Every address the demo binds except the federator's API (which has its own flag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The federator's gRPC control listener.
    pub control: SocketAddr,
    /// The demo's own HTTP endpoint for cutting and restoring links.
    pub links: SocketAddr,
    /// Per cluster, in [`CLUSTERS`] order.
    pub gateways: [GatewayPorts; 3],
    /// The UDP relay for traffic that `from` sends to `to`, keyed `(from, to)`.
    pub relays: BTreeMap<(usize, usize), SocketAddr>,
    /// The backend of `SERVICES[s]` in cluster `c`, keyed `(c, s)`, where it runs.
    pub backends: BTreeMap<(usize, usize), SocketAddr>,
}

/// The highest offset from the base port that [`Layout::new`] uses.
const LAST_OFFSET: u16 = 600;

fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

impl Layout {
    /// The layout for `ports`. With a base port B (default 18000): control B+10, links API
    /// B+90; gateway i (0 aws, 1 gcp, 2 azure) in block B+100·(i+1): SNI +1, admin +21, tunnel
    /// +43 (UDP), DNS +53 (UDP and TCP), HTTP +80 (so aws's HTTP is 18180); relay from i to j at B+400+10·i+j;
    /// backend of service s in cluster c at B+500+10·c+s. The endings echo the production
    /// defaults (15001, 15021, 15080, 15010).
    pub fn new(ports: Ports) -> Result<Layout, TopologyError> {
        let at = |offset: u16| -> Result<SocketAddr, TopologyError> {
            match ports {
                Ports::Ephemeral => Ok(local(0)),
                Ports::Base(b) if b.checked_add(LAST_OFFSET).is_some() => Ok(local(b + offset)),
                Ports::Base(b) => Err(TopologyError::BasePort(b)),
            }
        };
        let gw = |i: u16| -> Result<GatewayPorts, TopologyError> {
            let block = 100 * (i + 1);
            Ok(GatewayPorts {
                sni: at(block + 1)?,
                admin: at(block + 21)?,
                tunnel: at(block + 43)?,
                dns: at(block + 53)?,
                http: at(block + 80)?,
            })
        };
        let mut relays = BTreeMap::new();
        let mut backends = BTreeMap::new();
        for from in 0..CLUSTERS.len() {
            for to in (0..CLUSTERS.len()).filter(|&to| to != from) {
                relays.insert((from, to), at(400 + 10 * from as u16 + to as u16)?);
            }
            for s in (0..SERVICES.len()).filter(|&s| SERVICES[s].runs_in(from)) {
                backends.insert((from, s), at(500 + 10 * from as u16 + s as u16)?);
            }
        }
        Ok(Layout { control: at(10)?, links: at(90)?, gateways: [gw(0)?, gw(1)?, gw(2)?], relays, backends })
    }

    /// Every TCP address (for checking a base port's range is free).
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        let mut out = vec![self.control, self.links];
        out.extend(self.gateways.iter().flat_map(|g| [g.sni, g.http, g.admin, g.dns]));
        out.extend(self.backends.values());
        out
    }

    /// Every UDP address: tunnels and relays.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = self.gateways.iter().flat_map(|g| [g.tunnel, g.dns]).collect();
        out.extend(self.relays.values());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_layout_is_distinct_and_predictable() {
        let l = Layout::new(Ports::Base(18000)).unwrap();
        assert_eq!(l.gateways[0].http, local(18180));
        assert_eq!(l.gateways[2].sni, local(18301));
        assert_eq!(l.relays[&(2, 0)], local(18420));
        assert_eq!(l.control, local(18010));
        let mut tcp: Vec<u16> = l.tcp_addrs().iter().map(|a| a.port()).collect();
        let n = tcp.len();
        tcp.sort();
        tcp.dedup();
        assert_eq!(tcp.len(), n, "no TCP port used twice");
        let mut udp: Vec<u16> = l.udp_addrs().iter().map(|a| a.port()).collect();
        udp.sort();
        udp.dedup();
        assert_eq!(udp.len(), 3 + 3 + 6, "three tunnels, three DNS servers, six one-way relays");
        assert_eq!(l.gateways[0].dns, local(18153));
        assert_eq!(l.backends.len(), SERVICES.iter().map(|s| s.clusters.len()).sum::<usize>());
        assert_eq!(Layout::new(Ports::Base(65000)), Err(TopologyError::BasePort(65000)));
    }

    #[test]
    fn rtt_overrides_parse_by_cloud_or_id() {
        let mut m = RttMatrix::default();
        assert_eq!(m.get(2, 0), Duration::from_millis(40));
        m.apply("gcp-azure=120ms, aws-demo-gcp-demo=5ms").unwrap();
        assert_eq!(m.get(2, 1), Duration::from_millis(120));
        assert_eq!(m.get(0, 1), Duration::from_millis(5));
        assert_eq!(m.to_string(), "aws-gcp=5ms,aws-azure=40ms,gcp-azure=120ms");
        assert!(matches!(m.apply("aws-mars=1ms"), Err(TopologyError::RttSyntax(_))));
        assert!(matches!(m.apply("aws-aws=1ms"), Err(TopologyError::RttValue { .. })));
        assert!(matches!(m.apply("aws-gcp=fast"), Err(TopologyError::RttValue { .. })));
    }

    #[test]
    fn expected_answer_is_local_then_nearest() {
        let m = RttMatrix::default();
        let payments = SERVICES[1];
        assert_eq!(m.expected_answer(2, &payments), 0, "from azure: aws (40 ms) beats gcp (80 ms)");
        assert_eq!(m.expected_answer(1, &payments), 1, "gcp runs its own copy");
        assert_eq!(m.expected_answer(0, &SERVICES[2]), 1, "search from aws: gcp (10 ms) beats azure (40 ms)");
        assert_eq!(m.expected_answer(0, &SERVICES[3]), 2, "inventory runs only in azure");
    }
}
