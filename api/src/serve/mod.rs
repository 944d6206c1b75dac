//! Bounded serving for every HTTP/1.1 server Skybridge runs on an axum [`Router`] (gateway
//! admin, federator API): a connection cap with a clear refusal (`503` and close), a header-read
//! timeout, an idle timeout, and accept errors at the fd limit that back off and are logged at
//! most once per interval. Unauthenticated clients can hold at most `max_connections` sockets,
//! each for at most `header_timeout` without sending a request and `idle_timeout` without
//! moving a byte. At the cap, a new connection first takes the slot of the oldest one that has
//! not sent a byte ([`evict`]), so silent sockets cannot keep probes and operators out.
//!
//! With a TLS config the server speaks HTTPS only: the handshake must finish within the header
//! timeout, a plain-HTTP request is answered `400` naming `https://` (and never reaches the
//! router), and the client's certificate chain, when it sent one the config's verifier
//! accepted, reaches handlers as the [`ClientCertificates`] request extension.

mod accept;
mod evict;
pub mod fdlimit;
mod idle;
mod ratelog;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use accept::{
    ACCEPT_BACKOFF_MAX, ACCEPT_BACKOFF_MIN, ACCEPT_LOG_INTERVAL, AcceptErrors, DEFAULT_LISTEN_BACKLOG, listen,
};
use axum::Router;
pub use evict::{Evictions, Slot};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
pub use idle::{Activity, IdleIo};
pub use ratelog::{RateLimitedLog, Suppressed, Verdict};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Largest request head read (hyper answers `431` past it).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Refused connections kept open briefly (at most this many at once) so that the client reads
/// the `503` before the close; past it they are closed at once.
const LINGER_SLOTS: usize = 64;
/// How long a refused connection is kept open to read what the client sent.
const LINGER: Duration = Duration::from_secs(1);

/// The bounds of one HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections served at once; one more takes the slot of the oldest connection that has
    /// sent nothing, or when none has, is answered `503` and closed. At least 1.
    pub max_connections: usize,
    /// A complete request head must arrive within this of the connection opening or of the
    /// previous response (so it also closes idle keep-alive connections). Positive.
    pub header_timeout: Duration,
    /// A connection on which no byte moves in either direction for this long is closed (a
    /// client not reading its response, a stalled request body). Positive.
    pub idle_timeout: Duration,
}

/// What happened on a server, for the caller's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeEvent {
    /// A connection was accepted and is being served.
    Opened,
    /// A served connection ended (for any reason, including the two timeouts below).
    Closed,
    /// A connection was refused because `max_connections` were open, each having sent a byte.
    Refused,
    /// A connection that had sent nothing was closed to make room for a new one at the cap.
    Evicted,
    /// A connection was closed because no complete request head arrived in time.
    HeaderTimeout,
    /// A connection was closed because nothing moved for `idle_timeout`.
    IdleTimeout,
    /// `accept` failed (e.g. the fd limit); the loop backed off.
    AcceptError,
    /// A plain-HTTP request reached an HTTPS server; it was answered `400` and closed.
    PlainHttp,
    /// The TLS handshake failed (bad or untrusted client certificate, no common version).
    TlsHandshake,
}

impl ServeEvent {
    /// A metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            ServeEvent::Opened => "opened",
            ServeEvent::Closed => "closed",
            ServeEvent::Refused => "max_connections",
            ServeEvent::Evicted => "evicted",
            ServeEvent::HeaderTimeout => "header_timeout",
            ServeEvent::IdleTimeout => "idle_timeout",
            ServeEvent::AcceptError => "accept_error",
            ServeEvent::PlainHttp => "plain_http",
            ServeEvent::TlsHandshake => "tls_handshake_failed",
        }
    }
}

type OnEvent = Arc<dyn Fn(ServeEvent) + Send + Sync>;

/// The certificate chain (leaf first) a client presented and the server's verifier accepted;
/// a request extension on HTTPS connections that sent one.
#[derive(Debug, Clone)]
pub struct ClientCertificates(pub Arc<[CertificateDer<'static>]>);

/// HTTP or HTTPS.
#[derive(Clone)]
pub enum Transport {
    /// Plain HTTP/1.1.
    Plain,
    /// HTTPS only, with this config (its verifier decides which client certificates pass).
    Tls(Arc<rustls::ServerConfig>),
}

/// The answer to plain HTTP on an HTTPS port: without it, a client would see a reset or
/// garbage and not know why.
const PLAIN_HTTP_ANSWER: &str = "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
    connection: close\r\ncontent-length: 66\r\n\r\nskybridge: this port serves HTTPS only; use https:// to reach it.\n";

/// The `503` a connection over the cap gets.
fn refusal(max: usize) -> String {
    let body = format!("skybridge: too many connections (limit {max}); retry later\n");
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Serves `router` on `listener` over `transport` within `limits` until `shutdown` is
/// cancelled; then stops accepting, lets in-flight requests finish (each connection still
/// bounded by the timeouts) and returns. `name` labels the log lines; `on_event` sees every
/// [`ServeEvent`].
pub async fn serve_router(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    transport: Transport,
    limits: HttpLimits,
    shutdown: CancellationToken,
    on_event: impl Fn(ServeEvent) + Send + Sync + 'static,
) {
    let on_event: OnEvent = Arc::new(on_event);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let linger = Arc::new(Semaphore::new(LINGER_SLOTS));
    let mut evictions = Evictions::new(limits.max_connections);
    let conns = TaskTracker::new();
    let mut errors = AcceptErrors::new(name);
    let refusals = RateLimitedLog::new(ACCEPT_LOG_INTERVAL);
    let mut flush = tokio::time::interval(ACCEPT_LOG_INTERVAL);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = flush.tick() => {
                if let Some(s) = refusals.flush(Instant::now()) {
                    tracing::warn!(server = name, refused = s.total(), limit = limits.max_connections, "connections refused at the connection limit");
                }
                continue;
            }
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((s, _)) => {
                errors.succeeded();
                s
            }
            Err(e) => {
                on_event(ServeEvent::AcceptError);
                let pause = errors.failed(&e);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => evictions.evict_oldest(),
        };
        let Some(permit) = permit else {
            on_event(ServeEvent::Refused);
            if let Verdict::Log { .. } = refusals.record(Instant::now(), "max_connections") {
                tracing::warn!(
                    server = name,
                    limit = limits.max_connections,
                    "connection refused: at the connection limit"
                );
            }
            refuse(stream, limits.max_connections, &linger);
            continue;
        };
        let slot = Slot::new(permit);
        let activity = Activity::new();
        evictions.push(slot.clone(), Some(activity.clone()));
        let (router, on_event, stop) = (router.clone(), on_event.clone(), shutdown.clone());
        let transport = transport.clone();
        on_event(ServeEvent::Opened);
        conns.spawn(async move {
            let end = tokio::select! {
                // Dropping the connection closes the socket; the evicting accept holds the slot.
                _ = slot.evicted().cancelled() => Some(ServeEvent::Evicted),
                end = connection(stream, activity, router, transport, limits, stop.clone()) => end,
            };
            if let Some(e) = end {
                on_event(e);
            }
            drop(slot.claim());
            on_event(ServeEvent::Closed);
        });
    }
    // Closed at once, so that new clients are refused (and find another replica) rather than
    // queued in the backlog of a server that will never answer them.
    drop(listener);
    conns.close();
    conns.wait().await;
}

/// Answers `503` without waiting, then closes (after reading what the client sent, when a
/// linger slot is free, so the close is a FIN rather than a reset that could discard the answer).
fn refuse(stream: TcpStream, max: usize, linger: &Arc<Semaphore>) {
    // A fresh socket's send buffer is empty: this never blocks and almost never writes short.
    let _ = stream.try_write(refusal(max).as_bytes());
    let Ok(slot) = linger.clone().try_acquire_owned() else {
        // No time to linger: read what already arrived (usually the whole request) so that the
        // close is a FIN, not a reset that would discard the answer.
        let mut sink = [0u8; 4096];
        while let Ok(1..) = stream.try_read(&mut sink) {}
        return;
    };
    tokio::spawn(async move {
        let mut stream = stream;
        let _ = stream.shutdown().await;
        let mut sink = [0u8; 1024];
        let _ = tokio::time::timeout(LINGER, async {
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        drop(slot);
    });
}

/// Serves one connection; returns the timeout or failure that ended it, if one did.
async fn connection(
    stream: TcpStream,
    activity: Arc<Activity>,
    router: Router,
    transport: Transport,
    limits: HttpLimits,
    stop: CancellationToken,
) -> Option<ServeEvent> {
    let _ = stream.set_nodelay(true);
    let Transport::Tls(config) = transport else {
        let service = WithClient { router, client: None };
        return http(TokioIo::new(IdleIo::new(stream, activity.clone())), service, activity, limits, stop).await;
    };
    // The handshake, and telling plain HTTP from it, count against the header timeout.
    let deadline = tokio::time::Instant::from_std(activity.opened() + limits.header_timeout);
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        Err(_) => return Some(ServeEvent::HeaderTimeout),
        Ok(Err(_) | Ok(0)) => return None,
        // 22: a TLS handshake record; anything else is not TLS (most likely plain HTTP).
        Ok(Ok(_)) if first[0] != 22 => {
            let mut stream = stream;
            let _ = stream.write_all(PLAIN_HTTP_ANSWER.as_bytes()).await;
            let _ = stream.shutdown().await;
            // Read what the client sends until it closes, so the close is a FIN and not a
            // reset that could discard the answer before the client reads it.
            let mut sink = [0u8; 4096];
            let mut left = MAX_HEAD_BYTES;
            let _ = tokio::time::timeout(LINGER, async {
                while let Ok(n @ 1..) = stream.read(&mut sink).await {
                    left = left.saturating_sub(n);
                    if left == 0 {
                        break;
                    }
                }
            })
            .await;
            return Some(ServeEvent::PlainHttp);
        }
        Ok(Ok(_)) => {}
    }
    let accept = tokio_rustls::TlsAcceptor::from(config).accept(IdleIo::new(stream, activity.clone()));
    let tls = match tokio::time::timeout_at(deadline, accept).await {
        Err(_) => return Some(ServeEvent::HeaderTimeout),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            return Some(ServeEvent::TlsHandshake);
        }
        Ok(Ok(tls)) => tls,
    };
    let client = tls.get_ref().1.peer_certificates().map(|c| ClientCertificates(c.iter().cloned().collect()));
    http(TokioIo::new(tls), WithClient { router, client }, activity, limits, stop).await
}

/// The router, with the connection's client certificates added to each request.
#[derive(Clone)]
struct WithClient {
    router: Router,
    client: Option<ClientCertificates>,
}

impl<B> tower_service::Service<axum::http::Request<B>> for WithClient
where
    Router: tower_service::Service<axum::http::Request<B>>,
{
    type Response = <Router as tower_service::Service<axum::http::Request<B>>>::Response;
    type Error = <Router as tower_service::Service<axum::http::Request<B>>>::Error;
    type Future = <Router as tower_service::Service<axum::http::Request<B>>>::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        tower_service::Service::<axum::http::Request<B>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, mut req: axum::http::Request<B>) -> Self::Future {
        if let Some(c) = &self.client {
            req.extensions_mut().insert(c.clone());
        }
        self.router.call(req)
    }
}

/// Serves HTTP/1.1 on `io` until the client closes, a timeout fires, or the drain ends it.
async fn http<I>(
    io: I,
    service: WithClient,
    activity: Arc<Activity>,
    limits: HttpLimits,
    stop: CancellationToken,
) -> Option<ServeEvent>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).max_buf_size(MAX_HEAD_BYTES);
    let conn = builder.serve_connection(io, TowerToHyperService::new(service));
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        // Saturating: a huge idle timeout means "never", not a panic.
        let deadline = activity.last().checked_add(limits.idle_timeout);
        let idle = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = conn.as_mut() => {
                return match r {
                    Err(e) if e.is_timeout() => Some(ServeEvent::HeaderTimeout),
                    // hyper closes a connection that sent nothing silently at the header timeout.
                    Ok(()) if activity.bytes_read() == 0 && activity.opened().elapsed() >= limits.header_timeout => {
                        Some(ServeEvent::HeaderTimeout)
                    }
                    _ => None,
                };
            }
            _ = idle => {
                if activity.idle_for() >= limits.idle_timeout {
                    // Dropping the connection closes the socket, whatever state hyper is in.
                    return Some(ServeEvent::IdleTimeout);
                }
            }
            _ = stop.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests;
