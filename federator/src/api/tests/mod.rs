//! In-process API tests: a real `State` over an `EmbeddedStore` in a temp dir, a hand-made
//! catalog, and the router driven with `tower::ServiceExt::oneshot`.

mod events;
mod policies;
mod push;
mod reads;
mod routing;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use prometheus_client::registry::Registry;
use serde_json::Value;
use skybridge_api::catalog::{
    ClusterExport, ClusterInfo, Conflict, Endpoint, GlobalCatalog, GlobalService, PortSpec, Provenance,
};
use skybridge_api::model::{Cloud, ClusterId, Protocol, ServiceKey};
use tempfile::TempDir;
use tower::ServiceExt;

use crate::core::SourceStatus;
use crate::state::{PeerReport, State};
use crate::store::embedded::EmbeddedStore;
use crate::store::{AnyStore, GatewayRecord};

pub(super) const TOKEN: &str = "s3cret-token";

pub(super) struct Fixture {
    pub state: Arc<State>,
    pub ready: Arc<AtomicBool>,
    pub app: Router,
    _dir: TempDir,
}

pub(super) fn cluster(id: &str) -> ClusterId {
    ClusterId::new(id).unwrap()
}

pub(super) fn key(ns: &str, name: &str) -> ServiceKey {
    ServiceKey::new(ns, name).unwrap()
}

fn ep(addr: &str, zone: Option<&str>, ready: bool) -> Endpoint {
    Endpoint { address: addr.parse().unwrap(), zone: zone.map(Into::into), ready }
}

fn export(at: u64, source: &str, stale_since: Option<u64>, endpoints: Vec<(u16, Vec<Endpoint>)>) -> ClusterExport {
    ClusterExport {
        exported_at: at,
        endpoints: endpoints.into_iter().map(|(p, e)| (p, e.into())).collect(),
        provenance: Provenance { source: source.into(), observed_at: 5_000, stale_since },
    }
}

/// Two clusters; `prod/payments` in both (gcp-1's data stale), `prod/web` in both with a
/// conflict, `dev/api` in aws-1 only with two ports on one pod.
pub(super) fn catalog() -> GlobalCatalog {
    let payments = GlobalService {
        ports: vec![PortSpec { port: 443, protocol: Protocol::Tls }],
        clusters: BTreeMap::from([
            (
                cluster("aws-1"),
                export(
                    1_000,
                    "aws",
                    None,
                    vec![(
                        443,
                        vec![ep("10.0.0.2:8443", Some("use1-az2"), false), ep("10.0.0.1:8443", Some("use1-az1"), true)],
                    )],
                ),
            ),
            (cluster("gcp-1"), export(2_000, "gcp", Some(6_000), vec![(443, vec![ep("10.1.0.1:8443", None, true)])])),
        ]),
        conflicts: vec![],
    };
    let web = GlobalService {
        ports: vec![PortSpec { port: 80, protocol: Protocol::Http }],
        clusters: BTreeMap::from([
            (cluster("aws-1"), export(1_000, "aws", None, vec![(80, vec![ep("10.0.0.3:8080", None, true)])])),
            (cluster("gcp-1"), export(3_000, "gcp-ok", None, vec![])),
        ]),
        conflicts: vec![Conflict {
            cluster: cluster("gcp-1"),
            winner: cluster("aws-1"),
            reason: "port 80: protocol tcp differs from http".into(),
        }],
    };
    let api = GlobalService {
        ports: vec![
            PortSpec { port: 8080, protocol: Protocol::Http },
            PortSpec { port: 9090, protocol: Protocol::Tcp },
        ],
        clusters: BTreeMap::from([(
            cluster("aws-1"),
            export(
                1_500,
                "aws",
                None,
                vec![(8080, vec![ep("10.0.0.4:8080", None, true)]), (9090, vec![ep("10.0.0.4:9090", None, true)])],
            ),
        )]),
        conflicts: vec![],
    };
    GlobalCatalog {
        version: 7,
        digest: 0,
        clusters: BTreeMap::from([
            (
                cluster("aws-1"),
                ClusterInfo {
                    id: cluster("aws-1"),
                    cloud: Cloud::Aws,
                    region: "us-east-1".into(),
                    network: Some("vpc-1".into()),
                },
            ),
            (
                cluster("gcp-1"),
                ClusterInfo { id: cluster("gcp-1"), cloud: Cloud::Gcp, region: "europe-west1".into(), network: None },
            ),
        ]),
        services: BTreeMap::from([
            (key("prod", "payments"), payments),
            (key("prod", "web"), web),
            (key("dev", "api"), api),
        ]),
    }
}

fn gateway(cluster_id: &str, instance: &str) -> GatewayRecord {
    GatewayRecord {
        cluster: cluster(cluster_id),
        instance: instance.into(),
        version: "0.1.0".into(),
        tunnel_addresses: vec![format!("{instance}.example:4433")],
        last_seen: 9_000,
        acked_version: 7,
    }
}

/// A router over the test state; `token` is the configured write token.
pub(super) fn fixture(token: Option<&str>) -> Fixture {
    fixture_with(token.map_or(super::policy::WriteToken::Off, |t| super::policy::WriteToken::Fixed(t.into())))
}

/// [`fixture`] with the write token from `token`.
pub(super) fn fixture_with(token: super::policy::WriteToken) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store.redb"), 100).unwrap();
    let gateways = vec![gateway("aws-1", "gw-a"), gateway("aws-1", "gw-b"), gateway("gcp-1", "gw-c")];
    let state = Arc::new(State::new(
        Arc::new(catalog()),
        BTreeMap::new(),
        gateways,
        Arc::new(AnyStore::Embedded(store)),
        crate::state::StateLimits { concurrent_snapshots: 4, catalog_history: 8 },
        crate::state::Identity { name: "fed-0".into(), started_at: 1_000, single_node: true },
    ));
    for (c, i) in [("aws-1", "gw-a"), ("gcp-1", "gw-c")] {
        state.update_local((cluster(c), i.into()), false, |g| {
            g.connected = true;
            g.connected_since = Some(8_000);
            g.cloud = if c == "aws-1" { "aws" } else { "gcp" }.into();
        });
    }
    state.update_gateway((cluster("gcp-1"), "gw-c".into()), false, |g| {
        g.nacks = 1;
        g.last_nack = Some("version 6: bad route".into());
        g.last_report = Some(8_500);
    });
    let report = |to: &str, rtt_ms, rank_rtt_ms, state: &str| PeerReport {
        to: cluster(to),
        rtt_ms,
        rank_rtt_ms,
        state: state.into(),
        transport: "quic".into(),
        transport_for_s: None,
    };
    // aws-1 reaches gcp-1 over the TLS-over-TCP fallback, for 5 minutes now.
    let on_tcp = PeerReport {
        transport: "tcp".into(),
        transport_for_s: Some(300),
        ..report("gcp-1", Some(12.5), Some(12.0), "healthy")
    };
    state.report_latency(&cluster("aws-1"), "gw-a", vec![on_tcp]);
    state.report_latency(&cluster("gcp-1"), "gw-c", vec![report("aws-1", None, None, "down")]);
    state.set_sources(BTreeMap::from([
        (
            "aws".to_owned(),
            SourceStatus { kind: "static".into(), last_success: Some(5_000), services: 3, ..Default::default() },
        ),
        (
            "gcp".to_owned(),
            SourceStatus {
                kind: "static".into(),
                last_success: Some(5_000),
                consecutive_failures: 2,
                total_failures: 2,
                last_error: Some("file missing".into()),
                stale_since: Some(6_000),
                services: 1,
                ..Default::default()
            },
        ),
    ]));
    // The federator's own metrics, as app.rs registers them; the catalog gauge set as the
    // catalog would set it.
    let mut registry = Registry::default();
    let metrics = crate::metrics::Metrics::register(&mut registry);
    metrics.catalog_version.set(7);
    let ready = Arc::new(AtomicBool::new(true));
    let app = super::router(state.clone(), Arc::new(registry), ready.clone(), token, "test.skybridge");
    Fixture { state, ready, app, _dir: dir }
}

/// One response, body collected.
pub(super) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (panics, showing the body, if it is not).
    pub(super) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub(super) async fn call(app: &Router, req: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec();
    Reply { status, headers, body }
}

pub(super) async fn get(app: &Router, uri: &str) -> Reply {
    call(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

/// A write with an optional `Authorization` header value.
pub(super) async fn write(app: &Router, method: Method, uri: &str, auth: Option<&str>, body: &str) -> Reply {
    let mut req = Request::builder().method(method).uri(uri).header(header::CONTENT_TYPE, "application/json");
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    call(app, req.body(Body::from(body.to_owned())).unwrap()).await
}

/// Asserts a JSON error response with `status` whose `field` is `field`; returns the message.
pub(super) fn assert_error(r: &Reply, status: StatusCode, field: Option<&str>) -> String {
    assert_eq!(r.status, status, "body: {}", r.text());
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/json", "body: {}", r.text());
    let v = r.json();
    assert_eq!(v["field"].as_str(), field, "body: {v}");
    let obj = v.as_object().unwrap();
    assert!(obj.keys().all(|k| k == "error" || k == "field"), "unexpected keys: {v}");
    v["error"].as_str().expect("error is a string").to_owned()
}
