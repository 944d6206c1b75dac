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

use super::codes;
use crate::metrics::{Metrics, PeerLabels, ResultLabels};
use crate::routing::{Peer, PeerState};

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

/// Pooled connections and per-peer state.
pub struct Pool {
    endpoint: Endpoint,
    per_peer: usize,
    handshake_timeout: Duration,
    peer_backoff: Duration,
    slots: Mutex<HashMap<ClusterId, Slots>>,
    states: Mutex<HashMap<ClusterId, PeerState>>,
    metrics: Metrics,
}

impl Pool {
    /// A pool dialling from `endpoint` (which carries the client config).
    pub fn new(
        endpoint: Endpoint,
        per_peer: usize,
        handshake_timeout: Duration,
        peer_backoff: Duration,
        metrics: Metrics,
    ) -> Self {
        Pool {
            endpoint,
            per_peer,
            handshake_timeout,
            peer_backoff,
            slots: Mutex::new(HashMap::new()),
            states: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// A copy of every peer's state.
    pub fn states(&self) -> HashMap<ClusterId, PeerState> {
        self.states.lock().expect("peer states lock").clone()
    }

    fn with_state<R>(&self, c: &ClusterId, f: impl FnOnce(&mut PeerState) -> R) -> R {
        f(self.states.lock().expect("peer states lock").entry(c.clone()).or_default())
    }

    /// Records a failure that concerns the peer as a whole.
    pub fn mark_failed(&self, c: &ClusterId, reason: String) {
        self.with_state(c, |s| s.on_failure(reason, Instant::now(), self.peer_backoff));
    }

    /// Samples QUIC RTT of the live connections into peer state and metrics.
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
        for (c, rtt) in live {
            self.with_state(&c, |s| s.on_rtt(rtt));
            self.metrics.peer_rtt.get_or_create(&PeerLabels { peer: c.to_string() }).set(rtt.as_secs_f64());
        }
    }

    /// Number of live pooled connections to `c`.
    pub fn live_connections(&self, c: &ClusterId) -> usize {
        let slots = self.slots.lock().expect("slots lock");
        slots.get(c).map_or(0, |s| s.conns.iter().flatten().filter(|c| c.close_reason().is_none()).count())
    }

    async fn connection(&self, peer: &Peer) -> Result<Connection, OpenError> {
        let (idx, lock) = {
            let mut all = self.slots.lock().expect("slots lock");
            let s = all.entry(peer.cluster.clone()).or_default();
            if s.conns.is_empty() {
                s.conns = vec![None; self.per_peer];
                s.dialing = (0..self.per_peer).map(|_| Arc::new(tokio::sync::Mutex::new(()))).collect();
            }
            let idx = s.next % self.per_peer;
            s.next = s.next.wrapping_add(1);
            if let Some(c) = &s.conns[idx]
                && c.close_reason().is_none()
            {
                return Ok(c.clone());
            }
            (idx, s.dialing[idx].clone())
        };
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
    /// the client), and waits up to `timeout` for the receiver's status. On anything but `ok`
    /// the stream is reset and the caller still owns `held` to try elsewhere.
    pub async fn open(
        &self,
        peer: &Peer,
        req: &OpenRequest,
        held: &Bytes,
        timeout: Duration,
    ) -> Result<OpenStream, OpenError> {
        let start = Instant::now();
        let result = self.open_inner(peer, req, held, timeout, start).await;
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => e.label(),
        };
        self.metrics.open("egress", label);
        match &result {
            Ok(s) => {
                self.metrics.open_latency.observe(s.latency.as_secs_f64());
                self.with_state(&peer.cluster, |st| st.on_success());
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
        timeout: Duration,
        start: Instant,
    ) -> Result<OpenStream, OpenError> {
        let cluster = || peer.cluster.clone();
        let conn = tokio::time::timeout(timeout, self.connection(peer))
            .await
            .map_err(|_| OpenError::Timeout { cluster: cluster(), after: timeout })??;
        let left = timeout.saturating_sub(start.elapsed());
        let (mut send, mut recv) = match tokio::time::timeout(left, conn.open_bi()).await {
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
