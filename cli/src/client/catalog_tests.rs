//! `status`, `clusters` and `services` output on hand-made documents.

use skybridge_federator::api::dto::{
    CloudDto, ClusterDto, EndpointDto, EventDto, GatewayCounts, ProvenanceDto, ServiceClusterDetail,
    ServiceClusterSummary, ServiceSummary,
};

use super::*;

fn clusters() -> ClustersResponse {
    let c = |id: &str, cloud, region: &str, conn, total| ClusterDto {
        id: id.into(),
        cloud,
        region: region.into(),
        network: None,
        gateways: GatewayCounts { total, connected: conn, disconnected: total - conn },
    };
    ClustersResponse {
        catalog_version: 7,
        clusters: vec![c("aws-1", CloudDto::Aws, "us-east-1", 2, 2), c("gcp-1", CloudDto::Gcp, "europe-west1", 0, 1)],
    }
}

fn services() -> ServicesResponse {
    let sc = |c: &str, ready, total| ServiceClusterSummary { cluster: c.into(), ready, total, stale: false };
    ServicesResponse {
        catalog_version: 7,
        services: vec![ServiceSummary {
            namespace: "prod".into(),
            name: "payments".into(),
            fqdn: "payments.prod.svc.clusterset.local".into(),
            ports: vec![
                PortDto { port: 443, protocol: ProtocolDto::Tls },
                PortDto { port: 80, protocol: ProtocolDto::Http },
            ],
            clusters: vec![sc("aws-1", 1, 2), sc("gcp-1", 1, 1)],
            has_conflicts: false,
            stale: true,
        }],
    }
}

#[test]
fn clusters_and_services_tables() {
    assert_eq!(
        clusters_table(&clusters(), &services()),
        "\
CLUSTER   CLOUD   REGION         GATEWAYS   SERVICES
aws-1     aws     us-east-1      2/2        1
gcp-1     gcp     europe-west1   0/1        1
"
    );
    assert_eq!(
        services_table(&services()),
        "\
NAMESPACE   NAME       PORTS             CLUSTERS              CONFLICTS   STALE
prod        payments   443/tls,80/http   aws-1:1/2,gcp-1:1/1   no          yes
"
    );
    assert_eq!(
        services_table(&ServicesResponse { catalog_version: 1, services: vec![] }),
        "No services in the catalog.\n"
    );
}

#[test]
fn status_summarizes_and_names_source_states() {
    let src = |attempt: Option<u64>, failures, stale: Option<u64>| SourceStatusDto {
        kind: "static".into(),
        last_success: Some(1_000),
        last_attempt: attempt,
        consecutive_failures: failures,
        total_failures: u64::from(failures),
        last_error: (failures > 0).then(|| "file missing".into()),
        last_error_kind: None,
        stale_since: stale,
        services: 1,
        failing_clusters: Default::default(),
        held_removal: None,
    };
    let o = Overview {
        clusters: clusters(),
        services: services(),
        gateways: GatewaysResponse { gateways: vec![] },
        sources: SourcesResponse {
            sources: [
                ("a".to_owned(), src(Some(1), 0, None)),
                ("b".to_owned(), src(Some(1), 3, Some(61_000))),
                ("c".to_owned(), src(None, 0, None)),
            ]
            .into(),
        },
        events: EventsResponse {
            events: vec![EventDto { seq: 1, at: 100_000, kind: "policy".into(), message: "m".into() }],
        },
        federators: serde_json::from_value(serde_json::json!({
            "leader": "fed-1",
            "store": {"backend": "etcd", "state": "ok", "since": 0, "error": null, "problems": {}},
            "federators": [
                {"name": "fed-0", "role": "follower", "role_since": 61_000, "catalog_version": 7, "version_since": 111_000,
                 "started_at": 0, "gateways": 2, "software": "0.1.0", "this": true},
                {"name": "fed-1", "role": "leader", "role_since": 1_000, "catalog_version": 7, "version_since": 111_000,
                 "started_at": 0, "gateways": 1, "software": "0.1.0", "this": false},
            ],
        }))
        .unwrap(),
        health: serde_json::from_value(serde_json::json!({
            "state": "degraded", "problems": ["source b is failing; its last good data is served"],
            "federator": "fed-0", "role": "follower", "leader": "fed-1",
            "store": {"backend": "etcd", "state": "ok", "since": 0, "error": null, "problems": {}},
            "catalog_version": 7, "services": 1, "gateways_known": 0, "gateways_connected": 0, "sources_failing": ["b"],
        }))
        .unwrap(),
    };
    let text = status_text("http://fed:8080", &o, 121_000);
    assert!(
        text.starts_with(
            "FEDERATOR         http://fed:8080\nSTATE             degraded\nCATALOG VERSION   7\nCLUSTERS          2\n"
        ),
        "{text}"
    );
    assert!(text.contains("  ! source b is failing"), "{text}");
    assert!(text.contains("fed-0 (answered)   follower   7 (for 10s)      60s"), "{text}");
    assert!(text.contains("fed-1              leader     7 (for 10s)      2m"), "{text}");
    assert!(text.contains("SERVICES          1 (0 with conflicts, 1 stale)\n"), "{text}");
    assert!(text.contains("GATEWAYS          0/0 connected\n"), "{text}");
    assert!(text.contains("EVENTS            1 in the last hour (last 21s ago: policy)\n"), "{text}");
    assert!(text.contains("\na        static   ok              2m ago      1          -\n"), "{text}");
    assert!(text.contains("\nb        static   stale for 60s   2m ago      1          file missing\n"), "{text}");
    assert!(text.contains("\nc        static   pending"), "{text}");
}

#[test]
fn one_service_in_detail() {
    let d = ServiceDetail {
        namespace: "prod".into(),
        name: "payments".into(),
        fqdn: "payments.prod.svc.clusterset.local".into(),
        catalog_version: 7,
        ports: vec![PortDto { port: 443, protocol: ProtocolDto::Tls }],
        clusters: vec![ServiceClusterDetail {
            cluster: "gcp-1".into(),
            exported_at: 2_000,
            ready: 1,
            total: 1,
            endpoints: vec![EndpointDto { port: 443, address: "10.1.0.1:8443".into(), zone: None, ready: true }],
            provenance: ProvenanceDto {
                source: "gcp".into(),
                observed_at: 5_000,
                stale_since: Some(6_000),
                stale_for_ms: Some(41_000),
            },
        }],
        conflicts: vec![],
        has_conflicts: false,
        stale: true,
        policy: Some(PolicyDto { failover: vec!["gcp-1".into()], ..Default::default() }),
        proofs: vec![],
    };
    let text = service_detail(&d, 46_000);
    assert!(text.starts_with("Name:              payments.prod.svc.clusterset.local\n"), "{text}");
    assert!(text.contains("Policy:            weights -; failover gcp-1; avoid -; allow default; deny -\n"), "{text}");
    assert!(text.contains("\ngcp-1     1/1     gcp      41s ago   41s         44s ago\n"), "{text}");
    assert!(text.contains("\ngcp-1     443    10.1.0.1:8443   -      yes\n"), "{text}");
}
