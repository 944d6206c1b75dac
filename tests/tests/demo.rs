//! `skybridge demo`: in-process through its library API (every sample service answered by the
//! right cluster through every gateway, a cut link failing over, ports free after shutdown),
//! and the real binary started and stopped with SIGINT.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use skybridge_cli::demo::{self, CLUSTERS, DemoOptions, Layout, Ports, Readiness, SERVICES};
use skybridge_tests::{Proc, free_tcp, wait_ready};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `method path` with `Host: host` on `addr`: the status code and the body.
async fn request(addr: SocketAddr, method: &str, host: &str, path: &str) -> (u16, String) {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head =
            format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let out = tokio::time::timeout(Duration::from_secs(10), attempt).await.expect("an answer within 10 s");
    let code = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

/// Polls `f` every 100 ms for up to `within`.
async fn until(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < within {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {within:?} waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_is_answered_by_the_right_cluster_and_shutdown_frees_everything() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let opts = DemoOptions {
        api: "127.0.0.1:0".parse().unwrap(),
        ports: Ports::Ephemeral,
        // A loaded CI machine may miss a first probe or measure it slow; the demo waits until
        // every route has settled on the expected cluster.
        settle_timeout: Duration::from_secs(40),
        ..DemoOptions::default()
    };
    let started = Instant::now();
    let d = demo::start(opts).await.unwrap();
    assert_eq!(d.wait_ready().await.unwrap(), Readiness::Ready);
    println!("demo ready (routes settled) {:?} after start", started.elapsed());

    // Every service through every gateway: the local copy where there is one, else the copy
    // with the lowest RTT. Several requests each, so a lucky first pick does not pass.
    for (from, gw) in d.gateways.iter().enumerate() {
        for svc in &SERVICES {
            let want = CLUSTERS[d.rtt.expected_answer(from, svc)].id;
            for n in 0..3 {
                let path = format!("/from/{}/{n}", gw.cluster.id);
                let (code, body) = request(gw.addrs.http, "GET", &svc.host(), &path).await;
                if (code, &body) != (200, &format!("hello from {want}: {} {path}\n", svc.short())) {
                    let (_, status) = request(gw.addrs.admin, "GET", "localhost", "/status").await;
                    let status: Value = serde_json::from_str(&status).unwrap_or_default();
                    panic!(
                        "{} via {}: expected {want}, got {code} {body:?}; the gateway's peers: {:#}",
                        svc.short(),
                        gw.cluster.id,
                        status["peers"]
                    );
                }
            }
        }
    }

    // The banner points at the dashboard, and the dashboard is there.
    let banner = d.banner(&Readiness::Ready);
    assert!(banner.contains(&format!("dashboard     http://{}/\n", d.api)), "{banner}");
    let (code, page) = request(d.api, "GET", "localhost", "/").await;
    assert!(code == 200 && page.contains("<title>"), "{code} {page}");

    // The federator's API lists every service with the clusters that run it.
    let (code, body) = request(d.api, "GET", "localhost", "/api/v1/services").await;
    assert_eq!(code, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).unwrap();
    for svc in &SERVICES {
        let entry = listed["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["fqdn"] == svc.host().as_str())
            .unwrap_or_else(|| panic!("{} missing from {body}", svc.host()));
        let mut clusters: Vec<&str> =
            entry["clusters"].as_array().unwrap().iter().map(|c| c["cluster"].as_str().unwrap()).collect();
        clusters.sort();
        let mut want: Vec<&str> = svc.clusters.iter().map(|&c| CLUSTERS[c].id).collect();
        want.sort();
        assert_eq!(clusters, want, "{}", svc.host());
    }

    // Cutting aws<->azure through the demo's endpoint: azure's payments move to gcp; restored,
    // they come back to aws.
    let azure = d.gateways[2].addrs.http;
    let payments = SERVICES.iter().find(|s| s.name == "payments").unwrap().host();
    let (code, body) = request(d.links_api, "POST", "localhost", "/links/aws/azure/cut").await;
    assert_eq!(code, 200, "{body}");
    assert!(d.link("aws-demo", "azure-demo").unwrap().is_cut());
    until("payments from azure fail over to gcp", Duration::from_secs(15), async || {
        request(azure, "GET", &payments, "/").await.1.starts_with("hello from gcp-demo:")
    })
    .await;
    let (code, body) = request(d.links_api, "POST", "localhost", "/links/azure-demo/aws-demo/restore").await;
    assert_eq!(code, 200, "{body}");
    until("payments from azure come back to aws", Duration::from_secs(15), async || {
        request(azure, "GET", &payments, "/").await.1.starts_with("hello from aws-demo:")
    })
    .await;
    let (code, _) = request(d.links_api, "POST", "localhost", "/links/aws/mars/cut").await;
    assert_eq!(code, 404);

    // After shutdown every port is free again and the temporary directory is gone.
    let mut tcp = vec![d.api, d.control, d.links_api];
    tcp.extend(d.gateways.iter().flat_map(|g| [g.addrs.http, g.addrs.sni, g.addrs.admin]));
    let mut udp: Vec<SocketAddr> = d.gateways.iter().map(|g| g.addrs.tunnel).collect();
    udp.extend(d.relays.values());
    let dir = d.dir.clone();
    assert!(dir.join("catalog.toml").exists());
    d.shutdown().await;
    // A QUIC endpoint's socket closes when its driver task, woken by the last handle's drop,
    // exits: a moment after `shutdown` returns. Each port must be free within 2 s.
    let free_soon = async |bind: &dyn Fn() -> std::io::Result<()>| {
        for _ in 0..40 {
            if bind().is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bind()
    };
    for a in tcp {
        let bind = || std::net::TcpListener::bind(a).map(drop);
        free_soon(&bind).await.unwrap_or_else(|e| panic!("TCP {a} still in use: {e}"));
    }
    for a in udp {
        let bind = || std::net::UdpSocket::bind(a).map(drop);
        free_soon(&bind).await.unwrap_or_else(|e| panic!("UDP {a} still in use: {e}"));
    }
    assert!(!dir.exists(), "{} removed", dir.display());
}

/// A base port whose whole demo range is free right now (TCP and UDP), trying a few at random
/// below the kernel's ephemeral range.
fn free_base_port() -> u16 {
    for _ in 0..50 {
        let base = 20_000 + 700 * fastrand::u16(0..15);
        let layout = Layout::new(Ports::Base(base)).unwrap();
        let tcp: Result<Vec<_>, _> = layout.tcp_addrs().into_iter().map(std::net::TcpListener::bind).collect();
        let udp: Result<Vec<_>, _> = layout.udp_addrs().into_iter().map(std::net::UdpSocket::bind).collect();
        if tcp.is_ok() && udp.is_ok() {
            return base;
        }
    }
    panic!("no free port range for the demo");
}

/// `GET /` with `Host: host` through a gateway's HTTP listener (blocking): the body.
fn get_body(addr: SocketAddr, host: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

#[test]
fn the_binary_runs_the_demo_and_exits_0_on_sigint() {
    let base = free_base_port();
    let api = free_tcp(1)[0];
    let layout = Layout::new(Ports::Base(base)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("demo.log");
    let scratch = tmp.path().join("tmp");
    std::fs::create_dir(&scratch).unwrap();
    let mut demo = Proc::spawn_env(
        &["demo", "--base-port", &base.to_string(), "--api", &api.to_string()],
        &[("TMPDIR", scratch.to_str().unwrap())],
        log,
    );
    assert!(wait_ready(api, Duration::from_secs(60)), "federator API not ready:\n{}", demo.log_text());
    // inventory runs only in azure: an answer through aws's gateway crossed the emulated WAN.
    let aws_http = layout.gateways[0].http;
    let started = Instant::now();
    let mut body = None;
    while started.elapsed() < Duration::from_secs(30) {
        body = get_body(aws_http, "inventory.shop.svc.clusterset.local");
        if body.as_deref() == Some("hello from azure-demo: inventory.shop /\n") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(body.as_deref(), Some("hello from azure-demo: inventory.shop /\n"), "{}", demo.log_text());
    assert!(std::fs::read_dir(&scratch).unwrap().next().is_some(), "the demo works in a directory under TMPDIR");

    let ok = Command::new("kill").args(["-INT", &demo.child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill -INT failed");
    let stopped = Instant::now();
    assert_eq!(demo.wait_exit(Duration::from_secs(10)), Some(0), "{}", demo.log_text());
    println!("demo exited {:?} after SIGINT", stopped.elapsed());
    assert!(demo.log_text().contains("demo stopped"), "{}", demo.log_text());
    assert!(std::fs::read_dir(&scratch).unwrap().next().is_none(), "the temporary directory is removed");
    assert!(get_body(aws_http, "web.shop.svc.clusterset.local").is_none(), "the gateway is gone");
}
