//! Operator actions on catalog sources: confirming a held mass removal.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Ctx;
use super::dto::HeldRemovalDto;
use super::error::{ApiError, ErrorBody};
use super::policy::Writer;
use crate::sources::now_millis;
use crate::store::AnyStore;

/// `POST /api/v1/sources/{id}/confirm-removal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConfirmedDto {
    pub source: String,
    /// What was held when the confirmation was sent; the leader applies it.
    pub held: HeldRemovalDto,
}

/// Confirms a source's held removal: the leader applies the answer at once.
#[utoipa::path(
    post, path = "/api/v1/sources/{id}/confirm-removal", tag = "catalog",
    params(("id" = String, Path, description = "Source id as configured")),
    responses(
        (status = 202, description = "Sent to the leader, which applies the held answer", body = ConfirmedDto),
        (status = 401, description = "Missing or wrong bearer token, or writes disabled", body = ErrorBody),
        (status = 403, description = "The client certificate is not an operator's (spiffe://<td>/admin/<name>)", body = ErrorBody),
        (status = 404, description = "No such source", body = ErrorBody),
        (status = 409, description = "Nothing is held for that source", body = ErrorBody),
        (status = 500, description = "The store failed, or no core runs here to take it", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn confirm_removal(
    writer: Writer,
    State(ctx): State<Ctx>,
    p: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<ConfirmedDto>), ApiError> {
    let Path(id) = p.map_err(|e| ApiError::bad_request(format!("unreadable path: {}", e.body_text())))?;
    let status = ctx.state.sources();
    let source = status.get(&id).ok_or_else(|| ApiError::not_found(format!("no source {id}")))?;
    let held = source
        .held_removal
        .clone()
        .ok_or_else(|| ApiError::status(StatusCode::CONFLICT, format!("source {id} has no held removal")))?;
    match &**ctx.state.store() {
        AnyStore::Embedded(_) => {
            if !ctx.state.confirm_removal(&id) {
                return Err(ApiError::internal("the merge core is not running; try again"));
            }
        }
        // The leader may be another replica: it learns of the confirmation from the store.
        AnyStore::Etcd(etcd) => {
            etcd.put_confirmation(&id, now_millis()).await.map_err(|e| ApiError::internal(e.to_string()))?;
        }
    }
    let msg = format!("removal of {} of {} services of source {id} confirmed by {writer}", held.removed, held.of);
    ctx.state.event("removal_confirmed", msg).await;
    let held = HeldRemovalDto { since: held.since, removed: held.removed, of: held.of, applies_at: held.applies_at };
    Ok((StatusCode::ACCEPTED, Json(ConfirmedDto { source: id, held })))
}
