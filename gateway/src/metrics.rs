//! The gateway's Prometheus metrics, registered once into the registry passed down from `app`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use skybridge_api::serve::ServeEvent;

use crate::tunnel::admission::Decision;

/// Which egress listener, or `ingress` for streams from peers.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: &'static str,
}

/// A refused client connection and why.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub listener: &'static str,
    pub reason: &'static str,
}

/// Stream opens by side and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpenLabels {
    /// `egress` (we opened it) or `ingress` (a peer opened it).
    pub side: &'static str,
    pub status: &'static str,
    /// `quic` or `tcp`.
    pub transport: &'static str,
}

/// A handshake result on one transport.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    pub result: &'static str,
    pub transport: &'static str,
}

/// A peer gateway and a transport (`quic`, `tcp`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerTransportLabels {
    pub peer: String,
    pub transport: &'static str,
}

/// Bytes by direction relative to the client: `upstream` (client → service) or `downstream`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabels {
    /// `egress` (local clients) or `ingress` (streams from peers).
    pub side: &'static str,
    pub direction: &'static str,
}

/// A peer gateway.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub peer: String,
}

/// A peer gateway and a health state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerStateLabels {
    pub peer: String,
    pub state: &'static str,
}

/// A peer gateway and a result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerResultLabels {
    pub peer: String,
    pub result: &'static str,
}

/// A result label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// An admission decision on a tunnel connection attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub decision: &'static str,
}

/// A reason label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// A kind label (catalog update kind).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// A traffic entry (see [`crate::traffic`]): a service (or `other`), the cluster that served
/// (or `none`), the transport (`quic`, `tcp`, `local`, `none`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrafficLabels {
    pub service: String,
    pub cluster: String,
    pub transport: &'static str,
}

/// A traffic entry's connections by result (`ok`, `failed`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrafficResultLabels {
    pub service: String,
    pub cluster: String,
    pub transport: &'static str,
    pub result: &'static str,
}

/// A traffic entry's bytes by direction relative to the client.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrafficBytesLabels {
    pub service: String,
    pub cluster: String,
    pub direction: &'static str,
}

/// A service (or `other`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
}

type OpenHistograms = Family<ServiceLabels, Histogram, fn() -> Histogram>;

fn open_histogram() -> Histogram {
    Histogram::new(crate::traffic::OPEN_BUCKETS_MS.iter().map(|ms| *ms as f64 / 1000.0))
}

/// Every metric of the gateway. Cloning shares the underlying series.
#[derive(Clone)]
pub struct Metrics {
    pub connections: Family<ListenerLabels, Counter>,
    pub active_connections: Family<ListenerLabels, Gauge>,
    pub refusals: Family<RefusalLabels, Counter>,
    pub bytes: Family<BytesLabels, Counter>,
    pub stream_opens: Family<OpenLabels, Counter>,
    pub open_latency: Histogram,
    pub peer_rtt: Family<PeerLabels, Gauge<f64, AtomicU64>>,
    pub peer_handshakes: Family<HandshakeLabels, Counter>,
    pub peer_transport: Family<PeerTransportLabels, Gauge>,
    pub transport_changes: Family<PeerTransportLabels, Counter>,
    pub peer_probe_rtt: Family<PeerLabels, Gauge<f64, AtomicU64>>,
    pub peer_probes: Family<PeerResultLabels, Counter>,
    pub peer_state: Family<PeerStateLabels, Gauge>,
    pub peer_transitions: Family<PeerStateLabels, Counter>,
    pub retries: Counter,
    pub endpoint_failures: Counter,
    pub cert_reloads: Family<ResultLabels, Counter>,
    pub cert_expiry: Gauge<f64, AtomicU64>,
    pub cert_expiring: Gauge,
    pub tunnel_incoming: Family<DecisionLabels, Counter>,
    pub tunnel_handshakes: Gauge,
    pub admin_connections: Gauge,
    pub relay_buffer: Gauge,
    pub admin_refusals: Family<ReasonLabels, Counter>,
    pub federator_connected: Gauge,
    pub catalog_version: Gauge,
    pub catalog_updates: Family<KindLabels, Counter>,
    pub catalog_from_cache: Gauge,
    pub catalog_cache_loads: Family<ResultLabels, Counter>,
    pub catalog_cache_writes: Family<ResultLabels, Counter>,
    pub otlp_spans: Family<ResultLabels, Counter>,
    pub traffic_connections: Family<TrafficResultLabels, Counter>,
    pub traffic_retried: Family<TrafficLabels, Counter>,
    pub traffic_bytes: Family<TrafficBytesLabels, Counter>,
    pub traffic_open: OpenHistograms,
}

impl Metrics {
    /// Creates the metrics and registers them under `skybridge_gateway_`.
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            connections: Family::default(),
            active_connections: Family::default(),
            refusals: Family::default(),
            bytes: Family::default(),
            stream_opens: Family::default(),
            // 100 µs .. ~13 s
            open_latency: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            peer_rtt: Family::default(),
            peer_handshakes: Family::default(),
            peer_transport: Family::default(),
            transport_changes: Family::default(),
            peer_probe_rtt: Family::default(),
            peer_probes: Family::default(),
            peer_state: Family::default(),
            peer_transitions: Family::default(),
            retries: Counter::default(),
            endpoint_failures: Counter::default(),
            traffic_connections: Family::default(),
            traffic_retried: Family::default(),
            traffic_bytes: Family::default(),
            traffic_open: Family::new_with_constructor(open_histogram),
            cert_reloads: Family::default(),
            cert_expiry: Gauge::default(),
            cert_expiring: Gauge::default(),
            tunnel_incoming: Family::default(),
            tunnel_handshakes: Gauge::default(),
            admin_connections: Gauge::default(),
            relay_buffer: Gauge::default(),
            admin_refusals: Family::default(),
            federator_connected: Gauge::default(),
            catalog_version: Gauge::default(),
            catalog_updates: Family::default(),
            catalog_from_cache: Gauge::default(),
            catalog_cache_loads: Family::default(),
            catalog_cache_writes: Family::default(),
            otlp_spans: Family::default(),
        };
        // Series that alerts and dashboards divide or compare exist from the start at 0, rather
        // than appearing only after their first event.
        for result in ["ok", "error"] {
            let _ = m.cert_reloads.get_or_create(&ResultLabels { result });
        }
        for result in ["ok", "failed"] {
            for transport in ["quic", "tcp"] {
                let _ = m.peer_handshakes.get_or_create(&HandshakeLabels { result, transport });
            }
        }
        for result in ["exported", "failed"] {
            let _ = m.otlp_spans.get_or_create(&ResultLabels { result });
        }
        for kind in ["snapshot", "delta"] {
            let _ = m.catalog_updates.get_or_create(&KindLabels { kind });
        }
        for result in ["ok", "error"] {
            let _ = m.catalog_cache_writes.get_or_create(&ResultLabels { result });
        }
        for result in ["loaded", "missing", "rejected"] {
            let _ = m.catalog_cache_loads.get_or_create(&ResultLabels { result });
        }
        for d in Decision::ALL {
            let _ = m.tunnel_incoming.get_or_create(&DecisionLabels { decision: d.as_str() });
        }
        for e in [
            ServeEvent::Refused,
            ServeEvent::Evicted,
            ServeEvent::HeaderTimeout,
            ServeEvent::IdleTimeout,
            ServeEvent::AcceptError,
        ] {
            let _ = m.admin_refusals.get_or_create(&ReasonLabels { reason: e.as_str() });
        }
        let r = registry.sub_registry_with_prefix("skybridge_gateway");
        r.register("connections", "Client connections accepted, by listener", m.connections.clone());
        r.register(
            "active_connections",
            "Client connections (egress) or peer streams (ingress) in flight",
            m.active_connections.clone(),
        );
        r.register("refusals", "Connections refused before routing, by listener and reason", m.refusals.clone());
        r.register("bytes", "Bytes relayed, by direction relative to the client", m.bytes.clone());
        r.register("stream_opens", "Tunnel stream opens by side, status and transport", m.stream_opens.clone());
        r.register(
            "traffic_connections",
            "Egress connections by service, serving cluster, transport and result (limits.traffic_services services, then other)",
            m.traffic_connections.clone(),
        );
        r.register(
            "traffic_retried",
            "Served egress connections whose first choice failed, by service, cluster and transport",
            m.traffic_retried.clone(),
        );
        r.register("traffic_bytes", "Egress bytes by service, cluster and direction", m.traffic_bytes.clone());
        r.register(
            "traffic_open_seconds",
            "Time to an open stream of served egress connections, by service",
            m.traffic_open.clone(),
        );
        r.register(
            "open_latency_seconds",
            "Time from opening a tunnel stream to receiving its status",
            m.open_latency.clone(),
        );
        r.register("peer_rtt_seconds", "QUIC smoothed RTT to each peer gateway", m.peer_rtt.clone());
        r.register("peer_handshakes", "Handshakes with peers, by result and transport", m.peer_handshakes.clone());
        r.register("peer_transport", "1 for the transport new streams to each peer use", m.peer_transport.clone());
        r.register(
            "relay_buffer_bytes",
            "Read-buffer bytes granted to relays past their minimum (limits.relay_buffer_budget)",
            m.relay_buffer.clone(),
        );
        r.register(
            "transport_changes",
            "Per-peer transport changes (fallback to tcp, recovery to quic), by the transport taken",
            m.transport_changes.clone(),
        );
        r.register(
            "peer_probe_rtt_seconds",
            "Smoothed probe round trip to each peer gateway",
            m.peer_probe_rtt.clone(),
        );
        r.register("peer_probes", "Probes sent to each peer, by result (ok, missed)", m.peer_probes.clone());
        r.register("peer_state", "1 for each peer's current health state", m.peer_state.clone());
        r.register("peer_transitions", "Peer health state changes, by the state entered", m.peer_transitions.clone());
        r.register(
            "retries",
            "Connections retried on the next candidate after a failed or slow open",
            m.retries.clone(),
        );
        r.register(
            "endpoint_failures",
            "Local endpoint connects that failed (refused, unreachable, timed out)",
            m.endpoint_failures.clone(),
        );
        r.register("cert_reloads", "Certificate reload attempts by result", m.cert_reloads.clone());
        r.register(
            "cert_expiry_timestamp_seconds",
            "Unix time when this gateway's certificate expires",
            m.cert_expiry.clone(),
        );
        r.register(
            "cert_expiring",
            "1 while this gateway's certificate is within tls.expiry_warning of expiry (or expired)",
            m.cert_expiring.clone(),
        );
        r.register(
            "tunnel_incoming",
            "Tunnel connection attempts by admission decision (accepted, retry, per_source_limit, handshake_limit)",
            m.tunnel_incoming.clone(),
        );
        r.register(
            "tunnel_handshakes_in_flight",
            "Tunnel handshakes in progress (admitted, not yet authenticated)",
            m.tunnel_handshakes.clone(),
        );
        r.register("admin_connections", "Admin server connections open", m.admin_connections.clone());
        r.register(
            "admin_refusals",
            "Admin connections refused at the cap (max_connections) or closed by a timeout (header_timeout, idle_timeout), and failed accepts (accept_error)",
            m.admin_refusals.clone(),
        );
        r.register(
            "federator_connected",
            "1 while the control stream to the federator is up",
            m.federator_connected.clone(),
        );
        r.register("catalog_version", "Version of the federator catalog being routed on", m.catalog_version.clone());
        r.register("catalog_updates", "Catalog snapshots and deltas applied", m.catalog_updates.clone());
        r.register(
            "catalog_from_cache",
            "1 while routing on the catalog cache file read at start-up (the federator has not answered yet)",
            m.catalog_from_cache.clone(),
        );
        r.register(
            "catalog_cache_loads",
            "Catalog cache file reads at start-up, by result (loaded, missing, rejected)",
            m.catalog_cache_loads.clone(),
        );
        r.register(
            "catalog_cache_writes",
            "Catalog cache file writes, by result (ok, error)",
            m.catalog_cache_writes.clone(),
        );
        r.register(
            "otlp_spans",
            "Connection spans sent to the OTLP receiver, by result (exported, failed)",
            m.otlp_spans.clone(),
        );
        m
    }

    /// Counts a refusal before routing.
    pub fn refuse(&self, listener: &'static str, reason: &'static str) {
        self.refusals.get_or_create(&RefusalLabels { listener, reason }).inc();
    }

    /// Counts a tunnel admission decision.
    pub fn admission(&self, d: Decision) {
        self.tunnel_incoming.get_or_create(&DecisionLabels { decision: d.as_str() }).inc();
    }

    /// Counts an admin server event.
    pub fn admin(&self, e: ServeEvent) {
        match e {
            ServeEvent::Opened => {
                self.admin_connections.inc();
            }
            ServeEvent::Closed => {
                self.admin_connections.dec();
            }
            other => {
                self.admin_refusals.get_or_create(&ReasonLabels { reason: other.as_str() }).inc();
            }
        }
    }

    /// Counts a stream open result.
    pub fn open(&self, side: &'static str, status: &'static str, transport: &'static str) {
        self.stream_opens.get_or_create(&OpenLabels { side, status, transport }).inc();
    }

    /// Counts one egress connection under its traffic entry.
    pub fn traffic(&self, key: &crate::traffic::Key, c: &crate::traffic::Connection<'_>) {
        let (service, cluster, transport) = (key.service.clone(), key.cluster.clone(), key.transport);
        let result = if c.served_by.is_some() { "ok" } else { "failed" };
        let labels = TrafficResultLabels { service: service.clone(), cluster: cluster.clone(), transport, result };
        self.traffic_connections.get_or_create(&labels).inc();
        if c.served_by.is_none() {
            return;
        }
        if c.attempts > 1 {
            self.traffic_retried
                .get_or_create(&TrafficLabels { service: service.clone(), cluster: cluster.clone(), transport })
                .inc();
        }
        for (direction, n) in [("upstream", c.bytes_up), ("downstream", c.bytes_down)] {
            let labels = TrafficBytesLabels { service: service.clone(), cluster: cluster.clone(), direction };
            self.traffic_bytes.get_or_create(&labels).inc_by(n);
        }
        self.traffic_open.get_or_create(&ServiceLabels { service }).observe(c.open.as_secs_f64());
    }

    /// Adds relayed bytes.
    pub fn relayed(&self, side: &'static str, upstream: u64, downstream: u64) {
        self.bytes.get_or_create(&BytesLabels { side, direction: "upstream" }).inc_by(upstream);
        self.bytes.get_or_create(&BytesLabels { side, direction: "downstream" }).inc_by(downstream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every family that has series from registration on has a row in docs/metrics.md's
    /// gateway table. The workspace test `tests/tests/observability.rs` checks every family
    /// against a running fleet; this one runs with the gateway's own tests.
    #[test]
    fn every_metric_is_documented() {
        let mut registry = Registry::default();
        Metrics::register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md")).unwrap();
        let gateway_part = docs.split("## Federator").next().unwrap();
        let families: Vec<(&str, &str)> =
            text.lines().filter_map(|l| l.strip_prefix("# TYPE skybridge_gateway_")?.split_once(' ')).collect();
        assert!(families.len() > 10, "{text}");
        let missing: Vec<String> = families
            .iter()
            .map(|(name, kind)| if *kind == "counter" { format!("`{name}_total`") } else { format!("`{name}`") })
            .filter(|row| !gateway_part.contains(&format!("| {row} |")))
            .collect();
        assert!(missing.is_empty(), "not in docs/metrics.md: {missing:?}");
    }

    /// 10,000 services, 50 of them with traffic of their own: the traffic families' series stay
    /// bounded by `limits.traffic_services`, whatever the catalog's size.
    #[test]
    fn traffic_series_are_bounded() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        let mut t = crate::traffic::Traffic::new(50);
        let gcp = skybridge_api::model::ClusterId::new("gcp-1").unwrap();
        for i in 0..10_000 {
            let service: skybridge_api::model::ServiceKey = format!("prod/s{i}").parse().unwrap();
            let c = crate::traffic::Connection {
                service: &service,
                served_by: Some(&gcp),
                transport: "quic",
                attempts: 2,
                open: std::time::Duration::from_millis(3),
                bytes_up: 10,
                bytes_down: 20,
            };
            let key = t.record(c);
            m.traffic(&key, &c);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let series = |family: &str| text.lines().filter(|l| l.starts_with(family) && !l.starts_with('#')).count();
        // 50 services and `other`, one cluster and transport each.
        assert_eq!(series("skybridge_gateway_traffic_connections_total{"), 51);
        assert_eq!(series("skybridge_gateway_traffic_retried_total{"), 51);
        assert_eq!(series("skybridge_gateway_traffic_bytes_total{"), 2 * 51);
        assert!(text.contains(r#"skybridge_gateway_traffic_connections_total{service="other",cluster="gcp-1",transport="quic",result="ok"} 9950"#));
    }
}
