//! Two gateways whose tunnel runs through the WAN relay: the QUIC path shows the emulated
//! delay, a cut stops new connections, and a restore brings them back.

use std::net::SocketAddr;
use std::time::Duration;

use skybridge_api::model::ClusterId;
use skybridge_gateway::app as gw_app;
use skybridge_gateway::config::Config as GwConfig;
use skybridge_tests::wan::{self, Impairment, Link};
use skybridge_tests::{free_udp, http_backend, peer_gateway_toml, write_identities};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TD: &str = "wan.test";

fn config(
    dir: &std::path::Path,
    cluster: &str,
    tunnel: SocketAddr,
    peer: (&str, SocketAddr),
    services: &str,
) -> GwConfig {
    GwConfig::parse(&peer_gateway_toml(dir, TD, cluster, cluster, tunnel, peer, services)).unwrap()
}

/// `GET /` with `Host: web.prod` through `gw`; the response, or None within `wait`.
async fn get(gw: &gw_app::Running, wait: Duration) -> Option<String> {
    let attempt = async {
        let mut s = TcpStream::connect(gw.addrs.http.unwrap()).await.ok()?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: web.prod\r\nConnection: close\r\n\r\n").await.ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        Some(out)
    };
    tokio::time::timeout(wait, attempt).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tunnel_runs_through_the_emulated_wan() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_identities(d, TD, &["aws-1", "gcp-1"]);
    let [aws_tunnel, gcp_tunnel] = free_udp(2)[..] else { unreachable!() };
    // aws-1 reaches gcp-1 only through the relay: 25 ms each way.
    let link = Link::new(Impairment::delay(Duration::from_millis(25)));
    let relay = wan::udp("127.0.0.1:0".parse().unwrap(), gcp_tunnel, link.clone()).await.unwrap();
    let backend = http_backend("gcp-1").await;
    let web = |local: &str| {
        format!(
            "[[services]]\nnamespace = \"prod\"\nname = \"web\"\nclusters = [\"gcp-1\"]\n[[services.ports]]\nport = 80\nprotocol = \"http\"\nendpoints = [{local}]\n"
        )
    };
    let gcp = gw_app::start(config(d, "gcp-1", gcp_tunnel, ("aws-1", aws_tunnel), &web(&format!("\"{backend}\""))))
        .await
        .unwrap();
    let aws = gw_app::start(config(d, "aws-1", aws_tunnel, ("gcp-1", relay.addr), &web(""))).await.unwrap();

    let first = get(&aws, Duration::from_secs(10)).await.expect("a response through the relay");
    assert!(first.ends_with("hello from gcp-1\n"), "{first}");
    // The QUIC path's RTT estimate (sampled every second) includes both emulated delays.
    let peer = ClusterId::new("gcp-1").unwrap();
    let mut rtt = None;
    for _ in 0..50 {
        rtt = aws.context().pool.paths().get(&peer).and_then(|p| p.health.srtt());
        if rtt.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rtt.is_some_and(|d| d >= Duration::from_millis(50)), "rtt {rtt:?}");

    // Cut: no answer for new connections; restored: answers again.
    link.blackhole(true);
    assert!(get(&aws, Duration::from_secs(2)).await.is_none_or(|r| !r.ends_with("hello from gcp-1\n")));
    link.blackhole(false);
    let mut back = None;
    for _ in 0..20 {
        back = get(&aws, Duration::from_secs(3)).await.filter(|r| r.ends_with("hello from gcp-1\n"));
        if back.is_some() {
            break;
        }
    }
    assert!(back.is_some(), "traffic returns after the cut is restored");
    drop((aws, gcp, relay));
}
