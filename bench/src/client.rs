//! `rrlat run`: fixed-rate request/response over N plain TCP connections.
//!
//! Requests follow one global open-loop schedule: request `j` is due at `start + j / rate` and is
//! sent on connection `j % connections`, so each connection carries `rate / connections` per
//! second and the connections are evenly staggered. Latency is measured from the *scheduled*
//! time, not the actual send: when a slow response delays the next send on its connection, that
//! delay is counted (no coordinated omission).
//!
//! Each connection runs on its own OS thread with blocking sockets: a thread sleeps until just
//! before the due time and then yields in a loop (`spin`), which keeps the client's own timer
//! error in the low microseconds instead of the ~1 ms of an async timer wheel.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::stats::{Report, Summary, percentile};

/// Options of `rrlat run`.
#[derive(Debug, Clone)]
pub(crate) struct RunOptions {
    pub target: String,
    /// Requests per second over all connections.
    pub rate: f64,
    /// Measurement window.
    pub duration: Duration,
    /// Time before the window whose requests are sent but not recorded.
    pub warmup: Duration,
    pub connections: usize,
    /// Request (and response) size in bytes.
    pub size: usize,
    /// Per-request (and connect) timeout; a request that takes longer is an error.
    pub timeout: Duration,
    /// Busy-wait (yield) this long before each due time instead of sleeping.
    pub spin: Duration,
}

/// What one connection's thread saw.
#[derive(Default)]
struct ConnResult {
    /// Latencies (ns) of good responses to requests scheduled in the window.
    latencies: Vec<u64>,
    /// Client send lag (ns) for requests whose connection was idle at the due time.
    send_lags: Vec<u64>,
    /// Requests scheduled in the window.
    scheduled: u64,
}

/// Runs the measurement and summarises it.
pub(crate) fn run(opts: &RunOptions) -> anyhow::Result<Report> {
    validate(opts)?;
    let addr = resolve(&opts.target)?;

    // Connect everything before the clock starts, so that set-up cost is not in the numbers.
    let mut streams = Vec::with_capacity(opts.connections);
    for i in 0..opts.connections {
        let s = connect(addr, opts.timeout)
            .with_context(|| format!("connection {} of {} to {addr}", i + 1, opts.connections))?;
        streams.push(s);
    }

    let period_ns = 1e9 / opts.rate;
    let start = Instant::now() + Duration::from_millis(20);
    let results: Vec<ConnResult> = thread::scope(|scope| {
        let handles: Vec<_> = streams
            .into_iter()
            .enumerate()
            .map(|(i, s)| scope.spawn(move || connection(i, s, addr, opts, start, period_ns)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });

    let mut latencies = Vec::new();
    let mut lags = Vec::new();
    let mut requests = 0;
    for r in results {
        latencies.extend(r.latencies);
        lags.extend(r.send_lags);
        requests += r.scheduled;
    }
    let ok = latencies.len() as u64;
    let latency = Summary::from_nanos(&mut latencies);
    lags.sort_unstable();
    let duration_s = opts.duration.as_secs_f64();
    Ok(Report {
        target: opts.target.clone(),
        rate: opts.rate,
        connections: opts.connections,
        size: opts.size,
        duration_s,
        warmup_s: opts.warmup.as_secs_f64(),
        requests,
        ok,
        errors: requests.saturating_sub(ok),
        achieved_rate: ok as f64 / duration_s,
        latency,
        send_lag_p99_us: percentile(&lags, 99.0) as f64 / 1000.0,
    })
}

fn validate(opts: &RunOptions) -> anyhow::Result<()> {
    if !(opts.rate.is_finite() && opts.rate > 0.0) {
        bail!("--rate must be a positive number of requests per second");
    }
    if opts.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if opts.size == 0 {
        bail!("--size must be at least 1 byte");
    }
    if opts.duration.is_zero() {
        bail!("--duration must be positive");
    }
    if opts.timeout.is_zero() {
        bail!("--timeout must be positive");
    }
    Ok(())
}

fn resolve(target: &str) -> anyhow::Result<SocketAddr> {
    target
        .to_socket_addrs()
        .with_context(|| format!("resolving --target {target:?} (expected host:port)"))?
        .next()
        .with_context(|| format!("--target {target:?} resolved to no address"))
}

fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    Ok(s)
}

/// One connection's loop: requests `index`, `index + n`, `index + 2n`, … of the global schedule.
fn connection(
    index: usize,
    stream: TcpStream,
    addr: SocketAddr,
    opts: &RunOptions,
    start: Instant,
    period_ns: f64,
) -> ConnResult {
    let warmup_ns = opts.warmup.as_nanos() as f64;
    let end_ns = (opts.warmup + opts.duration).as_nanos() as f64;
    // Past this point nothing more is sent: the rest of the window counts as errors.
    let hard_stop = start + opts.warmup + opts.duration + opts.timeout;
    let per_conn = (opts.rate * (opts.warmup + opts.duration).as_secs_f64() / opts.connections as f64) as usize;
    let mut out = ConnResult {
        latencies: Vec::with_capacity(per_conn + 1),
        send_lags: Vec::with_capacity(per_conn + 1),
        scheduled: 0,
    };
    let mut stream = Some(stream);
    let mut req = vec![0u8; opts.size];
    let mut resp = vec![0u8; opts.size];

    for j in (index..).step_by(opts.connections) {
        let due_ns = j as f64 * period_ns;
        if due_ns >= end_ns {
            break;
        }
        let in_window = due_ns >= warmup_ns;
        out.scheduled += u64::from(in_window);
        let due = start + Duration::from_nanos(due_ns as u64);
        let now = Instant::now();
        if now >= hard_stop {
            continue;
        }
        let idle = now < due;
        if idle {
            wait_until(due, opts.spin);
            out.send_lags.push(nanos(Instant::now().saturating_duration_since(due)));
        }

        if stream.is_none() {
            match connect(addr, opts.timeout) {
                Ok(s) => stream = Some(s),
                Err(_) => continue,
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        fill(&mut req, j);
        let good = exchange(s, &req, &mut resp).is_ok() && resp == req;
        let done = Instant::now();
        if !good {
            // The byte stream may be out of step now: start over on a new connection.
            stream = None;
            continue;
        }
        if in_window {
            out.latencies.push(nanos(done.saturating_duration_since(due)));
        }
    }
    out
}

fn exchange(s: &mut TcpStream, req: &[u8], resp: &mut [u8]) -> std::io::Result<()> {
    s.write_all(req)?;
    s.read_exact(resp)
}

/// Sleeps until `spin` before `due`, then yields until `due`.
fn wait_until(due: Instant, spin: Duration) {
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        let left = due - now;
        if left > spin {
            thread::sleep(left - spin);
        } else {
            thread::yield_now();
        }
    }
}

/// A payload that differs per request, so a stale or misrouted echo is caught.
fn fill(buf: &mut [u8], seq: usize) {
    let tag = (seq as u64).to_le_bytes();
    for (i, b) in buf.iter_mut().enumerate() {
        *b = tag[i % 8] ^ (i as u8);
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_differs_per_request() {
        let (mut a, mut b) = (vec![0u8; 64], vec![0u8; 64]);
        fill(&mut a, 1);
        fill(&mut b, 2);
        assert_ne!(a, b);
        let mut one = [0u8; 1];
        fill(&mut one, 7);
        assert_eq!(one, [7]);
    }

    #[test]
    fn rejects_bad_options() {
        let good = RunOptions {
            target: "127.0.0.1:1".into(),
            rate: 100.0,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            connections: 1,
            size: 8,
            timeout: Duration::from_secs(1),
            spin: Duration::ZERO,
        };
        assert!(validate(&good).is_ok());
        assert!(validate(&RunOptions { rate: 0.0, ..good.clone() }).is_err());
        assert!(validate(&RunOptions { connections: 0, ..good.clone() }).is_err());
        assert!(validate(&RunOptions { size: 0, ..good.clone() }).is_err());
        assert!(validate(&RunOptions { duration: Duration::ZERO, ..good }).is_err());
    }
}
