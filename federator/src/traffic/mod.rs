//! The federation's traffic, from the gateways' reports: each gateway sends its egress counters
//! (cumulative since it started) with every report; this keeps, per gateway, the latest counters
//! and one sample every [`SAMPLE_EVERY_MS`] for [`HORIZON_MS`], and answers per service and per
//! path (source cluster → serving cluster): totals, rates over 1 and 5 minutes, the success
//! ratio, the p99 open time and a 15-minute history at 10 s resolution. Pure: the control session
//! records, the API asks with the time.

pub mod view;

use std::collections::{BTreeMap, VecDeque};

use skybridge_api::model::ClusterId;

pub use view::{Figures, PathRow, Point, ServiceRow, TrafficResponse};

/// Samples kept per gateway are at least this far apart.
pub const SAMPLE_EVERY_MS: u64 = 10_000;
/// How far back samples are kept (the history's span).
pub const HORIZON_MS: u64 = 15 * 60_000;

/// One traffic entry of one gateway.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    /// `namespace/name`, or `other`.
    pub service: String,
    /// The serving cluster, or `none`.
    pub cluster: String,
    pub transport: String,
}

/// What an entry counts (cumulative).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub ok: u64,
    pub failed: u64,
    pub retried: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub open_buckets: Vec<u64>,
}

impl Counters {
    /// `self - before`, per field; a counter that went down (it should not) counts from zero.
    fn minus(&self, before: &Counters) -> Counters {
        let d = |a: u64, b: u64| a.checked_sub(b).unwrap_or(a);
        let buckets = self
            .open_buckets
            .iter()
            .enumerate()
            .map(|(i, n)| d(*n, before.open_buckets.get(i).copied().unwrap_or(0)))
            .collect();
        Counters {
            ok: d(self.ok, before.ok),
            failed: d(self.failed, before.failed),
            retried: d(self.retried, before.retried),
            bytes_up: d(self.bytes_up, before.bytes_up),
            bytes_down: d(self.bytes_down, before.bytes_down),
            open_buckets: buckets,
        }
    }

    fn add(&mut self, o: &Counters) {
        self.ok += o.ok;
        self.failed += o.failed;
        self.retried += o.retried;
        self.bytes_up += o.bytes_up;
        self.bytes_down += o.bytes_down;
        if self.open_buckets.len() < o.open_buckets.len() {
            self.open_buckets.resize(o.open_buckets.len(), 0);
        }
        for (a, b) in self.open_buckets.iter_mut().zip(&o.open_buckets) {
            *a += b;
        }
    }
}

/// A gateway's counters at one time.
#[derive(Debug, Clone, Default, PartialEq)]
struct Sample {
    at: u64,
    entries: BTreeMap<Entry, Counters>,
}

/// One gateway's history.
#[derive(Debug, Clone, Default)]
struct History {
    /// The gateway's start (its counters count from it).
    since: u64,
    samples: VecDeque<Sample>,
    latest: Sample,
}

impl History {
    /// What changed between two samples, per entry.
    fn delta(later: &Sample, earlier: &Sample) -> BTreeMap<Entry, Counters> {
        later
            .entries
            .iter()
            .map(|(k, c)| (k.clone(), earlier.entries.get(k).map_or_else(|| c.clone(), |e| c.minus(e))))
            .collect()
    }

    /// The latest sample against the newest kept one at or before `since_ms` (or the oldest).
    fn over(&self, since_ms: u64) -> Option<(BTreeMap<Entry, Counters>, u64)> {
        let base = self.samples.iter().rev().find(|s| s.at <= since_ms).or_else(|| self.samples.front())?;
        let span = self.latest.at.checked_sub(base.at).filter(|s| *s > 0)?;
        Some((Self::delta(&self.latest, base), span))
    }
}

/// Every gateway's traffic.
#[derive(Debug, Clone, Default)]
pub struct TrafficLog {
    gateways: BTreeMap<(ClusterId, String), History>,
}

impl TrafficLog {
    /// Records a gateway's report made at `at` (Unix ms) with counters since `since`.
    pub fn record(&mut self, gateway: (ClusterId, String), since: u64, at: u64, entries: BTreeMap<Entry, Counters>) {
        let h = self.gateways.entry(gateway).or_default();
        if h.since != since {
            // Restarted (or first heard of): its counters start over, so do its samples.
            *h = History { since, ..History::default() };
        }
        h.latest = Sample { at, entries };
        if h.samples.back().is_none_or(|s| at >= s.at + SAMPLE_EVERY_MS) {
            h.samples.push_back(h.latest.clone());
        }
        while h.samples.front().is_some_and(|s| s.at + HORIZON_MS < at) && h.samples.len() > 1 {
            h.samples.pop_front();
        }
    }

    /// Forgets a gateway (it expired).
    pub fn forget(&mut self, gateway: &(ClusterId, String)) {
        self.gateways.remove(gateway);
    }

    /// The view at `now` (Unix ms).
    pub fn view(&self, now: u64) -> TrafficResponse {
        view::build(self.gateways.iter().map(|((c, _), h)| (c, h)), now)
    }
}

#[cfg(test)]
mod tests;
