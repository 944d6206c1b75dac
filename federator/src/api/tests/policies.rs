//! Policy endpoints: round trip, persistence, events, auth, and every bad-input case.

use axum::http::{Method, StatusCode, header};
use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{TOKEN, assert_error, cluster, fixture, get, key, write};
use crate::store::{Policy, Store};

const URI: &str = "/api/v1/policies/prod/payments";

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

#[tokio::test]
async fn put_get_list_delete_round_trip() {
    let f = fixture(Some(TOKEN));
    assert_error(&get(&f.app, URI).await, StatusCode::NOT_FOUND, None);
    let body = r#"{"weights": {"aws-1": 70, "gcp-1": 30}, "failover": ["gcp-1"], "avoid": [], "allow": ["aws-1", "spiffe://gcp.example"], "deny": ["aws-dev-*"]}"#;
    let r = write(&f.app, Method::PUT, URI, Some(&bearer()), body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let want_policy = json!({"weights": {"aws-1": 70, "gcp-1": 30}, "failover": ["gcp-1"], "avoid": [],
        "allow": ["aws-1", "spiffe://gcp.example"], "deny": ["aws-dev-*"]});
    let want = json!({"namespace": "prod", "name": "payments", "in_catalog": true, "unknown_clusters": [], "source": "api", "policy": want_policy});
    assert_eq!(r.json(), want);
    assert_eq!(get(&f.app, URI).await.json(), want);
    assert_eq!(
        get(&f.app, "/api/v1/policies").await.json(),
        json!({"authorization_default": "allow", "policies": [want]})
    );
    assert_eq!(get(&f.app, "/api/v1/services/prod/payments").await.json()["policy"], want_policy);

    // Persisted, in memory, and recorded as an event.
    let expected = Policy {
        weights: [(cluster("aws-1"), 70), (cluster("gcp-1"), 30)].into(),
        failover: vec![cluster("gcp-1")],
        avoid: vec![],
        allow: Some(vec!["aws-1".parse().unwrap(), "spiffe://gcp.example".parse().unwrap()]),
        deny: vec!["aws-dev-*".parse().unwrap()],
    };
    let stored = f.state.store().load().await.unwrap();
    assert_eq!(stored.policies.get(&key("prod", "payments")), Some(&expected));
    assert_eq!(f.state.policies().get(&key("prod", "payments")), Some(&expected));
    let events = get(&f.app, "/api/v1/events").await.json();
    let last = events["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "policy");
    assert!(last["message"].as_str().unwrap().contains("prod/payments"), "{last}");

    // A PUT replaces the whole policy; omitted fields take their defaults.
    let r = write(&f.app, Method::PUT, URI, Some(&bearer()), r#"{"avoid": ["gcp-1"]}"#).await;
    assert_eq!(
        r.json()["policy"],
        json!({"weights": {}, "failover": [], "avoid": ["gcp-1"], "allow": null, "deny": []})
    );

    let r = write(&f.app, Method::DELETE, URI, Some(&bearer()), "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    assert_error(&get(&f.app, URI).await, StatusCode::NOT_FOUND, None);
    assert!(f.state.store().load().await.unwrap().policies.is_empty());
    assert!(f.state.policies().is_empty());
    let events = get(&f.app, "/api/v1/events").await.json();
    assert!(events["events"].as_array().unwrap().last().unwrap()["message"].as_str().unwrap().contains("deleted"));
    let r = write(&f.app, Method::DELETE, URI, Some(&bearer()), "").await;
    assert_error(&r, StatusCode::NOT_FOUND, None);
}

#[tokio::test]
async fn a_policy_may_precede_its_service() {
    let f = fixture(Some(TOKEN));
    let uri = "/api/v1/policies/prod/not-yet";
    let r = write(&f.app, Method::PUT, uri, Some(&bearer()), r#"{"failover": ["aws-1"]}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["in_catalog"], false);
    assert_eq!(get(&f.app, uri).await.json()["in_catalog"], false);
    // The service itself is still unknown to the catalog.
    assert_error(&get(&f.app, "/api/v1/services/prod/not-yet").await, StatusCode::NOT_FOUND, None);
}

#[tokio::test]
async fn writes_need_the_right_bearer_token() {
    let f = fixture(Some(TOKEN));
    let body = r#"{"failover": ["aws-1"]}"#;
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic czNjcmV0LXRva2Vu"),
        Some(TOKEN),
        Some("Bearer"),
        Some("Bearer s3cret-toke"),
    ] {
        for method in [Method::PUT, Method::DELETE] {
            let r = write(&f.app, method.clone(), URI, auth, body).await;
            assert_error(&r, StatusCode::UNAUTHORIZED, None);
            assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer", "{method} {auth:?}");
        }
    }
    // Authorization is checked before the body: a bad body without a token is still a 401.
    assert_error(&write(&f.app, Method::PUT, URI, None, "{").await, StatusCode::UNAUTHORIZED, None);
    assert!(f.state.policies().is_empty());
    // The scheme is case-insensitive.
    let r = write(&f.app, Method::PUT, URI, Some(&format!("bearer {TOKEN}")), body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn writes_are_disabled_without_a_configured_token() {
    for token in [None, Some(""), Some("  \n")] {
        let f = fixture(token);
        for auth in [None, Some("Bearer "), Some("Bearer x")] {
            let r = write(&f.app, Method::PUT, URI, auth, r#"{}"#).await;
            let msg = assert_error(&r, StatusCode::UNAUTHORIZED, None);
            assert!(msg.contains("api.token_file"), "{msg}");
        }
        // Reads stay open.
        assert_eq!(get(&f.app, "/api/v1/policies").await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn bad_bodies_are_400_naming_the_field() {
    let f = fixture(Some(TOKEN));
    let cases: &[(&str, Option<&str>)] = &[
        // Malformed JSON has no field to blame.
        ("{", None),
        ("", None),
        (r#"{"failover": []} x"#, None),
        ("[]", None),
        // Unknown fields, at the top level.
        (r#"{"colour": "red"}"#, Some("colour")),
        (r#"{"weights": {}, "failover": [], "wieghts": {}}"#, Some("wieghts")),
        // Wrong types.
        (r#"{"weights": {"aws-1": "fifty"}}"#, Some("weights.aws-1")),
        (r#"{"weights": {"aws-1": 50.5}}"#, Some("weights.aws-1")),
        (r#"{"failover": "aws-1"}"#, Some("failover")),
        (r#"{"allow": [1]}"#, Some("allow[0]")),
        // Weights out of range, or not summing to 100.
        (r#"{"weights": {"aws-1": 150}}"#, Some("weights.aws-1")),
        (r#"{"weights": {"aws-1": -1, "gcp-1": 101}}"#, Some("weights.aws-1")),
        (r#"{"weights": {"aws-1": 60, "gcp-1": 30}}"#, Some("weights")),
        (r#"{"weights": {"aws-1": 0}}"#, Some("weights")),
        // Cluster ids that are not RFC 1123 labels.
        (r#"{"weights": {"AWS-1": 100}}"#, Some("weights.AWS-1")),
        (r#"{"failover": ["aws-1", "gcp_1"]}"#, Some("failover[1]")),
        (r#"{"avoid": ["-x"]}"#, Some("avoid[0]")),
        (r#"{"allow": ["aws-1", "a.b"]}"#, Some("allow[1]")),
        (r#"{"failover": [""]}"#, Some("failover[0]")),
        // A cluster listed twice.
        (r#"{"failover": ["aws-1", "aws-1"]}"#, Some("failover[1]")),
    ];
    for (body, field) in cases {
        let r = write(&f.app, Method::PUT, URI, Some(&bearer()), body).await;
        let msg = assert_error(&r, StatusCode::BAD_REQUEST, *field);
        if let Some(field) = field {
            assert!(msg.starts_with(&format!("{field}: ")), "{body}: {msg}");
        }
    }
    // The exact message for the documented example.
    let r = write(&f.app, Method::PUT, URI, Some(&bearer()), r#"{"weights": {"aws-1": 150}}"#).await;
    assert_eq!(r.json(), json!({"error": "weights.aws-1: 150 is out of range 0..=100", "field": "weights.aws-1"}));
    // Nothing was stored by any of them.
    assert!(f.state.policies().is_empty());
    assert!(f.state.store().load().await.unwrap().policies.is_empty());
    // Boundaries that are fine.
    let ok = r#"{"weights": {"aws-1": 100, "gcp-1": 0}, "allow": null}"#;
    assert_eq!(write(&f.app, Method::PUT, URI, Some(&bearer()), ok).await.status, StatusCode::OK);
}

#[tokio::test]
async fn bad_path_labels_are_400() {
    let f = fixture(Some(TOKEN));
    for (uri, field) in [
        ("/api/v1/policies/Prod/payments", "namespace"),
        ("/api/v1/policies/prod/pay_ments", "name"),
        ("/api/v1/policies/prod/-payments", "name"),
    ] {
        assert_error(&get(&f.app, uri).await, StatusCode::BAD_REQUEST, Some(field));
        let r = write(&f.app, Method::PUT, uri, Some(&bearer()), "{}").await;
        assert_error(&r, StatusCode::BAD_REQUEST, Some(field));
        let r = write(&f.app, Method::DELETE, uri, Some(&bearer()), "").await;
        assert_error(&r, StatusCode::BAD_REQUEST, Some(field));
    }
    let v: Value = get(&f.app, "/api/v1/policies").await.json();
    assert_eq!(v, json!({"authorization_default": "allow", "policies": []}));
}

#[tokio::test]
async fn duplicate_keys_oversized_bodies_and_unknown_clusters() {
    let f = fixture(Some(TOKEN));
    // A key twice in one object is refused, not resolved by whichever came last.
    let r = write(&f.app, Method::PUT, URI, Some(&bearer()), r#"{"avoid": ["aws-1"], "avoid": []}"#).await;
    assert_error(&r, StatusCode::BAD_REQUEST, None);
    assert!(r.text().contains("avoid") && r.text().contains("appears twice"), "{}", r.text());
    let r = write(&f.app, Method::PUT, URI, Some(&bearer()), r#"{"weights": {"aws-1": 50, "aws-1": 50}}"#).await;
    assert!(r.text().contains("appears twice"), "{}", r.text());
    // A megabyte of weights is refused before it is parsed.
    let huge =
        format!("{{\"weights\": {{{}}}}}", (0..40_000).map(|i| format!("\"c{i}\": 0")).collect::<Vec<_>>().join(","));
    let r = write(&f.app, Method::PUT, URI, Some(&bearer()), &huge).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    // Clusters the catalog does not have are kept, and named.
    let r = write(&f.app, Method::PUT, URI, Some(&bearer()), r#"{"avoid": ["aws-9", "gcp-1"]}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["unknown_clusters"], json!(["aws-9"]));
}

#[tokio::test]
async fn a_rotated_token_file_applies_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    let write_token = |t: &str| {
        let tmp = dir.path().join(".token.tmp");
        std::fs::write(&tmp, t).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    };
    write_token("first-token\n");
    let f = super::fixture_with(crate::api::policy::WriteToken::file(path.clone()));
    let put = async |token: &str| write(&f.app, Method::PUT, URI, Some(&format!("Bearer {token}")), "{}").await.status;
    assert_eq!(put("first-token").await, StatusCode::OK);
    // Rotated (a different length, so the change shows even within one mtime tick).
    write_token("the-second-token\n");
    assert_eq!(put("first-token").await, StatusCode::UNAUTHORIZED);
    assert_eq!(put("the-second-token").await, StatusCode::OK);
    // Emptied or removed: writes are disabled, not open.
    write_token("\n");
    assert_eq!(put("").await, StatusCode::UNAUTHORIZED);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(put("the-second-token").await, StatusCode::UNAUTHORIZED);
    write_token("the-second-token");
    assert_eq!(put("the-second-token").await, StatusCode::OK);
}

/// A request as the HTTPS server hands it on: with the client's verified certificate chain.
async fn write_as(f: &super::Fixture, id: &skybridge_api::identity::SpiffeId, auth: Option<&str>) -> super::Reply {
    use axum::body::Body;
    use axum::http::Request;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let now = time::OffsetDateTime::now_utc();
    let ca = skybridge_api::ca::init(&id.trust_domain, now, 1).unwrap();
    let leaf = skybridge_api::ca::issue(&ca, id, &[], now, 1).unwrap();
    let der = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap();
    let mut req = Request::builder().method(Method::PUT).uri(URI).header(header::CONTENT_TYPE, "application/json");
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    let mut req = req.body(Body::from("{}")).unwrap();
    req.extensions_mut().insert(skybridge_api::serve::ClientCertificates(vec![der].into()));
    super::call(&f.app, req).await
}

#[tokio::test]
async fn an_operator_certificate_writes_and_a_gateway_certificate_does_not() {
    use skybridge_api::identity::SpiffeId;
    // No token configured: the operator's certificate alone authorizes, and is named in the event.
    let f = fixture(None);
    let admin = SpiffeId::admin("test.skybridge", "alice").unwrap();
    let r = write_as(&f, &admin, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let events = get(&f.app, "/api/v1/events").await.json();
    let last = events["events"].as_array().unwrap().last().unwrap()["message"].as_str().unwrap().to_owned();
    assert!(last.contains("by spiffe://test.skybridge/admin/alice"), "{last}");

    // A gateway's (or the federator's) certificate may not write, even with the right token.
    let f = fixture(Some(TOKEN));
    let gateway = SpiffeId::gateway("test.skybridge", cluster("aws-1"));
    for id in [gateway, SpiffeId::federator("test.skybridge")] {
        let r = write_as(&f, &id, Some(&bearer())).await;
        let msg = assert_error(&r, StatusCode::FORBIDDEN, None);
        assert!(msg.contains(&id.to_string()) && msg.contains("--admin"), "{msg}");
    }
    // An operator of another trust domain is not ours (the TLS verifier refuses it first; the
    // API refuses it too).
    let foreign = SpiffeId::admin("other.example", "mallory").unwrap();
    assert_error(&write_as(&f, &foreign, Some(&bearer())).await, StatusCode::FORBIDDEN, None);
    assert!(f.state.policies().is_empty());
    // Without a certificate the token still works.
    assert_eq!(write(&f.app, Method::PUT, URI, Some(&bearer()), "{}").await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_policies_file_wins_shows_its_source_and_refuses_api_writes() {
    use skybridge_api::routing::DefaultAction;
    let f = fixture(Some(TOKEN));
    // An API policy first, then the file names the same service and another one.
    let r = write(&f.app, Method::PUT, URI, Some(&bearer()), r#"{"avoid": ["gcp-1"]}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    let file = crate::policies::file::parse(
        "[policy.\"prod/payments\"]\nallow = [\"aws-1\"]\n[policy.\"prod/web\"]\nfailover = [\"gcp-1\"]\n",
    )
    .unwrap();
    let change = f.state.set_file_policies(file);
    assert_eq!(change.added.len(), 2);
    f.state.set_authorization_default(DefaultAction::Deny);

    let got = get(&f.app, URI).await.json();
    assert_eq!(got["source"], "file");
    assert_eq!(got["policy"]["allow"], json!(["aws-1"]), "the file's policy is in effect");
    let list = get(&f.app, "/api/v1/policies").await.json();
    assert_eq!(list["authorization_default"], "deny");
    let sources: Vec<_> = list["policies"].as_array().unwrap().iter().map(|p| p["source"].clone()).collect();
    assert_eq!(sources, [json!("file"), json!("file")]);
    // What gateways get: the file's policies and the default.
    let wire = f.state.watch_policies().borrow().clone();
    assert!(wire.deny_by_default);
    assert_eq!(wire.services.iter().find(|p| p.name == "payments").unwrap().allow, ["aws-1"]);

    // The API cannot change or delete what the file sets.
    for (method, body) in [(Method::PUT, "{}"), (Method::DELETE, "")] {
        let r = write(&f.app, method, URI, Some(&bearer()), body).await;
        let msg = assert_error(&r, StatusCode::CONFLICT, None);
        assert!(msg.contains("policies file"), "{msg}");
    }
    // Once the file drops the service, the API's policy is back in effect.
    f.state.set_file_policies(BTreeMap::new());
    let got = get(&f.app, URI).await.json();
    assert_eq!((got["source"].clone(), got["policy"]["avoid"].clone()), (json!("api"), json!(["gcp-1"])));
}
