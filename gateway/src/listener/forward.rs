//! Sends one client connection to the best candidate cluster, retrying the next candidate when
//! an open is refused or times out, within the connect budget. The client sees nothing of the
//! retries: the bytes already read from it are held and replayed on each attempt.

use std::time::Instant;

use bytes::Bytes;
use skybridge_api::header::{OpenRequest, TraceContext};
use skybridge_api::model::ServiceKey;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::context::Context;
use crate::routing::{Target, candidates};
use crate::telemetry::{Outcome, Side};
use crate::traffic::Connection;
use crate::tunnel::splice::{self, Relayed};

/// Forwards `client` to `service:port`, continuing the client's trace context `parent` if it
/// sent one. On success relays until both sides close; when no candidate accepts, returns the
/// client with the reason so the listener can answer it.
pub async fn forward(
    client: TcpStream,
    held: Bytes,
    parent: Option<TraceContext>,
    service: ServiceKey,
    port: u16,
    listener: &'static str,
    ctx: &Context,
) -> Result<(), (TcpStream, String)> {
    let start = Instant::now();
    let catalog = ctx.catalog.load();
    let draws = [fastrand::u64(..), fastrand::u64(..)];
    let order = candidates(&catalog, &service, port, &ctx.pool.views(), &ctx.routing.choice(), draws);
    let mut trace = ctx.telemetry.connection(Side::Egress, parent.as_ref(), &service, port, &ctx.local, listener);
    let traceparent = trace.context.traceparent.clone();
    let req = OpenRequest {
        service: service.clone(),
        port,
        source: ctx.local.clone(),
        trace: Some(trace.context.clone()),
        probe: false,
        proof: false,
    };
    let budget = ctx.limits.connect_budget;
    let mut last = String::from("no cluster hosts this service");
    let mut attempts = 0u32;
    // A peer whose pooled connection turned out dead goes to the back of the line: the other
    // candidates first, then a fresh dial (which may fall back to TLS over TCP). Twice at
    // most: a concurrent open may have closed the connection this one was on.
    let mut order: std::collections::VecDeque<Target> = order.into();
    let mut redialled = Vec::new();
    while let Some(target) = order.pop_front() {
        let left = budget.saturating_sub(start.elapsed());
        if left.is_zero() {
            last = format!("connect budget {budget:?} spent; last: {last}");
            break;
        }
        attempts += 1;
        if attempts > 1 {
            ctx.metrics.retries.inc();
        }
        let (chosen, transport, opened, relayed) = match &target {
            Target::Local => {
                let Some(eps) = catalog.local_endpoints(&service, port) else { continue };
                let (mut up, _) = match ctx.delivery.connect(eps, left).await {
                    Ok(c) => c,
                    Err(e) => {
                        last = e.to_string();
                        trace.attempt_failed(&ctx.local, &last);
                        continue;
                    }
                };
                if let Err(e) = up.write_all(&held).await {
                    last = format!("local endpoint closed: {e}");
                    trace.attempt_failed(&ctx.local, &last);
                    continue;
                }
                let opened = start.elapsed();
                let r = splice::tcp_tcp(client, up, &ctx.relay_budget, &ctx.force_close).await;
                (
                    ctx.local.clone(),
                    "local",
                    opened,
                    Relayed { tcp_to_stream: r.tcp_to_stream + held.len() as u64, ..r },
                )
            }
            Target::Peer(c) => {
                let Some(peer) = catalog.peers.get(c) else { continue };
                // A slow open is abandoned for the next candidate well before the hard limit.
                let timeouts = ctx.routing.open_timeouts(ctx.pool.srtt(c), ctx.limits.open_timeout, order.is_empty());
                match ctx.pool.open(peer, &req, &held, timeouts, left).await {
                    Ok(s) => {
                        let (opened, transport) = (start.elapsed(), ctx.pool.transport_of(c).as_str());
                        let _load = ctx.pool.load_guard(c);
                        let r = splice::tcp_stream(client, s.send, s.recv, &ctx.relay_budget, &ctx.force_close).await;
                        (
                            c.clone(),
                            transport,
                            opened,
                            Relayed { tcp_to_stream: r.tcp_to_stream + held.len() as u64, ..r },
                        )
                    }
                    Err(e) => {
                        tracing::info!(peer = %c, error = %e, "open failed; trying next candidate");
                        last = e.to_string();
                        trace.attempt_failed(c, &last);
                        if e.redial() && redialled.iter().filter(|r| *r == c).count() < 2 {
                            redialled.push(c.clone());
                            order.push_back(target.clone());
                        }
                        continue;
                    }
                }
            }
        };
        ctx.metrics.relayed("egress", relayed.tcp_to_stream, relayed.stream_to_tcp);
        count(
            ctx,
            Connection {
                service: &service,
                served_by: Some(&chosen),
                transport,
                attempts,
                open: opened,
                bytes_up: relayed.tcp_to_stream,
                bytes_down: relayed.stream_to_tcp,
            },
        );
        let result = if relayed.reset { "reset" } else { "ok" };
        trace.finish(Outcome {
            cluster: Some(&chosen),
            attempts,
            bytes_up: relayed.tcp_to_stream,
            bytes_down: relayed.stream_to_tcp,
            result,
            error: relayed.reset.then_some("connection reset"),
        });
        // The access log line: one per tunneled connection.
        tracing::info!(
            source = %ctx.local,
            %service,
            port,
            listener,
            cluster = %chosen,
            attempts,
            bytes_up = relayed.tcp_to_stream,
            bytes_down = relayed.stream_to_tcp,
            duration_ms = start.elapsed().as_millis() as u64,
            result,
            %traceparent,
            "connection closed"
        );
        return Ok(());
    }
    tracing::warn!(%service, port, attempts, reason = %last, %traceparent, "no route");
    let failed = Connection {
        service: &service,
        served_by: None,
        transport: "none",
        attempts,
        open: start.elapsed(),
        bytes_up: 0,
        bytes_down: 0,
    };
    count(ctx, failed);
    let why = format!("no route to {service}:{port}: {last}");
    let o = Outcome { cluster: None, attempts, bytes_up: 0, bytes_down: 0, result: "no_route", error: Some(&why) };
    trace.finish(o);
    Err((client, why))
}

/// Counts a finished connection in the traffic accounting and its metrics.
fn count(ctx: &Context, c: Connection<'_>) {
    let key = ctx.traffic.lock().expect("traffic lock").record(c);
    ctx.metrics.traffic(&key, &c);
}
