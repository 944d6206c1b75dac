//! Wires one federator top to bottom: certificates, store, merge core, sources, the gateway
//! control service and the REST API; and the drain sequence. Tests run it on `127.0.0.1:0`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::registry::Registry;
use skybridge_api::identity::Role;
use skybridge_api::proto::wire::control_server::ControlServer;
use skybridge_api::tls::{CertStore, TlsError, TlsFiles};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::catalog::MergeConfig;
use crate::config::{Config, SourceConfig};
use crate::control::{ControlLimits, ControlService, incoming};
use crate::core::Core;
use crate::metrics::Metrics;
use crate::sources::{self, Backoff, static_file::StaticFile};
use crate::state::State;
use crate::store::{AnyStore, EmbeddedStore, Store, StoreError};
use skybridge_cloud_adapters::deferred::Deferred;

/// Why the federator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("cannot read the API token file {path}: {source}")]
    Token { path: String, source: std::io::Error },
    #[error("cannot bind {what} on {addr} (is another process using the port?)")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
}

/// The addresses actually bound.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub control: SocketAddr,
    pub api: SocketAddr,
}

/// A started federator.
pub struct Running {
    pub addrs: Bound,
    state: Arc<State>,
    ready: Arc<AtomicBool>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    drain_deadline: Duration,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|source| StartError::Bind { what, addr, source })
}

/// Starts the federator; returns once both listeners are bound and the store is loaded.
pub async fn start(cfg: Config) -> Result<Running, StartError> {
    let f = &cfg.federator;
    let certs = CertStore::load(TlsFiles::from(&cfg.tls), &f.trust_domain, Role::Federator)?;
    std::fs::create_dir_all(&f.data_dir)
        .map_err(|source| StartError::DataDir { path: f.data_dir.display().to_string(), source })?;
    let store =
        Arc::new(AnyStore::Embedded(EmbeddedStore::open(&f.data_dir.join("federator.redb"), cfg.limits.max_events)?));
    let persisted = store.load().await?;
    let token = match &cfg.api.token_file {
        Some(p) => Some(
            std::fs::read_to_string(p).map_err(|source| StartError::Token { path: p.display().to_string(), source })?,
        ),
        None => None,
    };

    let kinds: BTreeMap<String, String> =
        cfg.sources.iter().map(|s| (s.id().to_owned(), s.kind().to_owned())).collect();
    let merge_cfg = MergeConfig { stale_timeout_ms: f.stale_timeout.map(|d| d.as_millis() as u64) };
    let core = Core::new(persisted.clone(), &kinds, merge_cfg);
    let state = Arc::new(State::new(
        core.catalog().clone(),
        persisted.policies,
        persisted.gateways,
        store.clone(),
        cfg.limits.concurrent_snapshots,
    ));
    state.set_sources(core.status().clone());

    let control_listener = bind("control (gRPC)", cfg.listen.control).await?;
    let api_listener = bind("REST API", cfg.listen.api).await?;
    let addrs = Bound {
        control: control_listener.local_addr().expect("bound"),
        api: api_listener.local_addr().expect("bound"),
    };

    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let ready = Arc::new(AtomicBool::new(false));
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let registry = Arc::new(registry);

    let (tx, rx) = mpsc::channel(cfg.limits.source_queue);
    tasks.spawn(
        crate::core::run(core, rx, store, state.clone(), metrics.clone(), f.merge_interval, cancel.clone())
            .instrument(tracing::info_span!("core")),
    );
    for s in &cfg.sources {
        let span = tracing::info_span!("source", id = s.id(), kind = s.kind());
        match s.clone() {
            SourceConfig::Static { id, path, interval, backoff_min, backoff_max } => {
                let backoff = Backoff { min: backoff_min, max: backoff_max };
                tasks.spawn(
                    sources::run(id, StaticFile::new(path, interval), tx.clone(), backoff, cancel.clone())
                        .instrument(span),
                );
            }
            SourceConfig::AwsCloudmap(c) => {
                let backoff = Backoff { min: c.backoff_min, max: c.backoff_max };
                let id = c.id.clone();
                let (tx, cancel) = (tx.clone(), cancel.clone());
                // Building the client reads the credential chain's files: do it in the task,
                // not before the federator is serving.
                tasks.spawn(
                    async move {
                        let source = skybridge_cloud_adapters::aws::CloudMap::new(c).await;
                        sources::run(id, source, tx, backoff, cancel).await;
                    }
                    .instrument(span),
                );
            }
            SourceConfig::GkeFleet(c) => {
                let backoff = Backoff { min: c.backoff_min, max: c.backoff_max };
                let id = c.id.clone();
                let source = Deferred::new("gke-fleet", move || skybridge_cloud_adapters::gke::source(c.clone(), None));
                tasks.spawn(sources::run(id, source, tx.clone(), backoff, cancel.clone()).instrument(span));
            }
            SourceConfig::AksFleet(c) => {
                let backoff = Backoff { min: c.backoff_min, max: c.backoff_max };
                let id = c.id.clone();
                let source =
                    Deferred::new("aks-fleet", move || skybridge_cloud_adapters::aks::source::source(c.clone()));
                tasks.spawn(sources::run(id, source, tx.clone(), backoff, cancel.clone()).instrument(span));
            }
            SourceConfig::Kubernetes(c) => {
                let backoff = Backoff { min: c.backoff_min, max: c.backoff_max };
                let id = c.id.clone();
                let source = Deferred::new("kubernetes", move || {
                    let built = skybridge_cloud_adapters::kubernetes::source(&c);
                    async move { built }
                });
                tasks.spawn(sources::run(id, source, tx.clone(), backoff, cancel.clone()).instrument(span));
            }
        }
    }
    drop(tx);

    let conns =
        incoming::accept(control_listener, certs.clone(), cfg.limits.handshake_timeout, cancel.clone(), tasks.clone())?;
    let limits = ControlLimits {
        queue: cfg.limits.gateway_queue,
        hello_timeout: cfg.limits.hello_timeout,
        snapshot_send_timeout: cfg.limits.snapshot_send_timeout,
        snapshot_ack_timeout: cfg.limits.snapshot_ack_timeout,
    };
    let (keepalive, keepalive_timeout) = (cfg.limits.keepalive_interval, cfg.limits.keepalive_timeout);
    let control =
        ControlServer::new(ControlService::new(state.clone(), limits, cancel.clone(), tasks.clone(), metrics));
    let stop = cancel.clone();
    tasks.spawn(
        async move {
            let served = tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(keepalive))
                .http2_keepalive_timeout(Some(keepalive_timeout))
                .add_service(control)
                .serve_with_incoming_shutdown(ReceiverStream::new(conns), stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "control server failed");
            }
        }
        .instrument(tracing::info_span!("control", addr = %addrs.control)),
    );
    let router = crate::api::router(state.clone(), registry, ready.clone(), token);
    let stop = cancel.clone();
    tasks.spawn(
        async move {
            if let Err(e) = axum::serve(api_listener, router).with_graceful_shutdown(stop.cancelled_owned()).await {
                tracing::error!(error = %e, "REST API server failed");
            }
        }
        .instrument(tracing::info_span!("api", addr = %addrs.api)),
    );
    let stop = cancel.clone();
    tasks.spawn(
        certs.clone().watch(cfg.tls.reload_interval, stop, |_| {}).instrument(tracing::info_span!("cert_reload")),
    );

    ready.store(true, Ordering::Release);
    tracing::info!(control = %addrs.control, api = %addrs.api, version = state.catalog().version, "federator started");
    Ok(Running { addrs, state, ready, cancel, tasks, drain_deadline: cfg.limits.drain_deadline })
}

impl Running {
    /// The shared state (for tests).
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Stops serving: readiness drops, streams and listeners close, tasks end within the drain
    /// deadline.
    pub async fn shutdown(self) {
        self.ready.store(false, Ordering::Release);
        self.cancel.cancel();
        self.tasks.close();
        if tokio::time::timeout(self.drain_deadline, self.tasks.wait()).await.is_err() {
            tracing::warn!("federator tasks did not stop within the drain deadline");
        }
        tracing::info!("federator stopped");
    }
}
