//! The sending side: a pool of QUIC connections per peer, and stream opens that wait for the
//! receiver's status before any payload is relayed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use skybridge_api::header::{HeaderError, OpenRequest, OpenResponse, RESPONSE_PREFIX_LEN, Status};
use skybridge_api::model::ClusterId;
use skybridge_api::routing::{HealthConfig, PathHealth, State, Transition};

use super::codes;
use crate::metrics::{Metrics, PeerLabels, PeerResultLabels, PeerStateLabels, ResultLabels};
use crate::routing::{Peer, PeerView};

/// Why a stream could not be opened on a peer.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot resolve peer address {address}: {reason}")]
    Resolve { address: String, reason: String },
    #[error("QUIC handshake with {cluster} at {addr} failed: {reason}")]
    Handshake { cluster: ClusterId, addr: SocketAddr, reason: String },
    #[error("QUIC handshake with {cluster} at {addr} timed out after {after:?}")]
    HandshakeTimeout { cluster: ClusterId, addr: SocketAddr, after: Duration },
    #[error("stream open to {cluster} failed: {reason}")]
    Stream { cluster: ClusterId, reason: String },
    #[error("no status from {cluster} within {after:?}")]
    Timeout { cluster: ClusterId, after: Duration },
    #[error("peer {cluster} answered {}: {reason}", status.as_str())]
    Refused { cluster: ClusterId, status: Status, reason: String },
}

impl OpenError {
    /// Whether the failure says the peer gateway itself is unhealthy (as opposed to a refusal
    /// that concerns only this service).
    pub fn peer_unhealthy(&self) -> bool {
        !matches!(self, OpenError::Refused { .. })
    }

    /// A metric label.
    pub fn label(&self) -> &'static str {
        match self {
            OpenError::Resolve { .. } | OpenError::Handshake { .. } | OpenError::HandshakeTimeout { .. } => {
                "connect_failed"
            }
            OpenError::Stream { .. } => "stream_failed",
            OpenError::Timeout { .. } => "timeout",
            OpenError::Refused { status, .. } => status.as_str(),
        }
    }
}

/// An open, accepted stream.
pub struct OpenStream {
    pub send: SendStream,
    pub recv: RecvStream,
    pub latency: Duration,
}

#[derive(Default)]
struct Slots {
    conns: Vec<Option<Connection>>,
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
}

/// Pooled connections and per-peer health.
pub struct Pool {
    endpoint: Endpoint,
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
    /// A pool dialling from `endpoint` (which carries the client config) as cluster `local`.
    pub fn new(
        endpoint: Endpoint,
        local: ClusterId,
        per_peer: usize,
        handshake_timeout: Duration,
        health: HealthConfig,
        metrics: Metrics,
    ) -> Self {
        Pool {
            endpoint,
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

    /// Samples QUIC RTT of the live connections into path state and metrics.
    pub fn sample_rtts(&self) {
        let live: Vec<(ClusterId, Duration)> = {
            let slots = self.slots.lock().expect("slots lock");
            slots
                .iter()
                .filter_map(|(c, s)| {
                    let conn = s.conns.iter().flatten().find(|c| c.close_reason().is_none())?;
                    Some((c.clone(), conn.rtt()))
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
        slots.get(c).map_or(0, |s| s.conns.iter().flatten().filter(|c| c.close_reason().is_none()).count())
    }

    /// Probes `peer` once: a probe stream on the pooled connection (dialled if needed), answered
    /// by the peer gateway itself. The result, or silence within `timeout`, feeds its health.
    pub async fn probe(&self, peer: &Peer, timeout: Duration) {
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
                let sample = if fresh { rtt.min(conn.rtt()) } else { rtt };
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

    /// Closes the pooled connections to a peer that is down and still not answering. After a
    /// long loss QUIC backs its retransmissions off for seconds and congestion control starts
    /// over, so the next probe dials afresh instead of waiting behind that.
    fn reset_connections(&self, c: &ClusterId) {
        let closed: Vec<Connection> = {
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

    async fn probe_once(&self, peer: &Peer) -> Result<(Duration, Connection), OpenError> {
        let cluster = || peer.cluster.clone();
        let conn = self.connection(peer).await?;
        // Timed from the stream open: a handshake this probe had to make is not path latency.
        let start = Instant::now();
        let (mut send, mut recv) =
            conn.open_bi().await.map_err(|e| OpenError::Stream { cluster: cluster(), reason: e.to_string() })?;
        let mut head = BytesMut::with_capacity(64);
        OpenRequest::probe(self.local.clone()).encode(&mut head);
        send.write_all(&head).await.map_err(|e| OpenError::Stream { cluster: cluster(), reason: e.to_string() })?;
        let _ = send.finish();
        let (status, reason) =
            read_status(&mut recv).await.map_err(|reason| OpenError::Stream { cluster: cluster(), reason })?;
        let rtt = start.elapsed();
        let _ = recv.stop(codes::CANCELLED);
        match status {
            Status::Ok => Ok((rtt, conn)),
            status => Err(OpenError::Refused { cluster: cluster(), status, reason }),
        }
    }

    async fn connection(&self, peer: &Peer) -> Result<Connection, OpenError> {
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
                Some(c) => match c.close_reason() {
                    None => return Ok(c.clone()),
                    Some(quinn::ConnectionError::LocallyClosed) => None,
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
            && c.close_reason().is_none()
        {
            return Ok(c);
        }
        let conn = self.dial(peer).await;
        self.metrics
            .peer_handshakes
            .get_or_create(&ResultLabels { result: if conn.is_ok() { "ok" } else { "failed" } })
            .inc();
        let conn = conn?;
        if let Some(s) = self.slots.lock().expect("slots lock").get_mut(&peer.cluster) {
            s.conns[idx] = Some(conn.clone());
        }
        Ok(conn)
    }

    async fn dial(&self, peer: &Peer) -> Result<Connection, OpenError> {
        let resolve_err = |reason: String| OpenError::Resolve { address: peer.address.clone(), reason };
        let addr = tokio::net::lookup_host(peer.address.as_str())
            .await
            .map_err(|e| resolve_err(e.to_string()))?
            .next()
            .ok_or_else(|| resolve_err("no addresses".into()))?;
        // The cluster id is the server name: the verifier checks the certificate names it.
        let connecting = self.endpoint.connect(addr, peer.cluster.as_str()).map_err(|e| OpenError::Handshake {
            cluster: peer.cluster.clone(),
            addr,
            reason: e.to_string(),
        })?;
        match tokio::time::timeout(self.handshake_timeout, connecting).await {
            Ok(Ok(c)) => {
                tracing::info!(peer = %peer.cluster, %addr, "tunnel connection established");
                Ok(c)
            }
            Ok(Err(e)) => Err(OpenError::Handshake { cluster: peer.cluster.clone(), addr, reason: e.to_string() }),
            Err(_) => {
                Err(OpenError::HandshakeTimeout { cluster: peer.cluster.clone(), addr, after: self.handshake_timeout })
            }
        }
    }

    /// Opens a stream to `peer`, sends the header followed by `held` (bytes already read from
    /// the client), and waits up to `attempt` for the receiver's status, all within `budget`. A
    /// handshake the open needs first is bounded by the budget (and `handshake_timeout`), not
    /// by `attempt`: a cold connection is not a slow peer. On anything but `ok` the stream is
    /// reset and the caller still owns `held` to try elsewhere.
    pub async fn open(
        &self,
        peer: &Peer,
        req: &OpenRequest,
        held: &Bytes,
        attempt: Duration,
        budget: Duration,
    ) -> Result<OpenStream, OpenError> {
        let result = self.open_inner(peer, req, held, attempt, budget).await;
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => e.label(),
        };
        self.metrics.open("egress", label);
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

    async fn open_inner(
        &self,
        peer: &Peer,
        req: &OpenRequest,
        held: &Bytes,
        attempt: Duration,
        budget: Duration,
    ) -> Result<OpenStream, OpenError> {
        let cluster = || peer.cluster.clone();
        let deadline = crate::config::deadline(Instant::now(), budget);
        let conn = tokio::time::timeout(budget, self.connection(peer))
            .await
            .map_err(|_| OpenError::Timeout { cluster: cluster(), after: budget })??;
        let start = Instant::now();
        let timeout = attempt.min(deadline.saturating_duration_since(start));
        let (mut send, mut recv) = match tokio::time::timeout(timeout, conn.open_bi()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(OpenError::Stream { cluster: cluster(), reason: e.to_string() }),
            Err(_) => return Err(OpenError::Timeout { cluster: cluster(), after: timeout }),
        };
        let mut head = BytesMut::with_capacity(128);
        req.encode(&mut head);
        let exchange = async {
            send.write_all_chunks(&mut [head.freeze(), held.clone()])
                .await
                .map_err(|e| OpenError::Stream { cluster: cluster(), reason: e.to_string() })?;
            read_status(&mut recv).await.map_err(|reason| OpenError::Stream { cluster: cluster(), reason })
        };
        let left = timeout.saturating_sub(start.elapsed());
        let outcome = match tokio::time::timeout(left, exchange).await {
            Ok(r) => r,
            Err(_) => Err(OpenError::Timeout { cluster: cluster(), after: timeout }),
        };
        match outcome {
            Ok((Status::Ok, _)) => Ok(OpenStream { send, recv, latency: start.elapsed() }),
            Ok((status, reason)) => {
                let _ = send.reset(codes::CANCELLED);
                let _ = recv.stop(codes::CANCELLED);
                Err(OpenError::Refused { cluster: cluster(), status, reason })
            }
            Err(e) => {
                let _ = send.reset(codes::CANCELLED);
                let _ = recv.stop(codes::CANCELLED);
                Err(e)
            }
        }
    }
}

async fn read_status(recv: &mut RecvStream) -> Result<(Status, String), String> {
    let mut prefix = [0u8; RESPONSE_PREFIX_LEN];
    recv.read_exact(&mut prefix).await.map_err(|e| format!("reading status: {e}"))?;
    let (status, len) = OpenResponse::decode_prefix(prefix).map_err(|e: HeaderError| e.to_string())?;
    let mut reason = vec![0u8; len];
    recv.read_exact(&mut reason).await.map_err(|e| format!("reading status reason: {e}"))?;
    Ok((status, String::from_utf8_lossy(&reason).into_owned()))
}
