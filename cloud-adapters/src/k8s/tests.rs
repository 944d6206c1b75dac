//! The production client and watch code against the fake API server, on loopback.

use std::time::Duration;

use serde_json::Value;
use skybridge_api::catalog::{ClusterInfo, SourceSnapshot};
use skybridge_api::model::{Cloud, ClusterId, Protocol, ServiceKey};
use skybridge_api::source::{CatalogSource, ErrorKind, SourceError};

use super::fake::objects::{endpoint_slice, service, service_export};
use super::fake::{FakeApiServer, FakeOptions, Fault, Injection};
use super::{ApiServer, ClusterConfig, ClusterWatch, ExportApi, SharedToken, Tuning};
use skybridge_api::backoff::Backoff;

/// Generous: only a broken implementation gets near it.
const PATIENCE: Duration = Duration::from_secs(30);

fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn cluster() -> ClusterInfo {
    ClusterInfo {
        id: ClusterId::new("gke-eu1").expect("valid id"),
        cloud: Cloud::Gcp,
        region: "europe-west1".into(),
        network: None,
    }
}

fn tuning() -> Tuning {
    Tuning {
        page_size: 50,
        backoff: Backoff { min: Duration::from_millis(50), max: Duration::from_millis(500) },
        absent_recheck: Duration::from_millis(200),
        request_timeout: Duration::from_secs(10),
        watch_timeout: Duration::from_secs(60),
        ..Tuning::default()
    }
}

fn source(fake: &FakeApiServer, token: &SharedToken) -> ClusterWatch {
    let api = ApiServer::new(fake.url(), token.clone());
    let cfg = ClusterConfig { cluster: cluster(), api, export_apis: ExportApi::ALL.to_vec(), tuning: tuning() };
    ClusterWatch::new(cfg).expect("client builds")
}

async fn start() -> (FakeApiServer, SharedToken, ClusterWatch) {
    init();
    let fake = FakeApiServer::start().await.expect("fake starts");
    let token = SharedToken::new(FakeApiServer::DEFAULT_TOKEN);
    let src = source(&fake, &token);
    (fake, token, src)
}

pub(crate) type Outcome = Result<SourceSnapshot, SourceError>;

/// Waits for the next outcome of `src` that satisfies `want`, skipping others (shared with the
/// fleet's tests).
pub(crate) async fn wait_for(src: &mut impl CatalogSource, what: &str, want: impl Fn(&Outcome) -> bool) -> Outcome {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, src.next()).await {
            Ok(o) if want(&o) => return o,
            Ok(o) => seen.push(o),
            Err(_) => panic!("timed out waiting for {what}; saw {seen:#?}"),
        }
    }
}

async fn snapshot_where(src: &mut ClusterWatch, what: &str, want: impl Fn(&SourceSnapshot) -> bool) -> SourceSnapshot {
    match wait_for(src, what, |o| o.as_ref().is_ok_and(&want)).await {
        Ok(s) => s,
        Err(e) => unreachable!("{e}"),
    }
}

async fn error_of(src: &mut ClusterWatch, kind: ErrorKind) -> SourceError {
    match wait_for(src, kind.as_str(), |o| o.as_ref().is_err_and(|e| e.kind == kind)).await {
        Err(e) => e,
        Ok(_) => unreachable!(),
    }
}

fn key(ns: &str, name: &str) -> ServiceKey {
    ServiceKey::new(ns, name).expect("valid key")
}

/// `(port, protocol, [(address, ready, zone)])` of a service's export.
type PortView = (u16, Protocol, Vec<(String, bool, Option<String>)>);

fn view(s: &SourceSnapshot, ns: &str, name: &str) -> Option<Vec<PortView>> {
    let exports = s.services.get(&key(ns, name))?;
    assert_eq!(exports.len(), 1);
    Some(
        exports[0]
            .ports
            .iter()
            .map(|p| {
                let eps = p.endpoints.iter().map(|e| (e.address.to_string(), e.ready, e.zone.clone())).collect();
                (p.port, p.protocol, eps)
            })
            .collect(),
    )
}

fn ep(addr: &str, ready: bool, zone: Option<&str>) -> (String, bool, Option<String>) {
    (addr.into(), ready, zone.map(Into::into))
}

/// A service `web` in `prod` with an http and an https port and a UDP port, exported.
fn web(fake: &FakeApiServer) {
    fake.apply(service_export(ExportApi::Gke, "prod", "web")).expect("apply");
    fake.apply(service(
        "prod",
        "web",
        &[("http", 80, None, "TCP"), ("metrics", 9090, Some("https"), "TCP"), ("dns", 53, None, "UDP")],
    ))
    .expect("apply");
    fake.apply(endpoint_slice(
        "prod",
        "web-abc12",
        "web",
        &[("http", 8080), ("metrics", 9443)],
        &[("10.0.0.1", Some(true), Some("europe-west1-b")), ("10.0.0.2", Some(false), None), ("10.0.0.3", None, None)],
    ))
    .expect("apply");
}

#[tokio::test]
async fn export_appears_changes_and_goes() {
    let (fake, _token, mut src) = start().await;
    // Not exported: never in the snapshot.
    fake.apply(service("prod", "db", &[("tcp", 5432, None, "TCP")])).expect("apply");
    let first = snapshot_where(&mut src, "empty initial snapshot", |_| true).await;
    assert!(first.services.is_empty());
    assert_eq!(first.clusters, vec![cluster()]);

    web(&fake);
    let s = snapshot_where(&mut src, "web exported", |s| s.services.contains_key(&key("prod", "web"))).await;
    let want = vec![
        (
            80,
            Protocol::Http,
            vec![
                ep("10.0.0.1:8080", true, Some("europe-west1-b")),
                ep("10.0.0.2:8080", false, None),
                ep("10.0.0.3:8080", true, None),
            ],
        ),
        (
            9090,
            Protocol::Tls,
            vec![
                ep("10.0.0.1:9443", true, Some("europe-west1-b")),
                ep("10.0.0.2:9443", false, None),
                ep("10.0.0.3:9443", true, None),
            ],
        ),
    ];
    assert_eq!(view(&s, "prod", "web"), Some(want));
    assert_eq!(s.services.len(), 1, "db is not exported");
    let export = &s.services[&key("prod", "web")][0];
    assert_eq!(export.cluster.as_str(), "gke-eu1");
    assert!(export.exported_at > 1_600_000_000_000, "creation time in ms: {}", export.exported_at);

    // Readiness and an address change.
    fake.apply(endpoint_slice(
        "prod",
        "web-abc12",
        "web",
        &[("http", 8080), ("metrics", 9443)],
        &[("10.0.0.1", Some(false), Some("europe-west1-b")), ("10.0.0.4", Some(true), None), ("10.0.0.3", None, None)],
    ))
    .expect("apply");
    let s = snapshot_where(&mut src, "readiness change", |s| {
        view(s, "prod", "web").is_some_and(|v| v[0].2.iter().any(|e| e.0 == "10.0.0.4:8080"))
    })
    .await;
    let http = &view(&s, "prod", "web").expect("exported")[0];
    assert_eq!(
        http.2,
        vec![
            ep("10.0.0.1:8080", false, Some("europe-west1-b")),
            ep("10.0.0.3:8080", true, None),
            ep("10.0.0.4:8080", true, None)
        ]
    );

    // A second export of the same service in another group changes nothing visible, so each
    // step is followed, on the same watch (one group's exports arrive in order), by exporting a
    // marker service: once the marker shows, the step before it has been applied.
    for m in ["m1", "m2"] {
        fake.apply(service("prod", m, &[("http", 80, None, "TCP")])).expect("apply");
        fake.apply(endpoint_slice("prod", &format!("{m}-1"), m, &[("http", 8080)], &[("10.5.0.1", Some(true), None)]))
            .expect("apply");
    }
    fake.apply(service_export(ExportApi::Upstream, "prod", "web")).expect("apply");
    fake.apply(service_export(ExportApi::Upstream, "prod", "m1")).expect("apply");
    snapshot_where(&mut src, "marker m1", |s| s.services.contains_key(&key("prod", "m1"))).await;
    // Deleting the first export keeps the service exported through the second.
    fake.delete(&service_export(ExportApi::Gke, "prod", "web")).expect("delete");
    fake.apply(service_export(ExportApi::Gke, "prod", "m2")).expect("apply");
    let s = snapshot_where(&mut src, "marker m2", |s| s.services.contains_key(&key("prod", "m2"))).await;
    assert!(
        s.services.contains_key(&key("prod", "web")),
        "web lost with one of its two exports: {:?}",
        s.services.keys()
    );
    // Deleting the second one too unexports it.
    fake.delete(&service_export(ExportApi::Upstream, "prod", "web")).expect("delete");
    let s = snapshot_where(&mut src, "web unexported", |s| !s.services.contains_key(&key("prod", "web"))).await;
    assert_eq!(s.services.len(), 2, "only the markers are left: {:?}", s.services.keys());
}

#[tokio::test]
async fn nothing_changed_means_no_snapshot() {
    let (fake, _token, mut src) = start().await;
    web(&fake);
    let s = snapshot_where(&mut src, "web", |s| !s.services.is_empty()).await;
    // Changes that do not touch exported services produce nothing.
    fake.apply(service("prod", "db", &[("tcp", 5432, None, "TCP")])).expect("apply");
    fake.apply(endpoint_slice("prod", "db-1", "db", &[("tcp", 5432)], &[("10.1.0.1", None, None)])).expect("apply");
    // Re-applying the same content is a new resourceVersion but the same state.
    web(&fake);
    let quiet = tokio::time::timeout(Duration::from_millis(600), src.next()).await;
    assert!(quiet.is_err(), "unexpected outcome: {quiet:?}");
    // The dropped `next` lost nothing: a real change still arrives.
    fake.apply(service_export(ExportApi::AksFleet, "prod", "db")).expect("apply");
    let s2 = snapshot_where(&mut src, "db exported", |s| s.services.len() == 2).await;
    assert_eq!(s2.services[&key("prod", "web")], s.services[&key("prod", "web")]);
    assert_eq!(view(&s2, "prod", "db"), Some(vec![(5432, Protocol::Tcp, vec![ep("10.1.0.1:5432", true, None)])]));
}

#[tokio::test]
async fn lists_are_paged() {
    init();
    let fake = FakeApiServer::start().await.expect("fake starts");
    fake.apply(service_export(ExportApi::Gke, "prod", "big")).expect("apply");
    fake.apply(service("prod", "big", &[("http", 80, None, "TCP")])).expect("apply");
    for i in 0..120u32 {
        let addr = format!("10.2.{}.{}", i / 200, i % 200 + 1);
        let slice = endpoint_slice("prod", &format!("big-{i:03}"), "big", &[("http", 8080)], &[(&addr, None, None)]);
        fake.apply(slice).expect("apply");
    }
    let token = SharedToken::new(FakeApiServer::DEFAULT_TOKEN);
    let mut src = source(&fake, &token);
    let s = snapshot_where(&mut src, "120 endpoints", |s| view(s, "prod", "big").is_some_and(|v| v[0].2.len() == 120))
        .await;
    assert_eq!(s.services.len(), 1);
    let lists: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| !r.watch && r.path.ends_with("/endpointslices"))
        .map(|r| r.query)
        .collect();
    assert_eq!(lists.len(), 3, "50 + 50 + 20: {lists:?}");
    assert!(lists[0].contains("limit=50") && !lists[0].contains("continue"));
    assert!(lists[1].contains("continue=") && lists[2].contains("continue="));
}

/// The client misses changes while disconnected, the history is compacted, the watch gets
/// 410 Gone, and a re-list brings the state up to date.
async fn relist_after_gone(gone_as_http: bool) {
    let (fake, _token, mut src) = start().await;
    fake.update(|c| c.set_watch_gone_as_http(gone_as_http));
    web(&fake);
    snapshot_where(&mut src, "web", |s| !s.services.is_empty()).await;
    let seen_before = fake.requests().len();
    fake.update(|c| {
        c.close_watches();
        c.delete_obj(&service_export(ExportApi::Gke, "prod", "web")).expect("delete");
        c.apply(service_export(ExportApi::Gke, "prod", "api")).expect("apply");
        c.apply(service("prod", "api", &[("grpc", 9000, None, "TCP")])).expect("apply");
        c.apply(endpoint_slice("prod", "api-1", "api", &[("grpc", 9000)], &[("10.3.0.1", Some(true), None)]))
            .expect("apply");
        c.compact();
    });
    let s =
        snapshot_where(&mut src, "api only", |s| s.services.len() == 1 && s.services.contains_key(&key("prod", "api")))
            .await;
    assert_eq!(view(&s, "prod", "api"), Some(vec![(9000, Protocol::Http, vec![ep("10.3.0.1:9000", true, None)])]));
    // Only what happened after the compaction: a watch refused as expired, in the form asked
    // for, and then a fresh list of that type (a resumed watch could not have seen the change).
    let after = &fake.requests()[seen_before..];
    let gone =
        after.iter().position(|r| r.watch && r.expired).expect("a watch refused as expired after the compaction");
    assert_eq!(after[gone].status, if gone_as_http { 410 } else { 200 }, "{:?}", after[gone]);
    let path = &after[gone].path;
    assert!(
        after[gone + 1..].iter().any(|r| !r.watch && &r.path == path && r.status == 200),
        "no re-list of {path} after its watch expired: {after:#?}"
    );
}

#[tokio::test]
async fn gone_watch_event_relists() {
    relist_after_gone(false).await;
}

#[tokio::test]
async fn gone_http_status_relists() {
    relist_after_gone(true).await;
}

#[tokio::test]
async fn bookmarks_move_the_resume_point() {
    let (fake, _token, mut src) = start().await;
    web(&fake);
    snapshot_where(&mut src, "web", |s| !s.services.is_empty()).await;
    // Changes elsewhere move the server's version past what the slice watch has seen.
    fake.apply(service("prod", "db", &[("tcp", 5432, None, "TCP")])).expect("apply");
    let rv = fake.update(|c| {
        c.bookmark();
        c.compact();
        c.close_watches();
        c.resource_version()
    });
    let lists_before = fake.requests().iter().filter(|r| !r.watch).count();
    // The slice watch resumes from the bookmark's version, which survived the compaction.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let want = format!("resourceVersion={rv}");
    loop {
        let reqs = fake.requests();
        if reqs
            .iter()
            .any(|r| r.watch && r.path.ends_with("/endpointslices") && r.query.contains(&want) && r.status == 200)
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no resumed watch at {rv}: {reqs:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the others reconnect too, then check nobody had to list again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lists_after = fake.requests().iter().filter(|r| !r.watch).count();
    assert_eq!(lists_before, lists_after, "bookmarks should have avoided re-lists");
}

#[tokio::test]
async fn bad_token_is_auth_and_a_new_token_recovers() {
    init();
    let fake = FakeApiServer::start().await.expect("fake starts");
    web(&fake);
    let token = SharedToken::new("wrong");
    let mut src = source(&fake, &token);
    let e = error_of(&mut src, ErrorKind::Auth).await;
    assert!(e.message.contains("401") && e.message.contains("token"), "{}", e.message);
    token.set(FakeApiServer::DEFAULT_TOKEN);
    let s = snapshot_where(&mut src, "recovered", |s| !s.services.is_empty()).await;

    // The server rotates its token: watches re-authenticate and fail...
    fake.update(|c| {
        c.set_token(Some("rotated"));
        c.close_watches();
    });
    let e = error_of(&mut src, ErrorKind::Auth).await;
    assert!(e.message.contains("gke-eu1"), "names the cluster: {}", e.message);
    // ...until the client's token source has the new one; the state is the same.
    token.set("rotated");
    let s2 = snapshot_where(&mut src, "recovered", |_| true).await;
    assert_eq!(s2, s);
}

#[tokio::test]
async fn forbidden_is_auth_with_rbac_hint() {
    let (fake, _token, mut src) = start().await;
    fake.update(|c| c.forbid("endpointslices", true));
    let e = error_of(&mut src, ErrorKind::Auth).await;
    assert!(e.message.contains("403") && e.message.contains("ClusterRole"), "{}", e.message);
}

#[tokio::test]
async fn throttling_and_server_errors_are_classified() {
    let (fake, _token, mut src) = start().await;
    web(&fake);
    let s = snapshot_where(&mut src, "web", |s| !s.services.is_empty()).await;
    for (code, kind) in [(429, ErrorKind::Throttled), (500, ErrorKind::Unavailable), (503, ErrorKind::Unavailable)] {
        fake.update(|c| {
            c.inject(Injection::new(Fault::Status(code), u32::MAX).path("services"));
            c.close_watches();
        });
        let e = error_of(&mut src, kind).await;
        assert!(e.message.contains(&code.to_string()), "{}", e.message);
        fake.clear_injections();
        let again = snapshot_where(&mut src, "recovered", |_| true).await;
        assert_eq!(again, s, "state kept through {code}");
    }
}

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    init();
    let fake = FakeApiServer::start().await.expect("fake starts");
    let url = fake.url();
    drop(fake);
    let token = SharedToken::new("t");
    let api = ApiServer::new(url, token);
    let cfg = ClusterConfig { cluster: cluster(), api, export_apis: ExportApi::ALL.to_vec(), tuning: tuning() };
    let mut src = ClusterWatch::new(cfg).expect("client builds");
    let e = error_of(&mut src, ErrorKind::Unavailable).await;
    assert!(e.message.contains("127.0.0.1"), "{}", e.message);
}

#[tokio::test]
async fn malformed_responses_keep_the_last_good_state() {
    let (fake, _token, mut src) = start().await;
    web(&fake);
    let good = snapshot_where(&mut src, "web", |s| !s.services.is_empty()).await;

    // A garbage watch stream.
    let slice_lists = |fake: &FakeApiServer| {
        fake.requests().iter().filter(|r| !r.watch && r.path.ends_with("/endpointslices")).count()
    };
    let lists_before = slice_lists(&fake);
    fake.update(|c| {
        c.inject(Injection::new(Fault::MalformedBody, u32::MAX).watches().path("endpointslices"));
        c.close_watches();
    });
    let e = error_of(&mut src, ErrorKind::Malformed).await;
    assert!(e.message.contains("endpointslices"), "{}", e.message);
    fake.clear_injections();
    assert_eq!(snapshot_where(&mut src, "recovered", |_| true).await, good);
    // Recovered by resuming the watch, without listing again: the state was never dropped.
    assert_eq!(slice_lists(&fake), lists_before);

    // A garbage list body during a forced re-list.
    fake.update(|c| {
        c.inject(Injection::new(Fault::MalformedBody, u32::MAX).lists().path("services"));
        c.compact();
        c.close_watches();
        // Something to re-list for.
        c.apply(service("prod", "db", &[("tcp", 5432, None, "TCP")])).expect("apply");
        c.compact();
    });
    error_of(&mut src, ErrorKind::Malformed).await;
    fake.clear_injections();
    assert_eq!(snapshot_where(&mut src, "recovered", |_| true).await, good);
}

#[tokio::test]
async fn missing_crds_mean_no_exports_until_installed() {
    init();
    let opts = FakeOptions { export_apis: vec![ExportApi::Upstream], ..FakeOptions::default() };
    let fake = FakeApiServer::start_with(opts).await.expect("fake starts");
    fake.apply(service_export(ExportApi::Upstream, "prod", "web")).expect("apply");
    fake.apply(service("prod", "web", &[("http", 80, None, "TCP")])).expect("apply");
    fake.apply(service("prod", "api", &[("http", 80, None, "TCP")])).expect("apply");
    let token = SharedToken::new(FakeApiServer::DEFAULT_TOKEN);
    let mut src = source(&fake, &token);
    let s = snapshot_where(&mut src, "web", |_| true).await;
    assert_eq!(s.services.keys().cloned().collect::<Vec<_>>(), vec![key("prod", "web")]);
    // The GKE CRD gets installed later: its exports show up.
    fake.update(|c| c.install(super::fake::ResourceDef::service_export("net.gke.io", "v1")));
    fake.apply(service_export(ExportApi::Gke, "prod", "api")).expect("apply");
    snapshot_where(&mut src, "api", |s| s.services.len() == 2).await;
}

#[tokio::test]
async fn invalid_names_are_skipped_not_fatal() {
    let (fake, _token, mut src) = start().await;
    // An export whose name is a valid object name but not a DNS label (no clusterset name can
    // carry it), with everything else it would need to be routable: a Service and endpoints
    // (the fake, unlike a real API server, takes such a Service). It comes first, so a sync
    // that stopped at it would never reach web.
    let mut bad = service_export(ExportApi::Gke, "prod", "web.v2");
    bad["metadata"]["labels"] = Value::Null;
    fake.apply(bad).expect("apply");
    fake.apply(service("prod", "web.v2", &[("http", 80, None, "TCP")])).expect("apply");
    fake.apply(endpoint_slice("prod", "web.v2-1", "web.v2", &[("http", 8080)], &[("10.9.0.1", Some(true), None)]))
        .expect("apply");
    web(&fake);
    let s = snapshot_where(&mut src, "web", |s| !s.services.is_empty()).await;
    let names: Vec<String> = s.services.keys().map(|k| format!("{}/{}", k.namespace, k.name)).collect();
    assert_eq!(names, vec!["prod/web".to_owned()], "the bad name is skipped, the rest still synced");
}

#[tokio::test]
async fn bad_ca_pem_is_a_config_error() {
    init();
    let api = ApiServer::new("https://127.0.0.1:6443", SharedToken::new("t")).with_ca_pem("not a pem");
    let err = ClusterWatch::new(ClusterConfig::new(cluster(), api)).expect_err("rejected");
    assert!(err.to_string().contains("CA"), "{err}");
    let api = ApiServer::new("not a url", SharedToken::new("t"));
    assert!(ClusterWatch::new(ClusterConfig::new(cluster(), api)).is_err());
}

#[tokio::test]
async fn https_with_the_cluster_ca() {
    init();
    let opts = FakeOptions { tls: true, ..FakeOptions::default() };
    let fake = FakeApiServer::start_with(opts).await.expect("fake starts");
    web(&fake);
    let token = SharedToken::new(FakeApiServer::DEFAULT_TOKEN);
    let ca = fake.ca_pem().expect("tls").to_owned();
    let api = ApiServer::new(fake.url(), token.clone()).with_ca_pem(ca);
    let cfg = ClusterConfig { cluster: cluster(), api, export_apis: ExportApi::ALL.to_vec(), tuning: tuning() };
    let mut src = ClusterWatch::new(cfg).expect("client builds");
    let s = snapshot_where(&mut src, "web over https", |s| !s.services.is_empty()).await;
    assert!(view(&s, "prod", "web").is_some());

    // Without the cluster's CA the server is not trusted, and the message says where to look.
    let mut untrusting = source(&fake, &token);
    let e = error_of(&mut untrusting, ErrorKind::Unavailable).await;
    assert!(e.message.contains("CA bundle"), "{}", e.message);
}

#[tokio::test]
async fn a_quiet_watch_heartbeats_with_its_unchanged_snapshot() {
    init();
    let fake = FakeApiServer::start().await.expect("fake starts");
    web(&fake);
    let api = ApiServer::new(fake.url(), SharedToken::new(FakeApiServer::DEFAULT_TOKEN));
    let t = Tuning { heartbeat: Duration::from_millis(200), ..tuning() };
    let cfg = ClusterConfig { cluster: cluster(), api, export_apis: ExportApi::ALL.to_vec(), tuning: t };
    let mut src = ClusterWatch::new(cfg).expect("client builds");
    let s = snapshot_where(&mut src, "web", |s| !s.services.is_empty()).await;
    let started = tokio::time::Instant::now();
    let again = tokio::time::timeout(Duration::from_secs(3), src.next()).await.expect("a heartbeat").expect("ok");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(150), "heartbeat after {took:?}");
    assert_eq!(again, s);
    // No heartbeat while failing: an error is reported once, not repeated.
    fake.update(|c| {
        c.inject(Injection::new(Fault::Status(503), u32::MAX));
        c.close_watches();
    });
    error_of(&mut src, ErrorKind::Unavailable).await;
    let quiet = tokio::time::timeout(Duration::from_millis(600), src.next()).await;
    assert!(quiet.is_err(), "unexpected outcome while failing: {quiet:?}");
}

#[tokio::test]
async fn azure_fleet_v1alpha1_only_install_is_read() {
    init();
    let opts = FakeOptions { export_apis: vec![ExportApi::AksFleetV1alpha1], ..FakeOptions::default() };
    let fake = FakeApiServer::start_with(opts).await.expect("fake starts");
    let token = SharedToken::new(FakeApiServer::DEFAULT_TOKEN);
    let mut src = source(&fake, &token);
    fake.apply(service_export(ExportApi::AksFleetV1alpha1, "prod", "db")).expect("apply");
    fake.apply(service("prod", "db", &[("tcp", 5432, None, "TCP")])).expect("apply");
    fake.apply(endpoint_slice("prod", "db-1", "db", &[("tcp", 5432)], &[("10.1.0.1", None, None)])).expect("apply");
    let s = snapshot_where(&mut src, "db exported", |s| !s.services.is_empty()).await;
    assert_eq!(view(&s, "prod", "db"), Some(vec![(5432, Protocol::Tcp, vec![ep("10.1.0.1:5432", true, None)])]));
}

#[tokio::test]
async fn azure_fleet_both_versions_count_once() {
    init();
    let opts =
        FakeOptions { export_apis: vec![ExportApi::AksFleet, ExportApi::AksFleetV1alpha1], ..FakeOptions::default() };
    let fake = FakeApiServer::start_with(opts).await.expect("fake starts");
    let token = SharedToken::new(FakeApiServer::DEFAULT_TOKEN);
    let mut src = source(&fake, &token);
    // A real server shows the one object under both versions.
    fake.apply(service_export(ExportApi::AksFleet, "prod", "db")).expect("apply");
    fake.apply(service_export(ExportApi::AksFleetV1alpha1, "prod", "db")).expect("apply");
    fake.apply(service("prod", "db", &[("tcp", 5432, None, "TCP")])).expect("apply");
    fake.apply(endpoint_slice("prod", "db-1", "db", &[("tcp", 5432)], &[("10.1.0.1", None, None)])).expect("apply");
    let s = snapshot_where(&mut src, "db exported", |s| !s.services.is_empty()).await;
    // `view` asserts a single export of the service.
    assert_eq!(view(&s, "prod", "db"), Some(vec![(5432, Protocol::Tcp, vec![ep("10.1.0.1:5432", true, None)])]));
}
