//! A fake Kubernetes API server for tests (feature `testing`): an HTTP/1.1 server on
//! 127.0.0.1 that serves the documented list/watch paths and JSON bodies for Services,
//! EndpointSlices and ServiceExport CRDs, so that the production client code runs unchanged
//! against it. No Kubernetes emulator exists that fits in a unit test; this serves the parts
//! of the API concepts that a watcher depends on:
//!
//! - `GET /api/v1/{plural}`, `/apis/{group}/{version}/{plural}` and their namespaced forms,
//!   lists as `<Kind>List` with `metadata.resourceVersion`, consistent paging with `limit`,
//!   `continue` and `remainingItemCount`, and the object itself under `.../{name}`;
//! - `?watch=true&resourceVersion=N`: newline-delimited `ADDED|MODIFIED|DELETED|BOOKMARK`
//!   events after N, live events after that, `timeoutSeconds`, `allowWatchBookmarks`;
//! - `410 Gone` (`reason: Expired`) for a watch or continue token older than the retained
//!   history (tests compact it), as an ERROR event or, optionally, as an HTTP status;
//! - `401` without the right bearer token, `403` for forbidden types, `404` for types not
//!   installed, and injected 429/5xx or malformed bodies.
//!
//! Not served: discovery documents, writes, selectors (rejected with 400), protobuf.

mod http;
pub mod objects;
mod state;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::net::TcpListener;

pub use state::{Cluster, FakeError, Fault, Injection, RecordedRequest, ResourceDef};

use crate::k8s::ExportApi;

/// Options for [`FakeApiServer::start_with`].
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// Required bearer token; `None` accepts anything.
    pub token: Option<String>,
    /// ServiceExport groups installed as CRDs.
    pub export_apis: Vec<ExportApi>,
    /// Serve HTTPS with a fresh CA (see [`FakeApiServer::ca_pem`]) instead of plain HTTP.
    pub tls: bool,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            token: Some(FakeApiServer::DEFAULT_TOKEN.into()),
            export_apis: ExportApi::ALL.to_vec(),
            tls: false,
        }
    }
}

/// The running fake; stops when dropped.
pub struct FakeApiServer {
    addr: SocketAddr,
    ca_pem: Option<String>,
    state: http::Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApiServer {
    /// The token [`FakeApiServer::start`] requires.
    pub const DEFAULT_TOKEN: &'static str = "test-token";

    /// Starts with Services, EndpointSlices, every ServiceExport CRD and
    /// [`Self::DEFAULT_TOKEN`].
    pub async fn start() -> io::Result<Self> {
        Self::start_with(FakeOptions::default()).await
    }

    /// Starts with `opts`.
    pub async fn start_with(opts: FakeOptions) -> io::Result<Self> {
        let mut cluster = Cluster::new(opts.token);
        cluster.install(ResourceDef::services());
        cluster.install(ResourceDef::endpoint_slices());
        for api in opts.export_apis {
            cluster.install(ResourceDef::service_export(api.group(), api.version()));
        }
        let state: http::Shared = Arc::new(Mutex::new(cluster));
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new().fallback(http::handle).with_state(state.clone());
        let (task, ca_pem) = if opts.tls {
            let m = crate::testing_tls::material("fake-kubernetes-ca")?;
            let listener = crate::testing_tls::TlsListener { tcp: listener, acceptor: m.acceptor };
            (tokio::spawn(async move { serve(axum::serve(listener, app).await) }), Some(m.ca_pem))
        } else {
            (tokio::spawn(async move { serve(axum::serve(listener, app).await) }), None)
        };
        Ok(FakeApiServer { addr, ca_pem, state, task })
    }

    /// The base URL (`http://127.0.0.1:PORT`, or `https://` when serving TLS).
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The CA bundle (PEM) to trust when serving TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Runs `f` with the cluster locked: several changes become visible at once.
    pub fn update<R>(&self, f: impl FnOnce(&mut Cluster) -> R) -> R {
        let mut c = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c)
    }

    /// Creates or replaces an object; see [`Cluster::apply`].
    pub fn apply(&self, obj: Value) -> Result<Value, FakeError> {
        self.update(|c| c.apply(obj))
    }

    /// Deletes the object `obj` names.
    pub fn delete(&self, obj: &Value) -> Result<(), FakeError> {
        self.update(|c| c.delete_obj(obj))
    }

    /// Forgets the history up to now; see [`Cluster::compact`].
    pub fn compact(&self) {
        self.update(Cluster::compact)
    }

    /// Ends every open watch.
    pub fn close_watches(&self) {
        self.update(Cluster::close_watches)
    }

    /// Sends a BOOKMARK to every watch that asked for them.
    pub fn bookmark(&self) {
        self.update(Cluster::bookmark)
    }

    /// Changes the required token (`None`: no authentication).
    pub fn set_token(&self, token: Option<&str>) {
        self.update(|c| c.set_token(token))
    }

    /// Injects a failure.
    pub fn inject(&self, injection: Injection) {
        self.update(|c| c.inject(injection))
    }

    /// Drops every pending injection.
    pub fn clear_injections(&self) {
        self.update(Cluster::clear_injections)
    }

    /// The requests seen so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.update(|c| c.requests().to_vec())
    }

    /// Number of open watches.
    pub fn open_watches(&self) -> usize {
        self.update(|c| c.open_watches())
    }
}

fn serve(result: io::Result<()>) {
    if let Err(e) = result {
        tracing::warn!(error = %e, "fake API server stopped");
    }
}
