//! Test PKI (feature `testing`): one CA and the identity files every gateway and federator config
//! names (`cert.pem`, `key.pem`, `ca.pem` in one folder), for tests and benches. Failures panic
//! with what failed: these run only in harnesses.

use std::path::Path;

use time::OffsetDateTime;

use crate::ca::{self, PemPair};
use crate::identity::SpiffeId;
use crate::model::ClusterId;

/// Writes `cert.pem`, `key.pem` (mode 0600) and `ca.pem` under `dir`, each atomically (a
/// rename), as a Kubernetes Secret update does: a reloading reader never sees half a file.
pub fn write_identity(dir: &Path, leaf: &PemPair, ca_pem: &str) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    for (name, body, mode) in
        [("cert.pem", leaf.cert_pem.as_str(), 0o644), ("key.pem", &leaf.key_pem, 0o600), ("ca.pem", ca_pem, 0o644)]
    {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, body).unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
        set_mode(&tmp, mode);
        std::fs::rename(&tmp, dir.join(name)).unwrap_or_else(|e| panic!("renaming {}: {e}", tmp.display()));
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) {}

/// How long the CA and the written identities are valid: past every `tls.expiry_warning`
/// default (7 days), so `skybridge check` passes on a test fleet.
pub const DAYS: u32 = 30;

/// A CA for one trust domain (valid for [`DAYS`]) that issues gateway and federator certificates.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca: PemPair,
    pub trust_domain: String,
}

impl Pki {
    /// A fresh root for `trust_domain`.
    pub fn new(trust_domain: &str) -> Pki {
        let ca = ca::init(trust_domain, OffsetDateTime::now_utc(), DAYS)
            .unwrap_or_else(|e| panic!("a CA for {trust_domain:?}: {e}"));
        Pki { ca, trust_domain: trust_domain.to_owned() }
    }

    /// A leaf for `id`, valid for `days`.
    pub fn issue(&self, id: &SpiffeId, days: u32) -> PemPair {
        ca::issue(&self.ca, id, &[], OffsetDateTime::now_utc(), days).unwrap_or_else(|e| panic!("issuing {id}: {e}"))
    }

    /// The gateway identity of `cluster`, valid for `days`.
    pub fn gateway(&self, cluster: &str, days: u32) -> PemPair {
        let cluster = ClusterId::new(cluster).unwrap_or_else(|e| panic!("cluster id {cluster:?}: {e}"));
        self.issue(&SpiffeId::gateway(&self.trust_domain, cluster), days)
    }

    /// Writes `id`'s identity files (valid for [`DAYS`]) under `dir`.
    pub fn write(&self, dir: &Path, id: &SpiffeId) {
        write_identity(dir, &self.issue(id, DAYS), &self.ca.cert_pem);
    }

    /// Writes the federator's identity under `dir/fed` and each cluster's gateway identity
    /// under `dir/<cluster>`: the layout every test config points at.
    pub fn write_all(&self, dir: &Path, clusters: &[&str]) {
        self.write(&dir.join("fed"), &SpiffeId::federator(&self.trust_domain));
        for c in clusters {
            write_identity(&dir.join(c), &self.gateway(c, DAYS), &self.ca.cert_pem);
        }
    }
}

/// A fresh CA for `trust_domain` with [`Pki::write_all`]'s files under `dir`; returns the CA.
pub fn write_identities(dir: &Path, trust_domain: &str, clusters: &[&str]) -> PemPair {
    let pki = Pki::new(trust_domain);
    pki.write_all(dir, clusters);
    pki.ca
}
