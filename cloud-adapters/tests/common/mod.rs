//! Shared by the adapter tests: waiting for snapshots, and a proxy that injects Cloud Map
//! throttling and garbage in front of moto (the moto harness itself is `skybridge_cloud_adapters::aws::moto::Moto`).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::Duration;

use skybridge_api::catalog::SourceSnapshot;
use skybridge_api::source::{CatalogSource, SourceError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The source's next outcome (15 s at most).
pub(crate) async fn next(src: &mut impl CatalogSource) -> Result<SourceSnapshot, SourceError> {
    tokio::time::timeout(Duration::from_secs(15), src.next()).await.expect("no snapshot within 15 s")
}

/// Waits for a snapshot satisfying `f`, skipping errors and other snapshots.
pub(crate) async fn until(
    src: &mut impl CatalogSource,
    what: &str,
    f: impl Fn(&SourceSnapshot) -> bool,
) -> SourceSnapshot {
    for _ in 0..50 {
        if let Ok(s) = next(src).await
            && f(&s)
        {
            return s;
        }
    }
    panic!("never saw: {what}");
}

/// The clusters exporting `key` (`ns/name`), sorted.
pub(crate) fn clusters_with(s: &SourceSnapshot, key: &str) -> Vec<String> {
    let key = key.parse().unwrap();
    let mut v: Vec<String> = s.services.get(&key).into_iter().flatten().map(|e| e.cluster.to_string()).collect();
    v.sort();
    v
}

/// An HTTP proxy that answers the next `throttle` requests with Cloud Map's throttling error
/// (HTTP 400 `ThrottlingException`, or 429 when `status_429`) and forwards the rest.
pub(crate) struct Throttler {
    pub addr: SocketAddr,
    pub throttle: Arc<AtomicUsize>,
    /// The next requests get a 200 whose body is not JSON.
    pub garbage: Arc<AtomicUsize>,
    pub seen: Arc<AtomicUsize>,
}

impl Throttler {
    pub(crate) async fn start(upstream: SocketAddr, status_429: bool) -> Throttler {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let throttle = Arc::new(AtomicUsize::new(0));
        let garbage = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(AtomicUsize::new(0));
        let (t, g, s) = (throttle.clone(), garbage.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (t, g, s) = (t.clone(), g.clone(), s.clone());
                tokio::spawn(async move {
                    let _ = proxy_one(conn, upstream, &t, &g, &s, status_429).await;
                });
            }
        });
        Throttler { addr, throttle, garbage, seen }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// One request per connection (`Connection: close` both ways keeps the framing trivial).
async fn proxy_one(
    mut conn: tokio::net::TcpStream,
    upstream: SocketAddr,
    throttle: &AtomicUsize,
    garbage: &AtomicUsize,
    seen: &AtomicUsize,
    status_429: bool,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    seen.fetch_add(1, Ordering::SeqCst);
    if garbage.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        let body = "<html>gateway error page</html>";
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(resp.as_bytes()).await?;
        return conn.shutdown().await;
    }
    let throttled = throttle.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    if throttled {
        let body = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
        let status = if status_429 { "429 Too Many Requests" } else { "400 Bad Request" };
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-ErrorType: ThrottlingException\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(resp.as_bytes()).await?;
        return conn.shutdown().await;
    }
    let mut up = tokio::net::TcpStream::connect(upstream).await?;
    let mut lines: Vec<&str> =
        head.split("\r\n").filter(|l| !l.to_ascii_lowercase().starts_with("connection:")).collect();
    lines.insert(1, "Connection: close");
    let head = lines.join("\r\n");
    up.write_all(head.as_bytes()).await?;
    up.write_all(&buf[head_end..]).await?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp).await?;
    conn.write_all(&resp).await?;
    conn.shutdown().await
}
