//! The single-node store: one redb database file. redb gives ACID write transactions (each
//! `Store` write is exactly one, so a crash never leaves half a catalog) and locks the file, so
//! two federators can never write the same file.
//!
//! Layout: every value is JSON (readable with any tool, and tolerant of added optional fields),
//! keyed by strings (`namespace/name`, source id, `cluster/instance`) or, for events, by `seq`.
//! The `meta` table holds the schema version, checked on open, and the last event seq, kept
//! there so that a seq is never reused even when every event has been trimmed.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use skybridge_api::catalog::{GlobalCatalog, SourceId, UnixMillis};
use skybridge_api::model::ServiceKey;

use super::{Event, GatewayRecord, Persisted, Policy, Store, StoreError, StoredSource};

/// The layout version this code writes. Bump it (and migrate in `init`) when the layout or a
/// value's meaning changes incompatibly; an older federator then refuses the file instead of
/// misreading it.
pub const SCHEMA_VERSION: u64 = 1;

/// redb page cache size.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const CATALOG: TableDefinition<&str, &[u8]> = TableDefinition::new("catalog");
const SOURCES: TableDefinition<&str, &[u8]> = TableDefinition::new("sources");
const POLICIES: TableDefinition<&str, &[u8]> = TableDefinition::new("policies");
const GATEWAYS: TableDefinition<&str, &[u8]> = TableDefinition::new("gateways");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");

const META_SCHEMA_VERSION: &str = "schema_version";
const META_LAST_EVENT_SEQ: &str = "last_event_seq";
/// The catalog table holds one row: the current catalog (history lives in the event log).
const CATALOG_CURRENT: &str = "current";

/// The embedded (single-node) [`Store`]: a redb database file. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

/// Shared with the blocking tasks, which may outlive the `EmbeddedStore` handle that started
/// them (the file stays locked until the last of them ends).
struct Inner {
    db: Database,
    path: PathBuf,
    max_events: usize,
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
        let inner = Inner { db, path: path.to_owned(), max_events };
        inner.init()?;
        Ok(EmbeddedStore { inner: Arc::new(inner) })
    }

    /// The file this store was opened from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs a synchronous redb operation off the async workers: redb blocks on disk (every
    /// commit fsyncs), which must not stall the runtime.
    async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        match tokio::task::spawn_blocking(move || op(&inner)).await {
            Ok(result) => result,
            // A panic in the store is a bug: surface it where the caller awaits, not as an I/O error.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(StoreError::Io(format!("store task cancelled (runtime shutting down?): {e}"))),
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
                // Version 1 is the only one so far; migrations from older versions go here.
                Some(_) => {}
                None => {
                    meta.insert(META_SCHEMA_VERSION, SCHEMA_VERSION).map_err(|e| self.io(e))?;
                }
            }
        }
        txn.open_table(CATALOG).map_err(|e| self.io(e))?;
        txn.open_table(SOURCES).map_err(|e| self.io(e))?;
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

        let table = txn.open_table(CATALOG).map_err(|e| self.io(e))?;
        let catalog = match table.get(CATALOG_CURRENT).map_err(|e| self.io(e))? {
            Some(v) => self.decode("catalog", CATALOG_CURRENT, v.value())?,
            None => GlobalCatalog::default(),
        };

        let mut sources = BTreeMap::new();
        for (key, value) in self.rows(&txn, SOURCES)? {
            let source: StoredSource = self.decode("sources", &key, &value)?;
            sources.insert(key, source);
        }

        let mut policies = BTreeMap::new();
        for (key, value) in self.rows(&txn, POLICIES)? {
            let service: ServiceKey = key
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("{}: table policies, key {key}: {e}", self.path.display())))?;
            policies.insert(service, self.decode::<Policy>("policies", &key, &value)?);
        }

        // Keyed by `cluster/instance`, so gateways come out ordered by cluster, then instance.
        let mut gateways = Vec::new();
        for (key, value) in self.rows(&txn, GATEWAYS)? {
            gateways.push(self.decode::<GatewayRecord>("gateways", &key, &value)?);
        }

        Ok(Persisted { catalog, sources, policies, gateways })
    }

    /// Every row of a string-keyed table, copied out of the transaction.
    fn rows(
        &self,
        txn: &redb::ReadTransaction,
        def: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let table = txn.open_table(def).map_err(|e| self.io(e))?;
        let mut rows = Vec::new();
        for row in table.iter().map_err(|e| self.io(e))? {
            let (k, v) = row.map_err(|e| self.io(e))?;
            rows.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(rows)
    }

    fn save_catalog(&self, catalog: &[u8], sources: &BTreeMap<SourceId, Vec<u8>>) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.io(e))?;
        {
            let mut table = txn.open_table(CATALOG).map_err(|e| self.io(e))?;
            table.insert(CATALOG_CURRENT, catalog).map_err(|e| self.io(e))?;

            // The map is the complete set of sources the catalog was merged from: a source no
            // longer in it (removed from the configuration) must not come back after a restart.
            let mut table = txn.open_table(SOURCES).map_err(|e| self.io(e))?;
            table.retain(|id, _| sources.contains_key(id)).map_err(|e| self.io(e))?;
            for (id, value) in sources {
                table.insert(id.as_str(), value.as_slice()).map_err(|e| self.io(e))?;
            }
        }
        txn.commit().map_err(|e| self.io(e))
    }

    fn put(&self, def: TableDefinition<&str, &[u8]>, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
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

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    // Only fails for maps with non-string keys, which no stored type has; kept as an error
    // rather than a panic in case one ever does.
    serde_json::to_vec(value).map_err(|e| StoreError::Io(format!("cannot encode a value for the store: {e}")))
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
        catalog: &GlobalCatalog,
        sources: &BTreeMap<SourceId, StoredSource>,
    ) -> Result<(), StoreError> {
        // Encode before leaving the caller's task: the blocking task needs owned data, and bytes
        // are cheaper to move than a cloned catalog.
        let catalog = encode(catalog)?;
        let sources =
            sources.iter().map(|(id, s)| Ok((id.clone(), encode(s)?))).collect::<Result<BTreeMap<_, _>, _>>()?;
        self.run(move |s| s.save_catalog(&catalog, &sources)).await
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
