//! A QUIC handshake flood: real client Initials (ALPN `skybridge/1`, each from a fresh
//! connection with its own connection IDs) that never go further. Built with quinn-proto's
//! client state machine, which produces the first flight and is then dropped, so nothing ever
//! answers the server. Replies are counted at the flooding sockets.
//!
//! Shared by `gateway/tests/handshake_flood.rs` and `tests/benches/handshake_flood.rs`
//! (included by path, next to `quic.rs` whose certificate verifier it uses): it depends only
//! on std, rustls and quinn-proto.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a flood sent and got back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub initials: u64,
    pub sent_datagrams: u64,
    pub sent_bytes: u64,
    pub received_datagrams: u64,
    pub received_bytes: u64,
}

/// Floods `target` from one UDP socket per source address.
pub(crate) struct Flooder {
    target: SocketAddr,
    sockets: Vec<Arc<UdpSocket>>,
    config: quinn_proto::ClientConfig,
    stop: Arc<AtomicBool>,
    received: Arc<(AtomicU64, AtomicU64)>,
    receivers: Vec<JoinHandle<()>>,
    totals: Totals,
}

impl Flooder {
    /// Binds one socket per address in `sources` (any 127.0.0.0/8 address works on Linux
    /// without configuration) and starts counting what comes back.
    pub(crate) fn new(target: SocketAddr, sources: &[IpAddr]) -> Flooder {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(super::quic::AnyServer(provider)))
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"skybridge/1".to_vec()];
        let quic = quinn_proto::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let config = quinn_proto::ClientConfig::new(Arc::new(quic));
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let mut sockets = Vec::new();
        let mut receivers = Vec::new();
        for ip in sources {
            let s = Arc::new(UdpSocket::bind(SocketAddr::new(*ip, 0)).expect("bind a flooding socket"));
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            let (s2, stop2, rx) = (s.clone(), stop.clone(), received.clone());
            receivers.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stop2.load(Ordering::Relaxed) {
                    if let Ok(n) = s2.recv(&mut buf) {
                        rx.0.fetch_add(1, Ordering::Relaxed);
                        rx.1.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }));
            sockets.push(s);
        }
        Flooder { target, sockets, config, stop, received, receivers, totals: Totals::default() }
    }

    /// Sends the first flight of `n` new connections, spread over the sources, at about
    /// `per_second` connections a second.
    pub(crate) fn send(&mut self, n: u64, per_second: u64) {
        let start = Instant::now();
        let mut endpoint = None;
        let mut buf = Vec::with_capacity(4096);
        for i in 0..n {
            // A fresh client endpoint now and then, so its connection table stays small.
            if i % 512 == 0 {
                endpoint = Some(quinn_proto::Endpoint::new(Arc::default(), None, false, None));
            }
            let ep = endpoint.as_mut().expect("set above");
            let Ok((_, mut conn)) = ep.connect(Instant::now(), self.config.clone(), self.target, "flood") else {
                continue;
            };
            let socket = &self.sockets[i as usize % self.sockets.len()];
            loop {
                buf.clear();
                let Some(t) = conn.poll_transmit(Instant::now(), 1, &mut buf) else { break };
                if socket.send_to(&buf[..t.size], t.destination).is_ok() {
                    self.totals.sent_datagrams += 1;
                    self.totals.sent_bytes += t.size as u64;
                }
            }
            self.totals.initials += 1;
            let due = start + Duration::from_secs_f64((i + 1) as f64 / per_second as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }

    /// Totals so far (what came back keeps being counted until [`Flooder::finish`]).
    pub(crate) fn totals(&self) -> Totals {
        Totals {
            received_datagrams: self.received.0.load(Ordering::Relaxed),
            received_bytes: self.received.1.load(Ordering::Relaxed),
            ..self.totals
        }
    }

    /// Stops counting and returns the totals.
    pub(crate) fn finish(self) -> Totals {
        self.stop.store(true, Ordering::Relaxed);
        let totals = self.totals();
        for r in self.receivers {
            let _ = r.join();
        }
        totals
    }
}

/// `n` loopback source addresses 127.1.x.y (all route to `lo` on Linux).
pub(crate) fn loopback_sources(n: usize) -> Vec<IpAddr> {
    (0..n).map(|i| IpAddr::from([127, 1, (i / 250) as u8, (i % 250 + 1) as u8])).collect()
}

/// Resident set size of process `pid` ("self" for this one), in bytes, from /proc.
pub(crate) fn rss_bytes(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
