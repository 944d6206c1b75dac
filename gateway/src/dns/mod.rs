//! The gateway's DNS server, authoritative for `clusterset.local`: a client's resolver
//! (CoreDNS or kube-dns forwarding the zone here) learns that
//! `payments.prod.svc.clusterset.local` is the egress listeners' address, and only for services
//! this gateway can route, so a typo is NXDOMAIN rather than a gateway 502.
//!
//! `zone` holds the answers (pure); this module is the I/O shell: UDP and TCP loops, the rate
//! limit, the resolution of host names in `dns.answer`. It uses `hickory-proto` for the wire
//! format only: the zone changes with every catalog and is computed from it, so a server
//! framework's authority and zone-file machinery would only sit in between.

pub mod zone;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::{AnswerAddress, DnsSection};
use crate::context::Context;
use crate::routing::Catalog;
use zone::{Answering, Outcome, Servable, Transport, Zone};

/// One query's transport and outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabels {
    pub transport: &'static str,
    pub outcome: &'static str,
}

/// Why a query was not answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub reason: &'static str,
}

/// The DNS server's Prometheus series (`skybridge_gateway_dns_*`).
#[derive(Clone, Default)]
pub struct DnsMetrics {
    queries: Family<QueryLabels, Counter>,
    dropped: Family<DropLabels, Counter>,
}

impl DnsMetrics {
    /// Registers the series in the gateway's registry.
    pub fn register(registry: &mut Registry) -> DnsMetrics {
        let m = DnsMetrics::default();
        let r = registry.sub_registry_with_prefix("skybridge_gateway_dns");
        r.register("queries", "DNS queries answered, by transport and outcome", m.queries.clone());
        r.register(
            "dropped",
            "DNS queries or connections not answered, by reason (rate_limited, tcp_limit, tcp_timeout, not_a_query)",
            m.dropped.clone(),
        );
        m
    }

    fn drop(&self, reason: &'static str) {
        self.dropped.get_or_create(&DropLabels { reason }).inc();
    }
}

/// A token bucket: `rate` tokens a second, at most one second's worth saved. Pure: the caller
/// passes the time.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl Bucket {
    /// A full bucket of `rate` per second.
    pub fn new(rate: u32) -> Bucket {
        Bucket { rate: f64::from(rate), tokens: f64::from(rate), last: None }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let earned = now.saturating_duration_since(last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + earned).min(self.rate);
        }
        self.last = Some(now);
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The server's state, shared by its UDP loop, TCP connections and resolver.
pub struct DnsServer {
    ctx: Arc<Context>,
    servable: Servable,
    cfg: DnsSection,
    ttl: u32,
    addresses: RwLock<Arc<Vec<IpAddr>>>,
    /// The zone and the catalog it was built from: rebuilt when the catalog is swapped.
    zone: Mutex<(Option<Arc<Catalog>>, Arc<Zone>)>,
    limiter: Mutex<Bucket>,
    tcp_slots: Arc<Semaphore>,
    metrics: DnsMetrics,
}

impl DnsServer {
    /// A server for `ctx`'s catalog; `fallback` answers when `dns.answer` is empty (the egress
    /// listeners' own addresses).
    pub fn new(
        ctx: Arc<Context>,
        cfg: DnsSection,
        servable: Servable,
        fallback: Vec<IpAddr>,
        metrics: DnsMetrics,
    ) -> Arc<DnsServer> {
        let fixed: Vec<IpAddr> = if cfg.answer.is_empty() {
            fallback
        } else {
            cfg.answer.iter().filter_map(|a| if let AnswerAddress::Ip(ip) = a { Some(*ip) } else { None }).collect()
        };
        Arc::new(DnsServer {
            ctx,
            servable,
            ttl: u32::try_from(cfg.ttl.as_secs()).unwrap_or(u32::MAX),
            addresses: RwLock::new(Arc::new(fixed)),
            zone: Mutex::new((None, Arc::new(Zone::default()))),
            limiter: Mutex::new(Bucket::new(cfg.max_queries_per_second)),
            tcp_slots: Arc::new(Semaphore::new(cfg.max_tcp_connections)),
            cfg,
            metrics,
        })
    }

    /// The zone of the current catalog, built on the first query after a swap.
    fn zone(&self) -> Arc<Zone> {
        let catalog = self.ctx.catalog.load();
        let mut z = self.zone.lock().expect("dns zone lock");
        if !z.0.as_ref().is_some_and(|c| Arc::ptr_eq(c, &catalog)) {
            let built = Arc::new(Zone::build(&catalog, &self.servable));
            *z = (Some(catalog), built);
        }
        z.1.clone()
    }

    /// The answer to one request, counted.
    fn handle(&self, request: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let addresses = self.addresses.read().expect("dns addresses lock").clone();
        let a = Answering { addresses: &addresses, ttl: self.ttl, transport };
        let Some((bytes, outcome)) = zone::respond(request, &self.zone(), &a) else {
            self.metrics.drop("not_a_query");
            return None;
        };
        let transport = match transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        };
        self.metrics.queries.get_or_create(&QueryLabels { transport, outcome: outcome.label() }).inc();
        if outcome == Outcome::ServFail {
            tracing::debug!("no dns.answer address is known yet: SERVFAIL");
        }
        Some(bytes)
    }

    fn take_token(&self) -> bool {
        self.limiter.lock().expect("dns limiter lock").take(Instant::now())
    }

    /// Answers UDP queries until `stop`.
    pub async fn serve_udp(self: Arc<Self>, socket: UdpSocket, stop: CancellationToken) {
        // Larger requests are cut by the kernel and answered FORMERR; queries are tiny.
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, from) = tokio::select! {
                () = stop.cancelled() => return,
                r = socket.recv_from(&mut buf) => match r {
                    Ok(r) => r,
                    // An ICMP error from an earlier send (the client went away): not ours to end on.
                    Err(e) => { tracing::debug!(error = %e, "dns udp receive"); continue; }
                },
            };
            // Past the rate, a query is read and dropped: a resolver retries, and the socket
            // buffer does not fill with stale queries that would delay the next real one.
            if !self.take_token() {
                self.metrics.drop("rate_limited");
                continue;
            }
            if let Some(answer) = self.handle(&buf[..n], Transport::Udp)
                && let Err(e) = socket.send_to(&answer, from).await
            {
                tracing::debug!(error = %e, %from, "dns udp send");
            }
        }
    }

    /// Accepts DNS-over-TCP connections until `stop`; each lives on `tasks`.
    pub async fn serve_tcp(self: Arc<Self>, listener: TcpListener, stop: CancellationToken, tasks: TaskTracker) {
        loop {
            let (stream, from) = tokio::select! {
                () = stop.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(r) => r,
                    Err(e) => {
                        // Out of descriptors or similar: back off rather than spin.
                        tracing::warn!(error = %e, "dns tcp accept");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = self.tcp_slots.clone().try_acquire_owned() else {
                self.metrics.drop("tcp_limit");
                continue;
            };
            let (me, stop) = (self.clone(), stop.clone());
            tasks.spawn(
                async move {
                    let _slot = slot;
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = me.tcp_connection(stream) => {}
                    }
                }
                .instrument(tracing::debug_span!("dns_tcp", %from)),
            );
        }
    }

    /// Queries on one connection, each a 2-byte length and a message (RFC 7766), until the
    /// client closes, goes quiet for `dns.tcp_idle_timeout`, or the rate is spent.
    async fn tcp_connection(&self, mut stream: TcpStream) {
        let idle = self.cfg.tcp_idle_timeout;
        let mut buf = Vec::new();
        loop {
            let mut len = [0u8; 2];
            match tokio::time::timeout(idle, stream.read_exact(&mut len)).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    self.metrics.drop("tcp_timeout");
                    return;
                }
            }
            buf.resize(usize::from(u16::from_be_bytes(len)), 0);
            match tokio::time::timeout(idle, stream.read_exact(&mut buf)).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    self.metrics.drop("tcp_timeout");
                    return;
                }
            }
            if !self.take_token() {
                self.metrics.drop("rate_limited");
                return;
            }
            let Some(answer) = self.handle(&buf, Transport::Tcp) else { return };
            let mut out = Vec::with_capacity(answer.len() + 2);
            out.extend_from_slice(&u16::try_from(answer.len()).unwrap_or(u16::MAX).to_be_bytes());
            out.extend_from_slice(&answer);
            if tokio::time::timeout(idle, stream.write_all(&out)).await.map_or(true, |r| r.is_err()) {
                return;
            }
        }
    }

    /// Resolves the host names in `dns.answer` now and every `dns.resolve_interval` (every
    /// second while none has resolved); a failed lookup keeps the last good addresses.
    pub async fn resolve(self: Arc<Self>, stop: CancellationToken) {
        let hosts: Vec<String> = self
            .cfg
            .answer
            .iter()
            .filter_map(|a| if let AnswerAddress::Host(h) = a { Some(h.clone()) } else { None })
            .collect();
        if hosts.is_empty() {
            return;
        }
        loop {
            let mut found: Vec<IpAddr> = self
                .cfg
                .answer
                .iter()
                .filter_map(|a| if let AnswerAddress::Ip(ip) = a { Some(*ip) } else { None })
                .collect();
            let mut failed = false;
            for h in &hosts {
                match tokio::net::lookup_host((h.as_str(), 0)).await {
                    Ok(addrs) => found.extend(addrs.map(|a: SocketAddr| a.ip())),
                    Err(e) => {
                        failed = true;
                        tracing::warn!(host = %h, error = %e, "cannot resolve dns.answer; keeping the last addresses");
                    }
                }
            }
            found.sort_unstable();
            found.dedup();
            let next = {
                let mut current = self.addresses.write().expect("dns addresses lock");
                // A partial failure must not shrink the answer to what happened to resolve.
                if !found.is_empty() && (!failed || current.is_empty()) && **current != found {
                    tracing::info!(addresses = ?found, "dns answer addresses");
                    *current = Arc::new(found);
                }
                if current.is_empty() { Duration::from_secs(1) } else { self.cfg.resolve_interval }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(next) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_gives_its_rate_and_a_second_of_burst() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10);
        assert_eq!((0..25).filter(|_| b.take(t0)).count(), 10, "a full bucket is one second's worth");
        let later = t0 + Duration::from_millis(500);
        assert_eq!((0..25).filter(|_| b.take(later)).count(), 5);
        // Idle for an hour: still at most one second's worth.
        let much_later = t0 + Duration::from_secs(3600);
        assert_eq!((0..25).filter(|_| b.take(much_later)).count(), 10);
        // Time going backwards (another thread's earlier reading) earns nothing.
        assert!(!b.take(t0));
    }
}
