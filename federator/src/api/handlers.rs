//! Thin HTTP handlers for the catalog and policy endpoints: extract, call the pure functions in
//! `view` and `policy`, map failures to [`ApiError`].

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;

use skybridge_api::model::ServiceKey;

use crate::policies::Origin;
use crate::sources::now_millis;
use crate::store::Store;

use super::Ctx;
use super::dto::{
    ClustersResponse, GatewaysResponse, LatencyResponse, ProofsResponse, ServiceDetail, ServicesResponse,
    SourcesResponse, WhatIfResponse,
};
use super::error::{ApiError, ErrorBody};
use super::policy::{self, PoliciesResponse, PolicyDto, PolicyResponse, Writer};
use super::routes::{self, Network, RouteFilter, WhatIfQuery};
use super::view::{self, ServiceFilter};

/// Raw query pairs; typed parsing happens in `view` so that errors name the parameter.
pub(super) type RawPairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

pub(super) fn pairs(q: RawPairs) -> Result<Vec<(String, String)>, ApiError> {
    q.map(|Query(p)| p).map_err(|e| ApiError::bad_request(format!("unreadable query string: {}", e.body_text())))
}

/// Validates `{namespace}/{name}` path segments as RFC 1123 labels.
fn key_from_path(p: Result<Path<(String, String)>, PathRejection>) -> Result<ServiceKey, ApiError> {
    let Path((namespace, name)) =
        p.map_err(|e| ApiError::bad_request(format!("unreadable path: {}", e.body_text())))?;
    view::service_key(&namespace, &name)
}

/// Clusters of the catalog.
#[utoipa::path(
    get, path = "/api/v1/clusters", tag = "catalog",
    responses((status = 200, description = "The catalog's clusters with their gateways' connection counts", body = ClustersResponse)),
)]
pub(super) async fn list_clusters(State(ctx): State<Ctx>) -> Json<ClustersResponse> {
    Json(view::clusters(&ctx.state.catalog(), &ctx.state.gateways()))
}

/// Gateway replicas and their control-stream state.
#[utoipa::path(
    get, path = "/api/v1/gateways", tag = "gateways",
    responses((status = 200, description = "Every gateway replica known, connected or not", body = GatewaysResponse)),
)]
pub(super) async fn list_gateways(State(ctx): State<Ctx>) -> Json<GatewaysResponse> {
    Json(view::gateways(ctx.state.gateways()))
}

/// Services of the catalog, optionally filtered.
#[utoipa::path(
    get, path = "/api/v1/services", tag = "catalog",
    params(ServiceFilter),
    responses(
        (status = 200, description = "Services matching every given filter", body = ServicesResponse),
        (status = 400, description = "Bad or unknown query parameter", body = ErrorBody),
    ),
)]
pub(super) async fn list_services(State(ctx): State<Ctx>, q: RawPairs) -> Result<Json<ServicesResponse>, ApiError> {
    let filter = ServiceFilter::from_query(&pairs(q)?)?;
    Ok(Json(view::services(&ctx.state.catalog(), &filter)))
}

/// One service in detail.
#[utoipa::path(
    get, path = "/api/v1/services/{namespace}/{name}", tag = "catalog",
    params(
        ("namespace" = String, Path, description = "Service namespace (RFC 1123 label)"),
        ("name" = String, Path, description = "Service name (RFC 1123 label)"),
    ),
    responses(
        (status = 200, description = "The service with per-cluster endpoints, provenance, conflicts and policy", body = ServiceDetail),
        (status = 400, description = "Namespace or name is not an RFC 1123 label", body = ErrorBody),
        (status = 404, description = "The catalog has no such service", body = ErrorBody),
    ),
)]
pub(super) async fn get_service(
    State(ctx): State<Ctx>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<ServiceDetail>, ApiError> {
    let key = key_from_path(p)?;
    let policy = ctx.state.policies().remove(&key);
    let synced = ctx
        .state
        .sources()
        .into_iter()
        .filter(|(_, s)| s.stale_since.is_none())
        .filter_map(|(id, s)| Some((id, s.last_success?)))
        .collect();
    let proofs = ctx.state.proofs().into_iter().filter(|p| p.service == key.to_string()).collect();
    view::service_detail(&ctx.state.catalog(), &key, policy.as_ref(), &synced, now_millis())
        .map(|d| Json(ServiceDetail { proofs, ..d }))
        .ok_or_else(|| ApiError::not_found(format!("no service {key} in the catalog")))
}

/// Runs a route computation on a blocking thread: 10,000 services from a few clusters take
/// long enough that they should not hold up an async worker.
async fn off_workers<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(format!("computing routes failed: {e}")))
}

/// The latency matrix and where each service's connections go.
#[utoipa::path(
    get, path = "/api/v1/latency", tag = "gateways",
    params(RouteFilter),
    responses(
        (status = 200, description = "Cluster-to-cluster RTTs as the gateways last reported them, and the routes they imply", body = LatencyResponse),
        (status = 400, description = "Bad or unknown query parameter", body = ErrorBody),
    ),
)]
pub(super) async fn get_latency(State(ctx): State<Ctx>, q: RawPairs) -> Result<Json<LatencyResponse>, ApiError> {
    let filter = RouteFilter::from_query(&pairs(q)?)?;
    let (catalog, samples, layers, gateways) =
        (ctx.state.catalog(), ctx.state.latency(), ctx.state.policy_layers(), ctx.state.gateways());
    let td = ctx.trust_domain.clone();
    off_workers(move || {
        let policies = layers.effective();
        let net = Network::new(&catalog, &gateways, &samples).in_trust_domain(&td).with_default(layers.default());
        let routes = routes::routes(&catalog, &policies, &net, &filter);
        Json(view::latency(&catalog, &samples, routes))
    })
    .await
}

/// Every service port's latest reachability proof, per source and hosting cluster.
#[utoipa::path(
    get, path = "/api/v1/proofs", tag = "gateways",
    responses((status = 200, description = "The latest proof of each (service, port, source cluster, target cluster), failing first", body = ProofsResponse)),
)]
pub(super) async fn get_proofs(State(ctx): State<Ctx>) -> Json<ProofsResponse> {
    let proofs = ctx.state.proofs();
    let failing = proofs.iter().filter(|p| !p.ok).count();
    Json(ProofsResponse { proofs, failing })
}

/// The federation's traffic per service and per path, from the gateways' reports.
#[utoipa::path(
    get, path = "/api/v1/traffic", tag = "gateways",
    responses((status = 200, description = "Totals, 1 and 5 minute rates, success ratio, p99 open time and a 15-minute history per service and per path", body = crate::traffic::TrafficResponse)),
)]
pub(super) async fn get_traffic(State(ctx): State<Ctx>) -> Json<crate::traffic::TrafficResponse> {
    Json(ctx.state.traffic(now_millis()))
}

/// What happens to routes if some clusters go down. Changes nothing.
#[utoipa::path(
    get, path = "/api/v1/whatif", tag = "gateways",
    params(WhatIfQuery),
    responses(
        (status = 200, description = "Every service's route from every remaining cluster, before and after", body = WhatIfResponse),
        (status = 400, description = "Missing, empty or unknown `down` cluster, or a bad or unknown query parameter", body = ErrorBody),
    ),
)]
pub(super) async fn get_whatif(State(ctx): State<Ctx>, q: RawPairs) -> Result<Json<WhatIfResponse>, ApiError> {
    let q = WhatIfQuery::from_query(&pairs(q)?)?;
    let (catalog, samples, layers, gateways) =
        (ctx.state.catalog(), ctx.state.latency(), ctx.state.policy_layers(), ctx.state.gateways());
    let td = ctx.trust_domain.clone();
    off_workers(move || {
        let policies = layers.effective();
        let net = Network::new(&catalog, &gateways, &samples).in_trust_domain(&td).with_default(layers.default());
        net.check_known(&q.down)?;
        Ok(Json(routes::whatif(&catalog, &policies, &net, &q.filter(), &q.down)))
    })
    .await?
}

/// Catalog source status.
#[utoipa::path(
    get, path = "/api/v1/sources", tag = "catalog",
    responses((status = 200, description = "Health of every configured catalog source", body = SourcesResponse)),
)]
pub(super) async fn list_sources(State(ctx): State<Ctx>) -> Json<SourcesResponse> {
    Json(view::sources(ctx.state.sources()))
}

fn policy_response(ctx: &Ctx, key: &ServiceKey, p: &crate::store::Policy, source: Origin) -> PolicyResponse {
    let catalog = ctx.state.catalog();
    let sources = p.allow.iter().flatten().chain(&p.deny).filter_map(skybridge_api::routing::SourceMatcher::cluster);
    let named = p.weights.keys().chain(&p.failover).chain(&p.avoid).chain(sources);
    let unknown: std::collections::BTreeSet<String> =
        named.filter(|c| !catalog.clusters.contains_key(*c)).map(ToString::to_string).collect();
    PolicyResponse {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        in_catalog: catalog.services.contains_key(key),
        unknown_clusters: unknown.into_iter().collect(),
        source,
        policy: PolicyDto::from(p),
    }
}

/// 409 for an API write to a service the policies file names: the file would win anyway.
fn not_in_file(ctx: &Ctx, key: &ServiceKey) -> Result<(), ApiError> {
    if ctx.state.policy_layers().in_file(key) {
        return Err(ApiError::status(
            StatusCode::CONFLICT,
            format!("the policy for {key} comes from the policies file ([policies] path); change it there"),
        ));
    }
    Ok(())
}

/// All routing policies.
#[utoipa::path(
    get, path = "/api/v1/policies", tag = "policies",
    responses((status = 200, description = "Every routing policy", body = PoliciesResponse)),
)]
pub(super) async fn list_policies(State(ctx): State<Ctx>) -> Json<PoliciesResponse> {
    let layers = ctx.state.policy_layers();
    let policies = layers
        .effective()
        .keys()
        .filter_map(|k| layers.get(k).map(|(p, origin)| policy_response(&ctx, k, p, origin)))
        .collect();
    Json(PoliciesResponse { authorization_default: layers.default().as_str().to_owned(), policies })
}

/// One service's routing policy.
#[utoipa::path(
    get, path = "/api/v1/policies/{namespace}/{name}", tag = "policies",
    params(
        ("namespace" = String, Path, description = "Service namespace (RFC 1123 label)"),
        ("name" = String, Path, description = "Service name (RFC 1123 label)"),
    ),
    responses(
        (status = 200, description = "The service's policy", body = PolicyResponse),
        (status = 400, description = "Namespace or name is not an RFC 1123 label", body = ErrorBody),
        (status = 404, description = "No policy is set for the service", body = ErrorBody),
    ),
)]
pub(super) async fn get_policy(
    State(ctx): State<Ctx>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<PolicyResponse>, ApiError> {
    let key = key_from_path(p)?;
    let layers = ctx.state.policy_layers();
    let (policy, origin) = layers.get(&key).ok_or_else(|| ApiError::not_found(format!("no policy for {key}")))?;
    Ok(Json(policy_response(&ctx, &key, policy, origin)))
}

/// Sets (creates or replaces) a service's routing policy.
#[utoipa::path(
    put, path = "/api/v1/policies/{namespace}/{name}", tag = "policies",
    params(
        ("namespace" = String, Path, description = "Service namespace (RFC 1123 label)"),
        ("name" = String, Path, description = "Service name (RFC 1123 label)"),
    ),
    request_body(content = PolicyDto, description = "The whole new policy; the service need not be in the catalog yet"),
    responses(
        (status = 200, description = "Stored and in effect", body = PolicyResponse),
        (status = 400, description = "Malformed JSON, unknown field, bad cluster id or weight; `field` names it", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token, or writes disabled", body = ErrorBody),
        (status = 403, description = "The client certificate is not an operator's (spiffe://<td>/admin/<name>)", body = ErrorBody),
        (status = 409, description = "The policies file sets this service's policy; change it there", body = ErrorBody),
        (status = 500, description = "The store failed; nothing changed", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn put_policy(
    // Authorization first: an unauthenticated caller learns nothing about what it sent.
    writer: Writer,
    State(ctx): State<Ctx>,
    p: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PolicyResponse>, ApiError> {
    let key = key_from_path(p)?;
    not_in_file(&ctx, &key)?;
    let body = body.map_err(|e| ApiError::status(e.status(), format!("unreadable body: {}", e.body_text())))?;
    let new = policy::parse_policy(&body)?;
    // One writer at a time, so the store and the in-memory state end in the same order.
    let _guard = ctx.policy_writes.lock().await;
    ctx.state.store().put_policy(&key, Some(&new)).await.map_err(|e| ApiError::internal(e.to_string()))?;
    // Replicas apply policies from the store's watch, in the store's order.
    if ctx.state.identity().single_node {
        ctx.state.set_policy(key.clone(), Some(new.clone()));
    }
    let shown = serde_json::to_string(&PolicyDto::from(&new)).unwrap_or_default();
    ctx.state.event("policy", format!("policy for {key} set by {writer}: {shown}")).await;
    Ok(Json(policy_response(&ctx, &key, &new, Origin::Api)))
}

/// Deletes a service's routing policy.
#[utoipa::path(
    delete, path = "/api/v1/policies/{namespace}/{name}", tag = "policies",
    params(
        ("namespace" = String, Path, description = "Service namespace (RFC 1123 label)"),
        ("name" = String, Path, description = "Service name (RFC 1123 label)"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Namespace or name is not an RFC 1123 label", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token, or writes disabled", body = ErrorBody),
        (status = 403, description = "The client certificate is not an operator's (spiffe://<td>/admin/<name>)", body = ErrorBody),
        (status = 409, description = "The policies file sets this service's policy; change it there", body = ErrorBody),
        (status = 404, description = "No policy is set for the service", body = ErrorBody),
        (status = 500, description = "The store failed; nothing changed", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn delete_policy(
    writer: Writer,
    State(ctx): State<Ctx>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let key = key_from_path(p)?;
    not_in_file(&ctx, &key)?;
    let _guard = ctx.policy_writes.lock().await;
    if ctx.state.policy_layers().api(&key).is_none() {
        return Err(ApiError::not_found(format!("no policy for {key}")));
    }
    ctx.state.store().put_policy(&key, None).await.map_err(|e| ApiError::internal(e.to_string()))?;
    if ctx.state.identity().single_node {
        ctx.state.set_policy(key.clone(), None);
    }
    ctx.state.event("policy", format!("policy for {key} deleted by {writer}")).await;
    Ok(StatusCode::NO_CONTENT)
}
