//! Certificate issuance for `skybridge ca`: an ECDSA P-256 root per trust domain, and leaf
//! certificates carrying one SPIFFE ID each. Pure: returns PEM strings, writes no files.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::identity::{SpiffeId, valid_trust_domain};

/// Default lifetime of a root CA.
pub const DEFAULT_CA_DAYS: u32 = 3650;
/// Default lifetime of a gateway or federator certificate.
pub const DEFAULT_LEAF_DAYS: u32 = 90;

/// Why issuance failed.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("trust domain {0:?} is invalid: use lowercase letters, digits, '.', '-' or '_'")]
    TrustDomain(String),
    #[error("the CA certificate has no spiffe:// trust-domain URI SAN; was it made by `skybridge ca init`?")]
    NoTrustDomain,
    #[error("reading the CA: {0}")]
    ReadCa(String),
    #[error("DNS name {0:?} is not valid")]
    DnsName(String),
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct PemPair {
    pub cert_pem: String,
    pub key_pem: String,
}

fn validity(params: &mut CertificateParams, now: OffsetDateTime, days: u32) {
    // Backdate a little so that peers with slightly slow clocks accept fresh certificates.
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(i64::from(days));
}

/// Makes a self-signed root for `trust_domain`. The trust domain is recorded as the CA's URI
/// SAN (`spiffe://<td>`), as SPIFFE bundles do, so `issue` can read it back.
pub fn init(trust_domain: &str, now: OffsetDateTime, days: u32) -> Result<PemPair, CaError> {
    if !valid_trust_domain(trust_domain) {
        return Err(CaError::TrustDomain(trust_domain.to_owned()));
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    // One level below: intermediates that delegate a trust domain (`intermediate`).
    let params = ca_params(trust_domain, "root", 1, now, days)?;
    let cert = params.self_signed(&key)?;
    Ok(PemPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// A CA certificate's parameters: `spiffe://<td>` as its URI SAN, `path_len` CAs below it.
fn ca_params(
    trust_domain: &str,
    kind: &str,
    path_len: u8,
    now: OffsetDateTime,
    days: u32,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Skybridge");
    dn.push(DnType::CommonName, format!("Skybridge {kind} CA {trust_domain}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.subject_alt_names = vec![SanType::URI(format!("spiffe://{trust_domain}").try_into()?)];
    validity(&mut params, now, days);
    Ok(params)
}

/// Makes an intermediate CA for `trust_domain`, signed by `root`: one root delegating a CA per
/// cloud. The domain is recorded as its `spiffe://<td>` URI SAN, and verifiers bind it there
/// (a chain through it may only carry identities of that domain). Not as an X.509 URI name
/// constraint: rustls-webpki (0.103.12 and later) refuses every chain that carries one.
pub fn intermediate(root: &PemPair, trust_domain: &str, now: OffsetDateTime, days: u32) -> Result<PemPair, CaError> {
    if !valid_trust_domain(trust_domain) {
        return Err(CaError::TrustDomain(trust_domain.to_owned()));
    }
    let root_key = KeyPair::from_pem(&root.key_pem).map_err(|e| CaError::ReadCa(format!("CA key: {e}")))?;
    let issuer = Issuer::from_ca_cert_pem(&root.cert_pem, root_key)
        .map_err(|e| CaError::ReadCa(format!("CA certificate: {e}")))?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = ca_params(trust_domain, "intermediate", 0, now, days)?;
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(PemPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Reads the trust domain recorded in a CA certificate made by [`init`].
pub fn trust_domain_of(ca_cert_pem: &str) -> Result<String, CaError> {
    let der = pem_to_der(ca_cert_pem)?;
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| CaError::ReadCa(e.to_string()))?;
    let san = cert.subject_alternative_name().map_err(|e| CaError::ReadCa(e.to_string()))?;
    san.into_iter()
        .flat_map(|s| s.value.general_names.iter())
        .find_map(|n| match n {
            GeneralName::URI(u) => u.strip_prefix("spiffe://").map(|td| td.trim_end_matches('/').to_owned()),
            _ => None,
        })
        .ok_or(CaError::NoTrustDomain)
}

fn pem_to_der(pem: &str) -> Result<Vec<u8>, CaError> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| CaError::ReadCa(format!("not a PEM certificate: {e}")))?;
    Ok(p.contents)
}

/// Issues a leaf for `id`, signed by the CA. `dns_names` are added as DNS SANs, or IP SANs when
/// they are addresses (the federator's API address); gateway-to-gateway checks use only the
/// SPIFFE ID.
pub fn issue(
    ca: &PemPair,
    id: &SpiffeId,
    dns_names: &[String],
    now: OffsetDateTime,
    days: u32,
) -> Result<PemPair, CaError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(|e| CaError::ReadCa(format!("CA key: {e}")))?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(|e| CaError::ReadCa(format!("CA certificate: {e}")))?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Skybridge");
    dn.push(DnType::CommonName, id.to_string());
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let mut sans = vec![SanType::URI(id.to_string().try_into()?)];
    for d in dns_names {
        // An address is an IP SAN: clients verify `https://10.0.0.5` against one, not a DNS name.
        let san = match d.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(d.clone().try_into().map_err(|_| CaError::DnsName(d.clone()))?),
        };
        sans.push(san);
    }
    params.subject_alt_names = sans;
    validity(&mut params, now, days);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(PemPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ClusterId;

    #[test]
    fn issued_leaf_carries_spiffe_id() {
        let now = OffsetDateTime::now_utc();
        let ca = init("example.org", now, 10).unwrap();
        assert_eq!(trust_domain_of(&ca.cert_pem).unwrap(), "example.org");
        let id = SpiffeId::gateway("example.org", ClusterId::new("gcp-1").unwrap());
        let leaf = issue(&ca, &id, &[], now, 1).unwrap();
        let der = pem_to_der(&leaf.cert_pem).unwrap();
        assert_eq!(SpiffeId::from_cert_der(&der, "example.org").unwrap(), id);
        assert!(SpiffeId::from_cert_der(&der, "other.org").is_err());
        // The CA itself is not a workload identity.
        let ca_der = pem_to_der(&ca.cert_pem).unwrap();
        assert!(SpiffeId::from_cert_der(&ca_der, "example.org").is_err());
    }

    #[test]
    fn bad_trust_domain_rejected() {
        assert!(matches!(init("Bad Domain", OffsetDateTime::now_utc(), 1), Err(CaError::TrustDomain(_))));
    }
}
