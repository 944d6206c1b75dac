//! The federator's REST API (axum): catalog, gateways, latency, sources, events (with SSE),
//! routing policies, health, metrics, and an OpenAPI 3 document generated from the handlers'
//! `#[utoipa::path]` annotations and the DTOs' `ToSchema` derives. Reference: docs/api.md.
//!
//! Reads are open; policy writes need `Authorization: Bearer <token>`. Every error is JSON
//! (`{"error": ..., "field": ...}`), see [`error::ErrorBody`].

pub mod dto;
pub mod error;
mod events;
pub mod federation;
mod handlers;
pub mod policy;
pub mod routes;
pub mod sources;
pub mod view;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use crate::state::State as FederatorState;

use error::{ApiError, ErrorBody};

/// What every handler shares.
#[derive(Clone)]
struct Ctx {
    state: Arc<FederatorState>,
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
    /// What authorizes writes (re-read when its file changes).
    token: Arc<policy::WriteToken>,
    /// The federation's trust domain: route previews take every gateway to be of it.
    trust_domain: Arc<str>,
    /// Serializes policy writes so the store and the in-memory policies change in one order.
    policy_writes: Arc<tokio::sync::Mutex<()>>,
}

/// The API router: `/api/v1/...`, `/healthz`, `/readyz` and `/metrics`. `ready` decides
/// `/readyz`; `token` (from `api.token_file`) authorizes writes, and with `None` (or an empty
/// token) writes are disabled. The router has no fallback of its own outside `/api/v1`, so it
/// can be merged with the dashboard's.
pub fn router(
    state: Arc<FederatorState>,
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
    token: policy::WriteToken,
    trust_domain: &str,
) -> Router {
    let ctx = Ctx {
        state,
        registry,
        ready,
        token: Arc::new(token),
        trust_domain: Arc::from(trust_domain),
        policy_writes: Arc::default(),
    };
    let v1 = Router::new()
        .route("/openapi.json", get(openapi_json))
        .route("/clusters", get(handlers::list_clusters))
        .route("/gateways", get(handlers::list_gateways))
        .route("/services", get(handlers::list_services))
        .route("/services/{namespace}/{name}", get(handlers::get_service))
        .route("/latency", get(handlers::get_latency))
        .route("/traffic", get(handlers::get_traffic))
        .route("/proofs", get(handlers::get_proofs))
        .route("/whatif", get(handlers::get_whatif))
        .route("/sources", get(handlers::list_sources))
        .route("/sources/{id}/confirm-removal", axum::routing::post(sources::confirm_removal))
        .route("/federators", get(federation::list_federators))
        .route("/status", get(federation::get_status))
        .route("/events", get(events::list_events))
        .route("/events/stream", get(events::stream_events))
        .route("/policies", get(handlers::list_policies))
        .route(
            "/policies/{namespace}/{name}",
            get(handlers::get_policy)
                .put(handlers::put_policy)
                .delete(handlers::delete_policy)
                .layer(axum::extract::DefaultBodyLimit::max(policy::MAX_BODY)),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .nest("/api/v1", v1)
        // The dashboard at `/` and `/dashboard/*`: static pages that read this API.
        .merge(crate::dashboard::router())
        .with_state(ctx)
}

/// The OpenAPI document, assembled by utoipa from the handler annotations at compile time.
#[derive(OpenApi)]
#[openapi(
    info(title = "Skybridge federator API", description = "Catalog, gateways, latency, events and routing policies. See docs/api.md."),
    paths(
        handlers::list_clusters,
        handlers::list_gateways,
        handlers::list_services,
        handlers::get_service,
        handlers::get_latency,
        handlers::get_traffic,
        handlers::get_proofs,
        handlers::get_whatif,
        handlers::list_sources,
        sources::confirm_removal,
        federation::list_federators,
        federation::get_status,
        events::list_events,
        events::stream_events,
        handlers::list_policies,
        handlers::get_policy,
        handlers::put_policy,
        handlers::delete_policy,
        healthz,
        readyz,
        metrics,
        openapi_json,
    ),
    components(schemas(ErrorBody, dto::LaggedDto)),
    modifiers(&BearerAuth),
    tags(
        (name = "catalog", description = "The merged global catalog and its sources"),
        (name = "gateways", description = "Gateway replicas, the latency they measure and where they route"),
        (name = "events", description = "The event log and its live stream"),
        (name = "policies", description = "Per-service routing policies (writes need a bearer token)"),
        (name = "ops", description = "Health, readiness, metrics and this document"),
    ),
)]
pub struct ApiDoc;

/// Declares the `bearer` scheme that the write operations' `security(("bearer" = []))` names.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

static OPENAPI_JSON: LazyLock<String> =
    LazyLock::new(|| ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serializes"));

/// This document.
#[utoipa::path(
    get, path = "/api/v1/openapi.json", tag = "ops",
    responses((status = 200, description = "The OpenAPI 3 document of this API", content_type = "application/json", body = Object)),
)]
async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON.as_str()).into_response()
}

/// Liveness: the process serves HTTP.
#[utoipa::path(
    get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "Alive", content_type = "text/plain", body = String, example = "ok")),
)]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the federator has loaded its store and is serving.
#[utoipa::path(
    get, path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "Ready", content_type = "text/plain", body = String, example = "ok"),
        (status = 503, description = "Not ready yet (or shutting down)", body = ErrorBody),
    ),
)]
async fn readyz(State(ctx): State<Ctx>) -> Result<&'static str, ApiError> {
    if ctx.ready.load(Ordering::Acquire) {
        Ok("ok")
    } else {
        Err(ApiError::status(StatusCode::SERVICE_UNAVAILABLE, "not ready"))
    }
}

/// Prometheus metrics.
#[utoipa::path(
    get, path = "/metrics", tag = "ops",
    responses(
        (status = 200, description = "Metrics in the OpenMetrics text format", content_type = "application/openmetrics-text", body = String),
        (status = 500, description = "Encoding failed", body = ErrorBody),
    ),
)]
async fn metrics(State(ctx): State<Ctx>) -> Result<Response, ApiError> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &ctx.registry)
        .map_err(|e| ApiError::internal(format!("encoding metrics: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response())
}

// Both fallbacks serve only the nested `/api/v1` router, whose `Uri` has the prefix stripped.
async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {method} /api/v1{}; see /api/v1/openapi.json", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::status(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on /api/v1{}", uri.path()))
}
