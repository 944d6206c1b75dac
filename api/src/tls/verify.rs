//! Certificate verification for the tunnel: chain to the current trust bundle, then the
//! SPIFFE ID must name a gateway of our trust domain, and (client side) the cluster we dialled.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, verify_server_cert_signed_by_trust_anchor};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::CertStore;
use crate::identity::{IdentityError, Role, SpiffeId};

/// What a client requires of the server it dials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerExpectation {
    /// The gateway of the cluster given as the TLS server name (the tunnel dials peers so).
    GatewayNamedByServerName,
    /// The federator of our trust domain (gateways dialling the control stream).
    Federator,
}

/// Verifier and certificate resolver for both ends of a Skybridge TLS connection. As a server
/// it accepts only gateway clients of our trust domain; as a client it checks the server per
/// its [`ServerExpectation`].
#[derive(Debug)]
pub struct PeerVerifier {
    store: Arc<CertStore>,
    expect: ServerExpectation,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore").field("role", &self.role).finish_non_exhaustive()
    }
}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// Why a verified chain still does not identify the expected peer.
#[derive(Debug, thiserror::Error)]
pub enum PeerIdentityError {
    #[error(transparent)]
    Spiffe(#[from] IdentityError),
    #[error("peer is {0}, which is not a gateway")]
    NotGateway(SpiffeId),
    #[error("peer is {found}, but we dialled the gateway of cluster {expected}")]
    WrongCluster { expected: String, found: SpiffeId },
    #[error("peer is {0}, but we dialled the federator")]
    NotFederator(SpiffeId),
}

impl PeerVerifier {
    /// A verifier over the store's current trust bundle.
    pub fn new(store: Arc<CertStore>, expect: ServerExpectation) -> Self {
        PeerVerifier { store, expect }
    }

    fn gateway_id(&self, end_entity: &CertificateDer<'_>) -> Result<SpiffeId, PeerIdentityError> {
        let id = SpiffeId::from_cert_der(end_entity, self.store.trust_domain())?;
        if id.cluster().is_none() {
            return Err(PeerIdentityError::NotGateway(id));
        }
        Ok(id)
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional (RFC 8446 4.2.4); our clients have exactly one certificate.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.store.current().client_verifier.verify_client_cert(end_entity, intermediates, now)?;
        self.gateway_id(end_entity).map_err(other)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.store.current().client_verifier.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.store.current().client_verifier.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.store.current().client_verifier.supported_verify_schemes()
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        let loaded = self.store.current();
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &loaded.roots,
            intermediates,
            now,
            self.store.provider.signature_verification_algorithms.all,
        )?;
        if self.expect == ServerExpectation::Federator {
            let id = SpiffeId::from_cert_der(end_entity, self.store.trust_domain())
                .map_err(|e| other(PeerIdentityError::Spiffe(e)))?;
            if id.role != Role::Federator {
                return Err(other(PeerIdentityError::NotFederator(id)));
            }
            return Ok(ServerCertVerified::assertion());
        }
        // The tunnel dials a peer with its cluster id as the server name; the certificate must
        // be that cluster's gateway, not merely any gateway of the trust domain.
        let id = self.gateway_id(end_entity).map_err(other)?;
        let expected = match server_name {
            ServerName::DnsName(d) => d.as_ref().to_owned(),
            other_name => format!("{other_name:?}"),
        };
        if id.cluster().map(|c| c.as_str()) != Some(expected.as_str()) {
            return Err(other(PeerIdentityError::WrongCluster { expected, found: id }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.store.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.store.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.store.provider.signature_verification_algorithms.supported_schemes()
    }
}

impl ResolvesServerCert for PeerVerifier {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.store.current().key.clone())
    }
}

impl ResolvesClientCert for PeerVerifier {
    fn resolve(&self, _root_hint_subjects: &[&[u8]], _sigschemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.store.current().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
