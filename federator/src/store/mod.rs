//! Persistence of the federator's state. Callers use [`Store`] only, so the embedded backend
//! (single node, a redb file) and the etcd backend (replicated: several federators, one leader)
//! are interchangeable for reads and writes; what only etcd has (leases, election, watch) is on
//! [`EtcdStore`] and driven by `crate::ha`. Every method is async-shaped even where the backend
//! is synchronous. Writes that only the leader may make (the catalog, source health, removing
//! gateways) are fenced in etcd: a deposed leader's write fails with [`StoreError::Fenced`].

pub mod embedded;
pub mod etcd;
pub mod rows;

pub use embedded::EmbeddedStore;
pub use etcd::EtcdStore;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use skybridge_api::catalog::{GlobalCatalog, SourceId, SourceSnapshot, UnixMillis};
use skybridge_api::model::{ClusterId, ServiceKey};

/// Why the store failed; the message says what the operator should check.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("store I/O: {0}")]
    Io(String),
    #[error("store holds data this version cannot read ({0}); was it written by a newer federator?")]
    Corrupt(String),
    /// etcd did not answer (no quorum, no route, timeout).
    #[error(
        "etcd at {endpoints} is unavailable: {reason}; check that the endpoints are right and that a majority of the etcd members is up"
    )]
    Unavailable { endpoints: String, reason: String },
    /// etcd refused the credentials or the permission.
    #[error(
        "etcd at {endpoints} refused the request: {reason}; check store.username / store.password_file and that the user's role may read and write the prefix"
    )]
    Denied { endpoints: String, reason: String },
    /// A leader-only write from a replica that is no longer the leader.
    #[error("this replica is no longer the leader: the write was refused by the leadership fence")]
    Fenced,
}

impl StoreError {
    /// Whether the store could not be reached (as opposed to refusing or not understanding).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// A source's last good snapshot, kept so that a restarted federator whose sources are down
/// still serves what they last said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSource {
    pub snapshot: Arc<SourceSnapshot>,
    pub synced_at: UnixMillis,
    pub failing_since: Option<UnixMillis>,
}

pub use skybridge_api::routing::Policy;

/// What the federator remembers about a gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayRecord {
    pub cluster: ClusterId,
    /// Gateway instance name (pod name), unique within the cluster.
    pub instance: String,
    pub version: String,
    pub tunnel_addresses: Vec<String>,
    pub last_seen: UnixMillis,
    pub acked_version: u64,
}

/// One entry of the event log (catalog changes, source failures, gateway connects...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Assigned by the store, increasing.
    pub seq: u64,
    pub at: UnixMillis,
    pub kind: String,
    pub message: String,
}

/// Everything loaded at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Persisted {
    pub catalog: GlobalCatalog,
    pub sources: BTreeMap<SourceId, StoredSource>,
    pub policies: BTreeMap<ServiceKey, Policy>,
    pub gateways: Vec<GatewayRecord>,
    /// The catalog's rows do not match its head (a leader died between the transactions of a
    /// large version): the next leader must write a complete version at once.
    pub torn: bool,
}

/// The operations the federator needs from its store.
pub trait Store: Send + Sync + 'static {
    /// Loads everything persisted (empty on first start).
    fn load(&self) -> impl Future<Output = Result<Persisted, StoreError>> + Send;
    /// Saves a new catalog together with the source inputs it was merged from, atomically.
    fn save_catalog(
        &self,
        catalog: &Arc<GlobalCatalog>,
        sources: &BTreeMap<SourceId, StoredSource>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Sets (Some) or deletes (None) a service's policy.
    fn put_policy(
        &self,
        key: &ServiceKey,
        policy: Option<&Policy>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Records a gateway (keyed by cluster and instance).
    fn put_gateway(&self, g: &GatewayRecord) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Removes a gateway's record (leader only) unless a replica holds a session of it or it
    /// was seen after `last_seen` (a reconnect the caller has not heard of yet); true when
    /// removed.
    fn delete_gateway(
        &self,
        cluster: &ClusterId,
        instance: &str,
        last_seen: UnixMillis,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Saves the source health the API shows, for replicas that do not run the sources
    /// (leader only; nothing to do with a single node).
    fn save_source_status(
        &self,
        status: &BTreeMap<SourceId, crate::core::SourceStatus>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Appends an event, assigning its `seq`; keeps at most the store's configured number.
    fn append_event(
        &self,
        at: UnixMillis,
        kind: &str,
        message: &str,
    ) -> impl Future<Output = Result<Event, StoreError>> + Send;
    /// The most recent `limit` events, oldest first, optionally only those after `after_seq`.
    fn events(
        &self,
        after_seq: Option<u64>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send;
}

/// The configured backend. An enum rather than `dyn Store` so that the async methods need no
/// boxing.
pub enum AnyStore {
    /// A redb file on local disk (single node).
    Embedded(embedded::EmbeddedStore),
    /// An etcd cluster shared by the replicas.
    Etcd(Arc<etcd::EtcdStore>),
}

impl AnyStore {
    /// `embedded` or `etcd`, as configured.
    pub fn backend(&self) -> &'static str {
        match self {
            AnyStore::Embedded(_) => "embedded",
            AnyStore::Etcd(_) => "etcd",
        }
    }
}

/// Calls the same method on whichever backend is configured.
macro_rules! each {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Embedded($s) => $call,
            AnyStore::Etcd($s) => $call,
        }
    };
}

impl Store for AnyStore {
    async fn load(&self) -> Result<Persisted, StoreError> {
        each!(self, s => s.load().await)
    }
    async fn save_catalog(
        &self,
        c: &Arc<GlobalCatalog>,
        src: &BTreeMap<SourceId, StoredSource>,
    ) -> Result<(), StoreError> {
        each!(self, s => s.save_catalog(c, src).await)
    }
    async fn put_policy(&self, key: &ServiceKey, policy: Option<&Policy>) -> Result<(), StoreError> {
        each!(self, s => s.put_policy(key, policy).await)
    }
    async fn put_gateway(&self, g: &GatewayRecord) -> Result<(), StoreError> {
        each!(self, s => s.put_gateway(g).await)
    }
    async fn delete_gateway(
        &self,
        cluster: &ClusterId,
        instance: &str,
        last_seen: UnixMillis,
    ) -> Result<bool, StoreError> {
        each!(self, s => s.delete_gateway(cluster, instance, last_seen).await)
    }
    async fn save_source_status(
        &self,
        status: &BTreeMap<SourceId, crate::core::SourceStatus>,
    ) -> Result<(), StoreError> {
        each!(self, s => s.save_source_status(status).await)
    }
    async fn append_event(&self, at: UnixMillis, kind: &str, message: &str) -> Result<Event, StoreError> {
        each!(self, s => s.append_event(at, kind, message).await)
    }
    async fn events(&self, after_seq: Option<u64>, limit: usize) -> Result<Vec<Event>, StoreError> {
        each!(self, s => s.events(after_seq, limit).await)
    }
}
