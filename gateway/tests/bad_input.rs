//! Bad input at every edge: each case asserts the refusal and that good traffic still flows.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{GwSpec, Pki, backends, free_udp, metric, quic, service};
use skybridge_api::header::{OpenRequest, Status};
use skybridge_api::model::{ClusterId, ServiceKey};
use skybridge_gateway::app::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One gateway ("aws-1") hosting `web.prod` (http) locally, plus `secret.prod` allowed only
/// from "gcp-ok", and `broken.prod` whose endpoint refuses. Peers: gcp-ok, gcp-bad.
struct Fixture {
    pki: Pki,
    gw: Running,
}

const PEEK_TIMEOUT_MS: u64 = 400;

async fn fixture() -> Fixture {
    common::init();
    let pki = Pki::new();
    let web = backends::http("aws-1").await;
    let echo = backends::echo().await;
    let extra = [
        service("prod", "web", &["aws-1"], 80, "http", &[web]),
        service("prod", "echo", &["aws-1"], 7000, "tcp", &[echo]),
        service("prod", "broken", &["aws-1"], 80, "http", &[backends::refusing()]),
        service("prod", "remote", &["gcp-ok"], 443, "tls", &[]),
        common::service_allowing("prod", "secret", &["aws-1"], 7000, "tcp", &[echo], Some(&["gcp-ok"])),
        format!(
            "\n[limits]\npeek_timeout = \"{PEEK_TIMEOUT_MS}ms\"\nmax_http_head = 1024\nmax_client_hello = 1024\n\
             max_stream_header = 256\nheader_timeout = \"500ms\"\nconnect_timeout = \"300ms\"\n"
        ),
    ]
    .concat();
    let gw = GwSpec {
        cluster: "aws-1".into(),
        tunnel: free_udp(),
        certs: pki.issue_files("aws-1", "aws-1", 1),
        peers: vec![("gcp-ok".into(), free_udp()), ("gcp-bad".into(), free_udp())],
        extra,
    }
    .start()
    .await;
    Fixture { pki, gw }
}

impl Fixture {
    /// Good traffic through the same gateway still works.
    async fn still_serves(&self) {
        let out = send_recv(self.gw.addrs.http.unwrap(), b"GET / HTTP/1.1\r\nHost: web.prod\r\n\r\n").await;
        assert!(out.ends_with(b"hello from aws-1\n"), "good traffic broken: {}", String::from_utf8_lossy(&out));
    }

    async fn refusals(&self, listener: &str, reason: &str) -> f64 {
        metric(
            self.gw.addrs.admin,
            &format!(r#"skybridge_gateway_refusals_total{{listener="{listener}",reason="{reason}"}}"#),
        )
        .await
    }
}

async fn send_recv(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    // Never a hang: every refusal must arrive well inside this bound.
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await.expect("answered, not hung");
    out
}

fn client_hello(sni: Option<&str>) -> Vec<u8> {
    let mut exts = Vec::new();
    if let Some(name) = sni {
        let mut list = vec![0u8];
        list.extend_from_slice(&(name.len() as u16).to_be_bytes());
        list.extend_from_slice(name.as_bytes());
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend(list);
        exts.extend_from_slice(&[0, 0]);
        exts.extend_from_slice(&(data.len() as u16).to_be_bytes());
        exts.extend(data);
    }
    let mut body = vec![3, 3];
    body.extend([1u8; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut hs = vec![1u8];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    let mut rec = vec![22, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend(hs);
    rec
}

const ALERT_UNRECOGNIZED_NAME: [u8; 7] = [21, 3, 3, 0, 2, 2, 112];
const ALERT_DECODE_ERROR: [u8; 7] = [21, 3, 3, 0, 2, 2, 50];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_hello_malformed_truncated_nameless_or_unknown() {
    let f = fixture().await;
    let sni = f.gw.addrs.sni.unwrap();
    // Not TLS at all.
    assert_eq!(send_recv(sni, b"GET / HTTP/1.1\r\n\r\n").await, ALERT_DECODE_ERROR);
    // Corrupted lengths inside the ClientHello.
    let mut bad = client_hello(Some("web.prod"));
    let at = 5 + 4 + 2 + 32 + 1 + 4 + 2;
    bad[at] = 0xff;
    assert_eq!(send_recv(sni, &bad).await, ALERT_DECODE_ERROR);
    // Oversized (limit 1024 bytes).
    assert_eq!(send_recv(sni, &client_hello(Some(&"a".repeat(2000)))).await, ALERT_DECODE_ERROR);
    // No SNI, an unknown service, a name that is not a clusterset name.
    for hello in [client_hello(None), client_hello(Some("nope.prod")), client_hello(Some("example.com"))] {
        assert_eq!(send_recv(sni, &hello).await, ALERT_UNRECOGNIZED_NAME);
    }
    // Truncated, then the client gives up: closed without routing.
    let whole = client_hello(Some("web.prod"));
    let mut s = TcpStream::connect(sni).await.unwrap();
    s.write_all(&whole[..20]).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await.unwrap().unwrap();
    assert!(out.is_empty());
    assert_eq!(f.refusals("sni", "bad_client_hello").await, 3.0);
    assert_eq!(f.refusals("sni", "unknown_name").await, 3.0);
    assert_eq!(f.refusals("sni", "eof").await, 1.0);
    f.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_hello_trickling_slower_than_peek_timeout_is_cut() {
    let f = fixture().await;
    let hello = client_hello(Some("web.prod"));
    let mut s = TcpStream::connect(f.gw.addrs.sni.unwrap()).await.unwrap();
    let start = Instant::now();
    // One byte every 100 ms: each read is "in time", the whole is not.
    let mut closed_after = None;
    for b in &hello {
        if s.write_all(&[*b]).await.is_err() {
            closed_after = Some(start.elapsed());
            break;
        }
        let mut probe = [0u8; 1];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(100), s.read(&mut probe)).await {
            assert!(matches!(r, Ok(0) | Err(_)), "no data is ever sent back to a trickler");
            closed_after = Some(start.elapsed());
            break;
        }
    }
    let after = closed_after.expect("the gateway closed the connection");
    // The whole ClientHello would take over 20 s at this pace; the upper bound leaves room for
    // a loaded 2-core machine to notice the close late. The gateway's clock starts at accept,
    // a moment before this side's `start`, so the close may be seen a hair early (seen: 399.96
    // ms of 400).
    assert!(
        after >= Duration::from_millis(PEEK_TIMEOUT_MS - 20) && after < Duration::from_millis(PEEK_TIMEOUT_MS + 4000),
        "{after:?}"
    );
    assert_eq!(f.refusals("sni", "peek_timeout").await, 1.0);
    f.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_head_oversized_malformed_hostless_unknown() {
    let f = fixture().await;
    let http = f.gw.addrs.http.unwrap();
    let status = |out: Vec<u8>| String::from_utf8_lossy(&out).lines().next().unwrap_or("").to_owned();
    let big = format!("GET / HTTP/1.1\r\nHost: web.prod\r\nX-Big: {}\r\n\r\n", "a".repeat(2000));
    assert_eq!(status(send_recv(http, big.as_bytes()).await), "HTTP/1.1 431 Request Header Fields Too Large");
    // 150 short headers, under the 1024-byte limit: the 431 names the count limit.
    let many = "a:b\r\n".repeat(150);
    let out = send_recv(http, format!("GET / HTTP/1.1\r\nHost: web.prod\r\n{many}\r\n").as_bytes()).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 431") && text.contains("more than 128 header fields"), "{text}");
    assert_eq!(status(send_recv(http, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").await), "HTTP/1.1 400 Bad Request");
    assert_eq!(status(send_recv(http, b"\x00\x01\x02\r\n\r\n").await), "HTTP/1.1 400 Bad Request");
    assert_eq!(status(send_recv(http, b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n").await), "HTTP/1.1 400 Bad Request");
    let out = send_recv(http, b"GET / HTTP/1.1\r\nHost: nope.prod\r\n\r\n").await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 502 Bad Gateway") && text.contains("unknown service"), "{text}");
    assert_eq!(f.refusals("http", "bad_request").await, 5.0);
    assert_eq!(f.refusals("http", "unknown_name").await, 1.0);
    // A head that never completes gets a 408 at the peek timeout.
    let mut s = TcpStream::connect(http).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: web.prod\r\n").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await.unwrap().unwrap();
    assert!(out.starts_with(b"HTTP/1.1 408"), "{}", String::from_utf8_lossy(&out));
    f.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_endpoint_refusing_gets_502_and_is_ejected() {
    let f = fixture().await;
    let http = f.gw.addrs.http.unwrap();
    let out = send_recv(http, b"GET / HTTP/1.1\r\nHost: broken.prod\r\n\r\n").await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 502") && text.contains("refused"), "{text}");
    assert_eq!(metric(f.gw.addrs.admin, "skybridge_gateway_endpoint_failures_total").await, 1.0);
    f.still_serves().await;
}

async fn good_peer_conn(f: &Fixture, cluster: &str) -> quinn::Connection {
    let id = f.pki.issue(cluster, 1);
    quic::connect(f.gw.addrs.tunnel, Some(&id)).await.unwrap()
}

fn req(service: &str, port: u16, source: &str) -> OpenRequest {
    let (name, ns) = service.split_once('.').unwrap();
    OpenRequest {
        service: ServiceKey::new(ns, name).unwrap(),
        port,
        source: ClusterId::new(source).unwrap(),
        trace: None,
        probe: false,
        proof: false,
    }
}

/// Opens a stream with `bytes` as its start and expects a status.
async fn status_of(conn: &quinn::Connection, bytes: &[u8]) -> Result<(Status, String), String> {
    tokio::time::timeout(Duration::from_secs(5), quic::raw_open(conn, bytes)).await.expect("answered, not hung")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_header_oversized_truncated_or_garbage_resets_only_that_stream() {
    let f = fixture().await;
    let conn = good_peer_conn(&f, "gcp-ok").await;
    let good = quic::header(&req("echo.prod", 7000, "gcp-ok"));
    // Oversized: body length above max_stream_header (256).
    let oversized = [&[1u8, 0x10, 0x00][..], &[0u8; 64]].concat();
    // Garbage: wrong version.
    let garbage = b"\xffnot a header at all".to_vec();
    // Unknown must-understand field.
    let critical = [&[1u8, 0, 4][..], &[0x81, 0, 1, b'x']].concat();
    for bad in [oversized, garbage, critical] {
        let r = status_of(&conn, &bad).await;
        assert!(matches!(&r, Err(e) if e.contains("reset")), "bad header must reset the stream: {r:?}");
    }
    // Truncated: the header stops and the sender finishes the stream.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&good[..good.len() - 3]).await.unwrap();
    send.finish().unwrap();
    let mut b = [0u8; 3];
    let r = tokio::time::timeout(Duration::from_secs(5), recv.read_exact(&mut b)).await.unwrap();
    assert!(r.is_err(), "truncated header is not answered with a status");
    // Truncated and stalled: cut at header_timeout.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&good[..5]).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), recv.read_exact(&mut b)).await.unwrap();
    assert!(r.is_err());
    assert_eq!(
        metric(f.gw.addrs.admin, r#"skybridge_gateway_refusals_total{listener="ingress",reason="bad_header"}"#).await,
        4.0
    );
    assert_eq!(
        metric(f.gw.addrs.admin, r#"skybridge_gateway_refusals_total{listener="ingress",reason="header_timeout"}"#)
            .await,
        1.0
    );
    // The same connection still carries good streams.
    assert_eq!(status_of(&conn, &good).await.unwrap().0, Status::Ok);
    f.still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_refusals_no_route_denied_unreachable() {
    let f = fixture().await;
    let conn = good_peer_conn(&f, "gcp-bad").await;
    let open = |r: OpenRequest| {
        let c = conn.clone();
        async move { status_of(&c, &quic::header(&r)).await.unwrap() }
    };
    // Not hosted here (only in gcp-ok), unknown, and a port the service does not have.
    assert_eq!(open(req("remote.prod", 443, "gcp-bad")).await.0, Status::NoRoute);
    assert_eq!(open(req("nope.prod", 80, "gcp-bad")).await.0, Status::NoRoute);
    assert_eq!(open(req("web.prod", 81, "gcp-bad")).await.0, Status::NoRoute);
    // Allow list excludes gcp-bad.
    let (s, why) = open(req("secret.prod", 7000, "gcp-bad")).await;
    assert_eq!(s, Status::Denied, "{why}");
    // Claiming to be another cluster than the certificate says.
    let (s, why) = open(req("web.prod", 80, "gcp-ok")).await;
    assert_eq!(s, Status::Denied);
    assert!(why.contains("certificate"), "{why}");
    // Endpoint refusing.
    assert_eq!(open(req("broken.prod", 80, "gcp-bad")).await.0, Status::UpstreamUnreachable);
    // The allowed cluster gets through to the same service.
    let ok = good_peer_conn(&f, "gcp-ok").await;
    assert_eq!(status_of(&ok, &quic::header(&req("secret.prod", 7000, "gcp-ok"))).await.unwrap().0, Status::Ok);
    assert_eq!(open(req("web.prod", 80, "gcp-bad")).await.0, Status::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoint_times_out_to_upstream_unreachable() {
    common::init();
    let pki = Pki::new();
    let (hole, _fill, _listener) = backends::blackhole().await;
    let gw = GwSpec {
        cluster: "aws-1".into(),
        tunnel: free_udp(),
        certs: pki.issue_files("a", "aws-1", 1),
        peers: vec![("gcp-x".into(), free_udp())],
        extra: format!(
            "{}\n[limits]\nconnect_timeout = \"200ms\"\n",
            service("prod", "slow", &["aws-1"], 80, "http", &[hole])
        ),
    }
    .start()
    .await;
    let conn = quic::connect(gw.addrs.tunnel, Some(&pki.issue("gcp-x", 1))).await.unwrap();
    let t = Instant::now();
    let (s, why) = status_of(&conn, &quic::header(&req("slow.prod", 80, "gcp-x"))).await.unwrap();
    assert_eq!(s, Status::UpstreamUnreachable, "{why}");
    assert!(why.contains("timed out"), "{why}");
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_without_valid_certificates_are_rejected() {
    let f = fixture().await;
    let tunnel = f.gw.addrs.tunnel;
    let probe = |conn: Result<quinn::Connection, String>| async move {
        match conn {
            Err(e) => Err(e),
            Ok(c) => status_of(&c, &quic::header(&req("web.prod", 80, "gcp-ok"))).await.map(|_| ()),
        }
    };
    let admin = f.gw.addrs.admin;
    let failed = || metric(admin, r#"skybridge_gateway_refusals_total{listener="ingress",reason="handshake_failed"}"#);
    let other = Pki::new();
    let expired = f.pki.issue("gcp-ok", 0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let foreign_td = Pki::with_domain("other.skybridge");
    let cases = [
        ("no client certificate", None),
        // Same trust domain name, different root.
        ("a certificate from another CA", Some(other.issue("gcp-ok", 1))),
        ("an expired certificate from the right CA", Some(expired)),
        ("the right CA, but another federation's trust domain", Some(foreign_td.issue("gcp-ok", 1))),
    ];
    for (what, cert) in cases {
        let before = failed().await;
        let r = probe(quic::connect(tunnel, cert.as_ref()).await).await;
        assert!(r.is_err(), "{what}: accepted");
        // Each refusal is counted once, as a failed handshake (the server may count it a moment
        // after the client gives up).
        let mut after = failed().await;
        for _ in 0..40 {
            if after > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            after = failed().await;
        }
        assert_eq!(after - before, 1.0, "{what}: counted {} times as handshake_failed", after - before);
    }
    // A valid peer still gets in.
    let ok = good_peer_conn(&f, "gcp-ok").await;
    assert_eq!(status_of(&ok, &quic::header(&req("web.prod", 80, "gcp-ok"))).await.unwrap().0, Status::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialled_peer_presenting_another_clusters_certificate_is_refused() {
    common::init();
    let pki = Pki::new();
    let web = backends::http("gcp-1").await;
    let tb = free_udp();
    // The gateway at tb is really gcp-1; a is told that azure-2 lives there.
    let b = GwSpec {
        cluster: "gcp-1".into(),
        tunnel: tb,
        certs: pki.issue_files("b", "gcp-1", 1),
        peers: vec![("aws-1".into(), free_udp())],
        extra: service("prod", "web", &["gcp-1"], 80, "http", &[web]),
    }
    .start()
    .await;
    let a = GwSpec {
        cluster: "aws-1".into(),
        tunnel: free_udp(),
        certs: pki.issue_files("a", "aws-1", 1),
        peers: vec![("azure-2".into(), tb)],
        extra: service("prod", "web", &["azure-2"], 80, "http", &[]),
    }
    .start()
    .await;
    let out = send_recv(a.addrs.http.unwrap(), b"GET / HTTP/1.1\r\nHost: web.prod\r\n\r\n").await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 502") && text.contains("azure-2"), "{text}");
    // The prober dials too, so there may be more than the data path's one.
    assert!(
        metric(a.addrs.admin, r#"skybridge_gateway_peer_handshakes_total{result="failed",transport="quic"}"#).await
            >= 1.0
    );
    let status: serde_json::Value = serde_json::from_str(&common::admin_get(a.addrs.admin, "/status").await.1).unwrap();
    assert_eq!(status["peers"][0]["state"], "down");
    assert!(status["peers"][0]["last_error"].as_str().unwrap().contains("handshake"), "{status}");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_skips_an_ejected_endpoint() {
    common::init();
    let pki = Pki::new();
    let (e1, e2) = (backends::http("e1").await, backends::http("e2").await);
    let dead = backends::refusing();
    let gw = GwSpec {
        cluster: "aws-1".into(),
        tunnel: free_udp(),
        certs: pki.issue_files("a", "aws-1", 1),
        peers: vec![("gcp-x".into(), free_udp())],
        extra: service("prod", "web", &["aws-1"], 80, "http", &[e1, dead, e2]),
    }
    .start()
    .await;
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..12 {
        let out = send_recv(gw.addrs.http.unwrap(), b"GET / HTTP/1.1\r\nHost: web.prod\r\n\r\n").await;
        let text = String::from_utf8_lossy(&out).into_owned();
        assert!(text.starts_with("HTTP/1.1 200"), "every request succeeds: {text}");
        *seen.entry(text.lines().last().unwrap().to_owned()).or_insert(0) += 1;
    }
    // Both live endpoints share the load; the dead one failed once and was then skipped.
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.values().all(|n| *n >= 5), "even split: {seen:?}");
    assert_eq!(metric(gw.addrs.admin, "skybridge_gateway_endpoint_failures_total").await, 1.0);
}
