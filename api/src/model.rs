//! Catalog names: clusters, clouds and MCS service keys.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The DNS suffix of multi-cluster service names (Kubernetes MCS API).
pub const CLUSTERSET_SUFFIX: &str = "svc.clusterset.local";

/// Why a name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "{what} {value:?} is not a DNS-1123 label (1-63 chars of a-z, 0-9 and '-', starting and ending with a letter or digit)"
    )]
    NotDnsLabel { what: &'static str, value: String },
    #[error(
        "{value:?} is not a clusterset service name; expected <name>.<namespace>.{CLUSTERSET_SUFFIX} or <name>.<namespace>"
    )]
    NotServiceName { value: String },
    #[error("unknown cloud {value:?}; expected one of aws, gcp, azure, other")]
    UnknownCloud { value: String },
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn dns_label(what: &'static str, value: &str) -> Result<String, NameError> {
    if is_dns_label(value) {
        Ok(value.to_owned())
    } else {
        Err(NameError::NotDnsLabel { what, value: value.to_owned() })
    }
}

/// A cluster id such as `aws-prod-use1`: a DNS-1123 label, unique in the federation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClusterId(String);

impl ClusterId {
    /// Validates and wraps a cluster id.
    pub fn new(value: &str) -> Result<Self, NameError> {
        dns_label("cluster id", value).map(ClusterId)
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ClusterId {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ClusterId::new(s)
    }
}

impl TryFrom<String> for ClusterId {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ClusterId::new(&s)
    }
}

impl From<ClusterId> for String {
    fn from(c: ClusterId) -> String {
        c.0
    }
}

/// The cloud a cluster runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    Aws,
    Gcp,
    Azure,
    Other,
}

impl Cloud {
    /// The lowercase name used in configs and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Aws => "aws",
            Cloud::Gcp => "gcp",
            Cloud::Azure => "azure",
            Cloud::Other => "other",
        }
    }
}

impl FromStr for Cloud {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "aws" => Ok(Cloud::Aws),
            "gcp" => Ok(Cloud::Gcp),
            "azure" => Ok(Cloud::Azure),
            "other" => Ok(Cloud::Other),
            _ => Err(NameError::UnknownCloud { value: s.to_owned() }),
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A multi-cluster service: `(namespace, name)`, addressed as `<name>.<namespace>.svc.clusterset.local`.
/// Serialized as `namespace/name`, so it can key JSON maps.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    /// Validates both labels.
    pub fn new(namespace: &str, name: &str) -> Result<Self, NameError> {
        Ok(ServiceKey { namespace: dns_label("namespace", namespace)?, name: dns_label("service name", name)? })
    }

    /// Parses a host as clients send it (SNI or HTTP Host): case-insensitive, an optional
    /// trailing dot and, for Host, an optional `:port`. Accepts the full clusterset name and the
    /// short `<name>.<namespace>` form.
    pub fn from_host(host: &str) -> Result<Self, NameError> {
        let err = || NameError::NotServiceName { value: host.to_owned() };
        let mut h = host;
        // Strip a port, but not from a bracketed IPv6 literal (which is never a service name).
        if let Some((left, port)) = h.rsplit_once(':')
            && !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
        {
            h = left;
        }
        let h = h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase();
        let short = match h.strip_suffix(CLUSTERSET_SUFFIX) {
            Some(rest) => rest.strip_suffix('.').ok_or_else(err)?,
            None => h.as_str(),
        };
        let (name, namespace) = short.split_once('.').ok_or_else(err)?;
        ServiceKey::new(namespace, name).map_err(|_| err())
    }

    /// The fully qualified clusterset name.
    pub fn fqdn(&self) -> String {
        format!("{}.{}.{CLUSTERSET_SUFFIX}", self.name, self.namespace)
    }
}

impl FromStr for ServiceKey {
    type Err = NameError;
    /// Parses the `namespace/name` form.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ns, name) = s.split_once('/').ok_or_else(|| NameError::NotServiceName { value: s.to_owned() })?;
        ServiceKey::new(ns, name)
    }
}

impl TryFrom<String> for ServiceKey {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ServiceKey> for String {
    fn from(k: ServiceKey) -> String {
        k.to_string()
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// How a service port is spoken by clients; decides which egress listener serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TLS end to end; routed by SNI, never terminated.
    Tls,
    /// Plain HTTP/1.1; routed by Host.
    Http,
    /// Opaque TCP; reached through a port-mapped listener.
    Tcp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_dns_labels() {
        assert!(ClusterId::new("aws-prod-use1").is_ok());
        for bad in ["", "-a", "a-", "Aws", "a_b", "a.b", &"x".repeat(64)] {
            assert!(ClusterId::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn service_from_host_forms() {
        let k = ServiceKey::new("prod", "payments").unwrap();
        for h in [
            "payments.prod.svc.clusterset.local",
            "PAYMENTS.prod.svc.clusterset.local.",
            "payments.prod.svc.clusterset.local:8443",
            "payments.prod",
            "payments.prod:80",
        ] {
            assert_eq!(ServiceKey::from_host(h).unwrap(), k, "{h}");
        }
        assert_eq!(k.fqdn(), "payments.prod.svc.clusterset.local");
    }

    #[test]
    fn service_from_host_rejects() {
        for h in [
            "",
            "payments",
            "payments.prod.svc.cluster.local",
            "a.b.c",
            ".prod",
            "payments..svc.clusterset.local",
            "svc.clusterset.local",
            "[::1]:80",
            "payments.prod.svc.clusterset.localx",
        ] {
            assert!(ServiceKey::from_host(h).is_err(), "{h:?} accepted");
        }
    }

    #[test]
    fn service_key_string_form() {
        let k: ServiceKey = "prod/payments".parse().unwrap();
        assert_eq!(k, ServiceKey::new("prod", "payments").unwrap());
        assert_eq!(String::from(k), "prod/payments");
        for bad in ["prod", "prod/", "/x", "Prod/x", "a/b/c"] {
            assert!(bad.parse::<ServiceKey>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn cloud_round_trip() {
        for c in [Cloud::Aws, Cloud::Gcp, Cloud::Azure, Cloud::Other] {
            assert_eq!(c.as_str().parse::<Cloud>().unwrap(), c);
        }
        assert!("ibm".parse::<Cloud>().is_err());
    }
}
