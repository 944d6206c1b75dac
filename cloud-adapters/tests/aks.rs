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
use skybridge_cloud_adapters::k8s::fake::{FakeApiServer, FakeOptions, objects};

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
