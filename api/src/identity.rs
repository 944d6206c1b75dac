//! SPIFFE identities carried in X.509 URI SANs.
//!
//! Gateway: `spiffe://<trust-domain>/cluster/<cluster-id>/gateway`;
//! federator: `spiffe://<trust-domain>/federator`;
//! operator (writes to the federator's API): `spiffe://<trust-domain>/admin/<name>`.

use std::fmt;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::model::ClusterId;

/// Why an identity could not be read or did not match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("certificate is not valid DER X.509: {0}")]
    BadCertificate(String),
    #[error("certificate carries no spiffe:// URI SAN")]
    NoSpiffeId,
    #[error("certificate carries {0} spiffe:// URI SANs; exactly one is allowed")]
    SeveralSpiffeIds(usize),
    #[error("{uri:?} is not a Skybridge SPIFFE ID: {reason}")]
    Malformed { uri: String, reason: &'static str },
    #[error("trust domain {found:?} is not ours ({expected:?})")]
    ForeignTrustDomain { expected: String, found: String },
}

/// Who a certificate speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Role {
    /// A gateway of one cluster.
    Gateway(ClusterId),
    /// The federator (control plane).
    Federator,
    /// An operator or automation allowed to write to the federator's API; the name is for
    /// the audit log.
    Admin(String),
}

/// A parsed Skybridge SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    pub trust_domain: String,
    pub role: Role,
}

impl SpiffeId {
    /// A gateway identity.
    pub fn gateway(trust_domain: &str, cluster: ClusterId) -> Self {
        SpiffeId { trust_domain: trust_domain.to_owned(), role: Role::Gateway(cluster) }
    }

    /// The federator identity.
    pub fn federator(trust_domain: &str) -> Self {
        SpiffeId { trust_domain: trust_domain.to_owned(), role: Role::Federator }
    }

    /// An operator identity (`skybridge ca issue --admin NAME`).
    pub fn admin(trust_domain: &str, name: &str) -> Result<Self, IdentityError> {
        Self::parse(&format!("spiffe://{trust_domain}/admin/{name}"))
    }

    /// Parses `spiffe://td/cluster/<id>/gateway`, `spiffe://td/federator` or
    /// `spiffe://td/admin/<name>`.
    pub fn parse(uri: &str) -> Result<Self, IdentityError> {
        let bad = |reason| IdentityError::Malformed { uri: uri.to_owned(), reason };
        let rest = uri.strip_prefix("spiffe://").ok_or_else(|| bad("scheme is not spiffe"))?;
        let (td, path) = rest.split_once('/').ok_or_else(|| bad("no path"))?;
        if !valid_trust_domain(td) {
            return Err(bad("trust domain must be lowercase letters, digits, '.', '-' or '_'"));
        }
        let segments: Vec<&str> = path.split('/').collect();
        let role = match segments.as_slice() {
            ["federator"] => Role::Federator,
            ["admin", name] => {
                if !valid_admin_name(name) {
                    return Err(bad("admin name must be 1-63 lowercase letters, digits, '.', '-' or '_'"));
                }
                Role::Admin((*name).to_owned())
            }
            ["cluster", id, "gateway"] => {
                Role::Gateway(ClusterId::new(id).map_err(|_| bad("cluster id is not a DNS label"))?)
            }
            _ => return Err(bad("path is none of /cluster/<id>/gateway, /federator, /admin/<name>")),
        };
        Ok(SpiffeId { trust_domain: td.to_owned(), role })
    }

    /// The cluster this identity is a gateway of, if it is one.
    pub fn cluster(&self) -> Option<&ClusterId> {
        match &self.role {
            Role::Gateway(c) => Some(c),
            Role::Federator | Role::Admin(_) => None,
        }
    }

    /// Reads the single SPIFFE ID from a DER certificate and checks its trust domain.
    pub fn from_cert_der(der: &[u8], trust_domain: &str) -> Result<Self, IdentityError> {
        let id = Self::from_cert_der_any_domain(der)?;
        if id.trust_domain != trust_domain {
            return Err(IdentityError::ForeignTrustDomain {
                expected: trust_domain.to_owned(),
                found: id.trust_domain,
            });
        }
        Ok(id)
    }

    /// Reads the single SPIFFE ID from a DER certificate, whatever its trust domain.
    pub fn from_cert_der_any_domain(der: &[u8]) -> Result<Self, IdentityError> {
        let uris = spiffe_uris(der)?;
        match uris.as_slice() {
            [] => Err(IdentityError::NoSpiffeId),
            [one] => Self::parse(one),
            many => Err(IdentityError::SeveralSpiffeIds(many.len())),
        }
    }
}

/// An admin name: what a trust domain allows, as one short path segment.
fn valid_admin_name(name: &str) -> bool {
    name.len() <= 63 && valid_trust_domain(name)
}

/// True for a SPIFFE trust domain name: lowercase letters, digits, dots, dashes, underscores.
pub fn valid_trust_domain(td: &str) -> bool {
    !td.is_empty()
        && td.len() <= 255
        && td.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
}

/// The trust domain a CA certificate records as its `spiffe://<td>` URI SAN (as `skybridge ca`
/// roots and intermediates and SPIFFE bundles do), or `None` when it records none.
pub fn ca_trust_domain(der: &[u8]) -> Result<Option<String>, IdentityError> {
    Ok(spiffe_uris(der)?.iter().find_map(|u| {
        let td = u.strip_prefix("spiffe://")?.trim_end_matches('/');
        (!td.contains('/') && valid_trust_domain(td)).then(|| td.to_owned())
    }))
}

fn spiffe_uris(der: &[u8]) -> Result<Vec<String>, IdentityError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    let san = cert.subject_alternative_name().map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    Ok(san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) if u.starts_with("spiffe://") => Some((*u).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.role {
            Role::Gateway(c) => write!(f, "spiffe://{}/cluster/{c}/gateway", self.trust_domain),
            Role::Federator => write!(f, "spiffe://{}/federator", self.trust_domain),
            Role::Admin(name) => write!(f, "spiffe://{}/admin/{name}", self.trust_domain),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let g = SpiffeId::gateway("example.org", ClusterId::new("aws-1").unwrap());
        assert_eq!(g.to_string(), "spiffe://example.org/cluster/aws-1/gateway");
        assert_eq!(SpiffeId::parse(&g.to_string()).unwrap(), g);
        let f = SpiffeId::federator("example.org");
        assert_eq!(SpiffeId::parse("spiffe://example.org/federator").unwrap(), f);
        assert_eq!(f.cluster(), None);
        let a = SpiffeId::admin("example.org", "alice").unwrap();
        assert_eq!(a.to_string(), "spiffe://example.org/admin/alice");
        assert_eq!(SpiffeId::parse(&a.to_string()).unwrap(), a);
        assert_eq!(a.cluster(), None);
    }

    #[test]
    fn rejects_malformed() {
        for u in [
            "https://example.org/federator",
            "spiffe://example.org",
            "spiffe:///federator",
            "spiffe://Example.org/federator",
            "spiffe://example.org/cluster/aws-1",
            "spiffe://example.org/cluster/Aws/gateway",
            "spiffe://example.org/cluster/aws-1/gateway/x",
            "spiffe://example.org/workload",
            "spiffe://example.org/admin",
            "spiffe://example.org/admin/",
            "spiffe://example.org/admin/Alice",
            "spiffe://example.org/admin/a/b",
        ] {
            assert!(SpiffeId::parse(u).is_err(), "{u} accepted");
        }
    }

    #[test]
    fn garbage_der_is_an_error() {
        assert!(matches!(SpiffeId::from_cert_der(b"not a cert", "td"), Err(IdentityError::BadCertificate(_))));
    }
}
