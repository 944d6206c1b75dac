//! Cloud Map source against a real moto server, through the production SDK client.

mod common;

use std::sync::atomic::Ordering;

use aws_sdk_servicediscovery::Client;
use aws_sdk_servicediscovery::types::{CustomHealthStatus, HealthCheckCustomConfig};
use common::Throttler;
use skybridge_api::catalog::SourceSnapshot;
use skybridge_api::model::ServiceKey;
use skybridge_api::source::{CatalogSource, ErrorKind};
use skybridge_cloud_adapters::aws::moto::Moto;
use skybridge_cloud_adapters::aws::{CloudMap, CloudMapConfig};

fn creds() -> aws_credential_types::Credentials {
    aws_credential_types::Credentials::from_keys("AKIDTESTTESTTEST", "secret", None)
}

fn config(url: &str, extra: &str) -> CloudMapConfig {
    let c: CloudMapConfig = toml::from_str(&format!(
        "id = \"aws\"\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\ntimeout = \"5s\"\n{extra}"
    ))
    .unwrap();
    c.validate("sources[0]").unwrap();
    c
}

/// A client for setting up moto (what an operator's tooling would do).
async fn admin(url: &str) -> Client {
    let cfg = aws_sdk_servicediscovery::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(creds())
        .build();
    Client::from_conf(cfg)
}

async fn namespace(c: &Client, name: &str) -> String {
    c.create_http_namespace().name(name).send().await.unwrap();
    let list = c.list_namespaces().send().await.unwrap();
    list.namespaces().iter().find(|n| n.name() == Some(name)).unwrap().id().unwrap().to_owned()
}

async fn service(c: &Client, ns_id: &str, name: &str, custom_health: bool) -> String {
    let mut req = c.create_service().name(name).namespace_id(ns_id);
    if custom_health {
        req = req.health_check_custom_config(HealthCheckCustomConfig::builder().build());
    }
    req.send().await.unwrap().service().unwrap().id().unwrap().to_owned()
}

async fn register(c: &Client, svc: &str, id: &str, ip: &str, port: u16, cluster: &str) {
    c.register_instance()
        .service_id(svc)
        .instance_id(id)
        .attributes("AWS_INSTANCE_IPV4", ip)
        .attributes("AWS_INSTANCE_PORT", port.to_string())
        .attributes("cluster", cluster)
        .attributes("AVAILABILITY_ZONE", "use1-az1")
        .send()
        .await
        .unwrap();
}

fn endpoints(s: &SourceSnapshot, key: &str) -> Vec<(String, bool)> {
    let key: ServiceKey = key.parse().unwrap();
    let mut out: Vec<(String, bool)> = s
        .services
        .get(&key)
        .into_iter()
        .flatten()
        .flat_map(|e| e.ports.iter().flat_map(|p| p.endpoints.iter()))
        .map(|e| (e.address.to_string(), e.ready))
        .collect();
    out.sort();
    out
}

fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// moto with namespace `ns_name` holding service `name`: the server, an admin client and the
/// service id.
async fn with_service(ns_name: &str, name: &str, custom_health: bool) -> (Moto, Client, String) {
    init();
    let moto = Moto::start(&[]);
    let admin = admin(&moto.url()).await;
    let ns = namespace(&admin, ns_name).await;
    let svc = service(&admin, &ns, name, custom_health).await;
    (moto, admin, svc)
}

#[tokio::test]
async fn register_health_change_and_deregister_show_up() {
    let (moto, admin, svc) = with_service("prod.example.local", "payments", true).await;
    register(&admin, &svc, "i-1", "10.0.0.1", 8080, "eks-east").await;
    register(&admin, &svc, "i-2", "10.0.0.2", 8080, "eks-east").await;

    let source = CloudMap::with_credentials(config(&moto.url(), "default_protocol = \"http\""), creds()).await;
    let s = source.sync().await.unwrap().snapshot;
    assert_eq!(endpoints(&s, "prod/payments"), [("10.0.0.1:8080".into(), true), ("10.0.0.2:8080".into(), true)]);
    let export = &s.services[&"prod/payments".parse::<ServiceKey>().unwrap()][0];
    assert_eq!(export.cluster.as_str(), "eks-east");
    assert!(export.exported_at > 1_600_000_000_000, "CreateDate becomes exported_at: {}", export.exported_at);
    assert_eq!(export.ports[0].endpoints[0].zone.as_deref(), Some("use1-az1"));

    admin
        .update_instance_custom_health_status()
        .service_id(&svc)
        .instance_id("i-2")
        .status(CustomHealthStatus::Unhealthy)
        .send()
        .await
        .unwrap();
    let s = source.sync().await.unwrap().snapshot;
    assert_eq!(endpoints(&s, "prod/payments"), [("10.0.0.1:8080".into(), true), ("10.0.0.2:8080".into(), false)]);

    admin.deregister_instance().service_id(&svc).instance_id("i-1").send().await.unwrap();
    let s = source.sync().await.unwrap().snapshot;
    assert_eq!(endpoints(&s, "prod/payments"), [("10.0.0.2:8080".into(), false)]);
}

#[tokio::test]
async fn more_than_a_page_of_instances_are_all_read() {
    let (moto, admin, svc) = with_service("prod.local", "big", false).await;
    for i in 0..250u16 {
        register(&admin, &svc, &format!("i-{i}"), &format!("10.1.{}.{}", i / 200, i % 200), 9000, "eks-1").await;
    }
    let source = CloudMap::with_credentials(config(&moto.url(), ""), creds()).await;
    let s = source.sync().await.unwrap().snapshot;
    assert_eq!(endpoints(&s, "prod/big").len(), 250);
}

#[tokio::test]
async fn throttling_is_retried_then_reported_as_throttled() {
    let (moto, admin, svc) = with_service("prod.local", "web", false).await;
    register(&admin, &svc, "i-1", "10.0.0.1", 80, "eks-1").await;

    for status_429 in [false, true] {
        let proxy = Throttler::start(moto.addr, status_429).await;
        let source = CloudMap::with_credentials(config(&proxy.url(), "max_attempts = 3"), creds()).await;
        // Two throttled answers: the SDK's own retries (jittered backoff) absorb them.
        proxy.throttle.store(2, Ordering::SeqCst);
        let s = source.sync().await.unwrap().snapshot;
        assert_eq!(endpoints(&s, "prod/web").len(), 1);
        // More than the attempts allow: the sync fails, classified, with a hint.
        proxy.throttle.store(100, Ordering::SeqCst);
        let e = source.sync().await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Throttled, "{e}");
        assert!(e.message.contains("interval"), "{e}");
        proxy.throttle.store(0, Ordering::SeqCst);
        assert!(source.sync().await.is_ok());
    }
}

#[tokio::test]
async fn a_malformed_answer_is_rejected_not_read_as_empty() {
    let (moto, admin, svc) = with_service("prod.local", "web", false).await;
    register(&admin, &svc, "i-1", "10.0.0.1", 80, "eks-1").await;
    let proxy = Throttler::start(moto.addr, false).await;
    let source = CloudMap::with_credentials(config(&proxy.url(), "max_attempts = 1"), creds()).await;
    proxy.garbage.store(1, Ordering::SeqCst);
    let e = source.sync().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Malformed, "{e}");
    // The next answer is good again: nothing was lost.
    assert_eq!(endpoints(&source.sync().await.unwrap().snapshot, "prod/web").len(), 1);
}

#[tokio::test]
async fn after_a_failed_poll_the_next_one_does_not_wait_the_interval() {
    let (moto, admin, svc) = with_service("prod.local", "web", false).await;
    register(&admin, &svc, "i-1", "10.0.0.1", 80, "eks-1").await;
    let proxy = Throttler::start(moto.addr, false).await;
    let mut source =
        CloudMap::with_credentials(config(&proxy.url(), "max_attempts = 1\ninterval = \"1h\""), creds()).await;
    proxy.garbage.store(1, Ordering::SeqCst);
    assert_eq!(source.next().await.unwrap_err().kind, ErrorKind::Malformed);
    let s = tokio::time::timeout(std::time::Duration::from_secs(10), source.next()).await.expect("retried at once");
    assert_eq!(endpoints(&s.unwrap(), "prod/web").len(), 1);
}

#[tokio::test]
async fn bad_credentials_are_an_auth_error() {
    init();
    // With IAM enforcement on, moto rejects keys it did not issue, as AWS does.
    let moto = Moto::start(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let source = CloudMap::with_credentials(config(&moto.url(), ""), creds()).await;
    let e = source.sync().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth, "{e}");
    assert!(e.message.contains("credentials"), "{e}");
}

#[tokio::test]
async fn a_missing_namespace_is_not_found_and_an_outage_is_unavailable() {
    init();
    let moto = Moto::start(&[]);
    let source = CloudMap::with_credentials(config(&moto.url(), "namespaces = [\"nope.local\"]"), creds()).await;
    let e = source.sync().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    assert!(e.message.contains("nope.local"), "{e}");

    let url = moto.url();
    drop(moto);
    let source = CloudMap::with_credentials(config(&url, "max_attempts = 1"), creds()).await;
    let e = source.sync().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
}
