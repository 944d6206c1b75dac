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
    let (target, held, parent) = match kind {
        Kind::Tcp { service, port } => (Ok((service, port)), Bytes::new(), None),
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
        Err(why) => {
            ctx.metrics.refuse(label, "unknown_name");
            return refuse(&mut stream, label, why).await;
        }
    };
    if let Err((mut stream, why)) = forward::forward(stream, held, parent, service, port, label, ctx).await {
        ctx.metrics.refuse(label, "no_healthy_route");
        refuse(&mut stream, label, &why).await;
    }
}

/// Answers a client we cannot route, in its own protocol, then closes.
async fn refuse(stream: &mut TcpStream, label: &'static str, why: &str) {
    tracing::info!(why, "refused client connection");
    let bytes = match label {
        "sni" if why.starts_with("no route") => sni::alert(sni::ALERT_INTERNAL_ERROR).to_vec(),
        "sni" => sni::alert(sni::ALERT_UNRECOGNIZED_NAME).to_vec(),
        "http" => http::response("502 Bad Gateway", why),
        _ => Vec::new(),
    };
    let _ = stream.write_all(&bytes).await;
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
