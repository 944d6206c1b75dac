//! Building a kube [`Client`] for one cluster from a base URL, an optional CA bundle and a
//! bearer-token provider. The token is asked for on every request, so a rotated token (a
//! projected service-account token, a cloud access token refreshed elsewhere) is picked up
//! without rebuilding anything.

use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{AUTHORIZATION, HeaderValue};
use http::{Request, Uri};
use kube::Client;
use kube::client::ClientBuilder;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tower::{BoxError, Layer, Service};

use super::Tuning;
use super::error::ConfigError;

/// Why no bearer token could be produced.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// The token file could not be read.
    #[error("cannot read token file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// The provider has no token (yet).
    #[error("token is empty")]
    Empty,
    /// The token holds characters that cannot go into an HTTP header.
    #[error("token contains characters not allowed in an HTTP header")]
    Invalid,
    /// A custom provider failed.
    #[error("{0}")]
    Provider(String),
}

/// Supplies the bearer token for each request to one cluster's API server. Called on every
/// request (lists and watch starts, a few per minute), so it must be cheap: a provider whose
/// tokens come from a slow source (a cloud token endpoint) refreshes them in its own task and
/// hands out the cached value, e.g. through [`SharedToken`].
pub trait TokenProvider: Send + Sync + 'static {
    /// The current token, without the `Bearer ` prefix.
    fn token(&self) -> Result<String, TokenError>;
}

/// A fixed token.
#[derive(Clone)]
pub struct StaticToken(String);

impl StaticToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        StaticToken(token.into())
    }
}

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticToken(..)")
    }
}

impl TokenProvider for StaticToken {
    fn token(&self) -> Result<String, TokenError> {
        if self.0.is_empty() { Err(TokenError::Empty) } else { Ok(self.0.clone()) }
    }
}

/// A token another task replaces when it refreshes it; clones share the value.
#[derive(Clone, Default)]
pub struct SharedToken(Arc<RwLock<String>>);

impl SharedToken {
    /// Starts with `token`.
    pub fn new(token: impl Into<String>) -> Self {
        SharedToken(Arc::new(RwLock::new(token.into())))
    }

    /// Replaces the token; the next request uses the new one.
    pub fn set(&self, token: impl Into<String>) {
        // A poisoned lock only means a writer panicked mid-assignment of a String, which
        // cannot leave it half-written; keep going with the inner value.
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = token.into();
    }
}

impl fmt::Debug for SharedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedToken(..)")
    }
}

impl TokenProvider for SharedToken {
    fn token(&self) -> Result<String, TokenError> {
        let t = self.0.read().unwrap_or_else(|p| p.into_inner()).clone();
        if t.is_empty() { Err(TokenError::Empty) } else { Ok(t) }
    }
}

/// A token read from a file on every request, such as a projected service-account token that
/// the kubelet rotates in place.
#[derive(Debug, Clone)]
pub struct TokenFile(PathBuf);

impl TokenFile {
    /// Reads tokens from `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        TokenFile(path.into())
    }
}

impl TokenProvider for TokenFile {
    fn token(&self) -> Result<String, TokenError> {
        let raw = std::fs::read_to_string(&self.0)
            .map_err(|e| TokenError::Read { path: self.0.clone(), reason: e.to_string() })?;
        let t = raw.trim();
        if t.is_empty() { Err(TokenError::Empty) } else { Ok(t.to_owned()) }
    }
}

impl<F> TokenProvider for F
where
    F: Fn() -> Result<String, TokenError> + Send + Sync + 'static,
{
    fn token(&self) -> Result<String, TokenError> {
        self()
    }
}

/// Where one cluster's API server is and how to authenticate to it.
#[derive(Clone)]
pub struct ApiServer {
    /// Base URL, e.g. `https://34.1.2.3` or `https://my-aks-dns.hcp.westeurope.azmk8s.io:443`.
    pub url: String,
    /// PEM bundle of the CA that signed the server certificate; `None` trusts the platform roots.
    pub ca_pem: Option<String>,
    /// Overrides the name checked against the server certificate (when `url` uses an IP that
    /// the certificate does not list).
    pub tls_server_name: Option<String>,
    /// Bearer-token source, asked on every request.
    pub token: Arc<dyn TokenProvider>,
}

impl fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiServer")
            .field("url", &self.url)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| ".."))
            .field("tls_server_name", &self.tls_server_name)
            .finish_non_exhaustive()
    }
}

impl ApiServer {
    /// An API server at `url` with `token`, trusting the platform roots.
    pub fn new(url: impl Into<String>, token: impl TokenProvider) -> Self {
        ApiServer { url: url.into(), ca_pem: None, tls_server_name: None, token: Arc::new(token) }
    }

    /// Trusts only the CAs in `pem` for this server.
    pub fn with_ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }
}

/// Builds the kube client: kube's own TLS stack (rustls with aws-lc-rs), our timeouts, no
/// built-in retries (the watch loops back off themselves and report what they see) and the
/// bearer token set per request.
pub(crate) fn build(api: &ApiServer, tuning: &Tuning) -> Result<Client, ConfigError> {
    let url: Uri = api
        .url
        .parse()
        .map_err(|e: http::uri::InvalidUri| ConfigError::BadUrl { url: api.url.clone(), reason: e.to_string() })?;
    if !matches!(url.scheme_str(), Some("https") | Some("http")) || url.host().is_none() {
        return Err(ConfigError::BadUrl { url: api.url.clone(), reason: "expected http(s)://host[:port]".into() });
    }
    let mut cfg = kube::Config::new(url);
    if let Some(pem) = &api.ca_pem {
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::BadCa(e.to_string()))?;
        if certs.is_empty() {
            return Err(ConfigError::BadCa("no CERTIFICATE block found".into()));
        }
        cfg.root_cert = Some(certs);
    }
    cfg.tls_server_name = api.tls_server_name.clone();
    cfg.connect_timeout = Some(tuning.connect_timeout);
    cfg.write_timeout = Some(tuning.write_timeout);
    // An idle read longer than the server-side watch timeout means a dead connection.
    cfg.read_timeout = Some(tuning.watch_timeout + WATCH_IDLE_MARGIN);
    // kube's default retry waits up to 15 times on 429/503, hiding throttling from the
    // operator; our loops back off and report instead.
    cfg.default_retry = false;
    let builder = ClientBuilder::try_from(cfg).map_err(ConfigError::Client)?;
    Ok(builder.with_layer(&BearerLayer(api.token.clone())).build())
}

/// Slack on top of the server-side watch timeout before an idle stream counts as dead.
pub(crate) const WATCH_IDLE_MARGIN: Duration = Duration::from_secs(30);

/// Sets `Authorization: Bearer <token>` from a [`TokenProvider`] on every request.
#[derive(Clone)]
struct BearerLayer(Arc<dyn TokenProvider>);

impl<S> Layer<S> for BearerLayer {
    type Service = Bearer<S>;
    fn layer(&self, inner: S) -> Bearer<S> {
        Bearer { inner, tokens: self.0.clone() }
    }
}

/// The service [`BearerLayer`] makes.
struct Bearer<S> {
    inner: S,
    tokens: Arc<dyn TokenProvider>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<B>> for Bearer<S>
where
    S: Service<Request<B>>,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let header = self.tokens.token().and_then(|t| {
            let mut v = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| TokenError::Invalid)?;
            v.set_sensitive(true);
            Ok(v)
        });
        match header {
            Ok(v) => {
                req.headers_mut().insert(AUTHORIZATION, v);
                let fut = self.inner.call(req);
                Box::pin(async move { fut.await.map_err(Into::into) })
            }
            Err(e) => Box::pin(std::future::ready(Err(Box::new(e) as BoxError))),
        }
    }
}
