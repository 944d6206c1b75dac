//! Idle-socket exhaustion of the admin port (issue 14): silent connections give their slots to
//! new ones, connections that started a request are closed at the header timeout, connections
//! past a cap of those get a clear 503 at once, and `/healthz` answers again as soon as they are
//! gone.

mod common;

use std::time::{Duration, Instant};

use common::{GwSpec, Pki, admin_get, free_udp, metric};
use skybridge_gateway::metrics::ReasonLabels;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

    let evicted = || m.admin_refusals.get_or_create(&ReasonLabels { reason: "evicted" }).get();

    // Silent sockets cannot keep the probe out: past the cap each new connection takes the slot
    // of the oldest one that has sent nothing, which is closed at once.
    let mut silent = Vec::new();
    for _ in 0..CAP + 300 {
        silent.push(TcpStream::connect(admin).await.unwrap());
    }
    // A probe can itself be evicted when connections still queued in the backlog are accepted
    // after it, before its request is read (as a kubelet probe would, it tries again).
    let mut probe = None;
    for _ in 0..5 {
        if let Ok(r) = try_admin_get(admin, "/healthz").await {
            probe = Some(r);
            break;
        }
    }
    assert_eq!(probe, Some((200, "ok\n".into())));
    let mut closed = 0;
    for s in &mut silent[..301] {
        let mut buf = [0u8; 64];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
            assert!(matches!(r, Ok(0) | Err(_)), "a silent connection was sent data");
            closed += 1;
        }
    }
    assert!(closed >= 300, "only {closed} of the 301 oldest silent connections were closed for newer ones");
    assert!(evicted() >= 300, "{}", evicted());
    assert_eq!(refused(), 0);
    drop(silent);

    // Connections that started a request keep their slots: past the cap, a clear 503 at once.
    let start = Instant::now();
    let mut started = Vec::new();
    for _ in 0..CAP {
        let mut s = TcpStream::connect(admin).await.unwrap();
        s.write_all(b"G").await.unwrap();
        started.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = Vec::new();
    for _ in 0..100 {
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
    assert!(answered_503 >= 99, "only {answered_503} of 100 extra connections got a 503");
    assert!(refused() >= 99, "{}", refused());
    assert!(start.elapsed() < Duration::from_millis(950), "the refusals were not immediate");
    // Closed, so that the server's lingering refusals end and the probe below is answered in turn.
    drop(extra);
    let (status, body) = admin_get(admin, "/healthz").await;
    assert_eq!(status, 503, "full: {body}");
    assert!(body.contains(&format!("limit {CAP}")), "{body}");

    // Those are closed at the header timeout (1 s), not held.
    for s in &mut started {
        // hyper may answer 408 to the cut head before closing.
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await.expect("connection held");
    }
    let closed_after = start.elapsed();
    assert!(closed_after >= Duration::from_millis(950) && closed_after < Duration::from_secs(4), "{closed_after:?}");
    assert_eq!(admin_get(admin, "/healthz").await.0, 200);
    assert!(metric(admin, r#"skybridge_gateway_admin_refusals_total{reason="header_timeout"}"#).await >= CAP as f64);
    assert!(metric(admin, r#"skybridge_gateway_admin_refusals_total{reason="max_connections"}"#).await >= 100.0);
    // Only the connection reading /metrics is open.
    assert_eq!(metric(admin, "skybridge_gateway_admin_connections").await, 1.0);
}

async fn try_admin_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()))
}
