//! The emulated WAN links between the demo's clusters, and the small HTTP endpoint that shows
//! them and cuts or restores one: `GET /links`, `POST /links/{a}/{b}/cut`,
//! `POST /links/{a}/{b}/restore` (clusters by id or cloud: `aws-demo` or `aws`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::topology::{CLUSTERS, cluster_index};
use super::wan::Link;

/// The link between two clusters: both one-way relays of the pair share it, so cutting it
/// cuts the path in both directions.
#[derive(Debug, Clone)]
pub struct PairLink {
    /// Indexes into [`CLUSTERS`], `a < b`.
    pub a: usize,
    pub b: usize,
    /// The configured round-trip time (each direction is delayed by half).
    pub rtt: Duration,
    pub link: Link,
}

impl PairLink {
    /// Whether this link joins `x` and `y` (either order).
    pub fn joins(&self, x: usize, y: usize) -> bool {
        (self.a, self.b) == (x.min(y), x.max(y))
    }

    fn view(&self) -> Value {
        json!({
            "a": CLUSTERS[self.a].id,
            "b": CLUSTERS[self.b].id,
            "rtt_ms": self.rtt.as_secs_f64() * 1000.0,
            "cut": self.link.is_cut(),
        })
    }
}

/// The routes, over the demo's links.
pub(super) fn router(links: Arc<[PairLink]>) -> Router {
    Router::new()
        .route("/links", get(list))
        .route("/links/{a}/{b}/cut", post(|s, p| set(s, p, true)))
        .route("/links/{a}/{b}/restore", post(|s, p| set(s, p, false)))
        .with_state(links)
}

async fn list(State(links): State<Arc<[PairLink]>>) -> Json<Value> {
    Json(json!({ "links": links.iter().map(PairLink::view).collect::<Vec<_>>() }))
}

async fn set(State(links): State<Arc<[PairLink]>>, Path((a, b)): Path<(String, String)>, cut: bool) -> Response {
    let found = cluster_index(&a).zip(cluster_index(&b)).and_then(|(x, y)| links.iter().find(|l| l.joins(x, y)));
    let Some(link) = found else {
        let known: Vec<&str> = CLUSTERS.iter().map(|c| c.id).collect();
        let msg = format!("no link between {a:?} and {b:?}; clusters are {}", known.join(", "));
        return (StatusCode::NOT_FOUND, Json(json!({ "error": msg }))).into_response();
    };
    link.link.blackhole(cut);
    tracing::info!(a = CLUSTERS[link.a].id, b = CLUSTERS[link.b].id, cut, "demo link changed");
    Json(link.view()).into_response()
}
