//! `[store] backend = "etcd"`: the replicated store's endpoints, credentials and bounds.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use skybridge_api::config::{ConfigError, duration, invalid};

use super::defaults;

/// `[store] backend = "etcd"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client URLs of the etcd members (`http://` or `https://host:port`).
    pub endpoints: Vec<String>,
    /// Every key lives under it, so several federations (or other software) can share a cluster.
    #[serde(default = "defaults::etcd_prefix")]
    pub prefix: String,
    /// TTL of the leadership and presence lease (whole seconds): how long a dead leader keeps
    /// its role, and a dead replica its gateways' presence.
    #[serde(default = "defaults::lease_ttl", with = "duration")]
    pub lease_ttl: Duration,
    /// Client TLS to etcd; without it the endpoints must be `http://`.
    #[serde(default)]
    pub tls: Option<EtcdTls>,
    /// etcd user (with `password_file`) when etcd has authentication enabled.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// How long connecting to an endpoint may take.
    #[serde(default = "defaults::etcd_connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// How long one etcd request may take before it counts as failed; shorter than
    /// `lease_ttl`. Default: a third of `lease_ttl`, so a leader notices a lost lease in time.
    #[serde(default, deserialize_with = "duration::option::deserialize")]
    pub request_timeout: Option<Duration>,
    /// Operations per transaction; etcd refuses more than its `--max-txn-ops` (default 128).
    /// A catalog change larger than this is written in several fenced transactions, the
    /// catalog head last.
    #[serde(default = "defaults::etcd_max_txn_ops")]
    pub max_txn_ops: usize,
    /// Bytes of values per transaction; etcd refuses requests over its `--max-request-bytes`
    /// (default 1.5 MiB).
    #[serde(default = "defaults::etcd_max_txn_bytes")]
    pub max_txn_bytes: usize,
}

/// Client TLS to etcd: the CA that signed the etcd servers, and a client certificate when etcd
/// requires one (`--client-cert-auth`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdTls {
    pub ca: PathBuf,
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
}

impl EtcdConfig {
    /// The request timeout in effect.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout.unwrap_or(self.lease_ttl / 3)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.endpoints.is_empty() {
            return Err(invalid("store.endpoints", "[]", "list at least one etcd client URL"));
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            let key = format!("store.endpoints[{i}]");
            let Some((scheme, rest)) = e.split_once("://") else {
                return Err(invalid(key, e, "use http://host:port or https://host:port"));
            };
            match scheme {
                "http" | "https" => {}
                _ => return Err(invalid(key, e, "the scheme must be http or https")),
            }
            let port_ok = rest.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !port_ok || rest.contains('/') {
                return Err(invalid(key, e, "give host:port after the scheme, with no path"));
            }
            if scheme == "https" && self.tls.is_none() {
                return Err(invalid(key, e, "https needs [store] tls = { ca = ... } to verify the etcd servers"));
            }
            if scheme == "http" && self.tls.is_some() {
                return Err(invalid(key, e, "store.tls is set: use https:// endpoints"));
            }
        }
        let p = &self.prefix;
        if !p.starts_with('/')
            || p.ends_with('/')
            || p.len() > 256
            || p.contains("//")
            || p.bytes().any(|b| b.is_ascii_control())
        {
            return Err(invalid(
                "store.prefix",
                p,
                "use an absolute key path such as /skybridge, without a trailing '/'",
            ));
        }
        let ttl = self.lease_ttl;
        if ttl.subsec_nanos() != 0 || !(2..=300).contains(&ttl.as_secs()) {
            return Err(invalid(
                "store.lease_ttl",
                duration::format(ttl),
                "etcd leases are whole seconds: use 2s to 300s",
            ));
        }
        let request_timeout = self.request_timeout();
        for (key, d) in [("store.connect_timeout", self.connect_timeout), ("store.request_timeout", request_timeout)] {
            if d.is_zero() || d > Duration::from_secs(300) {
                return Err(invalid(key, duration::format(d), "must be between 1ms and 300s"));
            }
        }
        if request_timeout >= self.lease_ttl {
            return Err(invalid(
                "store.request_timeout",
                duration::format(request_timeout),
                format!(
                    "must be shorter than store.lease_ttl ({}), or a leader could not notice a lost lease in time",
                    duration::format(self.lease_ttl)
                ),
            ));
        }
        if !(2..=10_000).contains(&self.max_txn_ops) {
            return Err(invalid("store.max_txn_ops", self.max_txn_ops, "must be between 2 and 10000"));
        }
        if !(64 * 1024..=64 * 1024 * 1024).contains(&self.max_txn_bytes) {
            return Err(invalid("store.max_txn_bytes", self.max_txn_bytes, "must be between 65536 and 67108864"));
        }
        if let Some(t) = &self.tls
            && t.cert.is_some() != t.key.is_some()
        {
            return Err(invalid(
                "store.tls",
                "cert/key",
                "give both cert and key for a client certificate, or neither",
            ));
        }
        if self.username.is_some() != self.password_file.is_some() {
            return Err(invalid(
                "store.username",
                self.username.as_deref().unwrap_or(""),
                "give both username and password_file, or neither",
            ));
        }
        Ok(())
    }
}
