//! GKE fleet source: GKE Hub memberships from a local stand-in of the Hub API (through the
//! official client), each member's MCS exports from a fake Kubernetes API server. Tokens come
//! either from injected credentials or, through google-cloud-auth's own `authorized_user`
//! path, from a local stand-in of Google's OAuth token endpoint.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{clusters_with, next, until};
use google_cloud_auth::credentials::{CacheableResource, Credentials, CredentialsProvider, EntityTag};
use http::{Extensions, HeaderMap, HeaderValue};
use serde_json::Value;
use skybridge_api::catalog::SourceSnapshot;
use skybridge_api::source::ErrorKind;
use skybridge_cloud_adapters::gke::fake::{FakeHub, membership};
use skybridge_cloud_adapters::gke::fake_oauth::FakeTokenEndpoint;
use skybridge_cloud_adapters::gke::{self, GkeConfig};
use skybridge_cloud_adapters::k8s::ExportApi;
use skybridge_cloud_adapters::k8s::fake::{FakeApiServer, Fault, Injection, objects};

/// Credentials that hand out `token-N`, N moving on each `rotate` (a refresh after expiry).
#[derive(Debug, Clone)]
struct Rotating(Arc<AtomicUsize>);

impl CredentialsProvider for Rotating {
    async fn headers(
        &self,
        _: Extensions,
    ) -> Result<CacheableResource<HeaderMap>, google_cloud_auth::errors::CredentialsError> {
        let mut h = HeaderMap::new();
        let t = format!("Bearer token-{}", self.0.load(Ordering::SeqCst));
        h.insert(http::header::AUTHORIZATION, HeaderValue::from_str(&t).unwrap());
        Ok(CacheableResource::New { entity_tag: EntityTag::new(), data: h })
    }
    async fn universe_domain(&self) -> Option<String> {
        None
    }
}

fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn config(hub: &FakeHub, clusters: &[(&str, &FakeApiServer)]) -> GkeConfig {
    let mut text = format!(
        "id = \"gke\"\nproject = \"fleet-prj\"\nhub_endpoint = \"{}\"\nrediscover = \"200ms\"\ntoken_refresh = \"100ms\"\n\
         backoff_min = \"50ms\"\nbackoff_max = \"200ms\"\n",
        hub.url()
    );
    for (m, server) in clusters {
        text.push_str(&format!("[[clusters]]\nmembership = \"{m}\"\nserver = \"{}\"\n", server.url()));
    }
    let c: GkeConfig = toml::from_str(&text).unwrap();
    c.validate("sources[0]").unwrap();
    c
}

async fn export(k8s: &FakeApiServer, name: &str, ip: &str) {
    k8s.apply(objects::service_export(ExportApi::Gke, "prod", name)).unwrap();
    k8s.apply(objects::service("prod", name, &[("http", 80, None, "TCP")])).unwrap();
    k8s.apply(objects::endpoint_slice(
        "prod",
        &format!("{name}-1"),
        name,
        &[("http", 8080)],
        &[(ip, Some(true), None)],
    ))
    .unwrap();
}

/// Two memberships (`gke-east`, `gke-west`) each exporting `payments`, every server requiring
/// `token-1`; returns them with the source (its token counter at 1) and the snapshot showing both.
async fn synced_pair() -> (FakeHub, FakeApiServer, FakeApiServer, Arc<AtomicUsize>, gke::GkeFleet, SourceSnapshot) {
    init();
    let token = Arc::new(AtomicUsize::new(1));
    let creds = Credentials::from(Rotating(token.clone()));
    let hub = FakeHub::start().await.unwrap();
    hub.set_token(Some("token-1"));
    let (east, west) = (FakeApiServer::start().await.unwrap(), FakeApiServer::start().await.unwrap());
    for s in [&east, &west] {
        s.set_token(Some("token-1"));
    }
    hub.set_members(vec![
        membership("fleet-prj", "global", "gke-east", "us-east1"),
        membership("fleet-prj", "us-west1", "gke-west", "us-west1"),
    ]);
    export(&east, "payments", "10.0.0.1").await;
    export(&west, "payments", "10.1.0.1").await;
    let mut src = gke::source(config(&hub, &[("gke-east", &east), ("gke-west", &west)]), Some(creds)).await.unwrap();
    let s =
        until(&mut src, "payments in both clusters", |s| clusters_with(s, "prod/payments") == ["gke-east", "gke-west"])
            .await;
    (hub, east, west, token, src, s)
}

#[tokio::test]
async fn fleet_members_exports_add_change_remove() {
    let (hub, east, west, token, mut src, s) = synced_pair().await;
    let regions: Vec<(String, String)> = s.clusters.iter().map(|c| (c.id.to_string(), c.region.clone())).collect();
    assert_eq!(regions, [("gke-east".into(), "us-east1".into()), ("gke-west".into(), "us-west1".into())]);

    // Change: a new endpoint in gke-west; removal: the export goes away in gke-east.
    let eps = [("10.1.0.1", Some(true), None), ("10.1.0.2", Some(false), None)];
    west.apply(objects::endpoint_slice("prod", "payments-1", "payments", &[("http", 8080)], &eps)).unwrap();
    until(&mut src, "two endpoints in gke-west", |s| {
        s.services.values().flatten().any(|e| e.cluster.as_str() == "gke-west" && e.ports[0].endpoints.len() == 2)
    })
    .await;
    east.delete(&objects::service_export(ExportApi::Gke, "prod", "payments")).unwrap();
    until(&mut src, "payments only in gke-west", |s| clusters_with(s, "prod/payments") == ["gke-west"]).await;

    // Token expiry: every server now wants the refreshed token; the source picks it up.
    token.store(2, Ordering::SeqCst);
    for s in [&east, &west] {
        s.set_token(Some("token-2"));
    }
    hub.set_token(Some("token-2"));
    export(&east, "orders", "10.0.0.9").await;
    until(&mut src, "orders after the token refresh", |s| clusters_with(s, "prod/orders") == ["gke-east"]).await;

    // A member leaves the fleet: its exports go with it.
    hub.set_members(vec![membership("fleet-prj", "us-west1", "gke-west", "us-west1")]);
    let s = until(&mut src, "gke-east gone", |s| s.clusters.len() == 1).await;
    assert!(clusters_with(&s, "prod/orders").is_empty());
}

#[tokio::test]
async fn hub_failures_are_classified_and_keep_nothing_half_done() {
    init();
    let creds = Credentials::from(Rotating(Arc::new(AtomicUsize::new(1))));
    let hub = FakeHub::start().await.unwrap();
    let k8s = FakeApiServer::start().await.unwrap();
    k8s.set_token(Some("token-1"));
    hub.set_members(vec![membership("fleet-prj", "global", "gke-east", "us-east1")]);
    export(&k8s, "web", "10.0.0.1").await;

    for (status, kind) in [(403, ErrorKind::Auth), (404, ErrorKind::NotFound), (500, ErrorKind::Unavailable)] {
        hub.fail_next(&[status; 8]);
        let mut src = gke::source(config(&hub, &[("gke-east", &k8s)]), Some(creds.clone())).await.unwrap();
        let e = next(&mut src).await.unwrap_err();
        assert_eq!(e.kind, kind, "HTTP {status}: {e}");
        hub.clear_failures();
    }
    // Malformed: rejected, not read as "no members".
    hub.malformed_next();
    let mut src = gke::source(config(&hub, &[("gke-east", &k8s)]), Some(creds.clone())).await.unwrap();
    let e = next(&mut src).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Malformed, "{e}");
    let s = until(&mut src, "recovered", |s| clusters_with(s, "prod/web") == ["gke-east"]).await;
    assert_eq!(s.clusters.len(), 1);
}

#[tokio::test]
async fn memberships_are_paged() {
    init();
    let creds = Credentials::from(Rotating(Arc::new(AtomicUsize::new(1))));
    let hub = FakeHub::start().await.unwrap();
    let k8s = FakeApiServer::start().await.unwrap();
    k8s.set_token(Some("token-1"));
    let members: Vec<Value> =
        (0..130).map(|i| membership("fleet-prj", "global", &format!("m-{i}"), "europe-west1")).collect();
    hub.set_members(members);
    let mut cfg = config(&hub, &[]);
    // Every member reaches the same fake API server directly.
    for i in 0..130 {
        cfg.clusters.push(toml::from_str(&format!("membership = \"m-{i}\"\nserver = \"{}\"\n", k8s.url())).unwrap());
    }
    let mut src = gke::source(cfg, Some(creds)).await.unwrap();
    let s = next(&mut src).await.unwrap();
    assert_eq!(s.clusters.len(), 130, "all pages of memberships (page size 100)");
    assert!(hub.requests() >= 2);
}

#[tokio::test]
async fn a_failed_listing_is_retried_on_the_next_call_not_a_rediscover_later() {
    init();
    let creds = Credentials::from(Rotating(Arc::new(AtomicUsize::new(1))));
    let hub = FakeHub::start().await.unwrap();
    let k8s = FakeApiServer::start().await.unwrap();
    k8s.set_token(Some("token-1"));
    hub.set_members(vec![membership("fleet-prj", "global", "gke-east", "us-east1")]);
    let mut cfg = config(&hub, &[("gke-east", &k8s)]);
    cfg.rediscover = std::time::Duration::from_secs(3600);
    hub.fail_next(&[500]);
    let mut src = gke::source(cfg, Some(creds)).await.unwrap();
    assert_eq!(next(&mut src).await.unwrap_err().kind, ErrorKind::Unavailable);
    let s = next(&mut src).await.expect("the listing is retried at once");
    assert_eq!(s.clusters.len(), 1);
}

#[tokio::test]
async fn a_member_outage_keeps_its_last_exports_and_lists_it_failing() {
    let (_hub, _east, west, _token, mut src, _) = synced_pair().await;

    west.update(|c| {
        c.inject(Injection::new(Fault::Status(503), u32::MAX));
        c.close_watches();
    });
    let s = until(&mut src, "gke-west failing", |s| !s.failing.is_empty()).await;
    assert_eq!(s.failing.keys().map(|c| c.as_str()).collect::<Vec<_>>(), ["gke-west"]);
    assert_eq!(s.failing.values().next().unwrap().kind, ErrorKind::Unavailable);
    assert_eq!(clusters_with(&s, "prod/payments"), ["gke-east", "gke-west"], "last good exports kept");

    west.clear_injections();
    let s = until(&mut src, "gke-west recovered", |s| s.failing.is_empty()).await;
    assert_eq!(clusters_with(&s, "prod/payments"), ["gke-east", "gke-west"]);
}

#[tokio::test]
async fn a_hanging_token_source_is_unavailable_not_a_stall() {
    init();
    /// Credentials whose token request never completes (a metadata server that hangs).
    #[derive(Debug)]
    struct Hanging;
    impl CredentialsProvider for Hanging {
        async fn headers(
            &self,
            _: Extensions,
        ) -> Result<CacheableResource<HeaderMap>, google_cloud_auth::errors::CredentialsError> {
            std::future::pending().await
        }
        async fn universe_domain(&self) -> Option<String> {
            None
        }
    }
    let hub = FakeHub::start().await.unwrap();
    let mut cfg = config(&hub, &[]);
    cfg.token_timeout = std::time::Duration::from_millis(300);
    let built =
        tokio::time::timeout(std::time::Duration::from_secs(10), gke::source(cfg, Some(Credentials::from(Hanging))))
            .await
            .expect("the token fetch is bounded");
    let e = built.err().expect("no token, no source");
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    assert!(e.message.contains("metadata server"), "{e}");
}

/// A config reading `credentials_file` (an `authorized_user` file for `oauth` with
/// `refresh_token`) instead of injected credentials; the file lives as long as the guard.
fn config_with_file(
    hub: &FakeHub,
    clusters: &[(&str, &FakeApiServer)],
    oauth: &FakeTokenEndpoint,
    refresh_token: &str,
) -> (GkeConfig, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("adc.json"), oauth.authorized_user(refresh_token).to_string()).unwrap();
    let mut cfg = config(hub, clusters);
    cfg.credentials_file = Some("adc.json".into());
    cfg.resolve(dir.path());
    cfg.validate("sources[0]").unwrap();
    (cfg, dir)
}

/// Every server requires `token` from now on (the earlier one is revoked).
fn require(token: &str, hub: &FakeHub, servers: &[&FakeApiServer]) {
    hub.set_token(Some(token));
    for s in servers {
        s.set_token(Some(token));
    }
}

#[tokio::test]
async fn an_authorized_user_file_gets_its_token_from_the_token_endpoint() {
    init();
    let oauth = FakeTokenEndpoint::start().await.unwrap();
    let hub = FakeHub::start().await.unwrap();
    let k8s = FakeApiServer::start().await.unwrap();
    require("ya29.fake-1", &hub, &[&k8s]);
    hub.set_members(vec![membership("fleet-prj", "global", "gke-east", "us-east1")]);
    export(&k8s, "payments", "10.0.0.1").await;

    let (cfg, _dir) = config_with_file(&hub, &[("gke-east", &k8s)], &oauth, FakeTokenEndpoint::REFRESH_TOKEN);
    let mut src = gke::source(cfg, None).await.unwrap();
    until(&mut src, "payments via the endpoint's token", |s| clusters_with(s, "prod/payments") == ["gke-east"]).await;
    // One token, cached by google-cloud-auth across the Hub client and the token refreshes.
    assert_eq!(oauth.issued(), ["ya29.fake-1"]);
    assert!(hub.requests() >= 1);
}

#[tokio::test]
async fn an_expiring_token_is_refreshed_and_the_old_one_revoked() {
    init();
    let oauth = FakeTokenEndpoint::start().await.unwrap();
    // google-cloud-auth refreshes 240 s ahead of expiry: the first token is renewed ~5 s in.
    oauth.set_expires_in(245);
    let hub = FakeHub::start().await.unwrap();
    let (east, west) = (FakeApiServer::start().await.unwrap(), FakeApiServer::start().await.unwrap());
    require("ya29.fake-1", &hub, &[&east, &west]);
    hub.set_members(vec![
        membership("fleet-prj", "global", "gke-east", "us-east1"),
        membership("fleet-prj", "us-west1", "gke-west", "us-west1"),
    ]);
    export(&east, "payments", "10.0.0.1").await;
    export(&west, "payments", "10.1.0.1").await;

    let clusters = [("gke-east", &east), ("gke-west", &west)];
    let (cfg, _dir) = config_with_file(&hub, &clusters, &oauth, FakeTokenEndpoint::REFRESH_TOKEN);
    let mut src = gke::source(cfg, None).await.unwrap();
    // Later tokens live an hour, so exactly one refresh falls within the test.
    oauth.set_expires_in(3599);
    until(&mut src, "payments in both", |s| clusters_with(s, "prod/payments") == ["gke-east", "gke-west"]).await;

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while oauth.issued().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no refresh within 30 s: {:?}", oauth.issued());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    require("ya29.fake-2", &hub, &[&east, &west]);
    export(&west, "orders", "10.1.0.9").await;
    let s = until(&mut src, "orders after the refresh", |s| clusters_with(s, "prod/orders") == ["gke-west"]).await;
    assert_eq!(clusters_with(&s, "prod/payments"), ["gke-east", "gke-west"]);
    assert_eq!(oauth.issued(), ["ya29.fake-1", "ya29.fake-2"]);
}

#[tokio::test]
async fn a_rejected_refresh_token_is_an_auth_error_naming_the_file() {
    init();
    let oauth = FakeTokenEndpoint::start().await.unwrap();
    let hub = FakeHub::start().await.unwrap();
    let (cfg, dir) = config_with_file(&hub, &[], &oauth, "1//revoked-or-mistyped");
    let e = gke::source(cfg, None).await.err().expect("no token, no source");
    assert_eq!(e.kind, ErrorKind::Auth, "{e}");
    assert!(e.message.contains("check the credentials file"), "{e}");
    assert!(e.message.contains(&dir.path().join("adc.json").display().to_string()), "{e}");
    assert!(e.message.contains("invalid_grant"), "the endpoint's reason is kept: {e}");
    assert!(oauth.calls() >= 1 && oauth.issued().is_empty());
}

#[tokio::test]
async fn an_unreadable_or_foreign_credentials_file_says_what_to_fix() {
    init();
    let hub = FakeHub::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&hub, &[]);
    cfg.credentials_file = Some(dir.path().join("missing.json"));
    let e = gke::source(cfg.clone(), None).await.err().unwrap();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    assert!(e.message.contains("missing.json") && e.message.contains("check the path"), "{e}");

    std::fs::write(dir.path().join("odd.json"), r#"{"type": "gdch_service_account"}"#).unwrap();
    cfg.credentials_file = Some(dir.path().join("odd.json"));
    let e = gke::source(cfg, None).await.err().unwrap();
    assert_eq!(e.kind, ErrorKind::Auth, "{e}");
    assert!(e.message.contains("expected service_account"), "{e}");
}
