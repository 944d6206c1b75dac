//! The fleet combiner against fake member API servers, with a discovery the test controls.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use skybridge_api::backoff::Backoff;
use skybridge_api::catalog::{ClusterInfo, SourceSnapshot};
use skybridge_api::model::{Cloud, ClusterId};
use skybridge_api::source::{CatalogSource, ErrorKind, SourceError};
use tokio::time::Instant;

use super::{Discovery, Fleet, Member};
use crate::k8s::fake::objects::{endpoint_slice, service, service_export};
use crate::k8s::fake::{FakeApiServer, Fault, Injection};
use crate::k8s::tests::wait_for;
use crate::k8s::{ApiServer, ExportApi, SharedToken, Tuning};

/// Generous: only a broken implementation gets near it.
const PATIENCE: Duration = Duration::from_secs(30);

/// Discovery answering whatever the test last set.
#[derive(Clone)]
struct Static(Arc<Mutex<Result<Vec<Member>, SourceError>>>);

impl Static {
    fn set(&self, found: Result<Vec<Member>, SourceError>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = found;
    }
}

impl Discovery for Static {
    fn kind(&self) -> &'static str {
        "test-fleet"
    }

    async fn discover(&mut self) -> Result<Vec<Member>, SourceError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn member(id: &str, url: String) -> Member {
    let cluster = ClusterInfo {
        id: ClusterId::new(id).expect("valid id"),
        cloud: Cloud::Other,
        region: "r1".into(),
        network: None,
    };
    Member { cluster, api: ApiServer::new(url, SharedToken::new(FakeApiServer::DEFAULT_TOKEN)) }
}

fn tuning() -> Tuning {
    Tuning {
        backoff: Backoff { min: Duration::from_millis(50), max: Duration::from_millis(300) },
        absent_recheck: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        ..Tuning::default()
    }
}

fn fleet(members: Vec<Member>, rediscover: Duration, tuning: Tuning) -> (Fleet<Static>, Static) {
    let discovery = Static(Arc::new(Mutex::new(Ok(members))));
    (Fleet::new(discovery.clone(), rediscover, ExportApi::ALL.to_vec(), tuning), discovery)
}

async fn fake() -> FakeApiServer {
    init();
    FakeApiServer::start().await.expect("fake starts")
}

fn export(fake: &FakeApiServer, name: &str, ip: &str) {
    fake.apply(service_export(ExportApi::Gke, "prod", name)).expect("apply");
    fake.apply(service("prod", name, &[("http", 80, None, "TCP")])).expect("apply");
    fake.apply(endpoint_slice("prod", &format!("{name}-1"), name, &[("http", 8080)], &[(ip, Some(true), None)]))
        .expect("apply");
}

/// Makes every request to `fake` fail with `fault` from now on, open watches included.
fn break_server(fake: &FakeApiServer, fault: Fault) {
    fake.update(|c| {
        c.inject(Injection::new(fault, u32::MAX));
        c.close_watches();
    });
}

async fn snapshot_where(src: &mut Fleet<Static>, what: &str, want: impl Fn(&SourceSnapshot) -> bool) -> SourceSnapshot {
    match wait_for(src, what, |o| o.as_ref().is_ok_and(&want)).await {
        Ok(s) => s,
        Err(e) => unreachable!("{e}"),
    }
}

/// The clusters exporting `prod/{name}` and the endpoint addresses of each, sorted.
fn exporters(s: &SourceSnapshot, name: &str) -> Vec<(String, Vec<String>)> {
    let key = format!("prod/{name}").parse().expect("key");
    let mut v: Vec<(String, Vec<String>)> = s
        .services
        .get(&key)
        .into_iter()
        .flatten()
        .map(|e| {
            let eps = e.ports.iter().flat_map(|p| p.endpoints.iter()).map(|ep| ep.address.ip().to_string());
            (e.cluster.to_string(), eps.collect())
        })
        .collect();
    v.sort();
    v
}

fn failing(s: &SourceSnapshot) -> Vec<String> {
    s.failing.keys().map(ToString::to_string).collect()
}

fn both_web() -> Vec<(String, Vec<String>)> {
    vec![("a".into(), vec!["10.0.0.1".into()]), ("b".into(), vec!["10.1.0.1".into()])]
}

/// Two members synced with `web` in each.
async fn synced_pair(tuning: Tuning) -> (FakeApiServer, FakeApiServer, Fleet<Static>, Static) {
    let (a, b) = (fake().await, fake().await);
    export(&a, "web", "10.0.0.1");
    export(&b, "web", "10.1.0.1");
    let (mut src, discovery) =
        fleet(vec![member("a", a.url()), member("b", b.url())], Duration::from_secs(3600), tuning);
    let s = snapshot_where(&mut src, "web in a and b", |s| exporters(s, "web") == both_web()).await;
    assert!(s.failing.is_empty(), "{:?}", s.failing);
    (a, b, src, discovery)
}

#[tokio::test]
async fn a_failing_member_keeps_its_last_exports_and_others_still_change() {
    let (a, b, mut src, _d) = synced_pair(tuning()).await;

    break_server(&b, Fault::Status(503));
    let s = snapshot_where(&mut src, "b failing", |s| !s.failing.is_empty()).await;
    assert_eq!(failing(&s), ["b"]);
    assert_eq!(s.failing.values().next().map(|e| e.kind), Some(ErrorKind::Unavailable));
    assert_eq!(exporters(&s, "web"), both_web(), "b's last good exports are kept");
    assert_eq!(s.clusters.len(), 2);

    // A change in a still gets through while b fails, and b stays listed as failing.
    export(&a, "api", "10.0.0.2");
    let s = snapshot_where(&mut src, "api in a", |s| !exporters(s, "api").is_empty()).await;
    assert_eq!(failing(&s), ["b"]);
    assert_eq!(exporters(&s, "web"), both_web());

    b.clear_injections();
    let s = snapshot_where(&mut src, "b recovered", |s| s.failing.is_empty()).await;
    assert_eq!(exporters(&s, "web"), both_web());
    assert_eq!(exporters(&s, "api"), [("a".to_owned(), vec!["10.0.0.2".to_owned()])]);
}

#[tokio::test]
async fn every_member_failing_is_an_error() {
    let (a, b, mut src, _d) = synced_pair(tuning()).await;
    break_server(&a, Fault::Status(503));
    break_server(&b, Fault::Status(503));
    let e = match wait_for(&mut src, "an error", |o| o.is_err()).await {
        Err(e) => e,
        Ok(_) => unreachable!(),
    };
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.message.contains("every member") && e.message.contains("cluster a"), "{}", e.message);
    a.clear_injections();
    let s = snapshot_where(&mut src, "a recovered", |s| failing(s) == ["b"]).await;
    assert_eq!(exporters(&s, "web"), both_web());
}

#[tokio::test]
async fn a_restart_publishes_only_after_every_member_reported() {
    let a = fake().await;
    export(&a, "web", "10.0.0.1");
    let gone = fake().await;
    let unreachable = gone.url();
    drop(gone);
    // Long enough that only b's own report (connection refused) can end the wait.
    let t = Tuning { initial_sync: Duration::from_secs(20), ..tuning() };
    let (mut src, _d) = fleet(vec![member("a", a.url()), member("b", unreachable)], Duration::from_secs(3600), t);
    let started = Instant::now();
    let s = tokio::time::timeout(PATIENCE, src.next()).await.expect("a first outcome").expect("a snapshot");
    assert!(started.elapsed() < Duration::from_secs(15), "waited for the initial-sync timeout");
    assert_eq!(exporters(&s, "web"), [("a".to_owned(), vec!["10.0.0.1".to_owned()])], "not an early empty snapshot");
    assert_eq!(failing(&s), ["b"]);
    assert_eq!(s.failing.values().next().map(|e| e.kind), Some(ErrorKind::Unavailable));
}

#[tokio::test]
async fn a_silent_member_holds_back_the_first_snapshot_for_at_most_initial_sync() {
    let a = fake().await;
    export(&a, "web", "10.0.0.1");
    // Accepts connections (the kernel does) and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", silent.local_addr().expect("addr"));
    let t = Tuning { initial_sync: Duration::from_millis(500), ..tuning() };
    let (mut src, _d) = fleet(vec![member("a", a.url()), member("b", url)], Duration::from_secs(3600), t);
    let s = tokio::time::timeout(Duration::from_secs(5), src.next()).await.expect("published").expect("a snapshot");
    assert_eq!(exporters(&s, "web"), [("a".to_owned(), vec!["10.0.0.1".to_owned()])]);
    assert_eq!(failing(&s), ["b"]);
    assert!(s.failing.values().all(|e| e.message.contains("initial_sync")), "{:?}", s.failing);
}

#[tokio::test]
async fn malformed_member_data_keeps_its_last_exports() {
    let (_a, b, mut src, _d) = synced_pair(tuning()).await;
    b.update(|c| {
        c.inject(Injection::new(Fault::MalformedBody, u32::MAX).watches().path("endpointslices"));
        c.close_watches();
    });
    let s = snapshot_where(&mut src, "b failing", |s| !s.failing.is_empty()).await;
    assert_eq!(failing(&s), ["b"]);
    assert_eq!(s.failing.values().next().map(|e| e.kind), Some(ErrorKind::Malformed));
    assert_eq!(exporters(&s, "web"), both_web());
}

#[tokio::test]
async fn a_moved_api_server_keeps_the_last_exports_until_the_new_watch_reports() {
    let (a, b, mut src, discovery) = synced_pair(tuning()).await;
    src.rediscover = Duration::from_millis(100);
    src.next_discovery = None;
    let gone = fake().await;
    let unreachable = gone.url();
    drop(gone);
    drop(b);
    discovery.set(Ok(vec![member("a", a.url()), member("b", unreachable)]));
    let s = snapshot_where(&mut src, "b failing at its new address", |s| !s.failing.is_empty()).await;
    assert_eq!(failing(&s), ["b"]);
    assert_eq!(exporters(&s, "web"), both_web());
}

#[tokio::test]
async fn removed_members_take_their_exports_and_discovery_failure_is_an_error() {
    let (a, _b, mut src, discovery) = synced_pair(tuning()).await;
    src.rediscover = Duration::from_millis(100);
    src.next_discovery = None;
    discovery.set(Err(SourceError::new(ErrorKind::Auth, "denied")));
    let e = wait_for(&mut src, "discovery error", |o| o.is_err()).await;
    assert_eq!(e.err().map(|e| e.kind), Some(ErrorKind::Auth));
    discovery.set(Ok(vec![member("a", a.url())]));
    let s = next_ok(&mut src).await;
    assert_eq!(exporters(&s, "web"), [("a".to_owned(), vec!["10.0.0.1".to_owned()])]);
    assert!(s.failing.is_empty());
}

async fn next_ok(src: &mut Fleet<Static>) -> SourceSnapshot {
    tokio::time::timeout(PATIENCE, src.next()).await.expect("an outcome").expect("a snapshot")
}

#[tokio::test]
async fn a_quiet_fleet_heartbeats_with_its_unchanged_snapshot() {
    let t = Tuning { heartbeat: Duration::from_millis(200), ..tuning() };
    let (_a, _b, mut src, _d) = synced_pair(t).await;
    let first = next_ok(&mut src).await;
    let started = Instant::now();
    let again = next_ok(&mut src).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(150) && took < Duration::from_secs(3), "heartbeat after {took:?}");
    assert_eq!(again, first);
    assert_eq!(exporters(&again, "web"), both_web());
}
