//! AKS fleet source end to end: members from a local stand-in of Azure Resource Manager (through
//! azure_identity's client-secret credential and the azure_core pipeline), each member's Fleet
//! ServiceExports from a fake Kubernetes API server over HTTPS with the cluster CA from the
//! member's kubeconfig.

mod common;

use std::time::Duration;

use common::{clusters_with, next, until};
use skybridge_api::source::ErrorKind;
use skybridge_cloud_adapters::aks::fake::{FakeArm, FakeCluster};
use skybridge_cloud_adapters::aks::source;
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

/// Two members (`aks-weu-1`, `aks-eus-1`) each exporting `checkout`, synced.
async fn synced_pair() -> (FakeArm, FakeApiServer, FakeApiServer, source::AksFleet) {
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
    until(&mut src, "checkout in both members", |s| clusters_with(s, "prod/checkout") == ["aks-eus-1", "aks-weu-1"])
        .await;
    (arm, weu, eus, src)
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
    let (_arm, weu, _eus, mut src) = synced_pair().await;
    let eps = [("10.20.0.1", Some(true), Some("1")), ("10.20.0.2", Some(true), Some("2"))];
    weu.apply(objects::endpoint_slice("prod", "checkout-1", "checkout", &[("https", 8443)], &eps)).unwrap();
    let s = until(&mut src, "two endpoints in westeurope", |s| checkout_endpoints(s, "aks-weu-1").len() == 2).await;
    assert_eq!(checkout_endpoints(&s, "aks-weu-1"), ["10.20.0.1:8443", "10.20.0.2:8443"]);
    assert_eq!(checkout_endpoints(&s, "aks-eus-1"), ["10.30.0.1:8443"]);
}

#[tokio::test]
async fn a_member_outage_keeps_its_last_exports_and_lists_it_failing() {
    let (_arm, _weu, eus, mut src) = synced_pair().await;
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
