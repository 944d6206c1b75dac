//! What the federator knows right now, shared by the core, the gateway control service and the
//! REST API. Writers are few (the core, one task per gateway); readers take cheap snapshots.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};

use serde::Serialize;
use skybridge_api::catalog::{GlobalCatalog, SourceId, UnixMillis, diff};
use skybridge_api::model::{ClusterId, ServiceKey};
use skybridge_api::proto::{WirePolicies, delta_to_wire, wire};
use skybridge_api::routing::DefaultAction;
use tokio::sync::{broadcast, watch};

use crate::core::SourceStatus;
use crate::paths::PathEvent;
use crate::policies::{FileChange, PolicyLayers};
use crate::sources::now_millis;
use crate::store::etcd::records::{CertificateStatus, PeerSample, PresenceRecord, ReplicaRecord, Role};
use crate::store::{AnyStore, Event, GatewayRecord, Policy, Store};

/// A gateway: (cluster, instance).
pub type GatewayKey = (ClusterId, String);

/// Shows the newest of other replicas' sessions of a gateway (or none: disconnected).
fn show_remote(g: &mut GatewayState, sessions: &BTreeMap<String, PresenceRecord>) {
    match sessions.iter().max_by_key(|(_, p)| p.since) {
        Some((r, p)) => {
            g.connected = true;
            g.replica = Some(r.clone());
            g.connected_since = Some(p.since);
            g.cloud = p.cloud.clone();
            g.region = p.region.clone();
            g.record.acked_version = p.acked_version;
            g.nacks = p.nacks;
            g.last_nack = p.last_nack.clone();
            g.last_report = p.last_report;
            g.peers = p.peers.clone();
        }
        None => {
            g.connected = false;
            g.replica = None;
        }
    }
}

/// Bounds of the shared state.
#[derive(Debug, Clone, Copy)]
pub struct StateLimits {
    /// Snapshots being sent at once.
    pub concurrent_snapshots: usize,
    /// Catalog deltas kept for gateways catching up.
    pub catalog_history: usize,
}

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
    /// The federator replica holding its session (when connected).
    pub replica: Option<String>,
    /// This replica's session of it (0: none): only that session may change or end it, not an
    /// older one of the same gateway that is still winding down.
    #[serde(skip)]
    pub session: u64,
    /// Its last report's measurements (what other replicas learn through the store).
    #[serde(skip)]
    pub peers: Vec<PeerSample>,
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
            replica: None,
            session: 0,
            peers: Vec::new(),
        }
    }

    /// What other replicas are told of this gateway's session.
    pub fn presence(&self) -> PresenceRecord {
        PresenceRecord {
            since: self.connected_since.unwrap_or_default(),
            cloud: self.cloud.clone(),
            region: self.region.clone(),
            acked_version: self.record.acked_version,
            nacks: self.nacks,
            last_nack: self.last_nack.clone(),
            last_report: self.last_report,
            peers: self.peers.clone(),
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
    /// `quic` or `tcp` (TLS over TCP: UDP is blocked on the path).
    pub transport: String,
    /// Seconds on that transport since it last changed, as reported; `None` when it never did.
    pub transport_for_s: Option<u64>,
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
    pub transport: String,
    pub transport_for_s: Option<u64>,
}

/// A published catalog version, with the delta from the version before it computed once for
/// every gateway session (sessions at that previous version send it as is).
#[derive(Debug, Clone)]
pub struct Published {
    pub catalog: Arc<GlobalCatalog>,
    pub delta_from_previous: Option<Arc<wire::Delta>>,
    /// The digest of the version the delta starts from.
    pub previous_digest: u64,
}

/// The deltas between the last few published versions, so that a gateway reconnecting with
/// a recent version (from another replica, or after a short break) catches up with deltas
/// instead of a snapshot. Deltas are small, so keeping a few dozen costs little.
#[derive(Debug)]
pub struct History {
    cap: usize,
    /// (digest of `from_version`, delta), oldest first, each starting where the previous ends.
    deltas: VecDeque<(u64, Arc<wire::Delta>)>,
}

impl History {
    /// Keeps at most `cap` deltas.
    pub fn new(cap: usize) -> History {
        History { cap, deltas: VecDeque::new() }
    }

    /// Records a published version; a gap (a version published without its delta) starts over.
    pub fn push(&mut self, p: &Published) {
        let Some(d) = &p.delta_from_previous else { return self.deltas.clear() };
        if self.deltas.back().is_some_and(|(_, last)| last.to_version != d.from_version) {
            self.deltas.clear();
        }
        self.deltas.push_back((p.previous_digest, d.clone()));
        while self.deltas.len() > self.cap {
            self.deltas.pop_front();
        }
    }

    /// The deltas from `(version, digest)` to `current`, when the history reaches back to it.
    pub fn chain(&self, version: u64, digest: u64, current: &GlobalCatalog) -> Option<Vec<Arc<wire::Delta>>> {
        // Version 0 is "holds nothing": there is no base to apply a delta to.
        if version == 0 {
            return None;
        }
        let start =
            self.deltas.iter().position(|(from_digest, d)| d.from_version == version && *from_digest == digest)?;
        let chain: Vec<_> = self.deltas.iter().skip(start).map(|(_, d)| d.clone()).collect();
        let last = chain.last()?;
        (last.to_version == current.version && last.to_digest == current.digest).then_some(chain)
    }
}

/// The store as the API shows it: reachable or not, since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreHealth {
    pub backend: &'static str,
    /// `ok` or `degraded` (the store cannot be reached: serving the last catalog read-only).
    pub state: &'static str,
    pub since: UnixMillis,
    pub error: Option<String>,
}

/// Who this process is among the federator replicas.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub started_at: UnixMillis,
    /// The only replica (embedded store): what it writes is in effect at once. With etcd every
    /// replica applies writes (events, policies) from its watch, in the store's order, so that
    /// they are neither applied twice nor out of order.
    pub single_node: bool,
}

/// Shared federator state.
pub struct State {
    catalog: watch::Sender<Published>,
    /// Bumped whenever the set of gateways (and their tunnel addresses) changes.
    gateways_changed: watch::Sender<u64>,
    /// The policies as sent to gateways, encoded once per change; a new value is a change
    /// every session pushes.
    policies_wire: watch::Sender<Arc<WirePolicies>>,
    sources: RwLock<BTreeMap<SourceId, SourceStatus>>,
    gateways: RwLock<BTreeMap<(ClusterId, String), GatewayState>>,
    latency: RwLock<BTreeMap<(ClusterId, ClusterId), LatencySample>>,
    /// The gateways' egress traffic, as they report it.
    traffic: RwLock<crate::traffic::TrafficLog>,
    /// Each gateway's latest reachability proofs, as it reported them.
    proofs: RwLock<BTreeMap<GatewayKey, Vec<crate::api::dto::ProofDto>>>,
    policies: RwLock<PolicyLayers>,
    events: broadcast::Sender<Event>,
    store: Arc<AnyStore>,
    identity: Identity,
    history: std::sync::Mutex<History>,
    /// Every replica, as the store lists them (a single one with the embedded store).
    replicas: RwLock<BTreeMap<String, ReplicaRecord>>,
    /// This replica's role and since when.
    role: watch::Sender<(Role, UnixMillis)>,
    store_health: RwLock<StoreHealth>,
    /// Keys in the store this federator cannot use: key → why.
    problems: RwLock<BTreeMap<String, String>>,
    /// Why the leader's last catalog write failed, while it keeps failing.
    write_error: RwLock<Option<String>>,
    /// This replica's own certificate.
    certificate: RwLock<CertificateStatus>,
    /// Confirmations of held removals, to the merge core while this replica leads.
    confirmations: std::sync::Mutex<Option<tokio::sync::mpsc::Sender<SourceId>>>,
    /// Sessions held by other replicas, per gateway: replica → what it reported.
    remote: RwLock<BTreeMap<GatewayKey, BTreeMap<String, PresenceRecord>>>,
    /// Bumped when a session of this replica changes what other replicas should know of it.
    local_changed: watch::Sender<u64>,
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
        limits: StateLimits,
        identity: Identity,
    ) -> State {
        let gateways = gateways
            .into_iter()
            .map(|record| ((record.cluster.clone(), record.instance.clone()), GatewayState::known(record)))
            .collect();
        let health = StoreHealth { backend: store.backend(), state: "ok", since: identity.started_at, error: None };
        // One replica of its own with the embedded store; etcd lists them all.
        let role = match &*store {
            AnyStore::Embedded(_) => Role::Leader,
            AnyStore::Etcd(_) => Role::Follower,
        };
        let policies = PolicyLayers::new(policies, DefaultAction::Allow);
        State {
            catalog: watch::channel(Published { catalog, delta_from_previous: None, previous_digest: 0 }).0,
            gateways_changed: watch::channel(0).0,
            policies_wire: watch::channel(Arc::new(policies.wire())).0,
            sources: RwLock::new(BTreeMap::new()),
            gateways: RwLock::new(gateways),
            latency: RwLock::new(BTreeMap::new()),
            traffic: RwLock::default(),
            proofs: RwLock::default(),
            policies: RwLock::new(policies),
            // Bounded: a slow SSE client misses events (and is told so) rather than growing memory.
            events: broadcast::channel(1024).0,
            store,
            snapshot: std::sync::Mutex::new(None),
            snapshot_permits: Arc::new(tokio::sync::Semaphore::new(limits.concurrent_snapshots.max(1))),
            history: std::sync::Mutex::new(History::new(limits.catalog_history)),
            replicas: RwLock::new(BTreeMap::new()),
            role: watch::channel((role, identity.started_at)).0,
            store_health: RwLock::new(health),
            problems: RwLock::new(BTreeMap::new()),
            write_error: RwLock::new(None),
            certificate: RwLock::new(CertificateStatus::default()),
            confirmations: std::sync::Mutex::new(None),
            remote: RwLock::new(BTreeMap::new()),
            local_changed: watch::channel(0).0,
            identity,
        }
    }

    /// Who this replica is.
    pub fn identity(&self) -> &Identity {
        &self.identity
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

    /// Installs a new catalog version, computing its delta from the current one once. A
    /// version already served (the same version and digest) is ignored.
    pub fn publish(&self, c: Arc<GlobalCatalog>) {
        let previous = self.catalog();
        if previous.version == c.version && previous.digest == c.digest {
            return;
        }
        let delta = Arc::new(delta_to_wire(&diff(&previous, &c), None, None));
        let published = Published { catalog: c, delta_from_previous: Some(delta), previous_digest: previous.digest };
        self.history.lock().expect("history lock").push(&published);
        self.catalog.send_replace(published);
    }

    /// Runs `f` on the delta history (sessions opening read it).
    pub fn with_history<T>(&self, f: impl FnOnce(&History) -> T) -> T {
        f(&self.history.lock().expect("history lock"))
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
    pub fn report_latency(&self, from: &ClusterId, by: &str, samples: Vec<PeerReport>) -> Vec<PathEvent> {
        self.report_latency_at(from, by, samples, now_millis())
    }

    /// Records measurements reported at `at`; an older report than the one held for a path
    /// (another replica's, arriving late) does not replace it. Returns the path events the
    /// changes make (see [`crate::paths::transition`]).
    pub fn report_latency_at(
        &self,
        from: &ClusterId,
        by: &str,
        samples: Vec<PeerReport>,
        at: UnixMillis,
    ) -> Vec<PathEvent> {
        let mut l = self.latency.write().expect("latency lock");
        let mut events = Vec::new();
        for PeerReport { to, rtt_ms, rank_rtt_ms, state, transport, transport_for_s } in samples {
            let key = (from.clone(), to);
            let before = l.get(&key);
            if before.is_some_and(|s| s.reported_at > at) {
                continue;
            }
            let before = before.map(|s| (s.state.as_str(), s.transport.as_str()));
            events.extend(crate::paths::transition(&key.0, &key.1, before, &state, &transport));
            let s = LatencySample {
                rtt_ms,
                rank_rtt_ms,
                state,
                transport,
                transport_for_s,
                reported_at: at,
                by: by.to_owned(),
            };
            l.insert(key, s);
        }
        events
    }

    /// Records a gateway's traffic counters (cumulative since `since`, Unix ms).
    pub fn report_traffic(
        &self,
        gateway: (ClusterId, String),
        since: u64,
        entries: BTreeMap<crate::traffic::Entry, crate::traffic::Counters>,
    ) {
        self.traffic.write().expect("traffic lock").record(gateway, since, now_millis(), entries);
    }

    /// Replaces a gateway's proofs with those of its latest report.
    pub fn report_proofs(&self, gateway: GatewayKey, proofs: Vec<crate::api::dto::ProofDto>) {
        self.proofs.write().expect("proofs lock").insert(gateway, proofs);
    }

    /// The latest proof of every (service, port, source cluster, target cluster): among a
    /// cluster's gateway instances, the newest.
    pub fn proofs(&self) -> Vec<crate::api::dto::ProofDto> {
        let all = self.proofs.read().expect("proofs lock");
        let mut latest: BTreeMap<(String, u16, String, String), crate::api::dto::ProofDto> = BTreeMap::new();
        for p in all.values().flatten() {
            let key = (p.service.clone(), p.port, p.from.clone(), p.to.clone());
            if latest.get(&key).is_none_or(|q| q.at < p.at) {
                latest.insert(key, p.clone());
            }
        }
        let mut out: Vec<_> = latest.into_values().collect();
        // Failing first: what an operator looks for.
        out.sort_by_key(|p| p.ok);
        out
    }

    /// The federation's traffic at `now`.
    pub fn traffic(&self, now: UnixMillis) -> crate::traffic::TrafficResponse {
        self.traffic.read().expect("traffic lock").view(now)
    }

    /// The cluster-to-cluster matrix.
    pub fn latency(&self) -> BTreeMap<(ClusterId, ClusterId), LatencySample> {
        self.latency.read().expect("latency lock").clone()
    }

    /// The policies in effect (the file's and the API's).
    pub fn policies(&self) -> BTreeMap<ServiceKey, Policy> {
        self.policies.read().expect("policies lock").effective()
    }

    /// Both layers of policies, to ask where one comes from.
    pub fn policy_layers(&self) -> PolicyLayers {
        self.policies.read().expect("policies lock").clone()
    }

    /// Sets or deletes an API policy (already persisted by the caller); every gateway session
    /// then pushes the new list. Setting what is already there changes nothing (a replica sees
    /// its own writes again through the store's watch).
    pub fn set_policy(&self, key: ServiceKey, p: Option<Policy>) {
        self.update_policies(|l| l.set_api(key, p));
    }

    /// Replaces the policies from the policies file; what changed among them.
    pub fn set_file_policies(&self, file: BTreeMap<ServiceKey, Policy>) -> FileChange {
        let mut change = FileChange::default();
        self.update_policies(|l| {
            change = l.set_file(file);
            !change.is_empty()
        });
        change
    }

    /// Sets the federation's `[authorization] default`, pushed with the policies.
    pub fn set_authorization_default(&self, default: DefaultAction) {
        self.update_policies(|l| l.set_default(default));
    }

    /// Sets the trust domains distributed to gateways (after a certificate reload, say).
    pub fn set_distributed_trust(&self, trust: Vec<wire::TrustDomain>) {
        self.update_policies(|l| l.set_trust(trust));
    }

    /// Changes the layers with `f`; when it reports a change, every session pushes the result.
    fn update_policies(&self, f: impl FnOnce(&mut PolicyLayers) -> bool) {
        let mut layers = self.policies.write().expect("policies lock");
        if f(&mut layers) {
            // Encoded under the lock, so that concurrent writers publish in the order they wrote.
            self.policies_wire.send_replace(Arc::new(layers.wire()));
        }
    }

    /// A receiver of the policies as sent to gateways; it sees every change.
    pub fn watch_policies(&self) -> watch::Receiver<Arc<WirePolicies>> {
        self.policies_wire.subscribe()
    }

    /// A receiver of live events (for SSE).
    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Logs, records and broadcasts an event; a store failure is logged, never fatal.
    pub async fn event(&self, kind: &str, message: String) {
        tracing::info!(kind, %message, "event");
        match self.store.append_event(now_millis(), kind, &message).await {
            Ok(e) if self.identity.single_node => self.broadcast_event(e),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "recording an event failed"),
        }
    }

    /// Sends an event to live subscribers (SSE).
    pub fn broadcast_event(&self, e: Event) {
        let _ = self.events.send(e);
    }

    /// This replica's role and since when.
    pub fn role(&self) -> (Role, UnixMillis) {
        *self.role.borrow()
    }

    /// A receiver that sees every role change.
    pub fn watch_role(&self) -> watch::Receiver<(Role, UnixMillis)> {
        self.role.subscribe()
    }

    /// Changes this replica's role (no-op when unchanged).
    pub fn set_role(&self, role: Role, now: UnixMillis) {
        self.role.send_if_modified(|r| {
            let changed = r.0 != role;
            if changed {
                *r = (role, now);
            }
            changed
        });
    }

    /// The store's health.
    pub fn store_health(&self) -> StoreHealth {
        self.store_health.read().expect("store health lock").clone()
    }

    /// Records whether the store answers (`error` None) or not; the time only moves on a change.
    pub fn set_store_health(&self, error: Option<String>, now: UnixMillis) {
        let mut h = self.store_health.write().expect("store health lock");
        let state = if error.is_some() { "degraded" } else { "ok" };
        if h.state != state {
            h.since = now;
        }
        h.state = state;
        h.error = error;
    }

    /// Keys in the store this federator cannot use, with why.
    pub fn store_problems(&self) -> BTreeMap<String, String> {
        self.problems.read().expect("problems lock").clone()
    }

    /// Connects (Some) or disconnects (None) the merge core's confirmation queue.
    pub fn set_confirmations(&self, tx: Option<tokio::sync::mpsc::Sender<SourceId>>) {
        *self.confirmations.lock().expect("confirmations lock") = tx;
    }

    /// Hands an operator's confirmation of `source`'s held removal to the merge core; false
    /// when this replica does not run it (a follower: the confirmation goes through the store).
    pub fn confirm_removal(&self, source: &str) -> bool {
        let tx = self.confirmations.lock().expect("confirmations lock").clone();
        tx.is_some_and(|tx| tx.try_send(source.to_owned()).is_ok())
    }

    /// Why this (leading) replica cannot write catalog versions, while it cannot.
    pub fn write_error(&self) -> Option<String> {
        self.write_error.read().expect("write error lock").clone()
    }

    /// This replica's own certificate.
    pub fn certificate(&self) -> CertificateStatus {
        *self.certificate.read().expect("certificate lock")
    }

    /// Records this replica's certificate (after a reload, or as its warning window nears);
    /// other replicas learn of a change through its record.
    pub fn set_certificate(&self, c: CertificateStatus) {
        let changed = std::mem::replace(&mut *self.certificate.write().expect("certificate lock"), c) != c;
        if changed {
            self.local_changed();
        }
    }

    /// Records (Some) or clears (None) a failing catalog write.
    pub fn set_write_error(&self, e: Option<String>) {
        *self.write_error.write().expect("write error lock") = e;
    }

    /// Replaces the list of unusable keys.
    pub fn set_store_problems(&self, problems: BTreeMap<String, String>) {
        *self.problems.write().expect("problems lock") = problems;
    }

    /// Every replica (with the embedded store: this one). This replica's own entry is what it
    /// knows now, not what it last wrote: during a store outage the two differ.
    pub fn replicas(&self) -> BTreeMap<String, ReplicaRecord> {
        let mut all = self.replicas.read().expect("replicas lock").clone();
        let (role, since) = self.role();
        let c = self.catalog();
        let name = self.identity.name.clone();
        let written = all.get(&name);
        let me = ReplicaRecord {
            name: name.clone(),
            role,
            role_since: since,
            catalog_version: c.version,
            version_since: written.filter(|w| w.catalog_version == c.version).map_or(since, |w| w.version_since),
            started_at: self.identity.started_at,
            gateways: self.local_gateways().len(),
            software: env!("CARGO_PKG_VERSION").into(),
            certificate: self.certificate(),
        };
        all.insert(name, me);
        all
    }

    /// Sets (Some) or removes (None) one replica's record.
    pub fn set_replica(&self, name: &str, r: Option<ReplicaRecord>) {
        let mut all = self.replicas.write().expect("replicas lock");
        match r {
            Some(r) => drop(all.insert(name.to_owned(), r)),
            None => drop(all.remove(name)),
        }
    }

    /// Forgets every replica record (before a full reload from the store).
    pub fn clear_replicas(&self) {
        self.replicas.write().expect("replicas lock").clear();
    }

    /// A receiver that changes when a local session changes what other replicas should know.
    pub fn watch_local(&self) -> watch::Receiver<u64> {
        self.local_changed.subscribe()
    }

    fn local_changed(&self) {
        self.local_changed.send_modify(|v| *v += 1);
    }

    /// The gateways whose sessions this replica holds, as other replicas are told of them.
    pub fn local_gateways(&self) -> BTreeMap<GatewayKey, PresenceRecord> {
        let me = &self.identity.name;
        self.gateways
            .read()
            .expect("gateways lock")
            .iter()
            .filter(|(_, g)| g.connected && g.replica.as_deref() == Some(me.as_str()))
            .map(|(k, g)| (k.clone(), g.presence()))
            .collect()
    }

    /// A session of this replica started, changed or ended.
    pub fn update_local(&self, key: GatewayKey, membership: bool, f: impl FnOnce(&mut GatewayState)) {
        let me = self.identity.name.clone();
        let k = key.clone();
        self.update_gateway(key, membership, |g| {
            f(g);
            if g.connected {
                g.replica = Some(me);
            } else {
                // The gateway may already be connected to another replica. Read here, under
                // the gateways lock, so a session another replica reports meanwhile is seen.
                let remote = self.remote.read().expect("remote lock");
                show_remote(g, remote.get(&k).unwrap_or(&BTreeMap::new()));
            }
        });
        self.local_changed();
    }

    /// Forgets a gateway whose record the store removed, unless a session of this replica
    /// holds it: then the record is returned, to be written again.
    pub fn remove_unless_local(&self, key: &GatewayKey) -> Option<GatewayRecord> {
        let me = self.identity.name.as_str();
        let kept = self
            .gateways
            .read()
            .expect("gateways lock")
            .get(key)
            .filter(|g| g.connected && g.replica.as_deref() == Some(me))
            .map(|g| g.record.clone());
        if kept.is_none() {
            self.remove_gateway(key);
        }
        kept
    }

    /// Another replica's session of `key` appeared, changed (Some) or ended (None).
    pub fn apply_remote(&self, key: GatewayKey, replica: &str, p: Option<PresenceRecord>) {
        if replica == self.identity.name {
            return;
        }
        let sessions = {
            let mut remote = self.remote.write().expect("remote lock");
            let sessions = remote.entry(key.clone()).or_default();
            match &p {
                Some(p) => drop(sessions.insert(replica.to_owned(), p.clone())),
                None => drop(sessions.remove(replica)),
            }
            let now = sessions.clone();
            if now.is_empty() {
                remote.remove(&key);
            }
            now
        };
        if let Some(p) = &p
            && !p.peers.is_empty()
        {
            let samples = p.peers.iter().map(|s| PeerReport {
                to: s.to.clone(),
                rtt_ms: s.rtt_ms,
                rank_rtt_ms: s.rank_rtt_ms,
                state: s.state.clone(),
                transport: s.transport.clone(),
                transport_for_s: s.transport_for_s,
            });
            // The replica that took the report recorded its path events.
            let _ = self.report_latency_at(&key.0, &key.1, samples.collect(), p.last_report.unwrap_or_else(now_millis));
        }
        let known = self.gateways.read().expect("gateways lock").contains_key(&key);
        if p.is_none() && !known {
            return;
        }
        let me = self.identity.name.clone();
        self.update_gateway(key, false, |g| {
            if g.connected && g.replica.as_deref() == Some(me.as_str()) {
                return; // this replica's own session is the one shown
            }
            show_remote(g, &sessions);
        });
    }

    /// Drops every other replica's sessions (before a full reload from the store).
    pub fn clear_remote(&self) {
        let keys: Vec<(GatewayKey, Vec<String>)> = self
            .remote
            .read()
            .expect("remote lock")
            .iter()
            .map(|(k, s)| (k.clone(), s.keys().cloned().collect()))
            .collect();
        for (key, replicas) in keys {
            for r in replicas {
                self.apply_remote(key.clone(), &r, None);
            }
        }
    }

    /// A gateway record as the store holds it (another replica wrote it, or it is reloaded):
    /// its record fields change, its session state stays.
    pub fn apply_record(&self, record: GatewayRecord) {
        let key = (record.cluster.clone(), record.instance.clone());
        let changed = self
            .gateways
            .read()
            .expect("gateways lock")
            .get(&key)
            .is_none_or(|g| g.record.tunnel_addresses != record.tunnel_addresses);
        self.update_gateway(key, changed, |g| {
            let acked = g.record.acked_version.max(record.acked_version);
            let last_seen = g.record.last_seen.max(record.last_seen);
            g.record = record;
            g.record.acked_version = acked;
            g.record.last_seen = last_seen;
        });
    }

    /// Forgets a gateway (its record expired or was removed); peers learn it is gone.
    pub fn remove_gateway(&self, key: &GatewayKey) -> bool {
        let removed = self.gateways.write().expect("gateways lock").remove(key).is_some();
        if removed {
            self.traffic.write().expect("traffic lock").forget(key);
            self.proofs.write().expect("proofs lock").remove(key);
            self.gateways_changed.send_modify(|v| *v += 1);
        }
        removed
    }
}
