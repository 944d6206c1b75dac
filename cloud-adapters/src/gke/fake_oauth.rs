//! A local stand-in for Google's OAuth 2.0 token endpoint (`https://oauth2.googleapis.com/token`)
//! for the refresh-token grant, so that `authorized_user` credentials files run through
//! google-cloud-auth's own token fetching and caching with only `token_uri` changed.
//!
//! `POST /token` with `grant_type=refresh_token`, `client_id`, `client_secret`,
//! `refresh_token` and optional `scope`, form-encoded (as documented) or JSON (as
//! google-cloud-auth sends it; Google accepts both). Answers
//! `{"access_token","expires_in","token_type":"Bearer","scope"}`, or Google's error bodies:
//! 400 `invalid_grant` for an unknown or revoked refresh token, 401 `invalid_client` for an
//! unknown client or wrong secret, 400 `unsupported_grant_type` / `invalid_request` otherwise.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// The OAuth client and refresh token the fake accepts, and what it has issued.
struct Endpoint {
    client_id: String,
    client_secret: String,
    /// `None` once revoked.
    refresh_token: Option<String>,
    expires_in: u64,
    /// Access tokens issued so far, in order (`ya29.fake-1`, ...).
    issued: Vec<String>,
    calls: usize,
}

/// The fake token endpoint.
pub struct FakeTokenEndpoint {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<Endpoint>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTokenEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, axum::Json(json!({"error": error, "error_description": description}))).into_response()
}

/// Form or JSON body fields as strings.
fn fields(headers: &HeaderMap, body: &[u8]) -> Option<HashMap<String, String>> {
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if ct.starts_with("application/json") {
        let v: Value = serde_json::from_slice(body).ok()?;
        let obj = v.as_object()?;
        return Some(obj.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect());
    }
    if ct.starts_with("application/x-www-form-urlencoded") {
        let text = std::str::from_utf8(body).ok()?;
        // Url does the percent- and plus-decoding; the host is a placeholder.
        let url = reqwest::Url::parse(&format!("http://form.invalid/?{text}")).ok()?;
        return Some(url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect());
    }
    None
}

async fn token(State(state): State<Arc<Mutex<Endpoint>>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let mut ep = state.lock().unwrap_or_else(|e| e.into_inner());
    ep.calls += 1;
    let Some(form) = fields(&headers, &body) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Invalid request body.");
    };
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    match get("grant_type") {
        "refresh_token" => {}
        "" => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: grant_type"),
        _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "Invalid grant_type: "),
    }
    if get("client_id") != ep.client_id || get("client_secret") != ep.client_secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "The OAuth client was not found.");
    }
    if ep.refresh_token.as_deref() != Some(get("refresh_token")) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Token has been expired or revoked.");
    }
    let access_token = format!("ya29.fake-{}", ep.issued.len() + 1);
    ep.issued.push(access_token.clone());
    // Google echoes the scopes granted; a refresh without `scope` gets the original consent's.
    let scope = match form.get("scope").or_else(|| form.get("scopes")) {
        Some(s) => s.clone(),
        None => "https://www.googleapis.com/auth/cloud-platform".to_owned(),
    };
    axum::Json(json!({
        "access_token": access_token,
        "expires_in": ep.expires_in,
        "token_type": "Bearer",
        "scope": scope,
    }))
    .into_response()
}

impl FakeTokenEndpoint {
    /// The OAuth client id it accepts.
    pub const CLIENT_ID: &'static str = "764086051850-fake.apps.googleusercontent.com";
    /// That client's secret.
    pub const CLIENT_SECRET: &'static str = "d-FL95Q19q7MQmFpd7hHD0Ty";
    /// The refresh token it accepts.
    pub const REFRESH_TOKEN: &'static str = "1//fake-refresh-token";

    /// Starts on 127.0.0.1:0; tokens last an hour until [`FakeTokenEndpoint::set_expires_in`].
    pub async fn start() -> std::io::Result<FakeTokenEndpoint> {
        let state = Arc::new(Mutex::new(Endpoint {
            client_id: Self::CLIENT_ID.into(),
            client_secret: Self::CLIENT_SECRET.into(),
            refresh_token: Some(Self::REFRESH_TOKEN.into()),
            expires_in: 3599,
            issued: Vec::new(),
            calls: 0,
        }));
        let app = Router::new().route("/token", post(token)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeTokenEndpoint { addr, state, task })
    }

    /// `http://127.0.0.1:PORT/token`, for `token_uri`.
    pub fn token_uri(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// An `authorized_user` credentials file body (as `gcloud auth application-default login`
    /// writes) whose `token_uri` is this fake; `refresh_token` as given.
    pub fn authorized_user(&self, refresh_token: &str) -> Value {
        json!({
            "type": "authorized_user",
            "client_id": Self::CLIENT_ID,
            "client_secret": Self::CLIENT_SECRET,
            "refresh_token": refresh_token,
            "token_uri": self.token_uri(),
        })
    }

    fn with<R>(&self, f: impl FnOnce(&mut Endpoint) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// `expires_in` (seconds) of tokens issued from now on.
    pub fn set_expires_in(&self, secs: u64) {
        self.with(|e| e.expires_in = secs);
    }

    /// Revokes the refresh token: later refreshes get `invalid_grant`.
    pub fn revoke_refresh_token(&self) {
        self.with(|e| e.refresh_token = None);
    }

    /// Access tokens issued so far, in order.
    pub fn issued(&self) -> Vec<String> {
        self.with(|e| e.issued.clone())
    }

    /// Token requests served so far (failed ones included).
    pub fn calls(&self) -> usize {
        self.with(|e| e.calls)
    }
}
