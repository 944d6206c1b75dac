//! Backends that stand for services in a cluster.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Echoes every byte back; half-close aware (shuts down its write side after reading EOF).
pub(crate) async fn echo() -> SocketAddr {
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

/// Answers every HTTP request head with `200` and a body naming `who`, then closes.
pub(crate) async fn http(who: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = format!("hello from {who}\n");
                let resp =
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// Reads until EOF, then answers with how many bytes it got, then closes: proves that a
/// client's half-close crossed the tunnel and the reply still came back.
pub(crate) async fn count_then_reply() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut all = Vec::new();
                if s.read_to_end(&mut all).await.is_ok() {
                    let _ = s.write_all(format!("got {} bytes", all.len()).as_bytes()).await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    addr
}

/// A TLS server (terminating TLS itself, as a real service would) for `name`; answers each
/// connection with `tls hello from <who>` after the handshake.
pub(crate) async fn tls(cert_pem: &str, key_pem: &str, who: &'static str) -> SocketAddr {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let cfg = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(s).await {
                    let _ = tls.write_all(format!("tls hello from {who}").as_bytes()).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    addr
}

/// An address that refuses connections: port 1 (privileged, so no test can bind it) on its own
/// loopback address per call, so endpoints stay distinct. A bound-then-released port could be
/// handed to another test's listener in between.
pub(crate) fn refusing() -> SocketAddr {
    static NEXT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(2);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    SocketAddr::from(([127, 0, 1, n], 1))
}

/// A listener whose accept backlog is full, so further connects hang: an unreachable endpoint
/// without leaving loopback. The returned guard keeps it alive.
pub(crate) async fn blackhole() -> (SocketAddr, Vec<tokio::net::TcpStream>, tokio::net::TcpListener) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let l = sock.listen(0).unwrap();
    let addr = l.local_addr().unwrap();
    let mut fill = Vec::new();
    // Linux accepts backlog+1 completed handshakes; a few more make sure the queue is full.
    for _ in 0..4 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(std::time::Duration::from_millis(200), tokio::net::TcpStream::connect(addr)).await
        {
            fill.push(s);
        }
    }
    (addr, fill, l)
}

/// Reads `n` bytes, then resets the connection (RST via SO_LINGER 0) instead of closing it.
pub(crate) async fn reset_after(n: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; n];
                if s.read_exact(&mut buf).await.is_ok() {
                    let _ = s.set_zero_linger();
                    drop(s);
                }
            });
        }
    });
    addr
}

/// Records how each connection ended: `Ok(bytes)` at a clean EOF, `Err(kind)` on an error.
pub(crate) async fn observer() -> (SocketAddr, tokio::sync::mpsc::Receiver<Result<usize, std::io::ErrorKind>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut all = Vec::new();
                let r = s.read_to_end(&mut all).await.map(|_| all.len()).map_err(|e| e.kind());
                let _ = tx.send(r).await;
            });
        }
    });
    (addr, rx)
}
