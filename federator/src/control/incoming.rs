//! TLS in front of tonic: accepts TCP, runs the handshake with the shared SPIFFE verifiers and
//! hands tonic only connections whose client certificate names a gateway.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use skybridge_api::model::ClusterId;
use skybridge_api::tls::{CertStore, cluster_of};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// The verified identity of a control-stream client, visible to handlers as connect info.
#[derive(Debug, Clone)]
pub struct PeerCluster(pub ClusterId);

/// A TLS connection from a verified gateway.
pub struct GatewayConn {
    inner: TlsStream<TcpStream>,
    peer: PeerCluster,
}

impl tonic::transport::server::Connected for GatewayConn {
    type ConnectInfo = PeerCluster;
    fn connect_info(&self) -> PeerCluster {
        self.peer.clone()
    }
}

impl AsyncRead for GatewayConn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for GatewayConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts until cancelled; handshakes run concurrently, each bounded by `handshake_timeout`,
/// and verified connections queue (bounded) for tonic. One bad client never stops the loop.
pub fn accept(
    listener: TcpListener,
    certs: Arc<CertStore>,
    handshake_timeout: Duration,
    cancel: CancellationToken,
    tasks: TaskTracker,
) -> Result<mpsc::Receiver<Result<GatewayConn, io::Error>>, skybridge_api::tls::TlsError> {
    let acceptor = TlsAcceptor::from(Arc::new(certs.server_config(&[b"h2"])?));
    let (tx, rx) = mpsc::channel(64);
    let td = certs.trust_domain().to_owned();
    let handshakes = tasks.clone();
    tasks.spawn(
        async move {
            loop {
                let (tcp, remote) = tokio::select! {
                    _ = cancel.cancelled() => return,
                    a = listener.accept() => match a {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "control accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let (acceptor, tx, td) = (acceptor.clone(), tx.clone(), td.clone());
                handshakes.spawn(
                    async move {
                        let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => return tracing::warn!(error = %e, "control handshake failed"),
                            Err(_) => return tracing::warn!("control handshake timed out"),
                        };
                        let chain = tls.get_ref().1.peer_certificates().unwrap_or_default().to_vec();
                        // The verifier already insisted on a gateway identity; this reads which.
                        let Some(cluster) = cluster_of(&chain, &td) else { return };
                        let _ = tx.send(Ok(GatewayConn { inner: tls, peer: PeerCluster(cluster) })).await;
                    }
                    .instrument(tracing::info_span!("control_handshake", %remote)),
                );
            }
        }
        .instrument(tracing::info_span!("control_accept")),
    );
    Ok(rx)
}
