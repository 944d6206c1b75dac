//! The federator's Prometheus metrics, registered once into the registry served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A source sync outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    pub source: String,
    /// `ok`, or the error kind (`auth`, `not_found`, `throttled`, `unavailable`, `malformed`).
    pub result: String,
}

/// A control message kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// Every federator metric; clones share the series.
#[derive(Clone)]
pub struct Metrics {
    pub catalog_version: Gauge,
    pub catalog_services: Gauge,
    pub merge_seconds: Histogram,
    pub source_syncs: Family<SyncLabels, Counter>,
    pub source_last_success: Family<SyncLabels, Gauge>,
    pub gateways_connected: Gauge,
    pub control_messages: Family<KindLabels, Counter>,
    pub gateways_lagging: Counter,
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
            gateways_connected: Gauge::default(),
            control_messages: Family::default(),
            gateways_lagging: Counter::default(),
        };
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
        r.register("gateways_connected", "Gateway control streams open", m.gateways_connected.clone());
        r.register("control_messages", "Snapshots and deltas sent to gateways", m.control_messages.clone());
        r.register(
            "gateways_lagging",
            "Times a gateway's queue was full and it was resnapshotted",
            m.gateways_lagging.clone(),
        );
        m
    }
}
