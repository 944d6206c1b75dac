//! The gateway's own certificate (issue 14): expired, not yet valid or foreign certificates are
//! refused at start naming the file and dates; on hot reload they are refused, counted
//! `result="error"`, and the previous identity stays; a certificate close to expiry is reported
//! in `/status` and metrics.

mod common;

use std::path::Path;

use common::{GwSpec, Pki, admin_get, free_udp, metric, quic, write_identity};
use skybridge_api::ca;
use skybridge_api::identity::SpiffeId;
use skybridge_api::model::ClusterId;
use skybridge_gateway::app;
use skybridge_gateway::config::Config;
use time::OffsetDateTime;

/// Writes an aws-1 identity issued by `issuer` as if at `now` (our CA backdates 5 minutes),
/// valid `days`, with `trust` as the bundle.
fn write_at(dir: &Path, issuer: &Pki, trust: &Pki, now: OffsetDateTime, days: u32) {
    let id = SpiffeId::gateway(common::TD, ClusterId::new("aws-1").unwrap());
    let leaf = ca::issue(&issuer.ca, &id, &[], now, days).unwrap();
    write_identity(dir, &leaf, &trust.ca.cert_pem);
}

fn spec(certs: &Path, extra: &str) -> GwSpec {
    GwSpec { cluster: "aws-1".into(), tunnel: free_udp(), certs: certs.to_owned(), peers: vec![], extra: extra.into() }
}

async fn start_error(certs: &Path) -> String {
    let cfg = Config::parse(&spec(certs, "").toml()).unwrap();
    match app::start(cfg).await {
        Ok(_) => panic!("started with a bad own certificate"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_refuses_expired_not_yet_valid_and_foreign_certificates() {
    common::init();
    let pki = Pki::new();
    let now = OffsetDateTime::now_utc();
    let dir = pki.dir.path().join("bad");
    let cert = dir.join("cert.pem").display().to_string();

    write_at(&dir, &pki, &pki, now - time::Duration::days(10), 1);
    let e = start_error(&dir).await;
    assert!(e.contains(&cert) && e.contains("expired at") && e.contains("(now "), "{e}");

    write_at(&dir, &pki, &pki, now + time::Duration::days(2), 30);
    let e = start_error(&dir).await;
    assert!(e.contains(&cert) && e.contains("not valid before") && e.contains("clock"), "{e}");

    let other = Pki::new();
    write_at(&dir, &other, &pki, now, 1);
    let e = start_error(&dir).await;
    assert!(e.contains(&cert) && e.contains("does not chain to the trust bundle") && e.contains("ca.pem"), "{e}");

    // The same checks make `--check-config` fail (it loads the store the same way).
    let files = skybridge_gateway::tls::TlsFiles::in_dir(&dir);
    let role = skybridge_api::identity::Role::Gateway(ClusterId::new("aws-1").unwrap());
    assert!(skybridge_gateway::tls::CertStore::load(files, common::TD, role).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_refuses_bad_certificates_keeps_the_old_identity_and_counts_errors() {
    common::init();
    let pki = Pki::new();
    let now = OffsetDateTime::now_utc();
    let dir = pki.dir.path().join("gw");
    write_at(&dir, &pki, &pki, now, 30);
    let gw = spec(&dir, "").start().await;
    let admin = gw.addrs.admin;
    let not_after = |body: String| -> String {
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["certificate"]["not_after"].as_str().unwrap().to_owned()
    };
    let original = not_after(admin_get(admin, "/status").await.1);
    let errors = r#"skybridge_gateway_cert_reloads_total{result="error"}"#;
    let oks = r#"skybridge_gateway_cert_reloads_total{result="ok"}"#;

    // Expired, then of another CA: both refused and counted; the running identity is unchanged
    // and peers still get in.
    write_at(&dir, &pki, &pki, now - time::Duration::days(10), 1);
    assert!(common::wait_metric(admin, errors, 1.0).await, "expired certificate not refused");
    write_at(&dir, &Pki::new(), &pki, now, 1);
    assert!(common::wait_metric(admin, errors, 2.0).await, "foreign certificate not refused");
    assert_eq!(metric(admin, oks).await, 0.0);
    assert_eq!(not_after(admin_get(admin, "/status").await.1), original);
    let peer = quic::connect(gw.addrs.tunnel, Some(&pki.issue("gcp-1", 1))).await;
    assert!(peer.is_ok(), "{peer:?}");

    // Not valid for another three seconds: refused now, installed on its own once valid.
    let soon = OffsetDateTime::now_utc() + time::Duration::minutes(5) + time::Duration::seconds(3);
    write_at(&dir, &pki, &pki, soon, 1);
    assert!(common::wait_metric(admin, errors, 3.0).await, "not-yet-valid certificate not refused");
    assert_eq!(not_after(admin_get(admin, "/status").await.1), original);
    assert!(common::wait_metric(admin, oks, 1.0).await, "not picked up once valid, without another file change");
    assert_ne!(not_after(admin_get(admin, "/status").await.1), original);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_is_warned_ahead_in_status_and_metrics() {
    common::init();
    let pki = Pki::new();
    let now = OffsetDateTime::now_utc();
    let dir = pki.dir.path().join("gw");
    write_at(&dir, &pki, &pki, now, 3);

    // Three days left with the default 7-day window: expiring.
    let gw = spec(&dir, "").start().await;
    let (_, body) = admin_get(gw.addrs.admin, "/status").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["certificate"]["expiring_soon"], true, "{body}");
    assert_eq!(v["certificate"]["warning_window_seconds"], 7 * 86_400);
    assert_eq!(metric(gw.addrs.admin, "skybridge_gateway_cert_expiring").await, 1.0);
    drop(gw);

    // With a one-day window it is not.
    let text = spec(&dir, "")
        .toml()
        .replace("reload_interval = \"100ms\"", "reload_interval = \"100ms\"\nexpiry_warning = \"24h\"");
    let gw = app::start(Config::parse(&text).unwrap()).await.unwrap();
    let (_, body) = admin_get(gw.addrs.admin, "/status").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["certificate"]["expiring_soon"], false, "{body}");
    assert!(v["certificate_expires_in_seconds"].as_u64().unwrap() > 2 * 86_400);
    assert_eq!(metric(gw.addrs.admin, "skybridge_gateway_cert_expiring").await, 0.0);
}
