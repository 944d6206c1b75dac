//! `GET /api/v1/traffic`: the gateways' counters summed per service and per path.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use skybridge_api::model::ClusterId;
use utoipa::ToSchema;

use super::{Counters, Entry, HORIZON_MS, History, SAMPLE_EVERY_MS};

/// Points in a history: 15 minutes at 10 s.
const POINTS: usize = (HORIZON_MS / SAMPLE_EVERY_MS) as usize;

/// One point of a history: rates over the 10 s ending at `at`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Point {
    pub at: u64,
    pub conn_per_s: f64,
    pub failed_per_s: f64,
    pub bytes_per_s: f64,
}

/// The figures of a service or a path.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Figures {
    /// Connections served, summed over the gateways since each started.
    pub connections: u64,
    /// Connections no cluster could take (service rows only).
    pub failed: u64,
    /// Served connections whose first choice failed and that were retried elsewhere.
    pub retried: u64,
    /// Bytes from clients towards the service, and back.
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// `connections / (connections + failed)`; `null` before any connection.
    pub success_ratio: Option<f64>,
    /// The open time 99 % of connections beat (ms, the upper bound of its bucket), over the last
    /// 5 minutes, or since the start when nothing moved in them; `null` without a connection.
    pub p99_open_ms: Option<u64>,
    pub conn_per_s_1m: f64,
    pub conn_per_s_5m: f64,
    pub failed_per_s_5m: f64,
    /// Both directions.
    pub bytes_per_s_1m: f64,
    /// The last 15 minutes at 10 s, oldest first.
    pub history: Vec<Point>,
}

/// A service's traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServiceRow {
    /// `namespace/name`, or `other` (services past a gateway's `limits.traffic_services`).
    pub service: String,
    pub traffic: Figures,
}

/// A path's traffic: connections from `from`'s clients served by `to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PathRow {
    pub from: String,
    pub to: String,
    /// `quic`, `tcp` (TLS over TCP) or `local` (`from` served its own clients).
    pub transport: String,
    pub traffic: Figures,
}

/// `GET /api/v1/traffic`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TrafficResponse {
    /// When the view was made (Unix ms).
    pub at: u64,
    /// Sorted by connections in the last 5 minutes, then by name.
    pub services: Vec<ServiceRow>,
    pub paths: Vec<PathRow>,
}

/// A row as it is summed.
#[derive(Debug, Default)]
struct Acc {
    total: Counters,
    last_5m: Counters,
    figures: Figures,
}

/// What one change of counters over `span` ms adds to a row's rates.
fn rate(n: u64, span: u64) -> f64 {
    n as f64 * 1000.0 / span as f64
}

/// The p99 open time from bucket counts.
fn p99(buckets: &[u64]) -> Option<u64> {
    skybridge_api::traffic::quantile_ms(buckets, 0.99)
}

/// Sums every gateway's history (with its source cluster) into the view at `now`.
pub(super) fn build<'a>(gateways: impl Iterator<Item = (&'a ClusterId, &'a History)>, now: u64) -> TrafficResponse {
    let mut services: BTreeMap<String, Acc> = BTreeMap::new();
    let mut paths: BTreeMap<(String, String, String), Acc> = BTreeMap::new();
    let first_bin = now.saturating_sub(HORIZON_MS);
    for (from, h) in gateways {
        // Each entry goes to its service's row and, when served, to its path's.
        let mut rows = |e: &Entry, mut f: Box<dyn FnMut(&mut Acc) + '_>| {
            f(services.entry(e.service.clone()).or_default());
            if e.cluster != "none" {
                f(paths.entry((from.to_string(), e.cluster.clone(), e.transport.clone())).or_default());
            }
        };
        for (e, c) in &h.latest.entries {
            rows(e, Box::new(|a: &mut Acc| a.total.add(c)));
        }
        for (window, minute) in [(60_000u64, true), (300_000, false)] {
            let Some((delta, span)) = h.over(now.saturating_sub(window)) else { continue };
            for (e, d) in &delta {
                rows(
                    e,
                    Box::new(|a: &mut Acc| {
                        if minute {
                            a.figures.conn_per_s_1m += rate(d.ok, span);
                            a.figures.bytes_per_s_1m += rate(d.bytes_up + d.bytes_down, span);
                        } else {
                            a.figures.conn_per_s_5m += rate(d.ok, span);
                            a.figures.failed_per_s_5m += rate(d.failed, span);
                            a.last_5m.add(d);
                        }
                    }),
                );
            }
        }
        // History: each step between kept samples (and on to the latest) as a rate, in the
        // 10 s bin it ended in.
        let steps = h.samples.iter().zip(h.samples.iter().skip(1).chain(std::iter::once(&h.latest)));
        for (a, b) in steps {
            let span = b.at.saturating_sub(a.at);
            if span == 0 || b.at < first_bin {
                continue;
            }
            let bin = (((b.at - first_bin) / SAMPLE_EVERY_MS) as usize).min(POINTS - 1);
            for (e, d) in History::delta(b, a) {
                rows(
                    &e,
                    Box::new(|acc: &mut Acc| {
                        if acc.figures.history.is_empty() {
                            acc.figures.history = (0..POINTS)
                                .map(|i| Point { at: first_bin + (i as u64 + 1) * SAMPLE_EVERY_MS, ..Point::default() })
                                .collect();
                        }
                        let p = &mut acc.figures.history[bin];
                        p.conn_per_s += rate(d.ok, span);
                        p.failed_per_s += rate(d.failed, span);
                        p.bytes_per_s += rate(d.bytes_up + d.bytes_down, span);
                    }),
                );
            }
        }
    }
    let finish = |a: Acc| {
        let mut f = a.figures;
        let t = a.total;
        (f.connections, f.failed, f.retried, f.bytes_up, f.bytes_down) =
            (t.ok, t.failed, t.retried, t.bytes_up, t.bytes_down);
        f.success_ratio = (t.ok + t.failed > 0).then(|| t.ok as f64 / (t.ok + t.failed) as f64);
        f.p99_open_ms = p99(&a.last_5m.open_buckets).or_else(|| p99(&t.open_buckets));
        if f.history.is_empty() {
            f.history = (0..POINTS)
                .map(|i| Point {
                    at: now.saturating_sub(HORIZON_MS) + (i as u64 + 1) * SAMPLE_EVERY_MS,
                    ..Point::default()
                })
                .collect();
        }
        f
    };
    let mut services: Vec<ServiceRow> =
        services.into_iter().map(|(service, a)| ServiceRow { service, traffic: finish(a) }).collect();
    services
        .sort_by(|a, b| b.traffic.conn_per_s_5m.total_cmp(&a.traffic.conn_per_s_5m).then(a.service.cmp(&b.service)));
    let paths = paths
        .into_iter()
        .map(|((from, to, transport), a)| PathRow { from, to, transport, traffic: finish(a) })
        .collect();
    TrafficResponse { at: now, services, paths }
}
