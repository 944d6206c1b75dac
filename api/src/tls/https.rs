//! TLS for the federator's REST API. The server presents an ordinary certificate for the API's
//! name (from any CA operators' clients trust), reloaded when its files change. Clients may
//! present a certificate of our trust domain: it is verified against our own roots (never a
//! federated domain's), and the API decides what the SPIFFE ID may do (operators,
//! `spiffe://<td>/admin/<name>`, may write). A client without a certificate still connects:
//! reads are open, and writes can still use the bearer token.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use super::verify::{PeerIdentityError, delegated, other};
use super::{CertStore, DateProblem, FileStamp, TlsError, Validity, read_certs, stamp};
use crate::identity::{IdentityError, SpiffeId};

/// ALPN of the API: HTTP/1.1 only (the server speaks nothing else).
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The API's server certificate and key, swapped atomically when the files change.
pub struct HttpsIdentity {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    stamp: RwLock<[FileStamp; 2]>,
}

impl std::fmt::Debug for HttpsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsIdentity").field("cert", &self.cert).finish_non_exhaustive()
    }
}

impl HttpsIdentity {
    /// Loads `cert` (PEM chain, leaf first) and `key`; fails if either is unreadable, they do
    /// not match, or the certificate is outside its validity dates.
    pub fn load(cert: &Path, key: &Path, provider: Arc<CryptoProvider>) -> Result<Arc<Self>, TlsError> {
        let stamps = [stamp(cert), stamp(key)];
        let current = read_key(cert, key, &provider)?;
        Ok(Arc::new(HttpsIdentity {
            cert: cert.to_owned(),
            key: key.to_owned(),
            provider,
            current: RwLock::new(current),
            stamp: RwLock::new(stamps),
        }))
    }

    /// Re-reads the files if either changed: `Ok(true)` when the new pair is in use; on error
    /// the previous pair stays (and the same broken files are not reported again).
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = [stamp(&self.cert), stamp(&self.key)];
        if *self.stamp.read().expect("stamp lock") == now {
            return Ok(false);
        }
        *self.stamp.write().expect("stamp lock") = now;
        let key = read_key(&self.cert, &self.key, &self.provider)?;
        *self.current.write().expect("https key lock") = key;
        Ok(true)
    }

    /// The certificate file (for log lines).
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }
}

fn read_key(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_certs(cert)?;
    let validity =
        Validity::of_der(&chain[0]).map_err(|reason| TlsError::Identity { path: cert.to_owned(), reason })?;
    let now = SystemTime::now();
    match validity.check(now) {
        Ok(()) => {}
        Err(DateProblem::Expired) => {
            return Err(TlsError::Expired { path: cert.to_owned(), not_after: validity.not_after, now });
        }
        Err(DateProblem::NotYetValid) => {
            return Err(TlsError::NotYetValid { path: cert.to_owned(), not_before: validity.not_before, now });
        }
    }
    let der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key { path: key.to_owned(), reason: e.to_string() })?;
    let certified = CertifiedKey::from_der(chain, der, provider)
        .map_err(|e| TlsError::Key { path: key.to_owned(), reason: e.to_string() })?;
    Ok(Arc::new(certified))
}

impl ResolvesServerCert for HttpsIdentity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("https key lock").clone())
    }
}

/// Accepts a client certificate only of our own trust domain, chaining to our own roots (as
/// they are now: a reloaded bundle applies to the next handshake); and no certificate at all.
#[derive(Debug)]
struct OwnDomainClients {
    store: Arc<CertStore>,
}

impl ClientCertVerifier for OwnDomainClients {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let own = self.store.trust_domain();
        // A federated domain may run gateways here, never operate this federator.
        let id = SpiffeId::from_cert_der(end_entity, own).map_err(|e| other(PeerIdentityError::Spiffe(e)))?;
        let verified = self.store.current().client_verifier.verify_client_cert(end_entity, intermediates, now)?;
        delegated(&self.store, &id, intermediates)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let algs = &self.store.crypto().signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let algs = &self.store.crypto().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.store.crypto().signature_verification_algorithms.supported_schemes()
    }
}

/// The API's TLS server config: `identity` as the server certificate, optional client
/// certificates of `clients`' trust domain. TLS 1.2 and 1.3 (browsers and `curl` on older
/// systems reach the dashboard too), HTTP/1.1.
pub fn https_server_config(
    identity: Arc<HttpsIdentity>,
    clients: Arc<CertStore>,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = clients.crypto().clone();
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(Arc::new(OwnDomainClients { store: clients }))
        .with_cert_resolver(identity);
    cfg.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(cfg)
}

/// The SPIFFE ID of a client certificate chain the API's TLS verifier accepted.
pub fn client_identity(chain: &[CertificateDer<'_>], trust_domain: &str) -> Result<SpiffeId, IdentityError> {
    let leaf = chain.first().ok_or(IdentityError::NoSpiffeId)?;
    SpiffeId::from_cert_der(leaf, trust_domain)
}
