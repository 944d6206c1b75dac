//! The gateway's `clusterset.local` DNS server, queried with Debian's `dig` (bind9-dnsutils,
//! which `scripts/test.sh` installs): truncation and TCP fallback, a query flood held to the
//! rate while the data path keeps serving, TCP connection bounds, and garbage on both transports.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{GwSpec, Pki, backends, free_udp, metric, service};
use skybridge_gateway::app::Running;
use skybridge_gateway::dns::zone::query_bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One gateway, aws-1, hosting `web.prod` (HTTP) and knowing `payments.prod` (TLS) at gcp-1;
/// DNS on with `dns` appended to the config.
async fn gateway(dns: &str) -> Running {
    common::init();
    let pki = Pki::new();
    let web = backends::http("aws-1").await;
    let extra = [
        service("prod", "web", &["aws-1"], 80, "http", &[web]),
        service("prod", "payments", &["gcp-1"], 443, "tls", &[]),
        format!("\n[dns]\n{dns}\n"),
    ]
    .concat();
    let spec = GwSpec {
        cluster: "aws-1".into(),
        tunnel: free_udp(),
        certs: pki.issue_files("aws-1", "aws-1", 1),
        peers: vec![("gcp-1".into(), free_udp())],
        extra,
    };
    let text = spec.toml().replace("admin = \"127.0.0.1:0\"\n", "admin = \"127.0.0.1:0\"\ndns = \"127.0.0.1:0\"\n");
    let cfg = skybridge_gateway::config::Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    skybridge_gateway::app::start(cfg).await.unwrap()
}

/// `dig` at the gateway's DNS address; its whole output.
fn dig(at: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .args([&format!("@{}", at.ip()), "-p", &at.port().to_string(), "+tries=1", "+time=3"])
        .args(args)
        .output()
        .expect("dig is not installed: run scripts/test.sh (Debian package bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How many A records of 127.0.1.x are in dig's answer section.
fn a_records(out: &str) -> usize {
    out.lines()
        .filter(|l| matches!(l.split_whitespace().collect::<Vec<_>>()[..], [_, _, "IN", "A", ip] if ip.starts_with("127.0.1.")))
        .count()
}

async fn dig_async(at: SocketAddr, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || dig(at, &args.iter().map(String::as_str).collect::<Vec<_>>())).await.unwrap()
}

#[tokio::test]
async fn a_large_answer_is_truncated_over_udp_and_dig_retries_over_tcp() {
    // 60 answer addresses: about 1 KB of A records, past 512 bytes without EDNS.
    let many: Vec<String> = (1..=60).map(|i| format!("\"127.0.1.{i}\"")).collect();
    let gw = gateway(&format!("answer = [{}]", many.join(", "))).await;
    let at = gw.addrs.dns.expect("dns on");

    let out = dig_async(at, &["+noedns", "payments.prod.svc.clusterset.local", "A"]).await;
    assert!(out.contains("Truncated, retrying in TCP mode"), "{out}");
    assert!(out.contains("status: NOERROR") && out.contains(" aa"), "{out}");
    assert_eq!(a_records(&out), 60, "{out}");
    // With EDNS the same answer fits in one 1232-byte datagram.
    let out = dig_async(at, &["+bufsize=1232", "payments.prod.svc.clusterset.local", "A"]).await;
    assert!(!out.contains("Truncated"), "{out}");
    assert_eq!(a_records(&out), 60, "{out}");

    let admin = gw.addrs.admin;
    assert_eq!(
        metric(admin, "skybridge_gateway_dns_queries_total{transport=\"udp\",outcome=\"truncated\"}").await,
        1.0
    );
    assert!(metric(admin, "skybridge_gateway_dns_queries_total{transport=\"tcp\",outcome=\"answer\"}").await >= 1.0);
    gw.shutdown().await;
}

/// One HTTP request through the gateway's HTTP listener to the local `web.prod`; its latency.
async fn request(http: SocketAddr) -> Duration {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(http).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: web.prod.svc.clusterset.local\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.contains("hello from aws-1"), "{out}");
    t0.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_flood_is_held_to_the_rate_and_the_data_path_keeps_serving() {
    const RATE: u64 = 300;
    let gw = gateway(&format!("max_queries_per_second = {RATE}")).await;
    let (at, http) = (gw.addrs.dns.unwrap(), gw.addrs.http.unwrap());

    // A flood from another thread: as fast as one socket can send, for 2 s, counting answers.
    let flood = std::thread::spawn(move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_nonblocking(true).unwrap();
        let q = query_bytes(1, "web.prod.svc.clusterset.local.", hickory_proto::rr::RecordType::A, None);
        let (mut sent, mut answered, mut buf) = (0u64, 0u64, [0u8; 512]);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(2) {
            if s.send_to(&q, at).is_ok() {
                sent += 1;
            }
            while s.recv_from(&mut buf).is_ok() {
                answered += 1;
            }
        }
        // Late answers to queries the gateway had already taken.
        std::thread::sleep(Duration::from_millis(300));
        while s.recv_from(&mut buf).is_ok() {
            answered += 1;
        }
        (sent, answered, t0.elapsed())
    });
    // The data path during the flood: every request is served.
    let mut served = 0;
    while !flood.is_finished() {
        request(http).await;
        served += 1;
    }
    let (sent, answered, took) = flood.join().unwrap();
    assert!(served > 0);
    // One second of burst plus the rate: the rest was never read.
    let bound = RATE + (RATE as f64 * took.as_secs_f64()).ceil() as u64;
    assert!(sent > 5 * bound, "the flood was not a flood: {sent} sent");
    assert!(answered <= bound, "{answered} answers to {sent} queries in {took:?}: more than {bound}");
    assert!(answered >= RATE, "only {answered} answered");
    // After the flood the server answers again, to dig as to anyone.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = dig_async(at, &["+short", "web.prod.svc.clusterset.local"]).await;
    assert_eq!(out.trim(), "127.0.0.1");
    println!("flood: {sent} sent, {answered} answered in {took:?}; {served} HTTP requests served meanwhile");
    gw.shutdown().await;
}

#[tokio::test]
async fn tcp_connections_are_bounded_timed_out_and_survive_garbage() {
    let gw = gateway("max_tcp_connections = 2\ntcp_idle_timeout = \"300ms\"").await;
    let (at, admin) = (gw.addrs.dns.unwrap(), gw.addrs.admin);

    // Garbage in a well-framed message: FORMERR with the id, and the connection goes on.
    let mut s = TcpStream::connect(at).await.unwrap();
    let junk = [0x12u8, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x0c, 0, 1, 0, 1];
    s.write_all(&(junk.len() as u16).to_be_bytes()).await.unwrap();
    s.write_all(&junk).await.unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.unwrap();
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer[..2], &[0x12, 0x34]);
    assert_eq!(answer[3] & 0x0f, 1, "FORMERR");
    let good = query_bytes(7, "web.prod.svc.clusterset.local.", hickory_proto::rr::RecordType::A, None);
    s.write_all(&(good.len() as u16).to_be_bytes()).await.unwrap();
    s.write_all(&good).await.unwrap();
    s.read_exact(&mut len).await.unwrap();
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut answer).await.unwrap();
    assert_eq!((answer[3] & 0x0f, answer[7]), (0, 1), "NOERROR with one answer");

    // Two held (this one and another): the third is closed at once.
    let _second = TcpStream::connect(at).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut third = TcpStream::connect(at).await.unwrap();
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(2), third.read(&mut byte)).await.expect("closed at once");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert_eq!(metric(admin, "skybridge_gateway_dns_dropped_total{reason=\"tcp_limit\"}").await, 1.0);

    // Silent connections are closed after tcp_idle_timeout, which frees the slots.
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut byte)).await.expect("idle connection closed");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert!(metric(admin, "skybridge_gateway_dns_dropped_total{reason=\"tcp_timeout\"}").await >= 1.0);
    let out = dig_async(at, &["+tcp", "+short", "web.prod.svc.clusterset.local"]).await;
    assert_eq!(out.trim(), "127.0.0.1");

    // UDP garbage: a response is ignored, a truncated header is ignored, the server still answers.
    let u = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut response = good.clone();
    response[2] |= 0x80;
    for bad in [&response[..], &good[..5], &[0xffu8; 3000][..]] {
        u.send_to(bad, at).await.unwrap();
    }
    let out = dig_async(at, &["+short", "web.prod.svc.clusterset.local"]).await;
    assert_eq!(out.trim(), "127.0.0.1");
    assert!(metric(admin, "skybridge_gateway_dns_dropped_total{reason=\"not_a_query\"}").await >= 2.0);
    gw.shutdown().await;
}
