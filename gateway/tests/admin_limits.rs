//! Idle-socket exhaustion of the admin port (issue 14): idle connections are closed at the
//! header timeout, connections past the cap get a clear 503 at once, and `/healthz` answers
//! again as soon as the idle ones are gone.

mod common;

use std::time::{Duration, Instant};

use common::{GwSpec, Pki, admin_get, free_udp, metric};
use skybridge_gateway::metrics::ReasonLabels;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const CAP: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_take_the_admin_port() {
    common::init();
    let pki = Pki::new();
    let gw = GwSpec {
        cluster: "aws-1".into(),
        tunnel: free_udp(),
        certs: pki.issue_files("aws-1", "aws-1", 1),
        peers: vec![],
        extra: format!(
            "\n[limits]\nadmin_max_connections = {CAP}\nadmin_header_timeout = \"1s\"\nadmin_idle_timeout = \"2s\"\n"
        ),
    }
    .start()
    .await;
    let admin = gw.addrs.admin;
    let m = &gw.context().metrics;
    let refused = || m.admin_refusals.get_or_create(&ReasonLabels { reason: "max_connections" }).get();

    let start = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..CAP - 1 {
        idle.push(TcpStream::connect(admin).await.unwrap());
    }
    // One slot left: the probe gets it.
    assert_eq!(admin_get(admin, "/healthz").await, (200, "ok\n".into()));
    // Hundreds more: each beyond the cap is answered 503 and closed at once, not held.
    let mut extra = Vec::new();
    for _ in 0..300 {
        extra.push(TcpStream::connect(admin).await.unwrap());
    }
    let mut answered_503 = 0;
    for s in &mut extra {
        let mut out = Vec::new();
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), s.read_to_end(&mut out)).await
            && out.starts_with(b"HTTP/1.1 503")
        {
            answered_503 += 1;
        }
    }
    assert!(answered_503 >= 299 - 1, "only {answered_503} of 300 extra connections got a 503");
    assert!(refused() >= 299, "{}", refused());
    assert!(start.elapsed() < Duration::from_millis(950), "the refusals were not immediate");
    let (status, body) = admin_get(admin, "/healthz").await;
    assert_eq!(status, 503, "full: {body}");
    assert!(body.contains(&format!("limit {CAP}")), "{body}");

    // The idle ones are closed at the header timeout (1 s), not held.
    for s in &mut idle {
        let mut buf = [0u8; 64];
        let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("idle connection held");
        assert!(matches!(r, Ok(0) | Err(_)), "an idle connection was sent data");
    }
    let closed_after = start.elapsed();
    assert!(closed_after >= Duration::from_millis(950) && closed_after < Duration::from_secs(4), "{closed_after:?}");
    assert_eq!(admin_get(admin, "/healthz").await.0, 200);
    assert!(
        metric(admin, r#"skybridge_gateway_admin_refusals_total{reason="header_timeout"}"#).await >= (CAP - 1) as f64
    );
    assert!(metric(admin, r#"skybridge_gateway_admin_refusals_total{reason="max_connections"}"#).await >= 300.0);
    // Only the connection reading /metrics is open.
    assert_eq!(metric(admin, "skybridge_gateway_admin_connections").await, 1.0);
}
