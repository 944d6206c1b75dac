//! Conventions every Skybridge config file follows: errors that name the key, the value and the
//! reason; human durations (`250ms`, `5s`, `2m`, `1h`).

pub mod duration;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Why a config was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}` = {value:?}: {reason}")]
    Invalid { key: String, value: String, reason: String },
}

/// A semantic error naming the key, the value and the reason.
pub fn invalid(key: impl Into<String>, value: impl ToString, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), value: value.to_string(), reason: reason.into() }
}

/// Reads and parses a TOML config file; `parse` validates the text. Parse errors carry the path.
pub fn load<T>(path: &std::path::Path, parse: impl FnOnce(&str) -> Result<T, ConfigError>) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    parse(&text).map_err(|e| match e {
        ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.to_owned(), message },
        other => other,
    })
}

/// Parses TOML text into `T`, mapping syntax and type errors (which name the key) to
/// [`ConfigError::Parse`].
pub fn from_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    let parse = |message: String| ConfigError::Parse { path: PathBuf::from("<text>"), message };
    let de = toml::Deserializer::parse(text).map_err(|e| parse(e.to_string()))?;
    // The path to the failing key (`listen.tunnel`, `sources[1].interval`): the TOML error shows
    // its line, but not the table the line belongs to.
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        parse(if path.is_empty() || path == "." { inner } else { format!("key `{path}`: {inner}") })
    })
}

/// The `[tls]` section of every config: certificate, key and trust bundle files, reloaded when
/// they change.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub trust_bundle: PathBuf,
    #[serde(default = "default_reload_interval", with = "duration")]
    pub reload_interval: Duration,
    /// How long before our certificate expires it is reported (logs, status, metrics).
    #[serde(default = "default_expiry_warning", with = "duration")]
    pub expiry_warning: Duration,
    /// Other trust domains whose gateways are accepted, each only through its own roots and
    /// for its own clusters (`[[tls.federated]]`).
    #[serde(default)]
    pub federated: Vec<FederatedDomain>,
}

/// One `[[tls.federated]]` entry: a trust domain, the roots that may sign its identities, and
/// the clusters it may claim.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FederatedDomain {
    pub trust_domain: String,
    /// PEM roots of that domain.
    pub bundle: PathBuf,
    /// The only cluster ids the domain may claim; absent: any that no other domain claims.
    #[serde(default)]
    pub clusters: Option<Vec<crate::trust::ClusterGlob>>,
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_expiry_warning() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

impl TlsSection {
    /// Longest `reload_interval`.
    pub const MAX_RELOAD_INTERVAL: Duration = Duration::from_secs(3600);
    /// Longest `expiry_warning` (a year).
    pub const MAX_EXPIRY_WARNING: Duration = Duration::from_secs(365 * 24 * 3600);

    /// Checks the bounds of `[tls]`: `reload_interval` from 1ms to 1h, `expiry_warning` at
    /// most a year (0 warns only once expired); federated domains valid, distinct from
    /// `own_trust_domain` and each other, with `clusters` that no two domains share.
    pub fn validate(&self, own_trust_domain: &str) -> Result<(), ConfigError> {
        self.validate_federated(own_trust_domain)?;
        if self.reload_interval.is_zero() || self.reload_interval > Self::MAX_RELOAD_INTERVAL {
            return Err(invalid(
                "tls.reload_interval",
                duration::format(self.reload_interval),
                "must be positive and at most 1h",
            ));
        }
        if self.expiry_warning > Self::MAX_EXPIRY_WARNING {
            return Err(invalid(
                "tls.expiry_warning",
                duration::format(self.expiry_warning),
                "must be at most 8760h (a year)",
            ));
        }
        Ok(())
    }

    fn validate_federated(&self, own: &str) -> Result<(), ConfigError> {
        for (i, d) in self.federated.iter().enumerate() {
            let key = |k: &str| format!("tls.federated[{i}].{k}");
            if !crate::identity::valid_trust_domain(&d.trust_domain) {
                return Err(invalid(
                    key("trust_domain"),
                    &d.trust_domain,
                    "must be lowercase letters, digits, '.', '-' or '_'",
                ));
            }
            if d.trust_domain == own {
                return Err(invalid(
                    key("trust_domain"),
                    &d.trust_domain,
                    "is our own trust domain (its roots are tls.trust_bundle)",
                ));
            }
            if let Some(j) = self.federated[..i].iter().position(|e| e.trust_domain == d.trust_domain) {
                return Err(invalid(key("trust_domain"), &d.trust_domain, format!("is also tls.federated[{j}]")));
            }
            if d.clusters.as_ref().is_some_and(Vec::is_empty) {
                return Err(invalid(
                    key("clusters"),
                    "[]",
                    "would let the domain claim no cluster; remove the entry or list globs",
                ));
            }
        }
        // A cluster id belongs to one domain: no glob of one domain may match an id another's
        // matches.
        for (i, d) in self.federated.iter().enumerate() {
            for (j, e) in self.federated.iter().enumerate().skip(i + 1) {
                let (Some(a), Some(b)) = (&d.clusters, &e.clusters) else { continue };
                for (x, g) in a.iter().enumerate() {
                    if let Some(y) = b.iter().position(|h| g.overlaps(h)) {
                        return Err(invalid(
                            format!("tls.federated[{j}].clusters[{y}]"),
                            b[y].as_str(),
                            format!(
                                "overlaps tls.federated[{i}].clusters[{x}] = {:?} ({}): a cluster id must belong to one trust domain",
                                g.as_str(),
                                d.trust_domain
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The scope of each trust domain we accept, for the verifiers.
    pub fn scopes(&self, own_trust_domain: &str) -> crate::trust::TrustScopes {
        crate::trust::TrustScopes {
            own: own_trust_domain.to_owned(),
            federated: self
                .federated
                .iter()
                .map(|d| crate::trust::DomainScope {
                    trust_domain: d.trust_domain.clone(),
                    clusters: d.clusters.clone(),
                    ceiling: None,
                })
                .collect(),
        }
    }

    /// Makes the paths relative to `base` (the config file's folder), as operators expect.
    pub fn resolve(&mut self, base: &std::path::Path) {
        let bundles = self.federated.iter_mut().map(|d| &mut d.bundle);
        for p in [&mut self.cert, &mut self.key, &mut self.trust_bundle].into_iter().chain(bundles) {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

/// `[authorization]` (gateway and federator): what a source no `allow` or `deny` list names
/// meets. On a gateway, its own default; on the federator, the federation's, pushed to every
/// gateway, which applies the stricter of the two.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationSection {
    /// `allow` (any authenticated gateway) or `deny` (only what an `allow` list names).
    #[serde(default)]
    pub default: crate::routing::DefaultAction,
}

/// Whether two TCP listeners would fail to bind together: the same non-zero port on the same
/// IP, or on a wildcard of the other's family (a `[::]` listener also takes IPv4: Linux binds
/// dual-stack by default). Port 0 (any free port) never collides.
pub fn listeners_collide(a: std::net::SocketAddr, b: std::net::SocketAddr) -> bool {
    let covers =
        |w: std::net::SocketAddr, o: std::net::SocketAddr| w.ip().is_unspecified() && (w.is_ipv6() || o.is_ipv4());
    a.port() != 0 && a.port() == b.port() && (a.ip() == b.ip() || covers(a, b) || covers(b, a))
}
