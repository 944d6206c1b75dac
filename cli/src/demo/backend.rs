//! The sample backends: one tiny HTTP/1.1 server per service copy, answering
//! `hello from <cluster>: <service> <path>` so that a `curl` through any gateway shows which
//! cluster served it.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Connections one backend serves at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 64;
/// The longest request head read; the path is all that is used.
const MAX_HEAD: usize = 8 * 1024;
/// A client that sends no complete head within this is dropped.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The body a backend answers with, given the request's path.
pub(super) fn greeting(cluster: &str, service: &str, path: &str) -> String {
    format!("hello from {cluster}: {service} {path}\n")
}

/// Serves the backend of `service` in `cluster` on `listener` until `cancel`; tasks are
/// tracked by `tracker` so a shutdown can wait for them.
pub(super) fn spawn(
    listener: TcpListener,
    cluster: &'static str,
    service: String,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let span = tracing::info_span!("demo_backend", cluster, service = %service, %addr);
    let conns = tracker.clone();
    tracker.spawn(
        async move {
            let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
            let service: Arc<str> = service.into();
            loop {
                let permit = tokio::select! {
                    _ = cancel.cancelled() => return,
                    p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                };
                let stream = tokio::select! {
                    _ = cancel.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((s, _)) => s,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            continue;
                        }
                    },
                };
                let (service, cancel) = (service.clone(), cancel.clone());
                conns.spawn(
                    async move {
                        tokio::select! {
                            _ = cancel.cancelled() => {}
                            _ = answer(stream, cluster, &service) => {}
                        }
                        drop(permit);
                    }
                    .in_current_span(),
                );
            }
        }
        .instrument(span),
    );
}

/// Reads one request head and answers it; the connection closes after the response.
async fn answer(mut stream: TcpStream, cluster: &str, service: &str) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let read_head = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        true
    };
    if !matches!(tokio::time::timeout(HEAD_TIMEOUT, read_head).await, Ok(true)) {
        return;
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.lines().next().and_then(|l| l.split_whitespace().nth(1)).unwrap_or("/");
    let body = greeting(cluster, service, path);
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nx-served-by: {cluster}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_with_cluster_service_and_path_and_stops_on_cancel() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cancel, tracker) = (CancellationToken::new(), TaskTracker::new());
        spawn(listener, "aws-demo", "web.shop".into(), cancel.clone(), &tracker);
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /cart?id=1 HTTP/1.1\r\nHost: web.shop\r\n\r\n").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.ends_with("hello from aws-demo: web.shop /cart?id=1\n"), "{out}");
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
        TcpListener::bind(addr).await.expect("the port is free after the backend stopped");
    }
}
