//! A QUIC handshake flood against the tunnel port (issue 14): thousands of client Initials that
//! never complete, from many source addresses. The gateway's memory must stay bounded, nothing
//! it sends back may exceed what it received, and a legitimate peer's new connections must keep
//! succeeding during the flood. In its own test binary so that the RSS read is this gateway's.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::flood::{Flooder, loopback_sources, rss_bytes};
use common::{GwSpec, Pki, free_udp, metric, quic};
use skybridge_api::header::{OpenRequest, Status};
use skybridge_api::model::{ClusterId, ServiceKey};

const INITIALS: u64 = 5000;
const MAX_HANDSHAKES: u64 = 64;

fn probe() -> Vec<u8> {
    quic::header(&OpenRequest {
        service: ServiceKey::new("prod", "probe").unwrap(),
        port: 1,
        source: ClusterId::new("gcp-1").unwrap(),
        trace: None,
        probe: true,
        proof: false,
    })
}

/// A new connection from a real peer, with one stream answered `ok`; how long it took.
async fn peer_connects(pki: &Pki, tunnel: std::net::SocketAddr) -> Result<Duration, String> {
    let start = Instant::now();
    let id = pki.issue("gcp-1", 1);
    let conn = tokio::time::timeout(Duration::from_secs(5), quic::connect(tunnel, Some(&id)))
        .await
        .map_err(|_| "handshake took over 5 s".to_owned())??;
    let (status, why) = tokio::time::timeout(Duration::from_secs(5), quic::raw_open(&conn, &probe()))
        .await
        .map_err(|_| "stream not answered in 5 s".to_owned())??;
    conn.close(0u32.into(), b"done");
    if status != Status::Ok {
        return Err(format!("probe answered {status:?}: {why}"));
    }
    Ok(start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_flood_keeps_memory_bounded_and_peers_connecting() {
    common::init();
    let pki = Pki::new();
    let gw = GwSpec {
        cluster: "aws-1".into(),
        tunnel: free_udp(),
        certs: pki.issue_files("aws-1", "aws-1", 1),
        peers: vec![("gcp-1".into(), free_udp())],
        extra: format!(
            "\n[limits]\nmax_handshakes = {MAX_HANDSHAKES}\nmax_handshakes_per_source = 4\nhandshake_retry_load = 0.5\n\
             handshake_timeout = \"2s\"\n"
        ),
    }
    .start()
    .await;
    let (tunnel, admin) = (gw.addrs.tunnel, gw.addrs.admin);
    // Warm up allocator pools and the peer path before the baseline.
    for _ in 0..3 {
        peer_connects(&pki, tunnel).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = rss_bytes("self");

    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes("self"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    // 5,000 Initials from 32 addresses in about two seconds, like the reported flood.
    let flood = std::thread::spawn(move || {
        let mut f = Flooder::new(tunnel, &loopback_sources(32));
        f.send(INITIALS, 2500);
        f
    });
    let mut during = Vec::new();
    while !flood.is_finished() {
        tokio::time::sleep(Duration::from_millis(250)).await;
        during.push(peer_connects(&pki, tunnel).await);
    }
    let flooder = flood.join().unwrap();
    let in_flight_after_flood = metric(admin, "skybridge_gateway_tunnel_handshakes_in_flight").await;
    // Replies to the flood (Retries, and the first flights of the few admitted handshakes and
    // their retransmissions) arrive within the handshake timeout.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let totals = flooder.finish();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let growth = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    let retried = metric(admin, r#"skybridge_gateway_tunnel_incoming_total{decision="retry"}"#).await;
    let accepted = metric(admin, r#"skybridge_gateway_tunnel_incoming_total{decision="accepted"}"#).await;
    let limited = metric(admin, r#"skybridge_gateway_tunnel_incoming_total{decision="per_source_limit"}"#).await
        + metric(admin, r#"skybridge_gateway_tunnel_incoming_total{decision="handshake_limit"}"#).await;
    eprintln!(
        "flood: {totals:?}; RSS baseline {} MiB, peak growth {} KiB; accepted {accepted}, retry {retried}; \
         in flight after the flood {in_flight_after_flood}; peer connects during: {during:?}",
        baseline >> 20,
        growth >> 10
    );

    assert!(totals.initials == INITIALS && totals.sent_bytes >= INITIALS * 1200, "{totals:?}");
    assert!(!during.is_empty(), "the flood ended before a peer tried to connect");
    for r in &during {
        assert!(r.is_ok(), "a legitimate peer could not connect during the flood: {during:?}");
    }
    // Before admission control, 5,000 Initials grew a gateway by ~700 MB; each admitted
    // handshake holds ~100-200 KB, and at most 64 (plus those draining) exist at once.
    assert!(growth < 48 << 20, "RSS grew {} MiB during the flood", growth >> 20);
    // Far below QUIC's 3x anti-amplification limit: most attempts got a small Retry.
    assert!(
        totals.received_bytes < totals.sent_bytes / 2,
        "replied {} bytes to {} bytes of Initials",
        totals.received_bytes,
        totals.sent_bytes
    );
    // The kernel may drop some of the flood on a busy machine; of what the gateway saw, all
    // but the first few dozen were asked to Retry.
    let seen = retried + accepted + limited;
    assert!(seen >= (INITIALS / 5) as f64, "the gateway saw only {seen} attempts");
    assert!(retried >= 0.9 * seen, "most attempts were asked to Retry: {retried} of {seen}");
    assert!(in_flight_after_flood <= MAX_HANDSHAKES as f64);
    // Every admitted handshake is released once it times out.
    assert_eq!(metric(admin, "skybridge_gateway_tunnel_handshakes_in_flight").await, 0.0);
    // A new peer connection after the flood is as good as before.
    peer_connects(&pki, tunnel).await.unwrap();
}
