use std::collections::BTreeMap;
use std::sync::Arc;

use skybridge_api::catalog::{
    ClusterExport, ClusterInfo, Conflict, Endpoint, Export, GlobalCatalog, GlobalService, PortExport, PortSpec,
    Provenance, SourceSnapshot,
};
use skybridge_api::model::{Cloud, ClusterId, Protocol, ServiceKey};

use super::*;

fn cluster(id: &str) -> ClusterId {
    ClusterId::new(id).unwrap()
}

fn svc(ns: &str, name: &str) -> ServiceKey {
    ServiceKey::new(ns, name).unwrap()
}

fn endpoint(addr: &str) -> Endpoint {
    Endpoint { address: addr.parse().unwrap(), zone: Some("use1-az1".into()), ready: true }
}

fn info(id: &str, cloud: Cloud) -> ClusterInfo {
    ClusterInfo { id: cluster(id), cloud, region: "us-east-1".into(), network: None }
}

fn catalog(version: u64) -> GlobalCatalog {
    let export = |source: &str, addr: &str| ClusterExport {
        exported_at: 1_000,
        endpoints: BTreeMap::from([(443, [endpoint(addr)].into())]),
        provenance: Provenance { source: source.into(), observed_at: 2_000, stale_since: Some(3_000) },
    };
    let payments = GlobalService {
        ports: vec![PortSpec { port: 443, protocol: Protocol::Tls }],
        clusters: BTreeMap::from([
            (cluster("aws-a"), export("aws-prod", "10.0.0.1:443")),
            (cluster("gke-b"), export("gke-fleet", "10.1.0.1:443")),
        ]),
        conflicts: vec![Conflict { cluster: cluster("gke-b"), winner: cluster("aws-a"), reason: "port 80".into() }],
    };
    let web = GlobalService {
        ports: vec![PortSpec { port: 80, protocol: Protocol::Http }],
        clusters: BTreeMap::from([(cluster("aws-a"), export("aws-prod", "10.0.0.2:80"))]),
        conflicts: vec![],
    };
    GlobalCatalog {
        version,
        digest: 0xdead_beef,
        clusters: BTreeMap::from([
            (cluster("aws-a"), info("aws-a", Cloud::Aws)),
            (cluster("gke-b"), info("gke-b", Cloud::Gcp)),
        ]),
        services: BTreeMap::from([(svc("prod", "payments"), payments), (svc("web", "frontend"), web)]),
    }
}

fn source(cluster_id: &str, failing: bool) -> StoredSource {
    let export = Export {
        cluster: cluster(cluster_id),
        exported_at: 1_000,
        ports: vec![PortExport { port: 443, protocol: Protocol::Tls, endpoints: [endpoint("10.0.0.1:443")].into() }],
    };
    StoredSource {
        snapshot: std::sync::Arc::new(SourceSnapshot {
            clusters: vec![info(cluster_id, Cloud::Aws)],
            services: BTreeMap::from([(svc("prod", "payments"), vec![export])]),
            ..Default::default()
        }),
        synced_at: 5_000,
        failing_since: failing.then_some(6_000),
    }
}

fn sources() -> BTreeMap<SourceId, StoredSource> {
    BTreeMap::from([("aws-prod".to_owned(), source("aws-a", false)), ("gke-fleet".to_owned(), source("gke-b", true))])
}

fn policy() -> Policy {
    Policy {
        weights: BTreeMap::from([(cluster("aws-a"), 70), (cluster("gke-b"), 30)]),
        failover: vec![cluster("gke-b")],
        avoid: vec![cluster("azure-c")],
        allow: Some(vec!["aws-a".parse().unwrap(), "spiffe://gcp.example".parse().unwrap()]),
        deny: vec!["aws-dev-*".parse().unwrap()],
    }
}

fn gateway(cluster_id: &str, instance: &str, acked: u64) -> GatewayRecord {
    GatewayRecord {
        cluster: cluster(cluster_id),
        instance: instance.into(),
        version: "0.1.0".into(),
        tunnel_addresses: vec!["203.0.113.7:4433".into()],
        last_seen: 7_000,
        acked_version: acked,
    }
}

fn temp_store(max_events: usize) -> (tempfile::TempDir, PathBuf, EmbeddedStore) {
    let dir = tempfile::tempdir().unwrap();
    // A subdirectory that does not exist yet: `open` must create it.
    let path = dir.path().join("state").join("federator.redb");
    let store = EmbeddedStore::open(&path, max_events).unwrap();
    (dir, path, store)
}

/// Writes one of everything; returns what `load` should give back.
async fn fill(store: &EmbeddedStore) -> Persisted {
    store.save_catalog(&Arc::new(catalog(3)), &sources()).await.unwrap();
    store.put_policy(&svc("prod", "payments"), Some(&policy())).await.unwrap();
    store.put_policy(&svc("web", "frontend"), Some(&Policy::default())).await.unwrap();
    // Inserted out of order: `load` returns them by (cluster, instance).
    store.put_gateway(&gateway("gke-b", "gw-0", 3)).await.unwrap();
    store.put_gateway(&gateway("aws-a", "gw-1", 2)).await.unwrap();
    store.put_gateway(&gateway("aws-a", "gw-0", 3)).await.unwrap();
    store.append_event(10, "catalog", "version 3").await.unwrap();
    store.append_event(11, "gateway", "aws-a/gw-0 connected").await.unwrap();
    Persisted {
        catalog: catalog(3),
        sources: sources(),
        policies: BTreeMap::from([(svc("prod", "payments"), policy()), (svc("web", "frontend"), Policy::default())]),
        gateways: vec![gateway("aws-a", "gw-0", 3), gateway("aws-a", "gw-1", 2), gateway("gke-b", "gw-0", 3)],
        torn: false,
    }
}

fn expected_events() -> Vec<Event> {
    vec![
        Event { seq: 1, at: 10, kind: "catalog".into(), message: "version 3".into() },
        Event { seq: 2, at: 11, kind: "gateway".into(), message: "aws-a/gw-0 connected".into() },
    ]
}

#[tokio::test]
async fn new_file_loads_empty() {
    let (_dir, path, store) = temp_store(10);
    assert!(path.is_file());
    assert_eq!(store.load().await.unwrap(), Persisted::default());
    assert_eq!(store.events(None, 10).await.unwrap(), vec![]);
}

#[tokio::test]
async fn round_trip_every_kind_of_data() {
    let (_dir, _path, store) = temp_store(10);
    let expected = fill(&store).await;
    assert_eq!(store.load().await.unwrap(), expected);
    assert_eq!(store.events(None, 10).await.unwrap(), expected_events());

    // Overwrites and deletes.
    store.put_gateway(&gateway("aws-a", "gw-0", 4)).await.unwrap();
    store.put_policy(&svc("web", "frontend"), None).await.unwrap();
    store.put_policy(&svc("nope", "absent"), None).await.unwrap(); // deleting a missing policy is fine
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.gateways[0], gateway("aws-a", "gw-0", 4));
    assert_eq!(loaded.gateways.len(), 3);
    assert_eq!(loaded.policies, BTreeMap::from([(svc("prod", "payments"), policy())]));
}

#[tokio::test]
async fn restart_keeps_everything() {
    let (_dir, path, store) = temp_store(10);
    let expected = fill(&store).await;
    drop(store);

    let store = EmbeddedStore::open(&path, 10).unwrap();
    assert_eq!(store.load().await.unwrap(), expected);
    assert_eq!(store.events(None, 10).await.unwrap(), expected_events());
    // The seq continues after a restart rather than starting over.
    assert_eq!(store.append_event(12, "start", "restarted").await.unwrap().seq, 3);
}

#[tokio::test]
async fn save_catalog_replaces_the_sources() {
    let (_dir, path, store) = temp_store(10);
    store.save_catalog(&Arc::new(catalog(1)), &sources()).await.unwrap();

    let mut fewer = sources();
    fewer.remove("gke-fleet");
    fewer.insert("static".into(), source("azure-c", false));
    store.save_catalog(&Arc::new(catalog(2)), &fewer).await.unwrap();
    drop(store);

    let loaded = EmbeddedStore::open(&path, 10).unwrap().load().await.unwrap();
    assert_eq!(loaded.catalog, catalog(2));
    assert_eq!(loaded.sources, fewer);
    assert!(!loaded.sources.contains_key("gke-fleet"));
}

#[tokio::test]
async fn events_are_trimmed_and_paged() {
    let (_dir, path, store) = temp_store(5);
    for i in 1..=8u64 {
        let e = store.append_event(100 + i, "k", &format!("event {i}")).await.unwrap();
        assert_eq!((e.seq, e.at), (i, 100 + i));
    }
    let seqs = |events: Vec<Event>| events.into_iter().map(|e| e.seq).collect::<Vec<_>>();
    // Only the newest 5 remain, oldest first.
    assert_eq!(seqs(store.events(None, 100).await.unwrap()), [4, 5, 6, 7, 8]);
    // `limit` keeps the most recent ones.
    assert_eq!(seqs(store.events(None, 2).await.unwrap()), [7, 8]);
    assert_eq!(seqs(store.events(Some(5), 100).await.unwrap()), [6, 7, 8]);
    assert_eq!(seqs(store.events(Some(5), 2).await.unwrap()), [7, 8]);
    assert_eq!(seqs(store.events(Some(1), 100).await.unwrap()), [4, 5, 6, 7, 8]);
    assert_eq!(seqs(store.events(Some(8), 100).await.unwrap()), Vec::<u64>::new());
    assert_eq!(seqs(store.events(Some(u64::MAX), 100).await.unwrap()), Vec::<u64>::new());
    assert_eq!(seqs(store.events(None, 0).await.unwrap()), Vec::<u64>::new());
    assert_eq!(store.events(Some(7), 1).await.unwrap()[0].message, "event 8");
    drop(store);

    // A lower limit after a restart trims at the next append.
    let store = EmbeddedStore::open(&path, 2).unwrap();
    assert_eq!(store.append_event(200, "k", "event 9").await.unwrap().seq, 9);
    assert_eq!(seqs(store.events(None, 100).await.unwrap()), [8, 9]);
}

#[tokio::test]
async fn zero_max_events_keeps_none_but_seq_still_increases() {
    let (_dir, _path, store) = temp_store(0);
    assert_eq!(store.append_event(1, "k", "a").await.unwrap().seq, 1);
    assert_eq!(store.append_event(2, "k", "b").await.unwrap().seq, 2);
    assert_eq!(store.events(None, 10).await.unwrap(), vec![]);
}

#[tokio::test]
async fn a_save_writes_only_the_rows_that_changed() {
    let (_dir, path, store) = temp_store(10);
    let inner = Arc::clone(&store.inner);
    let mut c = catalog(1);
    let mut src = sources();
    // 2 catalog services + one service and one head in each of 2 sources.
    assert_eq!(inner.save_catalog(&c, &src).unwrap(), 6);
    assert_eq!(inner.save_catalog(&c, &src).unwrap(), 0, "nothing changed, nothing written");

    c.version = 2;
    c.services.get_mut(&svc("web", "frontend")).unwrap().conflicts.clear();
    c.services.get_mut(&svc("web", "frontend")).unwrap().ports[0].port = 8080;
    c.services.remove(&svc("prod", "payments"));
    src.remove("gke-fleet");
    assert_eq!(inner.save_catalog(&c, &src).unwrap(), 4, "one changed, one removed, one source's rows removed");
    drop((inner, store));

    // Reopened: the index is rebuilt from the file, so an unchanged save still writes nothing.
    let store = EmbeddedStore::open(&path, 10).unwrap();
    let loaded = store.load().await.unwrap();
    assert_eq!((loaded.catalog, loaded.sources), (c.clone(), src.clone()));
    assert_eq!(store.inner.save_catalog(&c, &src).unwrap(), 0);
}

#[tokio::test]
async fn a_schema_1_file_is_migrated() {
    let (_dir, path, store) = temp_store(10);
    drop(store);
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().insert(META_SCHEMA_VERSION, 1).unwrap();
        txn.open_table(V1_CATALOG).unwrap().insert(CATALOG_CURRENT, encode(&catalog(7)).unwrap().as_slice()).unwrap();
        {
            let mut t = txn.open_table(V1_SOURCES).unwrap();
            for (id, s) in sources() {
                t.insert(id.as_str(), encode(&s).unwrap().as_slice()).unwrap();
            }
        }
        for t in [CATALOG_HEAD, CATALOG_SERVICES, SOURCE_HEADS] {
            txn.delete_table(t).unwrap();
        }
        txn.delete_table(SOURCE_SERVICES).unwrap();
        txn.commit().unwrap();
    }
    let store = EmbeddedStore::open(&path, 10).unwrap();
    let loaded = store.load().await.unwrap();
    assert_eq!((loaded.catalog, loaded.sources), (catalog(7), sources()));
    drop(store);
    let db = Database::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    assert_eq!(txn.open_table(META).unwrap().get(META_SCHEMA_VERSION).unwrap().unwrap().value(), SCHEMA_VERSION);
    assert!(txn.open_table(V1_CATALOG).is_err(), "the old tables are gone");
}

#[test]
fn future_schema_version_is_refused() {
    let (_dir, path, store) = temp_store(10);
    drop(store);
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().insert(META_SCHEMA_VERSION, SCHEMA_VERSION + 1).unwrap();
        txn.commit().unwrap();
    }
    let err = EmbeddedStore::open(&path, 10).unwrap_err();
    let StoreError::Corrupt(msg) = &err else { panic!("expected Corrupt, got {err:?}") };
    assert!(msg.contains(&format!("schema version {}", SCHEMA_VERSION + 1)), "{msg}");
    assert!(msg.contains(&format!("reads up to {SCHEMA_VERSION}")), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
}

#[test]
fn unwritable_path_fails_with_open_naming_the_path() {
    // `/dev/null` is a file, so nothing can be created under it, even by root.
    let path = Path::new("/dev/null/skybridge/federator.redb");
    let err = EmbeddedStore::open(path, 10).unwrap_err();
    let StoreError::Open { path: p, reason } = &err else { panic!("expected Open, got {err:?}") };
    assert_eq!(p, "/dev/null/skybridge/federator.redb");
    assert!(reason.contains("/dev/null/skybridge"), "{reason}");
    assert!(err.to_string().contains(p.as_str()), "{err}");
}

#[test]
fn a_file_that_is_not_a_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("federator.redb");
    std::fs::write(&path, b"this is not a redb file, just some text that is long enough to be a header").unwrap();
    let err = EmbeddedStore::open(&path, 10).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. } | StoreError::Corrupt(_)), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
}

/// redb locks the file with open-file-description locks, which conflict even between two
/// opens in one process; the lock goes with the `Database`, so a dropped store frees the file.
#[test]
fn second_open_of_the_same_file_is_refused() {
    let (_dir, path, first) = temp_store(10);
    let err = EmbeddedStore::open(&path, 10).unwrap_err();
    let StoreError::Open { path: p, reason } = &err else { panic!("expected Open, got {err:?}") };
    assert_eq!(p, &path.display().to_string());
    assert!(reason.contains("is another federator using this file?"), "{reason}");

    drop(first);
    EmbeddedStore::open(&path, 10).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_distinct_seqs() {
    let (_dir, _path, store) = temp_store(100);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.append_event(i, "k", "m").await.unwrap().seq })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=20).collect::<Vec<u64>>());
}
