//! Route views: `routes` in `GET /api/v1/latency` and `GET /api/v1/whatif`.
//!
//! The fixture: aws-1 (gateways gw-a, gw-b) reports gcp-1 healthy at 12 ms (ranking RTT);
//! gcp-1 (gw-c) reports aws-1 down. prod/payments is hosted in both clusters, prod/web and
//! dev/api in aws-1 only.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{TOKEN, assert_error, fixture, get, write};

fn route_names(v: &Value) -> Vec<String> {
    v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{}/{}@{}", r["namespace"].as_str().unwrap(), r["name"].as_str().unwrap(), r["from"]))
        .collect()
}

#[tokio::test]
async fn latency_lists_every_services_route_from_every_gateway_cluster() {
    let f = fixture(None);
    let v = get(&f.app, "/api/v1/latency").await.json();
    assert_eq!(
        route_names(&v),
        [
            r#"dev/api@"aws-1""#,
            r#"dev/api@"gcp-1""#,
            r#"prod/payments@"aws-1""#,
            r#"prod/payments@"gcp-1""#,
            r#"prod/web@"aws-1""#,
            r#"prod/web@"gcp-1""#,
        ]
    );
    assert_eq!(
        v["routes"][2],
        json!({
            "namespace": "prod", "name": "payments", "from": "aws-1", "preferred": "aws-1",
            "shares": [{"cluster": "aws-1", "share": 1.0}], "order": ["aws-1", "gcp-1"], "expected_rtt_ms": 0.0,
        })
    );
    // gcp-1 sees aws-1 down: still the only place web runs, so the last resort, RTT unknown.
    assert_eq!(
        v["routes"][5],
        json!({
            "namespace": "prod", "name": "web", "from": "gcp-1", "preferred": "aws-1",
            "shares": [{"cluster": "aws-1", "share": 1.0}], "order": ["aws-1"], "expected_rtt_ms": null,
        })
    );
}

#[tokio::test]
async fn latency_routes_follow_policies_and_filters() {
    let f = fixture(Some(TOKEN));
    let body = r#"{"weights": {"aws-1": 70, "gcp-1": 30}}"#;
    let r = write(&f.app, Method::PUT, "/api/v1/policies/prod/payments", Some(&format!("Bearer {TOKEN}")), body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = get(&f.app, "/api/v1/latency?service=prod/payments&from=aws-1").await.json();
    assert_eq!(route_names(&v), [r#"prod/payments@"aws-1""#]);
    let route = &v["routes"][0];
    assert_eq!(route["shares"], json!([{"cluster": "aws-1", "share": 0.7}, {"cluster": "gcp-1", "share": 0.3}]));
    assert_eq!(route["expected_rtt_ms"], 3.6, "0.7 × 0 (local) + 0.3 × 12 ms");
    // The filters bound the routes only; the matrix stays whole.
    assert_eq!(v["paths"].as_array().unwrap().len(), 2);
    // From gcp-1, aws-1 is down: its weight moves to what is up.
    let v = get(&f.app, "/api/v1/latency?service=prod/payments&from=gcp-1").await.json();
    assert_eq!(v["routes"][0]["shares"], json!([{"cluster": "gcp-1", "share": 1.0}]));
    assert_eq!(route_names(&get(&f.app, "/api/v1/latency?from=azure-1").await.json()), Vec::<String>::new());
    assert_eq!(route_names(&get(&f.app, "/api/v1/latency?service=prod/nope").await.json()), Vec::<String>::new());
}

#[tokio::test]
async fn latency_bad_filters_name_the_parameter() {
    let f = fixture(None);
    for (q, field) in [
        ("service=payments", "service"),
        ("service=prod/Pay", "service"),
        ("from=AWS", "from"),
        ("to=aws-1", "to"),
        ("from=aws-1&from=gcp-1", "from"),
    ] {
        let r = get(&f.app, &format!("/api/v1/latency?{q}")).await;
        let msg = assert_error(&r, StatusCode::BAD_REQUEST, Some(field));
        assert!(msg.contains(field), "{q}: {msg}");
    }
}

#[tokio::test]
async fn whatif_shows_before_and_after_and_changes_nothing() {
    let f = fixture(None);
    let latency_before = get(&f.app, "/api/v1/latency").await.json();
    let v = get(&f.app, "/api/v1/whatif?down=aws-1").await.json();
    assert_eq!(v["down"], json!(["aws-1"]));
    assert_eq!(
        v["summary"],
        json!({"routes": 3, "routes_changed": 2, "services_affected": 2, "services_unreachable": 2})
    );
    // aws-1 is no source any more; gcp-1 loses what only aws-1 ran.
    assert_eq!(route_names(&v), [r#"dev/api@"gcp-1""#, r#"prod/payments@"gcp-1""#, r#"prod/web@"gcp-1""#]);
    assert_eq!(
        v["routes"][0],
        json!({
            "namespace": "dev", "name": "api", "from": "gcp-1",
            "before": {"preferred": "aws-1", "shares": [{"cluster": "aws-1", "share": 1.0}],
                       "expected_rtt_ms": null, "unreachable": false},
            "after": {"preferred": null, "shares": [], "expected_rtt_ms": null, "unreachable": true},
            "changed": true,
        })
    );
    assert_eq!(v["routes"][1]["changed"], false);
    assert_eq!(v["routes"][1]["after"]["preferred"], "gcp-1");

    let v = get(&f.app, "/api/v1/whatif?down=gcp-1&service=prod/payments&from=aws-1").await.json();
    assert_eq!(route_names(&v), [r#"prod/payments@"aws-1""#]);
    assert_eq!(v["routes"][0]["changed"], false, "gcp-1 was only a fallback");
    assert_eq!(v["summary"]["services_affected"], 0);

    assert_eq!(get(&f.app, "/api/v1/latency").await.json(), latency_before);
    assert!(f.state.policies().is_empty());
}

#[tokio::test]
async fn whatif_validates_down() {
    let f = fixture(None);
    for (q, field, needle) in [
        ("", "down", "required"),
        ("down=", "down", "empty"),
        ("down=aws-1,nope-1", "down", "nope-1"),
        ("down=Bad", "down", "\"Bad\""),
        ("down=aws-1,,gcp-1", "down", "empty"),
        ("down=aws-1&colour=red", "colour", "colour"),
        ("down=aws-1&from=X", "from", "from"),
    ] {
        let r = get(&f.app, &format!("/api/v1/whatif?{q}")).await;
        let msg = assert_error(&r, StatusCode::BAD_REQUEST, Some(field));
        assert!(msg.contains(needle), "{q}: {msg}");
    }
    let msg = assert_error(&get(&f.app, "/api/v1/whatif?down=nope-1").await, StatusCode::BAD_REQUEST, Some("down"));
    assert!(msg.contains("unknown cluster nope-1") && msg.contains("aws-1, gcp-1"), "{msg}");
}
