//! The receiving side (ingress): admits peer connection attempts (see [`super::admission`]),
//! accepts their streams, authorizes each stream, connects to a local endpoint and answers with
//! a status before relaying.

use std::sync::Arc;
use std::time::Instant;

use std::net::SocketAddr;

use bytes::BytesMut;
use quinn::{Endpoint, Incoming};
use skybridge_api::header::{OpenRequest, OpenResponse, REQUEST_PREFIX_LEN, Status};
use skybridge_api::model::ClusterId;
use skybridge_api::routing::DefaultAction;
use skybridge_api::serve::{RateLimitedLog, Verdict};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::admission::{Decision, Handshakes, Slot};
use super::stream::{TunnelRecv, TunnelSend};
use super::{codes, splice};
use crate::context::Context;
use crate::metrics::ListenerLabels;
use crate::routing::Catalog;
use crate::telemetry::{ConnTrace, Outcome, Side};
use crate::tls::peer_gateway;

/// Accepts peer connections until draining starts. Streams are tracked in `work` (what a drain
/// waits for); connection loops in `conns`, which end when the endpoint closes.
pub async fn serve(endpoint: Endpoint, ctx: Arc<Context>, work: TaskTracker, conns: TaskTracker) {
    let handshakes = Handshakes::new(ctx.limits.admission(), ctx.metrics.tunnel_handshakes.clone());
    // Everything logged here can be caused by anyone who can send a datagram.
    let noise = Arc::new(RateLimitedLog::new(ctx.limits.noise_log_interval));
    let mut flush = tokio::time::interval(noise.interval());
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let incoming = tokio::select! {
            _ = ctx.draining.cancelled() => break,
            _ = flush.tick() => {
                if let Some(s) = noise.flush(Instant::now()) {
                    tracing::warn!(total = s.total(), by_kind = %s, "unauthenticated tunnel noise since the last line");
                }
                continue;
            }
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
        };
        let remote = incoming.remote_address();
        let decision = match handshakes.admit(remote, incoming.remote_address_validated()) {
            Ok(slot) => {
                let span = tracing::info_span!("peer_conn", %remote);
                conns.spawn(connection(incoming, slot, ctx.clone(), work.clone(), noise.clone()).instrument(span));
                Decision::Accept
            }
            Err(d) => {
                turn_away(incoming, d);
                if let Verdict::Log { suppressed } = noise.record(Instant::now(), d.as_str()) {
                    tracing::warn!(
                        %remote,
                        decision = d.as_str(),
                        in_flight = handshakes.in_flight(),
                        more_since_last_line = %suppressed,
                        "tunnel connection attempt not admitted"
                    );
                }
                d
            }
        };
        ctx.metrics.admission(decision);
    }
}

/// Answers an attempt that is not admitted. None of these keeps state, and each reply (Retry,
/// CONNECTION_REFUSED) is smaller than the Initial that caused it.
fn turn_away(incoming: Incoming, d: Decision) {
    match d {
        // `retry` fails only for an attempt that already carries a Retry token, which the
        // decision never retries; ignoring it is the safe answer all the same.
        Decision::Retry => {
            if let Err(e) = incoming.retry() {
                e.into_incoming().ignore();
            }
        }
        Decision::Ignore => incoming.ignore(),
        Decision::Refuse => incoming.refuse(),
        Decision::Accept => unreachable!("accepted attempts are not turned away"),
    }
}

/// Logs a failed handshake (rate-limited: failures are unauthenticated noise) and counts it.
fn handshake_failed(ctx: &Context, noise: &RateLimitedLog, reason: &'static str, error: &dyn std::fmt::Display) {
    ctx.metrics.refuse("ingress", reason);
    if let Verdict::Log { suppressed } = noise.record(Instant::now(), reason) {
        tracing::warn!(error = %error, reason, more_since_last_line = %suppressed, "peer handshake failed");
    }
}

async fn connection(
    incoming: Incoming,
    slot: Slot,
    ctx: Arc<Context>,
    tracker: TaskTracker,
    noise: Arc<RateLimitedLog>,
) {
    let connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => return handshake_failed(&ctx, &noise, "handshake_failed", &e),
    };
    let conn = match tokio::time::timeout(ctx.limits.handshake_timeout, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return handshake_failed(&ctx, &noise, "handshake_failed", &e),
        Err(_) => {
            let after = format!("no complete handshake within {:?}", ctx.limits.handshake_timeout);
            return handshake_failed(&ctx, &noise, "handshake_timeout", &after);
        }
    };
    // Authenticated: no longer a handshake in progress.
    drop(slot);
    // The verifier already required a gateway SPIFFE ID; this reads which cluster it names.
    let Some((peer, peer_domain)) = peer_gateway(&conn) else {
        conn.close(codes::UNAUTHENTICATED, b"certificate names no gateway");
        return;
    };
    let peer_domain: Arc<str> = peer_domain.into();
    tracing::info!(%peer, "peer connected");
    loop {
        let (send, recv) = tokio::select! {
            _ = ctx.force_close.cancelled() => {
                conn.close(codes::SHUTDOWN, b"shutting down");
                break;
            }
            s = conn.accept_bi() => match s {
                Ok(s) => s,
                Err(e) => {
                    tracing::info!(%peer, reason = %e, "peer connection closed");
                    break;
                }
            },
        };
        let (send, recv) = (TunnelSend::Quic(send), TunnelRecv::Quic(recv));
        let span = tracing::info_span!("ingress", %peer, stream = %send.id(), transport = "quic");
        tracker.spawn(stream(send, recv, peer.clone(), peer_domain.clone(), ctx.clone()).instrument(span));
    }
}

/// Reads and decodes a stream header of at most `max` body bytes (either transport).
pub async fn read_header(recv: &mut TunnelRecv, max: usize) -> Result<OpenRequest, String> {
    let mut prefix = [0u8; REQUEST_PREFIX_LEN];
    recv.read_exact(&mut prefix).await.map_err(|e| e.to_string())?;
    let len = OpenRequest::body_len(prefix, max).map_err(|e| e.to_string())?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.map_err(|e| e.to_string())?;
    OpenRequest::decode_body(&body).map_err(|e| e.to_string())
}

async fn respond(send: &mut TunnelSend, status: Status, reason: &str) -> bool {
    let mut b = BytesMut::with_capacity(3 + reason.len());
    OpenResponse { status, reason: reason.to_owned() }.encode(&mut b);
    send.write_chunk(b.freeze()).await.is_ok()
}

/// What an ingress stream is admitted to.
#[derive(Debug, PartialEq, Eq)]
pub enum Admitted<'c> {
    /// A probe, answered by the gateway itself.
    Probe,
    /// A service's local endpoints.
    Deliver(&'c [SocketAddr]),
}

/// Why an ingress stream is refused: the status the dialler gets, and the reason it reads.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: Status,
    pub reason: String,
}

/// Decides one ingress stream, whichever transport carries it: draining, the claimed source
/// against the certificate, the catalog, local endpoints and the service's policy. Pure.
pub fn admit<'c>(
    req: &OpenRequest,
    (peer, peer_domain): (&ClusterId, &str),
    draining: bool,
    catalog: &'c Catalog,
    local: &ClusterId,
    default: DefaultAction,
) -> Result<Admitted<'c>, Refusal> {
    let refuse = |status, reason| Err(Refusal { status, reason });
    if draining {
        return refuse(Status::Overloaded, "gateway is draining".into());
    }
    if req.source != *peer {
        return refuse(
            Status::Denied,
            format!("stream claims source cluster {} but the certificate is {peer}'s", req.source),
        );
    }
    if req.probe {
        return Ok(Admitted::Probe);
    }
    let Some(svc) = catalog.services.get(&req.service) else {
        return refuse(Status::NoRoute, format!("service {} unknown in {local}", req.service));
    };
    let Some(endpoints) = catalog.local_endpoints(&req.service, req.port) else {
        return refuse(Status::NoRoute, format!("{}:{} has no endpoints in {local}", req.service, req.port));
    };
    let verdict = svc.authorize(peer, peer_domain, default);
    if !verdict.allowed {
        return refuse(
            Status::Denied,
            format!("{peer} (spiffe://{peer_domain}) may not reach {}: {}", req.service, verdict.rule),
        );
    }
    Ok(Admitted::Deliver(endpoints))
}

async fn refuse(
    mut send: TunnelSend,
    mut recv: TunnelRecv,
    ctx: &Context,
    r: Refusal,
    trace: ConnTrace,
    traceparent: &str,
) {
    let Refusal { status, reason } = r;
    tracing::info!(status = status.as_str(), %reason, traceparent, "refused stream");
    let error = Some(reason.as_str());
    trace.finish(Outcome { cluster: None, attempts: 1, bytes_up: 0, bytes_down: 0, result: status.as_str(), error });
    ctx.metrics.open("ingress", status.as_str(), send.transport().as_str());
    respond(&mut send, status, &reason).await;
    send.finish();
    recv.stop(codes::CANCELLED);
}

/// Serves one ingress stream from `peer` (QUIC or TCP): reads its header, admits it, connects
/// to a local endpoint and relays.
pub async fn stream(
    mut send: TunnelSend,
    mut recv: TunnelRecv,
    peer: ClusterId,
    peer_domain: Arc<str>,
    ctx: Arc<Context>,
) {
    let header =
        tokio::time::timeout(ctx.limits.header_timeout, read_header(&mut recv, ctx.limits.max_stream_header)).await;
    let req = match header {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "bad stream header");
            ctx.metrics.refuse("ingress", "bad_header");
            send.reset(codes::BAD_HEADER);
            recv.stop(codes::BAD_HEADER);
            return;
        }
        Err(_) => {
            ctx.metrics.refuse("ingress", "header_timeout");
            send.reset(codes::BAD_HEADER);
            recv.stop(codes::BAD_HEADER);
            return;
        }
    };
    let transport = send.transport().as_str();
    // As received: both gateways' log lines for one connection carry the same string.
    let traceparent = req.trace.as_ref().map(|t| t.traceparent.clone()).unwrap_or_default();
    // Probes measure the path and this process, proofs check reachability: neither is a
    // client's connection, so neither is traced.
    let trace = match req.probe || req.proof {
        true => ConnTrace::none(),
        false => ctx.telemetry.connection(Side::Ingress, req.trace.as_ref(), &req.service, req.port, &peer, "tunnel"),
    };
    let catalog = ctx.catalog.load();
    let draining = ctx.draining.is_cancelled();
    // The federation can make this gateway stricter, never looser.
    let default = ctx.authorization.and(catalog.authorization_default);
    let endpoints = match admit(&req, (&peer, &peer_domain), draining, &catalog, &ctx.local, default) {
        Ok(Admitted::Probe) => {
            respond(&mut send, Status::Ok, "").await;
            send.finish();
            return;
        }
        Ok(Admitted::Deliver(endpoints)) => endpoints,
        Err(r) => return refuse(send, recv, &ctx, r, trace, &traceparent).await,
    };
    let Ok(_permit) = ctx.ingress_slots.clone().try_acquire_owned() else {
        let r = Refusal { status: Status::Overloaded, reason: "ingress stream limit reached".into() };
        return refuse(send, recv, &ctx, r, trace, &traceparent).await;
    };
    let start = Instant::now();
    let upstream = match ctx.delivery.connect(endpoints, ctx.limits.open_timeout).await {
        Ok((s, _)) => s,
        Err(e) => {
            let r = Refusal { status: Status::UpstreamUnreachable, reason: e.to_string() };
            return refuse(send, recv, &ctx, r, trace, &traceparent).await;
        }
    };
    if req.proof {
        // Proven: an endpoint took a connection. It is closed at once, unused.
        drop(upstream);
        respond(&mut send, Status::Ok, "").await;
        send.finish();
        recv.stop(codes::CANCELLED);
        tracing::debug!(source = %peer, service = %req.service, port = req.port, "reachability proof answered");
        return;
    }
    if !respond(&mut send, Status::Ok, "").await {
        return;
    }
    ctx.metrics.open("ingress", "ok", transport);
    let active = ctx.metrics.active_connections.get_or_create(&ListenerLabels { listener: "ingress" }).clone();
    active.inc();
    let r = splice::tcp_stream(upstream, send, recv, &ctx.relay_budget, &ctx.force_close).await;
    active.dec();
    ctx.metrics.relayed("ingress", r.stream_to_tcp, r.tcp_to_stream);
    let result = if r.reset { "reset" } else { "ok" };
    trace.finish(Outcome {
        cluster: Some(&ctx.local),
        attempts: 1,
        bytes_up: r.stream_to_tcp,
        bytes_down: r.tcp_to_stream,
        result,
        error: r.reset.then_some("connection reset"),
    });
    tracing::info!(
        source = %peer,
        service = %req.service,
        port = req.port,
        transport,
        bytes_in = r.stream_to_tcp,
        bytes_out = r.tcp_to_stream,
        result,
        duration_ms = start.elapsed().as_millis() as u64,
        %traceparent,
        "ingress stream closed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn catalog(local: &str) -> Catalog {
        let text = format!(
            "[gateway]\ncluster = \"{local}\"\ncloud = \"other\"\nregion = \"r\"\ntrust_domain = \"t.test\"\n\
             [tls]\ncert = \"c\"\nkey = \"k\"\ntrust_bundle = \"b\"\n\
             [[services]]\nnamespace = \"prod\"\nname = \"web\"\nclusters = [\"gcp-1\"]\nallow = [\"aws-1\"]\n\
             [[services.ports]]\nport = 80\nprotocol = \"http\"\nendpoints = [\"10.0.0.1:80\"]\n\
             [[services]]\nnamespace = \"prod\"\nname = \"empty\"\nclusters = [\"gcp-1\"]\n\
             [[services.ports]]\nport = 80\nprotocol = \"http\"\nendpoints = []\n\
             [[services]]\nnamespace = \"prod\"\nname = \"open\"\nclusters = [\"gcp-1\"]\n\
             [[services.ports]]\nport = 80\nprotocol = \"http\"\nendpoints = [\"10.0.0.2:80\"]\n"
        );
        Catalog::from_config(&Config::parse(&text).unwrap(), "v".into())
    }

    fn id(s: &str) -> ClusterId {
        ClusterId::new(s).unwrap()
    }

    fn req(service: &str, port: u16, source: &str) -> OpenRequest {
        OpenRequest {
            service: service.parse().unwrap(),
            port,
            source: id(source),
            trace: None,
            probe: false,
            proof: false,
        }
    }

    #[test]
    fn admission_is_one_decision_for_both_transports() {
        let c = catalog("gcp-1");
        let (aws, gcp) = (id("aws-1"), id("gcp-1"));
        let eps: &[SocketAddr] = &["10.0.0.1:80".parse().unwrap()];
        assert_eq!(
            admit(&req("prod/web", 80, "aws-1"), (&aws, "t.test"), false, &c, &gcp, DefaultAction::Allow),
            Ok(Admitted::Deliver(eps))
        );
        assert_eq!(
            admit(&OpenRequest::probe(aws.clone()), (&aws, "t.test"), false, &c, &gcp, DefaultAction::Allow),
            Ok(Admitted::Probe)
        );
        let status = |r: Result<Admitted<'_>, Refusal>| r.map_err(|r| r.status).err();
        assert_eq!(
            status(admit(&req("prod/web", 80, "aws-1"), (&aws, "t.test"), true, &c, &gcp, DefaultAction::Allow)),
            Some(Status::Overloaded)
        );
        // The certificate, not the header, says who is asking; probes included.
        assert_eq!(
            status(admit(&req("prod/web", 80, "azure-1"), (&aws, "t.test"), false, &c, &gcp, DefaultAction::Allow)),
            Some(Status::Denied)
        );
        assert_eq!(
            status(admit(&OpenRequest::probe(id("azure-1")), (&aws, "t.test"), false, &c, &gcp, DefaultAction::Allow)),
            Some(Status::Denied)
        );
        assert_eq!(
            status(admit(&req("prod/nope", 80, "aws-1"), (&aws, "t.test"), false, &c, &gcp, DefaultAction::Allow)),
            Some(Status::NoRoute)
        );
        assert_eq!(
            status(admit(&req("prod/web", 81, "aws-1"), (&aws, "t.test"), false, &c, &gcp, DefaultAction::Allow)),
            Some(Status::NoRoute)
        );
        assert_eq!(
            status(admit(&req("prod/empty", 80, "aws-1"), (&aws, "t.test"), false, &c, &gcp, DefaultAction::Allow)),
            Some(Status::NoRoute)
        );
        let azure = id("azure-1");
        let r = admit(&req("prod/web", 80, "azure-1"), (&azure, "t.test"), false, &c, &gcp, DefaultAction::Allow)
            .unwrap_err();
        assert_eq!(r.status, Status::Denied);
        assert_eq!(r.reason, "azure-1 (spiffe://t.test) may not reach prod/web: allow list (no entry matches)");
    }

    #[test]
    fn default_deny_admits_only_what_an_allow_list_names() {
        let c = catalog("gcp-1");
        let (aws, gcp) = (id("aws-1"), id("gcp-1"));
        let deny = DefaultAction::Deny;
        // prod/web names aws-1; prod/open names nobody, so the default decides.
        assert!(admit(&req("prod/web", 80, "aws-1"), (&aws, "t.test"), false, &c, &gcp, deny).is_ok());
        let r = admit(&req("prod/open", 80, "aws-1"), (&aws, "t.test"), false, &c, &gcp, deny).unwrap_err();
        assert_eq!(
            (r.status, r.reason.as_str()),
            (Status::Denied, "aws-1 (spiffe://t.test) may not reach prod/open: default deny")
        );
        assert!(admit(&req("prod/open", 80, "aws-1"), (&aws, "t.test"), false, &c, &gcp, DefaultAction::Allow).is_ok());
        // Probes are not service traffic: a default deny does not take paths down.
        assert!(admit(&OpenRequest::probe(aws.clone()), (&aws, "t.test"), false, &c, &gcp, deny).is_ok());
    }
}
