//! `skybridge demo`: a whole federation on one machine, no cloud account. In this process, on
//! one tokio runtime and 127.0.0.1 only: a fresh CA and certificates, a federator with the
//! embedded store and a static catalog, three gateways named like clusters in AWS, Google
//! Cloud and Azure, sample HTTP backends for the catalog's services, and an emulated WAN (one
//! UDP delay relay per direction of each pair) so that every pair of clouds has its own RTT.
//! docs/demo.md describes the topology.
//!
//! [`start`] brings it up and [`Demo::shutdown`] takes it down; [`run`] is the command.

mod backend;
mod files;
mod links;
mod options;
mod ready;
mod text;
pub mod topology;
pub mod wan;

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use skybridge_api::config::ConfigError;
use skybridge_federator::app as fed_app;
use skybridge_gateway::app as gw_app;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use files::{FilesError, TRUST_DOMAIN};
pub use links::PairLink;
pub use options::{DemoArgs, DemoOptions};
pub use ready::Readiness;
pub use topology::{
    CLUSTERS, ClusterSpec, GatewayPorts, Layout, Ports, RttMatrix, SERVICES, ServiceSpec, TopologyError,
};

/// Why the demo could not start. Messages leave the underlying error to `source()`, as
/// `main` prints the whole chain.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error("cannot prepare the working directory {path}")]
    Dir { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error("the generated {what} config was rejected")]
    Config { what: String, source: ConfigError },
    #[error("cannot start the federator")]
    Federator(#[source] fed_app::StartError),
    #[error("cannot start gateway {cluster}")]
    Gateway { cluster: &'static str, source: gw_app::StartError },
    #[error("cannot bind {what} on {addr} (is another process using the port? try another --base-port)")]
    Bind { what: String, addr: SocketAddr, source: io::Error },
    #[error("gateways {} did not get the catalog within {waited:?}", gateways.join(", "))]
    NotReady { waited: Duration, gateways: Vec<String> },
    #[error("cannot write to the terminal")]
    Output(#[source] io::Error),
}

/// One started gateway.
#[derive(Debug, Clone, Copy)]
pub struct GatewayInfo {
    pub cluster: ClusterSpec,
    /// The addresses it actually bound.
    pub addrs: GatewayPorts,
}

/// A running demo.
pub struct Demo {
    /// The federator's REST API.
    pub api: SocketAddr,
    /// The federator's gRPC control listener.
    pub control: SocketAddr,
    /// The demo's endpoint for cutting and restoring links.
    pub links_api: SocketAddr,
    /// The working directory.
    pub dir: PathBuf,
    /// In [`CLUSTERS`] order.
    pub gateways: Vec<GatewayInfo>,
    /// One per pair of clusters.
    pub links: Arc<[PairLink]>,
    /// The UDP relay carrying what cluster `from` sends to `to`, keyed `(from, to)`.
    pub relays: BTreeMap<(usize, usize), SocketAddr>,
    pub rtt: RttMatrix,
    catalog_timeout: Duration,
    settle_timeout: Duration,
    parts: Parts,
}

/// Everything that runs and must be stopped, filled in as it starts so that a failed start
/// stops what already runs.
struct Parts {
    federator: Option<fed_app::Running>,
    gateways: Vec<gw_app::Running>,
    relays: Vec<wan::Relay>,
    /// Backends and the links endpoint.
    cancel: CancellationToken,
    tasks: TaskTracker,
    temp: Option<tempfile::TempDir>,
}

/// The addresses of what `launch` started.
struct Started {
    api: SocketAddr,
    control: SocketAddr,
    links_api: SocketAddr,
    gateways: Vec<GatewayInfo>,
    links: Arc<[PairLink]>,
    relays: BTreeMap<(usize, usize), SocketAddr>,
}

/// Starts the demo; returns once every listener is bound. The gateways get the catalog and
/// probe their peers shortly after: see [`Demo::wait_ready`].
pub async fn start(opts: DemoOptions) -> Result<Demo, DemoError> {
    let layout = Layout::new(opts.ports)?;
    let (dir, temp) = working_dir(opts.dir.as_deref())?;
    let mut parts = Parts {
        federator: None,
        gateways: Vec::new(),
        relays: Vec::new(),
        cancel: CancellationToken::new(),
        tasks: TaskTracker::new(),
        temp,
    };
    match launch(&opts, &layout, &dir, &mut parts).await {
        Ok(s) => Ok(Demo {
            api: s.api,
            control: s.control,
            links_api: s.links_api,
            dir,
            gateways: s.gateways,
            links: s.links,
            relays: s.relays,
            rtt: opts.rtt,
            catalog_timeout: opts.catalog_timeout,
            settle_timeout: opts.settle_timeout,
            parts,
        }),
        Err(e) => {
            parts.shutdown().await;
            Err(e)
        }
    }
}

/// `dir` (created) or a fresh temporary directory, as an absolute path: the generated configs
/// are parsed without a file to resolve relative paths against.
fn working_dir(dir: Option<&Path>) -> Result<(PathBuf, Option<tempfile::TempDir>), DemoError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| DemoError::Dir { path, source }
    };
    match dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(err(d))?;
            Ok((std::fs::canonicalize(d).map_err(err(d))?, None))
        }
        None => {
            let t = tempfile::Builder::new().prefix("skybridge-demo-").tempdir().map_err(err(&std::env::temp_dir()))?;
            Ok((std::fs::canonicalize(t.path()).map_err(err(t.path()))?, Some(t)))
        }
    }
}

async fn bind_tcp(what: String, addr: SocketAddr) -> Result<TcpListener, DemoError> {
    TcpListener::bind(addr).await.map_err(|source| DemoError::Bind { what, addr, source })
}

fn config_err(what: &str) -> impl FnOnce(ConfigError) -> DemoError + '_ {
    move |source| DemoError::Config { what: what.to_owned(), source }
}

async fn launch(opts: &DemoOptions, layout: &Layout, dir: &Path, parts: &mut Parts) -> Result<Started, DemoError> {
    files::write_identities(dir)?;

    let mut backends = BTreeMap::new();
    for (&(c, s), &addr) in &layout.backends {
        let service = SERVICES[s].short();
        let listener = bind_tcp(format!("the {service} backend of {}", CLUSTERS[c].id), addr).await?;
        backends.insert((c, s), listener.local_addr().expect("bound"));
        backend::spawn(listener, CLUSTERS[c].id, service, parts.cancel.clone(), &parts.tasks);
    }
    files::write_file(&dir.join("catalog.toml"), files::catalog_toml(&backends).as_bytes(), 0o644)?;

    let fed_text = files::federator_toml(dir, layout.control, opts.api);
    files::write_file(&dir.join("federator.toml"), fed_text.as_bytes(), 0o644)?;
    let fed_cfg = skybridge_federator::config::Config::parse(&fed_text).map_err(config_err("federator"))?;
    let federator = fed_app::start(fed_cfg).await.map_err(DemoError::Federator)?;
    let (api, control) = (federator.addrs.api, federator.addrs.control);
    parts.federator = Some(federator);

    // Relay sockets first: each gateway is configured to reach a peer at the relay's address,
    // and the relay forwards to the peer's tunnel once that gateway has bound it.
    let mut relay_sockets = BTreeMap::new();
    for (&(from, to), &addr) in &layout.relays {
        let what = format!("the WAN relay {} -> {}", CLUSTERS[from].id, CLUSTERS[to].id);
        let sock = UdpSocket::bind(addr).await.map_err(|source| DemoError::Bind { what, addr, source })?;
        relay_sockets.insert((from, to), sock);
    }
    let relays: BTreeMap<(usize, usize), SocketAddr> =
        relay_sockets.iter().map(|(&k, s)| (k, s.local_addr().expect("bound"))).collect();

    let mut gateways = Vec::new();
    for (i, cluster) in CLUSTERS.iter().enumerate() {
        let peers: Vec<(&str, SocketAddr)> =
            (0..CLUSTERS.len()).filter(|&j| j != i).map(|j| (CLUSTERS[j].id, relays[&(i, j)])).collect();
        let text = files::gateway_toml(dir, cluster, &layout.gateways[i], control, &peers);
        files::write_file(&dir.join(format!("{}.toml", cluster.id)), text.as_bytes(), 0o644)?;
        let cfg = skybridge_gateway::config::Config::parse(&text).map_err(config_err(cluster.id))?;
        let running = gw_app::start(cfg).await.map_err(|source| DemoError::Gateway { cluster: cluster.id, source })?;
        let b = &running.addrs;
        let addrs = GatewayPorts {
            tunnel: b.tunnel,
            sni: b.sni.expect("configured on"),
            http: b.http.expect("configured on"),
            admin: b.admin,
            dns: b.dns.expect("configured on"),
        };
        gateways.push(GatewayInfo { cluster: *cluster, addrs });
        parts.gateways.push(running);
    }

    let mut links = Vec::new();
    for (a, b, rtt) in opts.rtt.pairs() {
        let imp = wan::Impairment { delay: rtt / 2, jitter: opts.jitter, loss: 0.0 };
        let link = wan::Link::new(imp);
        for (from, to) in [(a, b), (b, a)] {
            let sock = relay_sockets.remove(&(from, to)).expect("a relay per ordered pair");
            let addr = relays[&(from, to)];
            let what = format!("the WAN relay {} -> {}", CLUSTERS[from].id, CLUSTERS[to].id);
            let relay = wan::udp_on(sock, gateways[to].addrs.tunnel, link.clone())
                .map_err(|source| DemoError::Bind { what, addr, source })?;
            parts.relays.push(relay);
        }
        links.push(PairLink { a, b, rtt, link });
    }
    let links: Arc<[PairLink]> = links.into();

    let listener = bind_tcp("the demo's links endpoint".into(), layout.links).await?;
    let links_api = listener.local_addr().expect("bound");
    let (router, stop) = (links::router(links.clone()), parts.cancel.clone());
    parts.tasks.spawn(
        async move {
            if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await {
                tracing::error!(error = %e, "the demo's links endpoint failed");
            }
        }
        .instrument(tracing::info_span!("demo_links", addr = %links_api)),
    );
    tracing::info!(dir = %dir.display(), %api, "demo started");
    Ok(Started { api, control, links_api, gateways, links, relays })
}

impl Parts {
    /// Stops in dependency order: gateways drain first (their goodbyes still cross the relays),
    /// then the federator, then backends, the links endpoint and the relays; the temporary
    /// directory goes last.
    async fn shutdown(self) {
        let mut draining = tokio::task::JoinSet::new();
        for g in self.gateways {
            let span = tracing::info_span!("demo_stop_gateway", cluster = %g.context().local);
            draining.spawn(g.shutdown().instrument(span));
        }
        while draining.join_next().await.is_some() {}
        if let Some(f) = self.federator {
            f.shutdown().await;
        }
        self.cancel.cancel();
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(3), self.tasks.wait()).await.is_err() {
            tracing::warn!(remaining = self.tasks.len(), "demo backends did not stop within 3s");
        }
        tracing::info!("demo backends and links endpoint stopped");
        for r in self.relays {
            r.stop().await;
        }
        if let Some(t) = self.temp {
            let path = t.path().to_owned();
            if let Err(e) = t.close() {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove the demo's temporary directory");
            }
        }
        tracing::info!("demo stopped");
    }
}

impl Demo {
    /// The link between two clusters named by id or cloud (`aws-demo` or `aws`).
    pub fn link(&self, a: &str, b: &str) -> Option<&wan::Link> {
        let (x, y) = (topology::cluster_index(a)?, topology::cluster_index(b)?);
        self.links.iter().find(|l| l.joins(x, y)).map(|l| &l.link)
    }

    /// Waits until every gateway has the catalog (an error after the catalog timeout), has
    /// probed every peer healthy and prefers for every service the cluster [`RttMatrix::expected_answer`]
    /// names (at most the settle timeout more; [`Readiness::Unsettled`] says what is not, then).
    pub async fn wait_ready(&self) -> Result<Readiness, DemoError> {
        let expect: Vec<ready::Expectation> = self
            .gateways
            .iter()
            .enumerate()
            .map(|(i, g)| ready::Expectation {
                cluster: g.cluster.id,
                admin: g.addrs.admin,
                routes: SERVICES.iter().map(|s| (s.host(), CLUSTERS[self.rtt.expected_answer(i, s)].id)).collect(),
            })
            .collect();
        match ready::wait(&expect, self.catalog_timeout, self.settle_timeout).await {
            Readiness::NoCatalog(gateways) => Err(DemoError::NotReady { waited: self.catalog_timeout, gateways }),
            r => Ok(r),
        }
    }

    /// What to print once ready: where everything is and commands to try.
    pub fn banner(&self, readiness: &Readiness) -> String {
        text::banner(self, readiness)
    }

    /// Stops everything: gateways drain, the federator stops, backends and relays close (their
    /// ports are free on return), and a temporary working directory is removed.
    pub async fn shutdown(self) {
        self.parts.shutdown().await;
    }
}

/// The `skybridge demo` command: starts, prints the banner to `out` once ready, runs until
/// `stop` completes (SIGINT/SIGTERM in the binary), then shuts down. A `stop` during start-up
/// still shuts down cleanly.
pub async fn run(
    opts: DemoOptions,
    stop: impl Future<Output = ()>,
    out: &mut (impl io::Write + ?Sized),
) -> Result<(), DemoError> {
    tokio::pin!(stop);
    // Polling `stop` from the start installs the signal handlers before anything runs.
    let mut stopped = false;
    let starting = start(opts);
    tokio::pin!(starting);
    let demo = loop {
        tokio::select! {
            d = &mut starting => break d?,
            _ = &mut stop, if !stopped => stopped = true,
        }
    };
    let result = if stopped { Ok(()) } else { serve(&demo, stop, out).await };
    demo.shutdown().await;
    result
}

/// Waits until ready (or `stop`), prints the banner, then waits for `stop`.
async fn serve(
    demo: &Demo,
    mut stop: Pin<&mut impl Future<Output = ()>>,
    out: &mut (impl io::Write + ?Sized),
) -> Result<(), DemoError> {
    let mut print = |text: &str| out.write_all(text.as_bytes()).and_then(|_| out.flush()).map_err(DemoError::Output);
    // Settling can take a few seconds (up to the settle timeout): say what is going on.
    print(&format!(
        "skybridge demo: started in {}; waiting for the gateways to get the catalog and probe each other...\n",
        demo.dir.display()
    ))?;
    let readiness = tokio::select! {
        r = demo.wait_ready() => r?,
        _ = &mut stop => return Ok(()),
    };
    print(&demo.banner(&readiness))?;
    stop.await;
    Ok(())
}
