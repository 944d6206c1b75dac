//! What a catalog save must write, shared by both backends (pure: values in, row writes out).
//!
//! The catalog and each source's snapshot are kept a service per row, and a save writes only
//! the rows that changed since the last committed save, tracked by hash in a [`RowIndex`]: one
//! changed service in a 10k-service catalog is a few kilobytes written, not the whole catalog
//! again. A catalog row counts as changed when its routing content does (the digest's
//! per-service hash): the time each source last synced (`observed_at`), which moves with every
//! poll for every service, is not rewritten on its own, so a stored row's `observed_at` is when
//! its content last changed (readers take the fresher sync time from source health). Rows are
//! produced lazily, one encoded value at a time, so a large first save never holds the whole
//! encoded catalog in memory.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};
use skybridge_api::catalog::{ClusterInfo, GlobalCatalog, SourceId, UnixMillis, service_digest};
use skybridge_api::model::{ClusterId, ServiceKey};

use super::{StoreError, StoredSource};

/// The catalog without its services: the head row, written last in every save.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogHead {
    pub version: u64,
    pub digest: u64,
    pub clusters: BTreeMap<ClusterId, ClusterInfo>,
    /// The leadership term that wrote it (etcd: the leader key's create revision; 0 embedded).
    #[serde(default)]
    pub term: i64,
    /// The replica that wrote it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub leader: String,
}

/// A source without its services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceHead {
    pub clusters: Vec<ClusterInfo>,
    pub synced_at: UnixMillis,
    pub failing_since: Option<UnixMillis>,
}

/// A row of the catalog or of a source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Row {
    CatalogService(ServiceKey),
    SourceHead(SourceId),
    SourceService(SourceId, ServiceKey),
}

/// One row to write: `value` None deletes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowWrite {
    pub row: Row,
    pub value: Option<Vec<u8>>,
    /// The row's index entry once written.
    hash: Option<u64>,
}

impl RowWrite {
    fn delete(row: Row) -> RowWrite {
        RowWrite { row, value: None, hash: None }
    }

    /// The index entry once this write has committed.
    pub fn indexed(&self) -> (Row, Option<u64>) {
        (self.row.clone(), self.hash)
    }
}

/// The index entry of a stored catalog row: its content hash (see the module docs).
pub fn catalog_row_hash(key: &ServiceKey, service: &skybridge_api::catalog::GlobalService) -> u64 {
    service_digest(key, service)
}

/// Hashes of the rows as last committed.
#[derive(Debug, Default)]
pub struct RowIndex {
    catalog: HashMap<ServiceKey, u64>,
    heads: HashMap<SourceId, u64>,
    sources: HashMap<SourceId, HashMap<ServiceKey, u64>>,
}

impl RowIndex {
    /// Records a row as stored (`None`: absent). Used when loading and after commits.
    pub fn set(&mut self, row: Row, hash: Option<u64>) {
        match (row, hash) {
            (Row::CatalogService(k), Some(h)) => drop(self.catalog.insert(k, h)),
            (Row::CatalogService(k), None) => drop(self.catalog.remove(&k)),
            (Row::SourceHead(s), Some(h)) => drop(self.heads.insert(s, h)),
            (Row::SourceHead(s), None) => drop(self.heads.remove(&s)),
            (Row::SourceService(s, k), Some(h)) => drop(self.sources.entry(s).or_default().insert(k, h)),
            (Row::SourceService(s, k), None) => {
                if let Some(rows) = self.sources.get_mut(&s) {
                    rows.remove(&k);
                    if rows.is_empty() {
                        self.sources.remove(&s);
                    }
                }
            }
        }
    }

    /// Applies committed writes.
    pub fn apply(&mut self, committed: impl IntoIterator<Item = (Row, Option<u64>)>) {
        for (row, hash) in committed {
            self.set(row, hash);
        }
    }

    /// The rows that differ between `catalog` + `sources` and this index, in order: catalog
    /// services, removed catalog services, source heads and services, removed sources' rows.
    /// `sources` is the complete set the catalog was merged from: a source missing from it
    /// (removed from the configuration) loses its rows, so it cannot come back after a restart.
    pub fn changes<'a>(
        &'a self,
        catalog: &'a GlobalCatalog,
        sources: &'a BTreeMap<SourceId, StoredSource>,
    ) -> impl Iterator<Item = Result<RowWrite, StoreError>> + Send + 'a {
        let catalog_puts = catalog.services.iter().filter_map(move |(key, service)| {
            let hash = service_digest(key, service);
            (self.catalog.get(key) != Some(&hash)).then(|| {
                encode(service).map(|value| RowWrite {
                    row: Row::CatalogService(key.clone()),
                    value: Some(value),
                    hash: Some(hash),
                })
            })
        });
        let catalog_deletes = self
            .catalog
            .keys()
            .filter(|k| !catalog.services.contains_key(*k))
            .map(|k| Ok(RowWrite::delete(Row::CatalogService(k.clone()))));
        let mut buf = Vec::new();
        let head_puts = sources.iter().filter_map(move |(id, s)| {
            let head = SourceHead {
                clusters: s.snapshot.clusters.clone(),
                synced_at: s.synced_at,
                failing_since: s.failing_since,
            };
            changed(&mut buf, &head, self.heads.get(id))
                .map(|v| v.map(|value| bytes_row(Row::SourceHead(id.clone()), value)))
        });
        let mut buf = Vec::new();
        let source_puts = sources.iter().flat_map(move |(id, s)| {
            let written = self.sources.get(id);
            let mut buf = std::mem::take(&mut buf);
            s.snapshot.services.iter().filter_map(move |(key, exports)| {
                changed(&mut buf, exports, written.and_then(|rows| rows.get(key)))
                    .map(|v| v.map(|value| bytes_row(Row::SourceService(id.clone(), key.clone()), value)))
            })
        });
        let head_deletes = self
            .heads
            .keys()
            .filter(|id| !sources.contains_key(*id))
            .map(|id| Ok(RowWrite::delete(Row::SourceHead(id.clone()))));
        let source_deletes = self.sources.iter().flat_map(move |(id, rows)| {
            rows.keys()
                .filter(move |key| !sources.get(id).is_some_and(|s| s.snapshot.services.contains_key(*key)))
                .map(move |key| Ok(RowWrite::delete(Row::SourceService(id.clone(), key.clone()))))
        });
        catalog_puts
            .chain(catalog_deletes)
            .chain(head_puts)
            .chain(source_puts)
            .chain(head_deletes)
            .chain(source_deletes)
    }
}

/// A row indexed by the hash of its bytes (source rows).
fn bytes_row(row: Row, value: Vec<u8>) -> RowWrite {
    let hash = Some(row_hash(&value));
    RowWrite { row, value: Some(value), hash }
}

/// Encodes `value` into `buf`; `Some(bytes)` when they differ from the committed hash.
fn changed<T: Serialize>(buf: &mut Vec<u8>, value: &T, committed: Option<&u64>) -> Option<Result<Vec<u8>, StoreError>> {
    if let Err(e) = encode_into(buf, value) {
        return Some(Err(e));
    }
    (committed != Some(&row_hash(buf))).then(|| Ok(buf.clone()))
}

/// Encodes a stored value (JSON: readable with any tool, tolerant of added optional fields).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    // Only fails for maps with non-string keys, which no stored type has; kept as an error
    // rather than a panic in case one ever does.
    serde_json::to_vec(value).map_err(|e| StoreError::Io(format!("cannot encode a value for the store: {e}")))
}

fn encode_into<T: Serialize>(buf: &mut Vec<u8>, value: &T) -> Result<(), StoreError> {
    buf.clear();
    serde_json::to_writer(&mut *buf, value)
        .map_err(|e| StoreError::Io(format!("cannot encode a value for the store: {e}")))
}

/// Change detection only: equal bytes give equal hashes, and the fixed-key SipHash makes an
/// index built from stored bytes agree with one kept while running.
pub fn row_hash(bytes: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use skybridge_api::catalog::{Export, GlobalService, PortSpec, SourceSnapshot};
    use skybridge_api::model::Protocol;

    use super::*;

    fn key(n: &str) -> ServiceKey {
        ServiceKey::new("prod", n).unwrap()
    }

    fn inputs(names: &[&str]) -> (GlobalCatalog, BTreeMap<SourceId, StoredSource>) {
        let mut catalog = GlobalCatalog::default();
        let mut snapshot = SourceSnapshot::default();
        for n in names {
            let svc = GlobalService {
                ports: vec![PortSpec { port: 80, protocol: Protocol::Http }],
                clusters: BTreeMap::new(),
                conflicts: vec![],
            };
            catalog.services.insert(key(n), svc);
            let export = Export { cluster: ClusterId::new("a-1").unwrap(), exported_at: 1, ports: vec![] };
            snapshot.services.insert(key(n), vec![export]);
        }
        let stored = StoredSource { snapshot: Arc::new(snapshot), synced_at: 5, failing_since: None };
        (catalog, BTreeMap::from([("static".to_owned(), stored)]))
    }

    fn commit(index: &mut RowIndex, catalog: &GlobalCatalog, sources: &BTreeMap<SourceId, StoredSource>) -> Vec<Row> {
        let writes: Vec<RowWrite> = index.changes(catalog, sources).collect::<Result<_, _>>().unwrap();
        index.apply(writes.iter().map(RowWrite::indexed));
        writes.into_iter().map(|w| w.row).collect()
    }

    #[test]
    fn a_sync_that_only_moves_observed_at_rewrites_no_catalog_row() {
        use skybridge_api::catalog::{ClusterExport, Provenance};
        let mut index = RowIndex::default();
        let (mut c, s) = inputs(&["a"]);
        let export = |observed_at| ClusterExport {
            exported_at: 1,
            endpoints: BTreeMap::new(),
            provenance: Provenance { source: "static".into(), observed_at, stale_since: None },
        };
        let svc = c.services.get_mut(&key("a")).unwrap();
        svc.clusters.insert(ClusterId::new("a-1").unwrap(), export(10));
        commit(&mut index, &c, &s);
        c.services.get_mut(&key("a")).unwrap().clusters.insert(ClusterId::new("a-1").unwrap(), export(20));
        assert!(commit(&mut index, &c, &s).is_empty(), "only the sync time moved");
        let mut stale = export(20);
        stale.provenance.stale_since = Some(15);
        c.services.get_mut(&key("a")).unwrap().clusters.insert(ClusterId::new("a-1").unwrap(), stale);
        assert_eq!(commit(&mut index, &c, &s), [Row::CatalogService(key("a"))], "staleness is content");
    }

    #[test]
    fn only_changed_rows_are_written_and_removed_ones_deleted() {
        let mut index = RowIndex::default();
        let (c, s) = inputs(&["a", "b"]);
        assert_eq!(commit(&mut index, &c, &s).len(), 5, "2 services, 1 source head, 2 source rows");
        assert!(commit(&mut index, &c, &s).is_empty(), "nothing changed");
        let (c2, s2) = inputs(&["a", "c"]);
        let rows = commit(&mut index, &c2, &s2);
        assert!(rows.contains(&Row::CatalogService(key("c"))) && rows.contains(&Row::CatalogService(key("b"))));
        assert!(rows.contains(&Row::SourceService("static".into(), key("b"))));
        assert_eq!(rows.len(), 4, "{rows:?}");
        // A source dropped from the configuration loses every row.
        let rows = commit(&mut index, &c2, &BTreeMap::new());
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert!(rows.contains(&Row::SourceHead("static".into())));
    }
}
