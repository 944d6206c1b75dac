//! A local stand-in for the GKE Hub v1 API (no emulator exists): `GET
//! /v1/projects/{project}/locations/{location}/memberships` with `pageSize`/`pageToken` paging
//! and the documented `Membership` JSON, bearer-token checks and injected failures.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

/// What the fake serves and how it misbehaves.
#[derive(Default)]
struct Hub {
    /// Full membership resources, in listing order.
    members: Vec<Value>,
    /// Accepted bearer token; `None` accepts any request.
    token: Option<String>,
    /// Answer the next requests with this status and a Google error body.
    fail: Vec<u16>,
    /// Answer the next request with a body that is not JSON.
    malformed: bool,
    requests: usize,
}

/// The fake GKE Hub server.
pub struct FakeHub {
    pub addr: SocketAddr,
    state: Arc<Mutex<Hub>>,
    _task: tokio::task::JoinHandle<()>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    page_size: Option<usize>,
    page_token: Option<String>,
}

/// A membership as GKE Hub returns it: `projects/{p}/locations/{l}/memberships/{id}` for a GKE
/// cluster in `cluster_location`.
pub fn membership(project: &str, location: &str, id: &str, cluster_location: &str) -> Value {
    json!({
        "name": format!("projects/{project}/locations/{location}/memberships/{id}"),
        "endpoint": {
            "gkeCluster": {
                "resourceLink": format!("//container.googleapis.com/projects/{project}/locations/{cluster_location}/clusters/{id}")
            }
        },
        "state": { "code": "READY" },
        "createTime": "2026-01-01T00:00:00Z",
        "updateTime": "2026-01-01T00:00:00Z",
        "uniqueId": format!("uid-{id}"),
        "authority": { "issuer": format!("https://container.googleapis.com/v1/projects/{project}/locations/{cluster_location}/clusters/{id}") }
    })
}

fn google_error(status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reason = match status {
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    (code, axum::Json(json!({"error": {"code": status, "message": message, "status": reason}}))).into_response()
}

async fn list(
    State(state): State<Arc<Mutex<Hub>>>,
    Path((project, location)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    let mut hub = state.lock().unwrap_or_else(|e| e.into_inner());
    hub.requests += 1;
    if let Some(want) = &hub.token {
        let got = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        if got != format!("Bearer {want}") {
            return google_error(401, "Request had invalid authentication credentials.");
        }
    }
    if !hub.fail.is_empty() {
        let status = hub.fail.remove(0);
        return google_error(status, "injected failure");
    }
    if std::mem::take(&mut hub.malformed) {
        return (StatusCode::OK, [("content-type", "application/json")], "<html>not json</html>").into_response();
    }
    let prefix = format!("projects/{project}/locations/");
    let matching: Vec<&Value> = hub
        .members
        .iter()
        .filter(|m| {
            let name = m["name"].as_str().unwrap_or("");
            name.starts_with(&prefix) && (location == "-" || name.starts_with(&format!("{prefix}{location}/")))
        })
        .collect();
    let start: usize = q.page_token.as_deref().and_then(|t| t.parse().ok()).unwrap_or(0);
    let size = q.page_size.filter(|s| *s > 0).unwrap_or(100);
    let page: Vec<&Value> = matching.iter().skip(start).take(size).copied().collect();
    let mut body = json!({ "resources": page });
    if start + size < matching.len() {
        body["nextPageToken"] = json!((start + size).to_string());
    }
    axum::Json(body).into_response()
}

impl FakeHub {
    /// Starts on 127.0.0.1:0.
    pub async fn start() -> std::io::Result<FakeHub> {
        let state = Arc::new(Mutex::new(Hub::default()));
        let app = Router::new()
            .route("/v1/projects/{project}/locations/{location}/memberships", get(list))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeHub { addr, state, _task: task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn with<R>(&self, f: impl FnOnce(&mut Hub) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replaces the memberships.
    pub fn set_members(&self, members: Vec<Value>) {
        self.with(|h| h.members = members);
    }

    /// Requires `Authorization: Bearer {token}` (`None`: no check).
    pub fn set_token(&self, token: Option<&str>) {
        self.with(|h| h.token = token.map(str::to_owned));
    }

    /// The next requests get these HTTP statuses with Google error bodies.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.with(|h| h.fail.extend_from_slice(statuses));
    }

    /// Drops injected failures not yet served.
    pub fn clear_failures(&self) {
        self.with(|h| h.fail.clear());
    }

    /// The next request gets a body that is not JSON.
    pub fn malformed_next(&self) {
        self.with(|h| h.malformed = true);
    }

    /// Requests served so far.
    pub fn requests(&self) -> usize {
        self.with(|h| h.requests)
    }
}
