//! Certificates for every Skybridge TLS endpoint (gateway tunnel, control stream): loading,
//! hot reload from disk, and SPIFFE-checking verifiers.
//!
//! Configs are built once and point at a [`CertStore`]; a reload swaps what the store holds,
//! so new handshakes use the new files and established connections are left alone.

mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use crate::identity::{Role, SpiffeId};
use crate::model::ClusterId;

pub use verify::{PeerIdentityError, PeerVerifier, ServerExpectation};

/// Why certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{path} holds no {what}")]
    Empty { path: PathBuf, what: &'static str },
    #[error("private key in {path} is unusable: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("certificate {path} is not ours: {reason}")]
    Identity { path: PathBuf, reason: String },
    #[error("trust bundle {path}: {reason}")]
    Bundle { path: PathBuf, reason: String },
    #[error("building TLS config: {0}")]
    Config(String),
}

/// The files of one identity.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub trust_bundle: PathBuf,
}

impl From<&crate::config::TlsSection> for TlsFiles {
    fn from(t: &crate::config::TlsSection) -> Self {
        TlsFiles { cert: t.cert.clone(), key: t.key.clone(), trust_bundle: t.trust_bundle.clone() }
    }
}

/// What is loaded now: our certified key and the verifiers built over the trust bundle.
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    pub roots: Arc<RootCertStore>,
    pub client_verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    /// When our certificate expires.
    pub not_after: SystemTime,
}

/// Holds the current identity; swapped atomically on reload.
pub struct CertStore {
    files: TlsFiles,
    trust_domain: String,
    role: Role,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Loaded>>,
    stamp: RwLock<Vec<FileStamp>>,
}

/// mtime and length: enough to notice a rewrite or a Kubernetes Secret symlink swap.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp(Option<SystemTime>, u64);

fn stamp(p: &Path) -> FileStamp {
    match std::fs::metadata(p) {
        Ok(m) => FileStamp(m.modified().ok(), m.len()),
        Err(_) => FileStamp(None, 0),
    }
}

/// The one crypto provider (aws-lc-rs) used by every TLS config we build.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::File { path: path.to_owned(), reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Empty { path: path.to_owned(), what: "PEM certificate" });
    }
    Ok(certs)
}

impl CertStore {
    /// Loads the files once; fails if any is missing, malformed, or not `role`'s identity.
    pub fn load(files: TlsFiles, trust_domain: &str, role: Role) -> Result<Arc<Self>, TlsError> {
        let provider = provider();
        let stamps = Self::stamps(&files);
        let loaded = Self::read(&files, trust_domain, &role, &provider)?;
        Ok(Arc::new(CertStore {
            files,
            trust_domain: trust_domain.to_owned(),
            role,
            provider,
            current: RwLock::new(Arc::new(loaded)),
            stamp: RwLock::new(stamps),
        }))
    }

    fn stamps(files: &TlsFiles) -> Vec<FileStamp> {
        [&files.cert, &files.key, &files.trust_bundle].into_iter().map(|p| stamp(p)).collect()
    }

    fn read(files: &TlsFiles, td: &str, role: &Role, provider: &Arc<CryptoProvider>) -> Result<Loaded, TlsError> {
        let chain = read_certs(&files.cert)?;
        let key = PrivateKeyDer::from_pem_file(&files.key)
            .map_err(|e| TlsError::Key { path: files.key.clone(), reason: e.to_string() })?;
        let id = SpiffeId::from_cert_der(&chain[0], td)
            .map_err(|e| TlsError::Identity { path: files.cert.clone(), reason: e.to_string() })?;
        if &id.role != role {
            let want = SpiffeId { trust_domain: td.to_owned(), role: role.clone() };
            return Err(TlsError::Identity {
                path: files.cert.clone(),
                reason: format!("it is {id}, but this is {want}"),
            });
        }
        let not_after =
            not_after(&chain[0]).map_err(|reason| TlsError::Identity { path: files.cert.clone(), reason })?;
        let certified = CertifiedKey::from_der(chain, key, provider)
            .map_err(|e| TlsError::Key { path: files.key.clone(), reason: e.to_string() })?;
        let mut roots = RootCertStore::empty();
        for c in read_certs(&files.trust_bundle)? {
            roots.add(c).map_err(|e| TlsError::Bundle { path: files.trust_bundle.clone(), reason: e.to_string() })?;
        }
        let roots = Arc::new(roots);
        let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::Bundle { path: files.trust_bundle.clone(), reason: e.to_string() })?;
        Ok(Loaded { key: Arc::new(certified), roots, client_verifier, not_after })
    }

    /// What is loaded now.
    pub fn current(&self) -> Arc<Loaded> {
        self.current.read().expect("cert store lock").clone()
    }

    /// The trust domain peers must belong to.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Re-reads the files if any changed. `Ok(true)` when a new identity was installed; on
    /// error the previous identity stays in use.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = Self::stamps(&self.files);
        if *self.stamp.read().expect("stamp lock") == now {
            return Ok(false);
        }
        // Record the stamp first so a broken file is reported once, not on every poll.
        *self.stamp.write().expect("stamp lock") = now;
        let loaded = Self::read(&self.files, &self.trust_domain, &self.role, &self.provider)?;
        *self.current.write().expect("cert store lock") = Arc::new(loaded);
        Ok(true)
    }

    /// Polls the files until cancelled; `on_result` sees each reload attempt.
    pub async fn watch(
        self: Arc<Self>,
        every: Duration,
        cancel: CancellationToken,
        on_result: impl Fn(&Result<bool, TlsError>),
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let r = self.reload_if_changed();
            match &r {
                Ok(true) => tracing::info!(cert = %self.files.cert.display(), "reloaded certificates"),
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "certificate reload failed; keeping the previous certificates"),
            }
            on_result(&r);
        }
    }

    /// The crypto provider every config from this store uses.
    pub fn crypto(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    /// A TLS 1.3 server config presenting our identity and requiring a client certificate of a
    /// gateway of our trust domain.
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Result<rustls::ServerConfig, TlsError> {
        let verifier = Arc::new(PeerVerifier::new(self.clone(), ServerExpectation::GatewayNamedByServerName));
        let mut cfg = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier.clone())
            .with_cert_resolver(verifier);
        cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        cfg.max_early_data_size = 0;
        Ok(cfg)
    }

    /// A TLS 1.3 client config presenting our identity and checking the server per `expect`.
    pub fn client_config(
        self: &Arc<Self>,
        expect: ServerExpectation,
        alpn: &[&[u8]],
    ) -> Result<rustls::ClientConfig, TlsError> {
        let verifier = Arc::new(PeerVerifier::new(self.clone(), expect));
        let mut cfg = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_client_cert_resolver(verifier);
        cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        Ok(cfg)
    }
}

fn not_after(der: &[u8]) -> Result<SystemTime, String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let secs = cert.validity().not_after.timestamp();
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

/// The gateway cluster named by a verified peer certificate chain.
pub fn cluster_of(chain: &[CertificateDer<'_>], trust_domain: &str) -> Option<ClusterId> {
    let id = SpiffeId::from_cert_der(chain.first()?, trust_domain).ok()?;
    id.cluster().cloned()
}
