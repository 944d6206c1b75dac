//! Admin server: `/healthz`, `/readyz`, `/metrics`, `/status`. Served by
//! [`skybridge_api::serve::serve_router`] within `[limits] admin_*` (connection cap, header and
//! idle timeouts).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde_json::json;
use skybridge_api::tls::rfc3339;

use crate::context::Context;
use crate::routing;

#[derive(Clone)]
struct AdminState {
    ctx: Arc<Context>,
    registry: Arc<Registry>,
}

/// The admin routes.
pub fn router(ctx: Arc<Context>, registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(AdminState { ctx, registry })
}

async fn readyz(State(s): State<AdminState>) -> Response {
    if s.ctx.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else if s.ctx.draining.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

async fn metrics(State(s): State<AdminState>) -> Response {
    s.ctx.metrics.relay_buffer.set(i64::try_from(s.ctx.relay_budget.used()).unwrap_or(i64::MAX));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &s.registry) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], out).into_response()
}

async fn status(State(s): State<AdminState>) -> Response {
    let ctx = &s.ctx;
    let catalog = ctx.catalog.load();
    let paths = ctx.pool.paths();
    let now = Instant::now();
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
    let peers: Vec<_> = catalog
        .peers
        .values()
        .map(|p| {
            let st = paths.get(&p.cluster).cloned().unwrap_or_default();
            let h = &st.health;
            json!({
                "cluster": p.cluster,
                "cloud": p.cloud,
                "region": p.region,
                "address": p.address,
                "state": h.state().as_str(),
                "state_for_s": h.since().map(|s| now.saturating_duration_since(s).as_secs_f64()),
                "rtt_ms": ms(h.srtt()),
                "rank_rtt_ms": ms(h.rank_rtt()),
                "quic_rtt_ms": ms(st.quic_rtt),
                "transport": ctx.pool.transport_of(&p.cluster).as_str(),
                "transport_for_s": st.transport.for_how_long(now).map(|d| d.as_secs_f64()),
                "transport_reason": st.transport.reason(),
                "quic_probe_interval_s": st.transport.probe_interval().map(|d| d.as_secs_f64()),
                "load": st.load,
                "connections": ctx.pool.live_connections(&p.cluster),
                "opens_ok": h.opens_ok,
                "opens_failed": h.opens_failed,
                "probes_ok": h.probes_ok,
                "probes_missed": h.probes_missed,
                "last_error": h.last_error,
            })
        })
        .collect();
    let views = ctx.pool.views();
    let choice = ctx.routing.choice();
    let mut services: Vec<_> = catalog.services.values().collect();
    services.sort_by(|a, b| a.key.cmp(&b.key));
    let services: Vec<_> = services
        .into_iter()
        .map(|svc| {
            let route = routing::current_route(&catalog, svc, &views, &choice);
            json!({
                "name": svc.key.fqdn(),
                "preferred": route.preferred(),
                "shares": route.shares.iter().map(|(c, s)| json!({"cluster": c, "share": s})).collect::<Vec<_>>(),
                "policy": catalog.policies.get(&svc.key).map(|p| json!({"weights": p.weights, "failover": p.failover, "avoid": p.avoid})),
                "clusters": svc.clusters,
                "allow": svc.allow,
                "deny": svc.deny,
                "ports": svc.ports.iter().map(|p| json!({
                    "port": p.port,
                    "protocol": p.protocol,
                    "local_endpoints": p.local_endpoints,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let now_ms = crate::federation::cache::unix_ms(SystemTime::now());
    let federation = ctx.federation.lock().ok().filter(|f| !f.state.is_empty()).map(|f| f.clone());
    let cert = ctx.certs.current();
    let expiry = ctx.certs.expiry(SystemTime::now());
    let distributed = ctx.certs.distributed();
    let proofs: Vec<_> = crate::tunnel::proof::snapshot(ctx)
        .into_iter()
        .map(|((service, port, cluster), r)| {
            json!({
                "service": service.to_string(), "port": port, "cluster": cluster,
                "ok": r.ok, "at_ms": r.at_ms, "error": r.error,
                "took_ms": r.took.map(|d| d.as_secs_f64() * 1000.0),
            })
        })
        .collect();
    Json(json!({
        "cluster": ctx.local,
        "trust_domain": ctx.trust_domain,
        "ready": ctx.is_ready(),
        "draining": ctx.draining.is_cancelled(),
        "config_version": catalog.version,
        // What a source no allow or deny list names meets: the stricter of ours and the federation's.
        "authorization": {
            "default": ctx.authorization.and(catalog.authorization_default).as_str(),
            "gateway": ctx.authorization.as_str(),
            "federation": catalog.authorization_default.as_str(),
        },
        // The latest reachability proof of each remote service port, per hosting cluster.
        "proofs": proofs,
        // Trust domains the federator distributes: those taken (within `[federator]
        // distributed_trust`) and those refused, with why.
        "distributed_trust": {
            "taken": distributed.domains.iter().map(|d| json!({
                "trust_domain": d.trust_domain,
                "clusters": d.clusters.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "refused": distributed.refused.iter().map(|(td, why)| json!({"trust_domain": td, "reason": why})).collect::<Vec<_>>(),
        },
        // `static` without a federator; else `none (…)`, `cached (version N, age 3m12s)` or
        // `federator (version N)`, with the details under `federator`.
        "catalog": federation.as_ref().map_or_else(|| "static".to_owned(), |f| f.catalog_summary(now_ms)),
        "federator": federation.map(|f| f.view(now_ms)),
        "certificate_expires_in_seconds": expiry.remaining.as_secs(),
        "certificate": {
            "not_before": rfc3339(cert.not_before),
            "not_after": rfc3339(cert.not_after),
            "expires_in_seconds": expiry.remaining.as_secs(),
            // Inside `tls.expiry_warning` of expiry: renew now.
            "expiring_soon": expiry.expiring,
            "warning_window_seconds": ctx.certs.expiry_warning().as_secs(),
        },
        "peers": peers,
        "services": services,
    }))
    .into_response()
}
