//! Wires one gateway top to bottom: certificates, tunnel endpoint, listeners, admin, and the
//! drain sequence. Tests run it in-process on `127.0.0.1:0`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::registry::Registry;
use quinn::Endpoint;
use skybridge_api::identity::Role;
use skybridge_api::serve::{Transport, serve_router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::Config;
use crate::context::{self, Context};
use crate::delivery::LocalDelivery;
use crate::listener::{self, Kind};
use crate::metrics::{Metrics, ResultLabels};
use crate::routing::Catalog;
use crate::telemetry::{self, Telemetry};
use crate::tls::{self, CertStore, TlsError, TlsFiles};
use crate::tunnel::{self, client::Pool, codes};
use crate::{admin, config, dns};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Telemetry(#[from] telemetry::TelemetryError),
    #[error("cannot bind {what} on {addr} (is another process using the port?)")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
}

/// The addresses actually bound (useful with port 0).
#[derive(Debug, Clone)]
pub struct Bound {
    pub tunnel: SocketAddr,
    /// The tunnel over TLS on TCP (`None`: `listen.tunnel_tcp = "off"`).
    pub tunnel_tcp: Option<SocketAddr>,
    pub sni: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub tcp: Vec<SocketAddr>,
    /// The `clusterset.local` DNS server, UDP and TCP on this one address (`None`: off).
    pub dns: Option<SocketAddr>,
}

/// A started gateway.
pub struct Running {
    pub addrs: Bound,
    ctx: Arc<Context>,
    /// In-flight client connections and ingress streams: what a drain waits for.
    work: TaskTracker,
    /// Peer connection loops, accept loops, admin, reload and sampling tasks.
    background: TaskTracker,
    stop_background: CancellationToken,
    endpoint: Endpoint,
}

/// The admin listener's accept queue.
const ADMIN_BACKLOG: usize = 128;

/// A TCP listener with `backlog` for its accept queue (`TcpListener::bind` takes 128, and a
/// burst of new connections past it waits a second for the SYN retransmit).
async fn bind(what: &'static str, addr: SocketAddr, backlog: usize) -> Result<TcpListener, StartError> {
    skybridge_api::serve::listen(addr, backlog).map_err(|source| StartError::Bind { what, addr, source })
}

/// A short stable version for a static config: FNV-1a of its parsed form.
fn static_version(cfg: &Config) -> String {
    let text = format!("{:?}{:?}", cfg.peers, cfg.services);
    let h = text.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3));
    format!("static-{h:016x}")
}

/// Starts every part of the gateway; returns once all listeners are bound.
pub async fn start(cfg: Config) -> Result<Running, StartError> {
    let l = &cfg.limits;
    let what = format!(
        "limits.max_connections ({}: 2 descriptors per egress connection, 1 per ingress stream) and \
         limits.admin_max_connections ({})",
        l.max_connections, l.admin_max_connections
    );
    skybridge_api::serve::fdlimit::ensure(3 * l.max_connections as u64 + l.admin_max_connections as u64, &what);
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let g = &cfg.gateway;
    // Refuses an expired, not yet valid or untrusted certificate, naming the file and dates.
    let certs = CertStore::load(TlsFiles::from(&cfg.tls), &g.trust_domain, Role::Gateway(g.cluster.clone()))?;
    certs.set_expiry_warning(cfg.tls.expiry_warning);
    set_expiry(&metrics, &certs);

    let transport = tunnel::transport(&cfg.limits);
    let mut server_cfg = tls::quic_server_config(&certs)?;
    server_cfg.transport_config(transport.clone());
    tunnel::bound_incoming(&mut server_cfg, &cfg.limits);
    let mut client_cfg = tls::quic_client_config(&certs)?;
    client_cfg.transport_config(transport);
    let tunnel_addr = cfg.listen.tunnel;
    let l = &cfg.limits;
    let bind_err = |source| StartError::Bind { what: "tunnel (UDP)", addr: tunnel_addr, source };
    let (socket, got_recv, got_send, tunnel_tcp) = bind_tunnel(&cfg, tunnel_addr)?;
    if got_recv < l.udp_recv_buffer || got_send < l.udp_send_buffer {
        tracing::warn!(
            asked_recv = l.udp_recv_buffer,
            got_recv,
            asked_send = l.udp_send_buffer,
            got_send,
            "tunnel UDP buffers are smaller than configured; raise net.core.rmem_max and net.core.wmem_max"
        );
    }
    let runtime = quinn::default_runtime().expect("started inside a tokio runtime");
    let mut endpoint =
        Endpoint::new(quinn::EndpointConfig::default(), Some(server_cfg), socket, runtime).map_err(bind_err)?;
    endpoint.set_default_client_config(client_cfg);

    let tcp_client = tokio_rustls::TlsConnector::from(Arc::new(
        certs.client_config(tls::ServerExpectation::GatewayNamedByServerName, &[skybridge_api::TUNNEL_ALPN])?,
    ));
    let fallback = (cfg.routing.tcp_fallback != config::TcpFallbackMode::Off).then(|| tunnel::client::TcpFallback {
        tls: tcp_client,
        limits: cfg.limits.clone(),
        after: cfg.routing.tcp_fallback_after,
        choice: cfg.routing.fallback(),
        always: cfg.routing.tcp_fallback == config::TcpFallbackMode::Always,
    });
    let pool = Pool::new(
        endpoint.clone(),
        fallback,
        g.cluster.clone(),
        l.connections_per_peer,
        l.handshake_timeout,
        cfg.routing.health(),
        metrics.clone(),
    );
    let delivery = LocalDelivery::new(l.connect_timeout, l.eject_duration, metrics.clone());
    let catalog = Catalog::from_config(&cfg, static_version(&cfg));
    let who = telemetry::Identity { cluster: &g.cluster, cloud: g.cloud, region: &g.region };
    let telemetry = Telemetry::start(&cfg.telemetry, who, &metrics)?;
    let identity = context::Identity {
        local: g.cluster.clone(),
        cloud: g.cloud,
        region: g.region.clone(),
        trust_domain: g.trust_domain.clone(),
    };
    let parts = context::Parts { catalog, pool, delivery, certs: certs.clone(), metrics: metrics.clone(), telemetry };
    let ctx =
        Arc::new(Context::new(identity, cfg.limits.clone(), cfg.routing.clone(), cfg.authorization.default, parts));

    // Before any listener accepts: a restarted gateway routes on its cached catalog at once.
    let restored = match &cfg.federator {
        Some(f) => Some(crate::federation::restore(&ctx, f).await),
        None => None,
    };

    let mut listeners = Vec::new();
    let mut addrs = Bound {
        tunnel: endpoint.local_addr().map_err(|source| StartError::Bind {
            what: "tunnel (UDP)",
            addr: tunnel_addr,
            source,
        })?,
        tunnel_tcp: None,
        sni: None,
        http: None,
        admin: tunnel_addr,
        tcp: Vec::new(),
        dns: None,
    };
    // Unset, it is the tunnel's own address and port (as bound: port 0 picks one for UDP first).
    let tunnel_tcp = match tunnel_tcp {
        Some(tl) => {
            let tl = TcpListener::from_std(tl).map_err(|source| StartError::Bind {
                what: "tunnel (TCP)",
                addr: addrs.tunnel,
                source,
            })?;
            addrs.tunnel_tcp = Some(tl.local_addr().expect("bound"));
            Some(tl)
        }
        None => None,
    };
    if let Some(a) = cfg.listen.sni.addr() {
        let tl = bind("SNI listener", a, cfg.limits.listen_backlog).await?;
        addrs.sni = Some(tl.local_addr().expect("bound"));
        listeners.push((tl, Kind::Sni));
    }
    if let Some(a) = cfg.listen.http.addr() {
        let tl = bind("HTTP listener", a, cfg.limits.listen_backlog).await?;
        addrs.http = Some(tl.local_addr().expect("bound"));
        listeners.push((tl, Kind::Http));
    }
    for t in &cfg.listen.tcp {
        let tl = bind("port-mapped TCP listener", t.address, cfg.limits.listen_backlog).await?;
        addrs.tcp.push(tl.local_addr().expect("bound"));
        let service = t.service.clone();
        listeners.push((tl, Kind::Tcp { service, port: t.port }));
    }
    let admin_addr = cfg.listen.admin;
    // Probes only: the std queue of 128, so that a flood of silent sockets waits in SYN
    // retransmits rather than queueing thousands deep ahead of a probe (the admin server evicts
    // only connections it has accepted).
    let admin_listener = bind("admin server", admin_addr, ADMIN_BACKLOG).await?;
    addrs.admin = admin_listener.local_addr().expect("bound");

    let work = TaskTracker::new();
    let background = TaskTracker::new();
    let stop_background = CancellationToken::new();

    background.spawn(
        tunnel::server::serve(endpoint.clone(), ctx.clone(), work.clone(), background.clone())
            .instrument(tracing::info_span!("tunnel_accept", addr = %addrs.tunnel)),
    );
    if let (Some(tl), Some(a)) = (tunnel_tcp, addrs.tunnel_tcp) {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(certs.server_config(&[skybridge_api::TUNNEL_ALPN])?));
        background.spawn(
            tunnel::tcp::serve(tl, acceptor, ctx.clone(), work.clone(), background.clone())
                .instrument(tracing::info_span!("tunnel_tcp_accept", addr = %a)),
        );
    }
    for (tl, kind) in listeners {
        let span = tracing::info_span!("accept", listener = kind.label(), addr = %tl.local_addr().expect("bound"));
        background.spawn(listener::serve(tl, kind, ctx.clone(), work.clone()).instrument(span));
    }
    if let Some(a) = cfg.listen.dns.addr() {
        let (udp, tcp) = bind_dns(a, cfg.limits.listen_backlog)?;
        let bound = udp.local_addr().expect("bound");
        addrs.dns = Some(bound);
        let server = dns::DnsServer::new(
            ctx.clone(),
            cfg.dns.clone(),
            servable(&cfg, &addrs),
            cfg.listen.egress_ips(),
            dns::DnsMetrics::register(&mut registry),
        );
        let stop = stop_background.clone();
        background.spawn(server.clone().resolve(stop.clone()).instrument(tracing::info_span!("dns_resolve")));
        background.spawn(
            server.clone().serve_udp(udp, stop.clone()).instrument(tracing::info_span!("dns_udp", addr = %bound)),
        );
        background.spawn(
            server
                .serve_tcp(tcp, stop, background.clone())
                .instrument(tracing::info_span!("dns_tcp_accept", addr = %bound)),
        );
    }
    let router = admin::router(ctx.clone(), Arc::new(registry));
    let (stop, m) = (stop_background.clone(), metrics.clone());
    background.spawn(
        serve_router("admin", admin_listener, router, Transport::Plain, cfg.limits.admin_http(), stop, move |e| {
            m.admin(e)
        })
        .instrument(tracing::info_span!("admin", addr = %addrs.admin)),
    );
    let (store, m, stop) = (certs.clone(), metrics.clone(), stop_background.clone());
    background.spawn(
        store
            .clone()
            .watch(cfg.tls.reload_interval, stop, move |r| {
                // Every tick: the warning window is entered by time passing, not by a reload.
                set_expiry(&m, &store);
                if let Some(result) = CertStore::reload_label(r) {
                    m.cert_reloads.get_or_create(&ResultLabels { result }).inc();
                }
            })
            .instrument(tracing::info_span!("cert_reload")),
    );
    background
        .spawn(tunnel::probe::run(ctx.clone(), stop_background.clone()).instrument(tracing::info_span!("prober")));
    background
        .spawn(tunnel::proof::run(ctx.clone(), stop_background.clone()).instrument(tracing::info_span!("proofs")));

    if let (Some(fed), Some(held)) = (cfg.federator.clone(), restored) {
        let advertised = if fed.tunnel_addresses.is_empty() {
            // Only a concrete address is useful to peers; a wildcard needs explicit addresses.
            if addrs.tunnel.ip().is_unspecified() {
                tracing::warn!(
                    "listen.tunnel is a wildcard and federator.tunnel_addresses is empty: peers cannot dial this gateway"
                );
                Vec::new()
            } else {
                vec![addrs.tunnel.to_string()]
            }
        } else {
            fed.tunnel_addresses.clone()
        };
        crate::federation::spawn(&ctx, fed, advertised, certs.clone(), held, &background, &stop_background);
    }

    ctx.set_ready();
    tracing::info!(cluster = %g.cluster, ?addrs, "gateway started");
    Ok(Running { addrs, ctx, work, background, stop_background, endpoint })
}

/// Binds the tunnel's UDP socket and its TCP listener. Unless `listen.tunnel_tcp` names its own
/// address, TCP takes the UDP socket's port number (peers dial one address for both); with port
/// 0 the pair is chosen together, retrying until a number is free for both.
fn bind_tunnel(
    cfg: &Config,
    udp: SocketAddr,
) -> Result<(std::net::UdpSocket, usize, usize, Option<std::net::TcpListener>), StartError> {
    let l = &cfg.limits;
    let udp_err = |source| StartError::Bind { what: "tunnel (UDP)", addr: udp, source };
    let tcp_bind = |addr: SocketAddr| {
        let tl = std::net::TcpListener::bind(addr)?;
        tl.set_nonblocking(true)?;
        Ok::<_, std::io::Error>(tl)
    };
    let explicit = match (&cfg.listen.tunnel_tcp, cfg.listen.tunnel_tcp_addr()) {
        (_, None) => {
            let (s, r, w) = tunnel::bind_udp(udp, l.udp_recv_buffer, l.udp_send_buffer).map_err(udp_err)?;
            return Ok((s, r, w, None));
        }
        (Some(_), Some(a)) => Some(a),
        (None, Some(_)) => None,
    };
    let mut attempts = if udp.port() == 0 { 64 } else { 1 };
    loop {
        attempts -= 1;
        let (s, r, w) = tunnel::bind_udp(udp, l.udp_recv_buffer, l.udp_send_buffer).map_err(udp_err)?;
        let tcp_addr = explicit.unwrap_or_else(|| s.local_addr().expect("bound"));
        match tcp_bind(tcp_addr) {
            Ok(tl) => return Ok((s, r, w, Some(tl))),
            Err(_) if attempts > 0 && explicit.is_none() => continue,
            Err(source) => return Err(StartError::Bind { what: "tunnel (TCP)", addr: tcp_addr, source }),
        }
    }
}

/// Binds DNS on UDP and TCP at one address; with port 0, one free number for both.
fn bind_dns(addr: SocketAddr, backlog: usize) -> Result<(tokio::net::UdpSocket, TcpListener), StartError> {
    let mut attempts = if addr.port() == 0 { 64 } else { 1 };
    loop {
        attempts -= 1;
        let udp = std::net::UdpSocket::bind(addr)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(tokio::net::UdpSocket::from_std)
            .map_err(|source| StartError::Bind { what: "DNS (UDP)", addr, source })?;
        let at = udp.local_addr().expect("bound");
        match skybridge_api::serve::listen(at, backlog) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(_) if attempts > 0 => continue,
            Err(source) => return Err(StartError::Bind { what: "DNS (TCP)", addr: at, source }),
        }
    }
}

/// What the egress listeners serve, with the ports clients dial for each: `dns.tls_port` and
/// `dns.http_port`, else the listeners' own; a port-mapped listener's `advertised_port`, else the
/// service port behind an answer address (a Service exposes it) or the listener's own port.
fn servable(cfg: &Config, addrs: &Bound) -> dns::zone::Servable {
    let tcp = cfg
        .listen
        .tcp
        .iter()
        .zip(&addrs.tcp)
        .map(|(t, bound)| {
            let key = t.service.clone();
            let own = if cfg.dns.answer.is_empty() { bound.port() } else { t.port };
            ((key, t.port), t.advertised_port.unwrap_or(own))
        })
        .collect();
    dns::zone::Servable {
        tls_port: addrs.sni.map(|a| cfg.dns.tls_port.unwrap_or(a.port())),
        http_port: addrs.http.map(|a| cfg.dns.http_port.unwrap_or(a.port())),
        tcp,
    }
}

fn set_expiry(m: &Metrics, certs: &CertStore) {
    let not_after = certs.current().not_after;
    let secs = not_after.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    m.cert_expiry.set(secs);
    m.cert_expiring.set(i64::from(certs.expiry(SystemTime::now()).expiring));
}

impl Running {
    /// The shared context (for tests and the future federator client).
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Drains: stop accepting, let in-flight connections finish up to the drain deadline, then
    /// cut what is left and close the tunnel.
    pub async fn shutdown(self) {
        let deadline = self.ctx.limits.drain_deadline;
        tracing::info!(?deadline, "draining");
        self.ctx.draining.cancel();
        self.work.close();
        if tokio::time::timeout(deadline, self.work.wait()).await.is_err() {
            tracing::warn!(remaining = self.work.len(), "drain deadline passed; closing remaining connections");
            self.ctx.force_close.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(2), self.work.wait()).await;
        }
        self.ctx.force_close.cancel();
        // Every connection span has ended by now; send them before the process goes.
        self.ctx.telemetry.shutdown(Duration::from_secs(5)).await;
        self.endpoint.close(codes::SHUTDOWN, b"shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
        self.stop_background.cancel();
        self.background.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.background.wait()).await;
        tracing::info!("gateway stopped");
    }
}
