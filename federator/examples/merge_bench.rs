//! Merge benchmark: `cargo run --release -p skybridge-federator --example merge_bench [SERVICES]`.
//! Builds 3 sources (one cluster each) exporting SERVICES services with 10 endpoints, then
//! times a full merge from nothing, a no-op re-merge, and a one-service change with its delta.

use std::collections::BTreeMap;
use std::time::Instant;

use skybridge_api::catalog::{ClusterInfo, Endpoint, Export, GlobalCatalog, PortExport, SourceSnapshot, diff};
use skybridge_api::model::{Cloud, ClusterId, Protocol, ServiceKey};
use skybridge_federator::catalog::{MergeConfig, SourceInput, merge, share_endpoints};

fn source(cluster: &str, n: usize, octet: u8) -> SourceInput {
    let id = ClusterId::new(cluster).unwrap();
    let services = (0..n)
        .map(|i| {
            let endpoints = (0..10u16)
                .map(|e| Endpoint {
                    address: std::net::SocketAddr::from(([10, octet, (i / 250) as u8, (i % 250) as u8], 8000 + e)),
                    zone: None,
                    ready: true,
                })
                .collect();
            let export = Export {
                cluster: id.clone(),
                exported_at: 1,
                ports: vec![PortExport { port: 80, protocol: Protocol::Http, endpoints }],
            };
            (ServiceKey::new("prod", &format!("svc-{i}")).unwrap(), vec![export])
        })
        .collect();
    let clusters = vec![ClusterInfo { id, cloud: Cloud::Other, region: "r".into(), network: None }];
    SourceInput {
        snapshot: std::sync::Arc::new(SourceSnapshot { clusters, services, ..Default::default() }),
        synced_at: 1,
        failing_since: None,
        failing_clusters: Default::default(),
    }
}

fn main() {
    let n: usize = std::env::args().nth(1).map(|a| a.parse().unwrap()).unwrap_or(10_000);
    let mut sources: BTreeMap<String, SourceInput> =
        [("aws", "aws-1", 1u8), ("gcp", "gcp-1", 2), ("azure", "azure-1", 3)]
            .into_iter()
            .map(|(s, c, o)| (s.to_owned(), source(c, n, o)))
            .collect();
    let cfg = MergeConfig { stale_timeout_ms: Some(600_000) };

    let t = Instant::now();
    let c1 = merge(&GlobalCatalog::default(), &sources, 2, &cfg);
    let full = t.elapsed();
    let t = Instant::now();
    let c2 = merge(&c1, &sources, 3, &cfg);
    let noop = t.elapsed();
    assert_eq!(c2.version, c1.version);

    // A source re-reading an unchanged world: its fresh lists are swapped for the shared ones.
    let mut again = SourceSnapshot::clone(&sources["aws"].snapshot);
    for exports in again.services.values_mut() {
        exports[0].ports[0].endpoints = exports[0].ports[0].endpoints.to_vec().into();
    }
    let t = Instant::now();
    share_endpoints(Some(&sources["aws"].snapshot), &mut again);
    let share = t.elapsed();

    let aws = sources.get_mut("aws").unwrap();
    let first = std::sync::Arc::make_mut(&mut aws.snapshot).services.values_mut().next().unwrap();
    let eps = &mut first[0].ports[0].endpoints;
    *eps = eps[..eps.len() - 1].into();
    let t = Instant::now();
    let c3 = merge(&c2, &sources, 4, &cfg);
    let one = t.elapsed();
    let t = Instant::now();
    let d = diff(&c2, &c3);
    let diff_time = t.elapsed();
    let snapshot_bytes = serde_json::to_vec(&c3).unwrap().len();
    let delta_bytes = serde_json::to_vec(&d).unwrap().len();
    println!(
        "services={n} clusters=3 endpoints/export=10\nfull merge: {:.0} ms\nno-op merge: {:.0} ms\none-service change: merge {:.0} ms, diff {:.0} ms\nsharing an unchanged source's lists: {:.0} ms\nsnapshot {} bytes (JSON), delta {} bytes, {} upserted",
        full.as_secs_f64() * 1e3,
        noop.as_secs_f64() * 1e3,
        one.as_secs_f64() * 1e3,
        diff_time.as_secs_f64() * 1e3,
        share.as_secs_f64() * 1e3,
        snapshot_bytes,
        delta_bytes,
        d.services_upserted.len()
    );
}
