//! The federator client: one control stream to one federator replica at a time, catalog
//! snapshots and deltas in, ACKs and measurement reports out. When the stream breaks or a
//! replica cannot be reached the client moves on to another replica (`replicas`); when none
//! answers the gateway keeps routing on the last catalog it had (static stability), also
//! across restarts through the catalog cache file (`cache`). The rules for applying updates
//! are pure (`held`); this module is the I/O shell around them.

pub mod cache;
pub mod held;
mod replicas;
mod status;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use skybridge_api::proto::{SnapshotAssembler, wire};
use skybridge_api::tls::{CertStore, ServerExpectation};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use wire::{federator_message, gateway_message};

use self::cache::{CacheError, Latest, Owner};
use self::held::HeldCatalog;
use self::replicas::Rotation;
pub use self::status::{CacheStatus, CatalogSource, FederationStatus, format_age};
use crate::config::FederatorSection;
use crate::context::Context;
use crate::metrics::ResultLabels;

/// Why a control session ended, or never started.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error("cannot resolve the federator address {targets}: {reason} (check federator.address/addresses and DNS)")]
    Resolve { targets: String, reason: String },
    #[error("cannot connect to the federator at {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("federator rejected the session: {0}")]
    Rejected(String),
    #[error("control stream failed: {0}")]
    Stream(String),
    #[error("the federator closed the control stream")]
    Closed,
}

/// How one attempt at one replica ended.
enum Ended {
    /// No session came up: try the next replica of the round at once.
    Unreachable(FederationError),
    /// A session ran and then broke: back off, then start a new round.
    Broken(FederationError),
}

fn set(status: &Mutex<FederationStatus>, f: impl FnOnce(&mut FederationStatus)) {
    f(&mut status.lock().expect("federation status lock"));
}

fn owner(ctx: &Context) -> Owner {
    Owner { cluster: ctx.local.to_string(), trust_domain: ctx.trust_domain.clone() }
}

/// Reads the catalog cache file, when one is configured, and routes on it if it checks out.
/// Called before the listeners start, so a restarted gateway routes from its first connection;
/// returns what the client starts from (its version goes into the Hello).
pub async fn restore(ctx: &Context, cfg: &FederatorSection) -> HeldCatalog {
    let path = cfg.catalog_cache.path().map(ToOwned::to_owned);
    set(&ctx.federation, |s| {
        s.state = "connecting".into();
        s.configured = cfg.targets();
        s.cache = path.as_ref().map(|p| CacheStatus { file: p.display().to_string(), ..Default::default() });
    });
    let Some(path) = path else { return HeldCatalog::default() };
    let (p, o, limit) = (path.clone(), owner(ctx), cache::size_limit(cfg.max_message_size));
    let read = tokio::time::timeout(
        cache::LOAD_TIMEOUT,
        tokio::task::spawn_blocking(move || {
            let removed = cache::remove_stale_temps(&p);
            if removed > 0 {
                tracing::info!(removed, "removed temporary catalog cache files an interrupted write left");
            }
            cache::load(&p, &o, limit)
        }),
    );
    let result = match read.await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(CacheError::Read(std::io::Error::other(e))),
        Err(_) => Err(CacheError::Read(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("not read within {:?} (a hung volume?)", cache::LOAD_TIMEOUT),
        ))),
    };
    let m = &ctx.metrics;
    let count = |result| m.catalog_cache_loads.get_or_create(&ResultLabels { result }).inc();
    match result {
        Ok(None) => {
            count("missing");
            tracing::info!(file = %path.display(), "no catalog cache file yet; waiting for the federator");
            HeldCatalog::default()
        }
        Ok(Some(c)) => {
            count("loaded");
            take_trust(ctx, cfg, &c.held);
            if let Some(routing) = c.held.routing(&ctx.local, &cfg.peer_addresses) {
                ctx.catalog.store(routing);
            }
            m.catalog_version.set(c.version as i64);
            m.catalog_from_cache.set(1);
            let age = format_age(cache::unix_ms(SystemTime::now()).saturating_sub(c.written_at_unix_ms));
            tracing::info!(
                file = %path.display(),
                version = c.version,
                %age,
                "routing on the cached catalog until the federator answers"
            );
            set(&ctx.federation, |s| {
                s.catalog_version = c.version;
                s.catalog_source = CatalogSource::Cache;
                if let Some(cs) = &mut s.cache {
                    cs.version = Some(c.version);
                    cs.written_at_unix_ms = Some(c.written_at_unix_ms);
                }
            });
            c.held
        }
        Err(e) => {
            count("rejected");
            tracing::warn!(
                file = %path.display(),
                reason = %e,
                "ignoring the catalog cache file {}: {e}; waiting for the federator",
                path.display()
            );
            set(&ctx.federation, |s| {
                if let Some(cs) = &mut s.cache {
                    cs.ignored = Some(e.to_string());
                }
            });
            HeldCatalog::default()
        }
    }
}

/// Starts the client (starting from `held`) and, when the cache is on, its writer, as tasks of
/// `tasks` that stop when `cancel` is.
pub fn spawn(
    ctx: &Arc<Context>,
    cfg: FederatorSection,
    advertised: Vec<String>,
    certs: Arc<CertStore>,
    held: HeldCatalog,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
) {
    let cache = cfg.catalog_cache.path().map(|path| {
        let (tx, rx) = watch::channel(None);
        let writer = cache::writer(
            path.to_owned(),
            owner(ctx),
            cache::size_limit(cfg.max_message_size),
            rx,
            ctx.metrics.clone(),
            ctx.federation.clone(),
            cancel.clone(),
        );
        tasks.spawn(writer.instrument(tracing::info_span!("catalog_cache", file = %path.display())));
        tx
    });
    let span = tracing::info_span!("federation", federator = %cfg.targets().join(","));
    tasks.spawn(run(ctx.clone(), cfg, advertised, certs, held, cache, cancel.clone()).instrument(span));
}

/// Runs the client until cancelled: each round resolves every configured address and tries
/// the replicas in [`Rotation`] order until one gives a session; between rounds it backs off.
pub async fn run(
    ctx: Arc<Context>,
    cfg: FederatorSection,
    advertised: Vec<String>,
    certs: Arc<CertStore>,
    mut held: HeldCatalog,
    cache: Option<watch::Sender<Latest>>,
    cancel: CancellationToken,
) {
    let expect = match &cfg.trust_domain {
        Some(td) if td != certs.trust_domain() => ServerExpectation::FederatorIn(td.clone()),
        _ => ServerExpectation::Federator,
    };
    let tls = match certs.client_config(expect, &[b"h2"]) {
        Ok(c) => tokio_rustls::TlsConnector::from(Arc::new(c)),
        Err(e) => {
            tracing::error!(error = %e, "cannot build the control TLS config; not connecting to the federator");
            return;
        }
    };
    let instance = cfg.instance.clone().or_else(|| std::env::var("HOSTNAME").ok()).unwrap_or_else(|| "default".into());
    let client = Client { ctx: &ctx, cfg: &cfg, instance, advertised, tls, cache };
    let status = &ctx.federation;
    let targets = cfg.targets();
    let mut rotation = Rotation::new(fastrand::usize(..));
    let backoff = skybridge_api::backoff::Backoff { min: cfg.reconnect_min, max: cfg.reconnect_max };
    let mut failures = 0u32;
    loop {
        set(status, |s| s.state = "connecting".into());
        let (resolved, errors) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = resolve(&targets, cfg.connect_timeout) => r,
        };
        let plan = rotation.plan(&resolved);
        set(status, |s| s.replicas = plan.iter().map(ToString::to_string).collect());
        let mut last = None;
        if !errors.is_empty() && !plan.is_empty() {
            tracing::warn!(errors = %errors.join("; "), "some federator addresses do not resolve; trying the others");
        }
        if plan.is_empty() {
            let reason = if errors.is_empty() { "no address records".to_owned() } else { errors.join("; ") };
            last = Some(FederationError::Resolve { targets: targets.join(", "), reason });
        }
        let mut connected = false;
        for addr in plan {
            set(status, |s| s.address = addr.to_string());
            let ended = tokio::select! {
                _ = cancel.cancelled() => return,
                e = client.session(addr, &mut held) => e,
            };
            rotation.failed(addr);
            match ended {
                Ended::Unreachable(e) => {
                    tracing::warn!(replica = %addr, error = %e, "federator replica unavailable; trying the next");
                    last = Some(e);
                }
                Ended::Broken(e) => {
                    connected = true;
                    last = Some(e);
                    break;
                }
            }
        }
        let e = last.unwrap_or(FederationError::Closed);
        ctx.metrics.federator_connected.set(0);
        tracing::warn!(error = %e, "no federator session; routing on the last catalog");
        set(status, |s| {
            s.state = "disconnected".into();
            s.last_error = Some(e.to_string());
        });
        // A round that got a session starts the backoff over.
        failures = if connected { 1 } else { failures + 1 };
        let wait = backoff.jittered(failures, fastrand::f64());
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Resolves every `host:port` (all of a name's records), each lookup bounded by `timeout`;
/// returns the addresses and, per target that failed, why.
async fn resolve(targets: &[String], timeout: Duration) -> (Vec<SocketAddr>, Vec<String>) {
    let lookups = targets.iter().map(|t| async move {
        match tokio::time::timeout(timeout, tokio::net::lookup_host(t.as_str())).await {
            Ok(Ok(addrs)) => Ok(addrs.collect::<Vec<_>>()),
            Ok(Err(e)) => Err(format!("{t}: {e}")),
            Err(_) => Err(format!("{t}: DNS lookup timed out after {timeout:?}")),
        }
    });
    let mut addrs = Vec::new();
    let mut errors = Vec::new();
    for r in futures_util::future::join_all(lookups).await {
        match r {
            Ok(a) => addrs.extend(a),
            Err(e) => errors.push(e),
        }
    }
    (addrs, errors)
}

/// Opens an HTTP/2 channel to the first replica of the configured addresses that answers,
/// over our mTLS (the federator's SPIFFE ID is checked, not its name).
pub async fn connect(
    cfg: &FederatorSection,
    tls: &tokio_rustls::TlsConnector,
) -> Result<tonic::transport::Channel, FederationError> {
    let targets = cfg.targets();
    let (addrs, errors) = resolve(&targets, cfg.connect_timeout).await;
    let reason = if errors.is_empty() { "no address records".to_owned() } else { errors.join("; ") };
    let mut last = FederationError::Resolve { targets: targets.join(", "), reason };
    for addr in addrs {
        match connect_to(addr, cfg, tls).await {
            Ok(c) => return Ok(c),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Opens an HTTP/2 channel to one replica; TCP connect and TLS handshake are each bounded by
/// `connect_timeout`.
pub async fn connect_to(
    addr: SocketAddr,
    cfg: &FederatorSection,
    tls: &tokio_rustls::TlsConnector,
) -> Result<tonic::transport::Channel, FederationError> {
    let (timeout, tls) = (cfg.connect_timeout, tls.clone());
    let timed_out = |what: &str| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} timed out"));
    let connector = tower::service_fn(move |_: tonic::codegen::http::Uri| {
        let tls = tls.clone();
        async move {
            let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
                .await
                .map_err(|_| timed_out("TCP connect"))??;
            tcp.set_nodelay(true)?;
            // The verifier checks the federator's SPIFFE ID, not this name.
            let name = ServerName::try_from("federator.skybridge").expect("valid name");
            let tls = tokio::time::timeout(timeout, tls.connect(name, tcp))
                .await
                .map_err(|_| timed_out("TLS handshake"))??;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    tonic::transport::Endpoint::from_static("http://federator.skybridge")
        .connect_timeout(timeout)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .connect_with_connector(connector)
        .await
        .map_err(|e| FederationError::Connect {
            address: addr.to_string(),
            reason: format!("{e}: {}", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default()),
        })
}

/// What every session of one client shares.
struct Client<'a> {
    ctx: &'a Context,
    cfg: &'a FederatorSection,
    instance: String,
    advertised: Vec<String>,
    tls: tokio_rustls::TlsConnector,
    /// Hands accepted states to the cache writer; `None` when the cache is off.
    cache: Option<watch::Sender<Latest>>,
}

impl Client<'_> {
    /// One session with the replica at `addr`, from connect until the stream ends.
    async fn session(&self, addr: SocketAddr, held: &mut HeldCatalog) -> Ended {
        let (ctx, cfg) = (self.ctx, self.cfg);
        let channel = match connect_to(addr, cfg, &self.tls).await {
            Ok(c) => c,
            Err(e) => return Ended::Unreachable(e),
        };
        let mut client =
            wire::control_client::ControlClient::new(channel).max_decoding_message_size(cfg.max_message_size);
        let (tx, rx) = mpsc::channel(16);
        let (have_version, have_digest) = held.have();
        let hello = wire::Hello {
            cluster: ctx.local.to_string(),
            cloud: ctx.cloud.to_string(),
            region: ctx.region.clone(),
            tunnel_addresses: self.advertised.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            instance: self.instance.clone(),
            have_version,
            have_digest,
        };
        let send = |m: gateway_message::Msg| wire::GatewayMessage { msg: Some(m) };
        if tx.send(send(gateway_message::Msg::Hello(hello))).await.is_err() {
            return Ended::Unreachable(FederationError::Closed);
        }
        let opened = tokio::time::timeout(cfg.connect_timeout, client.session(ReceiverStream::new(rx))).await;
        let mut inbound = match opened {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(s)) => {
                return Ended::Unreachable(FederationError::Rejected(format!("{:?}: {}", s.code(), s.message())));
            }
            Err(_) => {
                let reason =
                    format!("no answer to the Hello within federator.connect_timeout ({:?})", cfg.connect_timeout);
                return Ended::Unreachable(FederationError::Connect { address: addr.to_string(), reason });
            }
        };
        ctx.metrics.federator_connected.set(1);
        set(&ctx.federation, |s| {
            s.state = "connected".into();
            s.connects += 1;
        });
        tracing::info!(replica = %addr, have_version, "connected to the federator");
        let mut report = tokio::time::interval(cfg.report_interval);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut changes = tokio::time::interval(TRANSITION_CHECK);
        changes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sent = Vec::new();
        let mut parts = SnapshotAssembler::default();
        loop {
            tokio::select! {
                msg = inbound.message() => {
                    let msg = match msg {
                        Ok(Some(wire::FederatorMessage { msg: Some(m) })) => m,
                        Ok(_) => return Ended::Broken(FederationError::Closed),
                        Err(s) => return Ended::Broken(FederationError::Stream(format!("{:?}: {}", s.code(), s.message()))),
                    };
                    // Snapshots may come in parts; act (and ACK) once the last one is here.
                    let msg = match msg {
                        federator_message::Msg::Snapshot(part) => match parts.push(part) {
                            Some(whole) => federator_message::Msg::Snapshot(whole),
                            None => continue,
                        },
                        other => other,
                    };
                    let reply = self.on_update(held, msg);
                    if tx.send(send(reply)).await.is_err() {
                        return Ended::Broken(FederationError::Closed);
                    }
                }
                _ = report.tick() => {
                    let r = peer_report(ctx);
                    sent = signature(&r);
                    if tx.send(send(gateway_message::Msg::Report(r))).await.is_err() {
                        return Ended::Broken(FederationError::Closed);
                    }
                }
                // A path changing state or transport is reported at once (the federator turns
                // it into an event), not at the next report interval.
                _ = changes.tick() => {
                    let r = peer_report(ctx);
                    if signature(&r) == sent {
                        continue;
                    }
                    sent = signature(&r);
                    report.reset();
                    if tx.send(send(gateway_message::Msg::Report(r))).await.is_err() {
                        return Ended::Broken(FederationError::Closed);
                    }
                }
            }
        }
    }

    /// Applies one update and stores the outcome: routing, metrics, status and the cache on
    /// success; the answer to send either way.
    fn on_update(&self, held: &mut HeldCatalog, msg: federator_message::Msg) -> gateway_message::Msg {
        let ctx = self.ctx;
        match held.apply(msg) {
            Ok(applied) => {
                take_trust(ctx, self.cfg, held);
                if let Some(routing) = held.routing(&ctx.local, &self.cfg.peer_addresses) {
                    ctx.catalog.store(routing);
                }
                let m = &ctx.metrics;
                m.catalog_version.set(applied.version as i64);
                m.catalog_updates.get_or_create(&crate::metrics::KindLabels { kind: applied.kind.label() }).inc();
                m.catalog_from_cache.set(0);
                set(&ctx.federation, |s| {
                    s.catalog_version = applied.version;
                    s.catalog_source = CatalogSource::Federator;
                });
                if let Some(tx) = &self.cache {
                    tx.send_replace(Some(Arc::new(held.clone())));
                }
                gateway_message::Msg::Ack(wire::Ack { version: applied.version })
            }
            Err(r) => {
                tracing::warn!(version = r.version, reason = %r.reason, "catalog update rejected; asking for a snapshot");
                gateway_message::Msg::Nack(wire::Nack { version: r.version, reason: r.reason })
            }
        }
    }
}

/// Takes the trust domains the federator distributes, as far as `[federator] distributed_trust`
/// allows; logs what changed (nothing when the offer is as before).
fn take_trust(ctx: &Context, cfg: &FederatorSection, held: &HeldCatalog) {
    let (offered, mut refused) = skybridge_api::tls::distributed_from_wire(held.trust_domains());
    let Some(accepted) = ctx.certs.set_distributed(&cfg.distributed_trust, offered) else { return };
    for d in &accepted.domains {
        let clusters: Vec<&str> = d.clusters.iter().map(|g| g.as_str()).collect();
        tracing::info!(trust_domain = %d.trust_domain, ?clusters, "trusting a domain the federator distributes");
    }
    refused.extend(accepted.refused);
    for (trust_domain, reason) in refused {
        tracing::warn!(%trust_domain, %reason, "not trusting a domain the federator distributes");
    }
}

/// How often path states are compared with the last report, to report a change at once.
const TRANSITION_CHECK: Duration = Duration::from_millis(200);

/// The measurements of every path, as the federator takes them.
fn peer_report(ctx: &Context) -> wire::Report {
    let now = std::time::Instant::now();
    let peers = ctx
        .pool
        .paths()
        .into_iter()
        .map(|(c, p)| wire::PeerMeasurement {
            cluster: c.to_string(),
            rtt_micros: p.health.srtt().map_or(0, |d| d.as_micros() as u64),
            rank_rtt_micros: p.health.rank_rtt().map_or(0, |d| d.as_micros() as u64),
            state: p.health.state().as_str().to_owned(),
            transport: ctx.pool.transport_of(&c).as_str().to_owned(),
            transport_seconds: p.transport.for_how_long(now).map_or(0, |d| d.as_secs()),
        })
        .collect();
    let traffic = ctx
        .traffic
        .lock()
        .expect("traffic lock")
        .entries()
        .iter()
        .map(|(k, c)| wire::ServiceTraffic {
            service: k.service.clone(),
            cluster: k.cluster.clone(),
            transport: k.transport.to_owned(),
            ok: c.ok,
            failed: c.failed,
            retried: c.retried,
            bytes_up: c.bytes_up,
            bytes_down: c.bytes_down,
            open_buckets: c.open_buckets.to_vec(),
            open_ms_sum: c.open_ms_sum,
        })
        .collect();
    let proofs = crate::tunnel::proof::snapshot(ctx)
        .into_iter()
        .map(|((service, port, cluster), r)| wire::Proof {
            service: service.to_string(),
            port: u32::from(port),
            cluster: cluster.to_string(),
            ok: r.ok,
            at_ms: r.at_ms,
            error: r.error.unwrap_or_default(),
            took_micros: r.took.map_or(0, |d| d.as_micros() as u64),
        })
        .collect();
    wire::Report { peers, traffic, traffic_since_ms: ctx.started_at_ms, proofs }
}

/// What a report says about each path's state and transport (not its RTT, which moves all
/// the time): a change of it is worth a report now.
fn signature(r: &wire::Report) -> Vec<(String, String, String)> {
    // Traffic moves all the time too: it rides along with the next report.
    r.peers.iter().map(|p| (p.cluster.clone(), p.state.clone(), p.transport.clone())).collect()
}
