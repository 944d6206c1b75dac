//! WAN emulation for `skybridge demo`, tests and benchmarks: a userspace relay that adds delay,
//! jitter and loss to UDP datagrams (QUIC) and TCP streams between loopback addresses, and can
//! be cut (blackhole) and restored on command. The kernel's netem is not available here. The
//! test harness re-exports this module as `skybridge_tests::wan`.
//!
//! The scheduling decision ([`Impairment::schedule`]) is pure: the random draws come in as
//! arguments. The relay tasks only apply it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

/// One direction's impairment (applied to both directions of a link).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Impairment {
    /// One-way delay.
    pub delay: Duration,
    /// Added uniformly at random in `0..=jitter`.
    pub jitter: Duration,
    /// Probability (0..=1) that a datagram is dropped (UDP only; TCP never loses data).
    pub loss: f64,
}

impl Impairment {
    /// A fixed one-way delay.
    pub fn delay(delay: Duration) -> Self {
        Impairment { delay, ..Default::default() }
    }

    /// When a datagram received at `now` is delivered, or `None` when it is lost. `u_jitter` and
    /// `u_loss` are uniform draws in `0..1`.
    pub fn schedule(&self, now: Instant, u_jitter: f64, u_loss: f64) -> Option<Instant> {
        if u_loss < self.loss {
            return None;
        }
        Some(now + self.delay + self.jitter.mul_f64(u_jitter.clamp(0.0, 1.0)))
    }
}

/// Controls one emulated link; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Link {
    impairment: Arc<Mutex<Impairment>>,
    cut: Arc<AtomicBool>,
    /// UDP only: a firewall that drops UDP while TCP passes.
    udp_blocked: Arc<AtomicBool>,
}

impl Link {
    /// A link with `imp`.
    pub fn new(imp: Impairment) -> Self {
        Link { impairment: Arc::new(Mutex::new(imp)), cut: Arc::default(), udp_blocked: Arc::default() }
    }

    /// Changes the impairment from now on.
    pub fn set(&self, imp: Impairment) {
        *self.impairment.lock().unwrap_or_else(|e| e.into_inner()) = imp;
    }

    /// Cuts (true) or restores (false) the link: while cut, everything is dropped.
    pub fn blackhole(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }

    /// Whether the link is cut.
    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }

    /// Drops every UDP datagram (true) or lets them through again (false); TCP is unaffected,
    /// as behind a firewall that blocks UDP.
    pub fn block_udp(&self, blocked: bool) {
        self.udp_blocked.store(blocked, Ordering::SeqCst);
    }

    /// Whether UDP is blocked.
    pub fn is_udp_blocked(&self) -> bool {
        self.udp_blocked.load(Ordering::SeqCst)
    }

    /// A datagram's delivery time (`None`: cut, UDP blocked or lost).
    fn schedule(&self, now: Instant) -> Option<Instant> {
        if self.is_udp_blocked() {
            return None;
        }
        self.schedule_with(now, true)
    }

    /// A stream chunk's delivery time: as a datagram, but never lost (TCP retransmits), only
    /// dropped while the link is cut.
    fn schedule_stream(&self, now: Instant) -> Option<Instant> {
        self.schedule_with(now, false)
    }

    fn schedule_with(&self, now: Instant, lossy: bool) -> Option<Instant> {
        if self.is_cut() {
            return None;
        }
        let mut imp = *self.impairment.lock().unwrap_or_else(|e| e.into_inner());
        if !lossy {
            imp.loss = 0.0;
        }
        imp.schedule(now, fastrand::f64(), fastrand::f64())
    }
}

/// A running relay; its tasks stop when it is dropped (or, awaited, with [`Relay::stop`]).
pub struct Relay {
    /// Where clients connect (or send) instead of the target.
    pub addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Relay {
    /// Stops the relay and waits until its tasks are gone, so its port is free on return
    /// (dropping only requests the abort).
    pub async fn stop(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A datagram on its way: delivery time, payload, destination.
type Datagram = (Instant, Vec<u8>, SocketAddr);
/// Ordered by delivery time, then arrival (the sequence number).
type Queued = Reverse<(Instant, u64, Vec<u8>, SocketAddr)>;

/// Packets waiting for their delivery time, sent in time order (jitter may reorder them, as on
/// a real path). At most [`QUEUE`] wait; more are dropped, as a router's full queue would.
async fn deliver(sock: Arc<UdpSocket>, mut rx: mpsc::Receiver<Datagram>) {
    let mut heap: BinaryHeap<Queued> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        let next = heap.peek().map(|Reverse((at, ..))| *at);
        tokio::select! {
            got = rx.recv() => match got {
                Some((at, pkt, to)) => {
                    if heap.len() < QUEUE {
                        seq += 1;
                        heap.push(Reverse((at, seq, pkt, to)));
                    }
                }
                None => return,
            },
            _ = async { tokio::time::sleep_until(next.unwrap_or_else(Instant::now)).await }, if next.is_some() => {
                while let Some(Reverse((at, ..))) = heap.peek() {
                    if *at > Instant::now() {
                        break;
                    }
                    let Some(Reverse((_, _, pkt, to))) = heap.pop() else { break };
                    let _ = sock.send_to(&pkt, to).await;
                }
            }
        }
    }
}

/// Packets queued per direction before the relay drops more (a router queue).
const QUEUE: usize = 4096;

/// A UDP relay on `listen` to `target`: each client address gets its own upstream socket, so
/// replies find their way back.
pub async fn udp(listen: SocketAddr, target: SocketAddr, link: Link) -> io::Result<Relay> {
    udp_on(UdpSocket::bind(listen).await?, target, link)
}

/// [`udp`] on an already bound socket: lets a caller hand out the relay's address before the
/// target exists (the demo's gateways are configured with their relays' addresses).
pub fn udp_on(front: UdpSocket, target: SocketAddr, link: Link) -> io::Result<Relay> {
    let front = Arc::new(front);
    let addr = front.local_addr()?;
    let (to_clients, rx) = mpsc::channel(QUEUE);
    let span = tracing::debug_span!("wan_udp_relay", %addr, %target);
    let back = tokio::spawn(deliver(front.clone(), rx).instrument(span.clone()));
    let main = tokio::spawn(
        async move {
            let mut upstreams: HashMap<SocketAddr, mpsc::Sender<Datagram>> = HashMap::new();
            // Per-client tasks live in this set: aborting the relay drops it, which stops them.
            let mut per_client = tokio::task::JoinSet::new();
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((n, client)) = front.recv_from(&mut buf).await else { continue };
                let Some(at) = link.schedule(Instant::now()) else { continue };
                let tx = match upstreams.entry(client) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        let Ok(up) = UdpSocket::bind("127.0.0.1:0").await else { continue };
                        let up = Arc::new(up);
                        let (tx, rx) = mpsc::channel(QUEUE);
                        per_client.spawn(deliver(up.clone(), rx).in_current_span());
                        // Replies: target -> this client's upstream socket -> (impaired) -> client.
                        let (link, to_clients) = (link.clone(), to_clients.clone());
                        per_client.spawn(
                            async move {
                                let mut buf = vec![0u8; 65536];
                                while let Ok((n, _)) = up.recv_from(&mut buf).await {
                                    if let Some(at) = link.schedule(Instant::now()) {
                                        // A full queue drops the datagram, as a router would.
                                        let _ = to_clients.try_send((at, buf[..n].to_vec(), client));
                                    }
                                }
                            }
                            .in_current_span(),
                        );
                        e.insert(tx)
                    }
                };
                let _ = tx.try_send((at, buf[..n].to_vec(), target));
            }
        }
        .instrument(span),
    );
    Ok(Relay { addr, tasks: vec![main, back] })
}

/// A TCP relay on `listen` to `target`: data is delayed in order (jitter never reorders a
/// stream); while the link is cut, data is dropped and the connection stalls.
pub async fn tcp(listen: SocketAddr, target: SocketAddr, link: Link) -> io::Result<Relay> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let span = tracing::debug_span!("wan_tcp_relay", %addr, %target);
    let main = tokio::spawn(
        async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                while conns.try_join_next().is_some() {}
                let link = link.clone();
                conns.spawn(
                    async move {
                        let Ok(server) = TcpStream::connect(target).await else { return };
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        tokio::join!(pipe(cr, sw, link.clone()), pipe(sr, cw, link));
                    }
                    .in_current_span(),
                );
            }
        }
        .instrument(span),
    );
    Ok(Relay { addr, tasks: vec![main] })
}

async fn pipe(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, link: Link) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE);
    let writer = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    let reader = async move {
        let mut buf = vec![0u8; 65536];
        let mut last = Instant::now();
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let Some(at) = link.schedule_stream(Instant::now()) else { continue };
            last = last.max(at);
            if tx.send((last, buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_adds_delay_and_jitter_and_drops_by_loss() {
        let now = Instant::now();
        let imp = Impairment { delay: Duration::from_millis(40), jitter: Duration::from_millis(10), loss: 0.25 };
        assert_eq!(imp.schedule(now, 0.0, 0.5), Some(now + Duration::from_millis(40)));
        assert_eq!(imp.schedule(now, 1.0, 0.5), Some(now + Duration::from_millis(50)));
        assert_eq!(imp.schedule(now, 0.5, 0.2), None, "a draw under the loss rate drops");
        assert!(Impairment::default().schedule(now, 0.9, 0.0).is_some(), "no loss configured: never dropped");
    }

    async fn udp_echo() -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = s.recv_from(&mut buf).await {
                let _ = s.send_to(&buf[..n], from).await;
            }
        });
        addr
    }

    async fn udp_rtt(relay: SocketAddr) -> Option<Duration> {
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let start = std::time::Instant::now();
        c.send_to(b"ping", relay).await.unwrap();
        let mut buf = [0u8; 16];
        tokio::time::timeout(Duration::from_millis(800), c.recv_from(&mut buf)).await.ok().map(|_| start.elapsed())
    }

    #[tokio::test]
    async fn udp_relay_delays_both_ways_and_can_be_cut_and_restored() {
        let link = Link::new(Impairment::delay(Duration::from_millis(30)));
        let relay = udp("127.0.0.1:0".parse().unwrap(), udp_echo().await, link.clone()).await.unwrap();
        let rtt = udp_rtt(relay.addr).await.expect("echo through the relay");
        assert!(rtt >= Duration::from_millis(60), "two one-way delays: {rtt:?}");
        link.blackhole(true);
        assert_eq!(udp_rtt(relay.addr).await, None, "cut");
        link.blackhole(false);
        link.set(Impairment { loss: 1.0, ..Impairment::default() });
        assert_eq!(udp_rtt(relay.addr).await, None, "100% loss");
        link.set(Impairment::default());
        assert!(udp_rtt(relay.addr).await.is_some(), "restored");
        link.block_udp(true);
        assert_eq!(udp_rtt(relay.addr).await, None, "UDP blocked");
        link.block_udp(false);
        assert!(udp_rtt(relay.addr).await.is_some(), "UDP unblocked");
    }

    #[tokio::test]
    async fn stop_frees_the_port() {
        let relay = udp("127.0.0.1:0".parse().unwrap(), udp_echo().await, Link::default()).await.unwrap();
        let addr = relay.addr;
        assert!(udp_rtt(addr).await.is_some());
        relay.stop().await;
        UdpSocket::bind(addr).await.expect("the relay's port is free once stop returns");
    }

    #[tokio::test]
    async fn tcp_relay_delays_in_order() {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = server.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = server.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
        let link =
            Link::new(Impairment { delay: Duration::from_millis(20), jitter: Duration::from_millis(20), loss: 0.9 });
        let relay = tcp("127.0.0.1:0".parse().unwrap(), target, link).await.unwrap();
        let c = TcpStream::connect(relay.addr).await.unwrap();
        c.set_nodelay(true).unwrap();
        let start = std::time::Instant::now();
        // Twenty chunks in flight at once, 2 ms apart: each is delayed 20-40 ms, so a relay that
        // scheduled chunks independently would deliver later ones first. Loss does not apply to
        // a stream.
        let (mut rd, mut wr) = c.into_split();
        let writer = tokio::spawn(async move {
            for i in 0..20u8 {
                wr.write_all(&[i]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            wr
        });
        let mut got = vec![0u8; 20];
        rd.read_exact(&mut got).await.unwrap();
        let _wr = writer.await.unwrap();
        assert_eq!(got, (0..20).collect::<Vec<u8>>());
        // Both directions are delayed: at least 2 x 20 ms before the first byte returned.
        assert!(start.elapsed() >= Duration::from_millis(40), "{:?}", start.elapsed());
    }
}
