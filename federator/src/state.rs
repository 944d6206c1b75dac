//! What the federator knows right now, shared by the core, the gateway control service and the
//! REST API. Writers are few (the core, one task per gateway); readers take cheap snapshots.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use skybridge_api::catalog::{GlobalCatalog, SourceId, UnixMillis};
use skybridge_api::model::{ClusterId, ServiceKey};
use tokio::sync::{broadcast, watch};

use crate::core::SourceStatus;
use crate::sources::now_millis;
use crate::store::{AnyStore, Event, GatewayRecord, Policy, Store};

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

/// One measured path between clusters, from a gateway's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySample {
    pub rtt_ms: Option<f64>,
    pub state: String,
    pub reported_at: UnixMillis,
    /// The gateway instance that measured it.
    pub by: String,
}

/// Shared federator state.
pub struct State {
    catalog: watch::Sender<Arc<GlobalCatalog>>,
    /// Bumped whenever the set of gateways (and their tunnel addresses) changes.
    gateways_changed: watch::Sender<u64>,
    sources: RwLock<BTreeMap<SourceId, SourceStatus>>,
    gateways: RwLock<BTreeMap<(ClusterId, String), GatewayState>>,
    latency: RwLock<BTreeMap<(ClusterId, ClusterId), LatencySample>>,
    policies: RwLock<BTreeMap<ServiceKey, Policy>>,
    events: broadcast::Sender<Event>,
    store: Arc<AnyStore>,
}

impl State {
    /// State starting from `catalog`, `policies` and known `gateways` (all shown disconnected).
    pub fn new(
        catalog: Arc<GlobalCatalog>,
        policies: BTreeMap<ServiceKey, Policy>,
        gateways: Vec<GatewayRecord>,
        store: Arc<AnyStore>,
    ) -> State {
        let gateways = gateways
            .into_iter()
            .map(|record| {
                let key = (record.cluster.clone(), record.instance.clone());
                let g = GatewayState {
                    record,
                    cloud: String::new(),
                    region: String::new(),
                    connected: false,
                    connected_since: None,
                    last_report: None,
                    nacks: 0,
                    last_nack: None,
                };
                (key, g)
            })
            .collect();
        State {
            catalog: watch::channel(catalog).0,
            gateways_changed: watch::channel(0).0,
            sources: RwLock::new(BTreeMap::new()),
            gateways: RwLock::new(gateways),
            latency: RwLock::new(BTreeMap::new()),
            policies: RwLock::new(policies),
            // Bounded: a slow SSE client misses events (and is told so) rather than growing memory.
            events: broadcast::channel(1024).0,
            store,
        }
    }

    /// The store, for API handlers that read history.
    pub fn store(&self) -> &Arc<AnyStore> {
        &self.store
    }

    /// The current catalog.
    pub fn catalog(&self) -> Arc<GlobalCatalog> {
        self.catalog.borrow().clone()
    }

    /// A receiver that sees every new catalog version.
    pub fn watch_catalog(&self) -> watch::Receiver<Arc<GlobalCatalog>> {
        self.catalog.subscribe()
    }

    /// Installs a new catalog version.
    pub fn publish(&self, c: Arc<GlobalCatalog>) {
        self.catalog.send_replace(c);
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
        let g = all.entry(key.clone()).or_insert_with(|| GatewayState {
            record: GatewayRecord {
                cluster: key.0.clone(),
                instance: key.1.clone(),
                version: String::new(),
                tunnel_addresses: Vec::new(),
                last_seen: 0,
                acked_version: 0,
            },
            cloud: String::new(),
            region: String::new(),
            connected: false,
            connected_since: None,
            last_report: None,
            nacks: 0,
            last_nack: None,
        });
        f(g);
        drop(all);
        if membership {
            self.gateways_changed.send_modify(|v| *v += 1);
        }
    }

    /// Records one gateway's measurements to its peers.
    pub fn report_latency(&self, from: &ClusterId, by: &str, samples: Vec<(ClusterId, Option<f64>, String)>) {
        let now = now_millis();
        let mut l = self.latency.write().expect("latency lock");
        for (to, rtt_ms, state) in samples {
            l.insert((from.clone(), to), LatencySample { rtt_ms, state, reported_at: now, by: by.to_owned() });
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

    /// Sets or deletes a policy (already persisted by the caller).
    pub fn set_policy(&self, key: ServiceKey, p: Option<Policy>) {
        let mut all = self.policies.write().expect("policies lock");
        match p {
            Some(p) => all.insert(key, p),
            None => all.remove(&key),
        };
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
