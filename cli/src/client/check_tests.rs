//! `check`'s logic on hand-made documents: no sockets.

use skybridge_federator::api::dto::{
    CloudDto, ClusterDto, ClusterFailureDto, GatewayCounts, GatewayDto, HeldRemovalDto, LatencyPath, ProofDto,
    SourceStatusDto,
};

use super::*;
use skybridge_federator::api::federation::FederatorsResponse;

const NOW: u64 = 1_000_000;

fn gateway(cluster: &str, connected: bool) -> GatewayDto {
    GatewayDto {
        cluster: cluster.into(),
        instance: format!("gw-{cluster}"),
        cloud: "other".into(),
        region: "r".into(),
        version: "0.1.0".into(),
        tunnel_addresses: vec![format!("{cluster}.example:4433")],
        connected,
        connected_since: connected.then_some(NOW - 120_000),
        last_report: Some(NOW - 1_000),
        last_seen: NOW - 40_000,
        acked_version: 7,
        nacks: 0,
        last_nack: None,
        federator: connected.then(|| "fed-0".into()),
    }
}

fn path(from: &str, to: &str, state: &str, rtt: Option<f64>) -> LatencyPath {
    LatencyPath {
        from: from.into(),
        to: to.into(),
        rtt_ms: rtt,
        rank_rtt_ms: rtt,
        state: state.into(),
        transport: "quic".into(),
        transport_for_s: None,
        reported_at: NOW - 2_000,
        by: format!("gw-{from}"),
    }
}

fn source(failures: u32, stale_since: Option<u64>) -> SourceStatusDto {
    SourceStatusDto {
        kind: "static".into(),
        last_success: Some(NOW - 100_000),
        last_attempt: Some(NOW - 1_000),
        consecutive_failures: failures,
        total_failures: u64::from(failures),
        last_error: (failures > 0).then(|| "file missing".into()),
        last_error_kind: (failures > 0).then(|| "not_found".into()),
        stale_since,
        services: 3,
        failing_clusters: Default::default(),
        held_removal: None,
    }
}

fn cluster(id: &str, gateways: usize) -> ClusterDto {
    ClusterDto {
        id: id.into(),
        cloud: CloudDto::Other,
        region: "r".into(),
        network: None,
        gateways: GatewayCounts { total: gateways, connected: gateways, disconnected: 0 },
    }
}

/// Two replicas on etcd, `leader` leading, the store in `state`.
fn federators(state: &str, leader: Option<&str>) -> FederatorsResponse {
    let replica = |name: &str| {
        serde_json::json!({"name": name, "role": if Some(name) == leader { "leader" } else { "follower" },
            "role_since": 0, "catalog_version": 7, "version_since": 0, "started_at": 0, "gateways": 1,
            "software": "0.1.0", "this": name == "fed-0"})
    };
    serde_json::from_value(serde_json::json!({
        "leader": leader,
        "store": {"backend": "etcd", "state": state, "since": 0,
                  "error": (state != "ok").then_some("etcd at http://e:2379 is unavailable: no leader"), "problems": {}},
        "federators": [replica("fed-0"), replica("fed-1")],
    }))
    .unwrap()
}

/// A healthy two-cluster deployment.
fn healthy() -> Fetched {
    Fetched {
        api: "http://fed:8080".into(),
        ready: Ok(()),
        docs: Some(Docs {
            clusters: Ok(ClustersResponse {
                catalog_version: 7,
                clusters: vec![cluster("aws-1", 1), cluster("gcp-1", 1)],
            }),
            gateways: Ok(GatewaysResponse { gateways: vec![gateway("aws-1", true), gateway("gcp-1", true)] }),
            sources: Ok(SourcesResponse { sources: [("static".to_owned(), source(0, None))].into() }),
            latency: Ok(LatencyResponse {
                clusters: vec!["aws-1".into(), "gcp-1".into()],
                paths: vec![
                    path("aws-1", "gcp-1", "healthy", Some(20.25)),
                    path("gcp-1", "aws-1", "healthy", Some(19.5)),
                ],
                routes: vec![],
            }),
            federators: Ok(federators("ok", Some("fed-1"))),
            proofs: Ok(ProofsResponse { proofs: vec![proof(true), proof(true)], failing: 0 }),
        }),
        admins: vec![],
        now_ms: NOW,
        cert_warn: Duration::from_secs(7 * 86_400),
    }
}

fn failures(f: &Fetched) -> Vec<String> {
    evaluate(f).into_iter().filter(|f| f.result == Verdict::Fail).map(|f| f.message).collect()
}

#[test]
fn a_healthy_deployment_passes_and_says_what_it_checked() {
    let f = healthy();
    assert_eq!(failures(&f), Vec::<String>::new());
    let text = report(&evaluate(&f));
    assert_eq!(
        text,
        "\
ok    federator  http://fed:8080 is reachable and ready
ok    federator  fed-1 leads; replicas: fed-0 (follower, version 7), fed-1 (leader, version 7)
ok    gateway    aws-1/gw-aws-1 connected for 2m, at catalog version 7
ok    gateway    gcp-1/gw-gcp-1 connected for 2m, at catalog version 7
ok    source     static (static) synced 100s ago, 3 services
ok    path       aws-1 → gcp-1 healthy, RTT 20.2 ms (reported 2s ago by gw-aws-1)
ok    path       gcp-1 → aws-1 healthy, RTT 19.5 ms (reported 2s ago by gw-gcp-1)
ok    proof      2 service ports proven reachable from their sources
skip  cert       gateway certificates not checked: the federator does not report their expiry; pass --gateway-admin HOST:PORT for each gateway

all 8 checks passed
"
    );
}

#[test]
fn a_held_removal_fails_the_check_and_says_how_to_apply_it() {
    let mut f = healthy();
    if let Some(Docs { sources: Ok(s), .. }) = &mut f.docs {
        s.sources.get_mut("static").unwrap().held_removal =
            Some(HeldRemovalDto { since: NOW - 60_000, removed: 3, of: 3, applies_at: NOW + 240_000 });
    }
    assert_eq!(
        failures(&f),
        ["static (static): its last answer would remove 3 of 3 services; held since 60s ago (the previous data is \
          served): fix the source, or apply it with `skybridge confirm-removal static`"]
    );
}

#[test]
fn a_store_without_quorum_or_a_leader_fails_the_check() {
    let mut f = healthy();
    f.docs.as_mut().unwrap().federators = Ok(federators("degraded", None));
    assert_eq!(
        failures(&f),
        [
            "etcd store is degraded: etcd at http://e:2379 is unavailable: no leader; the replicas serve their last catalog read-only"
        ]
    );
    f.docs.as_mut().unwrap().federators = Ok(federators("ok", None));
    assert_eq!(
        failures(&f),
        [
            "no replica leads: catalog sources are not running; replicas: fed-0 (follower, version 7), fed-1 (follower, version 7)"
        ]
    );
    // An older federator without the endpoint: not checked, not failed.
    f.docs.as_mut().unwrap().federators = Err("the server answered 404".into());
    assert_eq!(failures(&f), Vec::<String>::new());
}

#[test]
fn an_unreachable_federator_is_one_precise_failure() {
    let f = Fetched { ready: Err("connecting to 127.0.0.1:1: Connection refused".into()), docs: None, ..healthy() };
    assert_eq!(failures(&f), ["http://fed:8080 cannot be reached: connecting to 127.0.0.1:1: Connection refused"]);
    let f = Fetched { ready: Err("the server answered 503: loading the store".into()), ..healthy() };
    assert_eq!(failures(&f), ["http://fed:8080 is not ready: the server answered 503: loading the store"]);
}

#[test]
fn a_disconnected_gateway_and_a_down_path_are_named() {
    let mut f = healthy();
    let d = f.docs.as_mut().unwrap();
    d.gateways.as_mut().unwrap().gateways[1].connected = false;
    if let Ok(l) = &mut d.latency {
        l.paths[0] = path("aws-1", "gcp-1", "down", None);
    }
    assert_eq!(
        failures(&f),
        ["gcp-1/gw-gcp-1 is not connected (last seen 40s ago)", "aws-1 → gcp-1 is down (reported 2s ago by gw-aws-1)"]
    );
    // The disconnected gateway's own reports are not evidence either way.
    let skipped: Vec<_> = evaluate(&f).into_iter().filter(|x| x.result == Verdict::Skip).map(|x| x.message).collect();
    assert!(skipped[0].starts_with("gcp-1 → aws-1: not checked, gcp-1's gateway is not connected"), "{skipped:?}");
}

#[test]
fn missing_old_and_suspect_paths_fail() {
    let mut f = healthy();
    if let Some(Docs { latency: Ok(l), .. }) = &mut f.docs {
        l.paths[0].state = "suspect".into();
        l.paths[1].reported_at = NOW - 300_000;
    }
    assert_eq!(
        failures(&f),
        [
            "aws-1 → gcp-1 is suspect (reported 2s ago by gw-aws-1)",
            "gcp-1 → aws-1: no fresh measurement, reported 5m ago by gw-gcp-1"
        ]
    );
    if let Some(Docs { latency: Ok(l), .. }) = &mut f.docs {
        l.paths.clear();
    }
    assert_eq!(
        failures(&f),
        [
            "aws-1 → gcp-1: aws-1's gateways reported no measurement",
            "gcp-1 → aws-1: gcp-1's gateways reported no measurement"
        ]
    );
}

#[test]
fn failing_sources_name_their_error_and_age() {
    let mut f = healthy();
    let d = f.docs.as_mut().unwrap();
    let mut fleet = source(0, None);
    fleet.kind = "gke-fleet".into();
    fleet.failing_clusters.insert(
        "gke-2".into(),
        ClusterFailureDto { since: NOW - 5_000, kind: "unavailable".into(), error: "connection refused".into() },
    );
    d.sources = Ok(SourcesResponse {
        sources: [
            ("fleet".to_owned(), fleet),
            ("gcp".to_owned(), source(2, Some(NOW - 41_000))),
            ("new".to_owned(), source(1, None)),
        ]
        .into(),
    });
    assert_eq!(
        failures(&f),
        [
            "fleet (gke-fleet) syncs, but member clusters fail and their exports are served stale: gke-2 (unavailable: connection refused)",
            "gcp (static) is failing (not_found: file missing) since 41s ago; its data is stale: last synced 100s ago",
            "new (static) is failing (not_found: file missing), 1 attempts in a row; last synced 100s ago"
        ]
    );
}

#[test]
fn gateways_without_a_cluster_gateway_nacks_and_documents_that_fail() {
    let mut f = healthy();
    let d = f.docs.as_mut().unwrap();
    d.clusters.as_mut().unwrap().clusters.push(cluster("azure-1", 0));
    let g = &mut d.gateways.as_mut().unwrap().gateways[0];
    g.nacks = 2;
    g.last_nack = Some("version 6: bad route".into());
    d.sources = Err("/api/v1/sources: the server answered 500: store failed".into());
    assert_eq!(
        failures(&f),
        [
            "aws-1/gw-aws-1 rejected 2 catalog update(s); last: version 6: bad route",
            "cluster azure-1 has no gateway: its services cannot be reached",
            "cannot list sources: /api/v1/sources: the server answered 500: store failed"
        ]
    );
}

#[test]
fn certificates_and_tunnels_from_gateway_admins() {
    let status = |cluster: &str, secs: u64, peer_state: &str| AdminStatus {
        cluster: cluster.into(),
        ready: true,
        certificate_expires_in_seconds: secs,
        certificate: None,
        peers: vec![AdminPeer {
            cluster: "gcp-1".into(),
            state: peer_state.into(),
            rtt_ms: Some(20.0),
            last_error: (peer_state != "healthy").then(|| "timed out".into()),
        }],
    };
    let mut f = healthy();
    f.admins = vec![
        ("a:9000".into(), Ok(status("aws-1", 30 * 86_400, "healthy"))),
        ("b:9000".into(), Ok(status("azure-1", 86_400, "down"))),
        ("c:9000".into(), Ok(status("x-1", 0, "healthy"))),
        ("d:9000".into(), Err("connecting to d:9000: refused".into())),
    ];
    let all = evaluate(&f);
    assert!(
        all.iter().any(|x| x.result == Verdict::Ok && x.message == "gateway aws-1 (a:9000): certificate valid for 30d")
    );
    assert!(all.iter().any(|x| x.message == "aws-1 → gcp-1 healthy at a:9000, RTT 20.0 ms"));
    assert_eq!(
        failures(&f),
        [
            "gateway azure-1 (b:9000): certificate expires in 24h, within --cert-warn 7d",
            "azure-1 → gcp-1 is down at b:9000; last error: timed out",
            "gateway x-1 (c:9000): certificate has expired",
            "gateway admin d:9000: cannot read /status: connecting to d:9000: refused"
        ]
    );
    f.cert_warn = Duration::from_secs(3600);
    assert_eq!(failures(&f).len(), 3);
    // A gateway's own warning window counts even when --cert-warn is shorter.
    let mut warned = status("aws-1", 30 * 86_400, "healthy");
    warned.certificate = Some(AdminCertificate { expiring_soon: true });
    f.admins = vec![("a:9000".into(), Ok(warned))];
    assert_eq!(failures(&f), ["gateway aws-1 (a:9000): certificate expires in 30d, within its tls.expiry_warning"]);
}

#[test]
fn federator_certificates_from_their_replica_records() {
    let mut f = healthy();
    let day = 86_400_000;
    let Some(Docs { federators: Ok(feds), .. }) = f.docs.as_mut() else { unreachable!() };
    feds.federators[0].certificate_not_after = NOW + 30 * day;
    feds.federators[1].certificate_not_after = NOW + day;
    assert_eq!(failures(&f), ["federator fed-1: certificate expires in 24h, within --cert-warn 7d"]);
    assert!(evaluate(&f).iter().any(|x| x.message == "federator fed-0: certificate valid for 30d"));
    let Some(Docs { federators: Ok(feds), .. }) = f.docs.as_mut() else { unreachable!() };
    feds.federators[0].certificate_expiring = true;
    feds.federators[1].certificate_not_after = NOW - 1;
    assert_eq!(
        failures(&f),
        [
            "federator fed-0: certificate expires in 30d, within its tls.expiry_warning",
            "federator fed-1: certificate has expired"
        ]
    );
}

#[test]
fn a_path_on_the_tcp_fallback_is_a_warning_with_how_long() {
    let mut f = healthy();
    if let Some(Docs { latency: Ok(l), .. }) = &mut f.docs {
        l.paths[0].transport = "tcp".into();
        l.paths[0].transport_for_s = Some(300);
    }
    let findings = evaluate(&f);
    assert_eq!(failures(&f), Vec::<String>::new(), "a warning does not fail the run");
    let warned: Vec<_> = findings.iter().filter(|f| f.result == Verdict::Warn).map(|f| f.message.clone()).collect();
    assert_eq!(
        warned,
        [
            "aws-1 → gcp-1 healthy over TLS/TCP for 5m: QUIC (UDP) is blocked on the path, RTT 20.2 ms (reported 2s ago by gw-aws-1)"
        ]
    );
    let text = report(&findings);
    assert!(
        text.contains("\nWARN  path       aws-1 → gcp-1") && text.ends_with("all 8 checks passed, 1 with a warning\n"),
        "{text}"
    );
}

fn proof(ok: bool) -> ProofDto {
    ProofDto {
        service: "prod/web".into(),
        port: 80,
        from: "aws-1".into(),
        to: "gcp-1".into(),
        ok,
        at: NOW - 5_000,
        error: (!ok).then(|| "upstream_unreachable: connecting to 10.1.0.1:8080: connection refused".into()),
        took_ms: ok.then_some(3.0),
        by: "aws-1-gw-0".into(),
    }
}

#[test]
fn a_failing_proof_fails_the_check_naming_service_source_and_target() {
    let mut f = healthy();
    let text = report(&evaluate(&f));
    assert!(text.contains("ok    proof      2 service ports proven reachable"), "{text}");
    if let Some(Docs { proofs: Ok(p), .. }) = &mut f.docs {
        p.proofs[0] = proof(false);
        p.failing = 1;
    }
    let findings = evaluate(&f);
    let failed: Vec<_> = findings.iter().filter(|x| x.result == Verdict::Fail).collect();
    assert_eq!(failed.len(), 1, "{findings:?}");
    assert_eq!(
        failed[0].message,
        "prod/web:80 from aws-1 through gcp-1: upstream_unreachable: connecting to 10.1.0.1:8080: connection refused (5s ago, by aws-1-gw-0)"
    );
}
