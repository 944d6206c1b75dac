//! The etcd store against a real etcd (Debian's `etcd-server`, started here): what it writes
//! and reads back, the leadership fence, and what bad etcd input does to a federator.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use skybridge_api::catalog::{
    ClusterExport, ClusterInfo, Export, GlobalCatalog, GlobalService, PortExport, PortSpec, Provenance, SourceSnapshot,
    digest,
};
use skybridge_api::model::{Cloud, ClusterId, Protocol, ServiceKey};
use skybridge_federator::config::{Config, EtcdConfig, StoreSection};
use skybridge_federator::store::etcd::{Campaign, EtcdStore};
use skybridge_federator::store::{GatewayRecord, Policy, Store, StoreError, StoredSource};
use skybridge_tests::etcd::Etcd;
use skybridge_tests::{eventually, get_json};

fn cluster(id: &str) -> ClusterId {
    ClusterId::new(id).unwrap()
}

fn svc(name: &str) -> ServiceKey {
    ServiceKey::new("prod", name).unwrap()
}

/// A catalog of `n` services (`svc-0`..) with `port`, and the source snapshot it came from.
fn catalog(version: u64, n: usize, port: u16) -> (Arc<GlobalCatalog>, BTreeMap<String, StoredSource>) {
    let c = cluster("aws-1");
    let info = ClusterInfo { id: c.clone(), cloud: Cloud::Aws, region: "us-east-1".into(), network: None };
    let endpoint = |i: usize| skybridge_api::catalog::Endpoint {
        address: format!("10.0.{}.{}:{port}", i / 250, i % 250 + 1).parse().unwrap(),
        zone: None,
        ready: true,
    };
    let mut cat = GlobalCatalog {
        version,
        digest: 0,
        clusters: BTreeMap::from([(c.clone(), info.clone())]),
        ..Default::default()
    };
    let mut snapshot = SourceSnapshot { clusters: vec![info], ..Default::default() };
    for i in 0..n {
        let eps: skybridge_api::catalog::Endpoints = [endpoint(i)].into();
        cat.services.insert(
            svc(&format!("svc-{i}")),
            GlobalService {
                ports: vec![PortSpec { port, protocol: Protocol::Http }],
                clusters: BTreeMap::from([(
                    c.clone(),
                    ClusterExport {
                        exported_at: 1,
                        endpoints: BTreeMap::from([(port, eps.clone())]),
                        provenance: Provenance { source: "static".into(), observed_at: 2, stale_since: None },
                    },
                )]),
                conflicts: vec![],
            },
        );
        let export = Export {
            cluster: c.clone(),
            exported_at: 1,
            ports: vec![PortExport { port, protocol: Protocol::Http, endpoints: eps }],
        };
        snapshot.services.insert(svc(&format!("svc-{i}")), vec![export]);
    }
    cat.digest = digest(&cat);
    let stored = StoredSource { snapshot: Arc::new(snapshot), synced_at: 3, failing_since: None };
    (Arc::new(cat), BTreeMap::from([("static".to_owned(), stored)]))
}

fn etcd_config(etcd: &Etcd, prefix: &str, extra: &str) -> EtcdConfig {
    let text = format!(
        "[federator]\ntrust_domain = \"t\"\n[tls]\ncert = \"c\"\nkey = \"k\"\ntrust_bundle = \"b\"\n\
         [store]\nbackend = \"etcd\"\nendpoints = {}\nprefix = \"{prefix}\"\nlease_ttl = \"2s\"\n{extra}",
        etcd.endpoints_toml()
    );
    match Config::parse(&text).unwrap().store {
        StoreSection::Etcd(e) => *e,
        StoreSection::Embedded => unreachable!(),
    }
}

async fn store(etcd: &Etcd, prefix: &str, name: &str, extra: &str) -> EtcdStore {
    let s = EtcdStore::connect(&etcd_config(etcd, prefix, extra), name, 100).await.unwrap();
    s.check_schema().await.unwrap();
    s
}

/// aws-1/gw-0, last seen at 1.
fn gateway_record() -> GatewayRecord {
    GatewayRecord {
        cluster: cluster("aws-1"),
        instance: "gw-0".into(),
        version: String::new(),
        tunnel_addresses: vec![],
        last_seen: 1,
        acked_version: 0,
    }
}

/// Becomes leader on a fresh lease; returns (lease, term).
async fn lead(s: &EtcdStore) -> (i64, i64) {
    let lease = s.grant(Duration::from_secs(2)).await.unwrap();
    let Campaign::Won { term } = s.campaign(lease, 1).await.unwrap() else { panic!("the key was free") };
    s.set_term(Some(term));
    (lease, term)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_written_reads_back_and_only_changed_rows_are_written() {
    let etcd = Etcd::start(1);
    let s = store(&etcd, "/rt", "fed-a", "").await;
    lead(&s).await;
    let (c1, src1) = catalog(1, 20, 80);
    s.save_catalog(&c1, &src1).await.unwrap();
    let policy = Policy { avoid: vec![cluster("gcp-1")], ..Policy::default() };
    s.put_policy(&svc("svc-1"), Some(&policy)).await.unwrap();
    s.put_policy(&svc("svc-2"), Some(&Policy::default())).await.unwrap();
    s.put_policy(&svc("svc-2"), None).await.unwrap();
    let gw = GatewayRecord {
        cluster: cluster("aws-1"),
        instance: "gw-0".into(),
        version: "0.1.0".into(),
        tunnel_addresses: vec!["203.0.113.1:15443".into()],
        last_seen: 5,
        acked_version: 1,
    };
    s.put_gateway(&gw).await.unwrap();

    // A second replica reads the same thing.
    let other = store(&etcd, "/rt", "fed-b", "").await;
    let p = other.load().await.unwrap();
    assert_eq!(p.catalog, *c1);
    assert_eq!(p.sources, src1);
    assert_eq!(p.policies, BTreeMap::from([(svc("svc-1"), policy)]));
    assert_eq!(p.gateways, vec![gw]);

    // One service changes: its catalog row, its source row and the head are written, nothing else.
    let before = etcd.ctl(&["get", "/rt/", "--prefix", "-w", "json"]);
    let revision = |json: &str| -> i64 {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        v["header"]["revision"].as_i64().unwrap()
    };
    let (mut c2, mut src2) = catalog(2, 20, 80);
    {
        let c2 = Arc::make_mut(&mut c2);
        let port = c2.services.get_mut(&svc("svc-7")).unwrap();
        port.ports[0].port = 81;
        c2.digest = digest(c2);
        let snap = Arc::make_mut(&mut src2.get_mut("static").unwrap().snapshot);
        snap.services.get_mut(&svc("svc-7")).unwrap()[0].ports[0].port = 81;
    }
    s.save_catalog(&c2, &src2).await.unwrap();
    let changed = etcd.ctl(&["get", "/rt/", "--prefix", "--keys-only", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&changed).unwrap();
    let modified: Vec<String> = v["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|kv| kv["mod_revision"].as_i64().unwrap() > revision(&before))
        .map(|kv| base64_decode(kv["key"].as_str().unwrap()))
        .collect();
    assert_eq!(
        modified,
        ["/rt/catalog/head", "/rt/catalog/services/prod/svc-7", "/rt/source-services/static/prod/svc-7"],
        "one transaction with only the changed keys"
    );
    assert_eq!(other.load().await.unwrap().catalog, *c2);
}

/// Decodes etcdctl's base64 keys (no crate for one test helper).
fn base64_decode(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|c| *c != b'=') {
        bits = (bits << 6) | A.iter().position(|a| *a == c).unwrap() as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_larger_than_one_transaction_is_written_in_several_with_the_head_last() {
    let etcd = Etcd::start(1);
    // 8 operations per transaction: 50 services and 50 source rows need 15 transactions.
    let s = store(&etcd, "/big", "fed-a", "max_txn_ops = 8\n").await;
    lead(&s).await;
    let reader = store(&etcd, "/big", "fed-b", "").await;
    let (start, _) = reader.range_all().await.unwrap();
    let (c, src) = catalog(1, 50, 80);
    s.save_catalog(&c, &src).await.unwrap();
    assert_eq!(reader.load().await.unwrap().catalog, *c);
    // Replayed in order, the head is the last key written.
    let mut watch = reader.watch(start + 1).await.unwrap();
    let mut keys = Vec::new();
    while keys.len() < 102 {
        let resp = tokio::time::timeout(Duration::from_secs(5), watch.message()).await.unwrap().unwrap().unwrap();
        keys.extend(resp.events().iter().map(|e| e.kv().unwrap().key_str().unwrap().to_owned()));
    }
    assert_eq!(keys.len(), 102);
    assert_eq!(keys.last().unwrap(), "/big/catalog/head");
    assert_eq!(keys.iter().filter(|k| k.contains("/catalog/services/")).count(), 50);
    // A row newer than its head (a leader that died between the transactions of a version):
    // the next leader is told to write a complete version at once.
    assert!(!reader.load().await.unwrap().torn);
    let row = etcd.ctl(&["get", "/big/catalog/services/prod/svc-3", "--print-value-only"]);
    etcd.ctl(&["put", "/big/catalog/services/prod/svc-3", &row.trim().replace("\"port\":80", "\"port\":81")]);
    let torn = reader.load().await.unwrap();
    assert!(torn.torn && torn.catalog.digest == 0, "torn: {}", torn.torn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_cannot_write() {
    let etcd = Etcd::start(1);
    let a = store(&etcd, "/fence", "fed-a", "").await;
    let b = store(&etcd, "/fence", "fed-b", "").await;
    let (lease_a, term_a) = lead(&a).await;
    let (c1, src) = catalog(1, 3, 80);
    a.save_catalog(&c1, &src).await.unwrap();

    // B cannot lead while A holds the key.
    let lease_b = b.grant(Duration::from_secs(2)).await.unwrap();
    let Campaign::Held { by, term, lease, .. } = b.campaign(lease_b, 2).await.unwrap() else { panic!("a leads") };
    assert_eq!((by.as_str(), term, lease), ("fed-a", term_a, lease_a));
    // A's lease ends (as when A is paused past its TTL); B takes over.
    a.revoke(lease_a).await.unwrap();
    let Campaign::Won { term: term_b } = b.campaign(lease_b, 3).await.unwrap() else { panic!("the key is free") };
    b.set_term(Some(term_b));
    assert!(term_b > term_a);

    // A still believes it leads (its term is set), but every leader write is refused.
    let (c2, _) = catalog(2, 4, 80);
    let e = a.save_catalog(&c2, &src).await.unwrap_err();
    assert!(matches!(e, StoreError::Fenced), "{e}");
    a.set_term(Some(term_a));
    let gw = gateway_record();
    b.put_gateway(&gw).await.unwrap();
    let e = a.delete_gateway(&cluster("aws-1"), "gw-0", u64::MAX).await.unwrap_err();
    assert!(matches!(e, StoreError::Fenced), "{e}");
    a.set_term(Some(term_a));
    assert!(matches!(a.save_source_status(&BTreeMap::new()).await.unwrap_err(), StoreError::Fenced));
    assert_eq!(b.load().await.unwrap().catalog, *c1, "nothing of A's landed");
    // B writes.
    let (c3, src3) = catalog(3, 5, 80);
    b.save_catalog(&c3, &src3).await.unwrap();
    let head = etcd.ctl(&["get", "/fence/catalog/head", "--print-value-only"]);
    let head: serde_json::Value = serde_json::from_str(head.trim()).unwrap();
    assert_eq!(
        (head["version"].as_u64(), head["term"].as_i64(), head["leader"].as_str()),
        (Some(3), Some(term_b), Some("fed-b"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_connected_anywhere_are_not_removed_and_events_are_shared_and_trimmed() {
    let etcd = Etcd::start(1);
    let a = store(&etcd, "/gw", "fed-a", "").await;
    let b = store(&etcd, "/gw", "fed-b", "").await;
    let (lease_a, _) = lead(&a).await;
    let gw = gateway_record();
    b.put_gateway(&gw).await.unwrap();
    // B holds a session of it: the leader may not remove the record.
    let lease_b = b.grant(Duration::from_secs(5)).await.unwrap();
    let presence = a.keys().presence(&gw.cluster, &gw.instance, "fed-b");
    b.write_own(lease_b, vec![(presence.clone(), b"{}".to_vec())], vec![]).await.unwrap();
    assert!(!a.delete_gateway(&gw.cluster, &gw.instance, 1).await.unwrap());
    b.write_own(lease_b, vec![], vec![presence]).await.unwrap();
    // Seen again since the leader decided (a reconnect it has not heard of): kept.
    assert!(!a.delete_gateway(&gw.cluster, &gw.instance, 0).await.unwrap());
    assert!(a.delete_gateway(&gw.cluster, &gw.instance, 1).await.unwrap());
    assert!(b.load().await.unwrap().gateways.is_empty());
    let _ = lease_a;

    // Both replicas append; seqs (etcd revisions) increase in one order across both, and the
    // log is trimmed to about the configured maximum (100).
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut tasks = Vec::new();
    for (s, who) in [(a.clone(), "a"), (b.clone(), "b")] {
        tasks.push(tokio::spawn(async move {
            for i in 0..140 {
                s.append_event(i, "test", &format!("{who}{i}")).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = a.events(None, 1000).await.unwrap();
    assert!((100..100 + 2 * 32).contains(&all.len()), "{}", all.len());
    assert!(all.windows(2).all(|w| w[1].seq > w[0].seq));
    let messages: Vec<&str> = all.iter().map(|e| e.message.as_str()).collect();
    assert!(messages.contains(&"a139") && messages.contains(&"b139"), "the newest stay");
    assert!(!messages.contains(&"a0") && !messages.contains(&"b0"), "the oldest go");
    let mid = all[all.len() - 10].seq;
    let page = b.events(Some(mid), 3).await.unwrap();
    let want: Vec<u64> = all[all.len() - 3..].iter().map(|e| e.seq).collect();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), want, "the newest 3 after a seq");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_etcd_input_gets_a_clear_error_and_never_an_empty_catalog() {
    let etcd = Etcd::start(1);
    // Something else under the prefix: the schema key holds what this federator never writes.
    etcd.ctl(&["put", "/foreign/schema", "hello"]);
    let cfg = etcd_config(&etcd, "/foreign", "");
    let s = EtcdStore::connect(&cfg, "fed-a", 100).await.unwrap();
    let e = s.check_schema().await.unwrap_err().to_string();
    assert!(e.contains("/foreign/schema") && e.contains("another program"), "{e}");
    // A newer layout is refused by name too.
    etcd.ctl(&["put", "/newer/schema", "99"]);
    let s = EtcdStore::connect(&etcd_config(&etcd, "/newer", ""), "fed-a", 100).await.unwrap();
    let e = s.check_schema().await.unwrap_err().to_string();
    assert!(e.contains("layout version 99"), "{e}");

    // Nothing listens: the error names the endpoint and says what to check.
    let dead = skybridge_tests::free_low_tcp(1)[0];
    let text = format!(
        "[federator]\ntrust_domain = \"t\"\n[tls]\ncert = \"c\"\nkey = \"k\"\ntrust_bundle = \"b\"\n\
         [store]\nbackend = \"etcd\"\nendpoints = [\"http://{dead}\"]\nlease_ttl = \"2s\"\nconnect_timeout = \"300ms\"\n"
    );
    let StoreSection::Etcd(cfg) = Config::parse(&text).unwrap().store else { unreachable!() };
    let s = EtcdStore::connect(&cfg, "fed-a", 100).await.unwrap();
    let e = s.check_schema().await.unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    assert!(e.to_string().contains(&format!("http://{dead}")) && e.to_string().contains("majority"), "{e}");

    // TLS to a member that speaks plain HTTP: a handshake failure, named.
    let dir = tempfile::tempdir().unwrap();
    let ca = skybridge_api::ca::init("t.example", time::OffsetDateTime::now_utc(), 1).unwrap();
    std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
    let tls_endpoint = etcd.endpoints()[0].replace("http://", "https://");
    let text = format!(
        "[federator]\ntrust_domain = \"t\"\n[tls]\ncert = \"c\"\nkey = \"k\"\ntrust_bundle = \"b\"\n\
         [store]\nbackend = \"etcd\"\nendpoints = [\"{tls_endpoint}\"]\nlease_ttl = \"2s\"\nconnect_timeout = \"500ms\"\n\
         tls = {{ ca = \"{}\" }}\n",
        dir.path().join("ca.pem").display()
    );
    let StoreSection::Etcd(cfg) = Config::parse(&text).unwrap().store else { unreachable!() };
    let s = EtcdStore::connect(&cfg, "fed-a", 100).await.unwrap();
    let e = s.check_schema().await.unwrap_err().to_string();
    assert!(e.contains(&tls_endpoint), "{e}");

    // A missing CA file is named at start.
    let missing = text.replace(&dir.path().join("ca.pem").display().to_string(), "/nonexistent/ca.pem");
    let StoreSection::Etcd(cfg) = Config::parse(&missing).unwrap().store else { unreachable!() };
    let e = EtcdStore::connect(&cfg, "fed-a", 100).await.unwrap_err().to_string();
    assert!(e.contains("/nonexistent/ca.pem") && e.contains("store.tls.ca"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused_by_name() {
    let etcd = Etcd::start(1);
    etcd.ctl(&["user", "add", "root:rootpw"]);
    etcd.ctl(&["auth", "enable"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "wrong\n").unwrap();
    let extra = format!("username = \"root\"\npassword_file = \"{}\"\n", dir.path().join("pw").display());
    let cfg = etcd_config(&etcd, "/auth", &extra);
    let e = match EtcdStore::connect(&cfg, "fed-a", 100).await {
        Err(e) => e,
        Ok(s) => s.check_schema().await.unwrap_err(),
    };
    assert!(matches!(e, StoreError::Denied { .. }), "{e}");
    assert!(e.to_string().contains(&etcd.endpoints()[0]) && e.to_string().contains("password_file"), "{e}");
    std::fs::write(dir.path().join("pw"), "rootpw\n").unwrap();
    let s = EtcdStore::connect(&cfg, "fed-a", 100).await.unwrap();
    s.check_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_serves_what_verifies_and_names_what_does_not() {
    use skybridge_federator::app;
    let etcd = Etcd::start(1);
    let dir = tempfile::tempdir().unwrap();
    skybridge_tests::write_identities(dir.path(), "t.example", &[]);
    // A catalog written by a leader, then damage: a foreign key and a garbled gateway record.
    let writer = store(&etcd, "/srv", "fed-w", "").await;
    lead(&writer).await;
    let (c, src) = catalog(4, 3, 80);
    writer.save_catalog(&c, &src).await.unwrap();
    etcd.ctl(&["put", "/srv/unexpected", "x"]);
    etcd.ctl(&["put", "/srv/gateways/aws-1/gw-9", "{garbage"]);
    let d = dir.path().display();
    let text = format!(
        "[federator]\ntrust_domain = \"t.example\"\nname = \"fed-r\"\n[tls]\ncert = \"{d}/fed/cert.pem\"\nkey = \"{d}/fed/key.pem\"\n\
         trust_bundle = \"{d}/fed/ca.pem\"\n[listen]\ncontrol = \"127.0.0.1:0\"\napi = \"127.0.0.1:0\"\n\
         [store]\nbackend = \"etcd\"\nendpoints = {}\nprefix = \"/srv\"\nlease_ttl = \"2s\"\n",
        etcd.endpoints_toml()
    );
    let running = app::start(Config::parse(&text).unwrap()).await.unwrap();
    let api = running.addrs.api;
    let status = tokio::task::spawn_blocking(move || {
        eventually("the replica to serve version 4", Duration::from_secs(20), || {
            let s = get_json(api, "/api/v1/status")?;
            (s["catalog_version"] == 4 && s["store"]["problems"].as_object()?.len() == 2).then_some(s)
        })
    })
    .await
    .unwrap();
    assert_eq!(status["state"], "degraded", "{status}");
    let problems = status["store"]["problems"].to_string();
    assert!(problems.contains("/srv/unexpected") && problems.contains("/srv/gateways/aws-1/gw-9"), "{problems}");
    assert_eq!(running.state().catalog().digest, c.digest);
    running.shutdown().await;
}
