//! AKS fleet source end to end: members from a local stand-in of Azure Resource Manager (through
//! azure_identity's client-secret credential and the azure_core pipeline), each member's Fleet
//! ServiceExports from a fake Kubernetes API server over HTTPS with the cluster CA from the
//! member's kubeconfig. The workload identity tests exchange a projected service-account token
//! file at the fake's Azure AD endpoint, and the members then require the AKS token it issued.

mod common;

use std::time::Duration;

use common::{clusters_with, next, until};
use skybridge_api::catalog::SourceSnapshot;
use skybridge_api::source::ErrorKind;
use skybridge_cloud_adapters::aks::fake::{FakeArm, FakeCluster};
use skybridge_cloud_adapters::aks::source;
use skybridge_cloud_adapters::aks::tokens::AKS_SCOPE;
use skybridge_cloud_adapters::k8s::ExportApi;
use skybridge_cloud_adapters::k8s::fake::{FakeApiServer, FakeOptions, Fault, Injection, objects};

const RG: &str = "fleet-rg";
const FLEET: &str = "prod-fleet";

async fn k8s() -> FakeApiServer {
    FakeApiServer::start_with(FakeOptions { token: None, tls: true, ..FakeOptions::default() }).await.unwrap()
}

/// A member whose kubeconfig points at `api` (host 127.0.0.1, its port, its CA).
fn member_cluster(name: &str, location: &str, api: &FakeApiServer) -> FakeCluster {
    let mut c = FakeCluster::new("apps", name, location);
    c.fqdn = Some("127.0.0.1".into());
    c.port = api.url().rsplit(':').next().unwrap().parse().unwrap();
    c.ca_pem = api.ca_pem().map(str::to_owned);
    c
}

fn export(api: &FakeApiServer, name: &str, ip: &str) {
    api.apply(objects::service_export(ExportApi::AksFleet, "prod", name)).unwrap();
    api.apply(objects::service("prod", name, &[("https", 443, None, "TCP")])).unwrap();
    api.apply(objects::endpoint_slice(
        "prod",
        &format!("{name}-1"),
        name,
        &[("https", 8443)],
        &[(ip, Some(true), Some("1"))],
    ))
    .unwrap();
}

#[tokio::test]
async fn fleet_members_exports_flow_and_members_leave() {
    let (arm, weu, _eus, mut src, s) = synced_pair().await;
    let regions: Vec<(&str, &str)> = s.clusters.iter().map(|c| (c.id.as_str(), c.region.as_str())).collect();
    assert_eq!(regions, [("aks-eus-1", "eastus"), ("aks-weu-1", "westeurope")]);
    let tls = s.services.values().flatten().find(|e| e.cluster.as_str() == "aks-weu-1").unwrap();
    assert_eq!((tls.ports[0].port, tls.ports[0].endpoints[0].zone.as_deref()), (443, Some("1")));

    // A change in one member, then the other member leaves the fleet.
    weu.delete(&objects::service_export(ExportApi::AksFleet, "prod", "checkout")).unwrap();
    until(&mut src, "checkout only in eastus", |s| clusters_with(s, "prod/checkout") == ["aks-eus-1"]).await;
    assert!(arm.remove_member(RG, FLEET, "eus"));
    until(&mut src, "eastus gone", |s| s.clusters.len() == 1 && clusters_with(s, "prod/checkout").is_empty()).await;
}

#[tokio::test]
async fn a_missing_fleet_is_not_found() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let arm = FakeArm::start().await.unwrap();
    let mut src = source::source(arm.config(RG, Some("no-such-fleet"))).await.unwrap();
    let e = next(&mut src).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
}

/// Two members (`aks-weu-1`, `aks-eus-1`) each exporting `checkout`, synced, with the
/// snapshot that showed both.
async fn synced_pair() -> (FakeArm, FakeApiServer, FakeApiServer, source::AksFleet, SourceSnapshot) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let arm = FakeArm::start().await.unwrap();
    let (weu, eus) = (k8s().await, k8s().await);
    let a = arm.put_cluster(member_cluster("aks-weu-1", "westeurope", &weu));
    let b = arm.put_cluster(member_cluster("aks-eus-1", "eastus", &eus));
    arm.put_member(RG, FLEET, "weu", &a);
    arm.put_member(RG, FLEET, "eus", &b);
    export(&weu, "checkout", "10.20.0.1");
    export(&eus, "checkout", "10.30.0.1");
    let mut cfg = arm.config(RG, Some(FLEET));
    cfg.interval = Duration::from_millis(300);
    let mut src = source::source(cfg).await.unwrap();
    let s = until(&mut src, "checkout in both members", |s| {
        clusters_with(s, "prod/checkout") == ["aks-eus-1", "aks-weu-1"]
    })
    .await;
    (arm, weu, eus, src, s)
}

/// The endpoint addresses `cluster` exports for `prod/checkout`.
fn checkout_endpoints(s: &skybridge_api::catalog::SourceSnapshot, cluster: &str) -> Vec<String> {
    let key = "prod/checkout".parse().unwrap();
    s.services
        .get(&key)
        .into_iter()
        .flatten()
        .filter(|e| e.cluster.as_str() == cluster)
        .flat_map(|e| e.ports.iter().flat_map(|p| p.endpoints.iter()))
        .map(|e| e.address.to_string())
        .collect()
}

#[tokio::test]
async fn an_endpoint_change_reaches_the_snapshot() {
    let (_arm, weu, _eus, mut src, _) = synced_pair().await;
    let eps = [("10.20.0.1", Some(true), Some("1")), ("10.20.0.2", Some(true), Some("2"))];
    weu.apply(objects::endpoint_slice("prod", "checkout-1", "checkout", &[("https", 8443)], &eps)).unwrap();
    let s = until(&mut src, "two endpoints in westeurope", |s| checkout_endpoints(s, "aks-weu-1").len() == 2).await;
    assert_eq!(checkout_endpoints(&s, "aks-weu-1"), ["10.20.0.1:8443", "10.20.0.2:8443"]);
    assert_eq!(checkout_endpoints(&s, "aks-eus-1"), ["10.30.0.1:8443"]);
}

#[tokio::test]
async fn a_member_outage_keeps_its_last_exports_and_lists_it_failing() {
    let (_arm, _weu, eus, mut src, _) = synced_pair().await;
    eus.update(|c| {
        c.inject(Injection::new(Fault::Status(503), u32::MAX));
        c.close_watches();
    });
    let s = until(&mut src, "eastus failing", |s| !s.failing.is_empty()).await;
    assert_eq!(s.failing.keys().map(|c| c.as_str()).collect::<Vec<_>>(), ["aks-eus-1"]);
    assert_eq!(checkout_endpoints(&s, "aks-eus-1"), ["10.30.0.1:8443"], "last good exports kept");
    eus.clear_injections();
    let s = until(&mut src, "eastus recovered", |s| s.failing.is_empty()).await;
    assert_eq!(clusters_with(&s, "prod/checkout"), ["aks-eus-1", "aks-weu-1"]);
}

#[tokio::test]
async fn a_v1alpha1_only_fleet_install_is_read() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let arm = FakeArm::start().await.unwrap();
    let opts =
        FakeOptions { token: None, tls: true, export_apis: vec![ExportApi::AksFleetV1alpha1, ExportApi::Upstream] };
    let old = FakeApiServer::start_with(opts).await.unwrap();
    let id = arm.put_cluster(member_cluster("aks-old-1", "westeurope", &old));
    arm.put_member(RG, FLEET, "old", &id);
    old.apply(objects::service_export(ExportApi::AksFleetV1alpha1, "prod", "checkout")).unwrap();
    old.apply(objects::service("prod", "checkout", &[("https", 443, None, "TCP")])).unwrap();
    let eps = [("10.40.0.1", Some(true), None)];
    old.apply(objects::endpoint_slice("prod", "checkout-1", "checkout", &[("https", 8443)], &eps)).unwrap();
    let mut src = source::source(arm.config(RG, Some(FLEET))).await.unwrap();
    let s = until(&mut src, "checkout from v1alpha1", |s| clusters_with(s, "prod/checkout") == ["aks-old-1"]).await;
    assert!(s.failing.is_empty(), "{:?}", s.failing);
}

/// A projected service-account token as the kubelet writes it for workload identity (a JWT
/// for audience `api://AzureADTokenExchange`); `n` tells rotations apart.
fn sa_token(n: u32) -> String {
    use base64::Engine as _;
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let claims = format!(
        r#"{{"aud":["api://AzureADTokenExchange"],"iss":"https://oidc.prod-aks.azure.com/fake/","sub":"system:serviceaccount:skybridge:federator","iat":{n}}}"#
    );
    format!("{}.{}.{}", b64(r#"{"alg":"RS256","kid":"k1"}"#), b64(&claims), b64(&format!("signature-{n}")))
}

/// One member (`aks-weu-1`) exporting `checkout`, whose API server accepts no token yet.
async fn one_member(arm: &FakeArm) -> FakeApiServer {
    let weu = k8s().await;
    weu.set_token(Some("nothing-issued-yet"));
    let id = arm.put_cluster(member_cluster("aks-weu-1", "westeurope", &weu));
    arm.put_member(RG, FLEET, "weu", &id);
    export(&weu, "checkout", "10.20.0.1");
    weu
}

#[tokio::test]
async fn workload_identity_syncs_with_the_aks_token_it_was_issued() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let arm = FakeArm::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    std::fs::write(&file, sa_token(1)).unwrap();
    arm.set_federated_assertion(Some(&sa_token(1)));
    let weu = one_member(&arm).await;

    let mut cfg = arm.workload_identity_config(RG, Some(FLEET), &file);
    cfg.interval = Duration::from_millis(300);
    let mut src = source::source(cfg).await.unwrap();
    // The source fetched its AKS token while starting; members are only called after that.
    let aks = arm.tokens_for(AKS_SCOPE);
    assert_eq!(aks.len(), 1, "one AKS-scope token from the assertion");
    weu.set_token(Some(&aks[0]));
    until(&mut src, "checkout via workload identity", |s| clusters_with(s, "prod/checkout") == ["aks-weu-1"]).await;
    let arm_scope = format!("{}/.default", arm.url());
    assert_eq!(arm.tokens_for(&arm_scope).len(), 1, "ARM called with a token from the same assertion");
    assert!(arm.requests().iter().filter(|r| !r.path.ends_with("/oauth2/v2.0/token")).all(|r| r.token.is_some()));
}

#[tokio::test]
async fn a_foreign_assertion_is_an_auth_error_and_a_rotated_file_is_read_by_the_next_credential() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let arm = FakeArm::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    // The file holds an old token; the federated credential accepts only the rotated one.
    std::fs::write(&file, sa_token(1)).unwrap();
    arm.set_federated_assertion(Some(&sa_token(2)));
    let weu = one_member(&arm).await;
    let cfg = arm.workload_identity_config(RG, Some(FLEET), &file);
    let e = source::source(cfg.clone()).await.err().expect("no AKS token, no source");
    assert_eq!(e.kind, ErrorKind::Auth, "{e}");
    assert!(e.message.contains("AADSTS700211"), "{e}");
    assert!(arm.issued_scopes().is_empty());

    // azure_identity reads the file when the credential is built and again at most every
    // 10 minutes, so a rotation reaches a running source within that; here, a new source.
    std::fs::write(&file, sa_token(2)).unwrap();
    let mut src = source::source(cfg).await.unwrap();
    weu.set_token(Some(&arm.tokens_for(AKS_SCOPE)[0]));
    until(&mut src, "checkout after the rotation", |s| clusters_with(s, "prod/checkout") == ["aks-weu-1"]).await;
}
