//! Wires one federator top to bottom: certificates, store, merge core, sources, the gateway
//! control service and the REST API; and the drain sequence. Tests run it on `127.0.0.1:0`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::registry::Registry;
use skybridge_api::identity::Role;
use skybridge_api::model::ServiceKey;
use skybridge_api::proto::wire;
use skybridge_api::proto::wire::control_server::ControlServer;
use skybridge_api::tls::{CertStore, DistributedDomain, HttpsIdentity, TlsError, TlsFiles, https_server_config};
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use skybridge_api::backoff::Backoff;

use crate::config::{Config, StoreSection};
use crate::control::{ControlLimits, ControlService, incoming};
use crate::ha::Replica;
use crate::leader::Leader;
use crate::metrics::{EventLabels, Metrics, ResultLabels};
use crate::policies::file::PolicyFile;
use crate::sources::now_millis;
use crate::state::{Identity, State, StateLimits};
use crate::store::etcd::records::CertificateStatus;
use crate::store::{AnyStore, EmbeddedStore, EtcdStore, Persisted, Store, StoreError};
use skybridge_api::serve::{HttpLimits, Transport, serve_router};

/// HTTP/2 streams one control connection may hold open (a gateway needs one; a reconnecting
/// gateway briefly two).
const MAX_STREAMS_PER_GATEWAY: u32 = 8;
/// Largest header block a control-stream request may send.
const MAX_CONTROL_HEADER_BYTES: u32 = 16 * 1024;

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
    #[error("policies file {path}: {reason}")]
    Policies { path: String, reason: String },
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

/// A TCP listener with `backlog` for its accept queue (see `limits.listen_backlog`).
fn bind(what: &'static str, addr: SocketAddr, backlog: usize) -> Result<TcpListener, StartError> {
    skybridge_api::serve::listen(addr, backlog).map_err(|source| StartError::Bind { what, addr, source })
}

/// This replica's name: `federator.name`, else `$HOSTNAME` (the pod name), else `federator`.
fn replica_name(configured: Option<&str>) -> String {
    configured
        .map(str::to_owned)
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| crate::config::valid_replica_name(h)))
        .unwrap_or_else(|| "federator".to_owned())
}

/// Starts the federator; returns once both listeners are bound (and, with the embedded store,
/// the store is loaded; a replica on etcd loads in the background and is ready once it has).
pub async fn start(cfg: Config) -> Result<Running, StartError> {
    let cfg = Arc::new(cfg);
    let (api_max, control_max) = (cfg.api.max_connections, cfg.limits.max_control_connections);
    let what = format!("api.max_connections ({api_max}) and limits.max_control_connections ({control_max})");
    skybridge_api::serve::fdlimit::ensure(api_max as u64 + control_max as u64, &what);
    let f = &cfg.federator;
    let certs = CertStore::load(TlsFiles::from(&cfg.tls), &f.trust_domain, Role::Federator)?;
    certs.set_expiry_warning(cfg.tls.expiry_warning);
    // Loaded before anything is opened or spawned, so a bad file stops the start cleanly.
    let https = match &cfg.api.tls {
        None => None,
        Some(t) => {
            let identity = HttpsIdentity::load(&t.cert, &t.key, certs.crypto().clone())?;
            let config = https_server_config(identity.clone(), certs.clone())?;
            Some((identity, config))
        }
    };
    let policy_file = match &cfg.policies.path {
        None => None,
        Some(p) => {
            let policies = crate::policies::file::load(p)
                .map_err(|reason| StartError::Policies { path: p.display().to_string(), reason })?;
            Some((PolicyFile::new(p.clone()), policies))
        }
    };
    let name = replica_name(f.name.as_deref());
    let (store, persisted) = match &cfg.store {
        StoreSection::Embedded => {
            let dir = f.data_dir.clone().unwrap_or_default();
            std::fs::create_dir_all(&dir)
                .map_err(|source| StartError::DataDir { path: dir.display().to_string(), source })?;
            let store = EmbeddedStore::open(&dir.join("federator.redb"), cfg.limits.max_events)?;
            let persisted = store.load().await?;
            (Arc::new(AnyStore::Embedded(store)), persisted)
        }
        StoreSection::Etcd(e) => {
            let store = EtcdStore::connect(e, &name, cfg.limits.max_events).await?;
            // Wrong credentials or a prefix holding something else stop the start; an etcd that
            // is down does not: the replica serves (not ready) and joins when etcd answers.
            match store.check_schema().await {
                Ok(()) => {}
                Err(e) if e.is_unavailable() => {
                    tracing::error!(error = %e, "etcd is not reachable yet; retrying in the background")
                }
                Err(e) => return Err(e.into()),
            }
            (Arc::new(AnyStore::Etcd(Arc::new(store))), Persisted::default())
        }
    };
    // Read once here so that an unreadable file stops the start with its path; later changes
    // are picked up by the API as they come.
    let token = match &cfg.api.token_file {
        Some(p) => {
            std::fs::read_to_string(p).map_err(|source| StartError::Token { path: p.display().to_string(), source })?;
            crate::api::policy::WriteToken::file(p.clone())
        }
        None => crate::api::policy::WriteToken::Off,
    };

    let identity = Identity {
        name: name.clone(),
        started_at: now_millis(),
        single_node: matches!(&*store, AnyStore::Embedded(_)),
    };
    let limits = StateLimits {
        concurrent_snapshots: cfg.limits.concurrent_snapshots,
        catalog_history: cfg.limits.catalog_history,
    };
    let state = Arc::new(State::new(
        Arc::new(persisted.catalog.clone()),
        persisted.policies.clone(),
        persisted.gateways.clone(),
        store.clone(),
        limits,
        identity,
    ));
    state.set_authorization_default(cfg.authorization.default);
    state.set_distributed_trust(distributed_trust(&certs, &cfg));
    let policy_file = policy_file.map(|(file, policies)| {
        let n = policies.len();
        state.set_file_policies(policies);
        tracing::info!(path = %file.path().display(), policies = n, "loaded the policies file");
        file
    });

    let control_listener = bind("control (gRPC)", cfg.listen.control, cfg.limits.listen_backlog)?;
    let api_listener = bind("REST API", cfg.listen.api, cfg.limits.listen_backlog)?;
    let addrs = Bound {
        control: control_listener.local_addr().expect("bound"),
        api: api_listener.local_addr().expect("bound"),
    };

    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let ready = Arc::new(AtomicBool::new(false));
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    own_certificate(&certs, &state, &metrics);
    let registry = Arc::new(registry);

    let leader = Leader {
        cfg: cfg.clone(),
        store: store.clone(),
        state: state.clone(),
        metrics: metrics.clone(),
        publish: false,
    };
    match &*store {
        AnyStore::Embedded(_) => {
            // The only replica: it leads for its whole life and publishes what it merges.
            metrics.leader.set(1);
            metrics.store_up.set(1);
            let leader = Leader { publish: true, ..leader };
            let stop = cancel.clone();
            tasks.spawn(async move { leader.run(persisted, stop).await }.instrument(tracing::info_span!("leader")));
            ready.store(true, Ordering::Release);
        }
        AnyStore::Etcd(etcd) => {
            let StoreSection::Etcd(e) = &cfg.store else { unreachable!("the store follows the config") };
            let replica = Replica {
                store: etcd.clone(),
                state: state.clone(),
                metrics: metrics.clone(),
                leader,
                lease_ttl: e.lease_ttl,
                backoff: Backoff { min: Duration::from_millis(200), max: e.lease_ttl },
                ready: ready.clone(),
            };
            tasks.spawn(replica.run(cancel.clone()).instrument(tracing::info_span!("replica", %name)));
        }
    }

    let api_events = metrics.api_connections.clone();
    let bounds = incoming::Bounds {
        handshake_timeout: cfg.limits.handshake_timeout,
        first_byte_timeout: cfg.limits.hello_timeout,
        max_connections: cfg.limits.max_control_connections,
    };
    let conns = incoming::accept(
        control_listener,
        certs.clone(),
        bounds,
        metrics.control_connections.clone(),
        cancel.clone(),
        tasks.clone(),
    )?;
    let limits = ControlLimits {
        queue: cfg.limits.gateway_queue,
        hello_timeout: cfg.limits.hello_timeout,
        snapshot_send_timeout: cfg.limits.snapshot_send_timeout,
        snapshot_ack_timeout: cfg.limits.snapshot_ack_timeout,
    };
    let (keepalive, keepalive_timeout) = (cfg.limits.keepalive_interval, cfg.limits.keepalive_timeout);
    let control = ControlServer::new(
        ControlService::new(state.clone(), limits, cancel.clone(), tasks.clone(), metrics.clone())
            .serving_when(ready.clone()),
    );
    let stop = cancel.clone();
    tasks.spawn(
        async move {
            let served = tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(keepalive))
                .http2_keepalive_timeout(Some(keepalive_timeout))
                // A gateway runs one session stream; a verified but misbehaving peer cannot
                // open thousands of streams or send megabyte headers on its connection.
                .max_concurrent_streams(Some(MAX_STREAMS_PER_GATEWAY))
                .http2_max_header_list_size(Some(MAX_CONTROL_HEADER_BYTES))
                .add_service(control)
                .serve_with_incoming_shutdown(ReceiverStream::new(conns), stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "control server failed");
            }
        }
        .instrument(tracing::info_span!("control", addr = %addrs.control)),
    );
    let router = crate::api::router(state.clone(), registry, ready.clone(), token, &f.trust_domain);
    let api_limits = HttpLimits {
        max_connections: cfg.api.max_connections,
        header_timeout: cfg.api.header_timeout,
        idle_timeout: cfg.api.idle_timeout,
    };
    let transport = match https {
        None => Transport::Plain,
        Some((identity, config)) => {
            let (stop, m) = (cancel.clone(), metrics.clone());
            tasks.spawn(
                watch_https(identity, cfg.tls.reload_interval, stop, m)
                    .instrument(tracing::info_span!("api_cert_reload")),
            );
            Transport::Tls(Arc::new(config))
        }
    };
    if let Some(file) = policy_file {
        let (stop, st, m) = (cancel.clone(), state.clone(), metrics.clone());
        tasks.spawn(
            watch_policy_file(file, cfg.policies.reload_interval, st, m, stop)
                .instrument(tracing::info_span!("policy_file")),
        );
    }
    let (stop, events) = (cancel.clone(), api_events);
    tasks.spawn(
        serve_router("api", api_listener, router, transport, api_limits, stop, move |e| {
            events.get_or_create(&EventLabels { event: e.as_str() }).inc();
        })
        .instrument(tracing::info_span!("api", addr = %addrs.api)),
    );
    let (stop, own, st, m) = (cancel.clone(), certs.clone(), state.clone(), metrics.clone());
    let trust_cfg = cfg.clone();
    tasks.spawn(
        certs
            .clone()
            .watch(cfg.tls.reload_interval, stop, move |r| {
                // Every tick: the warning window is entered by time passing, not by a reload.
                own_certificate(&own, &st, &m);
                if matches!(r, Ok(true)) {
                    st.set_distributed_trust(distributed_trust(&own, &trust_cfg));
                }
                if let Some(result) = CertStore::reload_label(r) {
                    m.cert_reloads.get_or_create(&ResultLabels { result }).inc();
                }
            })
            .instrument(tracing::info_span!("cert_reload")),
    );

    tracing::info!(
        control = %addrs.control,
        api = %addrs.api,
        replica = %name,
        store = store.backend(),
        version = state.catalog().version,
        "federator started"
    );
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

/// The `[federator] distribute_trust` domains as gateways get them: the roots as last loaded,
/// and the clusters their `[[tls.federated]]` entries give them.
fn distributed_trust(certs: &CertStore, cfg: &Config) -> Vec<wire::TrustDomain> {
    let loaded = certs.current();
    cfg.federator
        .distribute_trust
        .iter()
        .filter_map(|td| {
            let entry = cfg.tls.federated.iter().find(|d| d.trust_domain == *td)?;
            let roots = loaded.federated.get(td)?;
            let d = DistributedDomain {
                trust_domain: td.clone(),
                roots: roots.certs.to_vec(),
                clusters: entry.clusters.clone().unwrap_or_default(),
            };
            Some(wire::TrustDomain::from(&d))
        })
        .collect()
}

/// An interval for a file watcher: after a stall it waits a whole period again, never bursts.
fn ticker(every: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// Waits for the next tick; `false` once `cancel` is cancelled.
async fn next_tick(tick: &mut tokio::time::Interval, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tick.tick() => true,
    }
}

/// Applies the policies file whenever it changes, until cancelled. A refused file (malformed,
/// empty, gone) leaves the policies in effect as they were. Every replica reads its own copy
/// (the same ConfigMap); only the leader records events, so the log has each change once.
async fn watch_policy_file(
    mut file: PolicyFile,
    every: Duration,
    state: Arc<State>,
    metrics: Metrics,
    cancel: CancellationToken,
) {
    let mut tick = ticker(every);
    while next_tick(&mut tick, &cancel).await {
        let Some(read) = file.poll() else { continue };
        let path = file.path().display().to_string();
        let leader = state.role().0 == crate::store::etcd::records::Role::Leader;
        let message = match read {
            Ok(policies) => {
                metrics.policy_file_reloads.get_or_create(&ResultLabels { result: "ok" }).inc();
                let n = policies.len();
                let change = state.set_file_policies(policies);
                if change.is_empty() {
                    continue;
                }
                tracing::info!(%path, policies = n, "applied the changed policies file");
                let names = |v: &[ServiceKey]| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
                format!(
                    "policies file {path} applied: {n} policies; added [{}], changed [{}], removed [{}]",
                    names(&change.added),
                    names(&change.changed),
                    names(&change.removed)
                )
            }
            Err(reason) => {
                metrics.policy_file_reloads.get_or_create(&ResultLabels { result: "error" }).inc();
                tracing::error!(%path, %reason, "policies file refused; the previous policies stay in effect");
                format!("policies file {path} refused, the previous policies stay in effect: {reason}")
            }
        };
        if leader {
            state.event("policy", message).await;
        }
    }
}

/// Reloads the API's HTTPS certificate when its files change, until cancelled.
async fn watch_https(identity: Arc<HttpsIdentity>, every: Duration, cancel: CancellationToken, metrics: Metrics) {
    let mut tick = ticker(every);
    while next_tick(&mut tick, &cancel).await {
        let r = identity.reload_if_changed();
        match &r {
            Ok(true) => tracing::info!(cert = %identity.cert_path().display(), "reloaded the API's HTTPS certificate"),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "API certificate reload failed; keeping the previous one"),
        }
        if let Some(result) = CertStore::reload_label(&r) {
            metrics.cert_reloads.get_or_create(&ResultLabels { result }).inc();
        }
    }
}

/// Publishes this replica's certificate: metrics, and its replica record (so `/api/v1/status`
/// of any replica and `skybridge check` name one that is about to expire).
fn own_certificate(certs: &CertStore, state: &State, m: &Metrics) {
    let not_after = certs.current().not_after;
    let expiring = certs.expiry(std::time::SystemTime::now()).expiring;
    let ms = not_after.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    m.cert_expiry.set(ms as f64 / 1000.0);
    m.cert_expiring.set(i64::from(expiring));
    state.set_certificate(CertificateStatus { not_after: ms, expiring });
}
