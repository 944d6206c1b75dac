//! The production client (azure_identity's ClientSecretCredential, the azure_core pipeline,
//! discovery) against [`FakeArm`] on loopback.

use std::time::{Duration, Instant};

use skybridge_api::model::Cloud;
use skybridge_api::source::ErrorKind;

use super::fake::{FakeArm, FakeCluster, Fault, Injection};
use super::{AksDiscovery, tokens::AKS_SCOPE};

const RG: &str = "fleet-rg";
const FLEET: &str = "prod-fleet";

async fn fake() -> FakeArm {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    FakeArm::start().await.expect("start FakeArm")
}

/// A fleet with two members in two resource groups.
async fn fleet_of_two() -> FakeArm {
    let arm = fake().await;
    let weu = arm.put_cluster(FakeCluster::new("apps-weu", "aks-weu-1", "westeurope"));
    let eus = arm.put_cluster(FakeCluster::new("apps-eus", "aks-eus-1", "eastus"));
    arm.put_member(RG, FLEET, "weu", &weu);
    arm.put_member(RG, FLEET, "eus", &eus);
    arm
}

fn discovery(arm: &FakeArm, fleet: Option<&str>) -> AksDiscovery {
    AksDiscovery::new(arm.config(RG, fleet)).expect("discovery set-up")
}

fn ids(d: &super::Discovery) -> Vec<&str> {
    d.clusters.iter().map(|c| c.id.as_str()).collect()
}

fn arm_scope(arm: &FakeArm) -> String {
    format!("{}/.default", arm.url())
}

#[tokio::test]
async fn fleet_members_become_clusters() {
    let arm = fleet_of_two().await;
    let d = discovery(&arm, Some(FLEET)).discover().await.unwrap();
    assert_eq!(ids(&d), ["aks-eus-1", "aks-weu-1"]);
    assert!(d.skipped.is_empty(), "{:?}", d.skipped);
    let weu = &d.clusters[1];
    assert_eq!(weu.cloud, Cloud::Azure);
    assert_eq!(weu.region, "westeurope");
    assert_eq!(weu.server, "https://aks-weu-1-dns-1a2b3c.hcp.westeurope.azmk8s.io:443");
    assert_eq!(weu.ca_pem, FakeCluster::new("apps-weu", "aks-weu-1", "westeurope").ca_pem);
    assert!(
        weu.resource_id
            .ends_with("/resourceGroups/apps-weu/providers/Microsoft.ContainerService/managedClusters/aks-weu-1")
    );

    // One ARM token, sent on every request, and the documented paths and versions.
    assert_eq!(arm.issued_scopes(), [arm_scope(&arm)]);
    let reqs = arm.requests();
    let arm_reqs: Vec<_> = reqs.iter().filter(|r| r.path.starts_with("/subscriptions/")).collect();
    assert_eq!(arm_reqs.len(), 5, "{arm_reqs:?}");
    assert!(arm_reqs.iter().all(|r| r.token.as_deref() == Some("fake-aad-token-1")));
    assert!(arm_reqs[0].path.ends_with("/providers/Microsoft.ContainerService/fleets/prod-fleet/members"));
    assert_eq!(arm_reqs[0].query, "api-version=2025-03-01");
    let creds: Vec<_> = arm_reqs.iter().filter(|r| r.path.ends_with("/listClusterUserCredential")).collect();
    assert_eq!(creds.len(), 2);
    assert!(creds.iter().all(|r| r.method == "POST" && r.query == "api-version=2025-10-01"));
}

#[tokio::test]
async fn paging_follows_next_link() {
    let arm = fake().await;
    for i in 0..5 {
        let id = arm.put_cluster(FakeCluster::new("apps", &format!("aks-{i}"), "northeurope"));
        arm.put_member(RG, FLEET, &format!("m{i}"), &id);
    }
    arm.set_page_size(2);
    let d = discovery(&arm, Some(FLEET)).discover().await.unwrap();
    assert_eq!(ids(&d), ["aks-0", "aks-1", "aks-2", "aks-3", "aks-4"]);
    let pages: Vec<String> =
        arm.requests().into_iter().filter(|r| r.path.ends_with("/members")).map(|r| r.query).collect();
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(pages[1].contains("skipToken=2") && pages[2].contains("skipToken=4"), "{pages:?}");

    // Without a fleet, the resource group's managedClusters list pages the same way.
    let d = discovery(&arm, None).discover().await;
    assert!(d.unwrap().clusters.is_empty(), "fleet-rg holds no clusters");
    let mut cfg = arm.config("apps", None);
    cfg.resource_group = "apps".into();
    let d = AksDiscovery::new(cfg).unwrap().discover().await.unwrap();
    assert_eq!(d.clusters.len(), 5);
}

#[tokio::test]
async fn member_added_and_removed_is_reflected() {
    let arm = fleet_of_two().await;
    let disc = discovery(&arm, Some(FLEET));
    assert_eq!(disc.discover().await.unwrap().clusters.len(), 2);

    let id = arm.put_cluster(FakeCluster::new("apps-sea", "aks-sea-1", "southeastasia"));
    arm.put_member(RG, FLEET, "sea", &id);
    let d = disc.discover().await.unwrap();
    assert_eq!(ids(&d), ["aks-eus-1", "aks-sea-1", "aks-weu-1"]);

    assert!(arm.remove_member(RG, FLEET, "weu"));
    let d = disc.discover().await.unwrap();
    assert_eq!(ids(&d), ["aks-eus-1", "aks-sea-1"]);
}

#[tokio::test]
async fn odd_members_are_skipped_with_reasons() {
    let arm = fleet_of_two().await;
    let bad = arm.put_cluster(FakeCluster::new("apps", "Bad_Name", "westeurope"));
    let upper = arm.put_cluster(FakeCluster::new("apps", "AKS-Upper", "WestEurope"));
    let mut stopped = FakeCluster::new("apps", "aks-stopped", "westeurope");
    stopped.power_state = "Stopped".into();
    let stopped = arm.put_cluster(stopped);
    let gone = arm.put_cluster(FakeCluster::new("apps", "aks-gone", "westeurope"));
    arm.remove_cluster("apps", "aks-gone");
    let arc = format!(
        "/subscriptions/{}/resourceGroups/apps/providers/Microsoft.Kubernetes/connectedClusters/arc-1",
        FakeArm::SUBSCRIPTION
    );
    let mut private = FakeCluster::new("apps", "aks-private", "westeurope");
    private.fqdn = None;
    private.private_fqdn = Some("aks-private-priv.privatelink.westeurope.azmk8s.io".into());
    let private = arm.put_cluster(private);
    for (m, id) in
        [("bad", &bad), ("upper", &upper), ("stopped", &stopped), ("gone", &gone), ("arc", &arc), ("p", &private)]
    {
        arm.put_member(RG, FLEET, m, id);
    }

    let d = discovery(&arm, Some(FLEET)).discover().await.unwrap();
    assert_eq!(ids(&d), ["aks-eus-1", "aks-private", "aks-upper", "aks-weu-1"]);
    let upper = d.clusters.iter().find(|c| c.id.as_str() == "aks-upper").unwrap();
    assert_eq!(upper.region, "westeurope");
    let private = d.clusters.iter().find(|c| c.id.as_str() == "aks-private").unwrap();
    assert_eq!(private.server, "https://aks-private-priv.privatelink.westeurope.azmk8s.io:443");

    let reason = |needle: &str| {
        d.skipped.iter().find(|s| s.resource.contains(needle)).map(|s| s.reason.clone()).unwrap_or_default()
    };
    assert!(reason("Bad_Name").contains("not a valid cluster id"), "{:?}", d.skipped);
    assert!(reason("aks-stopped").contains("stopped"));
    assert!(reason("aks-gone").contains("not found"));
    assert!(reason("arc-1").contains("not an AKS managedCluster"));
    assert_eq!(d.skipped.len(), 4, "{:?}", d.skipped);
}

#[tokio::test]
async fn expired_arm_token_is_refreshed_and_requests_keep_working() {
    let arm = fleet_of_two().await;
    // 301 s: the client refreshes 300 s before expiry, so the token is due after 1 s.
    arm.set_token_ttl(301);
    let disc = discovery(&arm, Some(FLEET));
    assert_eq!(disc.discover().await.unwrap().clusters.len(), 2);
    assert_eq!(arm.issued_scopes().len(), 1);

    arm.expire_tokens();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(disc.discover().await.unwrap().clusters.len(), 2);
    assert_eq!(arm.issued_scopes(), [arm_scope(&arm), arm_scope(&arm)]);
    let last = arm.requests().into_iter().rev().find(|r| r.path.starts_with("/subscriptions/")).unwrap();
    assert_eq!(last.token.as_deref(), Some("fake-aad-token-2"));
}

#[tokio::test]
async fn aks_tokens_are_cached_then_refreshed() {
    let arm = fake().await;
    let tokens = discovery(&arm, Some(FLEET)).tokens();
    let a = tokens.token().await.unwrap();
    let b = tokens.token().await.unwrap();
    assert_eq!(a, b, "cached");
    assert_eq!(arm.issued_scopes(), [AKS_SCOPE]);

    arm.set_token_ttl(301);
    arm.expire_tokens();
    let fresh = discovery(&arm, Some(FLEET)).tokens();
    let c = fresh.token().await.unwrap();
    assert_eq!(fresh.token().await.unwrap(), c, "301 s left: still outside the 5 minute margin");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let d = fresh.token().await.unwrap();
    assert_ne!(c, d, "refreshed inside the margin");
    assert_eq!(arm.issued_scopes().len(), 3);
}

#[tokio::test]
async fn bad_credentials_and_rejected_tokens_are_auth() {
    let arm = fleet_of_two().await;
    std::fs::write(arm.dir().join("wrong"), "not-the-secret\n").unwrap();
    let mut cfg = arm.config(RG, Some(FLEET));
    if let super::CredentialConfig::ClientSecret { client_secret_file, .. } = &mut cfg.credential {
        *client_secret_file = arm.dir().join("wrong");
    }
    let e = AksDiscovery::new(cfg).unwrap().discover().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth, "{e}");
    assert!(e.message.contains("client-secret") && e.message.contains("AADSTS7000215"), "{e}");

    // ARM itself answering 401: a token the client still believes valid, revoked server-side.
    let disc = discovery(&arm, Some(FLEET));
    disc.discover().await.unwrap();
    arm.expire_tokens();
    let e = disc.discover().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth, "{e}");
    assert!(e.message.contains("rejected the token") && e.message.contains("ExpiredAuthenticationToken"), "{e}");

    // A missing secret file is reported at set-up, naming the file.
    let mut cfg = arm.config(RG, Some(FLEET));
    if let super::CredentialConfig::ClientSecret { client_secret_file, .. } = &mut cfg.credential {
        *client_secret_file = arm.dir().join("absent");
    }
    let e = skybridge_api::source::SourceError::from(AksDiscovery::new(cfg).unwrap_err());
    assert_eq!(e.kind, ErrorKind::Auth);
    assert!(e.message.contains("absent"), "{e}");
}

#[tokio::test]
async fn forbidden_names_the_role_to_grant() {
    let arm = fleet_of_two().await;
    arm.inject(Injection { fault: Fault::Status(403), path_contains: "listClusterUserCredential".into(), times: 1 });
    let e = discovery(&arm, Some(FLEET)).discover().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth);
    assert!(
        e.message.contains("Azure Kubernetes Service Cluster User Role") && e.message.contains("AuthorizationFailed"),
        "{e}"
    );

    arm.inject(Injection { fault: Fault::Status(403), path_contains: "/members".into(), times: 1 });
    let e = discovery(&arm, Some(FLEET)).discover().await.unwrap_err();
    assert!(e.message.contains("Reader"), "{e}");
}

#[tokio::test]
async fn throttling_honors_retry_after_or_reports_throttled() {
    let arm = fleet_of_two().await;
    let disc = discovery(&arm, Some(FLEET));

    // A short Retry-After is waited out by the pipeline's retry policy.
    arm.inject(Injection::arm(Fault::Throttle { retry_after_secs: 1 }, 1));
    let start = Instant::now();
    assert_eq!(disc.discover().await.unwrap().clusters.len(), 2);
    assert!(start.elapsed() >= Duration::from_secs(1), "Retry-After not honored: {:?}", start.elapsed());

    // One longer than the call's timeout (10 s) gives up at once.
    arm.inject(Injection::arm(Fault::Throttle { retry_after_secs: 120 }, 1));
    let start = Instant::now();
    let e = disc.discover().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Throttled, "{e}");
    assert!(e.message.contains("retry after 120s"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
}

#[tokio::test]
async fn server_errors_and_garbage_are_classified() {
    let arm = fleet_of_two().await;
    let disc = discovery(&arm, Some(FLEET));

    // max_retries = 2: three 500s exhaust the retries.
    arm.inject(Injection::arm(Fault::Status(500), 3));
    let e = disc.discover().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    assert!(e.message.contains("InternalServerError"), "{e}");
    // Fewer failures than retries are absorbed.
    arm.inject(Injection::arm(Fault::Status(503), 1));
    disc.discover().await.unwrap();

    arm.inject(Injection::arm(Fault::Malformed, 1));
    let e = disc.discover().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Malformed, "{e}");
    assert!(e.message.contains("members of fleet"), "{e}");
}

#[tokio::test]
async fn missing_fleet_group_and_bad_api_version_say_what_to_fix() {
    let arm = fleet_of_two().await;
    let e = discovery(&arm, Some("nope")).discover().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(e.message.contains("\"nope\"") && e.message.contains("`fleet`"), "{e}");

    let e = AksDiscovery::new(arm.config("no-such-rg", Some(FLEET))).unwrap().discover().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(e.message.contains("ResourceGroupNotFound"), "{e}");

    let mut cfg = arm.config(RG, Some(FLEET));
    cfg.fleet_api_version = "2019-01-01".into();
    let e = AksDiscovery::new(cfg).unwrap().discover().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Malformed);
    assert!(e.message.contains("InvalidApiVersionParameter") && e.message.contains("fleet_api_version"), "{e}");
}

#[tokio::test]
async fn unreachable_arm_is_unavailable() {
    let arm = fake().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut cfg = arm.config(RG, Some(FLEET));
    cfg.arm_endpoint = format!("https://127.0.0.1:{port}");
    cfg.timeout = Duration::from_secs(3);
    let e = AksDiscovery::new(cfg).unwrap().discover().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");

    // The CA is required: without `ca_file` the fake's certificate is not trusted.
    let mut cfg = arm.config(RG, Some(FLEET));
    cfg.ca_file = None;
    cfg.timeout = Duration::from_secs(3);
    let e = AksDiscovery::new(cfg).unwrap().discover().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
}

#[tokio::test]
async fn keep_fresh_feeds_the_kubernetes_token_source() {
    use crate::k8s::{SharedToken, TokenProvider};
    let arm = fake().await;
    let tokens = discovery(&arm, Some(FLEET)).tokens();
    let shared = SharedToken::default();
    let task = tokio::spawn({
        let (tokens, shared) = (tokens.clone(), shared.clone());
        async move { tokens.keep_fresh(shared).await }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while shared.token().is_err() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    assert_eq!(shared.token().unwrap(), tokens.token().await.unwrap());
    assert_eq!(arm.issued_scopes(), [AKS_SCOPE]);
}
