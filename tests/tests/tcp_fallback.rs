//! The tunnel over TLS on TCP (issue 15): two gateways in-process whose tunnel runs through the
//! WAN relay on one port for UDP and TCP. UDP blocked from the start or in the middle of
//! traffic moves new connections to TCP with none failing, unblocking brings them back to QUIC
//! within one QUIC probe interval, a rejected certificate is never mistaken for blocking, bulk
//! data keeps its checksum on TCP, and garbage on the TCP port is refused without harm.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use skybridge_api::ca;
use skybridge_api::identity::SpiffeId;
use skybridge_api::model::ClusterId;
use skybridge_gateway::app::{self as gw_app, Running};
use skybridge_gateway::config::Config as GwConfig;
use skybridge_tests::wan::{Impairment, Link, Relay};
use skybridge_tests::{free_udp, http_backend, peer_gateway_toml, tunnel_relay, write_identities, write_identity};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TD: &str = "tcp.test";
/// Fast enough for a test, the same mechanism as the defaults (1 s, 30 s).
const ROUTING: &str = "[routing]\ntcp_fallback_after = \"300ms\"\nquic_probe_interval = \"2s\"\n";

struct Pair {
    _dir: tempfile::TempDir,
    aws: Running,
    gcp: Running,
    link: Link,
    udp_relay: Option<Relay>,
    _tcp_relay: Relay,
}

fn identities(d: &std::path::Path) {
    write_identities(d, TD, &["aws-1", "gcp-1"]);
}

fn config(
    d: &std::path::Path,
    cluster: &str,
    certs: &str,
    tunnel: SocketAddr,
    peer: (&str, SocketAddr),
    extra: &str,
) -> GwConfig {
    GwConfig::parse(&peer_gateway_toml(d, TD, cluster, certs, tunnel, peer, extra)).unwrap()
}

fn services(endpoints: &str) -> String {
    format!(
        "[[services]]\nnamespace = \"prod\"\nname = \"web\"\nclusters = [\"gcp-1\"]\n[[services.ports]]\nport = 80\nprotocol = \"http\"\nendpoints = [{endpoints}]\n\
         [[services]]\nnamespace = \"prod\"\nname = \"echo\"\nclusters = [\"gcp-1\"]\n[[services.ports]]\nport = 7000\nprotocol = \"tcp\"\nendpoints = [{endpoints}]\n"
    )
}

/// aws-1 reaches gcp-1 only through the relay (2 ms each way); `aws_extra` goes into aws-1's
/// config (routing knobs, port-mapped listeners). gcp-1 serves `web.prod` and, on the same
/// port, nothing else.
async fn pair(udp_blocked: bool, aws_extra: &str, backend: SocketAddr) -> Pair {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    identities(dir.path());
    let [aws_tunnel, gcp_tunnel] = free_udp(2)[..] else { unreachable!() };
    let link = Link::new(Impairment::delay(Duration::from_millis(2)));
    link.block_udp(udp_blocked);
    let relays = tunnel_relay(gcp_tunnel, link.clone()).await;
    let gcp_cfg =
        config(dir.path(), "gcp-1", "gcp-1", gcp_tunnel, ("aws-1", aws_tunnel), &services(&format!("\"{backend}\"")));
    let gcp = gw_app::start(gcp_cfg).await.unwrap();
    let aws_cfg = config(
        dir.path(),
        "aws-1",
        "aws-1",
        aws_tunnel,
        ("gcp-1", relays.0.addr),
        &format!("{aws_extra}{}", services("")),
    );
    let aws = gw_app::start(aws_cfg).await.unwrap();
    Pair { _dir: dir, aws, gcp, link, udp_relay: Some(relays.0), _tcp_relay: relays.1 }
}

async fn admin(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
}

async fn peer(gw: &Running) -> serde_json::Value {
    let st: serde_json::Value = serde_json::from_str(&admin(gw.addrs.admin, "/status").await).unwrap();
    st["peers"][0].clone()
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
}

async fn metrics(gw: &Running) -> String {
    admin(gw.addrs.admin, "/metrics").await
}

/// One new connection to `web.prod` through `gw`: `Ok(())` when gcp-1's backend answered.
async fn request(gw: &Running) -> Result<(), String> {
    let exchange = async {
        let mut s = TcpStream::connect(gw.addrs.http.unwrap()).await.map_err(|e| e.to_string())?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: web.prod\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.map_err(|e| e.to_string())?;
        if out.starts_with("HTTP/1.1 200") && out.ends_with("hello from gcp-1\n") { Ok(()) } else { Err(out) }
    };
    tokio::time::timeout(Duration::from_secs(8), exchange).await.unwrap_or_else(|_| Err("no answer in 8 s".into()))
}

async fn until(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < within {
        if f().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("not {what} within {within:?}");
}

const OPENS_TCP: &str = r#"skybridge_gateway_stream_opens_total{side="egress",status="ok",transport="tcp"}"#;
const OPENS_QUIC: &str = r#"skybridge_gateway_stream_opens_total{side="egress",status="ok",transport="quic"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_blocked_from_the_start_flows_over_tcp_and_returns_to_quic_when_unblocked() {
    let p = pair(true, ROUTING, http_backend("gcp-1").await).await;
    for i in 0..20 {
        request(&p.aws).await.unwrap_or_else(|e| panic!("connection {i} failed over TCP: {e}"));
    }
    let st = peer(&p.aws).await;
    assert_eq!(st["transport"], "tcp", "{st:#}");
    assert!(st["transport_reason"].as_str().unwrap().contains("QUIC unanswered"), "{st:#}");
    let m = metrics(&p.aws).await;
    assert!(metric(&m, OPENS_TCP) >= 20.0, "{m}");
    assert_eq!(metric(&m, r#"skybridge_gateway_transport_changes_total{peer="gcp-1",transport="tcp"}"#), 1.0, "{m}");
    assert_eq!(metric(&m, r#"skybridge_gateway_peer_transport{peer="gcp-1",transport="tcp"}"#), 1.0);
    // The receiving side served them over TCP.
    let g = metrics(&p.gcp).await;
    assert!(metric(&g, r#"skybridge_gateway_stream_opens_total{side="ingress",status="ok",transport="tcp"}"#) >= 20.0);
    // Probes run over TCP too: the path stays measured and healthy.
    let st = peer(&p.aws).await;
    assert_eq!(st["state"], "healthy", "{st:#}");
    assert!(st["rtt_ms"].as_f64().is_some(), "{st:#}");

    // Unblocked: new connections are back on QUIC within one QUIC probe interval (2 s) plus the
    // confirming probe round (1 s).
    p.link.block_udp(false);
    let back = until("back on QUIC", Duration::from_secs(6), async || peer(&p.aws).await["transport"] == "quic").await;
    eprintln!("back on QUIC {back:?} after unblocking");
    let quic_before = metric(&metrics(&p.aws).await, OPENS_QUIC);
    for _ in 0..5 {
        request(&p.aws).await.unwrap();
    }
    let m = metrics(&p.aws).await;
    assert_eq!(metric(&m, OPENS_QUIC), quic_before + 5.0, "{m}");
    assert_eq!(metric(&m, r#"skybridge_gateway_transport_changes_total{peer="gcp-1",transport="quic"}"#), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_blocked_in_the_middle_of_traffic_fails_no_new_connection() {
    let p = pair(false, ROUTING, http_backend("gcp-1").await).await;
    request(&p.aws).await.unwrap();
    until("the path is measured", Duration::from_secs(5), async || peer(&p.aws).await["state"] == "healthy").await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let aws = p.aws.addrs.http.unwrap();
    let load = tokio::spawn(async move {
        let tracker = tokio_util::task::TaskTracker::new();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(6) {
            let tx = tx.clone();
            tracker.spawn(async move {
                let started = Instant::now();
                let out = async {
                    let mut s = TcpStream::connect(aws).await.map_err(|e| e.to_string())?;
                    s.write_all(b"GET / HTTP/1.1\r\nHost: web.prod\r\nConnection: close\r\n\r\n")
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut out = String::new();
                    s.read_to_string(&mut out).await.map_err(|e| e.to_string())?;
                    if out.ends_with("hello from gcp-1\n") { Ok(()) } else { Err(out) }
                };
                let r =
                    tokio::time::timeout(Duration::from_secs(8), out).await.unwrap_or_else(|_| Err("timeout".into()));
                let _ = tx.send((started, r));
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracker.close();
        tracker.wait().await;
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.link.block_udp(true);
    let blocked = Instant::now();
    let moved = until("on TCP", Duration::from_secs(5), async || peer(&p.aws).await["transport"] == "tcp").await;
    eprintln!("new streams moved to TCP {moved:?} after UDP was blocked ({:?})", blocked.elapsed());
    load.await.unwrap();
    let mut results = Vec::new();
    while let Ok(r) = rx.try_recv() {
        results.push(r);
    }
    // A connection already relaying over QUIC when UDP is cut loses its bytes with the path (it is
    // reset, like any in-flight connection on a path that dies); every connection opened from
    // then on must succeed.
    let in_flight = results.iter().filter(|(t, r)| *t < blocked && r.is_err()).count();
    let failed: Vec<_> = results.iter().filter(|(t, _)| *t >= blocked).filter_map(|(_, r)| r.as_ref().err()).collect();
    let after = results.iter().filter(|(t, _)| *t >= blocked).count();
    eprintln!("{in_flight} connection(s) in flight at the cut were reset; {after} opened after it");
    assert!(after > 50, "{after}");
    assert!(failed.is_empty(), "{} of {after} new connections failed: {failed:?}", failed.len());
    assert!(in_flight <= 2, "{in_flight} connections in flight at the cut failed");
    assert!(metric(&metrics(&p.aws).await, OPENS_TCP) > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_rejected_by_the_network_falls_back_the_same_way() {
    let mut p = pair(false, ROUTING, http_backend("gcp-1").await).await;
    request(&p.aws).await.unwrap();
    // Nothing listens on the path's UDP port any more: the kernel answers every datagram with
    // ICMP port unreachable (what a rejecting firewall sends), while TCP still passes.
    p.udp_relay.take().unwrap().stop().await;
    for i in 0..10 {
        request(&p.aws).await.unwrap_or_else(|e| panic!("connection {i} failed: {e}"));
    }
    let st = peer(&p.aws).await;
    assert_eq!(st["transport"], "tcp", "{st:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_certificate_is_an_error_not_a_reason_to_fall_back() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    identities(d);
    // aws-1 presents a certificate from a CA gcp-1 does not trust.
    let now = OffsetDateTime::now_utc();
    let foreign = ca::init(TD, now, 1).unwrap();
    let id = SpiffeId::gateway(TD, ClusterId::new("aws-1").unwrap());
    write_identity(&d.join("foreign"), &ca::issue(&foreign, &id, &[], now, 1).unwrap(), &foreign.cert_pem);
    let [aws_tunnel, gcp_tunnel] = free_udp(2)[..] else { unreachable!() };
    let gcp =
        gw_app::start(config(d, "gcp-1", "gcp-1", gcp_tunnel, ("aws-1", aws_tunnel), &services("\"127.0.0.1:9\"")))
            .await
            .unwrap();
    let aws = gw_app::start(config(
        d,
        "aws-1",
        "foreign",
        aws_tunnel,
        ("gcp-1", gcp_tunnel),
        &format!("{ROUTING}{}", services("")),
    ))
    .await
    .unwrap();
    assert!(request(&aws).await.is_err());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let st = peer(&aws).await;
    assert_eq!(st["transport"], "quic", "a rejection must not move the peer to TCP: {st:#}");
    assert!(st["last_error"].as_str().unwrap().contains("QUIC handshake"), "{st:#}");
    let m = metrics(&aws).await;
    assert_eq!(metric(&m, r#"skybridge_gateway_transport_changes_total{peer="gcp-1",transport="tcp"}"#), 0.0, "{m}");
    assert_eq!(metric(&m, r#"skybridge_gateway_peer_handshakes_total{result="ok",transport="tcp"}"#), 0.0, "{m}");

    // And TCP with the same certificate is refused the same way.
    let tls = aws_tunnel_client(&d.join("foreign"));
    let limits = skybridge_gateway::config::Limits::default();
    let tcp = gcp.addrs.tunnel_tcp.unwrap();
    let r = skybridge_gateway::tunnel::tcp::TcpConn::dial(tcp, "gcp-1", &tls, &limits, Duration::from_secs(2)).await;
    assert!(r.is_err(), "gcp-1 accepted a foreign certificate over TCP");
    until("the TCP refusal is counted", Duration::from_secs(3), async || {
        metric(
            &metrics(&gcp).await,
            r#"skybridge_gateway_refusals_total{listener="ingress_tcp",reason="handshake_failed"}"#,
        ) >= 1.0
    })
    .await;
}

/// An echo server: every connection gets back what it sent, and its half-close.
async fn echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_data_half_close_and_reset_over_tcp() {
    let backend = echo().await;
    let listeners = "[[listen.tcp]]\naddress = \"127.0.0.1:0\"\nservice = \"echo.prod\"\nport = 7000\n";
    let p = pair(false, &format!("[routing]\ntcp_fallback = \"always\"\n{listeners}"), backend).await;
    let entry = p.aws.addrs.tcp[0];
    // Bulk both ways at once, with a checksum; the client half-closes and still reads everything.
    let size: usize = std::env::var("TCP_BULK_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(256) << 20;
    let data: Vec<u8> = (0..size).map(|i| (i as u32).wrapping_mul(2654435761) as u8).collect();
    let want = checksum(&data);
    let s = TcpStream::connect(entry).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let start = Instant::now();
    let mut got = Vec::with_capacity(size);
    tokio::time::timeout(Duration::from_secs(120), r.read_to_end(&mut got)).await.unwrap().unwrap();
    writer.await.unwrap();
    eprintln!("{} MiB each way over TLS/TCP in {:?}", size >> 20, start.elapsed());
    assert_eq!(got.len(), size);
    assert_eq!(checksum(&got), want);
    assert_eq!(peer(&p.aws).await["transport"], "tcp");
    let m = metrics(&p.aws).await;
    assert_eq!(metric(&m, OPENS_QUIC), 0.0, "QUIC was never used: {m}");

    // A client reset (RST) resets the stream and the backend's side too.
    let mut s = TcpStream::connect(entry).await.unwrap();
    s.write_all(b"ping").await.unwrap();
    let mut b = [0u8; 4];
    s.read_exact(&mut b).await.unwrap();
    s.set_zero_linger().unwrap();
    drop(s);
    until("the reset is relayed", Duration::from_secs(5), async || {
        let m = metrics(&p.gcp).await;
        m.lines().any(|l| l.starts_with("skybridge_gateway_active_connections{listener=\"ingress\"} 0"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_tcp_tunnel_port_is_refused_and_harms_no_peer() {
    let p = pair(false, "[routing]\ntcp_fallback = \"always\"\n", http_backend("gcp-1").await).await;
    request(&p.aws).await.unwrap();
    let tcp = p.gcp.addrs.tunnel_tcp.unwrap();
    // Garbage, a plain-HTTP client, a TLS client without a certificate.
    let mut garbage = TcpStream::connect(tcp).await.unwrap();
    garbage.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3, 4, 5]).await.unwrap();
    let mut http = TcpStream::connect(tcp).await.unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let anonymous = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyServer))
        .with_no_client_auth();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(anonymous));
    let name = rustls_pki_types::ServerName::try_from("gcp-1").unwrap();
    let anon = tls.connect(name, TcpStream::connect(tcp).await.unwrap()).await;
    if let Ok(mut s) = anon {
        // TLS 1.3: the server's refusal of the missing certificate arrives on the first read.
        let mut b = [0u8; 16];
        assert!(!matches!(s.read(&mut b).await, Ok(n) if n > 0), "an anonymous client got data");
    }
    for s in [&mut garbage, &mut http] {
        let mut sink = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut sink)).await;
        assert!(r.is_ok(), "a bad client was kept open");
    }
    until("the refusals are counted", Duration::from_secs(3), async || {
        metric(
            &metrics(&p.gcp).await,
            r#"skybridge_gateway_refusals_total{listener="ingress_tcp",reason="handshake_failed"}"#,
        ) >= 3.0
    })
    .await;
    for _ in 0..5 {
        request(&p.aws).await.unwrap();
    }
}

/// Accepts any server certificate: the client under test is the one without a certificate.
#[derive(Debug)]
struct AnyServer;

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms.supported_schemes()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_from_an_authenticated_peer_ends_only_its_connection() {
    let p = pair(false, "[routing]\ntcp_fallback = \"always\"\n", http_backend("gcp-1").await).await;
    request(&p.aws).await.unwrap();
    let mut s = raw_peer(&p).await;
    let mut out = PREFACE_AND_SETTINGS.to_vec();
    out.extend_from_slice(&[0x10, 0, 0, 0x0, 0, 0, 0, 0, 1]); // DATA of 1 MiB on stream 1 (limit 64 KiB)
    out.extend_from_slice(&[0u8; 1024]);
    s.write_all(&out).await.unwrap();
    let mut got = Vec::new();
    let _ =
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await.expect("the connection was closed");
    // One of the frames the server sent is GOAWAY (type 7) with FRAME_SIZE_ERROR (6).
    let goaway = frames(&got).into_iter().find(|(t, _, p)| *t == 0x7 && p.len() >= 8).map(|(_, _, p)| code(&p[4..8]));
    assert_eq!(goaway, Some(6), "expected GOAWAY(FRAME_SIZE_ERROR), got {} bytes", got.len());
    // The real peer's connection is untouched.
    for _ in 0..3 {
        request(&p.aws).await.unwrap();
    }
}

const PREFACE_AND_SETTINGS: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// A TLS connection to gcp-1's TCP tunnel port with aws-1's real identity, so that what is sent
/// on it reaches HTTP/2 rather than dying in TLS.
async fn raw_peer(p: &Pair) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tls = aws_tunnel_client(&p._dir.path().join("aws-1"));
    let name = rustls_pki_types::ServerName::try_from("gcp-1").unwrap();
    tls.connect(name, TcpStream::connect(p.gcp.addrs.tunnel_tcp.unwrap()).await.unwrap()).await.unwrap()
}

/// A tunnel TLS client presenting the aws-1 gateway identity in `certs` (cert, key, bundle).
fn aws_tunnel_client(certs: &std::path::Path) -> tokio_rustls::TlsConnector {
    use skybridge_api::tls::{CertStore, ServerExpectation, TlsFiles};
    let files = TlsFiles::in_dir(certs);
    let role = skybridge_api::identity::Role::Gateway(ClusterId::new("aws-1").unwrap());
    let store = CertStore::load(files, TD, role).unwrap();
    let cfg = store.client_config(ServerExpectation::GatewayNamedByServerName, &[skybridge_api::TUNNEL_ALPN]).unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
}

/// The HTTP/2 frames in `b`: (type, stream id, payload).
fn frames(b: &[u8]) -> Vec<(u8, u32, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 9 <= b.len() {
        let len = usize::from(b[at]) << 16 | usize::from(b[at + 1]) << 8 | usize::from(b[at + 2]);
        let id = code(&b[at + 5..at + 9]) & 0x7fff_ffff;
        let end = (at + 9 + len).min(b.len());
        out.push((b[at + 3], id, &b[at + 9..end]));
        at += 9 + len;
    }
    out
}

fn code(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_flood_past_the_stream_limit_is_refused_per_stream() {
    let p = pair(false, "[routing]\ntcp_fallback = \"always\"\n", http_backend("gcp-1").await).await;
    request(&p.aws).await.unwrap();
    let mut s = raw_peer(&p).await;
    // 1,100 streams opened at once, ignoring the server's limit of 1,024 (limits.max_streams_per_peer).
    let path = b"/skybridge.tunnel.v1/stream";
    let mut block = vec![0x83, 0x87, 0x04, path.len() as u8];
    block.extend_from_slice(path);
    block.extend_from_slice(&[0x01, 5]);
    block.extend_from_slice(b"gcp-1");
    let mut out = PREFACE_AND_SETTINGS.to_vec();
    for i in 0..1100u32 {
        out.extend_from_slice(&[0, 0, block.len() as u8, 0x1, 0x4]);
        out.extend_from_slice(&(2 * i + 1).to_be_bytes());
        out.extend_from_slice(&block);
    }
    s.write_all(&out).await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let refused = async {
        loop {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return false;
            }
            got.extend_from_slice(&buf[..n]);
            // RST_STREAM (type 3) with REFUSED_STREAM (7) for every stream past the limit.
            if frames(&got).iter().filter(|(t, _, p)| *t == 0x3 && p.len() == 4 && code(p) == 7).count() >= 76 {
                return true;
            }
        }
    };
    let ok = tokio::time::timeout(Duration::from_secs(10), refused).await;
    assert_eq!(ok, Ok(true), "the streams past the limit were not refused one by one");
    // The real peer's connection is untouched.
    for _ in 0..3 {
        request(&p.aws).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_request_that_is_not_a_tunnel_stream_gets_a_404_and_is_counted() {
    let p = pair(false, "[routing]\ntcp_fallback = \"always\"\n", http_backend("gcp-1").await).await;
    request(&p.aws).await.unwrap();
    let mut s = raw_peer(&p).await;
    // GET / (static table: :method GET, :path /, :scheme https), authority gcp-1.
    let block = [0x82, 0x84, 0x87, 0x01, 5, b'g', b'c', b'p', b'-', b'1'];
    let mut out = PREFACE_AND_SETTINGS.to_vec();
    out.extend_from_slice(&[0, 0, block.len() as u8, 0x1, 0x5, 0, 0, 0, 1]);
    out.extend_from_slice(&block);
    s.write_all(&out).await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    let answered = async {
        loop {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return false;
            }
            got.extend_from_slice(&buf[..n]);
            // HEADERS (type 1) on stream 1 carrying :status 404 (static index 13: 0x8d).
            if frames(&got).iter().any(|(t, id, p)| *t == 0x1 && *id == 1 && p.first() == Some(&0x8d)) {
                return true;
            }
        }
    };
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), answered).await, Ok(true), "no 404 for a GET");
    until("the refusal is counted", Duration::from_secs(3), async || {
        metric(
            &metrics(&p.gcp).await,
            r#"skybridge_gateway_refusals_total{listener="ingress_tcp",reason="bad_request"}"#,
        ) >= 1.0
    })
    .await;
    request(&p.aws).await.unwrap();
}
