//! The single-node store: one redb database file. redb gives ACID write transactions (each
//! `Store` write is exactly one, so a crash never leaves half a catalog) and locks the file, so
//! two federators can never write the same file.
//!
//! Layout: every value is JSON (readable with any tool, and tolerant of added optional fields),
//! keyed by strings (`namespace/name`, source id, `cluster/instance`) or, for events, by `seq`.
//! The catalog and each source's snapshot are stored a service per row, and a save writes only
//! the rows whose bytes changed since the last save (tracked by hash in memory): one changed
//! service in a 10k-service catalog is a few kilobytes written, not the whole catalog again.
//! The `meta` table holds the schema version, checked on open, and the last event seq, kept
//! there so that a seq is never reused even when every event has been trimmed.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use skybridge_api::catalog::{Export, GlobalCatalog, SourceId, SourceSnapshot, UnixMillis};
use skybridge_api::model::{ClusterId, ServiceKey};

use super::rows::{CatalogHead, Row, RowIndex, RowWrite, SourceHead, catalog_row_hash, encode, row_hash};
use super::{Event, GatewayRecord, Persisted, Policy, Store, StoreError, StoredSource};

/// The layout version this code writes. Bump it (and migrate in `init`) when the layout or a
/// value's meaning changes incompatibly; an older federator then refuses the file instead of
/// misreading it.
pub const SCHEMA_VERSION: u64 = 2;

/// redb page cache size.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
/// Version, digest and clusters of the current catalog, in the row `current`.
const CATALOG_HEAD: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("catalog_head");
/// The current catalog's services by `namespace/name`.
const CATALOG_SERVICES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("catalog_services");
/// Per source: its clusters and sync times.
const SOURCE_HEADS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("source_heads");
/// Per (source, `namespace/name`): that source's exports of the service.
const SOURCE_SERVICES: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("source_services");
/// Schema 1 kept the catalog and each source as one value; `init` migrates them.
const V1_CATALOG: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("catalog");
const V1_SOURCES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sources");
const POLICIES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("policies");
const GATEWAYS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("gateways");
const EVENTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("events");

const META_SCHEMA_VERSION: &str = "schema_version";
const META_LAST_EVENT_SEQ: &str = "last_event_seq";
/// The catalog head table holds one row: the current catalog (history lives in the event log).
const CATALOG_CURRENT: &str = "current";

/// Store operations waiting for the store thread.
const QUEUE: usize = 64;

type Job = Box<dyn FnOnce(&Inner) + Send>;

/// The embedded (single-node) [`Store`]: a redb database file. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
    worker: Arc<Worker>,
}

/// The store thread. Dropping the last handle runs what is queued, then joins the thread, so
/// that the file is unlocked when the drop returns (a restart in the same process can reopen).
struct Worker {
    jobs: Option<tokio::sync::mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Shared with the store thread, which outlives the `EmbeddedStore` handles until it has run
/// every queued operation (the file stays locked until then).
struct Inner {
    db: Database,
    path: PathBuf,
    max_events: usize,
    /// Only catalog saves touch it; they hold it for their whole transaction.
    written: Mutex<RowIndex>,
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.path)
            .field("max_events", &self.inner.max_events)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (creating it and its directory if missing) the store file, keeping at most
    /// `max_events` events. Blocks on file I/O: call it at start-up, before serving.
    pub fn open(path: &Path, max_events: usize) -> Result<Self, StoreError> {
        let open_err = |reason: String| StoreError::Open { path: path.display().to_string(), reason };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                open_err(format!(
                    "cannot create directory {}: {e}; check that the path is a directory the federator may write",
                    dir.display()
                ))
            })?;
        }
        // redb's default page cache is 1 GiB; the catalog is written whole and read back only at
        // start-up, so a small cache keeps the federator's memory to what it serves.
        let db = redb::Builder::new().set_cache_size(CACHE_BYTES).create(path).map_err(|e| match e {
            // redb locks the whole file (OFD/flock locks, so a second open fails even within
            // one process) for as long as the Database lives.
            DatabaseError::DatabaseAlreadyOpen => open_err(
                "the file is locked: is another federator using this file? Only one process may open \
                 it; stop the other one or give this one its own store path"
                    .to_owned(),
            ),
            DatabaseError::Storage(redb::StorageError::Corrupted(msg)) => {
                StoreError::Corrupt(format!("{}: not a readable store file: {msg}", path.display()))
            }
            DatabaseError::UpgradeRequired(v) => open_err(format!(
                "the file uses an older redb file format ({v}) that this federator cannot read; \
                 upgrade it with the redb version that wrote it, or start from a new file"
            )),
            e => open_err(format!(
                "cannot open the database file: {e}; check that it is a regular file the federator may \
                 read and write, and that the disk is not full"
            )),
        })?;
        let inner = Inner { db, path: path.to_owned(), max_events, written: Mutex::default() };
        inner.init()?;
        inner.index_written()?;
        let inner = Arc::new(inner);
        // One thread runs every operation: redb serialises writes anyway, and a single thread
        // keeps the allocator's per-thread caches to one instead of one per blocking-pool
        // thread (measured: ~200 MB less RSS under catalog churn, docs/benchmarks.md).
        let (jobs, mut queue) = tokio::sync::mpsc::channel::<Job>(QUEUE);
        let shared = Arc::clone(&inner);
        let thread = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                while let Some(job) = queue.blocking_recv() {
                    job(&shared);
                }
            })
            .map_err(|e| open_err(format!("cannot start the store thread: {e}")))?;
        let worker = Worker { jobs: Some(jobs), thread: Some(thread) };
        Ok(EmbeddedStore { inner, worker: Arc::new(worker) })
    }

    /// The file this store was opened from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs a synchronous redb operation on the store thread, off the async workers: redb
    /// blocks on disk (every commit fsyncs), which must not stall the runtime.
    async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |inner| {
            let _ = done.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op(inner))));
        });
        let gone = || StoreError::Io("the store thread has stopped (a previous operation panicked?)".into());
        let jobs = self.worker.jobs.as_ref().ok_or_else(gone)?;
        jobs.send(job).await.map_err(|_| gone())?;
        match result.await.map_err(|_| gone())? {
            Ok(result) => result,
            // A panic in the store is a bug: surface it where the caller awaits, not as an I/O error.
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Inner {
    /// Checks the schema version and creates missing tables, so that reads never meet a
    /// missing table.
    fn init(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.io(e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.io(e))?;
            let found = meta.get(META_SCHEMA_VERSION).map_err(|e| self.io(e))?.map(|v| v.value());
            match found {
                Some(v) if v > SCHEMA_VERSION => {
                    // Dropping the transaction aborts it: the newer file is left untouched.
                    return Err(StoreError::Corrupt(format!(
                        "{}: schema version {v}, this federator reads up to {SCHEMA_VERSION}",
                        self.path.display()
                    )));
                }
                Some(SCHEMA_VERSION) => {}
                Some(old) => {
                    drop(meta);
                    self.migrate_v1(&txn, old)?;
                    let mut meta = txn.open_table(META).map_err(|e| self.io(e))?;
                    meta.insert(META_SCHEMA_VERSION, SCHEMA_VERSION).map_err(|e| self.io(e))?;
                }
                None => {
                    meta.insert(META_SCHEMA_VERSION, SCHEMA_VERSION).map_err(|e| self.io(e))?;
                }
            }
        }
        txn.open_table(CATALOG_HEAD).map_err(|e| self.io(e))?;
        txn.open_table(CATALOG_SERVICES).map_err(|e| self.io(e))?;
        txn.open_table(SOURCE_HEADS).map_err(|e| self.io(e))?;
        txn.open_table(SOURCE_SERVICES).map_err(|e| self.io(e))?;
        txn.open_table(POLICIES).map_err(|e| self.io(e))?;
        txn.open_table(GATEWAYS).map_err(|e| self.io(e))?;
        txn.open_table(EVENTS).map_err(|e| self.io(e))?;
        txn.commit().map_err(|e| self.io(e))
    }

    /// Maps a redb failure: damaged or foreign content is `Corrupt`, the rest is I/O.
    fn io(&self, e: impl Into<redb::Error>) -> StoreError {
        let path = self.path.display();
        match e.into() {
            redb::Error::Corrupted(msg) => StoreError::Corrupt(format!("{path}: {msg}")),
            e @ (redb::Error::TableTypeMismatch { .. }
            | redb::Error::TableIsMultimap(_)
            | redb::Error::TypeDefinitionChanged { .. }) => StoreError::Corrupt(format!("{path}: {e}")),
            e => StoreError::Io(format!("{path}: {e}; check free disk space and the file's permissions")),
        }
    }

    fn decode<T: DeserializeOwned>(&self, table: &str, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(bytes)
            .map_err(|e| StoreError::Corrupt(format!("{}: table {table}, key {key}: {e}", self.path.display())))
    }

    fn load(&self) -> Result<Persisted, StoreError> {
        // One read transaction: a consistent snapshot even while writes go on.
        let txn = self.db.begin_read().map_err(|e| self.io(e))?;

        let table = txn.open_table(CATALOG_HEAD).map_err(|e| self.io(e))?;
        let mut catalog = match table.get(CATALOG_CURRENT).map_err(|e| self.io(e))? {
            Some(v) => {
                let head: CatalogHead = self.decode("catalog_head", CATALOG_CURRENT, v.value())?;
                GlobalCatalog {
                    version: head.version,
                    digest: head.digest,
                    clusters: head.clusters,
                    ..Default::default()
                }
            }
            None => GlobalCatalog::default(),
        };
        for (key, value) in self.rows(&txn, CATALOG_SERVICES)? {
            let service = self.service_key("catalog_services", &key)?;
            catalog.services.insert(service, self.decode("catalog_services", &key, &value)?);
        }

        let mut snapshots: BTreeMap<SourceId, SourceSnapshot> = BTreeMap::new();
        let table = txn.open_table(SOURCE_SERVICES).map_err(|e| self.io(e))?;
        for row in table.iter().map_err(|e| self.io(e))? {
            let (k, v) = row.map_err(|e| self.io(e))?;
            let (source, key) = k.value();
            let exports: Vec<Export> = self.decode("source_services", &format!("{source} {key}"), v.value())?;
            let service = self.service_key("source_services", key)?;
            snapshots.entry(source.to_owned()).or_default().services.insert(service, exports);
        }
        let mut sources = BTreeMap::new();
        for (id, value) in self.rows(&txn, SOURCE_HEADS)? {
            let head: SourceHead = self.decode("source_heads", &id, &value)?;
            let mut snapshot = snapshots.remove(&id).unwrap_or_default();
            snapshot.clusters = head.clusters;
            let stored = StoredSource {
                snapshot: Arc::new(snapshot),
                synced_at: head.synced_at,
                failing_since: head.failing_since,
            };
            sources.insert(id, stored);
        }

        let mut policies = BTreeMap::new();
        for (key, value) in self.rows(&txn, POLICIES)? {
            let service = self.service_key("policies", &key)?;
            policies.insert(service, self.decode::<Policy>("policies", &key, &value)?);
        }

        // Keyed by `cluster/instance`, so gateways come out ordered by cluster, then instance.
        let mut gateways = Vec::new();
        for (key, value) in self.rows(&txn, GATEWAYS)? {
            gateways.push(self.decode::<GatewayRecord>("gateways", &key, &value)?);
        }

        Ok(Persisted { catalog, sources, policies, gateways, torn: false })
    }

    fn service_key(&self, table: &str, key: &str) -> Result<ServiceKey, StoreError> {
        key.parse().map_err(|e| StoreError::Corrupt(format!("{}: table {table}, key {key}: {e}", self.path.display())))
    }

    /// Every row of a string-keyed table, copied out of the transaction.
    fn rows(
        &self,
        txn: &redb::ReadTransaction,
        def: TableDefinition<'_, &str, &[u8]>,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let table = txn.open_table(def).map_err(|e| self.io(e))?;
        let mut rows = Vec::new();
        for row in table.iter().map_err(|e| self.io(e))? {
            let (k, v) = row.map_err(|e| self.io(e))?;
            rows.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(rows)
    }

    /// Hashes what the row tables hold, so the first save after opening writes only what
    /// differs from the file.
    fn index_written(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.io(e))?;
        let mut written = RowIndex::default();
        for (key, value) in self.rows(&txn, CATALOG_SERVICES)? {
            let service = self.service_key("catalog_services", &key)?;
            let row = self.decode("catalog_services", &key, &value)?;
            written.set(Row::CatalogService(service.clone()), Some(catalog_row_hash(&service, &row)));
        }
        for (id, value) in self.rows(&txn, SOURCE_HEADS)? {
            written.set(Row::SourceHead(id), Some(row_hash(&value)));
        }
        let table = txn.open_table(SOURCE_SERVICES).map_err(|e| self.io(e))?;
        for row in table.iter().map_err(|e| self.io(e))? {
            let (k, v) = row.map_err(|e| self.io(e))?;
            let (source, key) = k.value();
            let key = self.service_key("source_services", key)?;
            written.set(Row::SourceService(source.to_owned(), key), Some(row_hash(v.value())));
        }
        *self.written.lock().unwrap_or_else(|e| e.into_inner()) = written;
        Ok(())
    }

    /// Rewrites schema-1 tables (one value per catalog and per source) as rows.
    fn migrate_v1(&self, txn: &redb::WriteTransaction, from: u64) -> Result<(), StoreError> {
        if from != 1 {
            return Err(StoreError::Corrupt(format!(
                "{}: schema version {from} is not one this federator can migrate",
                self.path.display()
            )));
        }
        let catalog: Option<GlobalCatalog> = {
            let table = txn.open_table(V1_CATALOG).map_err(|e| self.io(e))?;
            let row = table.get(CATALOG_CURRENT).map_err(|e| self.io(e))?;
            row.map(|v| self.decode("catalog", CATALOG_CURRENT, v.value())).transpose()?
        };
        let mut sources = BTreeMap::new();
        {
            let table = txn.open_table(V1_SOURCES).map_err(|e| self.io(e))?;
            for row in table.iter().map_err(|e| self.io(e))? {
                let (k, v) = row.map_err(|e| self.io(e))?;
                sources.insert(k.value().to_owned(), self.decode::<StoredSource>("sources", k.value(), v.value())?);
            }
        }
        txn.delete_table(V1_CATALOG).map_err(|e| self.io(e))?;
        txn.delete_table(V1_SOURCES).map_err(|e| self.io(e))?;
        if let Some(catalog) = catalog {
            self.write_catalog(txn, &catalog, &sources, &RowIndex::default())?;
        }
        Ok(())
    }

    /// Saves the catalog and sources in one transaction; returns the rows changed.
    fn save_catalog(
        &self,
        catalog: &GlobalCatalog,
        sources: &BTreeMap<SourceId, StoredSource>,
    ) -> Result<usize, StoreError> {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let txn = self.db.begin_write().map_err(|e| self.io(e))?;
        let changes = self.write_catalog(&txn, catalog, sources, &written)?;
        txn.commit().map_err(|e| self.io(e))?;
        // Only now: had the commit failed, the file would still hold the old rows.
        let changed = changes.len();
        written.apply(changes);
        tracing::debug!(version = catalog.version, rows = changed, "catalog saved");
        Ok(changed)
    }

    /// Writes the catalog head and every row that differs from `written` into `txn`; returns
    /// the index changes to apply once it commits.
    fn write_catalog(
        &self,
        txn: &redb::WriteTransaction,
        catalog: &GlobalCatalog,
        sources: &BTreeMap<SourceId, StoredSource>,
        written: &RowIndex,
    ) -> Result<Vec<(Row, Option<u64>)>, StoreError> {
        let head = CatalogHead {
            version: catalog.version,
            digest: catalog.digest,
            clusters: catalog.clusters.clone(),
            term: 0,
            leader: String::new(),
        };
        let mut table = txn.open_table(CATALOG_HEAD).map_err(|e| self.io(e))?;
        table.insert(CATALOG_CURRENT, encode(&head)?.as_slice()).map_err(|e| self.io(e))?;
        let mut services = txn.open_table(CATALOG_SERVICES).map_err(|e| self.io(e))?;
        let mut heads = txn.open_table(SOURCE_HEADS).map_err(|e| self.io(e))?;
        let mut source_services = txn.open_table(SOURCE_SERVICES).map_err(|e| self.io(e))?;
        let mut changes = Vec::new();
        for write in written.changes(catalog, sources) {
            let write: RowWrite = write?;
            let value = write.value.as_deref();
            match &write.row {
                Row::CatalogService(key) => {
                    let key = key.to_string();
                    match value {
                        Some(v) => drop(services.insert(key.as_str(), v).map_err(|e| self.io(e))?),
                        None => drop(services.remove(key.as_str()).map_err(|e| self.io(e))?),
                    }
                }
                Row::SourceHead(id) => match value {
                    Some(v) => drop(heads.insert(id.as_str(), v).map_err(|e| self.io(e))?),
                    None => drop(heads.remove(id.as_str()).map_err(|e| self.io(e))?),
                },
                Row::SourceService(id, key) => {
                    let key = (id.as_str(), key.to_string());
                    match value {
                        Some(v) => drop(source_services.insert((key.0, key.1.as_str()), v).map_err(|e| self.io(e))?),
                        None => drop(source_services.remove((key.0, key.1.as_str())).map_err(|e| self.io(e))?),
                    }
                }
            }
            changes.push(write.indexed());
        }
        Ok(changes)
    }

    fn put(&self, def: TableDefinition<'_, &str, &[u8]>, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.io(e))?;
        {
            let mut table = txn.open_table(def).map_err(|e| self.io(e))?;
            match value {
                Some(v) => drop(table.insert(key, v).map_err(|e| self.io(e))?),
                None => drop(table.remove(key).map_err(|e| self.io(e))?),
            }
        }
        txn.commit().map_err(|e| self.io(e))
    }

    /// Deletes a gateway row unless it says it was seen after `last_seen`; true when deleted.
    fn delete_gateway_seen_by(&self, key: &str, last_seen: UnixMillis) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.io(e))?;
        let deleted = {
            let mut table = txn.open_table(GATEWAYS).map_err(|e| self.io(e))?;
            let stored = table.get(key).map_err(|e| self.io(e))?.map(|v| v.value().to_vec());
            match stored {
                None => false,
                Some(bytes) => {
                    let record: GatewayRecord = self.decode("gateways", key, &bytes)?;
                    if record.last_seen > last_seen {
                        false
                    } else {
                        table.remove(key).map_err(|e| self.io(e))?;
                        true
                    }
                }
            }
        };
        txn.commit().map_err(|e| self.io(e))?;
        Ok(deleted)
    }

    fn append_event(&self, at: UnixMillis, kind: String, message: String) -> Result<Event, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.io(e))?;
        let event = {
            let mut meta = txn.open_table(META).map_err(|e| self.io(e))?;
            let last = meta.get(META_LAST_EVENT_SEQ).map_err(|e| self.io(e))?.map_or(0, |v| v.value());
            let seq = last + 1;
            meta.insert(META_LAST_EVENT_SEQ, seq).map_err(|e| self.io(e))?;

            let event = Event { seq, at, kind, message };
            let mut events = txn.open_table(EVENTS).map_err(|e| self.io(e))?;
            events.insert(seq, encode(&event)?.as_slice()).map_err(|e| self.io(e))?;

            // Seqs are contiguous and only the oldest are ever removed, so the newest
            // `max_events` are exactly those above `seq - max_events`. A range delete also
            // catches up at once if `max_events` was lowered since the last run.
            let keep = u64::try_from(self.max_events).unwrap_or(u64::MAX);
            if let Some(cutoff) = seq.checked_sub(keep).filter(|c| *c > 0) {
                events.retain_in(..=cutoff, |_, _| false).map_err(|e| self.io(e))?;
            }
            event
        };
        txn.commit().map_err(|e| self.io(e))?;
        Ok(event)
    }

    fn events(&self, after_seq: Option<u64>, limit: usize) -> Result<Vec<Event>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.io(e))?;
        let table = txn.open_table(EVENTS).map_err(|e| self.io(e))?;
        let lower = after_seq.map_or(Bound::Unbounded, Bound::Excluded);
        // Walk back from the newest so a small `limit` reads only what it returns.
        let mut out = Vec::with_capacity(limit.min(1024));
        for row in table.range::<u64>((lower, Bound::Unbounded)).map_err(|e| self.io(e))?.rev().take(limit) {
            let (seq, value) = row.map_err(|e| self.io(e))?;
            out.push(self.decode::<Event>("events", &seq.value().to_string(), value.value())?);
        }
        out.reverse();
        Ok(out)
    }
}

fn gateway_key(g: &GatewayRecord) -> String {
    // Cluster ids are DNS labels, so the first `/` always separates cluster from instance.
    format!("{}/{}", g.cluster, g.instance)
}

impl Store for EmbeddedStore {
    async fn load(&self) -> Result<Persisted, StoreError> {
        self.run(|s| s.load()).await
    }

    async fn save_catalog(
        &self,
        catalog: &Arc<GlobalCatalog>,
        sources: &BTreeMap<SourceId, StoredSource>,
    ) -> Result<(), StoreError> {
        // Shared, not copied, into the blocking task, which encodes a row at a time.
        let (catalog, sources) = (Arc::clone(catalog), sources.clone());
        self.run(move |s| s.save_catalog(&catalog, &sources).map(drop)).await
    }

    async fn put_policy(&self, key: &ServiceKey, policy: Option<&Policy>) -> Result<(), StoreError> {
        let key = key.to_string();
        let value = policy.map(encode).transpose()?;
        self.run(move |s| s.put(POLICIES, &key, value.as_deref())).await
    }

    async fn put_gateway(&self, g: &GatewayRecord) -> Result<(), StoreError> {
        let key = gateway_key(g);
        let value = encode(g)?;
        self.run(move |s| s.put(GATEWAYS, &key, Some(&value))).await
    }

    async fn delete_gateway(
        &self,
        cluster: &ClusterId,
        instance: &str,
        last_seen: UnixMillis,
    ) -> Result<bool, StoreError> {
        // One process holds every session, so the caller knows it is disconnected; a record
        // written after the caller decided (a reconnect) stays.
        let key = format!("{cluster}/{instance}");
        self.run(move |s| s.delete_gateway_seen_by(&key, last_seen)).await
    }

    async fn save_source_status(&self, _: &BTreeMap<SourceId, crate::core::SourceStatus>) -> Result<(), StoreError> {
        // The only replica keeps source health in memory; a restart re-learns it from the sources.
        Ok(())
    }

    async fn append_event(&self, at: UnixMillis, kind: &str, message: &str) -> Result<Event, StoreError> {
        let (kind, message) = (kind.to_owned(), message.to_owned());
        self.run(move |s| s.append_event(at, kind, message)).await
    }

    async fn events(&self, after_seq: Option<u64>, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.run(move |s| s.events(after_seq, limit)).await
    }
}

#[cfg(test)]
mod tests;
