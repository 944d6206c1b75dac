//! The federator's Prometheus metrics, registered once into the registry served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// A source sync outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    pub source: String,
    /// `ok`, or the error kind (`auth`, `not_found`, `throttled`, `unavailable`, `malformed`).
    pub result: String,
}

/// One source.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

/// A control message kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// A server event (`opened`, `closed`, `max_connections`, `header_timeout`, `idle_timeout`,
/// `accept_error`, `handshake_timeout`, `handshake_failed`, `first_byte_timeout`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: &'static str,
}

/// A result (`ok` or `error`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// Every federator metric; clones share the series.
#[derive(Clone)]
pub struct Metrics {
    pub catalog_version: Gauge,
    pub catalog_services: Gauge,
    pub merge_seconds: Histogram,
    pub source_syncs: Family<SyncLabels, Counter>,
    pub source_last_success: Family<SyncLabels, Gauge>,
    pub source_up: Family<SourceLabels, Gauge>,
    pub source_stale: Family<SourceLabels, Gauge>,
    pub source_consecutive_failures: Family<SourceLabels, Gauge>,
    pub source_services: Family<SourceLabels, Gauge>,
    pub source_failing_clusters: Family<SourceLabels, Gauge>,
    pub gateways_connected: Gauge,
    pub control_messages: Family<KindLabels, Counter>,
    pub gateways_lagging: Counter,
    pub leader: Gauge,
    pub leader_changes: Counter,
    pub store_up: Gauge,
    pub fenced_writes: Counter,
    pub gateways_expired: Counter,
    pub removals_held: Counter,
    pub api_connections: Family<EventLabels, Counter>,
    pub control_connections: Family<EventLabels, Counter>,
    pub source_removal_held: Family<SourceLabels, Gauge>,
    pub cert_reloads: Family<ResultLabels, Counter>,
    pub policy_file_reloads: Family<ResultLabels, Counter>,
    pub cert_expiry: Gauge<f64, AtomicU64>,
    pub cert_expiring: Gauge,
}

impl Metrics {
    /// Creates the metrics and registers them under `skybridge_federator_`.
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            catalog_version: Gauge::default(),
            catalog_services: Gauge::default(),
            // 1 ms .. ~30 s
            merge_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            source_syncs: Family::default(),
            source_last_success: Family::default(),
            source_up: Family::default(),
            source_stale: Family::default(),
            source_consecutive_failures: Family::default(),
            source_services: Family::default(),
            source_failing_clusters: Family::default(),
            gateways_connected: Gauge::default(),
            control_messages: Family::default(),
            gateways_lagging: Counter::default(),
            leader: Gauge::default(),
            leader_changes: Counter::default(),
            store_up: Gauge::default(),
            fenced_writes: Counter::default(),
            gateways_expired: Counter::default(),
            removals_held: Counter::default(),
            api_connections: Family::default(),
            control_connections: Family::default(),
            source_removal_held: Family::default(),
            cert_reloads: Family::default(),
            policy_file_reloads: Family::default(),
            cert_expiry: Gauge::default(),
            cert_expiring: Gauge::default(),
        };
        // Both outcomes exist from the start, so that `increase(...{result="error"})` alerts work.
        for result in ["ok", "error"] {
            let _ = m.cert_reloads.get_or_create(&ResultLabels { result });
        }
        let r = registry.sub_registry_with_prefix("skybridge_federator");
        r.register("catalog_version", "Version of the global catalog", m.catalog_version.clone());
        r.register("catalog_services", "Services in the global catalog", m.catalog_services.clone());
        r.register("merge_seconds", "Time to merge the sources into the catalog", m.merge_seconds.clone());
        r.register("source_syncs", "Source sync attempts by source and result", m.source_syncs.clone());
        r.register(
            "source_last_success_timestamp_seconds",
            "Unix time of each source's last successful sync (result label is always ok)",
            m.source_last_success.clone(),
        );
        r.register("source_up", "1 when the source's last sync succeeded, 0 while it fails", m.source_up.clone());
        r.register(
            "source_stale",
            "1 while the source fails and its last good data is served stale",
            m.source_stale.clone(),
        );
        r.register(
            "source_consecutive_failures",
            "Failed syncs since the source's last success",
            m.source_consecutive_failures.clone(),
        );
        r.register("source_services", "Services in the source's last good snapshot", m.source_services.clone());
        r.register(
            "source_failing_clusters",
            "Clusters of a fleet source that fail while the others sync (their data is served stale)",
            m.source_failing_clusters.clone(),
        );
        r.register("gateways_connected", "Gateway control streams open", m.gateways_connected.clone());
        r.register("control_messages", "Snapshots and deltas sent to gateways", m.control_messages.clone());
        r.register(
            "gateways_lagging",
            "Times a gateway's queue was full and it was resnapshotted",
            m.gateways_lagging.clone(),
        );
        r.register(
            "leader",
            "1 while this replica leads (runs the sources and writes catalog versions)",
            m.leader.clone(),
        );
        r.register("leader_changes", "Times this replica became or stopped being the leader", m.leader_changes.clone());
        r.register("store_up", "1 while the store answers, 0 while this replica serves read-only", m.store_up.clone());
        r.register(
            "fenced_writes",
            "Leader writes the store refused because another replica leads now",
            m.fenced_writes.clone(),
        );
        r.register(
            "gateways_expired",
            "Gateway records removed after gateway_expiry without a session",
            m.gateways_expired.clone(),
        );
        r.register("cert_reloads", "Certificate reload attempts by result", m.cert_reloads.clone());
        r.register(
            "policy_file_reloads",
            "Changes of the policies file by result (ok: applied; error: refused, the previous policies stay)",
            m.policy_file_reloads.clone(),
        );
        r.register(
            "cert_expiry_timestamp_seconds",
            "Unix time when this replica's certificate expires",
            m.cert_expiry.clone(),
        );
        r.register(
            "cert_expiring",
            "1 while this replica's certificate is within tls.expiry_warning of expiry (or expired)",
            m.cert_expiring.clone(),
        );
        r.register(
            "removals_held",
            "Source answers held by the mass-removal guard (previous data kept)",
            m.removals_held.clone(),
        );
        r.register(
            "source_removal_held",
            "1 while the source's last answer is held by the mass-removal guard",
            m.source_removal_held.clone(),
        );
        r.register(
            "api_connections",
            "REST API connections by event (opened, closed, max_connections, header_timeout, idle_timeout, accept_error)",
            m.api_connections.clone(),
        );
        r.register(
            "control_connections",
            "Control-port connections by event (opened, closed, max_connections, handshake_timeout, \
             handshake_failed, first_byte_timeout, accept_error)",
            m.control_connections.clone(),
        );
        m
    }

    /// Sets the per-source gauges from the core's view.
    pub fn set_sources<'a>(&self, sources: impl IntoIterator<Item = (&'a String, &'a crate::core::SourceStatus)>) {
        for (id, st) in sources {
            let l = SourceLabels { source: id.clone() };
            let failing = st.consecutive_failures > 0;
            self.source_up.get_or_create(&l).set(i64::from(!failing && st.last_success.is_some()));
            self.source_stale.get_or_create(&l).set(i64::from(st.stale_since.is_some()));
            self.source_consecutive_failures.get_or_create(&l).set(i64::from(st.consecutive_failures));
            self.source_services.get_or_create(&l).set(st.services as i64);
            self.source_failing_clusters.get_or_create(&l).set(st.failing_clusters.len() as i64);
            self.source_removal_held.get_or_create(&l).set(i64::from(st.held_removal.is_some()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/metrics.md's federator table and the registry name the same families, both ways: a
    /// documented metric that is never registered is as misleading as an undocumented one.
    #[test]
    fn the_federator_table_matches_the_registry() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        // Labelled families appear once they have a series.
        let sync = SyncLabels { source: "s".into(), result: "ok".into() };
        m.source_syncs.get_or_create(&sync).inc();
        m.source_last_success.get_or_create(&sync).set(1);
        let status = crate::core::SourceStatus::default();
        m.set_sources([(&"s".to_owned(), &status)]);
        m.control_messages.get_or_create(&KindLabels { kind: "delta" }).inc();
        m.api_connections.get_or_create(&EventLabels { event: "opened" }).inc();
        m.control_connections.get_or_create(&EventLabels { event: "opened" }).inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let mut served: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE skybridge_federator_")?.split_once(' '))
            .map(|(name, kind)| if kind == "counter" { format!("{name}_total") } else { name.to_owned() })
            .collect();
        let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md")).unwrap();
        let table = docs.split("## Federator").nth(1).unwrap().split("\n## ").next().unwrap();
        let mut documented: Vec<String> = table
            .lines()
            .filter_map(|l| l.strip_prefix("| `")?.split_once('`'))
            .map(|(name, _)| name.to_owned())
            .collect();
        served.sort();
        documented.sort();
        assert!(served.len() > 10, "{text}");
        assert_eq!(served, documented);
    }
}
