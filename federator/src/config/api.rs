//! `[api]`: the REST API's bounds, write token and HTTPS.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use skybridge_api::config::duration;

use super::defaults;

/// REST API settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// File holding the bearer token for writes (policies); without it writes are refused.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Connections served at once; one more is answered 503 and closed.
    #[serde(default = "defaults::api_max_connections")]
    pub max_connections: usize,
    /// A complete request head must arrive within this (from the connection or the previous
    /// response): idle keep-alive connections and slow senders are closed.
    #[serde(default = "defaults::api_header_timeout", with = "duration")]
    pub header_timeout: Duration,
    /// A connection on which no byte moves for this long is closed (the event stream sends a
    /// keep-alive every 15 s, so this must be longer).
    #[serde(default = "defaults::api_idle_timeout", with = "duration")]
    pub idle_timeout: Duration,
    /// Serve HTTPS only, with this certificate and key; clients may then also write with an
    /// operator certificate. Without it the API is plain HTTP.
    #[serde(default)]
    pub tls: Option<ApiTls>,
}

impl Default for ApiSection {
    fn default() -> Self {
        toml::from_str("").expect("every API key has a default")
    }
}

/// `[api] tls = { cert, key }`: the API's server certificate (PEM chain, leaf first, for the
/// name clients use) and key, reloaded when they change (checked every `tls.reload_interval`).
/// Client certificates are verified against `[tls] trust_bundle`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}
