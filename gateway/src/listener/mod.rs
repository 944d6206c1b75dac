//! Egress: listeners for local clients, routing by SNI, by Host, or by listener port.

pub mod forward;
pub mod http;
pub mod sni;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use skybridge_api::header::TraceContext;
use skybridge_api::model::{Protocol, ServiceKey};
use skybridge_api::serve::AcceptErrors;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::context::Context;
use crate::metrics::ListenerLabels;

/// What a listener routes by.
#[derive(Debug, Clone)]
pub enum Kind {
    /// TLS passthrough by SNI.
    Sni,
    /// Plain HTTP/1.1 by Host.
    Http,
    /// Everything to one service port.
    Tcp { service: ServiceKey, port: u16 },
}

impl Kind {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Kind::Sni => "sni",
            Kind::Http => "http",
            Kind::Tcp { .. } => "tcp",
        }
    }
}

/// Accepts until draining starts. One bad connection never ends the loop.
pub async fn serve(listener: TcpListener, kind: Kind, ctx: Arc<Context>, tracker: TaskTracker) {
    let label = kind.label();
    let mut errors = AcceptErrors::new(label);
    loop {
        let accepted = tokio::select! {
            _ = ctx.draining.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, client) = match accepted {
            Ok(a) => {
                errors.succeeded();
                a
            }
            Err(e) => {
                // EMFILE and friends: back off (logged at most once per interval) instead of
                // spinning.
                ctx.metrics.refuse(label, "accept_error");
                let pause = errors.failed(&e);
                tokio::select! {
                    _ = ctx.draining.cancelled() => break,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        ctx.metrics.connections.get_or_create(&ListenerLabels { listener: label }).inc();
        let Ok(permit) = ctx.egress_slots.clone().try_acquire_owned() else {
            ctx.metrics.refuse(label, "max_connections");
            continue; // dropping the stream closes it
        };
        let _ = stream.set_nodelay(true);
        let span = tracing::info_span!("egress", listener = label, %client);
        let (ctx, kind) = (ctx.clone(), kind.clone());
        tracker.spawn(
            async move {
                let active = ctx.metrics.active_connections.get_or_create(&ListenerLabels { listener: label }).clone();
                active.inc();
                handle(stream, kind, &ctx).await;
                active.dec();
                drop(permit);
            }
            .instrument(span),
        );
    }
}

/// Reads from `stream` until `peek` decides, the buffer passes `max`, or `timeout` passes
/// (measured from the first byte wait, so a client trickling bytes cannot hold the slot).
async fn read_head<T, E>(
    stream: &mut TcpStream,
    max: usize,
    timeout: Duration,
    mut peek: impl FnMut(&[u8]) -> Result<Option<T>, E>,
) -> Result<Result<(T, Bytes), E>, HeadError> {
    let deadline = crate::config::deadline(Instant::now(), timeout);
    let mut buf = BytesMut::with_capacity(2048.min(max));
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = match tokio::time::timeout(left, stream.read_buf(&mut buf)).await {
            Err(_) => return Err(HeadError::Timeout),
            Ok(Err(_)) => return Err(HeadError::Io),
            Ok(Ok(n)) => n,
        };
        match peek(&buf) {
            Ok(Some(v)) => return Ok(Ok((v, buf.freeze()))),
            Err(e) => return Ok(Err(e)),
            Ok(None) if n == 0 => return Err(HeadError::Eof),
            Ok(None) => {}
        }
        if buf.len() > max {
            // The parsers answer TooLarge at `max` (fuzzed); this only guards against a bug there.
            return Err(HeadError::Io);
        }
        buf.reserve(2048);
    }
}

#[derive(Debug)]
enum HeadError {
    Timeout,
    Eof,
    Io,
}

impl HeadError {
    fn label(&self) -> &'static str {
        match self {
            HeadError::Timeout => "peek_timeout",
            HeadError::Eof => "eof",
            HeadError::Io => "io_error",
        }
    }
}

async fn handle(mut stream: TcpStream, kind: Kind, ctx: &Context) {
    let label = kind.label();
    let (target, held, parent) = match &kind {
        Kind::Tcp { service, port } => (Ok((service.clone(), *port)), Bytes::new(), None),
        Kind::Sni => match sni_target(&mut stream, ctx).await {
            Some(v) => v,
            None => return,
        },
        Kind::Http => match http_target(&mut stream, ctx).await {
            Some(v) => v,
            None => return,
        },
    };
    let (service, port) = match target {
        Ok(t) => t,
        Err(why) => return refuse(&mut stream, &kind, Unroutable::UnknownName(why), ctx).await,
    };
    if let Err((mut stream, why)) = forward::forward(stream, held, parent, service, port, label, ctx).await {
        refuse(&mut stream, &kind, Unroutable::NoRoute(why), ctx).await;
    }
}

/// Why a client connection could not be routed, and what each protocol answers for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unroutable {
    /// The name is not a service of the catalog (or it has no port for the protocol).
    UnknownName(&'static str),
    /// No candidate accepted the connection within the connect budget.
    NoRoute(String),
}

impl Unroutable {
    /// The `refusals_total` reason.
    pub fn label(&self) -> &'static str {
        match self {
            Unroutable::UnknownName(_) => "unknown_name",
            Unroutable::NoRoute(_) => "no_healthy_route",
        }
    }

    /// The TLS alert a TLS client gets.
    pub fn tls_alert(&self) -> u8 {
        match self {
            Unroutable::UnknownName(_) => sni::ALERT_UNRECOGNIZED_NAME,
            Unroutable::NoRoute(_) => sni::ALERT_INTERNAL_ERROR,
        }
    }

    /// The HTTP status line an HTTP client gets.
    pub fn http_status(&self) -> &'static str {
        "502 Bad Gateway"
    }

    /// The reason, for the log and the HTTP body.
    pub fn reason(&self) -> &str {
        match self {
            Unroutable::UnknownName(why) => why,
            Unroutable::NoRoute(why) => why,
        }
    }

    /// The bytes a client of listener `kind` is answered with before the close (a port-mapped
    /// TCP client gets only the close: its protocol is unknown).
    pub fn answer(&self, kind: &Kind) -> Vec<u8> {
        match kind {
            Kind::Sni => sni::alert(self.tls_alert()).to_vec(),
            Kind::Http => http::response(self.http_status(), self.reason()),
            Kind::Tcp { .. } => Vec::new(),
        }
    }
}

/// Answers a client we cannot route, in its own protocol, counts it, then closes.
async fn refuse(stream: &mut TcpStream, kind: &Kind, r: Unroutable, ctx: &Context) {
    ctx.metrics.refuse(kind.label(), r.label());
    tracing::info!(why = r.reason(), "refused client connection");
    let _ = stream.write_all(&r.answer(kind)).await;
    let _ = stream.shutdown().await;
}

/// Where a head routes (or why it does not), the bytes read to find out, and the client's trace
/// context if the head carried one.
type Routed = (Result<(ServiceKey, u16), &'static str>, Bytes, Option<TraceContext>);

fn lookup(host: &str, protocol: Protocol, ctx: &Context) -> Result<(ServiceKey, u16), &'static str> {
    let key = ServiceKey::from_host(host).map_err(|_| "not a clusterset service name")?;
    let catalog = ctx.catalog.load();
    let svc = catalog.services.get(&key).ok_or("unknown service")?;
    let port = match protocol {
        Protocol::Tls => svc.port_for(Protocol::Tls).ok_or("service has no tls port")?,
        _ => svc.port_for(Protocol::Http).ok_or("service has no http port")?,
    };
    Ok((key, port.port))
}

async fn sni_target(stream: &mut TcpStream, ctx: &Context) -> Option<Routed> {
    let max = ctx.limits.max_client_hello;
    let head = read_head(stream, max, ctx.limits.peek_timeout, |b| match sni::peek(b, max) {
        Ok(sni::Peek::NeedMore) => Ok(None),
        Ok(sni::Peek::Done(name)) => Ok(Some(name)),
        Err(e) => Err(e),
    })
    .await;
    match head {
        Err(e) => {
            ctx.metrics.refuse("sni", e.label());
            None
        }
        Ok(Err(e)) => {
            tracing::info!(error = %e, "refused: bad ClientHello");
            ctx.metrics.refuse("sni", "bad_client_hello");
            let _ = stream.write_all(&sni::alert(sni::ALERT_DECODE_ERROR)).await;
            None
        }
        Ok(Ok((name, held))) => {
            let target = match name.as_deref() {
                Some(n) => lookup(n, Protocol::Tls, ctx),
                None => Err("ClientHello has no SNI"),
            };
            Some((target, held, None))
        }
    }
}

async fn http_target(stream: &mut TcpStream, ctx: &Context) -> Option<Routed> {
    let max = ctx.limits.max_http_head;
    let head = read_head(stream, max, ctx.limits.peek_timeout, |b| match http::peek(b, max) {
        Ok(http::Peek::NeedMore) => Ok(None),
        Ok(http::Peek::Done { host, trace }) => Ok(Some((host, trace))),
        Err(e) => Err(e),
    })
    .await;
    match head {
        Err(HeadError::Timeout) => {
            ctx.metrics.refuse("http", HeadError::Timeout.label());
            let _ = stream.write_all(&http::response("408 Request Timeout", "request head not received in time")).await;
            None
        }
        Err(e) => {
            ctx.metrics.refuse("http", e.label());
            None
        }
        Ok(Err(e)) => {
            tracing::info!(error = %e, "refused: bad request head");
            ctx.metrics.refuse("http", "bad_request");
            let _ = stream.write_all(&http::response(e.status(), &e.to_string())).await;
            let _ = stream.shutdown().await;
            None
        }
        Ok(Ok(((host, trace), held))) => Some((lookup(&host, Protocol::Http, ctx), held, trace)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_maps_to_its_alert_status_and_label() {
        let unknown = Unroutable::UnknownName("unknown service");
        let no_route = Unroutable::NoRoute("no route to prod/web:443: timed out".into());
        assert_eq!(unknown.answer(&Kind::Sni), sni::alert(sni::ALERT_UNRECOGNIZED_NAME));
        assert_eq!(no_route.answer(&Kind::Sni), sni::alert(sni::ALERT_INTERNAL_ERROR));
        let http = String::from_utf8(no_route.answer(&Kind::Http)).unwrap();
        assert!(http.starts_with("HTTP/1.1 502 Bad Gateway") && http.contains("timed out"), "{http}");
        let tcp = Kind::Tcp { service: "prod/web".parse().unwrap(), port: 80 };
        assert!(unknown.answer(&tcp).is_empty(), "a port-mapped client gets only the close");
        assert_eq!((unknown.label(), no_route.label()), ("unknown_name", "no_healthy_route"));
    }
}
