//! The API's one error shape: every failure, from a bad query to a store outage, answers
//! `{"error": "...", "field": "..."}` so that clients need a single error path.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, and where possible what to do about it.
    #[schema(example = "weights.aws-1: 150 is out of range 0..=100")]
    pub error: String,
    /// The offending input (a query parameter, a path segment or a JSON path such as
    /// `weights.aws-1` or `failover[2]`), when one input is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "weights.aws-1")]
    pub field: Option<String>,
}

/// An error a handler returns; renders as [`ErrorBody`] with its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status to answer with.
    pub status: StatusCode,
    /// The body to answer with.
    pub body: ErrorBody,
    /// Set on 401s so that clients learn which scheme to use.
    bearer_challenge: bool,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>, field: Option<String>) -> ApiError {
        ApiError { status, body: ErrorBody { error: error.into(), field }, bearer_challenge: false }
    }

    /// 400 blaming one input.
    pub fn bad_field(field: impl Into<String>, error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error, Some(field.into()))
    }

    /// 400 that no single input is to blame for (e.g. JSON that does not parse at all).
    pub fn bad_request(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error, None)
    }

    /// 401 with a `WWW-Authenticate: Bearer` challenge.
    pub fn unauthorized(error: impl Into<String>) -> ApiError {
        ApiError { bearer_challenge: true, ..ApiError::new(StatusCode::UNAUTHORIZED, error, None) }
    }

    /// 404.
    pub fn not_found(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, error, None)
    }

    /// 500 for failures that are the federator's, not the client's (store I/O, encoding).
    pub fn internal(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error, None)
    }

    /// Any other status.
    pub fn status(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError::new(status, error, None)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body)).into_response();
        if self.bearer_challenge {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
