//! Handshake flood benchmark (issue 14): a real gateway process receives 1k, 5k and 20k QUIC
//! client Initials (ALPN `skybridge/1`, each a fresh connection that never goes further), from
//! one source address and from 64, while a legitimate peer opens a new connection (mutual TLS
//! and one stream) every 200 ms. Reports the gateway's peak RSS, CPU seconds, the bytes it sent
//! back (counted at the flooding sockets), its log lines, and the peer's connections. Run with
//! `bench/handshake-flood.sh` (release build).
//!
//! Environment: `BENCH_RATE` (Initials per second, 10000, like the reported flood),
//! `BENCH_SIZES` (`1000,5000,20000`), `BENCH_SOURCES` (`1,64`).

#[path = "../../gateway/tests/common/flood.rs"]
mod flood;
#[path = "../../gateway/tests/common/quic.rs"]
mod quic;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flood::{Flooder, loopback_sources, rss_bytes};
use skybridge_api::ca::{self, PemPair};
use skybridge_api::header::{OpenRequest, Status};
use skybridge_api::identity::SpiffeId;
use skybridge_api::model::{ClusterId, ServiceKey};
use skybridge_tests::{Proc, free_tcp, free_udp, wait_ready, write_identity};

const TD: &str = "bench.skybridge";

fn env_list(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name).unwrap_or_else(|_| default.into()).split(',').filter_map(|v| v.trim().parse().ok()).collect()
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32, ticks_per_s: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / ticks_per_s
}

fn clock_ticks() -> f64 {
    let out = std::process::Command::new("getconf").arg("CLK_TCK").output().ok();
    out.and_then(|o| String::from_utf8(o.stdout).ok()).and_then(|s| s.trim().parse().ok()).unwrap_or(100.0)
}

struct Run {
    initials: u64,
    sources: u64,
    send_secs: f64,
    sent_bytes: u64,
    received_bytes: u64,
    base_rss: u64,
    peak_rss: u64,
    after_rss: u64,
    cpu: f64,
    peer_ok: usize,
    peer_total: usize,
    peer_worst: Duration,
    log_lines: usize,
}

fn probe() -> Vec<u8> {
    quic::header(&OpenRequest {
        service: ServiceKey::new("bench", "probe").unwrap(),
        port: 1,
        source: ClusterId::new("gcp-1").unwrap(),
        trace: None,
        probe: true,
        proof: false,
    })
}

async fn peer_connects(tunnel: SocketAddr, id: &PemPair) -> Result<Duration, String> {
    let start = Instant::now();
    let conn = tokio::time::timeout(Duration::from_secs(5), quic::connect(tunnel, Some(id)))
        .await
        .map_err(|_| "handshake over 5 s".to_owned())??;
    let (status, _) = tokio::time::timeout(Duration::from_secs(5), quic::raw_open(&conn, &probe()))
        .await
        .map_err(|_| "stream over 5 s".to_owned())??;
    conn.close(0u32.into(), b"done");
    if status != Status::Ok {
        return Err(format!("{status:?}"));
    }
    Ok(start.elapsed())
}

fn gateway_config(dir: &Path, tunnel: SocketAddr, admin: SocketAddr) -> String {
    let d = dir.display();
    format!(
        "[gateway]\ncluster = \"aws-1\"\ncloud = \"other\"\nregion = \"r\"\ntrust_domain = \"{TD}\"\n\
         [tls]\ncert = \"{d}/aws-1/cert.pem\"\nkey = \"{d}/aws-1/key.pem\"\ntrust_bundle = \"{d}/aws-1/ca.pem\"\n\
         [listen]\ntunnel = \"{tunnel}\"\nsni = \"off\"\nhttp = \"off\"\nadmin = \"{admin}\"\n"
    )
}

fn run(rt: &tokio::runtime::Runtime, dir: &Path, peer: &PemPair, initials: u64, sources: u64, rate: u64) -> Run {
    let (tunnel, admin) = (free_udp(1)[0], free_tcp(1)[0]);
    let cfg = dir.join(format!("gw-{initials}-{sources}.toml"));
    std::fs::write(&cfg, gateway_config(dir, tunnel, admin)).unwrap();
    let log = dir.join(format!("gw-{initials}-{sources}.log"));
    let gw = Proc::spawn(&["gateway", "--config", cfg.to_str().unwrap()], log);
    assert!(wait_ready(admin, Duration::from_secs(30)), "gateway not ready:\n{}", gw.log_text());
    let pid = gw.child.id();
    rt.block_on(peer_connects(tunnel, peer)).expect("a peer connects before the flood");
    std::thread::sleep(Duration::from_millis(300));
    let ticks = clock_ticks();
    let (base_rss, cpu_before, lines_before) =
        (rss_bytes(&pid.to_string()), cpu_seconds(pid, ticks), gw.log_text().lines().count());

    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(base_rss));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(&pid.to_string()), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let addrs = if sources == 1 { vec!["127.0.0.2".parse().unwrap()] } else { loopback_sources(sources as usize) };
    let started = Instant::now();
    let flood = std::thread::spawn(move || {
        let mut f = Flooder::new(tunnel, &addrs);
        f.send(initials, rate);
        (f, started.elapsed())
    });
    let attempts = rt.block_on(async {
        let mut out = Vec::new();
        while !flood.is_finished() {
            out.push(peer_connects(tunnel, peer).await);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        out
    });
    let (flooder, send_time) = flood.join().unwrap();
    // Replies and retransmissions to admitted handshakes come within the handshake timeout (3 s).
    std::thread::sleep(Duration::from_secs(4));
    let totals = flooder.finish();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let r = Run {
        initials,
        sources,
        send_secs: send_time.as_secs_f64(),
        sent_bytes: totals.sent_bytes,
        received_bytes: totals.received_bytes,
        base_rss,
        peak_rss: peak.load(Ordering::Relaxed),
        after_rss: rss_bytes(&pid.to_string()),
        cpu: cpu_seconds(pid, ticks) - cpu_before,
        peer_ok: attempts.iter().filter(|a| a.is_ok()).count(),
        peer_total: attempts.len(),
        peer_worst: attempts.iter().filter_map(|a| a.as_ref().ok()).max().copied().unwrap_or_default(),
        log_lines: gw.log_text().lines().count() - lines_before,
    };
    drop(gw);
    r
}

fn mb(b: u64) -> String {
    format!("{:.1}", b as f64 / 1_048_576.0)
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rate = env_list("BENCH_RATE", "10000")[0];
    let sizes = env_list("BENCH_SIZES", "1000,5000,20000");
    let source_counts = env_list("BENCH_SOURCES", "1,64");
    let dir = tempfile::tempdir().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let ca_pair = ca::init(TD, now, 1).unwrap();
    let gw_id = SpiffeId::gateway(TD, ClusterId::new("aws-1").unwrap());
    write_identity(&dir.path().join("aws-1"), &ca::issue(&ca_pair, &gw_id, &[], now, 1).unwrap(), &ca_pair.cert_pem);
    let peer_id = SpiffeId::gateway(TD, ClusterId::new("gcp-1").unwrap());
    let peer = ca::issue(&ca_pair, &peer_id, &[], now, 1).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();

    println!("binary: {}", skybridge_tests::skybridge_bin().display());
    println!("flood rate: {rate} Initials/s; peer: a new connection + one stream every 200 ms during the flood\n");
    println!(
        "| Initials | sources | sent in s | sent MB | replied MB | reply/sent | RSS before MB | peak RSS MB | RSS after MB | CPU s | peer connects ok | worst peer connect ms | log lines |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &sources in &source_counts {
        for &n in &sizes {
            let r = run(&rt, dir.path(), &peer, n, sources, rate);
            println!(
                "| {} | {} | {:.2} | {} | {} | {:.2} | {} | {} | {} | {:.2} | {}/{} | {:.0} | {} |",
                r.initials,
                r.sources,
                r.send_secs,
                mb(r.sent_bytes),
                mb(r.received_bytes),
                r.received_bytes as f64 / r.sent_bytes.max(1) as f64,
                mb(r.base_rss),
                mb(r.peak_rss),
                mb(r.after_rss),
                r.cpu,
                r.peer_ok,
                r.peer_total,
                r.peer_worst.as_secs_f64() * 1000.0,
                r.log_lines
            );
        }
    }
}
