//! Persistence of the federator's state. Callers use [`Store`] only, so the embedded backend
//! (single node, a redb file) and an etcd backend (replicated: watch, lease, transactions) are
//! interchangeable. Every method is async-shaped even where the backend is synchronous, and
//! every write is one transaction: a crash never leaves half a catalog.

pub mod embedded;

pub use embedded::EmbeddedStore;
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
/// boxing; an etcd variant joins here without changing callers.
pub enum AnyStore {
    /// A redb file on local disk (single node).
    Embedded(embedded::EmbeddedStore),
}

impl Store for AnyStore {
    async fn load(&self) -> Result<Persisted, StoreError> {
        match self {
            AnyStore::Embedded(s) => s.load().await,
        }
    }
    async fn save_catalog(
        &self,
        c: &Arc<GlobalCatalog>,
        src: &BTreeMap<SourceId, StoredSource>,
    ) -> Result<(), StoreError> {
        match self {
            AnyStore::Embedded(s) => s.save_catalog(c, src).await,
        }
    }
    async fn put_policy(&self, key: &ServiceKey, policy: Option<&Policy>) -> Result<(), StoreError> {
        match self {
            AnyStore::Embedded(s) => s.put_policy(key, policy).await,
        }
    }
    async fn put_gateway(&self, g: &GatewayRecord) -> Result<(), StoreError> {
        match self {
            AnyStore::Embedded(s) => s.put_gateway(g).await,
        }
    }
    async fn append_event(&self, at: UnixMillis, kind: &str, message: &str) -> Result<Event, StoreError> {
        match self {
            AnyStore::Embedded(s) => s.append_event(at, kind, message).await,
        }
    }
    async fn events(&self, after_seq: Option<u64>, limit: usize) -> Result<Vec<Event>, StoreError> {
        match self {
            AnyStore::Embedded(s) => s.events(after_seq, limit).await,
        }
    }
}
