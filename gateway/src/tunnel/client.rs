//! The sending side: a pool of connections per peer (QUIC, or TLS over TCP for a peer whose
//! path drops UDP, see [`super::fallback`]), and stream opens that wait for the receiver's
//! status before any payload is relayed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use quinn::Endpoint;
use skybridge_api::header::{HeaderError, OpenRequest, OpenResponse, RESPONSE_PREFIX_LEN, Status};
use skybridge_api::model::{ClusterId, ServiceKey};
use skybridge_api::routing::{HealthConfig, PathHealth, State, Transition};
use tokio_rustls::TlsConnector;

use super::codes;
use super::fallback::{FallbackConfig, Switch, Transport, TransportChoice};
use super::stream::{Conn, TunnelRecv, TunnelSend};
use super::tcp::TcpConn;
use crate::config::{Limits, OpenTimeouts};
use crate::metrics::{HandshakeLabels, Metrics, PeerLabels, PeerResultLabels, PeerStateLabels, PeerTransportLabels};
use crate::routing::{Peer, PeerView};

/// Why a stream could not be opened on a peer.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot resolve peer address {address}: {reason}")]
    Resolve { address: String, reason: String },
    #[error("{} handshake with {cluster} at {addr} failed: {reason}", .transport.name())]
    Handshake { cluster: ClusterId, addr: SocketAddr, transport: Transport, reason: String },
    #[error("{} handshake with {cluster} at {addr} timed out after {after:?}", .transport.name())]
    HandshakeTimeout { cluster: ClusterId, addr: SocketAddr, transport: Transport, after: Duration },
    #[error("stream open to {cluster} failed: {reason}")]
    Stream { cluster: ClusterId, reason: String },
    #[error("no status from {cluster} within {after:?}")]
    Timeout { cluster: ClusterId, after: Duration },
    #[error("peer {cluster} answered {}: {reason}", status.as_str())]
    Refused { cluster: ClusterId, status: Status, reason: String },
    #[error("nothing arrived from {cluster} during the open ({reason}); its connection is dropped for a fresh dial")]
    NoAnswer { cluster: ClusterId, reason: String },
}

impl OpenError {
    /// Whether the failure says the peer gateway itself is unhealthy (as opposed to a refusal
    /// that concerns only this service).
    pub fn peer_unhealthy(&self) -> bool {
        !matches!(self, OpenError::Refused { .. })
    }

    /// Whether a fresh dial may succeed where this failed (the pooled connection was dead), so
    /// the peer deserves one more try within the connect budget.
    pub fn redial(&self) -> bool {
        matches!(self, OpenError::NoAnswer { .. })
    }

    /// A metric label.
    pub fn label(&self) -> &'static str {
        match self {
            OpenError::Resolve { .. } | OpenError::Handshake { .. } | OpenError::HandshakeTimeout { .. } => {
                "connect_failed"
            }
            OpenError::Stream { .. } => "stream_failed",
            OpenError::Timeout { .. } => "timeout",
            OpenError::NoAnswer { .. } => "no_answer",
            OpenError::Refused { status, .. } => status.as_str(),
        }
    }
}

/// An open, accepted stream.
pub struct OpenStream {
    pub send: TunnelSend,
    pub recv: TunnelRecv,
    pub latency: Duration,
}

#[derive(Default)]
struct Slots {
    conns: Vec<Option<Conn>>,
    next: usize,
    /// Serialises handshakes per slot so a burst of clients makes one connection, not many.
    dialing: Vec<Arc<tokio::sync::Mutex<()>>>,
}

/// What this gateway knows of the path to one peer.
#[derive(Debug, Clone, Default)]
pub struct PeerPath {
    pub health: PathHealth,
    /// Connections relayed to it right now.
    pub load: u32,
    /// QUIC's own smoothed RTT of a live connection, sampled each second.
    pub quic_rtt: Option<Duration>,
    /// The connection the last probe went over (its `stable_id`).
    probed_conn: Option<usize>,
    /// Which transport new streams use.
    pub transport: TransportChoice,
    /// While on TCP: the QUIC connection that background probes confirm before streams move
    /// back to it.
    quic_candidate: Option<quinn::Connection>,
}

/// How the pool falls back to TLS over TCP.
pub struct TcpFallback {
    /// Client TLS config for the TCP transport (same certificates and verifier as QUIC).
    pub tls: TlsConnector,
    /// HTTP/2 windows, stream cap and keepalive.
    pub limits: Limits,
    /// A QUIC dial that has heard nothing this long starts a TCP dial beside it.
    pub after: Duration,
    pub choice: FallbackConfig,
    /// Every peer over TCP, QUIC never tried (`tcp_fallback = "always"`).
    pub always: bool,
}

/// Pooled connections and per-peer health.
pub struct Pool {
    endpoint: Endpoint,
    /// `None`: QUIC only (`routing.tcp_fallback = false`).
    tcp: Option<TcpFallback>,
    local: ClusterId,
    per_peer: usize,
    handshake_timeout: Duration,
    health: HealthConfig,
    slots: Mutex<HashMap<ClusterId, Slots>>,
    paths: Mutex<HashMap<ClusterId, PeerPath>>,
    metrics: Metrics,
}

/// Counts one relayed connection against a peer's load until dropped.
pub struct LoadGuard<'a> {
    pool: &'a Pool,
    peer: ClusterId,
}

impl Drop for LoadGuard<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.pool.paths.lock().expect("peer paths lock").get_mut(&self.peer) {
            p.load = p.load.saturating_sub(1);
        }
    }
}

impl Pool {
    /// A pool dialling from `endpoint` (which carries the client config) as cluster `local`,
    /// falling back to TLS over TCP as `tcp` says.
    pub fn new(
        endpoint: Endpoint,
        tcp: Option<TcpFallback>,
        local: ClusterId,
        per_peer: usize,
        handshake_timeout: Duration,
        health: HealthConfig,
        metrics: Metrics,
    ) -> Self {
        Pool {
            endpoint,
            tcp,
            local,
            per_peer,
            handshake_timeout,
            health,
            slots: Mutex::new(HashMap::new()),
            paths: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// A copy of every peer's path state (for `/status` and reports).
    pub fn paths(&self) -> HashMap<ClusterId, PeerPath> {
        self.paths.lock().expect("peer paths lock").clone()
    }

    /// What route choice needs of every peer: cheap enough for each connection.
    pub fn views(&self) -> HashMap<ClusterId, PeerView> {
        let paths = self.paths.lock().expect("peer paths lock");
        paths
            .iter()
            .map(|(c, p)| {
                (c.clone(), PeerView { tier: p.health.state().tier(), rtt: p.health.rank_rtt(), load: p.load })
            })
            .collect()
    }

    /// The smoothed RTT to `c`, if measured.
    pub fn srtt(&self, c: &ClusterId) -> Option<Duration> {
        self.paths.lock().expect("peer paths lock").get(c).and_then(|p| p.health.srtt())
    }

    /// Counts a connection relayed to `c` until the guard drops.
    pub fn load_guard(&self, c: &ClusterId) -> LoadGuard<'_> {
        self.paths.lock().expect("peer paths lock").entry(c.clone()).or_default().load += 1;
        LoadGuard { pool: self, peer: c.clone() }
    }

    /// Applies one health event to `c`'s path, logging and counting a state change.
    fn event(&self, c: &ClusterId, f: impl FnOnce(&mut PathHealth, Instant, &HealthConfig) -> Option<Transition>) {
        let (transition, reason) = {
            let mut paths = self.paths.lock().expect("peer paths lock");
            let p = paths.entry(c.clone()).or_default();
            (f(&mut p.health, Instant::now(), &self.health), p.health.last_error.clone())
        };
        let Some(Transition { from, to }) = transition else { return };
        let peer = c.to_string();
        self.metrics.peer_state.get_or_create(&PeerStateLabels { peer: peer.clone(), state: from.as_str() }).set(0);
        self.metrics.peer_state.get_or_create(&PeerStateLabels { peer: peer.clone(), state: to.as_str() }).set(1);
        self.metrics.peer_transitions.get_or_create(&PeerStateLabels { peer, state: to.as_str() }).inc();
        match to {
            State::Down | State::Suspect => {
                tracing::warn!(%c, from = from.as_str(), to = to.as_str(), reason = reason.as_deref().unwrap_or(""), "peer health changed")
            }
            _ => tracing::info!(%c, from = from.as_str(), to = to.as_str(), "peer health changed"),
        }
    }

    /// Records a failure that concerns the peer as a whole (it goes down at once).
    pub fn mark_failed(&self, c: &ClusterId, reason: String) {
        self.event(c, |h, now, cfg| h.on_failure(reason, now, cfg));
    }

    /// Applies a transport change decided by `f` to `c`'s path, logging and counting it. When
    /// it goes back to QUIC, the confirmed QUIC connection takes the first slot and the TCP
    /// connections leave the pool (their streams finish where they are).
    fn transport_event(&self, c: &ClusterId, f: impl FnOnce(&mut TransportChoice, Instant) -> Option<Switch>) {
        let (switch, candidate, reason) = {
            let mut paths = self.paths.lock().expect("peer paths lock");
            let p = paths.entry(c.clone()).or_default();
            let switch = f(&mut p.transport, Instant::now());
            let candidate = match switch {
                Some(Switch { to: Transport::Quic, .. }) => p.quic_candidate.take(),
                _ => None,
            };
            (switch, candidate, p.transport.reason().map(str::to_owned))
        };
        let Some(Switch { from, to }) = switch else { return };
        if to == Transport::Quic {
            let mut slots = self.slots.lock().expect("slots lock");
            if let Some(s) = slots.get_mut(c) {
                for (i, slot) in s.conns.iter_mut().enumerate() {
                    *slot = if i == 0 { candidate.clone().map(Conn::Quic) } else { None };
                }
            }
        }
        let peer = c.to_string();
        self.metrics
            .peer_transport
            .get_or_create(&PeerTransportLabels { peer: peer.clone(), transport: from.as_str() })
            .set(0);
        self.metrics
            .peer_transport
            .get_or_create(&PeerTransportLabels { peer: peer.clone(), transport: to.as_str() })
            .set(1);
        self.metrics.transport_changes.get_or_create(&PeerTransportLabels { peer, transport: to.as_str() }).inc();
        match to {
            Transport::Tcp => tracing::warn!(
                %c,
                reason = reason.as_deref().unwrap_or(""),
                "QUIC to this peer goes unanswered while TCP works: new streams use TLS over TCP"
            ),
            Transport::Quic => tracing::info!(%c, "QUIC to this peer works again: new streams use QUIC"),
        }
    }

    /// Samples QUIC RTT of the live connections into path state and metrics.
    pub fn sample_rtts(&self) {
        let live: Vec<(ClusterId, Duration)> = {
            let slots = self.slots.lock().expect("slots lock");
            slots
                .iter()
                .filter_map(|(c, s)| {
                    let conn = s.conns.iter().flatten().find(|c| c.closed().is_none() && c.rtt().is_some())?;
                    Some((c.clone(), conn.rtt()?))
                })
                .collect()
        };
        let mut paths = self.paths.lock().expect("peer paths lock");
        for (c, rtt) in live {
            paths.entry(c.clone()).or_default().quic_rtt = Some(rtt);
            self.metrics.peer_rtt.get_or_create(&PeerLabels { peer: c.to_string() }).set(rtt.as_secs_f64());
        }
    }

    /// Number of live pooled connections to `c`.
    pub fn live_connections(&self, c: &ClusterId) -> usize {
        let slots = self.slots.lock().expect("slots lock");
        slots.get(c).map_or(0, |s| s.conns.iter().flatten().filter(|c| c.closed().is_none()).count())
    }

    /// Probes `peer` once: a probe stream on the pooled connection (dialled if needed), answered
    /// by the peer gateway itself. The result, or silence within `timeout`, feeds its health.
    /// While the peer is on TCP, a QUIC probe runs beside it when one is due.
    pub async fn probe(&self, peer: &Peer, timeout: Duration) {
        let due = self.tcp.as_ref().is_some_and(|t| !t.always)
            && self
                .paths
                .lock()
                .expect("peer paths lock")
                .get(&peer.cluster)
                .is_some_and(|p| p.transport.quic_probe_due(Instant::now()));
        match due {
            true => tokio::join!(self.health_probe(peer, timeout), self.quic_probe(peer, timeout)).0,
            false => self.health_probe(peer, timeout).await,
        }
    }

    async fn health_probe(&self, peer: &Peer, timeout: Duration) {
        let result = tokio::time::timeout(timeout, self.probe_once(peer)).await;
        let labels = |result| PeerResultLabels { peer: peer.cluster.to_string(), result };
        let c = &peer.cluster;
        let missed = match result {
            Ok(Ok((rtt, conn))) => {
                self.metrics.peer_probes.get_or_create(&labels("ok")).inc();
                // The first stream on a new connection is slow to answer (measured 5x the RTT
                // on loopback relays) and would seed the average high for many seconds; QUIC's
                // handshake estimate bounds it.
                let fresh = {
                    let mut paths = self.paths.lock().expect("peer paths lock");
                    let p = paths.entry(c.clone()).or_default();
                    p.probed_conn.replace(conn.stable_id()) != Some(conn.stable_id())
                };
                let sample = match (fresh, conn.rtt()) {
                    (true, Some(quic)) => rtt.min(quic),
                    _ => rtt,
                };
                self.event(c, |h, now, cfg| h.on_probe_ok(sample, now, cfg));
                if let Some(srtt) = self.srtt(c) {
                    self.metrics
                        .peer_probe_rtt
                        .get_or_create(&PeerLabels { peer: c.to_string() })
                        .set(srtt.as_secs_f64());
                }
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("probe not answered within {timeout:?}"),
        };
        self.metrics.peer_probes.get_or_create(&labels("missed")).inc();
        self.event(c, |h, now, cfg| h.on_probe_missed(missed, now, cfg));
        if self.paths.lock().expect("peer paths lock").get(c).is_some_and(|p| p.health.state() == State::Down) {
            self.reset_connections(c);
        }
    }

    /// While on TCP: a QUIC handshake (or the candidate connection already made) and a probe
    /// stream on it, bounded by `timeout` or `tcp_fallback_after`, whichever is longer.
    async fn quic_probe(&self, peer: &Peer, timeout: Duration) {
        let Some(tcp) = &self.tcp else { return };
        let c = &peer.cluster;
        let bound = timeout.max(tcp.after);
        let attempt = async {
            let existing = self.paths.lock().expect("peer paths lock").get(c).and_then(|p| p.quic_candidate.clone());
            let conn = match existing.filter(|q| q.close_reason().is_none()) {
                Some(q) => q,
                None => {
                    let addr = self.resolve(peer).await?;
                    let connecting = self.quic_connecting(peer, addr)?;
                    let q = connecting.await.map_err(|e| OpenError::Handshake {
                        cluster: c.clone(),
                        addr,
                        transport: Transport::Quic,
                        reason: e.to_string(),
                    })?;
                    self.paths.lock().expect("peer paths lock").entry(c.clone()).or_default().quic_candidate =
                        Some(q.clone());
                    q
                }
            };
            self.probe_on(peer, &Conn::Quic(conn)).await
        };
        let ok = matches!(tokio::time::timeout(bound, attempt).await, Ok(Ok(_)));
        let labels = PeerResultLabels { peer: c.to_string(), result: if ok { "quic_ok" } else { "quic_missed" } };
        self.metrics.peer_probes.get_or_create(&labels).inc();
        if !ok
            && let Some(q) =
                self.paths.lock().expect("peer paths lock").get_mut(c).and_then(|p| p.quic_candidate.take())
        {
            q.close(codes::CANCELLED, b"probe failed");
        }
        let cfg = tcp.choice;
        self.transport_event(c, |t, now| t.on_quic_probe(ok, now, &cfg));
    }

    /// Closes the pooled connections to a peer that is down and still not answering. After a
    /// long loss QUIC backs its retransmissions off for seconds and congestion control starts
    /// over, so the next probe dials afresh instead of waiting behind that.
    fn reset_connections(&self, c: &ClusterId) {
        let closed: Vec<Conn> = {
            let mut slots = self.slots.lock().expect("slots lock");
            slots.get_mut(c).map(|s| s.conns.iter_mut().filter_map(Option::take).collect()).unwrap_or_default()
        };
        for conn in &closed {
            conn.close(codes::CANCELLED, b"peer unreachable");
        }
        if !closed.is_empty() {
            tracing::info!(peer = %c, connections = closed.len(), "closed the connections to an unreachable peer");
        }
    }

    async fn probe_once(&self, peer: &Peer) -> Result<(Duration, Conn), OpenError> {
        let conn = self.connection(peer).await?;
        let rtt = self.probe_on(peer, &conn).await?;
        Ok((rtt, conn))
    }

    /// One probe stream on `conn`, timed from the stream open (a handshake the probe had to make
    /// is not path latency).
    async fn probe_on(&self, peer: &Peer, conn: &Conn) -> Result<Duration, OpenError> {
        self.ask_on(peer, conn, OpenRequest::probe(self.local.clone())).await
    }

    /// Asks `peer` to prove `service:port` reachable: its gateway connects to one endpoint and
    /// answers (see [`OpenRequest::proof`]). Health is not touched: a service's failure is not
    /// the path's.
    pub async fn prove(&self, peer: &Peer, service: &ServiceKey, port: u16) -> Result<Duration, OpenError> {
        let conn = self.connection(peer).await?;
        self.ask_on(peer, &conn, OpenRequest::proof(self.local.clone(), service.clone(), port)).await
    }

    /// Sends `req` (a probe or a proof: header only) on a new stream of `conn` and reads the
    /// answer; the time from the stream open to the answer.
    async fn ask_on(&self, peer: &Peer, conn: &Conn, req: OpenRequest) -> Result<Duration, OpenError> {
        let cluster = || peer.cluster.clone();
        let stream_err = |e: super::stream::StreamError| OpenError::Stream { cluster: cluster(), reason: e.reason };
        let start = Instant::now();
        let (mut send, mut recv) = conn.open_bi().await.map_err(stream_err)?;
        let mut head = BytesMut::with_capacity(128);
        req.encode(&mut head);
        send.write_chunk(head.freeze()).await.map_err(stream_err)?;
        send.finish();
        let (status, reason) =
            read_status(&mut recv).await.map_err(|reason| OpenError::Stream { cluster: cluster(), reason })?;
        let rtt = start.elapsed();
        recv.stop(codes::CANCELLED);
        match status {
            Status::Ok => Ok(rtt),
            status => Err(OpenError::Refused { cluster: cluster(), status, reason }),
        }
    }

    async fn connection(&self, peer: &Peer) -> Result<Conn, OpenError> {
        let want = self.transport_of(&peer.cluster);
        let (idx, lock, lost) = {
            let mut all = self.slots.lock().expect("slots lock");
            let s = all.entry(peer.cluster.clone()).or_default();
            if s.conns.is_empty() {
                s.conns = vec![None; self.per_peer];
                s.dialing = (0..self.per_peer).map(|_| Arc::new(tokio::sync::Mutex::new(()))).collect();
            }
            let idx = s.next % self.per_peer;
            s.next = s.next.wrapping_add(1);
            let lost = match &s.conns[idx] {
                Some(c) => match c.closed() {
                    None if c.transport() == want => return Ok(c.clone()),
                    // The other transport: new streams move, the old connection's finish there.
                    None => None,
                    Some(reason) if reason.is_empty() => None,
                    Some(reason) => Some(reason),
                },
                None => None,
            };
            if lost.is_some() {
                s.conns[idx] = None;
            }
            (idx, s.dialing[idx].clone(), lost)
        };
        // Closed under us (idle timeout, reset, the peer restarting): the path failed, and
        // route choice must hear about it whether or not the redial below works.
        if let Some(reason) = lost {
            self.mark_failed(&peer.cluster, format!("tunnel connection lost: {reason}"));
        }
        let _dialing = lock.lock().await;
        let existing = self.slots.lock().expect("slots lock").get(&peer.cluster).and_then(|s| s.conns[idx].clone());
        if let Some(c) = existing
            && c.closed().is_none()
            && c.transport() == want
        {
            return Ok(c);
        }
        let conn = match want {
            Transport::Quic => self.dial_quic(peer).await,
            Transport::Tcp => self.dial_tcp(peer).await,
        };
        let conn = conn?;
        if let Some(s) = self.slots.lock().expect("slots lock").get_mut(&peer.cluster) {
            s.conns[idx] = Some(conn.clone());
        }
        Ok(conn)
    }

    fn handshake_done(&self, transport: Transport, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.metrics.peer_handshakes.get_or_create(&HandshakeLabels { result, transport: transport.as_str() }).inc();
    }

    async fn resolve(&self, peer: &Peer) -> Result<SocketAddr, OpenError> {
        let resolve_err = |reason: String| OpenError::Resolve { address: peer.address.clone(), reason };
        tokio::net::lookup_host(peer.address.as_str())
            .await
            .map_err(|e| resolve_err(e.to_string()))?
            .next()
            .ok_or_else(|| resolve_err("no addresses".into()))
    }

    fn quic_connecting(&self, peer: &Peer, addr: SocketAddr) -> Result<quinn::Connecting, OpenError> {
        // The cluster id is the server name: the verifier checks the certificate names it.
        self.endpoint.connect(addr, peer.cluster.as_str()).map_err(|e| OpenError::Handshake {
            cluster: peer.cluster.clone(),
            addr,
            transport: Transport::Quic,
            reason: e.to_string(),
        })
    }

    /// Dials QUIC. When fallback is on and the peer has said nothing after
    /// `tcp_fallback_after`, a TLS-over-TCP dial to the same address runs beside it, and if TCP
    /// completes first (or QUIC times out while TCP works) the peer moves to TCP. A QUIC
    /// handshake the peer *answered* and then failed (a rejected certificate, a refusal) is an
    /// error, never a reason to fall back.
    async fn dial_quic(&self, peer: &Peer) -> Result<Conn, OpenError> {
        let addr = self.resolve(peer).await?;
        let cluster = || peer.cluster.clone();
        let failed = |e: quinn::ConnectionError| OpenError::Handshake {
            cluster: cluster(),
            addr,
            transport: Transport::Quic,
            reason: e.to_string(),
        };
        let timed_out = || OpenError::HandshakeTimeout {
            cluster: cluster(),
            addr,
            transport: Transport::Quic,
            after: self.handshake_timeout,
        };
        let deadline = crate::config::deadline(Instant::now(), self.handshake_timeout);
        let mut connecting = self.quic_connecting(peer, addr)?;
        let result = match &self.tcp {
            None => match tokio::time::timeout_at(deadline.into(), &mut connecting).await {
                Ok(r) => r.map_err(failed),
                Err(_) => Err(timed_out()),
            },
            Some(tcp) => {
                // Anything from the peer (its handshake data) means UDP gets through.
                let wait = tcp.after.min(self.handshake_timeout);
                // The handshake data itself is not needed (nor Send): only that it came.
                let heard = tokio::time::timeout(wait, connecting.handshake_data()).await.map(|r| r.map(drop));
                match heard {
                    Ok(Err(e)) => Err(failed(e)),
                    Ok(Ok(_)) => match tokio::time::timeout_at(deadline.into(), &mut connecting).await {
                        Ok(r) => r.map_err(failed),
                        Err(_) => {
                            // Answered, then stalled: fall back only if TCP works.
                            let reason = format!("QUIC handshake timed out after {:?}", self.handshake_timeout);
                            let tcp = self.tcp_conn(peer, addr).await;
                            return self.fall_back(peer, addr, reason, timed_out(), tcp);
                        }
                    },
                    Err(_) => {
                        let tcp_dial = self.tcp_conn(peer, addr);
                        tokio::pin!(tcp_dial);
                        tokio::select! {
                            r = tokio::time::timeout_at(deadline.into(), &mut connecting) => match r {
                                Ok(Ok(c)) => Ok(c),
                                // A late QUIC failure or timeout: TCP decides.
                                Ok(Err(e)) => {
                                    let reason = format!("QUIC failed after {:?} without an answer: {e}", tcp.after);
                                    return self.fall_back(peer, addr, reason, failed(e), tcp_dial.await);
                                }
                                Err(_) => {
                                    let reason = format!("QUIC unanswered for {:?}", self.handshake_timeout);
                                    return self.fall_back(peer, addr, reason, timed_out(), tcp_dial.await);
                                }
                            },
                            t = &mut tcp_dial => {
                                let reason = format!("QUIC unanswered for {:?} while TLS over TCP completed", tcp.after);
                                let Ok(conn) = t else {
                                    // TCP failed too: the path is down, not UDP-blocked; QUIC keeps its chance.
                                    return match tokio::time::timeout_at(deadline.into(), &mut connecting).await {
                                        Ok(Ok(c)) => self.dialled(peer, addr, Ok(Conn::Quic(c))),
                                        Ok(Err(e)) => self.dialled(peer, addr, Err(failed(e))),
                                        Err(_) => self.dialled(peer, addr, Err(timed_out())),
                                    };
                                };
                                return self.switched(peer, addr, reason, conn);
                            }
                        }
                    }
                }
            }
        };
        self.dialled(peer, addr, result.map(Conn::Quic))
    }

    fn dialled(&self, peer: &Peer, addr: SocketAddr, r: Result<Conn, OpenError>) -> Result<Conn, OpenError> {
        self.handshake_done(Transport::Quic, r.is_ok());
        if r.is_ok() {
            tracing::info!(peer = %peer.cluster, %addr, transport = "quic", "tunnel connection established");
        }
        r
    }

    /// QUIC stalled or went unanswered: the TCP dial to the same address decides whether this
    /// is UDP blocking (then the peer moves to TCP) or a dead path (the QUIC error stands).
    fn fall_back(
        &self,
        peer: &Peer,
        addr: SocketAddr,
        reason: String,
        quic: OpenError,
        tcp: Result<TcpConn, OpenError>,
    ) -> Result<Conn, OpenError> {
        self.handshake_done(Transport::Quic, false);
        match tcp {
            Ok(conn) => self.switched(peer, addr, reason, conn),
            Err(_) => Err(quic),
        }
    }

    fn switched(&self, peer: &Peer, addr: SocketAddr, reason: String, conn: TcpConn) -> Result<Conn, OpenError> {
        if let Some(tcp) = &self.tcp {
            let cfg = tcp.choice;
            self.transport_event(&peer.cluster, |t, now| t.on_quic_unanswered(reason, now, &cfg));
        }
        tracing::info!(peer = %peer.cluster, %addr, transport = "tcp", "tunnel connection established");
        Ok(Conn::Tcp(conn))
    }

    /// A TLS-over-TCP connection to `addr`, counted.
    async fn tcp_conn(&self, peer: &Peer, addr: SocketAddr) -> Result<TcpConn, OpenError> {
        let Some(tcp) = &self.tcp else {
            return Err(OpenError::Handshake {
                cluster: peer.cluster.clone(),
                addr,
                transport: Transport::Tcp,
                reason: "TCP fallback is off".into(),
            });
        };
        let r = TcpConn::dial(addr, peer.cluster.as_str(), &tcp.tls, &tcp.limits, self.handshake_timeout).await;
        self.handshake_done(Transport::Tcp, r.is_ok());
        r.map_err(|reason| OpenError::Handshake {
            cluster: peer.cluster.clone(),
            addr,
            transport: Transport::Tcp,
            reason,
        })
    }

    async fn dial_tcp(&self, peer: &Peer) -> Result<Conn, OpenError> {
        let addr = self.resolve(peer).await?;
        let conn = self.tcp_conn(peer, addr).await?;
        tracing::info!(peer = %peer.cluster, %addr, transport = "tcp", "tunnel connection established");
        Ok(Conn::Tcp(conn))
    }

    /// Opens a stream to `peer`, sends the header followed by `held` (bytes already read from
    /// the client), and waits up to `timeouts.attempt` for the receiver's status (up to
    /// `timeouts.patience` when the peer was heard from meanwhile), all within `budget`. A
    /// handshake the open needs first is bounded by the budget (and `handshake_timeout`), not
    /// by the attempt: a cold connection is not a slow peer. On anything but `ok` the stream is
    /// reset and the caller still owns `held` to try elsewhere.
    pub async fn open(
        &self,
        peer: &Peer,
        req: &OpenRequest,
        held: &Bytes,
        timeouts: OpenTimeouts,
        budget: Duration,
    ) -> Result<OpenStream, OpenError> {
        let result = self.open_inner(peer, req, held, timeouts, budget).await.map_err(|(e, dead)| match dead {
            // A pooled QUIC connection on which nothing at all arrived during the attempt is
            // dead (the path went silent, perhaps UDP blocked), and so are its siblings on the
            // same path: the next open dials afresh, which falls back to TCP when UDP is what
            // stopped.
            Some(dead) if e.peer_unhealthy() => {
                dead.close(codes::CANCELLED, b"no answer");
                self.reset_connections(&peer.cluster);
                OpenError::NoAnswer { cluster: peer.cluster.clone(), reason: e.to_string() }
            }
            _ => e,
        });
        let (label, transport) = match &result {
            Ok(s) => ("ok", s.send.transport()),
            Err(e) => (e.label(), self.transport_of(&peer.cluster)),
        };
        self.metrics.open("egress", label, transport.as_str());
        match &result {
            Ok(s) => {
                self.metrics.open_latency.observe(s.latency.as_secs_f64());
                self.event(&peer.cluster, |h, now, cfg| h.on_open_ok(now, cfg));
            }
            Err(e) if e.peer_unhealthy() => self.mark_failed(&peer.cluster, e.to_string()),
            Err(_) => {}
        }
        result
    }

    /// The transport new streams to `c` use.
    pub fn transport_of(&self, c: &ClusterId) -> Transport {
        if self.tcp.as_ref().is_some_and(|t| t.always) {
            return Transport::Tcp;
        }
        self.paths.lock().expect("peer paths lock").get(c).map_or(Transport::Quic, |p| p.transport.current())
    }

    /// One open; on failure also the connection when it was a pooled QUIC connection that
    /// received nothing during the attempt.
    async fn open_inner(
        &self,
        peer: &Peer,
        req: &OpenRequest,
        held: &Bytes,
        timeouts: OpenTimeouts,
        budget: Duration,
    ) -> Result<OpenStream, (OpenError, Option<Conn>)> {
        let cluster = || peer.cluster.clone();
        let deadline = crate::config::deadline(Instant::now(), budget);
        let conn = tokio::time::timeout(budget, self.connection(peer))
            .await
            .map_err(|_| (OpenError::Timeout { cluster: cluster(), after: budget }, None))?
            .map_err(|e| (e, None))?;
        let rx = conn.rx_datagrams();
        let silent = |e: OpenError| {
            let dead = rx.is_some() && conn.rx_datagrams() == rx;
            (e, dead.then(|| conn.clone()))
        };
        self.open_on(&conn, peer, req, held, timeouts, deadline).await.map_err(silent)
    }

    async fn open_on(
        &self,
        conn: &Conn,
        peer: &Peer,
        req: &OpenRequest,
        held: &Bytes,
        timeouts: OpenTimeouts,
        deadline: Instant,
    ) -> Result<OpenStream, OpenError> {
        let cluster = || peer.cluster.clone();
        let start = Instant::now();
        let rx = conn.rx_datagrams();
        let timeout = timeouts.attempt.min(deadline.saturating_duration_since(start));
        let (mut send, mut recv) = match tokio::time::timeout(timeout, conn.open_bi()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(OpenError::Stream { cluster: cluster(), reason: e.reason }),
            Err(_) => return Err(OpenError::Timeout { cluster: cluster(), after: timeout }),
        };
        let mut head = BytesMut::with_capacity(128);
        req.encode(&mut head);
        let outcome = {
            let exchange = async {
                send.write_all_chunks(&mut [head.freeze(), held.clone()])
                    .await
                    .map_err(|e| OpenError::Stream { cluster: cluster(), reason: e.reason })?;
                read_status(&mut recv).await.map_err(|reason| OpenError::Stream { cluster: cluster(), reason })
            };
            let left = timeout.saturating_sub(start.elapsed());
            tokio::pin!(exchange);
            match tokio::time::timeout(left, &mut exchange).await {
                Ok(r) => r,
                Err(_) => {
                    // Late. A peer heard from meanwhile (ACKs of this very stream, say) is alive and
                    // busy: wait on when there is nowhere else to go. A silent QUIC connection is
                    // not waited for (the caller redials it).
                    let heard = rx.is_none() || conn.rx_datagrams() != rx;
                    let patience = timeouts.patience.min(deadline.saturating_duration_since(start));
                    let more = patience.saturating_sub(start.elapsed());
                    if heard && !more.is_zero() {
                        tokio::time::timeout(more, &mut exchange)
                            .await
                            .unwrap_or_else(|_| Err(OpenError::Timeout { cluster: cluster(), after: patience }))
                    } else {
                        Err(OpenError::Timeout { cluster: cluster(), after: timeout })
                    }
                }
            }
        };
        match outcome {
            Ok((Status::Ok, _)) => Ok(OpenStream { send, recv, latency: start.elapsed() }),
            Ok((status, reason)) => {
                send.reset(codes::CANCELLED);
                recv.stop(codes::CANCELLED);
                Err(OpenError::Refused { cluster: cluster(), status, reason })
            }
            Err(e) => {
                send.reset(codes::CANCELLED);
                recv.stop(codes::CANCELLED);
                Err(e)
            }
        }
    }
}

async fn read_status(recv: &mut TunnelRecv) -> Result<(Status, String), String> {
    let mut prefix = [0u8; RESPONSE_PREFIX_LEN];
    recv.read_exact(&mut prefix).await.map_err(|e| format!("reading status: {e}"))?;
    let (status, len) = OpenResponse::decode_prefix(prefix).map_err(|e: HeaderError| e.to_string())?;
    let mut reason = vec![0u8; len];
    recv.read_exact(&mut reason).await.map_err(|e| format!("reading status reason: {e}"))?;
    Ok((status, String::from_utf8_lossy(&reason).into_owned()))
}
