use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

const LIMITS: HttpLimits = HttpLimits {
    max_connections: 4,
    header_timeout: Duration::from_millis(600),
    idle_timeout: Duration::from_millis(1200),
};

type Events = Arc<Mutex<Vec<ServeEvent>>>;

async fn start() -> (SocketAddr, CancellationToken, Events, tokio::task::JoinHandle<()>) {
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/upload", post(|body: String| async move { format!("{} bytes\n", body.len()) }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let events: Events = Arc::default();
    let seen = events.clone();
    let task = tokio::spawn(serve_router("test", listener, router, Transport::Plain, LIMITS, stop.clone(), move |e| {
        seen.lock().unwrap().push(e)
    }));
    (addr, stop, events, task)
}

async fn get_healthz(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await.unwrap().unwrap();
    out
}

/// How long until the server closes `s` (reading and discarding what it sends).
async fn closed_after(s: &mut TcpStream, start: Instant) -> Duration {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.expect("closed within 10 s") {
            Ok(0) | Err(_) => return start.elapsed(),
            Ok(_) => {}
        }
    }
}

fn count(events: &Events, e: ServeEvent) -> usize {
    events.lock().unwrap().iter().filter(|x| **x == e).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_give_way_to_new_ones() {
    let (addr, stop, events, task) = start().await;
    let mut silent = Vec::new();
    for _ in 0..LIMITS.max_connections {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // At the cap, a probe is still answered: it takes the slot of the oldest silent socket,
    // which is closed at once rather than at the header timeout.
    let start = Instant::now();
    assert!(get_healthz(addr).await.starts_with("HTTP/1.1 200"));
    let after = closed_after(&mut silent[0], start).await;
    assert!(after < LIMITS.header_timeout / 2, "{after:?}");
    assert_eq!(count(&events, ServeEvent::Evicted), 1);
    assert_eq!(count(&events, ServeEvent::Refused), 0);
    stop.cancel();
    task.await.unwrap();
    assert_eq!(count(&events, ServeEvent::Opened), count(&events, ServeEvent::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_sent_a_byte_fill_the_cap_then_are_closed() {
    let (addr, stop, events, task) = start().await;
    let start = Instant::now();
    let mut started = Vec::new();
    for _ in 0..LIMITS.max_connections {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"G").await.unwrap();
        started.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Past the cap with nothing evictable: a clear refusal, at once.
    let refused = get_healthz(addr).await;
    assert!(refused.starts_with("HTTP/1.1 503") && refused.contains("limit 4"), "{refused}");
    // They are closed at the header timeout, and the server answers again.
    for s in &mut started {
        let after = closed_after(s, start).await;
        assert!(
            after >= LIMITS.header_timeout - Duration::from_millis(50) && after < Duration::from_secs(3),
            "{after:?}"
        );
    }
    assert!(get_healthz(addr).await.starts_with("HTTP/1.1 200"));
    assert_eq!(count(&events, ServeEvent::Refused), 1);
    assert_eq!(count(&events, ServeEvent::Evicted), 0);
    assert_eq!(count(&events, ServeEvent::HeaderTimeout), 4);
    stop.cancel();
    task.await.unwrap();
    assert_eq!(count(&events, ServeEvent::Opened), count(&events, ServeEvent::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_head_is_cut_at_the_header_timeout() {
    let (addr, _stop, events, _task) = start().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut cut = None;
    for b in head {
        if s.write_all(&[*b]).await.is_err() {
            cut = Some(start.elapsed());
            break;
        }
        let mut probe = [0u8; 64];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(100), s.read(&mut probe)).await {
            // hyper answers 408 to a head cut mid-way, then closes.
            if let Ok(n) = r {
                assert!(
                    n == 0 || probe[..n].starts_with(b"HTTP/1.1 408"),
                    "{:?}",
                    String::from_utf8_lossy(&probe[..n])
                );
            }
            cut = Some(start.elapsed());
            break;
        }
    }
    let after = cut.expect("cut before the head was complete");
    assert!(after < Duration::from_secs(2), "{after:?}");
    assert_eq!(count(&events, ServeEvent::HeaderTimeout), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_cut_at_the_idle_timeout() {
    let (addr, _stop, events, _task) = start().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b").await.unwrap();
    let start = Instant::now();
    let after = closed_after(&mut s, start).await;
    assert!(after >= LIMITS.idle_timeout - Duration::from_millis(50) && after < Duration::from_secs(4), "{after:?}");
    assert_eq!(count(&events, ServeEvent::IdleTimeout), 1);
    // Keep-alive requests that keep moving are not cut.
    let mut s = TcpStream::connect(addr).await.unwrap();
    for _ in 0..3 {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_shutdown_new_clients_are_refused_while_open_connections_finish() {
    let (addr, stop, _events, task) = start().await;
    // A request in flight (its body stalled) keeps the server draining, until the idle timeout.
    let mut open = TcpStream::connect(addr).await.unwrap();
    open.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!task.is_finished(), "the server returned before its open connection ended");
    // Refused, not queued in the backlog of a server that no longer accepts.
    let refused = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await.unwrap();
    assert!(refused.is_err(), "a new client was accepted into the backlog after shutdown");
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

/// The accept-queue size the kernel reports for a listening socket (`ss`'s Send-Q column).
fn backlog_of(addr: SocketAddr) -> Option<u64> {
    let out = std::process::Command::new("ss").args(["-ltnH", &format!("sport = :{}", addr.port())]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| l.split_whitespace().nth(2)?.parse().ok())
}

#[tokio::test]
async fn listen_sets_the_accept_queue() {
    let somaxconn: u64 = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap().trim().parse().unwrap();
    for backlog in [300usize, DEFAULT_LISTEN_BACKLOG] {
        let l = listen("127.0.0.1:0".parse().unwrap(), backlog).unwrap();
        let got = backlog_of(l.local_addr().unwrap()).expect("`ss -ltnH` (iproute2) reads a listener's backlog");
        assert_eq!(got, (backlog as u64).min(somaxconn));
    }
}
