//! A raw QUIC client for speaking to a gateway's tunnel directly, including as an impostor.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use quinn::{Connection, Endpoint};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use skybridge_api::ca::PemPair;
use skybridge_api::header::{OpenRequest, OpenResponse, Status};

/// Accepts any server certificate: these tests probe the *server's* checks of the client (and
/// the flood never gets as far as the server's certificate).
#[derive(Debug)]
pub(crate) struct AnyServer(pub Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Connects to a gateway tunnel presenting `identity` (or no certificate at all).
pub(crate) async fn connect(server: SocketAddr, identity: Option<&PemPair>) -> Result<Connection, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
    let mut cfg = match identity {
        Some(id) => {
            // The whole chain: a leaf issued by an intermediate carries it.
            let certs = CertificateDer::pem_slice_iter(id.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
            let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![skybridge_api::TUNNEL_ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(cfg).unwrap();
    let mut ep = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    let conn = ep.connect(server, "peer").unwrap().await.map_err(|e| e.to_string())?;
    // With TLS 1.3 the server may reject our certificate after the client considers the
    // handshake done; a stream round trip surfaces that.
    Ok(conn)
}

/// Sends raw bytes as a stream's first bytes and returns the status, or the stream error.
pub(crate) async fn raw_open(conn: &Connection, bytes: &[u8]) -> Result<(Status, String), String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(bytes).await.map_err(|e| e.to_string())?;
    let mut prefix = [0u8; 3];
    recv.read_exact(&mut prefix).await.map_err(|e| e.to_string())?;
    let (status, len) = OpenResponse::decode_prefix(prefix).map_err(|e| e.to_string())?;
    let mut reason = vec![0u8; len];
    recv.read_exact(&mut reason).await.map_err(|e| e.to_string())?;
    Ok((status, String::from_utf8_lossy(&reason).into_owned()))
}

/// Encodes a request header.
pub(crate) fn header(req: &OpenRequest) -> Vec<u8> {
    let mut b = BytesMut::new();
    req.encode(&mut b);
    b.to_vec()
}
