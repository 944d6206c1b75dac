//! Certificates for every Skybridge TLS endpoint (gateway tunnel, control stream, the
//! federator's HTTPS API): loading,
//! hot reload from disk, and SPIFFE-checking verifiers.
//!
//! Configs are built once and point at a [`CertStore`]; a reload swaps what the store holds,
//! so new handshakes use the new files and established connections are left alone.
//!
//! Our own certificate is checked like a peer would check it: a certificate that is expired,
//! not yet valid, or does not chain to the trust bundle is refused at start and on reload (the
//! previous identity stays), because every peer would refuse it anyway and the only symptom
//! would be failed connections far away.

mod distributed;
mod https;
mod validity;
mod verify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::RootCertStore;
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::CryptoProvider;
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_util::sync::CancellationToken;

use crate::config::FederatedDomain;
use crate::identity::{Role, SpiffeId};
use crate::model::ClusterId;
use crate::trust::{DomainScope, TrustScopes};

pub use distributed::{Accepted, DistributedDomain, from_wire as distributed_from_wire};
pub use https::{HttpsIdentity, client_identity, https_server_config};
pub use validity::{DEFAULT_EXPIRY_WARNING, DateProblem, Expiry, Validity, expiry, rfc3339};
pub use verify::{PeerIdentityError, PeerVerifier, ServerExpectation};

/// While our certificate is inside its warning window, the warning is logged again this often.
const EXPIRY_LOG_EVERY: Duration = Duration::from_secs(3600);

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
    #[error(
        "certificate {path} expired at {} (now {}); issue a new one (`skybridge ca issue`); a running process picks it up without a restart",
        rfc3339(*not_after),
        rfc3339(*now)
    )]
    Expired { path: PathBuf, not_after: SystemTime, now: SystemTime },
    #[error(
        "certificate {path} is not valid before {} (now {}); check this machine's clock and the issuer's",
        rfc3339(*not_before),
        rfc3339(*now)
    )]
    NotYetValid { path: PathBuf, not_before: SystemTime, now: SystemTime },
    #[error(
        "certificate {path} does not chain to the trust bundle {bundle}: {reason}; was it issued by this federation's CA?"
    )]
    Untrusted { path: PathBuf, bundle: PathBuf, reason: String },
    #[error("building TLS config: {0}")]
    Config(String),
}

/// The files of one identity, and the roots of the federated trust domains.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub trust_bundle: PathBuf,
    /// `[[tls.federated]]`: other domains' bundles and the clusters they may claim.
    pub federated: Vec<FederatedDomain>,
}

impl TlsFiles {
    /// `cert.pem`, `key.pem` and `ca.pem` in `dir` (what `skybridge ca issue` writes), with no
    /// federated domains.
    pub fn in_dir(dir: &Path) -> Self {
        TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            trust_bundle: dir.join("ca.pem"),
            federated: Vec::new(),
        }
    }
}

impl From<&crate::config::TlsSection> for TlsFiles {
    fn from(t: &crate::config::TlsSection) -> Self {
        TlsFiles {
            cert: t.cert.clone(),
            key: t.key.clone(),
            trust_bundle: t.trust_bundle.clone(),
            federated: t.federated.clone(),
        }
    }
}

/// The roots of one trust domain and a client-certificate verifier over them.
#[derive(Clone)]
pub struct DomainRoots {
    /// The roots as read (what the federator distributes).
    pub certs: Arc<[CertificateDer<'static>]>,
    pub roots: Arc<RootCertStore>,
    pub client_verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

/// What is loaded now: our certified key and the verifiers built over the trust bundles.
#[derive(Clone)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    pub roots: Arc<RootCertStore>,
    pub client_verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    /// The federated trust domains' roots, by trust domain.
    pub federated: BTreeMap<String, DomainRoots>,
    /// The roots of the domains the federator distributed and this gateway took.
    pub distributed: BTreeMap<String, DomainRoots>,
    /// Which domain may claim which cluster: the configured domains and the distributed ones.
    pub scopes: Arc<TrustScopes>,
    /// Trust domains whose bundle shares a root with another domain's: their chains must come
    /// through an intermediate naming them (one root delegating a CA per domain).
    pub shared_roots: std::collections::BTreeSet<String>,
    /// When our certificate expires.
    pub not_after: SystemTime,
    /// When our certificate became valid.
    pub not_before: SystemTime,
}

/// The federator's distributed trust as this store last saw it.
#[derive(Debug, Default)]
struct Distributed {
    offered: Vec<DistributedDomain>,
    ceiling: Vec<crate::trust::ClusterGlob>,
    accepted: Accepted,
}

/// Holds the current identity; swapped atomically on reload.
pub struct CertStore {
    files: TlsFiles,
    trust_domain: String,
    /// Which configured domain may claim which cluster.
    scopes: TrustScopes,
    /// What the federator last offered, the ceiling, and what was taken of it.
    distributed: RwLock<Distributed>,
    role: Role,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Loaded>>,
    stamp: RwLock<Vec<FileStamp>>,
    /// Whether our own certificate's dates and chain are checked (always, except for test
    /// impostors made with [`CertStore::load_unverified`]).
    verify_own: bool,
    /// A reload refused a not-yet-valid certificate: retried at this time even if the files do
    /// not change again.
    retry_at: RwLock<Option<SystemTime>>,
    expiry_warning: RwLock<Duration>,
    /// When the expiry warning was last logged, and for which expiry.
    warned: Mutex<Option<(Instant, SystemTime)>>,
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

/// Reads a trust bundle: PEM certificates, or a SPIFFE trust bundle (JWKS JSON, as SPIRE's
/// federation endpoint serves it), whose `x509-svid` keys carry the roots in `x5c`.
fn read_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = std::fs::read(path).map_err(|e| TlsError::File { path: path.to_owned(), reason: e.to_string() })?;
    if !text.trim_ascii_start().starts_with(b"{") {
        return read_certs(path);
    }
    let certs = jwks_roots(&text).map_err(|reason| TlsError::Bundle { path: path.to_owned(), reason })?;
    if certs.is_empty() {
        return Err(TlsError::Empty { path: path.to_owned(), what: "x509-svid key in the SPIFFE bundle" });
    }
    Ok(certs)
}

/// The X.509 roots of a SPIFFE trust bundle (RFC 7517 JWK set with `use: x509-svid` keys).
fn jwks_roots(json: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<Key>,
    }
    #[derive(serde::Deserialize)]
    struct Key {
        #[serde(rename = "use", default)]
        usage: String,
        #[serde(default)]
        x5c: Vec<String>,
    }
    let set: Set = serde_json::from_slice(json).map_err(|e| format!("not a SPIFFE bundle (JWKS JSON): {e}"))?;
    let mut out = Vec::new();
    for (i, key) in set.keys.iter().enumerate().filter(|(_, k)| k.usage == "x509-svid") {
        let [b64] = key.x5c.as_slice() else {
            return Err(format!("keys[{i}]: an x509-svid key must carry exactly one x5c certificate"));
        };
        // x5c is base64 DER: PEM without the armour, which the PEM reader decodes.
        let pem = format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n");
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| format!("keys[{i}].x5c[0]: {e}"))?;
        out.push(der);
    }
    Ok(out)
}

impl CertStore {
    /// Loads the files once; fails if any is missing, malformed, or not `role`'s identity, or
    /// if the certificate is expired, not yet valid, or does not chain to the trust bundle.
    pub fn load(files: TlsFiles, trust_domain: &str, role: Role) -> Result<Arc<Self>, TlsError> {
        Self::open(files, trust_domain, role, true)
    }

    /// Like [`CertStore::load`] but accepts an own certificate that is expired, not yet valid
    /// or of another CA: only for tests that play an impostor.
    pub fn load_unverified(files: TlsFiles, trust_domain: &str, role: Role) -> Result<Arc<Self>, TlsError> {
        Self::open(files, trust_domain, role, false)
    }

    fn open(files: TlsFiles, trust_domain: &str, role: Role, verify_own: bool) -> Result<Arc<Self>, TlsError> {
        let provider = provider();
        let stamps = Self::stamps(&files);
        let loaded = Self::read(&files, trust_domain, &role, &provider, verify_own)?;
        let scopes = TrustScopes {
            own: trust_domain.to_owned(),
            federated: files
                .federated
                .iter()
                .map(|d| DomainScope {
                    trust_domain: d.trust_domain.clone(),
                    clusters: d.clusters.clone(),
                    ceiling: None,
                })
                .collect(),
        };
        let loaded = Loaded { scopes: Arc::new(scopes.clone()), ..loaded };
        let store = Arc::new(CertStore {
            files,
            trust_domain: trust_domain.to_owned(),
            scopes,
            distributed: RwLock::new(Distributed::default()),
            role,
            provider,
            current: RwLock::new(Arc::new(loaded)),
            stamp: RwLock::new(stamps),
            verify_own,
            retry_at: RwLock::new(None),
            expiry_warning: RwLock::new(DEFAULT_EXPIRY_WARNING),
            warned: Mutex::new(None),
        });
        // The expiry warning waits for the configured window: `set_expiry_warning`, or the
        // first tick of `watch` with the default.
        Ok(store)
    }

    fn stamps(files: &TlsFiles) -> Vec<FileStamp> {
        let bundles = files.federated.iter().map(|d| &d.bundle);
        [&files.cert, &files.key, &files.trust_bundle].into_iter().chain(bundles).map(|p| stamp(p)).collect()
    }

    fn read(
        files: &TlsFiles,
        td: &str,
        role: &Role,
        provider: &Arc<CryptoProvider>,
        verify_own: bool,
    ) -> Result<Loaded, TlsError> {
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
        let validity =
            Validity::of_der(&chain[0]).map_err(|reason| TlsError::Identity { path: files.cert.clone(), reason })?;
        let now = SystemTime::now();
        match validity.check(now) {
            Ok(()) => {}
            Err(_) if !verify_own => {}
            Err(DateProblem::Expired) => {
                return Err(TlsError::Expired { path: files.cert.clone(), not_after: validity.not_after, now });
            }
            Err(DateProblem::NotYetValid) => {
                return Err(TlsError::NotYetValid { path: files.cert.clone(), not_before: validity.not_before, now });
            }
        }
        // Each bundle is read once: for its domain's roots, and to find roots shared by domains.
        let mut bundles = vec![(td.to_owned(), read_bundle(&files.trust_bundle)?)];
        for d in &files.federated {
            bundles.push((d.trust_domain.clone(), read_bundle(&d.bundle)?));
        }
        let paths = std::iter::once(&files.trust_bundle).chain(files.federated.iter().map(|d| &d.bundle));
        for ((domain, certs), path) in bundles.iter().zip(paths) {
            misplaced_root(domain, certs, &bundles)
                .map_err(|reason| TlsError::Bundle { path: path.to_owned(), reason })?;
        }
        let DomainRoots { roots, client_verifier, .. } = domain_roots(&files.trust_bundle, &bundles[0].1, provider)?;
        let mut federated = BTreeMap::new();
        for (d, (_, certs)) in files.federated.iter().zip(&bundles[1..]) {
            federated.insert(d.trust_domain.clone(), domain_roots(&d.bundle, certs, provider)?);
        }
        let shared_roots = bundles
            .iter()
            .filter(|(d, certs)| bundles.iter().any(|(e, other)| e != d && certs.iter().any(|c| other.contains(c))))
            .map(|(d, _)| d.clone())
            .collect();
        if verify_own {
            check_chain(&chain, &roots, client_verifier.as_ref(), role, provider).map_err(|reason| {
                TlsError::Untrusted { path: files.cert.clone(), bundle: files.trust_bundle.clone(), reason }
            })?;
        }
        let certified = CertifiedKey::from_der(chain, key, provider)
            .map_err(|e| TlsError::Key { path: files.key.clone(), reason: e.to_string() })?;
        Ok(Loaded {
            key: Arc::new(certified),
            roots,
            client_verifier,
            federated,
            distributed: BTreeMap::new(),
            scopes: Arc::new(TrustScopes::own(td)),
            shared_roots,
            not_after: validity.not_after,
            not_before: validity.not_before,
        })
    }

    /// What is loaded now.
    pub fn current(&self) -> Arc<Loaded> {
        self.current.read().expect("cert store lock").clone()
    }

    /// Our trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Which trust domain may claim which cluster (configured and distributed domains).
    pub fn scopes(&self) -> Arc<TrustScopes> {
        self.current().scopes.clone()
    }

    /// Takes the trust domains the federator distributed (replacing those taken before), as
    /// far as `ceiling` (`[federator] distributed_trust`) allows; see [`distributed::accept`].
    /// New handshakes use the result at once; established connections stay.
    /// `None` when the offer and the ceiling are what they were (nothing changes).
    pub fn set_distributed(
        &self,
        ceiling: &[crate::trust::ClusterGlob],
        offered: Vec<DistributedDomain>,
    ) -> Option<Accepted> {
        {
            let mut d = self.distributed.write().expect("distributed lock");
            if d.offered == offered && d.ceiling == ceiling {
                return None;
            }
            d.accepted = distributed::accept(&self.scopes, ceiling, offered.clone());
            (d.offered, d.ceiling) = (offered, ceiling.to_vec());
        }
        self.install(None);
        Some(self.distributed())
    }

    /// The distributed domains taken, and those refused with why.
    pub fn distributed(&self) -> Accepted {
        self.distributed.read().expect("distributed lock").accepted.clone()
    }

    /// Puts `loaded` (a fresh read; `None`: what is in use) in use with the distributed domains
    /// added to its roots and scopes. Under the lock, so a reload and a new distribution
    /// cannot undo each other.
    fn install(&self, loaded: Option<Loaded>) {
        let mut current = self.current.write().expect("cert store lock");
        let mut loaded = loaded.unwrap_or_else(|| Loaded::clone(&current));
        let (domains, ceiling) = {
            let d = self.distributed.read().expect("distributed lock");
            (d.accepted.domains.clone(), d.ceiling.clone())
        };
        let mut scopes = self.scopes.clone();
        loaded.distributed = BTreeMap::new();
        for d in domains {
            let label = PathBuf::from(format!("(distributed by the federator: {})", d.trust_domain));
            match domain_roots(&label, &d.roots, &self.provider) {
                Ok(roots) => {
                    loaded.distributed.insert(d.trust_domain.clone(), roots);
                    scopes.federated.push(DomainScope {
                        trust_domain: d.trust_domain,
                        clusters: Some(d.clusters),
                        ceiling: Some(ceiling.clone()),
                    });
                }
                Err(e) => tracing::warn!(error = %e, "a distributed trust domain's roots are unusable; not trusted"),
            }
        }
        loaded.scopes = Arc::new(scopes);
        *current = Arc::new(loaded);
    }

    /// Re-reads the files if any changed. `Ok(true)` when a new identity was installed; on
    /// error (including an expired, not yet valid or untrusted certificate) the previous identity
    /// stays in use. A certificate refused as not yet valid is tried again once it is.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = Self::stamps(&self.files);
        let changed = *self.stamp.read().expect("stamp lock") != now;
        let retry_due = self.retry_at.read().expect("retry lock").is_some_and(|t| SystemTime::now() >= t);
        if !changed && !retry_due {
            return Ok(false);
        }
        // Record the stamp first so a broken file is reported once, not on every poll.
        *self.stamp.write().expect("stamp lock") = now;
        *self.retry_at.write().expect("retry lock") = None;
        let loaded = match Self::read(&self.files, &self.trust_domain, &self.role, &self.provider, self.verify_own) {
            Ok(l) => l,
            Err(e) => {
                if let TlsError::NotYetValid { not_before, .. } = &e {
                    *self.retry_at.write().expect("retry lock") = Some(*not_before);
                }
                return Err(e);
            }
        };
        self.install(Some(loaded));
        Ok(true)
    }

    /// Sets how long before expiry our certificate is reported as expiring (default
    /// [`DEFAULT_EXPIRY_WARNING`]); zero warns only once it has expired.
    pub fn set_expiry_warning(&self, window: Duration) {
        *self.expiry_warning.write().expect("expiry lock") = window;
        self.warn_if_expiring();
    }

    /// The warning window in use.
    pub fn expiry_warning(&self) -> Duration {
        *self.expiry_warning.read().expect("expiry lock")
    }

    /// How close our current certificate is to expiry at `now`.
    pub fn expiry(&self, now: SystemTime) -> Expiry {
        expiry(self.current().not_after, now, self.expiry_warning())
    }

    /// Logs a warning when our certificate is inside its warning window: at once when it
    /// enters it (or a new certificate is loaded), then at most once an hour.
    pub fn warn_if_expiring(&self) {
        let not_after = self.current().not_after;
        let e = self.expiry(SystemTime::now());
        if !e.expiring {
            return;
        }
        let mut warned = self.warned.lock().expect("warned lock");
        let due = match *warned {
            Some((at, for_expiry)) => for_expiry != not_after || at.elapsed() >= EXPIRY_LOG_EVERY,
            None => true,
        };
        if !due {
            return;
        }
        *warned = Some((Instant::now(), not_after));
        tracing::warn!(
            cert = %self.files.cert.display(),
            expires_at = %rfc3339(not_after),
            expires_in_hours = e.remaining.as_secs() / 3600,
            "our certificate expires soon; issue a new one (it is picked up without a restart)"
        );
    }

    /// The `result` label of a reload attempt for a metric: `ok` (a new identity installed),
    /// `error` (refused; the previous one stays), or `None` when nothing changed.
    pub fn reload_label(r: &Result<bool, TlsError>) -> Option<&'static str> {
        match r {
            Ok(false) => None,
            Ok(true) => Some("ok"),
            Err(_) => Some("error"),
        }
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
            self.warn_if_expiring();
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

/// A CA in `domain`'s bundle that records another configured domain (its `spiffe://` SAN) and
/// is not in that domain's bundle too: most likely the wrong file under the wrong key. A root
/// that records no domain or a domain not configured here (an organisation root delegating to
/// intermediates) passes, as does a root shared by two domains' bundles.
fn misplaced_root(
    domain: &str,
    certs: &[CertificateDer<'static>],
    bundles: &[(String, Vec<CertificateDer<'static>>)],
) -> Result<(), String> {
    for (i, c) in certs.iter().enumerate() {
        let Ok(Some(named)) = crate::identity::ca_trust_domain(c) else { continue };
        if named == domain {
            continue;
        }
        if let Some((_, theirs)) = bundles.iter().find(|(d, _)| *d == named)
            && !theirs.contains(c)
        {
            return Err(format!(
                "certificate {} is a CA of trust domain {named}, not {domain}, and is not in {named}'s bundle: \
                 is this the right file? (a root shared by several domains goes in each one's bundle)",
                i + 1
            ));
        }
    }
    Ok(())
}

/// Reads a PEM bundle into roots and a client verifier over them.
fn domain_roots(
    bundle: &Path,
    certs: &[CertificateDer<'static>],
    provider: &Arc<CryptoProvider>,
) -> Result<DomainRoots, TlsError> {
    let bad = |reason: String| TlsError::Bundle { path: bundle.to_owned(), reason };
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots.add(c.clone()).map_err(|e| bad(e.to_string()))?;
    }
    let roots = Arc::new(roots);
    let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| bad(e.to_string()))?;
    Ok(DomainRoots { certs: certs.into(), roots, client_verifier })
}

impl Loaded {
    /// The roots of `trust_domain`: ours when it is `own`, else a federated domain's.
    pub fn domain(
        &self,
        trust_domain: &str,
        own: &str,
    ) -> Option<(&Arc<RootCertStore>, &Arc<dyn rustls::server::danger::ClientCertVerifier>)> {
        if trust_domain == own {
            return Some((&self.roots, &self.client_verifier));
        }
        let d = self.federated.get(trust_domain).or_else(|| self.distributed.get(trust_domain))?;
        Some((&d.roots, &d.client_verifier))
    }
}

/// Checks our chain as peers will: to a root of the bundle, usable as a TLS server (and, for a
/// gateway, which also dials peers, as a TLS client).
fn check_chain(
    chain: &[CertificateDer<'static>],
    roots: &RootCertStore,
    client_verifier: &dyn rustls::server::danger::ClientCertVerifier,
    role: &Role,
    provider: &CryptoProvider,
) -> Result<(), String> {
    let now = UnixTime::now();
    let (end, intermediates) = (&chain[0], &chain[1..]);
    let parsed = ParsedCertificate::try_from(end).map_err(|e| e.to_string())?;
    let algs = provider.signature_verification_algorithms.all;
    verify_server_cert_signed_by_trust_anchor(&parsed, roots, intermediates, now, algs).map_err(|e| e.to_string())?;
    if matches!(role, Role::Gateway(_)) {
        client_verifier.verify_client_cert(end, intermediates, now).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The gateway cluster named by a peer certificate chain that our verifier accepted (which
/// checked its trust domain and the domain's scope).
pub fn cluster_of(chain: &[CertificateDer<'_>]) -> Option<ClusterId> {
    gateway_of(chain).map(|(cluster, _)| cluster)
}

/// The gateway identity (cluster, trust domain) of a chain our verifier accepted.
pub fn gateway_of(chain: &[CertificateDer<'_>]) -> Option<(ClusterId, String)> {
    let id = SpiffeId::from_cert_der_any_domain(chain.first()?).ok()?;
    Some((id.cluster()?.clone(), id.trust_domain))
}

#[cfg(all(test, feature = "ca"))]
mod tests {
    use super::*;

    /// A file path of its own for this test (the crate has no dev-dependencies).
    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("skybridge-api-{}-{name}", std::process::id()))
    }

    fn x5c(pem: &str) -> String {
        pem.lines().filter(|l| !l.starts_with("-----")).collect()
    }

    #[test]
    fn a_spiffe_bundle_yields_its_x509_roots() {
        let now = time::OffsetDateTime::now_utc();
        let (a, b) = (crate::ca::init("a.example", now, 1).unwrap(), crate::ca::init("b.example", now, 1).unwrap());
        let json = serde_json::json!({
            "keys": [
                {"kty": "EC", "use": "x509-svid", "crv": "P-256", "x": "..", "y": "..", "x5c": [x5c(&a.cert_pem)]},
                {"kty": "EC", "use": "jwt-svid", "kid": "k1", "crv": "P-256", "x": "..", "y": ".."},
                {"kty": "EC", "use": "x509-svid", "crv": "P-256", "x": "..", "y": "..", "x5c": [x5c(&b.cert_pem)]}
            ],
            "spiffe_refresh_hint": 300
        });
        let roots = jwks_roots(json.to_string().as_bytes()).unwrap();
        let pem = |p: &str| CertificateDer::from_pem_slice(p.as_bytes()).unwrap();
        assert_eq!(roots, vec![pem(&a.cert_pem), pem(&b.cert_pem)]);

        let path = scratch("bundle.json");
        std::fs::write(&path, format!("  {json}")).unwrap();
        assert_eq!(read_bundle(&path).unwrap().len(), 2);
        std::fs::write(&path, &a.cert_pem).unwrap();
        assert_eq!(read_bundle(&path).unwrap().len(), 1, "PEM still reads");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_bundle_holding_another_configured_domains_root_is_refused() {
        let now = time::OffsetDateTime::now_utc();
        let der = |td: &str| {
            let pem = crate::ca::init(td, now, 1).unwrap().cert_pem;
            CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
        };
        let (a, b, org) = (der("a.example"), der("b.example"), der("corp.example"));
        let bundles =
            vec![("a.example".to_owned(), vec![a.clone(), b.clone()]), ("b.example".to_owned(), vec![org.clone()])];
        let e = misplaced_root("a.example", &bundles[0].1, &bundles).unwrap_err();
        assert!(e.contains("certificate 2") && e.contains("b.example"), "{e}");
        // Shared by both bundles: one root serving two domains, fine.
        let shared = vec![("a.example".to_owned(), vec![a.clone(), b.clone()]), ("b.example".to_owned(), vec![b])];
        assert!(misplaced_root("a.example", &shared[0].1, &shared).is_ok());
        // A root of a domain not configured here (an organisation root) is not judged.
        assert!(misplaced_root("b.example", &bundles[1].1, &bundles).is_ok());
        assert!(misplaced_root("a.example", &[a, org], &bundles).is_ok());
    }

    #[test]
    fn a_broken_spiffe_bundle_says_what_is_wrong() {
        assert!(jwks_roots(b"{\"keys\": 3}").unwrap_err().contains("not a SPIFFE bundle"));
        let two = serde_json::json!({"keys": [{"use": "x509-svid", "x5c": ["AAAA", "BBBB"]}]});
        assert!(jwks_roots(two.to_string().as_bytes()).unwrap_err().contains("keys[0]"));
        let path = scratch("jwt-only.json");
        std::fs::write(&path, r#"{"keys": [{"use": "jwt-svid", "kid": "x"}]}"#).unwrap();
        assert!(matches!(read_bundle(&path), Err(TlsError::Empty { .. })));
        let _ = std::fs::remove_file(&path);
    }
}
