//! Certificate verification for the tunnel: the SPIFFE ID names a trust domain, the chain must
//! lead to that domain's roots (ours, or a `[[tls.federated]]` bundle) and to no other's, the
//! domain must be allowed to claim the cluster, and (client side) the cluster must be the one
//! we dialled.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, verify_server_cert_signed_by_trust_anchor};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::CertStore;
use crate::identity::{IdentityError, Role, SpiffeId, ca_trust_domain};
use crate::trust::{ScopeError, check_delegation};

/// What a client requires of the server it dials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerExpectation {
    /// The gateway of the cluster given as the TLS server name (the tunnel dials peers so).
    GatewayNamedByServerName,
    /// The federator of our trust domain (gateways dialling the control stream).
    Federator,
    /// The federator of a federated trust domain (`[federator] trust_domain`), verified
    /// against that domain's roots.
    FederatorIn(String),
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

pub(super) fn other(e: impl std::error::Error + Send + Sync + 'static) -> Error {
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
    #[error(transparent)]
    Scope(#[from] ScopeError),
}

impl PeerVerifier {
    /// A verifier over the store's current trust bundle.
    pub fn new(store: Arc<CertStore>, expect: ServerExpectation) -> Self {
        PeerVerifier { store, expect }
    }

    /// The SPIFFE ID the certificate claims, whatever its domain: it picks the roots the chain
    /// is then verified against, so reading it first trusts nothing.
    fn claimed(&self, end_entity: &CertificateDer<'_>) -> Result<SpiffeId, Error> {
        SpiffeId::from_cert_der_any_domain(end_entity).map_err(|e| other(PeerIdentityError::Spiffe(e)))
    }

    fn unknown_domain(&self, id: &SpiffeId) -> Error {
        let own = self.store.trust_domain().to_owned();
        other(PeerIdentityError::Scope(ScopeError::UnknownDomain {
            id: id.clone(),
            found: id.trust_domain.clone(),
            own,
        }))
    }

    /// After the chain verified: its intermediates bind it to the leaf's domain (see
    /// [`check_delegation`]).
    fn delegated(&self, id: &SpiffeId, intermediates: &[CertificateDer<'_>]) -> Result<(), Error> {
        delegated(&self.store, id, intermediates)
    }

    /// After the chain verified: the domain may claim the cluster, and it is a gateway.
    fn gateway_in_scope(&self, id: SpiffeId) -> Result<SpiffeId, PeerIdentityError> {
        self.store.scopes().check(&id)?;
        if id.cluster().is_none() {
            return Err(PeerIdentityError::NotGateway(id));
        }
        Ok(id)
    }
}

/// After a chain verified: its intermediates bind it to the leaf's domain (see
/// [`check_delegation`]).
pub(super) fn delegated(store: &CertStore, id: &SpiffeId, intermediates: &[CertificateDer<'_>]) -> Result<(), Error> {
    let tds: Vec<Option<String>> = intermediates
        .iter()
        .map(|c| ca_trust_domain(c))
        .collect::<Result<_, _>>()
        .map_err(|e| other(PeerIdentityError::Spiffe(e)))?;
    let shared = store.current().shared_roots.contains(&id.trust_domain);
    check_delegation(id, &tds, shared).map_err(|e| other(PeerIdentityError::Scope(e)))
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
        let id = self.claimed(end_entity)?;
        let loaded = self.store.current();
        let (_, verifier) =
            loaded.domain(&id.trust_domain, self.store.trust_domain()).ok_or_else(|| self.unknown_domain(&id))?;
        verifier.verify_client_cert(end_entity, intermediates, now)?;
        self.delegated(&id, intermediates)?;
        self.gateway_in_scope(id).map_err(other)?;
        Ok(ClientCertVerified::assertion())
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
        let id = self.claimed(end_entity)?;
        let own = self.store.trust_domain();
        // A federator is of the domain we expect it in, never merely of one we trust.
        let federator_domain = match &self.expect {
            ServerExpectation::GatewayNamedByServerName => None,
            ServerExpectation::Federator => Some(own),
            ServerExpectation::FederatorIn(td) => Some(td.as_str()),
        };
        let domain = federator_domain.unwrap_or(id.trust_domain.as_str());
        let loaded = self.store.current();
        let (roots, _) = loaded.domain(domain, own).ok_or_else(|| self.unknown_domain(&id))?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.store.provider.signature_verification_algorithms.all,
        )?;
        self.delegated(&id, intermediates)?;
        if let Some(expected) = federator_domain {
            if id.trust_domain != expected {
                return Err(other(PeerIdentityError::Spiffe(IdentityError::ForeignTrustDomain {
                    expected: expected.to_owned(),
                    found: id.trust_domain,
                })));
            }
            if id.role != Role::Federator {
                return Err(other(PeerIdentityError::NotFederator(id)));
            }
            return Ok(ServerCertVerified::assertion());
        }
        // The tunnel dials a peer with its cluster id as the server name; the certificate must
        // be that cluster's gateway, not merely any gateway of a trusted domain.
        let id = self.gateway_in_scope(id).map_err(other)?;
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
