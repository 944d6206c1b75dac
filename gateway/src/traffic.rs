//! Traffic accounting of this gateway's egress connections: per (service, destination cluster,
//! transport), connections served and failed, those retried on another cluster, bytes each way
//! and open times. Cardinality is bounded: the first `max_services` services seen get their own
//! entries and every later one is counted under `other`, so counters stay monotonic (a service
//! never moves between entries) and a gateway routing 10,000 services keeps at most
//! `max_services + 1` of them. Pure: the forwarder records, the metrics and the reports read.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use skybridge_api::model::{ClusterId, ServiceKey};

pub use skybridge_api::traffic::{OPEN_BUCKETS_MS, quantile_ms};

/// The service name counted for services past the cap.
pub const OTHER: &str = "other";

/// What one entry counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections served by the cluster.
    pub ok: u64,
    /// Connections no cluster could take (destination `none`).
    pub failed: u64,
    /// Served connections whose first choice failed: they were retried elsewhere.
    pub retried: u64,
    /// Bytes from the client towards the service, and back.
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Time to an open stream (served connections): one count per bucket of
    /// [`OPEN_BUCKETS_MS`], plus one past the last.
    pub open_buckets: [u64; OPEN_BUCKETS_MS.len() + 1],
    pub open_ms_sum: u64,
}

/// One entry: a service (or `other`), the cluster that served (or `none`) and the transport.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub service: String,
    pub cluster: String,
    pub transport: &'static str,
}

/// How one client connection went.
#[derive(Debug, Clone, Copy)]
pub struct Connection<'a> {
    pub service: &'a ServiceKey,
    /// The cluster that served it; `None` when none could.
    pub served_by: Option<&'a ClusterId>,
    /// `quic`, `tcp`, or `local` (this cluster's own endpoints).
    pub transport: &'static str,
    /// Opens tried before it was served (or given up).
    pub attempts: u32,
    /// Time from accepting the client to an open stream (served connections).
    pub open: Duration,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

/// The accounting state.
#[derive(Debug, Clone)]
pub struct Traffic {
    max_services: usize,
    tracked: HashSet<ServiceKey>,
    entries: BTreeMap<Key, Counters>,
}

impl Traffic {
    /// Accounting with its own entries for at most `max_services` services.
    pub fn new(max_services: usize) -> Self {
        Traffic { max_services, tracked: HashSet::new(), entries: BTreeMap::new() }
    }

    /// Counts one finished connection; the entry it was counted under.
    pub fn record(&mut self, c: Connection<'_>) -> Key {
        let service = if self.tracked.contains(c.service) {
            c.service.to_string()
        } else if self.tracked.len() < self.max_services {
            self.tracked.insert(c.service.clone());
            c.service.to_string()
        } else {
            OTHER.to_owned()
        };
        let key = Key {
            service,
            cluster: c.served_by.map_or_else(|| "none".to_owned(), ToString::to_string),
            transport: if c.served_by.is_some() { c.transport } else { "none" },
        };
        let e = self.entries.entry(key.clone()).or_default();
        if c.served_by.is_none() {
            e.failed += 1;
            return key;
        }
        e.ok += 1;
        e.retried += u64::from(c.attempts > 1);
        e.bytes_up += c.bytes_up;
        e.bytes_down += c.bytes_down;
        let ms = u64::try_from(c.open.as_millis()).unwrap_or(u64::MAX);
        let bucket = OPEN_BUCKETS_MS.iter().position(|b| ms <= *b).unwrap_or(OPEN_BUCKETS_MS.len());
        e.open_buckets[bucket] += 1;
        e.open_ms_sum = e.open_ms_sum.saturating_add(ms);
        key
    }

    /// Every entry's counters since the gateway started.
    pub fn entries(&self) -> &BTreeMap<Key, Counters> {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(s: &str) -> ServiceKey {
        s.parse().unwrap()
    }

    #[test]
    fn connections_are_counted_per_service_cluster_and_transport() {
        let mut t = Traffic::new(10);
        let (web, gcp) = (svc("prod/web"), ClusterId::new("gcp-1").unwrap());
        let ok = |attempts, ms| Connection {
            service: &web,
            served_by: Some(&gcp),
            transport: "quic",
            attempts,
            open: Duration::from_millis(ms),
            bytes_up: 10,
            bytes_down: 100,
        };
        t.record(ok(1, 3));
        t.record(ok(2, 40));
        t.record(Connection { served_by: None, ..ok(3, 0) });
        let k = Key { service: "prod/web".into(), cluster: "gcp-1".into(), transport: "quic" };
        let c = t.entries()[&k];
        assert_eq!((c.ok, c.retried, c.bytes_up, c.bytes_down, c.open_ms_sum), (2, 1, 20, 200, 43));
        assert_eq!(c.open_buckets[2], 1, "3 ms is in the <= 5 ms bucket");
        assert_eq!(c.open_buckets[5], 1, "40 ms is in the <= 50 ms bucket");
        let none = Key { service: "prod/web".into(), cluster: "none".into(), transport: "none" };
        assert_eq!(t.entries()[&none].failed, 1);
        assert_eq!(quantile_ms(&c.open_buckets, 0.5), Some(5));
        assert_eq!(quantile_ms(&c.open_buckets, 0.99), Some(50));
        assert_eq!(quantile_ms(&[0; 11], 0.99), None);
    }

    #[test]
    fn services_past_the_cap_share_one_entry() {
        let mut t = Traffic::new(50);
        let gcp = ClusterId::new("gcp-1").unwrap();
        for i in 0..10_000 {
            let s = svc(&format!("prod/s{i}"));
            let c = Connection {
                service: &s,
                served_by: Some(&gcp),
                transport: "quic",
                attempts: 1,
                open: Duration::ZERO,
                bytes_up: 1,
                bytes_down: 1,
            };
            t.record(c);
            t.record(c);
        }
        assert_eq!(t.entries().len(), 51, "50 services and other");
        let other = Key { service: OTHER.into(), cluster: "gcp-1".into(), transport: "quic" };
        assert_eq!(t.entries()[&other].ok, 2 * (10_000 - 50));
        // A tracked service keeps its entry: counters never move between entries.
        let s0 = svc("prod/s0");
        t.record(Connection {
            service: &s0,
            served_by: Some(&gcp),
            transport: "quic",
            attempts: 1,
            open: Duration::ZERO,
            bytes_up: 0,
            bytes_down: 0,
        });
        assert_eq!(t.entries()[&Key { service: "prod/s0".into(), cluster: "gcp-1".into(), transport: "quic" }].ok, 3);
    }
}
