//! TLS in front of tonic: accepts TCP, runs the handshake with the shared SPIFFE verifiers and
//! hands tonic only connections whose client certificate names a gateway. Connections (TLS
//! included) are capped, each handshake is bounded in time, and a verified connection must send
//! its first byte within `first_byte_timeout`: a flood of sockets can hold at most
//! `max_connections` descriptors, each for a bounded time unless it is a working gateway.
//! When every slot is taken, a new socket takes the slot of the oldest connection still in its
//! TLS handshake, so silent sockets cannot lock gateways out: a flood must complete handshakes
//! with a gateway certificate to keep its slots.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use skybridge_api::model::ClusterId;
use skybridge_api::serve::{ACCEPT_LOG_INTERVAL, AcceptErrors, Evictions, RateLimitedLog, Slot, Verdict};
use skybridge_api::tls::{CertStore, cluster_of};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::metrics::EventLabels;

/// The verified identity of a control-stream client, visible to handlers as connect info.
#[derive(Debug, Clone)]
pub struct PeerCluster(pub ClusterId);

/// The bounds of the control listener.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// A TLS handshake must complete within this.
    pub handshake_timeout: Duration,
    /// After the handshake, the client's first byte (the HTTP/2 preface) must arrive within this.
    pub first_byte_timeout: Duration,
    /// Connections open at once, handshakes included; more are closed at accept.
    pub max_connections: usize,
}

/// A TLS connection from a verified gateway. Holds its connection slot until dropped.
pub struct GatewayConn {
    inner: TlsStream<TcpStream>,
    peer: PeerCluster,
    /// Armed until the first byte arrives.
    first_byte: Option<Pin<Box<Sleep>>>,
    on_close: Closed,
}

/// Counts the connection closed and frees its slot when the connection is dropped.
struct Closed {
    events: Family<EventLabels, Counter>,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Closed {
    fn drop(&mut self) {
        count(&self.events, "closed");
    }
}

fn count(events: &Family<EventLabels, Counter>, event: &'static str) {
    events.get_or_create(&EventLabels { event }).inc();
}

impl tonic::transport::server::Connected for GatewayConn {
    type ConnectInfo = PeerCluster;
    fn connect_info(&self) -> PeerCluster {
        self.peer.clone()
    }
}

impl AsyncRead for GatewayConn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Some(deadline) = this.first_byte.as_mut() {
            match polled {
                Poll::Ready(Ok(())) if buf.filled().len() > before => this.first_byte = None,
                Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                    count(&this.on_close.events, "first_byte_timeout");
                    tracing::warn!(cluster = %this.peer.0, "control connection sent nothing after the handshake; closing");
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no data within the first-byte timeout after the TLS handshake",
                    )));
                }
                _ => {}
            }
        }
        polled
    }
}

impl AsyncWrite for GatewayConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts until cancelled; handshakes run concurrently, each bounded by
/// `bounds.handshake_timeout`, and verified connections queue (bounded) for tonic. Past
/// `bounds.max_connections` a new socket takes the slot of the oldest pending handshake, or is
/// closed at once when every slot is a verified gateway. Accept errors (the fd limit) back
/// off; refusals and failed handshakes are logged at most once per interval with a count. One
/// bad client never stops the loop.
pub fn accept(
    listener: TcpListener,
    certs: Arc<CertStore>,
    bounds: Bounds,
    events: Family<EventLabels, Counter>,
    cancel: CancellationToken,
    tasks: TaskTracker,
) -> Result<mpsc::Receiver<Result<GatewayConn, io::Error>>, skybridge_api::tls::TlsError> {
    let acceptor = TlsAcceptor::from(Arc::new(certs.server_config(&[b"h2"])?));
    let (tx, rx) = mpsc::channel(64);
    let handshakes = tasks.clone();
    let slots = Arc::new(Semaphore::new(bounds.max_connections.max(1)));
    let mut pending = Evictions::new(bounds.max_connections);
    tasks.spawn(
        async move {
            let mut errors = AcceptErrors::new("control");
            let log = Arc::new(RateLimitedLog::new(ACCEPT_LOG_INTERVAL));
            let mut flush = tokio::time::interval(ACCEPT_LOG_INTERVAL);
            flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let accepted = tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = flush.tick() => {
                        if let Some(s) = log.flush(Instant::now()) {
                            tracing::warn!(suppressed = %s, "control connections refused or failed since the last line");
                        }
                        continue;
                    }
                    a = listener.accept() => a,
                };
                let (tcp, remote) = match accepted {
                    Ok(a) => {
                        errors.succeeded();
                        a
                    }
                    Err(e) => {
                        count(&events, "accept_error");
                        let pause = errors.failed(&e);
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep(pause) => continue,
                        }
                    }
                };
                let slot = match slots.clone().try_acquire_owned() {
                    Ok(slot) => slot,
                    Err(_) => match pending.evict_oldest() {
                        Some(slot) => {
                            count(&events, "evicted");
                            if let Verdict::Log { .. } = log.record(Instant::now(), "evicted") {
                                tracing::warn!(limit = bounds.max_connections, "control connections full: closing the oldest unfinished handshake for a new socket");
                            }
                            slot
                        }
                        None => {
                            count(&events, "max_connections");
                            if let Verdict::Log { .. } = log.record(Instant::now(), "max_connections") {
                                tracing::warn!(limit = bounds.max_connections, %remote, "control connection refused: at limits.max_control_connections, all of them verified gateways");
                            }
                            // Dropping the socket closes it before any TLS: the cheapest refusal.
                            drop(tcp);
                            continue;
                        }
                    },
                };
                count(&events, "opened");
                let slot = Slot::new(slot);
                pending.push(slot.clone(), None);
                let (acceptor, tx, log, events) =
                    (acceptor.clone(), tx.clone(), log.clone(), events.clone());
                handshakes.spawn(
                    async move {
                        let failed = |event: &'static str, error: String| {
                            count(&events, event);
                            // The slot is freed (unless a newer socket took it) before the close is counted.
                            drop(slot.claim());
                            count(&events, "closed");
                            if let Verdict::Log { suppressed } = log.record(Instant::now(), event) {
                                tracing::warn!(%error, more_since_last_line = suppressed.total(), "control handshake failed");
                            }
                        };
                        let handshake = tokio::time::timeout(bounds.handshake_timeout, acceptor.accept(tcp));
                        let tls = tokio::select! {
                            // The evicting accept already counted this and holds the slot.
                            _ = slot.evicted().cancelled() => return count(&events, "closed"),
                            r = handshake => match r {
                                Ok(Ok(tls)) => tls,
                                Ok(Err(e)) => return failed("handshake_failed", e.to_string()),
                                Err(_) => return failed("handshake_timeout", "timed out".into()),
                            },
                        };
                        // Verified: no longer evictable. None means a newer socket took the slot.
                        let Some(slot) = slot.claim() else { return count(&events, "closed") };
                        let on_close = Closed { events, _slot: slot };
                        let chain = tls.get_ref().1.peer_certificates().unwrap_or_default().to_vec();
                        // The verifier already insisted on a gateway identity; this reads which.
                        let Some(cluster) = cluster_of(&chain) else { return };
                        let first_byte = Some(Box::pin(tokio::time::sleep(bounds.first_byte_timeout)));
                        let conn = GatewayConn { inner: tls, peer: PeerCluster(cluster), first_byte, on_close };
                        let _ = tx.send(Ok(conn)).await;
                    }
                    .instrument(tracing::info_span!("control_handshake", %remote)),
                );
            }
        }
        .instrument(tracing::info_span!("control_accept")),
    );
    Ok(rx)
}
