//! Read endpoints: ops, clusters, gateways, services, latency, sources, fallbacks, OpenAPI.

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};

use super::{assert_error, call, fixture, get};

#[tokio::test]
async fn healthz_and_readyz() {
    let f = fixture(None);
    let r = get(&f.app, "/healthz").await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "ok"));
    let r = get(&f.app, "/readyz").await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "ok"));
    f.ready.store(false, Ordering::Release);
    let r = get(&f.app, "/readyz").await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, None);
}

#[tokio::test]
async fn metrics_render_the_registry() {
    let f = fixture(None);
    let r = get(&f.app, "/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = r.text();
    // The registry handed to the router is what /metrics serves: the real families, values
    // included, and no others.
    assert!(
        text.contains("# TYPE skybridge_federator_catalog_version gauge\nskybridge_federator_catalog_version 7\n"),
        "{text}"
    );
    assert!(text.contains("# TYPE skybridge_federator_merge_seconds histogram"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[tokio::test]
async fn clusters_come_with_gateway_counts() {
    let f = fixture(None);
    let r = get(&f.app, "/api/v1/clusters").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({
            "catalog_version": 7,
            "clusters": [
                {"id": "aws-1", "cloud": "aws", "region": "us-east-1", "network": "vpc-1",
                 "gateways": {"total": 2, "connected": 1, "disconnected": 1}},
                {"id": "gcp-1", "cloud": "gcp", "region": "europe-west1", "network": null,
                 "gateways": {"total": 1, "connected": 1, "disconnected": 0}},
            ]
        })
    );
}

#[tokio::test]
async fn gateways_list_every_replica() {
    let f = fixture(None);
    let v = get(&f.app, "/api/v1/gateways").await.json();
    let gws = v["gateways"].as_array().unwrap();
    let names: Vec<_> = gws.iter().map(|g| format!("{}/{}", g["cluster"], g["instance"])).collect();
    assert_eq!(names, [r#""aws-1"/"gw-a""#, r#""aws-1"/"gw-b""#, r#""gcp-1"/"gw-c""#]);
    assert_eq!(
        gws[2],
        json!({
            "cluster": "gcp-1", "instance": "gw-c", "cloud": "gcp", "region": "", "version": "0.1.0",
            "tunnel_addresses": ["gw-c.example:4433"], "connected": true, "connected_since": 8000,
            "last_report": 8500, "last_seen": 9000, "acked_version": 7, "nacks": 1,
            "last_nack": "version 6: bad route", "federator": "fed-0",
        })
    );
    assert_eq!(gws[1]["connected"], false);
    assert_eq!(gws[1]["connected_since"], Value::Null);
}

fn names(v: &Value) -> Vec<String> {
    v["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{}/{}", s["namespace"].as_str().unwrap(), s["name"].as_str().unwrap()))
        .collect()
}

#[tokio::test]
async fn services_list_with_counts() {
    let f = fixture(None);
    let v = get(&f.app, "/api/v1/services").await.json();
    assert_eq!(v["catalog_version"], 7);
    assert_eq!(names(&v), ["dev/api", "prod/payments", "prod/web"]);
    assert_eq!(
        v["services"][1],
        json!({
            "namespace": "prod", "name": "payments", "fqdn": "payments.prod.svc.clusterset.local",
            "ports": [{"port": 443, "protocol": "tls"}],
            "clusters": [
                {"cluster": "aws-1", "ready": 1, "total": 2, "stale": false},
                {"cluster": "gcp-1", "ready": 1, "total": 1, "stale": true},
            ],
            "has_conflicts": false, "stale": true,
        })
    );
    // One pod serving two ports is one endpoint.
    assert_eq!(v["services"][0]["clusters"], json!([{"cluster": "aws-1", "ready": 1, "total": 1, "stale": false}]));
    assert_eq!(v["services"][2]["has_conflicts"], true);
}

#[tokio::test]
async fn services_filters_combine() {
    let f = fixture(None);
    let cases: [(&str, &[&str]); 9] = [
        ("namespace=prod", &["prod/payments", "prod/web"]),
        ("namespace=staging", &[]),
        ("cluster=gcp-1", &["prod/payments", "prod/web"]),
        ("conflicts=true", &["prod/web"]),
        ("conflicts=false", &["dev/api", "prod/payments"]),
        ("stale=true", &["prod/payments"]),
        ("stale=false", &["dev/api", "prod/web"]),
        ("namespace=prod&stale=false&conflicts=true", &["prod/web"]),
        ("cluster=aws-1&namespace=dev", &["dev/api"]),
    ];
    for (q, want) in cases {
        let r = get(&f.app, &format!("/api/v1/services?{q}")).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.text());
        assert_eq!(names(&r.json()), want, "{q}");
    }
}

#[tokio::test]
async fn services_bad_filters_name_the_parameter() {
    let f = fixture(None);
    for (q, field) in [
        ("namespace=Prod", "namespace"),
        ("namespace=", "namespace"),
        ("cluster=-x", "cluster"),
        ("cluster=a_b", "cluster"),
        ("conflicts=yes", "conflicts"),
        ("stale=1", "stale"),
        ("colour=red", "colour"),
        ("namespace=prod&namespace=dev", "namespace"),
    ] {
        let r = get(&f.app, &format!("/api/v1/services?{q}")).await;
        let msg = assert_error(&r, StatusCode::BAD_REQUEST, Some(field));
        assert!(msg.contains(field), "{q}: {msg}");
    }
}

#[tokio::test]
async fn service_detail_shows_endpoints_provenance_conflicts_and_policy() {
    let f = fixture(None);
    let v = get(&f.app, "/api/v1/services/prod/payments").await.json();
    assert_eq!(v["fqdn"], "payments.prod.svc.clusterset.local");
    assert_eq!(v["catalog_version"], 7);
    assert_eq!(v["policy"], Value::Null);
    let aws = &v["clusters"][0];
    assert_eq!(aws["cluster"], "aws-1");
    assert_eq!(aws["exported_at"], 1000);
    assert_eq!(
        aws["endpoints"],
        json!([
            {"port": 443, "address": "10.0.0.1:8443", "zone": "use1-az1", "ready": true},
            {"port": 443, "address": "10.0.0.2:8443", "zone": "use1-az2", "ready": false},
        ])
    );
    assert_eq!(
        aws["provenance"],
        json!({"source": "aws", "observed_at": 5000, "stale_since": null, "stale_for_ms": null})
    );
    let gcp = &v["clusters"][1]["provenance"];
    assert_eq!(gcp["stale_since"], 6000);
    // now - observed_at: the fixture's instants are in 1970, so this is about the current time.
    let age = gcp["stale_for_ms"].as_u64().unwrap();
    assert!(age > 1_000_000_000_000, "{age}");
    assert_eq!(v["stale"], true);

    let web = get(&f.app, "/api/v1/services/prod/web").await.json();
    assert_eq!(web["has_conflicts"], true);
    assert_eq!(
        web["conflicts"],
        json!([{"cluster": "gcp-1", "winner": "aws-1", "reason": "port 80: protocol tcp differs from http"}])
    );
    assert_eq!(web["clusters"][1]["endpoints"], json!([]));
}

#[tokio::test]
async fn service_detail_errors() {
    let f = fixture(None);
    let msg = assert_error(&get(&f.app, "/api/v1/services/prod/nope").await, StatusCode::NOT_FOUND, None);
    assert!(msg.contains("prod/nope"), "{msg}");
    assert_error(&get(&f.app, "/api/v1/services/Prod/web").await, StatusCode::BAD_REQUEST, Some("namespace"));
    assert_error(&get(&f.app, "/api/v1/services/prod/web_1").await, StatusCode::BAD_REQUEST, Some("name"));
    let long = "a".repeat(64);
    assert_error(&get(&f.app, &format!("/api/v1/services/prod/{long}")).await, StatusCode::BAD_REQUEST, Some("name"));
}

#[tokio::test]
async fn latency_matrix() {
    let f = fixture(None);
    let v = get(&f.app, "/api/v1/latency").await.json();
    assert_eq!(v["clusters"], json!(["aws-1", "gcp-1"]));
    let paths = v["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 2);
    assert_eq!(paths[0]["from"], "aws-1");
    assert_eq!(paths[0]["to"], "gcp-1");
    assert_eq!(paths[0]["rtt_ms"], 12.5);
    assert_eq!(paths[0]["rank_rtt_ms"], 12.0);
    assert_eq!(paths[0]["state"], "healthy");
    assert_eq!(paths[0]["by"], "gw-a");
    assert_eq!(paths[0]["transport"], "tcp");
    assert_eq!(paths[0]["transport_for_s"], 300);
    assert_eq!(paths[1]["transport"], "quic");
    assert_eq!(paths[1]["transport_for_s"], Value::Null);
    assert!(paths[0]["reported_at"].as_u64().unwrap() > 0);
    assert_eq!(paths[1]["rtt_ms"], Value::Null);
    assert_eq!(paths[1]["rank_rtt_ms"], Value::Null);
    assert_eq!(paths[1]["state"], "down");
    assert_eq!(v["routes"].as_array().unwrap().len(), 6, "3 services from 2 clusters; see routing.rs");
}

#[tokio::test]
async fn sources_status() {
    let f = fixture(None);
    let v = get(&f.app, "/api/v1/sources").await.json();
    assert_eq!(v["sources"]["aws"]["services"], 3);
    assert_eq!(v["sources"]["aws"]["stale_since"], Value::Null);
    assert_eq!(v["sources"]["gcp"]["stale_since"], 6000);
    assert_eq!(v["sources"]["gcp"]["last_error"], "file missing");
    assert_eq!(v["sources"]["gcp"]["consecutive_failures"], 2);
}

#[tokio::test]
async fn unknown_paths_and_methods_are_json_errors() {
    let f = fixture(None);
    let msg = assert_error(&get(&f.app, "/api/v1/nope").await, StatusCode::NOT_FOUND, None);
    assert!(msg.contains("/api/v1/nope"), "{msg}");
    let r = call(&f.app, Request::post("/api/v1/clusters").body(Body::empty()).unwrap()).await;
    assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, None);
}

/// The document must describe exactly what the router serves: every documented operation is
/// routed, and the expected set of operations is documented.
#[tokio::test]
async fn openapi_document_matches_the_router() {
    let f = fixture(None);
    let r = get(&f.app, "/api/v1/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys().filter(|m| *m != "parameters") {
            ops.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    ops.sort();
    let mut want = vec![
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "GET /api/v1/openapi.json",
        "GET /api/v1/clusters",
        "GET /api/v1/gateways",
        "GET /api/v1/services",
        "GET /api/v1/services/{namespace}/{name}",
        "GET /api/v1/latency",
        "GET /api/v1/traffic",
        "GET /api/v1/proofs",
        "GET /api/v1/whatif",
        "GET /api/v1/sources",
        "POST /api/v1/sources/{id}/confirm-removal",
        "GET /api/v1/federators",
        "GET /api/v1/status",
        "GET /api/v1/events",
        "GET /api/v1/events/stream",
        "GET /api/v1/policies",
        "GET /api/v1/policies/{namespace}/{name}",
        "PUT /api/v1/policies/{namespace}/{name}",
        "DELETE /api/v1/policies/{namespace}/{name}",
    ];
    want.sort();
    assert_eq!(ops, want);
    for op in &ops {
        let (method, path) = op.split_once(' ').unwrap();
        if path.ends_with("/stream") {
            continue; // endless; covered by the SSE tests
        }
        let uri = path.replace("{namespace}", "prod").replace("{name}", "payments");
        let req = Request::builder().method(Method::from_bytes(method.as_bytes()).unwrap()).uri(&uri);
        let r = call(&f.app, req.body(Body::empty()).unwrap()).await;
        let routed = !r.text().contains("no such endpoint") && r.status != StatusCode::METHOD_NOT_ALLOWED;
        assert!(routed, "{op} is documented but not routed: {} {}", r.status, r.text());
    }
    // Writes declare the bearer scheme; DTO schemas are generated.
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert!(doc["paths"]["/api/v1/policies/{namespace}/{name}"]["put"]["security"].is_array());
    for schema in [
        "ErrorBody",
        "PolicyDto",
        "ServiceDetail",
        "ClustersResponse",
        "LatencyResponse",
        "ServiceRoute",
        "WhatIfResponse",
        "EventDto",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "schema {schema} missing");
    }
    let params: Vec<_> = doc["paths"]["/api/v1/services"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(params, ["namespace", "cluster", "conflicts", "stale"]);
    let params = |path: &str| -> Vec<(String, bool)> {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap().to_owned(), p["required"] == true))
            .collect()
    };
    let optional = |n: &str| (n.to_owned(), false);
    assert_eq!(params("/api/v1/latency"), [optional("service"), optional("from")]);
    assert_eq!(params("/api/v1/whatif"), [("down".to_owned(), true), optional("service"), optional("from")]);
}

#[test]
fn stale_age_is_now_minus_observed_at() {
    let detail = crate::api::view::service_detail(
        &super::catalog(),
        &super::key("prod", "payments"),
        None,
        &Default::default(),
        10_000,
    )
    .unwrap();
    let gcp = &detail.clusters[1].provenance;
    assert_eq!((gcp.stale_since, gcp.stale_for_ms), (Some(6_000), Some(5_000)));
    assert_eq!(detail.clusters[0].provenance.stale_for_ms, None);
    assert!(
        crate::api::view::service_detail(
            &super::catalog(),
            &super::key("prod", "nope"),
            None,
            &Default::default(),
            10_000
        )
        .is_none()
    );
}
