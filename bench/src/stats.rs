//! Pure helpers: duration parsing, percentiles, and the report's text and JSON forms.

use std::fmt::Write as _;
use std::time::Duration;

/// Parses `10s`, `500ms`, `250us` (or `250µs`), `100ns`, `2m`, `1.5s`. A bare number is seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("invalid duration {text:?}: expected a number and a unit, e.g. 10s or 500ms"));
    }
    let value: f64 = num.parse().map_err(|_| format!("invalid duration {text:?}: bad number {num:?}"))?;
    let unit_ns = match unit.trim() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "" | "s" => 1e9,
        "m" | "min" => 60e9,
        other => return Err(format!("invalid duration {text:?}: unknown unit {other:?} (use ns, us, ms, s, m)")),
    };
    // Integer nanoseconds, so that e.g. 250us is exactly 250_000 ns.
    let nanos = (value * unit_ns).round();
    if !nanos.is_finite() || nanos > 1e18 {
        return Err(format!("invalid duration {text:?}: out of range"));
    }
    Ok(Duration::from_nanos(nanos as u64))
}

/// Nearest-rank percentile of an ascending slice (`p` in 0..=100); 0 for an empty slice.
///
/// The result is always an observed sample: the smallest value such that at least `p`% of the
/// samples are less than or equal to it.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let n = sorted.len();
    // The epsilon keeps exact ranks exact despite rounding (e.g. 99.9% of 1000 is rank 999, not 1000).
    let rank = (p.clamp(0.0, 100.0) / 100.0 * n as f64 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// Latency summary in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Summary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Summary {
    /// Sorts `samples_ns` in place and summarises them in microseconds.
    pub(crate) fn from_nanos(samples_ns: &mut [u64]) -> Summary {
        samples_ns.sort_unstable();
        let us = |p: f64| percentile(samples_ns, p) as f64 / 1000.0;
        Summary { p50: us(50.0), p90: us(90.0), p99: us(99.0), p999: us(99.9), max: us(100.0) }
    }
}

/// What `rrlat run` reports.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub target: String,
    pub rate: f64,
    pub connections: usize,
    pub size: usize,
    /// Length of the measurement window (warm-up excluded), seconds.
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Requests scheduled inside the measurement window.
    pub requests: u64,
    /// Of those, completed with a correct echo.
    pub ok: u64,
    /// `requests - ok`: failed, wrong echo, timed out, or never sent before the deadline.
    pub errors: u64,
    /// `ok / duration_s`.
    pub achieved_rate: f64,
    pub latency: Summary,
    /// p99 of how late the client itself sent (scheduled → actual send, when the connection was idle).
    pub send_lag_p99_us: f64,
}

impl Report {
    /// One JSON object on one line (hand-formatted).
    pub(crate) fn to_json(&self) -> String {
        let mut s = String::with_capacity(320);
        let _ = write!(
            s,
            "{{\"target\":\"{}\",\"rate\":{},\"connections\":{},\"size\":{},\"duration_s\":{},\"warmup_s\":{},\
             \"requests\":{},\"ok\":{},\"errors\":{},\"achieved_rate\":{},\
             \"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"send_lag_p99_us\":{}}}",
            json_escape(&self.target),
            num(self.rate),
            self.connections,
            self.size,
            num(self.duration_s),
            num(self.warmup_s),
            self.requests,
            self.ok,
            self.errors,
            num(self.achieved_rate),
            num(self.latency.p50),
            num(self.latency.p90),
            num(self.latency.p99),
            num(self.latency.p999),
            num(self.latency.max),
            num(self.send_lag_p99_us),
        );
        s
    }

    /// A few human-readable lines.
    pub(crate) fn to_text(&self) -> String {
        let l = &self.latency;
        format!(
            "target {}  rate {}/s  connections {}  size {} B  duration {}s (+{}s warm-up)\n\
             requests {}  ok {}  errors {}  achieved {:.1} req/s\n\
             latency (µs, from scheduled send): p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}\n\
             client send lag p99: {:.1} µs\n",
            self.target,
            num(self.rate),
            self.connections,
            self.size,
            num(self.duration_s),
            num(self.warmup_s),
            self.requests,
            self.ok,
            self.errors,
            self.achieved_rate,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            self.send_lag_p99_us,
        )
    }
}

/// A JSON number: at most three decimals, no trailing zeros, `0` for non-finite values.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return "0".into();
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" { "0".into() } else { s.to_owned() }
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("250µs"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("100ns"), Ok(Duration::from_nanos(100)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration(" 0s "), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations() {
        for bad in ["", "s", "ms", "10x", "1..5s", "-1s", "10 sec", "1e99s", "99999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn percentile_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.0), 1);
        assert_eq!(percentile(&v, 1.0), 1);
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 90.0), 90);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 99.9), 100);
        assert_eq!(percentile(&v, 100.0), 100);
    }

    #[test]
    fn percentile_small_and_empty() {
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[7], 0.0), 7);
        assert_eq!(percentile(&[7], 99.9), 7);
        let v = [10, 20, 30, 40];
        assert_eq!(percentile(&v, 50.0), 20);
        assert_eq!(percentile(&v, 50.1), 30);
        assert_eq!(percentile(&v, 75.0), 30);
        assert_eq!(percentile(&v, 99.0), 40);
    }

    #[test]
    fn percentile_large_tail() {
        // 1000 samples: p99.9 is the 999th value, max the 1000th.
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 99.9), 999);
        assert_eq!(percentile(&v, 99.0), 990);
        assert_eq!(percentile(&v, 100.0), 1000);
    }

    #[test]
    fn summary_sorts_and_converts_to_micros() {
        let mut v = vec![5_000, 1_000, 3_000, 2_000, 4_000];
        let s = Summary::from_nanos(&mut v);
        assert_eq!(v, vec![1_000, 2_000, 3_000, 4_000, 5_000]);
        assert_eq!(s.p50, 3.0);
        assert_eq!(s.p90, 5.0);
        assert_eq!(s.max, 5.0);
    }

    #[test]
    fn json_line() {
        let r = Report {
            target: "127.0.0.1:7000".into(),
            rate: 2000.0,
            connections: 8,
            size: 64,
            duration_s: 10.0,
            warmup_s: 1.0,
            requests: 20000,
            ok: 19999,
            errors: 1,
            achieved_rate: 1999.9,
            latency: Summary { p50: 41.25, p90: 50.0, p99: 90.1234, p999: 150.0, max: 400.5 },
            send_lag_p99_us: 12.0,
        };
        assert_eq!(
            r.to_json(),
            "{\"target\":\"127.0.0.1:7000\",\"rate\":2000,\"connections\":8,\"size\":64,\"duration_s\":10,\
             \"warmup_s\":1,\"requests\":20000,\"ok\":19999,\"errors\":1,\"achieved_rate\":1999.9,\
             \"p50_us\":41.25,\"p90_us\":50,\"p99_us\":90.123,\"p999_us\":150,\"max_us\":400.5,\
             \"send_lag_p99_us\":12}"
        );
        assert!(!r.to_json().contains('\n'));
    }

    #[test]
    fn json_helpers() {
        assert_eq!(num(0.0), "0");
        assert_eq!(num(f64::NAN), "0");
        assert_eq!(num(0.0004), "0");
        assert_eq!(num(12.5), "12.5");
        assert_eq!(json_escape("a\"b\\c\n"), "a\\\"b\\\\c\\u000a");
    }
}
