//! The replicated store: an etcd cluster shared by every federator replica.
//!
//! Layout: [`keys`]. Values are JSON, as in the embedded store. The leader writes a catalog
//! version as the rows that changed (one key per service, tracked by hash like the embedded
//! store) and the catalog head last, in one transaction when it fits etcd's limits and in
//! several otherwise; every one of those transactions is *fenced*: it only applies while the
//! leader key still has the create revision this replica won it with, so a deposed leader
//! (paused past its lease, cut off, slow) can never write. Followers build the catalog from the
//! rows when the head arrives and check its digest before serving it (`crate::ha::view`).
//!
//! Leases: each replica holds one, kept alive by `crate::ha`; its leader key, its replica record
//! and the presence keys of the gateway sessions it holds are attached to it, so they all vanish
//! when the replica dies.

pub mod keys;
pub mod records;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, Event as WatchEvent, EventType, GetOptions, Identity,
    KeyValue, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchStream,
};
use serde::de::DeserializeOwned;
use skybridge_api::catalog::{Export, GlobalCatalog, SourceId, SourceSnapshot, UnixMillis, digest};
use skybridge_api::model::{ClusterId, ServiceKey};

use super::rows::{CatalogHead, Row, RowIndex, SourceHead, catalog_row_hash, encode, row_hash};
use super::{Event, GatewayRecord, Persisted, Policy, Store, StoreError, StoredSource};
use crate::config::EtcdConfig;
use keys::{Key, Keys};
use records::LeaderRecord;

/// Keys read per range request when loading: bounds each response well under gRPC's message
/// limit whatever the values' sizes.
const PAGE: i64 = 500;
/// Largest response accepted from etcd (a watch response may carry a whole large transaction).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// etcd rejects HTTP/2 pings more often than its `--grpc-keepalive-min-time` (5 s by default).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Events appended by this replica between two trims of the event log.
const TRIM_EVERY: u64 = 32;

/// A raw key-value change: from a range read (every key a put) or from the watch.
#[derive(Debug, Clone)]
pub struct Change {
    pub key: Vec<u8>,
    /// `None`: deleted.
    pub value: Option<Vec<u8>>,
    pub create_revision: i64,
    pub mod_revision: i64,
    /// The lease the key hangs on (0: none).
    pub lease: i64,
}

impl Change {
    fn put(kv: &KeyValue) -> Change {
        Change {
            key: kv.key().to_vec(),
            value: Some(kv.value().to_vec()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            lease: kv.lease(),
        }
    }

    /// The change a watch event describes.
    pub fn from_event(e: &WatchEvent) -> Option<Change> {
        let kv = e.kv()?;
        Some(match e.event_type() {
            EventType::Put => Change::put(kv),
            EventType::Delete => Change {
                key: kv.key().to_vec(),
                value: None,
                create_revision: 0,
                mod_revision: kv.mod_revision(),
                lease: 0,
            },
        })
    }
}

/// The outcome of a campaign for leadership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Campaign {
    /// This replica leads; `term` is the leader key's create revision, the fence of its writes.
    Won { term: i64 },
    /// Another replica leads (`by` empty: the key went between the compare and the read), as
    /// seen at store revision `at`.
    Held { by: String, term: i64, lease: i64, at: i64 },
}

/// The etcd [`Store`].
pub struct EtcdStore {
    client: Client,
    keys: Keys,
    /// The endpoints as configured, for error messages.
    endpoints: String,
    name: String,
    max_events: usize,
    max_txn_ops: usize,
    max_txn_bytes: usize,
    request_timeout: Duration,
    /// Rows as last committed by this replica while leading (rebuilt by each `load`).
    index: tokio::sync::Mutex<RowIndex>,
    /// The term this replica leads in, if it does.
    fence: Mutex<Option<i64>>,
    /// The member URLs, and those taken out of the client's rotation.
    members: Vec<String>,
    ejected: Mutex<std::collections::BTreeSet<String>>,
    /// Events this replica appended (part of their keys; trims every `TRIM_EVERY`).
    appended: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").field("endpoints", &self.endpoints).field("prefix", &self.keys.root()).finish()
    }
}

impl EtcdStore {
    /// Prepares a client for `cfg` as replica `name`. Connections are made lazily, so an etcd
    /// that is down now does not stop the federator from starting; files (CA, client
    /// certificate, password) are read now, and a missing one is an error naming it.
    pub async fn connect(cfg: &EtcdConfig, name: &str, max_events: usize) -> Result<EtcdStore, StoreError> {
        let endpoints = cfg.endpoints.join(",");
        let read = |key: &str, p: &std::path::Path| {
            std::fs::read(p).map_err(|e| StoreError::Open {
                path: p.display().to_string(),
                reason: format!("cannot read {key}: {e}"),
            })
        };
        let mut options = ConnectOptions::new()
            .with_connect_timeout(cfg.connect_timeout)
            .with_timeout(cfg.request_timeout())
            .with_keep_alive(KEEPALIVE_INTERVAL, cfg.request_timeout())
            .with_keep_alive_while_idle(true)
            // A member cut off from its quorum answers "no leader" instead of serving stale
            // reads or holding watches open that will never deliver.
            .with_require_leader(true);
        if let Some(t) = &cfg.tls {
            let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read("store.tls.ca", &t.ca)?));
            if let (Some(c), Some(k)) = (&t.cert, &t.key) {
                tls = tls.identity(Identity::from_pem(read("store.tls.cert", c)?, read("store.tls.key", k)?));
            }
            options = options.with_tls(tls);
        }
        if let (Some(user), Some(p)) = (&cfg.username, &cfg.password_file) {
            let password = String::from_utf8(read("store.password_file", p)?).map_err(|_| StoreError::Open {
                path: p.display().to_string(),
                reason: "store.password_file is not UTF-8".into(),
            })?;
            options = options
                .with_user(user.clone(), password.trim_end_matches(['\r', '\n']).to_owned())
                .with_auto_token_refresh(true);
        }
        // With a user, connect authenticates at once, so a wrong password fails here.
        let client = tokio::time::timeout(cfg.connect_timeout * 2, Client::connect(&cfg.endpoints, Some(options)))
            .await
            .map_err(|_| StoreError::Unavailable {
                endpoints: endpoints.clone(),
                reason: "connecting timed out".into(),
            })?
            .map_err(|e| classify(&endpoints, e))?;
        Ok(EtcdStore {
            client,
            keys: Keys::new(&cfg.prefix),
            endpoints,
            name: name.to_owned(),
            max_events,
            max_txn_ops: cfg.max_txn_ops,
            max_txn_bytes: cfg.max_txn_bytes,
            request_timeout: cfg.request_timeout(),
            index: tokio::sync::Mutex::new(RowIndex::default()),
            fence: Mutex::new(None),
            members: cfg.endpoints.clone(),
            ejected: Mutex::new(std::collections::BTreeSet::new()),
            appended: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The key layout.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// This replica's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn err(&self, e: etcd_client::Error) -> StoreError {
        classify(&self.endpoints, e)
    }

    fn corrupt(&self, reason: String) -> StoreError {
        StoreError::Corrupt(format!("etcd at {}: {reason}", self.endpoints))
    }

    /// Runs `op`, again (up to twice more) when it failed before reaching any member: the
    /// client balances over the members, and a dead one fails a request at connect time until
    /// [`EtcdStore::check_members`] takes it out.
    async fn retrying<T, F: Future<Output = Result<T, etcd_client::Error>>>(
        &self,
        mut op: impl FnMut() -> F,
    ) -> Result<T, StoreError> {
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if attempt < 2 && never_sent(&e) => attempt += 1,
                Err(e) => return Err(self.err(e)),
            }
        }
    }

    async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse, StoreError> {
        self.retrying(|| {
            let (mut kv, txn) = (self.client.kv_client(), txn.clone());
            async move { kv.txn(txn).await }
        })
        .await
    }

    async fn get(&self, key: Vec<u8>, opts: Option<GetOptions>) -> Result<etcd_client::GetResponse, StoreError> {
        self.retrying(|| {
            let mut kv = self.client.kv_client().max_decoding_message_size(MAX_MESSAGE);
            let (key, opts) = (key.clone(), opts.clone());
            async move { kv.get(key, opts).await }
        })
        .await
    }

    /// Takes members that do not accept connections out of the client's rotation, and puts
    /// them back once they do; never takes out the last one (with none, every request would
    /// wait for its timeout instead of failing with the reason).
    pub async fn check_members(&self, timeout: Duration) {
        let probes = self.members.iter().map(|m| async move {
            let addr = m.split_once("://").map_or(m.as_str(), |(_, a)| a);
            let up = matches!(tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await, Ok(Ok(_)));
            (m.clone(), up)
        });
        let results = futures_util::future::join_all(probes).await;
        let healthy = results.iter().filter(|(_, up)| *up).count();
        for (m, up) in results {
            let ejected = self.ejected.lock().unwrap_or_else(|e| e.into_inner()).contains(&m);
            if up && ejected && self.client.add_endpoint(&m).await.is_ok() {
                self.ejected.lock().unwrap_or_else(|e| e.into_inner()).remove(&m);
                tracing::info!(member = %m, "etcd member accepts connections again; back in rotation");
            } else if !up && !ejected && healthy > 0 && self.client.remove_endpoint(&m).await.is_ok() {
                self.ejected.lock().unwrap_or_else(|e| e.into_inner()).insert(m.clone());
                tracing::warn!(member = %m, "etcd member does not accept connections; out of rotation until it does");
            }
        }
    }

    /// The current term, or `Fenced` when this replica does not lead.
    fn term(&self) -> Result<i64, StoreError> {
        self.fence.lock().unwrap_or_else(|e| e.into_inner()).ok_or(StoreError::Fenced)
    }

    /// Sets (after winning) or clears (after losing) the term leader-only writes are fenced by.
    pub fn set_term(&self, term: Option<i64>) {
        *self.fence.lock().unwrap_or_else(|e| e.into_inner()) = term;
    }

    /// Checks (and on first use writes) the layout version under the prefix.
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        let key = self.keys.schema();
        let put = TxnOp::put(key.clone(), keys::SCHEMA.to_string(), None);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([put])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = self.txn(txn).await?;
        if resp.succeeded() {
            return Ok(());
        }
        let found = first_kv(&resp).map(|kv| String::from_utf8_lossy(kv.value()).into_owned()).unwrap_or_default();
        match found.trim().parse::<u64>() {
            Ok(v) if v <= keys::SCHEMA => Ok(()),
            Ok(v) => {
                Err(self.corrupt(format!("key {key}: layout version {v}, this federator reads up to {}", keys::SCHEMA)))
            }
            Err(_) => Err(self.corrupt(format!(
                "key {key} holds {found:?}, not a layout version (is another program using the prefix?)"
            ))),
        }
    }

    /// Every key under the prefix at one revision, paged; returns the revision read at.
    pub async fn range_all(&self) -> Result<(i64, Vec<Change>), StoreError> {
        let root = self.keys.root().as_bytes().to_vec();
        let end = prefix_end(&root);
        let mut start = root;
        let mut revision = 0;
        let mut out = Vec::new();
        loop {
            let mut opts = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if revision != 0 {
                opts = opts.with_revision(revision);
            }
            let resp = self.get(start.clone(), Some(opts)).await?;
            if revision == 0 {
                revision = resp.header().map_or(0, |h| h.revision());
            }
            out.extend(resp.kvs().iter().map(Change::put));
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => return Ok((revision, out)),
            }
        }
    }

    /// Watches every key under the prefix from `revision` on. Opening is bounded by the
    /// request timeout: a member that accepted the connection and then stopped answering must
    /// not hold the replica without a watch.
    pub async fn watch(&self, revision: i64) -> Result<WatchStream, StoreError> {
        let opts = WatchOptions::new().with_prefix().with_start_revision(revision).with_progress_notify();
        let open = self.retrying(|| {
            let mut w = self.client.watch_client().max_decoding_message_size(MAX_MESSAGE);
            let (root, opts) = (self.keys.root().to_owned(), opts.clone());
            async move { w.watch(root, Some(opts)).await }
        });
        tokio::time::timeout(self.request_timeout, open).await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable {
                endpoints: self.endpoints.clone(),
                reason: "opening the watch timed out".into(),
            })
        })
    }

    /// Grants a lease of `ttl`.
    pub async fn grant(&self, ttl: Duration) -> Result<i64, StoreError> {
        let resp = self
            .retrying(|| {
                let mut lease = self.client.lease_client();
                async move { lease.grant(ttl.as_secs() as i64, None).await }
            })
            .await?;
        Ok(resp.id())
    }

    /// Refreshes a lease once; the TTL left (0: the lease has expired and is gone).
    pub async fn keep_alive(&self, lease: i64) -> Result<i64, StoreError> {
        let once = self.retrying(|| {
            let mut client = self.client.lease_client();
            async move {
                let (mut keeper, mut stream) = client.keep_alive(lease).await?;
                keeper.keep_alive().await?;
                stream.message().await
            }
        });
        match tokio::time::timeout(self.request_timeout, once).await {
            Err(_) => Err(StoreError::Unavailable {
                endpoints: self.endpoints.clone(),
                reason: "lease keep-alive timed out".into(),
            }),
            Ok(Err(e)) => Err(e),
            Ok(Ok(None)) => Err(StoreError::Unavailable {
                endpoints: self.endpoints.clone(),
                reason: "lease keep-alive stream closed".into(),
            }),
            Ok(Ok(Some(r))) => Ok(r.ttl()),
        }
    }

    /// Revokes a lease: everything attached to it (leader key, replica record, presence) goes at
    /// once, so a replica shutting down hands over without waiting for its TTL.
    pub async fn revoke(&self, lease: i64) -> Result<(), StoreError> {
        self.retrying(|| {
            let mut l = self.client.lease_client();
            async move { l.revoke(lease).await }
        })
        .await
        .map(drop)
    }

    /// Tries to become the leader with `lease`.
    pub async fn campaign(&self, lease: i64, since: UnixMillis) -> Result<Campaign, StoreError> {
        let key = self.keys.leader();
        let record = encode(&LeaderRecord { name: self.name.clone(), since })?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), record, Some(PutOptions::new().with_lease(lease)))])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = self.txn(txn).await?;
        if resp.succeeded() {
            let term = resp.header().map_or(0, |h| h.revision());
            return Ok(Campaign::Won { term });
        }
        let at = resp.header().map_or(0, |h| h.revision());
        let Some(kv) = first_kv(&resp) else {
            // Deleted between the compare and the read: try again on the next round.
            return Ok(Campaign::Held { by: String::new(), term: 0, lease: 0, at });
        };
        let holder: LeaderRecord = self.decode(&key, kv.value())?;
        if holder.name == self.name && kv.lease() == lease {
            // Our own key from before (e.g. a campaign whose answer was lost): still ours.
            return Ok(Campaign::Won { term: kv.create_revision() });
        }
        Ok(Campaign::Held { by: holder.name, term: kv.create_revision(), lease: kv.lease(), at })
    }

    /// Records an operator's confirmation of `source`'s held removal; the leader's watch hands
    /// it to the merge core.
    pub async fn put_confirmation(&self, source: &str, at: UnixMillis) -> Result<(), StoreError> {
        let op = TxnOp::put(self.keys.confirm(source), at.to_string(), None);
        self.txn(Txn::new().and_then([op])).await.map(drop)
    }

    /// Gives up leadership of `term` (only if still ours).
    pub async fn resign(&self, term: i64) -> Result<(), StoreError> {
        let key = self.keys.leader();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, term)])
            .and_then([TxnOp::delete(key, None)]);
        self.txn(txn).await.map(drop)
    }

    /// Puts and deletes in transactions of at most `max_txn_ops` operations, not fenced (any
    /// replica's own keys: its record and presence). `lease` is attached to the puts.
    pub async fn write_own(
        &self,
        lease: i64,
        puts: Vec<(String, Vec<u8>)>,
        deletes: Vec<String>,
    ) -> Result<(), StoreError> {
        let opts = PutOptions::new().with_lease(lease);
        let ops: Vec<TxnOp> = puts
            .into_iter()
            .map(|(k, v)| TxnOp::put(k, v, Some(opts.clone())))
            .chain(deletes.into_iter().map(|k| TxnOp::delete(k, None)))
            .collect();
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            let chunk: Vec<TxnOp> = ops.by_ref().take(self.max_txn_ops).collect();
            self.txn(Txn::new().and_then(chunk)).await?;
        }
        Ok(())
    }

    /// Runs `ops` only while this replica leads in `term`.
    async fn fenced(&self, term: i64, ops: Vec<TxnOp>) -> Result<(), StoreError> {
        let txn = Txn::new().when([Compare::create_revision(self.keys.leader(), CompareOp::Equal, term)]).and_then(ops);
        let resp = self.txn(txn).await?;
        if resp.succeeded() {
            Ok(())
        } else {
            self.set_term(None);
            Err(StoreError::Fenced)
        }
    }

    fn decode<T: DeserializeOwned>(&self, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| self.corrupt(format!("key {key}: {e}")))
    }

    /// Decodes a range read into what a leader starts from; rebuilds the row index from the
    /// stored bytes, so the first save writes only what differs from etcd.
    fn persisted(&self, changes: &[Change]) -> Result<(Persisted, RowIndex), StoreError> {
        let mut p = Persisted::default();
        let mut index = RowIndex::default();
        let mut head: Option<CatalogHead> = None;
        let mut heads: BTreeMap<SourceId, SourceHead> = BTreeMap::new();
        let mut snapshots: BTreeMap<SourceId, SourceSnapshot> = BTreeMap::new();
        for c in changes {
            let Some(value) = &c.value else { continue };
            let key = self.keys.parse(&c.key).map_err(|e| self.corrupt(e))?;
            let text = String::from_utf8_lossy(&c.key);
            match key {
                Key::CatalogHead => head = Some(self.decode(&text, value)?),
                Key::CatalogService(k) => {
                    let service = self.decode(&text, value)?;
                    index.set(Row::CatalogService(k.clone()), Some(catalog_row_hash(&k, &service)));
                    p.catalog.services.insert(k, service);
                }
                Key::SourceHead(id) => {
                    index.set(Row::SourceHead(id.clone()), Some(row_hash(value)));
                    heads.insert(id, self.decode(&text, value)?);
                }
                Key::SourceService(id, k) => {
                    index.set(Row::SourceService(id.clone(), k.clone()), Some(row_hash(value)));
                    let exports: Vec<Export> = self.decode(&text, value)?;
                    snapshots.entry(id).or_default().services.insert(k, exports);
                }
                Key::Policy(k) => drop(p.policies.insert(k, self.decode(&text, value)?)),
                Key::Gateway(..) => p.gateways.push(self.decode(&text, value)?),
                Key::Schema
                | Key::Leader
                | Key::Replica(_)
                | Key::SourceStatus
                | Key::Presence(..)
                | Key::Event
                | Key::Confirm(_) => {}
            }
        }
        if let Some(h) = head {
            (p.catalog.version, p.catalog.digest, p.catalog.clusters) = (h.version, h.digest, h.clusters);
            let computed = digest(&p.catalog);
            if computed != h.digest {
                // A leader that died between the transactions of a large version leaves rows
                // newer than the head. A digest that matches nothing makes the next merge a
                // new version whatever the sources say, and that write repairs every row.
                tracing::warn!(
                    version = h.version,
                    stored = format_args!("{:#x}", h.digest),
                    computed = format_args!("{computed:#x}"),
                    "the catalog rows in etcd do not match their head (a leader died mid-write?); writing a complete version"
                );
                p.catalog.digest = 0;
                p.torn = true;
            }
        } else if !p.catalog.services.is_empty() {
            return Err(self.corrupt(format!("catalog rows without {}", self.keys.catalog_head())));
        }
        for (id, h) in heads {
            let mut snapshot = snapshots.remove(&id).unwrap_or_default();
            snapshot.clusters = h.clusters;
            p.sources.insert(
                id,
                StoredSource { snapshot: Arc::new(snapshot), synced_at: h.synced_at, failing_since: h.failing_since },
            );
        }
        Ok((p, index))
    }

    fn row_key(&self, row: &Row) -> String {
        match row {
            Row::CatalogService(k) => self.keys.catalog_service(k),
            Row::SourceHead(id) => self.keys.source_head(id),
            Row::SourceService(id, k) => self.keys.source_service(id, k),
        }
    }

    /// Writes one catalog version: changed rows in fenced transactions within etcd's limits,
    /// the head in the last one.
    async fn write_catalog(
        &self,
        term: i64,
        catalog: &GlobalCatalog,
        sources: &BTreeMap<SourceId, StoredSource>,
        index: &RowIndex,
        committed: &mut Vec<(Row, Option<u64>)>,
    ) -> Result<(), StoreError> {
        let head = CatalogHead {
            version: catalog.version,
            digest: catalog.digest,
            clusters: catalog.clusters.clone(),
            term,
            leader: self.name.clone(),
        };
        let head = (self.keys.catalog_head(), encode(&head)?);
        // One op and its bytes stay free for the head in whichever transaction is last.
        let (max_ops, max_bytes) = (self.max_txn_ops - 1, self.max_txn_bytes.saturating_sub(head.1.len()));
        let (mut ops, mut bytes, mut pending) = (Vec::new(), 0usize, Vec::new());
        for write in index.changes(catalog, sources) {
            let write = write?;
            let size = write.value.as_ref().map_or(0, Vec::len);
            if !ops.is_empty() && (ops.len() >= max_ops || bytes + size > max_bytes) {
                self.fenced(term, std::mem::take(&mut ops)).await?;
                committed.append(&mut pending);
                bytes = 0;
            }
            let key = self.row_key(&write.row);
            pending.push(write.indexed());
            bytes += size;
            ops.push(match write.value {
                Some(v) => TxnOp::put(key, v, None),
                None => TxnOp::delete(key, None),
            });
        }
        ops.push(TxnOp::put(head.0, head.1, None));
        self.fenced(term, ops).await?;
        committed.append(&mut pending);
        Ok(())
    }

    /// Deletes the oldest events beyond `max_events` (the log is trimmed every few appends,
    /// so it may briefly hold a few more).
    async fn trim_events(&self) -> Result<(), StoreError> {
        use etcd_client::{SortOrder, SortTarget};
        let prefix = self.keys.events();
        let counted =
            self.get(prefix.clone().into_bytes(), Some(GetOptions::new().with_prefix().with_count_only())).await?;
        let excess = counted.count() - i64::try_from(self.max_events).unwrap_or(i64::MAX);
        if excess <= 0 {
            return Ok(());
        }
        // The oldest keys *at the revision counted*: replicas trimming at the same time then
        // delete the same keys, never more than the excess between them.
        let at = counted.header().map_or(0, |h| h.revision());
        let opts = GetOptions::new()
            .with_prefix()
            .with_keys_only()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_revision(at)
            .with_limit(excess);
        let old = self.get(prefix.into_bytes(), Some(opts)).await?;
        let deletes: Vec<String> = old.kvs().iter().map(|kv| String::from_utf8_lossy(kv.key()).into_owned()).collect();
        for chunk in deletes.chunks(self.max_txn_ops) {
            let ops: Vec<TxnOp> = chunk.iter().map(|k| TxnOp::delete(k.clone(), None)).collect();
            self.txn(Txn::new().and_then(ops)).await?;
        }
        Ok(())
    }
}

/// Whether a request failed before any member received it (so sending it again is safe).
fn never_sent(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(s) => {
            s.code() == tonic::Code::Unavailable
                && (s.message().contains("connect") || s.message().contains("connection refused"))
        }
        _ => false,
    }
}

/// The first key-value a transaction's `else` get returned.
fn first_kv(resp: &etcd_client::TxnResponse) -> Option<KeyValue> {
    resp.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Get(g) => g.kvs().first().cloned(),
        _ => None,
    })
}

/// The end of the key range holding every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Maps a client error to what the operator should check: refused credentials are `Denied`,
/// everything else (no route, no quorum, timeouts, TLS) `Unavailable` with the whole cause.
pub fn classify(endpoints: &str, e: etcd_client::Error) -> StoreError {
    use std::error::Error as _;
    let mut reason = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !reason.contains(&text) {
            reason.push_str(": ");
            reason.push_str(&text);
        }
        source = s.source();
    }
    let denied = match &e {
        // etcd answers a wrong password with InvalidArgument ("authentication failed").
        etcd_client::Error::GRpcStatus(s) => {
            matches!(s.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied)
                || (s.code() == tonic::Code::InvalidArgument
                    && ["authentication failed", "user name", "permission denied"]
                        .iter()
                        .any(|m| s.message().contains(m)))
        }
        _ => false,
    };
    let endpoints = endpoints.to_owned();
    if denied { StoreError::Denied { endpoints, reason } } else { StoreError::Unavailable { endpoints, reason } }
}

impl Store for EtcdStore {
    async fn load(&self) -> Result<Persisted, StoreError> {
        let (_, changes) = self.range_all().await?;
        let (persisted, index) = self.persisted(&changes)?;
        *self.index.lock().await = index;
        Ok(persisted)
    }

    async fn save_catalog(
        &self,
        catalog: &Arc<GlobalCatalog>,
        sources: &BTreeMap<SourceId, StoredSource>,
    ) -> Result<(), StoreError> {
        let term = self.term()?;
        let mut index = self.index.lock().await;
        let mut committed = Vec::new();
        let result = self.write_catalog(term, catalog, sources, &index, &mut committed).await;
        // Only what committed: a failed transaction left etcd as it was.
        let rows = committed.len();
        index.apply(committed);
        tracing::debug!(version = catalog.version, rows, ok = result.is_ok(), "catalog saved to etcd");
        result
    }

    async fn put_policy(&self, key: &ServiceKey, policy: Option<&Policy>) -> Result<(), StoreError> {
        let k = self.keys.policy(key);
        let op = match policy {
            Some(p) => TxnOp::put(k, encode(p)?, None),
            None => TxnOp::delete(k, None),
        };
        self.txn(Txn::new().and_then([op])).await.map(drop)
    }

    async fn put_gateway(&self, g: &GatewayRecord) -> Result<(), StoreError> {
        let k = self.keys.gateway(&g.cluster, &g.instance);
        let v = encode(g)?;
        self.txn(Txn::new().and_then([TxnOp::put(k, v, None)])).await.map(drop)
    }

    async fn delete_gateway(
        &self,
        cluster: &ClusterId,
        instance: &str,
        last_seen: UnixMillis,
    ) -> Result<bool, StoreError> {
        let term = self.term()?;
        let leader = self.keys.leader();
        let key = self.keys.gateway(cluster, instance);
        let stored = self.get(key.clone().into_bytes(), None).await?;
        let Some(kv) = stored.kvs().first() else { return Ok(false) };
        let record: GatewayRecord = self.decode(&key, kv.value())?;
        if record.last_seen > last_seen {
            return Ok(false); // seen since the caller decided: a reconnect
        }
        // Removed only while this replica leads, the record is as read and no replica holds
        // a session of it: a gateway that reconnected a moment ago keeps its record.
        let absent =
            Compare::create_revision(self.keys.presence_of(cluster, instance), CompareOp::Equal, 0).with_prefix();
        let unchanged = Compare::mod_revision(key.clone(), CompareOp::Equal, kv.mod_revision());
        let txn = Txn::new()
            .when([Compare::create_revision(leader.clone(), CompareOp::Equal, term), absent, unchanged])
            .and_then([TxnOp::delete(key, None)])
            .or_else([TxnOp::get(leader, None)]);
        let resp = self.txn(txn).await?;
        if resp.succeeded() {
            return Ok(true);
        }
        if first_kv(&resp).is_some_and(|kv| kv.create_revision() == term) {
            Ok(false)
        } else {
            self.set_term(None);
            Err(StoreError::Fenced)
        }
    }

    async fn save_source_status(
        &self,
        status: &BTreeMap<SourceId, crate::core::SourceStatus>,
    ) -> Result<(), StoreError> {
        let term = self.term()?;
        self.fenced(term, vec![TxnOp::put(self.keys.source_status(), encode(status)?, None)]).await
    }

    async fn append_event(&self, at: UnixMillis, kind: &str, message: &str) -> Result<Event, StoreError> {
        // Every replica appends; a seq counter key would make them race. etcd's revisions are
        // already one global order, so an event's seq is the revision that created its key.
        let n = self.appended.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = self.keys.event(at, &self.name, n);
        let mut event = Event { seq: 0, at, kind: kind.to_owned(), message: message.to_owned() };
        let resp = self.txn(Txn::new().and_then([TxnOp::put(key, encode(&event)?, None)])).await?;
        event.seq = resp.header().map_or(0, |h| u64::try_from(h.revision()).unwrap_or_default());
        if n % TRIM_EVERY == TRIM_EVERY - 1
            && let Err(e) = self.trim_events().await
        {
            tracing::warn!(error = %e, "trimming the event log failed; retrying after the next appends");
        }
        Ok(event)
    }

    async fn events(&self, after_seq: Option<u64>, limit: usize) -> Result<Vec<Event>, StoreError> {
        use etcd_client::{SortOrder, SortTarget};
        let after = after_seq.map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX));
        // Newest first, so a small `limit` reads only what it returns.
        let opts = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Descend)
            .with_min_create_revision(after + 1)
            .with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        let resp = self.get(self.keys.events().into_bytes(), Some(opts)).await?;
        let mut out = Vec::with_capacity(resp.kvs().len());
        for kv in resp.kvs().iter().rev() {
            let mut e: Event = self.decode(&String::from_utf8_lossy(kv.key()), kv.value())?;
            e.seq = u64::try_from(kv.create_revision()).unwrap_or_default();
            out.push(e);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_covers_the_prefix() {
        assert_eq!(prefix_end(b"/sky/"), b"/sky0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn refused_credentials_are_denied_and_the_rest_unavailable() {
        let denied =
            classify("http://e:2379", etcd_client::Error::GRpcStatus(tonic::Status::unauthenticated("bad password")));
        assert!(matches!(denied, StoreError::Denied { .. }), "{denied}");
        assert!(denied.to_string().contains("http://e:2379") && denied.to_string().contains("password_file"));
        let down = classify("http://e:2379", etcd_client::Error::GRpcStatus(tonic::Status::unavailable("no leader")));
        assert!(down.is_unavailable() && down.to_string().contains("majority"), "{down}");
    }
}
