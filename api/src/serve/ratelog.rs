//! At most one log line per interval for noise anyone on the network can cause (garbage
//! handshakes, accept errors at the fd limit): the first event of a quiet period is logged in
//! full, the rest are counted and reported as one summary line per interval. Pure: time comes in.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the caller should do with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Log this event; `suppressed` summarises what was counted since the previous line.
    Log { suppressed: Suppressed },
    /// Counted; say nothing now.
    Quiet,
}

/// Events counted but not logged, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Suppressed(pub BTreeMap<&'static str, u64>);

impl Suppressed {
    /// Whether nothing was suppressed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The total over every kind.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

impl std::fmt::Display for Suppressed {
    /// `kind=count` pairs, e.g. `handshake_failed=120 retry=4000`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (k, n) in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            write!(f, "{k}={n}")?;
            first = false;
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct State {
    last_line: Option<Instant>,
    counted: BTreeMap<&'static str, u64>,
}

/// A rate limit on log lines; share it (`Arc`) between the tasks that report the same noise.
#[derive(Debug)]
pub struct RateLimitedLog {
    interval: Duration,
    state: Mutex<State>,
}

impl RateLimitedLog {
    /// At most one line per `interval` (plus the summary that [`RateLimitedLog::flush`] returns).
    pub fn new(interval: Duration) -> Self {
        RateLimitedLog { interval, state: Mutex::default() }
    }

    /// The interval between lines.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn due(&self, s: &State, now: Instant) -> bool {
        s.last_line.is_none_or(|t| now.saturating_duration_since(t) >= self.interval)
    }

    /// One event of `kind` at `now`.
    pub fn record(&self, now: Instant, kind: &'static str) -> Verdict {
        let mut s = self.state.lock().expect("rate-limited log lock");
        if self.due(&s, now) {
            s.last_line = Some(now);
            Verdict::Log { suppressed: Suppressed(std::mem::take(&mut s.counted)) }
        } else {
            *s.counted.entry(kind).or_default() += 1;
            Verdict::Quiet
        }
    }

    /// What was counted since the last line, once an interval has passed since it; call this
    /// periodically so that the count of the last burst is reported even when no event follows.
    pub fn flush(&self, now: Instant) -> Option<Suppressed> {
        let mut s = self.state.lock().expect("rate-limited log lock");
        if s.counted.is_empty() || !self.due(&s, now) {
            return None;
        }
        s.last_line = Some(now);
        Some(Suppressed(std::mem::take(&mut s.counted)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_event_logs_then_counts_then_one_summary_per_interval() {
        let log = RateLimitedLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(log.record(t0, "a"), Verdict::Log { suppressed: Suppressed::default() });
        for i in 0..1000 {
            let kind = if i % 2 == 0 { "a" } else { "b" };
            assert_eq!(log.record(t0 + Duration::from_millis(i), kind), Verdict::Quiet);
        }
        assert_eq!(log.flush(t0 + Duration::from_secs(9)), None, "not before the interval");
        let s = log.flush(t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(s.total(), 1000);
        assert_eq!(s.to_string(), "a=500 b=500");
        // The summary counts as a line: the next event inside the interval is quiet.
        assert_eq!(log.record(t0 + Duration::from_secs(11), "a"), Verdict::Quiet);
        // A line after the interval carries what was counted in between.
        match log.record(t0 + Duration::from_secs(21), "a") {
            Verdict::Log { suppressed } => assert_eq!(suppressed.to_string(), "a=1"),
            v => panic!("{v:?}"),
        }
        assert_eq!(log.flush(t0 + Duration::from_secs(60)), None, "nothing counted");
    }
}
