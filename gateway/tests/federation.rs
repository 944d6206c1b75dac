//! The federator client against fake federator replicas (the real generated control server
//! behind the real mTLS): the catalog cache file at start-up and after updates, and moving
//! between replicas.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::federator::FakeFederator;
use common::{GwSpec, Pki, TD, admin_get, backends, free_udp, metric, service, wait_metric};
use serde_json::Value;
use skybridge_api::catalog::{
    ClusterExport, ClusterInfo, Endpoint, GlobalCatalog, GlobalService, PortSpec, Provenance, digest,
};
use skybridge_api::model::{Cloud, ClusterId, Protocol, ServiceKey};
use skybridge_api::proto::{snapshot_to_wire, wire};
use skybridge_gateway::app::Running;
use skybridge_gateway::federation::cache::{self, Owner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WEB: &str = "web.prod.svc.clusterset.local";

fn id(s: &str) -> ClusterId {
    ClusterId::new(s).unwrap()
}

/// A catalog at `version`: clusters aws-1 and gcp-1, `prod/web` hosted in gcp-1 at `web`.
fn catalog(version: u64, web: SocketAddr) -> GlobalCatalog {
    let info = |c: &str, cloud| (id(c), ClusterInfo { id: id(c), cloud, region: "test".into(), network: None });
    let svc = GlobalService {
        ports: vec![PortSpec { port: 80, protocol: Protocol::Http }],
        clusters: BTreeMap::from([(
            id("gcp-1"),
            ClusterExport {
                exported_at: 1,
                endpoints: BTreeMap::from([(80, [Endpoint { address: web, zone: None, ready: true }].into())]),
                provenance: Provenance { source: "test".into(), observed_at: 1, stale_since: None },
            },
        )]),
        conflicts: vec![],
    };
    let mut c = GlobalCatalog {
        version,
        digest: 0,
        clusters: BTreeMap::from([info("aws-1", Cloud::Other), info("gcp-1", Cloud::Other)]),
        services: BTreeMap::from([(ServiceKey::new("prod", "web").unwrap(), svc)]),
    };
    c.digest = digest(&c);
    c
}

/// The gateway list: gcp-1 reachable at `tunnel`.
fn gateways(tunnel: SocketAddr) -> Vec<wire::Gateway> {
    vec![wire::Gateway { cluster: "gcp-1".into(), instance: "gw-0".into(), tunnel_addresses: vec![tunnel.to_string()] }]
}

fn owner() -> Owner {
    Owner { cluster: "aws-1".into(), trust_domain: TD.into() }
}

/// An address nothing listens on.
fn dead_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// aws-1's config, taking its catalog from `replicas` with the cache at `cache`.
fn aws_gateway(pki: &Pki, replicas: &[SocketAddr], cache: &str) -> GwSpec {
    let list = replicas.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ");
    GwSpec {
        cluster: "aws-1".into(),
        tunnel: free_udp(),
        certs: pki.issue_files("aws-1", "aws-1", 1),
        peers: vec![],
        extra: format!(
            "\n[federator]\naddresses = [{list}]\ncatalog_cache = \"{cache}\"\ninstance = \"aws-1-gw-0\"\n\
             reconnect_min = \"100ms\"\nreconnect_max = \"400ms\"\nconnect_timeout = \"2s\"\n"
        ),
    }
}

async fn status(admin: SocketAddr) -> Value {
    serde_json::from_str(&admin_get(admin, "/status").await.1).unwrap()
}

/// Polls `/status` until `ok` holds (within 10 s); returns that status.
async fn wait_status(gw: &Running, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..250 {
        last = status(gw.addrs.admin).await;
        if ok(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    panic!("{what}; last /status: {last:#}");
}

/// Polls until the cache file decodes (within 10 s); returns its version.
async fn wait_cache_version(path: &Path, version: u64) {
    for _ in 0..250 {
        if let Ok(Some(c)) = cache::load(path, &owner(), 1 << 30)
            && c.version == version
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    panic!(
        "{} never held version {version}: {:?}",
        path.display(),
        cache::load(path, &owner(), 1 << 30).map(|c| c.map(|c| c.version))
    );
}

async fn http_get(addr: SocketAddr, host: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_catalog_routes_end_to_end_while_no_federator_answers() {
    common::init();
    let pki = Pki::new();
    let web = backends::http("gcp-1").await;
    // gcp-1 hosts the service (static config); aws-1 knows it only from its cache file.
    let b = GwSpec {
        cluster: "gcp-1".into(),
        tunnel: free_udp(),
        certs: pki.issue_files("gcp-1", "gcp-1", 1),
        peers: vec![],
        extra: service("prod", "web", &["gcp-1"], 80, "http", &[web]),
    }
    .start()
    .await;
    let path = pki.dir.path().join("aws-cache.pb");
    let written = cache::unix_ms(SystemTime::now()) - 192_000;
    let snapshot = snapshot_to_wire(&catalog(7, web), gateways(b.addrs.tunnel), vec![]);
    std::fs::write(&path, cache::encode(&owner(), written, snapshot)).unwrap();

    let a = aws_gateway(&pki, &[dead_address()], &path.display().to_string()).start().await;
    let st = status(a.addrs.admin).await;
    let summary = st["catalog"].as_str().unwrap();
    assert!(summary.starts_with("cached (version 7, age 3m1"), "{st:#}");
    assert_eq!(st["federator"]["catalog_source"], "cache", "{st:#}");
    assert_eq!(st["federator"]["catalog_version"], 7);
    assert_eq!(st["federator"]["cache"]["written_at_unix_ms"], written);
    assert!(st["federator"]["cache"]["age_s"].as_u64().is_some_and(|s| (192..200).contains(&s)), "{st:#}");
    assert_eq!(st["services"][0]["name"], WEB);
    assert_eq!(metric(a.addrs.admin, "skybridge_gateway_catalog_from_cache").await, 1.0);
    assert_eq!(metric(a.addrs.admin, r#"skybridge_gateway_catalog_cache_loads_total{result="loaded"}"#).await, 1.0);

    let out = http_get(a.addrs.http.unwrap(), WEB).await;
    assert!(out.starts_with("HTTP/1.1 200 OK") && out.ends_with("hello from gcp-1\n"), "{out}");

    let st = wait_status(&a, "the dead replica is reported", |s| s["federator"]["state"] == "disconnected").await;
    assert!(st["federator"]["last_error"].as_str().unwrap().contains("cannot connect"), "{st:#}");
    assert_eq!(st["federator"]["catalog_source"], "cache", "still routing on the cache: {st:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_cache_is_ignored_until_the_federator_answers_then_rewritten() {
    common::init();
    let pki = Pki::new();
    let path = pki.dir.path().join("cache.pb");
    let mut bytes = cache::encode(&owner(), 1, snapshot_to_wire(&catalog(3, dead_address()), vec![], vec![]));
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let web = "127.0.0.1:9".parse().unwrap();
    let fed = FakeFederator::start(&pki, catalog(5, web), gateways("127.0.0.1:1".parse().unwrap())).await;
    fed.hold(true);

    let a = aws_gateway(&pki, &[fed.addr], &path.display().to_string()).start().await;
    let st = wait_status(&a, "connected to the held replica", |s| s["federator"]["state"] == "connected").await;
    assert_eq!(st["catalog"], "none (waiting for the federator)", "{st:#}");
    assert_eq!(st["federator"]["catalog_source"], "none");
    let ignored = st["federator"]["cache"]["ignored"].as_str().unwrap();
    assert!(ignored.contains("checksum does not match"), "{ignored}");
    assert_eq!(st["services"].as_array().unwrap().len(), 0, "nothing of the corrupt file is used: {st:#}");
    assert_eq!(metric(a.addrs.admin, r#"skybridge_gateway_catalog_cache_loads_total{result="rejected"}"#).await, 1.0);
    assert_eq!(fed.seen(|s| (s.hellos[0].have_version, s.hellos[0].have_digest)), (0, 0), "nothing held");

    fed.hold(false);
    let st = wait_status(&a, "the federator's catalog is routed", |s| s["catalog"] == "federator (version 5)").await;
    assert_eq!(st["services"][0]["name"], WEB);
    wait_cache_version(&path, 5).await;
    // The file is renamed into place just before the counter moves: poll rather than read once.
    assert!(wait_metric(a.addrs.admin, r#"skybridge_gateway_catalog_cache_writes_total{result="ok"}"#, 1.0).await);
    assert_eq!(metric(a.addrs.admin, "skybridge_gateway_catalog_from_cache").await, 0.0);
    wait_acks(&fed, &[5]).await;
    wait_status(&a, "the status names the written cache", |s| s["federator"]["cache"]["version"] == 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_routes_from_the_written_cache_and_resumes_without_a_snapshot() {
    common::init();
    let pki = Pki::new();
    let path = pki.dir.path().join("cache.pb");
    let c = catalog(4, "127.0.0.1:9".parse().unwrap());
    let fed = FakeFederator::start(&pki, c.clone(), gateways("127.0.0.1:1".parse().unwrap())).await;
    let spec = aws_gateway(&pki, &[fed.addr], &path.display().to_string());

    let first = spec.start().await;
    wait_status(&first, "first run routes version 4", |s| s["catalog"] == "federator (version 4)").await;
    wait_cache_version(&path, 4).await;
    first.shutdown().await;

    // The replica is up but does not answer yet: the restarted gateway routes on its cache.
    fed.hold(true);
    let second = GwSpec { tunnel: free_udp(), ..spec }.start().await;
    let st = status(second.addrs.admin).await;
    assert!(st["catalog"].as_str().unwrap().starts_with("cached (version 4, age "), "{st:#}");
    assert_eq!(st["services"][0]["name"], WEB);
    let hello = wait_hellos(&fed, 2).await;
    assert_eq!((hello.have_version, hello.have_digest), (4, c.digest), "the Hello names the cached catalog");

    fed.hold(false);
    wait_status(&second, "the federator confirmed version 4", |s| s["catalog"] == "federator (version 4)").await;
    assert_eq!(fed.seen(|s| s.sent.clone()), vec!["snapshot", "delta"], "confirmed with an empty delta");
    wait_acks(&fed, &[4, 4]).await;
}

/// Waits until `fed` has received exactly the ACKs `want` (the gateway routes a version a moment
/// before its ACK arrives).
async fn wait_acks(fed: &FakeFederator, want: &[u64]) {
    for _ in 0..250 {
        if fed.seen(|s| s.acks.len() >= want.len()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fed.seen(|s| s.acks.clone()), want);
}

/// Waits until `fed` has seen `n` Hellos; returns the last.
async fn wait_hellos(fed: &FakeFederator, n: usize) -> wire::Hello {
    for _ in 0..250 {
        if let Some(h) = fed.seen(|s| (s.hellos.len() >= n).then(|| s.hellos[n - 1].clone())) {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    panic!("fewer than {n} Hellos");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_replica_is_skipped() {
    common::init();
    let pki = Pki::new();
    let fed = FakeFederator::start(&pki, catalog(6, "127.0.0.1:9".parse().unwrap()), vec![]).await;
    let dead = dead_address();
    let a = aws_gateway(&pki, &[dead, fed.addr], "off").start().await;
    let st = wait_status(&a, "routes the live replica's catalog", |s| s["catalog"] == "federator (version 6)").await;
    assert_eq!(st["federator"]["address"], fed.addr.to_string(), "{st:#}");
    assert_eq!(st["federator"]["state"], "connected");
    let mut replicas: Vec<String> =
        st["federator"]["replicas"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    replicas.sort();
    let mut want = vec![dead.to_string(), fed.addr.to_string()];
    want.sort();
    assert_eq!(replicas, want);
    assert!(st["federator"]["cache"].is_null(), "catalog_cache = \"off\": {st:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_stream_moves_to_the_other_replica_which_continues_without_a_snapshot() {
    common::init();
    let pki = Pki::new();
    let c = catalog(9, "127.0.0.1:9".parse().unwrap());
    let gws = gateways("127.0.0.1:1".parse().unwrap());
    let f1 = FakeFederator::start(&pki, c.clone(), gws.clone()).await;
    let f2 = FakeFederator::start(&pki, c.clone(), gws).await;
    let a = aws_gateway(&pki, &[f1.addr, f2.addr], "off").start().await;
    let st = wait_status(&a, "on version 9", |s| s["catalog"] == "federator (version 9)").await;
    let (first, other) = if st["federator"]["address"] == f1.addr.to_string() { (&f1, &f2) } else { (&f2, &f1) };
    assert_eq!(st["federator"]["address"], first.addr.to_string(), "{st:#}");

    first.break_sessions();
    let st = wait_status(&a, "moved to the other replica", |s| {
        s["federator"]["address"] == other.addr.to_string() && s["federator"]["state"] == "connected"
    })
    .await;
    assert_eq!(st["federator"]["connects"], 2, "{st:#}");
    let hello = wait_hellos(other, 1).await;
    assert_eq!((hello.have_version, hello.have_digest), (9, c.digest));
    for _ in 0..250 {
        if other.seen(|s| s.acks.contains(&9)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(other.seen(|s| s.sent.clone()), vec!["delta"], "the same version continues without a snapshot");
    assert_eq!(other.seen(|s| s.acks.clone()), vec![9]);
    assert_eq!(first.seen(|s| s.hellos.len()), 1, "the broken replica was not tried again first");
    let st = status(a.addrs.admin).await;
    assert_eq!(st["catalog"], "federator (version 9)", "routing never stopped: {st:#}");
}
