use std::collections::BTreeMap;

use skybridge_api::catalog::{Endpoint, Export, GlobalCatalog, PortExport, SourceSnapshot, apply, diff};
use skybridge_api::model::{Cloud, ClusterId, Protocol, ServiceKey};

use super::*;

fn id(s: &str) -> ClusterId {
    ClusterId::new(s).unwrap()
}

fn key(s: &str) -> ServiceKey {
    s.parse().unwrap()
}

fn ep(a: &str) -> Endpoint {
    Endpoint { address: a.parse().unwrap(), zone: None, ready: true }
}

fn export(cluster: &str, at: u64, ports: &[(u16, Protocol, &[&str])]) -> Export {
    Export {
        cluster: id(cluster),
        exported_at: at,
        ports: ports
            .iter()
            .map(|(p, proto, eps)| PortExport {
                port: *p,
                protocol: *proto,
                endpoints: eps.iter().map(|e| ep(e)).collect(),
            })
            .collect(),
    }
}

fn snapshot(services: &[(&str, Vec<Export>)]) -> SourceSnapshot {
    let clusters = services
        .iter()
        .flat_map(|(_, es)| es.iter().map(|e| e.cluster.clone()))
        .map(|c| (c.clone(), ClusterInfo { id: c, cloud: Cloud::Other, region: "r".into(), network: None }))
        .collect::<BTreeMap<_, _>>()
        .into_values()
        .collect();
    SourceSnapshot {
        clusters,
        services: services.iter().map(|(k, e)| (key(k), e.clone())).collect(),
        ..Default::default()
    }
}

fn fresh(s: SourceSnapshot, at: u64) -> SourceInput {
    SourceInput {
        snapshot: std::sync::Arc::new(s),
        synced_at: at,
        failing_since: None,
        failing_clusters: Default::default(),
    }
}

/// A service's routing content: everything but `observed_at`, which moves with every sync.
fn content(svc: &skybridge_api::catalog::GlobalService) -> skybridge_api::catalog::GlobalService {
    let mut s = svc.clone();
    for ce in s.clusters.values_mut() {
        ce.provenance.observed_at = 0;
    }
    s
}

const CFG: MergeConfig = MergeConfig { stale_timeout_ms: Some(60_000) };

fn sources(list: Vec<(&str, SourceInput)>) -> BTreeMap<SourceId, SourceInput> {
    list.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn web(cluster: &str, at: u64, addr: &str) -> Export {
    export(cluster, at, &[(80, Protocol::Http, &[addr])])
}

#[test]
fn single_source_becomes_version_one_with_provenance() {
    let src = sources(vec![("aws", fresh(snapshot(&[("prod/web", vec![web("aws-1", 10, "10.0.0.1:8080")])]), 100))]);
    let c = merge(&GlobalCatalog::default(), &src, 100, &CFG);
    assert_eq!(c.version, 1);
    let svc = &c.services[&key("prod/web")];
    assert_eq!(svc.ports, vec![PortSpec { port: 80, protocol: Protocol::Http }]);
    let ce = &svc.clusters[&id("aws-1")];
    assert_eq!(ce.endpoints[&80], [ep("10.0.0.1:8080")].into());
    assert_eq!(ce.provenance, Provenance { source: "aws".into(), observed_at: 100, stale_since: None });
    assert!(svc.conflicts.is_empty());
    assert_eq!(c.clusters.len(), 1);
}

#[test]
fn idempotent_and_ignores_sync_time_only_changes() {
    let snap = snapshot(&[("prod/web", vec![web("aws-1", 10, "10.0.0.1:8080")])]);
    let c1 = merge(&GlobalCatalog::default(), &sources(vec![("aws", fresh(snap.clone(), 100))]), 100, &CFG);
    let c2 = merge(&c1, &sources(vec![("aws", fresh(snap.clone(), 100))]), 200, &CFG);
    assert_eq!((c2.version, c2.digest), (c1.version, c1.digest));
    // A later sync that saw the same thing does not make a new version.
    let c3 = merge(&c2, &sources(vec![("aws", fresh(snap, 5_000))]), 5_000, &CFG);
    assert_eq!((c3.version, c3.digest), (c1.version, c1.digest));
    assert_eq!(c3.services[&key("prod/web")].clusters[&id("aws-1")].provenance.observed_at, 5_000);
}

#[test]
fn order_of_exports_and_endpoints_does_not_matter() {
    let a = snapshot(&[
        ("prod/web", vec![web("aws-1", 10, "10.0.0.1:80"), web("aws-2", 20, "10.0.0.2:80")]),
        ("prod/db", vec![export("aws-1", 5, &[(5432, Protocol::Tcp, &["10.0.1.1:5432", "10.0.1.2:5432"])])]),
    ]);
    let b = snapshot(&[
        (
            "prod/db",
            vec![export("aws-1", 5, &[(5432, Protocol::Tcp, &["10.0.1.2:5432", "10.0.1.1:5432", "10.0.1.2:5432"])])],
        ),
        ("prod/web", vec![web("aws-2", 20, "10.0.0.2:80"), web("aws-1", 10, "10.0.0.1:80")]),
    ]);
    let ca = merge(&GlobalCatalog::default(), &sources(vec![("s", fresh(a, 1))]), 1, &CFG);
    let cb = merge(&GlobalCatalog::default(), &sources(vec![("s", fresh(b, 1))]), 1, &CFG);
    assert_eq!(ca, cb);
    assert_eq!(ca.services[&key("prod/db")].clusters[&id("aws-1")].endpoints[&5432].len(), 2, "duplicates folded");
}

#[test]
fn oldest_export_wins_and_others_get_a_conflict() {
    let snap = snapshot(&[(
        "prod/api",
        vec![
            export("gcp-1", 100, &[(443, Protocol::Tls, &["10.1.0.1:8443"])]),
            export("aws-1", 50, &[(443, Protocol::Http, &["10.0.0.1:8080"])]),
            export(
                "azure-1",
                70,
                &[(443, Protocol::Http, &["10.2.0.1:8080"]), (9090, Protocol::Tcp, &["10.2.0.1:9090"])],
            ),
        ],
    )]);
    let c = merge(&GlobalCatalog::default(), &sources(vec![("s", fresh(snap, 1))]), 1, &CFG);
    let svc = &c.services[&key("prod/api")];
    assert_eq!(svc.ports, vec![PortSpec { port: 443, protocol: Protocol::Http }], "aws-1 is oldest");
    let losers: Vec<_> = svc.conflicts.iter().map(|c| c.cluster.as_str()).collect();
    assert_eq!(losers, vec!["azure-1", "gcp-1"]);
    assert!(svc.conflicts.iter().all(|c| c.winner == id("aws-1")));
    assert!(
        svc.conflicts[1].reason.contains("443/tls") && svc.conflicts[1].reason.contains("443/http"),
        "{:?}",
        svc.conflicts
    );
    // gcp-1 disagrees on 443's protocol: none of its endpoints are routable.
    assert!(svc.clusters[&id("gcp-1")].endpoints.is_empty());
    // azure-1 agrees on 443 and adds 9090: 443 endpoints kept, 9090 dropped.
    let az = &svc.clusters[&id("azure-1")].endpoints;
    assert_eq!(az.keys().copied().collect::<Vec<_>>(), vec![443]);
}

#[test]
fn tie_on_export_time_goes_to_lower_cluster_id() {
    let snap = snapshot(&[(
        "prod/api",
        vec![export("b-1", 5, &[(80, Protocol::Tcp, &[])]), export("a-1", 5, &[(80, Protocol::Http, &[])])],
    )]);
    let c = merge(&GlobalCatalog::default(), &sources(vec![("s", fresh(snap, 1))]), 1, &CFG);
    assert_eq!(c.services[&key("prod/api")].conflicts[0].winner, id("a-1"));
}

#[test]
fn failing_source_keeps_data_stale_then_expires_without_touching_others() {
    let aws = snapshot(&[("prod/web", vec![web("aws-1", 10, "10.0.0.1:80")])]);
    let gcp = snapshot(&[("prod/db", vec![export("gcp-1", 10, &[(5432, Protocol::Tcp, &["10.1.0.1:5432"])])])]);
    let ok = merge(
        &GlobalCatalog::default(),
        &sources(vec![("aws", fresh(aws.clone(), 1_000)), ("gcp", fresh(gcp.clone(), 1_000))]),
        1_000,
        &CFG,
    );

    let failing = SourceInput {
        snapshot: std::sync::Arc::new(aws),
        synced_at: 1_000,
        failing_since: Some(2_000),
        failing_clusters: Default::default(),
    };
    let src = sources(vec![("aws", failing), ("gcp", fresh(gcp, 3_000))]);
    let stale = merge(&ok, &src, 3_000, &CFG);
    assert_eq!(stale.version, ok.version + 1, "becoming stale is a visible change");
    let p = &stale.services[&key("prod/web")].clusters[&id("aws-1")].provenance;
    assert_eq!(p.stale_since, Some(2_000));
    assert_eq!(
        stale.services[&key("prod/web")].clusters[&id("aws-1")].endpoints,
        ok.services[&key("prod/web")].clusters[&id("aws-1")].endpoints
    );
    assert_eq!(content(&stale.services[&key("prod/db")]), content(&ok.services[&key("prod/db")]), "gcp untouched");

    // Ageing while stale changes nothing...
    let older = merge(&stale, &src, 50_000, &CFG);
    assert_eq!(older.version, stale.version);
    // ...until the stale timeout passes: then aws's data goes, gcp's stays.
    let gone = merge(&older, &src, 1_000 + 60_001, &CFG);
    assert!(!gone.services.contains_key(&key("prod/web")));
    assert!(!gone.clusters.contains_key(&id("aws-1")));
    assert_eq!(content(&gone.services[&key("prod/db")]), content(&ok.services[&key("prod/db")]));
    assert_eq!(gone.version, older.version + 1);

    // Without a timeout stale data is kept forever.
    let forever = merge(&older, &src, u64::MAX / 2, &MergeConfig { stale_timeout_ms: None });
    assert!(forever.services.contains_key(&key("prod/web")));
}

#[test]
fn a_failing_fleet_member_goes_stale_and_expires_while_the_others_sync() {
    // One fleet source with two members; gke-b fails from 2_000 while gke-a keeps syncing.
    let fleet = snapshot(&[
        ("prod/web", vec![web("gke-a", 10, "10.0.0.1:80"), web("gke-b", 20, "10.2.0.1:80")]),
        ("prod/db", vec![export("gke-b", 10, &[(5432, Protocol::Tcp, &["10.2.0.2:5432"])])]),
    ]);
    let ok = merge(&GlobalCatalog::default(), &sources(vec![("fleet", fresh(fleet.clone(), 1_000))]), 1_000, &CFG);
    let mut degraded = fresh(fleet, 3_000);
    degraded.failing_clusters.insert(id("gke-b"), 2_000);
    let src = sources(vec![("fleet", degraded)]);

    let stale = merge(&ok, &src, 3_000, &CFG);
    assert_eq!(stale.version, ok.version + 1);
    let web_svc = &stale.services[&key("prod/web")];
    assert_eq!(web_svc.clusters[&id("gke-b")].provenance.stale_since, Some(2_000));
    assert_eq!(web_svc.clusters[&id("gke-a")].provenance.stale_since, None, "the healthy member is fresh");
    assert_eq!(
        web_svc.clusters[&id("gke-b")].endpoints,
        ok.services[&key("prod/web")].clusters[&id("gke-b")].endpoints
    );
    assert_eq!(merge(&stale, &src, 50_000, &CFG).version, stale.version, "ageing alone changes nothing");

    // 60 s after gke-b's first failure its exports go; gke-a's stay, and the source is not stale.
    let gone = merge(&stale, &src, 2_000 + 60_001, &CFG);
    assert!(!gone.services.contains_key(&key("prod/db")));
    assert_eq!(gone.services[&key("prod/web")].clusters.keys().collect::<Vec<_>>(), vec![&id("gke-a")]);
    assert_eq!(gone.services[&key("prod/web")].clusters[&id("gke-a")].provenance.stale_since, None);
    assert!(
        merge(&stale, &src, u64::MAX / 2, &MergeConfig { stale_timeout_ms: None })
            .services
            .contains_key(&key("prod/db"))
    );
}

#[test]
fn explicit_removal_removes() {
    let with = snapshot(&[
        ("prod/web", vec![web("aws-1", 10, "10.0.0.1:80")]),
        ("prod/old", vec![web("aws-1", 10, "10.0.0.9:80")]),
    ]);
    let without = snapshot(&[("prod/web", vec![web("aws-1", 10, "10.0.0.1:80")])]);
    let c1 = merge(&GlobalCatalog::default(), &sources(vec![("aws", fresh(with, 1))]), 1, &CFG);
    let c2 = merge(&c1, &sources(vec![("aws", fresh(without, 2))]), 2, &CFG);
    assert!(!c2.services.contains_key(&key("prod/old")));
    assert_eq!(c2.version, 2);
}

#[test]
fn same_cluster_from_two_sources_prefers_fresh_then_newest() {
    let a = snapshot(&[("prod/web", vec![web("aws-1", 10, "10.0.0.1:80")])]);
    let b = snapshot(&[("prod/web", vec![web("aws-1", 10, "10.0.0.2:80")])]);
    let pick = |src: &BTreeMap<SourceId, SourceInput>| {
        let c = merge(&GlobalCatalog::default(), src, 10_000, &CFG);
        c.services[&key("prod/web")].clusters[&id("aws-1")].provenance.source.clone()
    };
    assert_eq!(pick(&sources(vec![("a", fresh(a.clone(), 5)), ("b", fresh(b.clone(), 6))])), "b", "newest");
    assert_eq!(pick(&sources(vec![("a", fresh(a.clone(), 5)), ("b", fresh(b.clone(), 5))])), "a", "tie: lower id");
    let stale_b = SourceInput {
        snapshot: std::sync::Arc::new(b),
        synced_at: 9,
        failing_since: Some(9_000),
        failing_clusters: Default::default(),
    };
    assert_eq!(pick(&sources(vec![("a", fresh(a, 5)), ("b", stale_b)])), "a", "fresh beats newer but stale");
}

#[test]
fn delta_round_trips_and_is_proportional_to_the_change() {
    let many: Vec<(String, Vec<Export>)> = (0..1000)
        .map(|i| (format!("prod/svc-{i}"), vec![web("aws-1", 10, &format!("10.0.{}.{}:80", i / 200, i % 200))]))
        .collect();
    fn as_refs(v: &[(String, Vec<Export>)]) -> Vec<(&str, Vec<Export>)> {
        v.iter().map(|(k, e)| (k.as_str(), e.clone())).collect()
    }
    let s1 = snapshot(&as_refs(&many));
    let mut changed = many.clone();
    changed[7].1 = vec![web("aws-1", 10, "10.9.9.9:80")];
    changed.remove(500);
    let s2 = snapshot(&as_refs(&changed));
    let c1 = merge(&GlobalCatalog::default(), &sources(vec![("aws", fresh(s1, 1))]), 1, &CFG);
    let c2 = merge(&c1, &sources(vec![("aws", fresh(s2, 2))]), 2, &CFG);
    let d = diff(&c1, &c2);
    assert_eq!(d.services_upserted.len(), 1);
    assert_eq!(d.services_removed, vec![key("prod/svc-500")]);
    assert!(serde_json::to_vec(&d).unwrap().len() * 100 < serde_json::to_vec(&c2).unwrap().len());
    let applied = apply(&c1, &d).unwrap();
    assert_eq!((applied.version, applied.digest), (c2.version, c2.digest));
    assert!(applied.services.keys().eq(c2.services.keys()));
    assert!(applied.services.values().zip(c2.services.values()).all(|(a, b)| content(a) == content(b)));
    // A receiver at another version, or holding other content under the same version (a
    // federator that lost a version on restart), is told to take a snapshot.
    assert!(apply(&c2, &d).is_err());
    let mut drifted = c1.clone();
    drifted.services.remove(&key("prod/svc-1"));
    drifted.digest = skybridge_api::catalog::digest(&drifted);
    assert!(matches!(apply(&drifted, &d), Err(skybridge_api::catalog::DeltaError::DigestMismatch { .. })));
    // No change, empty delta.
    assert!(diff(&c2, &c2).is_empty());
}

#[test]
fn nothing_from_nothing_stays_version_zero() {
    let c = merge(&GlobalCatalog::default(), &BTreeMap::new(), 1, &CFG);
    assert_eq!(c.version, 0);
    let empty_source = sources(vec![("s", fresh(SourceSnapshot::default(), 1))]);
    assert_eq!(merge(&c, &empty_source, 2, &CFG).version, 0);
    let one = sources(vec![("s", fresh(snapshot(&[("prod/web", vec![web("aws-1", 1, "10.0.0.1:80")])]), 3))]);
    let v1 = merge(&c, &one, 3, &CFG);
    assert_eq!(v1.version, 1);
    // Emptied after having had data: that is a real version.
    assert_eq!(merge(&v1, &empty_source, 4, &CFG).version, 2);
}

#[test]
fn unchanged_endpoint_lists_are_shared_between_syncs_and_catalogs() {
    let two = |second: &str| {
        snapshot(&[
            (
                "prod/web",
                vec![export("aws-1", 1, &[(80, Protocol::Http, &["10.0.0.2:80", "10.0.0.1:80", "10.0.0.2:80"])])],
            ),
            ("prod/db", vec![export("aws-1", 1, &[(5432, Protocol::Tcp, &[second])])]),
        ])
    };
    let mut first = two("10.0.1.1:5432");
    share_endpoints(None, &mut first);
    let web1 = &first.services[&key("prod/web")][0].ports[0].endpoints;
    assert_eq!(**web1, [ep("10.0.0.1:80"), ep("10.0.0.2:80")], "sorted, one entry per address");

    let mut second = two("10.0.1.2:5432");
    share_endpoints(Some(&first), &mut second);
    let web2 = &second.services[&key("prod/web")][0].ports[0].endpoints;
    assert!(std::sync::Arc::ptr_eq(web1, web2), "an unchanged list is the previous sync's");
    let db = |s: &SourceSnapshot| s.services[&key("prod/db")][0].ports[0].endpoints.clone();
    assert!(!std::sync::Arc::ptr_eq(&db(&first), &db(&second)));
    assert_eq!(*db(&second), [ep("10.0.1.2:5432")]);

    let c = merge(&GlobalCatalog::default(), &sources(vec![("s", fresh(second.clone(), 1))]), 1, &CFG);
    let merged = &c.services[&key("prod/web")].clusters[&id("aws-1")].endpoints[&80];
    assert!(std::sync::Arc::ptr_eq(merged, web1), "the catalog points at the source's list");
}
