//! A minimal federator replica for gateway tests: the real generated `Control` server behind
//! the real mTLS verifiers (federator identity, gateway clients only), serving one catalog the
//! way the federator does (a snapshot, or an empty delta to a gateway that already holds it).
//! Tests can hold its answers back and break its streams.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use skybridge_api::ca;
use skybridge_api::catalog::{Delta, GlobalCatalog};
use skybridge_api::identity::{Role, SpiffeId};
use skybridge_api::proto::wire::control_server::{Control, ControlServer};
use skybridge_api::proto::wire::{self, federator_message, gateway_message};
use skybridge_api::proto::{delta_to_wire, snapshot_to_wire};
use skybridge_api::tls::{CertStore, TlsFiles};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::{Pki, TD, write_identity};

/// What a fake replica serves and what it saw.
#[derive(Default)]
pub(crate) struct Seen {
    pub hellos: Vec<wire::Hello>,
    /// `snapshot` or `delta`, per catalog message sent.
    pub sent: Vec<&'static str>,
    pub acks: Vec<u64>,
}

struct Shared {
    catalog: GlobalCatalog,
    gateways: Vec<wire::Gateway>,
    seen: Mutex<Seen>,
    /// While true, sessions wait before sending their first catalog message.
    hold: watch::Sender<bool>,
    /// Cancelled to break every open session; replaced so later sessions are not broken.
    breaker: Mutex<CancellationToken>,
}

/// A running fake replica.
pub(crate) struct FakeFederator {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl FakeFederator {
    /// Starts a replica on 127.0.0.1:0 serving `catalog` and `gateways`.
    pub(crate) async fn start(pki: &Pki, catalog: GlobalCatalog, gateways: Vec<wire::Gateway>) -> FakeFederator {
        let id = SpiffeId::federator(&pki.trust_domain());
        let leaf = ca::issue(&pki.ca, &id, &[], time::OffsetDateTime::now_utc(), 1).unwrap();
        let dir = pki.dir.path().join(format!("federator-{}", fastrand::u64(..)));
        write_identity(&dir, &leaf, &pki.ca.cert_pem);
        let files = TlsFiles::in_dir(&dir);
        let certs = CertStore::load(files, TD, Role::Federator).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(certs.server_config(&[b"h2"]).unwrap()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let (tx, rx) = mpsc::channel::<Result<Conn, io::Error>>(16);
        let accept_stop = stop.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = accept_stop.cancelled() => return,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(tcp)).await {
                        let _ = tx.send(Ok(Conn(tls))).await;
                    }
                });
            }
        });
        let shared = Arc::new(Shared {
            catalog,
            gateways,
            seen: Mutex::default(),
            hold: watch::Sender::new(false),
            breaker: Mutex::new(CancellationToken::new()),
        });
        let service = ControlServer::new(Service(shared.clone()));
        let serve_stop = stop.clone();
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(ReceiverStream::new(rx), serve_stop.cancelled_owned())
                .await;
        });
        FakeFederator { addr, shared, stop }
    }

    /// Holds back (true) or lets out (false) the first catalog message of sessions.
    pub(crate) fn hold(&self, on: bool) {
        self.shared.hold.send_replace(on);
    }

    /// Ends every open session with `UNAVAILABLE`, as a replica going away does.
    pub(crate) fn break_sessions(&self) {
        let old = std::mem::take(&mut *self.shared.breaker.lock().unwrap());
        old.cancel();
    }

    /// Reads what the replica saw.
    pub(crate) fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.shared.seen.lock().unwrap())
    }

    /// Stops accepting and serving.
    pub(crate) fn stop(&self) {
        self.shared.breaker.lock().unwrap().cancel();
        self.stop.cancel();
    }
}

impl Drop for FakeFederator {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Service(Arc<Shared>);

#[tonic::async_trait]
impl Control for Service {
    type SessionStream = ReceiverStream<Result<wire::FederatorMessage, Status>>;

    async fn session(
        &self,
        req: Request<Streaming<wire::GatewayMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut inbound = req.into_inner();
        let Some(wire::GatewayMessage { msg: Some(gateway_message::Msg::Hello(hello)) }) = inbound.message().await?
        else {
            return Err(Status::invalid_argument("the first message must be Hello"));
        };
        let shared = self.0.clone();
        shared.seen.lock().unwrap().hellos.push(hello.clone());
        let breaker = shared.breaker.lock().unwrap().clone();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut hold = shared.hold.subscribe();
            tokio::select! {
                _ = breaker.cancelled() => return,
                _ = hold.wait_for(|h| !*h) => {}
            }
            let c = &shared.catalog;
            let (kind, msg) = if hello.have_version == c.version && hello.have_digest == c.digest {
                let d =
                    Delta { from_version: c.version, to_version: c.version, to_digest: c.digest, ..Delta::default() };
                (
                    "delta",
                    federator_message::Msg::Delta(delta_to_wire(
                        &d,
                        Some(shared.gateways.clone()),
                        Some(vec![].into()),
                    )),
                )
            } else {
                ("snapshot", federator_message::Msg::Snapshot(snapshot_to_wire(c, shared.gateways.clone(), vec![])))
            };
            shared.seen.lock().unwrap().sent.push(kind);
            if tx.send(Ok(wire::FederatorMessage { msg: Some(msg) })).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    _ = breaker.cancelled() => {
                        let _ = tx.send(Err(Status::unavailable("replica going away"))).await;
                        return;
                    }
                    m = inbound.message() => match m {
                        Ok(Some(wire::GatewayMessage { msg: Some(gateway_message::Msg::Ack(a)) })) => {
                            shared.seen.lock().unwrap().acks.push(a.version);
                        }
                        Ok(Some(_)) => {}
                        _ => return,
                    },
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// A TLS connection tonic can serve.
struct Conn(TlsStream<TcpStream>);

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
