//! Two gateways in one process on loopback: every egress path through the real tunnel.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{GwSpec, Pki, backends, eventually, free_udp, metric, service, start_pair};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use skybridge_api::ca;
use skybridge_api::identity::SpiffeId;
use skybridge_gateway::app::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Pair {
    pki: Pki,
    a: Running,
    b: Running,
    /// The app-level CA the TLS backend's certificate chains to (not the federation's).
    app_ca_pem: String,
}

/// aws-1 (egress side, hosts nothing) and gcp-1 (hosts every service).
async fn pair() -> Pair {
    common::init();
    let pki = Pki::new();
    let app_ca = ca::init("apps.test", time::OffsetDateTime::now_utc(), 1).unwrap();
    let app_leaf = ca::issue(
        &app_ca,
        &SpiffeId::federator("apps.test"),
        &["payments.prod.svc.clusterset.local".into()],
        time::OffsetDateTime::now_utc(),
        1,
    )
    .unwrap();
    let web = backends::http("gcp-1").await;
    let tls = backends::tls(&app_leaf.cert_pem, &app_leaf.key_pem, "gcp-1").await;
    let echo = backends::echo().await;
    let count = backends::count_then_reply().await;
    let services = |eps: bool| {
        let e = |a: SocketAddr| if eps { vec![a] } else { vec![] };
        [
            service("prod", "web", &["gcp-1"], 80, "http", &e(web)),
            service("prod", "payments", &["gcp-1"], 443, "tls", &e(tls)),
            service("prod", "echo", &["gcp-1"], 7000, "tcp", &e(echo)),
            service("prod", "count", &["gcp-1"], 7001, "tcp", &e(count)),
        ]
        .concat()
    };
    let tcp_listeners = "\n[[listen.tcp]]\naddress = \"127.0.0.1:0\"\nservice = \"echo.prod\"\nport = 7000\n\
                         \n[[listen.tcp]]\naddress = \"127.0.0.1:0\"\nservice = \"count.prod.svc.clusterset.local\"\nport = 7001\n";
    let (a, b) = start_pair(&pki, services, tcp_listeners, "").await;
    Pair { pki, a, b, app_ca_pem: app_ca.cert_pem }
}

async fn http_get(addr: SocketAddr, host: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

async fn echo_once(addr: SocketAddr, msg: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(msg).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_passthrough_by_sni_reaches_remote_backend() {
    let p = pair().await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::pem::PemObject::from_pem_slice(p.app_ca_pem.as_bytes()).unwrap()).unwrap();
    let cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = TcpStream::connect(p.a.addrs.sni.unwrap()).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("payments.prod.svc.clusterset.local").unwrap();
    // The client verifies the backend's own certificate: the gateways never terminate its TLS.
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let mut out = String::new();
    tls.read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "tls hello from gcp-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_by_host_reaches_remote_backend() {
    let p = pair().await;
    let out = http_get(p.a.addrs.http.unwrap(), "web.prod.svc.clusterset.local").await;
    assert!(out.starts_with("HTTP/1.1 200 OK") && out.ends_with("hello from gcp-1\n"), "{out}");
    // The short form and a port in Host route the same way.
    let out = http_get(p.a.addrs.http.unwrap(), "web.prod:80").await;
    assert!(out.ends_with("hello from gcp-1\n"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_mapped_tcp_and_status_report() {
    let p = pair().await;
    assert_eq!(echo_once(p.a.addrs.tcp[0], b"ping").await, b"ping");
    let admin = p.a.addrs.admin;
    assert_eq!(
        metric(admin, r#"skybridge_gateway_stream_opens_total{side="egress",status="ok",transport="quic"}"#).await,
        1.0
    );
    assert_eq!(
        metric(p.b.addrs.admin, r#"skybridge_gateway_stream_opens_total{side="ingress",status="ok",transport="quic"}"#)
            .await,
        1.0
    );
    // Probes measure the RTT every second, and QUIC's estimate is sampled on the same tick.
    let mut status = serde_json::Value::Null;
    for _ in 0..30 {
        status = serde_json::from_str(&common::admin_get(admin, "/status").await.1).unwrap();
        if status["peers"][0]["rtt_ms"].is_number() && status["peers"][0]["quic_rtt_ms"].is_number() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["peers"][0]["cluster"], "gcp-1");
    assert_eq!(status["peers"][0]["state"], "healthy");
    // The data path's connection, and perhaps the prober's on the pool's second slot.
    assert!((1..=2).contains(&status["peers"][0]["connections"].as_u64().unwrap()), "{status}");
    assert!(status["peers"][0]["rtt_ms"].as_f64().unwrap() < 100.0, "{status}");
    assert!(status["config_version"].as_str().unwrap().starts_with("static-"));
    assert_eq!(status["services"].as_array().unwrap().len(), 4);
    assert!(metric(admin, r#"skybridge_gateway_peer_rtt_seconds{peer="gcp-1"}"#).await > 0.0);
    assert_eq!(common::admin_get(admin, "/readyz").await.0, 200);
    assert_eq!(common::admin_get(admin, "/healthz").await.0, 200);
}

/// Deterministic pseudo-random bytes (xorshift) so both ends can produce the same stream.
fn fill(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_256_mib_each_way_with_checksum() {
    const TOTAL: usize = 256 << 20;
    let p = pair().await;
    let s = TcpStream::connect(p.a.addrs.tcp[0]).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        let mut h = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut buf = vec![0u8; 256 * 1024];
        for _ in 0..TOTAL / buf.len() {
            fill(&mut buf, &mut state);
            h.update(&buf);
            w.write_all(&buf).await.unwrap();
        }
        w.shutdown().await.unwrap();
        h.finish().as_ref().to_vec()
    });
    let mut h = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0usize;
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        got += n;
    }
    let sent = writer.await.unwrap();
    assert_eq!(got, TOTAL, "the echo came back whole");
    assert_eq!(h.finish().as_ref(), sent.as_slice(), "SHA-256 of what came back equals what was sent");
    let up = metric(p.a.addrs.admin, r#"skybridge_gateway_bytes_total{side="egress",direction="upstream"}"#).await;
    assert_eq!(up as usize, TOTAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_client_still_receives_reply() {
    let p = pair().await;
    let mut s = TcpStream::connect(p.a.addrs.tcp[1]).await.unwrap();
    s.write_all(&vec![7u8; 100_000]).await.unwrap();
    s.shutdown().await.unwrap(); // FIN: our write side only
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out)).await.unwrap().unwrap();
    assert_eq!(out, "got 100000 bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_next_candidate_when_first_peer_refuses() {
    common::init();
    let pki = Pki::new();
    let (ta, tb, tc) = (free_udp(), free_udp(), free_udp());
    let web_c = backends::http("gcp-c").await;
    // b claims nothing locally: its catalog says only gcp-c hosts web, so b answers no_route.
    let b = GwSpec {
        cluster: "azure-b".into(),
        tunnel: tb,
        certs: pki.issue_files("b", "azure-b", 1),
        peers: vec![("aws-a".into(), ta), ("gcp-c".into(), tc)],
        extra: service("prod", "web", &["gcp-c"], 80, "http", &[]),
    }
    .start()
    .await;
    let c = GwSpec {
        cluster: "gcp-c".into(),
        tunnel: tc,
        certs: pki.issue_files("c", "gcp-c", 1),
        peers: vec![("aws-a".into(), ta), ("azure-b".into(), tb)],
        extra: service("prod", "web", &["gcp-c"], 80, "http", &[web_c]),
    }
    .start()
    .await;
    // a believes both host it, and the two are equally near: new connections share them, so
    // about half try b first, are refused there, and are retried on c.
    let a = GwSpec {
        cluster: "aws-a".into(),
        tunnel: ta,
        certs: pki.issue_files("a", "aws-a", 1),
        peers: vec![("azure-b".into(), tb), ("gcp-c".into(), tc)],
        extra: service("prod", "web", &["azure-b", "gcp-c"], 80, "http", &[]),
    }
    .start()
    .await;
    for _ in 0..20 {
        let out = http_get(a.addrs.http.unwrap(), "web.prod").await;
        assert!(out.starts_with("HTTP/1.1 200") && out.ends_with("hello from gcp-c\n"), "client saw no error: {out}");
    }
    let admin = a.addrs.admin;
    let refused =
        metric(admin, r#"skybridge_gateway_stream_opens_total{side="egress",status="no_route",transport="quic"}"#)
            .await;
    assert!(refused >= 1.0, "some connection tried b first (each does with probability 1/2)");
    assert_eq!(
        metric(admin, r#"skybridge_gateway_stream_opens_total{side="egress",status="ok",transport="quic"}"#).await,
        20.0
    );
    assert_eq!(metric(admin, "skybridge_gateway_retries_total").await, refused, "every refusal was retried");
    assert_eq!(
        metric(
            b.addrs.admin,
            r#"skybridge_gateway_stream_opens_total{side="ingress",status="no_route",transport="quic"}"#
        )
        .await,
        refused
    );

    // Now b shuts down: it closes its connections, so a drops it from the candidates (the
    // close frame usually arrives before the next connection; if not, that connection is
    // retried on c as above). Either way no client sees an error, and at most the one
    // connection racing the close frame pays a retry.
    let retried_before = metric(admin, "skybridge_gateway_retries_total").await;
    b.shutdown().await;
    for i in 0..20 {
        let out = http_get(a.addrs.http.unwrap(), "web.prod").await;
        assert!(out.ends_with("hello from gcp-c\n"), "connection {i} after b shut down: {out}");
    }
    let retried = metric(admin, "skybridge_gateway_retries_total").await - retried_before;
    assert!(retried <= 1.0, "{retried} connections tried the closed peer first");
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_finishes_in_flight_and_refuses_new() {
    let p = pair().await;
    let mut inflight = TcpStream::connect(p.a.addrs.tcp[0]).await.unwrap();
    inflight.write_all(b"before").await.unwrap();
    let mut buf = [0u8; 6];
    inflight.read_exact(&mut buf).await.unwrap();
    let (tcp0, admin) = (p.a.addrs.tcp[0], p.a.addrs.admin);
    let started = std::time::Instant::now();
    let drain = tokio::spawn(p.a.shutdown());
    assert!(eventually(Duration::from_secs(2), || refused(tcp0)).await, "listener closed while draining");
    assert_eq!(common::admin_get(admin, "/readyz").await.0, 503);
    // The in-flight connection still works in both directions.
    inflight.write_all(b"during").await.unwrap();
    inflight.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"during");
    inflight.shutdown().await.unwrap();
    let mut rest = Vec::new();
    inflight.read_to_end(&mut rest).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .expect("drain completes once in-flight work ends")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "did not wait for the 20 s deadline");
    drop(p.b);
}

fn refused(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_deadline_cuts_stuck_connections() {
    common::init();
    let pki = Pki::new();
    let echo = backends::echo().await;
    let a = GwSpec {
        cluster: "aws-1".into(),
        tunnel: free_udp(),
        certs: pki.issue_files("a", "aws-1", 1),
        peers: vec![],
        extra: format!(
            "\n[[listen.tcp]]\naddress = \"127.0.0.1:0\"\nservice = \"echo.prod\"\nport = 7000\n\
             \n[limits]\ndrain_deadline = \"300ms\"\n{}",
            service("prod", "echo", &["aws-1"], 7000, "tcp", &[echo])
        ),
    }
    .start()
    .await;
    let mut stuck = TcpStream::connect(a.addrs.tcp[0]).await.unwrap();
    stuck.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    stuck.read_exact(&mut b).await.unwrap();
    let t = std::time::Instant::now();
    a.shutdown().await;
    assert!(t.elapsed() < Duration::from_secs(4), "shutdown took {:?}", t.elapsed());
    // The connection was closed by the gateway (reset or EOF), not left hanging.
    let r = tokio::time::timeout(Duration::from_secs(2), stuck.read(&mut b)).await.unwrap();
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reload_keeps_connections_and_serves_new_ones() {
    let p = pair().await;
    let mut long = TcpStream::connect(p.a.addrs.tcp[0]).await.unwrap();
    long.write_all(b"one").await.unwrap();
    let mut buf = [0u8; 3];
    long.read_exact(&mut buf).await.unwrap();

    // What a new handshake with aws-1's tunnel is shown: pooled connections would hide a
    // rotation, so each look is a fresh QUIC connection from a valid peer.
    let peer = p.pki.issue("gcp-1", 1);
    let presented = || async {
        let conn = common::quic::connect(p.a.addrs.tunnel, Some(&peer)).await.unwrap();
        let certs = conn.peer_identity().unwrap().downcast::<Vec<CertificateDer<'static>>>().unwrap();
        certs[0].clone()
    };
    let der = |pem: &str| CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let old = std::fs::read_to_string(p.pki.dir.path().join("aws-1/cert.pem")).unwrap();
    assert_eq!(presented().await, der(&old));

    // Rotate both gateways' certificates (same CA, new keys) the way a Secret update would.
    let new_a = p.pki.issue("aws-1", 2);
    common::write_identity(&p.pki.dir.path().join("aws-1"), &new_a, &p.pki.ca.cert_pem);
    common::write_identity(&p.pki.dir.path().join("gcp-1"), &p.pki.issue("gcp-1", 2), &p.pki.ca.cert_pem);
    let reloaded = r#"skybridge_gateway_cert_reloads_total{result="ok"}"#;
    for admin in [p.a.addrs.admin, p.b.addrs.admin] {
        assert!(common::wait_metric(admin, reloaded, 1.0).await, "reload observed on {admin}");
    }
    // New handshakes get the new certificate...
    assert_eq!(presented().await, der(&new_a.cert_pem), "a fresh handshake still sees the old certificate");
    // ...and the established connection survived.
    long.write_all(b"two").await.unwrap();
    long.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"two");

    // A broken update (a certificate for another cluster) is refused; the old one stays.
    common::write_identity(&p.pki.dir.path().join("aws-1"), &p.pki.issue("gcp-9", 1), &p.pki.ca.cert_pem);
    let failed = r#"skybridge_gateway_cert_reloads_total{result="error"}"#;
    assert!(common::wait_metric(p.a.addrs.admin, failed, 1.0).await, "bad certificate reported");
    assert_eq!(echo_once(p.a.addrs.tcp[0], b"three").await, b"three");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_is_carried_both_ways() {
    common::init();
    let pki = Pki::new();
    let resetter = backends::reset_after(5).await;
    let (observer, mut ended) = backends::observer().await;
    let services = |eps: bool| {
        let e = |a: SocketAddr| if eps { vec![a] } else { vec![] };
        [
            service("prod", "rst", &["gcp-1"], 7000, "tcp", &e(resetter)),
            service("prod", "obs", &["gcp-1"], 7001, "tcp", &e(observer)),
        ]
        .concat()
    };
    let listeners = "\n[[listen.tcp]]\naddress = \"127.0.0.1:0\"\nservice = \"rst.prod\"\nport = 7000\n\
                     \n[[listen.tcp]]\naddress = \"127.0.0.1:0\"\nservice = \"obs.prod\"\nport = 7001\n";
    let (a, _b) = start_pair(&pki, services, listeners, "").await;

    // Server side resets: the client sees a reset, not an orderly EOF.
    let mut c = TcpStream::connect(a.addrs.tcp[0]).await.unwrap();
    c.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await.unwrap();
    assert_eq!(r.map_err(|e| e.kind()), Err(std::io::ErrorKind::ConnectionReset), "server RST reaches the client");

    // Client side resets: the server sees a reset, while a clean close is seen as EOF.
    let c = TcpStream::connect(a.addrs.tcp[1]).await.unwrap();
    let (mut r, mut w) = c.into_split();
    w.write_all(b"abc").await.unwrap();
    w.shutdown().await.unwrap();
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).await.unwrap();
    let clean = tokio::time::timeout(Duration::from_secs(5), ended.recv()).await.unwrap().unwrap();
    assert_eq!(clean, Ok(3));

    let mut c = TcpStream::connect(a.addrs.tcp[1]).await.unwrap();
    c.write_all(b"partial").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.set_zero_linger().unwrap();
    drop(c);
    let reset = tokio::time::timeout(Duration::from_secs(5), ended.recv()).await.unwrap().unwrap();
    assert_eq!(reset, Err(std::io::ErrorKind::ConnectionReset), "client RST reaches the server");
}

/// The only candidate for a service answers slowly (its endpoint's accept queue is full, so
/// gcp-1's upstream connect hangs until its `connect_timeout`). Abandoning it at the slow-open
/// timeout would only fail the connection and take a live peer down; it is waited for instead:
/// the client gets gcp-1's refusal and the peer stays healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_last_candidate_is_waited_for_and_stays_healthy() {
    common::init();
    let pki = Pki::new();
    let (hole, _fill, _listener) = backends::blackhole().await;
    let services = |eps: bool| {
        service("prod", "slow", &["gcp-1"], 7000, "tcp", if eps { std::slice::from_ref(&hole) } else { &[] })
    };
    let a_extra = "\n[[listen.tcp]]\naddress = \"127.0.0.1:0\"\nservice = \"slow.prod\"\nport = 7000\n";
    // Well past the slow-open floor (250 ms), well within limits.open_timeout (2 s).
    let b_extra = "\n[limits]\nconnect_timeout = \"700ms\"\n";
    let (a, _b) = start_pair(&pki, services, a_extra, b_extra).await;
    let admin = a.addrs.admin;
    // The slow-open timeout applies once the peer's RTT is measured.
    let mut measured = false;
    for _ in 0..100 {
        if healthy_with_rtt(admin).await {
            measured = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(measured, "gcp-1 never measured healthy");

    let mut s = TcpStream::connect(a.addrs.tcp[0]).await.unwrap();
    s.write_all(b"hello").await.unwrap();
    let mut out = Vec::new();
    // Closed without data once gcp-1 answers that it could not reach the endpoint.
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await.unwrap();
    assert!(out.is_empty());

    let opens = |status: &str| {
        format!(r#"skybridge_gateway_stream_opens_total{{side="egress",status="{status}",transport="quic"}}"#)
    };
    assert_eq!(metric(admin, &opens("timeout")).await, 0.0, "the open was abandoned");
    assert_eq!(metric(admin, &opens("upstream_unreachable")).await, 1.0, "gcp-1's refusal was not received");
    assert!(healthy_with_rtt(admin).await, "a peer that answered was taken down");
}

/// Whether the first peer in the admin `/status` is healthy with a measured RTT.
async fn healthy_with_rtt(admin: SocketAddr) -> bool {
    let status: serde_json::Value = serde_json::from_str(&common::admin_get(admin, "/status").await.1).unwrap();
    status["peers"][0]["state"] == "healthy" && status["peers"][0]["rtt_ms"].is_number()
}
