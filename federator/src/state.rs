//! What the federator knows right now, shared by the core, the gateway control service and the
//! REST API. Writers are few (the core, one task per gateway); readers take cheap snapshots.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use skybridge_api::catalog::{GlobalCatalog, SourceId, UnixMillis, diff};
use skybridge_api::model::{ClusterId, ServiceKey};
use skybridge_api::proto::{delta_to_wire, policies_to_wire, wire};
use tokio::sync::{broadcast, watch};

use crate::core::SourceStatus;
use crate::sources::now_millis;
use crate::store::{AnyStore, Event, GatewayRecord, Policy, Store};

/// Services per snapshot part: keeps every message (and the encoder buffer tonic keeps per
/// stream, which with 50 gateways adds up) near 100 KB whatever the catalog's size.
pub const SNAPSHOT_PART_SERVICES: usize = 100;

/// Snapshot parts (without the gateway list) built for one catalog version.
struct CachedSnapshot {
    version: u64,
    parts: Arc<Vec<wire::Snapshot>>,
}

/// One gateway replica as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayState {
    pub record: GatewayRecord,
    pub cloud: String,
    pub region: String,
    pub connected: bool,
    pub connected_since: Option<UnixMillis>,
    pub last_report: Option<UnixMillis>,
    pub nacks: u64,
    pub last_nack: Option<String>,
}

impl GatewayState {
    /// A gateway known from `record`, not (yet) connected.
    pub fn known(record: GatewayRecord) -> Self {
        GatewayState {
            record,
            cloud: String::new(),
            region: String::new(),
            connected: false,
            connected_since: None,
            last_report: None,
            nacks: 0,
            last_nack: None,
        }
    }
}

/// One measured path between clusters, from a gateway's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySample {
    /// Smoothed RTT; `None` when not measured.
    pub rtt_ms: Option<f64>,
    /// The RTT the gateway ranks peers by; `None` when not measured or not reported.
    pub rank_rtt_ms: Option<f64>,
    pub state: String,
    pub reported_at: UnixMillis,
    /// The gateway instance that measured it.
    pub by: String,
}

/// One peer's measurement in a gateway's report.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerReport {
    pub to: ClusterId,
    pub rtt_ms: Option<f64>,
    pub rank_rtt_ms: Option<f64>,
    pub state: String,
}

/// A published catalog version, with the delta from the version before it computed once for
/// every gateway session (sessions at that previous version send it as is).
#[derive(Clone)]
pub struct Published {
    pub catalog: Arc<GlobalCatalog>,
    pub delta_from_previous: Option<Arc<wire::Delta>>,
}

/// Shared federator state.
pub struct State {
    catalog: watch::Sender<Published>,
    /// Bumped whenever the set of gateways (and their tunnel addresses) changes.
    gateways_changed: watch::Sender<u64>,
    /// The policies as sent to gateways, encoded once per change; a new value is a change
    /// every session pushes.
    policies_wire: watch::Sender<Arc<Vec<wire::ServicePolicy>>>,
    sources: RwLock<BTreeMap<SourceId, SourceStatus>>,
    gateways: RwLock<BTreeMap<(ClusterId, String), GatewayState>>,
    latency: RwLock<BTreeMap<(ClusterId, ClusterId), LatencySample>>,
    policies: RwLock<BTreeMap<ServiceKey, Policy>>,
    events: broadcast::Sender<Event>,
    store: Arc<AnyStore>,
    /// The wire snapshot of the current version, built once for every session that needs it.
    snapshot: std::sync::Mutex<Option<CachedSnapshot>>,
    /// Bounds snapshots in flight (each ~1 KB per service): a permit is held from sending until
    /// the gateway ACKs or NACKs, so a burst of (re)connecting gateways cannot exhaust memory.
    snapshot_permits: Arc<tokio::sync::Semaphore>,
}

impl State {
    /// State starting from `catalog`, `policies` and known `gateways` (all shown disconnected).
    pub fn new(
        catalog: Arc<GlobalCatalog>,
        policies: BTreeMap<ServiceKey, Policy>,
        gateways: Vec<GatewayRecord>,
        store: Arc<AnyStore>,
        concurrent_snapshots: usize,
    ) -> State {
        let gateways = gateways
            .into_iter()
            .map(|record| ((record.cluster.clone(), record.instance.clone()), GatewayState::known(record)))
            .collect();
        State {
            catalog: watch::channel(Published { catalog, delta_from_previous: None }).0,
            gateways_changed: watch::channel(0).0,
            policies_wire: watch::channel(Arc::new(policies_to_wire(&policies))).0,
            sources: RwLock::new(BTreeMap::new()),
            gateways: RwLock::new(gateways),
            latency: RwLock::new(BTreeMap::new()),
            policies: RwLock::new(policies),
            // Bounded: a slow SSE client misses events (and is told so) rather than growing memory.
            events: broadcast::channel(1024).0,
            store,
            snapshot: std::sync::Mutex::new(None),
            snapshot_permits: Arc::new(tokio::sync::Semaphore::new(concurrent_snapshots.max(1))),
        }
    }

    /// The store, for API handlers that read history.
    pub fn store(&self) -> &Arc<AnyStore> {
        &self.store
    }

    /// The current catalog.
    pub fn catalog(&self) -> Arc<GlobalCatalog> {
        self.catalog.borrow().catalog.clone()
    }

    /// A receiver that sees every new catalog version.
    pub fn watch_catalog(&self) -> watch::Receiver<Published> {
        self.catalog.subscribe()
    }

    /// Installs a new catalog version, computing its delta from the current one once.
    pub fn publish(&self, c: Arc<GlobalCatalog>) {
        let previous = self.catalog();
        let delta = Arc::new(delta_to_wire(&diff(&previous, &c), None, None));
        self.catalog.send_replace(Published { catalog: c, delta_from_previous: Some(delta) });
    }

    /// The snapshot parts of `catalog` (gateway and policy lists empty: the sender fills them
    /// in, as they change without a new version), built at most once per catalog version
    /// however many gateways (re)connect.
    pub fn snapshot_for(&self, catalog: &GlobalCatalog) -> Arc<Vec<wire::Snapshot>> {
        let mut cache = self.snapshot.lock().expect("snapshot cache lock");
        match &*cache {
            Some(c) if c.version == catalog.version => c.parts.clone(),
            _ => {
                let parts = Arc::new(skybridge_api::proto::snapshot_parts(
                    catalog,
                    Vec::new(),
                    Vec::new(),
                    SNAPSHOT_PART_SERVICES,
                ));
                *cache = Some(CachedSnapshot { version: catalog.version, parts: parts.clone() });
                parts
            }
        }
    }

    /// Waits for a slot to send a snapshot in.
    pub async fn snapshot_permit(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.snapshot_permits.clone().acquire_owned().await.expect("semaphore never closed")
    }

    /// Replaces the source health table.
    pub fn set_sources(&self, s: BTreeMap<SourceId, SourceStatus>) {
        *self.sources.write().expect("sources lock") = s;
    }

    /// Source health.
    pub fn sources(&self) -> BTreeMap<SourceId, SourceStatus> {
        self.sources.read().expect("sources lock").clone()
    }

    /// Every gateway replica known.
    pub fn gateways(&self) -> Vec<GatewayState> {
        self.gateways.read().expect("gateways lock").values().cloned().collect()
    }

    /// A receiver that changes when the gateway set changes.
    pub fn watch_gateways(&self) -> watch::Receiver<u64> {
        self.gateways_changed.subscribe()
    }

    /// Updates (or adds) a gateway; `membership` marks changes peers must learn about.
    pub fn update_gateway(&self, key: (ClusterId, String), membership: bool, f: impl FnOnce(&mut GatewayState)) {
        let mut all = self.gateways.write().expect("gateways lock");
        let g = all.entry(key.clone()).or_insert_with(|| {
            GatewayState::known(GatewayRecord {
                cluster: key.0.clone(),
                instance: key.1.clone(),
                version: String::new(),
                tunnel_addresses: Vec::new(),
                last_seen: 0,
                acked_version: 0,
            })
        });
        f(g);
        drop(all);
        if membership {
            self.gateways_changed.send_modify(|v| *v += 1);
        }
    }

    /// Records one gateway's measurements to its peers.
    pub fn report_latency(&self, from: &ClusterId, by: &str, samples: Vec<PeerReport>) {
        let now = now_millis();
        let mut l = self.latency.write().expect("latency lock");
        for PeerReport { to, rtt_ms, rank_rtt_ms, state } in samples {
            let sample = LatencySample { rtt_ms, rank_rtt_ms, state, reported_at: now, by: by.to_owned() };
            l.insert((from.clone(), to), sample);
        }
    }

    /// The cluster-to-cluster matrix.
    pub fn latency(&self) -> BTreeMap<(ClusterId, ClusterId), LatencySample> {
        self.latency.read().expect("latency lock").clone()
    }

    /// Current policies.
    pub fn policies(&self) -> BTreeMap<ServiceKey, Policy> {
        self.policies.read().expect("policies lock").clone()
    }

    /// Sets or deletes a policy (already persisted by the caller); every gateway session then
    /// pushes the new list.
    pub fn set_policy(&self, key: ServiceKey, p: Option<Policy>) {
        let mut all = self.policies.write().expect("policies lock");
        match p {
            Some(p) => all.insert(key, p),
            None => all.remove(&key),
        };
        // Encoded under the lock, so that concurrent writers publish in the order they wrote.
        self.policies_wire.send_replace(Arc::new(policies_to_wire(&all)));
    }

    /// A receiver of the policies as sent to gateways; it sees every change.
    pub fn watch_policies(&self) -> watch::Receiver<Arc<Vec<wire::ServicePolicy>>> {
        self.policies_wire.subscribe()
    }

    /// A receiver of live events (for SSE).
    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Logs and broadcasts an event; a store failure is logged, never fatal.
    pub async fn event(&self, kind: &str, message: String) {
        tracing::info!(kind, %message, "event");
        match self.store.append_event(now_millis(), kind, &message).await {
            Ok(e) => {
                let _ = self.events.send(e);
            }
            Err(e) => tracing::error!(error = %e, "recording an event failed"),
        }
    }
}
