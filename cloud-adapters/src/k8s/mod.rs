//! Kubernetes Multi-Cluster Services: one cluster's exported services, read from its API server.
//!
//! A [`ClusterWatch`] lists and watches, on one cluster, the ServiceExports of the configured
//! MCS API groups (GKE `net.gke.io/v1`, upstream `multicluster.x-k8s.io/v1alpha1`, AKS Fleet
//! `networking.fleet.azure.com/v1beta1` and `v1alpha1`), the Services and the EndpointSlices
//! of exported services, and produces the cluster's part of a [`SourceSnapshot`]:
//!
//! - a service is exported iff a ServiceExport with its namespace/name exists (in any group)
//!   and the Service exists; `exported_at` is the oldest such export's creation time;
//! - ports are the Service's TCP ports; the protocol comes from `appProtocol` or the port
//!   name (`https`/`tls` → tls, `http`/`http2`/`grpc` → http, else tcp);
//! - endpoints are the EndpointSlice addresses with the slice port of the same name, with
//!   `conditions.ready` (absent = ready) and `zone`.
//!
//! No CRD crates are needed: ServiceExports are read as `DynamicObject`s. A group whose CRD is
//! not installed counts as "no exports" and is checked again now and then.
//!
//! Behind the `testing` feature, [`fake::FakeApiServer`] serves the Kubernetes list/watch API
//! on loopback for tests.

mod client;
mod convert;
mod error;
mod runner;
mod store;
mod watch;

#[cfg(feature = "testing")]
pub mod fake;
#[cfg(all(test, feature = "testing"))]
pub(crate) mod tests;

use std::fmt;
use std::time::Duration;

use kube::Client;
use kube::discovery::ApiResource;
use skybridge_api::backoff::Backoff;
use skybridge_api::catalog::{ClusterInfo, SourceSnapshot};
use skybridge_api::source::{CatalogSource, ErrorKind, SourceError};
use tokio::sync::watch as tokio_watch;
use tokio::time::Instant;
use tracing::Instrument as _;

pub use client::{ApiServer, SharedToken, StaticToken, TokenError, TokenFile, TokenProvider};
pub use error::ConfigError;
pub(crate) use error::precedence;

/// A ServiceExport API group/version this source can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExportApi {
    /// GKE Multi-Cluster Services: `net.gke.io/v1`.
    Gke,
    /// The upstream MCS API (Submariner, Cilium, ...): `multicluster.x-k8s.io/v1alpha1`.
    Upstream,
    /// Azure Kubernetes Fleet Manager: `networking.fleet.azure.com/v1beta1`.
    AksFleet,
    /// Azure Kubernetes Fleet Manager, older installs: `networking.fleet.azure.com/v1alpha1`.
    /// A cluster serving both versions shows the same objects under each; exports are keyed
    /// by namespace/name, so they count once.
    AksFleetV1alpha1,
}

impl ExportApi {
    /// Every supported group.
    pub const ALL: [ExportApi; 4] =
        [ExportApi::Gke, ExportApi::Upstream, ExportApi::AksFleet, ExportApi::AksFleetV1alpha1];

    /// The API group.
    pub fn group(self) -> &'static str {
        match self {
            ExportApi::Gke => "net.gke.io",
            ExportApi::Upstream => "multicluster.x-k8s.io",
            ExportApi::AksFleet | ExportApi::AksFleetV1alpha1 => "networking.fleet.azure.com",
        }
    }

    /// The API version served by that group.
    pub fn version(self) -> &'static str {
        match self {
            ExportApi::Gke => "v1",
            ExportApi::Upstream => "v1alpha1",
            ExportApi::AksFleet => "v1beta1",
            ExportApi::AksFleetV1alpha1 => "v1alpha1",
        }
    }

    /// The ServiceExport resource of this group, for `Api::all_with`.
    pub fn api_resource(self) -> ApiResource {
        ApiResource {
            group: self.group().into(),
            version: self.version().into(),
            api_version: format!("{}/{}", self.group(), self.version()),
            kind: "ServiceExport".into(),
            plural: "serviceexports".into(),
        }
    }
}

impl fmt::Display for ExportApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "serviceexports.{}/{}", self.group(), self.version())
    }
}

/// Timeouts, paging and pacing; the defaults suit production.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Objects per list page (`limit`).
    pub page_size: u32,
    /// How long a burst of changes is gathered into one snapshot.
    pub debounce: Duration,
    /// TCP + TLS connect.
    pub connect_timeout: Duration,
    /// Writing a request.
    pub write_timeout: Duration,
    /// A list page or a watch start, until the response headers (and, for lists, the body).
    pub request_timeout: Duration,
    /// Server-side watch duration (`timeoutSeconds`); the client gives up on a silent stream
    /// 30 s after it.
    pub watch_timeout: Duration,
    /// Waits between retries after failures.
    pub backoff: Backoff,
    /// How often a ServiceExport group that is not installed is checked again.
    pub absent_recheck: Duration,
    /// A healthy source that has returned nothing for this long returns its unchanged
    /// snapshot again: watches only report changes, and the federator reads a source's last
    /// success as "alive", so a quiet source would otherwise look dead.
    pub heartbeat: Duration,
    /// How long a fleet waits for newly discovered members' first outcome before publishing
    /// without them, so that a restart does not publish an empty early snapshot.
    pub initial_sync: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            page_size: 500,
            debounce: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            watch_timeout: Duration::from_secs(290),
            backoff: Backoff { min: Duration::from_millis(500), max: Duration::from_secs(30) },
            absent_recheck: Duration::from_secs(60),
            heartbeat: Duration::from_secs(60),
            initial_sync: Duration::from_secs(30),
        }
    }
}

impl Tuning {
    /// The defaults with the retry pacing of a configured source.
    pub fn with_backoff(min: Duration, max: Duration) -> Self {
        Tuning { backoff: Backoff { min, max }, ..Tuning::default() }
    }
}

/// One cluster to watch.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The cluster as the catalog names it.
    pub cluster: ClusterInfo,
    /// Its API server and credentials.
    pub api: ApiServer,
    /// Which ServiceExport groups to read (usually [`ExportApi::ALL`]).
    pub export_apis: Vec<ExportApi>,
    /// Timeouts and pacing.
    pub tuning: Tuning,
}

impl ClusterConfig {
    /// A cluster with every ServiceExport group and default tuning.
    pub fn new(cluster: ClusterInfo, api: ApiServer) -> Self {
        ClusterConfig { cluster, api, export_apis: ExportApi::ALL.to_vec(), tuning: Tuning::default() }
    }
}

/// A [`CatalogSource`] for one Kubernetes cluster's MCS exports. Does no I/O until the first
/// [`CatalogSource::next`]; then a background task (stopped when this is dropped) keeps
/// list/watch connections open and `next` returns whenever the snapshot changed.
pub struct ClusterWatch {
    setup: Option<runner::Setup>,
    running: Option<Running>,
}

struct Running {
    rx: tokio_watch::Receiver<Option<runner::Outcome>>,
    task: tokio::task::JoinHandle<()>,
    heartbeat: Duration,
    /// When `next` last returned, and whether with a snapshot: heartbeats only while healthy.
    returned: Option<(Instant, bool)>,
}

impl Running {
    fn returning(&mut self, outcome: runner::Outcome) -> runner::Outcome {
        self.returned = Some((Instant::now(), outcome.is_ok()));
        outcome
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for ClusterWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterWatch").field("started", &self.running.is_some()).finish_non_exhaustive()
    }
}

impl ClusterWatch {
    /// Builds the client for `config.api` (TLS set-up, no I/O).
    pub fn new(config: ClusterConfig) -> Result<Self, ConfigError> {
        let client = client::build(&config.api, &config.tuning)?;
        let server = format!("the API server of cluster {} ({})", config.cluster.id, config.api.url);
        Ok(Self::start_with(client, server, config.cluster, config.export_apis, config.tuning))
    }

    /// Uses a ready kube client (from a kubeconfig or the in-cluster config). Its own timeouts
    /// apply to connections; `tuning` still bounds each request.
    pub fn with_client(client: Client, cluster: ClusterInfo, export_apis: Vec<ExportApi>, tuning: Tuning) -> Self {
        let server = format!("the API server of cluster {}", cluster.id);
        Self::start_with(client, server, cluster, export_apis, tuning)
    }

    fn start_with(
        client: Client,
        server: String,
        cluster: ClusterInfo,
        export_apis: Vec<ExportApi>,
        tuning: Tuning,
    ) -> Self {
        let setup = runner::Setup { client, cluster, export_apis, tuning, server };
        ClusterWatch { setup: Some(setup), running: None }
    }

    /// Spawns the background task on first use.
    fn running(&mut self) -> Option<&mut Running> {
        if let Some(setup) = self.setup.take() {
            let (tx, rx) = tokio_watch::channel(None);
            let span = tracing::info_span!("k8s_watch", cluster = %setup.cluster.id);
            let heartbeat = setup.tuning.heartbeat;
            let task = tokio::spawn(runner::run(setup, tx).instrument(span));
            self.running = Some(Running { rx, task, heartbeat, returned: None });
        }
        self.running.as_mut()
    }
}

impl CatalogSource for ClusterWatch {
    fn kind(&self) -> &'static str {
        "k8s-mcs"
    }

    async fn next(&mut self) -> Result<SourceSnapshot, SourceError> {
        let stopped = || SourceError::new(ErrorKind::Unavailable, "the Kubernetes watch task stopped; see the logs");
        let Some(running) = self.running() else { return Err(stopped()) };
        loop {
            let beat = match running.returned {
                Some((at, true)) => Some(at + running.heartbeat),
                _ => None,
            };
            // `changed` is cancel-safe: a dropped `next` loses nothing, the value stays
            // unseen until the next call.
            tokio::select! {
                changed = running.rx.changed() => {
                    changed.map_err(|_| stopped())?;
                    let current = running.rx.borrow_and_update().clone();
                    if let Some(outcome) = current {
                        return running.returning(outcome);
                    }
                }
                _ = sleep_until(beat), if beat.is_some() => {
                    let current = running.rx.borrow_and_update().clone();
                    if let Some(outcome) = current {
                        return running.returning(outcome);
                    }
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}
