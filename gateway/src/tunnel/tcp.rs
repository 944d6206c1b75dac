//! The tunnel over TLS 1.3 on TCP, for paths that drop UDP: the same mutual TLS (SPIFFE
//! verification, trust bundle, reload, cluster binding) and ALPN `skybridge/1` as QUIC, and
//! HTTP/2 framing with one stream per forwarded connection carrying exactly the bytes a QUIC
//! stream would (docs/protocol.md, "TCP transport").
//!
//! Unauthenticated connections are bounded like the QUIC port's: at most `max_handshakes` TLS
//! handshakes at once (a new socket at the cap takes the slot of the oldest unfinished one),
//! each within `handshake_timeout`; an authenticated connection may open at most
//! `max_streams_per_peer` streams with 16 KiB of headers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use skybridge_api::TUNNEL_ALPN;
use skybridge_api::serve::{ACCEPT_LOG_INTERVAL, AcceptErrors, Evictions, RateLimitedLog, Slot, Verdict};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::stream::{H2Recv, StreamError, TunnelRecv, TunnelSend, h2_error};
use crate::config::Limits;
use crate::context::Context;
use crate::tls::gateway_of;

/// The request path of a tunnel stream; anything else is refused.
pub const STREAM_PATH: &str = "/skybridge.tunnel.v1/stream";
/// Largest header block a peer may send (the stream header travels in DATA, not here).
const MAX_HEADER_LIST: u32 = 16 * 1024;
/// HTTP/2 frame size both ends accept: fewer frames per byte than the 16 KiB default.
const MAX_FRAME: u32 = 64 * 1024;

/// Whether an HTTP/2 request is a tunnel stream: a POST to [`STREAM_PATH`].
pub fn is_stream_request<B>(req: &http::Request<B>) -> bool {
    req.method() == http::Method::POST && req.uri().path() == STREAM_PATH
}

/// Ids of TCP connections, apart from quinn's (which count up from 0).
static NEXT_ID: AtomicUsize = AtomicUsize::new(usize::MAX / 2);

/// HTTP/2 settings both ends use, from the configured limits.
fn settings(limits: &Limits) -> (u32, u32, u32) {
    (limits.stream_window, limits.connection_window, limits.max_streams_per_peer)
}

/// TCP keepalive, so a peer that vanished without a FIN is noticed by the socket as well as by
/// the probes.
fn keepalive(tcp: &TcpStream, every: Duration) {
    if every.is_zero() {
        return;
    }
    let ka = socket2::TcpKeepalive::new().with_time(every).with_interval(every).with_retries(3);
    let _ = socket2::SockRef::from(tcp).set_tcp_keepalive(&ka);
    let _ = tcp.set_nodelay(true);
}

/// A TLS-over-TCP connection to a peer gateway, multiplexing streams with HTTP/2.
#[derive(Clone)]
pub struct TcpConn {
    send: h2::client::SendRequest<Bytes>,
    authority: Arc<str>,
    /// Cancelled when the connection is gone; the reason is in `why`.
    gone: CancellationToken,
    why: Arc<std::sync::Mutex<Option<String>>>,
    /// Cancel to close the connection at once.
    abort: CancellationToken,
    id: usize,
}

impl TcpConn {
    /// Connects to `addr`, makes the TLS handshake expecting the gateway of `cluster`, and the
    /// HTTP/2 handshake, within `timeout` in total.
    pub async fn dial(
        addr: std::net::SocketAddr,
        cluster: &str,
        tls: &TlsConnector,
        limits: &Limits,
        timeout: Duration,
    ) -> Result<TcpConn, String> {
        let name = rustls_pki_types::ServerName::try_from(cluster.to_owned()).map_err(|e| e.to_string())?;
        let connect = async {
            let tcp = TcpStream::connect(addr).await.map_err(|e| format!("TCP connect: {e}"))?;
            keepalive(&tcp, limits.keep_alive);
            let tls = tls.connect(name, tcp).await.map_err(|e| format!("TLS handshake: {e}"))?;
            if tls.get_ref().1.alpn_protocol() != Some(TUNNEL_ALPN) {
                return Err("the peer did not agree to ALPN skybridge/1".to_owned());
            }
            let (stream_window, conn_window, streams) = settings(limits);
            h2::client::Builder::new()
                .initial_window_size(stream_window)
                .initial_connection_window_size(conn_window)
                .max_concurrent_streams(streams)
                .max_frame_size(MAX_FRAME)
                .max_header_list_size(MAX_HEADER_LIST)
                .enable_push(false)
                .handshake::<_, Bytes>(tls)
                .await
                .map_err(|e| format!("HTTP/2 handshake: {e}"))
        };
        let (send, conn) = match tokio::time::timeout(timeout, connect).await {
            Ok(r) => r?,
            Err(_) => return Err(format!("no TLS connection over TCP within {timeout:?}")),
        };
        let (gone, abort) = (CancellationToken::new(), CancellationToken::new());
        let why = Arc::new(std::sync::Mutex::new(None));
        let (g, a, w) = (gone.clone(), abort.clone(), why.clone());
        tokio::spawn(
            async move {
                let reason = tokio::select! {
                    r = conn => match r {
                        Ok(()) => "closed by the peer".to_owned(),
                        Err(e) => e.to_string(),
                    },
                    _ = a.cancelled() => String::new(),
                };
                *w.lock().expect("tcp conn lock") = Some(reason);
                g.cancel();
            }
            .instrument(tracing::info_span!("tunnel_tcp_conn", peer = cluster, %addr)),
        );
        Ok(TcpConn { send, authority: cluster.into(), gone, why, abort, id: NEXT_ID.fetch_add(1, Ordering::Relaxed) })
    }

    /// Why the connection ended, if it did (`Some("")` when closed locally).
    pub fn closed(&self) -> Option<String> {
        if !self.gone.is_cancelled() {
            return None;
        }
        Some(self.why.lock().expect("tcp conn lock").clone().unwrap_or_default())
    }

    /// Closes the connection at once (streams on it are cut).
    pub fn close(&self) {
        self.abort.cancel();
    }

    /// Identifies the connection while it lives.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Opens a stream: a POST whose body and response body carry the tunnel stream.
    pub async fn open_bi(&self) -> Result<(TunnelSend, TunnelRecv), StreamError> {
        let mut send = self.send.clone().ready().await.map_err(h2_error)?;
        let req = http::Request::post(format!("https://{}{STREAM_PATH}", self.authority))
            .body(())
            .map_err(StreamError::other)?;
        let (response, stream) = send.send_request(req, false).map_err(h2_error)?;
        Ok((TunnelSend::H2(stream), TunnelRecv::H2(H2Recv::responding(response))))
    }
}

/// Accepts peer connections on the TCP tunnel port until draining starts. Streams go to the
/// same handler as QUIC's ([`super::server::stream`]), tracked in `work`; connection tasks in
/// `conns`.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ctx: Arc<Context>,
    work: TaskTracker,
    conns: TaskTracker,
) {
    let max = ctx.limits.max_handshakes.max(1);
    let slots = Arc::new(Semaphore::new(max));
    let mut pending = Evictions::new(max);
    let mut errors = AcceptErrors::new("tunnel (TCP)");
    let noise = Arc::new(RateLimitedLog::new(ctx.limits.noise_log_interval));
    let mut flush = tokio::time::interval(noise.interval().max(ACCEPT_LOG_INTERVAL));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            _ = ctx.draining.cancelled() => break,
            _ = flush.tick() => {
                if let Some(s) = noise.flush(Instant::now()) {
                    tracing::warn!(total = s.total(), by_kind = %s, "unauthenticated tunnel (TCP) noise since the last line");
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
                ctx.metrics.refuse("ingress_tcp", "accept_error");
                let pause = errors.failed(&e);
                tokio::select! {
                    _ = ctx.draining.cancelled() => break,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => match pending.evict_oldest() {
                Some(p) => {
                    ctx.metrics.refuse("ingress_tcp", "evicted");
                    p
                }
                None => {
                    ctx.metrics.refuse("ingress_tcp", "handshake_limit");
                    continue;
                }
            },
        };
        let slot = Slot::new(permit);
        pending.push(slot.clone(), None);
        let (acceptor, ctx, work, noise) = (acceptor.clone(), ctx.clone(), work.clone(), noise.clone());
        conns.spawn(
            connection(tcp, acceptor, slot, ctx, work, noise).instrument(tracing::info_span!("peer_conn_tcp", %remote)),
        );
    }
}

fn failed(ctx: &Context, noise: &RateLimitedLog, reason: &'static str, error: &dyn std::fmt::Display) {
    ctx.metrics.refuse("ingress_tcp", reason);
    if let Verdict::Log { suppressed } = noise.record(Instant::now(), reason) {
        tracing::warn!(%error, reason, more_since_last_line = %suppressed, "peer handshake (TCP) failed");
    }
}

async fn connection(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    slot: Slot,
    ctx: Arc<Context>,
    work: TaskTracker,
    noise: Arc<RateLimitedLog>,
) {
    keepalive(&tcp, ctx.limits.keep_alive);
    let handshake = async {
        let tls = acceptor.accept(tcp).await.map_err(|e| ("handshake_failed", e.to_string()))?;
        if tls.get_ref().1.alpn_protocol() != Some(TUNNEL_ALPN) {
            return Err(("handshake_failed", "client did not offer ALPN skybridge/1".to_owned()));
        }
        let chain = tls.get_ref().1.peer_certificates().unwrap_or_default().to_vec();
        // The verifier already required a gateway SPIFFE ID; this reads which cluster.
        let peer = gateway_of(&chain).ok_or_else(|| ("handshake_failed", "certificate names no gateway".to_owned()))?;
        let (stream_window, conn_window, streams) = settings(&ctx.limits);
        let h2 = h2::server::Builder::new()
            .initial_window_size(stream_window)
            .initial_connection_window_size(conn_window)
            .max_concurrent_streams(streams)
            .max_frame_size(MAX_FRAME)
            .max_header_list_size(MAX_HEADER_LIST)
            .handshake::<_, Bytes>(tls)
            .await
            .map_err(|e| ("handshake_failed", format!("HTTP/2 handshake: {e}")))?;
        Ok((peer, h2))
    };
    let done = tokio::select! {
        // The evicting accept holds the slot now; dropping the socket closes it.
        _ = slot.evicted().cancelled() => return,
        r = tokio::time::timeout(ctx.limits.handshake_timeout, handshake) => r,
    };
    let ((peer, peer_domain), mut h2) = match done {
        Ok(Ok(ok)) => ok,
        Ok(Err((reason, e))) => return failed(&ctx, &noise, reason, &e),
        Err(_) => {
            let e = format!("no complete handshake within {:?}", ctx.limits.handshake_timeout);
            return failed(&ctx, &noise, "handshake_timeout", &e);
        }
    };
    // Authenticated: no longer a handshake in progress (None: evicted at the last moment).
    if slot.claim().is_none() {
        return;
    }
    let peer_domain: Arc<str> = peer_domain.into();
    tracing::info!(%peer, "peer connected over TCP");
    loop {
        let next = tokio::select! {
            _ = ctx.force_close.cancelled() => {
                h2.abrupt_shutdown(h2::Reason::NO_ERROR);
                break;
            }
            n = h2.accept() => n,
        };
        let (req, mut respond) = match next {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                tracing::info!(%peer, reason = %e, "peer connection (TCP) closed");
                break;
            }
            None => {
                tracing::info!(%peer, "peer connection (TCP) closed");
                break;
            }
        };
        if !is_stream_request(&req) {
            ctx.metrics.refuse("ingress_tcp", "bad_request");
            let not_found = http::Response::builder().status(http::StatusCode::NOT_FOUND).body(()).expect("valid");
            let _ = respond.send_response(not_found, true);
            continue;
        }
        // The status and everything after it travel in the body, as on QUIC.
        let Ok(send) = respond.send_response(http::Response::new(()), false) else { continue };
        let (send, recv) = (TunnelSend::H2(send), TunnelRecv::H2(H2Recv::accepted(req.into_body())));
        let span = tracing::info_span!("ingress", %peer, stream = %send.id(), transport = "tcp");
        work.spawn(super::server::stream(send, recv, peer.clone(), peer_domain.clone(), ctx.clone()).instrument(span));
    }
    // Lets the connection finish its last frames (GOAWAY, resets) before the socket closes.
    let _ = tokio::time::timeout(Duration::from_secs(1), std::future::poll_fn(|cx| h2.poll_closed(cx))).await;
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use skybridge_api::header::{OpenRequest, OpenResponse, Status};

    use super::*;
    use crate::tunnel::server::read_header;

    /// A client and a server HTTP/2 connection over an in-memory pipe, with small windows so
    /// that flow control is exercised.
    async fn pipe() -> (h2::client::SendRequest<Bytes>, h2::server::Connection<tokio::io::DuplexStream, Bytes>) {
        let (c, s) = tokio::io::duplex(64 * 1024);
        let client = async {
            let (send, conn) =
                h2::client::Builder::new().initial_window_size(16_384).handshake::<_, Bytes>(c).await.unwrap();
            tokio::spawn(async move {
                let _ = conn.await;
            });
            send
        };
        let server =
            async { h2::server::Builder::new().initial_window_size(16_384).handshake::<_, Bytes>(s).await.unwrap() };
        tokio::join!(client, server)
    }

    #[tokio::test]
    async fn a_stream_carries_the_header_status_and_payload_both_ways_under_flow_control() {
        let (send, mut conn) = pipe().await;
        let opener = async move {
            let req = http::Request::post(format!("https://gcp-1{STREAM_PATH}")).body(()).unwrap();
            let (response, stream) = send.ready().await.unwrap().send_request(req, false).unwrap();
            let (mut tx, mut rx) = (TunnelSend::H2(stream), TunnelRecv::H2(H2Recv::responding(response)));
            let mut head = BytesMut::new();
            OpenRequest::probe(skybridge_api::model::ClusterId::new("aws-1").unwrap()).encode(&mut head);
            // 200 KiB of payload: many windows' worth, so it only passes if credit comes back.
            // Written while the echo is read, as a relay does.
            let payload = Bytes::from(vec![7u8; 200 * 1024]);
            let write = async move {
                tx.write_all_chunks(&mut [head.freeze(), payload]).await.unwrap();
                tx.finish();
            };
            let read = async move {
                let mut prefix = [0u8; 3];
                rx.read_exact(&mut prefix).await.unwrap();
                assert_eq!(OpenResponse::decode_prefix(prefix).unwrap(), (Status::Ok, 0));
                let mut echoed = 0;
                let mut bufs = [Bytes::new()];
                while let Some(n) = rx.read_chunks(&mut bufs).await.unwrap() {
                    echoed += bufs[..n].iter().map(Bytes::len).sum::<usize>();
                }
                echoed
            };
            tokio::join!(write, read).1
        };
        let server = async move {
            let (req, mut respond) = conn.accept().await.unwrap().unwrap();
            assert!(is_stream_request(&req));
            let send = respond.send_response(http::Response::new(()), false).unwrap();
            let (mut tx, mut rx) = (TunnelSend::H2(send), TunnelRecv::H2(H2Recv::accepted(req.into_body())));
            let serve = async move {
                let req = read_header(&mut rx, 1024).await.unwrap();
                assert!(req.probe);
                let mut b = BytesMut::new();
                OpenResponse { status: Status::Ok, reason: String::new() }.encode(&mut b);
                tx.write_chunk(b.freeze()).await.unwrap();
                // Echo the payload that followed the header in the same DATA frames.
                let mut bufs = [Bytes::new()];
                let mut total = 0;
                while let Some(n) = rx.read_chunks(&mut bufs).await.unwrap() {
                    total += bufs[0].len();
                    tx.write_chunk(std::mem::take(&mut bufs[0])).await.unwrap();
                    let _ = n;
                }
                tx.finish();
                total
            };
            // The connection is driven while the stream is served, and until the client is done.
            let drive = async move {
                while let Some(r) = conn.accept().await {
                    drop(r)
                }
            };
            tokio::join!(serve, drive).0
        };
        let (echoed, received) = tokio::join!(opener, server);
        assert_eq!(received, 200 * 1024);
        assert_eq!(echoed, 200 * 1024);
    }

    #[tokio::test]
    async fn a_reset_reaches_the_reader_as_a_reset() {
        let (send, mut conn) = pipe().await;
        let req = http::Request::post(format!("https://gcp-1{STREAM_PATH}")).body(()).unwrap();
        let (_response, stream) = send.ready().await.unwrap().send_request(req, false).unwrap();
        let mut tx = TunnelSend::H2(stream);
        tx.write_chunk(Bytes::from_static(b"abc")).await.unwrap();
        tx.reset(crate::tunnel::codes::TCP_RESET);
        let (req, _respond) = conn.accept().await.unwrap().unwrap();
        let mut rx = TunnelRecv::H2(H2Recv::accepted(req.into_body()));
        let drive = async move {
            while let Some(r) = conn.accept().await {
                drop(r)
            }
        };
        let read = async {
            let mut bufs = [Bytes::new()];
            loop {
                match rx.read_chunks(&mut bufs).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("a reset stream ended cleanly"),
                    Err(e) => return e,
                }
            }
        };
        let e = tokio::select! { e = read => e, _ = drive => panic!("connection ended first") };
        assert!(e.reset, "{e}");
    }

    #[test]
    fn only_posts_to_the_stream_path_are_streams() {
        let req = |m: &str, p: &str| http::Request::builder().method(m).uri(format!("https://x{p}")).body(()).unwrap();
        assert!(is_stream_request(&req("POST", STREAM_PATH)));
        assert!(!is_stream_request(&req("GET", STREAM_PATH)));
        assert!(!is_stream_request(&req("POST", "/")));
    }
}
