//! The tunnel's QUIC TLS configs, built over the shared certificate store.

use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls_pki_types::CertificateDer;
use skybridge_api::TUNNEL_ALPN;
use skybridge_api::model::ClusterId;
pub use skybridge_api::tls::{CertStore, ServerExpectation, TlsError, TlsFiles, cluster_of, gateway_of};

/// The tunnel's QUIC server config: gateway client certificates required and SPIFFE-checked.
pub fn quic_server_config(store: &Arc<CertStore>) -> Result<quinn::ServerConfig, TlsError> {
    let cfg = store.server_config(&[TUNNEL_ALPN])?;
    let quic = QuicServerConfig::try_from(cfg).map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(quic)))
}

/// The tunnel's QUIC client config: presents our certificate and checks that the server is the
/// gateway of the cluster named as the connection's server name.
pub fn quic_client_config(store: &Arc<CertStore>) -> Result<quinn::ClientConfig, TlsError> {
    let cfg = store.client_config(ServerExpectation::GatewayNamedByServerName, &[TUNNEL_ALPN])?;
    let quic = QuicClientConfig::try_from(cfg).map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}

/// The gateway identity a connected peer's certificate names (verified during the
/// handshake): its cluster and trust domain.
pub fn peer_gateway(conn: &quinn::Connection) -> Option<(ClusterId, String)> {
    let certs = conn.peer_identity()?.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    gateway_of(&certs)
}
